/**
 * Reads a PostgreSQL table's existing rows by key (src/capture/table-reader.ts): what an online snapshot
 * sends and what `sitesync verify` compares.
 *
 * Same rows as capture: a row read here is the row pgoutput would send. The relation is described the way
 * capture describes it (postgres-types.ts: kinds and native types from the catalog by type OID and typmod;
 * columns in attnum order, without dropped and generated columns, which pgoutput leaves out), and values
 * are the types' output-function text under capture's session settings (session-settings.ts), which is the
 * canonical text: the driver hands every value over as the server printed it, nothing is parsed.
 *
 * Key order is the kind-neutral one (src/capture/key-order.ts), made by the database: value kinds (numbers,
 * dates and times, boolean, uuid, bytea) by the column itself, which the primary key's index can serve;
 * text by `COLLATE "C"`, which compares the bytes of the database's encoding: UTF-8's order in a UTF8 or
 * LATIN1 database (LATIN1's bytes are its code points); in a database of another encoding (WIN1252,
 * EUC_JP…) by `convert_to(…, 'UTF8')`, the UTF-8 bytes themselves. Everything else (enum, interval,
 * bpchar, domains over text, other types) sorts by its output text, the same way. A text or other key
 * column costs a sort of what follows the chunk's start: PostgreSQL sorts the rest of the table (top-N)
 * for each chunk, unless the key's leading columns are value kinds, whose index narrows the rows to sort
 * (incremental sort); only a column whose own collation is "C" has an index in this order.
 *
 * A consistent reader holds one REPEATABLE READ READ ONLY transaction on one connection from open to close,
 * its snapshot taken at open; a failed statement ends that transaction, and every later read says so
 * rather than read outside the snapshot. Otherwise reads go to a small pool and see the latest commits.
 */
import pg from 'pg';
import { SitesyncError } from '../../src/errors.ts';
import { BOOKKEEPING_SCHEMA, ORIGIN_PREFIX } from '../../src/config/names.ts';
import { SITE_NAME_PATTERN, type ColumnInfo, type RelationInfo, type RowImage, type RowWriter } from '../../src/events/transaction.ts';
import { comparatorFor, compareKeys } from '../../src/capture/key-order.ts';
import { checkSameShape, rowKey, type RowKey, type TableReader, type TableReaderOptions, type TableShape } from '../../src/capture/table-reader.ts';
import { redactUrl } from '../../src/observability/logger.ts';
import { describePostgresError } from './postgres-errors.ts';
import { quoteIdent } from './postgres-source.ts';
import { PG_TYPES_QUERY, PostgresTypes, type PgTypeRow } from './postgres-types.ts';
import { CONNECTION_OPTIONS } from './session-settings.ts';

/** Every value as the server printed it (its output function): the canonical text, never a JS value. */
const RAW_TEXT: pg.CustomTypesConfig = { getTypeParser: (() => (value: string) => value) as unknown as pg.CustomTypesConfig['getTypeParser'] };

/** Type OIDs whose values sort by byte order with `COLLATE "C"` on the column itself: text, varchar, name. */
const PLAIN_TEXT_TYPES = new Set([25, 1043, 19]);

/** Server encodings whose byte order is UTF-8's (SQL_ASCII, which capture refuses, has no order to speak of). */
const UTF8_ORDERED_ENCODINGS = new Set(['UTF8', 'LATIN1', 'SQL_ASCII']);

/** Keys per readKeys statement (one text array per key column: only the statement's size bounds it). */
const KEYS_PER_STATEMENT = 10_000;

/** How one key column is sorted and compared with a bound key text. */
interface KeyPart {
  /** The expression ORDER BY sorts by (table alias `t`). */
  readonly sort: string;
  /** The bound key text `$n` as a value comparable with `sort`. */
  readonly bind: (n: number) => string;
  /** The column, quoted, and its type, quoted and qualified: for the `IN` of readKeys, which uses the column's index. */
  readonly column: string;
  readonly type: string;
}

/** What the statements of one described table are made of. */
interface Plan {
  readonly oid: string;
  readonly table: string;
  readonly columns: readonly string[];
  readonly keys: readonly KeyPart[];
  readonly orderBy: string;
}

export class PostgresTableReader implements TableReader {
  readonly digestKind = 'postgres';
  private readonly plans = new WeakMap<TableShape, Plan>();
  /** Consistent mode: the error that ended the snapshot's transaction. */
  private broken: unknown = null;
  /** What readChunkWithWriters may ask of this server and role (null: not asked yet). */
  private writerAccess: { readonly commitTimestamps: boolean; readonly origins: boolean } | null = null;
  /** Replication origin ids (as text) to the site whose writes they apply here (null: not one of sitesync's for this site). */
  private readonly originSites = new Map<string, string | null>();

