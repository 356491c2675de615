/**
 * The MariaDB sink. One dedicated connection per source site; every transaction it applies is one MariaDB
 * transaction whose first statement (and first write) is the upsert of that source's row in the
 * bookkeeping database's apply_progress (bookkeeping.ts), then the changes in order, then COMMIT: the data
 * and the progress are one atomic commit, and the progress row is the loop marker by which this site's
 * MariaDB capture drops relayed writes (MariaDB records no origin of a transaction) and learns the causal
 * context. The upsert only ever moves the row forward, and says when it did not (0 affected rows): a
 * transaction at or below the progress is never applied again, even by two sessions racing.
 *
 * Sessions run with sql_mode STRICT_ALL_TABLES, NO_ZERO_DATE, NO_ZERO_IN_DATE, ERROR_FOR_DIVISION_BY_ZERO,
 * NO_AUTO_VALUE_ON_ZERO (an applied 0 stays 0 in an AUTO_INCREMENT column), time_zone '+00:00' (TIMESTAMP
 * columns read and write UTC), autocommit off (COMMIT ends each transaction; no BEGIN round trip), a
 * 60-second lock wait and a 10-minute statement limit (graded transient, retried). What strict mode still
 * lets MariaDB change silently (decimal rounding, fractional seconds, trailing spaces) is refused before
 * it is sent (mariadb-bind.ts).
 *
 * Durability: `apply(…, { durable: false })` is applied exactly as a durable call. MariaDB has no
 * per-transaction asynchronous commit (innodb_flush_log_at_trx_commit is server-wide), so every commit is
 * as durable as the server is configured (with 1, the default, on disk when COMMIT returns).
 *
 * Large transactions: each part but the last is kept in the bookkeeping database's spilled_parts, keyed by
 * source, transaction id and part index, in a commit of its own, so the runner acknowledges it at once and a
 * crash loses nothing; the last part opens the target transaction with the progress upsert, reads the parts
 * back one at a time and applies them, then its own changes, forgets the parts and commits. Part 0 again
 * starts over; a part whose predecessor is not kept is a gap (SITESYNC_ERR_GAP).
 *
 * Conflicts, decided as the PostgreSQL sink decides them (src/apply/conflict-policy.ts: isConcurrent, decide)
 * and recorded in the bookkeeping database's `conflicts`, with the columns of PostgreSQL's sitesync.conflicts,
 * in the same transaction; onConflict hears of each once that transaction has committed. MariaDB keeps no
 * per-row commit origin or time, so who last wrote a row comes from `row_writers` (row-writers.ts): this
 * sink records there, in the same transaction, the source site and commit time of every row it writes, and
 * this site's capture records there the site's own writes, after reading them.
 * - update, delete: the row is read and locked first (SELECT … FOR UPDATE). Not there: 'update_missing' /
 *   'delete_missing', nothing changes. There: the binlog's end is read, and the sink waits (at most
 *   captureWaitMs, 30 s; past it a transient error, "capture of site X is behind; conflict detection waits
 *   for it") until this site's capture — when it runs in this process, sharing the RowWriterClock — has
 *   recorded every local write up to that end; then row_writers is read as committed now (on a connection of
 *   its own: a read there sees capture's records whatever this transaction's snapshot). No entry (a row
 *   sitesync never saw written) or an entry the change's causal context covers: the change follows it;
 *   otherwise 'update_origin_differs' / 'delete_origin_differs', decided by the table's policy.
 * - insert: the planned (multi-row) INSERT, with no lookup. Only when it meets a key that is there, and
 *   conflicts are resolved (a conflict policy is given; without one it is a data error), each row goes
 *   alone: a key that is there is locked, its writer read as above, and 'insert_exists' decided.
 * - read (a snapshot's row): INSERT … ON DUPLICATE KEY UPDATE of every column, by the target's primary key
 *   (mariadb-statements.ts planReads), with no lookup and no conflict: the source says this is the row now.
 *   A read that carries its writer (the row's last writer at the source: a snapshot sent to this site, as
 *   a site joining a running mesh takes them) is recorded in row_writers as that writer's write, at its
 *   commit time: later changes to the row are then decided against its real last writer, as the source
 *   decided them (docs/joining-a-running-mesh.md: without it, the snapshot's own commit time would win
 *   over other sites' concurrent writes the source had let through). A read without one is recorded as
 *   the transaction's source's write, as any applied write, so that a later change from another site that
 *   had not seen it is a conflict with it.
 * - The row_writers records of a transaction are written together just before its COMMIT (or every 10,000
 *   keys of a large one), so that the session never waits for capture while holding row_writers locks that
 *   capture's own records might wait on.
 * Without a source at this site (it does not capture), nobody records local writes: the sink decides from
 * what row_writers holds (the writes sitesync applied here), and a local write is never seen as concurrent.
 * Commit times are compared as they travel: microseconds from PostgreSQL, whole seconds × 10^6 from MariaDB.
 */
