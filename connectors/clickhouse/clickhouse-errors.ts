/**
 * ClickHouse errors graded for the apply runner (wait and retry, halt the source until someone fixes the
 * target, or park the transaction), and turned into the one line an operator reads. Lines that name a server
 * pass its URL through redactUrl and the server's message through redactSecrets: no password is printed.
 */
import type { ApplyErrorKind } from '../../src/apply/sink.ts';
import { SitesyncError } from '../../src/errors.ts';
import { redactSecrets, redactUrl } from '../../src/observability/logger.ts';
import { ClickHouseServerError } from './clickhouse-driver.ts';

/** A value or a row ClickHouse cannot hold as it is: the transaction parks (or halts, as configured). */
export class ClickHouseDataError extends SitesyncError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('SITESYNC_ERR_APPLY_DATA', message, options);
    this.name = 'ClickHouseDataError';
  }
}

/** The server cannot be reached or went away: sitesync waits and retries, losing nothing. */
export class ClickHouseUnreachableError extends SitesyncError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('SITESYNC_ERR_DATABASE_UNREACHABLE', message, options);
    this.name = 'ClickHouseUnreachableError';
  }
}

/** Server errors a wait and a retry can cure. */
const TRANSIENT = new Set([
  3, // UNEXPECTED_END_OF_FILE
  32, // ATTEMPT_TO_READ_AFTER_EOF
  159, // TIMEOUT_EXCEEDED
  160, // TOO_SLOW
  202, // TOO_MANY_SIMULTANEOUS_QUERIES
  203, // NO_FREE_CONNECTION
  209, // SOCKET_TIMEOUT
  210, // NETWORK_ERROR
  225, // NO_ZOOKEEPER
  236, // ABORTED
  241, // MEMORY_LIMIT_EXCEEDED
  242, // TABLE_IS_READ_ONLY (a replica lost its keeper session)
  252, // TOO_MANY_PARTS
  285, // TOO_FEW_LIVE_REPLICAS
  286, // UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE
  319, // UNKNOWN_STATUS_OF_INSERT
  394, // QUERY_WAS_CANCELLED
  425, // SYSTEM_ERROR
  439, // CANNOT_SCHEDULE_TASK
  473, // DEADLOCK_AVOIDED
  999, // KEEPER_EXCEPTION
]);

/** The target's tables, rights or settings do not match: halt the source until someone fixes the target. */
const SCHEMA = new Set([
  16, // NO_SUCH_COLUMN_IN_TABLE
  44, // ILLEGAL_COLUMN
  47, // UNKNOWN_IDENTIFIER
  50, // UNKNOWN_TYPE
  60, // UNKNOWN_TABLE
  81, // UNKNOWN_DATABASE
  115, // UNKNOWN_SETTING
  122, // INCOMPATIBLE_COLUMNS
  164, // READONLY
  192, // UNKNOWN_USER
  193, // WRONG_PASSWORD
  194, // REQUIRED_PASSWORD
  291, // DATABASE_ACCESS_DENIED
  452, // SETTING_CONSTRAINT_VIOLATION
  497, // ACCESS_DENIED
  516, // AUTHENTICATION_FAILED
]);

export function classifyClickHouseError(error: unknown): ApplyErrorKind {
  if (error instanceof ClickHouseDataError) return 'data';
  if (error instanceof ClickHouseUnreachableError) return 'transient';
  if (error instanceof SitesyncError) {
    return error.consequence === 'halt-source' || error.consequence === 'fatal' ? 'schema' : error.consequence === 'park' ? 'data' : 'transient';
  }
  const server = serverErrorOf(error);
  if (server) return TRANSIENT.has(server.code) ? 'transient' : SCHEMA.has(server.code) ? 'schema' : 'data';
  return isConnectionLoss(error) ? 'transient' : 'data';
}

/** The server error behind `error` (itself, or its cause), if any. */
export function serverErrorOf(error: unknown): ClickHouseServerError | null {
  let e: unknown = error;
  for (let depth = 0; depth < 4 && e instanceof Error; depth++) {
    if (e instanceof ClickHouseServerError) return e;
    e = e.cause;
  }
  return null;
}

