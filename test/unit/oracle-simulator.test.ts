/**
 * The simulator's own rules (test/helpers/oracle-simulator.ts): what capture's tests rely on it to do as Oracle's
 * redo and LogMiner do. Its SQL_REDO is also read back with the real parser (sql-redo-parser.ts), so the two
 * agree on the syntax.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { MinedRow } from '../../connectors/oracle/logminer-reader.ts';
import { OPERATION } from '../../connectors/oracle/logminer-reader.ts';
import { parseRedo } from '../../connectors/oracle/sql-redo-parser.ts';
import { redoLiteral, SimLockError, SimulatedOracle, SimUniqueError, zonedSecondIso } from '../helpers/oracle-simulator.ts';

function database(options: ConstructorParameters<typeof SimulatedOracle>[0] = {}): SimulatedOracle {
  const sim = new SimulatedOracle(options);
  sim.createTable('HR', 'EMP', [
    { name: 'ID', type: 'NUMBER', precision: 9, scale: 0, keyOrdinal: 1 },
    { name: 'NAME', type: 'VARCHAR2', length: 40 },
  ]);
  return sim;
}

async function mineAll(sim: SimulatedOracle, owners: string[] | null = null): Promise<MinedRow[]> {
  const reader = sim.reader();
  const session = await reader.mine(await reader.logs(0n), 0n, sim.scn, owners);
  return session.next(100_000);
}

test('START, changes with SQL_REDO and ROWID, COMMIT; SCNs increase; rows() shows committed rows only', async () => {
  const sim = database();
  const t = sim.begin();
  t.insert('HR', 'EMP', { ID: '1', NAME: "it's" });
  assert.deepEqual(sim.rows('HR', 'EMP'), []);
  assert.deepEqual(t.find('HR', 'EMP', { ID: '1' }), ['1', "it's"]);
  t.update('HR', 'EMP', { ID: '1' }, { NAME: 'Bo' });
  t.delete('HR', 'EMP', { ID: '1' });
  t.insert('HR', 'EMP', { ID: '2', NAME: null });
  const scn = t.commit();
  const rows = await mineAll(sim);
  assert.deepEqual(rows.map((r) => r.operationCode), [OPERATION.start, OPERATION.insert, OPERATION.update, OPERATION.delete, OPERATION.insert, OPERATION.commit]);
  assert.ok(rows.every((r) => r.xid === t.xid && r.thread === 1));
  assert.equal(rows[0]!.scn, rows[1]!.scn, 'START shares its SCN with the first change');
  for (let i = 2; i < rows.length; i++) assert.ok(rows[i]!.scn > rows[i - 1]!.scn);
  assert.equal(rows[5]!.commitScn, scn);
  assert.equal(rows[5]!.startScn, rows[0]!.scn);
  assert.equal(rows[1]!.sqlRedo, `insert into "HR"."EMP"("ID","NAME") values ('1','it''s');`);
  assert.match(rows[2]!.sqlRedo!, /^update "HR"."EMP" set "NAME" = 'Bo' where "ID" = '1' and "NAME" = 'it''s'( and ROWID = '[A-Za-z0-9+/]{18}')?;$/);
  assert.match(rows[3]!.sqlRedo!, /^delete from "HR"."EMP" where "ID" = '1' and "NAME" = 'Bo'( and ROWID = '[A-Za-z0-9+/]{18}')?;$/);
  assert.equal(rows[1]!.rowId, rows[2]!.rowId);
  assert.equal(rows[1]!.rowId!.length, 18);
  assert.equal(rows[4]!.sqlRedo, `insert into "HR"."EMP"("ID","NAME") values ('2',NULL);`);
  assert.deepEqual(sim.rows('HR', 'EMP'), [['2', null]]);
  assert.throws(() => sim.begin().insert('HR', 'EMP', { ID: '2', NAME: 'x' }), SimUniqueError);
  const a = sim.begin();
  a.update('HR', 'EMP', { ID: '2' }, { NAME: 'a' });
  assert.throws(() => sim.begin().update('HR', 'EMP', { ID: '2' }, { NAME: 'b' }), SimLockError);
});

test('every type written as a literal the parser reads back to the same Oracle text', () => {
  const sim = new SimulatedOracle();
  const columns = [
    { name: 'N', type: 'NUMBER', precision: 12, scale: 2 },
    { name: 'S', type: 'VARCHAR2', length: 20 },
    { name: 'NS', type: 'NVARCHAR2', length: 20 },
    { name: 'C', type: 'CHAR', length: 4 },
    { name: 'D', type: 'DATE' },
    { name: 'TS', type: 'TIMESTAMP(6)' },
    { name: 'TZ', type: 'TIMESTAMP(6) WITH TIME ZONE' },
    { name: 'LTZ', type: 'TIMESTAMP(6) WITH LOCAL TIME ZONE' },
    { name: 'R', type: 'RAW', length: 8 },
    { name: 'DS', type: 'INTERVAL DAY(2) TO SECOND(6)' },
    { name: 'YM', type: 'INTERVAL YEAR(2) TO MONTH' },
    { name: 'BF', type: 'BINARY_FLOAT' },
    { name: 'BD', type: 'BINARY_DOUBLE' },
  ];
  sim.createTable('HR', 'ALLTYPES', columns);
  const values: Record<string, string> = {
    N: '-.5',
    S: "a'b\\c",
    NS: 'caf\u00e9 \u{1F600}\\',
    C: 'ab  ',
    D: '2026-01-02 03:04:05',
    TS: '2026-01-02 03:04:05.123456000',
    TZ: '2026-01-02 03:04:05.123456000 +05:30',
    LTZ: '2026-01-02 03:04:05.000000000',
    R: '0AFF',
    DS: '+01 02:03:04.500000',
    YM: '+01-02',
    BF: '1.5',
    BD: 'Inf',
  };
  const t = sim.begin();
  t.insert('HR', 'ALLTYPES', { ...values, C: 'ab' });
  const described = sim.describeTable('HR', 'ALLTYPES')!.columns;
  const sql = `insert into "HR"."ALLTYPES"(${described.map((c) => `"${c.name}"`).join(',')}) values (${described.map((c) => redoLiteral(c, values[c.name]!)).join(',')});`;
  assert.match(sql, /TO_DATE\('2026-01-02 03:04:05', 'YYYY-MM-DD HH24:MI:SS'\)/);
  assert.match(sql, /UNISTR\('caf\\00E9 \\D83D\\DE00\\005C'\)/);
  assert.match(sql, /HEXTORAW\('0AFF'\)/);
  const parsed = parseRedo(sql);
  assert.deepEqual(Object.fromEntries(parsed.newValues), values);
  assert.deepEqual(sim.rows('HR', 'ALLTYPES'), [], 'not committed');
  t.commit();
  assert.equal(sim.rows('HR', 'ALLTYPES')[0]![3], 'ab  ', 'CHAR padded');
});

test('savepoints and rollbacks write ROLLBACK=1 undo rows in reverse order with the ROWIDs of the changes undone', async () => {
  const sim = database();
  const t = sim.begin();
  t.insert('HR', 'EMP', { ID: '1', NAME: 'a' });
  t.savepoint('s');
  t.update('HR', 'EMP', { ID: '1' }, { NAME: 'b' });
  t.insert('HR', 'EMP', { ID: '2', NAME: 'c' });
  t.rollbackTo('s');
  assert.deepEqual(t.find('HR', 'EMP', { ID: '1' }), ['1', 'a']);
  assert.equal(t.find('HR', 'EMP', { ID: '2' }), null);
  t.commit();
  const u = sim.begin();
  u.delete('HR', 'EMP', { ID: '1' });
  u.rollback();
  const rows = await mineAll(sim);
  const changes = rows.filter((r) => r.operationCode !== OPERATION.start && r.operationCode !== OPERATION.commit && r.operationCode !== OPERATION.rollback);
  assert.deepEqual(changes.map((r) => [r.operationCode, r.rollback]), [
    [OPERATION.insert, false],
    [OPERATION.update, false],
    [OPERATION.insert, false],
    [OPERATION.delete, true], // undoes the insert of 2
    [OPERATION.update, true], // undoes the update of 1
    [OPERATION.delete, false],
    [OPERATION.insert, true],
  ]);
  assert.equal(changes[3]!.rowId, changes[2]!.rowId);
  assert.equal(changes[4]!.rowId, changes[1]!.rowId);
  assert.equal(rows[rows.length - 1]!.operationCode, OPERATION.rollback);
  assert.deepEqual(sim.rows('HR', 'EMP'), [['1', 'a']]);
  assert.deepEqual(sim.committed().map((c) => c.changes.map((x) => x.op)), [['insert']]);
});

test('CSF pieces, log switches, archiving, deleted logs, and mining only the logs given', async () => {
  const sim = database({ recordsPerLog: 3, csfChunk: 20 });
  for (let i = 0; i < 4; i++) {
    const t = sim.begin();
    t.insert('HR', 'EMP', { ID: String(i), NAME: 'n'.repeat(30) });
    t.commit();
  }
  const logs = sim.logList(1);
  assert.ok(logs.length >= 4);
  for (let i = 1; i < logs.length; i++) assert.equal(logs[i]!.firstScn, logs[i - 1]!.nextScn);
  assert.ok(logs.slice(0, -1).every((l) => !l.archived) && logs[logs.length - 1]!.nextScn === null);
  const rows = await mineAll(sim);
  const insert = rows.filter((r) => r.operationCode === OPERATION.insert);
  assert.ok(insert.filter((r) => r.csf).length >= 4);
  let joined = '';
  for (const r of insert) {
    joined += r.sqlRedo;
    if (!r.csf) break;
  }
  assert.equal(joined, `insert into "HR"."EMP"("ID","NAME") values ('0','${'n'.repeat(30)}');`);
  sim.archive();
  const reader = sim.reader();
  const listed = await reader.logs(0n);
  assert.equal(listed.filter((l) => l.archived).length, logs.length - 1);
  sim.deleteArchived(1, 2);
  await assert.rejects(reader.mine(listed, 0n, sim.scn, null), /ORA-01284/);
  const without = (await reader.logs(0n)).filter((l) => l.sequence !== 2);
  assert.ok(!without.some((l) => l.sequence === 2));
  const fewer = await (await reader.mine(without, 0n, sim.scn, null)).next(10_000);
  assert.ok(fewer.length < rows.length, 'the rows of a log not given are missing');
  // Windows: fromScn < SCN <= toScn only.
  const window = await (await reader.mine(without, rows[3]!.scn, rows[8]!.scn, ['HR'])).next(10_000);
  assert.ok(window.every((r) => r.scn > rows[3]!.scn && r.scn <= rows[8]!.scn));
  assert.equal((await (await reader.mine(without, 0n, sim.scn, ['OTHER'])).next(10_000)).filter((r) => r.operationCode === OPERATION.insert).length, 0);
});

test('RAC: two threads draw from one SCN sequence; commits share an SCN unless a reader saw it; a held thread flushes nothing', async () => {
  const sim = database({ threads: 2 });
  const a = sim.begin(1);
  const b = sim.begin(2);
  a.insert('HR', 'EMP', { ID: '1', NAME: 'a' });
  b.insert('HR', 'EMP', { ID: '2', NAME: 'b' });
  const sa = a.commit();
  const sb = b.commit({ shareScn: true });
  assert.equal(sa, sb);
  const reader = sim.reader();
  await reader.currentScn();
  const c = sim.begin(1);
  c.insert('HR', 'EMP', { ID: '3', NAME: 'c' });
  const sc = c.commit();
  const d = sim.begin(2);
  d.insert('HR', 'EMP', { ID: '4', NAME: 'd' });
  await reader.threads();
  assert.ok(d.commit({ shareScn: true }) > sc, 'a reader saw the SCN: no commit may appear at it any more');
  const rows = await mineAll(sim);
  assert.deepEqual(new Set(rows.map((r) => r.thread)), new Set([1, 2]));
  for (let i = 1; i < rows.length; i++) assert.ok(rows[i]!.scn >= rows[i - 1]!.scn);
  sim.holdFlush(2, true);
  const held = sim.flushed(2);
  const e = sim.begin(2);
  e.insert('HR', 'EMP', { ID: '5', NAME: 'e' });
  const se = e.commit();
  const threads = await reader.threads();
  assert.deepEqual(threads.map((t) => [t.thread, t.flushedScn]), [[1, sim.scn], [2, held]]);
  assert.ok(!(await mineAll(sim)).some((r) => r.scn === se));
  sim.holdFlush(2, false);
  assert.ok((await mineAll(sim)).some((r) => r.scn === se));
  assert.deepEqual(sim.committed().map((x) => x.thread), [1, 2, 1, 2, 2]);
});

test('DDL, LOB rows, reader failures, facts and progress', async () => {
  const sim = database();
  sim.createTable('HR', 'DOCS', [
    { name: 'ID', type: 'NUMBER', keyOrdinal: 1 },
    { name: 'BODY', type: 'CLOB' },
  ]);
  const t = sim.begin();
  t.insert('HR', 'DOCS', { ID: '1', BODY: 'text' });
  t.update('HR', 'DOCS', { ID: '1' }, { BODY: 'more' });
  t.commit();
  sim.addColumn('HR', 'EMP', { name: 'EXTRA', type: 'DATE' });
  const rows = await mineAll(sim);
  assert.deepEqual(rows.map((r) => r.operationCode), [OPERATION.start, OPERATION.insert, OPERATION.selectLobLocator, OPERATION.lobWrite, OPERATION.selectLobLocator, OPERATION.lobWrite, OPERATION.commit, OPERATION.start, OPERATION.ddl, OPERATION.commit]);
  assert.equal(rows[1]!.sqlRedo, `insert into "HR"."DOCS"("ID","BODY") values ('1',EMPTY_CLOB());`);
  assert.match(rows[8]!.sqlRedo!, /^alter table "HR"."EMP" add \("EXTRA" DATE\);$/);
  const reader = sim.reader();
  assert.deepEqual((await reader.columns('HR', 'EMP'))!.map((c) => c.name), ['ID', 'NAME', 'EXTRA']);
  assert.equal(await reader.columns('HR', 'NONE'), null);
  sim.failNextReaderCall();
  await assert.rejects(reader.currentScn(), /NJS-500/);
  assert.ok((await reader.currentScn()) > 0n);
  assert.equal((await reader.setupFacts(null)).progressTable, false);
  sim.createApplyProgress();
  assert.equal((await reader.setupFacts(['HR'])).progressTable, true);
  await reader.writeProgress('paris', { lastPublished: null, checkpoint: 'c', seen: '{}' });
  assert.deepEqual(await reader.readProgress('paris'), { lastPublished: null, checkpoint: 'c', seen: '{}' });
  await reader.close();
  await assert.rejects(reader.currentScn(), /NJS-003/);
  assert.equal(zonedSecondIso(1_790_000_000_123_456n, 'Europe/Paris'), '2026-09-21T16:13:20+02:00');
});
