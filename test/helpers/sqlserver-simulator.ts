/**
 * A SQL Server database with change data capture, in memory, for the tests of capture (change-stream.ts,
 * capture-instances.ts, sqlserver-source.ts) and apply (the simulated apply connection writes through it).
 * It implements the CdcReader contract (connectors/sqlserver/cdc-reader.ts) over the same state, so the pure
 * code is proven against what CDC does, not against what the code expects.
 *
 * What it models, and why each rule is there (the data-loss bugs of CDC readers live in these):
 * - One log. Every change record takes the next log sequence number; a commit record takes the next one after
 *   all of its transaction's changes. So commit LSNs strictly increase in commit order, a change's seqval is
 *   the LSN of its own record (interleaved transactions interleave in seqval), and every change row carries
 *   its transaction's commit LSN as `__$start_lsn`.
 * - Several transactions open at once, with row locks: a write to a row (a key, for a table with a primary
 *   key) another open transaction wrote throws SimLockError (SQL Server would block until that one ends; a
 *   test schedule just picks another step). Writes go to the table at once, with an undo log; `rows()` shows
 *   the committed state only (the open transactions' undo applied to a copy), `find()` a transaction's own view.
 * - An update writes a 3 (before) and a 4 (after) sharing one seqval; an update that changes a primary-key
 *   column is written as a delete (1) and an insert (2), each with its own seqval, delete first. A rollback
 *   writes nothing to CDC (its LSNs are used up, as in a real log).
 * - Capture instances: at most two per table; the column list is fixed at creation (a column added later is
 *   not in it; a dropped column reads NULL). Enabling waits for the table's open writers in SQL Server
 *   (sp_cdc_enable_table takes a schema-modification lock), here it throws SimLockError: so an instance
 *   always holds whole transactions, from its start_lsn on.
 * - The capture job (`runCaptureJob`) moves committed transactions not yet scanned, in commit order, into the
 *   change table of every instance of their tables that existed at their commit (start_lsn <= commit LSN),
 *   with one cdc.lsn_time_mapping row each (tran_end_time = the commit's clock as a `datetime`, i.e. rounded
 *   to 1/300 s, in the configured zone, given with its offset as the reader's `AT TIME ZONE` gives it). Every
 *   other run it also writes a tran_id = 0x00 row (the job's own marker) with a fresh LSN above everything it
 *   scanned, which a reader must not take for a transaction: a bound taken from it could pass transactions
 *   committed before it but not yet scanned. Transactions that change no captured table leave no trace.
 * - `cleanup(low)` is the cleanup job: change rows and mapping rows below `low` go, every instance's start_lsn
 *   becomes max(start_lsn, low).
 * - TRUNCATE of a table with a capture instance fails as SQL Server's does (error 4711).
 * - Readers (`reader()`): `changes()` of an instance that no longer exists fails as SQL Server's "Invalid
 *   object name" (error 208); `failNextReaderCall()` makes the next call of any reader fail (connection lost).
 *
 * Not modelled: isolation beyond the locks (no snapshot reads), column types (values are stored as given, in
 * the projected form of cdc-reader.ts), the ambiguity of local times in the hour a daylight-saving change
 * repeats (the true offset is given; see change-stream.ts).
 */
import type {
  CaptureInstance,
  CaptureProgressRow,
  CapturedColumn,
  CdcOperation,
  CdcReader,
  ChangeKey,
  ChangeRow,
  Lsn,
  ProjectedValue,
  SetupFacts,
  TransactionTime,
} from '../../connectors/sqlserver/cdc-reader.ts';

export interface SimColumn {
  name: string;
  type: string;
  maxLength?: number;
  precision?: number;
  scale?: number;
  nullable?: boolean;
  keyOrdinal?: number;
  identity?: boolean;
}

/** A write another open transaction holds a lock on (SQL Server would wait). */
export class SimLockError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SimLockError';
  }
}

/** SQL Server's error 2627 (primary key violation). */
export class SimDuplicateKeyError extends Error {
  readonly number = 2627;
  constructor(message: string) {
    super(message);
    this.name = 'SimDuplicateKeyError';
  }
}

