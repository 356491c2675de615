/**
 * The SQL Server connector against a REAL SQL Server, when MSSQL_URL is set: the source and sink conformance
 * suites (test/conformance/harnesses/sqlserver-live.ts, the source suite's snapshot case included) and the
 * PostgreSQL ↔ SQL Server mesh of sqlserver-mesh.test.ts, over the connector's own mssql code
 * (mssql-cdc-reader.ts, mssql-apply-connection.ts, sqlserver-table-reader.ts, sqlserver-snapshot-control.ts)
 * instead of the simulator; and a snapshot of rows a SQL Server table held before replication, sent to a
 * PostgreSQL site while the SQL Server site keeps writing, then `sitesync verify` between the two
 * (sqlserverSnapshotToPostgres below). Without MSSQL_URL it shows one skipped test saying how to run it.
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
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CONNECTORS } from '../../connectors/index.ts';
import { createSqlServerConnector, MSSQL_IO } from '../../connectors/sqlserver/index.ts';
import { quoteName } from '../../connectors/sqlserver/sqlserver-kinds.ts';
import { startSnapshot, waitForSnapshot, withSnapshotControl } from '../../src/cli/snapshot-command.ts';
import { planVerify, runVerify } from '../../src/cli/verify-command.ts';
import type { Connector } from '../../src/connector.ts';
import type { SourceOp } from '../conformance/harness.ts';
import { POSTGRES_TYPES, postgresRows } from '../conformance/harnesses/postgres.ts';
import type { TableSpec } from '../conformance/tables.ts';
import { createTestSites, dbUrl, sql, waitFor, type RunningSite, type TestSites } from '../helpers/test-sites.ts';
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

// ─── a snapshot from SQL Server to PostgreSQL, and verify ──────────────────────────────────────────────────

/**
 * The snapshot's table at both sites, keyed by text and number: the text key makes both readers list keys in
 * the neutral order (UTF-8 bytes; at SQL Server through its UTF-8 collation, SQL Server 2019 or later), which
 * verify's merge of the two sites' rows needs.
 */
export const SNAPSHOT_ITEMS: TableSpec = {
  table: 'snapshot_items',
  columns: [
    { name: 'code', kind: 'string', key: true },
    { name: 'id', kind: 'int64', key: true },
    { name: 'name', kind: 'string' },
    { name: 'price', kind: 'decimal(12,2)' },
    { name: 'at', kind: 'timestamptz' },
    { name: 'local', kind: 'timestamp' },
    { name: 'data', kind: 'bytes' },
    { name: 'u', kind: 'uuid' },
  ],
};

/** SQL Server's columns of SNAPSHOT_ITEMS: a text key must not be a max type; datetime2(7) as SQL Server's default. */
export const SNAPSHOT_ITEMS_SQLSERVER = [
  '[code] nvarchar(40) NOT NULL',
  '[id] bigint NOT NULL',
  '[name] nvarchar(max) NULL',
  '[price] decimal(12,2) NULL',
  '[at] datetimeoffset(6) NULL',
  '[local] datetime2(7) NULL',
  '[data] varbinary(max) NULL',
  '[u] uniqueidentifier NULL',
];

/** Codes whose UTF-8 order differs from UTF-16's and from linguistic orders. */
const CODES = ['a', 'B', 'é', 'z', '中', '\uE000', '\u{1F600}', 'a\tb', ''];

/** Row `n` of SNAPSHOT_ITEMS, canonical text by column. */
export function snapshotItem(n: number, version = 0): Record<string, string | null> {
  const code = CODES[n % CODES.length]!;
  const hex = (n * 2654435761 + version).toString(16).padStart(12, '0').slice(-12);
  const fraction = String(n % 1_000_000).padStart(6, '0').replace(/0+$/, '');
  return {
    code,
    id: String(Math.floor(n / CODES.length)),
    name: n % 13 === 0 ? null : `item ${n} v${version} ✓`,
    price: `${n}.${String(version % 100).padStart(2, '0')}`,
    at: `2024-02-29 13:45:${String(n % 60).padStart(2, '0')}${fraction === '' ? '' : `.${fraction}`}+00`,
    local: `1999-12-31 23:59:${String(n % 60).padStart(2, '0')}`,
    data: `\\x${hex}`,
    u: `00000000-0000-4000-8000-${hex}`,
  };
}

/** What the snapshot test needs of the SQL Server site, real or simulated. */
export interface SqlServerSnapshotBackend {
  readonly url: string;
  /** The connector the test registers for kind 'sqlserver' (its table reader and snapshot control included). */
  readonly connector: Connector;
  readonly convergeMs: number;
  /** public.snapshot_items in SQL Server types with CDC on, holding these rows, which no stream will carry. */
  prepare(rows: readonly Record<string, string | null>[]): Promise<void>;
  /** One transaction at the SQL Server, as an application makes it. */
  commit(ops: readonly SourceOp[]): Promise<void>;
  /** public.snapshot_items in canonical text, sorted. */
  rows(): Promise<(string | null)[][]>;
  cleanup(sites: { readonly sqlserver: string; readonly postgres: string }): Promise<void>;
}

