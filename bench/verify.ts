/**
 * (f) `sitesync verify` of one large table with a few differences, against reading that table once.
 *
 * - Data: the benchmark table (bench_rows: key, integer, money, time, text) with the same rows in two
 *   databases of the private server, written by the server itself (INSERT … SELECT generate_series), then
 *   5 differences at the second: 2 rows deleted, 2 changed, 1 added.
 * - Reference: the first database's table read once, whole, through the PostgreSQL TableReader's readChunk
 *   in pages of 5,000 rows (consistent reader, as verify opens it): what any comparison that reads rows
 *   must pay at least once per site.
 * - sitesync: compareTable (src/verify/compare-tables.ts) over consistent readers of the two databases,
 *   as `sitesync verify` runs it: range digests computed in the database, recursing into the ranges that
 *   differ. Also, for information, the same comparison row by row (the readers' digests hidden), which is
 *   what verify does between databases of different kinds.
 * - Each is run twice, in the order reference, verify, verify (rows), reference, verify; the faster run of
 *   each counts. Readers are opened before the clock starts.
 *
 * Ratio: verify seconds ÷ reference seconds (lower is better). No target: a figure to watch. Rows: 100k
 * with --quick, 1M in the full run; SITESYNC_BENCH_VERIFY_ROWS sets any other count.
 */
import { CONNECTORS } from '../connectors/index.ts';
import type { TableReader } from '../src/capture/table-reader.ts';
import { compareTable, type TableComparison } from '../src/verify/compare-tables.ts';
import { attempt, valueOf, type BenchContext, type Outcome } from './lib/context.ts';
import { createRowsTable, formatCount, ROWS_TABLE, withClient } from './lib/db.ts';
import { uniqueSuffix } from './lib/deployment.ts';
import { formatRate, formatSeconds, type ReportRow } from './lib/report.ts';

const PAGE_ROWS = 5000;
const DIFFERENCES = 5;

export interface VerifyFigure {
  readonly seconds: number;
  /** Rows each side read into sitesync (verify) or the rows read (reference). */
  readonly rowsRead: number;
}

export interface VerifyResult {
  readonly rows: number;
  readonly writeSeconds: number;
  readonly reference: Outcome<VerifyFigure>;
  readonly verify: Outcome<VerifyFigure & { readonly differences: number; readonly method: string }>;
  readonly verifyByRows: Outcome<VerifyFigure & { readonly differences: number; readonly method: string }>;
  readonly runs: { readonly reference: readonly (number | string)[]; readonly verify: readonly (number | string)[]; readonly verifyByRows: readonly (number | string)[] };
}

/** How many rows: SITESYNC_BENCH_VERIFY_ROWS, else 100k with --quick and 1M in the full run. */
export function verifyRows(ctx: Pick<BenchContext, 'mode'>): number {
  const configured = process.env.SITESYNC_BENCH_VERIFY_ROWS;
  if (configured !== undefined) {
    const n = Number(configured);
    if (!Number.isInteger(n) || n < 100) throw new Error(`SITESYNC_BENCH_VERIFY_ROWS=${configured} is not a whole number of rows of at least 100`);
    return n;
  }
  return ctx.mode === 'quick' ? 100_000 : 1_000_000;
}

