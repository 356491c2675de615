/**
 * What the web console's JSON API answers, shaped from what the CLI's inspect pieces already compute: a
 * site's status (status-command.ts) as one card, an archived message (archive-reader.ts) as feed events,
 * `sitesync trace`'s lines (trace-command.ts) as one result per site. Pure, so that the API's shape is
 * tested without a broker or a database.
 *
 * Values: a change is shown by change-format.ts, which leaves out every value but the key unless asked;
 * nothing here adds one.
 */
import type { SiteStatus } from '../cli/status-command.ts';
import type { ArchiveEntry } from '../inspect/archive-reader.ts';
import { changePasses, transactionPasses, type ChangeFilter } from '../inspect/change-filter.ts';
import { flattenTransaction, viewChange, type ChangeView, type ShowOptions } from '../inspect/change-format.ts';
import { redactSecrets } from '../observability/logger.ts';

/** One site as the console's header shows it. */
export interface SiteView {
  readonly site: string;
  /** running: captures (or only receives) and a process consumes its queue; stopped: either is missing; unreachable: its database did not answer. */
  readonly state: 'running' | 'stopped' | 'unreachable';
  readonly capture: 'streaming' | 'idle' | 'not created' | 'off' | 'unknown';
  readonly apply: 'consuming' | 'no consumer' | 'no queue' | 'unknown';
  /** Bytes of log written past what capture confirmed. */
  readonly lagBytes: number | null;
  /** Bytes of log the database keeps for the site's capture. */
  readonly retainedBytes: number | null;
  readonly captureName: string | null;
  readonly applied: readonly { readonly source: string; readonly position: string | null }[];
  readonly queue: { readonly messages: number; readonly consumers: number; readonly parked: number } | null;
  readonly error: string | null;
}

export function siteView(status: SiteStatus): SiteView {
  const c = status.captureState;
  const capture: SiteView['capture'] = !status.capture ? 'off' : c === undefined ? 'unknown' : !c.exists ? 'not created' : c.active ? 'streaming' : 'idle';
  const q = status.queue;
  const queue = q && !('error' in q) ? { messages: q.messages, consumers: q.consumers, parked: q.parked } : null;
  const apply: SiteView['apply'] = queue ? (queue.consumers > 0 ? 'consuming' : 'no consumer') : q && 'error' in q && !q.unreachable ? 'no queue' : 'unknown';
  const state: SiteView['state'] = status.error ? 'unreachable' : (capture === 'streaming' || capture === 'off') && apply === 'consuming' ? 'running' : 'stopped';
  // Errors come redacted from collectStatus; redacted again because a leak here would be on a web page.
  const errors = [status.error, q && 'error' in q ? `queue ${q.name}: ${q.error}` : undefined].filter((e): e is string => typeof e === 'string');
  return {
    site: status.site,
    state,
    capture,
    apply,
    lagBytes: c?.lagBytes ?? null,
    retainedBytes: c?.retainedBytes ?? null,
    captureName: c?.name ?? null,
    applied: (status.applied ?? []).map((a) => ({ source: a.source, position: a.applied })),
    queue,
    error: errors.length > 0 ? oneLine(errors.join('; ')) : null,
  };
}

/** Changes sent per transaction at most: a transaction of a million rows must not flood a browser tab. */
export const MAX_FEED_CHANGES = 100;

export type FeedEvent =
  | {
      readonly event: 'transaction';
      readonly data: {
        readonly offset: number;
        readonly transaction: string;
        readonly site: string;
        readonly displayPosition: string;
        readonly commitTime: string;
        readonly changes: readonly ChangeView[];
        /** Changes that passed the filter but were not sent (MAX_FEED_CHANGES). */
        readonly more: number;
      };
    }
  | { readonly event: 'skipped'; readonly data: { readonly offset: number | null; readonly site: string | null; readonly reason: string } };

/** The feed events of one archived entry: each transaction with a change passing the filter, or one `skipped`. */
export function feedEvents(entry: ArchiveEntry, filter: ChangeFilter, show: ShowOptions): FeedEvent[] {
  if (entry.kind === 'skipped') {
    // Shown only when no filter is set: a filtered feed asked for some site's or table's changes.
    if (filter.sites !== null || filter.tables !== null || filter.ops !== null) return [];
    return [{ event: 'skipped', data: { offset: entry.offset, site: entry.site, reason: oneLine(entry.reason) } }];
  }
  const events: FeedEvent[] = [];
  for (const tx of entry.message.transactions) {
    if (!transactionPasses(filter, tx)) continue;
    const passing = flattenTransaction(tx).filter((flat) => changePasses(filter, flat));
    if (passing.length === 0) continue; // heartbeats and filtered-out transactions show nothing
    const changes = passing.slice(0, MAX_FEED_CHANGES).map((flat) => viewChange(flat, show, { offset: entry.offset, message: entry.message }));
    events.push({
      event: 'transaction',
      data: { offset: entry.offset, transaction: tx.id, site: tx.site, displayPosition: changes[0]!.displayPosition, commitTime: changes[0]!.commitTime, changes, more: passing.length - changes.length },
    });
  }
  return events;
}

/** One site's answer for one traced transaction. */
export interface TraceSiteResult {
  readonly site: string;
  /** The first words of the line: applied, parked, still queued, not applied, not arrived, passed over, recorded, unknown. */
  readonly state: string;
  readonly detail: string;
}

export interface TraceResult {
  readonly transaction: string | null;
  readonly summary: string;
  readonly sites: readonly TraceSiteResult[];
}

const TRACE_STATES = ['applied', 'parked', 'still queued', 'not applied', 'not arrived', 'passed over', 'recorded', 'unknown'];

/**
 * `runTrace`'s printed lines as structured results: a line at the margin heads a transaction, an indented
 * one is `  <site padded>  <what happened there>` (trace-command.ts prints nothing else).
 */
export function parseTraceLines(lines: readonly string[]): TraceResult[] {
  const results: { transaction: string | null; summary: string; sites: TraceSiteResult[] }[] = [];
  for (const line of lines) {
    const site = /^ {2}(\S+)\s+(.*)$/.exec(line);
    if (site && results.length > 0) {
      const detail = oneLine(site[2]!);
      const state = TRACE_STATES.find((s) => detail.startsWith(s)) ?? 'unknown';
      results.at(-1)!.sites.push({ site: site[1]!, state, detail });
    } else {
      results.push({ transaction: /^transaction (\S+) /.exec(line)?.[1] ?? null, summary: oneLine(line), sites: [] });
    }
  }
  return results;
}

/** One line, secrets out, bounded: what an error or a reason becomes on the page. */
export function oneLine(text: string, max = 500): string {
  const line = redactSecrets(String(text).split('\n')[0]!.trim());
  return line.length > max ? `${line.slice(0, max)}…` : line;
}
