/**
 * The T-SQL of every operation of the SQL Server apply connection (apply-connection.ts). Pure: the target
 * table's facts and the bound values are passed in; mssql-apply-connection.ts only sends what this file writes.
 *
 * - Identifiers are always bracket-quoted (`]` doubled); values are always parameters @p0, @p1…
 * - A value goes as text (nvarchar(max)), bytes (varbinary(max)) or, for float and real columns, an IEEE
 *   double, and the statement converts it server-side into the column's own type with an explicit style, so
 *   that nothing depends on the driver's conversions (tedious turns decimals into JavaScript numbers and times
 *   into Dates) or on the session's language and DATEFORMAT: CONVERT(decimal(p,s), @p) from plain decimal text,
 *   CONVERT(date, @p, 23), CONVERT(datetime2(n), @p, 126) from `YYYY-MM-DDThh:mm:ss[.ffffff]`,
 *   CONVERT(datetimeoffset(n), @p, 127) from the same with `+00:00`, CONVERT(uniqueidentifier, @p),
 *   CONVERT(bit, @p) from `1`/`0`. A varchar value is converted through the column's own collation (its code
 *   page), not the database's. What the conversion would round or cut is refused before (sqlserver-bind.ts).
 * - insert: one row per statement. Into a table whose identity column the row carries, SET IDENTITY_INSERT
 *   ON before and OFF after, in the same batch (and OFF again when the INSERT fails: only one table of a
 *   session may have it ON). A duplicate key (2627, 2601) is caught (TRY…CATCH) and answered as a result
 *   row, without an error: with XACT_ABORT OFF a constraint violation ends the statement only — SQL Server
 *   undoes what the statement wrote and the transaction stays open and committable (XACT_STATE() = 1,
 *   checked; anything else is thrown again). This costs no extra round trip and no savepoint per row.
 * - Computed and rowversion columns are never written (the caller leaves them out; asserted here).
 * - update, delete: by key (plain equality: the target's own key semantics), or, for a table without one, by
 *   the whole old image compared exactly — strings and binaries as bytes of the same length (SQL Server's `=`
 *   ignores trailing spaces, and a case-insensitive collation ignores case), NULL with IS NULL — touching at
 *   most one row (TOP (1)): duplicate rows stay duplicates, as at the source.
 * - The progress row: MERGE … WITH (HOLDLOCK) (serializable on the key: two sessions racing cannot both
 *   insert, nor both move it), which moves it only to a later position (positions order by length, then as
 *   strings, compared in a binary collation) and affects no row otherwise.
 */
import { BOOKKEEPING_SCHEMA } from '../../src/config/names.ts';
import type { NewParkedRecord } from '../../src/apply/sink.ts';
import type { BoundValue, ColumnValues, ConflictRow, ProgressRow, RowMatch, TargetColumn, TargetTable } from './apply-connection.ts';

/** How a parameter is declared to the driver. */
export type ParameterType = 'text' | 'binary' | 'float';

export interface Parameter {
  /** `p0`, `p1`… (the statement says `@p0`). */
  readonly name: string;
  readonly type: ParameterType;
  /** For 'float', the shortest decimal text of the double; the connection binds Number(value). */
  readonly value: BoundValue;
}

export interface Statement {
  readonly text: string;
  readonly parameters: readonly Parameter[];
}

/** `[name]`, a closing bracket doubled. */
export function quoteName(name: string): string {
  return `[${name.replace(/]/g, ']]')}]`;
}

export function qualifiedName(schema: string, table: string): string {
  return `${quoteName(schema)}.${quoteName(table)}`;
}

/** Collects a statement's parameters. */
class Parameters {
  readonly list: Parameter[] = [];
  add(value: BoundValue, type: ParameterType = Buffer.isBuffer(value) ? 'binary' : 'text'): string {
    const name = `p${this.list.length}`;
    this.list.push({ name, type, value });
    return `@${name}`;
  }
}

