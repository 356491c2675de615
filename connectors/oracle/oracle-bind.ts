/**
 * Neutral values to Oracle: a value's canonical text (docs/value-kinds.md) and logical kind, and the target
 * column as ALL_TAB_COLS describes it, give the value bound to the statement (apply-connection.ts BoundValue) —
 * or a data error (OracleDataError) with one line naming the table and column, the kind, the Oracle type and
 * why, when Oracle cannot hold the value as it is. Nothing is ever adjusted silently: Oracle rounds a NUMBER
 * to the column's scale (and to 38–40 digits), rounds fractional seconds to the column's precision, turns an
 * empty string into NULL, pads CHAR, and puts `?` for a character its character set lacks, so every such case
 * that changes the value is refused here before it is sent.
 *
 * The text is read with src/events/value-parser.ts (parseValue: strict, one spelling per value), then bound:
 * - boolean → `1`/`0` into NUMBER (NUMBER(1) is Oracle's usual boolean; Oracle before 23ai has no BOOLEAN
 *   column type), `t`/`f` text into a character column;
 * - integers, decimals, and floats (their shortest decimal) → plain decimal text for TO_NUMBER, checked against
 *   the column: NUMBER(p,s) keeps s digits after the point (a negative s rounds to tens, hundreds…) and p
 *   digits in all; NUMBER(*,s) (INTEGER is NUMBER(*,0)) and NUMBER are 38 digits (Oracle guarantees 38);
 *   FLOAT(b) keeps ceil(b × 0.30103) significant digits (Oracle's own conversion: FLOAT(126) is 38 digits,
 *   FLOAT(5) two); magnitudes from 1E-130 to below 1E126 (smaller ones would become 0); NaN and ±Infinity
 *   refused (NUMBER has none). Nothing is rounded: more digits than the column keeps are refused;
 * - float32, float64 → BINARY_FLOAT / BINARY_DOUBLE as the IEEE value (bound as such, exact); a float64 into
 *   BINARY_FLOAT only when it is exactly a float32; NaN and ±Infinity kept (Oracle has them); -0 refused, since
 *   Oracle compares -0 equal to 0 and does not promise to keep its sign (not verified against a server: refused
 *   rather than risked). An exact number into a binary float only when the float it becomes prints back as the
 *   same number;
 * - string, enum (its label), json, uuid, other, time, interval and the canonical text of numbers and dates →
 *   text into VARCHAR2, NVARCHAR2, CHAR, NCHAR, CLOB, NCLOB. The empty string is refused: Oracle stores '' as
 *   NULL. Lengths, conservatively: the UTF-16 code units of the text (never fewer than Oracle's characters; a
 *   character outside the BMP counts two) at most CHAR_LENGTH, and its bytes in the column's character set
 *   (UTF-8 for AL32UTF8, 3 per code unit for UTF8/CESU-8, 2 per code unit for AL16UTF16) at most DATA_LENGTH —
 *   which holds whatever the length semantics (BYTE or CHAR) and catches the 4000/32767-byte cap of a
 *   VARCHAR2(n CHAR). In a character set that is not Unicode (or not known) only ASCII is accepted, since a
 *   legacy set may lack a character and Oracle would store `?` or `¿`. CHAR(n)/NCHAR(n) pad a shorter value
 *   with spaces, as Oracle always does (and compares CHARs blank-padded). Bytes into a character type are
 *   refused;
 * - bytes → a Buffer into RAW(n) (at most n bytes) and BLOB; zero bytes refused (Oracle's empty RAW is NULL);
 * - uuid → its 16 bytes into RAW (RAW(16) is Oracle's usual uuid), its text into the character types;
 * - json → its text into the character types and CLOB (Oracle 21c's JSON type would normalise it: refused);
 * - date → `YYYY-MM-DD 00:00:00` into DATE, TIMESTAMP(n) (midnight);
 * - timestamp → DATE only without fractional seconds (DATE has none), TIMESTAMP(n) with at most n fractional
 *   digits (Oracle would round);
 * - timestamptz → TIMESTAMP WITH TIME ZONE as `… +00:00`, WITH LOCAL TIME ZONE as that instant; into DATE and
 *   TIMESTAMP as its UTC time (the column keeps no zone; documented, as the SQL Server sink does); a
 *   timestamp without zone into a zoned type is refused (it has no offset to give);
 * - dates and times in years 1 to 9999 only, by their calendar labels (Oracle reckons dates before 1582-10-15
 *   on the Julian calendar; the labels go over unchanged, and 1582-10-05 to 1582-10-14, which Oracle's
 *   calendar lacks, are refused). BC dates are refused: Oracle takes them (to 4712 BC), but an Oracle capture
 *   reads dates under NLS_DATE_FORMAT 'YYYY-MM-DD …', which drops the era, so they would come back out of this
 *   site as AD dates. ±infinity refused;
 * - interval → INTERVAL YEAR(p) TO MONTH when it has no days or time, `±Y-MM` (years of at most p digits);
 *   INTERVAL DAY(p) TO SECOND(s) when it has no years or months, its days and time of one sign and the time
 *   under a day (Oracle keeps one signed amount: `P1DT-1H` would come back as `PT23H`), `±D HH:MI:SS.FFFFFF`,
 *   days of at most p digits, at most s fractional digits;
 * - array, struct → refused: Oracle has no column type this sink writes them into.
 * - LONG, LONG RAW, XMLTYPE, ROWID, BFILE, object types…: refused (other kinds of an Oracle source go into
 *   character columns only).
 */
