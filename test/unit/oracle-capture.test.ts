/**
 * Oracle capture (redo-logs.ts, transaction-buffer.ts, mined-stream.ts, oracle-source.ts) against the simulator
 * of test/helpers/oracle-simulator.ts: a property test over random schedules (two redo threads, interleaved
 * transactions on a keyed and a keyless table, savepoints rolled back to, whole rollbacks, commits sharing an
 * SCN, log switches and archiving, a thread whose flush is held, long transactions over several windows and
 * logs, memory bounds small enough to spill, relayed transactions, restarts and crashes anywhere, connection
 * losses), and the data-loss bugs of LogMiner readers as named scenarios.
 *
 * The runner is modelled as the capture runner behaves: it keeps what the broker holds across restarts of the
 * source, drops a transaction at or below the last one it published or skipped (a duplicate after a restart),
 * assembles parts (a restart resends a transaction from part 0), and confirms every checkpoint it is given.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import type { SourceHandler } from '../../src/capture/source.ts';
import { DecodeError, SitesyncError } from '../../src/errors.ts';
import type { Change, SeenSites, Transaction, TransactionPart } from '../../src/events/transaction.ts';
import type { Logger } from '../../src/observability/logger.ts';
import type { MinedRow, OracleColumn, RedoLog } from '../../connectors/oracle/logminer-reader.ts';
import { OPERATION } from '../../connectors/oracle/logminer-reader.ts';
import { canonicalText, isLob } from '../../connectors/oracle/oracle-kinds.ts';
import { formatCheckpoint, formatPosition, lastAt, parseCheckpoint } from '../../connectors/oracle/oracle-positions.ts';
import { OracleSource } from '../../connectors/oracle/oracle-source.ts';
import { capturedTables, chooseLogs, minedOwners, splitTableName, windowBound } from '../../connectors/oracle/redo-logs.ts';
import { TransactionBuffer } from '../../connectors/oracle/transaction-buffer.ts';
import { commitTimeMicros } from '../../connectors/oracle/mined-stream.ts';
import { SimulatedOracle, type SimCommitted, type SimOracleColumn, type SimOracleTransaction } from '../helpers/oracle-simulator.ts';

const SITE = 'paris';
const ITEMS: SimOracleColumn[] = [
  { name: 'ID', type: 'NUMBER', precision: 9, scale: 0, keyOrdinal: 1 },
  { name: 'NAME', type: 'NVARCHAR2', length: 40 },
  { name: 'PRICE', type: 'NUMBER', precision: 12, scale: 2 },
  { name: 'AT', type: 'TIMESTAMP(6)' },
];
const NOTES: SimOracleColumn[] = [
  { name: 'BODY', type: 'VARCHAR2', length: 200 },
  { name: 'N', type: 'NUMBER', precision: 9, scale: 0 },
];

const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'sitesync-oracle-capture-'));
after(() => fs.rmSync(TMP, { recursive: true, force: true }));
let dirs = 0;

// ─── the runner's side ─────────────────────────────────────────────────────────────────────────────────────

interface Skip {
  readonly position: string;
  readonly reason: 'relayed' | 'empty';
  readonly seen: SeenSites;
}

class Runner {
  readonly delivered: Transaction[] = [];
  readonly skips: Skip[] = [];
  readonly parts: { position: string; part: TransactionPart | null }[] = [];
  lastDelivered: string | null = null;
  handled: string | null = null;
  seen: SeenSites = {};
  idleAt: string | null = null;
  generation = 0;
  source: OracleSource | null = null;
  readonly confirms: Promise<unknown>[] = [];
  readonly confirmErrors: unknown[] = [];
  private assembling: { position: string; changes: Change[]; next: number } | null = null;
  onPart: ((tx: Transaction, part: TransactionPart) => void) | null = null;
  onDelivered: ((tx: Transaction) => void) | null = null;

  handlerFor(generation: number): SourceHandler {
    const live = (): boolean => generation === this.generation;
    return {
      transaction: (tx, part, checkpoint) => {
        if (live()) this.transaction(tx, part, checkpoint);
      },
      skipped: (position, checkpoint, reason, seen) => {
        if (!live()) return;
        assert.equal(parseCheckpoint(checkpoint).after, position);
        if (this.handled !== null && position <= this.handled) return;
        this.handled = position;
        this.skips.push({ position, reason, seen });
        this.seen = seen;
        this.confirm(checkpoint);
      },
      idle: (checkpoint, seen) => {
        if (!live()) return;
        this.idleAt = checkpoint;
        this.seen = seen;
        this.confirm(checkpoint);
      },
    };
  }

  newGeneration(source: OracleSource): number {
    this.generation++;
    this.source = source;
    this.assembling = null;
    this.idleAt = null;
    return this.generation;
  }

  private transaction(tx: Transaction, part: TransactionPart | null, checkpoint: string | null): void {
    this.parts.push({ position: tx.position, part });
    if (this.handled !== null && tx.position <= this.handled) return;
    let whole: Transaction;
    if (part) {
      this.onPart?.(tx, part);
      if (part.index === 0) this.assembling = { position: tx.position, changes: [], next: 0 };
      const a = this.assembling;
      assert.ok(a && a.position === tx.position && a.next === part.index, `part ${part.index} of ${tx.position} out of order`);
      assert.equal(tx.id, `${SITE}:${tx.position}`);
      a.changes.push(...tx.changes);
      a.next++;
      if (!part.last) {
        assert.equal(checkpoint, null);
        return;
      }
      whole = { ...tx, changes: a.changes };
      this.assembling = null;
    } else {
      assert.equal(this.assembling, null, 'a whole transaction inside another one sent in parts');
      whole = tx;
    }
    assert.equal(parseCheckpoint(checkpoint!).after, tx.position);
    this.delivered.push(whole);
    this.lastDelivered = tx.position;
    this.handled = tx.position;
    this.seen = tx.seen;
    this.confirm(checkpoint!);
    this.onDelivered?.(whole);
  }

  private confirm(checkpoint: string): void {
    const source = this.source!;
    const p = source.confirm(checkpoint, { lastPublished: this.lastDelivered, seen: this.seen }).catch((error: unknown) => {
      this.confirmErrors.push(error);
    });
    this.confirms.push(p);
  }
}

function quietLogger(lines: { level: string; text: string }[] = []): Logger {
  const log = (level: string) => (a: unknown, b?: unknown) => {
    lines.push({ level, text: typeof a === 'string' ? a : String(b ?? '') });
  };
  const logger = { info: log('info'), warn: log('warn'), error: log('error'), debug: log('debug'), trace: log('trace'), fatal: log('fatal') } as Record<string, unknown>;
  logger.child = () => logger;
  return logger as unknown as Logger;
}

const tick = (ms = 0): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface HarnessOptions {
  threads?: number;
  recordsPerLog?: number;
  csfChunk?: number;
  timeZone?: string;
  maxPartBytes?: number;
  batchRows?: number;
  progressWriteIntervalMs?: number;
  maxBufferBytes?: number;
  maxSpillBytes?: number;
  maxWindowScns?: number;
  tables?: string[] | null;
}

const harnesses = new Set<Harness>();
after(async () => {
  for (const h of harnesses) await h.stop().catch(() => undefined);
});

type Stats = NonNullable<ReturnType<OracleSource['stats']>>;

class Harness {
  readonly sim: SimulatedOracle;
  readonly runner = new Runner();
  readonly lines: { level: string; text: string }[] = [];
  source: OracleSource | null = null;
  broken: unknown = null;
  /** Counts of every source made, summed. */
  readonly totals: Record<string, number> = {};

  constructor(readonly options: HarnessOptions = {}) {
    harnesses.add(this);
    this.sim = new SimulatedOracle({ threads: options.threads ?? 1, timeZone: options.timeZone ?? 'UTC', recordsPerLog: options.recordsPerLog ?? 1000, csfChunk: options.csfChunk ?? 4000 });
    this.sim.createApplyProgress();
    this.sim.createTable('HR', 'ITEMS', ITEMS);
    this.sim.createTable('HR', 'NOTES', NOTES);
  }

  private addStats(stats: Stats | null): void {
    if (!stats) return;
    for (const [k, v] of Object.entries(stats)) this.totals[k] = (this.totals[k] ?? 0) + v;
  }

  async start(): Promise<OracleSource> {
    // A process of its own: its spill files in a directory of its own (a crashed one may still be running here).
    const source = new OracleSource({
      site: SITE,
      reader: () => this.sim.reader(),
      tables: this.options.tables ?? null,
      maxPartBytes: this.options.maxPartBytes ?? 1 << 20,
      logger: quietLogger(this.lines),
      pollIntervalMs: 1,
      batchRows: this.options.batchRows ?? 1000,
      progressWriteIntervalMs: this.options.progressWriteIntervalMs ?? 0,
      maxBufferBytes: this.options.maxBufferBytes,
      maxSpillBytes: this.options.maxSpillBytes,
      maxWindowScns: this.options.maxWindowScns,
      spillDirectory: path.join(TMP, String(dirs++)),
    });
    await source.prepare();
    await source.resumePoint();
    const generation = this.runner.newGeneration(source);
    this.broken = null;
    this.source = source;
    await source.open(this.runner.handlerFor(generation));
    source.ended!.catch((error: unknown) => {
      if (this.runner.generation === generation) this.broken = error;
    });
    return source;
  }

  /** A process that dies: it hears nothing more and writes nothing more. */
  async crash(): Promise<void> {
    const old = this.source!;
    this.runner.generation++;
    old.pause();
    this.addStats(old.stats());
    await Promise.allSettled(this.runner.confirms);
  }

  async restart(crash: boolean): Promise<void> {
    if (crash) await this.crash();
    else {
      this.addStats(this.source!.stats());
      await this.source!.close();
    }
    await this.start();
  }

  tx(thread = 1): SimOracleTransaction {
    return this.sim.begin(thread);
  }

  /** Waits until the source said idle at or past what can be read now (or broke). */
  async drain(): Promise<void> {
    const target = lastAt(this.sim.readableScn);
    const deadline = Date.now() + 10_000;
    while (!this.broken) {
      if (this.runner.idleAt !== null && parseCheckpoint(this.runner.idleAt).after >= target) break;
      if (Date.now() > deadline) throw new Error(`capture did not reach ${this.sim.readableScn} (idle at ${this.runner.idleAt})`);
      await this.source!.heartbeat();
      await tick(1);
    }
    await Promise.allSettled(this.runner.confirms);
  }

  async stop(): Promise<void> {
    if (this.source) this.addStats(this.source.stats());
    await this.source?.close();
    harnesses.delete(this);
  }
}

