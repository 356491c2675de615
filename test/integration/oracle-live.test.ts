/**
 * The Oracle connector against a REAL Oracle database, when ORACLE_URL is set: the source and sink conformance
 * suites (test/conformance/harnesses/oracle-live.ts) and the PostgreSQL ↔ Oracle mesh of oracle-mesh.test.ts,
 * over the connector's own oracledb code (oracledb-logminer-reader.ts, oracledb-apply-connection.ts) and
 * LogMiner's real SQL_REDO, instead of the simulator; and an online snapshot from the Oracle site to a PostgreSQL
 * site, then `sitesync verify` between them (oracle-table-reader.ts, oracle-snapshot-control.ts: the marker rows
 * through LogMiner, the reader's SQL, AL32UTF8 key order, the read-only transaction). Without ORACLE_URL it shows
 * one skipped test saying how to run it.
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
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { CONNECTORS } from '../../connectors/index.ts';
import { createOracleConnector, ORACLEDB_IO, oracleConnector } from '../../connectors/oracle/index.ts';
import type { OracleColumn } from '../../connectors/oracle/logminer-reader.ts';
import { canonicalText, oracleText } from '../../connectors/oracle/oracle-kinds.ts';
import { OracleLogMinerReader } from '../../connectors/oracle/oracledb-logminer-reader.ts';
import { sinkConformance } from '../conformance/sink-suite.ts';
import { sourceConformance } from '../conformance/source-suite.ts';
import { ensureApplyProgress, forgetBookkeepingRows, LiveOracle, oracleLiveSinkHarness, oracleLiveSourceHarness } from '../conformance/harnesses/oracle-live.ts';
import type { SourceOp } from '../conformance/harness.ts';
import { sortRows } from '../conformance/tables.ts';
import { MESH_ITEMS, ORACLE_DDL, oracleMesh, SCHEMA, type OracleMeshBackend } from './oracle-mesh.test.ts';
import { startSnapshot, waitForSnapshot, withSnapshotControl } from '../../src/cli/snapshot-command.ts';
import { planVerify, runVerify } from '../../src/cli/verify-command.ts';
import { createTestSites, dbUrl, sql, waitFor, type RunningSite, type TestSites } from '../helpers/test-sites.ts';

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

/** The snapshot's table: "public"."snap_items" at Oracle (AL32UTF8: a VARCHAR2 in its key), public.snap_items at PostgreSQL. */
const SNAP_TABLE = 'snap_items';
const SNAP_ORACLE = `${quote(SCHEMA)}.${quote(SNAP_TABLE)}`;
const SNAP_ORACLE_DDL = `CREATE TABLE ${SNAP_ORACLE} ("id" NUMBER(18,0) NOT NULL, "code" VARCHAR2(40 BYTE) NOT NULL, "amount" NUMBER(12,2), "at" TIMESTAMP(6), PRIMARY KEY ("id", "code"))`;
const SNAP_POSTGRES_DDL = `CREATE TABLE ${SCHEMA}.${SNAP_TABLE} (id bigint, code varchar(40), amount numeric(12,2), at timestamp(6), PRIMARY KEY (id, code))`;
/** Key texts whose UTF-8 order differs from UTF-16's and from most collations' (case, accents, U+E000 vs U+1F600). */
const SNAP_CODES = ['a', 'B', 'é', '€', '\u{1F600}', 'z\uE000'];
const SNAP_ROWS = 3000;

/**
 * An online snapshot from the live Oracle site to a PostgreSQL site while the Oracle keeps writing, through the
 * real pipeline (both sites in this process, the tests' PostgreSQL and RabbitMQ), `sitesync snapshot`'s own
 * functions, then `sitesync verify`'s: the sites agree, and a row changed at PostgreSQL alone is found.
 */
