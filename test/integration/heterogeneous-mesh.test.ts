/**
 * A PostgreSQL site and a MariaDB site replicate each other both ways, on a schema of the types they
 * share (integers, decimals, text, bytes, dates and timestamps, json, booleans, enums): every value arrives
 * as the other database holds it, nothing loops, and a value the target cannot hold (a PostgreSQL infinity
 * or array into MariaDB, a MariaDB zero date into PostgreSQL) is parked with its reason while the rest flows.
 * Writes to the same rows at both sites while they are apart are conflicts that both sites resolve alike
 * (last-writer-wins on the commit times as they travel: whole seconds from MariaDB) and both log.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import mysql from 'mysql2/promise';
import type { PipelineEvents } from '../../src/observability/pipeline-events.ts';
import { startPrivateMariaDb, type PrivateMariaDb } from '../helpers/private-mariadb.ts';
import { createTestSites, dbUrl, sql, waitFor, type RunningSite, type TestSites } from '../helpers/test-sites.ts';
import { MARIADB_TYPES, mariadbRows } from '../conformance/harnesses/mariadb.ts';
import { POSTGRES_TYPES, postgresRows } from '../conformance/harnesses/postgres.ts';
import { ENUM_LABELS, KIND_SAMPLES, type TableSpec } from '../conformance/tables.ts';

const ITEMS: TableSpec = {
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
    { name: 'doc', kind: 'json' },
    { name: 'flag', kind: 'boolean' },
    { name: 'mood', kind: 'enum' },
  ],
};

let mariadb: PrivateMariaDb;
let t: TestSites;
let paris: string;
let madrid: string;
const running = new Map<string, RunningSite>();
const parked: { site: string; code: string; reason: string }[] = [];
const applied = new Map<string, number>();

function listen(site: string, events: PipelineEvents): void {
  events.on('apply:parked', (p) => parked.push({ site, code: p.code, reason: p.reason }));
  events.on('apply:applied', (a) => applied.set(site, (applied.get(site) ?? 0) + a.transactions));
}

async function atMariaDb(text: string, values: unknown[] = [], sqlMode?: string): Promise<void> {
  const connection = await mysql.createConnection({ host: '127.0.0.1', port: mariadb.port, user: 'root' });
  try {
    await connection.query(`SET time_zone = '+00:00'`);
    if (sqlMode !== undefined) await connection.query(`SET sql_mode = ?`, [sqlMode]);
    await connection.query(text, values);
  } finally {
    await connection.end();
  }
}

const pgRows = (): Promise<(string | null)[][]> => postgresRows(dbUrl(t.db('paris')), ITEMS);
const mdbRows = (): Promise<(string | null)[][]> => mariadbRows(mariadb.port, 'public', ITEMS);

async function converged(what: string): Promise<(string | null)[][]> {
  let last = '';
  return waitFor(`${what}: both sites hold the same rows`, async () => {
    const [a, b] = await Promise.all([pgRows(), mdbRows()]);
    last = `postgres ${JSON.stringify(a)}\nmariadb ${JSON.stringify(b)}`;
    return JSON.stringify(a) === JSON.stringify(b) ? a : undefined;
  }, 30_000).catch((error: Error) => {
    throw new Error(`${error.message}\n${last}`);
  });
}

before(async () => {
  mariadb = await startPrivateMariaDb();
  t = await createTestSites(
    ['paris', 'madrid'],
    (sites) => ({
      sites: {
        [sites.paris!]: { postgres: dbUrl(`sitesync_test_${sites.paris}`) },
        [sites.madrid!]: { database: { kind: 'mariadb', url: mariadb.url() } },
      },
      apply: { retrySeconds: 0.5, onDataError: 'park' },
    }),
    { leastPrivilege: false },
  );
  paris = t.sites.paris!;
  madrid = t.sites.madrid!;
  const pgColumns = ITEMS.columns.map((c) => `"${c.name}" ${POSTGRES_TYPES[c.kind]}${c.key ? ' PRIMARY KEY' : ''}`);
  await sql(t.db('paris'), `CREATE TYPE conformance_mood AS ENUM (${ENUM_LABELS.map((l) => `'${l}'`).join(', ')});
    CREATE TABLE items (${pgColumns.join(', ')}); CREATE TABLE tags (id int PRIMARY KEY, tags text[])`);
  const mdbColumns = ITEMS.columns.map((c) => `\`${c.name}\` ${MARIADB_TYPES[c.kind]}`);
  await mariadb.query(`CREATE DATABASE public`);
  await mariadb.query(`CREATE TABLE public.items (${mdbColumns.join(', ')}, PRIMARY KEY (id))`);
  await mariadb.query(`CREATE TABLE public.tags (id int PRIMARY KEY, tags text)`);
  await start('madrid');
  await start('paris');
});

async function start(short: 'paris' | 'madrid'): Promise<void> {
  const site = await t.start(short);
  listen(t.sites[short]!, site.events);
  running.set(short, site);
}

after(async () => {
  await t?.cleanup();
  await mariadb?.destroy();
});

/** A row of ITEMS from the samples (index 0 or 1) with its id. */
function sample(id: number, i: 0 | 1): Record<string, string> {
  return Object.fromEntries(ITEMS.columns.map((c) => [c.name, c.name === 'id' ? String(id) : KIND_SAMPLES[c.kind]![i]]));
}

