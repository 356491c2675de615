/**
 * Online snapshots inside the stream (src/capture/snapshot-chunks.ts), against an in-memory table, log and
 * snapshot control. The property is the one the design rests on: a site that starts empty and applies the
 * stream from any point, with markers anywhere in it and each chunk read at any moment after its marker
 * (while the source keeps writing), ends with exactly the source's rows.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SnapshotChunks } from '../../src/capture/snapshot-chunks.ts';
import type { SnapshotControl, SnapshotStatus } from '../../src/capture/snapshot-control.ts';
import { encodeMarker, SNAPSHOT_MARKER_PREFIX, type SnapshotMarker } from '../../src/capture/snapshot-marker.ts';
import type { SourceHandler } from '../../src/capture/source.ts';
import type { RowKey, TableReader, TableShape } from '../../src/capture/table-reader.ts';
import type { Change, RelationInfo, RowImage, RowWriter, Transaction, TransactionPart } from '../../src/events/transaction.ts';
import { parseKind } from '../../src/events/value-kind.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { PipelineEvents } from '../../src/observability/pipeline-events.ts';
import { seededRandom as random } from '../helpers/seeded-random.ts';

const relation: RelationInfo = {
  schema: 'public',
  table: 't',
  replicaIdentity: 'd',
  columns: [
    { name: 'id', kind: parseKind('int32'), native: { name: 'int4', id: 23, modifier: -1 }, key: true },
    { name: 'v', kind: parseKind('string'), native: { name: 'text', id: 25, modifier: -1 }, key: false },
  ],
};
const shape: TableShape = { relation, keyColumns: [0] };
const logger = createLogger('silent');

/** The source table: rows by integer key. */
type Table = Map<number, string>;

function row(id: number, v: string): RowImage {
  return { values: [String(id), v], unchanged: [] };
}

/** Reads the table as it is when called (after a delay the test controls). */
class MemoryReader implements TableReader {
  reads = 0;
  constructor(
    private readonly table: () => Table,
    private readonly delay: () => Promise<void>,
  ) {}
  async describe(): Promise<TableShape> {
    return shape;
  }
  async readChunk(_: TableShape, after: RowKey | null, limit: number): Promise<RowImage[]> {
    await this.delay();
    this.reads++;
    const from = after === null ? -Infinity : Number(after[0]);
    return [...this.table().entries()].filter(([k]) => k > from).sort(([a], [b]) => a - b).slice(0, limit).map(([k, v]) => row(k, v));
  }
  async readKeys(_: TableShape, keys: readonly RowKey[]): Promise<RowImage[]> {
    await this.delay();
    const t = this.table();
    return keys.map((k) => Number(k[0])).sort((a, b) => a - b).filter((k) => t.has(k)).map((k) => row(k, t.get(k)!));
  }
  async estimateRows(): Promise<number> {
    return this.table().size;
  }
  async close(): Promise<void> {}
}

/** Like the PostgreSQL control: a marker follows a chunk once, and goes into the source's log. */
class MemoryControl implements SnapshotControl {
  readonly snapshots = new Map<string, { nextChunk: number; rows: number; state: 'running' | 'done' | 'cancelled' }>();
  constructor(private readonly emit: (marker: SnapshotMarker) => void) {}
  async start(marker: SnapshotMarker, _estimatedRows: number): Promise<void> {
    this.snapshots.set(marker.id, { nextChunk: 0, rows: 0, state: 'running' });
    this.emit(marker);
  }
  async advance(read: SnapshotMarker, rows: number, next: SnapshotMarker | null): Promise<'advanced' | 'already' | 'cancelled'> {
    const s = this.snapshots.get(read.id);
    if (!s || s.state === 'cancelled') return 'cancelled';
    if (s.nextChunk > read.chunk || s.state === 'done') return 'already';
    s.nextChunk = read.chunk + 1;
    s.rows += rows;
    s.state = next === null ? 'done' : 'running';
    if (next) this.emit(next);
    return 'advanced';
  }
  async list(): Promise<SnapshotStatus[]> {
    return [...this.snapshots].map(([id, s]) => ({ id, table: 'public.t', targets: null, nextChunk: s.nextChunk, rowsSent: s.rows, estimatedRows: 0, state: s.state, startedAt: new Date(0), updatedAt: new Date(0) }));
  }
  async cancel(id: string): Promise<boolean> {
    const s = this.snapshots.get(id);
    if (!s || s.state !== 'running') return false;
    s.state = 'cancelled';
    return true;
  }
  async close(): Promise<void> {}
}

