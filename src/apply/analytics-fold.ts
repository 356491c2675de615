/**
 * What an analytics store (DuckDB, ClickHouse) writes for a run of transactions from one source: every change
 * as a history entry, and each touched key's final row for the current-state table. Pure: no I/O.
 *
 * An analytics store applies in batches, set-based (its engines are built for that, not for one row at a
 * time), so the run is folded here, in commit order, into one final row per key. The fold decides
 * conflicts exactly as a PostgreSQL site does (conflict-policy.ts), change by change and with each row's
 * last writer as the batch leaves it, so an analytics store holds the same winner as every other site.
 *
 * The store gives the fold what it holds of the keys the run touches (`keysTouched`, then a lookup): their
 * values, whether they are deleted (soft deletes keep the row, flagged) and who wrote them last. A deleted
 * row counts as not there, as at a PostgreSQL site, which keeps no tombstones.
 *
 * Unchanged values (a TOASTed column PostgreSQL did not send) are taken from the row as the fold has it, or
 * as the store holds it: current rows are complete. What neither knows stays listed as unchanged.
 *
 * A table whose relation has no key column has no current state: only its history is kept.
 */
import type { ResolvedConflict } from '../connector.ts';
import type { Position, RelationInfo, RowImage, Transaction } from '../events/transaction.ts';
import { decide, isConcurrent, type ConflictKind, type ConflictPolicy, type Writer } from './conflict-policy.ts';

/** Values of a row by column name, in the canonical text of each column's kind (null: SQL NULL). */
export type RowValues = Readonly<Record<string, string | null>>;

/** A row as the store holds it now. */
export interface StoredRow {
  readonly values: RowValues;
  /** Soft-deleted: the row is kept, flagged, and counts as not there. */
  readonly deleted: boolean;
  /** Who wrote it last; null when not known. */
  readonly writer: Writer | null;
}

/** What the store holds for a key of a table (`schema.table`, key from `keyOf`); undefined: nothing. */
export type StoredLookup = (table: string, key: string) => StoredRow | undefined;

export type AnalyticsOp = 'insert' | 'update' | 'delete' | 'read' | 'truncate';

/** One change as the history table records it. */
export interface HistoryEntry {
  readonly transaction: Transaction;
  /** The change's place in its transaction (0-based): history orders by position, then this. */
  readonly seq: number;
  /** `schema.table`. */
  readonly table: string;
  readonly relation: RelationInfo;
  readonly op: AnalyticsOp;
  /**
   * insert, update, read: the row after the change (unchanged values filled in where known); delete: the row
   * the source sent (its key, or every column under REPLICA IDENTITY FULL); truncate: null.
   */
  readonly values: RowValues | null;
  /** Columns the source did not send (unchanged TOASTed values) and neither the run nor the store knew. */
  readonly unchanged: readonly string[];
  /** False when the conflict policy kept the other write: the change is history, not current state. */
  readonly applied: boolean;
}

/** A key's row as the run leaves it: what the current-state table must hold for that key. */
export interface FinalRow {
  /** The key's values, in key-column order. */
  readonly key: readonly (string | null)[];
  readonly values: RowValues;
  readonly deleted: boolean;
  readonly writer: Writer;
  /** Position and id of the transaction that wrote it last. */
  readonly position: Position;
  readonly transactionId: string;
}

export interface TableOutcome {
  /** The table as the run's latest transaction described it (new columns appear here first). */
  readonly relation: RelationInfo;
  /** Every row stored before `rows` goes (hard deletes) or is flagged deleted (soft): the run truncated it. */
  readonly truncatedBy: { readonly writer: Writer; readonly position: Position; readonly transactionId: string } | null;
  /** Final rows by key (`keyOf`); written after the truncation, replacing whatever the store holds for each key. */
  readonly rows: ReadonlyMap<string, FinalRow>;
}

export interface FoldResult {
  readonly history: readonly HistoryEntry[];
  /** By `schema.table`; only tables with a key. */
  readonly tables: ReadonlyMap<string, TableOutcome>;
  /** Conflicts resolved, to report once the batch is committed. */
  readonly conflicts: readonly ResolvedConflict[];
}

