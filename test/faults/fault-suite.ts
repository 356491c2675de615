/**
 * The fault suite: two sites on a PostgreSQL server of its own, each with a real `sitesync run`, reaching
 * PostgreSQL and RabbitMQ through TCP proxies it can cut and stall. A workload runs at both sites while
 * faults of every kind are injected one after another at random moments; then the faults stop, the sites
 * catch up, and the checker judges: nothing lost, nothing twice, commit order kept, and the slots never
 * confirmed past what the broker held.
 *
 * Used by the short test in the test suite and by `npm run soak`.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseLsn } from '../../connectors/postgres/postgres-positions.ts';
import { startScratchPostgres, type ScratchPostgres } from '../helpers/scratch-postgres.ts';
import { startScratchRabbitmq, type ScratchRabbitmq } from '../helpers/scratch-rabbitmq.ts';
import { compareTable, tableDigest, createCheckerSlot, orderViolations, readArchive, readLocalTransactions, slotViolations, type TableComparison } from './checker.ts';
import { FAULT_KINDS, inject, type FaultKind } from './faults.ts';
import { SiteProcess } from './site-process.ts';
import { TcpProxy } from './tcp-proxy.ts';
import { initPgbench, SCHEMA, Workload } from './workload.ts';
import { parseConfig } from '../../src/config/load-config.ts';
import { setupCommand, sitePermissions } from '../../src/cli/setup-command.ts';
import { asRole, createRoles, giveTablesTo, prepareDatabase, rolesFor } from '../helpers/least-privilege.ts';

export interface SuiteOptions {
  readonly faultsPerKind: number;
  /** Run the workload at least until this many transactions were committed in all. */
  readonly transactions: number;
  readonly pgbenchRate: number;
  readonly mixRate: number;
  readonly kinds?: readonly FaultKind[];
  /** Ports of the suite's own servers, below the ephemeral range: PostgreSQL, and RabbitMQ (AMQP; Erlang distribution on the next port). */
  readonly postgresPort: number;
  readonly brokerPort: number;
  /**
   * Deploy as README "Security model" does: capture, apply and monitoring as three PostgreSQL roles
   * without superuser, and each site's process as a RabbitMQ user of its own that may declare nothing.
   */
  readonly leastPrivilege?: boolean;
  readonly log: (line: string) => void;
}

export interface SuiteReport {
  readonly faults: Record<string, number>;
  readonly faultErrors: string[];
  readonly committed: { readonly a: number; readonly b: number };
  readonly workload: Workload['counts'];
  readonly notPublished: number;
  /** How the checker read the archive: its end offset, whether it got there, with how many consumers, and the first transactions it lacks. */
  readonly archive: { readonly end: number | null; readonly reachedEnd: boolean; readonly consumers: number; readonly probes: number; readonly firstMissing: readonly string[] };
  readonly slotViolations: number;
  readonly tables: TableComparison[];
  readonly lost: number;
  readonly duplicated: number;
  readonly orderViolations: number;
  readonly restarts: Record<string, number>;
  readonly unexpectedExits: string[];
  readonly seconds: number;
  /** From the end of the faults until both sites held the same rows; null when they never did. */
  readonly convergedAfterSeconds: number | null;
  readonly passed: boolean;
  readonly diagnostics: string;
}

const TABLES = ['pgbench_accounts', 'pgbench_branches', 'pgbench_tellers', 'pgbench_history', 'order_probe', 'mix_items', 'mix_log'];

