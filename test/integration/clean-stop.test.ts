/**
 * A clean stop leaves the slot where capture confirmed it, so the next start publishes nothing twice.
 * The last standby status used to be lost when the walsender had not read it before the connection was
 * destroyed: about one stop in ten then resent what it had already published (applied once all the same).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, test } from 'node:test';
import { PipelineEvents } from '../../src/observability/pipeline-events.ts';
import { createTestSites, sql, tableRows, waitFor, type TestSites } from '../helpers/test-sites.ts';

let t: TestSites;

before(async () => {
  t = await createTestSites(['paris', 'london']);
  await t.everywhere(`CREATE TABLE items (id int PRIMARY KEY, v text)`);
});

after(async () => {
  await t?.cleanup();
});

test('after each of 20 clean stops right after publishing, the next start publishes only what is new', async () => {
  let id = 0;
  for (let round = 1; round <= 20; round++) {
    const paris = await t.start('paris');
    const london = await t.start('london');
    for (let i = 0; i < 10; i++) await sql(t.db('paris'), `INSERT INTO items VALUES ($1, 'x')`, [++id]);
    await waitFor('london to hold every row', async () => (await tableRows(t.db('london'), 'items')).length === id || undefined);
    await paris.stop();
    await london.stop();

    // Started again: one new transaction. Anything resent would be published before it, in commit order.
    const events = new PipelineEvents();
    let published = 0;
    events.on('capture:published', (e) => (published += e.transactions));
    const again = await t.start('paris', events);
    await sql(t.db('paris'), `INSERT INTO items VALUES ($1, 'x')`, [++id]);
    while (published < 1) await once(events, 'capture:published');
    await again.stop();
    assert.equal(published, 1, `round ${round}: the restart published ${published} transactions for 1 new one`);
  }
});
