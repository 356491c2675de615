/**
 * The broker going away loses nothing, and a quiet site's slot does not pin WAL.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { slotName } from '../../src/config/names.ts';
import { parseLsn } from '../../connectors/postgres/postgres-positions.ts';
import { createTestSites, sql, tableRows, waitFor, type RunningSite, type TestSites } from '../helpers/test-sites.ts';

const run = promisify(execFile);
let t: TestSites;
let paris: RunningSite;

before(async () => {
  t = await createTestSites(['paris', 'london']);
  await t.everywhere(`CREATE TABLE log (n int, note text)`);
  await t.everywhere(`ALTER TABLE log REPLICA IDENTITY FULL`);
  paris = await t.start('paris');
  await t.start('london');
});

after(async () => {
  await t?.cleanup();
});

test('RabbitMQ closing every connection mid-stream loses nothing and duplicates nothing', async () => {
  let reconnects = 0;
  paris.events.on('capture:streaming', () => reconnects++);
  const writer = (async () => {
    for (let n = 0; n < 400; n++) {
      await sql(t.db('paris'), `INSERT INTO log VALUES ($1, 'same'), ($1, 'same')`, [n]);
      await sleep(5);
    }
  })();
  for (let i = 0; i < 3; i++) {
    await sleep(700);
    const before = reconnects;
    await run('rabbitmqctl', ['-q', 'close_all_connections', 'sitesync test: broker outage']);
    // The next close only while capture streams again: closed during its backoff, it would test nothing.
    await waitFor('capture streaming again', async () => reconnects > before);
  }
  await writer;
  const expected = await tableRows(t.db('paris'), 'log');
  assert.equal(expected.length, 800);
  await waitFor('london converges', async () => JSON.stringify(await tableRows(t.db('london'), 'log')) === JSON.stringify(expected), 60_000);
  assert.ok(reconnects >= 3, `capture reconnected after each of the 3 closes (${reconnects} times)`);
});

test('an idle site confirms the server position from keepalives, so its slot does not hold WAL', async () => {
  const slot = slotName(t.sites.paris!);
  // Other databases on the server write WAL; paris writes nothing.
  const filler = `sitesync_test_wal_filler_${t.suffix}`;
  await sql('postgres', `CREATE TABLE ${filler} (x text)`);
  await sql('postgres', `INSERT INTO ${filler} SELECT repeat('w', 1000) FROM generate_series(1, 5000)`);
  const [{ lsn } = { lsn: '0/0' }] = await sql<{ lsn: string }>('postgres', 'SELECT pg_current_wal_lsn()::text AS lsn');
  await sql('postgres', `DROP TABLE ${filler}`);
  await waitFor(
    'the slot to move past the other database writes',
    async () => {
      const [row] = await sql<{ confirmed: string }>('postgres', 'SELECT confirmed_flush_lsn::text AS confirmed FROM pg_replication_slots WHERE slot_name = $1', [slot]);
      return parseLsn(row!.confirmed) >= parseLsn(lsn);
    },
    30_000,
  );
});
