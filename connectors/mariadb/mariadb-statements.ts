/**
 * Plan, then execute: the MariaDB statements that apply one transaction. Pure: the target tables' facts
 * (columns, types, primary key) and the value binders are passed in.
 *
 * - The first statement of every applied transaction is the upsert of its source's progress row
 *   (bookkeeping.ts): the loop marker MariaDB's capture drops relayed writes by, and the check that the
 *   transaction is not applied already. Then the changes, in order.
 * - A MariaDB "schema" is a database: a change to `schema.table` writes `schema`.`table`.
 * - Identifiers are always backtick-quoted (backticks doubled); values are always bound parameters.
 * - insert: INSERT; consecutive inserts into one table go as multi-row INSERTs (row counts are powers of
 *   two, so that a few prepared statements serve every run). A key already there is a data error, unless
 *   conflicts are resolved (`resolve`): then the plain INSERT carries a fallback per row — its own INSERT,
 *   the locking read of the row its key finds, and an INSERT … ON DUPLICATE KEY UPDATE that overwrites it —
 *   which the sink runs when the INSERT meets an existing key.
 * - read (a snapshot's row): inserted, or the row of its primary key overwritten — every column the target
 *   stores — whatever it holds, with no conflict detection (planReads). A target without a primary key cannot
 *   say which row a read replaces: a schema error.
 * - update: by key — the old row's key when the key changed (oldRow present), else the new row's key;
 *   columns marked unchanged are left out of SET. delete: by key. Each carries the locking read
 *   (SELECT … FOR UPDATE) of the row it changes, which the sink runs first for conflict detection.
 * - Every change says the keys of the rows it writes (row-writers.ts): the target's primary key, or every
 *   column of a table without one, as this site's capture names the same rows.
 * - A table without a key (replica identity full, no primary key at the target): matched on every column
 *   with NULL-safe `<=>` (text columns compared exactly, by their character set's binary no-pad
 *   collation; FLOAT columns as FLOAT), LIMIT 1: duplicate rows stay duplicates, as at the source.
 * - truncate: DELETE FROM each table (TRUNCATE would commit the transaction implicitly, and with it a
 *   half-applied transaction and its progress). Logical messages: nothing.
 */
import { SitesyncError } from '../../src/errors.ts';
import type { Change, RelationInfo, RowImage, RowWriter, Transaction } from '../../src/events/transaction.ts';
import { binderFor, type Binder, type BoundValue, type TargetTable } from './mariadb-bind.ts';
import type { Bookkeeping } from './bookkeeping.ts';
import { rowKey, type KeyColumn, type RowKey } from './row-writers.ts';

export interface Statement {
  /** progress: the progress-row upsert (first of every transaction); lookup: a locking read; the others write changes. */
  readonly role: 'progress' | 'insert' | 'read' | 'update' | 'delete' | 'truncate' | 'lookup';
  readonly text: string;
  readonly values: readonly BoundValue[];
  /** Rows an insert carries. */
  readonly rows: number;
  /**
   * For inserts when conflicts are resolved: each row on its own, run instead when the INSERT meets an
   * existing key (planned then: the plain INSERT is all the usual case needs).
   */
  readonly fallback: (() => readonly InsertRow[]) | null;
  /** For inserts: what a key already there means. */
  readonly existing?: ExistingKey;
  /** The table it writes, `schema.table`, for messages. */
  readonly table: string;
  /** The table it writes (insert, update, delete). */
  readonly into?: { readonly schema: string; readonly table: string };
  /** update, delete: the row it changes, read (and locked) first, and its key (null: not carried). */
  readonly target?: { readonly lookup: Statement; readonly key: RowKey | null };
  /**
   * read, into a table with a unique key besides its primary key (one row): the row its primary key finds,
   * read and locked first; when it is there, `update` overwrites it (null: the key is every column, nothing to
   * set), else the statement's own INSERT runs.
   */
  readonly byKey?: { readonly lookup: Statement; readonly update: Statement | null };
  /** The keys of the rows it writes (insert, read, update, delete). */
  readonly writes?: readonly RowKey[];
  /** read: the last writer at the source of each row of `writes`, where the read carries it (null: it does not). */
  readonly writers?: readonly (RowWriter | null)[];
}