// ─── types and values ────────────────────────────────────────────────────────────────────────────────────

const NATIONAL = new Set(['nchar', 'nvarchar']);
/** Character types whose values are converted through the column's code page. */
const CODE_PAGE_TYPES = new Set(['char', 'varchar', 'text']);
const UNICODE_TYPES = new Set(['nchar', 'nvarchar', 'ntext', 'sysname']);
const BINARY_TYPES = new Set(['binary', 'varbinary', 'image']);
/** Never written: SQL Server sets them itself. */
const GENERATED_TYPES = new Set(['timestamp', 'rowversion']);

/** A collation name as sys.columns gives it: safe to write unquoted after COLLATE. */
const COLLATION = /^[A-Za-z0-9_]+$/;

export function isFloatColumn(column: TargetColumn): boolean {
  return column.type === 'float' || column.type === 'real';
}

/** Whether a column is ever written: not computed, not a rowversion. */
export function isWritable(column: TargetColumn): boolean {
  return !column.computed && !GENERATED_TYPES.has(column.type);
}

/** The column's type as T-SQL writes it: `nvarchar(50)`, `decimal(12,2)`, `datetime2(7)`, `varbinary(max)`. */
export function typeText(column: TargetColumn): string {
  const t = column.type;
  const length = (bytes: number): string => (column.maxLength === -1 ? 'max' : String(bytes));
  switch (t) {
    case 'char':
    case 'varchar':
    case 'binary':
    case 'varbinary':
      return `${t}(${length(column.maxLength)})`;
    case 'nchar':
    case 'nvarchar':
      return `${t}(${length(column.maxLength / 2)})`;
    case 'sysname':
      return 'nvarchar(128)';
    case 'decimal':
    case 'numeric':
      return `${t}(${column.precision},${column.scale})`;
    case 'datetime2':
    case 'time':
    case 'datetimeoffset':
      return `${t}(${column.scale})`;
    case 'float':
      return column.precision > 0 && column.precision <= 24 ? 'real' : 'float';
    case 'text':
      return 'varchar(max)';
    case 'ntext':
      return 'nvarchar(max)';
    case 'image':
      return 'varbinary(max)';
    default:
      return t;
  }
}

function parameterType(column: TargetColumn, value: BoundValue): ParameterType {
  if (Buffer.isBuffer(value)) return 'binary';
  return isFloatColumn(column) ? 'float' : BINARY_TYPES.has(column.type) ? 'binary' : 'text';
}

function collate(column: TargetColumn): string {
  return column.collation !== null && COLLATION.test(column.collation) ? ` COLLATE ${column.collation}` : '';
}

/** The expression that turns parameter `p` into a value of the column's type. */
export function valueExpression(column: TargetColumn, p: string): string {
  const t = column.type;
  if (UNICODE_TYPES.has(t) || BINARY_TYPES.has(t)) return p;
  if (CODE_PAGE_TYPES.has(t)) return `CONVERT(varchar(max), ${p}${collate(column)})`;
  switch (t) {
    case 'date':
      return `CONVERT(date, ${p}, 23)`;
    case 'datetime':
    case 'smalldatetime':
    case 'datetime2':
      return `CONVERT(${typeText(column)}, ${p}, 126)`;
    case 'datetimeoffset':
      return `CONVERT(${typeText(column)}, ${p}, 127)`;
    default:
      return `CONVERT(${typeText(column)}, ${p})`;
  }
}

/** `a = b` for bytes: same bytes and same length (SQL Server pads the shorter binary with zeros to compare). */
function sameBytes(left: string, right: string): string {
  return `(${left} = ${right} AND DATALENGTH(${left}) = DATALENGTH(${right}))`;
}