/**
 * A SQL Server table's existing rows reach an empty PostgreSQL site through `sitesync snapshot`'s path
 * (startSnapshot, the SQL Server site's own capture reading chunks at its markers, waitForSnapshot) while the
 * SQL Server site keeps inserting, updating and deleting everywhere in the table; then `sitesync verify`
 * (planVerify, runVerify: a consistent reader at each site, SNAPSHOT isolation at SQL Server) finds the two
 * identical, and, once PostgreSQL's pipeline is stopped and a row there changed and another deleted, names
 * exactly those keys.
 */
export function sqlserverSnapshotToPostgres(name: string, backend: SqlServerSnapshotBackend, initialRows = 3000): void {
  describe(`snapshot from SQL Server to PostgreSQL, and verify (${name})`, () => {
    let t: TestSites;
    let paris = '';
    let london = '';
    const connectors = new Map(CONNECTORS);
    connectors.set('sqlserver', backend.connector);
    const running = new Map<string, RunningSite>();
    const table = `public.${SNAPSHOT_ITEMS.table}`;

    before(async () => {
      await backend.prepare(Array.from({ length: initialRows }, (_, n) => snapshotItem(n)));
      t = await createTestSites(
        ['paris', 'london'],
        (sites) => ({
          sites: {
            [sites.paris!]: { postgres: dbUrl(`sitesync_test_${sites.paris}`) },
            [sites.london!]: { database: { kind: 'sqlserver', url: backend.url }, tables: [table] },
          },
          apply: { retrySeconds: 0.5 },
        }),
        { leastPrivilege: false, connectors },
      );
      paris = t.sites.paris!;
      london = t.sites.london!;
      const columns = SNAPSHOT_ITEMS.columns.map((c) => `"${c.name}" ${POSTGRES_TYPES[c.kind]}`);
      await sql(t.db('paris'), `CREATE TABLE ${SNAPSHOT_ITEMS.table} (${columns.join(', ')}, PRIMARY KEY (code, id))`);
      running.set('london', await t.start('london'));
      running.set('paris', await t.start('paris'));
    });

    after(async () => {
      for (const site of running.values()) await site.stop();
      await t?.cleanup();
      await backend.cleanup({ sqlserver: london, postgres: paris });
    });

    const pgRows = (): Promise<(string | null)[][]> => postgresRows(dbUrl(t.db('paris')), SNAPSHOT_ITEMS);

    test("the rows the SQL Server table held before replication reach PostgreSQL while the SQL Server site keeps writing", async () => {
      assert.deepEqual(await pgRows(), [], 'paris starts without them');
      // The SQL Server site writes everywhere in its table meanwhile: rows the snapshot has sent and rows it
      // has not reached yet.
      let writing = true;
      let writes = 0;
      const writer = (async () => {
        // At least 50 writes, however quickly the snapshot ends; more while it runs.
        for (let n = 0; writing || writes < 50; n++) {
          const k = (n * 7919) % (initialRows + 200);
          const item = snapshotItem(k);
          const key = { code: item.code!, id: item.id! };
          const op: SourceOp =
            n % 5 === 4
              ? { op: 'delete', table: SNAPSHOT_ITEMS, where: key }
              : k >= initialRows && n % 5 === 0
                ? { op: 'insert', table: SNAPSHOT_ITEMS, values: snapshotItem(k, n) }
                : { op: 'update', table: SNAPSHOT_ITEMS, where: key, set: { name: `updated ${n}`, price: `${n}.50` } };
          await backend.commit([op]).catch(() => undefined); // an insert of a key there already: skipped
          writes++;
          await sleep(5);
        }
      })();
      let id = '';
      try {
        const started = await startSnapshot(t.config, connectors, { site: london, table, targets: null, chunkRows: 250 });
        id = started.id;
        const status = await withSnapshotControl(t.config, connectors, london, (control) => waitForSnapshot(control, id, () => undefined, 200));
        assert.equal(status.state, 'done');
        assert.ok(status.rowsSent >= initialRows - 600, `the rows were sent (${status.rowsSent})`);
      } finally {
        writing = false;
        await writer;
      }
      assert.ok(writes >= 50, `the SQL Server site wrote meanwhile (${writes})`);
      let last = '';
      await waitFor(
        'paris holds what london holds',
        async () => {
          const [a, b] = await Promise.all([pgRows(), backend.rows()]);
          last = `postgres ${a.length} rows, sqlserver ${b.length}: first difference ${JSON.stringify(a.find((r, i) => JSON.stringify(r) !== JSON.stringify(b[i])) ?? null)}`;
          return JSON.stringify(a) === JSON.stringify(b);
        },
        backend.convergeMs,
      ).catch((error: Error) => {
        throw new Error(`${error.message}: ${last}`);
      });
    });

    test('verify finds the two sites identical, then names the keys that differ', async () => {
      const plan = planVerify(t.config, { sites: `${london},${paris}`, tables: table }, connectors);
      const same = await runVerify(t.config, connectors, plan);
      const [result] = same.tables;
      assert.equal(result?.error, undefined);
      assert.equal(result?.method, 'rows', 'different kinds of database: compared row by row');
      assert.equal(result?.identical, true, JSON.stringify(result?.keys));
      assert.equal(result?.rows[london], result?.rows[paris]);

      // paris stops replicating; a row changed there and another deleted are differences verify names.
      await running.get('paris')!.stop();
      running.delete('paris');
      const [changed, removed] = (await backend.rows()).slice(0, 2);
      await sql(t.db('paris'), `UPDATE ${SNAPSHOT_ITEMS.table} SET name = 'changed at paris' WHERE code = $1 AND id = $2`, [changed![0], changed![1]]);
      await sql(t.db('paris'), `DELETE FROM ${SNAPSHOT_ITEMS.table} WHERE code = $1 AND id = $2`, [removed![0], removed![1]]);
      const differing = (await runVerify(t.config, connectors, plan)).tables[0]!;
      assert.equal(differing.error, undefined);
      assert.deepEqual(
        differing.keys.map((k) => [k.kind, k.site, k.key, k.columns ?? null]).sort(),
        [
          ['changed', paris, [changed![0], changed![1]], ['name']],
          ['missing', paris, [removed![0], removed![1]], null],
        ].sort(),
      );
    });
  });
}

