/**
 * The thin layer between Oracle capture and the server: it only issues SQL (LogMiner's calls and queries) and
 * returns rows. Everything that decides anything — which redo logs cover an SCN range and whether one is
 * missing, how far it is safe to read across redo threads, the transaction buffer (changes held per XID until
 * COMMIT or ROLLBACK, ROLLBACK=1 rows undoing earlier ones, CSF continuation rows, spilling what does not fit
 * in memory), SQL_REDO parsed into typed values, commit order, positions and the resume point — sits above
 * it as pure code, proven here against the simulator of test/helpers/oracle-simulator.ts, which implements
 * this same interface, and run unchanged against a real database through oracledb-logminer-reader.ts.
 *
 * What Oracle gives (Oracle's LogMiner documentation; Debezium's LogMiner adapter is the reference reader):
 * - Every redo thread (one per RAC instance; one without RAC) writes its own sequence of online redo logs,
 *   archived when they fill (ARCHIVELOG mode). V$LOG / V$LOGFILE list the online ones, V$ARCHIVED_LOG the
 *   archived ones, each with FIRST_CHANGE# and NEXT_CHANGE# (the SCN range it holds) per THREAD# and SEQUENCE#.
 * - A mining session is DBMS_LOGMNR.ADD_LOGFILE for each file needed, then DBMS_LOGMNR.START_LOGMNR between two
 *   SCNs with the online catalog as dictionary; V$LOGMNR_CONTENTS then returns one row per redo record in SCN
 *   order: the transaction (XID), the operation (1 insert, 2 delete, 3 update, 5 DDL, 6 start, 7 commit,
 *   36 rollback), the table, SQL_REDO (the statement that redoes the change, with the values as literals), ROW_ID,
 *   ROLLBACK (1: this row undoes an earlier row of the transaction, as a ROLLBACK TO SAVEPOINT writes it), CSF
 *   (1: SQL_REDO goes on in the next row), RS_ID and SSN, THREAD#.
 * - Changes are logged as they are made, before anyone knows whether the transaction commits: a reader buffers
 *   them per XID and only hands on a transaction at its COMMIT (Debezium's "buffered" mode).
 * - V$TRANSACTION lists the transactions open now with the SCN each started at (START_SCN; CON_ID its container
 *   in a CDB): where the very first mining must begin so that none of them is seen without its start.
 */

/** A system change number. Up to 2^48 in practice, read as text and kept as bigint so none is rounded. */
export type Scn = bigint;

/** A redo thread (V$THREAD): one per instance of a RAC database. */
export interface RedoThread {
  readonly thread: number;
  /** OPEN: its instance runs and writes redo; a closed thread writes none (its logs are all there is). */
  readonly open: boolean;
  /**
   * The highest SCN whose redo this thread has written to its online log (for an open thread; a closed one:
   * its last). Reading past the lowest of these over open threads could miss a commit not yet written by a
   * thread that is behind (Debezium's DBZ-2552).
   */
  readonly flushedScn: Scn;
}

/** A redo log file, online or archived. */
export interface RedoLog {
  /** The file name to give DBMS_LOGMNR.ADD_LOGFILE. */
  readonly name: string;
  readonly thread: number;
  readonly sequence: number;
  /** FIRST_CHANGE#: the lowest SCN it holds. */
  readonly firstScn: Scn;
  /** NEXT_CHANGE#: the first SCN of the next log of its thread; null for the current online log (still being written). */
  readonly nextScn: Scn | null;
  readonly archived: boolean;
}

/** Operation codes of V$LOGMNR_CONTENTS that capture reads. */
export const OPERATION = { insert: 1, delete: 2, update: 3, ddl: 5, start: 6, commit: 7, selectLobLocator: 9, lobWrite: 10, rollback: 36 } as const;

/** One row of V$LOGMNR_CONTENTS. */
export interface MinedRow {
  readonly scn: Scn;
  /** The SCN where its transaction started (START_SCN), when LogMiner knows it. */
  readonly startScn: Scn | null;
  /** On a COMMIT row: its SCN (COMMIT_SCN). */
  readonly commitScn: Scn | null;
  /** TIMESTAMP (the row's redo time) as ISO 8601 with the database's offset: `2026-12-06T09:00:00+01:00`. */
  readonly timestamp: string;
  /** The transaction: XIDUSN, XIDSLT, XIDSQN as 16 upper-case hex digits (4 + 4 + 8). */
  readonly xid: string;
  readonly operationCode: number;
  /** SEG_OWNER and TABLE_NAME: the schema and table of a row change or DDL; null otherwise. */
  readonly owner: string | null;
  readonly table: string | null;
  /** SQL_REDO (one piece of it when csf). */
  readonly sqlRedo: string | null;
  readonly rowId: string | null;
  /** ROLLBACK = 1: the row undoes an earlier change of the transaction (a rollback to a savepoint). */
  readonly rollback: boolean;
  /** CSF = 1: SQL_REDO continues in the next row of the same redo record. */
  readonly csf: boolean;
  /** RS_ID and SSN: which redo record and which statement of it. */
  readonly rsId: string;
  readonly ssn: number;
  readonly thread: number;
  /** USERNAME, for logs. */
  readonly username: string | null;
}

