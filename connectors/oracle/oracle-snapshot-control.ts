/**
 * An Oracle site's snapshots (src/capture/snapshot-control.ts). LogMiner's redo carries no logical messages, so a
 * marker is a row — as at a MariaDB site (mariadb-snapshot-control.ts), whose rules this follows: each chunk's
 * marker is inserted into SITESYNC.SNAPSHOT_MARKERS in the same transaction that moves the snapshot's row in
 * SITESYNC.SNAPSHOTS (the columns and meaning of PostgreSQL's sitesync.snapshots). The insert reaches the redo at
 * that commit, in the site's commit order, and capture (mined-stream.ts) turns it into the
 * `{ op: 'message', prefix: SNAPSHOT_MARKER_PREFIX }` change a PostgreSQL site's marker is; SNAPSHOTS itself is
 * never captured (SITESYNC's tables are not).
 *
 * The marker's text: encodeMarker's JSON, written in ASCII only (every character past U+007E as its JSON
 * escape \uXXXX, which parseMarker reads back to the same text), so that LogMiner's SQL_REDO carries it as it is
 * whatever the database character set, and a character is a byte. A marker longer than MARKER_PIECE_CHARS
 * (4000: CONTENT is a VARCHAR2(4000 BYTE); a CLOB's value would come through LOB_WRITE rows, which capture does
 * not reassemble) goes in several rows, PIECE 0 to PIECES - 1 of one (SNAPSHOT_ID, CHUNK): a repair's marker
 * names up to MAX_MARKER_KEYS (10,000) keys and runs to hundreds of kilobytes.
 *
 * Idempotent as MariaDB's: start inserts the snapshot's row (a second start of one id fails on its primary key);
 * advance locks the row (SELECT … FOR UPDATE) and moves it only from the chunk before: 'already' when that was
 * done before (the stream gave the marker again after a restart), 'cancelled' when the snapshot was cancelled
 * or is unknown; cancel moves only a running snapshot. Nobody reads marker rows back: each advance deletes the
 * snapshot's marker rows of earlier chunks (already in the redo), and the last advance all of them; those deletes
 * are not markers (capture ignores them).
 *
 * Times are kept in UTC (TIMESTAMP(6) written with SYS_EXTRACT_UTC(SYSTIMESTAMP)).
 *
 * What touches the database is a `SnapshotStore`: OracledbSnapshotStore over `oracledb` (Thin mode) in production,
 * whose statements are the exported pure functions below; test/helpers/oracle-simulator.ts implements it over the
 * simulated tables, so that the markers are proven to come through simulated redo and capture.
 */
import type * as oracledb from 'oracledb';
import type { SnapshotControl, SnapshotControlOptions, SnapshotState, SnapshotStatus } from '../../src/capture/snapshot-control.ts';
import { encodeMarker, type SnapshotMarker } from '../../src/capture/snapshot-marker.ts';
import { describeOracleError, isConnectionLoss, oraNumbers } from './oracle-errors.ts';
import { MARKER_PIECE_CHARS, ORACLE_BOOKKEEPING_OWNER, quoteIdentifier, SNAPSHOT_MARKERS_TABLE, SNAPSHOT_TABLES_DDL, SNAPSHOTS_TABLE } from './oracle-setup.ts';
import { oracledbConfig } from './oracledb-connection.ts';
import { loadOracledb, type OracledbDriver } from './oracledb-driver.ts';
import { sessionSetupStatement } from './oracledb-logminer-reader.ts';

/** A snapshot's row as the store gives it. */
export interface SnapshotRecord {
  readonly id: string;
  readonly table: string;
  /** JSON array of site names, or null: every site. */
  readonly targets: string | null;
  readonly nextChunk: number;
  readonly rowsSent: number;
  readonly estimatedRows: number;
  readonly state: SnapshotState;
  readonly startedAt: Date;
  readonly updatedAt: Date;
}

/** One row of SNAPSHOT_MARKERS. */
export interface MarkerPiece {
  readonly snapshotId: string;
  readonly chunk: number;
  readonly piece: number;
  readonly pieces: number;
  readonly content: string;
}

/** The statements of one transaction of the control. */
export interface SnapshotStoreTransaction {
  insertSnapshot(row: { readonly id: string; readonly table: string; readonly targets: string | null; readonly estimatedRows: number }): Promise<void>;
  /** The snapshot's row, locked until the transaction ends (SELECT … FOR UPDATE); null when there is none. */
  lockSnapshot(id: string): Promise<{ readonly nextChunk: number; readonly state: SnapshotState } | null>;
  /** NEXT_CHUNK and STATE set, ROWS_SENT increased by `rows`, UPDATED_AT now. */
  updateSnapshot(id: string, change: { readonly nextChunk: number; readonly rows: number; readonly state: SnapshotState }): Promise<void>;
  insertMarkerPiece(piece: MarkerPiece): Promise<void>;
  /** Deletes the snapshot's marker rows of chunks below `belowChunk` (null: all of them). */
  pruneMarkers(id: string, belowChunk: number | null): Promise<void>;
}

