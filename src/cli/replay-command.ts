/**
 * `sitesync replay`: re-applies archived transactions to a site (see src/apply/replay.ts). This file reads
 * the options (pure, unit-tested) and wires the site's sink from its connector; main.ts only declares the
 * command.
 */
import { capturingSites, databaseUrlFor, type Config } from '../config/config-schema.ts';
import { policyResolver } from '../apply/conflict-policy.ts';
import { replayArchive, formatReplaySummary, stopRunFirst, type ReplayPoint, type ReplayResult } from '../apply/replay.ts';
import { connectorFor, describeSitePosition, type ConnectorRegistry, type PositionFormat } from '../connector.ts';
import { comparePositions } from '../events/position.ts';
import { SitesyncError } from '../errors.ts';
import type { Logger } from '../observability/logger.ts';

export interface ReplayCommandOptions {
  readonly site: string;
  readonly from: string;
  readonly to?: string;
  readonly source?: string;
}

export interface ReplayPlan {
  readonly site: string;
  readonly sources: readonly string[];
  readonly from: ReplayPoint;
  readonly to: ReplayPoint | null;
}

/** ISO 8601: a date, optionally a time (seconds and up to 9 fractional digits optional), optionally an offset. */
const ISO_TIME = /^(\d{4}-\d\d-\d\d)(?:[T ](\d\d:\d\d)(?::(\d\d)(?:[.,](\d{1,9}))?)?)?(Z|z|[+-]\d\d(?::?\d\d)?)?$/;

function configError(message: string): SitesyncError {
  return new SitesyncError('SITESYNC_ERR_CONFIG', message);
}

/**
 * `--from` / `--to`: an ISO 8601 time (UTC when it has no offset) or a position of the source site's
 * database as its connector reads them (PostgreSQL: `0/16B3748` as `pg_current_wal_lsn()` prints it, or
 * sitesync's own 16 hex digits as in `status --json`).
 */
export function parseReplayPoint(text: string, option: string, positions: PositionFormat): ReplayPoint {
  const value = text.trim();
  const time = parseTime(value);
  if (time !== null) return time;
  const position = positions.parse(value);
  if (position !== null) return { kind: 'position', position, text: value };
  throw configError(
    `${option} ${JSON.stringify(text)} is neither a time nor a position; give an ISO 8601 time (2024-05-01T09:30:00Z, UTC when no offset is given) or a position (${positions.example}, as the source's database prints it)`,
  );
}

function parseTime(value: string): ReplayPoint | null {
  const m = ISO_TIME.exec(value);
  if (m) {
    const [, date, hm, seconds, fraction, zone] = m;
    const offset = zone === undefined || zone === 'z' ? 'Z' : zone.length === 3 ? `${zone}:00` : zone.replace(/^([+-]\d\d)(\d\d)$/, '$1:$2');
    const millis = Date.parse(`${date}T${hm ?? '00:00'}:${seconds ?? '00'}${offset}`);
    // Date.parse accepts 2024-02-30; the round trip through the date's own fields catches it.
    if (Number.isFinite(millis) && sameCalendarDate(date!, millis, offset)) {
      const micros = BigInt(millis) * 1000n + BigInt((fraction ?? '').padEnd(9, '0').slice(0, 6) || '0');
      return { kind: 'time', micros, text: value };
    }
  }
  return null;
}

function sameCalendarDate(date: string, millis: number, offset: string): boolean {
  const sign = offset === 'Z' ? 0 : offset.startsWith('-') ? -1 : 1;
  const [h, mm] = offset === 'Z' ? [0, 0] : offset.slice(1).split(':').map(Number);
  const local = new Date(millis + sign * ((h ?? 0) * 60 + (mm ?? 0)) * 60_000);
  return local.toISOString().slice(0, 10) === date;
}

/** Checks the options against the configuration: which site, which sources, a range that makes sense. */
export function planReplay(config: Config, options: ReplayCommandOptions, connectors: ConnectorRegistry): ReplayPlan {
  const sites = Object.keys(config.sites);
  const { site } = options;
  if (!(site in config.sites)) {
    throw configError(`site ${JSON.stringify(site)} is not in the configuration (sites: ${sites.join(', ')}); pass one of them with --site`);
  }
  // Sites with capture off send nothing, so they are replayed only when named (they may have sent before).
  let sources = capturingSites(config).filter((s) => s !== site);
  if (options.source === undefined && sources.length === 0) {
    throw configError(`every site but ${site} has capture off, so there is nothing it receives to replay; name a site that sent before with --source`);
  }
  if (options.source !== undefined) {
    const source = options.source;
    if (source === site) throw configError(`--source ${source} is the site being replayed into; give another site (${sources.join(', ')}), or leave --source out for all of them`);
    if (!(source in config.sites)) throw configError(`--source ${JSON.stringify(source)} is not in the configuration (sites: ${sites.join(', ')})`);
    sources = [source];
  }
  // A position is one source's, read as its database writes them: only with one source.
  const point = (text: string, option: string): ReplayPoint => {
    const time = parseTime(text.trim());
    if (time !== null) return time;
    if (sources.length > 1) {
      throw configError(`a position belongs to one source site, and ${site} has ${sources.length} (${sources.join(', ')}): add --source, or give times instead (${option} ${text} is no time)`);
    }
    return parseReplayPoint(text, option, connectorFor(connectors, config, sources[0]!).positions);
  };
  const from = point(options.from, '--from');
  const to = options.to === undefined ? null : point(options.to, '--to');
  if (to !== null && to.kind === from.kind) {
    const backwards = from.kind === 'position' && to.kind === 'position' ? comparePositions(to.position, from.position) < 0 : from.kind === 'time' && to.kind === 'time' && to.micros < from.micros;
    if (backwards) throw configError(`--to ${to.text} is before --from ${from.text}; swap them`);
  }
  return { site, sources, from, to };
}

/** Runs the replay with the site's sink; returns the lines to print (one per source, and one more for unattributed undecodable messages). */
export async function runReplay(config: Config, connectors: ConnectorRegistry, plan: ReplayPlan, logger: Logger, report: (line: string) => void): Promise<string[]> {
  const connector = connectorFor(connectors, config, plan.site);
  // The site's capture reads its log while its `sitesync run` runs.
  const { capture } = await connector.readStatus(databaseUrlFor(config, plan.site, 'monitor'), plan.site, []);
  if (capture.active) throw stopRunFirst(plan.site, `its ${capture.name} is being read`);
  // The same sink settings as `sitesync run` (pipeline.ts), so a replayed transaction lands as it would have.
  const sink = connector.createSink({
    site: plan.site,
    url: databaseUrlFor(config, plan.site, 'apply'),
    config,
    conflictPolicy: policyResolver(config.conflicts),
    onConflict: () => undefined,
    logger: logger.child({ site: plan.site, part: 'replay' }),
  });
  let result: ReplayResult;
  try {
    result = await replayArchive({ config, site: plan.site, sources: plan.sources, from: plan.from, to: plan.to, sink, connectors, logger: logger.child({ site: plan.site, part: 'replay' }), report });
  } finally {
    await sink.close().catch(() => undefined);
  }
  const lines = result.sources.map((r) => formatReplaySummary(r, (p) => describeSitePosition(connectors, config, r.source, p)));
  if (result.undecodableUnattributed > 0) lines.push(`${result.undecodableUnattributed} messages naming no configured site skipped as undecodable`);
  return lines;
}
