/**
 * SQL Server under the conformance suites, LIVE: a real server through `mssql`, for
 * test/integration/sqlserver-live.test.ts when MSSQL_URL names a db_owner login on a database with change data
 * capture enabled and the SQL Server Agent running (docker-compose's `sqlserver` profile makes one:
 * deploy/sqlserver/init.sql). The simulated twin is sqlserver.ts; this one proves the thin layer the simulator
 * stands in for (mssql-cdc-reader.ts, mssql-apply-connection.ts, the projections of sqlserver-kinds.ts).
 *
 * NOT RUN YET: no SQL Server runs on this project's machines. Written against mssql 12's API (ConnectionPool,
 * Request.input, Transaction) and typechecked only; expect a first run to need fixes.
 *
 * - Each fixture has a schema of its own in the shared database (`conf_<hex>`), its tables in SQL Server types,
 *   each enabled for CDC (sys.sp_cdc_enable_table, capture instance `<schema>_<table>`); cleanup disables CDC
 *   on them, drops them and the schema, and removes the bookkeeping rows the fixture made (its capture_progress
 *   row; the apply_progress, parked and spilled rows of the suites' source `remote`, shared by every fixture:
 *   they are removed when a sink fixture opens too, in case an earlier run died before its cleanup).
 * - Writes as an application makes them: one transaction, one statement per change, every value sent as text
 *   (nvarchar) and CAST to the column's type in the statement (ISO 8601 date-time texts, which SQL Server reads
 *   the same whatever the session's language or DATEFORMAT), bytes as varbinary, floats as float (IEEE).
 *   The Agent's capture job then moves them into the change tables (every 5 s by default: the suites' waits
 *   of 20 s allow for it).
 * - Relayed writes as the sink makes them: its own progress upsert (sqlserver-statements.ts progressStatement,
 *   mode 'always' so that the row changes every time) first, in the same transaction.
 * - Rows read back through the same projection capture uses (sqlserver-kinds.ts projection) and turned into
 *   canonical text by canonicalText.
 * - Snapshots: the connector's own table reader and snapshot control over `mssql` (sqlserver-table-reader.ts,
 *   sqlserver-snapshot-control.ts), whose first use creates sitesync.snapshots and sitesync.snapshot_markers and
 *   enables CDC on the markers table (the db_owner login may); cleanup removes the fixture's snapshot rows.
 * - interrupt KILLs the sink's sessions (found by the application name the fixture gives its URL), which needs
 *   ALTER ANY CONNECTION and VIEW SERVER STATE: MSSQL_ADMIN_URL (sa) when set, else MSSQL_URL. When no session
 *   can be seen (no right to see them), it closes the sink's connections instead: the server rolls back
 *   their open transactions just the same.
 */
import { randomBytes } from 'node:crypto';
import type * as mssql from 'mssql';
import type { ApplyConnection } from '../../../connectors/sqlserver/apply-connection.ts';
import type { CapturedColumn, ProjectedValue } from '../../../connectors/sqlserver/cdc-reader.ts';
import { MssqlApplyConnection } from '../../../connectors/sqlserver/mssql-apply-connection.ts';
import { MssqlCdcReader } from '../../../connectors/sqlserver/mssql-cdc-reader.ts';
import { mssqlConfig } from '../../../connectors/sqlserver/mssql-connection.ts';
import { loadMssql, type MssqlDriver } from '../../../connectors/sqlserver/mssql-driver.ts';
import { canonicalText, projection, quoteName } from '../../../connectors/sqlserver/sqlserver-kinds.ts';
import { SqlServerSink } from '../../../connectors/sqlserver/sqlserver-sink.ts';
import { SqlServerSnapshotControl } from '../../../connectors/sqlserver/sqlserver-snapshot-control.ts';
import { SqlServerSource } from '../../../connectors/sqlserver/sqlserver-source.ts';
import { SqlServerTableReader } from '../../../connectors/sqlserver/sqlserver-table-reader.ts';
import { progressStatement } from '../../../connectors/sqlserver/sqlserver-statements.ts';
import { createLogger } from '../../../src/observability/logger.ts';
import type { SinkFixture, SinkHarness, SourceFixture, SourceHarness, SourceOp } from '../harness.ts';
import { sortRows, type TableSpec } from '../tables.ts';

