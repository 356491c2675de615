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
 * - Table reads (`runner()`, the TableRunner of connectors/sqlserver/sqlserver-table-reader.ts, which is also
 *   the QueryRunner of sqlserver-snapshot-control.ts): catalog statements are answered by their method name from
 *   the state (sys.objects, sys.columns, the capture instances, COLLATIONPROPERTY, snapshot_isolation_state,
 *   sys.partitions); the reads themselves (`readChunk`, `readKeys`) are EVALUATED from their SQL text: TOP,
 *   the table, the WHERE condition and the ORDER BY are parsed, and every expression in them (columns,
 *   parameters, CAST, CONVERT, TRY_CAST, TRY_CONVERT with styles, COLLATE) computed with a model of what SQL
 *   Server documents for it (see "the table reads' SQL" below): so the reader's keyset conditions and sort
 *   expressions are proven against that model, not against themselves. A read sees the committed rows (as
 *   READ_COMMITTED_SNAPSHOT would; a locking read would wait for the writer instead); after beginSnapshot(),
 *   every read sees the committed rows as they were at its first read of a table (SNAPSHOT isolation), and
 *   fails with error 3952 when `facts.allowSnapshotIsolation` is off.
 * - The snapshot control's batches (`snapshotTables`, `snapshotStart`, `snapshotAdvance`, `snapshotList`,
 *   `snapshotCancel`) are modelled by their method name, as the documented T-SQL of each does it: the tables
 *   sitesync.snapshots (not captured) and sitesync.snapshot_markers (captured as sitesync_snapshot_markers, so
 *   its inserts reach the change table like any table's) are simulator tables, and each batch is one
 *   simulator transaction.
 *
 * Not modelled: isolation beyond the locks and the table reads above, column types (values are stored as given,
 * in the projected form of cdc-reader.ts), the ambiguity of local times in the hour a daylight-saving change
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
import type { Param, Row as QueryRow, Statement } from '../../connectors/sqlserver/mssql-cdc-reader.ts';
import type { TableRunner } from '../../connectors/sqlserver/sqlserver-table-reader.ts';
import { lsnToBytes } from '../../connectors/sqlserver/sqlserver-positions.ts';

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
  readonly facts: {
    cdcEnabled: boolean;
    agentRunning: boolean | null;
    isDbOwner: boolean;
    bookkeepingReady: boolean;
    retentionMinutes: number | null;
    /** ALTER DATABASE … SET ALLOW_SNAPSHOT_ISOLATION ON (table reads at SNAPSHOT isolation). */
    allowSnapshotIsolation: boolean;
    /** The server has UTF-8 collations (SQL Server 2019 and later). */
    utf8Collations: boolean;
  } = {
    cdcEnabled: true,
    agentRunning: true,
    isDbOwner: true,
    bookkeepingReady: true,
    retentionMinutes: 3 * 24 * 60,
    allowSnapshotIsolation: true,
    utf8Collations: true,
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

  /** A connection for table reads and the snapshot control's batches (see the file comment). */
  runner(): TableRunner {
    return new SimTableRunner(this);
  }

  /** Table-runner statements run, by method (tests read how the reader was used), and their SQL, in order. */
  readonly runnerCalls = new Map<string, number>();
  readonly runnerStatements: { method: string; sql: string }[] = [];
  private runnerFailure: Error | null = null;
  private objectIds = new Map<string, number>();
  private nextMarkerId = 1n;

  /** The next table-runner statement fails with this error (a lost connection by default). */
  failNextRunnerCall(error?: Error): void {
    this.runnerFailure = error ?? Object.assign(new Error('Connection lost - read ECONNRESET'), { name: 'ConnectionError', code: 'ESOCKET' });
  }

  /** @internal */
  runnerCall(method: string, sql: string): void {
    this.runnerCalls.set(method, (this.runnerCalls.get(method) ?? 0) + 1);
    this.runnerStatements.push({ method, sql });
    const failure = this.runnerFailure;
    if (failure) {
      this.runnerFailure = null;
      throw failure;
    }
  }

  /** @internal The object id of a table (sys.objects), stable for the simulator's life. */
  objectId(name: string): number {
    let id = this.objectIds.get(name);
    if (id === undefined) this.objectIds.set(name, (id = 245_575_913 + this.objectIds.size * 16));
    return id;
  }

  /** @internal The committed rows of every table, by `schema.table` (the open transactions' writes undone, on copies). */
  committedState(): Map<string, { columns: Required<SimColumn>[]; rows: Row[] }> {
    const out = new Map<string, { columns: Required<SimColumn>[]; rows: Row[] }>();
    for (const [name, t] of this.tables) {
      const state = new Map<number, Row>([...t.rows].map(([id, row]) => [id, { ...row }]));
      for (const tx of this.open) {
        for (let i = tx.undo.length - 1; i >= 0; i--) {
          const u = tx.undo[i]!;
          if (u.table !== name) continue;
          if (u.before === null) state.delete(u.id);
          else state.set(u.id, { ...u.before });
        }
      }
      out.set(name, { columns: t.columns.map((c) => ({ ...c })), rows: [...state.entries()].sort(([a], [b]) => a - b).map(([, row]) => row) });
    }
    return out;
  }

  /** @internal The id the next row of sitesync.snapshot_markers gets (its IDENTITY). */
  takeMarkerId(): bigint {
    return this.nextMarkerId++;
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

// ─── the table reads' SQL ──────────────────────────────────────────────────────────────────────────────────
//
// What the model of SQL Server's expressions holds to (Microsoft's documentation unless said otherwise):
// - Comparison of character values pads the shorter with spaces (ANSI padding: 'a' = 'a ', in every collation,
//   binary ones included). A binary (_BIN, _BIN2) collation then compares the characters' values; a _CI_ one
//   is modelled as lower-casing both (only its equality is ever relied on). Collation precedence: an explicit
//   COLLATE wins, then a column's collation (modelled as the database default SQL_Latin1_General_CP1_CI_AS),
//   then the default; two different explicit ones conflict (error 468).
// - Binary values compare byte by byte, the shorter padded with 0x00 (0x01 = 0x0100; the one way SQL Server's
//   comparison differs from byte order: dba.stackexchange.com/q/48660, Microsoft's Connect answer quoted there).
// - uniqueidentifier compares in System.Data.SqlTypes.SqlGuid's order: bytes 10-15, then 8-9, 6-7, 4-5, 0-3 of
//   its .NET byte array (whose first three groups are little-endian): by the 8-4-4-4-12 text's byte positions
//   10 11 12 13 14 15 8 9 7 6 5 4 3 2 1 0. Not the order of its text.
// - Numbers by value; bit false < true; the date and time types by value (datetime in 1/300 s ticks, datetimeoffset
//   by its UTC instant). A comparison between different types is NOT modelled (the reader must convert its
//   parameters to the column's own type, as it does): the model throws rather than guess an implicit conversion.
// - CAST/CONVERT of a character string: to the integer types, decimal, money, float, bit, the date and time types
//   (ISO 8601 forms; more fraction digits than the type keeps are rounded), uniqueidentifier (8-4-4-4-12, either
//   case), binary and varbinary (style 2: hex digits without 0x; without a style: the string's bytes in its
//   encoding: UTF-16LE for nvarchar, UTF-8 for varchar of a _UTF8 collation, else one byte per character);
//   between character types (nvarchar → varchar takes the code page of the expression's collation: UTF-8 for a
//   _UTF8 one, else Latin-1, a character outside it becoming '?'; silently cut to the length; char(n) and
//   nchar(n) padded with spaces). A string the target type cannot read fails as SQL Server's errors do (245,
//   8114, 8115, 241, 8169); TRY_CAST and TRY_CONVERT give NULL instead.
// - Integer arithmetic (+ - * / %: division truncates toward zero, % takes the dividend's sign), CASE WHEN,
//   DATEPART(nanosecond, t) (the fraction of a second in ns, a multiple of 100) and DATEADD(nanosecond, n, t) of
//   the time types (n a multiple of 100 here; past the type's range fails with error 517).

type SqlType = { readonly name: string; readonly length: number | 'max' | null; readonly scale: number | null };

type SqlValue =
  | null
  | { readonly t: 'exact'; readonly n: bigint; readonly scale: number }
  | { readonly t: 'float'; readonly x: number }
  | { readonly t: 'bit'; readonly b: boolean }
  | { readonly t: 'str'; readonly s: string; readonly national: boolean; readonly utf8: boolean; readonly collation: string; readonly precedence: 'explicit' | 'implicit' | 'default' }
  | { readonly t: 'bin'; readonly b: Buffer }
  | { readonly t: 'guid'; readonly hex: string }
  | { readonly t: 'temporal'; readonly type: 'date' | 'time' | 'datetime2' | 'datetimeoffset' | 'datetime' | 'smalldatetime'; readonly units: bigint };

type Expr =
  | { readonly k: 'column'; readonly name: string }
  | { readonly k: 'param'; readonly name: string }
  | { readonly k: 'literal'; readonly value: SqlValue }
  | { readonly k: 'cast'; readonly expr: Expr; readonly type: SqlType; readonly style: number | null; readonly tryIt: boolean }
  | { readonly k: 'collate'; readonly expr: Expr; readonly collation: string }
  | { readonly k: 'arith'; readonly op: string; readonly left: Expr; readonly right: Expr }
  | { readonly k: 'case'; readonly whens: readonly (readonly [Cond, Expr])[]; readonly otherwise: Expr | null }
  | { readonly k: 'datepart'; readonly part: string; readonly expr: Expr }
  | { readonly k: 'dateadd'; readonly part: string; readonly amount: Expr; readonly expr: Expr };

type Cond =
  | { readonly k: 'and' | 'or'; readonly parts: readonly Cond[] }
  | { readonly k: 'cmp'; readonly op: string; readonly left: Expr; readonly right: Expr };

interface SelectStatement {
  readonly top: Expr | null;
  /** The column each `[vN]` reads (null: NULL). */
  readonly items: readonly { readonly alias: string; readonly column: string | null }[];
  readonly schema: string;
  readonly table: string;
  readonly where: Cond | null;
  readonly orderBy: readonly Expr[];
}

const DEFAULT_COLLATION = 'SQL_Latin1_General_CP1_CI_AS';

type Token = { readonly k: 'name' | 'word' | 'param' | 'str' | 'num' | 'op'; readonly v: string };

function tokenize(sql: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < sql.length) {
    const c = sql[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '[') {
      let v = '';
      i++;
      for (;;) {
        if (i >= sql.length) throw new Error('simulator: unclosed [ in SQL');
        if (sql[i] === ']') {
          if (sql[i + 1] === ']') {
            v += ']';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        v += sql[i++];
      }
      tokens.push({ k: 'name', v });
    } else if (c === '@') {
      const m = /^@[A-Za-z0-9_]+/.exec(sql.slice(i))!;
      tokens.push({ k: 'param', v: m[0].slice(1) });
      i += m[0].length;
    } else if (c === "'" || ((c === 'N' || c === 'n') && sql[i + 1] === "'")) {
      i += c === "'" ? 1 : 2;
      let v = '';
      for (;;) {
        if (i >= sql.length) throw new Error('simulator: unclosed string in SQL');
        if (sql[i] === "'") {
          if (sql[i + 1] === "'") {
            v += "'";
            i += 2;
            continue;
          }
          i++;
          break;
        }
        v += sql[i++];
      }
      tokens.push({ k: 'str', v });
    } else if (/[0-9]/.test(c)) {
      const m = /^[0-9]+/.exec(sql.slice(i))!;
      tokens.push({ k: 'num', v: m[0] });
      i += m[0].length;
    } else if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(sql.slice(i))!;
      tokens.push({ k: 'word', v: m[0] });
      i += m[0].length;
    } else {
      const two = sql.slice(i, i + 2);
      if (two === '<=' || two === '>=' || two === '<>' || two === '!=') {
        tokens.push({ k: 'op', v: two });
        i += 2;
      } else {
        tokens.push({ k: 'op', v: c });
        i++;
      }
    }
  }
  return tokens;
}

class SqlParser {
  private i = 0;
  constructor(private readonly tokens: Token[]) {}

  private peek(offset = 0): Token | undefined {
    return this.tokens[this.i + offset];
  }
  private isWord(word: string, offset = 0): boolean {
    const t = this.peek(offset);
    return t?.k === 'word' && t.v.toUpperCase() === word;
  }
  private isOp(op: string): boolean {
    const t = this.peek();
    return t?.k === 'op' && t.v === op;
  }
  private fail(what: string): never {
    const near = this.tokens.slice(this.i, this.i + 6).map((t) => t.v).join(' ');
    throw new Error(`simulator: the SQL model has no ${what} (near «${near}»)`);
  }
  private word(word: string): void {
    if (!this.isWord(word)) this.fail(`${word} here`);
    this.i++;
  }
  private op(op: string): void {
    if (!this.isOp(op)) this.fail(`'${op}' here`);
    this.i++;
  }
  get done(): boolean {
    return this.i >= this.tokens.length || this.isOp(';');
  }

  select(): SelectStatement {
    this.word('SELECT');
    let top: Expr | null = null;
    if (this.isWord('TOP')) {
      this.i++;
      this.op('(');
      top = this.expr();
      this.op(')');
    }
    const items: { alias: string; column: string | null }[] = [];
    for (;;) {
      // An item: an expression (the projection of one column, or NULL) AS [alias]; the model takes the column it names.
      let depth = 0;
      let column: string | null = null;
      let isNull = false;
      const start = this.i;
      while (!(depth === 0 && this.isWord('AS'))) {
        const t = this.peek();
        if (t === undefined) this.fail('end of a SELECT item');
        if (t.k === 'op' && t.v === '(') depth++;
        if (t.k === 'op' && t.v === ')') depth--;
        if (t.k === 'name' && column === null) column = t.v;
        if (this.i === start && t.k === 'word' && t.v.toUpperCase() === 'NULL') isNull = true;
        this.i++;
      }
      this.word('AS');
      const alias = this.peek();
      if (alias?.k !== 'name') this.fail('alias');
      this.i++;
      items.push({ alias: alias.v, column: isNull ? null : column });
      if (this.isOp(',')) {
        this.i++;
        continue;
      }
      break;
    }
    this.word('FROM');
    const first = this.peek();
    if (first?.k !== 'name') this.fail('table name');
    this.i++;
    this.op('.');
    const second = this.peek();
    if (second?.k !== 'name') this.fail('table name');
    this.i++;
    let where: Cond | null = null;
    if (this.isWord('WHERE')) {
      this.i++;
      where = this.cond();
    }
    const orderBy: Expr[] = [];
    if (this.isWord('ORDER')) {
      this.i++;
      this.word('BY');
      orderBy.push(this.expr());
      while (this.isOp(',')) {
        this.i++;
        orderBy.push(this.expr());
      }
    }
    if (!this.done) this.fail('more after the statement');
    return { top, items, schema: first.v, table: second.v, where, orderBy };
  }

  cond(): Cond {
    const parts = [this.and()];
    while (this.isWord('OR')) {
      this.i++;
      parts.push(this.and());
    }
    return parts.length === 1 ? parts[0]! : { k: 'or', parts };
  }

  private and(): Cond {
    const parts = [this.predicate()];
    while (this.isWord('AND')) {
      this.i++;
      parts.push(this.predicate());
    }
    return parts.length === 1 ? parts[0]! : { k: 'and', parts };
  }

  private predicate(): Cond {
    // The reader's expressions never start with a parenthesis: one here opens a group of conditions.
    if (this.isOp('(')) {
      this.i++;
      const inner = this.cond();
      this.op(')');
      return inner;
    }
    const left = this.expr();
    const t = this.peek();
    if (t?.k !== 'op' || !['=', '<', '>', '<=', '>=', '<>', '!='].includes(t.v)) this.fail('comparison operator here');
    this.i++;
    const right = this.expr();
    return { k: 'cmp', op: t.v, left, right };
  }

  expr(): Expr {
    let e = this.term();
    while (this.isOp('+') || this.isOp('-')) {
      const op = this.peek()!.v;
      this.i++;
      e = { k: 'arith', op, left: e, right: this.term() };
    }
    return e;
  }

  private term(): Expr {
    let e = this.postfix();
    while (this.isOp('*') || this.isOp('/') || this.isOp('%')) {
      const op = this.peek()!.v;
      this.i++;
      e = { k: 'arith', op, left: e, right: this.postfix() };
    }
    return e;
  }

  private postfix(): Expr {
    let e = this.primary();
    while (this.isWord('COLLATE')) {
      this.i++;
      const name = this.peek();
      if (name?.k !== 'word') this.fail('collation name');
      this.i++;
      e = { k: 'collate', expr: e, collation: name.v };
    }
    return e;
  }

  private primary(): Expr {
    const t = this.peek();
    if (t === undefined) this.fail('expression at the end');
    if (t.k === 'name') {
      this.i++;
      return { k: 'column', name: t.v };
    }
    if (t.k === 'param') {
      this.i++;
      return { k: 'param', name: t.v };
    }
    if (t.k === 'str') {
      this.i++;
      return { k: 'literal', value: { t: 'str', s: t.v, national: true, utf8: false, collation: DEFAULT_COLLATION, precedence: 'default' } };
    }
    if (t.k === 'num') {
      this.i++;
      return { k: 'literal', value: { t: 'exact', n: BigInt(t.v), scale: 0 } };
    }
    if (t.k === 'word') {
      const w = t.v.toUpperCase();
      if (w === 'NULL') {
        this.i++;
        return { k: 'literal', value: null };
      }
      if (w === 'CAST' || w === 'TRY_CAST') {
        this.i++;
        this.op('(');
        const expr = this.expr();
        this.word('AS');
        const type = this.type();
        this.op(')');
        return { k: 'cast', expr, type, style: null, tryIt: w === 'TRY_CAST' };
      }
      if (w === 'CASE') {
        this.i++;
        const whens: [Cond, Expr][] = [];
        while (this.isWord('WHEN')) {
          this.i++;
          const when = this.cond();
          this.word('THEN');
          whens.push([when, this.expr()]);
        }
        if (whens.length === 0) this.fail('WHEN after CASE');
        let otherwise: Expr | null = null;
        if (this.isWord('ELSE')) {
          this.i++;
          otherwise = this.expr();
        }
        this.word('END');
        return { k: 'case', whens, otherwise };
      }
      if (w === 'DATEPART' || w === 'DATEADD') {
        this.i++;
        this.op('(');
        const part = this.peek();
        if (part?.k !== 'word') this.fail('date part');
        this.i++;
        this.op(',');
        const first = this.expr();
        if (w === 'DATEPART') {
          this.op(')');
          return { k: 'datepart', part: part.v.toLowerCase(), expr: first };
        }
        this.op(',');
        const expr = this.expr();
        this.op(')');
        return { k: 'dateadd', part: part.v.toLowerCase(), amount: first, expr };
      }
      if (w === 'CONVERT' || w === 'TRY_CONVERT') {
        this.i++;
        this.op('(');
        const type = this.type();
        this.op(',');
        const expr = this.expr();
        let style: number | null = null;
        if (this.isOp(',')) {
          this.i++;
          const n = this.peek();
          if (n?.k !== 'num') this.fail('style number');
          this.i++;
          style = Number(n.v);
        }
        this.op(')');
        return { k: 'cast', expr, type, style, tryIt: w === 'TRY_CONVERT' };
      }
    }
    this.fail('expression of this kind');
  }

  private type(): SqlType {
    const t = this.peek();
    if (t?.k !== 'word') this.fail('type name');
    this.i++;
    let length: number | 'max' | null = null;
    let scale: number | null = null;
    if (this.isOp('(')) {
      this.i++;
      const a = this.peek();
      if (a?.k === 'word' && a.v.toUpperCase() === 'MAX') length = 'max';
      else if (a?.k === 'num') length = Number(a.v);
      else this.fail('type length');
      this.i++;
      if (this.isOp(',')) {
        this.i++;
        const b = this.peek();
        if (b?.k !== 'num') this.fail('type scale');
        this.i++;
        scale = Number(b.v);
      }
      this.op(')');
    }
    return { name: t.v.toLowerCase(), length, scale };
  }
}

/** A conversion SQL Server refuses (TRY_CAST and TRY_CONVERT give NULL instead). */
class SimConversionError extends Error {
  readonly number: number;
  constructor(number: number, message: string) {
    super(message);
    this.name = 'RequestError';
    this.number = number;
  }
}

const HNS_PER_SECOND = 10_000_000n;
const HNS_PER_DAY = 86_400n * HNS_PER_SECOND;

function daysFromCivil(y: number, m: number, d: number): bigint {
  // days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm)
  const yy = m <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return BigInt(era * 146097 + doe - 719468);
}

function validDate(y: number, m: number, d: number): boolean {
  if (y < 1 || y > 9999 || m < 1 || m > 12 || d < 1) return false;
  const days = [31, y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1]!;
  return d <= days;
}

/** 100-ns units of `hh:mm:ss[.fffffff]`, the fraction rounded (half up) to `digits`; null when malformed. */
function timeUnits(text: string, digits: number): bigint | null {
  const m = /^(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,7}))?$/.exec(text);
  if (!m) return null;
  const [h, mi, s] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (h > 23 || mi > 59 || s > 59) return null;
  const fraction = BigInt((m[4] ?? '').padEnd(7, '0'));
  const step = 10n ** BigInt(7 - digits);
  const rounded = ((fraction + step / 2n) / step) * step;
  return BigInt((h * 60 + mi) * 60 + s) * HNS_PER_SECOND + rounded;
}

const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}:\d{2}:\d{2}(?:\.\d{1,7})?))?\s*(Z|[+-]\d{2}:\d{2})?$/;

