/**
 * Neutral values to MariaDB: a value's canonical text (docs/value-kinds.md) and logical kind, and the
 * target column's type as information_schema.COLUMNS states it, give the value bound to the statement —
 * or a data error (MariaDbDataError) with a one-line reason, when MariaDB cannot hold the value as it is.
 * Nothing is ever silently changed: MariaDB itself rounds a decimal to the column's scale, truncates
 * fractional seconds, rounds '1.5' into an INT and drops trailing spaces past a VARCHAR's length with at
 * most a note, even in strict mode, so every such case is checked here before the value is sent.
 *
 * Binding by kind:
 * - boolean → 1/0; integers, decimals and floats → their exact decimal text (MariaDB converts text to the
 *   column's numeric type exactly), checked against the column: range of an integer type, precision and
 *   scale of a DECIMAL, digits a FLOAT or DOUBLE keeps, never NaN or infinity in a number column;
 * - string, enum, uuid, json → the text, checked against a character column's length;
 * - bytes (`\x` + hex) → a Buffer, checked against a binary column's length;
 * - date, time, timestamp → the text; timestamptz → its UTC text (sessions run with time_zone '+00:00'),
 *   checked against the column's fractional seconds; infinite, BC and past-9999 dates have no MariaDB form;
 * - interval, array, struct → refused: MariaDB has no such type;
 * - other → the text as it is when the source is MariaDB too (its own text form), else refused.
 *
 * Bytes are read with src/events/value-parser.ts (parseValue: a Buffer). The other forms are read here
 * directly (a few anchored patterns, and exact decimal arithmetic on digit strings): MariaDB takes text for
 * nearly every type, so parsing into JavaScript values (µs bigints, day numbers) and printing them back
 * would only cost time on every row; MariaDB in strict mode validates what the patterns do not (a 30th of
 * February, a malformed uuid or json) and refuses it with a data error.
 */
import type { ColumnInfo } from '../../src/events/transaction.ts';
import { formatKind } from '../../src/events/value-kind.ts';
import { parseValue } from '../../src/events/value-parser.ts';
import { MariaDbDataError } from './mariadb-errors.ts';

/** What one parameter of a statement carries to mysql2 (text, DOUBLE 1/0, BLOB, NULL). */
export type BoundValue = string | number | Buffer | null;

/** A target column as information_schema.COLUMNS describes it. */
export interface TargetColumn {
  readonly name: string;
  /** DATA_TYPE, lower case: `int`, `varchar`, `decimal`, `datetime`, `longtext`… */
  readonly dataType: string;
  /** COLUMN_TYPE: `int(10) unsigned`, `enum('a','b')`… */
  readonly columnType: string;
  readonly unsigned: boolean;
  /** CHARACTER_MAXIMUM_LENGTH: characters of a CHAR/VARCHAR (bytes of a TEXT or BLOB type). */
  readonly maxChars: number | null;
  /** CHARACTER_OCTET_LENGTH: bytes. */
  readonly maxBytes: number | null;
  readonly precision: number | null;
  readonly scale: number | null;
  /** DATETIME_PRECISION: fractional digits of seconds a DATETIME, TIMESTAMP or TIME keeps. */
  readonly fractionalDigits: number | null;
  readonly charset: string | null;
  /** A generated (virtual or stored) column: never written. */
  readonly generated: boolean;
}

/** A target table: its columns by name, in table order, and its primary key. */
export interface TargetTable {
  readonly schema: string;
  readonly table: string;
  readonly columns: ReadonlyMap<string, TargetColumn>;
  readonly primaryKey: readonly string[] | null;
}

/** A row of information_schema.COLUMNS as the sink reads it (numbers may arrive as strings). */
export interface InformationSchemaColumn {
  readonly COLUMN_NAME: string;
  readonly DATA_TYPE: string;
  readonly COLUMN_TYPE: string;
  readonly CHARACTER_MAXIMUM_LENGTH: string | number | null;
  readonly CHARACTER_OCTET_LENGTH: string | number | null;
  readonly NUMERIC_PRECISION: string | number | null;
  readonly NUMERIC_SCALE: string | number | null;
  readonly DATETIME_PRECISION: string | number | null;
  readonly CHARACTER_SET_NAME: string | null;
  readonly IS_GENERATED: string | null;
}

