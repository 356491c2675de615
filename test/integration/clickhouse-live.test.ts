/**
 * The ClickHouse sink against a ClickHouse server over HTTP (the production driver, @clickhouse/client): the
 * same scenarios as on the embedded engine (test/conformance/harnesses/clickhouse.ts), and the connector's own
 * status and query, which open their HTTP connection from the site's URL. Runs when CLICKHOUSE_URL is set, e.g.
 *
 *   docker-compose --profile clickhouse up -d clickhouse
 *   CLICKHOUSE_URL=clickhouse://sitesync:dev-only-clickhouse-password@127.0.0.1:8123/sitesync npm run test:clickhouse
 *
 * The URL's user must be allowed to create and drop databases (each scenario gets one). Without the variable,
 * every test here is skipped, saying so. The sink conformance suite runs on the same server from
 * test/conformance/sinks.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CONNECTORS } from '../../connectors/index.ts';
import { parseClickHouseUrl } from '../../connectors/clickhouse/clickhouse-config.ts';
import { ClickHouseHttpDriver } from '../../connectors/clickhouse/clickhouse-http-driver.ts';
import { ClickHouseSink } from '../../connectors/clickhouse/clickhouse-sink.ts';
import { clickhouseSinkScenarios, liveBackend } from '../conformance/harnesses/clickhouse.ts';
import { SitesyncError } from '../../src/errors.ts';
import { createLogger } from '../../src/observability/logger.ts';

const url = process.env.CLICKHOUSE_URL;
const missing = 'no ClickHouse server: set CLICKHOUSE_URL=clickhouse://user:password@host:8123/database (docker-compose --profile clickhouse up -d clickhouse)';

clickhouseSinkScenarios('a ClickHouse server', url ? liveBackend(url) : missing);

test("the connector over the site's URL: status reads the progress, query is read-only, a wrong password is one line without it", { skip: url ? false : missing }, async () => {
  const backend = liveBackend(url!);
  const database = await backend.createDatabase();
  try {
    const u = new URL(url!);
    u.pathname = `/${database}`;
    const siteUrl = u.toString();
    const connector = CONNECTORS.get('clickhouse')!;
    const sink = new ClickHouseSink({ site: 'analytics', url: siteUrl, config: parseClickHouseUrl(siteUrl), openDriver: () => new ClickHouseHttpDriver(parseClickHouseUrl(siteUrl)), logger: createLogger('silent') });
    const session = await sink.openSession('paris');
    await session.skip('0000000000000005', 1_700_000_000_000_000n);
    await sink.close();
    const status = await connector.readStatus(siteUrl, 'analytics', ['paris', 'london']);
    assert.deepEqual(status.applied.map((a) => a.position), ['0000000000000005', null]);
    const result = await connector.query!(siteUrl, 'SELECT number FROM system.numbers LIMIT 5', { maxRows: 3 });
    assert.deepEqual(result.rows, [['0'], ['1'], ['2']]);
    assert.equal(result.truncated, true);
    await assert.rejects(connector.query!(siteUrl, `CREATE TABLE \`${database}\`.nope (a Int32) ENGINE = Memory`, { maxRows: 3 }), (error) => error instanceof SitesyncError && /read-only/.test(error.message));
    const wrong = new URL(siteUrl);
    wrong.password = 'surely-not-the-password';
    await assert.rejects(connector.readStatus(wrong.toString(), 'analytics', ['paris']), (error: Error) => {
      assert.doesNotMatch(error.message, /surely-not-the-password|\n/);
      return true;
    });
  } finally {
    await backend.dropDatabase(database);
  }
});
