/**
 * An Oracle database with LogMiner, in memory, for the tests of capture (redo-logs.ts, transaction-buffer.ts,
 * mined-stream.ts, oracle-source.ts) and apply (the simulated apply connection writes through it). It writes
 * redo records as Oracle does and implements the LogMinerReader contract (connectors/oracle/logminer-reader.ts)
 * over them, so the pure code is proven against what LogMiner returns, not against what the code expects.
 *
 * What it models, and why each rule is there (the data-loss bugs of LogMiner readers live in these):
 * - One SCN sequence for the database; one or two redo threads (RAC) draw from it. Every redo record takes the
 *   next SCN, except that a COMMIT may be given the SCN of the commit just before it (`commit({ shareScn })`:
 *   Oracle gives concurrent commits one SCN, on one thread or several: DBZ-4936). Sharing only happens when no
 *   reader has been told an SCN at or above it (reading CURRENT_SCN or the threads' flushed SCNs takes a new
 *   SCN in Oracle too), so a commit never appears below a point a reader already knew to be complete.
 * - A transaction writes, on its thread: START (op 6) with its first change, one record per row changed
 *   (insert 1, delete 2, update 3) with SQL_REDO in LogMiner's syntax and the row's ROWID, and COMMIT (7) or,
 *   after a rollback, ROLLBACK=1 undo records for each change in reverse order and ROLLBACK (36). A rollback to
 *   a savepoint writes the ROLLBACK=1 undo records of the changes since it (in reverse order). A transaction
 *   that changed nothing writes nothing.
 * - SQL_REDO: `insert into "O"."T"("A","B") values ('1','x');`, `update "O"."T" set "B" = 'y' where "A" = '1'
 *   and "B" = 'x';`, `delete from "O"."T" where "A" = '1' and "B" = 'y';`. Supplemental logging ALL COLUMNS:
 *   the WHERE of an update or delete holds every non-LOB column's old value (`"B" IS NULL` for a null);
 *   `and ROWID = '…'` is appended to some. Literals by type: `'123.5'` (numbers), `'it''s'` (strings;
 *   UNISTR('\00E9') for non-ASCII characters of NVARCHAR2/NCHAR), `TO_DATE('…', 'YYYY-MM-DD HH24:MI:SS')`,
 *   `TO_TIMESTAMP('…')`, `TO_TIMESTAMP_TZ('…')`, `HEXTORAW('0AFF')`, `TO_DSINTERVAL('…')`, `TO_YMINTERVAL('…')`,
 *   `TO_BINARY_FLOAT('…')`, `TO_BINARY_DOUBLE('…')`, `NULL`, `EMPTY_CLOB()`/`EMPTY_BLOB()`.
 * - LOB columns (CLOB, NCLOB, BLOB): an insert writes EMPTY_CLOB()/EMPTY_BLOB() for a non-null value and the
 *   value in separate SELECT_LOB_LOCATOR (9) and LOB_WRITE (10) records; an update of a LOB column writes
 *   those records only (the column is not in the UPDATE's SET, and never in a WHERE).
 * - CSF: SQL_REDO longer than `csfChunk` characters (4000 in Oracle; shorter in tests) is cut at random
 *   points into rows with CSF = 1 but the last, all of one redo record (one RS_ID and SSN).
 * - Redo logs per thread: the current online log switches after `recordsPerLog` records (or `switchLog`);
 *   FIRST_CHANGE# of the new log = NEXT_CHANGE# of the old. Switched logs stay listed as online until
 *   `archive()`, then as archived only; `deleteArchived` removes one (RMAN deleted it): a mining session given
 *   a log that does not exist fails as DBMS_LOGMNR.ADD_LOGFILE does (ORA-01284).
 * - Flushed SCN per thread: everything written, unless `holdFlush(thread, true)`: its flushedScn stays where it
 *   was, and its records above it are not in its log yet (not mined) until the hold ends (DBZ-2552).
 * - DDL (`addColumn`): a transaction of its own with a DDL record (op 5) and a COMMIT.
 * - Mining: rows with fromScn < SCN <= toScn, from the logs given only (a log not given: its rows are missing),
 *   ordered by SCN, then thread, then the order written; start, commit and rollback rows of every transaction,
 *   row changes and DDL of the owners asked for (null: every owner).
 * - V$TRANSACTION (`oldestOpenTransactionScn`): the lowest START SCN of the open transactions that wrote redo.
 * - Readers (`reader()`): `failNextReaderCall()` makes the next call of any reader fail (connection lost).
 *
 * - Online snapshots (oracle-table-reader.ts, oracle-snapshot-control.ts): `tableDatabase()` answers a table
 *   reader's queries over the committed rows (a consistent one over the rows as they were when it was made: a
 *   READ ONLY transaction), evaluating each RowQuery as Oracle would under NLS_SORT = BINARY: NUMBER and the
 *   binary floats by value (NaN last), DATE and TIMESTAMP by instant, RAW by bytes, CHAR and VARCHAR2 by their
 *   bytes in the database character set (`characterSet`: AL32UTF8 by default; UTF8 is CESU-8, a supplementary
 *   character as its two UTF-16 halves; a single-byte set as Latin-1, '?' for what it cannot hold), NCHAR and
 *   NVARCHAR2 by their bytes in the national one (AL16UTF16: UTF-16 big-endian), TO_CHAR of those by the
 *   database set's; NUM_ROWS is what `analyze()` last counted (null before). `snapshotStore()` runs the snapshot
 *   control's transactions as transactions of the simulator (SITESYNC.SNAPSHOTS, SITESYNC.SNAPSHOT_MARKERS), so
 *   their marker inserts are in the redo like any row's.
 *
 * Values are kept in the Oracle text form (spec: what SQL_REDO's literals hold under sitesync's session
 * settings), CHAR padded to its length. Not modelled: isolation beyond row locks (a write to a row another
 * open transaction wrote throws SimLockError where Oracle would wait), constraints other than the primary key,
 * online log groups being reused, the LOB contents of LOB_WRITE rows (a placeholder text).
 */
import type {
  LogMinerReader,
  MinedRow,
  MiningSession,
  OracleColumn,
  OracleProgressRow,
  OracleSetupFacts,
  RedoLog,
  RedoThread,
  Scn,
} from '../../connectors/oracle/logminer-reader.ts';
import { OPERATION } from '../../connectors/oracle/logminer-reader.ts';
import { oracleText } from '../../connectors/oracle/oracle-kinds.ts';
import { ORACLE_BOOKKEEPING_OWNER, SNAPSHOT_MARKERS_TABLE, SNAPSHOTS_TABLE } from '../../connectors/oracle/oracle-setup.ts';
import type { MarkerPiece, SnapshotRecord, SnapshotStore, SnapshotStoreTransaction } from '../../connectors/oracle/oracle-snapshot-control.ts';
import type { OracleTableDatabase, RowQuery, SortKey } from '../../connectors/oracle/oracle-table-reader.ts';
import type { SnapshotState } from '../../src/capture/snapshot-control.ts';
import { microsToTimestampText } from '../../src/events/value-parser.ts';
import { seededRandom as random } from './seeded-random.ts';

export interface SimOracleColumn {
  name: string;
  type: string;
  precision?: number | null;
  scale?: number | null;
  length?: number;
  nullable?: boolean;
  keyOrdinal?: number;
}

/** ORA-00001: unique constraint violated. */
export class SimUniqueError extends Error {
  readonly errorNum = 1;
  constructor(message: string) {
    super(message);
    this.name = 'SimUniqueError';
  }
}

/** A write to a row another open transaction holds (Oracle would wait for it). */
export class SimLockError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SimLockError';
  }
}

/** An error as oracledb raises one for a server message (`ORA-nnnnn: …`, errorNum). */
export function simOraError(errorNum: number, message: string): Error {
  return Object.assign(new Error(`ORA-${String(errorNum).padStart(5, '0')}: ${message}`), { errorNum, code: `ORA-${String(errorNum).padStart(5, '0')}` });
}

type Values = Record<string, string | null>;

interface SimTable {
  readonly owner: string;
  readonly table: string;
  columns: OracleColumn[];
  /** Rows by ROWID. */
  readonly rows: Map<string, Values>;
}

