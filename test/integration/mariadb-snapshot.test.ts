/**
 * Online snapshots from a MariaDB site through the real pipeline (a private MariaDB server, the tests'
 * PostgreSQL, RabbitMQ, `sitesync run` processes and the `sitesync snapshot --wait` command): rows the
 * MariaDB table held before replication reach the PostgreSQL site while both sites keep writing, and a
 * SIGKILL of the MariaDB site's process mid-snapshot resumes from the chunk that was not confirmed. The
 * markers travel as rows of sitesync.snapshot_markers in MariaDB's binlog (mariadb-snapshot-control.ts).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import mysql from 'mysql2/promise';
import { startPrivateMariaDb, type PrivateMariaDb } from '../helpers/private-mariadb.ts';
import { createTestSites, dbUrl, sql, waitFor, type SpawnedSite, type TestSites } from '../helpers/test-sites.ts';
import { runSitesync, type CliResult } from '../helpers/run-cli.ts';


let mariadb: PrivateMariaDb;
let t: TestSites;

const sitesync = (...args: string[]): Promise<CliResult> => runSitesync([...args, '--config', t.configFile], { timeoutMs: 180_000 });

/** Rows as `id|balance|note` (NULL as \N), sorted by id: the same text from either database. */
type Row = string;
const row = (id: unknown, balance: unknown, note: unknown): Row => `${String(id)}|${String(balance)}|${note === null ? '\\N' : String(note)}`;

async function postgresRows(): Promise<Row[]> {
  const rows = await sql<{ id: number; balance: number; note: string | null }>(t.db('paris'), 'SELECT id, balance, note FROM accounts ORDER BY id');
  return rows.map((r) => row(r.id, r.balance, r.note));
}

async function mariadbRows(): Promise<Row[]> {
  const rows = await mariadb.query<{ id: number; balance: number; note: string | null }>('SELECT id, balance, note FROM public.accounts ORDER BY id');
  return rows.map((r) => row(r.id, r.balance, r.note));
}

/** Writes until stopped: inserts, updates and deletes of keys in [from, from + span). */
function writer(write: (k: number, r: number, count: number) => Promise<unknown>, from: number, span: number): { stop: () => Promise<number> } {
  let running = true;
  let count = 0;
  const done = (async () => {
    while (running) {
      await write(from + Math.floor(Math.random() * span), Math.random(), count);
      count++;
    }
  })();
  return {
    async stop() {
      running = false;
      await done;
      return count;
    },
  };
}

/**
 * Writes at the MariaDB site as its application does, on one connection of its own, a few hundred a second
 * (as fast as it can, it outruns what the PostgreSQL site applies on this machine, and the test would
 * measure that instead).
 */
async function mariadbWriter(from: number, span: number): Promise<{ stop: () => Promise<number> }> {
  const connection = await mysql.createConnection({ host: '127.0.0.1', port: mariadb.port, user: 'root' });
  const w = writer(
    async (k, r, count) => {
      await sleep(3);
      if (r < 0.5) await connection.query('INSERT INTO public.accounts VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE balance = balance + 1', [k, count, `m${count}`]);
      else if (r < 0.85) await connection.query('UPDATE public.accounts SET balance = balance - 1, note = ? WHERE id = ?', [`mu${count}`, k]);
      else await connection.query('DELETE FROM public.accounts WHERE id = ?', [k]);
    },
    from,
    span,
  );
  return {
    async stop() {
      const count = await w.stop();
      await connection.end();
      return count;
    },
  };
}

function postgresWriter(from: number, span: number): { stop: () => Promise<number> } {
  return writer(
    (k, r, count) =>
      r < 0.5
        ? sql(t.db('paris'), 'INSERT INTO accounts VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET balance = accounts.balance + 1', [k, count, `p${count}`])
        : r < 0.85
          ? sql(t.db('paris'), 'UPDATE accounts SET balance = balance - 1, note = $2 WHERE id = $1', [k, `pu${count}`])
          : sql(t.db('paris'), 'DELETE FROM accounts WHERE id = $1', [k]),
    from,
    span,
  );
}

