/**
 * The archive stream keeps every message with headers a person can read; a message delivered again is
 * acknowledged and skipped; a message whose predecessor never arrived halts its source instead.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import amqp from 'amqplib';
import { routingKey } from '../../src/config/names.ts';
import { SCHEMA_VERSION_HEADER } from '../../src/bus/message-headers.ts';
import { CURRENT_SCHEMA_VERSION, decodeMessage, encodeMessage } from '../../src/events/avro-codec.ts';
import { BROKER, createTestSites, sql, tableRows, waitFor, type RunningSite, type TestSites } from '../helpers/test-sites.ts';

let t: TestSites;
let london: RunningSite;

before(async () => {
  t = await createTestSites(['paris', 'london']);
  await t.everywhere(`CREATE TABLE notes (n int, body text); ALTER TABLE notes REPLICA IDENTITY FULL;`);
  await t.start('paris');
  london = await t.start('london');
});

after(async () => {
  await t?.cleanup();
});

/** The archive's first messages, up to the one that brings the number of transactions they hold to `count`. */
async function readArchive(count: number): Promise<amqp.ConsumeMessage[]> {
  const connection = await amqp.connect(BROKER);
  const channel = await connection.createChannel();
  await channel.prefetch(100); // streams require a prefetch
  const messages: amqp.ConsumeMessage[] = [];
  let transactions = 0;
  await new Promise<void>((resolve, reject) => {
    setTimeout(() => reject(new Error(`the archive held ${transactions} transactions, not ${count}`)), 10_000).unref();
    void channel.consume(
      t.config.broker.archiveStream,
      (m) => {
        if (!m) return;
        messages.push(m);
        channel.ack(m);
        transactions += decodeMessage(m.content, CURRENT_SCHEMA_VERSION).transactions.length;
        if (transactions >= count) resolve();
      },
      { arguments: { 'x-stream-offset': 'first' } },
    );
  });
  await connection.close();
  return messages;
}

async function publish(body: Buffer, headers: Record<string, unknown>): Promise<void> {
  const connection = await amqp.connect(BROKER);
  const channel = await connection.createConfirmChannel();
  // As paris's process does: RabbitMQ validates the user-id, and appliers trust only it.
  channel.publish(t.config.broker.exchange, routingKey(t.sites.paris!), body, { headers, persistent: true, userId: 'guest' });
  await channel.waitForConfirms();
  await connection.close();
}

test('the archive keeps every message, readable without decoding', async () => {
  // One at a time, so that each is a message of its own (capture puts what it has read at once in one message).
  for (let n = 1; n <= 3; n++) {
    await sql(t.db('paris'), `INSERT INTO notes VALUES ($1::int, 'note ' || $1::int)`, [n]);
    await waitFor(`${n} rows at london`, async () => (await tableRows(t.db('london'), 'notes')).length === n);
  }
  const archived = await readArchive(3);
  const headers = archived.map((m) => m.properties.headers ?? {});
  assert.equal(headers[0]![SCHEMA_VERSION_HEADER], CURRENT_SCHEMA_VERSION);
  assert.equal(headers[0]!['sitesync-site'], t.sites.paris);
  assert.equal(headers[0]!['sitesync-tables'], 'public.notes');
  assert.match(String(headers[0]!['sitesync-operations']), /^insert=1$/);
  assert.match(String(headers[0]!['sitesync-position']), /^[0-9A-F]+\/[0-9A-F]+$/);
  assert.match(String(headers[0]!['sitesync-commit-time']), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  assert.equal(archived[0]!.properties.messageId, `${t.sites.paris}:${decodeMessage(archived[0]!.content, CURRENT_SCHEMA_VERSION).transactions[0]!.position}`);
});

test('messages delivered again are skipped as duplicates', async () => {
  const duplicates: string[] = [];
  london.events.on('apply:duplicate', (e) => duplicates.push(e.position));
  for (const m of await readArchive(3)) await publish(m.content, m.properties.headers ?? {});
  await waitFor('3 duplicates', async () => duplicates.length === 3);
  assert.equal((await tableRows(t.db('london'), 'notes')).length, 3, 'no row twice');
  await sql(t.db('paris'), `INSERT INTO notes VALUES (4, 'after the duplicates')`);
  await waitFor('the next one applies', async () => (await tableRows(t.db('london'), 'notes')).length === 4);
});

test('a message whose predecessor never arrived halts the source with SITESYNC_ERR_GAP', async () => {
  const halted: string[] = [];
  london.events.on('apply:halted', (e) => halted.push(e.reason));
  // The archive holds the three first transactions, the three sent again above, and the fourth: seven.
  const archived = (await readArchive(7)).map((m) => decodeMessage(m.content, CURRENT_SCHEMA_VERSION));
  const position = (p: string) => BigInt(`0x${p}`);
  const tx = archived.flatMap((m) => m.transactions).reduce((a, b) => (position(b.position) > position(a.position) ? b : a));
  const message = archived[0]!;
  // A transaction after a position london never saw, built on the newest one it applied: as if a message
  // between them were lost. (Built on an older one, it could fall inside what london applied: a duplicate.)
  const bump = (p: string, by: bigint) => (position(p) + by).toString(16).toUpperCase().padStart(16, '0');
  const orphan = { ...message, previous: bump(tx.position, 0x100n), transactions: [{ ...tx, position: bump(tx.position, 0x200n), id: `${tx.site}:${bump(tx.position, 0x200n)}` }] };
  await publish(encodeMessage(orphan), { [SCHEMA_VERSION_HEADER]: CURRENT_SCHEMA_VERSION });
  await waitFor('halt', async () => halted.length > 0);
  assert.match(halted[0]!, /^SITESYNC_ERR_GAP: a message from site paris_\w+ follows position [0-9A-F]+\/[0-9A-F]+, but london_\w+ has applied only up to [0-9A-F]+\/[0-9A-F]+: a message is missing/);
  assert.equal((await tableRows(t.db('london'), 'notes')).length, 4, 'the orphan was not applied');
});
