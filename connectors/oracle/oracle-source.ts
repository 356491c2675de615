/**
 * The Oracle capture source: LogMiner over the redo logs, polled one window of SCNs at a time (LogMiner offers
 * no stream a client can follow without a commercial option).
 *
 * A window: CURRENT_SCN and the redo threads, then the window's upper bound (redo-logs.ts: the lowest flushed
 * SCN over the open threads, so that a RAC thread behind never has a commit passed; at most maxWindowScns
 * wide), then the logs holding the window's SCNs, checked for a missing sequence (redo-logs.ts), then one
 * mining session over them whose rows are read in batches of batchRows and turned into transactions by
 * mined-stream.ts (the transaction buffer holds open transactions across windows). At the window's end the
 * source says idle there. A quiet site polls every pollIntervalMs; a heartbeat polls at once.
 *
 * Where capture is, is sitesync's own row in SITESYNC.CAPTURE_PROGRESS at the site (LogMinerReader.readProgress):
 * last published position, checkpoint (oracle-positions.ts: `after` position and `resume` SCN), causal
 * context. The first prepare() writes it at CURRENT_SCN (nothing committed before is sent: `previous` null), with
 * `resume` below the START of the oldest transaction open then (V$TRANSACTION), so that one open then is sent
 * whole when it commits, never with only the changes made after capture began. The row is
 * written at most once a second after a confirm, and at settle() and close(); a confirmation below the one
 * already confirmed is ignored (it would move the row back). After a restart or a crash capture mines again
 * from the row's `resume`, rebuilds the transactions open there from their START, and sends only commits
 * above `after`: what was confirmed is never sent again, and what was not is sent whole.
 *
 * The database keeps redo only as long as its archived logs are kept (RMAN's retention): a capture outage
 * longer than that loses changes, which the log continuity check turns into a loud stop.
 *
 * lag(): seconds from commit times (the oldest transaction handed on and not yet confirmed); bytes are always 0
 * (an SCN says nothing of the bytes between two).
 */
import os from 'node:os';
import path from 'node:path';
import type { ResumePoint, Source, SourceHandler } from '../../src/capture/source.ts';
import { describeError, SitesyncError } from '../../src/errors.ts';
import type { SeenSites } from '../../src/events/transaction.ts';
import type { Logger } from '../../src/observability/logger.ts';
import type { LogMinerReader, OracleProgressRow, Scn } from './logminer-reader.ts';
import { BOOKKEEPING_OWNER, MinedStream } from './mined-stream.ts';
import { isConnectionLoss } from './oracle-errors.ts';
import { describePosition, formatCheckpoint, lastAt, parseCheckpoint, type Checkpoint } from './oracle-positions.ts';
import { assertCaptureReady } from './oracle-setup.ts';
import { capturedTables, chooseLogs, minedOwners, windowBound } from './redo-logs.ts';
import { TransactionBuffer } from './transaction-buffer.ts';

const SETTLE_TIMEOUT_MS = 3000;
/** Transactions handed on and not yet confirmed whose commit times lag() keeps. */
const LAG_SAMPLES = 10_000;

export interface OracleSourceOptions {
  readonly site: string;
  /** A new reader (a connection of its own); called again after close(). */
  readonly reader: () => LogMinerReader;
  /** `OWNER.TABLE` names (quoted parts exact, unquoted ones also in upper case); null = every table outside SITESYNC and Oracle's own schemas. */
  readonly tables: readonly string[] | null;
  readonly maxPartBytes: number;
  readonly logger: Logger;
  /** Milliseconds between polls of a quiet site (default 500). */
  readonly pollIntervalMs?: number;
  /** Rows of V$LOGMNR_CONTENTS fetched per call (default 1000). */
  readonly batchRows?: number;
  /** Bytes of open transactions' changes kept in memory before the largest spills to disk (default 64 MiB). */
  readonly maxBufferBytes?: number;
  /** Where spill files go: a directory `sitesync-oracle-<site>` in it is created, emptied at start (default os.tmpdir()). */
  readonly spillDirectory?: string;
  /** Bytes of spill files at most (default 16 GiB); past it capture stops naming the transaction. */
  readonly maxSpillBytes?: number;
  /** SCNs per mining window at most (default: no limit). */
  readonly maxWindowScns?: number;
  /** Milliseconds between writes of the progress row after confirms (default 1000; 0: at every confirm). */
  readonly progressWriteIntervalMs?: number;
}

