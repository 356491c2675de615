/**
 * `sitesync status` of a DuckDB site: no capture (the site only receives), and how far each source is applied,
 * from sitesync.apply_progress. Read the way `sitesync query` reads (duckdb-query-server.ts): through the
 * process that holds the file when one runs, else from the file itself, read-only. A file that does not exist
 * yet, or has no progress table yet, has applied nothing.
 */
import { existsSync } from 'node:fs';
import type { SiteDatabaseStatus } from '../../src/connector.ts';
import { parseDuckDbUrl } from './duckdb-config.ts';
import { queryDuckDb } from './duckdb-query-server.ts';
import { ALL_PROGRESS, PROGRESS_EXISTS } from './duckdb-statements.ts';

/** Sources a site applies from, at most (a progress table is one row per source). */
const MAX_SOURCES = 10_000;

export async function readDuckDbStatus(url: string, _site: string, sources: readonly string[]): Promise<SiteDatabaseStatus> {
  const { path } = parseDuckDbUrl(url);
  const positions = new Map<string, string>();
  if (existsSync(path)) {
    const exists = await queryDuckDb(url, PROGRESS_EXISTS, { maxRows: 1 });
    if (Number(exists.rows[0]?.[0] ?? 0) > 0) {
      const progress = await queryDuckDb(url, ALL_PROGRESS, { maxRows: MAX_SOURCES });
      for (const [source, position] of progress.rows) if (typeof source === 'string' && typeof position === 'string') positions.set(source, position);
    }
  }
  return {
    capture: {
      name: 'capture',
      exists: false,
      active: false,
      confirmed: null,
      current: '',
      lagBytes: null,
      retainedBytes: null,
      release: '',
    },
    applied: sources.map((source) => ({ source, name: 'sitesync.apply_progress', position: positions.get(source) ?? null })),
  };
}
