/**
 * Reads an Oracle table's existing rows by key (src/capture/table-reader.ts): what an online snapshot sends and
 * what `sitesync verify` compares.
 *
 * Same rows as capture. A table is described by the statement capture describes it with (ALL_TAB_COLS and the
 * primary key: oracledb-logminer-reader.ts columnsStatement/readColumns), its relation is capture's (the
 * non-LOB columns, kinds and native types by oracle-kinds.ts kindOf/nativeOf), and every value is selected as
 * its Oracle text form — the text SQL_REDO holds under the session formats both pin (sessionSetupStatement) —
 * and turned into canonical text by the function capture uses (oracle-kinds.ts canonicalText):
 *   NUMBER, FLOAT        TO_CHAR(c, 'TM9') (shortest text, '.' pinned as the decimal character)
 *   DATE                 TO_CHAR(c, 'YYYY-MM-DD HH24:MI:SS')
 *   TIMESTAMP[(n)]       TO_CHAR(c, 'YYYY-MM-DD HH24:MI:SS.FF9'); WITH TIME ZONE adds ' TZH:TZM'; WITH LOCAL
 *                        TIME ZONE prints in the session's zone, pinned to UTC
 *   INTERVAL             TO_CHAR(c)
 *   BINARY_FLOAT/DOUBLE  the IEEE value itself (the driver gives it exactly; written as 'Inf', '-Inf', 'Nan' or
 *                        the shortest decimal, which canonicalText reads back to the same bits)
 *   RAW, LONG RAW        the bytes (as hex, as HEXTORAW's argument in SQL_REDO)
 *   character types      the text itself (CHAR with its padding, as SQL_REDO has it)
 *   ROWID, UROWID        CAST(c AS VARCHAR2(4000))
 * Columns of other types (XMLTYPE, JSON, SDO_GEOMETRY, object types, BFILE, BOOLEAN) are refused with one line
 * when the table is described: capture has no canonical text for them either.
 *
 * Key order is the kind-neutral one (src/capture/key-order.ts). The session pins NLS_SORT = BINARY and
 * NLS_COMP = BINARY, so that ORDER BY the key columns themselves — which the primary key's index serves, one
 * index range scan per chunk — is: NUMBER, FLOAT, BINARY_FLOAT/DOUBLE, DATE and TIMESTAMP by value (Oracle's
 * order is key-order's: NaN above Infinity, -0 = 0, a TIMESTAMP WITH [LOCAL] TIME ZONE by its instant), RAW by
 * its bytes (a prefix first), CHAR and VARCHAR2 by their bytes in the database character set. Those bytes are
 * UTF-8's, and so their order key-order's, only when NLS_CHARACTERSET is AL32UTF8: a table with a character key
 * column in a database of another character set (UTF8, which is CESU-8 and sorts supplementary characters as
 * UTF-16 does; a single-byte set) is refused with one line. NCHAR and NVARCHAR2 are held in the national
 * character set (AL16UTF16: UTF-16 order, which puts U+10000.. below U+E000..U+FFFF), so a national key column
 * is sorted and compared as TO_CHAR(c): its text in the database character set (AL32UTF8, lossless), by its
 * bytes. That costs a sort of what follows the chunk's start (the index is in UTF-16 order). NLSSORT(c,
 * 'NLS_SORT=BINARY') would give the same orders, but no index serves it. INTERVAL keys are refused (key-order
 * compares intervals by their text, Oracle by value), as are LONG, LOB and ROWID keys (none can be one anyway).
 * Keyset conditions are spelled out (`k1 >= :a AND (k1 > :a OR (k1 = :b AND k2 > :c))`): Oracle has no row
 * comparison but equality.
 *
 * Consistency. A reader opened `consistent` (verify) holds one connection whose first statement is SET
 * TRANSACTION READ ONLY: every query of the transaction sees the database as of its start (Oracle's
 * transaction-level read consistency), with no grant beyond SELECT (AS OF SCN would need FLASHBACK on each
 * table), until close() rolls it back. A read older than the undo Oracle keeps fails with ORA-01555 (snapshot
 * too old: raise UNDO_RETENTION for long verifies); a lost connection loses the snapshot, and the reader then
 * refuses every read rather than silently reading another point in time. Otherwise (snapshots) each query
 * sees the latest committed rows, on one connection opened on first use and again after it is lost.
 *
 * estimateRows is ALL_TABLES.NUM_ROWS (the optimizer statistics; 0 when the table was never analysed).
 *
 * What touches the database is `OracleTableDatabase`: OracledbTableDatabase over `oracledb` (Thin mode) in
 * production, whose statements are built by the exported pure functions below (checked as text in
 * test/unit/oracle-snapshot.test.ts); test/helpers/oracle-simulator.ts implements the same interface over the
 * simulated tables, evaluating a RowQuery with Oracle's orders, so that the reader is proven above it.
 */
