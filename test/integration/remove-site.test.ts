/**
 * `sitesync remove-site NAME` through the real command line: with three sites replicating, it refuses (one
 * line) while NAME's process runs; once NAME is stopped it drops NAME's slot, publication, origins at every
 * site, queues and broker user, says each in one line, says "already gone" the second time, and the two other
 * sites — whose processes keep running, never restarted — go on replicating both ways.
 *
 * Then the same with a MariaDB site in the mesh (a private server): removing a PostgreSQL site forgets its
 * progress row at the MariaDB site, and removing the MariaDB site forgets its checkpoint and progress rows.
 *
 * Last, the SQL Server and Oracle steps over a fake of their thin statement layer (QueryRunner, OracleSession),
 * the one their status readers use: no server of either runs here, and their simulators
 * (test/helpers/*-simulated-io.ts) do not run statements, so only the statements and what is said of them are
 * checked.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import amqp from 'amqplib';
import { originName, parkingQueue, publicationName, siteQueue, slotName } from '../../src/config/names.ts';
import { forgetSqlServerSite } from '../../connectors/sqlserver/sqlserver-forget-site.ts';
import { forgetOracleSite } from '../../connectors/oracle/oracle-forget-site.ts';
import type { QueryRunner, Row as SqlServerRow, Statement as SqlServerStatement } from '../../connectors/sqlserver/mssql-cdc-reader.ts';
import type { OracleSession, Row as OracleRow, Statement as OracleStatement } from '../../connectors/oracle/oracledb-logminer-reader.ts';
import { passwordVariable, setupCommand } from '../../src/cli/setup-command.ts';
import { startPrivateMariaDb } from '../helpers/private-mariadb.ts';
import { BROKER, createTestSites, dbUrl, MANAGEMENT, sql, waitFor } from '../helpers/test-sites.ts';
import { runSitesync, type CliResult } from '../helpers/run-cli.ts';


const sitesync = (args: string[]): Promise<CliResult> => runSitesync(args);

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** The configuration file `file` without site `site`, as the operator leaves it after remove-site. */
function configWithout(file: string, site: string): string {
  const raw = JSON.parse(readFileSync(file, 'utf8')) as { sites: Record<string, unknown> };
  delete raw.sites[site];
  const dir = mkdtempSync(join(tmpdir(), 'sitesync-remove-'));
  dirs.push(dir);
  const edited = join(dir, 'sitesync.yml');
  writeFileSync(edited, JSON.stringify(raw, null, 2));
  return edited;
}

async function queueExists(queue: string): Promise<boolean> {
  const connection = await amqp.connect(BROKER);
  try {
    const channel = await connection.createChannel();
    channel.on('error', () => undefined);
    await channel.checkQueue(queue);
    return true;
  } catch (error) {
    if ((error as { code?: number }).code === 404) return false;
    throw error;
  } finally {
    await connection.close().catch(() => undefined);
  }
}

function management(path: string, method = 'GET'): Promise<Response> {
  const url = new URL(MANAGEMENT);
  const authorization = `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}`;
  return fetch(new URL(`api/${path}`, `${url.protocol}//${url.host}/`), { method, headers: { authorization } });
}

const lines = (text: string): string[] => text.split('\n').filter((l) => l.length > 0);