const position = (n: number): string => n.toString(16).toUpperCase().padStart(16, '0');

function tx(n: number, changes: Change[]): Transaction {
  return { id: `a:${position(n)}`, site: 'a', position: position(n), commitTimeMicros: BigInt(n), sourceTxId: String(n), seen: {}, changes };
}

function markerChange(marker: SnapshotMarker): Change {
  return { op: 'message', prefix: SNAPSHOT_MARKER_PREFIX, content: Buffer.from(encodeMarker(marker)) };
}

/** What a receiving site does with the stream (the sinks' rules): reads and inserts overwrite, updates and deletes of missing rows do nothing. */
function applyTo(target: Table, change: Change): void {
  if (change.op === 'read' || change.op === 'insert') target.set(Number(change.newRow.values[0]), change.newRow.values[1]!);
  else if (change.op === 'update') {
    // An update finds its row by the old key (a moved key's update carries it), and does nothing when it is missing.
    const key = Number(change.newRow.values[0]);
    const old = change.oldRow === null ? key : Number(change.oldRow.values[0]);
    if (target.has(old)) {
      target.delete(old);
      target.set(key, change.newRow.values[1]!);
    }
  } else if (change.op === 'delete') target.delete(Number(change.oldRow.values[0]));
}

interface Delivered {
  readonly tx: Transaction;
  readonly part: TransactionPart | null;
  readonly checkpoint: string | null;
}

function collector(): { handler: SourceHandler; delivered: (Delivered | { skipped: string } | { idle: string })[] } {
  const delivered: (Delivered | { skipped: string } | { idle: string })[] = [];
  return {
    delivered,
    handler: {
      transaction: (t, part, checkpoint) => delivered.push({ tx: t, part, checkpoint }),
      skipped: (p) => delivered.push({ skipped: p }),
      idle: (checkpoint) => delivered.push({ idle: checkpoint }),
    },
  };
}

const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('property: a site applying the stream from any point ends with the source rows, however the writes and chunk reads interleave, keys moving or not', async () => {
  for (let seed = 1; seed <= 400; seed++) {
    const rand = random(seed);
    // Half the seeds also move primary keys, into ranges read already or not yet.
    const moves = seed % 2 === 0;
    const keys = 1 + Math.floor(rand() * 40);
    const source: Table = new Map();
    for (let k = 0; k < keys; k++) if (rand() < 0.6) source.set(k, `initial ${k}`);
    // The log from the moment the target starts applying: rows already there are the snapshot's to send.
    const log: Transaction[] = [];
    let n = 1;
    const write = (): void => {
      const k = Math.floor(rand() * keys);
      const v = `v${n}`;
      const changes: Change[] = [];
      const free = Math.floor(rand() * keys * 2);
      if (!source.has(k)) {
        source.set(k, v);
        changes.push({ op: 'insert', relation, newRow: row(k, v) });
      } else if (moves && rand() < 0.2 && !source.has(free)) {
        // The primary key moves (UPDATE t SET id = free): the old key comes with the update.
        source.delete(k);
        source.set(free, v);
        changes.push({ op: 'update', relation, oldRow: { values: [String(k), null], unchanged: [] }, newRow: row(free, v) });
      } else if (rand() < 0.7) {
        source.set(k, v);
        changes.push({ op: 'update', relation, oldRow: null, newRow: row(k, v) });
      } else {
        source.delete(k);
        changes.push({ op: 'delete', relation, oldRow: { values: [String(k), null], unchanged: [] } });
      }
      log.push(tx(n++, changes));
    };
    const control = new MemoryControl((marker) => log.push(tx(n++, [markerChange(marker)])));
    // A chunk is read after a random number of further writes at the source (it runs ahead of the stream).
    const reader = new MemoryReader(
      () => source,
      async () => {
        const more = Math.floor(rand() * 4);
        for (let i = 0; i < more; i++) write();
        await settle();
      },
    );
    const { handler, delivered } = collector();
    const chunks = new SnapshotChunks({ site: 'a', reader, control, maxPartBytes: 1 << 20, pause: () => undefined, resume: () => undefined, onError: (e) => assert.fail(String(e)), logger });
    const stream = chunks.wrap(handler);
    for (let i = 0; i < Math.floor(rand() * 5); i++) write();
    await control.start({ id: `s${seed}`, table: 'public.t', chunk: 0, chunkRows: 1 + Math.floor(rand() * 6), targets: null, after: null, keys: null }, 0);
    // The stream delivers the log in order while the source keeps writing, until the snapshot is done and
    // the stream has caught up.
    let next = 0;
    for (let steps = 0; steps < 10_000; steps++) {
      if (control.snapshots.get(`s${seed}`)!.state === 'done' && next === log.length) break;
      if (rand() < 0.3 && steps < 200) write();
      else if (next < log.length) {
        const t = log[next++]!;
        stream.transaction(t, null, t.position);
      }
      await settle();
    }
    await settle();
    assert.equal(control.snapshots.get(`s${seed}`)!.state, 'done', `seed ${seed}: the snapshot finished`);
    const target: Table = new Map();
    let positions = '';
    for (const d of delivered) {
      if (!('tx' in d)) continue;
      assert.ok(d.tx.position > positions, `seed ${seed}: positions increase`);
      positions = d.tx.position;
      for (const change of d.tx.changes) applyTo(target, change);
    }
    assert.deepEqual([...target].sort(([a], [b]) => a - b), [...source].sort(([a], [b]) => a - b), `seed ${seed}: the target holds the source's rows`);
  }
});

