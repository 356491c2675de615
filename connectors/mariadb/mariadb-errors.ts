/**
 * One table of MariaDB errors, for the MariaDB sink: what each means for sitesync (wait and retry, halt
 * the source until someone fixes the target, or park the transaction) and the one line an operator reads.
 * Every line that names a server passes its URL through redactUrl, and a server's own message through
 * redactSecrets: no password ever reaches a log or an error.
 */
import type { ApplyErrorKind } from '../../src/apply/sink.ts';
import { SitesyncError, type ErrorCode } from '../../src/errors.ts';
import { redactSecrets, redactUrl } from '../../src/observability/logger.ts';

/** What mysql2 puts on a server error (`errno`: MariaDB's number) or a socket error (`code`: Node's errno name). */
interface MysqlError extends Error {
  errno?: number;
  code?: string;
  sqlState?: string;
  fatal?: boolean;
}

/**
 * A value the target cannot hold as it is (mariadb-bind.ts), or a key an insert found already there: the
 * transaction can never apply as it is, so the runner parks it (or halts, as configured). Its message
 * names the table, the column, the value (a short preview) and why.
 */
export class MariaDbDataError extends SitesyncError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('SITESYNC_ERR_APPLY_DATA', message, options);
    this.name = 'MariaDbDataError';
  }
}

/** A MariaDB server that cannot be reached or went away: sitesync waits and retries, losing nothing. */
export class MariaDbUnreachableError extends SitesyncError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('SITESYNC_ERR_DATABASE_UNREACHABLE', message, options);
    this.name = 'MariaDbUnreachableError';
  }
}

/**
 * Server errors a wait and a retry can cure: lock wait timeout, deadlock, server shutting down, connection
 * killed, query interrupted or over max_statement_time, too many connections, network errors, the
 * server's own out-of-memory / out-of-resources errors.
 */
const TRANSIENT = new Set([
  1205, // ER_LOCK_WAIT_TIMEOUT
  1213, // ER_LOCK_DEADLOCK
  1053, // ER_SERVER_SHUTDOWN
  1077, // ER_NORMAL_SHUTDOWN
  1079, // ER_SHUTDOWN_COMPLETE
  1927, // ER_CONNECTION_KILLED
  1317, // ER_QUERY_INTERRUPTED
  1969, // ER_STATEMENT_TIMEOUT (max_statement_time)
  1040, // ER_CON_COUNT_ERROR
  1203, // ER_TOO_MANY_USER_CONNECTIONS
  1041, // ER_OUT_OF_RESOURCES
  1037, // ER_OUTOFMEMORY
  1038, // ER_OUT_OF_SORTMEMORY
  1152, // ER_ABORTING_CONNECTION
  1153, // ER_NET_PACKET_TOO_LARGE is data (below); 1154-1161 are network read/write errors
  1154,
  1155,
  1156,
  1157,
  1158,
  1159,
  1160,
  1161,
  1180, // ER_ERROR_DURING_COMMIT
  1181, // ER_ERROR_DURING_ROLLBACK
  1614, // ER_XA_RBDEADLOCK
  1637, // ER_TOO_MANY_CONCURRENT_TRXS
  2006, // CR_SERVER_GONE_ERROR (client codes, should a driver report them)
  2013, // CR_SERVER_LOST
]);
TRANSIENT.delete(1153); // a packet too large stays too large

/**
 * The target's tables or rights do not match what the source sends: halt that source until someone fixes
 * the target; sitesync resumes by itself.
 */
const SCHEMA = new Set([
  1146, // ER_NO_SUCH_TABLE
  1054, // ER_BAD_FIELD_ERROR (unknown column)
  1049, // ER_BAD_DB_ERROR (unknown database)
  1109, // ER_UNKNOWN_TABLE
  1051, // ER_BAD_TABLE_ERROR
  1044, // ER_DBACCESS_DENIED_ERROR
  1142, // ER_TABLEACCESS_DENIED_ERROR
  1143, // ER_COLUMNACCESS_DENIED_ERROR
  1227, // ER_SPECIFIC_ACCESS_DENIED_ERROR
  1356, // ER_VIEW_INVALID
  1288, // ER_NON_UPDATABLE_TABLE
  1471, // ER_NON_INSERTABLE_TABLE
  1290, // ER_OPTION_PREVENTS_STATEMENT (--read-only)
  1836, // ER_READ_ONLY_MODE
  1906, // ER_WARNING_NON_DEFAULT_VALUE_FOR_GENERATED_COLUMN
  1045, // ER_ACCESS_DENIED_ERROR (the login itself: parking data for it would be wrong)
  1698, // ER_ACCESS_DENIED_NO_PASSWORD_ERROR
]);

