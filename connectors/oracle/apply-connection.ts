/**
 * The thin layer between the Oracle sink and the database: one connection, used by one source's session (or by
 * the sink's parked records), that runs one operation per call and returns what Oracle said. Everything that
 * decides anything — which rows a change touches, what a value becomes, whether a transaction is applied
 * already, what a conflict is, the order of the writes — sits above it as pure code (oracle-sink.ts,
 * oracle-bind.ts, oracle-statements.ts), so that it is proven against the simulator
 * (test/helpers/oracle-simulated-apply.ts implements this interface over test/helpers/oracle-simulator.ts) and
 * runs unchanged against a real database through oracledb-apply-connection.ts, whose every statement's text
 * comes from oracle-statements.ts.
 *
 * Transactions: Oracle has no BEGIN; a transaction starts with the first write and ends at COMMIT or ROLLBACK.
 * Between begin() and commit()/rollback() every call runs inside that one transaction (the connection runs
 * with autoCommit off); outside, each call that writes commits by itself. A call that throws leaves the
 * transaction open as Oracle left it — Oracle undoes the failed statement only (statement-level atomicity) —
 * and the caller rolls it back.
 *
 * Values are BoundValues (oracle-bind.ts): text that the statement converts server-side into the column's own
 * type (TO_NUMBER, TO_DATE, TO_TIMESTAMP, TO_TIMESTAMP_TZ, TO_DSINTERVAL… with explicit format models), bytes
 * (bound as RAW or BLOB), a binary float's shortest text (bound as an IEEE value), or NULL. The connection
 * never converts them itself.
 */
import type { Position } from '../../src/events/transaction.ts';
import type { NewParkedRecord, ParkedRecord } from '../../src/apply/sink.ts';

/**
 * What one parameter carries: text (converted by the statement, or stored as it is in a character column),
 * bytes (RAW or BLOB), or NULL. For a BINARY_FLOAT or BINARY_DOUBLE column the text is the shortest decimal of
 * the IEEE value it stands for (`Infinity`, `-Infinity`, `NaN` included), bound as that IEEE value.
 */
export type BoundValue = string | Buffer | null;

/** How Oracle generates an identity column (ALL_TAB_IDENTITY_COLS.GENERATION_TYPE), null when it is none. */
export type IdentityGeneration = 'ALWAYS' | 'BY DEFAULT' | 'BY DEFAULT ON NULL';

/** A target column as ALL_TAB_COLS describes it. */
export interface TargetColumn {
  readonly name: string;
  /**
   * The type without its parenthesised sizes, upper case: `NUMBER`, `FLOAT`, `VARCHAR2`, `NVARCHAR2`, `CHAR`,
   * `NCHAR`, `CLOB`, `NCLOB`, `BLOB`, `RAW`, `DATE`, `TIMESTAMP`, `TIMESTAMP WITH TIME ZONE`,
   * `TIMESTAMP WITH LOCAL TIME ZONE`, `INTERVAL YEAR TO MONTH`, `INTERVAL DAY TO SECOND`, `BINARY_FLOAT`,
   * `BINARY_DOUBLE`, `LONG`, `XMLTYPE`…
   */
  readonly type: string;
  /**
   * DATA_PRECISION and DATA_SCALE as Oracle gives them (null where it gives none): NUMBER(p,s); FLOAT(b) has
   * its binary precision b; TIMESTAMP(n) has scale n; INTERVAL DAY(p) TO SECOND(s) and INTERVAL YEAR(p) TO
   * MONTH have precision p (and scale s).
   */
  readonly precision: number | null;
  readonly scale: number | null;
  /** DATA_LENGTH: bytes (VARCHAR2(10 CHAR) in AL32UTF8 is 40; RAW(16) is 16). */
  readonly dataLength: number;
  /** CHAR_LENGTH: characters (0 for types that are not characters). */
  readonly charLength: number;
  readonly nullable: boolean;
  /** 1-based position in the primary key, 0 when not part of it. */
  readonly keyOrdinal: number;
  readonly identity: IdentityGeneration | null;
  /** A virtual column (VIRTUAL_COLUMN = 'YES'): never written. */
  readonly virtual: boolean;
  /**
   * The character set the column's text is kept in (NLS_CHARACTERSET, or NLS_NCHAR_CHARACTERSET for the N
   * types): `AL32UTF8`, `AL16UTF16`, `WE8MSWIN1252`…; null when not a character column or not known.
   */
  readonly charset: string | null;
}

