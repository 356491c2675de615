/**
 * Online snapshots, chunk by chunk, inside the change stream (the idea of Netflix's DBLog and Debezium's
 * incremental snapshots, with one marker per chunk instead of a low and a high watermark).
 *
 * When the stream reaches a snapshot marker (snapshot-marker.ts), capture stops reading the stream, reads
 * the marker's chunk from the table (up to `chunkRows` rows after the previous chunk's last key, or the
 * requested keys), and sends those rows as `read` changes in a transaction at the marker's own position;
 * then the stream goes on. The next chunk's marker is written before the rows are sent.
 *
 * Why that is consistent: the rows are read after the marker committed, so each row read is the row as it
 * was at the marker or later. Every change committed after the marker comes after the chunk in the stream
 * and is applied on top of it; a change the read already saw is applied again over a row that already has
 * it — with whole-row images (a sink writes an update's new values, a delete removes the key, an insert
 * over a read row overwrites it), doing so lands on the same row as the source's. So at the end of the
 * stream every receiving site holds what the source holds, whatever the writes during the snapshot, and no
 * row is lost or stale at a chunk boundary. A change committed before the marker is in the read.
 *
 * One change breaks that rule: an update that moves a row's primary key from a range not read yet into one
 * already read. Receiving sites lack the old key (its chunk has not come), so the update finds nothing to
 * change, and no later chunk holds the new key. So while a snapshot of a table runs, a transaction that
 * moves keys of it is held until a small snapshot of the new keys (a repair-style marker, same targets) is
 * committed after it: its read, after the move, brings the row wherever it landed (`keyMoves` below).
 *
 * Resumable: a chunk's rows are sent at the marker's position, so the marker is confirmed only once the
 * broker has them; after a crash the stream gives the marker again and the chunk is read (and sent) again,
 * and snapshot-control.ts keeps a second marker from following it. Memory: two chunks (the next one is
 * read as soon as its marker is committed, while the stream goes on to it).
 */
import type { SitesyncError } from '../errors.ts';
import { changeBytes, type Change, type RelationInfo, type RowImage, type SeenSites, type Transaction, type TransactionPart } from '../events/transaction.ts';
import type { Logger } from '../observability/logger.ts';
import type { SourceHandler } from './source.ts';
import type { SnapshotControl, SnapshotStatus } from './snapshot-control.ts';
import { encodeMarker, MAX_MARKER_KEYS, newSnapshotId, parseMarker, SNAPSHOT_MARKER_PREFIX, splitTable, type SnapshotMarker } from './snapshot-marker.ts';
import { rowKey, type RowKey, type TableReader, type TableShape } from './table-reader.ts';

export interface SnapshotChunksOptions {
  readonly site: string;
  readonly reader: TableReader;
  readonly control: SnapshotControl;
  /** A transaction larger than this goes in parts (the same bound as capture's). */
  readonly maxPartBytes: number;
  /** Stop and restart reading the stream while a chunk is read. */
  readonly pause: () => void;
  readonly resume: () => void;
  /** A chunk could not be read: the session ends and the next one gives the marker again. */
  readonly onError: (error: unknown) => void;
  readonly onChunk?: (chunk: { readonly id: string; readonly table: string; readonly chunk: number; readonly rows: number; readonly last: boolean }) => void;
  readonly logger: Logger;
}

type Call =
  | { readonly kind: 'transaction'; readonly tx: Transaction; readonly part: TransactionPart | null; readonly checkpoint: string | null }
  | { readonly kind: 'skipped'; readonly position: string; readonly checkpoint: string; readonly reason: 'relayed' | 'empty'; readonly seen: SeenSites }
  | { readonly kind: 'idle'; readonly checkpoint: string; readonly seen: SeenSites };

