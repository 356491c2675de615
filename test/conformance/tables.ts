/**
 * The tables every connector is tried on, described by logical kinds only: each harness creates them in
 * its own database's types, and every value here is the canonical text of its kind (docs/value-kinds.md),
 * which is what a source must publish and a sink must store.
 */
import { parseKind, type ValueKind } from '../../src/events/value-kind.ts';
import type { ColumnInfo, RelationInfo } from '../../src/events/transaction.ts';

export interface ColumnSpec {
  readonly name: string;
  /** A kind's wire form: `int64`, `decimal(12,2)`. */
  readonly kind: string;
  readonly key?: boolean;
}

export interface TableSpec {
  readonly table: string;
  readonly columns: readonly ColumnSpec[];
}

/** A table with a one-column key. */
export const ITEMS: TableSpec = {
  table: 'items',
  columns: [
    { name: 'id', kind: 'int64', key: true },
    { name: 'note', kind: 'string' },
    { name: 'amount', kind: 'decimal(12,2)' },
  ],
};

/** A table without a key: rows are found by all their values. */
export const NO_KEY: TableSpec = {
  table: 'nokey',
  columns: [
    { name: 'v', kind: 'int32' },
    { name: 'note', kind: 'string' },
  ],
};

/** Two values of each kind, canonical text, the ones that trip converters (extremes, fractions, quoting). */
export const KIND_SAMPLES: Readonly<Record<string, readonly [string, string]>> = {
  boolean: ['t', 'f'],
  int16: ['-32768', '32767'],
  int32: ['-2147483648', '2147483647'],
  int64: ['-9223372036854775808', '9223372036854775807'],
  float32: ['1.5', '-0.25'],
  float64: ['3.141592653589793', '1e+100'],
  'decimal(12,2)': ['1234567890.12', '-0.50'],
  string: ['héllo, "wörld" \\ ✓', ''],
  bytes: ['\\x00ff10', '\\x'],
  date: ['2024-02-29', '1970-01-01'],
  time: ['13:45:10.123456', '00:00:00'],
  timestamp: ['2024-02-29 13:45:10.123456', '1999-12-31 23:59:59'],
  timestamptz: ['2024-02-29 13:45:10.123456+00', '2001-09-09 01:46:40+00'],
  json: ['{"a": [1, 2.5, "x"]}', '[]'],
  uuid: ['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '00000000-0000-0000-0000-000000000000'],
  enum: ['ok', 'sad'],
  interval: ['P1Y2M3DT4H5M6.5S', 'PT0S'],
  'array<int32>': ['{1,2,NULL}', '{}'],
};

/** The labels of the enum kind's sample type (a harness creates it where enums are types). */
export const ENUM_LABELS = ['sad', 'ok'] as const;

/** A table with one column per kind the harness supports, and an id. */
export function kindsTable(kinds: readonly string[]): TableSpec {
  return { table: 'kinds', columns: [{ name: 'id', kind: 'int32', key: true }, ...kinds.map((kind) => ({ name: columnName(kind), kind }))] };
}

export function columnName(kind: string): string {
  return `k_${kind.replace(/[^a-z0-9]+/g, '_').replace(/_+$/, '')}`;
}

/** The relation a change of `spec` carries, in the schema the harness uses. */
export function relationOf(schema: string, spec: TableSpec, native: (kind: ValueKind) => ColumnInfo['native'] = (k) => ({ name: k.kind, id: 0, modifier: -1 })): RelationInfo {
  const hasKey = spec.columns.some((c) => c.key);
  return {
    schema,
    table: spec.table,
    replicaIdentity: hasKey ? 'd' : 'f',
    columns: spec.columns.map((c) => {
      const kind = parseKind(c.kind);
      return { name: c.name, kind, native: native(kind), key: c.key === true };
    }),
  };
}

/** A row of `spec` from values by column name (absent = NULL), in column order. */
export function rowOf(spec: TableSpec, values: Readonly<Record<string, string | null>>): (string | null)[] {
  return spec.columns.map((c) => values[c.name] ?? null);
}

/** Rows in one order whatever the database returned them in (by their JSON text). */
export function sortRows(rows: (string | null)[][]): (string | null)[][] {
  return rows.map((r) => [...r]).sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : JSON.stringify(a) > JSON.stringify(b) ? 1 : 0));
}