test('writes at PostgreSQL arrive at MariaDB, and writes at MariaDB at PostgreSQL, value for value', async () => {
  const names = ITEMS.columns.map((c) => `"${c.name}"`).join(', ');
  for (const [id, i] of [[1, 0], [2, 1]] as const) {
    const row = sample(id, i);
    const casts = ITEMS.columns.map((c, n) => `$${n + 1}::${POSTGRES_TYPES[c.kind]}`).join(', ');
    await sql(t.db('paris'), `INSERT INTO items (${names}) VALUES (${casts})`, ITEMS.columns.map((c) => row[c.name]));
  }
  const first = await converged('two inserts at paris');
  assert.equal(first.length, 2);
  assert.deepEqual(first[0], ITEMS.columns.map((c) => sample(1, 0)[c.name]), 'every value as the source printed it');

  // At madrid, as its application writes: MariaDB's own spellings (1 for true, a TIMESTAMP in UTC, bytes as bytes).
  await atMariaDb(
    `INSERT INTO public.items (id, qty, price, name, data, day, at, local, doc, flag, mood) VALUES (3, 7, 12.50, 'tres', UNHEX('cafe'), '2023-03-03', '2023-03-03 10:00:00.5', '2023-03-03 11:00:00', '{"k": 1}', 1, 'sad')`,
  );
  await atMariaDb(`UPDATE public.items SET qty = 42, name = 'uno' WHERE id = 1`);
  await atMariaDb(`DELETE FROM public.items WHERE id = 2`);
  const rows = await converged('an insert, an update and a delete at madrid');
  assert.deepEqual(rows.map((r) => r[0]), ['1', '3']);
  assert.deepEqual(rows[1], ['3', '7', '12.50', 'tres', '\\xcafe', '2023-03-03', '2023-03-03 10:00:00.5+00', '2023-03-03 11:00:00', '{"k": 1}', 't', 'sad']);
  assert.equal(rows[0]![1], '42');

  // Nothing loops: once both hold the same rows, neither applies anything more.
  const before = new Map(applied);
  await new Promise((resolve) => setTimeout(resolve, 2500));
  assert.deepEqual(applied, before, 'no transaction comes back to the site it came from');
});

