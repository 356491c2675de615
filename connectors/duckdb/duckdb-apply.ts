/**
 * Writes a run of one source's transactions into the open DuckDB transaction, set-based, as the analytics fold
 * (src/apply/analytics-fold.ts) decides it:
 *
 * 1. the tables the run needs are there, with every column (duckdb-tables.ts);
 * 2. the keys the run touches (`keysTouched`) are staged in a temporary table and the stored rows of those keys
 *    read with one join per table: their values as canonical text, whether they are deleted (soft deletes keep
 *    them, flagged) and who wrote them last (`_sitesync_site`, `_sitesync_commit_micros`);
 * 3. `fold` turns the run into history entries, each touched key's final row, and the conflicts it resolved
 *    (decided as a PostgreSQL site decides them);
 * 4. every history entry is appended to its table's history (an Appender, inside the transaction);
 * 5. each table's final rows replace what it holds for their keys: after a truncation in the run every stored
 *    row goes (hard) or is flagged deleted (soft); then the final rows are staged, the stored rows of their
 *    keys deleted (DELETE … USING the stage) and the staged rows inserted (INSERT … SELECT; with hard deletes,
 *    not the deleted ones).
 *
 * Nothing is committed here: the caller commits the run with the source's progress, so that after a crash the
 * file holds all of it or none of it.
 */
import type * as DuckDb from '@duckdb/node-api';
import { fold, keyOf, keysTouched, tableName, type FinalRow, type HistoryEntry, type RowValues, type StoredRow, type TableOutcome } from '../../src/apply/analytics-fold.ts';
import type { ConflictPolicy } from '../../src/apply/conflict-policy.ts';
import type { ResolvedConflict } from '../../src/connector.ts';
import { SitesyncError } from '../../src/errors.ts';
import type { RelationInfo, Transaction } from '../../src/events/transaction.ts';
import { ValueFormatError } from '../../src/events/value-parser.ts';
import { formatKind, type ValueKind } from '../../src/events/value-kind.ts';
import type { DeleteMode } from './duckdb-config.ts';
import type { DuckDbConnection, DuckDbFile } from './duckdb-connection.ts';
import { kindOfDuckType, typeText, UNHOLDABLE } from './duckdb-kinds.ts';
import { deleteStaged, dropStage, insertStaged, lookupRows, stageLike, truncateHard, truncateSoft } from './duckdb-statements.ts';
import type { DuckDbTables, PreparedTable, TableContext, TableLayout } from './duckdb-tables.ts';

export interface RunContext extends TableContext {
  readonly connection: DuckDbConnection;
  readonly file: DuckDbFile;
  readonly tables: DuckDbTables;
  readonly deletes: DeleteMode;
  readonly policy: (schema: string, table: string) => ConflictPolicy;
}

/** Temporary tables of a session's connection (each connection has its own temporary schema). */
const KEY_STAGE = 'sitesync_keys';
const ROW_STAGE = 'sitesync_rows';

/**
 * Writes `transactions` (in commit order, all from one source) into the open transaction; returns the conflicts
 * the fold resolved, to report once it commits. `seqOffset` numbers the history entries of a transaction that
 * arrives in parts (each part written in turn) after those of its earlier parts.
 */
export async function writeRun(context: RunContext, transactions: readonly Transaction[], seqOffset = 0): Promise<readonly ResolvedConflict[]> {
  const versions = relationsOf(transactions, context);
  const prepared = await context.tables.prepare(context.connection, versions, context);
  const stored = await lookUp(context, transactions, versions, prepared);
  const result = fold(transactions, (table, key) => stored.get(table)?.get(key), context.policy);
  await appendHistory(context, result.history, prepared, seqOffset);
  for (const [name, outcome] of result.tables) {
    const layout = prepared.get(name)?.current;
    if (!layout) throw new Error(`internal: ${name} has a current state and no current-state table`);
    await replaceRows(context, layout, outcome);
  }
  return result.conflicts;
}

