/**
 * The LogMinerReader (logminer-reader.ts) over a real Oracle database, through `oracledb` in Thin mode. It only
 * issues SQL and turns rows into the contract's shapes: every statement is built by an exported pure function
 * and every result read by an exported pure function, so test/unit/oracle-reader-sql.test.ts checks both
 * without a database, and the class itself is a thin loop of "build, run, read".
 *
 * Choices that matter:
 * - Two sessions. The `catalog` session stays in the container the URL's service names (the PDB, or the whole
 *   database when it is not multitenant): table columns, setup facts about tables, and SITESYNC's bookkeeping.
 *   The `miner` session runs LogMiner. In a multitenant database (V$DATABASE.CDB = 'YES') connected to a PDB,
 *   it first moves to the root (ALTER SESSION SET CONTAINER = CDB$ROOT, which a common user with SET CONTAINER
 *   may do): DBMS_LOGMNR.ADD_LOGFILE is refused inside a PDB, and the redo of every PDB is one stream. It then
 *   keeps only the PDB's rows (SRC_CON_NAME = the PDB): a transaction never spans PDBs, so start, commit and
 *   rollback rows are filtered the same way (as Debezium's buffered query does). Two sessions also let
 *   columns() and writeProgress() run while a mining session's cursor is open.
 * - Session settings are pinned on both sessions as soon as they connect (sessionSetupStatement):
 *   NLS_DATE_FORMAT 'YYYY-MM-DD HH24:MI:SS', NLS_TIMESTAMP_FORMAT '… .FF9', NLS_TIMESTAMP_TZ_FORMAT '… .FF9
 *   TZH:TZM', NLS_NUMERIC_CHARACTERS '.,' and TIME_ZONE '+00:00': LogMiner writes SQL_REDO's literals in the
 *   querying session's formats, and the SQL_REDO parser reads exactly these (the spec's Oracle text form).
 * - SCNs are read as text (TO_CHAR in every query) and bound as text (TO_NUMBER(:x)): an SCN may pass 2^53,
 *   which a JavaScript number would round.
 * - oldestOpenTransactionScn: MIN(START_SCN) of V$TRANSACTION, in a CDB where CON_ID is the PDB's (the miner
 *   session is in the root, where the view lists every container's transactions).
 * - currentScn: V$DATABASE.CURRENT_SCN. threads: V$THREAD, open when STATUS = 'OPEN', and its flushed SCN is
 *   LAST_REDO_SCN − 1. LAST_REDO_SCN is the SCN of the last redo the thread wrote to its online log (19c+);
 *   Debezium caps its windows by the lowest over open threads, less 1 by default
 *   (log.mining.redo.thread.scn.adjustment), because LogMiner widens the ENDSCN it is given by one and fails on
 *   an SCN past the logs. The same one is taken off here, so the pure code can mine up to flushedScn as is.
 * - logs: the online logs (V$LOG joined to V$LOGFILE, one member per group, statuses CURRENT, ACTIVE and
 *   INACTIVE: UNUSED and CLEARING ones hold nothing; INVALID or DELETED members are left out) and the archived
 *   ones (V$ARCHIVED_LOG with NAME set, ARCHIVED = 'YES', STATUS = 'A' (available, not deleted), STANDBY_DEST =
 *   'NO' (a local destination, not a Data Guard standby's copy), of the current incarnation). One log per
 *   thread and sequence: an archived copy (of the lowest DEST_ID) wins over the online log, which Oracle may
 *   reuse while it is being mined; the current online log has no NEXT_CHANGE# worth reading (Oracle shows
 *   2^64 − 1 there) and is given nextScn null.
 * - mine: DBMS_LOGMNR.ADD_LOGFILE for each log (NEW for the first, ADDFILE after, in one PL/SQL block), then
 *   START_LOGMNR(STARTSCN => from + 1, ENDSCN => to, OPTIONS => DICT_FROM_ONLINE_CATALOG + NO_ROWID_IN_STMT):
 *   the online catalog as dictionary (sitesync reads the columns of a table now, not as of the redo; a DDL
 *   between is handled above from the DDL rows), and SQL_REDO without the `and ROWID = '…'` LogMiner appends
 *   otherwise (ROW_ID is still its own column, which savepoint rollbacks are matched by). Then one query of
 *   V$LOGMNR_CONTENTS, read through a result set in batches (getRows(limit)), in LogMiner's own order (SCN
 *   order: no ORDER BY, which would make Oracle sort the whole window first).
 * - The query keeps START (6), COMMIT (7) and ROLLBACK (36) rows of every transaction, and INSERT, DELETE,
 *   UPDATE, DDL, SELECT_LOB_LOCATOR and LOB_WRITE rows (1, 2, 3, 5, 9, 10) of the owners asked for plus
 *   SITESYNC (or, for null, of every owner Oracle does not maintain: ALL_USERS.ORACLE_MAINTAINED = 'Y' names
 *   the same users in the root and in every PDB).
 * - Times: TIMESTAMP (on a COMMIT row COMMIT_TIMESTAMP when LogMiner fills it) is a DATE in the server's
 *   clock, that is its operating system's zone (as SYSDATE), not DBTIMEZONE (which only governs TIMESTAMP WITH
 *   LOCAL TIME ZONE storage). The reader reads it as text and gives it the offset of that zone: the URL's
 *   `timeZone` (an IANA name: the offset is then right for each row, across daylight-saving changes) when
 *   given, else the offset of SYSTIMESTAMP, read at the start of every mining session (right for every row
 *   unless a daylight-saving change falls between the row's redo and its mining: set `timeZone` on servers
 *   whose zone has them).
 * - XID: RAWTOHEX(XID), 16 upper-case hex digits: XIDUSN (2 bytes), XIDSLT (2 bytes), XIDSQN (4 bytes) as
 *   Oracle stores them (in the platform's byte order: the same for every row of one database).
 * - columns: ALL_TAB_COLS without hidden or virtual columns (virtual columns are never in redo), in COLUMN_ID
 *   order, with the position of each in the primary key (ALL_CONSTRAINTS type 'P', ALL_CONS_COLUMNS).
 * - SITESYNC.CAPTURE_PROGRESS: created by a PL/SQL block that ignores ORA-00955 (name already used), written
 *   with one MERGE, committed at once (autoCommit).
 * - RECORD=1 in the environment: every query's SQL, binds and result rows are also written (JSON) to
 *   test/fixtures/oracle/recorded-<method>-<n>.json, so a run against a real database leaves fixtures for the
 *   unit tests (hand-written fixtures are named invented-*.json).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type * as oracledb from 'oracledb';
import { SitesyncError } from '../../src/errors.ts';
import type { LogMinerReader, MinedRow, MiningSession, OracleColumn, OracleProgressRow, OracleSetupFacts, RedoLog, RedoThread, Scn } from './logminer-reader.ts';
import { oracledbConfig, type OracleConnectionConfig } from './oracledb-connection.ts';
import { loadOracledb, type OracledbDriver } from './oracledb-driver.ts';
import { describeOracleError, oraNumbers } from './oracle-errors.ts';
import { ORACLE_BOOKKEEPING_OWNER, PACKAGES, quoteIdentifier, SNAPSHOT_MARKERS_TABLE, SYSTEM_PRIVILEGES, VIEWS } from './oracle-setup.ts';

// ─── statements ──────────────────────────────────────────────────────────────────────────────────────────

export interface Bind {
  readonly name: string;
  readonly value: string | null;
  /** clob: bound as a CLOB (SEEN may pass VARCHAR2's 32767 bytes); else a VARCHAR2. */
  readonly type?: 'clob';
}

