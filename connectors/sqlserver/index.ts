/**
 * The SQL Server connector: capture from CDC change tables, apply with a progress row written first in every
 * transaction (the loop marker capture drops). Experimental: its logic is proven here against a simulator of
 * CDC (test/helpers/sqlserver-simulator.ts) by property tests, the conformance suite and a mesh with
 * PostgreSQL; it has not yet run against a live SQL Server in this project's CI (README, Databases).
 *
 * What touches the server is thin and kept apart, in `SqlServerIo`: the CDC reader (mssql-cdc-reader.ts), the
 * apply connection (mssql-apply-connection.ts) and the status query (sqlserver-status.ts), and for snapshots
 * and `sitesync verify` the table reads (sqlserver-table-reader.ts) and the snapshot control's batches
 * (sqlserver-snapshot-control.ts). The default uses the `mssql` driver; tests build the same connector over
 * the simulator with createSqlServerConnector.
 */
import type { Connector, DatabaseFinding, SiteDatabaseStatus } from '../../src/connector.ts';
import { BOOKKEEPING_SCHEMA } from '../../src/config/names.ts';
import { databaseOf } from '../../src/config/config-schema.ts';
import type { ApplyConnection } from './apply-connection.ts';
import type { CdcReader } from './cdc-reader.ts';
import { MssqlApplyConnection } from './mssql-apply-connection.ts';
import { MssqlCdcReader, MssqlRunner, type QueryRunner } from './mssql-cdc-reader.ts';
import { mssqlConfig } from './mssql-connection.ts';
import { checkSqlServerUrl, SQLSERVER_URL_EXAMPLE } from './sqlserver-config.ts';
import { sqlserverPositions } from './sqlserver-positions.ts';
import { SqlServerSink } from './sqlserver-sink.ts';
import { SqlServerSource } from './sqlserver-source.ts';
import { setupProblems, snapshotMarkersProblem } from './sqlserver-setup.ts';
import { readSqlServerStatus } from './sqlserver-status.ts';
import { forgetSqlServerSite } from './sqlserver-forget-site.ts';
import { SqlServerSnapshotControl } from './sqlserver-snapshot-control.ts';
import { MssqlTableRunner, SqlServerTableReader, type TableRunner } from './sqlserver-table-reader.ts';

/** Everything of the connector that speaks to a server, by the site's URL. */
export interface SqlServerIo {
  reader(url: string, site: string): CdcReader;
  connect(url: string, site: string): Promise<ApplyConnection>;
  readStatus(url: string, site: string, sources: readonly string[]): Promise<SiteDatabaseStatus>;
  /** What `sitesync remove-site` runs its statements through (sqlserver-forget-site.ts); absent, the connector has no forgetSite. */
  forgetRunner?(url: string): QueryRunner;
  /** A connection for table reads (sqlserver-table-reader.ts); absent, the connector has no openTableReader. */
  tableRunner?(url: string, site: string): Promise<TableRunner>;
  /** What the snapshot control runs its batches through (sqlserver-snapshot-control.ts); absent, no openSnapshotControl. */
  snapshotRunner?(url: string, site: string): QueryRunner;
}

/** The real server's, through `mssql` over `tedious`. */
export const MSSQL_IO: SqlServerIo = {
  reader: (url, site) => new MssqlCdcReader({ url, site }),
  connect: (url, site) => MssqlApplyConnection.open(url, site),
  readStatus: readSqlServerStatus,
  forgetRunner: (url) => new MssqlRunner({ ...mssqlConfig(url), connectionTimeout: 10_000 }),
  tableRunner: (url) => MssqlTableRunner.open(url),
  snapshotRunner: (url) => new MssqlRunner({ ...mssqlConfig(url), connectionTimeout: 15_000 }),
};

