/**
 * The checkpoint rule, in one place: the source may be confirmed only up to the end of the last
 * transaction that, with every transaction before it, the broker has confirmed.
 *
 * Entries are kept in source order. A published message is an entry that becomes done when the broker
 * confirms it; a skipped transaction or an idle position is an entry that is done at once. The frontier
 * moves over done entries from the head and stops at the first that is not done, so a position learned
 * later (a keepalive, a skipped transaction) is never confirmed before the data in flight ahead of it.
 */
import type { Position, SeenSites } from '../events/transaction.ts';
import type { ResumePoint } from './source.ts';

export interface Entry {
  /** What to confirm at the source once this entry and all before it are done; null for a non-final part. */
  checkpoint: string | null;
  /** Position of the last whole transaction this entry published, or null (skips, parts before the last). */
  readonly lastPosition: Position | null;
  /** The causal context after this entry. */
  seen: SeenSites;
  done: boolean;
}

export interface Frontier extends ResumePoint {
  readonly checkpoint: string | null;
}

export class CheckpointTracker {
  private entries: Entry[] = [];
  private head = 0;
  private checkpoint: string | null = null;
  private lastPublished: Position | null;
  private seen: SeenSites;

  constructor(resume: ResumePoint) {
    this.lastPublished = resume.lastPublished;
    this.seen = resume.seen;
  }

  /** A message handed to the broker, not yet confirmed. */
  published(checkpoint: string | null, lastPosition: Position | null, seen: SeenSites): Entry {
    const entry: Entry = { checkpoint, lastPosition, seen, done: false };
    this.entries.push(entry);
    return entry;
  }

  /** A position that is safe as soon as everything before it is (skipped transactions, keepalives). */
  passed(checkpoint: string, seen: SeenSites): void {
    const tail = this.entries[this.entries.length - 1];
    if (tail && tail.done && this.entries.length > this.head && tail.lastPosition === null) {
      tail.checkpoint = checkpoint; // merge: a run of keepalives is one entry, memory stays flat
      tail.seen = seen;
      return;
    }
    this.entries.push({ checkpoint, lastPosition: null, seen, done: true });
  }

  confirmed(entry: Entry): void {
    entry.done = true;
  }

  /** Moves over done entries; returns where the source may now be confirmed. */
  advance(): Frontier {
    while (this.head < this.entries.length) {
      const entry = this.entries[this.head];
      if (!entry || !entry.done) break;
      if (entry.checkpoint !== null) {
        this.checkpoint = entry.checkpoint;
        this.seen = entry.seen; // the context as of a confirmable point, never ahead of it
      }
      if (entry.lastPosition !== null) this.lastPublished = entry.lastPosition;
      this.head++;
    }
    if (this.head > 1024 && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
    return { checkpoint: this.checkpoint, lastPublished: this.lastPublished, seen: this.seen };
  }

  /** Messages published and not yet confirmed. */
  get unconfirmed(): number {
    let n = 0;
    for (let i = this.head; i < this.entries.length; i++) if (!this.entries[i]?.done) n++;
    return n;
  }
}
