/**
 * The SQL the ClickHouse sink runs, as pure functions of names and values: table layouts, the lookups before a
 * fold, truncations, and the tokens that deduplicate a batch sent again. Identifiers are always quoted; values
 * are literals escaped here (ClickHouse's HTTP interface has no bound parameters for these statements).
 *
 * Layout (the DuckDB sink keeps the same column names, so analysts see one shape):
 * - current state `schema__table`: the source columns (key columns as they are, others Nullable), then
 *   `_sitesync_version` UInt64 (an apply sequence that only grows: the last row applied wins at merge even when
 *   its commit time is older, because the fold already decided conflicts), `_sitesync_deleted` UInt8, the
 *   writer (`_sitesync_site`, `_sitesync_commit_micros`, `_sitesync_commit_time`), `_sitesync_position`,
 *   `_sitesync_transaction` and `_sitesync_special` (NULL, or JSON {column: exact text} of the values their
 *   typed columns cannot hold: clickhouse-kinds.ts); ReplacingMergeTree(_sitesync_version, _sitesync_deleted)
 *   for hard deletes, ReplacingMergeTree(_sitesync_version) for soft ones (the flag is then a plain column and
 *   FINAL keeps deleted rows), ORDER BY the key columns.
 * - history `schema__table__history`: every source column Nullable, then `_sitesync_op`, `_sitesync_applied`,
 *   `_sitesync_unchanged`, `_sitesync_site`, `_sitesync_position`, `_sitesync_seq`, `_sitesync_commit_micros`,
 *   `_sitesync_commit_time`, `_sitesync_transaction`, `_sitesync_special`, `_sitesync_before` (an update's old
 *   row as the source sent it, JSON: the old key of a key change, every column of a table without a key);
 *   ReplacingMergeTree ordered by
 *   (site, position, seq): one row per change however often, and however grouped, it was written.
 *
 * Names: one database (the URL's) holds everything, each table as `schema__table`, rather than a database per
 * schema: the apply user needs rights on one database only, and no CREATE DATABASE. Two source tables can map
 * to one name (`a__b`.`c` and `a`.`b__c`): each table's comment names its source table, and a second one is
 * refused (clickhouse-tables.ts). sitesync's own tables are `_sitesync_…`, with no `__`, so no source table
 * maps onto them.
 */
import { createHash } from 'node:crypto';
import type { DeleteMode } from './clickhouse-config.ts';

/** Deduplication keeps the tokens of this many recent inserts per table (ClickHouse's default is 0: none). */
export const DEDUPLICATION_WINDOW = 10_000;

export const VERSION = '_sitesync_version';
export const DELETED = '_sitesync_deleted';
export const SITE = '_sitesync_site';
export const COMMIT_MICROS = '_sitesync_commit_micros';
export const COMMIT_TIME = '_sitesync_commit_time';
export const POSITION = '_sitesync_position';
export const TRANSACTION = '_sitesync_transaction';
export const SPECIAL = '_sitesync_special';
export const OP = '_sitesync_op';
export const APPLIED = '_sitesync_applied';
export const UNCHANGED = '_sitesync_unchanged';
export const SEQ = '_sitesync_seq';
export const BEFORE = '_sitesync_before';

/** Every name sitesync adds to a table starts so; a source column may not. */
export const RESERVED_PREFIX = '_sitesync_';

const CURRENT_COLUMNS: readonly (readonly [string, string])[] = [
  [VERSION, 'UInt64'],
  [DELETED, 'UInt8'],
  [SITE, 'LowCardinality(String)'],
  [COMMIT_MICROS, 'Int64'],
  [COMMIT_TIME, "DateTime64(6, 'UTC')"],
  [POSITION, 'String'],
  [TRANSACTION, 'String'],
  [SPECIAL, 'Nullable(String)'],
];

const HISTORY_COLUMNS: readonly (readonly [string, string])[] = [
  [OP, 'LowCardinality(String)'],
  [APPLIED, 'UInt8'],
  [UNCHANGED, 'Array(String)'],
  [SITE, 'LowCardinality(String)'],
  [POSITION, 'String'],
  [SEQ, 'UInt32'],
  [COMMIT_MICROS, 'Int64'],
  [COMMIT_TIME, "DateTime64(6, 'UTC')"],
  [TRANSACTION, 'String'],
  [SPECIAL, 'Nullable(String)'],
  [BEFORE, 'Nullable(String)'],
];

export function quoteIdent(name: string): string {
  return `\`${name.replace(/\\/g, '\\\\').replace(/`/g, '\\`')}\``;
}