  private constructor(
    private readonly options: TableReaderOptions,
    private readonly pool: pg.Pool | null,
    private readonly client: pg.Client | null,
  ) {}

  static async open(options: TableReaderOptions): Promise<PostgresTableReader> {
    const config: pg.ClientConfig = { connectionString: options.url, ...CONNECTION_OPTIONS, application_name: `sitesync reader ${options.site}` };
    if (!options.consistent) {
      const pool = new pg.Pool({ ...config, max: 3 });
      // An idle client's lost connection is reported here; the next query fails and says so.
      pool.on('error', () => undefined);
      return new PostgresTableReader(options, pool, null);
    }
    const client = new pg.Client(config);
    client.on('error', () => undefined); // the query in flight reports a lost connection
    try {
      await client.connect();
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      // The snapshot is taken by the transaction's first statement, not by BEGIN: take it now, so that
      // the reader's point in time is its opening.
      await client.query('SELECT 1');
    } catch (error) {
      await client.end().catch(() => undefined);
      throw describePostgresError(error, options.url, options.site);
    }
    return new PostgresTableReader(options, null, client);
  }

  private async query<T extends pg.QueryResultRow>(config: pg.QueryConfig | pg.QueryArrayConfig): Promise<pg.QueryResult<T>> {
    if (this.broken !== null) {
      throw new SitesyncError(
        'SITESYNC_ERR_DATABASE_UNREACHABLE',
        `the consistent reader of site ${this.options.site} lost its snapshot when a read failed (${(this.broken as Error).message ?? String(this.broken)}); open a new reader`,
      );
    }
    try {
      // pg's overloads tell array rows from object rows by the config's type; both go the same way here.
      const plain = config as pg.QueryConfig;
      return this.client ? await this.client.query<T>(plain) : await this.pool!.query<T>(plain);
    } catch (error) {
      if (this.client) this.broken = error;
      if ((error as { code?: string }).code === '42501') {
        throw new SitesyncError(
          'SITESYNC_ERR_PERMISSION',
          `PostgreSQL of site ${this.options.site} (${redactUrl(this.options.url)}): ${(error as Error).message}; the reader's role needs SELECT on the tables it reads (GRANT SELECT ON … TO it)`,
          { cause: error },
        );
      }
      throw describePostgresError(error, this.options.url, this.options.site);
    }
  }

  /** Rows of raw output-function text, as arrays in select-list order. */
  private async rows(text: string, values: unknown[]): Promise<(string | null)[][]> {
    const result = await this.query({ text, values, rowMode: 'array', types: RAW_TEXT });
    return result.rows as unknown as (string | null)[][];
  }

  async listTables(): Promise<string[]> {
    const { rows } = await this.query<{ name: string }>({
      text: `SELECT n.nspname || '.' || c.relname AS name
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
                AND n.nspname NOT IN ('information_schema', $1) AND n.nspname NOT LIKE 'pg\\_%'
                AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
                AND has_table_privilege(c.oid, 'SELECT')
              ORDER BY 1`,
      values: [BOOKKEEPING_SCHEMA],
    });
    return rows.map((r) => r.name);
  }

  async describe(schema: string, table: string): Promise<TableShape> {
    return (await this.describePlan(schema, table)).shape;
  }

