/**
 * (a) Capture decoding rate: sitesync's capture path without the broker against pg_recvlogical, both
 * reading the same backlog through pgoutput from slots created before it was written.
 *
 * - Reference: `pg_recvlogical --start --endpos=<end> -f /dev/null` on its own slot, with the options
 *   sitesync sends (proto_version 1, sitesync's publication, messages on): the server's decoding plus a
 *   client that only reads. Timed from spawn to exit.
 * - sitesync: PostgresSource (connectors/postgres/postgres-source.ts), the real capture source — its
 *   transport, pgoutput decoder and transaction assembler — opened with a handler that only counts rows,
 *   timed from open() until the handler has every row (or a checkpoint at the end position). Runs in this
 *   process (a process of its own would add nothing the capture does not already do here).
 * - Each side reads the backlog twice, from four slots, in the order reference, sitesync, sitesync,
 *   reference — never two at once, and neither always first (cold caches); the faster run of each counts.
 *
 * Ratio: sitesync rows/s ÷ pg_recvlogical rows/s; target ≥ 0.9.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { SourceHandler } from '../src/capture/source.ts';
import { publicationName } from '../src/config/names.ts';
import { comparePositions } from '../src/events/position.ts';
import { formatLsn, lsnToPosition, parseLsn } from '../connectors/postgres/postgres-positions.ts';
import { createLogger } from '../src/observability/logger.ts';
import { PostgresSource } from '../connectors/postgres/postgres-source.ts';
import { attempt, limitSeconds, valueOf, type BenchContext, type Outcome } from './lib/context.ts';
import { createRowsTable, describeBacklog, writeBacklog, type BacklogSpec } from './lib/db.ts';
import { uniqueSuffix } from './lib/deployment.ts';
import { CpuMeter, postmasterPid, total } from './lib/cpu.ts';
import { runTool } from './lib/processes.ts';
import { formatRate, formatSeconds, judge, type ReportRow } from './lib/report.ts';
import { pgTool } from './lib/server.ts';
import { defaultConfig } from './lib/sitesync-defaults.ts';

export const DECODE_TARGET = 0.9;

export interface DecodeFigure {
  readonly seconds: number;
  readonly rowsPerSecond: number;
}

export interface DecodeResult {
  readonly backlog: BacklogSpec;
  readonly walBytes: number;
  readonly writeSeconds: number;
  readonly reference: Outcome<DecodeFigure & { readonly confirmedToEnd: boolean }>;
  readonly sitesync: Outcome<DecodeFigure & { readonly transactions: number; readonly parts: number }>;
  /** Every run, in the order run (seconds, or why it failed). */
  readonly runs: { readonly reference: readonly (number | string)[]; readonly sitesync: readonly (number | string)[] };
  /** CPU seconds of the PostgreSQL server (its walsender, mostly) during each run, in the same order. */
  readonly serverCpu: { readonly reference: readonly number[]; readonly sitesync: readonly number[] };
}

