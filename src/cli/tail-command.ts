/**
 * `sitesync tail`: the changes in the archive stream, one JSON line each (or an aligned table with
 * --pretty), from a start point, filtered by site, table, operation, key and transaction; with --follow,
 * what arrives next too, until SIGINT. It reads the archive (src/inspect/archive-reader.ts), never a site's
 * queue, so it takes nothing from any site. Values other than the key are hidden unless --values: they may
 * be personal data. main.ts only declares the command.
 */
import { isConfiguredSite, type Config } from '../config/config-schema.ts';
import { connectorFor, describeSitePosition, type ConnectorRegistry } from '../connector.ts';
import { SitesyncError } from '../errors.ts';
import { readArchive, type ArchiveEntry } from '../inspect/archive-reader.ts';
import { changePasses, parseChangeFilter, transactionPasses, type ArchiveStart, type ChangeFilter } from '../inspect/change-filter.ts';
import { flattenTransaction, formatJsonLine, formatTableHeader, formatTableRow, safeText, tableLayout, viewChange, type ShowOptions } from '../inspect/change-format.ts';
import { parseReplayPoint } from './replay-command.ts';

export interface TailCommandOptions {
  readonly from?: string;
  readonly follow?: boolean;
  readonly site?: string;
  readonly table?: string;
  readonly op?: string;
  readonly key?: string;
  readonly transaction?: string;
  readonly limit?: string | number;
  readonly pretty?: boolean;
  readonly values?: boolean;
}

export interface TailPlan {
  readonly start: ArchiveStart;
  readonly follow: boolean;
  readonly filter: ChangeFilter;
  /** Changes shown at most (null: no limit). */
  readonly limit: number | null;
  readonly pretty: boolean;
  readonly values: boolean;
}

export interface TailOutput {
  /** A change (or the table's header line). */
  print(line: string): void;
  /** `skipped offset N: reason`, for stderr. */
  problem(line: string): void;
}

/** Parses a count option (`--limit`): a whole number from 1. */
export function parseLimit(value: string | number | undefined, option = '--limit'): number | null {
  if (value === undefined) return null;
  const n = typeof value === 'number' ? value : /^\s*\d+\s*$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) throw new SitesyncError('SITESYNC_ERR_CONFIG', `${option} ${JSON.stringify(String(value))} is not a count; give a whole number from 1`);
  return n;
}

/** `--from`: first, last, an ISO 8601 time (UTC without an offset), or site:position. */
export function parseArchiveStart(config: Config, connectors: ConnectorRegistry, text: string): ArchiveStart {
  const value = text.trim();
  if (value === 'first' || value === 'last') return { kind: value };
  const noPositions = { isPosition: () => false, parse: () => null, example: '', describe: (p: string) => p };
  try {
    const point = parseReplayPoint(value, '--from', noPositions);
    if (point.kind === 'time') return point;
  } catch {
    // not a time: a position, or nothing
  }
  const colon = value.indexOf(':');
  const site = colon > 0 ? value.slice(0, colon) : '';
  if (colon > 0 && isConfiguredSite(config, site)) {
    const positions = connectorFor(connectors, config, site).positions;
    const position = positions.parse(value.slice(colon + 1));
    if (position !== null) return { kind: 'position', site, position, text: value };
    throw new SitesyncError('SITESYNC_ERR_CONFIG', `--from ${JSON.stringify(shortText(text))}: ${JSON.stringify(shortText(value.slice(colon + 1)))} is not a position of site ${site}; give one as its database prints it (${site}:${positions.example})`);
  }
  const first = Object.keys(config.sites)[0];
  const example = first === undefined ? 'paris:0/16B3748' : `${first}:${connectorFor(connectors, config, first).positions.example}`;
  throw new SitesyncError('SITESYNC_ERR_CONFIG', `--from ${JSON.stringify(shortText(text))} is not a start; give first, last, an ISO 8601 time (2024-05-01T09:30:00Z, UTC when no offset is given) or site:position (${example}, a transaction id as tail prints it)`);
}

function shortText(text: string): string {
  return text.length > 60 ? `${text.slice(0, 60)}…` : text;
}

/** Checks every option against the configuration before anything is read. */
export function planTail(config: Config, connectors: ConnectorRegistry, options: TailCommandOptions): TailPlan {
  const filter = parseChangeFilter(config, connectors, options);
  // Without --from, what happened last: the last message archived (then, with --follow, what comes next).
  const start = parseArchiveStart(config, connectors, options.from ?? 'last');
  return { start, follow: options.follow ?? false, filter, limit: parseLimit(options.limit), pretty: options.pretty ?? false, values: options.values ?? false };
}

/** The lines of one archived entry that pass the filter, or its `skipped` line. */
export function entryLines(entry: ArchiveEntry, filter: ChangeFilter, show: ShowOptions, render: (view: ReturnType<typeof viewChange>) => string): { lines: string[]; skipped: string | null } {
  if (entry.kind === 'skipped') return { lines: [], skipped: safeText(`skipped offset ${entry.offset ?? '?'}${entry.site ? ` (says site ${entry.site})` : ''}: ${entry.reason}`) };
  const lines: string[] = [];
  for (const tx of entry.message.transactions) {
    if (!transactionPasses(filter, tx)) continue;
    for (const flat of flattenTransaction(tx)) {
      if (changePasses(filter, flat)) lines.push(render(viewChange(flat, show, { offset: entry.offset, message: entry.message })));
    }
  }
  return { lines, skipped: null };
}

/** Reads and prints; returns the number of changes printed. Ends at the end measured at start, at --limit, or (with --follow) when `signal` aborts. */
export async function runTail(config: Config, connectors: ConnectorRegistry, plan: TailPlan, out: TailOutput, signal?: AbortSignal): Promise<number> {
  const show: ShowOptions = { values: plan.values, describe: (site, position) => describeSitePosition(connectors, config, site, position) };
  const layout = tableLayout(Object.keys(config.sites));
  const render = plan.pretty ? (view: ReturnType<typeof viewChange>) => formatTableRow(view, layout) : formatJsonLine;
  if (plan.pretty) out.print(formatTableHeader(layout, plan.values));
  let shown = 0;
  for await (const entry of readArchive({ config, connectors, start: plan.start, follow: plan.follow, signal, connectionName: 'sitesync tail' })) {
    const { lines, skipped } = entryLines(entry, plan.filter, show, render);
    if (skipped !== null) out.problem(skipped);
    for (const line of lines) {
      out.print(line);
      shown++;
      if (plan.limit !== null && shown >= plan.limit) return shown;
    }
  }
  return shown;
}
