/**
 * A sitesync deployment for one measurement: its site names (unique per run, so its slots, origins and
 * queues never meet another run's), one database per site on the private server, a configuration file, the
 * shared RabbitMQ with an exchange, stream and queues of its own — all removed at the end of the scope,
 * as test/helpers/test-sites.ts does for tests.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import amqp from 'amqplib';
import { parkingExchange, parkingQueue, siteQueue, tablesExchange } from '../../src/config/names.ts';
import { SitesyncProcess } from './processes.ts';
import type { BenchServer } from './server.ts';
import type { Teardown } from './teardown.ts';

export const BROKER = process.env.SITESYNC_BENCH_BROKER ?? 'amqp://guest:guest@127.0.0.1:5672/';

export interface Deployment {
  readonly suffix: string;
  readonly configFile: string;
  /** Configured site name by short name: site('a') === 'a_1f2e3d'. */
  site(short: string): string;
  /** Database of a site by short name. */
  db(short: string): string;
  /** A `sitesync run` for a site (not started); stopped at the end of the scope. */
  process(short: string, cpuProfileDir?: string): SitesyncProcess;
}

export function uniqueSuffix(): string {
  return randomBytes(3).toString('hex');
}

/**
 * Creates the databases (empty) and the configuration. Only defaults, as a user would run it, except the
 * log level (info: readiness is read from the log) and `capture: false` for the sites in `receiveOnly`.
 */
export async function createDeployment(
  server: BenchServer,
  shortNames: readonly string[],
  scope: Teardown,
  label: string,
  receiveOnly: readonly string[] = [],
  /** Sites whose database is not one of the server's: their `database` configuration as it is (a DuckDB file). */
  databases: Readonly<Record<string, { readonly kind: string; readonly url: string }>> = {},
): Promise<Deployment> {
  const suffix = uniqueSuffix();
  const site = (short: string): string => `${short}_${suffix}`;
  const db = (short: string): string => `bench_${label}_${short}_${suffix}`;
  const exchange = `sitesync.bench.${suffix}`;
  const archiveStream = `${exchange}.archive`;
  for (const short of shortNames) if (!databases[short]) await server.createDatabase(db(short), scope);

  const raw = {
    broker: { url: BROKER, exchange, archiveStream },
    sites: Object.fromEntries(
      shortNames.map((s) => [site(s), { ...(databases[s] ? { database: databases[s] } : { postgres: server.url(db(s)) }), ...(receiveOnly.includes(s) ? { capture: false } : {}) }]),
    ),
    log: { level: 'info' },
  };
  const dir = mkdtempSync(join(tmpdir(), 'sitesync-bench-'));
  const configFile = join(dir, 'sitesync.yml');
  writeFileSync(configFile, JSON.stringify(raw, null, 2)); // JSON is YAML
  scope.add(`remove ${dir}`, async () => rmSync(dir, { recursive: true, force: true }));
  scope.add(`delete RabbitMQ objects of ${exchange}`, () =>
    deleteBrokerObjects(
      shortNames.flatMap((s) => [siteQueue(site(s)), parkingQueue(site(s))]).concat(archiveStream),
      [exchange, tablesExchange(exchange), parkingExchange(exchange)],
    ),
  );

  return {
    suffix,
    configFile,
    site,
    db,
    process(short, cpuProfileDir) {
      const p = new SitesyncProcess({ site: site(short), configFile, ...(cpuProfileDir ? { cpuProfileDir, cpuProfileName: `${label}-${short.toUpperCase()}` } : {}) });
      scope.add(`stop sitesync ${site(short)}`, () => p.stop(5_000));
      return p;
    },
  };
}

/** Deletes queues and exchanges; each on a fresh channel, since a failure closes the channel. */
async function deleteBrokerObjects(queues: readonly string[], exchanges: readonly string[]): Promise<void> {
  const connection = await amqp.connect(BROKER);
  try {
    const problems: string[] = [];
    const attempt = async (what: string, action: (channel: amqp.Channel) => Promise<unknown>): Promise<void> => {
      const channel = await connection.createChannel();
      channel.on('error', () => undefined);
      try {
        await action(channel);
        await channel.close();
      } catch (error) {
        problems.push(`${what}: ${(error as Error).message}`);
      }
    };
    for (const queue of queues) await attempt(`queue ${queue}`, (c) => c.deleteQueue(queue));
    for (const exchange of exchanges) await attempt(`exchange ${exchange}`, (c) => c.deleteExchange(exchange));
    if (problems.length > 0) throw new Error(problems.join('; '));
  } finally {
    await connection.close().catch(() => undefined);
  }
}
