/**
 * The source conformance suite: the promises of src/capture/source.ts, tried on one harness. Every
 * connector and the in-memory fake run it (sources.test.ts), so the capture runner can rely on them alike.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ResumePoint, SourceHandler } from '../../src/capture/source.ts';
import { comparePositions } from '../../src/events/position.ts';
import { formatKind } from '../../src/events/value-kind.ts';
import type { Change, SeenSites, Transaction, TransactionPart } from '../../src/events/transaction.ts';
import type { SourceFixture, SourceHarness, SourceOp } from './harness.ts';
import { ITEMS, KIND_SAMPLES, kindsTable, NO_KEY, columnName } from './tables.ts';
import { SnapshotChunks } from '../../src/capture/snapshot-chunks.ts';
import { newSnapshotId } from '../../src/capture/snapshot-marker.ts';
import { createLogger } from '../../src/observability/logger.ts';

type Event =
  | { readonly kind: 'tx'; readonly tx: Transaction; readonly part: TransactionPart | null; readonly checkpoint: string | null }
  | { readonly kind: 'skipped'; readonly position: string; readonly checkpoint: string; readonly reason: string; readonly seen: SeenSites }
  | { readonly kind: 'idle'; readonly checkpoint: string; readonly seen: SeenSites };

/** A source opened on the fixture, recording what it hands on. */
class Capture implements SourceHandler {
  readonly events: Event[] = [];
  private constructor(readonly source: ReturnType<SourceFixture['source']>) {}

  static async open(fixture: SourceFixture, maxPartBytes = 1 << 20): Promise<Capture> {
    const capture = new Capture(fixture.source(maxPartBytes));
    await capture.source.prepare();
    await capture.source.resumePoint();
    await capture.source.open(capture);
    return capture;
  }

  transaction(tx: Transaction, part: TransactionPart | null, checkpoint: string | null): void {
    this.events.push({ kind: 'tx', tx, part, checkpoint });
  }
  skipped(position: string, checkpoint: string, reason: 'relayed' | 'empty', seen: SeenSites): void {
    this.events.push({ kind: 'skipped', position, checkpoint, reason, seen });
  }
  idle(checkpoint: string, seen: SeenSites): void {
    this.events.push({ kind: 'idle', checkpoint, seen });
  }

  /** Whole transactions handed on (the last part of a split one), in order. */
  get transactions(): Transaction[] {
    return this.events.flatMap((e) => (e.kind === 'tx' && (e.part === null || e.part.last) ? [e.tx] : []));
  }