export class SnapshotChunks {
  /** Calls that came while a chunk was read: handed on, in order, once its rows are sent. */
  private readonly queue: Call[] = [];
  private busy = false;
  private failed = false;
  private readonly shapes = new Map<string, TableShape>();
  /** Rows sent per snapshot by this session, for the log (`sitesync snapshot --list` has the whole count). */
  private readonly rowsSent = new Map<string, number>();
  /** The next chunk, read as soon as its marker was committed (so two chunks at most in memory). */
  private ahead: { readonly marker: string; readonly read: Promise<{ changes: Change[]; next: SnapshotMarker | null }> } | null = null;

  /** Snapshots whose markers this session handed on and that are not finished: id → table and targets. */
  private readonly running = new Map<string, { readonly table: string; readonly targets: readonly string[] | null }>();
  /** Snapshots the site knew of when this session first met a moved key (those started before it), read once. */
  private recorded: SnapshotStatus[] | null = null;

  constructor(private readonly options: SnapshotChunksOptions) {}

  /** The handler the source is given: `next` sees the stream with every marker replaced by its chunk. */
  wrap(next: SourceHandler): SourceHandler {
    const dispatch = (call: Call): void => {
      if (this.failed) return;
      if (this.busy || this.queue.length > 0) this.queue.push(call);
      else this.handle(call, next);
    };
    return {
      transaction: (tx, part, checkpoint) => dispatch({ kind: 'transaction', tx, part, checkpoint }),
      skipped: (position, checkpoint, reason, seen) => dispatch({ kind: 'skipped', position, checkpoint, reason, seen }),
      idle: (checkpoint, seen) => dispatch({ kind: 'idle', checkpoint, seen }),
    };
  }

  async close(): Promise<void> {
    this.failed = true;
    this.queue.length = 0;
    await this.options.reader.close().catch(() => undefined);
    await this.options.control.close().catch(() => undefined);
  }

  private handle(call: Call, next: SourceHandler): void {
    if (call.kind === 'skipped') return next.skipped(call.position, call.checkpoint, call.reason, call.seen);
    if (call.kind === 'idle') return next.idle(call.checkpoint, call.seen);
    const { tx, part, checkpoint } = call;
    const markers = tx.changes.filter(isMarker);
    if (markers.length === 0) {
      if (!this.mayMoveKeys(tx)) return next.transaction(tx, part, checkpoint);
      return this.hold(next, async () => {
        await this.resendMovedKeys(tx);
        next.transaction(tx, part, checkpoint);
      });
    }
    const others = tx.changes.filter((c) => !isMarker(c));
    let marker: SnapshotMarker | null = null;
    try {
      if (part !== null || markers.length > 1) throw new Error('a snapshot marker must be alone in a transaction of its own');
      marker = parseMarker((markers[0] as Extract<Change, { op: 'message' }>).content.toString('utf8'));
    } catch (error) {
      this.options.logger.warn({ position: tx.position }, `snapshot marker ignored: ${(error as Error).message}`);
    }
    if (marker === null) return this.send({ ...tx, changes: others }, part, checkpoint, next);
    const read = marker;
    this.hold(next, async () => {
      const changes = await this.readChunk(read, checkpoint);
      const snapshot = changes === null ? null : { id: read.id, table: read.table, chunk: read.chunk, last: changes.last, targets: read.targets };
      this.send({ ...tx, changes: [...others, ...(changes?.changes ?? [])], snapshot }, null, checkpoint, next);
    });
  }

  /**
   * Holds the stream while `work` runs (calls that come meanwhile wait in the queue), then hands on what
   * waited. A failure ends the session: the next one gives the same transaction again.
   */
  private hold(next: SourceHandler, work: () => Promise<void>): void {
    this.busy = true;
    this.options.pause();
    work().then(
      () => {
        if (this.failed) return;
        this.busy = false;
        this.options.resume();
        while (!this.busy && !this.failed && this.queue.length > 0) this.handle(this.queue.shift()!, next);
      },
      (error: unknown) => {
        this.failed = true;
        this.options.onError(error);
      },
    );
  }

