/**
 * `sitesync query --site NAME "SQL"`: one read-only statement at a site whose store allows one process only
 * (DuckDB), answered through the running `sitesync run` of that site, or from the file itself when none runs.
 * Stores that serve many readers (PostgreSQL, ClickHouse) are read with their own tools; a connector without
 * `query` says so in one line.
 */
import { databaseOf, databaseUrlFor, type Config } from '../config/config-schema.ts';
import { connectorFor, type ConnectorRegistry, type QueryResult } from '../connector.ts';
import { SitesyncError } from '../errors.ts';

export interface QueryCommandOptions {
  readonly site: string;
  readonly sql: string;
  readonly maxRows: number;
  readonly format: 'table' | 'json';
}

export async function queryCommand(config: Config, connectors: ConnectorRegistry, options: QueryCommandOptions, print: (line: string) => void): Promise<void> {
  if (!Object.hasOwn(config.sites, options.site)) {
    throw new SitesyncError('SITESYNC_ERR_CONFIG', `site ${JSON.stringify(options.site)} is not in the configuration (sites: ${Object.keys(config.sites).join(', ')}); pass one of them with --site`);
  }
  const connector = connectorFor(connectors, config, options.site);
  if (!connector.query) {
    throw new SitesyncError('SITESYNC_ERR_CONFIG', `site ${options.site} is a ${databaseOf(config, options.site).kind} database: query it with its own client (sitesync query serves stores one process holds, such as DuckDB)`);
  }
  const result = await connector.query(databaseUrlFor(config, options.site, 'monitor'), options.sql, { maxRows: options.maxRows });
  if (options.format === 'json') {
    for (const row of result.rows) print(JSON.stringify(Object.fromEntries(result.columns.map((c, i) => [c.name, row[i]]))));
  } else {
    for (const line of formatTable(result)) print(line);
  }
  if (result.truncated) print(`(first ${options.maxRows} rows; ask for more with --max-rows)`);
}

/** Rows as a plain text table, columns padded to their widest value. */
export function formatTable(result: QueryResult): string[] {
  const cell = (v: unknown): string => (v === null || v === undefined ? 'NULL' : typeof v === 'string' ? v : JSON.stringify(v));
  const header = result.columns.map((c) => c.name);
  const body = result.rows.map((row) => header.map((_, i) => cell(row[i])));
  const widths = header.map((h, i) => Math.min(60, Math.max(h.length, ...body.map((r) => r[i]!.length))));
  const line = (cells: string[]): string => cells.map((c, i) => (c.length > widths[i]! ? `${c.slice(0, widths[i]! - 1)}…` : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line), `(${result.rows.length} row${result.rows.length === 1 ? '' : 's'})`];
}
