/**
 * The DuckDB sink: a receive-only site whose database is a DuckDB file, holding per replicated table an
 * append-only history and a current-state table (duckdb-apply.ts says how a run is written), exactly once.
 *
 * Exactly once: `apply(transactions)` is ONE DuckDB transaction — the source's progress is read in it, the
 * transactions at or below it are left out, the rest written, and the progress row moved to the last one's
 * position, then COMMIT. DuckDB commits through its write-ahead log, so after a kill at any moment the file
 * holds every change of a run with its progress, or none of it: the source sends it again and it is applied
 * once.
 *
 * Group commit: DuckDB's cost is per statement and per commit, not per row (a run of one small transaction
 * costs as much as a run of twenty), so a non-durable apply — the runner says so while more messages wait,
 * and acknowledges them only after a durable one — is kept in memory and written with the next durable apply
 * (or any other call, or once BUFFERED_CHANGES_MAX changes wait), all in one DuckDB transaction. If such a
 * combined run fails on its data, the failing transaction cannot be told apart: the failure is reported as
 * transient (the runner reconnects and the broker sends the unacknowledged messages again) and the source is
 * written through, one apply at a time, until past the failed run, so that the runner parks exactly the
 * transaction the store refuses.
 *
 * One process per file (DuckDB's lock): the sink holds one DuckDBInstance per file (duckdb-connection.ts),
 * shared by its sessions (a connection each; their writes serialised), its parked records, the query server
 * on `<file>.sock` (duckdb-query-server.ts: how `sitesync query` and `sitesync status` read while it runs)
 * and, when the URL asks for it, the periodic Parquet export (duckdb-export.ts).
 *
 * Large transactions: each part but the last is kept in sitesync.spilled_parts, encoded as the message it
 * came in, in a commit of its own, so the runner acknowledges it at once and a crash loses none; the last
 * part opens one transaction, writes the kept parts one at a time (each folded over what the earlier ones
 * wrote, numbered after them), then its own changes, forgets the parts, moves the progress and commits.
 * Part 0 again starts over; a part whose predecessor is not kept is a gap.
 *
 * Conflicts are decided by the fold as a PostgreSQL site decides them; a change that lost one is kept in the
 * history with `_sitesync_applied = false`, and onConflict hears of each once its transaction committed.
 */
import type { ApplyErrorKind, NewParkedRecord, ParkedRecord, Sink, SourceSession } from '../../src/apply/sink.ts';
import { DEFAULT_POLICY, type ConflictPolicy } from '../../src/apply/conflict-policy.ts';
import type { ResolvedConflict } from '../../src/connector.ts';
import { CURRENT_SCHEMA_VERSION, decodeMessage, encodeMessage } from '../../src/events/avro-codec.ts';
import { comparePositions } from '../../src/events/position.ts';
import type { Position, Transaction, TransactionPart } from '../../src/events/transaction.ts';
import { SitesyncError } from '../../src/errors.ts';
import type { Logger } from '../../src/observability/logger.ts';
import { writeRun } from './duckdb-apply.ts';
import { parseDuckDbUrl, type DuckDbSiteConfig } from './duckdb-config.ts';
import { acquireDuckDbFile, type DuckDbConnection, type DuckDbFile } from './duckdb-connection.ts';
import { classifyDuckDbError, describeApplyError, describeFileError } from './duckdb-errors.ts';
import { startParquetExport } from './duckdb-export.ts';
import { socketPathOf, startQueryServer } from './duckdb-query-server.ts';
import {
  ADVANCE_PROGRESS,
  BOOKKEEPING_TABLES,
  FIND_PARKED,
  FINISH_PARKED,
  FINISH_RETRIED,
  FORGET_PARTS,
  HAS_PART,
  INSERT_PARKED,
  INSERT_PART,
  parkedValues,
  PROGRESS_OF,
  READ_PART,
  SPILLED_BYTES,
} from './duckdb-statements.ts';
import { DuckDbTables, isReservedDuckDbSchema } from './duckdb-tables.ts';

