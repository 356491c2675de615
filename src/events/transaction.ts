/**
 * The change-event model: what one site tells the others. Pure data, no I/O.
 *
 * Glossary
 * - site: one named database (paris, london…) with its applications. One `sitesync run` per site.
 * - position: where a transaction committed in its source's log, as an opaque, ordered string owned by
 *   the source kind (see position.ts). For PostgreSQL it is the LSN of the end of the commit record.
 * - transaction: one committed source transaction with its changes in order; the unit of apply.
 * - slot: the PostgreSQL replication slot that keeps a site's WAL until sitesync confirms it.
 * - origin: the PostgreSQL replication origin that records, atomically with the applied data, how far one
 *   source site has been applied at one target site.
 * - relayed write: a transaction applied at a site by sitesync; capture drops it so that it never loops.
 * - message: what travels on the bus: one or more whole transactions, or one part of a large one.
 */

import { rowImageBytes } from './encoded-row.ts';
import type { NativeType, ValueKind } from './value-kind.ts';

/**
 * Where a source is in its log: upper-case hex of a width fixed per source kind, so that two positions of
 * one source order as strings (position.ts). Each connector owns what its digits mean and how they display.
 */
export type Position = string;

/** Which kind of database a transaction came from (`postgres`, `mariadb`…): whose positions and native types these are. */
export type SourceKind = string;

/**
 * A column as the source describes it: its logical kind, which every sink and consumer reads its values by,
 * and its native type, which a sink of the source's own kind may use to stay byte-for-byte exact.
 */
export interface ColumnInfo {
  readonly name: string;
  readonly kind: ValueKind;
  readonly native: NativeType;
  /** Part of the replica identity (the key that finds the row at the target). */
  readonly key: boolean;
}

/** A table as the source describes it, referenced by index from the changes of a message. */
export interface RelationInfo {
  readonly schema: string;
  readonly table: string;
  /** PostgreSQL replica identity: d(efault, primary key), f(ull), i(ndex), n(othing). */
  readonly replicaIdentity: 'd' | 'f' | 'i' | 'n';
  readonly columns: readonly ColumnInfo[];
}

/**
 * One row image. `values[i]` is column i in the canonical text form of its kind (docs/value-kinds.md), `null`
 * for SQL NULL. Columns listed in
 * `unchanged` (unchanged TOASTed values that the source did not send) carry `null` in `values` and must
 * be left as they are by the sink: they are not NULL.
 */
export interface RowImage {
  readonly values: readonly (string | null)[];
  readonly unchanged: readonly number[];
}

export type Change =
  | { readonly op: 'insert'; readonly relation: RelationInfo; readonly newRow: RowImage }
  | {
      readonly op: 'update';
      readonly relation: RelationInfo;
      /** Present when the key changed (key columns only) or under REPLICA IDENTITY FULL (all columns). */
      readonly oldRow: RowImage | null;
      readonly newRow: RowImage;
    }
  | { readonly op: 'delete'; readonly relation: RelationInfo; readonly oldRow: RowImage }
  /**
   * A row as the source held it at (or after) this transaction's position, read by a snapshot rather than
   * seen in the log: a sink writes it whatever it holds (inserted, or the row of that key overwritten),
   * and changes that follow in the stream are applied on top of it. Only in snapshot transactions.
   */
  | {
      readonly op: 'read';
      readonly relation: RelationInfo;
      readonly newRow: RowImage;
      /**
       * Who last wrote the row at the source, when the source knows (a snapshot sent to chosen sites carries
       * it, so that the target decides later conflicts on this row as the source did). Absent or null: unknown.
       */
      readonly writer?: RowWriter | null;
    }
  | {
      readonly op: 'truncate';
      readonly relations: readonly RelationInfo[];
      readonly cascade: boolean;
      readonly restartIdentity: boolean;
    }
  | { readonly op: 'message'; readonly prefix: string; readonly content: Buffer };

export type ChangeOp = Change['op'];

/** One committed source transaction. */
export interface Transaction {
  /** Globally unique and deterministic: `${site}:${position}`. */
  readonly id: string;
  readonly site: string;
  readonly position: Position;
  /** Commit time in microseconds since the Unix epoch (exact, unlike a Date). */
  readonly commitTimeMicros: bigint;
  /** Source transaction id, for people reading logs; never used for ordering. */
  readonly sourceTxId: string;
  /**
   * Causal context: for each other site, the commit time of the newest of that site's transactions that
   * had been applied at this transaction's site before it committed. A row a target last wrote in a
   * transaction not covered by this was written concurrently: a conflict.
   */
  readonly seen: SeenSites;
  readonly changes: readonly Change[];
  /** Set on a transaction of rows read by a snapshot (snapshot-chunks.ts) instead of changes from the log. */
  readonly snapshot?: SnapshotTag | null;
}

