/**
 * The MariaDB (and MySQL) connector: capture from the row-based binary log, apply with a progress row
 * written first in every transaction (the loop marker capture drops). Experimental: proven on MariaDB
 * 10.11 by the conformance suite and the mesh tests; see README, Databases, for what a server needs.
 */
import type { Connector } from '../../src/connector.ts';
import { databaseOf } from '../../src/config/config-schema.ts';
import { checkMariaDbUrl, MARIADB_URL_EXAMPLE } from './mariadb-config.ts';
import { mariadbPositions } from './mariadb-positions.ts';
import { MariaDbSink } from './mariadb-sink.ts';
import { MariaDbSource } from './mariadb-source.ts';
import { readMariaDbStatus } from './mariadb-status.ts';

export const mariadbConnector: Connector = {
  kind: 'mariadb',
  urlExample: MARIADB_URL_EXAMPLE,
  positions: mariadbPositions,
  checkUrl: checkMariaDbUrl,
  createSource: ({ site, url, tables, config, logger }) => new MariaDbSource({ site, url, tables, maxPartBytes: config.capture.maxMessageBytes, logger }),
  createSink: ({ site, url, config, conflictPolicy, onConflict, logger }) =>
    new MariaDbSink({ site, url, conflictPolicy, onConflict, sourceKindOf: (source) => databaseOf(config, source).kind, logger }),
  readStatus: readMariaDbStatus,
};
