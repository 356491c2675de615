/**
 * The SQL of every operation of the Oracle apply connection (apply-connection.ts). Pure: the target table's
 * facts and the bound values are passed in; oracledb-apply-connection.ts only sends what this file writes.
 * Statements carry no trailing `;` (Oracle refuses one after SQL sent through a driver; a PL/SQL block ends
 * with `END;`).
 *
 * - Identifiers are always double-quoted, as Oracle keeps them (a name holding `"` or NUL cannot exist in
 *   Oracle: refused); values are always bind variables :p0, :p1…
 * - A value goes as text, bytes (RAW, BLOB), or, for BINARY_FLOAT and BINARY_DOUBLE columns, an IEEE value,
 *   and the statement converts text server-side into the column's own type with an explicit format model, so
 *   that nothing depends on the driver's conversions (oracledb turns NUMBER into JavaScript numbers and
 *   DATE/TIMESTAMP into Dates, both lossy) nor on the session's NLS settings beyond the ones pinned at
 *   connect (SESSION_SETTINGS: the decimal character for TO_NUMBER, binary comparisons):
 *   TO_NUMBER(:p) from plain decimal text; TO_DATE(:p, 'YYYY-MM-DD HH24:MI:SS');
 *   TO_TIMESTAMP(:p, 'YYYY-MM-DD HH24:MI:SS.FF6'); TO_TIMESTAMP_TZ(:p, 'YYYY-MM-DD HH24:MI:SS.FF6 TZH:TZM')
 *   (into TIMESTAMP WITH TIME ZONE and WITH LOCAL TIME ZONE); TO_YMINTERVAL(:p) from `+Y-MM`;
 *   TO_DSINTERVAL(:p) from `+D HH:MI:SS.FFFFFF`. Character values are bound as VARCHAR2 (NVARCHAR2 for the N
 *   types, so that they never pass through the database character set), CLOB/NCLOB values as temporary LOBs.
 *   What the conversion would round or cut is refused before (oracle-bind.ts).
 *   Bytes are bound as RAW (or BLOB), not as hex text through HEXTORAW: bytes cannot be rounded, and the hex
 *   text of a RAW(32767) (extended strings) would be twice the 32767-byte limit of a VARCHAR2 bind.
 *   Binary floats are bound as IEEE values (DB_TYPE_BINARY_FLOAT/DOUBLE), not as text through
 *   TO_BINARY_DOUBLE: the bits sent are the bits stored, whatever the server's decimal conversion does.
 * - insert: one row per statement, no savepoint and no PL/SQL around it: a duplicate key (ORA-00001) ends the
 *   statement only — Oracle undoes that one statement and the transaction stays open and committable
 *   (statement-level atomicity) — and the connection answers 'duplicate'. A SAVEPOINT per row would cost a
 *   round trip per row for what Oracle already does; a PL/SQL handler would hide the error's constraint name.
 * - Virtual columns and GENERATED ALWAYS identity columns are never written (the caller leaves the first out
 *   and refuses the second; asserted here).
 * - update, delete: by key (plain equality; CHAR and NCHAR compared as CHAR, blank-padded, as Oracle compares
 *   two CHARs), or, for a table without one, by the whole old image — NULL with IS NULL, CLOB/NCLOB/BLOB with
 *   DBMS_LOB.COMPARE, strings compared exactly (NLS_COMP=BINARY pinned) — touching at most one row
 *   (ROWNUM = 1): duplicate rows stay duplicates, as at the source.
 * - A TRUNCATE change is a DELETE: TRUNCATE TABLE is DDL, and DDL in Oracle commits the open transaction
 *   (with the progress row in it) before it runs and cannot be rolled back.
 * - The progress row: MERGE, which moves it only to a later position (positions order by length, then as
 *   strings, compared binary) and merges no row otherwise — so writes no redo. Two sessions racing on the
 *   same row: Oracle locks it, and the later session's update restarts on the committed row (write
 *   consistency) and finds it moved; racing on its first insert, the later one gets ORA-00001, and the
 *   connection runs the MERGE once more (then it matches).
 */
