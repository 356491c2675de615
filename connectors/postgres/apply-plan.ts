/**
 * Plan, then execute: turns one change into the SQL that applies it at a PostgreSQL target. Pure: the
 * catalog facts it needs (the target table's columns and primary key) are passed in.
 *
 * - Identifiers are always quoted; values are always bound parameters, as the source's text forms. A value
 *   assigned to a column needs no cast: PostgreSQL reads the parameter as the column's type, so every type
 *   (arrays, enums, domains, composites, ranges, user types) takes the same path, losslessly. A value
 *   compared with a key column is cast to that column's type: in `key = $1` PostgreSQL infers the
 *   parameter's type from the operator, which for a composite (or a domain over one) is the anonymous
 *   `record`, whose input is not implemented.
 * - Unchanged TOASTed columns are left out of UPDATE, so the stored value stays.
 * - Rows are found by the source's replica identity key. Under REPLICA IDENTITY FULL the target's primary
 *   key is used when it has one; a table without one is matched on every column by its text form, and
 *   exactly one matching row is changed (duplicates rows stay duplicates, as at the source).
 */
import { createHash } from 'node:crypto';
import type { Change, RelationInfo, RowImage } from '../../src/events/transaction.ts';
import { BOOKKEEPING_SCHEMA } from '../../src/config/names.ts';
import { SitesyncError } from '../../src/errors.ts';
import { copyText } from './copy-text.ts';

export interface TargetTable {
  readonly schema: string;
  readonly table: string;
  readonly columns: ReadonlySet<string>;
  /**
   * Each column's type as format_type spells it (quoted where needed), without its modifier: for casts of
   * parameters in batched statements and key comparisons (a cast to varchar(5), bit(8) or numeric(10,2)
   * would cut or round a value silently; the column's own assignment applies the modifier, or fails).
   */
  readonly columnTypes?: ReadonlyMap<string, string>;
  /** Primary key column names, or null when the table has none. */
  readonly primaryKey: readonly string[] | null;
}

export interface Statement {
  /** Name for a prepared statement: the same SQL text always gets the same name. */
  readonly name: string;
  readonly text: string;
  /** Text forms of values; a batched statement binds one text array per column. */
  readonly values: readonly (string | null | readonly (string | null)[])[];
  /** What one execution must touch; 0 rows means the row was not found (or, for an insert, was there). */
  readonly expectsRow: boolean;
}

/** A SELECT that locks the row a change is for and tells who wrote it last. */
export interface RowLookup {
  readonly statement: Statement;
  /** The columns and values that identify the row, for the conflict log. */
  readonly key: Readonly<Record<string, string | null>>;
  /**
   * Where the row's writer would be in READ_WRITERS, should a snapshot addressed to this site have written
   * the row version found (its xmin): null when the row's primary key is not all in the change.
   */
  readonly readWriter?: ReadWriterRef | null;
}

/**
 * Who last wrote, at the source, each row a snapshot addressed to this site (a site joining) wrote here:
 * the row's writer is then that one, not the snapshot transaction that wrote it (postgres-sink.ts), for as
 * long as the row version is the one that transaction wrote (`xid`, its full xid8; a row's xmin is its low
 * 32 bits). One row per table and key: a later read of the key overwrites it. Rows changed or deleted
 * since keep their entry, which no longer matches their xmin (a deleted row has none): harmless.
 */
export const READ_WRITERS_TABLE = `${BOOKKEEPING_SCHEMA}.read_writers`;

/** An entry of READ_WRITERS: the target table (quoted and qualified) and the key text (readWriterKey). */
export interface ReadWriterRef {
  readonly relation: string;
  readonly key: string;
}

/** The writer to record for one row a snapshot wrote. */
export interface ReadWriterEntry {
  readonly key: string;
  readonly site: string;
  readonly commitTimeMicros: bigint;
}

/** What READ_WRITERS names a target table by. */
export function readWriterRelation(target: TargetTable): string {
  return qualifiedName(target.schema, target.table);
}

/**
 * The key text of a row in READ_WRITERS: the JSON array of its primary key columns' texts as the change
 * carries them (the source's canonical texts), in the target's primary key order. The same function makes
 * it when a snapshot's row is recorded and when a later change looks the row up. Null when the change does
 * not carry every primary key column (an old row of REPLICA IDENTITY USING INDEX; a table without one).
 */
