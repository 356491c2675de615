/**
 * `sitesync subscribe` / `sitesync unsubscribe`: selective subscribers, managed on the broker alone.
 *
 * A subscriber is a durable quorum queue `sitesync.subscriber.<name>` bound to the headers exchange
 * `<exchange>.tables` (declared by every sitesync process, see src/bus/topology.ts). It has one binding per
 * wanted (site, table), each with `x-match: any` and two arguments:
 *
 *   sitesync-table:<site>/<schema>.<table> = 1   the table itself
 *   sitesync-table:<site>/*                = 1   a message of that site too large to name its tables
 *
 * One binding per table is what makes the commands incremental without keeping state anywhere: AMQP
 * cannot list a queue's bindings, but it can remove one binding given its exact arguments, so
 * `subscribe` adds the bindings of the tables it names and `unsubscribe --tables` removes those. A message
 * that several bindings match is still delivered to the queue once. Publishers are never touched: they
 * already name every table a message touches in its headers (src/bus/message-headers.ts).
 */
import type { Channel, ChannelModel } from 'amqplib';
import type { Config } from '../config/config-schema.ts';
import { allTablesHeader, subscriberQueue, tableHeader, tablesExchange } from '../config/names.ts';
import { connectBroker } from '../bus/broker-connection.ts';
import { declareTopology } from '../bus/topology.ts';
import { SitesyncError } from '../errors.ts';

export interface SubscriptionOptions {
  readonly name: string;
  /** Comma-separated `schema.table` list. */
  readonly tables?: string;
  /** Comma-separated site list; default: every configured site. */
  readonly sites?: string;
}

export interface Subscription {
  readonly name: string;
  readonly queue: string;
  readonly sites: readonly string[];
  /** `schema.table`, as PostgreSQL stores the names (case kept, no quotes). */
  readonly tables: readonly string[];
}

const NAME = /^[a-z0-9_.-]+$/;
const MAX_NAME_LENGTH = 200; // queue names are at most 255 bytes
const TABLE = /^([^.]+)\.([^.]+)$/;
const MAX_IDENTIFIER_BYTES = 63; // PostgreSQL's NAMEDATALEN - 1

function configError(message: string): SitesyncError {
  return new SitesyncError('SITESYNC_ERR_CONFIG', message);
}

function list(value: string): string[] {
  return [...new Set(value.split(',').map((item) => item.trim()))];
}

/** Validates the command's options; every problem is one line naming the value and the fix. */
export function parseSubscription(config: Config, options: SubscriptionOptions): Subscription {
  const { name } = options;
  if (!NAME.test(name) || name.length > MAX_NAME_LENGTH) {
    throw configError(`subscriber name ${JSON.stringify(name)} is not valid; use 1 to ${MAX_NAME_LENGTH} lower-case letters, digits, '_', '.' or '-'`);
  }
  const configured = Object.keys(config.sites);
  const sites = options.sites === undefined ? configured : list(options.sites);
  for (const site of sites) {
    if (!configured.includes(site)) {
      throw configError(`site ${JSON.stringify(site)} is not in the configuration (sites: ${configured.join(', ')}); pass some of them with --sites, or leave --sites out for all of them`);
    }
  }
  const tables = options.tables === undefined ? [] : list(options.tables);
  for (const table of tables) {
    const match = TABLE.exec(table);
    if (!match || Buffer.byteLength(match[1]!) > MAX_IDENTIFIER_BYTES || Buffer.byteLength(match[2]!) > MAX_IDENTIFIER_BYTES) {
      throw configError(`table ${JSON.stringify(table)} is not valid; write schema.table (for example public.users), names as PostgreSQL stores them, without quotes, at most 63 bytes each`);
    }
  }
  return { name, queue: subscriberQueue(name), sites, tables };
}

/** The arguments of the binding that brings `site`'s messages touching `table` to a subscriber. */
export function bindingArguments(site: string, table: string): Record<string, string | number> {
  return { 'x-match': 'any', [tableHeader(site, table)]: 1, [allTablesHeader(site)]: 1 };
}

type Print = (line: string) => void;

