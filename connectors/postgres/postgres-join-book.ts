/**
 * The join book at a PostgreSQL site (src/apply/join-book.ts): one row per join this site took part in,
 * as donor or as joiner, in sitesync's schema, written with the apply role (which owns the bookkeeping).
 */
import pg from 'pg';
import type { DonorHold, Join, JoinBook, JoinBookOptions, JoinSummary } from '../../src/apply/join-book.ts';
import { BOOKKEEPING_SCHEMA } from '../../src/config/names.ts';
import { SitesyncError } from '../../src/errors.ts';
import type { Position } from '../../src/events/transaction.ts';
import { ensureBookkeepingSchema } from './bookkeeping-schema.ts';
import { describePostgresError } from './postgres-errors.ts';

const JOINS = `${BOOKKEEPING_SCHEMA}.joins`;

const CREATE_JOINS = `CREATE TABLE IF NOT EXISTS ${JOINS} (
  join_id text NOT NULL,
  role text NOT NULL CHECK (role IN ('donor', 'joiner')),
  peer text NOT NULL,
  state text NOT NULL,
  snapshot_ids text[] NOT NULL DEFAULT '{}',
  last_chunks jsonb NOT NULL DEFAULT '{}',
  positions jsonb NOT NULL DEFAULT '{}',
  started_at timestamptz NOT NULL DEFAULT now(),
  ended_at timestamptz,
  end_reason text,
  PRIMARY KEY (join_id, role))`;

/** States of a row still in force; any other (done, released) is history. */
const OPEN_DONOR = `state IN ('requested', 'holding')`;
const OPEN_JOINER = `state IN ('snapshotting', 'catching-up')`;

interface JoinRow {
  join_id: string;
  role: 'donor' | 'joiner';
  peer: string;
  state: string;
  snapshot_ids: string[];
  last_chunks: Record<string, Position>;
  positions: Record<string, Position>;
  started_at: Date;
  ended_at: Date | null;
}

export class PostgresJoinBook implements JoinBook {
  private readonly pool: pg.Pool;
  private ready: Promise<void> | null = null;

  constructor(private readonly options: JoinBookOptions) {
    this.pool = new pg.Pool({ connectionString: options.url, max: 1, application_name: `sitesync joins ${options.site}` });
    this.pool.on('error', () => undefined); // an idle connection lost: the next query reconnects
  }

  /** Runs a statement; a failure is the one line the sink would say of it (the apply loop logs it and retries). */
  private async query<R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<R[]> {
    try {
      return await this.run<R>(text, values);
    } catch (error) {
      throw describePostgresError(error, this.options.url, this.options.site);
    }
  }

  private async run<R extends pg.QueryResultRow>(text: string, values: unknown[]): Promise<R[]> {
    this.ready ??= (async () => {
      await ensureBookkeepingSchema(this.pool);
      await this.pool.query(CREATE_JOINS).catch((error: { code?: string }) => {
        if (error.code !== '23505' && error.code !== '42P07') throw error; // created meanwhile
      });
    })().catch((error: unknown) => {
      this.ready = null;
      throw error;
    });
    await this.ready;
    return (await this.pool.query<R>(text, values)).rows;
  }

  async requestHold(joinId: string, joiner: string, snapshotIds: readonly string[]): Promise<void> {
    const open = await this.hold();
    if (open && open.joinId !== joinId) {
      throw new SitesyncError('SITESYNC_ERR_CONFIG', `this site already holds for join ${open.joinId} of site ${open.joiner}; let it finish (sitesync join --list) or cancel it with sitesync join --cancel`);
    }
    await this.query(
      `INSERT INTO ${JOINS} (join_id, role, peer, state, snapshot_ids) VALUES ($1, 'donor', $2, 'requested', $3) ON CONFLICT (join_id, role) DO NOTHING`,
      [joinId, joiner, snapshotIds],
    );
  }

