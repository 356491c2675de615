/**
 * A PostgreSQL site and an Oracle site replicate each other both ways through the real pipeline (capture and
 * apply runners, the local RabbitMQ): every value arrives as the other database holds it, a key change included;
 * nothing loops (the Oracle site's capture drops the transactions its sink applied, by their
 * SITESYNC.APPLY_PROGRESS change, written first in each); a value Oracle cannot hold (PostgreSQL's '' — Oracle
 * stores it as NULL — and a NaN numeric) is parked with its reason at the Oracle site while later rows flow; a
 * restart of the Oracle site's pipeline, both sites writing meanwhile, resumes without losing or applying
 * anything twice; and a transaction too large for one message (maxMessageBytes is made small here) travels in
 * parts and is applied whole, each way.
 *
 * Here the Oracle is the simulator of redo and LogMiner (test/helpers/oracle-simulator.ts) under the connector's
 * own code (test/helpers/oracle-simulated-io.ts), with two redo threads (RAC): the application's transactions
 * alternate between them, those committed together share one commit SCN, and the logs are switched and
 * archived every 300 ms, so capture mines across threads, sequences and archived logs. The same body,
 * `oracleMesh`, runs against a real database in test/integration/oracle-live.test.ts when ORACLE_URL is set: it
 * only speaks to the Oracle through an `OracleMeshBackend`.
 *
 * The Oracle table is "public"."items" (quoted lower-case owner and names: names go over as they are, so they
 * match PostgreSQL's public.items). Its types are chosen so that both directions
 * carry every value exactly:
 * - id NUMBER(19,0) ↔ bigint: capture calls NUMBER(19,0) decimal(19,0) (NUMBER(18,0) would be int64 but cannot
 *   hold bigint's extremes); PostgreSQL's sink reads the decimal's text into bigint (the row with the extremes
 *   proves both ways);
 * - qty NUMBER(9,0) ↔ integer (int32; the values used have at most 9 digits: NUMBER(9,0) cannot hold 2^31);
 * - price NUMBER(12,2) ↔ numeric(12,2); name VARCHAR2(200) ↔ varchar(200) (AL32UTF8); data RAW(64) ↔ bytea;
 * - day DATE ↔ timestamp(0) (both timestamp, whole seconds); at TIMESTAMP(6) WITH TIME ZONE ↔ timestamptz
 *   (written with +00:00 by the sink, read back to UTC); local TIMESTAMP(6) ↔ timestamp;
 * - flag NUMBER(1) ↔ boolean: Oracle's usual boolean. The Oracle sink writes true/false as 1/0; capture calls
 *   NUMBER(1) int16, whose '1'/'0' PostgreSQL's boolean input takes. The rows are compared with PostgreSQL's
 *   t/f read as 1/0 (an Oracle NUMBER(1) of 2..9 or a negative one has no boolean: not written here);
 * - ratio BINARY_DOUBLE ↔ float8 (IEEE both).
 *
 * No concurrent writes to one row here: the Oracle sink detects presence conflicts only, as the SQL Server one.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { CONNECTORS } from '../../connectors/index.ts';
import { createOracleConnector } from '../../connectors/oracle/index.ts';
import type { OracleColumn } from '../../connectors/oracle/logminer-reader.ts';
import { canonicalText, oracleText } from '../../connectors/oracle/oracle-kinds.ts';
import type { Connector } from '../../src/connector.ts';
import { PipelineEvents } from '../../src/observability/pipeline-events.ts';
import type { SourceOp } from '../conformance/harness.ts';
import { postgresRows } from '../conformance/harnesses/postgres.ts';
import { sortRows, type TableSpec } from '../conformance/tables.ts';
import { prepareSimulatedSite, simulatedOracleIo, startArchiver, type Archiver } from '../helpers/oracle-simulated-io.ts';
import { SimLockError, SimulatedOracle, type SimOracleColumn } from '../helpers/oracle-simulator.ts';
import { createTestSites, dbUrl, sql, waitFor, type RunningSite, type TestSites } from '../helpers/test-sites.ts';

/**
 * The schema (PostgreSQL) and owner (Oracle) of the replicated table: PostgreSQL's default `public`, the user
 * "public" in quotes at the Oracle site (distinct from Oracle's PUBLIC, which the sink once refused it as).
 */
