/**
 * One table of Oracle errors: what each means for sitesync (wait and retry, halt the source until someone
 * fixes the target, or park the transaction) and the one line an operator reads. Every line that names a
 * server passes its URL through redactUrl and the server's own message through redactSecrets: no password
 * ever reaches a log or an error.
 *
 * What the driver gives (oracledb 6 in Thin mode): a database error carries `errorNum` (the ORA number,
 * 1 for ORA-00001) and `code` (`ORA-00001`), its message starting `ORA-00001: …`. Errors of the driver itself
 * carry a `code` `NJS-nnn`; the network ones are NJS-500 (closed or broken), 501 (terminated), 503 (could not
 * be established), 510 (timed out), 511 (refused), 518 (service not registered with the listener), 521
 * (end-of-file). For some database errors that end a session (ORA-03113, ORA-03114, ORA-03135, ORA-00028…)
 * the driver replaces the code by NJS-500 and puts its own line before the ORA one in the message, keeping
 * `errorNum`; so both the number and every `ORA-nnnnn`/`NJS-nnn` in the message are read.
 *
 * Grading, decided here (as the SQL Server connector's):
 * - a number in SCHEMA (a missing table or column, a refused right, a full tablespace, a read-only
 *   database) → schema: halt the source until someone fixes the target;
 * - a number in DATA → data; a number in TRANSIENT, or the marks of a lost connection → transient;
 * - any other server error → data: Oracle refused this statement with these values, and retrying it as is
 *   never ends. Not transient by default, since a retry loop on a refused value would stall the source
 *   silently.
 */
import type { ApplyErrorKind } from '../../src/apply/sink.ts';
import { SitesyncError, type ErrorCode } from '../../src/errors.ts';
import { redactSecrets, redactUrl } from '../../src/observability/logger.ts';
import { oracledbConfig } from './oracledb-connection.ts';

/** What oracledb puts on an error (see the file comment). */
interface OracledbError extends Error {
  errorNum?: number;
  code?: string;
  cause?: unknown;
}

/** An Oracle database that cannot be reached or went away: sitesync waits and retries, losing nothing. */
export class OracleUnreachableError extends SitesyncError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('SITESYNC_ERR_DATABASE_UNREACHABLE', message, options);
    this.name = 'OracleUnreachableError';
  }
}

/** A value the target cannot hold, or a key already there: the transaction can never apply as it is. */
export class OracleDataError extends SitesyncError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('SITESYNC_ERR_APPLY_DATA', message, options);
    this.name = 'OracleDataError';
  }
}

/** Errors a wait and a retry can cure. */
export const TRANSIENT_NUMBERS: ReadonlySet<number> = new Set([
  60, // deadlock detected while waiting for resource
  54, // resource busy and acquire with NOWAIT specified or timeout expired
  30006, // resource busy; acquire with WAIT timeout expired
  51, // timeout occurred while waiting for a resource
  4021, // timeout occurred while waiting to lock object
  2049, // timeout: distributed transaction waiting for lock
  8177, // can't serialize access for this transaction
  1555, // snapshot too old
  4068, // existing state of packages has been discarded
  4061, // existing state of … has been invalidated
  1013, // user requested cancel of current operation (a call timeout, a break)
  18, // maximum number of sessions exceeded
  20, // maximum number of processes exceeded
  28, // your session has been killed
  31, // session marked for kill
  1012, // not logged on
  1033, // ORACLE initialization or shutdown in progress
  1034, // ORACLE not available
  1089, // immediate shutdown or close in progress
  1092, // ORACLE instance terminated; disconnection forced
  3113, // end-of-file on communication channel
  3114, // not connected to ORACLE
  3135, // connection lost contact
  12170, // TNS: connect timeout occurred
  12514, // TNS: listener does not currently know of service (a database still starting registers it shortly)
  12516, // TNS: listener could not find available handler
  12519, // TNS: no appropriate service handler found
  12520, // TNS: listener could not find available handler for requested type of server
  12528, // TNS: listener: all appropriate instances are blocking new connections
  12537, // TNS: connection closed
  12541, // TNS: no listener
  12543, // TNS: destination host unreachable
  12547, // TNS: lost contact
  12570, // TNS: packet reader failure
  25408, // can not safely replay call
]);

