/**
 * Three sites, all writing: they converge to the same data, nothing is ever sent back where it came
 * from, and concurrent writes to the same row are resolved the same way at every site (and logged so).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { PipelineEvents } from '../../src/observability/pipeline-events.ts';
import { createTestSites, sql, tableRows, waitFor, type RunningSite, type TestSites } from '../helpers/test-sites.ts';

const SITES = ['paris', 'london', 'madrid'] as const;
type Short = (typeof SITES)[number];

let t: TestSites;
const running = new Map<Short, RunningSite>();
const published: Record<Short, number> = { paris: 0, london: 0, madrid: 0 };
const localCommits: Record<Short, number> = { paris: 0, london: 0, madrid: 0 };

async function start(short: Short): Promise<void> {
  const events = new PipelineEvents();
  events.on('capture:published', (e) => (published[short] += e.transactions));
  running.set(short, await t.start(short, events));
}

/** A transaction written by the test at a site (what that site must publish, once). */
async function write(short: Short, text: string, values?: unknown[]): Promise<void> {
  await sql(t.db(short), text, values);
  localCommits[short]++;
}

async function converged(table: string, timeoutMs = 60_000): Promise<string[]> {
  return waitFor(
    `${table} identical at all three sites`,
    async () => {
      const [a, b, c] = await Promise.all(SITES.map((s) => tableRows(t.db(s), table)));
      return JSON.stringify(a) === JSON.stringify(b) && JSON.stringify(b) === JSON.stringify(c) ? a : undefined;
    },
    timeoutMs,
  );
}

before(async () => {
  t = await createTestSites([...SITES], (sites) => ({
    conflicts: {
      policy: 'last-writer-wins',
      tables: {
        'public.ranked': { policy: 'site-priority', priority: [sites.paris, sites.london, sites.madrid] },
        'public.drafts': { policy: 'keep-local' },
      },
    },
  }));
  await t.everywhere(`
    CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, balance int NOT NULL, note text);
    CREATE TABLE journal (site text NOT NULL, n int NOT NULL); ALTER TABLE journal REPLICA IDENTITY FULL;
    CREATE TABLE ranked (id int PRIMARY KEY, v text);
    CREATE TABLE drafts (id int PRIMARY KEY, v text);
  `);
  for (const s of SITES) await start(s);
});

after(async () => {
  await t?.cleanup();
});

test('three sites writing disjoint rows at once converge, and nothing loops', async () => {
  await Promise.all(
    SITES.map(async (short, i) => {
      for (let n = 0; n < 40; n++) {
        const id = i * 1000 + n;
        await write(short, `INSERT INTO accounts VALUES ($1::int, $2, 100, 'new')`, [id, short]);
        await write(short, `INSERT INTO journal VALUES ($1, $2::int)`, [short, n]);
        if (n % 4 === 0) await write(short, `UPDATE accounts SET balance = balance + 1 WHERE id = $1::int`, [id]);
        if (n % 10 === 9) await write(short, `DELETE FROM accounts WHERE id = $1::int`, [id - 1]);
      }
    }),
  );
  const accounts = await converged('accounts');
  assert.equal(accounts.length, 3 * 36);
  assert.equal((await converged('journal')).length, 120);
  // Every site published exactly the transactions committed there: none relayed, none lost.
  await waitFor('published = local commits', async () => SITES.every((s) => published[s] === localCommits[s]));
  await new Promise((r) => setTimeout(r, 1000)); // a loop would publish more now
  assert.deepEqual(published, localCommits);
});

/** The outcome each site logged for each conflicting row: who won, or that the row is gone. */
async function outcomes(short: Short): Promise<Map<string, string>> {
  const rows = await sql<{ table_name: string; key: unknown; kind: string; remote_site: string; local_site: string | null; winner: string }>(
    t.db(short),
    'SELECT table_name, key, kind, remote_site, local_site, winner FROM sitesync.conflicts ORDER BY id',
  );
  const result = new Map<string, string>();
  for (const r of rows) {
    const key = `${r.table_name} ${JSON.stringify(r.key)}`;
    const deleted = r.kind === 'update_missing' || r.kind === 'delete_missing' || (r.kind === 'delete_origin_differs' && r.winner === 'remote');
    const outcome = deleted ? 'deleted' : r.winner === 'remote' ? r.remote_site : r.local_site!;
    assert.ok(!result.has(key) || result.get(key) === outcome, `${short} logged two outcomes for ${key}`);
    result.set(key, outcome);
  }
  return result;
}