export const SCHEMA = 'public';

/** SCHEMA.items at PostgreSQL, as the test's SQL names it. */
const PG_TABLE = `${SCHEMA}.items`;

/** The replicated table, by kind as PostgreSQL captures it: SCHEMA.items at both sites. */
export const MESH_ITEMS: TableSpec = {
  table: 'items',
  columns: [
    { name: 'id', kind: 'int64', key: true },
    { name: 'qty', kind: 'int32' },
    { name: 'price', kind: 'decimal(12,2)' },
    { name: 'name', kind: 'string' },
    { name: 'data', kind: 'bytes' },
    { name: 'day', kind: 'timestamp' },
    { name: 'at', kind: 'timestamptz' },
    { name: 'local', kind: 'timestamp' },
    { name: 'flag', kind: 'boolean' },
    { name: 'ratio', kind: 'float64' },
  ],
};

/** The PostgreSQL site's SCHEMA.items (see the file comment). */
const POSTGRES_DDL =
  `CREATE SCHEMA IF NOT EXISTS ${SCHEMA}; CREATE TABLE ${PG_TABLE} (id bigint PRIMARY KEY, qty integer, price numeric(12,2), name varchar(200), data bytea, ` +
  `day timestamp(0), at timestamptz, local timestamp, flag boolean, ratio float8)`;

/** The Oracle site's "public"."items" as a CREATE TABLE says it (the live backend runs it). */
export const ORACLE_DDL =
  `CREATE TABLE "${SCHEMA}"."items" ("id" NUMBER(19,0) NOT NULL PRIMARY KEY, "qty" NUMBER(9,0), "price" NUMBER(12,2), ` +
  `"name" VARCHAR2(200 BYTE), "data" RAW(64), "day" DATE, "at" TIMESTAMP(6) WITH TIME ZONE, "local" TIMESTAMP(6), ` +
  `"flag" NUMBER(1,0), "ratio" BINARY_DOUBLE)`;

/** The same columns in the simulator. */
const SIM_COLUMNS: SimOracleColumn[] = [
  { name: 'id', type: 'NUMBER', precision: 19, scale: 0, keyOrdinal: 1 },
  { name: 'qty', type: 'NUMBER', precision: 9, scale: 0 },
  { name: 'price', type: 'NUMBER', precision: 12, scale: 2 },
  { name: 'name', type: 'VARCHAR2', length: 200 },
  { name: 'data', type: 'RAW', length: 64 },
  { name: 'day', type: 'DATE' },
  { name: 'at', type: 'TIMESTAMP(6) WITH TIME ZONE', scale: 6 },
  { name: 'local', type: 'TIMESTAMP(6)', scale: 6 },
  { name: 'flag', type: 'NUMBER', precision: 1, scale: 0 },
  { name: 'ratio', type: 'BINARY_DOUBLE' },
];

/** The column `flag`: PostgreSQL's boolean as the Oracle NUMBER(1) holds it. */
const FLAG = MESH_ITEMS.columns.findIndex((c) => c.name === 'flag');

