/**
 * The SQL Server capture source: change data capture's change tables, polled (SQL Server offers no stream),
 * one interval of commit LSNs at a time.
 *
 * A poll: the commit LSN of the last transaction the capture job has written (cdc.lsn_time_mapping, its own
 * tran_id = 0x00 marker rows left out: they are no transactions, and a bound taken from one could pass
 * transactions committed before it but not yet scanned), then the instance list. The interval (position,
 * that LSN] is planned by capture-instances.ts (which change tables, which LSNs each; the cleanup guard), its
 * rows read in bounded batches and merged and grouped by change-stream.ts, and when it is read to its end the
 * source says idle there. A quiet site polls every pollIntervalMs; a heartbeat polls at once.
 *
 * Where capture is, is sitesync's own row in sitesync.capture_progress at the site (CdcReader.readProgress):
 * last published position, checkpoint (a commit LSN), causal context, and the capture instances known at the
 * checkpoint (the cleanup guard compares them with the instances' start_lsn now). The first prepare() writes
 * it at the last transaction the capture job has written (nothing before is sent: `previous` null). The row
 * is written at most once a second after a confirm, and at settle() and close(): after a crash capture reads
 * again from the row's checkpoint and resends what came after it, never anything at or below it. capture_progress
 * is not CDC-enabled, so writing it makes no change rows (no loop, unlike a binlog).
 *
 * The server keeps changes for the cleanup job's retention (three days by default), not until sitesync has read
 * them: a capture outage longer than that loses changes, which the cleanup guard turns into a loud stop.
 *
 * lag(): seconds from commit times (the oldest transaction handed on and not yet confirmed); bytes are always 0,
 * since an LSN says nothing of the bytes between two (virtual log files differ in size).
 */
import type { ResumePoint, Source, SourceHandler } from '../../src/capture/source.ts';
import { BOOKKEEPING_SCHEMA } from '../../src/config/names.ts';
import { describeError, SitesyncError } from '../../src/errors.ts';
import type { SeenSites } from '../../src/events/transaction.ts';
import type { Logger } from '../../src/observability/logger.ts';
import type { CaptureProgressRow, CdcReader, Lsn } from './cdc-reader.ts';
import { isRead, knownInstances, knownJson, parseKnown, planInterval, type KnownInstance } from './capture-instances.ts';
import { ChangeStream, RowMerger } from './change-stream.ts';
import { compareLsn, describeLsn, ZERO_LSN } from './sqlserver-positions.ts';
import { assertCaptureReady } from './sqlserver-setup.ts';

const SETTLE_TIMEOUT_MS = 3000;
/** Transactions handed on and not yet confirmed whose commit times lag() keeps. */
const LAG_SAMPLES = 10_000;

export interface SqlServerSourceOptions {
  readonly site: string;
  /** A new reader (a connection of its own); called again after close(). */
  readonly reader: () => CdcReader;
  /** `schema.table` names; null = every table with a capture instance outside sitesync's schema. */
  readonly tables: readonly string[] | null;
  readonly maxPartBytes: number;
  readonly logger: Logger;
  /** Milliseconds between polls of a quiet site (default 500). */
  readonly pollIntervalMs?: number;
  /** Change rows fetched per change table and call (default 1000). */
  readonly batchRows?: number;
  /** Milliseconds between writes of the progress row after confirms (default 1000; 0: at every confirm). */
  readonly progressWriteIntervalMs?: number;
}

interface Confirmed {
  readonly checkpoint: Lsn;
  readonly lastPublished: Lsn | null;
  readonly seen: SeenSites;
}

/** An interval read: the instances known at any checkpoint in (from, to]. */
interface Interval {
  readonly from: Lsn | null;
  readonly to: Lsn;
  readonly known: readonly KnownInstance[];
}

export function seenJson(seen: SeenSites): string {
  return JSON.stringify(Object.fromEntries(Object.entries(seen).map(([site, micros]) => [site, micros.toString()])));
}

export function parseSeen(json: string): SeenSites {
  const raw = JSON.parse(json) as Record<string, string | number>;
  return Object.fromEntries(Object.entries(raw).map(([site, micros]) => [site, BigInt(micros)]));
}