export interface DuckDbSinkOptions {
  readonly site: string;
  /** `duckdb:///path/site.duckdb?deletes=soft|hard&exportDir=…&exportSeconds=…` (duckdb-config.ts). */
  readonly url: string;
  readonly logger: Logger;
  /** The conflict policy of a table (default last-writer-wins). */
  readonly conflictPolicy?: (schema: string, table: string) => ConflictPolicy;
  /** Told of every conflict resolved (after the commit that recorded it). */
  readonly onConflict?: (conflict: ResolvedConflict) => void;
  /**
   * `schema.table` names the site replicates (sites.<site>.tables); null or absent: every table. A DuckDB site
   * creates the tables its sources describe, so it creates none that is not listed.
   */
  readonly tables?: readonly string[] | null;
  /** The database kind of a source site, recorded with its progress and its kept parts. */
  readonly sourceKindOf?: (source: string) => string | undefined;
}

/** Most bytes of one transaction's parts kept before its last (as the other sinks): a source cannot fill the disk. */
export const MAX_SPILLED_BYTES = 64 * 1024 ** 3;

/** The tables cache of each open file (one per file: whoever writes it keeps it true). */
const tablesOf = new WeakMap<DuckDbFile, DuckDbTables>();

function tablesFor(file: DuckDbFile): DuckDbTables {
  let tables = tablesOf.get(file);
  if (!tables) tablesOf.set(file, (tables = new DuckDbTables(file.json)));
  return tables;
}

export class DuckDbSink implements Sink {
  readonly site: string;
  readonly config: DuckDbSiteConfig;
  private opening: Promise<{ file: DuckDbFile; connection: DuckDbConnection }> | null = null;
  private readonly sessions = new Set<DuckDbSourceSession>();
  private closed = false;

  constructor(private readonly options: DuckDbSinkOptions) {
    this.site = options.site;
    this.config = parseDuckDbUrl(options.url);
  }

  classify(error: unknown): ApplyErrorKind {
    return classifyDuckDbError(error);
  }

  isReservedSchema(schema: string): boolean {
    return isReservedDuckDbSchema(schema);
  }

  /**
   * Opens the file (shared in this process), creates sitesync's tables, and starts the query server and the
   * export; a failure is tried again by the next call.
   */
  private ready(): Promise<{ file: DuckDbFile; connection: DuckDbConnection }> {
    if (this.closed) return Promise.reject(new SitesyncError('SITESYNC_ERR_DATABASE_UNREACHABLE', `the DuckDB sink of site ${this.site} is closed; sitesync opens a new one`));
    this.opening ??= (async () => {
      const file = await acquireDuckDbFile(this.config.path);
      try {
        const connection = await file.connect();
        await file.exclusive(async () => {
          for (const statement of BOOKKEEPING_TABLES) await connection.run(statement);
        });
        const logger = this.options.logger;
        await file.startService('query', () => startQueryServer(file, socketPathOf(file.path), logger));
        const exported = this.config.export;
        if (exported) await file.startService('export', async () => startParquetExport(file, exported, logger));
        logger.info({ file: file.path, socket: socketPathOf(file.path), deletes: this.config.deletes, exportDir: exported?.dir }, 'DuckDB file open');
        return { file, connection };
      } catch (error) {
        await file.release();
        throw error;
      }
    })().catch((error: unknown) => {
      this.opening = null;
      throw describeFileError(error, this.site, this.config.path);
    });
    return this.opening;
  }

  async recordParked(record: NewParkedRecord): Promise<void> {
    const { file, connection } = await this.ready();
    await file.exclusive(() => connection.run(INSERT_PARKED, parkedValues(record)));
  }

  async findParked(id: string): Promise<ParkedRecord | null> {
    const { file, connection } = await this.ready();
    // The sink's connection serves one statement at a time: its reads take their turn with its writes.
    const row = (await file.exclusive(() => connection.runAndReadAll(FIND_PARKED, [id.toLowerCase()]))).getRows()[0];
    if (!row) return null;
    const [rid, kind, source, transactionId, bodySha256, userId, route, reason, done] = row as [string, string, string | null, string | null, string, string | null, string, string, boolean];
    return { id: rid, kind: kind === 'refused' ? 'refused' : 'skipped', source, transactionId, bodySha256, userId, route, reason, done: done === true };
  }

  async finishParked(id: string): Promise<void> {
    const { file, connection } = await this.ready();
    await file.exclusive(() => connection.run(FINISH_PARKED, [id.toLowerCase()]));
  }