/** What the mesh needs of the Oracle site, real or simulated. */
export interface OracleMeshBackend {
  /** The Oracle site's URL, and the connector the test registers for kind 'oracle'. */
  readonly url: string;
  readonly connector: Connector;
  /** How long to wait for both sites to agree, and how long to watch for a loop once they do (ms). */
  readonly convergeMs: number;
  readonly quietMs: number;
  /** "public"."items" in Oracle types with ALL COLUMNS logging, and what the site needs before it first runs. */
  prepare(): Promise<void>;
  /**
   * One transaction at the Oracle, as an application makes it: values are canonical texts of the Oracle
   * columns' kinds (flag '1'/'0', id decimal(19,0)).
   */
  commit(ops: readonly SourceOp[]): Promise<void>;
  /**
   * Transactions of several application sessions at once: all written, then committed one right after the
   * other (in the simulator each on its own redo thread, the later ones given the SCN of the first commit, as
   * Oracle gives concurrent commits one SCN).
   */
  commitTogether(groups: readonly (readonly SourceOp[])[]): Promise<void>;
  /** "public"."items" in canonical text (capture's view of each column), sorted. */
  rows(): Promise<(string | null)[][]>;
  /** APPLIED_TRANSACTIONS of a source's row in SITESYNC.APPLY_PROGRESS (null: none). */
  appliedTransactions(source: string): Promise<number | null>;
  /** Removes what the test made at the Oracle (the Oracle site's and the PostgreSQL site's names). */
  cleanup(sites: { readonly oracle: string; readonly postgres: string }): Promise<void>;
  /** Simulated only: the committed Oracle transactions that changed rows of items with ids in [from, to). */
  transactionsTouching?(from: number, to: number): number;
  /** Simulated only: what the redo held, to show the mesh ran over what it should (threads, logs, shared SCNs). */
  redo?(): { readonly commitsByThread: readonly number[]; readonly sharedScnCommits: number; readonly archivedLogs: number };
}

/** A simulated table's rows in canonical text, as capture reads them (canonicalText of each stored value), sorted. */
export function simulatedOracleItems(db: SimulatedOracle, spec: TableSpec = MESH_ITEMS): (string | null)[][] {
  const described = db.describeTable(SCHEMA, spec.table);
  if (!described) throw new Error(`no table ${SCHEMA}.${spec.table} in the simulator`);
  const positions = spec.columns.map((c) => described.columns.findIndex((d) => d.name === c.name));
  return sortRows(db.rows(SCHEMA, spec.table).map((row) => positions.map((p) => canonicalText(described.columns[p]!, row[p] ?? null))));
}

/** A row's canonical texts as Oracle text forms of the columns (oracle-kinds.ts oracleText). */
function oracleValues(columns: readonly OracleColumn[], values: Readonly<Record<string, string | null>>): Record<string, string | null> {
  return Object.fromEntries(
    Object.entries(values).map(([name, text]) => {
      const column = columns.find((c) => c.name === name);
      if (!column) throw new Error(`no column ${name} in "${SCHEMA}"."items"`);
      return [name, text === null ? null : oracleText(column, text)];
    }),
  );
}

