/**
 * What a SQL Server database needs before sitesync can capture from it or apply to it, said as one line that
 * names what is missing and the exact T-SQL that fixes it. The facts come from the server
 * (CdcReader.setupFacts, mssql-cdc-reader.ts runs the queries); deciding is pure, so every message is tested
 * without a server.
 *
 * Capture needs, in this order (the first missing one stops it):
 * 1. CDC enabled on the database (sys.databases.is_cdc_enabled): `EXEC sys.sp_cdc_enable_db`, by a sysadmin.
 * 2. The login in db_owner (CDC's procedures and the cdc schema's tables need it).
 * 3. The SQL Server Agent running: the capture job that moves the log into the change tables is an Agent job.
 *    Unknown (no VIEW SERVER STATE, Azure SQL where the scan runs without an Agent) is not an error.
 * 4. sitesync.apply_progress captured as `sitesync_apply_progress`: capture recognises a transaction applied
 *    here from another site by its change to that table, and drops it (a relayed write); without the instance
 *    every applied transaction would travel back out.
 * Tables without a capture instance are not an error (a site may capture some tables only), nor is a short
 * retention; setupProblems lists both, as warnings, with their fix.
 *
 * Snapshots (sqlserver-snapshot-control.ts) need two more tables in the sitesync schema: `snapshots` (one row
 * per snapshot) and `snapshot_markers`, captured as `sitesync_snapshot_markers` (an insert there is a marker in
 * the log: change-stream.ts). `sitesync setup` creates both and enables CDC on the markers table with the
 * capture login (a db_owner, which capture needs anyway); when it cannot, snapshotMarkersProblem names what is
 * missing, as a warning: capture runs without it, only snapshots of the site cannot start.
 */
import { SitesyncError } from '../../src/errors.ts';
import { BOOKKEEPING_SCHEMA } from '../../src/config/names.ts';
import type { SetupFacts } from './cdc-reader.ts';
import { SNAPSHOT_MARKERS_TABLE } from './capture-instances.ts';

/** The capture instance of sitesync.apply_progress (fixed: capture recognises relayed writes by it). */
export const PROGRESS_CAPTURE_INSTANCE = `${BOOKKEEPING_SCHEMA}_apply_progress`;

/** A day: a retention shorter than this loses changes to any capture outage over a night. */
export const MIN_RETENTION_MINUTES = 24 * 60;

export interface SetupProblem {
  readonly problem: string;
  readonly fix: string;
  /** error: capture (or apply) cannot run; warning: it runs, but should be looked at. */
  readonly severity: 'error' | 'warning';
}

/** `N'…'`, a quote doubled. */
function unicodeLiteral(text: string): string {
  return `N'${text.replace(/'/g, "''")}'`;
}

function bracket(name: string): string {
  return `[${name.replace(/]/g, ']]')}]`;
}

export function enableDatabaseSql(database: string): string {
  return `USE ${bracket(database)}; EXEC sys.sp_cdc_enable_db;`;
}

/** The capture instance name SQL Server itself would choose: `<schema>_<table>`. */
export function defaultCaptureInstance(schema: string, table: string): string {
  return `${schema}_${table}`;
}

export function enableTableSql(schema: string, table: string, captureInstance = defaultCaptureInstance(schema, table)): string {
  return (
    `EXEC sys.sp_cdc_enable_table @source_schema = ${unicodeLiteral(schema)}, @source_name = ${unicodeLiteral(table)}, ` +
    `@role_name = NULL, @capture_instance = ${unicodeLiteral(captureInstance)};`
  );
}

export const ENABLE_PROGRESS_CAPTURE_SQL = enableTableSql(BOOKKEEPING_SCHEMA, 'apply_progress', PROGRESS_CAPTURE_INSTANCE);

/** One row per snapshot of this site (the columns and meaning of PostgreSQL's sitesync.snapshots). */
export const SNAPSHOTS_TABLE = 'snapshots';
/** The capture instance of sitesync.snapshot_markers (fixed: capture reads its inserts as markers). */
export const MARKERS_CAPTURE_INSTANCE = `${BOOKKEEPING_SCHEMA}_${SNAPSHOT_MARKERS_TABLE}`;
export const ENABLE_MARKERS_CAPTURE_SQL = enableTableSql(BOOKKEEPING_SCHEMA, SNAPSHOT_MARKERS_TABLE, MARKERS_CAPTURE_INSTANCE);

