/**
 * Neutral kinds in DuckDB: which DuckDB type holds each kind, how a canonical text (docs/value-kinds.md)
 * becomes the value bound into that type, and how a stored value reads back as its canonical text.
 *
 * | kind                                   | DuckDB type                 |
 * |----------------------------------------|-----------------------------|
 * | boolean                                | BOOLEAN                     |
 * | int16, int32, int64                    | SMALLINT, INTEGER, BIGINT   |
 * | float32, float64                       | FLOAT (REAL), DOUBLE        |
 * | decimal(p,s), 1 ≤ p ≤ 38, 0 ≤ s ≤ p    | DECIMAL(p,s) (decimal(p): DECIMAL(p,0)) |
 * | decimal, or p > 38, or s < 0 or s > p  | VARCHAR holding the exact text |
 * | string, enum, struct, other            | VARCHAR (the text as it came) |
 * | bytes                                  | BLOB                        |
 * | date, time, timestamp, timestamptz     | DATE, TIME, TIMESTAMP, TIMESTAMP WITH TIME ZONE |
 * | interval, uuid                         | INTERVAL, UUID              |
 * | json                                   | JSON (VARCHAR when the engine has no JSON built in) |
 * | array<k>                               | k's type [] (a LIST)        |
 *
 * A valid value the typed column cannot hold is "unholdable": NaN in a DECIMAL, a timestamp past DuckDB's
 * last (294247-01-10 04:00:54.775806, where PostgreSQL goes on to 294276), an array with more than one
 * dimension or lower bounds other than 1 in a LIST. The sink stores NULL there and keeps the exact text in the
 * row's `_sitesync_special` JSON object, so nothing is lost. A text that is not canonical for its kind is
 * refused (ValueFormatError): that is a data error, never adjusted.
 *
 * Values are built with the node API's own constructors (the API is loaded only when a DuckDB site is used:
 * duckdb-connection.ts), so nothing goes through DuckDB's text casts, whose forms differ from PostgreSQL's
 * (BC dates, intervals, infinity).
 */
import type * as DuckDb from '@duckdb/node-api';
import { arrayDimensions, formatValue, parseValue, type IntervalValue, type NeutralArray, type NeutralValue } from '../../src/events/value-parser.ts';
import { arrayKind, decimalKind, simpleKind, type ValueKind } from '../../src/events/value-kind.ts';

type DuckDbApi = typeof DuckDb;

/** DuckDB types sitesync creates, by the name DuckDB's catalog gives them (duckdb_columns().data_type). */
export type DuckType =
  | {
      readonly name: 'BOOLEAN' | 'SMALLINT' | 'INTEGER' | 'BIGINT' | 'FLOAT' | 'DOUBLE' | 'VARCHAR' | 'JSON' | 'BLOB' | 'DATE' | 'TIME' | 'TIMESTAMP' | 'TIMESTAMP WITH TIME ZONE' | 'INTERVAL' | 'UUID';
    }
  | { readonly name: 'DECIMAL'; readonly width: number; readonly scale: number }
  | { readonly name: 'LIST'; readonly element: DuckType }
  /** A type sitesync never creates (someone altered the column): shown, never bound. */
  | { readonly name: 'UNKNOWN'; readonly text: string };

const SIMPLE_TYPES = new Set(['BOOLEAN', 'SMALLINT', 'INTEGER', 'BIGINT', 'FLOAT', 'DOUBLE', 'VARCHAR', 'JSON', 'BLOB', 'DATE', 'TIME', 'TIMESTAMP', 'TIMESTAMP WITH TIME ZONE', 'INTERVAL', 'UUID']);

/** DuckDB's widest DECIMAL. */
export const MAX_DECIMAL_WIDTH = 38;

/** The type's text, as DuckDB's catalog prints it and DDL takes it: `DECIMAL(12,2)`, `INTEGER[]`. */
export function typeText(type: DuckType): string {
  switch (type.name) {
    case 'DECIMAL':
      return `DECIMAL(${type.width},${type.scale})`;
    case 'LIST':
      return `${typeText(type.element)}[]`;
    case 'UNKNOWN':
      return type.text;
    default:
      return type.name;
  }
}

/** A type as DuckDB's catalog prints it; what sitesync does not create is UNKNOWN. */
export function parseTypeText(text: string): DuckType {
  if (text.endsWith('[]')) {
    const element = parseTypeText(text.slice(0, -2));
    return element.name === 'UNKNOWN' ? { name: 'UNKNOWN', text } : { name: 'LIST', element };
  }
  if (SIMPLE_TYPES.has(text)) return { name: text } as DuckType;
  const m = /^DECIMAL\(([0-9]{1,2}),([0-9]{1,2})\)$/.exec(text);
  if (m) return { name: 'DECIMAL', width: Number(m[1]), scale: Number(m[2]) };
  return { name: 'UNKNOWN', text };
}

