/**
 * What `sitesync status` shows of a ClickHouse site, and `sitesync query` at one. A ClickHouse site only
 * receives: it has no log and keeps none for capture. Its applied progress is `_sitesync_progress`, read with
 * FINAL. ClickHouse serves many readers, so both read over their own HTTP connection, never through the
 * running process; `query` runs the statement with `readonly=1`, so the server refuses anything but a read.
 */
import type { QueryOptions, QueryResult, SiteDatabaseStatus } from '../../src/connector.ts';
import { SitesyncError } from '../../src/errors.ts';
import { parseClickHouseUrl } from './clickhouse-config.ts';
import type { ClickHouseDriver } from './clickhouse-driver.ts';
import { describeClickHouseError, errorLine, serverErrorOf } from './clickhouse-errors.ts';
import { ClickHouseHttpDriver } from './clickhouse-http-driver.ts';
import { PROGRESS_TABLE, qualified, quoteString } from './clickhouse-statements.ts';

export async function readClickHouseStatus(url: string, site: string, sources: readonly string[]): Promise<SiteDatabaseStatus> {
  return withDriver(url, site, (driver) => clickHouseStatus(driver, parseClickHouseUrl(url).database, sources));
}

export async function queryClickHouse(url: string, sql: string, options: QueryOptions): Promise<QueryResult> {
  return withDriver(url, null, (driver) => runReadOnlyQuery(driver, sql, options));
}

/** The status read through a driver (the tests give an embedded engine's). */
export async function clickHouseStatus(driver: ClickHouseDriver, database: string, sources: readonly string[]): Promise<SiteDatabaseStatus> {
  const name = `${database}.${PROGRESS_TABLE}`;
  const present = (await driver.query(`SELECT 1 FROM system.tables WHERE database = ${quoteString(database)} AND name = ${quoteString(PROGRESS_TABLE)}`)).rows.length > 0;
  const positions = new Map<string, string>();
  if (present && sources.length > 0) {
    const rows = (await driver.query(`SELECT source, position FROM ${qualified(database, PROGRESS_TABLE)} FINAL WHERE source IN (${sources.map(quoteString).join(', ')})`)).rows;
    for (const [source, position] of rows) if (position !== '') positions.set(String(source), String(position));
  }
  return {
    capture: { name: 'none (a ClickHouse site only receives)', exists: false, active: false, confirmed: null, current: 'no log', lagBytes: null, retainedBytes: null, release: '' },
    applied: sources.map((source) => ({ source, name, position: positions.get(source) ?? null })),
  };
}

/**
 * One statement, read-only (`readonly=1`: the server refuses writes, DDL and settings changes), with at most
 * `maxRows` rows kept (`max_result_rows` with `break` stops the server soon after them).
 */
export async function runReadOnlyQuery(driver: ClickHouseDriver, sql: string, options: QueryOptions): Promise<QueryResult> {
  const statement = sql.trim().replace(/;+\s*$/, '');
  if (statement === '') throw new SitesyncError('SITESYNC_ERR_CONFIG', 'the query is empty; give one SELECT statement');
  let result;
  try {
    result = await driver.query(statement, { readonly: 1, max_result_rows: options.maxRows + 1, result_overflow_mode: 'break' });
  } catch (error) {
    const server = serverErrorOf(error);
    if (server?.code === 164) throw new SitesyncError('SITESYNC_ERR_CONFIG', `sitesync query runs read-only statements only: ${errorLine(error)}`, { cause: error });
    if (server) throw new SitesyncError('SITESYNC_ERR_CONFIG', `ClickHouse refused the query: ${errorLine(error)}`, { cause: error });
    throw error;
  }
  return { columns: result.columns, rows: result.rows.slice(0, options.maxRows), truncated: result.rows.length > options.maxRows };
}

async function withDriver<T>(url: string, site: string | null, work: (driver: ClickHouseDriver) => Promise<T>): Promise<T> {
  let driver: ClickHouseDriver;
  try {
    driver = new ClickHouseHttpDriver(parseClickHouseUrl(url));
  } catch (error) {
    throw new SitesyncError('SITESYNC_ERR_CONFIG', errorLine(error));
  }
  try {
    return await work(driver);
  } catch (error) {
    if (error instanceof SitesyncError) throw error;
    throw describeClickHouseError(error, url, site);
  } finally {
    await driver.close().catch(() => undefined);
  }
}
