/**
 * Reads a MariaDB (or MySQL) table's existing rows by key (src/capture/table-reader.ts): what an online
 * snapshot sends and what `sitesync verify` compares.
 *
 * Same rows as capture: capture describes a column from its binlog table-map entry refined by
 * information_schema (mariadb-kinds.ts columnType) and turns zongji's value into canonical text
 * (mariadb-values.ts valueFormatter). Here the table-map entry is made from information_schema (the type
 * code, precision, scale, fraction digits, bits, character set the binlog would carry) and handed to the
 * same two functions, so kinds, native types and texts are capture's by construction. Values are read with
 * the binary protocol (prepared statements), whose forms are what those formatters take from zongji: FLOAT
 * and DOUBLE as their exact binary values (the text protocol prints a FLOAT rounded), DECIMAL and 64-bit
 * integers as exact strings, DATE/TIME/DATETIME/TIMESTAMP as strings built from their parts (TIMESTAMP in
 * the session's time zone, set to UTC, as zongji prints them), JSON as its text, binary strings and BIT as
 * bytes.
 *
 * Key order is the kind-neutral one (src/capture/key-order.ts): numbers, dates and times by the column
 * itself (the primary key's index serves it); text, ENUM and SET by their UTF-8 bytes (CONVERT to utf8mb4,
 * then BINARY: a binary comparison without PAD SPACE, whatever the column's collation); binary strings by
 * their bytes; UUID, INET4, INET6 and BIT by their text. A text key column costs a sort of what follows the
 * chunk's start (its index is in its own collation's order). Keyset conditions are spelled out
 * (`k1 >= ? AND (k1 > ? OR (k1 = ? AND k2 > ?))`), since MariaDB narrows an index range by the first form
 * and not by a row comparison.
 *
 * A consistent reader holds one `START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY` on one connection
 * from open to close (InnoDB tables only: MyISAM and Aria tables have no snapshot and show their latest rows).
 */
import type { Connection, ExecuteValues, FieldPacket, Pool, PoolConnection, PoolOptions, RowDataPacket } from 'mysql2/promise';
import mysql from 'mysql2/promise';
import { compareKeys } from '../../src/capture/key-order.ts';
import { checkSameShape, rowKey, type RowKey, type TableReader, type TableReaderOptions, type TableShape } from '../../src/capture/table-reader.ts';
import { SitesyncError } from '../../src/errors.ts';
import type { ColumnInfo, RelationInfo, RowImage, RowWriter } from '../../src/events/transaction.ts';
import { parseValue } from '../../src/events/value-parser.ts';
import { redactUrl } from '../../src/observability/logger.ts';
import type { BinlogColumn } from './binlog-reader.ts';
import { DEFAULT_BOOKKEEPING_DATABASE } from './bookkeeping.ts';
import { SYSTEM_SCHEMAS } from './transaction-grouper.ts';
import { describeMariaDbError, errorLine } from './mariadb-errors.ts';
import { parseCheckpoint } from './mariadb-positions.ts';
import { capturedKey, type RowWriterClock } from './row-writers.ts';
import { columnType, MariaDbType, type CatalogColumn, type MariaDbColumnType } from './mariadb-kinds.ts';
import { connectionOptions } from './mariadb-source.ts';
import { valueFormatter, type ValueFormatter } from './mariadb-values.ts';

/** Keys per readKeys statement, and the sizes a statement is padded to (few distinct prepared statements). */
const KEYS_PER_STATEMENT = 256;

/** How mysql2 hands values over: in the forms capture's formatters take (see the file comment). */
const VALUE_OPTIONS: PoolOptions = {
  dateStrings: true,
  supportBigNumbers: true,
  bigNumberStrings: true,
  decimalNumbers: false,
  jsonStrings: true,
  timezone: 'Z',
  multipleStatements: false,
};

/** The session every reader connection runs in: TIMESTAMP values printed in UTC, as zongji prints them. */
const SESSION = "SET time_zone = '+00:00'";