/** A key as a map key: the JSON text of its values in key-column order. */
export function keyOf(values: readonly (string | null)[]): string {
  return JSON.stringify(values);
}

export function tableName(relation: RelationInfo): string {
  return `${relation.schema}.${relation.table}`;
}

/** The keys a run touches, by table (with each key's values), for the store to look up before `fold`. */
export function keysTouched(transactions: readonly Transaction[]): Map<string, Map<string, readonly (string | null)[]>> {
  const touched = new Map<string, Map<string, readonly (string | null)[]>>();
  const note = (relation: RelationInfo, row: RowImage): void => {
    const key = keyValues(relation, row.values);
    if (key === null) return;
    const table = tableName(relation);
    let keys = touched.get(table);
    if (!keys) touched.set(table, (keys = new Map()));
    keys.set(keyOf(key), key);
  };
  for (const tx of transactions) {
    for (const change of tx.changes) {
      if (change.op === 'insert' || change.op === 'read') note(change.relation, change.newRow);
      else if (change.op === 'update') {
        note(change.relation, change.newRow);
        if (change.oldRow) note(change.relation, change.oldRow);
      } else if (change.op === 'delete') note(change.relation, change.oldRow);
    }
  }
  return touched;
}

/** Folds a run of one source's transactions, in commit order, over what the store holds. */
export function fold(transactions: readonly Transaction[], stored: StoredLookup, policyOf: (schema: string, table: string) => ConflictPolicy): FoldResult {
  const history: HistoryEntry[] = [];
  const tables = new Map<string, MutableOutcome>();
  const conflicts: ResolvedConflict[] = [];

  const outcomeOf = (relation: RelationInfo): MutableOutcome => {
    const table = tableName(relation);
    let outcome = tables.get(table);
    if (!outcome) tables.set(table, (outcome = { relation, truncatedBy: null, rows: new Map() }));
    else outcome.relation = relation;
    return outcome;
  };
  /** The key's row as the run has it so far: the run's own, else the store's (unless the run truncated). */
  const current = (outcome: MutableOutcome, table: string, key: string): { values: RowValues; deleted: boolean; writer: Writer | null } | undefined => {
    const own = outcome.rows.get(key);
    if (own) return own;
    if (outcome.truncatedBy) return undefined;
    return stored(table, key);
  };

  for (const tx of transactions) {
    const writer: Writer = { site: tx.site, commitTimeMicros: tx.commitTimeMicros };
    const write = (outcome: MutableOutcome, key: readonly (string | null)[], values: RowValues, deleted: boolean, by: Writer = writer): void => {
      outcome.rows.set(keyOf(key), { key, values, deleted, writer: by, position: tx.position, transactionId: tx.id });
    };
    tx.changes.forEach((change, seq) => {
      if (change.op === 'message') return;
      if (change.op === 'truncate') {
        for (const relation of change.relations) {
          history.push({ transaction: tx, seq, table: tableName(relation), relation, op: 'truncate', values: null, unchanged: [], applied: true });
          if (!hasKey(relation)) continue;
          const outcome = outcomeOf(relation);
          outcome.truncatedBy = { writer, position: tx.position, transactionId: tx.id };
          outcome.rows.clear();
        }
        return;
      }
      const { relation } = change;
      const table = tableName(relation);
      const entry = (op: AnalyticsOp, values: RowValues, unchanged: readonly string[], applied: boolean): void => {
        history.push({ transaction: tx, seq, table, relation, op, values, unchanged, applied });
      };
      if (!hasKey(relation)) {
        const row = change.op === 'delete' ? change.oldRow : change.newRow;
        entry(change.op, named(relation, row.values), unchangedNames(relation, row), true);
        return;
      }
      const outcome = outcomeOf(relation);
      const resolve = (kind: ConflictKind, local: Writer | null): boolean => {
        const decision = decide(kind, writer, local, policyOf(relation.schema, relation.table));
        conflicts.push({ source: tx.site, kind, table, resolution: decision.resolution });
        return decision.resolution === 'apply';
      };

      if (change.op === 'read') {
        // A snapshot's row: written whatever the target holds, with the writer the source knew.
        const key = keyValues(relation, change.newRow.values)!;
        const there = current(outcome, table, keyOf(key));
        const { values, unchanged } = complete(relation, change.newRow, there);
        write(outcome, key, values, false, change.writer ?? writer);
        entry('read', values, unchanged, true);
        return;
      }
      if (change.op === 'insert') {
        const key = keyValues(relation, change.newRow.values)!;
        const there = live(current(outcome, table, keyOf(key)));
        const { values, unchanged } = complete(relation, change.newRow, undefined);
        const applied = there === undefined || resolve('insert_exists', there.writer);
        if (applied) write(outcome, key, values, false);
        entry('insert', values, unchanged, applied);
        return;
      }
      if (change.op === 'update') {
        const newKey = keyValues(relation, change.newRow.values)!;
        const oldKey = change.oldRow ? keyValues(relation, change.oldRow.values)! : newKey;
        const there = live(current(outcome, table, keyOf(oldKey)));
        const { values, unchanged } = complete(relation, change.newRow, there);
        let applied: boolean;
        if (there === undefined) applied = resolve('update_missing', null);
        else applied = !isConcurrent(there.writer, tx.site, tx.seen) || resolve('update_origin_differs', there.writer);
        if (applied) {
          if (keyOf(oldKey) !== keyOf(newKey)) write(outcome, oldKey, there!.values, true);
          write(outcome, newKey, values, false);
        }
        entry('update', values, unchanged, applied);
        return;
      }
      // delete
      const key = keyValues(relation, change.oldRow.values)!;
      const there = live(current(outcome, table, keyOf(key)));
      let applied: boolean;
      if (there === undefined) applied = resolve('delete_missing', null);
      else applied = !isConcurrent(there.writer, tx.site, tx.seen) || resolve('delete_origin_differs', there.writer);
      if (applied) write(outcome, key, there!.values, true);
      entry('delete', named(relation, change.oldRow.values), [], applied);
    });
  }
  return { history, tables, conflicts };
}

