/**
 * What a site's conflict log says of one transaction, for `sitesync trace`. The PostgreSQL sink records
 * every resolution in `sitesync.conflicts` with the remote transaction's id (`remote_transaction`), in the
 * same commit as the data, so a transaction that lost (its change skipped: the local write won) is found
 * by its id. Read with the site's monitoring URL; a role that may not read the table gets a reason, not a
 * failure.
 *
 * Only PostgreSQL sites are read here (the MariaDB and SQL Server sinks keep the same columns in their own
 * databases, through their own drivers): this would belong to the connectors as a `readConflicts` of their
 * own; until then, trace says the log of other kinds is not read.
 */
import pg from 'pg';
import { BOOKKEEPING_SCHEMA } from '../config/names.ts';
import { describeError } from '../errors.ts';
import { redactSecrets } from '../observability/logger.ts';

export interface ConflictEntry {
  readonly kind: string;
  readonly table: string;
  /** The key as the sink recorded it (JSON text). */
  readonly key: string;
  readonly localSite: string | null;
  readonly policy: string;
  readonly winner: string;
  /** `applied` (the transaction's change won) or `skipped` (it lost: the row kept the local write). */
  readonly resolution: string;
}

export type ConflictLookup =
  | { readonly kind: 'read'; readonly entries: readonly ConflictEntry[] }
  /** This kind of database's conflict log is not read by trace. */
  | { readonly kind: 'unsupported' }
  | { readonly kind: 'unreadable'; readonly reason: string };

const MAX_ROWS = 100;

/** The conflict log's entries of transaction `transactionId` at a site whose database is `databaseKind`. */
export async function readConflictsOf(databaseKind: string, url: string, transactionId: string): Promise<ConflictLookup> {
  if (databaseKind !== 'postgres') return { kind: 'unsupported' };
  const client = new pg.Client({ connectionString: url, application_name: 'sitesync trace', connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined); // the query's own promise reports a lost connection
  try {
    await client.connect();
    const present = await client.query<{ present: boolean }>(
      `SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = 'conflicts') AS present`,
      [BOOKKEEPING_SCHEMA],
    );
    if (!present.rows[0]?.present) return { kind: 'read', entries: [] }; // nothing was ever applied here
    const { rows } = await client.query<{ kind: string; table_name: string; key: string; local_site: string | null; policy: string; winner: string; resolution: string }>(
      `SELECT kind, table_name, key::text AS key, local_site, policy, winner, resolution
         FROM ${BOOKKEEPING_SCHEMA}.conflicts WHERE remote_transaction = $1 ORDER BY id LIMIT ${MAX_ROWS}`,
      [transactionId],
    );
    return {
      kind: 'read',
      entries: rows.map((r) => ({ kind: r.kind, table: r.table_name, key: r.key, localSite: r.local_site, policy: r.policy, winner: r.winner, resolution: r.resolution })),
    };
  } catch (error) {
    return { kind: 'unreadable', reason: redactSecrets(describeError(error).split('\n')[0]!) };
  } finally {
    await client.end().catch(() => undefined);
  }
}