import mysql from 'mysql2/promise';
import type { ApplyErrorKind, NewParkedRecord, ParkedRecord, Sink, SourceSession } from '../../src/apply/sink.ts';
import { decide, DEFAULT_POLICY, isConcurrent, type ConflictKind, type ConflictPolicy, type Decision, type Writer } from '../../src/apply/conflict-policy.ts';
import type { ResolvedConflict } from '../../src/connector.ts';
import { comparePositions } from '../../src/events/position.ts';
import type { Change, Position, RelationInfo, RowWriter, Transaction, TransactionPart } from '../../src/events/transaction.ts';
import type { Logger } from '../../src/observability/logger.ts';
import { CURRENT_SCHEMA_VERSION, decodeMessage, encodeMessage } from '../../src/events/avro-codec.ts';
import { SitesyncError } from '../../src/errors.ts';
import { appliedWriteValues, Bookkeeping, conflictValues, DEFAULT_BOOKKEEPING_DATABASE, isConcurrentCreate, parkedValues } from './bookkeeping.ts';
import { classifyMariaDbError, describeApplyError, describeMariaDbError, MariaDbUnreachableError } from './mariadb-errors.ts';
import { targetColumn, type Binder, type InformationSchemaColumn, type TargetColumn, type TargetTable } from './mariadb-bind.ts';
import { bindersOf, planChanges, planTransaction, progressStatement, type ExistingKey, type InsertRow, type PlanContext, type Statement } from './mariadb-statements.ts';
import { CAPTURE_WAIT_MS, keyId, seenJson, type RowKey, type RowWriterClock } from './row-writers.ts';

export interface MariaDbSinkOptions {
  readonly site: string;
  /** The apply user's URL: `mysql://user:password@host:3306/` (the database part is not used). */
  readonly url: string;
  /** Where sitesync keeps its own tables at this server (default `sitesync`). */
  readonly bookkeepingDatabase?: string;
  readonly logger: Logger;
  /**
   * The conflict policy of a table (default last-writer-wins). Not given, an insert whose key is there is a
   * data error rather than a conflict (updates and deletes are still checked, by the default policy).
   */
  readonly conflictPolicy?: (schema: string, table: string) => ConflictPolicy;
  /** Told of every conflict resolved (after the commit that recorded it). */
  readonly onConflict?: (conflict: ResolvedConflict) => void;
  /**
   * Shared with this site's capture when it runs in this process (connectors/mariadb/index.ts): how far the
   * local writes are recorded in row_writers. Without one, or without a source attached to it, the sink
   * decides from row_writers as it is (the writes sitesync applied, and what capture recorded).
   */
  readonly rowWriters?: RowWriterClock;
  /** Longest wait for that capture before a conflict check (default 30 s); past it, a transient error. */
  readonly captureWaitMs?: number;
  /**
   * The database kind of a source site (`postgres`, `mariadb`…: `databaseOf(config, site).kind`): whether its
   * values are MariaDB's own text (kind 'other' is then bound as it is), and what the progress row records.
   * Unknown (not given, or undefined): treated as another kind.
   */
  readonly sourceKindOf?: (source: string) => string | undefined;
}

/**
 * Apply sessions give up on a lock or a statement after these (graded transient and retried), so that a
 * target that hangs (a lock held by an application, a runaway statement) surfaces.
 */
const LOCK_WAIT_SECONDS = 60;
const STATEMENT_SECONDS = 600;
export const SESSION_SQL_MODE = 'STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO';
const SESSION_SETTINGS = `SET SESSION sql_mode = '${SESSION_SQL_MODE}', time_zone = '+00:00', innodb_lock_wait_timeout = ${LOCK_WAIT_SECONDS}, max_statement_time = ${STATEMENT_SECONDS}`;

/**
 * Most bytes of one transaction's parts kept at a target before its last part (as the PostgreSQL sink):
 * a source that never finishes a transaction cannot fill the target's disk.
 */
export const MAX_SPILLED_BYTES = 64 * 1024 ** 3;

/** Database names no message may write into: MariaDB's catalogs (and sitesync's own, added per sink). */
const SYSTEM_DATABASES = new Set(['mysql', 'sys', 'information_schema', 'performance_schema']);

/** How the driver is asked to connect: exact numbers and dates as text, no CLIENT_FOUND_ROWS (see bookkeeping.ts). */
function connectionOptions(url: string): mysql.ConnectionOptions {
  return {
    uri: url,
    supportBigNumbers: true,
    bigNumberStrings: true,
    dateStrings: true,
    timezone: 'Z',
    flags: ['-FOUND_ROWS', '-MULTI_STATEMENTS'],
    multipleStatements: false,
    connectTimeout: 10_000,
    // Prepared statements kept per connection (evicted ones are closed): well under the server's
    // max_prepared_stmt_count, which every connection shares.
    maxPreparedStatements: 256,
  };
}

export class MariaDbSink implements Sink {
  readonly site: string;
  private readonly bookkeeping: Bookkeeping;
  private readonly sessions = new Set<MariaDbSourceSession>();
  /** For the parked records, apart from every source's session (nothing may share those). */
  private readonly pool: mysql.Pool;
  private bookkeepingReady: Promise<void> | null = null;