  async openSession(source: string): Promise<SourceSession> {
    const { file } = await this.ready();
    const session = new DuckDbSourceSession(this.options, this.config, file, source, () => this.sessions.delete(session));
    await session.connect();
    this.sessions.add(session);
    return session;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.sessions].map((s) => s.close()));
    const opened = await this.opening?.catch(() => null);
    this.opening = null;
    if (!opened) return;
    // After any parked-record statement still running on it (they take their turn with the writes).
    await opened.file.exclusive(async () => opened.connection.closeSync());
    await opened.file.release();
  }
}

/** Thrown inside a transaction to roll it back without an error (a retry that was handled already). */
class NothingToDo extends Error {}

/** Changes a session keeps in memory, unwritten, before it writes them even without a durable apply. */
const BUFFERED_CHANGES_MAX = 50_000;

/** Changes in a run of transactions. */
function changesOf(transactions: readonly Transaction[]): number {
  return transactions.reduce((n, tx) => n + tx.changes.length, 0);
}

/** Sources written through (no group commit) up to this position: a combined run of theirs failed there. */
const writeThroughUntil = new Map<string, Position>();

class DuckDbSourceSession implements SourceSession {
  private connection: DuckDbConnection | null = null;
  private readonly logger: Logger;
  private readonly sourceKind: string;
  private readonly tables: DuckDbTables;
  private closed = false;
  /** Non-durable applies not yet written (group commit): written with the next durable one, in one transaction. */
  private buffered: Transaction[] = [];
  private bufferedChanges = 0;
  /** The operation under way, awaited by close(). */
  private busy: Promise<unknown> = Promise.resolve();
  /** Who this session writes for, in writeThroughUntil: the file and the source. */
  private get key(): string {
    return `${this.options.url}\u0000${this.source}`;
  }

  constructor(
    private readonly options: DuckDbSinkOptions,
    private readonly config: DuckDbSiteConfig,
    private readonly file: DuckDbFile,
    private readonly source: string,
    private readonly onClose: () => void,
  ) {
    this.logger = options.logger.child({ source });
    this.sourceKind = options.sourceKindOf?.(source) ?? 'unknown';
    this.tables = tablesFor(file);
  }

  async connect(): Promise<void> {
    this.connection = await this.file.connect();
  }

  private get db(): DuckDbConnection {
    if (!this.connection || this.closed) throw new SitesyncError('SITESYNC_ERR_DATABASE_UNREACHABLE', `the apply session of site ${this.source} at DuckDB site ${this.options.site} is closed; sitesync opens a new one`);
    return this.connection;
  }

  async progress(): Promise<Position | null> {
    await this.flush();
    return this.run(() => this.readProgress(this.db));
  }

  async apply(transactions: readonly Transaction[], options: { readonly durable: boolean } = { durable: true }): Promise<void> {
    if (transactions.length === 0 && (this.buffered.length === 0 || !options.durable)) return;
    const last = transactions[transactions.length - 1] ?? this.buffered[this.buffered.length - 1]!;
    const through = writeThroughUntil.get(this.key);
    if (through !== undefined && comparePositions(last.position, through) > 0 && this.buffered.length === 0) writeThroughUntil.delete(this.key);
    const grouping = !options.durable && !writeThroughUntil.has(this.key);
    if (grouping && this.bufferedChanges + changesOf(transactions) <= BUFFERED_CHANGES_MAX) {
      this.buffered.push(...transactions);
      this.bufferedChanges += changesOf(transactions);
      return;
    }
    const run = [...this.buffered, ...transactions];
    const combined = this.buffered.length > 0;
    this.buffered = [];
    this.bufferedChanges = 0;
    try {
      await this.writeApply(run);
    } catch (error) {
      if (!combined || classifyDuckDbError(error) !== 'data') throw error;
      // Which of the combined transactions the store refused is not known: the runner must find it one
      // message at a time, so this source is written through until past the run, and the run sent again.
      writeThroughUntil.set(this.key, run[run.length - 1]!.position);
      throw new SitesyncError(
        'SITESYNC_ERR_DATABASE_UNREACHABLE',
        `DuckDB site ${this.options.site} refused one of ${run.length} transactions from ${this.source} written together (${(error as Error).message}); they are applied again one message at a time to set aside the one refused`,
      );
    }
  }

