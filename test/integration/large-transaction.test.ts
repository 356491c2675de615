/**
 * A transaction larger than one message travels in parts and arrives whole and atomically: at the target
 * it is one commit (every row has the same xmin), never visible half-applied, and the spilled parts are gone.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createTestSites, sql, waitFor, type RunningSite, type TestSites } from '../helpers/test-sites.ts';

let t: TestSites;
let paris: RunningSite;
let london: RunningSite;

before(async () => {
  t = await createTestSites(['paris', 'london'], {
    capture: { statusIntervalSeconds: 0.2, maxMessageBytes: 16384 },
    apply: { retrySeconds: 0.5, prefetch: 2 },
  });
  await t.everywhere(`CREATE TABLE big (id int PRIMARY KEY, payload text)`);
  paris = await t.start('paris');
  london = await t.start('london');
});

after(async () => {
  await t?.cleanup();
});

test('a transaction of many parts is applied whole, in one target commit, never half-visible', async () => {
  const ROWS = 20_000;
  let parts = 0;
  let messages = 0;
  london.events.on('apply:applied', () => parts++);
  paris.events.on('capture:published', () => messages++);
  await sql(t.db('paris'), `INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, ${ROWS}) g`);

  // Watch the target while it applies: it only ever holds none or all of the rows.
  const seen = new Set<number>();
  await waitFor(
    'all rows at london',
    async () => {
      const [row] = await sql<{ n: number }>(t.db('london'), 'SELECT count(*)::int AS n FROM big');
      seen.add(row!.n);
      return row!.n === ROWS;
    },
    60_000,
  );
  assert.deepEqual([...seen].filter((n) => n !== 0 && n !== ROWS), [], 'never partly visible');

  const [commits] = await sql<{ n: number }>(t.db('london'), 'SELECT count(DISTINCT xmin::text)::int AS n FROM big');
  assert.equal(commits!.n, 1, 'one target transaction');
  const [spilled] = await sql<{ n: number }>(t.db('london'), 'SELECT count(*)::int AS n FROM sitesync.spilled_parts');
  assert.equal(spilled!.n, 0, 'spilled parts are removed in the same commit');
  const [same] = await sql<{ a: string }>(t.db('paris'), `SELECT md5(string_agg(payload, ',' ORDER BY id)) AS a FROM big`);
  const [copy] = await sql<{ a: string }>(t.db('london'), `SELECT md5(string_agg(payload, ',' ORDER BY id)) AS a FROM big`);
  assert.equal(copy!.a, same!.a);
  assert.equal(parts, 1, 'reported as one applied transaction');
  assert.ok(messages > 20, `travelled in many parts (${messages} messages)`);
});
