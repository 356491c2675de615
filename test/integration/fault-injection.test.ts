/**
 * The short fault-injection run: every fault kind, twice, at random moments, while both sites write;
 * then the checker's verdict (see test/faults/). `npm run soak` runs the same at length.
 *
 * It runs deployed with least privilege (README, Security model): capture, apply and monitoring as three
 * PostgreSQL roles without superuser, each site's process as a RabbitMQ user that may declare nothing. The
 * soak runs the default deployment, so both are proven under faults.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatReport, runFaultSuite } from '../faults/fault-suite.ts';

test('faults of every kind: nothing lost, nothing twice, order kept, slot never past the broker', { timeout: 600_000 }, async () => {
  const report = await runFaultSuite({
    faultsPerKind: 2,
    transactions: 2000,
    pgbenchRate: 60,
    mixRate: 20,
    postgresPort: 26450,
    brokerPort: 26672,
    leastPrivilege: true,
    log: (line) => console.log(`# ${line}`),
  });
  console.log(formatReport(report).replace(/^/gm, '# '));
  assert.deepEqual(report.faultErrors, []);
  assert.deepEqual(report.unexpectedExits, [], 'no sitesync process died of a fault');
  for (const [kind, n] of Object.entries(report.faults)) assert.equal(n, 2, `${kind} injected twice`);
  assert.equal(report.lost, 0, 'lost rows');
  assert.equal(report.duplicated, 0, 'duplicated rows');
  assert.equal(report.notPublished, 0, 'committed transactions missing from the broker');
  assert.equal(report.slotViolations, 0, 'slot confirmed past the broker');
  assert.equal(report.orderViolations, 0, 'order');
  assert.ok(report.committed.a > 500 && report.committed.b > 200, `enough transactions: ${JSON.stringify(report.committed)}`);
  assert.ok(report.passed);
});