interface Confirmed {
  readonly checkpoint: string;
  readonly parsed: Checkpoint;
  readonly lastPublished: string | null;
  readonly seen: SeenSites;
}

export function seenJson(seen: SeenSites): string {
  return JSON.stringify(Object.fromEntries(Object.entries(seen).map(([site, micros]) => [site, micros.toString()])));
}

export function parseSeen(json: string): SeenSites {
  const raw = JSON.parse(json) as Record<string, string | number>;
  return Object.fromEntries(Object.entries(raw).map(([site, micros]) => [site, BigInt(micros)]));
}

/** Orders checkpoints: by `after`, then `resume`. */
export function compareCheckpoints(a: Checkpoint, b: Checkpoint): number {
  if (a.after !== b.after) return a.after < b.after ? -1 : 1;
  return a.resume === b.resume ? 0 : a.resume < b.resume ? -1 : 1;
}

/** A reader's error as the one line that says what happened; a SitesyncError stays as it is. */
export function describeReaderError(site: string, error: unknown): unknown {
  if (error instanceof SitesyncError) return error;
  if (isConnectionLoss(error)) {
    const message = error instanceof Error ? error.message.split('\n')[0] : String(error);
    return new SitesyncError('SITESYNC_ERR_DATABASE_UNREACHABLE', `lost or cannot reach Oracle of site ${site} (${message}); sitesync retries`, { cause: error });
  }
  return error;
}

type Stream = {
  closed: boolean;
  paused: boolean;
  heartbeat: boolean;
  wake: (() => void) | null;
  loop: Promise<void>;
  mined: MinedStream;
  buffer: TransactionBuffer;
};

export class OracleSource implements Source {
  readonly kind = 'oracle' as const;
  readonly site: string;
  ended: Promise<void> | null = null;
  private connection: LogMinerReader | null = null;
  private persisted: OracleProgressRow | null = null;
  private confirmed: Confirmed | null = null;
  private lastWrite = 0;
  private writeTimer: NodeJS.Timeout | null = null;
  private writing: Promise<void> = Promise.resolve();
  private stream: Stream | null = null;
  /** Commit times of transactions handed on and not yet confirmed (oldest first). */
  private unconfirmed: { after: string; micros: bigint }[] = [];
  private readonly pollIntervalMs: number;
  private readonly batchRows: number;
  private readonly writeIntervalMs: number;
  private readonly owners: string[] | null;
  private readonly captured: (owner: string, table: string) => boolean;
  /** The spill directory of this site. */
  readonly spillDirectory: string;

  constructor(private readonly options: OracleSourceOptions) {
    this.site = options.site;
    this.pollIntervalMs = options.pollIntervalMs ?? 500;
    this.batchRows = options.batchRows ?? 1000;
    this.writeIntervalMs = options.progressWriteIntervalMs ?? 1000;
    this.owners = minedOwners(options.tables, BOOKKEEPING_OWNER);
    this.captured = capturedTables(options.tables, BOOKKEEPING_OWNER);
    this.spillDirectory = path.join(options.spillDirectory ?? os.tmpdir(), `sitesync-oracle-${options.site}`);
  }

  private reader(): LogMinerReader {
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
    const facts = await this.call(() => reader.setupFacts(this.owners));
    assertCaptureReady(facts, this.site);
    await this.readPersisted();
  }