test('calls that come while a chunk is read are handed on after it, in order; the chunk takes the marker position', async () => {
  const source: Table = new Map([[1, 'a'], [2, 'b'], [3, 'c']]);
  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const reader = new MemoryReader(() => source, () => gate);
  const written: SnapshotMarker[] = [];
  const control = new MemoryControl((m) => written.push(m));
  const paused: string[] = [];
  const { handler, delivered } = collector();
  const chunks = new SnapshotChunks({ site: 'a', reader, control, maxPartBytes: 1 << 20, pause: () => paused.push('pause'), resume: () => paused.push('resume'), onError: (e) => assert.fail(String(e)), logger });
  const stream = chunks.wrap(handler);
  const marker: SnapshotMarker = { id: 'x1', table: 'public.t', chunk: 0, chunkRows: 2, targets: ['london'], after: null, keys: null };
  await control.start(marker, 3);
  stream.transaction(tx(1, []), null, position(1));
  stream.transaction(tx(2, [markerChange(marker)]), null, position(2));
  stream.idle(position(3), {});
  stream.transaction(tx(4, [{ op: 'insert', relation, newRow: row(9, 'z') }]), null, position(4));
  await settle();
  assert.equal(delivered.length, 1, 'nothing passes the marker while its chunk is read');
  assert.deepEqual(paused, ['pause']);
  release();
  await settle();
  await settle();
  assert.deepEqual(paused, ['pause', 'resume']);
  assert.equal(delivered.length, 4);
  const chunk = delivered[1] as Delivered;
  assert.equal(chunk.tx.position, position(2));
  assert.equal(chunk.checkpoint, position(2));
  assert.deepEqual(chunk.tx.snapshot, { id: 'x1', table: 'public.t', chunk: 0, last: false, targets: ['london'] });
  assert.deepEqual(chunk.tx.changes.map((c) => (c.op === 'read' ? c.newRow.values : c.op)), [['1', 'a'], ['2', 'b']]);
  assert.deepEqual(delivered[2], { idle: position(3) });
  assert.equal((delivered[3] as Delivered).tx.position, position(4));
  assert.deepEqual(written.map((m) => [m.chunk, m.after]), [[0, null], [1, ['2']]], 'the next marker starts after the last key read');
});