export function targetColumn(row: InformationSchemaColumn): TargetColumn {
  const num = (v: string | number | null): number | null => (v === null || v === undefined ? null : Number(v));
  return {
    name: row.COLUMN_NAME,
    dataType: row.DATA_TYPE.toLowerCase(),
    columnType: row.COLUMN_TYPE,
    unsigned: /\bunsigned\b/i.test(row.COLUMN_TYPE),
    maxChars: num(row.CHARACTER_MAXIMUM_LENGTH),
    maxBytes: num(row.CHARACTER_OCTET_LENGTH),
    precision: num(row.NUMERIC_PRECISION),
    scale: num(row.NUMERIC_SCALE),
    fractionalDigits: num(row.DATETIME_PRECISION),
    charset: row.CHARACTER_SET_NAME ? row.CHARACTER_SET_NAME.toLowerCase() : null,
    generated: row.IS_GENERATED !== null && row.IS_GENERATED !== undefined && row.IS_GENERATED.toUpperCase() !== 'NEVER',
  };
}

/** Where a value goes, for error messages. */
export interface BindTarget {
  readonly schema: string;
  readonly table: string;
}

/** Turns one column's canonical text (null: SQL NULL) into what is bound for it. */
export type Binder = (text: string | null) => BoundValue;

type Category = 'integer' | 'decimal' | 'float' | 'double' | 'bit' | 'char' | 'text' | 'binary' | 'date' | 'datetime' | 'time' | 'other';

const CATEGORIES: Readonly<Record<string, Category>> = {
  tinyint: 'integer',
  smallint: 'integer',
  mediumint: 'integer',
  int: 'integer',
  integer: 'integer',
  bigint: 'integer',
  decimal: 'decimal',
  numeric: 'decimal',
  float: 'float',
  double: 'double',
  real: 'double',
  bit: 'bit',
  char: 'char',
  varchar: 'char',
  tinytext: 'text',
  text: 'text',
  mediumtext: 'text',
  longtext: 'text',
  json: 'text',
  binary: 'binary',
  varbinary: 'binary',
  tinyblob: 'binary',
  blob: 'binary',
  mediumblob: 'binary',
  longblob: 'binary',
  date: 'date',
  datetime: 'datetime',
  timestamp: 'datetime',
  time: 'time',
};

const INTEGER_BITS: Readonly<Record<string, number>> = { tinyint: 8, smallint: 16, mediumint: 24, int: 32, integer: 32, bigint: 64 };

/** A value prepared for the target's checks: what is bound, and the forms the checks read. */
interface Candidate {
  readonly bound: BoundValue;
  /** Exact decimal reading of a number (not for NaN or infinity). */
  readonly number?: DecimalDigits;
  /** NaN, Infinity or -Infinity, which no MariaDB number type holds. */
  readonly special?: string;
  /** The text of a date, time or timestamp, without time zone. */
  readonly temporal?: { readonly hasDate: boolean; readonly hasTime: boolean; readonly fraction: string; readonly midnight: boolean };
  /**
   * A binary floating-point value: rounds as such, not as a decimal. A float32's text is the shortest that
   * reads back as that float32, so a FLOAT column gets exactly it; a float64's must be one a FLOAT holds.
   */
  readonly fromFloat?: 'float32' | 'float64';
  /** For kinds whose bound text is MariaDB's own and unchecked ('other' from a MariaDB source). */
  readonly unchecked?: boolean;
}

/**
 * The binder of one source column into one target column: the kind and the target category are decided
 * once, so that binding a row is a few string tests per value.
 */