/**
 * Values the target refuses: the transaction cannot apply as it is. Listed for the record (and the
 * tests); any other server error is graded data too, since retrying what the server refused never ends.
 */
export const DATA_ERRNOS: ReadonlySet<number> = new Set([
  1062, // ER_DUP_ENTRY
  1406, // ER_DATA_TOO_LONG
  1264, // ER_WARN_DATA_OUT_OF_RANGE
  1292, // ER_TRUNCATED_WRONG_VALUE (incorrect date, time, uuid… value)
  1366, // ER_TRUNCATED_WRONG_VALUE_FOR_FIELD (incorrect integer, string value…)
  1265, // WARN_DATA_TRUNCATED (a strict-mode error: an enum or set value that is not a member…)
  1451, // ER_ROW_IS_REFERENCED_2 (a foreign key refuses the delete or update)
  1452, // ER_NO_REFERENCED_ROW_2 (a foreign key refuses the insert or update)
  4025, // ER_CONSTRAINT_FAILED (a CHECK constraint, a JSON column's json_valid…)
  1048, // ER_BAD_NULL_ERROR
  1364, // ER_NO_DEFAULT_FOR_FIELD
  1690, // ER_DATA_OUT_OF_RANGE
  1367, // ER_ILLEGAL_VALUE_FOR_TYPE
  1153, // ER_NET_PACKET_TOO_LARGE
]);

export function classifyMariaDbError(error: unknown): ApplyErrorKind {
  if (error instanceof MariaDbDataError) return 'data';
  if (error instanceof MariaDbUnreachableError) return 'transient';
  if (error instanceof SitesyncError) {
    // As the PostgreSQL sink grades its own: gaps, schema drift, oversized transactions halt the source;
    // a bad or untrusted message parks; a service unreachable retries.
    return error.consequence === 'halt-source' || error.consequence === 'fatal' ? 'schema' : error.consequence === 'park' ? 'data' : 'transient';
  }
  const e = error as MysqlError | null | undefined;
  const errno = typeof e?.errno === 'number' ? e.errno : undefined;
  if (errno !== undefined && e?.sqlState !== undefined) {
    if (TRANSIENT.has(errno)) return 'transient';
    if (SCHEMA.has(errno)) return 'schema';
    return 'data';
  }
  // No server error number: a lost or refused connection, a timeout, a closed connection of the driver is
  // transient; anything else (a TypeError from a value the plan could not bind…) came from the message.
  return isConnectionLoss(error) ? 'transient' : 'data';
}

/** Node's socket errors and mysql2's own for a connection that is gone, closed or never answered. */
export function isConnectionLoss(error: unknown): boolean {
  const e = error as MysqlError | null | undefined;
  if (e?.fatal === true) return true; // mysql2 marks every error that ends the connection fatal
  const code = typeof e?.code === 'string' ? e.code : '';
  if (/^(PROTOCOL_CONNECTION_LOST|PROTOCOL_SEQUENCE_TIMEOUT|PROTOCOL_ENQUEUE_AFTER_FATAL_ERROR|PROTOCOL_ENQUEUE_AFTER_QUIT|ETIMEDOUT|ECONN[A-Z]*|EPIPE|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN)$/.test(code)) return true;
  return /connection.*(lost|closed|refused|reset)|closed state|server has gone away|socket|timed? ?out|ECONN|EPIPE/i.test(e?.message ?? String(error));
}

/** The first line of an error's message, with any URL or password in it redacted. */
export function errorLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return redactSecrets(text.split('\n')[0] ?? '');
}

/**
 * A failure to connect or to prepare the bookkeeping, turned into the one line that says what to do.
 * Unreachable servers become MariaDbUnreachableError (graded transient: sitesync retries); a refused
 * login or a missing right is fatal until someone fixes it.
 */
