/**
 * What `sitesync status` shows of one PostgreSQL site: its slot (capture side) and, per source, its origin
 * or progress row (apply side).
 */
import pg from 'pg';
import type { AppliedStatus, SiteDatabaseStatus } from '../../src/connector.ts';
import { BOOKKEEPING_SCHEMA, originName, slotName } from '../../src/config/names.ts';
import { lsnToPosition, parseLsn } from './postgres-positions.ts';
import { describePostgresError } from './postgres-errors.ts';

export async function readPostgresStatus(url: string, site: string, sources: readonly string[]): Promise<SiteDatabaseStatus> {
  const client = new pg.Client({ connectionString: url, application_name: 'sitesync status', connectionTimeoutMillis: 10_000 });
  // node-postgres also emits a lost connection as an 'error' event on the client, besides failing the
  // query: unheard, that event ends the process (the soak caught a server crash during a WAL watch read).
  client.on('error', () => undefined);
  try {
    await client.connect();
    const slot = slotName(site);
    const { rows } = await client.query<{ current: string; confirmed: string | null; active: boolean | null; lag: string | null; retained: string | null }>(
      `SELECT pg_current_wal_lsn()::text AS current, s.confirmed_flush_lsn::text AS confirmed, s.active,
              pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::int8 AS lag,
              pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::int8 AS retained
         FROM (SELECT 1) one LEFT JOIN pg_replication_slots s ON s.slot_name = $1`,
      [slot],
    );
    const r = rows[0]!;
    const applied: AppliedStatus[] = [];
    // Sources whose positions are no LSN keep their progress in a row (postgres-sink.ts), if the table exists.
    // Read from the catalog: a monitoring role may have no USAGE on sitesync's schema when the table is absent.
    const rowsTable = await client.query<{ present: boolean }>(
      `SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = 'apply_progress') AS present`,
      [BOOKKEEPING_SCHEMA],
    );
    for (const source of sources) {
      const origin = originName(source, site);
      if (rowsTable.rows[0]?.present) {
        const row = await client.query<{ position: string }>(`SELECT position FROM ${BOOKKEEPING_SCHEMA}.apply_progress WHERE source = $1`, [source]);
        if (row.rows[0]) {
          applied.push({ source, name: `${BOOKKEEPING_SCHEMA}.apply_progress`, position: row.rows[0].position });
          continue;
        }
      }
      const progress = await client.query<{ lsn: string | null }>(
        `SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = $1)
                THEN pg_replication_origin_progress($1, true)::text END AS lsn`,
        [origin],
      );
      const lsn = progress.rows[0]?.lsn ?? null;
      applied.push({ source, name: `origin ${origin}`, position: lsn === null || lsn === '0/0' ? null : lsnToPosition(parseLsn(lsn)) });
    }
    return {
      capture: {
        name: `slot ${slot}`,
        exists: r.confirmed !== null || r.active !== null,
        active: r.active === true,
        confirmed: r.confirmed,
        current: r.current,
        lagBytes: r.lag === null ? null : Number(r.lag),
        retainedBytes: r.retained === null ? null : Number(r.retained),
        release: `SELECT pg_drop_replication_slot('${slot}')`,
      },
      applied,
    };
  } catch (error) {
    throw describePostgresError(error, url, site);
  } finally {
    await client.end().catch(() => undefined);
  }
}
