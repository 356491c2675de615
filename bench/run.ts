/**
 * `npm run bench [-- --quick] [--only a,b,…] [--profile]`: sitesync's benchmarks, each against a reference
 * measured in the same run (see ../shared DESIGN.md "Measuring" and bench/README.md).
 *
 *   a  capture decoding rate          vs pg_recvlogical on the same slot data          bench/decode.ts
 *   b  backlog drain, 2 sites          vs native logical replication, 1 subscriber      bench/drain.ts
 *      (B only receives, as a native subscriber does; b2: B also captures its own site)
 *   c  steady-state latency            vs native logical replication, same rate         bench/steady.ts
 *      (B only receives; c2: B also captures)
 *   d  backlog drain, 3 sites          vs native logical replication, 2 subscribers     bench/fanout.ts
 *      (B and C only receive; d2: they also capture)
 *   e  peak memory (RSS)               vs the same process at rest; budget 300 MB       bench/memory.ts
 *   f  verify one table, 5 differences vs reading the table once (TableReader.readChunk)  bench/verify.ts
 *   g  online snapshot of one table    vs pg_dump --data-only | psql of the same table   bench/snapshot.ts
 *   h  backlog drain into DuckDB       vs the same backlog into sitesync's PostgreSQL sink bench/analytics.ts
 *
 * Everything runs on a private PostgreSQL server (port 26470) and the shared RabbitMQ with names of its own;
 * all of it is removed at the end, also on failure or interruption. The report is printed and written as
 * JSON under /tmp/sitesync-bench/ (outside the repository, so results never end up in git).
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { PARAMS, type BenchContext, type Mode } from './lib/context.ts';
import { killAllChildren } from './lib/processes.ts';
import { formatProfile, summarizeProfiles } from './lib/profile.ts';
import { formatNotes, formatTable, formatVerdicts, type ReportRow } from './lib/report.ts';
import { SERVER_SETTINGS, startBenchServer, type BenchServer } from './lib/server.ts';
import { Teardown } from './lib/teardown.ts';
import { decodeReport, measureDecode } from './decode.ts';
import { drainReport, measureDrain, type DrainResult } from './drain.ts';
import { measureFanout } from './fanout.ts';
import { measureMemory, memoryReport } from './memory.ts';
import { measureSteady, steadyReport } from './steady.ts';
import { measureVerify, verifyReport } from './verify.ts';
import { measureSnapshot, snapshotReport } from './snapshot.ts';
import { analyticsReport, measureAnalytics } from './analytics.ts';

const RESULTS_DIR = join(tmpdir(), 'sitesync-bench');

interface Measurement {
  readonly id: string;
  readonly title: string;
  run(ctx: BenchContext, earlier: Map<string, unknown>): Promise<{ result: unknown; rows: ReportRow[] }>;
}

/**
 * A measurement twice: `id` with the targets only receiving, as native subscribers do, and `id`2 with them
 * also capturing, as sites that are written to do (each with its own native reference).
 */
function inBothTopologies<R>(
  id: string,
  what: string,
  measure: (ctx: BenchContext, targetsCapture: boolean) => Promise<R>,
  report: (result: R, id: string, receivers: string) => ReportRow[],
): Measurement[] {
  return [false, true].map((targetsCapture) => {
    const receivers = targetsCapture ? 'targets also capture' : 'targets only receive';
    const measurementId = targetsCapture ? `${id}2` : id;
    return {
      id: measurementId,
      title: `${what}, ${receivers}, vs native logical replication`,
      async run(ctx: BenchContext) {
        const result = await measure(ctx, targetsCapture);
        return { result, rows: report(result, measurementId, receivers) };
      },
    };
  });
}

/**
 * A drain measured `ctx.repeat` times, each run with its own backlog and its own native reference right
 * before it: on a shared two-core machine one pair can be off by a third either way, so the report judges
 * the median ratio and lists every run.
 */
function repeated(measure: (ctx: BenchContext, targetsCapture: boolean) => Promise<DrainResult>) {
  return async (ctx: BenchContext, targetsCapture: boolean): Promise<DrainResult[]> => {
    const runs: DrainResult[] = [];
    for (let i = 1; i <= ctx.repeat; i++) {
      if (ctx.repeat > 1) ctx.log(`  run ${i} of ${ctx.repeat}`);
      runs.push(await measure(ctx, targetsCapture));
    }
    return runs;
  };
}

