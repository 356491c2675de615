/**
 * The kind-neutral order of row keys (table-reader.ts): what every TableReader's chunks are sorted by, so
 * that two sites of different kinds list the same keys in the same order and a merge of their chunks meets
 * each key once. Each reader makes its database sort exactly this way; this file is the statement of the
 * order, and what a merge in the process compares with.
 *
 * Keys are compared column by column in key order, each by its kind, on the canonical text
 * (docs/value-kinds.md) as it travels:
 *
 *   int16, int32, int64        by value (bigint: exact at any size)
 *   decimal                    by value, exactly (no float): 1.5 = 1.50; -Infinity < finite < Infinity < NaN
 *   float32, float64           by value; -0 = 0; NaN above Infinity (PostgreSQL's order)
 *   boolean                    f < t
 *   date, timestamp[tz], time  by value; -infinity and infinity at the ends
 *   uuid, bytes                by their bytes (lower-case hex text order is the same)
 *   string, enum, json,        by the UTF-8 bytes of the text (a binary collation, not the column's own;
 *   interval, other              an enum by its label, not its declared position; an interval by its text,
 *                                since 1 mon and 30 days are equal to PostgreSQL and to nobody else)
 *   array, struct              no order: a reader refuses such keys when it describes the table
 *
 * MariaDB's values that have no canonical form (a zero or partial date, a TIME past 24 hours or negative,
 * a TINYINT(1) that is neither 0 nor 1) travel as MariaDB prints them (connectors/mariadb/mariadb-values.ts);
 * they compare here by value too, as MariaDB sorts them, so that such a key can still be paged through.
 */
import type { ValueKind } from '../events/value-kind.ts';
import type { RowKey, TableShape } from './table-reader.ts';

type Compare = (a: string, b: string) => number;

/** Comparators per shape: a merge compares the same shape's keys again and again. */
const comparators = new WeakMap<TableShape, readonly Compare[]>();

/**
 * Negative when key `a` comes before key `b` of `shape`, positive after, 0 when they are the same key.
 * Throws an Error naming the column for a key text its kind cannot order, and for array or struct keys.
 */
export function compareKeys(shape: TableShape, a: RowKey, b: RowKey): number {
  let compare = comparators.get(shape);
  if (compare === undefined) {
    compare = shape.keyColumns.map((index) => {
      const column = shape.relation.columns[index];
      if (column === undefined) throw new Error(`key column index ${index} is not a column of ${shape.relation.schema}.${shape.relation.table}`);
      return comparatorFor(column.kind, `key column ${column.name} of ${shape.relation.schema}.${shape.relation.table}`);
    });
    comparators.set(shape, compare);
  }
  if (a.length !== compare.length || b.length !== compare.length) {
    throw new Error(`a key of ${shape.relation.schema}.${shape.relation.table} has ${compare.length} columns; got keys of ${a.length} and ${b.length}`);
  }
  for (let i = 0; i < compare.length; i++) {
    const order = compare[i]!(a[i]!, b[i]!);
    if (order !== 0) return order;
  }
  return 0;
}

/** The comparator of one key column's canonical texts, by its kind. */
export function comparatorFor(kind: ValueKind, what: string): Compare {
  const checked = <T>(parse: (text: string) => T | null, compare: (x: T, y: T) => number): Compare => {
    return (a, b) => compare(parseOrThrow(parse, a, kind, what), parseOrThrow(parse, b, kind, what));
  };
  switch (kind.kind) {
    case 'int16':
    case 'int32':
    case 'int64':
      return checked(parseInteger, compareBig);
    case 'boolean':
      return checked(parseBoolean, compareBig);
    case 'decimal':
      return checked(parseDecimal, compareDecimal);
    case 'float32':
    case 'float64':
      return checked(parseFloat, compareFloat);
    case 'date':
    case 'timestamp':
    case 'timestamptz':
      return checked(parseDateTime, compareDateTime);
    case 'time':
      return checked(parseTime, compareBig);
    case 'uuid':
    case 'bytes':
      // Lower-case hex digits sort as the nibbles they stand for ('0' < '9' < 'a' < 'f'), two per byte, and a
      // shorter text that is a prefix of a longer one comes first: the byte order of what they spell.
      return compareUtf8;
    case 'string':
    case 'enum':
    case 'json':
    case 'interval':
    case 'other':
      return compareUtf8;
    case 'array':
    case 'struct':
      throw new Error(`${what} is of kind ${kind.kind}, which has no order shared between databases; it cannot be part of a key that is read in order`);
  }
}

function parseOrThrow<T>(parse: (text: string) => T | null, text: string, kind: ValueKind, what: string): T {
  const value = parse(text);
  if (value === null) {
    const shown = text.length > 40 ? `${text.slice(0, 40)}…` : text;
    throw new Error(`${what}: ${JSON.stringify(shown)} is not a ${kind.kind} value this order can compare`);
  }
  return value;
}

/**
 * UTF-8 byte order without encoding: UTF-16 code units sort like code points, and code points like their
 * UTF-8 bytes, except that a surrogate (U+D800–U+DFFF, half of a code point above U+FFFF) must sort above
 * U+E000–U+FFFF. So at the first unit that differs, surrogates move up past that range.
 */
export function compareUtf8(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return utf8Rank(x) - utf8Rank(y);
  }
  return a.length - b.length;
}

function utf8Rank(unit: number): number {
  if (unit >= 0xd800 && unit <= 0xdfff) return unit + 0x2000;
  if (unit >= 0xe000) return unit - 0x800;
  return unit;
}

