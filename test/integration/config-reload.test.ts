/**
 * `sitesync run` reloads its configuration on SIGHUP, without the process restarting: a site joining a
 * running mesh is trusted and sent to by the processes already running.
 *
 * Two sites a and b run as real `sitesync run` processes with a configuration that lists only them. A SIGHUP
 * with a broken file, then with a file that no longer lists the process's site, logs one error line each and
 * changes nothing. Then site c (with a broker user of its own, made by `sitesync setup`) is added to the file,
 * a and b get a SIGHUP, c's process is started: c's rows reach a and b (trusted, nothing parked), a's reach c,
 * and a and b are still the processes started first. SIGTERM after a reload, and during one, still stops
 * cleanly.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { parkingQueue } from '../../src/config/names.ts';
import { passwordVariable } from '../../src/cli/setup-command.ts';
import { BROKER, createTestSites, dbUrl, MANAGEMENT, parkedMessages, sql, waitFor, type SpawnedSite } from '../helpers/test-sites.ts';
import { runSitesync, type CliResult } from '../helpers/run-cli.ts';


const sitesync = (args: string[], env: Record<string, string> = {}): Promise<CliResult> => runSitesync(args, { env });

function management(path: string, method = 'GET'): Promise<Response> {
  const url = new URL(MANAGEMENT);
  const authorization = `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}`;
  return fetch(new URL(`api/${path}`, `${url.protocol}//${url.host}/`), { method, headers: { authorization } });
}

interface LogLine {
  level?: number;
  msg?: string;
  raw: string;
}

/** Every line a process wrote (pino JSON lines, and any plain `sitesync:` line as it is). */
function logLines(site: SpawnedSite): LogLine[] {
  return site
    .output()
    .split('\n')
    .filter((l) => l.length > 0)
    .map((raw) => {
      try {
        return { ...(JSON.parse(raw) as { level?: number; msg?: string }), raw };
      } catch {
        return { raw };
      }
    });
}

const count = (site: SpawnedSite, msg: string): number => logLines(site).filter((l) => l.msg === msg).length;

