/**
 * One change as people read it (`sitesync tail`, `trace`, `parked --show`): a JSON object per change, or a
 * row of an aligned table. Pure: the reader (archive-reader.ts) hands in decoded messages, the filters
 * (change-filter.ts) pick what is shown, this file says how it looks.
 *
 * Values travel as canonical text per kind (value-parser.ts); here each becomes what JSON holds exactly:
 * booleans as booleans, integers and finite floats as numbers when JSON reads them back as the same value,
 * 64-bit integers beyond 2^53, decimals, NaN, ±Infinity and -0 as strings, bytes as lowercase hex, dates,
 * times, intervals, uuids, json and the rest as their canonical text, arrays as arrays of the same, SQL NULL
 * as null. A value whose text is not its kind's canonical form is shown as its text, never dropped.
 *
 * Values may be personal data: a change shows its key and its column names, and the other values only when
 * asked (`values: true`).
 */
import { microsToIso } from '../events/time.ts';
import type { Change, ChangeMessage, ChangeOp, RelationInfo, RowImage, Transaction } from '../events/transaction.ts';
import { formatValue, parseValue, type NeutralArray, type NeutralValue } from '../events/value-parser.ts';
import type { ValueKind } from '../events/value-kind.ts';

export type JsonValue = null | boolean | number | string | JsonValue[];

/** One change of one transaction, with what the filters and the formats read. */
export interface FlatChange {
  readonly tx: Transaction;
  readonly change: Change;
  readonly op: ChangeOp;
  /** The table changed; null for a logical message. For a truncate of several tables, one FlatChange per table. */
  readonly relation: RelationInfo | null;
  /** The row whose key identifies the change: the new row (insert, update, read), the old one (delete). */
  readonly row: RowImage | null;
  /** An update's old row when the source sent one (the key changed, or REPLICA IDENTITY FULL). */
  readonly oldRow: RowImage | null;
}

/** A key column's value as it travelled, with its kind. */
export interface KeyText {
  readonly name: string;
  readonly kind: ValueKind;
  readonly text: string | null;
}

/** Every change of a transaction, in order (a truncate of N tables counts N). */
export function flattenTransaction(tx: Transaction): FlatChange[] {
  const out: FlatChange[] = [];
  for (const change of tx.changes) {
    switch (change.op) {
      case 'insert':
      case 'read':
        out.push({ tx, change, op: change.op, relation: change.relation, row: change.newRow, oldRow: null });
        break;
      case 'update':
        out.push({ tx, change, op: 'update', relation: change.relation, row: change.newRow, oldRow: change.oldRow });
        break;
      case 'delete':
        out.push({ tx, change, op: 'delete', relation: change.relation, row: change.oldRow, oldRow: null });
        break;
      case 'truncate':
        for (const relation of change.relations) out.push({ tx, change, op: 'truncate', relation, row: null, oldRow: null });
        break;
      case 'message':
        out.push({ tx, change, op: 'message', relation: null, row: null, oldRow: null });
        break;
    }
  }
  return out;
}

export function tableName(relation: RelationInfo): string {
  return `${relation.schema}.${relation.table}`;
}

/** The key columns' values of `row` (empty without a row, or for a table without a key). */
export function keyTexts(relation: RelationInfo | null, row: RowImage | null): KeyText[] {
  if (relation === null || row === null) return [];
  const values = row.values;
  const keys: KeyText[] = [];
  relation.columns.forEach((column, i) => {
    if (column.key) keys.push({ name: column.name, kind: column.kind, text: values[i] ?? null });
  });
  return keys;
}