export function describeMariaDbError(error: unknown, url: string, site: string): Error {
  if (error instanceof SitesyncError || error instanceof MariaDbUnreachableError) return error;
  const e = error as MysqlError | null | undefined;
  const where = `MariaDB of site ${site} (${redactUrl(url)})`;
  const first = errorLine(error);
  const make = (code: ErrorCode, text: string): SitesyncError => new SitesyncError(code, text, { cause: error });
  switch (e?.errno) {
    case 1045: // ER_ACCESS_DENIED_ERROR
    case 1698: // ER_ACCESS_DENIED_NO_PASSWORD_ERROR
      return make('SITESYNC_ERR_PERMISSION', `${where} refused the login (${first}); fix the user or password in the site's MariaDB URL, or GRANT that user access`);
    case 1044:
    case 1142:
    case 1227:
      return make(
        'SITESYNC_ERR_PERMISSION',
        `${where}: ${first}; applying needs, on the bookkeeping database, CREATE, SELECT, INSERT, UPDATE and DELETE (or an administrator creates its tables first), and on the replicated tables SELECT, INSERT, UPDATE and DELETE`,
      );
    case 1049:
      return make('SITESYNC_ERR_CONFIG', `${where}: ${first}; create the database or fix the site's MariaDB URL`);
    default:
      break;
  }
  if (classifyMariaDbError(error) === 'transient') {
    return new MariaDbUnreachableError(`${where} is unreachable or went away (${first}); start it or fix the site's MariaDB URL — sitesync retries and loses nothing meanwhile`, { cause: error });
  }
  return make('SITESYNC_ERR_CONFIG', `${where}: ${first}${e?.errno ? ` (error ${e.errno})` : ''}; fix the server or the site's MariaDB URL`);
}

/**
 * A server error met while applying, as one line naming what and how to fix it (the error itself is kept as
 * its cause, so classify still sees its number).
 */
export function describeApplyError(error: unknown, context: { readonly source: string; readonly site: string; readonly transaction?: string }): Error {
  if (error instanceof SitesyncError || error instanceof MariaDbUnreachableError || error instanceof MariaDbApplyError) return error;
  const e = error as MysqlError | null | undefined;
  if (typeof e?.errno !== 'number') return error instanceof Error ? error : new Error(String(error));
  const what = `applying ${context.transaction ? `transaction ${context.transaction}` : `site ${context.source}'s changes`} at site ${context.site}`;
  const first = errorLine(error);
  const fix = ((): string => {
    switch (e.errno) {
      case 1062:
        return 'the key is already there at the target: remove or fix the row there, or set a conflict policy, then retry the parked transaction';
      case 1406:
      case 1264:
      case 1292:
      case 1366:
      case 1265:
      case 1690:
        return 'the target column cannot hold the value: widen or change the column as at the source, then retry the parked transaction';
      case 1451:
      case 1452:
        return 'a foreign key at the target refuses it: make the referenced rows match the source, or drop the foreign key, then retry the parked transaction';
      case 4025:
        return 'a CHECK constraint at the target refuses it: align the constraint with the source, then retry the parked transaction';
      case 1048:
      case 1364:
        return 'a NOT NULL column at the target gets no value: make it nullable or give it a default as at the source, then retry the parked transaction';
      case 1146:
      case 1054:
      case 1049:
        return 'create the database, table or column as at the source (sitesync retries and resumes by itself)';
      case 1044:
      case 1142:
      case 1143:
        return "grant the apply user SELECT, INSERT, UPDATE and DELETE on the replicated tables (sitesync retries and resumes by itself)";
      default:
        return classifyMariaDbError(error) === 'transient' ? 'sitesync retries' : 'fix the target so that it accepts the change, then retry the parked transaction';
    }
  })();
  return new MariaDbApplyError(`${what}: ${first} (MariaDB error ${e.errno}); ${fix}`, e, error);
}

/** A server error met while applying, described; keeps the server's errno, SQLSTATE and code for classify. */
export class MariaDbApplyError extends Error {
  readonly errno: number | undefined;
  readonly sqlState: string | undefined;
  readonly code: string | undefined;
  readonly fatal: boolean | undefined;
  constructor(message: string, facts: MysqlError, cause: unknown) {
    super(message, { cause });
    this.name = 'MariaDbApplyError';
    this.errno = facts.errno;
    this.sqlState = facts.sqlState;
    this.code = facts.code;
    this.fatal = facts.fatal;
  }
}
