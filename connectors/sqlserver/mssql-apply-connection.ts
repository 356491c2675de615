/**
 * The apply connection (apply-connection.ts) over a real SQL Server, through `mssql`: a ConnectionPool of one
 * connection (a source's session owns it), an mssql Transaction between begin and commit, and one Request per
 * statement with typed inputs — nvarchar(max) for text, varbinary(max) for bytes, float for a float column's
 * double. It decides nothing: every statement's text comes from sqlserver-statements.ts (fixture-tested in
 * test/unit/sqlserver-statements.test.ts), and the answers are read back as they are. It cannot run here
 * (no server); the sink above it is proven against the simulator's connection
 * (test/helpers/sqlserver-simulated-apply.ts).
 *
 * The session's settings (SESSION_SETTINGS: XACT_ABORT OFF, a 60-second LOCK_TIMEOUT…) are sent when the
 * connection opens and again at the start of every transaction: the pool may replace a connection that
 * failed, and the new one would start with the server's defaults.
 *
 * Not done here: enabling CDC on sitesync.apply_progress (capture instance sitesync_apply_progress). That
 * needs db_owner and is setup's job (sqlserver-setup.ts); a table created here without it lets applied
 * transactions travel back out, which `sitesync setup` and the status checks report.
 */
import type * as mssql from 'mssql';
import { loadMssql, type MssqlDriver } from './mssql-driver.ts';
import type { NewParkedRecord, ParkedRecord } from '../../src/apply/sink.ts';
import type { Position } from '../../src/events/transaction.ts';
import type { ApplyConnection, ColumnValues, ConflictRow, ProgressRow, RowMatch, SpilledPart, TargetColumn, TargetTable } from './apply-connection.ts';
import { targetTable } from './apply-connection.ts';
import { mssqlConfig } from './mssql-connection.ts';
import { describeSqlServerError, errorNumbers } from './sqlserver-errors.ts';
import * as sql from './sqlserver-statements.ts';

type Row = Record<string, unknown>;

export class MssqlApplyConnection implements ApplyConnection {
  private transaction: mssql.Transaction | null = null;

  private constructor(
    private readonly driver: MssqlDriver,
    private readonly pool: mssql.ConnectionPool,
  ) {}

  /** Opens the connection of one session; failures come out as one line (describeSqlServerError, no password). */
  static async open(url: string, site: string): Promise<MssqlApplyConnection> {
    const driver = await loadMssql();
    const pool = new driver.ConnectionPool({ ...mssqlConfig(url), pool: { max: 1, min: 0, idleTimeoutMillis: 60_000 } });
    try {
      await pool.connect();
      const connection = new MssqlApplyConnection(driver, pool);
      await connection.query({ text: sql.SESSION_SETTINGS, parameters: [] });
      return connection;
    } catch (error) {
      await pool.close().catch(() => undefined);
      throw describeSqlServerError(error, url, site);
    }
  }

  /** Runs one statement (in the open transaction, if any) and returns the rows of its last result set. */
  private async query(statement: sql.Statement): Promise<Row[]> {
    const { driver } = this;
    const request = this.transaction ? new driver.Request(this.transaction) : this.pool.request();
    for (const p of statement.parameters) {
      if (p.type === 'binary') request.input(p.name, driver.VarBinary(driver.MAX), p.value);
      else if (p.type === 'float') request.input(p.name, driver.Float, p.value === null ? null : Number(p.value));
      else request.input(p.name, driver.NVarChar(driver.MAX), p.value);
    }
    const result = await request.query(statement.text);
    const sets = (result.recordsets as unknown as Row[][] | undefined) ?? [];
    return sets.length > 0 ? sets[sets.length - 1]! : [];
  }

  private async affected(statement: sql.Statement): Promise<number> {
    const rows = await this.query(statement);
    return Number(rows[0]?.affected ?? 0);
  }

  async ensureBookkeeping(): Promise<void> {
    const tolerate = (error: unknown): void => {
      // Two sessions starting at once may both create: the loser's "already an object named" is harmless.
      if (!errorNumbers(error).includes(2714)) throw error;
    };
    await this.query({ text: sql.CREATE_SCHEMA, parameters: [] }).catch(tolerate);
    const present = new Set((await this.query({ text: sql.EXISTING_TABLES, parameters: [] })).map((r) => String(r.name)));
    for (const { name, create } of sql.BOOKKEEPING_TABLES) {
      if (!present.has(name)) await this.query({ text: create, parameters: [] }).catch(tolerate);
    }
  }

  async describeTable(schema: string, table: string): Promise<TargetTable | null> {
    const rows = await this.query(sql.describeTableStatement(schema, table));
    if (rows.length === 0) return null;
    return targetTable(
      schema,
      table,
      rows.map(
        (r): TargetColumn => ({
          name: String(r.name),
          type: String(r.type).toLowerCase(),
          maxLength: Number(r.max_length),
          precision: Number(r.precision),
          scale: Number(r.scale),
          nullable: r.is_nullable === true || r.is_nullable === 1,
          identity: r.is_identity === true || r.is_identity === 1,
          computed: r.is_computed === true || r.is_computed === 1,
          keyOrdinal: Number(r.key_ordinal ?? 0),
          collation: r.collation_name === null || r.collation_name === undefined ? null : String(r.collation_name),
        }),
      ),
    );
  }

