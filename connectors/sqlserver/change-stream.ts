/**
 * Turns the change rows of one interval, read from several change tables, into whole committed transactions
 * in commit order. Pure: rows go in (RowMerger says which change table to fetch the next batch of, the source
 * fetches it), handler calls come out.
 *
 * Order. Every change table is read in ChangeKey order, (__$start_lsn, __$command_id, __$seqval,
 * __$operation), in batches (keyset pagination: CdcReader.changes(after, limit)); RowMerger merges them by the
 * same key. __$start_lsn is the commit LSN, the same for every change of a transaction, so the merged order is
 * commit order, and within a transaction the order its operations were made in (command id: Microsoft's page
 * on the change tables says seqval is not to be used for that), whichever table they touched.
 *
 * Transactions. Rows with one commit LSN are one transaction: it ends when a row of a higher LSN arrives or the
 * interval ends. An update is a 3 (before) and a 4 (after) with one seqval: a 3 not followed by its 4 (or a 4
 * without its 3) is a DecodeError naming the instance and the LSN, never a guess. An update that changed a key
 * column is logged by SQL Server as a delete (1) and an insert (2) of one operation (one __$command_id): when
 * those two are all that operation wrote, they go out as one update with the old key, as the other connectors
 * send a key change; an operation that changed the keys of several rows cannot be paired row by row, and goes
 * out as its deletes and inserts (the same end state at every target). At most two rows are held for this.
 *
 * Old rows, as the other connectors say them: for a table with a primary key (replica identity 'd') an update
 * carries its old row only when a key column changed, and then, like a delete's, with the key columns only
 * (others null); for a table without one ('f', every column is part of the identity) the whole before image.
 *
 * Commit time: cdc.lsn_time_mapping's tran_end_time, which SQL Server keeps in its own local time without a
 * zone (and as `datetime`, to 1/300 s). The reader gives it converted with the server's zone rules as ISO 8601
 * with its offset; this turns it into UTC microseconds, so that a daylight-saving change (local times repeating
 * or skipping an hour) does not reorder commit times. A transaction without its lsn_time_mapping row is a
 * DecodeError: its commit time is unknown. (In the hour a fall-back repeats, a local time is ambiguous to the
 * server itself; its AT TIME ZONE picks one offset: such commit times may be an hour off. Positions, not times,
 * order a site's transactions, so only last-writer-wins between sites could notice.)
 *
 * Parts: a transaction bigger than maxPartBytes goes out in parts as it is read (memory stays bounded), the
 * last with the checkpoint; a checkpoint is only ever a whole transaction's commit LSN, or an interval's end.
 * A restart resends every transaction after the checkpoint from its first change (DBZ-2329 lost the rest of a
 * transaction resumed inside of).
 *
 * Large objects in old images (Microsoft's page on the change tables): text, ntext and image columns are always
 * NULL in a delete (1) and in an update's before-image (3); varchar(max), nvarchar(max), varbinary(max) (and
 * xml, geography, geometry: max_length -1 in sys.columns) are NULL in a before-image unless the update
 * changed them. Only a table without a primary key sends whole old images (the others send key columns,
 * which are never such types), and there a NULL that is not the value would make the other sites look for
 * a row that is not there (a delete or update "missing", the row kept: the sites diverge). So those columns
 * go in its old images as `unchanged` (RowImage: not sent, not NULL): a sink finds the row by the other
 * columns. Of several rows equal in all the others, any one may be the one changed; capture says so once
 * per table in a warning, whose fix is a primary key.
 *
 * Snapshot markers (sqlserver-snapshot-control.ts): CDC carries no logical messages, so a marker is a row
 * inserted into sitesync.snapshot_markers, in the transaction that moves the snapshot's row in
 * sitesync.snapshots. Each insert (2) there becomes a `{ op: 'message', prefix: SNAPSHOT_MARKER_PREFIX }` change
 * of its transaction, at that transaction's place in commit order (src/capture/snapshot-chunks.ts reads the
 * chunk there); never a row change. Its other rows (deletes of older markers, which the control prunes, or
 * anything else) are dropped. The table is read whatever `tables` says (capture-instances.ts isRead).
 *
 * Relayed writes: the sink writes sitesync.apply_progress first in every transaction it applies. A
 * transaction with a change row of that table's instance was applied here from another site: it is dropped
 * whole and reported as skipped, and the commit time in its after-image (source, commit_time_micros) moves the
 * causal context `seen`. Such a row after a part of its transaction went out means the sink broke its rule:
 * the stream stops (DecodeError) rather than let the transaction loop back.
 */