  constructor(private readonly options: MariaDbSinkOptions) {
    this.site = options.site;
    this.bookkeeping = new Bookkeeping(options.bookkeepingDatabase ?? DEFAULT_BOOKKEEPING_DATABASE);
    this.pool = mysql.createPool({ ...connectionOptions(options.url), connectionLimit: 1, maxIdle: 1, idleTimeout: 60_000 });
    // Each new connection of the pool gets the sessions' settings before anything else runs on it (the
    // event hands over mysql2's callback connection, on which queries queue in order).
    this.pool.on('connection', (connection) => {
      (connection as unknown as { query(sql: string, done: (error: Error | null) => void): void }).query(SESSION_SETTINGS, (error) => {
        if (error) options.logger.warn({ reason: error.message }, 'cannot set the bookkeeping connection up');
      });
    });
  }

  classify(error: unknown): ApplyErrorKind {
    return classifyMariaDbError(error);
  }

  isReservedSchema(schema: string): boolean {
    const name = schema.toLowerCase();
    return SYSTEM_DATABASES.has(name) || name === this.bookkeeping.database.toLowerCase();
  }

  async recordParked(record: NewParkedRecord): Promise<void> {
    await this.ready();
    await this.pool.execute(this.bookkeeping.insertParked(), parkedValues(record) as unknown as mysql.ExecuteValues);
  }

  async findParked(id: string): Promise<ParkedRecord | null> {
    await this.ready();
    const [rows] = await this.pool.execute<mysql.RowDataPacket[]>(this.bookkeeping.findParked(), [id.toLowerCase()]);
    const r = rows[0];
    if (!r) return null;
    return {
      id: String(r.id),
      kind: r.kind === 'refused' ? 'refused' : 'skipped',
      source: r.source ?? null,
      transactionId: r.transaction_id ?? null,
      bodySha256: String(r.body_sha256),
      userId: r.user_id ?? null,
      route: String(r.route),
      reason: String(r.reason),
      done: Number(r.done) === 1,
    };
  }

  async finishParked(id: string): Promise<void> {
    await this.ready();
    await this.pool.execute(this.bookkeeping.finishParked(), [id.toLowerCase()]);
  }

  private ready(): Promise<void> {
    this.bookkeepingReady ??= (async () => {
      const connection = await this.pool.getConnection();
      try {
        await ensureBookkeeping(connection, this.bookkeeping);
      } finally {
        connection.release();
      }
    })().catch((error: unknown) => {
      this.bookkeepingReady = null;
      throw describeMariaDbError(error, this.options.url, this.site);
    });
    return this.bookkeepingReady;
  }

  async openSession(source: string): Promise<SourceSession> {
    const session = new MariaDbSourceSession(this.options, this.bookkeeping, source, (schema) => this.isReservedSchema(schema), () => this.sessions.delete(session));
    try {
      await session.connect();
    } catch (error) {
      await session.close();
      throw describeMariaDbError(error, this.options.url, this.site);
    }
    this.sessions.add(session);
    return session;
  }

  async close(): Promise<void> {
    await Promise.all([...this.sessions].map((s) => s.close()));
    await this.pool.end().catch(() => undefined);
  }
}

/** Creates the bookkeeping database (only when missing) and its tables (each only when missing). */
export async function ensureBookkeeping(connection: mysql.Connection | mysql.PoolConnection, bookkeeping: Bookkeeping): Promise<void> {
  const [databases] = await connection.query<mysql.RowDataPacket[]>('SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?', [bookkeeping.database]);
  if (databases.length === 0) {
    await connection.query(`CREATE DATABASE IF NOT EXISTS \`${bookkeeping.database}\` CHARACTER SET utf8mb4`).catch((error: unknown) => {
      if (!isConcurrentCreate(error)) throw error;
    });
  }
  const [tables] = await connection.query<mysql.RowDataPacket[]>('SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?', [bookkeeping.database]);
  const present = new Set(tables.map((t) => String(t.name)));
  const wanted = Bookkeeping.TABLES;
  const statements = bookkeeping.createTables();
  for (let i = 0; i < wanted.length; i++) {
    if (present.has(wanted[i]!)) continue;
    await connection.query(statements[i]!).catch((error: unknown) => {
      if (!isConcurrentCreate(error)) throw error;
    });
  }
}

/** A target table as loaded, with the binders of each source relation that wrote into it. */
interface LoadedTable extends TargetTable {
  readonly binders: WeakMap<RelationInfo, readonly (Binder | null)[]>;
  /** It has a unique key besides its primary key (reads go row by row: planReads). */
  readonly otherUniqueKeys: boolean;
}

interface PendingConflict {
  readonly record: ResolvedConflict;
}

/** Most keys of one row_writers statement. */
const RECORD_ROWS = 500;
/** Keys a transaction's row_writers records are held for, at most, before they are written (a large transaction). */
const MAX_UNRECORDED_WRITES = 10_000;

class MariaDbSourceSession implements SourceSession {
  private connection: mysql.Connection | null = null;
  private readonly logger: Logger;
  private readonly sourceKind: string;
  private readonly tables = new Map<string, LoadedTable>();
  private readonly context: PlanContext;
  /** Last applied position as this session last committed or read it; undefined: not known (read it). */
  private known: Position | null | undefined = undefined;
  private closed = false;
  /** Bytes of the unfinished transaction's parts kept (null: not read yet). */
  private spilledBytes: number | null = null;
  /** Conflicts met in the open transaction, reported once it commits. */
  private pendingConflicts: PendingConflict[] = [];
  /** Reads row_writers as committed now (autocommit: each read sees what capture recorded meanwhile); opened on first use. */
  private lookupConnection: mysql.Connection | null = null;
  /**
   * The open transaction: its writer (for row_writers), the keys it wrote (by keyId) and those not recorded
   * yet, each with the writer a read of it carried (null: the transaction's own write).
   */
  private writer: { readonly commitTimeMicros: bigint; readonly seen: string } | null = null;
  private readonly written = new Set<string>();
  private unrecorded = new Map<string, { readonly key: RowKey; readonly carried: RowWriter | null }>();