// ─── the oracle: what capture must deliver, from the simulator's log ───────────────────────────────────────

interface Plain {
  readonly op: string;
  readonly table: string;
  readonly columns: readonly string[];
  readonly oldRow: readonly (string | null)[] | null;
  readonly newRow: readonly (string | null)[] | null;
  readonly unchanged?: readonly number[];
}

function plain(change: Change): Plain {
  assert.ok(change.op === 'insert' || change.op === 'update' || change.op === 'delete');
  const unchanged = [...(change.op !== 'insert' && change.oldRow ? change.oldRow.unchanged : []), ...(change.op !== 'delete' ? change.newRow.unchanged : [])];
  return {
    op: change.op,
    table: `${change.relation.schema}.${change.relation.table}`,
    columns: change.relation.columns.map((c) => c.name),
    oldRow: change.op === 'insert' ? null : change.oldRow ? [...change.oldRow.values] : null,
    newRow: change.op === 'delete' ? null : [...change.newRow.values],
    ...(unchanged.length > 0 ? { unchanged } : {}),
  };
}

/** The changes of one committed transaction as capture must say them. */
function expectedChanges(sim: SimulatedOracle, tx: SimCommitted, captured: (owner: string, table: string) => boolean): Plain[] {
  const out: Plain[] = [];
  for (const c of tx.changes) {
    if (!captured(c.owner, c.table)) continue;
    const all = sim.describeTable(c.owner, c.table)!.columns;
    const columns = all.filter((col) => !isLob(col));
    if (c.op === 'update' && !c.set.some((n) => columns.some((col) => col.name === n))) continue; // a LOB-only update: LOB rows only
    const names = columns.map((col) => col.name);
    const keys = columns.filter((col) => col.keyOrdinal > 0).map((col) => col.name);
    const values = (image: Readonly<Record<string, string | null>>) => columns.map((col) => canonicalText(col, image[col.name] ?? null));
    const keyOnly = (image: Readonly<Record<string, string | null>>) => columns.map((col) => (keys.length === 0 || keys.includes(col.name) ? canonicalText(col, image[col.name] ?? null) : null));
    const table = `${c.owner}.${c.table}`;
    if (c.op === 'insert') out.push({ op: 'insert', table, columns: names, oldRow: null, newRow: values(c.after!) });
    else if (c.op === 'delete') out.push({ op: 'delete', table, columns: names, oldRow: keyOnly(c.before!), newRow: null });
    else {
      const keyChanged = keys.some((k) => c.before![k] !== c.after![k]);
      out.push({ op: 'update', table, columns: names, oldRow: keys.length === 0 ? values(c.before!) : keyChanged ? keyOnly(c.before!) : null, newRow: values(c.after!) });
    }
  }
  return out;
}

const positionOf = (tx: SimCommitted): string => formatPosition({ scn: tx.commitScn, thread: tx.thread, xid: tx.xid });

// ─── the property ──────────────────────────────────────────────────────────────────────────────────────────

type Step =
  | { k: 'begin'; thread: number }
  | { k: 'op'; tx: number; op: 'insert' | 'update' | 'updateKey' | 'delete'; notes: boolean; id: number; val: number }
  | { k: 'savepoint'; tx: number }
  | { k: 'rollbackTo'; tx: number }
  | { k: 'commit'; tx: number; share: boolean }
  | { k: 'rollback'; tx: number }
  | { k: 'relayed'; items: number; thread: number }
  | { k: 'big'; rows: number; thread: number }
  | { k: 'switch'; thread: number }
  | { k: 'archive'; purge: boolean }
  | { k: 'hold'; on: boolean }
  | { k: 'restart'; crash: boolean }
  | { k: 'connectionLoss' }
  | { k: 'drain' }
  | { k: 'tick' }
  | { k: 'clock'; seconds: number };