import { SNAPSHOT_MARKER_PREFIX } from '../../src/capture/snapshot-marker.ts';
import type { SourceHandler } from '../../src/capture/source.ts';
import { DecodeError } from '../../src/errors.ts';
import type { Change, ColumnInfo, RelationInfo, RowImage, SeenSites, Transaction } from '../../src/events/transaction.ts';
import { changeBytes, transactionId } from '../../src/events/transaction.ts';
import type { ChangeKey, ChangeRow, Lsn } from './cdc-reader.ts';
import type { InstanceRead } from './capture-instances.ts';
import { isMarkersTable, tableName } from './capture-instances.ts';
import { canonicalText, kindOf, nativeOf } from './sqlserver-kinds.ts';
import { compareLsn, describeLsn } from './sqlserver-positions.ts';

export function compareChangeKey(a: ChangeKey, b: ChangeKey): number {
  return compareLsn(a.startLsn, b.startLsn) || a.commandId - b.commandId || compareLsn(a.seqval, b.seqval) || a.operation - b.operation;
}

// ─── merging the change tables ─────────────────────────────────────────────────────────────────────────────

interface Cursor {
  readonly read: InstanceRead;
  rows: ChangeRow[];
  head: number;
  after: ChangeKey | null;
  exhausted: boolean;
}

/** A fetch the merger needs before it can say which row comes next. */
export interface WantedBatch {
  readonly index: number;
  readonly read: InstanceRead;
  readonly after: ChangeKey | null;
  readonly limit: number;
}

/**
 * Merges the change tables of one interval by (commit LSN, command id, seqval, operation). Holds at most one batch per
 * change table; the next row is known only once every table not yet exhausted has a row buffered.
 */
export class RowMerger {
  private readonly cursors: Cursor[];

  constructor(
    reads: readonly InstanceRead[],
    private readonly batchRows: number,
  ) {
    if (!(batchRows >= 1)) throw new Error(`batchRows must be at least 1, not ${batchRows}`);
    this.cursors = reads.map((read) => ({ read, rows: [], head: 0, after: null, exhausted: false }));
  }

  /** The batches to fetch before `next` can go on. */
  wanted(): WantedBatch[] {
    const out: WantedBatch[] = [];
    this.cursors.forEach((c, index) => {
      if (!c.exhausted && c.head >= c.rows.length) out.push({ index, read: c.read, after: c.after, limit: this.batchRows });
    });
    return out;
  }

  /** A batch fetched for `wanted()[…].index`: fewer rows than asked means the table has no more in the interval. */
  supply(index: number, rows: readonly ChangeRow[]): void {
    const c = this.cursors[index];
    if (!c) throw new Error(`no change table ${index} in this interval`);
    let previous = c.after;
    for (const row of rows) {
      const where = `capture instance ${c.read.instance.name} at ${describeLsn(row.startLsn)}`;
      if (previous !== null && compareChangeKey(previous, row) >= 0) throw new DecodeError(`change rows of ${where} are not in (start_lsn, command_id, seqval, operation) order`);
      if (compareLsn(row.startLsn, c.read.fromLsn) <= 0 || compareLsn(row.startLsn, c.read.toLsn) > 0) {
        throw new DecodeError(`change row of ${where} lies outside the interval read (${describeLsn(c.read.fromLsn)}, ${describeLsn(c.read.toLsn)}]`);
      }
      if (row.values.length !== c.read.instance.columns.length) {
        throw new DecodeError(`change row of ${where} has ${row.values.length} values for ${c.read.instance.columns.length} captured columns`);
      }
      previous = row;
    }
    c.rows = [...rows];
    c.head = 0;
    if (rows.length > 0) c.after = rows[rows.length - 1]!;
    c.exhausted = rows.length < this.batchRows;
  }

  /** The next row in order; 'fetch' when a batch is wanted first; null when every table is read to the interval's end. */
  next(): { readonly read: InstanceRead; readonly row: ChangeRow } | 'fetch' | null {
    let best: Cursor | null = null;
    for (const c of this.cursors) {
      if (c.head >= c.rows.length) {
        if (!c.exhausted) return 'fetch';
        continue;
      }
      if (best === null || compareChangeKey(c.rows[c.head]!, best.rows[best.head]!) < 0) best = c;
    }
    if (best === null) return null;
    const row = best.rows[best.head]!;
    best.rows[best.head] = undefined as unknown as ChangeRow; // let it go
    best.head++;
    return { read: best.read, row };
  }
}