function compareBig(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

const INTEGER = /^-?[0-9]+$/;

function parseInteger(text: string): bigint | null {
  return INTEGER.test(text) ? BigInt(text) : null;
}

/** `t` and `f`; a MariaDB TINYINT(1) holding another number travels as that number and sorts as one. */
function parseBoolean(text: string): bigint | null {
  if (text === 'f') return 0n;
  if (text === 't') return 1n;
  return parseInteger(text);
}

/** A decimal as sign, integer digits and fraction digits, without leading or trailing zeros; or a special. */
interface DecimalValue {
  /** -2: -Infinity, 2: Infinity, 3: NaN; -1, 0, 1: the sign of a finite value. */
  readonly rank: number;
  readonly integer: string;
  readonly fraction: string;
}

const DECIMAL = /^(-)?([0-9]+)(?:\.([0-9]+))?$/;

function parseDecimal(text: string): DecimalValue | null {
  if (text === 'NaN') return { rank: 3, integer: '', fraction: '' };
  if (text === 'Infinity') return { rank: 2, integer: '', fraction: '' };
  if (text === '-Infinity') return { rank: -2, integer: '', fraction: '' };
  const m = DECIMAL.exec(text);
  if (!m) return null;
  const integer = m[2]!.replace(/^0+/, '');
  const fraction = (m[3] ?? '').replace(/0+$/, '');
  const zero = integer === '' && fraction === '';
  return { rank: zero ? 0 : m[1] ? -1 : 1, integer, fraction };
}

function compareDecimal(a: DecimalValue, b: DecimalValue): number {
  if (a.rank !== b.rank) return a.rank - b.rank;
  if (a.rank !== 1 && a.rank !== -1) return 0; // equal specials, or both zero
  return a.rank * compareMagnitude(a, b);
}

function compareMagnitude(a: DecimalValue, b: DecimalValue): number {
  // Without leading zeros, more integer digits is larger; then digit by digit (trailing zeros are gone,
  // so a fraction that is a prefix of the other is the smaller).
  if (a.integer.length !== b.integer.length) return a.integer.length - b.integer.length;
  if (a.integer !== b.integer) return a.integer < b.integer ? -1 : 1;
  if (a.fraction === b.fraction) return 0;
  return a.fraction < b.fraction ? -1 : 1;
}

const FLOAT = /^(?:NaN|-?Infinity|-?[0-9]+(?:\.[0-9]+)?(?:e[+-][0-9]+)?)$/;

/**
 * Number() reads a canonical float64 text back as its exact double. A float32 text is the shortest decimal
 * that reads back as its 32-bit value; as a double it is not that value, but reading is monotonic and two
 * distinct decimals of at most nine digits never meet in one double, so the order is the float32 order.
 */
function parseFloat(text: string): number | null {
  return FLOAT.test(text) ? Number(text) : null;
}

function compareFloat(a: number, b: number): number {
  const aNaN = Number.isNaN(a);
  const bNaN = Number.isNaN(b);
  if (aNaN || bNaN) return aNaN === bNaN ? 0 : aNaN ? 1 : -1;
  return a < b ? -1 : a > b ? 1 : 0; // -0 and 0 are equal, as in every database
}

/**
 * A date or timestamp as a tuple that sorts chronologically: astronomical year (BC year N is 1 − N), month,
 * day, microseconds of the day; -infinity and infinity as ranks at the ends. Lexicographic order of the
 * fields is time order for real dates, and is MariaDB's order for its zero and partial dates (0000-00-00,
 * 2020-00-05), which sort where their digits say (MariaDB's year 0000 is astronomical year 0, 1 BC).
 */
interface DateTimeValue {
  readonly rank: number;
  readonly fields: readonly bigint[];
}

const DATE_TIME = /^([0-9]{4,})-([0-9]{2})-([0-9]{2})(?: ([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))?)?(\+00)?( BC)?$/;

function parseDateTime(text: string): DateTimeValue | null {
  if (text === 'infinity') return { rank: 1, fields: [] };
  if (text === '-infinity') return { rank: -1, fields: [] };
  const m = DATE_TIME.exec(text);
  if (!m) return null;
  // timestamptz is always printed in UTC (+00), so its fields are UTC already; MariaDB's zero TIMESTAMP
  // travels without the zone.
  const year = BigInt(m[1]!);
  const micros = m[4] === undefined ? 0n : timeMicros(m[4], m[5]!, m[6]!, m[7]);
  return { rank: 0, fields: [m[9] ? 1n - year : year, BigInt(m[2]!), BigInt(m[3]!), micros] };
}

function compareDateTime(a: DateTimeValue, b: DateTimeValue): number {
  if (a.rank !== b.rank) return a.rank - b.rank;
  for (let i = 0; i < a.fields.length; i++) {
    const order = compareBig(a.fields[i]!, b.fields[i]!);
    if (order !== 0) return order;
  }
  return 0;
}

/** `HH:MM:SS[.f]`, and MariaDB's TIME beyond a day or negative (`-01:02:03.500000`, `838:59:59`). */
const TIME = /^(-)?([0-9]{2,}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))?$/;

function parseTime(text: string): bigint | null {
  const m = TIME.exec(text);
  if (!m) return null;
  const micros = timeMicros(m[2]!, m[3]!, m[4]!, m[5]);
  return m[1] ? -micros : micros;
}

function timeMicros(hours: string, minutes: string, seconds: string, fraction: string | undefined): bigint {
  const whole = (BigInt(hours) * 60n + BigInt(minutes)) * 60n + BigInt(seconds);
  return whole * 1_000_000n + BigInt((fraction ?? '').padEnd(6, '0'));
}