  constructor(
    private readonly options: MariaDbSinkOptions,
    private readonly bookkeeping: Bookkeeping,
    private readonly source: string,
    private readonly isReserved: (schema: string) => boolean,
    private readonly onClose: () => void,
  ) {
    this.logger = options.logger.child({ source });
    this.sourceKind = options.sourceKindOf?.(source) ?? 'unknown';
    const existingKey = (schema: string, table: string): ExistingKey => (options.conflictPolicy?.(schema, table) ? 'resolve' : 'error');
    this.context = {
      bookkeeping,
      sourceKind: this.sourceKind,
      target: (schema, table) => {
        const loaded = this.tables.get(tableKey(schema, table));
        if (!loaded) throw new Error(`internal: table ${schema}.${table} was not loaded before planning`);
        return loaded;
      },
      binders: (relation, table) => {
        const loaded = table as LoadedTable;
        let binders = loaded.binders.get(relation);
        if (!binders) {
          binders = bindersOf(relation, table, this.sourceKind);
          loaded.binders.set(relation, binders);
        }
        return binders;
      },
      existingKey,
      otherUniqueKeys: (table) => (table as LoadedTable).otherUniqueKeys,
    };
  }

  async connect(): Promise<void> {
    this.connection = await mysql.createConnection(connectionOptions(this.options.url));
    this.connection.on('error', (error: Error) => this.logger.warn({ reason: error.message }, 'apply connection lost'));
    await ensureBookkeeping(this.connection, this.bookkeeping);
    await this.connection.query(SESSION_SETTINGS);
    await this.connection.query('SET SESSION autocommit = 0');
  }

  private get db(): mysql.Connection {
    if (!this.connection || this.closed) throw new MariaDbUnreachableError(`the apply session of site ${this.source} at site ${this.options.site} is closed; sitesync opens a new one`);
    return this.connection;
  }

  async progress(): Promise<Position | null> {
    const [rows] = await this.db.execute<mysql.RowDataPacket[]>(this.bookkeeping.progressQuery(), [this.source]);
    await this.db.query('COMMIT'); // ends the read's transaction (autocommit is off)
    this.known = rows[0] ? String(rows[0].position) : null;
    return this.known;
  }

  /**
   * Each transaction in its own MariaDB transaction: the progress upsert, the changes, COMMIT. A
   * transaction at or below the progress (known here, or found by the upsert) is left out.
   */
  async apply(transactions: readonly Transaction[], _options: { readonly durable: boolean } = { durable: true }): Promise<void> {
    await this.inside(async () => {
      for (const tx of transactions) await this.applyOne(tx);
    });
  }

  private async applyOne(tx: Transaction): Promise<void> {
    if (this.isApplied(tx.position)) {
      this.logger.debug({ tx: tx.id }, 'transaction already applied; left out');
      return;
    }
    await this.loadTablesOf(tx.changes, true);
    const statements = planTransaction(tx, this.source, this.context);
    if (!(await this.begin(statements.next().value as Statement, tx))) return;
    for (const statement of statements) await this.run(statement, tx);
    await this.commit(tx.position);
  }

