/**
 * The CdcReader (cdc-reader.ts) over a real SQL Server, through `mssql`. It only issues SQL and turns rows into
 * the contract's shapes: every statement is built by an exported pure function and every result read by an
 * exported pure function, so test/unit/sqlserver-reader-sql.test.ts checks both without a server, and the
 * class itself is a thin loop of "build, run, read".
 *
 * Choices that matter:
 * - Changes are read from the change table `cdc.[<instance>_CT]` directly, not through
 *   cdc.fn_cdc_get_all_changes_<instance>: the function raises an error when its from LSN is below the
 *   instance's minimum (a new instance, or the cleanup job just ran), where a plain range read returns what is
 *   there; the cleanup guard above (capture-instances.ts) decides whether something was lost. Keyset
 *   pagination on (start LSN, command id, seqval, operation) keeps each read bounded.
 * - Values come through the projection of sqlserver-kinds.ts (decimals, bigints and times as text), aliased
 *   by position (`v0`, `v1`…) so that no column name can clash with the `__$` columns or with another.
 * - LSNs are bound as varbinary(10) (lsnToBytes) and read with lsnFromBytes; sitesync's own tables keep
 *   them as char(20) text.
 * - Commit times: lsn_time_mapping.tran_end_time is the server's local time without a zone. It is converted
 *   with `AT TIME ZONE <the server's zone>`, so daylight-saving changes are the server's own rules. The zone
 *   is CURRENT_TIMEZONE_ID() (SQL Server 2022, Azure SQL); an older server cannot say its zone, so the site's
 *   URL must name it (`timeZone=<Windows zone name>`, as sys.time_zone_info lists them), else reading times
 *   fails with that fix in one line.
 * - What the change table holds, per Microsoft's page on cdc.<capture_instance>_CT (read, not tested here):
 *   identity columns are int or bigint there and timestamp columns binary(8) (types are read from the change
 *   table's own columns, so kinds follow); computed columns are always NULL; image, text and ntext are NULL in
 *   every delete (1) and update-before (3) row, and varchar(max), nvarchar(max), varbinary(max) are NULL in an
 *   update-before row unless the update changed them. The current page also says __$seqval "should not be used
 *   for ordering; use __$command_id" (added by cumulative updates of 2012–2016): rows are read and paged in
 *   the contract's order (start LSN, command id, seqval, operation). The change table's clustered index is on
 *   (start LSN, seqval, operation), so each page sorts what is left of its interval by command id: the cost
 *   of a very large transaction, paid to have its changes in the order they were made.
 * - RECORD=1 in the environment: every query's SQL, parameters and result rows are also written (JSON,
 *   Buffers as hex) to test/fixtures/sqlserver/recorded-<method>-<n>.json, so a run against a real server
 *   leaves fixtures for the unit tests (hand-written fixtures are named invented-*.json).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type * as mssql from 'mssql';
import { loadMssql, type MssqlDriver } from './mssql-driver.ts';
import { BOOKKEEPING_SCHEMA } from '../../src/config/names.ts';
import { SitesyncError } from '../../src/errors.ts';
import type { CaptureInstance, CapturedColumn, CaptureProgressRow, CdcOperation, CdcReader, ChangeKey, ChangeRow, Lsn, ProjectedValue, SetupFacts, TransactionTime } from './cdc-reader.ts';
import { mssqlConfig, timeZoneOfUrl } from './mssql-connection.ts';
import { describeSqlServerError, errorNumbers } from './sqlserver-errors.ts';
import { projection, quoteName } from './sqlserver-kinds.ts';
import { lsnFromBytes, lsnToBytes } from './sqlserver-positions.ts';
import { PROGRESS_CAPTURE_INSTANCE } from './sqlserver-setup.ts';

// ─── parameters and the runner ───────────────────────────────────────────────────────────────────────────

export type ParamType = 'lsn' | 'int' | 'nvarchar' | 'varchar' | 'nvarcharMax';

export interface Param {
  readonly name: string;
  readonly type: ParamType;
  readonly value: Buffer | number | string | null;
}

export interface Statement {
  readonly sql: string;
  readonly params: readonly Param[];
}

export type Row = Record<string, unknown>;

/** Runs one statement and returns the rows of its (last) result set. mssql in production, a fake in tests. */
export interface QueryRunner {
  query(method: string, statement: Statement): Promise<Row[]>;
  close(): Promise<void>;
}