  private async describePlan(schema: string, table: string): Promise<{ shape: TableShape; plan: Plan }> {
    const name = `${schema}.${table}`;
    const where = `site ${this.options.site}`;
    const relation = await this.query<{ oid: string; relkind: string; relreplident: string; encoding: string }>({
      text: `SELECT c.oid::int8::text AS oid, c.relkind, c.relreplident, current_setting('server_encoding') AS encoding
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`,
      values: [schema, table],
    });
    const rel = relation.rows[0];
    if (!rel) throw new SitesyncError('SITESYNC_ERR_CONFIG', `table ${name} does not exist at ${where}; check the table's schema and name (case matters)`);
    if (rel.relkind !== 'r' && rel.relkind !== 'p') {
      throw new SitesyncError('SITESYNC_ERR_CONFIG', `${name} at ${where} is not a table (relkind ${rel.relkind}); only tables can be read by key`);
    }
    const typesResult = await this.query<PgTypeRow>({ text: PG_TYPES_QUERY });
    const types = new PostgresTypes();
    types.load(typesResult.rows);
    const attributes = await this.query<{ attnum: number; name: string; type: string; modifier: number; generated: boolean; typeName: string }>({
      // Generated columns are listed to tell them apart in the key; pgoutput (PostgreSQL 15) never sends them.
      text: `SELECT a.attnum, a.attname AS name, a.atttypid::int8::text AS type, a.atttypmod AS modifier, a.attgenerated <> '' AS generated,
                    quote_ident(tn.nspname) || '.' || quote_ident(t.typname) AS "typeName"
               FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid JOIN pg_namespace tn ON tn.oid = t.typnamespace
              WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
      values: [rel.oid],
    });
    const primary = await this.query<{ attnum: number }>({
      text: `SELECT k.attnum::int AS attnum FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
              WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.ord`,
      values: [rel.oid],
    });
    if (primary.rows.length === 0) {
      throw new SitesyncError(
        'SITESYNC_ERR_CONFIG',
        `table ${name} at ${where} has no primary key, so its rows cannot be read in key order or compared; add one (ALTER TABLE ${quoteIdent(schema)}.${quoteIdent(table)} ADD PRIMARY KEY (…))`,
      );
    }
    const sent = attributes.rows.filter((a) => !a.generated);
    const columns: ColumnInfo[] = [];
    const keyAttnums = primary.rows.map((r) => r.attnum);
    for (const a of sent) {
      const oid = Number(a.type);
      columns.push({ name: a.name, kind: types.kind(oid, a.modifier), native: types.native(oid, a.modifier), key: keyAttnums.includes(a.attnum) });
    }
    const keyColumns: number[] = [];
    const keys: KeyPart[] = [];
    for (const attnum of keyAttnums) {
      const index = sent.findIndex((a) => a.attnum === attnum);
      if (index < 0) {
        const generated = attributes.rows.find((a) => a.attnum === attnum)?.name ?? `#${attnum}`;
        throw new SitesyncError('SITESYNC_ERR_CONFIG', `table ${name} at ${where} has generated column ${generated} in its primary key, which capture never sends; a key of stored columns is needed to read it by key`);
      }
      const column = columns[index]!;
      try {
        comparatorFor(column.kind, `key column ${column.name} of ${name}`);
      } catch (error) {
        throw new SitesyncError(
          'SITESYNC_ERR_CONFIG',
          `table ${name} at ${where}: primary key column ${column.name} is of type ${column.native.name} (kind ${column.kind.kind}), which has no order shared between databases; give the table a primary key of scalar columns to read it by key`,
          { cause: error },
        );
      }
      keyColumns.push(index);
      keys.push(keyPart(column, sent[index]!.type, sent[index]!.typeName, UTF8_ORDERED_ENCODINGS.has(rel.encoding)));
    }
    const shape: TableShape = {
      relation: { schema, table, replicaIdentity: replicaIdentity(rel.relreplident), columns } satisfies RelationInfo,
      keyColumns,
    };
    const plan: Plan = {
      oid: rel.oid,
      table: `${quoteIdent(schema)}.${quoteIdent(table)}`,
      columns: columns.map((c) => `t.${quoteIdent(c.name)}`),
      keys,
      orderBy: keys.map((k) => k.sort).join(', '),
    };
    this.plans.set(shape, plan);
    return { shape, plan };
  }

  /**
   * The plan of a shape this reader described; a shape from elsewhere (another reader, a copy) is
   * described again here, and must still have the same columns.
   */
  private async planFor(shape: TableShape): Promise<Plan> {
    const known = this.plans.get(shape);
    if (known) return known;
    const { shape: current, plan } = await this.describePlan(shape.relation.schema, shape.relation.table);
    checkSameShape(shape, current, `site ${this.options.site}`);
    this.plans.set(shape, plan);
    return plan;
  }

  async readChunk(shape: TableShape, after: RowKey | null, limit: number): Promise<RowImage[]> {
    const plan = await this.planFor(shape);
    const values: unknown[] = [];
    const where = after === null ? 'true' : this.beyond(plan, after, '>', values);
    values.push(checkCount(limit, 'limit'));
    const rows = await this.rows(`SELECT ${plan.columns.join(', ')} FROM ${plan.table} t WHERE ${where} ORDER BY ${plan.orderBy} LIMIT $${values.length}`, values);
    return rows.map(image);
  }