export function createSqlServerConnector(io: SqlServerIo, options: { pollIntervalMs?: number } = {}): Connector {
  return {
    kind: 'sqlserver',
    urlExample: SQLSERVER_URL_EXAMPLE,
    positions: sqlserverPositions,
    checkUrl: checkSqlServerUrl,
    createSource: ({ site, url, tables, config, logger }) =>
      new SqlServerSource({ site, reader: () => io.reader(url, site), tables, maxPartBytes: config.capture.maxMessageBytes, pollIntervalMs: options.pollIntervalMs, logger }),
    createSink: ({ site, url, config, conflictPolicy, onConflict, logger }) =>
      new SqlServerSink({
        site,
        connect: () => io.connect(url, site),
        conflictPolicy,
        onConflict,
        sourceKindOf: (source) => (Object.hasOwn(config.sites, source) ? databaseOf(config, source).kind : undefined),
        logger,
      }),
    readStatus: (url, site, sources) => io.readStatus(url, site, sources),
    checkDatabase: (urls, site) => checkSqlServerDatabase(io, urls, site),
    ...(io.forgetRunner ? { forgetSite: (urls, site, removed, sites, print) => forgetSqlServerSite(urls, site, removed, sites, print, (url) => io.forgetRunner!(url)) } : {}),
    ...(io.tableRunner ? { openTableReader: (options) => SqlServerTableReader.open({ ...options, runner: () => io.tableRunner!(options.url, options.site) }) } : {}),
    ...(io.snapshotRunner ? { openSnapshotControl: (options) => new SqlServerSnapshotControl({ ...options, runner: io.snapshotRunner!(options.url, options.site) }) } : {}),
  };
}

/**
 * `sitesync setup` at a SQL Server site: creates the sitesync schema and tables (as the apply login), then reads
 * what capture needs (CDC on the database and tables, the Agent, rights, the progress table's capture
 * instance) and says what is missing with the T-SQL to run: enabling CDC takes a sysadmin or db_owner, which
 * sitesync's logins should not be. With the capture login it also creates the snapshot tables and enables CDC
 * on sitesync.snapshot_markers (what snapshots of the site need; sqlserver-snapshot-control.ts), and names it
 * when that could not be done.
 */
async function checkSqlServerDatabase(io: SqlServerIo, urls: { readonly capture: string | null; readonly apply: string }, site: string): Promise<DatabaseFinding[]> {
  const connection = await io.connect(urls.apply, site);
  try {
    await connection.ensureBookkeeping();
  } finally {
    await connection.close();
  }
  const findings: DatabaseFinding[] = [{ severity: 'done', problem: `the ${BOOKKEEPING_SCHEMA} schema and its tables are there`, fix: '' }];
  if (urls.capture === null) return findings;
  const reader = io.reader(urls.capture, site);
  let database: string;
  try {
    const facts = await reader.setupFacts();
    database = facts.database;
    for (const p of setupProblems(facts)) findings.push({ severity: p.severity, problem: p.problem, fix: p.fix });
  } finally {
    await reader.close();
  }
  if (io.snapshotRunner) {
    const control = new SqlServerSnapshotControl({ site, url: urls.capture, runner: io.snapshotRunner(urls.capture, site) });
    try {
      const state = await control.prepare();
      const problem = snapshotMarkersProblem(database, state);
      if (problem) findings.push({ severity: problem.severity, problem: problem.problem, fix: problem.fix });
      else if (state.captured) findings.push({ severity: 'done', problem: `${BOOKKEEPING_SCHEMA}.snapshot_markers is there and captured: this site can send snapshots`, fix: '' });
    } catch (error) {
      const problem = snapshotMarkersProblem(database, { cdcEnabled: true, captured: false, error: error instanceof Error ? error.message.split('\n')[0]! : String(error) })!;
      findings.push({ severity: problem.severity, problem: problem.problem, fix: problem.fix });
    } finally {
      await control.close();
    }
  }
  return findings;
}

export const sqlserverConnector: Connector = createSqlServerConnector(MSSQL_IO);
