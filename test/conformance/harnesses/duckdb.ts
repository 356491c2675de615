/**
 * DuckDB under the sink conformance suite. DuckDB is embedded: the sink is the process that holds the file, so
 * a crash of the sink is a crash of that process. Each `sink()` therefore runs the real DuckDbSink in a child
 * process of its own (this file, forked), driven over IPC; `interrupt()` SIGKILLs it wherever it is — in the
 * middle of an Appender, a DELETE, a COMMIT or a checkpoint — and the next `sink()` opens the file as a
 * restarted site would (DuckDB replays its write-ahead log).
 *
 * `rows()` reads the file the way `sitesync query` does (through the child's query socket while it runs), and
 * renders each value back to its kind's canonical text from DuckDB's own printing (casts to VARCHAR, hex,
 * interval parts), not with the sink's converters, so that a value stored wrong cannot be read back right.
 * Values the sink kept in `_sitesync_special` are put back in their column. A table with a key reads its
 * current-state rows (not those flagged deleted); a table without one has only a history, which is replayed
 * (inserts add a row, updates replace the row equal to `_sitesync_before`, deletes remove one equal row).
 *
 * The sink is told the site replicates the suite's tables (sites.<site>.tables): a DuckDB site creates the
 * tables its sources describe, so "a table the target lacks" is one it does not replicate.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ApplyErrorKind, NewParkedRecord, ParkedRecord, Sink, SourceSession } from '../../../src/apply/sink.ts';
import { SitesyncError, type ErrorCode } from '../../../src/errors.ts';
import type { Position, Transaction, TransactionPart } from '../../../src/events/transaction.ts';
import { formatFloat32, formatFloat64, formatInterval } from '../../../src/events/value-parser.ts';
import { createLogger } from '../../../src/observability/logger.ts';
import { DuckDbSink } from '../../../connectors/duckdb/duckdb-sink.ts';
import { queryDuckDb } from '../../../connectors/duckdb/duckdb-query-server.ts';
import { isReservedDuckDbSchema } from '../../../connectors/duckdb/duckdb-tables.ts';
import type { SinkFixture, SinkHarness } from '../harness.ts';
import { KIND_SAMPLES, sortRows, type TableSpec } from '../tables.ts';

const CHILD = 'SITESYNC_DUCKDB_SINK_CHILD';

/** Every kind of the suite's samples: DuckDB has a type for each. */
export const DUCKDB_KINDS = Object.keys(KIND_SAMPLES);

// ─── the child: a sink process ───────────────────────────────────────────────────────────────────────────

export interface ChildConfig {
  readonly site: string;
  readonly url: string;
  readonly sourceKind: string;
  /** sites.<site>.tables; null: every table. */
  readonly tables: readonly string[] | null;
}

type Request = { readonly id: number; readonly op: string; readonly session?: number; readonly args: readonly unknown[] };
type Reply = { readonly id: number; readonly ok: true; readonly value: unknown } | { readonly id: number; readonly ok: false; readonly error: { message: string; code?: string; kind: ApplyErrorKind } };

if (process.env[CHILD]) runChild(JSON.parse(process.env[CHILD]) as ChildConfig);

function runChild(config: ChildConfig): void {
  const sink = new DuckDbSink({
    site: config.site,
    url: config.url,
    conflictPolicy: () => ({ policy: 'last-writer-wins', priority: [] }),
    sourceKindOf: () => config.sourceKind,
    tables: config.tables,
    logger: createLogger('silent'),
  });
  const sessions = new Map<number, SourceSession>();
  let next = 0;
  const session = (id: number | undefined): SourceSession => {
    const s = id === undefined ? undefined : sessions.get(id);
    if (!s) throw new Error(`no session ${id}`);
    return s;
  };
  const handle = async (r: Request): Promise<unknown> => {
    const a = r.args;
    switch (r.op) {
      case 'openSession': {
        const id = ++next;
        sessions.set(id, await sink.openSession(a[0] as string));
        return id;
      }
      case 'progress':
        return session(r.session).progress();
      case 'apply':
        return session(r.session).apply(a[0] as Transaction[], a[1] as { durable: boolean } | undefined);
      case 'applyPart':
        return session(r.session).applyPart(a[0] as Transaction, a[1] as TransactionPart);
      case 'skip':
        return session(r.session).skip(a[0] as Position, a[1] as bigint, a[2] as NewParkedRecord | undefined);
      case 'applyRetried':
        return session(r.session).applyRetried(a[0] as Transaction[], a[1] as string);
      case 'closeSession': {
        await sessions.get(r.session!)?.close();
        sessions.delete(r.session!);
        return undefined;
      }
      case 'recordParked':
        return sink.recordParked(a[0] as NewParkedRecord);
      case 'findParked':
        return sink.findParked(a[0] as string);
      case 'finishParked':
        return sink.finishParked(a[0] as string);
      case 'close':
        await sink.close();
        return undefined;
      default:
        throw new Error(`unknown request ${r.op}`);
    }
  };
  process.on('message', (r: Request) => {
    handle(r).then(
      (value) => process.send!({ id: r.id, ok: true, value } satisfies Reply),
      (error: unknown) => {
        const e = error as { message?: string; code?: string };
        process.send!({ id: r.id, ok: false, error: { message: String(e?.message ?? error), code: typeof e?.code === 'string' ? e.code : undefined, kind: sink.classify(error) } } satisfies Reply);
      },
    );
  });
  process.on('disconnect', () => process.exit(0));
}