/** One condition of a WHERE clause finding a row; appends its parameter. */
function condition(column: TargetColumn, value: BoundValue, by: RowMatch['by'], params: Parameters): string {
  const name = quoteName(column.name);
  if (value === null) return `${name} IS NULL`;
  const p = params.add(value, parameterType(column, value));
  if (by === 'key') return `${name} = ${valueExpression(column, p)}`;
  const t = column.type;
  if (CODE_PAGE_TYPES.has(t) || UNICODE_TYPES.has(t)) {
    // As the column's own type (char(n) pads), then as bytes: exact, whatever the collation.
    const own = t === 'text' || t === 'ntext' ? `CONVERT(${typeText(column)}, ${name})` : name;
    const typed = CODE_PAGE_TYPES.has(t) ? `CONVERT(${typeText(column)}, ${p}${collate(column)})` : `CONVERT(${typeText(column)}, ${p})`;
    return sameBytes(`CONVERT(varbinary(max), ${own})`, `CONVERT(varbinary(max), ${typed})`);
  }
  if (BINARY_TYPES.has(t)) return sameBytes(t === 'image' ? `CONVERT(varbinary(max), ${name})` : name, p);
  if (t === 'xml') return `CONVERT(nvarchar(max), ${name}) = CONVERT(nvarchar(max), CONVERT(xml, ${p}))`;
  if (t === 'geography' || t === 'geometry') return `${name}.ToString() = ${p}`;
  return `${name} = ${valueExpression(column, p)}`;
}

function whereClause(match: RowMatch, params: Parameters): string {
  if (match.columns.length === 0) throw new Error('internal: a row match without columns');
  return match.columns.map((c, i) => condition(c, match.values[i] ?? null, match.by, params)).join(' AND ');
}

function checkWritable(table: TargetTable, columns: readonly TargetColumn[]): void {
  for (const c of columns) {
    if (!isWritable(c)) throw new Error(`internal: column ${c.name} of ${table.schema}.${table.table} is never written (computed or rowversion)`);
  }
}

/**
 * Ends a statement whose answer is the rows it affected: one result row `affected` (@@ROWCOUNT is the
 * statement's own count, whatever a trigger on the table does; the driver's rowsAffected would add the
 * trigger's statements' counts too).
 */
const ROWCOUNT = '\nSELECT @@ROWCOUNT AS affected;';

// ─── data statements ─────────────────────────────────────────────────────────────────────────────────────

/**
 * One row's INSERT; its one result row says whether the key was there (`duplicate` 1: nothing written, the
 * transaction still open). IDENTITY_INSERT around it when the row carries the identity column.
 */
export function insertStatement(table: TargetTable, row: ColumnValues): Statement {
  checkWritable(table, row.columns);
  const params = new Parameters();
  const name = qualifiedName(table.schema, table.table);
  const body =
    row.columns.length === 0
      ? `INSERT INTO ${name} DEFAULT VALUES;`
      : `INSERT INTO ${name} (${row.columns.map((c) => quoteName(c.name)).join(', ')}) VALUES (${row.columns
          .map((c, i) => {
            const value = row.values[i] ?? null;
            return valueExpression(c, params.add(value, parameterType(c, value)));
          })
          .join(', ')});`;
  const identity = row.columns.some((c) => c.identity);
  const on = identity ? `SET IDENTITY_INSERT ${name} ON;\n` : '';
  const off = identity ? `  SET IDENTITY_INSERT ${name} OFF;\n` : '';
  const text =
    `${on}BEGIN TRY\n  ${body}\n${off}  SELECT CAST(0 AS bit) AS duplicate;\nEND TRY\nBEGIN CATCH\n${off}` +
    `  IF ERROR_NUMBER() NOT IN (2627, 2601) OR XACT_STATE() <> 1 THROW;\n  SELECT CAST(1 AS bit) AS duplicate;\nEND CATCH;`;
  return { text, parameters: params.list };
}