import type { ColumnInfo } from '../../src/events/transaction.ts';
import { formatKind, type ValueKind } from '../../src/events/value-kind.ts';
import { daysToCivil, formatFloat32, formatFloat64, MICROS_PER_DAY, parseValue, ValueFormatError, type IntervalValue, type NeutralValue } from '../../src/events/value-parser.ts';
import type { BoundValue, TargetColumn } from './apply-connection.ts';
import { OracleDataError } from './oracle-errors.ts';
import { typeText } from './oracle-statements.ts';

/** Turns one column's canonical text (null: SQL NULL) into what is bound for it. */
export type Binder = (text: string | null) => BoundValue;

/** Where a value goes, for error messages. */
export interface BindTarget {
  readonly schema: string;
  readonly table: string;
}

type Fail = (text: string, why: string) => never;
type Convert = (text: string, value: NeutralValue) => BoundValue;

const CHARACTER = new Set(['VARCHAR2', 'NVARCHAR2', 'CHAR', 'NCHAR', 'CLOB', 'NCLOB']);
const LOBS = new Set(['CLOB', 'NCLOB']);
/** Character sets that hold every Unicode character. */
const UNICODE_SETS = new Set(['AL32UTF8', 'UTF8', 'AL16UTF16', 'UTF16', 'AL24UTFFSS']);

/** Oracle's largest NUMBER magnitude is below 1E126; its smallest non-zero 1E-130. */
const NUMBER_MAX_EXPONENT = 126;
const NUMBER_MIN_EXPONENT = -130;
/** Digits Oracle guarantees for NUMBER without precision (and NUMBER(*,s)). */
const NUMBER_DIGITS = 38;

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
    throw new OracleDataError(
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
      return fail(text, `it is not a canonical ${formatKind(kind)} (${reason})`);
    }
    return convert(text, value);
  };
}

export function bindValue(text: string | null, column: ColumnInfo, target: TargetColumn, where: BindTarget, sourceKind: string | null): BoundValue {
  return binderFor(column, target, where, sourceKind)(text);
}

