/**
 * `sitesync verify` through the real command line against real PostgreSQL sites replicating each other:
 * identical once in step (exit 0); after rows changed behind sitesync's back at one site (written under a
 * replication origin, so capture drops them as relayed and they never replicate), exactly those keys,
 * in text and in --json (exit 1); still a clean answer while both sites keep writing; configuration
 * mistakes in one line with exit 2. And a PostgreSQL site against a MariaDB site, compared row by row
 * through the neutral value model.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { createTestSites, dbUrl, sql, tableRows, waitFor, type TestSites } from '../helpers/test-sites.ts';
import { startPrivateMariaDb, type PrivateMariaDb } from '../helpers/private-mariadb.ts';
import { runSitesync, type CliResult } from '../helpers/run-cli.ts';


const sitesync = (args: string[]): Promise<CliResult> => runSitesync(args);

interface JsonReport {
  identical: boolean;
  reference: string;
  sites: string[];
  tables: {
    table: string;
    identical: boolean;
    error?: string;
    method: string;
    rows: Record<string, number>;
    differenceCount: number;
    differences: Record<string, { missing: number; extra: number; changed: number; changedColumns: string[] }>;
    keys: { kind: string; site: string; key: Record<string, string>; columns?: string[] }[];
  }[];
}

/**
 * Runs `text` at a site as if sitesync had applied it there: under a replication origin of our own whose
 * name starts like sitesync's, so the site's capture drops the transaction as relayed and it never
 * reaches the other site. (The sink's own origins are held by its session, so one of the test's own.)
 */
async function behindTheBack(database: string, origin: string, statements: string[]): Promise<void> {
  const client = new pg.Client({ connectionString: dbUrl(database) });
  await client.connect();
  try {
    await client.query(`SELECT pg_replication_origin_create($1) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = $1)`, [origin]);
    await client.query('SELECT pg_replication_origin_session_setup($1)', [origin]);
    await client.query('BEGIN');
    for (const statement of statements) await client.query(statement);
    await client.query('COMMIT');
    await client.query('SELECT pg_replication_origin_session_reset()');
  } finally {
    await client.end();
  }
}

/** In least-privilege runs the monitoring role reads only what it is granted: verify reads the tables. */
async function letMonitorRead(t: TestSites, short: string, tables: string[]): Promise<void> {
  const url = t.config.sites[t.sites[short]!]!.monitorPostgres;
  if (url === undefined) return;
  const role = decodeURIComponent(new URL(url).username);
  await sql(t.db(short), `GRANT SELECT ON ${tables.join(', ')} TO "${role}"`);
}