/** A target table: its columns in table order and its primary key (null: none). */
export interface TargetTable {
  /** The owner and table as Oracle has them (the exact or the upper-case name the change named). */
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

/**
 * The column a source's column name stands for: the exact name first, then the upper-case name (Oracle's
 * default for unquoted names: a PostgreSQL `orders.note` is usually Oracle's `ORDERS.NOTE`).
 */
export function findColumn(table: TargetTable, name: string): TargetColumn | undefined {
  return table.byName.get(name) ?? table.byName.get(name.toUpperCase());
}

/**
 * ALL_TAB_COLS.DATA_TYPE as TargetColumn.type: sizes dropped (`TIMESTAMP(6) WITH TIME ZONE` →
 * `TIMESTAMP WITH TIME ZONE`, `INTERVAL DAY(2) TO SECOND(6)` → `INTERVAL DAY TO SECOND`), upper case.
 */
export function baseType(dataType: string): string {
  return dataType
    .toUpperCase()
    .replace(/\s*\([^)]*\)/g, '')
    .replace(/\s+/g, ' ')
    .trim();
}

/** Values of some columns of a table, in the same order. */
export interface ColumnValues {
  readonly columns: readonly TargetColumn[];
  readonly values: readonly BoundValue[];
}

/**
 * Which row a change finds: `key` — by the primary key (or the key the source names), plain equality;
 * `image` — a table without a key: every column the old image carries, compared exactly (NULL with IS NULL),
 * and at most one row is touched (ROWNUM = 1): duplicate rows stay duplicates, as at the source.
 */
export interface RowMatch extends ColumnValues {
  readonly by: 'key' | 'image';
}

/** A source's row in SITESYNC.APPLY_PROGRESS. */
export interface ProgressRow {
  readonly source: string;
  readonly sourceKind: string;
  readonly position: Position;
  readonly commitTimeMicros: bigint;
}

/** One resolved conflict, as SITESYNC.CONFLICTS keeps it (the columns of the PostgreSQL sink's table). */
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
  /**
   * Creates the sink's tables in the SITESYNC schema when missing (each only when missing). The SITESYNC user
   * itself is setup's (creating a user needs rights an apply user should not have).
   */
  ensureBookkeeping(): Promise<void>;
  /** The table's columns from ALL_TAB_COLS (exact names, as Oracle keeps them), or null when there is no such table. */
  describeTable(schema: string, table: string): Promise<TargetTable | null>;

  /** Marks the start of a transaction (Oracle starts it with the first write; nothing is sent). */
  begin(): Promise<void>;
  commit(): Promise<void>;
  rollback(): Promise<void>;

  /**
   * The first statement of every applied transaction: the MERGE of `row` into SITESYNC.APPLY_PROGRESS.
   * 'forward': moves the row only to a later position and returns false, writing nothing (no redo), when it
   * is already at or past it. 'always' (a retried parked transaction): writes the row in any case
   * (APPLIED_TRANSACTIONS counts up, so that capture sees the marker) but moves its position only forward;
   * returns true.
   */
  advanceProgress(row: ProgressRow, mode: 'forward' | 'always'): Promise<boolean>;
  readProgress(source: string): Promise<Position | null>;

  /**
   * Inserts one row. 'duplicate': a unique constraint already holds it (ORA-00001); Oracle undid the
   * statement only, and the transaction stays open and committable.
   */
  insert(table: TargetTable, row: ColumnValues): Promise<'inserted' | 'duplicate'>;
  /** Updates the row `match` finds; rows affected (0 or 1 for `image`). */
  update(table: TargetTable, set: ColumnValues, match: RowMatch): Promise<number>;
  /** Deletes the row `match` finds; rows affected (0 or 1 for `image`). */
  delete(table: TargetTable, match: RowMatch): Promise<number>;
  /** Whether a row `match` finds is there (locked, FOR UPDATE, until the transaction ends). */
  exists(table: TargetTable, match: RowMatch): Promise<boolean>;
  /** A TRUNCATE change: DELETE of every row (TRUNCATE TABLE is DDL in Oracle, and DDL commits). */
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
