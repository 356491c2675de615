/**
 * A real `sitesync run` (london) with its metrics port: /healthz answers, /readyz is ready once capture
 * streams and apply consumes, turns 503 naming the source and the reason when apply halts that source on a
 * schema error, and ready again once the table is fixed. Its /metrics carries the state gauges, and every
 * sitesync metric that the compose dashboard and alert rules query. Its log is in the pretty format asked
 * for from the environment (SITESYNC_LOG__FORMAT).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { createTestSites, sql, waitFor, type SpawnedSite, type TestSites } from '../helpers/test-sites.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const run = promisify(execFile);

let t: TestSites;
let london: SpawnedSite;
let base: string;

/** A port nothing listens on now. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

interface Readiness {
  ready: boolean;
  site: string;
  capture: string;
  apply: string;
  interrupted: Record<string, string>;
  halted: Record<string, string>;
}

async function readyz(): Promise<{ status: number; body: Readiness }> {
  if (london.child.exitCode !== null) throw new Error(`sitesync run exited: ${london.output()}`);
  const response = await fetch(`${base}/readyz`);
  return { status: response.status, body: (await response.json()) as Readiness };
}

before(async () => {
  t = await createTestSites(['paris', 'london']);
  await sql(t.db('paris'), 'CREATE TABLE items (id int PRIMARY KEY, v int, note text)');
  await sql(t.db('london'), 'CREATE TABLE items (id int PRIMARY KEY, v int)'); // no "note": applying it halts
  await t.start('paris');
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  london = t.spawn('london', { SITESYNC_METRICS__PORT: String(port), SITESYNC_LOG__FORMAT: 'pretty' });
});

after(async () => {
  await t?.cleanup();
});

test('/healthz answers alive; /readyz is ready once capture streams and apply consumes', async () => {
  const alive = await waitFor('/healthz', async () => {
    if (london.child.exitCode !== null) throw new Error(`sitesync run exited: ${london.output()}`);
    const response = await fetch(`${base}/healthz`);
    return response.status === 200 ? response.json() : undefined;
  });
  assert.deepEqual(alive, { status: 'alive' });
  const ready = await waitFor('/readyz ready', async () => {
    const r = await readyz();
    return r.status === 200 ? r : undefined;
  });
  assert.deepEqual(ready.body, { ready: true, site: t.sites.london, capture: 'streaming', apply: 'consuming', interrupted: {}, halted: {} });
});

test('/metrics: state gauges, every source from the start, and every sitesync metric the compose monitoring queries', async () => {
  const text = await (await fetch(`${base}/metrics`)).text();
  const labels = `site="${t.sites.london}"`;
  assert.match(text, new RegExp(`^sitesync_capture_streaming\\{${labels}\\} 1$`, 'm'));
  assert.match(text, new RegExp(`^sitesync_apply_consuming\\{${labels}\\} 1$`, 'm'));
  assert.match(text, new RegExp(`^sitesync_source_halted\\{${labels},source="${t.sites.paris}"\\} 0$`, 'm'));
  assert.match(text, new RegExp(`^sitesync_applied_transactions_total\\{${labels},source="${t.sites.paris}"\\} \\d+$`, 'm'));
  assert.match(text, /^sitesync_build_info\{version="[^"]+",node="[^"]+"\} 1$/m);
  assert.match(text, /^sitesync_process_cpu_seconds_total \d/m);
  assert.doesNotMatch(text, /process_process/);

  const exported = new Set([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].flatMap(([, name, type]) => (type === 'histogram' ? [name!, `${name}_bucket`, `${name}_sum`, `${name}_count`] : [name!])));
  const filesUnder = (dir: string): string[] => readdirSync(dir).flatMap((e) => (statSync(join(dir, e)).isDirectory() ? filesUnder(join(dir, e)) : [join(dir, e)]));
  const queried = new Set<string>();
  for (const file of [...filesUnder(join(ROOT, 'deploy/grafana')), ...filesUnder(join(ROOT, 'deploy/prometheus'))]) {
    for (const [name] of readFileSync(file, 'utf8').matchAll(/\bsitesync_[a-z0-9_]+/g)) if (name !== 'sitesync_alerts') queried.add(name);
  }
  assert.ok(queried.size >= 8);
  assert.deepEqual([...queried].filter((name) => !exported.has(name)), [], 'queried by the dashboard or the rules but not in the scrape');
});

test('/readyz turns 503 naming the source and the reason when apply halts it, and ready again once fixed', async () => {
  await sql(t.db('paris'), `INSERT INTO items VALUES (1, 10, 'london has no column note')`);
  const halted = await waitFor('/readyz not ready', async () => {
    const r = await readyz();
    return r.status === 503 ? r : undefined;
  });
  assert.equal(halted.body.ready, false);
  assert.equal(halted.body.capture, 'streaming');
  assert.equal(halted.body.apply, 'consuming');
  assert.deepEqual(Object.keys(halted.body.halted), [t.sites.paris]);
  assert.match(halted.body.halted[t.sites.paris!]!, /^SITESYNC_ERR_APPLY_SCHEMA: column "note" of table public\.items does not exist at the target/);
  const metrics = await (await fetch(`${base}/metrics`)).text();
  assert.match(metrics, new RegExp(`^sitesync_source_halted\\{site="${t.sites.london}",source="${t.sites.paris}"\\} 1$`, 'm'));

  await sql(t.db('london'), 'ALTER TABLE items ADD COLUMN note text');
  const again = await waitFor('/readyz ready again', async () => {
    const r = await readyz();
    return r.status === 200 ? r : undefined;
  });
  assert.deepEqual(again.body.halted, {});
  assert.deepEqual(await sql(t.db('london'), 'SELECT id, v, note FROM items'), [{ id: 1, v: 10, note: 'london has no column note' }]);
});

test('SITESYNC_LOG__FORMAT=pretty: one readable line per entry (time, level, site/part, message, fields), no JSON', () => {
  const lines = london.output().split('\n').filter((l) => l.trim() !== '');
  assert.ok(lines.length > 3, london.output());
  assert.deepEqual(lines.filter((l) => l.startsWith('{')), [], 'no JSON line');
  const applying = lines.find((l) => l.includes('applying') && l.includes('/apply'));
  assert.ok(applying, london.output());
  assert.match(applying, new RegExp(`^\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z  INFO   ${t.sites.london}/apply  applying  queue=SITE_${t.sites.london!.toUpperCase()}$`));
  const halt = lines.find((l) => l.includes(' ERROR '));
  assert.ok(halt, 'the halt is logged at error');
  assert.match(halt, new RegExp(`ERROR  ${t.sites.london}/apply  applying from ${t.sites.paris} halted: SITESYNC_ERR_APPLY_SCHEMA: .* source=${t.sites.paris} code=SITESYNC_ERR_APPLY_SCHEMA$`));
});

test('sitesync --version prints the package version', async () => {
  const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const { stdout } = await run(process.execPath, [join(ROOT, 'bin/sitesync.js'), '--version']);
  assert.equal(stdout, `${version}\n`);
});