/**
 * The schema and the two snapshot tables, each created only when missing. Ids are compared in a binary
 * collation; times are UTC (SYSUTCDATETIME()); a marker's content is the JSON of snapshot-marker.ts.
 */
export const SNAPSHOT_TABLES_SQL = [
  `IF SCHEMA_ID(N'${BOOKKEEPING_SCHEMA}') IS NULL EXEC(N'CREATE SCHEMA ${bracket(BOOKKEEPING_SCHEMA)}');`,
  `IF OBJECT_ID(N'${BOOKKEEPING_SCHEMA}.${SNAPSHOTS_TABLE}', N'U') IS NULL`,
  `CREATE TABLE ${bracket(BOOKKEEPING_SCHEMA)}.${bracket(SNAPSHOTS_TABLE)} (`,
  '  [id] varchar(64) COLLATE Latin1_General_BIN2 NOT NULL PRIMARY KEY,',
  '  [table_name] nvarchar(200) COLLATE Latin1_General_100_BIN2 NOT NULL,',
  '  [targets] nvarchar(max) NULL,',
  '  [next_chunk] int NOT NULL DEFAULT 0,',
  '  [rows_sent] bigint NOT NULL DEFAULT 0,',
  '  [estimated_rows] bigint NOT NULL,',
  "  [state] varchar(16) COLLATE Latin1_General_BIN2 NOT NULL DEFAULT 'running',",
  '  [started_at] datetime2(6) NOT NULL,',
  '  [updated_at] datetime2(6) NOT NULL',
  ');',
  `IF OBJECT_ID(N'${BOOKKEEPING_SCHEMA}.${SNAPSHOT_MARKERS_TABLE}', N'U') IS NULL`,
  `CREATE TABLE ${bracket(BOOKKEEPING_SCHEMA)}.${bracket(SNAPSHOT_MARKERS_TABLE)} (`,
  '  [id] bigint IDENTITY(1,1) NOT NULL PRIMARY KEY,',
  '  [content] nvarchar(max) NOT NULL',
  ');',
].join('\n');

/** What `sitesync setup` found of the snapshot tables (sqlserver-snapshot-control.ts prepare()). */
export interface SnapshotMarkersState {
  readonly cdcEnabled: boolean;
  /** sitesync.snapshot_markers exists and has its capture instance. */
  readonly captured: boolean;
  /** Why enabling CDC on it failed, when it did (the server's own line). */
  readonly error: string | null;
}

/**
 * The problem of a site whose snapshot markers are not captured (null when they are, or when CDC is off on the
 * database, which setupProblems already reports): a warning, since capture runs without them; only snapshots
 * of the site's tables cannot start.
 */
export function snapshotMarkersProblem(database: string, state: SnapshotMarkersState): SetupProblem | null {
  if (state.captured || !state.cdcEnabled) return null;
  const why = state.error === null ? '' : ` (enabling it failed: ${state.error})`;
  return {
    severity: 'warning',
    problem: `${BOOKKEEPING_SCHEMA}.${SNAPSHOT_MARKERS_TABLE} has no capture instance ${MARKERS_CAPTURE_INSTANCE}${why}, so snapshots of this site's tables cannot start (capture runs without it)`,
    fix: `as a db_owner: USE ${bracket(database)}; ${ENABLE_MARKERS_CAPTURE_SQL} (sitesync setup creates the table; it also does this when its capture login is a db_owner)`,
  };
}

export function retentionSql(minutes: number): string {
  return `EXEC sys.sp_cdc_change_job @job_type = N'cleanup', @retention = ${minutes};`;
}

export const START_AGENT_FIX =
  "start the SQL Server Agent (Linux: sudo /opt/mssql/bin/mssql-conf set sqlagent.enabled true, then restart mssql-server; " +
  'Docker: MSSQL_AGENT_ENABLED=true; Windows: start the SQL Server Agent service), then check that the capture job runs: EXEC sys.sp_cdc_help_jobs;';

export function dbOwnerSql(database: string): string {
  return `USE ${bracket(database)}; ALTER ROLE db_owner ADD MEMBER [<sitesync user>];`;
}

/** `schema.table` → [schema, table] (the first dot splits: sitesync's own names have none in the schema). */
function splitTable(name: string): [string, string] {
  const dot = name.indexOf('.');
  return dot < 0 ? ['dbo', name] : [name.slice(0, dot), name.slice(dot + 1)];
}

