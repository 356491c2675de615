/**
 * Nothing is dropped by the broker, whatever its version: RabbitMQ 4 drops (or dead-letters) a quorum-queue
 * message after 20 redeliveries by default, and every reconnect of an applier redelivers what it had not
 * acknowledged. Site queues carry an explicit delivery limit far above that, and past it the message is
 * dead-lettered, at least once, into the site's parking queue rather than dropped.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import amqp from 'amqplib';
import { declareTopology, DELIVERY_LIMIT, siteQueueArguments } from '../../src/bus/topology.ts';
import { parkingExchange, parkingQueue, siteQueue } from '../../src/config/names.ts';
import { BROKER, createTestSites, MANAGEMENT, waitFor, type TestSites } from '../helpers/test-sites.ts';

let t: TestSites;
let connection: amqp.ChannelModel;

before(async () => {
  t = await createTestSites(['paris', 'london']);
  connection = await amqp.connect(BROKER);
  await declareTopology(connection, t.config);
});

after(async () => {
  await connection?.close().catch(() => undefined);
  await t?.cleanup();
});

/**
 * Consumes `queue` (basic.get is refused on a single-active-consumer queue), handing every delivery back
 * (each return counts as a delivery) until `keep` says to keep one, which it returns unacknowledged.
 */
async function redeliver(channel: amqp.Channel, queue: string, keep: (deliveries: number) => boolean): Promise<{ message: amqp.ConsumeMessage | null; deliveries: number; cancel(): Promise<void> }> {
  await channel.prefetch(1);
  let deliveries = 0;
  let kept: amqp.ConsumeMessage | null = null;
  const { consumerTag } = await channel.consume(queue, (m) => {
    if (!m || kept) return;
    deliveries++;
    if (keep(deliveries)) kept = m;
    else channel.nack(m, false, true);
  });
  return {
    get message() {
      return kept;
    },
    get deliveries() {
      return deliveries;
    },
    cancel: async () => {
      await channel.cancel(consumerTag);
    },
  };
}

test('a site queue is declared with an explicit delivery limit and dead-lettering into its parking queue', async () => {
  const management = new URL(MANAGEMENT);
  const authorization = `Basic ${Buffer.from(`${decodeURIComponent(management.username)}:${decodeURIComponent(management.password)}`).toString('base64')}`;
  const queue = siteQueue(t.sites.london!);
  const response = await fetch(new URL(`api/queues/%2F/${encodeURIComponent(queue)}`, `${management.protocol}//${management.host}/`), { headers: { authorization } });
  const { arguments: args } = (await response.json()) as { arguments: Record<string, unknown> };
  assert.equal(args['x-delivery-limit'], DELIVERY_LIMIT);
  assert.equal(args['x-dead-letter-exchange'], parkingExchange(t.config.broker.exchange));
  assert.equal(args['x-dead-letter-routing-key'], t.sites.london);
  assert.equal(args['x-dead-letter-strategy'], 'at-least-once');
});

test('a message redelivered more than 20 times is still there, in its queue', async () => {
  const channel = await connection.createChannel();
  const queue = siteQueue(t.sites.london!);
  channel.sendToQueue(queue, Buffer.from('redelivered'), { persistent: true });
  const consumer = await redeliver(channel, queue, (n) => n > 25);
  const m = await waitFor('the message, a 26th time', async () => consumer.message ?? undefined);
  assert.equal(m.content.toString(), 'redelivered');
  assert.equal(consumer.deliveries, 26);
  channel.ack(m);
  await consumer.cancel();
  await channel.close();
});

test('past its delivery limit a message is dead-lettered into the parking queue, never dropped', async () => {
  // A queue of the same kind with a small limit, parking into london's parking queue.
  const channel = await connection.createChannel();
  const queue = `${siteQueue(t.sites.london!)}.limit-test`;
  await channel.assertQueue(queue, { durable: true, arguments: siteQueueArguments(t.config, t.sites.london!, 3) });
  try {
    channel.sendToQueue(queue, Buffer.from('over the limit'), { persistent: true, messageId: 'over-the-limit' });
    const consumer = await redeliver(channel, queue, () => false);
    const parked = await waitFor('the message in the parking queue', async () => (await channel.get(parkingQueue(t.sites.london!), { noAck: false })) || undefined);
    await consumer.cancel();
    assert.equal(parked.content.toString(), 'over the limit');
    assert.equal(parked.properties.messageId, 'over-the-limit');
    assert.match(JSON.stringify(parked.properties.headers ?? {}), /delivery_limit/);
    assert.ok(consumer.deliveries >= 3, `delivered ${consumer.deliveries} times first`);
    channel.ack(parked);
    assert.equal((await channel.checkQueue(queue)).messageCount, 0);
  } finally {
    await channel.deleteQueue(queue);
    await channel.close();
  }
});