/** A reader's error as the one line that says what happened; a SitesyncError stays as it is. */
export function describeReaderError(site: string, error: unknown): unknown {
  if (error instanceof SitesyncError) return error;
  const e = error as { number?: number; code?: string; name?: string; message?: string };
  const message = e?.message ?? String(error);
  if (e?.number === 208 && /_CT\b/.test(message)) {
    return new SitesyncError('SITESYNC_ERR_CATALOG_CHANGED', `a capture instance of site ${site} was disabled while capture read it (${message}); capture resumes from its checkpoint`, { cause: error });
  }
  const network = ['ESOCKET', 'ECONNRESET', 'ETIMEOUT', 'ECONNCLOSED', 'ECONNREFUSED', 'ENOTOPEN', 'ENOTFOUND', 'ETIMEDOUT'];
  if ((e?.code && network.includes(e.code)) || e?.name === 'ConnectionError') {
    return new SitesyncError('SITESYNC_ERR_DATABASE_UNREACHABLE', `lost or cannot reach SQL Server of site ${site} (${e?.code ?? message}); sitesync retries`, { cause: error });
  }
  return error;
}

export class SqlServerSource implements Source {
  readonly kind = 'sqlserver' as const;
  readonly site: string;
  ended: Promise<void> | null = null;
  private connection: CdcReader | null = null;
  private persisted: CaptureProgressRow | null = null;
  private confirmed: Confirmed | null = null;
  private intervals: Interval[] = [];
  private lastWrite = 0;
  private writeTimer: NodeJS.Timeout | null = null;
  private writing: Promise<void> = Promise.resolve();
  private stream: {
    closed: boolean;
    paused: boolean;
    heartbeat: boolean;
    wake: (() => void) | null;
    loop: Promise<void>;
    changes: ChangeStream;
  } | null = null;
  /** Commit times of transactions handed on and not yet confirmed (oldest first). */
  private unconfirmed: { checkpoint: Lsn; micros: bigint }[] = [];
  private readonly pollIntervalMs: number;
  private readonly batchRows: number;
  private readonly writeIntervalMs: number;

  constructor(private readonly options: SqlServerSourceOptions) {
    this.site = options.site;
    this.pollIntervalMs = options.pollIntervalMs ?? 500;
    this.batchRows = options.batchRows ?? 1000;
    this.writeIntervalMs = options.progressWriteIntervalMs ?? 1000;
  }

  private reader(): CdcReader {
    this.connection ??= this.options.reader();
    return this.connection;
  }

  private async call<T>(what: () => Promise<T>): Promise<T> {
    try {
      return await what();
    } catch (error) {
      throw describeReaderError(this.site, error);
    }
  }

  // ─── prepare, resume point ─────────────────────────────────────────────────────────────────────────────

  async prepare(): Promise<void> {
    const reader = this.reader();
    await this.call(() => reader.ensureCaptureProgress());
    const facts = await this.call(() => reader.setupFacts());
    assertCaptureReady(facts, this.site);
    await this.readPersisted();
  }

  /** The progress row; the first time, written at the last transaction the capture job has written. */
  private async readPersisted(): Promise<CaptureProgressRow> {
    const reader = this.reader();
    const row = await this.call(() => reader.readProgress(this.site));
    if (row) {
      this.persisted = row;
      return row;
    }
    // The bound first, then the instances: one created after the list starts above the bound.
    const max = await this.call(() => reader.maxTransactionLsn());
    const instances = await this.call(() => reader.captureInstances());
    const first: CaptureProgressRow = {
      lastPublished: null,
      checkpoint: max ?? ZERO_LSN,
      seen: '{}',
      instances: knownJson(knownInstances(instances.filter((i) => isRead(i, this.options.tables)))),
    };
    await this.call(() => reader.writeProgress(this.site, first));
    this.options.logger.info({ checkpoint: describeLsn(first.checkpoint) }, 'capture of this site starts after the last transaction the CDC capture job has written');
    this.persisted = first;
    return first;
  }

  async resumePoint(): Promise<ResumePoint> {
    const row = await this.readPersisted();
    return { lastPublished: row.lastPublished, seen: parseSeen(row.seen) };
  }

  // ─── confirmation ──────────────────────────────────────────────────────────────────────────────────────

