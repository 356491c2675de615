/**
 * The Oracle apply connection (connectors/oracle/apply-connection.ts) over the SimulatedOracle of
 * oracle-simulator.ts, for the sink's tests: every write goes through the simulator's transactions, so what the
 * sink applies is written to the simulated redo exactly as capture would mine it (the progress row's change
 * first, relayed writes recognisable), rolled back with its transaction, and seen by readers after the commit.
 *
 * Every operation also builds its SQL with connectors/oracle/oracle-statements.ts, as
 * oracledb-apply-connection.ts does, and keeps the text in `statements` (tests read which statement came
 * first, that a TRUNCATE is a DELETE, that no statement ends with `;`).
 *
 * What Oracle does with the statements' conversions is a MODEL here, not recorded from a database: a bound value
 * becomes the Oracle text form the simulator stores (spec: what SQL_REDO's literals hold under sitesync's NLS
 * settings) by the documented behaviour of each conversion — TO_NUMBER's value printed as Oracle prints a NUMBER
 * (`.5`, no trailing zeros), TO_TIMESTAMP's with nine fraction digits (FF9), TO_TIMESTAMP_TZ's with its offset
 * (a WITH LOCAL TIME ZONE value printed in the session zone, UTC, without one), TO_DSINTERVAL's as
 * `+DD HH:MI:SS.FFFFFFFFF`, TO_YMINTERVAL's as `+YY-MM`, RAW and BLOB bytes as upper-case hex, an IEEE value as
 * its shortest digits (`Inf`, `-Inf`, `Nan`), '' and zero bytes as NULL (Oracle's own rule: a test sees it if the
 * bind ever lets one through), CHAR padded by the simulator. What the real conversion would refuse is refused
 * with the ORA number Oracle uses (12899 value too large, 1438 precision, 1400/1407 NULL, 1861 format, 1873
 * interval precision, 32795 identity); what it would round silently throws a `model:` error (oracle-bind.ts
 * should have refused it). Also modelled: a failed statement undoes itself alone (the simulator writes nothing
 * before it throws) and the transaction goes on; a row held by another open transaction is the simulator's
 * SimLockError, given as ORA-30006 (Oracle would wait). Not modelled: collations (NLS_COMP=BINARY is what the
 * session pins), ROWNUM = 1 on identical rows beyond what the simulator's API allows (such an update or delete is
 * written as a delete of all of them and inserts of the others), triggers, constraints but the primary key.
 */
import type { NewParkedRecord, ParkedRecord } from '../../src/apply/sink.ts';
import { comparePositions } from '../../src/events/position.ts';
import type { Position } from '../../src/events/transaction.ts';
import { formatFloat32, formatFloat64 } from '../../src/events/value-parser.ts';
import type { OracleColumn } from '../../connectors/oracle/logminer-reader.ts';
import {
  baseType,
  targetTable,
  type ApplyConnection,
  type BoundValue,
  type ColumnValues,
  type ConflictRow,
  type IdentityGeneration,
  type ProgressRow,
  type RowMatch,
  type SpilledPart,
  type TargetColumn,
  type TargetTable,
} from '../../connectors/oracle/apply-connection.ts';
import * as sql from '../../connectors/oracle/oracle-statements.ts';
import { SimLockError, simOraError, SimUniqueError, type SimOracleColumn, type SimOracleTransaction, type SimulatedOracle } from './oracle-simulator.ts';

type Row = Record<string, string | null>;

const OWNER = 'SITESYNC';

export interface SimulatedApplyOptions {
  /**
   * Called before each statement runs (its SQL text; `COMMIT`, `ROLLBACK` for those): an Error returned is
   * thrown instead, as the database or the driver would (a lost connection, a refused value).
   */
  readonly failWhen?: (text: string) => Error | undefined;
  /** NLS_CHARACTERSET (default AL32UTF8); the N types are always AL16UTF16. */
  readonly charset?: string;
  /** Identity columns, by `OWNER.TABLE.COLUMN`. */
  readonly identities?: Readonly<Record<string, IdentityGeneration>>;
  /** Virtual columns, by `OWNER.TABLE.COLUMN`. */
  readonly virtual?: readonly string[];
}