/** A column of a captured table as ALL_TAB_COLUMNS describes it. */
export interface OracleColumn {
  readonly name: string;
  /** DATA_TYPE: `NUMBER`, `VARCHAR2`, `DATE`, `TIMESTAMP(6)`, `TIMESTAMP(6) WITH TIME ZONE`, `RAW`, `CLOB`… */
  readonly type: string;
  /** DATA_PRECISION / DATA_SCALE (null where Oracle has none), DATA_LENGTH (bytes), CHAR_LENGTH (characters). */
  readonly precision: number | null;
  readonly scale: number | null;
  readonly dataLength: number;
  readonly charLength: number;
  readonly nullable: boolean;
  /** 1-based position in the primary key, 0 when not part of it. */
  readonly keyOrdinal: number;
}

/** What capture keeps at the site, in SITESYNC.CAPTURE_PROGRESS (one row per capturing site). */
export interface OracleProgressRow {
  /** The position of the last transaction published (null: none ever was). */
  readonly lastPublished: string | null;
  /** The checkpoint (oracle-positions.ts): everything up to it was published or skipped, and where to mine from again. */
  readonly checkpoint: string;
  /** The causal context there, as JSON `{"site": "micros"}`. */
  readonly seen: string;
}

/** What setup and prepare check of a database (oracle-setup.ts turns them into one-line fixes). */
export interface OracleSetupFacts {
  /** V$DATABASE.LOG_MODE = ARCHIVELOG. */
  readonly archiveLog: boolean;
  /** V$DATABASE.SUPPLEMENTAL_LOG_DATA_MIN. */
  readonly minimalSupplementalLogging: boolean;
  /** V$DATABASE.SUPPLEMENTAL_LOG_DATA_ALL, or every captured table has an ALL COLUMNS log group. */
  readonly allColumnsLogging: boolean;
  /** Captured tables without an ALL COLUMNS supplemental log group (when the database has none), `OWNER.TABLE`. */
  readonly tablesWithoutLogging: readonly string[];
  /** Privileges LogMiner needs that the capture user lacks (`LOGMINING`, `SELECT ON V_$LOGMNR_CONTENTS`…). */
  readonly missingPrivileges: readonly string[];
  /** A multitenant database (CDB): the capture user must be a common user (`C##…`) with CONTAINER=ALL grants. */
  readonly cdb: boolean;
  readonly user: string;
  /** SITESYNC.APPLY_PROGRESS exists (capture drops relayed writes by it). */
  readonly progressTable: boolean;
  /** SITESYNC.SNAPSHOT_MARKERS exists (online snapshots write their markers there); absent: not asked. */
  readonly snapshotMarkersTable?: boolean;
}

/** A LogMiner session over some redo logs, read in batches. */
export interface MiningSession {
  /** Up to `limit` rows, in V$LOGMNR_CONTENTS order; an empty array when the window is read to its end. */
  next(limit: number): Promise<MinedRow[]>;
  /** DBMS_LOGMNR.END_LOGMNR. */
  end(): Promise<void>;
}

export interface LogMinerReader {
  /** V$DATABASE.CURRENT_SCN. */
  currentScn(): Promise<Scn>;
  /**
   * The lowest START_SCN of the transactions open now (V$TRANSACTION; in a CDB those of the PDB capture reads),
   * null when none is. Capture's very first start mines from below it, so that a transaction already open then
   * is rebuilt whole from its START when it commits, never handed on with only the changes made after.
   */
  oldestOpenTransactionScn(): Promise<Scn | null>;
  threads(): Promise<RedoThread[]>;
  /** Every online and archived redo log that holds an SCN at or above `fromScn` (archived copies of one log once). */
  logs(fromScn: Scn): Promise<RedoLog[]>;
  /**
   * Starts a mining session over `logs` for the rows with `fromScn < SCN <= toScn`: start, commit and rollback
   * rows of every transaction, and row changes and DDL of the tables of `owners` (null: of every schema that is
   * not Oracle's own, ORACLE_MAINTAINED = 'N'), SITESYNC's included.
   */
  mine(logs: readonly RedoLog[], fromScn: Scn, toScn: Scn, owners: readonly string[] | null): Promise<MiningSession>;
  /** The columns of a table now (ALL_TAB_COLUMNS, ALL_CONS_COLUMNS of its primary key); null when it is gone. */
  columns(owner: string, table: string): Promise<OracleColumn[] | null>;
  setupFacts(owners: readonly string[] | null): Promise<OracleSetupFacts>;
  /** Creates SITESYNC.CAPTURE_PROGRESS if missing. */
  ensureCaptureProgress(): Promise<void>;
  readProgress(site: string): Promise<OracleProgressRow | null>;
  writeProgress(site: string, row: OracleProgressRow): Promise<void>;
  close(): Promise<void>;
}
