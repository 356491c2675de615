import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { TransactionAssembler } from '../../connectors/postgres/transaction-assembler.ts';
import type { PgOutputMessage, RelationMessage, TupleData } from '../../connectors/postgres/pgoutput-messages.ts';
import type { SourceHandler } from '../../src/capture/source.ts';
import { DecodeError } from '../../src/errors.ts';
import { EncodedRow } from '../../src/events/encoded-row.ts';
import { lsnToPosition } from '../../connectors/postgres/postgres-positions.ts';
import { plainRows } from '../helpers/plain-rows.ts';
import { changeBytes, type Change, type RelationInfo, type Transaction, type TransactionPart } from '../../src/events/transaction.ts';
import { parseKind } from '../../src/events/value-kind.ts';
import { PostgresTypes, UnknownTypeError, type PgTypeRow } from '../../connectors/postgres/postgres-types.ts';

type Event =
  | { kind: 'transaction'; tx: Transaction; part: TransactionPart | null; checkpoint: string | null }
  | { kind: 'skipped'; position: string; checkpoint: string; reason: 'relayed' | 'empty' }
  | { kind: 'idle'; checkpoint: string };

class Recorder implements SourceHandler {
  readonly events: Event[] = [];
  transaction(tx: Transaction, part: TransactionPart | null, checkpoint: string | null): void {
    // copy the changes array: the assembler must not change what it already handed out
    this.events.push({ kind: 'transaction', tx: { ...tx, changes: [...tx.changes] }, part, checkpoint });
  }
  skipped(position: string, checkpoint: string, reason: 'relayed' | 'empty'): void {
    this.events.push({ kind: 'skipped', position, checkpoint, reason });
  }
  idle(checkpoint: string): void {
    this.events.push({ kind: 'idle', checkpoint });
  }
}

const SITE = 'paris';
const COMMIT_TIME = 1_704_164_645_123_456n;

/** A catalog as PostgresSource reads it: two built-in types and a user base type without a neutral kind. */
function catalog(): PostgresTypes {
  const types = new PostgresTypes();
  types.load([builtin(23, 'int4'), builtin(25, 'text'), { ...builtin(99_999, 'public.odd'), builtin: false }]);
  return types;
}

function builtin(oid: number, name: string): PgTypeRow {
  return { oid, name, typtype: 'b', category: 'N', element: 0, base: 0, baseModifier: -1, builtin: true, delimiter: ',', trueArray: false };
}

function setup(maxPartBytes = 1 << 20, types = catalog()) {
  const recorder = new Recorder();
  const assembler = new TransactionAssembler({ site: SITE, maxPartBytes, types, seen: {} }, recorder);
  const feed = (...messages: PgOutputMessage[]): void => {
    for (const m of messages) assembler.accept(m);
  };
  return { recorder, assembler, feed, types };
}

const begin = (finalLsn: bigint, xid = 777): PgOutputMessage => ({ tag: 'begin', finalLsn, commitTimeMicros: COMMIT_TIME, xid });
const commit = (commitLsn: bigint, endLsn: bigint): PgOutputMessage => ({ tag: 'commit', flags: 0, commitLsn, endLsn, commitTimeMicros: COMMIT_TIME });
const tuple = (...values: (string | null)[]): TupleData => EncodedRow.of({ values, unchanged: [] });
const insert = (relationOid: number, ...values: (string | null)[]): PgOutputMessage => ({ tag: 'insert', relationOid, newTuple: tuple(...values) });

const usersRelation: RelationMessage = {
  tag: 'relation',
  relationOid: 16_384,
  schema: 'public',
  table: 'users',
  replicaIdentity: 'd',
  columns: [
    { flags: 1, name: 'id', typeOid: 23, typeModifier: -1 },
    { flags: 0, name: 'name', typeOid: 25, typeModifier: -1 },
    { flags: 3, name: 'odd', typeOid: 99_999, typeModifier: 12 }, // other flag bits set too: still a key
  ],
};

const bookkeepingRelation: RelationMessage = {
  tag: 'relation',
  relationOid: 20_000,
  schema: 'sitesync',
  table: 'progress',
  replicaIdentity: 'd',
  columns: [{ flags: 1, name: 'source', typeOid: 25, typeModifier: -1 }],
};

