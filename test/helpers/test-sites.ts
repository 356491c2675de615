/**
 * Real PostgreSQL and RabbitMQ for tests, isolated per test: every test gets its own databases, site
 * names (so its slots and origins), exchange, stream and queues, all removed afterwards.
 *
 * With TEST_SITESYNC_LEAST_PRIVILEGE=1 (or `leastPrivilege`) the sites run as README "Security model"
 * deploys them: capture, apply and monitoring as three PostgreSQL roles without superuser
 * (least-privilege.ts), tables created by `everywhere` owned by the apply role, and every site's process
 * as a RabbitMQ user of its own, made by `sitesync setup`, that may declare nothing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import amqp from 'amqplib';
import pg from 'pg';
import { parseConfig } from '../../src/config/load-config.ts';
import type { Config } from '../../src/config/config-schema.ts';
import { parkingExchange, parkingQueue, siteQueue, slotName, tablesExchange, ORIGIN_PREFIX } from '../../src/config/names.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { PipelineEvents } from '../../src/observability/pipeline-events.ts';
import { createPipeline, type Pipeline } from '../../src/pipeline.ts';
import { passwordVariable, setupCommand } from '../../src/cli/setup-command.ts';
import { asRole, createRoles, dropRoles, prepareDatabase, rolesFor } from './least-privilege.ts';
import { CONNECTORS } from '../../connectors/index.ts';
import type { ConnectorRegistry } from '../../src/connector.ts';

export const PG_ADMIN = process.env.TEST_SITESYNC_POSTGRES ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const BROKER = process.env.TEST_SITESYNC_BROKER ?? 'amqp://guest:guest@127.0.0.1:5672/';
export const MANAGEMENT = process.env.TEST_SITESYNC_MANAGEMENT ?? 'http://guest:guest@127.0.0.1:15672/';
const LEAST_PRIVILEGE = process.env.TEST_SITESYNC_LEAST_PRIVILEGE === '1';
const ROOT = new URL('../../', import.meta.url).pathname;

export function dbUrl(database: string, server = PG_ADMIN): string {
  const url = new URL(server);
  url.pathname = `/${database}`;
  return url.toString();
}

export async function sql<T extends pg.QueryResultRow = Record<string, unknown>>(database: string, text: string, values?: unknown[], url = dbUrl(database)): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined); // the query's own promise reports a lost connection
  await client.connect();
  try {
    return (await client.query<T>(text, values)).rows;
  } finally {
    await client.end();
  }
}

const serverDbUrl = dbUrl;
const serverSql = sql;

export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      last = error;
    }
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
}

export interface TestSites {
  readonly suffix: string;
  readonly config: Config;
  /** Site names as configured, by short name: sites.paris === 'paris_x1y2'. */
  readonly sites: Record<string, string>;
  /** Database name of a site (short name). */
  db(short: string): string;
  /** Run the same SQL at every site (schema setup). */
  everywhere(text: string): Promise<void>;
  /** Start a site's pipeline in this process; pass `events` to listen from its very first event. */
  start(short: string, events?: PipelineEvents): Promise<RunningSite>;
  /** Start a site as a real `sitesync run` process. */
  spawn(short: string, extraEnv?: Record<string, string>): SpawnedSite;
  configFile: string;
  cleanup(): Promise<void>;
}

export interface RunningSite {
  readonly pipeline: Pipeline;
  readonly events: PipelineEvents;
  readonly done: Promise<void>;
  stop(): Promise<void>;
}

export interface SpawnedSite {
  readonly child: ChildProcess;
  readonly output: () => string;
  readonly exited: Promise<number | null>;
}

/**
 * `overrides` are laid over the test configuration; a function gets the site names (short → configured).
 * `postgres` is the server the sites' databases are made on (an admin URL like PG_ADMIN, which it defaults
 * to): a test with a server of its own (scratch-postgres.ts) passes that server's URL.
 */