export function readWriterKey(relation: RelationInfo, row: RowImage, target: TargetTable): string | null {
  if (!target.primaryKey) return null;
  const texts: string[] = [];
  for (const name of target.primaryKey) {
    const i = relation.columns.findIndex((c) => c.name === name);
    const value = i < 0 || row.unchanged.includes(i) ? null : row.values[i];
    if (value === null || value === undefined) return null;
    texts.push(value);
  }
  return JSON.stringify(texts);
}

/** Where a change's row would be in READ_WRITERS, or null. */
export function readWriterRef(relation: RelationInfo, row: RowImage, target: TargetTable): ReadWriterRef | null {
  const key = readWriterKey(relation, row, target);
  return key === null ? null : { relation: readWriterRelation(target), key };
}

/**
 * Records the writers of rows a snapshot just wrote into one table, as written by this transaction (one
 * statement: one text array per field, as planReadBatch); returns this transaction's xid as a row's xmin
 * reads it (`xid`).
 */
export function planRecordReadWriters(target: TargetTable, entries: readonly ReadWriterEntry[]): Statement {
  const text =
    `WITH written AS (INSERT INTO ${READ_WRITERS_TABLE} AS rw (relation, key, xid, site, commit_micros) ` +
    `SELECT $1, u.key, pg_current_xact_id(), u.site, u.micros::int8 FROM unnest($2::text[], $3::text[], $4::text[]) AS u(key, site, micros) ` +
    `ON CONFLICT (relation, key) DO UPDATE SET xid = EXCLUDED.xid, site = EXCLUDED.site, commit_micros = EXCLUDED.commit_micros RETURNING 1) ` +
    `SELECT pg_current_xact_id()::xid::text AS xid, (SELECT count(*) FROM written)::int AS n`;
  return statement(
    text,
    [readWriterRelation(target), entries.map((e) => e.key), entries.map((e) => e.site), entries.map((e) => e.commitTimeMicros.toString())],
    false,
  );
}

/**
 * The recorded writers of rows of one table whose current version (`xmin`, as text) is the one the
 * recording transaction wrote. An xid is 32 bits and comes round again: an entry 2^32 or more transactions
 * old is not trusted (the row's xmin could be a later transaction's of the same low bits).
 */
export function planRecordedWriters(relation: string, rows: readonly { readonly key: string; readonly xmin: string }[]): Statement {
  const text =
    `SELECT rw.key, rw.site, rw.commit_micros::text AS commit_micros FROM unnest($2::text[], $3::text[]) AS u(key, xmin) ` +
    `JOIN ${READ_WRITERS_TABLE} rw ON rw.relation = $1 AND rw.key = u.key AND rw.xid::xid = u.xmin::xid ` +
    `WHERE rw.xid::text::numeric > pg_snapshot_xmax(pg_current_snapshot())::text::numeric - 4294967296`;
  return statement(text, [relation, rows.map((r) => r.key), rows.map((r) => r.xmin)], false);
}

/**
 * Every xid (as a row's xmin reads it) that recorded writers still in READ_WRITERS: an index-only skip
 * through the xid index, one probe per distinct xid, however many rows each recorded.
 */
