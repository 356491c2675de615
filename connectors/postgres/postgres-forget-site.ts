/**
 * `sitesync remove-site` at a PostgreSQL site (Connector.forgetSite): what sitesync keeps there of a site
 * that is being removed.
 *
 * At the removed site's own database:
 * - with its capture URL: the slot `sitesync_<site>` (it keeps WAL for ever once nobody reads it), the
 *   publication `sitesync_<site>`, and its row of `sitesync.capture_progress` (the last position it
 *   published, which a new site of the same name would otherwise name as its first message's predecessor);
 * - with its apply URL, for every other site: the replication origin `sitesync_<source>_to_<site>` and the
 *   rows of `sitesync.apply_progress` and `sitesync.spilled_parts` of that source.
 * At every other site, with its apply URL: the origin `sitesync_<removed>_to_<site>` and the removed site's
 * rows of `sitesync.apply_progress` and `sitesync.spilled_parts`. Origins are server-wide, and so are slots:
 * their names carry the sites, so several sites sharing one server never touch each other's.
 *
 * Left as it is: the `sitesync` schema with the conflict log and the parked records (history, and the
 * schema may be an administrator's; the line printed last at the removed site says how to drop it), and
 * every other site's causal context (`capture_progress.seen`), which only says what had been seen.
 *
 * An origin is held for its whole life by the apply session of its source at a running site (postgres-sink.ts
 * sets it up once per connection), and PostgreSQL refuses to drop an origin in use. That session is ended
 * here — found by its application_name, `sitesync apply <source>-><site>` — since nothing comes from the
 * removed site any more; the running process opens it again only if a message of that site still arrives
 * (remove-site says when that can be). Any other holder is left alone and named in the error.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { BOOKKEEPING_SCHEMA, originName, publicationName, slotName } from '../../src/config/names.ts';
import { SitesyncError } from '../../src/errors.ts';
import { redactUrl } from '../../src/observability/logger.ts';
import { describePostgresError } from './postgres-errors.ts';

type Print = (line: string) => void;

/** How long a PostgreSQL backend asked to end is waited for, and how long its origin may take to be free. */
const TERMINATE_WAIT_MS = 5_000;
const RELEASE_ATTEMPTS = 25;

export async function forgetPostgresSite(
  urls: { readonly capture: string | null; readonly apply: string },
  site: string,
  removed: string,
  sites: readonly string[],
  print: Print,
): Promise<void> {
  if (site === removed && urls.capture !== null) {
    await withClient(urls.capture, site, 'capture', (db) => forgetCapture(db, site, print));
  }
  const sources = site === removed ? sites.filter((s) => s !== removed) : [removed];
  await withClient(urls.apply, site, 'apply', async (db) => {
    for (const source of sources) await forgetSource(db, source, site, print);
  });
  if (site === removed) {
    print(`left at ${site}: schema ${BOOKKEEPING_SCHEMA} with its conflict log and parked records (history); DROP SCHEMA ${BOOKKEEPING_SCHEMA} CASCADE there once nobody needs them`);
  }
}

/** One connection with one role's URL, and what its steps need to say a failure in one line. */
interface Db {
  readonly client: pg.Client;
  readonly url: string;
  readonly site: string;
  readonly role: 'capture' | 'apply';
  readonly user: string;
  readonly tables: ReadonlySet<string>;
}

