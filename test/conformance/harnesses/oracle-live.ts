/**
 * Oracle under the conformance suites, LIVE: a real database through `oracledb` (Thin mode), for
 * test/integration/oracle-live.test.ts when ORACLE_URL names the capture user of a database in ARCHIVELOG mode
 * with supplemental logging (docker-compose's `oracle` profile makes one: deploy/oracle/01-sitesync-logminer.sh,
 * user C##SITESYNC connected to FREEPDB1). The simulated twin is oracle.ts (the lead's); this one proves the
 * thin layer the simulator stands in for (oracledb-logminer-reader.ts, oracledb-apply-connection.ts, and
 * LogMiner's real SQL_REDO through the parser).
 *
 * NOT RUN YET: no Oracle runs on this project's machines. Written against oracledb 6.10's API (getConnection,
 * execute with named binds, commit/rollback) and typechecked only; expect a first run to need fixes.
 *
 * - Each fixture has a user (schema) of its own, `CONF_<hex>` (the URL's user needs CREATE USER and DROP USER
 *   in the PDB: the compose profile grants them), its tables in Oracle types with quoted lower-case names as
 *   the suites spell them, each with ALL COLUMNS supplemental logging as an operator would add it; cleanup
 *   drops the user CASCADE and removes the bookkeeping rows the fixture made.
 * - SITESYNC.APPLY_PROGRESS is created as the sink creates it (oracle-statements.ts BOOKKEEPING_TABLES, with its
 *   ALL COLUMNS logging) when missing: capture refuses to start without it.
 * - Writes as an application makes them: one transaction, one statement per change, every value bound as text
 *   in Oracle's text form (oracle-kinds.ts oracleText) inside the conversion its type needs (TO_NUMBER,
 *   TO_TIMESTAMP…, HEXTORAW), under the session formats the reader also pins.
 * - Relayed writes as the sink makes them: its progress MERGE (oracle-statements.ts progressStatement, mode
 *   'always' so the row changes every time) first, in the same transaction.
 * - Rows read back as Oracle text (TO_CHAR with the formats of the spec, RAWTOHEX; BINARY_FLOAT/DOUBLE as
 *   numbers) and through oracle-kinds' canonicalText with the columns the reader describes.
 * - interrupt closes the sink's connections (Oracle rolls back what a closed session left open), as the SQL
 *   Server harness does when it cannot KILL: ALTER SYSTEM KILL SESSION needs a right the test user lacks.
 *
 * Kinds tried by the kinds round trip: those Oracle holds exactly. Not string or bytes (Oracle stores '' and
 * an empty RAW as NULL), not int64 (NUMBER(18), the int64 kind's type, cannot hold its extremes), not
 * interval (a PostgreSQL interval mixes months and days, which no Oracle interval type does), and no
 * boolean, date, time, json, uuid, enum or arrays.
 */
import { randomBytes } from 'node:crypto';
import type * as oracledb from 'oracledb';
import type { ApplyConnection } from '../../../connectors/oracle/apply-connection.ts';
import type { OracleColumn } from '../../../connectors/oracle/logminer-reader.ts';
import { OracledbApplyConnection } from '../../../connectors/oracle/oracledb-apply-connection.ts';
import { oracledbConfig } from '../../../connectors/oracle/oracledb-connection.ts';
import { loadOracledb, type OracledbDriver } from '../../../connectors/oracle/oracledb-driver.ts';
import { OracleLogMinerReader, sessionSetupStatement } from '../../../connectors/oracle/oracledb-logminer-reader.ts';
import { oraNumbers } from '../../../connectors/oracle/oracle-errors.ts';
import { canonicalText, oracleText } from '../../../connectors/oracle/oracle-kinds.ts';
import { OracleSink } from '../../../connectors/oracle/oracle-sink.ts';
import { OracleSource } from '../../../connectors/oracle/oracle-source.ts';
import { BOOKKEEPING_TABLES, progressStatement } from '../../../connectors/oracle/oracle-statements.ts';
import { createLogger } from '../../../src/observability/logger.ts';
import type { SinkFixture, SinkHarness, SourceFixture, SourceHarness, SourceOp } from '../harness.ts';
import { sortRows, type TableSpec } from '../tables.ts';

