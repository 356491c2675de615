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
 * Resumable: a chunk's rows are sent at the marker's position, so the marker is confirmed only once the
 * broker has them; after a crash the stream gives the marker again and the chunk is read (and sent) again,
 * and snapshot-control.ts keeps a second marker from following it. Memory: two chunks (the next one is
 * read as soon as its marker is committed, while the stream goes on to it).
 */
import { changeBytes, type Change, type RelationInfo, type RowImage, type SeenSites, type Transaction, type TransactionPart } from '../events/transaction.ts';
import type { Logger } from '../observability/logger.ts';
import type { SourceHandler } from './source.ts';
import type { SnapshotControl } from './snapshot-control.ts';
import { encodeMarker, parseMarker, SNAPSHOT_MARKER_PREFIX, splitTable, type SnapshotMarker } from './snapshot-marker.ts';
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
    if (markers.length === 0) return next.transaction(tx, part, checkpoint);
    const others = tx.changes.filter((c) => !isMarker(c));
    let marker: SnapshotMarker | null = null;
    try {
      if (part !== null || markers.length > 1) throw new Error('a snapshot marker must be alone in a transaction of its own');
      marker = parseMarker((markers[0] as Extract<Change, { op: 'message' }>).content.toString('utf8'));
    } catch (error) {
      this.options.logger.warn({ position: tx.position }, `snapshot marker ignored: ${(error as Error).message}`);
    }
    if (marker === null) return this.send({ ...tx, changes: others }, part, checkpoint, next);
    this.busy = true;
    this.options.pause();
    const read = marker;
    this.readChunk(read).then(
      (changes) => {
        if (this.failed) return;
        const snapshot = changes === null ? null : { id: read.id, table: read.table, chunk: read.chunk, last: changes.last, targets: read.targets };
        this.send({ ...tx, changes: [...others, ...(changes?.changes ?? [])], snapshot }, null, checkpoint, next);
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

  /** The chunk's changes, with the next marker written; null when the snapshot was cancelled. */
  private async readChunk(marker: SnapshotMarker): Promise<{ changes: Change[]; last: boolean } | null> {
    const { control, logger } = this.options;
    // Each statement here is on the chunk's critical path (the stream waits): a cancelled snapshot is told
    // by advance, after the read, rather than asked first; and the chunk was usually read ahead.
    const ahead = this.ahead;
    this.ahead = null;
    const { changes, next } = await (ahead !== null && ahead.marker === encodeMarker(marker) ? ahead.read : this.read(marker));
    const outcome = await control.advance(marker, changes.length, next);
    if (outcome === 'cancelled') {
      logger.info({ snapshot: marker.id, chunk: marker.chunk }, 'snapshot marker of a cancelled snapshot: nothing sent');
      return null;
    }
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
    if (reader.readChunkWithWriters) {
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
