/**
 * One table of SQL Server errors: what each means for sitesync (wait and retry, halt the source until someone
 * fixes the target, or park the transaction) and the one line an operator reads. Every line that names a server
 * passes its URL through redactUrl and the server's own message through redactSecrets: no password ever reaches
 * a log or an error.
 *
 * What the driver gives (mssql 12 over tedious 19): a server error is an mssql RequestError (code `EREQUEST`)
 * carrying SQL Server's error `number` and its severity as `class`, and, when a batch raised several, the
 * earlier ones in `precedingErrors`; a connection failure is a ConnectionError with a `code` (`ELOGIN`,
 * `ESOCKET`, `ETIMEOUT`, `ECONNCLOSED`, `EINSTLOOKUP`…), a request that outlived its timeout a RequestError with
 * code `ETIMEOUT`; the tedious error underneath is `originalError`.
 *
 * Grading, decided here:
 * - a number in TRANSIENT, a severity of 17 or more (the server ran out of a resource, or the connection is
 *   gone: 20–25 end it), or no number and the marks of a lost connection → transient;
 * - a number in SCHEMA (a missing object or column, a refused right, a read-only database, an identity
 *   column, TRUNCATE on a CDC table) → schema;
 * - any other server error → data: SQL Server refused this statement with these values, and retrying it as is
 *   never ends (DATA_NUMBERS lists the usual ones for the record and the tests). Not transient by default,
 *   since a retry loop on a refused value would stall the source silently.
 */
import type { ApplyErrorKind } from '../../src/apply/sink.ts';
import { SitesyncError, type ErrorCode } from '../../src/errors.ts';
import { redactSecrets, redactUrl } from '../../src/observability/logger.ts';

/** What mssql puts on an error (see the file comment). */
interface MssqlError extends Error {
  number?: number;
  code?: string;
  class?: number;
  state?: number | string;
  originalError?: unknown;
  precedingErrors?: unknown[];
}

/** A SQL Server that cannot be reached or went away: sitesync waits and retries, losing nothing. */
export class SqlServerUnreachableError extends SitesyncError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('SITESYNC_ERR_DATABASE_UNREACHABLE', message, options);
    this.name = 'SqlServerUnreachableError';
  }
}

/** A value the target cannot hold, or a key already there: the transaction can never apply as it is. */
export class SqlServerDataError extends SitesyncError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('SITESYNC_ERR_APPLY_DATA', message, options);
    this.name = 'SqlServerDataError';
  }
}

/** Errors a wait and a retry can cure. */
export const TRANSIENT_NUMBERS: ReadonlySet<number> = new Set([
  -2, // client-side timeout (tedious' "Timeout expired")
  1205, // chosen as deadlock victim
  8107, // IDENTITY_INSERT is already ON for another table: a session left so (a cancelled batch); a new session clears it
  1222, // lock request time out period exceeded
  1204, // the instance cannot obtain a lock resource
  701, // insufficient system memory
  8645, // a timeout waiting for memory resources
  3960, // snapshot isolation update conflict
  3961, // snapshot isolation: the object was changed by DDL in another transaction
  233, // no process is on the other end of the pipe
  64, // the specified network name is no longer available
  121, // the semaphore timeout period has expired (transport)
  10053, // transport: connection aborted by the software in the host
  10054, // transport: connection reset by the peer
  10060, // transport: connection attempt timed out
  10928, // Azure SQL: resource limit reached
  10929, // Azure SQL: minimum guarantee not met
  40197, // Azure SQL: error processing the request (failover)
  40501, // Azure SQL: the service is busy
  40613, // Azure SQL: database not currently available
  49918, // Azure SQL: not enough resources to process the request
  49919, // Azure SQL: too many create or update operations
  49920, // Azure SQL: too many operations in progress
  41301, // in-memory OLTP: dependency failure (retry)
  41302, // in-memory OLTP: update conflict
  41305, // in-memory OLTP: repeatable read validation failure
  41325, // in-memory OLTP: serializable validation failure
  41839, // in-memory OLTP: too many commit dependencies
  17142, // the server is paused
  6005, // SHUTDOWN is in progress
]);

