/**
 * Joining a running mesh (`sitesync join`), through real `sitesync run` processes, PostgreSQL and RabbitMQ:
 * two sites write at once (overlapping keys, so they also conflict) while a third joins from one of them;
 * the three end identical, nothing lost or duplicated. Then a fourth joins the same way while the donor's
 * process is killed in the middle of the snapshot. No process but the killed one restarts.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createTestSites, sql, tableRows, waitFor, type SpawnedSite, type TestSites } from '../helpers/test-sites.ts';
import { runSitesync, type CliResult } from '../helpers/run-cli.ts';


const sitesync = (...args: string[]): Promise<CliResult> => runSitesync([...args, '--config', t.configFile]);

/** pgbench-like writes at a site until stopped: inserts, updates and deletes of keys in [from, from + span). */
function writer(short: string, from: number, span: number): { stop: () => Promise<number> } {
  let running = true;
  let count = 0;
  const done = (async () => {
    while (running) {
      const k = from + Math.floor(Math.random() * span);
      const r = Math.random();
      if (r < 0.4) await sql(t.db(short), 'INSERT INTO accounts VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET balance = accounts.balance + 1', [k, count, `${short}${count}`]);
      else if (r < 0.9) await sql(t.db(short), 'UPDATE accounts SET balance = balance - 1, note = $2 WHERE id = $1', [k, `${short}u${count}`]);
      else await sql(t.db(short), 'DELETE FROM accounts WHERE id = $1', [k]);
      count++;
    }
  })();
  return {
    async stop() {
      running = false;
      await done;
      return count;
    },
  };
}

/** Waits until every site in `shorts` holds the same rows as the first; on timeout, says how they differ. */
async function allIdentical(shorts: readonly string[], processes: () => readonly SpawnedSite[]): Promise<void> {
  const [reference, ...others] = shorts;
  try {
    await waitFor(
      `${others.join(', ')} identical to ${reference}`,
      async () => {
        const expected = JSON.stringify(await tableRows(t.db(reference!), 'accounts'));
        for (const short of others) if (JSON.stringify(await tableRows(t.db(short), 'accounts')) !== expected) return false;
        return true;
      },
      120_000,
    );
  } catch (error) {
    const expected = new Set(await tableRows(t.db(reference!), 'accounts'));
    const lines: string[] = [];
    for (const short of others) {
      const there = new Set(await tableRows(t.db(short), 'accounts'));
      lines.push(`${short} lacks ${JSON.stringify([...expected].filter((r) => !there.has(r)).slice(0, 8))} and has ${JSON.stringify([...there].filter((r) => !expected.has(r)).slice(0, 8))}`);
    }
    if (process.env.TEST_SITESYNC_DUMP) for (const [short, p] of Object.entries(processesByName)) writeFileSync(`${process.env.TEST_SITESYNC_DUMP}-${short}.log`, p.output());
    const said = processes().flatMap((p) => p.output().split('\n').filter((l) => /"level":(40|50|60)/.test(l))).slice(0, 10);
    throw new Error(`${(error as Error).message}: ${lines.join('; ')}; warnings: ${said.join('\n')}`);
  }
}

let t: TestSites;
const processes: Record<string, SpawnedSite> = {};
const processesByName = processes;
const running = (): SpawnedSite[] => Object.values(processes);

before(async () => {
  t = await createTestSites(['paris', 'london', 'madrid', 'rome'], { log: { level: 'info' } });
  await t.everywhere('CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL, note text)');
  // paris and london held the same rows before replication began: no stream carries them.
  for (const short of ['paris', 'london']) await sql(t.db(short), `INSERT INTO accounts SELECT g, g, repeat('x', g % 40) FROM generate_series(1, 5000) g`);
});

after(async () => {
  await t?.cleanup();
});

async function joinUnderLoad(joining: string, killDonor: boolean): Promise<void> {
  const pids = Object.fromEntries(Object.entries(processes).map(([short, p]) => [short, p.child.pid]));
  // Overlapping key ranges: both sites update rows the snapshot has read and rows it has not reached,
  // and each other's rows, concurrently.
  const writers = [writer('paris', 1, 6000), writer('london', 3000, 6000)];
  try {
    await joinWhileWriting(joining, killDonor, writers, pids);
  } catch (error) {
    if (process.env.TEST_SITESYNC_DUMP) for (const [short, p] of Object.entries(processesByName)) writeFileSync(`${process.env.TEST_SITESYNC_DUMP}-${short}.log`, p.output());
    throw error;
  } finally {
    await Promise.all(writers.map((w) => w.stop()));
  }
}