/** A date-time text as 100-ns units since 1970 (UTC when it has an offset), rounded to `digits`; null when malformed. */
function dateTimeUnits(text: string, digits: number, offsetAllowed: boolean): bigint | null {
  const m = DATE_TIME.exec(text.trim());
  if (!m) return null;
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (!validDate(y, mo, d)) return null;
  if (m[5] !== undefined && !offsetAllowed) return null;
  const time = m[4] === undefined ? 0n : timeUnits(m[4], digits);
  if (time === null) return null;
  let units = daysFromCivil(y, mo, d) * HNS_PER_DAY + time;
  if (m[5] !== undefined && m[5] !== 'Z') {
    const sign = m[5][0] === '-' ? -1n : 1n;
    units -= sign * BigInt(Number(m[5].slice(1, 3)) * 60 + Number(m[5].slice(4, 6))) * 60n * HNS_PER_SECOND;
  }
  return units;
}

/** A datetime (1/300 s ticks since 1970) of a text with at most three fraction digits, as SQL Server rounds it. */
function datetimeTicks(text: string): bigint | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,3}))?)?$/.exec(text.trim());
  if (!m) return null;
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (!validDate(y, mo, d) || y < 1753) return null;
  const seconds = daysFromCivil(y, mo, d) * 86_400n + BigInt((Number(m[4] ?? 0) * 60 + Number(m[5] ?? 0)) * 60 + Number(m[6] ?? 0));
  const ms = BigInt((m[7] ?? '').padEnd(3, '0'));
  return seconds * 300n + (ms * 3n + 5n) / 10n; // .995-.998 → .997, .999 → the next second, as documented
}