  async applyPart(transaction: Transaction, part: TransactionPart): Promise<void> {
    const key = [this.source, transaction.id] as const;
    await this.inside(async () => {
      const db = this.db;
      if (this.known === undefined) await this.progress();
      if (this.isApplied(transaction.position)) {
        // A copy of a transaction applied already (a redelivery): nothing to keep or apply; what an
        // unfinished copy kept goes.
        if (part.last) await this.forgetParts();
        return;
      }
      if (part.index === 0) {
        // The source sends a transaction again from its first part after a restart: start over.
        await db.execute(`DELETE FROM ${this.bookkeeping.spillTable} WHERE source = ?`, [this.source]);
        this.spilledBytes = 0;
      } else {
        const [rows] = await db.execute<mysql.RowDataPacket[]>(`SELECT 1 FROM ${this.bookkeeping.spillTable} WHERE source = ? AND transaction_id = ? AND part = ?`, [...key, part.index - 1]);
        if (rows.length === 0) {
          throw new SitesyncError('SITESYNC_ERR_GAP', `part ${part.index} of transaction ${transaction.id} arrived at site ${this.options.site}, but part ${part.index - 1} never did: a message is missing; replay the transaction from the archive to resume`);
        }
      }
      if (!part.last) {
        const body = encodeMessage({ site: this.source, sourceKind: this.sourceKind, previous: null, transactions: [transaction], part });
        if (this.spilledBytes === null) {
          const [rows] = await db.execute<mysql.RowDataPacket[]>(`SELECT COALESCE(SUM(LENGTH(body)), 0) AS n FROM ${this.bookkeeping.spillTable} WHERE source = ?`, [this.source]);
          this.spilledBytes = Number(rows[0]?.n ?? 0);
        }
        if (this.spilledBytes + body.length > MAX_SPILLED_BYTES) {
          throw new SitesyncError(
            'SITESYNC_ERR_APPLY_DATA',
            `transaction ${transaction.id} has sent ${this.spilledBytes + body.length} bytes in ${part.index + 1} parts without its last, more than a target keeps of one transaction (${MAX_SPILLED_BYTES}); see why site ${this.source} sends it, then skip it by replaying from after it`,
          );
        }
        await db.execute(
          `INSERT INTO ${this.bookkeeping.spillTable} (source, transaction_id, part, schema_version, body) VALUES (?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE schema_version = VALUES(schema_version), body = VALUES(body)`,
          [...key, part.index, CURRENT_SCHEMA_VERSION, body],
        );
        await db.query('COMMIT');
        this.spilledBytes += body.length;
        return;
      }
      // What ran so far (the DELETE of an earlier try's parts, the check for the part before) is committed,
      // so that the progress upsert is the first statement of the transaction that applies it all.
      await db.query('COMMIT');
      await this.loadTablesOf(transaction.changes, true);
      if (!(await this.begin(progressStatement(transaction, this.source, this.context), transaction))) {
        await this.forgetParts();
        return;
      }
      for (let index = 0; index < part.index; index++) {
        const [rows] = await db.execute<mysql.RowDataPacket[]>(
          `SELECT body, schema_version FROM ${this.bookkeeping.spillTable} WHERE source = ? AND transaction_id = ? AND part = ?`,
          [...key, index],
        );
        const spilled = rows[0];
        if (!spilled) throw new SitesyncError('SITESYNC_ERR_GAP', `part ${index} of transaction ${transaction.id} is missing from ${this.bookkeeping.database}.spilled_parts; replay the transaction from the archive to resume`);
        const earlier = decodeMessage(spilled.body as Buffer, Number(spilled.schema_version)).transactions[0]!;
        await this.loadTablesOf(earlier.changes, false);
        for (const statement of planChanges(earlier.changes, this.context)) await this.run(statement, transaction);
      }
      for (const statement of planChanges(transaction.changes, this.context)) await this.run(statement, transaction);
      await db.execute(`DELETE FROM ${this.bookkeeping.spillTable} WHERE source = ?`, [this.source]);
      await this.commit(transaction.position);
      this.spilledBytes = 0;
    });
  }

  /** Forgets the kept parts of this source (a transaction applied already). */
  private async forgetParts(): Promise<void> {
    await this.db.execute(`DELETE FROM ${this.bookkeeping.spillTable} WHERE source = ?`, [this.source]);
    await this.db.query('COMMIT');
    this.spilledBytes = 0;
  }

  async skip(position: Position, commitTimeMicros: bigint, parked?: NewParkedRecord): Promise<void> {
    await this.inside(async () => {
      // At or below the progress, the upsert changes nothing; a parked record is still written.
      const progress = progressStatement({ position, commitTimeMicros }, this.source, this.context);
      await this.db.execute(progress.text, progress.values as mysql.ExecuteValues);
      if (parked) await this.db.execute(this.bookkeeping.insertParked(), parkedValues(parked) as unknown as mysql.ExecuteValues);
      await this.commit(position);
    });
  }

  /**
   * One MariaDB transaction: the progress row written first (it changes in any case, so that the capture
   * sees the marker; its position moves only forward), every open 'skipped' record of the transaction
   * marked done, then the changes.
   */
  async applyRetried(transactions: readonly Transaction[], parkedId: string): Promise<boolean> {
    const tx = transactions[0];
    if (transactions.length !== 1 || !tx) throw new SitesyncError('SITESYNC_ERR_MESSAGE_INVALID', `a retried parked message holds ${transactions.length} transactions; sitesync parks them one by one`);
    let applied = false;
    await this.inside(async () => {
      await this.loadTablesOf(tx.changes, true);
      const statements = planTransaction(tx, this.source, this.context, 'always');
      const first = statements.next().value as Statement;
      await this.db.execute(first.text, first.values as mysql.ExecuteValues);
      this.opened(tx);
      const [done] = await this.db.execute<mysql.ResultSetHeader>(this.bookkeeping.finishRetried(), [tx.id, parkedId.toLowerCase()]);
      if (done.affectedRows === 0) {
        await this.rollback();
        return;
      }
      for (const statement of statements) await this.run(statement, tx);
      await this.commit(tx.position);
      applied = true;
    });
    return applied;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.onClose();
    const lookup = this.lookupConnection;
    this.lookupConnection = null;
    lookup?.destroy();
    const connection = this.connection;
    this.connection = null;
    if (!connection) return;
    await Promise.race([connection.end(), new Promise((resolve) => setTimeout(resolve, 2000).unref())]).catch(() => undefined);
    connection.destroy();
  }

  private isApplied(position: Position): boolean {
    return this.known !== undefined && this.known !== null && comparePositions(position, this.known) <= 0;
  }