async function joinWhileWriting(joining: string, killDonor: boolean, writers: { stop: () => Promise<number> }[], pids: Record<string, number | undefined>): Promise<void> {
  await sleep(500);
  // The first join names no table: it takes every table with a key both databases hold (accounts).
  const tables = killDonor ? ['--tables', 'public.accounts'] : [];
  const started = await sitesync('join', '--site', t.sites[joining]!, '--from', t.sites.paris!, ...tables, '--chunk-rows', '200');
  assert.equal(started.code, 0, started.stderr);
  assert.match(started.stdout, /snapshot \S+ of public\.accounts started/);
  assert.equal(started.stdout.match(/snapshot \S+ of /g)?.length, 1, started.stdout);
  const joinId = /join (\S+):/.exec(started.stdout)?.[1];
  assert.ok(joinId, started.stdout);
  processes[joining] = t.spawn(joining);
  if (killDonor) {
    await waitFor('a few chunks read', async () => ((await sql<{ n: number }>(t.db('paris'), `SELECT max(next_chunk) AS n FROM sitesync.snapshots WHERE targets ? $1`, [t.sites[joining]!]))[0]?.n ?? 0) >= 5, 60_000);
    processes.paris!.child.kill('SIGKILL');
    await processes.paris!.exited;
    await sleep(300);
    processes.paris = t.spawn('paris');
  }
  const phase = (what: string): void => void (process.env.TEST_SITESYNC_DUMP && process.stderr.write(`# ${new Date().toISOString()} ${what}\n`));
  phase('join started');
  await waitFor(`${joining} joined`, async () => (await sql<{ state: string }>(t.db(joining), `SELECT state FROM sitesync.joins WHERE join_id = $1 AND role = 'joiner'`, [joinId]))[0]?.state === 'done', 180_000);
  phase('joined');
  const counts = await Promise.all(writers.map((w) => w.stop()));
  phase('writers stopped');
  assert.ok(counts.every((c) => c > 100), `both sites wrote during the join (${counts.join(', ')})`);
  await allIdentical(['paris', 'london', ...Object.keys(processes).filter((s) => s !== 'paris' && s !== 'london')], running);
  phase('identical');
  if (process.env.TEST_SITESYNC_DUMP) for (const [short, p] of Object.entries(processesByName)) writeFileSync(`${process.env.TEST_SITESYNC_DUMP}-${short}.log`, p.output());
  // The donor held and let go; nobody but a killed process restarted.
  assert.deepEqual(
    (await sql<{ state: string }>(t.db('paris'), `SELECT state FROM sitesync.joins WHERE join_id = $1 AND role = 'donor'`, [joinId])).map((r) => r.state),
    ['released'],
  );
  for (const [short, pid] of Object.entries(pids)) if (!(killDonor && short === 'paris')) assert.equal(processes[short]!.child.pid, pid, `${short} kept running`);
  const status = await sitesync('join', '--status', '--site', t.sites[joining]!, '--from', t.sites.paris!);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, new RegExp(`join ${joinId}: done`));
}

test('a third site joins two sites that keep writing, and the three end identical', async () => {
  processes.paris = t.spawn('paris');
  processes.london = t.spawn('london');
  await waitFor('sites running', async () => running().every((s) => s.output().includes('capture started')), 60_000);
  await joinUnderLoad('madrid', false);
});

test('a fourth site joins while the donor is killed in the middle of the snapshot', async () => {
  await joinUnderLoad('rome', true);
});

test('what a user can get wrong is one line naming the fix', async () => {
  const cases: [string[], RegExp][] = [
    [['join', '--site', t.sites.madrid!, '--from', t.sites.madrid!], /cannot join from itself/],
    [['join', '--site', 'nowhere', '--from', t.sites.paris!], /site "nowhere" is not in the configuration/],
    // madrid holds rows now, and its process applies its queue.
    [['join', '--site', t.sites.madrid!, '--from', t.sites.paris!, '--tables', 'public.accounts'], /already holds rows/],
  ];
  for (const [args, expected] of cases) {
    const result = await sitesync(...args);
    assert.equal(result.code !== 0, true, `${args.join(' ')} should fail`);
    const lines = result.stderr.trim().split('\n');
    assert.equal(lines.length, 1, result.stderr);
    assert.match(lines[0]!, expected);
  }
});