function transactions(events: Event[]): Extract<Event, { kind: 'transaction' }>[] {
  return events.filter((e): e is Extract<Event, { kind: 'transaction' }> => e.kind === 'transaction');
}

describe('TransactionAssembler', () => {
  test('a plain transaction comes out whole with position, checkpoint, id and relation info', () => {
    const { recorder, assembler, feed } = setup();
    assert.equal(assembler.inTransaction, false);
    feed(begin(0x1_0000_0100n, 4_294_967_294), usersRelation);
    assert.equal(assembler.inTransaction, true);
    feed(
      insert(16_384, '1', 'Ann', null),
      { tag: 'update', relationOid: 16_384, oldKind: 'K', oldTuple: tuple('1', null, null), newTuple: EncodedRow.of({ values: ['2', null, 'x'], unchanged: [1] }) },
      { tag: 'delete', relationOid: 16_384, oldKind: 'K', oldTuple: tuple('2', null, null) },
      { tag: 'truncate', relationOids: [16_384], cascade: true, restartIdentity: false },
      { tag: 'message', transactional: true, lsn: 0x1_0000_0050n, prefix: 'app', content: Buffer.from('hi') },
    );
    assert.equal(recorder.events.length, 0, 'nothing comes out before COMMIT');
    feed(commit(0x1_0000_0100n, 0x1_0000_0130n));
    assert.equal(assembler.inTransaction, false);

    assert.equal(recorder.events.length, 1);
    const event = recorder.events[0]!;
    assert.equal(event.kind, 'transaction');
    if (event.kind !== 'transaction') return;
    const position = lsnToPosition(0x1_0000_0100n);
    assert.equal(position, '0000000100000100');
    assert.equal(event.tx.position, position);
    assert.equal(event.checkpoint, lsnToPosition(0x1_0000_0130n));
    assert.equal(event.part, null);
    assert.equal(event.tx.id, `${SITE}:${position}`);
    assert.equal(event.tx.site, SITE);
    assert.equal(event.tx.commitTimeMicros, COMMIT_TIME);
    assert.equal(event.tx.sourceTxId, '4294967294');

    const relation: RelationInfo = {
      schema: 'public',
      table: 'users',
      replicaIdentity: 'd',
      columns: [
        { name: 'id', kind: parseKind('int32'), native: { name: 'int4', id: 23, modifier: -1 }, key: true },
        { name: 'name', kind: parseKind('string'), native: { name: 'text', id: 25, modifier: -1 }, key: false },
        { name: 'odd', kind: parseKind('other'), native: { name: 'public.odd', id: 99_999, modifier: 12 }, key: true },
      ],
    };
    const expected: Change[] = [
      { op: 'insert', relation, newRow: { values: ['1', 'Ann', null], unchanged: [] } },
      { op: 'update', relation, oldRow: { values: ['1', null, null], unchanged: [] }, newRow: { values: ['2', null, 'x'], unchanged: [1] } },
      { op: 'delete', relation, oldRow: { values: ['2', null, null], unchanged: [] } },
      { op: 'truncate', relations: [relation], cascade: true, restartIdentity: false },
      { op: 'message', prefix: 'app', content: Buffer.from('hi') },
    ];
    assert.deepEqual(plainRows(event.tx.changes), expected);
  });

  test('an update without an old tuple has oldRow null', () => {
    const { recorder, feed } = setup();
    feed(begin(10n), usersRelation, { tag: 'update', relationOid: 16_384, oldKind: null, oldTuple: null, newTuple: tuple('1', 'a', 'b') }, commit(10n, 20n));
    const [event] = transactions(recorder.events);
    assert.ok(event);
    const change = event.tx.changes[0];
    assert.ok(change && change.op === 'update');
    assert.equal(change.oldRow, null);
  });

  test('a transaction with a sitesync_ origin is skipped as relayed, none of its changes come out', () => {
    const { recorder, feed } = setup(64);
    feed(
      begin(0x200n),
      { tag: 'origin', originLsn: 0x99n, name: 'sitesync_london_to_paris' },
      usersRelation,
      ...Array.from({ length: 50 }, (_, i) => insert(16_384, String(i), 'a long enough name to pass the part size', null)),
      { tag: 'truncate', relationOids: [16_384], cascade: false, restartIdentity: false },
      { tag: 'message', transactional: true, lsn: 0x150n, prefix: 'app', content: Buffer.from('x') },
      commit(0x200n, 0x230n),
    );
    assert.deepEqual(recorder.events, [{ kind: 'skipped', position: lsnToPosition(0x200n), checkpoint: lsnToPosition(0x230n), reason: 'relayed' }]);
  });

  test('an origin with another name is kept', () => {
    const { recorder, feed } = setup();
    feed(begin(0x300n), { tag: 'origin', originLsn: 1n, name: 'pg_16400' }, usersRelation, insert(16_384, '1', 'a', null), commit(0x300n, 0x330n));
    const txs = transactions(recorder.events);
    assert.equal(txs.length, 1);
    assert.equal(txs[0]!.tx.changes.length, 1);
    // "sitesync" without the underscore, and a name that only contains the prefix, are not sitesync origins
    for (const name of ['sitesync', 'my_sitesync_x', 'SITESYNC_x']) {
      const s = setup();
      s.feed(begin(0x300n), { tag: 'origin', originLsn: 1n, name }, usersRelation, insert(16_384, '1', 'a', null), commit(0x300n, 0x330n));
      assert.equal(transactions(s.recorder.events).length, 1, name);
    }
  });

  test('the relayed flag does not leak into the next transaction', () => {
    const { recorder, assembler, feed } = setup();
    feed(begin(0x10n), { tag: 'origin', originLsn: 1n, name: 'sitesync_a_to_b' });
    assert.equal(assembler.droppingChanges, true); // the source skips decoding its rows
    feed(usersRelation, insert(16_384, '1', 'a', null), commit(0x10n, 0x20n));
    assert.equal(assembler.droppingChanges, false);
    feed(begin(0x30n));
    assert.equal(assembler.droppingChanges, false);
    feed(insert(16_384, '2', 'b', null), commit(0x30n, 0x40n));
    assert.equal(recorder.events.length, 2);
    assert.equal(recorder.events[0]!.kind, 'skipped');
    const second = recorder.events[1]!;
    assert.ok(second.kind === 'transaction' && second.tx.changes.length === 1);
  });

  test('changes to schema sitesync are dropped; a transaction left empty is skipped as empty', () => {
    const { recorder, feed } = setup();
    feed(
      begin(0x400n),
      bookkeepingRelation,
      insert(20_000, 'london'),
      { tag: 'update', relationOid: 20_000, oldKind: null, oldTuple: null, newTuple: tuple('london') },
      { tag: 'delete', relationOid: 20_000, oldKind: 'K', oldTuple: tuple('london') },
      { tag: 'truncate', relationOids: [20_000], cascade: false, restartIdentity: false },
      { tag: 'message', transactional: true, lsn: 0x3f0n, prefix: 'sitesync-heartbeat', content: Buffer.from('') },
      commit(0x400n, 0x430n),
    );
    assert.deepEqual(recorder.events, [{ kind: 'skipped', position: lsnToPosition(0x400n), checkpoint: lsnToPosition(0x430n), reason: 'empty' }]);
  });

  test('a transaction with no change at all is skipped as empty', () => {
    const { recorder, feed } = setup();
    feed(begin(0x500n), commit(0x500n, 0x530n));
    assert.deepEqual(recorder.events, [{ kind: 'skipped', position: lsnToPosition(0x500n), checkpoint: lsnToPosition(0x530n), reason: 'empty' }]);
  });

  test('sitesync changes are dropped but the others of the same transaction are kept; a truncate keeps only user tables', () => {
    const { recorder, feed } = setup();
    feed(
      begin(0x600n),
      usersRelation,
      bookkeepingRelation,
      insert(20_000, 'x'),
      insert(16_384, '1', 'a', null),
      { tag: 'truncate', relationOids: [20_000, 16_384], cascade: false, restartIdentity: true },
      commit(0x600n, 0x630n),
    );
    const [event] = transactions(recorder.events);
    assert.ok(event);
    assert.deepEqual(
      event.tx.changes.map((c) => (c.op === 'truncate' ? `truncate:${c.relations.map((r) => `${r.schema}.${r.table}`).join(',')}` : c.op === 'message' ? 'message' : `${c.op}:${c.relation.schema}.${c.relation.table}`)),
      ['insert:public.users', 'truncate:public.users'],
    );
  });

  test('a large transaction comes out as parts 0, 1, … with the checkpoint only on the last', () => {
    const { recorder, feed } = setup(100);
    feed(begin(0x700n), usersRelation);
    // each insert: 16 + its row's 49 encoded bytes = 65, so every two inserts fill a part of 100 bytes
    const name = 'n'.repeat(40);
    for (let i = 0; i < 5; i++) feed(insert(16_384, String(i), name, null));
    feed(commit(0x700n, 0x730n));
    const txs = transactions(recorder.events);
    assert.deepEqual(
      txs.map((e) => [e.part, e.checkpoint, e.tx.changes.length]),
      [
        [{ index: 0, last: false }, null, 2],
        [{ index: 1, last: false }, null, 2],
        [{ index: 2, last: true }, lsnToPosition(0x730n), 1],
      ],
    );
    for (const e of txs) {
      assert.equal(e.tx.id, `${SITE}:${lsnToPosition(0x700n)}`);
      assert.equal(e.tx.position, lsnToPosition(0x700n));
    }
  });

  test('property: parts concatenate to all the changes in order, only the last is last and has the checkpoint', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 20, max: 400 }),
        fc.array(fc.option(fc.integer({ min: 0, max: 120 }), { nil: null, freq: 6 }), { minLength: 1, maxLength: 60 }),
        (maxPartBytes, sizes) => {
          const { recorder, feed } = setup(maxPartBytes);
          feed(begin(0x1_0000_0000n), usersRelation);
          const expectedValues: (string | null)[] = [];
          sizes.forEach((size, i) => {
            const value = size === null ? null : 'x'.repeat(size);
            expectedValues.push(value);
            feed(insert(16_384, String(i), value, null));
          });
          feed(commit(0x1_0000_0000n, 0x1_0000_0040n));

          const txs = transactions(recorder.events);
          assert.equal(recorder.events.length, txs.length);
          const all = txs.flatMap((e) => e.tx.changes);
          assert.deepEqual(
            all.map((c) => (c.op === 'insert' ? [c.newRow.values[0], c.newRow.values[1]] : c.op)),
            expectedValues.map((v, i) => [String(i), v]),
          );

          const bytesOf = (c: Change): number => {
            assert.ok(c.op === 'insert');
            return changeBytes(c);
          };
          const total = all.reduce((n, c) => n + bytesOf(c), 0);
          if (txs.length === 1) {
            assert.equal(txs[0]!.part, null);
            assert.ok(total < maxPartBytes, 'a transaction that fits comes out whole');
          }
          txs.forEach((e, i) => {
            const isLast = i === txs.length - 1;
            assert.equal(e.tx.id, `${SITE}:${lsnToPosition(0x1_0000_0000n)}`);
            if (txs.length > 1) assert.deepEqual(e.part, { index: i, last: isLast });
            assert.equal(e.checkpoint, isLast ? lsnToPosition(0x1_0000_0040n) : null);
            // memory is bounded: a part is let go as soon as it reaches the limit, not later
            const bytes = e.tx.changes.reduce((n, c) => n + bytesOf(c), 0);
            if (!isLast) {
              assert.ok(bytes >= maxPartBytes);
              assert.ok(bytes - bytesOf(e.tx.changes.at(-1)!) < maxPartBytes);
            } else {
              assert.ok(bytes < maxPartBytes);
            }
          });
        },
      ),
      { numRuns: 300 },
    );
  });

  test('a relation whose type the catalog lacks stops the stream once; read again, the type has its kind', () => {
    const types = catalog();
    const { recorder, feed } = setup(1 << 20, types);
    const moodRelation: RelationMessage = {
      tag: 'relation',
      relationOid: 30_000,
      schema: 'public',
      table: 'feelings',
      replicaIdentity: 'd',
      columns: [
        { flags: 1, name: 'id', typeOid: 23, typeModifier: -1 },
        { flags: 0, name: 'mood', typeOid: 50_001, typeModifier: -1 },
      ],
    };
    // Created after capture read the catalog: the relation cannot be described, so nothing is published.
    assert.throws(() => feed(begin(0x10n), { tag: 'type', typeOid: 50_001, schema: 'public', name: 'mood' }, moodRelation), UnknownTypeError);
    assert.equal(transactions(recorder.events).length, 0);

    // The next stream reads the catalog again (PostgresSource.prepare) and resends from the checkpoint.
    types.load([builtin(23, 'int4'), { oid: 50_001, name: 'public.mood', typtype: 'e', category: 'E', element: 0, base: 0, baseModifier: -1, builtin: false, delimiter: ',', trueArray: false }]);
    const again = setup(1 << 20, types);
    again.feed(begin(0x10n), moodRelation, insert(30_000, '1', 'ok'), commit(0x10n, 0x20n));
    const [tx] = transactions(again.recorder.events);
    const change = tx?.tx.changes[0];
    assert.ok(change && change.op === 'insert');
    assert.deepEqual(change.relation.columns.map((c) => [c.native.name, c.kind.kind]), [['int4', 'int32'], ['public.mood', 'enum']]);
  });

  test('a type still missing after the catalog was read again (dropped since) is described as other, by its announced name', () => {
    const types = catalog();
    const relation: RelationMessage = {
      tag: 'relation',
      relationOid: 30_001,
      schema: 'public',
      table: 'gone',
      replicaIdentity: 'd',
      columns: [{ flags: 1, name: 'id', typeOid: 23, typeModifier: -1 }, { flags: 0, name: 'v', typeOid: 50_003, typeModifier: -1 }],
    };
    assert.throws(() => setup(1 << 20, types).feed(begin(0x10n), relation), UnknownTypeError);
    types.load([builtin(23, 'int4')]);
    const { recorder, feed } = setup(1 << 20, types);
    feed(begin(0x10n), { tag: 'type', typeOid: 50_003, schema: 'public', name: 'ghost' }, relation, insert(30_001, '1', 'x'), commit(0x10n, 0x20n));
    const change = transactions(recorder.events)[0]?.tx.changes[0];
    assert.ok(change && change.op === 'insert');
    assert.deepEqual(change.relation.columns[1], { name: 'v', kind: parseKind('other'), native: { name: 'public.ghost', id: 50_003, modifier: -1 }, key: false });
  });

  test('a relation message replaces the earlier description of the same relation', () => {
    const { recorder, feed } = setup();
    feed(begin(0x10n), usersRelation, { ...usersRelation, table: 'people', columns: usersRelation.columns.slice(0, 2) }, insert(16_384, '1', 'a'), commit(0x10n, 0x20n));
    const [event] = transactions(recorder.events);
    const c = event?.tx.changes[0];
    assert.ok(c && c.op === 'insert');
    assert.equal(c.relation.table, 'people');
    assert.equal(c.relation.columns.length, 2);
  });

  test('a non-transactional sitesync message outside a transaction reports idle at its LSN', () => {
    const { recorder, feed } = setup();
    feed({ tag: 'message', transactional: false, lsn: 0xa_0000_0010n, prefix: 'sitesync', content: Buffer.from('') });
    feed({ tag: 'message', transactional: false, lsn: 0xa_0000_0020n, prefix: 'sitesync_heartbeat', content: Buffer.from('') });
    assert.deepEqual(recorder.events, [
      { kind: 'idle', checkpoint: lsnToPosition(0xa_0000_0010n) },
      { kind: 'idle', checkpoint: lsnToPosition(0xa_0000_0020n) },
    ]);
  });

  test('other non-transactional messages are not replicated and report nothing', () => {
    const { recorder, feed } = setup();
    feed({ tag: 'message', transactional: false, lsn: 0x10n, prefix: 'app', content: Buffer.from('x') });
    feed(begin(0x50n), usersRelation, insert(16_384, '1', 'a', null));
    feed({ tag: 'message', transactional: false, lsn: 0x40n, prefix: 'app', content: Buffer.from('x') });
    feed(commit(0x50n, 0x60n));
    assert.equal(recorder.events.length, 1);
    const [event] = transactions(recorder.events);
    assert.ok(event);
    assert.deepEqual(
      event.tx.changes.map((c) => c.op),
      ['insert'],
    );
  });

  test('a change before BEGIN throws DecodeError', () => {
    const { assembler } = setup();
    assembler.accept(usersRelation); // relation messages may come at any time
    for (const m of [
      insert(16_384, '1', 'a', null),
      { tag: 'update', relationOid: 16_384, oldKind: null, oldTuple: null, newTuple: tuple('1') },
      { tag: 'delete', relationOid: 16_384, oldKind: 'K', oldTuple: tuple('1') },
      { tag: 'truncate', relationOids: [16_384], cascade: false, restartIdentity: false },
      { tag: 'message', transactional: true, lsn: 1n, prefix: 'app', content: Buffer.from('') },
      { tag: 'origin', originLsn: 1n, name: 'x' },
      commit(1n, 2n),
    ] as PgOutputMessage[]) {
      assert.throws(() => assembler.accept(m), DecodeError, m.tag);
    }
  });

  test('a change for an unknown relation throws DecodeError', () => {
    const { assembler, feed } = setup();
    feed(begin(0x10n));
    assert.throws(() => assembler.accept(insert(42, '1')), (error: unknown) => error instanceof DecodeError && error.code === 'SITESYNC_ERR_DECODE' && error.message.includes('42'));
    assert.throws(() => assembler.accept({ tag: 'truncate', relationOids: [43], cascade: false, restartIdentity: false }), DecodeError);
  });

  test('BEGIN inside an open transaction throws DecodeError', () => {
    const { assembler, feed } = setup();
    feed(begin(0x10n));
    assert.throws(() => assembler.accept(begin(0x20n)), DecodeError);
  });
});

