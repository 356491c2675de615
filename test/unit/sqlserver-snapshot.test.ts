/**
 * SQL Server sites send online snapshots and are read by `sitesync verify`, proven against the simulator of
 * test/helpers/sqlserver-simulator.ts (no SQL Server runs here; test/integration/sqlserver-live.test.ts runs the
 * same path against a real one when MSSQL_URL is set):
 * - the marker: a row inserted into sitesync.snapshot_markers (CDC-enabled) comes out of the real capture
 *   (SqlServerSource over the simulated change tables) as the marker message at its transaction's commit LSN,
 *   never as a row; the control (sqlserver-snapshot-control.ts) starts, advances, lists and cancels as the
 *   other sites' do, and refuses in one line when no marker could reach capture;
 * - the reader (sqlserver-table-reader.ts): capture's relation and texts for the same row; keys of every type in
 *   compareKeys' order, whatever the chunk size (the simulator evaluates the reader's SQL with a model of SQL
 *   Server's comparisons, in which uniqueidentifier and nvarchar's own orders differ from the neutral one);
 *   readKeys; SNAPSHOT isolation for verify; refusals in one line;
 * - the whole: a property test (fixed seeds) in which SnapshotChunks reads chunks through the real source while
 *   the table keeps changing, before and after each chunk is read, and a target applying the stream ends with
 *   the source's rows; verify between two simulated sites; the connector's registration and `sitesync setup`.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { compareKeys, compareUtf8 } from '../../src/capture/key-order.ts';
import { SnapshotChunks } from '../../src/capture/snapshot-chunks.ts';
import { encodeMarker, SNAPSHOT_MARKER_PREFIX, type SnapshotMarker } from '../../src/capture/snapshot-marker.ts';
import type { SourceHandler } from '../../src/capture/source.ts';
import { rowKey, type RowKey, type TableShape } from '../../src/capture/table-reader.ts';
import { SitesyncError } from '../../src/errors.ts';
import type { Change, RowImage, Transaction } from '../../src/events/transaction.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { compareTable } from '../../src/verify/compare-tables.ts';
import type { CapturedColumn, ProjectedValue } from '../../connectors/sqlserver/cdc-reader.ts';
import { createSqlServerConnector, sqlserverConnector } from '../../connectors/sqlserver/index.ts';
import { canonicalText } from '../../connectors/sqlserver/sqlserver-kinds.ts';
import { compareLsn } from '../../connectors/sqlserver/sqlserver-positions.ts';
import { SqlServerSnapshotControl } from '../../connectors/sqlserver/sqlserver-snapshot-control.ts';
import { SqlServerSource } from '../../connectors/sqlserver/sqlserver-source.ts';
import { SqlServerTableReader } from '../../connectors/sqlserver/sqlserver-table-reader.ts';
import { prepareSimulatedSite, simulatedSqlServerIo } from '../helpers/sqlserver-simulated-io.ts';
import { compareSqlServerGuids, SimulatedSqlServer, type SimColumn } from '../helpers/sqlserver-simulator.ts';
import { seededRandom as random } from '../helpers/seeded-random.ts';

const SITE = 'london';
const URL_ = 'sqlserver://sitesync@simulated:1433/app';
const logger = createLogger('silent');

const pick = <T>(rand: () => number, items: readonly T[]): T => items[Math.floor(rand() * items.length)]!;

function openReader(sim: SimulatedSqlServer, consistent = false): Promise<SqlServerTableReader> {
  return SqlServerTableReader.open({ site: SITE, url: URL_, consistent, runner: async () => sim.runner() });
}

function openControl(sim: SimulatedSqlServer): SqlServerSnapshotControl {
  return new SqlServerSnapshotControl({ site: SITE, url: URL_, runner: sim.runner() });
}

/** What a source hands on: whole transactions (none here is split), and how far the stream has read. */
class Collector implements SourceHandler {
  readonly transactions: Transaction[] = [];
  position: string | null = null;
  transaction(tx: Transaction, part: unknown, checkpoint: string | null): void {
    assert.equal(part, null, 'no transaction here is sent in parts');
    this.transactions.push(tx);
    if (checkpoint !== null) this.position = checkpoint;
  }
  skipped(_position: string, checkpoint: string): void {
    this.position = checkpoint;
  }
  idle(checkpoint: string): void {
    this.position = checkpoint;
  }
  /** The stream has read everything the capture job has written. */
  caughtUp(sim: SimulatedSqlServer): boolean {
    const max = sim.maxTransactionLsn();
    return max === null || (this.position !== null && compareLsn(this.position, max) >= 0);
  }
}

