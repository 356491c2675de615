import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CheckpointTracker, type Entry } from '../../src/capture/checkpoint-tracker.ts';
import { lsnToPosition } from '../../connectors/postgres/postgres-positions.ts';

const NO_SEEN = {};
const resume = (lastPublished: string | null) => ({ lastPublished, seen: NO_SEEN });

// Checkpoints and positions are fixed-width hex, so string order is source order.
const cp = (n: number): string => lsnToPosition(BigInt(n));
const pos = (n: number): string => `P${String(n).padStart(8, '0')}`;

/** Reads the tracker's internal entry list: only to show that memory stays bounded. */
function heldEntries(tracker: CheckpointTracker): number {
  const entries = (tracker as unknown as { entries: unknown }).entries;
  assert.ok(Array.isArray(entries), 'CheckpointTracker keeps its entries in an array named "entries"');
  return entries.length;
}

type Op =
  | { kind: 'publish'; withCheckpoint: boolean; withPosition: boolean }
  | { kind: 'passed' }
  | { kind: 'confirm'; pick: number }
  | { kind: 'advance' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('publish' as const), withCheckpoint: fc.boolean(), withPosition: fc.boolean() }), weight: 4 },
  { arbitrary: fc.record({ kind: fc.constant('passed' as const) }), weight: 3 },
  { arbitrary: fc.record({ kind: fc.constant('confirm' as const), pick: fc.nat() }), weight: 4 },
  { arbitrary: fc.record({ kind: fc.constant('advance' as const) }), weight: 3 },
);

interface ModelEntry {
  readonly checkpoint: string | null;
  readonly lastPosition: string | null;
  done: boolean;
  /** The tracker's handle, for published entries. */
  readonly handle: Entry | null;
}

