/**
 * What an Oracle database needs before sitesync can capture from it, said as one line that names what is
 * missing and the exact SQL that fixes it. The facts come from the server (LogMinerReader.setupFacts,
 * oracledb-logminer-reader.ts runs the queries); deciding is pure, so every message is tested without Oracle.
 *
 * Capture needs, in this order (the first missing one stops it):
 * 1. ARCHIVELOG mode (V$DATABASE.LOG_MODE): without it a filled online log is overwritten, not archived, and
 *    redo capture has not read yet is gone. Turning it on needs the instance mounted, not open, so a restart:
 *    SHUTDOWN IMMEDIATE; STARTUP MOUNT; ALTER DATABASE ARCHIVELOG; ALTER DATABASE OPEN; (as SYSDBA, in the root
 *    of a CDB: the log mode is the whole database's).
 * 2. Minimal supplemental logging (V$DATABASE.SUPPLEMENTAL_LOG_DATA_MIN): without it LogMiner cannot even
 *    tell which row a change belongs to (ALTER DATABASE ADD SUPPLEMENTAL LOG DATA;).
 * 3. The capture user's LogMiner privileges. Oracle's LogMiner documentation asks for the LOGMINING privilege
 *    and EXECUTE_CATALOG_ROLE (DBMS_LOGMNR, V$LOGMNR_CONTENTS); Debezium's documented user adds CREATE SESSION,
 *    SET CONTAINER, SELECT ANY TRANSACTION, SELECT_CATALOG_ROLE and SELECT on the V_$ views it reads. sitesync
 *    needs the same set (privilegeGrants lists it). In a multitenant database (CDB) LogMiner only runs in the
 *    root (ADD_LOGFILE refuses inside a PDB), so the user must be a common user (`C##…`) with every grant
 *    given CONTAINER=ALL; the reader mines in CDB$ROOT and reads tables in the PDB the URL names.
 * 4. ALL COLUMNS supplemental logging, for the database or for each captured table: without it an UPDATE's
 *    SQL_REDO names only the changed columns and the key, and the row's other old values are unknown.
 * 5. SITESYNC.APPLY_PROGRESS: capture recognises a transaction applied here from another site by its change
 *    to that table, and drops it (a relayed write); without it every applied transaction would travel back.
 *    It needs ALL COLUMNS logging like any captured table (4. lists it when it lacks it): the sink's UPDATE of
 *    it changes POSITION and times, not SOURCE, and capture must read SOURCE from the redo.
 *
 * And for online snapshots from the site (a warning only: capture runs without them): SITESYNC.SNAPSHOTS and
 * SITESYNC.SNAPSHOT_MARKERS (oracle-snapshot-control.ts), which `sitesync setup` creates through the capture URL
 * (SNAPSHOT_TABLES_DDL) and which a snapshot control also creates the first time it needs them. A marker is a
 * row of SNAPSHOT_MARKERS (or several, MARKER_PIECE_CHARS characters each, for a long one): capture reads its
 * insert from the redo (mined-stream.ts) as the snapshot's marker.
 */
import { SitesyncError } from '../../src/errors.ts';
import type { OracleSetupFacts } from './logminer-reader.ts';

/** The bookkeeping schema (an Oracle user): upper case, as Oracle stores unquoted names. */
export const ORACLE_BOOKKEEPING_OWNER = 'SITESYNC';

export interface SetupProblem {
  readonly problem: string;
  readonly fix: string;
  /** error: capture cannot run; warning: it runs, but should be looked at. */
  readonly severity: 'error' | 'warning';
}

export const ARCHIVELOG_SQL = 'SHUTDOWN IMMEDIATE; STARTUP MOUNT; ALTER DATABASE ARCHIVELOG; ALTER DATABASE OPEN;';
export const MINIMAL_LOGGING_SQL = 'ALTER DATABASE ADD SUPPLEMENTAL LOG DATA;';
export const DATABASE_ALL_COLUMNS_SQL = 'ALTER DATABASE ADD SUPPLEMENTAL LOG DATA (ALL) COLUMNS;';