const lsnParam = (name: string, lsn: Lsn): Param => ({ name, type: 'lsn', value: lsnToBytes(lsn) });

const SCHEMA = quoteName(BOOKKEEPING_SCHEMA);

// ─── statements ──────────────────────────────────────────────────────────────────────────────────────────

/** The commit LSN of the last transaction the capture job wrote (tran_id 0x00 rows are the job's own markers). */
export function maxTransactionLsnStatement(): Statement {
  return { sql: 'SELECT MAX(start_lsn) AS max_lsn FROM cdc.lsn_time_mapping WHERE tran_id <> 0x00', params: [] };
}

/**
 * Every capture instance with its captured columns, one row per column, in instance then column order.
 * Types come from the change table's own columns (as they were when the instance was made, which is what its
 * rows hold), alias types resolved to their base type (CLR types, which have no base row, keep their name);
 * the key ordinal from the source table's primary key.
 */
export function captureInstancesStatement(): Statement {
  return {
    sql: [
      'SELECT ct.capture_instance, s.name AS source_schema, t.name AS source_table, ct.start_lsn,',
      '  CONVERT(varchar(23), ct.create_date, 126) AS create_date,',
      '  cc.column_name, cc.column_ordinal,',
      '  COALESCE(CASE WHEN ty.is_user_defined = 0 THEN ty.name END, bt.name, ty.name) AS type_name,',
      '  c.max_length, c.precision, c.scale,',
      '  COALESCE(pk.key_ordinal, 0) AS key_ordinal',
      'FROM cdc.change_tables AS ct',
      'JOIN sys.tables AS t ON t.object_id = ct.source_object_id',
      'JOIN sys.schemas AS s ON s.schema_id = t.schema_id',
      'JOIN cdc.captured_columns AS cc ON cc.object_id = ct.object_id',
      'JOIN sys.columns AS c ON c.object_id = ct.object_id AND c.name = cc.column_name',
      'JOIN sys.types AS ty ON ty.user_type_id = c.user_type_id',
      'LEFT JOIN sys.types AS bt ON bt.user_type_id = c.system_type_id',
      'LEFT JOIN (',
      '  SELECT ic.object_id, ic.column_id, ic.key_ordinal',
      '  FROM sys.indexes AS i',
      '  JOIN sys.index_columns AS ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id',
      '  WHERE i.is_primary_key = 1',
      ') AS pk ON pk.object_id = ct.source_object_id AND pk.column_id = cc.column_id',
      'ORDER BY ct.capture_instance, cc.column_ordinal',
    ].join('\n'),
    params: [],
  };
}

/** The change table of an instance, bracket-quoted: `cdc.[dbo_orders_CT]`. */
export function changeTableName(instance: string): string {
  return `cdc.${quoteName(`${instance}_CT`)}`;
}

/**
 * At most `limit` change rows of one instance with `from < __$start_lsn <= to`, after `after` in the change
 * table's order when given, in that order.
 */
export function changesStatement(instance: CaptureInstance, fromLsn: Lsn, toLsn: Lsn, after: ChangeKey | null, limit: number): Statement {
  const columns = instance.columns.map((column, i) => `, ${projection(column)} AS [v${i}]`).join('');
  const lines = [
    `SELECT TOP (@limit) [__$start_lsn], [__$seqval], [__$operation], [__$command_id]${columns}`,
    `FROM ${changeTableName(instance.name)}`,
    'WHERE [__$start_lsn] > @from AND [__$start_lsn] <= @to',
  ];
  const params: Param[] = [
    { name: 'limit', type: 'int', value: limit },
    lsnParam('from', fromLsn),
    lsnParam('to', toLsn),
  ];
  if (after !== null) {
    lines.push(
      '  AND ([__$start_lsn] > @afterLsn OR ([__$start_lsn] = @afterLsn AND ([__$command_id] > @afterCommand OR ([__$command_id] = @afterCommand AND ([__$seqval] > @afterSeqval OR ([__$seqval] = @afterSeqval AND [__$operation] > @afterOperation))))))',
    );
    params.push(lsnParam('afterLsn', after.startLsn), { name: 'afterCommand', type: 'int', value: after.commandId }, lsnParam('afterSeqval', after.seqval), { name: 'afterOperation', type: 'int', value: after.operation });
  }
  lines.push('ORDER BY [__$start_lsn], [__$command_id], [__$seqval], [__$operation]');
  return { sql: lines.join('\n'), params };
}