export async function measureVerify(ctx: BenchContext): Promise<VerifyResult> {
  const rows = verifyRows(ctx);
  return ctx.teardown.within(async (scope) => {
    const suffix = uniqueSuffix();
    const databases = [`bench_verify_a_${suffix}`, `bench_verify_b_${suffix}`];
    const started = performance.now();
    for (const db of databases) {
      await ctx.server.createDatabase(db, scope);
      const url = ctx.server.url(db);
      await createRowsTable(url);
      await withClient(url, async (c) => {
        // The same rows at both: everything derived from the key, the time fixed.
        await c.query(`INSERT INTO ${ROWS_TABLE} (id, k, amount, at, note)
                       SELECT g, (g % 1000)::int4, (g % 100000) / 100.0, TIMESTAMPTZ '2024-01-01 00:00:00+00' + g * INTERVAL '1 second', md5(g::text)
                       FROM generate_series(1, $1::int8) g`, [rows]);
        await c.query(`VACUUM ANALYZE ${ROWS_TABLE}`);
      });
    }
    // The differences, at b: spread over the key range, the first and last keys included.
    const at = (fraction: number): number => Math.max(1, Math.min(rows, Math.round(rows * fraction)));
    await withClient(ctx.server.url(databases[1]!), async (c) => {
      await c.query(`DELETE FROM ${ROWS_TABLE} WHERE id IN ($1, $2)`, [1, at(0.37)]);
      await c.query(`UPDATE ${ROWS_TABLE} SET note = 'changed' WHERE id IN ($1, $2)`, [at(0.61), rows]);
      await c.query(`INSERT INTO ${ROWS_TABLE} VALUES ($1, 1, 1.00, now(), 'added')`, [rows + 1000]);
    });
    const writeSeconds = (performance.now() - started) / 1000;
    ctx.log(`  ${formatCount(rows)} rows written to two databases in ${formatSeconds(writeSeconds)}; ${DIFFERENCES} differences at the second`);

    const postgres = CONNECTORS.get('postgres')!;
    const open = async (db: string, site: string): Promise<TableReader> => {
      const reader = await postgres.openTableReader!({ site, url: ctx.server.url(db), consistent: true });
      scope.add(`close the table reader of ${db}`, () => reader.close());
      return reader;
    };

    const readOnce = async (): Promise<VerifyFigure> => {
      const reader = await open(databases[0]!, 'benchread');
      try {
        const shape = await reader.describe('public', ROWS_TABLE);
        const t0 = performance.now();
        let read = 0;
        let after = null;
        for (;;) {
          const chunk = await reader.readChunk(shape, after, PAGE_ROWS);
          read += chunk.length;
          if (chunk.length < PAGE_ROWS) break;
          after = shape.keyColumns.map((i) => chunk[chunk.length - 1]!.values[i]!);
        }
        const seconds = (performance.now() - t0) / 1000;
        if (read !== rows) throw new Error(`read ${read} rows of ${rows}`);
        return { seconds, rowsRead: read };
      } finally {
        await reader.close();
      }
    };

    const verify = async (digests: boolean): Promise<VerifyFigure & { differences: number; method: string }> => {
      const readers = [await open(databases[0]!, 'benchparis'), await open(databases[1]!, 'benchlondon')];
      try {
        const sites = readers.map((reader, i) => ({ site: ['paris', 'london'][i]!, reader: digests ? reader : withoutDigests(reader) }));
        const t0 = performance.now();
        const result: TableComparison = await compareTable(sites, 'public', ROWS_TABLE);
        const seconds = (performance.now() - t0) / 1000;
        if (result.error !== undefined) throw new Error(result.error);
        if (result.differenceCount !== DIFFERENCES) throw new Error(`verify found ${result.differenceCount} differences, not ${DIFFERENCES}`);
        return { seconds, rowsRead: Math.max(...Object.values(result.rowsRead)), differences: result.differenceCount, method: result.method };
      } finally {
        await Promise.all(readers.map((r) => r.close()));
      }
    };

    const referenceRuns: Outcome<VerifyFigure>[] = [];
    const verifyRuns: Outcome<VerifyFigure & { differences: number; method: string }>[] = [];
    const byRowsRuns: Outcome<VerifyFigure & { differences: number; method: string }>[] = [];
    const show = (what: string, o: Outcome<VerifyFigure>): void =>
      ctx.log(`  ${what}: ${o.ok ? `${formatSeconds(o.value.seconds)}, ${formatCount(o.value.rowsRead)} rows read per site` : o.error}`);
    referenceRuns.push(await attempt(readOnce));
    show('reference (readChunk, whole table), run 1', referenceRuns.at(-1)!);
    verifyRuns.push(await attempt(() => verify(true)));
    show('verify, run 1', verifyRuns.at(-1)!);
    byRowsRuns.push(await attempt(() => verify(false)));
    show('verify row by row (digests hidden)', byRowsRuns.at(-1)!);
    referenceRuns.push(await attempt(readOnce));
    show('reference, run 2', referenceRuns.at(-1)!);
    verifyRuns.push(await attempt(() => verify(true)));
    show('verify, run 2', verifyRuns.at(-1)!);
    return {
      rows,
      writeSeconds,
      reference: best(referenceRuns),
      verify: best(verifyRuns),
      verifyByRows: best(byRowsRuns),
      runs: { reference: referenceRuns.map(secondsOrError), verify: verifyRuns.map(secondsOrError), verifyByRows: byRowsRuns.map(secondsOrError) },
    };
  });
}