import type { NewParkedRecord } from '../../src/apply/sink.ts';
import type { BoundValue, ColumnValues, ConflictRow, ProgressRow, RowMatch, TargetColumn, TargetTable } from './apply-connection.ts';
import { ORACLE_BOOKKEEPING_OWNER } from './oracle-setup.ts';


/**
 * How a parameter is bound: VARCHAR2 text, NVARCHAR2 text, a temporary CLOB/NCLOB, RAW or BLOB bytes, an IEEE
 * double or float (its value the shortest decimal text; the connection binds Number(value)).
 */
export type ParameterType = 'text' | 'ntext' | 'clob' | 'nclob' | 'raw' | 'blob' | 'double' | 'float';

export interface Parameter {
  /** `p0`, `p1`… (the statement says `:p0`). */
  readonly name: string;
  readonly type: ParameterType;
  readonly value: BoundValue;
}

export interface Statement {
  readonly text: string;
  readonly parameters: readonly Parameter[];
}

/** `"name"`. Oracle names cannot hold `"` or NUL, even quoted: such a name is refused. */
export function quoteName(name: string): string {
  if (name.length === 0 || /["\u0000]/.test(name)) throw new Error(`not a possible Oracle identifier: ${JSON.stringify(name)}`);
  return `"${name}"`;
}

export function qualifiedName(schema: string, table: string): string {
  return `${quoteName(schema)}.${quoteName(table)}`;
}

/** Collects a statement's parameters. */
class Parameters {
  readonly list: Parameter[] = [];
  add(value: BoundValue, type: ParameterType = Buffer.isBuffer(value) ? 'raw' : 'text'): string {
    const name = `p${this.list.length}`;
    this.list.push({ name, type, value });
    return `:${name}`;
  }
}

// ─── types and values ────────────────────────────────────────────────────────────────────────────────────

export const DATE_FORMAT = 'YYYY-MM-DD HH24:MI:SS';
export const TIMESTAMP_FORMAT = 'YYYY-MM-DD HH24:MI:SS.FF6';
export const TIMESTAMP_TZ_FORMAT = 'YYYY-MM-DD HH24:MI:SS.FF6 TZH:TZM';

const LOB_TYPES = new Set(['CLOB', 'NCLOB', 'BLOB']);

/** Whether a column is ever written: not virtual, not an identity Oracle always generates. */
export function isWritable(column: TargetColumn): boolean {
  return !column.virtual;
}

export function isLobColumn(column: TargetColumn): boolean {
  return LOB_TYPES.has(column.type);
}

/** The column's type as Oracle writes it: `VARCHAR2(40 BYTE)`, `NUMBER(12,2)`, `TIMESTAMP(6) WITH TIME ZONE`… */
export function typeText(column: TargetColumn): string {
  const { type, precision, scale } = column;
  switch (type) {
    case 'NUMBER':
      if (precision === null) return scale === null ? 'NUMBER' : `NUMBER(*,${scale})`;
      return `NUMBER(${precision},${scale ?? 0})`;
    case 'FLOAT':
      return precision === null ? 'FLOAT' : `FLOAT(${precision})`;
    case 'VARCHAR2':
    case 'CHAR':
      return `${type}(${column.charLength} ${column.dataLength === column.charLength ? 'BYTE' : 'CHAR'})`;
    case 'NVARCHAR2':
    case 'NCHAR':
      return `${type}(${column.charLength})`;
    case 'RAW':
      return `RAW(${column.dataLength})`;
    case 'TIMESTAMP':
      return `TIMESTAMP(${scale ?? 6})`;
    case 'TIMESTAMP WITH TIME ZONE':
      return `TIMESTAMP(${scale ?? 6}) WITH TIME ZONE`;
    case 'TIMESTAMP WITH LOCAL TIME ZONE':
      return `TIMESTAMP(${scale ?? 6}) WITH LOCAL TIME ZONE`;
    case 'INTERVAL YEAR TO MONTH':
      return `INTERVAL YEAR(${precision ?? 2}) TO MONTH`;
    case 'INTERVAL DAY TO SECOND':
      return `INTERVAL DAY(${precision ?? 2}) TO SECOND(${scale ?? 6})`;
    default:
      return type;
  }
}

/** How a value for this column is bound. */
export function parameterType(column: TargetColumn): ParameterType {
  switch (column.type) {
    case 'NVARCHAR2':
    case 'NCHAR':
      return 'ntext';
    case 'CLOB':
      return 'clob';
    case 'NCLOB':
      return 'nclob';
    case 'RAW':
      return 'raw';
    case 'BLOB':
      return 'blob';
    case 'BINARY_DOUBLE':
      return 'double';
    case 'BINARY_FLOAT':
      return 'float';
    default:
      return 'text';
  }
}

/** The expression that turns bind variable `p` into a value of the column's type. */
export function valueExpression(column: TargetColumn, p: string): string {
  switch (column.type) {
    case 'NUMBER':
    case 'FLOAT':
      return `TO_NUMBER(${p})`;
    case 'DATE':
      return `TO_DATE(${p}, '${DATE_FORMAT}')`;
    case 'TIMESTAMP':
      return `TO_TIMESTAMP(${p}, '${TIMESTAMP_FORMAT}')`;
    case 'TIMESTAMP WITH TIME ZONE':
    case 'TIMESTAMP WITH LOCAL TIME ZONE':
      return `TO_TIMESTAMP_TZ(${p}, '${TIMESTAMP_TZ_FORMAT}')`;
    case 'INTERVAL YEAR TO MONTH':
      return `TO_YMINTERVAL(${p})`;
    case 'INTERVAL DAY TO SECOND':
      return `TO_DSINTERVAL(${p})`;
    default:
      return p;
  }
}

/** One condition of a WHERE clause finding a row; appends its parameter. */
function condition(column: TargetColumn, value: BoundValue, params: Parameters): string {
  const name = quoteName(column.name);
  if (value === null) return `${name} IS NULL`;
  const p = params.add(value, parameterType(column));
  switch (column.type) {
    case 'CLOB':
    case 'NCLOB':
    case 'BLOB':
      // LOBs have no `=`; COMPARE is 0 for the same length and content.
      return `DBMS_LOB.COMPARE(${name}, ${p}) = 0`;
    case 'CHAR':
      // A VARCHAR2 bind against a CHAR column compares non-padded ('a' <> 'a   '); as two CHARs, blank-padded.
      return `${name} = CAST(${p} AS CHAR(${column.dataLength} BYTE))`;
    case 'NCHAR':
      return `${name} = CAST(${p} AS NCHAR(${column.charLength}))`;
    default:
      return `${name} = ${valueExpression(column, p)}`;
  }
}

function whereClause(match: RowMatch, params: Parameters): string {
  if (match.columns.length === 0) throw new Error('internal: a row match without columns');
  const conditions = match.columns.map((c, i) => condition(c, match.values[i] ?? null, params));
  if (match.by === 'image') conditions.push('ROWNUM = 1');
  return conditions.join(' AND ');
}

function checkWritable(table: TargetTable, columns: readonly TargetColumn[]): void {
  for (const c of columns) {
    if (!isWritable(c)) throw new Error(`internal: column ${c.name} of ${table.schema}.${table.table} is never written (virtual)`);
    if (c.identity === 'ALWAYS') throw new Error(`internal: column ${c.name} of ${table.schema}.${table.table} is GENERATED ALWAYS AS IDENTITY`);
  }
}

// ─── data statements ─────────────────────────────────────────────────────────────────────────────────────

/** One row's INSERT (the connection answers ORA-00001 as 'duplicate'). */
export function insertStatement(table: TargetTable, row: ColumnValues): Statement {
  checkWritable(table, row.columns);
  if (row.columns.length === 0) throw new Error(`internal: an INSERT into ${table.schema}.${table.table} without columns`);
  const params = new Parameters();
  const values = row.columns.map((c, i) => valueExpression(c, params.add(row.values[i] ?? null, parameterType(c))));
  return {
    text: `INSERT INTO ${qualifiedName(table.schema, table.table)} (${row.columns.map((c) => quoteName(c.name)).join(', ')}) VALUES (${values.join(', ')})`,
    parameters: params.list,
  };
}

/** UPDATE of the row `match` finds (ROWNUM = 1 for a table without a key); rows affected is the answer. */
export function updateStatement(table: TargetTable, set: ColumnValues, match: RowMatch): Statement {
  checkWritable(table, set.columns);
  if (set.columns.length === 0) throw new Error('internal: an UPDATE without columns to set (use exists)');
  const params = new Parameters();
  const assignments = set.columns.map((c, i) => `${quoteName(c.name)} = ${valueExpression(c, params.add(set.values[i] ?? null, parameterType(c)))}`);
  const where = whereClause(match, params);
  return { text: `UPDATE ${qualifiedName(table.schema, table.table)} SET ${assignments.join(', ')} WHERE ${where}`, parameters: params.list };
}

export function deleteStatement(table: TargetTable, match: RowMatch): Statement {
  const params = new Parameters();
  const where = whereClause(match, params);
  return { text: `DELETE FROM ${qualifiedName(table.schema, table.table)} WHERE ${where}`, parameters: params.list };
}

/** Whether the row is there, locked (FOR UPDATE) until the transaction ends: one row `FOUND` or none. */
export function existsStatement(table: TargetTable, match: RowMatch): Statement {
  const params = new Parameters();
  const conditions = whereClause(match, params);
  const where = match.by === 'image' ? conditions : `${conditions} AND ROWNUM = 1`;
  return { text: `SELECT 1 AS FOUND FROM ${qualifiedName(table.schema, table.table)} WHERE ${where} FOR UPDATE`, parameters: params.list };
}

/** A TRUNCATE change: DELETE, never TRUNCATE TABLE (DDL: it would commit the open transaction). */
export function deleteAllStatement(table: TargetTable): Statement {
  return { text: `DELETE FROM ${qualifiedName(table.schema, table.table)}`, parameters: [] };
}

/**
 * ALL_TAB_COLS of one table (not a view), visible columns in column order (no rows: no such table), with its
 * primary-key position, identity generation and character set. Parameters: owner, table (exact names).
 */
export function describeTableStatement(schema: string, table: string): Statement {
  const params = new Parameters();
  const s = params.add(schema);
  const t = params.add(table);
  const text = `SELECT c.COLUMN_NAME, c.DATA_TYPE, c.DATA_PRECISION, c.DATA_SCALE, c.DATA_LENGTH, c.CHAR_LENGTH, c.NULLABLE, c.VIRTUAL_COLUMN,
       (SELECT i.GENERATION_TYPE FROM ALL_TAB_IDENTITY_COLS i
         WHERE i.OWNER = c.OWNER AND i.TABLE_NAME = c.TABLE_NAME AND i.COLUMN_NAME = c.COLUMN_NAME) AS IDENTITY_GENERATION,
       NVL((SELECT cc.POSITION FROM ALL_CONSTRAINTS k
              JOIN ALL_CONS_COLUMNS cc ON cc.OWNER = k.OWNER AND cc.CONSTRAINT_NAME = k.CONSTRAINT_NAME AND cc.TABLE_NAME = k.TABLE_NAME
             WHERE k.OWNER = c.OWNER AND k.TABLE_NAME = c.TABLE_NAME AND k.CONSTRAINT_TYPE = 'P' AND cc.COLUMN_NAME = c.COLUMN_NAME), 0) AS KEY_ORDINAL,
       (SELECT p.VALUE FROM NLS_DATABASE_PARAMETERS p
         WHERE p.PARAMETER = DECODE(c.CHARACTER_SET_NAME, 'NCHAR_CS', 'NLS_NCHAR_CHARACTERSET', 'CHAR_CS', 'NLS_CHARACTERSET', NULL)) AS CHARSET
  FROM ALL_TAB_COLS c
 WHERE c.OWNER = ${s} AND c.TABLE_NAME = ${t} AND c.HIDDEN_COLUMN = 'NO'
   AND EXISTS (SELECT 1 FROM ALL_TABLES a WHERE a.OWNER = c.OWNER AND a.TABLE_NAME = c.TABLE_NAME)
 ORDER BY c.COLUMN_ID`;
  return { text, parameters: params.list };
}

// ─── bookkeeping ─────────────────────────────────────────────────────────────────────────────────────────

const OWNER = quoteName(ORACLE_BOOKKEEPING_OWNER);
export const PROGRESS_TABLE = `${OWNER}."APPLY_PROGRESS"`;
export const PARKED_TABLE = `${OWNER}."PARKED"`;
export const SPILL_TABLE = `${OWNER}."SPILLED_PARTS"`;
export const CONFLICTS_TABLE = `${OWNER}."CONFLICTS"`;

/** The UTC time now, as the bookkeeping tables keep times (TIMESTAMP(6), UTC). */
const NOW_UTC = 'SYS_EXTRACT_UTC(SYSTIMESTAMP)';

/**
 * The sink's tables, by name, with the statements creating each (run only when it is missing). APPLY_PROGRESS
 * is setup's to create (oracle-setup.ts) — the apply connection creates it only where setup was never run —
 * with ALL COLUMNS supplemental logging, so that its every change carries the whole row in the redo.
 */
export const BOOKKEEPING_TABLES: readonly { readonly name: string; readonly create: readonly string[] }[] = [
  {
    name: 'APPLY_PROGRESS',
    create: [
      `CREATE TABLE ${PROGRESS_TABLE} (
  SOURCE VARCHAR2(40) NOT NULL PRIMARY KEY,
  SOURCE_KIND VARCHAR2(20) NOT NULL,
  POSITION VARCHAR2(64) NOT NULL,
  COMMIT_TIME_MICROS NUMBER(20) NOT NULL,
  APPLIED_TRANSACTIONS NUMBER(20) DEFAULT 0 NOT NULL
)`,
      `ALTER TABLE ${PROGRESS_TABLE} ADD SUPPLEMENTAL LOG DATA (ALL) COLUMNS`,
    ],
  },
  {
    name: 'PARKED',
    create: [
      `CREATE TABLE ${PARKED_TABLE} (
  ID CHAR(36 BYTE) NOT NULL PRIMARY KEY,
  PARKED_AT TIMESTAMP(6) DEFAULT ${NOW_UTC} NOT NULL,
  KIND VARCHAR2(8) NOT NULL CHECK (KIND IN ('skipped', 'refused')),
  SOURCE NVARCHAR2(255),
  TRANSACTION_ID NVARCHAR2(255),
  BODY_SHA256 CHAR(64 BYTE) NOT NULL,
  USER_ID NVARCHAR2(255),
  ROUTE NVARCHAR2(2000) NOT NULL,
  REASON NVARCHAR2(2000) NOT NULL,
  DONE_AT TIMESTAMP(6)
)`,
      `CREATE INDEX ${OWNER}."PARKED_TRANSACTION_ID" ON ${PARKED_TABLE} (TRANSACTION_ID)`,
    ],
  },
  {
    name: 'SPILLED_PARTS',
    create: [
      `CREATE TABLE ${SPILL_TABLE} (
  SOURCE VARCHAR2(40) NOT NULL,
  TRANSACTION_ID VARCHAR2(128) NOT NULL,
  PART NUMBER(10) NOT NULL,
  SCHEMA_VERSION NUMBER(10) NOT NULL,
  BODY BLOB NOT NULL,
  PRIMARY KEY (SOURCE, TRANSACTION_ID, PART)
)`,
    ],
  },
  {
    name: 'CONFLICTS',
    create: [
      `CREATE TABLE ${CONFLICTS_TABLE} (
  ID NUMBER(19) GENERATED ALWAYS AS IDENTITY NOT NULL PRIMARY KEY,
  LOGGED_AT TIMESTAMP(6) DEFAULT ${NOW_UTC} NOT NULL,
  KIND VARCHAR2(32) NOT NULL,
  TABLE_NAME NVARCHAR2(261) NOT NULL,
  KEY NCLOB NOT NULL,
  REMOTE_SITE VARCHAR2(40) NOT NULL,
  REMOTE_TRANSACTION NVARCHAR2(255) NOT NULL,
  REMOTE_COMMIT_TIME TIMESTAMP(6) NOT NULL,
  LOCAL_SITE VARCHAR2(40),
  LOCAL_COMMIT_TIME TIMESTAMP(6),
  POLICY VARCHAR2(32) NOT NULL,
  WINNER VARCHAR2(8) NOT NULL,
  RESOLUTION VARCHAR2(8) NOT NULL
)`,
    ],
  },
];

/** Which of the sink's tables exist (rows of `TABLE_NAME`). */
export const EXISTING_TABLES = `SELECT TABLE_NAME FROM ALL_TABLES WHERE OWNER = '${ORACLE_BOOKKEEPING_OWNER}'`;

/**
 * The apply session's settings, each sent once after connecting: the decimal character TO_NUMBER reads, the
 * default formats (for the record: every conversion names its format), binary string comparison and sorting
 * (the image match and the progress comparison are exact), and UTC as the session zone.
 */
export const SESSION_SETTINGS: readonly string[] = [
  "ALTER SESSION SET NLS_NUMERIC_CHARACTERS = '.,'",
  "ALTER SESSION SET NLS_DATE_FORMAT = 'YYYY-MM-DD HH24:MI:SS'",
  "ALTER SESSION SET NLS_TIMESTAMP_FORMAT = 'YYYY-MM-DD HH24:MI:SS.FF9'",
  "ALTER SESSION SET NLS_TIMESTAMP_TZ_FORMAT = 'YYYY-MM-DD HH24:MI:SS.FF9 TZH:TZM'",
  'ALTER SESSION SET NLS_COMP = BINARY',
  'ALTER SESSION SET NLS_SORT = BINARY',
  "ALTER SESSION SET TIME_ZONE = '+00:00'",
];

/** Positions order by length, then as strings (src/events/position.ts), compared binary (NLS_COMP pinned). */
function newer(current: string, incoming: string): string {
  return `(LENGTH(${current}) < LENGTH(${incoming}) OR (LENGTH(${current}) = LENGTH(${incoming}) AND ${current} < ${incoming}))`;
}

/**
 * The MERGE of a source's progress row, the first statement of every applied transaction. 'forward' merges
 * one row when it inserted or moved it, none when the row is at or past the position; 'always' (a retried
 * parked transaction) merges it in any case — APPLIED_TRANSACTIONS counts up, so that the redo holds a change
 * of the row, which is how this site's capture tells the transaction is a relayed write — and moves the
 * position only forward.
 */
export function progressStatement(row: ProgressRow, mode: 'forward' | 'always'): Statement {
  const params = new Parameters();
  const source = params.add(row.source);
  const kind = params.add(row.sourceKind);
  const position = params.add(row.position);
  const time = params.add(row.commitTimeMicros.toString());
  const moves = newer('t.POSITION', 's.POSITION');
  const matched =
    mode === 'forward'
      ? `WHEN MATCHED THEN\n  UPDATE SET t.SOURCE_KIND = s.SOURCE_KIND, t.POSITION = s.POSITION, t.COMMIT_TIME_MICROS = s.COMMIT_TIME_MICROS, t.APPLIED_TRANSACTIONS = t.APPLIED_TRANSACTIONS + 1\n  WHERE ${moves}`
      : `WHEN MATCHED THEN\n  UPDATE SET t.SOURCE_KIND = CASE WHEN ${moves} THEN s.SOURCE_KIND ELSE t.SOURCE_KIND END, ` +
        `t.COMMIT_TIME_MICROS = CASE WHEN ${moves} THEN s.COMMIT_TIME_MICROS ELSE t.COMMIT_TIME_MICROS END, ` +
        `t.POSITION = CASE WHEN ${moves} THEN s.POSITION ELSE t.POSITION END, t.APPLIED_TRANSACTIONS = t.APPLIED_TRANSACTIONS + 1`;
  const text =
    `MERGE INTO ${PROGRESS_TABLE} t\n` +
    `USING (SELECT CAST(${source} AS VARCHAR2(40)) AS SOURCE, CAST(${kind} AS VARCHAR2(20)) AS SOURCE_KIND, CAST(${position} AS VARCHAR2(64)) AS POSITION, TO_NUMBER(${time}) AS COMMIT_TIME_MICROS FROM DUAL) s\n` +
    `ON (t.SOURCE = s.SOURCE)\n` +
    `${matched}\n` +
    `WHEN NOT MATCHED THEN\n  INSERT (SOURCE, SOURCE_KIND, POSITION, COMMIT_TIME_MICROS, APPLIED_TRANSACTIONS) VALUES (s.SOURCE, s.SOURCE_KIND, s.POSITION, s.COMMIT_TIME_MICROS, 1)`;
  return { text, parameters: params.list };
}

export function readProgressStatement(source: string): Statement {
  const params = new Parameters();
  return { text: `SELECT POSITION FROM ${PROGRESS_TABLE} WHERE SOURCE = ${params.add(source)}`, parameters: params.list };
}

/** `text` cut to `n` UTF-16 code units, never in the middle of a surrogate pair. */
export function cut(text: string | null, n: number): string | null {
  if (text === null || text.length <= n) return text;
  const end = /[\ud800-\udbff]/.test(text[n - 1]!) ? n - 1 : n;
  return text.slice(0, end);
}

/** A parked record's values, cut to the columns' sizes (a refused message's claims are untrusted). */
export function insertParkedStatement(r: NewParkedRecord): Statement {
  const params = new Parameters();
  const id = params.add(r.id.toLowerCase());
  const values = [
    params.add(r.kind),
    params.add(cut(r.source, 255), 'ntext'),
    params.add(cut(r.transactionId, 255), 'ntext'),
    params.add(r.bodySha256),
    params.add(cut(r.userId, 255), 'ntext'),
    params.add(cut(r.route, 2000), 'ntext'),
    params.add(cut(r.reason, 2000), 'ntext'),
  ];
  // A refused message's id is derived from what it is (apply-runner.ts): refused again, it keeps its record.
  const text =
    `MERGE INTO ${PARKED_TABLE} t\n` +
    `USING (SELECT CAST(${id} AS CHAR(36 BYTE)) AS ID FROM DUAL) s\n` +
    `ON (t.ID = s.ID)\n` +
    `WHEN NOT MATCHED THEN\n  INSERT (ID, KIND, SOURCE, TRANSACTION_ID, BODY_SHA256, USER_ID, ROUTE, REASON) VALUES (s.ID, ${values.join(', ')})`;
  return { text, parameters: params.list };
}

export function findParkedStatement(id: string): Statement {
  const params = new Parameters();
  return {
    text: `SELECT ID, KIND, SOURCE, TRANSACTION_ID, BODY_SHA256, USER_ID, ROUTE, REASON, CASE WHEN DONE_AT IS NULL THEN 0 ELSE 1 END AS DONE FROM ${PARKED_TABLE} WHERE ID = CAST(${params.add(id.toLowerCase())} AS CHAR(36 BYTE))`,
    parameters: params.list,
  };
}

export function finishParkedStatement(id: string): Statement {
  const params = new Parameters();
  return { text: `UPDATE ${PARKED_TABLE} SET DONE_AT = ${NOW_UTC} WHERE ID = CAST(${params.add(id.toLowerCase())} AS CHAR(36 BYTE)) AND DONE_AT IS NULL`, parameters: params.list };
}

/**
 * Marks every open 'skipped' record of a transaction done, provided record `parkedId` is still open. Two
 * retries racing: the later one's update waits on the rows the first locked, then restarts on them as
 * committed (DONE_AT no longer NULL) and marks none.
 */
export function finishRetriedStatement(transactionId: string, parkedId: string): Statement {
  const params = new Parameters();
  const tx = params.add(transactionId, 'ntext');
  const id = params.add(parkedId.toLowerCase());
  return {
    text:
      `UPDATE ${PARKED_TABLE} SET DONE_AT = ${NOW_UTC}\n` +
      ` WHERE TRANSACTION_ID = ${tx} AND KIND = 'skipped' AND DONE_AT IS NULL\n` +
      `   AND EXISTS (SELECT 1 FROM ${PARKED_TABLE} o WHERE o.ID = CAST(${id} AS CHAR(36 BYTE)) AND o.DONE_AT IS NULL)`,
    parameters: params.list,
  };
}

function partKey(params: Parameters, source: string, transactionId: string, part: number, alias = ''): string {
  return `${alias}SOURCE = ${params.add(source)} AND ${alias}TRANSACTION_ID = ${params.add(transactionId)} AND ${alias}PART = TO_NUMBER(${params.add(String(part))})`;
}

/** Keeps one part (a copy kept before is replaced): one MERGE. */
export function keepPartStatement(source: string, transactionId: string, part: number, schemaVersion: number, body: Buffer): Statement {
  const params = new Parameters();
  const s = params.add(source);
  const t = params.add(transactionId);
  const n = params.add(String(part));
  const version = params.add(String(schemaVersion));
  const data = params.add(body, 'blob');
  return {
    text:
      `MERGE INTO ${SPILL_TABLE} t\n` +
      `USING (SELECT CAST(${s} AS VARCHAR2(40)) AS SOURCE, CAST(${t} AS VARCHAR2(128)) AS TRANSACTION_ID, TO_NUMBER(${n}) AS PART FROM DUAL) s\n` +
      `ON (t.SOURCE = s.SOURCE AND t.TRANSACTION_ID = s.TRANSACTION_ID AND t.PART = s.PART)\n` +
      `WHEN MATCHED THEN\n  UPDATE SET t.SCHEMA_VERSION = TO_NUMBER(${version}), t.BODY = ${data}\n` +
      `WHEN NOT MATCHED THEN\n  INSERT (SOURCE, TRANSACTION_ID, PART, SCHEMA_VERSION, BODY) VALUES (s.SOURCE, s.TRANSACTION_ID, s.PART, TO_NUMBER(${version}), ${data})`,
    parameters: params.list,
  };
}

export function hasPartStatement(source: string, transactionId: string, part: number): Statement {
  const params = new Parameters();
  return { text: `SELECT 1 AS FOUND FROM ${SPILL_TABLE} WHERE ${partKey(params, source, transactionId, part)}`, parameters: params.list };
}

export function readPartStatement(source: string, transactionId: string, part: number): Statement {
  const params = new Parameters();
  return { text: `SELECT SCHEMA_VERSION, BODY FROM ${SPILL_TABLE} WHERE ${partKey(params, source, transactionId, part)}`, parameters: params.list };
}

export function spilledBytesStatement(source: string): Statement {
  const params = new Parameters();
  return { text: `SELECT TO_CHAR(NVL(SUM(DBMS_LOB.GETLENGTH(BODY)), 0)) AS BYTES FROM ${SPILL_TABLE} WHERE SOURCE = ${params.add(source)}`, parameters: params.list };
}

export function forgetPartsStatement(source: string): Statement {
  const params = new Parameters();
  return { text: `DELETE FROM ${SPILL_TABLE} WHERE SOURCE = ${params.add(source)}`, parameters: params.list };
}

/** A time in microseconds since 1970 (UTC) as `YYYY-MM-DD HH24:MI:SS.FF6` text, for TO_TIMESTAMP. */
export function microsToOracleTimestamp(micros: bigint): string {
  const millis = micros >= 0n ? micros / 1000n : (micros - 999n) / 1000n;
  const rest = Number(micros - millis * 1000n);
  const iso = new Date(Number(millis)).toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 23)}${String(rest).padStart(3, '0')}`;
}

export function insertConflictStatement(c: ConflictRow): Statement {
  const params = new Parameters();
  const time = (micros: bigint | null): string => `TO_TIMESTAMP(${params.add(micros === null ? null : microsToOracleTimestamp(micros))}, '${TIMESTAMP_FORMAT}')`;
  const values = [
    params.add(c.kind),
    params.add(cut(c.table, 261), 'ntext'),
    params.add(c.keyJson, 'nclob'),
    params.add(c.remoteSite),
    params.add(cut(c.remoteTransaction, 255), 'ntext'),
    time(c.remoteCommitTimeMicros),
    params.add(c.localSite),
    time(c.localCommitTimeMicros),
    params.add(c.policy),
    params.add(c.winner),
    params.add(c.resolution),
  ];
  return {
    text: `INSERT INTO ${CONFLICTS_TABLE} (KIND, TABLE_NAME, KEY, REMOTE_SITE, REMOTE_TRANSACTION, REMOTE_COMMIT_TIME, LOCAL_SITE, LOCAL_COMMIT_TIME, POLICY, WINNER, RESOLUTION) VALUES (${values.join(', ')})`,
    parameters: params.list,
  };
}
