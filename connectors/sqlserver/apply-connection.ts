/**
 * The thin layer between the SQL Server sink and the server: one connection, used by one source's session
 * (or by the sink's parked records), that runs one operation per call and returns what the server said.
 * Everything that decides anything — which rows a change touches, what a value becomes, whether a transaction
 * is applied already, what a conflict is, the order of the writes — sits above it as pure code
 * (sqlserver-sink.ts, sqlserver-bind.ts, sqlserver-statements.ts), so that it is proven against the simulator
 * (test/helpers/sqlserver-simulated-apply.ts implements this interface over test/helpers/sqlserver-simulator.ts)
 * and runs unchanged against a real server through mssql-apply-connection.ts, whose every statement's text
 * comes from sqlserver-statements.ts.
 *
 * Transactions: between begin() and commit()/rollback() every call runs inside that one SQL Server
 * transaction; outside, each call is its own (autocommit). A call that throws leaves the transaction open
 * as the server left it: the caller rolls it back.
 *
 * Values are BoundValues (sqlserver-bind.ts): text that the statement converts server-side into the column's
 * own type (CONVERT with an explicit style), bytes, a float's shortest text (bound as an IEEE double), or
 * NULL. The connection never converts them itself.
 */
import type { Position } from '../../src/events/transaction.ts';
import type { NewParkedRecord, ParkedRecord } from '../../src/apply/sink.ts';

/**
 * What one parameter carries: text (bound as nvarchar(max) and converted by the statement), bytes (bound as
 * varbinary(max)), or NULL. For a float or real column the text is the shortest decimal of the double it
 * stands for, bound as a float (IEEE 754, exact: a text conversion by the server might not round correctly).
 */
export type BoundValue = string | Buffer | null;

/** A target column as sys.columns describes it. */
export interface TargetColumn {
  readonly name: string;
  /** The base type as sys.types names it, lower case: `int`, `nvarchar`, `datetime2`, `timestamp` (rowversion). */
  readonly type: string;
  /** sys.columns.max_length: bytes (-1 for `max`; nvarchar(50) is 100). */
  readonly maxLength: number;
  /** sys.columns.precision and scale (the scale is the fractional-second digits of the time types). */
  readonly precision: number;
  readonly scale: number;
  readonly nullable: boolean;
  readonly identity: boolean;
  /** A computed column: never written. */
  readonly computed: boolean;
  /** 1-based position in the primary key, 0 when not part of it. */
  readonly keyOrdinal: number;
  /** The column's collation (character types), null when none or not known. */
  readonly collation: string | null;
}

/** A target table: its columns in table order and its primary key (null: none). */
export interface TargetTable {
  readonly schema: string;
  readonly table: string;
  readonly columns: readonly TargetColumn[];
  readonly byName: ReadonlyMap<string, TargetColumn>;
  readonly primaryKey: readonly string[] | null;
}

/** Builds a TargetTable from the columns describeTable read. */
export function targetTable(schema: string, table: string, columns: readonly TargetColumn[]): TargetTable {
  const primaryKey = columns
    .filter((c) => c.keyOrdinal > 0)
    .sort((a, b) => a.keyOrdinal - b.keyOrdinal)
    .map((c) => c.name);
  return { schema, table, columns, byName: new Map(columns.map((c) => [c.name, c])), primaryKey: primaryKey.length > 0 ? primaryKey : null };
}

/** Values of some columns of a table, in the same order. */
export interface ColumnValues {
  readonly columns: readonly TargetColumn[];
  readonly values: readonly BoundValue[];
}

/**
 * Which row a change finds: `key` — by the primary key (or the key the source names), plain equality;
 * `image` — a table without a key: every column the old image carries, compared exactly (bytes, NULL with
 * IS NULL), and at most one row is touched (TOP (1)): duplicate rows stay duplicates, as at the source.
 */
export interface RowMatch extends ColumnValues {
  readonly by: 'key' | 'image';
}