  /**
   * Any failure rolls back what is open (a statement that failed leaves its transaction open in MariaDB);
   * a schema failure also forgets what was read of the target's tables. The error comes out as one line.
   */
  private async inside(work: () => Promise<void>): Promise<void> {
    try {
      await work();
    } catch (error) {
      this.known = undefined;
      this.forgetTransaction();
      if (this.connection && !this.closed) await this.connection.query('ROLLBACK').catch(() => undefined);
      const described = describeApplyError(error, { source: this.source, site: this.options.site });
      if (classifyMariaDbError(described) === 'schema') this.tables.clear();
      throw described;
    }
  }

  /**
   * Runs a transaction's progress upsert, its first statement; false (and rolled back) when the row did not
   * move: the transaction is at or below what was applied.
   */
  private async begin(statement: Statement, tx: Transaction): Promise<boolean> {
    if (statement.role !== 'progress') throw new Error('internal: a transaction must begin with its progress row');
    const [result] = await this.db.execute<mysql.ResultSetHeader>(statement.text, statement.values as mysql.ExecuteValues);
    if (result.affectedRows === 0) {
      await this.rollback();
      this.known = undefined; // something else moved it: read it again when needed
      this.logger.debug({ tx: tx.id }, 'transaction already applied (progress row at or past it); left out');
      return false;
    }
    this.opened(tx);
    return true;
  }

  /** A target transaction for `tx` is open: the rows it writes are recorded as written by its source at its commit time. */
  private opened(tx: Transaction): void {
    this.forgetTransaction();
    this.writer = { commitTimeMicros: tx.commitTimeMicros, seen: seenJson(tx.seen) };
  }

  private forgetTransaction(): void {
    this.pendingConflicts = [];
    this.writer = null;
    this.written.clear();
    this.unrecorded = new Map();
  }

  private async rollback(): Promise<void> {
    this.forgetTransaction();
    await this.db.query('ROLLBACK');
  }

  private async commit(position: Position): Promise<void> {
    await this.recordWrites();
    await this.db.query('COMMIT');
    if (this.known === undefined || this.known === null || comparePositions(position, this.known) > 0) this.known = position;
    const conflicts = this.pendingConflicts;
    this.forgetTransaction();
    for (const { record } of conflicts) this.options.onConflict?.(record);
  }

  /** Runs one statement of a transaction's changes, with conflict detection for what it writes. */
  private async run(statement: Statement, tx: Transaction): Promise<void> {
    switch (statement.role) {
      case 'insert':
        await this.insert(statement, tx);
        break;
      case 'read':
        await this.read(statement, tx);
        break;
      case 'update':
      case 'delete':
        await this.change(statement, tx);
        break;
      default:
        await this.execute(statement, tx);
    }
    // A large transaction's records go before its end, so that they are not all held here.
    if (this.unrecorded.size >= MAX_UNRECORDED_WRITES) await this.recordWrites();
  }

  private async execute(statement: Statement, tx: Transaction): Promise<mysql.ResultSetHeader> {
    try {
      const [result] = await this.db.execute<mysql.ResultSetHeader>(statement.text, statement.values as mysql.ExecuteValues);
      return result;
    } catch (error) {
      throw describeApplyError(error, { source: this.source, site: this.options.site, transaction: tx.id });
    }
  }

  /**
   * Inserts: the (multi-row) INSERT as planned, no lookup. When it meets a key that is there already and
   * conflicts are resolved, the statement was undone as a whole (InnoDB rolls back a failed statement, not the
   * transaction): row by row, each key that is there is an 'insert_exists' conflict.
   */
  private async insert(statement: Statement, tx: Transaction): Promise<void> {
    try {
      await this.db.execute<mysql.ResultSetHeader>(statement.text, statement.values as mysql.ExecuteValues);
    } catch (error) {
      if ((error as { errno?: number }).errno !== 1062 || !statement.fallback) throw describeApplyError(error, { source: this.source, site: this.options.site, transaction: tx.id });
      for (const row of statement.fallback()) await this.insertRow(row, statement, tx);
      return;
    }
    for (const key of statement.writes ?? []) this.wrote(key);
  }

  private async insertRow(row: InsertRow, statement: Statement, tx: Transaction): Promise<void> {
    try {
      await this.db.execute<mysql.ResultSetHeader>(row.insert.text, row.insert.values as mysql.ExecuteValues);
      if (row.key) this.wrote(row.key);
      return;
    } catch (error) {
      if ((error as { errno?: number }).errno !== 1062) throw describeApplyError(error, { source: this.source, site: this.options.site, transaction: tx.id });
      // The key is there already: two sites inserted it, or it came back some other way. A duplicate of
      // another unique key finds no row by this key: that stays a data error.
      if (!(await this.lock(row.lookup, tx))) throw describeApplyError(error, { source: this.source, site: this.options.site, transaction: tx.id });
    }
    const mine = row.key !== null && this.written.has(keyId(row.key));
    const decision = mine ? null : await this.resolve(tx, 'insert_exists', statement, row.key, await this.lastWriter(row.key));
    if (decision === null || decision.resolution === 'apply') {
      await this.execute(row.overwrite, tx);
      if (row.key) this.wrote(row.key);
    }
  }