export async function measureDecode(ctx: BenchContext): Promise<DecodeResult> {
  const spec = ctx.params.backlog;
  return ctx.teardown.within(async (scope) => {
    const suffix = uniqueSuffix();
    const db = `bench_decode_${suffix}`;
    await ctx.server.createDatabase(db, scope);
    const url = ctx.server.url(db);
    await createRowsTable(url);

    // Two readers of each kind, every slot created before the writes; run as reference, sitesync,
    // sitesync, reference so that neither side always goes first (cold caches) — the best of each counts.
    const sources: PostgresSource[] = [];
    for (const n of [1, 2]) {
      const source = new PostgresSource({ site: `dec${n}_${suffix}`, url, tables: null, maxPartBytes: defaultConfig().capture.maxMessageBytes, receiveBufferBytes: defaultConfig().capture.receiveBufferBytes, logger: createLogger('warn') });
      scope.add(`close sitesync source ${n}`, () => source.end());
      await source.prepare(); // its publication and slot
      sources.push(source);
    }
    const publication = publicationName(sources[0]!.site);
    const recvSlots = [1, 2].map((n) => `bench_recvlogical${n}_${suffix}`);
    for (const slot of recvSlots) await ctx.server.query(db, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]);

    ctx.log(`  writing ${describeBacklog(spec)}`);
    const written = await writeBacklog(url, spec);
    ctx.log(`  written in ${formatSeconds(written.seconds)}, ${(written.walBytes / 1024 / 1024).toFixed(0)} MiB of WAL, end ${formatLsn(written.endLsn)}`);

    const recvlogical = async (slot: string) => {
      const result = await runTool(
        pgTool('pg_recvlogical'),
        ['-h', ctx.server.host, '-p', String(ctx.server.port), '-U', 'postgres', '-d', db, '--slot', slot, '--start', `--endpos=${formatLsn(written.endLsn)}`, '--no-loop',
          '-f', '/dev/null', '-o', 'proto_version=1', '-o', `publication_names=${publication}`, '-o', 'messages=true'],
        ctx.params.maxLimitSeconds * 1000,
      );
      if (result.timedOut) throw new Error(`pg_recvlogical did not reach the end within ${ctx.params.maxLimitSeconds} s`);
      if (result.code !== 0) throw new Error(`pg_recvlogical exited with ${result.code}: ${result.stderr.trim()}`);
      const confirmed = await ctx.server.query<{ lsn: string }>(db, `SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1`, [slot]);
      return { seconds: result.seconds, rowsPerSecond: spec.rows / result.seconds, confirmedToEnd: parseLsn(confirmed[0]?.lsn ?? '0/0') >= written.endLsn };
    };
    // The server's CPU during each run says whether a reader makes the walsender work harder (a client that
    // reads in small pieces or answers too often costs the server, not only itself).
    const postmaster = postmasterPid((await ctx.server.query<{ data_directory: string }>('postgres', 'SHOW data_directory'))[0]!.data_directory);
    const serverCpu = { reference: [] as number[], sitesync: [] as number[] };
    // Each run's walsender is gone (exited and reaped) before the meter starts and before it stops: the
    // CPU of a server process that exits while measured is counted when its parent reaps it.
    const walsendersGone = async (): Promise<void> => {
      for (let i = 0; i < 100; i++) {
        const active = await ctx.server.query(db, `SELECT 1 FROM pg_stat_replication WHERE pid IN (SELECT active_pid FROM pg_replication_slots WHERE database = current_database())`);
        if (active.length === 0) break;
        await sleep(50);
      }
      await sleep(200);
    };
    const metered = async <T>(into: number[], run: () => Promise<Outcome<T>>): Promise<Outcome<T>> => {
      await walsendersGone();
      const meter = new CpuMeter(() => new Map(), postmaster);
      meter.begin();
      const outcome = await run();
      await walsendersGone();
      into.push(total(meter.end()));
      return outcome;
    };
    const show = (what: string, o: Outcome<DecodeFigure>, cpu: number[]): void =>
      ctx.log(`  ${what}: ${o.ok ? `${formatSeconds(o.value.seconds)}, ${formatRate(o.value.rowsPerSecond, 'rows')}` : o.error}; PostgreSQL CPU ${cpu.at(-1)!.toFixed(2)} s`);

    const referenceRuns: Outcome<DecodeFigure & { readonly confirmedToEnd: boolean }>[] = [];
    const sitesyncRuns: Outcome<DecodeFigure & { readonly transactions: number; readonly parts: number }>[] = [];
    referenceRuns.push(await metered(serverCpu.reference, () => attempt(() => recvlogical(recvSlots[0]!))));
    show('pg_recvlogical, run 1', referenceRuns[0]!, serverCpu.reference);
    const limit = limitSeconds(ctx.params, valueOf(referenceRuns[0]!)?.seconds ?? null);
    for (const [i, source] of sources.entries()) {
      sitesyncRuns.push(await metered(serverCpu.sitesync, () => attempt(() => decodeWithSitesync(source, spec.rows, written.endLsn, limit))));
      show(`sitesync decoding, run ${i + 1}`, sitesyncRuns[i]!, serverCpu.sitesync);
    }
    referenceRuns.push(await metered(serverCpu.reference, () => attempt(() => recvlogical(recvSlots[1]!))));
    show('pg_recvlogical, run 2', referenceRuns[1]!, serverCpu.reference);
    return {
      backlog: spec,
      walBytes: written.walBytes,
      writeSeconds: written.seconds,
      reference: best(referenceRuns),
      sitesync: best(sitesyncRuns),
      runs: { reference: referenceRuns.map(secondsOrError), sitesync: sitesyncRuns.map(secondsOrError) },
      serverCpu,
    };
  });
}

/** The fastest successful run; a failure if any run failed (a failure is never hidden by a success). */
function best<T extends DecodeFigure>(runs: readonly Outcome<T>[]): Outcome<T> {
  const failed = runs.find((r): r is { ok: false; error: string } => !r.ok);
  if (failed) return failed;
  const values = runs.map((r) => (r as { ok: true; value: T }).value);
  return { ok: true, value: values.reduce((a, b) => (b.seconds < a.seconds ? b : a)) };
}