/** The server's own time zone (SQL Server 2022 and Azure SQL; an older server answers error 195). */
export function serverTimeZoneStatement(): Statement {
  return { sql: 'SELECT CURRENT_TIMEZONE_ID() AS zone', params: [] };
}

/** At most this many LSNs per transactionTimes statement (SQL Server allows 2100 parameters). */
export const TIMES_PER_STATEMENT = 500;

/**
 * The lsn_time_mapping rows of these commit LSNs, tran_end_time (datetime, local, no zone) made a
 * datetimeoffset in `@zone` and printed `YYYY-MM-DDThh:mm:ss.fff±hh:mm` (the default datetimeoffset text
 * `YYYY-MM-DD hh:mm:ss.fff +hh:mm`, its date-time space made a T and the space before the offset removed).
 */
export function transactionTimesStatement(lsns: readonly Lsn[], zone: string): Statement {
  const names = lsns.map((_, i) => `@l${i}`);
  return {
    sql: [
      'SELECT start_lsn,',
      "  REPLACE(STUFF(CONVERT(varchar(34), CAST(tran_end_time AT TIME ZONE @zone AS datetimeoffset(3))), 11, 1, 'T'), ' ', '') AS end_time",
      'FROM cdc.lsn_time_mapping',
      `WHERE start_lsn IN (${names.join(', ')}) AND tran_id <> 0x00`,
      'ORDER BY start_lsn',
    ].join('\n'),
    params: [{ name: 'zone', type: 'nvarchar', value: zone }, ...lsns.map((lsn, i) => lsnParam(`l${i}`, lsn))],
  };
}

/** The database, whether CDC is on, and whether the login is db_owner (or sysadmin). */
export function databaseFactsStatement(): Statement {
  return {
    sql: [
      'SELECT DB_NAME() AS database_name, CAST(d.is_cdc_enabled AS int) AS cdc_enabled,',
      "  CAST(COALESCE(IS_ROLEMEMBER('db_owner'), 0) | COALESCE(IS_SRVROLEMEMBER('sysadmin'), 0) AS int) AS db_owner",
      'FROM sys.databases AS d WHERE d.database_id = DB_ID()',
    ].join('\n'),
    params: [],
  };
}

/**
 * Whether the Agent runs: null without VIEW SERVER STATE (the catalog would show nothing rather than fail).
 * sys.dm_server_services names the Agent service; where it lists none (some Linux builds), an Agent session
 * is looked for instead. Azure SQL Database has neither view: the reader then reports null.
 */
export function agentStatement(): Statement {
  return {
    sql: [
      'SELECT CASE',
      "  WHEN HAS_PERMS_BY_NAME(NULL, NULL, 'VIEW SERVER STATE') = 0 THEN NULL",
      "  WHEN EXISTS (SELECT 1 FROM sys.dm_server_services WHERE servicename LIKE N'SQL Server Agent%' AND status_desc = N'Running') THEN 1",
      "  WHEN EXISTS (SELECT 1 FROM sys.dm_exec_sessions WHERE program_name LIKE N'SQLAgent - %') THEN 1",
      '  ELSE 0 END AS agent_running',
    ].join('\n'),
    params: [],
  };
}

/** User tables with whether CDC tracks them (sys.tables.is_tracked_by_cdc needs no cdc schema), sitesync's and CDC's own excluded. */
export function tablesStatement(): Statement {
  return {
    sql: [
      'SELECT s.name AS schema_name, t.name AS table_name, CAST(t.is_tracked_by_cdc AS int) AS captured',
      'FROM sys.tables AS t JOIN sys.schemas AS s ON s.schema_id = t.schema_id',
      `WHERE t.is_ms_shipped = 0 AND s.name NOT IN (N'cdc', N'${BOOKKEEPING_SCHEMA}') AND NOT (s.name = N'dbo' AND t.name = N'systranschemas')`,
      'ORDER BY s.name, t.name',
    ].join('\n'),
    params: [],
  };
}

