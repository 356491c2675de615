/**
 * What `sitesync status` shows of one SQL Server site: its CDC capture's checkpoint (sitesync.capture_progress)
 * against the last transaction the capture job wrote (capture side), and each source's row of
 * sitesync.apply_progress (apply side).
 *
 * - active: the capture row was written in the last ACTIVE_SECONDS. Capture writes it at every checkpoint and
 *   at least every few seconds when idle (the interval read to its end), so a row older than that means no
 *   process is capturing. SQL Server has no session-level mark of a CDC reader to look at instead (reading the
 *   change tables is plain SELECTs).
 * - lagBytes: null. An LSN's parts (virtual log file, block, slot) do not measure a distance in bytes that
 *   sitesync would trust across virtual log files of different sizes.
 * - retainedBytes: null. The cleanup job deletes CDC rows after its retention whatever sitesync has read; no
 *   log is kept for sitesync (the other side of that: a capture stopped longer than the retention loses
 *   changes, which capture detects and stops on).
 */
import type { AppliedStatus, SiteDatabaseStatus } from '../../src/connector.ts';
import { BOOKKEEPING_SCHEMA } from '../../src/config/names.ts';
import { maxTransactionLsnStatement, MssqlRunner, readMaxTransactionLsn, type QueryRunner, type Row, type Statement } from './mssql-cdc-reader.ts';
import { mssqlConfig } from './mssql-connection.ts';
import { describeSqlServerError } from './sqlserver-errors.ts';
import { quoteName } from './sqlserver-kinds.ts';
import { describeLsn } from './sqlserver-positions.ts';

/** A capture row written less than this long ago belongs to a running capture. */
export const ACTIVE_SECONDS = 30;

const SCHEMA = quoteName(BOOKKEEPING_SCHEMA);

/** Which of sitesync's tables exist (status reads only those). */
export function bookkeepingTablesStatement(): Statement {
  return {
    sql: `SELECT t.name AS table_name FROM sys.tables AS t JOIN sys.schemas AS s ON s.schema_id = t.schema_id WHERE s.name = N'${BOOKKEEPING_SCHEMA}'`,
    params: [],
  };
}

export function captureStatusStatement(site: string): Statement {
  return {
    sql: `SELECT [checkpoint], DATEDIFF(second, [updated_at], SYSUTCDATETIME()) AS age_seconds FROM ${SCHEMA}.[capture_progress] WHERE [site] = @site`,
    params: [{ name: 'site', type: 'varchar', value: site }],
  };
}

export function appliedStatusStatement(sources: readonly string[]): Statement {
  return {
    sql: `SELECT [source], [position] FROM ${SCHEMA}.[apply_progress] WHERE [source] IN (${sources.map((_, i) => `@s${i}`).join(', ')})`,
    params: sources.map((source, i) => ({ name: `s${i}`, type: 'varchar' as const, value: source })),
  };
}

/** What an operator runs when the site no longer captures. */
export function releaseSql(site: string): string {
  return `DELETE FROM ${BOOKKEEPING_SCHEMA}.capture_progress WHERE site = '${site.replace(/'/g, "''")}'`;
}

/** The status from the statements' rows (pure; tests feed it rows). */
export function statusOf(
  site: string,
  sources: readonly string[],
  rows: { readonly tables: readonly Row[]; readonly capture: readonly Row[]; readonly maxLsn: readonly Row[] | null; readonly applied: readonly Row[] },
): SiteDatabaseStatus {
  const progress = rows.capture[0];
  const checkpoint = progress === undefined ? null : String(progress.checkpoint).trim();
  const max = rows.maxLsn === null ? null : readMaxTransactionLsn(rows.maxLsn);
  const applied: AppliedStatus[] = sources.map((source) => {
    const row = rows.applied.find((r) => r.source === source);
    return { source, name: `${BOOKKEEPING_SCHEMA}.apply_progress`, position: row ? String(row.position) : null };
  });
  return {
    capture: {
      name: `CDC capture of ${site}`,
      exists: progress !== undefined,
      active: progress !== undefined && Number(progress.age_seconds) <= ACTIVE_SECONDS,
      confirmed: checkpoint === null ? null : describeLsn(checkpoint),
      current: rows.maxLsn === null ? 'CDC is not enabled' : max === null ? 'no transaction captured yet' : describeLsn(max),
      lagBytes: null,
      retainedBytes: null,
      release: releaseSql(site),
    },
    applied,
  };
}

export async function readSqlServerStatus(url: string, site: string, sources: readonly string[], runner?: QueryRunner): Promise<SiteDatabaseStatus> {
  const connection = runner ?? new MssqlRunner({ ...mssqlConfig(url), connectionTimeout: 10_000 });
  try {
    const tables = await connection.query('status', bookkeepingTablesStatement());
    const has = (name: string): boolean => tables.some((t) => t.table_name === name);
    const capture = has('capture_progress') ? await connection.query('status', captureStatusStatement(site)) : [];
    // No CDC on the database: cdc.lsn_time_mapping does not exist.
    const maxLsn = await connection.query('status', maxTransactionLsnStatement()).catch(() => null);
    const applied = has('apply_progress') && sources.length > 0 ? await connection.query('status', appliedStatusStatement(sources)) : [];
    return statusOf(site, sources, { tables, capture, maxLsn, applied });
  } catch (error) {
    throw describeSqlServerError(error, url, site);
  } finally {
    await connection.close();
  }
}
