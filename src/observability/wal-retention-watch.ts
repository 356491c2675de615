/**
 * WAL retention watch. A site's slot keeps WAL on its server until sitesync confirms it, so a site whose
 * process is stopped fills its server's disk, silently. Every process therefore reads, every
 * `watch.intervalSeconds`, the WAL held by the slot of EVERY configured site (its own included): a stopped
 * site is noticed by the ones still running.
 *
 * Each reading becomes a `watch:slot` event (metrics.ts turns it into gauges). A slot holding more than
 * `watch.walRetentionWarnBytes` gets one warning each time it crosses that amount (again only after it went
 * back under), saying what to do. A site whose database does not answer, or answers too slowly, is skipped
 * for that round with a debug line: its own process reports its own errors, and the watch never stops the
 * pipeline.
 *
 * How a slot is read is injected (the composition root passes connectors/postgres' readPostgresStatus), so
 * the watch is tested without a database.
 */
import { slotName } from '../config/names.ts';
import { describeError } from '../errors.ts';
import type { Logger } from './logger.ts';
import type { PipelineEvents } from './pipeline-events.ts';

/** What the watch needs of a slot; connectors/postgres/postgres-status.ts's SlotStatus is one. */
export interface SlotReading {
  readonly exists: boolean;
  readonly active: boolean;
  /** WAL bytes the slot keeps from its restart position; null when it keeps none (absent, invalidated). */
  readonly retainedBytes: number | null;
}

/** Reads the slot of `slotSite` on that site's server; rejects when the server cannot be read. */
export type SlotReader = (slotSite: string) => Promise<SlotReading>;

export interface WalRetentionWatchOptions {
  /** The site this process serves (the `site` of every event). */
  readonly site: string;
  /** Every configured site: the slots watched. */
  readonly sites: readonly string[];
  readonly readSlot: SlotReader;
  /** Seconds between the end of a round and the start of the next. */
  readonly intervalSeconds: number;
  /** Bytes a slot may hold before the warning; 0 turns the warning off (events go on). */
  readonly warnBytes: number;
  readonly events: PipelineEvents;
  readonly logger: Logger;
  /** A read unanswered after this long is given up for the round (the site counts as unreachable). Default 10 s. */
  readonly readTimeoutMs?: number;
}

const DEFAULT_READ_TIMEOUT_MS = 10_000;

export class WalRetentionWatch {
  private readonly readTimeoutMs: number;
  private timer: NodeJS.Timeout | null = null;
  private round: Promise<void> | null = null;
  private started = false;
  private stopping = false;
  /** Slots warned about, until they hold no more than the threshold again. */
  private readonly over = new Set<string>();
  /** Sites whose read was given up (timed out) and has not settled yet: not read again until it does. */
  private readonly unanswered = new Set<string>();

  constructor(private readonly options: WalRetentionWatchOptions) {
    this.readTimeoutMs = options.readTimeoutMs ?? DEFAULT_READ_TIMEOUT_MS;
  }

  /** Starts the rounds: the first at once, then one every interval. No effect once stopped. */
  start(): void {
    if (this.started || this.stopping) return;
    this.started = true;
    this.schedule(0);
  }

  /** Ends the rounds; resolves once a round in progress has finished. Never rejects. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.round;
  }

  /** Runs one round now (or joins the one in progress): read every slot, emit, warn. Never rejects. */
  check(): Promise<void> {
    if (this.stopping) return this.round ?? Promise.resolve();
    this.round ??= this.runRound()
      .catch((error: unknown) => this.options.logger.warn(`WAL retention watch: round failed, next one as planned: ${describeError(error)}`))
      .finally(() => {
        this.round = null;
      });
    return this.round;
  }

