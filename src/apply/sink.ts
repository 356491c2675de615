/**
 * The apply contract: where a site's incoming transactions are written. PostgreSQL is the first sink;
 * an analytics store (DuckDB) comes later.
 *
 * A sink keeps, per source site, the position of the last transaction it applied, and records it in the
 * same commit as the data: after any crash, `progress` says exactly what is in the target. Applying a
 * transaction at or below that position must never happen (the runner checks; the sink may check again).
 *
 * Left out on purpose: ordering, de-duplication, gaps and parking (the runner's), and conflict policy.
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
  /** Records `position` as applied without writing data (a transaction parked for an operator). */
  skip(position: Position, commitTimeMicros: bigint): Promise<void>;
  close(): Promise<void>;
}

/** What a sink's error calls for: wait and retry, halt the source until someone fixes the target, or park. */
export type ApplyErrorKind = 'transient' | 'schema' | 'data';

export interface Sink {
  readonly site: string;
  /** Grades the sink's own errors (each sink knows its database's error codes). */
  classify(error: unknown): ApplyErrorKind;
  /** A session dedicated to one source site; nothing else may use its connection. */
  openSession(source: string): Promise<SourceSession>;
  close(): Promise<void>;
}