export class SimulatedApplyConnection implements ApplyConnection {
  /** The SQL of every statement run, in order; `COMMIT` and `ROLLBACK` included. */
  readonly statements: string[] = [];
  private tx: SimOracleTransaction | null = null;
  private closed = false;

  constructor(
    readonly db: SimulatedOracle,
    private readonly options: SimulatedApplyOptions = {},
  ) {}

  private statement(text: string): void {
    if (this.closed) throw Object.assign(new Error('NJS-003: invalid or closed connection'), { code: 'NJS-003' });
    this.statements.push(text);
    const failure = this.options.failWhen?.(text);
    if (failure) throw failure;
  }

  /** Runs `work` in the open transaction, or in one of its own (autocommit). */
  private write<T>(work: (tx: SimOracleTransaction) => T): T {
    if (this.tx) return translate(() => work(this.tx!));
    const tx = this.db.begin();
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
  private view(owner: string, table: string): Row[] {
    const t = this.db.describeTable(owner, table);
    if (!t) throw simOraError(942, 'table or view does not exist');
    // Inside a transaction the simulator's tables hold its writes (they go to the table at once); outside,
    // the committed state.
    const rows = this.tx ? [...this.db.table(owner, table).rows.values()].map((r) => t.columns.map((c) => r[c.name] ?? null)) : this.db.rows(owner, table);
    return rows.map((values) => Object.fromEntries(t.columns.map((c, i) => [c.name, values[i] ?? null])));
  }

  async ensureBookkeeping(): Promise<void> {
    this.statement(sql.EXISTING_TABLES);
    for (const { name, create } of sql.BOOKKEEPING_TABLES) {
      if (this.db.describeTable(OWNER, name)) continue;
      for (const text of create) this.statement(text);
      if (name === 'APPLY_PROGRESS') this.db.createApplyProgress(); // as setup creates it
      else this.db.createTable(OWNER, name, BOOKKEEPING_COLUMNS[name]!);
    }
  }

  async describeTable(schema: string, table: string): Promise<TargetTable | null> {
    this.statement(sql.describeTableStatement(schema, table).text);
    const t = this.db.describeTable(schema, table);
    if (!t) return null;
    return targetTable(
      schema,
      table,
      t.columns.map((c) => this.targetColumn(schema, table, c)),
    );
  }

  /** What ALL_TAB_COLS would say of a simulator column (DATA_TYPE's sizes moved to precision and scale). */
  private targetColumn(schema: string, table: string, c: OracleColumn): TargetColumn {
    const type = baseType(c.type);
    const sizes = [...c.type.matchAll(/\((\d+)\)/g)].map((m) => Number(m[1]));
    let precision = c.precision;
    let scale = c.scale;
    if (type === 'TIMESTAMP' || type.startsWith('TIMESTAMP WITH')) scale ??= sizes[0] ?? 6;
    if (type === 'INTERVAL DAY TO SECOND') {
      precision ??= sizes[0] ?? 2;
      scale ??= sizes[1] ?? 6;
    }
    if (type === 'INTERVAL YEAR TO MONTH') precision ??= sizes[0] ?? 2;
    const national = type === 'NVARCHAR2' || type === 'NCHAR' || type === 'NCLOB';
    const character = national || type === 'VARCHAR2' || type === 'CHAR' || type === 'CLOB';
    const key = `${schema}.${table}.${c.name}`;
    return {
      name: c.name,
      type,
      precision,
      scale,
      dataLength: c.dataLength,
      charLength: c.charLength,
      nullable: c.nullable,
      keyOrdinal: c.keyOrdinal,
      identity: this.options.identities?.[key] ?? null,
      virtual: this.options.virtual?.includes(key) ?? false,
      charset: national ? 'AL16UTF16' : character ? (this.options.charset ?? 'AL32UTF8') : null,
    };
  }

  async begin(): Promise<void> {
    if (this.closed) throw Object.assign(new Error('NJS-003: invalid or closed connection'), { code: 'NJS-003' });
    if (this.tx) throw new Error('internal: a transaction is open already');
    this.tx = this.db.begin(); // Oracle sends nothing: the transaction starts with its first write
  }

  async commit(): Promise<void> {
    this.statement('COMMIT');
    const tx = this.tx;
    if (!tx) throw new Error('internal: no open transaction to commit');
    this.tx = null;
    tx.commit();
  }

  async rollback(): Promise<void> {
    if (this.closed) return; // Oracle rolled it back when the session ended
    // failWhen may refuse it (a timeout, a lost reply): the transaction then stays open as Oracle left it.
    this.statement('ROLLBACK');
    const tx = this.tx;
    this.tx = null;
    tx?.rollback();
  }

  async advanceProgress(row: ProgressRow, mode: 'forward' | 'always'): Promise<boolean> {
    this.statement(sql.progressStatement(row, mode).text);
    return this.write((tx) => {
      const key = { SOURCE: row.source };
      const found = tx.find(OWNER, 'APPLY_PROGRESS', key);
      if (!found) {
        tx.insert(OWNER, 'APPLY_PROGRESS', { SOURCE: row.source, SOURCE_KIND: row.sourceKind, POSITION: row.position, COMMIT_TIME_MICROS: row.commitTimeMicros.toString(), APPLIED_TRANSACTIONS: '1' });
        return true;
      }
      const [, , position, , applied] = found as [string, string, string, string, string];
      const moves = comparePositions(row.position, position) > 0;
      if (!moves && mode === 'forward') return false; // WHEN MATCHED … WHERE false: no row merged, no redo
      const count = (BigInt(applied) + 1n).toString();
      tx.update(
        OWNER,
        'APPLY_PROGRESS',
        key,
        moves ? { SOURCE_KIND: row.sourceKind, POSITION: row.position, COMMIT_TIME_MICROS: row.commitTimeMicros.toString(), APPLIED_TRANSACTIONS: count } : { APPLIED_TRANSACTIONS: count },
      );
      return true;
    });
  }

  async readProgress(source: string): Promise<Position | null> {
    this.statement(sql.readProgressStatement(source).text);
    const row = this.view(OWNER, 'APPLY_PROGRESS').find((r) => r.SOURCE === source);
    return row ? String(row.POSITION) : null;
  }

  async insert(table: TargetTable, row: ColumnValues): Promise<'inserted' | 'duplicate'> {
    this.statement(sql.insertStatement(table, row).text);
    const values = stored(table, row);
    for (const c of row.columns) {
      if (c.identity === 'ALWAYS') throw simOraError(32795, 'cannot insert into a generated always identity column');
    }
    try {
      this.write((tx) => tx.insert(table.schema, table.table, values));
      return 'inserted';
    } catch (error) {
      if (error instanceof SimUniqueError) return 'duplicate'; // Oracle undid the statement; the transaction goes on
      throw error;
    }
  }

  async update(table: TargetTable, set: ColumnValues, match: RowMatch): Promise<number> {
    this.statement(sql.updateStatement(table, set, match).text);
    const values = stored(table, set);
    for (const c of set.columns) {
      if (!c.nullable && values[c.name] === null) throw simOraError(1407, `cannot update ("${table.schema}"."${table.table}"."${c.name}") to NULL`);
    }
    const key = stored(table, match);
    return this.write((tx) => {
      if (match.by === 'key') return tx.update(table.schema, table.table, key, values);
      return this.firstRow(tx, table, key, (r) => ({ ...r, ...values }));
    });
  }

  async delete(table: TargetTable, match: RowMatch): Promise<number> {
    this.statement(sql.deleteStatement(table, match).text);
    const key = stored(table, match);
    return this.write((tx) => {
      if (match.by === 'key') return tx.delete(table.schema, table.table, key);
      return this.firstRow(tx, table, key, null);
    });
  }

  /**
   * ROWNUM = 1 of a table without a key: one of the rows the image finds is changed (`next`) or deleted (null).
   * The simulator changes every matching row, so with duplicates they are all deleted and the others put back.
   */
  private firstRow(tx: SimOracleTransaction, table: TargetTable, key: Row, next: ((row: Row) => Row) | null): number {
    const padded = (c: string, v: string | null): string | null => {
      const column = table.byName.get(c);
      return v !== null && column && (column.type === 'CHAR' || column.type === 'NCHAR') ? v.padEnd(column.charLength, ' ') : v;
    };
    const matching = this.view(table.schema, table.table).filter((r) => Object.entries(key).every(([name, v]) => (r[name] ?? null) === padded(name, v)));
    if (matching.length === 0) return 0;
    if (matching.length === 1) {
      if (next) tx.update(table.schema, table.table, key, next(matching[0]!));
      else tx.delete(table.schema, table.table, key);
      return 1;
    }
    tx.delete(table.schema, table.table, key);
    for (const r of matching.slice(1)) tx.insert(table.schema, table.table, r);
    if (next) tx.insert(table.schema, table.table, next(matching[0]!));
    return 1;
  }

  async exists(table: TargetTable, match: RowMatch): Promise<boolean> {
    this.statement(sql.existsStatement(table, match).text);
    const key = stored(table, match);
    return this.write((tx) => tx.find(table.schema, table.table, key) !== null);
  }

  async deleteAll(table: TargetTable): Promise<number> {
    this.statement(sql.deleteAllStatement(table).text);
    return this.write((tx) => tx.delete(table.schema, table.table, {}));
  }

  async recordConflict(row: ConflictRow): Promise<void> {
    this.statement(sql.insertConflictStatement(row).text);
    const id = Math.max(0, ...this.view(OWNER, 'CONFLICTS').map((r) => Number(r.ID))) + 1;
    const time = (micros: bigint | null): string | null => (micros === null ? null : `${sql.microsToOracleTimestamp(micros)}000`);
    this.write((tx) =>
      tx.insert(OWNER, 'CONFLICTS', {
        ID: String(id),
        LOGGED_AT: `${sql.microsToOracleTimestamp(BigInt(Date.now()) * 1000n)}000`,
        KIND: row.kind,
        TABLE_NAME: row.table,
        KEY: row.keyJson,
        REMOTE_SITE: row.remoteSite,
        REMOTE_TRANSACTION: row.remoteTransaction,
        REMOTE_COMMIT_TIME: time(row.remoteCommitTimeMicros),
        LOCAL_SITE: row.localSite,
        LOCAL_COMMIT_TIME: time(row.localCommitTimeMicros),
        POLICY: row.policy,
        WINNER: row.winner,
        RESOLUTION: row.resolution,
      }),
    );
  }

  async insertParked(r: NewParkedRecord): Promise<void> {
    this.statement(sql.insertParkedStatement(r).text);
    const id = r.id.toLowerCase();
    this.write((tx) => {
      if (tx.find(OWNER, 'PARKED', { ID: id })) return;
      tx.insert(OWNER, 'PARKED', {
        ID: id,
        PARKED_AT: `${sql.microsToOracleTimestamp(BigInt(Date.now()) * 1000n)}000`,
        KIND: r.kind,
        SOURCE: sql.cut(r.source, 255),
        TRANSACTION_ID: sql.cut(r.transactionId, 255),
        BODY_SHA256: r.bodySha256,
        USER_ID: sql.cut(r.userId, 255),
        ROUTE: sql.cut(r.route, 2000),
        REASON: sql.cut(r.reason, 2000),
        DONE_AT: null,
      });
    });
  }

  async findParked(id: string): Promise<ParkedRecord | null> {
    this.statement(sql.findParkedStatement(id).text);
    const r = this.view(OWNER, 'PARKED').find((p) => p.ID === id.toLowerCase());
    if (!r) return null;
    return {
      id: String(r.ID),
      kind: r.KIND === 'refused' ? 'refused' : 'skipped',
      source: r.SOURCE ?? null,
      transactionId: r.TRANSACTION_ID ?? null,
      bodySha256: String(r.BODY_SHA256),
      userId: r.USER_ID ?? null,
      route: String(r.ROUTE),
      reason: String(r.REASON),
      done: (r.DONE_AT ?? null) !== null,
    };
  }

  async finishParked(id: string): Promise<void> {
    this.statement(sql.finishParkedStatement(id).text);
    const now = `${sql.microsToOracleTimestamp(BigInt(Date.now()) * 1000n)}000`;
    this.write((tx) => {
      const row = tx.find(OWNER, 'PARKED', { ID: id.toLowerCase() });
      if (row && row[9] === null) tx.update(OWNER, 'PARKED', { ID: id.toLowerCase() }, { DONE_AT: now });
    });
  }

  async finishRetried(transactionId: string, parkedId: string): Promise<number> {
    this.statement(sql.finishRetriedStatement(transactionId, parkedId).text);
    const now = `${sql.microsToOracleTimestamp(BigInt(Date.now()) * 1000n)}000`;
    const rows = this.view(OWNER, 'PARKED');
    if (!rows.some((r) => r.ID === parkedId.toLowerCase() && r.DONE_AT === null)) return 0;
    const targets = rows.filter((r) => r.TRANSACTION_ID === transactionId && r.KIND === 'skipped' && r.DONE_AT === null);
    return this.write((tx) => {
      for (const r of targets) tx.update(OWNER, 'PARKED', { ID: r.ID ?? null }, { DONE_AT: now });
      return targets.length;
    });
  }

  async keepPart(source: string, transactionId: string, part: number, spilled: SpilledPart): Promise<void> {
    this.statement(sql.keepPartStatement(source, transactionId, part, spilled.schemaVersion, spilled.body).text);
    this.write((tx) => {
      const key = { SOURCE: source, TRANSACTION_ID: transactionId, PART: String(part) };
      tx.delete(OWNER, 'SPILLED_PARTS', key);
      tx.insert(OWNER, 'SPILLED_PARTS', { ...key, SCHEMA_VERSION: String(spilled.schemaVersion), BODY: spilled.body.toString('hex').toUpperCase() });
    });
  }

  async hasPart(source: string, transactionId: string, part: number): Promise<boolean> {
    this.statement(sql.hasPartStatement(source, transactionId, part).text);
    return this.partRow(source, transactionId, part) !== undefined;
  }

  async readPart(source: string, transactionId: string, part: number): Promise<SpilledPart | null> {
    this.statement(sql.readPartStatement(source, transactionId, part).text);
    const row = this.partRow(source, transactionId, part);
    return row ? { schemaVersion: Number(row.SCHEMA_VERSION), body: Buffer.from(String(row.BODY), 'hex') } : null;
  }

  private partRow(source: string, transactionId: string, part: number): Row | undefined {
    return this.view(OWNER, 'SPILLED_PARTS').find((r) => r.SOURCE === source && r.TRANSACTION_ID === transactionId && r.PART === String(part));
  }

  async spilledBytes(source: string): Promise<number> {
    this.statement(sql.spilledBytesStatement(source).text);
    return this.view(OWNER, 'SPILLED_PARTS')
      .filter((r) => r.SOURCE === source)
      .reduce((n, r) => n + String(r.BODY).length / 2, 0);
  }

  async forgetParts(source: string): Promise<void> {
    this.statement(sql.forgetPartsStatement(source).text);
    this.write((tx) => tx.delete(OWNER, 'SPILLED_PARTS', { SOURCE: source }));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const tx = this.tx;
    this.tx = null;
    tx?.rollback(); // a session that ends with a transaction open: Oracle rolls it back
  }
}

/** A connect function for OracleSinkOptions over one simulator, keeping every connection it opened. */
export function simulatedConnect(db: SimulatedOracle, options: SimulatedApplyOptions = {}): { connect: () => Promise<ApplyConnection>; connections: SimulatedApplyConnection[] } {
  const connections: SimulatedApplyConnection[] = [];
  return {
    connections,
    connect: async () => {
      const c = new SimulatedApplyConnection(db, options);
      connections.push(c);
      return c;
    },
  };
}

function translate<T>(work: () => T): T {
  try {
    return work();
  } catch (error) {
    if (error instanceof SimLockError) throw simOraError(30006, `resource busy; acquire with WAIT timeout expired (${error.message})`);
    throw error;
  }
}

/** The bookkeeping tables other than APPLY_PROGRESS (which the simulator creates as setup does). */
const BOOKKEEPING_COLUMNS: Readonly<Record<string, SimOracleColumn[]>> = {
  PARKED: [
    { name: 'ID', type: 'CHAR', length: 36, keyOrdinal: 1 },
    { name: 'PARKED_AT', type: 'TIMESTAMP(6)', scale: 6, nullable: false },
    { name: 'KIND', type: 'VARCHAR2', length: 8, nullable: false },
    { name: 'SOURCE', type: 'NVARCHAR2', length: 255 },
    { name: 'TRANSACTION_ID', type: 'NVARCHAR2', length: 255 },
    { name: 'BODY_SHA256', type: 'CHAR', length: 64, nullable: false },
    { name: 'USER_ID', type: 'NVARCHAR2', length: 255 },
    { name: 'ROUTE', type: 'NVARCHAR2', length: 2000, nullable: false },
    { name: 'REASON', type: 'NVARCHAR2', length: 2000, nullable: false },
    { name: 'DONE_AT', type: 'TIMESTAMP(6)', scale: 6 },
  ],
  SPILLED_PARTS: [
    { name: 'SOURCE', type: 'VARCHAR2', length: 40, keyOrdinal: 1 },
    { name: 'TRANSACTION_ID', type: 'VARCHAR2', length: 128, keyOrdinal: 2 },
    { name: 'PART', type: 'NUMBER', precision: 10, scale: 0, keyOrdinal: 3 },
    { name: 'SCHEMA_VERSION', type: 'NUMBER', precision: 10, scale: 0, nullable: false },
    { name: 'BODY', type: 'BLOB', nullable: false },
  ],
  CONFLICTS: [
    { name: 'ID', type: 'NUMBER', precision: 19, scale: 0, keyOrdinal: 1 },
    { name: 'LOGGED_AT', type: 'TIMESTAMP(6)', scale: 6, nullable: false },
    { name: 'KIND', type: 'VARCHAR2', length: 32, nullable: false },
    { name: 'TABLE_NAME', type: 'NVARCHAR2', length: 261, nullable: false },
    { name: 'KEY', type: 'NCLOB', nullable: false },
    { name: 'REMOTE_SITE', type: 'VARCHAR2', length: 40, nullable: false },
    { name: 'REMOTE_TRANSACTION', type: 'NVARCHAR2', length: 255, nullable: false },
    { name: 'REMOTE_COMMIT_TIME', type: 'TIMESTAMP(6)', scale: 6, nullable: false },
    { name: 'LOCAL_SITE', type: 'VARCHAR2', length: 40 },
    { name: 'LOCAL_COMMIT_TIME', type: 'TIMESTAMP(6)', scale: 6 },
    { name: 'POLICY', type: 'VARCHAR2', length: 32, nullable: false },
    { name: 'WINNER', type: 'VARCHAR2', length: 8, nullable: false },
    { name: 'RESOLUTION', type: 'VARCHAR2', length: 8, nullable: false },
  ],
};

/** The Oracle text forms the simulator would store for these bound values (the model of the conversions). */
function stored(table: TargetTable, values: ColumnValues): Row {
  const row: Row = {};
  values.columns.forEach((c, i) => {
    row[c.name] = storedValue(table, c, values.values[i] ?? null);
  });
  return row;
}

const pad = (n: number | bigint, width: number): string => String(n).padStart(width, '0');

const DATE_TEXT = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})$/;
const TIMESTAMP_TEXT = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})\.(\d{6})( [-+]\d{2}:\d{2})?$/;

