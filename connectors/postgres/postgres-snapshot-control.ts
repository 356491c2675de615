/**
 * A PostgreSQL site's snapshots (src/capture/snapshot-control.ts): a row per snapshot in
 * `sitesync.snapshots`, and each chunk's marker written with pg_logical_emit_message (transactional, so it
 * commits with the row and takes its place in the WAL's commit order). Both are written by the capture
 * role, which owns sitesync's schema; changes to that schema are never replicated.
 */
import pg from 'pg';
import type { SnapshotControl, SnapshotControlOptions, SnapshotState, SnapshotStatus } from '../../src/capture/snapshot-control.ts';
import { encodeMarker, SNAPSHOT_MARKER_PREFIX, type SnapshotMarker } from '../../src/capture/snapshot-marker.ts';
import { BOOKKEEPING_SCHEMA } from '../../src/config/names.ts';
import { describePostgresError } from './postgres-errors.ts';
import { ensureBookkeepingSchema } from './bookkeeping-schema.ts';
import { CONNECTION_OPTIONS } from './session-settings.ts';

const TABLE = `${BOOKKEEPING_SCHEMA}.snapshots`;

export class PostgresSnapshotControl implements SnapshotControl {
  private readonly pool: pg.Pool;
  private ready: Promise<void> | null = null;

  constructor(private readonly options: SnapshotControlOptions) {
    this.pool = new pg.Pool({ connectionString: options.url, max: 2, ...CONNECTION_OPTIONS, application_name: `sitesync snapshots ${options.site}` });
    this.pool.on('error', () => undefined); // an idle connection lost: the next query reports it
  }

  private ensureTable(): Promise<void> {
    this.ready ??= (async () => {
      await ensureBookkeepingSchema(this.pool);
      await this.pool.query(
        `CREATE TABLE IF NOT EXISTS ${TABLE} (
           id text PRIMARY KEY,
           table_name text NOT NULL,
           targets jsonb,
           next_chunk int NOT NULL DEFAULT 0,
           rows_sent bigint NOT NULL DEFAULT 0,
           estimated_rows bigint NOT NULL,
           state text NOT NULL DEFAULT 'running',
           started_at timestamptz NOT NULL DEFAULT now(),
           updated_at timestamptz NOT NULL DEFAULT now())`,
      ).catch((error: { code?: string }) => {
        if (error.code !== '23505' && error.code !== '42P07') throw error; // created meanwhile by another session
      });
    })().catch((error: unknown) => {
      this.ready = null;
      throw error;
    });
    return this.ready;
  }

  async start(marker: SnapshotMarker, estimatedRows: number): Promise<void> {
    await this.transaction(async (client) => {
      await client.query(`INSERT INTO ${TABLE} (id, table_name, targets, estimated_rows) VALUES ($1, $2, $3, $4)`, [
        marker.id,
        marker.table,
        marker.targets === null ? null : JSON.stringify(marker.targets),
        estimatedRows,
      ]);
      await client.query('SELECT pg_logical_emit_message(true, $1, $2)', [SNAPSHOT_MARKER_PREFIX, encodeMarker(marker)]);
    });
  }

  async advance(read: SnapshotMarker, rows: number, next: SnapshotMarker | null): Promise<'advanced' | 'already' | 'cancelled'> {
    return this.transaction(async (client) => {
      const { rows: found } = await client.query<{ next_chunk: number; state: SnapshotState }>(`SELECT next_chunk, state FROM ${TABLE} WHERE id = $1 FOR UPDATE`, [read.id]);
      const row = found[0];
      if (!row || row.state === 'cancelled') return 'cancelled';
      if (row.next_chunk > read.chunk || row.state === 'done') return 'already';
      await client.query(`UPDATE ${TABLE} SET next_chunk = $2, rows_sent = rows_sent + $3, state = $4, updated_at = now() WHERE id = $1`, [
        read.id,
        read.chunk + 1,
        rows,
        next === null ? 'done' : 'running',
      ]);
      if (next !== null) await client.query('SELECT pg_logical_emit_message(true, $1, $2)', [SNAPSHOT_MARKER_PREFIX, encodeMarker(next)]);
      return 'advanced';
    });
  }

  async list(): Promise<SnapshotStatus[]> {
    await this.ensureTable();
    const { rows } = await this.query<{
      id: string;
      table_name: string;
      targets: string[] | null;
      next_chunk: number;
      rows_sent: string;
      estimated_rows: string;
      state: SnapshotState;
      started_at: Date;
      updated_at: Date;
    }>(`SELECT id, table_name, targets, next_chunk, rows_sent, estimated_rows, state, started_at, updated_at FROM ${TABLE} ORDER BY started_at, id`, []);
    return rows.map((r) => ({
      id: r.id,
      table: r.table_name,
      targets: r.targets,
      nextChunk: r.next_chunk,
      rowsSent: Number(r.rows_sent),
      estimatedRows: Number(r.estimated_rows),
      state: r.state,
      startedAt: r.started_at,
      updatedAt: r.updated_at,
    }));
  }

  async cancel(id: string): Promise<boolean> {
    await this.ensureTable();
    const { rowCount } = await this.query(`UPDATE ${TABLE} SET state = 'cancelled', updated_at = now() WHERE id = $1 AND state = 'running'`, [id]);
    return (rowCount ?? 0) > 0;
  }

  async close(): Promise<void> {
    await this.pool.end().catch(() => undefined);
  }

  private async query<T extends pg.QueryResultRow>(text: string, values: unknown[]): Promise<pg.QueryResult<T>> {
    try {
      return await this.pool.query<T>(text, values);
    } catch (error) {
      throw describePostgresError(error, this.options.url, this.options.site);
    }
  }

  private async transaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    await this.ensureTable();
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (error) {
      throw describePostgresError(error, this.options.url, this.options.site);
    }
    try {
      await client.query('BEGIN');
      const result = await work(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw describePostgresError(error, this.options.url, this.options.site);
    } finally {
      client.release();
    }
  }
}
