/**
 * What a user meets when a site's PostgreSQL is not ready for sitesync, as a real `sitesync run` shows it:
 * - wal_level below logical, a role without REPLICATION: the process stops with one line naming the fix,
 *   and creates nothing; once fixed, what is written after the start arrives once;
 * - a role that may not run the replication origin functions (applying): one log line naming the GRANT;
 *   the rows wait and arrive once it is granted;
 * - a PostgreSQL that does not answer, goes away and comes back, or whose connections are reset: retried,
 *   said in one log line with its code, never the password; nothing is lost, parked or applied twice.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { classifyApplyError, describePostgresError } from '../../connectors/postgres/postgres-errors.ts';
import { describeError } from '../../src/errors.ts';
import { startScratchPostgres, type ScratchPostgres } from '../helpers/scratch-postgres.ts';
import { createTestSites, sql, waitFor, type SpawnedSite, type TestSites } from '../helpers/test-sites.ts';

const run = promisify(execFile);
const PG_BIN = process.env.TEST_SITESYNC_PG_BIN ?? '/usr/lib/postgresql/15/bin';

/** Undone when the test ends, last first (node:test runs a test's `after` hooks first to last). */
function cleanups(ctx: TestContext): (undo: () => Promise<void>) => void {
  const stack: (() => Promise<void>)[] = [];
  ctx.after(async () => {
    for (const undo of stack.reverse()) await undo().catch((error: unknown) => console.error('cleanup:', error));
  });
  return (undo) => stack.push(undo);
}

async function sites(defer: (undo: () => Promise<void>) => void): Promise<TestSites> {
  const t = await createTestSites(['paris', 'london']);
  defer(() => t.cleanup());
  return t;
}

async function scratch(defer: (undo: () => Promise<void>) => void, port: number, settings: Record<string, string> = {}): Promise<ScratchPostgres> {
  const server = await startScratchPostgres(port, settings);
  defer(() => server.destroy());
  return server;
}

async function asPostgres(command: string, args: string[]): Promise<void> {
  if (process.getuid?.() === 0) await run('runuser', ['-u', 'postgres', '--', command, ...args], { timeout: 60_000 });
  else await run(command, args, { timeout: 60_000 });
}

/** The environment variable that points a site at another PostgreSQL. */
function siteEnv(t: TestSites, short: string, key: string, value: string): Record<string, string> {
  return { [`SITESYNC_SITES__${t.sites[short]!.toUpperCase()}__${key}`]: value };
}

/** The lines a fatal exit prints for the user (the rest of stderr is JSON logs). */
function errorLines(output: string): string[] {
  return output.split('\n').filter((line) => line.startsWith('sitesync:'));
}

/** The JSON log lines of a process. */
function logLines(output: string): { level: number; msg: string; code?: string }[] {
  return output
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as { level: number; msg: string; code?: string });
}

async function exitOf(site: SpawnedSite, timeoutMs = 20_000): Promise<number | null> {
  const timeout = sleep(timeoutMs).then(() => 'still running' as const);
  const code = await Promise.race([site.exited, timeout]);
  assert.notEqual(code, 'still running', `the process should have stopped: ${site.output()}`);
  return code as number | null;
}

async function streaming(site: SpawnedSite): Promise<void> {
  await waitFor('capture streaming', async () => {
    if (site.child.exitCode !== null) throw new Error(`exited: ${site.output()}`);
    return logLines(site.output()).some((l) => l.msg === 'capture started');
  });
}

/** What sitesync would have created at a site's server (it must create nothing when it refuses to start). */
async function sitesyncObjects(query: (text: string) => Promise<Record<string, unknown>[]>, site: string): Promise<string[]> {
  const rows = await query(
    `SELECT 'slot ' || slot_name AS o FROM pg_replication_slots WHERE slot_name = 'sitesync_${site}'
     UNION ALL SELECT 'publication ' || pubname FROM pg_publication WHERE pubname = 'sitesync_${site}'
     UNION ALL SELECT 'schema ' || nspname FROM pg_namespace WHERE nspname = 'sitesync'`,
  );
  return rows.map((r) => String(r.o));
}