test('a key moved while a snapshot started before this session runs: the stream waits until a snapshot of the new key, for the same sites, is committed after it', async () => {
  const now = 1_000_000_000_000n; // the moving transaction's commit time, in microseconds
  const status = (id: string, table: string, state: 'running' | 'done', endedMicros: bigint, targets: string[] | null): SnapshotStatus => ({
    id, table, targets, nextChunk: 3, rowsSent: 10, estimatedRows: 100, state, startedAt: new Date(0), updatedAt: new Date(Number(endedMicros / 1000n)),
  });
  const recorded = [
    status('running1', 'public.t', 'running', 0n, ['london']),
    status('ended-just-now', 'public.t', 'done', now - 30_000_000n, ['madrid']),
    status('ended-long-ago', 'public.t', 'done', now - 600_000_000n, ['rome']),
    status('other-table', 'public.u', 'running', 0n, null),
  ];
  const written: SnapshotMarker[] = [];
  let lists = 0;
  let commit: () => void = () => undefined;
  const committed = new Promise<void>((resolve) => (commit = resolve));
  const control = new (class extends MemoryControl {
    override async list(): Promise<SnapshotStatus[]> {
      lists++;
      return recorded;
    }
    override async start(marker: SnapshotMarker, estimated: number): Promise<void> {
      await committed;
      await super.start(marker, estimated);
    }
  })((m) => written.push(m));
  const source: Table = new Map([[1, 'a']]);
  const reader = new MemoryReader(() => source, async () => undefined);
  const { handler, delivered } = collector();
  const chunks = new SnapshotChunks({ site: 'a', reader, control, maxPartBytes: 1 << 20, pause: () => undefined, resume: () => undefined, onError: (e) => assert.fail(String(e)), logger });
  const stream = chunks.wrap(handler);
  const at = (n: number, changes: Change[]): Transaction => ({ ...tx(n, changes), commitTimeMicros: now });
  const move = (from: number, to: number): Change => ({ op: 'update', relation, oldRow: { values: [String(from), null], unchanged: [] }, newRow: row(to, 'moved') });
  // No old row: the key did not move. Then one transaction moves two keys and changes a third in place.
  stream.transaction(at(1, [{ op: 'update', relation, oldRow: null, newRow: row(1, 'b') }]), null, position(1));
  stream.transaction(at(2, [move(7, 1), move(8, 2), { op: 'update', relation, oldRow: { values: ['3', null], unchanged: [] }, newRow: row(3, 'same key') }]), null, position(2));
  stream.transaction(at(3, [{ op: 'insert', relation, newRow: row(4, 'after') }]), null, position(3));
  await settle();
  await settle();
  assert.equal(delivered.length, 1, 'the moving transaction waits for its snapshot to be committed, and what follows it waits too');
  commit();
  for (let i = 0; i < 5; i++) await settle();
  assert.deepEqual(delivered.map((d) => ('tx' in d ? d.tx.position : d)), [position(1), position(2), position(3)]);
  assert.equal(written.length, 1);
  assert.deepEqual(written[0]!.keys, [['1'], ['2']], 'the new keys, once each; the key that did not move is not among them');
  assert.deepEqual(written[0]!.targets, ['london', 'madrid'], 'the sites of the running snapshot and of the one ended a moment before the move');
  assert.equal(written[0]!.table, 'public.t');
  // A second move in the same session: the recorded snapshots are not read again.
  stream.transaction(at(4, [move(9, 5)]), null, position(4));
  for (let i = 0; i < 5; i++) await settle();
  assert.equal(lists, 1);
  assert.equal(written.length, 2);
});

test('a key moved in a table no snapshot reads, or with every snapshot long finished, passes at once with nothing written', async () => {
  const control = new (class extends MemoryControl {
    override async list(): Promise<SnapshotStatus[]> {
      return [{ id: 'old', table: 'public.t', targets: null, nextChunk: 9, rowsSent: 9, estimatedRows: 9, state: 'done', startedAt: new Date(0), updatedAt: new Date(0) }];
    }
  })(() => assert.fail('no marker may be written'));
  const reader = new MemoryReader(() => new Map(), async () => undefined);
  const { handler, delivered } = collector();
  const stream = new SnapshotChunks({ site: 'a', reader, control, maxPartBytes: 1 << 20, pause: () => undefined, resume: () => undefined, onError: (e) => assert.fail(String(e)), logger }).wrap(handler);
  stream.transaction({ ...tx(1, [{ op: 'update', relation, oldRow: { values: ['1', null], unchanged: [] }, newRow: row(2, 'x') }]), commitTimeMicros: 10n ** 15n }, null, position(1));
  for (let i = 0; i < 5; i++) await settle();
  assert.equal(delivered.length, 1);
});