/** One row of a multi-row INSERT, for when its key is there already. */
export interface InsertRow {
  /** The row's own INSERT. */
  readonly insert: Statement;
  /** SELECT … FOR UPDATE of the row its key finds. */
  readonly lookup: Statement;
  /** INSERT … ON DUPLICATE KEY UPDATE: the incoming row over the one there. */
  readonly overwrite: Statement;
  readonly key: RowKey | null;
}

/** What a key already there means for an incoming insert: a data error, or a conflict to resolve. */
export type ExistingKey = 'error' | 'resolve';

export interface PlanContext {
  readonly bookkeeping: Bookkeeping;
  /** Source kind of the transactions' site (`postgres`, `mariadb`…), for binding and the progress row. */
  readonly sourceKind: string;
  /** The target table `schema.table` writes into (loaded by the caller). */
  readonly target: (schema: string, table: string) => TargetTable;
  /** The binders of a relation's columns into a target table; null for a column the target generates. */
  readonly binders?: (relation: RelationInfo, table: TargetTable) => readonly (Binder | null)[];
  /** What an insert whose key is there does, per table (default: a data error). */
  readonly existingKey?: (schema: string, table: string) => ExistingKey;
  /**
   * Whether a target table has a unique key besides its primary key (default: none), which reads then go
   * around (planReads).
   */
  readonly otherUniqueKeys?: (table: TargetTable) => boolean;
}

/** Most rows of one multi-row INSERT (a power of two). */
export const MAX_BATCH_ROWS = 512;
/** Most bytes of values in one multi-row INSERT (MariaDB's max_allowed_packet is 16 MiB by default). */
export const MAX_BATCH_BYTES = 4 * 1024 * 1024;
/** Most parameters of one prepared statement (MariaDB's limit). */
const MAX_PARAMETERS = 65_535;

export function quoteIdent(name: string): string {
  return `\`${name.replace(/`/g, '``')}\``;
}