test('a value the target cannot hold is parked with its reason, and the rest flows', async () => {
  // PostgreSQL infinity has no MariaDB TIMESTAMP; an array has no MariaDB column type.
  await sql(t.db('paris'), `INSERT INTO items (id, at) VALUES (10, 'infinity')`);
  await sql(t.db('paris'), `INSERT INTO tags VALUES (1, '{a,b}')`);
  await sql(t.db('paris'), `INSERT INTO items (id, name) VALUES (11, 'after')`);
  // A MariaDB zero date (allowed by a lax sql_mode) has no PostgreSQL date.
  await atMariaDb(`INSERT INTO public.items (id, day) VALUES (20, '0000-00-00')`, [], '');
  await atMariaDb(`INSERT INTO public.items (id, name) VALUES (21, 'later')`);

  await waitFor('the rows after them', async () => (await mdbRows()).some((r) => r[0] === '11') && (await pgRows()).some((r) => r[0] === '21'));
  await waitFor('three parked', async () => parked.length >= 3);
  // The code is the sink's: sitesync's own for a value it refuses before sending, the database's (a SQLSTATE) for one the database refuses.
  const at = (site: string, pattern: RegExp): boolean => parked.some((p) => p.site === site && /^SITESYNC_ERR_APPLY_DATA$|^22/.test(p.code) && pattern.test(p.reason));
  assert.ok(at(madrid, /infinity/i), `madrid parks the infinite timestamp: ${JSON.stringify(parked)}`);
  assert.ok(at(madrid, /array/i), `madrid parks the array: ${JSON.stringify(parked)}`);
  assert.ok(at(paris, /0000-00-00/), `paris parks the zero date: ${JSON.stringify(parked)}`);
  assert.ok(!(await mdbRows()).some((r) => r[0] === '10'), 'never silently changed into something else');
  assert.ok(!(await pgRows()).some((r) => r[0] === '20'));
});

/** The outcome a site logged for each row written at both sites: who won, or that the row is gone. */
function outcomes(rows: readonly { table_name: string; key: unknown; kind: string; remote_site: string; local_site: string | null; winner: string }[], site: string): Map<string, string> {
  const result = new Map<string, string>();
  for (const r of rows) {
    const parsed = (typeof r.key === 'string' ? JSON.parse(r.key) : r.key) as Record<string, unknown>;
    const key = `${r.table_name} ${JSON.stringify(Object.fromEntries(Object.entries(parsed).sort(([a], [b]) => (a < b ? -1 : 1))))}`;
    const deleted = r.kind === 'update_missing' || r.kind === 'delete_missing' || (r.kind === 'delete_origin_differs' && r.winner === 'remote');
    const outcome = deleted ? 'deleted' : r.winner === 'remote' ? r.remote_site : r.local_site!;
    assert.ok(!result.has(key) || result.get(key) === outcome, `${site} logged two outcomes for ${key}`);
    result.set(key, outcome);
  }
  return result;
}

