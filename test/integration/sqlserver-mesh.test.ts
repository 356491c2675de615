/**
 * A PostgreSQL site and a SQL Server site replicate each other both ways through the real pipeline (capture
 * and apply runners, the local RabbitMQ): every value arrives as the other database holds it, nothing loops
 * (the SQL Server site's capture drops the transactions its sink applied, by their sitesync.apply_progress
 * change), a value SQL Server cannot hold (PostgreSQL's NaN numeric, an infinite float8) is parked with its
 * reason at the SQL Server site while later rows flow, and a restart of the SQL Server site's pipeline resumes
 * without losing or applying anything twice.
 *
 * Here the SQL Server is the CDC simulator (test/helpers/sqlserver-simulator.ts) under the connector's own code
 * (test/helpers/sqlserver-simulated-io.ts), its capture job run every 50 ms as the Agent would. The same body,
 * `sqlserverMesh`, runs against a real server in test/integration/sqlserver-live.test.ts when MSSQL_URL is set:
 * it only speaks to the SQL Server through a `SqlServerMeshBackend`.
 *
 * No concurrent writes to one row here: the SQL Server sink detects presence conflicts only (sqlserver-sink.ts),
 * so two sites updating one row while apart need not converge; heterogeneous-mesh.test.ts tries that between
 * PostgreSQL and MariaDB.
 */
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { CONNECTORS } from '../../connectors/index.ts';
import type { TargetTable } from '../../connectors/sqlserver/apply-connection.ts';
import type { CapturedColumn, ProjectedValue } from '../../connectors/sqlserver/cdc-reader.ts';
import { createSqlServerConnector } from '../../connectors/sqlserver/index.ts';
import { bindValue } from '../../connectors/sqlserver/sqlserver-bind.ts';
import { canonicalText } from '../../connectors/sqlserver/sqlserver-kinds.ts';
import type { Connector } from '../../src/connector.ts';
import { parseKind } from '../../src/events/value-kind.ts';
import { PipelineEvents } from '../../src/observability/pipeline-events.ts';
import type { SourceOp } from '../conformance/harness.ts';
import { POSTGRES_TYPES, postgresRows } from '../conformance/harnesses/postgres.ts';
import { KIND_SAMPLES, sortRows, type TableSpec } from '../conformance/tables.ts';
import { SimulatedApplyConnection, storedValue } from '../helpers/sqlserver-simulated-apply.ts';
import { prepareSimulatedSite, simulatedSqlServerIo, startCaptureJob, type CaptureJob } from '../helpers/sqlserver-simulated-io.ts';
import { SimulatedSqlServer, type SimColumn } from '../helpers/sqlserver-simulator.ts';
import { createTestSites, dbUrl, sql, waitFor, type RunningSite, type TestSites } from '../helpers/test-sites.ts';

/** The replicated table, by kind: public.items at both sites. */
export const MESH_ITEMS: TableSpec = {
  table: 'items',
  columns: [
    { name: 'id', kind: 'int64', key: true },
    { name: 'qty', kind: 'int32' },
    { name: 'price', kind: 'decimal(12,2)' },
    { name: 'name', kind: 'string' },
    { name: 'data', kind: 'bytes' },
    { name: 'day', kind: 'date' },
    { name: 'at', kind: 'timestamptz' },
    { name: 'local', kind: 'timestamp' },
    { name: 'flag', kind: 'boolean' },
    { name: 'ratio', kind: 'float64' },
  ],
};

/** What the mesh needs of the SQL Server site, real or simulated. */
export interface SqlServerMeshBackend {
  /** The SQL Server site's URL, and the connector the test registers for kind 'sqlserver'. */
  readonly url: string;
  readonly connector: Connector;
  /** How long to wait for both sites to agree, and how long to watch for a loop once they do (ms). */
  readonly convergeMs: number;
  readonly quietMs: number;
  /** public.items in SQL Server types with CDC on, and what the site needs before it first runs. */
  prepare(): Promise<void>;
  /** One transaction at the SQL Server, as an application makes it: canonical texts by column. */
  commit(ops: readonly SourceOp[]): Promise<void>;
  /** public.items in canonical text, sorted. */
  rows(): Promise<(string | null)[][]>;
  /** applied_transactions of a source's row in sitesync.apply_progress (null: none). */
  appliedTransactions(source: string): Promise<number | null>;
  /** Removes what the test made at the SQL Server (the SQL Server site's and the PostgreSQL site's names). */
  cleanup(sites: { readonly sqlserver: string; readonly postgres: string }): Promise<void>;
}

