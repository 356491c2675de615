/**
 * `sitesync remove-site NAME`: removing a site is one command. NAME is still in the configuration file given
 * (its URLs say where to drop what it left); the operator removes it from the file afterwards.
 *
 * It refuses, in one line, while NAME's `sitesync run` is connected: its capture is active (its connector's
 * readStatus: a PostgreSQL slot being read, a MariaDB binlog reader, a SQL Server or Oracle checkpoint
 * written in the last 30 s) or its queue has a consumer. Otherwise, each step idempotent and said in one line:
 *
 * 1. at NAME's database: its capture state and the progress it kept of every other site (Connector.forgetSite:
 *    PostgreSQL's slot, publication and origins; the other kinds' bookkeeping rows);
 * 2. at every other site's database: the progress of NAME kept there, so that a site added later under the
 *    same name is neither taken for a duplicate (positions below an old origin's) nor for a gap (a first
 *    message whose predecessor an old row names);
 * 3. on the broker: NAME's queue and parking queue, the bindings of NAME's routing key to the other sites'
 *    queues, and NAME's broker user when `sitesync setup` made one (with --management-url; otherwise the
 *    rabbitmqctl command is printed, as setup does);
 * 4. what is left to the operator.
 *
 * A step that cannot be done at one site (unreachable, a missing right) is one line on stderr with its fix;
 * the other sites' steps still run, and the command exits 1. Run it again once fixed: what was done is
 * "already gone".
 *
 * Why the other sites' processes need no restart: each site's queue is bound to the other sites' routing
 * keys (topology.ts), so deleting NAME's queue and NAME's binding leaves every remaining route as it was; their
 * captures' messages still reach the remaining queues and the archive (so `mandatory` publishing still finds a
 * queue); their appliers open a source's session only when a message of that source arrives, and a
 * PostgreSQL site's apply session of NAME, which held NAME's origin, was ended by step 2; their WAL watch finds
 * NAME's slot gone and reports 0. Their configuration still names NAME until they restart, which only means they
 * would accept NAME's messages: none is published any more (NAME is stopped, its broker user gone). NAME's
 * messages already in their queues are applied by them (their origin or row is then made again: the command
 * warns when a queue is not empty, and a second run drops it); after a restart with the edited file, a
 * message of NAME is from a site not in the configuration, which the applier parks (SITESYNC_ERR_MESSAGE_INVALID,
 * message-provenance.ts) and never applies.
 */
import {
  brokerUrlFor,
  brokerUserOf,
  databaseUrlFor,
  expectedBrokerUser,
  isConfiguredSite,
  type Config,
} from '../config/config-schema.ts';
import { connectorFor, type ConnectorRegistry } from '../connector.ts';
import { parkingQueue, routingKey, siteQueue } from '../config/names.ts';
import { connectBroker, withChannel } from '../bus/broker-connection.ts';
import { describeError, SitesyncError } from '../errors.ts';
import { redactSecrets, redactUrl } from '../observability/logger.ts';
import type { ChannelModel } from 'amqplib';

export interface RemoveSiteOptions {
  readonly connectors: ConnectorRegistry;
  /** RabbitMQ's management API with an administrator's credentials: NAME's broker user is deleted through it. */
  readonly managementUrl?: string;
  /** NAME's database is gone for good: nothing is read or dropped there. */
  readonly databaseGone?: boolean;
}

export interface RemoveSiteOutput {
  /** A step done, or something to know (stdout). */
  print(line: string): void;
  /** A step that could not be done, with its fix (stderr). */
  problem(line: string): void;
}

/** AMQP reply code of a passive declare of a queue that does not exist. */
const AMQP_NOT_FOUND = 404;
const AMQP_ACCESS_REFUSED = 403;

