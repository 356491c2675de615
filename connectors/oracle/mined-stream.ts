/**
 * Turns the rows of V$LOGMNR_CONTENTS, window after window, into whole committed transactions in commit order.
 * Pure apart from the transaction buffer (transaction-buffer.ts: memory, then spill files) and the table
 * descriptions it asks for (LogMinerReader.columns through `options.columns`, cached; loaded again at a DDL row
 * of the table, so that a column added shows up).
 *
 * Rows. START opens a transaction in the buffer, each change of a captured table (and of
 * SITESYNC.APPLY_PROGRESS) is buffered under its XID as it is read, a ROLLBACK=1 row undoes the latest buffered
 * change of its XID with its ROWID (a rollback to a savepoint), ROLLBACK discards the XID, COMMIT hands it on.
 * CSF=1 rows are joined to the rows after them of the same redo record before anything reads SQL_REDO. LOB rows
 * (SELECT_LOB_LOCATOR, LOB_WRITE) are skipped: LOB columns are left out of the relations (one warning per
 * table), as this build does not reassemble LOB values. SQL_REDO is parsed (sql-redo-parser.ts) and its values
 * turned into canonical text (oracle-kinds.ts) only at COMMIT: a rolled-back change is never read.
 *
 * Changes, as the other connectors say them: the relation is the table's non-LOB columns; the key is the
 * primary key's columns (replica identity 'd'), or every column of a table without one ('f'). An insert's new
 * row is its values; an update's new row is its old image (the WHERE: with supplemental logging ALL COLUMNS
 * every column's old value) overridden by its SET; its old row is sent, key columns only, when a key column
 * changed, and whole for a table without a key; a delete's old row is its key columns, or the whole old image.
 * A column neither statement names (a column added after the change was logged, or a value LogMiner wrote as
 * `Unsupported Type`) is `unchanged` in the images (left as it is at the target, never set to NULL).
 *
 * Commit order. Positions are (commit SCN, thread, XID). V$LOGMNR_CONTENTS orders rows by SCN only, and several
 * transactions may commit at one SCN (on one thread, or on several threads of RAC): their COMMIT rows are held
 * until a row of a higher SCN is read or the window ends, then handed on in position order (DBZ-4936).
 *
 * Checkpoints (oracle-positions.ts), the two rules: `after` never passes a commit not yet handed on, and
 * `resume` never passes a change of a transaction not yet handed on. After a transaction at position p,
 * whose COMMIT SCN group is read whole: after = p; resume = (the oldest start SCN of the transactions still in
 * the buffer, including those committed at the same SCN after p) - 1, or that SCN when none is. At a window's
 * end (fromScn, to] every commit at or below `to` was read (the window never passes a thread's flushed SCN),
 * so after = lastAt(to) and resume as above with `to`. After a restart, mining resumes at `resume`: every
 * transaction committed above `after` is rebuilt from its START, every one at or below it is dropped, and a
 * transaction sent in parts when the process stopped is sent again whole from part 0 (DBZ-8060).
 *
 * Parts: a transaction bigger than maxPartBytes goes out in parts as it is read out of the buffer, each with
 * its position and id, the checkpoint on the last only; between parts the stream waits for `gate` (the
 * source's flow control).
 *
 * Snapshot markers: LogMiner carries no logical messages, so a snapshot's marker is a row inserted into
 * SITESYNC.SNAPSHOT_MARKERS (oracle-snapshot-control.ts: one row per MARKER_PIECE_CHARS characters, PIECE 0 to
 * PIECES - 1, in the transaction that moves the snapshot's row in SITESYNC.SNAPSHOTS). Those inserts are
 * buffered with the transaction like any change (so a rollback, or a rollback to a savepoint, takes them back),
 * and at COMMIT the pieces of one marker (SNAPSHOT_ID, CHUNK) are joined, in PIECE order, into one
 * `{ op: 'message', prefix: SNAPSHOT_MARKER_PREFIX }` change, where its last piece is: at that transaction's
 * position in the stream, as a PostgreSQL site's logical message is. They are never row changes; the deletes
 * that prune earlier marker rows, and every change of SNAPSHOTS, are not captured at all. A marker whose pieces
 * do not add up is reported (warn) and dropped, never half-used: snapshot-chunks.ts does the same with one that
 * does not parse.
 *
 * Relayed writes: the sink writes SITESYNC.APPLY_PROGRESS first in every transaction it applies. A transaction
 * with a change of that table was applied here from another site: it is dropped whole and reported as skipped,
 * and its SOURCE and COMMIT_TIME_MICROS move the causal context `seen`. Such a change after a part of its
 * transaction went out means the sink broke its rule: the stream stops (DecodeError) rather than let the
 * transaction loop back. A transaction left with no change of a captured table (all undone) is skipped as
 * 'empty'; one that never changed a captured table (another schema's, sitesync's own progress) is not reported.
 *
 * A transaction whose START was not mined should not exist: capture's very first checkpoint resumes below the
 * START of every transaction open then (oracle-source.ts), and every later one below those still buffered. Should
 * one commit anyway, capture stops with a DecodeError naming it and how to move the resume SCN back, rather than
 * send a transaction in part.
 */