/** sitesync's own tables, and whether apply_progress has its capture instance (only run when CDC is on). */
export function bookkeepingStatement(cdcEnabled: boolean): Statement {
  const captured = cdcEnabled
    ? `CASE WHEN EXISTS (SELECT 1 FROM cdc.change_tables AS ct WHERE ct.source_object_id = t.object_id AND ct.capture_instance = N'${PROGRESS_CAPTURE_INSTANCE}') THEN 1 ELSE 0 END`
    : '0';
  return {
    sql: [
      `SELECT t.name AS table_name, ${captured} AS progress_captured`,
      'FROM sys.tables AS t JOIN sys.schemas AS s ON s.schema_id = t.schema_id',
      `WHERE s.name = N'${BOOKKEEPING_SCHEMA}'`,
      'ORDER BY t.name',
    ].join('\n'),
    params: [],
  };
}

/** The cleanup job's retention in minutes (msdb; needs a right on msdb, else the reader reports null). */
export function retentionStatement(): Statement {
  return { sql: "SELECT retention FROM msdb.dbo.cdc_jobs WHERE database_id = DB_ID() AND job_type = N'cleanup'", params: [] };
}

/** The schema and capture_progress, if missing. `checkpoint` is a T-SQL keyword, hence bracketed. */
export function ensureCaptureProgressStatement(): Statement {
  return {
    sql: [
      `IF SCHEMA_ID(N'${BOOKKEEPING_SCHEMA}') IS NULL EXEC(N'CREATE SCHEMA ${SCHEMA}');`,
      `IF OBJECT_ID(N'${BOOKKEEPING_SCHEMA}.capture_progress', N'U') IS NULL`,
      `CREATE TABLE ${SCHEMA}.[capture_progress] (`,
      '  [site] varchar(40) NOT NULL PRIMARY KEY,',
      '  [last_published] char(20) NULL,',
      '  [checkpoint] char(20) NOT NULL,',
      '  [seen] nvarchar(max) NOT NULL,',
      '  [instances] nvarchar(max) NOT NULL,',
      '  [updated_at] datetime2 NOT NULL',
      ');',
    ].join('\n'),
    params: [],
  };
}

export function readProgressStatement(site: string): Statement {
  return {
    sql: `SELECT [last_published], [checkpoint], [seen], [instances] FROM ${SCHEMA}.[capture_progress] WHERE [site] = @site`,
    params: [{ name: 'site', type: 'varchar', value: site }],
  };
}

/** Update, else insert: one site's row is written by its one capture process (the site lock sees to that). */
export function writeProgressStatement(site: string, row: CaptureProgressRow): Statement {
  return {
    sql: [
      `UPDATE ${SCHEMA}.[capture_progress] SET [last_published] = @lastPublished, [checkpoint] = @checkpoint, [seen] = @seen, [instances] = @instances, [updated_at] = SYSUTCDATETIME() WHERE [site] = @site;`,
      `IF @@ROWCOUNT = 0 INSERT INTO ${SCHEMA}.[capture_progress] ([site], [last_published], [checkpoint], [seen], [instances], [updated_at]) VALUES (@site, @lastPublished, @checkpoint, @seen, @instances, SYSUTCDATETIME());`,
    ].join('\n'),
    params: [
      { name: 'site', type: 'varchar', value: site },
      { name: 'lastPublished', type: 'varchar', value: row.lastPublished },
      { name: 'checkpoint', type: 'varchar', value: row.checkpoint },
      { name: 'seen', type: 'nvarcharMax', value: row.seen },
      { name: 'instances', type: 'nvarcharMax', value: row.instances },
    ],
  };
}

// ─── reading rows ────────────────────────────────────────────────────────────────────────────────────────

function bytes(value: unknown, what: string): Buffer {
  if (Buffer.isBuffer(value)) return value;
  throw new SitesyncError('SITESYNC_ERR_DECODE', `SQL Server returned ${what} as ${typeof value}, not binary(10)`);
}

function num(value: unknown): number {
  return typeof value === 'number' ? value : Number(value);
}