// ─── commit times ──────────────────────────────────────────────────────────────────────────────────────────

const END_TIME = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,7}))?\s*(Z|[+-]\d{2}:\d{2})$/;

/** tran_end_time as the reader gives it (ISO 8601 with its offset) in UTC microseconds since the epoch. */
export function endTimeMicros(text: string): bigint {
  const m = END_TIME.exec(text.trim());
  if (!m) throw new DecodeError(`lsn_time_mapping end time ${JSON.stringify(text.slice(0, 60))} is not ISO 8601 with an offset (YYYY-MM-DDThh:mm:ss[.fff]±hh:mm)`);
  const [, y, mo, d, h, mi, s, fraction = '', zone] = m;
  const millis = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s));
  // Seven digits are 100 ns: rounded half to even to the microsecond.
  const digits = fraction.padEnd(7, '0');
  let micros = BigInt(digits.slice(0, 6));
  const seventh = Number(digits[6]);
  if (seventh > 5 || (seventh === 5 && micros % 2n === 1n)) micros += 1n;
  let offsetMinutes = 0;
  if (zone !== 'Z') {
    const sign = zone!.startsWith('-') ? -1 : 1;
    offsetMinutes = sign * (Number(zone!.slice(1, 3)) * 60 + Number(zone!.slice(4, 6)));
  }
  return (BigInt(millis) - BigInt(offsetMinutes) * 60_000n) * 1000n + micros;
}

// ─── transactions ──────────────────────────────────────────────────────────────────────────────────────────

export interface ChangeStreamOptions {
  readonly site: string;
  readonly maxPartBytes: number;
  /** The causal context where the stream resumes. */
  readonly seen: SeenSites;
  /** Everything at or below this LSN was read before (the checkpoint the stream resumes after). */
  readonly start: Lsn;
  /** A one-line warning about a table (once per capture instance): a keyless table's large-object columns. */
  readonly warn?: (line: string) => void;
}

/** text, ntext, image: NULL in every delete and update before-image. */
const LEGACY_LOB_TYPES = new Set(['text', 'ntext', 'image']);
/** Types that are large objects with max_length -1 (the max types, xml, the spatial CLR types): NULL in a before-image unless changed. */
const MAX_LOB_TYPES = new Set(['varchar', 'nvarchar', 'varbinary', 'xml', 'geography', 'geometry']);

function isMaxLob(column: { readonly type: string; readonly maxLength: number }): boolean {
  return column.maxLength === -1 && MAX_LOB_TYPES.has(column.type.toLowerCase());
}

interface Described {
  readonly relation: RelationInfo;
  /** Key column indexes; every column for a table without a key. */
  readonly keys: readonly number[];
  readonly identity: boolean;
  /** For apply_progress: where its source and commit time are. */
  readonly progress: { readonly source: number; readonly commitTime: number } | null;
  /** A table without a key: the columns whose old value a delete (1) or a before-image (3) does not carry. */
  readonly unknownOld: { readonly deleted: readonly number[]; readonly before: readonly number[] } | null;
}

interface OpenTransaction {
  readonly position: Lsn;
  readonly commitTimeMicros: bigint;
  relayed: boolean;
  relayedSeen: Map<string, bigint> | null;
  changes: Change[];
  bytes: number;
  partsSent: number;
  /** A 3 waiting for its 4. */
  before: { readonly read: InstanceRead; readonly row: ChangeRow } | null;
  /** A delete (1), and maybe the insert (2) after it, of one operation of a table with a key: perhaps a key update. */
  held: { readonly read: InstanceRead; readonly rows: ChangeRow[] } | null;
  /** The operation (instance and command id) that changed several rows: its deletes and inserts go out as they are. */
  manyRows: { readonly read: InstanceRead; readonly commandId: number } | null;
}

export class ChangeStream {
  private open: OpenTransaction | null = null;
  private seenSites: SeenSites;
  private read: Lsn;
  private readonly described = new Map<string, Described>();
  /** Commit time of the last transaction read (for lag). */
  lastCommitMicros: bigint | null = null;

  constructor(
    private readonly options: ChangeStreamOptions,
    private readonly handler: SourceHandler,
  ) {
    this.seenSites = options.seen;
    this.read = options.start;
  }

