/**
 * Reads a SQL Server table's existing rows by key (src/capture/table-reader.ts): what an online snapshot of a
 * SQL Server site sends and what `sitesync verify` compares there.
 *
 * Same rows as capture. The relation is the one change-stream.ts describes: the columns of the table's newest
 * capture instance (captureInstancesStatement and readCaptureInstances of mssql-cdc-reader.ts, the very query
 * capture runs, so its column list, types and key ordinals), or, for a table without one (a site that only
 * applies), every column of sys.columns with its base type. Each value is read through capture's projection
 * (sqlserver-kinds.ts `projection`) and turned into text by capture's `canonicalText`, so a row read here and
 * the same row in a change table are the same texts by construction. A computed column reads NULL, as CDC
 * records it; a captured column no longer in the table too. A login that may not read the cdc schema (a
 * monitoring login for verify) gets the table's own columns: the same unless the capture instance leaves some
 * out or predates a change of the table.
 *
 * Key order is the kind-neutral one (src/capture/key-order.ts), each key column by what its type needs:
 * - numbers (bit, the integers, decimal, numeric, money, real, float), date, datetime, smalldatetime, and the
 *   time types of 0 to 6 fraction digits: by the column itself, which the primary key's index serves, compared
 *   with `CONVERT(<its type>, @key)` of the canonical text (ISO 8601 with a `T`, which no DATEFORMAT or
 *   LANGUAGE setting reads otherwise);
 * - time(7), datetime2(7), datetimeoffset(7): 100 ns is finer than the microseconds of the canonical text
 *   (canonicalText rounds half to even), so several stored values share one key text. Compared in the rounded
 *   domain: "after the key R" is `col > R + 0.4 µs` (0.5 when R's last digit is even, which a tie rounds to),
 *   "at R" is the range of values that round to R. So a chunk never re-reads the key it ended on, nor skips a
 *   value that rounds above it; values that round to one key are one key to sitesync (as they would be at
 *   PostgreSQL): readChunk gives the first of them. Sorted by the column itself when it is the last key column
 *   (the index serves it; rounding keeps its order); before another key column, by the value rounded as
 *   canonicalText rounds it (`DATEADD(nanosecond, ±…, col)` from DATEPART(nanosecond, col)), so that the
 *   rows of one text are ordered by the next column (a value within 0.5 µs of the type's maximum is left as
 *   it is, rather than overflow);
 * - binary, varbinary: by the column: SQL Server compares binary values byte by byte, the shorter padded with
 *   0x00 (trailing zeros are not significant: 0x01 = 0x0100, so a key cannot hold both), which for the keys a
 *   table can hold is byte order;
 * - uniqueidentifier: NOT by the column. SQL Server orders uniqueidentifier by its last six bytes first, then
 *   bytes 8-9, 6-7, 4-5, 0-3 (System.Data.SqlTypes.SqlGuid's order), not as its text: sorted and compared by
 *   `CONVERT(char(36), col) COLLATE Latin1_General_BIN2` (upper-case hex, whose binary order is the lower-case
 *   canonical text's). Its index does not serve this: each chunk sorts what follows it;
 * - char, varchar, nchar, nvarchar, sysname: NOT by the column (its collation is linguistic, or pads with
 *   spaces: 'a' = 'a ' and 'a' > 'a' + CHAR(9) in every collation, BIN2 included) and NOT by a BIN2 collation on
 *   nvarchar, which compares UTF-16 code units: a supplementary character (a surrogate pair, D800-DFFF) sorts
 *   there below U+E000-U+FFFF, where UTF-8's bytes put it above. Sorted and compared by the UTF-8 bytes
 *   themselves, as varbinary: `CAST(CAST(CAST(col AS nvarchar(max)) COLLATE Latin1_General_100_BIN2_UTF8 AS
 *   varchar(max)) AS varbinary(max))`. That needs a UTF-8 collation (SQL Server 2019 and later, Azure SQL):
 *   describe() refuses a text key on an older server, in one line. varbinary's zero padding leaves one case:
 *   texts that differ only by trailing U+0000 characters compare equal (PostgreSQL cannot hold U+0000 at all).
 *   The index does not serve it: each chunk sorts what follows it;
 * - anything else (xml, sql_variant, hierarchyid, the spatial types) is refused as a key column in one line.
 * Keyset conditions are spelled out column by column, `s1 >= b1 AND (s1 > b1 OR (s1 = b1 AND s2 > b2))`, the
 * leading `>=` letting the optimizer seek the index when s1 is the column itself.
 *
 * readKeys finds rows by the columns themselves (`col = TRY_CONVERT(<type>, @key)`, so the index seeks and a
 * key text this column cannot hold matches nothing instead of failing the read) and keeps only rows whose
 * key texts are exactly the ones asked for (a case-insensitive collation finds 'Abc' for 'abc').
 *
 * Consistent readers (verify) hold one transaction at SNAPSHOT isolation from open to close: SQL Server fixes
 * its point in time at the transaction's first read of a table, and every later read sees it. The database
 * must allow it (ALLOW_SNAPSHOT_ISOLATION ON); open() checks first and says so in one line. Other readers
 * read at the session's READ COMMITTED (the latest committed rows, as a snapshot chunk needs).
 *
 * What touches the server is a TableRunner: MssqlTableRunner (the `mssql` driver) in production; the
 * simulator of test/helpers/sqlserver-simulator.ts implements the same interface by evaluating these
 * statements (their WHERE and ORDER BY) with a model of SQL Server's comparisons. estimateRows reads
 * sys.partitions (the row counts of the heap or clustered index; any right on the table may read it).
 */