export function binderFor(column: ColumnInfo, target: TargetColumn, where: BindTarget, sourceKind: string | null): Binder {
  const category: Category = CATEGORIES[target.dataType] ?? 'other';
  const fail = (text: string, why: string): never => {
    throw new MariaDbDataError(
      `cannot write ${preview(text)} into ${where.schema}.${where.table} column ${JSON.stringify(column.name)} (${target.columnType}; ${formatKind(column.kind)} from ${sourceKind ?? 'a source'} ${column.native.name}): ${why}; change the target column or the value at the source, then retry the parked transaction`,
    );
  };
  const read = candidateReader(column, sourceKind, fail);
  const check = targetCheck(target, category, fail);
  return (text) => {
    if (text === null) return null;
    const candidate = read(text);
    return candidate.unchecked ? candidate.bound : check(text, candidate);
  };
}

/** One value, bound once (tests and one-off callers; the sink keeps binders). */
export function bindValue(text: string | null, column: ColumnInfo, target: TargetColumn, where: BindTarget, sourceKind: string | null): BoundValue {
  return binderFor(column, target, where, sourceKind)(text);
}

/** A short, one-line, quoted preview of a value for an error message. */
export function preview(text: string): string {
  const shown = text.length > 40 ? `${text.slice(0, 40)}…` : text;
  return JSON.stringify(shown);
}

type Fail = (text: string, why: string) => never;

const INTEGER = /^-?[0-9]+$/;
const FLOAT = /^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$/;
const DECIMAL = /^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)$/;
const SPECIAL = /^(?:NaN|[-+]?Infinity)$/;
const DATE = /^([0-9]{4,})-([0-9]{2})-([0-9]{2})( BC)?$/;
const TIME = /^([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))?$/;
const TIMESTAMP = /^([0-9]{4,})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))?( BC)?$/;
const TIMESTAMPTZ = /^([0-9]{4,})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))?(?:\+00(?::?00)?|Z)( BC)?$/;

function candidateReader(column: ColumnInfo, sourceKind: string | null, fail: Fail): (text: string) => Candidate {
  const kind = column.kind;
  const malformed = (text: string): never => fail(text, `it is not the canonical text of a ${formatKind(kind)} value (the source sent something sitesync does not read)`);
  switch (kind.kind) {
    case 'boolean':
      return (text) => {
        if (text === 't' || text === 'true' || text === '1') return { bound: 1, number: ONE };
        if (text === 'f' || text === 'false' || text === '0') return { bound: 0, number: ZERO };
        return malformed(text);
      };
    case 'int16':
    case 'int32':
    case 'int64':
      return (text) => (INTEGER.test(text) ? { bound: text, number: decimalDigits(text)! } : malformed(text));
    case 'float32':
    case 'float64': {
      const fromFloat = kind.kind;
      return (text) => {
        if (SPECIAL.test(text)) return { bound: text, special: text };
        const number = FLOAT.test(text) ? decimalDigits(text) : null;
        return number ? { bound: text, number, fromFloat } : malformed(text);
      };
    }
    case 'decimal':
      return (text) => {
        if (SPECIAL.test(text)) return { bound: text, special: text };
        const number = DECIMAL.test(text) ? decimalDigits(text) : null;
        return number ? { bound: text, number } : malformed(text);
      };
    case 'string':
    case 'enum':
    case 'uuid':
    case 'json':
      return (text) => ({ bound: text });
    case 'bytes':
      return (text) => {
        let bytes: Buffer;
        try {
          bytes = parseValue(text, kind) as Buffer;
        } catch {
          return malformed(text);
        }
        return { bound: bytes };
      };
    case 'date':
      return (text) => {
        if (text === 'infinity' || text === '-infinity') fail(text, "MariaDB's DATE has no infinity");
        const m = DATE.exec(text) ?? malformed(text);
        checkYear(text, m[1]!, m[4] !== undefined, fail);
        return { bound: text, temporal: { hasDate: true, hasTime: false, fraction: '', midnight: true } };
      };
    case 'time':
      return (text) => {
        const m = TIME.exec(text) ?? malformed(text);
        return { bound: text, temporal: { hasDate: false, hasTime: true, fraction: m[4] ?? '', midnight: false } };
      };
    case 'timestamp':
    case 'timestamptz': {
      const pattern = kind.kind === 'timestamp' ? TIMESTAMP : TIMESTAMPTZ;
      return (text) => {
        if (text === 'infinity' || text === '-infinity') fail(text, "MariaDB's DATETIME and TIMESTAMP have no infinity");
        const m = pattern.exec(text) ?? malformed(text);
        checkYear(text, m[1]!, m[8] !== undefined, fail);
        const fraction = m[7] ?? '';
        const bound = `${m[1]}-${m[2]}-${m[3]} ${m[4]}:${m[5]}:${m[6]}${fraction ? `.${fraction}` : ''}`;
        const midnight = m[4] === '00' && m[5] === '00' && m[6] === '00' && /^0*$/.test(fraction);
        return { bound, temporal: { hasDate: true, hasTime: true, fraction, midnight } };
      };
    }
    case 'interval':
      return (text) => fail(text, 'MariaDB has no interval type');
    case 'array':
      return (text) => fail(text, 'MariaDB has no array type');
    case 'struct':
      return (text) => fail(text, 'MariaDB has no composite (struct) type');
    case 'other':
      if (sourceKind === 'mariadb') return (text) => ({ bound: text, unchecked: true });
      return (text) => fail(text, `a value of a type MariaDB does not share with ${sourceKind ?? 'its source'} (kind other) has no MariaDB form`);
  }
}

