/**
 * Conflict resolutions in the log as one info line per interval (10 s) in which any happened, instead of
 * one line each: two sites writing the same rows resolve thousands a second. Each is still counted
 * (sitesync_conflicts_total) and recorded where the sink keeps them (sitesync.conflicts), and its detail
 * logged by the sink at debug.
 *
 *   conflicts resolved in the last 10 s: 42 (london→paris update_origin_differs: 40 applied, 2 skipped)
 */
import type { Logger } from './logger.ts';
import type { PipelineEventMap, PipelineEvents } from './pipeline-events.ts';

export const CONFLICT_SUMMARY_INTERVAL_MS = 10_000;

/** Tables named per group in the log line's fields, at most. */
const MAX_TABLES = 10;

export interface ConflictGroup {
  readonly source: string;
  readonly site: string;
  readonly kind: string;
  applied: number;
  skipped: number;
  readonly tables: Set<string>;
}

export interface ConflictSummaryOptions {
  readonly events: PipelineEvents;
  readonly logger: Logger;
  readonly intervalMs?: number;
  /** The clock, for tests. */
  readonly now?: () => number;
}

export class ConflictSummary {
  private groups = new Map<string, ConflictGroup>();
  private since: number;
  private timer: NodeJS.Timeout | null = null;
  private readonly now: () => number;
  private readonly intervalMs: number;
  private readonly onConflict = (e: PipelineEventMap['apply:conflict'][0]): void => {
    const key = JSON.stringify([e.source, e.site, e.kind]);
    let group = this.groups.get(key);
    if (!group) {
      group = { source: e.source, site: e.site, kind: e.kind, applied: 0, skipped: 0, tables: new Set() };
      this.groups.set(key, group);
    }
    if (e.resolution === 'apply') group.applied++;
    else group.skipped++;
    if (group.tables.size < MAX_TABLES) group.tables.add(e.table);
  };

  constructor(private readonly options: ConflictSummaryOptions) {
    this.now = options.now ?? Date.now;
    this.intervalMs = options.intervalMs ?? CONFLICT_SUMMARY_INTERVAL_MS;
    this.since = this.now();
    options.events.on('apply:conflict', this.onConflict);
  }

  /** Logs a summary every interval in which conflicts were resolved. */
  start(): this {
    if (this.timer) return this;
    this.since = this.now();
    this.timer = setInterval(() => this.flush(), this.intervalMs);
    this.timer.unref();
    return this;
  }

  /** Stops listening, and logs what the last interval resolved. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.options.events.off('apply:conflict', this.onConflict);
    this.flush();
  }

  /** Logs the conflicts resolved since the last summary, if any, and starts counting again; returns the line. */
  flush(): string | null {
    const groups = [...this.groups.values()];
    const seconds = Math.max(1, Math.round((this.now() - this.since) / 1000));
    this.groups = new Map();
    this.since = this.now();
    if (groups.length === 0) return null;
    const line = formatConflictSummary(groups, seconds);
    const total = groups.reduce((n, g) => n + g.applied + g.skipped, 0);
    this.options.logger.info(
      {
        conflicts: total,
        seconds,
        groups: groups.map((g) => ({ source: g.source, site: g.site, kind: g.kind, applied: g.applied, skipped: g.skipped, tables: [...g.tables].sort() })),
      },
      line,
    );
    return line;
  }
}

/** The summary line: groups by source→site and kind, the largest first. */
export function formatConflictSummary(groups: readonly ConflictGroup[], seconds: number): string {
  const count = (g: ConflictGroup): number => g.applied + g.skipped;
  const sorted = [...groups].sort((a, b) => count(b) - count(a) || `${a.source} ${a.site} ${a.kind}`.localeCompare(`${b.source} ${b.site} ${b.kind}`));
  const total = sorted.reduce((n, g) => n + count(g), 0);
  const parts = sorted.map((g) => {
    const outcomes = [g.applied > 0 ? `${g.applied} applied` : null, g.skipped > 0 ? `${g.skipped} skipped` : null].filter((o) => o !== null);
    return `${g.source}→${g.site} ${g.kind}: ${outcomes.join(', ')}`;
  });
  return `conflicts resolved in the last ${seconds} s: ${total} (${parts.join('; ')})`;
}