/** Oracle's type for each kind the tables use. */
export const ORACLE_LIVE_TYPES: Readonly<Record<string, string>> = {
  int16: 'NUMBER(4)',
  int32: 'NUMBER(9)',
  int64: 'NUMBER(18)',
  float32: 'BINARY_FLOAT',
  float64: 'BINARY_DOUBLE',
  'decimal(12,2)': 'NUMBER(12,2)',
  string: 'NVARCHAR2(2000)',
  bytes: 'RAW(2000)',
  timestamp: 'TIMESTAMP(6)',
  timestamptz: 'TIMESTAMP(6) WITH TIME ZONE',
};

/** The kinds the kinds round trip tries (see the file comment for those left out). */
export const ORACLE_LIVE_KINDS = ['int16', 'int32', 'float32', 'float64', 'decimal(12,2)', 'timestamp', 'timestamptz'];

/** The suites' source site (sink-suite.ts SOURCE), and the one the source suite's relayed writes claim. */
const SUITE_SOURCE = 'remote';

const quote = (name: string): string => `"${name.replace(/"/g, '""')}"`;
const qualified = (schema: string, table: string): string => `${quote(schema)}.${quote(table)}`;

type Binds = Record<string, oracledb.BindParameter>;

/** One session of the test user, opened on first use, the reader's formats pinned. */
export class LiveOracle {
  private opening: Promise<{ driver: OracledbDriver; connection: oracledb.Connection }> | null = null;

  constructor(readonly url: string) {}

  async connect(): Promise<{ driver: OracledbDriver; connection: oracledb.Connection }> {
    const opening = (this.opening ??= (async () => {
      const driver = await loadOracledb();
      const connection = await driver.getConnection(oracledbConfig(this.url).attributes);
      await connection.execute(sessionSetupStatement().sql);
      return { driver, connection };
    })());
    try {
      return await opening;
    } catch (error) {
      if (this.opening === opening) this.opening = null; // the next call tries again
      throw error;
    }
  }

  /** Rows of one statement (committed at once unless inside `inTransaction`). */
  async query(sql: string, binds: Binds = {}, autoCommit = true): Promise<Record<string, unknown>[]> {
    const { driver, connection } = await this.connect();
    const result = await connection.execute<Record<string, unknown>>(sql, binds, { outFormat: driver.OUT_FORMAT_OBJECT, autoCommit });
    return result.rows ?? [];
  }

  /** Runs `work` in one transaction: committed when it returns, rolled back when it throws. */
  async inTransaction(work: (run: (sql: string, binds?: Binds) => Promise<void>) => Promise<void>): Promise<void> {
    const { connection } = await this.connect();
    try {
      await work(async (sql, binds = {}) => {
        await connection.execute(sql, binds, { autoCommit: false });
      });
      await connection.commit();
    } catch (error) {
      await connection.rollback().catch(() => undefined);
      throw error;
    }
  }

  /** A statement whose listed ORA errors mean "already so" (ORA-00955 exists, ORA-01918 no such user…). */
  async tolerate(sql: string, ...numbers: number[]): Promise<void> {
    try {
      await this.query(sql);
    } catch (error) {
      if (!oraNumbers(error).some((n) => numbers.includes(n))) throw error;
    }
  }

  async close(): Promise<void> {
    const opening = this.opening;
    this.opening = null;
    if (opening) await (await opening.catch(() => null))?.connection.close().catch(() => undefined);
  }
}

/** SITESYNC.APPLY_PROGRESS as the sink creates it (with its ALL COLUMNS logging), unless there. */
export async function ensureApplyProgress(server: LiveOracle): Promise<void> {
  const progress = BOOKKEEPING_TABLES.find((t) => t.name === 'APPLY_PROGRESS')!;
  // ORA-00955: name already used; ORA-32588: supplemental logging attribute exists.
  for (const sql of progress.create) await server.tolerate(sql, 955, 32588);
}