/** The run whose processes reached the most memory together (for e), or null when there is none. */
function mostMemory(runs: readonly DrainResult[]): DrainResult | null {
  const total = (r: DrainResult): number => r.memory.reduce((n, m) => n + m.hwmBytes, 0);
  return runs.reduce<DrainResult | null>((best, r) => (best === null || total(r) > total(best) ? r : best), null);
}

const MEASUREMENTS: readonly Measurement[] = [
  {
    id: 'a',
    title: 'capture decoding rate vs pg_recvlogical',
    async run(ctx) {
      const result = await measureDecode(ctx);
      return { result, rows: decodeReport(result) };
    },
  },
  ...inBothTopologies('b', 'backlog drain, 2 sites', repeated(measureDrain), (runs, id, receivers) => drainReport(runs, id, `backlog drain, ${receivers}`)),
  ...inBothTopologies('c', 'steady-state commit-to-applied lag', measureSteady, steadyReport),
  ...inBothTopologies('d', 'fan-out drain, 3 sites', repeated(measureFanout), (runs, id, receivers) => drainReport(runs, id, `fan-out drain, ${receivers}`)),
  {
    id: 'e',
    title: 'peak memory (RSS) of the sitesync processes',
    async run(ctx, earlier) {
      // The drain where every process captures, B's included, is the one with the most in memory.
      const result = await measureMemory(ctx, mostMemory((earlier.get('b2') as DrainResult[] | undefined) ?? []));
      return { result, rows: memoryReport(result) };
    },
  },
  {
    id: 'f',
    title: 'sitesync verify of one table with 5 differences vs reading the table once',
    async run(ctx) {
      const result = await measureVerify(ctx);
      return { result, rows: verifyReport(result) };
    },
  },
  {
    id: 'g',
    title: 'online snapshot of one table (sitesync snapshot) vs pg_dump --data-only | psql',
    async run(ctx) {
      const result = await measureSnapshot(ctx);
      return { result, rows: snapshotReport(result) };
    },
  },
  {
    id: 'h',
    title: 'backlog drain into DuckDB (history and current state) vs the same backlog into the PostgreSQL sink',
    async run(ctx) {
      const result = await measureAnalytics(ctx);
      return { result, rows: analyticsReport(result) };
    },
  },
];