export interface Statement {
  readonly sql: string;
  readonly binds: readonly Bind[];
}

export type Row = Record<string, unknown>;

const OWNER = quoteIdentifier(ORACLE_BOOKKEEPING_OWNER);
const CAPTURE_PROGRESS = `${OWNER}."CAPTURE_PROGRESS"`;

/** The formats the SQL_REDO parser reads (the spec's Oracle text form), and UTC as the session's zone. */
export function sessionSetupStatement(): Statement {
  return {
    sql:
      "ALTER SESSION SET NLS_DATE_FORMAT = 'YYYY-MM-DD HH24:MI:SS' NLS_TIMESTAMP_FORMAT = 'YYYY-MM-DD HH24:MI:SS.FF9' " +
      "NLS_TIMESTAMP_TZ_FORMAT = 'YYYY-MM-DD HH24:MI:SS.FF9 TZH:TZM' NLS_NUMERIC_CHARACTERS = '.,' TIME_ZONE = '+00:00'",
    binds: [],
  };
}

/** Where a session is: its container, and whether the database is multitenant. */
export function containerStatement(): Statement {
  return { sql: "SELECT SYS_CONTEXT('USERENV', 'CON_NAME') AS CON_NAME, (SELECT CDB FROM V$DATABASE) AS CDB FROM DUAL", binds: [] };
}

export function rootContainerStatement(): Statement {
  return { sql: 'ALTER SESSION SET CONTAINER = CDB$ROOT', binds: [] };
}

export function currentScnStatement(): Statement {
  return { sql: 'SELECT TO_CHAR(CURRENT_SCN) AS CURRENT_SCN FROM V$DATABASE', binds: [] };
}

/**
 * The lowest START_SCN of the open transactions (V$TRANSACTION lists those of every container when queried from
 * the root: only the PDB's when `pdb` is given, CON_NAME_TO_ID naming its CON_ID).
 */
export function oldestOpenTransactionStatement(pdb: string | null): Statement {
  if (pdb === null) return { sql: 'SELECT TO_CHAR(MIN(START_SCN)) AS START_SCN FROM V$TRANSACTION', binds: [] };
  return { sql: 'SELECT TO_CHAR(MIN(START_SCN)) AS START_SCN FROM V$TRANSACTION WHERE CON_ID = CON_NAME_TO_ID(:pdb)', binds: [{ name: 'pdb', value: pdb }] };
}

export function threadsStatement(): Statement {
  return { sql: 'SELECT THREAD# AS THREAD, STATUS, TO_CHAR(LAST_REDO_SCN) AS LAST_REDO_SCN FROM V$THREAD ORDER BY THREAD#', binds: [] };
}

const scnBind = (name: string, scn: Scn): Bind => ({ name, value: scn.toString() });

/** Online logs holding an SCN above `fromScn` (the current one always), one member of each group. */
export function onlineLogsStatement(fromScn: Scn): Statement {
  return {
    sql: [
      'SELECT MIN(F.MEMBER) AS NAME, L.THREAD# AS THREAD, L.SEQUENCE# AS SEQ, TO_CHAR(L.FIRST_CHANGE#) AS FIRST_SCN,',
      '  TO_CHAR(L.NEXT_CHANGE#) AS NEXT_SCN, L.STATUS AS STATUS',
      'FROM V$LOG L JOIN V$LOGFILE F ON F.GROUP# = L.GROUP#',
      "WHERE L.STATUS IN ('CURRENT', 'ACTIVE', 'INACTIVE') AND (F.STATUS IS NULL OR F.STATUS NOT IN ('INVALID', 'DELETED'))",
      "  AND (L.STATUS = 'CURRENT' OR L.NEXT_CHANGE# IS NULL OR L.NEXT_CHANGE# > TO_NUMBER(:fromScn))",
      'GROUP BY L.GROUP#, L.THREAD#, L.SEQUENCE#, L.FIRST_CHANGE#, L.NEXT_CHANGE#, L.STATUS',
      'ORDER BY L.THREAD#, L.SEQUENCE#',
    ].join('\n'),
    binds: [scnBind('fromScn', fromScn)],
  };
}

/** Archived logs (local destinations, available, this incarnation) holding an SCN above `fromScn`. */
export function archivedLogsStatement(fromScn: Scn): Statement {
  return {
    sql: [
      'SELECT NAME, THREAD# AS THREAD, SEQUENCE# AS SEQ, TO_CHAR(FIRST_CHANGE#) AS FIRST_SCN, TO_CHAR(NEXT_CHANGE#) AS NEXT_SCN, DEST_ID',
      'FROM V$ARCHIVED_LOG',
      "WHERE NAME IS NOT NULL AND ARCHIVED = 'YES' AND STATUS = 'A' AND STANDBY_DEST = 'NO'",
      '  AND RESETLOGS_CHANGE# = (SELECT RESETLOGS_CHANGE# FROM V$DATABASE)',
      '  AND NEXT_CHANGE# > TO_NUMBER(:fromScn)',
      'ORDER BY THREAD#, SEQUENCE#, DEST_ID',
    ].join('\n'),
    binds: [scnBind('fromScn', fromScn)],
  };
}