import { SNAPSHOT_MARKER_PREFIX } from '../../src/capture/snapshot-marker.ts';
import type { SourceHandler } from '../../src/capture/source.ts';
import { DecodeError, SitesyncError } from '../../src/errors.ts';
import type { Change, ColumnInfo, Position, RelationInfo, RowImage, SeenSites, Transaction } from '../../src/events/transaction.ts';
import { changeBytes, transactionId } from '../../src/events/transaction.ts';
import type { MinedRow, OracleColumn, Scn } from './logminer-reader.ts';
import { OPERATION } from './logminer-reader.ts';
import { canonicalText, isLob, kindOf, nativeOf } from './oracle-kinds.ts';
import { SNAPSHOT_MARKERS_TABLE } from './oracle-setup.ts';
import { describePosition, formatCheckpoint, formatPosition, lastAt, type Checkpoint } from './oracle-positions.ts';
import { parseRedo, type ParsedRedo } from './sql-redo-parser.ts';
import type { BufferedRow, TransactionBuffer } from './transaction-buffer.ts';

export const BOOKKEEPING_OWNER = 'SITESYNC';
export const APPLY_PROGRESS_TABLE = 'APPLY_PROGRESS';

export interface MinedStreamOptions {
  readonly site: string;
  readonly maxPartBytes: number;
  /** The causal context where the stream resumes. */
  readonly seen: SeenSites;
  /** The checkpoint the stream resumes from: mining starts above `resume`, commits at or below `after` are dropped. */
  readonly checkpoint: Checkpoint;
  readonly buffer: TransactionBuffer;
  /** Whether a table's changes are captured (never SITESYNC's). */
  readonly captured: (owner: string, table: string) => boolean;
  /** A table's columns now (LogMinerReader.columns); null when it is gone. */
  readonly columns: (owner: string, table: string) => Promise<OracleColumn[] | null>;
  /** Between the parts of a large transaction: false when the stream is closing. */
  readonly gate?: () => Promise<boolean>;
  readonly warn?: (line: string) => void;
  readonly info?: (line: string) => void;
}

interface Described {
  readonly relation: RelationInfo;
  /** The relation's columns (the table's non-LOB columns), in order. */
  readonly columns: readonly OracleColumn[];
  readonly index: ReadonlyMap<string, number>;
  /** Key column indexes; every column for a table without a key. */
  readonly keys: readonly number[];
  readonly identity: boolean;
}

interface PendingCommit {
  readonly xid: string;
  readonly position: Position;
  readonly scn: Scn;
  readonly timestamp: string;
}