/** The reader as one without digests would be: verify then reads and compares every row. */
function withoutDigests(reader: TableReader): TableReader {
  return {
    describe: (schema, table) => reader.describe(schema, table),
    readChunk: (shape, after, limit) => reader.readChunk(shape, after, limit),
    readKeys: (shape, keys) => reader.readKeys(shape, keys),
    estimateRows: (shape) => reader.estimateRows(shape),
    close: () => reader.close(),
  };
}

function best<T extends VerifyFigure>(runs: readonly Outcome<T>[]): Outcome<T> {
  const failed = runs.find((r): r is { ok: false; error: string } => !r.ok);
  if (failed) return failed;
  const values = runs.map((r) => (r as { ok: true; value: T }).value);
  return { ok: true, value: values.reduce((a, b) => (b.seconds < a.seconds ? b : a)) };
}

function secondsOrError(run: Outcome<VerifyFigure>): number | string {
  return run.ok ? run.value.seconds : run.error;
}

export function verifyReport(r: VerifyResult): ReportRow[] {
  const ref = valueOf(r.reference);
  const ss = valueOf(r.verify);
  const byRows = valueOf(r.verifyByRows);
  const fmt = (xs: readonly (number | string)[]): string => xs.map((x) => (typeof x === 'number' ? x.toFixed(2) : 'failed')).join(' / ');
  const notes = [
    `${formatCount(r.rows)} rows (bench_rows) in two databases of the private server, written in ${formatSeconds(r.writeSeconds)}; ${DIFFERENCES} differences at the second (2 deleted, the first key among them; 2 changed, the last key among them; 1 added)`,
    `reference: one consistent PostgreSQL TableReader reading the whole table with readChunk, pages of ${PAGE_ROWS}`,
    'verify: compareTable over two consistent PostgreSQL TableReaders (range digests in the database, recursing into the ranges that differ), readers opened before the clock',
    `runs (s), in the order reference, verify, verify row by row, reference, verify; the faster of each counts: reference ${fmt(r.runs.reference)}, verify ${fmt(r.runs.verify)}, row by row ${fmt(r.runs.verifyByRows)}`,
  ];
  if (ss) notes.push(`verify found ${ss.differences} differences (${ss.method}), reading at most ${formatCount(ss.rowsRead)} rows of one site`);
  if (!r.reference.ok) notes.push(`reference failed: ${r.reference.error}`);
  if (!r.verify.ok) notes.push(`verify failed: ${r.verify.error}`);
  if (!r.verifyByRows.ok) notes.push(`verify row by row failed: ${r.verifyByRows.error}`);
  const conditions = `${formatCount(r.rows)} rows, 2 PostgreSQL databases, ${DIFFERENCES} differences`;
  const reference = ref ? `readChunk whole table ${formatSeconds(ref.seconds)} (${formatRate(r.rows / ref.seconds, 'rows')})` : `error: ${r.reference.ok ? '' : r.reference.error}`;
  return [
    {
      id: 'f',
      figure: 'verify one table, range digests',
      conditions,
      sitesync: ss ? `${formatSeconds(ss.seconds)}, ${formatCount(ss.rowsRead)} rows read` : `FAILED: ${r.verify.ok ? '' : r.verify.error}`,
      reference,
      ratio: ref && ss ? ss.seconds / ref.seconds : null,
      ratioMeaning: 'verify s ÷ reading the table once s (lower is better)',
      target: '—',
      verdict: r.verify.ok ? 'info' : 'FAIL',
      notes,
    },
    {
      id: 'f',
      figure: 'verify one table, row by row (as across database kinds)',
      conditions,
      sitesync: byRows ? `${formatSeconds(byRows.seconds)}, ${formatCount(byRows.rowsRead)} rows read per site` : `FAILED: ${r.verifyByRows.ok ? '' : r.verifyByRows.error}`,
      reference,
      ratio: ref && byRows ? byRows.seconds / ref.seconds : null,
      ratioMeaning: 'verify s ÷ reading the table once s (lower is better)',
      target: '—',
      verdict: r.verifyByRows.ok ? 'info' : 'FAIL',
      notes: [],
    },
  ];
}
