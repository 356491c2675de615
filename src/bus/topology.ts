/**
 * The broker layout every sitesync process declares at start (all of it, for every configured site, so
 * that no site's queue is missing when another site publishes first):
 *
 *   exchange sitesync.changes (topic, durable)
 *     ├── site.paris, site.madrid ──▶ SITE_LONDON   (quorum queue, single active consumer)
 *     ├── site.london, site.madrid ─▶ SITE_PARIS
 *     ├── site.#                   ─▶ sitesync.archive (stream, kept archiveRetentionDays)
 *     └── site.#                   ─▶ exchange sitesync.changes.tables (headers, durable)
 *           └── x-match any, sitesync-table:<site>/<schema>.<table> ─▶ sitesync.subscriber.<name> (per subscriber)
 *   SITE_LONDON.parked, SITE_PARIS.parked  (quorum queues: messages that could not be applied)
 *
 * The headers exchange receives every message and routes it on the `sitesync-table:` headers publishers
 * add (message-headers.ts); selective subscribers (`sitesync subscribe`, src/cli/subscribe-command.ts) bind
 * their own queues to it, so adding one changes nothing at the publishing sites.
 *
 * Declaring is idempotent; a queue that exists with other arguments fails with a message that says so.
 */
import type { Channel } from 'amqplib';
import type { Config } from '../config/config-schema.ts';
import { parkingQueue, routingKey, siteQueue, tablesExchange } from '../config/names.ts';
import { SitesyncError } from '../errors.ts';

export async function declareTopology(channel: Channel, config: Config): Promise<void> {
  const { exchange, archiveStream, archiveRetentionDays } = config.broker;
  const step = async (what: string, action: () => Promise<unknown>): Promise<void> => {
    try {
      await action();
    } catch (error) {
      throw new SitesyncError(
        'SITESYNC_ERR_BROKER_REJECTED',
        `the broker refused to declare ${what}: ${(error as Error).message}; if it exists with other settings, delete it (rabbitmqctl delete_queue / delete_exchange) or give sitesync another name in the configuration`,
        { cause: error },
      );
    }
  };
  await step(`exchange ${exchange}`, () => channel.assertExchange(exchange, 'topic', { durable: true }));
  await step(`stream ${archiveStream}`, () =>
    channel.assertQueue(archiveStream, {
      durable: true,
      arguments: { 'x-queue-type': 'stream', 'x-max-age': `${archiveRetentionDays}D` },
    }),
  );
  await step(`binding of ${archiveStream}`, () => channel.bindQueue(archiveStream, exchange, 'site.#'));
  const tables = tablesExchange(exchange);
  await step(`exchange ${tables}`, () => channel.assertExchange(tables, 'headers', { durable: true }));
  await step(`binding of exchange ${tables}`, () => channel.bindExchange(tables, exchange, 'site.#'));
  const sites = Object.keys(config.sites);
  for (const site of sites) {
    const queue = siteQueue(site);
    await step(`queue ${queue}`, () =>
      channel.assertQueue(queue, {
        durable: true,
        arguments: { 'x-queue-type': 'quorum', 'x-single-active-consumer': true },
      }),
    );
    for (const other of sites) {
      if (other !== site) await step(`binding of ${queue}`, () => channel.bindQueue(queue, exchange, routingKey(other)));
    }
    await step(`queue ${parkingQueue(site)}`, () =>
      channel.assertQueue(parkingQueue(site), { durable: true, arguments: { 'x-queue-type': 'quorum' } }),
    );
  }
}
