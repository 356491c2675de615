/**
 * What `sitesync status` shows of one Oracle site: its LogMiner capture's checkpoint (SITESYNC.CAPTURE_PROGRESS)
 * against the database's current SCN (capture side), and each source's row of SITESYNC.APPLY_PROGRESS (apply
 * side).
 *
 * - active: the capture row was written in the last ACTIVE_SECONDS. Capture writes it at every checkpoint and
 *   at least every few seconds when idle, so a row older than that means no process is capturing. A LogMiner
 *   session leaves no mark another session could look at reliably (V$LOGMNR_SESSION lists only the persistent
 *   sessions of Oracle's own replication), so the row's age is the sign.
 * - lagBytes: null. SCNs count changes, not bytes, and the redo between two SCNs is spread over logs of every
 *   thread: no distance in bytes sitesync would trust.
 * - retainedBytes: null. Archived logs are kept or deleted by the DBA's RMAN policy, not for sitesync; nothing
 *   is retained on sitesync's account (the other side of that: a capture stopped longer than the archived logs
 *   are kept finds a sequence missing, and stops with the fix).
 * - release: the DELETE of the site's capture row (there is nothing else to drop: no slot, no instance).
 */
import type { AppliedStatus, SiteDatabaseStatus } from '../../src/connector.ts';
import { currentScnStatement, OracledbSession, readCurrentScn, sessionSetupStatement, type OracleSession, type Row, type Statement } from './oracledb-logminer-reader.ts';
import { oracledbConfig } from './oracledb-connection.ts';
import { describeOracleError } from './oracle-errors.ts';
import { describePosition, parseCheckpoint } from './oracle-positions.ts';
import { ORACLE_BOOKKEEPING_OWNER } from './oracle-setup.ts';

/** A capture row written less than this long ago belongs to a running capture. */
export const ACTIVE_SECONDS = 30;

const OWNER = `"${ORACLE_BOOKKEEPING_OWNER}"`;

/** Which of sitesync's tables exist (status reads only those). */
export function bookkeepingTablesStatement(): Statement {
  return { sql: `SELECT TABLE_NAME FROM ALL_TABLES WHERE OWNER = '${ORACLE_BOOKKEEPING_OWNER}'`, binds: [] };
}

export function captureStatusStatement(site: string): Statement {
  return {
    sql:
      `SELECT "CHECKPOINT", ROUND((CAST(SYS_EXTRACT_UTC(SYSTIMESTAMP) AS DATE) - CAST("UPDATED_AT" AS DATE)) * 86400) AS AGE_SECONDS ` +
      `FROM ${OWNER}."CAPTURE_PROGRESS" WHERE "SITE" = :site`,
    binds: [{ name: 'site', value: site }],
  };
}

export function appliedStatusStatement(sources: readonly string[]): Statement {
  return {
    sql: `SELECT "SOURCE", "POSITION" FROM ${OWNER}."APPLY_PROGRESS" WHERE "SOURCE" IN (${sources.map((_, i) => `:s${i}`).join(', ')})`,
    binds: sources.map((source, i) => ({ name: `s${i}`, value: source })),
  };
}

/** What an operator runs when the site no longer captures. */
export function releaseSql(site: string): string {
  return `DELETE FROM ${ORACLE_BOOKKEEPING_OWNER}.CAPTURE_PROGRESS WHERE SITE = '${site.replace(/'/g, "''")}'; COMMIT;`;
}

function describeCheckpoint(text: string): string {
  try {
    return describePosition(parseCheckpoint(text).after);
  } catch {
    return text; // not a checkpoint this version writes: shown as it is
  }
}

/** The status from the statements' rows (pure; tests feed it rows). `currentScn` null: it could not be read. */
export function statusOf(
  site: string,
  sources: readonly string[],
  rows: { readonly tables: readonly Row[]; readonly capture: readonly Row[]; readonly currentScn: readonly Row[] | null; readonly applied: readonly Row[] },
): SiteDatabaseStatus {
  const progress = rows.capture[0];
  const checkpoint = progress === undefined ? null : String(progress.CHECKPOINT).trim();
  const applied: AppliedStatus[] = sources.map((source) => {
    const row = rows.applied.find((r) => r.SOURCE === source);
    return { source, name: `${ORACLE_BOOKKEEPING_OWNER}.APPLY_PROGRESS`, position: row ? String(row.POSITION) : null };
  });
  return {
    capture: {
      name: `LogMiner capture of ${site}`,
      exists: progress !== undefined,
      active: progress !== undefined && Number(progress.AGE_SECONDS) <= ACTIVE_SECONDS,
      confirmed: checkpoint === null ? null : describeCheckpoint(checkpoint),
      current: rows.currentScn === null ? 'unknown (no right to read V$DATABASE)' : `SCN ${readCurrentScn(rows.currentScn)}`,
      lagBytes: null,
      retainedBytes: null,
      release: releaseSql(site),
    },
    applied,
  };
}

export async function readOracleStatus(url: string, site: string, sources: readonly string[], session?: OracleSession): Promise<SiteDatabaseStatus> {
  let connection: OracleSession | null = session ?? null;
  try {
    if (connection === null) {
      const config = oracledbConfig(url);
      connection = new OracledbSession({ ...config, attributes: { ...config.attributes, connectTimeout: config.attributes.connectTimeout ?? 10 } }, [sessionSetupStatement()]);
    }
    const tables = await connection.query('status', bookkeepingTablesStatement());
    const has = (name: string): boolean => tables.some((t) => t.TABLE_NAME === name);
    const capture = has('CAPTURE_PROGRESS') ? await connection.query('status', captureStatusStatement(site)) : [];
    const currentScn = await connection.query('currentScn', currentScnStatement()).catch(() => null);
    const applied = has('APPLY_PROGRESS') && sources.length > 0 ? await connection.query('status', appliedStatusStatement(sources)) : [];
    return statusOf(site, sources, { tables, capture, currentScn, applied });
  } catch (error) {
    throw describeOracleError(error, url, site);
  } finally {
    await connection?.close();
  }
}