/** Runs every step; returns how many could not be done (each already reported through `out.problem`). */
export async function removeSite(config: Config, name: string, options: RemoveSiteOptions, out: RemoveSiteOutput): Promise<number> {
  if (!isConfiguredSite(config, name)) {
    throw new SitesyncError(
      'SITESYNC_ERR_CONFIG',
      `site ${JSON.stringify(name)} is not in the configuration; remove-site reads its URLs there, so keep it in the file until remove-site has run (put it back if it is gone), or name one of: ${Object.keys(config.sites).join(', ')}`,
    );
  }
  const sites = Object.keys(config.sites);
  const others = sites.filter((s) => s !== name);
  const connector = connectorFor(options.connectors, config, name);
  let problems = 0;
  const failed = (where: string, error: unknown): void => {
    problems++;
    out.problem(`${where}: ${redactSecrets(describeError(error))}`);
  };

  const broker = await connect(config);
  try {
    // Refuse while NAME's process is connected: through its database, and through its queue.
    const running: string[] = [];
    const queue = await inspectQueue(broker, siteQueue(name));
    if (queue !== null && queue.consumerCount > 0) running.push(`queue ${siteQueue(name)} has ${queue.consumerCount} consumer(s)`);
    if (!options.databaseGone) {
      let capture;
      try {
        capture = (await connector.readStatus(databaseUrlFor(config, name, 'monitor'), name, [])).capture;
      } catch (error) {
        throw new SitesyncError(
          'SITESYNC_ERR_DATABASE_UNREACHABLE',
          `cannot read site ${name}'s database to tell whether its "sitesync run" is still connected (${redactSecrets(describeError(error))}); make it reachable and run remove-site again, or give --database-gone if it is gone for good`,
          { cause: error },
        );
      }
      if (capture.active) running.push(`its ${capture.name} is being read`);
    }
    if (running.length > 0) {
      throw new SitesyncError('SITESYNC_ERR_SITE_IN_USE', `site ${name} is still running (${running.join('; ')}): stop its "sitesync run --site ${name}", then run remove-site again`);
    }

    // NAME's messages not yet taken by a running site are applied by it, which then keeps NAME's progress again.
    for (const other of others) {
      const waiting = await inspectQueue(broker, siteQueue(other));
      if (waiting !== null && waiting.messageCount > 0) {
        out.print(
          `note: ${siteQueue(other)} holds ${waiting.messageCount} message(s) ${other} has not taken yet; any of ${name}'s among them is applied by ${other}, which then keeps ${name}'s progress again: run remove-site again once sitesync status shows 0 waiting`,
        );
      }
    }

    // 1. NAME's database: its capture state and the progress it kept of every other site.
    if (options.databaseGone) {
      out.print(`not touched: ${name}'s database (--database-gone); if its server still runs, what sitesync made there stays (a PostgreSQL slot keeps WAL for ever): drop it there by hand`);
    } else if (!connector.forgetSite) {
      failed(`site ${name}`, new SitesyncError('SITESYNC_ERR_CONFIG', `the ${connector.kind} connector cannot forget a site: drop ${name}'s capture state and progress there by hand`));
    } else {
      const urls = { capture: databaseUrlFor(config, name, 'capture'), apply: databaseUrlFor(config, name, 'apply') };
      await connector.forgetSite(urls, name, name, sites, out.print).catch((error: unknown) => failed(`site ${name}`, error));
    }

    // 2. Every other site's database: the progress of NAME kept there.
    for (const other of others) {
      const at = connectorFor(options.connectors, config, other);
      if (!at.forgetSite) {
        failed(`site ${other}`, new SitesyncError('SITESYNC_ERR_CONFIG', `the ${at.kind} connector cannot forget a site: drop the progress of ${name} kept at ${other} by hand`));
        continue;
      }
      await at.forgetSite({ capture: null, apply: databaseUrlFor(config, other, 'apply') }, other, name, sites, out.print).catch((error: unknown) => failed(`site ${other}`, error));
    }

    // 3. The broker: NAME's queues, its routing key's bindings, its user.
    for (const q of [siteQueue(name), parkingQueue(name)]) {
      await deleteQueue(broker, q, name, out).catch((error: unknown) => failed(`RabbitMQ`, error));
    }
    await unbind(broker, config, name, others, out).catch((error: unknown) => failed('RabbitMQ', error));
  } finally {
    await broker.close().catch(() => undefined);
  }
  await forgetBrokerUser(config, name, options.managementUrl, out).catch((error: unknown) => failed('RabbitMQ', error));

  // 4. What is left to the operator.
  out.print(
    `left to you: remove sites.${name} from the configuration file (every copy of it)${others.length > 0 ? `; restart nothing: ${others.join(', ')} keep replicating as they run` : ''}`,
  );
  if (others.length > 0) {
    out.print(
      `${name}'s messages already in the other sites' queues are applied by their running processes; one that reaches a process restarted with the edited file is from a site no longer configured: parked there (SITESYNC_ERR_MESSAGE_INVALID), never applied (sitesync parked lists it)`,
    );
  }
  const admin = brokerUserOf(config.broker.url);
  const declaring = others.filter((other) => brokerUserOf(brokerUrlFor(config, other)) === admin);
  if (declaring.length > 0) {
    out.print(
      `${declaring.join(', ')} connect${declaring.length === 1 ? 's' : ''} as ${admin}, which may declare: until restarted with the edited file, a reconnect to RabbitMQ declares ${siteQueue(name)} again (it would fill, unread); restart ${declaring.length === 1 ? 'it' : 'them'} with the edited file when convenient, or delete it again then (rabbitmqctl delete_queue ${siteQueue(name)})`,
    );
  }
  return problems;
}