/** One PL/SQL block adding every log: NEW for the first (a new list), ADDFILE after. */
export function addLogfilesStatement(logs: readonly RedoLog[]): Statement {
  if (logs.length === 0) throw new Error('addLogfilesStatement needs at least one log');
  const calls = logs.map((_, i) => `  SYS.DBMS_LOGMNR.ADD_LOGFILE(LOGFILENAME => :f${i}, OPTIONS => SYS.DBMS_LOGMNR.${i === 0 ? 'NEW' : 'ADDFILE'});`);
  return { sql: ['BEGIN', ...calls, 'END;'].join('\n'), binds: logs.map((log, i) => ({ name: `f${i}`, value: log.name })) };
}

/** LogMiner started for the SCNs `fromScn < SCN <= toScn` (STARTSCN is inclusive), the online catalog as dictionary. */
export function startLogminerStatement(fromScn: Scn, toScn: Scn): Statement {
  return {
    sql: [
      'BEGIN',
      '  SYS.DBMS_LOGMNR.START_LOGMNR(STARTSCN => TO_NUMBER(:startScn), ENDSCN => TO_NUMBER(:endScn),',
      '    OPTIONS => SYS.DBMS_LOGMNR.DICT_FROM_ONLINE_CATALOG + SYS.DBMS_LOGMNR.NO_ROWID_IN_STMT);',
      'END;',
    ].join('\n'),
    binds: [scnBind('startScn', fromScn + 1n), scnBind('endScn', toScn)],
  };
}

export function endLogminerStatement(): Statement {
  return { sql: 'BEGIN SYS.DBMS_LOGMNR.END_LOGMNR; END;', binds: [] };
}

/** The server's clock offset now (the zone LogMiner's DATE times are in, see the file comment). */
export function clockOffsetStatement(): Statement {
  return { sql: "SELECT TO_CHAR(SYSTIMESTAMP, 'TZH:TZM') AS OFFSET FROM DUAL", binds: [] };
}

/**
 * The rows of the window: transaction markers of every transaction, row changes and DDL of `owners` and
 * SITESYNC (null: of every owner Oracle does not maintain); only the PDB's when `pdb` is given.
 */
export function contentsStatement(fromScn: Scn, toScn: Scn, owners: readonly string[] | null, pdb: string | null): Statement {
  const binds: Bind[] = [scnBind('fromScn', fromScn), scnBind('toScn', toScn)];
  let ownerPredicate: string;
  if (owners === null) {
    ownerPredicate = "SEG_OWNER NOT IN (SELECT USERNAME FROM ALL_USERS WHERE ORACLE_MAINTAINED = 'Y')";
  } else {
    const all = [...new Set([...owners, ORACLE_BOOKKEEPING_OWNER])];
    ownerPredicate = `SEG_OWNER IN (${all.map((_, i) => `:owner${i}`).join(', ')})`;
    all.forEach((owner, i) => binds.push({ name: `owner${i}`, value: owner }));
  }
  const lines = [
    'SELECT TO_CHAR(SCN) AS SCN, TO_CHAR(START_SCN) AS START_SCN, TO_CHAR(COMMIT_SCN) AS COMMIT_SCN,',
    "  TO_CHAR(CASE WHEN OPERATION_CODE = 7 AND COMMIT_TIMESTAMP IS NOT NULL THEN COMMIT_TIMESTAMP ELSE TIMESTAMP END, 'YYYY-MM-DD HH24:MI:SS') AS TS,",
    '  RAWTOHEX(XID) AS XID, OPERATION_CODE, SEG_OWNER, TABLE_NAME, SQL_REDO, ROW_ID, ROLLBACK, CSF, RS_ID, SSN, THREAD# AS THREAD, USERNAME',
    'FROM V$LOGMNR_CONTENTS',
    'WHERE SCN > TO_NUMBER(:fromScn) AND SCN <= TO_NUMBER(:toScn)',
  ];
  if (pdb !== null) {
    lines.push('  AND SRC_CON_NAME = :pdb');
    binds.push({ name: 'pdb', value: pdb });
  }
  lines.push(`  AND (OPERATION_CODE IN (6, 7, 36) OR (OPERATION_CODE IN (1, 2, 3, 5, 9, 10) AND ${ownerPredicate}))`);
  return { sql: lines.join('\n'), binds };
}

/** A table's columns (neither hidden nor virtual) with their primary key positions, in COLUMN_ID order. */
export function columnsStatement(owner: string, table: string): Statement {
  return {
    sql: [
      'SELECT C.COLUMN_NAME, C.DATA_TYPE, C.DATA_PRECISION, C.DATA_SCALE, C.DATA_LENGTH, C.CHAR_LENGTH, C.NULLABLE, NVL(K.POSITION, 0) AS KEY_ORDINAL',
      'FROM ALL_TAB_COLS C',
      'LEFT JOIN (',
      '  SELECT CC.COLUMN_NAME, CC.POSITION FROM ALL_CONSTRAINTS PK',
      '  JOIN ALL_CONS_COLUMNS CC ON CC.OWNER = PK.OWNER AND CC.CONSTRAINT_NAME = PK.CONSTRAINT_NAME AND CC.TABLE_NAME = PK.TABLE_NAME',
      "  WHERE PK.OWNER = :ownerName AND PK.TABLE_NAME = :tableName AND PK.CONSTRAINT_TYPE = 'P'",
      ') K ON K.COLUMN_NAME = C.COLUMN_NAME',
      "WHERE C.OWNER = :ownerName AND C.TABLE_NAME = :tableName AND C.HIDDEN_COLUMN = 'NO' AND C.VIRTUAL_COLUMN = 'NO'",
      'ORDER BY C.COLUMN_ID',
    ].join('\n'),
    binds: [
      { name: 'ownerName', value: owner },
      { name: 'tableName', value: table },
    ],
  };
}