/** A decimal text as an exact number; null when malformed. */
function exactOf(text: string): { n: bigint; scale: number } | null {
  const m = /^\s*([+-]?)(\d*)(?:\.(\d*))?\s*$/.exec(text);
  if (!m || (m[2] === '' && (m[3] ?? '') === '')) return null;
  const fraction = m[3] ?? '';
  const n = BigInt(`${m[2] || '0'}${fraction}`);
  return { n: m[1] === '-' ? -n : n, scale: fraction.length };
}

function rescale(n: bigint, from: number, to: number): bigint {
  if (to >= from) return n * 10n ** BigInt(to - from);
  const div = 10n ** BigInt(from - to);
  const q = n / div;
  const r = n % div;
  // half away from zero, as SQL Server rounds a decimal conversion
  if ((r < 0n ? -r : r) * 2n >= div) return n < 0n ? q - 1n : q + 1n;
  return q;
}

const INTEGER_RANGES: Readonly<Record<string, readonly [bigint, bigint]>> = {
  tinyint: [0n, 255n],
  smallint: [-32768n, 32767n],
  int: [-2147483648n, 2147483647n],
  bigint: [-(2n ** 63n), 2n ** 63n - 1n],
};

/** The value of a column as the simulator stores it (cdc-reader.ts's projected form), in its SQL type. */
function columnValue(column: Required<SimColumn>, stored: ProjectedValue | undefined): SqlValue {
  if (stored === null || stored === undefined) return null;
  const type = column.type.toLowerCase();
  const fail = (): never => {
    throw new Error(`simulator: column ${column.name} (${type}) holds ${JSON.stringify(stored)}, not a stored value of its type`);
  };
  switch (type) {
    case 'tinyint':
    case 'smallint':
    case 'int':
    case 'bigint':
      return { t: 'exact', n: BigInt(typeof stored === 'number' || typeof stored === 'string' ? stored : fail()), scale: 0 };
    case 'decimal':
    case 'numeric':
    case 'money':
    case 'smallmoney': {
      const e = typeof stored === 'string' ? exactOf(stored) : null;
      return e ? { t: 'exact', ...e } : fail();
    }
    case 'real':
    case 'float':
      return typeof stored === 'number' ? { t: 'float', x: stored } : fail();
    case 'bit':
      return typeof stored === 'boolean' ? { t: 'bit', b: stored } : fail();
    case 'char':
    case 'varchar':
    case 'text':
    case 'nchar':
    case 'nvarchar':
    case 'ntext':
    case 'sysname':
      return typeof stored === 'string'
        ? { t: 'str', s: stored, national: type.startsWith('n') || type === 'sysname', utf8: false, collation: DEFAULT_COLLATION, precedence: 'implicit' }
        : fail();
    case 'binary':
    case 'varbinary':
    case 'image':
      return Buffer.isBuffer(stored) ? { t: 'bin', b: stored } : fail();
    case 'uniqueidentifier':
      return typeof stored === 'string' && /^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$/.test(stored) ? { t: 'guid', hex: stored.replace(/-/g, '') } : fail();
    case 'date': {
      const units = typeof stored === 'string' ? dateTimeUnits(stored, 0, false) : null;
      return units === null ? fail() : { t: 'temporal', type: 'date', units: units / HNS_PER_DAY };
    }
    case 'time': {
      const units = typeof stored === 'string' ? timeUnits(stored, 7) : null;
      return units === null ? fail() : { t: 'temporal', type: 'time', units };
    }
    case 'datetime2':
    case 'datetimeoffset': {
      const units = typeof stored === 'string' ? dateTimeUnits(stored, 7, type === 'datetimeoffset') : null;
      return units === null ? fail() : { t: 'temporal', type, units };
    }
    case 'datetime': {
      const ticks = typeof stored === 'string' ? datetimeTicks(stored) : null;
      return ticks === null ? fail() : { t: 'temporal', type: 'datetime', units: ticks };
    }
    case 'smalldatetime': {
      const units = typeof stored === 'string' ? dateTimeUnits(stored, 0, false) : null;
      return units === null ? fail() : { t: 'temporal', type: 'smalldatetime', units: units / (60n * HNS_PER_SECOND) };
    }
    default:
      return fail();
  }
}