/** `2026-12-06T09:00:00+01:00` (the reader's COMMIT_TIMESTAMP, with the database's offset) as UTC microseconds. */
export function commitTimeMicros(timestamp: string): bigint {
  const m = /^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:?\d\d)$/.exec(timestamp.trim());
  if (!m) throw new DecodeError(`commit timestamp ${JSON.stringify(timestamp.slice(0, 40))} is not ISO 8601 with an offset`);
  const millis = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
  const fraction = BigInt((m[7] ?? '').padEnd(6, '0').slice(0, 6) || '0');
  const zone = m[8]!;
  let offsetMinutes = 0;
  if (zone !== 'Z') {
    const digits = zone.replace(':', '');
    offsetMinutes = (digits[0] === '-' ? -1 : 1) * (Number(digits.slice(1, 3)) * 60 + Number(digits.slice(3, 5)));
  }
  return (BigInt(millis) - BigInt(offsetMinutes) * 60_000n) * 1000n + fraction;
}

const tableKey = (owner: string, table: string): string => `${owner}\u0000${table}`;

/** The pieces of one snapshot marker read so far in a transaction. */
interface MarkerPieces {
  readonly pieces: number;
  readonly received: Map<number, string>;
  /** Handed on, or dropped. */
  done: boolean;
}

/** A NUMBER's text as a whole number from 0 to 2^31, or null. */
function wholeNumber(text: string | null): number | null {
  if (text === null || !/^[0-9]{1,10}$/.test(text.trim())) return null;
  const n = Number(text.trim());
  return n <= 2 ** 31 ? n : null;
}

const ROW_OPERATIONS = new Set<number>([OPERATION.insert, OPERATION.update, OPERATION.delete]);
/** V$LOGMNR_CONTENTS' UNSUPPORTED: a change LogMiner cannot show as SQL. */
const UNSUPPORTED = 255;

export class MinedStream {
  private seenSites: SeenSites;
  /** Everything at or below it was handed on or skipped (a position). */
  private handedOn: Position;
  /** Every row at or below this SCN was read. */
  private readTo: Scn;
  private readonly tables = new Map<string, OracleColumn[] | null>();
  private readonly described = new Map<string, Described>();
  private readonly warned = new Set<string>();
  /** CSF pieces waiting for the rest of their redo record. */
  private readonly pieces = new Map<string, string[]>();
  private pending: PendingCommit[] = [];
  /** Transactions that changed a captured table (or SITESYNC.APPLY_PROGRESS). */
  private readonly touched = new Set<string>();
  /** Commit time of the last transaction handed on (for lag). */
  lastCommitMicros: bigint | null = null;
  /** Counts, for tests and logs. */
  readonly counts = { committed: 0, rolledBack: 0, undone: 0, csfJoined: 0, parts: 0, relayed: 0, empty: 0, droppedAtRestart: 0, withoutStart: 0, ddl: 0 };

  constructor(
    private readonly options: MinedStreamOptions,
    private readonly handler: SourceHandler,
  ) {
    if (!(options.maxPartBytes >= 1)) throw new Error(`maxPartBytes must be at least 1, not ${options.maxPartBytes}`);
    this.seenSites = options.seen;
    this.handedOn = options.checkpoint.after;
    this.readTo = options.checkpoint.resume;
  }

  get seen(): SeenSites {
    return this.seenSites;
  }

  /** Where mining goes on from: every row at or below it was read. */
  get position(): Scn {
    return this.readTo;
  }

  /** The checkpoint now (between windows, or between the commits of one SCN). */
  get checkpoint(): Checkpoint {
    const oldest = this.options.buffer.oldestStart();
    const resume = oldest !== null && oldest - 1n < this.readTo ? oldest - 1n : this.readTo;
    return { after: this.handedOn, resume };
  }

