/**
 * Turns MariaDB binlog events (binlog-reader.ts) into whole committed transactions, in commit order. Pure:
 * no I/O; what it needs of the catalog is handed to it (`catalog`), loaded by the source beforehand.
 *
 *   between ──GTID──▶ in-transaction ──(TABLE_MAP | ROWS)*──(XID | COMMIT)──▶ between
 *           ──GTID standalone──▶ one statement (DDL) ──QUERY──▶ between
 *
 * TRUNCATE TABLE of a captured table writes no rows, only its statement: it becomes a transaction of one
 * `truncate` change (restartIdentity: MariaDB's TRUNCATE restarts AUTO_INCREMENT); other DDL is not replicated.
 *
 * Why every event read can be sent at once: in row format a transaction reaches the binlog whole, at its
 * commit (until then it lives in the session's binlog cache). So the rows of a transaction can go out in
 * parts while it is still being read, and memory stays bounded by `maxPartBytes`, except in the cases that
 * end otherwise:
 * - `ROLLBACK` ends a group that holds changes to a non-transactional table (MyISAM, Aria) made in a
 *   transaction that was then rolled back: those changes stay, the transactional ones in the group never
 *   happened. Only the changes of tables the catalog says are not transactional are kept. If a part of such a
 *   group already went out, the stream stops with an error rather than send changes that never happened.
 * - `ROLLBACK TO savepoint` in a group (written when the transaction also changed a non-transactional table):
 *   the transactional changes since the savepoint are dropped, with the same rule for parts already sent.
 * - XA PREPARE groups commit (or not) later in another group: not supported, the stream stops and says so.
 *
 * Positions (mariadb-positions.ts): a transaction's position is the end offset of its GTID event, known
 * before its first row so that every part carries it; its checkpoint is the end of its commit event.
 *
 * Relayed writes: sitesync's MariaDB sink writes its progress row, `sitesync.apply_progress`, first in every
 * transaction it applies, so a transaction that writes that table was applied here from another site: its
 * changes are dropped and it is reported as skipped, and the commit time in that row (the source site's own)
 * moves the causal context `seen` that every later transaction of this site carries. A write to that table
 * after changes already went out in a part means the sink broke its rule: the stream stops with an error
 * rather than let the transaction loop back.
 *
 * Snapshot markers: the binlog carries no logical messages, so a snapshot's marker is a row inserted into
 * `sitesync.snapshot_markers` (mariadb-snapshot-control.ts), in the transaction that moves the snapshot's row
 * in `sitesync.snapshots`. Each such insert becomes a `{ op: 'message', prefix: SNAPSHOT_MARKER_PREFIX }`
 * change of that transaction, never a row change (src/capture/snapshot-chunks.ts puts the chunk in its place);
 * the rest of the bookkeeping database, `snapshots` included, is not captured.
 *
 * Commit time: MariaDB stamps each event with the start time of its statement in whole seconds, and the GTID
 * event with the commit's; commitTimeMicros is that second × 10^6. Two transactions of one second are not
 * ordered by it (their positions are): last-writer-wins between sites can only tell seconds apart here.
 *
 * Old rows: with binlog_row_image=FULL every update and delete carries the whole before image, but a change
 * says what the PostgreSQL connector's says, so sinks see one meaning: for a table with a primary key
 * (replica identity 'd') an update's old row is given only when a key column changed, and then, like a
 * delete's, with the key columns only (others null); for a table without one ('f', every column is the key)
 * the whole before image, always.
 */
import type { SourceHandler } from '../../src/capture/source.ts';
import { SNAPSHOT_MARKER_PREFIX } from '../../src/capture/snapshot-marker.ts';
import { BOOKKEEPING_SCHEMA } from '../../src/config/names.ts';
import { DecodeError, SitesyncError } from '../../src/errors.ts';
import type { Change, ColumnInfo, RelationInfo, RowImage, SeenSites, Transaction } from '../../src/events/transaction.ts';
import { changeBytes, transactionId } from '../../src/events/transaction.ts';
import type { BinlogColumn, BinlogEvent } from './binlog-reader.ts';
import { columnType, type CatalogColumn } from './mariadb-kinds.ts';
import { describePosition, formatCheckpoint, positionOf, type BinlogCoordinates } from './mariadb-positions.ts';
import { valueFormatter, type ValueFormatter } from './mariadb-values.ts';