  get seen(): SeenSites {
    return this.seenSites;
  }

  /** Everything up to here was handed on whole (a transaction's commit LSN or an interval's end). */
  get position(): Lsn {
    return this.read;
  }

  get inTransaction(): boolean {
    return this.open !== null;
  }

  /**
   * One row, in merged order. `endTime` is its transaction's tran_end_time (undefined: no lsn_time_mapping row);
   * only read for the first row of a transaction.
   */
  accept(read: InstanceRead, row: ChangeRow, endTime: string | undefined): void {
    if (this.open && this.open.position !== row.startLsn) this.finish();
    let tx = this.open;
    if (!tx) {
      if (compareLsn(row.startLsn, this.read) <= 0) {
        throw new DecodeError(`change row of capture instance ${read.instance.name} at ${describeLsn(row.startLsn)} comes after ${describeLsn(this.read)} was read whole: the change tables are not in commit order`);
      }
      if (endTime === undefined) {
        throw new DecodeError(`transaction ${describeLsn(row.startLsn)} of site ${this.options.site} has no row in cdc.lsn_time_mapping (was it cleaned up while being read?): its commit time is unknown`);
      }
      tx = this.open = {
        position: row.startLsn,
        commitTimeMicros: endTimeMicros(endTime),
        relayed: false,
        relayedSeen: null,
        changes: [],
        bytes: 0,
        partsSent: 0,
        before: null,
        held: null,
        manyRows: null,
      };
    }
    const where = (): string => `capture instance ${read.instance.name} at ${describeLsn(row.startLsn)} (seqval ${describeLsn(row.seqval)})`;
    if (tx.before) {
      const before = tx.before;
      tx.before = null;
      if (row.operation !== 4 || before.read !== read || before.row.seqval !== row.seqval) {
        throw new DecodeError(`update before-image (operation 3) of capture instance ${before.read.instance.name} at ${describeLsn(before.row.startLsn)} (seqval ${describeLsn(before.row.seqval)}) is not followed by its after-image (operation 4)`);
      }
      this.change(tx, read, before.row, row);
      return;
    }
    if (tx.held) {
      const held = tx.held;
      const sameOperation = held.read === read && held.rows[0]!.commandId === row.commandId;
      if (sameOperation && held.rows.length === 1 && row.operation === 2) {
        held.rows.push(row);
        return;
      }
      if (sameOperation) tx.manyRows = { read, commandId: row.commandId };
      this.release(tx, !sameOperation);
    }
    if (isMarkersTable(read.instance)) {
      this.marker(tx, read, row);
      return;
    }
    switch (row.operation) {
      case 3:
        tx.before = { read, row };
        return;
      case 4:
        throw new DecodeError(`update after-image (operation 4) of ${where()} without its before-image (operation 3)`);
      case 1:
        if (!tx.relayed && this.describe(read).identity && !(tx.manyRows?.read === read && tx.manyRows.commandId === row.commandId)) {
          tx.held = { read, rows: [row] };
          return;
        }
        this.change(tx, read, null, row);
        return;
      case 2:
        this.change(tx, read, null, row);
        return;
      default:
        throw new DecodeError(`change row of ${where()} has operation ${String((row as ChangeRow).operation)}, not 1 to 4`);
    }
  }

  /** The interval (…, toLsn] was read to its end: the open transaction is whole, and so is everything up to toLsn. */
  endInterval(toLsn: Lsn): void {
    if (this.open) this.finish();
    if (compareLsn(toLsn, this.read) > 0) this.read = toLsn;
    this.handler.idle(this.read, this.seenSites);
  }

  /** Nothing new: says so, so that a quiet site's checkpoint is confirmed. */
  idle(): void {
    if (this.open) return;
    this.handler.idle(this.read, this.seenSites);
  }

