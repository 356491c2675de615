/**
 * The SQL Server sink (connectors/sqlserver/sqlserver-sink.ts) on the simulated server
 * (test/helpers/sqlserver-simulator.ts through sqlserver-simulated-apply.ts): progress atomic with the data
 * and written first (so that this site's capture drops the relayed write), forward only; large transactions'
 * parts kept in their own commits and applied in one; skip and retried parked transactions; presence
 * conflicts; identity inserts; tables without a key; TRUNCATE as DELETE. Tables and transactions are invented.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ResolvedConflict } from '../../src/connector.ts';
import { SitesyncError } from '../../src/errors.ts';
import type { Change, ColumnInfo, RelationInfo, RowImage, Transaction } from '../../src/events/transaction.ts';
import { parseKind } from '../../src/events/value-kind.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { SqlServerDataError } from '../../connectors/sqlserver/sqlserver-errors.ts';
import { SqlServerSink } from '../../connectors/sqlserver/sqlserver-sink.ts';
import { ZERO_LSN } from '../../connectors/sqlserver/sqlserver-positions.ts';
import { SimulatedSqlServer, simRequestError } from '../helpers/sqlserver-simulator.ts';
import { simulatedConnect, type SimulatedApplyOptions } from '../helpers/sqlserver-simulated-apply.ts';

const logger = createLogger('silent');

function col(name: string, kind: string, key = false): ColumnInfo {
  return { name, key, kind: parseKind(kind), native: { name: kind, id: 0, modifier: -1 } };
}

const orders: RelationInfo = { schema: 'shop', table: 'orders', replicaIdentity: 'd', columns: [col('id', 'int32', true), col('note', 'string'), col('amount', 'decimal')] };
const loose: RelationInfo = { schema: 'shop', table: 'loose', replicaIdentity: 'f', columns: [col('name', 'string'), col('n', 'int32')] };
const events: RelationInfo = { schema: 'shop', table: 'events', replicaIdentity: 'd', columns: [col('id', 'int64', true), col('what', 'string')] };

function row(...values: (string | null)[]): RowImage {
  return { values, unchanged: [] };
}

const insert = (relation: RelationInfo, ...values: (string | null)[]): Change => ({ op: 'insert', relation, newRow: row(...values) });
const update = (relation: RelationInfo, newRow: RowImage, oldRow: RowImage | null = null): Change => ({ op: 'update', relation, oldRow, newRow });
const remove = (relation: RelationInfo, ...values: (string | null)[]): Change => ({ op: 'delete', relation, oldRow: row(...values) });

/** Positions of the invented source `paris` (PostgreSQL-like: 16 hex digits). */
function pos(n: number): string {
  return n.toString(16).toUpperCase().padStart(16, '0');
}

function tx(n: number, changes: Change[], site = 'paris'): Transaction {
  return { id: `${site}:${pos(n)}`, site, position: pos(n), commitTimeMicros: 1_700_000_000_000_000n + BigInt(n), sourceTxId: String(n), seen: {}, changes };
}

function setup(options: { conflicts?: boolean; sim?: SimulatedApplyOptions } = {}) {
  const server = new SimulatedSqlServer();
  server.createTable('shop', 'orders', [
    { name: 'id', type: 'int', keyOrdinal: 1 },
    { name: 'note', type: 'nvarchar', maxLength: 20 },
    { name: 'amount', type: 'decimal', precision: 10, scale: 2 },
  ]);
  server.createTable('shop', 'loose', [
    { name: 'name', type: 'nvarchar', maxLength: 20 },
    { name: 'n', type: 'int' },
  ]);
  server.createTable('shop', 'events', [
    { name: 'id', type: 'bigint', keyOrdinal: 1, identity: true },
    { name: 'what', type: 'nvarchar', maxLength: 40 },
  ]);
  for (const t of ['orders', 'loose', 'events']) server.enableCdc('shop', t);
  const { connect, connections } = simulatedConnect(server, options.sim);
  const heard: ResolvedConflict[] = [];
  const sink = new SqlServerSink({
    site: 'madrid',
    connect,
    logger,
    sourceKindOf: () => 'postgres',
    onConflict: (c) => heard.push(c),
    ...(options.conflicts ? { conflictPolicy: () => ({ policy: 'last-writer-wins' as const, priority: [] }) } : {}),
  });
  const progressRow = (): (string | number | boolean | Buffer | null)[] | undefined => server.rows('sitesync', 'apply_progress').find((r) => r[0] === 'paris');
  return { server, sink, connections, heard, progressRow };
}