  async begin(): Promise<void> {
    if (this.transaction) throw new Error('internal: a transaction is open already');
    const transaction = new this.driver.Transaction(this.pool);
    await transaction.begin(this.driver.ISOLATION_LEVEL.READ_COMMITTED);
    this.transaction = transaction;
    await this.query({ text: sql.SESSION_SETTINGS, parameters: [] });
  }

  async commit(): Promise<void> {
    const transaction = this.transaction;
    if (!transaction) throw new Error('internal: no open transaction to commit');
    this.transaction = null;
    await transaction.commit();
  }

  async rollback(): Promise<void> {
    const transaction = this.transaction;
    this.transaction = null;
    if (!transaction) return;
    try {
      await transaction.rollback();
    } catch (error) {
      // The server rolled it back already (a deadlock victim, a severe error): mssql says EABORT, and there is
      // nothing left to undo. Anything else (a request still running, no answer) leaves the transaction
      // perhaps open on the connection: closing the pool makes the server roll it back, and the caller hears
      // of it (the sink then ends the session), rather than nesting the next BEGIN inside it.
      const code = (error as { code?: unknown })?.code;
      if (code === 'EABORT') return;
      await this.pool.close().catch(() => undefined);
      throw error;
    }
  }

  async advanceProgress(row: ProgressRow, mode: 'forward' | 'always'): Promise<boolean> {
    return (await this.affected(sql.progressStatement(row, mode))) > 0;
  }

  async readProgress(source: string): Promise<Position | null> {
    const rows = await this.query(sql.readProgressStatement(source));
    return rows[0] ? String(rows[0].position) : null;
  }

  async insert(table: TargetTable, row: ColumnValues): Promise<'inserted' | 'duplicate'> {
    const rows = await this.query(sql.insertStatement(table, row));
    const duplicate = rows[0]?.duplicate;
    return duplicate === true || duplicate === 1 ? 'duplicate' : 'inserted';
  }

  async update(table: TargetTable, set: ColumnValues, match: RowMatch): Promise<number> {
    return this.affected(sql.updateStatement(table, set, match));
  }

  async delete(table: TargetTable, match: RowMatch): Promise<number> {
    return this.affected(sql.deleteStatement(table, match));
  }

  async exists(table: TargetTable, match: RowMatch): Promise<boolean> {
    return (await this.query(sql.existsStatement(table, match))).length > 0;
  }

  async deleteAll(table: TargetTable): Promise<number> {
    return this.affected(sql.deleteAllStatement(table));
  }

  async recordConflict(row: ConflictRow): Promise<void> {
    await this.query(sql.insertConflictStatement(row));
  }

  async insertParked(record: NewParkedRecord): Promise<void> {
    await this.query(sql.insertParkedStatement(record));
  }

  async findParked(id: string): Promise<ParkedRecord | null> {
    const r = (await this.query(sql.findParkedStatement(id)))[0];
    if (!r) return null;
    const text = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));
    return {
      id: String(r.id).trim(),
      kind: r.kind === 'refused' ? 'refused' : 'skipped',
      source: text(r.source),
      transactionId: text(r.transaction_id),
      bodySha256: String(r.body_sha256),
      userId: text(r.user_id),
      route: String(r.route),
      reason: String(r.reason),
      done: Number(r.done) === 1,
    };
  }

  async finishParked(id: string): Promise<void> {
    await this.query(sql.finishParkedStatement(id));
  }

  async finishRetried(transactionId: string, parkedId: string): Promise<number> {
    return this.affected(sql.finishRetriedStatement(transactionId, parkedId));
  }

  async keepPart(source: string, transactionId: string, part: number, spilled: SpilledPart): Promise<void> {
    await this.query(sql.keepPartStatement(source, transactionId, part, spilled.schemaVersion, spilled.body));
  }

  async hasPart(source: string, transactionId: string, part: number): Promise<boolean> {
    return (await this.query(sql.hasPartStatement(source, transactionId, part))).length > 0;
  }

  async readPart(source: string, transactionId: string, part: number): Promise<SpilledPart | null> {
    const r = (await this.query(sql.readPartStatement(source, transactionId, part)))[0];
    return r ? { schemaVersion: Number(r.schema_version), body: r.body as Buffer } : null;
  }

  async spilledBytes(source: string): Promise<number> {
    const r = (await this.query(sql.spilledBytesStatement(source)))[0];
    return Number(r?.bytes ?? 0);
  }

  async forgetParts(source: string): Promise<void> {
    await this.query(sql.forgetPartsStatement(source));
  }

  async close(): Promise<void> {
    await this.rollback().catch(() => undefined);
    await this.pool.close().catch(() => undefined);
  }
}
