/**
 * SQL Server capture (capture-instances.ts, change-stream.ts, sqlserver-source.ts) against the simulator of
 * test/helpers/sqlserver-simulator.ts: a property test over random schedules (interleaved transactions, capture
 * job runs of random size, relayed transactions, a second capture instance after a schema change, cleanup below
 * the persisted checkpoint, restarts and crashes at random points, connection losses), and the data-loss bugs
 * of CDC readers as named scenarios.
 *
 * The runner is modelled as the capture runner behaves: it keeps what the broker holds across restarts of the
 * source, drops a transaction at or below the last one it published (a duplicate after a restart), assembles
 * parts (a restart resends a transaction from part 0), and confirms every checkpoint it is given.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { SourceHandler } from '../../src/capture/source.ts';
import { DecodeError, SitesyncError } from '../../src/errors.ts';
import type { Change, SeenSites, Transaction, TransactionPart } from '../../src/events/transaction.ts';
import type { Logger } from '../../src/observability/logger.ts';
import type { CaptureInstance, ChangeRow, Lsn, ProjectedValue } from '../../connectors/sqlserver/cdc-reader.ts';
import { lsnBefore, planInterval, type InstanceRead } from '../../connectors/sqlserver/capture-instances.ts';
import { ChangeStream, compareChangeKey, endTimeMicros, RowMerger } from '../../connectors/sqlserver/change-stream.ts';
import { describeLsn, ZERO_LSN } from '../../connectors/sqlserver/sqlserver-positions.ts';
import { SqlServerSource } from '../../connectors/sqlserver/sqlserver-source.ts';
import { SqlServerSink } from '../../connectors/sqlserver/sqlserver-sink.ts';
import { datetimeMicros, SimulatedSqlServer, type SimColumn, type SimTransaction } from '../helpers/sqlserver-simulator.ts';
import { simulatedConnect } from '../helpers/sqlserver-simulated-apply.ts';

const SITE = 'paris';
const ITEMS: SimColumn[] = [
  { name: 'id', type: 'int', keyOrdinal: 1 },
  { name: 'name', type: 'nvarchar', maxLength: 80 },
  { name: 'price', type: 'decimal', precision: 12, scale: 2 },
];
const NOTES: SimColumn[] = [
  { name: 'body', type: 'nvarchar', maxLength: 80 },
  { name: 'n', type: 'int' },
];
const EXTRA: SimColumn = { name: 'extra', type: 'nvarchar', maxLength: 40 };

// ─── the runner's side ─────────────────────────────────────────────────────────────────────────────────────

interface Skip {
  readonly position: string;
  readonly reason: 'relayed' | 'empty';
  readonly seen: SeenSites;
}

class Runner {
  /** Whole transactions at the broker, in order. */
  readonly delivered: Transaction[] = [];
  readonly skips: Skip[] = [];
  readonly parts: { position: string; part: TransactionPart | null }[] = [];
  lastDelivered: Lsn | null = null;
  /** The last transaction published or skipped: anything at or below it again is a duplicate. */
  handled: Lsn | null = null;
  seen: SeenSites = {};
  idleAt: Lsn | null = null;
  generation = 0;
  source: SqlServerSource | null = null;
  readonly confirms: Promise<unknown>[] = [];
  readonly confirmErrors: unknown[] = [];
  private assembling: { position: string; changes: Change[]; next: number } | null = null;
  /** Called on every part (tests crash the source from here). */
  onPart: ((tx: Transaction, part: TransactionPart) => void) | null = null;

  /** A handler for one source: calls from an older (crashed) source are not heard. */
  handlerFor(generation: number): SourceHandler {
    const live = (): boolean => generation === this.generation;
    return {
      transaction: (tx, part, checkpoint) => {
        if (live()) this.transaction(tx, part, checkpoint);
      },
      skipped: (position, checkpoint, reason, seen) => {
        if (!live()) return;
        if (this.handled !== null && position <= this.handled) return; // a duplicate after a restart
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

  newGeneration(source: SqlServerSource): number {
    this.generation++;
    this.source = source;
    this.assembling = null; // an incomplete transaction at the broker is dropped; the source resends it whole
    this.idleAt = null;
    return this.generation;
  }

  private transaction(tx: Transaction, part: TransactionPart | null, checkpoint: string | null): void {
    this.parts.push({ position: tx.position, part });
    if (this.handled !== null && tx.position <= this.handled) return; // a duplicate
    let whole: Transaction;
    if (part) {
      this.onPart?.(tx, part);
      if (part.index === 0) this.assembling = { position: tx.position, changes: [], next: 0 };
      const a = this.assembling;
      assert.ok(a && a.position === tx.position && a.next === part.index, `part ${part.index} of ${tx.position} out of order`);
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
    assert.equal(checkpoint, tx.position);
    this.delivered.push(whole);
    this.lastDelivered = tx.position;
    this.handled = tx.position;
    this.seen = tx.seen;
    this.confirm(checkpoint!);
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
  timeZone?: string;
  maxPartBytes?: number;
  batchRows?: number;
  progressWriteIntervalMs?: number;
  tables?: string[] | null;
}

/** Every harness made: stopped after the tests, so that a failing test leaves no poll loop running. */
const harnesses = new Set<Harness>();
after(async () => {
  for (const h of harnesses) await h.stop().catch(() => undefined);
});

class Harness {
  readonly sim: SimulatedSqlServer;
  readonly runner = new Runner();
  readonly lines: { level: string; text: string }[] = [];
  source: SqlServerSource | null = null;
  broken: unknown = null;

  constructor(readonly options: HarnessOptions = {}) {
    harnesses.add(this);
    this.sim = new SimulatedSqlServer({ timeZone: options.timeZone ?? 'UTC' });
    this.sim.createApplyProgress();
    this.sim.createTable('dbo', 'items', ITEMS);
    this.sim.enableCdc('dbo', 'items');
    this.sim.createTable('dbo', 'notes', NOTES);
    this.sim.enableCdc('dbo', 'notes');
  }

  async start(): Promise<SqlServerSource> {
    const source = new SqlServerSource({
      site: SITE,
      reader: () => this.sim.reader(),
      tables: this.options.tables ?? null,
      maxPartBytes: this.options.maxPartBytes ?? 1 << 20,
      logger: quietLogger(this.lines),
      pollIntervalMs: 1,
      batchRows: this.options.batchRows ?? 1000,
      progressWriteIntervalMs: this.options.progressWriteIntervalMs ?? 0,
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
    await Promise.allSettled(this.runner.confirms);
  }

  async restart(crash: boolean): Promise<void> {
    if (crash) await this.crash();
    else await this.source!.close();
    await this.start();
  }

  tx(): SimTransaction {
    return this.sim.begin();
  }

  /** Runs the capture job and waits until the source said idle at the last transaction it wrote (or broke). */
  async drain(job = true): Promise<void> {
    if (job) this.sim.runCaptureJob();
    const target = this.sim.maxTransactionLsn();
    const deadline = Date.now() + 5000;
    while (!this.broken) {
      if (target === null || (this.runner.idleAt !== null && this.runner.idleAt >= target)) break;
      if (Date.now() > deadline) throw new Error(`capture did not reach ${target} (idle at ${this.runner.idleAt})`);
      await this.source!.heartbeat();
      await tick(1);
    }
    await Promise.allSettled(this.runner.confirms);
  }

  async stop(): Promise<void> {
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
}

function plain(change: Change): Plain {
  assert.ok(change.op === 'insert' || change.op === 'update' || change.op === 'delete');
  return {
    op: change.op,
    table: `${change.relation.schema}.${change.relation.table}`,
    columns: change.relation.columns.map((c) => c.name),
    oldRow: change.op === 'insert' ? null : change.oldRow ? [...change.oldRow.values] : null,
    newRow: change.op === 'delete' ? null : [...change.newRow.values],
  };
}

function text(value: ProjectedValue | undefined): string | null {
  if (value === null || value === undefined) return null;
  return String(value);
}

/** The changes of one committed transaction as capture must say them, given each table's columns then. */
function expectedChanges(changes: ReturnType<SimulatedSqlServer['committedLog']>[number]['changes'], columnsOf: (table: string) => SimColumn[] | null): Plain[] {
  const out: Plain[] = [];
  for (let i = 0; i < changes.length; i++) {
    const c = changes[i]!;
    const table = `${c.schema}.${c.table}`;
    const columns = columnsOf(table);
    if (!columns) continue;
    const names = columns.map((col) => col.name);
    const keys = columns.filter((col) => (col.keyOrdinal ?? 0) > 0).map((col) => col.name);
    const values = (image: Readonly<Record<string, ProjectedValue>>) => names.map((n) => text(image[n]));
    const keyOnly = (image: Readonly<Record<string, ProjectedValue>>) => names.map((n) => (keys.length === 0 || keys.includes(n) ? text(image[n]) : null));
    const next = changes[i + 1];
    const third = changes[i + 2];
    const sameOperation = (d: typeof c | undefined): boolean => d !== undefined && `${d.schema}.${d.table}` === table && d.commandId === c.commandId;
    if (c.operation === 1 && keys.length > 0 && next?.operation === 2 && sameOperation(next) && !sameOperation(third)) {
      // A key update, logged as a delete and an insert of one operation: one update with the old key.
      out.push({ op: 'update', table, columns: names, oldRow: keyOnly(c.image), newRow: values(next.image) });
      i++;
    } else if (c.operation === 2) out.push({ op: 'insert', table, columns: names, oldRow: null, newRow: values(c.image) });
    else if (c.operation === 1) out.push({ op: 'delete', table, columns: names, oldRow: keyOnly(c.image), newRow: null });
    else if (c.operation === 3) {
      const after = changes[++i]!;
      assert.equal(after.operation, 4);
      const keyChanged = keys.some((k) => text(c.image[k]) !== text(after.image[k]));
      out.push({ op: 'update', table, columns: names, oldRow: keys.length === 0 ? values(c.image) : keyChanged ? keyOnly(c.image) : null, newRow: values(after.image) });
    }
  }
  return out;
}

// ─── the property ──────────────────────────────────────────────────────────────────────────────────────────

type Step =
  | { k: 'begin' }
  | { k: 'op'; tx: number; op: 'insert' | 'update' | 'updateKey' | 'delete'; notes: boolean; id: number; val: number }
  | { k: 'commit'; tx: number }
  | { k: 'rollback'; tx: number }
  | { k: 'relayed'; items: number }
  | { k: 'job'; n: number }
  | { k: 'schema' }
  | { k: 'cleanup' }
  | { k: 'restart'; crash: boolean }
  | { k: 'connectionLoss' }
  | { k: 'drain' }
  | { k: 'tick' }
  | { k: 'clock'; micros: number };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 2, arbitrary: fc.constant<Step>({ k: 'begin' }) },
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
  { weight: 5, arbitrary: fc.record({ k: fc.constant('commit' as const), tx: fc.nat(5) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('rollback' as const), tx: fc.nat(5) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('relayed' as const), items: fc.nat(2) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('job' as const), n: fc.integer({ min: 1, max: 4 }) }) },
  { weight: 1, arbitrary: fc.constant<Step>({ k: 'schema' }) },
  { weight: 1, arbitrary: fc.constant<Step>({ k: 'cleanup' }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('restart' as const), crash: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant<Step>({ k: 'connectionLoss' }) },
  { weight: 2, arbitrary: fc.constant<Step>({ k: 'drain' }) },
  { weight: 2, arbitrary: fc.constant<Step>({ k: 'tick' }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('clock' as const), micros: fc.integer({ min: 1, max: 5_000_000 }) }) },
);

/** How often the schedules met what they are there to meet (asserted, so that the property cannot go hollow). */
const coverage = { runs: 0, delivered: 0, parts: 0, relayed: 0, secondInstance: 0, readFromSecond: 0, cleanups: 0, restarts: 0, crashes: 0, connectionLosses: 0, resent: 0 };

async function runSchedule(steps: readonly Step[], config: { maxPartBytes: number; batchRows: number; progressWriteIntervalMs: number }): Promise<void> {
  const h = new Harness(config);
  const sim = h.sim;
  let v2Start: Lsn | null = null;
  let relayedMicros = 0n;
  const relayedAt = new Map<Lsn, bigint>();
  const open: SimTransaction[] = [];
  await h.start();
  try {
    for (const step of steps) {
      if (h.broken) throw h.broken;
      switch (step.k) {
        case 'begin':
          if (open.length < 4) open.push(sim.begin());
          break;
        case 'op': {
          if (open.length === 0) open.push(sim.begin());
          const tx = open[step.tx % open.length]!;
          try {
            if (step.notes) {
              if (step.op === 'insert') tx.insert('dbo', 'notes', { body: `b${step.id}`, n: step.val });
              else if (step.op === 'delete') tx.delete('dbo', 'notes', { body: `b${step.id}` });
              else tx.update('dbo', 'notes', { body: `b${step.id}` }, { n: step.val });
            } else {
              const extra: Record<string, ProjectedValue> = v2Start !== null ? { extra: `e${step.val}` } : {};
              if (step.op === 'insert') tx.insert('dbo', 'items', { id: step.id, name: `n${step.val}`, price: `${step.val}.50`, ...extra });
              else if (step.op === 'delete') tx.delete('dbo', 'items', { id: step.id });
              else if (step.op === 'update') tx.update('dbo', 'items', { id: step.id }, { name: `u${step.val}`, price: `${step.val}.25`, ...extra });
              else tx.update('dbo', 'items', { id: step.id }, { id: step.id + 7 + (step.val % 5) });
            }
          } catch (error) {
            if (!/SimLockError|SimDuplicateKeyError/.test((error as Error).name)) throw error;
          }
          break;
        }
        case 'commit':
        case 'rollback': {
          if (open.length === 0) break;
          const [tx] = open.splice(step.tx % open.length, 1);
          if (step.k === 'commit') tx!.commit();
          else tx!.rollback();
          break;
        }
        case 'relayed': {
          // A transaction the sink applied: apply_progress first, then the changes it brought.
          const tx = sim.begin();
          relayedMicros += 1_000_000n;
          try {
            if (tx.update('sitesync', 'apply_progress', { source: 'london' }, { position: relayedMicros.toString(16).toUpperCase(), commit_time_micros: relayedMicros.toString() }) === 0) {
              tx.insert('sitesync', 'apply_progress', { source: 'london', source_kind: 'postgres', position: '1', commit_time_micros: relayedMicros.toString(), applied_transactions: '1' });
            }
            for (let i = 0; i < step.items; i++) tx.insert('dbo', 'items', { id: 100 + Number(relayedMicros / 1_000_000n) * 3 + i, name: 'relayed', price: '1.00' });
            relayedAt.set(tx.commit(), relayedMicros);
          } catch (error) {
            tx.rollback();
            relayedMicros -= 1_000_000n;
            if (!/SimLockError|SimDuplicateKeyError/.test((error as Error).name)) throw error;
          }
          break;
        }
        case 'job':
          sim.runCaptureJob(step.n);
          break;
        case 'schema':
          if (v2Start !== null || open.length > 0) break;
          sim.addColumn('dbo', 'items', EXTRA);
          sim.enableCdc('dbo', 'items', 'dbo_items_v2');
          v2Start = sim.captureInstance('dbo_items_v2')!.startLsn;
          break;
        case 'cleanup': {
          // The cleanup job, below what capture has persisted (the retention is long enough).
          const row = sim.bookkeeping.captureProgress.get(SITE)!;
          if (row.checkpoint !== ZERO_LSN) {
            sim.cleanup(row.checkpoint);
            coverage.cleanups++;
          }
          break;
        }
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
          // else: a confirm's write met it (the next confirm writes again)
          break;
        }
        case 'drain':
          await h.drain();
          break;
        case 'tick':
          await tick(1);
          break;
        case 'clock':
          sim.advanceClock(BigInt(step.micros));
          break;
      }
    }
    for (const tx of open) tx.commit();
    await h.drain();
    if (h.broken) throw h.broken;
    // and once more from the persisted row: nothing is sent again that was confirmed
    await h.restart(false);
    await h.drain();
    if (h.broken) throw h.broken;
  } finally {
    await h.stop();
  }

  // The oracle.
  const itemsV1 = ITEMS;
  const itemsV2 = [...ITEMS, EXTRA];
  const expected: { position: Lsn; micros: bigint; seen: SeenSites; changes: Plain[] }[] = [];
  const expectedSkips: { position: Lsn; seen: SeenSites }[] = [];
  let seen: SeenSites = {};
  for (const tx of sim.committedLog()) {
    const relayed = relayedAt.get(tx.commitLsn);
    if (relayed !== undefined) {
      seen = { london: relayed };
      expectedSkips.push({ position: tx.commitLsn, seen });
      continue;
    }
    const changes = expectedChanges(tx.changes, (table) =>
      table === 'dbo.items' ? (v2Start !== null && v2Start <= tx.commitLsn ? itemsV2 : itemsV1) : table === 'dbo.notes' ? NOTES : null,
    );
    if (changes.length === 0) continue;
    expected.push({ position: tx.commitLsn, micros: datetimeMicros(tx.commitMicros), seen, changes });
  }
  const got = h.runner.delivered;
  assert.deepEqual(
    got.map((t) => t.position),
    expected.map((t) => t.position),
    'every committed transaction exactly once, in commit order',
  );
  for (let i = 0; i < got.length; i++) {
    assert.deepEqual(got[i]!.changes.map(plain), expected[i]!.changes, `changes of ${got[i]!.position}`);
    assert.equal(got[i]!.commitTimeMicros, expected[i]!.micros);
    assert.deepEqual(got[i]!.seen, expected[i]!.seen);
    assert.equal(got[i]!.id, `${SITE}:${got[i]!.position}`);
  }
  const relayedSkips = h.runner.skips.filter((s) => s.reason === 'relayed');
  assert.deepEqual(relayedSkips.map((s) => s.position), expectedSkips.map((s) => s.position));
  assert.deepEqual(relayedSkips.map((s) => s.seen), expectedSkips.map((s) => s.seen));
  assert.deepEqual(h.runner.confirmErrors.filter((e) => !(e instanceof SitesyncError && e.code === 'SITESYNC_ERR_DATABASE_UNREACHABLE')), []);
  assert.deepEqual(h.lines.filter((l) => l.level === 'warn' || l.level === 'error'), []);
  coverage.runs++;
  coverage.delivered += got.length;
  coverage.parts += new Set(h.runner.parts.filter((p) => p.part !== null).map((p) => p.position)).size;
  coverage.relayed += relayedSkips.length;
  if (v2Start !== null) coverage.secondInstance++;
  coverage.readFromSecond += got.filter((t) => t.changes.some((c) => c.op !== 'message' && c.op !== 'truncate' && c.relation.columns.length === 4 && c.relation.table === 'items')).length;
  coverage.resent += h.runner.parts.length - new Set(h.runner.parts.map((p) => `${p.position}/${p.part?.index ?? 'whole'}`)).size;
}

test('random schedules: every committed transaction of captured tables exactly once, in commit order, with its changes and values', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(stepArb, { minLength: 20, maxLength: 120 }),
      fc.record({ maxPartBytes: fc.constantFrom(40, 90, 1 << 20), batchRows: fc.integer({ min: 1, max: 5 }), progressWriteIntervalMs: fc.constantFrom(0, 1e9) }),
      async (steps, config) => runSchedule(steps, config),
    ),
    { numRuns: 1000, seed: 15_2026 },
  );
  for (const [what, count] of Object.entries(coverage)) assert.ok(count > 0, `no schedule met ${what}: ${JSON.stringify(coverage)}`);
});

// ─── named scenarios ───────────────────────────────────────────────────────────────────────────────────────

test('DBZ-2329 restart inside a large transaction (sent in parts) resends it whole from part 0', async () => {
  const h = new Harness({ maxPartBytes: 100, batchRows: 2 });
  await h.start();
  const small = h.tx();
  small.insert('dbo', 'items', { id: 1, name: 'first', price: '1.00' });
  const smallLsn = small.commit();
  await h.drain();
  const big = h.tx();
  for (let i = 10; i < 20; i++) big.insert('dbo', 'items', { id: i, name: `row ${i}`, price: `${i}.00` });
  const bigLsn = big.commit();
  let crashed = false;
  h.runner.onPart = (tx, part) => {
    if (!crashed && part.index === 1) {
      crashed = true;
      void h.crash();
    }
  };
  h.sim.runCaptureJob();
  while (!crashed) await tick(1);
  await h.crash();
  // The progress row never points inside the transaction.
  assert.equal(h.sim.bookkeeping.captureProgress.get(SITE)!.checkpoint, smallLsn);
  h.runner.onPart = null;
  await h.start();
  await h.drain(false);
  await h.stop();
  const parts = h.runner.parts.filter((p) => p.position === bigLsn).map((p) => p.part!.index);
  assert.deepEqual(parts.slice(0, 2), [0, 1]);
  assert.equal(parts[2], 0, 'resent from part 0');
  assert.deepEqual(h.runner.delivered.map((t) => t.position), [smallLsn, bigLsn]);
  assert.deepEqual(h.runner.delivered[1]!.changes.map((c) => plain(c).newRow![0]), ['10', '11', '12', '13', '14', '15', '16', '17', '18', '19']);
});

test('DBZ-3992/DBZ-4273 capture instance created inside the interval', async () => {
  const h = new Harness();
  await h.start();
  const t1 = h.tx();
  t1.insert('dbo', 'items', { id: 1, name: 'before', price: '1.00' });
  const lsn1 = t1.commit();
  h.sim.addColumn('dbo', 'items', EXTRA);
  const v2 = h.sim.enableCdc('dbo', 'items', 'dbo_items_v2');
  const t2 = h.tx();
  t2.insert('dbo', 'items', { id: 2, name: 'after', price: '2.00', extra: 'x' });
  t2.update('dbo', 'items', { id: 1 }, { extra: 'y' });
  const lsn2 = t2.commit();
  // One capture job run: both transactions and the new instance's start fall in one interval.
  const instances = await h.sim.reader().captureInstances();
  h.sim.runCaptureJob();
  const plan = planInterval({ site: SITE, instances, known: [], fromLsn: ZERO_LSN, toLsn: lsn2, tables: ['dbo.items'] });
  const items = plan.reads.filter((r) => r.instance.table === 'items').map((r) => [r.instance.name, r.fromLsn, r.toLsn]);
  const v2Start = h.sim.captureInstance(v2)!.startLsn;
  assert.deepEqual(items, [
    ['dbo_items', lsnBefore(h.sim.captureInstance('dbo_items')!.startLsn), lsnBefore(v2Start)],
    ['dbo_items_v2', lsnBefore(v2Start), lsn2],
  ]);
  await h.drain(false);
  await h.stop();
  const got = h.runner.delivered;
  assert.deepEqual(got.map((t) => t.position), [lsn1, lsn2]);
  assert.deepEqual(got[0]!.changes.map(plain), [{ op: 'insert', table: 'dbo.items', columns: ['id', 'name', 'price'], oldRow: null, newRow: ['1', 'before', '1.00'] }]);
  assert.deepEqual(got[1]!.changes.map(plain), [
    { op: 'insert', table: 'dbo.items', columns: ['id', 'name', 'price', 'extra'], oldRow: null, newRow: ['2', 'after', '2.00', 'x'] },
    { op: 'update', table: 'dbo.items', columns: ['id', 'name', 'price', 'extra'], oldRow: null, newRow: ['1', 'before', '1.00', 'y'] },
  ]);
});

test('second capture instance after a schema change: no change twice, new column from its start', async () => {
  const h = new Harness({ batchRows: 2 });
  await h.start();
  const write = (id: number, extra?: string): Lsn => {
    const t = h.tx();
    t.insert('dbo', 'items', { id, name: `n${id}`, price: '3.00', ...(extra ? { extra } : {}) });
    return t.commit();
  };
  const before = [write(1), write(2)];
  await h.drain();
  before.push(write(3));
  h.sim.runCaptureJob(); // read in the next interval, from the old instance
  h.sim.addColumn('dbo', 'items', EXTRA);
  const v2 = h.sim.enableCdc('dbo', 'items', 'dbo_items_v2');
  const after = [write(4, 'a'), write(5, 'b')];
  await h.drain();
  // The old instance goes once capture passed the new one's start: nothing lost, only noted.
  h.sim.disableCdc('dbo_items');
  after.push(write(6, 'c'));
  await h.drain();
  await h.restart(false);
  after.push(write(7, 'd'));
  await h.drain();
  await h.stop();
  const got = h.runner.delivered;
  assert.deepEqual(got.map((t) => t.position), [...before, ...after]);
  for (const tx of got) {
    const change = plain(tx.changes[0]!);
    const isAfter = after.includes(tx.position);
    assert.deepEqual(change.columns, isAfter ? ['id', 'name', 'price', 'extra'] : ['id', 'name', 'price']);
    assert.equal(tx.changes.length, 1);
  }
  assert.deepEqual(plain(got[got.length - 1]!.changes[0]!).newRow, ['7', 'n7', '3.00', 'd']);
  assert.ok(h.sim.captureInstance(v2));
  assert.deepEqual(h.lines.filter((l) => l.level === 'warn'), []);
  assert.ok(h.lines.some((l) => l.level === 'info' && /dbo_items .*was disabled.*nothing lost/.test(l.text)), JSON.stringify(h.lines));
});

test('cleanup job deleted rows not yet read: fails loudly naming the fix', async () => {
  const h = new Harness();
  await h.start();
  const t1 = h.tx();
  t1.insert('dbo', 'items', { id: 1, name: 'read', price: '1.00' });
  t1.commit();
  await h.drain();
  await h.source!.close();
  const checkpoint = h.sim.bookkeeping.captureProgress.get(SITE)!.checkpoint;
  const lsns: Lsn[] = [];
  for (let i = 2; i <= 4; i++) {
    const t = h.tx();
    t.insert('dbo', 'items', { id: i, name: 'unread', price: '1.00' });
    lsns.push(t.commit());
  }
  h.sim.runCaptureJob();
  h.sim.cleanup(lsns[2]!); // deletes two transactions capture never read
  await h.start();
  await assert.rejects(h.source!.ended!, (error: unknown) => {
    assert.ok(error instanceof SitesyncError);
    assert.equal(error.code, 'SITESYNC_ERR_CONFIG');
    assert.ok(!error.message.includes('\n'));
    for (const part of [`site ${SITE}`, 'dbo_items', describeLsn(checkpoint), describeLsn(lsns[2]!), "EXEC sys.sp_cdc_change_job @job_type = N'cleanup', @retention = <minutes>", 're-seed']) {
      assert.ok(error.message.includes(part), `names ${part}: ${error.message}`);
    }
    return true;
  });
  assert.deepEqual(h.runner.delivered.map((t) => plain(t.changes[0]!).newRow![1]), ['read']);
  await h.stop();
});

test('commit times in local time with daylight-saving change converted to UTC', async () => {
  const h = new Harness({ timeZone: 'Europe/Paris' });
  await h.start();
  // 2026-10-25 01:00 UTC: Paris falls back from 03:00 +02:00 to 02:00 +01:00; 02:30 happens twice.
  const times = [Date.UTC(2026, 9, 25, 0, 30, 0, 1), Date.UTC(2026, 9, 25, 0, 59, 59, 999), Date.UTC(2026, 9, 25, 1, 30), Date.UTC(2026, 2, 29, 1, 30) + 365 * 86_400_000];
  const lsns: Lsn[] = [];
  for (const [i, ms] of times.entries()) {
    h.sim.setClock(BigInt(ms) * 1000n + 123n);
    const t = h.tx();
    t.insert('dbo', 'items', { id: i, name: 'x', price: '1.00' });
    lsns.push(t.commit());
  }
  await h.drain();
  await h.stop();
  assert.deepEqual(
    h.runner.delivered.map((t) => t.commitTimeMicros),
    times.map((ms) => datetimeMicros(BigInt(ms) * 1000n + 123n)),
  );
  assert.equal(endTimeMicros('2026-10-25T02:30:00.000+02:00') + 3_600_000_000n, endTimeMicros('2026-10-25T02:30:00.000+01:00'));
  assert.equal(endTimeMicros('2026-10-25T02:30:00.1234565Z'), BigInt(Date.UTC(2026, 9, 25, 2, 30)) * 1000n + 123_456n);
  assert.throws(() => endTimeMicros('2026-10-25T02:30:00'), DecodeError);
});

/** An InstanceRead over a made-up instance (for the change stream alone). */
function readOf(name: string, columns: SimColumn[], progress = false, schema = 'dbo', table = name): InstanceRead {
  const instance: CaptureInstance = {
    name,
    schema,
    table,
    startLsn: ZERO_LSN,
    createDate: '2026-01-01T00:00:00.000',
    columns: columns.map((c) => ({ name: c.name, type: c.type, maxLength: c.maxLength ?? 4, precision: c.precision ?? 0, scale: c.scale ?? 0, keyOrdinal: c.keyOrdinal ?? 0 })),
  };
  return { instance, fromLsn: ZERO_LSN, toLsn: 'F'.repeat(20), progress };
}

const lsn = (n: number): Lsn => n.toString(16).toUpperCase().padStart(20, '0');
const row = (start: number, seq: number, operation: 1 | 2 | 3 | 4, values: ProjectedValue[], commandId = 1): ChangeRow => ({ startLsn: lsn(start), commandId, seqval: lsn(seq), operation, values });

function record(): { handler: SourceHandler; events: { kind: string; position: string; part?: TransactionPart | null; tx?: Transaction; seen?: SeenSites }[] } {
  const events: { kind: string; position: string; part?: TransactionPart | null; tx?: Transaction; seen?: SeenSites }[] = [];
  return {
    events,
    handler: {
      transaction: (tx, part) => events.push({ kind: 'transaction', position: tx.position, part, tx }),
      skipped: (position, _c, reason, seen) => events.push({ kind: reason, position, seen }),
      idle: (checkpoint, seen) => events.push({ kind: 'idle', position: checkpoint, seen }),
    },
  };
}

test('update before-image (3) without its after-image (4) is an error', () => {
  const items = readOf('dbo_items', ITEMS);
  const end = '2026-01-01T00:00:00.000+00:00';
  const a = record();
  const stream = new ChangeStream({ site: SITE, maxPartBytes: 1 << 20, seen: {}, start: ZERO_LSN }, a.handler);
  stream.accept(items, row(100, 10, 3, [1, 'a', '1.00']), end);
  assert.throws(
    () => stream.accept(items, row(100, 11, 2, [2, 'b', '1.00']), end),
    (e: unknown) => e instanceof DecodeError && /operation 3/.test(e.message) && e.message.includes('dbo_items') && e.message.includes(describeLsn(lsn(100))),
  );
  // at the end of the transaction (the interval) too
  const b = record();
  const stream2 = new ChangeStream({ site: SITE, maxPartBytes: 1 << 20, seen: {}, start: ZERO_LSN }, b.handler);
  stream2.accept(items, row(100, 10, 3, [1, 'a', '1.00']), end);
  assert.throws(() => stream2.endInterval(lsn(200)), DecodeError);
  // a 4 alone
  const stream3 = new ChangeStream({ site: SITE, maxPartBytes: 1 << 20, seen: {}, start: ZERO_LSN }, record().handler);
  assert.throws(() => stream3.accept(items, row(100, 10, 4, [1, 'a', '1.00']), end), /operation 4.*without its before-image/);
  // and a transaction without its lsn_time_mapping row
  const stream4 = new ChangeStream({ site: SITE, maxPartBytes: 1 << 20, seen: {}, start: ZERO_LSN }, record().handler);
  assert.throws(() => stream4.accept(items, row(100, 10, 2, [1, 'a', '1.00']), undefined), /lsn_time_mapping/);
  assert.equal(a.events.length + b.events.length, 0);
});

test('relayed transaction dropped, seen moved', async () => {
  const h = new Harness();
  await h.start();
  const local1 = h.tx();
  local1.insert('dbo', 'items', { id: 1, name: 'local', price: '1.00' });
  const l1 = local1.commit();
  const relayed = h.tx();
  relayed.insert('sitesync', 'apply_progress', { source: 'london', source_kind: 'postgres', position: '0/16B3748', commit_time_micros: '1790000000123456', applied_transactions: '1' });
  relayed.insert('dbo', 'items', { id: 2, name: 'from london', price: '2.00' });
  const r1 = relayed.commit();
  const local2 = h.tx();
  local2.update('dbo', 'items', { id: 2 }, { name: 'changed here' });
  const l2 = local2.commit();
  const relayed2 = h.tx();
  relayed2.update('sitesync', 'apply_progress', { source: 'london' }, { commit_time_micros: '1790000000999999' });
  relayed2.delete('dbo', 'items', { id: 1 });
  const r2 = relayed2.commit();
  await h.drain();
  await h.stop();
  assert.deepEqual(h.runner.delivered.map((t) => [t.position, t.seen]), [
    [l1, {}],
    [l2, { london: 1790000000123456n }],
  ]);
  assert.deepEqual(h.runner.skips.map((s) => [s.position, s.reason, s.seen]), [
    [r1, 'relayed', { london: 1790000000123456n }],
    [r2, 'relayed', { london: 1790000000999999n }],
  ]);
  assert.deepEqual(JSON.parse(h.sim.bookkeeping.captureProgress.get(SITE)!.seen), { london: '1790000000999999' });
});

test('a relayed marker after a part went out stops', async () => {
  const h = new Harness({ maxPartBytes: 60 });
  await h.start();
  const bad = h.tx();
  bad.insert('dbo', 'items', { id: 1, name: 'first', price: '1.00' });
  bad.insert('dbo', 'items', { id: 2, name: 'second', price: '1.00' });
  bad.insert('sitesync', 'apply_progress', { source: 'london', source_kind: 'postgres', position: '1', commit_time_micros: '5', applied_transactions: '1' });
  bad.commit();
  h.sim.runCaptureJob();
  await assert.rejects(h.source!.ended!, (e: unknown) => e instanceof DecodeError && /after changes of it already went out/.test(e.message));
  assert.ok(h.runner.parts.length > 0);
  assert.deepEqual(h.runner.delivered, []);
  await h.stop();
});

test('a key update (a delete and an insert of one operation) is one update with the old key; a table without a key gives whole before images', async () => {
  const h = new Harness();
  await h.start();
  const t = h.tx();
  t.insert('dbo', 'items', { id: 1, name: 'a', price: '1.00' });
  t.insert('dbo', 'notes', { body: 'hello', n: 1 });
  t.commit();
  const u = h.tx();
  u.update('dbo', 'items', { id: 1 }, { id: 2 });
  u.update('dbo', 'notes', { body: 'hello' }, { n: 2 });
  u.delete('dbo', 'notes', { body: 'hello' });
  u.delete('dbo', 'items', { id: 2 });
  u.commit();
  await h.drain();
  await h.stop();
  assert.deepEqual(h.runner.delivered[1]!.changes.map(plain), [
    { op: 'update', table: 'dbo.items', columns: ['id', 'name', 'price'], oldRow: ['1', null, null], newRow: ['2', 'a', '1.00'] },
    { op: 'update', table: 'dbo.notes', columns: ['body', 'n'], oldRow: ['hello', '1'], newRow: ['hello', '2'] },
    { op: 'delete', table: 'dbo.notes', columns: ['body', 'n'], oldRow: ['hello', '2'], newRow: null },
    { op: 'delete', table: 'dbo.items', columns: ['id', 'name', 'price'], oldRow: ['2', null, null], newRow: null },
  ]);
  const keyless = h.runner.delivered[1]!.changes.find((c) => c.op === 'update' && c.relation.table === 'notes')!;
  assert.equal(keyless.op === 'update' && keyless.relation.replicaIdentity, 'f');
});

test('the tables filter, the merger over several change tables in batches, and a capture instance disabled unread warns', async () => {
  const h = new Harness({ tables: ['dbo.items'], batchRows: 1 });
  await h.start();
  const t = h.tx();
  t.insert('dbo', 'notes', { body: 'not captured', n: 1 });
  t.insert('dbo', 'items', { id: 1, name: 'captured', price: '1.00' });
  const l1 = t.commit();
  await h.drain();
  await h.source!.close();
  const t2 = h.tx();
  t2.insert('dbo', 'items', { id: 2, name: 'lost', price: '1.00' });
  t2.commit();
  h.sim.runCaptureJob();
  h.sim.disableCdc('dbo_items');
  await h.start();
  await h.drain();
  await h.stop();
  assert.deepEqual(h.runner.delivered.map((tx) => [tx.position, tx.changes.length]), [[l1, 1]]);
  assert.ok(h.lines.some((l) => l.level === 'warn' && /capture instance dbo_items .*was disabled before capture read its changes/.test(l.text)), JSON.stringify(h.lines));

  // RowMerger alone: two tables, one row per batch, merged by (lsn, command id, seqval, operation). In the
  // transaction at 20 the first operation (command 1) was logged with a later seqval than the second: Microsoft
  // says to order by command id, not seqval.
  const a = readOf('a', ITEMS);
  const b = readOf('b', NOTES);
  const merger = new RowMerger([a, b], 1);
  const rowsA = [row(10, 1, 2, [1, 'x', '1.00'], 1), row(20, 5, 3, [1, 'x', '1.00'], 2), row(20, 5, 4, [1, 'y', '1.00'], 2)];
  const rowsB = [row(10, 2, 2, ['b', 1], 2), row(20, 6, 1, ['b', 1], 1)];
  const order: string[] = [];
  for (;;) {
    const next = merger.next();
    if (next === null) break;
    if (next === 'fetch') {
      for (const want of merger.wanted()) {
        const source = want.read === a ? rowsA : rowsB;
        const after = want.after;
        const rest = source.filter((r) => after === null || compareChangeKey(r, after) > 0);
        merger.supply(want.index, rest.slice(0, want.limit));
      }
      continue;
    }
    order.push(`${next.read.instance.name}${Number.parseInt(next.row.seqval, 16)}/${next.row.operation}`);
  }
  assert.deepEqual(order, ['a1/2', 'b2/2', 'b6/1', 'a5/3', 'a5/4']);
});

test('prepare refuses a server capture cannot run on, naming the fix; a lost connection breaks the stream as retryable', async () => {
  const h = new Harness();
  h.sim.setFacts({ cdcEnabled: false });
  await assert.rejects(h.start(), (e: unknown) => e instanceof SitesyncError && e.code === 'SITESYNC_ERR_CONFIG' && /sp_cdc_enable_db/.test(e.message));
  h.sim.setFacts({ cdcEnabled: true });
  await h.start();
  h.sim.failNextReaderCall();
  await assert.rejects(h.source!.ended!, (e: unknown) => e instanceof SitesyncError && e.code === 'SITESYNC_ERR_DATABASE_UNREACHABLE');
  await h.stop();
  await h.start();
  const t = h.tx();
  t.insert('dbo', 'items', { id: 1, name: 'after', price: '1.00' });
  const l = t.commit();
  await h.drain();
  await h.stop();
  assert.deepEqual(h.runner.delivered.map((tx) => tx.position), [l]);
  const lag = await h.source!.lag();
  assert.deepEqual(lag, { bytes: 0, seconds: 0 });
});

// ─── review findings ───────────────────────────────────────────────────────────────────────────────────────

test('a confirmation below the checkpoint already confirmed never moves the progress row back', async () => {
  const h = new Harness();
  await h.start();
  const t1 = h.tx();
  t1.insert('dbo', 'items', { id: 1, name: 'one', price: '1.00' });
  const l1 = t1.commit();
  await h.drain();
  const t2 = h.tx();
  t2.insert('dbo', 'items', { id: 2, name: 'two', price: '2.00' });
  const l2 = t2.commit();
  await h.drain();
  assert.equal(h.sim.bookkeeping.captureProgress.get(SITE)!.checkpoint, l2);
  // A stale frontier (a confirmation that raced a newer one): the row stays where it was.
  await h.source!.confirm(l1, { lastPublished: l1, seen: {} });
  assert.equal(h.sim.bookkeeping.captureProgress.get(SITE)!.checkpoint, l2);
  assert.equal(h.sim.bookkeeping.captureProgress.get(SITE)!.lastPublished, l2);
  assert.equal(await h.source!.settle(), true);
  await h.stop();
  assert.equal(h.sim.bookkeeping.captureProgress.get(SITE)!.checkpoint, l2, 'close wrote the older checkpoint');
  assert.ok(h.lines.some((l) => l.level === 'warn' && /below the checkpoint already confirmed/.test(l.text)));
});

test('a table without a key and with large-object columns: deletes and updates still find their row at the other site, and capture warns once', async () => {
  const DOCS: SimColumn[] = [
    { name: 'title', type: 'nvarchar', maxLength: 80 },
    { name: 'body', type: 'nvarchar', maxLength: -1 },
    { name: 'legacy', type: 'ntext' },
    { name: 'pic', type: 'image' },
    { name: 'n', type: 'int' },
  ];
  const h = new Harness();
  h.sim.createTable('dbo', 'docs', DOCS);
  h.sim.enableCdc('dbo', 'docs');
  await h.start();
  const t1 = h.tx();
  t1.insert('dbo', 'docs', { title: 'a', body: 'long a', legacy: 'old a', pic: Buffer.from('0a0b', 'hex'), n: 1 });
  t1.insert('dbo', 'docs', { title: 'b', body: 'long b', legacy: 'old b', pic: Buffer.from('0c', 'hex'), n: 2 });
  t1.insert('dbo', 'docs', { title: 'c', body: null, legacy: null, pic: null, n: 3 });
  t1.commit();
  const t2 = h.tx();
  t2.update('dbo', 'docs', { title: 'a' }, { n: 10 });
  t2.update('dbo', 'docs', { title: 'c' }, { body: 'now long' });
  t2.delete('dbo', 'docs', { title: 'b' });
  t2.commit();
  await h.drain();
  await h.stop();
  const warnings = h.lines.filter((l) => l.level === 'warn' && /dbo\.docs .*no primary key and large-object columns \(body, legacy, pic\)/.test(l.text));
  assert.equal(warnings.length, 1, JSON.stringify(h.lines));

  // Applied at another SQL Server site, the target ends as the source.
  const target = new SimulatedSqlServer();
  target.createTable('dbo', 'docs', DOCS);
  const sink = new SqlServerSink({ site: 'madrid', connect: simulatedConnect(target).connect, logger: quietLogger(), sourceKindOf: () => 'sqlserver' });
  const conflicts: unknown[] = [];
  const session = await sink.openSession(SITE);
  await session.apply(h.runner.delivered);
  await sink.close();
  assert.deepEqual(target.rows('dbo', 'docs'), h.sim.rows('dbo', 'docs'));
  assert.deepEqual(target.rows('sitesync', 'conflicts'), conflicts, 'no row was "missing"');
});

test('an operation that changed the keys of several rows goes out as its deletes and inserts; one key update in a transaction of other changes is paired', () => {
  const items = readOf('dbo_items', ITEMS);
  const end = '2026-01-01T00:00:00.000+00:00';
  const ops = (r: ReturnType<typeof record>) =>
    r.events.flatMap((e) => (e.tx ? e.tx.changes.map((c) => `${c.op}${c.op === 'update' || c.op === 'delete' ? `:${c.oldRow?.values[0]}` : ''}${c.op === 'insert' || c.op === 'update' ? `>${c.newRow.values[0]}` : ''}`) : []));
  // UPDATE items SET id = id + 10 over two rows: one operation (command 1), its deletes then its inserts.
  const many = record();
  const stream = new ChangeStream({ site: SITE, maxPartBytes: 1 << 20, seen: {}, start: ZERO_LSN }, many.handler);
  stream.accept(items, row(100, 10, 1, [1, 'a', '1.00'], 1), end);
  stream.accept(items, row(100, 11, 1, [2, 'b', '1.00'], 1), end);
  stream.accept(items, row(100, 12, 2, [11, 'a', '1.00'], 1), end);
  stream.accept(items, row(100, 13, 2, [12, 'b', '1.00'], 1), end);
  stream.endInterval(lsn(200));
  assert.deepEqual(ops(many), ['delete:1', 'delete:2', 'insert>11', 'insert>12']);
  // A delete then an insert of the same operation, followed by a third row of it: not a pair either.
  const three = record();
  const stream2 = new ChangeStream({ site: SITE, maxPartBytes: 1 << 20, seen: {}, start: ZERO_LSN }, three.handler);
  stream2.accept(items, row(100, 10, 1, [1, 'a', '1.00'], 1), end);
  stream2.accept(items, row(100, 11, 2, [11, 'a', '1.00'], 1), end);
  stream2.accept(items, row(100, 12, 1, [2, 'b', '1.00'], 1), end);
  stream2.accept(items, row(100, 13, 2, [12, 'b', '1.00'], 1), end);
  stream2.endInterval(lsn(200));
  assert.deepEqual(ops(three), ['delete:1', 'insert>11', 'delete:2', 'insert>12']);
  // One key update (command 2) between an insert (command 1) and a delete (command 3): paired, in its place.
  const one = record();
  const stream3 = new ChangeStream({ site: SITE, maxPartBytes: 1 << 20, seen: {}, start: ZERO_LSN }, one.handler);
  stream3.accept(items, row(100, 10, 2, [5, 'e', '1.00'], 1), end);
  stream3.accept(items, row(100, 11, 1, [1, 'a', '1.00'], 2), end);
  stream3.accept(items, row(100, 12, 2, [11, 'a', '1.00'], 2), end);
  stream3.accept(items, row(100, 13, 1, [5, 'e', '1.00'], 3), end);
  stream3.endInterval(lsn(200));
  assert.deepEqual(ops(one), ['insert>5', 'update:1>11', 'delete:5']);
});