/** The DuckDB type that holds `kind` (`json`: whether the engine has the JSON type built in). */
export function duckTypeOf(kind: ValueKind, json: boolean): DuckType {
  switch (kind.kind) {
    case 'boolean':
      return { name: 'BOOLEAN' };
    case 'int16':
      return { name: 'SMALLINT' };
    case 'int32':
      return { name: 'INTEGER' };
    case 'int64':
      return { name: 'BIGINT' };
    case 'float32':
      return { name: 'FLOAT' };
    case 'float64':
      return { name: 'DOUBLE' };
    case 'decimal': {
      const { precision, scale } = kind;
      // DuckDB's DECIMAL has 1 to 38 digits and a scale from 0 to the width; PostgreSQL's numeric goes further
      // (unconstrained, negative scales, scales above the precision): the exact text then, in a VARCHAR.
      if (precision === null || precision < 1 || precision > MAX_DECIMAL_WIDTH) return { name: 'VARCHAR' };
      const s = scale ?? 0;
      if (s < 0 || s > precision) return { name: 'VARCHAR' };
      return { name: 'DECIMAL', width: precision, scale: s };
    }
    case 'string':
    case 'enum':
    case 'struct':
    case 'other':
      return { name: 'VARCHAR' };
    case 'bytes':
      return { name: 'BLOB' };
    case 'date':
      return { name: 'DATE' };
    case 'time':
      return { name: 'TIME' };
    case 'timestamp':
      return { name: 'TIMESTAMP' };
    case 'timestamptz':
      return { name: 'TIMESTAMP WITH TIME ZONE' };
    case 'interval':
      return { name: 'INTERVAL' };
    case 'uuid':
      return { name: 'UUID' };
    case 'json':
      return json ? { name: 'JSON' } : { name: 'VARCHAR' };
    case 'array':
      return { name: 'LIST', element: duckTypeOf(kind.element, json) };
  }
}

/**
 * The kind whose canonical text a stored value of `type` reads back as. A VARCHAR holds the text as it came
 * whatever kind it was (string, enum, struct, other, an unconstrained decimal), so it reads as a string.
 */
export function kindOfDuckType(type: DuckType): ValueKind {
  switch (type.name) {
    case 'BOOLEAN':
      return simpleKind('boolean');
    case 'SMALLINT':
      return simpleKind('int16');
    case 'INTEGER':
      return simpleKind('int32');
    case 'BIGINT':
      return simpleKind('int64');
    case 'FLOAT':
      return simpleKind('float32');
    case 'DOUBLE':
      return simpleKind('float64');
    case 'DECIMAL':
      return decimalKind(type.width, type.scale);
    case 'VARCHAR':
    case 'UNKNOWN':
      return simpleKind('string');
    case 'JSON':
      return simpleKind('json');
    case 'BLOB':
      return simpleKind('bytes');
    case 'DATE':
      return simpleKind('date');
    case 'TIME':
      return simpleKind('time');
    case 'TIMESTAMP':
      return simpleKind('timestamp');
    case 'TIMESTAMP WITH TIME ZONE':
      return simpleKind('timestamptz');
    case 'INTERVAL':
      return simpleKind('interval');
    case 'UUID':
      return simpleKind('uuid');
    case 'LIST':
      return arrayKind(kindOfDuckType(type.element));
  }
}

/** A valid value its typed column cannot hold: stored NULL, its text kept in `_sitesync_special`. */
export const UNHOLDABLE: unique symbol = Symbol('unholdable');

/** DuckDB's ±infinity: the extreme int64 (timestamps) and int32 (dates) values; finite ones lie strictly between. */
const TIMESTAMP_INFINITY = 2n ** 63n - 1n;
const DATE_INFINITY = 2 ** 31 - 1;

/** Turns canonical texts into DuckDB values, and stored DuckDB values back into canonical texts. */
export class DuckDbValues {
  constructor(private readonly api: DuckDbApi) {}

  /**
   * The value to bind for `text`, a canonical text of `kind`, into a column of `type`; UNHOLDABLE when the
   * column cannot hold that value. Throws ValueFormatError when the text is not canonical for `kind`.
   */
  bind(text: string, kind: ValueKind, type: DuckType): DuckDb.DuckDBValue | typeof UNHOLDABLE {
    const value = parseValue(text, kind); // validates: nothing that is not exactly canonical goes in
    if (type.name === 'VARCHAR' || type.name === 'JSON') return text;
    return this.fromNeutral(value, kind, type);
  }

