/**
 * The SQL Server apply connection (connectors/sqlserver/apply-connection.ts) over the SimulatedSqlServer of
 * sqlserver-simulator.ts, for the sink's tests: every write goes through the simulator's transactions, so what
 * the sink applies is logged by the simulated CDC exactly as capture would read it (the progress row's change
 * first, relayed writes recognisable), rolled back with its transaction, and seen by readers after the commit.
 *
 * Every operation also builds its T-SQL with connectors/sqlserver/sqlserver-statements.ts, as
 * mssql-apply-connection.ts does, and keeps the text in `statements` (tests read which statement came first,
 * and whether an INSERT with an identity value carries SET IDENTITY_INSERT ON: without it the model refuses the
 * insert with SQL Server's error 544).
 *
 * What SQL Server does with the statements' CONVERTs is MODELLED here, not recorded from a server: a bound
 * value becomes the projected form of cdc-reader.ts that the simulator stores (`CONVERT(decimal(10,2), '1.5')`
 * becomes `1.50`, a datetime2(3) `2024-01-01T00:00:00.500`, a uniqueidentifier upper case, a char(n) padded with
 * spaces, a bit `true`…), following the documented behaviour of each type; a value the real CONVERT would
 * refuse or cut is refused with the error number SQL Server uses (2628 string truncation, 8115 overflow, 515
 * NULL into NOT NULL, 241 bad date text), as far as this model goes. Also modelled: a duplicate key leaves the
 * transaction open (XACT_ABORT OFF), an identity column is generated when an insert leaves it out, an update
 * of an identity column fails (8102), a lock held by another open transaction is SQL Server's lock timeout
 * (1222). Not modelled: collations (strings compare exactly, as the sink's exact image match does; a key
 * match in a case-insensitive collation would also match other cases), TOP (1) on duplicates beyond what the
 * simulator's API allows (such an update or delete is written as a delete of all and re-inserts).
 */
import type { NewParkedRecord, ParkedRecord } from '../../src/apply/sink.ts';
import { comparePositions } from '../../src/events/position.ts';
import type { Position } from '../../src/events/transaction.ts';
import type { ApplyConnection, BoundValue, ColumnValues, ConflictRow, ProgressRow, RowMatch, SpilledPart, TargetColumn, TargetTable } from '../../connectors/sqlserver/apply-connection.ts';
import { targetTable } from '../../connectors/sqlserver/apply-connection.ts';
import type { ProjectedValue } from '../../connectors/sqlserver/cdc-reader.ts';
import * as sql from '../../connectors/sqlserver/sqlserver-statements.ts';
import { SimDuplicateKeyError, SimLockError, simRequestError, type SimTransaction, type SimulatedSqlServer } from './sqlserver-simulator.ts';

type Row = Record<string, ProjectedValue>;

const BOOKKEEPING = 'sitesync';

export interface SimulatedApplyOptions {
  /**
   * Called before each statement runs (its T-SQL text): an Error returned is thrown instead, as the server or
   * the driver would (a lost connection, a refused value).
   */
  readonly failWhen?: (text: string) => Error | undefined;
  /** Collations of character columns, by `schema.table.column` (default: none known). */
  readonly collations?: Readonly<Record<string, string>>;
}

export class SimulatedApplyConnection implements ApplyConnection {
  /** The T-SQL of every statement run, in order; `BEGIN TRANSACTION`, `COMMIT`, `ROLLBACK` included. */
  readonly statements: string[] = [];
  private tx: SimTransaction | null = null;
  private closed = false;

  constructor(
    readonly server: SimulatedSqlServer,
    private readonly options: SimulatedApplyOptions = {},
  ) {}

  private statement(text: string): void {
    if (this.closed) throw Object.assign(new Error('Connection is closed.'), { name: 'ConnectionError', code: 'ECONNCLOSED' });
    this.statements.push(text);
    const failure = this.options.failWhen?.(text);
    if (failure) throw failure;
  }

