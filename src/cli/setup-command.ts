/**
 * `sitesync setup`: what an administrator does once (and again after adding a site), so that the running
 * processes need no configure permission and each site's broker user can do only its own part:
 *
 * - declares the whole broker topology (src/bus/topology.ts) with `broker.url`, an administrator's URL;
 * - gives every site whose `brokerUser` is not the administrator's user the least permissions it needs:
 *     configure  nothing
 *     write      the change exchange and the parking exchange, and with topic permissions only its own
 *                routing key on each (site.<name>, and <name>)
 *     read       its own queue (SITE_<NAME>), and the archive stream (a joining site takes the sites
 *                it held from there: join-coordinator.ts; it carries nothing its queue does not)
 *   With --management-url (RabbitMQ's HTTP API, an administrator's credentials) it creates the users and
 *   sets these; without, it prints the rabbitmqctl commands that do.
 *
 * Passwords never appear in output: a new user's password is read from SITESYNC_SETUP_PASSWORD_<SITE>, and
 * the printed commands name that variable.
 */
import { brokerUserOf, databaseOf, databaseUrlFor, expectedBrokerUser, type Config } from '../config/config-schema.ts';
import { connectorFor, type ConnectorRegistry } from '../connector.ts';
import { parkingExchange, routingKey, siteQueue } from '../config/names.ts';
import { connectBroker } from '../bus/broker-connection.ts';
import { declareTopology } from '../bus/topology.ts';
import { describeError, SitesyncError } from '../errors.ts';
import { redactUrl } from '../observability/logger.ts';

export interface SetupOptions {
  /** RabbitMQ's management API, e.g. http://admin:secret@127.0.0.1:15672/; absent: print the commands. */
  readonly managementUrl?: string;
  /** Given: each site's database is also checked by its connector (checkDatabase), after the broker. */
  readonly connectors?: ConnectorRegistry;
}

/** What one site's broker user may do. */
export interface SitePermissions {
  readonly site: string;
  readonly user: string;
  readonly configure: string;
  readonly write: string;
  readonly read: string;
  readonly topic: readonly { readonly exchange: string; readonly write: string; readonly read: string }[];
}

const escape = (name: string): string => name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The least permissions of each site that has a broker user of its own (pure: tests read it). */
export function sitePermissions(config: Config): SitePermissions[] {
  const admin = brokerUserOf(config.broker.url);
  const exchange = config.broker.exchange;
  const parking = parkingExchange(exchange);
  return Object.keys(config.sites)
    .filter((site) => expectedBrokerUser(config, site) !== admin)
    .map((site) => ({
      site,
      user: expectedBrokerUser(config, site),
      configure: '^$',
      write: `^(${escape(exchange)}|${escape(parking)})$`,
      read: `^(${escape(siteQueue(site))}|${escape(config.broker.archiveStream)})$`,
      topic: [
        { exchange, write: `^${escape(routingKey(site))}$`, read: '^$' },
        { exchange: parking, write: `^${escape(site)}$`, read: '^$' },
      ],
    }));
}

export function passwordVariable(site: string): string {
  return `SITESYNC_SETUP_PASSWORD_${site.toUpperCase()}`;
}

export async function setupCommand(config: Config, options: SetupOptions, print: (line: string) => void, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  await setupBroker(config, options, print, env);
  if (!options.connectors) return;
  const errors = await checkSiteDatabases(config, options.connectors, print);
  if (errors > 0) {
    throw new SitesyncError('SITESYNC_ERR_CONFIG', `${errors} problem${errors === 1 ? '' : 's'} at the sites' databases (printed above, each with its fix); fix them and run setup again`);
  }
}

/**
 * Each site's database, checked by its connector where it has a check (a SQL Server site: CDC, the Agent, the
 * rights; PostgreSQL and MariaDB sites prepare themselves at start and say then what is missing). One line per
 * finding; returns how many are errors. A database that cannot be reached is one error line, not a stop: the
 * others are still checked.
 */
export async function checkSiteDatabases(config: Config, connectors: ConnectorRegistry, print: (line: string) => void): Promise<number> {
  let errors = 0;
  for (const site of Object.keys(config.sites)) {
    const connector = connectorFor(connectors, config, site);
    if (!connector.checkDatabase) continue;
    const capturing = databaseOf(config, site).urls.capture !== undefined;
    let findings;
    try {
      findings = await connector.checkDatabase({ capture: capturing ? databaseUrlFor(config, site, 'capture') : null, apply: databaseUrlFor(config, site, 'apply') }, site);
    } catch (error) {
      errors++;
      print(`site ${site} (${connector.kind}): error: database not checked: ${describeError(error)}`);
      continue;
    }
    for (const f of findings) {
      if (f.severity === 'error') errors++;
      print(`site ${site} (${connector.kind}): ${f.severity}: ${f.problem}${f.fix ? `; fix: ${f.fix}` : ''}`);
    }
  }
  return errors;
}

