import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { DecodeError } from '../../src/errors.ts';
import { decodePgOutput, isRowChangeTag } from '../../connectors/postgres/pgoutput-decoder.ts';
import {
  POSTGRES_EPOCH_OFFSET_MICROS,
  type PgOutputMessage,
  type TupleData,
} from '../../connectors/postgres/pgoutput-messages.ts';
import { decodeReplicationFrame, encodeStandbyStatus, isXLogData, XLOG_DATA_HEADER_LENGTH } from '../../connectors/postgres/replication-frames.ts';
import { EncodedRow } from '../../src/events/encoded-row.ts';
import { encodePgOutput } from '../helpers/pgoutput-encoder.ts';
import { plainRows } from '../helpers/plain-rows.ts';

// ---------------------------------------------------------------------------------------------------
// Hand-written fixtures. Bytes are spelled out in hex, independently of the test encoder, so that a
// mistake shared by encoder and decoder cannot hide here.

/** Concatenates hex fragments; spaces are for the reader. */
function hex(...parts: string[]): Buffer {
  return Buffer.from(parts.join('').replace(/\s+/g, ''), 'hex');
}

/** A NUL-terminated string in hex. */
function cstr(text: string): string {
  return Buffer.from(text, 'utf8').toString('hex') + '00';
}

// 2024-01-02T03:04:05.123456Z: Unix microseconds, and the same instant on PostgreSQL's 2000 epoch.
const COMMIT_TIME_UNIX = 1_704_164_645_123_456n;
const COMMIT_TIME_PG_HEX = '0002b0ec8517d580'; // 757_479_845_123_456

test('begin: LSN above 2^32, commit time with microseconds, xid above 2^31', () => {
  const message = decodePgOutput(hex('42', '00000001a2b3c4d5', COMMIT_TIME_PG_HEX, 'fffffffe'));
  assert.deepEqual(message, {
    tag: 'begin',
    finalLsn: 0x1_a2b3_c4d5n,
    commitTimeMicros: COMMIT_TIME_UNIX,
    xid: 4_294_967_294,
  });
});

test('commit', () => {
  const message = decodePgOutput(hex('43', '00', '00000001a2b3c4d5', '00000001a2b3c505', COMMIT_TIME_PG_HEX));
  assert.deepEqual(message, {
    tag: 'commit',
    flags: 0,
    commitLsn: 0x1_a2b3_c4d5n,
    endLsn: 0x1_a2b3_c505n,
    commitTimeMicros: COMMIT_TIME_UNIX,
  });
});

test('commit time before 2000 (negative on the PostgreSQL epoch) converts exactly', () => {
  const message = decodePgOutput(hex('43', '00', '0000000000000001', '0000000000000002', 'ffffffffffffffff'));
  assert.equal(message.tag === 'commit' && message.commitTimeMicros, POSTGRES_EPOCH_OFFSET_MICROS - 1n);
});

test('origin', () => {
  const message = decodePgOutput(hex('4f', 'ffffffffffffffff', cstr('site-a')));
  assert.deepEqual(message, { tag: 'origin', originLsn: 0xffff_ffff_ffff_ffffn, name: 'site-a' });
});

test('relation: OIDs above 2^31, signed type modifier', () => {
  const message = decodePgOutput(
    hex(
      '52', '80000001', cstr('public'), cstr('orders'), '66', '0002',
      '01', cstr('id'), '00000017', 'ffffffff',
      '00', cstr('note'), 'fffffff0', '00000104',
    ),
  );
  assert.deepEqual(message, {
    tag: 'relation',
    relationOid: 2_147_483_649,
    schema: 'public',
    table: 'orders',
    replicaIdentity: 'f',
    columns: [
      { flags: 1, name: 'id', typeOid: 23, typeModifier: -1 },
      { flags: 0, name: 'note', typeOid: 4_294_967_280, typeModifier: 260 },
    ],
  });
});

