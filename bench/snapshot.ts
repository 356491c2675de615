/**
 * (g) Online snapshot throughput: `sitesync snapshot` of a table whose rows no stream carries, against
 * `pg_dump --data-only -t TABLE | psql` of the same table on the same server.
 *
 * - Data: the benchmark table (bench_rows: key, integer, money, time, text; about 100 bytes a row) with N
 *   rows at site A, written by the server itself (one INSERT … SELECT generate_series) and vacuumed,
 *   before any sitesync process ever started there — so no slot and no stream holds them. The same empty
 *   table at site B, which only receives (`capture: false`).
 * - sitesync: real `sitesync run` processes for A and B, started and ready (slot streaming, queue
 *   consumed) before the clock starts. Timed from spawning `sitesync snapshot --site A --table
 *   public.bench_rows --to B [--chunk-rows N]` (the command writes the first marker and exits; A's running
 *   process reads the chunks) until B holds every row (its largest id present, count(*) confirming). Run
 *   once per chunk size — 1024, the default (DBLog's and Debezium's), and 5,000 — each with B's table
 *   emptied (TRUNCATE, which B does not capture) and both processes started afresh, so that each run's
 *   VmHWM is its own.
 * - Reference: `pg_dump --data-only -t public.bench_rows <A> | psql <fresh database with the empty table>`,
 *   the server's own client programs (lib/server.ts pgTool), piped directly into each other; timed from
 *   spawning pg_dump until psql exits, then count(*) confirms. Run twice, before the sitesync processes
 *   start and after they stopped (never beside them), each into a fresh database; the faster run counts.
 *
 * Ratio: reference seconds ÷ sitesync seconds (1.0 = as fast as pg_dump | psql; higher is better). No
 * target yet (info). Rows: 100k with --quick, 1M in the full run; SITESYNC_BENCH_SNAPSHOT_ROWS sets any
 * other count.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { attempt, limitSeconds, valueOf, type BenchContext, type Outcome } from './lib/context.ts';
import { BROKER, createDeployment } from './lib/deployment.ts';
import { createRowsTable, formatCount, NotThereInTime, ROWS_TABLE, waitForRows, withClient } from './lib/db.ts';
import { CpuMeter, formatCpu, listenerPid, postmasterPid, total, walsenderLabels } from './lib/cpu.ts';
import { runTool, type SitesyncProcess } from './lib/processes.ts';
import { formatRate, formatSeconds, type ReportRow } from './lib/report.ts';
import { formatMiB, MemorySampler, readMemory } from './lib/rss.ts';
import { pgTool, type BenchServer } from './lib/server.ts';
import type { Teardown } from './lib/teardown.ts';

const ROOT = new URL('../', import.meta.url).pathname;
const TABLE = `public.${ROWS_TABLE}`;
/** null: the command's default (1024), not passed. */
const CHUNK_SIZES: readonly (number | null)[] = [null, 5000];
const DEFAULT_CHUNK_ROWS = 1024;

export interface SnapshotFigure {
  readonly chunkRows: number;
  /** Spawn of `sitesync snapshot` until B holds every row. */
  readonly seconds: number;
  readonly rowsPerSecond: number;
  /** Spawn to exit of the `sitesync snapshot` command alone (it only writes the first marker). */
  readonly commandSeconds: number;
  /** Spawn of the command until A recorded its last chunk read and sent (the snapshot 'done' at A), as polled. */
  readonly readSeconds: number | null;
  /** Chunks A read (the snapshot's row at A), and rows it says it sent. */
  readonly chunks: number;
  readonly rowsSent: number;
  /** Per process (A, B): VmRSS at rest before the snapshot, largest VmRSS sampled during it, VmHWM after. */
  readonly memory: readonly { readonly site: string; readonly restBytes: number; readonly sampledPeakBytes: number; readonly hwmBytes: number }[];
  readonly cpu: ReadonlyMap<string, number>;
}

export interface DumpFigure {
  readonly seconds: number;
  readonly rowsPerSecond: number;
  readonly cpu: ReadonlyMap<string, number>;
}

