/**
 * What an Oracle column is in sitesync's terms (its logical kind and its native type), how the text of one of
 * its values in SQL_REDO (the spec's "Oracle text form", read by sql-redo-parser.ts) becomes the canonical text
 * of its kind (docs/value-kinds.md), and back (`oracleText`, which the apply side and the simulator use).
 *
 * Why text in, text out: LogMiner gives values only as literals inside SQL_REDO, printed under the mining
 * session's NLS settings, which sitesync pins (NLS_DATE_FORMAT 'YYYY-MM-DD HH24:MI:SS', NLS_TIMESTAMP_FORMAT
 * 'YYYY-MM-DD HH24:MI:SS.FF9', NLS_TIMESTAMP_TZ_FORMAT 'YYYY-MM-DD HH24:MI:SS.FF9 TZH:TZM',
 * NLS_NUMERIC_CHARACTERS '.,', session TIME_ZONE '+00:00'). Nothing goes through a JavaScript number or Date
 * except BINARY_FLOAT/BINARY_DOUBLE, which are IEEE values to begin with.
 *
 * Read leniently where Oracle's printing varies, strictly otherwise (anything else is a DecodeError naming the
 * column, its type and a short preview of the value):
 * - NUMBER: any plain or exponent notation (`.5`, `-.5`, `12`, `1E+20`, `1.5E-7`; Oracle drops trailing zeros
 *   and the leading 0), brought to the column's scale by adding zeros only (normalizeDecimal refuses what would
 *   round); without a declared scale (NUMBER, FLOAT) the shortest text, as a NUMBER has no display scale. NUMBER(p,0) with p ≤ 18 is an integer kind; NUMBER(*,0), what INTEGER/INT/SMALLINT are in
 *   ALL_TAB_COLUMNS (precision null, scale 0), is decimal(38,0): Oracle keeps 38 digits for it.
 * - BINARY_FLOAT/BINARY_DOUBLE: decimal or exponent text (`1.5`, `1.5E+000`), `Inf`, `-Inf`, `Nan` (Oracle's
 *   spellings); a BINARY_FLOAT's text is read as the nearest double, then rounded to 32 bits (Oracle prints
 *   enough digits for that to be the value it holds).
 * - DATE `YYYY-MM-DD HH24:MI:SS`; TIMESTAMP `… HH24:MI:SS[.f]` with 0 to 9 fraction digits (`.` alone too:
 *   Debezium has seen `2020-02-01 00:00:00.`); digits past the microsecond are rounded half to even, as
 *   PostgreSQL rounds its input (documented, not refused; a round-up carries into seconds, days, years).
 *   Years 0001 to 9999 only: Oracle's BC dates print ambiguously under 'YYYY', and LogMiner has been seen to
 *   write year 0000 for invalid dates; both refused.
 * - TIMESTAMP WITH TIME ZONE: then ` +HH:MM` / `-HH:MM` (the space optional), converted to UTC `+00`. A value
 *   stored with a region (`Europe/Paris`) prints its region instead of an offset: refused with the fix.
 *   WITH LOCAL TIME ZONE prints in the session's zone, which sitesync sets to UTC; an offset is honoured.
 * - INTERVAL DAY TO SECOND `[+|-]D… HH:MI:SS[.f…]`, INTERVAL YEAR TO MONTH `[+|-]Y…-MM` (Oracle's text, as in
 *   `TO_DSINTERVAL('-001 02:03:04.56')`, `TO_YMINTERVAL('-03-06')`): to PostgreSQL's ISO 8601 (days and time
 *   with the interval's one sign; months).
 * - RAW/LONG RAW/BLOB: hex digits in either case (HEXTORAW), an odd count padded with a leading 0 as HEXTORAW
 *   does; `\x` and lower case.
 * - Strings as they are (CHAR keeps its padding); a string that is not well-formed UTF-16 (a lone surrogate from
 *   a broken UNISTR escape) is refused. Oracle stores '' as NULL, so a non-NULL value is never empty from Oracle.
 */
import { DecodeError } from '../../src/errors.ts';
import type { NativeType, ValueKind } from '../../src/events/value-kind.ts';
import { decimalKind, formatKind, simpleKind } from '../../src/events/value-kind.ts';
import {
  civilToDays,
  daysToCivil,
  formatFloat32,
  formatFloat64,
  formatInterval,
  type IntervalValue,
  MICROS_PER_DAY,
  microsToTimestampText,
  normalizeDecimal,
  parseValue,
  ValueFormatError,
} from '../../src/events/value-parser.ts';
import type { OracleColumn } from './logminer-reader.ts';