const stepArb = (threads: number): fc.Arbitrary<Step> =>
  fc.oneof(
    { weight: 2, arbitrary: fc.record({ k: fc.constant('begin' as const), thread: fc.integer({ min: 1, max: threads }) }) },
    {
      weight: 14,
      arbitrary: fc.record({
        k: fc.constant('op' as const),
        tx: fc.nat(5),
        op: fc.constantFrom('insert' as const, 'insert' as const, 'update' as const, 'updateKey' as const, 'delete' as const),
        notes: fc.boolean(),
        id: fc.nat(9),
        val: fc.nat(99),
      }),
    },
    { weight: 2, arbitrary: fc.record({ k: fc.constant('savepoint' as const), tx: fc.nat(5) }) },
    { weight: 2, arbitrary: fc.record({ k: fc.constant('rollbackTo' as const), tx: fc.nat(5) }) },
    { weight: 6, arbitrary: fc.record({ k: fc.constant('commit' as const), tx: fc.nat(5), share: fc.boolean() }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('rollback' as const), tx: fc.nat(5) }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('relayed' as const), items: fc.nat(2), thread: fc.integer({ min: 1, max: threads }) }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('big' as const), rows: fc.integer({ min: 3, max: 12 }), thread: fc.integer({ min: 1, max: threads }) }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('switch' as const), thread: fc.integer({ min: 1, max: threads }) }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('archive' as const), purge: fc.boolean() }) },
    { weight: threads === 2 ? 1 : 0, arbitrary: fc.record({ k: fc.constant('hold' as const), on: fc.boolean() }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('restart' as const), crash: fc.boolean() }) },
    { weight: 1, arbitrary: fc.constant<Step>({ k: 'connectionLoss' }) },
    { weight: 2, arbitrary: fc.constant<Step>({ k: 'drain' }) },
    { weight: 2, arbitrary: fc.constant<Step>({ k: 'tick' }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('clock' as const), seconds: fc.integer({ min: 1, max: 7200 }) }) },
  );

/** How often the schedules met what they are there to meet (asserted, so that the property cannot go hollow). */
const coverage = {
  runs: 0,
  delivered: 0,
  thread2Commits: 0,
  sharedScnCommits: 0,
  parts: 0,
  spills: 0,
  undone: 0,
  csfJoined: 0,
  rolledBack: 0,
  relayed: 0,
  empty: 0,
  logSwitches: 0,
  purged: 0,
  holds: 0,
  restarts: 0,
  crashes: 0,
  connectionLosses: 0,
  resent: 0,
  droppedAtRestart: 0,
  spanningWindows: 0,
};

const EXTRA_NAME = '\u00e9t\u00e9 \u{1F600} it\'s';

async function runSchedule(steps: readonly Step[], config: HarnessOptions): Promise<void> {
  const h = new Harness(config);
  const sim = h.sim;
  let relayedMicros = 0n;
  const relayed = new Map<string, bigint>();
  const open: SimOracleTransaction[] = [];
  const savepoints = new Map<SimOracleTransaction, number>();
  let held = false;
  await h.start();
  try {
    for (const step of steps) {
      if (h.broken) throw h.broken;
      switch (step.k) {
        case 'begin':
          if (open.length < 4) open.push(sim.begin(step.thread));
          break;
        case 'op': {
          if (open.length === 0) open.push(sim.begin(1));
          const tx = open[step.tx % open.length]!;
          try {
            if (step.notes) {
              if (step.op === 'insert') tx.insert('HR', 'NOTES', { BODY: `b${step.id}${step.val % 7 === 0 ? ' '.repeat(30) + 'long' : ''}`, N: String(step.val) });
              else if (step.op === 'delete') tx.delete('HR', 'NOTES', { BODY: `b${step.id}` });
              else tx.update('HR', 'NOTES', { BODY: `b${step.id}` }, { N: step.val % 5 === 0 ? null : String(step.val) });
            } else {
              const at = `2026-0${1 + (step.val % 9)}-1${step.val % 10} 10:20:30.${String(step.val).padStart(6, '0')}000`;
              if (step.op === 'insert') tx.insert('HR', 'ITEMS', { ID: String(step.id), NAME: step.val % 4 === 0 ? EXTRA_NAME : `n${step.val}`, PRICE: `${step.val}.5`, AT: at });
              else if (step.op === 'delete') tx.delete('HR', 'ITEMS', { ID: String(step.id) });
              else if (step.op === 'update') tx.update('HR', 'ITEMS', { ID: String(step.id) }, { NAME: `u${step.val}`, PRICE: step.val % 3 === 0 ? null : `.${step.val}` });
              else tx.update('HR', 'ITEMS', { ID: String(step.id) }, { ID: String(step.id + 7 + (step.val % 5)) });
            }
          } catch (error) {
            if (!/SimLockError|SimUniqueError/.test((error as Error).name)) throw error;
          }
          break;
        }
        case 'savepoint': {
          if (open.length === 0) break;
          const tx = open[step.tx % open.length]!;
          tx.savepoint('s');
          savepoints.set(tx, 1);
          break;
        }
        case 'rollbackTo': {
          if (open.length === 0) break;
          const tx = open[step.tx % open.length]!;
          if (savepoints.has(tx)) tx.rollbackTo('s');
          break;
        }
        case 'commit':
        case 'rollback': {
          if (open.length === 0) break;
          const [tx] = open.splice(step.tx % open.length, 1);
          if (step.k === 'commit') tx!.commit({ shareScn: step.share });
          else tx!.rollback();
          break;
        }
        case 'relayed': {
          const tx = sim.begin(step.thread, { username: 'SITESYNC_APPLY' });
          relayedMicros += 1_000_000n;
          try {
            if (tx.update('SITESYNC', 'APPLY_PROGRESS', { SOURCE: 'london' }, { POSITION: relayedMicros.toString(16).toUpperCase(), COMMIT_TIME_MICROS: relayedMicros.toString() }) === 0) {
              tx.insert('SITESYNC', 'APPLY_PROGRESS', { SOURCE: 'london', SOURCE_KIND: 'postgres', POSITION: '1', COMMIT_TIME_MICROS: relayedMicros.toString(), APPLIED_TRANSACTIONS: '1' });
            }
            for (let i = 0; i < step.items; i++) tx.insert('HR', 'ITEMS', { ID: String(100 + Number(relayedMicros / 1_000_000n) * 3 + i), NAME: 'relayed', PRICE: '1' });
            const scn = tx.commit();
            relayed.set(formatPosition({ scn, thread: tx.thread, xid: tx.xid }), relayedMicros);
          } catch (error) {
            tx.rollback();
            relayedMicros -= 1_000_000n;
            if (!/SimLockError|SimUniqueError/.test((error as Error).name)) throw error;
          }
          break;
        }
        case 'big': {
          // A long transaction: its rows spread over windows, logs and spill files while others commit.
          const big = sim.begin(step.thread);
          const base = 1000 + sim.committed().length * 20;
          for (let i = 0; i < step.rows; i++) {
            big.insert('HR', 'NOTES', { BODY: `big ${base + i} ${'x'.repeat(i * 3)}`, N: String(i) });
            if (i % 3 === 1) {
              const other = sim.begin(1);
              other.insert('HR', 'NOTES', { BODY: `between ${base + i}`, N: '0' });
              other.commit();
              await h.source!.heartbeat();
              await tick(1);
            }
          }
          open.push(big);
          break;
        }
        case 'switch':
          sim.switchLog(step.thread);
          break;
        case 'archive': {
          sim.archive();
          if (step.purge) {
            // RMAN deletes archived logs capture no longer needs: below the persisted resume SCN.
            const resume = parseCheckpoint(sim.bookkeeping.captureProgress.get(SITE)!.checkpoint).resume;
            for (let t = 1; t <= (config.threads ?? 1); t++) {
              for (const l of sim.logList(t)) {
                if (l.archived && !l.deleted && l.nextScn !== null && l.nextScn <= resume + 1n) {
                  sim.deleteArchived(t, l.sequence);
                  coverage.purged++;
                }
              }
            }
          }
          break;
        }
        case 'hold':
          if (step.on !== held) {
            sim.holdFlush(2, step.on);
            held = step.on;
            if (step.on) coverage.holds++;
          }
          break;
        case 'restart':
          await h.restart(step.crash);
          if (step.crash) coverage.crashes++;
          else coverage.restarts++;
          break;
        case 'connectionLoss': {
          sim.failNextReaderCall();
          for (let i = 0; i < 20 && !h.broken; i++) {
            await h.source!.heartbeat();
            await tick(1);
          }
          if (h.broken) {
            coverage.connectionLosses++;
            assert.ok(h.broken instanceof SitesyncError && h.broken.code === 'SITESYNC_ERR_DATABASE_UNREACHABLE', String(h.broken));
            await h.restart(false);
          }
          break;
        }
        case 'drain':
          await h.drain();
          break;
        case 'tick':
          await tick(1);
          break;
        case 'clock':
          sim.advanceClock(BigInt(step.seconds) * 1_000_000n);
          break;
      }
    }
    if (held) sim.holdFlush(2, false);
    for (const tx of open) tx.commit();
    await h.drain();
    if (h.broken) throw h.broken;
    await h.restart(false);
    await h.drain();
    if (h.broken) throw h.broken;
  } finally {
    await h.stop();
  }

  // The oracle.
  const captured = capturedTables(config.tables ?? null, 'SITESYNC');
  const expected: { position: string; micros: bigint; seen: SeenSites; changes: Plain[] }[] = [];
  const expectedRelayed: { position: string; seen: SeenSites }[] = [];
  const expectedEmpty: string[] = [];
  let seen: SeenSites = {};
  const committed = sim.committed();
  for (const tx of committed) {
    const position = positionOf(tx);
    const r = relayed.get(position);
    if (r !== undefined) {
      seen = { london: r };
      expectedRelayed.push({ position, seen });
      continue;
    }
    const changes = expectedChanges(sim, tx, captured);
    if (changes.length === 0) {
      if (tx.changes.length === 0) expectedEmpty.push(position);
      continue;
    }
    expected.push({ position, micros: tx.commitMicros, seen, changes });
  }
  const got = h.runner.delivered;
  assert.deepEqual(
    got.map((t) => t.position),
    expected.map((t) => t.position),
    'every committed transaction exactly once, in commit (position) order',
  );
  for (let i = 0; i < got.length; i++) {
    assert.deepEqual(got[i]!.changes.map(plain), expected[i]!.changes, `changes of ${got[i]!.position}`);
    assert.equal(got[i]!.commitTimeMicros, expected[i]!.micros);
    assert.deepEqual(got[i]!.seen, expected[i]!.seen);
    assert.equal(got[i]!.id, `${SITE}:${got[i]!.position}`);
  }
  const relayedSkips = h.runner.skips.filter((s) => s.reason === 'relayed');
  assert.deepEqual(relayedSkips.map((s) => s.position), expectedRelayed.map((s) => s.position));
  assert.deepEqual(relayedSkips.map((s) => s.seen), expectedRelayed.map((s) => s.seen));
  // Transactions whose every change was rolled back to a savepoint (and none of a table not captured).
  const emptySkips = h.runner.skips.filter((s) => s.reason === 'empty').map((s) => s.position);
  for (const p of emptySkips) assert.ok(expectedEmpty.includes(p), `skipped as empty: ${p}`);
  assert.deepEqual(h.runner.confirmErrors.filter((e) => !(e instanceof SitesyncError && e.code === 'SITESYNC_ERR_DATABASE_UNREACHABLE')), []);
  assert.deepEqual(h.lines.filter((l) => l.level === 'warn' || l.level === 'error'), []);
  // The last process's spill files are all gone, and its directory with them (every transaction ended, and it closed).
  assert.equal(fs.existsSync(h.source!.spillDirectory), false, 'the spill directory is removed when the stream ends');
  coverage.runs++;
  coverage.delivered += got.length;
  coverage.thread2Commits += got.filter((t) => t.position.slice(16, 20) === '0002').length;
  const scns = got.map((t) => t.position.slice(0, 16));
  coverage.sharedScnCommits += scns.filter((s, i) => scns.indexOf(s) !== i).length;
  coverage.parts += new Set(h.runner.parts.filter((p) => p.part !== null).map((p) => p.position)).size;
  coverage.spills += h.totals.spills ?? 0;
  coverage.undone += h.totals.undone ?? 0;
  coverage.csfJoined += h.totals.csfJoined ?? 0;
  coverage.rolledBack += h.totals.rolledBack ?? 0;
  coverage.droppedAtRestart += h.totals.droppedAtRestart ?? 0;
  coverage.relayed += relayedSkips.length;
  coverage.empty += emptySkips.length;
  for (let t = 1; t <= (config.threads ?? 1); t++) coverage.logSwitches += sim.logList(t).length - 1;
  coverage.resent += h.runner.parts.length - new Set(h.runner.parts.map((p) => `${p.position}/${p.part?.index ?? 'whole'}`)).size;
  coverage.spanningWindows += (sim.readerCalls.get('mine') ?? 0) > got.length ? 1 : 0;
}

