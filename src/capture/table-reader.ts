/**
 * Reading the rows a table already holds, by key: what an online snapshot sends and what `sitesync verify`
 * compares. Each connector that can snapshot gives one (`Connector.openTableReader`).
 *
 * Rows come as the change events carry them: a RelationInfo whose columns have the kinds and native types
 * capture gives them, and values in their kind's canonical text (docs/value-kinds.md), so that a row read
 * here and the same row seen in the log are the same row, and two databases of different kinds can be
 * compared value by value.
 *
 * Key order is kind-neutral, so that two sites of different kinds list the same keys in the same order
 * (a merge of two readers' chunks meets each key once): key columns compare in column order; numbers,
 * dates and times by value; strings and bytes by their UTF-8 bytes (a binary collation, whatever the
 * column's own collation is); NULL never occurs in a key.
 */
import { SitesyncError } from '../errors.ts';
import type { RelationInfo, RowImage, RowWriter } from '../events/transaction.ts';

/** A table with a primary key, as a reader describes it. */
export interface TableShape {
  readonly relation: RelationInfo;
  /** Indexes into `relation.columns` of the primary key's columns, in key order (their `key` flag is set). */
  readonly keyColumns: readonly number[];
}

/** A key: the canonical text of each key column, in key order. */
export type RowKey = readonly string[];

export interface TableReader {
  /**
   * The table as capture describes it. Throws SitesyncError (one line naming the table and the fix) when
   * it does not exist or has no primary key: rows without a key cannot be read in chunks or compared.
   */
  describe(schema: string, table: string): Promise<TableShape>;
  /** At most `limit` rows whose key comes after `after` (from the first when null), in key order. */
  readChunk(shape: TableShape, after: RowKey | null, limit: number): Promise<RowImage[]>;
  /**
   * As readChunk, with the writer of each row (its last writer's site and commit time; null where the
   * database cannot tell): what a snapshot sent to chosen sites carries. Readers that cannot tell leave it out.
   */
  readChunkWithWriters?(shape: TableShape, after: RowKey | null, limit: number): Promise<{ readonly rows: RowImage[]; readonly writers: (RowWriter | null)[] }>;
  /**
   * For a reader whose writers are recorded by this site's capture after it reads the writes (MariaDB's
   * row_writers): the writers of `rows` once capture has recorded every local write up to `checkpoint`, the
   * checkpoint of a snapshot marker the stream has just handed on. A chunk read ahead, before capture
   * reached its marker, would carry an older writer for a row written just before the marker. Readers whose
   * writers come with the rows (PostgreSQL: the row version's commit timestamp) leave it out.
   */
  writersOnceRecorded?(shape: TableShape, rows: readonly RowImage[], checkpoint: string): Promise<(RowWriter | null)[]>;
  /** The rows of these keys that exist, in key order; keys with no row are left out. */
  readKeys(shape: TableShape, keys: readonly RowKey[]): Promise<RowImage[]>;
  /**
   * The tables with a primary key this reader's role can read, as `schema.table`, sitesync's own and the
   * system's left out: what `sitesync join` takes when no site lists its tables. Readers that cannot list
   * leave it out.
   */
  listTables?(): Promise<string[]>;
  /** About how many rows the table holds (the database's statistics), for progress; never exact. */
  estimateRows(shape: TableShape): Promise<number>;
  /**
   * For verify, computed in the database: how many rows have a key in (from, to] (null: unbounded) and a
   * digest of their `columns` values. Two digests are comparable only when both readers have the same
   * `digestKind` and were given the same columns; readers without one are compared row by row.
   */
  readonly digestKind?: string;
  rangeDigest?(shape: TableShape, columns: readonly string[], from: RowKey | null, to: RowKey | null): Promise<{ readonly rows: number; readonly digest: string }>;
  /** The key of the row `offset` places (0-based) after `from`, not past `to`; null when there are fewer rows. */
  keyAt?(shape: TableShape, from: RowKey | null, to: RowKey | null, offset: number): Promise<RowKey | null>;
  close(): Promise<void>;
}

export interface TableReaderOptions {
  readonly site: string;
  /** A URL of a role that may read the tables (the capture or monitoring role). */
  readonly url: string;
  /**
   * Every read of this reader sees one point in time (a repeatable-read transaction held open until
   * close): what verify needs. Without, each read sees the latest committed rows: what a snapshot needs.
   */
  readonly consistent: boolean;
}

/** The key of a row image of `shape`. */
export function rowKey(shape: TableShape, row: RowImage): RowKey {
  return shape.keyColumns.map((i) => {
    const value = row.values[i];
    if (value === null || value === undefined) throw new Error(`key column ${shape.relation.columns[i]?.name} of ${shape.relation.schema}.${shape.relation.table} is NULL`);
    return value;
  });
}

/**
 * A shape handed to a reader that did not describe it (another reader's, a copy) is described again; it
 * must still have the same columns and key, or the reads would be of another table. `where` names the site.
 */
export function checkSameShape(asked: TableShape, current: TableShape, where: string): void {
  const names = (s: TableShape): string => JSON.stringify([s.relation.columns.map((c) => c.name), s.keyColumns]);
  if (names(current) !== names(asked)) {
    throw new SitesyncError(
      'SITESYNC_ERR_CATALOG_CHANGED',
      `table ${asked.relation.schema}.${asked.relation.table} at ${where} has changed since it was described (columns or key); describe it again`,
    );
  }
}