import type * as oracledb from 'oracledb';
import { compareKeys } from '../../src/capture/key-order.ts';
import { checkSameShape, rowKey, type RowKey, type TableReader, type TableReaderOptions, type TableShape } from '../../src/capture/table-reader.ts';
import { DecodeError, SitesyncError } from '../../src/errors.ts';
import type { ColumnInfo, RelationInfo, RowImage } from '../../src/events/transaction.ts';
import { ValueFormatError } from '../../src/events/value-parser.ts';
import type { OracleColumn } from './logminer-reader.ts';
import { describeOracleError, errorLine, isConnectionLoss } from './oracle-errors.ts';
import { canonicalText, isLob, kindOf, nativeOf, nativeTypeName, oracleText } from './oracle-kinds.ts';
import { oracledbConfig } from './oracledb-connection.ts';
import { loadOracledb, type OracledbDriver } from './oracledb-driver.ts';
import { columnsStatement, readColumns, sessionSetupStatement } from './oracledb-logminer-reader.ts';

// ─── what the reader asks of a database ──────────────────────────────────────────────────────────────────

/** How one key column is sorted and compared (see the file comment). */
export interface SortKey {
  readonly column: OracleColumn;
  /**
   * 'column': the column itself, under NLS_SORT = BINARY; 'to_char': TO_CHAR(column), a national character
   * column's text in the database character set, by its bytes.
   */
  readonly by: 'column' | 'to_char';
}

/** One SELECT of a table's rows; values of keys are Oracle text forms (oracle-kinds.ts oracleText). */
export interface RowQuery {
  readonly owner: string;
  readonly table: string;
  /** The select list, in order. */
  readonly columns: readonly OracleColumn[];
  /** The key columns as ORDER BY sorts them. */
  readonly order: readonly SortKey[];
  /** Only rows whose key, compared as `order` sorts, comes after this one (one text per key column); null: from the first. */
  readonly after: readonly string[] | null;
  /** Only rows whose key columns equal (as themselves) one of these; null: any. */
  readonly keys: readonly (readonly string[])[] | null;
  /** At most this many rows; null: all. */
  readonly limit: number | null;
}

/** What the reader needs of an Oracle database: oracledb in production, the simulator in tests. */
export interface OracleTableDatabase {
  /** NLS_DATABASE_PARAMETERS' NLS_CHARACTERSET and NLS_NCHAR_CHARACTERSET. */
  characterSets(): Promise<{ readonly database: string; readonly national: string }>;
  /** A table's columns as capture describes them (LogMinerReader.columns); null when there is no such table. */
  columns(owner: string, table: string): Promise<OracleColumn[] | null>;
  /** ALL_TABLES.NUM_ROWS: null when the table was never analysed. */
  numRows(owner: string, table: string): Promise<number | null>;
  /** The rows, each value its Oracle text form (null for NULL), in `order`. */
  select(query: RowQuery): Promise<(string | null)[][]>;
  close(): Promise<void>;
}

// ─── the reader ──────────────────────────────────────────────────────────────────────────────────────────

/** Keys per readKeys statement. */
const KEYS_PER_STATEMENT = 256;

/** The character set whose byte order is UTF-8's. */
const UTF8_CHARACTER_SET = 'AL32UTF8';

interface Plan {
  readonly owner: string;
  readonly table: string;
  /** The relation's columns (non-LOB), in order. */
  readonly columns: readonly OracleColumn[];
  readonly order: readonly SortKey[];
}

/** The family of a column as the reader selects and binds it. */
type Family = 'number' | 'binary' | 'string' | 'nstring' | 'long' | 'raw' | 'date' | 'timestamp' | 'timestamptz' | 'timestampltz' | 'interval' | 'rowid' | 'other';