/** The table the MariaDB sink writes first in every transaction it applies, in the bookkeeping database (see the file comment). */
export const APPLY_PROGRESS_TABLE = 'apply_progress';

/**
 * The bookkeeping table a MariaDB site's snapshot markers are inserted into (mariadb-snapshot-control.ts):
 * an insert there is the marker, handed on as a `message` change with SNAPSHOT_MARKER_PREFIX.
 */
export const SNAPSHOT_MARKERS_TABLE = 'snapshot_markers';

/** The bookkeeping table of a MariaDB site's snapshots: never captured. */
export const SNAPSHOTS_TABLE = 'snapshots';

/** MariaDB's own schemas: never captured. */
export const SYSTEM_SCHEMAS: ReadonlySet<string> = new Set(['mysql', 'sys', 'information_schema', 'performance_schema']);

/** What information_schema says of a table (loaded by the source before its table map is accepted). */
export interface TableCatalog {
  /** Columns by name. */
  readonly columns: ReadonlyMap<string, CatalogColumn>;
  /** Primary key column names, for when the binlog does not carry them. */
  readonly primaryKey: readonly string[];
  /** Whether the table's engine is transactional (InnoDB); false for MyISAM, Aria… */
  readonly transactional: boolean;
}

export interface GrouperOptions {
  readonly site: string;
  /** Changes held before a part is sent; a transaction smaller than this goes out whole. */
  readonly maxPartBytes: number;
  /** `schema.table` names; null = every table outside MariaDB's own schemas and sitesync's. */
  readonly tables: readonly string[] | null;
  /** The causal context as of where the stream resumes. */
  readonly seen: SeenSites;
  /** Where the stream starts: the checkpoint it resumes after. */
  readonly start: BinlogCoordinates;
  /** The catalog of a table, when the source has it. */
  readonly catalog?: (database: string, table: string) => TableCatalog | undefined;
  /** The database of sitesync's own tables at this site (its apply_progress marks relayed writes); default `sitesync`. */
  readonly bookkeeping?: string;
}

/** A table as one table map described it, with what turns its rows into changes. */
interface TableState {
  readonly database: string;
  readonly table: string;
  /** null: not captured (filtered out, sitesync's own). */
  readonly relation: RelationInfo | null;
  readonly formatters: readonly ValueFormatter[];
  readonly keys: readonly number[];
  readonly transactional: boolean;
  /** sitesync.apply_progress: where to read the source site and its commit time. */
  readonly progress: { readonly source: number; readonly commitTime: number } | null;
  /** sitesync.snapshot_markers: the column that holds the marker. */
  readonly marker?: { readonly content: number };
}

interface OpenTransaction {
  readonly position: string;
  readonly commitTimeMicros: bigint;
  readonly sourceTxId: string;
  relayed: boolean;
  /** The newest (source site, commit time) the progress rows of a relayed transaction name. */
  relayedSeen: Map<string, bigint> | null;
  changes: Change[];
  /** The table of each held change (for a ROLLBACK, which keeps the non-transactional ones). */
  tables: TableState[];
  bytes: number;
  partsSent: number;
  /** Changes already sent in parts. */
  changesSent: number;
  /** Savepoints by name (lower case): how many changes the transaction had made when each was set. */
  savepoints: Map<string, number>;
}

export class TransactionGrouper {
  private file: string;
  private offset: number;
  private open: OpenTransaction | null = null;
  /** Inside a standalone event group (DDL): its statement ends it. */
  private standalone: { readonly position: string; readonly timestamp: number; readonly gtid: string } | null = null;
  /** The last relation described for each captured `database.table` (what a TRUNCATE names). */
  private readonly relations = new Map<string, RelationInfo>();
  private readonly tables = new Map<number, TableState>();
  /** Table states by their full description, so that one table keeps one RelationInfo across table ids. */
  private readonly described = new Map<string, TableState>();
  private readonly wanted: ReadonlySet<string> | null;
  private seenSites: SeenSites;
  private readonly bookkeeping: string;

