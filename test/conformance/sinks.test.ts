/**
 * Every registered sink (PostgreSQL on the tests' server and on PostgreSQL 17, MariaDB, SQL Server and Oracle
 * on their simulators; each fed by a source of another kind and by one of its own), and the in-memory fake the
 * runners' tests use, keeps the Sink contract. From a PostgreSQL source the PostgreSQL sink keeps its progress in a replication origin; from a
 * source whose positions are no LSN, in a row of the same commit.
 */
import { after } from 'node:test';
import { sinkConformance } from './sink-suite.ts';
import { fakeSinkHarness } from './harnesses/fake.ts';
import { embeddedPostgres17, postgresSinkHarness } from './harnesses/postgres.ts';
import { mariadbSinkHarness } from './harnesses/mariadb.ts';
import { sqlserverSinkHarness } from './harnesses/sqlserver.ts';
import { oracleSinkHarness } from './harnesses/oracle.ts';

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
];
for (const harness of harnesses) sinkConformance(harness);
if (pg17.missing) process.stderr.write(`sink conformance: PostgreSQL 17 not tried: ${pg17.missing}\n`);
else for (const kind of ['postgres', 'mariadb']) sinkConformance(postgresSinkHarness(kind, kind === 'postgres' ? 16 : 24, pg17));
