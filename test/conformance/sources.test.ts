/**
 * Every registered source, and the in-memory fake the runners' tests use, keeps the Source contract.
 */
import { sourceConformance } from './source-suite.ts';
import { fakeSourceHarness } from './harnesses/fake.ts';
import { postgresSourceHarness } from './harnesses/postgres.ts';
import { mariadbSourceHarness } from './harnesses/mariadb.ts';

for (const harness of [fakeSourceHarness, postgresSourceHarness, mariadbSourceHarness]) sourceConformance(harness);