describe('two PostgreSQL sites', () => {
  let t: TestSites;
  let paris: string;
  let london: string;
  let origin: string;
  let writing = true;

  before(async () => {
    t = await createTestSites(['paris', 'london']);
    paris = t.sites.paris!;
    london = t.sites.london!;
    origin = `sitesync_verifytest_${t.suffix}`;
    await t.everywhere(`
      CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, balance int NOT NULL, note text);
      CREATE TABLE tags (region text, id int, label text, PRIMARY KEY (region, id));
    `);
    for (const short of ['paris', 'london']) await letMonitorRead(t, short, ['accounts', 'tags']);
    await t.start('paris');
    await t.start('london');
  });

  after(async () => {
    writing = false;
    await t?.cleanup();
    // Our own origin (cleanup drops the test's origins by suffix too; this is for an early failure).
    await sql('postgres', `SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin WHERE roname = $1`, [origin]).catch(() => undefined);
  });

  async function inStep(): Promise<void> {
    for (const table of ['accounts', 'tags']) {
      await waitFor(`${table} the same at both sites`, async () => {
        const [a, b] = await Promise.all([tableRows(t.db('paris'), table), tableRows(t.db('london'), table)]);
        return JSON.stringify(a) === JSON.stringify(b);
      }, 60_000);
    }
  }

  test('in step: identical, exit 0', async () => {
    await sql(t.db('paris'), `INSERT INTO accounts SELECT g, 'owner ' || g, g % 100, CASE WHEN g % 3 = 0 THEN NULL WHEN g % 3 = 1 THEN '' ELSE 'NULL' END FROM generate_series(1, 3000) g`);
    await sql(t.db('london'), `INSERT INTO accounts SELECT g, 'london ' || g, 0, 'x' FROM generate_series(3001, 3500) g`);
    await sql(t.db('paris'), `INSERT INTO tags VALUES ('eu', 1, 'a'), ('eu', 2, 'b'), ('', 1, ''), ('us west', 1, NULL), ('é', 3, 'c')`);
    await inStep();
    const result = await sitesync(['verify', '--config', t.configFile, '--sites', `${paris},${london}`, '--tables', 'public.accounts,public.tags']);
    assert.equal(result.stderr, '');
    assert.equal(result.code, 0, result.stdout);
    assert.deepEqual(result.stdout.trim().split('\n'), [
      'public.accounts: 3500 rows, identical',
      'public.tags: 5 rows, identical',
      `2 tables identical at ${paris}, ${london} (reference ${paris})`,
    ]);
  });

  test('rows changed behind sitesync\'s back at one site: exactly those keys, exit 1, in text and in --json', async () => {
    // At london only, never replicated: the first key deleted, a key only london has, the last key changed,
    // one more deleted in the middle, a NULL turned into the empty string; a tag key only london has.
    await behindTheBack(t.db('london'), origin, [
      'DELETE FROM accounts WHERE id = 1',
      'DELETE FROM accounts WHERE id = 1500',
      `INSERT INTO accounts VALUES (4000, 'only london', 1, NULL)`,
      'UPDATE accounts SET balance = balance + 1, owner = owner WHERE id = 3500',
      `UPDATE accounts SET note = '' WHERE id = 3`,
      `INSERT INTO tags VALUES ('eu', 0, 'new')`,
    ]);
    // Give capture time to (not) send them, and prove it dropped them: paris still has ids 1 and 1500.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.equal((await sql(t.db('paris'), 'SELECT count(*)::int AS n FROM accounts WHERE id IN (1, 1500)'))[0]!.n, 2);
    assert.equal((await sql(t.db('paris'), 'SELECT count(*)::int AS n FROM accounts WHERE id = 4000'))[0]!.n, 0);

    const args = ['verify', '--config', t.configFile, '--sites', `${paris},${london}`, '--tables', 'public.accounts,public.tags'];
    const text = await sitesync(args);
    assert.equal(text.stderr, '');
    assert.equal(text.code, 1, text.stdout);
    assert.deepEqual(text.stdout.trim().split('\n'), [
      `public.accounts: 5 differences: 2 missing at ${london}, 1 extra at ${london}, 2 changed at ${london} (balance, note)`,
      `  missing at ${london}: id=1`,
      `  changed at ${london}: id=3 (note)`,
      `  missing at ${london}: id=1500`,
      `  changed at ${london}: id=3500 (balance)`,
      `  extra at ${london}: id=4000`,
      `public.tags: 1 difference: 1 extra at ${london}`,
      `  extra at ${london}: (region=eu, id=0)`,
      `2 tables at ${paris}, ${london} (reference ${paris}): 0 identical, 2 with differences`,
    ]);

    const json = await sitesync([...args, '--json']);
    assert.equal(json.code, 1);
    const report = JSON.parse(json.stdout) as JsonReport;
    assert.equal(report.identical, false);
    assert.equal(report.reference, paris);
    const [accounts, tags] = report.tables;
    assert.equal(accounts!.method, 'digest', 'two PostgreSQL sites compare range digests');
    assert.deepEqual(accounts!.rows, { [paris]: 3500, [london]: 3499 });
    assert.deepEqual(accounts!.differences[london], { missing: 2, extra: 1, changed: 2, changedColumns: ['balance', 'note'] });
    assert.deepEqual(accounts!.keys, [
      { kind: 'missing', site: london, key: { id: '1' } },
      { kind: 'changed', site: london, key: { id: '3' }, columns: ['note'] },
      { kind: 'missing', site: london, key: { id: '1500' } },
      { kind: 'changed', site: london, key: { id: '3500' }, columns: ['balance'] },
      { kind: 'extra', site: london, key: { id: '4000' } },
    ]);
    assert.deepEqual(tags!.keys, [{ kind: 'extra', site: london, key: { region: 'eu', id: '0' } }]);

    // London as the reference: the same keys, the other way round.
    const reversed = JSON.parse((await sitesync([...args, '--reference', london, '--json'])).stdout) as JsonReport;
    assert.deepEqual(reversed.tables[0]!.differences[paris], { missing: 1, extra: 2, changed: 2, changedColumns: ['balance', 'note'] });

    // --max-keys caps the listing, not the count.
    const capped = await sitesync([...args, '--max-keys', '2']);
    assert.match(capped.stdout, /public\.accounts: 5 differences/);
    assert.match(capped.stdout, /… and 3 more not listed \(raise --max-keys to list them\)/);
  });

  test('while both sites keep writing, verify still finishes and reports no error', async () => {
    let n = 0;
    const writer = async (short: string, base: number): Promise<void> => {
      while (writing) {
        const id = base + (n++ % 2000);
        await sql(t.db(short), `INSERT INTO accounts VALUES ($1::int, 'busy', 0, NULL) ON CONFLICT (id) DO UPDATE SET balance = accounts.balance + 1`, [id]);
      }
    };
    const writers = [writer('paris', 10_000), writer('london', 20_000)];
    try {
      for (const extra of [[], ['--json']]) {
        const result = await sitesync(['verify', '--config', t.configFile, '--sites', `${paris},${london}`, '--tables', 'public.accounts', ...extra]);
        assert.equal(result.stderr, '');
        assert.ok(result.code === 0 || result.code === 1, `exit ${result.code}: ${result.stdout}`);
        if (extra.length > 0) {
          const report = JSON.parse(result.stdout) as JsonReport;
          assert.equal(report.tables[0]!.error, undefined);
          assert.ok(report.tables[0]!.differenceCount >= 5, 'the rows changed behind sitesync\'s back are still there');
        } else assert.match(result.stdout, /^public\.accounts: \d+ differences?: /);
      }
    } finally {
      writing = false;
      await Promise.all(writers);
    }
  });

  test('tables from the configuration; configuration mistakes in one line, exit 2', async () => {
    const raw = JSON.parse(readFileSync(t.configFile, 'utf8')) as { sites: Record<string, Record<string, unknown>> };
    raw.sites[paris]!.tables = ['public.tags'];
    const listed = join(t.configFile, '..', 'with-tables.yml');
    writeFileSync(listed, JSON.stringify(raw));
    const fromConfig = await sitesync(['verify', '--config', listed, '--sites', `${paris},${london}`]);
    assert.equal(fromConfig.code, 1);
    assert.match(fromConfig.stdout, /^public\.tags: 1 difference: /);
    assert.doesNotMatch(fromConfig.stdout, /accounts/);

    const mistakes: [string[], RegExp][] = [
      [[], new RegExp(`sites\\.${paris}\\.tables is not set \\(${paris} replicates every table\\), so verify does not know which tables to compare; name them with --tables`)],
      [['--sites', `${paris},nowhere`, '--tables', 'public.accounts'], /--sites names "nowhere", which is not in the configuration/],
      [['--sites', paris, '--tables', 'public.accounts'], new RegExp(`--sites names only ${paris}; name two or more sites`)],
      [['--reference', 'madrid', '--tables', 'public.accounts'], /--reference "madrid" is not one of the sites compared/],
      [['--tables', 'accounts'], /--tables: "accounts" is not a table as schema\.table/],
      [['--tables', 'public.accounts', '--max-keys', 'many'], /--max-keys "many" is not a number of keys; give a whole number, 0 or more/],
    ];
    for (const [args, expected] of mistakes) {
      const result = await sitesync(['verify', '--config', t.configFile, ...args]);
      assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, expected);
      assert.equal(result.stderr.trim().split('\n').length, 1, `one line: ${result.stderr}`);
    }

    // A table one site lacks: that table cannot be compared (exit 1), the others still are.
    await sql(t.db('paris'), 'CREATE TABLE paris_only (id int PRIMARY KEY)');
    await letMonitorRead(t, 'paris', ['paris_only']);
    const missing = await sitesync(['verify', '--config', t.configFile, '--tables', 'public.paris_only,public.tags']);
    assert.equal(missing.code, 1);
    const lines = missing.stdout.trim().split('\n');
    assert.match(lines[0]!, new RegExp(`^public\\.paris_only: could not be compared: at ${london}: .*paris_only`));
    assert.match(missing.stdout, /public\.tags: 1 difference/);
    assert.doesNotMatch(missing.stdout + missing.stderr, /postgres:\/\/[^@\s]*:[^@\s]*@/, 'no password printed');
  });

  test('a database that cannot be reached: one line naming the site, exit 1, no password', async () => {
    const raw = JSON.parse(readFileSync(t.configFile, 'utf8')) as { sites: Record<string, Record<string, unknown>> };
    raw.sites[london] = { postgres: 'postgres://someone:hunter2@127.0.0.1:1/nowhere' };
    const file = join(t.configFile, '..', 'unreachable.yml');
    writeFileSync(file, JSON.stringify(raw));
    const result = await sitesync(['verify', '--config', file, '--tables', 'public.accounts']);
    assert.equal(result.code, 1, result.stderr);
    assert.equal(result.stderr.trim().split('\n').length, 1, `one line: ${result.stderr}`);
    assert.match(result.stderr, new RegExp(`^sitesync: .*cannot read ${london}'s database`));
    assert.doesNotMatch(result.stderr, /hunter2/);
  });

  test('--repair: paris sends its rows of every differing key to london through its own stream; the sites then agree', async () => {
    const args = ['verify', '--config', t.configFile, '--sites', `${paris},${london}`, '--tables', 'public.accounts,public.tags'];
    const before = await sitesync(args);
    assert.equal(before.code, 1, 'the rows changed behind sitesync\'s back still differ');
    const repaired = await sitesync([...args, '--repair']);
    assert.equal(repaired.stderr, '');
    assert.equal(repaired.code, 0, repaired.stdout);
    assert.match(repaired.stdout, new RegExp(`repair: ${paris} sends its rows of \\d+ key\\(s\\) of public\\.accounts to ${london} \\(snapshot \\S+\\)`));
    assert.match(repaired.stdout, /repaired: the sites agree/);
    for (const table of ['accounts', 'tags']) assert.deepEqual(await tableRows(t.db('london'), table), await tableRows(t.db('paris'), table));
    // London's extra rows are gone, its missing ones back; paris never changed.
    assert.equal((await sql(t.db('london'), 'SELECT count(*)::int AS n FROM accounts WHERE id IN (1, 1500)'))[0]!.n, 2);
    assert.equal((await sql(t.db('london'), 'SELECT count(*)::int AS n FROM accounts WHERE id = 4000'))[0]!.n, 0);
    const after = await sitesync(args);
    assert.equal(after.code, 0, after.stdout);
  });
});

