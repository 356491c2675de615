/**
 * The SQL a DuckDB site runs, as text: identifiers always quoted, values always bound ($1…) or built as
 * DuckDB values (duckdb-kinds.ts), never spliced in — except the few literals DuckDB takes no parameter for
 * (a COPY's file name), which are quoted here.
 *
 * Tables per replicated table, in the source's schema name:
 * - current state `"schema"."table"`: the source's columns, then CURRENT_COLUMNS. No PRIMARY KEY or UNIQUE:
 *   DuckDB checks those constraints too eagerly to delete a key and insert it again in one transaction, which
 *   is how rows are replaced (set-based: DELETE … USING a staged table, then INSERT … SELECT).
 * - history `"schema"."table__history"`: the source's columns, then HISTORY_COLUMNS; append-only.
 * Columns the source adds later are added at the end of both (ALTER TABLE ADD COLUMN), so a table's column
 * order is its catalog's, which every writer reads (duckdb-tables.ts).
 *
 * sitesync's own tables, in schema `sitesync`: apply_progress (one row per source), parked (what this site
 * parked, as the other sinks keep it), spilled_parts (the parts of a large transaction before its last).
 */

export const BOOKKEEPING_SCHEMA = 'sitesync';
export const HISTORY_SUFFIX = '__history';
/** sitesync's own columns start with this; a source column that does too is refused (it would collide). */
export const OWN_COLUMN_PREFIX = '_sitesync_';

/** The current-state table's own columns, after the source's. */
export const CURRENT_COLUMNS = (json: boolean): readonly (readonly [string, string])[] => [
  ['_sitesync_deleted', 'BOOLEAN'],
  ['_sitesync_site', 'VARCHAR'],
  ['_sitesync_commit_micros', 'BIGINT'],
  ['_sitesync_commit_time', 'TIMESTAMP WITH TIME ZONE'],
  ['_sitesync_position', 'VARCHAR'],
  ['_sitesync_transaction', 'VARCHAR'],
  /** {column: exact text} of values the typed column could not hold (stored NULL). */
  ['_sitesync_special', json ? 'JSON' : 'VARCHAR'],
];

