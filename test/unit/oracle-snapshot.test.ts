/**
 * Online snapshots from an Oracle site and reading it for `sitesync verify`, without a server: the table reader
 * (oracle-table-reader.ts) and the snapshot control (oracle-snapshot-control.ts) over the simulator of
 * test/helpers/oracle-simulator.ts, whose redo the real capture code (OracleSource, mined-stream.ts) mines.
 *
 * - Markers: the control's marker rows (SITESYNC.SNAPSHOT_MARKERS, several for a long marker, cut again into CSF
 *   rows of SQL_REDO) come out of capture as one marker message each, at the position of the transaction that
 *   wrote it, and never as row changes; rolled back ones never; broken ones are reported and dropped.
 * - The property the design rests on (as test/unit/snapshot-chunks.test.ts, here through Oracle capture): a site
 *   that starts empty and applies the stream ends with exactly the source's rows, however writes interleave
 *   with the chunks' reads (fixed seeds).
 * - Key order: the reader lists keys of NUMBER, VARCHAR2 and NVARCHAR2 (non-ASCII and supplementary characters),
 *   DATE, TIMESTAMP, RAW and composite keys exactly in compareKeys' order, chunk after chunk, under the
 *   simulator's model of Oracle's orders; a database character set other than AL32UTF8 is refused.
 * - The real driver's statements, as text (what the live test in test/integration/oracle-live.test.ts runs).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { compareKeys } from '../../src/capture/key-order.ts';
import { SnapshotChunks } from '../../src/capture/snapshot-chunks.ts';
import { MAX_MARKER_KEYS, parseMarker, SNAPSHOT_MARKER_PREFIX, type SnapshotMarker } from '../../src/capture/snapshot-marker.ts';
import type { SourceHandler } from '../../src/capture/source.ts';
import { rowKey, type RowKey, type TableShape } from '../../src/capture/table-reader.ts';
import { SitesyncError } from '../../src/errors.ts';
import type { Change, RelationInfo, Transaction } from '../../src/events/transaction.ts';
import { createLogger, type Logger } from '../../src/observability/logger.ts';
import { createOracleConnector } from '../../connectors/oracle/index.ts';
import type { OracleColumn } from '../../connectors/oracle/logminer-reader.ts';
import { canonicalText, oracleText } from '../../connectors/oracle/oracle-kinds.ts';
import { formatPosition, lastAt, parseCheckpoint } from '../../connectors/oracle/oracle-positions.ts';
import { assertCaptureReady, MARKER_PIECE_CHARS, setupProblems, SNAPSHOT_TABLES_DDL } from '../../connectors/oracle/oracle-setup.ts';
import {
  asciiMarker,
  ensureSnapshotTablesStatements,
  insertMarkerPieceStatement,
  lockSnapshotStatement,
  markerPieces,
  OracleSnapshotControl,
  pruneMarkersStatement,
  readSnapshotRow,
} from '../../connectors/oracle/oracle-snapshot-control.ts';
import { OracleSource } from '../../connectors/oracle/oracle-source.ts';
import {
  driverValueText,
  keyBind,
  OracleTableReader,
  readerSessionStatements,
  selectExpression,
  selectStatement,
  type OracleTableDatabase,
  type RowQuery,
} from '../../connectors/oracle/oracle-table-reader.ts';
import { simulatedOracleIo } from '../helpers/oracle-simulated-io.ts';
import { characterSetBytes, SimLockError, SimulatedOracle, type SimOracleColumn } from '../helpers/oracle-simulator.ts';
import { seededRandom as random } from '../helpers/seeded-random.ts';

const SITE = 'lisbon';
const URL_ = 'oracle://sim:sim@simulated:1521/LISBON';
const silent = createLogger('silent');
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'sitesync-oracle-snapshot-'));
after(() => fs.rmSync(TMP, { recursive: true, force: true }));
let dirs = 0;

/** A canonical timestamp's fraction without trailing zeros (`…:05.120000` → `…:05.12`, `…:05.000000` → `…:05`). */
const trimFraction = (text: string): string => text.replace(/0+$/, '').replace(/\.$/, '');

const tick = (ms = 1): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function warnings(lines: string[]): Logger {
  const logger = createLogger('silent');
  const original = logger.warn.bind(logger);
  (logger as unknown as { warn: (...args: unknown[]) => void }).warn = (...args: unknown[]) => {
    lines.push(args.map((a) => (typeof a === 'string' ? a : '')).join(' '));
    (original as (...a: unknown[]) => void)(...args);
  };
  return logger;
}

/** An OracleSource over the simulator, handing on to `handler`; drain() waits until it has read what is readable now. */
class Capture {
  source!: OracleSource;
  idleAt: string | null = null;
  broken: unknown = null;

  constructor(
    readonly sim: SimulatedOracle,
    private readonly tables: string[] | null,
    private readonly logger: Logger = silent,
  ) {}

  async start(handler: SourceHandler): Promise<void> {
    this.idleAt = null;
    this.source = new OracleSource({
      site: SITE,
      reader: () => this.sim.reader(),
      tables: this.tables,
      maxPartBytes: 1 << 20,
      logger: this.logger,
      pollIntervalMs: 1,
      progressWriteIntervalMs: 0,
      spillDirectory: path.join(TMP, String(dirs++)),
    });
    await this.source.prepare();
    await this.source.resumePoint();
    await this.source.open({
      transaction: (tx, part, checkpoint) => handler.transaction(tx, part, checkpoint),
      skipped: (position, checkpoint, reason, seen) => handler.skipped(position, checkpoint, reason, seen),
      idle: (checkpoint, seen) => {
        this.idleAt = checkpoint;
        handler.idle(checkpoint, seen);
      },
    });
    this.source.ended!.catch((error: unknown) => (this.broken = error));
  }

