/**
 * Every registered source (PostgreSQL on the tests' server and on PostgreSQL 17, MariaDB, SQL Server on the
 * simulator of CDC), and the in-memory fake the runners' tests use, keeps the Source contract. SQL Server
 * against a real server: test/integration/sqlserver-live.test.ts, when MSSQL_URL is set.
 */
import { after } from 'node:test';
import { sourceConformance } from './source-suite.ts';
import { fakeSourceHarness } from './harnesses/fake.ts';
import { embeddedPostgres17, postgresSourceHarness } from './harnesses/postgres.ts';
import { mariadbSourceHarness } from './harnesses/mariadb.ts';
import { sqlserverSourceHarness } from './harnesses/sqlserver.ts';

const pg17 = embeddedPostgres17();
after(() => pg17.stop());

for (const harness of [fakeSourceHarness, postgresSourceHarness(), mariadbSourceHarness, sqlserverSourceHarness]) sourceConformance(harness);
if (pg17.missing) process.stderr.write(`source conformance: PostgreSQL 17 not tried: ${pg17.missing}\n`);
else sourceConformance(postgresSourceHarness(pg17));