async function withChannel<T>(config: Config, purpose: string, work: (channel: Channel, connection: ChannelModel) => Promise<T>): Promise<T> {
  const connection = await connectBroker(config.broker.url, `sitesync ${purpose}`);
  connection.on('error', () => undefined);
  try {
    const channel = await connection.createChannel();
    channel.on('error', () => undefined);
    return await work(channel, connection);
  } finally {
    await connection.close().catch(() => undefined);
  }
}

function refused(what: string, error: unknown): SitesyncError {
  if (error instanceof SitesyncError) return error;
  const message = ((error as Error)?.message ?? String(error)).split('\n')[0];
  return new SitesyncError('SITESYNC_ERR_BROKER_REJECTED', `RabbitMQ refused to ${what}: ${message}`, { cause: error });
}

async function brokerStep<T>(what: string, action: () => Promise<T>): Promise<T> {
  try {
    return await action();
  } catch (error) {
    throw refused(what, error);
  }
}

/** Messages waiting in the subscriber's queue; a one-line error if there is no such subscriber. */
async function existingQueue(channel: Channel, subscription: Subscription): Promise<number> {
  try {
    return (await channel.checkQueue(subscription.queue)).messageCount;
  } catch (error) {
    if (/NOT_FOUND|404/.test((error as Error)?.message ?? '')) {
      throw configError(`there is no subscriber ${JSON.stringify(subscription.name)} (queue ${subscription.queue} does not exist); create it with sitesync subscribe`);
    }
    throw refused(`check queue ${subscription.queue}`, error);
  }
}

/**
 * Declares the topology, the subscriber's queue and one binding per (site, table). Idempotent; tables of
 * an existing subscriber stay (this adds).
 */
export async function subscribe(config: Config, options: SubscriptionOptions, print: Print): Promise<Subscription> {
  const subscription = parseSubscription(config, options);
  if (subscription.tables.length === 0) throw configError('subscribe needs --tables schema.table[,schema.table…]');
  const exchange = tablesExchange(config.broker.exchange);
  await withChannel(config, `subscribe ${subscription.name}`, async (channel, connection) => {
    await declareTopology(connection, config);
    print(`topology ready: headers exchange ${exchange} receives every message of ${config.broker.exchange} (site.#)`);
    const queue = await brokerStep(`declare queue ${subscription.queue}`, () =>
      channel.assertQueue(subscription.queue, {
        durable: true,
        arguments: { 'x-queue-type': 'quorum', 'x-single-active-consumer': true },
      }),
    );
    print(`queue ${subscription.queue} ready (quorum, ${queue.messageCount} messages waiting)`);
    for (const site of subscription.sites) {
      for (const table of subscription.tables) {
        await brokerStep(`bind ${subscription.queue} to ${exchange}`, () => channel.bindQueue(subscription.queue, exchange, '', bindingArguments(site, table)));
        print(`${subscription.queue} receives ${site}/${table}`);
      }
    }
  });
  return subscription;
}

/**
 * With tables: removes the bindings of those (site, table) pairs (removing one that is not there is not
 * an error). Without: deletes the queue, saying how many messages it held.
 */
export async function unsubscribe(config: Config, options: SubscriptionOptions, print: Print): Promise<Subscription> {
  const subscription = parseSubscription(config, options);
  if (options.sites !== undefined && subscription.tables.length === 0) {
    throw configError('unsubscribe --sites needs --tables (the tables to stop receiving from those sites); without both, unsubscribe deletes the whole subscriber');
  }
  const exchange = tablesExchange(config.broker.exchange);
  await withChannel(config, `unsubscribe ${subscription.name}`, async (channel) => {
    const waiting = await existingQueue(channel, subscription);
    if (subscription.tables.length > 0) {
      for (const site of subscription.sites) {
        for (const table of subscription.tables) {
          await brokerStep(`unbind ${subscription.queue} from ${exchange}`, () => channel.unbindQueue(subscription.queue, exchange, '', bindingArguments(site, table)));
          print(`${subscription.queue} no longer receives ${site}/${table}`);
        }
      }
      print(`queue ${subscription.queue} kept (${waiting} messages waiting)`);
      return;
    }
    const deleted = await brokerStep(`delete queue ${subscription.queue}`, () => channel.deleteQueue(subscription.queue));
    print(`deleted queue ${subscription.queue} (it held ${deleted.messageCount} messages)`);
  });
  return subscription;
}