export function qualifiedName(schema: string, table: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(table)}`;
}

/**
 * Every statement of one transaction, in order: its progress upsert first, then its changes. `mode`
 * 'always' is for a retried parked transaction (bookkeeping.ts progressUpsert).
 */
export function* planTransaction(tx: Transaction, source: string, ctx: PlanContext, mode: 'forward' | 'always' = 'forward'): Generator<Statement> {
  yield progressStatement(tx, source, ctx, mode);
  yield* planChanges(tx.changes, ctx);
}

export function progressStatement(tx: Pick<Transaction, 'position' | 'commitTimeMicros'>, source: string, ctx: Pick<PlanContext, 'bookkeeping' | 'sourceKind'>, mode: 'forward' | 'always' = 'forward'): Statement {
  const { text, values } = ctx.bookkeeping.progressUpsert({ source, sourceKind: ctx.sourceKind, position: tx.position, commitTimeMicros: tx.commitTimeMicros }, mode);
  return { role: 'progress', text, values, rows: 1, fallback: null, table: `${ctx.bookkeeping.database}.apply_progress` };
}

/** The statements of a run of changes, in order (inserts batched). */
export function* planChanges(changes: readonly Change[], ctx: PlanContext): Generator<Statement> {
  for (let i = 0; i < changes.length; ) {
    const change = changes[i]!;
    if (change.op === 'insert') {
      // The run of inserts into one relation that starts here.
      let end = i + 1;
      while (end < changes.length) {
        const next = changes[end]!;
        if (next.op !== 'insert' || next.relation !== change.relation) break;
        end++;
      }
      yield* planInserts(change.relation, changes.slice(i, end).map((c) => (c as Extract<Change, { op: 'insert' }>).newRow), ctx);
      i = end;
      continue;
    }
    if (change.op === 'read') {
      // The run of reads into one relation that starts here (a snapshot's chunk is one such run).
      let end = i + 1;
      while (end < changes.length) {
        const next = changes[end]!;
        if (next.op !== 'read' || next.relation !== change.relation) break;
        end++;
      }
      yield* planReads(change.relation, changes.slice(i, end) as Extract<Change, { op: 'read' }>[], ctx);
      i = end;
      continue;
    }
    yield* planChange(change, ctx);
    i++;
  }
}

function* planChange(change: Change, ctx: PlanContext): Generator<Statement> {
  switch (change.op) {
    case 'insert':
      yield* planInserts(change.relation, [change.newRow], ctx);
      return;
    case 'read':
      yield* planReads(change.relation, [change], ctx);
      return;
    case 'update':
      yield planUpdate(change.relation, change.oldRow, change.newRow, ctx);
      return;
    case 'delete':
      yield planDelete(change.relation, change.oldRow, ctx);
      return;
    case 'truncate':
      // Never cascades beyond what the message lists: a DELETE fires the target's own foreign keys only.
      for (const r of change.relations) {
        const t = ctx.target(r.schema, r.table);
        yield { role: 'truncate', text: `DELETE FROM ${qualifiedName(t.schema, t.table)}`, values: [], rows: 0, fallback: null, table: `${t.schema}.${t.table}` };
      }
      return;
    case 'message':
      return; // logical messages are for consumers of the stream; a database target has nothing to do
  }
}

/** The binders of a relation's columns (default when the context has no cache). */
export function bindersOf(relation: RelationInfo, table: TargetTable, sourceKind: string): (Binder | null)[] {
  return relation.columns.map((column) => {
    const target = requireColumn(table, column.name);
    return target.generated ? null : binderFor(column, target, table, sourceKind);
  });
}

function bindersFor(relation: RelationInfo, table: TargetTable, ctx: PlanContext): readonly (Binder | null)[] {
  return ctx.binders ? ctx.binders(relation, table) : bindersOf(relation, table, ctx.sourceKind);
}

/** Inserts of rows into one relation, as multi-row INSERTs where the rows have the same columns. */
function* planInserts(relation: RelationInfo, rows: readonly RowImage[], ctx: PlanContext): Generator<Statement> {
  const table = ctx.target(relation.schema, relation.table);
  const binders = bindersFor(relation, table, ctx);
  const existing = ctx.existingKey?.(table.schema, table.table) ?? 'error';
  for (let i = 0; i < rows.length; ) {
    const row = rows[i]!;
    const columns = insertColumns(relation, row, binders);
    let size = 1;
    if (row.unchanged.length === 0 && columns.length > 0) {
      // Rows after this one with every column present go with it, up to the limits.
      const most = Math.min(MAX_BATCH_ROWS, Math.floor(MAX_PARAMETERS / columns.length));
      let end = i + 1;
      let bytes = rowBytes(row);
      while (end < rows.length && end - i < most && rows[end]!.unchanged.length === 0 && bytes < MAX_BATCH_BYTES) {
        bytes += rowBytes(rows[end]!);
        end++;
      }
      size = largestPowerOfTwo(end - i);
    }
    const batch = rows.slice(i, i + size);
    yield insertStatement(relation, table, columns, batch, binders, existing);
    i += size;
  }
}

function insertColumns(relation: RelationInfo, row: RowImage, binders: readonly (Binder | null)[]): number[] {
  const columns: number[] = [];
  relation.columns.forEach((_, i) => {
    if (binders[i] !== null && !row.unchanged.includes(i)) columns.push(i);
  });
  return columns;
}

function insertStatement(relation: RelationInfo, table: TargetTable, columns: readonly number[], rows: readonly RowImage[], binders: readonly (Binder | null)[], existing: ExistingKey): Statement {
  const name = qualifiedName(table.schema, table.table);
  const names = columns.map((i) => quoteIdent(relation.columns[i]!.name));
  const tuple = `(${columns.map(() => '?').join(', ')})`;
  const values: BoundValue[] = [];
  for (const row of rows) for (const i of columns) values.push(binders[i]!(row.values[i] ?? null));
  const head = columns.length > 0 ? `INSERT INTO ${name} (${names.join(', ')}) VALUES ` : `INSERT INTO ${name} () VALUES `;
  const text = head + rows.map(() => tuple).join(', ');
  const tableName = `${table.schema}.${table.table}`;
  const keys = rows.map((row) => targetRowKey(relation, row, table));
  let fallback: (() => InsertRow[]) | null = null;
  if (existing === 'resolve' && columns.length > 0) {
    fallback = () => {
      const keyNames = new Set(table.primaryKey ?? []);
      const assign = columns.filter((i) => !keyNames.has(relation.columns[i]!.name)).map((i) => `${names[columns.indexOf(i)]} = VALUES(${names[columns.indexOf(i)]})`);
      // Nothing to overwrite (every column is the key): a no-op assignment.
      const update = assign.length > 0 ? assign.join(', ') : `${names[0]} = ${names[0]}`;
      const insert = `${head}${tuple}`;
      const overwrite = `${head}${tuple} ON DUPLICATE KEY UPDATE ${update}`;
      return rows.map((row, r) => {
        const own = values.slice(r * columns.length, (r + 1) * columns.length);
        const single = (sql: string): Statement => ({ role: 'insert', text: sql, values: own, rows: 1, fallback: null, table: tableName });
        return { insert: single(insert), overwrite: single(overwrite), lookup: lookupStatement(relation, row, table, binders), key: keys[r]! };
      });
    };
  }
  return { role: 'insert', text, values, rows: rows.length, fallback, existing, table: tableName, into: { schema: table.schema, table: table.table }, writes: keys.filter((k): k is RowKey => k !== null) };
}

/**
 * Reads (a snapshot's rows) into one relation: each row inserted, or the row of its primary key overwritten —
 * every column the target stores (none is unchanged in a read) — whatever that row holds: no lookup, no
 * conflict (the source says this is the row now). Consecutive rows go as multi-row
 * INSERT … ON DUPLICATE KEY UPDATE (every non-key column = VALUES(column)), batched as inserts are: exact when
 * the primary key is the table's only unique key. Not REPLACE: that deletes the row first, which fires
 * ON DELETE foreign keys (a CASCADE would take the children with it) and delete triggers.
 * With another unique key, ON DUPLICATE KEY UPDATE would overwrite whichever row holds a duplicate of it — a
 * row of another primary key — so there each row goes alone (`byKey`): its row locked by its primary key,
 * then UPDATE by that key, or INSERT when none is there (a duplicate of the other key is then a data error).
 * Only a primary key says which row a read replaces: a target table without one is a schema error.
 * Each statement says, beside the keys it writes, the writer each read carries (the sink records it).
 */
function* planReads(relation: RelationInfo, reads: readonly Extract<Change, { op: 'read' }>[], ctx: PlanContext): Generator<Statement> {
  const rows = reads.map((read) => read.newRow);
  const writerOf = (i: number): RowWriter | null => reads[i]!.writer ?? null;
  const table = ctx.target(relation.schema, relation.table);
  const binders = bindersFor(relation, table, ctx);
  const pk = readKey(relation, table, binders);
  const columns = relation.columns.flatMap((_, i) => (binders[i] !== null ? [i] : []));
  const name = qualifiedName(table.schema, table.table);
  const names = columns.map((i) => quoteIdent(relation.columns[i]!.name));
  const tuple = `(${columns.map(() => '?').join(', ')})`;
  const head = `INSERT INTO ${name} (${names.join(', ')}) VALUES `;
  const tableName = `${table.schema}.${table.table}`;
  const into = { schema: table.schema, table: table.table };
  const keyNames = new Set(pk.map((i) => relation.columns[i]!.name));
  const others = columns.filter((i) => !keyNames.has(relation.columns[i]!.name));
  const rowValues = (row: RowImage): BoundValue[] => columns.map((i) => binders[i]!(row.values[i] ?? null));
  const keyOf = (row: RowImage): RowKey =>
    rowKey(
      tableName,
      pk.map((i) => ({ name: relation.columns[i]!.name, kind: relation.columns[i]!.kind, text: row.values[i] ?? null })),
    );
  if (ctx.otherUniqueKeys?.(table)) {
    const where = pk.map((i) => `${quoteIdent(relation.columns[i]!.name)} = ?`).join(' AND ');
    const keyValues = (row: RowImage): BoundValue[] => pk.map((i) => binders[i]!(row.values[i] ?? null));
    for (const [n, row] of rows.entries()) {
      const lookup: Statement = { role: 'lookup', text: `SELECT 1 FROM ${name} WHERE ${where} LIMIT 1 FOR UPDATE`, values: keyValues(row), rows: 0, fallback: null, table: tableName };
      const update: Statement | null =
        others.length > 0
          ? {
              role: 'read',
              text: `UPDATE ${name} SET ${others.map((i) => `${quoteIdent(relation.columns[i]!.name)} = ?`).join(', ')} WHERE ${where}`,
              values: [...others.map((i) => binders[i]!(row.values[i] ?? null)), ...keyValues(row)],
              rows: 1,
              fallback: null,
              table: tableName,
              into,
            }
          : null;
      yield { role: 'read', text: head + tuple, values: rowValues(row), rows: 1, fallback: null, table: tableName, into, byKey: { lookup, update }, writes: [keyOf(row)], writers: [writerOf(n)] };
    }
    return;
  }
  // Nothing but the key to overwrite: a no-op assignment (the row is there, as the read says).
  const first = names[columns.indexOf(pk[0]!)]!;
  const assign = others.length > 0 ? others.map((i) => `${names[columns.indexOf(i)]} = VALUES(${names[columns.indexOf(i)]})`).join(', ') : `${first} = ${first}`;
  const most = Math.min(MAX_BATCH_ROWS, Math.floor(MAX_PARAMETERS / columns.length));
  for (let i = 0; i < rows.length; ) {
    let end = i + 1;
    let bytes = rowBytes(rows[i]!);
    while (end < rows.length && end - i < most && bytes < MAX_BATCH_BYTES) {
      bytes += rowBytes(rows[end]!);
      end++;
    }
    const batch = rows.slice(i, i + largestPowerOfTwo(end - i));
    yield {
      role: 'read',
      text: `${head}${batch.map(() => tuple).join(', ')} ON DUPLICATE KEY UPDATE ${assign}`,
      values: batch.flatMap(rowValues),
      rows: batch.length,
      fallback: null,
      table: tableName,
      into,
      writes: batch.map(keyOf),
      writers: batch.map((_, j) => writerOf(i + j)),
    };
    i += batch.length;
  }
}

/** The relation's columns that hold the target's primary key, in key order; a schema error when it has none. */
function readKey(relation: RelationInfo, table: TargetTable, binders: readonly (Binder | null)[]): number[] {
  const pk = table.primaryKey;
  if (!pk || pk.length === 0) {
    throw new SitesyncError(
      'SITESYNC_ERR_APPLY_SCHEMA',
      `table ${table.schema}.${table.table} has no primary key here, so a snapshot's rows cannot replace the rows they are; add the primary key it has at the source`,
    );
  }
  return pk.map((name) => {
    const i = relation.columns.findIndex((c) => c.name === name);
    if (i < 0 || binders[i] === null) {
      throw new SitesyncError(
        'SITESYNC_ERR_APPLY_SCHEMA',
        `primary key column ${JSON.stringify(name)} of table ${table.schema}.${table.table} is not among the columns the source sends, so a snapshot's rows cannot say which row they replace; give the table the primary key it has at the source`,
      );
    }
    return i;
  });
}

