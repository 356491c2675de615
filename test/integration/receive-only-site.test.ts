/**
 * A site with `capture: false` applies what the others send and sends nothing: no slot, no publication and
 * no capture bookkeeping at its database, so PostgreSQL never decodes what it applied.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { slotName } from '../../src/config/names.ts';
import { createTestSites, dbUrl, sql, waitFor, type TestSites } from '../helpers/test-sites.ts';

const run = promisify(execFile);
let t: TestSites;

before(async () => {
  t = await createTestSites(['paris', 'london'], (sites) => ({
    sites: {
      [sites.paris!]: { postgres: dbUrl(`sitesync_test_${sites.paris}`) },
      [sites.london!]: { postgres: dbUrl(`sitesync_test_${sites.london}`), capture: false },
    },
  }));
  await t.everywhere(`CREATE TABLE items (id int PRIMARY KEY, note text)`);
});

after(async () => {
  await t?.cleanup();
});

test('a receive-only site applies what others send, and nothing at its database is captured', async () => {
  const paris = await t.start('paris');
  const london = await t.start('london');
  try {
    await sql(t.db('paris'), `INSERT INTO items VALUES (1, 'from paris')`);
    await waitFor('paris row at london', async () => (await sql(t.db('london'), 'SELECT 1 FROM items WHERE id = 1')).length === 1);

    await sql(t.db('london'), `INSERT INTO items VALUES (2, 'local to london')`);
    // Paris's later write arriving shows the pipeline alive after london's own write.
    await sql(t.db('paris'), `INSERT INTO items VALUES (3, 'from paris again')`);
    await waitFor('second paris row at london', async () => (await sql(t.db('london'), 'SELECT 1 FROM items WHERE id = 3')).length === 1);

    const slots = await sql('postgres', 'SELECT slot_name FROM pg_replication_slots WHERE slot_name = $1', [slotName(t.sites.london!)]);
    assert.deepEqual(slots, [], 'no slot for london');
    assert.deepEqual(await sql(t.db('london'), `SELECT pubname FROM pg_publication`), [], 'no publication at london');
    assert.deepEqual(await sql(t.db('paris'), 'SELECT id FROM items ORDER BY id'), [{ id: 1 }, { id: 3 }], "london's own write stays at london");
  } finally {
    await london.stop();
    await paris.stop();
  }
});

test('a slot left from when the site captured is named at start and in status, with the fix', async () => {
  const slot = slotName(t.sites.london!);
  await sql(t.db('london'), `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]);
  const london = t.spawn('london');
  await waitFor('the warning', async () => london.output().includes(`pg_drop_replication_slot('${slot}')`));
  assert.match(london.output(), /"msg":"capture off: this site applies what the other sites send and sends nothing"/);
  london.child.kill('SIGTERM');
  await london.exited;

  const status = await run(process.execPath, ['bin/sitesync.js', 'status', '--config', t.configFile], { cwd: new URL('../../', import.meta.url).pathname });
  assert.match(status.stdout, new RegExp(`site ${t.sites.london}\\n  capture off, but slot ${slot} is left over`));
  assert.match(status.stdout, new RegExp(`site ${t.sites.paris}\\n  slot `), 'paris shows its slot as before');
  assert.doesNotMatch(status.stdout, new RegExp(`from ${t.sites.london}:`), 'nobody shows an origin for london, which sends nothing');

  await sql(t.db('london'), `SELECT pg_drop_replication_slot($1)`, [slot]);
  const after = await run(process.execPath, ['bin/sitesync.js', 'status', '--config', t.configFile], { cwd: new URL('../../', import.meta.url).pathname });
  assert.match(after.stdout, new RegExp(`site ${t.sites.london}\\n  capture off: receives only`));
});