  /**
   * readChunk's rows (the same statement, as a subquery, so the same rows in the same order), each with the
   * writer of the row version read: pg_xact_commit_timestamp_origin of its xmin, computed after the LIMIT
   * (only for the rows sent) and in the same statement (so of the very version read). The time is exact
   * (extract(epoch) is numeric), as the sink's own lookups compute it (apply-plan.ts). Origin 0 is a local
   * write: this site; a sitesync origin `sitesync_<source>_to_<this site>` (names.ts originName) is the source
   * site, as the sink reads it (postgres-sink.ts siteOfOrigin). Null: the database cannot tell (no commit
   * timestamps, a frozen or too old xid, another origin, or a role that may not read pg_replication_origin,
   * which PostgreSQL 15 grants to PUBLIC); the read itself never fails for a writer.
   */
  async readChunkWithWriters(shape: TableShape, after: RowKey | null, limit: number): Promise<{ readonly rows: RowImage[]; readonly writers: (RowWriter | null)[] }> {
    const plan = await this.planFor(shape);
    const access = await this.writerAccessOf();
    if (!access.commitTimestamps) {
      const rows = await this.readChunk(shape, after, limit);
      return { rows, writers: rows.map(() => null) };
    }
    const values: unknown[] = [];
    const where = after === null ? 'true' : this.beyond(plan, after, '>', values);
    values.push(checkCount(limit, 'limit'));
    // The subquery's output is named as the table's columns (and aliased `t`), so the select list and the
    // sort expressions read the same there; xmin under a name no column has.
    const names = new Set(shape.relation.columns.map((c) => c.name));
    let xmin = 'sitesync_xmin';
    while (names.has(xmin)) xmin += '_';
    const inner = `SELECT ${plan.columns.join(', ')}, t.xmin AS ${quoteIdent(xmin)} FROM ${plan.table} t WHERE ${where} ORDER BY ${plan.orderBy} LIMIT $${values.length}`;
    const rows = await this.rows(
      `SELECT ${plan.columns.join(', ')}, (extract(epoch FROM c.timestamp) * 1000000)::int8::text, c.roident::int8::text ` +
        `FROM (${inner}) t LEFT JOIN LATERAL pg_xact_commit_timestamp_origin(t.${quoteIdent(xmin)}) c ON true ORDER BY ${plan.orderBy}`,
      values,
    );
    const width = plan.columns.length;
    // Origins this reader has not met yet: their names read once for the chunk.
    const unknown = rows.some((row) => row[width] !== null && row[width + 1] != null && row[width + 1] !== '0' && !this.originSites.has(row[width + 1]!));
    if (unknown && access.origins) await this.loadOriginSites();
    const writers = rows.map((row): RowWriter | null => {
      const micros = row[width] ?? null;
      const roident = row[width + 1] ?? null;
      if (micros === null || roident === null) return null;
      const site = roident === '0' ? this.options.site : (this.originSites.get(roident) ?? null);
      return site === null ? null : { site, commitTimeMicros: BigInt(micros) };
    });
    return { rows: rows.map((row) => image(row.slice(0, width))), writers };
  }

  /** Whether commit timestamps can be asked for, and origin names read (asked once: both change only with a restart or a GRANT). */
  private async writerAccessOf(): Promise<{ readonly commitTimestamps: boolean; readonly origins: boolean }> {
    if (this.writerAccess === null) {
      const { rows } = await this.query<{ timestamps: boolean; origins: boolean }>({
        text: `SELECT current_setting('track_commit_timestamp') = 'on'
                      AND has_function_privilege('pg_catalog.pg_xact_commit_timestamp_origin(xid)', 'EXECUTE') AS timestamps,
                      has_table_privilege('pg_catalog.pg_replication_origin', 'SELECT') AS origins`,
      });
      this.writerAccess = { commitTimestamps: rows[0]?.timestamps === true, origins: rows[0]?.origins === true };
    }
    return this.writerAccess;
  }

  /**
   * Which site each replication origin applies from at this site (as postgres-sink.ts siteOfOrigin reads
   * them): `sitesync_<source>_to_<this site>` (names.ts originName) is `source`; any other origin, null.
   */
  private async loadOriginSites(): Promise<void> {
    let rows: { roident: string; roname: string }[];
    try {
      ({ rows } = await this.query<{ roident: string; roname: string }>({ text: 'SELECT roident::int8::text AS roident, roname FROM pg_catalog.pg_replication_origin' }));
    } catch {
      // The privilege was checked before; should the read fail anyway, the writers stay unknown (a
      // consistent reader has lost its snapshot then, and its next read says so).
      return;
    }
    const suffix = `_to_${this.options.site}`;
    const siteName = new RegExp(SITE_NAME_PATTERN);
    this.originSites.clear();
    for (const r of rows) {
      const source = r.roname.startsWith(ORIGIN_PREFIX) && r.roname.endsWith(suffix) ? r.roname.slice(ORIGIN_PREFIX.length, -suffix.length) : null;
      this.originSites.set(r.roident, source !== null && siteName.test(source) ? source : null);
    }
  }