/** SQL Server's type for each kind it has one for (no interval, arrays, enums; JSON would be text). */
export const SQLSERVER_LIVE_TYPES: Readonly<Record<string, string>> = {
  boolean: 'bit',
  int16: 'smallint',
  int32: 'int',
  int64: 'bigint',
  float32: 'real',
  float64: 'float',
  'decimal(12,2)': 'decimal(12,2)',
  string: 'nvarchar(max)',
  bytes: 'varbinary(max)',
  date: 'date',
  time: 'time(6)',
  timestamp: 'datetime2(6)',
  timestamptz: 'datetimeoffset(6)',
  uuid: 'uniqueidentifier',
};

export const SQLSERVER_LIVE_KINDS = Object.keys(SQLSERVER_LIVE_TYPES);

/** The suites' source site (sink-suite.ts SOURCE), and the one the source suite's relayed writes claim. */
const SUITE_SOURCE = 'remote';

type Input = { readonly name: string; readonly type: 'text' | 'binary' | 'float' | 'int'; readonly value: string | number | Buffer | null };

/** A URL with one query parameter set (the application name the fixture finds its sink's sessions by). */
export function withUrlParameter(url: string, name: string, value: string): string {
  const parsed = new URL(url);
  parsed.searchParams.set(name, value);
  return parsed.toString();
}

/** One login's pool (a few connections), opened on first use. */
export class LiveSqlServer {
  private pool: Promise<mssql.ConnectionPool> | null = null;
  private driver: MssqlDriver | null = null;

  constructor(readonly url: string) {}

  async connect(): Promise<{ driver: MssqlDriver; pool: mssql.ConnectionPool }> {
    const driver = (this.driver ??= await loadMssql());
    const opening = (this.pool ??= (async () => {
      const pool = new driver.ConnectionPool({ ...mssqlConfig(this.url), pool: { max: 4, min: 0 } });
      pool.on('error', () => undefined);
      return pool.connect();
    })());
    try {
      return { driver, pool: await opening };
    } catch (error) {
      if (this.pool === opening) this.pool = null; // the next call tries again
      throw error;
    }
  }

  /** Runs one batch (outside any transaction, or in `transaction`); the rows of its last result set. */
  async query(text: string, inputs: readonly Input[] = [], transaction?: mssql.Transaction): Promise<Record<string, unknown>[]> {
    const { driver, pool } = await this.connect();
    const request = transaction ? new driver.Request(transaction) : pool.request();
    bindInputs(driver, request, inputs);
    const result = await request.query(text);
    const sets = (result.recordsets as unknown as Record<string, unknown>[][] | undefined) ?? [];
    return sets.length > 0 ? sets[sets.length - 1]! : [];
  }

  /** Runs `work` in one transaction: committed when it returns, rolled back when it throws. */
  async inTransaction(work: (transaction: mssql.Transaction) => Promise<void>): Promise<void> {
    const { driver, pool } = await this.connect();
    const transaction = new driver.Transaction(pool);
    await transaction.begin(driver.ISOLATION_LEVEL.READ_COMMITTED);
    try {
      await work(transaction);
      await transaction.commit();
    } catch (error) {
      await transaction.rollback().catch(() => undefined);
      throw error;
    }
  }

  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = null;
    if (pool) await (await pool.catch(() => null))?.close().catch(() => undefined);
  }
}