export function readMaxTransactionLsn(rows: readonly Row[]): Lsn | null {
  const value = rows[0]?.max_lsn;
  return value === null || value === undefined ? null : lsnFromBytes(bytes(value, 'max(start_lsn)'));
}

/** Rows of captureInstancesStatement grouped into instances (in the statement's order). */
export function readCaptureInstances(rows: readonly Row[]): CaptureInstance[] {
  const instances: CaptureInstance[] = [];
  let current: { name: string; schema: string; table: string; startLsn: Lsn; createDate: string; columns: CapturedColumn[] } | null = null;
  for (const row of rows) {
    const name = String(row.capture_instance);
    if (current === null || current.name !== name) {
      current = {
        name,
        schema: String(row.source_schema),
        table: String(row.source_table),
        startLsn: lsnFromBytes(bytes(row.start_lsn, 'start_lsn')),
        createDate: String(row.create_date),
        columns: [],
      };
      instances.push(current);
    }
    current.columns.push({
      name: String(row.column_name),
      type: String(row.type_name).toLowerCase(),
      maxLength: num(row.max_length),
      precision: num(row.precision),
      scale: num(row.scale),
      keyOrdinal: num(row.key_ordinal ?? 0),
    });
  }
  return instances;
}

export function readChanges(instance: CaptureInstance, rows: readonly Row[]): ChangeRow[] {
  return rows.map((row) => {
    const operation = num(row['__$operation']);
    if (operation < 1 || operation > 4 || !Number.isInteger(operation)) {
      throw new SitesyncError('SITESYNC_ERR_DECODE', `change table of ${instance.name} has __$operation ${String(row['__$operation'])}, not 1 to 4`);
    }
    return {
      startLsn: lsnFromBytes(bytes(row['__$start_lsn'], '__$start_lsn')),
      seqval: lsnFromBytes(bytes(row['__$seqval'], '__$seqval')),
      operation: operation as CdcOperation,
      commandId: num(row['__$command_id'] ?? 0),
      values: instance.columns.map((_, i) => projected(row[`v${i}`])),
    };
  });
}

function projected(value: unknown): ProjectedValue {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' || Buffer.isBuffer(value)) return value;
  // A Date would mean a type the projection forgot to convert: refuse rather than lose its precision.
  throw new SitesyncError('SITESYNC_ERR_DECODE', `SQL Server returned a ${value instanceof Date ? 'Date' : typeof value} where the projection gives text, a number or binary`);
}

export function readTransactionTimes(rows: readonly Row[]): TransactionTime[] {
  return rows.map((row) => ({ startLsn: lsnFromBytes(bytes(row.start_lsn, 'start_lsn')), endTime: String(row.end_time) }));
}

export function readProgressRow(rows: readonly Row[]): CaptureProgressRow | null {
  const row = rows[0];
  if (row === undefined) return null;
  return {
    lastPublished: row.last_published === null || row.last_published === undefined ? null : String(row.last_published).trim(),
    checkpoint: String(row.checkpoint).trim(),
    seen: String(row.seen),
    instances: String(row.instances),
  };
}

/** The facts of setupFacts' statements (agent and retention null when their statement failed). */
export function readSetupFacts(parts: {
  readonly database: readonly Row[];
  readonly agent: readonly Row[] | null;
  readonly tables: readonly Row[];
  readonly bookkeeping: readonly Row[];
  readonly retention: readonly Row[] | null;
}): SetupFacts {
  const db = parts.database[0] ?? {};
  const agentValue = parts.agent?.[0]?.agent_running;
  const names = parts.bookkeeping.map((r) => String(r.table_name));
  const progress = parts.bookkeeping.find((r) => r.table_name === 'apply_progress');
  const retention = parts.retention?.[0]?.retention;
  return {
    database: String(db.database_name ?? ''),
    cdcEnabled: num(db.cdc_enabled ?? 0) === 1,
    agentRunning: agentValue === null || agentValue === undefined ? null : num(agentValue) === 1,
    isDbOwner: num(db.db_owner ?? 0) === 1,
    bookkeepingReady: names.includes('apply_progress'),
    progressCaptured: progress !== undefined && num(progress.progress_captured) === 1,
    capturedTables: parts.tables.filter((r) => num(r.captured) === 1).map((r) => `${String(r.schema_name)}.${String(r.table_name)}`),
    uncapturedTables: parts.tables.filter((r) => num(r.captured) !== 1).map((r) => `${String(r.schema_name)}.${String(r.table_name)}`),
    retentionMinutes: retention === null || retention === undefined ? null : num(retention),
  };
}

