/**
 * (b) Backlog drain, and the machinery (d) and (e) reuse: a backlog is written at site A while nothing
 * replicates it, then everything starts at once and the clock runs until every target holds every row.
 *
 * - sitesync: one real `sitesync run` process per site (bin/sitesync.js, default configuration). Each is
 *   started once beforehand so that its slot, publication, origins and queues exist before the writes, and
 *   stopped. After the writes they are all spawned again; timed from spawn (startup included, as a user
 *   waits for it) until the last target holds every row. Their memory is sampled the whole time.
 * - Reference: PostgreSQL's native logical replication into databases of its own (one per sitesync
 *   target): a publication for the table, a pgoutput slot per subscriber created before the writes, and a
 *   subscription created disabled (copy_data = false, create_slot = false). Timed from ALTER SUBSCRIPTION
 *   … ENABLE until the last subscriber holds every row. Runs first, while sitesync is stopped; sitesync
 *   runs while the subscriptions are disabled — never both at once.
 *
 * "Holds every row": the row with the largest id is polled (both apply in commit order) and count(*)
 * confirms it.
 *
 * Ratio: native seconds ÷ sitesync seconds (1.0 = as fast as PostgreSQL's own replication); target ≥ 0.5.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { attempt, limitSeconds, valueOf, type BenchContext, type Outcome } from './lib/context.ts';
import { createRowsTable, describeBacklog, NotThereInTime, ROWS_TABLE, waitForRows, writeBacklog, type BacklogSpec } from './lib/db.ts';
import { createDeployment } from './lib/deployment.ts';
import { createNativePublication, createNativeSubscriber, disableSubscriber, enableSubscriber, type NativeSubscriber } from './lib/native.ts';
import type { SitesyncProcess } from './lib/processes.ts';
import { formatRate, formatSeconds, judge, type ReportRow } from './lib/report.ts';
import { MemorySampler, readMemory, type MemoryPeak } from './lib/rss.ts';
import { BROKER } from './lib/deployment.ts';
import { CpuMeter, formatCpu, listenerPid, postmasterPid, walsenderLabels } from './lib/cpu.ts';

export const DRAIN_TARGET = 0.5;

export interface DrainFigure {
  readonly seconds: number;
  readonly rowsPerSecond: number;
}

export interface ProcessMemory extends MemoryPeak {
  readonly site: string;
  /** VmRSS of the same process at rest: started, ready, nothing to do. */
  readonly restBytes: number;
}

export interface DrainResult {
  readonly backlog: BacklogSpec;
  /** Sites written to (1) plus targets. */
  readonly sites: number;
  readonly targets: number;
  /** Whether the targets also captured (and so their servers decoded what they applied). */
  readonly targetsCapture: boolean;
  readonly writeSeconds: number;
  readonly walBytes: number;
  readonly reference: Outcome<DrainFigure>;
  readonly sitesync: Outcome<DrainFigure & { readonly startupSeconds: number; readonly limitSeconds: number }>;
  /** Per sitesync process, during its drain (also when it failed). */
  readonly memory: readonly ProcessMemory[];
  readonly cleanStops: Outcome<true>;
  /** CPU seconds by component while each drained (see lib/cpu.ts). */
  readonly referenceCpu: ReadonlyMap<string, number>;
  readonly sitesyncCpu: ReadonlyMap<string, number>;
}

export interface DrainOptions {
  /** Short, for database names. */
  readonly label: string;
  /** Sites that apply the backlog (1 for b, 2 for d). */
  readonly targets: number;
  /**
   * Whether the targets also capture their own writes, as sites that write too do. Without it they only
   * receive (`capture: false`), as native subscribers do; with it, on PostgreSQL 15, each target's
   * walsender decodes every row applied there for its capture to drop.
   */
  readonly targetsCapture: boolean;
}

const TARGET_SHORTS = ['b', 'c', 'd', 'e'];