  /** Until the stream said idle at or past what is readable now. */
  async drain(timeoutMs = 15_000): Promise<void> {
    const target = lastAt(this.sim.readableScn);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.broken) throw this.broken;
      if (this.idleAt !== null && parseCheckpoint(this.idleAt).after >= target) return;
      if (Date.now() > deadline) throw new Error(`capture did not reach SCN ${this.sim.readableScn} (idle at ${this.idleAt})`);
      await this.source.heartbeat();
      await tick();
    }
  }

  async stop(): Promise<void> {
    await this.source?.close();
  }
}

function collecting(): { handler: SourceHandler; transactions: Transaction[] } {
  const transactions: Transaction[] = [];
  return {
    transactions,
    handler: {
      transaction: (tx, part) => {
        assert.equal(part, null, 'small transactions here');
        transactions.push(tx);
      },
      skipped: () => undefined,
      idle: () => undefined,
    },
  };
}

const ITEMS: SimOracleColumn[] = [
  { name: 'ID', type: 'NUMBER', precision: 9, scale: 0, keyOrdinal: 1 },
  { name: 'NAME', type: 'VARCHAR2', length: 100 },
];

function marker(partial: Partial<SnapshotMarker> = {}): SnapshotMarker {
  return { id: 's20260101t000000-abcdef', table: 'HR.ITEMS', chunk: 0, chunkRows: 10, targets: null, after: null, keys: null, ...partial };
}

function messages(tx: Transaction): SnapshotMarker[] {
  return tx.changes.filter((c): c is Extract<Change, { op: 'message' }> => c.op === 'message' && c.prefix === SNAPSHOT_MARKER_PREFIX).map((c) => parseMarker(c.content.toString('utf8')));
}

/** The position of the simulator's committed transaction that inserted marker rows of (id, chunk). */
function markerPosition(sim: SimulatedOracle, id: string, chunk: number): string {
  const tx = sim.committed().find((c) => c.changes.some((ch) => ch.table === 'SNAPSHOT_MARKERS' && ch.op === 'insert' && ch.after?.SNAPSHOT_ID === id && ch.after?.CHUNK === String(chunk)));
  assert.ok(tx, `a committed transaction wrote marker ${id} chunk ${chunk}`);
  return formatPosition({ scn: tx.commitScn, thread: tx.thread, xid: tx.xid });
}

// ─── markers through capture ───────────────────────────────────────────────────────────────────────────────

describe('Oracle snapshot markers through LogMiner capture', () => {
  test('a marker (several rows, cut into CSF rows) is one marker message at its transaction position, never a row change; advance is idempotent; rows are pruned', async () => {
    const sim = new SimulatedOracle({ csfChunk: 700 });
    sim.createApplyProgress();
    sim.createTable('HR', 'ITEMS', ITEMS);
    const control = new OracleSnapshotControl({ site: SITE, url: URL_ }, sim.snapshotStore());
    const capture = new Capture(sim, ['HR.ITEMS']);
    const { handler, transactions } = collecting();
    await capture.start(handler);
    try {
      const app = (id: number): void => {
        const t = sim.begin();
        t.insert('HR', 'ITEMS', { ID: String(id), NAME: `n${id}` });
        t.commit();
      };
      app(1);
      // A repair of many keys, with non-ASCII and supplementary characters: a marker of many pieces.
      const keys = Array.from({ length: 1500 }, (_, i): RowKey => [String(i)]);
      const m0 = marker({ keys: [...keys, ['ünïcødé \u{1F600} \uE000']] as RowKey[], chunkRows: 1000 });
      assert.ok(markerPieces(m0).length > 3, `a long marker goes in several rows (${markerPieces(m0).length})`);
      await control.start(m0, 1501);
      app(2);
      const m1 = { ...m0, chunk: 1, keys: m0.keys!.slice(1000) };
      assert.equal(await control.advance(m0, 999, m1), 'advanced');
      assert.equal(await control.advance(m0, 999, m1), 'already', 'the same chunk again (a restart) writes no second marker');
      // A control transaction that fails after writing a marker row: rolled back, never in the stream.
      await assert.rejects(
        sim.snapshotStore().transaction(async (tx) => {
          await tx.insertMarkerPiece({ snapshotId: m0.id, chunk: 7, piece: 0, pieces: 1, content: asciiMarker({ ...m0, chunk: 7 }) });
          throw new Error('the session died');
        }),
        /the session died/,
      );
      app(3);
      assert.equal(await control.advance(m1, 500, null), 'advanced');
      assert.equal(await control.advance(m1, 500, null), 'already');
      assert.equal(await control.cancel(m0.id), false, 'a done snapshot is not cancelled');
      app(4);
      await capture.drain();
      assert.ok(capture.source.stats()!.csfJoined > 0, 'marker rows came as CSF pieces');
    } finally {
      await capture.stop();
    }
    const shown = transactions.map((t) => (messages(t).length > 0 ? `marker ${messages(t)[0]!.chunk}` : t.changes.map((c) => (c.op === 'insert' ? `insert ${c.newRow.values[0]}` : c.op)).join(',')));
    assert.deepEqual(shown, ['insert 1', 'marker 0', 'insert 2', 'marker 1', 'insert 3', 'insert 4']);
    for (let i = 1; i < transactions.length; i++) assert.ok(transactions[i]!.position > transactions[i - 1]!.position, 'positions increase');
    const markerTxs = transactions.filter((t) => messages(t).length > 0);
    for (const [chunk, tx] of markerTxs.entries()) {
      assert.equal(tx.changes.length, 1, 'the marker alone in its transaction');
      assert.equal(tx.position, markerPosition(sim, 's20260101t000000-abcdef', chunk), 'at the position of the transaction that wrote it');
    }
    assert.deepEqual(messages(markerTxs[0]!)[0], marker({ keys: [...Array.from({ length: 1500 }, (_, i) => [String(i)]), ['ünïcødé \u{1F600} \uE000']], chunkRows: 1000 }));
    assert.ok(!transactions.some((t) => t.changes.some((c) => 'relation' in c && c.relation.schema === 'SITESYNC')), 'no SITESYNC row change ever');
    const [status] = await control.list();
    assert.deepEqual([status!.state, status!.nextChunk, status!.rowsSent, status!.estimatedRows], ['done', 2, 1499, 1501]);
    assert.deepEqual(sim.rows('SITESYNC', 'SNAPSHOT_MARKERS'), [], 'marker rows pruned once read');
  });

  test('a marker rolled back to a savepoint is not sent; one whose pieces do not add up is reported and dropped', async () => {
    const sim = new SimulatedOracle();
    sim.createApplyProgress();
    sim.createTable('HR', 'ITEMS', ITEMS);
    sim.createSnapshotTables();
    const lines: string[] = [];
    const capture = new Capture(sim, null, warnings(lines));
    const { handler, transactions } = collecting();
    const skipped: string[] = [];
    await capture.start({ ...handler, skipped: (_position, _checkpoint, reason) => skipped.push(reason) });
    const piece = (m: SnapshotMarker, p: number, of: number): Record<string, string> => ({ SNAPSHOT_ID: m.id, CHUNK: String(m.chunk), PIECE: String(p), PIECES: String(of), CONTENT: asciiMarker(m) });
    try {
      const t = sim.begin();
      t.savepoint('a');
      t.insert('SITESYNC', 'SNAPSHOT_MARKERS', piece(marker({ chunk: 3 }), 0, 1));
      t.rollbackTo('a');
      t.insert('SITESYNC', 'SNAPSHOT_MARKERS', piece(marker({ chunk: 4 }), 0, 1));
      t.commit();
      const broken = sim.begin();
      broken.insert('SITESYNC', 'SNAPSHOT_MARKERS', piece(marker({ chunk: 5 }), 0, 2));
      broken.commit();
      const after = sim.begin();
      after.insert('HR', 'ITEMS', { ID: '9', NAME: null });
      after.commit();
      await capture.drain();
    } finally {
      await capture.stop();
    }
    assert.deepEqual(
      transactions.map((t) => t.changes.map((c) => (c.op === 'message' ? `marker ${parseMarker(c.content.toString('utf8')).chunk}` : c.op))),
      [['marker 4'], ['insert']],
    );
    assert.deepEqual(skipped, ['empty'], 'the broken marker: its transaction is left with nothing to send');
    assert.ok(lines.some((l) => /snapshot marker .* chunk 5 .* dropped: 1 of its 2 pieces/.test(l)), lines.join('\n'));
  });

  test('after a crash before the marker was confirmed, it comes again at the same position', async () => {
    const sim = new SimulatedOracle();
    sim.createApplyProgress();
    sim.createTable('HR', 'ITEMS', ITEMS);
    const control = new OracleSnapshotControl({ site: SITE, url: URL_ }, sim.snapshotStore());
    const capture = new Capture(sim, ['HR.ITEMS']);
    const first = collecting();
    let confirmAt: string | null = null;
    await capture.start({
      ...first.handler,
      transaction: (tx, part, checkpoint) => {
        first.handler.transaction(tx, part, checkpoint);
        if (tx.changes.some((c) => c.op === 'insert')) confirmAt = checkpoint;
      },
    });
    const t = sim.begin();
    t.insert('HR', 'ITEMS', { ID: '1', NAME: 'x' });
    t.commit();
    await control.start(marker(), 1);
    await capture.drain();
    assert.ok(confirmAt);
    await capture.source.confirm(confirmAt, { lastPublished: first.transactions[0]!.position, seen: {} });
    await capture.stop();
    const second = collecting();
    await capture.start(second.handler);
    try {
      await capture.drain();
    } finally {
      await capture.stop();
    }
    assert.equal(second.transactions.length, 1);
    assert.equal(second.transactions[0]!.position, first.transactions[1]!.position);
    assert.deepEqual(messages(second.transactions[0]!), [marker()]);
  });
});