/** Log mode, supplemental logging and the user (run in the root of a CDB: those are the whole database's). */
export function databaseFactsStatement(): Statement {
  return {
    sql: [
      'SELECT LOG_MODE, SUPPLEMENTAL_LOG_DATA_MIN, SUPPLEMENTAL_LOG_DATA_ALL, CDB,',
      "  SYS_CONTEXT('USERENV', 'SESSION_USER') AS SESSION_USER, SYS_CONTEXT('USERENV', 'CON_NAME') AS CON_NAME",
      'FROM V$DATABASE',
    ].join('\n'),
    binds: [],
  };
}

/** The system privileges the session holds, directly or through roles. */
export function sessionPrivilegesStatement(): Statement {
  return { sql: 'SELECT PRIVILEGE FROM SESSION_PRIVS', binds: [] };
}

/** Whether the session can read a V$ view (its public synonym `V$X` for `V_$X`): fails with ORA-00942 when not. */
export function viewProbeStatement(view: string): Statement {
  if (!/^V_\$[A-Z_]+$/.test(view)) throw new Error(`not a V_$ view name: ${view}`);
  return { sql: `SELECT COUNT(*) AS N FROM ${view.replace('V_$', 'V$')} WHERE 1 = 0`, binds: [] };
}

/** The LogMiner packages the session may execute (ALL_OBJECTS lists what the user has a right on). */
export function packagesStatement(): Statement {
  return {
    sql: `SELECT OBJECT_NAME FROM ALL_OBJECTS WHERE OWNER = 'SYS' AND OBJECT_TYPE = 'PACKAGE' AND OBJECT_NAME IN (${PACKAGES.map((p) => `'${p}'`).join(', ')})`,
    binds: [],
  };
}

/**
 * Captured tables (of `owners`, or of every owner Oracle does not maintain; SITESYNC's APPLY_PROGRESS, not its
 * other tables) without an ALL COLUMNS supplemental log group. Only asked when the database logs all columns
 * for no table.
 */
export function tablesWithoutLoggingStatement(owners: readonly string[] | null): Statement {
  const binds: Bind[] = [];
  let ownerPredicate: string;
  if (owners === null) {
    ownerPredicate = "T.OWNER NOT IN (SELECT USERNAME FROM ALL_USERS WHERE ORACLE_MAINTAINED = 'Y')";
  } else {
    const all = [...new Set([...owners, ORACLE_BOOKKEEPING_OWNER])];
    ownerPredicate = `T.OWNER IN (${all.map((_, i) => `:owner${i}`).join(', ')})`;
    all.forEach((owner, i) => binds.push({ name: `owner${i}`, value: owner }));
  }
  return {
    sql: [
      'SELECT T.OWNER, T.TABLE_NAME FROM ALL_TABLES T',
      `WHERE ${ownerPredicate}`,
      `  AND (T.OWNER <> '${ORACLE_BOOKKEEPING_OWNER}' OR T.TABLE_NAME = 'APPLY_PROGRESS') AND T.TEMPORARY = 'N' AND T.NESTED = 'NO'`,
      '  AND NOT EXISTS (SELECT 1 FROM ALL_LOG_GROUPS G',
      "    WHERE G.OWNER = T.OWNER AND G.TABLE_NAME = T.TABLE_NAME AND G.LOG_GROUP_TYPE = 'ALL COLUMN LOGGING')",
      'ORDER BY T.OWNER, T.TABLE_NAME',
    ].join('\n'),
    binds,
  };
}

export function progressTableStatement(): Statement {
  return { sql: `SELECT COUNT(*) AS N FROM ALL_TABLES WHERE OWNER = '${ORACLE_BOOKKEEPING_OWNER}' AND TABLE_NAME = 'APPLY_PROGRESS'`, binds: [] };
}

/** Whether SITESYNC.SNAPSHOT_MARKERS exists (online snapshots write their markers there). */
export function snapshotMarkersTableStatement(): Statement {
  return { sql: `SELECT COUNT(*) AS N FROM ALL_TABLES WHERE OWNER = '${ORACLE_BOOKKEEPING_OWNER}' AND TABLE_NAME = '${SNAPSHOT_MARKERS_TABLE}'`, binds: [] };
}

/** CAPTURE_PROGRESS, unless there (ORA-00955: the name is already used). */
export function ensureCaptureProgressStatement(): Statement {
  const ddl =
    `CREATE TABLE ${CAPTURE_PROGRESS} ("SITE" VARCHAR2(40) NOT NULL PRIMARY KEY, "LAST_PUBLISHED" VARCHAR2(64), ` +
    '"CHECKPOINT" VARCHAR2(128) NOT NULL, "SEEN" CLOB NOT NULL, "UPDATED_AT" TIMESTAMP DEFAULT SYS_EXTRACT_UTC(SYSTIMESTAMP) NOT NULL)';
  return {
    sql: ['BEGIN', `  EXECUTE IMMEDIATE '${ddl.replace(/'/g, "''")}';`, 'EXCEPTION WHEN OTHERS THEN', '  IF SQLCODE <> -955 THEN RAISE; END IF;', 'END;'].join('\n'),
    binds: [],
  };
}

export function readProgressStatement(site: string): Statement {
  return { sql: `SELECT "LAST_PUBLISHED", "CHECKPOINT", "SEEN" FROM ${CAPTURE_PROGRESS} WHERE "SITE" = :site`, binds: [{ name: 'site', value: site }] };
}

/** One MERGE: update the site's row, else insert it (one capture process per site writes it). */
export function writeProgressStatement(site: string, row: OracleProgressRow): Statement {
  return {
    sql: [
      `MERGE INTO ${CAPTURE_PROGRESS} P`,
      'USING (SELECT :site AS "SITE" FROM DUAL) S ON (P."SITE" = S."SITE")',
      'WHEN MATCHED THEN UPDATE SET P."LAST_PUBLISHED" = :lastPublished, P."CHECKPOINT" = :checkpoint, P."SEEN" = :seen,',
      '  P."UPDATED_AT" = SYS_EXTRACT_UTC(SYSTIMESTAMP)',
      'WHEN NOT MATCHED THEN INSERT ("SITE", "LAST_PUBLISHED", "CHECKPOINT", "SEEN", "UPDATED_AT")',
      '  VALUES (S."SITE", :lastPublished, :checkpoint, :seen, SYS_EXTRACT_UTC(SYSTIMESTAMP))',
    ].join('\n'),
    binds: [
      { name: 'site', value: site },
      { name: 'lastPublished', value: row.lastPublished },
      { name: 'checkpoint', value: row.checkpoint },
      { name: 'seen', value: row.seen, type: 'clob' },
    ],
  };
}