test('random schedules: every committed transaction of captured tables exactly once, in position order, with its changes, values and seen', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 2 }).chain((threads) =>
        fc.tuple(
          fc.array(stepArb(threads), { minLength: 20, maxLength: 90 }),
          fc.record({
            threads: fc.constant(threads),
            recordsPerLog: fc.constantFrom(4, 9, 1000),
            csfChunk: fc.constantFrom(40, 90, 4000),
            maxPartBytes: fc.constantFrom(60, 200, 1 << 20),
            batchRows: fc.integer({ min: 1, max: 7 }),
            progressWriteIntervalMs: fc.constantFrom(0, 1e9),
            maxBufferBytes: fc.constantFrom(300, 1500, 1 << 26),
            maxWindowScns: fc.constantFrom(3, 8, undefined),
            tables: fc.constantFrom(null, ['HR.ITEMS', 'hr.notes']),
          }),
        ),
      ),
      async ([steps, config]) => runSchedule(steps, config as HarnessOptions),
    ),
    { numRuns: Number(process.env.ORACLE_RUNS ?? 500), seed: 16_2026 },
  );
  if (process.env.ORACLE_COVERAGE) console.log(JSON.stringify(coverage));
  for (const [what, count] of Object.entries(coverage)) assert.ok(count > 0, `no schedule met ${what}: ${JSON.stringify(coverage)}`);
});

// ─── named scenarios ───────────────────────────────────────────────────────────────────────────────────────

const insertItem = (tx: SimOracleTransaction, id: number, name = `n${id}`): void => tx.insert('HR', 'ITEMS', { ID: String(id), NAME: name, PRICE: '1.5', AT: null });
const ids = (txs: readonly Transaction[]): string[][] => txs.map((t) => t.changes.map((c) => plain(c).newRow?.[0] ?? plain(c).oldRow![0]!));