/** Node's socket errors and the client's own for a server that is gone, closed or never answered. */
export function isConnectionLoss(error: unknown): boolean {
  const e = error as { code?: unknown; message?: unknown } | null | undefined;
  const code = typeof e?.code === 'string' ? e.code : '';
  if (/^(ECONN[A-Z]*|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|UND_ERR_[A-Z_]*)$/.test(code)) return true;
  return /socket hang up|connection.*(lost|closed|refused|reset|killed)|timed? ?out|ECONN|EPIPE/i.test(typeof e?.message === 'string' ? e.message : String(error));
}

/** The first line of an error's message, secrets redacted. */
export function errorLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return redactSecrets((text.split('\n')[0] ?? '').trim());
}

/**
 * A failure to reach the server or to prepare sitesync's tables, as the line that says what to do:
 * unreachable (transient: sitesync retries), a refused login or a missing right (fatal until fixed).
 */
export function describeClickHouseError(error: unknown, url: string, site: string | null): Error {
  if (error instanceof SitesyncError) return error;
  const where = `ClickHouse${site === null ? '' : ` of site ${site}`} (${redactUrl(url)})`;
  const first = errorLine(error);
  const server = serverErrorOf(error);
  if (server) {
    switch (server.code) {
      case 192:
      case 193:
      case 194:
      case 516:
        return new SitesyncError('SITESYNC_ERR_PERMISSION', `${where} refused the login (${first}); fix the user or password in the site's ClickHouse URL`, { cause: error });
      case 164:
      case 291:
      case 497:
        return new SitesyncError(
          'SITESYNC_ERR_PERMISSION',
          `${where}: ${first}; the apply user needs, on the URL's database, CREATE TABLE, ALTER ADD COLUMN, SELECT, INSERT and ALTER DELETE (GRANT … ON db.* TO user)`,
          { cause: error },
        );
      case 81:
        return new SitesyncError('SITESYNC_ERR_CONFIG', `${where}: ${first}; create the database (CREATE DATABASE …) or fix the site's ClickHouse URL`, { cause: error });
      default:
        if (classifyClickHouseError(error) !== 'transient') return new SitesyncError('SITESYNC_ERR_CONFIG', `${where}: ${first}; fix the server or the site's ClickHouse URL`, { cause: error });
    }
  }
  if (classifyClickHouseError(error) === 'transient') {
    return new ClickHouseUnreachableError(`${where} is unreachable or went away (${first}); start it or fix the site's ClickHouse URL — sitesync retries and loses nothing meanwhile`, { cause: error });
  }
  return error instanceof Error ? error : new Error(String(error));
}

/**
 * An error met while applying, as one line naming the transaction or batch and how to fix it; the original is
 * its cause, so classify still grades it by the server's code.
 */
export function describeApplyError(error: unknown, context: { readonly source: string; readonly site: string; readonly what: string }): Error {
  if (error instanceof SitesyncError) return error;
  const server = serverErrorOf(error);
  const first = errorLine(error);
  if (!server) {
    if (isConnectionLoss(error)) {
      return new ClickHouseUnreachableError(`ClickHouse of site ${context.site} went away while applying ${context.what} from site ${context.source} (${first}); sitesync retries and loses nothing`, { cause: error });
    }
    return error instanceof Error ? error : new Error(String(error));
  }
  const kind = classifyClickHouseError(error);
  const fix =
    kind === 'transient'
      ? 'sitesync retries'
      : kind === 'schema'
        ? "fix the table or the apply user's rights at ClickHouse (sitesync retries and resumes by itself)"
        : 'fix the target so that it accepts the change, then retry the parked transaction';
  return new ClickHouseApplyError(`applying ${context.what} from site ${context.source} at site ${context.site}: ${first} (ClickHouse error ${server.code}); ${fix}`, server);
}

/** A server error met while applying, described; `cause` is the server error, which classify reads. */
export class ClickHouseApplyError extends Error {
  constructor(message: string, cause: ClickHouseServerError) {
    super(message, { cause });
    this.name = 'ClickHouseApplyError';
  }
}
