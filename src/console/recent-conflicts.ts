/**
 * The latest entries of a site's conflict log, for the console: the log as the site's connector reads it
 * (src/inspect/conflict-log.ts), each entry marked with its site. The key is shown (as tail shows keys); no
 * other value of the row is in the log.
 */
import type { Config } from '../config/config-schema.ts';
import type { ConflictLogEntry, ConnectorRegistry } from '../connector.ts';
import { readRecentConflicts as readLog } from '../inspect/conflict-log.ts';
import { oneLine } from './console-views.ts';

export interface ConflictView extends ConflictLogEntry {
  readonly site: string;
}

export type RecentConflicts =
  | { readonly kind: 'read'; readonly entries: readonly ConflictView[] }
  | { readonly kind: 'unsupported' }
  | { readonly kind: 'unreadable'; readonly reason: string };

/** The newest `limit` resolutions recorded at `site`, newest first. */
export async function readRecentConflicts(config: Config, connectors: ConnectorRegistry, site: string, limit: number): Promise<RecentConflicts> {
  const read = await readLog(config, connectors, site, limit);
  if (read.kind === 'read') return { kind: 'read', entries: read.entries.map((entry) => ({ ...entry, site })) };
  if (read.kind === 'unreadable') return { kind: 'unreadable', reason: oneLine(read.reason) };
  return read;
}