  /**
   * Cheap test, on every transaction: could it move a key of a table a snapshot is reading? Only an update
   * with an old row can (PostgreSQL sends one when the key changed or the replica identity is full; MariaDB
   * always). Until this session has read which snapshots were running before it, any such update might.
   */
  private mayMoveKeys(tx: Transaction): boolean {
    for (const change of tx.changes) {
      if (change.op !== 'update' || change.oldRow === null) continue;
      if (this.recorded === null) return true;
      if (this.snapshotsOf(tableName(change.relation), tx.commitTimeMicros).length > 0) return true;
    }
    return false;
  }

  /**
   * The snapshots that may still be reading `table` at a transaction committed at `commitTimeMicros`: those
   * this session saw start and not finish, and those recorded before it that run, or ended less than a
   * minute before that commit — after a restart the stream gives again what the broker had not confirmed,
   * which may come before a snapshot's last marker although the site has recorded it finished.
   */
  private snapshotsOf(table: string, commitTimeMicros: bigint): { readonly id: string; readonly targets: readonly string[] | null }[] {
    const found = new Map<string, readonly string[] | null>();
    for (const [id, s] of this.running) if (s.table === table) found.set(id, s.targets);
    const since = commitTimeMicros - RECENTLY_ENDED_MICROS;
    for (const s of this.recorded ?? []) {
      if (s.table !== table || found.has(s.id)) continue;
      if (s.state === 'running' || BigInt(s.updatedAt.getTime()) * 1000n >= since) found.set(s.id, s.targets);
    }
    return [...found].map(([id, targets]) => ({ id, targets }));
  }

  /**
   * Starts a snapshot of the new keys of every row `tx` moved in a table a snapshot is reading, addressed
   * to the sites those snapshots are for; its marker commits after `tx`, so its read sees the moved rows.
   * The stream waits for it, so `tx` is never confirmed without it.
   */
  private async resendMovedKeys(tx: Transaction): Promise<void> {
    this.recorded ??= await this.options.control.list();
    const moved = new Map<string, { keys: RowKey[]; seen: Set<string> }>();
    for (const change of tx.changes) {
      if (change.op !== 'update' || change.oldRow === null) continue;
      const table = tableName(change.relation);
      if (this.snapshotsOf(table, tx.commitTimeMicros).length === 0) continue;
      const shape = await this.shapeOf(table).catch((error: unknown) => {
        // A table that cannot be read by key (dropped, or its key dropped) cannot be snapshotted either: its
        // snapshot stops at its next chunk. Not a reason to stop the stream.
        if ((error as SitesyncError).code !== 'SITESYNC_ERR_CONFIG') throw error;
        this.options.logger.warn({ table }, `a key moved during a snapshot of ${table}, but its rows cannot be read by key: ${(error as Error).message}`);
        return null;
      });
      if (shape === null) continue;
      const key = movedKey(shape, change.relation, change.oldRow, change.newRow);
      if (key === null) continue;
      const entry = moved.get(table) ?? { keys: [], seen: new Set<string>() };
      const id = JSON.stringify(key);
      if (!entry.seen.has(id)) entry.keys.push(key);
      entry.seen.add(id);
      moved.set(table, entry);
    }
    for (const [table, { keys }] of moved) {
      const snapshots = this.snapshotsOf(table, tx.commitTimeMicros);
      const targets = snapshots.some((s) => s.targets === null) ? null : [...new Set(snapshots.flatMap((s) => s.targets ?? []))].sort();
      for (let i = 0; i < keys.length; i += MAX_MARKER_KEYS) {
        const batch = keys.slice(i, i + MAX_MARKER_KEYS);
        const id = newSnapshotId();
        await this.options.control.start({ id, table, chunk: 0, chunkRows: Math.min(batch.length, DEFAULT_MOVED_CHUNK_ROWS), targets, after: null, keys: batch }, batch.length);
        this.options.logger.info({ snapshot: id, table, rows: batch.length, during: snapshots.map((s) => s.id) }, 'keys moved during a snapshot: their rows are sent again by a snapshot of those keys');
      }
    }
  }