export function familyOf(column: OracleColumn): Family {
  const type = column.type.trim().toUpperCase();
  switch (kindOf(column).kind) {
    case 'int16':
    case 'int32':
    case 'int64':
    case 'decimal':
      return 'number';
    case 'float32':
    case 'float64':
      return 'binary';
    case 'string':
      if (type === 'LONG') return 'long';
      return type.startsWith('N') ? 'nstring' : 'string';
    case 'bytes':
      return 'raw';
    case 'timestamp':
      return type === 'DATE' ? 'date' : 'timestamp';
    case 'timestamptz':
      return type.endsWith('LOCAL TIME ZONE') ? 'timestampltz' : 'timestamptz';
    case 'interval':
      return 'interval';
    default:
      return type === 'ROWID' || type === 'UROWID' ? 'rowid' : 'other';
  }
}

/** How a key column sorts (see the file comment); a string saying why it cannot be a key read in order. */
export function sortKeyOf(column: OracleColumn, databaseCharacterSet: string): SortKey | string {
  const family = familyOf(column);
  switch (family) {
    case 'number':
    case 'binary':
    case 'raw':
    case 'date':
    case 'timestamp':
    case 'timestamptz':
    case 'timestampltz':
      return { column, by: 'column' };
    case 'string':
    case 'nstring':
      if (databaseCharacterSet.toUpperCase() !== UTF8_CHARACTER_SET) {
        return `is ${nativeTypeName(column)} and the database character set is ${databaseCharacterSet}, not ${UTF8_CHARACTER_SET}: its byte order is not UTF-8's, the order keys are listed in between sites; read tables with a key of numbers, dates or RAW from this database, or migrate it to ${UTF8_CHARACTER_SET}`;
      }
      return { column, by: family === 'string' ? 'column' : 'to_char' };
    case 'interval':
      return `is ${nativeTypeName(column)}: Oracle orders intervals by value and the order shared between sites by their text`;
    default:
      return `is ${nativeTypeName(column)}, which has no order shared between databases`;
  }
}

/** `"name"`; Oracle names never hold a double quote or NUL. */
export function quoteName(name: string): string {
  if (name.length === 0 || /["\u0000]/.test(name)) throw new Error(`not a possible Oracle identifier: ${JSON.stringify(name)}`);
  return `"${name}"`;
}

/** The names a configured part may stand for: a quoted one exactly, an unquoted one as is, then in upper case. */
function candidates(part: string): string[] {
  const quoted = /^"((?:[^"]|"")+)"$/.exec(part);
  if (quoted) return [quoted[1]!.replace(/""/g, '"')];
  return part === part.toUpperCase() ? [part] : [part, part.toUpperCase()];
}

export class OracleTableReader implements TableReader {
  private readonly plans = new WeakMap<TableShape, Plan>();
  private characterSet: Promise<string> | null = null;

  constructor(
    private readonly options: TableReaderOptions,
    private readonly database: OracleTableDatabase,
  ) {}

  /** A reader over the real database (Thin mode): consistent ones start their read-only transaction now. */
  static async open(options: TableReaderOptions): Promise<OracleTableReader> {
    return new OracleTableReader(options, await OracledbTableDatabase.open(options.url, options.site, options.consistent));
  }

  private get where(): string {
    return `site ${this.options.site}`;
  }

  private databaseCharacterSet(): Promise<string> {
    this.characterSet ??= this.database.characterSets().then(
      (sets) => sets.database,
      (error: unknown) => {
        this.characterSet = null;
        throw error;
      },
    );
    return this.characterSet;
  }

  async describe(schema: string, table: string): Promise<TableShape> {
    return (await this.describePlan(schema, table)).shape;
  }