function checkDay(year: number, month: number, day: number, h: number, min: number, s: number): void {
  if (year < 1 || year > 9999) throw simOraError(1841, '(full) year must be between -4713 and +9999, and not be 0');
  if (month < 1 || month > 12) throw simOraError(1843, 'not a valid month');
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0 || year < 1583);
  const last = month === 2 ? (leap ? 29 : 28) : [4, 6, 9, 11].includes(month) ? 30 : 31;
  if (day < 1 || day > last) throw simOraError(1847, 'day of month must be between 1 and last day of month');
  if (year === 1582 && month === 10 && day >= 5 && day <= 14) throw simOraError(1839, 'date not valid for month specified');
  if (h > 23) throw simOraError(1850, 'hour must be between 0 and 23');
  if (min > 59) throw simOraError(1851, 'minutes must be between 0 and 59');
  if (s > 59) throw simOraError(1852, 'seconds must be between 0 and 59');
}

/** A NUMBER's value printed as Oracle prints it: no trailing fraction zeros, no 0 before the point. */
function oracleNumber(text: string): string {
  const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(text);
  if (!m) throw simOraError(1722, 'invalid number');
  const integer = m[2]!.replace(/^0+/, '');
  const fraction = (m[3] ?? '').replace(/0+$/, '');
  if (integer === '' && fraction === '') return '0';
  return `${m[1]}${integer}${fraction ? `.${fraction}` : ''}`;
}