  /** The chunk's changes, with the next marker written; null when the snapshot was cancelled. */
  private async readChunk(marker: SnapshotMarker, checkpoint: string | null): Promise<{ changes: Change[]; last: boolean } | null> {
    const { control, logger, reader } = this.options;
    // Each statement here is on the chunk's critical path (the stream waits): a cancelled snapshot is told
    // by advance, after the read, rather than asked first; and the chunk was usually read ahead.
    const ahead = this.ahead;
    this.ahead = null;
    const chunk = await (ahead !== null && ahead.marker === encodeMarker(marker) ? ahead.read : this.read(marker));
    const next = chunk.next;
    let changes = chunk.changes;
    if (reader.writersOnceRecorded && marker.keys === null && checkpoint !== null && changes.length > 0) {
      // Writers that capture records (MariaDB): taken now that the stream has handed on the marker, so that
      // a local write just before it, read with the rows, is not missing from them.
      const shape = await this.shapeOf(marker.table);
      const rows = changes.map((c) => (c as Extract<Change, { op: 'read' }>).newRow);
      const writers = await reader.writersOnceRecorded(shape, rows, checkpoint);
      changes = rows.map((row, i) => {
        const writer = writers[i] ?? null;
        return writer !== null ? { op: 'read', relation: shape.relation, newRow: row, writer } : { op: 'read', relation: shape.relation, newRow: row };
      });
    }
    const outcome = await control.advance(marker, changes.length, next);
    if (outcome === 'cancelled') {
      this.running.delete(marker.id);
      logger.info({ snapshot: marker.id, chunk: marker.chunk }, 'snapshot marker of a cancelled snapshot: nothing sent');
      return null;
    }
    if (next === null) this.running.delete(marker.id);
    else this.running.set(marker.id, { table: marker.table, targets: marker.targets });
    // The next marker is committed now: a read from here on is a read after it, which is all its chunk
    // needs (see the top of this file). Read it while the stream goes on to it.
    if (next !== null) {
      const read = this.read(next);
      read.catch(() => undefined); // used, or dropped, when its marker arrives
      this.ahead = { marker: encodeMarker(next), read };
    }
    this.rowsSent.set(marker.id, (this.rowsSent.get(marker.id) ?? 0) + changes.length);
    logger.info(
      { snapshot: marker.id, table: marker.table, chunk: marker.chunk, rows: changes.length, last: next === null, rowsThisRun: this.rowsSent.get(marker.id) },
      next === null ? 'snapshot finished' : 'snapshot chunk read',
    );
    this.options.onChunk?.({ id: marker.id, table: marker.table, chunk: marker.chunk, rows: changes.length, last: next === null });
    return { changes, last: next === null };
  }

  /** The rows a marker asks for, as changes, and the marker of the chunk after it (null: this is the last). */
  private async read(marker: SnapshotMarker): Promise<{ changes: Change[]; next: SnapshotMarker | null }> {
    const { reader } = this.options;
    const shape = await this.shapeOf(marker.table);
    const changes: Change[] = [];
    if (marker.keys !== null) {
      const asked = marker.keys.slice(0, marker.chunkRows);
      const rest = marker.keys.slice(marker.chunkRows);
      const rows = await reader.readKeys(shape, asked);
      const found = new Set(rows.map((row) => JSON.stringify(rowKey(shape, row))));
      for (const row of rows) changes.push({ op: 'read', relation: shape.relation, newRow: row });
      // A key the source does not hold is a row no site should hold: sent as its delete.
      const byKey = keyedRelation(shape);
      for (const key of asked) if (!found.has(JSON.stringify(key))) changes.push({ op: 'delete', relation: byKey, oldRow: keyRow(shape, key) });
      return { changes, next: rest.length > 0 ? { ...marker, chunk: marker.chunk + 1, keys: rest } : null };
    }
    // Each row carries its last writer where the reader knows it: a site joining decides later conflicts on
    // it as this site does, and a snapshot to every site is not applied where the writer's own stream was
    // applied past that write already (apply-scope.ts withoutStaleReads: it would bring back a row deleted since).
    let rows: RowImage[];
    if (reader.readChunkWithWriters && !reader.writersOnceRecorded) {
      const read = await reader.readChunkWithWriters(shape, marker.after, marker.chunkRows);
      rows = read.rows;
      rows.forEach((row, i) => {
        const writer = read.writers[i] ?? null;
        changes.push(writer !== null ? { op: 'read', relation: shape.relation, newRow: row, writer } : { op: 'read', relation: shape.relation, newRow: row });
      });
    } else {
      rows = await reader.readChunk(shape, marker.after, marker.chunkRows);
      for (const row of rows) changes.push({ op: 'read', relation: shape.relation, newRow: row });
    }
    const lastRow = rows[rows.length - 1];
    return { changes, next: rows.length === marker.chunkRows && lastRow ? { ...marker, chunk: marker.chunk + 1, after: rowKey(shape, lastRow) } : null };
  }