  private schedule(delayMs: number): void {
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.check().then(() => {
        if (!this.stopping) this.schedule(this.options.intervalSeconds * 1000);
      });
    }, delayMs);
    this.timer.unref();
  }

  private async runRound(): Promise<void> {
    const { sites, logger } = this.options;
    const readings = await Promise.all(sites.map((slotSite) => this.read(slotSite)));
    if (this.stopping) return;
    sites.forEach((slotSite, i) => {
      const reading = readings[i];
      if (!reading) return;
      try {
        this.report(slotSite, reading);
      } catch (error) {
        logger.warn({ slotSite }, `WAL retention watch: reporting the slot of site ${slotSite} failed: ${describeError(error)}`);
      }
    });
  }

  /** The slot's reading, or undefined when the site cannot be read this round (logged at debug). */
  private async read(slotSite: string): Promise<SlotReading | undefined> {
    const { logger, readSlot } = this.options;
    if (this.unanswered.has(slotSite)) {
      logger.debug({ slotSite }, `slot of site ${slotSite} not read this round: the previous read has not answered yet`);
      return undefined;
    }
    this.unanswered.add(slotSite);
    const reading = (async () => {
      try {
        return await readSlot(slotSite);
      } finally {
        this.unanswered.delete(slotSite);
      }
    })();
    reading.catch(() => undefined); // a read given up on may still fail later
    let timeout: NodeJS.Timeout | undefined;
    const givenUp = new Promise<never>((_, reject) => {
      timeout = setTimeout(() => reject(new Error(`no answer within ${this.readTimeoutMs} ms`)), this.readTimeoutMs);
      timeout.unref();
    });
    try {
      return await Promise.race([reading, givenUp]);
    } catch (error) {
      logger.debug({ slotSite }, `slot of site ${slotSite} not read this round (its own process reports its errors): ${describeError(error)}`);
      return undefined;
    } finally {
      clearTimeout(timeout);
    }
  }

  private report(slotSite: string, reading: SlotReading): void {
    const { site, events, logger, warnBytes } = this.options;
    // A slot that does not exist (not created yet, dropped) or was invalidated holds no WAL.
    const retainedBytes = reading.exists ? (reading.retainedBytes ?? 0) : 0;
    const active = reading.exists && reading.active;
    if (!reading.exists) logger.debug({ slotSite }, `slot ${slotName(slotSite)} of site ${slotSite} does not exist (yet)`);
    events.emit('watch:slot', { site, slotSite, retainedBytes, active });
    if (warnBytes <= 0) return;
    if (retainedBytes > warnBytes) {
      if (this.over.has(slotSite)) return;
      this.over.add(slotSite);
      logger.warn({ slotSite, slot: slotName(slotSite), retainedBytes, active, warnBytes }, retentionWarning(slotSite, retainedBytes, active));
    } else if (this.over.delete(slotSite)) {
      logger.info({ slotSite, slot: slotName(slotSite), retainedBytes, active, warnBytes }, `slot ${slotName(slotSite)} on site ${slotSite} holds ${formatBytes(retainedBytes)} of WAL again, no more than ${formatBytes(warnBytes)}`);
    }
  }
}

/** The warning for a slot holding too much WAL: which slot, how much, whether it is read, what to do. */
export function retentionWarning(slotSite: string, retainedBytes: number, active: boolean): string {
  const slot = slotName(slotSite);
  const held = `slot ${slot} on site ${slotSite} holds ${formatBytes(retainedBytes)} of WAL`;
  return active
    ? `${held} although a process is streaming from it: site ${slotSite} is falling behind; check that process's log and sitesync_capture_lag_bytes (broker blocked or slow, a very large transaction) before the disk fills`
    : `${held} and no process is streaming from it: start "sitesync run --site ${slotSite}", or drop the slot if the site is gone (SELECT pg_drop_replication_slot('${slot}')), before the disk fills`;
}

/** Bytes in binary units with one decimal: 512 B, 64.0 KiB, 1.2 GiB. */
export function formatBytes(bytes: number): string {
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  if (bytes < 1024) return `${bytes} B`;
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1023.95 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}