test('DBZ-3516/DBZ-6942 an archived log missing from the window stops capture naming thread and sequence', async () => {
  const h = new Harness({ recordsPerLog: 3 });
  await h.start();
  const t1 = h.tx();
  insertItem(t1, 1);
  t1.commit();
  await h.drain();
  await h.source!.close();
  const unread: string[] = [];
  for (let i = 2; i <= 6; i++) {
    const t = h.tx();
    insertItem(t, i);
    unread.push(formatPosition({ scn: t.commit(), thread: 1, xid: t.xid }));
  }
  h.sim.switchLog(1);
  h.sim.archive();
  const resume = parseCheckpoint(h.sim.bookkeeping.captureProgress.get(SITE)!.checkpoint).resume;
  const gone = h.sim.logList(1).find((l) => l.archived && l.nextScn !== null && l.nextScn > resume + 2n && l.firstScn > resume + 1n)!;
  h.sim.deleteArchived(1, gone.sequence);
  // A reader that mined what is listed would lose the changes in that log without a word.
  const reader = h.sim.reader();
  const listed = await reader.logs(resume + 1n);
  const session = await reader.mine(listed, resume, h.sim.scn, null);
  const rows = await session.next(10_000);
  assert.ok(rows.every((r) => r.scn < gone.firstScn || r.scn >= gone.nextScn!), 'the deleted log is not mined');
  await h.start();
  await assert.rejects(h.source!.ended!, (error: unknown) => {
    assert.ok(error instanceof SitesyncError);
    assert.equal(error.code, 'SITESYNC_ERR_CONFIG');
    assert.ok(!error.message.includes('\n'));
    for (const part of [`sequence ${gone.sequence} of thread 1`, `SCN ${gone.firstScn}`, `site ${SITE}`, 'RESTORE ARCHIVELOG', 're-seed']) assert.ok(error.message.includes(part), `names ${part}: ${error.message}`);
    return true;
  });
  assert.deepEqual(ids(h.runner.delivered), [['1']]);
  await h.stop();
  // The pure check alone: a gap in the middle, a missing first log, a missing next log.
  const log = (sequence: number, first: bigint, next: bigint | null): RedoLog => ({ name: `l${sequence}`, thread: 1, sequence, firstScn: first, nextScn: next, archived: next !== null });
  const threads = [{ thread: 1, open: true, flushedScn: 500n }];
  assert.deepEqual(chooseLogs({ site: SITE, logs: [log(4, 100n, 200n), log(5, 200n, 300n), log(6, 300n, null)], threads, from: 150n, to: 250n }).map((l) => l.sequence), [4, 5]);
  assert.throws(() => chooseLogs({ site: SITE, logs: [log(4, 100n, 200n), log(6, 300n, null)], threads, from: 150n, to: 350n }), /sequence 5 of thread 1 \(SCN 200\)/);
  assert.throws(() => chooseLogs({ site: SITE, logs: [log(5, 200n, 300n), log(6, 300n, null)], threads, from: 150n, to: 350n }), /sequence 4 of thread 1/);
  assert.throws(() => chooseLogs({ site: SITE, logs: [log(4, 100n, 200n)], threads, from: 150n, to: 250n }), /sequence 5 of thread 1/);
  // A closed thread's logs below the window are not needed; its logs in it are.
  const closed = [...threads, { thread: 2, open: false, flushedScn: 90n }];
  assert.equal(chooseLogs({ site: SITE, logs: [log(4, 100n, 200n), { ...log(9, 10n, 90n), thread: 2 }], threads: closed, from: 150n, to: 190n }).length, 1);
});

test('DBZ-2552 a RAC thread behind caps the window: no commit missed', async () => {
  const h = new Harness({ threads: 2 });
  await h.start();
  h.sim.holdFlush(2, true);
  const held = h.sim.flushed(2);
  const behind = h.tx(2);
  insertItem(behind, 2, 'thread 2');
  const scn2 = behind.commit();
  const ahead = h.tx(1);
  insertItem(ahead, 1, 'thread 1');
  const scn1 = ahead.commit();
  assert.ok(scn2 < scn1);
  await h.drain();
  assert.equal(h.runner.delivered.length, 0, 'nothing passed the thread behind');
  assert.ok(parseCheckpoint(h.runner.idleAt!).after <= lastAt(held));
  assert.equal(windowBound({ threads: await h.sim.reader().threads(), currentScn: h.sim.scn, from: 0n }), held);
  // Reading up to CURRENT_SCN now would pass thread 2's commit, not yet in its log.
  const reader = h.sim.reader();
  const session = await reader.mine(await reader.logs(held), held, h.sim.scn, null);
  const naive = await session.next(1000);
  assert.ok(naive.some((r) => r.operationCode === OPERATION.commit && r.scn === scn1));
  assert.ok(!naive.some((r) => r.scn === scn2));
  h.sim.holdFlush(2, false);
  await h.drain();
  await h.stop();
  assert.deepEqual(h.runner.delivered.map((t) => t.position), [formatPosition({ scn: scn2, thread: 2, xid: behind.xid }), formatPosition({ scn: scn1, thread: 1, xid: ahead.xid })]);
});

test('DBZ-4936 several commits at one SCN: all delivered, in order, across a restart between them', async () => {
  const h = new Harness({ threads: 2 });
  await h.start();
  await h.drain();
  const txs = [h.tx(2), h.tx(1), h.tx(1), h.tx(2)];
  txs.forEach((t, i) => insertItem(t, i + 1));
  const scns = txs.map((t, i) => t.commit({ shareScn: i > 0 }));
  assert.equal(new Set(scns).size, 1, 'one SCN');
  const positions = txs.map((t) => formatPosition({ scn: scns[0]!, thread: t.thread, xid: t.xid })).sort();
  let crashed = false;
  h.runner.onDelivered = () => {
    if (!crashed) {
      crashed = true;
      void h.crash();
    }
  };
  while (!crashed && !h.broken) {
    await h.source!.heartbeat();
    await tick(1);
  }
  await h.crash();
  const persisted = parseCheckpoint(h.sim.bookkeeping.captureProgress.get(SITE)!.checkpoint);
  assert.equal(persisted.after, positions[0], 'the checkpoint is the first commit at that SCN');
  assert.ok(persisted.resume < scns[0]!, 'and mining resumes below the SCN');
  h.runner.onDelivered = null;
  await h.start();
  await h.drain();
  await h.stop();
  assert.deepEqual(h.runner.delivered.map((t) => t.position), positions);
  assert.deepEqual(h.runner.delivered.map((t) => t.position.slice(16, 20)), ['0001', '0001', '0002', '0002']);
});

test('a long transaction is never abandoned: spilled, delivered whole at its commit', async () => {
  const h = new Harness({ maxBufferBytes: 400, maxWindowScns: 4, recordsPerLog: 5, maxPartBytes: 1 << 20 });
  await h.start();
  const long = h.tx();
  for (let i = 0; i < 30; i++) {
    long.insert('HR', 'NOTES', { BODY: `long ${i} ${'y'.repeat(40)}`, N: String(i) });
    if (i % 5 === 0) {
      const other = h.tx();
      insertItem(other, 100 + i);
      other.commit();
      h.sim.advanceClock(86_400_000_000n); // a day: no retention time drops it
      h.sim.switchLog(1);
      h.sim.archive();
      await h.drain();
    }
  }
  const scn = long.commit();
  await h.drain();
  await h.stop();
  const got = h.runner.delivered.find((t) => t.position === formatPosition({ scn, thread: 1, xid: long.xid }))!;
  assert.equal(got.changes.length, 30);
  assert.deepEqual(got.changes.map((c) => plain(c).newRow![1]), Array.from({ length: 30 }, (_, i) => String(i)));
  assert.ok((h.totals.spills ?? 0) > 0, 'it was spilled');
  assert.equal(h.runner.delivered.length, 7);
  assert.ok(h.sim.logList(1).length > 6, 'over several logs');
});

