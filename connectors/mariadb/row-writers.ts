/**
 * Who last wrote each row at a MariaDB site, for conflict detection (mariadb-sink.ts). MariaDB keeps no
 * per-row commit origin or commit time (PostgreSQL's track_commit_timestamp and replication origins), so
 * sitesync keeps them itself, in the bookkeeping database's `row_writers` (bookkeeping.ts): per row key
 * (table, SHA-256 of the key), the site and commit time of the last write sitesync knows of, as they travel
 * in change events.
 *
 * Two writers keep it:
 * - the sink, for every row change it applies from site S in transaction T: (S, T's commit time), in the
 *   same MariaDB transaction, unconditionally (it holds the row's lock: its write is the row's latest);
 * - this site's capture, for every row change of a local transaction it hands on: (this site, the commit
 *   time it publishes: the binlog's whole seconds × 10^6), on its own connection, in batches, after reading
 *   them (LocalWriteRecorder). Capture is behind the sink's writes, and reads its log again from its
 *   checkpoint after a restart, so its record of a write must not replace a later one: it replaces an entry
 *   written by capture at an earlier binlog position, or an entry the sink applied before the local write
 *   (the write's causal context `seen` covers it, which is how every site tells "had seen" apart).
 *
 * RowWriterClock is the one object per site that the site's capture and its sink share in one process
 * (connectors/mariadb/index.ts): capture moves `recordedThrough`, the binlog coordinates up to which every
 * local write is recorded; the sink, before it reads an entry, waits until that has passed the binlog's
 * end as it was once the sink held the row's lock — then no local write of that row can be missing from the
 * entry. A site that does not capture has no source, and its sink decides from the entries alone.
 *
 * Key identity: the row's key columns (the target's primary key; every column for a table without one)
 * as canonical JSON `{"column":"canonical text",…}`, names in code-unit order, each value the canonical
 * text of its kind (docs/value-kinds.md) with the one normalization two spellings of one value need in a
 * key: a decimal without trailing fraction zeros (`1.50` and `1.5` are one key).
 */
import { createHash } from 'node:crypto';
import { SitesyncError } from '../../src/errors.ts';
import type { Change, Position, RelationInfo, RowImage, SeenSites, Transaction } from '../../src/events/transaction.ts';
import type { ValueKind } from '../../src/events/value-kind.ts';
import { compareCoordinates, formatCheckpoint, type BinlogCoordinates } from './mariadb-positions.ts';

/** How long the sink waits, by default, for this site's capture to record the local writes before a conflict check. */
export const CAPTURE_WAIT_MS = 30_000;

export interface RowKey {
  /** `database.table` at this site. */
  readonly table: string;
  /** `{"column":"text",…}`: the key's columns by name, in code-unit order. */
  readonly json: string;
  /** SHA-256 of `json`. */
  readonly hash: Buffer;
}

export interface KeyColumn {
  readonly name: string;
  readonly kind: ValueKind;
  readonly text: string | null;
}

/** A key's canonical text: the kind's canonical text, a decimal without trailing fraction zeros. */
export function keyText(kind: ValueKind, text: string): string {
  if (kind.kind !== 'decimal' || !text.includes('.')) return text;
  const trimmed = text.replace(/0+$/, '').replace(/\.$/, '');
  return trimmed === '-0' ? '0' : trimmed;
}

export function rowKey(table: string, columns: readonly KeyColumn[]): RowKey {
  const sorted = [...columns].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const json = `{${sorted.map((c) => `${JSON.stringify(c.name)}:${c.text === null ? 'null' : JSON.stringify(keyText(c.kind, c.text))}`).join(',')}}`;
  return { table, json, hash: createHash('sha256').update(json).digest() };
}

/** One string per key, for maps. */
export function keyId(key: RowKey): string {
  return `${key.table}\u0000${key.hash.toString('hex')}`;
}

/**
 * The key of a row image from a relation whose `key` flags name the key columns (as this site's capture
 * describes its tables: the primary key, every column without one); null when a key column is unchanged
 * (not carried).
 */
export function capturedKey(relation: RelationInfo, row: RowImage): RowKey | null {
  const columns: KeyColumn[] = [];
  for (let i = 0; i < relation.columns.length; i++) {
    const column = relation.columns[i]!;
    if (!column.key) continue;
    if (row.unchanged.includes(i)) return null;
    columns.push({ name: column.name, kind: column.kind, text: row.values[i] ?? null });
  }
  return columns.length > 0 ? rowKey(`${relation.schema}.${relation.table}`, columns) : null;
}