  constructor(
    private readonly options: GrouperOptions,
    private readonly handler: SourceHandler,
  ) {
    this.file = options.start.file;
    this.offset = options.start.offset;
    this.seenSites = options.seen;
    this.wanted = options.tables === null ? null : new Set(options.tables);
    this.bookkeeping = options.bookkeeping ?? BOOKKEEPING_SCHEMA;
  }

  /** The causal context after everything accepted so far. */
  get seen(): SeenSites {
    return this.seenSites;
  }

  /** True inside an event group: the read position is then no place to resume from. */
  get inTransaction(): boolean {
    return this.open !== null || this.standalone !== null;
  }

  /** Where everything accepted so far ends (file and offset of the last event's end). */
  get coordinates(): BinlogCoordinates {
    return { file: this.file, offset: this.offset };
  }

  /** The checkpoint after everything accepted so far; safe to resume from only outside a transaction. */
  get checkpoint(): string {
    return formatCheckpoint(this.coordinates);
  }

  /** Whether rows of `database.table` are captured (the reader's filters, the catalog's loading). */
  captures(database: string, table: string): boolean {
    if (database === this.bookkeeping || database === BOOKKEEPING_SCHEMA || SYSTEM_SCHEMAS.has(database)) return false;
    return this.wanted === null || this.wanted.has(`${database}.${table}`);
  }

  accept(event: BinlogEvent): void {
    switch (event.type) {
      case 'rotate':
        if (this.inTransaction) throw new DecodeError(`binlog rotated to ${event.file} inside a transaction at ${this.where()}`);
        this.file = event.file;
        this.offset = event.offset;
        return;
      case 'gtid':
        if (this.inTransaction) throw new DecodeError(`binlog GTID ${event.gtid} inside an open transaction at ${this.where()}`);
        if (event.xa !== null) this.unsupportedXa(event.gtid);
        this.advance(event.end);
        if (event.standalone) {
          this.standalone = { position: positionOf(this.file, event.end), timestamp: event.timestamp, gtid: event.gtid };
          return;
        }
        this.begin(event.end, event.timestamp, event.gtid);
        return;
      case 'query':
        this.query(event.query, event.database, event.end, event.timestamp);
        return;
      case 'tablemap':
        this.advance(event.end);
        this.tables.set(event.tableId, this.describe(event));
        return;
      case 'rows':
        this.advance(event.end);
        this.rows(event);
        return;
      case 'xid':
        this.commit(event.end);
        return;
      case 'xaprepare':
        this.unsupportedXa(this.open?.sourceTxId ?? 'unknown');
        return;
      case 'other':
        // Nothing of a transaction; the checkpoint stays at the last event group's end (the source uses
        // where these end, for how far it has read the log).
        return;
      case 'heartbeat':
        // The server sent everything up to here and waits: a place to resume from when nothing is open.
        if (!this.inTransaction && event.file === this.file && event.offset >= this.offset) {
          this.offset = event.offset;
          this.handler.idle(this.checkpoint, this.seenSites);
        }
        return;
    }
  }

  private advance(end: number): void {
    if (end > 0) this.offset = end; // MariaDB may write 0 as the end of events inside a transaction
  }

  private where(): string {
    return `${this.file}:${this.offset}`;
  }

  private begin(end: number, timestampSeconds: number, gtid: string | null): void {
    const position = positionOf(this.file, end);
    this.open = {
      position,
      commitTimeMicros: BigInt(timestampSeconds) * 1_000_000n,
      sourceTxId: gtid ?? describePosition(position),
      relayed: false,
      relayedSeen: null,
      changes: [],
      tables: [],
      bytes: 0,
      partsSent: 0,
      changesSent: 0,
      savepoints: new Map(),
    };
  }