  async confirm(checkpoint: string, resume: ResumePoint): Promise<void> {
    // Confirmed checkpoints only grow. One below what is already confirmed (or persisted) is a stale
    // frontier (a confirmation that raced a newer one, a runner of a previous session): taking it would move
    // the persisted row back — resending what the broker holds, lastPublished and seen going back with it —
    // and ask knownAt() about an interval already pruned. It is ignored.
    const floor = this.confirmed?.checkpoint ?? this.persisted?.checkpoint ?? null;
    if (floor !== null && compareLsn(checkpoint, floor) < 0) {
      this.options.logger.warn({ checkpoint: describeLsn(checkpoint), confirmed: describeLsn(floor) }, 'a confirmation below the checkpoint already confirmed is ignored');
      return;
    }
    this.confirmed = { checkpoint, lastPublished: resume.lastPublished, seen: resume.seen };
    let drop = 0;
    while (drop < this.unconfirmed.length && compareLsn(this.unconfirmed[drop]!.checkpoint, checkpoint) <= 0) drop++;
    if (drop > 0) this.unconfirmed = this.unconfirmed.slice(drop);
    // Confirmed checkpoints only grow: intervals wholly below this one are no longer asked about.
    let below = 0;
    while (below + 1 < this.intervals.length && compareLsn(this.intervals[below + 1]!.from ?? ZERO_LSN, checkpoint) < 0 && compareLsn(this.intervals[below]!.to, checkpoint) < 0) below++;
    if (below > 0) this.intervals = this.intervals.slice(below);
    const wait = this.lastWrite + this.writeIntervalMs - Date.now();
    if (wait <= 0) {
      await this.write();
      return;
    }
    if (!this.writeTimer) {
      this.writeTimer = setTimeout(() => {
        this.writeTimer = null;
        this.write().catch((error: unknown) => this.options.logger.warn(describeError(error)));
      }, wait);
      this.writeTimer.unref();
    }
  }

  /** The instances known at a checkpoint: those of the interval it lies in. */
  private knownAt(checkpoint: Lsn): readonly KnownInstance[] {
    for (let i = this.intervals.length - 1; i >= 0; i--) {
      const interval = this.intervals[i]!;
      if (interval.from === null || compareLsn(checkpoint, interval.from) > 0) return interval.known;
    }
    return this.intervals[0]?.known ?? [];
  }

  /** Writes the last confirmed checkpoint (one write at a time, in order). */
  private write(): Promise<void> {
    const next = this.writing.then(async () => {
      const confirmed = this.confirmed;
      if (!confirmed) return;
      const row: CaptureProgressRow = {
        lastPublished: confirmed.lastPublished,
        checkpoint: confirmed.checkpoint,
        seen: seenJson(confirmed.seen),
        instances: knownJson(this.knownAt(confirmed.checkpoint)),
      };
      const p = this.persisted;
      if (p && p.checkpoint === row.checkpoint && p.lastPublished === row.lastPublished && p.seen === row.seen && p.instances === row.instances) return;
      const reader = this.reader();
      await this.call(() => reader.writeProgress(this.site, row));
      this.persisted = row;
      this.lastWrite = Date.now();
    });
    this.writing = next.catch(() => undefined);
    return next;
  }

  async settle(): Promise<boolean> {
    if (this.writeTimer) {
      clearTimeout(this.writeTimer);
      this.writeTimer = null;
    }
    const written = this.write().then(
      () => true,
      (error: unknown) => {
        this.options.logger.warn(describeError(error));
        return false;
      },
    );
    return Promise.race([written, new Promise<boolean>((resolve) => setTimeout(() => resolve(false), SETTLE_TIMEOUT_MS).unref())]);
  }

  // ─── the stream ────────────────────────────────────────────────────────────────────────────────────────

  async open(handler: SourceHandler): Promise<void> {
    if (this.stream && !this.stream.closed) throw new Error(`the capture stream of site ${this.site} is already open`);
    const row = await this.readPersisted();
    const seen = parseSeen(row.seen);
    this.confirmed = { checkpoint: row.checkpoint, lastPublished: row.lastPublished, seen };
    this.intervals = [{ from: null, to: row.checkpoint, known: parseKnown(row.instances) }];
    this.unconfirmed = [];
    const runner = handler;
    const wrapped: SourceHandler = {
      transaction: (tx, part, checkpoint) => {
        if (checkpoint !== null && this.unconfirmed.length < LAG_SAMPLES) this.unconfirmed.push({ checkpoint, micros: tx.commitTimeMicros });
        runner.transaction(tx, part, checkpoint);
      },
      skipped: (position, checkpoint, reason, seenSites) => runner.skipped(position, checkpoint, reason, seenSites),
      idle: (checkpoint, seenSites) => runner.idle(checkpoint, seenSites),
    };
    const changes = new ChangeStream({ site: this.site, maxPartBytes: this.options.maxPartBytes, seen, start: row.checkpoint, warn: (line) => this.options.logger.warn(line) }, wrapped);
    const stream = { closed: false, paused: false, heartbeat: false, wake: null as (() => void) | null, loop: Promise.resolve(), changes };
    this.stream = stream;
    stream.loop = this.run(stream, parseKnown(row.instances));
    this.ended = stream.loop.catch((error: unknown) => {
      if (this.writeTimer) {
        clearTimeout(this.writeTimer);
        this.writeTimer = null;
      }
      throw describeReaderError(this.site, error);
    });
    this.ended.catch(() => undefined);
    this.options.logger.info({ from: describeLsn(row.checkpoint) }, 'reading the CDC change tables');
  }