/** sitesync's snapshots at the site, one row each (oracle-snapshot-control.ts); never captured. */
export const SNAPSHOTS_TABLE = 'SNAPSHOTS';
/** The snapshot markers: an insert here, read from the redo, is a marker (mined-stream.ts), never a row change. */
export const SNAPSHOT_MARKERS_TABLE = 'SNAPSHOT_MARKERS';
/**
 * Characters of a marker per row of SNAPSHOT_MARKERS: its CONTENT is a VARCHAR2(4000 BYTE), which LogMiner's
 * SQL_REDO carries whole (CSF rows past 4000 characters of statement); markers are written in ASCII only (JSON
 * with \uXXXX escapes), so a character is a byte. A marker of a repair names up to MAX_MARKER_KEYS (10,000)
 * keys and runs to hundreds of kilobytes: it goes in as many rows as it needs, numbered PIECE 0..PIECES-1.
 */
export const MARKER_PIECE_CHARS = 4000;

/** `"name"`, a double quote doubled (Oracle's quoted identifiers are case-sensitive). */
export function quoteIdentifier(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export function tableAllColumnsSql(owner: string, table: string): string {
  return `ALTER TABLE ${quoteIdentifier(owner)}.${quoteIdentifier(table)} ADD SUPPLEMENTAL LOG DATA (ALL) COLUMNS;`;
}

/** `OWNER.TABLE` → [owner, table]: the first dot splits (an Oracle owner holding a dot is not supported here). */
function splitTable(name: string): [string, string] {
  const dot = name.indexOf('.');
  return dot < 0 ? [ORACLE_BOOKKEEPING_OWNER, name] : [name.slice(0, dot), name.slice(dot + 1)];
}

/**
 * Every privilege the capture user needs, as the names setupFacts reports missing ones by (`LOGMINING`,
 * `SELECT ON V_$LOGMNR_CONTENTS`, `EXECUTE ON DBMS_LOGMNR`, `SELECT_CATALOG_ROLE`…). SET CONTAINER only
 * matters in a CDB.
 */
export const SYSTEM_PRIVILEGES = ['CREATE SESSION', 'SET CONTAINER', 'LOGMINING', 'SELECT ANY TRANSACTION'] as const;
export const ROLES = ['SELECT_CATALOG_ROLE', 'EXECUTE_CATALOG_ROLE'] as const;
export const VIEWS = ['V_$DATABASE', 'V_$THREAD', 'V_$LOG', 'V_$LOGFILE', 'V_$ARCHIVED_LOG', 'V_$LOGMNR_LOGS', 'V_$LOGMNR_CONTENTS', 'V_$TRANSACTION'] as const;
export const PACKAGES = ['DBMS_LOGMNR'] as const;

export const REQUIRED_PRIVILEGES: readonly string[] = [
  ...SYSTEM_PRIVILEGES,
  ...ROLES,
  ...VIEWS.map((v) => `SELECT ON ${v}`),
  ...PACKAGES.map((p) => `EXECUTE ON ${p}`),
];

/** The GRANT for one privilege name (as REQUIRED_PRIVILEGES spells it), to `user`, CONTAINER=ALL in a CDB. */
export function grantSql(privilege: string, user: string, cdb: boolean): string {
  const m = /^(SELECT|EXECUTE) ON (.+)$/.exec(privilege);
  const what = m ? `${m[1]} ON SYS.${m[2]}` : privilege;
  return `GRANT ${what} TO ${user}${cdb ? ' CONTAINER=ALL' : ''};`;
}

/** The GRANTs for the privileges a user lacks, in REQUIRED_PRIVILEGES order, as one line. */
export function privilegeGrants(missing: readonly string[], user: string, cdb: boolean): string {
  const order = (p: string): number => {
    const i = REQUIRED_PRIVILEGES.indexOf(p);
    return i < 0 ? REQUIRED_PRIVILEGES.length : i;
  };
  return [...missing].sort((a, b) => order(a) - order(b)).map((p) => grantSql(p, user, cdb)).join(' ');
}

/** A user name as a GRANT names it: plain when Oracle would store it so (upper case, simple), quoted otherwise. */
function grantee(user: string): string {
  return /^[A-Z][A-Z0-9_$#]*$/.test(user) ? user : quoteIdentifier(user);
}

export const COMMON_USER_SQL =
  'CREATE USER C##SITESYNC IDENTIFIED BY "<password>" CONTAINER=ALL; ' +
  `${privilegeGrants(REQUIRED_PRIVILEGES, 'C##SITESYNC', true)} ALTER USER C##SITESYNC SET CONTAINER_DATA=ALL CONTAINER=CURRENT;`;

export const APPLY_PROGRESS_DDL =
  `CREATE TABLE ${ORACLE_BOOKKEEPING_OWNER}.APPLY_PROGRESS (SOURCE VARCHAR2(40) PRIMARY KEY, SOURCE_KIND VARCHAR2(20) NOT NULL, ` +
  'POSITION VARCHAR2(64) NOT NULL, COMMIT_TIME_MICROS NUMBER(20) NOT NULL, APPLIED_TRANSACTIONS NUMBER(20) NOT NULL); ' +
  tableAllColumnsSql(ORACLE_BOOKKEEPING_OWNER, 'APPLY_PROGRESS');

/**
 * The snapshot tables, each statement run only when what it makes is missing (ORA-00955, ORA-32588 otherwise):
 * SNAPSHOTS (PostgreSQL's sitesync.snapshots, times in UTC) and SNAPSHOT_MARKERS with ALL COLUMNS logging.
 */
export const SNAPSHOT_TABLES_DDL: readonly string[] = [
  `CREATE TABLE ${quoteIdentifier(ORACLE_BOOKKEEPING_OWNER)}.${quoteIdentifier(SNAPSHOTS_TABLE)} (` +
    '"ID" VARCHAR2(64 BYTE) NOT NULL PRIMARY KEY, "TABLE_NAME" NVARCHAR2(400) NOT NULL, "TARGETS" NVARCHAR2(2000), ' +
    '"NEXT_CHUNK" NUMBER(10) DEFAULT 0 NOT NULL, "ROWS_SENT" NUMBER(19) DEFAULT 0 NOT NULL, "ESTIMATED_ROWS" NUMBER(19) NOT NULL, ' +
    `"STATE" VARCHAR2(16 BYTE) DEFAULT 'running' NOT NULL, "STARTED_AT" TIMESTAMP(6) NOT NULL, "UPDATED_AT" TIMESTAMP(6) NOT NULL)`,
  `CREATE TABLE ${quoteIdentifier(ORACLE_BOOKKEEPING_OWNER)}.${quoteIdentifier(SNAPSHOT_MARKERS_TABLE)} (` +
    '"SNAPSHOT_ID" VARCHAR2(64 BYTE) NOT NULL, "CHUNK" NUMBER(10) NOT NULL, "PIECE" NUMBER(10) NOT NULL, "PIECES" NUMBER(10) NOT NULL, ' +
    `"CONTENT" VARCHAR2(${MARKER_PIECE_CHARS} BYTE) NOT NULL, PRIMARY KEY ("SNAPSHOT_ID", "CHUNK", "PIECE"))`,
  tableAllColumnsSql(ORACLE_BOOKKEEPING_OWNER, SNAPSHOT_MARKERS_TABLE).replace(/;$/, ''),
];

/** Every problem of a database, blocking ones first, each with its fix. */
export function setupProblems(facts: OracleSetupFacts): SetupProblem[] {
  const problems: SetupProblem[] = [];
  const user = grantee(facts.user);
  if (!facts.archiveLog) {
    problems.push({
      severity: 'error',
      problem: 'the database is not in ARCHIVELOG mode, so redo not yet read is overwritten when its online log is reused',
      fix: `as SYSDBA${facts.cdb ? ' in CDB$ROOT' : ''}, with a restart: ${ARCHIVELOG_SQL}`,
    });
  }
  if (!facts.minimalSupplementalLogging) {
    problems.push({
      severity: 'error',
      problem: 'minimal supplemental logging is off, so LogMiner cannot tell which row a change belongs to',
      fix: `as SYSDBA${facts.cdb ? ' in CDB$ROOT' : ''}: ${MINIMAL_LOGGING_SQL}`,
    });
  }
  if (facts.cdb && !/^C##/i.test(facts.user)) {
    problems.push({
      severity: 'error',
      problem: `this is a multitenant database (CDB) and capture user ${facts.user} is not a common user: LogMiner only runs in CDB$ROOT`,
      fix: `as SYSDBA in CDB$ROOT: ${COMMON_USER_SQL} and put C##SITESYNC in the site's Oracle URL`,
    });
  } else if (facts.missingPrivileges.length > 0) {
    problems.push({
      severity: 'error',
      problem: `capture user ${facts.user} lacks ${facts.missingPrivileges.join(', ')}, which LogMiner needs`,
      fix: `as SYSDBA${facts.cdb ? ' in CDB$ROOT' : ''}: ${privilegeGrants(facts.missingPrivileges, user, facts.cdb)}`,
    });
  }
  if (!facts.allColumnsLogging) {
    if (facts.tablesWithoutLogging.length === 0) {
      problems.push({
        severity: 'error',
        problem: 'supplemental logging of all columns is off, so an update does not log the old values of the columns it leaves alone',
        fix: `${DATABASE_ALL_COLUMNS_SQL} (or, per captured table, ALTER TABLE "<OWNER>"."<TABLE>" ADD SUPPLEMENTAL LOG DATA (ALL) COLUMNS;)`,
      });
    } else {
      const names = facts.tablesWithoutLogging;
      problems.push({
        severity: 'error',
        problem: `table${names.length > 1 ? 's' : ''} ${names.join(', ')} ${names.length > 1 ? 'have' : 'has'} no supplemental logging of all columns, so an update does not log the old values of the columns it leaves alone`,
        fix: `${names.map((n) => tableAllColumnsSql(...splitTable(n))).join(' ')} (or for the whole database: ${DATABASE_ALL_COLUMNS_SQL})`,
      });
    }
  }
  if (!facts.progressTable) {
    problems.push({
      severity: 'error',
      problem: `${ORACLE_BOOKKEEPING_OWNER}.APPLY_PROGRESS is missing (capture recognises writes applied from other sites by it and would send them back out)`,
      fix: `run sitesync setup for the site (it creates it), or: ${APPLY_PROGRESS_DDL}`,
    });
  }
  if (facts.snapshotMarkersTable === false) {
    problems.push({
      severity: 'warning',
      problem: `${ORACLE_BOOKKEEPING_OWNER}.${SNAPSHOT_MARKERS_TABLE} is missing (online snapshots from this site write their markers there; capture runs without it)`,
      fix: `run sitesync setup for the site with its capture URL (it creates it), or: ${SNAPSHOT_TABLES_DDL.map((s) => `${s};`).join(' ')}`,
    });
  }
  return problems;
}

function errorFor(site: string, facts: OracleSetupFacts, problem: SetupProblem): SitesyncError {
  const code = /lacks|not a common user/.test(problem.problem) ? 'SITESYNC_ERR_PERMISSION' : 'SITESYNC_ERR_CONFIG';
  return new SitesyncError(code, `Oracle of site ${site} (user ${facts.user}): ${problem.problem}; fix: ${problem.fix}`);
}

/**
 * Throws, for the first thing capture cannot run without (ARCHIVELOG, minimal supplemental logging, the
 * LogMiner privileges, ALL COLUMNS logging, SITESYNC.APPLY_PROGRESS), a SitesyncError whose one line names it
 * and its SQL fix.
 */
export function assertCaptureReady(facts: OracleSetupFacts, site: string): void {
  const blocking = setupProblems(facts).filter((p) => p.severity === 'error');
  if (blocking.length > 0) throw errorFor(site, facts, blocking[0]!);
}
