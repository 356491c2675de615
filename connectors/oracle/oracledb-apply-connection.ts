/**
 * The apply connection (apply-connection.ts) over a real Oracle database, through `oracledb` in Thin mode: one
 * connection (a source's session owns it), autoCommit off between begin and commit, and one execute per
 * statement with typed binds — VARCHAR2 text, NVARCHAR2 text for the N types (never through the database
 * character set), temporary CLOB/NCLOB/BLOB for LOB columns, RAW bytes, and IEEE BINARY_DOUBLE/BINARY_FLOAT
 * for binary float columns. It decides nothing: every statement's text comes from oracle-statements.ts
 * (fixture-tested in test/unit/oracle-statements.test.ts), and the answers are read back as they are: rows
 * affected from the driver's rowsAffected (a statement's own rows; a trigger's writes are not counted), rows as
 * objects. It cannot run here (no database); the sink above it is proven against the simulator's connection
 * (test/helpers/oracle-simulated-apply.ts).
 *
 * The session's NLS settings (SESSION_SETTINGS: '.' as the decimal character for TO_NUMBER, binary
 * comparisons, UTC) are pinned once when the connection opens; a connection that fails is closed, never
 * reused, so no connection runs with the server's defaults.
 *
 * Three answers are Oracle errors read here: ORA-00001 on a data INSERT is 'duplicate' (Oracle undid that
 * statement only; the transaction goes on); ORA-00001 on the progress MERGE is a session racing this one to
 * insert the row first, and the MERGE runs once more (it then matches, waiting on that session's lock); on
 * the parked record's MERGE it is that same race, and the record is there. A rollback that fails closes the
 * connection (Oracle rolls back what a closed session left open) and throws: the sink then ends the session.
 *
 * Lock waits: Oracle has no lock timeout for DML; a row held by another open transaction is waited for (a
 * deadlock is ORA-00060, graded transient). The URL's `callTimeout` bounds every call when given.
 */
import type * as oracledb from 'oracledb';
import type { NewParkedRecord, ParkedRecord } from '../../src/apply/sink.ts';
import type { Position } from '../../src/events/transaction.ts';
import { baseType, targetTable, type ApplyConnection, type ColumnValues, type ConflictRow, type IdentityGeneration, type ProgressRow, type RowMatch, type SpilledPart, type TargetColumn, type TargetTable } from './apply-connection.ts';
import { loadOracledb, type OracledbDriver } from './oracledb-driver.ts';
import { oracledbConfig } from './oracledb-connection.ts';
import { describeOracleError, oraNumbers } from './oracle-errors.ts';
import * as sql from './oracle-statements.ts';

type Row = Record<string, unknown>;

/** Oracle errors the bookkeeping's creation tolerates: another session created it first. */
const ALREADY_THERE = [955, 32588, 1430, 2260, 1408];

export class OracledbApplyConnection implements ApplyConnection {
  private inTransaction = false;
  private closed = false;

  private constructor(
    private readonly driver: OracledbDriver,
    private readonly connection: oracledb.Connection,
  ) {}

  /** Opens the connection of one session; failures come out as one line (describeOracleError, no password). */
  static async open(url: string, site: string): Promise<OracledbApplyConnection> {
    let connection: oracledb.Connection | null = null;
    try {
      const config = oracledbConfig(url);
      const driver = await loadOracledb();
      connection = await driver.getConnection(config.attributes);
      if (config.callTimeout !== null) connection.callTimeout = config.callTimeout;
      for (const text of sql.SESSION_SETTINGS) await connection.execute(text);
      return new OracledbApplyConnection(driver, connection);
    } catch (error) {
      await connection?.close().catch(() => undefined);
      throw describeOracleError(error, url, site);
    }
  }