/** What the binlog's table map says of each information_schema DATA_TYPE: its type code (mariadb-kinds.ts). */
const T = MariaDbType;
const TYPE_CODES: Readonly<Record<string, number>> = {
  tinyint: T.TINY,
  bool: T.TINY,
  boolean: T.TINY,
  smallint: T.SHORT,
  mediumint: T.INT24,
  int: T.LONG,
  integer: T.LONG,
  bigint: T.LONGLONG,
  float: T.FLOAT,
  double: T.DOUBLE,
  'double precision': T.DOUBLE,
  real: T.DOUBLE,
  decimal: T.NEWDECIMAL,
  numeric: T.NEWDECIMAL,
  year: T.YEAR,
  date: T.DATE,
  time: T.TIME2,
  datetime: T.DATETIME2,
  timestamp: T.TIMESTAMP2,
  bit: T.BIT,
  enum: T.ENUM,
  set: T.SET,
  json: T.JSON,
  char: T.STRING,
  binary: T.STRING,
  varchar: T.VARCHAR,
  varbinary: T.VARCHAR,
  uuid: T.STRING,
  inet4: T.STRING,
  inet6: T.STRING,
  vector: T.VARCHAR,
  tinytext: T.BLOB,
  tinyblob: T.BLOB,
  text: T.BLOB,
  blob: T.BLOB,
  mediumtext: T.BLOB,
  mediumblob: T.BLOB,
  longtext: T.BLOB,
  longblob: T.BLOB,
  geometry: T.GEOMETRY,
  point: T.GEOMETRY,
  linestring: T.GEOMETRY,
  polygon: T.GEOMETRY,
  multipoint: T.GEOMETRY,
  multilinestring: T.GEOMETRY,
  multipolygon: T.GEOMETRY,
  geometrycollection: T.GEOMETRY,
  geomcollection: T.GEOMETRY,
};

/** The width of a TEXT or BLOB's length prefix in the table map: which of the four it is. */
const LENGTH_SIZES: Readonly<Record<string, number>> = { tinytext: 1, tinyblob: 1, text: 2, blob: 2, mediumtext: 3, mediumblob: 3, longtext: 4, longblob: 4 };

const NUMERIC_CODES = new Set<number>([T.DECIMAL, T.TINY, T.SHORT, T.LONG, T.FLOAT, T.DOUBLE, T.LONGLONG, T.INT24, T.YEAR, T.NEWDECIMAL]);

export interface MariaDbTableReaderOptions extends TableReaderOptions {
  /** This site's clock of local writes recorded by capture (connectors/mariadb/index.ts): what writersOnceRecorded waits on. */
  readonly rowWriters?: RowWriterClock;
}

/** How one key column is sorted and compared with a bound key text. */
interface KeyPart {
  /** The expression ORDER BY sorts by (table alias `t`). */
  readonly sort: string;
  /** A placeholder expression comparable with `sort`, and the parameter it takes for a key text. */
  readonly bind: string;
  readonly param: (text: string) => unknown;
  /**
   * A placeholder expression for readKeys' `IN`, comparable with the column itself so that the primary
   * key's index finds the row (a text by its own collation: readKeys then keeps only exact matches).
   */
  readonly lookup: string;
  /** Sorted by the column itself, which the primary key's index holds in this order. */
  readonly indexed: boolean;
}

interface Plan {
  readonly table: string;
  readonly select: string;
  readonly keys: readonly KeyPart[];
  readonly keySelect: string;
  readonly orderBy: string;
  readonly formatters: readonly ValueFormatter[];
  /** The first key column's index in the relation, when readChunk bounds its range (see there); else null. */
  readonly bounded: number | null;
  /** The catalog's per-column text for the digest, injective for the values of each column. */
  readonly digestParts: ReadonlyMap<string, string>;
}

interface CatalogRow extends RowDataPacket {
  name: string;
  columnType: string;
  dataType: string;
  numericPrecision: string | number | null;
  numericScale: string | number | null;
  datetimePrecision: string | number | null;
  characterMaximumLength: string | number | null;
  charset: string | null;
}

export class MariaDbTableReader implements TableReader {
  readonly digestKind = 'mariadb';
  private readonly plans = new WeakMap<TableShape, Plan>();
  /** Consistent mode: the error that ended the snapshot's transaction. */
  private broken: unknown = null;
  /** Pooled connections (mysql2's own objects, which outlive a PoolConnection wrapper) that ran SESSION. */
  private readonly prepared = new WeakSet<object>();

  private constructor(
    private readonly options: MariaDbTableReaderOptions,
    private readonly pool: Pool | null,
    private readonly connection: Connection | null,
  ) {}