type Family =
  | 'number'
  | 'float'
  | 'binary_float'
  | 'binary_double'
  | 'string'
  | 'raw'
  | 'date'
  | 'timestamp'
  | 'timestamptz'
  | 'timestampltz'
  | 'interval_ds'
  | 'interval_ym'
  | 'other';

const STRINGS = new Set(['VARCHAR2', 'VARCHAR', 'NVARCHAR2', 'CHAR', 'NCHAR', 'CLOB', 'NCLOB', 'LONG']);
const BYTES = new Set(['RAW', 'BLOB', 'LONG RAW']);
const LOBS = new Set(['CLOB', 'NCLOB', 'BLOB']);

function upper(column: OracleColumn): string {
  return column.type.trim().toUpperCase();
}

function family(column: OracleColumn): Family {
  const type = upper(column);
  if (type === 'NUMBER') return 'number';
  if (type === 'FLOAT') return 'float';
  if (type === 'BINARY_FLOAT') return 'binary_float';
  if (type === 'BINARY_DOUBLE') return 'binary_double';
  if (STRINGS.has(type)) return 'string';
  if (BYTES.has(type)) return 'raw';
  if (type === 'DATE') return 'date';
  if (type.startsWith('TIMESTAMP')) {
    if (type.endsWith('WITH LOCAL TIME ZONE')) return 'timestampltz';
    if (type.endsWith('WITH TIME ZONE')) return 'timestamptz';
    return 'timestamp';
  }
  if (type.startsWith('INTERVAL DAY')) return 'interval_ds';
  if (type.startsWith('INTERVAL YEAR')) return 'interval_ym';
  return 'other'; // XMLTYPE, ROWID, UROWID, SDO_GEOMETRY, JSON, object types…
}

export function kindOf(column: OracleColumn): ValueKind {
  switch (family(column)) {
    case 'number': {
      const { precision: p, scale: s } = column;
      if (p === null) return s === 0 ? decimalKind(38, 0) : decimalKind(null, null);
      if (s === 0 || s === null) {
        if (p <= 4) return simpleKind('int16');
        if (p <= 9) return simpleKind('int32');
        if (p <= 18) return simpleKind('int64');
        return decimalKind(p, 0);
      }
      return decimalKind(p, s);
    }
    case 'float':
      return decimalKind(null, null);
    case 'binary_float':
      return simpleKind('float32');
    case 'binary_double':
      return simpleKind('float64');
    case 'string':
      return simpleKind('string');
    case 'raw':
      return simpleKind('bytes');
    case 'date':
    case 'timestamp':
      return simpleKind('timestamp');
    case 'timestamptz':
    case 'timestampltz':
      return simpleKind('timestamptz');
    case 'interval_ds':
    case 'interval_ym':
      return simpleKind('interval');
    default:
      return simpleKind('other');
  }
}

/** The Oracle type with its parameters, as a CREATE TABLE would say it: `NUMBER(12,2)`, `VARCHAR2(40)`, `TIMESTAMP(6) WITH TIME ZONE`. */
export function nativeTypeName(column: OracleColumn): string {
  const type = upper(column);
  const length = column.charLength > 0 ? column.charLength : column.dataLength;
  switch (type) {
    case 'NUMBER': {
      const { precision: p, scale: s } = column;
      if (p === null) return s === 0 ? 'NUMBER(*,0)' : 'NUMBER';
      return s === 0 || s === null ? `NUMBER(${p})` : `NUMBER(${p},${s})`;
    }
    case 'FLOAT':
      return column.precision === null ? 'FLOAT' : `FLOAT(${column.precision})`;
    case 'VARCHAR2':
    case 'VARCHAR':
    case 'NVARCHAR2':
    case 'CHAR':
    case 'NCHAR':
      return `${type}(${length})`;
    case 'RAW':
      return `RAW(${column.dataLength})`;
  }
  // TIMESTAMP without its precision in DATA_TYPE (some views): ALL_TAB_COLUMNS puts it in DATA_SCALE.
  if (type.startsWith('TIMESTAMP') && !type.startsWith('TIMESTAMP(') && column.scale !== null) {
    return `TIMESTAMP(${column.scale})${type.slice('TIMESTAMP'.length)}`;
  }
  return type;
}

