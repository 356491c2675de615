/**
 * A target whose PostgreSQL has track_commit_timestamp off: conflicts cannot be detected there (sitesync
 * says so), but every insert, update and delete still applies.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startScratchPostgres, type ScratchPostgres } from '../helpers/scratch-postgres.ts';
import { createTestSites, dbUrl, sql, waitFor, type TestSites } from '../helpers/test-sites.ts';

let t: TestSites;
let london: ScratchPostgres;

before(async () => {
  london = await startScratchPostgres(26440, { track_commit_timestamp: 'off' });
  await london.query('postgres', 'CREATE DATABASE london');
  // paris on the shared server, london on the scratch one.
  t = await createTestSites(['paris', 'london'], (sites) => ({
    sites: { [sites.paris!]: { postgres: dbUrl(`sitesync_test_${sites.paris}`) }, [sites.london!]: { postgres: london.url('london') } },
  }));
});

after(async () => {
  await t?.cleanup();
  await london?.destroy();
});

test('updates and deletes apply at a target without commit timestamps', async () => {
  await sql(t.db('paris'), 'CREATE TABLE items (id int PRIMARY KEY, v text)');
  await london.query('london', 'CREATE TABLE items (id int PRIMARY KEY, v text)');
  await t.start('paris');
  await t.start('london');
  await sql(t.db('paris'), `INSERT INTO items VALUES (1, 'a'), (2, 'b'), (3, 'c')`);
  await sql(t.db('paris'), `UPDATE items SET v = 'changed' WHERE id = 1`);
  await sql(t.db('paris'), `DELETE FROM items WHERE id = 2`);
  await waitFor('london level with paris', async () => {
    const rows = await london.query<{ id: number; v: string }>('london', 'SELECT id, v FROM items ORDER BY id');
    return JSON.stringify(rows) === JSON.stringify([{ id: 1, v: 'changed' }, { id: 3, v: 'c' }]);
  });
  assert.equal((await london.query('london', 'SELECT 1 FROM sitesync.conflicts')).length, 0);
});
