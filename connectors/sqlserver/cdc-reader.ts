/**
 * The thin layer between SQL Server capture and the server: it only issues SQL and returns rows. Everything
 * that decides anything (which capture instance covers which LSN, commit order across change tables,
 * transactions, update pairs, checkpoints, the cleanup guard, commit times in UTC) sits above it as pure code
 * (change-stream.ts, capture-instances.ts, sqlserver-source.ts), so that it can be proven here against the
 * simulator of test/helpers/sqlserver-simulator.ts, which implements this same interface, and run unchanged
 * against a real server through mssql-cdc-reader.ts.
 *
 * What SQL Server's CDC gives (Microsoft's documentation, "About Change Data Capture"):
 * - The capture job (an Agent job, or the same scan in Azure SQL) reads the transaction log and writes, for
 *   each committed change to a table enabled for CDC, one row per change into each of the table's capture
 *   instances' change tables `cdc.<capture_instance>_CT`, and one row per committed transaction into
 *   `cdc.lsn_time_mapping` (start_lsn = the commit LSN, tran_begin_time, tran_end_time in the server's local
 *   time, tran_id). Rows with tran_id = 0x00 are the job's own markers, not transactions.
 * - A change row has `__$start_lsn` (the commit LSN of its transaction: the same for all its changes),
 *   `__$command_id` (the order of the operations of one transaction), `__$seqval` (the change's place in the
 *   log), `__$operation` (1 delete, 2 insert, 3 the row before an update, 4 the row after it; a 3 and its 4
 *   share one seqval), `__$update_mask`, and the captured columns.
 * - A table has at most two capture instances at once; each has its own column list, fixed when it was
 *   created (a column added to the table later is not captured until a new instance is made). Each instance's
 *   `start_lsn` in cdc.change_tables is the lowest LSN it holds: set when it is created, moved up by the
 *   cleanup job, which deletes older rows (and older lsn_time_mapping rows) after the retention period.
 *   `sys.fn_cdc_get_min_lsn(instance)` returns it.
 */
import type { Position } from '../../src/events/transaction.ts';

/**
 * A log sequence number as 20 upper-case hex digits (its 10 bytes, big-endian: virtual log file, block, slot),
 * so that two LSNs order as strings (sqlserver-positions.ts).
 */
export type Lsn = Position;

/** A column a capture instance captures, as cdc.captured_columns and sys.columns describe it. */
export interface CapturedColumn {
  readonly name: string;
  /** The base type as sys.types names it, lower case: `int`, `decimal`, `nvarchar`, `datetime2`, `uniqueidentifier`. */
  readonly type: string;
  /** sys.columns.max_length: bytes (-1 for `max`). */
  readonly maxLength: number;
  /** sys.columns.precision and scale (scale is the fractional-second digits of the time types). */
  readonly precision: number;
  readonly scale: number;
  /** 1-based position in the source table's primary key, 0 when not part of it. */
  readonly keyOrdinal: number;
}

export interface CaptureInstance {
  /** cdc.change_tables.capture_instance: `dbo_orders`. Its change table is `cdc.[<name>_CT]`. */
  readonly name: string;
  /** The source table. */
  readonly schema: string;
  readonly table: string;
  /** cdc.change_tables.start_lsn (= sys.fn_cdc_get_min_lsn): the lowest LSN whose rows it still holds. */
  readonly startLsn: Lsn;
  /** cdc.change_tables.create_date as ISO 8601 text: the newer of two instances with one start_lsn wins. */
  readonly createDate: string;
  /** The captured columns, in the change table's column order (cdc.captured_columns.column_ordinal). */
  readonly columns: readonly CapturedColumn[];
}

/**
 * A captured column's value as the reader's SELECT returns it (the projection of sqlserver-kinds.ts, which
 * converts in SQL what the driver would lose: decimals, bigints and times come as text):
 * - bit: boolean; tinyint, smallint, int: number; real, float: number;
 * - bigint: decimal text; decimal, numeric, money, smallmoney: text with the type's scale (`12.50`, `3.0000`);
 * - char, varchar, nchar, nvarchar, text, ntext, xml: string (char/nchar with their trailing spaces);
 * - binary, varbinary, image, rowversion: Buffer;
 * - uniqueidentifier: text as SQL Server prints it (upper case);
 * - date: `YYYY-MM-DD`; time: `hh:mm:ss[.fffffff]`; datetime, datetime2, smalldatetime:
 *   `YYYY-MM-DDThh:mm:ss[.fffffff]`; datetimeoffset: the same followed by `+hh:mm` or `-hh:mm`;
 * - anything else (sql_variant, hierarchyid, geography, geometry): its text form.
 * NULL is null.
 */