export function nativeOf(column: OracleColumn): NativeType {
  return { name: nativeTypeName(column), id: 0, modifier: -1 };
}

/** CLOB, NCLOB, BLOB: LogMiner writes their values through separate LOB rows (EMPTY_CLOB() in the statement). */
export function isLob(column: OracleColumn): boolean {
  return LOBS.has(upper(column));
}

// ─── Oracle text → canonical text ────────────────────────────────────────────────────────────────────────

/**
 * The canonical text of a value in its column's kind, from its Oracle text form; null for NULL. Throws
 * DecodeError for text its type cannot have (a LogMiner form not foreseen here, never silently misread).
 */
export function canonicalText(column: OracleColumn, text: string | null): string | null {
  if (text === null) return null;
  const kind = kindOf(column);
  const bad = (why: string): never => {
    const shown = JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text);
    throw new DecodeError(`Oracle value of column ${column.name} (${nativeTypeName(column)}) is ${shown}: ${why}`);
  };
  switch (family(column)) {
    case 'number':
    case 'float':
      return readNumber(text, kind, bad);
    case 'binary_float':
    case 'binary_double': {
      const single = family(column) === 'binary_float';
      const x = readIeee(text, bad);
      if (!single) return formatFloat64(x);
      const f = Math.fround(x);
      if (!Number.isFinite(f) && Number.isFinite(x)) return bad('out of the BINARY_FLOAT range');
      return formatFloat32(f);
    }
    case 'string':
      if (!wellFormed(text)) return bad('not well-formed UTF-16 (a lone surrogate)');
      return text;
    case 'raw': {
      if (!/^[0-9A-Fa-f]*$/.test(text)) return bad('not hex digits');
      return `\\x${(text.length % 2 === 1 ? `0${text}` : text).toLowerCase()}`;
    }
    case 'date': {
      const r = readDateTime(text, bad);
      if (r.fraction !== null || r.rest !== '') return bad('expected YYYY-MM-DD HH24:MI:SS');
      return microsToTimestampText(r.micros);
    }
    case 'timestamp': {
      const r = readDateTime(text, bad);
      if (r.rest !== '') return bad('expected YYYY-MM-DD HH24:MI:SS.FF');
      return microsToTimestampText(r.micros);
    }
    case 'timestamptz':
    case 'timestampltz': {
      const r = readDateTime(text, bad);
      if (r.rest === '' && family(column) === 'timestampltz') return microsToTimestampText(r.micros, true);
      return microsToTimestampText(r.micros - readOffset(r.rest, bad), true);
    }
    case 'interval_ds':
      return formatInterval(readDaySecond(text, bad));
    case 'interval_ym':
      return formatInterval(readYearMonth(text, bad));
    default:
      return text;
  }
}

function readNumber(text: string, kind: ValueKind, bad: (why: string) => never): string {
  if (!/^-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$/.test(text)) return bad('not a number');
  const asDecimal = kind.kind === 'decimal' ? kind : decimalKind(19, 0);
  let out: string;
  try {
    out = normalizeDecimal(text, asDecimal);
  } catch (error) {
    return bad(error instanceof ValueFormatError ? error.reason : String(error));
  }
  // A NUMBER has no display scale (Oracle prints 1.5, never 1.50): without a declared scale, the shortest text.
  if (kind.kind === 'decimal') return kind.scale === null && out.includes('.') ? out.replace(/\.?0+$/, '') : out;
  const n = BigInt(out);
  const limit = kind.kind === 'int16' ? 32767n : kind.kind === 'int32' ? 2147483647n : 9223372036854775807n;
  if (n > limit || n < -limit - 1n) return bad(`out of the ${formatKind(kind)} range`);
  return out;
}

function readIeee(text: string, bad: (why: string) => never): number {
  if (text === 'Inf' || text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (text === 'Nan') return NaN;
  if (!/^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$/.test(text)) return bad('not a number (nor Inf, -Inf, Nan)');
  return Number(text);
}

function wellFormed(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = text.charCodeAt(i + 1);
      if (!(d >= 0xdc00 && d <= 0xdfff)) return false;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) {
      return false;
    }
  }
  return true;
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

