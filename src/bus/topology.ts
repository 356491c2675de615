/**
 * The broker layout (all of it, for every configured site, so that no site's queue is missing when another
 * site publishes first):
 *
 *   exchange sitesync.changes (topic, durable)
 *     ├── site.paris, site.madrid ──▶ SITE_LONDON   (quorum queue, single active consumer)
 *     ├── site.london, site.madrid ─▶ SITE_PARIS
 *     ├── site.#                   ─▶ sitesync.archive (stream, kept archiveRetentionDays)
 *     └── site.#                   ─▶ exchange sitesync.changes.tables (headers, durable)
 *           └── x-match any, sitesync-table:<site>/<schema>.<table> ─▶ sitesync.subscriber.<name> (per subscriber)
 *   exchange sitesync.changes.parking (topic, durable)
 *     ├── london ─▶ SITE_LONDON.parked   (quorum queues: messages that could not be applied)
 *     └── paris  ─▶ SITE_PARIS.parked
 *
 * The headers exchange receives every message and routes it on the `sitesync-table:` headers publishers
 * add (message-headers.ts); selective subscribers (`sitesync subscribe`, src/cli/subscribe-command.ts) bind
 * their own queues to it, so adding one changes nothing at the publishing sites.
 *
 * Nothing is ever dropped by the broker: a site queue has an explicit delivery limit (RabbitMQ 4 drops or
 * dead-letters a quorum-queue message after 20 redeliveries by default, and every reconnect redelivers up
 * to apply.prefetch messages) far above anything a reconnecting applier reaches, and past it the message
 * is dead-lettered, at least once, into the site's parking queue instead of being dropped. A parking
 * queue holds at most PARKING_QUEUE_MAX_BYTES and then refuses more (the applier stops and says so)
 * rather than dropping its oldest.
 *
 * Who declares: `sitesync setup` (an administrator's credentials) declares it all. A running process
 * declares it too when its broker user may (the simple one-user deployment); a per-site user has no
 * configure permission, and then the process only checks, passively, that what it uses exists.
 */
import type { Channel, ChannelModel } from 'amqplib';
import type { Config } from '../config/config-schema.ts';
import { parkingExchange, parkingQueue, routingKey, siteQueue, tablesExchange } from '../config/names.ts';
import { SitesyncError } from '../errors.ts';
import type { Logger } from '../observability/logger.ts';

/**
 * Deliveries of one message before RabbitMQ dead-letters it to the parking queue. Only a returned delivery
 * counts (a reconnect, a channel closed with the message unacknowledged); sitesync never rejects one.
 */
export const DELIVERY_LIMIT = 100_000;
/** Most bytes a parking queue holds; past it, parking is refused (and the applier waits) instead of dropping. */
export const PARKING_QUEUE_MAX_BYTES = 1024 ** 3;

export function siteQueueArguments(config: Config, site: string, deliveryLimit = DELIVERY_LIMIT): Record<string, unknown> {
  return {
    'x-queue-type': 'quorum',
    'x-single-active-consumer': true,
    'x-delivery-limit': deliveryLimit,
    'x-dead-letter-exchange': parkingExchange(config.broker.exchange),
    'x-dead-letter-routing-key': site,
    // at-least-once dead-lettering needs reject-publish overflow; the queue has no length limit.
    'x-dead-letter-strategy': 'at-least-once',
    'x-overflow': 'reject-publish',
  };
}

export const PARKING_QUEUE_ARGUMENTS = {
  'x-queue-type': 'quorum',
  'x-max-length-bytes': PARKING_QUEUE_MAX_BYTES,
  'x-overflow': 'reject-publish',
} as const;

/** What a process of `site` needs to exist: checked passively when it may not declare. */
interface Needs {
  readonly exchanges: readonly string[];
  readonly queues: readonly string[];
}

/**
 * Declares the whole topology, or, when the connection's user may not (no configure permission), checks
 * that what `needs` names exists.
 */
export async function ensureTopology(connection: ChannelModel, config: Config, needs: Needs, logger: Logger): Promise<void> {
  try {
    await declareTopology(connection, config, logger);
    return;
  } catch (error) {
    if (!isAccessRefused(error)) throw error;
  }
  const check = await openChannel(connection);
  const missing = async (what: string, action: () => Promise<unknown>): Promise<void> => {
    try {
      await action();
    } catch (error) {
      throw new SitesyncError(
        'SITESYNC_ERR_BROKER_REJECTED',
        `${what} does not exist and this process's broker user may not declare it (no configure permission): run \`sitesync setup\` with an administrator's credentials (${(error as Error).message.split('\n')[0]})`,
        { cause: error },
      );
    }
  };
  for (const exchange of needs.exchanges) await missing(`exchange ${exchange}`, () => check.checkExchange(exchange));
  for (const queue of needs.queues) await missing(`queue ${queue}`, () => check.checkQueue(queue));
  await check.close().catch(() => undefined);
  logger.debug('broker topology declared by an administrator (sitesync setup); checked that it exists');
}

