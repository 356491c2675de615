/**
 * The command line as a user meets it: help, one-line errors with exit status 2 for configuration,
 * unreachable services named with the fix, and status.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { randomBytes } from 'node:crypto';
import amqp from 'amqplib';
import { parkingQueue, siteQueue, tablesExchange } from '../../src/config/names.ts';
import { BROKER, createTestSites, sql, waitFor } from '../helpers/test-sites.ts';
import { runSitesync, type CliResult } from '../helpers/run-cli.ts';

const ROOT = new URL('../../', import.meta.url).pathname;

const sitesync = (args: string[], env: Record<string, string> = {}): Promise<CliResult> => runSitesync(args, { env, timeoutMs: 60_000 });

/** Folders of the configuration files written here, removed when the file's tests end. */
const configDirs: string[] = [];
after(() => {
  for (const dir of configDirs) rmSync(dir, { recursive: true, force: true });
});

function configFile(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'sitesync-cli-'));
  configDirs.push(dir);
  const file = join(dir, 'sitesync.yml');
  writeFileSync(file, text);
  return file;
}

const VALID = `broker:
  url: amqp://guest:guest@127.0.0.1:5672/
sites:
  paris:
    postgres: postgres://postgres@127.0.0.1:5432/paris
  london:
    postgres: postgres://postgres@127.0.0.1:5432/london
`;

test('--help describes every command', async () => {
  const top = await sitesync(['--help']);
  assert.equal(top.code, 0);
  assert.match(top.stdout, /run \[options\]/);
  assert.match(top.stdout, /status \[options\]/);
  for (const command of ['run', 'status']) {
    const help = await sitesync([command, '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--config <file>/);
  }
});

const configErrors: [string, string, RegExp][] = [
  ['missing file', '', /cannot read the configuration file .*nope\.yml \(ENOENT\); pass an existing file with --config/],
  ['bad YAML', 'broker: [', /is not valid YAML: .*; fix the syntax at that line/],
  ['unknown key', VALID + 'brokr: {}\n', /unknown key "brokr"; remove it or check its spelling/],
  ['missing key', 'sites: {}\n', /missing key "broker"/],
  ['bad URL', VALID.replace('amqp://guest', 'http://guest'), /broker\.url = "http:\/\/guest.*" is not valid; it must be an AMQP URL/],
  ['bad site name', VALID.replace('paris:', 'Paris-1:'), /site name "Paris-1" is not valid/],
  ['one site', 'broker: {url: "amqp://x"}\nsites:\n  a: {postgres: "postgres://x"}\n', /needs at least two sites/],
  ['wrong type', VALID + 'capture:\n  maxMessageBytes: lots\n', /capture\.maxMessageBytes = "lots" must be integer/],
];

for (const [name, text, expected] of configErrors) {
  test(`configuration error (${name}): one line, exit status 2`, async () => {
    const file = name === 'missing file' ? '/nonexistent/nope.yml' : configFile(text);
    const result = await sitesync(['run', '--config', file, '--site', 'paris']);
    assert.equal(result.code, 2);
    assert.match(result.stderr, expected);
    assert.equal(result.stderr.trim().split('\n').length, 1, `one line: ${result.stderr}`);
    assert.match(result.stderr, /^sitesync: SITESYNC_ERR_CONFIG: /);
  });
}

test('an environment variable overrides the file, and is validated the same way', async () => {
  const result = await sitesync(['run', '--config', configFile(VALID), '--site', 'paris'], { SITESYNC_BROKER__URL: 'ftp://nowhere' });
  assert.equal(result.code, 2);
  assert.match(result.stderr, /broker\.url = "ftp:\/\/nowhere" is not valid/);
});

test('a site not in the configuration', async () => {
  const result = await sitesync(['run', '--config', configFile(VALID), '--site', 'madrid']);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /site "madrid" is not in the configuration \(sites: paris, london\); pass one of them with --site/);
});

test('a missing option names itself', async () => {
  const result = await sitesync(['run', '--config', configFile(VALID)]);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /required option '-s, --site <name>' not specified/);
});