  /** The progress row; the first time, written at CURRENT_SCN. */
  private async readPersisted(): Promise<OracleProgressRow> {
    const reader = this.reader();
    const row = await this.call(() => reader.readProgress(this.site));
    if (row) {
      parseCheckpoint(row.checkpoint);
      this.persisted = row;
      return row;
    }
    // Nothing committed at or below CURRENT_SCN is sent; a transaction still open there commits above it and must
    // be sent whole, so mining starts below the START of every transaction that may be open at that point.
    // In this order: an SCN read before V$TRANSACTION (a transaction that starts after that query starts at or
    // above it), the open transactions, then CURRENT_SCN (a transaction that commits above it was open at the
    // query or started after it; reading CURRENT_SCN first would miss one that commits between the two reads).
    const before = await this.call(() => reader.currentScn());
    const oldest = await this.call(() => reader.oldestOpenTransactionScn());
    const current = await this.call(() => reader.currentScn());
    const low = oldest !== null && oldest < before ? oldest : before;
    const resume = low > 0n ? low - 1n : 0n;
    const first: OracleProgressRow = { lastPublished: null, checkpoint: formatCheckpoint({ after: lastAt(current), resume: resume < current ? resume : current }), seen: '{}' };
    await this.call(() => reader.writeProgress(this.site, first));
    this.options.logger.info(
      { scn: current.toString(), resume: resume.toString(), oldestOpenTransaction: oldest === null ? null : oldest.toString() },
      'capture of this site starts at the current SCN (transactions open there are read from their start)',
    );
    this.persisted = first;
    return first;
  }

  async resumePoint(): Promise<ResumePoint> {
    const row = await this.readPersisted();
    return { lastPublished: row.lastPublished, seen: parseSeen(row.seen) };
  }

  // ─── confirmation ──────────────────────────────────────────────────────────────────────────────────────

