/**
 * A table that differs at the target: london lacks a column that paris writes. Applying from paris halts
 * with one line naming the column and the table, nothing committed after it at paris jumps ahead, the halt
 * survives a restart of london, and once the column exists applying resumes by itself: every transaction
 * arrives exactly once, in order.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { createTestSites, dbUrl, sql, tableRows, waitFor, type SpawnedSite, type TestSites } from '../helpers/test-sites.ts';

let t: TestSites;

before(async () => {
  t = await createTestSites(['paris', 'london']);
  // No primary keys: a transaction applied twice would show as a duplicate row.
  await t.everywhere('CREATE TABLE log (id int)');
  await sql(t.db('paris'), 'CREATE TABLE items (id int, v int, note text)');
  await sql(t.db('london'), 'CREATE TABLE items (id int, v int)'); // no "note"
  await t.start('paris');
});

after(async () => {
  await t?.cleanup();
});

interface LogLine {
  level: number;
  msg: string;
  source?: string;
  code?: string;
}

function logLines(site: SpawnedSite): LogLine[] {
  return site
    .output()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as LogLine);
}

async function started(site: SpawnedSite): Promise<void> {
  await waitFor('london applying', async () => {
    if (site.child.exitCode !== null) throw new Error(`exited: ${site.output()}`);
    return logLines(site).some((l) => l.msg === 'applying');
  });
}

async function logIds(): Promise<number[]> {
  return (await sql<{ id: number }>(t.db('london'), 'SELECT id FROM log ORDER BY id')).map((r) => r.id);
}

test('a column missing at the target halts that source with one line, keeps order, and resumes by itself once added', async () => {
  const halt = () => `applying from ${t.sites.paris} halted: SITESYNC_ERR_APPLY_SCHEMA: column "note" of table public.items does not exist at the target; add it as at the source (sitesync retries and resumes by itself)`;
  let london = t.spawn('london');
  await started(london);

  await sql(t.db('paris'), 'INSERT INTO log VALUES (1)');
  await waitFor('the transaction before the drift', async () => (await logIds()).length === 1);

  // A burst on one connection, so that several transactions may travel in one message with the bad one.
  const paris = new pg.Client({ connectionString: dbUrl(t.db('paris')) });
  await paris.connect();
  try {
    await paris.query('INSERT INTO log VALUES (2)');
    await paris.query(`INSERT INTO items VALUES (1, 10, 'uses the missing column')`);
    await paris.query('INSERT INTO log VALUES (3)');
    await paris.query(`BEGIN; INSERT INTO items VALUES (2, 20, NULL); INSERT INTO log VALUES (4); COMMIT`);
    await paris.query('INSERT INTO log VALUES (5)');
  } finally {
    await paris.end();
  }

  await waitFor('the halt', async () => logLines(london).some((l) => l.msg.includes('halted')));
  const errors = logLines(london).filter((l) => l.level >= 50);
  assert.deepEqual(errors.map((l) => l.msg), [halt()], 'one line, naming the column and the table');
  assert.equal(errors[0]!.source, t.sites.paris);
  assert.equal(errors[0]!.code, 'SITESYNC_ERR_APPLY_SCHEMA');

  await sleep(1500); // three retries (apply.retrySeconds = 0.5): still halted, said once, nothing jumps ahead
  assert.deepEqual(logLines(london).filter((l) => l.level >= 50).map((l) => l.msg), [halt()], 'retrying does not repeat the line');
  // Row 2 was committed before the bad transaction: applied, or waiting with it if they share a message.
  assert.ok(['1', '1,2'].includes((await logIds()).join()), `order kept: nothing committed after the halted transaction is applied (${await logIds()})`);
  assert.deepEqual(await tableRows(t.db('london'), 'items'), []);

  // A restart of london while halted changes nothing: the message waits in the queue, the halt is said again.
  london.child.kill('SIGKILL');
  await london.exited;
  london = t.spawn('london');
  await started(london);
  await waitFor('halted again after the restart', async () => logLines(london).some((l) => l.msg === halt()));
  assert.ok(['1', '1,2'].includes((await logIds()).join()), `still nothing jumps ahead (${await logIds()})`);

  await sql(t.db('london'), 'ALTER TABLE items ADD COLUMN note text');
  await waitFor('resumed', async () => (await logIds()).length >= 5);
  await sleep(1000); // a repeat would arrive now
  assert.deepEqual(await logIds(), [1, 2, 3, 4, 5], 'every transaction once, in order');
  assert.deepEqual(await tableRows(t.db('london'), 'items'), ['(1,10,"uses the missing column")', '(2,20,)']);
  assert.equal(logLines(london).filter((l) => l.msg === 'source resumed').length, 1);
  assert.deepEqual(logLines(london).filter((l) => /parked/.test(l.msg)), [], 'a schema difference is never parked');
  assert.deepEqual(logLines(london).filter((l) => l.level >= 50).map((l) => l.msg), [halt()]);
  // Let go of the site's queue: the next test starts its own process (a second one would only stand by).
  london.child.kill('SIGTERM');
  await london.exited;
});

test('a constraint at the target the source lacks halts that source, in order, until it is fixed; nothing is parked or lost', async () => {
  await t.everywhere('CREATE TABLE amounts (id int PRIMARY KEY, v int)');
  await sql(t.db('london'), 'ALTER TABLE amounts ADD CONSTRAINT small CHECK (v < 100)');
  const london = t.spawn('london');
  await started(london);
  await sql(t.db('paris'), 'INSERT INTO amounts VALUES (1, 500)'); // london refuses it
  await sql(t.db('paris'), 'INSERT INTO amounts VALUES (2, 2)'); // must wait behind it
  await waitFor('halt', async () => logLines(london).some((l) => l.level === 50 && /halted: .*violates check constraint "small"/.test(l.msg)));
  assert.equal((await sql(t.db('london'), 'SELECT 1 FROM amounts')).length, 0, 'nothing jumps the refused transaction');
  await sql(t.db('london'), 'ALTER TABLE amounts DROP CONSTRAINT small');
  await waitFor('resumed', async () => (await sql(t.db('london'), 'SELECT id FROM amounts ORDER BY id')).length === 2);
  assert.deepEqual(await sql(t.db('london'), 'SELECT id, v FROM amounts ORDER BY id'), [{ id: 1, v: 500 }, { id: 2, v: 2 }]);
  assert.ok(!logLines(london).some((l) => /parked/.test(l.msg)), 'nothing parked');
  london.child.kill('SIGTERM');
  await london.exited;
});
