/**
 * Every database sitesync can capture from and apply into, by the `kind` a site's configuration names.
 * The one place that knows them all: the composition root (src/cli/main.ts) hands this to the core.
 */
import type { Connector, ConnectorRegistry } from '../src/connector.ts';
import { clickhouseConnector } from './clickhouse/index.ts';
import { duckdbConnector } from './duckdb/index.ts';
import { mariadbConnector } from './mariadb/index.ts';
import { oracleConnector } from './oracle/index.ts';
import { postgresConnector } from './postgres/index.ts';
import { sqlserverConnector } from './sqlserver/index.ts';

const ALL: readonly Connector[] = [postgresConnector, mariadbConnector, sqlserverConnector, oracleConnector, duckdbConnector, clickhouseConnector];

export const CONNECTORS: ConnectorRegistry = new Map(ALL.map((c) => [c.kind, c]));