  /** One row of V$LOGMNR_CONTENTS, in its order. */
  async accept(row: MinedRow): Promise<void> {
    if (this.pending.length > 0 && row.scn > this.pending[0]!.scn) await this.flush();
    const key = `${row.thread}|${row.xid}|${row.rsId}|${row.ssn}`;
    if (row.csf) {
      const list = this.pieces.get(key);
      if (list) list.push(row.sqlRedo ?? '');
      else this.pieces.set(key, [row.sqlRedo ?? '']);
      return;
    }
    let sqlRedo = row.sqlRedo;
    const before = this.pieces.get(key);
    if (before) {
      this.pieces.delete(key);
      sqlRedo = before.join('') + (sqlRedo ?? '');
      this.counts.csfJoined++;
    }
    const buffer = this.options.buffer;
    switch (row.operationCode) {
      case OPERATION.start:
        buffer.begin(row.xid, row.thread, row.scn, true);
        return;
      case OPERATION.commit:
        this.commitRow(row);
        return;
      case OPERATION.rollback:
        if (buffer.has(row.xid)) this.counts.rolledBack++;
        buffer.discard(row.xid);
        this.touched.delete(row.xid);
        return;
      case OPERATION.ddl:
        await this.ddl(row, sqlRedo);
        return;
      case OPERATION.selectLobLocator:
      case OPERATION.lobWrite:
        return;
      default:
        break;
    }
    const owner = row.owner;
    const table = row.table;
    if (owner === null || table === null) return;
    const progress = owner === BOOKKEEPING_OWNER && table === APPLY_PROGRESS_TABLE;
    const marker = owner === BOOKKEEPING_OWNER && table === SNAPSHOT_MARKERS_TABLE;
    if (!progress && !marker && !this.options.captured(owner, table)) return;
    if (row.operationCode === UNSUPPORTED) {
      throw new DecodeError(`LogMiner cannot show a change of ${owner}.${table} (transaction ${row.xid} at SCN ${row.scn}, operation UNSUPPORTED) of site ${this.site}: the table uses a type or storage LogMiner does not support; leave it out of the captured tables`);
    }
    if (!ROW_OPERATIONS.has(row.operationCode)) return;
    // Only a marker's insert is a marker; the deletes pruning older marker rows are nothing to anyone. (An
    // undo row, ROLLBACK = 1, of a marker insert is a delete: it goes on to take the insert back.)
    if (marker && row.operationCode !== OPERATION.insert && !row.rollback) return;
    if (!progress && !marker && !this.tables.has(tableKey(owner, table))) await this.load(owner, table);
    if (!buffer.has(row.xid)) buffer.begin(row.xid, row.thread, row.scn, false);
    if (row.rollback) {
      if (row.rowId !== null && buffer.undo(row.xid, row.rowId)) this.counts.undone++;
      return;
    }
    if (sqlRedo === null) throw new DecodeError(`change of ${owner}.${table} (transaction ${row.xid} at SCN ${row.scn}) of site ${this.site} has no SQL_REDO`);
    this.touched.add(row.xid);
    buffer.add(row.xid, { scn: row.scn, operationCode: row.operationCode, owner, table, sqlRedo, rowId: row.rowId });
  }

  /** The window (…, to] was read to its end: commits held are handed on, and everything up to `to` is read. */
  async endWindow(to: Scn): Promise<void> {
    await this.flush();
    if (this.pieces.size > 0) {
      const [key] = this.pieces.keys();
      this.pieces.clear();
      throw new DecodeError(`a row of V$LOGMNR_CONTENTS with CSF = 1 (${key!.replace(/\|/g, ' ')}) of site ${this.site} has no continuation row before SCN ${to}: the statement is incomplete`);
    }
    if (to > this.readTo) this.readTo = to;
    const end = lastAt(this.readTo);
    if (end > this.handedOn) this.handedOn = end;
    this.idle();
  }

  /** Says where the stream is (a heartbeat, or a window's end). */
  idle(): void {
    if (this.pending.length > 0) return;
    this.handler.idle(formatCheckpoint(this.checkpoint), this.seenSites);
  }

  private get site(): string {
    return this.options.site;
  }