export async function createTestSites(
  shortNames: string[],
  overrides: Record<string, unknown> | ((sites: Record<string, string>) => Record<string, unknown>) = {},
  { leastPrivilege = LEAST_PRIVILEGE, postgres = PG_ADMIN, connectors = CONNECTORS }: { leastPrivilege?: boolean; postgres?: string; connectors?: ConnectorRegistry } = {},
): Promise<TestSites> {
  const dbUrl = (database: string): string => serverDbUrl(database, postgres);
  const sql = <T extends pg.QueryResultRow = Record<string, unknown>>(database: string, text: string, values?: unknown[], url = dbUrl(database)): Promise<T[]> =>
    serverSql<T>(database, text, values, url);
  const suffix = randomBytes(3).toString('hex');
  const sites: Record<string, string> = {};
  for (const short of shortNames) sites[short] = `${short}_${suffix}`;
  const db = (short: string): string => `sitesync_test_${sites[short]}`;
  for (const short of shortNames) await sql('postgres', `CREATE DATABASE ${db(short)}`);
  const roles = leastPrivilege ? rolesFor(suffix) : null;
  const brokerPasswords: Record<string, string> = {};
  const siteSettings = (short: string): Record<string, unknown> => {
    const url = dbUrl(db(short));
    if (!roles) return { postgres: url };
    brokerPasswords[sites[short]!] = randomBytes(12).toString('hex');
    const broker = new URL(BROKER);
    broker.username = `sitesync_test_${sites[short]}`;
    broker.password = brokerPasswords[sites[short]!]!;
    return { capturePostgres: asRole(url, roles.capture), applyPostgres: asRole(url, roles.apply), monitorPostgres: asRole(url, roles.monitor), brokerUser: broker.username, brokerUrl: broker.toString() };
  };
  const raw = {
    broker: { url: BROKER, exchange: `sitesync.test.${suffix}`, archiveStream: `sitesync.test.${suffix}.archive` },
    sites: Object.fromEntries(shortNames.map((s) => [sites[s], siteSettings(s)])),
    capture: { statusIntervalSeconds: 0.2, heartbeatSeconds: 2 },
    apply: { retrySeconds: 0.5 },
    log: { level: process.env.TEST_SITESYNC_LOG ?? 'silent' },
    ...(typeof overrides === 'function' ? overrides(sites) : overrides),
  };
  const config = parseConfig(JSON.parse(JSON.stringify(raw)));
  if (roles) {
    await createRoles((text) => sql('postgres', text), roles);
    for (const short of shortNames) await prepareDatabase((text) => sql(db(short), text), roles, sites[short]!, config.sites[sites[short]!]!.capture);
    const env = Object.fromEntries(Object.entries(brokerPasswords).map(([site, password]) => [passwordVariable(site), password]));
    await setupCommand(config, { managementUrl: MANAGEMENT }, () => undefined, env);
  }
  // Tables are created as the apply role when there is one: it owns what it replicates.
  const schemaUrl = (short: string): string => (roles ? asRole(dbUrl(db(short)), roles.apply) : dbUrl(db(short)));
  const dir = mkdtempSync(join(tmpdir(), 'sitesync-test-'));
  const configFile = join(dir, 'sitesync.yml');
  writeFileSync(configFile, JSON.stringify(raw, null, 2)); // JSON is YAML
  const running: RunningSite[] = [];
  const children: ChildProcess[] = [];

  return {
    suffix,
    config,
    sites,
    db,
    configFile,
    async everywhere(text) {
      for (const short of shortNames) await sql(db(short), text, undefined, schemaUrl(short));
    },
    async start(short, events = new PipelineEvents()) {
      const logger = createLogger(config.log.level);
      const pipeline = createPipeline(config, sites[short]!, logger, connectors, events);
      const capturing = config.sites[sites[short]!]!.capture;
      const ready = Promise.all([capturing ? once(events, 'capture:streaming') : null, once(events, 'apply:consuming')]);
      const done = pipeline.run();
      done.catch(() => undefined);
      await Promise.race([ready, done]);
      const site: RunningSite = {
        pipeline,
        events,
        done,
        async stop() {
          pipeline.stop();
          await done.catch(() => undefined);
        },
      };
      running.push(site);
      return site;
    },
    spawn(short, extraEnv = {}) {
      const child = spawn(process.execPath, [join(ROOT, 'bin/sitesync.js'), 'run', '--config', configFile, '--site', sites[short]!], {
        cwd: ROOT,
        env: { ...process.env, SITESYNC_LOG__LEVEL: process.env.TEST_SITESYNC_LOG ?? 'info', ...extraEnv },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      children.push(child);
      return { child, output: () => output, exited };
    },
    async cleanup() {
      const alive = children.filter((child) => child.exitCode === null && child.signalCode === null);
      for (const child of alive) child.kill('SIGKILL');
      await Promise.all(alive.map((child) => once(child, 'exit')));
      await Promise.all(running.map((r) => r.stop()));
      // A killed process's walsender can hold its slot a moment longer, and DROP DATABASE … WITH (FORCE)
      // refuses a database with an active slot: end those walsenders and wait until the slots are free.
      const slots = shortNames.map((short) => slotName(sites[short]!));
      await waitFor('the test slots to be released', async () => {
        const active = await sql('postgres', `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = ANY($1) AND active_pid IS NOT NULL`, [slots]);
        return active.length === 0;
      });
      await sql('postgres', `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = ANY($1)`, [slots]);
      for (const short of shortNames) await sql('postgres', `DROP DATABASE IF EXISTS ${db(short)} WITH (FORCE)`);
      await sql('postgres', `SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin WHERE roname LIKE $1`, [`${ORIGIN_PREFIX}%${suffix}`]);
      const connection = await amqp.connect(BROKER);
      const channel = await connection.createChannel();
      for (const short of shortNames) {
        await channel.deleteQueue(siteQueue(sites[short]!));
        await channel.deleteQueue(parkingQueue(sites[short]!));
      }
      await channel.deleteQueue(config.broker.archiveStream);
      await channel.deleteExchange(tablesExchange(config.broker.exchange));
      await channel.deleteExchange(parkingExchange(config.broker.exchange));
      await channel.deleteExchange(config.broker.exchange);
      await connection.close();
      if (roles) {
        await dropRoles((text) => sql('postgres', text), roles);
        const management = new URL(MANAGEMENT);
        const authorization = `Basic ${Buffer.from(`${decodeURIComponent(management.username)}:${decodeURIComponent(management.password)}`).toString('base64')}`;
        for (const site of Object.keys(brokerPasswords)) {
          const user = encodeURIComponent(`sitesync_test_${site}`);
          await fetch(new URL(`api/users/${user}`, `${management.protocol}//${management.host}/`), { method: 'DELETE', headers: { authorization } }).catch(() => undefined);
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** What waits in a parking queue, left there (read without acknowledging). */
export async function parkedMessages(queue: string): Promise<amqp.GetMessage[]> {
  const connection = await amqp.connect(BROKER);
  try {
    const channel = await connection.createChannel();
    const messages: amqp.GetMessage[] = [];
    for (;;) {
      const m = await channel.get(queue, { noAck: false });
      if (!m) break;
      messages.push(m);
    }
    return messages;
  } finally {
    await connection.close(); // unacknowledged: they stay parked
  }
}

/** Rows of a table as text, sorted: equal multisets mean equal tables (duplicates included). */
export async function tableRows(database: string, table: string): Promise<string[]> {
  const rows = await sql<{ r: string }>(database, `SELECT (whole_row.*)::text AS r FROM ${table} AS whole_row`);
  return rows.map((r) => r.r).sort();
}
