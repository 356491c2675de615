/**
 * Databases whose encoding is not UTF-8, on the real PostgreSQL and RabbitMQ:
 * - a LATIN1 site and a UTF8 site replicate both ways, and Latin-1 values, a table name and column names
 *   that are not ASCII arrive identical (the walsender converts into client_encoding=UTF8, the target's
 *   server converts back into its own encoding);
 * - the session settings pin client_encoding=UTF8 by themselves, for a driver that sends none (libpq);
 *   node-postgres sends it anyway, so this is the test that shows the line is there;
 * - a capturing site whose database is SQL_ASCII is refused at start with one line naming the fix, and
 *   nothing is created at its server.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { SESSION_OPTIONS } from '../../connectors/postgres/session-settings.ts';
import { BOOKKEEPING_SCHEMA, publicationName, slotName } from '../../src/config/names.ts';
import { createTestSites, dbUrl, sql, tableRows, waitFor, type TestSites } from '../helpers/test-sites.ts';

const run = promisify(execFile);
const PG_BIN = process.env.TEST_SITESYNC_PG_BIN ?? '/usr/lib/postgresql/15/bin';

/** createTestSites makes databases in the server's default encoding; a site gets another before it starts. */
async function recreateDatabase(t: TestSites, short: string, encoding: string): Promise<void> {
  await sql('postgres', `DROP DATABASE ${t.db(short)}`);
  await sql('postgres', `CREATE DATABASE ${t.db(short)} ENCODING '${encoding}' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`);
}

async function serverEncoding(database: string): Promise<string> {
  const rows = await sql<{ encoding: string }>(database, `SELECT current_setting('server_encoding') AS encoding`);
  return rows[0]!.encoding;
}

// Every character here is in LATIN1 (U+00A0 to U+00FF): no €, no em dash, no œ, no Ÿ.
const TABLE = '"crème brûlée"';
const INSERT = `INSERT INTO ${TABLE} ("clé", "façade", "ñote") VALUES ($1, $2, $3)`;
/** Longer than 64 bytes: the decoder checks such values for UTF-8 another way than short ones. */
const LONG = 'Ça a été très, très long: '.repeat(4) + 'ÿ';

interface Row {
  clé: string;
  façade: string | null;
  ñote: string | null;
}

/** Rows by key, sorted in JavaScript: the databases' collations differ (C at paris). */
async function rows(database: string): Promise<Row[]> {
  const result = await sql<Row & Record<string, unknown>>(database, `SELECT "clé", "façade", "ñote" FROM ${TABLE}`);
  return result.sort((a, b) => (a.clé < b.clé ? -1 : a.clé > b.clé ? 1 : 0));
}

