/**
 * Neutral values to SQL Server: a value's canonical text (docs/value-kinds.md) and logical kind, and the target
 * column as sys.columns describes it, give the value bound to the statement (apply-connection.ts BoundValue) —
 * or a data error (SqlServerDataError) with one line naming the table and column, the kind, the SQL Server type
 * and why, when SQL Server cannot hold the value as it is. Nothing is ever adjusted silently: CONVERT rounds a
 * decimal to the column's scale, rounds fractional seconds, turns a character its code page lacks into `?`,
 * and pads binary(n), so every such case is refused here before the value is sent.
 *
 * The text is read with src/events/value-parser.ts (parseValue: strict, one spelling per value), then bound:
 * - boolean → `1`/`0` into bit (or an integer type);
 * - integers, decimals → plain decimal text, checked against the column: tinyint 0..255, smallint, int,
 *   bigint ranges; decimal(p,s) scale and integer digits; money and smallmoney ranges and 4 decimals;
 *   a value with a fraction into an integer type is refused (CONVERT would truncate or round it);
 * - float32, float64 → the shortest text of the double, which the connection binds as an IEEE double (exact);
 *   a float64 into real only when it is exactly a float32; NaN and ±Infinity are refused (SQL Server's float
 *   has none). An exact number into float/real only when the double it becomes prints back as the same
 *   decimal (shortest round trip), an integer only when the double holds it exactly;
 * - string, enum (its label), json, uuid, other, and the canonical text of numbers and times → text into the
 *   character types: nvarchar(n)/nchar(n) count UTF-16 code units (sys.columns.max_length / 2, as SQL Server
 *   counts them); varchar(n)/char(n) count bytes in the column's code page. Conservatively: under a `_UTF8`
 *   collation the UTF-8 bytes; under any other (or an unknown) collation only ASCII is accepted, since a
 *   legacy code page may lack a character and SQL Server would store `?` instead. char(n)/nchar(n) pad a
 *   shorter value with spaces, as SQL Server always does (and its comparisons ignore trailing spaces);
 *   bytes into a character type are refused;
 * - bytes → a Buffer into binary/varbinary/image, checked against the length; binary(n) refuses a shorter
 *   value (SQL Server would pad it with zero bytes);
 * - uuid (or a string that is one) → its text into uniqueidentifier;
 * - date → `YYYY-MM-DD` (style 23) into date, datetime2, datetime, smalldatetime (midnight);
 * - time → `hh:mm:ss[.ffffff]` into time(n): 24:00:00 and more fractional digits than n are refused;
 * - timestamp → `YYYY-MM-DDThh:mm:ss[.ffffff]` (style 126) into datetime2(n), datetime (whole milliseconds
 *   that SQL Server's 1/300-second ticks print back the same: a last digit 0, 3 or 7; 1753 to 9999),
 *   smalldatetime (whole minutes, 1900-01-01 to 2079-06-06); years before 1 or after 9999 and ±infinity refused;
 * - timestamptz → into datetime2 (and datetime, smalldatetime) as its UTC time (documented: the column keeps
 *   no offset), into datetimeoffset(n) as `…+00:00`; a timestamp without zone into datetimeoffset is refused
 *   (it has no offset to give);
 * - interval, array, struct → refused: SQL Server has no such type;
 * - other (sql_variant, hierarchyid, geography, geometry…) → its text as it is, only from a SQL Server source
 *   (its own text form); into a character column from any source.
 */
import type { ColumnInfo } from '../../src/events/transaction.ts';
import { formatKind, type ValueKind } from '../../src/events/value-kind.ts';
import { civilToDays, formatFloat32, formatFloat64, MICROS_PER_DAY, microsToTimestampText, parseValue, ValueFormatError, type NeutralValue } from '../../src/events/value-parser.ts';
import type { BoundValue, TargetColumn } from './apply-connection.ts';
import { SqlServerDataError } from './sqlserver-errors.ts';
import { typeText } from './sqlserver-statements.ts';

/** Turns one column's canonical text (null: SQL NULL) into what is bound for it. */
export type Binder = (text: string | null) => BoundValue;

/** Where a value goes, for error messages. */
export interface BindTarget {
  readonly schema: string;
  readonly table: string;
}

type Fail = (text: string, why: string) => never;

const INTEGER_RANGES: Readonly<Record<string, readonly [bigint, bigint]>> = {
  tinyint: [0n, 255n],
  smallint: [-32768n, 32767n],
  int: [-2147483648n, 2147483647n],
  bigint: [-(2n ** 63n), 2n ** 63n - 1n],
};

