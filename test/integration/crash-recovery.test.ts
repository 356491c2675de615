/**
 * Nothing lost, nothing twice, across SIGKILL. Real `sitesync run` processes are killed at random moments
 * while one site commits a stream of transactions (small ones, and large ones that travel in many parts);
 * after restarts the other site must hold exactly the same rows. The table has no primary key, so a
 * transaction applied twice would show as duplicate rows, and one lost as missing rows.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { createTestSites, dbUrl, sql, tableRows, waitFor, type SpawnedSite, type TestSites } from '../helpers/test-sites.ts';

let t: TestSites;
const TRANSACTIONS = 1500;

before(async () => {
  // Small messages and a small prefetch, so that large transactions span many parts and many deliveries.
  t = await createTestSites(['paris', 'london'], {
    capture: { statusIntervalSeconds: 0.2, heartbeatSeconds: 1, maxMessageBytes: 8192, maxTransactionsPerMessage: 20 },
    apply: { retrySeconds: 0.5, prefetch: 4 },
  });
  await t.everywhere(`
    CREATE TABLE ledger (writer int, seq int, payload text);
    ALTER TABLE ledger REPLICA IDENTITY FULL;
  `);
});

after(async () => {
  await t?.cleanup();
});

async function untilRunning(site: SpawnedSite): Promise<void> {
  await waitFor('process ready', async () => {
    if (site.child.exitCode !== null) throw new Error(`exited early:\n${site.output()}`);
    return site.output().includes('capture started') && site.output().includes('"applying"');
  });
}

test('SIGKILL of either process mid-stream loses nothing and applies nothing twice', async () => {
  const running: Record<'paris' | 'london', SpawnedSite> = { paris: t.spawn('paris'), london: t.spawn('london') };
  await Promise.all([untilRunning(running.paris), untilRunning(running.london)]);

  let writing = true;
  let committed = 0;
  const writer = (async () => {
    const client = new pg.Client({ connectionString: dbUrl(t.db('paris')) });
    await client.connect();
    for (let seq = 0; seq < TRANSACTIONS; seq++) {
      if (seq % 100 === 50) {
        // A large transaction: about 60 kB of rows, several parts at 8 kB per message.
        await client.query(`INSERT INTO ledger SELECT 1, $1, repeat('x', 100) || g FROM generate_series(1, 500) g`, [seq]);
      } else {
        await client.query('BEGIN');
        await client.query(`INSERT INTO ledger VALUES (1, $1, 'a'), (1, $1, 'a')`, [seq]); // identical rows on purpose
        if (seq % 7 === 0) await client.query(`DELETE FROM ledger WHERE ctid = (SELECT ctid FROM ledger WHERE seq = $1 LIMIT 1)`, [seq - 7]);
        await client.query('COMMIT');
      }
      committed++;
      await sleep(10);
    }
    await client.end();
    writing = false;
  })();

  const kills: string[] = [];
  // Random moments, random victims; but the first two are one of each and there are at least three, so the
  // assertions below hold on a machine slow enough to leave time for only a few kills.
  while (writing || kills.length < 3) {
    await sleep(400 + Math.random() * 900);
    const victim = kills.length < 2 ? (['paris', 'london'] as const)[kills.length]! : Math.random() < 0.5 ? 'paris' : 'london';
    running[victim].child.kill('SIGKILL');
    await running[victim].exited;
    kills.push(victim);
    running[victim] = t.spawn(victim);
    await untilRunning(running[victim]);
  }
  await writer;
  console.log(`kills: ${kills.join(' ')}`);
  assert.ok(kills.length >= 3, `expected several kills, got ${kills.length}`);
  assert.ok(kills.includes('paris') && kills.includes('london'), `both processes killed at least once: ${kills.join(',')}`);

  const expected = await tableRows(t.db('paris'), 'ledger');
  await waitFor(
    'london to hold exactly paris rows',
    async () => (await sql<{ n: string }>(t.db('london'), 'SELECT count(*) AS n FROM ledger'))[0]?.n === String(expected.length),
    60_000,
  ).catch(async (error: Error) => {
    const n = await sql(t.db('london'), 'SELECT count(*) AS n FROM ledger');
    const tail = (s: SpawnedSite) => s.output().split('\n').filter((l) => !l.includes('"level":30')).slice(-15).join('\n');
    throw new Error(`${error.message}: paris ${expected.length} rows, london ${JSON.stringify(n)}\n--- paris\n${tail(running.paris)}\n--- london\n${tail(running.london)}`);
  });
  await sleep(1000); // any duplicate still on its way would land now
  const actual = await tableRows(t.db('london'), 'ledger');
  assert.equal(actual.length, expected.length, 'same number of rows (a duplicate or a loss changes it)');
  assert.deepEqual(actual, expected);
  assert.equal(committed, TRANSACTIONS);

  // Clean stop: SIGTERM ends both processes with status 0.
  for (const site of Object.values(running)) site.child.kill('SIGTERM');
  assert.deepEqual(await Promise.all(Object.values(running).map((s) => s.exited)), [0, 0]);
});