  private async shapeOf(table: string): Promise<TableShape> {
    let shape = this.shapes.get(table);
    if (!shape) {
      const { schema, table: name } = splitTable(table);
      shape = await this.options.reader.describe(schema, name);
      this.shapes.set(table, shape);
    }
    return shape;
  }

  /** Hands a transaction on, in parts when it is larger than one message may be. */
  private send(tx: Transaction, part: TransactionPart | null, checkpoint: string | null, next: SourceHandler): void {
    if (part !== null) return next.transaction(tx, part, checkpoint);
    if (tx.changes.length === 0 && !tx.snapshot) return next.skipped(tx.position, checkpoint!, 'empty', tx.seen);
    const parts: Change[][] = [];
    let current: Change[] = [];
    let bytes = 0;
    for (const change of tx.changes) {
      const size = changeBytes(change);
      if (current.length > 0 && bytes + size > this.options.maxPartBytes) {
        parts.push(current);
        current = [];
        bytes = 0;
      }
      current.push(change);
      bytes += size;
    }
    parts.push(current);
    if (parts.length === 1) return next.transaction(tx, null, checkpoint);
    parts.forEach((changes, index) => {
      const last = index === parts.length - 1;
      next.transaction({ ...tx, changes }, { index, last }, last ? checkpoint : null);
    });
  }
}

function isMarker(change: Change): boolean {
  return change.op === 'message' && change.prefix === SNAPSHOT_MARKER_PREFIX;
}

/** The relation a key-only delete names: the row is found by its primary key, whatever the table's replica identity. */
function keyedRelation(shape: TableShape): RelationInfo {
  return { ...shape.relation, replicaIdentity: 'd' };
}

function keyRow(shape: TableShape, key: RowKey): RowImage {
  const values: (string | null)[] = shape.relation.columns.map(() => null);
  shape.keyColumns.forEach((column, i) => (values[column] = key[i] ?? null));
  return { values, unchanged: [] };
}

/** How long after a snapshot ended a transaction may still come before its last marker in the stream (see snapshotsOf). */
const RECENTLY_ENDED_MICROS = 60_000_000n;
/** Rows per chunk of a snapshot of moved keys. */
const DEFAULT_MOVED_CHUNK_ROWS = 1024;

function tableName(relation: RelationInfo): string {
  return `${relation.schema}.${relation.table}`;
}

/**
 * The new primary key of a row an update moved, in `shape`'s key order; null when the key did not change.
 * A key column the old row does not carry (a replica identity other than the primary key) counts as
 * moved: a snapshot of a key that did not move only sends the row again.
 */
function movedKey(shape: TableShape, relation: RelationInfo, oldRow: RowImage, newRow: RowImage): RowKey | null {
  const key: string[] = [];
  let moved = false;
  for (const column of shape.keyColumns) {
    const name = shape.relation.columns[column]!.name;
    const i = relation.columns.findIndex((c) => c.name === name);
    const value = i < 0 ? null : newRow.values[i];
    // Unchanged (a TOASTed value not sent again): the same as before. Absent: nothing to read it by.
    if (value === null || value === undefined || newRow.unchanged.includes(i)) return null;
    const before = oldRow.values[i];
    if (before === null || before === undefined || before !== value) moved = true;
    key.push(value);
  }
  return moved ? key : null;
}