export async function runFaultSuite(options: SuiteOptions): Promise<SuiteReport> {
  const started = Date.now();
  const suffix = randomBytes(3).toString('hex');
  const siteA = `a_${suffix}`;
  const siteB = `b_${suffix}`;
  const dbA = 'site_a';
  const dbB = 'site_b';
  const exchange = `sitesync.faults.${suffix}`;
  const archive = `${exchange}.archive`;
  const { log } = options;

  // Both servers start together; if one fails, the other is taken down again.
  const servers = await Promise.allSettled([startScratchPostgres(options.postgresPort), startScratchRabbitmq(options.brokerPort)]);
  const failed = servers.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) {
    for (const s of servers) if (s.status === 'fulfilled') await s.value.destroy();
    throw failed.reason;
  }
  const postgres = (servers[0] as PromiseFulfilledResult<ScratchPostgres>).value;
  const broker = (servers[1] as PromiseFulfilledResult<ScratchRabbitmq>).value;
  const BROKER = broker.url;
  const postgresProxy = new TcpProxy('127.0.0.1', postgres.port);
  const brokerProxy = new TcpProxy('127.0.0.1', options.brokerPort);
  const processes: SiteProcess[] = [];
  const samples = new Map<string, bigint[]>([[siteA, []], [siteB, []]]);
  let sampling = true;
  let sampler: Promise<void> | null = null;
  let configDir: string | null = null;
  try {
    const roles = options.leastPrivilege ? rolesFor(suffix) : null;
    if (roles) await createRoles((text) => postgres.query('postgres', text), roles);
    for (const [db, site] of [[dbA, siteA], [dbB, siteB]] as const) {
      await postgres.query('postgres', `CREATE DATABASE ${db}`);
      await initPgbench(postgres.url(db));
      await postgres.query(db, SCHEMA);
      await createCheckerSlot(postgres, db);
      if (roles) {
        await prepareDatabase((text) => postgres.query(db, text), roles, site);
        await giveTablesTo((text) => postgres.query(db, text), roles.apply);
      }
    }
    await postgresProxy.listen();
    await brokerProxy.listen();
    const viaProxy = new URL(BROKER);
    viaProxy.port = String(brokerProxy.port);
    const brokerPassword = randomBytes(12).toString('hex');
    const siteSettings = (db: string, site: string): Record<string, string> => {
      const url = `postgres://postgres@127.0.0.1:${postgresProxy.port}/${db}`;
      if (!roles) return { postgres: url };
      const broker = new URL(viaProxy);
      broker.username = `sitesync_${site}`;
      broker.password = brokerPassword;
      return { capturePostgres: asRole(url, roles.capture), applyPostgres: asRole(url, roles.apply), monitorPostgres: asRole(url, roles.monitor), brokerUser: broker.username, brokerUrl: broker.toString() };
    };
    const config = {
      broker: { url: viaProxy.toString(), exchange, archiveStream: archive },
      sites: { [siteA]: siteSettings(dbA, siteA), [siteB]: siteSettings(dbB, siteB) },
      capture: { statusIntervalSeconds: 0.2, heartbeatSeconds: 1 },
      apply: { retrySeconds: 0.5 },
    };
    if (roles) {
      // The administrator's step: the topology, then a user per site with the least permissions.
      const parsed = parseConfig(config);
      await setupCommand(parsed, {}, () => undefined);
      for (const p of sitePermissions(parsed)) {
        await broker.ctl('add_user', p.user, brokerPassword);
        await broker.ctl('set_permissions', '-p', '/', p.user, p.configure, p.write, p.read);
        for (const topic of p.topic) await broker.ctl('set_topic_permissions', '-p', '/', p.user, topic.exchange, topic.write, topic.read);
      }
      log('least privilege: three PostgreSQL roles without superuser, a RabbitMQ user per site without configure permission');
    }
    configDir = mkdtempSync(join(tmpdir(), 'sitesync-faults-'));
    const configFile = join(configDir, 'sitesync.yml');
    writeFileSync(configFile, JSON.stringify(config, null, 2));
    for (const site of [siteA, siteB]) processes.push(new SiteProcess(site, configFile));
    for (const p of processes) p.start();
    await Promise.all(processes.map((p) => p.ready()));
    log(`sites ${siteA} and ${siteB} running; workload and faults start`);

    sampler = (async () => {
      while (sampling) {
        try {
          const rows = await postgres.query<{ slot_name: string; lsn: string }>('postgres', `SELECT slot_name, confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name LIKE 'sitesync_%'`);
          for (const row of rows) samples.get(row.slot_name.slice('sitesync_'.length))?.push(parseLsn(row.lsn));
        } catch {
          // the server is down for a fault: no sample this time
        }
        await sleep(250);
      }
    })();

    const workload = new Workload(postgres.url(dbA), postgres.url(dbB), { pgbenchRate: options.pgbenchRate, mixRate: options.mixRate, target: options.transactions });
    workload.start();

    const kinds = options.kinds ?? FAULT_KINDS;
    const plan = shuffle(kinds.flatMap((k) => Array<FaultKind>(options.faultsPerKind).fill(k)));
    const faults: Record<string, number> = Object.fromEntries(kinds.map((k) => [k, 0]));
    const faultErrors: string[] = [];
    for (const [i, kind] of plan.entries()) {
      await sleep(200 + Math.random() * 1300);
      try {
        await inject(kind, { processes, postgres, broker, postgresProxy, brokerProxy });
        faults[kind]!++;
      } catch (error) {
        faultErrors.push(`${kind}: ${(error as Error).message.split('\n')[0]}`);
      }
      if ((i + 1) % 25 === 0) log(`${i + 1}/${plan.length} faults, ${workload.total} transactions`);
    }
    while (!workload.done) await sleep(500);
    await workload.stop();
    log(`faults done (${plan.length}); ${workload.total} transactions; waiting for the sites to catch up`);

    // Everything heals: both processes run, and the sites converge.
    for (const p of processes) if (!p.running) p.start();
    const convergedAfterMs = await waitForConvergence(postgres, dbA, dbB, 120_000, 30 * 60_000);
    const converged = convergedAfterMs !== null;
    sampling = false;
    await sampler;

    const localA = await readLocalTransactions(postgres, dbA);
    const localB = await readLocalTransactions(postgres, dbB);
    const archiveRead = await readArchive(BROKER, archive);
    const published = archiveRead.published;
    const missingOf = (local: typeof localA, site: string) => local.filter((tx) => !published.get(site)?.has(tx.xid));
    const missing = (local: typeof localA, site: string) => missingOf(local, site).length;
    const missingXids = [...missingOf(localA, siteA).map((tx) => `${siteA}:${tx.xid}`), ...missingOf(localB, siteB).map((tx) => `${siteB}:${tx.xid}`)];
    const tables = await Promise.all(TABLES.map((table) => compareTable(postgres, dbA, dbB, table)));
    const order =
      (await orderViolations(postgres, dbB, `SELECT seq FROM order_probe WHERE writer = 'a' ORDER BY xmin::text::bigint, seq`)) +
      (await orderViolations(postgres, dbA, `SELECT seq FROM order_probe WHERE writer = 'b' ORDER BY xmin::text::bigint, seq`)) +
      (await orderViolations(postgres, dbA, `SELECT seq FROM mix_log ORDER BY xmin::text::bigint, seq`));
    const report: SuiteReport = {
      faults,
      faultErrors,
      committed: { a: localA.length, b: localB.length },
      workload: workload.counts,
      notPublished: missing(localA, siteA) + missing(localB, siteB),
      archive: { end: archiveRead.end, reachedEnd: archiveRead.reachedEnd, consumers: archiveRead.consumers, probes: archiveRead.probes, firstMissing: missingXids.slice(0, 10) },
      slotViolations: slotViolations(samples.get(siteA)!, localA, published.get(siteA)) + slotViolations(samples.get(siteB)!, localB, published.get(siteB)),
      tables,
      lost: tables.reduce((n, t) => n + t.onlyAtSource, 0),
      duplicated: tables.reduce((n, t) => n + t.onlyAtTarget, 0),
      orderViolations: order,
      restarts: Object.fromEntries(processes.map((p) => [p.site, p.starts - 1])),
      unexpectedExits: processes.flatMap((p) => p.unexpectedExits),
      seconds: Math.round((Date.now() - started) / 1000),
      convergedAfterSeconds: convergedAfterMs === null ? null : Math.round(convergedAfterMs / 1000),
      passed: false,
      diagnostics: converged ? '' : await diagnose(postgres, processes, [siteA, siteB]),
    };
    const passed = converged && report.lost === 0 && report.duplicated === 0 && report.notPublished === 0 && report.archive.reachedEnd && report.slotViolations === 0 && report.orderViolations === 0 && report.unexpectedExits.length === 0 && samples.get(siteA)!.length > 0;
    return { ...report, passed };
  } finally {
    sampling = false;
    await sampler?.catch(() => undefined);
    for (const p of processes) await p.kill('SIGKILL');
    await postgresProxy.close().catch(() => undefined);
    await brokerProxy.close().catch(() => undefined);
    await postgres.destroy();
    await broker.destroy();
    if (configDir) rmSync(configDir, { recursive: true, force: true });
  }
}