  private query(text: string, database: string, end: number, timestamp: number): void {
    const statement = text.trim().toUpperCase();
    if (this.open) {
      if (statement === 'COMMIT' || statement.startsWith('XA COMMIT')) this.commit(end);
      else if (statement === 'ROLLBACK') this.rollback(end);
      else {
        this.advance(end);
        const savepoint = /^SAVEPOINT\s+(.+)$/is.exec(text.trim());
        const rollbackTo = /^ROLLBACK\s+(?:WORK\s+)?TO\s+(?:SAVEPOINT\s+)?(.+)$/is.exec(text.trim());
        if (savepoint) this.open.savepoints.set(savepointName(savepoint[1]!), this.open.changesSent + this.open.changes.length);
        else if (rollbackTo) this.rollbackTo(this.open, savepointName(rollbackTo[1]!));
        // else: BEGIN after a GTID event, XA END…: nothing to keep
      }
      return;
    }
    if (statement === 'BEGIN') {
      // A server that sends no GTID events (or a MySQL one) opens its transactions so.
      this.advance(end);
      this.begin(end, timestamp, null);
      return;
    }
    if (statement.startsWith('XA ')) this.unsupportedXa(text.trim());
    // A statement that commits by itself (DDL and the like). Whatever it changed, the table maps that come
    // after it describe; the catalog refinements held so far may no longer hold.
    const group = this.standalone ?? { position: positionOf(this.file, end), timestamp, gtid: null };
    this.standalone = null;
    this.described.clear();
    this.advance(end);
    const truncated = truncatedTable(text, database);
    if (truncated && this.captures(truncated.database, truncated.table)) {
      // TRUNCATE writes no rows to the binlog: it travels as what it is. It also restarts AUTO_INCREMENT.
      const relation = this.relations.get(`${truncated.database}.${truncated.table}`) ?? { schema: truncated.database, table: truncated.table, replicaIdentity: 'd', columns: [] };
      const tx: Transaction = {
        id: transactionId(this.options.site, group.position),
        site: this.options.site,
        position: group.position,
        commitTimeMicros: BigInt(group.timestamp) * 1_000_000n,
        sourceTxId: group.gtid ?? describePosition(group.position),
        seen: this.seenSites,
        changes: [{ op: 'truncate', relations: [relation], cascade: false, restartIdentity: true }],
      };
      this.handler.transaction(tx, null, this.checkpoint);
      return;
    }
    this.handler.idle(this.checkpoint, this.seenSites);
  }

  private describe(event: Extract<BinlogEvent, { type: 'tablemap' }>): TableState {
    const key = JSON.stringify([event.database, event.table, event.columns, event.primaryKey]);
    const known = this.described.get(key);
    if (known) return known;
    const isProgress = event.database === this.bookkeeping && event.table === APPLY_PROGRESS_TABLE;
    const catalog = this.options.catalog?.(event.database, event.table);
    let state: TableState;
    if (isProgress) {
      const source = event.columns.findIndex((c) => c.name === 'source');
      const commitTime = event.columns.findIndex((c) => c.name === 'commit_time_micros');
      if (source < 0 || commitTime < 0) {
        throw new DecodeError(`${this.bookkeeping}.${APPLY_PROGRESS_TABLE} has no columns source and commit_time_micros in the binlog (is binlog_row_metadata=FULL?)`);
      }
      state = { database: event.database, table: event.table, relation: null, formatters: [], keys: [], transactional: catalog?.transactional ?? true, progress: { source, commitTime } };
    } else if (event.database === this.bookkeeping && event.table === SNAPSHOT_MARKERS_TABLE) {
      const content = event.columns.findIndex((c) => c.name === 'content');
      if (content < 0) throw new DecodeError(`${this.bookkeeping}.${SNAPSHOT_MARKERS_TABLE} has no column content in the binlog (is binlog_row_metadata=FULL?)`);
      state = { database: event.database, table: event.table, relation: null, formatters: [], keys: [], transactional: catalog?.transactional ?? true, progress: null, marker: { content } };
    } else if (!this.captures(event.database, event.table)) {
      state = { database: event.database, table: event.table, relation: null, formatters: [], keys: [], transactional: catalog?.transactional ?? true, progress: null };
    } else {
      state = this.capturedTable(event, catalog);
    }
    this.described.set(key, state);
    return state;
  }

