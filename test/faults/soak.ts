/**
 * `npm run soak`: the fault suite at length — by default at least 100 faults of each kind over at least
 * 100,000 transactions. Prints the counts per fault kind and the checker's verdict; exits 1 on FAIL.
 *   npm run soak -- --faults-per-kind 100 --transactions 100000
 */
import { parseArgs } from 'node:util';
import { formatReport, runFaultSuite } from './fault-suite.ts';

const { values } = parseArgs({
  options: {
    'faults-per-kind': { type: 'string', default: '100' },
    transactions: { type: 'string', default: '100000' },
    'pgbench-rate': { type: 'string', default: '60' },
    'mix-rate': { type: 'string', default: '20' },
    port: { type: 'string', default: '26460' },
    'broker-port': { type: 'string', default: '26682' },
  },
});
const report = await runFaultSuite({
  faultsPerKind: Number(values['faults-per-kind']),
  transactions: Number(values.transactions),
  pgbenchRate: Number(values['pgbench-rate']),
  mixRate: Number(values['mix-rate']),
  postgresPort: Number(values.port),
  brokerPort: Number(values['broker-port']),
  log: (line) => console.log(`[${new Date().toISOString()}] ${line}`),
});
console.log(formatReport(report));
process.exit(report.passed ? 0 : 1);