  /** Runs `work` in the open transaction, or in one of its own (autocommit). */
  private write<T>(work: (tx: SimTransaction) => T): T {
    if (this.tx) return translate(() => work(this.tx!));
    const tx = this.server.begin();
    try {
      const result = translate(() => work(tx));
      tx.commit();
      return result;
    } catch (error) {
      tx.rollback();
      throw error;
    }
  }

  /** Rows of a table as this connection sees them: its own open transaction's writes included. */
  private view(schema: string, table: string): Row[] {
    const t = this.server.describeTable(schema, table);
    if (!t) throw simRequestError(208, `Invalid object name '${schema}.${table}'.`);
    // Inside a transaction the simulator's tables hold its writes (they go to the table at once); outside,
    // the committed state.
    const rows = this.tx ? [...this.server.table(schema, table).rows.values()].map((r) => t.columns.map((c) => r[c.name] ?? null)) : this.server.rows(schema, table);
    return rows.map((values) => Object.fromEntries(t.columns.map((c, i) => [c.name, values[i] ?? null])));
  }

  async ensureBookkeeping(): Promise<void> {
    this.statement(sql.CREATE_SCHEMA);
    this.statement(sql.EXISTING_TABLES);
    for (const { name, create } of sql.BOOKKEEPING_TABLES) {
      if (this.server.describeTable(BOOKKEEPING, name)) continue;
      this.statement(create);
      if (name === 'apply_progress') {
        // What setup does at a real site: the table with its capture instance sitesync_apply_progress.
        this.server.createApplyProgress();
        continue;
      }
      this.server.createTable(BOOKKEEPING, name, BOOKKEEPING_COLUMNS[name]!);
    }
  }

  async describeTable(schema: string, table: string): Promise<TargetTable | null> {
    this.statement(sql.describeTableStatement(schema, table).text);
    const t = this.server.describeTable(schema, table);
    if (!t) return null;
    const collations = this.options.collations ?? {};
    return targetTable(
      schema,
      table,
      t.columns.map(
        (c): TargetColumn => ({
          name: c.name,
          type: c.type.toLowerCase(),
          maxLength: c.maxLength,
          precision: c.precision,
          scale: c.scale,
          nullable: c.nullable,
          identity: c.identity,
          computed: false,
          keyOrdinal: c.keyOrdinal,
          collation: collations[`${schema}.${table}.${c.name}`] ?? null,
        }),
      ),
    );
  }

  async begin(): Promise<void> {
    this.statement('BEGIN TRANSACTION');
    if (this.tx) throw new Error('internal: a transaction is open already');
    this.tx = this.server.begin();
  }

  async commit(): Promise<void> {
    this.statement('COMMIT');
    const tx = this.tx;
    if (!tx) throw new Error('internal: no open transaction to commit');
    this.tx = null;
    tx.commit();
  }

  async rollback(): Promise<void> {
    if (this.closed) return; // the server rolled it back when the connection closed
    // failWhen may refuse it (a timeout, a lost reply): the transaction then stays open as the server left it.
    this.statement('ROLLBACK');
    const tx = this.tx;
    this.tx = null;
    tx?.rollback();
  }

  async advanceProgress(row: ProgressRow, mode: 'forward' | 'always'): Promise<boolean> {
    this.statement(sql.progressStatement(row, mode).text);
    return this.write((tx) => {
      const key = { source: row.source };
      const found = tx.find(BOOKKEEPING, 'apply_progress', key);
      if (!found) {
        tx.insert(BOOKKEEPING, 'apply_progress', { source: row.source, source_kind: row.sourceKind, position: row.position, commit_time_micros: row.commitTimeMicros.toString(), applied_transactions: '1' });
        return true;
      }
      const [, , position, , applied] = found as [string, string, string, string, string];
      const moves = comparePositions(row.position, position) > 0;
      if (!moves && mode === 'forward') return false;
      const count = (BigInt(applied) + 1n).toString();
      tx.update(BOOKKEEPING, 'apply_progress', key, moves ? { source_kind: row.sourceKind, position: row.position, commit_time_micros: row.commitTimeMicros.toString(), applied_transactions: count } : { applied_transactions: count });
      return true;
    });
  }