import type * as mssql from 'mssql';
import { compareKeys } from '../../src/capture/key-order.ts';
import { checkSameShape, rowKey, type RowKey, type TableReader, type TableReaderOptions, type TableShape } from '../../src/capture/table-reader.ts';
import { SitesyncError } from '../../src/errors.ts';
import type { ColumnInfo, RelationInfo, RowImage } from '../../src/events/transaction.ts';
import { daysToIsoDate, MICROS_PER_DAY, parseValue } from '../../src/events/value-parser.ts';
import { redactUrl } from '../../src/observability/logger.ts';
import type { CapturedColumn, CaptureInstance, ProjectedValue } from './cdc-reader.ts';
import { compareAge } from './capture-instances.ts';
import { captureInstancesStatement, readCaptureInstances, recordQuery, type Param, type QueryRunner, type Row, type Statement } from './mssql-cdc-reader.ts';
import { mssqlConfig } from './mssql-connection.ts';
import { loadMssql, type MssqlDriver } from './mssql-driver.ts';
import { describeSqlServerError, errorLine, errorNumbers } from './sqlserver-errors.ts';
import { canonicalText, kindOf, nativeOf, nativeTypeName, projection, quoteName } from './sqlserver-kinds.ts';

/** Runs the reader's statements; a consistent reader's after beginSnapshot(), in that one transaction. */
export interface TableRunner extends QueryRunner {
  /** Starts the transaction at SNAPSHOT isolation that every later statement runs in, until close(). */
  beginSnapshot(): Promise<void>;
}

export interface SqlServerTableReaderOptions extends TableReaderOptions {
  /** Opens the runner (a connection of its own): MssqlTableRunner for the URL by default. */
  readonly runner?: () => Promise<TableRunner>;
}

/** The collation whose varchar holds UTF-8: text keys sort by its bytes (SQL Server 2019 and later). */
export const UTF8_COLLATION = 'Latin1_General_100_BIN2_UTF8';

/** SQL Server allows 2100 parameters a request: keys per readKeys statement stay well below. */
const PARAMETERS_PER_STATEMENT = 2000;

/** Error 3952: snapshot isolation is not allowed in this database. */
const SNAPSHOT_NOT_ALLOWED = 3952;

// ─── statements ──────────────────────────────────────────────────────────────────────────────────────────

/** The object `schema.table`, if any: its id, its names as the catalog spells them, what it is, whether CDC tracks it. */
export function tableStatement(schema: string, table: string): Statement {
  return {
    sql: [
      'SELECT o.object_id, s.name AS schema_name, o.name AS table_name, o.type_desc,',
      '  CAST(COALESCE(t.is_tracked_by_cdc, 0) AS int) AS tracked',
      'FROM sys.objects AS o',
      'JOIN sys.schemas AS s ON s.schema_id = o.schema_id',
      'LEFT JOIN sys.tables AS t ON t.object_id = o.object_id',
      'WHERE s.name = @schema AND o.name = @table AND o.parent_object_id = 0',
    ].join('\n'),
    params: [
      { name: 'schema', type: 'nvarchar', value: schema },
      { name: 'table', type: 'nvarchar', value: table },
    ],
  };
}

/** The table's columns in column order: base type (alias types resolved, as capture resolves them), computed or not, primary-key ordinal. */
export function columnsStatement(objectId: number): Statement {
  return {
    sql: [
      'SELECT c.column_id, c.name,',
      '  COALESCE(CASE WHEN ty.is_user_defined = 0 THEN ty.name END, bt.name, ty.name) AS type_name,',
      '  c.max_length, c.precision, c.scale, CAST(c.is_computed AS int) AS is_computed,',
      '  COALESCE(pk.key_ordinal, 0) AS key_ordinal',
      'FROM sys.columns AS c',
      'JOIN sys.types AS ty ON ty.user_type_id = c.user_type_id',
      'LEFT JOIN sys.types AS bt ON bt.user_type_id = c.system_type_id',
      'LEFT JOIN (',
      '  SELECT ic.column_id, ic.key_ordinal',
      '  FROM sys.indexes AS i',
      '  JOIN sys.index_columns AS ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id',
      '  WHERE i.object_id = @object AND i.is_primary_key = 1',
      ') AS pk ON pk.column_id = c.column_id',
      'WHERE c.object_id = @object',
      'ORDER BY c.column_id',
    ].join('\n'),
    params: [{ name: 'object', type: 'int', value: objectId }],
  };
}