  /**
   * Reads (a snapshot's rows): written whatever the target holds, with no conflict detection; each row is
   * recorded as written by the writer its read carries, or else by the transaction's source, as any applied
   * write. Into a table with another unique key, the row of the primary key is locked first, then
   * overwritten, or inserted when it is not there.
   */
  private async read(statement: Statement, tx: Transaction): Promise<void> {
    const byKey = statement.byKey;
    if (!byKey) await this.execute(statement, tx);
    else if (!(await this.lock(byKey.lookup, tx))) await this.execute(statement, tx);
    else if (byKey.update) await this.execute(byKey.update, tx);
    for (const [i, key] of (statement.writes ?? []).entries()) this.wrote(key, statement.writers?.[i] ?? null);
  }

  /**
   * Updates and deletes: the row is read and locked first. Not there: an 'update_missing' / 'delete_missing'
   * conflict, nothing changes. There: who wrote it last (lastWriter); a write the source had not seen is a
   * conflict the policy decides; otherwise the change follows it.
   */
  private async change(statement: Statement, tx: Transaction): Promise<void> {
    const target = statement.target;
    if (!target) throw new Error(`internal: ${statement.role} without the row it changes`);
    const update = statement.role === 'update';
    if (!(await this.lock(target.lookup, tx))) {
      await this.resolve(tx, update ? 'update_missing' : 'delete_missing', statement, target.key, null);
      return;
    }
    const local = await this.lastWriter(target.key);
    if (isConcurrent(local, tx.site, tx.seen)) {
      const decision = await this.resolve(tx, update ? 'update_origin_differs' : 'delete_origin_differs', statement, target.key, local);
      if (decision.resolution === 'skip') return;
    }
    await this.execute(statement, tx);
    for (const key of statement.writes ?? []) this.wrote(key);
  }

  /** Runs a locking read: whether the row is there (and now locked until the transaction ends). */
  private async lock(lookup: Statement, tx: Transaction): Promise<boolean> {
    try {
      const [rows] = await this.db.execute<mysql.RowDataPacket[]>(lookup.text, lookup.values as mysql.ExecuteValues);
      return rows.length > 0;
    } catch (error) {
      throw describeApplyError(error, { source: this.source, site: this.options.site, transaction: tx.id });
    }
  }

  /**
   * Who wrote the row with `key` last, as row_writers knows it, once this site's capture (when it runs here)
   * has recorded every local write up to the binlog's end — read now, while this session holds the row's
   * lock, so that no local write of the row can be missing. null: not known (no entry: a row sitesync never
   * saw written; a key the change does not carry; a row this transaction wrote already): not a conflict.
   */
  private async lastWriter(key: RowKey | null): Promise<Writer | null> {
    if (key === null || this.written.has(keyId(key))) return null;
    await this.options.rowWriters?.waitForLocalWrites(this.options.captureWaitMs ?? CAPTURE_WAIT_MS);
    const lookup = await this.lookup();
    let rows: mysql.RowDataPacket[];
    try {
      [rows] = await lookup.execute<mysql.RowDataPacket[]>(this.bookkeeping.rowWriterQuery(), [key.table, key.hash]);
    } catch (error) {
      // A connection that failed is not used again: the retry opens another.
      if (this.lookupConnection === lookup) this.lookupConnection = null;
      lookup.destroy();
      throw error;
    }
    const row = rows[0];
    return row ? { site: String(row.site), commitTimeMicros: BigInt(row.commit_time_micros) } : null;
  }

  private async lookup(): Promise<mysql.Connection> {
    if (this.lookupConnection) return this.lookupConnection;
    const connection = await mysql.createConnection(connectionOptions(this.options.url));
    const forget = (): void => {
      if (this.lookupConnection === connection) this.lookupConnection = null;
    };
    connection.on('error', (error: Error) => {
      forget();
      this.logger.warn({ reason: error.message }, 'row_writers lookup connection lost');
    });
    connection.on('end', forget);
    if (this.closed) {
      connection.destroy();
      throw new MariaDbUnreachableError(`the apply session of site ${this.source} at site ${this.options.site} is closed; sitesync opens a new one`);
    }
    this.lookupConnection = connection;
    return connection;
  }

  /** Decides a conflict, records it in the conflicts table in the same transaction, and says what to do. */
  private async resolve(tx: Transaction, kind: ConflictKind, statement: Statement, key: RowKey | null, local: Writer | null): Promise<Decision> {
    const into = statement.into;
    const policy = (into ? this.options.conflictPolicy?.(into.schema, into.table) : undefined) ?? DEFAULT_POLICY;
    const decision = decide(kind, { site: tx.site, commitTimeMicros: tx.commitTimeMicros }, local, policy);
    const entry = { kind, table: statement.table, key, remoteSite: tx.site, remoteTransaction: tx.id, remoteCommitTimeMicros: tx.commitTimeMicros, local, policy: policy.policy, decision };
    await this.db.execute(this.bookkeeping.insertConflict(), conflictValues(entry) as unknown as mysql.ExecuteValues);
    this.pendingConflicts.push({ record: { source: this.source, kind, table: statement.table, resolution: decision.resolution } });
    this.logger.debug({ tx: tx.id, kind, table: statement.table, key: key?.json, local: local?.site, winner: decision.winner }, 'conflict resolved');
    return decision;
  }

  /**
   * The open transaction wrote the row with `key`: recorded in row_writers before it commits, as `carried`'s
   * write when a read carried its writer at the source, else as the transaction's.
   */
  private wrote(key: RowKey, carried: RowWriter | null = null): void {
    const id = keyId(key);
    this.written.add(id);
    this.unrecorded.set(id, { key, carried });
  }