// ─── reading rows ────────────────────────────────────────────────────────────────────────────────────────

function decodeError(what: string): SitesyncError {
  return new SitesyncError('SITESYNC_ERR_DECODE', `Oracle returned ${what}`);
}

/** An SCN as Oracle prints it (TO_CHAR): digits only. */
export function readScn(value: unknown, what: string): Scn {
  const text = typeof value === 'number' && Number.isSafeInteger(value) ? String(value) : value;
  if (typeof text !== 'string' || !/^[0-9]{1,20}$/.test(text.trim())) throw decodeError(`${what} as ${JSON.stringify(value)}, not an SCN`);
  return BigInt(text.trim());
}

function optionalScn(value: unknown, what: string): Scn | null {
  return value === null || value === undefined ? null : readScn(value, what);
}

function num(value: unknown, what: string): number {
  const n = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : NaN;
  if (!Number.isFinite(n)) throw decodeError(`${what} as ${JSON.stringify(value)}, not a number`);
  return n;
}

function optionalNum(value: unknown, what: string): number | null {
  return value === null || value === undefined ? null : num(value, what);
}

function text(value: unknown): string | null {
  return value === null || value === undefined ? null : String(value);
}

export function readCurrentScn(rows: readonly Row[]): Scn {
  return readScn(rows[0]?.CURRENT_SCN, 'V$DATABASE.CURRENT_SCN');
}

/** MIN(START_SCN) of V$TRANSACTION: null when no transaction is open. */
export function readOldestOpenTransaction(rows: readonly Row[]): Scn | null {
  return optionalScn(rows[0]?.START_SCN, 'V$TRANSACTION.START_SCN');
}

/** V$THREAD rows: open when STATUS = 'OPEN'; flushedScn = LAST_REDO_SCN − 1 (see the file comment), 0 when unknown. */
export function readThreads(rows: readonly Row[]): RedoThread[] {
  return rows.map((row) => {
    const last = optionalScn(row.LAST_REDO_SCN, 'V$THREAD.LAST_REDO_SCN') ?? 0n;
    return { thread: num(row.THREAD, 'V$THREAD.THREAD#'), open: String(row.STATUS) === 'OPEN', flushedScn: last > 0n ? last - 1n : 0n };
  });
}

/** At or past 2^63: Oracle's "no next change yet" (2^64 − 1 on current logs). */
const NO_NEXT_CHANGE = 1n << 63n;

/**
 * Online and archived log rows as one list, one log per (thread, sequence): the first archived row (lowest
 * DEST_ID) when there is one, else the online log; sorted by thread then sequence.
 */
export function readLogs(online: readonly Row[], archived: readonly Row[]): RedoLog[] {
  const logs = new Map<string, RedoLog>();
  for (const row of archived) {
    const log: RedoLog = {
      name: String(row.NAME),
      thread: num(row.THREAD, 'V$ARCHIVED_LOG.THREAD#'),
      sequence: num(row.SEQ, 'V$ARCHIVED_LOG.SEQUENCE#'),
      firstScn: readScn(row.FIRST_SCN, 'V$ARCHIVED_LOG.FIRST_CHANGE#'),
      nextScn: readScn(row.NEXT_SCN, 'V$ARCHIVED_LOG.NEXT_CHANGE#'),
      archived: true,
    };
    const key = `${log.thread}/${log.sequence}`;
    if (!logs.has(key)) logs.set(key, log);
  }
  for (const row of online) {
    const thread = num(row.THREAD, 'V$LOG.THREAD#');
    const sequence = num(row.SEQ, 'V$LOG.SEQUENCE#');
    const key = `${thread}/${sequence}`;
    if (logs.has(key)) continue;
    const next = optionalScn(row.NEXT_SCN, 'V$LOG.NEXT_CHANGE#');
    logs.set(key, {
      name: String(row.NAME),
      thread,
      sequence,
      firstScn: readScn(row.FIRST_SCN, 'V$LOG.FIRST_CHANGE#'),
      nextScn: String(row.STATUS) === 'CURRENT' || next === null || next >= NO_NEXT_CHANGE ? null : next,
      archived: false,
    });
  }
  return [...logs.values()].sort((a, b) => a.thread - b.thread || a.sequence - b.sequence);
}

/** The offset of an IANA zone at an instant, in minutes east of UTC. */
function zoneOffsetMinutes(zone: string, epochMs: number): number {
  const part = new Intl.DateTimeFormat('en-US', { timeZone: zone, timeZoneName: 'longOffset' }).formatToParts(new Date(epochMs)).find((p) => p.type === 'timeZoneName')?.value ?? 'GMT';
  const m = /^GMT(?:([+-])(\d{2}):(\d{2}))?$/.exec(part);
  if (!m) throw new Error(`cannot read the offset of time zone ${zone}: ${part}`);
  return m[1] === undefined ? 0 : (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3]));
}