export const READ_WRITER_XIDS =
  `WITH RECURSIVE x AS ((SELECT xid FROM ${READ_WRITERS_TABLE} ORDER BY xid LIMIT 1) ` +
  `UNION ALL SELECT (SELECT r.xid FROM ${READ_WRITERS_TABLE} r WHERE r.xid > x.xid ORDER BY r.xid LIMIT 1) FROM x WHERE x.xid IS NOT NULL) ` +
  `SELECT xid::xid::text AS xid FROM x WHERE xid IS NOT NULL`;

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export function qualifiedName(schema: string, table: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(table)}`;
}

/** The statements for one change; `target` gives the catalog facts of each table it touches. */
export function planChange(change: Change, target: (schema: string, table: string) => TargetTable): Statement[] {
  switch (change.op) {
    case 'insert':
      return [planInsert(change.relation, change.newRow, target(change.relation.schema, change.relation.table))];
    case 'read':
      return [planReadBatch(change.relation, [change.newRow], target(change.relation.schema, change.relation.table))];
    case 'update':
      return [planUpdate(change.relation, change.oldRow, change.newRow, target(change.relation.schema, change.relation.table))];
    case 'delete':
      return [planDelete(change.relation, change.oldRow, target(change.relation.schema, change.relation.table))];
    case 'truncate': {
      const names = change.relations.map((r) => {
        const t = target(r.schema, r.table);
        return qualifiedName(t.schema, t.table);
      });
      // Never CASCADE, whatever the message says: the source already lists every published table its
      // cascade reached, and at the target a cascade would empty tables the target does not replicate.
      // As PostgreSQL's own apply does, RESTRICT: a target table outside the set that references one of
      // these makes the TRUNCATE fail (a data error), rather than lose rows nobody sent.
      const text = `TRUNCATE ${names.join(', ')}${change.restartIdentity ? ' RESTART IDENTITY' : ''}`;
      return [statement(text, [], false)];
    }
    case 'message':
      return []; // logical messages are for consumers of the stream; a database target has nothing to do
  }
}

function planInsert(relation: RelationInfo, row: RowImage, target: TargetTable): Statement {
  const names: string[] = [];
  const values: (string | null)[] = [];
  relation.columns.forEach((column, i) => {
    if (row.unchanged.includes(i)) return;
    requireColumn(target, column.name);
    names.push(quoteIdent(column.name));
    values.push(row.values[i] ?? null);
  });
  const placeholders = values.map((_, i) => `$${i + 1}`).join(', ');
  // With a primary key, an existing key is a conflict for the sink to resolve (0 rows), not an error.
  const onConflict = target.primaryKey ? ` ON CONFLICT (${target.primaryKey.map(quoteIdent).join(', ')}) DO NOTHING` : '';
  const text = `INSERT INTO ${qualifiedName(target.schema, target.table)} (${names.join(', ')}) OVERRIDING SYSTEM VALUE VALUES (${placeholders})${onConflict}`;
  return statement(text, values, target.primaryKey !== null);
}

/** Only a primary key can say which row a snapshot's row replaces. */
function readKey(target: TargetTable): readonly string[] {
  if (target.primaryKey) return target.primaryKey;
  throw new SitesyncError(
    'SITESYNC_ERR_APPLY_SCHEMA',
    `table ${target.schema}.${target.table} has no primary key here, so a snapshot's rows cannot replace the rows they are; add the primary key it has at the source`,
  );
}

/**
 * Snapshot rows into one table as one statement (each column one text array, as planInsertBatch): absent
 * keys inserted, present ones overwritten. The rows of one chunk have distinct keys.
 */
export function planReadBatch(relation: RelationInfo, rows: readonly RowImage[], target: TargetTable): Statement {
  const pk = readKey(target);
  const sets = relation.columns.filter((c) => !pk.includes(c.name)).map(({ name }) => `${quoteIdent(name)} = EXCLUDED.${quoteIdent(name)}`);
  const action = sets.length > 0 ? `DO UPDATE SET ${sets.join(', ')}` : 'DO NOTHING';
  const { text: insert, values } = unnestedInsert(relation, rows, target);
  const text = `${insert} ON CONFLICT (${pk.map(quoteIdent).join(', ')}) ${action}`;
  return statement(text, values, false);
}

/**
 * Locks the rows that snapshot rows would replace and reads who last wrote each (as planRowLookup does for
 * one): `i` is the 1-based index of the snapshot row, `xmin` its row version (for READ_WRITERS). Rows with
 * no match are not returned.
 */
export function planReadWriters(relation: RelationInfo, rows: readonly RowImage[], target: TargetTable): Statement {
  const pk = readKey(target);
  const indexes = pk.map((name) => {
    const i = relation.columns.findIndex((c) => c.name === name);
    if (i < 0) throw new SitesyncError('SITESYNC_ERR_APPLY_SCHEMA', `the snapshot of ${relation.schema}.${relation.table} has no column ${JSON.stringify(name)}, part of the primary key here`);
    return i;
  });
  const values = indexes.map((i) => rows.map((row) => row.values[i] ?? null));
  const arrays = pk.map((_, k) => `$${k + 1}::text[]`).join(', ');
  const aliases = pk.map((_, k) => `k${k}`).join(', ');
  const match = pk.map((name, k) => `t.${quoteIdent(name)} = u.k${k}::${columnType(target, name)}`).join(' AND ');
  const text =
    `SELECT u.i, t.xmin = pg_current_xact_id()::xid AS mine, t.xmin::text AS xmin, (extract(epoch FROM c.timestamp) * 1000000)::int8::text AS committed_micros, c.roident ` +
    `FROM unnest(${arrays}) WITH ORDINALITY AS u(${aliases}, i) JOIN ${qualifiedName(target.schema, target.table)} t ON ${match}, ` +
    `LATERAL pg_xact_commit_timestamp_origin(t.xmin) c FOR UPDATE OF t`;
  return statement(text, values, false);
}