/** SELECT … FOR UPDATE of the row `row` identifies (locked until the transaction ends; no row: none there). */
function lookupStatement(relation: RelationInfo, row: RowImage, table: TargetTable, binders: readonly (Binder | null)[]): Statement {
  const values: BoundValue[] = [];
  const { clause } = rowMatch(relation, row, table, binders, values);
  return { role: 'lookup', text: `SELECT 1 FROM ${qualifiedName(table.schema, table.table)} WHERE ${clause} LIMIT 1 FOR UPDATE`, values, rows: 0, fallback: null, table: `${table.schema}.${table.table}` };
}

/**
 * The columns that name a row at this site, as its capture names them: the target's primary key when the
 * relation carries it (a key-only old row carries the relation's key columns only), else the relation's
 * key, else (a table without one) every column.
 */
export function keyColumnNames(relation: RelationInfo, table: TargetTable): readonly string[] {
  const pk = table.primaryKey;
  if (pk && pk.length > 0) {
    const carried = pk.every((name) => {
      const column = relation.columns.find((c) => c.name === name);
      return column !== undefined && (relation.replicaIdentity === 'f' || column.key);
    });
    if (carried) return pk;
  }
  if (relation.replicaIdentity !== 'f') {
    const keys = relation.columns.filter((c) => c.key).map((c) => c.name);
    if (keys.length > 0) return keys;
  }
  return relation.columns.map((c) => c.name);
}