function formatOffset(minutes: number): string {
  const sign = minutes < 0 ? '-' : '+';
  const abs = Math.abs(minutes);
  return `${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
}

/**
 * `YYYY-MM-DD HH24:MI:SS` in the server's zone as ISO 8601 with its offset. `zone` is an offset (`+01:00`,
 * taken as is) or an IANA name (the offset in force at that local time; of two, in the hour a clock goes
 * back, the earlier).
 */
export function localTimeToIso(local: string, zone: string): string {
  const m = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})$/.exec(local);
  if (!m) throw decodeError(`a time as ${JSON.stringify(local)}, not YYYY-MM-DD HH24:MI:SS`);
  const iso = `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}`;
  if (/^[+-]\d{2}:\d{2}$/.test(zone)) return `${iso}${zone}`;
  const asUtc = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
  const before = zoneOffsetMinutes(zone, asUtc - 12 * 3600_000);
  const after = zoneOffsetMinutes(zone, asUtc + 12 * 3600_000);
  // The local time is at asUtc − offset; of the (at most two) offsets around it, the first that maps back to it.
  const offset = [before, after].find((o) => zoneOffsetMinutes(zone, asUtc - o * 60_000) === o) ?? zoneOffsetMinutes(zone, asUtc);
  return `${iso}${formatOffset(offset)}`;
}

/** V$LOGMNR_CONTENTS rows (contentsStatement's columns) as MinedRows; times given `zone` (see localTimeToIso). */
export function readMinedRows(rows: readonly Row[], zone: string): MinedRow[] {
  return rows.map((row) => {
    const xid = String(row.XID ?? '').toUpperCase();
    if (!/^[0-9A-F]{16}$/.test(xid)) throw decodeError(`XID as ${JSON.stringify(row.XID)}, not 16 hex digits`);
    return {
      scn: readScn(row.SCN, 'V$LOGMNR_CONTENTS.SCN'),
      startScn: optionalScn(row.START_SCN, 'V$LOGMNR_CONTENTS.START_SCN'),
      commitScn: optionalScn(row.COMMIT_SCN, 'V$LOGMNR_CONTENTS.COMMIT_SCN'),
      timestamp: localTimeToIso(String(row.TS), zone),
      xid,
      operationCode: num(row.OPERATION_CODE, 'V$LOGMNR_CONTENTS.OPERATION_CODE'),
      owner: text(row.SEG_OWNER),
      table: text(row.TABLE_NAME),
      sqlRedo: text(row.SQL_REDO),
      rowId: text(row.ROW_ID),
      rollback: optionalNum(row.ROLLBACK, 'V$LOGMNR_CONTENTS.ROLLBACK') === 1,
      csf: optionalNum(row.CSF, 'V$LOGMNR_CONTENTS.CSF') === 1,
      rsId: String(row.RS_ID ?? '').trim(),
      ssn: optionalNum(row.SSN, 'V$LOGMNR_CONTENTS.SSN') ?? 0,
      thread: num(row.THREAD, 'V$LOGMNR_CONTENTS.THREAD#'),
      username: text(row.USERNAME),
    };
  });
}

export function readClockOffset(rows: readonly Row[]): string {
  const offset = String(rows[0]?.OFFSET ?? '').trim();
  if (!/^[+-]\d{2}:\d{2}$/.test(offset)) throw decodeError(`SYSTIMESTAMP's offset as ${JSON.stringify(rows[0]?.OFFSET)}`);
  return offset;
}

/** columnsStatement's rows; null when there are none (the table is gone). */
export function readColumns(rows: readonly Row[]): OracleColumn[] | null {
  if (rows.length === 0) return null;
  return rows.map((row) => ({
    name: String(row.COLUMN_NAME),
    type: String(row.DATA_TYPE),
    precision: optionalNum(row.DATA_PRECISION, 'DATA_PRECISION'),
    scale: optionalNum(row.DATA_SCALE, 'DATA_SCALE'),
    dataLength: optionalNum(row.DATA_LENGTH, 'DATA_LENGTH') ?? 0,
    charLength: optionalNum(row.CHAR_LENGTH, 'CHAR_LENGTH') ?? 0,
    nullable: String(row.NULLABLE) !== 'N',
    keyOrdinal: optionalNum(row.KEY_ORDINAL, 'KEY_ORDINAL') ?? 0,
  }));
}

export function readContainer(rows: readonly Row[]): { container: string; cdb: boolean } {
  return { container: String(rows[0]?.CON_NAME ?? ''), cdb: String(rows[0]?.CDB ?? 'NO') === 'YES' };
}

/**
 * The facts of setupFacts' statements. `views`: each V_$ view with whether its probe ran; `tablesWithoutLogging`
 * null when not asked (the database logs all columns).
 */
export function readSetupFacts(parts: {
  readonly database: readonly Row[];
  readonly privileges: readonly Row[];
  readonly views: ReadonlyMap<string, boolean>;
  readonly packages: readonly Row[];
  readonly tablesWithoutLogging: readonly Row[] | null;
  readonly progressTable: readonly Row[];
  /** Not asked (no fact) when absent. */
  readonly snapshotMarkersTable?: readonly Row[];
}): OracleSetupFacts {
  const db = parts.database[0] ?? {};
  const cdb = String(db.CDB ?? 'NO') === 'YES';
  const held = new Set(parts.privileges.map((r) => String(r.PRIVILEGE)));
  const packages = new Set(parts.packages.map((r) => String(r.OBJECT_NAME)));
  const missing: string[] = [];
  for (const privilege of SYSTEM_PRIVILEGES) {
    if (privilege === 'SET CONTAINER' && !cdb) continue;
    if (!held.has(privilege)) missing.push(privilege);
  }
  for (const view of VIEWS) if (parts.views.get(view) !== true) missing.push(`SELECT ON ${view}`);
  for (const p of PACKAGES) if (!packages.has(p)) missing.push(`EXECUTE ON ${p}`);
  const allLogged = String(db.SUPPLEMENTAL_LOG_DATA_ALL ?? 'NO') === 'YES';
  const without = allLogged ? [] : (parts.tablesWithoutLogging ?? []).map((r) => `${String(r.OWNER)}.${String(r.TABLE_NAME)}`);
  return {
    archiveLog: String(db.LOG_MODE ?? '') === 'ARCHIVELOG',
    minimalSupplementalLogging: String(db.SUPPLEMENTAL_LOG_DATA_MIN ?? 'NO') !== 'NO',
    allColumnsLogging: allLogged || (parts.tablesWithoutLogging !== null && without.length === 0),
    tablesWithoutLogging: without,
    missingPrivileges: missing,
    cdb,
    user: String(db.SESSION_USER ?? ''),
    progressTable: Number(parts.progressTable[0]?.N ?? 0) > 0,
    ...(parts.snapshotMarkersTable !== undefined ? { snapshotMarkersTable: Number(parts.snapshotMarkersTable[0]?.N ?? 0) > 0 } : {}),
  };
}

export function readProgressRow(rows: readonly Row[]): OracleProgressRow | null {
  const row = rows[0];
  if (row === undefined) return null;
  return {
    lastPublished: row.LAST_PUBLISHED === null || row.LAST_PUBLISHED === undefined ? null : String(row.LAST_PUBLISHED).trim(),
    checkpoint: String(row.CHECKPOINT).trim(),
    seen: String(row.SEEN),
  };
}

