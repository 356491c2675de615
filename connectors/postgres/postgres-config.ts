/**
 * What a PostgreSQL site's configuration must say: a postgres:// URL per role (README, Configuration).
 * The core validates the shape of `sites.<name>.database`; this checks what only PostgreSQL knows.
 */
export const POSTGRES_URL_EXAMPLE = 'a PostgreSQL URL such as postgres://sitesync@db.paris:5432/shop';

/** A problem with a PostgreSQL URL, said in a few words, or null. */
export function checkPostgresUrl(url: string): string | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'is not a URL';
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') return `starts with ${parsed.protocol}// instead of postgres://`;
  return null;
}