  async confirm(checkpoint: string, resume: ResumePoint): Promise<void> {
    const parsed = parseCheckpoint(checkpoint);
    // Confirmed checkpoints only grow. One whose `after` is below what is already confirmed (or persisted) is a
    // stale frontier (a confirmation that raced a newer one, a runner of a previous session): taking it would
    // move the persisted row back, resending what the broker holds, lastPublished and seen going back with it.
    const floor = this.confirmed?.parsed ?? (this.persisted ? parseCheckpoint(this.persisted.checkpoint) : null);
    if (floor !== null && parsed.after < floor.after) {
      this.options.logger.warn({ checkpoint: describePosition(parsed.after), confirmed: describePosition(floor.after) }, 'a confirmation below the checkpoint already confirmed is ignored');
      return;
    }
    // At one `after`, the lower resume SCN is the safe one (it only reads more again).
    const effective = floor !== null && parsed.after === floor.after && floor.resume < parsed.resume ? floor : parsed;
    this.confirmed = { checkpoint: formatCheckpoint(effective), parsed: effective, lastPublished: resume.lastPublished, seen: resume.seen };
    let drop = 0;
    while (drop < this.unconfirmed.length && this.unconfirmed[drop]!.after <= parsed.after) drop++;
    if (drop > 0) this.unconfirmed = this.unconfirmed.slice(drop);
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

  /** Writes the last confirmed checkpoint (one write at a time, in order). */
  private write(): Promise<void> {
    const next = this.writing.then(async () => {
      const confirmed = this.confirmed;
      if (!confirmed) return;
      const row: OracleProgressRow = { lastPublished: confirmed.lastPublished, checkpoint: confirmed.checkpoint, seen: seenJson(confirmed.seen) };
      const p = this.persisted;
      if (p && p.checkpoint === row.checkpoint && p.lastPublished === row.lastPublished && p.seen === row.seen) return;
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
    const checkpoint = parseCheckpoint(row.checkpoint);
    this.confirmed = { checkpoint: row.checkpoint, parsed: checkpoint, lastPublished: row.lastPublished, seen };
    this.unconfirmed = [];
    const runner = handler;
    const wrapped: SourceHandler = {
      transaction: (tx, part, cp) => {
        if (cp !== null && this.unconfirmed.length < LAG_SAMPLES) this.unconfirmed.push({ after: tx.position, micros: tx.commitTimeMicros });
        runner.transaction(tx, part, cp);
      },
      skipped: (position, cp, reason, seenSites) => runner.skipped(position, cp, reason, seenSites),
      idle: (cp, seenSites) => runner.idle(cp, seenSites),
    };
    const buffer = new TransactionBuffer({
      site: this.site,
      directory: this.spillDirectory,
      maxBufferBytes: this.options.maxBufferBytes ?? 64 * 1024 * 1024,
      maxSpillBytes: this.options.maxSpillBytes ?? 16 * 1024 * 1024 * 1024,
    });
    buffer.start();
    const stream: Stream = { closed: false, paused: false, heartbeat: false, wake: null, loop: Promise.resolve(), mined: null as unknown as MinedStream, buffer };
    const reader = this.reader();
    stream.mined = new MinedStream(
      {
        site: this.site,
        maxPartBytes: this.options.maxPartBytes,
        seen,
        checkpoint,
        buffer,
        captured: this.captured,
        columns: (owner, table) => this.call(() => reader.columns(owner, table)),
        gate: () => this.gate(stream),
        warn: (line) => this.options.logger.warn(line),
        info: (line) => this.options.logger.info(line),
      },
      wrapped,
    );
    this.stream = stream;
    stream.loop = this.run(stream);
    this.ended = stream.loop.catch((error: unknown) => {
      if (this.writeTimer) {
        clearTimeout(this.writeTimer);
        this.writeTimer = null;
      }
      throw describeReaderError(this.site, error);
    });
    this.ended.catch(() => undefined);
    this.options.logger.info({ after: describePosition(checkpoint.after), resume: checkpoint.resume.toString() }, 'mining the redo logs');
  }

  /** Waits until the stream may read (not paused) or is closed; false when closed. */
  private async gate(stream: Stream): Promise<boolean> {
    while (stream.paused && !stream.closed) await new Promise<void>((resolve) => (stream.wake = resolve));
    return !stream.closed;
  }

  private async sleep(stream: Stream, ms: number): Promise<void> {
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

  private async run(stream: Stream): Promise<void> {
    const reader = this.reader();
    const mined = stream.mined;
    try {
      while (await this.gate(stream)) {
        const current = await this.call(() => reader.currentScn());
        const threads = await this.call(() => reader.threads());
        const from = mined.position;
        const bound = windowBound({ threads, currentScn: current, from });
        const to = windowBound({ threads, currentScn: current, from, maxWindowScns: this.options.maxWindowScns });
        if (to <= from) {
          if (stream.heartbeat) {
            stream.heartbeat = false;
            mined.idle();
          }
          await this.sleep(stream, this.pollIntervalMs);
          continue;
        }
        const logs = await this.call(() => reader.logs(from + 1n));
        const chosen = chooseLogs({ site: this.site, logs, threads, from, to });
        const session = await this.call(() => reader.mine(chosen, from, to, this.owners));
        try {
          for (;;) {
            if (!(await this.gate(stream))) return;
            const rows = await this.call(() => session.next(this.batchRows));
            if (rows.length === 0) break;
            for (const row of rows) {
              await mined.accept(row);
              if (stream.closed) return;
            }
          }
        } finally {
          await session.end().catch(() => undefined);
        }
        await mined.endWindow(to);
        stream.heartbeat = false;
        if (to >= bound) await this.sleep(stream, this.pollIntervalMs);
      }
    } finally {
      stream.buffer.finish();
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

  /** Polls now; with nothing new, says idle where the stream is. */
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
    return this.confirmed ? `${describePosition(this.confirmed.parsed.after)} (resume ${this.confirmed.parsed.resume})` : 'none';
  }

  /** What the stream did so far (tests, logs): the mined stream's counts and the transactions spilled. */
  stats(): (MinedStream['counts'] & { spills: number }) | null {
    const stream = this.stream;
    return stream ? { ...stream.mined.counts, spills: stream.buffer.spills } : null;
  }

  /** Where the stream is read to (tests, status). */
  readSoFar(): Scn | null {
    return this.stream?.mined.position ?? null;
  }
}
