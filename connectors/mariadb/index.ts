/**
 * The MariaDB (and MySQL) connector: capture from the row-based binary log, apply with a progress row
 * written first in every transaction (the loop marker capture drops). Experimental: proven on MariaDB
 * 10.11 by the conformance suite and the mesh tests; see README, Databases, for what a server needs.
 *
 * The source and the sink of one site share one RowWriterClock (row-writers.ts): src/pipeline.ts creates
 * them apart, with the same `site`, so they meet here, by site name. Capture records this site's local
 * writes in row_writers and moves the clock; the sink waits on it before it reads who last wrote a row.
 */
import type { Connector } from '../../src/connector.ts';
import { databaseOf } from '../../src/config/config-schema.ts';
import { checkMariaDbUrl, MARIADB_URL_EXAMPLE } from './mariadb-config.ts';
import { forgetMariaDbSite } from './mariadb-forget-site.ts';
import { MariaDbJoinBook } from './mariadb-join-book.ts';
import { mariadbPositions } from './mariadb-positions.ts';
import { MariaDbSink } from './mariadb-sink.ts';
import { MariaDbSnapshotControl } from './mariadb-snapshot-control.ts';
import { MariaDbSource } from './mariadb-source.ts';
import { readMariaDbStatus } from './mariadb-status.ts';
import { MariaDbTableReader } from './mariadb-table-reader.ts';
import { RowWriterClock } from './row-writers.ts';

const clocks = new Map<string, RowWriterClock>();

/** The one clock of a site in this process. */
export function rowWriterClock(site: string): RowWriterClock {
  let clock = clocks.get(site);
  if (!clock) {
    clock = new RowWriterClock(site);
    clocks.set(site, clock);
  }
  return clock;
}

export const mariadbConnector: Connector = {
  kind: 'mariadb',
  urlExample: MARIADB_URL_EXAMPLE,
  positions: mariadbPositions,
  checkUrl: checkMariaDbUrl,
  createSource: ({ site, url, tables, config, logger }) =>
    new MariaDbSource({ site, url, tables, maxPartBytes: config.capture.maxMessageBytes, rowWriters: rowWriterClock(site), logger }),
  createSink: ({ site, url, config, conflictPolicy, onConflict, logger }) =>
    new MariaDbSink({ site, url, conflictPolicy, onConflict, sourceKindOf: (source) => databaseOf(config, source).kind, rowWriters: rowWriterClock(site), logger }),
  readStatus: readMariaDbStatus,
  forgetSite: forgetMariaDbSite,
  openTableReader: (options) => MariaDbTableReader.open({ ...options, rowWriters: rowWriterClock(options.site) }),
  openSnapshotControl: (options) => new MariaDbSnapshotControl(options),
  openJoinBook: (options) => new MariaDbJoinBook(options),
};