/** Nanosecond digits (0 to 9 of them) to microseconds, the rest rounded half to even. */
function fractionMicros(digits: string): bigint {
  const nanos = BigInt(digits.padEnd(9, '0'));
  let micros = nanos / 1000n;
  const rest = nanos % 1000n;
  if (rest > 500n || (rest === 500n && micros % 2n === 1n)) micros += 1n;
  return micros;
}

const DATE_TIME = /^([0-9]{4})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{0,9}))?/;

/** `YYYY-MM-DD HH24:MI:SS[.f{0,9}]` at the start of the text: microseconds since 1970 and what follows. */
function readDateTime(text: string, bad: (why: string) => never): { micros: bigint; fraction: string | null; rest: string } {
  const m = DATE_TIME.exec(text);
  if (!m) return bad('expected YYYY-MM-DD HH24:MI:SS[.FF]');
  const [year, month, day, h, min, s] = [m[1], m[2], m[3], m[4], m[5], m[6]].map(Number) as [number, number, number, number, number, number];
  if (year < 1) return bad('year 0000 (or a BC year) has no YYYY form sitesync can read');
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return bad('no such day');
  if (h > 23 || min > 59 || s > 59) return bad('no such time of day');
  const fraction = m[7] ?? null;
  const micros = BigInt(civilToDays(year, month, day)) * MICROS_PER_DAY + BigInt((h * 60 + min) * 60 + s) * 1_000_000n + fractionMicros(fraction ?? '');
  return { micros, fraction, rest: text.slice(m[0].length) };
}

/** ` +HH:MM` (the space optional) as microseconds east of UTC; a region name refused with the fix. */
function readOffset(rest: string, bad: (why: string) => never): bigint {
  const m = /^ ?([-+])([0-9]{1,2}):([0-9]{2})$/.exec(rest);
  if (!m) {
    if (/^ ?[A-Za-z]/.test(rest)) {
      return bad(
        'the value has a time zone region, not an offset: sitesync reads only offsets (its session prints TZH:TZM); ' +
          "store offsets in this column (FROM_TZ(CAST(c AS TIMESTAMP), TZ_OFFSET(...)) or c AT TIME ZONE '+00:00')",
      );
    }
    return bad('expected a time zone offset ±HH:MM after the time');
  }
  const hours = Number(m[2]);
  const minutes = Number(m[3]);
  if (hours > 14 || minutes > 59) return bad('offset out of range');
  const total = BigInt(hours * 60 + minutes) * 60_000_000n;
  return m[1] === '-' ? -total : total;
}

function readDaySecond(text: string, bad: (why: string) => never): IntervalValue {
  const m = /^([-+]?)([0-9]{1,9}) ([0-9]{1,2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{0,9}))?$/.exec(text);
  if (!m) return bad('expected [+|-]DD HH:MI:SS[.FF] (INTERVAL DAY TO SECOND)');
  const h = Number(m[3]);
  const min = Number(m[4]);
  const s = Number(m[5]);
  if (h > 23 || min > 59 || s > 59) return bad('hours, minutes or seconds out of range');
  let days = Number(m[2]);
  let micros = BigInt((h * 60 + min) * 60 + s) * 1_000_000n + fractionMicros(m[6] ?? '');
  // 23:59:59.9999995 rounds up to a whole day: carried into the days, as Oracle keeps hours under 24 (so
  // the value reads back the same from the text oracleText writes for it).
  if (micros >= MICROS_PER_DAY) {
    days += 1;
    micros -= MICROS_PER_DAY;
  }
  const negative = m[1] === '-';
  return { months: 0, days: negative && days !== 0 ? -days : days, micros: negative ? -micros : micros };
}

function readYearMonth(text: string, bad: (why: string) => never): IntervalValue {
  const m = /^([-+]?)([0-9]{1,9})-([0-9]{1,2})$/.exec(text);
  if (!m) return bad('expected [+|-]YY-MM (INTERVAL YEAR TO MONTH)');
  const months = Number(m[2]) * 12 + Number(m[3]);
  if (Number(m[3]) > 11) return bad('months out of range');
  if (months > 2147483647) return bad('out of range');
  return { months: m[1] === '-' && months !== 0 ? -months : months, days: 0, micros: 0n };
}

// ─── canonical text → Oracle text ────────────────────────────────────────────────────────────────────────