/** Which snapshot a transaction of `read` rows belongs to, and which sites write them. */
export interface SnapshotTag {
  /** The snapshot's id (`sitesync snapshot` prints it). */
  readonly id: string;
  /** `schema.table` read. */
  readonly table: string;
  /** 0-based number of the chunk. */
  readonly chunk: number;
  /** The table was read to its end (or every requested key): the snapshot is complete with this chunk. */
  readonly last: boolean;
  /** The sites that write the rows; every other site only records the position. null: every site. */
  readonly targets: readonly string[] | null;
}

/** The site whose transaction last wrote a row, and that transaction's commit time (microseconds since the epoch). */
export interface RowWriter {
  readonly site: string;
  readonly commitTimeMicros: bigint;
}

/** Commit times (microseconds since the epoch) by site name. */
export type SeenSites = Readonly<Record<string, bigint>>;

/** One part of a transaction too large for one message; parts share the transaction's id. */
export interface TransactionPart {
  readonly index: number;
  readonly last: boolean;
}

/**
 * What travels on the bus. `previous` is the position of the last transaction the source published
 * before this message (or, after a restart, the position everything before which was already
 * confirmed): no transaction of this source lies strictly between `previous` and the first one here.
 * That is what lets an applier tell a duplicate from a gap.
 */
export interface ChangeMessage {
  readonly site: string;
  readonly sourceKind: SourceKind;
  readonly previous: Position | null;
  readonly transactions: readonly Transaction[];
  /** Set when `transactions` holds exactly one transaction that is split across several messages. */
  readonly part: TransactionPart | null;
}

/** What a site name may be (configuration, wire, causal context): lower case, digits, _, at most 40. */
export const SITE_NAME_PATTERN = '^[a-z][a-z0-9_]{0,39}$';

/** What a source kind's name may be on the wire. */
export const SOURCE_KIND_PATTERN = '^[a-z][a-z0-9]{0,19}$';

/** What a snapshot id may be (snapshot-request.ts makes them). */
export const SNAPSHOT_ID_PATTERN = '^[a-z0-9][a-z0-9_-]{0,63}$';

/** What any position may be on the wire: upper-case hex, at most 64 digits (each kind checks its own width). */
export const POSITION_PATTERN = '^[0-9A-F]{1,64}$';

export function transactionId(site: string, position: Position): string {
  return `${site}:${position}`;
}

/** Per-change overhead in a message beyond its rows (op, relation index, array headers), near enough. */
const CHANGE_OVERHEAD_BYTES = 16;

/**
 * Bytes a change takes in a message, near enough: what a transaction's parts (the source's memory bound)
 * and a message's size limit both count.
 */
export function changeBytes(change: Change): number {
  switch (change.op) {
    case 'insert':
    case 'read':
      return CHANGE_OVERHEAD_BYTES + rowImageBytes(change.newRow);
    case 'update':
      return CHANGE_OVERHEAD_BYTES + rowImageBytes(change.newRow) + (change.oldRow ? rowImageBytes(change.oldRow) : 0);
    case 'delete':
      return CHANGE_OVERHEAD_BYTES + rowImageBytes(change.oldRow);
    case 'truncate':
      return CHANGE_OVERHEAD_BYTES * change.relations.length;
    case 'message':
      return CHANGE_OVERHEAD_BYTES + change.prefix.length + change.content.length;
  }
}

/** Count rows by operation, for message headers and metrics. */
export function countOperations(transactions: readonly Transaction[]): Record<ChangeOp, number> {
  const counts: Record<ChangeOp, number> = { insert: 0, update: 0, delete: 0, truncate: 0, message: 0, read: 0 };
  for (const tx of transactions) for (const change of tx.changes) counts[change.op]++;
  return counts;
}

/** Every `schema.table` a set of transactions touches, in first-seen order. */
export function tablesTouched(transactions: readonly Transaction[]): string[] {
  // Changes of one relation share its object: distinct objects first, names once each (this runs for
  // every message, over every row).
  const relations = new Set<RelationInfo>();
  for (const tx of transactions) {
    for (const change of tx.changes) {
      if (change.op === 'message') continue;
      if (change.op === 'truncate') for (const r of change.relations) relations.add(r);
      else relations.add(change.relation);
    }
  }
  const names = new Set<string>();
  for (const r of relations) names.add(`${r.schema}.${r.table}`);
  return [...names];
}
