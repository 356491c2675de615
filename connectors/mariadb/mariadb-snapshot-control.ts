/**
 * A MariaDB site's snapshots (src/capture/snapshot-control.ts). MariaDB's binary log carries no logical
 * messages, so a marker is a row: each chunk's marker (encodeMarker) is inserted into `snapshot_markers` of
 * the bookkeeping database (`sitesync` by default), in the same transaction that moves the snapshot's row in
 * `snapshots` (the columns and meaning of PostgreSQL's `sitesync.snapshots`). The insert reaches the binlog
 * at that commit, in the site's commit order, and the capture (transaction-grouper.ts) turns it into the
 * `{ op: 'message', prefix: SNAPSHOT_MARKER_PREFIX }` change a PostgreSQL site's marker is; the `snapshots`
 * table itself is never captured (mariadb-source.ts leaves it out of the stream, the grouper ignores it).
 *
 * Nobody reads `snapshot_markers` back: a marker's row only has to be written for the binlog to carry it.
 * So each transaction that inserts a marker also deletes the rows of markers inserted before it (already in
 * the binlog, whatever happens to the rows now); the table holds the last marker or so of each snapshot.
 * Deletes of marker rows are not markers: the capture ignores them.
 *
 * Times are kept in UTC (DATETIME(6) written with UTC_TIMESTAMP(6)), whatever the session's time zone.
 */
