/**
 * sitesync's own tables at a MariaDB site, in the bookkeeping database (default `sitesync`; an option, so
 * that several sites or tests can share one server). Created idempotently; the database is created only
 * when it is missing, so that a least-privilege apply user needs no CREATE right on the server once an
 * administrator has created it (and granted CREATE, SELECT, INSERT, UPDATE, DELETE on it).
 *
 * - apply_progress: one row per source site, the position and commit time of the last transaction
 *   applied from it. It is written FIRST in every transaction the sink applies: MariaDB records no origin
 *   of a transaction, so this row is the loop marker by which this site's capture recognises (and drops) a
 *   relayed write, and the causal context it learns (the source's commit time). `applied_transactions`
 *   counts the transactions that wrote the row: it changes in every one of them, a retried parked
 *   transaction included (whose position is behind the progress and leaves it as it is), because MariaDB
 *   logs no row event for an update that changes nothing — and the capture must see the marker.
 * - parked: what this site parked (src/apply/sink.ts ParkedRecord), as the PostgreSQL sink's
 *   `sitesync.parked`, with the same columns.
 * - spilled_parts: the parts of a large transaction received before its last (see mariadb-sink.ts).
 */
import { SitesyncError } from '../../src/errors.ts';
import type { NewParkedRecord } from '../../src/apply/sink.ts';
import type { Position } from '../../src/events/transaction.ts';
import { quoteIdent } from './mariadb-statements.ts';
import type { BoundValue } from './mariadb-bind.ts';

export const DEFAULT_BOOKKEEPING_DATABASE = 'sitesync';

/** What a bookkeeping database may be named: a plain identifier, so that it reads the same everywhere. */
const DATABASE_NAME = /^[A-Za-z_][A-Za-z0-9_$]{0,63}$/;

export function checkBookkeepingDatabase(name: string): string {
  if (!DATABASE_NAME.test(name)) {
    throw new SitesyncError('SITESYNC_ERR_CONFIG', `bookkeeping database name ${JSON.stringify(name.slice(0, 80))} is not a plain identifier (letters, digits, _, $; at most 64); choose another`);
  }
  return name;
}

/** The bookkeeping tables' names and statements of one bookkeeping database. */
export class Bookkeeping {
  readonly database: string;
  readonly progressTable: string;
  readonly parkedTable: string;
  readonly spillTable: string;

  constructor(database: string = DEFAULT_BOOKKEEPING_DATABASE) {
    this.database = checkBookkeepingDatabase(database);
    this.progressTable = `${quoteIdent(database)}.${quoteIdent('apply_progress')}`;
    this.parkedTable = `${quoteIdent(database)}.${quoteIdent('parked')}`;
    this.spillTable = `${quoteIdent(database)}.${quoteIdent('spilled_parts')}`;
  }

  /** CREATE TABLE IF NOT EXISTS of each table, in order. */
  createTables(): string[] {
    return [
      `CREATE TABLE IF NOT EXISTS ${this.progressTable} (
  source VARCHAR(40) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  source_kind VARCHAR(20) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  position VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  commit_time_micros BIGINT NOT NULL,
  applied_transactions BIGINT UNSIGNED NOT NULL DEFAULT 0
) ENGINE=InnoDB`,
      `CREATE TABLE IF NOT EXISTS ${this.parkedTable} (
  id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  parked_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  kind VARCHAR(8) CHARACTER SET ascii NOT NULL CHECK (kind IN ('skipped', 'refused')),
  source VARCHAR(255),
  transaction_id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
  body_sha256 CHAR(64) CHARACTER SET ascii NOT NULL,
  user_id VARCHAR(255),
  route TEXT NOT NULL,
  reason TEXT NOT NULL,
  done_at DATETIME(6),
  KEY transaction_id (transaction_id)
) ENGINE=InnoDB`,
      `CREATE TABLE IF NOT EXISTS ${this.spillTable} (
  source VARCHAR(40) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  transaction_id VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  part INT NOT NULL,
  schema_version INT NOT NULL,
  body LONGBLOB NOT NULL,
  PRIMARY KEY (source, transaction_id, part)
) ENGINE=InnoDB`,
    ];
  }