  private describe(read: InstanceRead): Described {
    const instance = read.instance;
    const cacheKey = `${instance.name}\u0000${instance.createDate}`;
    const known = this.described.get(cacheKey);
    if (known) return known;
    const columns = instance.columns;
    let progress: Described['progress'] = null;
    if (read.progress) {
      const source = columns.findIndex((c) => c.name.toLowerCase() === 'source');
      const commitTime = columns.findIndex((c) => c.name.toLowerCase() === 'commit_time_micros');
      if (source < 0 || commitTime < 0) throw new DecodeError(`capture instance ${instance.name} of ${tableName(instance)} does not capture the columns source and commit_time_micros`);
      progress = { source, commitTime };
    }
    const hasKey = columns.some((c) => c.keyOrdinal > 0);
    const infos = columns.map((c): ColumnInfo => ({ name: c.name, kind: kindOf(c), native: nativeOf(c), key: hasKey ? c.keyOrdinal > 0 : true }));
    let unknownOld: Described['unknownOld'] = null;
    if (!hasKey && !read.progress) {
      const legacy = columns.flatMap((c, i) => (LEGACY_LOB_TYPES.has(c.type.toLowerCase()) ? [i] : []));
      const large = columns.flatMap((c, i) => (LEGACY_LOB_TYPES.has(c.type.toLowerCase()) || isMaxLob(c) ? [i] : []));
      if (large.length > 0) {
        unknownOld = { deleted: legacy, before: large };
        this.options.warn?.(
          `table ${tableName(instance)} of site ${this.options.site} has no primary key and large-object columns (${large.map((i) => columns[i]!.name).join(', ')}) whose old values SQL Server's CDC does not record in deletes and updates: the other sites find those rows by the other columns only, and of several rows equal in them may change another one; give the table a primary key`,
        );
      }
    }
    const described: Described = {
      relation: { schema: instance.schema, table: instance.table, replicaIdentity: hasKey ? 'd' : 'f', columns: infos },
      keys: columns.flatMap((c, i) => (!hasKey || c.keyOrdinal > 0 ? [i] : [])),
      identity: hasKey,
      progress,
      unknownOld,
    };
    this.described.set(cacheKey, described);
    return described;
  }

  private image(read: InstanceRead, row: ChangeRow): RowImage {
    const columns = read.instance.columns;
    return { values: columns.map((c, i) => canonicalText(c, row.values[i] ?? null)), unchanged: [] };
  }

  /**
   * A keyless table's old image: its large-object columns whose value the row does not carry are `unchanged`
   * (text, ntext, image in deletes and before-images; the max types in a before-image, when NULL there).
   */
  private oldImage(table: Described, read: InstanceRead, row: ChangeRow): RowImage {
    const image = this.image(read, row);
    const unknown = table.unknownOld;
    if (!unknown) return image;
    const candidates = row.operation === 3 ? unknown.before : unknown.deleted;
    const unchanged = candidates.filter((i) => image.values[i] === null);
    return unchanged.length === 0 ? image : { values: image.values, unchanged };
  }

  /**
   * One change: `before` the 3 of an update (its 4 is `row`), or with `keyUpdate` the delete (1) of a key update
   * (its insert, 2, is `row`); else null.
   */
  private change(tx: OpenTransaction, read: InstanceRead, before: ChangeRow | null, row: ChangeRow, keyUpdate?: 'key update'): void {
    const table = this.describe(read);
    if (table.progress) {
      this.relayedWrite(tx, read, row, table.progress);
      return;
    }
    if (tx.relayed) return;
    const relation = table.relation;
    const keyOnly = (image: RowImage): RowImage => ({ values: image.values.map((v, i) => (table.keys.includes(i) ? v : null)), unchanged: [] });
    let change: Change;
    if (before) {
      const newRow = this.image(read, row);
      const oldRow = this.oldImage(table, read, before);
      const keyChanged = keyUpdate !== undefined || table.keys.some((i) => oldRow.values[i] !== newRow.values[i]);
      change = { op: 'update', relation, oldRow: table.identity ? (keyChanged ? keyOnly(oldRow) : null) : oldRow, newRow };
    } else if (row.operation === 2) {
      change = { op: 'insert', relation, newRow: this.image(read, row) };
    } else {
      const oldRow = this.oldImage(table, read, row);
      change = { op: 'delete', relation, oldRow: table.identity ? keyOnly(oldRow) : oldRow };
    }
    tx.changes.push(change);
    tx.bytes += changeBytes(change);
    if (tx.bytes >= this.options.maxPartBytes) {
      this.handler.transaction(this.snapshot(tx), { index: tx.partsSent, last: false }, null);
      tx.partsSent++;
      tx.changes = [];
      tx.bytes = 0;
    }
  }