// ─── sessions ────────────────────────────────────────────────────────────────────────────────────────────

/** A result set read in batches. */
export interface Cursor {
  next(limit: number): Promise<Row[]>;
  close(): Promise<void>;
}

/** One database session. oracledb in production, a fake in tests. */
export interface OracleSession {
  /** Rows of a query (column names as Oracle gives them, upper case). */
  query(method: string, statement: Statement): Promise<Row[]>;
  /** A statement or PL/SQL block, committed at once. */
  execute(method: string, statement: Statement): Promise<void>;
  /** A query read through a result set. */
  open(method: string, statement: Statement): Promise<Cursor>;
  close(): Promise<void>;
}

const FIXTURES = fileURLToPath(new URL('../../test/fixtures/oracle/', import.meta.url));
const recorded = new Map<string, number>();

/** RECORD=1: one fixture file per query or batch (see the file comment). */
export function recordQuery(method: string, statement: Statement, rows: readonly Row[]): void {
  if (process.env.RECORD !== '1') return;
  const n = (recorded.get(method) ?? 0) + 1;
  recorded.set(method, n);
  mkdirSync(FIXTURES, { recursive: true });
  const body = { method, sql: statement.sql, binds: statement.binds, rows };
  const plain = (_key: string, value: unknown): unknown => (typeof value === 'bigint' ? value.toString() : value instanceof Date ? value.toISOString() : value);
  writeFileSync(`${FIXTURES}recorded-${method}-${n}.json`, `${JSON.stringify(body, plain, 2)}\n`);
}

/** The driver's binds of a statement. */
export function driverBinds(driver: OracledbDriver, statement: Statement): Record<string, oracledb.BindParameter> {
  const binds: Record<string, oracledb.BindParameter> = {};
  for (const b of statement.binds) binds[b.name] = { dir: driver.BIND_IN, type: b.type === 'clob' ? driver.CLOB : driver.STRING, val: b.value };
  return binds;
}

/** One oracledb connection, opened on first use with `setup` run on it; reopened after it is lost. */
export class OracledbSession implements OracleSession {
  private connection: oracledb.Connection | null = null;
  private connecting: Promise<oracledb.Connection> | null = null;
  private driver: OracledbDriver | null = null;

  constructor(
    private readonly config: OracleConnectionConfig,
    private readonly setup: readonly Statement[],
  ) {}

  private async connect(): Promise<oracledb.Connection> {
    if (this.connection !== null) return this.connection;
    this.connecting ??= (async () => {
      const driver = (this.driver ??= await loadOracledb());
      const connection = await driver.getConnection(this.config.attributes);
      try {
        if (this.config.callTimeout !== null) connection.callTimeout = this.config.callTimeout;
        for (const statement of this.setup) await connection.execute(statement.sql, driverBinds(driver, statement));
      } catch (error) {
        await connection.close().catch(() => undefined);
        throw error;
      }
      return connection;
    })().then(
      (connection) => {
        this.connection = connection;
        this.connecting = null;
        return connection;
      },
      (error: unknown) => {
        this.connecting = null;
        throw error;
      },
    );
    return this.connecting;
  }

  /** A lost connection is dropped, so that the next call opens a new one. */
  private forgetIfLost(error: unknown): never {
    const lost = oraNumbers(error).some((n) => [28, 1012, 3113, 3114, 3135].includes(n)) || /\bNJS-(500|501|503|521)\b/.test(String((error as { code?: unknown })?.code ?? (error as Error)?.message));
    if (lost) {
      const connection = this.connection;
      this.connection = null;
      void connection?.close().catch(() => undefined);
    }
    throw error;
  }

  private options(): oracledb.ExecuteOptions {
    const driver = this.driver!;
    return {
      outFormat: driver.OUT_FORMAT_OBJECT,
      // SEEN is a CLOB: read as text, as every other value here (SCNs are TO_CHAR'd in the SQL).
      fetchTypeHandler: (metadata) => (metadata.dbType === driver.DB_TYPE_CLOB || metadata.dbType === driver.DB_TYPE_NCLOB ? { type: driver.STRING } : undefined),
    };
  }

  async query(method: string, statement: Statement): Promise<Row[]> {
    const connection = await this.connect();
    try {
      const result = await connection.execute<Row>(statement.sql, driverBinds(this.driver!, statement), this.options());
      const rows = result.rows ?? [];
      recordQuery(method, statement, rows);
      return rows;
    } catch (error) {
      return this.forgetIfLost(error);
    }
  }

  async execute(method: string, statement: Statement): Promise<void> {
    const connection = await this.connect();
    try {
      await connection.execute(statement.sql, driverBinds(this.driver!, statement), { autoCommit: true });
      recordQuery(method, statement, []);
    } catch (error) {
      this.forgetIfLost(error);
    }
  }

  async open(method: string, statement: Statement): Promise<Cursor> {
    const connection = await this.connect();
    let resultSet: oracledb.ResultSet<Row>;
    try {
      const result = await connection.execute<Row>(statement.sql, driverBinds(this.driver!, statement), { ...this.options(), resultSet: true, fetchArraySize: 1000 });
      resultSet = result.resultSet!;
    } catch (error) {
      return this.forgetIfLost(error);
    }
    let closed = false;
    return {
      next: async (limit) => {
        if (closed) return [];
        try {
          const rows = await resultSet.getRows(limit);
          recordQuery(method, statement, rows);
          return rows;
        } catch (error) {
          return this.forgetIfLost(error);
        }
      },
      close: async () => {
        if (closed) return;
        closed = true;
        await resultSet.close().catch(() => undefined);
      },
    };
  }

  async close(): Promise<void> {
    const connection = this.connection ?? (await this.connecting?.catch(() => null)) ?? null;
    this.connection = null;
    await connection?.close().catch(() => undefined);
  }
}

// ─── the reader ──────────────────────────────────────────────────────────────────────────────────────────

export interface OracleLogMinerReaderOptions {
  readonly url: string;
  readonly site: string;
  /** Tests pass fakes; by default oracledb sessions on the URL (the miner's moved to the root in a CDB). */
  readonly sessions?: { readonly catalog: OracleSession; readonly miner: OracleSession };
}

/** ORA-01307: no LogMiner session is active (END_LOGMNR after a failed start). */
const NO_LOGMINER_SESSION = 1307;

