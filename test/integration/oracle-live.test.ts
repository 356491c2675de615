/**
 * The Oracle connector against a REAL Oracle database, when ORACLE_URL is set: the source and sink conformance
 * suites (test/conformance/harnesses/oracle-live.ts) and the PostgreSQL ↔ Oracle mesh of oracle-mesh.test.ts,
 * over the connector's own oracledb code (oracledb-logminer-reader.ts, oracledb-apply-connection.ts) and
 * LogMiner's real SQL_REDO, instead of the simulator. Without ORACLE_URL it shows one skipped test saying how to
 * run it.
 *
 * NOT RUN YET: no Oracle runs on this project's machines; this file and its harness are typechecked only.
 *
 * ORACLE_URL: the capture user of a database in ARCHIVELOG mode with minimal supplemental logging, connected
 * to the PDB the tables go in, holding LogMiner's grants (CONTAINER=ALL in a CDB), the rights to apply to any
 * table, to create and drop users there (each fixture is a user of its own), and a SITESYNC schema — what
 * docker-compose's `oracle` profile sets up (deploy/oracle/01-sitesync-logminer.sh: C##SITESYNC on FREEPDB1).
 * The mesh also needs the tests' PostgreSQL (wal_level = logical) and RabbitMQ, as every integration test; its
 * Oracle table is "public"."items" in a user "public" it creates (and drops when it is empty again).
 * RECORD=1 also writes every reader query and its rows as fixtures (oracledb-logminer-reader.ts).
 *
 * LogMiner reads what the log writer has flushed: windows close on V$THREAD.LAST_REDO_SCN, which an idle
 * database moves rarely (a commit moves it); waits here are the suites' own, and longer in the mesh than in its
 * simulated run.
 */
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { createOracleConnector, ORACLEDB_IO } from '../../connectors/oracle/index.ts';
import type { OracleColumn } from '../../connectors/oracle/logminer-reader.ts';
import { canonicalText, oracleText } from '../../connectors/oracle/oracle-kinds.ts';
import { OracleLogMinerReader } from '../../connectors/oracle/oracledb-logminer-reader.ts';
import { sinkConformance } from '../conformance/sink-suite.ts';
import { sourceConformance } from '../conformance/source-suite.ts';
import { ensureApplyProgress, forgetBookkeepingRows, LiveOracle, oracleLiveSinkHarness, oracleLiveSourceHarness } from '../conformance/harnesses/oracle-live.ts';
import type { SourceOp } from '../conformance/harness.ts';
import { sortRows } from '../conformance/tables.ts';
import { MESH_ITEMS, ORACLE_DDL, oracleMesh, SCHEMA, type OracleMeshBackend } from './oracle-mesh.test.ts';

const ORACLE_URL = process.env.ORACLE_URL;

const HOW_TO_RUN =
  'ORACLE_URL is not set: these tests need a real Oracle database with ARCHIVELOG and supplemental logging. Run one with ' +
  '`docker-compose --profile oracle up -d oracle` (gvenzl/oracle-free:23; the first start takes minutes: wait until ' +
  '`docker-compose --profile oracle ps oracle` says healthy; deploy/oracle/01-sitesync-logminer.sh makes user C##SITESYNC), then ' +
  '`ORACLE_URL="oracle://C%23%23SITESYNC:<SITESYNC_ORACLE_TEST_PASSWORD, default Dev-only-test-1>@127.0.0.1:1521/FREEPDB1" ' +
  'npm run test:oracle-live` (or node --import tsx --test --test-concurrency=1 test/integration/oracle-live.test.ts)';

const quote = (name: string): string => `"${name.replace(/"/g, '""')}"`;
const TABLE = `${quote(SCHEMA)}.${quote(MESH_ITEMS.table)}`;

type Binds = Record<string, { val: string }>;

/** The expression that turns a bind holding Oracle text into a value of the column's type (the mesh's types). */
function writeExpression(column: OracleColumn, p: string): string {
  const type = column.type.toUpperCase();
  if (type === 'NUMBER') return `TO_NUMBER(${p})`;
  if (type === 'BINARY_DOUBLE') return `TO_BINARY_DOUBLE(${p})`;
  if (type === 'RAW') return `HEXTORAW(${p})`;
  if (type === 'DATE') return `TO_DATE(${p}, 'YYYY-MM-DD HH24:MI:SS')`;
  if (/^TIMESTAMP\(\d\) WITH TIME ZONE$/.test(type)) return `TO_TIMESTAMP_TZ(${p}, 'YYYY-MM-DD HH24:MI:SS.FF9 TZH:TZM')`;
  if (/^TIMESTAMP\(\d\)$/.test(type)) return `TO_TIMESTAMP(${p}, 'YYYY-MM-DD HH24:MI:SS.FF9')`;
  return p;
}

/** The select-list item reading a column back as Oracle text (BINARY_DOUBLE as a number, see readBack). */
function readExpression(column: OracleColumn, alias: string): string {
  const name = quote(column.name);
  const type = column.type.toUpperCase();
  if (type === 'NUMBER') return `TO_CHAR(${name}, 'TM9') AS ${alias}`;
  if (type === 'RAW') return `RAWTOHEX(${name}) AS ${alias}`;
  if (type === 'DATE') return `TO_CHAR(${name}, 'YYYY-MM-DD HH24:MI:SS') AS ${alias}`;
  if (/^TIMESTAMP\(\d\) WITH TIME ZONE$/.test(type)) return `TO_CHAR(${name}, 'YYYY-MM-DD HH24:MI:SS.FF9 TZH:TZM') AS ${alias}`;
  if (/^TIMESTAMP\(\d\)$/.test(type)) return `TO_CHAR(${name}, 'YYYY-MM-DD HH24:MI:SS.FF9') AS ${alias}`;
  return `${name} AS ${alias}`;
}