  private commitRow(row: MinedRow): void {
    const last = this.pending[this.pending.length - 1];
    if (last && row.scn < last.scn) {
      throw new DecodeError(`COMMIT of transaction ${row.xid} at SCN ${row.scn} of site ${this.site} was read after one at SCN ${last.scn}: V$LOGMNR_CONTENTS is not in SCN order`);
    }
    const position = formatPosition({ scn: row.scn, thread: row.thread, xid: row.xid });
    this.pending.push({ xid: row.xid, position, scn: row.scn, timestamp: row.timestamp });
  }

  private async ddl(row: MinedRow, sqlRedo: string | null): Promise<void> {
    if (row.owner === null || row.table === null || !this.options.captured(row.owner, row.table)) return;
    this.counts.ddl++;
    const key = tableKey(row.owner, row.table);
    await this.load(row.owner, row.table);
    const after = this.tables.get(key);
    this.options.info?.(`DDL on ${row.owner}.${row.table} at SCN ${row.scn} of site ${this.site} (${(sqlRedo ?? '').slice(0, 120)}): its columns are now ${after ? after.map((c) => c.name).join(', ') : 'gone'}`);
  }

  private async load(owner: string, table: string): Promise<void> {
    const columns = await this.options.columns(owner, table);
    const key = tableKey(owner, table);
    this.tables.set(key, columns);
    this.described.delete(key);
  }

  /** Hands on the commits held (one SCN), in position order. */
  private async flush(): Promise<void> {
    if (this.pending.length === 0) return;
    const commits = [...this.pending].sort((a, b) => (a.position < b.position ? -1 : a.position > b.position ? 1 : 0));
    this.pending = [];
    const scn = commits[0]!.scn;
    // Every row of this SCN is read; until the last of its commits is handed on, the others stay in the
    // buffer and so hold `resume` below their changes.
    for (const commit of commits) await this.commit(commit, scn);
    if (scn > this.readTo) this.readTo = scn;
  }