  /**
   * The upsert of a source's progress row: the first write of every applied transaction. `forward` moves
   * the row only to a later position (positions order by length, then as strings: position.ts), and
   * changes nothing otherwise — 0 affected rows then says the transaction was applied already (the
   * session's connection runs without CLIENT_FOUND_ROWS: 1 inserted, 2 moved, 0 unchanged). `always`
   * (a retried parked transaction) moves it only forward too, but changes the row in any case
   * (applied_transactions), so that the marker is written.
   *
   * ON DUPLICATE KEY UPDATE assigns left to right, each seeing the ones before: `position` goes last, so
   * that every condition reads the position as it was.
   */
  progressUpsert(row: ProgressRow, mode: 'forward' | 'always'): { readonly text: string; readonly values: BoundValue[] } {
    const newer = '(CHAR_LENGTH(VALUES(position)) > CHAR_LENGTH(position) OR (CHAR_LENGTH(VALUES(position)) = CHAR_LENGTH(position) AND VALUES(position) > position))';
    const text =
      `INSERT INTO ${this.progressTable} (source, source_kind, position, commit_time_micros, applied_transactions) VALUES (?, ?, ?, ?, 1) ` +
      `ON DUPLICATE KEY UPDATE applied_transactions = applied_transactions + ${mode === 'always' ? '1' : `IF(${newer}, 1, 0)`}, ` +
      `commit_time_micros = IF(${newer}, VALUES(commit_time_micros), commit_time_micros), ` +
      `source_kind = IF(${newer}, VALUES(source_kind), source_kind), ` +
      `position = IF(${newer}, VALUES(position), position)`;
    return { text, values: [row.source, row.sourceKind, row.position, row.commitTimeMicros.toString()] };
  }

  progressQuery(): string {
    return `SELECT position FROM ${this.progressTable} WHERE source = ?`;
  }

  insertParked(): string {
    // A refused message's id is derived from what it is (apply-runner.ts): refused again, it keeps its record.
    return `INSERT INTO ${this.parkedTable} (id, kind, source, transaction_id, body_sha256, user_id, route, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE id = id`;
  }

  findParked(): string {
    return `SELECT id, kind, source, transaction_id, body_sha256, user_id, route, reason, done_at IS NOT NULL AS done FROM ${this.parkedTable} WHERE id = ?`;
  }

  finishParked(): string {
    return `UPDATE ${this.parkedTable} SET done_at = CURRENT_TIMESTAMP(6) WHERE id = ? AND done_at IS NULL`;
  }

  /** Marks every open 'skipped' record of a transaction done, provided record `id` is still open (values: transaction id, id). */
  finishRetried(): string {
    return `UPDATE ${this.parkedTable} SET done_at = CURRENT_TIMESTAMP(6)
 WHERE transaction_id = ? AND kind = 'skipped' AND done_at IS NULL
   AND EXISTS (SELECT 1 FROM (SELECT id FROM ${this.parkedTable} WHERE id = ? AND done_at IS NULL) open_record)`;
  }
}

export interface ProgressRow {
  readonly source: string;
  readonly sourceKind: string;
  readonly position: Position;
  readonly commitTimeMicros: bigint;
}

/** A parked record's values for insertParked, cut to the columns' sizes (a refused message's claims are untrusted). */
export function parkedValues(r: NewParkedRecord): BoundValue[] {
  const cut = (s: string | null, n: number): string | null => (s === null ? null : s.slice(0, n));
  return [r.id.toLowerCase(), r.kind, cut(r.source, 255), cut(r.transactionId, 255), r.bodySha256, cut(r.userId, 255), cut(r.route, 60_000)!, r.reason.slice(0, 2000)];
}

/** Two sessions starting at once may both create the bookkeeping objects: the loser's error is harmless. */
export function isConcurrentCreate(error: unknown): boolean {
  const errno = (error as { errno?: number })?.errno;
  return errno === 1007 /* database exists */ || errno === 1050 /* table exists */;
}