/** The history table's own columns, after the source's. */
export const HISTORY_COLUMNS = (json: boolean): readonly (readonly [string, string])[] => [
  /** insert, update, delete, read (a snapshot's row), truncate. */
  ['_sitesync_op', 'VARCHAR'],
  /** false: the change lost a conflict and is history only. */
  ['_sitesync_applied', 'BOOLEAN'],
  /** Columns the source did not send (unchanged TOASTed values) that neither the run nor the store knew. */
  ['_sitesync_unchanged', 'VARCHAR[]'],
  ['_sitesync_site', 'VARCHAR'],
  ['_sitesync_position', 'VARCHAR'],
  /** The change's place in its transaction: history orders by position, then this. */
  ['_sitesync_seq', 'INTEGER'],
  ['_sitesync_commit_micros', 'BIGINT'],
  ['_sitesync_commit_time', 'TIMESTAMP WITH TIME ZONE'],
  ['_sitesync_transaction', 'VARCHAR'],
  ['_sitesync_special', json ? 'JSON' : 'VARCHAR'],
  /**
   * An update's old row as the source sent it ({column: text}): the key it had when the key changed, every
   * column of a table without a key. Without it the history could not say which row an update changed.
   */
  ['_sitesync_before', json ? 'JSON' : 'VARCHAR'],
];

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** A string literal (for what DuckDB takes no parameter for: file names of COPY). */
export function quoteLiteral(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

export function qualified(schema: string, table: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(table)}`;
}

export function createSchema(schema: string): string {
  return `CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`;
}

export function createTable(schema: string, table: string, columns: readonly (readonly [string, string])[]): string {
  return `CREATE TABLE IF NOT EXISTS ${qualified(schema, table)} (${columns.map(([name, type]) => `${quoteIdent(name)} ${type}`).join(', ')})`;
}

export function addColumn(schema: string, table: string, column: string, type: string): string {
  return `ALTER TABLE ${qualified(schema, table)} ADD COLUMN ${quoteIdent(column)} ${type}`;
}

/** A table's columns in their order, as the catalog has them (values: schema, table; case-insensitive, as DuckDB's names are). */
export const TABLE_COLUMNS = `SELECT schema_name, table_name, column_name, data_type FROM duckdb_columns()
 WHERE database_name = current_database() AND lower(schema_name) = lower($1) AND lower(table_name) = lower($2)
 ORDER BY column_index`;

/** An empty temporary table shaped as `columns` of a table (its types, in that order), replacing any of that name. */
export function stageLike(stage: string, schema: string, table: string, columns: readonly string[] | null): string {
  const list = columns === null ? '*' : columns.map(quoteIdent).join(', ');
  return `CREATE OR REPLACE TEMP TABLE ${quoteIdent(stage)} AS SELECT ${list} FROM ${qualified(schema, table)} LIMIT 0`;
}

export function dropStage(stage: string): string {
  return `DROP TABLE IF EXISTS temp.main.${quoteIdent(stage)}`;
}

/** Rows of `a` whose key columns equal those of `b` (a NULL key value matches NULL: it is a value here). */
function keyMatch(a: string, b: string, keys: readonly string[]): string {
  return keys.map((k) => `${a}.${quoteIdent(k)} IS NOT DISTINCT FROM ${b}.${quoteIdent(k)}`).join(' AND ');
}

/** The stored rows of the staged keys, every column in the table's order. */
export function lookupRows(schema: string, table: string, stage: string, keys: readonly string[]): string {
  return `SELECT t.* FROM ${qualified(schema, table)} AS t JOIN temp.main.${quoteIdent(stage)} AS k ON ${keyMatch('t', 'k', keys)}`;
}

/** Deletes the stored rows of the staged final rows' keys. */
export function deleteStaged(schema: string, table: string, stage: string, keys: readonly string[]): string {
  return `DELETE FROM ${qualified(schema, table)} AS t USING temp.main.${quoteIdent(stage)} AS s WHERE ${keyMatch('t', 's', keys)}`;
}

/** Inserts the staged final rows (with hard deletes, not those the run deleted). */
export function insertStaged(schema: string, table: string, stage: string, hard: boolean): string {
  return `INSERT INTO ${qualified(schema, table)} SELECT * FROM temp.main.${quoteIdent(stage)}${hard ? ' WHERE NOT "_sitesync_deleted"' : ''}`;
}

/** A truncation at the source, hard: every stored row goes. */
export function truncateHard(schema: string, table: string): string {
  return `DELETE FROM ${qualified(schema, table)}`;
}

/** A truncation at the source, soft: every live row is flagged deleted by its writer (values: site, micros, commit time, position, transaction). */
export function truncateSoft(schema: string, table: string): string {
  return `UPDATE ${qualified(schema, table)} SET "_sitesync_deleted" = true, "_sitesync_site" = $1, "_sitesync_commit_micros" = $2,
 "_sitesync_commit_time" = $3, "_sitesync_position" = $4, "_sitesync_transaction" = $5 WHERE NOT "_sitesync_deleted"`;
}

// ─── bookkeeping ─────────────────────────────────────────────────────────────────────────────────────────

const PROGRESS = `${quoteIdent(BOOKKEEPING_SCHEMA)}.apply_progress`;
const PARKED = `${quoteIdent(BOOKKEEPING_SCHEMA)}.parked`;
const SPILLED = `${quoteIdent(BOOKKEEPING_SCHEMA)}.spilled_parts`;

export const BOOKKEEPING_TABLES: readonly string[] = [
  createSchema(BOOKKEEPING_SCHEMA),
  `CREATE TABLE IF NOT EXISTS ${PROGRESS} (source VARCHAR, source_kind VARCHAR, position VARCHAR, commit_time_micros BIGINT, applied_at TIMESTAMP WITH TIME ZONE)`,
  `CREATE TABLE IF NOT EXISTS ${PARKED} (id VARCHAR, parked_at TIMESTAMP WITH TIME ZONE DEFAULT current_timestamp, kind VARCHAR, source VARCHAR,
 transaction_id VARCHAR, body_sha256 VARCHAR, user_id VARCHAR, route VARCHAR, reason VARCHAR, done_at TIMESTAMP WITH TIME ZONE)`,
  `CREATE TABLE IF NOT EXISTS ${SPILLED} (source VARCHAR, transaction_id VARCHAR, part INTEGER, schema_version INTEGER, body BLOB)`,
];

/** Whether the progress table is there (sitesync status reads a file that may be older than it, or new). */
export const PROGRESS_EXISTS = `SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = '${BOOKKEEPING_SCHEMA}' AND table_name = 'apply_progress'`;

export const PROGRESS_OF = `SELECT position FROM ${PROGRESS} WHERE source = $1`;
export const ALL_PROGRESS = `SELECT source, position FROM ${PROGRESS}`;

/**
 * Moves a source's progress forward only (values: source, source kind, position, commit micros): positions of
 * one source order by length, then as strings (src/events/position.ts). No key on the table: the merge finds
 * the row by its source, and writes are serialised in the process that holds the file.
 */
export const ADVANCE_PROGRESS = `MERGE INTO ${PROGRESS} AS p
 USING (SELECT $1::VARCHAR AS source, $2::VARCHAR AS source_kind, $3::VARCHAR AS position, $4::BIGINT AS commit_time_micros) AS n
 ON p.source = n.source
 WHEN MATCHED AND (length(n.position) > length(p.position) OR (length(n.position) = length(p.position) AND n.position > p.position))
   THEN UPDATE SET position = n.position, source_kind = n.source_kind, commit_time_micros = n.commit_time_micros, applied_at = current_timestamp
 WHEN NOT MATCHED THEN INSERT (source, source_kind, position, commit_time_micros, applied_at)
   VALUES (n.source, n.source_kind, n.position, n.commit_time_micros, current_timestamp)`;

/** A parked record, unless one with its id is there (a refused message refused again keeps its record). Values: id, kind, source, transaction id, sha256, user, route, reason. */
export const INSERT_PARKED = `INSERT INTO ${PARKED} (id, kind, source, transaction_id, body_sha256, user_id, route, reason)
 SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE NOT EXISTS (SELECT 1 FROM ${PARKED} WHERE id = $1)`;

/** A parked record's values for INSERT_PARKED, cut to sizes a person reads (a refused message's claims are untrusted). */
export function parkedValues(record: { readonly id: string; readonly kind: string; readonly source: string | null; readonly transactionId: string | null; readonly bodySha256: string; readonly userId: string | null; readonly route: string; readonly reason: string }): (string | null)[] {
  const cut = (s: string | null, n: number): string | null => (s === null ? null : s.slice(0, n));
  return [record.id.toLowerCase(), record.kind, cut(record.source, 255), cut(record.transactionId, 255), record.bodySha256, cut(record.userId, 255), cut(record.route, 60_000), record.reason.slice(0, 2000)];
}

export const FIND_PARKED = `SELECT id, kind, source, transaction_id, body_sha256, user_id, route, reason, done_at IS NOT NULL AS done FROM ${PARKED} WHERE id = $1 LIMIT 1`;

export const FINISH_PARKED = `UPDATE ${PARKED} SET done_at = current_timestamp WHERE id = $1 AND done_at IS NULL`;

/** Marks every open 'skipped' record of a transaction done, provided record $2 is still open (values: transaction id, id). */
export const FINISH_RETRIED = `UPDATE ${PARKED} SET done_at = current_timestamp
 WHERE transaction_id = $1 AND kind = 'skipped' AND done_at IS NULL
   AND EXISTS (SELECT 1 FROM ${PARKED} AS o WHERE o.id = $2 AND o.done_at IS NULL)`;

export const FORGET_PARTS = `DELETE FROM ${SPILLED} WHERE source = $1`;
export const HAS_PART = `SELECT count(*) FROM ${SPILLED} WHERE source = $1 AND transaction_id = $2 AND part = $3`;
export const SPILLED_BYTES = `SELECT coalesce(sum(octet_length(body)), 0) FROM ${SPILLED} WHERE source = $1`;
export const INSERT_PART = `INSERT INTO ${SPILLED} (source, transaction_id, part, schema_version, body) VALUES ($1, $2, $3, $4, $5)`;
export const READ_PART = `SELECT body, schema_version FROM ${SPILLED} WHERE source = $1 AND transaction_id = $2 AND part = $3 LIMIT 1`;

/** Every table a DuckDB site holds for its sources (not sitesync's own), for the Parquet export. */
export const REPLICATED_TABLES = `SELECT schema_name, table_name FROM duckdb_tables()
 WHERE database_name = current_database() AND NOT temporary AND NOT internal AND schema_name <> '${BOOKKEEPING_SCHEMA}'
 ORDER BY schema_name, table_name`;

/** One table to a Parquet file (DuckDB takes no parameter for the file name). */
export function copyToParquet(schema: string, table: string, file: string): string {
  return `COPY (SELECT * FROM ${qualified(schema, table)}) TO ${quoteLiteral(file)} (FORMAT parquet)`;
}