// ─── the parent: a Sink that is a process ────────────────────────────────────────────────────────────────

/** An error as the sink's process graded it. */
type GradedError = Error & { kind?: ApplyErrorKind };

/** A DuckDbSink running in a process of its own (this file, forked), driven over IPC. */
export class SinkProcess implements Sink {
  readonly site: string;
  private readonly child: ChildProcess;
  private readonly pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
  private next = 0;
  readonly exited: Promise<void>;

  constructor(config: ChildConfig) {
    this.site = config.site;
    this.child = fork(fileURLToPath(import.meta.url), [], {
      execArgv: ['--import', 'tsx'],
      serialization: 'advanced',
      env: { ...process.env, [CHILD]: JSON.stringify(config) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.child.on('message', (reply: Reply) => {
      const waiting = this.pending.get(reply.id);
      if (!waiting) return;
      this.pending.delete(reply.id);
      if (reply.ok) waiting.resolve(reply.value);
      else {
        const { message, code, kind } = reply.error;
        const error: GradedError = code && code.startsWith('SITESYNC_ERR_') ? new SitesyncError(code as ErrorCode, message) : new Error(message);
        error.kind = kind;
        waiting.reject(error);
      }
    });
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
    void this.exited.then(() => {
      for (const [, waiting] of this.pending) waiting.reject(Object.assign(new Error(`the DuckDB sink's process ended (${this.child.signalCode ?? this.child.exitCode})`), { kind: 'transient' as const }));
      this.pending.clear();
    });
  }

  call(op: string, args: readonly unknown[], session?: number): Promise<unknown> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) {
      return Promise.reject(Object.assign(new Error("the DuckDB sink's process is gone"), { kind: 'transient' as const }));
    }
    const id = ++this.next;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.send({ id, op, session, args } satisfies Request);
    });
  }

  async kill(): Promise<void> {
    this.child.kill('SIGKILL');
    await this.exited;
  }

  classify(error: unknown): ApplyErrorKind {
    return (error as GradedError).kind ?? 'transient';
  }

  isReservedSchema(schema: string): boolean {
    return isReservedDuckDbSchema(schema);
  }

  recordParked(record: NewParkedRecord): Promise<void> {
    return this.call('recordParked', [record]) as Promise<void>;
  }

  findParked(id: string): Promise<ParkedRecord | null> {
    return this.call('findParked', [id]) as Promise<ParkedRecord | null>;
  }

  finishParked(id: string): Promise<void> {
    return this.call('finishParked', [id]) as Promise<void>;
  }

  async openSession(source: string): Promise<SourceSession> {
    const id = (await this.call('openSession', [source])) as number;
    const call = (op: string, ...args: unknown[]): Promise<unknown> => this.call(op, args, id);
    return {
      progress: () => call('progress') as Promise<Position | null>,
      apply: (transactions, options) => call('apply', transactions, options) as Promise<void>,
      applyPart: (transaction, part) => call('applyPart', transaction, part) as Promise<void>,
      skip: (position, micros, parked) => call('skip', position, micros, parked) as Promise<void>,
      applyRetried: (transactions, parkedId) => call('applyRetried', transactions, parkedId) as Promise<boolean>,
      close: async () => {
        await call('closeSession').catch(() => undefined);
      },
    };
  }

  async close(): Promise<void> {
    await this.call('close', []).catch(() => undefined);
    this.child.disconnect?.();
    await this.exited;
  }
}

// ─── reading what the sink stored ────────────────────────────────────────────────────────────────────────

const q = (name: string): string => `"${name.replace(/"/g, '""')}"`;

/** A column as DuckDB prints it, in a form `canonical` turns into the kind's canonical text. */
function printed(kind: string, column: string): string {
  const c = q(column);
  switch (kind) {
    case 'boolean':
      return `CASE WHEN ${c} THEN 't' WHEN NOT ${c} THEN 'f' END`;
    case 'bytes':
      return `'\\x' || lower(hex(${c}))`;
    case 'timestamptz':
      return `CAST(timezone('UTC', ${c}) AS VARCHAR)`;
    case 'interval':
      return `CAST(datepart('year', ${c}) * 12 + datepart('month', ${c}) AS VARCHAR) || ',' || CAST(datepart('day', ${c}) AS VARCHAR) || ',' ||
        CAST(CAST(datepart('hour', ${c}) AS HUGEINT) * 3600000000 + CAST(datepart('minute', ${c}) AS HUGEINT) * 60000000 + datepart('microseconds', ${c}) AS VARCHAR)`;
    case 'array<int32>':
      return `CASE WHEN ${c} IS NOT NULL THEN '{' || array_to_string(list_transform(${c}, x -> coalesce(CAST(x AS VARCHAR), 'NULL')), ',') || '}' END`;
    default:
      return `CAST(${c} AS VARCHAR)`;
  }
}