/** The keys a captured change writes: an insert's new key, an update's new key (and old key when it moved), a delete's old key. */
export function capturedWrites(change: Change): RowKey[] {
  switch (change.op) {
    case 'insert':
    case 'read': {
      const key = capturedKey(change.relation, change.newRow);
      return key ? [key] : [];
    }
    case 'update': {
      const keys: RowKey[] = [];
      const after = capturedKey(change.relation, change.newRow);
      if (after) keys.push(after);
      const before = change.oldRow ? capturedKey(change.relation, change.oldRow) : null;
      if (before && (!after || !before.hash.equals(after.hash))) keys.push(before);
      return keys;
    }
    case 'delete': {
      const key = capturedKey(change.relation, change.oldRow);
      return key ? [key] : [];
    }
    case 'truncate':
    case 'message':
      return [];
  }
}

/** The causal context as row_writers keeps it: `{"site":"micros",…}` (micros as text: exact). */
export function seenJson(seen: SeenSites): string {
  return JSON.stringify(Object.fromEntries(Object.entries(seen).map(([site, micros]) => [site, micros.toString()])));
}

/** A local write as capture records it. */
export interface LocalWrite {
  readonly key: RowKey;
  readonly commitTimeMicros: bigint;
  /** The local transaction's position (mariadb-positions.ts): binlog order among this site's writes. */
  readonly position: Position;
  /** seenJson of the transaction's causal context. */
  readonly seen: string;
}

/** Every local write of a transaction capture hands on. */
export function localWrites(tx: Transaction, seen: string = seenJson(tx.seen)): LocalWrite[] {
  const writes: LocalWrite[] = [];
  for (const change of tx.changes) {
    for (const key of capturedWrites(change)) writes.push({ key, commitTimeMicros: tx.commitTimeMicros, position: tx.position, seen });
  }
  return writes;
}

/** What a source attached to a clock tells it. */
export interface ClockAttachment {
  /** Every local write up to `at` is recorded (only forward). */
  advance(at: BinlogCoordinates): void;
  /** The source stopped reading (for now): whoever waits is told at once, rather than when its wait runs out. */
  interrupt(): void;
  /** The source is gone. */
  detach(): void;
}

/**
 * Shared by one site's capture and sink in one process: how far capture has recorded the local writes, and
 * the sink's wait for it. Without a source attached, there is nothing to wait for.
 */
export class RowWriterClock {
  private capture: { readonly binlogEnd: () => Promise<BinlogCoordinates> } | null = null;
  private through: BinlogCoordinates | null = null;
  private readonly waiters = new Set<{ readonly end: BinlogCoordinates; readonly resolve: () => void; readonly reject: (error: unknown) => void }>();

  constructor(readonly site: string) {}

  /** A source of this site starts (replacing any before it); `binlogEnd` reads the server's binlog end. */
  attach(binlogEnd: () => Promise<BinlogCoordinates>): ClockAttachment {
    const capture = { binlogEnd };
    this.capture = capture;
    this.through = null;
    return {
      advance: (at) => {
        if (this.capture !== capture) return;
        if (this.through !== null && compareCoordinates(at, this.through) <= 0) return;
        this.through = at;
        for (const waiter of this.waiters) {
          if (compareCoordinates(at, waiter.end) >= 0) waiter.resolve();
        }
      },
      interrupt: () => {
        if (this.capture !== capture) return;
        for (const waiter of this.waiters) waiter.reject(this.behind('its capture stopped reading', waiter.end));
      },
      detach: () => {
        if (this.capture !== capture) return;
        this.capture = null;
        this.through = null;
        for (const waiter of this.waiters) waiter.reject(this.behind('its capture stopped', waiter.end));
      },
    };
  }

  /** Whether a source of this site runs here (the sink then waits for it). */
  get capturing(): boolean {
    return this.capture !== null;
  }

  /** Binlog coordinates up to which every local write is recorded; null: not known yet (or no source). */
  get recordedThrough(): BinlogCoordinates | null {
    return this.through;
  }

  /**
   * With a source attached: reads the binlog's end (after the caller took its row locks), and waits until
   * capture has recorded every local write up to it. Past `timeoutMs`, a transient error.
   */
  async waitForLocalWrites(timeoutMs: number = CAPTURE_WAIT_MS): Promise<void> {
    const capture = this.capture;
    if (!capture) return;
    const end = await capture.binlogEnd();
    if (this.capture !== capture) throw this.behind('its capture stopped', end);
    await this.waitThrough(end, timeoutMs);
  }