function bindInputs(driver: MssqlDriver, request: mssql.Request, inputs: readonly Input[]): void {
  for (const p of inputs) {
    if (p.type === 'binary') request.input(p.name, driver.VarBinary(driver.MAX), p.value);
    else if (p.type === 'float') request.input(p.name, driver.Float, p.value === null ? null : Number(p.value));
    else if (p.type === 'int') request.input(p.name, driver.BigInt, p.value);
    else request.input(p.name, driver.NVarChar(driver.MAX), p.value);
  }
}

const qualified = (schema: string, table: string): string => `${quoteName(schema)}.${quoteName(table)}`;

/** The schema (when missing) and each table, enabled for CDC as `<schema>_<table>`. */
export async function createLiveTables(server: LiveSqlServer, schema: string, tables: readonly TableSpec[]): Promise<void> {
  await server.query(`IF SCHEMA_ID(@schema) IS NULL BEGIN DECLARE @ddl nvarchar(400) = N'CREATE SCHEMA ' + QUOTENAME(@schema); EXEC (@ddl); END`, [{ name: 'schema', type: 'text', value: schema }]);
  for (const t of tables) {
    const columns = t.columns.map((c) => `${quoteName(c.name)} ${SQLSERVER_LIVE_TYPES[c.kind]!}${c.key ? ' NOT NULL' : ' NULL'}`);
    const key = t.columns.filter((c) => c.key).map((c) => quoteName(c.name));
    const pk = key.length > 0 ? `, CONSTRAINT ${quoteName(`PK_${schema}_${t.table}`)} PRIMARY KEY (${key.join(', ')})` : '';
    await server.query(`CREATE TABLE ${qualified(schema, t.table)} (${columns.join(', ')}${pk})`);
    await server.query(
      'EXEC sys.sp_cdc_enable_table @source_schema = @schema, @source_name = @table, @role_name = NULL, @capture_instance = @instance, @supports_net_changes = 0',
      [
        { name: 'schema', type: 'text', value: schema },
        { name: 'table', type: 'text', value: t.table },
        { name: 'instance', type: 'text', value: `${schema}_${t.table}` },
      ],
    );
  }
}

/** A table dropped, its CDC disabled first (its capture instances and change tables go with it); nothing when absent. */
export async function dropLiveTable(server: LiveSqlServer, schema: string, table: string): Promise<void> {
  await server.query(
    `IF EXISTS (SELECT 1 FROM cdc.change_tables WHERE source_object_id = OBJECT_ID(@full))
       EXEC sys.sp_cdc_disable_table @source_schema = @schema, @source_name = @table, @capture_instance = N'all'`,
    [
      { name: 'full', type: 'text', value: qualified(schema, table) },
      { name: 'schema', type: 'text', value: schema },
      { name: 'table', type: 'text', value: table },
    ],
  );
  await server.query(`DROP TABLE IF EXISTS ${qualified(schema, table)}`);
}

/** The schema dropped when nothing is left in it. */
export async function dropLiveSchemaIfEmpty(server: LiveSqlServer, schema: string): Promise<void> {
  await server.query(
    `IF SCHEMA_ID(@schema) IS NOT NULL AND NOT EXISTS (SELECT 1 FROM sys.objects WHERE schema_id = SCHEMA_ID(@schema))
     BEGIN DECLARE @ddl nvarchar(400) = N'DROP SCHEMA ' + QUOTENAME(@schema); EXEC (@ddl); END`,
    [{ name: 'schema', type: 'text', value: schema }],
  );
}

/** Every table of `schema` dropped (CDC disabled first), then the schema. */
export async function dropLiveSchema(server: LiveSqlServer, schema: string): Promise<void> {
  const tables = await server.query('SELECT t.name FROM sys.tables AS t WHERE t.schema_id = SCHEMA_ID(@schema) AND t.is_ms_shipped = 0', [{ name: 'schema', type: 'text', value: schema }]);
  for (const { name } of tables) await dropLiveTable(server, schema, String(name));
  await dropLiveSchemaIfEmpty(server, schema);
}