test('the transaction buffer: spills the largest past its memory bound, undoes a spilled change by ROWID, reads back in order, cleans up, and stops past maxSpillBytes', () => {
  const directory = path.join(TMP, 'buffer');
  fs.mkdirSync(directory, { recursive: true });
  fs.writeFileSync(path.join(directory, 'left-by-a-crash.jsonl'), 'x\n');
  const buffer = new TransactionBuffer({ site: SITE, directory, maxBufferBytes: 500, maxSpillBytes: 4000 });
  buffer.start();
  assert.deepEqual(fs.readdirSync(directory), [], 'emptied at start');
  const row = (n: number, rowId: string): { scn: bigint; operationCode: number; owner: string; table: string; sqlRedo: string; rowId: string } => ({
    scn: BigInt(n),
    operationCode: OPERATION.insert,
    owner: 'HR',
    table: 'NOTES',
    sqlRedo: `insert into "HR"."NOTES"("BODY","N") values ('r${n} \u00e9',' ${n}');`,
    rowId,
  });
  buffer.begin('A', 1, 10n, true);
  buffer.begin('B', 1, 11n, true);
  for (let i = 0; i < 6; i++) buffer.add('A', row(20 + i, `RA${i % 3}`));
  buffer.add('B', row(40, 'RB0'));
  assert.ok(buffer.spills >= 1 && buffer.bytesSpilled > 0 && buffer.bytesInMemory <= 500);
  assert.ok(fs.readdirSync(directory).includes('A.jsonl'));
  assert.equal(buffer.undo('A', 'RA1'), true); // the latest RA1: row 24
  assert.equal(buffer.undo('A', 'RA1'), true); // then row 21
  assert.equal(buffer.undo('A', 'NONE'), false);
  buffer.add('A', row(26, 'RA2'));
  assert.equal(buffer.oldestStart(), 10n);
  assert.deepEqual([...buffer.take('A')].map((r) => Number(r.scn)), [20, 22, 23, 25, 26]);
  assert.ok(!fs.readdirSync(directory).includes('A.jsonl'), 'deleted at commit');
  buffer.discard('B');
  assert.equal(buffer.oldestStart(), null);
  // Past maxSpillBytes: one line naming the XID, its start SCN, its size and the option.
  buffer.begin('0A001F00E3010000', 2, 77n, true);
  assert.throws(
    () => {
      for (let i = 0; i < 200; i++) buffer.add('0A001F00E3010000', row(100 + i, `R${i}`));
    },
    (e: unknown) => e instanceof SitesyncError && !e.message.includes('\n') && ['0A001F00E3010000', 'SCN 77', 'maxSpillBytes', 'bytes'].every((p) => e.message.includes(p)),
  );
  buffer.clear();
  assert.deepEqual(fs.readdirSync(directory), []);
});

test('savepoint rollback (ROLLBACK=1 rows) undoes exactly the changes since', async () => {
  const h = new Harness({ maxBufferBytes: 300 });
  await h.start();
  const t0 = h.tx();
  insertItem(t0, 1, 'before');
  t0.commit();
  const t = h.tx();
  t.update('HR', 'ITEMS', { ID: '1' }, { NAME: 'kept' });
  t.savepoint('a');
  t.update('HR', 'ITEMS', { ID: '1' }, { NAME: 'undone' });
  insertItem(t, 2, 'undone');
  t.delete('HR', 'ITEMS', { ID: '1' });
  t.insert('HR', 'NOTES', { BODY: 'undone', N: '1' });
  t.savepoint('b');
  t.rollbackTo('a');
  insertItem(t, 3, 'after');
  t.savepoint('c');
  t.update('HR', 'ITEMS', { ID: '1' }, { NAME: 'undone too' });
  t.rollbackTo('c');
  t.commit();
  const whole = h.tx();
  insertItem(whole, 9, 'rolled back');
  whole.rollback();
  const all = h.tx();
  all.savepoint('s');
  insertItem(all, 8, 'gone');
  all.rollbackTo('s');
  const emptyScn = all.commit();
  await h.drain();
  await h.stop();
  assert.deepEqual(h.runner.delivered[1]!.changes.map(plain), [
    { op: 'update', table: 'HR.ITEMS', columns: ['ID', 'NAME', 'PRICE', 'AT'], oldRow: null, newRow: ['1', 'kept', canonicalText(h.sim.describeTable('HR', 'ITEMS')!.columns[2]!, '1.5'), null] },
    { op: 'insert', table: 'HR.ITEMS', columns: ['ID', 'NAME', 'PRICE', 'AT'], oldRow: null, newRow: ['3', 'after', canonicalText(h.sim.describeTable('HR', 'ITEMS')!.columns[2]!, '1.5'), null] },
  ]);
  assert.equal(h.runner.delivered.length, 2);
  assert.deepEqual(h.runner.skips.map((s) => [s.position, s.reason]), [[formatPosition({ scn: emptyScn, thread: 1, xid: all.xid }), 'empty']]);
  assert.deepEqual(h.sim.rows('HR', 'ITEMS').map((r) => r[1]), ['kept', 'after']);
  assert.ok((h.totals.undone ?? 0) >= 7);
});

test('DBZ-8060 restart in the middle of a commit sent in parts resends it whole', async () => {
  const h = new Harness({ maxPartBytes: 100, batchRows: 2 });
  await h.start();
  const small = h.tx();
  insertItem(small, 1, 'first');
  const smallScn = small.commit();
  await h.drain();
  const big = h.tx();
  for (let i = 10; i < 20; i++) insertItem(big, i, `row ${i}`);
  const bigScn = big.commit();
  const bigPosition = formatPosition({ scn: bigScn, thread: 1, xid: big.xid });
  let crashed = false;
  h.runner.onPart = (_tx, part) => {
    if (!crashed && part.index === 1) {
      crashed = true;
      void h.crash();
    }
  };
  while (!crashed) {
    await h.source!.heartbeat();
    await tick(1);
  }
  await h.crash();
  const persisted = parseCheckpoint(h.sim.bookkeeping.captureProgress.get(SITE)!.checkpoint);
  assert.ok(persisted.after < bigPosition && persisted.resume < bigScn, 'the progress row never points inside the transaction');
  h.runner.onPart = null;
  await h.start();
  await h.drain();
  await h.stop();
  const parts = h.runner.parts.filter((p) => p.position === bigPosition).map((p) => p.part!.index);
  assert.deepEqual(parts.slice(0, 2), [0, 1]);
  assert.equal(parts[2], 0, 'resent from part 0');
  assert.deepEqual(h.runner.delivered.map((t) => t.position), [formatPosition({ scn: smallScn, thread: 1, xid: small.xid }), bigPosition]);
  assert.deepEqual(ids(h.runner.delivered)[1], ['10', '11', '12', '13', '14', '15', '16', '17', '18', '19']);
});

