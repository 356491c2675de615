/**
 * The ClickHouse tables of the replicated tables, as the server has them: created on first use (current state
 * for a table with a key, history for every table), new source columns added (ALTER TABLE … ADD COLUMN), and
 * everything else checked, with one line saying what to fix when it does not match: a column whose kind
 * changed to one its type cannot hold, a key that changed, a table created for the other delete mode, a name
 * another source table holds. Nothing is ever dropped or retyped: that is the operator's to decide.
 */
import { SitesyncError } from '../../src/errors.ts';
import type { RelationInfo } from '../../src/events/transaction.ts';
import { formatKind, type ValueKind } from '../../src/events/value-kind.ts';
import type { DeleteMode } from './clickhouse-config.ts';
import type { ClickHouseDriver, QuerySettings } from './clickhouse-driver.ts';
import { codecFor, columnTypeFor, kindOfType, type Capabilities, type ColumnCodec } from './clickhouse-kinds.ts';
import {
  addColumn,
  createCurrentTable,
  createHistoryTable,
  deleteModeOfEngine,
  parseOwnerComment,
  qualified,
  quoteString,
  RESERVED_PREFIX,
  tableNames,
  type ColumnDefinition,
  type TableOwner,
} from './clickhouse-statements.ts';

/** One ClickHouse table as loaded: its source columns (sitesync's own left out) and their types. */
export interface StoreTable {
  readonly name: string;
  readonly role: 'current' | 'history';
  /** Source columns in table order, by name: their ClickHouse type. */
  readonly columns: ReadonlyMap<string, string>;
  readonly key: readonly string[];
  /** Codecs of this table's columns for a relation (its kinds), and for columns the relation lacks (kinds read off their types). */
  codecs(relation: RelationInfo): ReadonlyMap<string, ColumnCodec>;
}

export interface SourceTables {
  readonly current: StoreTable | null;
  readonly history: StoreTable;
}

interface Loaded {
  readonly engineFull: string;
  readonly sortingKey: string;
  readonly comment: string;
  readonly columns: Map<string, string>;
}

export class TableCatalog {
  private readonly tables = new Map<string, SourceTables>();

  constructor(
    private readonly driver: ClickHouseDriver,
    private readonly database: string,
    private readonly deletes: DeleteMode,
    private readonly capabilities: Capabilities,
    private readonly ddlSettings: QuerySettings,
  ) {}

  /** The tables of `schema.table`, loaded by `ensure`. */
  of(schema: string, table: string): SourceTables {
    const tables = this.tables.get(`${schema}.${table}`);
    if (!tables) throw new Error(`internal: table ${schema}.${table} was not prepared before use`);
    return tables;
  }

  /** Forgets what was loaded (after a schema error: the operator may have fixed it). */
  forget(): void {
    this.tables.clear();
  }

  /**
   * Makes the tables of every relation ready: each source table's relations (in the order the batch met them)
   * bring their columns; the last one says whether it has a key. Throws one line (schema) for what does not match.
   */
  async ensure(relations: readonly RelationInfo[], source: string): Promise<void> {
    const bySource = new Map<string, RelationInfo[]>();
    for (const r of relations) {
      const id = `${r.schema}.${r.table}`;
      let list = bySource.get(id);
      if (!list) bySource.set(id, (list = []));
      if (!list.includes(r)) list.push(r);
    }
    for (const [id, list] of bySource) {
      // Known and every column there as it must be: nothing to ask the server.
      const known = this.tables.get(id);
      if (known && list.every((r) => this.fits(known, r))) continue;
      this.tables.delete(id);
      this.tables.set(id, await this.prepare(list, source));
    }
  }

  private fits(tables: SourceTables, relation: RelationInfo): boolean {
    const key = relation.columns.filter((c) => c.key).map((c) => c.name);
    if ((key.length > 0) !== (tables.current !== null)) return false;
    if (tables.current && tables.current.key.join('\u0000') !== key.join('\u0000')) return false; // checked again, and refused, by prepare
    return [tables.current, tables.history].every((t) => t === null || relation.columns.every((c) => t.columns.has(c.name) && codecFor(c.kind, t.columns.get(c.name)!) !== null));
  }

  private async prepare(relations: readonly RelationInfo[], source: string): Promise<SourceTables> {
    const latest = relations[relations.length - 1]!;
    const { schema, table } = latest;
    for (const r of relations) {
      for (const c of r.columns) {
        if (c.name.startsWith(RESERVED_PREFIX)) {
          throw schemaError(`column ${schema}.${table}.${c.name} from site ${source} starts with ${RESERVED_PREFIX}, which sitesync's own columns use at ClickHouse; rename it at the source`);
        }
      }
    }
    const names = tableNames(schema, table);
    const key = latest.columns.filter((c) => c.key).map((c) => c.name);
    const loaded = await this.load([names.current, names.history]);
    const definitions = (nullable: (key: boolean) => boolean): ColumnDefinition[] => {
      const seen = new Map<string, ColumnDefinition>();
      for (const r of relations) for (const c of r.columns) if (!seen.has(c.name)) seen.set(c.name, { name: c.name, type: columnTypeFor(c.kind, nullable(c.key), this.capabilities) });
      return [...seen.values()];
    };
    let current: StoreTable | null = null;
    if (key.length > 0) {
      const owner: TableOwner = { schema, table, role: 'current' };
      current = await this.ready(names.current, owner, loaded.get(names.current), relations, key, source, () =>
        createCurrentTable(this.database, names.current, definitions((isKey) => !isKey), key, this.deletes, owner),
      );
    }
    const historyOwner: TableOwner = { schema, table, role: 'history' };
    const history = await this.ready(names.history, historyOwner, loaded.get(names.history), relations, [], source, () => createHistoryTable(this.database, names.history, definitions(() => true), historyOwner));
    return { current, history };
  }

