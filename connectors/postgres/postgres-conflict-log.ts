/**
 * The PostgreSQL sink's conflict log, read for `sitesync trace` and the console: `sitesync.conflicts`, written
 * in the commit of the data, by remote transaction or newest first. Read with the site's monitoring URL; a site
 * that never applied anything has no log yet (no entries, not an error), and a role that may not read it gets
 * a reason.
 */
import pg from 'pg';
import type { ConflictLogRead } from '../../src/connector.ts';
import { BOOKKEEPING_SCHEMA } from '../../src/config/names.ts';
import { describeError } from '../../src/errors.ts';
import { redactSecrets } from '../../src/observability/logger.ts';

const MAX_ROWS = 1000;

export async function readPostgresConflicts(url: string, which: { readonly transaction?: string; readonly limit: number }): Promise<ConflictLogRead> {
  const client = new pg.Client({ connectionString: url, application_name: 'sitesync conflict log', connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined); // the query's own promise reports a lost connection
  try {
    await client.connect();
    const present = await client.query<{ present: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS present`, [`${BOOKKEEPING_SCHEMA}.conflicts`]);
    if (!present.rows[0]?.present) return { kind: 'read', entries: [] };
    const limit = Math.max(1, Math.min(MAX_ROWS, which.limit));
    const { rows } = await client.query<{ logged_at: Date; kind: string; table_name: string; key: string; remote_site: string; remote_transaction: string; local_site: string | null; policy: string; winner: string; resolution: string }>(
      `SELECT logged_at, kind, table_name, key::text AS key, remote_site, remote_transaction, local_site, policy, winner, resolution
         FROM ${BOOKKEEPING_SCHEMA}.conflicts ${which.transaction === undefined ? '' : 'WHERE remote_transaction = $2'} ORDER BY id DESC LIMIT $1`,
      which.transaction === undefined ? [limit] : [limit, which.transaction],
    );
    return {
      kind: 'read',
      entries: rows.map((r) => ({
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
    return { kind: 'unreadable', reason: redactSecrets(describeError(error).split('\n')[0]!) };
  } finally {
    await client.end().catch(() => undefined);
  }
}
