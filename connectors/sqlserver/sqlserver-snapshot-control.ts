/**
 * A SQL Server site's snapshots (src/capture/snapshot-control.ts). CDC's change tables carry no logical
 * messages, so a marker is a row, as at a MariaDB site: each chunk's marker (encodeMarker) is inserted into
 * `sitesync.snapshot_markers`, which is enabled for CDC as `sitesync_snapshot_markers`, in the same
 * transaction that moves the snapshot's row in `sitesync.snapshots` (the columns and meaning of PostgreSQL's
 * table). The insert reaches the change table at that transaction's commit LSN, in the site's commit order,
 * and capture (change-stream.ts) hands it on as the `{ op: 'message', prefix: SNAPSHOT_MARKER_PREFIX }` change
 * a PostgreSQL site's marker is, never as a row; `snapshots` has no capture instance and is never read.
 *
 * Each operation is one T-SQL batch (SET XACT_ABORT ON, BEGIN TRANSACTION … COMMIT): all of it commits or none
 * of it, whatever happens to the connection, and it takes one round trip. advance reads the snapshot's row
 * WITH (UPDLOCK, HOLDLOCK), so that two capture processes given the same marker again (after a restart)
 * cannot both advance it: the second sees the chunk done and gets 'already', as at the other sites.
 *
 * Nobody reads `snapshot_markers` back: a marker's row only has to be written for the log to carry it. So each
 * batch that inserts a marker also deletes the rows of the markers inserted before it (already in the log,
 * whatever happens to the rows now). Those deletes reach the change table too, and capture drops them.
 *
 * The tables are created by the first start(), and CDC enabled on the markers table if it has no capture
 * instance yet (the capture login, which writes here, is a db_owner: capture needs that anyway); `sitesync
 * setup` does the same (prepare()). start() refuses in one line when the markers table is not captured: its
 * marker would never reach capture, and the snapshot would wait forever. list() and cancel() change nothing
 * but a snapshot's row (`sitesync status` lists every capturing site's snapshots): before the first snapshot
 * they find none.
 *
 * Statements are built by the exported functions below and run through a QueryRunner: mssql-cdc-reader.ts's
 * MssqlRunner in production, the simulator of test/helpers/sqlserver-simulator.ts in tests (which models each
 * batch by its method name). Times are UTC (SYSUTCDATETIME()).
 */
import type { SnapshotControl, SnapshotControlOptions, SnapshotState, SnapshotStatus } from '../../src/capture/snapshot-control.ts';
import { encodeMarker, type SnapshotMarker } from '../../src/capture/snapshot-marker.ts';
import { BOOKKEEPING_SCHEMA } from '../../src/config/names.ts';
import { SitesyncError } from '../../src/errors.ts';
import { SNAPSHOT_MARKERS_TABLE } from './capture-instances.ts';
import { MssqlRunner, type QueryRunner, type Row, type Statement } from './mssql-cdc-reader.ts';
import { mssqlConfig } from './mssql-connection.ts';
import { describeSqlServerError } from './sqlserver-errors.ts';
import { quoteName } from './sqlserver-kinds.ts';
import { ENABLE_MARKERS_CAPTURE_SQL, MARKERS_CAPTURE_INSTANCE, SNAPSHOT_TABLES_SQL, SNAPSHOTS_TABLE, snapshotMarkersProblem, type SnapshotMarkersState } from './sqlserver-setup.ts';

const SNAPSHOTS = `${quoteName(BOOKKEEPING_SCHEMA)}.${quoteName(SNAPSHOTS_TABLE)}`;
const MARKERS = `${quoteName(BOOKKEEPING_SCHEMA)}.${quoteName(SNAPSHOT_MARKERS_TABLE)}`;

/** A marker's row inserted, and the rows of the markers before it deleted (see the file comment). */
const WRITE_MARKER = [`INSERT INTO ${MARKERS} ([content]) VALUES (@marker);`, `DELETE FROM ${MARKERS} WHERE [id] < SCOPE_IDENTITY();`];

// ─── statements ──────────────────────────────────────────────────────────────────────────────────────────

/**
 * The tables when missing, then CDC on the markers table when the database has CDC and the table no capture
 * instance (a failure to enable it is reported, not raised: list() and cancel() need none of it). One row:
 * cdc_enabled, markers_captured, enable_error.
 */
