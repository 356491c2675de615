/**
 * Value kinds in ClickHouse: the column type sitesync creates for each kind, and for each (kind, column type)
 * a codec that writes a canonical text (docs/value-kinds.md) as the JSON value ClickHouse's JSONEachRow input
 * takes, and reads what a query returns (under READ_SETTINGS) back into the same canonical text.
 *
 * | kind | ClickHouse type | notes |
 * |---|---|---|
 * | boolean | Bool | |
 * | int16, int32, int64 | Int16, Int32, Int64 | |
 * | float32, float64 | Float32, Float64 | NaN, ±Infinity and -0 kept; Float32 is read through Float64 (exact) |
 * | decimal(p,s), p ≤ 76, 0 ≤ s ≤ p | Decimal(p, s) | NaN and ±Infinity go to `_sitesync_special` |
 * | decimal (bare, p > 76, negative scale, s > p) | String | the canonical text, exact |
 * | string, enum, other, json, interval, struct | String | the canonical text |
 * | bytes | String | lowercase hex without `\x` (`unhex(col)` is the binary value) |
 * | uuid | UUID | |
 * | date | Date32 | outside 1900-01-01 … 2299-12-31, and ±infinity, go to `_sitesync_special` |
 * | time | Time64(6) (ClickHouse 25.6 and later), else String | `24:00:00` fits Time64 |
 * | timestamp, timestamptz | DateTime64(6, 'UTC') | both: a timestamp without zone keeps its wall-clock time read as UTC, so it prints as the source printed it whatever the server's zone (in a zone with summer time some wall-clock times would not exist); outside 1900 … 2299 and ±infinity go to `_sitesync_special` |
 * | array<k> | Array(Nullable(T)) for k's type T | one dimension with lower bound 1; any other array, an element that needs `_sitesync_special`, and NULL (ClickHouse arrays cannot be NULL; `[]` is written) go to `_sitesync_special` whole |
 * | array<struct> | String | the canonical text |
 *
 * `_sitesync_special` is JSON, `{"column": "exact canonical text"}` (`null` for a NULL array), for the values a
 * typed column cannot hold; the typed column then holds NULL (`[]` for an array). A key column cannot be NULL,
 * so a key value that would need it is a data error. Any column an operator turns into String (`ALTER TABLE …
 * MODIFY COLUMN c Nullable(String)`) takes every kind as its canonical text.
 *
 * ClickHouse silently clamps dates, truncates decimals and wraps integers it cannot hold; every value is
 * checked here first (parseValue reads it exactly as its kind says), so none of that ever happens.
 */
import { decimalKind, simpleKind, arrayKind, type ValueKind } from '../../src/events/value-kind.ts';
import { arrayDimensions, arrayLowerBounds, civilToDays, formatFloat32, formatFloat64, formatValue, parseValue, type NeutralArray, type NeutralValue } from '../../src/events/value-parser.ts';

/** What the server can store, found once per sink. */
export interface Capabilities {
  /** The server has Time64 (25.6 and later). */
  readonly time64: boolean;
}

/** A value as an insert carries it, or the exact text `_sitesync_special` keeps because the column cannot. */
export type Written = { readonly value: unknown; readonly special?: undefined } | { readonly value: unknown; readonly special: { readonly text: string | null } };

export interface ColumnCodec {
  /** The column's type as the server states it. */
  readonly type: string;
  /** The column takes NULL (Nullable(…)). */
  readonly nullable: boolean;
  /** Canonical text (null: SQL NULL) to what an insert writes; throws a one-line Error for a value that is not its kind's. */
  write(text: string | null): Written;
  /** The expression a query selects the column by (`name` quoted), so that `read` gets an exact value. */
  select(quoted: string): string;
  /** A value as a query returned it, to canonical text. */
  read(value: unknown): string | null;
}

const DATE32_MIN = civilToDays(1900, 1, 1);
const DATE32_MAX = civilToDays(2299, 12, 31);
/** DateTime64(6)'s range, in microseconds since 1970. */
export const DATETIME64_MIN_MICROS = BigInt(DATE32_MIN) * 86_400_000_000n;
export const DATETIME64_MAX_MICROS = (BigInt(DATE32_MAX) + 1n) * 86_400_000_000n - 1n;

const TIMESTAMP_TYPE = "DateTime64(6, 'UTC')";

/** The ClickHouse type sitesync creates for a kind, without Nullable. */
export function baseTypeFor(kind: ValueKind, capabilities: Capabilities): string {
  switch (kind.kind) {
    case 'boolean':
      return 'Bool';
    case 'int16':
      return 'Int16';
    case 'int32':
      return 'Int32';
    case 'int64':
      return 'Int64';
    case 'float32':
      return 'Float32';
    case 'float64':
      return 'Float64';
    case 'decimal': {
      const fixed = fixedDecimal(kind);
      return fixed ? `Decimal(${fixed.precision}, ${fixed.scale})` : 'String';
    }
    case 'uuid':
      return 'UUID';
    case 'date':
      return 'Date32';
    case 'time':
      return capabilities.time64 ? 'Time64(6)' : 'String';
    case 'timestamp':
    case 'timestamptz':
      return TIMESTAMP_TYPE;
    case 'array':
      return kind.element.kind === 'struct' ? 'String' : `Array(Nullable(${baseTypeFor(kind.element, capabilities)}))`;
    default:
      return 'String';
  }
}