/** The bytes of a character value in its encoding (what CAST(… AS varbinary) gives). */
function stringBytes(v: Extract<SqlValue, { t: 'str' }>): Buffer {
  if (v.national) return Buffer.from(v.s, 'utf16le');
  if (v.utf8) return Buffer.from(v.s, 'utf8');
  return Buffer.from(v.s, 'latin1');
}

/** CAST or CONVERT of a value to a type (see the model above); a SimConversionError where SQL Server fails. */
function convert(v: SqlValue, type: SqlType, style: number | null): SqlValue {
  if (v === null) return null;
  const name = type.name;
  const text = (): string => {
    if (v.t !== 'str') throw new Error(`simulator: the SQL model converts only character values to ${name}, not ${v.t}`);
    return v.s;
  };
  const bad = (number: number, what: string): never => {
    throw new SimConversionError(number, `Conversion failed when converting ${JSON.stringify(v.t === 'str' ? v.s : v.t)} to ${what}.`);
  };
  if (name in INTEGER_RANGES) {
    let n: bigint;
    if (v.t === 'exact') n = rescale(v.n, v.scale, 0);
    else {
      const s = text().trim();
      if (!/^[+-]?\d+$/.test(s)) bad(245, name);
      n = BigInt(s);
    }
    const [min, max] = INTEGER_RANGES[name]!;
    if (n < min || n > max) bad(8115, name);
    return { t: 'exact', n, scale: 0 };
  }
  switch (name) {
    case 'bit': {
      if (v.t === 'exact') return { t: 'bit', b: v.n !== 0n };
      const s = text().trim().toLowerCase();
      if (s === '1' || s === 'true') return { t: 'bit', b: true };
      if (s === '0' || s === 'false') return { t: 'bit', b: false };
      return bad(245, 'bit');
    }
    case 'decimal':
    case 'numeric':
    case 'money':
    case 'smallmoney': {
      const [precision, scale] = name === 'money' ? [19, 4] : name === 'smallmoney' ? [10, 4] : [typeof type.length === 'number' ? type.length : 18, type.scale ?? 0];
      const e = v.t === 'exact' ? v : exactOf(text());
      if (e === null) return bad(8114, `${name}`);
      const n = rescale(e.n, e.scale, scale);
      if ((n < 0n ? -n : n) >= 10n ** BigInt(precision)) bad(8115, `${name}(${precision},${scale})`);
      return { t: 'exact', n, scale };
    }
    case 'real':
    case 'float': {
      const s = text().trim();
      if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s)) bad(8114, name);
      const x = Number(s);
      if (!Number.isFinite(x)) bad(8115, name);
      const single = name === 'real' || (typeof type.length === 'number' && type.length <= 24);
      return { t: 'float', x: single ? Math.fround(x) : x };
    }
    case 'date': {
      const units = dateTimeUnits(text(), 0, false);
      if (units === null || !/^\d{4}-\d{2}-\d{2}$/.test(text().trim())) return bad(241, 'date');
      return { t: 'temporal', type: 'date', units: units / HNS_PER_DAY };
    }
    case 'time': {
      const units = timeUnits(text().trim(), typeof type.length === 'number' ? type.length : 7);
      if (units === null) return bad(241, 'time');
      if (units >= HNS_PER_DAY) bad(241, 'time'); // rounded past 23:59:59.9999999
      return { t: 'temporal', type: 'time', units };
    }
    case 'datetime2':
    case 'datetimeoffset': {
      const digits = typeof type.length === 'number' ? type.length : 7;
      const units = dateTimeUnits(text(), digits, name === 'datetimeoffset');
      if (units === null) return bad(241, name);
      return { t: 'temporal', type: name, units };
    }
    case 'datetime': {
      const ticks = datetimeTicks(text());
      if (ticks === null) return bad(241, 'datetime');
      return { t: 'temporal', type: 'datetime', units: ticks };
    }
    case 'smalldatetime': {
      const units = dateTimeUnits(text(), 3, false);
      if (units === null) return bad(241, 'smalldatetime');
      const minute = 60n * HNS_PER_SECOND;
      return { t: 'temporal', type: 'smalldatetime', units: (units + minute / 2n) / minute };
    }
    case 'uniqueidentifier': {
      if (v.t === 'guid') return v;
      const s = text().trim();
      if (!/^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$/.test(s)) bad(8169, 'uniqueidentifier');
      return { t: 'guid', hex: s.replace(/-/g, '').toUpperCase() };
    }
    case 'binary':
    case 'varbinary': {
      let bytes: Buffer;
      if (v.t === 'bin') bytes = v.b;
      else if (v.t === 'str' && style === 2) {
        if (!/^([0-9A-Fa-f]{2})*$/.test(v.s)) bad(8114, name);
        bytes = Buffer.from(v.s, 'hex');
      } else if (v.t === 'str' && (style === null || style === 0)) bytes = stringBytes(v);
      else throw new Error(`simulator: the SQL model has no conversion of ${v.t} to ${name} with style ${style}`);
      const length = typeof type.length === 'number' ? type.length : type.length === 'max' ? Infinity : 30;
      if (bytes.length > length) bytes = bytes.subarray(0, length);
      if (name === 'binary' && bytes.length < length) bytes = Buffer.concat([bytes, Buffer.alloc(length - bytes.length)]);
      return { t: 'bin', b: bytes };
    }
    case 'char':
    case 'varchar':
    case 'nchar':
    case 'nvarchar':
    case 'sysname': {
      const national = name === 'nchar' || name === 'nvarchar' || name === 'sysname';
      let s: string;
      let collation = DEFAULT_COLLATION;
      let precedence: 'explicit' | 'implicit' | 'default' = 'default';
      if (v.t === 'guid') s = `${v.hex.slice(0, 8)}-${v.hex.slice(8, 12)}-${v.hex.slice(12, 16)}-${v.hex.slice(16, 20)}-${v.hex.slice(20)}`;
      else if (v.t === 'str') {
        s = v.s;
        collation = v.collation;
        precedence = v.precedence;
      } else throw new Error(`simulator: the SQL model has no conversion of ${v.t} to ${name}`);
      const utf8 = /_UTF8$/i.test(collation);
      if (!national) {
        // To the code page of the expression's collation: UTF-8 keeps every character (a lone surrogate becomes
        // '?', as it has no UTF-8 form); Latin-1 keeps U+0000-U+00FF.
        s = utf8 ? s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '?') : s.replace(/[^\u0000-\u00ff]/g, '?');
      }
      const length = name === 'sysname' ? 128 : typeof type.length === 'number' ? type.length : type.length === 'max' ? Infinity : 30;
      if (national) {
        if (s.length > length) s = s.slice(0, length);
      } else {
        while ((utf8 ? Buffer.byteLength(s, 'utf8') : s.length) > length) s = s.slice(0, -1);
      }
      if ((name === 'char' || name === 'nchar') && Number.isFinite(length)) s = s.padEnd(length, ' ');
      return { t: 'str', s, national, utf8: !national && utf8, collation, precedence };
    }
    default:
      throw new Error(`simulator: the SQL model has no type ${name}`);
  }
}

