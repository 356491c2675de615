/**
 * The replication stream as it reaches sitesync: PostgreSQL CopyData messages ('d' + int32 length +
 * payload) whose payloads are XLogData frames ('w' + 3 × int64 + one pgoutput message) or keepalives,
 * cut by TCP at arbitrary points. The pg driver's own parser (pg-protocol) joins the pieces; sitesync
 * decodes each payload synchronously inside its callback. Whatever the cuts, every message must come out
 * exactly as it went in — including messages decoded before the parser reused the bytes they came from.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Parser } from 'pg-protocol/dist/parser.js';
import type { BackendMessage, CopyDataMessage } from 'pg-protocol/dist/messages.js';
import { decodePgOutput } from '../../connectors/postgres/pgoutput-decoder.ts';
import { POSTGRES_EPOCH_OFFSET_MICROS, type PgOutputMessage, type TupleData } from '../../connectors/postgres/pgoutput-messages.ts';
import { decodeReplicationFrame } from '../../connectors/postgres/replication-frames.ts';
import { EncodedRow } from '../../src/events/encoded-row.ts';
import { encodePgOutput } from '../helpers/pgoutput-encoder.ts';
import { plainRows } from '../helpers/plain-rows.ts';

// ---------------------------------------------------------------------------------------------------
// What the server sends, and how to frame it.

/** One CopyData payload as sitesync reads it back: an XLogData frame with its message, or a keepalive. */
type Frame =
  | { readonly kind: 'xlog'; readonly walStart: bigint; readonly walEnd: bigint; readonly sendTimeMicros: bigint; readonly message: PgOutputMessage }
  | { readonly kind: 'keepalive'; readonly walEnd: bigint; readonly sendTimeMicros: bigint; readonly replyRequested: boolean };

function copyData(payload: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header.write('d', 0, 'latin1');
  header.writeUInt32BE(4 + payload.length, 1); // the length counts itself, not the type byte
  return Buffer.concat([header, payload]);
}

function frameBytes(frame: Frame): Buffer {
  if (frame.kind === 'xlog') {
    const header = Buffer.alloc(25);
    header.write('w', 0, 'latin1');
    header.writeBigUInt64BE(frame.walStart, 1);
    header.writeBigUInt64BE(frame.walEnd, 9);
    header.writeBigInt64BE(frame.sendTimeMicros - POSTGRES_EPOCH_OFFSET_MICROS, 17);
    return Buffer.concat([header, encodePgOutput(frame.message)]);
  }
  const keepalive = Buffer.alloc(18);
  keepalive.write('k', 0, 'latin1');
  keepalive.writeBigUInt64BE(frame.walEnd, 1);
  keepalive.writeBigInt64BE(frame.sendTimeMicros - POSTGRES_EPOCH_OFFSET_MICROS, 9);
  keepalive.writeUInt8(frame.replyRequested ? 1 : 0, 17);
  return keepalive;
}

function stream(frames: readonly Frame[]): Buffer {
  return Buffer.concat(frames.map((f) => copyData(frameBytes(f))));
}

/** Cuts `bytes` at the given offsets (any order, duplicates allowed) into fresh, independent chunks, as a socket delivers them. */
function cut(bytes: Buffer, offsets: readonly number[]): Buffer[] {
  const points = [...new Set(offsets.map((o) => o % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const to of [...points, bytes.length]) {
    chunks.push(Buffer.from(bytes.subarray(from, to))); // a copy: the test's stream is never a view the parser could write into
    from = to;
  }
  return chunks;
}

/**
 * What sitesync does with a stream: pg-protocol's parser reassembles CopyData messages, and each payload
 * is decoded inside the callback, before the parser may reuse its buffer. Only decoded values are kept.
 */
function decodeChunks(chunks: readonly Buffer[]): Frame[] {
  const parser = new Parser();
  const decoded: Frame[] = [];
  for (const chunk of chunks) {
    parser.parse(chunk, (message: BackendMessage) => {
      assert.equal(message.name, 'copyData', `unexpected backend message ${message.name}`);
      const frame = decodeReplicationFrame((message as CopyDataMessage).chunk);
      if (frame.kind === 'keepalive') {
        decoded.push(frame);
      } else {
        const { payload, ...header } = frame;
        decoded.push({ ...header, message: decodePgOutput(payload) });
      }
    });
  }
  return decoded;
}

// ---------------------------------------------------------------------------------------------------
// Generators: realistic transactions (begin, relation, rows, logical messages, commit) and keepalives.
// Values include multi-byte UTF-8 and long strings, so cuts land inside characters and the parser's
// buffer has to grow, move and be reused.

function record<T>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> {
  return fc.record(model, { noNullPrototype: true }); // plain objects, as the decoder builds them
}

const uint32 = fc.integer({ min: 0, max: 0xffff_ffff });
const lsn = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
const micros = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map((pg) => pg + POSTGRES_EPOCH_OFFSET_MICROS);
const name = fc.string({ unit: 'grapheme', maxLength: 12 }).map((s) => s.replaceAll('\0', ''));
const value = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ unit: 'binary', minLength: 200, maxLength: 3000 }), // past the parser's first buffer sizes
);