test('writers that capture records (MariaDB) are read once the stream hands on the marker, with its checkpoint; not with the rows read ahead', async () => {
  const source: Table = new Map([[1, 'a'], [2, 'b'], [3, 'c']]);
  const asked: string[] = [];
  // What capture has recorded: changes between the read ahead and the marker's arrival.
  let recorded = 'old';
  const reader = new (class extends MemoryReader {
    async readChunkWithWriters(): Promise<never> {
      throw new Error('a reader whose writers capture records is not asked for them with the rows');
    }
    async writersOnceRecorded(_: TableShape, rows: readonly RowImage[], checkpoint: string): Promise<(RowWriter | null)[]> {
      asked.push(checkpoint);
      return rows.map((r) => (r.values[0] === '2' ? null : { site: recorded, commitTimeMicros: 7n }));
    }
  })(() => source, async () => undefined);
  const written: SnapshotMarker[] = [];
  const control = new MemoryControl((m) => written.push(m));
  const { handler, delivered } = collector();
  const stream = new SnapshotChunks({ site: 'a', reader, control, maxPartBytes: 1 << 20, pause: () => undefined, resume: () => undefined, onError: (e) => assert.fail(String(e)), logger }).wrap(handler);
  const first: SnapshotMarker = { id: 'w1', table: 'public.t', chunk: 0, chunkRows: 2, targets: ['n'], after: null, keys: null };
  await control.start(first, 3);
  stream.transaction(tx(1, [markerChange(first)]), null, 'cp-1');
  for (let i = 0; i < 5; i++) await settle();
  recorded = 'new'; // capture records a local write before the next marker reaches the stream
  stream.transaction(tx(2, [markerChange(written[1]!)]), null, 'cp-2');
  for (let i = 0; i < 5; i++) await settle();
  assert.deepEqual(asked, ['cp-1', 'cp-2'], 'asked at each marker, with its checkpoint');
  const chunks = delivered.filter((d): d is Delivered => 'tx' in d).map((d) => d.tx.changes.map((c) => (c.op === 'read' ? [c.newRow.values[0], c.writer?.site ?? null] : c.op)));
  assert.deepEqual(chunks, [[['1', 'old'], ['2', null]], [['3', 'new']]], 'the writers recorded when each marker arrived (the second chunk was read ahead, before)');
});

test('a repair: present keys are read, absent ones sent as deletes by key; the rest of the keys go to the next marker', async () => {
  const source: Table = new Map([[1, 'a'], [3, 'c']]);
  const reader = new MemoryReader(() => source, settle);
  const written: SnapshotMarker[] = [];
  const control = new MemoryControl((m) => written.push(m));
  const { handler, delivered } = collector();
  const stream = new SnapshotChunks({ site: 'a', reader, control, maxPartBytes: 1 << 20, pause: () => undefined, resume: () => undefined, onError: (e) => assert.fail(String(e)), logger }).wrap(handler);
  const marker: SnapshotMarker = { id: 'r1', table: 'public.t', chunk: 0, chunkRows: 3, targets: ['london'], after: null, keys: [['1'], ['2'], ['3'], ['4']] };
  await control.start(marker, 4);
  stream.transaction(tx(1, [markerChange(marker)]), null, position(1));
  await settle();
  await settle();
  const changes = (delivered[0] as Delivered).tx.changes;
  assert.deepEqual(
    changes.map((c) => [c.op, c.op === 'read' ? c.newRow.values : c.op === 'delete' ? c.oldRow.values : null]),
    [['read', ['1', 'a']], ['read', ['3', 'c']], ['delete', ['2', null]]],
  );
  const deleted = changes[2] as Extract<Change, { op: 'delete' }>;
  assert.equal(deleted.relation.replicaIdentity, 'd', 'found by its primary key, whatever the table replica identity');
  assert.deepEqual(written[1]?.keys, [['4']]);
});

test('after a restart the same marker is read and sent again, without a second next marker; a cancelled one sends nothing', async () => {
  const source: Table = new Map([[1, 'a'], [2, 'b'], [3, 'c']]);
  const reader = new MemoryReader(() => source, settle);
  const written: SnapshotMarker[] = [];
  const control = new MemoryControl((m) => written.push(m));
  const marker: SnapshotMarker = { id: 'y1', table: 'public.t', chunk: 0, chunkRows: 2, targets: null, after: null, keys: null };
  await control.start(marker, 3);
  for (let session = 0; session < 2; session++) {
    const { handler, delivered } = collector();
    const stream = new SnapshotChunks({ site: 'a', reader, control, maxPartBytes: 1 << 20, pause: () => undefined, resume: () => undefined, onError: (e) => assert.fail(String(e)), logger }).wrap(handler);
    stream.transaction(tx(1, [markerChange(marker)]), null, position(1));
    await settle();
    await settle();
    assert.equal((delivered[0] as Delivered).tx.changes.length, 2, `session ${session}: the chunk is sent`);
  }
  assert.equal(written.length, 2, 'one marker for chunk 1, however often chunk 0 was read');
  await control.cancel('y1');
  const { handler, delivered } = collector();
  const stream = new SnapshotChunks({ site: 'a', reader, control, maxPartBytes: 1 << 20, pause: () => undefined, resume: () => undefined, onError: (e) => assert.fail(String(e)), logger }).wrap(handler);
  stream.transaction(tx(5, [markerChange(written[1]!)]), null, position(5));
  await settle();
  await settle();
  assert.deepEqual(delivered, [{ skipped: position(5) }], 'a cancelled snapshot reads nothing; its marker passes as an empty transaction');
});

