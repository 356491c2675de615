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
 * - row_writers: per row key (table, SHA-256 of the key's canonical JSON), the last write sitesync knows of:
 *   the site that made it and its commit time as change events carry it (row-writers.ts says who writes it
 *   and when). `local_position` is the binlog position of a local write (capture's entries), NULL for a
 *   write the sink applied; `seen` is the write's causal context. What conflict detection reads (MariaDB
 *   keeps no commit origin or time per row). Never replicated: capture ignores the bookkeeping database.
 * - conflicts: every conflict the sink resolved, with the columns of the PostgreSQL sink's
 *   `sitesync.conflicts` (times in UTC).
 * - joins: the joins this site took part in, as donor or joiner (mariadb-join-book.ts creates and keeps it).
 */
import { SitesyncError } from '../../src/errors.ts';
import type { NewParkedRecord } from '../../src/apply/sink.ts';
import type { ConflictKind, Decision, Writer } from '../../src/apply/conflict-policy.ts';
import { microsToIso } from '../../src/events/time.ts';
import type { Position } from '../../src/events/transaction.ts';
import type { LocalWrite, RowKey } from './row-writers.ts';
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
  readonly rowWritersTable: string;
  readonly conflictsTable: string;

  constructor(database: string = DEFAULT_BOOKKEEPING_DATABASE) {
    this.database = checkBookkeepingDatabase(database);
    this.progressTable = `${quoteIdent(database)}.${quoteIdent('apply_progress')}`;
    this.parkedTable = `${quoteIdent(database)}.${quoteIdent('parked')}`;
    this.spillTable = `${quoteIdent(database)}.${quoteIdent('spilled_parts')}`;
    this.rowWritersTable = `${quoteIdent(database)}.${quoteIdent('row_writers')}`;
    this.conflictsTable = `${quoteIdent(database)}.${quoteIdent('conflicts')}`;
  }

  /** The tables createTables makes, by name, in its order. */
  static readonly TABLES = ['apply_progress', 'parked', 'spilled_parts', 'row_writers', 'conflicts'] as const;

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
      this.createRowWriters(),
      `CREATE TABLE IF NOT EXISTS ${this.conflictsTable} (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  logged_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  kind VARCHAR(32) CHARACTER SET ascii NOT NULL,
  table_name VARCHAR(129) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  \`key\` JSON NOT NULL,
  remote_site VARCHAR(40) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  remote_transaction VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  remote_commit_time DATETIME(6) NOT NULL,
  local_site VARCHAR(40) CHARACTER SET ascii COLLATE ascii_bin NULL,
  local_commit_time DATETIME(6) NULL,
  policy VARCHAR(32) CHARACTER SET ascii NOT NULL,
  winner VARCHAR(8) CHARACTER SET ascii NOT NULL,
  resolution VARCHAR(8) CHARACTER SET ascii NOT NULL
) ENGINE=InnoDB`,
    ];
  }

  /** row_writers (both the sink and capture create it: whichever starts first). */
  createRowWriters(): string {
    return `CREATE TABLE IF NOT EXISTS ${this.rowWritersTable} (
  table_name VARCHAR(129) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  key_hash BINARY(32) NOT NULL,
  key_json TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  site VARCHAR(40) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  commit_time_micros BIGINT NOT NULL,
  local_position CHAR(24) CHARACTER SET ascii COLLATE ascii_bin NULL,
  seen TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  PRIMARY KEY (table_name, key_hash)
) ENGINE=InnoDB`;
  }

  /** The last writer of one row key (values: table name, key hash). */
  rowWriterQuery(): string {
    return `SELECT site, commit_time_micros FROM ${this.rowWritersTable} WHERE table_name = ? AND key_hash = ?`;
  }

  /**
   * The sink's record of the writes it applied: `rows` entries of (table_name, key_hash, key_json, site,
   * commit_time_micros, seen). Unconditional: the sink holds each row's lock, so its write is the row's latest.
   */
  recordAppliedWrites(rows: number): string {
    return (
      `INSERT INTO ${this.rowWritersTable} (table_name, key_hash, key_json, site, commit_time_micros, local_position, seen) VALUES ` +
      Array.from({ length: rows }, () => '(?, ?, ?, ?, ?, NULL, ?)').join(', ') +
      ' ON DUPLICATE KEY UPDATE key_json = VALUES(key_json), site = VALUES(site), commit_time_micros = VALUES(commit_time_micros), local_position = NULL, seen = VALUES(seen)'
    );
  }

  /**
   * Capture's record of local writes: `rows` entries of (table_name, key_hash, key_json, site,
   * commit_time_micros, local_position, seen). An entry already there is replaced only by a later write:
   * one of this site's at an earlier binlog position (capture reads its log again after a restart), or one
   * the sink applied from another site that the local write had seen (its commit time is covered by the
   * local write's causal context). ON DUPLICATE KEY UPDATE assigns left to right, each seeing the ones
   * before: the decision is taken once, first, into a session variable.
   */
  recordLocalWrites(rows: number): string {
    const newer =
      `IF(site = VALUES(site), local_position IS NULL OR local_position <= VALUES(local_position), ` +
      `commit_time_micros <= COALESCE(CAST(JSON_VALUE(VALUES(seen), CONCAT('$."', site, '"')) AS SIGNED), -1))`;
    return (
      `INSERT INTO ${this.rowWritersTable} (table_name, key_hash, key_json, site, commit_time_micros, local_position, seen) VALUES ` +
      Array.from({ length: rows }, () => '(?, ?, ?, ?, ?, ?, ?)').join(', ') +
      ` ON DUPLICATE KEY UPDATE local_position = IF(@sitesync_newer := ${newer}, VALUES(local_position), local_position), ` +
      `key_json = IF(@sitesync_newer, VALUES(key_json), key_json), seen = IF(@sitesync_newer, VALUES(seen), seen), ` +
      `commit_time_micros = IF(@sitesync_newer, VALUES(commit_time_micros), commit_time_micros), site = IF(@sitesync_newer, VALUES(site), site)`
    );
  }

  /** One resolved conflict (values: conflictValues). */
  insertConflict(): string {
    return `INSERT INTO ${this.conflictsTable} (kind, table_name, \`key\`, remote_site, remote_transaction, remote_commit_time, local_site, local_commit_time, policy, winner, resolution) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`;
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

/** Most characters of a key's JSON kept in row_writers (it is there for people; the hash is the identity). */
const KEY_JSON_CHARS = 16_000;

/** The values of one entry of recordAppliedWrites. */
export function appliedWriteValues(key: RowKey, site: string, commitTimeMicros: bigint, seen: string): BoundValue[] {
  return [key.table, key.hash, key.json.slice(0, KEY_JSON_CHARS), site, commitTimeMicros.toString(), seen];
}

/** The values of one entry of recordLocalWrites. */
export function localWriteValues(write: LocalWrite, site: string): BoundValue[] {
  return [write.key.table, write.key.hash, write.key.json.slice(0, KEY_JSON_CHARS), site, write.commitTimeMicros.toString(), write.position, write.seen];
}

/** A commit time as a DATETIME(6) in UTC. */
export function microsToDatetime(micros: bigint): string {
  return microsToIso(micros).replace('T', ' ').replace(/Z$/, '');
}

export interface ConflictEntry {
  readonly kind: ConflictKind;
  /** `database.table`. */
  readonly table: string;
  readonly key: RowKey | null;
  readonly remoteSite: string;
  readonly remoteTransaction: string;
  readonly remoteCommitTimeMicros: bigint;
  readonly local: Writer | null;
  readonly policy: string;
  readonly decision: Decision;
}

/** The values of insertConflict, as the PostgreSQL sink writes its own (`key` {} when the row has no key to show). */
export function conflictValues(c: ConflictEntry): BoundValue[] {
  return [
    c.kind,
    c.table,
    c.key?.json ?? '{}',
    c.remoteSite,
    c.remoteTransaction.slice(0, 255),
    microsToDatetime(c.remoteCommitTimeMicros),
    c.local?.site ?? null,
    c.local ? microsToDatetime(c.local.commitTimeMicros) : null,
    c.policy,
    c.decision.winner,
    c.decision.resolution === 'apply' ? 'applied' : 'skipped',
  ];
}

/** Two sessions starting at once may both create the bookkeeping objects: the loser's error is harmless. */
export function isConcurrentCreate(error: unknown): boolean {
  const errno = (error as { errno?: number })?.errno;
  return errno === 1007 /* database exists */ || errno === 1050 /* table exists */;
}