/** A canonical text as an application would send it for a column of `kind`: the parameter and the expression using it. */
function liveValue(kind: string, name: string, text: string | null): { input: Input; expression: string } {
  const type = SQLSERVER_LIVE_TYPES[kind];
  if (type === undefined) throw new Error(`the live SQL Server harness has no type for kind ${kind}`);
  const p = `@${name}`;
  const cast = (value: string | null): { input: Input; expression: string } => ({ input: { name, type: 'text', value }, expression: `CAST(${p} AS ${type})` });
  if (text === null) return cast(null);
  switch (kind) {
    case 'boolean':
      return cast(text === 't' ? '1' : '0');
    case 'float32':
    case 'float64':
      return { input: { name, type: 'float', value: Number(text) }, expression: `CAST(${p} AS ${type})` };
    case 'string':
      return { input: { name, type: 'text', value: text }, expression: p };
    case 'bytes':
      return { input: { name, type: 'binary', value: Buffer.from(text.replace(/^\\x/, ''), 'hex') }, expression: p };
    case 'timestamp':
      return cast(text.replace(' ', 'T'));
    case 'timestamptz': {
      // `2024-02-29 13:45:10.123456+00` → `2024-02-29T13:45:10.123456+00:00` (ISO 8601, which datetimeoffset reads)
      const m = /^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}(?:\.\d+)?)([+-]\d{2})(?::?(\d{2}))?$/.exec(text);
      if (!m) throw new Error(`not a timestamptz text the live harness knows: ${text}`);
      return cast(`${m[1]}T${m[2]}${m[3]}:${m[4] ?? '00'}`);
    }
    default:
      return cast(text);
  }
}

/** One change as T-SQL with its inputs. */
function opStatement(schema: string, op: SourceOp, prefix: string): { text: string; inputs: Input[] } {
  const inputs: Input[] = [];
  const kindOf = (column: string): string => {
    const spec = op.table.columns.find((c) => c.name === column);
    if (!spec) throw new Error(`no column ${column} in ${op.table.table}`);
    return spec.kind;
  };
  const value = (column: string, text: string | null): string => {
    const v = liveValue(kindOf(column), `${prefix}${inputs.length}`, text);
    inputs.push(v.input);
    return v.expression;
  };
  const where = (w: Readonly<Record<string, string | null>>): string =>
    Object.entries(w)
      .map(([c, text]) => (text === null ? `${quoteName(c)} IS NULL` : `${quoteName(c)} = ${value(c, text)}`))
      .join(' AND ');
  const table = qualified(schema, op.table.table);
  switch (op.op) {
    case 'insert': {
      const names = Object.keys(op.values);
      return { text: `INSERT INTO ${table} (${names.map(quoteName).join(', ')}) VALUES (${names.map((n) => value(n, op.values[n] ?? null)).join(', ')})`, inputs };
    }
    case 'update': {
      const set = Object.entries(op.set).map(([c, text]) => `${quoteName(c)} = ${value(c, text)}`).join(', ');
      return { text: `UPDATE ${table} SET ${set} WHERE ${where(op.where)}`, inputs };
    }
    case 'delete':
      return { text: `DELETE FROM ${table} WHERE ${where(op.where)}`, inputs };
  }
}

/** The sink's progress upsert, bound as mssql-apply-connection.ts binds it. */
async function relayedMarker(server: LiveSqlServer, transaction: mssql.Transaction, from: string, commitTimeMicros: bigint): Promise<void> {
  const statement = progressStatement({ source: from, sourceKind: 'postgres', position: '0000000000000001', commitTimeMicros }, 'always');
  const inputs: Input[] = statement.parameters.map((p) => ({ name: p.name, type: p.type, value: p.value }));
  await server.query(statement.text, inputs, transaction);
}

