/**
 * The DuckDB connector: an analytics site whose database is one DuckDB file, holding per replicated table an
 * append-only history and a current-state table (duckdb-sink.ts). It only receives: no source, and its sites
 * set `capture: false`. DuckDB's engine (`@duckdb/node-api`, an optional dependency) is loaded only when a
 * DuckDB site is used.
 *
 * `query` answers `sitesync query` through the process that holds the file (DuckDB allows one), or from the
 * file itself when none runs.
 */
import type { Connector } from '../../src/connector.ts';
import { databaseOf, siteConfig } from '../../src/config/config-schema.ts';
import { checkDuckDbUrl, DUCKDB_URL_EXAMPLE } from './duckdb-config.ts';
import { duckdbPositions } from './duckdb-positions.ts';
import { queryDuckDb } from './duckdb-query-server.ts';
import { DuckDbSink } from './duckdb-sink.ts';
import { readDuckDbStatus } from './duckdb-status.ts';

export const duckdbConnector: Connector = {
  kind: 'duckdb',
  urlExample: DUCKDB_URL_EXAMPLE,
  positions: duckdbPositions,
  checkUrl: checkDuckDbUrl,
  createSink: ({ site, url, config, conflictPolicy, onConflict, logger }) =>
    new DuckDbSink({
      site,
      url,
      conflictPolicy,
      onConflict,
      logger,
      tables: siteConfig(config, site)?.tables ?? null,
      sourceKindOf: (source) => (Object.hasOwn(config.sites, source) ? databaseOf(config, source).kind : undefined),
    }),
  query: queryDuckDb,
  readStatus: readDuckDbStatus,
};