describe('sqlserver sink on the simulated server (invented tables)', () => {
  test('applies a transaction: progress first, data in the same commit', async () => {
    const { server, sink, progressRow } = setup();
    const session = await sink.openSession('paris');
    assert.equal(await session.progress(), null);
    await session.apply([tx(1, [insert(orders, '1', 'one', '12.5'), insert(orders, '2', 'two', null)])]);
    assert.deepEqual(server.rows('shop', 'orders'), [
      [1, 'one', '12.50'],
      [2, 'two', null],
    ]);
    assert.deepEqual(progressRow(), ['paris', 'postgres', pos(1), '1700000000000001', '1']);
    assert.equal(await session.progress(), pos(1));
    await sink.close();
  });

  test('a change refused mid-transaction leaves neither its data nor its progress', async () => {
    const { server, sink, progressRow } = setup();
    const session = await sink.openSession('paris');
    await session.apply([tx(1, [insert(orders, '1', 'one', '1')])]);
    // The second change's value does not fit nvarchar(20): refused before it is sent.
    await assert.rejects(session.apply([tx(2, [insert(orders, '2', 'two', '2'), insert(orders, '3', 'x'.repeat(21), '3')])]), (e: unknown) => e instanceof SqlServerDataError && sink.classify(e) === 'data');
    assert.deepEqual(server.rows('shop', 'orders'), [[1, 'one', '1.00']]);
    assert.equal(progressRow()![2], pos(1));
    // The server refusing a statement (a CHECK constraint, modelled) has the same effect.
    const failing = setup({ sim: { failWhen: (text) => (text.includes('VALUES (CONVERT(int, @p0), @p1, CONVERT(decimal(10,2), @p2))') && failing.server.rows('shop', 'orders').length > 0 ? simRequestError(547, 'The INSERT statement conflicted with the CHECK constraint "ck".') : undefined) } });
    const other = await failing.sink.openSession('paris');
    await other.apply([tx(1, [insert(orders, '1', 'one', '1')])]);
    await assert.rejects(other.apply([tx(2, [update(orders, row('1', 'uno', '1')), insert(orders, '2', 'two', '2')])]), (e: unknown) => failing.sink.classify(e) === 'data' && /SQL Server error 547/.test(String(e)));
    assert.deepEqual(failing.server.rows('shop', 'orders'), [[1, 'one', '1.00']]);
    assert.equal(failing.progressRow()![2], pos(1));
    await sink.close();
    await failing.sink.close();
  });

  test('progress only moves forward: a transaction at or below it is never applied again', async () => {
    const { server, sink, progressRow } = setup();
    const first = await sink.openSession('paris');
    await first.apply([tx(5, [insert(orders, '5', 'five', '5')])]);
    await first.close();
    // A new session does not know the progress: the MERGE finds the row past the position and writes nothing.
    const second = await sink.openSession('paris');
    await second.apply([tx(3, [insert(orders, '3', 'three', '3')]), tx(5, [insert(orders, '6', 'dup', '6')])]);
    assert.deepEqual(server.rows('shop', 'orders'), [[5, 'five', '5.00']]);
    assert.equal(progressRow()![2], pos(5));
    assert.equal(progressRow()![4], '1');
    await second.apply([tx(6, [insert(orders, '6', 'six', '6')])]);
    assert.equal(progressRow()![2], pos(6));
    await sink.close();
  });

  test('parts are kept in their own commits and applied with the last in one commit', async () => {
    const { server, sink, progressRow } = setup();
    const session = await sink.openSession('paris');
    const t = (changes: Change[]): Transaction => tx(9, changes);
    await session.applyPart(t([insert(orders, '1', 'a', '1')]), { index: 0, last: false });
    await session.applyPart(t([insert(orders, '2', 'b', '2')]), { index: 1, last: false });
    assert.equal(server.rows('sitesync', 'spilled_parts').length, 2);
    assert.deepEqual(server.rows('shop', 'orders'), []);
    assert.equal(progressRow(), undefined);
    await session.applyPart(t([insert(orders, '3', 'c', '3')]), { index: 2, last: true });
    assert.deepEqual(
      server.rows('shop', 'orders').map((r) => r[0]),
      [1, 2, 3],
    );
    assert.equal(progressRow()![2], pos(9));
    assert.equal(server.rows('sitesync', 'spilled_parts').length, 0);
    // One commit: every change of the transaction carries one commit LSN, the progress row's too.
    server.runCaptureJob();
    const reader = server.reader();
    const instances = await reader.captureInstances();
    const changes = async (name: string) => reader.changes(instances.find((i) => i.name === name)!, ZERO_LSN, 'F'.repeat(20), null, 100);
    const data = await changes('shop_orders');
    const progress = await changes('sitesync_apply_progress');
    assert.equal(new Set([...data, ...progress].map((r) => r.startLsn)).size, 1);
    await sink.close();
  });

  test('part 0 again starts over; a part without its predecessor is a gap', async () => {
    const { server, sink } = setup();
    const session = await sink.openSession('paris');
    await session.applyPart(tx(9, [insert(orders, '1', 'old', '1')]), { index: 0, last: false });
    await session.applyPart(tx(9, [insert(orders, '2', 'old', '2')]), { index: 1, last: false });
    await session.applyPart(tx(9, [insert(orders, '4', 'new', '4')]), { index: 0, last: false });
    assert.equal(server.rows('sitesync', 'spilled_parts').length, 1);
    await session.applyPart(tx(9, [insert(orders, '5', 'new', '5')]), { index: 1, last: true });
    assert.deepEqual(
      server.rows('shop', 'orders').map((r) => r[0]),
      [4, 5],
    );
    await assert.rejects(session.applyPart(tx(10, [insert(orders, '7', 'x', '7')]), { index: 1, last: false }), (e: unknown) => e instanceof SitesyncError && e.code === 'SITESYNC_ERR_GAP' && sink.classify(e) === 'schema');
    // A redelivered last part of a transaction applied already: nothing applied, nothing kept.
    await session.applyPart(tx(9, [insert(orders, '8', 'again', '8')]), { index: 1, last: true });
    assert.equal(server.rows('shop', 'orders').length, 2);
    await sink.close();
  });

  test('skip records the position (and the parked record) without data; a retried parked transaction applies once', async () => {
    const { server, sink, progressRow } = setup();
    const session = await sink.openSession('paris');
    const skipped = tx(4, [insert(orders, '4', 'four', '4')]);
    const parked = { id: 'AAAAAAAA-0000-0000-0000-000000000001', kind: 'skipped' as const, source: 'paris', transactionId: skipped.id, bodySha256: 'a'.repeat(64), userId: null, route: 'sitesync/site.paris', reason: 'refused' };
    await session.skip(skipped.position, skipped.commitTimeMicros, parked);
    assert.equal(progressRow()![2], pos(4));
    assert.deepEqual(server.rows('shop', 'orders'), []);
    assert.equal((await sink.findParked(parked.id))?.done, false);
    await session.apply([tx(5, [insert(orders, '5', 'five', '5')])]);
    assert.equal(await session.applyRetried([skipped], parked.id), true);
    assert.deepEqual(
      server.rows('shop', 'orders').map((r) => r[0]),
      [4, 5],
    );
    assert.equal(progressRow()![2], pos(5)); // behind the progress: the position stays
    assert.equal(progressRow()![4], '3'); // but the row was written (the marker capture drops it by): skip, tx 5, the retry
    assert.equal((await sink.findParked(parked.id))?.done, true);
    assert.equal(await session.applyRetried([skipped], parked.id), false);
    assert.equal(server.rows('shop', 'orders').length, 2);
    // A refused record, through the sink's own connection.
    await sink.recordParked({ ...parked, id: 'bbbbbbbb-0000-0000-0000-000000000002', kind: 'refused' });
    await sink.recordParked({ ...parked, id: 'bbbbbbbb-0000-0000-0000-000000000002', kind: 'refused', reason: 'again' });
    assert.equal((await sink.findParked('BBBBBBBB-0000-0000-0000-000000000002'))?.reason, 'refused');
    await sink.finishParked('bbbbbbbb-0000-0000-0000-000000000002');
    assert.equal((await sink.findParked('bbbbbbbb-0000-0000-0000-000000000002'))?.done, true);
    await sink.close();
  });

  test('presence conflicts are recorded in the same transaction and decided by the policy; told after commit', async () => {
    const { server, sink, heard } = setup({ conflicts: true });
    const session = await sink.openSession('paris');
    await session.apply([tx(1, [insert(orders, '1', 'mine', '1')])]);
    await session.apply([tx(2, [insert(orders, '1', 'theirs', '2'), update(orders, row('9', 'none', '9')), remove(orders, '8', null, null)])]);
    assert.deepEqual(server.rows('shop', 'orders'), [[1, 'theirs', '2.00']]);
    const conflicts = server.rows('sitesync', 'conflicts').map((r) => [r[2], r[3], r[4], r[6], r[10], r[11], r[12]]);
    assert.deepEqual(conflicts, [
      ['insert_exists', 'shop.orders', '{"id":"1"}', 'paris:' + pos(2), 'last-writer-wins', 'remote', 'applied'],
      ['update_missing', 'shop.orders', '{"id":"9"}', 'paris:' + pos(2), 'last-writer-wins', 'none', 'skipped'],
      ['delete_missing', 'shop.orders', '{"id":"8"}', 'paris:' + pos(2), 'last-writer-wins', 'none', 'skipped'],
    ]);
    assert.deepEqual(
      heard.map((c) => [c.kind, c.resolution]),
      [
        ['insert_exists', 'apply'],
        ['update_missing', 'skip'],
        ['delete_missing', 'skip'],
      ],
    );
    // A transaction that met a conflict and then failed: nothing recorded, nobody told.
    await assert.rejects(session.apply([tx(3, [update(orders, row('7', 'none', '7')), insert(orders, '3', 'y'.repeat(30), '3')])]));
    assert.equal(server.rows('sitesync', 'conflicts').length, 3);
    assert.equal(heard.length, 3);
    // An insert the same transaction wrote already is no conflict.
    await session.apply([tx(4, [insert(orders, '4', 'a', '4'), insert(orders, '4', 'b', '4')])]);
    assert.equal(server.rows('sitesync', 'conflicts').length, 3);
    assert.deepEqual(server.rows('shop', 'orders')[1], [4, 'b', '4.00']);
    await sink.close();
  });

  test('without a conflict policy an insert of a key that is there is a data error', async () => {
    const { server, sink } = setup();
    const session = await sink.openSession('paris');
    await session.apply([tx(1, [insert(orders, '1', 'mine', '1')])]);
    await assert.rejects(session.apply([tx(2, [insert(orders, '1', 'theirs', '2')])]), (e: unknown) => e instanceof SqlServerDataError && /key \{"id":"1"\}, already there at site madrid/.test(e.message));
    assert.deepEqual(server.rows('shop', 'orders'), [[1, 'mine', '1.00']]);
    await sink.close();
  });

  test('identity columns: an explicit value goes with IDENTITY_INSERT ON; an update never sets it', async () => {
    const { server, sink, connections } = setup();
    const session = await sink.openSession('paris');
    await session.apply([tx(1, [insert(events, '42', 'created'), update(events, row('42', 'renamed'))])]);
    assert.deepEqual(server.rows('shop', 'events'), [['42', 'renamed']]);
    const statements = connections.at(-1)!.statements;
    assert.ok(statements.some((s) => s.startsWith('SET IDENTITY_INSERT [shop].[events] ON;')));
    assert.ok(statements.includes('UPDATE [shop].[events] SET [what] = @p0 WHERE [id] = CONVERT(bigint, @p1);\nSELECT @@ROWCOUNT AS affected;'));
    await sink.close();
  });

  test('a table without a key: an update or delete touches one row of identical ones', async () => {
    const { server, sink } = setup();
    const session = await sink.openSession('paris');
    await session.apply([tx(1, [insert(loose, 'a', '1'), insert(loose, 'a', '1'), insert(loose, 'b', null)])]);
    await session.apply([tx(2, [update(loose, row('a', '2'), row('a', '1'))])]);
    assert.deepEqual(server.rows('shop', 'loose'), [
      ['a', 1],
      ['a', 2],
      ['b', null],
    ]);
    await session.apply([tx(3, [remove(loose, 'a', '1'), remove(loose, 'b', null)])]);
    assert.deepEqual(server.rows('shop', 'loose'), [['a', 2]]);
    await sink.close();
  });

  test('a TRUNCATE is a DELETE of every row (SQL Server refuses TRUNCATE TABLE on a CDC-enabled table)', async () => {
    const { server, sink, connections } = setup();
    const session = await sink.openSession('paris');
    await session.apply([tx(1, [insert(orders, '1', 'a', '1'), insert(orders, '2', 'b', '2')])]);
    await session.apply([tx(2, [{ op: 'truncate', relations: [orders], cascade: false, restartIdentity: false }])]);
    assert.deepEqual(server.rows('shop', 'orders'), []);
    assert.ok(connections.at(-1)!.statements.includes('DELETE FROM [shop].[orders];\nSELECT @@ROWCOUNT AS affected;'));
    assert.ok(!connections.some((c) => c.statements.some((s) => /TRUNCATE/.test(s))));
    await sink.close();
  });

  test('the first write of every applied transaction is the progress row: capture can drop it as relayed', async () => {
    const { server, sink, connections } = setup({ conflicts: true });
    const session = await sink.openSession('paris');
    await session.apply([tx(1, [insert(orders, '1', 'a', '1')]), tx(2, [update(orders, row('1', 'b', '1')), insert(loose, 'x', '1')])]);
    await session.applyPart(tx(3, [insert(events, '1', 'e')]), { index: 0, last: false });
    await session.applyPart(tx(3, [remove(orders, '1', null, null)]), { index: 1, last: true });
    await session.applyRetried([tx(1, [insert(orders, '1', 'again', '1')])], 'nope'); // no open record: rolled back
    await session.skip(pos(7), 1n);
    server.runCaptureJob();
    const reader = server.reader();
    const instances = await reader.captureInstances();
    const rows = [];
    for (const i of instances) for (const r of await reader.changes(i, ZERO_LSN, 'F'.repeat(20), null, 1000)) rows.push({ instance: i.name, ...r });
    const commits = new Set(rows.filter((r) => r.instance !== 'sitesync_apply_progress').map((r) => r.startLsn));
    assert.equal(commits.size, 3);
    for (const lsn of commits) {
      const own = rows.filter((r) => r.startLsn === lsn).sort((a, b) => (a.seqval < b.seqval ? -1 : a.seqval > b.seqval ? 1 : a.operation - b.operation));
      assert.equal(own[0]!.instance, 'sitesync_apply_progress', `commit ${lsn} starts with ${own[0]!.instance}`);
    }
    // And in the statements: within each transaction, the progress MERGE is the first statement after BEGIN.
    const statements = connections.at(-1)!.statements;
    statements.forEach((s, i) => {
      if (s === 'BEGIN TRANSACTION' && !statements[i + 1]!.startsWith('DELETE FROM [sitesync].[spilled_parts]')) assert.match(statements[i + 1]!, /^MERGE \[sitesync\]\.\[apply_progress\]/);
    });
    await sink.close();
  });

  test('reserved schemas are never written; a missing table or column halts the source', async () => {
    const { sink } = setup();
    const session = await sink.openSession('paris');
    const evil: RelationInfo = { ...orders, schema: 'Sitesync', table: 'apply_progress' };
    await assert.rejects(session.apply([tx(1, [insert(evil, '1', 'x', '1')])]), (e: unknown) => e instanceof SitesyncError && e.code === 'SITESYNC_ERR_UNTRUSTED');
    assert.equal(sink.isReservedSchema('CDC'), true);
    assert.equal(sink.isReservedSchema('sys'), true);
    assert.equal(sink.isReservedSchema('shop'), false);
    const missing: RelationInfo = { ...orders, table: 'nope' };
    await assert.rejects(session.apply([tx(1, [insert(missing, '1', 'x', '1')])]), (e: unknown) => e instanceof SitesyncError && e.code === 'SITESYNC_ERR_APPLY_SCHEMA' && sink.classify(e) === 'schema');
    const extra: RelationInfo = { ...orders, columns: [...orders.columns, col('extra', 'string')] };
    await assert.rejects(session.apply([tx(1, [insert(extra, '1', 'x', '1', 'y')])]), (e: unknown) => e instanceof SitesyncError && /column "extra" of table shop\.orders does not exist/.test(e.message));
    await sink.close();
  });
  test('a rollback that fails leaves the session unusable (transient), never a transaction open under the next one', async () => {
    let failRollback = false;
    const { server, sink, progressRow } = setup({
      sim: {
        failWhen: (text) => {
          if (text === 'ROLLBACK' && failRollback) {
            failRollback = false;
            return Object.assign(new Error('Timeout: Request failed to complete in 15000ms'), { name: 'RequestError', code: 'ETIMEOUT' });
          }
          if (text.includes('VALUES (CONVERT(int, @p0), @p1, CONVERT(decimal(10,2), @p2))') && text.includes('INSERT INTO [shop].[orders]') && failRollback) {
            return simRequestError(547, 'The INSERT statement conflicted with the CHECK constraint "ck".');
          }
          return undefined;
        },
      },
    });
    const session = await sink.openSession('paris');
    await session.apply([tx(1, [insert(orders, '1', 'one', '1')])]);
    failRollback = true;
    // tx 2: its update goes in, its insert is refused, and the rollback gets no answer.
    await assert.rejects(session.apply([tx(2, [update(orders, row('1', 'uno', '1')), insert(orders, '2', 'two', '2')])]), (e: unknown) => sink.classify(e) === 'data');
    // The session cannot know what the server holds: the next call is a transient failure (the runner opens
    // a new session), not a transaction begun inside the unfinished one, nor a data error that parks tx 3.
    await assert.rejects(session.apply([tx(3, [insert(orders, '3', 'three', '3')])]), (e: unknown) => sink.classify(e) === 'transient');
    // Nothing of tx 2 (nor of tx 3) is in: the connection closed, and the server rolled back what was open.
    assert.deepEqual(server.rows('shop', 'orders'), [[1, 'one', '1.00']]);
    assert.equal(progressRow()![2], pos(1));
    const again = await sink.openSession('paris');
    assert.equal(await again.progress(), pos(1));
    await again.apply([tx(3, [insert(orders, '3', 'three', '3')])]);
    assert.deepEqual(server.rows('shop', 'orders'), [
      [1, 'one', '1.00'],
      [3, 'three', '3.00'],
    ]);
    await sink.close();
  });
});
