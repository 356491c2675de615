/**
 * An in-memory sink: tables as maps, progress per source, parts and parked records, each transaction
 * applied all or nothing with its progress. It keeps every promise of the Sink contract (src/apply/sink.ts)
 * so the apply runner's tests and the conformance suite can drive it without a database, and the
 * conformance suite proves it keeps them as the real connectors do. Failures are injected: refused data,
 * a lost connection just before the commit.
 */
import { comparePositions } from '../../src/events/position.ts';
import { SitesyncError } from '../../src/errors.ts';
import type { Change, Position, RelationInfo, RowImage, Transaction, TransactionPart } from '../../src/events/transaction.ts';
import type { ApplyErrorKind, NewParkedRecord, ParkedRecord, Sink, SourceSession } from '../../src/apply/sink.ts';

/** The target refused a value (a constraint, a type): what a database's data errors are. */
export class FakeDataError extends Error {}
/** The connection was lost: what a database's transient errors are. */
export class FakeConnectionLost extends Error {}
/** A table the target does not have. */
export class FakeMissingTable extends Error {}

type Row = (string | null)[];

/** One table: its rows by key (the key columns' values, or the whole row for a table without a key). */
class FakeTable {
  readonly rows = new Map<string, Row>();
  constructor(readonly columns: readonly string[]) {}
}

/** The fake database of one target site; survives its sink (a restart reads it again). */
export class FakeStore {
  readonly tables = new Map<string, FakeTable>();
  readonly progress = new Map<string, { position: Position; commitTimeMicros: bigint }>();
  readonly parts = new Map<string, Transaction[]>();
  readonly parked = new Map<string, ParkedRecord>();
  /** Every commit, in order: the source and position it recorded (what a test checks order and exactly-once by). */
  readonly commits: { source: string; position: Position; retried: boolean }[] = [];
  /** Refuse a change (a data error) when this says so. */
  refuse: ((change: Change) => string | null) | null = null;
  /** Lose the connection before the next N commits (after their changes were written). */
  loseConnectionBeforeCommit = 0;
  /** Bumped when every connection is killed: sessions opened before fail from then on. */
  generation = 0;

  /** Kills every session's connection, as a crash of the process or the network would. */
  killConnections(): void {
    this.generation++;
  }

  /** Creates a table (as an administrator would before replicating into it). */
  createTable(schema: string, table: string, columns: readonly string[]): void {
    this.tables.set(`${schema}.${table}`, new FakeTable(columns));
  }

  /** A table's rows as canonical text, in no particular order. */
  rows(schema: string, table: string): Row[] {
    const t = this.tables.get(`${schema}.${table}`);
    if (!t) throw new Error(`no table ${schema}.${table}`);
    return [...t.rows.values()].map((r) => [...r]);
  }
}

export class FakeSink implements Sink {
  readonly kind = 'fake';
  private readonly sessions = new Set<FakeSession>();

  constructor(
    readonly site: string,
    readonly store: FakeStore,
  ) {}

  isReservedSchema(schema: string): boolean {
    return schema === 'sitesync';
  }

  async recordParked(record: NewParkedRecord): Promise<void> {
    this.store.parked.set(record.id, { ...record, done: false });
  }

  async findParked(id: string): Promise<ParkedRecord | null> {
    return this.store.parked.get(id) ?? null;
  }

  async finishParked(id: string): Promise<void> {
    const record = this.store.parked.get(id);
    if (record) this.store.parked.set(id, { ...record, done: true });
  }

  classify(error: unknown): ApplyErrorKind {
    if (error instanceof FakeConnectionLost) return 'transient';
    if (error instanceof FakeMissingTable) return 'schema';
    if (error instanceof SitesyncError && (error.code === 'SITESYNC_ERR_GAP' || error.code === 'SITESYNC_ERR_APPLY_SCHEMA')) return 'schema';
    return 'data';
  }