/** UPDATE of the row `match` finds (TOP (1) for a table without a key); rows affected is the answer. */
export function updateStatement(table: TargetTable, set: ColumnValues, match: RowMatch): Statement {
  checkWritable(table, set.columns);
  if (set.columns.length === 0) throw new Error('internal: an UPDATE without columns to set (use exists)');
  const params = new Parameters();
  const assignments = set.columns.map((c, i) => {
    const value = set.values[i] ?? null;
    return `${quoteName(c.name)} = ${valueExpression(c, params.add(value, parameterType(c, value)))}`;
  });
  const where = whereClause(match, params);
  const top = match.by === 'image' ? 'TOP (1) ' : '';
  return { text: `UPDATE ${top}${qualifiedName(table.schema, table.table)} SET ${assignments.join(', ')} WHERE ${where};${ROWCOUNT}`, parameters: params.list };
}

export function deleteStatement(table: TargetTable, match: RowMatch): Statement {
  const params = new Parameters();
  const where = whereClause(match, params);
  const top = match.by === 'image' ? 'TOP (1) ' : '';
  return { text: `DELETE ${top}FROM ${qualifiedName(table.schema, table.table)} WHERE ${where};${ROWCOUNT}`, parameters: params.list };
}

/** Whether the row is there, locked (UPDLOCK, HOLDLOCK) until the transaction ends: one row `found` or none. */
export function existsStatement(table: TargetTable, match: RowMatch): Statement {
  const params = new Parameters();
  const where = whereClause(match, params);
  return { text: `SELECT TOP (1) 1 AS found FROM ${qualifiedName(table.schema, table.table)} WITH (UPDLOCK, HOLDLOCK) WHERE ${where};`, parameters: params.list };
}

/** A TRUNCATE change: SQL Server refuses TRUNCATE TABLE on a table enabled for CDC (error 4711), and DELETE is logged row by row as CDC needs. */
export function deleteAllStatement(table: TargetTable): Statement {
  return { text: `DELETE FROM ${qualifiedName(table.schema, table.table)};${ROWCOUNT}`, parameters: [] };
}

/** sys.columns of one user table, in column order (no rows: no such table). Parameters: schema, table. */
export function describeTableStatement(schema: string, table: string): Statement {
  const params = new Parameters();
  const s = params.add(schema);
  const t = params.add(table);
  const text = `SELECT c.name,
       CASE WHEN c.system_type_id = 240 THEN TYPE_NAME(c.user_type_id) ELSE TYPE_NAME(c.system_type_id) END AS type,
       c.max_length, c.precision, c.scale, c.is_nullable, c.is_identity, c.is_computed, c.collation_name,
       COALESCE((SELECT ic.key_ordinal FROM sys.indexes i
                   JOIN sys.index_columns ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id
                  WHERE i.object_id = c.object_id AND i.is_primary_key = 1 AND ic.column_id = c.column_id), 0) AS key_ordinal
  FROM sys.columns c
 WHERE c.object_id = OBJECT_ID(QUOTENAME(${s}) + N'.' + QUOTENAME(${t}), N'U')
 ORDER BY c.column_id;`;
  return { text, parameters: params.list };
}

// ─── bookkeeping ─────────────────────────────────────────────────────────────────────────────────────────

const SCHEMA = quoteName(BOOKKEEPING_SCHEMA);
export const PROGRESS_TABLE = `${SCHEMA}.[apply_progress]`;
export const PARKED_TABLE = `${SCHEMA}.[parked]`;
export const SPILL_TABLE = `${SCHEMA}.[spilled_parts]`;
export const CONFLICTS_TABLE = `${SCHEMA}.[conflicts]`;