test('concurrent writes to the same rows at both sites: resolved alike, and both sites log the same winner', async () => {
  const ids = (rows: (string | null)[][]): (string | null)[][] => rows.filter((r) => Number(r[0]) >= 100 && Number(r[0]) < 200);
  await sql(t.db('paris'), `INSERT INTO items (id, name) VALUES (101, 'seed'), (102, 'seed'), (103, 'seed'), (104, 'seed')`);
  await waitFor('the seeds at madrid', async () => ids(await mdbRows()).length === 4);

  // Apart: both pipelines stopped. Each row is written at both sites, the second write more than a second
  // after the first (MariaDB's commit times are whole seconds), so that last-writer-wins has a later one.
  for (const site of running.values()) await site.stop();
  running.clear();
  // Also a second after madrid's last write that paris has seen (the tests before): a madrid write in that
  // same second would count as seen by paris (its causal context holds madrid's times in whole seconds too).
  await new Promise((resolve) => setTimeout(resolve, 1100));
  const atParis = (text: string): Promise<unknown> => sql(t.db('paris'), text);
  // First writes.
  await atParis(`UPDATE items SET name = 'paris first' WHERE id = 101`);
  await atMariaDb(`UPDATE public.items SET name = 'madrid first' WHERE id = 102`);
  await atParis(`INSERT INTO items (id, name) VALUES (110, 'paris first')`);
  await atMariaDb(`INSERT INTO public.items (id, name) VALUES (111, 'madrid first')`);
  await atParis(`UPDATE items SET name = 'paris first' WHERE id = 103`);
  await atMariaDb(`UPDATE public.items SET name = 'madrid first' WHERE id = 104`);
  await new Promise((resolve) => setTimeout(resolve, 1100));
  // Second writes: these win (a delete racing an update wins whichever came last).
  await atMariaDb(`UPDATE public.items SET name = 'madrid later' WHERE id = 101`);
  await atParis(`UPDATE items SET name = 'paris later' WHERE id = 102`);
  await atMariaDb(`INSERT INTO public.items (id, name) VALUES (110, 'madrid later')`);
  await atParis(`INSERT INTO items (id, name) VALUES (111, 'paris later')`);
  await atMariaDb(`DELETE FROM public.items WHERE id = 103`);
  await atParis(`DELETE FROM items WHERE id = 104`);
  await start('madrid');
  await start('paris');

  let last = '';
  const rows = await waitFor('both sites hold the same rows 100-199', async () => {
    const [a, b] = await Promise.all([pgRows(), mdbRows()]);
    last = `postgres ${JSON.stringify(ids(a))}\nmariadb ${JSON.stringify(ids(b))}`;
    return JSON.stringify(ids(a)) === JSON.stringify(ids(b)) ? ids(a) : undefined;
  }, 60_000).catch((error: Error) => {
    throw new Error(`${error.message}\n${last}`);
  });
  const name = ITEMS.columns.findIndex((c) => c.name === 'name');
  assert.deepEqual(
    rows.map((r) => [r[0], r[name]]),
    [
      ['101', 'madrid later'],
      ['102', 'paris later'],
      ['110', 'madrid later'],
      ['111', 'paris later'],
    ],
  );

  // Both sites logged the same outcome for every row written on both sides.
  const expected = new Map<string, string>([
    ['public.items {"id":"101"}', madrid],
    ['public.items {"id":"102"}', paris],
    ['public.items {"id":"103"}', 'deleted'],
    ['public.items {"id":"104"}', 'deleted'],
    ['public.items {"id":"110"}', madrid],
    ['public.items {"id":"111"}', paris],
  ]);
  const mariadbLog = async (): Promise<Map<string, string>> => {
    const connection = await mysql.createConnection({ host: '127.0.0.1', port: mariadb.port, user: 'root' });
    try {
      const [logged] = await connection.query<mysql.RowDataPacket[]>('SELECT table_name, `key`, kind, remote_site, local_site, winner FROM sitesync.conflicts ORDER BY id');
      return outcomes(logged as never, madrid);
    } finally {
      await connection.end();
    }
  };
  const postgresLog = async (): Promise<Map<string, string>> =>
    outcomes(await sql<never>(t.db('paris'), 'SELECT table_name, key, kind, remote_site, local_site, winner FROM sitesync.conflicts ORDER BY id'), paris);
  // Rows of the earlier tests (below 100) are no part of this one.
  const ours = (m: Map<string, string>): Map<string, string> => new Map([...m].filter(([k]) => Number(/"id":"(\d+)"/.exec(k)?.[1]) >= 100).sort());
  let seen = '';
  const [atPostgres, atMariaDbSite] = await waitFor('both conflict logs complete', async () => {
    const logs = (await Promise.all([postgresLog(), mariadbLog()])).map(ours);
    seen = `postgres ${JSON.stringify([...logs[0]!])}\nmariadb ${JSON.stringify([...logs[1]!])}`;
    return logs.every((m) => m.size >= expected.size) ? logs : undefined;
  }).catch((error: Error) => {
    throw new Error(`${error.message}\n${seen}`);
  });
  assert.deepEqual(atPostgres, expected, 'PostgreSQL (paris) logged');
  assert.deepEqual(atMariaDbSite, expected, 'MariaDB (madrid) logged');
});