/**
 * The Oracle text form of a canonical text of the column's kind: what the simulator stores and what a sink
 * binds (inside TO_DATE/TO_TIMESTAMP/TO_TIMESTAMP_TZ/TO_DSINTERVAL/TO_YMINTERVAL/HEXTORAW under the same NLS
 * formats). Throws ValueFormatError for text that is not canonical for the kind or a value the Oracle type
 * cannot hold (a NUMBER has no NaN or infinity; a DATE has whole seconds; years 1 to 9999; an INTERVAL DAY TO
 * SECOND has no months, a YEAR TO MONTH nothing but months). Oracle prints numbers without trailing fraction
 * zeros and without the 0 before the point (`.5`); so does this. An interval DAY TO SECOND is written with one
 * sign: PostgreSQL's `P1DT-1H` becomes `+00 23:00:00.000000000` (which reads back as `PT23H`).
 */
export function oracleText(column: OracleColumn, canonical: string): string {
  const kind = kindOf(column);
  const value = parseValue(canonical, kind);
  const refuse = (why: string): never => {
    throw new ValueFormatError(kind, canonical.length > 40 ? `${canonical.slice(0, 40)}…` : canonical, `${nativeTypeName(column)} ${why}`);
  };
  switch (family(column)) {
    case 'number':
    case 'float':
      if (canonical === 'NaN' || canonical.endsWith('Infinity')) return refuse('has no NaN or infinity');
      return oracleDecimal(canonical);
    case 'binary_float':
    case 'binary_double':
      if (canonical === 'NaN') return 'Nan';
      if (canonical === 'Infinity') return 'Inf';
      if (canonical === '-Infinity') return '-Inf';
      return canonical.replace('e', 'E');
    case 'raw':
      return (value as Buffer).toString('hex').toUpperCase();
    case 'date':
    case 'timestamp':
    case 'timestamptz':
    case 'timestampltz': {
      if (typeof value !== 'bigint') return refuse('has no infinity');
      let days = value / MICROS_PER_DAY;
      let rest = value % MICROS_PER_DAY;
      if (rest < 0n) {
        days -= 1n;
        rest += MICROS_PER_DAY;
      }
      const { year, month, day } = daysToCivil(Number(days));
      if (year < 1 || year > 9999) return refuse('holds years 1 to 9999 only');
      const seconds = rest / 1_000_000n;
      const micros = rest % 1_000_000n;
      const date = `${pad(year, 4)}-${pad(month, 2)}-${pad(day, 2)} ${clock(seconds)}`;
      const f = family(column);
      if (f === 'date') {
        if (micros !== 0n) return refuse('holds whole seconds');
        return date;
      }
      const fraction = `.${micros.toString().padStart(6, '0')}000`;
      return f === 'timestamptz' ? `${date}${fraction} +00:00` : `${date}${fraction}`;
    }
    case 'interval_ds': {
      const v = value as IntervalValue;
      if (v.months !== 0) return refuse('has no months');
      const total = BigInt(v.days) * MICROS_PER_DAY + v.micros;
      const abs = total < 0n ? -total : total;
      const days = abs / MICROS_PER_DAY;
      const rest = abs % MICROS_PER_DAY;
      return `${total < 0n ? '-' : '+'}${days.toString().padStart(2, '0')} ${clock(rest / 1_000_000n)}.${(rest % 1_000_000n).toString().padStart(6, '0')}000`;
    }
    case 'interval_ym': {
      const v = value as IntervalValue;
      if (v.days !== 0 || v.micros !== 0n) return refuse('holds years and months only');
      const abs = Math.abs(v.months);
      return `${v.months < 0 ? '-' : '+'}${pad(Math.trunc(abs / 12), 2)}-${pad(abs % 12, 2)}`;
    }
    default:
      return canonical;
  }
}

/** A canonical decimal as Oracle prints a NUMBER: no trailing fraction zeros, no `0` before the point. */
function oracleDecimal(canonical: string): string {
  let text = canonical;
  if (text.includes('.')) text = text.replace(/0+$/, '').replace(/\.$/, '');
  if (text.startsWith('0.')) text = text.slice(1);
  else if (text.startsWith('-0.')) text = `-${text.slice(2)}`;
  return text === '-0' ? '0' : text;
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}

function clock(seconds: bigint): string {
  const s = Number(seconds);
  return `${pad(Math.trunc(s / 3600), 2)}:${pad(Math.trunc(s / 60) % 60, 2)}:${pad(s % 60, 2)}`;
}