  /**
   * With a source attached: waits until capture has recorded every local write it read before `end`
   * (a snapshot's chunk, whose marker the stream has just handed on, takes its writers then). Past
   * `timeoutMs`, a transient error.
   */
  async waitThrough(end: BinlogCoordinates, timeoutMs: number = CAPTURE_WAIT_MS): Promise<void> {
    if (!this.capture) return;
    if (this.through !== null && compareCoordinates(this.through, end) >= 0) return;
    await new Promise<void>((resolve, reject) => {
      const waiter = {
        end,
        resolve: () => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve();
        },
        reject: (error: unknown) => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          reject(error);
        },
      };
      const timer = setTimeout(() => waiter.reject(this.behind(`it has not recorded them within ${Math.round(timeoutMs / 1000)} s`, end)), timeoutMs);
      this.waiters.add(waiter);
    });
  }

  private behind(why: string, end: BinlogCoordinates): SitesyncError {
    const through = this.through === null ? 'none yet' : formatCheckpoint(this.through);
    return new SitesyncError(
      'SITESYNC_ERR_DATABASE_UNREACHABLE',
      `capture of site ${this.site} is behind; conflict detection waits for it (local writes recorded through ${through}, the binary log ends at ${formatCheckpoint(end)}: ${why}); sitesync retries`,
    );
  }
}

/** Most local writes in one statement. */
export const RECORD_BATCH = 500;

/**
 * Capture's side: the local writes read, recorded in batches by `write` (in order, one batch at a time), and
 * marks — "everything read up to these coordinates" — that become `through` once every write read before
 * them is recorded. A failed batch fails the recorder: every waiter is told, and the stream that fed it
 * starts again from its checkpoint (which `whenThrough` keeps behind what is recorded).
 */
export class LocalWriteRecorder {
  private pending: LocalWrite[] = [];
  private marks: { readonly seq: number; readonly at: BinlogCoordinates }[] = [];
  private marksHead = 0;
  private enqueued = 0;
  private recorded = 0;
  private writing = false;
  private failure: unknown = null;
  private current: BinlogCoordinates;
  private readonly waiters = new Set<{ readonly at: BinlogCoordinates; readonly resolve: () => void; readonly reject: (error: unknown) => void }>();

  constructor(
    private readonly write: (batch: readonly LocalWrite[]) => Promise<void>,
    start: BinlogCoordinates,
    private readonly hooks: { readonly through?: (at: BinlogCoordinates) => void; readonly recorded?: () => void } = {},
  ) {
    this.current = start;
  }

  /** Coordinates up to which every local write read is recorded. */
  get through(): BinlogCoordinates {
    return this.current;
  }

  /** Local writes read and not recorded yet. */
  get backlog(): number {
    return this.enqueued - this.recorded;
  }

  add(writes: readonly LocalWrite[]): void {
    if (writes.length === 0 || this.failure !== null) return;
    for (const w of writes) this.pending.push(w);
    this.enqueued += writes.length;
    this.kick();
  }

  /** Everything read so far ends at `at`. */
  mark(at: BinlogCoordinates): void {
    if (this.failure !== null) return;
    if (this.recorded === this.enqueued && this.marksHead === this.marks.length) {
      this.moveTo(at);
      return;
    }
    this.marks.push({ seq: this.enqueued, at });
  }

  /** Resolves once every local write read before `at` is recorded; rejects if recording fails first. */
  whenThrough(at: BinlogCoordinates): Promise<void> {
    if (compareCoordinates(this.current, at) >= 0) return Promise.resolve();
    if (this.failure !== null) return Promise.reject(this.failure);
    return new Promise<void>((resolve, reject) => this.waiters.add({ at, resolve, reject }));
  }

  /** Stops: nothing more is written, every waiter is told `error`. */
  fail(error: unknown): void {
    if (this.failure !== null) return;
    this.failure = error;
    this.pending = [];
    for (const waiter of this.waiters) waiter.reject(error);
    this.waiters.clear();
  }

  private kick(): void {
    if (this.writing || this.failure !== null || this.pending.length === 0) return;
    const batch = this.pending.length <= RECORD_BATCH ? this.pending : this.pending.slice(0, RECORD_BATCH);
    this.pending = batch === this.pending ? [] : this.pending.slice(RECORD_BATCH);
    this.writing = true;
    this.write(batch).then(
      () => {
        this.writing = false;
        if (this.failure !== null) return;
        this.recorded += batch.length;
        this.passMarks();
        this.kick();
        this.hooks.recorded?.();
      },
      (error: unknown) => {
        this.writing = false;
        this.fail(error);
      },
    );
  }

  private passMarks(): void {
    let last: BinlogCoordinates | null = null;
    while (this.marksHead < this.marks.length && this.marks[this.marksHead]!.seq <= this.recorded) last = this.marks[this.marksHead++]!.at;
    if (this.marksHead === this.marks.length) {
      this.marks = [];
      this.marksHead = 0;
    } else if (this.marksHead > 1024) {
      this.marks = this.marks.slice(this.marksHead);
      this.marksHead = 0;
    }
    if (last !== null) this.moveTo(last);
  }

  private moveTo(at: BinlogCoordinates): void {
    if (compareCoordinates(at, this.current) <= 0) return;
    this.current = at;
    for (const waiter of this.waiters) {
      if (compareCoordinates(at, waiter.at) >= 0) {
        this.waiters.delete(waiter);
        waiter.resolve();
      }
    }
    this.hooks.through?.(at);
  }
}