/** Ids in a table, sorted, duplicates kept: a loss or a repeat shows. */
async function ids(query: (text: string) => Promise<Record<string, unknown>[]>, table = 'log'): Promise<number[]> {
  return (await query(`SELECT id FROM ${table} ORDER BY id`)).map((r) => Number(r.id));
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

test('wal_level not logical: one line naming the fix, exit status 1, nothing created; after the fix, changes flow', async (ctx) => {
  const defer = cleanups(ctx);
  const server = await scratch(defer, 26441, { wal_level: 'replica' });
  const t = await sites(defer);
  const db = t.db('paris');
  await server.query('postgres', `CREATE DATABASE ${db}`);
  await server.query(db, 'CREATE TABLE log (id int, note text)'); // no primary key: a duplicate would show
  await sql(t.db('london'), 'CREATE TABLE log (id int, note text)');
  await server.query(db, `INSERT INTO log SELECT g, 'before' FROM generate_series(1, 3) g`);
  const env = siteEnv(t, 'paris', 'POSTGRES', server.url(db));

  const refused = t.spawn('paris', env);
  const code = await exitOf(refused);
  assert.deepEqual(errorLines(refused.output()), [
    `sitesync: SITESYNC_ERR_WAL_LEVEL: PostgreSQL of site ${t.sites.paris} has wal_level=replica; sitesync needs logical: run "ALTER SYSTEM SET wal_level = logical" and restart PostgreSQL (npm run setup does it on this machine)`,
  ]);
  assert.equal(code, 1, 'a fatal error that is not sitesync configuration');
  assert.deepEqual(await sitesyncObjects((q) => server.query(db, q), t.sites.paris!), [], 'nothing created at the server');
  assert.deepEqual(await ids((q) => server.query(db, q)), [1, 2, 3], "the site's rows untouched");

  // Do what the line says: ALTER SYSTEM, then restart PostgreSQL (without the test's -c wal_level=replica,
  // which would override postgresql.auto.conf).
  await server.query('postgres', 'ALTER SYSTEM SET wal_level = logical');
  const data = String((await server.query('postgres', 'SHOW data_directory'))[0]!.data_directory);
  await server.stop('fast');
  const options = `-c port=${server.port} -c listen_addresses='127.0.0.1' -c unix_socket_directories='${dirname(data)}' -c fsync=off`;
  await asPostgres(`${PG_BIN}/pg_ctl`, ['-D', data, '-o', options, '-l', `${dirname(data)}/log`, '-w', 'start']);
  assert.equal((await server.query('postgres', 'SHOW wal_level'))[0]!.wal_level, 'logical');

  await t.start('london');
  const paris = t.spawn('paris', env);
  await streaming(paris);
  await server.query(db, `INSERT INTO log SELECT g, 'after' FROM generate_series(4, 10) g`);
  await waitFor('rows at london', async () => (await ids((q) => sql(t.db('london'), q))).length >= 7);
  await sleep(500); // a repeat would arrive now
  // Rows committed before the slot existed are the initial copy's business (README, Limits), not the stream's.
  assert.deepEqual(await ids((q) => sql(t.db('london'), q)), range(4, 10), 'every row written after the start, exactly once');
  assert.deepEqual(errorLines(paris.output()), []);
});

test('a role without REPLICATION, then without the replication origin functions: each refusal one line naming the fix; once granted, what is written after the start arrives once', async (ctx) => {
  const defer = cleanups(ctx);
  // The role goes last: after the processes using it are gone and the database it owns is dropped.
  defer(async () => {
    await sql('postgres', `DROP DATABASE IF EXISTS ${t.db('paris')} WITH (FORCE)`);
    await sql('postgres', `DROP ROLE IF EXISTS ${role}`);
  });
  const t = await sites(defer);
  const role = `sitesync_norepl_${t.suffix}`;
  const db = t.db('paris');
  await sql('postgres', `CREATE ROLE ${role} LOGIN PASSWORD 'Secr3t-${t.suffix}'`);
  // Everything the README asks for but REPLICATION: the role owns the database (to create the sitesync
  // schema) and the replicated table (to create a publication FOR TABLE; FOR ALL TABLES needs a superuser).
  await sql('postgres', `ALTER DATABASE ${db} OWNER TO ${role}`);
  await t.everywhere('CREATE TABLE log (id int, note text)');
  await sql(db, `ALTER TABLE log OWNER TO ${role}`);
  const url = new URL(t.config.sites[t.sites.paris!]!.postgres!);
  url.username = role;
  url.password = `Secr3t-${t.suffix}`;
  const env = { ...siteEnv(t, 'paris', 'POSTGRES', url.toString()), ...siteEnv(t, 'paris', 'TABLES', '[public.log]') };

  const refused = t.spawn('paris', env);
  await sql(db, `INSERT INTO log SELECT g, 'while refused' FROM generate_series(1, 3) g`);
  const code = await exitOf(refused);
  assert.deepEqual(errorLines(refused.output()), [
    `sitesync: SITESYNC_ERR_PERMISSION: role ${role} at site ${t.sites.paris} may not stream changes; run "ALTER ROLE ${role} REPLICATION" as a superuser`,
  ]);
  assert.equal(code, 1);
  assert.doesNotMatch(refused.output(), /Secr3t/, 'the password is never printed');
  assert.deepEqual(await sitesyncObjects((q) => sql(db, q), t.sites.paris!), [], 'nothing created at the server');

  await sql('postgres', `ALTER ROLE ${role} REPLICATION`);
  await t.start('london');
  const paris = t.spawn('paris', env);
  await streaming(paris);
  await sql(db, `INSERT INTO log SELECT g, 'after' FROM generate_series(4, 10) g`);
  await waitFor('rows at london', async () => (await ids((q) => sql(t.db('london'), q))).length >= 7);
  await sleep(500);
  // Rows 1–3 were committed while sitesync was refused, before its slot existed: no stream holds them
  // (a site joins from a copy taken once the slot is in place — README, Limits). What the slot holds
  // arrives exactly once.
  assert.deepEqual(await ids((q) => sql(t.db('london'), q)), range(4, 10));

  // The other half: applying london at paris records positions with replication origins, whose functions
  // only superusers may run unless granted. Refused, it says which GRANT; london's rows wait, then arrive once.
  await sql(t.db('london'), `INSERT INTO log SELECT g, 'from london' FROM generate_series(101, 103) g`);
  const refusal = `SITESYNC_ERR_PERMISSION: PostgreSQL of site ${t.sites.paris} (${url.toString().replace(`:Secr3t-${t.suffix}@`, ':***@')}): permission denied for function pg_replication_origin_create; applying needs a superuser, or run as one: GRANT EXECUTE ON FUNCTION pg_replication_origin_create(text), pg_replication_origin_session_setup(text), pg_replication_origin_xact_setup(pg_lsn, timestamptz), pg_replication_origin_progress(text, boolean) TO ${role}`;
  await waitFor('apply refused', async () => logLines(paris.output()).some((l) => l.code === 'SITESYNC_ERR_PERMISSION'));
  assert.deepEqual([...new Set(logLines(paris.output()).filter((l) => l.level >= 50).map((l) => l.msg))], [refusal]);
  assert.equal(paris.child.exitCode, null, 'a long-running site waits to be fixed');
  await sql(db, `GRANT EXECUTE ON FUNCTION ${refusal.split('GRANT EXECUTE ON FUNCTION ')[1]!.replace(/ TO .*$/, '')} TO ${role}`);
  await waitFor("london's rows at paris", async () => (await ids((q) => sql(db, q))).filter((id) => id > 100).length >= 3, 20_000);
  await sleep(500);
  assert.deepEqual((await ids((q) => sql(db, q))).filter((id) => id > 100), [101, 102, 103], 'each once');
  assert.deepEqual(await ids((q) => sql(t.db('london'), q)), [...range(4, 10), 101, 102, 103], 'and nothing loops back to london');
  assert.deepEqual(errorLines(paris.output()), []);
  assert.doesNotMatch(paris.output(), /Secr3t/);
});

test('PostgreSQL unreachable: the process keeps retrying and says so in one line, without the password', async (ctx) => {
  const t = await sites(cleanups(ctx));
  const env = siteEnv(t, 'paris', 'POSTGRES', `postgres://postgres:Secr3t-pw@127.0.0.1:1/${t.db('paris')}`);
  const paris = t.spawn('paris', env);
  await waitFor('two attempts', async () => logLines(paris.output()).filter((l) => l.code === 'SITESYNC_ERR_DATABASE_UNREACHABLE').length >= 2, 15_000);
  assert.equal(paris.child.exitCode, null, 'still running, retrying');
  const messages = [...new Set(logLines(paris.output()).filter((l) => l.level >= 40).map((l) => l.msg))];
  assert.deepEqual(messages, [
    `SITESYNC_ERR_DATABASE_UNREACHABLE: PostgreSQL of site ${t.sites.paris} (postgres://postgres:***@127.0.0.1:1/${t.db('paris')}) is unreachable (connect ECONNREFUSED 127.0.0.1:1); start it or fix sites.${t.sites.paris}.postgres — sitesync retries and loses nothing meanwhile`,
  ]);
  assert.doesNotMatch(paris.output(), /Secr3t/, 'the password is never printed');
  assert.deepEqual(errorLines(paris.output()), []);
});

test('PostgreSQL stopped and started again: retried, said in one line each time, every transaction arrives exactly once', async (ctx) => {
  const defer = cleanups(ctx);
  const server = await scratch(defer, 26442);
  const t = await sites(defer);
  const db = t.db('paris');
  await server.query('postgres', `CREATE DATABASE ${db}`);
  await server.query(db, 'CREATE TABLE log (id int, note text)'); // no primary key: a duplicate would show
  await sql(t.db('london'), 'CREATE TABLE log (id int, note text)');
  await t.start('london');
  const url = new URL(server.url(db));
  url.password = 'Secr3t-pw'; // trust authentication ignores it; the logs must not show it
  const paris = t.spawn('paris', siteEnv(t, 'paris', 'POSTGRES', url.toString()));
  await streaming(paris);

  for (const id of range(1, 40)) await server.query(db, `INSERT INTO log VALUES (${id}, 'before the stop')`);
  await server.stop('fast'); // at once: some of these may not be published or confirmed yet
  await waitFor('retrying', async () => logLines(paris.output()).some((l) => / is unreachable \(connect ECONNREFUSED/.test(l.msg)), 15_000);
  assert.equal(paris.child.exitCode, null, 'still running, retrying');
  await server.start();
  for (const id of range(41, 80)) await server.query(db, `INSERT INTO log VALUES (${id}, 'after the restart')`);

  await waitFor('rows at london', async () => (await ids((q) => sql(t.db('london'), q))).length >= 80, 30_000);
  await sleep(1000); // a repeat would arrive now
  assert.deepEqual(await ids((q) => sql(t.db('london'), q)), range(1, 80), 'every row, once');

  // Every warning is one line with its code that says what happened to which site and what sitesync does.
  const site = t.sites.paris!;
  const where = `PostgreSQL of site ${site} \\(postgres://postgres:\\*\\*\\*@127\\.0\\.0\\.1:${server.port}/${db}\\)`;
  const expected = new RegExp(
    `^SITESYNC_ERR_DATABASE_UNREACHABLE: (${where} is unreachable \\(.+\\); start it or fix sites\\.${site}\\.postgres — sitesync retries and loses nothing meanwhile` +
      `|${where} closed the connection \\(.+\\); sitesync retries` +
      `|the replication stream of site ${site} ended; sitesync restarts it)$`,
  );
  const warnings = logLines(paris.output()).filter((l) => l.level >= 40);
  assert.ok(warnings.length > 0);
  for (const w of warnings) assert.match(w.msg, expected, JSON.stringify(w).slice(0, 3000));
  assert.doesNotMatch(paris.output(), /Secr3t/, 'the password is never printed');
  assert.deepEqual(errorLines(paris.output()), []);
});

test("connections to the target's PostgreSQL reset mid-apply: retried, nothing parked, every transaction once", async (ctx) => {
  // A socket error carries Node's code (ECONNRESET), not a SQLSTATE: it is a lost connection, not bad data.
  const reset = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET', errno: -104, syscall: 'read' });
  assert.equal(classifyApplyError(reset), 'transient');
  assert.equal(
    describeError(describePostgresError(reset, 'postgres://u:pw@db:5432/x', 'london')),
    'SITESYNC_ERR_DATABASE_UNREACHABLE: PostgreSQL of site london (postgres://u:***@db:5432/x) is unreachable (read ECONNRESET); start it or fix sites.london.postgres — sitesync retries and loses nothing meanwhile',
  );

  const defer = cleanups(ctx);
  const t = await sites(defer);
  await t.everywhere('CREATE TABLE log (id int, note text)');
  // London reaches its PostgreSQL through a proxy that the test cuts with TCP resets.
  const downstreams = new Set<Socket>();
  const upstreams = new Set<Socket>();
  const proxy = createServer((downstream) => {
    const upstream = connect(5432, '127.0.0.1');
    downstreams.add(downstream);
    upstreams.add(upstream);
    downstream.on('close', () => {
      downstreams.delete(downstream);
      upstream.destroy(); // the server sees the connection end too, as after a real reset
    });
    upstream.on('close', () => {
      upstreams.delete(upstream);
      downstream.destroy();
    });
    downstream.on('error', () => undefined);
    upstream.on('error', () => undefined);
    downstream.pipe(upstream).pipe(downstream);
  });
  proxy.listen(0, '127.0.0.1');
  await once(proxy, 'listening');
  defer(async () => {
    proxy.close();
    for (const socket of [...downstreams, ...upstreams]) socket.destroy();
  });
  const port = (proxy.address() as AddressInfo).port;
  const london = t.spawn('london', siteEnv(t, 'london', 'POSTGRES', `postgres://postgres@127.0.0.1:${port}/${t.db('london')}`));
  await streaming(london);
  await t.start('paris');

  const writing = (async () => {
    for (const id of range(1, 300)) await sql(t.db('paris'), `INSERT INTO log VALUES (${id}, 'x')`);
  })();
  for (let resets = 0; resets < 5; resets++) {
    await waitFor('rows applied', async () => Number((await sql(t.db('london'), 'SELECT count(*) AS n FROM log'))[0]!.n) >= resets * 50 + 10, 30_000);
    for (const socket of downstreams) socket.resetAndDestroy(); // whatever london was doing, mid-apply or idle
  }
  await writing;
  await waitFor('all rows at london', async () => (await ids((q) => sql(t.db('london'), q))).length >= 300, 30_000);
  await sleep(1000); // a repeat would arrive now
  assert.deepEqual(await ids((q) => sql(t.db('london'), q)), range(1, 300), 'every row, once');
  const warnings = logLines(london.output()).filter((l) => l.level >= 40);
  assert.deepEqual(warnings.filter((l) => /parked/.test(l.msg)).map((l) => l.msg), [], 'a connection reset is not bad data');
  assert.ok(warnings.some((l) => l.msg.startsWith(`SITESYNC_ERR_DATABASE_UNREACHABLE: PostgreSQL of site ${t.sites.london} `)), 'the resets were seen and said');
});
