/**
 * The tables of a DuckDB site, as the sources describe them: created on first use, widened when a source adds
 * a column, and a source stopped when one of its columns changes to another DuckDB type.
 *
 * Per source table `schema.table` (in the source's schema name): the history table `table__history` always,
 * and the current-state table `table` when the relation has a key (a table without one has no current state:
 * rows without a key cannot be told apart, so only their history is kept). Both are created in the same
 * DuckDB transaction as the data that needs them, so a failed run leaves no half-made table.
 *
 * New columns are added to both tables (ALTER TABLE ADD COLUMN) without a restart. A column the source drops
 * stays, NULL in rows written afterwards (the fold keeps a current row's value). A column whose kind now maps
 * to another DuckDB type cannot be changed by sitesync without rewriting what was stored: that source halts
 * with one line saying what to do.
 *
 * Layouts (each table's columns in their catalog order, which appenders follow) are cached per file: only the
 * process holding the file writes it, and every write is serialised (duckdb-connection.ts), so the cache
 * stays true. DDL of an open transaction is kept aside until COMMIT and dropped at ROLLBACK.
 */
import type { RelationInfo } from '../../src/events/transaction.ts';
import { formatKind, type ValueKind } from '../../src/events/value-kind.ts';
import { SitesyncError } from '../../src/errors.ts';
import type { DuckDbConnection } from './duckdb-connection.ts';
import { duckTypeOf, parseTypeText, typeText, type DuckType } from './duckdb-kinds.ts';
import { addColumn, BOOKKEEPING_SCHEMA, createSchema, createTable, CURRENT_COLUMNS, HISTORY_COLUMNS, HISTORY_SUFFIX, OWN_COLUMN_PREFIX, TABLE_COLUMNS } from './duckdb-statements.ts';

export interface ColumnLayout {
  readonly name: string;
  readonly type: DuckType;
  /** One of sitesync's own columns (`_sitesync_…`), not the source's. */
  readonly own: boolean;
}

export interface TableLayout {
  /** The names as the catalog has them (DuckDB matches names without regard to case). */
  readonly schema: string;
  readonly table: string;
  readonly columns: readonly ColumnLayout[];
}

/** Where a source table lives at a DuckDB site. */
export interface PreparedTable {
  readonly history: TableLayout;
  /** null: the source table has no key, so it has no current state. */
  readonly current: TableLayout | null;
}

/** Schemas nothing from a source is written into: DuckDB's catalogs and sitesync's own. */
const RESERVED_SCHEMAS = new Set([BOOKKEEPING_SCHEMA, 'information_schema', 'pg_catalog', 'temp', 'system']);

export function isReservedDuckDbSchema(schema: string): boolean {
  return RESERVED_SCHEMAS.has(schema.toLowerCase());
}

/** `schema.table` as a cache key: DuckDB names match without regard to case. */
function keyOf(schema: string, table: string): string {
  return `${schema.toLowerCase()}\u0000${table.toLowerCase()}`;
}

export interface TableContext {
  /** The site applied into, and the source whose changes need the tables (for the lines people read). */
  readonly site: string;
  readonly source: string;
  /** `schema.table` names the site replicates (sites.<site>.tables); null: every table. */
  readonly replicated: ReadonlySet<string> | null;
}

export class DuckDbTables {
  private readonly committed = new Map<string, TableLayout | null>();
  private pending = new Map<string, TableLayout | null>();

  constructor(private readonly json: boolean) {}

  /** Forgets what an open transaction created or altered (it rolled back). */
  rollback(): void {
    this.pending = new Map();
  }

  /** Keeps what an open transaction created or altered (it committed). */
  commit(): void {
    for (const [key, layout] of this.pending) this.committed.set(key, layout);
    this.pending = new Map();
  }

  /** Forgets everything cached (after an error that may have left the catalog other than believed). */
  forget(): void {
    this.committed.clear();
    this.pending = new Map();
  }

