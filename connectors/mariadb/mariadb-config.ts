/**
 * What a MariaDB (or MySQL) site's configuration must say: a `mariadb://` or `mysql://` URL per role, with
 * no database in its path (sitesync reads and writes `schema.table` as `database.table`, and keeps its own
 * tables in the `sitesync` database). The server itself must write a row-based binary log (README, Databases).
 */
export const MARIADB_URL_EXAMPLE = 'a MariaDB URL such as mariadb://sitesync@db.madrid:3306/';

/** A problem with a MariaDB URL, said in a few words, or null. */
export function checkMariaDbUrl(url: string): string | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'is not a URL';
  }
  if (parsed.protocol !== 'mariadb:' && parsed.protocol !== 'mysql:') return `starts with ${parsed.protocol}// instead of mariadb:// or mysql://`;
  if (parsed.port !== '' && !(Number(parsed.port) > 0 && Number(parsed.port) < 65536)) return `has port ${parsed.port}`;
  return null;
}