function checkYear(text: string, year: string, bc: boolean, fail: Fail): void {
  if (bc) fail(text, 'MariaDB has no dates before the year 1 (BC)');
  if (year.length > 4) fail(text, 'MariaDB has no years past 9999');
}

/** The checks a target column makes of a candidate; returns what is bound. */
function targetCheck(target: TargetColumn, category: Category, fail: Fail): (text: string, candidate: Candidate) => BoundValue {
  const noSpecial = (text: string, c: Candidate, type: string): void => {
    if (c.special !== undefined) fail(text, `MariaDB's ${type} has no ${c.special === 'NaN' ? 'NaN' : 'infinity'}`);
  };
  const numberOf = (text: string, c: Candidate, type: string): DecimalDigits => {
    noSpecial(text, c, type);
    if (c.number) return c.number;
    // A value of another kind into a number column (a string column at the source…): read as a number.
    if (typeof c.bound === 'string' && DECIMAL.test(c.bound.trim())) return decimalDigits(c.bound.trim())!;
    return fail(text, `it is not a number, and the target column is ${type}`);
  };
  switch (category) {
    case 'integer': {
      const bits = INTEGER_BITS[target.dataType] ?? 64;
      const min = target.unsigned ? 0n : -(1n << BigInt(bits - 1));
      const max = target.unsigned ? (1n << BigInt(bits)) - 1n : (1n << BigInt(bits - 1)) - 1n;
      return (text, c) => {
        const n = numberOf(text, c, 'an integer type');
        if (n.fraction !== '') fail(text, 'it has a fractional part, which an integer column would round away');
        const value = n.negative ? -BigInt(n.integer) : BigInt(n.integer);
        if (value < min || value > max) fail(text, `it is out of the range of ${target.columnType} (${min} to ${max})`);
        return typeof c.bound === 'number' ? c.bound : formatDigits(n);
      };
    }
    case 'decimal': {
      const precision = target.precision ?? 65;
      const scale = target.scale ?? 0;
      return (text, c) => {
        const n = numberOf(text, c, 'DECIMAL');
        if (n.fraction.length > scale) fail(text, `it has ${n.fraction.length} digits after the point and ${target.columnType} keeps ${scale}: MariaDB would round it`);
        if (n.integer.replace(/^0+/, '').length > precision - scale) fail(text, `it has more digits before the point than ${target.columnType} holds (${precision - scale})`);
        return typeof c.bound === 'number' ? c.bound : formatDigits(n);
      };
    }
    case 'float':
    case 'double': {
      const type = category === 'float' ? 'FLOAT' : 'DOUBLE';
      const digits = category === 'float' ? 6 : 15;
      return (text, c) => {
        const n = numberOf(text, c, type);
        const value = Number(formatDigits(n));
        if (!Number.isFinite(value) || (category === 'float' && !Number.isFinite(Math.fround(value)))) fail(text, `it is out of the range of ${type}`);
        if (target.scale !== null && n.fraction.length > target.scale) fail(text, `it has ${n.fraction.length} digits after the point and ${target.columnType} keeps ${target.scale}: MariaDB would round it`);
        if (c.fromFloat) {
          if (category === 'float' && c.fromFloat === 'float64' && Math.fround(value) !== value) fail(text, 'it is a double-precision value that FLOAT (single precision) would round');
          return c.bound;
        }
        // An exact number (integer, decimal, boolean, text): only as many significant digits as the type
        // keeps for sure, or an integer the type holds exactly.
        const significant = (n.integer + n.fraction).replace(/^0+/, '').replace(/0+$/, '').length;
        const exactInteger = n.fraction === '' && BigInt(n.integer) <= (category === 'float' ? 1n << 24n : 1n << 53n);
        if (significant > digits && !exactInteger) fail(text, `it has ${significant} significant digits and ${type} keeps ${digits} exactly: MariaDB would round it`);
        return typeof c.bound === 'number' ? c.bound : formatDigits(n);
      };
    }
    case 'bit': {
      const bits = target.precision ?? 1;
      return (text, c) => {
        if (Buffer.isBuffer(c.bound)) {
          if (c.bound.length * 8 > bits && c.bound.subarray(0, c.bound.length - Math.ceil(bits / 8)).some((b) => b !== 0)) fail(text, `it has more bits than ${target.columnType}`);
          return c.bound;
        }
        const n = numberOf(text, c, 'BIT');
        if (n.negative || n.fraction !== '') fail(text, `it is not a non-negative integer, which ${target.columnType} needs`);
        const value = BigInt(n.integer);
        if (value >= 1n << BigInt(bits)) fail(text, `it does not fit in ${target.columnType}`);
        // As a binary string, big-endian: MariaDB stores its bits exactly (a number parameter would go as a
        // DOUBLE, a bigint as text).
        const bytes = Buffer.alloc(Math.ceil(bits / 8));
        for (let i = bytes.length - 1, v = value; i >= 0; i--, v >>= 8n) bytes[i] = Number(v & 0xffn);
        return bytes;
      };
    }
    case 'char':
    case 'text': {
      const unit = category === 'char' ? 'characters' : 'bytes';
      const limit = category === 'char' ? target.maxChars : target.maxBytes;
      const measure = category === 'char' ? codePoints : (s: string) => encodedBytes(s, target.charset);
      return (text, c) => {
        if (limit !== null && typeof c.bound === 'string') {
          // Cheap first: a string of at most `limit` UTF-16 units has at most `limit` code points, and one
          // of n units takes at most 4n bytes in any character set MariaDB has.
          if (category === 'char' ? c.bound.length > limit : c.bound.length * 4 > limit) {
            const size = measure(c.bound);
            if (size > limit) fail(text, `it is ${size} ${unit} long and ${target.columnType} holds ${limit}`);
          }
        } else if (limit !== null && Buffer.isBuffer(c.bound) && category === 'text' && c.bound.length > limit) {
          fail(text, `it is ${c.bound.length} bytes long and ${target.columnType} holds ${limit}`);
        }
        return c.bound;
      };
    }
    case 'binary': {
      const limit = target.maxBytes;
      return (text, c) => {
        const size = Buffer.isBuffer(c.bound) ? c.bound.length : typeof c.bound === 'string' ? Buffer.byteLength(c.bound, 'utf8') : 0;
        if (limit !== null && size > limit) fail(text, `it is ${size} bytes long and ${target.columnType} holds ${limit}`);
        return c.bound;
      };
    }
    case 'date':
      return (text, c) => {
        const t = c.temporal;
        if (t && !t.hasDate) fail(text, 'a time of day has no date, which a DATE column needs');
        if (t && t.hasTime && !t.midnight) fail(text, 'a DATE column would drop its time of day');
        if (t && t.hasTime) return (c.bound as string).slice(0, (c.bound as string).indexOf(' '));
        // Text of another kind: MariaDB would drop a time of day after the date with a mere note.
        if (!t && typeof c.bound === 'string' && /^[0-9]{4}-[0-9]{2}-[0-9]{2}[ T](?!0{2}:?0{2}:?0{2}(?:\.0*)?$)/.test(c.bound)) fail(text, 'a DATE column would drop its time of day');
        return c.bound;
      };
    case 'datetime':
    case 'time': {
      const keeps = target.fractionalDigits ?? 0;
      return (text, c) => {
        const t = c.temporal;
        if (category === 'datetime' && t && !t.hasDate) fail(text, `a time of day has no date, which ${target.columnType} needs`);
        if (category === 'time' && t && t.hasDate) fail(text, `${target.columnType} keeps a time of day only, and the value has a date`);
        const fraction = t ? t.fraction : (typeof c.bound === 'string' ? (/\.([0-9]+)$/.exec(c.bound)?.[1] ?? '') : '');
        const significant = fraction.replace(/0+$/, '').length;
        if (significant > keeps) fail(text, `it has ${significant} fractional digits of seconds and ${target.columnType} keeps ${keeps}: MariaDB would drop them`);
        return c.bound;
      };
    }
    case 'other':
      // ENUM, SET, YEAR, UUID, INET6, GEOMETRY…: MariaDB in strict mode refuses what they cannot hold.
      return (_text, c) => c.bound;
  }
}