/** What each site was doing when the sites did not converge: positions, origins, and every log line. */
async function diagnose(postgres: ScratchPostgres, processes: readonly SiteProcess[], sites: readonly string[]): Promise<string> {
  const lines: string[] = [];
  const slots = await postgres.query<{ slot_name: string; active: boolean; confirmed: string }>('postgres', `SELECT slot_name, active, confirmed_flush_lsn::text AS confirmed FROM pg_replication_slots`).catch(() => []);
  const origins = await postgres.query<{ external_id: string; remote_lsn: string }>('postgres', `SELECT external_id, remote_lsn::text FROM pg_replication_origin_status`).catch(() => []);
  const backends = await postgres.query<{ application_name: string; state: string; wait: string | null; query: string }>(
    'postgres',
    `SELECT application_name, state, wait_event AS wait, left(query, 120) AS query FROM pg_stat_activity WHERE application_name LIKE 'sitesync%'`,
  ).catch(() => []);
  lines.push(`slots: ${JSON.stringify(slots)}`, `origins: ${JSON.stringify(origins)}`, `sitesync backends: ${JSON.stringify(backends)}`, `sites: ${sites.join(', ')}`);
  for (const p of processes) lines.push(`--- ${p.site} (running: ${p.running}), last lines of every level`, p.tail(60, true));
  return lines.join('\n');
}

