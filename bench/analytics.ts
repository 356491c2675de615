/**
 * (h) The backlog drained into an analytics store: a DuckDB site against a PostgreSQL site, both only
 * receiving, from the same queue contents, in the same run.
 *
 * Site A writes the backlog and publishes it (to both targets' queues at once: one exchange) while neither
 * target runs; A is stopped once its slot has confirmed everything (confirmed = the broker holds it). Then
 * each target is started alone and timed from spawn (startup included) until it holds every row: first the
 * PostgreSQL site (the reference: sitesync's own sink), then the DuckDB site (history and current state,
 * one DuckDB transaction per batch). The DuckDB site is polled through `Connector.query` — the running
 * process's socket — since DuckDB lets one process hold the file.
 *
 * Ratio: PostgreSQL-sink seconds ÷ DuckDB-sink seconds (above 1: DuckDB drains faster); target ≥ 0.5.
 * Peak RSS of each target process is reported beside it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CONNECTORS } from '../connectors/index.ts';
import { attempt, limitSeconds, valueOf, type BenchContext, type Outcome } from './lib/context.ts';
import { createRowsTable, describeBacklog, ROWS_TABLE, waitForRows, writeBacklog, type BacklogSpec } from './lib/db.ts';
import { createDeployment } from './lib/deployment.ts';
import type { SitesyncProcess } from './lib/processes.ts';
import { formatRate, formatSeconds, judge, type ReportRow } from './lib/report.ts';
import { formatMiB, MemorySampler, type MemoryPeak } from './lib/rss.ts';

export const ANALYTICS_TARGET = 0.5;

export interface SinkDrain {
  readonly seconds: number;
  readonly rowsPerSecond: number;
  readonly memory: MemoryPeak | null;
}

export interface AnalyticsResult {
  readonly backlog: BacklogSpec;
  readonly postgres: Outcome<SinkDrain>;
  readonly duckdb: Outcome<SinkDrain>;
  /** History rows and live current-state rows at the DuckDB site at the end. */
  readonly duckdbCounts: Outcome<{ readonly history: number; readonly current: number }>;
}

export async function measureAnalytics(ctx: BenchContext): Promise<AnalyticsResult> {
  const { server, log } = ctx;
  const spec = ctx.params.backlog;
  const scope = ctx.teardown.scope();
  try {
    const dir = mkdtempSync(join(tmpdir(), 'sitesync-bench-duckdb-'));
    scope.add(`remove ${dir}`, async () => rmSync(dir, { recursive: true, force: true }));
    const duckdbUrl = `duckdb://${join(dir, 'k.duckdb')}`;
    const deployment = await createDeployment(server, ['a', 'p', 'k'], scope, 'h', ['p', 'k'], { k: { kind: 'duckdb', url: duckdbUrl } });
    await createRowsTable(server.url(deployment.db('a')));
    await createRowsTable(server.url(deployment.db('p')));

    // First start: slot, publication, origins, queues and DuckDB bookkeeping exist before the writes.
    const processes = new Map<string, SitesyncProcess>(['a', 'p', 'k'].map((s) => [s, deployment.process(s)]));
    for (const p of processes.values()) p.start();
    for (const p of processes.values()) await p.ready();
    for (const p of [processes.get('p')!, processes.get('k')!]) await p.stop();

    log(`  writing ${describeBacklog(spec)} at site A, published to both targets' queues while they are stopped`);
    const written = await writeBacklog(server.url(deployment.db('a')), spec);
    const slot = `sitesync_${deployment.site('a')}`;
    const deadline = performance.now() + ctx.params.maxLimitSeconds * 1000;
    for (;;) {
      const [row] = await server.query<{ done: boolean }>(deployment.db('a'), `SELECT confirmed_flush_lsn >= '${formatLsn(written.endLsn)}'::pg_lsn AS done FROM pg_replication_slots WHERE slot_name = '${slot}'`);
      if (row?.done) break;
      if (performance.now() > deadline) throw new Error(`site A did not publish its backlog within ${ctx.params.maxLimitSeconds} s`);
      await sleep(200);
    }
    await processes.get('a')!.stop();
    log(`  published; timing each target alone`);

    const limit = limitSeconds(ctx.params, null);
    const drain = async (short: 'p' | 'k', done: () => Promise<number>): Promise<SinkDrain> => {
      const p = processes.get(short)!;
      const sampler = new MemorySampler(() => new Map([[short, p.pid]]));
      const t0 = performance.now();
      p.start();
      sampler.start();
      let memory: MemoryPeak | null = null;
      try {
        const seenAt = await done();
        const seconds = (seenAt - t0) / 1000;
        return { seconds, rowsPerSecond: spec.rows / seconds, memory: (memory = sampler.stop().get(short) ?? null) };
      } finally {
        if (memory === null) sampler.stop();
        await p.stop();
      }
    };
    const postgres = await attempt(() =>
      drain('p', () => waitForRows(server.url(deployment.db('p')), ROWS_TABLE, spec.rows, spec.rows, { timeoutMs: limit * 1000, abort: () => processes.get('p')!.crashed })),
    );
    log(`  PostgreSQL sink: ${describe(postgres)}`);

    const duckdb = CONNECTORS.get('duckdb')!;
    const count = async (sql: string): Promise<number> => Number((await duckdb.query!(duckdbUrl, sql, { maxRows: 1 })).rows[0]?.[0] ?? 0);
    const duck = await attempt(() =>
      drain('k', async () => {
        const started = performance.now();
        for (;;) {
          const crashed = processes.get('k')!.crashed;
          if (crashed) throw new Error(crashed);
          const n = await count(`SELECT count(*) FROM public.${ROWS_TABLE} WHERE NOT _sitesync_deleted`).catch(() => 0);
          if (n >= spec.rows) return performance.now();
          if (performance.now() - started > limit * 1000) throw new Error(`not done within its limit of ${formatSeconds(limit)}: ${n} of ${spec.rows} rows`);
          await sleep(100);
        }
      }),
    );
    log(`  DuckDB sink: ${describe(duck)}`);
    const duckdbCounts = await attempt(async () => ({
      history: await count(`SELECT count(*) FROM public.${ROWS_TABLE}__history`),
      current: await count(`SELECT count(*) FROM public.${ROWS_TABLE} WHERE NOT _sitesync_deleted`),
    }));
    return { backlog: spec, postgres, duckdb: duck, duckdbCounts };
  } finally {
    await scope.run();
  }
}