  /** Waits until the stream may read (not paused) or is closed; false when closed. */
  private async gate(stream: NonNullable<SqlServerSource['stream']>): Promise<boolean> {
    while (stream.paused && !stream.closed) await new Promise<void>((resolve) => (stream.wake = resolve));
    return !stream.closed;
  }

  private async sleep(stream: NonNullable<SqlServerSource['stream']>, ms: number): Promise<void> {
    if (stream.closed || stream.heartbeat) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      stream.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    stream.wake = null;
  }

  private async run(stream: NonNullable<SqlServerSource['stream']>, initialKnown: readonly KnownInstance[]): Promise<void> {
    const reader = this.reader();
    const changes = stream.changes;
    let known = initialKnown;
    while (await this.gate(stream)) {
      const max = await this.call(() => reader.maxTransactionLsn());
      const instances = await this.call(() => reader.captureInstances());
      const from = changes.position;
      const to = max !== null && compareLsn(max, from) > 0 ? max : from;
      const plan = planInterval({ site: this.site, instances, known, fromLsn: from, toLsn: to, tables: this.options.tables });
      for (const line of plan.warnings) this.options.logger.warn(line);
      for (const line of plan.notes) this.options.logger.info(line);
      if (to === from) {
        known = plan.known;
        if (stream.heartbeat) {
          stream.heartbeat = false;
          changes.idle();
        }
        await this.sleep(stream, this.pollIntervalMs);
        continue;
      }
      this.intervals.push({ from, to, known: plan.known });
      const merger = new RowMerger(plan.reads, this.batchRows);
      const times = new Map<Lsn, string>();
      let current: Lsn | null = null;
      for (;;) {
        const next = merger.next();
        if (next === null) break;
        if (next === 'fetch') {
          for (const want of merger.wanted()) {
            if (!(await this.gate(stream))) return;
            const rows = await this.call(() => reader.changes(want.read.instance, want.read.fromLsn, want.read.toLsn, want.after, want.limit));
            merger.supply(want.index, rows);
            const missing = [...new Set(rows.map((r) => r.startLsn))].filter((lsn) => !times.has(lsn));
            if (missing.length > 0) {
              for (const t of await this.call(() => reader.transactionTimes(missing))) times.set(t.startLsn, t.endTime);
            }
          }
          continue;
        }
        if (current !== next.row.startLsn) {
          if (current !== null) times.delete(current);
          current = next.row.startLsn;
        }
        changes.accept(next.read, next.row, times.get(next.row.startLsn));
      }
      changes.endInterval(to);
      stream.heartbeat = false;
      known = plan.known;
    }
  }

  pause(): void {
    if (this.stream) this.stream.paused = true;
  }

  resume(): void {
    const stream = this.stream;
    if (!stream) return;
    stream.paused = false;
    stream.wake?.();
  }

  /** Polls now; with nothing new, says idle at the position read. */
  async heartbeat(): Promise<void> {
    const stream = this.stream;
    if (!stream || stream.closed) return;
    stream.heartbeat = true;
    if (!stream.paused) stream.wake?.();
  }

  async lag(): Promise<{ bytes: number; seconds: number } | null> {
    if (!this.confirmed) return null;
    const oldest = this.unconfirmed[0];
    const seconds = oldest ? Math.max(0, Date.now() / 1000 - Number(oldest.micros / 1000n) / 1000) : 0;
    return { bytes: 0, seconds };
  }

  /** The process is done with this source: close() already releases the reader's connection. */
  async end(): Promise<void> {
    await this.close();
  }

  async close(): Promise<void> {
    const stream = this.stream;
    if (stream) {
      stream.closed = true;
      stream.wake?.();
      await stream.loop.catch(() => undefined);
    }
    if (this.writeTimer) {
      clearTimeout(this.writeTimer);
      this.writeTimer = null;
    }
    try {
      if (this.connection) await this.write();
    } catch (error) {
      this.options.logger.warn(describeError(error));
    }
    const connection = this.connection;
    this.connection = null;
    await connection?.close().catch(() => undefined);
  }

  /** For logs: the last confirmed checkpoint. */
  describeConfirmed(): string {
    return this.confirmed ? describeLsn(this.confirmed.checkpoint) : 'none';
  }
}

/** Where capture's progress lives at the site (for messages). */
export const CAPTURE_PROGRESS_TABLE = `${BOOKKEEPING_SCHEMA}.capture_progress`;
