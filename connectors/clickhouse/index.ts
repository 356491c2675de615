/**
 * The ClickHouse connector: a site that only receives (no source: its sites set `capture: false`), writing
 * each replicated table's history and current state into a ClickHouse database over HTTP. Experimental: its
 * SQL and the engine's semantics are proven with an embedded ClickHouse (chdb, `npm run test:clickhouse`),
 * and against a server by test/integration/clickhouse-live.test.ts when CLICKHOUSE_URL is set.
 */
import type { Connector } from '../../src/connector.ts';
import { clickhousePositions } from './clickhouse-positions.ts';
import { databaseOf, siteConfig } from '../../src/config/config-schema.ts';
import { checkClickHouseUrl, CLICKHOUSE_URL_EXAMPLE, parseClickHouseUrl } from './clickhouse-config.ts';
import { ClickHouseHttpDriver } from './clickhouse-http-driver.ts';
import { ClickHouseSink } from './clickhouse-sink.ts';
import { queryClickHouse, readClickHouseStatus } from './clickhouse-status.ts';

export const clickhouseConnector: Connector = {
  kind: 'clickhouse',
  urlExample: CLICKHOUSE_URL_EXAMPLE,
  positions: clickhousePositions,
  checkUrl: checkClickHouseUrl,
  createSink: ({ site, url, config, conflictPolicy, onConflict, logger }) => {
    const parsed = parseClickHouseUrl(url);
    return new ClickHouseSink({
      site,
      url,
      config: parsed,
      openDriver: () => new ClickHouseHttpDriver(parsed),
      conflictPolicy,
      onConflict,
      logger,
      tables: siteConfig(config, site)?.tables ?? null,
      sourceKindOf: (source) => (Object.hasOwn(config.sites, source) ? databaseOf(config, source).kind : undefined),
    });
  },
  query: queryClickHouse,
  readStatus: readClickHouseStatus,
};