test('type', () => {
  const message = decodePgOutput(hex('59', '90000000', cstr('public'), cstr('mood')));
  assert.deepEqual(message, { tag: 'type', typeOid: 2_415_919_104, schema: 'public', name: 'mood' });
});

test('insert: text, NULL and multi-byte UTF-8 values', () => {
  const message = decodePgOutput(hex('49', '80000001', '4e', '0003', '74 00000002 3432', '6e', '74 00000003 68c3a9'));
  assert.deepEqual(plainRows(message), {
    tag: 'insert',
    relationOid: 2_147_483_649,
    newTuple: { values: ['42', null, 'hé'], unchanged: [] },
  });
});

test('update with a key old tuple and an unchanged TOAST column', () => {
  const message = decodePgOutput(hex('55', '00004000', '4b', '0001', '74 00000002 3432', '4e', '0002', '74 00000002 3432', '75'));
  assert.deepEqual(plainRows(message), {
    tag: 'update',
    relationOid: 16_384,
    oldKind: 'K',
    oldTuple: { values: ['42'], unchanged: [] },
    newTuple: { values: ['42', null], unchanged: [1] },
  });
});

test('update without an old tuple', () => {
  const message = decodePgOutput(hex('55', '00004000', '4e', '0001', '6e'));
  assert.deepEqual(plainRows(message), {
    tag: 'update',
    relationOid: 16_384,
    oldKind: null,
    oldTuple: null,
    newTuple: { values: [null], unchanged: [] },
  });
});

test('delete with a full old row', () => {
  const message = decodePgOutput(hex('44', '00004000', '4f', '0002', '74 00000001 31', '6e'));
  assert.deepEqual(plainRows(message), {
    tag: 'delete',
    relationOid: 16_384,
    oldKind: 'O',
    oldTuple: { values: ['1', null], unchanged: [] },
  });
});

test('truncate: option bits and OIDs', () => {
  const both = decodePgOutput(hex('54', '00000002', '03', '00004000', 'fffffffe'));
  assert.deepEqual(both, { tag: 'truncate', relationOids: [16_384, 4_294_967_294], cascade: true, restartIdentity: true });
  const cascade = decodePgOutput(hex('54', '00000001', '01', '00004000'));
  assert.deepEqual(cascade, { tag: 'truncate', relationOids: [16_384], cascade: true, restartIdentity: false });
  const restart = decodePgOutput(hex('54', '00000000', '02'));
  assert.deepEqual(restart, { tag: 'truncate', relationOids: [], cascade: false, restartIdentity: true });
});

test('logical message: content is a copy, not a view of the reused driver buffer', () => {
  const payload = hex('4d', '01', '0000000100000000', cstr('sitesync'), '00000003', '010203');
  const message = decodePgOutput(payload);
  payload.fill(0);
  assert.deepEqual(message, {
    tag: 'message',
    transactional: true,
    lsn: 0x1_0000_0000n,
    prefix: 'sitesync',
    content: Buffer.from([1, 2, 3]),
  });
});

test('unknown tags, including protocol v2 stream messages, name the tag as character and number', () => {
  for (const tag of ['S', 'E', 'c', 'A', '\0']) {
    const code = tag.charCodeAt(0);
    assert.throws(
      () => decodePgOutput(Buffer.from([code, 0, 0, 0, 0])),
      (error: unknown) =>
        error instanceof DecodeError && error.message.includes(JSON.stringify(tag)) && error.message.includes(`(${code})`),
    );
  }
});

test('malformed input is a DecodeError', () => {
  const cases: Record<string, Buffer> = {
    empty: hex(''),
    'binary tuple value': hex('49', '00004000', '4e', '0001', '62 00000001 00'),
    'trailing byte': hex('4f', '0000000000000001', cstr('a'), '00'),
    'invalid UTF-8': hex('49', '00004000', '4e', '0001', '74 00000001 ff'),
    'unterminated string': hex('4f', '0000000000000001', '6162'),
    'unknown replica identity': hex('52', '00004000', cstr('s'), cstr('t'), '78', '0000'),
    'missing new-tuple marker': hex('49', '00004000', '4b', '0000'),
    'unknown truncate option': hex('54', '00000000', '04'),
    'text length past the end': hex('49', '00004000', '4e', '0001', '74 ffffffff 41'),
  };
  for (const [name, bytes] of Object.entries(cases)) {
    assert.throws(() => decodePgOutput(bytes), DecodeError, name);
  }
});