/** The code page of the UTF-8 collation: 65001 where the server has it, NULL before SQL Server 2019. */
export function utf8CollationStatement(): Statement {
  return { sql: `SELECT COLLATIONPROPERTY(N'${UTF8_COLLATION}', 'CodePage') AS code_page`, params: [] };
}

/** Whether the database allows SNAPSHOT isolation (sys.databases.snapshot_isolation_state: 1 = ON). */
export function snapshotIsolationStatement(): Statement {
  return { sql: 'SELECT DB_NAME() AS database_name, snapshot_isolation_state AS state FROM sys.databases WHERE database_id = DB_ID()', params: [] };
}

/** The rows of the table's heap or clustered index, by the statistics sys.partitions keeps (not exact). */
export function estimateStatement(objectId: number): Statement {
  return {
    sql: 'SELECT CAST(COALESCE(SUM(p.rows), 0) AS bigint) AS n FROM sys.partitions AS p WHERE p.object_id = @object AND p.index_id IN (0, 1)',
    params: [{ name: 'object', type: 'int', value: objectId }],
  };
}

/** At most `limit` rows after `after` (from the first when null), in the neutral key order. */
export function chunkStatement(plan: ReadPlan, after: RowKey | null, limit: number): Statement {
  const params: Param[] = [{ name: 'limit', type: 'int', value: limit }];
  const bind = binder(params);
  const lines = [`SELECT TOP (@limit) ${plan.select}`, `FROM ${plan.table}`];
  if (after !== null) lines.push(`WHERE ${keyset(plan, after, bind)}`);
  lines.push(`ORDER BY ${plan.orderBy}`);
  return { sql: lines.join('\n'), params };
}

/** The rows of these keys (and maybe others their columns' equality finds: readKeys keeps exact matches only). */
export function keysStatement(plan: ReadPlan, keys: readonly RowKey[]): Statement {
  const params: Param[] = [];
  const bind = binder(params);
  const matches = keys.map((key) => {
    checkKey(plan, key);
    return `(${plan.keys.map((part, i) => part.lookup(key[i]!, bind)).join(' AND ')})`;
  });
  return { sql: [`SELECT ${plan.select}`, `FROM ${plan.table}`, `WHERE ${matches.join('\n  OR ')}`].join('\n'), params };
}

/** Each call binds one key text as the next parameter (`@k0`, `@k1`…) and returns its name. */
function binder(params: Param[]): (text: string) => string {
  let n = 0;
  return (text) => {
    const name = `k${n++}`;
    params.push({ name, type: 'nvarcharMax', value: text });
    return `@${name}`;
  };
}

/**
 * Key after `key`, spelled out column by column: `s1 >= b1 AND (s1 > b1 OR (s1 = b1 AND s2 > b2))` (the
 * leading `>=` is what lets SQL Server seek a range of the index when s1 is the column itself).
 */
function keyset(plan: ReadPlan, key: RowKey, bind: (text: string) => string): string {
  checkKey(plan, key);
  const last = plan.keys.length - 1;
  const nested = (i: number): string => {
    const part = plan.keys[i]!;
    if (i === last) return part.condition('>', key[i]!, bind);
    return `(${part.condition('>', key[i]!, bind)} OR (${part.condition('=', key[i]!, bind)} AND ${nested(i + 1)}))`;
  };
  if (last === 0) return nested(0);
  return `${plan.keys[0]!.condition('>=', key[0]!, bind)} AND ${nested(0)}`;
}

function checkKey(plan: ReadPlan, key: RowKey): void {
  if (key.length !== plan.keys.length || key.some((v) => typeof v !== 'string')) {
    throw new Error(`a key of ${plan.table} is ${plan.keys.length} texts; got ${JSON.stringify(key).slice(0, 80)}`);
  }
}

// ─── key columns ─────────────────────────────────────────────────────────────────────────────────────────

type Bind = (text: string) => string;

/** How one key column is sorted, and compared with a key text. */
export interface KeyPart {
  /** What ORDER BY sorts by. */
  readonly order: string;
  /** The column after (`>`), at (`=`), or at or after (`>=`) the key text, in the neutral order. */
  readonly condition: (op: '>' | '=' | '>=', text: string, bind: Bind) => string;
  /** The column's own equality with the text (its index finds the row); may find more than the text. */
  readonly lookup: (text: string, bind: Bind) => string;
  /** Sorted by the column itself, which its index holds in this order. */
  readonly indexed: boolean;
  /** What ORDER BY sorts by when another key column follows, if not `order` (values of one key text are equal there). */
  readonly groupOrder?: string;
}