  static async open(options: MariaDbTableReaderOptions): Promise<MariaDbTableReader> {
    const connection = { ...connectionOptions(options.url), ...VALUE_OPTIONS };
    if (!options.consistent) {
      const pool = mysql.createPool({ ...connection, connectionLimit: 3 });
      pool.on('connection', (c) => c.on('error', () => undefined)); // a lost idle connection: the next statement fails and says so
      return new MariaDbTableReader(options, pool, null);
    }
    let single: Connection | null = null;
    try {
      single = await mysql.createConnection(connection);
      single.on('error', () => undefined); // the statement in flight reports a lost connection
      await single.query(SESSION);
      await single.query('SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ');
      // The read view is made here, not at the first read (which a plain START TRANSACTION would leave it to).
      await single.query('START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY');
    } catch (error) {
      await single?.end().catch(() => undefined);
      throw describeError(error, options);
    }
    return new MariaDbTableReader(options, null, single);
  }

  /** A prepared statement (binary protocol: values in the forms of the file comment). */
  private async execute(sql: string, params: unknown[]): Promise<unknown[][]> {
    return (await this.run((c) => c.execute<RowDataPacket[][]>({ sql, rowsAsArray: true }, params as ExecuteValues[]))) as unknown[][];
  }

  /** A catalog query (text protocol; simple values). */
  private async catalog<T extends RowDataPacket>(sql: string, params: unknown[]): Promise<T[]> {
    return (await this.run((c) => c.query<T[]>(sql, params))) as T[];
  }

  /**
   * One statement on the consistent reader's connection, or on a pooled one that has run SESSION first: a
   * connection whose time zone is not UTC would print TIMESTAMPs in another zone, so one that cannot set
   * it is not used.
   */
  private async run<T>(statement: (connection: Connection) => Promise<[T, FieldPacket[]]>): Promise<T> {
    if (this.broken !== null) {
      throw new SitesyncError(
        'SITESYNC_ERR_DATABASE_UNREACHABLE',
        `the consistent reader of site ${this.options.site} lost its snapshot when a read failed (${errorLine(this.broken)}); open a new reader`,
      );
    }
    let pooled: PoolConnection | null = null;
    try {
      if (this.connection) return (await statement(this.connection))[0];
      pooled = await this.pool!.getConnection();
      if (!this.prepared.has(pooled.connection)) {
        await pooled.query(SESSION);
        this.prepared.add(pooled.connection);
      }
      return (await statement(pooled))[0];
    } catch (error) {
      // MariaDB ends the transaction on a deadlock or a lost connection, not on an ordinary error; a
      // connection that failed fatally is gone with its snapshot.
      if (this.connection && ((error as { fatal?: boolean }).fatal || (error as { errno?: number }).errno === 1213)) this.broken = error;
      throw describeError(error, this.options);
    } finally {
      pooled?.release();
    }
  }

  async listTables(): Promise<string[]> {
    const skipped = [...SYSTEM_SCHEMAS, DEFAULT_BOOKKEEPING_DATABASE];
    const rows = await this.catalog<RowDataPacket>(
      `SELECT t.TABLE_SCHEMA AS db, t.TABLE_NAME AS name FROM information_schema.TABLES t
        WHERE t.TABLE_TYPE = 'BASE TABLE' AND t.TABLE_SCHEMA NOT IN (${skipped.map(() => '?').join(', ')})
          AND EXISTS (SELECT 1 FROM information_schema.TABLE_CONSTRAINTS c
                       WHERE c.TABLE_SCHEMA = t.TABLE_SCHEMA AND c.TABLE_NAME = t.TABLE_NAME AND c.CONSTRAINT_TYPE = 'PRIMARY KEY')
        ORDER BY 1, 2`,
      skipped,
    );
    return rows.map((r) => `${String(r.db)}.${String(r.name)}`);
  }

  async describe(schema: string, table: string): Promise<TableShape> {
    return (await this.describePlan(schema, table)).shape;
  }

