/**
 * The SQL Server connector against a REAL SQL Server, when MSSQL_URL is set: the source and sink conformance
 * suites (test/conformance/harnesses/sqlserver-live.ts) and the PostgreSQL ↔ SQL Server mesh of
 * sqlserver-mesh.test.ts, over the connector's own mssql code (mssql-cdc-reader.ts, mssql-apply-connection.ts)
 * instead of the simulator. Without MSSQL_URL it shows one skipped test saying how to run it.
 *
 * NOT RUN YET: no SQL Server runs on this project's machines; this file and its harness are typechecked only.
 *
 * MSSQL_URL: a db_owner login on a database with change data capture enabled, the SQL Server Agent running
 * (it runs the CDC capture job) and sitesync.apply_progress captured as sitesync_apply_progress — what
 * docker-compose's `sqlserver` profile sets up (deploy/sqlserver/init.sql). The mesh also needs the tests'
 * PostgreSQL (wal_level = logical) and RabbitMQ, as every integration test. MSSQL_ADMIN_URL (optional, sa):
 * the login the sink suite's crash test KILLs sessions with (KILL needs ALTER ANY CONNECTION); without it,
 * MSSQL_URL's login tries, and failing that the sink's connections are closed instead.
 * RECORD=1 also writes every reader query and its rows as fixtures (mssql-cdc-reader.ts).
 *
 * The Agent's capture job scans the log every 5 seconds by default: waits here are longer than in the
 * simulated tests for that.
 */
import { test } from 'node:test';
import { createSqlServerConnector, MSSQL_IO } from '../../connectors/sqlserver/index.ts';
import { sinkConformance } from '../conformance/sink-suite.ts';
import { sourceConformance } from '../conformance/source-suite.ts';
import {
  createLiveTables,
  dropLiveSchemaIfEmpty,
  dropLiveTable,
  forgetBookkeepingRows,
  LiveSqlServer,
  liveCommit,
  liveRows,
  sqlserverLiveSinkHarness,
  sqlserverLiveSourceHarness,
} from '../conformance/harnesses/sqlserver-live.ts';
import { MESH_ITEMS, sqlserverMesh, type SqlServerMeshBackend } from './sqlserver-mesh.test.ts';

const MSSQL_URL = process.env.MSSQL_URL;

const HOW_TO_RUN =
  'MSSQL_URL is not set: these tests need a real SQL Server with CDC and its Agent. Run one with ' +
  '`docker-compose --profile sqlserver up -d sqlserver sqlserver-init` (deploy/sqlserver/init.sql makes database sitesync_test, ' +
  'login sitesync_test), then `MSSQL_URL="sqlserver://sitesync_test:<SITESYNC_SQLSERVER_TEST_PASSWORD>@127.0.0.1:1433/sitesync_test?trustServerCertificate=true" ' +
  'npm run test:sqlserver-live` (or node --import tsx --test --test-concurrency=1 test/integration/sqlserver-live.test.ts); ' +
  'optionally MSSQL_ADMIN_URL (sa) for the crash test\'s KILL';

/** The mesh's SQL Server site on the live server: public.items in the MSSQL_URL database. */
function liveMeshBackend(url: string): SqlServerMeshBackend {
  const server = new LiveSqlServer(url);
  return {
    url,
    connector: createSqlServerConnector(MSSQL_IO, { pollIntervalMs: 200 }),
    convergeMs: 120_000,
    quietMs: 12_000,
    async prepare() {
      await dropLiveTable(server, 'public', MESH_ITEMS.table); // left by a run that died before its cleanup
      await createLiveTables(server, 'public', [MESH_ITEMS]);
    },
    commit: (ops) => liveCommit(server, 'public', ops),
    rows: () => liveRows(server, 'public', MESH_ITEMS),
    async appliedTransactions(source) {
      const rows = await server.query('SELECT applied_transactions FROM sitesync.apply_progress WHERE source = @source', [{ name: 'source', type: 'text', value: source }]);
      return rows[0] ? Number(rows[0].applied_transactions) : null;
    },
    async cleanup({ sqlserver, postgres }) {
      try {
        await dropLiveTable(server, 'public', MESH_ITEMS.table);
        await dropLiveSchemaIfEmpty(server, 'public');
        await forgetBookkeepingRows(server, { sources: postgres === '' ? [] : [postgres], site: sqlserver === '' ? null : sqlserver });
      } finally {
        await server.close();
      }
    },
  };
}

if (MSSQL_URL === undefined || MSSQL_URL === '') {
  test('SQL Server live: source and sink conformance, and the PostgreSQL ↔ SQL Server mesh, on a real server', { skip: HOW_TO_RUN }, () => {});
} else {
  const admin = process.env.MSSQL_ADMIN_URL || MSSQL_URL;
  sourceConformance(sqlserverLiveSourceHarness(MSSQL_URL));
  sinkConformance(sqlserverLiveSinkHarness(MSSQL_URL, 'postgres', 16, admin));
  sinkConformance(sqlserverLiveSinkHarness(MSSQL_URL, 'sqlserver', 20, admin));
  sqlserverMesh('live SQL Server', liveMeshBackend(MSSQL_URL));
}