/** An error as the mssql driver raises one for a server message (RequestError: number, code EREQUEST). */
export function simRequestError(number: number, message: string): Error {
  return Object.assign(new Error(message), { name: 'RequestError', number, code: 'EREQUEST' });
}

type Row = Record<string, ProjectedValue>;

interface SimTable {
  readonly schema: string;
  readonly table: string;
  columns: Required<SimColumn>[];
  /** Rows by an internal id (keyless tables may hold duplicates). */
  readonly rows: Map<number, Row>;
}

interface LoggedChange {
  readonly table: string;
  readonly operation: CdcOperation;
  readonly seqval: bigint;
  readonly commandId: number;
  readonly image: Row;
}

interface CommittedTransaction {
  readonly commitLsn: bigint;
  readonly commitMicros: bigint;
  readonly changes: readonly LoggedChange[];
}

interface SimInstance {
  readonly name: string;
  readonly schema: string;
  readonly table: string;
  startLsn: bigint;
  readonly createDate: string;
  readonly columns: CapturedColumn[];
  readonly rows: ChangeRow[];
}

interface MappingRow {
  readonly startLsn: bigint;
  readonly endTime: string;
  readonly tranId: number;
}

type Undo = { readonly table: string; readonly id: number; readonly before: Row | null };

/** The first LSN the simulated log hands out (VLF 0x2A, block 0x100, slot 1). */
const FIRST_LSN = 0x0000002a_00000100_0001n;

export function lsnText(value: bigint): Lsn {
  return value.toString(16).toUpperCase().padStart(20, '0');
}

function lsnValue(lsn: Lsn): bigint {
  return BigInt(`0x${lsn}`);
}

/** A commit time as SQL Server's `datetime` keeps it: rounded to 1/300 of a second (…000, …003, …007 ms). */
export function datetimeMicros(utcMicros: bigint): bigint {
  const second = utcMicros >= 0n ? (utcMicros / 1_000_000n) * 1_000_000n : ((utcMicros - 999_999n) / 1_000_000n) * 1_000_000n;
  const fraction = utcMicros - second;
  const ticks = (fraction * 300n + 500_000n) / 1_000_000n; // 0..300
  const millis = (ticks * 1000n + 150n) / 300n; // 0..1000, rounded to the millisecond as SQL Server displays
  return second + millis * 1000n;
}