/** The SQL Server columns of MESH_ITEMS (varbinary(max), nvarchar(max), 6-digit times). */
const SIM_COLUMNS: SimColumn[] = [
  { name: 'id', type: 'bigint', keyOrdinal: 1 },
  { name: 'qty', type: 'int' },
  { name: 'price', type: 'decimal', precision: 12, scale: 2 },
  { name: 'name', type: 'nvarchar', maxLength: -1 },
  { name: 'data', type: 'varbinary', maxLength: -1 },
  { name: 'day', type: 'date' },
  { name: 'at', type: 'datetimeoffset', scale: 6 },
  { name: 'local', type: 'datetime2', scale: 6 },
  { name: 'flag', type: 'bit' },
  { name: 'ratio', type: 'float', precision: 53 },
];

/** A simulated table's rows in canonical text, as capture reads them (canonicalText of each stored value), sorted. */
export function sqlserverRows(sim: SimulatedSqlServer, spec: TableSpec, schema = 'public'): (string | null)[][] {
  const described = sim.describeTable(schema, spec.table);
  if (!described) throw new Error(`no table ${schema}.${spec.table} in the simulator`);
  const columns: CapturedColumn[] = spec.columns.map((c) => {
    const d = described.columns.find((column) => column.name === c.name)!;
    return { name: d.name, type: d.type, maxLength: d.maxLength, precision: d.precision, scale: d.scale, keyOrdinal: d.keyOrdinal };
  });
  const positions = columns.map((c) => described.columns.findIndex((d) => d.name === c.name));
  return sortRows(sim.rows(schema, spec.table).map((row) => columns.map((c, i) => canonicalText(c, row[positions[i]!] ?? null))));
}

/**
 * One application transaction at the simulator: each canonical text becomes what SQL Server stores for it
 * (the value an application's statement converts, modelled by the simulated apply connection's CONVERT).
 */
async function simulatedCommit(sim: SimulatedSqlServer, ops: readonly SourceOp[]): Promise<void> {
  const describer = new SimulatedApplyConnection(sim);
  const targets = new Map<string, TargetTable>();
  for (const op of ops) if (!targets.has(op.table.table)) targets.set(op.table.table, (await describer.describeTable('public', op.table.table))!);
  const stored = (op: SourceOp, values: Readonly<Record<string, string | null>>): Record<string, ProjectedValue> => {
    const target = targets.get(op.table.table)!;
    return Object.fromEntries(
      Object.entries(values).map(([name, text]) => {
        const column = target.columns.find((c) => c.name === name)!;
        const kind = parseKind(op.table.columns.find((c) => c.name === name)!.kind);
        const bound = bindValue(text, { name, kind, native: { name: kind.kind, id: 0, modifier: -1 }, key: false }, column, { schema: 'public', table: op.table.table }, null);
        return [name, storedValue(target, column, bound)];
      }),
    );
  };
  const tx = sim.begin();
  try {
    for (const op of ops) {
      if (op.op === 'insert') tx.insert('public', op.table.table, stored(op, op.values));
      else if (op.op === 'update') tx.update('public', op.table.table, stored(op, op.where), stored(op, op.set));
      else tx.delete('public', op.table.table, stored(op, op.where));
    }
    tx.commit();
  } catch (error) {
    tx.rollback();
    throw error;
  }
}

export function simulatedMeshBackend(): SqlServerMeshBackend & { readonly sim: SimulatedSqlServer } {
  const sim = new SimulatedSqlServer({ database: 'london' });
  let job: CaptureJob | null = null;
  return {
    sim,
    url: 'sqlserver://sim@simulated:1433/london',
    connector: createSqlServerConnector(simulatedSqlServerIo(sim), { pollIntervalMs: 50 }),
    convergeMs: 30_000,
    quietMs: 2500,
    async prepare() {
      prepareSimulatedSite(sim);
      sim.createTable('public', 'items', SIM_COLUMNS);
      sim.enableCdc('public', 'items');
      job = startCaptureJob(sim, 50);
    },
    commit: (ops) => simulatedCommit(sim, ops),
    rows: async () => sqlserverRows(sim, MESH_ITEMS),
    async appliedTransactions(source) {
      const row = sim.rows('sitesync', 'apply_progress').find((r) => r[0] === source);
      return row ? Number(row[4]) : null;
    },
    async cleanup() {
      job?.stop();
    },
  };
}

