/**
 * (e) Peak memory (RSS) of each real `sitesync run` process:
 * - during the backlog drain of (b2), where every process captures (its figures are taken from (b2) when it ran, else a drain is run here);
 * - during one very large transaction written at A while A and B run: 200 MB of rows (--quick) or 2 GB,
 *   rows of 1 KiB of text (below the TOAST threshold, so not compressed), in one INSERT … SELECT
 *   generate_series; until B holds every row (sitesync splits it into parts, B spills them and applies
 *   them in one commit).
 *
 * Figure: VmHWM from /proc/<pid>/status read while the process still runs — the kernel's own peak of the
 * resident set over the process's whole life (startup included), so no spike between samples is missed.
 * Reference: the same process's VmRSS at rest (started, ready, idle for a second), read in the same run.
 * Ratio: peak ÷ at rest. Target: every process under 300 MB (absolute, whatever the transaction size).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { attempt, limitSeconds, type BenchContext, type Outcome } from './lib/context.ts';
import { NotThereInTime, waitForRows, withClient } from './lib/db.ts';
import { createDeployment } from './lib/deployment.ts';
import { formatSeconds, type ReportRow } from './lib/report.ts';
import { formatMiB, MemorySampler, readMemory } from './lib/rss.ts';
import { measureBacklogDrain, type DrainResult, type ProcessMemory } from './drain.ts';

export const MEMORY_BUDGET_BYTES = 300 * 1024 * 1024;
const BIG_TABLE = 'bench_big';
const ROW_TEXT_BYTES = 1024;

export interface LargeTransactionResult {
  readonly bytes: number;
  readonly rows: number;
  /** Size of the table at A once written (heap + index). */
  readonly tableBytes: number;
  readonly writeSeconds: number;
  /** From the commit at A to every row at B. */
  readonly sitesync: Outcome<{ readonly seconds: number }>;
  readonly memory: readonly ProcessMemory[];
}

export interface MemoryResult {
  readonly drain: Outcome<{ readonly backlog: DrainResult['backlog']; readonly memory: readonly ProcessMemory[]; readonly completed: boolean; readonly fromB: boolean }>;
  readonly large: Outcome<LargeTransactionResult>;
}

export async function measureMemory(ctx: BenchContext, drainFromB: DrainResult | null): Promise<MemoryResult> {
  const drain = await attempt(async () => {
    let result = drainFromB;
    if (result === null) {
      ctx.log('  (b2) did not run: running a backlog drain for its memory figures');
      result = await measureBacklogDrain(ctx, { label: 'memdrain', targets: 1, targetsCapture: true });
    }
    return { backlog: result.backlog, memory: result.memory, completed: result.sitesync.ok, fromB: drainFromB !== null };
  });
  const large = await attempt(() => largeTransaction(ctx));
  return { drain, large };
}

async function largeTransaction(ctx: BenchContext): Promise<LargeTransactionResult> {
  const { server, log } = ctx;
  const bytes = ctx.params.largeTransactionBytes;
  const rows = Math.ceil(bytes / ROW_TEXT_BYTES);
  return ctx.teardown.within(async (scope) => {
    const deployment = await createDeployment(server, ['a', 'b'], scope, 'memory');
    for (const short of ['a', 'b']) await server.query(deployment.db(short), `CREATE TABLE ${BIG_TABLE} (id int8 PRIMARY KEY, payload text NOT NULL)`);
    const processes = new Map([['a', deployment.process('a', ctx.cpuProfileDir ?? undefined)], ['b', deployment.process('b', ctx.cpuProfileDir ?? undefined)]]);
    for (const p of processes.values()) p.start();
    for (const p of processes.values()) await p.ready();
    await sleep(1000);
    const restBytes = new Map([...processes].map(([short, p]) => [short, readMemory(p.pid!)?.rssBytes ?? 0]));
    const sampler = new MemorySampler(() => new Map([...processes].map(([short, p]) => [short, p.pid])));
    sampler.start();
    let peaks: ReturnType<MemorySampler['stop']> | null = null;
    let writeSeconds = 0;
    let tableBytes = 0;
    const sitesync = await attempt(async () => {
      try {
        log(`  writing one transaction of ${formatMiB(bytes)} (${rows} rows of ${ROW_TEXT_BYTES} bytes) at A, sitesync running`);
        const urlA = server.url(deployment.db('a'));
        const t0 = performance.now();
        await withClient(urlA, (c) =>
          c.query(`INSERT INTO ${BIG_TABLE} (id, payload) SELECT g, repeat(md5(g::text), ${ROW_TEXT_BYTES / 32}) FROM generate_series(1, ${rows}) g`),
        );
        const committed = performance.now();
        writeSeconds = (committed - t0) / 1000;
        tableBytes = Number((await server.query<{ n: string }>(deployment.db('a'), `SELECT pg_total_relation_size('${BIG_TABLE}') AS n`))[0]!.n);
        log(`  committed in ${formatSeconds(writeSeconds)}; waiting for B`);
        const limit = limitSeconds(ctx.params, null);
        const crashed = (): string | null => [...processes.values()].map((p) => p.crashed).find((c) => c !== null) ?? null;
        try {
          const seen = await waitForRows(server.url(deployment.db('b')), BIG_TABLE, rows, rows, { timeoutMs: limit * 1000, abort: crashed, pollMs: 200 });
          return { seconds: (seen - committed) / 1000 };
        } catch (error) {
          if (error instanceof NotThereInTime) throw new Error(`B did not hold the transaction within the limit of ${limit.toFixed(0)} s: ${error.message}`);
          throw error;
        }
      } finally {
        peaks = sampler.stop();
      }
    });
    log(`  sitesync: ${sitesync.ok ? `B holds it ${formatSeconds(sitesync.value.seconds)} after the commit` : sitesync.error}`);
    const found = peaks as ReturnType<MemorySampler['stop']> | null;
    const memory: ProcessMemory[] = [...processes.keys()].flatMap((short) => {
      const peak = found?.get(short);
      return peak ? [{ site: short.toUpperCase(), restBytes: restBytes.get(short) ?? 0, ...peak }] : [];
    });
    for (const m of memory) log(`  ${m.site}: peak ${formatMiB(m.hwmBytes)} (at rest ${formatMiB(m.restBytes)})`);
    for (const p of processes.values()) await p.stop();
    return { bytes, rows, tableBytes, writeSeconds, sitesync, memory };
  });
}