function liveSnapshot(url: string): void {
  describe('live Oracle → PostgreSQL: an online snapshot, then verify', () => {
    const server = new LiveOracle(url);
    let t: TestSites | null = null;
    const running: RunningSite[] = [];
    let snapshotId: string | null = null;
    const row = (n: number): [number, string, string, string] => [Math.floor(n / SNAP_CODES.length), SNAP_CODES[n % SNAP_CODES.length]!, `${n}.${String(n % 100).padStart(2, '0')}`, `2026-01-01 00:00:00.${String(n).padStart(6, '0')}`];

    before(async () => {
      // ORA-01920: the user exists (the mesh's, or a run that died); ORA-00942: no table left behind.
      await server.tolerate(`CREATE USER ${quote(SCHEMA)} IDENTIFIED BY "Snap-${randomBytes(6).toString('hex')}" QUOTA UNLIMITED ON USERS`, 1920);
      await server.tolerate(`DROP TABLE ${SNAP_ORACLE} PURGE`, 942);
      await server.query(SNAP_ORACLE_DDL);
      await server.query(`ALTER TABLE ${SNAP_ORACLE} ADD SUPPLEMENTAL LOG DATA (ALL) COLUMNS`);
      // Rows the Oracle site held before anything replicated: no stream will ever carry them.
      const { connection } = await server.connect();
      await connection.executeMany(
        `INSERT INTO ${SNAP_ORACLE} ("id", "code", "amount", "at") VALUES (:1, :2, TO_NUMBER(:3), TO_TIMESTAMP(:4, 'YYYY-MM-DD HH24:MI:SS.FF6'))`,
        Array.from({ length: SNAP_ROWS }, (_, n) => row(n)),
        { autoCommit: true },
      );
      t = await createTestSites(
        ['paris', 'london'],
        (sites) => ({
          sites: {
            [sites.paris!]: { postgres: dbUrl(`sitesync_test_${sites.paris}`) },
            [sites.london!]: { database: { kind: 'oracle', url }, tables: [`${SCHEMA}.${SNAP_TABLE}`] },
          },
        }),
        { leastPrivilege: false },
      );
      await sql(t.db('paris'), SNAP_POSTGRES_DDL);
      // `sitesync setup` at the Oracle site: the sink's tables, and the snapshot tables as the capture user.
      const findings = await oracleConnector.checkDatabase!({ capture: url, apply: url }, t.sites.london!);
      assert.ok(findings.some((f) => f.severity === 'done' && /snapshot tables/.test(f.problem)), JSON.stringify(findings));
      running.push(await t.start('london'), await t.start('paris'));
    });

    after(async () => {
      try {
        for (const site of running.splice(0)) await site.stop().catch(() => undefined);
        if (snapshotId !== null) await server.query('DELETE FROM "SITESYNC"."SNAPSHOTS" WHERE "ID" = :id', { id: { val: snapshotId } }).catch(() => undefined);
        await server.tolerate(`DROP TABLE ${SNAP_ORACLE} PURGE`, 942);
        // ORA-01922: the user owns something else (the mesh's table); ORA-01918: no such user.
        await server.tolerate(`DROP USER ${quote(SCHEMA)}`, 1922, 1918);
        if (t !== null) await forgetBookkeepingRows(server, { sources: [t.sites.paris!], site: t.sites.london! });
        await t?.cleanup();
      } finally {
        await server.close();
      }
    });

    test("the Oracle table's existing rows reach PostgreSQL while Oracle keeps writing; verify finds the sites equal, then a row changed at one", async () => {
      const sites = t!;
      const london = sites.sites.london!;
      const paris = sites.sites.paris!;
      const { id, estimatedRows } = await startSnapshot(sites.config, CONNECTORS, { site: london, table: `${SCHEMA}.${SNAP_TABLE}`, targets: null, chunkRows: 250 });
      snapshotId = id;
      assert.ok(estimatedRows >= 0);
      // Oracle writes everywhere in the table (rows sent already, rows not yet reached) during the snapshot.
      let writing = true;
      let writes = 0;
      const writer = (async () => {
        while (writing) {
          const n = Math.floor(Math.random() * (SNAP_ROWS + 600));
          const [key, code, amount, at] = row(n);
          const binds = { id: { val: key }, code: { val: code } };
          if (Math.random() < 0.6) {
            await server.query(
              `MERGE INTO ${SNAP_ORACLE} d USING (SELECT :id AS "id", :code AS "code" FROM DUAL) s ON (d."id" = s."id" AND d."code" = s."code") ` +
                `WHEN MATCHED THEN UPDATE SET d."amount" = d."amount" + 1 WHEN NOT MATCHED THEN INSERT ("id", "code", "amount", "at") VALUES (s."id", s."code", TO_NUMBER(:amount), TO_TIMESTAMP(:at, 'YYYY-MM-DD HH24:MI:SS.FF6'))`,
              { ...binds, amount: { val: amount }, at: { val: at } },
            );
          } else {
            await server.query(`DELETE FROM ${SNAP_ORACLE} WHERE "id" = :id AND "code" = :code`, binds);
          }
          writes++;
        }
      })();
      let status;
      try {
        status = await withSnapshotControl(sites.config, CONNECTORS, london, (control) => waitForSnapshot(control, id, () => undefined, 500));
      } finally {
        writing = false;
        await writer;
      }
      assert.equal(status.state, 'done');
      assert.ok(status.rowsSent >= SNAP_ROWS / 2, `the snapshot sent the table's rows (${status.rowsSent})`);
      assert.ok(writes > 20, `Oracle wrote during the snapshot (${writes})`);
      // Once both streams drained, the sites hold the same rows: verify (consistent readers at both) says so.
      const plan = planVerify(sites.config, { sites: `${london},${paris}`, tables: `${SCHEMA}.${SNAP_TABLE}` }, CONNECTORS);
      let last = '';
      const report = await waitFor(
        'verify: the sites identical',
        async () => {
          const r = await runVerify(sites.config, CONNECTORS, plan);
          last = JSON.stringify(r.tables[0]);
          return r.tables[0]!.identical ? r : undefined;
        },
        180_000,
      ).catch((error: Error) => {
        throw new Error(`${error.message}\n${last}`);
      });
      const table = report.tables[0]!;
      assert.equal(table.method, 'rows', 'two kinds of database: compared row by row');
      assert.equal(table.rows[london], table.rows[paris]);
      assert.ok(table.rows[london]! > SNAP_ROWS / 2);
      // A row changed at PostgreSQL alone (its pipeline stopped, so it never travels): verify names it.
      for (const site of running.splice(1)) await site.stop();
      await sql(sites.db('paris'), `UPDATE ${SCHEMA}.${SNAP_TABLE} SET amount = amount + 1000 WHERE id = (SELECT min(id) FROM ${SCHEMA}.${SNAP_TABLE})`);
      const changed = (await runVerify(sites.config, CONNECTORS, plan)).tables[0]!;
      assert.equal(changed.identical, false);
      assert.ok(changed.keys.length >= 1 && changed.keys.every((k) => k.kind === 'changed' && JSON.stringify(k.columns) === '["amount"]'), JSON.stringify(changed.keys));
    });
  });
}

if (ORACLE_URL === undefined || ORACLE_URL === '') {
  test('Oracle live: source and sink conformance, the PostgreSQL ↔ Oracle mesh, and a snapshot then verify, on a real database', { skip: HOW_TO_RUN }, () => {});
} else {
  sourceConformance(oracleLiveSourceHarness(ORACLE_URL));
  sinkConformance(oracleLiveSinkHarness(ORACLE_URL, 'postgres', 16));
  sinkConformance(oracleLiveSinkHarness(ORACLE_URL, 'oracle', 36));
  oracleMesh('live Oracle', liveMeshBackend(ORACLE_URL));
  liveSnapshot(ORACLE_URL);
}
