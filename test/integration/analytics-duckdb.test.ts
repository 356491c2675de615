/**
 * Analytics stores on the real pipeline: a PostgreSQL site writes while two DuckDB sites receive it, one
 * with soft deletes (the default) and one with hard deletes; the soft one's `sitesync run` is SIGKILLed and
 * started again over and over while the source writes. At the end each DuckDB file's current state equals
 * the source's table, its history holds every change exactly once, in order, and a column added at the
 * source appeared without a restart. A MariaDB site streams into DuckDB too. Everything is read through
 * `sitesync query`'s path (Connector.query: the running process's socket, or the file when none runs).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CONNECTORS } from '../../connectors/index.ts';
import { startPrivateMariaDb, type PrivateMariaDb } from '../helpers/private-mariadb.ts';
import { createTestSites, sql, waitFor, type SpawnedSite, type TestSites } from '../helpers/test-sites.ts';
import { seededRandom, below } from '../helpers/seeded-random.ts';

const duckdb = CONNECTORS.get('duckdb')!;
let dir: string;
let t: TestSites;
let soft: string;
let hard: string;

async function query(url: string, text: string): Promise<unknown[][]> {
  return (await duckdb.query!(url, text, { maxRows: 100_000 })).rows as unknown[][];
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sitesync-duckdb-'));
  soft = `duckdb://${join(dir, 'warehouse.duckdb')}`;
  hard = `duckdb://${join(dir, 'cold.duckdb')}?deletes=hard`;
  t = await createTestSites(
    ['paris', 'warehouse', 'cold'],
    (sites) => ({
      sites: {
        [sites.paris!]: { postgres: `postgres://postgres@127.0.0.1:5432/sitesync_test_${sites.paris}` },
        [sites.warehouse!]: { database: { kind: 'duckdb', url: soft }, capture: false },
        [sites.cold!]: { database: { kind: 'duckdb', url: hard }, capture: false },
      },
    }),
    { leastPrivilege: false },
  );
  await sql(t.db('paris'), `CREATE TABLE orders (id bigint PRIMARY KEY, customer text NOT NULL, amount numeric(12,2), note text, at timestamptz DEFAULT now())`);
  // The note is stored out of line (TOASTed) and not compressed: an update that leaves it sends it as unchanged.
  await sql(t.db('paris'), `ALTER TABLE orders ALTER COLUMN note SET STORAGE EXTERNAL`);
});

after(async () => {
  await t?.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

/** The source's rows as text, sorted by id: id|customer|amount|note length|extra. */
async function sourceRows(extra: boolean): Promise<string[]> {
  const rows = await sql<{ r: string }>(t.db('paris'), `SELECT concat_ws('|', id, customer, amount, length(note), ${extra ? 'coalesce(region, \'-\')' : "'-'"}) AS r FROM orders ORDER BY id`);
  return rows.map((r) => r.r);
}

async function storeRows(url: string, extra: boolean): Promise<string[]> {
  const rows = await query(url, `SELECT concat_ws('|', id, customer, amount, length(note), ${extra ? "coalesce(region, '-')" : "'-'"}) FROM public.orders WHERE NOT _sitesync_deleted ORDER BY id`);
  return rows.map((r) => String(r[0]));
}

function spawnUntilReady(short: string): SpawnedSite {
  return t.spawn(short);
}

async function ready(site: SpawnedSite): Promise<void> {
  await waitFor('the DuckDB site to apply', async () => site.output().includes('"msg":"applying"'), 30_000);
}