export async function measureBacklogDrain(ctx: BenchContext, options: DrainOptions): Promise<DrainResult> {
  const spec = ctx.params.backlog;
  const { server, log } = ctx;
  return ctx.teardown.within(async (scope) => {
    const targets = TARGET_SHORTS.slice(0, options.targets);
    const shorts = ['a', ...targets];
    const deployment = await createDeployment(server, shorts, scope, options.label, options.targetsCapture ? [] : targets);
    const nativeDbs = targets.map((t) => `bench_${options.label}_native_${t}_${deployment.suffix}`);
    for (const db of nativeDbs) await server.createDatabase(db, scope);
    for (const db of [...shorts.map(deployment.db), ...nativeDbs]) await createRowsTable(server.url(db));

    // sitesync's first start: slots, publications, origins and queues exist before the writes.
    const processes = new Map<string, SitesyncProcess>(shorts.map((s) => [s, deployment.process(s, ctx.cpuProfileDir ?? undefined)]));
    for (const p of processes.values()) p.start();
    for (const p of processes.values()) await p.ready();
    await sleep(1000);
    const restBytes = new Map<string, number>();
    for (const [short, p] of processes) restBytes.set(short, readMemory(p.pid!)?.rssBytes ?? 0);
    for (const p of processes.values()) await p.stop();

    const publication = `bench_native_${deployment.suffix}`;
    await createNativePublication(server, deployment.db('a'), publication, [ROWS_TABLE]);
    const subscribers: NativeSubscriber[] = [];
    for (const [i, db] of nativeDbs.entries()) {
      subscribers.push(await createNativeSubscriber(server, deployment.db('a'), publication, db, `bench_sub_${targets[i]}_${deployment.suffix}`));
    }

    log(`  writing ${describeBacklog(spec)} at site A (sitesync stopped, subscriptions disabled)`);
    const written = await writeBacklog(server.url(deployment.db('a')), spec);
    log(`  written in ${formatSeconds(written.seconds)}, ${(written.walBytes / 1024 / 1024).toFixed(0)} MiB of WAL`);

    const postmaster = postmasterPid((await server.query<{ data_directory: string }>('postgres', 'SHOW data_directory'))[0]!.data_directory);
    const rabbitmq = listenerPid(Number(new URL(BROKER).port || 5672));
    const referenceMeter = new CpuMeter(() => new Map([['RabbitMQ', rabbitmq]]), postmaster);
    const sitesyncMeter = new CpuMeter(
      () => new Map([...[...processes].map(([short, p]): [string, number | null] => [`sitesync ${short.toUpperCase()}`, p.pid]), ['RabbitMQ', rabbitmq]]),
      postmaster,
    );
    let referenceCpu = new Map<string, number>();
    let sitesyncCpu = new Map<string, number>();

    const reference = await attempt(async () => {
      referenceMeter.begin();
      const t0 = performance.now();
      try {
        for (const s of subscribers) await enableSubscriber(server, s);
        const seen = await Promise.all(
          nativeDbs.map((db) => waitForRows(server.url(db), ROWS_TABLE, spec.rows, spec.rows, { timeoutMs: ctx.params.maxLimitSeconds * 1000 })),
        );
        const seconds = (Math.max(...seen) - t0) / 1000;
        referenceCpu = referenceMeter.end(await walsenderLabels(server));
        return { seconds, rowsPerSecond: spec.rows / seconds };
      } finally {
        // Disabled whatever happened, so that they never run beside sitesync.
        for (const s of subscribers) await disableSubscriber(server, s);
      }
    });
    log(`  native (${targets.length} subscriber${targets.length > 1 ? 's' : ''}): ${reference.ok ? `${formatSeconds(reference.value.seconds)}, ${formatRate(reference.value.rowsPerSecond, 'rows')}` : reference.error}`);

    const limit = limitSeconds(ctx.params, valueOf(reference)?.seconds ?? null);
    const sampler = new MemorySampler(() => new Map([...processes].map(([short, p]) => [short, p.pid])));
    const crashed = (): string | null => [...processes.values()].map((p) => p.crashed).find((c) => c !== null) ?? null;
    let memory: Map<string, MemoryPeak> | null = null;
    const sitesync = await attempt(async () => {
      sitesyncMeter.begin();
      const t0 = performance.now();
      for (const p of processes.values()) p.start();
      sampler.start();
      try {
        const seen = await Promise.all(
          targets.map((t) => waitForRows(server.url(deployment.db(t)), ROWS_TABLE, spec.rows, spec.rows, { timeoutMs: limit * 1000, abort: crashed })),
        );
        const seconds = (Math.max(...seen) - t0) / 1000;
        sitesyncCpu = sitesyncMeter.end(await walsenderLabels(server));
        const ready = [...processes.values()].map((p) => (p.readyAt ?? performance.now()) - p.startedAt);
        return { seconds, rowsPerSecond: spec.rows / seconds, startupSeconds: Math.max(...ready) / 1000, limitSeconds: limit };
      } catch (error) {
        if (error instanceof NotThereInTime) throw new Error(`not done within its limit of ${formatSeconds(limit)}: ${error.message}`);
        throw error;
      } finally {
        memory = sampler.stop();
      }
    });
    if (referenceCpu.size > 0) log(`  CPU while native drained: ${formatCpu(referenceCpu)}`);
    if (sitesyncCpu.size > 0) log(`  CPU while sitesync drained: ${formatCpu(sitesyncCpu)}`);
    log(`  sitesync (${shorts.length} processes): ${sitesync.ok ? `${formatSeconds(sitesync.value.seconds)}, ${formatRate(sitesync.value.rowsPerSecond, 'rows')} (startup ${formatSeconds(sitesync.value.startupSeconds)})` : sitesync.error}`);

    const cleanStops = await attempt(async () => {
      const unclean: string[] = [];
      for (const p of processes.values()) {
        const { problem } = await p.stop();
        if (problem) unclean.push(problem);
      }
      if (unclean.length > 0) throw new Error(`not stopped cleanly: ${unclean.join('; ')}`);
      return true as const;
    });

    const peaks = memory as Map<string, MemoryPeak> | null;
    const perProcess: ProcessMemory[] = shorts.flatMap((short) => {
      const peak = peaks?.get(short);
      return peak ? [{ site: short.toUpperCase(), restBytes: restBytes.get(short) ?? 0, ...peak }] : [];
    });
    return { backlog: spec, sites: shorts.length, targets: targets.length, targetsCapture: options.targetsCapture, writeSeconds: written.seconds, walBytes: written.walBytes, reference, sitesync, memory: perProcess, cleanStops, referenceCpu, sitesyncCpu };
  });
}