test('remove-site with three PostgreSQL sites: refuses while the site runs, drops everything once stopped, twice is safe, the others keep replicating', async () => {
  const brokerUser = (madrid: string): string => `sitesync_test_${madrid}`;
  const password = 'remove-site-test-password';
  const t = await createTestSites(['paris', 'london', 'madrid'], (sites) => {
    const url = new URL(BROKER);
    url.username = brokerUser(sites.madrid!);
    url.password = password;
    return {
      sites: {
        [sites.paris!]: { postgres: dbUrl(`sitesync_test_${sites.paris}`) },
        [sites.london!]: { postgres: dbUrl(`sitesync_test_${sites.london}`) },
        // madrid publishes as a broker user of its own, which setup makes and remove-site deletes.
        [sites.madrid!]: { postgres: dbUrl(`sitesync_test_${sites.madrid}`), brokerUser: brokerUser(sites.madrid!), brokerUrl: url.toString() },
      },
    };
  }, { leastPrivilege: false });
  const { paris, london, madrid } = t.sites as { paris: string; london: string; madrid: string };
  try {
    await setupCommand(t.config, { managementUrl: MANAGEMENT }, () => undefined, { [passwordVariable(madrid)]: password });
    await t.everywhere('CREATE TABLE items (id int PRIMARY KEY, site text NOT NULL)');
    const processes = { paris: t.spawn('paris'), london: t.spawn('london'), madrid: t.spawn('madrid') };
    const has = async (short: 'paris' | 'london' | 'madrid', id: number): Promise<boolean> =>
      (await sql(t.db(short), 'SELECT 1 FROM items WHERE id = $1', [id])).length > 0;
    // Every site writes one row; every site gets all three: every origin exists.
    // A slot shows active while pg_create_logical_replication_slot still builds it, and a row committed then
    // comes before its start: wait for capture's own word that it streams.
    await waitFor('the three sites streaming', async () => Object.values(processes).every((p) => p.output().includes('capture started')), 60_000);
    for (const [i, short] of (['paris', 'london', 'madrid'] as const).entries()) await sql(t.db(short), 'INSERT INTO items VALUES ($1, $2)', [i + 1, short]);
    for (const short of ['paris', 'london', 'madrid'] as const) {
      await waitFor(`${short} holding all three rows`, async () => (await has(short, 1)) && (await has(short, 2)) && (await has(short, 3)), 60_000);
    }
    const origins = async (): Promise<string[]> =>
      (await sql<{ roname: string }>('postgres', 'SELECT roname FROM pg_replication_origin WHERE roname LIKE $1 ORDER BY 1', [`%${t.suffix}`])).map((r) => r.roname);
    const ofMadrid = [originName(paris, madrid), originName(london, madrid), originName(madrid, paris), originName(madrid, london)].sort();
    const between = [originName(paris, london), originName(london, paris)].sort();
    assert.deepEqual(await origins(), [...ofMadrid, ...between].sort());

    // While madrid's process runs: refused, in one line, and nothing touched.
    const refused = await sitesync(['remove-site', madrid, '--config', t.configFile, '--management-url', MANAGEMENT]);
    assert.equal(refused.code, 1, refused.stdout + refused.stderr);
    assert.equal(refused.stdout, '');
    assert.equal(lines(refused.stderr).length, 1, refused.stderr);
    assert.match(refused.stderr, new RegExp(`^sitesync: SITESYNC_ERR_SITE_IN_USE: site ${madrid} is still running \\(.*\\): stop its "sitesync run --site ${madrid}", then run remove-site again\\n$`));
    assert.deepEqual(await origins(), [...ofMadrid, ...between].sort());
    assert.ok(await queueExists(siteQueue(madrid)));

    // A site not in the configuration: one line, exit 2.
    const unknown = await sitesync(['remove-site', 'rome', '--config', t.configFile]);
    assert.equal(unknown.code, 2);
    assert.equal(lines(unknown.stderr).length, 1);
    assert.match(unknown.stderr, /site "rome" is not in the configuration; remove-site reads its URLs there/);

    // madrid stopped: its slot is free once its walsender is gone.
    processes.madrid.child.kill('SIGTERM');
    assert.equal(await processes.madrid.exited, 0, processes.madrid.output());
    await waitFor('madrid\'s slot to be free', async () => (await sql<{ active: boolean }>('postgres', 'SELECT active FROM pg_replication_slots WHERE slot_name = $1', [slotName(madrid)]))[0]?.active === false);

    const removed = await sitesync(['remove-site', madrid, '--config', t.configFile, '--management-url', MANAGEMENT]);
    assert.equal(removed.code, 0, removed.stdout + removed.stderr);
    assert.equal(removed.stderr, '');
    const said = lines(removed.stdout);
    for (const line of [
      `dropped slot ${slotName(madrid)} at ${madrid}`,
      `dropped publication ${publicationName(madrid)} at ${madrid}`,
      `dropped sitesync.capture_progress row of ${madrid} at ${madrid}`,
      `dropped origin ${originName(paris, madrid)} at ${madrid}`,
      `dropped origin ${originName(london, madrid)} at ${madrid}`,
      `dropped queue ${siteQueue(madrid)}`,
      `dropped queue ${parkingQueue(madrid)}`,
      `dropped broker user ${brokerUser(madrid)} (and its permissions)`,
    ]) {
      assert.ok(said.includes(line), `${line}\nnot in:\n${removed.stdout}`);
    }
    // The running processes of paris and london held madrid's origins in their apply sessions: ended, then dropped.
    for (const site of [paris, london]) {
      assert.ok(said.some((l) => l.startsWith(`dropped origin ${originName(madrid, site)} at ${site}`)), removed.stdout);
    }
    assert.ok(said.some((l) => l.startsWith(`left to you: remove sites.${madrid} from the configuration file`)), removed.stdout);
    assert.ok(said.some((l) => /parked there \(SITESYNC_ERR_MESSAGE_INVALID\), never applied/.test(l)), removed.stdout);
    assert.ok(!/guest:guest|remove-site-test-password/.test(removed.stdout + removed.stderr), 'no secret in the output');

    assert.deepEqual(await origins(), between, 'every origin of madrid is gone, at every site; the others stay');
    assert.deepEqual(await sql('postgres', 'SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [slotName(madrid)]), []);
    assert.deepEqual(await sql(t.db('madrid'), 'SELECT 1 FROM pg_publication WHERE pubname = $1', [publicationName(madrid)]), []);
    assert.deepEqual(await sql(t.db('madrid'), 'SELECT 1 FROM sitesync.capture_progress WHERE site = $1', [madrid]), []);
    assert.equal(await queueExists(siteQueue(madrid)), false);
    assert.equal(await queueExists(parkingQueue(madrid)), false);
    assert.equal((await management(`users/${encodeURIComponent(brokerUser(madrid))}`)).status, 404);

    // Twice: every step finds its object gone, and says so.
    const again = await sitesync(['remove-site', madrid, '--config', t.configFile, '--management-url', MANAGEMENT]);
    assert.equal(again.code, 0, again.stdout + again.stderr);
    const saidAgain = lines(again.stdout);
    assert.ok(!saidAgain.some((l) => l.startsWith('dropped')), again.stdout);
    for (const line of [
      `already gone: slot ${slotName(madrid)} at ${madrid}`,
      `already gone: publication ${publicationName(madrid)} at ${madrid}`,
      `already gone: origin ${originName(paris, madrid)} at ${madrid}`,
      `already gone: origin ${originName(london, madrid)} at ${madrid}`,
      `already gone: origin ${originName(madrid, paris)} at ${paris}`,
      `already gone: origin ${originName(madrid, london)} at ${london}`,
      `already gone: queue ${siteQueue(madrid)}`,
      `already gone: queue ${parkingQueue(madrid)}`,
      `already gone: broker user ${brokerUser(madrid)}`,
    ]) {
      assert.ok(saidAgain.includes(line), `${line}\nnot in:\n${again.stdout}`);
    }

    // A site's database that cannot be reached: one line naming it and the fix, the other steps still done, exit 1.
    const broken = JSON.parse(readFileSync(t.configFile, 'utf8')) as { sites: Record<string, { postgres: string }> };
    broken.sites[london]!.postgres = dbUrl(`no_such_db_${t.suffix}`);
    const brokenFile = configWithout(t.configFile, 'none');
    writeFileSync(brokenFile, JSON.stringify(broken));
    const partial = await sitesync(['remove-site', madrid, '--config', brokenFile]);
    assert.equal(partial.code, 1, partial.stdout + partial.stderr);
    assert.deepEqual(
      lines(partial.stderr),
      [
        `sitesync: site ${london}: SITESYNC_ERR_CONFIG: PostgreSQL of site ${london} (${dbUrl(`no_such_db_${t.suffix}`)}): database "no_such_db_${t.suffix}" does not exist; create the database or fix sites.${london}.postgres`,
        'sitesync: 1 step not done (above, each with its fix); run remove-site again once fixed: what is done says "already gone"',
      ],
    );
    assert.ok(lines(partial.stdout).includes(`already gone: origin ${originName(madrid, paris)} at ${paris}`), partial.stdout);

    // paris and london were never restarted, and still replicate both ways.
    await sql(t.db('paris'), `INSERT INTO items VALUES (10, 'paris')`);
    await sql(t.db('london'), `INSERT INTO items VALUES (11, 'london')`);
    await waitFor('paris\'s new row at london', () => has('london', 10));
    await waitFor('london\'s new row at paris', () => has('paris', 11));
    assert.equal(processes.paris.child.exitCode, null, processes.paris.output());
    assert.equal(processes.london.child.exitCode, null, processes.london.output());
    assert.equal(await has('madrid', 10), false, 'nothing reaches the removed site');
    assert.deepEqual(await origins(), between, 'and nothing made madrid\'s origins again');
  } finally {
    await management(`users/${encodeURIComponent(brokerUser(madrid))}`, 'DELETE').catch(() => undefined);
    await t.cleanup();
  }
});

test('remove-site with a MariaDB site: its progress row at the MariaDB site, then the MariaDB site itself', async () => {
  const mariadb = await startPrivateMariaDb();
  const t = await createTestSites(['paris', 'london', 'rome'], (sites) => ({
    sites: {
      [sites.paris!]: { postgres: dbUrl(`sitesync_test_${sites.paris}`) },
      [sites.london!]: { postgres: dbUrl(`sitesync_test_${sites.london}`) },
      [sites.rome!]: { database: { kind: 'mariadb', url: mariadb.url() } },
    },
  }), { leastPrivilege: false });
  const { paris, london, rome } = t.sites as { paris: string; london: string; rome: string };
  try {
    for (const short of ['paris', 'london'] as const) await sql(t.db(short), 'CREATE TABLE items (id int PRIMARY KEY, site text NOT NULL)');
    await mariadb.query('CREATE DATABASE public');
    await mariadb.query('CREATE TABLE public.items (id int PRIMARY KEY, site varchar(40) NOT NULL)');
    const running = { rome: await t.start('rome'), paris: await t.start('paris'), london: await t.start('london') };
    const atPostgres = async (short: 'paris' | 'london', id: number): Promise<boolean> => (await sql(t.db(short), 'SELECT 1 FROM items WHERE id = $1', [id])).length > 0;
    const atRome = async (id: number): Promise<boolean> => (await mariadb.query('SELECT 1 FROM public.items WHERE id = ?', [id])).length > 0;
    await sql(t.db('paris'), `INSERT INTO items VALUES (1, 'paris')`);
    await sql(t.db('london'), `INSERT INTO items VALUES (2, 'london')`);
    await mariadb.query(`INSERT INTO public.items VALUES (3, 'rome')`);
    for (const id of [1, 2, 3]) {
      await waitFor(`row ${id} everywhere`, async () => (await atPostgres('paris', id)) && (await atPostgres('london', id)) && (await atRome(id)), 60_000);
    }
    const progressAtRome = async (): Promise<string[]> => (await mariadb.query<{ source: string }>('SELECT source FROM sitesync.apply_progress ORDER BY source')).map((r) => r.source);
    assert.deepEqual(await progressAtRome(), [london, paris].sort());

    // Removing london (PostgreSQL): its row at rome, rome's row at london (a source whose positions are no LSN), its origins.
    await running.london.stop();
    await waitFor("london's slot to be free", async () => (await sql<{ active: boolean }>('postgres', 'SELECT active FROM pg_replication_slots WHERE slot_name = $1', [slotName(london)]))[0]?.active === false);
    const first = await sitesync(['remove-site', london, '--config', t.configFile]);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    const said = lines(first.stdout);
    for (const line of [
      `dropped slot ${slotName(london)} at ${london}`,
      `dropped sitesync.apply_progress row of ${london} at ${rome}`,
      `dropped sitesync.apply_progress row of ${rome} at ${london}`,
      `dropped origin ${originName(rome, london)} at ${london}`,
      `no broker user of ${london}'s own: it published as guest, the user of broker.url`,
    ]) {
      assert.ok(said.includes(line), `${line}\nnot in:\n${first.stdout}`);
    }
    assert.ok(said.some((l) => l.startsWith(`dropped origin ${originName(london, paris)} at ${paris}`)), first.stdout);
    assert.deepEqual(await progressAtRome(), [paris]);
    assert.deepEqual(await sql(t.db('london'), 'SELECT source FROM sitesync.apply_progress'), []);

    // paris and rome keep replicating both ways (the delete of london's row at rome went nowhere: rome's capture drops it).
    await sql(t.db('paris'), `INSERT INTO items VALUES (10, 'paris')`);
    await mariadb.query(`INSERT INTO public.items VALUES (11, 'rome')`);
    await waitFor("paris's new row at rome", () => atRome(10));
    await waitFor("rome's new row at paris", () => atPostgres('paris', 11));

    // Then rome itself (MariaDB), with the configuration the operator edited after removing london.
    const edited = configWithout(t.configFile, london);
    await running.rome.stop();
    await waitFor("rome's binlog reader to be gone", async () => (await mariadb.query(`SELECT 1 FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'`)).length === 0);
    const second = await sitesync(['remove-site', rome, '--config', edited]);
    assert.equal(second.code, 0, second.stdout + second.stderr);
    const saidSecond = lines(second.stdout);
    for (const line of [
      `dropped sitesync.capture_progress row of ${rome} at ${rome}`,
      `dropped sitesync.apply_progress row of ${paris} at ${rome}`,
      `dropped sitesync.apply_progress row of ${rome} at ${paris}`,
      `dropped queue ${siteQueue(rome)}`,
    ]) {
      assert.ok(saidSecond.includes(line), `${line}\nnot in:\n${second.stdout}`);
    }
    assert.ok(saidSecond.some((l) => l.startsWith(`dropped origin ${originName(rome, paris)} at ${paris}`)), second.stdout);
    assert.deepEqual(await mariadb.query('SELECT site FROM sitesync.capture_progress'), []);
    assert.deepEqual(await progressAtRome(), []);
    assert.deepEqual(await sql(t.db('paris'), 'SELECT source FROM sitesync.apply_progress'), []);
    const again = await sitesync(['remove-site', rome, '--config', edited]);
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.ok(lines(again.stdout).includes(`already gone: sitesync.capture_progress row of ${rome} at ${rome}`), again.stdout);
    assert.ok(lines(again.stdout).includes(`already gone: sitesync.apply_progress row of ${paris} at ${rome}`), again.stdout);
  } finally {
    await t.cleanup();
    await mariadb.destroy();
  }
});

/** A fake statement layer: tables of rows keyed by the value the statement names; records what it ran. */
function fakeTables(tables: Record<string, string[]>): { ran: string[]; query(sql: string, value: string | undefined): Record<string, unknown>[]; execute(sql: string, value: string | undefined): void } {
  const ran: string[] = [];
  const tableOf = (sql: string): string => /FROM\s+[["]?\w+[\]"]?\.[["]?(\w+)/.exec(sql)![1]!.toLowerCase();
  return {
    ran,
    query(sql, value) {
      ran.push(sql);
      if (/FROM sys\.tables|ALL_TABLES/.test(sql)) return Object.keys(tables).map((name) => ({ table_name: name, TABLE_NAME: name.toUpperCase() }));
      const rows = tables[tableOf(sql)]!;
      const matching = rows.filter((r) => r === value);
      if (sql.startsWith('SELECT COUNT')) return [{ N: matching.length }];
      tables[tableOf(sql)] = rows.filter((r) => r !== value); // DELETE … OUTPUT DELETED
      return matching.map((r) => ({ gone: r }));
    },
    execute(sql, value) {
      ran.push(sql);
      tables[tableOf(sql)] = tables[tableOf(sql)]!.filter((r) => r !== value);
    },
  };
}

test('SQL Server and Oracle: the rows each keeps, through the thin statement layer', async () => {
  const urls = { capture: 'sqlserver://u:secret@h/db', apply: 'sqlserver://u:secret@h/db' };
  // SQL Server, at the removed site then at another.
  const mssql = fakeTables({ capture_progress: ['madrid'], apply_progress: ['paris', 'london'], spilled_parts: ['paris', 'paris'] });
  const runner = (): QueryRunner => ({
    query: async (_method: string, statement: SqlServerStatement): Promise<SqlServerRow[]> => mssql.query(statement.sql, statement.params[0]?.value as string | undefined),
    close: async () => undefined,
  });
  const said: string[] = [];
  await forgetSqlServerSite(urls, 'madrid', 'madrid', ['paris', 'london', 'madrid'], (l) => said.push(l), runner);
  assert.deepEqual(said.slice(0, 1), ['dropped sitesync.capture_progress row of madrid at madrid']);
  assert.ok(said.includes('dropped sitesync.apply_progress row of paris at madrid'));
  assert.ok(said.includes('dropped 2 part(s) of an unfinished transaction of paris kept in sitesync.spilled_parts at madrid'));
  assert.ok(said.includes('dropped sitesync.apply_progress row of london at madrid'));
  assert.ok(mssql.ran.includes('DELETE FROM [sitesync].[apply_progress] OUTPUT DELETED.[source] AS [gone] WHERE [source] = @value'), mssql.ran.join('\n'));
  said.length = 0;
  await forgetSqlServerSite({ capture: null, apply: urls.apply }, 'madrid', 'madrid', ['paris', 'london', 'madrid'], (l) => said.push(l), runner);
  assert.ok(said.includes('already gone: sitesync.apply_progress row of paris at madrid'));
  assert.ok(!said.some((l) => l.startsWith('dropped')));

  // Oracle, at another site: the removed site's rows only, counted then deleted (execute commits at once).
  const ora = fakeTables({ capture_progress: ['paris'], apply_progress: ['madrid', 'london'], spilled_parts: [] });
  const session = (): OracleSession => ({
    query: async (_method: string, statement: OracleStatement): Promise<OracleRow[]> => ora.query(statement.sql, statement.binds[0]?.value ?? undefined),
    execute: async (_method: string, statement: OracleStatement): Promise<void> => ora.execute(statement.sql, statement.binds[0]?.value ?? undefined),
    open: async () => {
      throw new Error('not used');
    },
    close: async () => undefined,
  });
  said.length = 0;
  await forgetOracleSite({ capture: null, apply: 'oracle://u:secret@h/db' }, 'paris', 'madrid', ['paris', 'london', 'madrid'], (l) => said.push(l), session);
  assert.deepEqual(said, ['dropped SITESYNC.APPLY_PROGRESS row of madrid at paris']);
  assert.ok(ora.ran.includes('DELETE FROM "SITESYNC"."APPLY_PROGRESS" WHERE "SOURCE" = :value'), ora.ran.join('\n'));
  said.length = 0;
  await forgetOracleSite({ capture: null, apply: 'oracle://u:secret@h/db' }, 'paris', 'madrid', ['paris', 'london', 'madrid'], (l) => said.push(l), session);
  assert.deepEqual(said, ['already gone: SITESYNC.APPLY_PROGRESS row of madrid at paris']);
});
