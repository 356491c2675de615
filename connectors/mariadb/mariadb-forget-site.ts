/**
 * `sitesync remove-site` at a MariaDB site (Connector.forgetSite): what sitesync keeps there of a site that is
 * being removed, all of it rows of the bookkeeping database (`sitesync`, bookkeeping.ts):
 *
 * - at the removed site, with its capture URL: its row of `capture_progress` (the binary log checkpoint and
 *   the last position it published). Nothing else holds anything server-side: MariaDB keeps its binary logs
 *   for binlog_expire_logs_seconds whatever a reader has read, so there is no slot to drop;
 * - at the removed site, with its apply URL, for every other site: its rows of `apply_progress` and
 *   `spilled_parts`;
 * - at every other site, with its apply URL: the removed site's rows of `apply_progress` and `spilled_parts`.
 *
 * A DELETE of an `apply_progress` row is a change to the loop-marker table: that site's capture drops the
 * transaction as a relayed write (transaction-grouper.ts: a delete names no source to learn from), so the
 * delete reaches no other site. `row_writers` and `conflicts` are left: they record who wrote each row and
 * how conflicts were resolved, history that stays true; `parked` likewise.
 */
import mysql from 'mysql2/promise';
import type { ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import { BOOKKEEPING_SCHEMA } from '../../src/config/names.ts';
import { SitesyncError } from '../../src/errors.ts';
import { redactUrl } from '../../src/observability/logger.ts';
import { describeMariaDbError, errorLine } from './mariadb-errors.ts';
import { quoteIdent } from './mariadb-statements.ts';
import { connectionOptions } from './mariadb-source.ts';

type Print = (line: string) => void;

const DATABASE = BOOKKEEPING_SCHEMA;
const table = (name: string): string => `${quoteIdent(DATABASE)}.${quoteIdent(name)}`;

export async function forgetMariaDbSite(
  urls: { readonly capture: string | null; readonly apply: string },
  site: string,
  removed: string,
  sites: readonly string[],
  print: Print,
): Promise<void> {
  if (site === removed && urls.capture !== null) {
    await withConnection(urls.capture, site, 'capture', async (db) => {
      const done = db.tables.has('capture_progress') ? await db.delete('capture_progress', 'site', site) : 0;
      print(done > 0 ? `dropped ${DATABASE}.capture_progress row of ${site} at ${site}` : `already gone: ${DATABASE}.capture_progress row of ${site} at ${site}`);
      print(`no slot at ${site}: MariaDB keeps its binary logs for binlog_expire_logs_seconds, not for sitesync's reader`);
    });
  }
  const sources = site === removed ? sites.filter((s) => s !== removed) : [removed];
  await withConnection(urls.apply, site, 'apply', async (db) => {
    for (const source of sources) {
      const progress = db.tables.has('apply_progress') ? await db.delete('apply_progress', 'source', source) : 0;
      print(progress > 0 ? `dropped ${DATABASE}.apply_progress row of ${source} at ${site}` : `already gone: ${DATABASE}.apply_progress row of ${source} at ${site}`);
      const parts = db.tables.has('spilled_parts') ? await db.delete('spilled_parts', 'source', source) : 0;
      if (parts > 0) print(`dropped ${parts} part(s) of an unfinished transaction of ${source} kept in ${DATABASE}.spilled_parts at ${site}`);
    }
  });
  if (site === removed) {
    print(`left at ${site}: database ${DATABASE} with its row writers, conflict log and parked records (history); DROP DATABASE ${DATABASE} there once nobody needs them`);
  }
}

interface Db {
  readonly tables: ReadonlySet<string>;
  /** Deletes the rows of `name` whose `column` is `value`; how many there were. */
  delete(name: string, column: string, value: string): Promise<number>;
}

async function withConnection(url: string, site: string, role: 'capture' | 'apply', work: (db: Db) => Promise<void>): Promise<void> {
  let connection: mysql.Connection | null = null;
  try {
    connection = await mysql.createConnection({ ...connectionOptions(url), connectTimeout: 10_000 });
    const c = connection;
    const [rows] = await c.query<RowDataPacket[]>('SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?', [DATABASE]);
    const tables = new Set(rows.map((r) => String(r.name)));
    await work({
      tables,
      async delete(name, column, value) {
        try {
          const [result] = await c.query<ResultSetHeader>(`DELETE FROM ${table(name)} WHERE ${quoteIdent(column)} = ?`, [value]);
          return result.affectedRows;
        } catch (error) {
          const errno = (error as { errno?: number }).errno;
          if (errno !== 1142 && errno !== 1044) throw error;
          throw new SitesyncError(
            'SITESYNC_ERR_PERMISSION',
            `MariaDB of site ${site} (${redactUrl(url)}) refused to delete from ${DATABASE}.${name} (${errorLine(error)}); run remove-site with the site's ${role} URL of a user that may, or as an administrator: GRANT DELETE ON ${DATABASE}.* TO <that user>`,
            { cause: error },
          );
        }
      },
    });
  } catch (error) {
    throw describeMariaDbError(error, url, site);
  } finally {
    await connection?.end().catch(() => undefined);
  }
}