  private async describePlan(schema: string, table: string): Promise<{ shape: TableShape; plan: Plan }> {
    const name = `${schema}.${table}`;
    let found: { owner: string; table: string; columns: OracleColumn[] } | null = null;
    search: for (const owner of candidates(schema)) {
      for (const t of candidates(table)) {
        const columns = await this.database.columns(owner, t);
        if (columns !== null) {
          found = { owner, table: t, columns };
          break search;
        }
      }
    }
    if (found === null) {
      throw new SitesyncError(
        'SITESYNC_ERR_CONFIG',
        `table ${name} does not exist at ${this.where}, or its user may not see it; check the owner and table names (a quoted name's case matters; an unquoted one is looked up in upper case too) and GRANT SELECT on it`,
      );
    }
    const full = `${found.owner}.${found.table}`;
    // Capture's relation: the non-LOB columns (LogMiner writes LOB values in rows of their own, which capture leaves out).
    const columns = found.columns.filter((c) => !isLob(c));
    const unreadable = columns.find((c) => familyOf(c) === 'other');
    if (unreadable) {
      throw new SitesyncError(
        'SITESYNC_ERR_CONFIG',
        `table ${full} at ${this.where}: column ${unreadable.name} is ${nativeTypeName(unreadable)}, which sitesync has no canonical text for (capture cannot send it either); snapshots and verify cannot read this table`,
      );
    }
    const keyed = columns.filter((c) => c.keyOrdinal > 0).sort((a, b) => a.keyOrdinal - b.keyOrdinal);
    if (keyed.length === 0) {
      throw new SitesyncError(
        'SITESYNC_ERR_CONFIG',
        `table ${full} at ${this.where} has no primary key, so its rows cannot be read in key order or compared; add one (ALTER TABLE ${quoteName(found.owner)}.${quoteName(found.table)} ADD PRIMARY KEY (…))`,
      );
    }
    const characterSet = keyed.some((c) => familyOf(c) === 'string' || familyOf(c) === 'nstring') ? await this.databaseCharacterSet() : UTF8_CHARACTER_SET;
    const order = keyed.map((column) => {
      const key = sortKeyOf(column, characterSet);
      if (typeof key === 'string') throw new SitesyncError('SITESYNC_ERR_CONFIG', `table ${full} at ${this.where}: primary key column ${column.name} ${key}`);
      return key;
    });
    const infos = columns.map((c): ColumnInfo => ({ name: c.name, kind: kindOf(c), native: nativeOf(c), key: c.keyOrdinal > 0 }));
    const shape: TableShape = {
      relation: { schema: found.owner, table: found.table, replicaIdentity: 'd', columns: infos } satisfies RelationInfo,
      keyColumns: keyed.map((k) => columns.indexOf(k)),
    };
    const plan: Plan = { owner: found.owner, table: found.table, columns, order };
    this.plans.set(shape, plan);
    return { shape, plan };
  }

  /** The plan of a shape this reader described; a shape from elsewhere is described again, and must match. */
  private async planFor(shape: TableShape): Promise<Plan> {
    const known = this.plans.get(shape);
    if (known) return known;
    const { shape: current, plan } = await this.describePlan(quotedPart(shape.relation.schema), quotedPart(shape.relation.table));
    checkSameShape(shape, current, this.where);
    this.plans.set(shape, plan);
    return plan;
  }

  private image(plan: Plan, row: readonly (string | null)[]): RowImage {
    return {
      values: plan.columns.map((column, i) => {
        try {
          return canonicalText(column, row[i] ?? null);
        } catch (error) {
          if (error instanceof SitesyncError) throw new DecodeError(`${error.message} (table ${plan.owner}.${plan.table} at ${this.where})`, { cause: error });
          throw error;
        }
      }),
      unchanged: [],
    };
  }

  /** A key's Oracle text forms; throws ValueFormatError for a text the column cannot hold. */
  private keyTexts(plan: Plan, key: RowKey): string[] {
    if (key.length !== plan.order.length || key.some((v) => typeof v !== 'string')) {
      throw new Error(`a key of ${plan.owner}.${plan.table} is ${plan.order.length} texts; got ${JSON.stringify(key).slice(0, 80)}`);
    }
    return plan.order.map((k, i) => oracleText(k.column, key[i]!));
  }

  async readChunk(shape: TableShape, after: RowKey | null, limit: number): Promise<RowImage[]> {
    const plan = await this.planFor(shape);
    checkCount(limit, 'limit');
    if (limit === 0) return [];
    let from: string[] | null = null;
    if (after !== null) {
      try {
        from = this.keyTexts(plan, after);
      } catch (error) {
        if (error instanceof ValueFormatError) throw new Error(`the key to read after is not one table ${plan.owner}.${plan.table} can hold: ${error.message}`);
        throw error;
      }
    }
    const rows = await this.database.select({ owner: plan.owner, table: plan.table, columns: plan.columns, order: plan.order, after: from, keys: null, limit });
    return rows.map((row) => this.image(plan, row));
  }