export interface SnapshotResult {
  readonly rows: number;
  readonly fillSeconds: number;
  /** Heap and index of the table at A. */
  readonly tableBytes: number;
  readonly indexBytes: number;
  /** The faster of the two reference runs. */
  readonly reference: Outcome<DumpFigure>;
  readonly referenceRuns: readonly (number | string)[];
  readonly runs: readonly { readonly chunkRows: number; readonly outcome: Outcome<SnapshotFigure>; readonly cleanStops: Outcome<true> }[];
}

/** How many rows: SITESYNC_BENCH_SNAPSHOT_ROWS, else 100k with --quick and 1M in the full run. */
export function snapshotRows(ctx: Pick<BenchContext, 'mode'>): number {
  const configured = process.env.SITESYNC_BENCH_SNAPSHOT_ROWS;
  if (configured !== undefined) {
    const n = Number(configured);
    if (!Number.isInteger(n) || n < 100) throw new Error(`SITESYNC_BENCH_SNAPSHOT_ROWS=${configured} is not a whole number of rows of at least 100`);
    return n;
  }
  return ctx.mode === 'quick' ? 100_000 : 1_000_000;
}

/**
 * CPU seconds of this process's children that exited and were reaped (cutime + cstime of /proc/self/stat):
 * pg_dump and psql, or the `sitesync snapshot` command — short-lived programs no meter can read at their end.
 */
function reapedChildrenCpuSeconds(): number {
  const text = readFileSync('/proc/self/stat', 'utf8');
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[16 - 3]) + Number(fields[17 - 3])) / 100;
}

async function countRows(server: BenchServer, db: string): Promise<number> {
  return Number((await server.query<{ n: string }>(db, `SELECT count(*) AS n FROM ${ROWS_TABLE}`))[0]!.n);
}

/**
 * `pg_dump --data-only -t TABLE fromDb | psql toDb`, pg_dump's stdout handed to psql as its stdin (a
 * kernel pipe between the two, as a shell makes). Seconds from pg_dump's spawn to the later exit.
 */
function dumpAndLoad(server: BenchServer, fromDb: string, toDb: string, timeoutMs: number, scope: Teardown): Promise<number> {
  const connection = ['-h', server.host, '-p', String(server.port), '-U', 'postgres'];
  const started = performance.now();
  const dump = spawn(pgTool('pg_dump'), [...connection, '--data-only', '--no-owner', '--no-privileges', '-t', TABLE, fromDb], { stdio: ['ignore', 'pipe', 'pipe'] });
  const load = spawn(pgTool('psql'), [...connection, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', toDb], { stdio: [dump.stdout!, 'ignore', 'pipe'] });
  const children: ChildProcess[] = [dump, load];
  const kill = (): void => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  scope.add(`stop pg_dump | psql of ${fromDb} if still running`, async () => kill());
  const ended = (child: ChildProcess, name: string): Promise<{ name: string; code: number | null; signal: NodeJS.Signals | null; stderr: string }> =>
    new Promise((resolve, reject) => {
      let stderr = '';
      child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      child.once('error', reject);
      child.once('exit', (code, signal) => resolve({ name, code, signal, stderr }));
    });
  const exits = Promise.all([ended(dump, 'pg_dump'), ended(load, 'psql')]);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    kill();
  }, timeoutMs);
  return exits.then(
    (results) => {
      clearTimeout(timer);
      const seconds = (performance.now() - started) / 1000;
      if (timedOut) throw new Error(`pg_dump | psql did not finish within ${formatSeconds(timeoutMs / 1000)}`);
      const bad = results.filter((r) => r.code !== 0 || r.stderr.trim() !== '');
      if (bad.length > 0) throw new Error(bad.map((r) => `${r.name} exited with ${r.code ?? r.signal}: ${r.stderr.trim().slice(0, 400)}`).join('; '));
      return seconds;
    },
    (error: unknown) => {
      clearTimeout(timer);
      kill();
      throw error;
    },
  );
}