export function measureDrain(ctx: BenchContext, targetsCapture: boolean): Promise<DrainResult> {
  return measureBacklogDrain(ctx, { label: targetsCapture ? 'drain2' : 'drain', targets: 1, targetsCapture });
}

/** native seconds ÷ sitesync seconds of one run, or null when either side has no figure. */
function ratioOf(r: DrainResult): number | null {
  const ref = valueOf(r.reference);
  const ss = valueOf(r.sitesync);
  return ref && ss ? ref.seconds / ss.seconds : null;
}

/**
 * Report rows for (b) or (d), from one or more runs. With several, the figure is the median run's (by
 * ratio; the lower of the middle two for an even count, so a tie never flatters), and every run is listed;
 * a run in which sitesync failed fails the figure.
 */
export function drainReport(runs: readonly DrainResult[], id: string, figure: string): ReportRow[] {
  const measured = runs.filter((r) => ratioOf(r) !== null).sort((x, y) => ratioOf(x)! - ratioOf(y)!);
  const failed = runs.find((r) => !r.sitesync.ok);
  const r = failed ?? measured[Math.floor((measured.length - 1) / 2)] ?? runs[0]!;
  const ref = valueOf(r.reference);
  const ss = valueOf(r.sitesync);
  const ratio = ratioOf(r);
  const nativeLabel = `native, ${r.targets} subscriber${r.targets > 1 ? 's' : ''}`;
  const targets = r.targets === 1 ? 'B' : 'B and C';
  const topology = r.targetsCapture
    ? `the targets (${targets}) also capture their own sites and drop the relayed writes, which their servers decode in full on PostgreSQL 15`
    : `the targets (${targets}) only receive (capture: false), as native subscribers do`;
  const notes = [
    `backlog ${describeBacklog(r.backlog)} written at A in ${formatSeconds(r.writeSeconds)} (${(r.walBytes / 1024 / 1024).toFixed(0)} MiB of WAL) while nothing replicated`,
    `sitesync: ${r.sites} real \`sitesync run\` processes (A captures; ${topology}), timed from spawn to the last row at the last target`,
    `reference: native logical replication (${r.targets} subscription${r.targets > 1 ? 's' : ''}, each on its own slot created before the writes), timed from ENABLE to the last row at the last subscriber`,
  ];
  if (runs.length > 1) {
    const each = runs.map((run) => {
      const x = ratioOf(run);
      const n = valueOf(run.reference);
      const m = valueOf(run.sitesync);
      return x === null ? 'failed' : `${x.toFixed(2)} (${formatSeconds(n!.seconds)} ÷ ${formatSeconds(m!.seconds)})`;
    });
    notes.push(`${runs.length} runs, each with a fresh backlog and its own native reference right before it; ratio (native ÷ sitesync): ${each.join(', ')}; the figures above are the ${failed ? 'failed' : 'median'} run's`);
  }
  if (ss) {
    notes.push(`sitesync startup (spawn to streaming and consuming, slowest process): ${formatSeconds(ss.startupSeconds)}; after startup: ${formatRate(r.backlog.rows / Math.max(0.001, ss.seconds - ss.startupSeconds), 'rows')}`);
  }
  if (r.referenceCpu.size > 0) notes.push(`CPU while native drained: ${formatCpu(r.referenceCpu)}`);
  if (r.sitesyncCpu.size > 0) notes.push(`CPU while sitesync drained: ${formatCpu(r.sitesyncCpu)}`);
  if (ratio !== null) notes.push(`distance to 1.0 (as fast as native): ${(1 - ratio).toFixed(2)} — sitesync takes ${(1 / ratio).toFixed(2)}× native's time`);
  for (const run of runs) {
    if (!run.cleanStops.ok) notes.push(`warning: ${run.cleanStops.error}`);
    if (!run.reference.ok) notes.push(`reference failed: ${run.reference.error}`);
    if (!run.sitesync.ok) notes.push(`sitesync failed: ${run.sitesync.error}`);
  }
  return [
    {
      id,
      figure,
      conditions: `${describeBacklog(r.backlog)}, ${r.sites} sites (1 writes, ${r.targets} appl${r.targets > 1 ? 'y' : 'ies'}${r.targetsCapture ? ' and capture' : ' only'})${runs.length > 1 ? `; median of ${runs.length} runs` : ''}`,
      sitesync: ss ? `${formatSeconds(ss.seconds)} (${formatRate(ss.rowsPerSecond, 'rows')})` : `FAILED: ${r.sitesync.ok ? '' : r.sitesync.error}`,
      reference: ref ? `${nativeLabel}: ${formatSeconds(ref.seconds)} (${formatRate(ref.rowsPerSecond, 'rows')})` : `error: ${r.reference.ok ? '' : r.reference.error}`,
      ratio,
      ratioMeaning: 'native seconds ÷ sitesync seconds (1.0 = as fast as PostgreSQL\'s own replication; higher is better)',
      target: `≥ ${DRAIN_TARGET}`,
      verdict: failed ? 'FAIL' : judge(ratio, (x) => x >= DRAIN_TARGET),
      notes,
    },
  ];
}