  async readKeys(shape: TableShape, keys: readonly RowKey[]): Promise<RowImage[]> {
    const plan = await this.planFor(shape);
    // A key whose text the column cannot hold (Oracle's '' is NULL; a value out of its type's range) is no row here.
    const asked: string[][] = [];
    for (const key of keys) {
      try {
        asked.push(this.keyTexts(plan, key));
      } catch (error) {
        if (!(error instanceof ValueFormatError)) throw error;
      }
    }
    const found: RowImage[] = [];
    for (let start = 0; start < asked.length; start += KEYS_PER_STATEMENT) {
      const batch = asked.slice(start, start + KEYS_PER_STATEMENT);
      const rows = await this.database.select({ owner: plan.owner, table: plan.table, columns: plan.columns, order: plan.order, after: null, keys: batch, limit: null });
      for (const row of rows) found.push(this.image(plan, row));
    }
    // Only rows whose key is one of the texts asked for are that key (CHAR compares blank-padded); a key asked
    // for twice is given once.
    const wanted = new Set(keys.map((key) => JSON.stringify(key)));
    const rows = new Map<string, RowImage>();
    for (const row of found) {
      const key = JSON.stringify(rowKey(shape, row));
      if (wanted.has(key)) rows.set(key, row);
    }
    return [...rows.values()].sort((a, b) => compareKeys(shape, rowKey(shape, a), rowKey(shape, b)));
  }

  async estimateRows(shape: TableShape): Promise<number> {
    const plan = await this.planFor(shape);
    const n = await this.database.numRows(plan.owner, plan.table);
    return n === null || !Number.isFinite(n) ? 0 : Math.max(0, n);
  }

  async close(): Promise<void> {
    await this.database.close().catch(() => undefined);
  }
}

