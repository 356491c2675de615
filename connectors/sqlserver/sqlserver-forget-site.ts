/**
 * `sitesync remove-site` at a SQL Server site (Connector.forgetSite): what sitesync keeps there of a site that
 * is being removed, all of it rows of the `sitesync` schema:
 *
 * - at the removed site, with its capture URL: its row of `capture_progress` (checkpoint, last position
 *   published, capture instances known). Nothing else is sitesync's: CDC on the database and its capture
 *   instances were enabled by a DBA (setup only prints the statements), and the cleanup job trims the change
 *   tables whatever sitesync read, so nothing is retained on sitesync's account;
 * - at the removed site, with its apply URL, for every other site: its rows of `apply_progress` and
 *   `spilled_parts`;
 * - at every other site, with its apply URL: the removed site's rows of `apply_progress` and `spilled_parts`.
 *
 * A DELETE of an `apply_progress` row is a change of the capture instance `sitesync_apply_progress`: that
 * site's capture drops the transaction as a relayed write (change-stream.ts: a delete names no source to
 * learn from), so it reaches no other site. `conflicts` and `parked` are history, left as they are.
 *
 * Every statement is built here by a pure function and run through a QueryRunner (the thin layer status uses
 * too: mssql in production); each DELETE returns the rows it removed (OUTPUT DELETED), which is how a step
 * knows whether it did something or found it gone.
 */
import { BOOKKEEPING_SCHEMA } from '../../src/config/names.ts';
import type { QueryRunner, Statement } from './mssql-cdc-reader.ts';
import { describeSqlServerError } from './sqlserver-errors.ts';
import { quoteName } from './sqlserver-kinds.ts';
import { bookkeepingTablesStatement } from './sqlserver-status.ts';

type Print = (line: string) => void;

const SCHEMA = quoteName(BOOKKEEPING_SCHEMA);

/** Deletes the rows of sitesync.`table` whose `column` is `value`, returning one row per row deleted. */
export function forgetRowsStatement(table: 'capture_progress' | 'apply_progress' | 'spilled_parts', column: 'site' | 'source', value: string): Statement {
  return {
    sql: `DELETE FROM ${SCHEMA}.${quoteName(table)} OUTPUT DELETED.${quoteName(column)} AS [gone] WHERE ${quoteName(column)} = @value`,
    params: [{ name: 'value', type: 'varchar', value }],
  };
}

export async function forgetSqlServerSite(
  urls: { readonly capture: string | null; readonly apply: string },
  site: string,
  removed: string,
  sites: readonly string[],
  print: Print,
  open: (url: string) => QueryRunner,
): Promise<void> {
  const run = async (url: string, work: (runner: QueryRunner, tables: ReadonlySet<string>) => Promise<void>): Promise<void> => {
    const runner = open(url);
    try {
      const tables = new Set((await runner.query('forgetSite', bookkeepingTablesStatement())).map((r) => String(r.table_name)));
      await work(runner, tables);
    } catch (error) {
      throw describeSqlServerError(error, url, site);
    } finally {
      await runner.close();
    }
  };
  const forget = async (runner: QueryRunner, tables: ReadonlySet<string>, table: 'capture_progress' | 'apply_progress' | 'spilled_parts', column: 'site' | 'source', value: string): Promise<number> =>
    tables.has(table) ? (await runner.query('forgetSite', forgetRowsStatement(table, column, value))).length : 0;

  if (site === removed && urls.capture !== null) {
    await run(urls.capture, async (runner, tables) => {
      const n = await forget(runner, tables, 'capture_progress', 'site', site);
      print(n > 0 ? `dropped ${BOOKKEEPING_SCHEMA}.capture_progress row of ${site} at ${site}` : `already gone: ${BOOKKEEPING_SCHEMA}.capture_progress row of ${site} at ${site}`);
      print(`no slot at ${site}: CDC and its capture instances are the DBA's (sitesync enabled none); disable them (sys.sp_cdc_disable_db) if nothing else reads them`);
    });
  }
  const sources = site === removed ? sites.filter((s) => s !== removed) : [removed];
  await run(urls.apply, async (runner, tables) => {
    for (const source of sources) {
      const n = await forget(runner, tables, 'apply_progress', 'source', source);
      print(n > 0 ? `dropped ${BOOKKEEPING_SCHEMA}.apply_progress row of ${source} at ${site}` : `already gone: ${BOOKKEEPING_SCHEMA}.apply_progress row of ${source} at ${site}`);
      const parts = await forget(runner, tables, 'spilled_parts', 'source', source);
      if (parts > 0) print(`dropped ${parts} part(s) of an unfinished transaction of ${source} kept in ${BOOKKEEPING_SCHEMA}.spilled_parts at ${site}`);
    }
  });
  if (site === removed) {
    print(`left at ${site}: schema ${BOOKKEEPING_SCHEMA} with its conflict log and parked records (history); drop its tables and the schema there once nobody needs them (apply_progress: after sys.sp_cdc_disable_table of its capture instance)`);
  }
}