/** What one described table's statements are made of. */
export interface ReadPlan {
  /** `[schema].[table]`. */
  readonly table: string;
  /** The projection of every column, as `[v0]`, `[v1]`… */
  readonly select: string;
  /** The columns as capture describes them, in the relation's order. */
  readonly columns: readonly CapturedColumn[];
  readonly keys: readonly KeyPart[];
  readonly orderBy: string;
  readonly objectId: number;
}

const ISO_T = (text: string): string => text.replace(' ', 'T');
/** Canonical timestamptz (`… +00`, UTC) as ISO 8601 with an offset, which datetimeoffset reads. */
const ISO_UTC = (text: string): string => `${ISO_T(text.replace(/\+00$/, ''))}+00:00`;

/** The UTF-8 bytes of a text expression, as varbinary (see the file comment). */
export function utf8Bytes(expression: string): string {
  return `CAST(CAST(CAST(${expression} AS nvarchar(max)) COLLATE ${UTF8_COLLATION} AS varchar(max)) AS varbinary(max))`;
}

/** The text of a uniqueidentifier expression in binary order (upper-case hex). */
function guidText(expression: string): string {
  return `CONVERT(char(36), ${expression}) COLLATE Latin1_General_BIN2`;
}

/** A key column sorted and compared as itself: `col op CONVERT(<type>, @key)`. */
function byValue(column: string, type: string, param: (text: string) => string): KeyPart {
  return {
    order: column,
    condition: (op, text, bind) => `${column} ${op} CONVERT(${type}, ${bind(param(text))})`,
    lookup: (text, bind) => `${column} = TRY_CONVERT(${type}, ${bind(param(text))})`,
    indexed: true,
  };
}

const HUNDRED_NS_PER_DAY = MICROS_PER_DAY * 10n;
const TIME_MAX = HUNDRED_NS_PER_DAY - 1n; // 23:59:59.9999999
const DATETIME2_MIN = -719_162n * HUNDRED_NS_PER_DAY; // 0001-01-01 in 100 ns since 1970
const DATETIME2_MAX = 2_932_897n * HUNDRED_NS_PER_DAY - 1n; // 9999-12-31 23:59:59.9999999

/** `hh:mm:ss.fffffff` of 100-ns units since midnight. */
function timeText7(units: bigint): string {
  const seconds = units / 10_000_000n;
  const fraction = units % 10_000_000n;
  const pad = (n: bigint): string => n.toString().padStart(2, '0');
  return `${pad(seconds / 3600n)}:${pad((seconds / 60n) % 60n)}:${pad(seconds % 60n)}.${fraction.toString().padStart(7, '0')}`;
}

/** `YYYY-MM-DDThh:mm:ss.fffffff` of 100-ns units since 1970-01-01. */
function dateTimeText7(units: bigint): string {
  let days = units / HUNDRED_NS_PER_DAY;
  let rest = units % HUNDRED_NS_PER_DAY;
  if (rest < 0n) {
    days -= 1n;
    rest += HUNDRED_NS_PER_DAY;
  }
  return `${daysToIsoDate(Number(days))}T${timeText7(rest)}`;
}

/**
 * A 7-digit time type: sorted by the column, compared in the domain of the canonical (microsecond) texts.
 * The stored values that canonicalText rounds (half to even) to R microseconds are 10R - d … 10R + d in
 * 100-ns units, d = 5 when R is even (both ties go to it), else 4.
 */
function roundedTime(column: string, type: string, kind: 'time' | 'timestamp' | 'timestamptz', columnInfo: ColumnInfo): KeyPart {
  const [min, max, text] =
    kind === 'time' ? [0n, TIME_MAX, timeText7] : kind === 'timestamp' ? [DATETIME2_MIN, DATETIME2_MAX, dateTimeText7] : [DATETIME2_MIN, DATETIME2_MAX, (u: bigint) => `${dateTimeText7(u)}+00:00`];
  const bounds = (key: string): { lo: string; hi: string } => {
    const micros = parseValue(key, columnInfo.kind);
    if (typeof micros !== 'bigint') throw new Error(`key column ${columnInfo.name}: ${JSON.stringify(key)} is not a ${kind} a SQL Server ${type} holds`);
    const d = micros % 2n === 0n ? 5n : 4n;
    const clamp = (u: bigint): bigint => (u < min ? min : u > max ? max : u);
    return { lo: text(clamp(micros * 10n - d)), hi: text(clamp(micros * 10n + d)) };
  };
  // The value rounded as canonicalText rounds it: the 7th digit d of the fraction (DATEPART's nanoseconds / 100
  // % 10) goes up to the next microsecond when d > 5, or d = 5 and the microsecond is odd; else down to 0.
  const ns = `DATEPART(nanosecond, ${column})`;
  const rounded = `DATEADD(nanosecond, CASE WHEN ${ns} / 100 % 10 > 5 OR (${ns} / 100 % 10 = 5 AND ${ns} / 1000 % 2 = 1) THEN 1000 - ${ns} % 1000 ELSE 0 - ${ns} % 1000 END, ${column})`;
  const groupOrder = `CASE WHEN ${column} > CONVERT(${type}, '${text(max - 5n)}') THEN ${column} ELSE ${rounded} END`;
  const between = (key: string, bind: Bind, convert: string): string => {
    const { lo, hi } = bounds(key);
    return `(${column} >= ${convert}(${type}, ${bind(lo)}) AND ${column} <= ${convert}(${type}, ${bind(hi)}))`;
  };
  return {
    order: column,
    condition: (op, key, bind) => {
      if (op === '=') return between(key, bind, 'CONVERT');
      const { lo, hi } = bounds(key);
      return op === '>' ? `${column} > CONVERT(${type}, ${bind(hi)})` : `${column} >= CONVERT(${type}, ${bind(lo)})`;
    },
    lookup: (key, bind) => between(key, bind, 'CONVERT'),
    indexed: true,
    groupOrder,
  };
}