  async readProgress(source: string): Promise<Position | null> {
    this.statement(sql.readProgressStatement(source).text);
    const row = this.view(BOOKKEEPING, 'apply_progress').find((r) => r.source === source);
    return row ? String(row.position) : null;
  }

  async insert(table: TargetTable, row: ColumnValues): Promise<'inserted' | 'duplicate'> {
    const text = sql.insertStatement(table, row).text;
    this.statement(text);
    const values = this.stored(table, row);
    const identity = table.columns.find((c) => c.identity);
    if (identity && row.columns.includes(identity) && !text.includes(`SET IDENTITY_INSERT ${sql.qualifiedName(table.schema, table.table)} ON`)) {
      throw simRequestError(544, `Cannot insert explicit value for identity column in table '${table.table}' when IDENTITY_INSERT is set to OFF.`);
    }
    if (identity && !row.columns.includes(identity)) {
      const used = this.view(table.schema, table.table).map((r) => Number(r[identity.name] ?? 0));
      values[identity.name] = storedIdentity(identity, Math.max(0, ...used) + 1);
    }
    for (const c of table.columns) {
      if (!c.nullable && !c.identity && (values[c.name] ?? null) === null) throw simRequestError(515, `Cannot insert the value NULL into column '${c.name}', table '${table.schema}.${table.table}'; column does not allow nulls. INSERT fails.`);
    }
    try {
      this.write((tx) => tx.insert(table.schema, table.table, values));
      return 'inserted';
    } catch (error) {
      if (error instanceof SimDuplicateKeyError) return 'duplicate'; // the statement wrote nothing; the transaction goes on
      throw error;
    }
  }

  async update(table: TargetTable, set: ColumnValues, match: RowMatch): Promise<number> {
    this.statement(sql.updateStatement(table, set, match).text);
    for (const c of set.columns) if (c.identity) throw simRequestError(8102, `Cannot update identity column '${c.name}'.`);
    const values = this.stored(table, set);
    for (const c of set.columns) {
      if (!c.nullable && values[c.name] === null) throw simRequestError(515, `Cannot insert the value NULL into column '${c.name}', table '${table.schema}.${table.table}'; column does not allow nulls. UPDATE fails.`);
    }
    const key = this.stored(table, match);
    return this.write((tx) => {
      if (match.by === 'key') return tx.update(table.schema, table.table, key, values);
      return this.topOne(tx, table, key, (row) => ({ ...row, ...values }));
    });
  }

  async delete(table: TargetTable, match: RowMatch): Promise<number> {
    this.statement(sql.deleteStatement(table, match).text);
    const key = this.stored(table, match);
    return this.write((tx) => {
      if (match.by === 'key') return tx.delete(table.schema, table.table, key);
      return this.topOne(tx, table, key, null);
    });
  }

  /**
   * TOP (1) of a table without a key: one of the rows the image finds is changed (`next`) or deleted (null).
   * The simulator changes every matching row, so with duplicates they are all deleted and the others put back.
   */
  private topOne(tx: SimTransaction, table: TargetTable, key: Row, next: ((row: Row) => Row) | null): number {
    const matching = this.view(table.schema, table.table).filter((r) => Object.entries(key).every(([name, v]) => same(r[name] ?? null, v)));
    if (matching.length === 0) return 0;
    if (matching.length === 1) {
      if (next) tx.update(table.schema, table.table, key, next(matching[0]!));
      else tx.delete(table.schema, table.table, key);
      return 1;
    }
    tx.delete(table.schema, table.table, key);
    for (const row of matching.slice(1)) tx.insert(table.schema, table.table, row);
    if (next) tx.insert(table.schema, table.table, next(matching[0]!));
    return 1;
  }

  async exists(table: TargetTable, match: RowMatch): Promise<boolean> {
    this.statement(sql.existsStatement(table, match).text);
    const key = this.stored(table, match);
    return this.write((tx) => tx.find(table.schema, table.table, key) !== null);
  }