/** The text position order in which SQL Server compares a uniqueidentifier's bytes (see the model above). */
const GUID_ORDER = [10, 11, 12, 13, 14, 15, 8, 9, 7, 6, 5, 4, 3, 2, 1, 0];

/** SQL Server's order of two uniqueidentifiers (32 upper-case hex digits each, in text order). */
export function compareSqlServerGuids(a: string, b: string): number {
  for (const i of GUID_ORDER) {
    const x = parseInt(a.slice(2 * i, 2 * i + 2), 16);
    const y = parseInt(b.slice(2 * i, 2 * i + 2), 16);
    if (x !== y) return x - y;
  }
  return 0;
}

function collationOf(a: Extract<SqlValue, { t: 'str' }>, b: Extract<SqlValue, { t: 'str' }>): string {
  for (const level of ['explicit', 'implicit'] as const) {
    const named = [a, b].filter((v) => v.precedence === level).map((v) => v.collation);
    if (named.length === 2 && named[0] !== named[1]) throw new SimConversionError(468, `Cannot resolve the collation conflict between "${named[0]}" and "${named[1]}".`);
    if (named.length > 0) return named[0]!;
  }
  return DEFAULT_COLLATION;
}

/** Negative, 0 or positive as SQL Server orders a and b; null when either is NULL. */
function compareSql(a: SqlValue, b: SqlValue): number | null {
  if (a === null || b === null) return null;
  const sign = (n: number | bigint): number => (n < 0 ? -1 : n > 0 ? 1 : 0);
  if (a.t === 'exact' && b.t === 'exact') {
    const scale = Math.max(a.scale, b.scale);
    return sign(rescale(a.n, a.scale, scale) - rescale(b.n, b.scale, scale));
  }
  if ((a.t === 'exact' || a.t === 'float') && (b.t === 'exact' || b.t === 'float')) {
    const x = a.t === 'float' ? a.x : Number(a.n) / 10 ** a.scale;
    const y = b.t === 'float' ? b.x : Number(b.n) / 10 ** b.scale;
    return sign(x - y);
  }
  if (a.t === 'bit' && b.t === 'bit') return Number(a.b) - Number(b.b);
  if (a.t === 'str' && b.t === 'str') {
    const collation = collationOf(a, b);
    let x = a.s;
    let y = b.s;
    if (!/_BIN2?(_|$)/i.test(collation)) {
      x = x.toLowerCase();
      y = y.toLowerCase();
    }
    const n = Math.max(x.length, y.length);
    x = x.padEnd(n, ' ');
    y = y.padEnd(n, ' ');
    for (let i = 0; i < n; i++) {
      const d = x.charCodeAt(i) - y.charCodeAt(i);
      if (d !== 0) return sign(d);
    }
    return 0;
  }
  if (a.t === 'bin' && b.t === 'bin') {
    const n = Math.max(a.b.length, b.b.length);
    for (let i = 0; i < n; i++) {
      const d = (a.b[i] ?? 0) - (b.b[i] ?? 0);
      if (d !== 0) return sign(d);
    }
    return 0;
  }
  if (a.t === 'guid' && b.t === 'guid') return sign(compareSqlServerGuids(a.hex, b.hex));
  if (a.t === 'temporal' && b.t === 'temporal' && a.type === b.type) return sign(a.units - b.units);
  throw new Error(`simulator: the SQL model does not compare ${a.t}${a.t === 'temporal' ? ` ${a.type}` : ''} with ${b.t}${b.t === 'temporal' ? ` ${b.type}` : ''} (an implicit conversion the reader should not rely on)`);
}