describe('causal context (seen)', () => {
  const at = (finalLsn: bigint, time: bigint, xid = 900): PgOutputMessage => ({ tag: 'begin', finalLsn, commitTimeMicros: time, xid });
  const relayed = (from: string, time: bigint, lsn: bigint): PgOutputMessage[] => [
    at(lsn, time),
    { tag: 'origin', originLsn: 1n, name: `sitesync_${from}_to_${SITE}` },
    usersRelation,
    insert(16_384, '1', 'x', null),
    commit(lsn, lsn + 8n),
  ];
  const local = (lsn: bigint): PgOutputMessage[] => [at(lsn, COMMIT_TIME), usersRelation, insert(16_384, '2', 'y', null), commit(lsn, lsn + 8n)];
  const txs = (r: Recorder) => r.events.flatMap((e) => (e.kind === 'transaction' ? [e.tx] : []));

  test('a local transaction carries the newest commit time of each site applied before it', () => {
    const { recorder, feed } = setup();
    feed(...local(0x100n));
    feed(...relayed('london', 5_000n, 0x200n), ...relayed('madrid', 7_000n, 0x300n), ...relayed('london', 6_000n, 0x400n));
    feed(...local(0x500n));
    const [first, second] = txs(recorder);
    assert.deepEqual(first!.seen, {});
    assert.deepEqual(second!.seen, { london: 6_000n, madrid: 7_000n });
  });

  test('an older relayed commit never moves the context back; origins of other targets are not counted', () => {
    const { recorder, feed } = setup();
    feed(...relayed('london', 9_000n, 0x200n), ...relayed('london', 3_000n, 0x300n));
    feed(at(0x400n, 1n), { tag: 'origin', originLsn: 1n, name: 'sitesync_rome_to_elsewhere' }, commit(0x400n, 0x408n));
    feed(...local(0x500n));
    assert.deepEqual(txs(recorder)[0]!.seen, { london: 9_000n });
    const skipped = recorder.events.filter((e) => e.kind === 'skipped');
    assert.equal(skipped.length, 3, 'all three relayed transactions are still dropped');
  });

  test('the context a transaction was handed is never changed afterwards', () => {
    const { recorder, feed } = setup();
    feed(...local(0x100n), ...relayed('london', 5_000n, 0x200n));
    assert.deepEqual(txs(recorder)[0]!.seen, {});
  });
});