  private async describePlan(schema: string, table: string): Promise<{ shape: TableShape; plan: Plan }> {
    const name = `${schema}.${table}`;
    const where = `site ${this.options.site}`;
    const [info] = await this.catalog<RowDataPacket>('SELECT TABLE_TYPE AS type FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?', [schema, table]);
    if (!info) throw new SitesyncError('SITESYNC_ERR_CONFIG', `table ${name} does not exist at ${where}, or its user may not see it; check the database and table names (case matters) and GRANT SELECT on it`);
    if (!/TABLE/.test(String(info.type))) {
      throw new SitesyncError('SITESYNC_ERR_CONFIG', `${name} at ${where} is not a table (${String(info.type).toLowerCase()}); only tables can be read by key`);
    }
    const rows = await this.catalog<CatalogRow>(
      `SELECT COLUMN_NAME AS name, COLUMN_TYPE AS columnType, DATA_TYPE AS dataType, NUMERIC_PRECISION AS numericPrecision, NUMERIC_SCALE AS numericScale,
              DATETIME_PRECISION AS datetimePrecision, CHARACTER_MAXIMUM_LENGTH AS characterMaximumLength, CHARACTER_SET_NAME AS charset
         FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`,
      [schema, table],
    );
    let checks: RowDataPacket[] = [];
    try {
      checks = await this.catalog<RowDataPacket>('SELECT CHECK_CLAUSE AS clause FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?', [schema, table]);
    } catch (error) {
      if (this.broken !== null) throw error;
      // MariaDB before 10.3.10 has no CHECK_CONSTRAINTS: JSON columns then read as strings, as capture reads them.
    }
    const primary = await this.catalog<RowDataPacket>(
      `SELECT COLUMN_NAME AS name FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX`,
      [schema, table],
    );
    if (primary.length === 0) {
      throw new SitesyncError(
        'SITESYNC_ERR_CONFIG',
        `table ${name} at ${where} has no primary key, so its rows cannot be read in key order or compared; add one (ALTER TABLE ${quoteIdent(schema)}.${quoteIdent(table)} ADD PRIMARY KEY (…))`,
      );
    }
    // The same test capture makes (mariadb-source.ts loadCatalog): MariaDB's JSON is a LONGTEXT with this check.
    const clauses = new Set(checks.map((row) => String(row.clause).replace(/\s+/g, '')));
    const keyNames = primary.map((row) => String(row.name));
    const types: MariaDbColumnType[] = [];
    const columns: ColumnInfo[] = [];
    for (const row of rows) {
      const catalog = catalogColumn(row, clauses);
      const type = columnType(binlogColumn(row), catalog);
      types.push(type);
      columns.push({ name: catalog.name, kind: type.kind, native: type.native, key: keyNames.includes(catalog.name) });
    }
    const keyColumns = keyNames.map((key) => columns.findIndex((c) => c.name === key));
    const keys = keyColumns.map((index) => {
      const column = columns[index]!;
      const part = keyPart(column, types[index]!);
      if (part === null) {
        throw new SitesyncError(
          'SITESYNC_ERR_CONFIG',
          `table ${name} at ${where}: primary key column ${column.name} is of type ${column.native.name}, which has no order shared between databases; give the table a primary key of numbers, text, dates or binary strings to read it by key`,
        );
      }
      return part;
    });
    const quoted = columns.map((c) => `t.${quoteIdent(c.name)}`);
    const shape: TableShape = {
      relation: { schema, table, replicaIdentity: 'd', columns } satisfies RelationInfo,
      keyColumns,
    };
    const plan: Plan = {
      table: `${quoteIdent(schema)}.${quoteIdent(table)}`,
      select: quoted.join(', '),
      keys,
      keySelect: keyColumns.map((i) => quoted[i]!).join(', '),
      orderBy: keys.map((k) => k.sort).join(', '),
      formatters: types.map((type, i) => valueFormatter(type, () => `column ${columns[i]!.name} of ${name}`)),
      bounded: keys[0]!.indexed && keys.some((k) => !k.indexed) ? keyColumns[0]! : null,
      digestParts: new Map(columns.map((c, i) => [c.name, digestPart(quoted[i]!, types[i]!)])),
    };
    this.plans.set(shape, plan);
    return { shape, plan };
  }

  /** The plan of a shape this reader described; a shape from elsewhere is described again, and must match. */
  private async planFor(shape: TableShape): Promise<Plan> {
    const known = this.plans.get(shape);
    if (known) return known;
    const { shape: current, plan } = await this.describePlan(shape.relation.schema, shape.relation.table);
    checkSameShape(shape, current, `site ${this.options.site}`);
    this.plans.set(shape, plan);
    return plan;
  }

  private image(plan: Plan, row: unknown[]): RowImage {
    return { values: plan.formatters.map((format, i) => format(row[i])), unchanged: [] };
  }