/** The fixture's user (its schema) and each table, with ALL COLUMNS supplemental logging. */
export async function createLiveTables(server: LiveOracle, schema: string, tables: readonly TableSpec[], password: string): Promise<void> {
  await server.tolerate(`CREATE USER ${quote(schema)} IDENTIFIED BY "${password}" QUOTA UNLIMITED ON USERS`, 1920);
  for (const t of tables) {
    const columns = t.columns.map((c) => {
      const type = ORACLE_LIVE_TYPES[c.kind];
      if (type === undefined) throw new Error(`the live Oracle harness has no type for kind ${c.kind}`);
      return `${quote(c.name)} ${type}${c.key ? ' NOT NULL' : ''}`;
    });
    const key = t.columns.filter((c) => c.key).map((c) => quote(c.name));
    await server.query(`CREATE TABLE ${qualified(schema, t.table)} (${columns.join(', ')}${key.length > 0 ? `, PRIMARY KEY (${key.join(', ')})` : ''})`);
    await server.query(`ALTER TABLE ${qualified(schema, t.table)} ADD SUPPLEMENTAL LOG DATA (ALL) COLUMNS`);
  }
}

/** The fixture's user and everything in it, gone (nothing when it is not there). */
export async function dropLiveSchema(server: LiveOracle, schema: string): Promise<void> {
  await server.tolerate(`DROP USER ${quote(schema)} CASCADE`, 1918);
}

/** Columns as capture describes them (the reader's own query), per table, cached. */
class ColumnCache {
  private readonly cache = new Map<string, Promise<OracleColumn[]>>();
  constructor(private readonly url: string) {}
  get(schema: string, table: string): Promise<OracleColumn[]> {
    const key = `${schema}.${table}`;
    let columns = this.cache.get(key);
    if (columns === undefined) {
      columns = (async () => {
        const reader = new OracleLogMinerReader({ url: this.url, site: 'conformance' });
        try {
          const found = await reader.columns(schema, table);
          if (found === null) throw new Error(`no table ${key} at the Oracle database`);
          return found;
        } finally {
          await reader.close();
        }
      })();
      this.cache.set(key, columns);
    }
    return columns;
  }
}

/** The expression that turns a bind holding Oracle text into a value of the column's type. */
function writeExpression(column: OracleColumn, p: string): string {
  const type = column.type.toUpperCase();
  if (type === 'NUMBER' || type === 'FLOAT') return `TO_NUMBER(${p})`;
  if (type === 'BINARY_FLOAT') return `TO_BINARY_FLOAT(${p})`;
  if (type === 'BINARY_DOUBLE') return `TO_BINARY_DOUBLE(${p})`;
  if (type === 'RAW') return `HEXTORAW(${p})`;
  if (type === 'DATE') return `TO_DATE(${p}, 'YYYY-MM-DD HH24:MI:SS')`;
  if (/^TIMESTAMP\(\d\) WITH TIME ZONE$/.test(type)) return `TO_TIMESTAMP_TZ(${p}, 'YYYY-MM-DD HH24:MI:SS.FF9 TZH:TZM')`;
  if (/^TIMESTAMP\(\d\)$/.test(type)) return `TO_TIMESTAMP(${p}, 'YYYY-MM-DD HH24:MI:SS.FF9')`;
  return p;
}

/** The select-list item reading a column back as Oracle text (BINARY_FLOAT/DOUBLE as numbers, see readBack). */
function readExpression(column: OracleColumn, alias: string): string {
  const name = quote(column.name);
  const type = column.type.toUpperCase();
  if (type === 'NUMBER' || type === 'FLOAT') return `TO_CHAR(${name}, 'TM9') AS ${alias}`;
  if (type === 'RAW') return `RAWTOHEX(${name}) AS ${alias}`;
  if (type === 'DATE') return `TO_CHAR(${name}, 'YYYY-MM-DD HH24:MI:SS') AS ${alias}`;
  if (/^TIMESTAMP\(\d\) WITH TIME ZONE$/.test(type)) return `TO_CHAR(${name}, 'YYYY-MM-DD HH24:MI:SS.FF9 TZH:TZM') AS ${alias}`;
  if (/^TIMESTAMP\(\d\)$/.test(type)) return `TO_CHAR(${name}, 'YYYY-MM-DD HH24:MI:SS.FF9') AS ${alias}`;
  return `${name} AS ${alias}`;
}