test('UTF-8: a real U+FFFD is a value; invalid sequences of every kind are errors naming the column', () => {
  const insertOf = (...values: string[]) => hex('49', '00004000', '4e', (values.length).toString(16).padStart(4, '0'), ...values.map((v) => `74 ${(v.length / 2).toString(16).padStart(8, '0')} ${v}`));
  const ok = decodePgOutput(insertOf('41', Buffer.from('a\uFFFDb').toString('hex')));
  assert.deepEqual(ok.tag === 'insert' && ok.newTuple.values, ['A', 'a\uFFFDb']);
  // an encoded surrogate, an overlong '/', a code point above U+10FFFF, a cut sequence, a lone continuation byte
  for (const bad of ['eda080', 'c0af', 'f4908080', 'e282', '80']) {
    assert.throws(() => decodePgOutput(insertOf('41', bad)), (e: unknown) => e instanceof DecodeError && /new tuple column 1: invalid UTF-8/.test(e.message), bad);
  }
});

test('a leading byte-order mark is kept as part of the value', () => {
  const message = decodePgOutput(hex('4f', '0000000000000001', cstr('\uFEFFx')));
  assert.equal(message.tag === 'origin' && message.name, '\uFEFFx');
});

// ---------------------------------------------------------------------------------------------------
// Properties.

/** Records with Object.prototype, as the decoder builds them: deepEqual compares prototypes. */
function record<T>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> {
  return fc.record(model, { noNullPrototype: true });
}

const uint32 = fc.integer({ min: 0, max: 0xffff_ffff });
const uint64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
// Every instant an int64 on PostgreSQL's epoch can express, moved to the Unix epoch.
const unixMicros = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map((pg) => pg + POSTGRES_EPOCH_OFFSET_MICROS);
const cString = fc.string({ unit: 'binary', maxLength: 8 }).map((s) => s.replaceAll('\0', ''));
const text = fc.string({ unit: 'binary', maxLength: 8 });

type Cell = { readonly kind: 'n' } | { readonly kind: 'u' } | { readonly kind: 't'; readonly value: string };
const cell: fc.Arbitrary<Cell> = fc.oneof(
  fc.constant({ kind: 'n' as const }),
  fc.constant({ kind: 'u' as const }),
  text.map((value) => ({ kind: 't' as const, value })),
);
const tuple: fc.Arbitrary<TupleData> = fc.array(cell, { maxLength: 5 }).map((cells) =>
  EncodedRow.of({
    values: cells.map((c) => (c.kind === 't' ? c.value : null)),
    unchanged: cells.flatMap((c, index) => (c.kind === 'u' ? [index] : [])),
  }),
);

const oldKind = fc.constantFrom<'K' | 'O'>('K', 'O');