/** The target's objects or rights do not match what the source sends: halt the source until someone fixes it. */
export const SCHEMA_NUMBERS: ReadonlySet<number> = new Set([
  942, // table or view does not exist
  904, // invalid identifier (a column that is not there)
  1031, // insufficient privileges
  913, // too many values
  947, // not enough values
  955, // name is already used by an existing object (a bookkeeping table made by hand differently)
  1918, // user does not exist
  4043, // object does not exist
  1732, // data manipulation operation not legal on this view
  1752, // cannot delete from view without exactly one key-preserved table
  1779, // cannot modify a column which maps to a non key-preserved table
  1776, // cannot modify more than one base table through a join view
  32795, // cannot insert into a generated always identity column
  54013, // INSERT operation disallowed on virtual columns
  54017, // UPDATE operation disallowed on virtual columns
  16000, // database or pluggable database open for read-only access
  1502, // index or partition of such index is in unusable state
  1536, // space quota exceeded for tablespace
  1950, // no privileges on tablespace
  1653, // unable to extend table in tablespace
  1654, // unable to extend index in tablespace
  1688, // unable to extend table partition in tablespace
  1017, // invalid username/password; logon denied
  28000, // the account is locked
  28001, // the password has expired
  1045, // user lacks CREATE SESSION privilege; logon denied
]);

/** Values the target refuses (listed for the record and the tests; any unlisted server error is data too). */
export const DATA_NUMBERS: ReadonlySet<number> = new Set([
  1, // unique constraint violated
  1400, // cannot insert NULL
  1407, // cannot update to NULL
  12899, // value too large for column
  1401, // inserted value too large for column
  1438, // value larger than specified precision allowed for this column
  1426, // numeric overflow
  1722, // invalid number
  1858, // a non-numeric character was found where a numeric was expected
  1840, // input value not long enough for date format
  1841, // (full) year must be between -4713 and +9999, and not be 0
  1843, // not a valid month
  1847, // day of month must be between 1 and last day of month
  1850, // hour must be between 0 and 23
  1851, // minutes must be between 0 and 59
  1852, // seconds must be between 0 and 59
  1861, // literal does not match format string
  1830, // date format picture ends before converting entire input string
  1878, // specified field not found in datetime or interval
  1882, // timezone region not found
  1873, // the leading precision of the interval is too small
  2290, // check constraint violated
  2291, // integrity constraint violated - parent key not found
  2292, // integrity constraint violated - child record found
  6502, // PL/SQL: numeric or value error
  12704, // character set mismatch
  1461, // can bind a LONG value only for insert into a LONG column
  14400, // inserted partition key does not map to any partition
  1410, // invalid ROWID
]);

/** Driver codes of a connection that is gone, closed, never answered, or a call that timed out. */
const CONNECTION_CODES = new Set(['NJS-500', 'NJS-501', 'NJS-503', 'NJS-510', 'NJS-511', 'NJS-518', 'NJS-521', 'NJS-040', 'NJS-123', 'NJS-003', 'DPI-1080', 'DPI-1067']);
const NODE_CODES = /^(ECONNRESET|ECONNREFUSED|ECONNABORTED|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|EPIPE|ETIMEDOUT)$/;

/** Every ORA number an error carries: its errorNum, then each ORA-nnnnn of its message (and its cause's). */
export function oraNumbers(error: unknown): number[] {
  const numbers: number[] = [];
  const visit = (e: unknown, depth: number): void => {
    if (depth > 3 || e === null || typeof e !== 'object') return;
    const o = e as OracledbError;
    if (typeof o.errorNum === 'number' && o.errorNum > 0 && !numbers.includes(o.errorNum)) numbers.push(o.errorNum);
    for (const m of String(o.message ?? '').matchAll(/\bORA-(\d{5})\b/g)) {
      const n = Number(m[1]);
      if (!numbers.includes(n)) numbers.push(n);
    }
    visit(o.cause, depth + 1);
  };
  visit(error, 0);
  return numbers;
}

/** Every driver code (`NJS-500`, `DPI-1080`) and Node socket code an error carries. */
function driverCodes(error: unknown): string[] {
  const codes: string[] = [];
  const visit = (e: unknown, depth: number): void => {
    if (depth > 3 || e === null || typeof e !== 'object') return;
    const o = e as OracledbError;
    if (typeof o.code === 'string') codes.push(o.code);
    for (const m of String(o.message ?? '').matchAll(/\b(NJS-\d{3}|DPI-\d{4})\b/g)) codes.push(m[1]!);
    visit(o.cause, depth + 1);
  };
  visit(error, 0);
  return codes;
}

/**
 * LogMiner's errors when a redo log it was given is no longer the one listed: an online log reused by a log switch
 * between the log list and the mining (ORA-00310 archived log contains sequence x, sequence y required, with
 * ORA-00334 naming the file), or the SCN range no longer covered by the logs added (ORA-01291 missing logfile).
 * Debezium retries them at START_LOGMNR (and once treated ORA-00310 in the middle of a result set as its end,
 * never mining the rest again: a loss). Here the stream breaks as retryable: the next one mines again from the
 * last confirmed checkpoint over a log list read afresh (where the log is now archived), and a log that is
 * really gone is then named by the continuity check of redo-logs.ts.
 */
export const LOG_REUSED_NUMBERS: ReadonlySet<number> = new Set([310, 334, 1291]);