test('a database that does not exist: one line naming the fix, exit 2', async () => {
  // sitesync declares its broker objects before it reaches the database: names of this test's own, removed after.
  const suffix = randomBytes(3).toString('hex');
  const [paris, london, exchange] = [`paris_${suffix}`, `london_${suffix}`, `sitesync.test.cli${suffix}`];
  const config = `broker:
  url: ${BROKER}
  exchange: ${exchange}
  archiveStream: ${exchange}.archive
sites:
  ${paris}:
    postgres: postgres://postgres@127.0.0.1:5432/no_such_db_xyz
  ${london}:
    postgres: postgres://postgres@127.0.0.1:5432/london
`;
  try {
    const result = await sitesync(['run', '--config', configFile(config), '--site', paris]);
    assert.equal(result.code, 2);
    const errorLines = result.stderr.split('\n').filter((l) => l.startsWith('sitesync:'));
    assert.equal(errorLines.length, 1);
    assert.match(errorLines[0]!, new RegExp(`database "no_such_db_xyz" does not exist; create the database or fix sites\\.${paris}\\.postgres`));
  } finally {
    const connection = await amqp.connect(BROKER);
    const channel = await connection.createChannel();
    for (const queue of [paris, london].flatMap((site) => [siteQueue(site), parkingQueue(site)]).concat(`${exchange}.archive`)) await channel.deleteQueue(queue);
    for (const name of [tablesExchange(exchange), exchange]) await channel.deleteExchange(name);
    await connection.close();
  }
});

test('status shows each site: slot, lag, applied positions and queues', async () => {
  const t = await createTestSites(['paris', 'london']);
  try {
    await t.everywhere('CREATE TABLE x (id int PRIMARY KEY)');
    const london = await t.start('london');
    await t.start('paris');
    let applied = 0;
    london.events.on('apply:applied', () => applied++);
    await sql(t.db('paris'), 'INSERT INTO x VALUES (1)');
    await waitFor('london applied the row', async () => applied > 0);
    const text = await sitesync(['status', '--config', t.configFile]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`site ${t.sites.paris}\\n  slot sitesync_${t.sites.paris}: streaming, confirmed [0-9A-F]+/[0-9A-F]+`));
    assert.match(text.stdout, new RegExp(`from ${t.sites.paris}: applied up to [0-9A-F]+/[0-9A-F]+`));
    assert.match(text.stdout, new RegExp(`queue SITE_${t.sites.london!.toUpperCase()}: 0 waiting, 1 consumer\\(s\\), 0 parked`));
    const json = JSON.parse((await sitesync(['status', '--config', t.configFile, '--json'])).stdout) as { site: string; captureState: { lagBytes: number } }[];
    assert.deepEqual(json.map((s) => s.site).sort(), [t.sites.london, t.sites.paris].sort());
    assert.equal(typeof json[0]!.captureState.lagBytes, 'number');
  } finally {
    await t.cleanup();
  }
});

test('RabbitMQ unreachable: capture says so in one line and keeps retrying', async () => {
  const t = await createTestSites(['paris', 'london']);
  try {
    const site = t.spawn('paris', { SITESYNC_BROKER__URL: 'amqp://guest:guest@127.0.0.1:1/' });
    await waitFor('the unreachable line', async () => /SITESYNC_ERR_BROKER_UNREACHABLE/.test(site.output()));
    assert.equal(site.child.exitCode, null, 'still running, retrying');
    assert.match(site.output(), /SITESYNC_ERR_BROKER_UNREACHABLE: RabbitMQ at amqp:\/\/guest:\*\*\*@127\.0\.0\.1:1\/ is unreachable \(connect ECONNREFUSED 127\.0\.0\.1:1\); start it or fix broker\.url/);
    assert.doesNotMatch(site.output(), /guest:guest/, 'the password is never printed');
  } finally {
    await t.cleanup();
  }
});