const tuple: fc.Arbitrary<TupleData> = fc
  .array(fc.oneof(fc.constant<'n'>('n'), fc.constant<'u'>('u'), value), { maxLength: 6 })
  .map((cells) =>
    EncodedRow.of({
      values: cells.map((c) => (c === 'n' || c === 'u' ? null : c)),
      unchanged: cells.flatMap((c, i) => (c === 'u' ? [i] : [])),
    }),
  );

const rowMessage: fc.Arbitrary<PgOutputMessage> = fc.oneof(
  record({
    tag: fc.constant('relation' as const),
    relationOid: uint32,
    schema: name,
    table: name,
    replicaIdentity: fc.constantFrom('d' as const, 'f' as const, 'i' as const, 'n' as const),
    columns: fc.array(
      record({ flags: fc.integer({ min: 0, max: 1 }), name, typeOid: uint32, typeModifier: fc.integer({ min: -1, max: 2 ** 31 - 1 }) }),
      { maxLength: 6 },
    ),
  }),
  record({ tag: fc.constant('insert' as const), relationOid: uint32, newTuple: tuple }),
  record({ tag: fc.constant('update' as const), relationOid: uint32, oldKind: fc.constant<'K' | 'O'>('O'), oldTuple: tuple, newTuple: tuple }),
  record({ tag: fc.constant('update' as const), relationOid: uint32, oldKind: fc.constant(null), oldTuple: fc.constant(null), newTuple: tuple }),
  record({ tag: fc.constant('delete' as const), relationOid: uint32, oldKind: fc.constantFrom<'K' | 'O'>('K', 'O'), oldTuple: tuple }),
  record({ tag: fc.constant('truncate' as const), relationOids: fc.array(uint32, { maxLength: 3 }), cascade: fc.boolean(), restartIdentity: fc.boolean() }),
  record({
    tag: fc.constant('message' as const),
    transactional: fc.boolean(),
    lsn,
    prefix: name,
    content: fc.uint8Array({ maxLength: 600 }).map((b) => Buffer.from(b)),
  }),
  record({ tag: fc.constant('type' as const), typeOid: uint32, schema: name, name }),
  record({ tag: fc.constant('origin' as const), originLsn: lsn, name }),
);

const transaction: fc.Arbitrary<PgOutputMessage[]> = fc
  .tuple(
    record({ tag: fc.constant('begin' as const), finalLsn: lsn, commitTimeMicros: micros, xid: uint32 }),
    fc.array(rowMessage, { maxLength: 8 }),
    record({ tag: fc.constant('commit' as const), flags: fc.constant(0), commitLsn: lsn, endLsn: lsn, commitTimeMicros: micros }),
  )
  .map(([begin, rows, commit]) => [begin, ...rows, commit]);

const xlog = (message: PgOutputMessage): fc.Arbitrary<Frame> =>
  record({ kind: fc.constant('xlog' as const), walStart: lsn, walEnd: lsn, sendTimeMicros: micros, message: fc.constant(message) });

const keepalive: fc.Arbitrary<Frame> = record({ kind: fc.constant('keepalive' as const), walEnd: lsn, sendTimeMicros: micros, replyRequested: fc.boolean() });