/** The old key of an update whose key changed; null when it did not change or is unknown. */
export function changedKey(flat: FlatChange): KeyText[] | null {
  if (flat.op !== 'update' || flat.oldRow === null) return null;
  const before = keyTexts(flat.relation, flat.oldRow);
  const after = keyTexts(flat.relation, flat.row);
  return before.some((k, i) => k.text !== after[i]?.text) ? before : null;
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** A value's canonical text as JSON holds it exactly (see the header); never throws. */
export function jsonValue(text: string | null, kind: ValueKind): JsonValue {
  if (text === null) return null;
  let value: NeutralValue;
  try {
    value = parseValue(text, kind);
  } catch {
    return text; // not canonical: shown as it travelled
  }
  try {
    return neutralToJson(value, kind, text);
  } catch {
    return text;
  }
}

function neutralToJson(value: NeutralValue | null, kind: ValueKind, text: string | null): JsonValue {
  if (value === null) return null;
  switch (kind.kind) {
    case 'boolean':
      return value as boolean;
    case 'int16':
    case 'int32':
      return value as number;
    case 'int64': {
      const n = value as bigint;
      return n <= MAX_SAFE && n >= -MAX_SAFE ? Number(n) : n.toString();
    }
    case 'float32':
    case 'float64': {
      const x = value as number;
      if (!Number.isFinite(x) || Object.is(x, -0)) return text ?? formatValue(x, kind);
      // JSON prints the shortest digits that read back as the same double; a float32 as its own shortest
      // digits (0.1, not 0.10000000149011612), which read back as a double that rounds to the same float32.
      return kind.kind === 'float32' ? Number(text ?? formatValue(x, kind)) : x;
    }
    case 'bytes':
      return (value as Buffer).toString('hex');
    case 'array': {
      const array = value as NeutralArray;
      // Lower bounds other than 1 have no JSON form: the canonical text keeps them.
      if (array.lowerBounds !== undefined) return text ?? formatValue(array, kind);
      return arrayToJson(array, kind.element);
    }
    case 'struct':
      return value as string[];
    default:
      // decimal, string, enum, json, uuid, other, date, time, timestamp[tz], interval: their canonical text.
      return text ?? formatValue(value, kind);
  }
}

function arrayToJson(array: NeutralArray, element: ValueKind): JsonValue[] {
  return array.map((item) => {
    if (item === null) return null;
    if (Array.isArray(item) && element.kind !== 'struct') return arrayToJson(item as NeutralArray, element);
    return neutralToJson(item, element, null);
  });
}

/** Options of how a change is shown. */
export interface ShowOptions {
  /** Show the values of the non-key columns (they may be personal data). */
  readonly values: boolean;
  /** A position of `site` in its database's display form. */
  readonly describe: (site: string, position: string) => string;
}

/** What a change becomes: the JSON line's object, its fields in this order. */
export interface ChangeView {
  offset?: number;
  transaction: string;
  site: string;
  position: string;
  displayPosition: string;
  commitTime: string;
  op: ChangeOp;
  table: string | null;
  key: Record<string, JsonValue>;
  oldKey?: Record<string, JsonValue>;
  /** Columns of the row shown (its values only with `values`). */
  columns: string[];
  row?: Record<string, JsonValue>;
  old?: Record<string, JsonValue>;
  /** Columns the source did not send (unchanged TOASTed values): not NULL, left as they are. */
  unchanged: string[];
  part?: number;
  snapshot?: string;
  prefix?: string;
}

/** Where a change was read: its archive offset, and the message's part (a transaction split in several). */
export interface ChangeContext {
  readonly offset?: number;
  readonly message?: Pick<ChangeMessage, 'part'>;
}

export function viewChange(flat: FlatChange, options: ShowOptions, context: ChangeContext = {}): ChangeView {
  const { tx, relation } = flat;
  const view: ChangeView = {
    ...(context.offset !== undefined ? { offset: context.offset } : {}),
    transaction: tx.id,
    site: tx.site,
    position: tx.position,
    displayPosition: options.describe(tx.site, tx.position),
    commitTime: microsToIso(tx.commitTimeMicros),
    op: flat.op,
    table: relation === null ? null : tableName(relation),
    key: keyObject(keyTexts(relation, flat.row)),
    columns: [],
    unchanged: [],
  };
  const oldKey = changedKey(flat);
  if (oldKey !== null) view.oldKey = keyObject(oldKey);
  if (relation !== null && flat.row !== null) {
    const unchanged = new Set(flat.row.unchanged);
    // A delete's old row holds only the key unless the table sends whole old rows (REPLICA IDENTITY FULL).
    const shown = relation.columns.map((column, i) => ({ column, i })).filter(({ column, i }) => !unchanged.has(i) && (flat.op !== 'delete' || column.key || relation.replicaIdentity === 'f'));
    view.columns = shown.map(({ column }) => column.name);
    view.unchanged = [...unchanged].sort((a, b) => a - b).flatMap((i) => (relation.columns[i] ? [relation.columns[i]!.name] : []));
    if (options.values) {
      const values = flat.row.values;
      view.row = Object.fromEntries(shown.map(({ column, i }) => [column.name, jsonValue(values[i] ?? null, column.kind)]));
      if (flat.oldRow !== null) {
        const old = flat.oldRow.values;
        const oldUnchanged = new Set(flat.oldRow.unchanged);
        view.old = Object.fromEntries(relation.columns.flatMap((column, i) => (oldUnchanged.has(i) ? [] : [[column.name, jsonValue(old[i] ?? null, column.kind)]])));
      }
    }
  }
  if (context.message?.part) view.part = context.message.part.index;
  if (tx.snapshot) view.snapshot = tx.snapshot.id;
  if (flat.change.op === 'message') view.prefix = flat.change.prefix;
  return view;
}

function keyObject(keys: readonly KeyText[]): Record<string, JsonValue> {
  return Object.fromEntries(keys.map((k) => [k.name, jsonValue(k.text, k.kind)]));
}

/** One JSON line (no newline). */
export function formatJsonLine(view: ChangeView): string {
  // JSON escapes C0 controls but not DEL, C1 controls (U+009B is a terminal's CSI) or line separators.
  return JSON.stringify(view).replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * Text from the wire made safe for a terminal: control characters (C0, DEL, C1: escape sequences could
 * rewrite what the screen shows) and line separators as \uXXXX, so that one line stays one line.
 */
export function safeText(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Widths of the pretty table's columns (a column's longer values run over, the others stay aligned). */
export interface TableLayout {
  readonly site: number;
  readonly position: number;
  readonly table: number;
  readonly key: number;
}

const TIME_WIDTH = 27; // 2024-05-01T09:30:00.123456Z
const OP_WIDTH = 8;

/** A layout fitting the configured site names. */
export function tableLayout(sites: readonly string[]): TableLayout {
  return { site: Math.max(4, ...sites.map((s) => s.length)), position: 16, table: 24, key: 16 };
}

export function formatTableHeader(layout: TableLayout, values: boolean): string {
  return [pad('COMMIT TIME', TIME_WIDTH), pad('SITE', layout.site), pad('POSITION', layout.position), pad('OP', OP_WIDTH), pad('TABLE', layout.table), pad('KEY', layout.key), values ? 'VALUES' : 'COLUMNS'].join('  ').trimEnd();
}

/** One readable, aligned row. */
export function formatTableRow(view: ChangeView, layout: TableLayout): string {
  const key = Object.entries(view.key).map(([name, value]) => `${name}=${showScalar(value)}`).join(',') + (view.oldKey ? ` (was ${Object.entries(view.oldKey).map(([n, v]) => `${n}=${showScalar(v)}`).join(',')})` : '');
  let rest: string;
  if (view.row) {
    rest = Object.entries(view.row).map(([name, value]) => `${name}=${showScalar(value)}`).join(' ');
  } else {
    rest = view.columns.join(',');
  }
  if (view.unchanged.length > 0) rest += `${rest ? ' ' : ''}unchanged: ${view.unchanged.join(',')}`;
  if (view.prefix !== undefined) rest = `message ${JSON.stringify(view.prefix)}`;
  const op = view.part !== undefined ? `${view.op}#${view.part}` : view.op;
  return [pad(view.commitTime, TIME_WIDTH), pad(view.site, layout.site), pad(view.displayPosition, layout.position), pad(op, OP_WIDTH), pad(safeText(view.table ?? '-'), layout.table), pad(safeText(key) || '-', layout.key), safeText(rest)]
    .join('  ')
    .trimEnd();
}

/** A value in a table cell: numbers and booleans bare, text quoted only when it needs to be. */
export function showScalar(value: JsonValue): string {
  if (value === null) return 'NULL';
  if (typeof value === 'string') return /^[A-Za-z0-9_.:+\-/@]+$/.test(value) && value !== 'NULL' ? value : JSON.stringify(value);
  return JSON.stringify(value);
}

function pad(text: string, width: number): string {
  return text.length >= width ? text : text + ' '.repeat(width - text.length);
}