/** One redo record (one row of V$LOGMNR_CONTENTS before CSF splitting). */
interface RedoRecord {
  readonly scn: Scn;
  readonly thread: number;
  readonly xid: string;
  readonly operationCode: number;
  readonly owner: string | null;
  readonly table: string | null;
  readonly sqlRedo: string | null;
  /** SQL_REDO cut into CSF pieces (one piece when short). */
  readonly pieces: readonly (string | null)[];
  readonly rowId: string | null;
  readonly rollback: boolean;
  readonly startScn: Scn | null;
  readonly commitScn: Scn | null;
  readonly timestamp: string;
  readonly rsId: string;
  readonly username: string | null;
  /** Order written, database-wide. */
  readonly order: number;
}

interface SimLog {
  readonly thread: number;
  readonly sequence: number;
  readonly firstScn: Scn;
  nextScn: Scn | null;
  archived: boolean;
  deleted: boolean;
  readonly records: RedoRecord[];
}

interface SimThread {
  readonly thread: number;
  open: boolean;
  /** null: flushing; else the flushed SCN it stays at. */
  heldAt: Scn | null;
  logs: SimLog[];
  nextSequence: number;
}

/** One committed transaction as the test's oracle reads it. */
export interface SimCommitted {
  readonly xid: string;
  readonly thread: number;
  readonly commitScn: Scn;
  /** The COMMIT row's timestamp as UTC micros (whole seconds). */
  readonly commitMicros: bigint;
  readonly username: string | null;
  /** The row changes that stayed (savepoint rollbacks taken out), in order. */
  readonly changes: readonly SimChange[];
}

export interface SimChange {
  readonly owner: string;
  readonly table: string;
  readonly op: 'insert' | 'update' | 'delete';
  readonly rowId: string;
  /** The row before (update, delete) and after (insert, update), every column (LOBs included). */
  readonly before: Readonly<Values> | null;
  readonly after: Readonly<Values> | null;
  /** Columns of an update's SET. */
  readonly set: readonly string[];
}