  async openSession(source: string): Promise<SourceSession> {
    const session = new FakeSession(this.store, source, () => this.sessions.delete(session));
    this.sessions.add(session);
    return session;
  }

  async close(): Promise<void> {
    for (const session of [...this.sessions]) await session.close();
  }
}

class FakeSession implements SourceSession {
  private closed = false;
  private readonly generation: number;

  constructor(
    private readonly store: FakeStore,
    private readonly source: string,
    private readonly onClose: () => void,
  ) {
    this.generation = store.generation;
  }

  async progress(): Promise<Position | null> {
    this.open();
    return this.store.progress.get(this.source)?.position ?? null;
  }

  async apply(transactions: readonly Transaction[]): Promise<void> {
    this.open();
    for (const tx of transactions) this.commit(tx.position, tx.commitTimeMicros, tx.changes, false);
  }

  async applyPart(transaction: Transaction, part: TransactionPart): Promise<void> {
    this.open();
    const key = `${this.source}:${transaction.id}`;
    if (part.index === 0) this.store.parts.set(key, []);
    const held = this.store.parts.get(key);
    if (!held || held.length !== part.index) {
      throw new SitesyncError('SITESYNC_ERR_GAP', `part ${part.index} of ${transaction.id} arrived, but ${held?.length ?? 0} parts of it are held`);
    }
    held.push(transaction);
    if (!part.last) return;
    this.commit(transaction.position, transaction.commitTimeMicros, held.flatMap((p) => p.changes), false);
    this.store.parts.delete(key);
  }

  async skip(position: Position, commitTimeMicros: bigint, parked?: NewParkedRecord): Promise<void> {
    this.open();
    this.commit(position, commitTimeMicros, [], false);
    if (parked) this.store.parked.set(parked.id, { ...parked, done: false });
  }

  async applyRetried(transactions: readonly Transaction[], parkedId: string): Promise<boolean> {
    this.open();
    const tx = transactions[0]!;
    const open = [...this.store.parked.values()].filter((r) => r.transactionId === tx.id && r.kind === 'skipped' && !r.done);
    if (open.length === 0 || this.store.parked.get(parkedId)?.done) return false;
    this.commit(tx.position, tx.commitTimeMicros, tx.changes, true);
    for (const r of open) this.store.parked.set(r.id, { ...r, done: true });
    return true;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.onClose();
  }

  private open(): void {
    if (this.closed) throw new FakeConnectionLost('session closed');
    if (this.store.generation !== this.generation) throw new FakeConnectionLost('connection killed');
  }

  /** One target commit: the changes and the progress, all or nothing. */
  private commit(position: Position, commitTimeMicros: bigint, changes: readonly Change[], retried: boolean): void {
    const done = this.store.progress.get(this.source);
    if (!retried && done && comparePositions(position, done.position) <= 0) {
      throw new Error(`fake sink: ${this.source} ${position} is at or below the progress ${done.position}: the runner must not send it again`);
    }
    const undo: (() => void)[] = [];
    try {
      for (const change of changes) this.change(change, undo);
      if (this.store.loseConnectionBeforeCommit > 0) {
        this.store.loseConnectionBeforeCommit--;
        throw new FakeConnectionLost('connection lost before COMMIT');
      }
    } catch (error) {
      for (const step of undo.reverse()) step();
      throw error;
    }
    if (!retried || !done || comparePositions(position, done.position) > 0) this.store.progress.set(this.source, { position, commitTimeMicros });
    this.store.commits.push({ source: this.source, position, retried });
  }

