/**
 * Every registered source (PostgreSQL on the tests' server and on PostgreSQL 17, MariaDB, SQL Server on the
 * simulator of CDC, Oracle on the simulator of LogMiner), and the in-memory fake the runners' tests use, keeps
 * the Source contract. Against real servers: test/integration/sqlserver-live.test.ts (MSSQL_URL) and
 * oracle-live.test.ts (ORACLE_URL).
 */
import { after } from 'node:test';
import { sourceConformance } from './source-suite.ts';
import { fakeSourceHarness } from './harnesses/fake.ts';
import { embeddedPostgres17, postgresSourceHarness } from './harnesses/postgres.ts';
import { mariadbSourceHarness } from './harnesses/mariadb.ts';
import { sqlserverSourceHarness } from './harnesses/sqlserver.ts';
import { oracleSourceHarness } from './harnesses/oracle.ts';

const pg17 = embeddedPostgres17();
after(() => pg17.stop());

for (const harness of [fakeSourceHarness, postgresSourceHarness(), mariadbSourceHarness, sqlserverSourceHarness, oracleSourceHarness]) sourceConformance(harness);
if (pg17.missing) process.stderr.write(`source conformance: PostgreSQL 17 not tried: ${pg17.missing}\n`);
else sourceConformance(postgresSourceHarness(pg17));