/** The target's objects or rights do not match what the source sends: halt the source until someone fixes it. */
export const SCHEMA_NUMBERS: ReadonlySet<number> = new Set([
  208, // invalid object name
  207, // invalid column name
  213, // column name or number of supplied values does not match the table definition
  4711, // cannot truncate a table published for replication or enabled for change data capture
  229, // the SELECT/INSERT/UPDATE/DELETE permission was denied on the object
  230, // the permission was denied on the column
  262, // CREATE TABLE (or another statement) permission denied in the database
  2760, // the schema does not exist or you do not have permission to use it
  15247, // user does not have permission to perform this action
  916, // the server principal cannot access the database under the current security context
  18456, // login failed
  4060, // cannot open the database requested by the login
  911, // database does not exist
  3906, // the database is read-only
  544, // cannot insert an explicit value for an identity column when IDENTITY_INSERT is OFF
  8101, // an explicit value for the identity column can only be given with a column list and IDENTITY_INSERT ON
  8102, // cannot update an identity column
  271, // a computed column cannot be modified
  4405, // a view or function is not updatable because the change affects several base tables
  4406, // update or insert of a view or function failed because it contains a derived field
  2714, // there is already an object named … (a bookkeeping table made by hand differently)
]);

/** Values the target refuses (listed for the record and the tests; any unlisted server error is data too). */
export const DATA_NUMBERS: ReadonlySet<number> = new Set([
  2627, // violation of a PRIMARY KEY or UNIQUE constraint
  2601, // cannot insert a duplicate key row (unique index)
  515, // cannot insert NULL into a NOT NULL column
  8152, // string or binary data would be truncated (before SQL Server 2019's 2628)
  2628, // string or binary data would be truncated in table …, column …
  241, // conversion failed when converting date and/or time from character string
  242, // conversion of a char to datetime resulted in an out-of-range value
  8114, // error converting data type … to …
  8115, // arithmetic overflow error converting … to data type …
  220, // arithmetic overflow for a data type (tinyint, smallint…)
  232, // arithmetic overflow for a type
  245, // conversion failed when converting a varchar value to int
  248, // conversion overflowed an int column
  244, // conversion overflowed an int (smallint, tinyint) column
  517, // adding a value to a date column caused an overflow
  547, // the statement conflicted with a FOREIGN KEY or CHECK constraint
  8134, // divide by zero
  9455, // XML parsing: illegal qualified name character
  9420, // XML parsing: illegal xml character
  511, // the row would exceed the maximum row size
  7119, // attempting to grow a LOB beyond the maximum allowed size
]);

/** The server error numbers of an error: its own, those of the errors before it in its batch, its original's. */
export function errorNumbers(error: unknown): number[] {
  const numbers: number[] = [];
  const visit = (e: unknown, depth: number): void => {
    if (depth > 3 || e === null || typeof e !== 'object') return;
    const m = e as MssqlError & { info?: { number?: number } };
    const n = typeof m.number === 'number' ? m.number : typeof m.info?.number === 'number' ? m.info.number : undefined;
    if (n !== undefined && !numbers.includes(n)) numbers.push(n);
    for (const p of m.precedingErrors ?? []) visit(p, depth + 1);
    visit(m.originalError, depth + 1);
  };
  visit(error, 0);
  return numbers;
}

/** The highest severity (`class`) any part of the error carries; 0 when none does. */
function severity(error: unknown): number {
  let worst = 0;
  const visit = (e: unknown, depth: number): void => {
    if (depth > 3 || e === null || typeof e !== 'object') return;
    const m = e as MssqlError & { info?: { class?: number } };
    const c = typeof m.class === 'number' ? m.class : typeof m.info?.class === 'number' ? m.info.class : 0;
    worst = Math.max(worst, c);
    for (const p of m.precedingErrors ?? []) visit(p, depth + 1);
    visit(m.originalError, depth + 1);
  };
  visit(error, 0);
  return worst;
}

export function classifySqlServerError(error: unknown): ApplyErrorKind {
  if (error instanceof SqlServerDataError) return 'data';
  if (error instanceof SqlServerUnreachableError) return 'transient';
  if (error instanceof SitesyncError) {
    // As the other sinks grade their own: gaps, schema drift and configuration halt the source; a bad or
    // untrusted message parks; a service unreachable retries.
    return error.consequence === 'halt-source' || error.consequence === 'fatal' ? 'schema' : error.consequence === 'park' ? 'data' : 'transient';
  }
  const numbers = errorNumbers(error);
  if (numbers.some((n) => SCHEMA_NUMBERS.has(n))) return 'schema';
  if (numbers.some((n) => DATA_NUMBERS.has(n))) return 'data';
  if (numbers.some((n) => TRANSIENT_NUMBERS.has(n))) return 'transient';
  if (severity(error) >= 17) return 'transient';
  if (isConnectionLoss(error)) return 'transient';
  return 'data'; // a server error not listed, or a TypeError from a value that could not be bound
}