/** A value read by readExpression as Oracle text. */
function readBack(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'number') return Number.isNaN(value) ? 'Nan' : value === Infinity ? 'Inf' : value === -Infinity ? '-Inf' : String(value);
  return String(value);
}

/** One change as SQL with its binds (values as Oracle text). */
async function opStatement(columns: ColumnCache, schema: string, op: SourceOp): Promise<{ sql: string; binds: Binds }> {
  const all = await columns.get(schema, op.table.table);
  const binds: Binds = {};
  const value = (name: string, canonical: string): string => {
    const column = all.find((c) => c.name === name);
    if (!column) throw new Error(`no column ${name} in ${schema}.${op.table.table}`);
    const p = `p${Object.keys(binds).length}`;
    binds[p] = { val: oracleText(column, canonical) };
    return writeExpression(column, `:${p}`);
  };
  const where = (w: Readonly<Record<string, string | null>>): string =>
    Object.entries(w)
      .map(([c, text]) => (text === null ? `${quote(c)} IS NULL` : `${quote(c)} = ${value(c, text)}`))
      .join(' AND ');
  const table = qualified(schema, op.table.table);
  switch (op.op) {
    case 'insert': {
      const names = Object.keys(op.values);
      const values = names.map((n) => {
        const text = op.values[n] ?? null;
        return text === null ? 'NULL' : value(n, text);
      });
      return { sql: `INSERT INTO ${table} (${names.map(quote).join(', ')}) VALUES (${values.join(', ')})`, binds };
    }
    case 'update': {
      const set = Object.entries(op.set)
        .map(([c, text]) => `${quote(c)} = ${text === null ? 'NULL' : value(c, text)}`)
        .join(', ');
      return { sql: `UPDATE ${table} SET ${set} WHERE ${where(op.where)}`, binds };
    }
    case 'delete':
      return { sql: `DELETE FROM ${table} WHERE ${where(op.where)}`, binds };
  }
}

/** Commits `ops` as one transaction, as an application would (the relayed marker first when `from` is given). */
export async function liveCommit(server: LiveOracle, columns: ColumnCache, schema: string, ops: readonly SourceOp[], relayed?: { from: string; commitTimeMicros: bigint }): Promise<void> {
  const statements = await Promise.all(ops.map((op) => opStatement(columns, schema, op)));
  await server.inTransaction(async (run) => {
    if (relayed !== undefined) {
      const marker = progressStatement({ source: relayed.from, sourceKind: 'postgres', position: '0000000000000001', commitTimeMicros: relayed.commitTimeMicros }, 'always');
      const binds: Binds = {};
      for (const p of marker.parameters) binds[p.name] = { val: p.value };
      await run(marker.text, binds);
    }
    for (const s of statements) await run(s.sql, s.binds);
  });
}

/** A table's rows in canonical text, sorted: read as Oracle text, then canonicalText with capture's columns. */
export async function liveRows(server: LiveOracle, columns: ColumnCache, schema: string, spec: TableSpec): Promise<(string | null)[][]> {
  const all = await columns.get(schema, spec.table);
  const chosen = spec.columns.map((c) => {
    const column = all.find((a) => a.name === c.name);
    if (!column) throw new Error(`no column ${c.name} in ${schema}.${spec.table} at the Oracle database`);
    return column;
  });
  const select = chosen.map((c, i) => readExpression(c, `C${i}`)).join(', ');
  const rows = await server.query(`SELECT ${select} FROM ${qualified(schema, spec.table)}`);
  return sortRows(rows.map((r) => chosen.map((c, i) => canonicalText(c, readBack(r[`C${i}`])))));
}

/**
 * Bookkeeping rows a test made, removed: the APPLY_PROGRESS, PARKED, SPILLED_PARTS and CONFLICTS rows of
 * `sources`, and the CAPTURE_PROGRESS row of `site` (each table only when it exists).
 */