test('no password appears in any output: configuration errors, status (text and JSON), run; status exits 1 on what it cannot read', async () => {
  const secrets = ['hunter2', 'hunter3', 'hunter4', 'hunter5'];
  const unreachable = configFile(`broker:
  url: amqp://guest:hunter4@127.0.0.1:1/
sites:
  paris:
    postgres: postgres://postgres:hunter2@127.0.0.1:1/paris?password=hunter3
  london:
    postgres: postgres://postgres@127.0.0.1:1/london
    monitorPostgres: postgres://monitor:hunter5@127.0.0.1:1/london
`);
  const outputs: string[] = [];
  for (const json of [false, true]) {
    const status = await sitesync(['status', '--config', unreachable, ...(json ? ['--json'] : [])]);
    assert.equal(status.code, 1, `status exits 1 when it cannot read a service: ${status.stderr}`);
    assert.match(status.stderr, /sitesync: .*(unreachable|refused|could not)/i);
    outputs.push(status.stdout, status.stderr);
  }
  // run retries an unreachable service for ever: what it says until both have been reported is enough.
  const child = spawn(process.execPath, [join(ROOT, 'bin/sitesync.js'), 'run', '--config', unreachable, '--site', 'paris'], { env: { ...process.env, SITESYNC_LOG__LEVEL: 'info' } });
  let said = '';
  child.stdout.on('data', (d: Buffer) => (said += d.toString()));
  child.stderr.on('data', (d: Buffer) => (said += d.toString()));
  try {
    await waitFor('run to report both services unreachable', async () => /DATABASE_UNREACHABLE/.test(said) && /BROKER_UNREACHABLE/.test(said));
  } finally {
    child.kill('SIGKILL');
  }
  outputs.push(said);
  const wrongScheme = configFile(VALID.replace('postgres://postgres@127.0.0.1:5432/paris', 'mysql://root:hunter2@127.0.0.1/paris'));
  const invalid = await sitesync(['status', '--config', wrongScheme]);
  assert.equal(invalid.code, 2);
  outputs.push(invalid.stdout, invalid.stderr);
  const badEnvironment = await sitesync(['status', '--config', wrongScheme], { SITESYNC_BROKER__URL: '"hunter3' });
  outputs.push(badEnvironment.stdout, badEnvironment.stderr);
  const all = outputs.join('\n');
  assert.ok(all.includes('***'), 'passwords are shown as ***');
  for (const secret of secrets) assert.ok(!all.includes(secret), `${secret} appears in:\n${all}`);
});

test('an environment variable that names no configuration key is ignored with a warning, not fatal', async () => {
  const file = configFile(VALID.replace(/127\.0\.0\.1:5432/g, '127.0.0.1:1'));
  const result = await sitesync(['status', '--config', file], { SITESYNC_PORT_9464_TCP: 'tcp://10.0.0.1:9464', SITESYNC_AMQP_PORT: '5673' });
  assert.notEqual(result.code, 2, result.stderr);
  assert.match(result.stderr, /warning: environment variable SITESYNC_PORT_9464_TCP names no configuration key/);
  assert.match(result.stderr, /warning: environment variable SITESYNC_AMQP_PORT names no configuration key/);
  assert.ok(!result.stderr.includes('10.0.0.1'), 'the value is never shown');
});

test("run stops on SIGTERM even when whoever read its stderr is gone (its last log lines cannot be written)", async () => {
  const file = configFile(VALID.replace(/127\.0\.0\.1:5432/g, '127.0.0.1:1').replace('127.0.0.1:5672', '127.0.0.1:1'));
  const child = spawn(process.execPath, [join(ROOT, 'bin/sitesync.js'), 'run', '--config', file, '--site', 'paris'], { env: { ...process.env, SITESYNC_LOG__LEVEL: 'info' } });
  let said = '';
  child.stderr.on('data', (d: Buffer) => (said += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    await waitFor('run to be retrying', async () => /UNREACHABLE/.test(said));
    child.stdout.destroy();
    child.stderr.destroy();
    child.kill('SIGTERM');
    const code = await Promise.race([exited, new Promise<'still running'>((resolve) => setTimeout(() => resolve('still running'), 10_000))]);
    assert.equal(code, 0, 'it stopped cleanly');
  } finally {
    child.kill('SIGKILL');
  }
});