// ─── the mssql runner ────────────────────────────────────────────────────────────────────────────────────

const FIXTURES = fileURLToPath(new URL('../../test/fixtures/sqlserver/', import.meta.url));
const recorded = new Map<string, number>();

/** RECORD=1: one fixture file per query (see the file comment). */
export function recordQuery(method: string, statement: Statement, rows: readonly Row[]): void {
  if (process.env.RECORD !== '1') return;
  const n = (recorded.get(method) ?? 0) + 1;
  recorded.set(method, n);
  const hex = (_key: string, value: unknown): unknown =>
    value !== null && typeof value === 'object' && (value as { type?: string }).type === 'Buffer' && Array.isArray((value as { data?: unknown }).data)
      ? { hex: Buffer.from((value as { data: number[] }).data).toString('hex') }
      : value;
  mkdirSync(FIXTURES, { recursive: true });
  const body = { method, sql: statement.sql, params: statement.params, rows };
  writeFileSync(`${FIXTURES}recorded-${method}-${n}.json`, `${JSON.stringify(body, hex, 2)}\n`);
}

/** Reads a fixture back: `{hex}` objects become Buffers again. */
export function reviveFixtureRows(rows: readonly Row[]): Row[] {
  const revive = (value: unknown): unknown => {
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      const o = value as Record<string, unknown>;
      if (Object.keys(o).length === 1 && typeof o.hex === 'string') return Buffer.from(o.hex, 'hex');
      return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, revive(v)]));
    }
    return value;
  };
  return rows.map((row) => revive(row) as Row);
}

function sqlType(driver: MssqlDriver, type: ParamType): mssql.ISqlType | (() => mssql.ISqlType) {
  switch (type) {
    case 'lsn':
      return driver.VarBinary(10);
    case 'int':
      return driver.Int;
    case 'varchar':
      return driver.VarChar(64);
    case 'nvarchar':
      return driver.NVarChar(256);
    case 'nvarcharMax':
      return driver.NVarChar(driver.MAX);
  }
}

/** One pool per reader (of one connection: a reader's calls are sequential). */
export class MssqlRunner implements QueryRunner {
  private pool: mssql.ConnectionPool | null = null;
  private connecting: Promise<mssql.ConnectionPool> | null = null;
  private driver: MssqlDriver | null = null;
  constructor(private readonly config: mssql.config) {}

  private async connect(): Promise<mssql.ConnectionPool> {
    if (this.pool?.connected) return this.pool;
    if (this.connecting === null) {
      const driver = (this.driver ??= await loadMssql());
      const pool = new driver.ConnectionPool({ ...this.config, pool: { min: 0, max: 1 } });
      pool.on('error', () => undefined); // a lost idle connection: the next query reconnects
      this.connecting = pool.connect().then(
        (connected) => {
          this.pool = connected;
          this.connecting = null;
          return connected;
        },
        (error: unknown) => {
          this.connecting = null;
          throw error;
        },
      );
    }
    return this.connecting;
  }

  async query(method: string, statement: Statement): Promise<Row[]> {
    const pool = await this.connect();
    const request = pool.request();
    for (const p of statement.params) request.input(p.name, sqlType(this.driver!, p.type), p.value);
    const result = await request.query(statement.sql);
    const rows = (result.recordset ?? []) as unknown as Row[];
    recordQuery(method, statement, rows);
    return rows;
  }

  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = null;
    await pool?.close().catch(() => undefined);
  }
}

// ─── the reader ──────────────────────────────────────────────────────────────────────────────────────────

export interface MssqlCdcReaderOptions {
  readonly url: string;
  readonly site: string;
  /** Tests pass a fake; by default the URL's mssql configuration. */
  readonly runner?: QueryRunner;
}

/** Error 195: "… is not a recognized built-in function name" (CURRENT_TIMEZONE_ID before SQL Server 2022). */
const NOT_A_FUNCTION = 195;