  async readKeys(shape: TableShape, keys: readonly RowKey[]): Promise<RowImage[]> {
    const plan = await this.planFor(shape);
    const found: RowImage[] = [];
    for (let start = 0; start < keys.length; start += KEYS_PER_STATEMENT) {
      const batch = keys.slice(start, start + KEYS_PER_STATEMENT);
      for (const key of batch) checkKey(plan, key);
      // The key texts as one text array per key column, cast to the column's type, so the lookup is by the
      // column's own equality and its index.
      const values = plan.keys.map((_, i) => batch.map((key) => key[i]!));
      const unnested = plan.keys.map((_, i) => `$${i + 1}::text[]`).join(', ');
      const aliases = plan.keys.map((_, i) => `k${i}`);
      const casts = plan.keys.map((k, i) => `u.${aliases[i]}::${k.type}`).join(', ');
      const rows = await this.rows(
        `SELECT ${plan.columns.join(', ')} FROM ${plan.table} t
          WHERE (${plan.keys.map((k) => k.column).join(', ')}) IN (SELECT ${casts} FROM unnest(${unnested}) AS u(${aliases.join(', ')}))
          ORDER BY ${plan.orderBy}`,
        values,
      );
      for (const row of rows) found.push(image(row));
    }
    // Equal by the column's type is not always the same text (an interval's 1 mon and 30 days; a
    // non-deterministic collation): only rows whose key is one of the texts asked for are that key.
    // A key asked for in two statements is found twice, and given once.
    const wanted = new Set(keys.map((key) => JSON.stringify(key)));
    const rows = new Map<string, RowImage>();
    for (const row of found) {
      const key = JSON.stringify(rowKey(shape, row));
      if (wanted.has(key)) rows.set(key, row);
    }
    // Each statement's rows come in key order; rows of several statements are merged here, by the same order.
    const result = [...rows.values()];
    if (keys.length > KEYS_PER_STATEMENT) result.sort((a, b) => compareKeys(shape, rowKey(shape, a), rowKey(shape, b)));
    return result;
  }

  async estimateRows(shape: TableShape): Promise<number> {
    const plan = await this.planFor(shape);
    // reltuples is -1 before the first VACUUM or ANALYZE. A partitioned table's own says nothing: its
    // leaves hold the rows.
    const { rows } = await this.query<{ n: string | null }>({
      text: `SELECT greatest(CASE WHEN r.relkind = 'p'
                                  THEN (SELECT sum(greatest(c.reltuples, 0)) FROM pg_partition_tree(r.oid) p JOIN pg_class c ON c.oid = p.relid WHERE p.isleaf)
                                  ELSE r.reltuples END, 0)::int8::text AS n
               FROM pg_class r WHERE r.oid = $1::oid`,
      values: [plan.oid],
    });
    return Math.max(0, Number(rows[0]?.n ?? 0));
  }

  /**
   * Rows with a key in (from, to], and an order-independent digest of them: for each row, the record text
   * of its key columns and then `columns` (record_out: each value's output text, quoted where needed, NULL
   * as nothing and '' as "", so NULL, '' and 'NULL' all differ), hashed to 64 bits by hashtextextended,
   * and the hashes summed as a numeric. No sort, so a range of a million rows is one scan; md5 in place of
   * the hash measured five times slower. The key is in every row's text so that values swapped between
   * rows change the digest too. hashtextextended is what hash partitioning stores rows by, so it is the
   * same across PostgreSQL versions (on machines of the same byte order, as every one we run on is).
   */
  async rangeDigest(shape: TableShape, columns: readonly string[], from: RowKey | null, to: RowKey | null): Promise<{ readonly rows: number; readonly digest: string }> {
    const plan = await this.planFor(shape);
    const listed = columns.map((name) => {
      if (!shape.relation.columns.some((c) => c.name === name)) {
        throw new SitesyncError('SITESYNC_ERR_CONFIG', `column ${name} is not a column of ${shape.relation.schema}.${shape.relation.table} at site ${this.options.site}`);
      }
      return `t.${quoteIdent(name)}`;
    });
    const values: unknown[] = [];
    const where = this.range(plan, from, to, values);
    const record = [...plan.keys.map((k) => k.column), ...listed].join(', ');
    const [row] = await this.rows(
      `SELECT count(*)::text, coalesce(sum(hashtextextended(ROW(${record})::text COLLATE "C", 0)::numeric), 0)::text FROM ${plan.table} t WHERE ${where}`,
      values,
    );
    return { rows: Number(row![0]), digest: row![1]! };
  }