test('concurrent writes to the same rows: resolved the same way at every site, and logged so', async () => {
  // Rows every site has.
  for (let id = 5001; id <= 5008; id++) await write('paris', `INSERT INTO accounts VALUES ($1::int, 'seed', 0, 'seed')`, [id]);
  await write('paris', `INSERT INTO ranked VALUES (1, 'seed'), (2, 'seed')`);
  await write('paris', `INSERT INTO drafts VALUES (1, 'seed')`);
  for (const table of ['accounts', 'ranked', 'drafts']) await converged(table);

  // Partition the sites from each other (stop them), write the same rows at two sites each, heal.
  for (const site of running.values()) await site.stop();
  const { sites } = t;
  await write('paris', `UPDATE accounts SET note = 'paris', balance = 1 WHERE id = 5001`);
  await write('london', `UPDATE accounts SET note = 'london', balance = 2 WHERE id = 5001`); // later: wins
  await write('madrid', `UPDATE accounts SET note = 'madrid' WHERE id = 5002`);
  await write('london', `UPDATE accounts SET note = 'london' WHERE id = 5002`); // later: wins
  await write('paris', `INSERT INTO accounts VALUES (6001, 'paris', 1, 'paris')`);
  await write('madrid', `INSERT INTO accounts VALUES (6001, 'madrid', 2, 'madrid')`); // same new key, later: wins
  await write('paris', `INSERT INTO accounts VALUES (7001, 'paris', 1, 'paris'), (7002, 'paris', 1, 'paris')`);
  await write('madrid', `INSERT INTO accounts VALUES (7002, 'madrid', 2, 'madrid'), (7003, 'madrid', 2, 'madrid')`); // 7002 in both batches: madrid's is later
  await write('paris', `UPDATE accounts SET note = 'paris updated' WHERE id = 5003`);
  await write('london', `DELETE FROM accounts WHERE id = 5003`); // a delete racing an update: the delete wins
  await write('madrid', `UPDATE ranked SET v = 'madrid' WHERE id = 1`);
  await write('paris', `UPDATE ranked SET v = 'paris' WHERE id = 1`); // paris ranks first: wins though not last
  await write('paris', `UPDATE ranked SET v = 'paris' WHERE id = 2`);
  await write('london', `UPDATE ranked SET v = 'london' WHERE id = 2`); // paris still ranks first
  await write('paris', `UPDATE drafts SET v = 'paris draft' WHERE id = 1`);
  await write('london', `UPDATE drafts SET v = 'london draft' WHERE id = 1`); // keep-local: each keeps its own
  for (const s of SITES) await start(s);

  const accounts = await converged('accounts');
  const get = (id: number) => accounts.find((r) => r.startsWith(`(${id},`));
  assert.equal(get(5001), '(5001,seed,2,london)');
  assert.equal(get(5002), '(5002,seed,0,london)');
  assert.equal(get(6001), '(6001,madrid,2,madrid)');
  assert.equal(get(7001), '(7001,paris,1,paris)');
  assert.equal(get(7002), '(7002,madrid,2,madrid)');
  assert.equal(get(7003), '(7003,madrid,2,madrid)');
  assert.equal(get(5003), undefined, 'the delete won');
  assert.deepEqual(await converged('ranked'), ['(1,paris)', '(2,paris)']);

  // keep-local: paris and london each kept their own draft; madrid took one of them, and logged it.
  assert.deepEqual(await tableRows(t.db('paris'), 'drafts'), ['(1,"paris draft")']);
  assert.deepEqual(await tableRows(t.db('london'), 'drafts'), ['(1,"london draft")']);

  // Every site logged the same outcome for every row written on both sides of the partition.
  const logged = await waitFor('conflict logs complete', async () => {
    const all = await Promise.all(SITES.map(outcomes));
    return all.every((m) => [...m.keys()].filter((k) => !k.startsWith('public.drafts')).length === 7) ? all : undefined;
  });
  const shared = logged.map((m) => JSON.stringify([...m].filter(([k]) => !k.startsWith('public.drafts')).sort()));
  assert.equal(shared[0], shared[1]);
  assert.equal(shared[1], shared[2]);
  const expected = new Map([
    ['public.accounts {"id":"5001"}', sites.london],
    ['public.accounts {"id":"5002"}', sites.london],
    ['public.accounts {"id":"6001"}', sites.madrid],
    ['public.accounts {"id":"7002"}', sites.madrid],
    ['public.accounts {"id":"5003"}', 'deleted'],
    ['public.ranked {"id":"1"}', sites.paris],
    ['public.ranked {"id":"2"}', sites.paris],
  ]);
  assert.deepEqual(new Map([...logged[0]!].filter(([k]) => !k.startsWith('public.drafts'))), expected);

  // And still no loop, over everything.
  await waitFor('published = local commits', async () => SITES.every((s) => published[s] === localCommits[s])).catch((e: Error) => {
    throw new Error(`${e.message}: published ${JSON.stringify(published)}, committed ${JSON.stringify(localCommits)}`);
  });
  assert.deepEqual(published, localCommits);
});