  private binds(statement: sql.Statement): Record<string, oracledb.BindParameter> {
    const d = this.driver;
    const binds: Record<string, oracledb.BindParameter> = {};
    for (const p of statement.parameters) {
      const type = {
        text: d.DB_TYPE_VARCHAR,
        ntext: d.DB_TYPE_NVARCHAR,
        clob: d.DB_TYPE_CLOB,
        nclob: d.DB_TYPE_NCLOB,
        raw: d.DB_TYPE_RAW,
        blob: d.DB_TYPE_BLOB,
        double: d.DB_TYPE_BINARY_DOUBLE,
        float: d.DB_TYPE_BINARY_FLOAT,
      }[p.type];
      const val = p.value === null ? null : p.type === 'double' || p.type === 'float' ? Number(p.value) : p.value;
      binds[p.name] = { dir: d.BIND_IN, type, val };
    }
    return binds;
  }

  /** Runs one statement (in the open transaction, if any; else committed at once). */
  private async execute(statement: sql.Statement): Promise<oracledb.Result<Row>> {
    if (this.closed) throw Object.assign(new Error('NJS-003: invalid or closed connection'), { code: 'NJS-003' });
    return this.connection.execute<Row>(statement.text, this.binds(statement), {
      autoCommit: !this.inTransaction,
      outFormat: this.driver.OUT_FORMAT_OBJECT,
      // A spilled part's BODY (BLOB) as a Buffer; everything else the statements select is text or a small number.
      fetchTypeHandler: (metadata) => (metadata.dbType === this.driver.DB_TYPE_BLOB ? { type: this.driver.BUFFER } : metadata.dbType === this.driver.DB_TYPE_NCLOB || metadata.dbType === this.driver.DB_TYPE_CLOB ? { type: this.driver.STRING } : undefined),
    });
  }

  private async rows(statement: sql.Statement): Promise<Row[]> {
    return (await this.execute(statement)).rows ?? [];
  }

  private async affected(statement: sql.Statement): Promise<number> {
    return (await this.execute(statement)).rowsAffected ?? 0;
  }

  async ensureBookkeeping(): Promise<void> {
    const present = new Set((await this.rows({ text: sql.EXISTING_TABLES, parameters: [] })).map((r) => String(r.TABLE_NAME)));
    for (const { name, create } of sql.BOOKKEEPING_TABLES) {
      if (present.has(name)) continue;
      for (const text of create) {
        // DDL commits by itself in Oracle: ensureBookkeeping runs outside any transaction.
        await this.execute({ text, parameters: [] }).catch((error: unknown) => {
          if (!oraNumbers(error).some((n) => ALREADY_THERE.includes(n))) throw error;
        });
      }
    }
  }

  async describeTable(schema: string, table: string): Promise<TargetTable | null> {
    const rows = await this.rows(sql.describeTableStatement(schema, table));
    if (rows.length === 0) return null;
    const number = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
    return targetTable(
      schema,
      table,
      rows.map(
        (r): TargetColumn => ({
          name: String(r.COLUMN_NAME),
          type: baseType(String(r.DATA_TYPE)),
          precision: number(r.DATA_PRECISION),
          scale: number(r.DATA_SCALE),
          dataLength: Number(r.DATA_LENGTH ?? 0),
          charLength: Number(r.CHAR_LENGTH ?? 0),
          nullable: r.NULLABLE === 'Y',
          keyOrdinal: Number(r.KEY_ORDINAL ?? 0),
          identity: r.IDENTITY_GENERATION === null || r.IDENTITY_GENERATION === undefined ? null : (String(r.IDENTITY_GENERATION) as IdentityGeneration),
          virtual: r.VIRTUAL_COLUMN === 'YES',
          charset: r.CHARSET === null || r.CHARSET === undefined ? null : String(r.CHARSET),
        }),
      ),
    );
  }

  async begin(): Promise<void> {
    if (this.inTransaction) throw new Error('internal: a transaction is open already');
    this.inTransaction = true; // Oracle starts the transaction with its first write
  }

  async commit(): Promise<void> {
    if (!this.inTransaction) throw new Error('internal: no open transaction to commit');
    this.inTransaction = false;
    await this.connection.commit();
  }

  async rollback(): Promise<void> {
    const open = this.inTransaction;
    this.inTransaction = false;
    if (!open || this.closed) return;
    try {
      await this.connection.rollback();
    } catch (error) {
      // No answer, a lost reply: the transaction may still be open in the session. Closing the connection
      // makes Oracle roll it back (PMON cleans up a dead session), and the caller hears of it (the sink then
      // ends the session) rather than running the next transaction inside this one.
      this.closed = true;
      await this.connection.close().catch(() => undefined);
      throw error;
    }
  }