const STRING_TYPES = new Set(['char', 'varchar', 'nchar', 'nvarchar', 'sysname']);
const BINARY_TYPES = new Set(['binary', 'varbinary']);

/** How a key column sorts (see the file comment); a string saying why when its type cannot be a key read in order. */
export function keyPart(column: CapturedColumn, info: ColumnInfo): KeyPart | string {
  const q = quoteName(column.name);
  const type = column.type.toLowerCase();
  const native = nativeTypeName(column);
  const same = (text: string): string => text;
  switch (info.kind.kind) {
    case 'boolean':
      return byValue(q, 'bit', (text) => (text === 't' ? '1' : text === 'f' ? '0' : text));
    case 'int16':
    case 'int32':
    case 'int64':
    case 'decimal':
    case 'float32':
    case 'float64':
      return byValue(q, native, same);
    case 'date':
      return byValue(q, 'date', same);
    case 'time':
      return column.scale >= 7 ? roundedTime(q, native, 'time', info) : byValue(q, native, same);
    case 'timestamp':
      if (type === 'datetime2' && column.scale >= 7) return roundedTime(q, native, 'timestamp', info);
      return byValue(q, native, ISO_T);
    case 'timestamptz':
      return column.scale >= 7 ? roundedTime(q, native, 'timestamptz', info) : byValue(q, native, ISO_UTC);
    case 'uuid':
      return {
        order: guidText(q),
        condition: (op, text, bind) => `${guidText(q)} ${op} ${guidText(`CONVERT(uniqueidentifier, ${bind(text)})`)}`,
        lookup: (text, bind) => `${q} = TRY_CONVERT(uniqueidentifier, ${bind(text)})`,
        indexed: false,
      };
    case 'bytes': {
      if (!BINARY_TYPES.has(type)) return `of type ${native}, which cannot be compared with a bound value`;
      const hex = (text: string): string => text.replace(/^\\x/, '');
      return {
        order: q,
        // Style 2: hex digits without 0x, from a character string (the key text made varchar first: hex is ASCII).
        condition: (op, text, bind) => `${q} ${op} CONVERT(${native}, CAST(${bind(hex(text))} AS varchar(max)), 2)`,
        lookup: (text, bind) => `${q} = TRY_CONVERT(${native}, CAST(${bind(hex(text))} AS varchar(max)), 2)`,
        indexed: true,
      };
    }
    case 'string':
      if (!STRING_TYPES.has(type)) return `of type ${native}, which cannot be part of an index`;
      return {
        order: utf8Bytes(q),
        condition: (op, text, bind) => `${utf8Bytes(q)} ${op} ${utf8Bytes(bind(text))}`,
        lookup: (text, bind) => `${q} = TRY_CAST(${bind(text)} AS ${native})`,
        indexed: false,
      };
    default:
      return `of type ${native}, which has no order shared between databases`;
  }
}

// ─── reading rows ────────────────────────────────────────────────────────────────────────────────────────

function num(value: unknown): number {
  return typeof value === 'number' ? value : Number(value);
}

/** A value as the projection gives it; a Date would mean a type the projection forgot to convert. */
function projected(value: unknown, column: string): ProjectedValue {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' || Buffer.isBuffer(value)) return value;
  throw new SitesyncError('SITESYNC_ERR_DECODE', `SQL Server returned a ${value instanceof Date ? 'Date' : typeof value} for column ${column} where the projection gives text, a number or binary`);
}

/** The columns the table has now (columnsStatement's rows). */
interface TableColumn extends CapturedColumn {
  readonly computed: boolean;
}

function readColumns(rows: readonly Row[]): TableColumn[] {
  return rows.map((row) => ({
    name: String(row.name),
    type: String(row.type_name).toLowerCase(),
    maxLength: num(row.max_length),
    precision: num(row.precision),
    scale: num(row.scale),
    keyOrdinal: num(row.key_ordinal ?? 0),
    computed: num(row.is_computed ?? 0) === 1,
  }));
}

// ─── the reader ──────────────────────────────────────────────────────────────────────────────────────────