async function connect(config: Config): Promise<ChannelModel> {
  try {
    const connection = await connectBroker(config.broker.url, 'sitesync remove-site');
    connection.on('error', () => undefined); // a failing call reports it
    return connection;
  } catch (error) {
    if ((error as SitesyncError).code !== 'SITESYNC_ERR_BROKER_UNREACHABLE') throw error;
    throw new SitesyncError('SITESYNC_ERR_BROKER_UNREACHABLE', `RabbitMQ at ${redactUrl(config.broker.url)} is unreachable (${((error as Error).cause as Error)?.message?.split('\n')[0] ?? ''}); start it or fix broker.url, then run remove-site again (nothing was done)`, {
      cause: error,
    });
  }
}

/** A queue's counts, or null when it does not exist. */
async function inspectQueue(broker: ChannelModel, queue: string): Promise<{ messageCount: number; consumerCount: number } | null> {
  try {
    return await withChannel(broker, (c) => c.checkQueue(queue));
  } catch (error) {
    if ((error as { code?: unknown }).code === AMQP_NOT_FOUND) return null;
    throw new SitesyncError('SITESYNC_ERR_BROKER_UNREACHABLE', `RabbitMQ did not say whether queue ${queue} exists (${(error as Error).message.split('\n')[0]}); run remove-site again`, { cause: error });
  }
}

function refused(error: unknown, what: string, command: string): Error {
  if ((error as { code?: unknown }).code !== AMQP_ACCESS_REFUSED) return error as Error;
  return new SitesyncError(
    'SITESYNC_ERR_PERMISSION',
    `RabbitMQ refused to ${what} (${(error as Error).message.split('\n')[0]}): run remove-site with an administrator's broker.url (SITESYNC_BROKER__URL), or as one: ${command}`,
    { cause: error },
  );
}

async function deleteQueue(broker: ChannelModel, queue: string, site: string, out: RemoveSiteOutput): Promise<void> {
  if ((await inspectQueue(broker, queue)) === null) {
    out.print(`already gone: queue ${queue}`);
    return;
  }
  try {
    const { messageCount } = await withChannel(broker, (c) => c.deleteQueue(queue));
    out.print(`dropped queue ${queue}${messageCount > 0 ? ` (with ${messageCount} message(s) that were for ${site} only)` : ''}`);
  } catch (error) {
    throw refused(error, `delete queue ${queue}`, `rabbitmqctl delete_queue ${queue}`);
  }
}