/** Every relation of the run by `schema.table`, oldest description first; a read into a keyless table refused. */
function relationsOf(transactions: readonly Transaction[], context: TableContext): Map<string, RelationInfo[]> {
  const versions = new Map<string, RelationInfo[]>();
  // Each message decodes its own relation objects: one description is kept per change of columns.
  const signature = (r: RelationInfo): string => r.columns.map((c) => `${c.name}\u0000${formatKind(c.kind)}\u0000${c.key ? 1 : 0}`).join('\u0001');
  const note = (relation: RelationInfo): void => {
    const name = tableName(relation);
    const list = versions.get(name);
    if (!list) versions.set(name, [relation]);
    else {
      const last = list[list.length - 1]!;
      if (last !== relation && signature(last) !== signature(relation)) list.push(relation);
    }
  };
  for (const tx of transactions) {
    for (const change of tx.changes) {
      if (change.op === 'message') continue;
      if (change.op === 'truncate') {
        change.relations.forEach(note);
        continue;
      }
      if (change.op === 'read' && !change.relation.columns.some((c) => c.key)) {
        // A snapshot's rows replace the rows of their keys; a table without a key has no current state to
        // replace them in, and appending them to its history again at every resend would duplicate them.
        throw new SitesyncError(
          'SITESYNC_ERR_APPLY_SCHEMA',
          `a snapshot of ${tableName(change.relation)} from site ${context.source} cannot be applied at DuckDB site ${context.site}: the table has no key, so its rows cannot replace stored ones; give it a primary key at the source, or leave it out of the snapshot`,
        );
      }
      note(change.relation);
    }
  }
  return versions;
}

// ─── reading what is stored ──────────────────────────────────────────────────────────────────────────────

/** The stored rows of every key the run touches, by table and key (`keyOf`). */
async function lookUp(
  context: RunContext,
  transactions: readonly Transaction[],
  versions: ReadonlyMap<string, readonly RelationInfo[]>,
  prepared: ReadonlyMap<string, PreparedTable>,
): Promise<Map<string, Map<string, StoredRow>>> {
  const stored = new Map<string, Map<string, StoredRow>>();
  const { connection, file } = context;
  for (const [name, keys] of keysTouched(transactions)) {
    const layout = prepared.get(name)?.current;
    const relation = versions.get(name)?.at(-1);
    if (!layout || !relation || keys.size === 0) continue;
    const keyColumns = relation.columns.filter((c) => c.key);
    if (keyColumns.length === 0) continue; // the table lost its key: nothing stored to find by one
    const keyLayout = keyColumns.map((c) => columnOf(layout, c.name));
    await connection.run(stageLike(KEY_STAGE, layout.schema, layout.table, keyLayout.map((c) => c.name)));
    const staged: DuckDb.DuckDBValue[][] = [];
    for (const key of keys.values()) {
      staged.push(
        keyColumns.map((column, i) => {
          const text = key[i] ?? null;
          if (text === null) return null;
          const value = bindCell(context, file, text, column.kind, keyLayout[i]!, name, null);
          if (value === UNHOLDABLE) {
            throw new SitesyncError(
              'SITESYNC_ERR_APPLY_DATA',
              `key column ${column.name} of ${name} from site ${context.source} holds ${JSON.stringify(text.slice(0, 60))}, which DuckDB's ${typeText(keyLayout[i]!.type)} cannot hold, and a key must be stored as it is to find its row again; skip the transaction (sitesync parked it) or change the column's type at the source`,
            );
          }
          return value;
        }),
      );
    }
    await appendTo(context, KEY_STAGE, 'main', 'temp', staged);
    const reader = await connection.runAndReadAll(lookupRows(layout.schema, layout.table, KEY_STAGE, keyLayout.map((c) => c.name)));
    await connection.run(dropStage(KEY_STAGE));
    const rows = new Map<string, StoredRow>();
    const keyIndexes = keyLayout.map((c) => layout.columns.indexOf(c));
    for (const row of reader.getRows()) {
      const read = readStoredRow(file, layout, row);
      rows.set(keyOf(keyIndexes.map((i) => read.values[layout.columns[i]!.name] ?? null)), read);
    }
    stored.set(name, rows);
  }
  return stored;
}

/** A stored current-state row: its source columns as canonical text (special texts put back), flag and writer. */
function readStoredRow(file: DuckDbFile, layout: TableLayout, row: readonly unknown[]): StoredRow {
  const values: Record<string, string | null> = {};
  let deleted = false;
  let site: string | null = null;
  let micros: bigint | null = null;
  let special: Record<string, string> = {};
  layout.columns.forEach((column, i) => {
    const value = row[i];
    if (!column.own) {
      values[column.name] = value === null || value === undefined ? null : file.values.text(value, column.type);
      return;
    }
    switch (column.name) {
      case '_sitesync_deleted':
        deleted = value === true;
        break;
      case '_sitesync_site':
        site = typeof value === 'string' ? value : null;
        break;
      case '_sitesync_commit_micros':
        micros = typeof value === 'bigint' ? value : null;
        break;
      case '_sitesync_special':
        special = parseSpecial(value);
        break;
    }
  });
  for (const [name, text] of Object.entries(special)) if (Object.hasOwn(values, name) && values[name] === null) values[name] = text;
  return { values, deleted, writer: site !== null && micros !== null ? { site, commitTimeMicros: micros } : null };
}