const CONNECTION_CODES = /^(ESOCKET|ETIMEOUT|ECONNCLOSED|ECONNRESET|ECONNREFUSED|ECONNABORTED|ENOTOPEN|EINSTLOOKUP|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|EPIPE|ETIMEDOUT|ENOCONN|ECANCEL|EALREADYCONNECTING|EALREADYCONNECTED)$/;

/** A connection that is gone, closed, never answered, or a request that timed out. */
export function isConnectionLoss(error: unknown): boolean {
  let found = false;
  const visit = (e: unknown, depth: number): void => {
    if (found || depth > 3 || e === null || typeof e !== 'object') return;
    const m = e as MssqlError;
    if (typeof m.code === 'string' && CONNECTION_CODES.test(m.code)) found = true;
    else if (typeof m.number === 'number' && m.number === -2) found = true;
    visit(m.originalError, depth + 1);
  };
  visit(error, 0);
  if (found) return true;
  const message = error instanceof Error ? error.message : String(error);
  return /connection (is )?(lost|closed|reset|refused)|failed to connect|socket|timeout expired|ECONN|EPIPE|connection is not open/i.test(message);
}

/** The first line of an error's message, with any URL or password in it redacted. */
export function errorLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return redactSecrets(text.split('\n')[0] ?? '');
}

function isLoginFailure(error: unknown): boolean {
  const e = error as MssqlError | null | undefined;
  return errorNumbers(error).includes(18456) || (e?.code === 'ELOGIN' && /login failed/i.test(e.message ?? '') && !/cannot open database/i.test(e.message ?? ''));
}

/**
 * A failure to connect, to read CDC or to prepare the bookkeeping, as the one line that says what to do.
 * Unreachable servers become SqlServerUnreachableError (graded transient: sitesync retries); a refused login,
 * a missing database or right is fatal until someone fixes it.
 */
export function describeSqlServerError(error: unknown, url: string, site: string): Error {
  if (error instanceof SitesyncError) return error;
  const e = error as MssqlError | null | undefined;
  const where = `SQL Server of site ${site} (${redactUrl(url)})`;
  const first = errorLine(error);
  const numbers = errorNumbers(error);
  const make = (code: ErrorCode, text: string): SitesyncError => new SitesyncError(code, text, { cause: error });
  if (numbers.includes(4060) || numbers.includes(911) || (e?.code === 'ELOGIN' && /cannot open database/i.test(e.message ?? ''))) {
    return make('SITESYNC_ERR_CONFIG', `${where}: ${first}; create the database, map the login to it (CREATE USER [<user>] FOR LOGIN [<user>];), or fix the database in the site's SQL Server URL`);
  }
  if (isLoginFailure(error)) {
    return make('SITESYNC_ERR_PERMISSION', `${where} refused the login (${first}); fix the user or password in the site's SQL Server URL, or create the login: CREATE LOGIN [<user>] WITH PASSWORD = '<password>';`);
  }
  if (numbers.some((n) => n === 229 || n === 230 || n === 262 || n === 15247 || n === 916 || n === 2760 || n === 22902)) {
    return make(
      'SITESYNC_ERR_PERMISSION',
      `${where}: ${first}; sitesync needs db_owner in the site's database for CDC (ALTER ROLE db_owner ADD MEMBER [<user>];), or an administrator runs sitesync setup once`,
    );
  }
  if (e?.code === 'ETIMEOUT' && /failed to connect/i.test(e.message ?? '')) {
    return new SqlServerUnreachableError(`${where} did not answer (${first}); start it, open its port, or fix the site's SQL Server URL — sitesync retries and loses nothing meanwhile`, { cause: error });
  }
  if (classifySqlServerError(error) === 'transient') {
    return new SqlServerUnreachableError(`${where} is unreachable or went away (${first}); start it or fix the site's SQL Server URL — sitesync retries and loses nothing meanwhile`, { cause: error });
  }
  const number = numbers[0];
  return make('SITESYNC_ERR_CONFIG', `${where}: ${first}${number !== undefined ? ` (error ${number})` : ''}; fix the server or the site's SQL Server URL`);
}
