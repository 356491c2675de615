/**
 * The SQL Server sink. One dedicated connection per source site (apply-connection.ts); every transaction it
 * applies is one SQL Server transaction whose first statement (and first write) is the forward-only upsert of
 * that source's row in sitesync.apply_progress, then the changes in order, then COMMIT: the data and the
 * progress are one atomic commit, and the progress row is the loop marker by which this site's SQL Server
 * capture drops relayed writes (SQL Server records no origin of a transaction: apply_progress is CDC-enabled as
 * capture instance `sitesync_apply_progress`, and a transaction with a change row there is a relayed write)
 * and learns the causal context (the source's commit time). The upsert only ever moves the row forward, and
 * says when it did not: a transaction at or below the progress is never applied again, even by two sessions
 * racing (the MERGE holds a serializable key-range lock on the row).
 *
 * The session runs with XACT_ABORT OFF (a duplicate key ends its statement only: the insert's TRY…CATCH
 * answers it and the transaction goes on), a 60-second lock timeout (graded transient, retried). What
 * CONVERT would still change silently (decimal rounding, fractional seconds, characters a code page lacks,
 * binary padding) is refused before it is sent (sqlserver-bind.ts).
 *
 * Durability: `apply(…, { durable: false })` is applied exactly as a durable call: every COMMIT is as durable
 * as the database is configured (with DELAYED_DURABILITY = DISABLED, the default, on disk when it returns).
 *
 * Large transactions: each part but the last is kept in sitesync.spilled_parts, keyed by source, transaction
 * id and part index, in a commit of its own, so the runner acknowledges it at once and a crash loses nothing;
 * the last part opens the target transaction with the progress upsert, reads the parts back one at a time
 * and applies them, then its own changes, forgets the parts and commits. Part 0 again starts over; a part
 * whose predecessor is not kept is a gap (SITESYNC_ERR_GAP).
 *
 * Conflicts. SQL Server keeps no per-row origin or commit time, and this sink keeps none either, so it detects
 * presence conflicts only, recorded in sitesync.conflicts (the columns of the PostgreSQL sink's table) in the
 * same transaction, onConflict told of each once that transaction has committed:
 * - an insert whose key is there: 'insert_exists', decided by the table's policy (src/apply/conflict-policy.ts
 *   decide) with the local writer unknown (null) — which every policy resolves by applying the incoming row:
 *   it becomes an UPDATE of the non-key columns. Without a conflict policy configured it is a data error, as
 *   at the MariaDB sink; a duplicate of another unique index (no row has the key) is a data error too;
 * - an update or a delete that finds no row: 'update_missing' / 'delete_missing', skipped and recorded.
 * A read (a snapshot's row) is no conflict whatever the target holds: the source says this is the row now.
 * It is found by the target's primary key (a table without one cannot take reads: a schema error) and
 * applied as an insert is — the INSERT, IDENTITY_INSERT around it when the row carries the identity column —
 * and when a row has the key, as an UPDATE of every other column (an identity column cannot be updated and
 * keeps its value). Insert first: a snapshot mostly brings rows the target lacks (a site joining), one
 * statement each; a row that is there costs a second. Not MERGE: it needs HOLDLOCK to be safe against a
 * concurrent insert of the same key, has had wrong-result bugs with triggers and filtered indexes, and would
 * need IDENTITY_INSERT as the INSERT does anyway.
 * It does NOT detect origin conflicts (two sites updating or deleting one row concurrently,
 * 'update_origin_differs' / 'delete_origin_differs'): each site keeps the last change applied to it, so after
 * such a race two sites may hold different rows, each where the other's change arrived last. `sitesync verify`
 * finds such rows. Use the PostgreSQL (commit timestamps and origins) or MariaDB (row_writers) sink where
 * concurrent writers of one row must converge.
 */
