/**
 * Who last wrote each row at a MariaDB site (connectors/mariadb/row-writers.ts, and row_writers' and the
 * conflicts table's statements in bookkeeping.ts): one key identity for capture and sink, the local writes
 * of a transaction, the clock the sink waits on, and the recorder that moves it only past what is recorded.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { appliedWriteValues, Bookkeeping, conflictValues, localWriteValues, microsToDatetime } from '../../connectors/mariadb/bookkeeping.ts';
import { targetRowKey } from '../../connectors/mariadb/mariadb-statements.ts';
import type { TargetColumn, TargetTable } from '../../connectors/mariadb/mariadb-bind.ts';
import { capturedKey, capturedWrites, keyId, keyText, LocalWriteRecorder, localWrites, RECORD_BATCH, rowKey, RowWriterClock, seenJson, type LocalWrite } from '../../connectors/mariadb/row-writers.ts';
import type { BinlogCoordinates } from '../../connectors/mariadb/mariadb-positions.ts';
import { SitesyncError } from '../../src/errors.ts';
import type { Change, ColumnInfo, RelationInfo, Transaction } from '../../src/events/transaction.ts';
import { parseKind } from '../../src/events/value-kind.ts';

function col(name: string, kind = 'string', key = false): ColumnInfo {
  return { name, key, kind: parseKind(kind), native: { name: kind, id: 0, modifier: -1 } };
}

function targetCol(name: string): TargetColumn {
  return { name, dataType: 'varchar', columnType: 'varchar(100)', unsigned: false, maxChars: 100, maxBytes: 400, precision: null, scale: null, fractionalDigits: null, charset: 'utf8mb4', generated: false };
}

const at = (offset: number, file = 'mysql-bin.000001'): BinlogCoordinates => ({ file, offset });
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('key identity', () => {
  test('canonical JSON, columns by name, a SHA-256 of it', () => {
    const key = rowKey('shop.orders', [
      { name: 'b', kind: parseKind('string'), text: 'x"y' },
      { name: 'a', kind: parseKind('int32'), text: '7' },
      { name: 'c', kind: parseKind('string'), text: null },
    ]);
    assert.equal(key.table, 'shop.orders');
    assert.equal(key.json, '{"a":"7","b":"x\\"y","c":null}');
    assert.equal(key.hash.length, 32);
    assert.equal(keyId(key), `shop.orders\u0000${key.hash.toString('hex')}`);
    assert.ok(!key.hash.equals(rowKey('shop.orders', [{ name: 'a', kind: parseKind('int32'), text: '8' }]).hash));
  });
  test('a decimal is one key whatever its display scale', () => {
    const d = parseKind('decimal(12,2)');
    assert.equal(keyText(d, '1.50'), '1.5');
    assert.equal(keyText(d, '2.00'), '2');
    assert.equal(keyText(d, '-0.00'), '0');
    assert.equal(keyText(d, '100'), '100', 'integer digits untouched');
    assert.equal(keyText(parseKind('string'), '1.50'), '1.50', 'only decimals');
    assert.ok(rowKey('t', [{ name: 'p', kind: d, text: '1.50' }]).hash.equals(rowKey('t', [{ name: 'p', kind: parseKind('decimal'), text: '1.5' }]).hash));
  });
  test("capture and sink name a row alike: the sink by the target's primary key, capture by its table's", () => {
    // As a PostgreSQL source describes it (replica identity full: no key flags), and as this site's capture does.
    const fromPostgres: RelationInfo = { schema: 'shop', table: 'users', replicaIdentity: 'f', columns: [col('name'), col('id', 'int64'), col('tenant', 'int32')] };
    const captured: RelationInfo = { schema: 'shop', table: 'users', replicaIdentity: 'd', columns: [col('tenant', 'int32', true), col('id', 'int64', true), col('name')] };
    const target: TargetTable = { schema: 'shop', table: 'users', columns: new Map(['id', 'tenant', 'name'].map((n) => [n, targetCol(n)])), primaryKey: ['tenant', 'id'] };
    const sink = targetRowKey(fromPostgres, { values: ['ann', '42', '3'], unchanged: [] }, target)!;
    const capture = capturedKey(captured, { values: ['3', '42', 'someone else'], unchanged: [] })!;
    assert.equal(sink.json, '{"id":"42","tenant":"3"}');
    assert.ok(sink.hash.equals(capture.hash));
    assert.equal(capturedKey(captured, { values: ['3', null, 'x'], unchanged: [1] }), null, 'a key column not carried: no key');
  });
});

describe('the local writes of a transaction', () => {
  const users: RelationInfo = { schema: 'shop', table: 'users', replicaIdentity: 'd', columns: [col('id', 'int32', true), col('name')] };
  const loose: RelationInfo = { schema: 'shop', table: 'loose', replicaIdentity: 'f', columns: [col('a', 'string', true), col('b', 'int32', true)] };
  const row = (values: (string | null)[]) => ({ values, unchanged: [] });
  test('insert: the new key; update: the new key, and the old one when it moved; delete: the old key; truncate, message: none', () => {
    const json = (c: Change) => capturedWrites(c).map((k) => k.json);
    assert.deepEqual(json({ op: 'insert', relation: users, newRow: row(['1', 'a']) }), ['{"id":"1"}']);
    assert.deepEqual(json({ op: 'update', relation: users, oldRow: null, newRow: row(['1', 'b']) }), ['{"id":"1"}']);
    assert.deepEqual(json({ op: 'update', relation: users, oldRow: row(['1', null]), newRow: row(['2', 'b']) }), ['{"id":"2"}', '{"id":"1"}']);
    assert.deepEqual(json({ op: 'delete', relation: users, oldRow: row(['1', null]) }), ['{"id":"1"}']);
    assert.deepEqual(json({ op: 'update', relation: loose, oldRow: row(['x', '1']), newRow: row(['x', '2']) }), ['{"a":"x","b":"2"}', '{"a":"x","b":"1"}'], 'no primary key: the whole row, before and after');
    assert.deepEqual(json({ op: 'update', relation: loose, oldRow: row(['x', '1']), newRow: row(['x', '1']) }), ['{"a":"x","b":"1"}']);
    assert.deepEqual(json({ op: 'truncate', relations: [users], cascade: false, restartIdentity: true }), []);
    assert.deepEqual(json({ op: 'message', prefix: 'p', content: Buffer.alloc(0) }), []);
  });
  test('each with the commit time published, the position, and the causal context as exact text', () => {
    const tx: Transaction = {
      id: 'paris:1',
      site: 'paris',
      position: '000000010000000000000100',
      commitTimeMicros: 1_700_000_000_000_000n,
      sourceTxId: '0-1-5',
      seen: { london: 1_700_000_000_123_456n },
      changes: [
        { op: 'insert', relation: users, newRow: row(['1', 'a']) },
        { op: 'delete', relation: users, oldRow: row(['2', null]) },
      ],
    };
    const writes = localWrites(tx);
    assert.deepEqual(
      writes.map((w) => [w.key.json, w.commitTimeMicros, w.position, w.seen]),
      [
        ['{"id":"1"}', 1_700_000_000_000_000n, '000000010000000000000100', '{"london":"1700000000123456"}'],
        ['{"id":"2"}', 1_700_000_000_000_000n, '000000010000000000000100', '{"london":"1700000000123456"}'],
      ],
    );
    assert.equal(seenJson({}), '{}');
    assert.deepEqual(localWriteValues(writes[0]!, 'paris'), ['shop.users', writes[0]!.key.hash, '{"id":"1"}', 'paris', '1700000000000000', '000000010000000000000100', '{"london":"1700000000123456"}']);
  });
});

describe('row_writers and conflicts statements', () => {
  const b = new Bookkeeping('bk');
  test('both tables are created with the others', () => {
    assert.deepEqual([...Bookkeeping.TABLES], ['apply_progress', 'parked', 'spilled_parts', 'row_writers', 'conflicts']);
    const ddl = b.createTables();
    assert.equal(ddl.length, Bookkeeping.TABLES.length);
    assert.match(ddl[3]!, /CREATE TABLE IF NOT EXISTS `bk`\.`row_writers` \([\s\S]*PRIMARY KEY \(table_name, key_hash\)/);
    assert.match(ddl[4]!, /`key` JSON NOT NULL/);
    for (const column of ['kind', 'table_name', 'remote_site', 'remote_transaction', 'remote_commit_time', 'local_site', 'local_commit_time', 'policy', 'winner', 'resolution']) assert.ok(ddl[4]!.includes(`${column} `), column);
  });
  test("the sink's record replaces what is there; capture's only a write it comes after", () => {
    assert.match(b.recordAppliedWrites(2), /VALUES \(\?, \?, \?, \?, \?, NULL, \?\), \(\?, \?, \?, \?, \?, NULL, \?\) ON DUPLICATE KEY UPDATE key_json = VALUES\(key_json\), site = VALUES\(site\)/);
    const local = b.recordLocalWrites(1);
    assert.ok(local.includes('local_position = IF(@sitesync_newer := IF(site = VALUES(site), local_position IS NULL OR local_position <= VALUES(local_position), commit_time_micros <= COALESCE('), local);
    assert.ok(local.endsWith('site = IF(@sitesync_newer, VALUES(site), site)'), 'site, which the decision reads, is assigned last');
    const key = rowKey('shop.t', [{ name: 'id', kind: parseKind('int32'), text: '1' }]);
    assert.deepEqual(appliedWriteValues(key, 'london', 5n, '{}'), ['shop.t', key.hash, '{"id":"1"}', 'london', '5', '{}']);
  });
  test('a conflict as PostgreSQL records it: UTC times, applied or skipped', () => {
    const key = rowKey('shop.t', [{ name: 'id', kind: parseKind('int32'), text: '1' }]);
    assert.equal(microsToDatetime(1_700_000_000_123_456n), '2023-11-14 22:13:20.123456');
    assert.deepEqual(
      conflictValues({
        kind: 'update_origin_differs',
        table: 'shop.t',
        key,
        remoteSite: 'london',
        remoteTransaction: 'london:0/1',
        remoteCommitTimeMicros: 1_700_000_000_123_456n,
        local: { site: 'paris', commitTimeMicros: 1_700_000_001_000_000n },
        policy: 'last-writer-wins',
        decision: { resolution: 'skip', winner: 'local' },
      }),
      ['update_origin_differs', 'shop.t', '{"id":"1"}', 'london', 'london:0/1', '2023-11-14 22:13:20.123456', 'paris', '2023-11-14 22:13:21.000000', 'last-writer-wins', 'local', 'skipped'],
    );
  });
});

describe('the clock the sink waits on', () => {
  test('no source attached: nothing to wait for, the binlog is not even read', async () => {
    const clock = new RowWriterClock('paris');
    assert.equal(clock.capturing, false);
    await clock.waitForLocalWrites(10);
  });
  test('waits until capture has recorded through the binlog end read after the call', async () => {
    const clock = new RowWriterClock('paris');
    let end = at(500);
    const capture = clock.attach(async () => end);
    assert.equal(clock.capturing, true);
    assert.equal(clock.recordedThrough, null, 'nothing known before the source opens');
    let done = false;
    const waiting = clock.waitForLocalWrites(5_000).then(() => (done = true));
    await tick();
    capture.advance(at(400));
    await tick();
    assert.equal(done, false);
    capture.advance(at(300)); // never backwards
    assert.deepEqual(clock.recordedThrough, at(400));
    capture.advance(at(500));
    await waiting;
    assert.equal(done, true);
    end = at(100, 'mysql-bin.000002');
    capture.advance(at(4, 'mysql-bin.000002'));
    let second = false;
    const next = clock.waitForLocalWrites(5_000).then(() => (second = true));
    await tick();
    assert.equal(second, false, 'a later file is later');
    capture.advance(at(100, 'mysql-bin.000002'));
    await next;
    await clock.waitForLocalWrites(10); // recorded already: at once
  });
  test('past its time, a transient error that names the site and says why', async () => {
    const clock = new RowWriterClock('paris');
    const capture = clock.attach(async () => at(900));
    capture.advance(at(100));
    await assert.rejects(clock.waitForLocalWrites(30), (error: unknown) => {
      assert.ok(error instanceof SitesyncError);
      assert.equal(error.consequence, 'retry');
      assert.match(error.message, /^capture of site paris is behind; conflict detection waits for it \(local writes recorded through mysql-bin\.000001:100, the binary log ends at mysql-bin\.000001:900/);
      return true;
    });
  });
  test('a source that stops ends the waits at once; a new source starts from nothing known', async () => {
    const clock = new RowWriterClock('paris');
    const first = clock.attach(async () => at(900));
    first.advance(at(100));
    const waiting = clock.waitForLocalWrites(5_000);
    await tick();
    first.detach();
    await assert.rejects(waiting, /capture of site paris is behind.*its capture stopped/);
    assert.equal(clock.capturing, false);
    const second = clock.attach(async () => at(50));
    first.advance(at(1000)); // the old source no longer moves it
    assert.equal(clock.recordedThrough, null);
    second.advance(at(60));
    await clock.waitForLocalWrites(10);
    first.detach(); // not the attached one: nothing happens
    assert.equal(clock.capturing, true);
  });
  test('a source that stops reading tells whoever waits at once, and stays attached', async () => {
    const clock = new RowWriterClock('paris');
    const capture = clock.attach(async () => at(900));
    capture.advance(at(100));
    const waiting = clock.waitForLocalWrites(5_000);
    await tick();
    capture.interrupt();
    await assert.rejects(waiting, /capture of site paris is behind.*its capture stopped reading/);
    assert.equal(clock.capturing, true);
    assert.deepEqual(clock.recordedThrough, at(100), 'what is recorded stays recorded');
    const next = clock.waitForLocalWrites(5_000);
    await tick();
    capture.advance(at(900));
    await next;
  });
  test('a failing read of the binlog end fails the wait', async () => {
    const clock = new RowWriterClock('paris');
    clock.attach(async () => {
      throw new Error('gone');
    });
    await assert.rejects(clock.waitForLocalWrites(10), /gone/);
  });
});

describe("capture's recorder", () => {
  const key = (n: number) => rowKey('shop.t', [{ name: 'id', kind: parseKind('int32'), text: String(n) }]);
  const write = (n: number): LocalWrite => ({ key: key(n), commitTimeMicros: 1n, position: '000000010000000000000001', seen: '{}' });

  test('a mark passes only once every write read before it is recorded, batch by batch in order', async () => {
    const batches: number[][] = [];
    const release: (() => void)[] = [];
    const throughs: number[] = [];
    const recorder = new LocalWriteRecorder(
      (batch) => {
        batches.push(batch.map((w) => Number(JSON.parse(w.key.json).id)));
        return new Promise<void>((resolve) => release.push(resolve));
      },
      at(10),
      { through: (c) => throughs.push(c.offset) },
    );
    assert.deepEqual(recorder.through, at(10));
    recorder.mark(at(20)); // nothing pending: at once
    assert.deepEqual(throughs, [20]);
    recorder.add([write(1), write(2)]);
    recorder.mark(at(30));
    recorder.add([write(3)]);
    recorder.mark(at(40));
    assert.equal(recorder.backlog, 3);
    assert.deepEqual(batches, [[1, 2]], 'one batch at a time');
    let reached = false;
    const waiting = recorder.whenThrough(at(30)).then(() => (reached = true));
    await tick();
    assert.equal(reached, false);
    release.shift()!();
    await waiting;
    assert.deepEqual(recorder.through, at(30));
    assert.deepEqual(batches, [[1, 2], [3]]);
    release.shift()!();
    await recorder.whenThrough(at(40));
    assert.deepEqual(throughs, [20, 30, 40]);
    assert.equal(recorder.backlog, 0);
    await recorder.whenThrough(at(5)); // behind: at once
  });
  test('batches of at most RECORD_BATCH writes', async () => {
    const sizes: number[] = [];
    const recorder = new LocalWriteRecorder(async (batch) => {
      sizes.push(batch.length);
    }, at(0));
    recorder.add(Array.from({ length: RECORD_BATCH * 2 + 3 }, (_, i) => write(i)));
    recorder.mark(at(99));
    await recorder.whenThrough(at(99));
    assert.deepEqual(sizes, [RECORD_BATCH, RECORD_BATCH, 3]);
  });
  test('a failed batch fails every waiter, and nothing moves any more', async () => {
    const recorder = new LocalWriteRecorder(async () => {
      throw new Error('deadlock, five times');
    }, at(0));
    recorder.add([write(1)]);
    recorder.mark(at(50));
    await assert.rejects(recorder.whenThrough(at(50)), /deadlock/);
    await assert.rejects(recorder.whenThrough(at(60)), /deadlock/);
    recorder.mark(at(70));
    assert.deepEqual(recorder.through, at(0));
  });
});