test('a chunk larger than a message goes in parts, the checkpoint on the last; a marker that does not parse is dropped, the rest of its transaction goes on', async () => {
  const source: Table = new Map(Array.from({ length: 50 }, (_, i) => [i, 'x'.repeat(100)] as [number, string]));
  const reader = new MemoryReader(() => source, settle);
  const control = new MemoryControl(() => undefined);
  const { handler, delivered } = collector();
  const stream = new SnapshotChunks({ site: 'a', reader, control, maxPartBytes: 1000, pause: () => undefined, resume: () => undefined, onError: (e) => assert.fail(String(e)), logger }).wrap(handler);
  const marker: SnapshotMarker = { id: 'z1', table: 'public.t', chunk: 0, chunkRows: 100, targets: null, after: null, keys: null };
  await control.start(marker, 50);
  stream.transaction(tx(1, [markerChange(marker)]), null, position(1));
  await settle();
  await settle();
  const parts = delivered as Delivered[];
  assert.ok(parts.length > 3);
  parts.forEach((p, i) => {
    assert.deepEqual(p.part, { index: i, last: i === parts.length - 1 });
    assert.equal(p.checkpoint, i === parts.length - 1 ? position(1) : null);
    assert.equal(p.tx.snapshot?.last, true);
  });
  assert.equal(parts.reduce((sum, p) => sum + p.tx.changes.length, 0), 50);

  const other = collector();
  const stream2 = new SnapshotChunks({ site: 'a', reader, control, maxPartBytes: 1 << 20, pause: () => undefined, resume: () => undefined, onError: (e) => assert.fail(String(e)), logger }).wrap(other.handler);
  const insert: Change = { op: 'insert', relation, newRow: row(7, 'q') };
  stream2.transaction(tx(2, [{ op: 'message', prefix: SNAPSHOT_MARKER_PREFIX, content: Buffer.from('{"v":1,"id":"Bad Id"}') }, insert]), null, position(2));
  assert.deepEqual((other.delivered[0] as Delivered).tx.changes, [insert]);
});

test('a chunk that cannot be read ends the session, and nothing after the marker is handed on', async () => {
  const reader = new MemoryReader(() => new Map(), async () => {
    throw new Error('connection lost');
  });
  const control = new MemoryControl(() => undefined);
  const marker: SnapshotMarker = { id: 'e1', table: 'public.t', chunk: 0, chunkRows: 10, targets: null, after: null, keys: null };
  await control.start(marker, 0);
  const errors: unknown[] = [];
  const { handler, delivered } = collector();
  const stream = new SnapshotChunks({ site: 'a', reader, control, maxPartBytes: 1 << 20, pause: () => undefined, resume: () => undefined, onError: (e) => errors.push(e), logger }).wrap(handler);
  stream.transaction(tx(1, [markerChange(marker)]), null, position(1));
  stream.transaction(tx(2, [{ op: 'insert', relation, newRow: row(1, 'a') }]), null, position(2));
  await settle();
  await settle();
  assert.equal(errors.length, 1);
  assert.deepEqual(delivered, []);
});

test('each chunk is counted in the metrics, with its rows, by site and table', async () => {
  const events = new PipelineEvents();
  const metrics = createMetrics(events);
  events.emit('capture:snapshot-chunk', { site: 'paris', id: 'x', table: 'public.t', chunk: 0, rows: 1024, last: false });
  events.emit('capture:snapshot-chunk', { site: 'paris', id: 'x', table: 'public.t', chunk: 1, rows: 10, last: true });
  const text = await metrics.registry.metrics();
  assert.match(text, /^sitesync_snapshot_chunks_total\{site="paris",table="public\.t"\} 2$/m);
  assert.match(text, /^sitesync_snapshot_rows_total\{site="paris",table="public\.t"\} 1034$/m);
});
