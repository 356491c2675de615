/**
 * The least-privilege deployment of README "Security model" works and is what it says: capture runs as a
 * role with REPLICATION and nothing more, apply as the owner of the replicated tables, other sites' slots
 * and `status` are read with the monitoring role, none of them a superuser; each site's process is a
 * RabbitMQ user of its own that may declare nothing. (The whole replication suite also runs this way:
 * scripts/test.sh runs it again with TEST_SITESYNC_LEAST_PRIVILEGE=1.)
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { collectStatus, unreachableServices } from '../../src/cli/status-command.ts';
import { createTestSites, sql, waitFor, type TestSites } from '../helpers/test-sites.ts';
import { rolesFor } from '../helpers/least-privilege.ts';
import { CONNECTORS } from '../../connectors/index.ts';

let t: TestSites;

before(async () => {
  t = await createTestSites(['paris', 'london'], {}, { leastPrivilege: true });
  await t.everywhere(`CREATE TABLE items (id int PRIMARY KEY, v text)`);
  await t.start('paris');
  await t.start('london');
});

after(async () => {
  await t?.cleanup();
});

test('capture, apply and monitoring run as three roles, none a superuser, and replicate both ways', async () => {
  await sql(t.db('paris'), `INSERT INTO items VALUES (1, 'from paris')`);
  await sql(t.db('london'), `INSERT INTO items VALUES (2, 'from london')`);
  await waitFor("london's row at paris", async () => (await sql(t.db('paris'), 'SELECT 1 FROM items WHERE id = 2')).length === 1);
  await sql(t.db('paris'), `UPDATE items SET v = 'changed at paris' WHERE id = 2`);
  await waitFor('both rows, updated, at both sites', async () => {
    const expected = [{ id: 1, v: 'from paris' }, { id: 2, v: 'changed at paris' }];
    const [p, l] = [await sql(t.db('paris'), 'SELECT * FROM items ORDER BY id'), await sql(t.db('london'), 'SELECT * FROM items ORDER BY id')];
    return JSON.stringify(p) === JSON.stringify(expected) && JSON.stringify(l) === JSON.stringify(expected);
  });
  const roles = rolesFor(t.suffix);
  const sessions = await sql<{ usename: string; application_name: string; backend_type: string; rolsuper: boolean }>(
    'postgres',
    `SELECT a.usename, a.application_name, a.backend_type, r.rolsuper FROM pg_stat_activity a JOIN pg_roles r ON r.rolname = a.usename
      WHERE a.datname = ANY($1) AND a.application_name LIKE 'sitesync%'`,
    [[t.db('paris'), t.db('london')]],
  );
  const applying = sessions.filter((s) => s.application_name.startsWith('sitesync apply'));
  const streaming = sessions.filter((s) => s.backend_type === 'walsender');
  assert.ok(applying.length >= 2 && streaming.length === 2, `sessions: ${JSON.stringify(sessions)}`);
  assert.ok(applying.every((s) => s.usename === roles.apply && !s.rolsuper), 'apply runs as the apply role');
  assert.ok(streaming.every((s) => s.usename === roles.capture && !s.rolsuper), 'capture runs as the capture role');
  const [owner] = await sql<{ owner: string }>(t.db('london'), `SELECT tableowner AS owner FROM pg_tables WHERE tablename = 'items'`);
  assert.equal(owner?.owner, roles.apply);
});

test('status reads every site with its monitoring role alone', async () => {
  const statuses = await collectStatus(t.config, CONNECTORS);
  assert.deepEqual(unreachableServices(statuses), []);
  for (const s of statuses) {
    assert.equal(s.error, undefined);
    assert.equal(s.captureState?.exists, true);
    assert.ok(s.applied?.every((o) => o.applied !== null), `applied of ${s.site}: ${JSON.stringify(s.applied)}`);
  }
});