interface EvalContext {
  readonly columns: ReadonlyMap<string, Required<SimColumn>>;
  readonly row: Row | null;
  readonly params: ReadonlyMap<string, Param>;
}

function paramValue(p: Param): SqlValue {
  if (p.value === null) return null;
  if (p.type === 'int') return { t: 'exact', n: BigInt(p.value as number), scale: 0 };
  if (p.type === 'lsn') return { t: 'bin', b: p.value as Buffer };
  return { t: 'str', s: String(p.value), national: p.type === 'nvarchar' || p.type === 'nvarcharMax', utf8: false, collation: DEFAULT_COLLATION, precedence: 'default' };
}

function evaluate(e: Expr, ctx: EvalContext): SqlValue {
  switch (e.k) {
    case 'column': {
      const column = ctx.columns.get(e.name);
      if (!column || ctx.row === null) throw simRequestError(207, `Invalid column name '${e.name}'.`);
      return columnValue(column, ctx.row[e.name]);
    }
    case 'param': {
      const p = ctx.params.get(e.name);
      if (!p) throw simRequestError(137, `Must declare the scalar variable "@${e.name}".`);
      return paramValue(p);
    }
    case 'literal':
      return e.value;
    case 'collate': {
      const v = evaluate(e.expr, ctx);
      if (v === null) return null;
      if (v.t !== 'str') throw simRequestError(447, 'Expression type is invalid for COLLATE clause.');
      return { ...v, collation: e.collation, precedence: 'explicit', utf8: !v.national && /_UTF8$/i.test(e.collation) };
    }
    case 'cast': {
      const v = evaluate(e.expr, ctx);
      try {
        return convert(v, e.type, e.style);
      } catch (error) {
        if (e.tryIt && error instanceof SimConversionError) return null;
        throw error;
      }
    }
    case 'arith': {
      const a = evaluate(e.left, ctx);
      const b = evaluate(e.right, ctx);
      if (a === null || b === null) return null;
      if (a.t !== 'exact' || b.t !== 'exact' || a.scale !== 0 || b.scale !== 0) throw new Error(`simulator: the SQL model does arithmetic on integers only, not ${a.t} ${e.op} ${b.t}`);
      switch (e.op) {
        case '+':
          return { t: 'exact', n: a.n + b.n, scale: 0 };
        case '-':
          return { t: 'exact', n: a.n - b.n, scale: 0 };
        case '*':
          return { t: 'exact', n: a.n * b.n, scale: 0 };
        default:
          if (b.n === 0n) throw new SimConversionError(8134, 'Divide by zero error encountered.');
          return { t: 'exact', n: e.op === '/' ? a.n / b.n : a.n % b.n, scale: 0 };
      }
    }
    case 'case': {
      for (const [when, then] of e.whens) if (holds(when, ctx)) return evaluate(then, ctx);
      return e.otherwise === null ? null : evaluate(e.otherwise, ctx);
    }
    case 'datepart': {
      const v = evaluate(e.expr, ctx);
      if (v === null) return null;
      if (e.part !== 'nanosecond' || v.t !== 'temporal' || !['time', 'datetime2', 'datetimeoffset'].includes(v.type)) throw new Error(`simulator: the SQL model has no DATEPART(${e.part}) of ${v.t}`);
      // The local time's fraction is the UTC one's: offsets are whole minutes.
      return { t: 'exact', n: (((v.units % HNS_PER_SECOND) + HNS_PER_SECOND) % HNS_PER_SECOND) * 100n, scale: 0 };
    }
    case 'dateadd': {
      const amount = evaluate(e.amount, ctx);
      const v = evaluate(e.expr, ctx);
      if (amount === null || v === null) return null;
      if (e.part !== 'nanosecond' || amount.t !== 'exact' || amount.n % 100n !== 0n || v.t !== 'temporal' || !['time', 'datetime2', 'datetimeoffset'].includes(v.type)) {
        throw new Error(`simulator: the SQL model has DATEADD(nanosecond, a multiple of 100, a time type) only`);
      }
      const units = v.units + amount.n / 100n;
      const [min, max] = v.type === 'time' ? [0n, HNS_PER_DAY - 1n] : [-719_162n * HNS_PER_DAY, 2_932_897n * HNS_PER_DAY - 1n];
      if (v.type === 'time') return { t: 'temporal', type: 'time', units: ((units % HNS_PER_DAY) + HNS_PER_DAY) % HNS_PER_DAY }; // time wraps around midnight
      if (units < min || units > max) throw new SimConversionError(517, 'Adding a value to a \'datetime2\' column caused an overflow.');
      return { t: 'temporal', type: v.type, units };
    }
  }
}