/** The sink's tables, by name, with their CREATE TABLE (each run only when the table is missing). */
export const BOOKKEEPING_TABLES: readonly { readonly name: string; readonly create: string }[] = [
  {
    name: 'apply_progress',
    create: `CREATE TABLE ${PROGRESS_TABLE} (
  source varchar(40) NOT NULL PRIMARY KEY,
  source_kind varchar(20) NOT NULL,
  position varchar(64) NOT NULL,
  commit_time_micros bigint NOT NULL,
  applied_transactions bigint NOT NULL DEFAULT 0
);`,
  },
  {
    name: 'parked',
    create: `CREATE TABLE ${PARKED_TABLE} (
  id char(36) NOT NULL PRIMARY KEY,
  parked_at datetime2(6) NOT NULL DEFAULT SYSUTCDATETIME(),
  kind varchar(8) NOT NULL CHECK (kind IN ('skipped', 'refused')),
  source nvarchar(255) NULL,
  transaction_id nvarchar(255) NULL,
  body_sha256 char(64) NOT NULL,
  user_id nvarchar(255) NULL,
  route nvarchar(max) NOT NULL,
  reason nvarchar(max) NOT NULL,
  done_at datetime2(6) NULL,
  INDEX parked_transaction_id (transaction_id)
);`,
  },
  {
    name: 'spilled_parts',
    create: `CREATE TABLE ${SPILL_TABLE} (
  source varchar(40) NOT NULL,
  transaction_id varchar(128) NOT NULL,
  part int NOT NULL,
  schema_version int NOT NULL,
  body varbinary(max) NOT NULL,
  PRIMARY KEY (source, transaction_id, part)
);`,
  },
  {
    name: 'conflicts',
    create: `CREATE TABLE ${CONFLICTS_TABLE} (
  id bigint IDENTITY(1,1) NOT NULL PRIMARY KEY,
  logged_at datetime2(6) NOT NULL DEFAULT SYSUTCDATETIME(),
  kind varchar(32) NOT NULL,
  table_name nvarchar(261) NOT NULL,
  [key] nvarchar(max) NOT NULL,
  remote_site varchar(40) NOT NULL,
  remote_transaction nvarchar(255) NOT NULL,
  remote_commit_time datetime2(6) NOT NULL,
  local_site varchar(40) NULL,
  local_commit_time datetime2(6) NULL,
  policy varchar(32) NOT NULL,
  winner varchar(8) NOT NULL,
  resolution varchar(8) NOT NULL
);`,
  },
];

/** The bookkeeping schema, when missing (CREATE SCHEMA must be alone in its batch: through EXEC). */
export const CREATE_SCHEMA = `IF SCHEMA_ID(N'${BOOKKEEPING_SCHEMA}') IS NULL EXEC(N'CREATE SCHEMA ${SCHEMA}');`;

/** Which of the sink's tables exist (rows of `name`). */
export const EXISTING_TABLES = `SELECT t.name FROM sys.tables t WHERE t.schema_id = SCHEMA_ID(N'${BOOKKEEPING_SCHEMA}');`;

/** The apply session's settings, sent once after connecting. */
export const SESSION_SETTINGS =
  'SET XACT_ABORT OFF; SET NOCOUNT OFF; SET LOCK_TIMEOUT 60000; SET ANSI_NULLS ON; SET ANSI_PADDING ON; SET ANSI_WARNINGS ON; ' +
  'SET ARITHABORT ON; SET CONCAT_NULL_YIELDS_NULL ON; SET QUOTED_IDENTIFIER ON; SET NUMERIC_ROUNDABORT OFF;';

/** Positions order by length, then as strings (src/events/position.ts), compared in a binary collation. */
function newer(current: string, incoming: string): string {
  return `(LEN(${current}) < LEN(${incoming}) OR (LEN(${current}) = LEN(${incoming}) AND ${current} COLLATE Latin1_General_BIN2 < ${incoming} COLLATE Latin1_General_BIN2))`;
}

/**
 * The upsert of a source's progress row, the first write of every applied transaction. 'forward' affects one
 * row when it inserted or moved it, none when the row is at or past the position; 'always' (a retried parked
 * transaction) affects it in any case — applied_transactions counts up, so that CDC records a change to the
 * row, which is how this site's capture tells the transaction is a relayed write — and moves the position
 * only forward.
 */