export async function forgetBookkeepingRows(server: LiveOracle, { sources, site }: { readonly sources: readonly string[]; readonly site: string | null }): Promise<void> {
  const tables = new Set((await server.query("SELECT TABLE_NAME FROM ALL_TABLES WHERE OWNER = 'SITESYNC'")).map((r) => String(r.TABLE_NAME)));
  const bySource: [string, string][] = [
    ['APPLY_PROGRESS', 'SOURCE'],
    ['PARKED', 'SOURCE'],
    ['SPILLED_PARTS', 'SOURCE'],
    ['CONFLICTS', 'REMOTE_SITE'],
  ];
  for (const [table, column] of bySource) {
    if (!tables.has(table)) continue;
    for (const source of sources) await server.query(`DELETE FROM "SITESYNC".${quote(table)} WHERE ${quote(column)} = :source`, { source: { val: source } });
  }
  if (site !== null && tables.has('CAPTURE_PROGRESS')) await server.query('DELETE FROM "SITESYNC"."CAPTURE_PROGRESS" WHERE "SITE" = :site', { site: { val: site } });
}

const forgetSuiteRows = (server: LiveOracle, site: string | null): Promise<void> => forgetBookkeepingRows(server, { sources: [SUITE_SOURCE], site });

const logger = createLogger('silent');

const newSchema = (): string => `CONF_${randomBytes(4).toString('hex').toUpperCase()}`;
const newPassword = (): string => `Conf-${randomBytes(6).toString('hex')}`;

export function oracleLiveSourceHarness(url: string): SourceHarness {
  const server = new LiveOracle(url);
  const columns = new ColumnCache(url);
  return {
    name: 'oracle (live)',
    kinds: ORACLE_LIVE_KINDS,
    async open(tables) {
      const schema = newSchema();
      const site = `conf_${randomBytes(3).toString('hex')}`;
      await ensureApplyProgress(server);
      await createLiveTables(server, schema, tables, newPassword());
      const fixture: SourceFixture = {
        schema,
        source: (maxPartBytes) =>
          new OracleSource({
            site,
            reader: () => new OracleLogMinerReader({ url, site }),
            tables: tables.map((t) => `${schema}.${t.table}`),
            maxPartBytes,
            pollIntervalMs: 200,
            progressWriteIntervalMs: 0,
            logger,
          }),
        commit: (ops) => liveCommit(server, columns, schema, ops),
        commitRelayed: (from, commitTimeMicros, ops) => liveCommit(server, columns, schema, ops, { from, commitTimeMicros }),
        async cleanup() {
          try {
            await dropLiveSchema(server, schema);
            await forgetSuiteRows(server, site);
          } finally {
            await server.close();
          }
        },
      };
      return fixture;
    },
  };
}

/** The Oracle sink on the live database, told its source is of `sourceKind`. */
export function oracleLiveSinkHarness(url: string, sourceKind: string, positionDigits: number): SinkHarness {
  const server = new LiveOracle(url);
  const columns = new ColumnCache(url);
  return {
    name: `oracle (live, from a ${sourceKind} source)`,
    kinds: ORACLE_LIVE_KINDS,
    sourceKind,
    position: (n) => n.toString(16).toUpperCase().padStart(positionDigits, '0'),
    async open(tables) {
      const schema = newSchema();
      const site = `conf_${randomBytes(3).toString('hex')}`;
      await forgetSuiteRows(server, null);
      await createLiveTables(server, schema, tables, newPassword());
      const opened: ApplyConnection[] = [];
      const fixture: SinkFixture = {
        schema,
        sink: () =>
          new OracleSink({
            site,
            connect: async () => {
              const connection = await OracledbApplyConnection.open(url, site);
              opened.push(connection);
              return connection;
            },
            conflictPolicy: () => ({ policy: 'last-writer-wins', priority: [] }),
            sourceKindOf: () => sourceKind,
            logger,
          }),
        rows: (spec) => liveRows(server, columns, schema, spec),
        async interrupt() {
          for (const connection of opened.splice(0)) await connection.close().catch(() => undefined);
        },
        async cleanup() {
          try {
            await dropLiveSchema(server, schema);
            await forgetSuiteRows(server, null);
          } finally {
            await server.close();
          }
        },
      };
      return fixture;
    },
  };
}