// ─── the property ────────────────────────────────────────────────────────────────────────────────────────────

const ACCOUNTS: SimOracleColumn[] = [
  { name: 'ID', type: 'NUMBER', precision: 9, scale: 0, keyOrdinal: 1 },
  { name: 'CODE', type: 'VARCHAR2', length: 12, keyOrdinal: 2 },
  { name: 'NOTE', type: 'NVARCHAR2', length: 40 },
  { name: 'AMOUNT', type: 'NUMBER', precision: 12, scale: 2 },
  { name: 'AT', type: 'TIMESTAMP(6)', scale: 6 },
];
const CODES = ['a', 'B', 'é', '\u{1F600}', 'z\uE000'];

/** The canonical rows of a table by their key's JSON. */
function canonicalRows(sim: SimulatedOracle, owner: string, table: string): Map<string, (string | null)[]> {
  const columns = sim.describeTable(owner, table)!.columns;
  const keys = columns.flatMap((c, i) => (c.keyOrdinal > 0 ? [i] : []));
  const out = new Map<string, (string | null)[]>();
  for (const row of sim.rows(owner, table)) {
    const values = row.map((v, i) => canonicalText(columns[i]!, v));
    out.set(JSON.stringify(keys.map((i) => values[i])), values);
  }
  return out;
}

/** A receiving site, as sinks apply: reads and inserts overwrite, updates and deletes of missing rows do nothing. */
function applyTo(target: Map<string, (string | null)[]>, change: Change, relations: RelationInfo[]): void {
  if (change.op === 'message') assert.fail('a marker message reached the receiving site');
  if (change.op === 'truncate') assert.fail('no truncate here');
  relations.push(change.relation);
  const keyOf = (values: readonly (string | null)[]): string => JSON.stringify(change.relation.columns.flatMap((c, i) => (c.key ? [values[i]] : [])));
  if (change.op === 'read' || change.op === 'insert') target.set(keyOf(change.newRow.values), [...change.newRow.values]);
  else if (change.op === 'update') {
    assert.equal(change.oldRow, null, 'no key changes here');
    const key = keyOf(change.newRow.values);
    if (target.has(key)) target.set(key, [...change.newRow.values]);
  } else target.delete(keyOf(change.oldRow.values));
}