/** The snapshot test's SQL Server site on the live server: public.snapshot_items in the MSSQL_URL database. */
function liveSnapshotBackend(url: string): SqlServerSnapshotBackend {
  const server = new LiveSqlServer(url);
  return {
    url,
    connector: createSqlServerConnector(MSSQL_IO, { pollIntervalMs: 200 }),
    convergeMs: 180_000,
    async prepare(rows) {
      await dropLiveTable(server, 'public', SNAPSHOT_ITEMS.table); // left by a run that died before its cleanup
      await server.query(`IF SCHEMA_ID(N'public') IS NULL EXEC(N'CREATE SCHEMA [public]')`);
      await server.query(`CREATE TABLE [public].${quoteName(SNAPSHOT_ITEMS.table)} (${SNAPSHOT_ITEMS_SQLSERVER.join(', ')}, CONSTRAINT [PK_public_snapshot_items] PRIMARY KEY ([code], [id]))`);
      await server.query(
        "EXEC sys.sp_cdc_enable_table @source_schema = N'public', @source_name = @table, @role_name = NULL, @capture_instance = N'public_snapshot_items', @supports_net_changes = 0",
        [{ name: 'table', type: 'text', value: SNAPSHOT_ITEMS.table }],
      );
      for (let i = 0; i < rows.length; i += 500) {
        await liveCommit(server, 'public', rows.slice(i, i + 500).map((values): SourceOp => ({ op: 'insert', table: SNAPSHOT_ITEMS, values })));
      }
    },
    commit: (ops) => liveCommit(server, 'public', ops),
    rows: () => liveRows(server, 'public', SNAPSHOT_ITEMS),
    async cleanup({ sqlserver, postgres }) {
      try {
        await dropLiveTable(server, 'public', SNAPSHOT_ITEMS.table);
        await dropLiveSchemaIfEmpty(server, 'public');
        await server.query(`IF OBJECT_ID(N'sitesync.snapshots', N'U') IS NOT NULL DELETE FROM sitesync.snapshots WHERE table_name = N'public.${SNAPSHOT_ITEMS.table}'`);
        await forgetBookkeepingRows(server, { sources: postgres === '' ? [] : [postgres], site: sqlserver === '' ? null : sqlserver });
      } finally {
        await server.close();
      }
    },
  };
}

if (MSSQL_URL === undefined || MSSQL_URL === '') {
  test('SQL Server live: source and sink conformance, the PostgreSQL ↔ SQL Server mesh, and a snapshot to PostgreSQL with verify, on a real server', { skip: HOW_TO_RUN }, () => {});
} else {
  const admin = process.env.MSSQL_ADMIN_URL || MSSQL_URL;
  sourceConformance(sqlserverLiveSourceHarness(MSSQL_URL));
  sinkConformance(sqlserverLiveSinkHarness(MSSQL_URL, 'postgres', 16, admin));
  sinkConformance(sqlserverLiveSinkHarness(MSSQL_URL, 'sqlserver', 20, admin));
  sqlserverMesh('live SQL Server', liveMeshBackend(MSSQL_URL));
  sqlserverSnapshotToPostgres('live SQL Server', liveSnapshotBackend(MSSQL_URL));
}
