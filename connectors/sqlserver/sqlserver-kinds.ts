/**
 * What a SQL Server column is in sitesync's terms (its logical kind and its native type), how the reader's
 * SELECT projects it so that nothing is lost on the way through the driver, and how a projected value becomes
 * the canonical text of its kind (docs/value-kinds.md).
 *
 * Why a projection: the driver (tedious) turns decimal, numeric and money into JavaScript numbers (lossy past
 * 15 digits), and datetime2, time and datetimeoffset into JavaScript Dates (milliseconds only, and in the
 * driver's zone). So the change-table SELECT converts those to text in SQL, with styles Microsoft documents, and
 * everything exact (bit, the small integers, real and float as IEEE values, strings, binaries) comes as is.
 *
 * Verified in Microsoft's documentation (MicrosoftDocs/sql-docs: t-sql/functions/cast-and-convert-transact-sql.md,
 * t-sql/data-types/datetimeoffset-transact-sql.md):
 * - style 23 is ISO 8601 `yyyy-mm-dd`;
 * - style 126 is ISO 8601 `yyyy-mm-ddThh:mi:ss.mmm`, and a zero fraction is not displayed at all;
 * - style 127 adds `Z` and is documented for input (character data to datetime), so it is not used here;
 * - styles 21/25/121 are the default for time, date, datetime2 and datetimeoffset (`yyyy-mm-dd hh:mi:ss.mmm`),
 *   and the default string forms are `hh:mm:ss[.nnnnnnn]` (time), `YYYY-MM-DD hh:mm:ss[.nnnnnnn]` (datetime2),
 *   `YYYY-MM-DD hh:mm:ss[.nnnnnnn] [+|-]hh:mm` (datetimeoffset, the offset always two-digit hours and minutes);
 * - money style 2 prints four fraction digits and no thousands separators (`4235.9819`); style 0 only two;
 * - style 114 is `hh:mi:ss:mmm` (milliseconds after a colon: lossy for time(7), so not used).
 * Assumed, not found stated: how many fraction digits style 126 prints for datetime2(n) when the fraction is not
 * zero (n, or 7?), and whether the default form puts a space before the offset. canonicalText therefore reads
 * 0 to 7 fraction digits, `T` or a space between date and time, and an offset with or without a space before it.
 * Also assumed: CONVERT(varchar, decimal) prints the column's scale (`12.50`, `0.50`, `-0.50`), as SQL Server
 * tools show decimals; normalizeDecimal would add missing zeros anyway and refuses anything that would round.
 *
 * The 100-ns seventh digit of time(7), datetime2(7) and datetimeoffset(7) has no place in PostgreSQL's
 * microseconds: it is rounded half to even, as PostgreSQL rounds 7-digit input (a round-up may carry into the
 * seconds, the day, and for 23:59:59.9999995 of a time into `24:00:00`, which PostgreSQL's time also holds).
 * Documented, not refused.
 */
import { DecodeError } from '../../src/errors.ts';
import type { NativeType, ValueKind } from '../../src/events/value-kind.ts';
import { decimalKind, simpleKind } from '../../src/events/value-kind.ts';
import { civilToDays, daysToIsoDate, formatFloat32, formatFloat64, MICROS_PER_DAY, microsToTimestampText, microsToTimeText, normalizeDecimal } from '../../src/events/value-parser.ts';
import type { CapturedColumn, ProjectedValue } from './cdc-reader.ts';

/** The character types whose sys.columns.max_length counts bytes of UTF-16 (two per character). */
const NATIONAL = new Set(['nchar', 'nvarchar']);
const LENGTHED = new Set(['char', 'varchar', 'nchar', 'nvarchar', 'binary', 'varbinary']);
const STRING_TYPES = new Set(['char', 'varchar', 'nchar', 'nvarchar', 'text', 'ntext', 'sysname']);
const BYTES_TYPES = new Set(['binary', 'varbinary', 'image', 'timestamp', 'rowversion']);

function lower(column: CapturedColumn): string {
  return column.type.toLowerCase();
}

/** float(n) with n ≤ 24 is a real (SQL Server stores it in 4 bytes); sys.types says `float` with precision 24. */
function isReal(column: CapturedColumn): boolean {
  const type = lower(column);
  return type === 'real' || (type === 'float' && column.precision > 0 && column.precision <= 24);
}

