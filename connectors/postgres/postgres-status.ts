/**
 * What `sitesync status` shows of one PostgreSQL site: its slot (capture side) and its origins (apply side).
 */
import pg from 'pg';
import { originName, slotName } from '../../src/config/names.ts';
import { describePostgresError } from './postgres-errors.ts';

export interface SlotStatus {
  readonly slot: string;
  readonly exists: boolean;
  readonly active: boolean;
  readonly confirmed: string | null;
  readonly current: string;
  /** WAL bytes the slot holds past its confirmed position (capture lag). */
  readonly lagBytes: number | null;
  /** WAL bytes the slot keeps on disk (from its restart position). */
  readonly retainedBytes: number | null;
}

export interface OriginStatus {
  readonly source: string;
  readonly origin: string;
  readonly applied: string | null;
}

export async function readPostgresStatus(url: string, site: string, sources: readonly string[]): Promise<{ slot: SlotStatus; origins: OriginStatus[] }> {
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
    const origins: OriginStatus[] = [];
    for (const source of sources) {
      const origin = originName(source, site);
      const progress = await client.query<{ lsn: string | null }>(
        `SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = $1)
                THEN pg_replication_origin_progress($1, true)::text END AS lsn`,
        [origin],
      );
      origins.push({ source, origin, applied: progress.rows[0]?.lsn ?? null });
    }
    return {
      slot: {
        slot,
        exists: r.confirmed !== null || r.active !== null,
        active: r.active === true,
        confirmed: r.confirmed,
        current: r.current,
        lagBytes: r.lag === null ? null : Number(r.lag),
        retainedBytes: r.retained === null ? null : Number(r.retained),
      },
      origins,
    };
  } catch (error) {
    throw describePostgresError(error, url, site);
  } finally {
    await client.end().catch(() => undefined);
  }
}