function secondsOrError(run: Outcome<DecodeFigure>): number | string {
  return run.ok ? run.value.seconds : run.error;
}

async function decodeWithSitesync(source: PostgresSource, expectedRows: number, endLsn: bigint, limitSecondsValue: number) {
  const end = lsnToPosition(endLsn);
  const reached = (checkpoint: string | null): boolean => checkpoint !== null && comparePositions(checkpoint, end) >= 0;
  let rows = 0;
  let transactions = 0;
  let parts = 0;
  let finish: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const handler: SourceHandler = {
    transaction(tx, part, checkpoint) {
      rows += tx.changes.length;
      if (part === null || part.last) transactions++;
      else parts++;
      if (rows >= expectedRows || reached(checkpoint)) finish();
    },
    skipped(_position, checkpoint) {
      if (reached(checkpoint)) finish();
    },
    idle(checkpoint) {
      if (reached(checkpoint)) finish();
    },
  };
  await source.resumePoint();
  const started = performance.now();
  try {
    await source.open(handler);
    const broke = source.ended!.then(() => Promise.reject(new Error('the replication stream ended before the end position')));
    const tooLong = sleep(limitSecondsValue * 1000).then(() =>
      Promise.reject(new Error(`did not reach the end within ${limitSecondsValue.toFixed(0)} s (${rows} of ${expectedRows} rows decoded)`)),
    );
    broke.catch(() => undefined);
    tooLong.catch(() => undefined);
    await Promise.race([finished, broke, tooLong]);
  } finally {
    await source.close();
  }
  const seconds = (performance.now() - started) / 1000;
  if (rows < expectedRows) throw new Error(`reached the end position with ${rows} of ${expectedRows} rows`);
  return { seconds, rowsPerSecond: rows / seconds, transactions, parts };
}

function fmtRun(run: number | string): string {
  return typeof run === 'number' ? run.toFixed(2) : 'failed';
}

export function decodeReport(r: DecodeResult): ReportRow[] {
  const ref = valueOf(r.reference);
  const ss = valueOf(r.sitesync);
  const ratio = ref && ss ? ss.rowsPerSecond / ref.rowsPerSecond : null;
  const notes = [
    `backlog ${describeBacklog(r.backlog)} written in ${formatSeconds(r.writeSeconds)}; ${(r.walBytes / 1024 / 1024).toFixed(0)} MiB of WAL; all four slots created before the writes`,
    'reference: pg_recvlogical --endpos, -f /dev/null, pgoutput proto_version=1, the same publication, messages=true (spawn to exit)',
    'sitesync: PostgresSource + pgoutput decoder + transaction assembler in the bench process, handler counting rows (open() to last row)',
    `each side read the backlog twice from slots of its own, in the order reference, sitesync, sitesync, reference; the faster run counts (s): pg_recvlogical ${r.runs.reference.map(fmtRun).join(' / ')}, sitesync ${r.runs.sitesync.map(fmtRun).join(' / ')}`,
  ];
  const cpu = (xs: readonly number[]): string => xs.map((x) => x.toFixed(2)).join(' / ');
  notes.push(`PostgreSQL CPU during each run (s): pg_recvlogical ${cpu(r.serverCpu.reference)}, sitesync ${cpu(r.serverCpu.sitesync)}`);
  if (ref && !ref.confirmedToEnd) notes.push('warning: pg_recvlogical did not confirm its slot up to the end position');
  if (ss) notes.push(`sitesync delivered ${ss.transactions} transactions${ss.parts ? ` and ${ss.parts} parts` : ''}`);
  if (!r.reference.ok) notes.push(`reference failed: ${r.reference.error}`);
  if (!r.sitesync.ok) notes.push(`sitesync failed: ${r.sitesync.error}`);
  return [
    {
      id: 'a',
      figure: 'capture decoding rate',
      conditions: `${describeBacklog(r.backlog)}, 1 site, no broker`,
      sitesync: ss ? `${formatRate(ss.rowsPerSecond, 'rows')} (${formatSeconds(ss.seconds)})` : `FAILED: ${r.sitesync.ok ? '' : r.sitesync.error}`,
      reference: ref ? `pg_recvlogical ${formatRate(ref.rowsPerSecond, 'rows')} (${formatSeconds(ref.seconds)})` : `error: ${r.reference.ok ? '' : r.reference.error}`,
      ratio,
      ratioMeaning: 'sitesync rows/s ÷ pg_recvlogical rows/s (higher is better)',
      target: `≥ ${DECODE_TARGET}`,
      verdict: r.sitesync.ok ? judge(ratio, (x) => x >= DECODE_TARGET) : 'FAIL',
      notes,
    },
  ];
}