export function quoteString(text: string): string {
  return `'${text.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

export function qualified(database: string, table: string): string {
  return `${quoteIdent(database)}.${quoteIdent(table)}`;
}

/** The ClickHouse tables of source table `schema.table`. */
export function tableNames(schema: string, table: string): { readonly current: string; readonly history: string } {
  return { current: `${schema}__${table}`, history: `${schema}__${table}__history` };
}

/** What a table's comment says of it: the source table and the role it has. */
export interface TableOwner {
  readonly schema: string;
  readonly table: string;
  readonly role: 'current' | 'history';
}

export function ownerComment(owner: TableOwner): string {
  return JSON.stringify({ sitesync: owner.role, schema: owner.schema, table: owner.table });
}

/** The owner a comment names, or null when it is not one sitesync wrote (an operator's own table). */
export function parseOwnerComment(comment: string): TableOwner | null {
  try {
    const o = JSON.parse(comment) as { sitesync?: unknown; schema?: unknown; table?: unknown };
    if ((o.sitesync === 'current' || o.sitesync === 'history') && typeof o.schema === 'string' && typeof o.table === 'string') return { role: o.sitesync, schema: o.schema, table: o.table };
  } catch {
    // not JSON: not ours
  }
  return null;
}

export interface ColumnDefinition {
  readonly name: string;
  readonly type: string;
}

function columnList(columns: readonly ColumnDefinition[], own: readonly (readonly [string, string])[]): string {
  return [...columns.map((c) => `${quoteIdent(c.name)} ${c.type}`), ...own.map(([name, type]) => `${quoteIdent(name)} ${type}`)].join(', ');
}

export function createCurrentTable(database: string, name: string, columns: readonly ColumnDefinition[], key: readonly string[], deletes: DeleteMode, owner: TableOwner): string {
  const engine = deletes === 'hard' ? `ReplacingMergeTree(${quoteIdent(VERSION)}, ${quoteIdent(DELETED)})` : `ReplacingMergeTree(${quoteIdent(VERSION)})`;
  return (
    `CREATE TABLE IF NOT EXISTS ${qualified(database, name)} (${columnList(columns, CURRENT_COLUMNS)}) ENGINE = ${engine} ` +
    `ORDER BY ${key.length === 1 ? quoteIdent(key[0]!) : `(${key.map(quoteIdent).join(', ')})`} SETTINGS non_replicated_deduplication_window = ${DEDUPLICATION_WINDOW} COMMENT ${quoteString(ownerComment(owner))}`
  );
}

export function createHistoryTable(database: string, name: string, columns: readonly ColumnDefinition[], owner: TableOwner): string {
  return (
    `CREATE TABLE IF NOT EXISTS ${qualified(database, name)} (${columnList(columns, HISTORY_COLUMNS)}) ENGINE = ReplacingMergeTree ` +
    `ORDER BY (${[SITE, POSITION, SEQ].map(quoteIdent).join(', ')}) SETTINGS non_replicated_deduplication_window = ${DEDUPLICATION_WINDOW} COMMENT ${quoteString(ownerComment(owner))}`
  );
}

export function addColumn(database: string, table: string, column: ColumnDefinition): string {
  return `ALTER TABLE ${qualified(database, table)} ADD COLUMN IF NOT EXISTS ${quoteIdent(column.name)} ${column.type}`;
}

/** Whether a current-state table's engine (system.tables.engine_full) drops deleted rows under FINAL: null when it is no ReplacingMergeTree. */
export function deleteModeOfEngine(engineFull: string): DeleteMode | null {
  const m = /ReplacingMergeTree\(([^)]*)\)/.exec(engineFull);
  if (!m) return null;
  const args = m[1]!.split(',').map((a) => a.trim().replace(/^`|`$/g, ''));
  if (!args.includes(VERSION)) return null;
  return args.includes(DELETED) ? 'hard' : 'soft';
}

/**
 * The current rows of `keys` (each a list of literals in key-column order), as FINAL shows them. Soft-deleted
 * rows come too (flagged); hard-deleted ones FINAL leaves out.
 */
export function selectByKeys(database: string, table: string, select: readonly string[], keyColumns: readonly string[], keys: readonly (readonly string[])[]): string {
  const left = keyColumns.length === 1 ? quoteIdent(keyColumns[0]!) : `(${keyColumns.map(quoteIdent).join(', ')})`;
  const right = keys.map((k) => (k.length === 1 ? k[0]! : `(${k.join(', ')})`)).join(', ');
  return `SELECT ${select.join(', ')} FROM ${qualified(database, table)} FINAL WHERE ${left} IN (${right})`;
}

/** The columns sitesync reads of a current row beside its values. */
export function currentMetaSelect(): string[] {
  return [DELETED, SITE, COMMIT_MICROS, SPECIAL].map(quoteIdent);
}

/**
 * A truncation, as rows: every row FINAL shows that was written before this batch (`_sitesync_version` below
 * `version`) written again as deleted, with `version` and the truncating transaction's writer. Idempotent: run
 * again, it finds the rows it flagged (version `version`) and those the batch wrote after it (higher) and
 * writes nothing more, so a batch sent again after a crash cannot truncate its own rows.
 */
export function truncationMarkers(
  database: string,
  table: string,
  sourceColumns: readonly string[],
  version: bigint,
  writer: { readonly site: string; readonly commitMicros: bigint; readonly commitTime: string; readonly position: string; readonly transaction: string },
): string {
  const source = sourceColumns.map(quoteIdent);
  const own = [VERSION, DELETED, SITE, COMMIT_MICROS, COMMIT_TIME, POSITION, TRANSACTION, SPECIAL].map(quoteIdent);
  const values = [
    `toUInt64(${version})`,
    'toUInt8(1)',
    quoteString(writer.site),
    `toInt64(${writer.commitMicros})`,
    `toDateTime64(${quoteString(writer.commitTime)}, 6, 'UTC')`,
    quoteString(writer.position),
    quoteString(writer.transaction),
    quoteIdent(SPECIAL),
  ];
  return (
    `INSERT INTO ${qualified(database, table)} (${[...source, ...own].join(', ')}) SELECT ${[...source, ...values].join(', ')} ` +
    `FROM ${qualified(database, table)} FINAL WHERE ${quoteIdent(VERSION)} < ${version} AND ${quoteIdent(DELETED)} = 0`
  );
}

/**
 * The deduplication token of one insert of a batch: the same batch (source, first and last position) writes
 * the same table in the same role with the same token, so its second copy is dropped whole.
 */
export function dedupToken(source: string, first: string, last: string, table: string, role: 'history' | 'current'): string {
  return `sitesync:${createHash('sha256').update(JSON.stringify([source, first, last, table, role])).digest('hex')}`;
}

/** A literal of a value as an insert writes it (clickhouse-kinds.ts), for a key lookup. */
export function literal(value: unknown): string {
  if (value === null) return 'NULL';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : quoteString(String(value));
  if (typeof value === 'string') return quoteString(value);
  if (Array.isArray(value)) return `[${value.map(literal).join(', ')}]`;
  throw new Error(`internal: no literal for ${typeof value}`);
}

// ─── bookkeeping ────────────────────────────────────────────────────────────────────────────────────────

export const PROGRESS_TABLE = '_sitesync_progress';
export const PARKED_TABLE = '_sitesync_parked';
export const SPILLED_TABLE = '_sitesync_spilled_parts';
export const VERSIONS_TABLE = '_sitesync_versions';

/**
 * sitesync's own tables, in the URL's database:
 * - progress: one row per source (ReplacingMergeTree by `version`): the last position applied, and the batch
 *   being applied (`pending_…`: its positions, the versions it uses, its encoded transactions), written before
 *   its data and cleared by the row that records its position. A pending batch found at start is applied again
 *   exactly as it was (same tokens, same versions) before anything else.
 * - parked: the parked records (ReplacingMergeTree by `version`: done is a newer row).
 * - spilled parts: the parts of a large transaction before its last, one row each (encoded message, base64).
 * - versions: the apply sequence's reserved blocks: a block is recorded before any of its numbers is used.
 */
export function bookkeepingTables(database: string): readonly { readonly name: string; readonly create: string }[] {
  const q = (name: string): string => qualified(database, name);
  return [
    {
      name: PROGRESS_TABLE,
      create:
        `CREATE TABLE IF NOT EXISTS ${q(PROGRESS_TABLE)} (source String, position String, commit_micros Int64, version UInt64, ` +
        `pending_first String, pending_last String, pending_version UInt64, pending_retry_of String, pending_transaction String, pending_parts UInt32, ` +
        `pending_schema_version UInt32, pending_body String CODEC(ZSTD(3)), updated_at DateTime64(6, 'UTC') DEFAULT now64(6)) ` +
        `ENGINE = ReplacingMergeTree(version) ORDER BY source`,
    },
    {
      name: PARKED_TABLE,
      create:
        `CREATE TABLE IF NOT EXISTS ${q(PARKED_TABLE)} (id String, kind LowCardinality(String), source Nullable(String), transaction_id Nullable(String), ` +
        `body_sha256 String, user_id Nullable(String), route String, reason String, done UInt8, version UInt64, updated_at DateTime64(6, 'UTC') DEFAULT now64(6)) ` +
        `ENGINE = ReplacingMergeTree(version) ORDER BY id`,
    },
    {
      name: SPILLED_TABLE,
      create:
        `CREATE TABLE IF NOT EXISTS ${q(SPILLED_TABLE)} (source String, transaction_id String, part UInt32, schema_version UInt32, bytes UInt64, body String CODEC(ZSTD(3))) ` +
        `ENGINE = ReplacingMergeTree ORDER BY (source, transaction_id, part)`,
    },
    {
      name: VERSIONS_TABLE,
      create: `CREATE TABLE IF NOT EXISTS ${q(VERSIONS_TABLE)} (reserved UInt64, at DateTime64(6, 'UTC') DEFAULT now64(6)) ENGINE = MergeTree ORDER BY reserved`,
    },
  ];
}

export function progressQuery(database: string, source: string): string {
  return (
    `SELECT position, toString(commit_micros), toString(version), pending_first, pending_last, toString(pending_version), pending_retry_of, pending_transaction, pending_parts, pending_schema_version ` +
    `FROM ${qualified(database, PROGRESS_TABLE)} FINAL WHERE source = ${quoteString(source)}`
  );
}