export function kindOf(column: CapturedColumn): ValueKind {
  const type = lower(column);
  switch (type) {
    case 'bit':
      return simpleKind('boolean');
    case 'tinyint': // 0..255: int16 holds it
    case 'smallint':
      return simpleKind('int16');
    case 'int':
      return simpleKind('int32');
    case 'bigint':
      return simpleKind('int64');
    case 'real':
      return simpleKind('float32');
    case 'float':
      return simpleKind(isReal(column) ? 'float32' : 'float64');
    case 'decimal':
    case 'numeric':
      return decimalKind(column.precision, column.scale);
    case 'money':
      return decimalKind(19, 4);
    case 'smallmoney':
      return decimalKind(10, 4);
    case 'uniqueidentifier':
      return simpleKind('uuid');
    case 'date':
      return simpleKind('date');
    case 'time':
      return simpleKind('time');
    case 'datetime':
    case 'datetime2':
    case 'smalldatetime':
      return simpleKind('timestamp');
    case 'datetimeoffset':
      return simpleKind('timestamptz');
  }
  if (STRING_TYPES.has(type)) return simpleKind('string');
  if (BYTES_TYPES.has(type)) return simpleKind('bytes');
  return simpleKind('other'); // xml, sql_variant, hierarchyid, geography, geometry…
}

/** The declared length as T-SQL writes it: characters for the n-types (max_length is bytes), `max` for -1. */
function lengthText(column: CapturedColumn): string {
  if (column.maxLength === -1) return 'max';
  return String(NATIONAL.has(lower(column)) ? column.maxLength / 2 : column.maxLength);
}

/** The SQL Server type with its parameters, as a CREATE TABLE would say it: `nvarchar(50)`, `decimal(12,2)`, `datetime2(7)`. */
export function nativeTypeName(column: CapturedColumn): string {
  const type = lower(column);
  if (LENGTHED.has(type)) return `${type}(${lengthText(column)})`;
  if (type === 'decimal' || type === 'numeric') return `${type}(${column.precision},${column.scale})`;
  if (type === 'datetime2' || type === 'time' || type === 'datetimeoffset') return `${type}(${column.scale})`;
  if (type === 'float') return isReal(column) ? 'real' : 'float';
  return type;
}

export function nativeOf(column: CapturedColumn): NativeType {
  return { name: nativeTypeName(column), id: 0, modifier: -1 };
}

/** `[name]`, a closing bracket doubled. */
export function quoteName(name: string): string {
  return `[${name.replace(/]/g, ']]')}]`;
}

/**
 * The SELECT expression that yields the projected form (cdc-reader.ts ProjectedValue) of a captured column
 * (without an alias: the reader adds one).
 */
export function projection(column: CapturedColumn): string {
  const c = quoteName(column.name);
  switch (lower(column)) {
    case 'bigint':
      return `CONVERT(varchar(20), ${c})`;
    case 'decimal':
    case 'numeric':
      return `CONVERT(varchar(41), ${c})`;
    case 'money':
    case 'smallmoney':
      return `CONVERT(varchar(30), ${c}, 2)`;
    case 'uniqueidentifier':
      return `CONVERT(char(36), ${c})`;
    case 'date':
      return `CONVERT(char(10), ${c}, 23)`;
    case 'time':
      return `CONVERT(varchar(16), ${c})`; // the default form hh:mm:ss[.nnnnnnn]
    case 'datetime':
    case 'smalldatetime':
    case 'datetime2':
      return `CONVERT(varchar(27), ${c}, 126)`;
    case 'datetimeoffset':
      // The default form `YYYY-MM-DD hh:mm:ss[.nnnnnnn] +hh:mm`, the date-time space made a T (position 11)
      // and the space before the offset removed: `YYYY-MM-DDThh:mm:ss[.nnnnnnn]+hh:mm`.
      return `REPLACE(STUFF(CONVERT(varchar(34), ${c}), 11, 1, 'T'), ' ', '')`;
    case 'xml':
      return `CONVERT(nvarchar(max), ${c})`;
    case 'sql_variant':
      return `CONVERT(nvarchar(4000), ${c})`;
    case 'hierarchyid':
    case 'geography':
    case 'geometry':
      return `${c}.ToString()`;
    default:
      return c;
  }
}

// ─── projected value → canonical text ────────────────────────────────────────────────────────────────────

/**
 * The canonical text of a projected value in its column's kind; null for NULL. Throws DecodeError for a value
 * its type cannot hold as the projection gives it (a reader or projection bug, never user data).
 */