  /** Writes a whole run in one transaction: the transactions above the progress, and the progress after them. */
  private async writeApply(transactions: readonly Transaction[]): Promise<void> {
    await this.run(() =>
      this.write(async (db) => {
        const progress = await this.readProgress(db);
        const fresh = transactions.filter((tx) => progress === null || comparePositions(tx.position, progress) > 0);
        if (fresh.length < transactions.length) this.logger.debug({ skipped: transactions.length - fresh.length }, 'transactions at or below the progress left out');
        if (fresh.length === 0) throw new NothingToDo();
        const conflicts = await writeRun(this.context(db), fresh);
        const last = fresh[fresh.length - 1]!;
        await this.advance(db, last.position, last.commitTimeMicros);
        return { conflicts };
      }),
    );
  }

  /** What group commit holds is written before anything else the session is asked. */
  private async flush(): Promise<void> {
    if (this.buffered.length === 0) return;
    await this.apply([], { durable: true });
  }

  async applyPart(transaction: Transaction, part: TransactionPart): Promise<void> {
    await this.flush();
    await this.run(async () => {
      const db = this.db;
      const progress = await this.readProgress(db);
      if (progress !== null && comparePositions(transaction.position, progress) <= 0) {
        // A copy of a transaction applied already (a redelivery): what an unfinished copy kept goes.
        if (part.last) await this.file.exclusive(() => db.run(FORGET_PARTS, [this.source]));
        return;
      }
      if (part.index > 0) await this.checkPart(db, transaction, part.index - 1);
      if (!part.last) {
        await this.keepPart(db, transaction, part);
        return;
      }
      await this.write(async (db) => {
        let offset = 0;
        const conflicts: ResolvedConflict[] = [];
        for (let index = 0; index < part.index; index++) {
          const earlier = await this.readPart(db, transaction, index);
          conflicts.push(...(await writeRun(this.context(db), [earlier], offset)));
          offset += earlier.changes.length;
        }
        conflicts.push(...(await writeRun(this.context(db), [transaction], offset)));
        await db.run(FORGET_PARTS, [this.source]);
        await this.advance(db, transaction.position, transaction.commitTimeMicros);
        return { conflicts };
      });
    });
  }

  /** Keeps a part before the last, in a commit of its own (part 0 drops what an earlier copy kept). */
  private async keepPart(db: DuckDbConnection, transaction: Transaction, part: TransactionPart): Promise<void> {
    const body = encodeMessage({ site: this.source, sourceKind: this.sourceKind, previous: null, transactions: [transaction], part });
    await this.file.exclusive(async () => {
      await db.run('BEGIN TRANSACTION');
      try {
        if (part.index === 0) await db.run(FORGET_PARTS, [this.source]);
        const kept = Number((await db.runAndReadAll(SPILLED_BYTES, [this.source])).getRows()[0]?.[0] ?? 0);
        if (kept + body.length > MAX_SPILLED_BYTES) {
          throw new SitesyncError(
            'SITESYNC_ERR_APPLY_DATA',
            `transaction ${transaction.id} has sent ${kept + body.length} bytes in ${part.index + 1} parts without its last, more than a target keeps of one transaction (${MAX_SPILLED_BYTES}); see why site ${this.source} sends it, then skip it by replaying from after it`,
          );
        }
        await db.run(INSERT_PART, [this.source, transaction.id, part.index, CURRENT_SCHEMA_VERSION, this.file.api.blobValue(new Uint8Array(body))]);
        await db.run('COMMIT');
      } catch (error) {
        await db.run('ROLLBACK').catch(() => undefined);
        throw error;
      }
    });
  }

  private async checkPart(db: DuckDbConnection, transaction: Transaction, index: number): Promise<void> {
    const count = Number((await db.runAndReadAll(HAS_PART, [this.source, transaction.id, index])).getRows()[0]?.[0] ?? 0);
    if (count === 0) {
      throw new SitesyncError(
        'SITESYNC_ERR_GAP',
        `part ${index + 1} of transaction ${transaction.id} arrived at DuckDB site ${this.options.site}, but part ${index} never did: a message is missing; replay the transaction from the archive to resume`,
      );
    }
  }

  private async readPart(db: DuckDbConnection, transaction: Transaction, index: number): Promise<Transaction> {
    const row = (await db.runAndReadAll(READ_PART, [this.source, transaction.id, index])).getRows()[0];
    if (!row) throw new SitesyncError('SITESYNC_ERR_GAP', `part ${index} of transaction ${transaction.id} is missing from sitesync.spilled_parts; replay the transaction from the archive to resume`);
    const [body, version] = row as [{ bytes: Uint8Array }, number];
    const earlier = decodeMessage(Buffer.from(body.bytes), Number(version)).transactions[0];
    if (!earlier || earlier.id !== transaction.id) throw new SitesyncError('SITESYNC_ERR_GAP', `part ${index} of transaction ${transaction.id} kept at DuckDB site ${this.options.site} is not of it; replay the transaction from the archive to resume`);
    return earlier;
  }

