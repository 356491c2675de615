/**
 * One table of PostgreSQL errors: what each means for sitesync (retry, park, halt the source, stop) and
 * the one line an operator reads.
 */
import type { ApplyErrorKind } from '../../src/apply/sink.ts';
import { SitesyncError, type ErrorCode } from '../../src/errors.ts';
import { redactUrl } from '../../src/observability/logger.ts';

interface PgError extends Error {
  code?: string;
}

/** SQLSTATE classes and codes that a wait and a retry can cure. */
const TRANSIENT = [/^08/, /^53/, /^57P0[1-3]$/, /^57014$/, /^40001$/, /^40P01$/, /^55P03$/, /^55006$/];
/** The target's tables do not match the source's: halt that source until someone fixes the table. */
const SCHEMA = [/^42P01$/, /^42703$/, /^42704$/, /^42804$/, /^42883$/, /^3F000$/, /^42501$/];

export function classifyApplyError(error: unknown): ApplyErrorKind {
  if (error instanceof SitesyncError) {
    return error.consequence === 'halt-source' || error.consequence === 'fatal' ? 'schema' : error.consequence === 'park' ? 'data' : 'transient';
  }
  const code = (error as PgError)?.code;
  // No SQLSTATE: a lost connection or a timeout of the client is transient; anything else (a TypeError
  // from a value the plan could not handle…) came from the message, and retrying it would never end.
  if (!code) return isConnectionLoss(error) ? 'transient' : 'data';
  if (isSocketError(error)) return 'transient'; // ECONNRESET, EPIPE…: Node's code, not a SQLSTATE
  if (TRANSIENT.some((re) => re.test(code))) return 'transient';
  if (SCHEMA.some((re) => re.test(code))) return 'schema';
  return 'data';
}

/**
 * node-postgres's own errors for a connection that is gone or never answered carry no code, nor do
 * amqplib's for a channel that closed under an acknowledgement (IllegalOperationError).
 */
function isConnectionLoss(error: unknown): boolean {
  if ((error as Error)?.name === 'IllegalOperationError') return true;
  return /connection|terminated|not queryable|timeout|timed out|socket|channel (closed|ended)|ECONN|EPIPE/i.test((error as Error)?.message ?? String(error));
}

/** A Node system error (its code is an errno name such as ECONNRESET, never a SQLSTATE, none of whose classes begins with E). */
function isSocketError(error: unknown): boolean {
  const e = error as { code?: unknown; syscall?: unknown };
  return typeof e?.syscall === 'string' || (typeof e?.code === 'string' && /^E[A-Z_]+$/.test(e.code));
}

/** The replication origin functions the sink calls (postgres-sink.ts). */
const ORIGIN_FUNCTIONS = [
  'pg_replication_origin_create(text)',
  'pg_replication_origin_session_setup(text)',
  'pg_replication_origin_xact_setup(pg_lsn, timestamptz)',
  'pg_replication_origin_progress(text, boolean)',
];

/** The role a PostgreSQL URL logs in as, as an identifier for a GRANT. */
function roleOf(url: string): string {
  let name = '';
  try {
    name = decodeURIComponent(new URL(url).username);
  } catch {
    // an unparseable URL never got this far; fall through to the generic name
  }
  if (!name) return "<sitesync's role>";
  return /^[a-z_][a-z0-9_$]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

/** A failure to connect or prepare, turned into the one line that says what to do. */
export function describePostgresError(error: unknown, url: string, site: string): SitesyncError {
  if (error instanceof SitesyncError) return error;
  const e = error as PgError & { errno?: string };
  const where = `PostgreSQL of site ${site} (${redactUrl(url)})`;
  const first = (e?.message ?? String(error)).split('\n')[0];
  const make = (code: ErrorCode, text: string) => new SitesyncError(code, text, { cause: error });
  const unreachable = () =>
    make('SITESYNC_ERR_DATABASE_UNREACHABLE', `${where} is unreachable (${first}); start it or fix sites.${site}.postgres — sitesync retries and loses nothing meanwhile`);
  switch (e?.code) {
    case '28P01':
    case '28000':
      return make('SITESYNC_ERR_PERMISSION', `${where} refused the login (${first}); fix the user or password in sites.${site}.postgres, or pg_hba.conf`);
    case '3D000':
      return make('SITESYNC_ERR_CONFIG', `${where}: ${first}; create the database or fix sites.${site}.postgres`);
    case '42501':
      if (/pg_replication_origin_/.test(first ?? '')) {
        // Applying records positions with replication origins, whose functions only superusers may run by default.
        const role = roleOf(url);
        return make('SITESYNC_ERR_PERMISSION', `${where}: ${first}; applying needs a superuser, or run as one: GRANT EXECUTE ON FUNCTION ${ORIGIN_FUNCTIONS.join(', ')} TO ${role}`);
      }
      return make('SITESYNC_ERR_PERMISSION', `${where}: ${first}; sitesync's role needs REPLICATION and ownership of the replicated tables (or superuser)`);
    case undefined:
      return unreachable();
    default:
      if (isSocketError(e)) return unreachable(); // ECONNREFUSED, ECONNRESET, ENOTFOUND, ETIMEDOUT…
      if (/^08|^57P/.test(e.code)) return make('SITESYNC_ERR_DATABASE_UNREACHABLE', `${where} closed the connection (${first}); sitesync retries`);
      return make('SITESYNC_ERR_DATABASE_UNREACHABLE', `${where}: ${first} (SQLSTATE ${e.code})`);
  }
}

export function isFatal(error: unknown): boolean {
  return error instanceof SitesyncError && error.consequence === 'fatal';
}