export class SqlServerTableReader implements TableReader {
  private readonly plans = new WeakMap<TableShape, ReadPlan>();
  /** Consistent mode: the error that ended the snapshot's transaction. */
  private broken: unknown = null;
  /** Whether the server has the UTF-8 collation (asked once, when a text key first needs it). */
  private utf8: boolean | null = null;

  private constructor(
    private readonly options: SqlServerTableReaderOptions,
    private readonly runner: TableRunner,
  ) {}

  static async open(options: SqlServerTableReaderOptions): Promise<SqlServerTableReader> {
    let runner: TableRunner;
    try {
      runner = await (options.runner ?? (() => MssqlTableRunner.open(options.url)))();
    } catch (error) {
      throw describeReaderError(error, options);
    }
    try {
      if (options.consistent) {
        const [row] = await runner.query('snapshotIsolation', snapshotIsolationStatement());
        if (num(row?.state) !== 1) throw snapshotNotAllowed(options, row?.database_name === undefined ? null : String(row.database_name), null);
        await runner.beginSnapshot();
      }
    } catch (error) {
      await runner.close().catch(() => undefined);
      throw describeReaderError(error, options);
    }
    return new SqlServerTableReader(options, runner);
  }

  private async run(method: string, statement: Statement): Promise<Row[]> {
    if (this.broken !== null) {
      throw new SitesyncError(
        'SITESYNC_ERR_DATABASE_UNREACHABLE',
        `the consistent reader of site ${this.options.site} lost its snapshot when a read failed (${errorLine(this.broken)}); open a new reader`,
      );
    }
    try {
      return await this.runner.query(method, statement);
    } catch (error) {
      // A failed statement may have ended the SNAPSHOT transaction (a lost connection, a doomed transaction):
      // nothing read after it would be of the same point in time.
      if (this.options.consistent) this.broken = error;
      throw describeReaderError(error, this.options);
    }
  }

  async describe(schema: string, table: string): Promise<TableShape> {
    return (await this.describePlan(schema, table)).shape;
  }

  private async describePlan(schema: string, table: string): Promise<{ shape: TableShape; plan: ReadPlan }> {
    const name = `${schema}.${table}`;
    const where = `site ${this.options.site}`;
    const [found] = await this.run('table', tableStatement(schema, table));
    if (!found) {
      throw new SitesyncError(
        'SITESYNC_ERR_CONFIG',
        `table ${name} does not exist at ${where}, or its login may not see it; check the schema and table names, and GRANT SELECT ON ${quoteName(schema)}.${quoteName(table)} TO [<login>];`,
      );
    }
    if (String(found.type_desc) !== 'USER_TABLE') {
      throw new SitesyncError('SITESYNC_ERR_CONFIG', `${name} at ${where} is not a table (${String(found.type_desc).toLowerCase().replace(/_/g, ' ')}); only tables can be read by key`);
    }
    const objectId = num(found.object_id);
    const actualSchema = String(found.schema_name);
    const actualTable = String(found.table_name);
    const tableColumns = readColumns(await this.run('columns', columnsStatement(objectId)));
    // The newest capture instance's columns, as change-stream.ts describes a change of this table.
    let captured: CaptureInstance | null = null;
    if (num(found.tracked) === 1) {
      const rows = await this.catalogOrNull('captureInstances', captureInstancesStatement());
      // A login that may not read the cdc schema (a monitoring login, for verify) reads the table's columns.
      if (rows !== null) captured = readCaptureInstances(rows).filter((i) => i.schema === actualSchema && i.table === actualTable).sort(compareAge).at(-1) ?? null;
    }
    const byName = new Map(tableColumns.map((c) => [c.name, c]));
    const columns: CapturedColumn[] = captured ? captured.columns.map((c) => ({ ...c, keyOrdinal: byName.get(c.name)?.keyOrdinal ?? 0 })) : tableColumns;
    const keyed = tableColumns.filter((c) => c.keyOrdinal > 0).sort((a, b) => a.keyOrdinal - b.keyOrdinal);
    const qualified = `${quoteName(actualSchema)}.${quoteName(actualTable)}`;
    if (keyed.length === 0) {
      throw new SitesyncError(
        'SITESYNC_ERR_CONFIG',
        `table ${name} at ${where} has no primary key, so its rows cannot be read in key order or compared; add one (ALTER TABLE ${qualified} ADD CONSTRAINT ${quoteName(`PK_${actualTable}`)} PRIMARY KEY (…);)`,
      );
    }
    const infos: ColumnInfo[] = columns.map((c) => ({ name: c.name, kind: kindOf(c), native: nativeOf(c), key: c.keyOrdinal > 0 }));
    const keyColumns = keyed.map((k) => {
      const index = columns.findIndex((c) => c.name === k.name);
      if (index < 0) {
        throw new SitesyncError(
          'SITESYNC_ERR_CONFIG',
          `table ${name} at ${where}: primary key column ${k.name} is not captured by capture instance ${captured!.name}, so capture sends rows without it; capture the table with every key column (sys.sp_cdc_enable_table without a @captured_column_list that leaves it out)`,
        );
      }
      return index;
    });
    const keys = keyColumns.map((index) => {
      const part = keyPart(columns[index]!, infos[index]!);
      if (typeof part === 'string') {
        throw new SitesyncError(
          'SITESYNC_ERR_CONFIG',
          `table ${name} at ${where}: primary key column ${columns[index]!.name} is ${part}; give the table a primary key of numbers, text, dates and times, uniqueidentifier or binary to read it by key`,
        );
      }
      return part;
    });
    const textKeys = keyColumns.filter((index) => infos[index]!.kind.kind === 'string');
    if (textKeys.length > 0 && !(await this.hasUtf8())) {
      const column = columns[textKeys[0]!]!;
      throw new SitesyncError(
        'SITESYNC_ERR_CONFIG',
        `table ${name} at ${where}: primary key column ${column.name} is ${nativeTypeName(column)}, and text keys are read in the order of their UTF-8 bytes (the order every site shares), which needs a UTF-8 collation (${UTF8_COLLATION}: SQL Server 2019 or later, or Azure SQL); this server has none, so upgrade it to read this table by key`,
      );
    }
    const select = columns
      .map((c, i) => {
        const current = byName.get(c.name);
        return `${current === undefined || current.computed ? 'NULL' : projection(c)} AS [v${i}]`;
      })
      .join(', ');
    const shape: TableShape = { relation: { schema: actualSchema, table: actualTable, replicaIdentity: 'd', columns: infos } satisfies RelationInfo, keyColumns };
    const orderBy = keys.map((k, i) => (i < keys.length - 1 && k.groupOrder !== undefined ? k.groupOrder : k.order)).join(', ');
    const plan: ReadPlan = { table: qualified, select, columns, keys, orderBy, objectId };
    this.plans.set(shape, plan);
    return { shape, plan };
  }