function describe(outcome: Outcome<SinkDrain>): string {
  if (!outcome.ok) return outcome.error;
  const { seconds, rowsPerSecond, memory } = outcome.value;
  return `${formatSeconds(seconds)}, ${formatRate(rowsPerSecond, 'rows')}${memory ? `, peak RSS ${formatMiB(memory.hwmBytes)}` : ''}`;
}

function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

export function analyticsReport(result: AnalyticsResult): ReportRow[] {
  const pg = valueOf(result.postgres);
  const duck = valueOf(result.duckdb);
  const ratio = pg && duck ? pg.seconds / duck.seconds : null;
  const counts = valueOf(result.duckdbCounts);
  const notes = [
    ...(result.postgres.ok ? [] : [`PostgreSQL sink: ${result.postgres.error}`]),
    ...(result.duckdb.ok ? [] : [`DuckDB sink: ${result.duckdb.error}`]),
    ...(counts ? [`DuckDB holds ${counts.history} history rows and ${counts.current} current rows (expected ${result.backlog.rows} of each)`] : []),
    ...(pg?.memory && duck?.memory ? [`peak RSS: DuckDB site ${formatMiB(duck.memory.hwmBytes)}, PostgreSQL site ${formatMiB(pg.memory.hwmBytes)}`] : []),
  ];
  const exact = counts !== null && counts.history === result.backlog.rows && counts.current === result.backlog.rows;
  return [
    {
      id: 'h',
      figure: 'backlog drain into DuckDB (history + current state)',
      conditions: `${describeBacklog(result.backlog)}, target alone`,
      sitesync: duck ? `${formatSeconds(duck.seconds)}, ${formatRate(duck.rowsPerSecond, 'rows')}` : '—',
      reference: pg ? `${formatSeconds(pg.seconds)} (PostgreSQL sink)` : '—',
      ratio,
      ratioMeaning: 'PostgreSQL-sink seconds ÷ DuckDB-sink seconds',
      target: `≥ ${ANALYTICS_TARGET}, every row once`,
      verdict: exact ? judge(ratio, (r) => r >= ANALYTICS_TARGET) : 'FAIL',
      notes,
    },
  ];
}