export function ensureStatement(): Statement {
  return {
    sql: [
      'SET NOCOUNT ON;',
      SNAPSHOT_TABLES_SQL,
      'DECLARE @cdc int = (SELECT CAST(is_cdc_enabled AS int) FROM sys.databases WHERE database_id = DB_ID());',
      'DECLARE @captured int = 0, @error nvarchar(2048) = NULL;',
      'IF @cdc = 1',
      'BEGIN',
      // cdc.change_tables exists only once CDC is enabled on the database: looked up in dynamic SQL.
      `  EXEC sys.sp_executesql N'SELECT @c = COUNT(*) FROM cdc.change_tables WHERE capture_instance = N''${MARKERS_CAPTURE_INSTANCE}''', N'@c int OUTPUT', @c = @captured OUTPUT;`,
      '  IF @captured = 0',
      '  BEGIN',
      '    BEGIN TRY',
      `      ${ENABLE_MARKERS_CAPTURE_SQL}`,
      '      SET @captured = 1;',
      '    END TRY',
      '    BEGIN CATCH',
      '      SET @error = ERROR_MESSAGE();',
      '    END CATCH',
      '  END',
      'END',
      'SELECT COALESCE(@cdc, 0) AS cdc_enabled, @captured AS markers_captured, @error AS enable_error;',
    ].join('\n'),
    params: [],
  };
}

/** A snapshot's row and the marker of its chunk 0, in one transaction. */
export function startStatement(marker: SnapshotMarker, estimatedRows: number): Statement {
  return {
    sql: [
      'SET NOCOUNT ON; SET XACT_ABORT ON;',
      'BEGIN TRANSACTION;',
      `INSERT INTO ${SNAPSHOTS} ([id], [table_name], [targets], [estimated_rows], [started_at], [updated_at])`,
      '  VALUES (@id, @table, @targets, CAST(@estimated AS bigint), SYSUTCDATETIME(), SYSUTCDATETIME());',
      ...WRITE_MARKER,
      'COMMIT TRANSACTION;',
    ].join('\n'),
    params: [
      { name: 'id', type: 'varchar', value: marker.id },
      { name: 'table', type: 'nvarchar', value: marker.table },
      { name: 'targets', type: 'nvarcharMax', value: marker.targets === null ? null : JSON.stringify(marker.targets) },
      { name: 'estimated', type: 'varchar', value: String(Math.max(0, Math.floor(estimatedRows))) },
      { name: 'marker', type: 'nvarcharMax', value: encodeMarker(marker) },
    ],
  };
}

/**
 * Chunk `read.chunk` recorded (`rows` rows) and `next`'s marker written, in one transaction, only from the chunk
 * before: one row, `outcome` = advanced, already (done before) or cancelled (cancelled or unknown).
 */
export function advanceStatement(read: SnapshotMarker, rows: number, next: SnapshotMarker | null): Statement {
  return {
    sql: [
      'SET NOCOUNT ON; SET XACT_ABORT ON;',
      "DECLARE @next int, @state varchar(16), @outcome varchar(16) = 'advanced';",
      'BEGIN TRANSACTION;',
      `SELECT @next = [next_chunk], @state = [state] FROM ${SNAPSHOTS} WITH (UPDLOCK, HOLDLOCK) WHERE [id] = @id;`,
      "IF @state IS NULL OR @state = 'cancelled' SET @outcome = 'cancelled';",
      "ELSE IF @next > @chunk OR @state = 'done' SET @outcome = 'already';",
      'ELSE',
      'BEGIN',
      `  UPDATE ${SNAPSHOTS} SET [next_chunk] = @chunk + 1, [rows_sent] = [rows_sent] + @rows,`,
      "    [state] = CASE WHEN @marker IS NULL THEN 'done' ELSE 'running' END, [updated_at] = SYSUTCDATETIME() WHERE [id] = @id;",
      '  IF @marker IS NOT NULL',
      '  BEGIN',
      ...WRITE_MARKER.map((line) => `    ${line}`),
      '  END',
      'END',
      'COMMIT TRANSACTION;',
      'SELECT @outcome AS outcome;',
    ].join('\n'),
    params: [
      { name: 'id', type: 'varchar', value: read.id },
      { name: 'chunk', type: 'int', value: read.chunk },
      { name: 'rows', type: 'int', value: rows },
      { name: 'marker', type: 'nvarcharMax', value: next === null ? null : encodeMarker(next) },
    ],
  };
}

const SNAPSHOTS_EXIST = `OBJECT_ID(N'${BOOKKEEPING_SCHEMA}.${SNAPSHOTS_TABLE}', N'U') IS NOT NULL`;

/** Every snapshot, in the order they started; no rows (no result at all) before the first one made the table. */
export function listStatement(): Statement {
  return {
    sql: [
      `IF ${SNAPSHOTS_EXIST}`,
      'SELECT [id], [table_name], [targets], [next_chunk], CAST([rows_sent] AS varchar(20)) AS rows_sent, CAST([estimated_rows] AS varchar(20)) AS estimated_rows, [state],',
      '  CONVERT(varchar(27), [started_at], 126) AS started_at, CONVERT(varchar(27), [updated_at], 126) AS updated_at',
      `FROM ${SNAPSHOTS} ORDER BY [started_at], [id];`,
    ].join('\n'),
    params: [],
  };
}