/** What a site's process publishes to and consumes from. */
export function siteNeeds(config: Config, site: string): Needs {
  return { exchanges: [config.broker.exchange, parkingExchange(config.broker.exchange)], queues: [siteQueue(site), parkingQueue(site)] };
}

/**
 * Declares every exchange, queue and binding (idempotent). Needs configure permission on all of them; a
 * refusal (403) is thrown as it is, for ensureTopology. A channel a refused declaration closed is replaced.
 */
export async function declareTopology(connection: ChannelModel, config: Config, logger?: Logger): Promise<void> {
  const { exchange, archiveStream, archiveRetentionDays } = config.broker;
  let channel = await openChannel(connection);
  const step = async (what: string, action: (c: Channel) => Promise<unknown>): Promise<void> => {
    try {
      await action(channel);
    } catch (error) {
      if (isAccessRefused(error)) throw error;
      throw new SitesyncError(
        'SITESYNC_ERR_BROKER_REJECTED',
        `the broker refused to declare ${what}: ${(error as Error).message}; if it exists with other settings, delete it (rabbitmqctl delete_queue / delete_exchange) or give sitesync another name in the configuration`,
        { cause: error },
      );
    }
  };
  /**
   * A queue declared by an earlier sitesync, before its delivery limit and overflow settings existed,
   * cannot be declared again with them (RabbitMQ refuses other arguments, 406, and closes the channel): it
   * keeps working as it is, and a warning says what it lacks and how to add it without losing messages.
   */
  const queue = async (name: string, args: Record<string, unknown>): Promise<void> => {
    try {
      await channel.assertQueue(name, { durable: true, arguments: args });
    } catch (error) {
      const message = (error as Error).message ?? '';
      if (!/PRECONDITION_FAILED|406/.test(message) || !/x-(delivery-limit|dead-letter|overflow|max-length)/.test(message)) {
        return step(`queue ${name}`, () => Promise.reject(error));
      }
      channel = await openChannel(connection);
      await step(`queue ${name}`, (c) => c.checkQueue(name));
      logger?.warn(
        { queue: name },
        `queue ${name} was declared by an older sitesync without its delivery limit or overflow settings; it keeps working, but RabbitMQ 4 drops a message redelivered 20 times: add them with a policy, e.g. rabbitmqctl set_policy --apply-to quorum_queues sitesync-${name} '^${name.replace(/\./g, '\\.')}$' '{"delivery-limit": ${DELIVERY_LIMIT}}'`,
      );
    }
  };
  try {
    await step(`exchange ${exchange}`, (c) => c.assertExchange(exchange, 'topic', { durable: true }));
    await step(`stream ${archiveStream}`, (c) =>
      c.assertQueue(archiveStream, { durable: true, arguments: { 'x-queue-type': 'stream', 'x-max-age': `${archiveRetentionDays}D` } }),
    );
    await step(`binding of ${archiveStream}`, (c) => c.bindQueue(archiveStream, exchange, 'site.#'));
    const tables = tablesExchange(exchange);
    await step(`exchange ${tables}`, (c) => c.assertExchange(tables, 'headers', { durable: true }));
    await step(`binding of exchange ${tables}`, (c) => c.bindExchange(tables, exchange, 'site.#'));
    const parking = parkingExchange(exchange);
    await step(`exchange ${parking}`, (c) => c.assertExchange(parking, 'topic', { durable: true }));
    const sites = Object.keys(config.sites);
    for (const site of sites) {
      await queue(siteQueue(site), siteQueueArguments(config, site));
      for (const other of sites) {
        if (other !== site) await step(`binding of ${siteQueue(site)}`, (c) => c.bindQueue(siteQueue(site), exchange, routingKey(other)));
      }
      await queue(parkingQueue(site), PARKING_QUEUE_ARGUMENTS);
      await step(`binding of ${parkingQueue(site)}`, (c) => c.bindQueue(parkingQueue(site), parking, site));
    }
  } finally {
    await channel.close().catch(() => undefined);
  }
}

async function openChannel(connection: ChannelModel): Promise<Channel> {
  const channel = await connection.createChannel();
  channel.on('error', () => undefined); // a refusal is reported by the call that caused it
  return channel;
}

function isAccessRefused(error: unknown): boolean {
  return /ACCESS[_-]REFUSED|\b403\b/.test((error as Error)?.message ?? '');
}