async function until(what: string, done: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

function source(sim: SimulatedSqlServer, tables: readonly string[] | null): SqlServerSource {
  return new SqlServerSource({ site: SITE, reader: () => sim.reader(), tables, maxPartBytes: 1 << 20, pollIntervalMs: 2, progressWriteIntervalMs: 0, logger });
}

async function openSource(sim: SimulatedSqlServer, tables: readonly string[] | null, handler: SourceHandler): Promise<SqlServerSource> {
  const s = source(sim, tables);
  await s.prepare();
  await s.resumePoint();
  await s.open(handler);
  return s;
}

function commit(sim: SimulatedSqlServer, work: (tx: ReturnType<SimulatedSqlServer['begin']>) => void): void {
  const tx = sim.begin();
  try {
    work(tx);
    tx.commit();
  } catch (error) {
    tx.rollback();
    throw error;
  }
  sim.runCaptureJob();
}

const ITEMS: SimColumn[] = [
  { name: 'id', type: 'int', keyOrdinal: 1 },
  { name: 'note', type: 'nvarchar', maxLength: 80 },
  { name: 'amount', type: 'decimal', precision: 12, scale: 2 },
];

function marker(id: string, chunk: number, after: RowKey | null = null, chunkRows = 2, targets: readonly string[] | null = null): SnapshotMarker {
  return { id, table: 'dbo.items', chunk, chunkRows, targets, after, keys: null };
}

const markerMessage = (m: SnapshotMarker): Change => ({ op: 'message', prefix: SNAPSHOT_MARKER_PREFIX, content: Buffer.from(encodeMarker(m)) });

const touchesBookkeeping = (tx: Transaction): boolean => tx.changes.some((c) => 'relation' in c && c.relation.schema.toLowerCase() === 'sitesync');

// ─── the marker in the stream ──────────────────────────────────────────────────────────────────────────────

test('a marker is an insert into sitesync.snapshot_markers: capture hands it on as the marker message at its commit LSN, never as a row', async () => {
  const sim = new SimulatedSqlServer();
  sim.createApplyProgress();
  sim.createTable('dbo', 'items', ITEMS);
  sim.enableCdc('dbo', 'items');
  const control = openControl(sim);
  assert.deepEqual(await control.prepare(), { cdcEnabled: true, captured: true, error: null }, 'the tables made and the markers table captured');
  assert.ok(sim.captureInstance('sitesync_snapshot_markers'), 'capture instance sitesync_snapshot_markers');
  assert.equal(sim.captureInstance('sitesync_snapshots'), null, 'sitesync.snapshots is not captured');

  const collector = new Collector();
  // Only dbo.items is configured: the markers table is read all the same.
  const capture = await openSource(sim, ['dbo.items'], collector);
  try {
    commit(sim, (tx) => tx.insert('dbo', 'items', { id: 1, note: 'before', amount: '1.00' }));
    const m0 = marker('s20260101t000000-aaaaaa', 0);
    await control.start(m0, 10);
    sim.runCaptureJob();
    commit(sim, (tx) => tx.insert('dbo', 'items', { id: 2, note: 'after', amount: '2.00' }));
    await until('three transactions', () => collector.transactions.length >= 3 && collector.caughtUp(sim));
    const [before, at, after] = collector.transactions;
    assert.deepEqual(at!.changes, [markerMessage(m0)], 'the marker transaction carries the marker message only');
    assert.ok(compareLsn(before!.position, at!.position) < 0 && compareLsn(at!.position, after!.position) < 0, 'at its own place in commit order');
    const log = sim.committedLog();
    const markerCommit = log.find((t) => t.changes.some((c) => c.table === 'snapshot_markers'))!;
    assert.equal(at!.position, markerCommit.commitLsn, "at the commit LSN of the transaction that inserted the marker's row");
    assert.deepEqual(markerCommit.changes.map((c) => `${c.table}:${c.operation}`).sort(), ['snapshot_markers:2', 'snapshots:2'], "with the snapshot's row, in one transaction");

    // The next marker: its transaction also deletes the previous marker's row (pruned), which capture drops.
    const m1 = marker(m0.id, 1, ['1']);
    assert.equal(await control.advance(m0, 2, m1), 'advanced');
    sim.runCaptureJob();
    await until('the next marker', () => collector.transactions.length >= 4 && collector.caughtUp(sim));
    assert.deepEqual(collector.transactions[3]!.changes, [markerMessage(m1)]);
    const pruned = sim.committedLog().at(-1)!;
    assert.deepEqual(pruned.changes.filter((c) => c.table === 'snapshot_markers').map((c) => c.operation), [2, 1], 'the change table holds the insert and the delete of the older marker');
    assert.equal(sim.rows('sitesync', 'snapshot_markers').length, 1, 'only the last marker row is left');

    // The last advance writes no marker: sitesync.snapshots has no capture instance, so the stream sees nothing.
    assert.equal(await control.advance(m1, 0, null), 'advanced');
    commit(sim, (tx) => tx.insert('dbo', 'items', { id: 3, note: 'later', amount: '3.00' }));
    await until('the last write', () => collector.transactions.length >= 5 && collector.caughtUp(sim));
    assert.equal(collector.transactions.length, 5);
    for (const tx of collector.transactions) assert.ok(!touchesBookkeeping(tx), `no row change of sitesync's tables reaches the stream (at ${tx.position})`);
    const messages = collector.transactions.flatMap((tx) => tx.changes.filter((c) => c.op === 'message'));
    assert.equal(messages.length, 2, 'one message per marker, none for the deletes');
  } finally {
    await capture.close();
    await control.close();
  }
});

test('a delete or an update of a marker row alone is no change; a relayed transaction carries no marker', async () => {
  const sim = new SimulatedSqlServer();
  sim.createApplyProgress();
  sim.createTable('dbo', 'items', ITEMS);
  sim.enableCdc('dbo', 'items');
  const control = openControl(sim);
  await control.prepare();
  commit(sim, (tx) => tx.insert('sitesync', 'snapshot_markers', { id: '100', content: '{"not":"read yet"}' }));
  const collector = new Collector();
  const capture = await openSource(sim, null, collector);
  try {
    commit(sim, (tx) => tx.update('sitesync', 'snapshot_markers', { id: '100' }, { content: encodeMarker(marker('s20260101t000000-bbbbbb', 0)) }));
    commit(sim, (tx) => tx.delete('sitesync', 'snapshot_markers', { id: '100' }));
    // A transaction the sink applied (its apply_progress row first) with a marker row in it: dropped whole.
    commit(sim, (tx) => {
      tx.insert('sitesync', 'apply_progress', { source: 'paris', source_kind: 'postgres', position: '0000000000000001', commit_time_micros: '1', applied_transactions: '1' });
      tx.insert('sitesync', 'snapshot_markers', { id: '101', content: encodeMarker(marker('s20260101t000000-cccccc', 0)) });
      tx.insert('dbo', 'items', { id: 9, note: 'relayed', amount: '9.00' });
    });
    commit(sim, (tx) => tx.insert('dbo', 'items', { id: 10, note: 'local', amount: '1.00' }));
    await until('caught up', () => collector.caughtUp(sim) && collector.transactions.length >= 1);
    assert.deepEqual(
      collector.transactions.map((tx) => tx.changes.map((c) => c.op)),
      [['insert']],
      'only the local insert: the update and the delete of a marker row are nothing, the relayed transaction is skipped',
    );
  } finally {
    await capture.close();
    await control.close();
  }
});

// ─── the control ───────────────────────────────────────────────────────────────────────────────────────────

test('the control starts, advances, lists and cancels as the other sites do; advancing again after a restart is "already"', async () => {
  const sim = new SimulatedSqlServer();
  sim.createApplyProgress();
  sim.createTable('dbo', 'items', ITEMS);
  const control = openControl(sim);
  const id = 's20260101t000000-111111';
  // Before the first snapshot (sitesync status asks every capturing site): nothing, and nothing made.
  assert.deepEqual(await control.list(), []);
  assert.equal(await control.cancel(id), false);
  assert.equal(sim.describeTable('sitesync', 'snapshots'), null, 'list and cancel make no table');
  assert.equal(sim.captureInstance('sitesync_snapshot_markers'), null, 'nor enable CDC');
  await control.start(marker(id, 0), 100);
  const [first] = await control.list();
  assert.deepEqual({ ...first, startedAt: undefined, updatedAt: undefined }, {
    id,
    table: 'dbo.items',
    targets: null,
    nextChunk: 0,
    rowsSent: 0,
    estimatedRows: 100,
    state: 'running',
    startedAt: undefined,
    updatedAt: undefined,
  });
  assert.ok(first!.startedAt instanceof Date && !Number.isNaN(first!.startedAt.getTime()) && Math.abs(first!.startedAt.getTime() - Number(sim.now / 1000n)) < 1, 'started_at in UTC');
  await assert.rejects(control.start(marker(id, 0), 100), 'the same snapshot cannot start twice');

  assert.equal(await control.advance(marker(id, 0), 2, marker(id, 1, ['2'])), 'advanced');
  assert.equal(await control.advance(marker(id, 0), 2, marker(id, 1, ['2'])), 'already', 'the marker given again after a restart writes no second marker');
  assert.equal(await control.advance(marker(id, 1, ['2']), 1, null), 'advanced');
  assert.equal(await control.advance(marker(id, 1, ['2']), 1, null), 'already');
  assert.deepEqual(
    (await control.list()).map((s) => [s.state, s.nextChunk, s.rowsSent]),
    [['done', 2, 3]],
  );
  assert.equal(sim.rows('sitesync', 'snapshot_markers').length, 1, 'markers pruned as they go');

  sim.advanceClock(1_000_000n);
  const other = 's20260101t000001-222222';
  await control.start(marker(other, 0, null, 5, ['paris']), 7);
  assert.deepEqual((await control.list()).map((s) => [s.id, s.targets]), [[id, null], [other, ['paris']]], 'in the order they started, targets as given');
  assert.equal(await control.cancel(other), true);
  assert.equal(await control.cancel(other), false, 'cancelled already');
  assert.equal(await control.cancel(id), false, 'done: nothing to cancel');
  assert.equal(await control.advance(marker(other, 0), 5, marker(other, 1, ['5'])), 'cancelled');
  assert.equal(await control.advance(marker('s20260101t000002-333333', 0), 5, null), 'cancelled', 'an unknown snapshot');
  assert.equal((await control.list()).find((s) => s.id === other)?.state, 'cancelled');
  await control.close();
});

test('the control refuses to start, in one line with the fix, when no marker could reach capture', async () => {
  const notOwner = new SimulatedSqlServer();
  notOwner.setFacts({ isDbOwner: false });
  const control = openControl(notOwner);
  const state = await control.prepare();
  assert.equal(state.captured, false);
  assert.match(state.error ?? '', /permission was denied/);
  const error = await control.start(marker('s20260101t000000-444444', 0), 1).then(
    () => null,
    (e: unknown) => e,
  );
  assert.ok(error instanceof SitesyncError);
  assert.match(error.message, /^SQL Server of site london: cannot start a snapshot: sitesync\.snapshot_markers has no capture instance sitesync_snapshot_markers .*fix: as a db_owner: USE \[app\]; EXEC sys\.sp_cdc_enable_table @source_schema = N'sitesync', @source_name = N'snapshot_markers'/);
  assert.ok(!error.message.includes('\n'), 'one line');
  assert.deepEqual(notOwner.rows('sitesync', 'snapshots'), [], 'nothing recorded');

  const noCdc = new SimulatedSqlServer();
  noCdc.setFacts({ cdcEnabled: false });
  await assert.rejects(openControl(noCdc).start(marker('s20260101t000000-555555', 0), 1), /change data capture is not enabled on database app, so no marker can reach capture; fix: as a sysadmin: USE \[app\]; EXEC sys\.sp_cdc_enable_db/);
});

// ─── the reader: same rows as capture ──────────────────────────────────────────────────────────────────────

test("the reader describes a table as capture does and reads each value as capture's canonical text", async () => {
  const sim = new SimulatedSqlServer();
  sim.createApplyProgress();
  const columns: SimColumn[] = [
    { name: 'id', type: 'int', keyOrdinal: 1 },
    { name: 'b', type: 'bit' },
    { name: 'ti', type: 'tinyint' },
    { name: 'si', type: 'smallint' },
    { name: 'bi', type: 'bigint' },
    { name: 'dec', type: 'decimal', precision: 12, scale: 2 },
    { name: 'mon', type: 'money' },
    { name: 'r', type: 'real', precision: 24 },
    { name: 'f', type: 'float', precision: 53 },
    { name: 'nv', type: 'nvarchar', maxLength: -1 },
    { name: 'v', type: 'varchar', maxLength: 20 },
    { name: 'c', type: 'char', maxLength: 5 },
    { name: 'vb', type: 'varbinary', maxLength: 16 },
    { name: 'bn', type: 'binary', maxLength: 4 },
    { name: 'u', type: 'uniqueidentifier' },
    { name: 'd', type: 'date' },
    { name: 't', type: 'time', scale: 7 },
    { name: 'dt', type: 'datetime' },
    { name: 'dt2', type: 'datetime2', scale: 7 },
    { name: 'dto', type: 'datetimeoffset', scale: 3 },
    { name: 'sdt', type: 'smalldatetime' },
  ];
  sim.createTable('dbo', 'kinds', columns);
  sim.enableCdc('dbo', 'kinds');
  // A column added after the capture instance was made: capture does not send it, so neither does the reader.
  sim.addColumn('dbo', 'kinds', { name: 'added', type: 'int' });
  const row: Record<string, ProjectedValue> = {
    id: 1,
    b: true,
    ti: 255,
    si: -32768,
    bi: '-9223372036854775808',
    dec: '-0.50',
    mon: '12.3400',
    r: Math.fround(0.1),
    f: 0.1,
    nv: 'héllo "wörld" ✓ \u{1F600}',
    v: 'abc',
    c: 'ab   ',
    vb: Buffer.from('00ff10', 'hex'),
    bn: Buffer.from('01000000', 'hex'),
    u: 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11',
    d: '2024-02-29',
    t: '13:45:10.1234565',
    dt: '2024-02-29T13:45:10.997',
    dt2: '2024-02-29T13:45:10.1234567',
    dto: '2024-02-29T13:45:10.123+01:00',
    sdt: '2024-02-29T13:46:00',
    added: 42,
  };
  const collector = new Collector();
  const capture = await openSource(sim, ['dbo.kinds'], collector);
  const reader = await openReader(sim);
  try {
    commit(sim, (tx) => tx.insert('dbo', 'kinds', row));
    await until('the insert', () => collector.transactions.length >= 1);
    const captured = collector.transactions[0]!.changes[0]!;
    assert.ok(captured.op === 'insert');
    const shape = await reader.describe('dbo', 'KINDS'); // SQL Server's default collation compares names case-insensitively
    assert.deepEqual(shape.relation, captured.relation, 'the relation capture gives (names, kinds, native types, key)');
    assert.deepEqual(shape.keyColumns, [0]);
    const [read] = await reader.readChunk(shape, null, 10);
    assert.deepEqual(read, captured.newRow, 'the texts capture gives');
    assert.equal(read!.values[columns.findIndex((c) => c.name === 'dt2')], '2024-02-29 13:45:10.123457', 'datetime2(7) rounded to the microsecond as capture rounds it');
    assert.equal(await reader.estimateRows(shape), 1);
  } finally {
    await capture.close();
    await reader.close();
  }
});

// ─── the reader: key order ─────────────────────────────────────────────────────────────────────────────────

const hex = (rand: () => number, bytes: number): string => Array.from({ length: bytes }, () => Math.floor(rand() * 256).toString(16).padStart(2, '0')).join('');

/** Characters whose UTF-8 order differs from UTF-16's and from linguistic orders: BMP after the surrogates, supplementary, case, accents, a tab. */
const ALPHABET = ['a', 'b', 'B', 'z', 'é', 'e', '中', '\uE000', '\uFFFD', '\uFFFF', '\u{1F600}', '\u{10FFFF}', '\t', '~', '0', '-'];

/** `YYYY-MM-DDThh:mm:ss.fffffff` (style 126) of 100-ns units since 1970. */
function dateTime7(units: bigint): string {
  const ms = units / 10_000n;
  const iso = new Date(Number(ms)).toISOString().slice(0, 19);
  return `${iso}.${(((units % 10_000_000n) + 10_000_000n) % 10_000_000n).toString().padStart(7, '0')}`;
}

interface KeyCase {
  readonly name: string;
  readonly columns: readonly SimColumn[];
  /** Stored (projected) key values; keys SQL Server's primary key would take as one are made distinct by `same`. */
  readonly gen: (rand: () => number) => ProjectedValue[];
  /** What SQL Server's unique index compares (trailing zeros of binary values are not significant). */
  readonly same?: (key: ProjectedValue[]) => string;
}

const KEY_CASES: readonly KeyCase[] = [
  { name: 'int', columns: [{ name: 'k', type: 'int', keyOrdinal: 1 }], gen: (r) => [Math.floor(r() * 2 ** 32) - 2 ** 31] },
  {
    name: 'bigint',
    columns: [{ name: 'k', type: 'bigint', keyOrdinal: 1 }],
    gen: (r) => [(BigInt(`0x${hex(r, 8)}`) - 2n ** 63n).toString()],
  },
  {
    name: 'nvarchar',
    columns: [{ name: 'k', type: 'nvarchar', maxLength: 400, keyOrdinal: 1 }],
    gen: (r) => [Array.from({ length: Math.floor(r() * 5) }, () => pick(r, ALPHABET)).join('')],
  },
  {
    name: 'varchar',
    columns: [{ name: 'k', type: 'varchar', maxLength: 30, keyOrdinal: 1 }],
    gen: (r) => [Array.from({ length: Math.floor(r() * 5) }, () => pick(r, ['a', 'B', 'b', 'é', 'ÿ', '\t', '~', '0'])).join('')],
  },
  {
    name: 'uniqueidentifier',
    columns: [{ name: 'k', type: 'uniqueidentifier', keyOrdinal: 1 }],
    gen: (r) => {
      // Few distinct bytes, so that keys share prefixes and suffixes in every group.
      const h = Array.from({ length: 16 }, () => pick(r, ['00', '01', 'a0', 'ff'])).join('').toUpperCase();
      return [`${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`];
    },
  },
  {
    name: 'datetime2(7)',
    columns: [{ name: 'k', type: 'datetime2', scale: 7, keyOrdinal: 1 }],
    // Neighbouring microseconds with every 7th digit: the ties (5) round to the even microsecond.
    gen: (r) => [dateTime7(1_709_214_310_123_000n * 10n + BigInt(Math.floor(r() * 60)) * 10n + BigInt(Math.floor(r() * 10)))],
  },
  {
    name: 'datetime2(3)',
    columns: [{ name: 'k', type: 'datetime2', scale: 3, keyOrdinal: 1 }],
    gen: (r) => [dateTime7(BigInt(Math.floor(r() * 2 ** 40)) * 10_000n - 62_000_000_000_000_000n).slice(0, 23)],
  },
  {
    name: 'datetimeoffset(7)',
    columns: [{ name: 'k', type: 'datetimeoffset', scale: 7, keyOrdinal: 1 }],
    gen: (r) => [`${dateTime7(17_092_143_101_230_000n + BigInt(Math.floor(r() * 40)))}${pick(r, ['+00:00', '+01:00', '-05:30'])}`],
  },
  {
    name: 'time(7)',
    columns: [{ name: 'k', type: 'time', scale: 7, keyOrdinal: 1 }],
    gen: (r) => [dateTime7(pick(r, [0n, 863_999_999_900n]) + BigInt(Math.floor(r() * 100))).slice(11)],
  },
  {
    name: 'varbinary',
    columns: [{ name: 'k', type: 'varbinary', maxLength: 8, keyOrdinal: 1 }],
    gen: (r) => [Buffer.from(Array.from({ length: Math.floor(r() * 5) }, () => pick(r, [0x00, 0x01, 0x7f, 0x80, 0xff])))],
    same: ([k]) => (k as Buffer).toString('hex').replace(/(00)+$/, ''),
  },
  {
    name: '(nvarchar, int)',
    columns: [
      { name: 'a', type: 'nvarchar', maxLength: 40, keyOrdinal: 1 },
      { name: 'b', type: 'int', keyOrdinal: 2 },
    ],
    gen: (r) => [Array.from({ length: Math.floor(r() * 3) }, () => pick(r, ALPHABET)).join(''), Math.floor(r() * 5) - 2],
  },
  {
    name: '(uniqueidentifier, datetime2(7), varbinary)',
    columns: [
      { name: 'a', type: 'uniqueidentifier', keyOrdinal: 1 },
      { name: 'b', type: 'datetime2', scale: 7, keyOrdinal: 2 },
      { name: 'c', type: 'varbinary', maxLength: 4, keyOrdinal: 3 },
    ],
    gen: (r) => [
      pick(r, ['00000000-0000-0000-0000-000000000001', '01000000-0000-0000-0000-000000000000', 'FFFFFFFF-0000-0000-0000-000000000000']),
      dateTime7(17_092_143_101_230_000n + BigInt(Math.floor(r() * 12))),
      Buffer.from([pick(r, [0, 1, 255])]),
    ],
  },
  {
    name: '(bit, decimal, date)',
    columns: [
      { name: 'a', type: 'bit', keyOrdinal: 1 },
      { name: 'b', type: 'decimal', precision: 6, scale: 2, keyOrdinal: 2 },
      { name: 'c', type: 'date', keyOrdinal: 3 },
    ],
    gen: (r) => [r() < 0.5, pick(r, ['-1.50', '-0.05', '0.00', '0.10', '12.00']), pick(r, ['0001-01-01', '1969-12-31', '2024-02-29', '9999-12-31'])],
  },
];

test('keys of every type come in compareKeys order, chunk after chunk, whatever the chunk size (fixed seeds)', async () => {
  for (const keyCase of KEY_CASES) {
    for (let seed = 1; seed <= 6; seed++) {
      const rand = random(seed * 7919 + keyCase.name.length);
      const sim = new SimulatedSqlServer();
      sim.createTable('dbo', 'keyed', [...keyCase.columns, { name: 'v', type: 'int' }]);
      const stored = new Map<string, ProjectedValue[]>();
      const size = 5 + Math.floor(rand() * 40);
      for (let i = 0; i < size * 2 && stored.size < size; i++) {
        const key = keyCase.gen(rand);
        const same = keyCase.same?.(key) ?? JSON.stringify(key);
        if (!stored.has(same)) stored.set(same, key);
      }
      const tx = sim.begin();
      let v = 0;
      for (const key of stored.values()) tx.insert('dbo', 'keyed', { ...Object.fromEntries(keyCase.columns.map((c, i) => [c.name, key[i]!])), v: v++ });
      tx.commit();
      const reader = await openReader(sim);
      const what = `${keyCase.name}, seed ${seed}`;
      try {
        const shape = await reader.describe('dbo', 'keyed');
        // The expected order: the canonical keys capture gives, sorted by compareKeys. Keys that round to one
        // text (datetime2(7) values within one microsecond) are one key to sitesync: the reader gives the first.
        const columns: CapturedColumn[] = keyCase.columns.map((c) => ({ name: c.name, type: c.type, maxLength: c.maxLength ?? -1, precision: c.precision ?? 0, scale: c.scale ?? 0, keyOrdinal: c.keyOrdinal ?? 0 }));
        const described = sim.describeTable('dbo', 'keyed')!.columns;
        const texts = [...stored.values()].map((key) => key.map((value, i) => canonicalText({ ...columns[i]!, maxLength: described[i]!.maxLength }, value)!));
        const expected = [...new Map(texts.map((t) => [JSON.stringify(t), t])).values()].sort((a, b) => compareKeys(shape, a, b));

        const got: RowKey[] = [];
        let after: RowKey | null = null;
        for (let reads = 0; reads < 1000; reads++) {
          const limit = 1 + Math.floor(rand() * 6);
          const rows: RowImage[] = await reader.readChunk(shape, after, limit);
          got.push(...rows.map((row) => rowKey(shape, row)));
          if (rows.length < limit) break;
          after = rowKey(shape, rows.at(-1)!);
        }
        assert.deepEqual(got, expected, `${what}: every key once, in compareKeys order`);

        // readKeys: some present keys (one twice), and some absent ones, in any order.
        const present = new Set(expected.map((k) => JSON.stringify(k)));
        const absent = Array.from({ length: 4 }, () => keyCase.gen(rand).map((value, i) => canonicalText({ ...columns[i]!, maxLength: described[i]!.maxLength }, value)!)).filter((k) => !present.has(JSON.stringify(k)));
        const asked = [...expected.filter(() => rand() < 0.5), ...expected.slice(0, 1), ...absent].sort(() => rand() - 0.5);
        const wanted = [...new Set(asked.map((k) => JSON.stringify(k)))].filter((k) => present.has(k)).map((k) => JSON.parse(k) as RowKey);
        assert.deepEqual(
          (await reader.readKeys(shape, asked)).map((row) => rowKey(shape, row)),
          wanted.sort((a, b) => compareKeys(shape, a, b)),
          `${what}: readKeys gives the rows of the keys asked for, in key order`,
        );
      } finally {
        await reader.close();
      }
    }
  }
});

test("SQL Server's own orders differ from the neutral one where the reader says they do: uniqueidentifier, nvarchar (supplementary characters, a tab after a prefix)", async () => {
  // uniqueidentifier: SQL Server compares its last six bytes first (the simulator's model of SqlGuid's order).
  const a = '01000000-0000-0000-0000-000000000000';
  const b = '00000000-0000-0000-0000-000000000001';
  assert.ok(compareUtf8(b, a) < 0, 'by text, the ...0001 one comes first');
  assert.ok(compareSqlServerGuids(a.replace(/-/g, '').toUpperCase(), b.replace(/-/g, '').toUpperCase()) < 0, 'by SQL Server, the 01... one comes first');
  // nvarchar: U+E000 and a supplementary character; 'a' and 'a' + TAB.
  const sim = new SimulatedSqlServer();
  sim.createTable('dbo', 'texts', [{ name: 'k', type: 'nvarchar', maxLength: 40, keyOrdinal: 1 }]);
  sim.createTable('dbo', 'guids', [{ name: 'k', type: 'uniqueidentifier', keyOrdinal: 1 }]);
  const tx = sim.begin();
  for (const k of ['\u{1F600}', '\uE000', 'a\t', 'a']) tx.insert('dbo', 'texts', { k });
  for (const k of [a, b]) tx.insert('dbo', 'guids', { k });
  tx.commit();
  const reader = await openReader(sim);
  try {
    const texts = await reader.describe('dbo', 'texts');
    // UTF-16 code units (a BIN2 collation on nvarchar) would put U+1F600 (D83D DE00) before U+E000, and SQL
    // Server's padding with spaces would put 'a' after 'a' + TAB (0x20 > 0x09): the reader's order is UTF-8's.
    assert.deepEqual((await reader.readChunk(texts, null, 10)).map((r) => r.values[0]), ['a', 'a\t', '\uE000', '\u{1F600}']);
    assert.deepEqual((await reader.readChunk(texts, ['a\t'], 1)).map((r) => r.values[0]), ['\uE000']);
    const guids = await reader.describe('dbo', 'guids');
    assert.deepEqual((await reader.readChunk(guids, null, 10)).map((r) => r.values[0]), [b, a]);
    assert.deepEqual((await reader.readChunk(guids, [b], 10)).map((r) => r.values[0]), [a]);
    const sql = sim.runnerStatements.filter((s) => s.method === 'readChunk').map((s) => s.sql).join('\n');
    assert.match(sql, /ORDER BY CONVERT\(char\(36\), \[k\]\) COLLATE Latin1_General_BIN2/, 'uniqueidentifier sorted by its text');
    assert.match(sql, /ORDER BY CAST\(CAST\(CAST\(\[k\] AS nvarchar\(max\)\) COLLATE Latin1_General_100_BIN2_UTF8 AS varchar\(max\)\) AS varbinary\(max\)\)/, 'nvarchar sorted by its UTF-8 bytes');
  } finally {
    await reader.close();
  }
});

test('readKeys keeps only the keys asked for (a case-insensitive collation finds more), and a key text the column cannot hold is simply absent', async () => {
  const sim = new SimulatedSqlServer();
  sim.createTable('dbo', 'mixed', [
    { name: 'name', type: 'nvarchar', maxLength: 40, keyOrdinal: 1 },
    { name: 'n', type: 'int', keyOrdinal: 2 },
    { name: 'u', type: 'uniqueidentifier' },
  ]);
  const tx = sim.begin();
  tx.insert('dbo', 'mixed', { name: 'Abc', n: 1, u: null });
  tx.insert('dbo', 'mixed', { name: 'x', n: 2, u: null });
  tx.commit();
  const reader = await openReader(sim);
  try {
    const shape = await reader.describe('dbo', 'mixed');
    assert.deepEqual((await reader.readKeys(shape, [['abc', '1'], ['x', '99999999999'], ['x', 'not a number'], ['x', '2'], ['x', '2']])).map((r) => r.values), [['x', '2', null]]);
    assert.deepEqual(await reader.readKeys(shape, []), []);
  } finally {
    await reader.close();
  }
});

test('describe refuses, in one line, what cannot be read by key', async () => {
  const sim = new SimulatedSqlServer();
  sim.createTable('dbo', 'nokey', [{ name: 'v', type: 'int' }]);
  sim.createTable('dbo', 'variant', [{ name: 'k', type: 'sql_variant', keyOrdinal: 1 }]);
  sim.createTable('dbo', 'named', [{ name: 'k', type: 'varchar', maxLength: 20, keyOrdinal: 1 }]);
  const reader = await openReader(sim);
  const oneLine = (pattern: RegExp) => (error: unknown): boolean => error instanceof SitesyncError && pattern.test(error.message) && !error.message.includes('\n');
  try {
    await assert.rejects(reader.describe('dbo', 'missing'), oneLine(/^table dbo\.missing does not exist at site london, or its login may not see it; .*GRANT SELECT ON \[dbo\]\.\[missing\]/));
    await assert.rejects(reader.describe('dbo', 'nokey'), oneLine(/has no primary key, so its rows cannot be read in key order or compared; add one \(ALTER TABLE \[dbo\]\.\[nokey\] ADD CONSTRAINT/));
    await assert.rejects(reader.describe('dbo', 'variant'), oneLine(/primary key column k is of type sql_variant, which has no order shared between databases/));
    sim.setFacts({ utf8Collations: false });
    await assert.rejects(reader.describe('dbo', 'named'), oneLine(/primary key column k is varchar\(20\), and text keys are read in the order of their UTF-8 bytes .*SQL Server 2019 or later/));
  } finally {
    await reader.close();
  }
});

test("a login that may not read the cdc schema (verify's monitoring login) reads the table's own columns", async () => {
  const sim = new SimulatedSqlServer();
  sim.createTable('dbo', 'items', ITEMS);
  sim.enableCdc('dbo', 'items');
  sim.addColumn('dbo', 'items', { name: 'added', type: 'int' });
  const denied = await SqlServerTableReader.open({
    site: SITE,
    url: URL_,
    consistent: true,
    runner: async () => {
      const runner = sim.runner();
      return {
        beginSnapshot: () => runner.beginSnapshot(),
        close: () => runner.close(),
        query: async (method, statement) => {
          if (method === 'captureInstances') throw Object.assign(new Error("The SELECT permission was denied on the object 'change_tables', database 'app', schema 'cdc'."), { number: 229 });
          return runner.query(method, statement);
        },
      };
    },
  });
  const allowed = await openReader(sim, true);
  try {
    assert.deepEqual((await denied.describe('dbo', 'items')).relation.columns.map((c) => c.name), ['id', 'note', 'amount', 'added'], "the table's columns");
    assert.deepEqual((await allowed.describe('dbo', 'items')).relation.columns.map((c) => c.name), ['id', 'note', 'amount'], "the capture instance's columns");
    const tx = sim.begin();
    tx.insert('dbo', 'items', { id: 1, note: 'x', amount: '1.00', added: 7 });
    tx.commit();
    const shape = await denied.describe('dbo', 'items');
    assert.deepEqual((await denied.readChunk(shape, null, 5)).map((r) => r.values), [['1', 'x', '1.00', '7']], 'the refusal did not end its snapshot transaction');
  } finally {
    await denied.close();
    await allowed.close();
  }
});

test('a repair (a marker of keys) through the real capture: the rows of keys present read, keys absent sent as deletes by key', async () => {
  const sim = new SimulatedSqlServer();
  sim.createApplyProgress();
  sim.createTable('dbo', 'items', ITEMS);
  sim.enableCdc('dbo', 'items');
  commit(sim, (tx) => {
    for (let id = 1; id <= 5; id++) tx.insert('dbo', 'items', { id, note: `n${id}`, amount: `${id}.00` });
  });
  const control = openControl(sim);
  const reader = await openReader(sim);
  const capture = source(sim, ['dbo.items']);
  const collector = new Collector();
  let failure: unknown = null;
  const chunks = new SnapshotChunks({ site: SITE, reader, control, maxPartBytes: 1 << 20, pause: () => capture.pause(), resume: () => capture.resume(), onError: (e) => (failure = e), logger });
  await capture.prepare();
  await capture.resumePoint();
  await capture.open(chunks.wrap(collector));
  try {
    const id = 's20260101t000000-abcdef';
    await control.start({ id, table: 'dbo.items', chunk: 0, chunkRows: 2, targets: ['paris'], after: null, keys: [['4'], ['99'], ['2']] }, 3);
    await until('the repair done', async () => {
      if (failure) throw failure;
      sim.runCaptureJob();
      return (await control.list())[0]?.state === 'done' && collector.caughtUp(sim);
    });
    const chunkTxs = collector.transactions.filter((tx) => tx.snapshot?.id === id);
    assert.deepEqual(
      chunkTxs.map((tx) => tx.changes.map((c) => (c.op === 'read' ? ['read', ...c.newRow.values] : c.op === 'delete' ? ['delete', ...c.oldRow.values] : [c.op]))),
      [
        [['read', '4', 'n4', '4.00'], ['delete', '99', null, null]],
        [['read', '2', 'n2', '2.00']],
      ],
    );
    assert.deepEqual(chunkTxs.map((tx) => tx.snapshot?.targets), [['paris'], ['paris']]);
  } finally {
    await capture.close();
    await chunks.close();
  }
});

test('a consistent reader (verify) reads one point in time at SNAPSHOT isolation, and says how to allow it when the database does not', async () => {
  const sim = new SimulatedSqlServer();
  sim.createTable('dbo', 'items', ITEMS);
  const insert = (id: number): void => {
    const tx = sim.begin();
    tx.insert('dbo', 'items', { id, note: `n${id}`, amount: '1.00' });
    tx.commit();
  };
  for (let id = 1; id <= 4; id++) insert(id);
  const consistent = await openReader(sim, true);
  const latest = await openReader(sim, false);
  try {
    const shape = await consistent.describe('dbo', 'items');
    assert.equal((await consistent.readChunk(shape, null, 2)).length, 2); // its point in time: here
    insert(5);
    const tx = sim.begin();
    tx.delete('dbo', 'items', { id: 3 });
    tx.commit();
    assert.deepEqual((await consistent.readChunk(shape, ['2'], 10)).map((r) => r.values[0]), ['3', '4'], 'the consistent reader sees neither the insert nor the delete');
    const other = await latest.describe('dbo', 'items');
    assert.deepEqual((await latest.readChunk(other, ['2'], 10)).map((r) => r.values[0]), ['4', '5'], 'the other reads the latest rows');
  } finally {
    await consistent.close();
    await latest.close();
  }
  sim.setFacts({ allowSnapshotIsolation: false });
  await assert.rejects(
    openReader(sim, true),
    (error: unknown) =>
      error instanceof SitesyncError &&
      /^SQL Server of site london \(.*\): sitesync verify reads each table at one point in time with SNAPSHOT isolation, which database app does not allow; fix, as a db_owner: ALTER DATABASE \[app\] SET ALLOW_SNAPSHOT_ISOLATION ON;$/.test(error.message),
  );
});

// ─── the whole: chunks through the real capture while the table changes ────────────────────────────────────

const ROWS: SimColumn[] = [
  { name: 'name', type: 'nvarchar', maxLength: 40, keyOrdinal: 1 },
  { name: 'n', type: 'int', keyOrdinal: 2 },
  { name: 'note', type: 'nvarchar', maxLength: 80 },
  { name: 'amount', type: 'decimal', precision: 12, scale: 2 },
];
const NAMES = ['a', 'é', 'z', '中', '\uE000', '\u{1F600}', 'ab', ''];

/** What a receiving site does with the stream (the sinks' rules): reads and inserts overwrite, updates and deletes of missing rows do nothing. */
function applyTo(target: Map<string, (string | null)[]>, change: Change): void {
  const key = (values: readonly (string | null)[]): string => JSON.stringify([values[0], values[1]]);
  if (change.op === 'read' || change.op === 'insert') target.set(key(change.newRow.values), [...change.newRow.values]);
  else if (change.op === 'update') {
    assert.equal(change.oldRow, null, 'no key changes here');
    if (target.has(key(change.newRow.values))) target.set(key(change.newRow.values), [...change.newRow.values]);
  } else if (change.op === 'delete') target.delete(key(change.oldRow.values));
  else assert.fail(`a ${change.op} change reached the target`);
}

test('property: chunks read through the real capture while the table keeps changing leave the target with the source rows (fixed seeds)', async () => {
  for (let seed = 1; seed <= 12; seed++) {
    const rand = random(seed);
    const sim = new SimulatedSqlServer();
    sim.createApplyProgress();
    sim.createTable('dbo', 'rows', ROWS);
    sim.enableCdc('dbo', 'rows');
    const capturedColumns = sim.captureInstance('dbo_rows')!.columns;
    const present = new Set<string>();
    let serial = 0;
    /** One committed write at the source: an insert of a free key, an update of a row's other columns, or a delete. */
    const write = (): void => {
      const name = pick(rand, NAMES);
      const n = Math.floor(rand() * 4);
      const k = JSON.stringify([name, n]);
      serial++;
      commit(sim, (tx) => {
        if (!present.has(k)) {
          tx.insert('dbo', 'rows', { name, n, note: `i${serial}`, amount: `${serial}.00` });
          present.add(k);
        } else if (rand() < 0.6) tx.update('dbo', 'rows', { name, n }, { note: `u${serial}`, amount: `${serial}.50` });
        else {
          tx.delete('dbo', 'rows', { name, n });
          present.delete(k);
        }
      });
    };
    for (let i = 0; i < 25; i++) write(); // rows no stream will carry: the snapshot's to send
    const control = openControl(sim);
    await control.prepare();
    // Before each chunk is read (after its marker committed), the source writes a few more times.
    const reader = await SqlServerTableReader.open({
      site: SITE,
      url: URL_,
      consistent: false,
      runner: async () => {
        const runner = sim.runner();
        return {
          beginSnapshot: () => runner.beginSnapshot(),
          close: () => runner.close(),
          query: async (method, statement) => {
            if (method === 'readChunk') for (let i = Math.floor(rand() * 4); i > 0; i--) write();
            return runner.query(method, statement);
          },
        };
      },
    });
    const collector = new Collector();
    const capture = source(sim, ['dbo.rows']);
    let failure: unknown = null;
    const chunks = new SnapshotChunks({
      site: SITE,
      reader,
      control,
      maxPartBytes: 1 << 20,
      pause: () => capture.pause(),
      resume: () => capture.resume(),
      onError: (error) => (failure = error),
      logger,
    });
    await capture.prepare();
    await capture.resumePoint();
    await capture.open(chunks.wrap(collector));
    const id = `s20260101t000000-${seed.toString(16).padStart(6, '0')}`;
    try {
      const shape = await reader.describe('dbo', 'rows');
      await control.start({ id, table: 'dbo.rows', chunk: 0, chunkRows: 1 + Math.floor(rand() * 4), targets: null, after: null, keys: null }, await reader.estimateRows(shape));
      sim.runCaptureJob();
      // The source keeps writing while the stream goes on, until the snapshot is done.
      await until(`seed ${seed}: the snapshot done`, async () => {
        if (failure) throw failure;
        if (rand() < 0.3) write();
        sim.runCaptureJob(); // the Agent's job: the next marker reaches the change table
        return (await control.list()).find((s) => s.id === id)?.state === 'done';
      });
      for (let i = 0; i < 5; i++) write();
      await until(`seed ${seed}: the stream caught up`, () => {
        if (failure) throw failure;
        return collector.caughtUp(sim);
      });
      // A site that starts empty and applies the stream from the snapshot's start holds the source's rows.
      const target = new Map<string, (string | null)[]>();
      let snapshotChunks = 0;
      for (const tx of collector.transactions) {
        assert.ok(!touchesBookkeeping(tx), `seed ${seed}: no row of sitesync's tables in the stream`);
        if (tx.snapshot?.id === id) snapshotChunks++;
        for (const change of tx.changes) applyTo(target, change);
      }
      const expected = sim.rows('dbo', 'rows').map((row) => row.map((value, i) => canonicalText(capturedColumns[i]!, value)));
      const sortRows = (rows: (string | null)[][]): string[] => rows.map((r) => JSON.stringify(r)).sort();
      assert.deepEqual(sortRows([...target.values()]), sortRows(expected), `seed ${seed}: the target holds the source's rows`);
      const status = (await control.list()).find((s) => s.id === id)!;
      assert.equal(snapshotChunks, status.nextChunk, `seed ${seed}: one transaction per chunk`);
      assert.ok(status.rowsSent > 0, `seed ${seed}: rows were sent`);
    } finally {
      await capture.close();
      await chunks.close();
    }
  }
});

// ─── verify, the connector, setup ──────────────────────────────────────────────────────────────────────────

test('verify reads SQL Server sites: two simulated sites compared row by row, the differing keys named', async () => {
  const [madrid, london] = [new SimulatedSqlServer({ database: 'madrid' }), new SimulatedSqlServer({ database: 'london' })];
  for (const sim of [madrid, london]) {
    sim.createTable('dbo', 'items', ITEMS);
    const tx = sim.begin();
    for (let id = 1; id <= 50; id++) tx.insert('dbo', 'items', { id, note: `n${id}`, amount: `${id}.00` });
    tx.commit();
  }
  const tx = london.begin();
  tx.update('dbo', 'items', { id: 7 }, { note: 'changed' });
  tx.delete('dbo', 'items', { id: 30 });
  tx.insert('dbo', 'items', { id: 51, note: 'extra', amount: '0.00' });
  tx.commit();
  const readers = [
    { site: 'madrid', reader: await openReader(madrid, true) },
    { site: 'london', reader: await openReader(london, true) },
  ];
  try {
    const result = await compareTable(readers, 'dbo', 'items', { pageRows: 7 });
    assert.equal(result.error, undefined);
    assert.equal(result.method, 'rows');
    assert.deepEqual(result.rows, { madrid: 50, london: 50 });
    assert.deepEqual(
      result.keys.map((k) => [k.kind, k.key, k.columns ?? null]),
      [
        ['changed', ['7'], ['note']],
        ['missing', ['30'], null],
        ['extra', ['51'], null],
      ],
    );
  } finally {
    for (const { reader } of readers) await reader.close();
  }
});

test('the connector opens table readers and snapshot controls; sitesync setup creates the markers table, captures it, and names it when it cannot', async () => {
  assert.ok(sqlserverConnector.openTableReader && sqlserverConnector.openSnapshotControl, 'the mssql connector can snapshot and be verified');
  const sim = new SimulatedSqlServer();
  prepareSimulatedSite(sim);
  sim.createTable('dbo', 'items', ITEMS);
  sim.enableCdc('dbo', 'items');
  const connector = createSqlServerConnector({ ...simulatedSqlServerIo(sim), tableRunner: async () => sim.runner(), snapshotRunner: () => sim.runner() });
  const withoutRunners = createSqlServerConnector(simulatedSqlServerIo(sim));
  assert.equal(withoutRunners.openTableReader, undefined, 'an io without table reads: no reader');
  const reader = await connector.openTableReader!({ site: SITE, url: URL_, consistent: false });
  const shape = await reader.describe('dbo', 'items');
  assert.equal(shape.relation.table, 'items');
  await reader.close();

  const findings = await connector.checkDatabase!({ capture: URL_, apply: URL_ }, SITE);
  assert.ok(
    findings.some((f) => f.severity === 'done' && /sitesync\.snapshot_markers is there and captured: this site can send snapshots/.test(f.problem)),
    JSON.stringify(findings),
  );
  assert.ok(sim.captureInstance('sitesync_snapshot_markers'), 'setup enabled CDC on the markers table');

  const other = new SimulatedSqlServer();
  prepareSimulatedSite(other);
  other.setFacts({ isDbOwner: false });
  const refused = await createSqlServerConnector({ ...simulatedSqlServerIo(other), snapshotRunner: () => other.runner() }).checkDatabase!({ capture: URL_, apply: URL_ }, SITE);
  const warning = refused.find((f) => f.problem.includes('snapshot_markers'));
  assert.equal(warning?.severity, 'warning', JSON.stringify(refused));
  assert.match(warning!.problem, /^sitesync\.snapshot_markers has no capture instance sitesync_snapshot_markers \(enabling it failed: .*permission was denied.*\), so snapshots of this site's tables cannot start \(capture runs without it\)$/);
  assert.match(warning!.fix, /^as a db_owner: USE \[app\]; EXEC sys\.sp_cdc_enable_table @source_schema = N'sitesync', @source_name = N'snapshot_markers', @role_name = NULL, @capture_instance = N'sitesync_snapshot_markers';/);
});