  async deleteAll(table: TargetTable): Promise<number> {
    this.statement(sql.deleteAllStatement(table).text);
    return this.write((tx) => tx.delete(table.schema, table.table, {}));
  }

  async recordConflict(row: ConflictRow): Promise<void> {
    this.statement(sql.insertConflictStatement(row).text);
    const id = Math.max(0, ...this.view(BOOKKEEPING, 'conflicts').map((r) => Number(r.id))) + 1;
    this.write((tx) =>
      tx.insert(BOOKKEEPING, 'conflicts', {
        id: String(id),
        logged_at: new Date().toISOString().slice(0, 23),
        kind: row.kind,
        table_name: row.table,
        key: row.keyJson,
        remote_site: row.remoteSite,
        remote_transaction: row.remoteTransaction,
        remote_commit_time: sql.microsToDatetime2(row.remoteCommitTimeMicros),
        local_site: row.localSite,
        local_commit_time: row.localCommitTimeMicros === null ? null : sql.microsToDatetime2(row.localCommitTimeMicros),
        policy: row.policy,
        winner: row.winner,
        resolution: row.resolution,
      }),
    );
  }

  async insertParked(r: NewParkedRecord): Promise<void> {
    this.statement(sql.insertParkedStatement(r).text);
    const id = r.id.toLowerCase();
    this.write((tx) => {
      if (tx.find(BOOKKEEPING, 'parked', { id })) return;
      tx.insert(BOOKKEEPING, 'parked', {
        id,
        parked_at: new Date().toISOString().slice(0, 23),
        kind: r.kind,
        source: r.source?.slice(0, 255) ?? null,
        transaction_id: r.transactionId?.slice(0, 255) ?? null,
        body_sha256: r.bodySha256,
        user_id: r.userId?.slice(0, 255) ?? null,
        route: r.route.slice(0, 60_000),
        reason: r.reason.slice(0, 2000),
        done_at: null,
      });
    });
  }

  async findParked(id: string): Promise<ParkedRecord | null> {
    this.statement(sql.findParkedStatement(id).text);
    const r = this.view(BOOKKEEPING, 'parked').find((p) => p.id === id.toLowerCase());
    if (!r) return null;
    const text = (v: ProjectedValue): string | null => (v === null ? null : String(v));
    return {
      id: String(r.id),
      kind: r.kind === 'refused' ? 'refused' : 'skipped',
      source: text(r.source ?? null),
      transactionId: text(r.transaction_id ?? null),
      bodySha256: String(r.body_sha256),
      userId: text(r.user_id ?? null),
      route: String(r.route),
      reason: String(r.reason),
      done: r.done_at !== null,
    };
  }

  async finishParked(id: string): Promise<void> {
    this.statement(sql.finishParkedStatement(id).text);
    const now = new Date().toISOString().slice(0, 23);
    this.write((tx) => {
      const row = tx.find(BOOKKEEPING, 'parked', { id: id.toLowerCase() });
      if (row && row[9] === null) tx.update(BOOKKEEPING, 'parked', { id: id.toLowerCase() }, { done_at: now });
    });
  }

  async finishRetried(transactionId: string, parkedId: string): Promise<number> {
    this.statement(sql.finishRetriedStatement(transactionId, parkedId).text);
    const now = new Date().toISOString().slice(0, 23);
    const open = this.view(BOOKKEEPING, 'parked');
    if (!open.some((r) => r.id === parkedId.toLowerCase() && r.done_at === null)) return 0;
    const targets = open.filter((r) => r.transaction_id === transactionId && r.kind === 'skipped' && r.done_at === null);
    return this.write((tx) => {
      for (const r of targets) tx.update(BOOKKEEPING, 'parked', { id: r.id ?? null }, { done_at: now });
      return targets.length;
    });
  }