/** Commits `ops` as one transaction, as an application would (`first` runs first in it). */
export async function liveCommit(server: LiveSqlServer, schema: string, ops: readonly SourceOp[], first?: (transaction: mssql.Transaction) => Promise<void>): Promise<void> {
  await server.inTransaction(async (transaction) => {
    await first?.(transaction);
    for (const op of ops) {
      const { text, inputs } = opStatement(schema, op, 'p');
      await server.query(text, inputs, transaction);
    }
  });
}

/** A table's columns as capture describes them (sys.columns), in table order. */
async function liveColumns(server: LiveSqlServer, schema: string, table: string): Promise<CapturedColumn[]> {
  const rows = await server.query(
    `SELECT c.name, TYPE_NAME(c.system_type_id) AS type, c.max_length, c.precision, c.scale
       FROM sys.columns AS c WHERE c.object_id = OBJECT_ID(@table) ORDER BY c.column_id`,
    [{ name: 'table', type: 'text', value: qualified(schema, table) }],
  );
  if (rows.length === 0) throw new Error(`no table ${schema}.${table} at the SQL Server`);
  return rows.map((r) => ({ name: String(r.name), type: String(r.type).toLowerCase(), maxLength: Number(r.max_length), precision: Number(r.precision), scale: Number(r.scale), keyOrdinal: 0 }));
}

/** A table's rows in canonical text, sorted: read through capture's own projection, then canonicalText. */
export async function liveRows(server: LiveSqlServer, schema: string, spec: TableSpec): Promise<(string | null)[][]> {
  const all = await liveColumns(server, schema, spec.table);
  const columns = spec.columns.map((c) => {
    const column = all.find((a) => a.name === c.name);
    if (!column) throw new Error(`no column ${c.name} in ${schema}.${spec.table} at the SQL Server`);
    return column;
  });
  const select = columns.map((c, i) => `${projection(c)} AS [c${i}]`).join(', ');
  const rows = await server.query(`SELECT ${select} FROM ${qualified(schema, spec.table)}`);
  return sortRows(rows.map((r) => columns.map((c, i) => canonicalText(c, (r[`c${i}`] ?? null) as ProjectedValue))));
}

/**
 * Bookkeeping rows a test made, removed: the apply_progress, parked, spilled and conflict rows of `sources`, and
 * the capture_progress row of `site` (each table only when it exists).
 */
export async function forgetBookkeepingRows(server: LiveSqlServer, { sources, site }: { readonly sources: readonly string[]; readonly site: string | null }): Promise<void> {
  const exists = async (table: string): Promise<boolean> =>
    (await server.query('SELECT OBJECT_ID(@table) AS id', [{ name: 'table', type: 'text', value: `sitesync.${table}` }]))[0]?.id != null;
  const bySource: [string, string][] = [
    ['apply_progress', 'source'],
    ['parked', 'source'],
    ['spilled_parts', 'source'],
    ['conflicts', 'remote_site'],
  ];
  for (const [table, column] of bySource) {
    if (!(await exists(table))) continue;
    for (const source of sources) await server.query(`DELETE FROM sitesync.${table} WHERE ${column} = @source`, [{ name: 'source', type: 'text', value: source }]);
  }
  if (site !== null && (await exists('capture_progress'))) await server.query('DELETE FROM sitesync.capture_progress WHERE site = @site', [{ name: 'site', type: 'text', value: site }]);
}

/** The suites' rows of source `remote` (and of fixture `site`), removed. */
const forgetSuiteRows = (server: LiveSqlServer, site: string | null): Promise<void> => forgetBookkeepingRows(server, { sources: [SUITE_SOURCE], site });

/** KILLs every session with this application name; how many it killed (0: none seen, or no right to see them). */
export async function killSessions(admin: LiveSqlServer, programName: string): Promise<number> {
  const sessions = await admin.query('SELECT session_id FROM sys.dm_exec_sessions WHERE program_name = @program AND session_id <> @@SPID', [{ name: 'program', type: 'text', value: programName }]);
  let killed = 0;
  for (const { session_id } of sessions) {
    const id = Number(session_id);
    if (!Number.isInteger(id)) continue;
    await admin.query(`KILL ${id}`).then(
      () => killed++,
      () => undefined, // gone already
    );
  }
  return killed;
}