import type { ApplyErrorKind, NewParkedRecord, ParkedRecord, Sink, SourceSession } from '../../src/apply/sink.ts';
import { decide, DEFAULT_POLICY, type ConflictKind, type ConflictPolicy, type Decision } from '../../src/apply/conflict-policy.ts';
import type { ResolvedConflict } from '../../src/connector.ts';
import { BOOKKEEPING_SCHEMA } from '../../src/config/names.ts';
import { comparePositions } from '../../src/events/position.ts';
import { CURRENT_SCHEMA_VERSION, decodeMessage, encodeMessage } from '../../src/events/avro-codec.ts';
import type { Change, Position, RelationInfo, RowImage, Transaction, TransactionPart } from '../../src/events/transaction.ts';
import type { Logger } from '../../src/observability/logger.ts';
import { SitesyncError } from '../../src/errors.ts';
import type { ApplyConnection, BoundValue, ColumnValues, RowMatch, TargetColumn, TargetTable } from './apply-connection.ts';
import { binderFor, type Binder } from './sqlserver-bind.ts';
import { classifySqlServerError, errorLine, errorNumbers, SqlServerDataError, SqlServerUnreachableError } from './sqlserver-errors.ts';
import { isWritable } from './sqlserver-statements.ts';

export interface SqlServerSinkOptions {
  readonly site: string;
  /** Opens a new connection to this site's database (mssql-apply-connection.ts, or the simulator's). */
  readonly connect: () => Promise<ApplyConnection>;
  readonly logger: Logger;
  /**
   * The conflict policy of a table (default last-writer-wins). Not given, an insert whose key is there is a
   * data error rather than a conflict (updates and deletes of missing rows are still recorded and skipped).
   */
  readonly conflictPolicy?: (schema: string, table: string) => ConflictPolicy;
  /** Told of every conflict resolved (after the commit that recorded it). */
  readonly onConflict?: (conflict: ResolvedConflict) => void;
  /** The database kind of a source site (`postgres`, `sqlserver`…): what the progress row records, and whether kind 'other' is SQL Server's own text. */
  readonly sourceKindOf?: (source: string) => string | undefined;
}

/**
 * Most bytes of one transaction's parts kept at a target before its last part (as the other sinks): a source
 * that never finishes a transaction cannot fill the target's disk.
 */
export const MAX_SPILLED_BYTES = 64 * 1024 ** 3;

/** Schemas no message may write into: SQL Server's own and its fixed database roles' (and sitesync's, added per sink). */
const SYSTEM_SCHEMAS = new Set([
  'sys',
  'information_schema',
  'cdc',
  'guest',
  'db_owner',
  'db_accessadmin',
  'db_securityadmin',
  'db_ddladmin',
  'db_backupoperator',
  'db_datareader',
  'db_datawriter',
  'db_denydatareader',
  'db_denydatawriter',
]);

export class SqlServerSink implements Sink {
  readonly site: string;
  private readonly sessions = new Set<SqlServerSourceSession>();
  /** For the parked records, apart from every source's session (nothing may share those). */
  private bookkeeping: Promise<ApplyConnection> | null = null;

  constructor(private readonly options: SqlServerSinkOptions) {
    this.site = options.site;
  }

  classify(error: unknown): ApplyErrorKind {
    return classifySqlServerError(error);
  }

  /** SQL Server's schema names compare case-insensitively under the usual collations: so do these. */
  isReservedSchema(schema: string): boolean {
    const name = schema.toLowerCase();
    return SYSTEM_SCHEMAS.has(name) || name === BOOKKEEPING_SCHEMA.toLowerCase();
  }

  async recordParked(record: NewParkedRecord): Promise<void> {
    await this.withBookkeeping((c) => c.insertParked(record));
  }

  async findParked(id: string): Promise<ParkedRecord | null> {
    return this.withBookkeeping((c) => c.findParked(id));
  }

  async finishParked(id: string): Promise<void> {
    await this.withBookkeeping((c) => c.finishParked(id));
  }

  /** Runs one bookkeeping call on the sink's own connection (opened on first use, dropped after a failure). */
  private async withBookkeeping<T>(work: (connection: ApplyConnection) => Promise<T>): Promise<T> {
    const opening = (this.bookkeeping ??= (async () => {
      const connection = await this.options.connect();
      try {
        await connection.ensureBookkeeping();
      } catch (error) {
        await connection.close().catch(() => undefined);
        throw error;
      }
      return connection;
    })());
    let connection: ApplyConnection;
    try {
      connection = await opening;
    } catch (error) {
      if (this.bookkeeping === opening) this.bookkeeping = null;
      throw error;
    }
    try {
      return await work(connection);
    } catch (error) {
      if (this.bookkeeping === opening) this.bookkeeping = null;
      await connection.close().catch(() => undefined);
      throw error;
    }
  }