  /**
   * A key whose first column is in index order but a later one is not (a number, then a text) is sorted by
   * MariaDB, which has no incremental sort: it would sort every row after the chunk's start, for each chunk.
   * So the range is bounded first, from the index alone: the first `limit` rows after `after` all have a
   * first column at most the `limit`-th value of it above after's (those rows are all after `after`), or
   * the first chunk's `limit`-th value. The sort is then of about one chunk.
   */
  async readChunk(shape: TableShape, after: RowKey | null, limit: number): Promise<RowImage[]> {
    const plan = await this.planFor(shape);
    checkCount(limit, 'limit');
    if (limit === 0) return [];
    const params: unknown[] = [];
    const conditions = after === null ? [] : [beyond(plan, after, '>', params)];
    if (plan.bounded !== null) {
      const first = plan.keys[0]!;
      const boundParams: unknown[] = [];
      const above = after === null ? 'TRUE' : `${first.sort} > ${first.bind}`;
      if (after !== null) boundParams.push(first.param(after[0]!));
      boundParams.push(limit - 1);
      const [bound] = await this.execute(`SELECT ${first.sort} FROM ${plan.table} t WHERE ${above} ORDER BY ${first.sort} LIMIT 1 OFFSET ?`, boundParams);
      if (bound) {
        conditions.push(`${first.sort} <= ${first.bind}`);
        params.push(first.param(plan.formatters[plan.bounded]!(bound[0])!));
      }
    }
    params.push(limit);
    const where = conditions.length === 0 ? 'TRUE' : conditions.join(' AND ');
    const rows = await this.execute(`SELECT ${plan.select} FROM ${plan.table} t WHERE ${where} ORDER BY ${plan.orderBy} LIMIT ?`, params);
    return rows.map((row) => this.image(plan, row));
  }

  /**
   * A chunk with each row's last writer as this site's `row_writers` records it (the sink's writes at once, this
   * site's own through capture, shortly after): a row no entry names, or read before the table exists, has
   * none. The read itself never fails for a writer.
   */
  async readChunkWithWriters(shape: TableShape, after: RowKey | null, limit: number): Promise<{ readonly rows: RowImage[]; readonly writers: (RowWriter | null)[] }> {
    const rows = await this.readChunk(shape, after, limit);
    return { rows, writers: await this.writersOf(shape, rows) };
  }

  /**
   * The writers of a chunk once this site's capture has recorded every local write before its marker
   * (`checkpoint`): a local write committed just before the marker may still be on its way to row_writers
   * when the chunk is read ahead. Capture records while the stream waits for the chunk, so this wait ends.
   */
  async writersOnceRecorded(shape: TableShape, rows: readonly RowImage[], checkpoint: string): Promise<(RowWriter | null)[]> {
    await this.options.rowWriters?.waitThrough(parseCheckpoint(checkpoint));
    return this.writersOf(shape, rows);
  }

  private async writersOf(shape: TableShape, rows: readonly RowImage[]): Promise<(RowWriter | null)[]> {
    // A consistent reader's failed statement would end its snapshot: writers are read by pooled readers only.
    if (this.connection !== null) return rows.map(() => null);
    const keys = rows.map((row) => capturedKey(shape.relation, row));
    const byHash = new Map<string, RowWriter>();
    const hashes = keys.flatMap((k) => (k === null ? [] : [k.hash]));
    const table = `${quoteIdent(DEFAULT_BOOKKEEPING_DATABASE)}.${quoteIdent('row_writers')}`;
    try {
      for (let start = 0; start < hashes.length; start += KEYS_PER_STATEMENT) {
        const batch = hashes.slice(start, start + KEYS_PER_STATEMENT);
        const found = await this.execute(
          `SELECT HEX(key_hash), site, commit_time_micros FROM ${table} WHERE table_name = ? AND key_hash IN (${batch.map(() => '?').join(', ')})`,
          [`${shape.relation.schema}.${shape.relation.table}`, ...batch],
        );
        for (const [hash, site, micros] of found as [string, string, string | number | bigint][]) byHash.set(String(hash).toLowerCase(), { site: String(site), commitTimeMicros: BigInt(micros) });
      }
    } catch {
      return rows.map(() => null); // no row_writers yet, or not readable by this user
    }
    return keys.map((k) => (k === null ? null : (byHash.get(k.hash.toString('hex')) ?? null)));
  }

