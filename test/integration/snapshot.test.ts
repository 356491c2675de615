/**
 * Online snapshots through the real pipeline (real PostgreSQL, RabbitMQ, `sitesync run` processes and the
 * `sitesync snapshot` command): rows a table held before replication reach the other site while both sites
 * keep writing, nothing lost or stale; a SIGKILL of the snapshotting process resumes from the chunk that was
 * not confirmed; `--to` writes the rows at the named site only.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { createTestSites, dbUrl, sql, tableRows, waitFor, type SpawnedSite, type TestSites } from '../helpers/test-sites.ts';
import { runSitesync, type CliResult } from '../helpers/run-cli.ts';


const sitesync = (t: TestSites, ...args: string[]): Promise<CliResult> => runSitesync([...args, '--config', t.configFile]);

/**
 * Writes at a site until stopped: inserts, updates and deletes of keys in [from, from + span); with `moves`,
 * some updates also move a row's primary key below every key (rows a snapshot has not read yet land in the
 * range it has read).
 */
function writer(t: TestSites, short: string, from: number, span: number, moves = false): { stop: () => Promise<number> } {
  let running = true;
  let count = 0;
  const done = (async () => {
    while (running) {
      const k = from + Math.floor(Math.random() * span);
      const r = Math.random();
      if (r < 0.5) await sql(t.db(short), 'INSERT INTO accounts VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET balance = accounts.balance + 1', [k, count, `w${count}`]);
      else if (moves && r < 0.56) await sql(t.db(short), 'UPDATE accounts SET id = $2, note = $3 WHERE id = $1', [k, -1 - count, `moved from ${k}`]);
      else if (r < 0.85) await sql(t.db(short), 'UPDATE accounts SET balance = balance - 1, note = $2 WHERE id = $1', [k, `u${count}`]);
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

/** Waits until `short` holds paris's rows; on timeout, says which rows differ and what the processes said of it. */
async function identical(short: string, processes: readonly SpawnedSite[]): Promise<void> {
  try {
    // Both read at every poll: paris may still be applying the other writer's last transactions.
    await waitFor(`${short} identical to paris`, async () => JSON.stringify(await tableRows(t.db(short), 'accounts')) === JSON.stringify(await tableRows(t.db('paris'), 'accounts')), 90_000);
  } catch (error) {
    const there = new Set(await tableRows(t.db(short), 'accounts'));
    const expected = new Set(await tableRows(t.db('paris'), 'accounts'));
    const missing = [...expected].filter((r) => !there.has(r)).slice(0, 10);
    const extra = [...there].filter((r) => !expected.has(r)).slice(0, 10);
    const said = processes.flatMap((p) => p.output().split('\n').filter((l) => /"level":(40|50|60)/.test(l))).slice(0, 10);
    throw new Error(`${(error as Error).message}: paris has ${JSON.stringify(missing)} that ${short} lacks; ${short} has ${JSON.stringify(extra)}; warnings: ${said.join('\n')}`);
  }
}

let t: TestSites;
let paris: SpawnedSite;
let london: SpawnedSite;
let madrid: SpawnedSite;

before(async () => {
  t = await createTestSites(['paris', 'london', 'madrid']);
  await t.everywhere('CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL, note text)');
  // Rows paris held before anything replicated: no stream will ever carry them.
  await sql(t.db('paris'), `INSERT INTO accounts SELECT g, g, repeat('x', g % 50) FROM generate_series(1, 6000) g`);
});

after(async () => {
  await t?.cleanup();
});

test("a table's existing rows reach the other sites while both sites keep writing (keys moving too), and a kill mid-snapshot resumes", async () => {
  paris = t.spawn('paris');
  london = t.spawn('london');
  madrid = t.spawn('madrid');
  await waitFor('sites running', async () => [paris, london, madrid].every((s) => s.output().includes('capture started')), 60_000);
  // paris writes everywhere in its table (rows the snapshot has sent and rows it has not yet reached);
  // london writes keys of its own, which reach paris and madrid through the stream.
  const writers = [writer(t, 'paris', 1, 7000, true), writer(t, 'london', 100_000, 500)];
  const started = await sitesync(t, 'snapshot', '--site', t.sites.paris!, '--table', 'public.accounts', '--chunk-rows', '250');
  assert.equal(started.code, 0, started.stderr);
  const id = /snapshot (\S+) of public\.accounts/.exec(started.stdout)?.[1];
  assert.ok(id, started.stdout);
  // Kill paris in the middle of the snapshot, then start it again.
  await waitFor('a few chunks read', async () => ((await sql<{ next_chunk: number }>(t.db('paris'), 'SELECT next_chunk FROM sitesync.snapshots WHERE id = $1', [id]))[0]?.next_chunk ?? 0) >= 4, 60_000);
  paris.child.kill('SIGKILL');
  await paris.exited;
  await sleep(300);
  paris = t.spawn('paris');
  await waitFor('snapshot done', async () => (await sql<{ state: string }>(t.db('paris'), 'SELECT state FROM sitesync.snapshots WHERE id = $1', [id]))[0]?.state === 'done', 120_000);
  const counts = await Promise.all(writers.map((w) => w.stop()));
  assert.ok(counts.every((c) => c > 50), `both sites wrote during the snapshot (${counts.join(', ')})`);
  for (const short of ['london', 'madrid']) await identical(short, [paris, london, madrid]);
  assert.ok((await tableRows(t.db('paris'), 'accounts')).length > 5000);
  assert.match(paris.output(), /snapshot finished/);
  assert.ok((await sql(t.db('paris'), 'SELECT 1 FROM accounts WHERE id < 0')).length > 0, 'keys moved during the snapshot');
  const listed = await sitesync(t, 'snapshot', '--site', t.sites.paris!, '--list');
  assert.match(listed.stdout, new RegExp(`${id}  public\\.accounts to every site  done  \\d+/\\d+ rows \\(100%\\)`));
});

test('--to writes the rows at the named site only; the others move past them', async () => {
  // madrid lost a row behind sitesync's back, and london changed it, the same way (a transaction that
  // carries a sitesync origin is not captured): a snapshot to madrid alone must fix madrid and leave london.
  const id = (await sql<{ id: number }>(t.db('madrid'), 'SELECT id FROM accounts ORDER BY id LIMIT 1'))[0]!.id;
  const manual = `sitesync_manual_${t.suffix}`;
  await sql('postgres', 'SELECT pg_replication_origin_create($1)', [manual]);
  // The origin must still be set when the statement commits: its own transaction, then the reset.
  const behindTheBack = async (short: string, statement: string): Promise<void> => {
    const client = new pg.Client({ connectionString: dbUrl(t.db(short)) });
    await client.connect();
    try {
      await client.query('SELECT pg_replication_origin_session_setup($1)', [manual]);
      await client.query(statement);
      await client.query('SELECT pg_replication_origin_session_reset()');
    } finally {
      await client.end();
    }
  };
  await behindTheBack('madrid', `DELETE FROM accounts WHERE id = ${id}`);
  await behindTheBack('london', `UPDATE accounts SET note = 'london only' WHERE id = ${id}`);
  const started = await sitesync(t, 'snapshot', '--site', t.sites.paris!, '--table', 'public.accounts', '--to', t.sites.madrid!, '--wait');
  assert.equal(started.code, 0, started.stderr);
  await identical('madrid', [paris, london, madrid]);
  await sleep(1000);
  assert.deepEqual(await sql(t.db('london'), 'SELECT note FROM accounts WHERE id = $1', [id]), [{ note: 'london only' }]);
});

test('what a user can get wrong is one line naming the fix', async () => {
  await t.everywhere('CREATE TABLE keyless (a int)');
  const cases: [string[], RegExp][] = [
    [['snapshot', '--site', t.sites.paris!, '--table', 'public.keyless'], /public\.keyless.*primary key/],
    [['snapshot', '--site', t.sites.paris!, '--table', 'public.nope'], /public\.nope/],
    [['snapshot', '--site', t.sites.paris!, '--table', 'accounts'], /schema\.table/],
    [['snapshot', '--site', t.sites.paris!, '--table', 'public.accounts', '--to', 'atlantis'], /--to atlantis: not another configured site/],
    [['snapshot', '--site', 'atlantis', '--table', 'public.accounts'], /site "atlantis" is not in the configuration/],
    [['snapshot', '--site', t.sites.paris!, '--cancel', 'snothing'], /no running snapshot snothing/],
  ];
  for (const [args, pattern] of cases) {
    const result = await sitesync(t, ...args);
    assert.notEqual(result.code, 0, args.join(' '));
    assert.match(result.stderr, pattern);
    assert.equal(result.stderr.trim().split('\n').length, 1, `one line: ${result.stderr}`);
  }
});