/** DuckDB's printing of a value as its kind's canonical text. */
function canonical(kind: string, text: string): string {
  const bc = (t: string): string => (t.includes(' (BC)') ? `${t.replace(' (BC)', '')} BC` : t);
  const float = (t: string): number => (t === 'nan' ? NaN : t === 'inf' ? Infinity : t === '-inf' ? -Infinity : Number(t));
  switch (kind) {
    case 'float32':
      return formatFloat32(Math.fround(float(text)));
    case 'float64':
      return formatFloat64(float(text));
    case 'date':
    case 'timestamp':
      return bc(text);
    case 'timestamptz': {
      if (text === 'infinity' || text === '-infinity') return text;
      const t = bc(text);
      return t.endsWith(' BC') ? `${t.slice(0, -3)}+00 BC` : `${t}+00`;
    }
    case 'interval': {
      const [months, days, micros] = text.split(',');
      return formatInterval({ months: Number(months), days: Number(days), micros: BigInt(micros!) });
    }
    default:
      return text;
  }
}

async function storedRows(url: string, schema: string, spec: TableSpec): Promise<(string | null)[][]> {
  const keyed = spec.columns.some((c) => c.key);
  const table = keyed ? spec.table : `${spec.table}__history`;
  const query = (sql: string) => queryDuckDb(url, sql, { maxRows: 1_000_000 });
  const there = await query(`SELECT count(*) FROM duckdb_tables() WHERE schema_name = '${schema}' AND table_name = '${table.replace(/'/g, "''")}'`);
  if (Number(there.rows[0]?.[0]) === 0) return [];
  const columns = spec.columns.map((c) => printed(c.kind, c.name)).join(', ');
  const read = (row: readonly unknown[]): (string | null)[] => {
    const special = typeof row[spec.columns.length] === 'string' ? (JSON.parse(row[spec.columns.length] as string) as Record<string, string>) : {};
    return spec.columns.map((c, i) => (row[i] === null ? (special[c.name] ?? null) : canonical(c.kind, row[i] as string)));
  };
  if (keyed) {
    const result = await query(`SELECT ${columns}, "_sitesync_special" FROM ${q(schema)}.${q(table)} WHERE NOT "_sitesync_deleted"`);
    return sortRows(result.rows.map(read));
  }
  const history = await query(
    `SELECT ${columns}, "_sitesync_special", "_sitesync_op", "_sitesync_before" FROM ${q(schema)}.${q(table)} ORDER BY length("_sitesync_position"), "_sitesync_position", "_sitesync_seq"`,
  );
  const n = spec.columns.length;
  let rows: (string | null)[][] = [];
  const removeOne = (row: readonly (string | null)[]): void => {
    const at = rows.findIndex((r) => r.every((v, i) => v === row[i]));
    if (at !== -1) rows.splice(at, 1);
  };
  for (const entry of history.rows) {
    const values = read(entry);
    const op = entry[n + 1];
    if (op === 'insert' || op === 'read') rows.push(values);
    else if (op === 'delete') removeOne(values);
    else if (op === 'truncate') rows = [];
    else if (op === 'update') {
      const before = JSON.parse(entry[n + 2] as string) as Record<string, string | null>;
      removeOne(spec.columns.map((c) => before[c.name] ?? null));
      rows.push(values);
    }
  }
  return sortRows(rows);
}

/** The DuckDB sink, told its sources are of `sourceKind`; deletes soft or hard as its URL says. */
export function duckdbSinkHarness(sourceKind: string, positionDigits: number, deletes: 'soft' | 'hard'): SinkHarness {
  return {
    name: `duckdb, ${deletes} deletes (from a ${sourceKind} source)`,
    kinds: DUCKDB_KINDS,
    sourceKind,
    position: (n) => n.toString(16).toUpperCase().padStart(positionDigits, '0'),
    async open(tables) {
      const dir = mkdtempSync(join(tmpdir(), 'sitesync-duckdb-'));
      const schema = `conf_${randomBytes(3).toString('hex')}`;
      const url = `duckdb://${join(dir, 'site.duckdb')}?deletes=${deletes}`;
      const config: ChildConfig = { site: `conf_${randomBytes(3).toString('hex')}`, url, sourceKind, tables: tables.map((t) => `${schema}.${t.table}`) };
      const processes = new Set<SinkProcess>();
      const fixture: SinkFixture = {
        schema,
        sink: () => {
          const sink = new SinkProcess(config);
          processes.add(sink);
          void sink.exited.then(() => processes.delete(sink));
          return sink;
        },
        rows: (spec) => storedRows(url, schema, spec),
        async interrupt() {
          await Promise.all([...processes].map((p) => p.kill()));
        },
        async cleanup() {
          await Promise.all([...processes].map((p) => p.kill()));
          rmSync(dir, { recursive: true, force: true });
        },
      };
      return fixture;
    },
  };
}
