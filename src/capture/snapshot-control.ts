/**
 * Where a site keeps its snapshots: one row per snapshot in sitesync's own schema at the site's database,
 * and the markers (snapshot-marker.ts) written into its log. Each connector that can snapshot gives one
 * (`Connector.openSnapshotControl`).
 *
 * The marker of a chunk and the row's `nextChunk` move in one commit, and only from the chunk before:
 * after any crash, the stream gives the last marker whose chunk was not confirmed again, and at most one
 * marker follows it. That is what makes a snapshot resumable without a second chain of markers.
 */
import type { SnapshotMarker } from './snapshot-marker.ts';

export type SnapshotState = 'running' | 'done' | 'cancelled';

export interface SnapshotStatus {
  readonly id: string;
  readonly table: string;
  readonly targets: readonly string[] | null;
  /** The number of the chunk whose marker was written last. */
  readonly nextChunk: number;
  readonly rowsSent: number;
  /** For progress: rows in the table when it started (statistics), or the number of keys asked for. */
  readonly estimatedRows: number;
  readonly state: SnapshotState;
  readonly startedAt: Date;
  readonly updatedAt: Date;
}

export interface SnapshotControl {
  /** Records a snapshot and writes the marker of its chunk 0, in one commit. */
  start(marker: SnapshotMarker, estimatedRows: number): Promise<void>;
  /**
   * Chunk `read.chunk` was read (`rows` rows): records it, and writes `next` (the next chunk's marker, or
   * null when that was the last) in the same commit. 'already' when that was done before (the stream gave
   * the marker again after a restart), 'cancelled' when the snapshot was cancelled or is unknown.
   */
  advance(read: SnapshotMarker, rows: number, next: SnapshotMarker | null): Promise<'advanced' | 'already' | 'cancelled'>;
  list(): Promise<SnapshotStatus[]>;
  /** Stops a running snapshot; false when none runs by that id. */
  cancel(id: string): Promise<boolean>;
  close(): Promise<void>;
}

export interface SnapshotControlOptions {
  readonly site: string;
  /** The capture role's URL: it owns sitesync's schema at the site. */
  readonly url: string;
}

/** Progress of a snapshot for people: `1024/10000 rows (10%)`. */
export function describeProgress(status: Pick<SnapshotStatus, 'rowsSent' | 'estimatedRows' | 'state'>): string {
  const total = Math.max(status.estimatedRows, status.rowsSent);
  const percent = status.state === 'done' ? 100 : total === 0 ? 0 : Math.min(99, Math.floor((status.rowsSent * 100) / total));
  return `${status.rowsSent}/${total} rows (${percent}%)`;
}