  private capturedTable(event: Extract<BinlogEvent, { type: 'tablemap' }>, catalog: TableCatalog | undefined): TableState {
    const keyIndexes =
      event.primaryKey && event.primaryKey.length > 0
        ? [...event.primaryKey]
        : event.primaryKey === null && catalog && catalog.primaryKey.length > 0
          ? catalog.primaryKey.map((name) => event.columns.findIndex((c) => c.name === name)).filter((i) => i >= 0)
          : [];
    const hasKey = keyIndexes.length > 0;
    const types = event.columns.map((column: BinlogColumn) => columnType(column, catalog?.columns.get(column.name)));
    const columns = event.columns.map(
      (column, i): ColumnInfo => ({ name: column.name, kind: types[i]!.kind, native: types[i]!.native, key: hasKey ? keyIndexes.includes(i) : true }),
    );
    const relation: RelationInfo = { schema: event.database, table: event.table, replicaIdentity: hasKey ? 'd' : 'f', columns };
    this.relations.set(`${event.database}.${event.table}`, relation);
    const formatters = event.columns.map((column, i) => valueFormatter(types[i]!, () => `column ${column.name} of ${event.database}.${event.table}`));
    return {
      database: event.database,
      table: event.table,
      relation,
      formatters,
      keys: hasKey ? keyIndexes : columns.map((_, i) => i),
      transactional: catalog?.transactional ?? true,
      progress: null,
    };
  }

  private current(what: string): OpenTransaction {
    if (!this.open) throw new DecodeError(`binlog ${what} outside a transaction at ${this.where()}`);
    return this.open;
  }

  private rows(event: Extract<BinlogEvent, { type: 'rows' }>): void {
    const tx = this.current('rows event');
    const table = this.tables.get(event.tableId);
    if (!table) throw new DecodeError(`binlog rows for table id ${event.tableId} before its table map at ${this.where()}`);
    if (table.progress) {
      this.relayedWrite(tx, event, table.progress);
      return;
    }
    if (table.marker) {
      this.markers(tx, event, table, table.marker.content);
      return;
    }
    const relation = table.relation;
    if (tx.relayed || relation === null) return;
    const image = (values: readonly unknown[]): RowImage => ({ values: table.formatters.map((format, i) => format(values[i])), unchanged: [] });
    const identity = relation.replicaIdentity === 'd';
    const keyOnly = (row: RowImage): RowImage => ({ values: row.values.map((v, i) => (table.keys.includes(i) ? v : null)), unchanged: [] });
    if (event.op === 'update') {
      for (const { before, after } of event.rows) {
        const newRow = image(after);
        const oldRow = image(before);
        const keyChanged = table.keys.some((i) => oldRow.values[i] !== newRow.values[i]);
        this.push(tx, table, { op: 'update', relation, oldRow: identity ? (keyChanged ? keyOnly(oldRow) : null) : oldRow, newRow });
      }
      return;
    }
    if (event.op === 'insert') {
      for (const values of event.rows) this.push(tx, table, { op: 'insert', relation, newRow: image(values) });
      return;
    }
    for (const values of event.rows) {
      const oldRow = image(values);
      this.push(tx, table, { op: 'delete', relation, oldRow: identity ? keyOnly(oldRow) : oldRow });
    }
  }

  /**
   * Rows inserted into snapshot_markers: each one a snapshot marker, as a logical message is at a PostgreSQL
   * site. Updates and deletes of that table (the control prunes old rows) are nothing.
   */
  private markers(tx: OpenTransaction, event: Extract<BinlogEvent, { type: 'rows' }>, table: TableState, column: number): void {
    if (tx.relayed || event.op !== 'insert') return;
    for (const values of event.rows) {
      const value = values[column];
      if (value === null || value === undefined) continue;
      const content = Buffer.isBuffer(value) ? Buffer.from(value) : Buffer.from(String(value), 'utf8');
      this.push(tx, table, { op: 'message', prefix: SNAPSHOT_MARKER_PREFIX, content });
    }
  }