export type ProjectedValue = string | number | boolean | Buffer | null;

export type CdcOperation = 1 | 2 | 3 | 4;

/**
 * Where a change row sits in commit order: commit LSN, then command id, then seqval, then operation.
 * Microsoft's page on the change tables says `__$seqval` "should not be used for ordering" the changes of a
 * transaction and names `__$command_id` (the order of operations in the transaction) for it; seqval and the
 * operation then order the rows of one operation (a 3 before its 4, which share one seqval).
 */
export interface ChangeKey {
  readonly startLsn: Lsn;
  readonly commandId: number;
  readonly seqval: Lsn;
  readonly operation: CdcOperation;
}

/** One row of a change table. */
export interface ChangeRow extends ChangeKey {
  /** One per captured column of the instance, in its order. */
  readonly values: readonly ProjectedValue[];
}

/** One committed transaction of cdc.lsn_time_mapping. */
export interface TransactionTime {
  readonly startLsn: Lsn;
  /**
   * tran_end_time converted to the server's offset at that time, as ISO 8601 with the offset
   * (`2026-12-06T09:00:00.123+01:00`): the server stores local time without a zone; the reader converts it with
   * `AT TIME ZONE` and the server's own zone rules, so that daylight-saving changes are its own.
   */
  readonly endTime: string;
}

/** What capture keeps at the site, in sitesync.capture_progress (one row per capturing site). */
export interface CaptureProgressRow {
  /** The position of the last transaction published (null: none ever was). */
  readonly lastPublished: Lsn | null;
  /** The commit LSN everything up to which was published or skipped. */
  readonly checkpoint: Lsn;
  /** The causal context there, as JSON `{"site": "micros"}`. */
  readonly seen: string;
  /** The capture instances known at the checkpoint, as JSON `[{"name", "startLsn"}]` (the cleanup guard's). */
  readonly instances: string;
}

/** What sitesync setup and prepare check of a server (sqlserver-setup.ts turns them into one-line fixes). */
export interface SetupFacts {
  readonly database: string;
  readonly cdcEnabled: boolean;
  /** null when it cannot be told (no VIEW SERVER STATE, Azure SQL). */
  readonly agentRunning: boolean | null;
  /** The login is in db_owner (CDC's own procedures need it) or sysadmin. */
  readonly isDbOwner: boolean;
  /** The sitesync schema and its tables exist. */
  readonly bookkeepingReady: boolean;
  /** sitesync.apply_progress has a capture instance (capture drops relayed writes by it). */
  readonly progressCaptured: boolean;
  /** User tables with a capture instance, `schema.table`. */
  readonly capturedTables: readonly string[];
  /** User tables without one. */
  readonly uncapturedTables: readonly string[];
  /** The retention of the cleanup job in minutes (msdb.dbo.cdc_jobs), null if unknown. */
  readonly retentionMinutes: number | null;
}

export interface CdcReader {
  /** The commit LSN of the last transaction the capture job has written (lsn_time_mapping, tran_id <> 0x00); null if none. */
  maxTransactionLsn(): Promise<Lsn | null>;
  /** Every capture instance of the database, sitesync's own included. */
  captureInstances(): Promise<CaptureInstance[]>;
  /**
   * Rows of one instance's change table with `fromLsn < __$start_lsn <= toLsn`, after `after` in ChangeKey
   * order (commit LSN, command id, seqval, operation) when given, at most `limit`, in that order.
   */
  changes(instance: CaptureInstance, fromLsn: Lsn, toLsn: Lsn, after: ChangeKey | null, limit: number): Promise<ChangeRow[]>;
  /** The lsn_time_mapping rows of these commit LSNs (those the cleanup job has not removed). */
  transactionTimes(lsns: readonly Lsn[]): Promise<TransactionTime[]>;
  setupFacts(): Promise<SetupFacts>;
  /** Creates the sitesync schema and capture_progress if missing (the capture login's right to do so is checked by setup). */
  ensureCaptureProgress(): Promise<void>;
  readProgress(site: string): Promise<CaptureProgressRow | null>;
  writeProgress(site: string, row: CaptureProgressRow): Promise<void>;
  close(): Promise<void>;
}