const message: fc.Arbitrary<PgOutputMessage> = fc.oneof(
  record({ tag: fc.constant('begin' as const), finalLsn: uint64, commitTimeMicros: unixMicros, xid: uint32 }),
  record({
    tag: fc.constant('commit' as const),
    flags: fc.integer({ min: 0, max: 255 }),
    commitLsn: uint64,
    endLsn: uint64,
    commitTimeMicros: unixMicros,
  }),
  record({ tag: fc.constant('origin' as const), originLsn: uint64, name: cString }),
  record({
    tag: fc.constant('relation' as const),
    relationOid: uint32,
    schema: cString,
    table: cString,
    replicaIdentity: fc.constantFrom('d' as const, 'f' as const, 'i' as const, 'n' as const),
    columns: fc.array(
      record({
        flags: fc.integer({ min: 0, max: 255 }),
        name: cString,
        typeOid: uint32,
        typeModifier: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
      }),
      { maxLength: 4 },
    ),
  }),
  record({ tag: fc.constant('type' as const), typeOid: uint32, schema: cString, name: cString }),
  record({ tag: fc.constant('insert' as const), relationOid: uint32, newTuple: tuple }),
  fc.oneof(
    record({
      tag: fc.constant('update' as const),
      relationOid: uint32,
      oldKind: fc.constant(null),
      oldTuple: fc.constant(null),
      newTuple: tuple,
    }),
    record({ tag: fc.constant('update' as const), relationOid: uint32, oldKind, oldTuple: tuple, newTuple: tuple }),
  ),
  record({ tag: fc.constant('delete' as const), relationOid: uint32, oldKind, oldTuple: tuple }),
  record({
    tag: fc.constant('truncate' as const),
    relationOids: fc.array(uint32, { maxLength: 4 }),
    cascade: fc.boolean(),
    restartIdentity: fc.boolean(),
  }),
  record({
    tag: fc.constant('message' as const),
    transactional: fc.boolean(),
    lsn: uint64,
    prefix: cString,
    content: fc.uint8Array({ maxLength: 16 }).map((bytes) => Buffer.from(bytes)),
  }),
);

test('property: decode(encode(m)) deep-equals m', () => {
  fc.assert(
    fc.property(message, (m) => {
      assert.deepEqual(plainRows(decodePgOutput(encodePgOutput(m))), plainRows(m));
    }),
    { numRuns: 500 },
  );
});

const TAGS = [...'BCORYIUDTMSEcAb'].map((c) => c.charCodeAt(0));

// Pure noise rarely gets past the tag byte, so also start from real tags and from corrupted real messages.
const hostileBytes = fc.oneof(
  fc.uint8Array({ maxLength: 64 }).map((bytes) => Buffer.from(bytes)),
  fc
    .tuple(fc.constantFrom(...TAGS), fc.uint8Array({ maxLength: 64 }))
    .map(([tag, rest]) => Buffer.concat([Buffer.from([tag]), rest])),
  fc.tuple(message, fc.nat(), fc.integer({ min: 0, max: 255 })).map(([m, at, value]) => {
    const bytes = encodePgOutput(m);
    bytes[at % bytes.length] = value;
    return bytes;
  }),
);

test('property: arbitrary bytes decode or throw DecodeError, never anything else', () => {
  fc.assert(
    fc.property(hostileBytes, (bytes) => {
      try {
        decodePgOutput(bytes);
      } catch (error) {
        assert.ok(error instanceof DecodeError, `unexpected ${String(error)}`);
      }
    }),
    { numRuns: 500 },
  );
});

test('property: every strict truncation of a valid message throws DecodeError', () => {
  fc.assert(
    fc.property(message, (m) => {
      const bytes = encodePgOutput(m);
      for (let length = 0; length < bytes.length; length++) {
        assert.throws(() => decodePgOutput(bytes.subarray(0, length)), DecodeError);
      }
    }),
    { numRuns: 200 },
  );
});

test('property: trailing bytes after a valid message throw DecodeError', () => {
  fc.assert(
    fc.property(message, fc.uint8Array({ minLength: 1, maxLength: 8 }), (m, extra) => {
      assert.throws(() => decodePgOutput(Buffer.concat([encodePgOutput(m), extra])), DecodeError);
    }),
    { numRuns: 200 },
  );
});

// ---------------------------------------------------------------------------------------------------
// Replication frames.

test('keepalive frame decodes exactly', () => {
  const frame = decodeReplicationFrame(hex('6b', '0000000200000010', COMMIT_TIME_PG_HEX, '01'));
  assert.deepEqual(frame, {
    kind: 'keepalive',
    walEnd: 0x2_0000_0010n,
    sendTimeMicros: COMMIT_TIME_UNIX,
    replyRequested: true,
  });
});