async function setupBroker(config: Config, options: SetupOptions, print: (line: string) => void, env: NodeJS.ProcessEnv): Promise<void> {
  const connection = await connectBroker(config.broker.url, 'sitesync setup');
  connection.on('error', () => undefined);
  try {
    await declareTopology(connection, config);
  } finally {
    await connection.close().catch(() => undefined);
  }
  print(`topology declared: exchanges ${config.broker.exchange} and ${parkingExchange(config.broker.exchange)}, stream ${config.broker.archiveStream}, a queue and a parking queue per site`);

  const vhost = vhostOf(config.broker.url);
  const sites = sitePermissions(config);
  const shared = Object.keys(config.sites).filter((site) => !sites.some((p) => p.site === site));
  if (shared.length > 0) {
    print(`sites ${shared.join(', ')} publish as ${brokerUserOf(config.broker.url)}, the user of broker.url: one trusted host; give each a brokerUser of its own to separate them`);
  }
  if (sites.length === 0) return;
  if (!options.managementUrl) {
    print('run these as an administrator of RabbitMQ (each password from its variable):');
    for (const p of sites) {
      print(`rabbitmqctl add_user ${shellQuote(p.user)} "$${passwordVariable(p.site)}"`);
      print(`rabbitmqctl set_permissions -p ${shellQuote(vhost)} ${shellQuote(p.user)} ${shellQuote(p.configure)} ${shellQuote(p.write)} ${shellQuote(p.read)}`);
      for (const t of p.topic) print(`rabbitmqctl set_topic_permissions -p ${shellQuote(vhost)} ${shellQuote(p.user)} ${shellQuote(t.exchange)} ${shellQuote(t.write)} ${shellQuote(t.read)}`);
    }
    return;
  }
  const api = managementApi(options.managementUrl);
  for (const p of sites) {
    const password = env[passwordVariable(p.site)];
    const exists = await api.exists(`users/${encodeURIComponent(p.user)}`);
    if (password !== undefined && password !== '') {
      await api.put(`users/${encodeURIComponent(p.user)}`, { password, tags: '' });
    } else if (!exists) {
      throw new SitesyncError('SITESYNC_ERR_CONFIG', `broker user ${p.user} of site ${p.site} does not exist and ${passwordVariable(p.site)} is not set; set it to the password the site's brokerUrl uses, and run setup again`);
    }
    await api.put(`permissions/${encodeURIComponent(vhost)}/${encodeURIComponent(p.user)}`, { configure: p.configure, write: p.write, read: p.read });
    for (const t of p.topic) await api.put(`topic-permissions/${encodeURIComponent(vhost)}/${encodeURIComponent(p.user)}`, t);
    print(`user ${p.user} (site ${p.site})${exists ? '' : ' created'}: publishes only ${routingKey(p.site)}, parks only into its own parking queue, reads only ${siteQueue(p.site)}, may declare nothing`);
  }
}

/** The virtual host of an AMQP URL: its path without the leading slash, `/` when empty. */
function vhostOf(url: string): string {
  const path = new URL(url).pathname.replace(/^\//, '');
  return path === '' ? '/' : decodeURIComponent(path);
}

function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

function managementApi(url: string): { exists(path: string): Promise<boolean>; put(path: string, body: unknown): Promise<void> } {
  const base = new URL(url);
  const auth = `Basic ${Buffer.from(`${decodeURIComponent(base.username)}:${decodeURIComponent(base.password)}`).toString('base64')}`;
  base.username = '';
  base.password = '';
  const endpoint = (path: string): string => new URL(`api/${path}`, base.href.endsWith('/') ? base.href : `${base.href}/`).href;
  const call = async (method: string, path: string, body?: unknown): Promise<Response> => {
    let response: Response;
    try {
      response = await fetch(endpoint(path), { method, headers: { authorization: auth, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (error) {
      throw new SitesyncError('SITESYNC_ERR_BROKER_UNREACHABLE', `RabbitMQ's management API at ${redactUrl(url)} is unreachable (${(error as Error).message}); enable the rabbitmq_management plugin or fix --management-url`, { cause: error });
    }
    if (response.status === 401 || response.status === 403) {
      throw new SitesyncError('SITESYNC_ERR_PERMISSION', `RabbitMQ's management API at ${redactUrl(url)} refused ${method} ${path} (${response.status}); --management-url needs an administrator's user and password`);
    }
    return response;
  };
  return {
    async exists(path) {
      return (await call('GET', path)).ok;
    },
    async put(path, body) {
      const response = await call('PUT', path, body);
      if (!response.ok) {
        throw new SitesyncError('SITESYNC_ERR_BROKER_REJECTED', `RabbitMQ's management API refused PUT ${path} (${response.status} ${(await response.text()).slice(0, 200)})`);
      }
    },
  };
}
