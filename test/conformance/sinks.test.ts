/**
 * Every registered sink (PostgreSQL and MariaDB, each fed by a PostgreSQL source and by a MariaDB one), and
 * the in-memory fake the runners' tests use, keeps the Sink contract. The
 * PostgreSQL sink runs it twice: from a PostgreSQL source (progress in its replication origin) and from a
 * source whose positions are no LSN (progress in a row of the same commit).
 */
import { sinkConformance } from './sink-suite.ts';
import { fakeSinkHarness } from './harnesses/fake.ts';
import { postgresSinkHarness } from './harnesses/postgres.ts';
import { mariadbSinkHarness } from './harnesses/mariadb.ts';

for (const harness of [fakeSinkHarness, postgresSinkHarness('postgres', 16), postgresSinkHarness('mariadb', 24), mariadbSinkHarness('postgres', 16), mariadbSinkHarness('mariadb', 24)]) {
  sinkConformance(harness);
}