/** The key of the row `row` names at this site (row-writers.ts); null when the image does not carry it. */
export function targetRowKey(relation: RelationInfo, row: RowImage, table: TargetTable): RowKey | null {
  const columns: KeyColumn[] = [];
  for (const name of keyColumnNames(relation, table)) {
    const i = relation.columns.findIndex((c) => c.name === name);
    if (i < 0 || row.unchanged.includes(i)) return null;
    columns.push({ name, kind: relation.columns[i]!.kind, text: row.values[i] ?? null });
  }
  return columns.length > 0 ? rowKey(`${table.schema}.${table.table}`, columns) : null;
}

function planUpdate(relation: RelationInfo, oldRow: RowImage | null, newRow: RowImage, ctx: PlanContext): Statement {
  const table = ctx.target(relation.schema, relation.table);
  const binders = bindersFor(relation, table, ctx);
  const sets: string[] = [];
  const values: BoundValue[] = [];
  relation.columns.forEach((column, i) => {
    const bind = binders[i];
    if (!bind || newRow.unchanged.includes(i)) return;
    sets.push(`${quoteIdent(column.name)} = ?`);
    values.push(bind(newRow.values[i] ?? null));
  });
  const { clause, limit } = rowMatch(relation, oldRow ?? newRow, table, binders, values);
  const name = qualifiedName(table.schema, table.table);
  if (sets.length === 0) {
    // Nothing the target stores changes (every column unchanged or generated): still find the row, so
    // that the statement has the same effect on locks, and change nothing.
    const key = quoteIdent(relation.columns.find((_, i) => binders[i] !== null)?.name ?? table.columns.keys().next().value!);
    sets.push(`${key} = ${key}`);
  }
  const found = oldRow ?? newRow;
  const key = targetRowKey(relation, found, table);
  const after = oldRow ? targetRowKey(relation, newRow, table) : key;
  const writes: RowKey[] = after ? [after] : [];
  if (key && (!after || !key.hash.equals(after.hash))) writes.push(key);
  return {
    role: 'update',
    text: `UPDATE ${name} SET ${sets.join(', ')} WHERE ${clause}${limit}`,
    values,
    rows: 1,
    fallback: null,
    table: `${table.schema}.${table.table}`,
    into: { schema: table.schema, table: table.table },
    target: { lookup: lookupStatement(relation, found, table, binders), key },
    writes,
  };
}