function holds(c: Cond, ctx: EvalContext): boolean {
  switch (c.k) {
    case 'and':
      return c.parts.every((p) => holds(p, ctx));
    case 'or':
      return c.parts.some((p) => holds(p, ctx));
    case 'cmp': {
      const order = compareSql(evaluate(c.left, ctx), evaluate(c.right, ctx));
      if (order === null) return false; // unknown
      switch (c.op) {
        case '=':
          return order === 0;
        case '<':
          return order < 0;
        case '>':
          return order > 0;
        case '<=':
          return order <= 0;
        case '>=':
          return order >= 0;
        default:
          return order !== 0;
      }
    }
  }
}

/** Runs a parsed SELECT over rows: WHERE, ORDER BY (NULLs first, as SQL Server sorts them), TOP, the projection. */
function runSelect(statement: SelectStatement, columns: readonly Required<SimColumn>[], rows: readonly Row[], params: ReadonlyMap<string, Param>): QueryRow[] {
  const byName = new Map(columns.map((c) => [c.name, c]));
  const ctx = (row: Row | null): EvalContext => ({ columns: byName, row, params });
  let kept = rows.filter((row) => statement.where === null || holds(statement.where, ctx(row)));
  if (statement.orderBy.length > 0) {
    const keyed = kept.map((row) => ({ row, keys: statement.orderBy.map((e) => evaluate(e, ctx(row))) }));
    keyed.sort((a, b) => {
      for (let i = 0; i < a.keys.length; i++) {
        const x = a.keys[i]!;
        const y = b.keys[i]!;
        if (x === null || y === null) {
          if (x !== y) return x === null ? -1 : 1;
          continue;
        }
        const d = compareSql(x, y)!;
        if (d !== 0) return d;
      }
      return 0;
    });
    kept = keyed.map((k) => k.row);
  }
  if (statement.top !== null) {
    const top = evaluate(statement.top, ctx(null));
    if (top === null || top.t !== 'exact') throw new Error('simulator: TOP takes a whole number');
    kept = kept.slice(0, Number(top.n));
  }
  return kept.map((row) =>
    Object.fromEntries(
      statement.items.map((item) => {
        if (item.column === null) return [item.alias, null];
        if (!byName.has(item.column)) throw simRequestError(207, `Invalid column name '${item.column}'.`);
        const value = row[item.column] ?? null;
        return [item.alias, Buffer.isBuffer(value) ? Buffer.from(value) : value];
      }),
    ),
  );
}

/** `YYYY-MM-DDThh:mm:ss.ffffff` of UTC microseconds (a datetime2(6) as style 126 prints it). */
function datetime2Text(micros: bigint): string {
  return new Date(Number(micros / 1000n)).toISOString().slice(0, 19) + '.' + (micros % 1_000_000n).toString().padStart(6, '0');
}

/** The table runner over the simulator (see the file comment): what sqlserver-table-reader.ts and sqlserver-snapshot-control.ts run. */
class SimTableRunner implements TableRunner {
  private closed = false;
  private snapshot: 'off' | 'begun' | Map<string, { columns: Required<SimColumn>[]; rows: Row[] }> = 'off';

  constructor(private readonly server: SimulatedSqlServer) {}