async function withClient(url: string, site: string, role: 'capture' | 'apply', work: (db: Db) => Promise<void>): Promise<void> {
  const client = new pg.Client({ connectionString: url, application_name: 'sitesync remove-site', connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined); // a lost connection fails the query in flight, which says so
  try {
    await client.connect();
    // Read from the catalog: a role without USAGE on sitesync's schema can still tell what is there.
    const { rows } = await client.query<{ relname: string | null; role_name: string }>(
      `SELECT c.relname, current_user AS role_name FROM (SELECT 1) one
         LEFT JOIN pg_class c ON c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1) AND c.relkind IN ('r', 'p')`,
      [BOOKKEEPING_SCHEMA],
    );
    const tables = new Set(rows.flatMap((r) => (r.relname === null ? [] : [r.relname])));
    await work({ client, url, site, role, user: rows[0]!.role_name, tables });
  } catch (error) {
    if ((error as { code?: string }).code === '55006') {
      // Something began to use what was being dropped (a slot being read again): a process was started meanwhile.
      const first = ((error as Error).message ?? '').split('\n')[0];
      throw new SitesyncError('SITESYNC_ERR_SITE_IN_USE', `PostgreSQL of site ${site}: ${first}; stop what uses it (a "sitesync run" started meanwhile?), then run remove-site again`, { cause: error });
    }
    throw describePostgresError(error, url, site);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** `work`, with a refused right turned into the one line that names it and how to grant it. */
async function step<T>(db: Db, what: string, grant: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if ((error as { code?: string }).code !== '42501') throw error;
    const first = ((error as Error).message ?? '').split('\n')[0];
    throw new SitesyncError(
      'SITESYNC_ERR_PERMISSION',
      `PostgreSQL of site ${db.site} (${redactUrl(db.url)}) refused to ${what} (${first}); run remove-site with a superuser in the site's ${db.role} URL, or as one: ${grant.replace('<role>', quoteIdent(db.user))}`,
      { cause: error },
    );
  }
}

async function forgetCapture(db: Db, site: string, print: Print): Promise<void> {
  const slot = slotName(site);
  const found = await db.client.query<{ database: string | null; here: string; pid: number | null }>(
    'SELECT database, current_database() AS here, active_pid AS pid FROM pg_replication_slots WHERE slot_name = $1',
    [slot],
  );
  const existing = found.rows[0];
  if (!existing) {
    print(`already gone: slot ${slot} at ${site}`);
  } else if (existing.pid !== null) {
    throw new SitesyncError('SITESYNC_ERR_SITE_IN_USE', `slot ${slot} at ${site} is being read (PID ${existing.pid}): stop the "sitesync run --site ${site}" that reads it, then run remove-site again`);
  } else if (existing.database !== existing.here) {
    throw new SitesyncError(
      'SITESYNC_ERR_CONFIG',
      `slot ${slot} was made in database ${existing.database}, not in ${existing.here} where site ${site}'s URL points: drop it there (SELECT pg_drop_replication_slot('${slot}') connected to ${existing.database}), then run remove-site again`,
    );
  } else {
    await step(db, `drop slot ${slot}`, 'ALTER ROLE <role> REPLICATION', () => db.client.query('SELECT pg_drop_replication_slot($1)', [slot]));
    print(`dropped slot ${slot} at ${site}`);
  }

  const publication = publicationName(site);
  const pub = await db.client.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [publication]);
  if (pub.rows.length === 0) {
    print(`already gone: publication ${publication} at ${site}`);
  } else {
    await step(db, `drop publication ${publication}`, `ALTER PUBLICATION ${quoteIdent(publication)} OWNER TO <role>`, () => db.client.query(`DROP PUBLICATION IF EXISTS ${quoteIdent(publication)}`));
    print(`dropped publication ${publication} at ${site}`);
  }

  const table = `${BOOKKEEPING_SCHEMA}.capture_progress`;
  const deleted = db.tables.has('capture_progress')
    ? await step(db, `delete from ${table}`, `GRANT DELETE ON ${table} TO <role>`, () => db.client.query(`DELETE FROM ${table} WHERE site = $1`, [site]))
    : null;
  print(deleted?.rowCount ? `dropped ${table} row of ${site} at ${site}` : `already gone: ${table} row of ${site} at ${site}`);
}

/** What `target` keeps of `source`: its origin, its progress row (a source whose positions are no LSN), the parts kept of an unfinished transaction. */
async function forgetSource(db: Db, source: string, target: string, print: Print): Promise<void> {
  await dropOrigin(db, source, target, print);
  // Only what was there is said: a PostgreSQL source keeps no progress row, and most sites keep no parts.
  const progress = `${BOOKKEEPING_SCHEMA}.apply_progress`;
  if (db.tables.has('apply_progress')) {
    const { rowCount } = await step(db, `delete from ${progress}`, `GRANT DELETE ON ${progress} TO <role>`, () => db.client.query(`DELETE FROM ${progress} WHERE source = $1`, [source]));
    if (rowCount) print(`dropped ${progress} row of ${source} at ${target}`);
  }
  const parts = `${BOOKKEEPING_SCHEMA}.spilled_parts`;
  if (db.tables.has('spilled_parts')) {
    const { rowCount } = await step(db, `delete from ${parts}`, `GRANT DELETE ON ${parts} TO <role>`, () => db.client.query(`DELETE FROM ${parts} WHERE source = $1`, [source]));
    if (rowCount) print(`dropped ${rowCount} part(s) of an unfinished transaction of ${source} kept in ${parts} at ${target}`);
  }
}

async function dropOrigin(db: Db, source: string, target: string, print: Print): Promise<void> {
  const origin = originName(source, target);
  const exists = async (): Promise<boolean> => (await db.client.query('SELECT 1 FROM pg_replication_origin WHERE roname = $1', [origin])).rows.length > 0;
  if (!(await exists())) {
    print(`already gone: origin ${origin} at ${target}`);
    return;
  }
  const drop = (): Promise<unknown> =>
    step(db, `drop origin ${origin}`, 'GRANT EXECUTE ON FUNCTION pg_replication_origin_drop(text) TO <role>', () => db.client.query('SELECT pg_replication_origin_drop($1)', [origin]));
  try {
    await drop();
    print(`dropped origin ${origin} at ${target}`);
    return;
  } catch (error) {
    if ((error as { code?: string }).code !== '55006') throw error;
  }
  // In use: by the apply session of `source` at the running process of `target`, which holds it while it lives.
  const holder = `sitesync apply ${source}->${target}`;
  const sessions = await db.client.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()', [holder]);
  for (const { pid } of sessions.rows) {
    await step(db, `end the apply session of ${source} (PID ${pid}) that holds origin ${origin}`, 'GRANT pg_signal_backend TO <role>', () =>
      db.client.query('SELECT pg_terminate_backend($1, $2)', [pid, TERMINATE_WAIT_MS]),
    );
  }
  let last: unknown;
  for (let attempt = 0; attempt < RELEASE_ATTEMPTS; attempt++) {
    if (!(await exists())) break;
    try {
      await drop();
      last = undefined;
      break;
    } catch (error) {
      if ((error as { code?: string }).code !== '55006') throw error;
      last = error;
      await sleep(200);
    }
  }
  if (last !== undefined) {
    const first = ((last as Error).message ?? '').split('\n')[0];
    throw new SitesyncError(
      'SITESYNC_ERR_SITE_IN_USE',
      `origin ${origin} at ${target} is held by a session that is not ${target}'s apply session of ${source} (${first}): end it (SELECT pg_terminate_backend(<pid>)) or stop what runs it, then run remove-site again`,
    );
  }
  const pids = sessions.rows.map((r) => r.pid).join(', ');
  print(`dropped origin ${origin} at ${target}${pids ? ` (ended the apply session of ${source} at ${target}'s running process, PID ${pids}, which held it)` : ''}`);
}

function quoteIdent(name: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}