/** A source's row in sitesync.apply_progress. */
export interface ProgressRow {
  readonly source: string;
  readonly sourceKind: string;
  readonly position: Position;
  readonly commitTimeMicros: bigint;
}

/** One resolved conflict, as sitesync.conflicts keeps it (the columns of the PostgreSQL sink's table). */
export interface ConflictRow {
  readonly kind: string;
  /** `schema.table`. */
  readonly table: string;
  /** The key's columns and canonical texts, as JSON (`{}` when there is none to show). */
  readonly keyJson: string;
  readonly remoteSite: string;
  readonly remoteTransaction: string;
  readonly remoteCommitTimeMicros: bigint;
  readonly localSite: string | null;
  readonly localCommitTimeMicros: bigint | null;
  readonly policy: string;
  readonly winner: 'remote' | 'local' | 'none';
  readonly resolution: 'applied' | 'skipped';
}

/** One kept part of a large transaction. */
export interface SpilledPart {
  readonly schemaVersion: number;
  readonly body: Buffer;
}

export interface ApplyConnection {
  /** Creates the sitesync schema and the sink's tables when missing (each only when missing). */
  ensureBookkeeping(): Promise<void>;
  /** The table's columns from sys.columns, or null when there is no such table. */
  describeTable(schema: string, table: string): Promise<TargetTable | null>;

  begin(): Promise<void>;
  commit(): Promise<void>;
  rollback(): Promise<void>;

  /**
   * The first statement of every applied transaction: the upsert of `row` into sitesync.apply_progress.
   * 'forward': moves the row only to a later position and returns false, writing nothing, when it is already
   * at or past it. 'always' (a retried parked transaction): writes the row in any case (applied_transactions
   * counts up, so that capture sees the marker) but moves its position only forward; returns true.
   */
  advanceProgress(row: ProgressRow, mode: 'forward' | 'always'): Promise<boolean>;
  readProgress(source: string): Promise<Position | null>;

  /**
   * Inserts one row. 'duplicate': the primary key or a unique index already holds it (errors 2627, 2601);
   * the statement wrote nothing and the transaction stays open and committable.
   */
  insert(table: TargetTable, row: ColumnValues): Promise<'inserted' | 'duplicate'>;
  /** Updates the row `match` finds; rows affected (0 or 1 for `image`). */
  update(table: TargetTable, set: ColumnValues, match: RowMatch): Promise<number>;
  /** Deletes the row `match` finds; rows affected (0 or 1 for `image`). */
  delete(table: TargetTable, match: RowMatch): Promise<number>;
  /** Whether a row `match` finds is there (locked until the transaction ends). */
  exists(table: TargetTable, match: RowMatch): Promise<boolean>;
  /** A TRUNCATE change: DELETE of every row (SQL Server refuses TRUNCATE TABLE on a CDC-enabled table, 4711). */
  deleteAll(table: TargetTable): Promise<number>;

  recordConflict(row: ConflictRow): Promise<void>;

  /** Writes a parked record; one with the same id already there is kept as it is. */
  insertParked(record: NewParkedRecord): Promise<void>;
  findParked(id: string): Promise<ParkedRecord | null>;
  /** Marks a record done (if it is open). */
  finishParked(id: string): Promise<void>;
  /**
   * Marks every open 'skipped' record of transaction `transactionId` done, provided record `parkedId` is
   * still open; returns how many it marked (0: retried already).
   */
  finishRetried(transactionId: string, parkedId: string): Promise<number>;

  /** Keeps one part of a large transaction (replacing a copy kept before). */
  keepPart(source: string, transactionId: string, part: number, spilled: SpilledPart): Promise<void>;
  hasPart(source: string, transactionId: string, part: number): Promise<boolean>;
  readPart(source: string, transactionId: string, part: number): Promise<SpilledPart | null>;
  /** Bytes of the bodies kept for `source`. */
  spilledBytes(source: string): Promise<number>;
  /** Forgets every part kept for `source`. */
  forgetParts(source: string): Promise<void>;

  close(): Promise<void>;
}