interface MutableOutcome {
  relation: RelationInfo;
  truncatedBy: TableOutcome['truncatedBy'];
  rows: Map<string, FinalRow>;
}

function hasKey(relation: RelationInfo): boolean {
  return relation.columns.some((c) => c.key);
}

/** The key values of a row image, or null when the relation has no key column. */
function keyValues(relation: RelationInfo, values: readonly (string | null)[]): (string | null)[] | null {
  if (!hasKey(relation)) return null;
  const key: (string | null)[] = [];
  relation.columns.forEach((c, i) => {
    if (c.key) key.push(values[i] ?? null);
  });
  return key;
}

/** A row that is there: a deleted one counts as not there. */
function live<T extends { readonly deleted: boolean }>(row: T | undefined): T | undefined {
  return row && !row.deleted ? row : undefined;
}

function named(relation: RelationInfo, values: readonly (string | null)[]): RowValues {
  const row: Record<string, string | null> = {};
  relation.columns.forEach((c, i) => {
    row[c.name] = values[i] ?? null;
  });
  return row;
}

function unchangedNames(relation: RelationInfo, row: RowImage): string[] {
  return row.unchanged.map((i) => relation.columns[i]?.name).filter((n): n is string => n !== undefined);
}

/**
 * The row after a change: the values sent, unchanged ones taken from the row as it was. Columns the previous
 * row has and this relation does not (a column dropped at the source) are kept as they were.
 */
function complete(relation: RelationInfo, row: RowImage, before: { readonly values: RowValues } | undefined): { values: RowValues; unchanged: string[] } {
  const values: Record<string, string | null> = { ...(before?.values ?? {}) };
  const unchanged: string[] = [];
  const skipped = new Set(row.unchanged);
  relation.columns.forEach((c, i) => {
    if (!skipped.has(i)) values[c.name] = row.values[i] ?? null;
    else if (before && Object.hasOwn(before.values, c.name)) values[c.name] = before.values[c.name]!;
    else {
      values[c.name] = null;
      unchanged.push(c.name);
    }
  });
  return { values, unchanged };
}