function converter(kind: ValueKind, target: TargetColumn, type: string, sourceKind: string | null, fail: Fail): Convert {
  const t = target.type;
  const no = (why: string): Convert => (text) => fail(text, why);
  if (kind.kind === 'array' || kind.kind === 'struct') return no(`Oracle has no column type sitesync writes ${kind.kind === 'array' ? 'an array' : 'a composite (struct)'} into`);
  if (t === 'NUMBER' || t === 'FLOAT') return numberConverter(kind, target, type, fail);
  if (t === 'BINARY_FLOAT' || t === 'BINARY_DOUBLE') return floatConverter(kind, t === 'BINARY_FLOAT', type, fail);
  if (CHARACTER.has(t)) return characterConverter(kind, target, type, fail);
  if (t === 'RAW' || t === 'BLOB') return binaryConverter(kind, target, type, fail);
  if (t === 'DATE' || t === 'TIMESTAMP' || t === 'TIMESTAMP WITH TIME ZONE' || t === 'TIMESTAMP WITH LOCAL TIME ZONE') return dateTimeConverter(kind, target, type, fail);
  if (t === 'INTERVAL YEAR TO MONTH' || t === 'INTERVAL DAY TO SECOND') return intervalConverter(kind, target, type, fail);
  if (t === 'LONG' || t === 'LONG RAW') return no(`sitesync does not write ${t} (deprecated since Oracle 8i; make it a ${t === 'LONG' ? 'CLOB' : 'BLOB'})`);
  if (t === 'JSON') return no('Oracle\'s JSON type keeps its own normal form of the text; make the column a CLOB or VARCHAR2 with an IS JSON check');
  return no(`sitesync does not write Oracle's ${type}${sourceKind === 'oracle' && kind.kind === 'other' ? '' : ` from a ${formatKind(kind)}`}`);
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

/** Significant digits and the decimal exponent of the first one (0 for zero: { digits: '', exponent: 0 }). */
function significant(n: DecimalDigits): { digits: string; exponent: number } {
  if (n.integer !== '0') return { digits: (n.integer + n.fraction).replace(/0+$/, ''), exponent: n.integer.length - 1 };
  const lead = n.fraction.match(/^0*/)![0].length;
  if (lead === n.fraction.length) return { digits: '', exponent: 0 };
  return { digits: n.fraction.slice(lead), exponent: -(lead + 1) };
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

function numberConverter(kind: ValueKind, target: TargetColumn, type: string, fail: Fail): Convert {
  const float = target.type === 'FLOAT';
  // FLOAT(b): b binary digits, ceil(b × 0.30103) decimal ones (FLOAT is FLOAT(126): 38).
  const floatDigits = Math.ceil((target.precision ?? 126) * 0.30103);
  const scale = float ? null : target.scale;
  const precision = float ? null : target.precision;
  return (text, value) => {
    const n = numberOf(kind, text, value);
    if (n === undefined) return fail(text, `a ${formatKind(kind)} is not a number`);
    if (n === null) return fail(text, `Oracle's NUMBER has no ${text === 'NaN' ? 'NaN' : 'infinity'}`);
    if ((kind.kind === 'float32' || kind.kind === 'float64') && Object.is(value, -0)) return fail(text, 'NUMBER has no negative zero');
    const { digits, exponent } = significant(n);
    if (digits !== '') {
      if (exponent >= NUMBER_MAX_EXPONENT) return fail(text, `it is out of the range of NUMBER (below 1E126)`);
      if (exponent < NUMBER_MIN_EXPONENT) return fail(text, `it is smaller than NUMBER's smallest magnitude (1E-130): Oracle would store 0`);
    }
    if (float) {
      if (digits.length > floatDigits) return fail(text, `it has ${digits.length} significant digits and ${type} keeps ${floatDigits}: Oracle would round it`);
    } else if (scale === null) {
      if (digits.length > NUMBER_DIGITS) return fail(text, `it has ${digits.length} significant digits and ${type} keeps ${NUMBER_DIGITS}: Oracle would round it`);
    } else {
      if (scale >= 0 && n.fraction.length > scale) {
        return fail(text, `it has ${n.fraction.length} digits after the point and ${type} keeps ${scale}: Oracle would round it`);
      }
      if (scale < 0) {
        const zeros = -scale;
        if (n.fraction !== '' || (n.integer !== '0' && (n.integer.length <= zeros || !n.integer.endsWith('0'.repeat(zeros))))) {
          return fail(text, `${type} keeps multiples of 1E${zeros} only: Oracle would round it`);
        }
      }
      // The value counted in units of 1E-scale must have at most `precision` digits.
      const units = (scale >= 0 ? n.integer + n.fraction.padEnd(scale, '0') : n.integer.slice(0, n.integer.length + scale)).replace(/^0+/, '');
      const limit = precision ?? NUMBER_DIGITS;
      if (units.length > limit) return fail(text, `it is too large for ${type} (at most ${Math.max(0, limit - scale)} digits before the point)`);
    }
    return formatDigits(n);
  };
}

function floatConverter(kind: ValueKind, single: boolean, type: string, fail: Fail): Convert {
  return (text, value) => {
    if (kind.kind === 'boolean') return fail(text, `a boolean is not a number ${type} holds`);
    if (kind.kind === 'float32' || kind.kind === 'float64') {
      const x = value as number;
      if (Object.is(x, -0)) return fail(text, `Oracle compares -0 equal to 0 and does not promise to keep its sign`);
      if (single && !Number.isNaN(x) && Math.fround(x) !== x) return fail(text, `it is a double-precision value that BINARY_FLOAT (single precision) would round`);
      return formatFloat64(x);
    }
    const n = numberOf(kind, text, value);
    if (n === undefined) return fail(text, `a ${formatKind(kind)} is not a number`);
    if (n === null) return formatFloat64(Number(text === 'NaN' ? NaN : text === '-Infinity' ? -Infinity : Infinity)); // a decimal's NaN/±Infinity
    // An exact number: only when the float it becomes prints back as the same number.
    const x = single ? Math.fround(Number(formatDigits(n))) : Number(formatDigits(n));
    if (!Number.isFinite(x)) return fail(text, `it is out of the range of ${type}`);
    const shown = single ? formatFloat32(x) : formatFloat64(x);
    const back = decimalDigits(shown);
    if (!back || !sameDigits(back, n)) return fail(text, `${type} would hold it as ${shown} (binary floating point): Oracle would round it`);
    return formatFloat64(x);
  };
}

// ─── text and bytes ──────────────────────────────────────────────────────────────────────────────────────

const NON_ASCII = /[^\u0000-\u007f]/;
const UUID_TEXT = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Bytes of `text` in character set `charset` (only called for Unicode sets, or for ASCII text). */
function byteLength(text: string, charset: string): number {
  switch (charset) {
    case 'AL16UTF16':
    case 'UTF16':
      return text.length * 2;
    case 'UTF8': // CESU-8: a character outside the BMP is two 3-byte surrogates
      return Buffer.byteLength(text, 'utf8') + (text.match(/[\ud800-\udbff][\udc00-\udfff]/g)?.length ?? 0) * 2;
    default:
      return Buffer.byteLength(text, 'utf8');
  }
}

function characterConverter(kind: ValueKind, target: TargetColumn, type: string, fail: Fail): Convert {
  if (kind.kind === 'bytes') return (text) => fail(text, `bytes have no text form ${type} could hold`);
  const lob = LOBS.has(target.type);
  const charset = target.charset?.toUpperCase() ?? null;
  const unicode = charset !== null && UNICODE_SETS.has(charset);
  return (text) => {
    if (text === '') return fail(text, `Oracle stores an empty string as NULL`);
    if (!unicode && NON_ASCII.test(text)) {
      return fail(text, `it has characters outside ASCII, and ${type} keeps characters in character set ${charset ?? '(unknown)'}, which may lack them (Oracle would store a replacement character); use NVARCHAR2/NCLOB or an AL32UTF8 database`);
    }
    if (!lob) {
      if (text.length > target.charLength) return fail(text, `it is ${text.length} characters (UTF-16 code units) long and ${type} holds ${target.charLength}`);
      const bytes = byteLength(text, charset ?? 'US7ASCII');
      if (bytes > target.dataLength) return fail(text, `it is ${bytes} bytes long in ${charset ?? 'ASCII'} and ${type} holds ${target.dataLength} bytes`);
    }
    return text;
  };
}

function binaryConverter(kind: ValueKind, target: TargetColumn, type: string, fail: Fail): Convert {
  const limit = target.type === 'RAW' ? target.dataLength : null;
  const check = (text: string, bytes: Buffer): Buffer => {
    if (bytes.length === 0) return fail(text, `Oracle stores zero bytes as NULL`);
    if (limit !== null && bytes.length > limit) return fail(text, `it is ${bytes.length} bytes long and ${type} holds ${limit}`);
    return bytes;
  };
  if (kind.kind === 'bytes') return (text, value) => check(text, value as Buffer);
  if (kind.kind === 'uuid') return (text) => check(text, Buffer.from(text.replace(/-/g, ''), 'hex'));
  if (kind.kind === 'string') return (text) => (UUID_TEXT.test(text) ? check(text, Buffer.from(text.replace(/-/g, ''), 'hex')) : fail(text, `${type} holds bytes, and this string is not a uuid`));
  return (text) => fail(text, `${type} holds bytes, not a ${formatKind(kind)}`);
}

// ─── dates and times ─────────────────────────────────────────────────────────────────────────────────────

const pad = (n: number, width: number): string => String(n).padStart(width, '0');

/** Labels of a day number (days since 1970-01-01, proleptic Gregorian), refusing what Oracle cannot take. */
function oracleDay(days: number, text: string, type: string, fail: Fail): string {
  const { year, month, day } = daysToCivil(days);
  if (year < 1) return fail(text, `a BC date: an Oracle capture reads dates without their era, so it would come back out of this site as an AD date`);
  if (year > 9999) return fail(text, `it is after ${type}'s last day (9999-12-31)`);
  if (year === 1582 && month === 10 && day >= 5 && day <= 14) return fail(text, `Oracle's calendar has no 1582-10-05 to 1582-10-14 (the Julian calendar ends on 10-04, the Gregorian starts on 10-15)`);
  return `${pad(year, 4)}-${pad(month, 2)}-${pad(day, 2)}`;
}

function dateTimeConverter(kind: ValueKind, target: TargetColumn, type: string, fail: Fail): Convert {
  const t = target.type;
  const zoned = t === 'TIMESTAMP WITH TIME ZONE' || t === 'TIMESTAMP WITH LOCAL TIME ZONE';
  const digits = t === 'DATE' ? 0 : (target.scale ?? 6);
  if (kind.kind !== 'date' && kind.kind !== 'timestamp' && kind.kind !== 'timestamptz') return (text) => fail(text, `${type} holds a date and time, not a ${formatKind(kind)}`);
  if (zoned && kind.kind !== 'timestamptz') return (text) => fail(text, `a ${formatKind(kind)} has no time zone, and ${type} needs one (make the source column timestamptz, or the target TIMESTAMP)`);
  return (text, value) => {
    if (typeof value === 'number' && !Number.isFinite(value)) return fail(text, `Oracle's ${t} has no infinity`);
    const micros = kind.kind === 'date' ? BigInt(value as number) * MICROS_PER_DAY : (value as bigint);
    let days = micros / MICROS_PER_DAY;
    let rest = micros - days * MICROS_PER_DAY;
    if (rest < 0n) {
      days -= 1n;
      rest += MICROS_PER_DAY;
    }
    const date = oracleDay(Number(days), text, type, fail);
    const seconds = rest / 1_000_000n;
    const fraction = String(rest % 1_000_000n).padStart(6, '0');
    const used = fraction.replace(/0+$/, '').length;
    if (used > digits) {
      return fail(text, t === 'DATE' ? 'DATE has no fractional seconds: Oracle would round them' : `it has ${used} fractional digits of seconds and ${type} keeps ${digits}: Oracle would round it`);
    }
    const s = Number(seconds);
    const time = `${pad(Math.floor(s / 3600), 2)}:${pad(Math.floor(s / 60) % 60, 2)}:${pad(s % 60, 2)}`;
    if (t === 'DATE') return `${date} ${time}`;
    return zoned ? `${date} ${time}.${fraction} +00:00` : `${date} ${time}.${fraction}`;
  };
}

function intervalConverter(kind: ValueKind, target: TargetColumn, type: string, fail: Fail): Convert {
  if (kind.kind !== 'interval') return (text) => fail(text, `${type} holds an interval, not a ${formatKind(kind)}`);
  const leading = target.precision ?? 2;
  if (target.type === 'INTERVAL YEAR TO MONTH') {
    return (text, value) => {
      const { months, days, micros } = value as IntervalValue;
      if (days !== 0 || micros !== 0n) return fail(text, `it has days or a time, and ${type} keeps years and months only`);
      const abs = Math.abs(months);
      const years = Math.floor(abs / 12);
      if (String(years).length > leading) return fail(text, `its ${years} years need more than the ${leading} digits ${type} keeps`);
      return `${months < 0 ? '-' : '+'}${years}-${pad(abs % 12, 2)}`;
    };
  }
  const scale = target.scale ?? 6;
  return (text, value) => {
    const { months, days, micros } = value as IntervalValue;
    if (months !== 0) return fail(text, `it has years or months, and ${type} keeps days and time only (a month has no fixed length)`);
    if ((days > 0 && micros < 0n) || (days < 0 && micros > 0n)) return fail(text, `its days and time have opposite signs, and ${type} keeps one signed amount (Oracle would hold it as another interval)`);
    const absMicros = micros < 0n ? -micros : micros;
    if (absMicros >= MICROS_PER_DAY) return fail(text, `its time is a day or more, and ${type} would carry it into the days (another interval)`);
    const negative = days < 0 || micros < 0n;
    const absDays = Math.abs(days);
    if (String(absDays).length > leading) return fail(text, `its ${absDays} days need more than the ${leading} digits ${type} keeps`);
    const fraction = String(absMicros % 1_000_000n).padStart(6, '0');
    const used = fraction.replace(/0+$/, '').length;
    if (used > scale) return fail(text, `it has ${used} fractional digits of seconds and ${type} keeps ${scale}: Oracle would round it`);
    const s = Number(absMicros / 1_000_000n);
    return `${negative ? '-' : '+'}${absDays} ${pad(Math.floor(s / 3600), 2)}:${pad(Math.floor(s / 60) % 60, 2)}:${pad(s % 60, 2)}.${fraction}`;
  };
}