  /**
   * Makes sure every source table of `versions` (its relations as a run describes them, oldest first) has its
   * tables at this site with every column, inside the open transaction of `connection`.
   */
  async prepare(connection: DuckDbConnection, versions: ReadonlyMap<string, readonly RelationInfo[]>, context: TableContext): Promise<Map<string, PreparedTable>> {
    const prepared = new Map<string, PreparedTable>();
    for (const [name, relations] of versions) {
      const latest = relations[relations.length - 1]!;
      const { schema, table } = latest;
      this.check(latest, context);
      const wanted = this.wantedColumns(relations, context);
      const keyed = relations.some((r) => r.columns.some((c) => c.key));
      const history = await this.ensure(connection, schema, `${table}${HISTORY_SUFFIX}`, wanted, HISTORY_COLUMNS(this.json), latest, context);
      const current = keyed ? await this.ensure(connection, schema, table, wanted, CURRENT_COLUMNS(this.json), latest, context) : null;
      prepared.set(name, { history, current });
    }
    return prepared;
  }

  /** What a source table may not be at a DuckDB site, refused before anything is written. */
  private check(relation: RelationInfo, context: TableContext): void {
    const { schema, table } = relation;
    const name = `${schema}.${table}`;
    if (isReservedDuckDbSchema(schema)) {
      throw new SitesyncError('SITESYNC_ERR_UNTRUSTED', `a change from site ${context.source} writes into ${name}, a schema DuckDB site ${context.site} never writes into (DuckDB's own or sitesync's); sitesync parks it`);
    }
    if (context.replicated !== null && !context.replicated.has(name)) {
      // A DuckDB site creates the tables its sources describe: it must not create one it was not asked to keep.
      throw new SitesyncError(
        'SITESYNC_ERR_APPLY_SCHEMA',
        `table ${name} from site ${context.source} is not one DuckDB site ${context.site} replicates, so it is not created there; add it to sites.${context.site}.tables (sitesync retries and resumes by itself)`,
      );
    }
    if (table.toLowerCase().endsWith(HISTORY_SUFFIX)) {
      throw new SitesyncError(
        'SITESYNC_ERR_APPLY_SCHEMA',
        `table ${name} from site ${context.source} ends in ${HISTORY_SUFFIX}, the suffix of the history tables DuckDB site ${context.site} keeps; rename it at the source or leave it out of sites.${context.site}.tables`,
      );
    }
  }

  /** Every column the run's relations of a table have, by name, with its DuckDB type; one name, one type. */
  private wantedColumns(relations: readonly RelationInfo[], context: TableContext): Map<string, { type: DuckType; kind: ValueKind }> {
    const wanted = new Map<string, { type: DuckType; kind: ValueKind }>();
    const lower = new Map<string, string>();
    const latest = relations[relations.length - 1]!;
    const name = `${latest.schema}.${latest.table}`;
    // The latest description first: its order is the order of a new table's columns.
    for (const relation of [latest, ...relations.slice(0, -1).reverse()]) {
      for (const column of relation.columns) {
        if (column.name.toLowerCase().startsWith(OWN_COLUMN_PREFIX)) {
          throw new SitesyncError('SITESYNC_ERR_APPLY_SCHEMA', `column ${column.name} of ${name} from site ${context.source} starts with ${OWN_COLUMN_PREFIX}, as the columns DuckDB site ${context.site} adds do; rename it at the source`);
        }
        const type = duckTypeOf(column.kind, this.json);
        const seen = wanted.get(column.name);
        if (seen) {
          // An older description of the run has another type than the latest: the column changed within the run.
          if (typeText(seen.type) !== typeText(type)) throw typeChanged(name, column.name, typeText(type), seen.kind, context, typeText(seen.type));
          continue;
        }
        const other = lower.get(column.name.toLowerCase());
        if (other !== undefined) {
          throw new SitesyncError(
            'SITESYNC_ERR_APPLY_SCHEMA',
            `columns ${other} and ${column.name} of ${name} from site ${context.source} differ only in case, which DuckDB (DuckDB site ${context.site}) cannot tell apart; rename one at the source`,
          );
        }
        lower.set(column.name.toLowerCase(), column.name);
        wanted.set(column.name, { type, kind: column.kind });
      }
    }
    return wanted;
  }

