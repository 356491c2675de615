/**
 * The simulator's own rules (test/helpers/sqlserver-simulator.ts): what capture's tests rely on it to do as
 * SQL Server's CDC does.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ZERO_LSN } from '../../connectors/sqlserver/sqlserver-positions.ts';
import { datetimeMicros, SimDuplicateKeyError, SimLockError, SimulatedSqlServer, zonedIso } from '../helpers/sqlserver-simulator.ts';

function server(timeZone = 'UTC'): SimulatedSqlServer {
  const sim = new SimulatedSqlServer({ timeZone });
  sim.createTable('dbo', 'items', [
    { name: 'id', type: 'int', keyOrdinal: 1 },
    { name: 'name', type: 'nvarchar', maxLength: 80 },
  ]);
  sim.enableCdc('dbo', 'items');
  return sim;
}

const all = async (sim: SimulatedSqlServer, name = 'dbo_items') => sim.reader().changes(sim.captureInstance(name)!, ZERO_LSN, 'F'.repeat(20), null, 1000);

test('commit LSNs increase in commit order; seqvals interleave; every row carries its commit LSN', async () => {
  const sim = server();
  const a = sim.begin();
  const b = sim.begin();
  a.insert('dbo', 'items', { id: 1, name: 'a1' });
  b.insert('dbo', 'items', { id: 2, name: 'b1' });
  a.insert('dbo', 'items', { id: 3, name: 'a2' });
  const lsnB = b.commit();
  const lsnA = a.commit();
  assert.ok(lsnB < lsnA);
  assert.equal(sim.runCaptureJob(), 2);
  const rows = await all(sim);
  assert.deepEqual(rows.map((r) => [r.startLsn, r.values[0]]), [[lsnB, 2], [lsnA, 1], [lsnA, 3]]);
  // a's first insert was logged before b's, but sorts after it: start_lsn first
  assert.ok(rows[1]!.seqval < rows[0]!.seqval);
  assert.ok(rows.every((r) => r.seqval < r.startLsn));
});

test('an update is a 3 and a 4 with one seqval; a key update is a 1 and a 2; a rollback writes nothing', async () => {
  const sim = server();
  const t1 = sim.begin();
  t1.insert('dbo', 'items', { id: 1, name: 'x' });
  t1.commit();
  const t2 = sim.begin();
  assert.equal(t2.update('dbo', 'items', { id: 1 }, { name: 'y' }), 1);
  assert.equal(t2.update('dbo', 'items', { id: 1 }, { id: 5 }), 1);
  t2.commit();
  const t3 = sim.begin();
  t3.delete('dbo', 'items', { id: 5 });
  t3.rollback();
  sim.runCaptureJob();
  const rows = await all(sim);
  assert.deepEqual(rows.map((r) => [r.operation, ...r.values]), [[2, 1, 'x'], [3, 1, 'x'], [4, 1, 'y'], [1, 1, 'y'], [2, 5, 'y']]);
  assert.equal(rows[1]!.seqval, rows[2]!.seqval);
  assert.notEqual(rows[3]!.seqval, rows[4]!.seqval);
  assert.deepEqual(sim.rows('dbo', 'items'), [[5, 'y']]);
});

test('locks: a row another open transaction wrote cannot be written; duplicate keys throw; rows() shows committed rows', () => {
  const sim = server();
  const a = sim.begin();
  a.insert('dbo', 'items', { id: 1, name: 'a' });
  const b = sim.begin();
  assert.throws(() => b.insert('dbo', 'items', { id: 1, name: 'b' }), SimLockError);
  assert.deepEqual(sim.rows('dbo', 'items'), []);
  assert.deepEqual(a.find('dbo', 'items', { id: 1 }), [1, 'a']);
  a.commit();
  const c = sim.begin();
  assert.throws(() => c.insert('dbo', 'items', { id: 1, name: 'c' }), SimDuplicateKeyError);
  assert.deepEqual(sim.rows('dbo', 'items'), [[1, 'a']]);
});

test('capture instances: columns fixed at creation, a dropped column reads NULL, at most two, enabling waits for writers', async () => {
  const sim = server();
  sim.addColumn('dbo', 'items', { name: 'extra', type: 'int' });
  const open = sim.begin();
  open.insert('dbo', 'items', { id: 9, name: 'n' });
  assert.throws(() => sim.enableCdc('dbo', 'items', 'dbo_items_v2'), SimLockError);
  open.rollback();
  const v2 = sim.enableCdc('dbo', 'items', 'dbo_items_v2');
  assert.throws(() => sim.enableCdc('dbo', 'items', 'dbo_items_v3'), /Two capture instances/);
  const t = sim.begin();
  t.insert('dbo', 'items', { id: 1, name: 'x', extra: 7 });
  t.commit();
  sim.dropColumn('dbo', 'items', 'name');
  const t2 = sim.begin();
  t2.insert('dbo', 'items', { id: 2, extra: 8 });
  t2.commit();
  sim.runCaptureJob();
  assert.deepEqual((await all(sim)).map((r) => r.values), [[1, 'x'], [2, null]]);
  assert.deepEqual((await all(sim, v2)).map((r) => r.values), [[1, 'x', 7], [2, null, 8]]);
  assert.deepEqual(sim.captureInstance(v2)!.columns.map((c) => c.name), ['id', 'name', 'extra']);
});

test('the capture job: in commit order, a bounded number, only instances that existed at the commit, markers ignored', async () => {
  const sim = server();
  const reader = sim.reader();
  const lsns: string[] = [];
  for (let i = 1; i <= 3; i++) {
    const t = sim.begin();
    t.insert('dbo', 'items', { id: i, name: `n${i}` });
    lsns.push(t.commit());
  }
  assert.equal(await reader.maxTransactionLsn(), null);
  assert.equal(sim.runCaptureJob(2), 2); // writes a 0x00 marker too (odd run)
  assert.equal(await reader.maxTransactionLsn(), lsns[1]);
  assert.equal(sim.unscanned, 1);
  sim.runCaptureJob();
  assert.equal(await reader.maxTransactionLsn(), lsns[2]);
  const times = await reader.transactionTimes(lsns);
  assert.deepEqual(times.map((t) => t.startLsn), lsns);
  // a table enabled after a commit does not get it
  sim.createTable('dbo', 'later', [{ name: 'id', type: 'int', keyOrdinal: 1 }]);
  const t = sim.begin();
  t.insert('dbo', 'later', { id: 1 });
  t.commit();
  sim.enableCdc('dbo', 'later');
  sim.runCaptureJob();
  assert.deepEqual(await all(sim, 'dbo_later'), []);
});

test('cleanup deletes below the low-water mark and raises start_lsn; truncate 4711; disabled instance 208; connection loss', async () => {
  const sim = server();
  const lsns: string[] = [];
  for (let i = 1; i <= 3; i++) {
    const t = sim.begin();
    t.insert('dbo', 'items', { id: i, name: `n${i}` });
    lsns.push(t.commit());
  }
  sim.runCaptureJob();
  sim.cleanup(lsns[1]!);
  assert.deepEqual((await all(sim)).map((r) => r.startLsn), lsns.slice(1));
  assert.equal(sim.captureInstance('dbo_items')!.startLsn, lsns[1]);
  assert.deepEqual((await sim.reader().transactionTimes(lsns)).map((t) => t.startLsn), lsns.slice(1));
  assert.throws(() => sim.begin().truncate('dbo', 'items'), (e: { number?: number }) => e.number === 4711);
  const instance = sim.captureInstance('dbo_items')!;
  sim.disableCdc('dbo_items');
  await assert.rejects(sim.reader().changes(instance, ZERO_LSN, lsns[2]!, null, 10), (e: { number?: number; message: string }) => e.number === 208 && /Invalid object name/.test(e.message));
  sim.failNextReaderCall();
  const reader = sim.reader();
  await assert.rejects(reader.captureInstances(), /ECONNRESET/);
  assert.deepEqual(await reader.captureInstances(), []);
});

test('commit times: datetime rounding to 1/300 s, local time with the offset of the moment (DST)', async () => {
  assert.equal(datetimeMicros(1_000_001_000n), 1_000_000_000n);
  assert.equal(datetimeMicros(1_000_002_000n), 1_000_003_000n);
  assert.equal(datetimeMicros(1_000_005_500n), 1_000_007_000n);
  assert.equal(datetimeMicros(1_000_999_000n), 1_001_000_000n);
  // 2026-10-25 01:00 UTC: Paris goes from +02:00 to +01:00
  const before = BigInt(Date.UTC(2026, 9, 25, 0, 30)) * 1000n;
  const after = BigInt(Date.UTC(2026, 9, 25, 1, 30)) * 1000n;
  assert.equal(zonedIso(before, 'Europe/Paris'), '2026-10-25T02:30:00.000+02:00');
  assert.equal(zonedIso(after, 'Europe/Paris'), '2026-10-25T02:30:00.000+01:00');
  const sim = server('Europe/Paris');
  sim.setClock(before);
  const t = sim.begin();
  t.insert('dbo', 'items', { id: 1, name: 'x' });
  const lsn = t.commit();
  sim.runCaptureJob();
  assert.deepEqual(await sim.reader().transactionTimes([lsn]), [{ startLsn: lsn, endTime: '2026-10-25T02:30:00.000+02:00' }]);
});

test('setupFacts: all ready by default, each settable', async () => {
  const sim = server();
  sim.createApplyProgress();
  const facts = await sim.reader().setupFacts();
  assert.equal(facts.cdcEnabled && facts.isDbOwner && facts.bookkeepingReady && facts.progressCaptured && facts.agentRunning === true, true);
  assert.deepEqual(facts.capturedTables, ['dbo.items']);
  sim.setFacts({ cdcEnabled: false, agentRunning: null });
  const later = await sim.reader().setupFacts();
  assert.equal(later.cdcEnabled, false);
  assert.equal(later.agentRunning, null);
});
