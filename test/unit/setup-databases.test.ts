/**
 * `sitesync setup` checks each site's database through its connector: at a SQL Server site (on the simulator of
 * CDC) it creates sitesync's tables and says, one line per problem with the T-SQL to run, what capture still
 * needs; sites whose connector prepares itself at start (PostgreSQL) are not checked here.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CONNECTORS } from '../../connectors/index.ts';
import { createSqlServerConnector } from '../../connectors/sqlserver/index.ts';
import { checkSiteDatabases } from '../../src/cli/setup-command.ts';
import { parseConfig } from '../../src/config/load-config.ts';
import { SimulatedSqlServer } from '../helpers/sqlserver-simulator.ts';
import { simulatedConnect } from '../helpers/sqlserver-simulated-apply.ts';

function registry(sim: SimulatedSqlServer) {
  const sqlserver = createSqlServerConnector({
    reader: () => sim.reader(),
    connect: simulatedConnect(sim).connect,
    readStatus: () => Promise.reject(new Error('not used')),
  });
  return new Map([...CONNECTORS, ['sqlserver', sqlserver]]);
}

const config = (capture: boolean) =>
  parseConfig({
    broker: { url: 'amqp://guest:guest@127.0.0.1:5672/' },
    sites: { paris: { postgres: 'postgres://postgres@127.0.0.1:5432/paris' }, london: { database: { kind: 'sqlserver', url: 'sqlserver://sitesync:hunter2@db.london:1433/shop' }, capture } },
  });

test('a SQL Server site without CDC: setup creates the sitesync tables and names each missing piece with its T-SQL', async () => {
  const sim = new SimulatedSqlServer({ database: 'shop' });
  sim.setFacts({ cdcEnabled: false, agentRunning: false });
  const lines: string[] = [];
  const errors = await checkSiteDatabases(config(true), registry(sim), (line) => lines.push(line));
  assert.ok(sim.describeTable('sitesync', 'parked') !== null, 'the sitesync tables were created');
  assert.ok(errors >= 2, `errors counted: ${errors}`);
  assert.ok(lines.every((l) => l.startsWith('site london (sqlserver): ')), lines.join('\n'));
  assert.ok(lines.some((l) => /error: change data capture is not enabled on database shop; fix: .*sys\.sp_cdc_enable_db/.test(l)), lines.join('\n'));
  assert.ok(lines.some((l) => /error: the SQL Server Agent is not running/.test(l)), lines.join('\n'));
  assert.ok(!lines.some((l) => l.includes('hunter2')), 'no password in any line');
});

test('a ready SQL Server site has no error; a receive-only one is not asked about CDC', async () => {
  const sim = new SimulatedSqlServer({ database: 'shop' });
  const lines: string[] = [];
  assert.equal(await checkSiteDatabases(config(true), registry(sim), (line) => lines.push(line)), 0, lines.join('\n'));
  assert.ok(lines.some((l) => /done: the sitesync schema and its tables are there/.test(l)), lines.join('\n'));
  const other = new SimulatedSqlServer({ database: 'shop' });
  other.setFacts({ cdcEnabled: false });
  const receiveOnly: string[] = [];
  assert.equal(await checkSiteDatabases(config(false), registry(other), (line) => receiveOnly.push(line)), 0, receiveOnly.join('\n'));
});

test('a database that cannot be reached is one error line, and the other sites are still checked', async () => {
  const sim = new SimulatedSqlServer({ database: 'shop' });
  const broken = createSqlServerConnector({
    reader: () => sim.reader(),
    connect: () => Promise.reject(new Error('connect ECONNREFUSED 10.0.0.9:1433')),
    readStatus: () => Promise.reject(new Error('not used')),
  });
  const lines: string[] = [];
  const errors = await checkSiteDatabases(config(true), new Map([...CONNECTORS, ['sqlserver', broken]]), (line) => lines.push(line));
  assert.equal(errors, 1);
  assert.match(lines[0]!, /^site london \(sqlserver\): error: database not checked: .*ECONNREFUSED/);
});
