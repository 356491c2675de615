/**
 * What a site joining a running mesh (`sitesync join N --from A`) and its donor write down, at their own
 * databases, so that a kill of any process loses nothing (docs/joining-a-running-mesh.md says why).
 *
 * At the donor A, a hold: while N's snapshot is read at A, A applies nothing from any other site, so that
 * every chunk A reads holds exactly what A had applied of each other site S when it began to hold (its
 * position of S, recorded here). A's own writes and its capture go on; the other sites go on writing.
 *
 * At the joining site N, the join: the donor, the snapshots sent to N, where each snapshot's last chunk
 * was applied, and each other site's position at A when the hold began. N applies the donor's stream from
 * the first snapshot chunk, holds every other site until every snapshot is applied, then takes each of them
 * from the archive, from that position on; then the join is done and N applies its queue as any site.
 */
import type { Position } from '../events/transaction.ts';

/** A donor's hold, from `sitesync join` asking for it to its release. */
export interface DonorHold {
  readonly joinId: string;
  readonly joiner: string;
  /** requested: asked, not yet in force; holding: applying stopped, `positions` recorded. */
  readonly state: 'requested' | 'holding';
  /** What the donor had applied of each other site when it began to hold (sites never applied: absent). */
  readonly positions: Readonly<Record<string, Position>>;
  /** The snapshots sent to the joiner; the hold ends once each is read to its end (or cancelled). */
  readonly snapshotIds: readonly string[];
  readonly requestedAt: Date;
}

/** A joining site's join, from `sitesync join` to the end of its catch-up. */
export interface Join {
  readonly joinId: string;
  readonly donor: string;
  /** snapshotting: the donor's snapshots are applied, other sites held; catching-up: they are taken from the archive. */
  readonly state: 'snapshotting' | 'catching-up';
  readonly snapshotIds: readonly string[];
  /** For each snapshot whose last chunk arrived: that chunk's position in the donor's stream. */
  readonly lastChunks: Readonly<Record<string, Position>>;
  /** Each other site's position at the donor when its hold began: where this site takes it from. */
  readonly positions: Readonly<Record<string, Position>>;
  readonly startedAt: Date;
}

export interface JoinBook {
  /** Donor: asks for a hold (a second request for the same join is a no-op). */
  requestHold(joinId: string, joiner: string, snapshotIds: readonly string[]): Promise<void>;
  /** Donor: the hold not yet released, if any. */
  hold(): Promise<DonorHold | null>;
  /** Donor: the hold is in force; `positions` is what was applied of each other site. */
  confirmHold(joinId: string, positions: Readonly<Record<string, Position>>): Promise<void>;
  releaseHold(joinId: string, why: string): Promise<void>;

  /** Joiner: records a join (refused when one is open). */
  beginJoin(join: Omit<Join, 'state' | 'lastChunks' | 'startedAt'>): Promise<void>;
  /** Joiner: the open join, if any. */
  join(): Promise<Join | null>;
  /** Joiner: the last chunk of `snapshotId` is at `position` (written before it is applied). */
  noteLastChunk(joinId: string, snapshotId: string, position: Position): Promise<void>;
  /** Joiner: every snapshot is applied; the held sites are now taken from the archive. */
  beginCatchUp(joinId: string): Promise<void>;
  finishJoin(joinId: string): Promise<void>;
  /** Both: ends whatever join or hold is open here (`sitesync join --cancel`); how many were. */
  cancel(why: string): Promise<number>;
  /** Both: the history of joins here, newest first, for `sitesync status`/`join --list`. */
  list(): Promise<readonly JoinSummary[]>;
  close(): Promise<void>;
}

export interface JoinSummary {
  readonly joinId: string;
  readonly role: 'donor' | 'joiner';
  /** The joiner, at a donor; the donor, at a joiner. */
  readonly peer: string;
  readonly state: string;
  readonly snapshotIds: readonly string[];
  readonly startedAt: Date;
  readonly endedAt: Date | null;
}

export interface JoinBookOptions {
  readonly site: string;
  /** The apply role's URL: it owns sitesync's bookkeeping tables at the site. */
  readonly url: string;
}

/** True when every snapshot of the join has its last chunk at or below `applied` (the donor's position here). */
export function joinSnapshotsApplied(join: Join, applied: Position | null, compare: (a: Position, b: Position) => number): boolean {
  if (applied === null || join.snapshotIds.length === 0) return false;
  return join.snapshotIds.every((id) => {
    const at = join.lastChunks[id];
    return at !== undefined && compare(at, applied) <= 0;
  });
}