export function simulatedMeshBackend(): OracleMeshBackend & { readonly db: SimulatedOracle } {
  // Two redo threads (RAC); logs switch after 200 records and every 300 ms (the archiver).
  const db = new SimulatedOracle({ threads: 2, recordsPerLog: 200, csfChunk: 300 });
  // The capture's spill directory (it makes sitesync-oracle-<site> in it), removed with the test.
  const spillDirectory = mkdtempSync(join(tmpdir(), 'sitesync-oracle-mesh-'));
  let archiver: Archiver | null = null;
  let sessions = 0;
  /**
   * Application transactions, one per group, each on the next redo thread: all written, then committed in order,
   * each after the first asking for the SCN of the commit before. A row the sink's open transaction holds:
   * Oracle would wait; here the application tries again.
   */
  async function simulatedCommit(groups: readonly (readonly SourceOp[])[]): Promise<void> {
    const columns = db.describeTable(SCHEMA, 'items')!.columns;
    const first = sessions;
    sessions += groups.length;
    for (let attempt = 0; ; attempt++) {
      const txs = groups.map((_, i) => db.begin(1 + ((first + i) % 2)));
      try {
        groups.forEach((ops, i) => {
          const tx = txs[i]!;
          for (const op of ops) {
            if (op.op === 'insert') tx.insert(SCHEMA, 'items', oracleValues(columns, op.values));
            else if (op.op === 'update') tx.update(SCHEMA, 'items', oracleValues(columns, op.where), oracleValues(columns, op.set));
            else tx.delete(SCHEMA, 'items', oracleValues(columns, op.where));
          }
        });
      } catch (error) {
        for (const tx of txs) tx.rollback();
        if (!(error instanceof SimLockError) || attempt >= 50) throw error;
        await sleep(20);
        continue;
      }
      txs.forEach((tx, i) => tx.commit({ shareScn: i > 0 }));
      return;
    }
  }
  return {
    db,
    url: 'oracle://sim:sim@simulated:1521/LONDON',
    connector: createOracleConnector(simulatedOracleIo(db), { pollIntervalMs: 50, spillDirectory }),
    convergeMs: 30_000,
    quietMs: 2500,
    async prepare() {
      prepareSimulatedSite(db);
      db.createTable(SCHEMA, 'items', SIM_COLUMNS);
      archiver = startArchiver(db, 300);
    },
    commit: (ops) => simulatedCommit([ops]),
    commitTogether: (groups) => simulatedCommit(groups),
    rows: async () => simulatedOracleItems(db),
    async appliedTransactions(source) {
      const row = db.rows('SITESYNC', 'APPLY_PROGRESS').find((r) => r[0] === source);
      return row ? Number(row[4]) : null;
    },
    async cleanup() {
      archiver?.stop();
      rmSync(spillDirectory, { recursive: true, force: true });
    },
    redo() {
      const committed = db.committed();
      const byScn = new Map<bigint, number>();
      for (const c of committed) byScn.set(c.commitScn, (byScn.get(c.commitScn) ?? 0) + 1);
      return {
        commitsByThread: [1, 2].map((thread) => committed.filter((c) => c.thread === thread).length),
        sharedScnCommits: committed.filter((c) => byScn.get(c.commitScn)! > 1).length,
        archivedLogs: [1, 2].reduce((n, thread) => n + db.logList(thread).filter((l) => l.archived).length, 0),
      };
    },
    transactionsTouching(from, to) {
      const inRange = (values: Readonly<Record<string, string | null>> | null): boolean => values !== null && Number(values.id) >= from && Number(values.id) < to;
      return db.committed().filter((c) => c.changes.some((ch) => ch.owner === SCHEMA && ch.table === 'items' && (inRange(ch.before) || inRange(ch.after)))).length;
    },
  };
}

/** Two rows with every column set (canonical texts of the Oracle columns' kinds); the second holds bigint's extremes' neighbours. */
const FULL: readonly Record<string, string>[] = [
  {
    id: '1',
    qty: '-123456789',
    price: '1234567890.12',
    name: 'héllo, "wörld" \\ ✓ it\'s',
    data: '\\x00ff10',
    day: '2024-02-29 13:45:10',
    at: '2024-02-29 13:45:10.123456+00',
    local: '2024-02-29 13:45:10.123456',
    flag: '1',
    ratio: '3.141592653589793',
  },
  {
    id: '2',
    qty: '999999999',
    price: '-0.50',
    name: 'x',
    data: '\\xcafebabe',
    day: '1999-12-31 23:59:59',
    at: '2001-09-09 01:46:40+00',
    local: '1999-12-31 23:59:59',
    flag: '0',
    ratio: '1e+100',
  },
];

/** The extremes of bigint as keys: decimal(19,0) from Oracle, into bigint at PostgreSQL. */
const EXTREMES = ['-9223372036854775808', '9223372036854775807'];

const insert = (values: Record<string, string | null>): SourceOp => ({ op: 'insert', table: MESH_ITEMS, values });
const update = (id: number, set: Record<string, string | null>): SourceOp => ({ op: 'update', table: MESH_ITEMS, where: { id: String(id) }, set });
const remove = (id: number | string): SourceOp => ({ op: 'delete', table: MESH_ITEMS, where: { id: String(id) } });

/** Ids of the long transactions. */
const LONG_FROM = 1000;
const LONG_ROWS = 300;

