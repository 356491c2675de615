/**
 * Every registered sink (PostgreSQL on the tests' server and on PostgreSQL 17, MariaDB, SQL Server and Oracle
 * on their simulators, DuckDB in a process of its own with soft and with hard deletes; each fed by a source of another kind and by one of its own), and the in-memory fake the
 * runners' tests use, keeps the Sink contract. From a PostgreSQL source the PostgreSQL sink keeps its progress in a replication origin; from a
 * source whose positions are no LSN, in a row of the same commit.
 */
import { after, test } from 'node:test';
import { sinkConformance } from './sink-suite.ts';
import { fakeSinkHarness } from './harnesses/fake.ts';
import { embeddedPostgres17, postgresSinkHarness } from './harnesses/postgres.ts';
import { mariadbSinkHarness } from './harnesses/mariadb.ts';
import { sqlserverSinkHarness } from './harnesses/sqlserver.ts';
import { oracleSinkHarness } from './harnesses/oracle.ts';
import { duckdbSinkHarness } from './harnesses/duckdb.ts';
import { clickhouseSinkHarnesses } from './harnesses/clickhouse.ts';

const pg17 = embeddedPostgres17();
after(() => pg17.stop());

const harnesses = [
  fakeSinkHarness,
  postgresSinkHarness('postgres', 16),
  postgresSinkHarness('mariadb', 24),
  mariadbSinkHarness('postgres', 16),
  mariadbSinkHarness('mariadb', 24),
  sqlserverSinkHarness('postgres', 16),
  sqlserverSinkHarness('sqlserver', 20),
  oracleSinkHarness('postgres', 16),
  oracleSinkHarness('oracle', 36),
  duckdbSinkHarness('postgres', 16, 'soft'),
  duckdbSinkHarness('mariadb', 24, 'hard'),
];
for (const harness of harnesses) sinkConformance(harness);
// ClickHouse: on the embedded engine when chdb is installed (npm run test:clickhouse), on a server when
// CLICKHOUSE_URL is set; each one missing is a skipped test saying how to run it.
const clickhouse = await clickhouseSinkHarnesses();
for (const harness of clickhouse.harnesses) sinkConformance(harness);
for (const reason of clickhouse.skipped) test('sink conformance: clickhouse', { skip: reason }, () => {});
if (pg17.missing) process.stderr.write(`sink conformance: PostgreSQL 17 not tried: ${pg17.missing}\n`);
else for (const kind of ['postgres', 'mariadb']) sinkConformance(postgresSinkHarness(kind, kind === 'postgres' ? 16 : 24, pg17));
