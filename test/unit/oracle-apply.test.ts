/**
 * The Oracle sink (connectors/oracle/oracle-sink.ts) on the simulated database (test/helpers/oracle-simulator.ts
 * through oracle-simulated-apply.ts): progress atomic with the data and written first (so that this site's
 * capture drops the relayed write: the first redo row of every applied transaction is the APPLY_PROGRESS
 * change), forward only; large transactions' parts kept in their own commits and applied in one; skip and
 * retried parked transactions; presence conflicts; tables without a key; TRUNCATE as DELETE; names resolved
 * exact-case first, then upper case; identity columns; a failed rollback. Tables and transactions are invented.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ResolvedConflict } from '../../src/connector.ts';
import { SitesyncError } from '../../src/errors.ts';
import type { Change, ColumnInfo, RelationInfo, RowImage, Transaction } from '../../src/events/transaction.ts';
import { parseKind } from '../../src/events/value-kind.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { OPERATION, type MinedRow } from '../../connectors/oracle/logminer-reader.ts';
import { OracleDataError } from '../../connectors/oracle/oracle-errors.ts';
import { OracleSink } from '../../connectors/oracle/oracle-sink.ts';
import { SimulatedOracle, simOraError } from '../helpers/oracle-simulator.ts';
import { simulatedConnect, type SimulatedApplyOptions } from '../helpers/oracle-simulated-apply.ts';

const logger = createLogger('silent');

function col(name: string, kind: string, key = false): ColumnInfo {
  return { name, key, kind: parseKind(kind), native: { name: kind, id: 0, modifier: -1 } };
}

/** A PostgreSQL-like source's relations: lower-case names, found at the target as SHOP.ORDERS… (upper case). */
const orders: RelationInfo = { schema: 'shop', table: 'orders', replicaIdentity: 'd', columns: [col('id', 'int32', true), col('note', 'string'), col('amount', 'decimal')] };
const loose: RelationInfo = { schema: 'shop', table: 'loose', replicaIdentity: 'f', columns: [col('name', 'string'), col('n', 'int32')] };
const events: RelationInfo = { schema: 'shop', table: 'events', replicaIdentity: 'd', columns: [col('id', 'int64', true), col('what', 'string')] };
/** An Oracle source's relation: exact names, quoted mixed case at the target. */
const mixed: RelationInfo = { schema: 'SHOP', table: 'Mixed', replicaIdentity: 'd', columns: [col('Id', 'int32', true), col('note', 'string')] };

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
  const db = new SimulatedOracle();
  db.createTable('SHOP', 'ORDERS', [
    { name: 'ID', type: 'NUMBER', precision: 10, scale: 0, keyOrdinal: 1 },
    { name: 'NOTE', type: 'VARCHAR2', length: 20 },
    { name: 'AMOUNT', type: 'NUMBER', precision: 10, scale: 2 },
  ]);
  db.createTable('SHOP', 'LOOSE', [
    { name: 'NAME', type: 'VARCHAR2', length: 20 },
    { name: 'N', type: 'NUMBER', precision: 10, scale: 0 },
  ]);
  db.createTable('SHOP', 'EVENTS', [
    { name: 'ID', type: 'NUMBER', precision: 19, scale: 0, keyOrdinal: 1 },
    { name: 'WHAT', type: 'VARCHAR2', length: 40 },
  ]);
  db.createTable('SHOP', 'Mixed', [
    { name: 'Id', type: 'NUMBER', precision: 10, scale: 0, keyOrdinal: 1 },
    { name: 'NOTE', type: 'VARCHAR2', length: 20 },
  ]);
  const { connect, connections } = simulatedConnect(db, { identities: { 'SHOP.EVENTS.ID': 'BY DEFAULT' }, ...options.sim });
  const heard: ResolvedConflict[] = [];
  const sink = new OracleSink({
    site: 'madrid',
    connect,
    logger,
    sourceKindOf: () => 'postgres',
    onConflict: (c) => heard.push(c),
    ...(options.conflicts ? { conflictPolicy: () => ({ policy: 'last-writer-wins' as const, priority: [] }) } : {}),
  });
  const progressRow = (): (string | null)[] | undefined => db.rows('SITESYNC', 'APPLY_PROGRESS').find((r) => r[0] === 'paris');
  return { db, sink, connections, heard, progressRow };
}

