/**
 * How capture groups transactions into messages: at once when nothing is in flight, else after the confirms
 * in flight or a short linger, and always when full. Timers are Node's mock timers, so nothing here waits.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, mock, test } from 'node:test';
import { MessageBatcher, type Batch } from '../../src/capture/message-batcher.ts';
import type { Transaction } from '../../src/events/transaction.ts';

const tx = (n: number): Transaction => ({
  id: `paris:${n}`,
  site: 'paris',
  position: n.toString(16).padStart(16, '0'),
  commitTimeMicros: BigInt(n),
  sourceTxId: String(n),
  seen: { london: BigInt(n) },
  changes: [],
});

let unconfirmed = 0;
let published: Batch[] = [];
const ids = (): string[][] => published.map((b) => b.transactions.map((t) => t.id));
const batcher = (limits: Partial<{ maxTransactions: number; maxBytes: number; lingerMs: number }> = {}): MessageBatcher =>
  new MessageBatcher({ maxTransactions: 100, maxBytes: 1 << 20, lingerMs: 10, ...limits }, () => unconfirmed, (b) => published.push(b));

beforeEach(() => {
  unconfirmed = 0;
  published = [];
  mock.timers.enable({ apis: ['setTimeout', 'setImmediate'] });
});
afterEach(() => mock.timers.reset());

test('nothing in flight: what arrived in this turn goes out together at the end of it', () => {
  const b = batcher();
  b.add(tx(1), 10, 'c1');
  b.add(tx(2), 10, 'c2');
  assert.equal(published.length, 0, 'not within the turn');
  mock.timers.tick(0);
  assert.deepEqual(ids(), [['paris:1', 'paris:2']]);
  assert.equal(published[0]!.checkpoint, 'c2');
  assert.deepEqual(published[0]!.seen, { london: 2n });
});

test('a full message goes out at once, by count or by bytes', () => {
  const byCount = batcher({ maxTransactions: 2 });
  byCount.add(tx(1), 10, 'c1');
  byCount.add(tx(2), 10, 'c2');
  assert.deepEqual(ids(), [['paris:1', 'paris:2']]);
  published = [];
  const byBytes = batcher({ maxBytes: 100 });
  byBytes.add(tx(3), 60, 'c3');
  byBytes.add(tx(4), 60, 'c4');
  assert.deepEqual(ids(), [['paris:3', 'paris:4']]);
  mock.timers.tick(100);
  assert.equal(published.length, 1, 'nothing left to send later');
});

test('messages in flight: later transactions wait for their confirms and go out as one message', () => {
  const b = batcher();
  unconfirmed = 2;
  b.add(tx(1), 10, 'c1');
  mock.timers.tick(0);
  b.add(tx(2), 10, 'c2');
  mock.timers.tick(3);
  b.add(tx(3), 10, 'c3');
  assert.equal(published.length, 0, 'held while earlier messages are unconfirmed');
  unconfirmed = 1;
  b.confirmed();
  assert.equal(published.length, 0, 'one confirm of two is not enough');
  unconfirmed = 0;
  b.confirmed();
  assert.deepEqual(ids(), [['paris:1', 'paris:2', 'paris:3']]);
  mock.timers.tick(100);
  assert.equal(published.length, 1, 'the linger timer went with it');
});

test('confirms that are slow: the message goes out after lingerMs all the same', () => {
  const b = batcher({ lingerMs: 10 });
  unconfirmed = 1;
  b.add(tx(1), 10, 'c1');
  mock.timers.tick(9);
  assert.equal(published.length, 0);
  mock.timers.tick(1);
  assert.deepEqual(ids(), [['paris:1']]);
});

test('a checkpoint passed after the gathered transactions rides with them; with none gathered it does not', () => {
  const b = batcher();
  assert.equal(b.passed('c0', {}), false);
  b.add(tx(1), 10, 'c1');
  assert.equal(b.passed('c9', { london: 9n }), true);
  b.flush();
  assert.equal(published[0]!.checkpoint, 'c9');
  assert.deepEqual(published[0]!.seen, { london: 9n });
});

test('flush sends what is held now; after close nothing more is sent', () => {
  const b = batcher();
  unconfirmed = 1;
  b.add(tx(1), 10, 'c1');
  b.flush();
  assert.deepEqual(ids(), [['paris:1']]);
  b.add(tx(2), 10, 'c2');
  b.close();
  mock.timers.tick(100);
  unconfirmed = 0;
  b.confirmed();
  b.flush();
  assert.deepEqual(ids(), [['paris:1']]);
});
