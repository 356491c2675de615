/**
 * What a DuckDB site's configuration must say: the file its database lives in, as a `duckdb:` URL, and the
 * sink's options as query parameters. A DuckDB site only receives (analytics): its site sets
 * `capture: false`.
 *
 * - `duckdb:///absolute/path/site.duckdb`, or `duckdb:relative/path.duckdb` (relative to the working
 *   directory of the process that opens it). A host (`duckdb://host/…`) means nothing for a file and is
 *   refused rather than read as a directory name; `:memory:` is refused: a store that forgets everything at
 *   exit cannot keep a progress.
 * - `deletes=soft|hard` (default soft): a deleted row stays in the current-state table flagged
 *   `_sitesync_deleted` (soft), or goes (hard). Its history entry is kept either way.
 * - `exportDir=/path` and `exportSeconds=N`, both or neither: every N seconds each current-state and history
 *   table is written as Parquet into that directory, for tools that read files.
 */
import { isAbsolute, resolve } from 'node:path';
import { SitesyncError } from '../../src/errors.ts';

export const DUCKDB_URL_EXAMPLE = 'a DuckDB file URL such as duckdb:///var/lib/sitesync/site.duckdb or duckdb:site.duckdb';

export type DeleteMode = 'soft' | 'hard';

export interface DuckDbSiteConfig {
  /** The database file, absolute. */
  readonly path: string;
  readonly deletes: DeleteMode;
  /** Periodic Parquet export, or null when off. */
  readonly export: { readonly dir: string; readonly seconds: number } | null;
}

const OPTIONS = ['deletes', 'exportDir', 'exportSeconds'] as const;
/** Longest export period: a day (a longer one is more likely a typo in milliseconds or minutes). */
const MAX_EXPORT_SECONDS = 86_400;

/** A problem with a DuckDB URL, said in a few words (the caller adds the site and the example), or null. */
export function checkDuckDbUrl(url: string): string | null {
  const read = readDuckDbUrl(url);
  return typeof read === 'string' ? read : null;
}

/** The file and options a DuckDB URL names; throws one configuration line when it names none. */
export function parseDuckDbUrl(url: string, cwd: string = process.cwd()): DuckDbSiteConfig {
  const read = readDuckDbUrl(url, cwd);
  if (typeof read === 'string') throw new SitesyncError('SITESYNC_ERR_CONFIG', `the DuckDB URL ${read}; give ${DUCKDB_URL_EXAMPLE}`);
  return read;
}

function readDuckDbUrl(url: string, cwd: string = process.cwd()): DuckDbSiteConfig | string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'is not a URL';
  }
  if (parsed.protocol !== 'duckdb:') return `starts with ${parsed.protocol} instead of duckdb:`;
  if (parsed.host !== '') return `names a host (${parsed.host}), which a file has none of: write three slashes before an absolute path`;
  if (parsed.hash !== '') return 'has a #fragment, which means nothing here';
  let path: string;
  try {
    path = decodeURIComponent(parsed.pathname);
  } catch {
    return 'has a path that is not valid percent-encoding';
  }
  if (path === '' || path === '/') return 'names no file';
  if (path === ':memory:' || path.startsWith(':memory:')) return 'names an in-memory database, which would forget what was applied (and its progress) at exit';
  if (path.includes('\0')) return 'has a NUL character in its path';
  if (path.endsWith('/')) return 'names a directory, not a file';
  const unknown = [...parsed.searchParams.keys()].find((k) => !(OPTIONS as readonly string[]).includes(k));
  if (unknown !== undefined) return `has an unknown option ${JSON.stringify(unknown.slice(0, 40))} (known: ${OPTIONS.join(', ')})`;
  for (const name of OPTIONS) if (parsed.searchParams.getAll(name).length > 1) return `gives ${name} twice`;
  const deletes = parsed.searchParams.get('deletes') ?? 'soft';
  if (deletes !== 'soft' && deletes !== 'hard') return `has deletes=${JSON.stringify(deletes.slice(0, 40))}; use deletes=soft (flag deleted rows) or deletes=hard (remove them)`;
  const dir = parsed.searchParams.get('exportDir');
  const secondsText = parsed.searchParams.get('exportSeconds');
  if ((dir === null) !== (secondsText === null)) return 'gives only one of exportDir and exportSeconds; give both (a directory and a period) or neither';
  let exported: DuckDbSiteConfig['export'] = null;
  if (dir !== null && secondsText !== null) {
    if (dir === '' || dir.includes('\0')) return 'has an empty exportDir';
    if (!/^[1-9][0-9]{0,5}$/.test(secondsText) || Number(secondsText) > MAX_EXPORT_SECONDS) {
      return `has exportSeconds=${JSON.stringify(secondsText.slice(0, 40))}; give a whole number of seconds from 1 to ${MAX_EXPORT_SECONDS}`;
    }
    exported = { dir: isAbsolute(dir) ? dir : resolve(cwd, dir), seconds: Number(secondsText) };
  }
  return { path: isAbsolute(path) ? path : resolve(cwd, path), deletes, export: exported };
}