export function progressStatement(row: ProgressRow, mode: 'forward' | 'always'): Statement {
  const params = new Parameters();
  const source = params.add(row.source);
  const kind = params.add(row.sourceKind);
  const position = params.add(row.position);
  const time = params.add(row.commitTimeMicros.toString());
  const moves = newer('t.position', 's.position');
  const matched =
    mode === 'forward'
      ? `WHEN MATCHED AND ${moves} THEN\n  UPDATE SET source_kind = s.source_kind, position = s.position, commit_time_micros = s.commit_time_micros, applied_transactions = t.applied_transactions + 1`
      : `WHEN MATCHED THEN\n  UPDATE SET source_kind = CASE WHEN ${moves} THEN s.source_kind ELSE t.source_kind END, ` +
        `commit_time_micros = CASE WHEN ${moves} THEN s.commit_time_micros ELSE t.commit_time_micros END, ` +
        `position = CASE WHEN ${moves} THEN s.position ELSE t.position END, applied_transactions = t.applied_transactions + 1`;
  const text =
    `MERGE ${PROGRESS_TABLE} WITH (HOLDLOCK) AS t\n` +
    `USING (SELECT CONVERT(varchar(40), ${source}) AS source, CONVERT(varchar(20), ${kind}) AS source_kind, CONVERT(varchar(64), ${position}) AS position, CONVERT(bigint, ${time}) AS commit_time_micros) AS s\n` +
    `ON t.source = s.source\n` +
    `${matched}\n` +
    `WHEN NOT MATCHED THEN\n  INSERT (source, source_kind, position, commit_time_micros, applied_transactions) VALUES (s.source, s.source_kind, s.position, s.commit_time_micros, 1);${ROWCOUNT}`;
  return { text, parameters: params.list };
}

export function readProgressStatement(source: string): Statement {
  const params = new Parameters();
  return { text: `SELECT position FROM ${PROGRESS_TABLE} WHERE source = CONVERT(varchar(40), ${params.add(source)});`, parameters: params.list };
}

/** A parked record's values, cut to the columns' sizes (a refused message's claims are untrusted). */
export function insertParkedStatement(r: NewParkedRecord): Statement {
  const params = new Parameters();
  const cut = (s: string | null, n: number): string | null => (s === null ? null : s.slice(0, n));
  const id = params.add(r.id.toLowerCase());
  const values = [params.add(r.kind), params.add(cut(r.source, 255)), params.add(cut(r.transactionId, 255)), params.add(r.bodySha256), params.add(cut(r.userId, 255)), params.add(cut(r.route, 60_000)), params.add(r.reason.slice(0, 2000))];
  // A refused message's id is derived from what it is (apply-runner.ts): refused again, it keeps its record.
  const text =
    `IF NOT EXISTS (SELECT 1 FROM ${PARKED_TABLE} WITH (UPDLOCK, HOLDLOCK) WHERE id = ${id})\n` +
    `  INSERT INTO ${PARKED_TABLE} (id, kind, source, transaction_id, body_sha256, user_id, route, reason) VALUES (${id}, ${values.join(', ')});`;
  return { text, parameters: params.list };
}

export function findParkedStatement(id: string): Statement {
  const params = new Parameters();
  return {
    text: `SELECT id, kind, source, transaction_id, body_sha256, user_id, route, reason, CASE WHEN done_at IS NULL THEN 0 ELSE 1 END AS done FROM ${PARKED_TABLE} WHERE id = ${params.add(id.toLowerCase())};`,
    parameters: params.list,
  };
}

export function finishParkedStatement(id: string): Statement {
  const params = new Parameters();
  return { text: `UPDATE ${PARKED_TABLE} SET done_at = SYSUTCDATETIME() WHERE id = ${params.add(id.toLowerCase())} AND done_at IS NULL;`, parameters: params.list };
}

