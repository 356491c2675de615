/**
 * The sink conformance suite: the promises of src/apply/sink.ts, tried on one harness. Every connector and
 * the in-memory fake run it (sinks.test.ts), so the apply runner can rely on them alike.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { Sink, SourceSession } from '../../src/apply/sink.ts';
import { SitesyncError } from '../../src/errors.ts';
import type { Change, RelationInfo, SnapshotTag, Transaction } from '../../src/events/transaction.ts';
import type { SinkFixture, SinkHarness } from './harness.ts';
import { columnName, ITEMS, KIND_SAMPLES, kindsTable, NO_KEY, relationOf, rowOf, sortRows, type TableSpec } from './tables.ts';

/** The source site the suite's transactions come from. */
const SOURCE = 'remote';
/** Another source site, whose writes a read must overwrite all the same. */
const OTHER = 'other';

export function sinkConformance(harness: SinkHarness): void {
  describe(`sink conformance: ${harness.name}`, () => {
    let fixture: SinkFixture;
    let sink: Sink;
    let session: SourceSession;
    let n = 0;
    const kinds = kindsTable(harness.kinds);
    let items: RelationInfo;
    let noKey: RelationInfo;
    let kindsRelation: RelationInfo;

    const tx = (changes: Change[]): Transaction => {
      const position = harness.position(++n);
      return { id: `${SOURCE}:${position}`, site: SOURCE, position, commitTimeMicros: 1_700_000_000_000_000n + BigInt(n) * 1000n, sourceTxId: String(n), seen: {}, changes };
    };
    const ins = (relation: RelationInfo, spec: TableSpec, values: Record<string, string | null>): Change => ({ op: 'insert', relation, newRow: { values: rowOf(spec, values), unchanged: [] } });
    const item = (id: number, note: string | null = `n${id}`, amount: string | null = `${id}.50`): Change => ins(items, ITEMS, { id: String(id), note, amount });
    const rows = (spec: TableSpec) => fixture.rows(spec);
    /** A row read by a snapshot (or a repair): the row the source holds now. */
    const read = (relation: RelationInfo, spec: TableSpec, values: Record<string, string | null>): Change => ({ op: 'read', relation, newRow: { values: rowOf(spec, values), unchanged: [] } });
    /** A transaction of reads, tagged as one chunk of a snapshot of `spec`. */
    // Addressed to this site (as a repair or `sitesync snapshot --to` is): its reads replace whatever is there.
    // (Sent to every site, a sink that knows who last wrote a row may keep one this site wrote concurrently.)
    const snapshotTx = (spec: TableSpec, changes: Change[]): Transaction => {
      const snapshot: SnapshotTag = { id: 'conformance', table: `${fixture.schema}.${spec.table}`, chunk: 0, last: true, targets: [sink.site] };
      return { ...tx(changes), snapshot };
    };
    /** Row i (0 or 1) of the kinds samples, with id i + 1. */
    const kindValues = (i: 0 | 1): Record<string, string> => Object.fromEntries([['id', String(i + 1)], ...harness.kinds.map((k) => [columnName(k), KIND_SAMPLES[k]![i]])]);

    before(async () => {
      fixture = await harness.open([ITEMS, NO_KEY, kinds]);
      items = relationOf(fixture.schema, ITEMS);
      noKey = relationOf(fixture.schema, NO_KEY);
      kindsRelation = relationOf(fixture.schema, kinds);
      sink = fixture.sink();
      session = await sink.openSession(SOURCE);
    });
    after(async () => {
      await session?.close().catch(() => undefined);
      await sink?.close().catch(() => undefined);
      await fixture?.cleanup();
    });

    test('nothing applied: no progress; each transaction applied moves it, and a new sink reads the same', async () => {
      assert.equal(await session.progress(), null);
      const first = tx([item(1), item(2)]);
      const second = tx([item(3)]);
      await session.apply([first, second]);
      assert.equal(await session.progress(), second.position);
      // A restart: one session per source at a time (PostgreSQL holds the origin for one), so this one goes first.
      await session.close();
      await sink.close();
      sink = fixture.sink();
      session = await sink.openSession(SOURCE);
      assert.equal(await session.progress(), second.position);
      assert.deepEqual(await rows(ITEMS), [['1', 'n1', '1.50'], ['2', 'n2', '2.50'], ['3', 'n3', '3.50']]);
    });

    test('updates with and without a key change, deletes, and unchanged columns left as they are', async () => {
      await session.apply([
        tx([{ op: 'update', relation: items, oldRow: null, newRow: { values: ['1', 'one', '1.00'], unchanged: [] } }]),
        tx([{ op: 'update', relation: items, oldRow: { values: ['2', null, null], unchanged: [] }, newRow: { values: ['20', 'n2', '2.50'], unchanged: [] } }]),
        tx([{ op: 'delete', relation: items, oldRow: { values: ['3', null, null], unchanged: [] } }]),
        // The source did not send `amount` (an unchanged TOASTed value): it is not NULL, it stays.
        tx([{ op: 'update', relation: items, oldRow: null, newRow: { values: ['20', 'twenty', null], unchanged: [2] } }]),
      ]);
      assert.deepEqual(await rows(ITEMS), [['1', 'one', '1.00'], ['20', 'twenty', '2.50']]);
    });

    test('a table without a key: rows are found by every old value', async () => {
      const row = (v: string, note: string) => ({ values: [v, note], unchanged: [] });
      await session.apply([
        tx([ins(noKey, NO_KEY, { v: '7', note: 'x' }), ins(noKey, NO_KEY, { v: '8', note: 'x' })]),
        tx([{ op: 'update', relation: noKey, oldRow: row('7', 'x'), newRow: row('7', 'y') }]),
        tx([{ op: 'delete', relation: noKey, oldRow: row('8', 'x') }]),
      ]);
      assert.deepEqual(await rows(NO_KEY), [['7', 'y']]);
    });

    test('every kind is stored as its canonical text says', async () => {
      await session.apply([tx([ins(kindsRelation, kinds, kindValues(0)), ins(kindsRelation, kinds, kindValues(1))])]);
      assert.deepEqual(await rows(kinds), [rowOf(kinds, kindValues(0)), rowOf(kinds, kindValues(1))]);
    });

    test('data and progress are one commit: a refused change leaves neither a row nor the progress', async () => {
      const before = await session.progress();
      const refused = tx([item(100), item(101, 'x', '12345678901234.00')]); // more digits than decimal(12,2) holds
      await assert.rejects(session.apply([refused]), (error) => {
        assert.equal(sink.classify(error), 'data', String(error));
        return true;
      });
      assert.equal(await session.progress(), before);
      assert.ok(!(await rows(ITEMS)).some((r) => r[0] === '100'), 'the first insert of the refused transaction is not there');
    });

    test('a crash while a transaction is written leaves either all of it with its progress, or neither', async () => {
      const big = tx(Array.from({ length: 20_000 }, (_, i) => item(10_000 + i, 'x'.repeat(50))));
      const applying = session.apply([big]).then(() => 'applied', (error: unknown) => error);
      await new Promise((resolve) => setTimeout(resolve, 30));
      await fixture.interrupt();
      await applying;
      await session.close().catch(() => undefined);
      await sink.close().catch(() => undefined);
      sink = fixture.sink();
      session = await sink.openSession(SOURCE);
      const progress = await session.progress();
      const count = (await rows(ITEMS)).filter((r) => Number(r[0]) >= 10_000).length;
      if (progress === big.position) assert.equal(count, 20_000, 'progress says applied: every row is there');
      else assert.equal(count, 0, 'progress says not applied: no row of it is there');
      if (progress !== big.position) await session.apply([big]); // the runner would send it again
      assert.equal(await session.progress(), big.position);
    });

    test('parts: kept until the last, applied as one commit; part 0 again starts over; a missing part is a gap', async () => {
      const whole = tx([]);
      const part = (ids: number[]): Transaction => ({ ...whole, changes: ids.map((id) => item(id)) });
      await session.applyPart(part([201, 202]), { index: 0, last: false });
      await session.applyPart(part([203]), { index: 1, last: false });
      assert.ok(!(await rows(ITEMS)).some((r) => r[0] === '201'), 'nothing of a transaction before its last part');
      // The source sent it again from its start (a restart): the parts held are dropped.
      await session.applyPart(part([201, 202]), { index: 0, last: false });
      await assert.rejects(session.applyPart(part([209]), { index: 2, last: true }), (error) => error instanceof SitesyncError && error.code === 'SITESYNC_ERR_GAP');
      await session.applyPart(part([203]), { index: 1, last: false });
      await session.applyPart(part([204]), { index: 2, last: true });
      assert.deepEqual((await rows(ITEMS)).filter((r) => Number(r[0]) > 200 && Number(r[0]) < 300).map((r) => r[0]), ['201', '202', '203', '204']);
      assert.equal(await session.progress(), whole.position);
    });

    test('skip records the position with its parked record; a retry of it applies once', async () => {
      const setAside = tx([item(301)]);
      const id = randomUUID();
      await session.skip(setAside.position, setAside.commitTimeMicros, { id, kind: 'skipped', source: SOURCE, transactionId: setAside.id, bodySha256: '0'.repeat(64), userId: SOURCE, route: 'x/y', reason: 'test' });
      assert.equal(await session.progress(), setAside.position);
      assert.equal((await sink.findParked(id))?.done, false);
      assert.ok(!(await rows(ITEMS)).some((r) => r[0] === '301'));
      assert.equal(await session.applyRetried([setAside], id), true);
      assert.ok((await rows(ITEMS)).some((r) => r[0] === '301'));
      assert.equal((await sink.findParked(id))?.done, true);
      assert.equal(await session.applyRetried([setAside], id), false, 'a second retry applies nothing');
      assert.equal(await session.progress(), setAside.position);
    });

    test('reads insert absent rows and overwrite present ones whoever wrote them, with no conflict, and record progress', async () => {
      const written = tx([item(501, 'a', '1.00'), item(502, 'b', '2.00')]);
      await session.apply([written]);
      // Another site changes row 502 later than the snapshot's transaction commits (it had seen 502's insert).
      // A concurrent update from `remote` would lose that conflict (last writer wins); a read wins anyway.
      const other = await sink.openSession(OTHER);
      try {
        const position = harness.position(++n);
        const theirs: Transaction = {
          id: `${OTHER}:${position}`,
          site: OTHER,
          position,
          commitTimeMicros: 1_800_000_000_000_000n,
          sourceTxId: String(n),
          seen: { [SOURCE]: written.commitTimeMicros },
          changes: [{ op: 'update', relation: items, oldRow: null, newRow: { values: ['502', 'theirs', '2.22'], unchanged: [] } }],
        };
        await other.apply([theirs]);
      } finally {
        await other.close();
      }
      const reads = snapshotTx(ITEMS, [
        read(items, ITEMS, { id: '501', note: null, amount: '9.99' }), // a non-null column set to NULL
        read(items, ITEMS, { id: '502', note: 'mine', amount: '5.00' }), // over the other site's later write
        read(items, ITEMS, { id: '503', note: 'c', amount: '3.00' }), // no row has its key: inserted
      ]);
      await session.apply([reads]);
      assert.equal(await session.progress(), reads.position);
      const range = async () => (await rows(ITEMS)).filter((r) => Number(r[0]) > 500 && Number(r[0]) < 600);
      assert.deepEqual(await range(), [['501', null, '9.99'], ['502', 'mine', '5.00'], ['503', 'c', '3.00']]);
      // The rows read are the source's writes now: its next change of one follows them (no conflict with
      // the other site's write, which the read replaced).
      await session.apply([tx([{ op: 'update', relation: items, oldRow: null, newRow: { values: ['502', 'after', '5.00'], unchanged: [] } }])]);
      assert.deepEqual(await range(), [['501', null, '9.99'], ['502', 'after', '5.00'], ['503', 'c', '3.00']]);
    });

    test('reads of every kind are stored as their canonical text says', async () => {
      // Row 1 is there (the kinds test inserted it): overwritten with the other sample; row 3 is inserted.
      const overwrite = { ...kindValues(1), id: '1' };
      const fresh = { ...kindValues(0), id: '3' };
      const reads = snapshotTx(kinds, [read(kindsRelation, kinds, overwrite), read(kindsRelation, kinds, fresh)]);
      await session.apply([reads]);
      assert.equal(await session.progress(), reads.position);
      assert.deepEqual(await rows(kinds), sortRows([rowOf(kinds, overwrite), rowOf(kinds, kindValues(1)), rowOf(kinds, fresh)]));
    });

    test('a read into a target table without a primary key halts its source (schema), applying nothing', async () => {
      const before = await session.progress();
      const noKeyBefore = await rows(NO_KEY);
      await assert.rejects(session.apply([snapshotTx(ITEMS, [read(items, ITEMS, { id: '601', note: 'x', amount: '1.00' }), read(noKey, NO_KEY, { v: '9', note: 'z' })])]), (error) => {
        assert.equal(sink.classify(error), 'schema', String(error));
        return true;
      });
      assert.equal(await session.progress(), before);
      assert.ok(!(await rows(ITEMS)).some((r) => r[0] === '601'), 'the read before it in the transaction is not there');
      assert.deepEqual(await rows(NO_KEY), noKeyBefore);
    });

    test('a change to a table the target lacks halts its source (schema), applying nothing', async () => {
      const before = await session.progress();
      const missing: RelationInfo = { ...items, table: 'no_such_table' };
      await assert.rejects(session.apply([tx([item(400), { op: 'insert', relation: missing, newRow: { values: ['1', 'x', '1.00'], unchanged: [] } }])]), (error) => {
        assert.equal(sink.classify(error), 'schema', String(error));
        return true;
      });
      assert.equal(await session.progress(), before);
    });
  });
}