  async openSession(source: string): Promise<SourceSession> {
    const connection = await this.options.connect();
    try {
      await connection.ensureBookkeeping();
    } catch (error) {
      await connection.close().catch(() => undefined);
      throw error;
    }
    const session = new SqlServerSourceSession(this.options, connection, source, (schema) => this.isReservedSchema(schema), () => this.sessions.delete(session));
    this.sessions.add(session);
    return session;
  }

  async close(): Promise<void> {
    await Promise.all([...this.sessions].map((s) => s.close()));
    const bookkeeping = this.bookkeeping;
    this.bookkeeping = null;
    if (bookkeeping) await bookkeeping.then((c) => c.close()).catch(() => undefined);
  }
}

/** A target table as loaded, with the binders of each source relation that wrote into it. */
interface LoadedTable {
  readonly target: TargetTable;
  /** Per relation, one binder per relation column; null for a column never written (computed, rowversion). */
  readonly binders: WeakMap<RelationInfo, readonly (Binder | null)[]>;
}

/** How a change finds its row, with the key's canonical texts for the conflicts table. */
interface FoundBy extends RowMatch {
  readonly keyJson: string;
}

class SqlServerSourceSession implements SourceSession {
  private readonly logger: Logger;
  private readonly sourceKind: string;
  private readonly tables = new Map<string, LoadedTable>();
  /** Last applied position as this session last committed or read it; undefined: not known (read it). */
  private known: Position | null | undefined = undefined;
  private closed = false;
  /** A target transaction is open on the connection. */
  private open = false;
  /** Bytes of the unfinished transaction's parts kept (null: not read yet). */
  private spilledBytes: number | null = null;
  /** Conflicts met in the open transaction, reported once it commits. */
  private pendingConflicts: ResolvedConflict[] = [];
  /** Keys (table and key JSON) the open transaction inserted or updated: an insert meeting one is no conflict. */
  private readonly written = new Set<string>();

  constructor(
    private readonly options: SqlServerSinkOptions,
    private readonly connection: ApplyConnection,
    private readonly source: string,
    private readonly isReserved: (schema: string) => boolean,
    private readonly onClose: () => void,
  ) {
    this.logger = options.logger.child({ source });
    this.sourceKind = options.sourceKindOf?.(source) ?? 'unknown';
  }

  private get db(): ApplyConnection {
    if (this.closed) throw new SqlServerUnreachableError(`the apply session of site ${this.source} at site ${this.options.site} is closed; sitesync opens a new one`);
    return this.connection;
  }

  async progress(): Promise<Position | null> {
    this.known = await this.db.readProgress(this.source);
    return this.known;
  }