export async function measureSnapshot(ctx: BenchContext): Promise<SnapshotResult> {
  const rows = snapshotRows(ctx);
  const { server, log } = ctx;
  return ctx.teardown.within(async (scope) => {
    const deployment = await createDeployment(server, ['a', 'b'], scope, 'snap', ['b']);
    const dbA = deployment.db('a');
    const dbB = deployment.db('b');
    for (const db of [dbA, dbB]) await createRowsTable(server.url(db));

    // The rows, before any sitesync process started at A: no slot exists yet, so no stream holds them.
    const fillStarted = performance.now();
    await withClient(server.url(dbA), async (c) => {
      await c.query(`INSERT INTO ${ROWS_TABLE} (id, k, amount, at, note)
                     SELECT g, (g % 1000)::int4, (g % 100000) / 100.0, TIMESTAMPTZ '2024-01-01 00:00:00+00' + g * INTERVAL '1 second', md5(g::text)
                     FROM generate_series(1, $1::int8) g`, [rows]);
      await c.query(`VACUUM ANALYZE ${ROWS_TABLE}`);
    });
    const fillSeconds = (performance.now() - fillStarted) / 1000;
    const sizes = (await server.query<{ heap: string; index: string }>(dbA, `SELECT pg_table_size($1::regclass) AS heap, pg_indexes_size($1::regclass) AS index`, [ROWS_TABLE]))[0]!;
    const tableBytes = Number(sizes.heap);
    const indexBytes = Number(sizes.index);
    log(`  ${formatCount(rows)} rows written at A in ${formatSeconds(fillSeconds)} (table ${formatMiB(tableBytes)}, ${(tableBytes / rows).toFixed(0)} bytes a row; primary key ${formatMiB(indexBytes)}), before sitesync ever ran there`);

    const postmaster = postmasterPid((await server.query<{ data_directory: string }>('postgres', 'SHOW data_directory'))[0]!.data_directory);
    const rabbitmq = listenerPid(Number(new URL(BROKER).port || 5672));

    // The reference, into a fresh database each time; never while sitesync's processes run.
    let refIndex = 0;
    const referenceOnce = async (): Promise<Outcome<DumpFigure>> => {
      const db = `bench_snap_dump${++refIndex}_${deployment.suffix}`;
      await server.createDatabase(db, scope);
      await createRowsTable(server.url(db));
      return attempt(async () => {
        const meter = new CpuMeter(() => new Map(), postmaster);
        meter.begin();
        const reaped = reapedChildrenCpuSeconds();
        const seconds = await dumpAndLoad(server, dbA, db, ctx.params.maxLimitSeconds * 1000, scope);
        const cpu = meter.end();
        cpu.set('pg_dump and psql', reapedChildrenCpuSeconds() - reaped);
        const count = await countRows(server, db);
        if (count !== rows) throw new Error(`pg_dump | psql copied ${count} rows of ${rows}`);
        return { seconds, rowsPerSecond: rows / seconds, cpu };
      });
    };
    const showReference = (n: number, o: Outcome<DumpFigure>): void =>
      log(`  pg_dump | psql, run ${n}: ${o.ok ? `${formatSeconds(o.value.seconds)}, ${formatRate(o.value.rowsPerSecond, 'rows')}` : o.error}`);
    const referenceRuns: Outcome<DumpFigure>[] = [await referenceOnce()];
    showReference(1, referenceRuns[0]!);
    const limit = limitSeconds(ctx.params, valueOf(referenceRuns[0]!)?.seconds ?? null);

    const runs: { chunkRows: number; outcome: Outcome<SnapshotFigure>; cleanStops: Outcome<true> }[] = [];
    for (const size of CHUNK_SIZES) {
      const chunkRows = size ?? DEFAULT_CHUNK_ROWS;
      await server.query(dbB, `TRUNCATE ${ROWS_TABLE}`); // B does not capture: nothing travels
      const processes = new Map<string, SitesyncProcess>(['a', 'b'].map((s) => [s, deployment.process(s, ctx.cpuProfileDir ?? undefined)]));
      let outcome: Outcome<SnapshotFigure>;
      try {
        for (const p of processes.values()) p.start();
        for (const p of processes.values()) await p.ready();
        await sleep(1000);
        outcome = await snapshotOnce(ctx, { deployment: { configFile: deployment.configFile, siteA: deployment.site('a'), siteB: deployment.site('b'), dbA, dbB }, processes, rows, size, limit, postmaster, rabbitmq });
      } catch (error) {
        outcome = { ok: false, error: (error as Error)?.message ?? String(error) };
      }
      const cleanStops = await attempt(async () => {
        const unclean: string[] = [];
        for (const p of processes.values()) {
          const { problem } = await p.stop();
          if (problem) unclean.push(problem);
        }
        if (unclean.length > 0) throw new Error(`not stopped cleanly: ${unclean.join('; ')}`);
        return true as const;
      });
      runs.push({ chunkRows, outcome, cleanStops });
      if (outcome.ok) {
        const f = outcome.value;
        const a = f.memory.find((m) => m.site === 'A');
        log(`  sitesync snapshot, --chunk-rows ${chunkRows}${size === null ? ' (default)' : ''}: ${formatSeconds(f.seconds)}, ${formatRate(f.rowsPerSecond, 'rows')}; ${f.chunks} chunks; command ${formatSeconds(f.commandSeconds)}; A read the last chunk at ${f.readSeconds === null ? '?' : formatSeconds(f.readSeconds)}${a ? `; A's VmHWM ${formatMiB(a.hwmBytes)} (at rest ${formatMiB(a.restBytes)})` : ''}`);
        log(`    CPU: ${formatCpu(f.cpu)}`);
      } else log(`  sitesync snapshot, --chunk-rows ${chunkRows}: ${outcome.error}`);
      if (!cleanStops.ok) log(`  warning: ${cleanStops.error}`);
    }

    referenceRuns.push(await referenceOnce());
    showReference(2, referenceRuns[1]!);
    const okRefs = referenceRuns.filter((r): r is { ok: true; value: DumpFigure } => r.ok);
    const reference: Outcome<DumpFigure> =
      okRefs.length > 0 ? { ok: true, value: okRefs.map((r) => r.value).reduce((x, y) => (y.seconds < x.seconds ? y : x)) } : referenceRuns[0]!;
    return {
      rows,
      fillSeconds,
      tableBytes,
      indexBytes,
      reference,
      referenceRuns: referenceRuns.map((r) => (r.ok ? r.value.seconds : r.error)),
      runs,
    };
  });
}

interface SnapshotOnceOptions {
  readonly deployment: { readonly configFile: string; readonly siteA: string; readonly siteB: string; readonly dbA: string; readonly dbB: string };
  readonly processes: ReadonlyMap<string, SitesyncProcess>;
  readonly rows: number;
  /** --chunk-rows, or null for the command's default. */
  readonly size: number | null;
  readonly limit: number;
  readonly postmaster: number | null;
  readonly rabbitmq: number | null;
}

async function snapshotOnce(ctx: BenchContext, o: SnapshotOnceOptions): Promise<Outcome<SnapshotFigure>> {
  const { server } = ctx;
  const { deployment: d, processes, rows, size, limit } = o;
  const pids = (): Map<string, number | null> => new Map([...processes].map(([short, p]) => [short.toUpperCase(), p.pid]));
  const restBytes = new Map([...pids()].map(([site, pid]) => [site, pid === null ? 0 : (readMemory(pid)?.rssBytes ?? 0)]));
  const sampler = new MemorySampler(pids);
  const meter = new CpuMeter(() => new Map<string, number | null>([...[...pids()].map(([site, pid]): [string, number | null] => [`sitesync ${site}`, pid]), ['RabbitMQ', o.rabbitmq]]), o.postmaster);
  const crashed = (): string | null => [...processes.values()].map((p) => p.crashed).find((c) => c !== null) ?? null;
  // Untimed: the launcher rebuilds its bundle when a source file is newer (others edit the sources while
  // this runs); an installed sitesync never does that at the command's start.
  const warm = await runTool(process.execPath, [join(ROOT, 'bin/sitesync.js'), 'snapshot', '--config', d.configFile, '--site', d.siteA, '--list'], 120_000);
  if (warm.code !== 0) return { ok: false, error: `sitesync snapshot --list exited with ${warm.code ?? warm.signal}: ${(warm.stderr || warm.stdout).trim().slice(0, 400)}` };
  return attempt(async () => {
    meter.begin();
    const reaped = reapedChildrenCpuSeconds();
    sampler.start();
    const t0 = performance.now();
    let memory;
    let cpu = new Map<string, number>();
    let command;
    try {
      const args = [join(ROOT, 'bin/sitesync.js'), 'snapshot', '--config', d.configFile, '--site', d.siteA, '--table', TABLE, '--to', d.siteB, ...(size === null ? [] : ['--chunk-rows', String(size)])];
      command = await runTool(process.execPath, args, 120_000);
      if (command.timedOut || command.code !== 0) throw new Error(`sitesync snapshot ${command.timedOut ? 'timed out' : `exited with ${command.code ?? command.signal}`}: ${(command.stderr || command.stdout).trim().slice(0, 400)}`);
      const id = /snapshot (\S+) of /.exec(command.stdout)?.[1];
      if (!id) throw new Error(`sitesync snapshot printed no id: ${command.stdout.trim()}`);
      // Beside the wait at B: when A has read (and published) its last chunk.
      let readAt: number | null = null;
      let waiting = true;
      const readPoll = withClient(server.url(d.dbA), async (c) => {
        while (waiting && readAt === null) {
          const state = (await c.query<{ state: string }>({ name: 'state', text: 'SELECT state FROM sitesync.snapshots WHERE id = $1', values: [id] })).rows[0]?.state;
          if (state === 'done') readAt = performance.now();
          else await sleep(50);
        }
      }).catch(() => undefined);
      let seenAt: number;
      try {
        seenAt = await waitForRows(server.url(d.dbB), ROWS_TABLE, rows, rows, { timeoutMs: limit * 1000, abort: crashed }).catch((error: unknown) => {
          if (error instanceof NotThereInTime) throw new Error(`not done within its limit of ${formatSeconds(limit)}: ${error.message}`);
          throw error;
        });
      } finally {
        waiting = false;
        await readPoll;
      }
      const seconds = (seenAt - t0) / 1000;
      cpu = meter.end(await walsenderLabels(server));
      cpu.set('the sitesync snapshot command', reapedChildrenCpuSeconds() - reaped);
      memory = sampler.stop();
      // The last chunk (empty when the row count is a multiple of the chunk size) may be recorded a moment later.
      let status: { state: string; next_chunk: number; rows_sent: string } | undefined;
      for (let i = 0; i < 100; i++) {
        status = (await server.query<{ state: string; next_chunk: number; rows_sent: string }>(d.dbA, 'SELECT state, next_chunk, rows_sent::text AS rows_sent FROM sitesync.snapshots WHERE id = $1', [id]))[0];
        if (status?.state === 'done') break;
        await sleep(100);
      }
      if (status?.state !== 'done') throw new Error(`B holds every row, but snapshot ${id} is ${status?.state ?? 'unknown'} at A`);
      if (Number(status.rows_sent) !== rows) throw new Error(`snapshot ${id} says it sent ${status.rows_sent} rows, not ${rows}`);
      const count = Number((await server.query<{ n: string }>(d.dbB, `SELECT count(*) AS n FROM ${ROWS_TABLE}`))[0]!.n);
      if (count !== rows) throw new Error(`B holds ${count} rows, not ${rows}`);
      return {
        chunkRows: size ?? DEFAULT_CHUNK_ROWS,
        seconds,
        rowsPerSecond: rows / seconds,
        commandSeconds: command.seconds,
        readSeconds: readAt === null ? null : ((readAt as number) - t0) / 1000,
        chunks: status.next_chunk,
        rowsSent: Number(status.rows_sent),
        memory: [...memory].map(([site, peak]) => ({ site, restBytes: restBytes.get(site) ?? 0, sampledPeakBytes: peak.sampledPeakBytes, hwmBytes: peak.hwmBytes })),
        cpu,
      };
    } finally {
      if (memory === undefined) sampler.stop();
    }
  });
}

export function snapshotReport(r: SnapshotResult): ReportRow[] {
  const ref = valueOf(r.reference);
  const fmtRuns = r.referenceRuns.map((x) => (typeof x === 'number' ? formatSeconds(x) : 'failed')).join(', ');
  const notes = [
    `${formatCount(r.rows)} rows of bench_rows at A (table ${formatMiB(r.tableBytes)}, ${(r.tableBytes / r.rows).toFixed(0)} bytes a row; primary key ${formatMiB(r.indexBytes)}), written in ${formatSeconds(r.fillSeconds)} and vacuumed before sitesync ever ran at A, so no stream holds them; B has the same table, empty, and only receives (capture: false)`,
    'sitesync: real `sitesync run` processes for A and B, started and ready before the clock; timed from spawning `sitesync snapshot --site A --table public.bench_rows --to B` until B holds every row (largest id present, count(*) confirming); each chunk size on freshly started processes with B emptied first',
    `reference: \`pg_dump --data-only -t public.bench_rows A | psql\` into a fresh database with the same empty table (the server's own client programs), from pg_dump's spawn until psql exits; run before the sitesync processes started and after they stopped, never beside them; runs ${fmtRuns}, the faster counts`,
  ];
  if (ref && ref.cpu.size > 0) notes.push(`CPU during the faster pg_dump | psql: ${formatCpu(ref.cpu)}`);
  for (const run of r.runs) {
    const f = valueOf(run.outcome);
    if (f) {
      const mem = f.memory.map((m) => `${m.site} VmHWM ${formatMiB(m.hwmBytes)}, sampled peak ${formatMiB(m.sampledPeakBytes)}, at rest ${formatMiB(m.restBytes)}`).join('; ');
      notes.push(`--chunk-rows ${run.chunkRows}: ${f.chunks} chunks (markers), ${formatCount(f.rowsSent)} rows sent, ${(f.seconds * 1000 / f.chunks).toFixed(1)} ms a chunk; the command itself (spawn to exit, writes the first marker) ${formatSeconds(f.commandSeconds)}; A had read and published the last chunk ${f.readSeconds === null ? 'at an unseen time' : `at ${formatSeconds(f.readSeconds)}`}, B held every row at ${formatSeconds(f.seconds)} (${formatRate(r.rows / Math.max(0.001, f.seconds - f.commandSeconds), 'rows')} after the command exited); memory: ${mem}`);
      notes.push(`--chunk-rows ${run.chunkRows}: CPU during the snapshot: ${formatCpu(f.cpu)}${ref ? `; CPU ratio (pg_dump | psql CPU ÷ sitesync CPU, steadier than wall time on a loaded machine): ${(total(ref.cpu) / total(f.cpu)).toFixed(2)}` : ''}`);
    } else if (!run.outcome.ok) notes.push(`--chunk-rows ${run.chunkRows}: sitesync failed: ${run.outcome.error}`);
    if (!run.cleanStops.ok) notes.push(`--chunk-rows ${run.chunkRows}: warning: ${run.cleanStops.error}`);
  }
  if (!r.reference.ok) notes.push(`reference failed: ${r.reference.error}`);
  const reference = ref ? `pg_dump | psql ${formatSeconds(ref.seconds)} (${formatRate(ref.rowsPerSecond, 'rows')})` : `error: ${r.reference.ok ? '' : r.reference.error}`;
  return r.runs.map((run, i) => {
    const f = valueOf(run.outcome);
    const peakA = f?.memory.find((m) => m.site === 'A');
    return {
      id: 'g',
      figure: `online snapshot, --chunk-rows ${run.chunkRows}${run.chunkRows === DEFAULT_CHUNK_ROWS ? ' (default)' : ''}`,
      conditions: `${formatCount(r.rows)} rows (~${(r.tableBytes / r.rows).toFixed(0)} B), A → B (B only receives)`,
      sitesync: f ? `${formatSeconds(f.seconds)} (${formatRate(f.rowsPerSecond, 'rows')})${peakA ? `, A peak ${formatMiB(peakA.hwmBytes)}` : ''}` : `FAILED: ${run.outcome.ok ? '' : run.outcome.error}`,
      reference,
      ratio: ref && f ? ref.seconds / f.seconds : null,
      ratioMeaning: 'pg_dump | psql seconds ÷ sitesync snapshot seconds (1.0 = as fast as pg_dump | psql; higher is better)',
      target: '— (info)',
      verdict: run.outcome.ok ? 'info' : 'FAIL',
      notes: i === 0 ? notes : [],
    };
  });
}