  async readKeys(shape: TableShape, keys: readonly RowKey[]): Promise<RowImage[]> {
    const plan = await this.planFor(shape);
    const found: RowImage[] = [];
    for (let start = 0; start < keys.length; start += KEYS_PER_STATEMENT) {
      const batch = keys.slice(start, start + KEYS_PER_STATEMENT);
      // Padded to a power of two with its last key (a key twice in IN is one key): a handful of prepared
      // statements per table, whatever the number of keys asked for.
      let size = 1;
      while (size < batch.length) size *= 2;
      const padded = [...batch, ...Array<RowKey>(size - batch.length).fill(batch[batch.length - 1]!)];
      const params: unknown[] = [];
      const tuples = padded.map((key) => {
        checkKey(plan, key);
        return `(${plan.keys.map((part, i) => {
          params.push(part.param(key[i]!));
          return part.lookup;
        }).join(', ')})`;
      });
      // By the columns themselves, so that the primary key's index finds each row.
      const columns = shape.keyColumns.map((i) => `t.${quoteIdent(shape.relation.columns[i]!.name)}`).join(', ');
      const rows = await this.execute(`SELECT ${plan.select} FROM ${plan.table} t WHERE (${columns}) IN (${tuples.join(', ')})`, params);
      for (const row of rows) found.push(this.image(plan, row));
    }
    // The columns' own equality may be wider than the same text (a case-insensitive collation finds 'Abc'
    // for 'abc', PAD SPACE 'a ' for 'a'): only rows whose key is one of the texts asked for are that key.
    // A key asked for in two statements is found twice, and given once.
    const wanted = new Set(keys.map((key) => JSON.stringify(key)));
    const rows = new Map<string, RowImage>();
    for (const row of found) {
      const key = JSON.stringify(rowKey(shape, row));
      if (wanted.has(key)) rows.set(key, row);
    }
    return [...rows.values()].sort((a, b) => compareKeys(shape, rowKey(shape, a), rowKey(shape, b)));
  }

  async estimateRows(shape: TableShape): Promise<number> {
    const [row] = await this.catalog<RowDataPacket>('SELECT TABLE_ROWS AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?', [
      shape.relation.schema,
      shape.relation.table,
    ]);
    return Math.max(0, Number(row?.n ?? 0));
  }

  /**
   * Rows with a key in (from, to], and an order-independent digest of them: for each row, the MD5 of its key
   * columns and then `columns`, each as `length:text` or `-` for NULL (so NULL, '' and 'NULL' all differ),
   * whose first 64 bits are summed as a DECIMAL over the rows (exact; no sort). The key is in every row's
   * text so that values swapped between rows change the digest too. The texts are MariaDB's own (FLOAT
   * widened to DOUBLE, which MariaDB prints exactly; binary values in hex): comparable between servers of
   * one version.
   */
  async rangeDigest(shape: TableShape, columns: readonly string[], from: RowKey | null, to: RowKey | null): Promise<{ readonly rows: number; readonly digest: string }> {
    const plan = await this.planFor(shape);
    const keyNames = shape.keyColumns.map((i) => shape.relation.columns[i]!.name);
    const parts = [...keyNames, ...columns].map((name) => {
      const part = plan.digestParts.get(name);
      if (part === undefined) throw new SitesyncError('SITESYNC_ERR_CONFIG', `column ${name} is not a column of ${shape.relation.schema}.${shape.relation.table} at site ${this.options.site}`);
      return part;
    });
    const params: unknown[] = [];
    const where = range(plan, from, to, params);
    // The first 64 bits of each MD5, read as an unsigned number and summed exactly.
    const [row] = await this.execute(
      `SELECT COUNT(*), CAST(COALESCE(SUM(CAST(CONV(LEFT(h, 16), 16, 10) AS DECIMAL(20, 0))), 0) AS CHAR)
         FROM (SELECT MD5(CONCAT(${parts.join(", '|', ")})) AS h FROM ${plan.table} t WHERE ${where}) AS r`,
      params,
    );
    return { rows: Number(row![0]), digest: String(row![1]) };
  }

  async keyAt(shape: TableShape, from: RowKey | null, to: RowKey | null, offset: number): Promise<RowKey | null> {
    const plan = await this.planFor(shape);
    const params: unknown[] = [];
    const where = range(plan, from, to, params);
    params.push(checkCount(offset, 'offset'));
    const [row] = await this.execute(`SELECT ${plan.keySelect} FROM ${plan.table} t WHERE ${where} ORDER BY ${plan.orderBy} LIMIT 1 OFFSET ?`, params);
    if (!row) return null;
    return shape.keyColumns.map((index, i) => plan.formatters[index]!(row[i])!);
  }

  async close(): Promise<void> {
    if (this.connection) {
      await this.connection.query('ROLLBACK').catch(() => undefined);
      await this.connection.end().catch(() => undefined);
    }
    if (this.pool) await this.pool.end().catch(() => undefined);
  }
}