/** The column type: NULL-able unless it is a key column (or an array, which ClickHouse cannot make Nullable). */
export function columnTypeFor(kind: ValueKind, nullable: boolean, capabilities: Capabilities): string {
  const base = baseTypeFor(kind, capabilities);
  return nullable && !base.startsWith('Array(') ? `Nullable(${base})` : base;
}

/** decimal(p,s) as ClickHouse's Decimal(P, S) takes it (P ≤ 76, 0 ≤ S ≤ P), or null. */
function fixedDecimal(kind: ValueKind & { kind: 'decimal' }): { precision: number; scale: number } | null {
  if (kind.precision === null || kind.precision > 76) return null;
  const scale = kind.scale ?? 0;
  return scale >= 0 && scale <= kind.precision ? { precision: kind.precision, scale } : null;
}

/** `Wrapper(inner)` → inner, else null. */
function unwrap(type: string, wrapper: string): string | null {
  return type.startsWith(`${wrapper}(`) && type.endsWith(')') ? type.slice(wrapper.length + 1, -1) : null;
}

/** A type without LowCardinality and Nullable, and whether it takes NULL. */
function bare(type: string): { base: string; nullable: boolean } {
  let base = type.trim();
  const low = unwrap(base, 'LowCardinality');
  if (low !== null) base = low;
  const inner = unwrap(base, 'Nullable');
  return inner === null ? { base, nullable: false } : { base: inner, nullable: true };
}

/**
 * The codec of a column of ClickHouse type `type` holding values of `kind`, or null when that type cannot
 * hold that kind exactly (the column's kind changed at the source: a schema error for the caller).
 */
export function codecFor(kind: ValueKind, type: string): ColumnCodec | null {
  const { base, nullable } = bare(type);
  const scalar = scalarCodec(kind, base);
  if (scalar) return finish(type, nullable, scalar);
  if (kind.kind !== 'array') return null;
  const inner = unwrap(base, 'Array');
  if (inner === null) return null;
  const element = bare(inner);
  const elementCodec = scalarCodec(kind.element, element.base);
  if (!elementCodec || unwrap(element.base, 'Array') !== null) return null;
  return arrayCodec(type, kind, elementCodec);
}

/** The kind a column sitesync did not describe (dropped at the source) is read and written back as, or null. */
export function kindOfType(type: string): ValueKind | null {
  const { base } = bare(type);
  const simple: Readonly<Record<string, ValueKind>> = {
    Bool: simpleKind('boolean'),
    Int16: simpleKind('int16'),
    Int32: simpleKind('int32'),
    Int64: simpleKind('int64'),
    Float32: simpleKind('float32'),
    Float64: simpleKind('float64'),
    String: simpleKind('string'),
    UUID: simpleKind('uuid'),
    Date32: simpleKind('date'),
    'Time64(6)': simpleKind('time'),
    [TIMESTAMP_TYPE]: simpleKind('timestamp'),
  };
  if (Object.hasOwn(simple, base)) return simple[base]!;
  const decimal = /^Decimal\((\d+), (\d+)\)$/.exec(base);
  if (decimal) return decimalKind(Number(decimal[1]), Number(decimal[2]));
  const inner = unwrap(base, 'Array');
  if (inner !== null) {
    const element = kindOfType(inner);
    return element && element.kind !== 'array' ? arrayKind(element) : null;
  }
  return null;
}

/** How one non-NULL scalar goes in and comes out. */
interface Scalar {
  /** The parsed value (already checked against its kind) and its text, to the JSON value, or null: special. */
  write(value: NeutralValue, text: string): unknown | null;
  select?(quoted: string, type: string): string;
  read(value: unknown): string;
}

function finish(type: string, nullable: boolean, scalar: Scalar & { kind: ValueKind }): ColumnCodec {
  return {
    type,
    nullable,
    write(text) {
      if (text === null) {
        if (!nullable) throw new Error('NULL, which this column (a key column) cannot hold');
        return { value: null };
      }
      const value = parseValue(text, scalar.kind);
      const written = scalar.write(value, text);
      if (written !== null) return { value: written };
      if (!nullable) throw new Error(`${preview(text)}, which ${type} cannot hold (a key column has no _sitesync_special)`);
      return { value: null, special: { text } };
    },
    select: (quoted) => scalar.select?.(quoted, type) ?? quoted,
    read: (value) => (value === null || value === undefined ? null : scalar.read(value)),
  };
}