  private fromNeutral(value: NeutralValue, kind: ValueKind, type: DuckType): DuckDb.DuckDBValue | typeof UNHOLDABLE {
    const api = this.api;
    switch (type.name) {
      case 'VARCHAR':
      case 'JSON':
        return formatValue(value, kind);
      case 'BOOLEAN':
      case 'SMALLINT':
      case 'INTEGER':
      case 'BIGINT':
      case 'FLOAT':
      case 'DOUBLE':
        return value as boolean | number | bigint;
      case 'DECIMAL':
        return this.decimal(value as string, type.width, type.scale);
      case 'BLOB':
        return api.blobValue(new Uint8Array(value as Buffer));
      case 'DATE': {
        const days = value as number;
        if (days === Infinity) return api.dateValue(DATE_INFINITY);
        if (days === -Infinity) return api.dateValue(-DATE_INFINITY);
        return Math.abs(days) < DATE_INFINITY ? api.dateValue(days) : UNHOLDABLE;
      }
      case 'TIME':
        return api.timeValue(value as bigint);
      case 'TIMESTAMP':
      case 'TIMESTAMP WITH TIME ZONE': {
        const micros = value === Infinity ? TIMESTAMP_INFINITY : value === -Infinity ? -TIMESTAMP_INFINITY : (value as bigint);
        // PostgreSQL counts from 2000 and goes thirty years past what int64 microseconds since 1970 hold.
        if (typeof value === 'bigint' && !(value > -TIMESTAMP_INFINITY && value < TIMESTAMP_INFINITY)) return UNHOLDABLE;
        return type.name === 'TIMESTAMP' ? api.timestampValue(micros) : api.timestampTZValue(micros);
      }
      case 'INTERVAL': {
        const { months, days, micros } = value as IntervalValue;
        return api.intervalValue(months, days, micros);
      }
      case 'UUID':
        return api.uuidValue(BigInt(`0x${(value as string).replace(/-/g, '')}`));
      case 'LIST': {
        if (kind.kind !== 'array') return UNHOLDABLE;
        const array = value as NeutralArray;
        // A LIST has one dimension counted from 1; PostgreSQL's arrays may have more, and other bounds.
        if (array.lowerBounds !== undefined || arrayDimensions(array, kind.element) > 1) return UNHOLDABLE;
        const items: DuckDb.DuckDBValue[] = [];
        for (const element of array) {
          if (element === null) {
            items.push(null);
            continue;
          }
          const item = this.fromNeutral(element, kind.element, type.element);
          if (item === UNHOLDABLE) return UNHOLDABLE;
          items.push(item);
        }
        return api.listValue(items);
      }
      case 'UNKNOWN':
        return UNHOLDABLE;
    }
  }

  /** A decimal's canonical text as DuckDB's scaled integer; NaN and ±Infinity are UNHOLDABLE. */
  private decimal(text: string, width: number, scale: number): DuckDb.DuckDBValue | typeof UNHOLDABLE {
    const m = /^(-?)([0-9]+)(?:\.([0-9]+))?$/.exec(text);
    if (!m) return UNHOLDABLE; // NaN, Infinity, -Infinity
    const fraction = m[3] ?? '';
    if (fraction.length > scale) return UNHOLDABLE; // never for a canonical text of the column's own kind
    const scaled = BigInt(`${m[1]}${m[2]}${fraction.padEnd(scale, '0')}`);
    const limit = 10n ** BigInt(width);
    if (scaled >= limit || scaled <= -limit) return UNHOLDABLE;
    return this.api.decimalValue(scaled, width, scale);
  }

  /** A stored (non-NULL) value of a column of `type` as its canonical text. */
  text(value: unknown, type: DuckType): string {
    if (type.name === 'VARCHAR' || type.name === 'JSON') return String(value);
    if (type.name === 'UNKNOWN') return String(value);
    return formatValue(this.toNeutral(value, type), kindOfDuckType(type));
  }

  private toNeutral(value: unknown, type: DuckType): NeutralValue {
    switch (type.name) {
      case 'BOOLEAN':
      case 'SMALLINT':
      case 'INTEGER':
      case 'DOUBLE':
      case 'VARCHAR':
      case 'JSON':
      case 'UNKNOWN':
        return value as NeutralValue;
      case 'BIGINT':
        return BigInt(value as bigint | number);
      case 'FLOAT':
        return Math.fround(value as number);
      case 'DECIMAL':
        return decimalText((value as { value: bigint }).value, type.scale);
      case 'BLOB':
        return Buffer.from((value as { bytes: Uint8Array }).bytes);
      case 'DATE': {
        const days = (value as { days: number }).days;
        return days >= DATE_INFINITY ? Infinity : days <= -DATE_INFINITY ? -Infinity : days;
      }
      case 'TIME':
        return (value as { micros: bigint }).micros;
      case 'TIMESTAMP':
      case 'TIMESTAMP WITH TIME ZONE': {
        const micros = (value as { micros: bigint }).micros;
        return micros >= TIMESTAMP_INFINITY ? Infinity : micros <= -TIMESTAMP_INFINITY ? -Infinity : micros;
      }
      case 'INTERVAL': {
        const { months, days, micros } = value as IntervalValue;
        return { months, days, micros };
      }
      case 'UUID':
        return String(value);
      case 'LIST':
        return (value as { items: readonly unknown[] }).items.map((item) => (item === null ? null : this.toNeutral(item, type.element)));
    }
  }
}

/** A DECIMAL's scaled integer as its canonical text: exactly `scale` fraction digits, never a negative zero. */
export function decimalText(scaled: bigint, scale: number): string {
  const negative = scaled < 0n;
  const digits = (negative ? -scaled : scaled).toString().padStart(scale + 1, '0');
  const whole = scale === 0 ? digits : `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
  return negative ? `-${whole}` : whole;
}