  private relayedWrite(tx: OpenTransaction, event: Extract<BinlogEvent, { type: 'rows' }>, columns: { source: number; commitTime: number }): void {
    if (tx.partsSent > 0) {
      throw new DecodeError(
        `transaction ${tx.sourceTxId} at ${this.where()} writes ${this.bookkeeping}.${APPLY_PROGRESS_TABLE} after changes already sent: the MariaDB sink must write it first in every transaction it applies; stopping rather than let the transaction loop back`,
      );
    }
    tx.relayed = true;
    tx.changes = [];
    tx.tables = [];
    tx.bytes = 0;
    const images = event.op === 'update' ? event.rows.map((r) => r.after) : event.op === 'insert' ? event.rows : [];
    for (const values of images) {
      const source = values[columns.source];
      const micros = values[columns.commitTime];
      if (typeof source !== 'string' || (typeof micros !== 'number' && typeof micros !== 'string' && typeof micros !== 'bigint')) continue;
      let time: bigint;
      try {
        time = BigInt(micros);
      } catch {
        continue;
      }
      tx.relayedSeen ??= new Map();
      const before = tx.relayedSeen.get(source);
      if (before === undefined || before < time) tx.relayedSeen.set(source, time);
    }
  }

  private push(tx: OpenTransaction, table: TableState, change: Change): void {
    tx.changes.push(change);
    tx.tables.push(table);
    tx.bytes += changeBytes(change);
    if (tx.bytes >= this.options.maxPartBytes) {
      this.handler.transaction(this.snapshot(tx), { index: tx.partsSent, last: false }, null);
      tx.partsSent++;
      tx.changesSent += tx.changes.length;
      tx.changes = [];
      tx.tables = [];
      tx.bytes = 0;
    }
  }

  private commit(end: number): void {
    const tx = this.current('commit');
    this.open = null;
    this.advance(end);
    const checkpoint = this.checkpoint;
    if (tx.relayed) {
      this.noteRelayed(tx);
      this.handler.skipped(tx.position, checkpoint, 'relayed', this.seenSites);
    } else if (tx.changes.length === 0 && tx.partsSent === 0) {
      this.handler.skipped(tx.position, checkpoint, 'empty', this.seenSites);
    } else {
      const part = tx.partsSent > 0 ? { index: tx.partsSent, last: true } : null;
      this.handler.transaction(this.snapshot(tx), part, checkpoint);
    }
  }

  /**
   * A group ended by ROLLBACK: its changes to transactional tables never happened; those to
   * non-transactional tables did (they cannot be rolled back) and are what the transaction is.
   */
  private rollback(end: number): void {
    const tx = this.current('rollback');
    if (tx.partsSent > 0) {
      throw new DecodeError(
        `transaction ${tx.sourceTxId} ends with ROLLBACK at ${this.file}:${end} after parts of it were sent (it changed non-transactional tables in a transaction larger than capture.maxMessageBytes that was rolled back); sitesync cannot take back what it sent: apply the non-transactional changes of that transaction by hand at the other sites and resume capture after it`,
      );
    }
    this.open = null;
    this.advance(end);
    const checkpoint = this.checkpoint;
    if (tx.relayed) {
      // The sink's own progress row is transactional: rolled back, it moves nothing.
      this.handler.skipped(tx.position, checkpoint, 'relayed', this.seenSites);
      return;
    }
    const kept = tx.changes.filter((_, i) => !tx.tables[i]!.transactional);
    if (kept.length === 0) {
      this.handler.skipped(tx.position, checkpoint, 'empty', this.seenSites);
      return;
    }
    tx.changes = kept;
    this.handler.transaction(this.snapshot(tx), null, checkpoint);
  }

