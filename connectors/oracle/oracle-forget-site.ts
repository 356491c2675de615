/**
 * `sitesync remove-site` at an Oracle site (Connector.forgetSite): what sitesync keeps there of a site that is
 * being removed, all of it rows of the SITESYNC schema:
 *
 * - at the removed site, with its capture URL: its row of CAPTURE_PROGRESS (checkpoint, last position
 *   published). Nothing else is sitesync's: a LogMiner session leaves nothing behind once it ends, archived
 *   logs are kept by the DBA's RMAN policy, and ARCHIVELOG mode and supplemental logging are the DBA's;
 * - at the removed site, with its apply URL, for every other site: its rows of APPLY_PROGRESS and
 *   SPILLED_PARTS;
 * - at every other site, with its apply URL: the removed site's rows of APPLY_PROGRESS and SPILLED_PARTS.
 *
 * A DELETE of an APPLY_PROGRESS row is a change to the loop-marker table: that site's capture drops the
 * transaction as a relayed write (mined-stream.ts: a delete names no source to learn from), so it reaches no
 * other site. CONFLICTS and PARKED are history, left as they are.
 *
 * Statements run through an OracleSession (the thin layer status uses too: oracledb in production). Its
 * `execute` commits at once and says nothing of rows, so each step counts the rows first, then deletes them:
 * the removed site's process is stopped, and no other process writes a removed site's rows.
 */
import type { OracleSession, Statement } from './oracledb-logminer-reader.ts';
import { describeOracleError } from './oracle-errors.ts';
import { ORACLE_BOOKKEEPING_OWNER } from './oracle-setup.ts';
import { bookkeepingTablesStatement } from './oracle-status.ts';

type Print = (line: string) => void;
type Table = 'CAPTURE_PROGRESS' | 'APPLY_PROGRESS' | 'SPILLED_PARTS';

const OWNER = `"${ORACLE_BOOKKEEPING_OWNER}"`;

/** How many rows of SITESYNC.`table` have `column` = `value`. */
export function countRowsStatement(table: Table, column: 'SITE' | 'SOURCE', value: string): Statement {
  return { sql: `SELECT COUNT(*) AS "N" FROM ${OWNER}."${table}" WHERE "${column}" = :value`, binds: [{ name: 'value', value }] };
}

/** Deletes those rows. */
export function forgetRowsStatement(table: Table, column: 'SITE' | 'SOURCE', value: string): Statement {
  return { sql: `DELETE FROM ${OWNER}."${table}" WHERE "${column}" = :value`, binds: [{ name: 'value', value }] };
}

export async function forgetOracleSite(
  urls: { readonly capture: string | null; readonly apply: string },
  site: string,
  removed: string,
  sites: readonly string[],
  print: Print,
  open: (url: string) => OracleSession,
): Promise<void> {
  const run = async (url: string, work: (session: OracleSession, tables: ReadonlySet<string>) => Promise<void>): Promise<void> => {
    const session = open(url);
    try {
      const tables = new Set((await session.query('forgetSite', bookkeepingTablesStatement())).map((r) => String(r.TABLE_NAME)));
      await work(session, tables);
    } catch (error) {
      throw describeOracleError(error, url, site);
    } finally {
      await session.close();
    }
  };
  const forget = async (session: OracleSession, tables: ReadonlySet<string>, table: Table, column: 'SITE' | 'SOURCE', value: string): Promise<number> => {
    if (!tables.has(table)) return 0;
    const n = Number((await session.query('forgetSite', countRowsStatement(table, column, value)))[0]?.N ?? 0);
    if (n > 0) await session.execute('forgetSite', forgetRowsStatement(table, column, value));
    return n;
  };
  const owner = ORACLE_BOOKKEEPING_OWNER;

  if (site === removed && urls.capture !== null) {
    await run(urls.capture, async (session, tables) => {
      const n = await forget(session, tables, 'CAPTURE_PROGRESS', 'SITE', site);
      print(n > 0 ? `dropped ${owner}.CAPTURE_PROGRESS row of ${site} at ${site}` : `already gone: ${owner}.CAPTURE_PROGRESS row of ${site} at ${site}`);
      print(`no slot at ${site}: LogMiner keeps nothing once its session ends; archived logs, ARCHIVELOG mode and supplemental logging are the DBA's`);
    });
  }
  const sources = site === removed ? sites.filter((s) => s !== removed) : [removed];
  await run(urls.apply, async (session, tables) => {
    for (const source of sources) {
      const n = await forget(session, tables, 'APPLY_PROGRESS', 'SOURCE', source);
      print(n > 0 ? `dropped ${owner}.APPLY_PROGRESS row of ${source} at ${site}` : `already gone: ${owner}.APPLY_PROGRESS row of ${source} at ${site}`);
      const parts = await forget(session, tables, 'SPILLED_PARTS', 'SOURCE', source);
      if (parts > 0) print(`dropped ${parts} part(s) of an unfinished transaction of ${source} kept in ${owner}.SPILLED_PARTS at ${site}`);
    }
  });
  if (site === removed) {
    print(`left at ${site}: the ${owner} tables with their conflict log and parked records (history); drop them there once nobody needs them`);
  }
}