describe('a LATIN1 site and a UTF8 site', () => {
  let t: TestSites;

  before(async () => {
    t = await createTestSites(['paris', 'london']);
    await recreateDatabase(t, 'paris', 'LATIN1');
    // The test's client sends UTF-8; paris's server stores the names in LATIN1.
    await t.everywhere(`CREATE TABLE ${TABLE} ("clé" text PRIMARY KEY, "façade" text, "ñote" text)`);
    await t.start('paris');
    await t.start('london');
  });

  after(async () => {
    await t?.cleanup();
  });

  /** Both sites hold exactly `expected`, compared as JavaScript strings and as whole-row text. */
  async function converged(what: string, expected: Row[]): Promise<void> {
    const want = JSON.stringify(expected);
    await waitFor(what, async () => JSON.stringify(await rows(t.db('paris'))) === want && JSON.stringify(await rows(t.db('london'))) === want);
    assert.deepEqual(await tableRows(t.db('paris'), TABLE), await tableRows(t.db('london'), TABLE));
  }

  test('the databases really differ: paris stores one byte per Latin-1 character, london two', async () => {
    assert.equal(await serverEncoding(t.db('paris')), 'LATIN1');
    assert.equal(await serverEncoding(t.db('london')), 'UTF8');
    const bytes = `SELECT octet_length(convert_to('é', current_setting('server_encoding'))) AS n`;
    assert.deepEqual(await sql(t.db('paris'), bytes), [{ n: 1 }]);
    assert.deepEqual(await sql(t.db('london'), bytes), [{ n: 2 }]);
  });

  test('from LATIN1 to UTF8: values and names arrive identical; updates and deletes find their row by a non-ASCII key', async () => {
    const paris = t.db('paris');
    await sql(paris, INSERT, ['Straße', 'Crème brûlée, façade, señor', '¿Qué? ¡Sí! «½ × ÷ ° µ ©»']);
    await sql(paris, INSERT, ['Ångström', LONG, '\u00a0non-breaking space, Ø, þ, ð']);
    await sql(paris, INSERT, ['ÿ à supprimer', 'gone', null]);
    await sql(paris, `UPDATE ${TABLE} SET "ñote" = 'mis à jour à Paris' WHERE "clé" = 'Straße'`);
    await sql(paris, `DELETE FROM ${TABLE} WHERE "clé" = 'ÿ à supprimer'`);
    await converged('the rows from paris at london', [
      { clé: 'Straße', façade: 'Crème brûlée, façade, señor', ñote: 'mis à jour à Paris' },
      { clé: 'Ångström', façade: LONG, ñote: '\u00a0non-breaking space, Ø, þ, ð' },
    ]);
  });

  test('from UTF8 to LATIN1: the target server converts into LATIN1; updates and deletes find their row', async () => {
    const london = t.db('london');
    await sql(london, INSERT, ['Ñandú', 'Größe: 5 µm, ±0,5', 'Ü ö ä Ê Ì Ò']);
    await sql(london, `UPDATE ${TABLE} SET "façade" = 'changé à Londres: ÀÉÎÕÜ' WHERE "clé" = 'Straße'`);
    await sql(london, `DELETE FROM ${TABLE} WHERE "clé" = 'Ångström'`);
    await converged('the rows from london at paris', [
      { clé: 'Straße', façade: 'changé à Londres: ÀÉÎÕÜ', ñote: 'mis à jour à Paris' },
      { clé: 'Ñandú', façade: 'Größe: 5 µm, ±0,5', ñote: 'Ü ö ä Ê Ì Ò' },
    ]);
  });

  test('the session settings pin client_encoding=UTF8 by themselves, walsender included (libpq sends none of its own)', async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, PGOPTIONS: SESSION_OPTIONS };
    delete env.PGCLIENTENCODING;
    const url = new URL(dbUrl(t.db('paris')));
    url.searchParams.set('replication', 'database');
    const { stdout } = await run(`${PG_BIN}/psql`, ['-XAtc', 'SHOW client_encoding', url.toString()], { env, timeout: 30_000 });
    assert.equal(stdout.trim(), 'UTF8', 'without the setting, a libpq session at paris reads LATIN1');
  });
});

test('a capturing site whose database is SQL_ASCII is refused at start with one line naming the fix; nothing is created', async (ctx) => {
  const t = await createTestSites(['paris', 'london']);
  ctx.after(() => t.cleanup());
  await recreateDatabase(t, 'paris', 'SQL_ASCII');
  const db = t.db('paris');
  const site = t.sites.paris!;
  await assert.rejects(t.start('paris'), (error: { code?: string; message?: string }) => {
    assert.equal(error.code, 'SITESYNC_ERR_CONFIG');
    assert.equal(
      error.message,
      `database ${db} of site ${site} has encoding SQL_ASCII, whose bytes no one can convert to UTF-8; re-create it with ENCODING 'UTF8' (CREATE DATABASE … ENCODING 'UTF8' TEMPLATE template0) and restore a dump into it, or set sites.${site}.capture: false if this site only receives`,
    );
    return true;
  });
  const created = await sql(
    db,
    `SELECT slot_name AS o FROM pg_replication_slots WHERE slot_name = $1
     UNION ALL SELECT pubname FROM pg_publication WHERE pubname = $2
     UNION ALL SELECT nspname FROM pg_namespace WHERE nspname = $3`,
    [slotName(site), publicationName(site), BOOKKEEPING_SCHEMA],
  );
  assert.deepEqual(created, [], 'no slot, publication or schema at the refused site');
});