/** The bindings of `site`'s routing key to the other sites' queues (unbinding one that is not there is a no-op for RabbitMQ). */
async function unbind(broker: ChannelModel, config: Config, site: string, others: readonly string[], out: RemoveSiteOutput): Promise<void> {
  const exchange = config.broker.exchange;
  const unbound: string[] = [];
  for (const other of others) {
    const queue = siteQueue(other);
    if ((await inspectQueue(broker, queue)) === null) continue;
    try {
      await withChannel(broker, (c) => c.unbindQueue(queue, exchange, routingKey(site)));
    } catch (error) {
      if ((error as { code?: unknown }).code === AMQP_NOT_FOUND) continue; // the exchange is gone: so is the binding
      throw refused(error, `unbind ${queue} from ${routingKey(site)}`, `rabbitmqadmin delete binding source='${exchange}' destination='${queue}' destination_type=queue properties_key='${routingKey(site)}'`);
    }
    unbound.push(queue);
  }
  if (unbound.length > 0) out.print(`unbound routing key ${routingKey(site)} from ${unbound.join(', ')}`);
}

/** NAME's own broker user (as `sitesync setup` made it), if it has one that no other site uses. */
async function forgetBrokerUser(config: Config, site: string, managementUrl: string | undefined, out: RemoveSiteOutput): Promise<void> {
  const user = expectedBrokerUser(config, site);
  const admin = brokerUserOf(config.broker.url);
  if (user === admin) {
    out.print(`no broker user of ${site}'s own: it published as ${user}, the user of broker.url`);
    return;
  }
  const sharing = Object.keys(config.sites).filter((s) => s !== site && expectedBrokerUser(config, s) === user);
  if (sharing.length > 0) {
    out.print(`kept broker user ${user}: ${sharing.join(', ')} publish${sharing.length === 1 ? 'es' : ''} as it too`);
    return;
  }
  if (!managementUrl) {
    out.print(`run this as an administrator of RabbitMQ (if sitesync setup made the user): rabbitmqctl delete_user '${user.replace(/'/g, `'\\''`)}'`);
    return;
  }
  const status = await managementDelete(managementUrl, `users/${encodeURIComponent(user)}`);
  out.print(status === 404 ? `already gone: broker user ${user}` : `dropped broker user ${user} (and its permissions)`);
}

/** DELETE through RabbitMQ's management API; its status (2xx or 404), any other answer one line with the fix. */
async function managementDelete(url: string, path: string): Promise<number> {
  let base: URL;
  try {
    base = new URL(url);
  } catch {
    throw new SitesyncError('SITESYNC_ERR_CONFIG', `--management-url ${redactUrl(url)} is not a URL; give http://admin:secret@host:15672/`);
  }
  const auth = `Basic ${Buffer.from(`${decodeURIComponent(base.username)}:${decodeURIComponent(base.password)}`).toString('base64')}`;
  base.username = '';
  base.password = '';
  const endpoint = new URL(`api/${path}`, base.href.endsWith('/') ? base.href : `${base.href}/`).href;
  let response: Response;
  try {
    response = await fetch(endpoint, { method: 'DELETE', headers: { authorization: auth } });
  } catch (error) {
    throw new SitesyncError('SITESYNC_ERR_BROKER_UNREACHABLE', `RabbitMQ's management API at ${redactUrl(url)} is unreachable (${(error as Error).message}); enable the rabbitmq_management plugin or fix --management-url, then run remove-site again`, { cause: error });
  }
  if (response.status === 401 || response.status === 403) {
    throw new SitesyncError('SITESYNC_ERR_PERMISSION', `RabbitMQ's management API at ${redactUrl(url)} refused DELETE ${path} (${response.status}); --management-url needs an administrator's user and password`);
  }
  if (!response.ok && response.status !== 404) {
    throw new SitesyncError('SITESYNC_ERR_BROKER_REJECTED', `RabbitMQ's management API refused DELETE ${path} (${response.status} ${(await response.text()).slice(0, 200)})`);
  }
  return response.status;
}