  async beginSnapshot(): Promise<void> {
    this.check('beginSnapshot', 'BEGIN TRANSACTION (SNAPSHOT)');
    this.snapshot = 'begun';
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private check(method: string, sql: string): void {
    if (this.closed) throw Object.assign(new Error('Connection is closed.'), { name: 'ConnectionError', code: 'ECONNCLOSED' });
    this.server.runnerCall(method, sql);
  }

  /** The committed rows this connection reads: at SNAPSHOT isolation, those of its first read of a table. */
  private view(): Map<string, { columns: Required<SimColumn>[]; rows: Row[] }> {
    if (this.snapshot === 'off') return this.server.committedState();
    if (this.snapshot === 'begun') {
      if (!this.server.facts.allowSnapshotIsolation) {
        throw simRequestError(3952, `Snapshot isolation transaction failed accessing database '${this.server.database}' because snapshot isolation is not allowed in this database. Use ALTER DATABASE to allow snapshot isolation.`);
      }
      this.snapshot = this.server.committedState();
    }
    return this.snapshot;
  }

  private tableByName(schema: string, table: string): { name: string; schema: string; table: string } | null {
    for (const name of this.server.state().tables.keys()) {
      const dot = name.indexOf('.');
      // SQL Server's default collations compare names case-insensitively.
      if (name.slice(0, dot).toLowerCase() === schema.toLowerCase() && name.slice(dot + 1).toLowerCase() === table.toLowerCase()) {
        return { name, schema: name.slice(0, dot), table: name.slice(dot + 1) };
      }
    }
    return null;
  }

  private tableById(id: number): string | null {
    for (const name of this.server.state().tables.keys()) if (this.server.objectId(name) === id) return name;
    return null;
  }

  async query(method: string, statement: Statement): Promise<QueryRow[]> {
    this.check(method, statement.sql);
    const params = new Map(statement.params.map((p) => [p.name, p]));
    const param = (name: string): Param['value'] => {
      const p = params.get(name);
      if (!p) throw simRequestError(137, `Must declare the scalar variable "@${name}".`);
      return p.value;
    };
    const server = this.server;
    const { instances } = server.state();
    switch (method) {
      case 'snapshotIsolation':
        return [{ database_name: server.database, state: server.facts.allowSnapshotIsolation ? 1 : 0 }];
      case 'utf8Collation':
        return [{ code_page: server.facts.utf8Collations ? 65001 : null }];
      case 'table': {
        const found = this.tableByName(String(param('schema')), String(param('table')));
        if (!found) return [];
        return [{ object_id: server.objectId(found.name), schema_name: found.schema, table_name: found.table, type_desc: 'USER_TABLE', tracked: server.hasInstance(found.schema, found.table) ? 1 : 0 }];
      }
      case 'columns': {
        const name = this.tableById(Number(param('object')));
        if (name === null) return [];
        const dot = name.indexOf('.');
        const { columns } = server.describeTable(name.slice(0, dot), name.slice(dot + 1))!;
        return columns.map((c, i) => ({ column_id: i + 1, name: c.name, type_name: c.type.toLowerCase(), max_length: c.maxLength, precision: c.precision, scale: c.scale, is_computed: 0, key_ordinal: c.keyOrdinal }));
      }
      case 'captureInstances':
        return [...instances.values()]
          .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
          .flatMap((i) =>
            i.columns.map((c, n) => ({
              capture_instance: i.name,
              source_schema: i.schema,
              source_table: i.table,
              start_lsn: lsnToBytes(lsnText(i.startLsn)),
              create_date: i.createDate.slice(0, 23),
              column_name: c.name,
              column_ordinal: n + 1,
              type_name: c.type.toLowerCase(),
              max_length: c.maxLength,
              precision: c.precision,
              scale: c.scale,
              key_ordinal: c.keyOrdinal,
            })),
          );
      case 'estimateRows': {
        const name = this.tableById(Number(param('object')));
        return [{ n: name === null ? '0' : String(server.committedState().get(name)!.rows.length) }];
      }
      case 'readChunk':
      case 'readKeys': {
        const select = new SqlParser(tokenize(statement.sql)).select();
        const found = this.tableByName(select.schema, select.table);
        if (!found) throw simRequestError(208, `Invalid object name '${select.schema}.${select.table}'.`);
        const table = this.view().get(found.name);
        if (!table) throw simRequestError(208, `Invalid object name '${select.schema}.${select.table}'.`);
        return runSelect(select, table.columns, table.rows, params);
      }
      case 'snapshotTables':
        return [this.ensureSnapshotTables()];
      case 'snapshotStart':
        this.inTransaction((tx) => {
          tx.insert('sitesync', 'snapshots', {
            id: String(param('id')),
            table_name: String(param('table')),
            targets: param('targets') as string | null,
            next_chunk: 0,
            rows_sent: '0',
            estimated_rows: BigInt(String(param('estimated'))).toString(),
            state: 'running',
            started_at: datetime2Text(server.now),
            updated_at: datetime2Text(server.now),
          });
          this.writeMarker(tx, String(param('marker')));
        });
        return [];
      case 'snapshotAdvance': {
        let outcome = 'advanced';
        this.inTransaction((tx) => {
          const id = String(param('id'));
          const chunk = Number(param('chunk'));
          const row = tx.find('sitesync', 'snapshots', { id });
          const columns = server.describeTable('sitesync', 'snapshots')!.columns.map((c) => c.name);
          const get = (name: string): ProjectedValue => (row === null ? null : row[columns.indexOf(name)]!);
          const state = get('state');
          if (row === null || state === 'cancelled') outcome = 'cancelled';
          else if (Number(get('next_chunk')) > chunk || state === 'done') outcome = 'already';
          else {
            const marker = param('marker');
            tx.update('sitesync', 'snapshots', { id }, {
              next_chunk: chunk + 1,
              rows_sent: (BigInt(String(get('rows_sent'))) + BigInt(Number(param('rows')))).toString(),
              state: marker === null ? 'done' : 'running',
              updated_at: datetime2Text(server.now),
            });
            if (marker !== null) this.writeMarker(tx, String(marker));
          }
        });
        return [{ outcome }];
      }
      case 'snapshotList': {
        const table = server.committedState().get('sitesync.snapshots');
        if (!table) return []; // IF OBJECT_ID(…) IS NOT NULL: no result set
        return table.rows
          .map((r): QueryRow => ({ ...r, rows_sent: String(r.rows_sent), estimated_rows: String(r.estimated_rows) }))
          .sort((a, b) => (String(a.started_at) < String(b.started_at) ? -1 : String(a.started_at) > String(b.started_at) ? 1 : String(a.id) < String(b.id) ? -1 : 1));
      }
      case 'snapshotCancel': {
        let n = 0;
        if (server.describeTable('sitesync', 'snapshots') === null) return [{ n }];
        this.inTransaction((tx) => {
          const id = String(param('id'));
          const row = tx.find('sitesync', 'snapshots', { id });
          const columns = server.describeTable('sitesync', 'snapshots')!.columns.map((c) => c.name);
          if (row !== null && row[columns.indexOf('state')] === 'running') n = tx.update('sitesync', 'snapshots', { id }, { state: 'cancelled', updated_at: datetime2Text(server.now) });
        });
        return [{ n }];
      }
      default:
        throw new Error(`simulator: no model of the table runner's statement ${method}`);
    }
  }

  /** sqlserver-snapshot-control.ts ensureStatement: the tables when missing, then CDC on the markers table. */
  private ensureSnapshotTables(): QueryRow {
    const server = this.server;
    if (server.describeTable('sitesync', 'snapshots') === null) {
      server.createTable('sitesync', 'snapshots', [
        { name: 'id', type: 'varchar', maxLength: 64, keyOrdinal: 1 },
        { name: 'table_name', type: 'nvarchar', maxLength: 400 },
        { name: 'targets', type: 'nvarchar', maxLength: -1 },
        { name: 'next_chunk', type: 'int' },
        { name: 'rows_sent', type: 'bigint' },
        { name: 'estimated_rows', type: 'bigint' },
        { name: 'state', type: 'varchar', maxLength: 16 },
        { name: 'started_at', type: 'datetime2', scale: 6 },
        { name: 'updated_at', type: 'datetime2', scale: 6 },
      ]);
    }
    if (server.describeTable('sitesync', 'snapshot_markers') === null) {
      server.createTable('sitesync', 'snapshot_markers', [
        { name: 'id', type: 'bigint', keyOrdinal: 1, identity: true },
        { name: 'content', type: 'nvarchar', maxLength: -1 },
      ]);
    }
    const cdc = server.facts.cdcEnabled;
    let captured = cdc && server.state().instances.has('sitesync_snapshot_markers');
    let error: string | null = null;
    if (cdc && !captured) {
      if (!server.facts.isDbOwner) error = "The EXECUTE permission was denied on the object 'sp_cdc_enable_table', database 'mssqlsystemresource', schema 'sys'.";
      else {
        server.enableCdc('sitesync', 'snapshot_markers', 'sitesync_snapshot_markers');
        captured = true;
      }
    }
    return { cdc_enabled: cdc ? 1 : 0, markers_captured: captured ? 1 : 0, enable_error: error };
  }

  /** A marker's row, and the rows of the markers before it deleted (as the batch's INSERT and DELETE do). */
  private writeMarker(tx: SimTransaction, content: string): void {
    const id = this.server.takeMarkerId();
    tx.insert('sitesync', 'snapshot_markers', { id: id.toString(), content });
    const older = this.server.committedState().get('sitesync.snapshot_markers')!.rows.filter((r) => BigInt(String(r.id)) < id);
    for (const row of older) tx.delete('sitesync', 'snapshot_markers', { id: row.id! });
  }

  /** One batch: SET XACT_ABORT ON, BEGIN TRANSACTION … COMMIT; any error rolls it all back. */
  private inTransaction(work: (tx: SimTransaction) => void): void {
    const tx = this.server.begin();
    try {
      work(tx);
      tx.commit();
    } catch (error) {
      tx.rollback();
      throw error;
    }
  }
}
