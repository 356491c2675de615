/**
 * The Oracle connector: capture with LogMiner (buffered: changes held per transaction until its commit), apply
 * with a progress row written first in every transaction (the loop marker capture drops). Experimental: its logic
 * is proven here against a simulator of redo and V$LOGMNR_CONTENTS (test/helpers/oracle-simulator.ts) by property
 * tests and the conformance suite; it has not yet run against a live Oracle in this project's CI (README,
 * Databases).
 *
 * What touches the database is thin and kept apart, in `OracleIo`: the LogMiner reader
 * (oracledb-logminer-reader.ts), the apply connection (oracledb-apply-connection.ts), the status query
 * (oracle-status.ts), and for online snapshots and `sitesync verify` the table reader's queries
 * (oracle-table-reader.ts) and the snapshot bookkeeping (oracle-snapshot-control.ts), over `oracledb` in Thin mode
 * (pure JavaScript, no Oracle client libraries), loaded only when an Oracle site connects. Tests build the same
 * connector over the simulator with createOracleConnector.
 */
import type { Connector, DatabaseFinding, SiteDatabaseStatus } from '../../src/connector.ts';
import { databaseOf } from '../../src/config/config-schema.ts';
import type { ApplyConnection } from './apply-connection.ts';
import type { LogMinerReader } from './logminer-reader.ts';
import { checkOracleUrl, ORACLE_URL_EXAMPLE } from './oracle-config.ts';
import { oraclePositions } from './oracle-positions.ts';
import { setupProblems } from './oracle-setup.ts';
import { OracleSink } from './oracle-sink.ts';
import { OracleSource } from './oracle-source.ts';
import { readOracleStatus } from './oracle-status.ts';
import { forgetOracleSite } from './oracle-forget-site.ts';
import { oracledbConfig } from './oracledb-connection.ts';
import { OracledbApplyConnection } from './oracledb-apply-connection.ts';
import { OracledbSession, OracleLogMinerReader, sessionSetupStatement, type OracleSession } from './oracledb-logminer-reader.ts';
import { OracledbSnapshotStore, OracleSnapshotControl, type SnapshotStore } from './oracle-snapshot-control.ts';
import { OracledbTableDatabase, OracleTableReader, type OracleTableDatabase } from './oracle-table-reader.ts';

/** Everything of the connector that speaks to a database, by the site's URL. */
export interface OracleIo {
  reader(url: string, site: string): LogMinerReader;
  connect(url: string, site: string): Promise<ApplyConnection>;
  readStatus(url: string, site: string, sources: readonly string[]): Promise<SiteDatabaseStatus>;
  /** What `sitesync remove-site` runs its statements through (oracle-forget-site.ts); absent, the connector has no forgetSite. */
  forgetSession?(url: string): OracleSession;
  /**
   * The queries of a table reader (oracle-table-reader.ts), `consistent` in one read-only transaction; with
   * snapshotStore, what online snapshots need. Absent, the connector has no openTableReader.
   */
  tableDatabase?(url: string, site: string, consistent: boolean): Promise<OracleTableDatabase>;
  /** The snapshot bookkeeping (oracle-snapshot-control.ts); absent, the connector has no openSnapshotControl. */
  snapshotStore?(url: string, site: string): SnapshotStore;
}

/** The real database's, through `oracledb` in Thin mode. */
export const ORACLEDB_IO: OracleIo = {
  reader: (url, site) => new OracleLogMinerReader({ url, site }),
  connect: (url, site) => OracledbApplyConnection.open(url, site),
  readStatus: (url, site, sources) => readOracleStatus(url, site, sources),
  forgetSession: (url) => {
    const config = oracledbConfig(url);
    return new OracledbSession({ ...config, attributes: { ...config.attributes, connectTimeout: config.attributes.connectTimeout ?? 10 } }, [sessionSetupStatement()]);
  },
  tableDatabase: (url, site, consistent) => OracledbTableDatabase.open(url, site, consistent),
  snapshotStore: (url, site) => new OracledbSnapshotStore(url, site),
};

export function createOracleConnector(io: OracleIo, options: { pollIntervalMs?: number; spillDirectory?: string } = {}): Connector {
  return {
    kind: 'oracle',
    urlExample: ORACLE_URL_EXAMPLE,
    positions: oraclePositions,
    checkUrl: checkOracleUrl,
    createSource: ({ site, url, tables, config, logger }) =>
      new OracleSource({
        site,
        reader: () => io.reader(url, site),
        tables,
        maxPartBytes: config.capture.maxMessageBytes,
        pollIntervalMs: options.pollIntervalMs,
        spillDirectory: options.spillDirectory,
        logger,
      }),
    createSink: ({ site, url, config, conflictPolicy, onConflict, logger }) =>
      new OracleSink({
        site,
        connect: () => io.connect(url, site),
        conflictPolicy,
        onConflict,
        sourceKindOf: (source) => (Object.hasOwn(config.sites, source) ? databaseOf(config, source).kind : undefined),
        logger,
      }),
    readStatus: (url, site, sources) => io.readStatus(url, site, sources),
    checkDatabase: (urls, site) => checkOracleDatabase(io, urls, site),
    ...(io.forgetSession ? { forgetSite: (urls, site, removed, sites, print) => forgetOracleSite(urls, site, removed, sites, print, (url) => io.forgetSession!(url)) } : {}),
    ...(io.tableDatabase ? { openTableReader: async (options) => new OracleTableReader(options, await io.tableDatabase!(options.url, options.site, options.consistent)) } : {}),
    ...(io.snapshotStore ? { openSnapshotControl: (options) => new OracleSnapshotControl(options, io.snapshotStore!(options.url, options.site)) } : {}),
  };
}

/**
 * `sitesync setup` at an Oracle site: creates the SITESYNC tables (the sink's as the apply user; the snapshot
 * tables, SNAPSHOTS and SNAPSHOT_MARKERS with ALL COLUMNS logging, as the capture user, who writes them), then
 * reads what LogMiner capture needs (ARCHIVELOG, supplemental logging, the grants of a common user in a CDB) and
 * says what is missing with the SQL to run: those take a DBA, which sitesync's users should not be. Snapshot
 * tables it could not create are named by the facts read after (oracle-setup.ts), with their DDL.
 */
async function checkOracleDatabase(io: OracleIo, urls: { readonly capture: string | null; readonly apply: string }, site: string): Promise<DatabaseFinding[]> {
  const connection = await io.connect(urls.apply, site);
  try {
    await connection.ensureBookkeeping();
  } finally {
    await connection.close();
  }
  const findings: DatabaseFinding[] = [{ severity: 'done', problem: 'the SITESYNC tables are there', fix: '' }];
  if (urls.capture === null) return findings;
  if (io.snapshotStore) {
    const store = io.snapshotStore(urls.capture, site);
    try {
      await store.ensureTables();
      findings.push({ severity: 'done', problem: 'the SITESYNC snapshot tables are there', fix: '' });
    } catch {
      // Named, with the statements to run, by setupProblems below (SNAPSHOT_MARKERS missing).
    } finally {
      await store.close();
    }
  }
  const reader = io.reader(urls.capture, site);
  try {
    for (const p of setupProblems(await reader.setupFacts(null))) findings.push({ severity: p.severity, problem: p.problem, fix: p.fix });
  } finally {
    await reader.close();
  }
  return findings;
}

export const oracleConnector: Connector = createOracleConnector(ORACLEDB_IO);