describe('a PostgreSQL site and a MariaDB site', () => {
  let mariadb: PrivateMariaDb;
  let t: TestSites;

  before(async () => {
    mariadb = await startPrivateMariaDb();
    t = await createTestSites(
      ['paris', 'madrid'],
      (sites) => ({
        sites: {
          [sites.paris!]: { postgres: dbUrl(`sitesync_test_${sites.paris}`) },
          [sites.madrid!]: { database: { kind: 'mariadb', url: mariadb.url() } },
        },
      }),
      { leastPrivilege: false },
    );
    await sql(t.db('paris'), `CREATE TABLE items (id bigint PRIMARY KEY, name text, price numeric(12,2), day date, flag boolean)`);
    await mariadb.query('CREATE DATABASE public');
    await mariadb.query('CREATE TABLE public.items (id bigint PRIMARY KEY, name text, price decimal(12,2), day date, flag boolean)');
    await t.start('madrid');
    await t.start('paris');
  });

  after(async () => {
    await t?.cleanup();
    await mariadb?.destroy();
  });

  test('compared row by row through the neutral values: identical, then the keys changed at MariaDB', async () => {
    await sql(t.db('paris'), `INSERT INTO items SELECT g, CASE WHEN g % 5 = 0 THEN NULL WHEN g % 5 = 1 THEN '' ELSE 'item ' || g END, g / 4.0, DATE '2024-01-01' + g, g % 2 = 0 FROM generate_series(1, 800) g`);
    const args = ['verify', '--config', t.configFile, '--tables', 'public.items'];
    const identical = await waitFor('madrid to hold every row', async () => {
      const result = await sitesync([...args, '--json']);
      return result.code === 0 ? result : undefined;
    }, 60_000);
    const report = JSON.parse(identical.stdout) as JsonReport;
    assert.equal(report.tables[0]!.method, 'rows', 'different kinds: compared row by row');
    assert.deepEqual(Object.values(report.tables[0]!.rows), [800, 800]);

    // At MariaDB, with replication of these statements off for the session's binlog: sitesync never sees them.
    await mariadb.query(`SET SESSION sql_log_bin = 0; DELETE FROM public.items WHERE id = 800; UPDATE public.items SET name = NULL WHERE id = 2; INSERT INTO public.items VALUES (0, 'zero', 0, '2024-01-01', 0)`);
    const changed = await sitesync(args);
    assert.equal(changed.code, 1, changed.stderr);
    const madrid = t.sites.madrid!;
    assert.deepEqual(changed.stdout.trim().split('\n').slice(0, 4), [
      `public.items: 3 differences: 1 missing at ${madrid}, 1 extra at ${madrid}, 1 changed at ${madrid} (name)`,
      `  extra at ${madrid}: id=0`,
      `  changed at ${madrid}: id=2 (name)`,
      `  missing at ${madrid}: id=800`,
    ]);
  });
});
