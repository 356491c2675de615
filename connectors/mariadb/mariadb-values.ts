/**
 * A binlog row value (as zongji decodes it, see binlog-reader.ts for its settings) to the canonical text of
 * its column's kind (docs/value-kinds.md):
 *
 *   boolean      t / f
 *   int16…int64  decimal digits (BIGINT beyond 2^53 arrives as an exact string)
 *   float32/64   PostgreSQL's shortest exact text: 1.5, 1e+100, 1.1 (a FLOAT's float32, not its double)
 *   decimal      plain digits with the declared scale: 1.50 (zongji's exact string)
 *   string/enum  as is; SET as MariaDB prints it (members joined by commas)
 *   json         the JSON text (MariaDB's JSON is a LONGTEXT: as stored)
 *   bytes        \x and lower-case hex
 *   date         YYYY-MM-DD
 *   time         HH:MM:SS[.ffffff], trailing zeros of the fraction trimmed
 *   timestamp    YYYY-MM-DD HH:MM:SS[.ffffff] (DATETIME: no time zone)
 *   timestamptz  the same in UTC with +00 (TIMESTAMP: MariaDB stores UTC seconds; zongji prints them in UTC)
 *   uuid         8-4-4-4-12 lower-case hex
 *   other        the MariaDB text form: BIT(n) as n binary digits, INET4/INET6 as MariaDB prints them
 *
 * Values with no canonical form are never changed to fit one. A zero or partial date (`0000-00-00`,
 * `2020-00-05`), a zero DATETIME/TIMESTAMP, a TIME outside 00:00:00–23:59:59 (MariaDB's TIME is an interval
 * of ±838 hours), a TINYINT(1) that holds neither 0 nor 1: each keeps its column's kind and travels as the
 * text MariaDB prints for it, so that a sink of any kind refuses it as a data error with the value in the
 * reason, and a MariaDB sink (whose server accepts it) stores exactly what was read.
 */
import { DecodeError } from '../../src/errors.ts';
import { formatFloat32, formatFloat64, normalizeDecimal, parseValue } from '../../src/events/value-parser.ts';
import type { ValueKind } from '../../src/events/value-kind.ts';
import type { MariaDbColumnType } from './mariadb-kinds.ts';

export type ValueFormatter = (value: unknown) => string | null;

/** The formatter for one column (made once per table-map, used for every row). */
export function valueFormatter(type: MariaDbColumnType, describe: () => string): ValueFormatter {
  const format = formatterFor(type, describe);
  return (value) => (value === null || value === undefined ? (value === undefined ? undefinedValue(type, describe) : null) : format(value));
}

/** zongji gives undefined for an ENUM's error value (index 0, the empty string) and for types it cannot read. */
function undefinedValue(type: MariaDbColumnType, describe: () => string): string {
  if (type.shape === 'enum') return '';
  throw new DecodeError(`binlog value of ${describe()} (${type.native.name}) could not be decoded`);
}