export function isLogReused(error: unknown): boolean {
  return oraNumbers(error).some((n) => LOG_REUSED_NUMBERS.has(n));
}

/** A connection that is gone, closed, never answered, or a call that timed out. */
export function isConnectionLoss(error: unknown): boolean {
  if (driverCodes(error).some((c) => CONNECTION_CODES.has(c) || NODE_CODES.test(c))) return true;
  const message = error instanceof Error ? error.message : String(error);
  return /connection (was )?(lost|closed|broken|reset|refused)|end-of-file on communication channel|ECONN|EPIPE/i.test(message);
}

export function classifyOracleError(error: unknown): ApplyErrorKind {
  if (error instanceof OracleDataError) return 'data';
  if (error instanceof OracleUnreachableError) return 'transient';
  if (error instanceof SitesyncError) {
    // As the other sinks grade their own: gaps, schema drift and configuration halt the source; a bad or
    // untrusted message parks; a service unreachable retries.
    return error.consequence === 'halt-source' || error.consequence === 'fatal' ? 'schema' : error.consequence === 'park' ? 'data' : 'transient';
  }
  const numbers = oraNumbers(error);
  if (numbers.some((n) => SCHEMA_NUMBERS.has(n))) return 'schema';
  if (numbers.some((n) => DATA_NUMBERS.has(n))) return 'data';
  if (numbers.some((n) => TRANSIENT_NUMBERS.has(n))) return 'transient';
  if (isConnectionLoss(error)) return 'transient';
  return 'data'; // a server error not listed, or a TypeError from a value that could not be bound
}

/** The first line of an error's message, with any URL or password in it redacted. */
export function errorLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return redactSecrets(text.split('\n')[0] ?? '');
}

/** The user of a URL, for messages (never its password); `<user>` when the URL cannot be read. */
function userOf(url: string): string {
  try {
    return oracledbConfig(url).user;
  } catch {
    return '<user>';
  }
}

/**
 * A failure to connect, to mine or to prepare the bookkeeping, as the one line that says what to do.
 * Unreachable databases become OracleUnreachableError (graded transient: sitesync retries); a refused login
 * or a missing right is fatal until someone fixes it.
 */
export function describeOracleError(error: unknown, url: string, site: string): Error {
  if (error instanceof SitesyncError) return error;
  const where = `Oracle of site ${site} (${redactUrl(url)})`;
  const first = errorLine(error);
  const numbers = oraNumbers(error);
  const codes = driverCodes(error);
  const make = (code: ErrorCode, text: string): SitesyncError => new SitesyncError(code, text, { cause: error });
  const user = userOf(url);
  if (numbers.includes(1017)) {
    return make('SITESYNC_ERR_PERMISSION', `${where} refused the login (${first}); fix the user or password in the site's Oracle URL, or create the user: CREATE USER ${user} IDENTIFIED BY "<password>";`);
  }
  if (numbers.includes(28000) || numbers.includes(28001)) {
    return make('SITESYNC_ERR_PERMISSION', `${where} refused the login (${first}); as SYSDBA: ALTER USER ${user} ACCOUNT UNLOCK; or ALTER USER ${user} IDENTIFIED BY "<password>";`);
  }
  if (numbers.includes(1045)) {
    return make('SITESYNC_ERR_PERMISSION', `${where}: ${first}; as SYSDBA: GRANT CREATE SESSION TO ${user};`);
  }
  if (numbers.includes(1031) || numbers.includes(1950) || numbers.includes(1536)) {
    return make(
      'SITESYNC_ERR_PERMISSION',
      `${where}: ${first}; the capture user needs LogMiner's privileges (sitesync setup lists the GRANTs), and the SITESYNC schema its quota (ALTER USER SITESYNC QUOTA UNLIMITED ON USERS;)`,
    );
  }
  if (codes.includes('NJS-518') || numbers.includes(12514)) {
    return new OracleUnreachableError(
      `${where}: the listener does not know the service (${first}); a database that is starting registers it within a minute, otherwise fix the service name in the site's Oracle URL — sitesync retries and loses nothing meanwhile`,
      { cause: error },
    );
  }
  if (isLogReused(error)) {
    return new OracleUnreachableError(
      `${where}: a redo log changed between its listing and its mining (${first}), as when a log switch reuses an online log; sitesync mines again from the last checkpoint and loses nothing`,
      { cause: error },
    );
  }
  if (classifyOracleError(error) === 'transient') {
    return new OracleUnreachableError(`${where} is unreachable or went away (${first}); start it or fix the site's Oracle URL — sitesync retries and loses nothing meanwhile`, { cause: error });
  }
  const number = numbers[0];
  return make('SITESYNC_ERR_CONFIG', `${where}: ${first}${number !== undefined ? ` (ORA-${String(number).padStart(5, '0')})` : ''}; fix the database or the site's Oracle URL`);
}