test('xlog frame decodes exactly and its payload is the pgoutput message', () => {
  const begin = hex('42', '00000001a2b3c4d5', COMMIT_TIME_PG_HEX, 'fffffffe');
  const frame = decodeReplicationFrame(Buffer.concat([hex('77', '00000001a2b3c400', '00000001a2b3c4d5', COMMIT_TIME_PG_HEX), begin]));
  assert.deepEqual(frame, {
    kind: 'xlog',
    walStart: 0x1_a2b3_c400n,
    walEnd: 0x1_a2b3_c4d5n,
    sendTimeMicros: COMMIT_TIME_UNIX,
    payload: begin,
  });
  assert.equal(frame.kind === 'xlog' && decodePgOutput(frame.payload).tag, 'begin');
});

test('isXLogData tells an XLogData frame by its tag, its message starting after the 25-byte header', () => {
  const begin = hex('42', '00000001a2b3c4d5', COMMIT_TIME_PG_HEX, 'fffffffe');
  const xlog = Buffer.concat([hex('77', '00000001a2b3c400', '00000001a2b3c4d5', COMMIT_TIME_PG_HEX), begin]);
  assert.equal(isXLogData(xlog), true);
  assert.deepEqual(xlog.subarray(XLOG_DATA_HEADER_LENGTH), begin);
  assert.equal(isXLogData(hex('6b', '0000000200000010', COMMIT_TIME_PG_HEX, '01')), false);
  assert.equal(isXLogData(hex('')), false);
  assert.throws(() => isXLogData(hex('77', '0000000000000001')), DecodeError);
});

test('malformed frames are DecodeError', () => {
  const cases: Record<string, Buffer> = {
    empty: hex(''),
    'unknown tag': hex('64', '00'),
    'short xlog header': hex('77', '0000000000000001'),
    'keepalive with trailing byte': hex('6b', '0000000000000001', '0000000000000000', '00', '00'),
    'keepalive reply flag not 0 or 1': hex('6b', '0000000000000001', '0000000000000000', '02'),
  };
  for (const [name, bytes] of Object.entries(cases)) {
    assert.throws(() => decodeReplicationFrame(bytes), DecodeError, name);
  }
});

test('standby status update: 34 bytes, write = flush = apply = the LSN given, clock on the 2000 epoch', () => {
  const frame = encodeStandbyStatus(0x1_a2b3_c4d5n, COMMIT_TIME_UNIX, true);
  assert.equal(frame.length, 34);
  assert.deepEqual(
    frame,
    hex('72', '00000001a2b3c4d5', '00000001a2b3c4d5', '00000001a2b3c4d5', COMMIT_TIME_PG_HEX, '01'),
  );
  assert.equal(encodeStandbyStatus(1n, COMMIT_TIME_UNIX).readUInt8(33), 0);
});

test('property: standby status update carries exactly the LSN given', () => {
  fc.assert(
    fc.property(uint64, unixMicros, fc.boolean(), (lsn, now, reply) => {
      const frame = encodeStandbyStatus(lsn, now, reply);
      assert.equal(frame.length, 34);
      assert.equal(frame.readBigUInt64BE(1), lsn);
      assert.equal(frame.readBigUInt64BE(9), lsn);
      assert.equal(frame.readBigUInt64BE(17), lsn);
      assert.equal(frame.readBigInt64BE(25) + POSTGRES_EPOCH_OFFSET_MICROS, now);
    }),
    { numRuns: 200 },
  );
});

test('property: isRowChangeTag is true exactly for INSERT, UPDATE and DELETE (what a relayed transaction skips)', () => {
  fc.assert(
    fc.property(message, (m) => {
      assert.equal(isRowChangeTag(encodePgOutput(m)[0]), m.tag === 'insert' || m.tag === 'update' || m.tag === 'delete');
    }),
  );
});