  private async commit(commit: PendingCommit, scn: Scn): Promise<void> {
    const buffer = this.options.buffer;
    const touched = this.touched.delete(commit.xid);
    const open = buffer.get(commit.xid);
    if (commit.position <= this.handedOn) {
      // At or below the checkpoint: handed on before a restart.
      if (open && touched) this.counts.droppedAtRestart++;
      buffer.discard(commit.xid);
      return;
    }
    if (!open || !touched) {
      // Never changed a captured table: nothing to say (the checkpoint moves at the next one or the window's end).
      buffer.discard(commit.xid);
      return;
    }
    if (!open.startSeen) {
      this.counts.withoutStart++;
      throw new DecodeError(
        `transaction ${commit.xid} of site ${this.site} committed at SCN ${commit.scn} began before the SCN capture resumed at (its first change read is at SCN ${open.startScn}): stopping rather than send it in part; lower the resume SCN of this site's checkpoint in SITESYNC.CAPTURE_PROGRESS (the 16 hex digits after the colon) below the transaction's start (SELECT MIN(SCN) FROM V$LOGMNR_CONTENTS WHERE XID = HEXTORAW('${commit.xid}') over older logs) and start the site again`,
      );
    }
    const micros = commitTimeMicros(commit.timestamp);
    /** After this transaction: every row at or below `scn` is read; the transactions still buffered hold `resume` back. */
    const checkpointAfter = (): string => {
      const oldest = buffer.oldestStart();
      const read = scn > this.readTo ? scn : this.readTo;
      return formatCheckpoint({ after: commit.position, resume: oldest !== null && oldest - 1n < read ? oldest - 1n : read });
    };
    let changes: Change[] = [];
    let bytes = 0;
    let partsSent = 0;
    let relayed = false;
    let relayedSeen: Map<string, bigint> | null = null;
    /** Snapshot markers of this transaction being put together from their pieces, by SNAPSHOT_ID and CHUNK. */
    const markers = new Map<string, MarkerPieces>();
    const snapshot = (): Transaction => ({
      id: transactionId(this.site, commit.position),
      site: this.site,
      position: commit.position,
      commitTimeMicros: micros,
      sourceTxId: describePosition(commit.position),
      seen: this.seenSites,
      changes,
    });
    for (const row of buffer.take(commit.xid)) {
      if (row.owner === BOOKKEEPING_OWNER && row.table === APPLY_PROGRESS_TABLE) {
        if (partsSent > 0) {
          throw new DecodeError(
            `transaction ${describePosition(commit.position)} of site ${this.site} writes ${BOOKKEEPING_OWNER}.${APPLY_PROGRESS_TABLE} after changes of it already went out: the Oracle sink must write it first in every transaction it applies; stopping rather than let the transaction loop back`,
          );
        }
        relayed = true;
        changes = [];
        bytes = 0;
        const marker = this.relayedMarker(row, commit);
        if (marker) {
          relayedSeen ??= new Map();
          const known = relayedSeen.get(marker.source);
          if (known === undefined || known < marker.micros) relayedSeen.set(marker.source, marker.micros);
        }
        continue;
      }
      if (relayed) continue;
      const change = row.owner === BOOKKEEPING_OWNER && row.table === SNAPSHOT_MARKERS_TABLE ? this.markerPiece(row, commit, markers) : this.change(row, commit);
      if (!change) continue;
      changes.push(change);
      bytes += changeBytes(change);
      if (bytes >= this.options.maxPartBytes) {
        this.handler.transaction(snapshot(), { index: partsSent, last: false }, null);
        this.counts.parts++;
        partsSent++;
        changes = [];
        bytes = 0;
        if (this.options.gate && !(await this.options.gate())) return;
      }
    }
    for (const [key, incomplete] of markers) {
      if (incomplete.done) continue;
      this.dropMarker(commit, key, `${incomplete.received.size} of its ${incomplete.pieces} pieces were written`);
    }
    this.handedOn = commit.position;
    this.lastCommitMicros = micros;
    this.counts.committed++;
    if (relayed) {
      this.counts.relayed++;
      this.noteRelayed(relayedSeen);
      this.handler.skipped(commit.position, checkpointAfter(), 'relayed', this.seenSites);
    } else if (changes.length === 0 && partsSent === 0) {
      this.counts.empty++;
      this.handler.skipped(commit.position, checkpointAfter(), 'empty', this.seenSites);
    } else {
      const part = partsSent > 0 ? { index: partsSent, last: true } : null;
      if (part) this.counts.parts++;
      this.handler.transaction(snapshot(), part, checkpointAfter());
    }
  }

  private parse(row: BufferedRow, commit: PendingCommit): ParsedRedo {
    let parsed: ParsedRedo;
    try {
      parsed = parseRedo(row.sqlRedo);
    } catch (error) {
      if (error instanceof SitesyncError) throw new DecodeError(`${error.message} (change of ${row.owner}.${row.table} at SCN ${row.scn}, transaction ${describePosition(commit.position)} of site ${this.site})`, { cause: error });
      throw error;
    }
    const expected = row.operationCode === OPERATION.insert ? 'insert' : row.operationCode === OPERATION.update ? 'update' : 'delete';
    if (parsed.op !== expected || parsed.owner !== row.owner || parsed.table !== row.table) {
      throw new DecodeError(`SQL_REDO of a change of ${row.owner}.${row.table} at SCN ${row.scn} (operation ${row.operationCode}) of site ${this.site} is an ${parsed.op} of ${parsed.owner}.${parsed.table}`);
    }
    return parsed;
  }