function planDelete(relation: RelationInfo, oldRow: RowImage, ctx: PlanContext): Statement {
  const table = ctx.target(relation.schema, relation.table);
  const binders = bindersFor(relation, table, ctx);
  const values: BoundValue[] = [];
  const { clause, limit } = rowMatch(relation, oldRow, table, binders, values);
  const key = targetRowKey(relation, oldRow, table);
  return {
    role: 'delete',
    text: `DELETE FROM ${qualifiedName(table.schema, table.table)} WHERE ${clause}${limit}`,
    values,
    rows: 1,
    fallback: null,
    table: `${table.schema}.${table.table}`,
    into: { schema: table.schema, table: table.table },
    target: { lookup: lookupStatement(relation, oldRow, table, binders), key },
    writes: key ? [key] : [],
  };
}

/** Binary no-pad collations exist for these character sets (MariaDB 10.2 and later). */
const NOPAD_CHARSETS = new Set(['utf8mb4', 'utf8mb3', 'utf8', 'latin1', 'ascii', 'ucs2', 'utf16', 'utf16le', 'utf32', 'latin2', 'cp1250', 'cp1251', 'cp1256', 'cp1257', 'greek', 'hebrew']);

/** A WHERE clause (and LIMIT) that finds the row `row` identifies; appends its parameters to `values`. */
function rowMatch(relation: RelationInfo, row: RowImage, table: TargetTable, binders: readonly (Binder | null)[], values: BoundValue[]): { clause: string; limit: string } {
  const indexOf = (name: string): number => relation.columns.findIndex((c) => c.name === name);
  const keyNames: readonly string[] | null = relation.replicaIdentity === 'f' ? table.primaryKey : relation.columns.filter((c) => c.key).map((c) => c.name);
  if (keyNames && keyNames.length > 0 && keyNames.every((k) => indexOf(k) >= 0 && !row.unchanged.includes(indexOf(k)) && binders[indexOf(k)] !== null)) {
    const clause = keyNames
      .map((name) => {
        const i = indexOf(name);
        values.push(binders[i]!(row.values[i] ?? null));
        return `${quoteIdent(name)} = ?`;
      })
      .join(' AND ');
    return { clause, limit: '' };
  }
  if (relation.replicaIdentity !== 'f') {
    throw new SitesyncError(
      'SITESYNC_ERR_APPLY_SCHEMA',
      `table ${relation.schema}.${relation.table} has no usable key at the source; give it a primary key there (or, at a PostgreSQL source, run ALTER TABLE ... REPLICA IDENTITY FULL)`,
    );
  }
  // No key: every column the target stores and the row carries, NULL-safe, exactly.
  const conditions: string[] = [];
  relation.columns.forEach((column, i) => {
    const bind = binders[i];
    if (!bind || row.unchanged.includes(i)) return;
    const target = table.columns.get(column.name)!;
    values.push(bind(row.values[i] ?? null));
    const name = quoteIdent(column.name);
    const charset = target.charset;
    if ((target.dataType.endsWith('char') || target.dataType.endsWith('text')) && charset !== null && NOPAD_CHARSETS.has(charset)) {
      conditions.push(`${name} COLLATE ${charset}_nopad_bin <=> ?`);
    } else if (target.dataType === 'float') {
      conditions.push(`${name} <=> CAST(? AS FLOAT)`);
    } else {
      conditions.push(`${name} <=> ?`);
    }
  });
  if (conditions.length === 0) {
    throw new SitesyncError('SITESYNC_ERR_APPLY_SCHEMA', `table ${relation.schema}.${relation.table} has no column to find a row by at the target; give it a primary key`);
  }
  return { clause: conditions.join(' AND '), limit: ' LIMIT 1' };
}

/** The target column of a source column, or a schema error naming it. */
export function requireColumn(table: TargetTable, name: string): NonNullable<ReturnType<TargetTable['columns']['get']>> {
  const column = table.columns.get(name);
  if (!column) {
    throw new SitesyncError(
      'SITESYNC_ERR_APPLY_SCHEMA',
      `column ${JSON.stringify(name)} of table ${table.schema}.${table.table} does not exist at the target; add it as at the source (sitesync retries and resumes by itself)`,
    );
  }
  return column;
}

function rowBytes(row: RowImage): number {
  let n = 0;
  for (const v of row.values) n += v === null ? 1 : v.length + 1;
  return n;
}

function largestPowerOfTwo(n: number): number {
  let p = 1;
  while (p * 2 <= n) p *= 2;
  return p;
}