import type { Pool, PoolConnection, ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import mysql from 'mysql2/promise';
import type { SnapshotControl, SnapshotControlOptions, SnapshotState, SnapshotStatus } from '../../src/capture/snapshot-control.ts';
import { encodeMarker, type SnapshotMarker } from '../../src/capture/snapshot-marker.ts';
import { checkBookkeepingDatabase, DEFAULT_BOOKKEEPING_DATABASE } from './bookkeeping.ts';
import { describeMariaDbError } from './mariadb-errors.ts';
import { connectionOptions } from './mariadb-source.ts';
import { quoteIdent } from './mariadb-statements.ts';
import { SNAPSHOT_MARKERS_TABLE, SNAPSHOTS_TABLE } from './transaction-grouper.ts';

export interface MariaDbSnapshotControlOptions extends SnapshotControlOptions {
  /** The database of sitesync's own tables at this site (default `sitesync`): the capture's. */
  readonly bookkeepingDatabase?: string;
}

interface SnapshotRow extends RowDataPacket {
  id: string;
  table_name: string;
  targets: string | null;
  next_chunk: number;
  rows_sent: string | number;
  estimated_rows: string | number;
  state: SnapshotState;
  started_at: string;
  updated_at: string;
}

export class MariaDbSnapshotControl implements SnapshotControl {
  private readonly pool: Pool;
  private readonly database: string;
  private readonly snapshots: string;
  private readonly markers: string;
  private ready: Promise<void> | null = null;

  constructor(private readonly options: MariaDbSnapshotControlOptions) {
    this.database = checkBookkeepingDatabase(options.bookkeepingDatabase ?? DEFAULT_BOOKKEEPING_DATABASE);
    this.snapshots = `${quoteIdent(this.database)}.${quoteIdent(SNAPSHOTS_TABLE)}`;
    this.markers = `${quoteIdent(this.database)}.${quoteIdent(SNAPSHOT_MARKERS_TABLE)}`;
    this.pool = mysql.createPool({
      ...connectionOptions(options.url),
      connectionLimit: 2,
      dateStrings: true,
      supportBigNumbers: true,
      bigNumberStrings: true,
      multipleStatements: false,
    });
    // An idle connection lost: the next statement fails and says so.
    this.pool.on('connection', (connection) => connection.on('error', () => undefined));
  }

  private ensureTables(): Promise<void> {
    this.ready ??= (async () => {
      await this.pool.query(`CREATE DATABASE IF NOT EXISTS ${quoteIdent(this.database)}`);
      await this.pool.query(
        `CREATE TABLE IF NOT EXISTS ${this.snapshots} (
  id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  table_name VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  targets JSON NULL,
  next_chunk INT NOT NULL DEFAULT 0,
  rows_sent BIGINT NOT NULL DEFAULT 0,
  estimated_rows BIGINT NOT NULL,
  state VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT 'running',
  started_at DATETIME(6) NOT NULL,
  updated_at DATETIME(6) NOT NULL
) ENGINE=InnoDB`,
      );
      await this.pool.query(
        `CREATE TABLE IF NOT EXISTS ${this.markers} (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  content LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL
) ENGINE=InnoDB`,
      );
    })().catch((error: unknown) => {
      this.ready = null;
      throw this.describe(error);
    });
    return this.ready;
  }

  async start(marker: SnapshotMarker, estimatedRows: number): Promise<void> {
    await this.transaction(async (connection) => {
      await connection.query(`INSERT INTO ${this.snapshots} (id, table_name, targets, estimated_rows, started_at, updated_at) VALUES (?, ?, ?, ?, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))`, [
        marker.id,
        marker.table,
        marker.targets === null ? null : JSON.stringify(marker.targets),
        estimatedRows,
      ]);
      await this.writeMarker(connection, marker);
    });
  }

  async advance(read: SnapshotMarker, rows: number, next: SnapshotMarker | null): Promise<'advanced' | 'already' | 'cancelled'> {
    return this.transaction(async (connection) => {
      const [found] = await connection.query<RowDataPacket[]>(`SELECT next_chunk, state FROM ${this.snapshots} WHERE id = ? FOR UPDATE`, [read.id]);
      const row = found[0];
      if (!row || row.state === 'cancelled') return 'cancelled';
      if (Number(row.next_chunk) > read.chunk || row.state === 'done') return 'already';
      await connection.query(`UPDATE ${this.snapshots} SET next_chunk = ?, rows_sent = rows_sent + ?, state = ?, updated_at = UTC_TIMESTAMP(6) WHERE id = ?`, [
        read.chunk + 1,
        rows,
        next === null ? 'done' : 'running',
        read.id,
      ]);
      if (next !== null) await this.writeMarker(connection, next);
      return 'advanced';
    });
  }

  /** The marker's row (what the binlog carries to the capture), and the rows of the markers before it pruned. */
  private async writeMarker(connection: PoolConnection, marker: SnapshotMarker): Promise<void> {
    const [inserted] = await connection.query<ResultSetHeader>(`INSERT INTO ${this.markers} (content) VALUES (?)`, [encodeMarker(marker)]);
    await connection.query(`DELETE FROM ${this.markers} WHERE id < ?`, [inserted.insertId]);
  }

  async list(): Promise<SnapshotStatus[]> {
    await this.ensureTables();
    const rows = await this.query<SnapshotRow[]>(
      `SELECT id, table_name, targets, next_chunk, rows_sent, estimated_rows, state, started_at, updated_at FROM ${this.snapshots} ORDER BY started_at, id`,
    );
    return rows.map((r) => ({
      id: r.id,
      table: r.table_name,
      targets: r.targets === null ? null : (typeof r.targets === 'string' ? (JSON.parse(r.targets) as string[]) : (r.targets as string[])),
      nextChunk: Number(r.next_chunk),
      rowsSent: Number(r.rows_sent),
      estimatedRows: Number(r.estimated_rows),
      state: r.state,
      startedAt: utc(r.started_at),
      updatedAt: utc(r.updated_at),
    }));
  }

  async cancel(id: string): Promise<boolean> {
    await this.ensureTables();
    try {
      const [result] = await this.pool.query<ResultSetHeader>(`UPDATE ${this.snapshots} SET state = 'cancelled', updated_at = UTC_TIMESTAMP(6) WHERE id = ? AND state = 'running'`, [id]);
      return result.affectedRows > 0;
    } catch (error) {
      throw this.describe(error);
    }
  }

  async close(): Promise<void> {
    await this.pool.end().catch(() => undefined);
  }

  private describe(error: unknown): Error {
    return describeMariaDbError(error, this.options.url, this.options.site);
  }

  private async query<T extends RowDataPacket[]>(sql: string, values: unknown[] = []): Promise<T> {
    try {
      const [rows] = await this.pool.query<T>(sql, values);
      return rows;
    } catch (error) {
      throw this.describe(error);
    }
  }

  private async transaction<T>(work: (connection: PoolConnection) => Promise<T>): Promise<T> {
    await this.ensureTables();
    let connection: PoolConnection;
    try {
      connection = await this.pool.getConnection();
    } catch (error) {
      throw this.describe(error);
    }
    try {
      await connection.beginTransaction();
      const result = await work(connection);
      await connection.commit();
      return result;
    } catch (error) {
      await connection.rollback().catch(() => undefined);
      throw this.describe(error);
    } finally {
      connection.release();
    }
  }
}

/** A DATETIME(6) written in UTC, as dateStrings gives it (`2024-05-01 10:00:00.123456`). */
function utc(text: string): Date {
  return new Date(`${String(text).replace(' ', 'T')}Z`);
}