  /**
   * A row of sitesync.snapshot_markers: an insert is a snapshot marker, handed on as the message a PostgreSQL
   * site's marker is; any other row of that table (the control's deletes of older markers) is no change at all.
   * In a relayed transaction (which the sink wrote, and which never carries one) it is dropped with the rest.
   */
  private marker(tx: OpenTransaction, read: InstanceRead, row: ChangeRow): void {
    if (tx.relayed || row.operation !== 2) return;
    const column = read.instance.columns.findIndex((c) => c.name.toLowerCase() === 'content');
    if (column < 0) throw new DecodeError(`capture instance ${read.instance.name} of ${tableName(read.instance)} does not capture the column content, which holds each snapshot marker`);
    const content = row.values[column];
    if (typeof content !== 'string') {
      throw new DecodeError(`snapshot marker at ${describeLsn(row.startLsn)} (capture instance ${read.instance.name}) has no text in its column content`);
    }
    const change: Change = { op: 'message', prefix: SNAPSHOT_MARKER_PREFIX, content: Buffer.from(content, 'utf8') };
    tx.changes.push(change);
    tx.bytes += changeBytes(change);
  }

  /**
   * Hands on the held rows of one operation: a delete and the insert after it, alone in their operation
   * (`whole`: the next row belongs to another), are one update of the row's key, as SQL Server logs a key
   * update (a delete and an insert); anything else goes out as the rows it is.
   */
  private release(tx: OpenTransaction, whole: boolean): void {
    const held = tx.held!;
    tx.held = null;
    const [deleted, inserted] = held.rows;
    if (whole && inserted) {
      this.change(tx, held.read, deleted!, inserted, 'key update');
      return;
    }
    for (const r of held.rows) this.change(tx, held.read, null, r);
  }

  private relayedWrite(tx: OpenTransaction, read: InstanceRead, row: ChangeRow, columns: { source: number; commitTime: number }): void {
    if (tx.partsSent > 0) {
      throw new DecodeError(
        `transaction ${describeLsn(tx.position)} of site ${this.options.site} writes ${tableName(read.instance)} after changes of it already went out: the SQL Server sink must write it first in every transaction it applies; stopping rather than let the transaction loop back`,
      );
    }
    tx.relayed = true;
    tx.changes = [];
    tx.bytes = 0;
    tx.held = null;
    if (row.operation !== 2 && row.operation !== 4) return;
    const source = row.values[columns.source];
    const micros = row.values[columns.commitTime];
    if (typeof source !== 'string' || (typeof micros !== 'string' && typeof micros !== 'number')) return;
    let time: bigint;
    try {
      time = BigInt(typeof micros === 'string' ? micros.trim() : micros);
    } catch {
      return;
    }
    tx.relayedSeen ??= new Map();
    const known = tx.relayedSeen.get(source);
    if (known === undefined || known < time) tx.relayedSeen.set(source, time);
  }

  private finish(): void {
    const tx = this.open!;
    if (tx.held) this.release(tx, true);
    if (tx.before) {
      throw new DecodeError(`update before-image (operation 3) of capture instance ${tx.before.read.instance.name} at ${describeLsn(tx.position)} (seqval ${describeLsn(tx.before.row.seqval)}) is not followed by its after-image (operation 4)`);
    }
    this.open = null;
    this.read = tx.position;
    this.lastCommitMicros = tx.commitTimeMicros;
    if (tx.relayed) {
      this.noteRelayed(tx);
      this.handler.skipped(tx.position, tx.position, 'relayed', this.seenSites);
    } else if (tx.changes.length === 0 && tx.partsSent === 0) {
      this.handler.skipped(tx.position, tx.position, 'empty', this.seenSites);
    } else {
      const part = tx.partsSent > 0 ? { index: tx.partsSent, last: true } : null;
      this.handler.transaction(this.snapshot(tx), part, tx.position);
    }
  }

  private noteRelayed(tx: OpenTransaction): void {
    if (!tx.relayedSeen) return;
    let next: Record<string, bigint> | null = null;
    for (const [site, micros] of tx.relayedSeen) {
      const before = Object.hasOwn(this.seenSites, site) ? this.seenSites[site] : undefined;
      if (before !== undefined && before >= micros) continue;
      next ??= { ...this.seenSites };
      next[site] = micros;
    }
    if (next) this.seenSites = next; // replaced, never mutated: every transaction keeps its own context
  }

  private snapshot(tx: OpenTransaction): Transaction {
    return {
      id: transactionId(this.options.site, tx.position),
      site: this.options.site,
      position: tx.position,
      commitTimeMicros: tx.commitTimeMicros,
      sourceTxId: describeLsn(tx.position),
      seen: this.seenSites,
      changes: tx.changes,
    };
  }
}