/** The mesh's tests, on one Oracle backend. */
export function oracleMesh(name: string, backend: OracleMeshBackend): void {
  describe(`PostgreSQL ↔ Oracle (${name})`, () => {
    let t: TestSites;
    let paris: string;
    let london: string;
    const running = new Map<string, RunningSite>();
    const parked: { site: string; code: string; reason: string }[] = [];
    /** Transactions applied, by `site<-source`. */
    const applied = new Map<string, number>();
    /** Transactions the Oracle site's capture skipped as relayed. */
    let relayedSkipped = 0;
    /** Messages each site published that were parts of a transaction but its last. */
    let londonParts = 0;
    let parisParts = 0;
    /** Transactions written by applications: at PostgreSQL, at Oracle. */
    let postgresWrites = 0;
    let oracleWrites = 0;
    /** Ids parked at Oracle: at PostgreSQL only. */
    const parkedIds = new Set<string>();

    const count = (site: string, source: string): number => applied.get(`${site}<-${source}`) ?? 0;

    function listen(site: string, events: PipelineEvents): void {
      events.on('apply:parked', (p) => parked.push({ site, code: p.code, reason: p.reason }));
      events.on('apply:applied', (a) => applied.set(`${site}<-${a.source}`, count(site, a.source) + a.transactions));
      events.on('capture:skipped', (s) => {
        if (s.reason === 'relayed' && site === london) relayedSkipped++;
      });
      events.on('capture:published', (p) => {
        if (p.transactions !== 0) return;
        if (site === london) londonParts++;
        else parisParts++;
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

    async function atOracle(ops: readonly SourceOp[]): Promise<void> {
      await backend.commit(ops);
      oracleWrites++;
    }

    async function atOracleTogether(groups: readonly (readonly SourceOp[])[]): Promise<void> {
      await backend.commitTogether(groups);
      oracleWrites += groups.length;
    }

    /** PostgreSQL's rows with its boolean as Oracle's NUMBER(1) holds it, parked ids left out. */
    const pgRows = async (): Promise<(string | null)[][]> =>
      sortRows(
        (await postgresRows(dbUrl(t.db('paris')), MESH_ITEMS, SCHEMA))
          .filter((r) => !parkedIds.has(r[0]!))
          .map((r) => r.map((v, i) => (i === FLAG && v !== null ? (v === 't' ? '1' : v === 'f' ? '0' : `?${v}`) : v))),
      );

    async function converged(what: string): Promise<(string | null)[][]> {
      let last = '';
      return waitFor(
        `${what}: both sites hold the same rows`,
        async () => {
          const [a, b] = await Promise.all([pgRows(), backend.rows()]);
          const shown = (rows: (string | null)[][]): string => (rows.length > 20 ? `${rows.length} rows, ${JSON.stringify(rows.slice(0, 20))}…` : JSON.stringify(rows));
          last = `postgres ${shown(a)}\noracle   ${shown(b)}`;
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
          const atOracle = await backend.appliedTransactions(paris);
          last = `paris<-london ${count(paris, london)} of ${oracleWrites}; SITESYNC.APPLY_PROGRESS(${paris}) ${atOracle} of ${postgresWrites}`;
          return count(paris, london) === oracleWrites && atOracle === postgresWrites;
        },
        backend.convergeMs,
      ).catch((error: Error) => {
        throw new Error(`${error.message}\n${last}`);
      });
      // Every transaction london applied (or parked) was captured there and dropped as relayed.
      await waitFor(`${what}: london's capture skipped what its sink wrote (${relayedSkipped} of ${postgresWrites})`, async () => relayedSkipped >= postgresWrites, backend.convergeMs);
    }

    before(async () => {
      await backend.prepare();
      const connectors = new Map(CONNECTORS);
      connectors.set('oracle', backend.connector);
      t = await createTestSites(
        ['paris', 'london'],
        (sites) => ({
          sites: {
            [sites.paris!]: { postgres: dbUrl(`sitesync_test_${sites.paris}`) },
            // Only SCHEMA.items: a live database may hold other tables (another test's, left behind).
            [sites.london!]: { database: { kind: 'oracle', url: backend.url }, tables: [`${SCHEMA}.items`] },
          },
          // Small messages: the long transactions below travel in many parts.
          capture: { statusIntervalSeconds: 0.2, heartbeatSeconds: 2, maxMessageBytes: 4096 },
          apply: { retrySeconds: 0.5, onDataError: 'park' },
        }),
        { leastPrivilege: false, connectors },
      );
      paris = t.sites.paris!;
      london = t.sites.london!;
      await sql(t.db('paris'), POSTGRES_DDL);
      await start('london');
      await start('paris');
    });

    after(async () => {
      for (const site of running.values()) await site.stop();
      await t?.cleanup();
      if (paris && london) await backend.cleanup({ oracle: london, postgres: paris });
      else await backend.cleanup({ oracle: '', postgres: '' });
    });

    test('inserts, updates and deletes at PostgreSQL arrive at Oracle value for value, a key change included', async () => {
      const names = MESH_ITEMS.columns.map((c) => `"${c.name}"`).join(', ');
      const params = MESH_ITEMS.columns.map((_, n) => `$${n + 1}`).join(', ');
      for (const row of FULL) {
        await atPostgres(`INSERT INTO ${PG_TABLE} (${names}) VALUES (${params})`, MESH_ITEMS.columns.map((c) => (c.name === 'flag' ? row.flag === '1' : row[c.name])));
      }
      for (const id of EXTREMES) await atPostgres(`INSERT INTO ${PG_TABLE} (id, name) VALUES ($1, 'extreme')`, [id]);
      const first = await converged('four inserts at paris');
      assert.equal(first.length, 4);
      assert.deepEqual(first.find((r) => r[0] === '1'), MESH_ITEMS.columns.map((c) => FULL[0]![c.name]!), 'every value as PostgreSQL printed it');
      assert.deepEqual(first.find((r) => r[0] === '2'), MESH_ITEMS.columns.map((c) => FULL[1]![c.name]!));
      assert.deepEqual(first.map((r) => r[0]).filter((id) => id!.length > 5).sort(), [...EXTREMES].sort(), 'the extremes of bigint as NUMBER(19,0)');

      await atPostgres(`UPDATE ${PG_TABLE} SET qty = 42, name = 'uno', ratio = NULL, flag = false WHERE id = 1`);
      await atPostgres(`UPDATE ${PG_TABLE} SET id = 5 WHERE id = 2`); // a key change
      const moved = await converged('two updates at paris');
      assert.deepEqual(moved.map((r) => r[0]).filter((id) => id!.length < 5), ['1', '5']);
      assert.deepEqual(moved.find((r) => r[0] === '5')!.slice(1), MESH_ITEMS.columns.slice(1).map((c) => FULL[1]![c.name]!), 'the row under its new key, whole');
      await atPostgres(`DELETE FROM ${PG_TABLE} WHERE id = 5`);
      await atPostgres(`DELETE FROM ${PG_TABLE} WHERE id = ANY($1::bigint[])`, [EXTREMES]);
      const rows = await converged('two deletes at paris');
      assert.deepEqual(rows.map((r) => [r[0], r[1], r[3], r[FLAG], r[9]]), [['1', '42', 'uno', '0', null]]);
      await exactlyOnce('paris writes');
    });

    test('inserts, updates and deletes at Oracle arrive at PostgreSQL, a key change and bigint\'s extremes included', async () => {
      const three = { id: '3', qty: '7', price: '12.50', name: 'tres ✓', data: '\\xcafe', day: '2023-03-03 10:00:00', at: '2023-03-03 10:00:00.5+00', local: '2023-03-03 11:00:00.000001', flag: '1', ratio: '0.1' };
      await atOracle([insert(three), insert({ id: '4', name: 'cuatro' })]);
      await atOracleTogether(EXTREMES.map((id) => [insert({ id, name: 'extreme' })])); // two sessions, one commit SCN
      await atOracle([update(1, { qty: '43', name: 'one', flag: '1' })]);
      await atOracle([update(4, { id: '6' })]); // a key change: an update of the key column in the redo
      const moved = await converged('inserts, an update and a key change at london');
      assert.deepEqual(moved.map((r) => r[0]).filter((id) => id!.length < 5), ['1', '3', '6']);
      assert.deepEqual(moved.find((r) => r[0] === '6')![3], 'cuatro');
      assert.deepEqual(moved.map((r) => r[0]).filter((id) => id!.length > 5).sort(), [...EXTREMES].sort(), 'decimal(19,0) into bigint');
      await atOracleTogether([[remove(6)], EXTREMES.map((id) => remove(id))]);
      const rows = await converged('deletes at london');
      assert.deepEqual(rows.map((r) => r[0]), ['1', '3']);
      assert.deepEqual(rows[1], ['3', '7', '12.50', 'tres ✓', '\\xcafe', '2023-03-03 10:00:00', '2023-03-03 10:00:00.5+00', '2023-03-03 11:00:00.000001', '1', '0.1']);
      assert.deepEqual([rows[0]![1], rows[0]![3], rows[0]![FLAG]], ['43', 'one', '1']);
      const [pg] = await sql<{ flag: boolean; id: string }>(t.db('paris'), `SELECT flag, id::text AS id FROM ${PG_TABLE} WHERE id = 3`);
      assert.equal(pg!.flag, true, 'NUMBER(1) 1 is true at PostgreSQL');
      await exactlyOnce('london writes');
    });

    test('nothing loops: once both sites agree, neither applies anything more', async () => {
      await converged('before watching');
      await exactlyOnce('before watching');
      // What `sitesync status` shows of the Oracle site: its capture, and how far paris is applied there.
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

    test('a value Oracle cannot hold is parked with its reason at the Oracle site, and later rows flow', async () => {
      await atPostgres(`INSERT INTO ${PG_TABLE} (id, name) VALUES (10, '')`);
      await atPostgres(`INSERT INTO ${PG_TABLE} (id, price) VALUES (11, 'NaN')`);
      await atPostgres(`INSERT INTO ${PG_TABLE} (id, name) VALUES (12, 'after')`);
      await waitFor('the row after them at Oracle', async () => (await backend.rows()).some((r) => r[0] === '12'), backend.convergeMs);
      await waitFor('two parked at london', async () => parked.filter((p) => p.site === london).length >= 2, backend.convergeMs);
      const at = (pattern: RegExp): boolean => parked.some((p) => p.site === london && p.code === 'SITESYNC_ERR_APPLY_DATA' && pattern.test(p.reason));
      assert.ok(at(/"name".*empty string as NULL/), `london parks the empty string: ${JSON.stringify(parked)}`);
      assert.ok(at(/"price".*NaN/), `london parks the NaN numeric: ${JSON.stringify(parked)}`);
      assert.ok(!parked.some((p) => p.site === paris), `nothing parked at paris: ${JSON.stringify(parked)}`);
      const ids = (await backend.rows()).map((r) => r[0]);
      assert.ok(!ids.includes('10') && !ids.includes('11'), 'never silently changed into something else (a NULL)');
      parkedIds.add('10');
      parkedIds.add('11');
      await converged('the rest');
      await exactlyOnce('with parked transactions');
    });

    test("a restart of the Oracle site's pipeline resumes without loss or duplicate", async () => {
      // Written just before the stop: capture may or may not have published them, or had them confirmed.
      await atOracle([insert({ id: '40', name: 'just before the stop' })]);
      await atPostgres(`INSERT INTO ${PG_TABLE} (id, name) VALUES (30, 'just before the stop')`);
      await running.get('london')!.stop();
      running.delete('london');
      // While it is stopped: both sites go on writing (the Oracle's redo goes on being switched and archived).
      await atPostgres(`INSERT INTO ${PG_TABLE} (id, name) VALUES (31, 'while london is down')`);
      await atPostgres(`UPDATE ${PG_TABLE} SET name = 'changed while london is down' WHERE id = 3`);
      await atOracleTogether([[insert({ id: '41', name: 'while london is down' }), update(1, { qty: '44' })], [remove(40)]]);
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

    test('a long transaction travels in parts and arrives whole: from Oracle, then back from PostgreSQL', async (context) => {
      const ids = Array.from({ length: LONG_ROWS }, (_, i) => LONG_FROM + i);
      const partsBefore = londonParts;
      const appliedBefore = count(paris, london);
      const inRange = `id >= ${LONG_FROM} AND id < ${LONG_FROM + LONG_ROWS}`;
      await atOracle(ids.map((id) => insert({ id: String(id), qty: String(id), name: `${'long '.repeat(38)}${id}`, data: '\\x0102030405060708', flag: '1' })));
      // Watch PostgreSQL while it applies: it only ever holds none or all of the rows.
      const seen = new Set<number>();
      await waitFor(
        'the long transaction at paris',
        async () => {
          const [row] = await sql<{ n: number }>(t.db('paris'), `SELECT count(*)::int AS n FROM ${PG_TABLE} WHERE ${inRange}`);
          seen.add(row!.n);
          return row!.n === LONG_ROWS;
        },
        backend.convergeMs,
      );
      assert.deepEqual([...seen].filter((n) => n !== 0 && n !== LONG_ROWS), [], 'never partly visible');
      const [commits] = await sql<{ n: number }>(t.db('paris'), `SELECT count(DISTINCT xmin::text)::int AS n FROM ${PG_TABLE} WHERE ${inRange}`);
      assert.equal(commits!.n, 1, 'one PostgreSQL transaction');
      assert.ok(londonParts - partsBefore >= 10, `travelled in parts (${londonParts - partsBefore} parts before the last)`);
      await converged('the long transaction from london');
      assert.equal(count(paris, london), appliedBefore + 1, 'reported as one applied transaction');

      // And back: one UPDATE of them all at PostgreSQL, in parts to the Oracle sink (SITESYNC.SPILLED_PARTS), which
      // applies it in one Oracle transaction; then one DELETE of them all.
      const progressBefore = await backend.appliedTransactions(paris);
      const parisPartsBefore = parisParts;
      await atPostgres(`UPDATE ${PG_TABLE} SET name = 'back ' || name, qty = -qty WHERE ${inRange}`);
      const changed = new Set<number>();
      await waitFor(
        'the long update at london',
        async () => {
          const n = (await backend.rows()).filter((r) => Number(r[0]) >= LONG_FROM && r[3]!.startsWith('back ')).length;
          changed.add(n);
          return n === LONG_ROWS;
        },
        backend.convergeMs,
      );
      assert.deepEqual([...changed].filter((n) => n !== 0 && n !== LONG_ROWS), [], 'never partly visible at Oracle');
      await converged('the long update from paris');
      assert.equal(await backend.appliedTransactions(paris), progressBefore! + 1, 'one transaction applied at Oracle');
      assert.ok(parisParts - parisPartsBefore >= 10, `travelled in parts (${parisParts - parisPartsBefore} parts before the last)`);
      context.diagnostic(`parts before the last: ${londonParts - partsBefore} from london, ${parisParts - parisPartsBefore} from paris`);
      await atPostgres(`DELETE FROM ${PG_TABLE} WHERE ${inRange}`);
      const rows = await converged('the long delete from paris');
      assert.deepEqual(rows.map((r) => r[0]), ['1', '12', '3', '30', '31', '41']);
      await exactlyOnce('the long transactions');
      if (backend.transactionsTouching) assert.equal(backend.transactionsTouching(LONG_FROM, LONG_FROM + LONG_ROWS), 3, 'one Oracle transaction inserted them, one updated them, one deleted them');
      const before = new Map(applied);
      await sleep(backend.quietMs);
      assert.deepEqual(applied, before, 'nothing loops');
    });

    test('the simulated redo had what the mesh is meant to cross: two threads, shared commit SCNs, archived logs', { skip: backend.redo === undefined }, (context) => {
      const redo = backend.redo!();
      context.diagnostic(`redo: ${JSON.stringify(redo)}`);
      assert.ok(redo.commitsByThread.every((n) => n >= 3), `commits on both redo threads: ${JSON.stringify(redo)}`);
      assert.ok(redo.sharedScnCommits >= 2, `commits sharing an SCN: ${JSON.stringify(redo)}`);
      assert.ok(redo.archivedLogs >= 4, `archived logs mined: ${JSON.stringify(redo)}`);
    });
  });
}

// Registered only when this file is the one run (oracle-live.test.ts imports oracleMesh from it).
if (process.argv[1] !== undefined && pathToFileURL(resolve(process.argv[1])).href === import.meta.url) {
  oracleMesh('simulated Oracle, two redo threads', simulatedMeshBackend());
}