/** `_sitesync_special` as {column: text}; anything else (someone edited it) counts as none. */
function parseSpecial(value: unknown): Record<string, string> {
  if (typeof value !== 'string') return {};
  try {
    const parsed: unknown = JSON.parse(value);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return {};
    return Object.fromEntries(Object.entries(parsed).filter((e): e is [string, string] => typeof e[1] === 'string'));
  } catch {
    return {};
  }
}

// ─── writing ─────────────────────────────────────────────────────────────────────────────────────────────

/** The history entries of each table, appended inside the open transaction. */
async function appendHistory(context: RunContext, history: readonly HistoryEntry[], prepared: ReadonlyMap<string, PreparedTable>, seqOffset: number): Promise<void> {
  const byTable = new Map<string, HistoryEntry[]>();
  for (const entry of history) {
    const list = byTable.get(entry.table);
    if (list) list.push(entry);
    else byTable.set(entry.table, [entry]);
  }
  const { api } = context.file;
  for (const [name, entries] of byTable) {
    const layout = prepared.get(name)?.history;
    if (!layout) throw new Error(`internal: no history table for ${name}`);
    const rows = entries.map((entry) => {
      const { transaction: tx } = entry;
      const kinds = kindsOf(entry.relation);
      const special: Record<string, string> = {};
      const change = tx.changes[entry.seq];
      const before = change?.op === 'update' && change.oldRow ? Object.fromEntries(entry.relation.columns.map((c, i) => [c.name, change.oldRow!.values[i] ?? null])) : null;
      // Source columns come first in a table's order only until one is added later: read them all first.
      const cells = layout.columns.map((column): DuckDb.DuckDBValue => {
        if (column.own) return null;
        const text = entry.values?.[column.name] ?? null;
        const value = text === null ? null : bindCell(context, context.file, text, kinds.get(column.name) ?? kindOfDuckType(column.type), column, name, tx.id);
        if (value !== UNHOLDABLE) return value;
        special[column.name] = text!;
        return null;
      });
      layout.columns.forEach((column, i) => {
        if (column.own) cells[i] = ownHistoryValue(api, column.name, entry, seqOffset, special, before);
      });
      return cells;
    });
    await appendTo(context, layout.table, layout.schema, null, rows);
  }
}

/** One of sitesync's own history columns for an entry (`special` is complete: the source columns come first). */
function ownHistoryValue(api: DuckDbFile['api'], name: string, entry: HistoryEntry, seqOffset: number, special: Record<string, string>, before: RowValues | null): DuckDb.DuckDBValue {
  const tx = entry.transaction;
  switch (name) {
    case '_sitesync_op':
      return entry.op;
    case '_sitesync_applied':
      return entry.applied;
    case '_sitesync_unchanged':
      return api.listValue([...entry.unchanged]);
    case '_sitesync_site':
      return tx.site;
    case '_sitesync_position':
      return tx.position;
    case '_sitesync_seq':
      return seqOffset + entry.seq;
    case '_sitesync_commit_micros':
      return tx.commitTimeMicros;
    case '_sitesync_commit_time':
      return api.timestampTZValue(tx.commitTimeMicros);
    case '_sitesync_transaction':
      return tx.id;
    case '_sitesync_special':
      return Object.keys(special).length > 0 ? JSON.stringify(special) : null;
    case '_sitesync_before':
      return before === null ? null : JSON.stringify(before);
    default:
      return null; // a column of sitesync's this version does not write
  }
}