/** A row of MESH_ITEMS from the samples (index 0 or 1) with its id, canonical text by column. */
function sample(id: number, i: 0 | 1): Record<string, string> {
  return Object.fromEntries(MESH_ITEMS.columns.map((c) => [c.name, c.name === 'id' ? String(id) : KIND_SAMPLES[c.kind]![i]]));
}

const insert = (values: Record<string, string | null>): SourceOp => ({ op: 'insert', table: MESH_ITEMS, values });
const update = (id: number, set: Record<string, string | null>): SourceOp => ({ op: 'update', table: MESH_ITEMS, where: { id: String(id) }, set });
const remove = (id: number): SourceOp => ({ op: 'delete', table: MESH_ITEMS, where: { id: String(id) } });

/** The mesh's tests, on one SQL Server backend. */
export function sqlserverMesh(name: string, backend: SqlServerMeshBackend): void {
  describe(`PostgreSQL ↔ SQL Server (${name})`, () => {
    let t: TestSites;
    let paris: string;
    let london: string;
    const running = new Map<string, RunningSite>();
    const parked: { site: string; code: string; reason: string }[] = [];
    /** Transactions applied, by `site<-source`. */
    const applied = new Map<string, number>();
    /** Transactions the SQL Server site's capture skipped as relayed. */
    let relayedSkipped = 0;
    /** Transactions written by applications: at PostgreSQL, at SQL Server. */
    let postgresWrites = 0;
    let sqlserverWrites = 0;
    /** Ids parked at SQL Server: at PostgreSQL only. */
    const parkedIds = new Set<string>();

    const count = (site: string, source: string): number => applied.get(`${site}<-${source}`) ?? 0;

    function listen(site: string, events: PipelineEvents): void {
      events.on('apply:parked', (p) => parked.push({ site, code: p.code, reason: p.reason }));
      events.on('apply:applied', (a) => applied.set(`${site}<-${a.source}`, count(site, a.source) + a.transactions));
      events.on('capture:skipped', (s) => {
        if (s.reason === 'relayed' && site === london) relayedSkipped++;
      });
    }

    async function start(short: 'paris' | 'london'): Promise<void> {
      // Listening from the pipeline's very first event: a restarted capture skips what it reads again at once.
      const events = new PipelineEvents();
      listen(t.sites[short]!, events);
      running.set(short, await t.start(short, events));
    }

    async function atPostgres(text: string, values: unknown[] = []): Promise<void> {
      await sql(t.db('paris'), text, values);
      postgresWrites++;
    }

    async function atSqlServer(ops: readonly SourceOp[]): Promise<void> {
      await backend.commit(ops);
      sqlserverWrites++;
    }

    const pgRows = async (): Promise<(string | null)[][]> => (await postgresRows(dbUrl(t.db('paris')), MESH_ITEMS)).filter((r) => !parkedIds.has(r[0]!));

    async function converged(what: string): Promise<(string | null)[][]> {
      let last = '';
      return waitFor(
        `${what}: both sites hold the same rows`,
        async () => {
          const [a, b] = await Promise.all([pgRows(), backend.rows()]);
          last = `postgres  ${JSON.stringify(a)}\nsqlserver ${JSON.stringify(b)}`;
          return JSON.stringify(a) === JSON.stringify(b) ? a : undefined;
        },
        backend.convergeMs,
      ).catch((error: Error) => {
        throw new Error(`${error.message}\n${last}`);
      });
    }

    /** Every application transaction applied once at the other site (parked ones recorded instead), none more. */
    async function exactlyOnce(what: string): Promise<void> {
      let last = '';
      await waitFor(
        `${what}: every transaction applied once`,
        async () => {
          const atSqlServer = await backend.appliedTransactions(paris);
          last = `paris<-london ${count(paris, london)} of ${sqlserverWrites}; sitesync.apply_progress(${paris}) ${atSqlServer} of ${postgresWrites}`;
          return count(paris, london) === sqlserverWrites && atSqlServer === postgresWrites;
        },
        backend.convergeMs,
      ).catch((error: Error) => {
        throw new Error(`${error.message}\n${last}`);
      });
      // Every transaction london applied (or parked) was captured there and dropped as relayed.
      await waitFor(`${what}: london's capture skipped what its sink wrote`, async () => relayedSkipped >= postgresWrites, backend.convergeMs);
    }

    before(async () => {
      await backend.prepare();
      const connectors = new Map(CONNECTORS);
      connectors.set('sqlserver', backend.connector);
      t = await createTestSites(
        ['paris', 'london'],
        (sites) => ({
          sites: {
            [sites.paris!]: { postgres: dbUrl(`sitesync_test_${sites.paris}`) },
            // Only public.items: a live database may hold other CDC-enabled tables (another test's, left behind).
            [sites.london!]: { database: { kind: 'sqlserver', url: backend.url }, tables: ['public.items'] },
          },
          apply: { retrySeconds: 0.5, onDataError: 'park' },
        }),
        { leastPrivilege: false, connectors },
      );
      paris = t.sites.paris!;
      london = t.sites.london!;
      const columns = MESH_ITEMS.columns.map((c) => `"${c.name}" ${POSTGRES_TYPES[c.kind]}${c.key ? ' PRIMARY KEY' : ''}`);
      await sql(t.db('paris'), `CREATE TABLE items (${columns.join(', ')})`);
      await start('london');
      await start('paris');
    });

    after(async () => {
      for (const site of running.values()) await site.stop();
      await t?.cleanup();
      if (paris && london) await backend.cleanup({ sqlserver: london, postgres: paris });
      else await backend.cleanup({ sqlserver: '', postgres: '' });
    });

    test('inserts, updates and deletes at PostgreSQL arrive at SQL Server value for value', async () => {
      const names = MESH_ITEMS.columns.map((c) => `"${c.name}"`).join(', ');
      const casts = MESH_ITEMS.columns.map((c, n) => `$${n + 1}::${POSTGRES_TYPES[c.kind]}`).join(', ');
      for (const [id, i] of [[1, 0], [2, 1]] as const) {
        const row = sample(id, i);
        await atPostgres(`INSERT INTO items (${names}) VALUES (${casts})`, MESH_ITEMS.columns.map((c) => row[c.name]));
      }
      const first = await converged('two inserts at paris');
      assert.equal(first.length, 2);
      assert.deepEqual(first[0], MESH_ITEMS.columns.map((c) => sample(1, 0)[c.name]!), 'every value as PostgreSQL printed it');
      assert.deepEqual(first[1], MESH_ITEMS.columns.map((c) => sample(2, 1)[c.name]!));

      await atPostgres(`UPDATE items SET qty = 42, name = 'uno', ratio = NULL WHERE id = 1`);
      await atPostgres(`UPDATE items SET id = 5 WHERE id = 2`); // a key change
      await atPostgres(`DELETE FROM items WHERE id = 5`);
      const rows = await converged('two updates and a delete at paris');
      assert.deepEqual(rows.map((r) => [r[0], r[1], r[3], r[9]]), [['1', '42', 'uno', null]]);
      await exactlyOnce('paris writes');
    });

    test('inserts, updates and deletes at SQL Server arrive at PostgreSQL', async () => {
      const three = { id: '3', qty: '7', price: '12.50', name: 'tres ✓', data: '\\xcafe', day: '2023-03-03', at: '2023-03-03 10:00:00.5+00', local: '2023-03-03 11:00:00', flag: 't', ratio: '0.1' };
      await atSqlServer([insert(three), insert({ id: '4', name: 'cuatro' })]);
      await atSqlServer([update(1, { qty: '43', name: 'one' })]);
      await atSqlServer([update(4, { id: '6' })]); // a key change: SQL Server's CDC logs it as a delete and an insert
      await atSqlServer([remove(6)]);
      const rows = await converged('an insert, two updates and a delete at london');
      assert.deepEqual(rows.map((r) => r[0]), ['1', '3']);
      assert.deepEqual(rows[1], ['3', '7', '12.50', 'tres ✓', '\\xcafe', '2023-03-03', '2023-03-03 10:00:00.5+00', '2023-03-03 11:00:00', 't', '0.1']);
      assert.deepEqual([rows[0]![1], rows[0]![3]], ['43', 'one']);
      await exactlyOnce('london writes');
    });

    test('nothing loops: once both sites agree, neither applies anything more', async () => {
      await converged('before watching');
      await exactlyOnce('before watching');
      // What `sitesync status` shows of the SQL Server site: its capture, and how far paris is applied there.
      const status = await backend.connector.readStatus(backend.url, london, [paris]);
      assert.equal(status.capture.exists, true, JSON.stringify(status));
      assert.equal(status.capture.active, true, JSON.stringify(status));
      assert.equal(status.applied.length, 1);
      assert.notEqual(status.applied[0]!.position, null, JSON.stringify(status));
      const before = new Map(applied);
      const skippedBefore = relayedSkipped;
      await sleep(backend.quietMs);
      assert.deepEqual(applied, before, 'no transaction comes back to the site it came from');
      assert.equal(relayedSkipped, skippedBefore, 'nothing new captured at london');
      assert.equal(await backend.appliedTransactions(paris), postgresWrites);
    });

    test('a value SQL Server cannot hold is parked with its reason at the SQL Server site, and later rows flow', async () => {
      await atPostgres(`INSERT INTO items (id, price) VALUES (10, 'NaN')`);
      await atPostgres(`INSERT INTO items (id, ratio) VALUES (11, 'Infinity')`);
      await atPostgres(`INSERT INTO items (id, name) VALUES (12, 'after')`);
      await waitFor('the row after them at SQL Server', async () => (await backend.rows()).some((r) => r[0] === '12'), backend.convergeMs);
      await waitFor('two parked at london', async () => parked.filter((p) => p.site === london).length >= 2, backend.convergeMs);
      const at = (pattern: RegExp): boolean => parked.some((p) => p.site === london && p.code === 'SITESYNC_ERR_APPLY_DATA' && pattern.test(p.reason));
      assert.ok(at(/"price".*NaN|NaN.*"price"/), `london parks the NaN numeric: ${JSON.stringify(parked)}`);
      assert.ok(at(/"ratio".*infinit|infinit.*"ratio"/i), `london parks the infinite float: ${JSON.stringify(parked)}`);
      assert.ok(!parked.some((p) => p.site === paris), `nothing parked at paris: ${JSON.stringify(parked)}`);
      const ids = (await backend.rows()).map((r) => r[0]);
      assert.ok(!ids.includes('10') && !ids.includes('11'), 'never silently changed into something else');
      parkedIds.add('10');
      parkedIds.add('11');
      await converged('the rest');
      await exactlyOnce('with parked transactions');
    });

    test("a restart of the SQL Server site's pipeline resumes without loss or duplicate", async () => {
      // Written just before the stop: capture may or may not have published them, or had them confirmed.
      await atSqlServer([insert({ id: '40', name: 'just before the stop' })]);
      await atPostgres(`INSERT INTO items (id, name) VALUES (30, 'just before the stop')`);
      await running.get('london')!.stop();
      running.delete('london');
      // While it is stopped: both sites go on writing (the Agent's capture job goes on at SQL Server).
      await atPostgres(`INSERT INTO items (id, name) VALUES (31, 'while london is down')`);
      await atPostgres(`UPDATE items SET name = 'changed while london is down' WHERE id = 3`);
      await atSqlServer([insert({ id: '41', name: 'while london is down' }), update(1, { qty: '44' })]);
      await atSqlServer([remove(40)]);
      await start('london');
      const rows = await converged('after the restart');
      assert.deepEqual(rows.map((r) => r[0]), ['1', '12', '3', '30', '31', '41']);
      assert.equal(rows.find((r) => r[0] === '1')![1], '44');
      assert.equal(rows.find((r) => r[0] === '3')![3], 'changed while london is down');
      await exactlyOnce('after the restart');
      const before = new Map(applied);
      await sleep(backend.quietMs);
      assert.deepEqual(applied, before, 'nothing applied twice, nothing loops');
    });
  });
}

// Registered only when this file is the one run (sqlserver-live.test.ts imports sqlserverMesh from it).
if (process.argv[1] !== undefined && pathToFileURL(resolve(process.argv[1])).href === import.meta.url) {
  sqlserverMesh('simulated SQL Server', simulatedMeshBackend());
}