  async keepPart(source: string, transactionId: string, part: number, spilled: SpilledPart): Promise<void> {
    this.statement(sql.keepPartStatement(source, transactionId, part, spilled.schemaVersion, spilled.body).text);
    this.write((tx) => {
      const key = { source, transaction_id: transactionId, part };
      tx.delete(BOOKKEEPING, 'spilled_parts', key);
      tx.insert(BOOKKEEPING, 'spilled_parts', { ...key, schema_version: spilled.schemaVersion, body: Buffer.from(spilled.body) });
    });
  }

  async hasPart(source: string, transactionId: string, part: number): Promise<boolean> {
    this.statement(sql.hasPartStatement(source, transactionId, part).text);
    return this.partRow(source, transactionId, part) !== undefined;
  }

  async readPart(source: string, transactionId: string, part: number): Promise<SpilledPart | null> {
    this.statement(sql.readPartStatement(source, transactionId, part).text);
    const row = this.partRow(source, transactionId, part);
    return row ? { schemaVersion: Number(row.schema_version), body: row.body as Buffer } : null;
  }

  private partRow(source: string, transactionId: string, part: number): Row | undefined {
    return this.view(BOOKKEEPING, 'spilled_parts').find((r) => r.source === source && r.transaction_id === transactionId && r.part === part);
  }

  async spilledBytes(source: string): Promise<number> {
    this.statement(sql.spilledBytesStatement(source).text);
    return this.view(BOOKKEEPING, 'spilled_parts')
      .filter((r) => r.source === source)
      .reduce((n, r) => n + (r.body as Buffer).length, 0);
  }

  async forgetParts(source: string): Promise<void> {
    this.statement(sql.forgetPartsStatement(source).text);
    this.write((tx) => tx.delete(BOOKKEEPING, 'spilled_parts', { source }));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const tx = this.tx;
    this.tx = null;
    tx?.rollback(); // a connection that closes with a transaction open: the server rolls it back
  }

  /** The projected forms SQL Server would store for these bound values (the model of the CONVERTs). */
  private stored(table: TargetTable, values: ColumnValues): Row {
    const row: Row = {};
    values.columns.forEach((c, i) => {
      row[c.name] = storedValue(table, c, values.values[i] ?? null);
    });
    return row;
  }
}

/** A connect function for SqlServerSinkOptions over one simulator, keeping every connection it opened. */
export function simulatedConnect(server: SimulatedSqlServer, options: SimulatedApplyOptions = {}): { connect: () => Promise<ApplyConnection>; connections: SimulatedApplyConnection[] } {
  const connections: SimulatedApplyConnection[] = [];
  return {
    connections,
    connect: async () => {
      const c = new SimulatedApplyConnection(server, options);
      connections.push(c);
      return c;
    },
  };
}

function translate<T>(work: () => T): T {
  try {
    return work();
  } catch (error) {
    if (error instanceof SimLockError) throw simRequestError(1222, `Lock request time out period exceeded. (${error.message})`);
    throw error;
  }
}

function same(a: ProjectedValue, b: ProjectedValue): boolean {
  if (Buffer.isBuffer(a) && Buffer.isBuffer(b)) return a.equals(b);
  return a === b;
}