  /** A catalog read whose refusal (error 229/230: no right on it) is an answer, null; it ends no transaction. */
  private async catalogOrNull(method: string, statement: Statement): Promise<Row[] | null> {
    if (this.broken !== null) return this.run(method, statement);
    try {
      return await this.runner.query(method, statement);
    } catch (error) {
      const numbers = errorNumbers(error);
      if (numbers.includes(229) || numbers.includes(230)) return null;
      if (this.options.consistent) this.broken = error;
      throw describeReaderError(error, this.options);
    }
  }

  private async hasUtf8(): Promise<boolean> {
    if (this.utf8 === null) {
      const [row] = await this.run('utf8Collation', utf8CollationStatement());
      this.utf8 = row?.code_page !== null && row?.code_page !== undefined && num(row.code_page) === 65001;
    }
    return this.utf8;
  }

  /** The plan of a shape this reader described; a shape from elsewhere is described again, and must match. */
  private async planFor(shape: TableShape): Promise<ReadPlan> {
    const known = this.plans.get(shape);
    if (known) return known;
    const { shape: current, plan } = await this.describePlan(shape.relation.schema, shape.relation.table);
    checkSameShape(shape, current, `site ${this.options.site}`);
    this.plans.set(shape, plan);
    return plan;
  }

  private image(plan: ReadPlan, row: Row): RowImage {
    return { values: plan.columns.map((c, i) => canonicalText(c, projected(row[`v${i}`], c.name))), unchanged: [] };
  }

  /**
   * Rows whose keys have one text (7-digit times within one microsecond) are one key: the first of them is
   * given, the others left out (the next chunk starts after that text anyway). So that a chunk shorter than
   * `limit` still means the end of the table, the read goes on after what it left out.
   */
  async readChunk(shape: TableShape, after: RowKey | null, limit: number): Promise<RowImage[]> {
    const plan = await this.planFor(shape);
    if (!Number.isSafeInteger(limit) || limit < 0) throw new Error(`limit must be a whole number of rows, not ${limit}`);
    const images: RowImage[] = [];
    let from = after;
    let last = after === null ? null : JSON.stringify(after);
    while (images.length < limit) {
      const want = Math.min(limit - images.length, 2_147_483_647);
      const rows = await this.run('readChunk', chunkStatement(plan, from, want));
      for (const row of rows) {
        const image = this.image(plan, row);
        from = rowKey(shape, image);
        const key = JSON.stringify(from);
        if (key === last) continue;
        last = key;
        images.push(image);
      }
      if (rows.length < want) break;
    }
    return images;
  }