function planUpdate(relation: RelationInfo, oldRow: RowImage | null, newRow: RowImage, target: TargetTable): Statement {
  const sets: string[] = [];
  const values: (string | null)[] = [];
  relation.columns.forEach((column, i) => {
    if (newRow.unchanged.includes(i)) return;
    requireColumn(target, column.name);
    values.push(newRow.values[i] ?? null);
    sets.push(`${quoteIdent(column.name)} = $${values.length}`);
  });
  const { clause } = rowMatch(relation, oldRow ?? newRow, target, values);
  return statement(`UPDATE ${qualifiedName(target.schema, target.table)} SET ${sets.join(', ')} WHERE ${clause}`, values, true);
}

/**
 * Many inserts into one table as one statement: each column travels as one text array, unnested and cast
 * to the column's type (PostgreSQL's own text input, as for a parameter: lossless). With a primary key,
 * existing keys are skipped: fewer rows than sent means conflicts, which the sink then finds one by one
 * (no RETURNING: sending every key back costs a third of the statement, for a case that is rare).
 */
export function planInsertBatch(relation: RelationInfo, rows: readonly RowImage[], target: TargetTable): Statement {
  const pk = target.primaryKey;
  const { text: insert, values } = unnestedInsert(relation, rows, target);
  const text = pk ? `${insert} ON CONFLICT (${pk.map(quoteIdent).join(', ')}) DO NOTHING` : insert;
  return statement(text, values, false);
}

/** `INSERT … SELECT` of rows sent as one text array per column, each cast to its column's type. */
function unnestedInsert(relation: RelationInfo, rows: readonly RowImage[], target: TargetTable): { text: string; values: (string | null)[][] } {
  const columns = relation.columns.map((c) => c.name);
  const values: (string | null)[][] = columns.map(() => []);
  for (const row of rows) row.values.forEach((v, i) => values[i]!.push(v));
  const casts = columns.map((name, i) => `u.c${i}::${columnType(target, name)}`);
  const arrays = columns.map((_, i) => `$${i + 1}::text[]`).join(', ');
  const aliases = columns.map((_, i) => `c${i}`).join(', ');
  const text =
    `INSERT INTO ${qualifiedName(target.schema, target.table)} (${columns.map(quoteIdent).join(', ')}) OVERRIDING SYSTEM VALUE ` +
    `SELECT ${casts.join(', ')} FROM unnest(${arrays}) AS u(${aliases})`;
  return { text, values };
}

/** A COPY statement and the rows it reads, in COPY's text format. */
export interface CopyPlan {
  readonly text: string;
  readonly data: Buffer;
}

/**
 * Many inserts into one table as COPY … FROM STDIN: PostgreSQL's cheapest way in (the column types' own
 * text input, as for a parameter, and rows written to the heap in batches) — about 40% less server CPU
 * than the unnest statement. Like INSERT … OVERRIDING SYSTEM VALUE, COPY writes identity columns as
 * given. It has no ON CONFLICT: a key already there fails it, and the sink redoes that transaction with
 * planInsertBatch, which resolves the conflict.
 */
export function planCopy(relation: RelationInfo, rows: readonly RowImage[], target: TargetTable): CopyPlan {
  const columns = relation.columns.map((c) => {
    requireColumn(target, c.name);
    return quoteIdent(c.name);
  });
  return { text: `COPY ${qualifiedName(target.schema, target.table)} (${columns.join(', ')}) FROM STDIN`, data: copyText(rows) };
}

/** The UPDATE that makes an existing row equal to an incoming insert (an insert that won a conflict). */
export function planOverwrite(relation: RelationInfo, newRow: RowImage, target: TargetTable): Statement {
  return planUpdate(relation, null, newRow, target);
}

/**
 * Locks the row `row` identifies and reads its last writer: `mine` when this very transaction wrote it,
 * else the commit time and replication origin of the transaction that did (null when PostgreSQL no
 * longer knows: a frozen or very old row version), and the row version (`xmin`), whose writer READ_WRITERS
 * may know better (a row a snapshot addressed to this site wrote). Without commit timestamps, neither.
 */