export function memoryReport(r: MemoryResult): ReportRow[] {
  const rows: ReportRow[] = [];
  const budget = `< ${formatMiB(MEMORY_BUDGET_BYTES)}`;
  const row = (figure: string, conditions: string, m: ProcessMemory, extra: string[]): ReportRow => ({
    id: 'e',
    figure,
    conditions,
    sitesync: `peak ${formatMiB(m.hwmBytes)}`,
    reference: `at rest ${formatMiB(m.restBytes)}`,
    ratio: m.restBytes > 0 ? m.hwmBytes / m.restBytes : null,
    ratioMeaning: `peak RSS (VmHWM) ÷ the same process at rest (lower is better); the target is absolute: ${budget} per process`,
    target: budget,
    verdict: m.hwmBytes < MEMORY_BUDGET_BYTES ? 'pass' : 'FAIL',
    notes: extra,
  });
  if (r.drain.ok) {
    const d = r.drain.value;
    const conditions = `drain of ${d.backlog.rows / 1000}k rows in ${d.backlog.rows / d.backlog.rowsPerTransaction} tx, 2 sites`;
    const extra = [
      `${d.fromB ? 'the processes of (b2)' : 'a drain run for this figure'}; VmHWM read while running (whole life, startup included); largest sampled VmRSS ${d.memory.map((m) => `${m.site} ${formatMiB(m.sampledPeakBytes)}`).join(', ')}`,
      ...(d.completed ? [] : ['the drain did not complete (see b): the peak is over what it did']),
    ];
    for (const [i, m] of d.memory.entries()) rows.push(row(`peak RSS, process ${m.site} (${m.site === 'A' ? 'captures' : 'applies'})`, conditions, m, i === d.memory.length - 1 ? extra : []));
    if (d.memory.length === 0) rows.push(errorRow('peak RSS during the drain', 'no memory readings (processes never ran)'));
  } else rows.push(errorRow('peak RSS during the drain', r.drain.error));
  if (r.large.ok) {
    const l = r.large.value;
    const conditions = `1 tx of ${formatMiB(l.bytes)} (${l.rows} rows of 1 KiB), 2 sites`;
    const extra = [
      `transaction written at A in ${formatSeconds(l.writeSeconds)} (table ${formatMiB(l.tableBytes)} with its index), while A and B ran`,
      l.sitesync.ok ? `B held every row ${formatSeconds(l.sitesync.value.seconds)} after the commit (no reference timed for this)` : `sitesync failed: ${l.sitesync.error} — the peak is over what it did`,
      `largest sampled VmRSS ${l.memory.map((m) => `${m.site} ${formatMiB(m.sampledPeakBytes)}`).join(', ')}`,
    ];
    for (const [i, m] of l.memory.entries()) {
      const base = row(`peak RSS, process ${m.site}, large tx`, conditions, m, i === l.memory.length - 1 ? extra : []);
      rows.push(l.sitesync.ok ? base : { ...base, verdict: 'FAIL', sitesync: `${base.sitesync} (did not finish)` });
    }
    if (l.memory.length === 0) rows.push(errorRow('peak RSS during a large transaction', 'no memory readings'));
  } else rows.push(errorRow('peak RSS during a large transaction', r.large.error));
  return rows;
}

function errorRow(figure: string, error: string): ReportRow {
  return { id: 'e', figure, conditions: '—', sitesync: `FAILED: ${error}`, reference: '—', ratio: null, ratioMeaning: '—', target: `< ${formatMiB(MEMORY_BUDGET_BYTES)}`, verdict: 'FAIL', notes: [error] };
}