/** `YYYY-MM-DDThh:mm:ss.fff±hh:mm` of a UTC instant in an IANA zone (what `AT TIME ZONE` gives for a local time). */
export function zonedIso(utcMicros: bigint, timeZone: string): string {
  const millis = Number(utcMicros / 1000n);
  const date = new Date(millis);
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone,
    hourCycle: 'h23',
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  }).formatToParts(date);
  const get = (type: string): number => Number(parts.find((p) => p.type === type)!.value);
  const wall = Date.UTC(get('year'), get('month') - 1, get('day'), get('hour'), get('minute'), get('second'), date.getUTCMilliseconds());
  const offsetMinutes = Math.round((wall - millis) / 60_000);
  const local = new Date(wall).toISOString().slice(0, 23);
  const sign = offsetMinutes < 0 ? '-' : '+';
  const abs = Math.abs(offsetMinutes);
  return `${local}${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
}

/** Large-object types whose old value CDC never records (NULL in operations 1 and 3). */
const LEGACY_LOB = new Set(['text', 'ntext', 'image']);
/** Large-object types with max_length -1: NULL in a before-image unless the update changed them. */
const MAX_LOB = new Set(['varchar', 'nvarchar', 'varbinary', 'xml', 'geography', 'geometry']);

function sameValue(a: ProjectedValue | undefined, b: ProjectedValue | undefined): boolean {
  if (Buffer.isBuffer(a) && Buffer.isBuffer(b)) return a.equals(b);
  return a === b;
}

function compareValues(a: ProjectedValue, b: ProjectedValue): number {
  if (a === b) return 0;
  if (a === null) return -1;
  if (b === null) return 1;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  const sa = Buffer.isBuffer(a) ? a.toString('hex') : String(a);
  const sb = Buffer.isBuffer(b) ? b.toString('hex') : String(b);
  return sa < sb ? -1 : sa > sb ? 1 : 0;
}

export class SimulatedSqlServer {
  readonly database: string;
  readonly timeZone: string;
  readonly bookkeeping = { captureProgress: new Map<string, CaptureProgressRow>() };
  /** What setupFacts() reports beyond what the state tells (all ready by default; tests make each false). */
  readonly facts: { cdcEnabled: boolean; agentRunning: boolean | null; isDbOwner: boolean; bookkeepingReady: boolean; retentionMinutes: number | null } = {
    cdcEnabled: true,
    agentRunning: true,
    isDbOwner: true,
    bookkeepingReady: true,
    retentionMinutes: 3 * 24 * 60,
  };
  private readonly tables = new Map<string, SimTable>();
  private readonly instances = new Map<string, SimInstance>();
  private readonly mapping: MappingRow[] = [];
  private readonly committed: CommittedTransaction[] = [];
  private scanned = 0;
  private jobRuns = 0;
  private nextLsn = FIRST_LSN;
  private nextRowId = 1;
  private clock = 1_790_000_000_000_000n; // 2026-09-21
  /** Lock owner of each row (`table|id`) and key (`table|k|…`). */
  private readonly locks = new Map<string, SimTransactionImpl>();
  private readonly open = new Set<SimTransactionImpl>();
  private failure: Error | null = null;
  /** Reader calls made, by method (tests read how the reader was used). */
  readonly readerCalls = new Map<string, number>();

  constructor(options: { database?: string; timeZone?: string } = {}) {
    this.database = options.database ?? 'app';
    this.timeZone = options.timeZone ?? 'UTC';
  }

  // ─── schema ─────────────────────────────────────────────────────────────────────────────────────────────

  createTable(schema: string, table: string, columns: SimColumn[]): void {
    const name = `${schema}.${table}`;
    if (this.tables.has(name)) throw simRequestError(2714, `There is already an object named '${table}' in the database.`);
    this.tables.set(name, { schema, table, columns: columns.map(complete), rows: new Map() });
  }

  describeTable(schema: string, table: string): { schema: string; table: string; columns: Required<SimColumn>[] } | null {
    const t = this.tables.get(`${schema}.${table}`);
    return t ? { schema, table, columns: t.columns.map((c) => ({ ...c })) } : null;
  }

  addColumn(schema: string, table: string, column: SimColumn): void {
    const t = this.table(schema, table);
    if (t.columns.some((c) => c.name === column.name)) throw simRequestError(2705, `Column names in each table must be unique. Column name '${column.name}' is specified more than once.`);
    t.columns.push(complete(column));
    for (const row of t.rows.values()) row[column.name] = null;
  }

  dropColumn(schema: string, table: string, name: string): void {
    const t = this.table(schema, table);
    const column = t.columns.find((c) => c.name === name);
    if (!column) throw simRequestError(4924, `ALTER TABLE DROP COLUMN failed because column '${name}' does not exist in table '${table}'.`);
    if (column.keyOrdinal > 0) throw simRequestError(5074, `The object 'PK_${table}' is dependent on column '${name}'.`);
    t.columns = t.columns.filter((c) => c.name !== name);
    for (const row of t.rows.values()) delete row[name];
  }

  /** Creates the sitesync bookkeeping table the sink writes first, with its capture instance (what setup does). */
  createApplyProgress(): void {
    this.createTable('sitesync', 'apply_progress', [
      { name: 'source', type: 'varchar', maxLength: 40, keyOrdinal: 1 },
      { name: 'source_kind', type: 'varchar', maxLength: 20 },
      { name: 'position', type: 'varchar', maxLength: 64 },
      { name: 'commit_time_micros', type: 'bigint' },
      { name: 'applied_transactions', type: 'bigint' },
    ]);
    this.enableCdc('sitesync', 'apply_progress', 'sitesync_apply_progress');
  }

  enableCdc(schema: string, table: string, captureInstance?: string): string {
    const t = this.table(schema, table);
    const name = captureInstance ?? `${schema}_${table}`;
    if (this.instances.has(name)) throw simRequestError(22926, `Could not create a capture instance because the capture instance name '${name}' already exists in the current database.`);
    const existing = [...this.instances.values()].filter((i) => i.schema === schema && i.table === table);
    if (existing.length >= 2) throw simRequestError(22962, `Two capture instances already exist for source table '${schema}.${table}'.`);
    for (const tx of this.open) {
      if (tx.touched.has(`${schema}.${table}`)) throw new SimLockError(`enabling CDC on ${schema}.${table} waits for an open transaction that wrote to it`);
    }
    const startLsn = this.nextLsn++;
    this.instances.set(name, {
      name,
      schema,
      table,
      startLsn,
      createDate: zonedIso(this.clock, this.timeZone),
      columns: t.columns.map((c) => ({ name: c.name, type: c.type, maxLength: c.maxLength, precision: c.precision, scale: c.scale, keyOrdinal: c.keyOrdinal })),
      rows: [],
    });
    return name;
  }

  disableCdc(captureInstance: string): void {
    if (!this.instances.delete(captureInstance)) throw simRequestError(22985, `Could not find the capture instance '${captureInstance}'.`);
  }

  /** The instance as cdc.change_tables describes it now (null once disabled). */
  captureInstance(name: string): CaptureInstance | null {
    const i = this.instances.get(name);
    return i ? describeInstance(i) : null;
  }

  // ─── transactions ───────────────────────────────────────────────────────────────────────────────────────

  begin(): SimTransaction {
    const tx = new SimTransactionImpl(this);
    this.open.add(tx);
    return tx;
  }

  /** The LSN the next log record gets (what a commit now would at least get). */
  get logEnd(): Lsn {
    return lsnText(this.nextLsn);
  }

  setClock(utcMicros: bigint): void {
    this.clock = utcMicros;
  }

  advanceClock(micros: bigint): void {
    this.clock += micros;
  }

  get now(): bigint {
    return this.clock;
  }

  runCaptureJob(maxTransactions: number = Number.POSITIVE_INFINITY): number {
    let moved = 0;
    while (this.scanned < this.committed.length && moved < maxTransactions) {
      const tx = this.committed[this.scanned++]!;
      moved++;
      let captured = false;
      for (const instance of this.instances.values()) {
        if (instance.startLsn > tx.commitLsn) continue;
        const key = `${instance.schema}.${instance.table}`;
        tx.changes.forEach((change, index) => {
          if (change.table !== key) return;
          captured = true;
          const after = change.operation === 3 ? tx.changes[index + 1] : undefined;
          instance.rows.push({
            startLsn: lsnText(tx.commitLsn),
            seqval: lsnText(change.seqval),
            operation: change.operation,
            commandId: change.commandId,
            values: instance.columns.map((c) => {
              const value = Object.hasOwn(change.image, c.name) ? change.image[c.name]! : null;
              // Microsoft's page on the change tables: text, ntext and image are NULL in deletes and
              // before-images; the max types (max_length -1) in before-images unless the update changed them.
              if ((change.operation === 1 || change.operation === 3) && LEGACY_LOB.has(c.type.toLowerCase())) return null;
              if (change.operation === 3 && c.maxLength === -1 && MAX_LOB.has(c.type.toLowerCase()) && after && sameValue(value, after.image[c.name] ?? null)) return null;
              return value;
            }),
          });
        });
      }
      if (captured) this.mapping.push({ startLsn: tx.commitLsn, endTime: zonedIso(datetimeMicros(tx.commitMicros), this.timeZone), tranId: 1 });
    }
    this.jobRuns++;
    if (this.jobRuns % 2 === 1) this.mapping.push({ startLsn: this.nextLsn++, endTime: zonedIso(datetimeMicros(this.clock), this.timeZone), tranId: 0 });
    return moved;
  }

  /** Sets what setupFacts() reports (the parts not told by the state). */
  setFacts(facts: Partial<SimulatedSqlServer['facts']>): void {
    Object.assign(this.facts, facts);
  }

  /** What the capture job has written last (lsn_time_mapping, tran_id <> 0x00), without a reader call. */
  maxTransactionLsn(): Lsn | null {
    let max: bigint | null = null;
    for (const m of this.mapping) if (m.tranId !== 0 && (max === null || m.startLsn > max)) max = m.startLsn;
    return max === null ? null : lsnText(max);
  }

  /** Every committed transaction as the log holds it (a test's oracle): commit LSN, commit time, changes in log order. */
  committedLog(): { commitLsn: Lsn; commitMicros: bigint; changes: { schema: string; table: string; operation: CdcOperation; seqval: Lsn; commandId: number; image: Readonly<Row> }[] }[] {
    return this.committed.map((tx) => ({
      commitLsn: lsnText(tx.commitLsn),
      commitMicros: tx.commitMicros,
      changes: tx.changes.map((c) => {
        const dot = c.table.indexOf('.');
        return { schema: c.table.slice(0, dot), table: c.table.slice(dot + 1), operation: c.operation, seqval: lsnText(c.seqval), commandId: c.commandId, image: c.image };
      }),
    }));
  }

  /** Committed transactions the capture job has not scanned yet. */
  get unscanned(): number {
    return this.committed.length - this.scanned;
  }

  cleanup(lowWaterLsn: Lsn): void {
    const low = lsnValue(lowWaterLsn);
    for (const instance of this.instances.values()) {
      const kept = instance.rows.filter((r) => lsnValue(r.startLsn) >= low);
      instance.rows.length = 0;
      instance.rows.push(...kept);
      if (instance.startLsn < low) instance.startLsn = low;
    }
    const kept = this.mapping.filter((m) => m.startLsn >= low);
    this.mapping.length = 0;
    this.mapping.push(...kept);
  }

  /** Committed rows of a table, in column order, sorted. */
  rows(schema: string, table: string): ProjectedValue[][] {
    const t = this.table(schema, table);
    const state = new Map<number, Row>([...t.rows].map(([id, row]) => [id, { ...row }]));
    for (const tx of this.open) {
      for (let i = tx.undo.length - 1; i >= 0; i--) {
        const u = tx.undo[i]!;
        if (u.table !== `${schema}.${table}`) continue;
        if (u.before === null) state.delete(u.id);
        else state.set(u.id, { ...u.before });
      }
    }
    const out = [...state.values()].map((row) => t.columns.map((c) => (Object.hasOwn(row, c.name) ? row[c.name]! : null)));
    return out.sort((a, b) => {
      for (let i = 0; i < a.length; i++) {
        const d = compareValues(a[i]!, b[i]!);
        if (d !== 0) return d;
      }
      return 0;
    });
  }

  // ─── readers ────────────────────────────────────────────────────────────────────────────────────────────

  reader(): CdcReader {
    return new SimCdcReader(this);
  }

  failNextReaderCall(error?: Error): void {
    this.failure = error ?? Object.assign(new Error('Connection lost - read ECONNRESET'), { name: 'ConnectionError', code: 'ESOCKET' });
  }

  // ─── internals (for SimTransactionImpl and SimCdcReader) ───────────────────────────────────────────────

  /** @internal */
  table(schema: string, table: string): SimTable {
    const t = this.tables.get(`${schema}.${table}`);
    if (!t) throw simRequestError(208, `Invalid object name '${schema}.${table}'.`);
    return t;
  }

  /** @internal */
  hasInstance(schema: string, table: string): boolean {
    for (const i of this.instances.values()) if (i.schema === schema && i.table === table) return true;
    return false;
  }

  /** @internal */
  lock(tx: SimTransactionImpl, key: string): void {
    const owner = this.locks.get(key);
    if (owner && owner !== tx) throw new SimLockError(`${key} is locked by another open transaction`);
    this.locks.set(key, tx);
  }

  /** @internal A read of a row another open transaction wrote would wait (READ COMMITTED). */
  checkLock(tx: SimTransactionImpl, key: string): void {
    const owner = this.locks.get(key);
    if (owner && owner !== tx) throw new SimLockError(`${key} is locked by another open transaction`);
  }

  /** @internal */
  takeLsn(): bigint {
    return this.nextLsn++;
  }

  /** @internal */
  newRowId(): number {
    return this.nextRowId++;
  }

  /** @internal */
  finish(tx: SimTransactionImpl, committedChanges: LoggedChange[] | null): Lsn | null {
    this.open.delete(tx);
    for (const [key, owner] of this.locks) if (owner === tx) this.locks.delete(key);
    if (committedChanges === null) {
      this.nextLsn++; // the abort record
      return null;
    }
    const commitLsn = this.nextLsn++;
    this.committed.push({ commitLsn, commitMicros: this.clock, changes: committedChanges });
    return lsnText(commitLsn);
  }

  /** @internal */
  readerCall(method: string): void {
    this.readerCalls.set(method, (this.readerCalls.get(method) ?? 0) + 1);
    const failure = this.failure;
    if (failure) {
      this.failure = null;
      throw failure;
    }
  }

  /** @internal */
  state(): { instances: Map<string, SimInstance>; mapping: MappingRow[]; tables: Map<string, SimTable> } {
    return { instances: this.instances, mapping: this.mapping, tables: this.tables };
  }
}

function complete(column: SimColumn): Required<SimColumn> {
  return {
    name: column.name,
    type: column.type,
    maxLength: column.maxLength ?? defaultLength(column.type),
    precision: column.precision ?? 0,
    scale: column.scale ?? 0,
    nullable: column.nullable ?? !(column.keyOrdinal && column.keyOrdinal > 0),
    keyOrdinal: column.keyOrdinal ?? 0,
    identity: column.identity ?? false,
  };
}

function defaultLength(type: string): number {
  switch (type) {
    case 'bit':
    case 'tinyint':
      return 1;
    case 'smallint':
      return 2;
    case 'int':
    case 'real':
      return 4;
    case 'bigint':
    case 'float':
    case 'datetime':
      return 8;
    default:
      return -1;
  }
}

function describeInstance(i: SimInstance): CaptureInstance {
  return { name: i.name, schema: i.schema, table: i.table, startLsn: lsnText(i.startLsn), createDate: i.createDate, columns: i.columns.map((c) => ({ ...c })) };
}

export interface SimTransaction {
  insert(schema: string, table: string, row: Record<string, ProjectedValue>): void;
  update(schema: string, table: string, key: Record<string, ProjectedValue>, set: Record<string, ProjectedValue>): number;
  delete(schema: string, table: string, key: Record<string, ProjectedValue>): number;
  find(schema: string, table: string, key: Record<string, ProjectedValue>): ProjectedValue[] | null;
  truncate(schema: string, table: string): void;
  commit(): Lsn;
  rollback(): void;
}

class SimTransactionImpl implements SimTransaction {
  readonly undo: Undo[] = [];
  readonly touched = new Set<string>();
  private readonly changes: LoggedChange[] = [];
  private command = 0;
  private ended = false;

  constructor(private readonly server: SimulatedSqlServer) {}

  private active(): void {
    if (this.ended) throw new Error('the transaction has ended');
  }

  private keyColumns(t: SimTable): Required<SimColumn>[] {
    return t.columns.filter((c) => c.keyOrdinal > 0).sort((a, b) => a.keyOrdinal - b.keyOrdinal);
  }

  private keyLock(t: SimTable, row: Row): string | null {
    const keys = this.keyColumns(t);
    if (keys.length === 0) return null;
    return `${t.schema}.${t.table}|k|${JSON.stringify(keys.map((c) => (Buffer.isBuffer(row[c.name]) ? (row[c.name] as Buffer).toString('hex') : row[c.name])))}`;
  }

  private lockRow(t: SimTable, id: number, row: Row): void {
    this.server.lock(this, `${t.schema}.${t.table}|${id}`);
    const key = this.keyLock(t, row);
    if (key) this.server.lock(this, key);
  }

  private log(t: SimTable, operation: CdcOperation, image: Row, seqval: bigint): void {
    const name = `${t.schema}.${t.table}`;
    this.touched.add(name);
    this.changes.push({ table: name, operation, seqval, commandId: this.command, image: { ...image } });
  }

  private matching(t: SimTable, key: Row): [number, Row][] {
    for (const name of Object.keys(key)) if (!t.columns.some((c) => c.name === name)) throw simRequestError(207, `Invalid column name '${name}'.`);
    return [...t.rows].filter(([, row]) => Object.entries(key).every(([name, value]) => sameValue(row[name], value)));
  }

  insert(schema: string, table: string, row: Row): void {
    this.active();
    const t = this.server.table(schema, table);
    const full: Row = {};
    for (const c of t.columns) full[c.name] = Object.hasOwn(row, c.name) ? row[c.name]! : null;
    for (const name of Object.keys(row)) if (!t.columns.some((c) => c.name === name)) throw simRequestError(207, `Invalid column name '${name}'.`);
    const keys = this.keyColumns(t);
    if (keys.length > 0) {
      const lock = this.keyLock(t, full)!;
      this.server.lock(this, lock);
      const clash = this.matching(t, Object.fromEntries(keys.map((c) => [c.name, full[c.name]!])));
      if (clash.length > 0) throw new SimDuplicateKeyError(`Violation of PRIMARY KEY constraint 'PK_${table}'. Cannot insert duplicate key in object '${schema}.${table}'.`);
    }
    this.command++;
    const id = this.server.newRowId();
    this.server.lock(this, `${schema}.${table}|${id}`);
    t.rows.set(id, full);
    this.undo.push({ table: `${schema}.${table}`, id, before: null });
    this.log(t, 2, full, this.server.takeLsn());
  }

  update(schema: string, table: string, key: Row, set: Row): number {
    this.active();
    const t = this.server.table(schema, table);
    for (const name of Object.keys(set)) if (!t.columns.some((c) => c.name === name)) throw simRequestError(207, `Invalid column name '${name}'.`);
    const targets = this.matching(t, key);
    for (const [id, row] of targets) this.lockRow(t, id, row);
    const keys = this.keyColumns(t);
    const keyChange = keys.some((c) => Object.hasOwn(set, c.name));
    const after = targets.map(([id, row]) => [id, { ...row, ...set }] as [number, Row]);
    if (keyChange) {
      // The new keys must be free (and lockable) before anything is written.
      const moved = new Set(targets.map(([id]) => id));
      const seen = new Set<string>();
      for (const [, row] of after) {
        const lock = this.keyLock(t, row)!;
        if (seen.has(lock)) throw new SimDuplicateKeyError(`Violation of PRIMARY KEY constraint 'PK_${table}'.`);
        seen.add(lock);
        const clash = this.matching(t, Object.fromEntries(keys.map((c) => [c.name, row[c.name]!]))).filter(([id]) => !moved.has(id));
        if (clash.length > 0) throw new SimDuplicateKeyError(`Violation of PRIMARY KEY constraint 'PK_${table}'. Cannot insert duplicate key in object '${schema}.${table}'.`);
        this.server.lock(this, lock);
      }
    }
    this.command++;
    for (let i = 0; i < targets.length; i++) {
      const [id, before] = targets[i]!;
      const next = after[i]![1];
      this.undo.push({ table: `${schema}.${table}`, id, before: { ...before } });
      t.rows.set(id, next);
      if (keyChange) {
        this.log(t, 1, before, this.server.takeLsn());
        this.log(t, 2, next, this.server.takeLsn());
      } else {
        const seqval = this.server.takeLsn();
        this.log(t, 3, before, seqval);
        this.log(t, 4, next, seqval);
      }
    }
    return targets.length;
  }

  delete(schema: string, table: string, key: Row): number {
    this.active();
    const t = this.server.table(schema, table);
    const targets = this.matching(t, key);
    for (const [id, row] of targets) this.lockRow(t, id, row);
    this.command++;
    for (const [id, row] of targets) {
      this.undo.push({ table: `${schema}.${table}`, id, before: { ...row } });
      t.rows.delete(id);
      this.log(t, 1, row, this.server.takeLsn());
    }
    return targets.length;
  }

  find(schema: string, table: string, key: Row): ProjectedValue[] | null {
    this.active();
    const t = this.server.table(schema, table);
    const found = this.matching(t, key)[0];
    if (!found) return null;
    const [id, row] = found;
    this.server.checkLock(this, `${schema}.${table}|${id}`);
    return t.columns.map((c) => (Object.hasOwn(row, c.name) ? row[c.name]! : null));
  }

  truncate(schema: string, table: string): void {
    this.active();
    const t = this.server.table(schema, table);
    if (this.server.hasInstance(schema, table)) {
      throw simRequestError(4711, `Cannot truncate table '${schema}.${table}' because it is published for replication or enabled for Change Data Capture.`);
    }
    for (const [id, row] of t.rows) this.lockRow(t, id, row);
    for (const [id, row] of [...t.rows]) {
      this.undo.push({ table: `${schema}.${table}`, id, before: { ...row } });
      t.rows.delete(id);
    }
  }

  commit(): Lsn {
    this.active();
    this.ended = true;
    return this.server.finish(this, this.changes)!;
  }

  rollback(): void {
    this.active();
    this.ended = true;
    for (let i = this.undo.length - 1; i >= 0; i--) {
      const u = this.undo[i]!;
      const [schema, ...rest] = u.table.split('.');
      const t = this.server.table(schema!, rest.join('.'));
      if (u.before === null) t.rows.delete(u.id);
      else t.rows.set(u.id, u.before);
    }
    this.server.finish(this, null);
  }
}

function compareKey(a: ChangeKey, b: ChangeKey): number {
  if (a.startLsn !== b.startLsn) return a.startLsn < b.startLsn ? -1 : 1;
  if (a.commandId !== b.commandId) return a.commandId - b.commandId;
  if (a.seqval !== b.seqval) return a.seqval < b.seqval ? -1 : 1;
  return a.operation - b.operation;
}

class SimCdcReader implements CdcReader {
  private closed = false;
  constructor(private readonly server: SimulatedSqlServer) {}

  private call(method: string): void {
    if (this.closed) throw Object.assign(new Error('Connection is closed.'), { name: 'ConnectionError', code: 'ECONNCLOSED' });
    this.server.readerCall(method);
  }

  async maxTransactionLsn(): Promise<Lsn | null> {
    this.call('maxTransactionLsn');
    let max: bigint | null = null;
    for (const m of this.server.state().mapping) if (m.tranId !== 0 && (max === null || m.startLsn > max)) max = m.startLsn;
    return max === null ? null : lsnText(max);
  }

  async captureInstances(): Promise<CaptureInstance[]> {
    this.call('captureInstances');
    return [...this.server.state().instances.values()].map(describeInstance);
  }

  async changes(instance: CaptureInstance, fromLsn: Lsn, toLsn: Lsn, after: ChangeKey | null, limit: number): Promise<ChangeRow[]> {
    this.call('changes');
    const sim = this.server.state().instances.get(instance.name);
    if (!sim) throw simRequestError(208, `Invalid object name 'cdc.${instance.name}_CT'.`);
    const rows = sim.rows
      .filter((r) => r.startLsn > fromLsn && r.startLsn <= toLsn && (after === null || compareKey(r, after) > 0))
      .sort(compareKey)
      .slice(0, limit);
    return rows.map((r) => ({ ...r, values: [...r.values] }));
  }

  async transactionTimes(lsns: readonly Lsn[]): Promise<TransactionTime[]> {
    this.call('transactionTimes');
    const wanted = new Set(lsns);
    return this.server
      .state()
      .mapping.filter((m) => m.tranId !== 0 && wanted.has(lsnText(m.startLsn)))
      .map((m) => ({ startLsn: lsnText(m.startLsn), endTime: m.endTime }));
  }

  async setupFacts(): Promise<SetupFacts> {
    this.call('setupFacts');
    const { instances, tables } = this.server.state();
    const captured = new Set([...instances.values()].map((i) => `${i.schema}.${i.table}`));
    const user = [...tables.keys()].filter((name) => !name.startsWith('sitesync.') && !name.startsWith('cdc.'));
    const f = this.server.facts;
    return {
      database: this.server.database,
      cdcEnabled: f.cdcEnabled,
      agentRunning: f.agentRunning,
      isDbOwner: f.isDbOwner,
      bookkeepingReady: f.bookkeepingReady && tables.has('sitesync.apply_progress'),
      progressCaptured: instances.has('sitesync_apply_progress'),
      capturedTables: user.filter((name) => captured.has(name)),
      uncapturedTables: user.filter((name) => !captured.has(name)),
      retentionMinutes: f.retentionMinutes,
    };
  }

  async ensureCaptureProgress(): Promise<void> {
    this.call('ensureCaptureProgress');
  }

  async readProgress(site: string): Promise<CaptureProgressRow | null> {
    this.call('readProgress');
    return this.server.bookkeeping.captureProgress.get(site) ?? null;
  }

  async writeProgress(site: string, row: CaptureProgressRow): Promise<void> {
    this.call('writeProgress');
    this.server.bookkeeping.captureProgress.set(site, { ...row });
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