/** The information_schema row as capture's CatalogColumn. */
function catalogColumn(row: CatalogRow, jsonChecks: ReadonlySet<string>): CatalogColumn {
  const name = String(row.name);
  return {
    name,
    columnType: String(row.columnType),
    dataType: String(row.dataType),
    numericPrecision: numberOrNull(row.numericPrecision),
    numericScale: numberOrNull(row.numericScale),
    datetimePrecision: numberOrNull(row.datetimePrecision),
    characterMaximumLength: numberOrNull(row.characterMaximumLength),
    json: jsonChecks.has(`json_valid(\`${name.replace(/`/g, '``')}\`)`),
  };
}

/** The table-map entry the binlog would carry for this column (binlog-reader.ts BinlogColumn), from the catalog. */
function binlogColumn(row: CatalogRow): BinlogColumn {
  const dataType = String(row.dataType).toLowerCase();
  const typeCode = TYPE_CODES[dataType] ?? T.STRING;
  const metadata: Record<string, number> = {};
  const precision = numberOrNull(row.numericPrecision);
  const scale = numberOrNull(row.numericScale);
  const fraction = numberOrNull(row.datetimePrecision);
  if (typeCode === T.NEWDECIMAL && precision !== null) {
    metadata.precision = precision;
    metadata.decimals = scale ?? 0;
  }
  if ((typeCode === T.TIME2 || typeCode === T.DATETIME2 || typeCode === T.TIMESTAMP2) && fraction !== null) metadata.decimals = fraction;
  if (typeCode === T.BIT && precision !== null) metadata.bits = precision;
  if (typeCode === T.BLOB) metadata.length_size = LENGTH_SIZES[dataType] ?? 4;
  const columnType = String(row.columnType).toLowerCase();
  return {
    name: String(row.name),
    typeCode,
    metadata,
    unsigned: NUMERIC_CODES.has(typeCode) ? /\bunsigned\b/.test(columnType) : null,
    charset: row.charset === null || row.charset === undefined || row.charset === 'binary' ? null : String(row.charset),
    columnType,
    members: null,
  };
}

/** How a key column sorts (see the file comment); null for a type that cannot be a key read in order. */
function keyPart(column: ColumnInfo, type: MariaDbColumnType): KeyPart | null {
  const q = `t.${quoteIdent(column.name)}`;
  const asText = (text: string): string => text;
  const asBinary = `CAST(? AS BINARY)`;
  switch (type.shape) {
    case 'integer':
      return byValue(q, /\bunsigned\b/.test(type.native.name) ? 'CAST(? AS UNSIGNED)' : 'CAST(? AS SIGNED)', asText);
    case 'boolean':
      // t and f are 1 and 0; a TINYINT(1) holding another number travels as that number.
      return byValue(q, 'CAST(? AS SIGNED)', (text) => (text === 't' ? '1' : text === 'f' ? '0' : text));
    case 'year':
      return byValue(q, 'CAST(? AS SIGNED)', asText);
    case 'decimal': {
      const kind = column.kind;
      const precision = kind.kind === 'decimal' && kind.precision !== null ? kind.precision : 65;
      const scale = kind.kind === 'decimal' && kind.scale !== null ? Math.max(0, kind.scale) : 30;
      return byValue(q, `CAST(? AS DECIMAL(${precision}, ${scale}))`, asText);
    }
    case 'float32':
    case 'float64': {
      // Bound as the exact binary value (a double, which holds every float32): a FLOAT column compares as
      // a double, so the text 0.1 of a FLOAT must be bound as the float32 nearest 0.1, not the double.
      const kind = column.kind;
      return byValue(q, '?', (text) => parseValue(text, kind));
    }
    case 'date':
      return byValue(q, 'CAST(? AS DATE)', asText);
    case 'time':
      return byValue(q, 'CAST(? AS TIME(6))', asText);
    case 'datetime':
      return byValue(q, 'CAST(? AS DATETIME(6))', asText);
    case 'timestamp':
      // In the session's UTC, a TIMESTAMP compares as the DATETIME its canonical text spells without +00.
      return byValue(q, 'CAST(? AS DATETIME(6))', (text) => text.replace(/\+00$/, ''));
    case 'text':
    case 'enum':
    case 'set':
    case 'json':
      return { sort: `CAST(CONVERT(${q} USING utf8mb4) AS BINARY)`, bind: asBinary, param: asText, lookup: '?', indexed: false };
    case 'bytes':
      // VARBINARY and BLOB compare bytes without padding; BINARY(n) values are all n bytes long.
      return byValue(q, 'UNHEX(?)', (text) => text.slice(2));
    case 'uuid':
    case 'inet4':
    case 'inet6':
      return { sort: `CAST(CAST(${q} AS CHAR CHARACTER SET utf8mb4) AS BINARY)`, bind: asBinary, param: asText, lookup: '?', indexed: false };
    case 'bit':
      return { sort: `CAST(LPAD(BIN(${q}), ${type.width ?? 1}, '0') AS BINARY)`, bind: asBinary, param: asText, lookup: 'CAST(CONV(?, 2, 10) AS UNSIGNED)', indexed: false };
    case 'geometry':
    case 'hex':
      return null;
  }
}