export function planRowLookup(relation: RelationInfo, row: RowImage, target: TargetTable, commitTimestamps = true): RowLookup {
  const values: (string | null)[] = [];
  const { clause, keyNames } = rowMatch(relation, row, target, values);
  const locked = `(SELECT xmin, xmin = pg_current_xact_id()::xid AS mine FROM ${qualifiedName(target.schema, target.table)} WHERE ${clause} FOR UPDATE) x`;
  // Without track_commit_timestamp the writer cannot be asked for (the function would fail): only whether
  // the row is there, and whether this transaction wrote it.
  const text = commitTimestamps
    ? `SELECT x.mine, x.xmin::text AS xmin, (extract(epoch FROM c.timestamp) * 1000000)::int8::text AS committed_micros, c.roident FROM ${locked}, LATERAL pg_xact_commit_timestamp_origin(x.xmin) c`
    : `SELECT x.mine, NULL::text AS committed_micros, NULL::int AS roident FROM ${locked}`;
  return {
    statement: statement(text, values, false),
    key: Object.fromEntries(keyNames.map((name, i) => [name, values[i] ?? null])),
    readWriter: commitTimestamps ? readWriterRef(relation, row, target) : null,
  };
}

function planDelete(relation: RelationInfo, oldRow: RowImage, target: TargetTable): Statement {
  const values: (string | null)[] = [];
  const { clause } = rowMatch(relation, oldRow, target, values);
  return statement(`DELETE FROM ${qualifiedName(target.schema, target.table)} WHERE ${clause}`, values, true);
}

/** A WHERE clause that finds the row `row` identifies; appends its parameters to `values`. */
function rowMatch(relation: RelationInfo, row: RowImage, target: TargetTable, values: (string | null)[]): { clause: string; keyNames: string[] } {
  const indexOf = (name: string): number => relation.columns.findIndex((c) => c.name === name);
  let keyNames: readonly string[] | null;
  if (relation.replicaIdentity === 'f') keyNames = target.primaryKey;
  else keyNames = relation.columns.filter((c) => c.key).map((c) => c.name);
  if (keyNames && keyNames.length > 0 && keyNames.every((k) => indexOf(k) >= 0 && !row.unchanged.includes(indexOf(k)))) {
    const clause = keyNames
      .map((name) => {
        const type = columnType(target, name);
        values.push(row.values[indexOf(name)] ?? null);
        return `${quoteIdent(name)} = $${values.length}::${type}`;
      })
      .join(' AND ');
    return { clause, keyNames: [...keyNames] };
  }
  if (relation.replicaIdentity !== 'f') {
    throw new SitesyncError(
      'SITESYNC_ERR_APPLY_SCHEMA',
      `table ${relation.schema}.${relation.table} has no usable replica identity key at the source; give it a primary key or run ALTER TABLE ... REPLICA IDENTITY FULL there`,
    );
  }
  // No key: match every column by its text form (json, point… have no equality operator), one row only.
  const conditions = relation.columns.map((column, i) => {
    requireColumn(target, column.name);
    values.push(row.values[i] ?? null);
    return `(${quoteIdent(column.name)})::text IS NOT DISTINCT FROM $${values.length}::text`;
  });
  const name = qualifiedName(target.schema, target.table);
  return {
    clause: `(tableoid, ctid) = (SELECT tableoid, ctid FROM ${name} WHERE ${conditions.join(' AND ')} LIMIT 1)`,
    keyNames: relation.columns.map((c) => c.name),
  };
}

/** The target's type of a column, for a cast. */
function columnType(target: TargetTable, name: string): string {
  requireColumn(target, name);
  const type = target.columnTypes?.get(name);
  if (!type) throw new SitesyncError('SITESYNC_ERR_APPLY_SCHEMA', `the type of column ${JSON.stringify(name)} of ${target.schema}.${target.table} is not known at the target`);
  return type;
}

function requireColumn(target: TargetTable, name: string): void {
  if (!target.columns.has(name)) {
    throw new SitesyncError(
      'SITESYNC_ERR_APPLY_SCHEMA',
      `column ${JSON.stringify(name)} of table ${target.schema}.${target.table} does not exist at the target; add it as at the source (sitesync retries and resumes by itself)`,
    );
  }
}

const statementNames = new Map<string, string>();

function statement(text: string, values: Statement['values'], expectsRow: boolean): Statement {
  let name = statementNames.get(text);
  if (name === undefined) {
    name = `sitesync_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`;
    if (statementNames.size < 10_000) statementNames.set(text, name);
  }
  return { name, text, values, expectsRow };
}