  /**
   * One row of a snapshot marker (an insert into SITESYNC.SNAPSHOT_MARKERS): kept until the marker's last piece,
   * which gives the marker as a message change; null otherwise (and for a row that is not a piece of one).
   */
  private markerPiece(row: BufferedRow, commit: PendingCommit, markers: Map<string, MarkerPieces>): Change | null {
    const parsed = this.parse(row, commit);
    if (parsed.op !== 'insert') return null;
    const value = (name: string): string | null => parsed.newValues.get(name) ?? null;
    const id = value('SNAPSHOT_ID');
    const chunk = value('CHUNK');
    const key = `${id ?? '?'} chunk ${chunk ?? '?'}`;
    const piece = wholeNumber(value('PIECE'));
    const pieces = wholeNumber(value('PIECES'));
    const content = value('CONTENT');
    if (id === null || chunk === null || piece === null || pieces === null || content === null || pieces < 1 || piece >= pieces) {
      this.dropMarker(commit, key, 'a row of it lacks SNAPSHOT_ID, CHUNK, PIECE, PIECES or CONTENT, or numbers its piece outside 0..PIECES-1');
      markers.set(key, { pieces: 0, received: new Map(), done: true });
      return null;
    }
    let marker = markers.get(key);
    if (!marker) markers.set(key, (marker = { pieces, received: new Map(), done: false }));
    if (marker.done) return null;
    if (marker.pieces !== pieces || marker.received.has(piece)) {
      marker.done = true;
      this.dropMarker(commit, key, marker.pieces !== pieces ? 'its rows disagree on PIECES' : `piece ${piece} was written twice`);
      return null;
    }
    marker.received.set(piece, content);
    if (marker.received.size < pieces) return null;
    marker.done = true;
    let text = '';
    for (let i = 0; i < pieces; i++) text += marker.received.get(i)!;
    return { op: 'message', prefix: SNAPSHOT_MARKER_PREFIX, content: Buffer.from(text, 'utf8') };
  }

  private dropMarker(commit: PendingCommit, key: string, why: string): void {
    this.options.warn?.(
      `snapshot marker ${key} in transaction ${describePosition(commit.position)} of site ${this.site} dropped: ${why} (${BOOKKEEPING_OWNER}.${SNAPSHOT_MARKERS_TABLE} is written by sitesync only; cancel the snapshot and start it again)`,
    );
  }

  private relayedMarker(row: BufferedRow, commit: PendingCommit): { source: string; micros: bigint } | null {
    const parsed = this.parse(row, commit);
    if (parsed.op === 'delete') return null;
    const value = (name: string): string | null | undefined => (parsed.newValues.has(name) ? parsed.newValues.get(name) : parsed.oldValues.get(name));
    const source = value('SOURCE');
    const micros = value('COMMIT_TIME_MICROS');
    if (typeof source !== 'string' || typeof micros !== 'string') return null;
    try {
      return { source, micros: BigInt(micros.trim()) };
    } catch {
      return null;
    }
  }

  private noteRelayed(relayedSeen: Map<string, bigint> | null): void {
    if (!relayedSeen) return;
    let next: Record<string, bigint> | null = null;
    for (const [site, micros] of relayedSeen) {
      const before = Object.hasOwn(this.seenSites, site) ? this.seenSites[site] : undefined;
      if (before !== undefined && before >= micros) continue;
      next ??= { ...this.seenSites };
      next[site] = micros;
    }
    if (next) this.seenSites = next; // replaced, never mutated: every transaction keeps its own context
  }

