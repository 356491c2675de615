/**
 * The latest entries of a site's conflict log, for the console. conflict-log.ts reads the log by
 * transaction (for `sitesync trace`); the console wants the newest rows whatever their transaction. Same
 * table (sitesync.conflicts, written by the PostgreSQL sink in the commit of the data), same limits: only
 * PostgreSQL sites, read with the monitoring URL, a role that may not read it gets a reason.
 *
 * The key is shown (as tail shows keys); no other value of the row is in the log.
 */
import pg from 'pg';
import { BOOKKEEPING_SCHEMA } from '../config/names.ts';
import { describeError } from '../errors.ts';
import { oneLine } from './console-views.ts';

export interface ConflictView {
  readonly site: string;
  readonly loggedAt: string;
  readonly kind: string;
  readonly table: string;
  /** The key as the sink recorded it (JSON text). */
  readonly key: string;
  readonly remoteSite: string;
  readonly remoteTransaction: string;
  readonly localSite: string | null;
  readonly policy: string;
  readonly winner: string;
  /** applied (the remote change won) or skipped (it lost: the local write was kept). */
  readonly resolution: string;
}

export type RecentConflicts =
  | { readonly kind: 'read'; readonly entries: readonly ConflictView[] }
  | { readonly kind: 'unsupported' }
  | { readonly kind: 'unreadable'; readonly reason: string };

/** The newest `limit` resolutions recorded at `site` (database of kind `databaseKind` at `url`), newest first. */
export async function readRecentConflicts(site: string, databaseKind: string, url: string, limit: number): Promise<RecentConflicts> {
  if (databaseKind !== 'postgres') return { kind: 'unsupported' };
  const client = new pg.Client({ connectionString: url, application_name: 'sitesync ui', connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined); // the query's own promise reports a lost connection
  try {
    await client.connect();
    // to_regclass: a site that never applied anything has no log yet, which is not an error.
    const present = await client.query<{ present: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS present`, [`${BOOKKEEPING_SCHEMA}.conflicts`]);
    if (!present.rows[0]?.present) return { kind: 'read', entries: [] };
    const { rows } = await client.query<{ logged_at: Date; kind: string; table_name: string; key: string; remote_site: string; remote_transaction: string; local_site: string | null; policy: string; winner: string; resolution: string }>(
      `SELECT logged_at, kind, table_name, key::text AS key, remote_site, remote_transaction, local_site, policy, winner, resolution
         FROM ${BOOKKEEPING_SCHEMA}.conflicts ORDER BY id DESC LIMIT $1`,
      [limit],
    );
    return {
      kind: 'read',
      entries: rows.map((r) => ({
        site,
        loggedAt: r.logged_at.toISOString(),
        kind: r.kind,
        table: r.table_name,
        key: r.key,
        remoteSite: r.remote_site,
        remoteTransaction: r.remote_transaction,
        localSite: r.local_site,
        policy: r.policy,
        winner: r.winner,
        resolution: r.resolution,
      })),
    };
  } catch (error) {
    return { kind: 'unreadable', reason: oneLine(describeError(error)) };
  } finally {
    await client.end().catch(() => undefined);
  }
}