  async waitFor(what: string, done: () => boolean, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; saw ${JSON.stringify(this.events.map(show))}`);
      await sleep(20);
    }
  }

  /** Confirms everything handed on so far (as the runner does once the broker holds it), with its resume point. */
  async confirmAll(): Promise<void> {
    const last = [...this.events].reverse().find((e) => e.kind !== 'tx' || e.checkpoint !== null);
    if (!last) return;
    const checkpoint = last.kind === 'tx' ? last.checkpoint! : last.checkpoint;
    const lastTx = this.transactions.at(-1);
    const seen = last.kind === 'tx' ? last.tx.seen : last.seen;
    await this.source.confirm(checkpoint, { lastPublished: lastTx?.position ?? null, seen });
  }

  /** A clean stop: what was handed on is confirmed (as the runner does once the broker holds it), then settled. */
  async stop(): Promise<void> {
    await this.confirmAll();
    await this.source.settle();
    await this.source.end();
  }
}

function show(e: Event): string {
  return e.kind === 'tx' ? `tx ${e.tx.position}${e.part ? ` part ${e.part.index}${e.part.last ? ' last' : ''}` : ''}` : `${e.kind} ${e.kind === 'skipped' ? e.reason : ''} ${e.checkpoint}`;
}

function insert(id: number, note = `n${id}`, amount = `${id}.50`): SourceOp {
  return { op: 'insert', table: ITEMS, values: { id: String(id), note, amount } };
}

function rowChanges(tx: Transaction): Change[] {
  return tx.changes.filter((c) => c.op !== 'message');
}

function ids(tx: Transaction): string[] {
  return rowChanges(tx).map((c) => (c.op === 'insert' || c.op === 'update' ? c.newRow.values[0]! : c.op === 'delete' ? c.oldRow.values[0]! : '?'));
}

export function sourceConformance(harness: SourceHarness): void {
  describe(`source conformance: ${harness.name}`, () => {
    let fixture: SourceFixture;
    const kinds = kindsTable(harness.kinds);

    before(async () => {
      fixture = await harness.open([ITEMS, NO_KEY, kinds]);
    });
    after(async () => {
      await fixture?.cleanup();
    });

    test('transactions come whole, in commit order, each with its checkpoint; inserts, updates with and without key change, deletes', async () => {
      const capture = await Capture.open(fixture);
      try {
        await fixture.commit([insert(1), insert(2)]);
        await fixture.commit([{ op: 'update', table: ITEMS, where: { id: '1' }, set: { note: 'one' } }]);
        await fixture.commit([{ op: 'update', table: ITEMS, where: { id: '2' }, set: { id: '20' } }]);
        await fixture.commit([{ op: 'delete', table: ITEMS, where: { id: '20' } }]);
        await capture.waitFor('four transactions', () => capture.transactions.length >= 4);
        const txs = capture.transactions;
        for (let i = 1; i < txs.length; i++) assert.ok(comparePositions(txs[i - 1]!.position, txs[i]!.position) < 0, 'commit order');
        for (const e of capture.events) if (e.kind === 'tx') assert.ok(e.checkpoint !== null, 'a whole transaction has its checkpoint');
        const [t1, t2, t3, t4] = txs;
        assert.deepEqual(rowChanges(t1!).map((c) => [c.op, c.op === 'insert' ? [...c.newRow.values] : null]), [
          ['insert', ['1', 'n1', '1.50']],
          ['insert', ['2', 'n2', '2.50']],
        ]);
        const update = rowChanges(t2!)[0]!;
        assert.ok(update.op === 'update');
        assert.deepEqual([...update.newRow.values], ['1', 'one', '1.50']);
        assert.equal(update.oldRow, null, 'no old row when the key did not change');
        const keyChange = rowChanges(t3!)[0]!;
        assert.ok(keyChange.op === 'update' && keyChange.oldRow !== null, 'the old key travels when the key changed');
        assert.equal(keyChange.oldRow.values[0], '2');
        assert.equal(keyChange.newRow.values[0], '20');
        const del = rowChanges(t4!)[0]!;
        assert.ok(del.op === 'delete');
        assert.equal(del.oldRow.values[0], '20');
        assert.equal(del.relation.columns.find((c) => c.key)?.name, 'id');
        for (const tx of txs) assert.equal(tx.id, `${tx.site}:${tx.position}`);
      } finally {
        await capture.stop();
      }
    });

    test('a table without a key: updates and deletes carry the whole old row', async () => {
      const capture = await Capture.open(fixture);
      try {
        await fixture.commit([{ op: 'insert', table: NO_KEY, values: { v: '7', note: 'x' } }]);
        await fixture.commit([{ op: 'update', table: NO_KEY, where: { v: '7' }, set: { note: 'y' } }]);
        await fixture.commit([{ op: 'delete', table: NO_KEY, where: { v: '7' } }]);
        const noKey = (c: Change): boolean => c.op !== 'truncate' && c.op !== 'message' && c.relation.table === 'nokey';
        await capture.waitFor('three transactions', () => capture.transactions.filter((t) => rowChanges(t).some(noKey)).length >= 3);
        const changes = capture.transactions.flatMap(rowChanges).filter(noKey);
        const [ins, upd, del] = changes;
        assert.ok(ins?.op === 'insert' && upd?.op === 'update' && del?.op === 'delete');
        assert.equal(upd.relation.replicaIdentity, 'f');
        assert.deepEqual(upd.oldRow && [...upd.oldRow.values], ['7', 'x']);
        assert.deepEqual([...upd.newRow.values], ['7', 'y']);
        assert.deepEqual([...del.oldRow.values], ['7', 'y']);
      } finally {
        await capture.stop();
      }
    });

    test('every kind arrives as its canonical text, described by its kind', async () => {
      const capture = await Capture.open(fixture);
      try {
        const values = (i: 0 | 1): Record<string, string> =>
          Object.fromEntries([['id', String(i + 1)], ...harness.kinds.map((k) => [columnName(k), KIND_SAMPLES[k]![i]])]);
        await fixture.commit([{ op: 'insert', table: kinds, values: values(0) }, { op: 'insert', table: kinds, values: values(1) }]);
        await capture.waitFor('the kinds rows', () => capture.transactions.some((t) => rowChanges(t).some((c) => c.op === 'insert' && c.relation.table === 'kinds')));
        const inserts = capture.transactions.flatMap(rowChanges).filter((c) => c.op === 'insert' && c.relation.table === 'kinds');
        assert.equal(inserts.length, 2);
        for (const [i, change] of inserts.entries()) {
          assert.ok(change.op === 'insert');
          const got = Object.fromEntries(change.relation.columns.map((c, j) => [c.name, change.newRow.values[j]]));
          assert.deepEqual(got, values(i as 0 | 1));
          for (const column of change.relation.columns) {
            const spec = kinds.columns.find((c) => c.name === column.name)!;
            assert.equal(formatKind(column.kind), spec.kind, `kind of ${column.name} (native ${column.native.name})`);
          }
        }
      } finally {
        await capture.stop();
      }
    });

    if (harness.snapshots) {
      test('snapshot: a marker comes through the stream at its place; its chunks hold the rows as capture gave them', async () => {
        const { reader, control } = await fixture.snapshots!();
        const source = fixture.source(1 << 20);
        const events: Extract<Event, { kind: 'tx' }>[] = [];
        let failure: unknown = null;
        let lastCheckpoint: string | null = null;
        const chunks = new SnapshotChunks({
          site: 'conformance',
          reader,
          control,
          maxPartBytes: 1 << 20,
          pause: () => source.pause(),
          resume: () => source.resume(),
          onError: (error) => (failure = error),
          logger: createLogger('silent'),
        });
        const handler: SourceHandler = {
          transaction: (tx, part, checkpoint) => {
            events.push({ kind: 'tx', tx, part, checkpoint });
            lastCheckpoint = checkpoint ?? lastCheckpoint;
          },
          skipped: (_, checkpoint) => (lastCheckpoint = checkpoint),
          idle: (checkpoint) => (lastCheckpoint = checkpoint),
        };
        await source.prepare();
        const resume = await source.resumePoint();
        await source.open(chunks.wrap(handler));
        try {
          await fixture.commit([insert(9000)]);
          const id = newSnapshotId();
          // One row per chunk: the two kinds rows, then an empty last chunk.
          await control.start({ id, table: `${fixture.schema}.kinds`, chunk: 0, chunkRows: 1, targets: null, after: null, keys: null }, 2);
          await fixture.commit([insert(9001)]);
          const whole = (): Transaction[] => events.filter((e) => e.part === null || e.part.last).map((e) => e.tx);
          const deadline = Date.now() + 20_000;
          while (!(whole().some((t) => t.snapshot?.last) && whole().some((t) => ids(t).includes('9001')))) {
            if (failure) throw failure;
            if (Date.now() > deadline) throw new Error(`timed out waiting for the snapshot; saw ${JSON.stringify(events.map(show))}`);
            await sleep(20);
          }
          const txs = whole();
          const snapshot = txs.filter((t) => t.snapshot?.id === id);
          assert.deepEqual(snapshot.map((t) => [t.snapshot!.chunk, t.snapshot!.last, t.changes.length]), [[0, false, 1], [1, false, 1], [2, true, 0]]);
          for (let i = 1; i < txs.length; i++) assert.ok(comparePositions(txs[i]!.position, txs[i - 1]!.position) > 0, 'positions increase');
          const before = txs.find((t) => ids(t).includes('9000'))!;
          const after = txs.find((t) => ids(t).includes('9001'))!;
          assert.ok(comparePositions(before.position, snapshot[0]!.position) < 0 && comparePositions(snapshot[0]!.position, after.position) < 0, 'the chunk is sent at its marker, between the writes around it');
          const values = (i: 0 | 1): Record<string, string> =>
            Object.fromEntries([['id', String(i + 1)], ...harness.kinds.map((k) => [columnName(k), KIND_SAMPLES[k]![i]])]);
          for (const [i, tx] of snapshot.slice(0, 2).entries()) {
            const change = tx.changes[0]!;
            assert.ok(change.op === 'read');
            assert.deepEqual(Object.fromEntries(change.relation.columns.map((c, j) => [c.name, change.newRow.values[j]])), values(i as 0 | 1));
            for (const column of change.relation.columns) assert.equal(formatKind(column.kind), kinds.columns.find((c) => c.name === column.name)!.kind, `kind of ${column.name}`);
          }
          const status = (await control.list()).find((s) => s.id === id);
          assert.deepEqual([status?.state, status?.rowsSent], ['done', 2]);
        } finally {
          if (lastCheckpoint !== null) {
            const published = events.filter((e) => e.part === null || e.part.last).at(-1)?.tx;
            await source.confirm(lastCheckpoint, { lastPublished: published?.position ?? resume.lastPublished, seen: published?.seen ?? resume.seen });
            await source.settle();
          }
          await source.end();
          await chunks.close();
        }
      });
    }

    test('a large transaction comes in parts: in order, one id, a checkpoint only on the last', async () => {
      const capture = await Capture.open(fixture, 4096);
      try {
        await fixture.commit(Array.from({ length: 400 }, (_, i) => insert(1000 + i, 'a note long enough to make parts'.repeat(2))));
        await capture.waitFor('the last part', () => capture.events.some((e) => e.kind === 'tx' && e.part?.last === true));
        const parts = capture.events.filter((e): e is Extract<Event, { kind: 'tx' }> => e.kind === 'tx' && ids(e.tx).some((id) => Number(id) >= 1000 && Number(id) < 1400));
        assert.ok(parts.length > 2, `several parts (got ${parts.length})`);
        parts.forEach((p, i) => {
          assert.deepEqual(p.part, { index: i, last: i === parts.length - 1 });
          assert.equal(p.checkpoint === null, i < parts.length - 1, 'checkpoint only on the last part');
          assert.equal(p.tx.id, parts[0]!.tx.id);
        });
        assert.deepEqual(parts.flatMap((p) => ids(p.tx)), Array.from({ length: 400 }, (_, i) => String(1000 + i)));
      } finally {
        await capture.stop();
      }
    });

    test('after a restart, everything after the last confirmed checkpoint is sent again, and nothing before it', async () => {
      const first = await Capture.open(fixture);
      let resume: ResumePoint;
      try {
        await fixture.commit([insert(2001)]);
        await first.waitFor('2001', () => first.transactions.some((t) => ids(t).includes('2001')));
        await first.confirmAll();
        resume = await first.source.resumePoint();
        await fixture.commit([insert(2002)]);
        await fixture.commit([insert(2003)]);
        await first.waitFor('2003', () => first.transactions.some((t) => ids(t).includes('2003')));
        // 2002 and 2003 are handed on but never confirmed: the process dies here.
      } finally {
        await first.source.end();
      }
      const second = await Capture.open(fixture);
      try {
        assert.equal((await second.source.resumePoint()).lastPublished, resume.lastPublished);
        await second.waitFor('2003 again', () => second.transactions.some((t) => ids(t).includes('2003')));
        const seen = second.transactions.flatMap(ids);
        assert.ok(!seen.includes('2001'), 'the confirmed transaction is not sent again');
        assert.deepEqual(seen.filter((id) => id === '2002' || id === '2003'), ['2002', '2003']);
      } finally {
        await second.stop();
      }
    });

    test('after a clean stop (confirm, settle), nothing is sent twice', async () => {
      const first = await Capture.open(fixture);
      try {
        await fixture.commit([insert(3001)]);
        await first.waitFor('3001', () => first.transactions.some((t) => ids(t).includes('3001')));
        await first.confirmAll();
      } finally {
        await first.stop();
      }
      const second = await Capture.open(fixture);
      try {
        await fixture.commit([insert(3002)]);
        await second.waitFor('3002', () => second.transactions.some((t) => ids(t).includes('3002')));
        assert.deepEqual(second.transactions.flatMap(ids).filter((id) => id.startsWith('300')), ['3002']);
      } finally {
        await second.stop();
      }
    });

    test('a transaction applied by sitesync is skipped as relayed, and moves the causal context of the next', async () => {
      const capture = await Capture.open(fixture);
      try {
        const remoteTime = 1_700_000_123_456_789n;
        await fixture.commitRelayed('remote', remoteTime, [insert(4001)]);
        await fixture.commit([insert(4002)]);
        await capture.waitFor('4002', () => capture.transactions.some((t) => ids(t).includes('4002')));
        assert.ok(!capture.transactions.some((t) => ids(t).includes('4001')), 'the relayed write is not handed on');
        const skipped = capture.events.find((e) => e.kind === 'skipped' && e.reason === 'relayed');
        assert.ok(skipped && skipped.kind === 'skipped', 'skipped as relayed');
        const own = capture.transactions.find((t) => ids(t).includes('4002'))!;
        assert.ok(comparePositions(skipped.position, own.position) < 0);
        // Databases that keep commit times in whole seconds (MariaDB) round the remote time down to one.
        const seen = own.seen.remote;
        assert.ok(seen !== undefined && seen <= remoteTime && remoteTime - seen < 1_000_000n, `seen.remote ${seen} is the relayed commit time ${remoteTime}`);
        assert.equal(skipped.seen.remote, seen);
      } finally {
        await capture.stop();
      }
    });

    test('idle checkpoints come only between transactions, never inside one', async () => {
      const capture = await Capture.open(fixture, 4096);
      try {
        const big = fixture.commit(Array.from({ length: 300 }, (_, i) => insert(5000 + i, 'x'.repeat(60))));
        const beats = (async () => {
          for (let i = 0; i < 20; i++) {
            await capture.source.heartbeat();
            await sleep(10);
          }
        })();
        await Promise.all([big, beats]);
        await capture.waitFor('the last part', () => capture.events.some((e) => e.kind === 'tx' && e.part?.last === true && ids(e.tx).includes('5299')));
        await capture.source.heartbeat();
        const lastPart = capture.events.findIndex((e) => e.kind === 'tx' && e.part?.last === true && ids(e.tx).includes('5299'));
        await capture.waitFor('an idle checkpoint after it', () => capture.events.slice(lastPart + 1).some((e) => e.kind === 'idle'));
        // Checkpoints are opaque (only the source reads them): what the suite can see is where idles fall.
        let inside = false;
        for (const e of capture.events) {
          if (e.kind === 'tx') inside = e.part !== null && !e.part.last;
          else if (e.kind === 'idle') assert.ok(!inside, 'no idle checkpoint between the parts of one transaction');
        }
      } finally {
        await capture.stop();
      }
    });
  });
}