const LOB_TYPES = /^(CLOB|NCLOB|BLOB)$/;
const ROWID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** `YYYY-MM-DDTHH:MM:SS±HH:MM` of a UTC instant (whole seconds) in an IANA zone. */
export function zonedSecondIso(utcMicros: bigint, timeZone: string): string {
  const millis = Number((utcMicros / 1_000_000n) * 1000n);
  const date = new Date(millis);
  const parts = new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' }).formatToParts(date);
  const get = (type: string): number => Number(parts.find((p) => p.type === type)!.value);
  const wall = Date.UTC(get('year'), get('month') - 1, get('day'), get('hour'), get('minute'), get('second'));
  const offsetMinutes = Math.round((wall - millis) / 60_000);
  const sign = offsetMinutes < 0 ? '-' : '+';
  const abs = Math.abs(offsetMinutes);
  return `${new Date(wall).toISOString().slice(0, 19)}${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
}

export function quoteName(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function quoteText(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

/** UNISTR('…') for a national-character value with characters outside ASCII: every such UTF-16 unit as \XXXX. */
function unistr(text: string): string {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80 && text[i] !== '\\') out += text[i] === "'" ? "''" : text[i];
    else out += `\\${code.toString(16).toUpperCase().padStart(4, '0')}`;
  }
  return `UNISTR('${out}')`;
}

/** A value as a literal of SQL_REDO, by the column's type. */
export function redoLiteral(column: OracleColumn, value: string | null): string {
  if (value === null) return 'NULL';
  const type = column.type.toUpperCase();
  if (type === 'CLOB' || type === 'NCLOB') return 'EMPTY_CLOB()';
  if (type === 'BLOB') return 'EMPTY_BLOB()';
  if (type === 'DATE') return `TO_DATE(${quoteText(value)}, 'YYYY-MM-DD HH24:MI:SS')`;
  if (/^TIMESTAMP(\(\d\))? WITH TIME ZONE$/.test(type)) return `TO_TIMESTAMP_TZ(${quoteText(value)})`;
  if (/^TIMESTAMP/.test(type)) return `TO_TIMESTAMP(${quoteText(value)})`;
  if (type === 'RAW' || type === 'LONG RAW') return `HEXTORAW(${quoteText(value)})`;
  if (/^INTERVAL DAY/.test(type)) return `TO_DSINTERVAL(${quoteText(value)})`;
  if (/^INTERVAL YEAR/.test(type)) return `TO_YMINTERVAL(${quoteText(value)})`;
  if (type === 'BINARY_FLOAT') return `TO_BINARY_FLOAT(${quoteText(value)})`;
  if (type === 'BINARY_DOUBLE') return `TO_BINARY_DOUBLE(${quoteText(value)})`;
  if ((type === 'NVARCHAR2' || type === 'NCHAR') && /[^\x00-\x7f]/.test(value)) return unistr(value);
  return quoteText(value);
}

function isLobType(column: OracleColumn): boolean {
  return LOB_TYPES.test(column.type.toUpperCase());
}

function complete(c: SimOracleColumn): OracleColumn {
  const type = c.type;
  const length = c.length ?? defaultLength(type);
  return {
    name: c.name,
    type,
    precision: c.precision ?? null,
    scale: c.scale ?? (c.precision !== undefined && c.precision !== null && /^NUMBER$/.test(type) ? 0 : null),
    dataLength: /^N(VARCHAR2|CHAR)$/.test(type) ? length * 2 : length,
    charLength: /CHAR/.test(type) ? length : 0,
    nullable: c.nullable ?? !(c.keyOrdinal && c.keyOrdinal > 0),
    keyOrdinal: c.keyOrdinal ?? 0,
  };
}

function defaultLength(type: string): number {
  if (type === 'NUMBER' || type === 'FLOAT') return 22;
  if (type === 'DATE') return 7;
  if (/^TIMESTAMP/.test(type)) return 11;
  if (type === 'BINARY_FLOAT') return 4;
  if (type === 'BINARY_DOUBLE') return 8;
  if (/LOB$/.test(type)) return 4000;
  return 4000;
}

function ddlType(c: OracleColumn): string {
  if (c.type === 'NUMBER' && c.precision !== null) return `NUMBER(${c.precision},${c.scale ?? 0})`;
  if (/CHAR/.test(c.type)) return `${c.type}(${c.charLength})`;
  if (c.type === 'RAW') return `RAW(${c.dataLength})`;
  return c.type;
}

const FIRST_SCN = 6_000_000n;

export class SimulatedOracle {
  readonly timeZone: string;
  readonly recordsPerLog: number;
  readonly csfChunk: number;
  readonly bookkeeping = { captureProgress: new Map<string, OracleProgressRow>() };
  /** What setupFacts() reports beyond what the state tells (all ready by default). */
  readonly facts: Omit<OracleSetupFacts, 'progressTable'> & { progressTable: boolean | null } = {
    archiveLog: true,
    minimalSupplementalLogging: true,
    allColumnsLogging: true,
    tablesWithoutLogging: [],
    missingPrivileges: [],
    cdb: false,
    user: 'SITESYNC_CAPTURE',
    progressTable: null,
  };
  /** Reader calls made, by method (tests read how the reader was used). */
  readonly readerCalls = new Map<string, number>();
  private readonly tables = new Map<string, SimTable>();
  private readonly threadList: SimThread[] = [];
  private readonly committedList: SimCommitted[] = [];
  private readonly open = new Set<SimTransactionImpl>();
  private readonly locks = new Map<string, SimTransactionImpl>();
  private nextScnValue = FIRST_SCN;
  private lastCommit: { scn: Scn } | null = null;
  /** The highest SCN a reader has been told (CURRENT_SCN, a flushed SCN). */
  private observed = 0n;
  private order = 0;
  private nextXid = 1;
  private nextRow = 1;
  private clock = 1_790_000_000_000_000n; // 2026-09-21
  private failure: Error | null = null;
  private readonly rand: () => number;

  /** NLS_CHARACTERSET and NLS_NCHAR_CHARACTERSET (the orders of CHAR/VARCHAR2 and NCHAR/NVARCHAR2 values). */
  readonly characterSet: string;
  readonly nationalCharacterSet: string;
  /** ALL_TABLES.NUM_ROWS by `OWNER.TABLE`, as the last analyze() left it. */
  private readonly statistics = new Map<string, number>();

  constructor(options: { threads?: number; timeZone?: string; recordsPerLog?: number; csfChunk?: number; seed?: number; characterSet?: string; nationalCharacterSet?: string } = {}) {
    this.characterSet = options.characterSet ?? 'AL32UTF8';
    this.nationalCharacterSet = options.nationalCharacterSet ?? 'AL16UTF16';
    const threads = options.threads ?? 1;
    if (threads !== 1 && threads !== 2) throw new Error('threads: 1 or 2');
    this.timeZone = options.timeZone ?? 'UTC';
    this.recordsPerLog = options.recordsPerLog ?? 1000;
    this.csfChunk = options.csfChunk ?? 4000;
    this.rand = random(options.seed ?? 16);
    for (let t = 1; t <= threads; t++) {
      this.threadList.push({ thread: t, open: true, heldAt: null, logs: [], nextSequence: 1 });
    }
    for (const t of this.threadList) this.newLog(t, FIRST_SCN);
  }

  // ─── schema ─────────────────────────────────────────────────────────────────────────────────────────────

  createTable(owner: string, table: string, columns: SimOracleColumn[]): void {
    const name = `${owner}.${table}`;
    if (this.tables.has(name)) throw simOraError(955, 'name is already used by an existing object');
    this.tables.set(name, { owner, table, columns: columns.map(complete), rows: new Map() });
  }

  describeTable(owner: string, table: string): { owner: string; table: string; columns: OracleColumn[] } | null {
    const t = this.tables.get(`${owner}.${table}`);
    return t ? { owner, table, columns: t.columns.map((c) => ({ ...c })) } : null;
  }

  /** ALTER TABLE … ADD: a DDL transaction of its own (START, DDL, COMMIT) on thread 1. */
  addColumn(owner: string, table: string, column: SimOracleColumn): void {
    const t = this.table(owner, table);
    if (t.columns.some((c) => c.name === column.name)) throw simOraError(1430, 'column being added already exists in table');
    for (const tx of this.open) if (tx.touched.has(`${owner}.${table}`)) throw new SimLockError(`ALTER TABLE ${owner}.${table} waits for an open transaction that wrote to it`);
    const full = complete(column);
    t.columns.push(full);
    for (const row of t.rows.values()) row[full.name] = null;
    const xid = this.takeXid();
    const thread = this.threadList[0]!;
    const scn = this.takeScn();
    this.write(thread, { scn, xid, operationCode: OPERATION.start, owner: null, table: null, sqlRedo: null, rowId: null, rollback: false, startScn: scn, commitScn: null, username: 'APP' });
    this.write(thread, { scn, xid, operationCode: OPERATION.ddl, owner, table, sqlRedo: `alter table ${quoteName(owner)}.${quoteName(table)} add (${quoteName(full.name)} ${ddlType(full)});`, rowId: null, rollback: false, startScn: scn, commitScn: null, username: 'APP' });
    const commit = this.takeScn();
    this.write(thread, { scn: commit, xid, operationCode: OPERATION.commit, owner: null, table: null, sqlRedo: 'commit;', rowId: null, rollback: false, startScn: scn, commitScn: commit, username: 'APP' });
  }

  /** SITESYNC.APPLY_PROGRESS as setup creates it. */
  createApplyProgress(): void {
    this.createTable('SITESYNC', 'APPLY_PROGRESS', [
      { name: 'SOURCE', type: 'VARCHAR2', length: 40, keyOrdinal: 1 },
      { name: 'SOURCE_KIND', type: 'VARCHAR2', length: 20 },
      { name: 'POSITION', type: 'VARCHAR2', length: 64 },
      { name: 'COMMIT_TIME_MICROS', type: 'NUMBER', precision: 20, scale: 0 },
      { name: 'APPLIED_TRANSACTIONS', type: 'NUMBER', precision: 20, scale: 0 },
    ]);
  }

  // ─── transactions ───────────────────────────────────────────────────────────────────────────────────────

  begin(thread = 1, options: { username?: string } = {}): SimOracleTransaction {
    const t = this.threadList.find((x) => x.thread === thread);
    if (!t) throw new Error(`no redo thread ${thread}`);
    const tx = new SimTransactionImpl(this, t, options.username ?? 'APP');
    this.open.add(tx);
    return tx;
  }

  /** Committed rows of a table, by column name, Oracle text form (in no order). */
  committedRows(owner: string, table: string): Values[] {
    const t = this.table(owner, table);
    const state = new Map<string, Values>([...t.rows].map(([id, row]) => [id, { ...row }]));
    for (const tx of this.open) {
      for (let i = tx.undo.length - 1; i >= 0; i--) {
        const u = tx.undo[i]!;
        if (u.table !== t) continue;
        if (u.before === null) state.delete(u.rowId);
        else state.set(u.rowId, { ...u.before });
      }
    }
    return [...state.values()];
  }

  /** Committed rows of a table, Oracle text form, column order, sorted. */
  rows(owner: string, table: string): (string | null)[][] {
    const t = this.table(owner, table);
    const out = this.committedRows(owner, table).map((row) => t.columns.map((c) => row[c.name] ?? null));
    return out.sort((a, b) => {
      for (let i = 0; i < a.length; i++) {
        const x = a[i] ?? null;
        const y = b[i] ?? null;
        if (x === y) continue;
        if (x === null) return -1;
        if (y === null) return 1;
        return x < y ? -1 : 1;
      }
      return 0;
    });
  }

  setClock(utcMicros: bigint): void {
    this.clock = utcMicros;
  }

  advanceClock(micros: bigint): void {
    this.clock += micros;
  }

  /** The highest SCN handed out (what CURRENT_SCN would show, without a reader call). */
  get scn(): Scn {
    return this.nextScnValue - 1n;
  }

  /** Every committed transaction with row changes, in commit order (SCN, thread, XID): the tests' oracle. */
  committed(): SimCommitted[] {
    return [...this.committedList].sort((a, b) => (a.commitScn !== b.commitScn ? (a.commitScn < b.commitScn ? -1 : 1) : a.thread - b.thread || (a.xid < b.xid ? -1 : a.xid > b.xid ? 1 : 0)));
  }

  // ─── redo logs ──────────────────────────────────────────────────────────────────────────────────────────

  /** ALTER SYSTEM SWITCH LOGFILE (of one thread; all when none given). Deferred while the thread's flush is held. */
  switchLog(thread?: number): void {
    for (const t of this.threadList) {
      if (thread !== undefined && t.thread !== thread) continue;
      if (t.heldAt !== null) continue;
      this.doSwitch(t);
    }
  }

  /** Archives every switched online log (ARCn). */
  archive(): void {
    for (const t of this.threadList) for (const log of t.logs) if (log.nextScn !== null) log.archived = true;
  }

  /** RMAN deleted an archived log. */
  deleteArchived(thread: number, sequence: number): void {
    const log = this.threadList.find((t) => t.thread === thread)?.logs.find((l) => l.sequence === sequence);
    if (!log || !log.archived) throw new Error(`no archived log ${thread}/${sequence}`);
    log.deleted = true;
  }

  /** The logs of a thread as they are (tests). */
  logList(thread: number): { sequence: number; firstScn: Scn; nextScn: Scn | null; archived: boolean; deleted: boolean; records: number }[] {
    return this.threadList.find((t) => t.thread === thread)!.logs.map((l) => ({ sequence: l.sequence, firstScn: l.firstScn, nextScn: l.nextScn, archived: l.archived, deleted: l.deleted, records: l.records.length }));
  }

  /** That thread's redo stops being flushed (its flushedScn stays) until called with false. */
  holdFlush(thread: number, on: boolean): void {
    const t = this.threadList.find((x) => x.thread === thread)!;
    if (on) {
      if (t.heldAt === null) t.heldAt = this.scn;
      return;
    }
    t.heldAt = null;
    const current = t.logs[t.logs.length - 1]!;
    if (current.records.length >= this.recordsPerLog) this.doSwitch(t);
  }

  /** A thread's flushed SCN now (without a reader call). */
  flushed(thread: number): Scn {
    return this.flushedScn(this.threadList.find((x) => x.thread === thread)!);
  }

  /** The lowest flushed SCN over the open threads: how far a correct reader can read now. */
  get readableScn(): Scn {
    let low = this.scn;
    for (const t of this.threadList) if (t.open && this.flushedScn(t) < low) low = this.flushedScn(t);
    return low;
  }

  /** A RAC instance stops (its thread closes) or starts again. */
  setThreadOpen(thread: number, open: boolean): void {
    this.threadList.find((x) => x.thread === thread)!.open = open;
  }

  // ─── readers ────────────────────────────────────────────────────────────────────────────────────────────

  reader(): LogMinerReader {
    return new SimLogMinerReader(this);
  }

  /** A table reader's queries (OracleTableDatabase); `consistent`: over the committed rows of now, whatever comes after. */
  tableDatabase(options: { consistent?: boolean } = {}): OracleTableDatabase {
    return new SimTableDatabase(this, options.consistent === true);
  }

  /** The snapshot control's statements (SnapshotStore), as transactions of `username` on thread 1. */
  snapshotStore(options: { username?: string } = {}): SnapshotStore {
    return new SimSnapshotStore(this, options.username ?? 'SITESYNC_CAPTURE');
  }

  /** DBMS_STATS: ALL_TABLES.NUM_ROWS of the table becomes its committed row count now. */
  analyze(owner: string, table: string): void {
    this.statistics.set(`${owner}.${table}`, this.committedRows(owner, table).length);
  }

  /** SITESYNC.SNAPSHOTS and SITESYNC.SNAPSHOT_MARKERS as oracle-setup.ts SNAPSHOT_TABLES_DDL makes them, unless there. */
  createSnapshotTables(): void {
    if (this.describeTable(ORACLE_BOOKKEEPING_OWNER, SNAPSHOTS_TABLE) === null) {
      this.createTable(ORACLE_BOOKKEEPING_OWNER, SNAPSHOTS_TABLE, [
        { name: 'ID', type: 'VARCHAR2', length: 64, keyOrdinal: 1 },
        { name: 'TABLE_NAME', type: 'NVARCHAR2', length: 400, nullable: false },
        { name: 'TARGETS', type: 'NVARCHAR2', length: 2000 },
        { name: 'NEXT_CHUNK', type: 'NUMBER', precision: 10, scale: 0, nullable: false },
        { name: 'ROWS_SENT', type: 'NUMBER', precision: 19, scale: 0, nullable: false },
        { name: 'ESTIMATED_ROWS', type: 'NUMBER', precision: 19, scale: 0, nullable: false },
        { name: 'STATE', type: 'VARCHAR2', length: 16, nullable: false },
        { name: 'STARTED_AT', type: 'TIMESTAMP(6)', scale: 6, nullable: false },
        { name: 'UPDATED_AT', type: 'TIMESTAMP(6)', scale: 6, nullable: false },
      ]);
    }
    if (this.describeTable(ORACLE_BOOKKEEPING_OWNER, SNAPSHOT_MARKERS_TABLE) === null) {
      this.createTable(ORACLE_BOOKKEEPING_OWNER, SNAPSHOT_MARKERS_TABLE, [
        { name: 'SNAPSHOT_ID', type: 'VARCHAR2', length: 64, keyOrdinal: 1 },
        { name: 'CHUNK', type: 'NUMBER', precision: 10, scale: 0, keyOrdinal: 2 },
        { name: 'PIECE', type: 'NUMBER', precision: 10, scale: 0, keyOrdinal: 3 },
        { name: 'PIECES', type: 'NUMBER', precision: 10, scale: 0, nullable: false },
        { name: 'CONTENT', type: 'VARCHAR2', length: 4000, nullable: false },
      ]);
    }
  }

  /** @internal ALL_TABLES.NUM_ROWS. */
  numRows(owner: string, table: string): number | null {
    return this.statistics.get(`${owner}.${table}`) ?? null;
  }

  failNextReaderCall(error?: Error): void {
    this.failure = error ?? Object.assign(new Error('NJS-500: connection to the Oracle Database was broken'), { code: 'NJS-500' });
  }

  setFacts(partial: Partial<OracleSetupFacts>): void {
    Object.assign(this.facts, partial);
  }

  // ─── internals (for SimTransactionImpl and SimLogMinerReader) ───────────────────────────────────────────

  /** @internal */
  table(owner: string, table: string): SimTable {
    const t = this.tables.get(`${owner}.${table}`);
    if (!t) throw simOraError(942, 'table or view does not exist');
    return t;
  }

  /** @internal */
  tableList(): SimTable[] {
    return [...this.tables.values()];
  }

  /** @internal */
  threadsNow(): SimThread[] {
    return this.threadList;
  }

  /** @internal */
  takeScn(): Scn {
    return this.nextScnValue++;
  }

  /** @internal */
  takeXid(): string {
    const n = this.nextXid++;
    const usn = 1 + (n % 10);
    const slot = (n * 7) % 32;
    return usn.toString(16).toUpperCase().padStart(4, '0') + slot.toString(16).toUpperCase().padStart(4, '0') + n.toString(16).toUpperCase().padStart(8, '0');
  }

  /** @internal */
  takeRowId(): string {
    let n = this.nextRow++;
    let tail = '';
    for (let i = 0; i < 6; i++) {
      tail = ROWID_ALPHABET[n % 64]! + tail;
      n = Math.floor(n / 64);
    }
    return `AAAR3sAAEAAAAC${tail.slice(2)}`;
  }

  /** @internal */
  observe(scn: Scn): void {
    if (scn > this.observed) this.observed = scn;
  }

  /** @internal The SCN a commit gets: the last commit's when it may share it, else a new one. */
  commitScn(thread: SimThread, ownMax: Scn, share: boolean): Scn {
    const last = this.lastCommit;
    if (share && last && last.scn > this.observed && ownMax <= last.scn && thread.heldAt === null) {
      const current = thread.logs[thread.logs.length - 1]!;
      const tail = current.records[current.records.length - 1];
      if ((!tail || tail.scn <= last.scn) && current.firstScn <= last.scn) return last.scn;
    }
    const scn = this.takeScn();
    this.lastCommit = { scn };
    return scn;
  }

  /** @internal */
  write(thread: SimThread, r: Omit<RedoRecord, 'thread' | 'pieces' | 'timestamp' | 'rsId' | 'order'>): void {
    let current = thread.logs[thread.logs.length - 1]!;
    const last = current.records[current.records.length - 1];
    // A log switches between SCNs, never inside one (a START shares its SCN with the first change).
    if (current.records.length >= this.recordsPerLog && thread.heldAt === null && (!last || last.scn < r.scn)) {
      this.doSwitch(thread, r.scn);
      current = thread.logs[thread.logs.length - 1]!;
    }
    const order = this.order++;
    const pieces: (string | null)[] = [];
    if (r.sqlRedo !== null && r.sqlRedo.length > this.csfChunk) {
      let rest = r.sqlRedo;
      while (rest.length > this.csfChunk) {
        const cut = 1 + Math.floor(this.rand() * this.csfChunk);
        pieces.push(rest.slice(0, cut));
        rest = rest.slice(cut);
      }
      pieces.push(rest);
    } else pieces.push(r.sqlRedo);
    current.records.push({
      ...r,
      thread: thread.thread,
      pieces,
      timestamp: zonedSecondIso(this.clock, this.timeZone),
      rsId: ` 0x${current.sequence.toString(16).padStart(6, '0')}.${order.toString(16).padStart(8, '0')}.0010 `,
      order,
    });
  }

  /** @internal */
  lock(tx: SimTransactionImpl, key: string): void {
    const owner = this.locks.get(key);
    if (owner && owner !== tx) throw new SimLockError(`${key} is locked by another open transaction`);
    this.locks.set(key, tx);
  }

  /** @internal */
  holds(tx: SimTransactionImpl, key: string): boolean {
    return this.locks.get(key) === tx;
  }

  /** @internal */
  unlock(key: string): void {
    this.locks.delete(key);
  }

  /** @internal */
  finish(tx: SimTransactionImpl, committed: SimCommitted | null): void {
    this.open.delete(tx);
    for (const [key, owner] of this.locks) if (owner === tx) this.locks.delete(key);
    if (committed) this.committedList.push(committed);
  }

  /** @internal V$TRANSACTION: the lowest START_SCN of the transactions open (that changed something), null when none. */
  oldestOpenStart(): Scn | null {
    let oldest: Scn | null = null;
    for (const tx of this.open) {
      const start = tx.startedAt;
      if (start !== null && (oldest === null || start < oldest)) oldest = start;
    }
    return oldest;
  }

  /** @internal */
  now(): bigint {
    return this.clock;
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

  /** @internal Visible: written and flushed. */
  flushedScn(t: SimThread): Scn {
    return t.heldAt ?? this.scn;
  }

  private newLog(t: SimThread, firstScn: Scn): void {
    t.logs.push({ thread: t.thread, sequence: t.nextSequence++, firstScn, nextScn: null, archived: false, deleted: false, records: [] });
  }

  /** Closes the current log at the next SCN to be handed out (or `at`, the SCN of the record about to be written). */
  private doSwitch(t: SimThread, at?: Scn): void {
    const current = t.logs[t.logs.length - 1]!;
    const tail = current.records[current.records.length - 1];
    let next = at ?? this.nextScnValue;
    if (tail && next <= tail.scn) next = tail.scn + 1n;
    current.nextScn = next;
    this.newLog(t, next);
  }
}

export interface SimOracleTransaction {
  readonly xid: string;
  readonly thread: number;
  /** Oracle text form; a duplicate key throws SimUniqueError (ORA-00001). */
  insert(owner: string, table: string, row: Record<string, string | null>): void;
  update(owner: string, table: string, key: Record<string, string | null>, set: Record<string, string | null>): number;
  delete(owner: string, table: string, key: Record<string, string | null>): number;
  find(owner: string, table: string, key: Record<string, string | null>): (string | null)[] | null;
  savepoint(name: string): void;
  /** Writes ROLLBACK=1 rows undoing the changes since the savepoint. */
  rollbackTo(name: string): void;
  /** `shareScn`: take the SCN of the commit just before when Oracle could have (see the file comment). */
  commit(options?: { shareScn?: boolean }): Scn;
  rollback(): void;
}

interface Undo {
  readonly table: SimTable;
  readonly rowId: string;
  readonly before: Values | null;
  readonly after: Values | null;
  readonly op: 'insert' | 'update' | 'delete';
  readonly set: readonly string[];
}

class SimTransactionImpl implements SimOracleTransaction {
  readonly xid: string;
  readonly undo: Undo[] = [];
  readonly touched = new Set<string>();
  private readonly savepoints = new Map<string, number>();
  private startScn: Scn | null = null;
  private maxScn = 0n;
  private ended = false;

  constructor(
    private readonly db: SimulatedOracle,
    private readonly threadState: SimThread,
    private readonly username: string,
  ) {
    this.xid = db.takeXid();
  }

  get thread(): number {
    return this.threadState.thread;
  }

  /** The SCN of its START (its first change), null while it changed nothing (V$TRANSACTION lists it from then). */
  get startedAt(): Scn | null {
    return this.startScn;
  }

  private active(): void {
    if (this.ended) throw new Error('the transaction has ended');
  }

  private record(operationCode: number, table: SimTable | null, sqlRedo: string | null, rowId: string | null, rollback: boolean): void {
    const scn = this.db.takeScn();
    if (this.startScn === null) {
      this.startScn = scn;
      this.db.write(this.threadState, { scn, xid: this.xid, operationCode: OPERATION.start, owner: null, table: null, sqlRedo: 'set transaction read write;', rowId: null, rollback: false, startScn: scn, commitScn: null, username: this.username });
    }
    this.maxScn = scn;
    this.db.write(this.threadState, { scn, xid: this.xid, operationCode, owner: table?.owner ?? null, table: table?.table ?? null, sqlRedo, rowId, rollback, startScn: null, commitScn: null, username: this.username });
  }

  private checkColumns(t: SimTable, names: Iterable<string>): void {
    for (const n of names) if (!t.columns.some((c) => c.name === n)) throw simOraError(904, `"${n}": invalid identifier`);
  }

  private normalise(t: SimTable, values: Values): Values {
    const out: Values = {};
    for (const [name, value] of Object.entries(values)) {
      const c = t.columns.find((x) => x.name === name)!;
      out[name] = value !== null && (c.type === 'CHAR' || c.type === 'NCHAR') ? value.padEnd(c.charLength, ' ') : value;
    }
    return out;
  }

  private keyColumns(t: SimTable): OracleColumn[] {
    return t.columns.filter((c) => c.keyOrdinal > 0).sort((a, b) => a.keyOrdinal - b.keyOrdinal);
  }

  private keyLock(t: SimTable, row: Values): string | null {
    const keys = this.keyColumns(t);
    return keys.length === 0 ? null : `${t.owner}.${t.table}|k|${JSON.stringify(keys.map((c) => row[c.name] ?? null))}`;
  }

  private matching(t: SimTable, key: Values): [string, Values][] {
    this.checkColumns(t, Object.keys(key));
    const k = this.normalise(t, key);
    return [...t.rows].filter(([, row]) => Object.entries(k).every(([name, value]) => (row[name] ?? null) === value));
  }

  private where(t: SimTable, row: Values, rowId: string): string {
    const parts = t.columns.filter((c) => !isLobType(c)).map((c) => (row[c.name] === null || row[c.name] === undefined ? `${quoteName(c.name)} IS NULL` : `${quoteName(c.name)} = ${redoLiteral(c, row[c.name]!)}`));
    // Some of LogMiner's statements end with the ROWID (it is left out of the values).
    if (rowId.charCodeAt(rowId.length - 1) % 3 === 0) parts.push(`ROWID = '${rowId}'`);
    return parts.join(' and ');
  }

  private insertSql(t: SimTable, row: Values): string {
    return `insert into ${quoteName(t.owner)}.${quoteName(t.table)}(${t.columns.map((c) => quoteName(c.name)).join(',')}) values (${t.columns.map((c) => redoLiteral(c, row[c.name] ?? null)).join(',')});`;
  }

  private updateSql(t: SimTable, set: readonly string[], after: Values, before: Values, rowId: string): string {
    const columns = t.columns.filter((c) => set.includes(c.name) && !isLobType(c));
    return `update ${quoteName(t.owner)}.${quoteName(t.table)} set ${columns.map((c) => `${quoteName(c.name)} = ${redoLiteral(c, after[c.name] ?? null)}`).join(', ')} where ${this.where(t, before, rowId)};`;
  }

  private deleteSql(t: SimTable, row: Values, rowId: string): string {
    return `delete from ${quoteName(t.owner)}.${quoteName(t.table)} where ${this.where(t, row, rowId)};`;
  }

  /** LOB values go in SELECT_LOB_LOCATOR and LOB_WRITE records of their own. */
  private lobRecords(t: SimTable, row: Values, names: readonly string[], rowId: string, rollback: boolean): void {
    for (const c of t.columns) {
      if (!isLobType(c) || !names.includes(c.name) || row[c.name] === null || row[c.name] === undefined) continue;
      this.record(OPERATION.selectLobLocator, t, `DECLARE loc_c CLOB; buf_c VARCHAR2(6174); BEGIN select ${quoteName(c.name)} into loc_c from ${quoteName(t.owner)}.${quoteName(t.table)} where ROWID = '${rowId}' for update;`, rowId, rollback);
      this.record(OPERATION.lobWrite, t, `buf_c := '<lob of ${String(row[c.name]).length} characters>'; dbms_lob.write(loc_c, 1, 1, buf_c); END;`, rowId, rollback);
    }
  }

  private writeChange(u: Undo, rollback: boolean): void {
    const t = u.table;
    if (u.op === 'insert') {
      this.record(OPERATION.insert, t, this.insertSql(t, u.after!), u.rowId, rollback);
      this.lobRecords(t, u.after!, t.columns.map((c) => c.name), u.rowId, rollback);
    } else if (u.op === 'delete') {
      this.record(OPERATION.delete, t, this.deleteSql(t, u.before!, u.rowId), u.rowId, rollback);
    } else {
      if (u.set.some((n) => !isLobType(t.columns.find((c) => c.name === n)!))) this.record(OPERATION.update, t, this.updateSql(t, u.set, u.after!, u.before!, u.rowId), u.rowId, rollback);
      this.lobRecords(t, u.after!, u.set, u.rowId, rollback);
    }
  }

  /** The undo record of a change (ROLLBACK = 1): its inverse, with the same ROWID. */
  private writeUndo(u: Undo): void {
    if (u.op === 'insert') this.writeChange({ ...u, op: 'delete', before: u.after, after: null }, true);
    else if (u.op === 'delete') this.writeChange({ ...u, op: 'insert', before: null, after: u.before }, true);
    else this.writeChange({ ...u, before: u.after, after: u.before }, true);
  }

  insert(owner: string, table: string, row: Values): void {
    this.active();
    const t = this.db.table(owner, table);
    this.checkColumns(t, Object.keys(row));
    const full = this.normalise(t, Object.fromEntries(t.columns.map((c) => [c.name, Object.hasOwn(row, c.name) ? row[c.name]! : null])));
    for (const c of t.columns) if (!c.nullable && full[c.name] === null) throw simOraError(1400, `cannot insert NULL into (${quoteName(owner)}.${quoteName(table)}.${quoteName(c.name)})`);
    const keys = this.keyColumns(t);
    if (keys.length > 0) {
      const lock = this.keyLock(t, full)!;
      const held = this.db.holds(this, lock);
      this.db.lock(this, lock);
      if (this.matching(t, Object.fromEntries(keys.map((c) => [c.name, full[c.name]!]))).length > 0) {
        if (!held) this.db.unlock(lock); // a failed statement keeps no lock
        throw new SimUniqueError(`ORA-00001: unique constraint (${owner}.PK_${table}) violated`);
      }
    }
    const rowId = this.db.takeRowId();
    this.db.lock(this, `${owner}.${table}|${rowId}`);
    t.rows.set(rowId, full);
    this.touched.add(`${owner}.${table}`);
    const u: Undo = { table: t, rowId, before: null, after: { ...full }, op: 'insert', set: [] };
    this.undo.push(u);
    this.writeChange(u, false);
  }

  update(owner: string, table: string, key: Values, set: Values): number {
    this.active();
    const t = this.db.table(owner, table);
    this.checkColumns(t, Object.keys(set));
    const targets = this.matching(t, key);
    for (const [rowId, row] of targets) {
      this.db.lock(this, `${owner}.${table}|${rowId}`);
      const k = this.keyLock(t, row);
      if (k) this.db.lock(this, k);
    }
    const s = this.normalise(t, set);
    const keys = this.keyColumns(t);
    if (keys.some((c) => Object.hasOwn(s, c.name))) {
      const moved = new Set(targets.map(([id]) => id));
      const seen = new Set<string>();
      for (const [, row] of targets) {
        const next = { ...row, ...s };
        const lock = this.keyLock(t, next)!;
        if (seen.has(lock)) throw new SimUniqueError(`ORA-00001: unique constraint (${owner}.PK_${table}) violated`);
        seen.add(lock);
        if (this.matching(t, Object.fromEntries(keys.map((c) => [c.name, next[c.name]!]))).some(([id]) => !moved.has(id))) throw new SimUniqueError(`ORA-00001: unique constraint (${owner}.PK_${table}) violated`);
        this.db.lock(this, lock);
      }
    }
    for (const [rowId, before] of targets) {
      const after = { ...before, ...s };
      t.rows.set(rowId, after);
      const u: Undo = { table: t, rowId, before: { ...before }, after: { ...after }, op: 'update', set: Object.keys(s) };
      this.undo.push(u);
      this.writeChange(u, false);
    }
    if (targets.length > 0) this.touched.add(`${owner}.${table}`);
    return targets.length;
  }

  delete(owner: string, table: string, key: Values): number {
    this.active();
    const t = this.db.table(owner, table);
    const targets = this.matching(t, key);
    for (const [rowId, row] of targets) {
      this.db.lock(this, `${owner}.${table}|${rowId}`);
      const k = this.keyLock(t, row);
      if (k) this.db.lock(this, k);
    }
    for (const [rowId, before] of targets) {
      t.rows.delete(rowId);
      const u: Undo = { table: t, rowId, before: { ...before }, after: null, op: 'delete', set: [] };
      this.undo.push(u);
      this.writeChange(u, false);
    }
    if (targets.length > 0) this.touched.add(`${owner}.${table}`);
    return targets.length;
  }

  find(owner: string, table: string, key: Values): (string | null)[] | null {
    this.active();
    const t = this.db.table(owner, table);
    const found = this.matching(t, key)[0];
    return found ? t.columns.map((c) => found[1][c.name] ?? null) : null;
  }

  savepoint(name: string): void {
    this.active();
    this.savepoints.set(name, this.undo.length);
  }

  rollbackTo(name: string): void {
    this.active();
    const at = this.savepoints.get(name);
    if (at === undefined) throw simOraError(1086, `savepoint '${name}' never established in this session or is invalid`);
    this.undoFrom(at);
    for (const [n, i] of this.savepoints) if (i > at) this.savepoints.delete(n);
  }

  private undoFrom(at: number): void {
    while (this.undo.length > at) {
      const u = this.undo.pop()!;
      if (u.before === null) u.table.rows.delete(u.rowId);
      else u.table.rows.set(u.rowId, { ...u.before });
      this.writeUndo(u);
    }
  }

  commit(options: { shareScn?: boolean } = {}): Scn {
    this.active();
    this.ended = true;
    if (this.startScn === null) {
      this.db.finish(this, null);
      return this.db.scn;
    }
    const scn = this.db.commitScn(this.threadState, this.maxScn, options.shareScn ?? false);
    this.db.write(this.threadState, { scn, xid: this.xid, operationCode: OPERATION.commit, owner: null, table: null, sqlRedo: 'commit;', rowId: null, rollback: false, startScn: this.startScn, commitScn: scn, username: this.username });
    const micros = (this.db.now() / 1_000_000n) * 1_000_000n;
    this.db.finish(this, {
      xid: this.xid,
      thread: this.threadState.thread,
      commitScn: scn,
      commitMicros: micros,
      username: this.username,
      changes: this.undo.map((u) => ({ owner: u.table.owner, table: u.table.table, op: u.op, rowId: u.rowId, before: u.before, after: u.after, set: u.set })),
    });
    return scn;
  }

  rollback(): void {
    this.active();
    this.ended = true;
    if (this.startScn !== null) {
      this.undoFrom(0);
      const scn = this.db.takeScn();
      this.db.write(this.threadState, { scn, xid: this.xid, operationCode: OPERATION.rollback, owner: null, table: null, sqlRedo: 'rollback;', rowId: null, rollback: false, startScn: this.startScn, commitScn: null, username: this.username });
    }
    this.db.finish(this, null);
  }
}

class SimLogMinerReader implements LogMinerReader {
  private closed = false;
  constructor(private readonly db: SimulatedOracle) {}

  private call(method: string): void {
    if (this.closed) throw Object.assign(new Error('NJS-003: invalid or closed connection'), { code: 'NJS-003' });
    this.db.readerCall(method);
  }

  async currentScn(): Promise<Scn> {
    this.call('currentScn');
    const scn = this.db.scn;
    this.db.observe(scn);
    return scn;
  }

  async oldestOpenTransactionScn(): Promise<Scn | null> {
    this.call('oldestOpenTransactionScn');
    return this.db.oldestOpenStart();
  }

  async threads(): Promise<RedoThread[]> {
    this.call('threads');
    return this.db.threadsNow().map((t) => {
      const flushedScn = this.db.flushedScn(t);
      this.db.observe(flushedScn);
      return { thread: t.thread, open: t.open, flushedScn };
    });
  }

  async logs(fromScn: Scn): Promise<RedoLog[]> {
    this.call('logs');
    const out: RedoLog[] = [];
    for (const t of this.db.threadsNow()) {
      for (const l of t.logs) {
        if (l.deleted) continue;
        if (l.nextScn !== null && l.nextScn <= fromScn) continue;
        out.push(describeLog(l));
      }
    }
    return out;
  }

  async mine(logs: readonly RedoLog[], fromScn: Scn, toScn: Scn, owners: readonly string[] | null): Promise<MiningSession> {
    this.call('mine');
    const chosen: SimLog[] = [];
    for (const given of logs) {
      const t = this.db.threadsNow().find((x) => x.thread === given.thread);
      const l = t?.logs.find((x) => x.sequence === given.sequence && !x.deleted && logName(x, x.archived) === given.name);
      if (!l) throw simOraError(1284, `file ${given.name} cannot be opened`);
      if (!chosen.includes(l)) chosen.push(l);
    }
    const flushed = new Map(this.db.threadsNow().map((t) => [t.thread, this.db.flushedScn(t)]));
    const records: RedoRecord[] = [];
    for (const l of chosen) {
      for (const r of l.records) {
        if (r.scn <= fromScn || r.scn > toScn || r.scn > flushed.get(r.thread)!) continue;
        const rowOp = r.operationCode !== OPERATION.start && r.operationCode !== OPERATION.commit && r.operationCode !== OPERATION.rollback;
        if (rowOp && owners !== null && !owners.includes(r.owner ?? '')) continue;
        records.push(r);
      }
    }
    records.sort((a, b) => (a.scn !== b.scn ? (a.scn < b.scn ? -1 : 1) : a.thread - b.thread || a.order - b.order));
    const rows: MinedRow[] = records.flatMap((r) =>
      r.pieces.map((piece, i) => ({
        scn: r.scn,
        startScn: r.startScn,
        commitScn: r.commitScn,
        timestamp: r.timestamp,
        xid: r.xid,
        operationCode: r.operationCode,
        owner: r.owner,
        table: r.table,
        sqlRedo: piece,
        rowId: r.rowId,
        rollback: r.rollback,
        csf: i < r.pieces.length - 1,
        rsId: r.rsId,
        ssn: 0,
        thread: r.thread,
        username: r.username,
      })),
    );
    let at = 0;
    let ended = false;
    const call = (m: string): void => this.call(m);
    return {
      async next(limit: number): Promise<MinedRow[]> {
        call('next');
        if (ended) throw simOraError(1306, 'dbms_logmnr.start_logmnr() must be invoked before selecting from v$logmnr_contents');
        const batch = rows.slice(at, at + limit);
        at += batch.length;
        return batch;
      },
      async end(): Promise<void> {
        ended = true;
      },
    };
  }

  async columns(owner: string, table: string): Promise<OracleColumn[] | null> {
    this.call('columns');
    return this.db.describeTable(owner, table)?.columns ?? null;
  }

  async setupFacts(owners: readonly string[] | null): Promise<OracleSetupFacts> {
    this.call('setupFacts');
    void owners;
    const f = this.db.facts;
    return { ...f, progressTable: f.progressTable ?? this.db.describeTable('SITESYNC', 'APPLY_PROGRESS') !== null };
  }

  async ensureCaptureProgress(): Promise<void> {
    this.call('ensureCaptureProgress');
  }

  async readProgress(site: string): Promise<OracleProgressRow | null> {
    this.call('readProgress');
    const row = this.db.bookkeeping.captureProgress.get(site);
    return row ? { ...row } : null;
  }

  async writeProgress(site: string, row: OracleProgressRow): Promise<void> {
    this.call('writeProgress');
    this.db.bookkeeping.captureProgress.set(site, { ...row });
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

function logName(l: SimLog, archived: boolean): string {
  return archived ? `/u01/fra/ORCL/archivelog/thread_${l.thread}_seq_${l.sequence}.arc` : `/u01/oradata/ORCL/redo${l.thread}_${l.sequence}.log`;
}

function describeLog(l: SimLog): RedoLog {
  return { name: logName(l, l.archived), thread: l.thread, sequence: l.sequence, firstScn: l.firstScn, nextScn: l.nextScn, archived: l.archived };
}

// ─── online snapshots: the table reader's queries and the snapshot control's statements ───────────────────

/** A text's bytes in an Oracle character set (see the file comment). */
export function characterSetBytes(text: string, characterSet: string): Buffer {
  switch (characterSet.toUpperCase()) {
    case 'AL32UTF8':
      return Buffer.from(text, 'utf8');
    case 'AL16UTF16':
      return Buffer.from(text, 'utf16le').swap16();
    case 'UTF8': {
      // CESU-8: every UTF-16 unit on its own, a surrogate as three bytes like any unit above U+07FF.
      const bytes: number[] = [];
      for (let i = 0; i < text.length; i++) {
        const u = text.charCodeAt(i);
        if (u < 0x80) bytes.push(u);
        else if (u < 0x800) bytes.push(0xc0 | (u >> 6), 0x80 | (u & 0x3f));
        else bytes.push(0xe0 | (u >> 12), 0x80 | ((u >> 6) & 0x3f), 0x80 | (u & 0x3f));
      }
      return Buffer.from(bytes);
    }
    default:
      return Buffer.from([...text].map((c) => (c.charCodeAt(0) <= 0xff && c.length === 1 ? c.charCodeAt(0) : 0x3f)));
  }
}

/** A NUMBER's text (plain or exponent) as sign, significant digits and the power of ten of the first. */
function decimalOf(text: string): { sign: number; digits: string; exponent: number } {
  const m = /^([-+])?([0-9]*)(?:\.([0-9]*))?(?:[eE]([-+]?[0-9]+))?$/.exec(text.trim());
  if (!m) throw new Error(`not a NUMBER: ${text}`);
  const all = (m[2] ?? '') + (m[3] ?? '');
  const lead = all.length - all.replace(/^0+/, '').length;
  const digits = all.replace(/^0+/, '').replace(/0+$/, '');
  if (digits === '') return { sign: 0, digits: '', exponent: 0 };
  return { sign: m[1] === '-' ? -1 : 1, digits, exponent: (m[2] ?? '').length - lead - 1 + Number(m[4] ?? 0) };
}

function compareNumbers(a: string, b: string): number {
  const x = decimalOf(a);
  const y = decimalOf(b);
  if (x.sign !== y.sign) return x.sign - y.sign;
  if (x.sign === 0) return 0;
  const magnitude = x.exponent !== y.exponent ? x.exponent - y.exponent : x.digits < y.digits ? -1 : x.digits > y.digits ? 1 : 0;
  return x.sign * Math.sign(magnitude);
}

function ieee(text: string): number {
  return text === 'Inf' || text === '+Inf' ? Infinity : text === '-Inf' ? -Infinity : text === 'Nan' ? NaN : Number(text);
}

function compareIeee(a: string, b: string): number {
  const x = ieee(a);
  const y = ieee(b);
  if (Number.isNaN(x) || Number.isNaN(y)) return Number.isNaN(x) === Number.isNaN(y) ? 0 : Number.isNaN(x) ? 1 : -1;
  return x < y ? -1 : x > y ? 1 : 0;
}

/** A DATE or TIMESTAMP text (with an offset for WITH TIME ZONE) as nanoseconds since 0001-01-01 UTC. */
function instantOf(text: string): bigint {
  const m = /^([0-9]{4})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{0,9}))?(?: ?([-+])([0-9]{1,2}):([0-9]{2}))?$/.exec(text.trim());
  if (!m) throw new Error(`not a DATE or TIMESTAMP: ${text}`);
  const date = new Date(0);
  date.setUTCFullYear(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
  date.setUTCHours(Number(m[4]), Number(m[5]), Number(m[6]), 0);
  const offset = m[8] === undefined ? 0 : (m[8] === '-' ? -1 : 1) * (Number(m[9]) * 60 + Number(m[10]));
  return (BigInt(date.getTime()) - BigInt(offset) * 60_000n) * 1_000_000n + BigInt((m[7] ?? '').padEnd(9, '0'));
}

/**
 * Oracle's order of two values of a key column, sorted as `by` says under NLS_SORT = BINARY (the simulator's
 * charsets); 0 when equal.
 */
export function simulatedOrder(db: SimulatedOracle, key: SortKey, a: string, b: string): number {
  const type = key.column.type.trim().toUpperCase();
  if (type === 'NUMBER' || type === 'FLOAT') return compareNumbers(a, b);
  if (type === 'BINARY_FLOAT' || type === 'BINARY_DOUBLE') return compareIeee(a, b);
  if (type === 'DATE' || type.startsWith('TIMESTAMP')) {
    const x = instantOf(a);
    const y = instantOf(b);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (type === 'RAW' || type === 'LONG RAW') return Buffer.compare(Buffer.from(a, 'hex'), Buffer.from(b, 'hex'));
  const national = type.startsWith('N') && key.by === 'column';
  const set = national ? db.nationalCharacterSet : db.characterSet;
  return Buffer.compare(characterSetBytes(a, set), characterSetBytes(b, set));
}

class SimTableDatabase implements OracleTableDatabase {
  private closed = false;
  /** Consistent: the committed rows of every table when it was made. */
  private readonly snapshot: Map<string, Values[]> | null;

  constructor(
    private readonly db: SimulatedOracle,
    consistent: boolean,
  ) {
    this.snapshot = consistent ? new Map(db.tableList().map((t) => [`${t.owner}.${t.table}`, db.committedRows(t.owner, t.table)])) : null;
  }

  private call(method: string): void {
    if (this.closed) throw Object.assign(new Error('NJS-003: invalid or closed connection'), { code: 'NJS-003' });
    this.db.readerCall(method);
  }

  async characterSets(): Promise<{ database: string; national: string }> {
    this.call('characterSets');
    return { database: this.db.characterSet, national: this.db.nationalCharacterSet };
  }

  async columns(owner: string, table: string): Promise<OracleColumn[] | null> {
    this.call('tableColumns');
    return this.db.describeTable(owner, table)?.columns ?? null;
  }

  async numRows(owner: string, table: string): Promise<number | null> {
    this.call('numRows');
    return this.db.numRows(owner, table);
  }

  async select(q: RowQuery): Promise<(string | null)[][]> {
    this.call('select');
    const name = `${q.owner}.${q.table}`;
    this.db.table(q.owner, q.table); // ORA-00942 when it is gone
    let rows = this.snapshot ? [...(this.snapshot.get(name) ?? [])] : this.db.committedRows(q.owner, q.table);
    const keyOf = (row: Values): string[] => q.order.map((k) => row[k.column.name]!);
    const compare = (a: readonly string[], b: readonly string[]): number => {
      for (let i = 0; i < q.order.length; i++) {
        const order = simulatedOrder(this.db, q.order[i]!, a[i]!, b[i]!);
        if (order !== 0) return order;
      }
      return 0;
    };
    if (q.after !== null) rows = rows.filter((row) => compare(keyOf(row), q.after!) > 0);
    if (q.keys !== null) {
      // Looked up as the columns themselves (a national column by its own bytes: equality is the same).
      const asColumns = q.order.map((k): SortKey => ({ column: k.column, by: 'column' }));
      rows = rows.filter((row) => q.keys!.some((key) => asColumns.every((k, i) => simulatedOrder(this.db, k, row[k.column.name]!, key[i]!) === 0)));
    }
    rows.sort((a, b) => compare(keyOf(a), keyOf(b)));
    if (q.limit !== null) rows = rows.slice(0, q.limit);
    return rows.map((row) => q.columns.map((c) => row[c.name] ?? null));
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

const SNAPSHOTS = [ORACLE_BOOKKEEPING_OWNER, SNAPSHOTS_TABLE] as const;
const MARKERS = [ORACLE_BOOKKEEPING_OWNER, SNAPSHOT_MARKERS_TABLE] as const;

class SimSnapshotStore implements SnapshotStore {
  private closed = false;

  constructor(
    private readonly db: SimulatedOracle,
    private readonly username: string,
  ) {}

  private call(method: string): void {
    if (this.closed) throw Object.assign(new Error('NJS-003: invalid or closed connection'), { code: 'NJS-003' });
    this.db.readerCall(method);
  }

  /** SYS_EXTRACT_UTC(SYSTIMESTAMP) as a TIMESTAMP(6)'s Oracle text. */
  private now(): string {
    const column = this.db.describeTable(...SNAPSHOTS)!.columns.find((c) => c.name === 'UPDATED_AT')!;
    return oracleText(column, microsToTimestampText(this.db.now()));
  }

  private value(row: readonly (string | null)[], name: string): string | null {
    const index = this.db.describeTable(...SNAPSHOTS)!.columns.findIndex((c) => c.name === name);
    return row[index] ?? null;
  }

  async ensureTables(): Promise<void> {
    this.call('ensureSnapshotTables');
    this.db.createSnapshotTables();
  }

  async transaction<T>(work: (tx: SnapshotStoreTransaction) => Promise<T>): Promise<T> {
    this.call('snapshotTransaction');
    const tx = this.db.begin(1, { username: this.username });
    const store: SnapshotStoreTransaction = {
      insertSnapshot: async (row) => {
        const now = this.now();
        tx.insert(...SNAPSHOTS, { ID: row.id, TABLE_NAME: row.table, TARGETS: row.targets, NEXT_CHUNK: '0', ROWS_SENT: '0', ESTIMATED_ROWS: String(row.estimatedRows), STATE: 'running', STARTED_AT: now, UPDATED_AT: now });
      },
      lockSnapshot: async (id) => {
        // An update of nothing takes the row's lock (as FOR UPDATE) and writes no redo.
        if (tx.update(...SNAPSHOTS, { ID: id }, {}) === 0) return null;
        const row = tx.find(...SNAPSHOTS, { ID: id })!;
        return { nextChunk: Number(this.value(row, 'NEXT_CHUNK')), state: this.value(row, 'STATE') as SnapshotState };
      },
      updateSnapshot: async (id, change) => {
        const row = tx.find(...SNAPSHOTS, { ID: id });
        if (!row) return;
        const sent = BigInt(this.value(row, 'ROWS_SENT') ?? '0') + BigInt(change.rows);
        tx.update(...SNAPSHOTS, { ID: id }, { NEXT_CHUNK: String(change.nextChunk), ROWS_SENT: sent.toString(), STATE: change.state, UPDATED_AT: this.now() });
      },
      insertMarkerPiece: async (piece: MarkerPiece) => {
        tx.insert(...MARKERS, { SNAPSHOT_ID: piece.snapshotId, CHUNK: String(piece.chunk), PIECE: String(piece.piece), PIECES: String(piece.pieces), CONTENT: piece.content });
      },
      pruneMarkers: async (id, below) => {
        for (const row of this.db.committedRows(...MARKERS)) {
          if (row.SNAPSHOT_ID !== id || (below !== null && Number(row.CHUNK) >= below)) continue;
          tx.delete(...MARKERS, { SNAPSHOT_ID: row.SNAPSHOT_ID, CHUNK: row.CHUNK!, PIECE: row.PIECE! });
        }
      },
    };
    try {
      const result = await work(store);
      tx.commit();
      return result;
    } catch (error) {
      tx.rollback();
      throw error;
    }
  }

  async list(): Promise<SnapshotRecord[]> {
    this.call('listSnapshots');
    const time = (text: string): Date => new Date(`${text.slice(0, 10)}T${text.slice(11, 26)}Z`);
    return this.db
      .committedRows(...SNAPSHOTS)
      .map((r): SnapshotRecord => ({
        id: r.ID!,
        table: r.TABLE_NAME!,
        targets: r.TARGETS ?? null,
        nextChunk: Number(r.NEXT_CHUNK),
        rowsSent: Number(r.ROWS_SENT),
        estimatedRows: Number(r.ESTIMATED_ROWS),
        state: r.STATE as SnapshotState,
        startedAt: time(r.STARTED_AT!),
        updatedAt: time(r.UPDATED_AT!),
      }))
      .sort((a, b) => a.startedAt.getTime() - b.startedAt.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  async cancel(id: string): Promise<boolean> {
    this.call('cancelSnapshot');
    const tx = this.db.begin(1, { username: this.username });
    const row = tx.find(...SNAPSHOTS, { ID: id });
    if (!row || this.value(row, 'STATE') !== 'running') {
      tx.rollback();
      return false;
    }
    tx.update(...SNAPSHOTS, { ID: id }, { STATE: 'cancelled', UPDATED_AT: this.now() });
    tx.commit();
    return true;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