const logger = createLogger('silent');

export function sqlserverLiveSourceHarness(url: string): SourceHarness {
  const server = new LiveSqlServer(url);
  return {
    name: 'sqlserver (live)',
    kinds: SQLSERVER_LIVE_KINDS,
    snapshots: true,
    async open(tables) {
      const schema = `conf_${randomBytes(4).toString('hex')}`;
      const site = `conf_${randomBytes(3).toString('hex')}`;
      await createLiveTables(server, schema, tables);
      const fixture: SourceFixture = {
        schema,
        source: (maxPartBytes) =>
          new SqlServerSource({
            site,
            reader: () => new MssqlCdcReader({ url, site }),
            tables: tables.map((t) => `${schema}.${t.table}`),
            maxPartBytes,
            pollIntervalMs: 200,
            progressWriteIntervalMs: 0,
            logger,
          }),
        commit: (ops) => liveCommit(server, schema, ops),
        commitRelayed: (from, commitTimeMicros, ops) => liveCommit(server, schema, ops, (transaction) => relayedMarker(server, transaction, from, commitTimeMicros)),
        snapshots: async () => ({ reader: await SqlServerTableReader.open({ site, url, consistent: false }), control: new SqlServerSnapshotControl({ site, url }) }),
        async cleanup() {
          try {
            await dropLiveSchema(server, schema);
            await forgetSuiteRows(server, site);
            await server.query("IF OBJECT_ID(N'sitesync.snapshots', N'U') IS NOT NULL DELETE FROM sitesync.snapshots WHERE LEFT(table_name, LEN(@prefix)) = @prefix", [{ name: 'prefix', type: 'text', value: `${schema}.` }]);
          } finally {
            await server.close();
          }
        },
      };
      return fixture;
    },
  };
}

/** The SQL Server sink on the live server, told its source is of `sourceKind`. */
export function sqlserverLiveSinkHarness(url: string, sourceKind: string, positionDigits: number, adminUrl: string = url): SinkHarness {
  const server = new LiveSqlServer(url);
  return {
    name: `sqlserver (live, from a ${sourceKind} source)`,
    kinds: SQLSERVER_LIVE_KINDS,
    sourceKind,
    position: (n) => n.toString(16).toUpperCase().padStart(positionDigits, '0'),
    async open(tables) {
      const schema = `conf_${randomBytes(4).toString('hex')}`;
      const site = `conf_${randomBytes(3).toString('hex')}`;
      const program = `sitesync conformance ${site}`;
      const sinkUrl = withUrlParameter(url, 'applicationName', program);
      await forgetSuiteRows(server, null);
      await createLiveTables(server, schema, tables);
      const opened: ApplyConnection[] = [];
      const fixture: SinkFixture = {
        schema,
        sink: () =>
          new SqlServerSink({
            site,
            connect: async () => {
              const connection = await MssqlApplyConnection.open(sinkUrl, site);
              opened.push(connection);
              return connection;
            },
            conflictPolicy: () => ({ policy: 'last-writer-wins', priority: [] }),
            sourceKindOf: () => sourceKind,
            logger,
          }),
        rows: (spec) => liveRows(server, schema, spec),
        async interrupt() {
          const admin = new LiveSqlServer(adminUrl);
          let killed = 0;
          try {
            killed = await killSessions(admin, program);
          } catch {
            killed = 0; // no right to list or kill sessions: fall back below
          } finally {
            await admin.close();
          }
          if (killed === 0) for (const connection of opened.splice(0)) await connection.close().catch(() => undefined);
        },
        async cleanup() {
          try {
            await dropLiveSchema(server, schema);
            await forgetSuiteRows(server, null);
          } finally {
            await server.close();
          }
        },
      };
      return fixture;
    },
  };
}
