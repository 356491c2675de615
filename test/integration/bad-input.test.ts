/**
 * Nothing that arrives is lost, and nothing stops the pipeline for good: foreign or malformed messages
 * and transactions the target refuses are parked with their reason and counted; a table missing at the
 * target halts that source until it is created, then everything resumes in order.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import amqp from 'amqplib';
import { parkingQueue, routingKey } from '../../src/config/names.ts';
import { SCHEMA_VERSION_HEADER } from '../../src/bus/message-headers.ts';
import { CURRENT_SCHEMA_VERSION, encodeMessage } from '../../src/events/avro-codec.ts';
import { createMetrics, serveMetrics } from '../../src/observability/metrics.ts';
import { BROKER, createTestSites, parkedMessages, sql, waitFor, type RunningSite, type TestSites } from '../helpers/test-sites.ts';

const run = promisify(execFile);
let t: TestSites;
let london: RunningSite;
const parked: { reason: string; code: string }[] = [];
let metricsUrl = '';
let metricsServer: Server | undefined;

before(async () => {
  // Refused data is parked here (apply.onDataError: park); the default, halting, is in schema-drift.test.ts.
  t = await createTestSites(['paris', 'london'], { apply: { retrySeconds: 0.5, onDataError: 'park' } });
  await t.everywhere(`CREATE TABLE items (id int PRIMARY KEY, v int)`);
  await sql(t.db('london'), `ALTER TABLE items ADD CONSTRAINT small CHECK (v < 100)`); // paris has no such rule
  await sql(t.db('paris'), `CREATE TABLE only_at_paris (id int PRIMARY KEY)`);
  await t.start('paris');
  london = await t.start('london');
  london.events.on('apply:parked', (e) => parked.push({ reason: e.reason, code: e.code }));
  metricsServer = await serveMetrics(createMetrics(london.events), 0, '127.0.0.1');
  metricsUrl = `http://127.0.0.1:${(metricsServer.address() as AddressInfo).port}/metrics`;
});

after(async () => {
  metricsServer?.close();
  await t?.cleanup();
});

async function publishRaw(body: Buffer, headers: Record<string, unknown>): Promise<void> {
  const connection = await amqp.connect(BROKER);
  const channel = await connection.createConfirmChannel();
  channel.publish(t.config.broker.exchange, routingKey(t.sites.paris!), body, { headers, persistent: true });
  await channel.waitForConfirms();
  await connection.close();
}

test('foreign and malformed messages are parked with their reason, and the pipeline goes on', async () => {
  await publishRaw(Buffer.from('{"not": "avro"}'), {}); // no schema header: not from sitesync
  await publishRaw(Buffer.from([1, 2, 3]), { [SCHEMA_VERSION_HEADER]: CURRENT_SCHEMA_VERSION }); // truncated Avro
  await publishRaw(Buffer.from([0]), { [SCHEMA_VERSION_HEADER]: 99 }); // unknown schema version
  const position = '0000000001000000';
  const stranger = encodeMessage({
    site: 'atlantis',
    sourceKind: 'postgres',
    previous: null,
    part: null,
    transactions: [{ id: `atlantis:${position}`, site: 'atlantis', position, commitTimeMicros: 0n, sourceTxId: '1', seen: {}, changes: [] }],
  });
  await publishRaw(stranger, { [SCHEMA_VERSION_HEADER]: CURRENT_SCHEMA_VERSION }); // a site not configured

  await sql(t.db('paris'), `INSERT INTO items VALUES (1, 1)`);
  await waitFor('the real change after them', async () => (await sql(t.db('london'), 'SELECT 1 FROM items WHERE id = 1')).length === 1);

  assert.equal(parked.length, 4);
  assert.match(parked[0]!.reason, /no sitesync-schema-version header: it was not published by sitesync/);
  assert.match(parked[1]!.reason, /^SITESYNC_ERR_DECODE: .*truncated/);
  assert.match(parked[2]!.reason, /schema-version 99, which this reader does not know/);
  assert.match(parked[3]!.reason, /site "atlantis" is not in the configuration/);

  const kept = await parkedMessages(parkingQueue(t.sites.london!));
  assert.equal(kept.length, 4, 'every parked message is kept in the parking queue');
  assert.deepEqual(kept[0]!.content, Buffer.from('{"not": "avro"}'), 'with its original body');
  assert.match(String(kept[3]!.properties.headers?.['sitesync-parked-reason']), /atlantis/);
});

test('with onDataError: park, a transaction the target refuses is parked; the transactions around it are applied', async () => {
  const before = parked.length;
  await sql(t.db('paris'), `INSERT INTO items VALUES (2, 500)`); // violates london's CHECK
  await sql(t.db('paris'), `INSERT INTO items VALUES (3, 3)`);
  await waitFor('row 3 at london', async () => (await sql(t.db('london'), 'SELECT 1 FROM items WHERE id = 3')).length === 1);
  assert.equal(parked.length, before + 1);
  assert.equal(parked[before]!.code, '23514');
  assert.match(parked[before]!.reason, /violates check constraint "small"/);
  assert.equal((await sql(t.db('london'), 'SELECT 1 FROM items WHERE id = 2')).length, 0);
  const kept = await parkedMessages(parkingQueue(t.sites.london!));
  assert.match(String(kept[kept.length - 1]!.properties.headers?.['sitesync-parked-transaction']), new RegExp(`^${t.sites.paris}:`));
});

test('a table missing at the target halts the source until it exists, then resumes in order', async () => {
  const halted: string[] = [];
  let resumed = 0;
  london.events.on('apply:halted', (e) => halted.push(e.reason));
  london.events.on('apply:resumed', () => resumed++);
  await sql(t.db('paris'), `INSERT INTO only_at_paris VALUES (1)`);
  await sql(t.db('paris'), `INSERT INTO items VALUES (4, 4)`); // behind the halted one: must wait, then come
  await waitFor('halt', async () => halted.length > 0);
  assert.match(halted[0]!, /table public\.only_at_paris does not exist at site london_\w+; create it as at site paris_\w+/);
  assert.equal((await sql(t.db('london'), 'SELECT 1 FROM items WHERE id = 4')).length, 0, 'order kept: nothing jumps the halted transaction');
  await sql(t.db('london'), `CREATE TABLE only_at_paris (id int PRIMARY KEY)`);
  await waitFor('resumed', async () => (await sql(t.db('london'), 'SELECT 1 FROM items WHERE id = 4')).length === 1);
  assert.equal((await sql(t.db('london'), 'SELECT 1 FROM only_at_paris')).length, 1);
  assert.equal(resumed, 1);
});

test('/metrics counts what happened', async () => {
  const text = await (await fetch(metricsUrl)).text();
  const value = (name: string, labels: string): number => {
    const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labels));
    return line ? Number(line.split(' ').pop()) : 0;
  };
  const total = text.split('\n').filter((l) => l.startsWith('sitesync_parked_messages_total{')).reduce((n, l) => n + Number(l.split(' ').pop()), 0);
  assert.equal(total, 5);
  assert.ok(value('sitesync_applied_transactions_total', `source="${t.sites.paris}"`) >= 3);
  assert.ok(value('sitesync_captured_transactions_total', `site="${t.sites.london}"`) === 0, 'london wrote nothing of its own');
  for (const name of ['sitesync_capture_lag_bytes', 'sitesync_apply_latency_seconds_bucket', 'sitesync_duplicates_skipped_total', 'sitesync_conflicts_total', 'sitesync_source_halted']) {
    assert.ok(text.includes(name), `${name} is exported`);
  }
});

test('sitesync parked lists the parked messages; --retry applies one once its cause is fixed; --discard removes', async () => {
  const cli = async (...args: string[]) => {
    const { stdout } = await run(process.execPath, [new URL('../../bin/sitesync.js', import.meta.url).pathname, 'parked', '--config', t.configFile, '--site', t.sites.london!, ...args]);
    return stdout.trim().split('\n');
  };
  const listed = await cli();
  assert.equal(listed.pop(), `5 parked message(s) in SITE_${t.sites.london!.toUpperCase()}.parked`);
  const refused = listed.find((line) => line.includes('23514'));
  assert.ok(refused, `the refused transaction is listed with its code: ${listed.join('\n')}`);
  assert.match(refused, /violates check constraint "small"/);
  const id = refused.split(/\s+/)[0]!;

  await sql(t.db('london'), 'ALTER TABLE items DROP CONSTRAINT small'); // the cause, fixed
  assert.deepEqual(await cli('--retry', id), [`sent back to SITE_${t.sites.london!.toUpperCase()}: ${id}`]);
  await waitFor('the retried row at london', async () => (await sql(t.db('london'), 'SELECT v FROM items WHERE id = 2')).length === 1);
  assert.deepEqual(await sql(t.db('london'), 'SELECT v FROM items WHERE id = 2'), [{ v: 500 }]);
  assert.equal((await cli()).pop(), `4 parked message(s) in SITE_${t.sites.london!.toUpperCase()}.parked`);

  assert.equal((await cli('--discard', 'all')).length, 4);
  assert.equal((await cli()).pop(), `0 parked message(s) in SITE_${t.sites.london!.toUpperCase()}.parked`);
});