/** The bookkeeping tables other than apply_progress (which the simulator creates as setup does). */
const BOOKKEEPING_COLUMNS: Readonly<Record<string, { name: string; type: string; maxLength?: number; keyOrdinal?: number; nullable?: boolean; identity?: boolean; scale?: number }[]>> = {
  parked: [
    { name: 'id', type: 'char', maxLength: 36, keyOrdinal: 1 },
    { name: 'parked_at', type: 'datetime2', scale: 6, nullable: false },
    { name: 'kind', type: 'varchar', maxLength: 8, nullable: false },
    { name: 'source', type: 'nvarchar', maxLength: 510 },
    { name: 'transaction_id', type: 'nvarchar', maxLength: 510 },
    { name: 'body_sha256', type: 'char', maxLength: 64, nullable: false },
    { name: 'user_id', type: 'nvarchar', maxLength: 510 },
    { name: 'route', type: 'nvarchar', nullable: false },
    { name: 'reason', type: 'nvarchar', nullable: false },
    { name: 'done_at', type: 'datetime2', scale: 6 },
  ],
  spilled_parts: [
    { name: 'source', type: 'varchar', maxLength: 40, keyOrdinal: 1 },
    { name: 'transaction_id', type: 'varchar', maxLength: 128, keyOrdinal: 2 },
    { name: 'part', type: 'int', keyOrdinal: 3 },
    { name: 'schema_version', type: 'int', nullable: false },
    { name: 'body', type: 'varbinary', nullable: false },
  ],
  conflicts: [
    { name: 'id', type: 'bigint', keyOrdinal: 1, identity: true },
    { name: 'logged_at', type: 'datetime2', scale: 6, nullable: false },
    { name: 'kind', type: 'varchar', maxLength: 32, nullable: false },
    { name: 'table_name', type: 'nvarchar', maxLength: 522, nullable: false },
    { name: 'key', type: 'nvarchar', nullable: false },
    { name: 'remote_site', type: 'varchar', maxLength: 40, nullable: false },
    { name: 'remote_transaction', type: 'nvarchar', maxLength: 510, nullable: false },
    { name: 'remote_commit_time', type: 'datetime2', scale: 6, nullable: false },
    { name: 'local_site', type: 'varchar', maxLength: 40 },
    { name: 'local_commit_time', type: 'datetime2', scale: 6 },
    { name: 'policy', type: 'varchar', maxLength: 32, nullable: false },
    { name: 'winner', type: 'varchar', maxLength: 8, nullable: false },
    { name: 'resolution', type: 'varchar', maxLength: 8, nullable: false },
  ],
};

function storedIdentity(column: TargetColumn, n: number): ProjectedValue {
  return column.type === 'bigint' ? String(n) : column.type === 'decimal' || column.type === 'numeric' ? String(n) : n;
}

const DATE_TEXT = /^(\d{4})-(\d{2})-(\d{2})$/;
const DATETIME_TEXT = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.(\d{1,7}))?(\+00:00)?$/;
const TIME_TEXT = /^(\d{2}:\d{2}:\d{2})(?:\.(\d{1,7}))?$/;

/**
 * The model of one CONVERT (sqlserver-statements.ts valueExpression) followed by the reader's projection
 * (sqlserver-kinds.ts projection): bound value → what the simulator stores.
 */