  private change(change: Change, undo: (() => void)[]): void {
    const refused = this.store.refuse?.(change) ?? doesNotFit(change);
    if (refused) throw new FakeDataError(refused);
    switch (change.op) {
      case 'insert': {
        const t = this.table(change.relation);
        const key = keyOf(change.relation, change.newRow.values);
        if (t.rows.has(key)) throw new FakeDataError(`duplicate key ${key} in ${change.relation.schema}.${change.relation.table}`);
        this.set(t, key, [...change.newRow.values], undo);
        return;
      }
      case 'read': {
        // A snapshot's row: whatever the table holds under its key becomes this row. Without a key, nothing
        // says which row it replaces (a real sink's table without a primary key).
        const t = this.table(change.relation);
        if (!change.relation.columns.some((c) => c.key)) {
          throw new SitesyncError('SITESYNC_ERR_APPLY_SCHEMA', `table ${change.relation.schema}.${change.relation.table} has no primary key here, so a snapshot's rows cannot replace the rows they are; add the primary key it has at the source`);
        }
        const key = keyOf(change.relation, change.newRow.values);
        if (t.rows.has(key)) this.delete(t, key, undo);
        this.set(t, key, [...change.newRow.values], undo);
        return;
      }
      case 'update': {
        const t = this.table(change.relation);
        const found = this.find(t, change.relation, change.oldRow ?? change.newRow);
        if (found === null) return; // update_missing: nothing to update
        const next = change.newRow.values.map((v, i) => (change.newRow.unchanged.includes(i) ? found.row[i]! : v));
        this.delete(t, found.key, undo);
        this.set(t, keyOf(change.relation, next), next, undo);
        return;
      }
      case 'delete': {
        const t = this.table(change.relation);
        const found = this.find(t, change.relation, change.oldRow);
        if (found) this.delete(t, found.key, undo);
        return;
      }
      case 'truncate':
        for (const relation of change.relations) {
          const t = this.table(relation);
          for (const [key] of [...t.rows]) this.delete(t, key, undo);
        }
        return;
      case 'message':
        return;
    }
  }

  private table(relation: RelationInfo): FakeTable {
    const t = this.store.tables.get(`${relation.schema}.${relation.table}`);
    if (!t) throw new FakeMissingTable(`relation "${relation.schema}.${relation.table}" does not exist`);
    return t;
  }

  /** The row a change's old image (or new, for its key) names: by key, or by every column for a table without one. */
  private find(t: FakeTable, relation: RelationInfo, image: RowImage): { key: string; row: Row } | null {
    if (relation.columns.some((c) => c.key)) {
      const key = keyOf(relation, image.values);
      const row = t.rows.get(key);
      return row ? { key, row } : null;
    }
    for (const [key, row] of t.rows) if (row.every((v, i) => v === image.values[i])) return { key, row };
    return null;
  }

  private set(t: FakeTable, key: string, row: Row, undo: (() => void)[]): void {
    const before = t.rows.get(key);
    t.rows.set(key, row);
    undo.push(() => (before === undefined ? t.rows.delete(key) : t.rows.set(key, before)));
  }

  private delete(t: FakeTable, key: string, undo: (() => void)[]): void {
    const before = t.rows.get(key);
    t.rows.delete(key);
    if (before !== undefined) undo.push(() => t.rows.set(key, before));
  }
}

/** What a typed column refuses: the fake checks decimal precision, as every database does. */
function doesNotFit(change: Change): string | null {
  if (change.op !== 'insert' && change.op !== 'update' && change.op !== 'read') return null;
  for (const [i, column] of change.relation.columns.entries()) {
    const value = change.newRow.values[i];
    const kind = column.kind;
    if (value == null || kind.kind !== 'decimal' || kind.precision === null) continue;
    const whole = value.replace(/^-/, '').split('.')[0]!.replace(/^0+/, '');
    if (whole.length > kind.precision - (kind.scale ?? 0)) return `numeric field overflow: ${value} does not fit decimal(${kind.precision},${kind.scale ?? 0}) column ${column.name}`;
  }
  return null;
}

let rowCounter = 0;

/** A row's identity: its key columns' values; for a table without a key, a fresh one (rows may repeat). */
function keyOf(relation: RelationInfo, values: readonly (string | null)[]): string {
  const key = relation.columns.flatMap((c, i) => (c.key ? [values[i] ?? null] : []));
  return key.length > 0 ? JSON.stringify(key) : `row ${++rowCounter}`;
}
