/**
 * The capture contract: what every source connector (PostgreSQL now; Oracle LogMiner and SQL Server CDC
 * later) gives the capture runner.
 *
 * A source streams committed transactions in commit order. Each comes with a `checkpoint`: an opaque
 * value the runner hands back to `confirm` once the broker holds that transaction and everything before
 * it; after a restart the source resends every transaction after the last confirmed checkpoint. A source
 * never decides on its own that something is safe to forget.
 *
 * Left out on purpose: publishing, batching and retries (the runner's), and the order of transactions of
 * different sources (there is none).
 */
import type { Position, SeenSites, SourceKind, Transaction, TransactionPart } from '../events/transaction.ts';

export interface ResumePoint {
  readonly lastPublished: Position | null;
  readonly seen: SeenSites;
}

export interface SourceHandler {
  /**
   * A whole transaction (`part` null), or one part of a transaction too large for one message. Parts of one
   * transaction come in order, the last with `part.last`; `checkpoint` is null on all but the last.
   */
  transaction(tx: Transaction, part: TransactionPart | null, checkpoint: string | null): void;
  /**
   * A transaction that is not to be published (a relayed write, or nothing left after filtering), with the
   * causal context after it.
   */
  skipped(position: Position, checkpoint: string, reason: 'relayed' | 'empty', seen: SeenSites): void;
  /**
   * The source has sent everything up to `checkpoint` and holds nothing open: once all published before is
   * confirmed, confirming `checkpoint` is safe (keepalives, heartbeats).
   */
  idle(checkpoint: string, seen: SeenSites): void;
}

export interface Source {
  readonly kind: SourceKind;
  readonly site: string;
  /** Create what the source needs (idempotently) and check rights; throws SitesyncError naming the fix. */
  prepare(): Promise<void>;
  /**
   * Where the next stream resumes: the position of the last transaction published before it (null if none
   * ever was), which is the `previous` of its first message so that appliers can tell a duplicate from a
   * gap; and the causal context there.
   */
  resumePoint(): Promise<ResumePoint>;
  /** Begin streaming after the last confirmed checkpoint; the handler may be called before this resolves. */
  open(handler: SourceHandler): Promise<void>;
  /** Resolves when the stream ends by `close`, rejects when it breaks. */
  readonly ended: Promise<void> | null;
  /** Flow control: stop reading from the server (bounded memory) and read again. */
  pause(): void;
  resume(): void;
  /**
   * Everything up to `checkpoint` is safe at the broker; the resume point there is kept so that the next
   * stream can say `previous` and carry on the causal context.
   */
  confirm(checkpoint: string, resume: ResumePoint): Promise<void>;
  /**
   * Waits, a bounded time, until the source itself holds the last confirmed checkpoint, so that a clean
   * stop resumes exactly there and publishes nothing twice; false if it did not in time.
   */
  settle(): Promise<boolean>;
  /** Ask the source to produce an idle checkpoint soon, so a quiet site's position moves. */
  heartbeat(): Promise<void>;
  /** Bytes and seconds the confirmed position is behind the source's current one. */
  lag(): Promise<{ bytes: number; seconds: number } | null>;
  close(): Promise<void>;
}
