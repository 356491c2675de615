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
 * Conflicts: detection is not implemented for MariaDB. MariaDB keeps no per-row commit origin or commit
 * time (PostgreSQL's track_commit_timestamp and replication origins are what the PostgreSQL sink compares
 * with the causal context), so a concurrent write at this site cannot be told from one the source had seen
 * without keeping that history in every replicated table (extra columns or triggers), which this sink does
 * not. What it does: an incoming change is applied as it comes. An insert whose key is already there is a
 * data error, unless a conflict policy is given: then last-writer-wins and site-priority apply the incoming
 * row (upsert) and keep-local keeps the row as it is; either is reported as an 'insert_exists' conflict. An
 * update or delete that finds no row is reported as 'update_missing' / 'delete_missing' and changes nothing.
 */
import mysql from 'mysql2/promise';
import type { ApplyErrorKind, NewParkedRecord, ParkedRecord, Sink, SourceSession } from '../../src/apply/sink.ts';
import type { ConflictPolicy } from '../../src/apply/conflict-policy.ts';
import type { ResolvedConflict } from '../../src/connector.ts';
import { comparePositions } from '../../src/events/position.ts';
import type { Change, Position, RelationInfo, Transaction, TransactionPart } from '../../src/events/transaction.ts';
import type { Logger } from '../../src/observability/logger.ts';
import { CURRENT_SCHEMA_VERSION, decodeMessage, encodeMessage } from '../../src/events/avro-codec.ts';
import { SitesyncError } from '../../src/errors.ts';
import { Bookkeeping, DEFAULT_BOOKKEEPING_DATABASE, isConcurrentCreate, parkedValues } from './bookkeeping.ts';
import { classifyMariaDbError, describeApplyError, describeMariaDbError, MariaDbUnreachableError } from './mariadb-errors.ts';
import { targetColumn, type Binder, type InformationSchemaColumn, type TargetColumn, type TargetTable } from './mariadb-bind.ts';
import { bindersOf, planChanges, planTransaction, progressStatement, type ExistingKey, type PlanContext, type Statement } from './mariadb-statements.ts';

export interface MariaDbSinkOptions {
  readonly site: string;
  /** The apply user's URL: `mysql://user:password@host:3306/` (the database part is not used). */
  readonly url: string;
  /** Where sitesync keeps its own tables at this server (default `sitesync`). */
  readonly bookkeepingDatabase?: string;
  readonly logger: Logger;
  /**
   * The conflict policy of a table. Given, an insert whose key is there applies the incoming row
   * (last-writer-wins, site-priority) or keeps the local one (keep-local); not given, it is a data error.
   */
  readonly conflictPolicy?: (schema: string, table: string) => ConflictPolicy;
  /** Told of every conflict met (after the commit that resolved it). */
  readonly onConflict?: (conflict: ResolvedConflict) => void;
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
  const wanted = ['apply_progress', 'parked', 'spilled_parts'];
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
}

interface PendingConflict {
  readonly record: ResolvedConflict;
}

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

  constructor(
    private readonly options: MariaDbSinkOptions,
    private readonly bookkeeping: Bookkeeping,
    private readonly source: string,
    private readonly isReserved: (schema: string) => boolean,
    private readonly onClose: () => void,
  ) {
    this.logger = options.logger.child({ source });
    this.sourceKind = options.sourceKindOf?.(source) ?? 'unknown';
    const existingKey = (schema: string, table: string): ExistingKey => {
      const policy = options.conflictPolicy?.(schema, table);
      if (!policy) return 'error';
      return policy.policy === 'keep-local' ? 'keep' : 'overwrite';
    };
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
      this.pendingConflicts = [];
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
    return true;
  }

  private async rollback(): Promise<void> {
    this.pendingConflicts = [];
    await this.db.query('ROLLBACK');
  }

  private async commit(position: Position): Promise<void> {
    await this.db.query('COMMIT');
    if (this.known === undefined || this.known === null || comparePositions(position, this.known) > 0) this.known = position;
    const conflicts = this.pendingConflicts;
    this.pendingConflicts = [];
    for (const { record } of conflicts) this.options.onConflict?.(record);
  }

  /** Runs one change statement; an insert that meets an existing key under a conflict policy runs its fallback. */
  private async run(statement: Statement, tx: Transaction): Promise<void> {
    const db = this.db;
    let result: mysql.ResultSetHeader;
    try {
      [result] = await db.execute<mysql.ResultSetHeader>(statement.text, statement.values as mysql.ExecuteValues);
    } catch (error) {
      if ((error as { errno?: number }).errno !== 1062 || !statement.fallback) {
        throw describeApplyError(error, { source: this.source, site: this.options.site, transaction: tx.id });
      }
      // The INSERT was undone as a whole (InnoDB rolls back a failed statement, not the transaction): row by row.
      for (const row of statement.fallback) {
        const [r] = await db.execute<mysql.ResultSetHeader>(row.text, row.values as mysql.ExecuteValues);
        // 1: inserted; 2: the existing row took the incoming values; 0: the existing row stayed as it was.
        if (r.affectedRows !== 1) this.conflict(tx, 'insert_exists', statement.table, statement.existing === 'keep' ? 'skip' : 'apply');
      }
      return;
    }
    if (statement.role === 'update' && matchedRows(result) === 0) this.conflict(tx, 'update_missing', statement.table, 'skip');
    if (statement.role === 'delete' && result.affectedRows === 0) this.conflict(tx, 'delete_missing', statement.table, 'skip');
  }

  private conflict(tx: Transaction, kind: ResolvedConflict['kind'], table: string, resolution: ResolvedConflict['resolution']): void {
    this.pendingConflicts.push({ record: { source: this.source, kind, table, resolution } });
    this.logger.info({ tx: tx.id, kind, table, resolution }, 'conflict met (MariaDB keeps no row history: resolved by what the change finds)');
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
    const [rows] = await this.db.query<(mysql.RowDataPacket & InformationSchemaColumn & { pk_seq: string | number | null })[]>(
      `SELECT c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, c.CHARACTER_MAXIMUM_LENGTH, c.CHARACTER_OCTET_LENGTH, c.NUMERIC_PRECISION, c.NUMERIC_SCALE,
              c.DATETIME_PRECISION, c.CHARACTER_SET_NAME, c.IS_GENERATED,
              (SELECT s.SEQ_IN_INDEX FROM information_schema.STATISTICS s
                WHERE s.TABLE_SCHEMA = c.TABLE_SCHEMA AND s.TABLE_NAME = c.TABLE_NAME AND s.INDEX_NAME = 'PRIMARY' AND s.COLUMN_NAME = c.COLUMN_NAME) AS pk_seq
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
    this.tables.set(tableKey(schema, table), { schema, table, columns, primaryKey: primaryKey.length > 0 ? primaryKey : null, binders: new WeakMap() });
  }
}

function tableKey(schema: string, table: string): string {
  return `${schema}\u0000${table}`;
}

/** Rows an UPDATE found (MariaDB says so in its info: `Rows matched: 1  Changed: 0  Warnings: 0`). */
function matchedRows(result: mysql.ResultSetHeader): number {
  const m = /Rows matched:\s*([0-9]+)/.exec(result.info ?? '');
  return m ? Number(m[1]) : result.affectedRows;
}