/** money and smallmoney: 4 decimals, these ranges in ten-thousandths. */
const MONEY_RANGES: Readonly<Record<string, readonly [bigint, bigint]>> = {
  money: [-922337203685477_5808n, 922337203685477_5807n],
  smallmoney: [-214748_3648n, 214748_3647n],
};

const CODE_PAGE = new Set(['char', 'varchar', 'text']);
const UNICODE = new Set(['nchar', 'nvarchar', 'ntext', 'sysname']);
const BINARY = new Set(['binary', 'varbinary', 'image']);

const DAY = MICROS_PER_DAY;
/** 0001-01-01 00:00:00 and 9999-12-31 23:59:59.999999, in microseconds since 1970. */
const YEAR_1 = BigInt(civilToDays(1, 1, 1)) * DAY;
const AFTER_9999 = BigInt(civilToDays(10000, 1, 1)) * DAY;
const DATETIME_MIN = BigInt(civilToDays(1753, 1, 1)) * DAY;
const SMALLDATETIME_MIN = BigInt(civilToDays(1900, 1, 1)) * DAY;
/** 2079-06-06 23:59:00 is smalldatetime's last minute. */
const SMALLDATETIME_MAX = BigInt(civilToDays(2079, 6, 7)) * DAY - 60_000_000n;
const DATE_MIN_DAYS = civilToDays(1, 1, 1);
const DATE_MAX_DAYS = civilToDays(9999, 12, 31);

/** A short, one-line, quoted preview of a value for an error message. */
export function preview(text: string): string {
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text);
}

/**
 * The binder of one source column into one target column: the kind and the target type are decided once, so
 * that binding a row is a parse and a few checks per value.
 */
export function binderFor(column: ColumnInfo, target: TargetColumn, where: BindTarget, sourceKind: string | null): Binder {
  const type = typeText(target);
  const fail: Fail = (text, why) => {
    throw new SqlServerDataError(
      `cannot write ${preview(text)} into ${where.schema}.${where.table} column ${JSON.stringify(target.name)} (${type}; ${formatKind(column.kind)} from ${sourceKind ?? 'a source'} ${column.native.name}): ${why}; change the target column or the value at the source, then retry the parked transaction`,
    );
  };
  const kind = column.kind;
  const convert = converter(kind, target, type, sourceKind, fail);
  return (text) => {
    if (text === null) return null;
    let value: NeutralValue;
    try {
      value = parseValue(text, kind);
    } catch (error) {
      const reason = error instanceof ValueFormatError ? error.reason : String(error);
      return fail(text, `it is not the canonical text of a ${formatKind(kind)} value (${reason})`);
    }
    return convert(text, value);
  };
}

/** One value, bound once (tests and one-off callers; the sink keeps binders). */
export function bindValue(text: string | null, column: ColumnInfo, target: TargetColumn, where: BindTarget, sourceKind: string | null): BoundValue {
  return binderFor(column, target, where, sourceKind)(text);
}

type Convert = (text: string, value: NeutralValue) => BoundValue;

function converter(kind: ValueKind, target: TargetColumn, type: string, sourceKind: string | null, fail: Fail): Convert {
  const t = target.type;
  const no = (why: string): Convert => (text) => fail(text, why);
  if (kind.kind === 'interval' || kind.kind === 'array' || kind.kind === 'struct') {
    const what = kind.kind === 'interval' ? 'an interval' : kind.kind === 'array' ? 'an array' : 'a composite (struct)';
    return no(`SQL Server has no ${kind.kind} type to hold ${what}`);
  }
  if (t in INTEGER_RANGES) return integerConverter(kind, INTEGER_RANGES[t]!, type, fail);
  if (t === 'bit') return bitConverter(kind, fail);
  if (t === 'decimal' || t === 'numeric') return decimalConverter(kind, target.precision, target.scale, null, type, fail);
  if (t in MONEY_RANGES) return decimalConverter(kind, t === 'money' ? 19 : 10, 4, MONEY_RANGES[t]!, type, fail);
  if (t === 'float' || t === 'real') return floatConverter(kind, typeText(target) === 'real', type, fail);
  if (CODE_PAGE.has(t) || UNICODE.has(t)) return characterConverter(kind, target, type, fail);
  if (BINARY.has(t)) return binaryConverter(kind, target, type, fail);
  if (t === 'uniqueidentifier') {
    if (kind.kind === 'uuid') return (text) => text;
    if (kind.kind === 'string') return (text) => (UUID_TEXT.test(text) ? text : fail(text, 'it is not a uuid, and uniqueidentifier holds only uuids'));
    return no(`a ${formatKind(kind)} is not a uuid`);
  }
  if (t === 'date') return dateConverter(kind, fail);
  if (t === 'time') return timeConverter(kind, target.scale, type, fail);
  if (t === 'datetime2' || t === 'datetime' || t === 'smalldatetime' || t === 'datetimeoffset') return dateTimeConverter(kind, t, target.scale, type, fail);
  if (t === 'xml') return kind.kind === 'string' || kind.kind === 'other' ? (text) => text : no(`xml holds XML text, not a ${formatKind(kind)}`);
  if (t === 'json') return kind.kind === 'json' || kind.kind === 'string' ? (text) => text : no(`json holds JSON text, not a ${formatKind(kind)}`);
  if (t === 'timestamp' || t === 'rowversion') return no('a rowversion column is set by SQL Server itself');
  // sql_variant, hierarchyid, geography, geometry…: their own text, from a SQL Server source only.
  if (kind.kind === 'other' && sourceKind === 'sqlserver') return (text) => text;
  return no(`a ${formatKind(kind)} from ${sourceKind ?? 'its source'} has no ${type} form`);
}