test('property: a site applying the Oracle stream from the start ends with the source rows, however writes interleave with the chunk reads (fixed seeds)', async () => {
  for (let seed = 1; seed <= 24; seed++) {
    const rand = random(seed);
    const sim = new SimulatedOracle({ recordsPerLog: 40, seed });
    sim.createApplyProgress();
    sim.createTable('APP', 'ACCOUNTS', ACCOUNTS);
    const columns = sim.describeTable('APP', 'ACCOUNTS')!.columns;
    const text = (name: string, canonical: string): string => oracleText(columns.find((c) => c.name === name)!, canonical);
    let n = 0;
    /** One application transaction of 1 to 3 writes; now and then rolled back. */
    const write = (): void => {
      const t = sim.begin();
      try {
        for (let i = 1 + Math.floor(rand() * 3); i > 0; i--) {
          n++;
          const key = { ID: String(Math.floor(rand() * 10)), CODE: CODES[Math.floor(rand() * CODES.length)]! };
          const values = { NOTE: rand() < 0.2 ? null : `nötë ${n} \u{1F680}`, AMOUNT: text('AMOUNT', `${n}.${n % 100}`.replace(/\.(\d)$/, '.$10')), AT: text('AT', trimFraction(`2026-01-01 00:00:${String(n % 60).padStart(2, '0')}.${String(n).padStart(6, '0').slice(-6)}`)) };
          if (t.find('APP', 'ACCOUNTS', key) === null) t.insert('APP', 'ACCOUNTS', { ...key, ...values });
          else if (rand() < 0.7) t.update('APP', 'ACCOUNTS', key, values);
          else t.delete('APP', 'ACCOUNTS', key);
        }
        if (rand() < 0.1) t.rollback();
        else t.commit({ shareScn: rand() < 0.2 });
      } catch (error) {
        t.rollback();
        if (!(error instanceof SimLockError)) throw error;
      }
      if (rand() < 0.1) {
        sim.switchLog();
        sim.archive();
      }
    };
    // Rows the site held before capture started: only the snapshot can send them.
    for (let i = 0; i < 30; i++) write();
    sim.analyze('APP', 'ACCOUNTS');

    const target = new Map<string, (string | null)[]>();
    const relations: RelationInfo[] = [];
    const reads: RelationInfo[] = [];
    // The reader's queries run at random moments after their marker: the source keeps writing meanwhile.
    const base = sim.tableDatabase();
    const database: OracleTableDatabase = {
      characterSets: () => base.characterSets(),
      columns: (o, t) => base.columns(o, t),
      numRows: (o, t) => base.numRows(o, t),
      close: () => base.close(),
      select: async (query: RowQuery) => {
        for (let i = Math.floor(rand() * 4); i > 0; i--) write();
        await tick(0);
        return base.select(query);
      },
    };
    const reader = new OracleTableReader({ site: SITE, url: URL_, consistent: false }, database);
    const control = new OracleSnapshotControl({ site: SITE, url: URL_ }, sim.snapshotStore());
    const capture = new Capture(sim, ['APP.ACCOUNTS']);
    let failure: unknown = null;
    const chunks = new SnapshotChunks({
      site: SITE,
      reader,
      control,
      maxPartBytes: 1 << 20,
      pause: () => capture.source.pause(),
      resume: () => capture.source.resume(),
      onError: (error) => (failure = error),
      logger: silent,
    });
    const handler: SourceHandler = {
      transaction: (tx) => {
        for (const change of tx.changes) {
          applyTo(target, change, relations);
          if (change.op === 'read') reads.push(change.relation);
        }
      },
      skipped: () => undefined,
      idle: () => undefined,
    };
    await capture.start(chunks.wrap(handler));
    try {
      for (let i = Math.floor(rand() * 5); i > 0; i--) write();
      const id = `s20260101t000000-${seed.toString(16).padStart(6, '0')}`;
      const shape = await reader.describe('app', 'accounts');
      await control.start({ id, table: 'APP.ACCOUNTS', chunk: 0, chunkRows: 1 + Math.floor(rand() * 6), targets: null, after: null, keys: null }, await reader.estimateRows(shape));
      const deadline = Date.now() + 20_000;
      for (;;) {
        if (failure) throw failure;
        const status = (await control.list()).find((s) => s.id === id)!;
        if (status.state === 'done') break;
        if (Date.now() > deadline) throw new Error(`seed ${seed}: the snapshot did not finish (${JSON.stringify(status)})`);
        if (rand() < 0.3) write();
        await capture.source.heartbeat();
        await tick();
      }
      for (let i = Math.floor(rand() * 4); i > 0; i--) write();
      await capture.drain();
      if (failure) throw failure;
    } finally {
      await capture.stop();
      await chunks.close();
    }
    const expected = canonicalRows(sim, 'APP', 'ACCOUNTS');
    const sorted = (m: Map<string, (string | null)[]>): [string, (string | null)[]][] => [...m].sort(([a], [b]) => (a < b ? -1 : 1));
    assert.deepEqual(sorted(target), sorted(expected), `seed ${seed}: the receiving site holds the source's rows`);
    assert.ok(reads.length > 0, `seed ${seed}: rows came by the snapshot`);
    // The rows read are described as capture describes the table's rows.
    for (const r of relations) assert.deepEqual(r, relations[0], `seed ${seed}: one relation for reads and changes`);
    assert.ok(!relations.some((r) => r.schema === 'SITESYNC'));
  }
});

// ─── key order ───────────────────────────────────────────────────────────────────────────────────────────────