test('a PostgreSQL site into DuckDB, soft and hard deletes, across SIGKILLs: current state equals the source, history holds every change once', { timeout: 300_000 }, async () => {
  const paris = t.spawn('paris');
  await waitFor('paris to capture', async () => paris.output().includes('"msg":"capture started"'), 30_000);
  let warehouse = spawnUntilReady('warehouse');
  const cold = spawnUntilReady('cold');
  await ready(warehouse);
  await ready(cold);

  const random = seededRandom(18);
  let changes = 0; // row changes committed at paris: what history must hold, once each
  const ids = new Set<number>();
  let next = 1;
  let kills = 0;
  let extra = false;
  for (let round = 0; round < 40; round++) {
    const statements: string[] = [];
    for (let n = 1 + below(random, 5); n > 0; n--) {
      const roll = random();
      if (roll < 0.45 || ids.size < 3) {
        const id = next++;
        ids.add(id);
        statements.push(`INSERT INTO orders (id, customer, amount, note${extra ? ', region' : ''}) VALUES (${id}, 'c${id}', ${below(random, 100000) / 100}, repeat('n${id}', ${1000 + below(random, 3000)})${extra ? `, 'r${id}'` : ''})`);
      } else if (roll < 0.8) {
        const id = [...ids][below(random, ids.size)]!;
        // The note is left as it is: PostgreSQL sends it as unchanged, and the store must keep it.
        statements.push(`UPDATE orders SET amount = amount + 1, customer = customer || '+' WHERE id = ${id}`);
      } else if (roll < 0.9) {
        const id = [...ids][below(random, ids.size)]!;
        const moved = next++;
        ids.delete(id);
        ids.add(moved);
        statements.push(`UPDATE orders SET id = ${moved} WHERE id = ${id}`);
      } else {
        const id = [...ids][below(random, ids.size)]!;
        ids.delete(id);
        statements.push(`DELETE FROM orders WHERE id = ${id}`);
      }
    }
    await sql(t.db('paris'), `BEGIN; ${statements.join('; ')}; COMMIT`);
    changes += statements.length;
    if (round === 20) {
      // A column added at the source appears at the stores without a restart.
      await sql(t.db('paris'), `ALTER TABLE orders ADD COLUMN region text`);
      extra = true;
    }
    if (round % 6 === 3) {
      warehouse.child.kill('SIGKILL');
      await warehouse.exited;
      kills++;
      warehouse = spawnUntilReady('warehouse');
    }
    await new Promise((r) => setTimeout(r, 50 + below(random, 150)));
  }
  await ready(warehouse);
  const expected = await sourceRows(true);
  for (const url of [soft, hard]) {
    let last: string[] = [];
    await waitFor(`${url}: the current state equal to the source`, async () => {
      last = await storeRows(url, true).catch(() => []);
      return JSON.stringify(last) === JSON.stringify(expected);
    }, 60_000).catch((error: Error) => {
      throw new Error(`${error.message}\nsource ${expected.slice(0, 5).join(' ')} … (${expected.length})\nstore  ${last.slice(0, 5).join(' ')} … (${last.length})`);
    });
    const [[historyRows, distinct]] = (await query(url, `SELECT count(*), count(DISTINCT (_sitesync_position, _sitesync_seq)) FROM public.orders__history`)) as [[bigint | number | string, bigint | number | string]];
    assert.equal(Number(distinct), Number(historyRows), `${url}: no change twice in history`);
    assert.equal(Number(historyRows), changes, `${url}: every change of the source once in history`);
    const unknown = await query(url, `SELECT count(*) FROM public.orders__history WHERE len(_sitesync_unchanged) > 0`);
    assert.equal(Number(unknown[0]![0]), 0, 'every unchanged note was found in the current row');
  }
  assert.ok(kills >= 5, `the warehouse was killed ${kills} times`);
  const deletedKept = await query(soft, `SELECT count(*) FROM public.orders WHERE _sitesync_deleted`);
  assert.ok(Number(deletedKept[0]![0]) > 0, 'soft deletes keep the deleted rows, flagged');
  const deletedHard = await query(hard, `SELECT count(*) FROM public.orders WHERE _sitesync_deleted`);
  assert.equal(Number(deletedHard[0]![0]), 0, 'hard deletes keep none');
  const ops = await query(soft, `SELECT _sitesync_op, count(*) FROM public.orders__history GROUP BY 1 ORDER BY 1`);
  assert.deepEqual(ops.map((r) => r[0]), ['delete', 'insert', 'update'], 'history says what each change was');

  // The store answers while its process runs (through the socket), and refuses a write.
  await assert.rejects(query(soft, `DELETE FROM public.orders`), /read-only|read only/i);
});

test('a MariaDB site into DuckDB: the same rows, typed, with their history', { timeout: 240_000 }, async () => {
  let mariadb: PrivateMariaDb | null = null;
  let m: TestSites | null = null;
  const url = `duckdb://${join(dir, 'from-mariadb.duckdb')}`;
  try {
    mariadb = await startPrivateMariaDb();
    await mariadb.query(`CREATE DATABASE shop`);
    await mariadb.query(`CREATE TABLE shop.items (id int PRIMARY KEY, name varchar(40) NOT NULL, price decimal(10,2), day date)`);
    const port = mariadb.port;
    m = await createTestSites(
      ['madrid', 'lake'],
      (sites) => ({
        sites: {
          [sites.madrid!]: { database: { kind: 'mariadb', url: `mariadb://root@127.0.0.1:${port}/` } },
          [sites.lake!]: { database: { kind: 'duckdb', url }, capture: false },
        },
      }),
      { leastPrivilege: false },
    );
    const madrid = m.spawn('madrid');
    const lake = m.spawn('lake');
    await waitFor('madrid to capture', async () => madrid.output().includes('"msg":"capture started"'), 30_000);
    await waitFor('the lake to apply', async () => lake.output().includes('"msg":"applying"'), 30_000);
    await mariadb.query(`INSERT INTO shop.items VALUES (1, 'uno', 1.50, '2024-01-02'), (2, 'dos', 2.00, NULL), (3, 'tres', NULL, '2024-03-04')`);
    await mariadb.query(`UPDATE shop.items SET price = 9.99 WHERE id = 2`);
    await mariadb.query(`DELETE FROM shop.items WHERE id = 3`);
    const rows = await waitFor('the lake to hold madrid rows', async () => {
      const r = await query(url, `SELECT id, name, CAST(price AS VARCHAR), CAST(day AS VARCHAR) FROM shop.items WHERE NOT _sitesync_deleted ORDER BY id`).catch(() => []);
      return r.length === 2 && r[1]![2] === '9.99' ? r : undefined;
    }, 60_000);
    assert.deepEqual(rows.map((r) => r.map((v) => (v === null ? null : String(v)))), [['1', 'uno', '1.50', '2024-01-02'], ['2', 'dos', '9.99', null]]);
    const history = await query(url, `SELECT _sitesync_op, count(*) FROM shop.items__history GROUP BY 1 ORDER BY 1`);
    assert.deepEqual(history.map((r) => [r[0], Number(r[1])]), [['delete', 1], ['insert', 3], ['update', 1]]);
  } finally {
    await m?.cleanup();
    await mariadb?.destroy();
  }
});