function formatterFor(type: MariaDbColumnType, describe: () => string): (value: unknown) => string {
  const unexpected = (value: unknown): never => {
    const shown = Buffer.isBuffer(value) ? `${value.length} bytes` : typeof value;
    throw new DecodeError(`binlog value of ${describe()} (${type.native.name}) is ${shown}, not what its type holds`);
  };
  switch (type.shape) {
    case 'boolean':
      // Anything but 0 and 1 has no boolean form: it goes as the number, and a sink refuses it.
      return (v) => (v === 0 ? 'f' : v === 1 ? 't' : typeof v === 'number' ? String(v) : unexpected(v));
    case 'integer':
      return (v) => (typeof v === 'number' && Number.isInteger(v) ? String(v) : typeof v === 'string' && /^-?\d+$/.test(v) ? v : typeof v === 'bigint' ? v.toString() : unexpected(v));
    case 'year':
      // zongji adds 1900 to the stored byte, so YEAR 0000 (stored as 0) arrives as 1900, a year YEAR cannot hold.
      return (v) => (v === 1900 ? '0' : typeof v === 'number' ? String(v) : unexpected(v));
    case 'float32':
      // zongji widens the stored float32 to a double; its shortest text is the float32's own.
      return (v) => (typeof v === 'number' ? formatFloat32(Math.fround(v)) : unexpected(v));
    case 'float64':
      return (v) => (typeof v === 'number' ? formatFloat64(v) : unexpected(v));
    case 'decimal': {
      const kind = type.kind;
      // zongji prints DECIMAL exactly with the declared scale; normalizing refuses anything else.
      return (v) => (typeof v === 'string' || typeof v === 'number' ? normalizeDecimal(String(v), kind) : unexpected(v));
    }
    case 'text':
    case 'json':
    case 'enum':
    case 'set':
      // A Buffer here is a column in a character set zongji cannot decode (dec8, hp8, keybcs2, swe7…).
      return (v) => (typeof v === 'string' ? v : unexpected(v));
    case 'bytes': {
      const width = type.width;
      return (v) => {
        if (!Buffer.isBuffer(v)) return unexpected(v);
        if (width !== null && v.length < width) {
          // BINARY(n) is padded with zero bytes to n; the row image may leave them out.
          const padded = Buffer.alloc(width);
          v.copy(padded);
          return `\\x${padded.toString('hex')}`;
        }
        return `\\x${v.toString('hex')}`;
      };
    }
    case 'hex':
      return (v) => (Buffer.isBuffer(v) ? `\\x${v.toString('hex')}` : typeof v === 'string' ? v : unexpected(v));
    case 'date':
    case 'time':
    case 'datetime': {
      const kind = type.kind;
      return (v) => (typeof v === 'string' ? canonicalOrAsIs(trimFraction(v), v, kind) : unexpected(v));
    }
    case 'timestamp': {
      // Stored as UTC seconds, printed by zongji in UTC (binlog-reader.ts): the instant, at +00.
      const kind = type.kind;
      return (v) => (typeof v === 'string' ? canonicalOrAsIs(`${trimFraction(v)}+00`, v, kind) : unexpected(v));
    }
    case 'uuid':
      return (v) => (Buffer.isBuffer(v) && v.length <= 16 ? formatUuid(v) : typeof v === 'string' ? v : unexpected(v));
    case 'inet4':
      return (v) => (Buffer.isBuffer(v) && v.length <= 4 ? [...pad(v, 4)].join('.') : typeof v === 'string' ? v : unexpected(v));
    case 'inet6':
      return (v) => (Buffer.isBuffer(v) && v.length <= 16 ? formatInet6(pad(v, 16)) : typeof v === 'string' ? v : unexpected(v));
    case 'bit': {
      const bits = type.width ?? 1;
      return (v) => {
        if (!Buffer.isBuffer(v)) return unexpected(v);
        let text = '';
        for (const byte of v) text += byte.toString(2).padStart(8, '0');
        return text.slice(Math.max(0, text.length - bits)).padStart(bits, '0');
      };
    }
    case 'geometry':
      // zongji parses WKB into points and drops the SRID: what it gives is all there is (see the report).
      return (v) => JSON.stringify(v);
  }
}

function pad(value: Buffer, width: number): Buffer {
  if (value.length >= width) return value;
  const padded = Buffer.alloc(width);
  value.copy(padded);
  return padded;
}

/** `HH:MM:SS.120000` → `HH:MM:SS.12`, `…:05.000` → `…:05`. */
export function trimFraction(text: string): string {
  const dot = text.lastIndexOf('.');
  if (dot < 0) return text;
  let end = text.length;
  while (end > dot + 1 && text.charCodeAt(end - 1) === 48) end--;
  return end === dot + 1 ? text.slice(0, dot) : text.slice(0, end);
}

/**
 * The canonical text when `candidate` is one (parseValue accepts only canonical text), else MariaDB's own
 * text as it came: a zero or partial date, a TIME past 24:00:00 or negative, a zero TIMESTAMP.
 */
function canonicalOrAsIs(candidate: string, asIs: string, kind: ValueKind): string {
  try {
    parseValue(candidate, kind);
    return candidate;
  } catch {
    return asIs;
  }
}

export function formatUuid(bytes: Buffer): string {
  const hex = pad(bytes, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** MariaDB's INET6 text: RFC 5952, with IPv4-mapped and IPv4-compatible addresses dotted. */
export function formatInet6(bytes: Buffer): string {
  if (bytes.subarray(0, 10).every((b) => b === 0)) {
    const v4 = [...bytes.subarray(12)].join('.');
    if (bytes[10] === 0xff && bytes[11] === 0xff) return `::ffff:${v4}`;
    if (bytes[10] === 0 && bytes[11] === 0 && bytes.readUInt32BE(12) > 1) return `::${v4}`;
  }
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i));
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (g: number): string => g.toString(16);
  if (bestStart < 0) return groups.map(hex).join(':');
  return `${groups.slice(0, bestStart).map(hex).join(':')}::${groups.slice(bestStart + bestLength).map(hex).join(':')}`;
}