test('CSF continuation rows joined', async () => {
  const h = new Harness({ csfChunk: 25 });
  await h.start();
  const t = h.tx();
  const long = `it's ${'a'.repeat(60)} ''quoted'' ${EXTRA_NAME}`;
  t.insert('HR', 'ITEMS', { ID: '1', NAME: long, PRICE: '12345.67', AT: '2026-01-02 03:04:05.123456789' });
  t.update('HR', 'ITEMS', { ID: '1' }, { NAME: `${long} again` });
  t.insert('HR', 'NOTES', { BODY: 'x'.repeat(150), N: null });
  t.commit();
  // The reader gives pieces with CSF = 1 but the last.
  const reader = h.sim.reader();
  const session = await reader.mine(await reader.logs(0n), 0n, h.sim.scn, ['HR']);
  const rows: MinedRow[] = await session.next(1000);
  const inserts = rows.filter((r) => r.operationCode === OPERATION.insert);
  assert.ok(inserts.some((r) => r.csf) && inserts.filter((r) => r.csf).every((r) => (r.sqlRedo ?? '').length <= 25));
  await h.drain();
  await h.stop();
  const columns = h.sim.describeTable('HR', 'ITEMS')!.columns;
  assert.deepEqual(h.runner.delivered[0]!.changes.map(plain), [
    { op: 'insert', table: 'HR.ITEMS', columns: ['ID', 'NAME', 'PRICE', 'AT'], oldRow: null, newRow: ['1', long, canonicalText(columns[2]!, '12345.67'), canonicalText(columns[3]!, '2026-01-02 03:04:05.123456789')] },
    { op: 'update', table: 'HR.ITEMS', columns: ['ID', 'NAME', 'PRICE', 'AT'], oldRow: null, newRow: ['1', `${long} again`, canonicalText(columns[2]!, '12345.67'), canonicalText(columns[3]!, '2026-01-02 03:04:05.123456789')] },
    { op: 'insert', table: 'HR.NOTES', columns: ['BODY', 'N'], oldRow: null, newRow: ['x'.repeat(150), null] },
  ]);
  assert.ok((h.totals.csfJoined ?? 0) >= 3);
});

test('relayed transaction dropped, seen moved; a marker after a part stops', async () => {
  const h = new Harness();
  await h.start();
  const l1 = h.tx();
  insertItem(l1, 1, 'local');
  const s1 = l1.commit();
  const r1 = h.tx(1);
  r1.insert('SITESYNC', 'APPLY_PROGRESS', { SOURCE: 'london', SOURCE_KIND: 'postgres', POSITION: '0/1', COMMIT_TIME_MICROS: '1790000000123456', APPLIED_TRANSACTIONS: '1' });
  insertItem(r1, 2, 'from london');
  const rs1 = r1.commit();
  const l2 = h.tx();
  l2.update('HR', 'ITEMS', { ID: '2' }, { NAME: 'local again' });
  const s2 = l2.commit();
  const r2 = h.tx();
  r2.update('SITESYNC', 'APPLY_PROGRESS', { SOURCE: 'london' }, { COMMIT_TIME_MICROS: '1790000000999999' });
  r2.delete('HR', 'ITEMS', { ID: '1' });
  const rs2 = r2.commit();
  await h.drain();
  await h.stop();
  const p = (scn: bigint, t: SimOracleTransaction): string => formatPosition({ scn, thread: 1, xid: t.xid });
  assert.deepEqual(h.runner.delivered.map((t) => [t.position, t.seen]), [
    [p(s1, l1), {}],
    [p(s2, l2), { london: 1790000000123456n }],
  ]);
  assert.deepEqual(h.runner.skips.map((s) => [s.position, s.reason, s.seen]), [
    [p(rs1, r1), 'relayed', { london: 1790000000123456n }],
    [p(rs2, r2), 'relayed', { london: 1790000000999999n }],
  ]);
  assert.deepEqual(JSON.parse(h.sim.bookkeeping.captureProgress.get(SITE)!.seen), { london: '1790000000999999' });

  const bad = new Harness({ maxPartBytes: 60 });
  await bad.start();
  const t = bad.tx();
  insertItem(t, 1, 'first');
  insertItem(t, 2, 'second');
  t.insert('SITESYNC', 'APPLY_PROGRESS', { SOURCE: 'london', SOURCE_KIND: 'postgres', POSITION: '1', COMMIT_TIME_MICROS: '5', APPLIED_TRANSACTIONS: '1' });
  t.commit();
  await bad.source!.heartbeat();
  await assert.rejects(bad.source!.ended!, (e: unknown) => e instanceof DecodeError && /after changes of it already went out/.test(e.message) && !e.message.includes('\n'));
  assert.ok(bad.runner.parts.length > 0);
  assert.deepEqual(bad.runner.delivered, []);
  await bad.stop();
});

test('LOB columns left out with a warning', async () => {
  const h = new Harness();
  h.sim.createTable('HR', 'DOCS', [
    { name: 'ID', type: 'NUMBER', precision: 9, scale: 0, keyOrdinal: 1 },
    { name: 'TITLE', type: 'VARCHAR2', length: 40 },
    { name: 'BODY', type: 'CLOB' },
    { name: 'PIC', type: 'BLOB' },
  ]);
  await h.start();
  const t1 = h.tx();
  t1.insert('HR', 'DOCS', { ID: '1', TITLE: 'a', BODY: 'long text', PIC: '0AFF' });
  t1.insert('HR', 'DOCS', { ID: '2', TITLE: 'b', BODY: null, PIC: null });
  t1.commit();
  const t2 = h.tx();
  t2.update('HR', 'DOCS', { ID: '1' }, { BODY: 'only the LOB' });
  t2.commit();
  const t3 = h.tx();
  t3.update('HR', 'DOCS', { ID: '2' }, { TITLE: 'c', BODY: 'and the LOB' });
  t3.delete('HR', 'DOCS', { ID: '1' });
  t3.commit();
  await h.drain();
  await h.stop();
  assert.deepEqual(h.runner.delivered.map((t) => t.changes.map(plain)), [
    [
      { op: 'insert', table: 'HR.DOCS', columns: ['ID', 'TITLE'], oldRow: null, newRow: ['1', 'a'] },
      { op: 'insert', table: 'HR.DOCS', columns: ['ID', 'TITLE'], oldRow: null, newRow: ['2', 'b'] },
    ],
    [
      { op: 'update', table: 'HR.DOCS', columns: ['ID', 'TITLE'], oldRow: null, newRow: ['2', 'c'] },
      { op: 'delete', table: 'HR.DOCS', columns: ['ID', 'TITLE'], oldRow: ['1', null], newRow: null },
    ],
  ]);
  const warnings = h.lines.filter((l) => l.level === 'warn');
  assert.equal(warnings.length, 1, JSON.stringify(warnings));
  assert.match(warnings[0]!.text, /HR\.DOCS .*LOB columns \(BODY, PIC\)/);
});