  private describe(owner: string, table: string): Described | null {
    const key = tableKey(owner, table);
    const known = this.described.get(key);
    if (known) return known;
    const all = this.tables.get(key);
    if (all === undefined) throw new Error(`columns of ${owner}.${table} were not loaded`);
    if (all === null) {
      if (!this.warned.has(`gone ${key}`)) {
        this.warned.add(`gone ${key}`);
        this.options.warn?.(`table ${owner}.${table} of site ${this.site} no longer exists: its changes still in the redo are left out`);
      }
      return null;
    }
    const lobs = all.filter((c) => isLob(c));
    if (lobs.length > 0 && !this.warned.has(`lob ${key}`)) {
      this.warned.add(`lob ${key}`);
      this.options.warn?.(
        `table ${owner}.${table} of site ${this.site} has LOB columns (${lobs.map((c) => c.name).join(', ')}) that capture leaves out (LogMiner writes their values in separate LOB rows, which this build does not reassemble): the other sites do not receive them`,
      );
    }
    const columns = all.filter((c) => !isLob(c));
    const hasKey = columns.some((c) => c.keyOrdinal > 0);
    const infos = columns.map((c): ColumnInfo => ({ name: c.name, kind: kindOf(c), native: nativeOf(c), key: hasKey ? c.keyOrdinal > 0 : true }));
    const described: Described = {
      relation: { schema: owner, table, replicaIdentity: hasKey ? 'd' : 'f', columns: infos },
      columns,
      index: new Map(columns.map((c, i) => [c.name, i])),
      keys: columns.flatMap((c, i) => (!hasKey || c.keyOrdinal > 0 ? [i] : [])),
      identity: hasKey,
    };
    this.described.set(key, described);
    return described;
  }

  private change(row: BufferedRow, commit: PendingCommit): Change | null {
    const table = this.describe(row.owner, row.table);
    if (!table) return null;
    const parsed = this.parse(row, commit);
    const where = (): string => `${row.owner}.${row.table} at SCN ${row.scn} (transaction ${describePosition(commit.position)} of site ${this.site})`;
    if (parsed.unsupported.size > 0) {
      const names = [...parsed.unsupported].filter((n) => table.index.has(n));
      if (names.length > 0 && !this.warned.has(`unsupported ${row.owner}.${row.table}`)) {
        this.warned.add(`unsupported ${row.owner}.${row.table}`);
        this.options.warn?.(`LogMiner writes the values of ${row.owner}.${row.table} column(s) ${names.join(', ')} of site ${this.site} as "Unsupported Type": capture sends them as unchanged (the other sites keep what they have)`);
      }
    }
    /** An image: values from `maps` (first wins), `unchanged` where none names the column. */
    const image = (maps: readonly ReadonlyMap<string, string | null>[], missing: 'null' | 'unchanged'): RowImage => {
      const unchanged: number[] = [];
      const values = table.columns.map((c, i) => {
        for (const m of maps) {
          if (!m.has(c.name)) continue;
          try {
            return canonicalText(c, m.get(c.name) ?? null);
          } catch (error) {
            if (error instanceof SitesyncError) throw new DecodeError(`${error.message} (column ${c.name} of ${where()})`, { cause: error });
            throw error;
          }
        }
        if (missing === 'unchanged') unchanged.push(i);
        return null;
      });
      return { values, unchanged };
    };
    const keyOnly = (old: RowImage): RowImage => {
      for (const i of table.keys) {
        if (old.unchanged.includes(i)) throw new DecodeError(`${parsed.op} of ${where()} does not carry the old value of key column ${table.columns[i]!.name}: is supplemental logging (ALL COLUMNS) on for the table?`);
      }
      return { values: old.values.map((v, i) => (table.keys.includes(i) ? v : null)), unchanged: [] };
    };
    const relation = table.relation;
    switch (parsed.op) {
      case 'insert':
        return { op: 'insert', relation, newRow: image([parsed.newValues], parsed.unsupported.size > 0 ? 'unchanged' : 'null') };
      case 'update': {
        const oldRow = image([parsed.oldValues], 'unchanged');
        const newRow = image([parsed.newValues, parsed.oldValues], 'unchanged');
        if (table.identity) {
          const key = keyOnly(oldRow);
          const changed = table.keys.some((i) => newRow.values[i] !== key.values[i]);
          return { op: 'update', relation, oldRow: changed ? key : null, newRow };
        }
        return { op: 'update', relation, oldRow, newRow };
      }
      case 'delete': {
        const oldRow = image([parsed.oldValues], 'unchanged');
        return { op: 'delete', relation, oldRow: table.identity ? keyOnly(oldRow) : oldRow };
      }
    }
  }
}