/** Marks every open 'skipped' record of a transaction done, provided record `parkedId` is still open. */
export function finishRetriedStatement(transactionId: string, parkedId: string): Statement {
  const params = new Parameters();
  const tx = params.add(transactionId);
  const id = params.add(parkedId.toLowerCase());
  return {
    text:
      `UPDATE ${PARKED_TABLE} SET done_at = SYSUTCDATETIME()\n` +
      ` WHERE transaction_id = ${tx} AND kind = 'skipped' AND done_at IS NULL\n` +
      `   AND EXISTS (SELECT 1 FROM ${PARKED_TABLE} AS open_record WITH (UPDLOCK, HOLDLOCK) WHERE open_record.id = ${id} AND open_record.done_at IS NULL);${ROWCOUNT}`,
    parameters: params.list,
  };
}

function partKey(params: Parameters, source: string, transactionId: string, part: number): string {
  return `source = ${params.add(source)} AND transaction_id = ${params.add(transactionId)} AND part = CONVERT(int, ${params.add(String(part))})`;
}

/** Keeps one part (a copy kept before is replaced). */
export function keepPartStatement(source: string, transactionId: string, part: number, schemaVersion: number, body: Buffer): Statement {
  const params = new Parameters();
  const where = partKey(params, source, transactionId, part);
  const version = params.add(String(schemaVersion));
  const data = params.add(body);
  return {
    text:
      `DELETE FROM ${SPILL_TABLE} WHERE ${where};\n` +
      `INSERT INTO ${SPILL_TABLE} (source, transaction_id, part, schema_version, body) VALUES (@p0, @p1, CONVERT(int, @p2), CONVERT(int, ${version}), ${data});`,
    parameters: params.list,
  };
}

export function hasPartStatement(source: string, transactionId: string, part: number): Statement {
  const params = new Parameters();
  return { text: `SELECT 1 AS found FROM ${SPILL_TABLE} WHERE ${partKey(params, source, transactionId, part)};`, parameters: params.list };
}

export function readPartStatement(source: string, transactionId: string, part: number): Statement {
  const params = new Parameters();
  return { text: `SELECT schema_version, body FROM ${SPILL_TABLE} WHERE ${partKey(params, source, transactionId, part)};`, parameters: params.list };
}

export function spilledBytesStatement(source: string): Statement {
  const params = new Parameters();
  return { text: `SELECT CONVERT(varchar(20), COALESCE(SUM(CONVERT(bigint, DATALENGTH(body))), 0)) AS bytes FROM ${SPILL_TABLE} WHERE source = ${params.add(source)};`, parameters: params.list };
}

export function forgetPartsStatement(source: string): Statement {
  const params = new Parameters();
  return { text: `DELETE FROM ${SPILL_TABLE} WHERE source = ${params.add(source)};`, parameters: params.list };
}

/** A commit time as `YYYY-MM-DDThh:mm:ss.ffffff` (UTC), for CONVERT(datetime2(6), …, 126). */
export function microsToDatetime2(micros: bigint): string {
  const millis = micros >= 0n ? micros / 1000n : (micros - 999n) / 1000n;
  const rest = Number(micros - millis * 1000n);
  return `${new Date(Number(millis)).toISOString().slice(0, 23)}${String(rest).padStart(3, '0')}`;
}

export function insertConflictStatement(c: ConflictRow): Statement {
  const params = new Parameters();
  const time = (micros: bigint | null): string => `CONVERT(datetime2(6), ${params.add(micros === null ? null : microsToDatetime2(micros))}, 126)`;
  const values = [
    params.add(c.kind),
    params.add(c.table.slice(0, 261)),
    params.add(c.keyJson),
    params.add(c.remoteSite),
    params.add(c.remoteTransaction.slice(0, 255)),
    time(c.remoteCommitTimeMicros),
    params.add(c.localSite),
    time(c.localCommitTimeMicros),
    params.add(c.policy),
    params.add(c.winner),
    params.add(c.resolution),
  ];
  return {
    text: `INSERT INTO ${CONFLICTS_TABLE} (kind, table_name, [key], remote_site, remote_transaction, remote_commit_time, local_site, local_commit_time, policy, winner, resolution) VALUES (${values.join(', ')});`,
    parameters: params.list,
  };
}
