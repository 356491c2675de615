/**
 * What a ClickHouse site's configuration says: one URL per role, `clickhouse://user:password@host:8123/database`
 * (HTTP) or `clickhouses://…:8443/…` (HTTPS), with options in the query string:
 *
 * - `deletes=hard` (default): a deleted row is written once more, flagged `_sitesync_deleted = 1`, and that flag
 *   is the is-deleted parameter of the current-state table's ReplacingMergeTree, so `FINAL` leaves the row out.
 * - `deletes=soft`: the flag is a plain column: the row stays, flagged, under `FINAL` too.
 *
 * The database of the path (default `default`) holds every table sitesync writes: the replicated tables as
 * `schema__table` and `schema__table__history`, and its own bookkeeping as `_sitesync_…` (a name with no `__`,
 * so no replicated table can take it). The password is never printed: messages name the server by `redactUrl`.
 */
export const CLICKHOUSE_URL_EXAMPLE = 'a ClickHouse URL such as clickhouse://sitesync:password@db.analytics:8123/sitesync (clickhouses:// for TLS)';

export type DeleteMode = 'hard' | 'soft';

export interface ClickHouseConfig {
  /** The HTTP endpoint, without user-info: `http://host:8123`. */
  readonly endpoint: string;
  readonly username: string;
  readonly password: string;
  readonly database: string;
  readonly deletes: DeleteMode;
  readonly tls: boolean;
}

const OPTIONS = new Set(['deletes']);

/** A problem with a ClickHouse URL, said in a few words (never its password), or null. */
export function checkClickHouseUrl(url: string): string | null {
  const parsed = parse(url);
  return typeof parsed === 'string' ? parsed : null;
}

/** The URL read; throws one line (without the password) when it is not a ClickHouse URL sitesync can use. */
export function parseClickHouseUrl(url: string): ClickHouseConfig {
  const parsed = parse(url);
  if (typeof parsed === 'string') throw new Error(`the ClickHouse URL ${parsed}; give ${CLICKHOUSE_URL_EXAMPLE}`);
  return parsed;
}

function parse(url: string): ClickHouseConfig | string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return 'is not a URL';
  }
  if (u.protocol !== 'clickhouse:' && u.protocol !== 'clickhouses:') return `starts with ${u.protocol}// instead of clickhouse:// or clickhouses://`;
  if (u.hostname === '') return 'names no host';
  if (u.port !== '' && !(Number(u.port) > 0 && Number(u.port) < 65536)) return `has port ${u.port}`;
  const tls = u.protocol === 'clickhouses:';
  let path: string;
  let username: string;
  let password: string;
  try {
    path = decodeURIComponent(u.pathname.replace(/^\//, ''));
    username = decodeURIComponent(u.username);
    password = decodeURIComponent(u.password);
  } catch {
    return 'has a malformed %-escape in its user, password or database';
  }
  if (path.includes('/')) return `has path /${path}: give one database name after the host`;
  for (const name of u.searchParams.keys()) {
    if (!OPTIONS.has(name)) return `has option ${JSON.stringify(name)}, which sitesync does not know (known: deletes=hard|soft)`;
  }
  const deletes = u.searchParams.get('deletes') ?? 'hard';
  if (deletes !== 'hard' && deletes !== 'soft') return `has deletes=${JSON.stringify(deletes).slice(1, -1)}: give deletes=hard or deletes=soft`;
  const host = u.hostname.includes(':') && !u.hostname.startsWith('[') ? `[${u.hostname}]` : u.hostname;
  return {
    endpoint: `${tls ? 'https' : 'http'}://${host}:${u.port || (tls ? '8443' : '8123')}`,
    username: username || 'default',
    password,
    database: path || 'default',
    deletes,
    tls,
  };
}