  async advanceProgress(row: ProgressRow, mode: 'forward' | 'always'): Promise<boolean> {
    const statement = sql.progressStatement(row, mode);
    try {
      return (await this.affected(statement)) > 0;
    } catch (error) {
      if (!oraNumbers(error).includes(1)) throw error;
      // Another session inserted the row first (and committed): the MERGE now matches it.
      return (await this.affected(statement)) > 0;
    }
  }

  async readProgress(source: string): Promise<Position | null> {
    const rows = await this.rows(sql.readProgressStatement(source));
    return rows[0] ? String(rows[0].POSITION) : null;
  }

  async insert(table: TargetTable, row: ColumnValues): Promise<'inserted' | 'duplicate'> {
    try {
      await this.execute(sql.insertStatement(table, row));
      return 'inserted';
    } catch (error) {
      if (oraNumbers(error)[0] === 1) return 'duplicate'; // the statement is undone; the transaction goes on
      throw error;
    }
  }

  async update(table: TargetTable, set: ColumnValues, match: RowMatch): Promise<number> {
    return this.affected(sql.updateStatement(table, set, match));
  }

  async delete(table: TargetTable, match: RowMatch): Promise<number> {
    return this.affected(sql.deleteStatement(table, match));
  }

  async exists(table: TargetTable, match: RowMatch): Promise<boolean> {
    return (await this.rows(sql.existsStatement(table, match))).length > 0;
  }

  async deleteAll(table: TargetTable): Promise<number> {
    return this.affected(sql.deleteAllStatement(table));
  }

  async recordConflict(row: ConflictRow): Promise<void> {
    await this.execute(sql.insertConflictStatement(row));
  }

  async insertParked(record: NewParkedRecord): Promise<void> {
    await this.execute(sql.insertParkedStatement(record)).catch((error: unknown) => {
      if (!oraNumbers(error).includes(1)) throw error; // another session wrote the same record first
    });
  }

  async findParked(id: string): Promise<ParkedRecord | null> {
    const r = (await this.rows(sql.findParkedStatement(id)))[0];
    if (!r) return null;
    const text = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));
    return {
      id: String(r.ID).trim(),
      kind: r.KIND === 'refused' ? 'refused' : 'skipped',
      source: text(r.SOURCE),
      transactionId: text(r.TRANSACTION_ID),
      bodySha256: String(r.BODY_SHA256),
      userId: text(r.USER_ID),
      route: String(r.ROUTE),
      reason: String(r.REASON),
      done: Number(r.DONE) === 1,
    };
  }

  async finishParked(id: string): Promise<void> {
    await this.execute(sql.finishParkedStatement(id));
  }

  async finishRetried(transactionId: string, parkedId: string): Promise<number> {
    return this.affected(sql.finishRetriedStatement(transactionId, parkedId));
  }

  async keepPart(source: string, transactionId: string, part: number, spilled: SpilledPart): Promise<void> {
    await this.execute(sql.keepPartStatement(source, transactionId, part, spilled.schemaVersion, spilled.body));
  }

  async hasPart(source: string, transactionId: string, part: number): Promise<boolean> {
    return (await this.rows(sql.hasPartStatement(source, transactionId, part))).length > 0;
  }

  async readPart(source: string, transactionId: string, part: number): Promise<SpilledPart | null> {
    const r = (await this.rows(sql.readPartStatement(source, transactionId, part)))[0];
    return r ? { schemaVersion: Number(r.SCHEMA_VERSION), body: r.BODY as Buffer } : null;
  }

  async spilledBytes(source: string): Promise<number> {
    const r = (await this.rows(sql.spilledBytesStatement(source)))[0];
    return Number(r?.BYTES ?? 0);
  }

  async forgetParts(source: string): Promise<void> {
    await this.execute(sql.forgetPartsStatement(source));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.inTransaction = false;
    // Closing with a transaction open: Oracle rolls it back (close() never commits).
    await this.connection.close().catch(() => undefined);
  }
}