export class MssqlCdcReader implements CdcReader {
  private readonly url: string;
  private readonly site: string;
  private readonly runner: QueryRunner;
  private zone: string | null = null;

  constructor(options: MssqlCdcReaderOptions) {
    this.url = options.url;
    this.site = options.site;
    this.runner = options.runner ?? new MssqlRunner(mssqlConfig(options.url));
  }

  private async run(method: string, statement: Statement): Promise<Row[]> {
    try {
      return await this.runner.query(method, statement);
    } catch (error) {
      throw describeSqlServerError(error, this.url, this.site);
    }
  }

  async maxTransactionLsn(): Promise<Lsn | null> {
    return readMaxTransactionLsn(await this.run('maxTransactionLsn', maxTransactionLsnStatement()));
  }

  async captureInstances(): Promise<CaptureInstance[]> {
    return readCaptureInstances(await this.run('captureInstances', captureInstancesStatement()));
  }

  async changes(instance: CaptureInstance, fromLsn: Lsn, toLsn: Lsn, after: ChangeKey | null, limit: number): Promise<ChangeRow[]> {
    return readChanges(instance, await this.run('changes', changesStatement(instance, fromLsn, toLsn, after, limit)));
  }

  async transactionTimes(lsns: readonly Lsn[]): Promise<TransactionTime[]> {
    if (lsns.length === 0) return [];
    const zone = await this.serverZone();
    const times: TransactionTime[] = [];
    for (let i = 0; i < lsns.length; i += TIMES_PER_STATEMENT) {
      times.push(...readTransactionTimes(await this.run('transactionTimes', transactionTimesStatement(lsns.slice(i, i + TIMES_PER_STATEMENT), zone))));
    }
    return times;
  }

  /** CURRENT_TIMEZONE_ID(), else the URL's timeZone, else a one-line fix. */
  private async serverZone(): Promise<string> {
    if (this.zone !== null) return this.zone;
    let zone: string | null = null;
    try {
      zone = ((await this.runner.query('serverTimeZone', serverTimeZoneStatement()))[0]?.zone as string | null | undefined) ?? null;
    } catch (error) {
      if (!errorNumbers(error).includes(NOT_A_FUNCTION)) throw describeSqlServerError(error, this.url, this.site);
    }
    zone ??= timeZoneOfUrl(this.url);
    if (zone === null) {
      throw new SitesyncError(
        'SITESYNC_ERR_CONFIG',
        `SQL Server of site ${this.site} cannot say its time zone (CURRENT_TIMEZONE_ID() needs SQL Server 2022 or Azure SQL), so CDC commit times cannot be made UTC; ` +
          "add the server's Windows time zone to the site's URL, e.g. ?timeZone=W. Europe Standard Time (names: SELECT name FROM sys.time_zone_info)",
      );
    }
    this.zone = zone;
    return zone;
  }

  async setupFacts(): Promise<SetupFacts> {
    const database = await this.run('setupFacts', databaseFactsStatement());
    const optional = async (statement: Statement): Promise<Row[] | null> => {
      try {
        return await this.runner.query('setupFacts', statement);
      } catch {
        return null; // no right to see it (or no such view, Azure SQL): unknown
      }
    };
    const agent = await optional(agentStatement());
    const tables = await this.run('setupFacts', tablesStatement());
    const cdcEnabled = Number(database[0]?.cdc_enabled ?? 0) === 1;
    const bookkeeping = await this.run('setupFacts', bookkeepingStatement(cdcEnabled));
    const retention = cdcEnabled ? await optional(retentionStatement()) : null;
    return readSetupFacts({ database, agent, tables, bookkeeping, retention });
  }

  async ensureCaptureProgress(): Promise<void> {
    await this.run('ensureCaptureProgress', ensureCaptureProgressStatement());
  }

  async readProgress(site: string): Promise<CaptureProgressRow | null> {
    return readProgressRow(await this.run('readProgress', readProgressStatement(site)));
  }

  async writeProgress(site: string, row: CaptureProgressRow): Promise<void> {
    await this.run('writeProgress', writeProgressStatement(site, row));
  }

  async close(): Promise<void> {
    await this.runner.close();
  }
}