test('SIGHUP: a broken file is refused in one line; a site added to the file is trusted and sent to, by the same processes', async () => {
  const password = `reload-${Date.now().toString(36)}-secret`;
  const brokerUser = (c: string): string => `sitesync_test_${c}`;
  const t = await createTestSites(['a', 'b', 'c'], (sites) => {
    const url = new URL(BROKER);
    url.username = brokerUser(sites.c!);
    url.password = password;
    return {
      sites: {
        [sites.a!]: { postgres: dbUrl(`sitesync_test_${sites.a}`) },
        [sites.b!]: { postgres: dbUrl(`sitesync_test_${sites.b}`) },
        // c publishes as a broker user of its own: a and b must learn to trust it.
        [sites.c!]: { postgres: dbUrl(`sitesync_test_${sites.c}`), brokerUser: brokerUser(sites.c!), brokerUrl: url.toString() },
      },
    };
  }, { leastPrivilege: false });
  const { a, b, c } = t.sites as { a: string; b: string; c: string };
  const full = JSON.parse(readFileSync(t.configFile, 'utf8')) as { sites: Record<string, unknown> };
  const writeConfig = (names: string[]): void => {
    const raw = { ...full, sites: Object.fromEntries(names.map((n) => [n, full.sites[n]])) };
    writeFileSync(t.configFile, JSON.stringify(raw, null, 2));
  };
  const has = async (short: 'a' | 'b' | 'c', id: number): Promise<boolean> => (await sql(t.db(short), 'SELECT 1 FROM items WHERE id = $1', [id])).length > 0;
  // Capture and apply both running. Not "the slot is active": a slot being created is active while it waits
  // for its consistent point, and a row committed before that point is rightly not captured.
  const ready = (p: SpawnedSite): boolean => count(p, 'capture started') >= 1 && count(p, 'applying') >= 1;
  const spawned: Record<string, SpawnedSite> = {};
  try {
    writeConfig([a, b]);
    await t.everywhere('CREATE TABLE items (id int PRIMARY KEY, site text NOT NULL)');
    const pa = (spawned.a = t.spawn('a'));
    const pb = (spawned.b = t.spawn('b'));
    const pids = { a: pa.child.pid, b: pb.child.pid };
    await waitFor('a and b capturing and applying', async () => ready(pa) && ready(pb), 60_000);
    await sql(t.db('a'), `INSERT INTO items VALUES (1, 'a')`);
    await sql(t.db('b'), `INSERT INTO items VALUES (2, 'b')`);
    await waitFor('a row at b', () => has('b', 1), 60_000);
    await waitFor('b row at a', () => has('a', 2), 60_000);

    // A broken file: one error line, and the pipeline goes on as it was (never stopped).
    const refusedOnce = async (p: SpawnedSite, what: RegExp): Promise<LogLine> => {
      const before = logLines(p).length;
      p.child.kill('SIGHUP');
      const line = await waitFor('the refusal', async () => logLines(p).slice(before).find((l) => /configuration not reloaded/.test(l.msg ?? l.raw)));
      await new Promise((r) => setTimeout(r, 1000)); // anything else it would say
      const said = logLines(p).slice(before);
      const aboutIt = said.filter((l) => /configuration|stopp|SIGHUP/.test(l.msg ?? l.raw) || (l.level ?? 50) >= 50);
      assert.deepEqual(aboutIt, [line], `one line, not:\n${said.map((l) => l.raw).join('\n')}`);
      assert.equal(line.level, 50, line.raw);
      assert.match(line.msg!, /the running configuration is kept/);
      assert.match(line.msg!, what);
      assert.equal(p.child.exitCode, null, p.output());
      return line;
    };
    writeFileSync(t.configFile, 'broker: [not closed\nsites:\n');
    await refusedOnce(pa, /is not valid YAML/);
    // A valid file that no longer has this process's site.
    writeConfig([b, c]);
    const gone = await refusedOnce(pa, new RegExp(`no longer has site "${a}"`));
    assert.doesNotMatch(gone.raw, /guest:guest|secret/, 'no password in the line');
    writeConfig([a, b]);
    await sql(t.db('a'), `INSERT INTO items VALUES (3, 'a')`);
    await sql(t.db('b'), `INSERT INTO items VALUES (4, 'b')`);
    await waitFor('a row at b after the refused reloads', () => has('b', 3), 60_000);
    await waitFor('b row at a after the refused reloads', () => has('a', 4), 60_000);
    assert.equal(count(pa, 'capture stopped'), 0, `the pipeline was never stopped:\n${pa.output()}`);

    // c joins: the file lists it, setup makes its queue, bindings and broker user.
    writeConfig([a, b, c]);
    const setup = await sitesync(['setup', '--config', t.configFile, '--management-url', MANAGEMENT], { [passwordVariable(c)]: password });
    assert.equal(setup.code, 0, setup.stdout + setup.stderr);
    for (const p of [pa, pb]) p.child.kill('SIGHUP');
    for (const [name, p] of [['a', pa], ['b', pb]] as const) {
      // The new pipeline is running once, after the reload line, capture streams and apply consumes again.
      await waitFor(`${name} to reload`, async () => {
        const lines = logLines(p);
        const at = lines.findIndex((l) => /^configuration reloaded: /.test(l.msg ?? ''));
        const since = at < 0 ? [] : lines.slice(at).map((l) => l.msg);
        return since.includes('capture stopped') && since.includes('capture started') && since.includes('applying');
      }, 60_000);
      const reloaded = logLines(p).filter((l) => /^configuration reloaded: /.test(l.msg ?? ''));
      assert.equal(reloaded.length, 1, p.output());
      assert.equal(reloaded[0]!.level, 30, reloaded[0]!.raw);
      assert.match(reloaded[0]!.msg!, new RegExp(`^configuration reloaded: sites ${a}, ${b}, ${c}\\b`));
    }
    const pc = (spawned.c = t.spawn('c'));
    await waitFor('c capturing and applying', async () => ready(pc), 60_000);
    await sql(t.db('c'), `INSERT INTO items VALUES (5, 'c')`);
    await sql(t.db('a'), `INSERT INTO items VALUES (6, 'a')`);
    await waitFor('c row at a', () => has('a', 5), 60_000);
    await waitFor('c row at b', () => has('b', 5), 60_000);
    await waitFor('a row at c', () => has('c', 6), 60_000);
    await waitFor('a row at b', () => has('b', 6), 60_000);
    await sql(t.db('b'), `INSERT INTO items VALUES (7, 'b')`);
    await waitFor('b row at c', () => has('c', 7), 60_000);
    assert.deepEqual(await parkedMessages(parkingQueue(a)), [], 'a trusted every message of c');
    assert.deepEqual(await parkedMessages(parkingQueue(b)), [], 'b trusted every message of c');

    // Same processes all along.
    for (const [name, p] of [['a', pa], ['b', pb]] as const) {
      assert.equal(p.child.pid, pids[name]);
      assert.equal(p.child.exitCode, null, p.output());
      assert.equal(count(p, 'sitesync running'), 1, p.output());
    }
    for (const p of [pa, pb, pc]) {
      assert.doesNotMatch(p.output(), new RegExp(`guest:guest|${password}`), 'no password in the logs');
    }

    // SIGTERM after a reload (a), and during one (b: its pipeline stopping or the new one starting): clean stops.
    pa.child.kill('SIGTERM');
    pc.child.kill('SIGTERM');
    pb.child.kill('SIGHUP');
    await waitFor('b to start reloading again', async () => logLines(pb).filter((l) => /^configuration reloaded: /.test(l.msg ?? '')).length === 2);
    pb.child.kill('SIGTERM');
    for (const p of [pa, pb, pc]) {
      assert.equal(await p.exited, 0, p.output());
      assert.equal(count(p, 'stopped cleanly'), 1, p.output());
    }
  } catch (error) {
    // What the processes said, for whoever reads a failure.
    for (const [name, p] of Object.entries(spawned)) (error as Error).message += `\n--- ${name}:\n${p.output()}`;
    throw error;
  } finally {
    await management(`users/${encodeURIComponent(brokerUser(c))}`, 'DELETE').catch(() => undefined);
    await t.cleanup();
  }
});