/** A few transactions, each message in its own XLogData frame, with keepalives between some of them. */
const frames: fc.Arbitrary<Frame[]> = fc
  .array(transaction, { minLength: 1, maxLength: 4 })
  .chain((txs) => fc.tuple(...txs.flat().map((m) => fc.tuple(xlog(m), fc.option(keepalive, { freq: 4 })))))
  .map((pairs) => pairs.flatMap(([frame, ka]) => (ka ? [frame, ka] : [frame])));

/** Cut points: a few anywhere, many anywhere, or everything one byte at a time. */
const cuts = (length: number): fc.Arbitrary<number[]> =>
  fc.oneof(
    fc.array(fc.nat({ max: length }), { maxLength: 4 }),
    fc.array(fc.nat({ max: length }), { maxLength: 200 }),
    fc.constant(Array.from({ length }, (_, i) => i)),
  );

const framesAndCuts = frames.chain((f) => {
  const bytes = stream(f);
  return fc.tuple(fc.constant(f), fc.constant(bytes), cuts(bytes.length));
});

// ---------------------------------------------------------------------------------------------------

test('the whole stream in one chunk decodes to the frames that went in', () => {
  fc.assert(
    fc.property(frames, (f) => {
      assert.deepEqual(plainRows(decodeChunks([stream(f)])), plainRows(f));
    }),
    { numRuns: 100 },
  );
});

test('property: any cuts of a valid stream decode to exactly the frames that went in, in order', () => {
  fc.assert(
    fc.property(framesAndCuts, ([f, bytes, offsets]) => {
      assert.deepEqual(plainRows(decodeChunks(cut(bytes, offsets))), plainRows(f));
    }),
    { numRuns: 300 },
  );
});

test('property: payloads decoded early are not corrupted when the parser reuses its buffer', () => {
  // A stream of equal messages cut so that each chunk ends inside the next message: the parser keeps the
  // first chunk as its buffer, then moves the leftover to its start, over bytes it already handed out.
  fc.assert(
    fc.property(fc.array(transaction, { minLength: 2, maxLength: 4 }), fc.nat(), (txs, seed) => {
      const f = txs.flat().map((message, i): Frame => ({ kind: 'xlog', walStart: BigInt(i), walEnd: BigInt(i), sendTimeMicros: 0n, message }));
      const bytes = stream(f);
      const sizes = f.map((frame) => copyData(frameBytes(frame)).length);
      const offsets: number[] = [];
      let end = 0;
      for (const size of sizes) {
        offsets.push(end + 1 + ((seed + end) % Math.max(1, size - 1))); // inside each message, past its first byte
        end += size;
      }
      assert.deepEqual(plainRows(decodeChunks(cut(bytes, offsets))), plainRows(f));
    }),
    { numRuns: 200 },
  );
});

test('control: the parser does overwrite a payload it handed out, so decoding must happen inside the callback', () => {
  // Three CopyData messages of the same size L, delivered as [1 + ½ of 2], [½ of 2 + ½ of 3], [½ of 3]:
  // the parser adopts the first chunk as its buffer, and on the second moves the leftover half of message
  // 2 to its start, over message 1. A payload kept as a view (not decoded) then reads other bytes.
  const make = (fill: number) => copyData(Buffer.concat([Buffer.from('w'), Buffer.alloc(24), Buffer.alloc(64, fill)]));
  const messages = [make(1), make(2), make(3)];
  const size = messages[0]!.length;
  const bytes = Buffer.concat(messages);
  const chunks = cut(bytes, [size + size / 2, 2 * size + size / 2]);
  const parser = new Parser();
  const kept: Buffer[] = [];
  const copied: Buffer[] = [];
  for (const chunk of chunks) {
    parser.parse(chunk, (message: BackendMessage) => {
      const payload = (message as CopyDataMessage).chunk;
      kept.push(payload);
      copied.push(Buffer.from(payload));
    });
  }
  assert.equal(kept.length, 3);
  assert.deepEqual(copied, messages.map((m) => m.subarray(5)), 'read inside the callback, every payload is right');
  assert.notDeepEqual(kept[0], copied[0], 'read after the callback, the first payload has been overwritten');
});
