/**
 * The join book at a MariaDB site (src/apply/join-book.ts): one row per join this site took part in, as
 * donor or as joiner, in the bookkeeping database's `joins` (bookkeeping.ts), written with the apply user
 * (which owns the bookkeeping). The same rows, states and meaning as PostgreSQL's sitesync.joins
 * (connectors/postgres/postgres-join-book.ts); capture never reads the table (it leaves the bookkeeping
 * database out of the stream), so nothing of a join travels to other sites.
 *
 * The table is created only when missing, as ensureBookkeeping creates the others, so that a user that may
 * only read it (the monitoring user of `sitesync status`) needs no CREATE right. Times are kept in UTC
 * (DATETIME(6) written with UTC_TIMESTAMP(6)): the joiner reads the archive from a join's start time.
 */
import type { Pool, ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import mysql from 'mysql2/promise';
import type { DonorHold, Join, JoinBook, JoinBookOptions, JoinSummary } from '../../src/apply/join-book.ts';
import { SitesyncError } from '../../src/errors.ts';
import type { Position } from '../../src/events/transaction.ts';
import { checkBookkeepingDatabase, DEFAULT_BOOKKEEPING_DATABASE, isConcurrentCreate } from './bookkeeping.ts';
import { describeMariaDbError } from './mariadb-errors.ts';
import { connectionOptions } from './mariadb-source.ts';
import { quoteIdent } from './mariadb-statements.ts';

export interface MariaDbJoinBookOptions extends JoinBookOptions {
  /** The database of sitesync's own tables at this site (default `sitesync`). */
  readonly bookkeepingDatabase?: string;
}

/** States of a row still in force; any other (done, released, cancelled) is history. */
const OPEN_DONOR = `state IN ('requested', 'holding')`;
const OPEN_JOINER = `state IN ('snapshotting', 'catching-up')`;

interface JoinRow extends RowDataPacket {
  join_id: string;
  role: 'donor' | 'joiner';
  peer: string;
  state: string;
  snapshot_ids: string | string[];
  last_chunks: string | Record<string, Position>;
  positions: string | Record<string, Position>;
  started_at: string;
  ended_at: string | null;
}

export class MariaDbJoinBook implements JoinBook {
  private readonly pool: Pool;
  private readonly database: string;
  private readonly joins: string;
  private ready: Promise<void> | null = null;

  constructor(private readonly options: MariaDbJoinBookOptions) {
    this.database = checkBookkeepingDatabase(options.bookkeepingDatabase ?? DEFAULT_BOOKKEEPING_DATABASE);
    this.joins = `${quoteIdent(this.database)}.${quoteIdent('joins')}`;
    this.pool = mysql.createPool({ ...connectionOptions(options.url), connectionLimit: 1, maxIdle: 1, idleTimeout: 60_000, dateStrings: true, multipleStatements: false });
    // An idle connection lost: the next statement reconnects (or fails and says so).
    this.pool.on('connection', (connection) => connection.on('error', () => undefined));
  }

  /** Runs a statement; a failure is the one line the sink would say of it (the apply loop logs it and retries). */
  private async query<R extends RowDataPacket[] | ResultSetHeader>(text: string, values: unknown[] = []): Promise<R> {
    try {
      await this.ensureTable();
      const [result] = await this.pool.query<R>(text, values);
      return result;
    } catch (error) {
      throw describeMariaDbError(error, this.options.url, this.options.site);
    }
  }

  private ensureTable(): Promise<void> {
    this.ready ??= (async () => {
      const [tables] = await this.pool.query<RowDataPacket[]>('SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?', [this.database, 'joins']);
      if (tables.length > 0) return;
      const [databases] = await this.pool.query<RowDataPacket[]>('SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?', [this.database]);
      if (databases.length === 0) await this.pool.query(`CREATE DATABASE IF NOT EXISTS ${quoteIdent(this.database)} CHARACTER SET utf8mb4`).catch(createdMeanwhile);
      await this.pool
        .query(
          `CREATE TABLE IF NOT EXISTS ${this.joins} (
  join_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  role VARCHAR(8) CHARACTER SET ascii COLLATE ascii_bin NOT NULL CHECK (role IN ('donor', 'joiner')),
  peer VARCHAR(40) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  state VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  snapshot_ids JSON NOT NULL DEFAULT '[]',
  last_chunks JSON NOT NULL DEFAULT '{}',
  positions JSON NOT NULL DEFAULT '{}',
  started_at DATETIME(6) NOT NULL,
  ended_at DATETIME(6) NULL,
  end_reason TEXT NULL,
  PRIMARY KEY (join_id, role)
) ENGINE=InnoDB`,
        )
        .catch(createdMeanwhile);
    })().catch((error: unknown) => {
      this.ready = null;
      throw error;
    });
    return this.ready;
  }

  async requestHold(joinId: string, joiner: string, snapshotIds: readonly string[]): Promise<void> {
    const open = await this.hold();
    if (open && open.joinId !== joinId) {
      throw new SitesyncError('SITESYNC_ERR_CONFIG', `this site already holds for join ${open.joinId} of site ${open.joiner}; let it finish (sitesync join --list) or cancel it with sitesync join --cancel`);
    }
    // A second request for the same join changes nothing (not INSERT IGNORE: that would hide a value refused).
    await this.query(
      `INSERT INTO ${this.joins} (join_id, role, peer, state, snapshot_ids, started_at) VALUES (?, 'donor', ?, 'requested', ?, UTC_TIMESTAMP(6))
       ON DUPLICATE KEY UPDATE join_id = join_id`,
      [joinId, joiner, JSON.stringify(snapshotIds)],
    );
  }

  async hold(): Promise<DonorHold | null> {
    const [row] = await this.query<JoinRow[]>(`SELECT * FROM ${this.joins} WHERE role = 'donor' AND ${OPEN_DONOR} ORDER BY started_at DESC LIMIT 1`);
    if (!row) return null;
    return { joinId: row.join_id, joiner: row.peer, state: row.state as DonorHold['state'], positions: json(row.positions), snapshotIds: json(row.snapshot_ids), requestedAt: utc(row.started_at) };
  }

  async confirmHold(joinId: string, positions: Readonly<Record<string, Position>>): Promise<void> {
    await this.query(`UPDATE ${this.joins} SET state = 'holding', positions = ? WHERE join_id = ? AND role = 'donor' AND state = 'requested'`, [JSON.stringify(positions), joinId]);
  }

  async releaseHold(joinId: string, why: string): Promise<void> {
    await this.query(`UPDATE ${this.joins} SET state = 'released', ended_at = UTC_TIMESTAMP(6), end_reason = ? WHERE join_id = ? AND role = 'donor' AND ${OPEN_DONOR}`, [why, joinId]);
  }

  async beginJoin(join: Omit<Join, 'state' | 'lastChunks' | 'startedAt'>): Promise<void> {
    const open = await this.join();
    if (open && open.joinId !== join.joinId) {
      throw new SitesyncError('SITESYNC_ERR_CONFIG', `this site is already joining (join ${open.joinId}, from ${open.donor}); let it finish or cancel it with sitesync join --cancel`);
    }
    await this.query(
      `INSERT INTO ${this.joins} (join_id, role, peer, state, snapshot_ids, positions, started_at) VALUES (?, 'joiner', ?, 'snapshotting', ?, ?, UTC_TIMESTAMP(6))
       ON DUPLICATE KEY UPDATE snapshot_ids = VALUES(snapshot_ids), positions = VALUES(positions)`,
      [join.joinId, join.donor, JSON.stringify(join.snapshotIds), JSON.stringify(join.positions)],
    );
  }

  async join(): Promise<Join | null> {
    const [row] = await this.query<JoinRow[]>(`SELECT * FROM ${this.joins} WHERE role = 'joiner' AND ${OPEN_JOINER} ORDER BY started_at DESC LIMIT 1`);
    if (!row) return null;
    return {
      joinId: row.join_id,
      donor: row.peer,
      state: row.state as Join['state'],
      snapshotIds: json(row.snapshot_ids),
      lastChunks: json(row.last_chunks),
      positions: json(row.positions),
      startedAt: utc(row.started_at),
    };
  }

  async noteLastChunk(joinId: string, snapshotId: string, position: Position): Promise<void> {
    // One statement merges the one key into the object as the row holds it (under the row's lock): two
    // snapshots' last chunks noted at once both stay. JSON_OBJECT quotes the key, whatever it holds.
    await this.query(`UPDATE ${this.joins} SET last_chunks = JSON_MERGE_PATCH(last_chunks, JSON_OBJECT(?, ?)) WHERE join_id = ? AND role = 'joiner'`, [snapshotId, position, joinId]);
  }

  async beginCatchUp(joinId: string): Promise<void> {
    await this.query(`UPDATE ${this.joins} SET state = 'catching-up' WHERE join_id = ? AND role = 'joiner' AND state = 'snapshotting'`, [joinId]);
  }

  async finishJoin(joinId: string): Promise<void> {
    await this.query(`UPDATE ${this.joins} SET state = 'done', ended_at = UTC_TIMESTAMP(6), end_reason = 'caught up' WHERE join_id = ? AND role = 'joiner' AND ${OPEN_JOINER}`, [joinId]);
  }

  async cancel(why: string): Promise<number> {
    const result = await this.query<ResultSetHeader>(
      `UPDATE ${this.joins} SET state = 'cancelled', ended_at = UTC_TIMESTAMP(6), end_reason = ? WHERE (role = 'donor' AND ${OPEN_DONOR}) OR (role = 'joiner' AND ${OPEN_JOINER})`,
      [why],
    );
    return result.affectedRows;
  }

  async list(): Promise<readonly JoinSummary[]> {
    const rows = await this.query<JoinRow[]>(`SELECT * FROM ${this.joins} ORDER BY started_at DESC LIMIT 50`);
    return rows.map((row) => ({
      joinId: row.join_id,
      role: row.role,
      peer: row.peer,
      state: row.state,
      snapshotIds: json(row.snapshot_ids),
      startedAt: utc(row.started_at),
      endedAt: row.ended_at === null ? null : utc(row.ended_at),
    }));
  }

  async close(): Promise<void> {
    await this.pool.end().catch(() => undefined);
  }
}

/** Two processes starting at once may both create the table: the loser's error is harmless. */
function createdMeanwhile(error: unknown): void {
  if (!isConcurrentCreate(error)) throw error;
}

/** A JSON column: MariaDB's JSON is LONGTEXT, so the driver gives its text. */
function json<T>(value: string | T): T {
  return typeof value === 'string' ? (JSON.parse(value) as T) : value;
}

/** A DATETIME(6) written in UTC, as dateStrings gives it (`2024-05-01 10:00:00.123456`). */
function utc(text: string): Date {
  return new Date(`${String(text).replace(' ', 'T')}Z`);
}