function codePoints(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

function encodedBytes(s: string, charset: string | null): number {
  if (charset === null || charset.startsWith('utf8')) return Buffer.byteLength(s, 'utf8');
  if (charset === 'ucs2' || charset === 'utf16' || charset === 'utf16le') return Buffer.byteLength(s, 'utf16le');
  if (charset === 'utf32') return codePoints(s) * 4;
  return codePoints(s); // single-byte character sets (latin1, ascii…); multi-byte Asian sets are checked by MariaDB
}

/** An exact decimal number as digit strings: no leading zeros in `integer` (but '0'), no trailing zeros in `fraction`. */
export interface DecimalDigits {
  readonly negative: boolean;
  readonly integer: string;
  readonly fraction: string;
}

const ZERO: DecimalDigits = { negative: false, integer: '0', fraction: '' };
const ONE: DecimalDigits = { negative: false, integer: '1', fraction: '' };

/** Exponents beyond this are out of the range of every MariaDB number type (DOUBLE ends near 1e308). */
const MAX_EXPONENT = 400;

/**
 * Reads `[-+]digits[.digits][e[-+]digits]` exactly (no floating point): null when it is not such a number.
 * An exponent past ±400 is clamped so that the result is still out of every range (and never a huge string).
 */
export function decimalDigits(text: string): DecimalDigits | null {
  const m = /^([-+]?)([0-9]*)(?:\.([0-9]*))?(?:[eE]([-+]?[0-9]+))?$/.exec(text);
  if (!m || (m[2] === '' && (m[3] ?? '') === '')) return null;
  let integer = m[2]!;
  let fraction = m[3] ?? '';
  if (m[4] !== undefined) {
    let exponent = Number(m[4]);
    if (exponent > MAX_EXPONENT) exponent = MAX_EXPONENT;
    if (exponent < -MAX_EXPONENT) exponent = -MAX_EXPONENT;
    if (exponent > 0) {
      const moved = fraction.padEnd(exponent, '0');
      integer += moved.slice(0, exponent);
      fraction = moved.slice(exponent);
    } else if (exponent < 0) {
      const padded = integer.padStart(-exponent, '0');
      fraction = padded.slice(padded.length + exponent) + fraction;
      integer = padded.slice(0, padded.length + exponent);
    }
  }
  integer = integer.replace(/^0+/, '') || '0';
  fraction = fraction.replace(/0+$/, '');
  const negative = m[1] === '-' && (integer !== '0' || fraction !== '');
  return { negative, integer, fraction };
}

export function formatDigits(n: DecimalDigits): string {
  return `${n.negative ? '-' : ''}${n.integer}${n.fraction ? `.${n.fraction}` : ''}`;
}