  async readKeys(shape: TableShape, keys: readonly RowKey[]): Promise<RowImage[]> {
    const plan = await this.planFor(shape);
    // A lookup binds one or two parameters per key column.
    const perStatement = Math.max(1, Math.floor(PARAMETERS_PER_STATEMENT / (2 * plan.keys.length)));
    const wanted = new Set(keys.map((key) => JSON.stringify(key)));
    const found = new Map<string, RowImage>();
    for (let start = 0; start < keys.length; start += perStatement) {
      const rows = await this.run('readKeys', keysStatement(plan, keys.slice(start, start + perStatement)));
      for (const row of rows) {
        const image = this.image(plan, row);
        const key = JSON.stringify(rowKey(shape, image));
        // The columns' own equality may be wider than the text (a case-insensitive collation, trailing
        // spaces, 7-digit times rounding to one text): only rows whose key is a text asked for are that key.
        if (wanted.has(key)) found.set(key, image);
      }
    }
    return [...found.values()].sort((a, b) => compareKeys(shape, rowKey(shape, a), rowKey(shape, b)));
  }

  async estimateRows(shape: TableShape): Promise<number> {
    const plan = await this.planFor(shape);
    const [row] = await this.run('estimateRows', estimateStatement(plan.objectId));
    return Math.max(0, num(row?.n ?? 0));
  }

  async close(): Promise<void> {
    await this.runner.close().catch(() => undefined);
  }
}

/** The one line of a consistent reader at a database without ALLOW_SNAPSHOT_ISOLATION. */
function snapshotNotAllowed(options: TableReaderOptions, database: string | null, cause: unknown): SitesyncError {
  const db = database ?? (() => {
    try {
      return mssqlConfig(options.url).database ?? '<database>';
    } catch {
      return '<database>';
    }
  })();
  return new SitesyncError(
    'SITESYNC_ERR_CONFIG',
    `SQL Server of site ${options.site} (${redactUrl(options.url)}): sitesync verify reads each table at one point in time with SNAPSHOT isolation, which database ${db} does not allow; fix, as a db_owner: ALTER DATABASE ${quoteName(db)} SET ALLOW_SNAPSHOT_ISOLATION ON;`,
    cause === null ? undefined : { cause },
  );
}

/** A failure as the one line that says what to do; a missing right names the grant the reader needs. */
function describeReaderError(error: unknown, options: TableReaderOptions): Error {
  if (error instanceof SitesyncError) return error;
  const numbers = errorNumbers(error);
  if (numbers.includes(SNAPSHOT_NOT_ALLOWED)) return snapshotNotAllowed(options, null, error);
  if (numbers.includes(229) || numbers.includes(230)) {
    return new SitesyncError(
      'SITESYNC_ERR_PERMISSION',
      `SQL Server of site ${options.site} (${redactUrl(options.url)}): ${errorLine(error)}; the reader's login needs SELECT on the tables it reads (GRANT SELECT ON [schema].[table] TO [<login>];)`,
      { cause: error },
    );
  }
  return describeSqlServerError(error, options.url, options.site);
}

// ─── the mssql runner ────────────────────────────────────────────────────────────────────────────────────

function sqlType(driver: MssqlDriver, type: Param['type']): mssql.ISqlType | (() => mssql.ISqlType) {
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

/**
 * The reader's statements over `mssql`: a pool of one connection (a reader's reads are sequential, or queued),
 * connected at the first statement (capture opens its reader when it starts, and most sessions never read a
 * chunk), and for a consistent reader one transaction begun at SNAPSHOT isolation on it, rolled back at close.
 * RECORD=1 writes fixtures as the CDC reader's runner does (mssql-cdc-reader.ts).
 */
export class MssqlTableRunner implements TableRunner {
  private transaction: mssql.Transaction | null = null;
  private connecting: Promise<mssql.ConnectionPool> | null = null;

  private constructor(
    private readonly driver: MssqlDriver,
    private readonly pool: mssql.ConnectionPool,
  ) {}

  static async open(url: string): Promise<MssqlTableRunner> {
    const driver = await loadMssql();
    const pool = new driver.ConnectionPool({ ...mssqlConfig(url), pool: { min: 0, max: 1 } });
    pool.on('error', () => undefined); // a lost idle connection: the next query reports it
    return new MssqlTableRunner(driver, pool);
  }

  private connect(): Promise<mssql.ConnectionPool> {
    if (this.pool.connected) return Promise.resolve(this.pool);
    this.connecting ??= this.pool.connect().finally(() => (this.connecting = null));
    return this.connecting;
  }

  async beginSnapshot(): Promise<void> {
    const transaction = new this.driver.Transaction(await this.connect());
    await transaction.begin(this.driver.ISOLATION_LEVEL.SNAPSHOT);
    this.transaction = transaction;
  }

  async query(method: string, statement: Statement): Promise<Row[]> {
    const pool = await this.connect();
    const request = this.transaction ? new this.driver.Request(this.transaction) : pool.request();
    for (const p of statement.params) request.input(p.name, sqlType(this.driver, p.type), p.value);
    const result = await request.query(statement.sql);
    const rows = (result.recordset ?? []) as unknown as Row[];
    recordQuery(method, statement, rows);
    return rows;
  }

  async close(): Promise<void> {
    const transaction = this.transaction;
    this.transaction = null;
    await transaction?.rollback().catch(() => undefined);
    await this.pool.close().catch(() => undefined);
  }
}