  /**
   * `ROLLBACK TO savepoint` inside a group: MariaDB writes it when the transaction also changed a
   * non-transactional table (its binlog cache cannot simply be cut back then). The transactional changes made
   * since the savepoint never happened; the non-transactional ones did.
   */
  private rollbackTo(tx: OpenTransaction, name: string): void {
    const mark = tx.savepoints.get(name);
    if (mark === undefined) throw new DecodeError(`binlog ROLLBACK TO ${name} without its SAVEPOINT in transaction ${tx.sourceTxId} at ${this.where()}`);
    for (const [other, at] of tx.savepoints) if (at > mark) tx.savepoints.delete(other);
    if (tx.relayed) return;
    if (mark < tx.changesSent) {
      throw new DecodeError(
        `transaction ${tx.sourceTxId} rolls back to savepoint ${name} at ${this.where()} after changes made since went out in parts (a transaction larger than capture.maxMessageBytes that also changed non-transactional tables); sitesync cannot take back what it sent: apply that transaction's outcome by hand at the other sites and resume capture after it`,
      );
    }
    const keep = mark - tx.changesSent;
    const changes = tx.changes.slice(0, keep);
    const tables = tx.tables.slice(0, keep);
    for (let i = keep; i < tx.changes.length; i++) {
      if (tx.tables[i]!.transactional) continue;
      changes.push(tx.changes[i]!);
      tables.push(tx.tables[i]!);
    }
    tx.changes = changes;
    tx.tables = tables;
    tx.bytes = changes.reduce((n, c) => n + changeBytes(c), 0);
  }

  private noteRelayed(tx: OpenTransaction): void {
    if (!tx.relayedSeen) return;
    let next: Record<string, bigint> | null = null;
    for (const [site, micros] of tx.relayedSeen) {
      const before = Object.hasOwn(this.seenSites, site) ? this.seenSites[site] : undefined;
      if (before !== undefined && before >= micros) continue;
      next ??= { ...this.seenSites };
      next[site] = micros;
    }
    if (next) this.seenSites = next; // replaced, never mutated: every transaction keeps its own context
  }

  private unsupportedXa(what: string): never {
    throw new SitesyncError(
      'SITESYNC_ERR_CONFIG',
      `site ${this.options.site} wrote an XA transaction (${what}) at ${this.where()}: sitesync's MariaDB capture cannot follow XA PREPARE/COMMIT yet; commit it without XA, or move the capture past it by setting the checkpoint of ${this.options.site} in ${this.bookkeeping}.capture_progress after it (its changes then reach no other site)`,
    );
  }

  private snapshot(tx: OpenTransaction): Transaction {
    return {
      id: transactionId(this.options.site, tx.position),
      site: this.options.site,
      position: tx.position,
      commitTimeMicros: tx.commitTimeMicros,
      sourceTxId: tx.sourceTxId,
      seen: this.seenSites,
      changes: tx.changes,
    };
  }
}

/** A savepoint's name as a query event writes it (`` `a` ``), compared as MariaDB does (case-insensitive). */
function savepointName(text: string): string {
  const name = text.trim();
  const unquoted = name.startsWith('`') && name.endsWith('`') && name.length >= 2 ? name.slice(1, -1).replace(/``/g, '`') : name;
  return unquoted.toLowerCase();
}

const IDENTIFIER = '(`(?:[^`]|``)+`|[A-Za-z0-9_$\\u0080-\\uffff]+)';
const TRUNCATE = new RegExp(`^\\s*TRUNCATE\\s+(?:TABLE\\s+)?${IDENTIFIER}(?:\\s*\\.\\s*${IDENTIFIER})?\\s*;?\\s*$`, 'i');

/** The table a `TRUNCATE [TABLE] [db.]table` statement names (the query event's database by default); null for any other statement. */
export function truncatedTable(query: string, database: string): { database: string; table: string } | null {
  const m = TRUNCATE.exec(query);
  if (!m) return null;
  const unquote = (name: string): string => (name.startsWith('`') ? name.slice(1, -1).replace(/``/g, '`') : name);
  return m[2] === undefined ? { database, table: unquote(m[1]!) } : { database: unquote(m[1]!), table: unquote(m[2]) };
}