/**
 * Polls until every compared table is the same at both sites, by digest (tableDigest: the server hashes, the
 * rows stay there, so polling does not slow down the catching up it waits for). A site still catching up
 * after the faults is given time as long as an applier's recorded position moves: the wait fails after
 * `stuckMs` without any movement, or at `capMs` in all. Returns how long convergence took, or null.
 */
async function waitForConvergence(postgres: ScratchPostgres, dbA: string, dbB: string, stuckMs: number, capMs: number): Promise<number | null> {
  const started = Date.now();
  let positions = '';
  let lastProgress = started;
  while (Date.now() - started < capMs && Date.now() - lastProgress < stuckMs) {
    try {
      const same = await Promise.all(TABLES.map(async (t) => (await tableDigest(postgres, dbA, t)) === (await tableDigest(postgres, dbB, t))));
      if (same.every(Boolean)) return Date.now() - started;
      const now = JSON.stringify(await postgres.query('postgres', `SELECT external_id, remote_lsn::text FROM pg_replication_origin_status ORDER BY 1`));
      if (now !== positions) {
        positions = now;
        lastProgress = Date.now();
      }
    } catch {
      // keep polling
    }
    await sleep(2000);
  }
  return null;
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

/** The report as a person reads it. */
export function formatReport(r: SuiteReport): string {
  const lines = [
    `faults injected (${Object.values(r.faults).reduce((a, b) => a + b, 0)}):`,
    ...Object.entries(r.faults).map(([k, n]) => `  ${k.padEnd(28)} ${n}`),
    ...(r.faultErrors.length ? [`faults that could not be injected: ${r.faultErrors.length}`, ...r.faultErrors.slice(0, 5).map((e) => `  ${e}`)] : []),
    `transactions committed at the sources: ${r.committed.a + r.committed.b} (site a ${r.committed.a}, site b ${r.committed.b}); workload: pgbench ${r.workload.pgbench}, mix ${r.workload.mix}, order probes ${r.workload.probes}, client errors ${r.workload.errors}`,
    `sitesync restarts: ${Object.entries(r.restarts).map(([s, n]) => `${s} ${n}`).join(', ')}; exits nobody asked for: ${r.unexpectedExits.length}`,
    ...r.unexpectedExits,
    `lost rows: ${r.lost}; duplicated rows: ${r.duplicated}; committed transactions missing from the broker: ${r.notPublished}`,
    `archive read to offset ${r.archive.end ?? 'none'} (${r.archive.reachedEnd ? 'reached' : 'NOT reached'}) with ${r.archive.consumers} consumer(s), the end measured ${r.archive.probes} time(s)${r.archive.firstMissing.length ? `; first missing: ${r.archive.firstMissing.join(' ')}` : ''}`,
    `order violations: ${r.orderViolations}; slot confirmed past a transaction the broker did not hold: ${r.slotViolations}`,
    ...r.tables.filter((t) => t.onlyAtSource || t.onlyAtTarget).map((t) => `  ${t.table}: ${t.onlyAtSource} only at source, ${t.onlyAtTarget} only at target`),
    `sites converged: ${r.convergedAfterSeconds === null ? 'NO (no progress for 120 s, or 30 min in all)' : `${r.convergedAfterSeconds} s after the faults stopped`}`,
    `duration: ${r.seconds} s`,
    `verdict: ${r.passed ? 'PASS' : 'FAIL'}`,
  ];
  if (r.diagnostics) lines.push(r.diagnostics);
  return lines.join('\n');
}