export class OracleLogMinerReader implements LogMinerReader {
  private readonly url: string;
  private readonly site: string;
  private readonly zone: string | null;
  private catalogSession: OracleSession | null;
  private minerSession: OracleSession | null;
  /** The PDB the URL's service is in (mined rows are filtered to it), null when not multitenant or in the root. */
  private pdb: string | null | undefined = undefined;

  constructor(options: OracleLogMinerReaderOptions) {
    this.url = options.url;
    this.site = options.site;
    let zone: string | null = null;
    try {
      zone = new URL(options.url).searchParams.get('timeZone');
    } catch {
      zone = null;
    }
    this.zone = zone;
    this.catalogSession = options.sessions?.catalog ?? null;
    this.minerSession = options.sessions?.miner ?? null;
  }

  private describe(error: unknown): Error {
    return describeOracleError(error, this.url, this.site);
  }

  private catalog(): OracleSession {
    this.catalogSession ??= new OracledbSession(oracledbConfig(this.url), [sessionSetupStatement()]);
    return this.catalogSession;
  }

  /** The container of the URL, once: a PDB of a CDB makes the miner session move to the root. */
  private async container(): Promise<string | null> {
    if (this.pdb !== undefined) return this.pdb;
    const { container, cdb } = readContainer(await this.catalog().query('container', containerStatement()));
    this.pdb = cdb && container !== 'CDB$ROOT' ? container : null;
    return this.pdb;
  }

  private async miner(): Promise<OracleSession> {
    const pdb = await this.container();
    this.minerSession ??= new OracledbSession(oracledbConfig(this.url), pdb === null ? [sessionSetupStatement()] : [rootContainerStatement(), sessionSetupStatement()]);
    return this.minerSession;
  }

  private async run<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      throw this.describe(error);
    }
  }

  currentScn(): Promise<Scn> {
    return this.run(async () => readCurrentScn(await (await this.miner()).query('currentScn', currentScnStatement())));
  }

  oldestOpenTransactionScn(): Promise<Scn | null> {
    return this.run(async () => {
      const miner = await this.miner();
      const pdb = await this.container();
      return readOldestOpenTransaction(await miner.query('oldestOpenTransaction', oldestOpenTransactionStatement(pdb)));
    });
  }

  threads(): Promise<RedoThread[]> {
    return this.run(async () => readThreads(await (await this.miner()).query('threads', threadsStatement())));
  }

  logs(fromScn: Scn): Promise<RedoLog[]> {
    return this.run(async () => {
      const miner = await this.miner();
      const online = await miner.query('onlineLogs', onlineLogsStatement(fromScn));
      const archived = await miner.query('archivedLogs', archivedLogsStatement(fromScn));
      return readLogs(online, archived);
    });
  }

  mine(logs: readonly RedoLog[], fromScn: Scn, toScn: Scn, owners: readonly string[] | null): Promise<MiningSession> {
    return this.run(async () => {
      if (logs.length === 0 || toScn <= fromScn) return { next: async () => [], end: async () => undefined };
      const miner = await this.miner();
      const pdb = await this.container();
      const zone = this.zone ?? readClockOffset(await miner.query('clockOffset', clockOffsetStatement()));
      let cursor: Cursor;
      try {
        await miner.execute('addLogfiles', addLogfilesStatement(logs));
        await miner.execute('startLogminer', startLogminerStatement(fromScn, toScn));
        cursor = await miner.open('mine', contentsStatement(fromScn, toScn, owners, pdb));
      } catch (error) {
        await miner.execute('endLogminer', endLogminerStatement()).catch(() => undefined);
        throw error;
      }
      let ended = false;
      return {
        next: (limit: number) => this.run(async () => (ended ? [] : readMinedRows(await cursor.next(limit), zone))),
        end: () =>
          this.run(async () => {
            if (ended) return;
            ended = true;
            await cursor.close();
            try {
              await miner.execute('endLogminer', endLogminerStatement());
            } catch (error) {
              if (!oraNumbers(error).includes(NO_LOGMINER_SESSION)) throw error;
            }
          }),
      };
    });
  }

  columns(owner: string, table: string): Promise<OracleColumn[] | null> {
    return this.run(async () => readColumns(await this.catalog().query('columns', columnsStatement(owner, table))));
  }

  setupFacts(owners: readonly string[] | null): Promise<OracleSetupFacts> {
    return this.run(async () => {
      const miner = await this.miner();
      const database = await miner.query('setupFacts', databaseFactsStatement());
      const privileges = await miner.query('setupFacts', sessionPrivilegesStatement());
      const views = new Map<string, boolean>();
      for (const view of VIEWS) {
        views.set(
          view,
          await miner.query('setupFacts', viewProbeStatement(view)).then(
            () => true,
            () => false,
          ),
        );
      }
      const packages = await miner.query('setupFacts', packagesStatement());
      const allLogged = String(database[0]?.SUPPLEMENTAL_LOG_DATA_ALL ?? 'NO') === 'YES';
      const catalog = this.catalog();
      const tablesWithoutLogging = allLogged ? null : await catalog.query('setupFacts', tablesWithoutLoggingStatement(owners));
      const progressTable = await catalog.query('setupFacts', progressTableStatement());
      const snapshotMarkersTable = await catalog.query('setupFacts', snapshotMarkersTableStatement());
      return readSetupFacts({ database, privileges, views, packages, tablesWithoutLogging, progressTable, snapshotMarkersTable });
    });
  }

  ensureCaptureProgress(): Promise<void> {
    return this.run(() => this.catalog().execute('ensureCaptureProgress', ensureCaptureProgressStatement()));
  }

  readProgress(site: string): Promise<OracleProgressRow | null> {
    return this.run(async () => readProgressRow(await this.catalog().query('readProgress', readProgressStatement(site))));
  }

  writeProgress(site: string, row: OracleProgressRow): Promise<void> {
    return this.run(() => this.catalog().execute('writeProgress', writeProgressStatement(site, row)));
  }

  async close(): Promise<void> {
    const sessions = [this.minerSession, this.catalogSession];
    this.minerSession = null;
    this.catalogSession = null;
    for (const session of sessions) await session?.close().catch(() => undefined);
  }
}