/** Random canonical key values of a column type. */
const GENERATORS: Record<string, { column: Omit<SimOracleColumn, 'name' | 'keyOrdinal'>; value: (rand: () => number) => string }> = {
  number: {
    column: { type: 'NUMBER', precision: 12, scale: 3 },
    value: (rand) => {
      const whole = Math.floor(rand() * 10 ** (1 + Math.floor(rand() * 8)));
      const sign = rand() < 0.4 && whole !== 0 ? '-' : '';
      return `${sign}${whole}.${String(Math.floor(rand() * 1000)).padStart(3, '0')}`;
    },
  },
  bigint: {
    column: { type: 'NUMBER', precision: 38, scale: 0 },
    value: (rand) => `${rand() < 0.5 ? '-' : ''}${Math.floor(rand() * 9) + 1}${Array.from({ length: Math.floor(rand() * 36) }, () => Math.floor(rand() * 10)).join('')}`,
  },
  varchar2: { column: { type: 'VARCHAR2', length: 40 }, value: (rand) => randomText(rand) },
  nvarchar2: { column: { type: 'NVARCHAR2', length: 40 }, value: (rand) => randomText(rand) },
  date: {
    column: { type: 'DATE' },
    value: (rand) => new Date(Date.UTC(1 + Math.floor(rand() * 9998), 0, 1) + Math.floor(rand() * 365 * 86_400) * 1000).toISOString().slice(0, 19).replace('T', ' ').replace(/^\+?0*(\d{4})/, '$1'),
  },
  timestamp: {
    column: { type: 'TIMESTAMP(6)', scale: 6 },
    value: (rand) => trimFraction(`${1970 + Math.floor(rand() * 100)}-0${1 + Math.floor(rand() * 9)}-1${Math.floor(rand() * 9)} 1${Math.floor(rand() * 10)}:${10 + Math.floor(rand() * 50)}:00.${String(Math.floor(rand() * 1e6)).padStart(6, '0')}`),
  },
  raw: {
    column: { type: 'RAW', length: 16 },
    value: (rand) => `\\x${Array.from({ length: 1 + Math.floor(rand() * 6) }, () => Math.floor(rand() * 256).toString(16).padStart(2, '0')).join('')}`,
  },
};

/** Text from an alphabet that trips binary orders: ASCII, Latin-1, BMP below and above the surrogates, supplementary. */
function randomText(rand: () => number): string {
  const alphabet = ['a', 'b', 'Z', '~', ' ', "'", 'é', 'ÿ', 'Ā', '€', '中', '\uD7FF', '\uE000', '\uFB01', '\uFFFD', '\uFFFF', '\u{10000}', '\u{1F600}', '\u{1D11E}', '\u{10FFFF}'];
  return Array.from({ length: 1 + Math.floor(rand() * 4) }, () => alphabet[Math.floor(rand() * alphabet.length)]!).join('');
}

/** A table keyed by `kinds` (one column each), filled with distinct random keys; the reader's shape of it. */
async function keyedTable(sim: SimulatedOracle, name: string, kinds: readonly string[], rows: number, rand: () => number): Promise<{ reader: OracleTableReader; shape: TableShape; keys: RowKey[] }> {
  sim.createTable('KO', name, [...kinds.map((k, i) => ({ name: `K${i}`, ...GENERATORS[k]!.column, keyOrdinal: i + 1 })), { name: 'V', type: 'VARCHAR2', length: 20 }]);
  const columns = sim.describeTable('KO', name)!.columns;
  const keys = new Map<string, RowKey>();
  while (keys.size < rows) {
    const key = kinds.map((k) => canonicalText(columns[kinds.indexOf(k)]!, oracleText(columns[kinds.indexOf(k)]!, GENERATORS[k]!.value(rand)))!);
    keys.set(JSON.stringify(key), key);
  }
  const t = sim.begin();
  for (const key of keys.values()) t.insert('KO', name, { ...Object.fromEntries(key.map((v, i) => [`K${i}`, oracleText(columns[i]!, v)])), V: 'v' });
  t.commit();
  const reader = new OracleTableReader({ site: SITE, url: URL_, consistent: false }, sim.tableDatabase());
  return { reader, shape: await reader.describe('KO', name), keys: [...keys.values()] };
}

/** Every key, read in chunks of `chunk` rows. */
async function readAllKeys(reader: OracleTableReader, shape: TableShape, chunk: number): Promise<RowKey[]> {
  const out: RowKey[] = [];
  let after: RowKey | null = null;
  for (;;) {
    const rows = await reader.readChunk(shape, after, chunk);
    out.push(...rows.map((r) => rowKey(shape, r)));
    if (rows.length < chunk) return out;
    after = rowKey(shape, rows[rows.length - 1]!);
  }
}