function readBack(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'number') return Number.isNaN(value) ? 'Nan' : value === Infinity ? 'Inf' : value === -Infinity ? '-Inf' : String(value);
  return String(value);
}

/** One change as SQL with its binds: each canonical text as the column's Oracle text, inside its conversion. */
function opStatement(columns: readonly OracleColumn[], op: SourceOp): { sql: string; binds: Binds } {
  const binds: Binds = {};
  const value = (name: string, canonical: string | null): string => {
    if (canonical === null) return 'NULL';
    const column = columns.find((c) => c.name === name);
    if (!column) throw new Error(`no column ${name} in ${TABLE}`);
    const p = `p${Object.keys(binds).length}`;
    binds[p] = { val: oracleText(column, canonical) };
    return writeExpression(column, `:${p}`);
  };
  const where = (w: Readonly<Record<string, string | null>>): string =>
    Object.entries(w)
      .map(([c, text]) => (text === null ? `${quote(c)} IS NULL` : `${quote(c)} = ${value(c, text)}`))
      .join(' AND ');
  switch (op.op) {
    case 'insert': {
      const names = Object.keys(op.values);
      const values = names.map((n) => value(n, op.values[n] ?? null));
      return { sql: `INSERT INTO ${TABLE} (${names.map(quote).join(', ')}) VALUES (${values.join(', ')})`, binds };
    }
    case 'update': {
      const set = Object.entries(op.set).map(([c, text]) => `${quote(c)} = ${value(c, text)}`);
      return { sql: `UPDATE ${TABLE} SET ${set.join(', ')} WHERE ${where(op.where)}`, binds };
    }
    case 'delete':
      return { sql: `DELETE FROM ${TABLE} WHERE ${where(op.where)}`, binds };
  }
}

/** The mesh's Oracle site on the live database: "public"."items" in a user "public" of the ORACLE_URL's PDB. */
function liveMeshBackend(url: string): OracleMeshBackend {
  const server = new LiveOracle(url);
  let columns: Promise<OracleColumn[]> | null = null;
  const described = (): Promise<OracleColumn[]> =>
    (columns ??= (async () => {
      const reader = new OracleLogMinerReader({ url, site: 'mesh' });
      try {
        const found = await reader.columns(SCHEMA, MESH_ITEMS.table);
        if (found === null) throw new Error(`no table ${TABLE} at the Oracle database`);
        return found;
      } finally {
        await reader.close();
      }
    })());
  const commit = async (ops: readonly SourceOp[]): Promise<void> => {
    const all = await described();
    const statements = ops.map((op) => opStatement(all, op));
    await server.inTransaction(async (run) => {
      for (const s of statements) await run(s.sql, s.binds);
    });
  };
  return {
    url,
    connector: createOracleConnector(ORACLEDB_IO, { pollIntervalMs: 200 }),
    convergeMs: 120_000,
    quietMs: 12_000,
    async prepare() {
      // ORA-01920: the user exists; ORA-00942: no table (left by a run that died before its cleanup, or none).
      await server.tolerate(`CREATE USER ${quote(SCHEMA)} IDENTIFIED BY "Mesh-${randomBytes(6).toString('hex')}" QUOTA UNLIMITED ON USERS`, 1920);
      await server.tolerate(`DROP TABLE ${TABLE} PURGE`, 942);
      await server.query(ORACLE_DDL);
      await server.query(`ALTER TABLE ${TABLE} ADD SUPPLEMENTAL LOG DATA (ALL) COLUMNS`);
      await ensureApplyProgress(server);
    },
    commit,
    // One session: the transactions one after the other (a real database gives their commits SCNs as it will).
    async commitTogether(groups) {
      for (const ops of groups) await commit(ops);
    },
    async rows() {
      const all = await described();
      const chosen = MESH_ITEMS.columns.map((c) => all.find((a) => a.name === c.name)!);
      const rows = await server.query(`SELECT ${chosen.map((c, i) => readExpression(c, `C${i}`)).join(', ')} FROM ${TABLE}`);
      return sortRows(rows.map((r) => chosen.map((c, i) => canonicalText(c, readBack(r[`C${i}`])))));
    },
    async appliedTransactions(source) {
      const rows = await server.query('SELECT TO_CHAR("APPLIED_TRANSACTIONS") AS N FROM "SITESYNC"."APPLY_PROGRESS" WHERE "SOURCE" = :source', { source: { val: source } });
      return rows[0] ? Number(rows[0].N) : null;
    },
    async cleanup({ oracle, postgres }) {
      try {
        await server.tolerate(`DROP TABLE ${TABLE} PURGE`, 942);
        // ORA-01922: the user owns something else now (not this test's to drop); ORA-01918: no such user.
        await server.tolerate(`DROP USER ${quote(SCHEMA)}`, 1922, 1918);
        await forgetBookkeepingRows(server, { sources: postgres === '' ? [] : [postgres], site: oracle === '' ? null : oracle });
      } finally {
        await server.close();
      }
    },
  };
}

if (ORACLE_URL === undefined || ORACLE_URL === '') {
  test('Oracle live: source and sink conformance, and the PostgreSQL ↔ Oracle mesh, on a real database', { skip: HOW_TO_RUN }, () => {});
} else {
  sourceConformance(oracleLiveSourceHarness(ORACLE_URL));
  sinkConformance(oracleLiveSinkHarness(ORACLE_URL, 'postgres', 16));
  sinkConformance(oracleLiveSinkHarness(ORACLE_URL, 'oracle', 36));
  oracleMesh('live Oracle', liveMeshBackend(ORACLE_URL));
}