/** Every problem of a database, blocking ones first, each with its fix. */
export function setupProblems(facts: SetupFacts): SetupProblem[] {
  const problems: SetupProblem[] = [];
  const db = facts.database;
  if (!facts.cdcEnabled) {
    problems.push({ severity: 'error', problem: `change data capture is not enabled on database ${db}`, fix: `as a sysadmin: ${enableDatabaseSql(db)}` });
  }
  if (!facts.isDbOwner) {
    problems.push({ severity: 'error', problem: `the sitesync login is not in db_owner of database ${db} (CDC's procedures and change tables need it)`, fix: dbOwnerSql(db) });
  }
  if (facts.agentRunning === false) {
    problems.push({ severity: 'error', problem: 'the SQL Server Agent is not running, so the CDC capture job never writes the change tables', fix: START_AGENT_FIX });
  } else if (facts.agentRunning === null) {
    problems.push({
      severity: 'warning',
      problem: 'whether the SQL Server Agent runs cannot be told (no VIEW SERVER STATE, or Azure SQL)',
      fix: 'make sure the CDC capture job runs: EXEC sys.sp_cdc_help_jobs; (or GRANT VIEW SERVER STATE TO [<sitesync login>]; so that sitesync can check)',
    });
  }
  if (!facts.bookkeepingReady) {
    problems.push({
      severity: 'error',
      problem: `the ${BOOKKEEPING_SCHEMA} schema or its tables are missing in database ${db}`,
      fix: `run sitesync setup for the site (it creates them), or let the sitesync login CREATE SCHEMA and CREATE TABLE in ${db}`,
    });
  }
  if (!facts.progressCaptured) {
    problems.push({
      severity: 'error',
      problem: `${BOOKKEEPING_SCHEMA}.apply_progress has no capture instance ${PROGRESS_CAPTURE_INSTANCE} (capture would send applied transactions back out)`,
      fix: `USE ${bracket(db)}; ${ENABLE_PROGRESS_CAPTURE_SQL}`,
    });
  }
  for (const name of facts.uncapturedTables) {
    const [schema, table] = splitTable(name);
    problems.push({ severity: 'warning', problem: `table ${name} has no capture instance: its changes are not captured`, fix: `USE ${bracket(db)}; ${enableTableSql(schema, table)}` });
  }
  if (facts.retentionMinutes !== null && facts.retentionMinutes < MIN_RETENTION_MINUTES) {
    problems.push({
      severity: 'warning',
      problem: `the CDC cleanup job keeps changes ${facts.retentionMinutes} minutes only: a capture outage longer than that loses changes`,
      fix: `USE ${bracket(db)}; ${retentionSql(Math.max(MIN_RETENTION_MINUTES, 3 * 24 * 60))}`,
    });
  }
  return problems;
}

/** One line: `<where>: <problem>; fix: <fix>`. */
function line(site: string, facts: SetupFacts, problem: SetupProblem): string {
  return `SQL Server of site ${site} (database ${facts.database}): ${problem.problem}; fix: ${problem.fix}`;
}

function errorFor(site: string, facts: SetupFacts, problem: SetupProblem): SitesyncError {
  const code = problem.problem.includes('db_owner') ? 'SITESYNC_ERR_PERMISSION' : 'SITESYNC_ERR_CONFIG';
  return new SitesyncError(code, line(site, facts, problem));
}

/**
 * Throws, for the first thing capture cannot run without (CDC on the database, db_owner, the Agent, the
 * capture instance of sitesync.apply_progress), a SitesyncError whose one line names it and its T-SQL fix.
 * The bookkeeping schema is not required here: capture creates its own capture_progress table; apply_progress
 * must exist for its capture instance to, which `progressCaptured` already says.
 */
export function assertCaptureReady(facts: SetupFacts, site: string): void {
  const blocking = setupProblems(facts).filter((p) => p.severity === 'error' && !p.problem.includes(`${BOOKKEEPING_SCHEMA} schema`));
  if (blocking.length > 0) throw errorFor(site, facts, blocking[0]!);
}

/**
 * The apply side: a database that also captures (CDC enabled) must capture sitesync.apply_progress, or every
 * transaction applied here would be captured again and sent back out. A database without CDC is a pure target
 * and needs nothing of CDC; the sink creates its own tables (and reports its own rights).
 */
export function assertApplyReady(facts: SetupFacts, site: string): void {
  if (!facts.cdcEnabled) return;
  const missing = setupProblems(facts).find((p) => p.severity === 'error' && p.problem.includes(PROGRESS_CAPTURE_INSTANCE));
  if (missing) throw errorFor(site, facts, missing);
}