describe('Oracle table reader: key order and rows', () => {
  for (const kinds of [['number'], ['bigint'], ['varchar2'], ['nvarchar2'], ['date'], ['timestamp'], ['raw'], ['varchar2', 'number'], ['raw', 'nvarchar2', 'date']]) {
    test(`keys of ${kinds.join(', ')} come in compareKeys' order, chunk after chunk`, async () => {
      const rand = random(kinds.join().length * 7919);
      const sim = new SimulatedOracle();
      const { reader, shape, keys } = await keyedTable(sim, `T_${kinds.join('_').toUpperCase()}`, kinds, 120, rand);
      const read = await readAllKeys(reader, shape, 7);
      const expected = [...keys].sort((a, b) => compareKeys(shape, a, b));
      assert.deepEqual(read, expected);
      for (let i = 1; i < read.length; i++) assert.ok(compareKeys(shape, read[i - 1]!, read[i]!) < 0);
    });
  }

  test('NVARCHAR2 keys are sorted as TO_CHAR (UTF-8 bytes), not by their own UTF-16 bytes', async () => {
    const sim = new SimulatedOracle();
    sim.createTable('KO', 'N', [
      { name: 'K', type: 'NVARCHAR2', length: 10, keyOrdinal: 1 },
      { name: 'V', type: 'VARCHAR2', length: 10 },
    ]);
    const t = sim.begin();
    for (const k of ['\u{1F600}', '\uE000', 'a']) t.insert('KO', 'N', { K: k, V: null });
    t.commit();
    const reader = new OracleTableReader({ site: SITE, url: URL_, consistent: false }, sim.tableDatabase());
    const shape = await reader.describe('KO', 'N');
    assert.deepEqual(
      (await reader.readChunk(shape, null, 10)).map((r) => r.values[0]),
      ['a', '\uE000', '\u{1F600}'],
    );
    const column = sim.describeTable('KO', 'N')!.columns[0]!;
    const naive = await sim.tableDatabase().select({ owner: 'KO', table: 'N', columns: [column], order: [{ column, by: 'column' }], after: null, keys: null, limit: null });
    assert.deepEqual(naive.map((r) => r[0]), ['a', '\u{1F600}', '\uE000'], 'the column itself would sort in UTF-16 order');
  });

  test('a character key in a database whose character set is not AL32UTF8 is refused in one line; other keys are read', async () => {
    for (const characterSet of ['UTF8', 'WE8MSWIN1252']) {
      const sim = new SimulatedOracle({ characterSet });
      sim.createTable('KO', 'S', [{ name: 'K', type: 'VARCHAR2', length: 10, keyOrdinal: 1 }]);
      sim.createTable('KO', 'N', [
        { name: 'K', type: 'NUMBER', precision: 9, scale: 0, keyOrdinal: 1 },
        { name: 'V', type: 'VARCHAR2', length: 10 },
      ]);
      const reader = new OracleTableReader({ site: SITE, url: URL_, consistent: false }, sim.tableDatabase());
      await assert.rejects(reader.describe('KO', 'S'), (error: Error) => {
        assert.ok(error instanceof SitesyncError);
        assert.equal(error.code, 'SITESYNC_ERR_CONFIG');
        assert.ok(!error.message.includes('\n'));
        assert.match(error.message, new RegExp(`primary key column K is VARCHAR2\\(10\\) and the database character set is ${characterSet}, not AL32UTF8`));
        return true;
      });
      await reader.describe('KO', 'N');
    }
    // Why: in CESU-8 (Oracle's UTF8) a supplementary character sorts below U+E000, unlike in UTF-8.
    assert.ok(Buffer.compare(characterSetBytes('\u{1F600}', 'UTF8'), characterSetBytes('\uE000', 'UTF8')) < 0);
    assert.ok(Buffer.compare(characterSetBytes('\u{1F600}', 'AL32UTF8'), characterSetBytes('\uE000', 'AL32UTF8')) > 0);
  });

  test('readKeys: the rows of the keys asked for, in key order; missing and impossible keys left out; CHAR keys with their padding', async () => {
    const sim = new SimulatedOracle();
    sim.createTable('KO', 'C', [
      { name: 'K', type: 'CHAR', length: 4, keyOrdinal: 1 },
      { name: 'N', type: 'NUMBER', precision: 6, scale: 2, keyOrdinal: 2 },
      { name: 'V', type: 'NVARCHAR2', length: 10 },
      { name: 'DOC', type: 'CLOB' },
    ]);
    const t = sim.begin();
    t.insert('KO', 'C', { K: 'ab', N: '1.5', V: 'x', DOC: 'long text' });
    t.insert('KO', 'C', { K: 'é', N: '-2', V: null, DOC: null });
    t.insert('KO', 'C', { K: 'ab', N: '3', V: 'y', DOC: null });
    t.commit();
    const reader = new OracleTableReader({ site: SITE, url: URL_, consistent: false }, sim.tableDatabase());
    const shape = await reader.describe('ko', 'c');
    assert.deepEqual(
      shape.relation.columns.map((c) => c.name),
      ['K', 'N', 'V'],
      'LOB columns left out, as capture leaves them out',
    );
    const rows = await reader.readKeys(shape, [['é   ', '-2.00'], ['ab  ', '1.50'], ['ab', '1.50'], ['zz  ', '1.00'], ['', '1.00'], ['ab  ', '12345.00'], ['ab  ', '1.50']]);
    assert.deepEqual(
      rows.map((r) => r.values),
      [
        ['ab  ', '1.50', 'x'],
        ['é   ', '-2.00', null],
      ],
    );
    assert.equal(await reader.estimateRows(shape), 0, 'never analysed: 0');
    sim.analyze('KO', 'C');
    assert.equal(await reader.estimateRows(shape), 3);
  });

  test('a consistent reader sees one point in time; the other one the latest rows', async () => {
    const sim = new SimulatedOracle();
    sim.createTable('KO', 'T', ITEMS);
    const write = (id: number): void => {
      const t = sim.begin();
      t.insert('KO', 'T', { ID: String(id), NAME: null });
      t.commit();
    };
    write(1);
    const consistent = new OracleTableReader({ site: SITE, url: URL_, consistent: true }, sim.tableDatabase({ consistent: true }));
    const latest = new OracleTableReader({ site: SITE, url: URL_, consistent: false }, sim.tableDatabase());
    const open = sim.begin();
    open.insert('KO', 'T', { ID: '3', NAME: null });
    write(2);
    const ids = async (reader: OracleTableReader): Promise<string[]> => (await reader.readChunk(await reader.describe('KO', 'T'), null, 10)).map((r) => r.values[0]!);
    assert.deepEqual(await ids(consistent), ['1']);
    assert.deepEqual(await ids(latest), ['1', '2'], 'committed rows only');
    open.rollback();
  });

  test('refused in one line: no table, no primary key, an INTERVAL key, a column with no canonical text', async () => {
    const sim = new SimulatedOracle();
    sim.createTable('KO', 'NOKEY', [{ name: 'A', type: 'NUMBER' }]);
    sim.createTable('KO', 'IV', [{ name: 'A', type: 'INTERVAL DAY(2) TO SECOND(6)', keyOrdinal: 1 }]);
    sim.createTable('KO', 'XML', [
      { name: 'A', type: 'NUMBER', precision: 9, scale: 0, keyOrdinal: 1 },
      { name: 'X', type: 'XMLTYPE' },
    ]);
    const reader = new OracleTableReader({ site: SITE, url: URL_, consistent: false }, sim.tableDatabase());
    const refused = async (table: string, pattern: RegExp): Promise<void> => {
      await assert.rejects(reader.describe('KO', table), (error: Error) => error instanceof SitesyncError && !error.message.includes('\n') && pattern.test(error.message));
    };
    await refused('MISSING', /table KO\.MISSING does not exist at site lisbon/);
    await refused('NOKEY', /has no primary key.*ADD PRIMARY KEY/);
    await refused('IV', /primary key column A is INTERVAL DAY\(2\) TO SECOND\(6\): Oracle orders intervals by value/);
    await refused('XML', /column X is XMLTYPE, which sitesync has no canonical text for/);
  });
});

