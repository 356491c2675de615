/**
 * The PostgreSQL connector: capture with pgoutput over a logical replication slot, apply with a
 * replication origin per source site (a progress row for sources whose positions are no LSN).
 */
import type { Connector } from '../../src/connector.ts';
import { databaseOf } from '../../src/config/config-schema.ts';
import { checkPostgresUrl, POSTGRES_URL_EXAMPLE } from './postgres-config.ts';
import { readPostgresConflicts } from './postgres-conflict-log.ts';
import { forgetPostgresSite } from './postgres-forget-site.ts';
import { postgresPositions } from './postgres-positions.ts';
import { PostgresSink } from './postgres-sink.ts';
import { PostgresSource } from './postgres-source.ts';
import { PostgresJoinBook } from './postgres-join-book.ts';
import { PostgresSnapshotControl } from './postgres-snapshot-control.ts';
import { readPostgresStatus } from './postgres-status.ts';
import { PostgresTableReader } from './postgres-table-reader.ts';

export const postgresConnector: Connector = {
  kind: 'postgres',
  urlExample: POSTGRES_URL_EXAMPLE,
  positions: postgresPositions,
  checkUrl: checkPostgresUrl,
  createSource: ({ site, url, tables, config, logger }) =>
    new PostgresSource({ site, url, tables, maxPartBytes: config.capture.maxMessageBytes, receiveBufferBytes: config.capture.receiveBufferBytes, logger }),
  createSink: ({ site, url, config, conflictPolicy, onConflict, logger }) =>
    new PostgresSink({ site, url, replicaRole: config.apply.replicaRole, conflictPolicy, onConflict, sourceKindOf: (source) => databaseOf(config, source).kind, logger }),
  readStatus: readPostgresStatus,
  forgetSite: forgetPostgresSite,
  openTableReader: (options) => PostgresTableReader.open(options),
  openSnapshotControl: (options) => new PostgresSnapshotControl(options),
  openJoinBook: (options) => new PostgresJoinBook(options),
  readConflicts: readPostgresConflicts,
};