  async hold(): Promise<DonorHold | null> {
    const [row] = await this.query<JoinRow>(`SELECT * FROM ${JOINS} WHERE role = 'donor' AND ${OPEN_DONOR} ORDER BY started_at DESC LIMIT 1`);
    if (!row) return null;
    return { joinId: row.join_id, joiner: row.peer, state: row.state as DonorHold['state'], positions: row.positions, snapshotIds: row.snapshot_ids, requestedAt: row.started_at };
  }

  async confirmHold(joinId: string, positions: Readonly<Record<string, Position>>): Promise<void> {
    await this.query(`UPDATE ${JOINS} SET state = 'holding', positions = $2 WHERE join_id = $1 AND role = 'donor' AND state = 'requested'`, [joinId, JSON.stringify(positions)]);
  }

  async releaseHold(joinId: string, why: string): Promise<void> {
    await this.query(`UPDATE ${JOINS} SET state = 'released', ended_at = now(), end_reason = $2 WHERE join_id = $1 AND role = 'donor' AND ${OPEN_DONOR}`, [joinId, why]);
  }

  async beginJoin(join: Omit<Join, 'state' | 'lastChunks' | 'startedAt'>): Promise<void> {
    const open = await this.join();
    if (open && open.joinId !== join.joinId) {
      throw new SitesyncError('SITESYNC_ERR_CONFIG', `this site is already joining (join ${open.joinId}, from ${open.donor}); let it finish or cancel it with sitesync join --cancel`);
    }
    await this.query(
      `INSERT INTO ${JOINS} (join_id, role, peer, state, snapshot_ids, positions) VALUES ($1, 'joiner', $2, 'snapshotting', $3, $4)
       ON CONFLICT (join_id, role) DO UPDATE SET snapshot_ids = EXCLUDED.snapshot_ids, positions = EXCLUDED.positions`,
      [join.joinId, join.donor, join.snapshotIds, JSON.stringify(join.positions)],
    );
  }

  async join(): Promise<Join | null> {
    const [row] = await this.query<JoinRow>(`SELECT * FROM ${JOINS} WHERE role = 'joiner' AND ${OPEN_JOINER} ORDER BY started_at DESC LIMIT 1`);
    if (!row) return null;
    return {
      joinId: row.join_id,
      donor: row.peer,
      state: row.state as Join['state'],
      snapshotIds: row.snapshot_ids,
      lastChunks: row.last_chunks,
      positions: row.positions,
      startedAt: row.started_at,
    };
  }

  async noteLastChunk(joinId: string, snapshotId: string, position: Position): Promise<void> {
    await this.query(`UPDATE ${JOINS} SET last_chunks = last_chunks || jsonb_build_object($2::text, $3::text) WHERE join_id = $1 AND role = 'joiner'`, [joinId, snapshotId, position]);
  }

  async beginCatchUp(joinId: string): Promise<void> {
    await this.query(`UPDATE ${JOINS} SET state = 'catching-up' WHERE join_id = $1 AND role = 'joiner' AND state = 'snapshotting'`, [joinId]);
  }

  async finishJoin(joinId: string): Promise<void> {
    await this.query(`UPDATE ${JOINS} SET state = 'done', ended_at = now(), end_reason = 'caught up' WHERE join_id = $1 AND role = 'joiner' AND ${OPEN_JOINER}`, [joinId]);
  }

    async cancel(why: string): Promise<number> {
    const rows = await this.query(`UPDATE ${JOINS} SET state = 'cancelled', ended_at = now(), end_reason = $1 WHERE (role = 'donor' AND ${OPEN_DONOR}) OR (role = 'joiner' AND ${OPEN_JOINER}) RETURNING join_id`, [why]);
    return rows.length;
  }

  async list(): Promise<readonly JoinSummary[]> {
    const rows = await this.query<JoinRow>(`SELECT * FROM ${JOINS} ORDER BY started_at DESC LIMIT 50`);
    return rows.map((row) => ({ joinId: row.join_id, role: row.role, peer: row.peer, state: row.state, snapshotIds: row.snapshot_ids, startedAt: row.started_at, endedAt: row.ended_at }));
  }

  async close(): Promise<void> {
    await this.pool.end().catch(() => undefined);
  }
}