  /** Creates the table when missing, adds missing columns, checks the rest; returns it as it now is. */
  private async ready(name: string, owner: TableOwner, found: Loaded | undefined, relations: readonly RelationInfo[], key: readonly string[], source: string, create: () => string): Promise<StoreTable> {
    const where = `ClickHouse table ${qualified(this.database, name)}`;
    let loaded = found;
    if (!loaded) {
      await this.driver.command(create(), this.ddlSettings);
      loaded = (await this.load([name])).get(name);
      if (!loaded) throw schemaError(`${where} is still missing after CREATE TABLE; check the apply user's CREATE TABLE right on database ${this.database}`);
    }
    const claimed = parseOwnerComment(loaded.comment);
    if (claimed && (claimed.schema !== owner.schema || claimed.table !== owner.table || claimed.role !== owner.role)) {
      throw schemaError(
        `${where} holds the ${claimed.role === 'current' ? 'current state' : 'history'} of ${claimed.schema}.${claimed.table}, and ${owner.schema}.${owner.table} maps onto the same name; rename one of the two source tables`,
      );
    }
    if (owner.role === 'current') {
      const mode = deleteModeOfEngine(loaded.engineFull);
      if (mode === null) throw schemaError(`${where} is not a ReplacingMergeTree versioned by _sitesync_version (engine ${loaded.engineFull.split(' ')[0]}); drop it or rename it so that sitesync creates it again`);
      if (mode !== this.deletes) {
        throw schemaError(`${where} was created for deletes=${mode} and the site's ClickHouse URL says deletes=${this.deletes}; give deletes=${mode} in the URL, or recreate the table`);
      }
      const sorting = loaded.sortingKey.replace(/`/g, '').replace(/^\((.*)\)$/, '$1');
      if (sorting !== key.join(', ')) {
        throw schemaError(`${where} is ordered by (${sorting}) but the key of ${owner.schema}.${owner.table} is now (${key.join(', ')}); ClickHouse cannot change a sorting key: rebuild the table ordered by the new key (INSERT … SELECT into a new table), then sitesync resumes`);
      }
    }
    const nullable = (isKey: boolean): boolean => owner.role === 'history' || !isKey;
    let added = false;
    for (const r of relations) {
      for (const c of r.columns) {
        const type = loaded.columns.get(c.name);
        const wanted = columnTypeFor(c.kind, nullable(c.key), this.capabilities);
        if (type === undefined) {
          if (owner.role === 'current' && c.key) {
            throw schemaError(`${where} has no column ${c.name}, part of the key of ${owner.schema}.${owner.table} now; ClickHouse cannot change a sorting key: rebuild the table ordered by the new key`);
          }
          await this.driver.command(addColumn(this.database, name, { name: c.name, type: wanted }), this.ddlSettings);
          loaded.columns.set(c.name, wanted);
          added = true;
        } else if (codecFor(c.kind, type) === null) {
          throw schemaError(
            `column ${c.name} of ${where} is ${type} but site ${source} now sends ${r.schema}.${r.table}.${c.name} as ${formatKind(c.kind)} (${wanted}); ALTER TABLE ${qualified(this.database, name)} MODIFY COLUMN \`${c.name}\` ${wanted} (or String, which takes any kind), then sitesync resumes`,
          );
        }
      }
    }
    if (added) loaded = (await this.load([name])).get(name) ?? loaded;
    return storeTable(name, owner.role, loaded.columns, key);
  }

  private async load(names: readonly string[]): Promise<Map<string, Loaded>> {
    const list = names.map(quoteString).join(', ');
    const tables = await this.driver.query(`SELECT name, engine_full, sorting_key, comment FROM system.tables WHERE database = ${quoteString(this.database)} AND name IN (${list})`);
    const columns = await this.driver.query(`SELECT table, name, type FROM system.columns WHERE database = ${quoteString(this.database)} AND table IN (${list}) ORDER BY table, position`);
    const result = new Map<string, Loaded>();
    for (const [name, engineFull, sortingKey, comment] of tables.rows as string[][]) result.set(name!, { engineFull: engineFull!, sortingKey: sortingKey!, comment: comment!, columns: new Map() });
    for (const [table, name, type] of columns.rows as string[][]) {
      if (!name!.startsWith(RESERVED_PREFIX)) result.get(table!)?.columns.set(name!, type!);
    }
    return result;
  }
}

function storeTable(name: string, role: 'current' | 'history', columns: ReadonlyMap<string, string>, key: readonly string[]): StoreTable {
  const cache = new WeakMap<RelationInfo, ReadonlyMap<string, ColumnCodec>>();
  return {
    name,
    role,
    columns,
    key,
    codecs(relation) {
      let codecs = cache.get(relation);
      if (codecs) return codecs;
      const map = new Map<string, ColumnCodec>();
      const kinds = new Map<string, ValueKind>(relation.columns.map((c) => [c.name, c.kind]));
      for (const [column, type] of columns) {
        const kind = kinds.get(column) ?? kindOfType(type);
        const codec = kind ? codecFor(kind, type) : null;
        if (codec) map.set(column, codec);
        else if (kinds.has(column)) throw schemaError(`column ${column} of ClickHouse table ${name} is ${type}, which cannot hold ${formatKind(kinds.get(column)!)}`);
      }
      cache.set(relation, (codecs = map));
      return codecs;
    },
  };
}

export function schemaError(message: string): SitesyncError {
  return new SitesyncError('SITESYNC_ERR_APPLY_SCHEMA', message);
}