function usage(): string {
  return `usage: npm run bench [-- [--quick] [--only ${MEASUREMENTS.map((m) => m.id).join(',')}] [--repeat N] [--socket] [--profile]]
  --quick     small sizes, finishes within a few minutes
  --repeat    measure each drain (b, b2, d, d2) N times and judge the median ratio (default: 3 in the full
              run, 1 with --quick)
  --only      run these measurements (comma-separated: a, b, b2, c, c2, d, d2, e, f, g, h)
  --socket    every client (sitesync, native replication, pg_recvlogical) reaches PostgreSQL through its
              Unix-domain socket instead of TCP on 127.0.0.1
  --profile   write CPU profiles of the sitesync processes (node --cpu-prof) and summarise where they spend time
${MEASUREMENTS.map((m) => `  ${m.id}  ${m.title}`).join('\n')}`;
}

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      options: { quick: { type: 'boolean', default: false }, only: { type: 'string' }, repeat: { type: 'string' }, socket: { type: 'boolean', default: false }, profile: { type: 'boolean', default: false }, help: { type: 'boolean', default: false } },
      strict: true,
    }));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${usage()}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${usage()}\n`);
    return 0;
  }
  const wanted = values.only ? values.only.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean) : MEASUREMENTS.map((m) => m.id);
  const unknown = wanted.filter((id) => !MEASUREMENTS.some((m) => m.id === id));
  if (unknown.length > 0) {
    process.stderr.write(`unknown measurement ${unknown.join(', ')}\n${usage()}\n`);
    return 2;
  }
  const mode: Mode = values.quick ? 'quick' : 'full';
  const params = PARAMS[mode];
  const repeat = values.repeat === undefined ? (mode === 'full' ? 3 : 1) : Number(values.repeat);
  if (!Number.isInteger(repeat) || repeat < 1 || repeat > 20) {
    process.stderr.write(`--repeat takes a whole number from 1 to 20, not ${JSON.stringify(values.repeat)}\n${usage()}\n`);
    return 2;
  }
  const log = (line: string): void => void process.stdout.write(`${line}\n`);
  const teardown = new Teardown(log);
  let server: BenchServer | null = null;

  let interrupted = false;
  const onSignal = (signal: string): void => {
    if (interrupted) {
      killAllChildren();
      process.exit(130);
    }
    interrupted = true;
    log(`\n${signal}: cleaning up (again to exit at once)`);
    void (async () => {
      killAllChildren();
      await teardown.run();
      await server?.destroy();
      process.exit(130);
    })();
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));

  const started = performance.now();
  log(`sitesync benchmark, ${mode} mode, measurements ${wanted.join(', ')}; each drain measured ${repeat === 1 ? 'once' : `${repeat} times`}`);
  const transport = values.socket ? 'socket' : 'tcp';
  log(`machine: ${(await import('node:os')).cpus().length} CPUs, node ${process.version}; private PostgreSQL 15 on port ${process.env.SITESYNC_BENCH_PG_PORT ?? 26470}, every client through ${transport === 'socket' ? 'its Unix-domain socket' : 'TCP on 127.0.0.1'}`);
  log(`server settings (sitesync and native alike): ${Object.entries(SERVER_SETTINGS).map(([k, v]) => `${k}=${v}`).join(' ')}`);
  const rows: ReportRow[] = [];
  const results: Record<string, unknown> = {};
  const cpuProfileDir = values.profile ? mkdtempSync(join(tmpdir(), 'sitesync-bench-prof-')) : null;
  try {
    server = await startBenchServer(transport);
    teardown.add('stop the private PostgreSQL server', async () => {
      await server?.destroy();
      server = null;
    });
    const ctx: BenchContext = { mode, params, server, teardown, log, cpuProfileDir, repeat };
    const earlier = new Map<string, unknown>();
    for (const m of MEASUREMENTS) {
      if (!wanted.includes(m.id) || interrupted) continue;
      log(`\n${m.id}. ${m.title}`);
      const t0 = performance.now();
      try {
        const { result, rows: mine } = await m.run(ctx, earlier);
        earlier.set(m.id, result);
        results[m.id] = result;
        rows.push(...mine);
      } catch (error) {
        // The measurement itself broke (not sitesync failing a figure, which it reports): say so, go on.
        const message = (error as Error)?.stack ?? String(error);
        log(`  measurement ${m.id} could not run: ${message}`);
        results[m.id] = { error: message };
        rows.push({ id: m.id, figure: m.title, conditions: '—', sitesync: '—', reference: '—', ratio: null, ratioMeaning: '—', target: '—', verdict: 'error', notes: [`could not run: ${(error as Error)?.message ?? String(error)}`] });
      }
      log(`  (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
    }
  } catch (error) {
    log(`benchmark could not start: ${(error as Error)?.message ?? String(error)}`);
    await teardown.run();
    return 1;
  } finally {
    if (!interrupted) await teardown.run();
  }
  if (interrupted) return 130;

  log(`\n${'='.repeat(60)}\nsitesync benchmark — ${mode} mode — ${new Date().toISOString()} — ${((performance.now() - started) / 1000).toFixed(0)} s`);
  log(formatTable(rows));
  log(`\n${formatNotes(rows)}`);
  mkdirSync(RESULTS_DIR, { recursive: true });
  const json = JSON.stringify({ mode, at: new Date().toISOString(), params, serverSettings: SERVER_SETTINGS, transport, rows, results }, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2);
  const file = join(RESULTS_DIR, `results-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, json);
  writeFileSync(join(RESULTS_DIR, 'latest.json'), json);
  log(`\nresults: ${join(RESULTS_DIR, 'latest.json')} (also ${file}; kept outside the repository on purpose)`);
  if (cpuProfileDir) {
    log(`\nCPU profiles of the sitesync processes (node --cpu-prof), in ${cpuProfileDir}:`);
    try {
      for (const summary of summarizeProfiles(cpuProfileDir)) log(formatProfile(summary));
    } catch (error) {
      log(`  could not read them: ${(error as Error).message}`);
    }
  }
  log(formatVerdicts(rows));
  return 0;
}

process.exitCode = await main();