/** Every row the simulated LogMiner returns, in order (all logs, all owners). */
async function mined(db: SimulatedOracle): Promise<MinedRow[]> {
  const reader = db.reader();
  const logs = await reader.logs(0n);
  const session = await reader.mine(logs, 0n, db.scn, null);
  const rows: MinedRow[] = [];
  for (let batch = await session.next(1000); batch.length > 0; batch = await session.next(1000)) rows.push(...batch);
  await session.end();
  return rows;
}

/** The row changes of each committed transaction, in redo order, as `OWNER.TABLE`. */
async function committedTables(db: SimulatedOracle): Promise<string[][]> {
  const rows = await mined(db);
  const committed = new Set(rows.filter((r) => r.operationCode === OPERATION.commit).map((r) => r.xid));
  const byXid = new Map<string, string[]>();
  for (const r of rows) {
    if (!committed.has(r.xid) || r.rollback || ![OPERATION.insert, OPERATION.update, OPERATION.delete].includes(r.operationCode as 1 | 2 | 3)) continue;
    byXid.set(r.xid, [...(byXid.get(r.xid) ?? []), `${r.owner}.${r.table}`]);
  }
  return [...byXid.values()];
}

describe('oracle sink on the simulated database (invented tables)', () => {
  test('applies a transaction: progress first, data in the same commit; names resolved to upper case', async () => {
    const { db, sink, progressRow, connections } = setup();
    const session = await sink.openSession('paris');
    assert.equal(await session.progress(), null);
    await session.apply([tx(1, [insert(orders, '1', 'one', '12.5'), insert(orders, '2', 'two', null), insert(orders, '3', 'three', '0.50')])]);
    assert.deepEqual(db.rows('SHOP', 'ORDERS'), [
      ['1', 'one', '12.5'],
      ['2', 'two', null],
      ['3', 'three', '.5'],
    ]);
    assert.deepEqual(progressRow(), ['paris', 'postgres', pos(1), '1700000000000001', '1']);
    assert.equal(await session.progress(), pos(1));
    const statements = connections.at(-1)!.statements;
    assert.ok(statements.includes('INSERT INTO "SHOP"."ORDERS" ("ID", "NOTE", "AMOUNT") VALUES (TO_NUMBER(:p0), :p1, TO_NUMBER(:p2))'));
    assert.ok(statements.every((s) => !s.trimEnd().endsWith(';') || s.trimEnd().endsWith('END;')), 'no statement ends with ;');
    // Exact names first: "SHOP"."Mixed" with its column "Id", and NOTE by its upper-case name.
    await session.apply([tx(2, [insert(mixed, '7', 'exact')])]);
    assert.deepEqual(db.rows('SHOP', 'Mixed'), [['7', 'exact']]);
    assert.ok(statements.includes('INSERT INTO "SHOP"."Mixed" ("Id", "NOTE") VALUES (TO_NUMBER(:p0), :p1)'));
    await sink.close();
  });

  test('a change refused mid-transaction leaves neither its data nor its progress', async () => {
    const { db, sink, progressRow } = setup();
    const session = await sink.openSession('paris');
    await session.apply([tx(1, [insert(orders, '1', 'one', '1')])]);
    // The second change's value does not fit VARCHAR2(20): refused before it is sent.
    await assert.rejects(session.apply([tx(2, [insert(orders, '2', 'two', '2'), insert(orders, '3', 'x'.repeat(21), '3')])]), (e: unknown) => e instanceof OracleDataError && sink.classify(e) === 'data');
    // The empty string, which Oracle would store as NULL: refused too.
    await assert.rejects(session.apply([tx(2, [insert(orders, '2', 'two', '2'), insert(orders, '4', '', '4')])]), (e: unknown) => e instanceof OracleDataError && /stores an empty string as NULL/.test(e.message));
    assert.deepEqual(db.rows('SHOP', 'ORDERS'), [['1', 'one', '1']]);
    assert.equal(progressRow()![2], pos(1));
    // The database refusing a statement (a CHECK constraint, injected) has the same effect.
    const failing = setup({
      sim: { failWhen: (text) => (text.startsWith('INSERT INTO "SHOP"."ORDERS"') && failing.db.rows('SHOP', 'ORDERS').length > 0 ? simOraError(2290, 'check constraint (SHOP.CK) violated') : undefined) },
    });
    const other = await failing.sink.openSession('paris');
    await other.apply([tx(1, [insert(orders, '1', 'one', '1')])]);
    await assert.rejects(other.apply([tx(2, [update(orders, row('1', 'uno', '1')), insert(orders, '2', 'two', '2')])]), (e: unknown) => failing.sink.classify(e) === 'data' && /ORA-02290/.test(String(e)));
    assert.deepEqual(failing.db.rows('SHOP', 'ORDERS'), [['1', 'one', '1']]);
    assert.equal(failing.progressRow()![2], pos(1));
    // Nothing of the failed transactions was committed: the redo holds two applied transactions only.
    assert.equal((await committedTables(failing.db)).length, 1);
    await sink.close();
    await failing.sink.close();
  });

  test('progress only moves forward: a transaction at or below it is never applied again', async () => {
    const { db, sink, progressRow } = setup();
    const first = await sink.openSession('paris');
    await first.apply([tx(5, [insert(orders, '5', 'five', '5')])]);
    await first.close();
    // A new session does not know the progress: the MERGE finds the row past the position and merges nothing.
    const second = await sink.openSession('paris');
    await second.apply([tx(3, [insert(orders, '3', 'three', '3')]), tx(5, [insert(orders, '6', 'dup', '6')])]);
    assert.deepEqual(db.rows('SHOP', 'ORDERS'), [['5', 'five', '5']]);
    assert.equal(progressRow()![2], pos(5));
    assert.equal(progressRow()![4], '1');
    // Nothing merged, nothing in the redo: one committed transaction so far.
    assert.equal((await committedTables(db)).length, 1);
    await second.apply([tx(6, [insert(orders, '6', 'six', '6')])]);
    assert.equal(progressRow()![2], pos(6));
    // Positions compare by length first: a longer position is later whatever its digits.
    await second.apply([{ ...tx(7, [insert(orders, '7', 'seven', '7')]), position: `0${pos(1)}` }]);
    assert.equal(progressRow()![2], `0${pos(1)}`);
    await sink.close();
  });

  test('parts are kept in their own commits and applied with the last in one commit', async () => {
    const { db, sink, progressRow } = setup();
    const session = await sink.openSession('paris');
    const t = (changes: Change[]): Transaction => tx(9, changes);
    await session.applyPart(t([insert(orders, '1', 'a', '1')]), { index: 0, last: false });
    await session.applyPart(t([insert(orders, '2', 'b', '2')]), { index: 1, last: false });
    assert.equal(db.rows('SITESYNC', 'SPILLED_PARTS').length, 2);
    assert.deepEqual(db.rows('SHOP', 'ORDERS'), []);
    assert.equal(progressRow(), undefined);
    await session.applyPart(t([insert(orders, '3', 'c', '3')]), { index: 2, last: true });
    assert.deepEqual(
      db.rows('SHOP', 'ORDERS').map((r) => r[0]),
      ['1', '2', '3'],
    );
    assert.equal(progressRow()![2], pos(9));
    assert.equal(db.rows('SITESYNC', 'SPILLED_PARTS').length, 0);
    // One commit: the progress row, the three inserts and the parts forgotten, in one transaction.
    const last = (await committedTables(db)).at(-1)!;
    assert.deepEqual(last.filter((t) => t !== 'SITESYNC.SPILLED_PARTS'), ['SITESYNC.APPLY_PROGRESS', 'SHOP.ORDERS', 'SHOP.ORDERS', 'SHOP.ORDERS']);
    await sink.close();
  });

  test('part 0 again starts over; a part without its predecessor is a gap', async () => {
    const { db, sink } = setup();
    const session = await sink.openSession('paris');
    await session.applyPart(tx(9, [insert(orders, '1', 'old', '1')]), { index: 0, last: false });
    await session.applyPart(tx(9, [insert(orders, '2', 'old', '2')]), { index: 1, last: false });
    await session.applyPart(tx(9, [insert(orders, '4', 'new', '4')]), { index: 0, last: false });
    assert.equal(db.rows('SITESYNC', 'SPILLED_PARTS').length, 1);
    await session.applyPart(tx(9, [insert(orders, '5', 'new', '5')]), { index: 1, last: true });
    assert.deepEqual(
      db.rows('SHOP', 'ORDERS').map((r) => r[0]),
      ['4', '5'],
    );
    await assert.rejects(session.applyPart(tx(10, [insert(orders, '7', 'x', '7')]), { index: 1, last: false }), (e: unknown) => e instanceof SitesyncError && e.code === 'SITESYNC_ERR_GAP' && sink.classify(e) === 'schema');
    // A redelivered last part of a transaction applied already: nothing applied, nothing kept.
    await session.applyPart(tx(9, [insert(orders, '8', 'again', '8')]), { index: 1, last: true });
    assert.equal(db.rows('SHOP', 'ORDERS').length, 2);
    assert.equal(db.rows('SITESYNC', 'SPILLED_PARTS').length, 0);
    await sink.close();
  });

  test('skip records the position (and the parked record) without data; a retried parked transaction applies once', async () => {
    const { db, sink, progressRow } = setup();
    const session = await sink.openSession('paris');
    const skipped = tx(4, [insert(orders, '4', 'four', '4')]);
    const parked = { id: 'AAAAAAAA-0000-0000-0000-000000000001', kind: 'skipped' as const, source: 'paris', transactionId: skipped.id, bodySha256: 'a'.repeat(64), userId: null, route: 'sitesync/site.paris', reason: 'refused' };
    await session.skip(skipped.position, skipped.commitTimeMicros, parked);
    assert.equal(progressRow()![2], pos(4));
    assert.deepEqual(db.rows('SHOP', 'ORDERS'), []);
    assert.equal((await sink.findParked(parked.id))?.done, false);
    await session.apply([tx(5, [insert(orders, '5', 'five', '5')])]);
    assert.equal(await session.applyRetried([skipped], parked.id), true);
    assert.deepEqual(
      db.rows('SHOP', 'ORDERS').map((r) => r[0]),
      ['4', '5'],
    );
    assert.equal(progressRow()![2], pos(5)); // behind the progress: the position stays
    assert.equal(progressRow()![4], '3'); // but the row was written (the marker capture drops it by): skip, tx 5, the retry
    assert.equal((await sink.findParked(parked.id))?.done, true);
    assert.equal(await session.applyRetried([skipped], parked.id), false);
    assert.equal(db.rows('SHOP', 'ORDERS').length, 2);
    // The retry's commit starts with the progress row's change too.
    const retried = (await committedTables(db)).find((t) => t.includes('SITESYNC.PARKED') && t.includes('SHOP.ORDERS'))!;
    assert.equal(retried[0], 'SITESYNC.APPLY_PROGRESS');
    // A refused record, through the sink's own connection.
    await sink.recordParked({ ...parked, id: 'bbbbbbbb-0000-0000-0000-000000000002', kind: 'refused' });
    await sink.recordParked({ ...parked, id: 'bbbbbbbb-0000-0000-0000-000000000002', kind: 'refused', reason: 'again' });
    assert.equal((await sink.findParked('BBBBBBBB-0000-0000-0000-000000000002'))?.reason, 'refused');
    await sink.finishParked('bbbbbbbb-0000-0000-0000-000000000002');
    assert.equal((await sink.findParked('bbbbbbbb-0000-0000-0000-000000000002'))?.done, true);
    await sink.close();
  });

  test('presence conflicts are recorded in the same transaction and decided by the policy; told after commit', async () => {
    const { db, sink, heard } = setup({ conflicts: true });
    const session = await sink.openSession('paris');
    await session.apply([tx(1, [insert(orders, '1', 'mine', '1')])]);
    await session.apply([tx(2, [insert(orders, '1', 'theirs', '2'), update(orders, row('9', 'none', '9')), remove(orders, '8', null, null)])]);
    assert.deepEqual(db.rows('SHOP', 'ORDERS'), [['1', 'theirs', '2']]);
    const conflicts = db.rows('SITESYNC', 'CONFLICTS').map((r) => [r[2], r[3], r[4], r[6], r[10], r[11], r[12]]);
    assert.deepEqual(conflicts, [
      ['insert_exists', 'SHOP.ORDERS', '{"id":"1"}', 'paris:' + pos(2), 'last-writer-wins', 'remote', 'applied'],
      ['update_missing', 'SHOP.ORDERS', '{"id":"9"}', 'paris:' + pos(2), 'last-writer-wins', 'none', 'skipped'],
      ['delete_missing', 'SHOP.ORDERS', '{"id":"8"}', 'paris:' + pos(2), 'last-writer-wins', 'none', 'skipped'],
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
    assert.equal(db.rows('SITESYNC', 'CONFLICTS').length, 3);
    assert.equal(heard.length, 3);
    // An insert the same transaction wrote already is no conflict.
    await session.apply([tx(4, [insert(orders, '4', 'a', '4'), insert(orders, '4', 'b', '4')])]);
    assert.equal(db.rows('SITESYNC', 'CONFLICTS').length, 3);
    assert.deepEqual(db.rows('SHOP', 'ORDERS')[1], ['4', 'b', '4']);
    await sink.close();
  });

  test('without a conflict policy an insert of a key that is there is a data error', async () => {
    const { db, sink } = setup();
    const session = await sink.openSession('paris');
    await session.apply([tx(1, [insert(orders, '1', 'mine', '1')])]);
    await assert.rejects(session.apply([tx(2, [insert(orders, '1', 'theirs', '2')])]), (e: unknown) => e instanceof OracleDataError && /key \{"id":"1"\}, already there at site madrid/.test(e.message));
    assert.deepEqual(db.rows('SHOP', 'ORDERS'), [['1', 'mine', '1']]);
    await sink.close();
  });

  test('identity columns: BY DEFAULT takes the source value; GENERATED ALWAYS halts the source with the fix', async () => {
    const { db, sink } = setup();
    const session = await sink.openSession('paris');
    await session.apply([tx(1, [insert(events, '42', 'created'), update(events, row('42', 'renamed'))])]);
    assert.deepEqual(db.rows('SHOP', 'EVENTS'), [['42', 'renamed']]);
    await sink.close();
    const always = setup({ sim: { identities: { 'SHOP.EVENTS.ID': 'ALWAYS' } } });
    const other = await always.sink.openSession('paris');
    await assert.rejects(
      other.apply([tx(1, [insert(events, '42', 'created')])]),
      (e: unknown) => e instanceof SitesyncError && e.code === 'SITESYNC_ERR_APPLY_SCHEMA' && /GENERATED ALWAYS AS IDENTITY/.test(e.message) && /MODIFY "ID" GENERATED BY DEFAULT ON NULL AS IDENTITY/.test(e.message),
    );
    assert.deepEqual(always.db.rows('SHOP', 'EVENTS'), []);
    await always.sink.close();
  });

  test('a table without a key: an update or delete touches one row of identical ones (ROWNUM = 1), NULL by IS NULL', async () => {
    const { db, sink, connections } = setup();
    const session = await sink.openSession('paris');
    await session.apply([tx(1, [insert(loose, 'a', '1'), insert(loose, 'a', '1'), insert(loose, 'b', null)])]);
    await session.apply([tx(2, [update(loose, row('a', '2'), row('a', '1'))])]);
    assert.deepEqual(db.rows('SHOP', 'LOOSE'), [
      ['a', '1'],
      ['a', '2'],
      ['b', null],
    ]);
    await session.apply([tx(3, [remove(loose, 'a', '1'), remove(loose, 'b', null)])]);
    assert.deepEqual(db.rows('SHOP', 'LOOSE'), [['a', '2']]);
    const statements = connections.at(-1)!.statements;
    assert.ok(statements.includes('UPDATE "SHOP"."LOOSE" SET "NAME" = :p0, "N" = TO_NUMBER(:p1) WHERE "NAME" = :p2 AND "N" = TO_NUMBER(:p3) AND ROWNUM = 1'));
    assert.ok(statements.includes('DELETE FROM "SHOP"."LOOSE" WHERE "NAME" = :p0 AND "N" IS NULL AND ROWNUM = 1'));
    await sink.close();
  });

  test('a TRUNCATE is a DELETE of every row (TRUNCATE TABLE is DDL, which would commit)', async () => {
    const { db, sink, connections, progressRow } = setup();
    const session = await sink.openSession('paris');
    await session.apply([tx(1, [insert(orders, '1', 'a', '1'), insert(orders, '2', 'b', '2')])]);
    await session.apply([tx(2, [{ op: 'truncate', relations: [orders], cascade: false, restartIdentity: false }])]);
    assert.deepEqual(db.rows('SHOP', 'ORDERS'), []);
    assert.equal(progressRow()![2], pos(2));
    assert.ok(connections.at(-1)!.statements.includes('DELETE FROM "SHOP"."ORDERS"'));
    assert.ok(!connections.some((c) => c.statements.some((s) => /TRUNCATE/.test(s))));
    // The DELETEs are in the transaction of the progress row.
    assert.deepEqual((await committedTables(db)).at(-1), ['SITESYNC.APPLY_PROGRESS', 'SHOP.ORDERS', 'SHOP.ORDERS']);
    await sink.close();
  });

  test('the first redo row of every applied transaction is the APPLY_PROGRESS change: capture can drop it as relayed', async () => {
    const { db, sink, connections } = setup({ conflicts: true });
    const session = await sink.openSession('paris');
    await session.apply([tx(1, [insert(orders, '1', 'a', '1')]), tx(2, [update(orders, row('1', 'b', '1')), insert(loose, 'x', '1')])]);
    await session.applyPart(tx(3, [insert(events, '1', 'e')]), { index: 0, last: false });
    await session.applyPart(tx(3, [remove(orders, '1', null, null), update(orders, row('5', 'gone', '5'))]), { index: 1, last: true });
    await session.applyRetried([tx(1, [insert(orders, '1', 'again', '1')])], 'nope'); // no open record: rolled back
    await session.skip(pos(7), 1n);
    const rows = await mined(db);
    const commits = rows.filter((r) => r.operationCode === OPERATION.commit).map((r) => r.xid);
    const applied = commits.filter((xid) => rows.some((r) => r.xid === xid && r.owner === 'SHOP'));
    assert.equal(applied.length, 3);
    for (const xid of applied) {
      const own = rows.filter((r) => r.xid === xid && r.operationCode !== OPERATION.start && r.operationCode !== OPERATION.commit);
      assert.equal(`${own[0]!.owner}.${own[0]!.table}`, 'SITESYNC.APPLY_PROGRESS', `transaction ${xid} starts with ${own[0]!.owner}.${own[0]!.table}`);
    }
    // The rolled-back retry left no commit; the part kept alone (SPILLED_PARTS only) is no applied transaction.
    assert.ok(commits.every((xid) => rows.some((r) => r.xid === xid && r.owner === 'SITESYNC')));
    // And in the statements: no write of a data table before the progress MERGE of its transaction.
    let merged = false;
    for (const s of connections.at(-1)!.statements) {
      if (s === 'COMMIT' || s === 'ROLLBACK') merged = false;
      else if (s.startsWith('MERGE INTO "SITESYNC"."APPLY_PROGRESS"')) merged = true;
      else if (/^(INSERT INTO|UPDATE|DELETE FROM) "SHOP"/.test(s)) assert.ok(merged, `${s.slice(0, 40)} before the progress MERGE`);
    }
    await sink.close();
  });

  test('reserved schemas are never written; a missing table or column halts the source', async () => {
    const { sink } = setup();
    const session = await sink.openSession('paris');
    const evil: RelationInfo = { ...orders, schema: 'Sitesync', table: 'apply_progress' };
    await assert.rejects(session.apply([tx(1, [insert(evil, '1', 'x', '1')])]), (e: unknown) => e instanceof SitesyncError && e.code === 'SITESYNC_ERR_UNTRUSTED');
    assert.equal(sink.isReservedSchema('sys'), true);
    assert.equal(sink.isReservedSchema('SYSTEM'), true);
    assert.equal(sink.isReservedSchema('APEX_230200'), true);
    assert.equal(sink.isReservedSchema('shop'), false);
    assert.equal(sink.isReservedSchema('public'), false, "PostgreSQL's public: Oracle's PUBLIC holds no tables");
    const missing: RelationInfo = { ...orders, table: 'nope' };
    await assert.rejects(session.apply([tx(1, [insert(missing, '1', 'x', '1')])]), (e: unknown) => e instanceof SitesyncError && e.code === 'SITESYNC_ERR_APPLY_SCHEMA' && sink.classify(e) === 'schema' && /neither as "shop"\."nope" nor as "SHOP"\."NOPE"/.test(e.message));
    const extra: RelationInfo = { ...orders, columns: [...orders.columns, col('extra', 'string')] };
    await assert.rejects(session.apply([tx(1, [insert(extra, '1', 'x', '1', 'y')])]), (e: unknown) => e instanceof SitesyncError && /column "extra" of table SHOP\.ORDERS does not exist/.test(e.message));
    await sink.close();
  });

  test('a rollback that fails leaves the session unusable (transient), never a transaction open under the next one', async () => {
    let failRollback = false;
    const { db, sink, progressRow } = setup({
      sim: {
        failWhen: (text) => {
          if (text === 'ROLLBACK' && failRollback) {
            failRollback = false;
            return Object.assign(new Error('NJS-510: connection to host db.madrid port 1521 timed out'), { code: 'NJS-510' });
          }
          if (text.startsWith('INSERT INTO "SHOP"."ORDERS"') && failRollback) return simOraError(2290, 'check constraint (SHOP.CK) violated');
          return undefined;
        },
      },
    });
    const session = await sink.openSession('paris');
    await session.apply([tx(1, [insert(orders, '1', 'one', '1')])]);
    failRollback = true;
    // tx 2: its update goes in, its insert is refused, and the rollback gets no answer.
    await assert.rejects(session.apply([tx(2, [update(orders, row('1', 'uno', '1')), insert(orders, '2', 'two', '2')])]), (e: unknown) => sink.classify(e) === 'data');
    // The session cannot know what the database holds: the next call is a transient failure (the runner opens
    // a new session), not a transaction run inside the unfinished one, nor a data error that parks tx 3.
    await assert.rejects(session.apply([tx(3, [insert(orders, '3', 'three', '3')])]), (e: unknown) => sink.classify(e) === 'transient');
    // Nothing of tx 2 (nor of tx 3) is in: the connection closed, and Oracle rolled back what was open.
    assert.deepEqual(db.rows('SHOP', 'ORDERS'), [['1', 'one', '1']]);
    assert.equal(progressRow()![2], pos(1));
    const again = await sink.openSession('paris');
    assert.equal(await again.progress(), pos(1));
    await again.apply([tx(3, [insert(orders, '3', 'three', '3')])]);
    assert.deepEqual(db.rows('SHOP', 'ORDERS'), [
      ['1', 'one', '1'],
      ['3', 'three', '3'],
    ]);
    await sink.close();
  });
});
