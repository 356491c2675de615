/**
 * An in-memory source: a database whose log is an array. It keeps every promise of the Source contract
 * (src/capture/source.ts) — commit order, parts with a checkpoint only on the last, resend from the last
 * confirmed checkpoint, relayed transactions skipped with the causal context moved, idle checkpoints only
 * between transactions — so the capture runner's tests and the conformance suite can drive it without a
 * database, and the conformance suite proves it keeps them as the real connectors do.
 */
import { EventEmitter } from 'node:events';
import type { ResumePoint, Source, SourceHandler } from '../../src/capture/source.ts';
import { changeBytes, transactionId, type Change, type Position, type SeenSites, type Transaction } from '../../src/events/transaction.ts';

export const FAKE_KIND = 'fake';

interface LoggedTransaction {
  readonly position: Position;
  readonly commitTimeMicros: bigint;
  readonly changes: readonly Change[];
  /** Applied here by sitesync from that site (the loop marker a real database would carry). */
  readonly relayedFrom: string | null;
}

/** The fake database of one site: its log, and what its source last confirmed (which survives a restart). */
export class FakeLog extends EventEmitter {
  readonly entries: LoggedTransaction[] = [];
  confirmedCheckpoint: string | null = null;
  resume: ResumePoint = { lastPublished: null, seen: {} };
  private clock = 1_700_000_000_000_000n;

  /** Commits one transaction; returns its position (16 hex digits of its sequence number, so string order is commit order). */
  commit(changes: readonly Change[], options: { relayedFrom?: string; commitTimeMicros?: bigint } = {}): Position {
    const position = fakePosition(this.entries.length + 1);
    this.clock += 1000n;
    this.entries.push({ position, commitTimeMicros: options.commitTimeMicros ?? this.clock, changes, relayedFrom: options.relayedFrom ?? null });
    this.emit('commit');
    return position;
  }

  /** The position a log reader would say the database is at (its last commit). */
  get head(): Position {
    return fakePosition(this.entries.length);
  }
}

export function fakePosition(sequence: number): Position {
  return sequence.toString(16).toUpperCase().padStart(16, '0');
}

export interface FakeSourceOptions {
  readonly site: string;
  readonly log: FakeLog;
  /** Changes held before a part is sent, in changeBytes (as the real connectors count). */
  readonly maxPartBytes: number;
}

export class FakeSource implements Source {
  readonly kind = FAKE_KIND;
  readonly site: string;
  ended: Promise<void> | null = null;
  private handler: SourceHandler | null = null;
  /** Index in the log of the next transaction to hand on. */
  private next = 0;
  private paused = false;
  private closed = false;
  private seen: SeenSites = {};
  private finish: (() => void) | null = null;
  private readonly onCommit = (): void => this.pump();

  constructor(private readonly options: FakeSourceOptions) {
    this.site = options.site;
  }

  async prepare(): Promise<void> {}

  async resumePoint(): Promise<ResumePoint> {
    return this.options.log.resume;
  }

  async open(handler: SourceHandler): Promise<void> {
    const log = this.options.log;
    this.handler = handler;
    this.closed = false;
    this.seen = log.resume.seen;
    // Resend everything after the last confirmed checkpoint (a position: the end of that transaction).
    const confirmed = log.confirmedCheckpoint;
    this.next = confirmed === null ? 0 : log.entries.findIndex((e) => e.position > confirmed);
    if (this.next < 0) this.next = log.entries.length;
    this.ended = new Promise<void>((resolve) => (this.finish = resolve));
    log.on('commit', this.onCommit);
    setImmediate(() => this.pump());
  }

  /** Hands on what is in the log, one transaction per turn of the event loop, as a socket would. */
  private pump(): void {
    if (this.paused || this.closed || !this.handler) return;
    const entry = this.options.log.entries[this.next];
    if (!entry) return;
    this.next++;
    this.deliver(entry, this.handler);
    setImmediate(() => this.pump());
  }

  private deliver(entry: LoggedTransaction, handler: SourceHandler): void {
    const checkpoint = entry.position;
    if (entry.relayedFrom !== null) {
      this.seen = { ...this.seen, [entry.relayedFrom]: entry.commitTimeMicros };
      handler.skipped(entry.position, checkpoint, 'relayed', this.seen);
      return;
    }
    if (entry.changes.length === 0) {
      handler.skipped(entry.position, checkpoint, 'empty', this.seen);
      return;
    }
    const tx = (changes: Change[]): Transaction => ({
      id: transactionId(this.site, entry.position),
      site: this.site,
      position: entry.position,
      commitTimeMicros: entry.commitTimeMicros,
      sourceTxId: String(Number.parseInt(entry.position, 16)),
      seen: this.seen,
      changes,
    });
    let held: Change[] = [];
    let bytes = 0;
    let index = 0;
    for (const change of entry.changes) {
      held.push(change);
      bytes += changeBytes(change);
      if (bytes >= this.options.maxPartBytes) {
        handler.transaction(tx(held), { index: index++, last: false }, null);
        held = [];
        bytes = 0;
      }
    }
    if (index === 0) handler.transaction(tx(held), null, checkpoint);
    else handler.transaction(tx(held), { index, last: true }, checkpoint);
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    setImmediate(() => this.pump());
  }

  async confirm(checkpoint: string, resume: ResumePoint): Promise<void> {
    const log = this.options.log;
    if (log.confirmedCheckpoint !== null && checkpoint <= log.confirmedCheckpoint) return;
    log.confirmedCheckpoint = checkpoint;
    log.resume = resume;
  }

  async settle(): Promise<boolean> {
    return true;
  }

  /** Idle only between transactions, and only once everything in the log was handed on. */
  async heartbeat(): Promise<void> {
    const log = this.options.log;
    if (this.handler && !this.closed && this.next === log.entries.length && log.entries.length > 0) this.handler.idle(log.head, this.seen);
  }

  async lag(): Promise<{ bytes: number; seconds: number } | null> {
    const confirmed = this.options.log.confirmedCheckpoint;
    const done = confirmed === null ? 0 : Number.parseInt(confirmed, 16);
    return { bytes: this.options.log.entries.length - done, seconds: 0 };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.options.log.off('commit', this.onCommit);
    this.handler = null;
    this.finish?.();
    this.finish = null;
  }

  async end(): Promise<void> {
    await this.close();
  }
}