// ─── the connector, setup, and the real driver's statements ──────────────────────────────────────────────────

describe('Oracle snapshots: connector, setup and statements', () => {
  test('the connector offers openTableReader and openSnapshotControl when its io can; setup creates the snapshot tables', async () => {
    const sim = new SimulatedOracle();
    sim.createTable('HR', 'ITEMS', ITEMS);
    const io = simulatedOracleIo(sim);
    assert.equal(createOracleConnector(io).openTableReader, undefined, 'without the io to read tables, no reader');
    const connector = createOracleConnector({ ...io, tableDatabase: async (_url, _site, consistent) => sim.tableDatabase({ consistent }), snapshotStore: () => sim.snapshotStore() });
    const findings = await connector.checkDatabase!({ capture: URL_, apply: URL_ }, SITE);
    assert.ok(findings.some((f) => f.severity === 'done' && /snapshot tables/.test(f.problem)), JSON.stringify(findings));
    assert.notEqual(sim.describeTable('SITESYNC', 'SNAPSHOT_MARKERS'), null);
    const reader = await connector.openTableReader!({ site: SITE, url: URL_, consistent: true });
    assert.deepEqual((await reader.describe('HR', 'ITEMS')).keyColumns, [0]);
    const control = connector.openSnapshotControl!({ site: SITE, url: URL_ });
    await control.start(marker(), 0);
    assert.equal((await control.list())[0]?.state, 'running');
    assert.equal(await control.cancel(marker().id), true);
    assert.equal(await control.cancel(marker().id), false);
    assert.equal(await control.advance(marker(), 1, null), 'cancelled');
    await assert.rejects(control.start(marker(), 0), /unique constraint/, 'a second start of one id');
    await reader.close();
    await control.close();
  });

  test('setup names a missing SNAPSHOT_MARKERS as a warning with its DDL; capture still starts', () => {
    const facts = { archiveLog: true, minimalSupplementalLogging: true, allColumnsLogging: true, tablesWithoutLogging: [], missingPrivileges: [], cdb: false, user: 'CAP', progressTable: true };
    assert.deepEqual(setupProblems(facts), []);
    const problems = setupProblems({ ...facts, snapshotMarkersTable: false });
    assert.equal(problems.length, 1);
    assert.equal(problems[0]!.severity, 'warning');
    assert.match(problems[0]!.problem, /SITESYNC\.SNAPSHOT_MARKERS is missing/);
    assert.ok(problems[0]!.fix.includes('ADD SUPPLEMENTAL LOG DATA (ALL) COLUMNS'), problems[0]!.fix);
    assertCaptureReady({ ...facts, snapshotMarkersTable: false }, SITE);
    assert.match(SNAPSHOT_TABLES_DDL[1]!, /"CONTENT" VARCHAR2\(4000 BYTE\) NOT NULL, PRIMARY KEY \("SNAPSHOT_ID", "CHUNK", "PIECE"\)/);
    assert.ok(ensureSnapshotTablesStatements().every((s) => /IF SQLCODE NOT IN \(-955, -32588\) THEN RAISE/.test(s.sql)));
  });

  test('markers are ASCII, cut into rows of at most 4000 characters, and read back whole', () => {
    const m = marker({ keys: [['ünï \u{1F600}\uE000 \'quoted\' "json" \\ \u0000']] });
    const text = asciiMarker(m);
    assert.match(text, /^[\x00-\x7e]*$/);
    assert.deepEqual(parseMarker(text), m);
    const biggest = marker({ keys: Array.from({ length: MAX_MARKER_KEYS }, (_, i) => [`key number ${i} of the repair, é`]) });
    const pieces = markerPieces(biggest);
    assert.ok(pieces.length > 100 && pieces.every((p) => p.content.length <= MARKER_PIECE_CHARS && p.pieces === pieces.length));
    assert.deepEqual(parseMarker(pieces.map((p) => p.content).join('')), biggest);
    assert.deepEqual(
      pieces.map((p) => p.piece),
      pieces.map((_, i) => i),
    );
  });

  test('the real driver statements: session, select with keyset and limit, lookups, values', () => {
    assert.deepEqual(readerSessionStatements(true).slice(1), ['ALTER SESSION SET NLS_SORT = BINARY NLS_COMP = BINARY', 'SET TRANSACTION READ ONLY']);
    assert.match(readerSessionStatements(false)[0]!, /NLS_DATE_FORMAT = 'YYYY-MM-DD HH24:MI:SS'.*TIME_ZONE = '\+00:00'/);
    assert.equal(readerSessionStatements(false).length, 2);
    const col = (name: string, type: string, extra: Partial<OracleColumn> = {}): OracleColumn => ({ name, type, precision: null, scale: null, dataLength: 0, charLength: 0, nullable: true, keyOrdinal: 0, ...extra });
    const id = col('ID', 'NUMBER', { precision: 9, scale: 0, keyOrdinal: 1 });
    const code = col('CODE', 'VARCHAR2', { charLength: 10, keyOrdinal: 2 });
    const name = col('NAME', 'NVARCHAR2', { charLength: 10, keyOrdinal: 3 });
    const at = col('AT', 'TIMESTAMP(6) WITH TIME ZONE', { scale: 6 });
    const query: RowQuery = {
      owner: 'HR',
      table: 'T',
      columns: [id, code, name, at],
      order: [
        { column: id, by: 'column' },
        { column: code, by: 'column' },
        { column: name, by: 'to_char' },
      ],
      after: ['5', 'x', 'é'],
      keys: null,
      limit: 100,
    };
    const statement = selectStatement(query);
    assert.equal(
      statement.sql,
      [
        `SELECT TO_CHAR(t."ID", 'TM9'), t."CODE", t."NAME", TO_CHAR(t."AT", 'YYYY-MM-DD HH24:MI:SS.FF9 TZH:TZM')`,
        'FROM "HR"."T" t',
        'WHERE t."ID" >= TO_NUMBER(:k0) AND (t."ID" > TO_NUMBER(:k1) OR (t."ID" = TO_NUMBER(:k2) AND (t."CODE" > :k3 OR (t."CODE" = :k4 AND TO_CHAR(t."NAME") > :k5))))',
        'ORDER BY t."ID", t."CODE", TO_CHAR(t."NAME")',
        'FETCH FIRST :limitRows ROWS ONLY',
      ].join('\n'),
    );
    assert.deepEqual(
      statement.binds.map((b) => [b.name, b.type, b.value]),
      [
        ['k0', 'text', '5'],
        ['k1', 'text', '5'],
        ['k2', 'text', '5'],
        ['k3', 'text', 'x'],
        ['k4', 'text', 'x'],
        ['k5', 'text', 'é'],
        ['limitRows', 'number', 100],
      ],
    );
    const lookup = selectStatement({ ...query, after: null, limit: null, keys: [['1', 'a', 'b'], ['2', 'c', 'd']] });
    assert.match(lookup.sql, /WHERE \(t\."ID", t\."CODE", t\."NAME"\) IN \(\(TO_NUMBER\(:k0\), :k1, :k2\), \(TO_NUMBER\(:k3\), :k4, :k5\)\)\nORDER BY/);
    assert.equal(lookup.binds[2]!.type, 'ntext', 'a national column looked up as itself, bound as NVARCHAR2');
    assert.match(selectStatement({ ...query, order: [{ column: id, by: 'column' }], after: ['7'], limit: null, keys: null }).sql, /\nWHERE t\."ID" > TO_NUMBER\(:k0\)\nORDER BY t\."ID"$/);
    assert.equal(selectExpression(col('D', 'DATE')), `TO_CHAR(t."D", 'YYYY-MM-DD HH24:MI:SS')`);
    assert.equal(selectExpression(col('L', 'TIMESTAMP(6) WITH LOCAL TIME ZONE')), `TO_CHAR(t."L", 'YYYY-MM-DD HH24:MI:SS.FF9')`);
    assert.equal(selectExpression(col('R', 'RAW', { dataLength: 16 })), 't."R"');
    assert.equal(selectExpression(col('I', 'INTERVAL YEAR(2) TO MONTH')), 'TO_CHAR(t."I")');
    assert.equal(keyBind(col('L', 'TIMESTAMP(6) WITH LOCAL TIME ZONE'), '2026-01-01 00:00:00.000000000', 'b', 'sort').expression, `FROM_TZ(TO_TIMESTAMP(:b, 'YYYY-MM-DD HH24:MI:SS.FF9'), '+00:00')`);
    assert.deepEqual(keyBind(col('R', 'RAW'), 'ABC', 'b', 'sort').bind, { name: 'b', type: 'raw', value: Buffer.from([0x0a, 0xbc]) });
    assert.deepEqual(keyBind(col('F', 'BINARY_DOUBLE'), 'Inf', 'b', 'sort').bind, { name: 'b', type: 'double', value: Infinity });
    assert.equal(keyBind(col('D', 'DATE'), '2026-01-01 10:00:00', 'b', 'lookup').expression, `TO_DATE(:b, 'YYYY-MM-DD HH24:MI:SS')`);
    // What the driver gives, as the Oracle text capture reads from SQL_REDO.
    const double = col('F', 'BINARY_DOUBLE');
    const float = col('G', 'BINARY_FLOAT');
    assert.deepEqual([NaN, Infinity, -Infinity, 0.1, 1e100, -0].map((v) => canonicalText(double, driverValueText(double, v))), ['NaN', 'Infinity', '-Infinity', '0.1', '1e+100', '-0']);
    assert.equal(canonicalText(float, driverValueText(float, Math.fround(0.1))), '0.1');
    assert.equal(driverValueText(col('R', 'RAW'), Buffer.from([0, 255])), '00FF');
    assert.equal(driverValueText(id, null), null);
  });

  test('the control statements', () => {
    assert.match(lockSnapshotStatement('s1').sql, /FROM "SITESYNC"\."SNAPSHOTS" WHERE "ID" = :id FOR UPDATE$/);
    const piece = insertMarkerPieceStatement({ snapshotId: 's1', chunk: 2, piece: 0, pieces: 3, content: '{"v":1' });
    assert.equal(piece.sql, 'INSERT INTO "SITESYNC"."SNAPSHOT_MARKERS" ("SNAPSHOT_ID", "CHUNK", "PIECE", "PIECES", "CONTENT") VALUES (:snapshotId, :chunk, :piece, :pieces, :content)');
    assert.deepEqual(piece.binds, { snapshotId: 's1', chunk: 2, piece: 0, pieces: 3, content: '{"v":1' });
    assert.equal(pruneMarkersStatement('s1', 4).sql, 'DELETE FROM "SITESYNC"."SNAPSHOT_MARKERS" WHERE "SNAPSHOT_ID" = :id AND "CHUNK" < :belowChunk');
    assert.equal(pruneMarkersStatement('s1', null).sql, 'DELETE FROM "SITESYNC"."SNAPSHOT_MARKERS" WHERE "SNAPSHOT_ID" = :id');
    const record = readSnapshotRow({ ID: 's1', TABLE_NAME: 'HR.T', TARGETS: '["a"]', NEXT_CHUNK: '3', ROWS_SENT: '2048', ESTIMATED_ROWS: '5000', STATE: 'running', STARTED_AT: '2026-01-02T03:04:05.123456', UPDATED_AT: '2026-01-02T03:04:06.000000' });
    assert.deepEqual([record.nextChunk, record.rowsSent, record.startedAt.toISOString()], [3, 2048, '2026-01-02T03:04:05.123Z']);
  });
});
