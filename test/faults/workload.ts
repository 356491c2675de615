/**
 * The workload the fault suite drives, straight at the databases (not through sitesync's proxies):
 * - site A: pgbench's built-in TPC-B-like script (updates of accounts, tellers and branches, inserts into
 *   pgbench_history, a table without a primary key, where a duplicate or a loss shows);
 * - site B: a mix of inserts, updates and deletes;
 * - at both: a single writer appending a sequence number, committed in order, so that the target can show
 *   the order it applied them in.
 * Every writer survives the faults: a lost connection is reopened and the work goes on. What counts as
 * committed is what the source holds at the end, not what a client believed.
 */
import { execFile } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import pg from 'pg';

const run = promisify(execFile);

/** The same tables at every site, besides pgbench's. */
export const SCHEMA = `
  CREATE TABLE order_probe (writer text NOT NULL, seq bigint NOT NULL);
  ALTER TABLE order_probe REPLICA IDENTITY FULL;
  CREATE TABLE mix_items (id int PRIMARY KEY, v int NOT NULL, note text);
  CREATE TABLE mix_log (seq bigint NOT NULL, op text);
  ALTER TABLE mix_log REPLICA IDENTITY FULL;
`;

/** pgbench's tables and data, identical at every site (the sites start as copies of each other). */
export async function initPgbench(url: string): Promise<void> {
  await run('pgbench', ['-i', '-s', '1', '-q', '-I', 'dtgp', url], { timeout: 120_000 });
}

export interface WorkloadCounts {
  pgbench: number;
  mix: number;
  probes: number;
  errors: number;
}

export class Workload {
  readonly counts: WorkloadCounts = { pgbench: 0, mix: 0, probes: 0, errors: 0 };
  private running = true;
  private readonly tasks: Promise<void>[] = [];

  constructor(
    private readonly urlA: string,
    private readonly urlB: string,
    private readonly options: { pgbenchRate: number; mixRate: number; target: number },
  ) {}

  start(): void {
    this.tasks.push(this.pgbench(), this.mix(), this.probe(this.urlA, 'a'), this.probe(this.urlB, 'b'));
  }

  get total(): number {
    return this.counts.pgbench + this.counts.mix + this.counts.probes;
  }

  get done(): boolean {
    return this.total >= this.options.target;
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.tasks);
  }

  private async pgbench(): Promise<void> {
    while (this.running) {
      try {
        // Short runs, so that a crash costs little and the count stays current.
        const { stdout } = await run('pgbench', ['-n', '-c', '2', '-j', '1', '-T', '3', '-R', String(this.options.pgbenchRate), this.urlA], { timeout: 60_000 });
        this.counts.pgbench += processed(stdout);
      } catch (error) {
        this.counts.pgbench += processed((error as { stdout?: string }).stdout ?? '');
        this.counts.errors++;
        await sleep(200);
      }
    }
  }

  /**
   * A writer that outlives the faults: on any error it reopens its connection, asks where it stands
   * (`resume`: after a lost connection the last commit may or may not have happened), and goes on.
   */
  private async writeLoop(url: string, pauseMs: number, resume: (client: pg.Client) => Promise<void>, step: (client: pg.Client) => Promise<void>): Promise<void> {
    let client: pg.Client | null = null;
    while (this.running) {
      try {
        if (!client) {
          client = new pg.Client({ connectionString: url });
          client.on('error', () => undefined);
          await client.connect();
          await resume(client);
        }
        await step(client);
        await sleep(pauseMs);
      } catch {
        this.counts.errors++;
        await client?.end().catch(() => undefined);
        client = null;
        await sleep(200);
      }
    }
    await client?.end().catch(() => undefined);
  }

  private mix(): Promise<void> {
    let seq = 0;
    return this.writeLoop(
      this.urlB,
      1000 / this.options.mixRate,
      async (client) => {
        seq = Number((await client.query<{ s: string }>('SELECT coalesce(max(seq), 0) AS s FROM mix_log')).rows[0]!.s);
      },
      async (client) => {
        const next = seq + 1;
        const id = 1 + Math.floor(Math.random() * 500);
        const op = ['insert', 'update', 'delete'][next % 3]!;
        await client.query('BEGIN');
        if (op === 'insert') await client.query('INSERT INTO mix_items VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET v = mix_items.v + 1', [id, next, `row ${id}`]);
        if (op === 'update') await client.query('UPDATE mix_items SET v = v + 1, note = $2 WHERE id = $1', [id, `seq ${next}`]);
        if (op === 'delete') await client.query('DELETE FROM mix_items WHERE id = $1', [id]);
        await client.query('INSERT INTO mix_log VALUES ($1, $2)', [next, op]);
        await client.query('COMMIT');
        seq = next;
        this.counts.mix++;
      },
    );
  }

  /** One writer, one row per transaction, sequence numbers in commit order. */
  private probe(url: string, writer: string): Promise<void> {
    let seq = 0;
    return this.writeLoop(
      url,
      20,
      async (client) => {
        seq = Number((await client.query<{ s: string }>('SELECT coalesce(max(seq), 0) AS s FROM order_probe WHERE writer = $1', [writer])).rows[0]!.s);
      },
      async (client) => {
        await client.query('INSERT INTO order_probe VALUES ($1, $2)', [writer, seq + 1]);
        seq++;
        this.counts.probes++;
      },
    );
  }
}

function processed(stdout: string): number {
  const m = /number of transactions actually processed: (\d+)/.exec(stdout);
  return m ? Number(m[1]) : 0;
}