/** A relation's owner or table as describe takes it: quoted, so that it is that exact name. */
function quotedPart(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function checkCount(n: number, what: string): number {
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${what} must be a whole number of rows, not ${n}`);
  return n;
}

// ─── statements (pure) ───────────────────────────────────────────────────────────────────────────────────

/** A bind variable: VARCHAR2 text, NVARCHAR2 text, RAW bytes, an IEEE double, or a number. */
export type ReaderBind =
  | { readonly name: string; readonly type: 'text' | 'ntext'; readonly value: string }
  | { readonly name: string; readonly type: 'raw'; readonly value: Buffer }
  | { readonly name: string; readonly type: 'double' | 'number'; readonly value: number };

export interface ReaderStatement {
  readonly sql: string;
  readonly binds: readonly ReaderBind[];
}

const DATE_FORMAT = 'YYYY-MM-DD HH24:MI:SS';
const TIMESTAMP_FORMAT = 'YYYY-MM-DD HH24:MI:SS.FF9';
const TIMESTAMP_TZ_FORMAT = 'YYYY-MM-DD HH24:MI:SS.FF9 TZH:TZM';

/**
 * The reader's session: the formats capture's sessions pin (so TO_CHAR prints what SQL_REDO holds, TIME_ZONE
 * UTC), binary sorting and comparison, and for a consistent reader its read-only transaction.
 */
export function readerSessionStatements(consistent: boolean): string[] {
  return [sessionSetupStatement().sql, 'ALTER SESSION SET NLS_SORT = BINARY NLS_COMP = BINARY', ...(consistent ? ['SET TRANSACTION READ ONLY'] : [])];
}

export function characterSetsStatement(): ReaderStatement {
  return { sql: "SELECT PARAMETER, VALUE FROM NLS_DATABASE_PARAMETERS WHERE PARAMETER IN ('NLS_CHARACTERSET', 'NLS_NCHAR_CHARACTERSET')", binds: [] };
}

export function numRowsStatement(owner: string, table: string): ReaderStatement {
  return {
    sql: 'SELECT TO_CHAR(NUM_ROWS) AS NUM_ROWS FROM ALL_TABLES WHERE OWNER = :ownerName AND TABLE_NAME = :tableName',
    binds: [
      { name: 'ownerName', type: 'text', value: owner },
      { name: 'tableName', type: 'text', value: table },
    ],
  };
}

/** The select-list item giving a column's Oracle text form (or its IEEE value, or its bytes: driverValueText). */
export function selectExpression(column: OracleColumn, alias = 't'): string {
  const q = `${alias}.${quoteName(column.name)}`;
  switch (familyOf(column)) {
    case 'number':
      return `TO_CHAR(${q}, 'TM9')`;
    case 'date':
      return `TO_CHAR(${q}, '${DATE_FORMAT}')`;
    case 'timestamp':
    case 'timestampltz':
      return `TO_CHAR(${q}, '${TIMESTAMP_FORMAT}')`;
    case 'timestamptz':
      return `TO_CHAR(${q}, '${TIMESTAMP_TZ_FORMAT}')`;
    case 'interval':
      return `TO_CHAR(${q})`;
    case 'rowid':
      return `CAST(${q} AS VARCHAR2(4000))`;
    case 'binary':
    case 'string':
    case 'nstring':
    case 'long':
    case 'raw':
      return q;
    case 'other':
      throw new Error(`column ${column.name} (${nativeTypeName(column)}) cannot be read`);
  }
}

/** The ORDER BY expression of a key column. */
export function sortExpression(key: SortKey, alias = 't'): string {
  const q = `${alias}.${quoteName(key.column.name)}`;
  return key.by === 'to_char' ? `TO_CHAR(${q})` : q;
}

/**
 * A key value (its Oracle text form) as a bind and the expression comparable with the key column: `sort` with
 * sortExpression's, `lookup` with the column itself.
 */
export function keyBind(column: OracleColumn, text: string, name: string, purpose: 'sort' | 'lookup'): { expression: string; bind: ReaderBind } {
  const b = `:${name}`;
  switch (familyOf(column)) {
    case 'number':
      return { expression: `TO_NUMBER(${b})`, bind: { name, type: 'text', value: text } };
    case 'binary':
      return { expression: b, bind: { name, type: 'double', value: ieeeOf(text) } };
    case 'raw':
      return { expression: b, bind: { name, type: 'raw', value: Buffer.from(text.length % 2 === 1 ? `0${text}` : text, 'hex') } };
    case 'date':
      return { expression: `TO_DATE(${b}, '${DATE_FORMAT}')`, bind: { name, type: 'text', value: text } };
    case 'timestamp':
      return { expression: `TO_TIMESTAMP(${b}, '${TIMESTAMP_FORMAT}')`, bind: { name, type: 'text', value: text } };
    case 'timestamptz':
      return { expression: `TO_TIMESTAMP_TZ(${b}, '${TIMESTAMP_TZ_FORMAT}')`, bind: { name, type: 'text', value: text } };
    case 'timestampltz':
      // The text is UTC (oracleText of a timestamptz without its zone): an instant, compared as one.
      return { expression: `FROM_TZ(TO_TIMESTAMP(${b}, '${TIMESTAMP_FORMAT}'), '+00:00')`, bind: { name, type: 'text', value: text } };
    case 'nstring':
      // Sorted as TO_CHAR(c) (database character set), looked up as the column itself (national).
      return { expression: b, bind: { name, type: purpose === 'sort' ? 'text' : 'ntext', value: text } };
    default:
      return { expression: b, bind: { name, type: 'text', value: text } };
  }
}

/** BINARY_FLOAT/DOUBLE's Oracle text (oracle-kinds.ts oracleText) as the IEEE value. */
function ieeeOf(text: string): number {
  if (text === 'Inf' || text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (text === 'Nan') return NaN;
  return Number(text);
}

/**
 * The SELECT of a RowQuery: `SELECT … FROM "O"."T" t WHERE <after> AND <keys> ORDER BY <order> FETCH FIRST :n
 * ROWS ONLY`. `after` is spelled out (see the file comment); `keys` is an IN list of the key columns
 * themselves (a tuple IN for several), so that the primary key's index finds each row.
 */
export function selectStatement(query: RowQuery): ReaderStatement {
  const binds: ReaderBind[] = [];
  let n = 0;
  const bind = (column: OracleColumn, text: string, purpose: 'sort' | 'lookup'): string => {
    const made = keyBind(column, text, `k${n++}`, purpose);
    binds.push(made.bind);
    return made.expression;
  };
  const conditions: string[] = [];
  if (query.after !== null) {
    const after = query.after;
    if (after.length !== query.order.length) throw new Error(`a key of ${query.owner}.${query.table} is ${query.order.length} values; got ${after.length}`);
    const sorts = query.order.map((k) => sortExpression(k));
    const last = query.order.length - 1;
    const nested = (i: number): string => {
      const column = query.order[i]!.column;
      if (i === last) return `${sorts[i]} > ${bind(column, after[i]!, 'sort')}`;
      return `(${sorts[i]} > ${bind(column, after[i]!, 'sort')} OR (${sorts[i]} = ${bind(column, after[i]!, 'sort')} AND ${nested(i + 1)}))`;
    };
    // The leading `k1 >= :a` lets Oracle scan a range of the primary key's index.
    conditions.push(last === 0 ? nested(0) : `${sorts[0]} >= ${bind(query.order[0]!.column, after[0]!, 'sort')} AND ${nested(0)}`);
  }
  if (query.keys !== null) {
    if (query.keys.length === 0) conditions.push('1 = 0');
    else {
      const columns = query.order.map((k) => `t.${quoteName(k.column.name)}`);
      const tuples = query.keys.map((key) => {
        if (key.length !== query.order.length) throw new Error(`a key of ${query.owner}.${query.table} is ${query.order.length} values; got ${key.length}`);
        const values = query.order.map((k, i) => bind(k.column, key[i]!, 'lookup'));
        return values.length === 1 ? values[0]! : `(${values.join(', ')})`;
      });
      conditions.push(columns.length === 1 ? `${columns[0]} IN (${tuples.join(', ')})` : `(${columns.join(', ')}) IN (${tuples.join(', ')})`);
    }
  }
  const lines = [`SELECT ${query.columns.map((c) => selectExpression(c)).join(', ')}`, `FROM ${quoteName(query.owner)}.${quoteName(query.table)} t`];
  if (conditions.length > 0) lines.push(`WHERE ${conditions.join(' AND ')}`);
  lines.push(`ORDER BY ${query.order.map((k) => sortExpression(k)).join(', ')}`);
  if (query.limit !== null) {
    lines.push('FETCH FIRST :limitRows ROWS ONLY');
    binds.push({ name: 'limitRows', type: 'number', value: query.limit });
  }
  return { sql: lines.join('\n'), binds };
}

/** A value the driver gave for a selectExpression item, as the column's Oracle text form. */
export function driverValueText(column: OracleColumn, value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (Buffer.isBuffer(value)) return value.toString('hex').toUpperCase();
  if (typeof value === 'number') {
    if (Number.isNaN(value)) return 'Nan';
    if (value === Infinity) return 'Inf';
    if (value === -Infinity) return '-Inf';
    if (Object.is(value, -0)) return '-0';
    return String(value);
  }
  if (typeof value === 'string') return value;
  throw new DecodeError(`Oracle returned a ${typeof value} for column ${column.name} (${nativeTypeName(column)}), not text`);
}

// ─── the real database ───────────────────────────────────────────────────────────────────────────────────

/**
 * OracleTableDatabase over `oracledb` in Thin mode: one connection with readerSessionStatements run on it. A
 * consistent one connects at open (its read-only transaction starts there) and never reconnects.
 */
export class OracledbTableDatabase implements OracleTableDatabase {
  private connection: oracledb.Connection | null = null;
  private connecting: Promise<oracledb.Connection> | null = null;
  private driver: OracledbDriver | null = null;
  /** Consistent: the error that ended the read-only transaction. */
  private broken: unknown = null;
  private connected = false;

  private constructor(
    private readonly url: string,
    private readonly site: string,
    private readonly consistent: boolean,
  ) {}

  static async open(url: string, site: string, consistent: boolean): Promise<OracledbTableDatabase> {
    const database = new OracledbTableDatabase(url, site, consistent);
    if (consistent) {
      try {
        await database.connect();
      } catch (error) {
        throw describeOracleError(error, url, site);
      }
    }
    return database;
  }

  private async connect(): Promise<oracledb.Connection> {
    if (this.connection !== null) return this.connection;
    if (this.broken !== null || (this.consistent && this.connected)) {
      throw new SitesyncError(
        'SITESYNC_ERR_DATABASE_UNREACHABLE',
        `the consistent reader of Oracle site ${this.site} lost its read-only transaction with its connection${this.broken !== null ? ` (${errorLine(this.broken)})` : ''}; open a new reader`,
      );
    }
    this.connecting ??= (async () => {
      const config = oracledbConfig(this.url);
      const driver = (this.driver ??= await loadOracledb());
      const connection = await driver.getConnection(config.attributes);
      try {
        if (config.callTimeout !== null) connection.callTimeout = config.callTimeout;
        for (const sql of readerSessionStatements(this.consistent)) await connection.execute(sql);
      } catch (error) {
        await connection.close().catch(() => undefined);
        throw error;
      }
      return connection;
    })().then(
      (connection) => {
        this.connection = connection;
        this.connecting = null;
        this.connected = true;
        return connection;
      },
      (error: unknown) => {
        this.connecting = null;
        throw error;
      },
    );
    return this.connecting;
  }

  private binds(statement: ReaderStatement): Record<string, oracledb.BindParameter> {
    const d = this.driver!;
    const out: Record<string, oracledb.BindParameter> = {};
    for (const b of statement.binds) {
      const type = { text: d.DB_TYPE_VARCHAR, ntext: d.DB_TYPE_NVARCHAR, raw: d.DB_TYPE_RAW, double: d.DB_TYPE_BINARY_DOUBLE, number: d.DB_TYPE_NUMBER }[b.type];
      out[b.name] = { dir: d.BIND_IN, type, val: b.value };
    }
    return out;
  }

  /** Rows of one query, as arrays or objects; a lost connection is dropped (and, consistent, ends the reader). */
  private async run(statement: ReaderStatement, format: 'array' | 'object'): Promise<unknown[]> {
    let connection: oracledb.Connection;
    try {
      connection = await this.connect();
    } catch (error) {
      throw describeOracleError(error, this.url, this.site);
    }
    const d = this.driver!;
    try {
      const result = await connection.execute(statement.sql, this.binds(statement), {
        outFormat: format === 'array' ? d.OUT_FORMAT_ARRAY : d.OUT_FORMAT_OBJECT,
        fetchArraySize: 1000,
        // Numbers are TO_CHAR'd in the select list; any other NUMBER (a count) as text, never a rounded double.
        // BINARY_FLOAT/DOUBLE stay IEEE numbers, RAW stays a Buffer.
        fetchTypeHandler: (metadata) =>
          metadata.dbType === d.DB_TYPE_NUMBER || metadata.dbType === d.DB_TYPE_CLOB || metadata.dbType === d.DB_TYPE_NCLOB || metadata.dbType === d.DB_TYPE_LONG ? { type: d.STRING } : undefined,
      });
      return (result.rows ?? []) as unknown[];
    } catch (error) {
      if (isConnectionLoss(error)) {
        if (this.consistent) this.broken = error;
        const lost = this.connection;
        this.connection = null;
        void lost?.close().catch(() => undefined);
      }
      throw describeOracleError(error, this.url, this.site);
    }
  }

  async characterSets(): Promise<{ database: string; national: string }> {
    const rows = (await this.run(characterSetsStatement(), 'object')) as Record<string, unknown>[];
    const value = (parameter: string): string => String(rows.find((r) => r.PARAMETER === parameter)?.VALUE ?? 'unknown');
    return { database: value('NLS_CHARACTERSET'), national: value('NLS_NCHAR_CHARACTERSET') };
  }

  async columns(owner: string, table: string): Promise<OracleColumn[] | null> {
    const statement = columnsStatement(owner, table);
    const rows = await this.run({ sql: statement.sql, binds: statement.binds.map((b) => ({ name: b.name, type: 'text' as const, value: b.value ?? '' })) }, 'object');
    return readColumns(rows as Record<string, unknown>[]);
  }

  async numRows(owner: string, table: string): Promise<number | null> {
    const [row] = (await this.run(numRowsStatement(owner, table), 'object')) as Record<string, unknown>[];
    const n = row?.NUM_ROWS;
    return n === null || n === undefined ? null : Number(n);
  }

  async select(query: RowQuery): Promise<(string | null)[][]> {
    const rows = (await this.run(selectStatement(query), 'array')) as unknown[][];
    return rows.map((row) => query.columns.map((column, i) => driverValueText(column, row[i])));
  }

  async close(): Promise<void> {
    const connection = this.connection ?? (await this.connecting?.catch(() => null)) ?? null;
    this.connection = null;
    this.broken ??= new Error('the reader was closed');
    if (connection) {
      await connection.rollback().catch(() => undefined);
      await connection.close().catch(() => undefined);
    }
  }
}