  /** Each transaction in its own SQL Server transaction: the progress upsert, the changes, COMMIT. */
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
    await this.loadTablesOf(tx.changes);
    if (!(await this.begin(tx, 'forward'))) return;
    for (const change of tx.changes) await this.runChange(change, tx);
    await this.commit(tx.position);
  }

  async applyPart(transaction: Transaction, part: TransactionPart): Promise<void> {
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
        await this.forgetParts();
      } else if (!(await db.hasPart(this.source, transaction.id, part.index - 1))) {
        throw new SitesyncError('SITESYNC_ERR_GAP', `part ${part.index} of transaction ${transaction.id} arrived at site ${this.options.site}, but part ${part.index - 1} never did: a message is missing; replay the transaction from the archive to resume`);
      }
      if (!part.last) {
        const body = encodeMessage({ site: this.source, sourceKind: this.sourceKind, previous: null, transactions: [transaction], part });
        this.spilledBytes ??= await db.spilledBytes(this.source);
        if (this.spilledBytes + body.length > MAX_SPILLED_BYTES) {
          throw new SitesyncError(
            'SITESYNC_ERR_APPLY_DATA',
            `transaction ${transaction.id} has sent ${this.spilledBytes + body.length} bytes in ${part.index + 1} parts without its last, more than a target keeps of one transaction (${MAX_SPILLED_BYTES}); see why site ${this.source} sends it, then skip it by replaying from after it`,
          );
        }
        await db.begin();
        this.open = true;
        await db.keepPart(this.source, transaction.id, part.index, { schemaVersion: CURRENT_SCHEMA_VERSION, body });
        await db.commit();
        this.open = false;
        this.spilledBytes += body.length;
        return;
      }
      await this.loadTablesOf(transaction.changes);
      if (!(await this.begin(transaction, 'forward'))) {
        await this.forgetParts();
        return;
      }
      for (let index = 0; index < part.index; index++) {
        const spilled = await db.readPart(this.source, transaction.id, index);
        if (!spilled) throw new SitesyncError('SITESYNC_ERR_GAP', `part ${index} of transaction ${transaction.id} is missing from ${BOOKKEEPING_SCHEMA}.spilled_parts; replay the transaction from the archive to resume`);
        const earlier = decodeMessage(spilled.body, spilled.schemaVersion).transactions[0]!;
        await this.loadTablesOf(earlier.changes);
        for (const change of earlier.changes) await this.runChange(change, transaction);
      }
      for (const change of transaction.changes) await this.runChange(change, transaction);
      await db.forgetParts(this.source);
      await this.commit(transaction.position);
      this.spilledBytes = 0;
    });
  }

  /** Forgets the kept parts of this source, in a commit of its own. */
  private async forgetParts(): Promise<void> {
    await this.db.forgetParts(this.source);
    this.spilledBytes = 0;
  }

  async skip(position: Position, commitTimeMicros: bigint, parked?: NewParkedRecord): Promise<void> {
    await this.inside(async () => {
      // At or below the progress, the upsert changes nothing; a parked record is still written.
      await this.db.begin();
      this.open = true;
      await this.db.advanceProgress({ source: this.source, sourceKind: this.sourceKind, position, commitTimeMicros }, 'forward');
      if (parked) await this.db.insertParked(parked);
      await this.commit(position);
    });
  }

  /**
   * One SQL Server transaction: the progress row written first (it changes in any case, so that capture sees
   * the marker; its position moves only forward), every open 'skipped' record of the transaction marked done,
   * then the changes.
   */
  async applyRetried(transactions: readonly Transaction[], parkedId: string): Promise<boolean> {
    const tx = transactions[0];
    if (transactions.length !== 1 || !tx) throw new SitesyncError('SITESYNC_ERR_MESSAGE_INVALID', `a retried parked message holds ${transactions.length} transactions; sitesync parks them one by one`);
    let applied = false;
    await this.inside(async () => {
      await this.loadTablesOf(tx.changes);
      await this.begin(tx, 'always');
      if ((await this.db.finishRetried(tx.id, parkedId)) === 0) {
        await this.rollback();
        return;
      }
      for (const change of tx.changes) await this.runChange(change, tx);
      await this.commit(tx.position);
      applied = true;
    });
    return applied;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.onClose();
    await this.connection.close().catch(() => undefined);
  }

  private isApplied(position: Position): boolean {
    return this.known !== undefined && this.known !== null && comparePositions(position, this.known) <= 0;
  }

  /**
   * Any failure rolls back what is open; a schema failure also forgets what was read of the target's tables.
   * A server error comes out as one line naming the transaction and the fix, keeping its error number.
   */
  private async inside(work: () => Promise<void>): Promise<void> {
    try {
      await work();
    } catch (error) {
      this.known = undefined;
      this.spilledBytes = null;
      if (this.open && !this.closed) await this.rollback().catch(() => undefined);
      this.forgetTransaction();
      const described = describeApplyError(error, { source: this.source, site: this.options.site });
      if (classifySqlServerError(described) === 'schema') this.tables.clear();
      throw described;
    }
  }

  /**
   * Opens a target transaction with its progress upsert; false (and rolled back) when the row did not move:
   * the transaction is at or below what was applied.
   */
  private async begin(tx: Transaction, mode: 'forward' | 'always'): Promise<boolean> {
    this.forgetTransaction();
    await this.db.begin();
    this.open = true;
    const moved = await this.db.advanceProgress({ source: this.source, sourceKind: this.sourceKind, position: tx.position, commitTimeMicros: tx.commitTimeMicros }, mode);
    if (!moved) {
      await this.rollback();
      this.known = undefined; // something else moved it: read it again when needed
      this.logger.debug({ tx: tx.id }, 'transaction already applied (progress row at or past it); left out');
      return false;
    }
    return true;
  }

  private forgetTransaction(): void {
    this.pendingConflicts = [];
    this.written.clear();
  }

  /**
   * Rolls back the open transaction. A rollback that fails (no answer, a lost reply) leaves the server's state
   * unknown — the transaction may still be open on the connection, and a BEGIN on it would only nest inside
   * (its COMMIT committing nothing) — so the session closes its connection, which makes the server roll back,
   * and every later call is a transient failure: the runner opens a new session.
   */
  private async rollback(): Promise<void> {
    this.forgetTransaction();
    try {
      await this.db.rollback();
      this.open = false;
    } catch (error) {
      this.open = false;
      this.logger.warn({ error: errorLine(error) }, 'the rollback failed: the apply connection is closed so that the server rolls back, and a new session opens');
      await this.close();
      throw error;
    }
  }

  private async commit(position: Position): Promise<void> {
    await this.db.commit();
    this.open = false;
    if (this.known === undefined || this.known === null || comparePositions(position, this.known) > 0) this.known = position;
    const conflicts = this.pendingConflicts;
    this.forgetTransaction();
    for (const conflict of conflicts) this.options.onConflict?.(conflict);
  }

  // ─── changes ───────────────────────────────────────────────────────────────────────────────────────────

  private async runChange(change: Change, tx: Transaction): Promise<void> {
    switch (change.op) {
      case 'insert':
        return this.insert(change.relation, change.newRow, tx);
      case 'read':
        return this.read(change.relation, change.newRow, tx);
      case 'update':
        return this.update(change.relation, change.oldRow, change.newRow, tx);
      case 'delete':
        return this.delete(change.relation, change.oldRow, tx);
      case 'truncate':
        // DELETE, never TRUNCATE TABLE (refused on a CDC-enabled table, error 4711), and only the tables the
        // message lists: a DELETE fires the target's own foreign keys only.
        for (const r of change.relations) await this.db.deleteAll(this.loaded(r).target);
        return;
      case 'message':
        return; // logical messages are for consumers of the stream; a database target has nothing to do
    }
  }

  /**
   * An INSERT. A key that is there already: with a conflict policy, an 'insert_exists' conflict decided with
   * the local writer unknown (the incoming row is applied over the non-key columns); without one, a data error.
   */
  private async insert(relation: RelationInfo, row: RowImage, tx: Transaction): Promise<void> {
    const { target, binders } = this.bindersOf(relation);
    const values = this.columnValues(relation, target, binders, row, () => true);
    const key = this.keyOf(relation, target, binders, row);
    if ((await this.db.insert(target, values)) === 'inserted') {
      if (key) this.written.add(writtenId(target, key));
      return;
    }
    const name = `${target.schema}.${target.table}`;
    if (!key || !(await this.db.exists(target, key))) {
      throw new SqlServerDataError(`an insert into ${name} from transaction ${tx.id} meets a unique index other than the primary key (no row has its key); remove or fix the row at site ${this.options.site}, then retry the parked transaction`);
    }
    const mine = this.written.has(writtenId(target, key));
    if (!mine && !this.options.conflictPolicy) {
      throw new SqlServerDataError(`an insert into ${name} from transaction ${tx.id} meets key ${key.keyJson}, already there at site ${this.options.site}; remove or fix the row there, or set a conflict policy, then retry the parked transaction`);
    }
    const decision = mine ? null : await this.resolve(tx, 'insert_exists', target, key.keyJson);
    if (decision === null || decision.resolution === 'apply') {
      const keyNames = new Set(key.columns.map((c) => c.name));
      const set = this.columnValues(relation, target, binders, row, (column) => !keyNames.has(column.name) && !column.identity);
      if (set.columns.length > 0) await this.db.update(target, set, key);
      this.written.add(writtenId(target, key));
    }
  }

  /**
   * A read (a snapshot's row): inserted, or the row of its primary key overwritten, whatever it holds, with
   * no conflict. The INSERT as an insert's (identity included); when the key is there, an UPDATE by the primary
   * key of every other column (identity columns cannot be updated: they keep their value). A duplicate that
   * no row of the key explains is another unique index: a data error, as for an insert.
   */
  private async read(relation: RelationInfo, row: RowImage, tx: Transaction): Promise<void> {
    const { target, binders } = this.bindersOf(relation);
    const key = this.primaryKeyOf(relation, target, binders, row);
    if ((await this.db.insert(target, this.columnValues(relation, target, binders, row, () => true))) === 'duplicate') {
      const keyNames = new Set(key.columns.map((c) => c.name));
      const set = this.columnValues(relation, target, binders, row, (column) => !keyNames.has(column.name) && !column.identity);
      const found = set.columns.length > 0 ? await this.db.update(target, set, key) : (await this.db.exists(target, key)) ? 1 : 0;
      if (found === 0) {
        throw new SqlServerDataError(
          `a snapshot's row for ${target.schema}.${target.table} from transaction ${tx.id} meets a unique index other than the primary key (no row has its key ${key.keyJson}); remove or fix the row at site ${this.options.site}, then retry the parked transaction`,
        );
      }
    }
    this.written.add(writtenId(target, key));
    // As later changes of this transaction name the row (the source's key), when that differs.
    const own = this.keyOf(relation, target, binders, row);
    if (own) this.written.add(writtenId(target, own));
  }

  /** The target's primary key of `row`, which says which row a read replaces; a schema error when there is none. */
  private primaryKeyOf(relation: RelationInfo, target: TargetTable, binders: readonly (Binder | null)[], row: RowImage): FoundBy {
    const pk = target.primaryKey;
    if (!pk) {
      throw new SitesyncError(
        'SITESYNC_ERR_APPLY_SCHEMA',
        `table ${target.schema}.${target.table} has no primary key at site ${this.options.site}, so a snapshot's rows cannot replace the rows they are; add the primary key it has at the source`,
      );
    }
    const missing = pk.find((name) => {
      const i = relation.columns.findIndex((c) => c.name === name);
      return i < 0 || binders[i] === null;
    });
    if (missing !== undefined) {
      throw new SitesyncError(
        'SITESYNC_ERR_APPLY_SCHEMA',
        `primary key column ${JSON.stringify(missing)} of table ${target.schema}.${target.table} at site ${this.options.site} is not among the columns site ${this.source} sends, so a snapshot's rows cannot say which row they replace; give the table the primary key it has at the source`,
      );
    }
    return this.found(relation, target, binders, row, pk, 'key');
  }

  /** An UPDATE of the row the old image (or the new one, when the key did not change) finds; none: 'update_missing'. */
  private async update(relation: RelationInfo, oldRow: RowImage | null, newRow: RowImage, tx: Transaction): Promise<void> {
    const { target, binders } = this.bindersOf(relation);
    const match = this.matchOf(relation, target, binders, oldRow ?? newRow);
    const unchangedKey = new Map<string, BoundValue>();
    if (match.by === 'key') match.columns.forEach((c, i) => unchangedKey.set(c.name, match.values[i] ?? null));
    const set = this.columnValues(relation, target, binders, newRow, (column, value, index) => {
      // A key column keeping its value is left out (an UPDATE of a key column may be logged as delete and
      // insert); an identity column cannot be updated: left out unless its value changes (then SQL Server
      // refuses it, error 8102).
      if (unchangedKey.has(column.name) && sameBound(unchangedKey.get(column.name)!, value)) return false;
      if (column.identity) return oldRow !== null && !oldRow.unchanged.includes(index) && oldRow.values[index] !== newRow.values[index];
      return true;
    });
    const found = set.columns.length > 0 ? await this.db.update(target, set, match) : (await this.db.exists(target, match)) ? 1 : 0;
    if (found === 0) {
      await this.resolve(tx, 'update_missing', target, match.keyJson);
      return;
    }
    if (match.by === 'key') {
      const after = oldRow ? this.keyOf(relation, target, binders, newRow) : match;
      if (after) this.written.add(writtenId(target, after));
    }
  }

  private async delete(relation: RelationInfo, oldRow: RowImage, tx: Transaction): Promise<void> {
    const { target, binders } = this.bindersOf(relation);
    const match = this.matchOf(relation, target, binders, oldRow);
    if ((await this.db.delete(target, match)) === 0) await this.resolve(tx, 'delete_missing', target, match.keyJson);
  }

  /** Decides a conflict, records it in sitesync.conflicts in the same transaction, and says what to do. */
  private async resolve(tx: Transaction, kind: ConflictKind, target: TargetTable, keyJson: string): Promise<Decision> {
    const policy = this.options.conflictPolicy?.(target.schema, target.table) ?? DEFAULT_POLICY;
    const decision = decide(kind, { site: tx.site, commitTimeMicros: tx.commitTimeMicros }, null, policy);
    const table = `${target.schema}.${target.table}`;
    await this.db.recordConflict({
      kind,
      table,
      keyJson,
      remoteSite: tx.site,
      remoteTransaction: tx.id,
      remoteCommitTimeMicros: tx.commitTimeMicros,
      localSite: null,
      localCommitTimeMicros: null,
      policy: policy.policy,
      winner: decision.winner,
      resolution: decision.resolution === 'apply' ? 'applied' : 'skipped',
    });
    this.pendingConflicts.push({ source: this.source, kind, table, resolution: decision.resolution });
    this.logger.debug({ tx: tx.id, kind, table, key: keyJson, winner: decision.winner }, 'conflict resolved');
    return decision;
  }

  /** The values of the written columns `row` carries (unchanged TOASTed values left out), filtered by `keep`. */
  private columnValues(
    relation: RelationInfo,
    target: TargetTable,
    binders: readonly (Binder | null)[],
    row: RowImage,
    keep: (column: TargetColumn, value: BoundValue, index: number) => boolean,
  ): ColumnValues {
    const columns: TargetColumn[] = [];
    const values: BoundValue[] = [];
    relation.columns.forEach((c, i) => {
      const bind = binders[i];
      if (!bind || row.unchanged.includes(i)) return;
      const column = target.byName.get(c.name)!;
      const value = bind(row.values[i] ?? null);
      if (!keep(column, value, i)) return;
      columns.push(column);
      values.push(value);
    });
    return { columns, values };
  }

  /**
   * How to find the row `row` names: by the target's primary key when the relation carries it (or, under a
   * replica identity other than full, by the relation's key columns); a table without one (replica identity
   * full, no primary key at the target) by every written column of the image, exactly, one row at most.
   */
  private matchOf(relation: RelationInfo, target: TargetTable, binders: readonly (Binder | null)[], row: RowImage): FoundBy {
    const key = this.keyOf(relation, target, binders, row);
    if (key) return key;
    if (relation.replicaIdentity !== 'f') {
      throw new SitesyncError(
        'SITESYNC_ERR_APPLY_SCHEMA',
        `table ${relation.schema}.${relation.table} has no usable key at the source; give it a primary key there (or, at a PostgreSQL source, run ALTER TABLE ... REPLICA IDENTITY FULL)`,
      );
    }
    const names = relation.columns.filter((_, i) => binders[i] !== null && !row.unchanged.includes(i)).map((c) => c.name);
    if (names.length === 0) throw new SitesyncError('SITESYNC_ERR_APPLY_SCHEMA', `table ${relation.schema}.${relation.table} has no column to find a row by at the target; give it a primary key`);
    return this.found(relation, target, binders, row, names, 'image');
  }

  /** The key match of `row` (null: the table has no key the image carries). */
  private keyOf(relation: RelationInfo, target: TargetTable, binders: readonly (Binder | null)[], row: RowImage): FoundBy | null {
    const indexOf = (name: string): number => relation.columns.findIndex((c) => c.name === name);
    const names: readonly string[] | null = relation.replicaIdentity === 'f' || !relation.columns.some((c) => c.key) ? target.primaryKey : relation.columns.filter((c) => c.key).map((c) => c.name);
    if (!names || names.length === 0) return null;
    if (!names.every((k) => indexOf(k) >= 0 && !row.unchanged.includes(indexOf(k)) && binders[indexOf(k)] !== null)) return null;
    return this.found(relation, target, binders, row, names, 'key');
  }

  private found(relation: RelationInfo, target: TargetTable, binders: readonly (Binder | null)[], row: RowImage, names: readonly string[], by: RowMatch['by']): FoundBy {
    const columns: TargetColumn[] = [];
    const values: BoundValue[] = [];
    const json: Record<string, string | null> = {};
    for (const name of names) {
      const i = relation.columns.findIndex((c) => c.name === name);
      const text = row.values[i] ?? null;
      columns.push(target.byName.get(name)!);
      values.push(binders[i]!(text));
      json[name] = text;
    }
    return { by, columns, values, keyJson: JSON.stringify(json) };
  }

  // ─── target tables ─────────────────────────────────────────────────────────────────────────────────────

  private loaded(relation: { readonly schema: string; readonly table: string }): LoadedTable {
    const loaded = this.tables.get(tableKey(relation.schema, relation.table));
    if (!loaded) throw new Error(`internal: table ${relation.schema}.${relation.table} was not loaded before applying`);
    return loaded;
  }

  private bindersOf(relation: RelationInfo): { target: TargetTable; binders: readonly (Binder | null)[] } {
    const loaded = this.loaded(relation);
    let binders = loaded.binders.get(relation);
    if (!binders) {
      const target = loaded.target;
      binders = relation.columns.map((column) => {
        const t = target.byName.get(column.name);
        if (!t) {
          throw new SitesyncError(
            'SITESYNC_ERR_APPLY_SCHEMA',
            `column ${JSON.stringify(column.name)} of table ${target.schema}.${target.table} does not exist at site ${this.options.site}; add it as at site ${this.source} (sitesync retries and resumes by itself)`,
          );
        }
        return isWritable(t) ? binderFor(column, t, target, this.sourceKind) : null;
      });
      loaded.binders.set(relation, binders);
    }
    return { target: loaded.target, binders };
  }

  /** Reads sys.columns for every table the changes touch that is not known yet. */
  private async loadTablesOf(changes: readonly Change[]): Promise<void> {
    for (const change of changes) {
      if (change.op === 'message') continue;
      const relations = change.op === 'truncate' ? change.relations : [change.relation];
      for (const r of relations) {
        if (this.tables.has(tableKey(r.schema, r.table))) continue;
        await this.loadTable(r.schema, r.table);
      }
    }
  }

  private async loadTable(schema: string, table: string): Promise<void> {
    if (this.isReserved(schema)) {
      throw new SitesyncError('SITESYNC_ERR_UNTRUSTED', `a change from site ${this.source} writes into ${schema}.${table}, a schema site ${this.options.site} never writes into (SQL Server's own or sitesync's); sitesync parks it`);
    }
    const target = await this.db.describeTable(schema, table);
    if (!target) {
      throw new SitesyncError('SITESYNC_ERR_APPLY_SCHEMA', `table ${schema}.${table} does not exist at site ${this.options.site}; create it as at site ${this.source} (sitesync retries and resumes by itself)`);
    }
    this.tables.set(tableKey(schema, table), { target, binders: new WeakMap() });
  }
}