test('a column added (DDL) shows up from then on; a keyless table says whole old images; names and owners filtered', async () => {
  const h = new Harness({ tables: ['HR.ITEMS', '"HR"."NOTES"'] });
  h.sim.createTable('HR', 'OTHER', [{ name: 'X', type: 'NUMBER' }]);
  await h.start();
  const t1 = h.tx();
  insertItem(t1, 1);
  t1.insert('HR', 'NOTES', { BODY: 'n', N: '1' });
  t1.insert('HR', 'OTHER', { X: '1' });
  t1.commit();
  await h.drain();
  h.sim.addColumn('HR', 'ITEMS', { name: 'EXTRA', type: 'VARCHAR2', length: 10 });
  const t2 = h.tx();
  t2.update('HR', 'ITEMS', { ID: '1' }, { EXTRA: 'e' });
  t2.update('HR', 'NOTES', { BODY: 'n' }, { N: '2' });
  t2.delete('HR', 'NOTES', { BODY: 'n' });
  t2.commit();
  await h.drain();
  await h.stop();
  const price = canonicalText(h.sim.describeTable('HR', 'ITEMS')!.columns[2]!, '1.5');
  assert.deepEqual(h.runner.delivered.map((t) => t.changes.map(plain)), [
    [
      { op: 'insert', table: 'HR.ITEMS', columns: ['ID', 'NAME', 'PRICE', 'AT'], oldRow: null, newRow: ['1', 'n1', price, null] },
      { op: 'insert', table: 'HR.NOTES', columns: ['BODY', 'N'], oldRow: null, newRow: ['n', '1'] },
    ],
    [
      { op: 'update', table: 'HR.ITEMS', columns: ['ID', 'NAME', 'PRICE', 'AT', 'EXTRA'], oldRow: null, newRow: ['1', 'n1', price, null, 'e'] },
      { op: 'update', table: 'HR.NOTES', columns: ['BODY', 'N'], oldRow: ['n', '1'], newRow: ['n', '2'] },
      { op: 'delete', table: 'HR.NOTES', columns: ['BODY', 'N'], oldRow: ['n', '2'], newRow: null },
    ],
  ]);
  assert.equal(h.runner.delivered[1]!.changes[1]!.op === 'update' && h.runner.delivered[1]!.changes[1]!.relation.replicaIdentity, 'f');
  assert.ok(h.lines.some((l) => l.level === 'info' && /DDL on HR\.ITEMS .*EXTRA/.test(l.text)), JSON.stringify(h.lines));
  assert.deepEqual(minedOwners(['HR.ITEMS', 'app.t', '"Mixed"."T"'], 'SITESYNC'), ['HR', 'Mixed', 'SITESYNC', 'APP', 'app'].sort());
  assert.deepEqual(splitTableName('"a""b"."C"'), { owner: 'a"b', table: 'C', ownerQuoted: true, tableQuoted: true });
  const only = capturedTables(['"hr".items'], 'SITESYNC');
  assert.deepEqual([only('hr', 'ITEMS'), only('hr', 'items'), only('HR', 'ITEMS'), only('SITESYNC', 'APPLY_PROGRESS')], [true, true, false, false]);
});

test('prepare refuses a database capture cannot run on; a lost connection breaks the stream as retryable; a stale confirmation never moves the row back', async () => {
  const h = new Harness();
  h.sim.setFacts({ archiveLog: false });
  await assert.rejects(h.start(), (e: unknown) => e instanceof SitesyncError && /ARCHIVELOG/.test(e.message));
  h.sim.setFacts({ archiveLog: true });
  await h.start();
  h.sim.failNextReaderCall();
  await assert.rejects(h.source!.ended!, (e: unknown) => e instanceof SitesyncError && e.code === 'SITESYNC_ERR_DATABASE_UNREACHABLE');
  await h.stop();
  await h.start();
  const t1 = h.tx();
  insertItem(t1, 1);
  const p1 = formatPosition({ scn: t1.commit(), thread: 1, xid: t1.xid });
  await h.drain();
  const t2 = h.tx();
  insertItem(t2, 2);
  t2.commit();
  await h.drain();
  const row = h.sim.bookkeeping.captureProgress.get(SITE)!;
  await h.source!.confirm(`${p1}:${'0'.repeat(16)}`, { lastPublished: p1, seen: {} });
  assert.deepEqual(h.sim.bookkeeping.captureProgress.get(SITE), row);
  assert.equal(await h.source!.settle(), true);
  await h.stop();
  assert.deepEqual(h.sim.bookkeeping.captureProgress.get(SITE), row, 'close wrote the older checkpoint');
  assert.ok(h.lines.some((l) => l.level === 'warn' && /below the checkpoint already confirmed/.test(l.text)));
  assert.deepEqual(await h.source!.lag(), { bytes: 0, seconds: 0 });
  // Commit times: the database's offset to UTC.
  assert.equal(commitTimeMicros('2026-10-25T02:30:00+02:00') + 3_600_000_000n, commitTimeMicros('2026-10-25T02:30:00+01:00'));
  assert.throws(() => commitTimeMicros('2026-10-25 02:30:00'), DecodeError);
});

test('first start: a transaction already open is sent whole from its START, never with only what came after', async () => {
  const h = new Harness({ recordsPerLog: 4 });
  const before = h.tx();
  insertItem(before, 1, 'committed before capture');
  before.commit();
  const open = h.tx(1);
  const beforeOpen = h.sim.scn;
  insertItem(open, 2, 'before capture');
  open.update('HR', 'ITEMS', { ID: '2' }, { NAME: 'still before' });
  h.sim.switchLog(1);
  h.sim.archive();
  await h.start();
  const persisted = parseCheckpoint(h.sim.bookkeeping.captureProgress.get(SITE)!.checkpoint);
  assert.equal(persisted.after, lastAt(h.sim.scn), 'nothing committed before capture began is sent');
  assert.ok(persisted.resume <= beforeOpen, `mining resumes below the open transaction's START (resume ${persisted.resume}, START above ${beforeOpen})`);
  insertItem(open, 3, 'after capture began');
  const openScn = open.commit();
  await h.drain();
  await h.stop();
  assert.deepEqual(h.runner.delivered.map((t) => t.position), [formatPosition({ scn: openScn, thread: 1, xid: open.xid })]);
  assert.deepEqual(ids(h.runner.delivered), [['2', '2', '3']]);
  assert.equal(h.totals.withoutStart ?? 0, 0);
  assert.deepEqual(h.lines.filter((l) => l.level === 'warn'), []);
});

test('first start: the reads are ordered so that a commit or a START between them is never cut', async () => {
  const h = new Harness();
  const quick = h.tx();
  insertItem(quick, 1, 'commits while capture starts');
  let late: SimOracleTransaction | null = null;
  const makeReader = h.sim.reader.bind(h.sim);
  h.sim.reader = () => {
    const reader = makeReader();
    const query = reader.oldestOpenTransactionScn.bind(reader);
    reader.oldestOpenTransactionScn = async () => {
      // The open transaction commits just before V$TRANSACTION is read, and another starts just after.
      if (late === null) quick.commit();
      const oldest = await query();
      if (late === null) {
        late = h.tx();
        insertItem(late, 5, 'starts while capture starts');
      }
      return oldest;
    };
    return reader;
  };
  await h.start();
  insertItem(late!, 6, 'later');
  const lateScn = late!.commit();
  await h.drain();
  await h.stop();
  // `quick` committed before the CURRENT_SCN capture starts at: not sent. `late` is sent whole.
  assert.deepEqual(h.runner.delivered.map((t) => t.position), [formatPosition({ scn: lateScn, thread: 1, xid: late!.xid })]);
  assert.deepEqual(ids(h.runner.delivered), [['5', '6']]);
  assert.deepEqual(h.lines.filter((l) => l.level === 'warn'), []);
});

test('a transaction whose START capture never read stops capture, naming it and how to move the resume SCN back, rather than go out in part', async () => {
  const h = new Harness({ recordsPerLog: 4 });
  const open = h.tx(1);
  insertItem(open, 1, 'before the checkpoint');
  // A checkpoint whose resume SCN passed that transaction's START (as a hand-edited row, or a bug, would): its
  // first change and START lie at or below the resume SCN and are never mined.
  const scn = h.sim.scn;
  h.sim.bookkeeping.captureProgress.set(SITE, { lastPublished: null, checkpoint: formatCheckpoint({ after: lastAt(scn), resume: scn }), seen: '{}' });
  await h.start();
  insertItem(open, 2, 'after it');
  open.commit();
  await h.drain();
  const e = h.broken;
  assert.ok(e instanceof DecodeError && e.message.includes(open.xid) && /stopping rather than send it in part/.test(e.message) && !e.message.includes('\n'), String(e));
  assert.deepEqual(h.runner.delivered, [], 'nothing of it went out');
  assert.deepEqual(h.runner.parts, []);
  await h.stop();
});