export function canonicalText(column: CapturedColumn, value: ProjectedValue): string | null {
  if (value === null) return null;
  const type = lower(column);
  const kind = kindOf(column);
  const bad = (why: string): never => {
    const shown = Buffer.isBuffer(value) ? `${value.length} bytes` : JSON.stringify(String(value).slice(0, 60));
    throw new DecodeError(`SQL Server value of column ${column.name} (${nativeTypeName(column)}) is ${typeof value === 'object' ? 'a Buffer' : typeof value} ${shown}: ${why}`);
  };
  switch (kind.kind) {
    case 'boolean':
      if (typeof value === 'boolean') return value ? 't' : 'f';
      if (value === 0 || value === 1) return value === 1 ? 't' : 'f';
      return bad('not a bit');
    case 'int16':
    case 'int32':
      if (typeof value === 'number' && Number.isInteger(value)) return String(value);
      if (typeof value === 'string' && /^-?\d+$/.test(value)) return canonicalInteger(value, bad);
      return bad('not an integer');
    case 'int64':
      if (typeof value === 'string' && /^\s*[-+]?\d+\s*$/.test(value)) return canonicalInteger(value.trim(), bad);
      if (typeof value === 'number' && Number.isSafeInteger(value)) return String(value);
      return bad('not an integer text');
    case 'float32':
      if (typeof value !== 'number') return bad('not a number');
      return formatFloat32(Math.fround(value));
    case 'float64':
      if (typeof value !== 'number') return bad('not a number');
      return formatFloat64(value);
    case 'decimal':
      if (typeof value !== 'string') return bad('not a decimal text (the projection converts decimals to text)');
      try {
        return normalizeDecimal(value.trim(), kind);
      } catch (error) {
        return bad(error instanceof Error ? error.message : String(error));
      }
    case 'string':
      if (typeof value !== 'string') return bad('not a string');
      return value;
    case 'bytes':
      if (!Buffer.isBuffer(value)) return bad('not binary');
      return `\\x${value.toString('hex')}`;
    case 'uuid': {
      if (typeof value !== 'string') return bad('not a uniqueidentifier text');
      const text = value.trim().toLowerCase();
      if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(text)) return bad('not 8-4-4-4-12 hex');
      return text;
    }
    case 'date': {
      if (typeof value !== 'string') return bad('not a date text');
      const d = readDateText(value.trim());
      if (d === null || d.rest !== '') return bad('expected YYYY-MM-DD');
      return daysToIsoDate(d.days);
    }
    case 'time': {
      if (typeof value !== 'string') return bad('not a time text');
      const t = readTimeText(value.trim());
      if (t === null || t.rest !== '') return bad('expected hh:mm:ss[.fffffff]');
      return microsToTimeText(t.micros);
    }
    case 'timestamp':
    case 'timestamptz': {
      if (typeof value !== 'string') return bad('not a date-time text');
      const micros = readDateTimeText(value.trim(), type === 'datetimeoffset');
      if (micros === null) return bad(type === 'datetimeoffset' ? 'expected YYYY-MM-DDThh:mm:ss[.fffffff]±hh:mm' : 'expected YYYY-MM-DDThh:mm:ss[.fffffff]');
      return microsToTimestampText(micros, kind.kind === 'timestamptz');
    }
    default:
      // other: its text form as the projection gives it.
      if (typeof value === 'string') return value;
      if (Buffer.isBuffer(value)) return `\\x${value.toString('hex')}`;
      return String(value);
  }
}

function canonicalInteger(text: string, bad: (why: string) => never): string {
  try {
    return BigInt(text).toString();
  } catch {
    return bad('not an integer');
  }
}

const DATE_TEXT = /^(\d{4})-(\d{2})-(\d{2})/;

function readDateText(text: string): { days: number; rest: string } | null {
  const m = DATE_TEXT.exec(text);
  if (!m) return null;
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  if (year < 1 || month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return null;
  return { days: civilToDays(year, month, day), rest: text.slice(m[0].length) };
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

const TIME_TEXT = /^(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,7}))?/;

/** `hh:mm:ss[.f…]` with up to 7 digits, to microseconds (the 7th digit rounded half to even). */
function readTimeText(text: string): { micros: bigint; rest: string } | null {
  const m = TIME_TEXT.exec(text);
  if (!m) return null;
  const h = Number(m[1]);
  const min = Number(m[2]);
  const s = Number(m[3]);
  if (h > 23 || min > 59 || s > 59) return null;
  const hundredNanos = BigInt((m[4] ?? '').padEnd(7, '0'));
  let micros = hundredNanos / 10n;
  const last = hundredNanos % 10n;
  if (last > 5n || (last === 5n && micros % 2n === 1n)) micros += 1n;
  return { micros: BigInt((h * 60 + min) * 60 + s) * 1_000_000n + micros, rest: text.slice(m[0].length) };
}

const OFFSET_TEXT = /^ ?([-+])(\d{2}):(\d{2})$/;

/** `YYYY-MM-DD(T| )hh:mm:ss[.fffffff]` (then, with an offset, `[ ]±hh:mm` or `Z`) to microseconds since 1970 (UTC with an offset). */
function readDateTimeText(text: string, withOffset: boolean): bigint | null {
  const d = readDateText(text);
  if (d === null || (d.rest[0] !== 'T' && d.rest[0] !== ' ')) return null;
  const t = readTimeText(d.rest.slice(1));
  if (t === null) return null;
  let micros = BigInt(d.days) * MICROS_PER_DAY + t.micros;
  if (!withOffset) return t.rest === '' ? micros : null;
  if (t.rest === 'Z') return micros;
  const o = OFFSET_TEXT.exec(t.rest);
  if (!o) return null;
  const minutes = Number(o[2]) * 60 + Number(o[3]);
  if (Number(o[3]) > 59 || minutes > 14 * 60) return null;
  // local = UTC + offset
  micros -= BigInt(o[1] === '-' ? -minutes : minutes) * 60_000_000n;
  return micros;
}