async function snapshotState(id: string): Promise<{ next_chunk: number; state: string } | undefined> {
  return (await mariadb.query<{ next_chunk: number; state: string }>('SELECT next_chunk, state FROM sitesync.snapshots WHERE id = ?', [id]))[0];
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
    }),
    { leastPrivilege: false },
  );
  await sql(t.db('paris'), 'CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL, note text)');
  await mariadb.query('CREATE DATABASE public');
  await mariadb.query('CREATE TABLE public.accounts (id int PRIMARY KEY, balance int NOT NULL, note text) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin');
  // Rows madrid held before anything replicated: no stream will ever carry them.
  await mariadb.query(`INSERT INTO public.accounts SELECT seq, seq, IF(seq % 97 = 0, NULL, REPEAT('x', seq % 50)) FROM public.seq_1_to_20000`);
});

after(async () => {
  await t?.cleanup();
  await mariadb?.destroy();
});

test("a MariaDB table's existing rows reach the PostgreSQL site while both keep writing, and a kill mid-snapshot resumes", async () => {
  let madrid: SpawnedSite = t.spawn('madrid');
  const paris = t.spawn('paris');
  const said = (): string =>
    [madrid, paris]
      .flatMap((p) => p.output().split('\n').filter((l) => /"level":(40|50|60)/.test(l)))
      .slice(0, 10)
      .join('\n');
  await waitFor('sites running', async () => [paris, madrid].every((s) => s.output().includes('capture started')), 60_000);
  assert.deepEqual(await postgresRows(), [], 'paris starts without the rows');
  // madrid writes everywhere in its table (rows the snapshot has sent and rows it has not yet reached);
  // paris writes keys of its own, which reach madrid through the stream (and come back in madrid's chunks).
  const writers = [await mariadbWriter(1, 22_000), postgresWriter(100_000, 300)];
  let counts: number[] = [];
  try {
    const command = sitesync('snapshot', '--site', t.sites.madrid!, '--table', 'public.accounts', '--chunk-rows', '200', '--wait');
    const id = await waitFor('the snapshot recorded', async () => (await mariadb.query<{ id: string }>('SELECT id FROM sitesync.snapshots ORDER BY started_at DESC LIMIT 1').catch(() => []))[0]?.id, 30_000);
    // Kill madrid in the middle of the snapshot, then start it again: the command keeps waiting.
    await waitFor('a few chunks read', async () => ((await snapshotState(id))?.next_chunk ?? 0) >= 4, 60_000);
    madrid.child.kill('SIGKILL');
    await madrid.exited;
    const atKill = await snapshotState(id);
    assert.equal(atKill?.state, 'running', `killed in the middle of the snapshot (chunk ${atKill?.next_chunk})`);
    await sleep(300);
    madrid = t.spawn('madrid');
    const result = await command;
    assert.equal(result.code, 0, `${result.stderr}\n${said()}`);
    assert.match(result.stdout, new RegExp(`snapshot ${id} of public\\.accounts at ${t.sites.madrid} started`));
    assert.match(result.stdout, new RegExp(`${id}  public\\.accounts to every site  done  \\d+/\\d+ rows \\(100%\\)`));
    assert.equal((await snapshotState(id))?.state, 'done');
  } finally {
    counts = await Promise.all(writers.map((w) => w.stop()));
  }
  assert.ok(counts.every((c) => c > 50), `both sites wrote during the snapshot (${counts.join(', ')})`);
  // Once both streams have drained, paris holds what madrid holds, value for value.
  const expected = await mariadbRows();
  assert.ok(expected.length > 15_000, `madrid still holds most of its rows (${expected.length})`);
  let last: Row[] = [];
  try {
    await waitFor('paris identical to madrid', async () => {
      last = await postgresRows();
      return JSON.stringify(last) === JSON.stringify(await mariadbRows());
    }, 90_000);
  } catch (error) {
    const now = new Set(await mariadbRows());
    const there = new Set(last);
    const missing = [...now].filter((r) => !there.has(r)).slice(0, 10);
    const extra = [...there].filter((r) => !now.has(r)).slice(0, 10);
    throw new Error(`${(error as Error).message}: madrid has ${JSON.stringify(missing)} that paris lacks; paris has ${JSON.stringify(extra)}; warnings: ${said()}`);
  }
  assert.match(madrid.output(), /snapshot finished/);
  // The markers travelled as rows of snapshot_markers: pruned as they go, never replicated as rows.
  const [markers] = await mariadb.query<{ n: number }>('SELECT COUNT(*) AS n FROM sitesync.snapshot_markers');
  assert.ok(Number(markers!.n) <= 1, `old marker rows are pruned (${markers!.n} left)`);
  const listed = await sitesync('snapshot', '--site', t.sites.madrid!, '--list');
  assert.equal(listed.code, 0, listed.stderr);
  assert.match(listed.stdout, /public\.accounts to every site {2}done/);
});