/** What the control needs of an Oracle database: oracledb in production, the simulator in tests. */
export interface SnapshotStore {
  /** SNAPSHOTS and SNAPSHOT_MARKERS (with ALL COLUMNS logging), unless there. */
  ensureTables(): Promise<void>;
  /** Runs `work` in one transaction: committed when it returns, rolled back when it throws. */
  transaction<T>(work: (tx: SnapshotStoreTransaction) => Promise<T>): Promise<T>;
  /** Every snapshot, by STARTED_AT then ID. */
  list(): Promise<SnapshotRecord[]>;
  /** Marks a running snapshot cancelled (committed); false when none runs by that id. */
  cancel(id: string): Promise<boolean>;
  close(): Promise<void>;
}

/** encodeMarker's JSON with every character past U+007E escaped (\uXXXX): the same JSON, in ASCII. */
export function asciiMarker(marker: SnapshotMarker): string {
  return encodeMarker(marker).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** The marker's text cut into the rows of SNAPSHOT_MARKERS. */
export function markerPieces(marker: SnapshotMarker, pieceChars = MARKER_PIECE_CHARS): MarkerPiece[] {
  const text = asciiMarker(marker);
  const count = Math.max(1, Math.ceil(text.length / pieceChars));
  return Array.from({ length: count }, (_, piece) => ({ snapshotId: marker.id, chunk: marker.chunk, piece, pieces: count, content: text.slice(piece * pieceChars, (piece + 1) * pieceChars) }));
}

export class OracleSnapshotControl implements SnapshotControl {
  private ready: Promise<void> | null = null;

  constructor(
    private readonly options: SnapshotControlOptions,
    private readonly store: SnapshotStore,
  ) {}

  /** A control over the real database (Thin mode), through the site's capture URL. */
  static open(options: SnapshotControlOptions): OracleSnapshotControl {
    return new OracleSnapshotControl(options, new OracledbSnapshotStore(options.url, options.site));
  }

  private ensureTables(): Promise<void> {
    this.ready ??= this.store.ensureTables().catch((error: unknown) => {
      this.ready = null;
      throw error;
    });
    return this.ready;
  }

  async start(marker: SnapshotMarker, estimatedRows: number): Promise<void> {
    await this.ensureTables();
    await this.store.transaction(async (tx) => {
      await tx.insertSnapshot({ id: marker.id, table: marker.table, targets: marker.targets === null ? null : JSON.stringify(marker.targets), estimatedRows });
      await writeMarker(tx, marker);
    });
  }

  async advance(read: SnapshotMarker, rows: number, next: SnapshotMarker | null): Promise<'advanced' | 'already' | 'cancelled'> {
    await this.ensureTables();
    return this.store.transaction(async (tx) => {
      const row = await tx.lockSnapshot(read.id);
      if (!row || row.state === 'cancelled') return 'cancelled';
      if (row.nextChunk > read.chunk || row.state === 'done') return 'already';
      await tx.updateSnapshot(read.id, { nextChunk: read.chunk + 1, rows, state: next === null ? 'done' : 'running' });
      if (next !== null) {
        await writeMarker(tx, next);
        await tx.pruneMarkers(read.id, next.chunk);
      } else {
        await tx.pruneMarkers(read.id, null);
      }
      return 'advanced';
    });
  }

  async list(): Promise<SnapshotStatus[]> {
    await this.ensureTables();
    return (await this.store.list()).map((r) => ({
      id: r.id,
      table: r.table,
      targets: r.targets === null ? null : (JSON.parse(r.targets) as string[]),
      nextChunk: r.nextChunk,
      rowsSent: r.rowsSent,
      estimatedRows: r.estimatedRows,
      state: r.state,
      startedAt: r.startedAt,
      updatedAt: r.updatedAt,
    }));
  }

  async cancel(id: string): Promise<boolean> {
    await this.ensureTables();
    return this.store.cancel(id);
  }

  async close(): Promise<void> {
    await this.store.close().catch(() => undefined);
  }

  /** For logs. */
  get site(): string {
    return this.options.site;
  }
}

async function writeMarker(tx: SnapshotStoreTransaction, marker: SnapshotMarker): Promise<void> {
  for (const piece of markerPieces(marker)) await tx.insertMarkerPiece(piece);
}

// ─── statements (pure) ───────────────────────────────────────────────────────────────────────────────────

export interface ControlStatement {
  readonly sql: string;
  readonly binds: Readonly<Record<string, string | number | null>>;
}

const SNAPSHOTS = `${quoteIdentifier(ORACLE_BOOKKEEPING_OWNER)}.${quoteIdentifier(SNAPSHOTS_TABLE)}`;
const MARKERS = `${quoteIdentifier(ORACLE_BOOKKEEPING_OWNER)}.${quoteIdentifier(SNAPSHOT_MARKERS_TABLE)}`;
const NOW_UTC = 'SYS_EXTRACT_UTC(SYSTIMESTAMP)';
/** How times are read back: UTC, as ISO 8601 without its zone. */
const TIME_TEXT = `'YYYY-MM-DD"T"HH24:MI:SS.FF6'`;

/** Each DDL statement of SNAPSHOT_TABLES_DDL as a PL/SQL block that ignores "already there" (ORA-00955, ORA-32588). */
export function ensureSnapshotTablesStatements(): ControlStatement[] {
  return SNAPSHOT_TABLES_DDL.map((ddl) => ({
    sql: ['BEGIN', `  EXECUTE IMMEDIATE '${ddl.replace(/'/g, "''")}';`, 'EXCEPTION WHEN OTHERS THEN', '  IF SQLCODE NOT IN (-955, -32588) THEN RAISE; END IF;', 'END;'].join('\n'),
    binds: {},
  }));
}

export function insertSnapshotStatement(row: { id: string; table: string; targets: string | null; estimatedRows: number }): ControlStatement {
  return {
    sql: `INSERT INTO ${SNAPSHOTS} ("ID", "TABLE_NAME", "TARGETS", "NEXT_CHUNK", "ROWS_SENT", "ESTIMATED_ROWS", "STATE", "STARTED_AT", "UPDATED_AT") VALUES (:id, :tableName, :targets, 0, 0, :estimatedRows, 'running', ${NOW_UTC}, ${NOW_UTC})`,
    binds: { id: row.id, tableName: row.table, targets: row.targets, estimatedRows: row.estimatedRows },
  };
}

export function lockSnapshotStatement(id: string): ControlStatement {
  return { sql: `SELECT TO_CHAR("NEXT_CHUNK") AS NEXT_CHUNK, "STATE" FROM ${SNAPSHOTS} WHERE "ID" = :id FOR UPDATE`, binds: { id } };
}

export function updateSnapshotStatement(id: string, change: { nextChunk: number; rows: number; state: SnapshotState }): ControlStatement {
  return {
    sql: `UPDATE ${SNAPSHOTS} SET "NEXT_CHUNK" = :nextChunk, "ROWS_SENT" = "ROWS_SENT" + :rowsRead, "STATE" = :state, "UPDATED_AT" = ${NOW_UTC} WHERE "ID" = :id`,
    binds: { nextChunk: change.nextChunk, rowsRead: change.rows, state: change.state, id },
  };
}

export function insertMarkerPieceStatement(piece: MarkerPiece): ControlStatement {
  return {
    sql: `INSERT INTO ${MARKERS} ("SNAPSHOT_ID", "CHUNK", "PIECE", "PIECES", "CONTENT") VALUES (:snapshotId, :chunk, :piece, :pieces, :content)`,
    binds: { snapshotId: piece.snapshotId, chunk: piece.chunk, piece: piece.piece, pieces: piece.pieces, content: piece.content },
  };
}

export function pruneMarkersStatement(id: string, belowChunk: number | null): ControlStatement {
  if (belowChunk === null) return { sql: `DELETE FROM ${MARKERS} WHERE "SNAPSHOT_ID" = :id`, binds: { id } };
  return { sql: `DELETE FROM ${MARKERS} WHERE "SNAPSHOT_ID" = :id AND "CHUNK" < :belowChunk`, binds: { id, belowChunk } };
}

export function listSnapshotsStatement(): ControlStatement {
  return {
    sql:
      `SELECT "ID", "TABLE_NAME", "TARGETS", TO_CHAR("NEXT_CHUNK") AS NEXT_CHUNK, TO_CHAR("ROWS_SENT") AS ROWS_SENT, TO_CHAR("ESTIMATED_ROWS") AS ESTIMATED_ROWS, "STATE", ` +
      `TO_CHAR("STARTED_AT", ${TIME_TEXT}) AS STARTED_AT, TO_CHAR("UPDATED_AT", ${TIME_TEXT}) AS UPDATED_AT FROM ${SNAPSHOTS} ORDER BY "STARTED_AT", "ID"`,
    binds: {},
  };
}

export function cancelSnapshotStatement(id: string): ControlStatement {
  return { sql: `UPDATE ${SNAPSHOTS} SET "STATE" = 'cancelled', "UPDATED_AT" = ${NOW_UTC} WHERE "ID" = :id AND "STATE" = 'running'`, binds: { id } };
}

/** A row of listSnapshotsStatement as a record. */
export function readSnapshotRow(row: Record<string, unknown>): SnapshotRecord {
  const utc = (v: unknown): Date => new Date(`${String(v)}Z`);
  return {
    id: String(row.ID),
    table: String(row.TABLE_NAME),
    targets: row.TARGETS === null || row.TARGETS === undefined ? null : String(row.TARGETS),
    nextChunk: Number(row.NEXT_CHUNK),
    rowsSent: Number(row.ROWS_SENT),
    estimatedRows: Number(row.ESTIMATED_ROWS),
    state: String(row.STATE) as SnapshotState,
    startedAt: utc(row.STARTED_AT),
    updatedAt: utc(row.UPDATED_AT),
  };
}

// ─── the real database ───────────────────────────────────────────────────────────────────────────────────

/** SnapshotStore over `oracledb` (Thin mode): one connection, opened on first use and again after it is lost. */
export class OracledbSnapshotStore implements SnapshotStore {
  private connection: oracledb.Connection | null = null;
  private driver: OracledbDriver | null = null;
  /** One transaction at a time on the connection. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly url: string,
    private readonly site: string,
  ) {}

  private async connect(): Promise<oracledb.Connection> {
    if (this.connection !== null) return this.connection;
    const config = oracledbConfig(this.url);
    const driver = (this.driver ??= await loadOracledb());
    const connection = await driver.getConnection(config.attributes);
    try {
      if (config.callTimeout !== null) connection.callTimeout = config.callTimeout;
      await connection.execute(sessionSetupStatement().sql);
    } catch (error) {
      await connection.close().catch(() => undefined);
      throw error;
    }
    this.connection = connection;
    return connection;
  }

  private async execute(connection: oracledb.Connection, statement: ControlStatement, autoCommit: boolean): Promise<oracledb.Result<Record<string, unknown>>> {
    return connection.execute<Record<string, unknown>>(statement.sql, statement.binds as oracledb.BindParameters, { autoCommit, outFormat: this.driver!.OUT_FORMAT_OBJECT });
  }

  /** `work` on the connection, one at a time; failures as one line, a lost connection dropped. */
  private serial<T>(work: (connection: oracledb.Connection) => Promise<T>): Promise<T> {
    const run = this.queue.then(async () => {
      try {
        return await work(await this.connect());
      } catch (error) {
        if (isConnectionLoss(error)) {
          const lost = this.connection;
          this.connection = null;
          void lost?.close().catch(() => undefined);
        }
        throw describeOracleError(error, this.url, this.site);
      }
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  ensureTables(): Promise<void> {
    return this.serial(async (connection) => {
      for (const statement of ensureSnapshotTablesStatements()) {
        await this.execute(connection, statement, true).catch((error: unknown) => {
          if (!oraNumbers(error).some((n) => n === 955 || n === 32588)) throw error;
        });
      }
    });
  }

  transaction<T>(work: (tx: SnapshotStoreTransaction) => Promise<T>): Promise<T> {
    return this.serial(async (connection) => {
      const run = (statement: ControlStatement) => this.execute(connection, statement, false);
      const tx: SnapshotStoreTransaction = {
        insertSnapshot: async (row) => void (await run(insertSnapshotStatement(row))),
        lockSnapshot: async (id) => {
          const row = (await run(lockSnapshotStatement(id))).rows?.[0];
          return row ? { nextChunk: Number(row.NEXT_CHUNK), state: String(row.STATE) as SnapshotState } : null;
        },
        updateSnapshot: async (id, change) => void (await run(updateSnapshotStatement(id, change))),
        insertMarkerPiece: async (piece) => void (await run(insertMarkerPieceStatement(piece))),
        pruneMarkers: async (id, below) => void (await run(pruneMarkersStatement(id, below))),
      };
      try {
        const result = await work(tx);
        await connection.commit();
        return result;
      } catch (error) {
        await connection.rollback().catch(() => undefined);
        throw error;
      }
    });
  }

  list(): Promise<SnapshotRecord[]> {
    return this.serial(async (connection) => ((await this.execute(connection, listSnapshotsStatement(), true)).rows ?? []).map(readSnapshotRow));
  }

  cancel(id: string): Promise<boolean> {
    return this.serial(async (connection) => ((await this.execute(connection, cancelSnapshotStatement(id), true)).rowsAffected ?? 0) > 0);
  }

  async close(): Promise<void> {
    await this.queue;
    const connection = this.connection;
    this.connection = null;
    await connection?.close().catch(() => undefined);
  }
}