  /** A table with at least the wanted columns, created or widened as needed. */
  private async ensure(
    connection: DuckDbConnection,
    schema: string,
    table: string,
    wanted: ReadonlyMap<string, { type: DuckType; kind: ValueKind }>,
    own: readonly (readonly [string, string])[],
    relation: RelationInfo,
    context: TableContext,
  ): Promise<TableLayout> {
    let layout = await this.layout(connection, schema, table);
    const source = `${relation.schema}.${relation.table}`;
    if (layout === null) {
      await connection.run(createSchema(schema));
      await connection.run(createTable(schema, table, [...[...wanted].map(([name, { type }]) => [name, typeText(type)] as const), ...own]));
      layout = await this.reload(connection, schema, table);
      if (layout === null) throw new Error(`internal: ${schema}.${table} is not there after CREATE TABLE`);
      return layout;
    }
    const existing = new Map(layout.columns.map((c) => [c.name.toLowerCase(), c]));
    let altered = false;
    for (const [name, { type, kind }] of wanted) {
      const column = existing.get(name.toLowerCase());
      if (!column) {
        await connection.run(addColumn(layout.schema, layout.table, name, typeText(type)));
        altered = true;
        continue;
      }
      if (column.name !== name) {
        throw new SitesyncError(
          'SITESYNC_ERR_APPLY_SCHEMA',
          `column ${name} of ${source} from site ${context.source} is ${column.name} in ${layout.schema}.${layout.table} at DuckDB site ${context.site}, and DuckDB cannot tell names apart by case; rename it at the source, or stop sitesync and rename the DuckDB column, then start it again`,
        );
      }
      if (typeText(column.type) !== typeText(type)) throw typeChanged(source, name, typeText(column.type), kind, context, typeText(type));
    }
    return altered ? ((await this.reload(connection, schema, table)) ?? layout) : layout;
  }

  private async layout(connection: DuckDbConnection, schema: string, table: string): Promise<TableLayout | null> {
    const key = keyOf(schema, table);
    if (this.pending.has(key)) return this.pending.get(key)!;
    if (this.committed.has(key)) return this.committed.get(key)!;
    return this.reload(connection, schema, table);
  }

  /** A table's layout as the catalog has it now (in the open transaction), kept aside until it commits. */
  private async reload(connection: DuckDbConnection, schema: string, table: string): Promise<TableLayout | null> {
    const rows = (await connection.runAndReadAll(TABLE_COLUMNS, [schema, table])).getRows() as [string, string, string, string][];
    const first = rows[0];
    const layout: TableLayout | null =
      first === undefined
        ? null
        : {
            schema: first[0],
            table: first[1],
            columns: rows.map(([, , name, type]) => ({ name, type: parseTypeText(type), own: name.toLowerCase().startsWith(OWN_COLUMN_PREFIX) })),
          };
    // Cached only once a table exists: one created later (by this transaction) must be seen.
    if (layout !== null) this.pending.set(keyOf(schema, table), layout);
    return layout;
  }
}

/** One line: a column's DuckDB type is `stored`, and its source now sends `kind`, which DuckDB holds as `now`. */
function typeChanged(table: string, column: string, stored: string, kind: ValueKind, context: TableContext, now: string): SitesyncError {
  return new SitesyncError(
    'SITESYNC_ERR_APPLY_SCHEMA',
    `column ${column} of ${table} is ${stored} at DuckDB site ${context.site}, but site ${context.source} now sends it as ${formatKind(kind)} (DuckDB ${now}); ` +
      `stop sitesync, change the column to ${now} in both ${table} and its ${HISTORY_SUFFIX} table (ALTER TABLE … ALTER COLUMN … TYPE ${now}) or rename both tables aside to start afresh, then start sitesync again`,
  );
}