  async skip(position: Position, commitTimeMicros: bigint, parked?: NewParkedRecord): Promise<void> {
    await this.flush();
    await this.run(() =>
      this.write(async (db) => {
        // At or below the progress, the progress stays; a parked record is still written.
        await this.advance(db, position, commitTimeMicros);
        if (parked) await db.run(INSERT_PARKED, parkedValues(parked));
        return { conflicts: [] };
      }),
    );
  }

  async applyRetried(transactions: readonly Transaction[], parkedId: string): Promise<boolean> {
    await this.flush();
    const tx = transactions[0];
    if (transactions.length !== 1 || !tx) throw new SitesyncError('SITESYNC_ERR_MESSAGE_INVALID', `a retried parked message holds ${transactions.length} transactions; sitesync parks them one by one`);
    let applied = false;
    await this.run(() =>
      this.write(async (db) => {
        const done = await db.run(FINISH_RETRIED, [tx.id, parkedId.toLowerCase()]);
        if (done.rowsChanged === 0) throw new NothingToDo(); // retried already: nothing is applied again
        const conflicts = await writeRun(this.context(db), [tx]);
        await this.advance(db, tx.position, tx.commitTimeMicros);
        applied = true;
        return { conflicts };
      }),
    );
    return applied;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // What group commit held was never acknowledged: the broker sends it again to the next session.
    this.buffered = [];
    this.bufferedChanges = 0;
    this.onClose();
    const connection = this.connection;
    this.connection = null;
    if (!connection) return;
    // A statement under way is interrupted (its transaction rolls back), then the connection goes.
    connection.interrupt();
    await this.busy.catch(() => undefined);
    connection.closeSync();
  }

  // ─── helpers ───────────────────────────────────────────────────────────────────────────────────────────

  private context(db: DuckDbConnection) {
    return {
      connection: db,
      file: this.file,
      tables: this.tables,
      deletes: this.config.deletes,
      policy: this.options.conflictPolicy ?? (() => DEFAULT_POLICY),
      site: this.options.site,
      source: this.source,
      replicated: this.options.tables ? new Set(this.options.tables) : null,
    };
  }

  private async readProgress(db: DuckDbConnection): Promise<Position | null> {
    const row = (await db.runAndReadAll(PROGRESS_OF, [this.source])).getRows()[0];
    return row ? String(row[0]) : null;
  }

  /** Moves the progress forward to `position` (never back), in the open transaction. */
  private async advance(db: DuckDbConnection, position: Position, commitTimeMicros: bigint): Promise<void> {
    await db.run(ADVANCE_PROGRESS, [this.source, this.sourceKind, position, commitTimeMicros]);
  }

  /**
   * One write transaction, serialised with every other write to the file: BEGIN, `work`, COMMIT; conflicts are
   * reported once it committed. A NothingToDo rolls it back quietly; any other failure rolls it back and
   * forgets what the tables cache believed of it.
   */
  private async write(work: (db: DuckDbConnection) => Promise<{ conflicts: readonly ResolvedConflict[] }>): Promise<void> {
    const db = this.db;
    const result = await this.file.exclusive(async () => {
      await db.run('BEGIN TRANSACTION');
      try {
        const done = await work(db);
        await db.run('COMMIT');
        this.tables.commit();
        return done;
      } catch (error) {
        this.tables.rollback();
        await db.run('ROLLBACK').catch(() => undefined);
        if (error instanceof NothingToDo) return null;
        throw error;
      }
    });
    if (result === null) return;
    for (const conflict of result.conflicts) this.options.onConflict?.(conflict);
  }

  /** Runs one operation of the session: remembered for close(), its failure said in one line. */
  private async run<T>(operation: () => Promise<T>): Promise<T> {
    const running = operation().catch((error: unknown) => {
      const described = describeApplyError(error, { source: this.source, site: this.options.site });
      if (classifyDuckDbError(described) !== 'data') this.tables.forget();
      throw described;
    });
    this.busy = running.catch(() => undefined);
    return running;
  }
}
