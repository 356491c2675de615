/**
 * The benchmark's tables, its writers and its waits.
 *
 * Rows look like an ordinary business table (key, integer, money, time, short text). The backlog is written
 * by the server itself (INSERT … SELECT generate_series), one transaction per statement, so the writer is
 * never what is measured. Ids grow with commit order: both sitesync and native replication apply in the
 * source's commit order, so the last id being present at a target means the backlog is there — a cheap
 * primary-key probe is polled, and count(*) confirms it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { parseLsn } from '../../connectors/postgres/postgres-positions.ts';

export const ROWS_TABLE = 'bench_rows';

export async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, application_name: 'sitesync bench' });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

export async function createRowsTable(url: string): Promise<void> {
  await withClient(url, (c) =>
    c.query(`CREATE TABLE ${ROWS_TABLE} (id int8 PRIMARY KEY, k int4 NOT NULL, amount numeric(12,2) NOT NULL, at timestamptz NOT NULL, note text NOT NULL)`),
  );
}

export interface BacklogSpec {
  readonly rows: number;
  readonly rowsPerTransaction: number;
}

export function describeBacklog(spec: BacklogSpec): string {
  return `${formatCount(spec.rows)} rows in ${formatCount(spec.rows / spec.rowsPerTransaction)} tx of ${spec.rowsPerTransaction}`;
}

/** Writes the backlog, one committed transaction per statement; returns seconds and the WAL position after. */
export async function writeBacklog(url: string, spec: BacklogSpec): Promise<{ seconds: number; endLsn: bigint; walBytes: number }> {
  return withClient(url, async (c) => {
    const before = (await c.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn')).rows[0]!.lsn;
    const started = performance.now();
    for (let first = 1; first <= spec.rows; first += spec.rowsPerTransaction) {
      const last = Math.min(spec.rows, first + spec.rowsPerTransaction - 1);
      await c.query({
        name: 'backlog',
        text: `INSERT INTO ${ROWS_TABLE} (id, k, amount, at, note)
               SELECT g, (g % 1000)::int4, (g % 100000) / 100.0, now(), md5(g::text) FROM generate_series($1::int8, $2::int8) g`,
        values: [first, last],
      });
    }
    const seconds = (performance.now() - started) / 1000;
    const after = (await c.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn')).rows[0]!.lsn;
    return { seconds, endLsn: parseLsn(after), walBytes: Number(parseLsn(after) - parseLsn(before)) };
  });
}

export class NotThereInTime extends Error {
  constructor(
    readonly what: string,
    readonly count: number,
    readonly expected: number,
    readonly seconds: number,
  ) {
    super(`${what}: ${formatCount(count)} of ${formatCount(expected)} rows after ${seconds.toFixed(0)} s`);
  }
}

export interface WaitOptions {
  readonly timeoutMs: number;
  /** Checked between polls: a reason to give up early (a process crashed). */
  readonly abort?: () => string | null;
  readonly pollMs?: number;
}

/**
 * Waits until `table` at `url` holds `expected` rows whose largest id is `lastId`; resolves with the
 * performance.now() at which that was seen. Throws NotThereInTime past the deadline.
 */
export async function waitForRows(url: string, table: string, expected: number, lastId: number, options: WaitOptions): Promise<number> {
  const started = performance.now();
  return withClient(url, async (c) => {
    for (;;) {
      const reason = options.abort?.();
      if (reason) throw new Error(reason);
      const probe = await c.query({ name: 'probe', text: `SELECT EXISTS (SELECT 1 FROM ${table} WHERE id = $1) AS there`, values: [lastId] });
      if (probe.rows[0]?.there) {
        const seenAt = performance.now();
        const count = Number((await c.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`)).rows[0]!.n);
        if (count >= expected) return seenAt;
      }
      if (performance.now() - started > options.timeoutMs) {
        const count = Number((await c.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`)).rows[0]!.n);
        throw new NotThereInTime(url.slice(url.lastIndexOf('/') + 1), count, expected, (performance.now() - started) / 1000);
      }
      await sleep(options.pollMs ?? 50);
    }
  });
}

export function formatCount(n: number): string {
  if (n >= 1_000_000 && n % 100_000 === 0) return `${n / 1_000_000}M`;
  if (n >= 1_000 && n % 100 === 0) return `${n / 1_000}k`;
  return String(Math.round(n));
}