  /**
   * Records the open transaction's writes in row_writers, as its source's at its commit time (a read that
   * carried its writer: as that writer's, at its commit time): one statement
   * per RECORD_ROWS keys, in key order, just before COMMIT — so that no wait for capture happens while this
   * session holds row_writers locks that capture's own records could wait on.
   */
  private async recordWrites(): Promise<void> {
    if (this.unrecorded.size === 0) return;
    const writer = this.writer;
    if (!writer) throw new Error('internal: writes recorded outside a transaction');
    const entries = [...this.unrecorded.values()].sort(({ key: a }, { key: b }) => (a.table < b.table ? -1 : a.table > b.table ? 1 : Buffer.compare(a.hash, b.hash)));
    this.unrecorded = new Map();
    for (let i = 0; i < entries.length; i += RECORD_ROWS) {
      const chunk = entries.slice(i, i + RECORD_ROWS);
      // A carried writer is recorded with an empty causal context ('{}'): what that write had seen is not
      // known here (a read carries only the writer's site and commit time), and nothing decides by it —
      // isConcurrent weighs an entry's site and commit time against the incoming change's context, and
      // capture (recordLocalWrites) weighs them against the local write's. The snapshot transaction's
      // context would be the donor's at the read, not the writer's: it would claim what the writer never saw.
      const values = chunk.flatMap(({ key, carried }) =>
        carried ? appliedWriteValues(key, carried.site, carried.commitTimeMicros, '{}') : appliedWriteValues(key, this.source, writer.commitTimeMicros, writer.seen),
      );
      await this.db.query(this.bookkeeping.recordAppliedWrites(chunk.length), values);
    }
  }

  /**
   * Reads information_schema for every table the changes touch that is not known yet. With `own`, the reads
   * are committed (they open a transaction, autocommit being off) so that the progress upsert is the first
   * statement of the transaction that follows.
   */
  private async loadTablesOf(changes: readonly Change[], own: boolean): Promise<void> {
    let read = false;
    for (const change of changes) {
      if (change.op === 'message') continue;
      const relations = change.op === 'truncate' ? change.relations : [change.relation];
      for (const r of relations) {
        if (this.tables.has(tableKey(r.schema, r.table))) continue;
        await this.loadTable(r.schema, r.table);
        read = true;
      }
    }
    if (read && own) await this.db.query('COMMIT');
  }

  private async loadTable(schema: string, table: string): Promise<void> {
    if (this.isReserved(schema)) {
      throw new SitesyncError('SITESYNC_ERR_UNTRUSTED', `a change from site ${this.source} writes into ${schema}.${table}, a database site ${this.options.site} never writes into (MariaDB's own or sitesync's); sitesync parks it`);
    }
    const [rows] = await this.db.query<(mysql.RowDataPacket & InformationSchemaColumn & { pk_seq: string | number | null; other_unique: string | number | null })[]>(
      `SELECT c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, c.CHARACTER_MAXIMUM_LENGTH, c.CHARACTER_OCTET_LENGTH, c.NUMERIC_PRECISION, c.NUMERIC_SCALE,
              c.DATETIME_PRECISION, c.CHARACTER_SET_NAME, c.IS_GENERATED,
              (SELECT s.SEQ_IN_INDEX FROM information_schema.STATISTICS s
                WHERE s.TABLE_SCHEMA = c.TABLE_SCHEMA AND s.TABLE_NAME = c.TABLE_NAME AND s.INDEX_NAME = 'PRIMARY' AND s.COLUMN_NAME = c.COLUMN_NAME) AS pk_seq,
              EXISTS (SELECT 1 FROM information_schema.STATISTICS u
                WHERE u.TABLE_SCHEMA = c.TABLE_SCHEMA AND u.TABLE_NAME = c.TABLE_NAME AND u.NON_UNIQUE = 0 AND u.INDEX_NAME <> 'PRIMARY') AS other_unique
         FROM information_schema.COLUMNS c
        WHERE c.TABLE_SCHEMA = ? AND c.TABLE_NAME = ?
        ORDER BY c.ORDINAL_POSITION`,
      [schema, table],
    );
    if (rows.length === 0) {
      throw new SitesyncError(
        'SITESYNC_ERR_APPLY_SCHEMA',
        `table ${schema}.${table} does not exist at site ${this.options.site} (MariaDB database ${schema}, table ${table}); create it as at site ${this.source} (sitesync retries and resumes by itself)`,
      );
    }
    const columns = new Map<string, TargetColumn>(rows.map((row) => [row.COLUMN_NAME, targetColumn(row)]));
    const primaryKey = rows
      .filter((row) => row.pk_seq !== null && row.pk_seq !== undefined)
      .sort((a, b) => Number(a.pk_seq) - Number(b.pk_seq))
      .map((row) => row.COLUMN_NAME);
    const otherUniqueKeys = Number(rows[0]!.other_unique ?? 0) !== 0;
    this.tables.set(tableKey(schema, table), { schema, table, columns, primaryKey: primaryKey.length > 0 ? primaryKey : null, binders: new WeakMap(), otherUniqueKeys });
  }
}

function tableKey(schema: string, table: string): string {
  return `${schema}\u0000${table}`;
}