function arrayCodec(type: string, kind: ValueKind & { kind: 'array' }, element: Scalar & { kind: ValueKind }): ColumnCodec {
  return {
    type,
    nullable: false,
    write(text) {
      if (text === null) return { value: [], special: { text: null } };
      const value = parseValue(text, kind) as NeutralArray;
      if (value.length > 0 && (arrayDimensions(value, kind.element) !== 1 || arrayLowerBounds(value, kind.element).some((b) => b !== 1))) {
        return { value: [], special: { text } };
      }
      const out: unknown[] = [];
      for (const item of value) {
        if (item === null) {
          out.push(null);
          continue;
        }
        const written = element.write(item, formatValue(item, kind.element));
        if (written === null) return { value: [], special: { text } };
        out.push(written);
      }
      return { value: out };
    },
    select: (quoted) => (element.select ? `arrayMap(x -> ${element.select('x', type)}, ${quoted})` : quoted),
    read(value) {
      if (!Array.isArray(value)) throw new Error(`expected an array from ClickHouse, got ${typeof value}`);
      const items = value.map((item: unknown) => (item === null ? null : parseValue(element.read(item), kind.element)));
      return formatValue(items as NeutralArray, kind);
    },
  };
}

function scalarCodec(kind: ValueKind, base: string): (Scalar & { kind: ValueKind }) | null {
  const make = (scalar: Scalar): Scalar & { kind: ValueKind } => ({ ...scalar, kind });
  if (base === 'String') {
    // Any kind, as its canonical text; bytes as bare hex (the type sitesync gives bytes).
    if (kind.kind === 'bytes') return make({ write: (_v, text) => text.slice(2), read: (v) => `\\x${asString(v)}` });
    return make({ write: (_v, text) => text, read: asString });
  }
  switch (kind.kind) {
    case 'boolean':
      return base === 'Bool' ? make({ write: (v) => v === true, read: (v) => (v === true ? 't' : v === false ? 'f' : fail('a boolean', v)) }) : null;
    case 'int16':
    case 'int32':
      return base === (kind.kind === 'int16' ? 'Int16' : 'Int32') ? make({ write: (v) => v, read: (v) => (typeof v === 'number' && Number.isInteger(v) ? String(v) : fail('an integer', v)) }) : null;
    case 'int64':
      return base === 'Int64' ? make({ write: (_v, text) => text, read: asString }) : null;
    case 'float32':
    case 'float64': {
      if (base !== (kind.kind === 'float32' ? 'Float32' : 'Float64')) return null;
      const format = kind.kind === 'float32' ? (x: number) => formatFloat32(Math.fround(x)) : formatFloat64;
      return make({
        // The canonical text is the shortest that reads back as the value: ClickHouse reads it exactly.
        write: (_v, text) => (text === 'NaN' ? 'nan' : text === 'Infinity' ? 'inf' : text === '-Infinity' ? '-inf' : text),
        // Float32 is read as Float64, which holds it exactly and comes as shortest text (READ_SETTINGS).
        select: kind.kind === 'float32' ? (q) => `toFloat64(${q})` : undefined,
        read: (v) => format(readFloat(v)),
      });
    }
    case 'decimal': {
      const fixed = fixedDecimal(kind);
      if (!fixed || base !== `Decimal(${fixed.precision}, ${fixed.scale})`) return null;
      return make({ write: (_v, text) => (text === 'NaN' || text === 'Infinity' || text === '-Infinity' ? null : text), read: asString });
    }
    case 'uuid':
      return base === 'UUID' ? make({ write: (_v, text) => text, read: asString }) : null;
    case 'date':
      if (base !== 'Date32') return null;
      return make({ write: (v, text) => (typeof v === 'number' && v >= DATE32_MIN && v <= DATE32_MAX ? text : null), read: asString });
    case 'time':
      return base === 'Time64(6)' ? make({ write: (_v, text) => text, read: (v) => trimFraction(asString(v)) }) : null;
    case 'timestamp':
    case 'timestamptz': {
      if (base !== TIMESTAMP_TYPE) return null;
      const zone = kind.kind === 'timestamptz' ? '+00' : '';
      return make({
        write: (v, text) => (typeof v === 'bigint' && v >= DATETIME64_MIN_MICROS && v <= DATETIME64_MAX_MICROS ? (zone ? text.slice(0, -zone.length) : text) : null),
        read: (v) => `${trimFraction(asString(v))}${zone}`,
      });
    }
    default:
      return null;
  }
}

/** `12:00:00.500000` → `12:00:00.5`; `12:00:00.000000` → `12:00:00`. */
function trimFraction(text: string): string {
  return text.includes('.') ? text.replace(/0+$/, '').replace(/\.$/, '') : text;
}

function readFloat(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v !== 'string') return fail('a float', v);
  if (v === 'nan' || v === '-nan') return NaN;
  if (v === 'inf' || v === '+inf') return Infinity;
  if (v === '-inf') return -Infinity;
  const x = Number(v);
  return Number.isNaN(x) ? fail('a float', v) : x;
}

function asString(v: unknown): string {
  return typeof v === 'string' ? v : fail('text', v);
}

function fail(expected: string, got: unknown): never {
  throw new Error(`expected ${expected} from ClickHouse, got ${preview(JSON.stringify(got) ?? String(got))}`);
}

function preview(text: string): string {
  return JSON.stringify(text.length > 60 ? `${text.slice(0, 60)}…` : text);
}