/** A key column whose own order is the neutral one: sorted and compared as itself. */
function byValue(q: string, bind: string, param: (text: string) => unknown): KeyPart {
  return { sort: q, bind, param, lookup: bind, indexed: true };
}

/** One column's text in the digest: `length:text`, or `-` for NULL. */
function digestPart(q: string, type: MariaDbColumnType): string {
  let text: string;
  switch (type.shape) {
    case 'bytes':
    case 'bit':
    case 'hex':
    case 'geometry':
      text = `HEX(${q})`;
      break;
    case 'float32':
    case 'float64':
      // A FLOAT prints rounded to about six digits; widened to a DOUBLE it prints exactly.
      text = `CAST(${q} AS DOUBLE)`;
      break;
    case 'text':
    case 'enum':
    case 'set':
    case 'json':
      text = `CONVERT(${q} USING utf8mb4)`;
      break;
    default:
      text = `CAST(${q} AS CHAR CHARACTER SET utf8mb4)`;
  }
  return `IF(${q} IS NULL, '-', CONCAT(CHAR_LENGTH(${text}), ':', ${text}))`;
}

function range(plan: Plan, from: RowKey | null, to: RowKey | null, params: unknown[]): string {
  const conditions: string[] = [];
  if (from !== null) conditions.push(beyond(plan, from, '>', params));
  if (to !== null) conditions.push(beyond(plan, to, '<=', params));
  return conditions.length === 0 ? 'TRUE' : conditions.join(' AND ');
}

/**
 * Key after (`>`) or at most (`<=`) `key`, spelled out column by column:
 * `s1 >= p1 AND (s1 > p1 OR (s1 = p1 AND s2 > p2))` — the leading `s1 >= p1` (or `<=`) is what lets MariaDB
 * scan only a range of the primary key's index when s1 is the column itself.
 */
function beyond(plan: Plan, key: RowKey, op: '>' | '<=', params: unknown[]): string {
  checkKey(plan, key);
  const strict = op === '>' ? '>' : '<';
  const bound = (i: number): string => {
    params.push(plan.keys[i]!.param(key[i]!));
    return plan.keys[i]!.bind;
  };
  const last = plan.keys.length - 1;
  const nested = (i: number): string => {
    const sort = plan.keys[i]!.sort;
    if (i === last) return `${sort} ${op} ${bound(i)}`;
    const head = `${sort} ${strict} ${bound(i)}`;
    const equal = `${sort} = ${bound(i)}`;
    return `(${head} OR (${equal} AND ${nested(i + 1)}))`;
  };
  if (last === 0) return nested(0);
  const first = plan.keys[0]!;
  const lead = `${first.sort} ${op === '>' ? '>=' : '<='} ${bound(0)}`;
  return `${lead} AND ${nested(0)}`;
}

function checkKey(plan: Plan, key: RowKey): void {
  if (key.length !== plan.keys.length || key.some((v) => typeof v !== 'string')) {
    throw new Error(`a key of ${plan.table} is ${plan.keys.length} texts; got ${JSON.stringify(key).slice(0, 80)}`);
  }
}

function checkCount(n: number, what: string): number {
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${what} must be a whole number of rows, not ${n}`);
  return n;
}

function numberOrNull(value: unknown): number | null {
  return value === null || value === undefined ? null : Number(value);
}

function quoteIdent(name: string): string {
  return `\`${name.replace(/`/g, '``')}\``;
}

/** A failure as the one line that says what to do; a missing right names the grant the reader needs. */
function describeError(error: unknown, options: TableReaderOptions): Error {
  const errno = (error as { errno?: number })?.errno;
  if (errno === 1142 || errno === 1143 || errno === 1044) {
    return new SitesyncError(
      'SITESYNC_ERR_PERMISSION',
      `MariaDB of site ${options.site} (${redactUrl(options.url)}): ${errorLine(error)}; the reader's user needs SELECT on the tables it reads (GRANT SELECT ON db.table TO it)`,
      { cause: error },
    );
  }
  return describeMariaDbError(error, options.url, options.site);
}