/** A table's final rows replace what it holds for their keys (after the run's truncation, if any). */
async function replaceRows(context: RunContext, layout: TableLayout, outcome: TableOutcome): Promise<void> {
  const { connection, file } = context;
  const { api } = file;
  const hard = context.deletes === 'hard';
  if (outcome.truncatedBy) {
    const by = outcome.truncatedBy;
    if (hard) await connection.run(truncateHard(layout.schema, layout.table));
    else {
      await connection.run(truncateSoft(layout.schema, layout.table), [
        by.writer.site,
        by.writer.commitTimeMicros,
        api.timestampTZValue(by.writer.commitTimeMicros),
        by.position,
        by.transactionId,
      ]);
    }
  }
  if (outcome.rows.size === 0) return;
  const keyColumns = outcome.relation.columns.filter((c) => c.key).map((c) => columnOf(layout, c.name).name);
  const kinds = kindsOf(outcome.relation);
  const name = tableName(outcome.relation);
  await connection.run(stageLike(ROW_STAGE, layout.schema, layout.table, null));
  const staged = [...outcome.rows.values()].map((row) => {
    const special: Record<string, string> = {};
    const cells = layout.columns.map((column): DuckDb.DuckDBValue => {
      if (column.own) return null;
      const text = row.values[column.name] ?? null;
      const value = text === null ? null : bindCell(context, file, text, kinds.get(column.name) ?? kindOfDuckType(column.type), column, name, row.transactionId);
      if (value !== UNHOLDABLE) return value;
      special[column.name] = text!;
      return null;
    });
    layout.columns.forEach((column, i) => {
      if (column.own) cells[i] = ownCurrentValue(api, column.name, row, special);
    });
    return cells;
  });
  await appendTo(context, ROW_STAGE, 'main', 'temp', staged);
  await connection.run(deleteStaged(layout.schema, layout.table, ROW_STAGE, keyColumns));
  await connection.run(insertStaged(layout.schema, layout.table, ROW_STAGE, hard));
  await connection.run(dropStage(ROW_STAGE));
}

/** One of sitesync's own current-state columns for a final row. */
function ownCurrentValue(api: DuckDbFile['api'], name: string, row: FinalRow, special: Record<string, string>): DuckDb.DuckDBValue {
  switch (name) {
    case '_sitesync_deleted':
      return row.deleted;
    case '_sitesync_site':
      return row.writer.site;
    case '_sitesync_commit_micros':
      return row.writer.commitTimeMicros;
    case '_sitesync_commit_time':
      return api.timestampTZValue(row.writer.commitTimeMicros);
    case '_sitesync_position':
      return row.position;
    case '_sitesync_transaction':
      return row.transactionId;
    case '_sitesync_special':
      return Object.keys(special).length > 0 ? JSON.stringify(special) : null;
    default:
      return null;
  }
}

// ─── values ──────────────────────────────────────────────────────────────────────────────────────────────

/** A source column's text as the value to bind; a text that is not canonical for its kind is a data error naming it. */
function bindCell(
  context: TableContext,
  file: DuckDbFile,
  text: string,
  kind: ValueKind,
  column: TableLayout['columns'][number],
  table: string,
  transaction: string | null,
): DuckDb.DuckDBValue | typeof UNHOLDABLE {
  try {
    return file.values.bind(text, kind, column.type);
  } catch (error) {
    if (!(error instanceof ValueFormatError)) throw error;
    throw new SitesyncError(
      'SITESYNC_ERR_APPLY_DATA',
      `${transaction ? `transaction ${transaction}: ` : ''}column ${column.name} of ${table} from site ${context.source}: ${error.message}; DuckDB site ${context.site} stores only what its kind allows: fix the value at the source, then retry the parked transaction`,
      { cause: error },
    );
  }
}

/** Rows per data chunk: DuckDB's vector size. */
const CHUNK_ROWS = 2048;

/**
 * Appends rows (each a value per column, in the table's order) inside the open transaction, in data chunks of
 * the table's column types: filling a chunk's vectors is much cheaper than appending value by value, which
 * builds a DuckDB value per cell.
 */
async function appendTo(context: RunContext, table: string, schema: string, catalog: string | null, rows: readonly DuckDb.DuckDBValue[][]): Promise<void> {
  const appender = await context.connection.createAppender(table, schema, catalog);
  try {
    const types = Array.from({ length: appender.columnCount }, (_, i) => appender.columnType(i));
    for (let i = 0; i < rows.length; i += CHUNK_ROWS) {
      const slice = rows.slice(i, i + CHUNK_ROWS);
      const chunk = context.file.api.DuckDBDataChunk.create(types, slice.length);
      chunk.setRows(slice);
      appender.appendDataChunk(chunk);
    }
  } finally {
    appender.closeSync();
  }
}

function kindsOf(relation: RelationInfo): Map<string, ValueKind> {
  return new Map(relation.columns.map((c) => [c.name, c.kind]));
}

function columnOf(layout: TableLayout, name: string): TableLayout['columns'][number] {
  const column = layout.columns.find((c) => c.name === name);
  if (!column) throw new Error(`internal: ${layout.schema}.${layout.table} has no column ${name}`);
  return column;
}