// ─── numbers ─────────────────────────────────────────────────────────────────────────────────────────────

/** An exact decimal number as digit strings: no leading zeros in `integer` (but '0'), no trailing zeros in `fraction`. */
export interface DecimalDigits {
  readonly negative: boolean;
  readonly integer: string;
  readonly fraction: string;
}

/** Reads `[-]digits[.digits][e±digits]` exactly; null when it is not such a number. Exponents are clamped to ±400. */
export function decimalDigits(text: string): DecimalDigits | null {
  const m = /^(-?)([0-9]+)(?:\.([0-9]*))?(?:e([-+]?[0-9]+))?$/.exec(text);
  if (!m) return null;
  let integer = m[2]!;
  let fraction = m[3] ?? '';
  if (m[4] !== undefined) {
    const exponent = Math.max(-400, Math.min(400, Number(m[4])));
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
  return { negative: m[1] === '-' && (integer !== '0' || fraction !== ''), integer, fraction };
}

export function formatDigits(n: DecimalDigits): string {
  return `${n.negative ? '-' : ''}${n.integer}${n.fraction ? `.${n.fraction}` : ''}`;
}

function sameDigits(a: DecimalDigits, b: DecimalDigits): boolean {
  return a.negative === b.negative && a.integer === b.integer && a.fraction === b.fraction;
}

/** The exact number a value of a numeric kind stands for; null for NaN/±Infinity; undefined for a kind that is not a number. */
function numberOf(kind: ValueKind, text: string, value: NeutralValue): DecimalDigits | null | undefined {
  switch (kind.kind) {
    case 'int16':
    case 'int32':
    case 'int64':
    case 'decimal':
    case 'float32':
    case 'float64':
      return decimalDigits(text); // NaN and Infinity are not digits: null
    case 'boolean':
      return { negative: false, integer: value === true ? '1' : '0', fraction: '' };
    default:
      return undefined;
  }
}

function special(text: string): string {
  return text === 'NaN' ? 'NaN' : 'infinity';
}

function integerConverter(kind: ValueKind, [min, max]: readonly [bigint, bigint], type: string, fail: Fail): Convert {
  return (text, value) => {
    const n = numberOf(kind, text, value);
    if (n === undefined) return fail(text, `a ${formatKind(kind)} is not a number`);
    if (n === null) return fail(text, `SQL Server's ${type} has no ${special(text)}`);
    if (n.fraction !== '') return fail(text, `it has a fractional part, which ${type} would cut off`);
    const v = n.negative ? -BigInt(n.integer) : BigInt(n.integer);
    if (v < min || v > max) return fail(text, `it is out of the range of ${type} (${min} to ${max})`);
    return v.toString();
  };
}

function bitConverter(kind: ValueKind, fail: Fail): Convert {
  return (text, value) => {
    if (kind.kind === 'boolean') return value === true ? '1' : '0';
    const n = numberOf(kind, text, value);
    if (n === undefined || n === null || kind.kind.startsWith('float') || kind.kind === 'decimal') return fail(text, `bit holds a boolean (or the integer 0 or 1), not a ${formatKind(kind)}`);
    if (n.negative || n.fraction !== '' || (n.integer !== '0' && n.integer !== '1')) return fail(text, 'bit holds 0 or 1 only (SQL Server would make any other number 1)');
    return n.integer;
  };
}

function decimalConverter(kind: ValueKind, precision: number, scale: number, range: readonly [bigint, bigint] | null, type: string, fail: Fail): Convert {
  return (text, value) => {
    if (kind.kind === 'boolean') return fail(text, `a boolean is not a number ${type} holds`);
    const n = numberOf(kind, text, value);
    if (n === undefined) return fail(text, `a ${formatKind(kind)} is not a number`);
    if (n === null) return fail(text, `SQL Server's ${type} has no ${special(text)}`);
    if (n.fraction.length > scale) return fail(text, `it has ${n.fraction.length} digits after the point and ${type} keeps ${scale}: SQL Server would round it`);
    const integerDigits = n.integer === '0' ? 0 : n.integer.length;
    if (integerDigits > precision - scale) return fail(text, `it has ${integerDigits} digits before the point and ${type} holds ${precision - scale}`);
    if (range) {
      const scaled = BigInt(n.integer + n.fraction.padEnd(4, '0')) * (n.negative ? -1n : 1n);
      if (scaled < range[0] || scaled > range[1]) return fail(text, `it is out of the range of ${type}`);
    }
    return formatDigits(n);
  };
}

function floatConverter(kind: ValueKind, real: boolean, type: string, fail: Fail): Convert {
  return (text, value) => {
    if (kind.kind === 'boolean') return fail(text, `a boolean is not a number ${type} holds`);
    const n = numberOf(kind, text, value);
    if (n === undefined) return fail(text, `a ${formatKind(kind)} is not a number`);
    if (n === null) return fail(text, `SQL Server's ${type} has no ${special(text)}`);
    if (kind.kind === 'float32' || kind.kind === 'float64') {
      const x = value as number;
      if (real && Math.fround(x) !== x) return fail(text, `it is a double-precision value that real (single precision) would round`);
      return formatFloat64(x);
    }
    // An exact number: only when the double (or real) it becomes prints back as the same number.
    const x = real ? Math.fround(Number(formatDigits(n))) : Number(formatDigits(n));
    if (!Number.isFinite(x)) return fail(text, `it is out of the range of ${type}`);
    const back = decimalDigits(real ? formatFloat32(x) : formatFloat64(x));
    if (!back || !sameDigits(back, n)) return fail(text, `${type} would hold it as ${real ? formatFloat32(x) : formatFloat64(x)} (binary floating point): SQL Server would round it`);
    return formatFloat64(x);
  };
}

// ─── text and bytes ──────────────────────────────────────────────────────────────────────────────────────

const UUID_TEXT = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const NON_ASCII = /[^\u0000-\u007f]/;

function characterConverter(kind: ValueKind, target: TargetColumn, type: string, fail: Fail): Convert {
  if (kind.kind === 'bytes') return (text) => fail(text, `bytes have no text form ${type} could hold`);
  const t = target.type;
  const unicode = UNICODE.has(t);
  const utf8 = target.collation !== null && /_UTF8$/i.test(target.collation);
  // nvarchar(n): n UTF-16 code units; varchar(n): n bytes; max and the legacy LOB types: no practical limit.
  const limit = t === 'sysname' ? 128 : target.maxLength === -1 || t === 'text' || t === 'ntext' ? null : unicode ? target.maxLength / 2 : target.maxLength;
  return (text) => {
    if (!unicode && !utf8 && NON_ASCII.test(text)) {
      return fail(text, `it has characters outside ASCII, and ${type} keeps characters in the code page of collation ${target.collation ?? '(unknown)'}, which may lack them (SQL Server would store ?); use nvarchar or a _UTF8 collation`);
    }
    if (limit !== null) {
      const size = unicode || !utf8 ? text.length : Buffer.byteLength(text, 'utf8');
      if (size > limit) return fail(text, `it is ${size} ${unicode ? 'UTF-16 code units' : 'bytes'} long and ${type} holds ${limit}`);
    }
    return text;
  };
}

function binaryConverter(kind: ValueKind, target: TargetColumn, type: string, fail: Fail): Convert {
  if (kind.kind !== 'bytes') return (text) => fail(text, `${type} holds bytes, not a ${formatKind(kind)}`);
  const limit = target.maxLength === -1 || target.type === 'image' ? null : target.maxLength;
  const fixed = target.type === 'binary';
  return (text, value) => {
    const bytes = value as Buffer;
    if (limit !== null && bytes.length > limit) return fail(text, `it is ${bytes.length} bytes long and ${type} holds ${limit}`);
    if (fixed && limit !== null && bytes.length < limit) return fail(text, `it is ${bytes.length} bytes long and ${type} would pad it with zero bytes to ${limit}`);
    return bytes;
  };
}

// ─── dates and times ─────────────────────────────────────────────────────────────────────────────────────

function dateConverter(kind: ValueKind, fail: Fail): Convert {
  return (text, value) => {
    if (kind.kind === 'date') {
      const days = value as number;
      if (!Number.isFinite(days)) return fail(text, "SQL Server's date has no infinity");
      if (days < DATE_MIN_DAYS || days > DATE_MAX_DAYS) return fail(text, "it is outside SQL Server's date range (0001-01-01 to 9999-12-31)");
      return text;
    }
    if (kind.kind === 'timestamp') {
      const micros = value as bigint | number;
      if (typeof micros !== 'bigint') return fail(text, "SQL Server's date has no infinity");
      if (micros < YEAR_1 || micros >= AFTER_9999) return fail(text, "it is outside SQL Server's date range (0001-01-01 to 9999-12-31)");
      if (micros % DAY !== 0n) return fail(text, 'a date column would drop its time of day');
      return text.slice(0, 10);
    }
    return fail(text, `date holds a date, not a ${formatKind(kind)}`);
  };
}

/** `.ffffff` of a canonical time or timestamp text ('' when none). */
function fractionOf(text: string): string {
  const m = /\.([0-9]{1,6})/.exec(text);
  return m ? m[1]! : '';
}

function timeConverter(kind: ValueKind, scale: number, type: string, fail: Fail): Convert {
  if (kind.kind !== 'time') return (text) => fail(text, `${type} holds a time of day, not a ${formatKind(kind)}`);
  return (text, value) => {
    if ((value as bigint) >= DAY) return fail(text, `${type} ends at 23:59:59.9999999 and has no 24:00:00`);
    const digits = fractionOf(text).length;
    if (digits > scale) return fail(text, `it has ${digits} fractional digits of seconds and ${type} keeps ${scale}: SQL Server would round it`);
    return text;
  };
}

function dateTimeConverter(kind: ValueKind, t: string, scale: number, type: string, fail: Fail): Convert {
  const offset = t === 'datetimeoffset';
  if (kind.kind !== 'timestamp' && kind.kind !== 'timestamptz' && kind.kind !== 'date') return (text) => fail(text, `${type} holds a date and time, not a ${formatKind(kind)}`);
  if (offset && kind.kind !== 'timestamptz') return (text) => fail(text, `a ${formatKind(kind)} has no time zone, and ${type} needs an offset (make the source column timestamptz, or the target datetime2)`);
  return (text, value) => {
    if (typeof value !== 'bigint' && typeof value === 'number' && !Number.isFinite(value)) return fail(text, `SQL Server's ${t} has no infinity`);
    const micros = kind.kind === 'date' ? BigInt(value as number) * DAY : (value as bigint);
    const [min, max, range] =
      t === 'datetime'
        ? [DATETIME_MIN, AFTER_9999, '1753-01-01 to 9999-12-31']
        : t === 'smalldatetime'
          ? [SMALLDATETIME_MIN, SMALLDATETIME_MAX + 1n, '1900-01-01 00:00 to 2079-06-06 23:59']
          : [YEAR_1, AFTER_9999, '0001-01-01 to 9999-12-31'];
    if (micros < min || micros >= max) return fail(text, `it is outside ${type}'s range (${range})`);
    // The canonical UTC text, without zone: `YYYY-MM-DD hh:mm:ss[.ffffff]`.
    const plain = microsToTimestampText(micros);
    const fraction = fractionOf(plain);
    const base = `${plain.slice(0, 10)}T${plain.slice(11, 19)}`;
    if (t === 'smalldatetime') {
      if (micros % 60_000_000n !== 0n) return fail(text, 'smalldatetime keeps whole minutes: SQL Server would round the seconds');
      return base;
    }
    if (t === 'datetime') {
      // 1/300-second ticks: SQL Server prints (and reads back) whole milliseconds ending in 0, 3 or 7.
      const ms = fraction.padEnd(6, '0');
      if (ms.slice(3) !== '000' || !/[037]$/.test(ms.slice(0, 3))) return fail(text, 'datetime keeps 1/300 of a second (milliseconds ending in 0, 3 or 7): SQL Server would round it');
      return fraction ? `${base}.${ms.slice(0, 3)}` : base;
    }
    if (fraction.length > scale) return fail(text, `it has ${fraction.length} fractional digits of seconds and ${type} keeps ${scale}: SQL Server would round it`);
    const full = fraction ? `${base}.${fraction}` : base;
    return offset ? `${full}+00:00` : full;
  };
}