describe('CheckpointTracker', () => {
  test('property: the frontier is the last checkpoint of the longest fully-done prefix, never past the first pending entry', () => {
    fc.assert(
      fc.property(fc.option(fc.constant(pos(0)), { nil: null }), fc.array(opArb, { maxLength: 80 }), (initial, ops) => {
        const tracker = new CheckpointTracker(resume(initial));
        const model: ModelEntry[] = [];
        let counter = 0;
        const ops2: Op[] = [...ops, { kind: 'advance' }];
        for (const op of ops2) {
          switch (op.kind) {
            case 'publish': {
              counter++;
              const checkpoint = op.withCheckpoint ? cp(counter) : null;
              const lastPosition = op.withPosition ? pos(counter) : null;
              const handle = tracker.published(checkpoint, lastPosition, NO_SEEN);
              model.push({ checkpoint, lastPosition, done: false, handle });
              break;
            }
            case 'passed': {
              counter++;
              tracker.passed(cp(counter), NO_SEEN);
              model.push({ checkpoint: cp(counter), lastPosition: null, done: true, handle: null });
              break;
            }
            case 'confirm': {
              const published = model.filter((m) => m.handle !== null);
              if (published.length === 0) break;
              const chosen = published[op.pick % published.length]!;
              tracker.confirmed(chosen.handle!);
              chosen.done = true;
              break;
            }
            case 'advance': {
              const frontier = tracker.advance();
              let firstPending = model.findIndex((m) => !m.done);
              if (firstPending < 0) firstPending = model.length;
              const prefix = model.slice(0, firstPending);
              const expectedCheckpoint = prefix.filter((m) => m.checkpoint !== null).at(-1)?.checkpoint ?? null;
              const expectedPublished = prefix.filter((m) => m.lastPosition !== null).at(-1)?.lastPosition ?? initial;
              assert.equal(frontier.checkpoint, expectedCheckpoint);
              assert.equal(frontier.lastPublished, expectedPublished);
              if (frontier.checkpoint !== null) {
                for (const later of model.slice(firstPending)) {
                  if (later.checkpoint !== null) assert.ok(frontier.checkpoint < later.checkpoint, `frontier ${frontier.checkpoint} reached pending ${later.checkpoint}`);
                }
              }
              assert.equal(tracker.unconfirmed, model.filter((m) => !m.done).length);
              break;
            }
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  test('a fresh tracker reports nothing to confirm and the last published position it was given', () => {
    assert.deepEqual(new CheckpointTracker(resume(null)).advance(), { checkpoint: null, lastPublished: null, seen: NO_SEEN });
    assert.deepEqual(new CheckpointTracker(resume('00000000000000AA')).advance(), { checkpoint: null, lastPublished: '00000000000000AA', seen: NO_SEEN });
  });

  test('a keepalive after an unconfirmed message is not confirmed until the message is', () => {
    const tracker = new CheckpointTracker(resume(null));
    const message = tracker.published(cp(10), pos(10), NO_SEEN);
    tracker.passed(cp(20), NO_SEEN);
    assert.deepEqual(tracker.advance(), { checkpoint: null, lastPublished: null, seen: NO_SEEN });
    assert.equal(tracker.unconfirmed, 1);
    tracker.passed(cp(30), NO_SEEN);
    assert.deepEqual(tracker.advance(), { checkpoint: null, lastPublished: null, seen: NO_SEEN });
    tracker.confirmed(message);
    assert.deepEqual(tracker.advance(), { checkpoint: cp(30), lastPublished: pos(10), seen: NO_SEEN });
    assert.equal(tracker.unconfirmed, 0);
  });

  test('confirming a later message first does not move the frontier past an earlier pending one', () => {
    const tracker = new CheckpointTracker(resume(pos(1)));
    const first = tracker.published(cp(10), pos(10), NO_SEEN);
    const second = tracker.published(cp(20), pos(20), NO_SEEN);
    tracker.confirmed(second);
    assert.deepEqual(tracker.advance(), { checkpoint: null, lastPublished: pos(1), seen: NO_SEEN });
    tracker.confirmed(first);
    assert.deepEqual(tracker.advance(), { checkpoint: cp(20), lastPublished: pos(20), seen: NO_SEEN });
  });

  test('parts before the last carry no checkpoint: only the last part moves the frontier', () => {
    const tracker = new CheckpointTracker(resume(null));
    const part0 = tracker.published(null, null, NO_SEEN);
    const part1 = tracker.published(null, null, NO_SEEN);
    const last = tracker.published(cp(5), pos(5), NO_SEEN);
    tracker.confirmed(part0);
    tracker.confirmed(part1);
    tracker.passed(cp(6), NO_SEEN); // a keepalive merges after confirmed parts, but still waits for the last part
    assert.deepEqual(tracker.advance(), { checkpoint: null, lastPublished: null, seen: NO_SEEN });
    tracker.confirmed(last);
    assert.deepEqual(tracker.advance(), { checkpoint: cp(6), lastPublished: pos(5), seen: NO_SEEN });
  });

  test('100k keepalives behind a pending message are held as one entry; the frontier becomes the last', () => {
    const tracker = new CheckpointTracker(resume(null));
    const message = tracker.published(cp(1), pos(1), NO_SEEN);
    for (let i = 2; i <= 100_001; i++) tracker.passed(cp(i), NO_SEEN);
    assert.ok(heldEntries(tracker) <= 2, `entries held: ${heldEntries(tracker)}`);
    assert.deepEqual(tracker.advance(), { checkpoint: null, lastPublished: null, seen: NO_SEEN });
    tracker.confirmed(message);
    assert.deepEqual(tracker.advance(), { checkpoint: cp(100_001), lastPublished: pos(1), seen: NO_SEEN });
  });

  test('100k keepalives alone, then advance: the frontier is the last, memory stays flat', () => {
    const tracker = new CheckpointTracker(resume(null));
    for (let i = 1; i <= 100_000; i++) tracker.passed(cp(i), NO_SEEN);
    assert.ok(heldEntries(tracker) <= 1, `entries held: ${heldEntries(tracker)}`);
    assert.deepEqual(tracker.advance(), { checkpoint: cp(100_000), lastPublished: null, seen: NO_SEEN });
  });

  test('keepalives interleaved with advance and confirmed messages: entries are let go', () => {
    const tracker = new CheckpointTracker(resume(null));
    let n = 0;
    for (let i = 0; i < 50_000; i++) {
      if (i % 3 === 0) tracker.confirmed(tracker.published(cp(++n), pos(n), NO_SEEN));
      tracker.passed(cp(++n), NO_SEEN);
      tracker.advance();
    }
    assert.ok(heldEntries(tracker) <= 2100, `entries held: ${heldEntries(tracker)}`);
    const last = tracker.published(cp(++n), pos(n), NO_SEEN);
    tracker.passed(cp(++n), NO_SEEN);
    assert.equal(tracker.advance().checkpoint, cp(n - 2));
    tracker.confirmed(last);
    assert.deepEqual(tracker.advance(), { checkpoint: cp(n), lastPublished: pos(n - 1), seen: NO_SEEN });
  });
});

test('the causal context confirmed is the one of the frontier, never ahead of it', () => {
  const tracker = new CheckpointTracker(resume(null));
  const before = { paris: 1n };
  const after = { paris: 2n };
  const message = tracker.published(cp(10), pos(10), before);
  tracker.passed(cp(20), after); // a relayed write after the unconfirmed message moved the context
  assert.equal(tracker.advance().seen, NO_SEEN);
  tracker.confirmed(message);
  assert.equal(tracker.advance().seen, after);
});