/** A running snapshot cancelled: one row, `n` = 1 when it was running, else 0 (also before any snapshot made the table). */
export function cancelStatement(id: string): Statement {
  return {
    sql: [
      'SET NOCOUNT ON;',
      'DECLARE @n int = 0;',
      `IF ${SNAPSHOTS_EXIST}`,
      'BEGIN',
      `  UPDATE ${SNAPSHOTS} SET [state] = 'cancelled', [updated_at] = SYSUTCDATETIME() WHERE [id] = @id AND [state] = 'running';`,
      '  SET @n = @@ROWCOUNT;',
      'END',
      'SELECT @n AS n;',
    ].join('\n'),
    params: [{ name: 'id', type: 'varchar', value: id }],
  };
}

/** A datetime2 printed with style 126 (`2024-05-01T10:00:00.123456`, no fraction when zero), in UTC. */
function utc(text: unknown): Date {
  return new Date(`${String(text).replace(' ', 'T')}Z`);
}

export function readStatuses(rows: readonly Row[]): SnapshotStatus[] {
  return rows.map((r) => ({
    id: String(r.id),
    table: String(r.table_name),
    targets: r.targets === null || r.targets === undefined ? null : (JSON.parse(String(r.targets)) as string[]),
    nextChunk: Number(r.next_chunk),
    rowsSent: Number(r.rows_sent),
    estimatedRows: Number(r.estimated_rows),
    state: String(r.state) as SnapshotState,
    startedAt: utc(r.started_at),
    updatedAt: utc(r.updated_at),
  }));
}

// ─── the control ─────────────────────────────────────────────────────────────────────────────────────────

export interface SqlServerSnapshotControlOptions extends SnapshotControlOptions {
  /** Runs the batches: an MssqlRunner for the URL by default. */
  readonly runner?: QueryRunner;
}

export class SqlServerSnapshotControl implements SnapshotControl {
  private readonly runner: QueryRunner;
  private ready: Promise<SnapshotMarkersState> | null = null;

  constructor(private readonly options: SqlServerSnapshotControlOptions) {
    this.runner = options.runner ?? new MssqlRunner({ ...mssqlConfig(options.url), connectionTimeout: 15_000 });
  }

  private async run(method: string, statement: Statement): Promise<Row[]> {
    try {
      return await this.runner.query(method, statement);
    } catch (error) {
      throw describeSqlServerError(error, this.options.url, this.options.site);
    }
  }

  /**
   * The snapshot tables, created when missing, and CDC on the markers table, enabled when missing (what
   * `sitesync setup` runs): what was found. Asked once per control.
   */
  prepare(): Promise<SnapshotMarkersState> {
    this.ready ??= this.run('snapshotTables', ensureStatement()).then(
      ([row]) => ({
        cdcEnabled: Number(row?.cdc_enabled ?? 0) === 1,
        captured: Number(row?.markers_captured ?? 0) === 1,
        error: row?.enable_error === null || row?.enable_error === undefined ? null : String(row.enable_error),
      }),
      (error: unknown) => {
        this.ready = null;
        throw error;
      },
    );
    return this.ready;
  }

  async start(marker: SnapshotMarker, estimatedRows: number): Promise<void> {
    const state = await this.prepare();
    if (!state.captured) {
      let database = '<database>';
      try {
        database = mssqlConfig(this.options.url).database ?? database;
      } catch {
        // a URL the runner did not need (tests): the fix names a placeholder
      }
      const problem = !state.cdcEnabled
        ? { problem: `change data capture is not enabled on database ${database}, so no marker can reach capture`, fix: `as a sysadmin: USE ${quoteName(database)}; EXEC sys.sp_cdc_enable_db; then run sitesync setup for the site` }
        : snapshotMarkersProblem(database, state)!;
      throw new SitesyncError('SITESYNC_ERR_CONFIG', `SQL Server of site ${this.options.site}: cannot start a snapshot: ${problem.problem}; fix: ${problem.fix}`);
    }
    await this.run('snapshotStart', startStatement(marker, estimatedRows));
  }

  /** Only after start() made the tables: a marker exists only then. */
  async advance(read: SnapshotMarker, rows: number, next: SnapshotMarker | null): Promise<'advanced' | 'already' | 'cancelled'> {
    const [row] = await this.run('snapshotAdvance', advanceStatement(read, rows, next));
    const outcome = String(row?.outcome);
    if (outcome !== 'advanced' && outcome !== 'already' && outcome !== 'cancelled') {
      throw new SitesyncError('SITESYNC_ERR_DECODE', `SQL Server of site ${this.options.site} answered ${JSON.stringify(row?.outcome)} to advancing snapshot ${read.id}`);
    }
    return outcome;
  }

  async list(): Promise<SnapshotStatus[]> {
    return readStatuses(await this.run('snapshotList', listStatement()));
  }

  async cancel(id: string): Promise<boolean> {
    const [row] = await this.run('snapshotCancel', cancelStatement(id));
    return Number(row?.n ?? 0) > 0;
  }

  async close(): Promise<void> {
    await this.runner.close().catch(() => undefined);
  }
}