  async keyAt(shape: TableShape, from: RowKey | null, to: RowKey | null, offset: number): Promise<RowKey | null> {
    const plan = await this.planFor(shape);
    const values: unknown[] = [];
    const where = this.range(plan, from, to, values);
    values.push(checkCount(offset, 'offset'));
    const rows = await this.rows(`SELECT ${plan.keys.map((k) => k.column).join(', ')} FROM ${plan.table} t WHERE ${where} ORDER BY ${plan.orderBy} LIMIT 1 OFFSET $${values.length}`, values);
    const row = rows[0];
    return row ? row.map((v) => v!) : null;
  }

  private range(plan: Plan, from: RowKey | null, to: RowKey | null, values: unknown[]): string {
    const conditions: string[] = [];
    if (from !== null) conditions.push(this.beyond(plan, from, '>', values));
    if (to !== null) conditions.push(this.beyond(plan, to, '<=', values));
    return conditions.length === 0 ? 'true' : conditions.join(' AND ');
  }

  /**
   * Key after (`>`) or at most (`<=`) `key`, as a row comparison of the sort expressions: compared left to
   * right like ORDER BY, each pair by its own operator and collation; when the leading columns are the
   * index's, PostgreSQL uses the index for them.
   */
  private beyond(plan: Plan, key: RowKey, op: '>' | '<=', values: unknown[]): string {
    checkKey(plan, key);
    const bound = plan.keys.map((part, i) => {
      values.push(key[i]);
      return part.bind(values.length);
    });
    const sorts = plan.keys.map((k) => k.sort);
    return sorts.length === 1 ? `${sorts[0]} ${op} ${bound[0]}` : `(${sorts.join(', ')}) ${op} (${bound.join(', ')})`;
  }

  async close(): Promise<void> {
    if (this.client) {
      await this.client.query('ROLLBACK').catch(() => undefined);
      await this.client.end().catch(() => undefined);
    }
    if (this.pool) await this.pool.end().catch(() => undefined);
  }
}

/** How a key column sorts: see the file comment. */
function keyPart(column: ColumnInfo, typeOid: string, typeName: string, utf8Ordered: boolean): KeyPart {
  const q = `t.${quoteIdent(column.name)}`;
  switch (column.kind.kind) {
    case 'boolean':
    case 'int16':
    case 'int32':
    case 'int64':
    case 'float32':
    case 'float64':
    case 'decimal':
    case 'date':
    case 'time':
    case 'timestamp':
    case 'timestamptz':
    case 'uuid':
    case 'bytes':
      // The type's own btree order is the neutral one (uuid and bytea compare bytes; NaN above Infinity).
      return { sort: q, bind: (n) => `$${n}::${typeName}`, column: q, type: typeName };
    case 'string':
      // text, varchar and name print as they are; bpchar compares without its padding, and "char" and
      // domains have orders of their own: those sort by their output text.
      if (PLAIN_TEXT_TYPES.has(Number(typeOid))) return byText(q, q, typeName, utf8Ordered);
      return byText(q, `format('%s', ${q})`, typeName, utf8Ordered);
    default:
      return byText(q, `format('%s', ${q})`, typeName, utf8Ordered);
  }
}

/** Sorted by `text` (the output text; format('%s') prints with the output function, as capture does) in UTF-8 byte order. */
function byText(q: string, text: string, typeName: string, utf8Ordered: boolean): KeyPart {
  if (utf8Ordered) return { sort: `${text} COLLATE "C"`, bind: (n) => `$${n}::text COLLATE "C"`, column: q, type: typeName };
  return { sort: `convert_to(${text}, 'UTF8')`, bind: (n) => `convert_to($${n}::text, 'UTF8')`, column: q, type: typeName };
}

function replicaIdentity(relreplident: string): RelationInfo['replicaIdentity'] {
  return relreplident === 'f' || relreplident === 'i' || relreplident === 'n' ? relreplident : 'd';
}

function image(values: (string | null)[]): RowImage {
  return { values, unchanged: [] };
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