/**
 * The model of one conversion (oracle-statements.ts valueExpression) and of the column's storage: bound value →
 * the Oracle text form the simulator keeps.
 */
export function storedValue(table: TargetTable, column: TargetColumn, value: BoundValue): string | null {
  if (value === null) return null;
  const where = `${table.schema}.${table.table}.${column.name}`;
  const tooLarge = (actual: number, maximum: number): Error => simOraError(12899, `value too large for column "${table.schema}"."${table.table}"."${column.name}" (actual: ${actual}, maximum: ${maximum})`);
  const text = (): string => {
    if (typeof value !== 'string') throw simOraError(932, `inconsistent datatypes: expected ${sql.typeText(column)} got BINARY`);
    return value;
  };
  switch (column.type) {
    case 'NUMBER':
    case 'FLOAT': {
      const printed = oracleNumber(text());
      const digits = printed.replace(/^-/, '').replace('.', '').replace(/^0+/, '');
      const fraction = printed.includes('.') ? printed.split('.')[1]!.length : 0;
      if (column.type === 'NUMBER' && column.scale !== null && column.scale >= 0 && fraction > column.scale) throw new Error(`model: ${where} would round ${value} (oracle-bind.ts should have refused it)`);
      if (column.type === 'NUMBER' && column.precision !== null) {
        const scale = column.scale ?? 0;
        const integerDigits = printed.replace(/^-/, '').split('.')[0]!.replace(/^0+/, '').length;
        if (integerDigits > column.precision - scale) throw simOraError(1438, 'value larger than specified precision allowed for this column');
      } else if (digits.length > 38) throw new Error(`model: ${where} would round ${value} to 38 digits (oracle-bind.ts should have refused it)`);
      return printed.replace(/^(-?)0\./, '$1.');
    }
    case 'BINARY_DOUBLE':
    case 'BINARY_FLOAT': {
      const x = Number(text());
      if (Number.isNaN(x)) return 'Nan';
      if (x === Infinity) return 'Inf';
      if (x === -Infinity) return '-Inf';
      if (column.type === 'BINARY_FLOAT') {
        if (Math.fround(x) !== x) throw new Error(`model: ${where} would round ${value} to single precision (oracle-bind.ts should have refused it)`);
        return formatFloat32(x).replace('e', 'E');
      }
      return formatFloat64(x).replace('e', 'E');
    }
    case 'VARCHAR2':
    case 'NVARCHAR2':
    case 'CHAR':
    case 'NCHAR':
    case 'CLOB':
    case 'NCLOB': {
      const s = text();
      if (s === '') return null; // Oracle's '' is NULL
      if (column.type !== 'CLOB' && column.type !== 'NCLOB') {
        const national = column.type === 'NVARCHAR2' || column.type === 'NCHAR';
        const bytes = national ? s.length * 2 : Buffer.byteLength(s, 'utf8');
        if (s.length > column.charLength) throw tooLarge(s.length, column.charLength);
        if (bytes > column.dataLength) throw tooLarge(bytes, column.dataLength);
      }
      return s; // CHAR/NCHAR padded by the simulator
    }
    case 'RAW':
    case 'BLOB': {
      if (!Buffer.isBuffer(value)) throw simOraError(932, `inconsistent datatypes: expected ${sql.typeText(column)} got CHAR`);
      if (value.length === 0) return null; // an empty RAW is NULL
      if (column.type === 'RAW' && value.length > column.dataLength) throw tooLarge(value.length, column.dataLength);
      return value.toString('hex').toUpperCase();
    }
    case 'DATE': {
      const m = DATE_TEXT.exec(text());
      if (!m) throw simOraError(1861, 'literal does not match format string');
      const [y, mo, d, h, mi, s] = m.slice(1).map(Number) as [number, number, number, number, number, number];
      checkDay(y, mo, d, h, mi, s);
      return value as string;
    }
    case 'TIMESTAMP':
    case 'TIMESTAMP WITH TIME ZONE':
    case 'TIMESTAMP WITH LOCAL TIME ZONE': {
      const m = TIMESTAMP_TEXT.exec(text());
      const zoned = column.type !== 'TIMESTAMP';
      if (!m || zoned !== (m[8] !== undefined)) throw simOraError(1861, 'literal does not match format string');
      const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
      checkDay(y, mo, d, h, mi, s);
      const digits = column.scale ?? 6;
      if (m[7]!.replace(/0+$/, '').length > digits) throw new Error(`model: ${where} would round ${value} to ${digits} digits (oracle-bind.ts should have refused it)`);
      const base = `${m[1]}-${m[2]}-${m[3]} ${m[4]}:${m[5]}:${m[6]}.${m[7]}000`;
      if (column.type === 'TIMESTAMP') return base;
      if (m[8] !== ' +00:00') throw new Error(`model: ${where}: only UTC offsets are bound (got ${m[8]})`);
      return column.type === 'TIMESTAMP WITH TIME ZONE' ? `${base} +00:00` : base; // LOCAL: printed in the session zone (UTC)
    }
    case 'INTERVAL YEAR TO MONTH': {
      const m = /^([-+])(\d+)-(\d{2})$/.exec(text());
      if (!m || Number(m[3]) > 11) throw simOraError(1867, 'the interval is invalid');
      if (m[2]!.replace(/^0+(?=\d)/, '').length > (column.precision ?? 2)) throw simOraError(1873, 'the leading precision of the interval is too small');
      return `${m[1]}${pad(Number(m[2]), 2)}-${m[3]}`;
    }
    case 'INTERVAL DAY TO SECOND': {
      const m = /^([-+])(\d+) (\d{2}):(\d{2}):(\d{2})\.(\d{6})$/.exec(text());
      if (!m || Number(m[3]) > 23 || Number(m[4]) > 59 || Number(m[5]) > 59) throw simOraError(1867, 'the interval is invalid');
      if (m[2]!.replace(/^0+(?=\d)/, '').length > (column.precision ?? 2)) throw simOraError(1873, 'the leading precision of the interval is too small');
      if (m[6]!.replace(/0+$/, '').length > (column.scale ?? 6)) throw new Error(`model: ${where} would round ${value} (oracle-bind.ts should have refused it)`);
      return `${m[1]}${pad(Number(m[2]), 2)} ${m[3]}:${m[4]}:${m[5]}.${m[6]}000`;
    }
    default:
      throw new Error(`model: ${where}: no conversion modelled for ${column.type} (oracle-bind.ts should have refused it)`);
  }
}
