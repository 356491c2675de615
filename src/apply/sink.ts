/**
 * The apply contract: where a site's incoming transactions are written. PostgreSQL is the first sink;
 * an analytics store (DuckDB) comes later.
 *
 * A sink keeps, per source site, the position of the last transaction it applied, and records it in the
 * same commit as the data: after any crash, `progress` says exactly what is in the target. Applying a
 * transaction at or below that position must never happen (the runner checks; the sink may check again).
 *
 * A sink also keeps a record of every message its site parked (the parked record), so that an operator's
 * retry can be told from a forgery and is applied exactly once.
 *
 * Left out on purpose: ordering, de-duplication, gaps, trust and scope checks and the parking queue itself
 * (the runner's), and conflict policy.
 */
import type { Position, Transaction, TransactionPart } from '../events/transaction.ts';

export interface SourceSession {
  /** Last applied position of this source, or null if nothing was ever applied from it. */
  progress(): Promise<Position | null>;
  /**
   * Applies whole transactions, each in its own commit that also records its position. With `durable`
   * (the default) it returns once they and every earlier commit are on disk; without, the commits may still
   * be in flight to disk (group commit): the caller must not acknowledge them until a durable call returns.
   */
  apply(transactions: readonly Transaction[], options?: { readonly durable: boolean }): Promise<void>;
  /**
   * Takes one part of a large transaction. Parts before the last are kept durably by the sink (so the
   * runner can acknowledge each at once, and a crash loses none); the last applies them all in one
   * commit with the position. Part 0 again means the source sent the transaction again from its start.
   * A part whose predecessor the sink does not hold throws SITESYNC_ERR_GAP.
   */
  applyPart(transaction: Transaction, part: TransactionPart): Promise<void>;
  /**
   * Records `position` as applied without writing data: a transaction set aside for an operator. With
   * `parked`, the record of that parked transaction (kind 'skipped') is written in the same commit.
   */
  skip(position: Position, commitTimeMicros: bigint, parked?: NewParkedRecord): Promise<void>;
  /**
   * Applies transactions an operator sent back (`sitesync parked --retry`) as they are — their positions are
   * behind what was applied since — and marks every open parked record of them done, in the same commit.
   * Returns false, applying nothing, when no open record remains (it was retried already).
   */
  applyRetried(transactions: readonly Transaction[], parkedId: string): Promise<boolean>;
  close(): Promise<void>;
}

/** What a sink's error calls for: wait and retry, halt the source until someone fixes the target, or park. */
export type ApplyErrorKind = 'transient' | 'schema' | 'data';

/**
 * What a site wrote down when it parked a message. 'skipped': a transaction recorded as applied without
 * its data (the target refused it, or it touched a table the site does not replicate); a retry applies
 * it as it is. 'refused': a message never applied (undecodable, untrusted, from an unknown site); a retry
 * is handled as if it had just arrived the way it first did (`userId`, `route`).
 */
export interface ParkedRecord {
  readonly id: string;
  readonly kind: 'skipped' | 'refused';
  /** The site the message claims, when it could be read. */
  readonly source: string | null;
  readonly transactionId: string | null;
  /** SHA-256 of the parked body, hex: a retry must carry exactly these bytes. */
  readonly bodySha256: string;
  /** The AMQP user-id RabbitMQ validated when the message was first published (null: none). */
  readonly userId: string | null;
  /** `exchange/routing key` the message first arrived through. */
  readonly route: string;
  readonly reason: string;
  /** Retried and handled: a later copy of the retry is a duplicate. */
  readonly done: boolean;
}

export type NewParkedRecord = Omit<ParkedRecord, 'done'>;

export interface Sink {
  readonly site: string;
  /** Schemas never written whatever any message says: the database's catalogs and sitesync's own. */
  isReservedSchema(schema: string): boolean;
  /** Writes a parked record (kind 'refused'; 'skipped' ones are written by SourceSession.skip). */
  recordParked(record: NewParkedRecord): Promise<void>;
  findParked(id: string): Promise<ParkedRecord | null>;
  /** Marks a 'refused' record done once its retry was handled. */
  finishParked(id: string): Promise<void>;
  /** Grades the sink's own errors (each sink knows its database's error codes). */
  classify(error: unknown): ApplyErrorKind;
  /** A session dedicated to one source site; nothing else may use its connection. */
  openSession(source: string): Promise<SourceSession>;
  close(): Promise<void>;
}