function tableKey(schema: string, table: string): string {
  return `${schema}\u0000${table}`;
}

function writtenId(target: TargetTable, key: FoundBy): string {
  return `${target.schema}\u0000${target.table}\u0000${key.keyJson}`;
}

function sameBound(a: BoundValue, b: BoundValue): boolean {
  if (Buffer.isBuffer(a) && Buffer.isBuffer(b)) return a.equals(b);
  return a === b;
}

/** A server error met while applying, described; keeps the server's error number for classify. */
export class SqlServerApplyError extends Error {
  readonly number: number | undefined;
  readonly code: string | undefined;
  constructor(message: string, facts: { readonly number?: number; readonly code?: string }, cause: unknown) {
    super(message, { cause });
    this.name = 'SqlServerApplyError';
    this.number = facts.number;
    this.code = facts.code;
  }
}

/**
 * A server error met while applying, as one line naming what and how to fix it (the error is kept as its
 * cause, its number on the new error, so that classify still grades it).
 */
export function describeApplyError(error: unknown, context: { readonly source: string; readonly site: string }): unknown {
  if (error instanceof SitesyncError || error instanceof SqlServerApplyError) return error;
  const number = errorNumbers(error)[0];
  if (number === undefined) return error;
  const kind = classifySqlServerError(error);
  const fix =
    number === 2627 || number === 2601
      ? 'a unique key at the target refuses it: remove or fix the row there, or set a conflict policy, then retry the parked transaction'
      : number === 547
        ? 'a foreign key or CHECK constraint at the target refuses it: align the target with the source, then retry the parked transaction'
        : number === 515
          ? 'a NOT NULL column at the target gets no value: make it nullable or give it a default as at the source, then retry the parked transaction'
          : kind === 'schema'
            ? 'align the target table or the apply login\'s rights with the source (sitesync retries and resumes by itself)'
            : kind === 'transient'
              ? 'sitesync retries'
              : 'fix the target so that it accepts the change, then retry the parked transaction';
  const code = (error as { code?: unknown })?.code;
  return new SqlServerApplyError(`applying site ${context.source}'s changes at site ${context.site}: ${errorLine(error)} (SQL Server error ${number}); ${fix}`, { number, code: typeof code === 'string' ? code : undefined }, error);
}