export function storedValue(table: TargetTable, column: TargetColumn, value: BoundValue): ProjectedValue {
  if (value === null) return null;
  const where = `${table.schema}.${table.table}.${column.name}`;
  const text = typeof value === 'string' ? value : null;
  const needText = (): string => {
    if (text === null) throw simRequestError(206, `Operand type clash: varbinary(max) is incompatible with ${sql.typeText(column)} (${where})`);
    return text;
  };
  const t = column.type;
  switch (t) {
    case 'tinyint':
    case 'smallint':
    case 'int': {
      const n = Number(needText());
      const [min, max] = t === 'tinyint' ? [0, 255] : t === 'smallint' ? [-32768, 32767] : [-2147483648, 2147483647];
      if (!Number.isInteger(n)) throw simRequestError(245, `Conversion failed when converting the nvarchar value '${text}' to data type ${t}.`);
      if (n < min || n > max) throw simRequestError(220, `Arithmetic overflow error for data type ${t}, value = ${text}.`);
      return n;
    }
    case 'bigint': {
      const n = BigInt(needText());
      if (n < -(2n ** 63n) || n >= 2n ** 63n) throw simRequestError(8115, `Arithmetic overflow error converting expression to data type bigint.`);
      return n.toString();
    }
    case 'bit':
      return needText() !== '0';
    case 'decimal':
    case 'numeric':
    case 'money':
    case 'smallmoney': {
      const scale = t === 'money' || t === 'smallmoney' ? 4 : column.scale;
      const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(needText());
      if (!m) throw simRequestError(8114, `Error converting data type nvarchar to ${sql.typeText(column)}.`);
      const fraction = (m[3] ?? '').padEnd(scale, '0');
      if (fraction.length > scale) throw new Error(`model: ${where} would round ${text} (sqlserver-bind.ts should have refused it)`);
      const integer = m[2]!.replace(/^0+(?=\d)/, '');
      if (t !== 'money' && t !== 'smallmoney' && integer.replace(/^0+/, '').length > column.precision - column.scale) throw simRequestError(8115, `Arithmetic overflow error converting nvarchar to data type numeric.`);
      const zero = /^0*$/.test(integer + fraction);
      return `${m[1] && !zero ? '-' : ''}${integer}${scale > 0 ? `.${fraction}` : ''}`;
    }
    case 'float':
    case 'real': {
      const x = Number(needText());
      return sql.typeText(column) === 'real' ? Math.fround(x) : x;
    }
    case 'char':
    case 'nchar':
    case 'varchar':
    case 'nvarchar':
    case 'text':
    case 'ntext':
    case 'sysname':
    case 'xml': {
      const s = needText();
      const national = t === 'nchar' || t === 'nvarchar';
      const limit = column.maxLength === -1 || t === 'text' || t === 'ntext' || t === 'xml' ? null : national ? column.maxLength / 2 : column.maxLength;
      const size = national ? s.length : Buffer.byteLength(s, 'utf8');
      if (limit !== null && size > limit) throw simRequestError(2628, `String or binary data would be truncated in table '${table.schema}.${table.table}', column '${column.name}'.`);
      return (t === 'char' || t === 'nchar') && limit !== null ? s.padEnd(limit, ' ') : s;
    }
    case 'binary':
    case 'varbinary':
    case 'image': {
      if (!Buffer.isBuffer(value)) throw simRequestError(257, `Implicit conversion from data type nvarchar to ${t} is not allowed.`);
      if (column.maxLength !== -1 && t !== 'image' && value.length > column.maxLength) throw simRequestError(2628, `String or binary data would be truncated in table '${table.schema}.${table.table}', column '${column.name}'.`);
      return t === 'binary' ? Buffer.concat([value, Buffer.alloc(Math.max(0, column.maxLength - value.length))]) : Buffer.from(value);
    }
    case 'uniqueidentifier': {
      const s = needText();
      if (!/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(s)) throw simRequestError(8169, 'Conversion failed when converting from a character string to uniqueidentifier.');
      return s.toUpperCase();
    }
    case 'date':
      if (!DATE_TEXT.test(needText())) throw simRequestError(241, 'Conversion failed when converting date and/or time from character string.');
      return text;
    case 'time': {
      const m = TIME_TEXT.exec(needText());
      if (!m) throw simRequestError(241, 'Conversion failed when converting date and/or time from character string.');
      if ((m[2] ?? '').replace(/0+$/, '').length > column.scale) throw new Error(`model: ${where} would round ${text} (sqlserver-bind.ts should have refused it)`);
      return column.scale > 0 ? `${m[1]}.${(m[2] ?? '').padEnd(column.scale, '0').slice(0, column.scale)}` : m[1]!;
    }
    case 'datetime':
    case 'smalldatetime':
    case 'datetime2':
    case 'datetimeoffset': {
      const m = DATETIME_TEXT.exec(needText());
      if (!m || (t === 'datetimeoffset') !== (m[4] !== undefined)) throw simRequestError(241, 'Conversion failed when converting date and/or time from character string.');
      const digits = t === 'datetime' ? 3 : t === 'smalldatetime' ? 0 : column.scale;
      const fraction = (m[3] ?? '').replace(/0+$/, '');
      if (fraction.length > digits) throw new Error(`model: ${where} would round ${text} (sqlserver-bind.ts should have refused it)`);
      const base = `${m[1]}T${m[2]}`;
      if (t === 'datetimeoffset') return `${base}${digits > 0 ? `.${fraction.padEnd(digits, '0')}` : ''}+00:00`; // the default form prints every digit
      return fraction === '' || digits === 0 ? base : `${base}.${fraction.padEnd(digits, '0')}`; // style 126: no fraction when it is zero
    }
    default:
      return needText();
  }
}
