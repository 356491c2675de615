/**
 * A `tables` list narrows what a site sends, and what it accepts: a change to another table is parked
 * with its reason (the transaction alone), the rest goes on. sitesync's own bookkeeping is never sent.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import amqp from 'amqplib';
import { parkingQueue } from '../../src/config/names.ts';
import { BROKER, createTestSites, sql, waitFor, type TestSites } from '../helpers/test-sites.ts';

let t: TestSites;

before(async () => {
  t = await createTestSites(['paris', 'london']);
  // Rebuild the configuration with a table list for paris only, through the environment as a user would.
  process.env[`SITESYNC_SITES__${t.sites.paris!.toUpperCase()}__TABLES`] = '[public.shared]';
  await t.everywhere(`CREATE TABLE shared (id int PRIMARY KEY); CREATE TABLE private (id int PRIMARY KEY);`);
});

after(async () => {
  delete process.env[`SITESYNC_SITES__${t.sites.paris!.toUpperCase()}__TABLES`];
  await t?.cleanup();
});

test('a site with a tables list sends only those tables, and accepts only those', async () => {
  const paris = t.spawn('paris');
  const london = t.spawn('london');
  await waitFor('both running', async () => paris.output().includes('capture started') && london.output().includes('capture started'));
  assert.match(paris.output(), /"tables":\["public.shared"\]/);
  await sql(t.db('paris'), `INSERT INTO private VALUES (1)`);
  await sql(t.db('paris'), `INSERT INTO shared VALUES (1)`);
  await sql(t.db('london'), `INSERT INTO private VALUES (2)`); // london has no list: it sends everything…
  await sql(t.db('london'), `INSERT INTO shared VALUES (2)`);
  await waitFor('shared row at london', async () => (await sql(t.db('london'), 'SELECT 1 FROM shared WHERE id = 1')).length === 1);
  await waitFor("london's shared row at paris", async () => (await sql(t.db('paris'), 'SELECT 1 FROM shared WHERE id = 2')).length === 1);
  await sleep(500);
  assert.deepEqual(await sql(t.db('london'), 'SELECT id FROM private ORDER BY id'), [{ id: 2 }], "paris's private table stays at paris");
  // …but paris accepts only its own list: london's private row is parked there with the reason.
  assert.deepEqual(await sql(t.db('paris'), 'SELECT id FROM private ORDER BY id'), [{ id: 1 }], "london's private row is not applied at paris");
  assert.match(paris.output(), /message parked: SITESYNC_ERR_NOT_REPLICATED: .*table \\"public\.private\\" is not one site paris_\w+ replicates/);
  const connection = await amqp.connect(BROKER);
  const { messageCount } = await (await connection.createChannel()).checkQueue(parkingQueue(t.sites.paris!));
  await connection.close();
  assert.equal(messageCount, 1);
});

test("sitesync's bookkeeping is never replicated", async () => {
  // Each site's capture records its own progress; the other site's row must never arrive.
  for (const [here, other] of [['paris', 'london'], ['london', 'paris']] as const) {
    // Written when capture confirms a published transaction (each status interval): wait for it.
    await waitFor(`${here}'s own progress row`, async () => (await sql(t.db(here), 'SELECT 1 FROM sitesync.capture_progress WHERE site = $1', [t.sites[here]])).length === 1);
    const rows = await sql<{ site: string }>(t.db(here), 'SELECT site FROM sitesync.capture_progress');
    assert.deepEqual(rows.map((r) => r.site), [t.sites[here]], `${here} holds only its own progress, not ${other}'s`);
  }
});
