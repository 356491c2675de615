/**
 * `sitesync replay` against the real PostgreSQL and RabbitMQ: replaying what a site has changes nothing;
 * a site restored from an older copy is brought level, each row once; positions, --to and --source
 * limit the range; a range that starts too late stops with SITESYNC_ERR_GAP; a running site is refused.
 *
 * The table has no primary key and REPLICA IDENTITY FULL, so a transaction applied twice would show as a
 * row twice.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import amqp from 'amqplib';
import pg from 'pg';
import { SCHEMA_VERSION_HEADER } from '../../src/bus/message-headers.ts';
import { originName, siteQueue, slotName } from '../../src/config/names.ts';
import { CURRENT_SCHEMA_VERSION, decodeMessage } from '../../src/events/avro-codec.ts';
import { postgresPositions } from '../../connectors/postgres/postgres-positions.ts';
import { BROKER, createTestSites, dbUrl, sql, tableRows, waitFor, type TestSites } from '../helpers/test-sites.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const run = promisify(execFile);
const TABLE = `CREATE TABLE notes (n int, body text); ALTER TABLE notes REPLICA IDENTITY FULL;`;
const LSN = '[0-9A-F]+/[0-9A-F]+';

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

async function replay(t: TestSites, site: string, ...args: string[]): Promise<Outcome> {
  const argv = [join(ROOT, 'bin/sitesync.js'), 'replay', '--config', t.configFile, '--site', t.sites[site]!, ...args];
  try {
    const { stdout, stderr } = await run(process.execPath, argv, { cwd: ROOT, timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** The one line a failed command printed. */
function oneLine(outcome: Outcome): string {
  const lines = outcome.stderr.split('\n').filter((l) => l.length > 0);
  assert.equal(lines.length, 1, `expected one line on stderr, got: ${outcome.stderr}`);
  return lines[0]!;
}

function insert(t: TestSites, site: string, n: number, body: string): Promise<unknown> {
  return sql(t.db(site), `INSERT INTO notes VALUES ($1, $2)`, [n, body]);
}

async function originProgress(t: TestSites, source: string, target: string): Promise<string> {
  const rows = await sql<{ lsn: string }>(t.db(target), `SELECT pg_replication_origin_progress($1, true)::text AS lsn`, [originName(t.sites[source]!, t.sites[target]!)]);
  return rows[0]!.lsn;
}

/** What restoring a backup of the whole server does to an origin: it goes back to where the copy was. */
async function moveOrigin(t: TestSites, source: string, target: string, lsn: string): Promise<void> {
  await sql(t.db(target), `SELECT pg_replication_origin_advance($1, $2)`, [originName(t.sites[source]!, t.sites[target]!), lsn]);
}

/** A stopped site's capture lets go of its slot when its walsender exits: wait for it. */
async function slotIdle(t: TestSites, site: string): Promise<void> {
  await waitFor(`slot of ${site} idle`, async () => {
    const rows = await sql<{ active: boolean }>('postgres', `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, [slotName(t.sites[site]!)]);
    return rows.every((r) => !r.active);
  });
}

/** Positions (X/Y) of a source's transactions in the archive, in order, once each. */
async function archivedPositions(t: TestSites, site: string, count: number): Promise<string[]> {
  return waitFor(`${count} archived transactions of ${site}`, async () => {
    const connection = await amqp.connect(BROKER);
    try {
      const channel = await connection.createChannel();
      await channel.prefetch(100);
      const positions: string[] = [];
      let last = Date.now();
      await channel.consume(
        t.config.broker.archiveStream,
        (m) => {
          if (!m) return;
          last = Date.now();
          channel.ack(m);
          const message = decodeMessage(m.content, Number(m.properties.headers?.[SCHEMA_VERSION_HEADER]));
          if (message.site !== t.sites[site]) return;
          for (const tx of message.transactions) {
            const p = postgresPositions.describe(tx.position);
            if (!positions.includes(p)) positions.push(p);
          }
        },
        { arguments: { 'x-stream-offset': 'first' } },
      );
      while (Date.now() - last < 500) await sleep(50);
      return positions.length >= count ? positions : undefined;
    } finally {
      await connection.close();
    }
  });
}

test('replaying what a site already has changes nothing', async () => {
  const t = await createTestSites(['paris', 'london']);
  try {
    await t.everywhere(TABLE);
    const from = new Date(Date.now() - 2000).toISOString();
    await t.start('paris');
    const london = await t.start('london');
    for (let n = 1; n <= 5; n++) await insert(t, 'paris', n, `note ${n}`);
    await sql(t.db('paris'), `INSERT INTO notes VALUES (6, 'twin'), (6, 'twin')`);
    await waitFor('7 rows at london', async () => (await tableRows(t.db('london'), 'notes')).length === 7);
    await london.stop();
    await slotIdle(t, 'london');

    // An archived message of paris that nobody can decode: counted, not fatal.
    const connection = await amqp.connect(BROKER);
    const channel = await connection.createConfirmChannel();
    channel.sendToQueue(t.config.broker.archiveStream, Buffer.from('not avro'), { headers: { [SCHEMA_VERSION_HEADER]: CURRENT_SCHEMA_VERSION, 'sitesync-site': t.sites.paris } });
    await channel.waitForConfirms();
    await connection.close();

    const before = await tableRows(t.db('london'), 'notes');
    const outcome = await replay(t, 'london', '--from', from);
    assert.equal(outcome.code, 0, outcome.stderr);
    const at = await originProgress(t, 'paris', 'london');
    assert.equal(outcome.stdout, `replayed 0 transactions from ${t.sites.paris} (6 already there, 1 skipped: undecodable, untrusted or outside the tables), now at ${at}\n`);
    assert.deepEqual(await tableRows(t.db('london'), 'notes'), before, 'nothing changed');
    assert.deepEqual(await tableRows(t.db('london'), 'notes'), await tableRows(t.db('paris'), 'notes'));
  } finally {
    await t.cleanup();
  }
});

test('a site restored from an older copy is brought level, each row once', async () => {
  const t = await createTestSites(['paris', 'london']);
  try {
    await t.everywhere(TABLE);
    const from = new Date(Date.now() - 2000).toISOString();
    await t.start('paris');
    let london = await t.start('london');
    for (let n = 1; n <= 3; n++) await insert(t, 'paris', n, `note ${n}`);
    await waitFor('3 rows at london', async () => (await tableRows(t.db('london'), 'notes')).length === 3);
    await london.stop();
    await slotIdle(t, 'london');

    // The backup: the table, with when its rows were written, and the origin's position.
    const copied = await originProgress(t, 'paris', 'london');
    const copy = await sql<{ n: number; body: string }>(t.db('london'), `SELECT n, body FROM notes`);
    const [{ written }] = (await sql<{ written: string }>(t.db('london'), `SELECT max(pg_xact_commit_timestamp(xmin))::text AS written FROM notes`)) as [{ written: string }];

    await insert(t, 'paris', 4, 'note 4');
    await insert(t, 'paris', 4, 'note 4'); // the same row twice, on purpose
    await sql(t.db('paris'), `UPDATE notes SET body = 'changed' WHERE n = 2`);
    await sql(t.db('paris'), `DELETE FROM notes WHERE n = 1`);
    await insert(t, 'paris', 5, 'note 5');
    const latest = await tableRows(t.db('paris'), 'notes');
    london = await t.start('london');
    await waitFor('london level', async () => JSON.stringify(await tableRows(t.db('london'), 'notes')) === JSON.stringify(latest));
    await london.stop();
    await slotIdle(t, 'london');

    // The restore: the table and the origin go back to the copy. A restored server keeps who wrote each
    // row and when (origin and commit timestamp), which conflict detection reads: the rows are put back
    // as paris' writes of that time, not as new local writes.
    const restorer = new pg.Client({ connectionString: dbUrl(t.db('london')) });
    await restorer.connect();
    try {
      await restorer.query(`SELECT pg_replication_origin_session_setup($1)`, [originName(t.sites.paris!, t.sites.london!)]);
      await restorer.query('BEGIN');
      await restorer.query('DELETE FROM notes');
      for (const row of copy) await restorer.query(`INSERT INTO notes VALUES ($1, $2)`, [row.n, row.body]);
      await restorer.query(`SELECT pg_replication_origin_xact_setup($1, $2)`, [copied, written]);
      await restorer.query('COMMIT');
      await restorer.query(`SELECT pg_replication_origin_session_reset()`);
    } finally {
      await restorer.end();
    }
    await moveOrigin(t, 'paris', 'london', copied);
    assert.equal(await originProgress(t, 'paris', 'london'), copied);
    assert.notDeepEqual(await tableRows(t.db('london'), 'notes'), latest);

    const outcome = await replay(t, 'london', '--from', from);
    assert.equal(outcome.code, 0, outcome.stderr);
    const at = await originProgress(t, 'paris', 'london');
    assert.equal(outcome.stdout, `replayed 5 transactions from ${t.sites.paris} (3 already there, 0 skipped: undecodable, untrusted or outside the tables), now at ${at}\n`);
    assert.deepEqual(await tableRows(t.db('london'), 'notes'), latest, 'london equals paris, each row once');

    // Again: nothing left to do.
    const again = await replay(t, 'london', '--from', from);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, new RegExp(`^replayed 0 transactions from ${t.sites.paris} \\(8 already there, 0 skipped: undecodable, untrusted or outside the tables\\), now at ${at}\n$`));
    assert.deepEqual(await tableRows(t.db('london'), 'notes'), latest);
  } finally {
    await t.cleanup();
  }
});

test('--from and --to positions bound the range, --source limits it to one site', async () => {
  const t = await createTestSites(['paris', 'london', 'madrid']);
  try {
    await t.everywhere(TABLE);
    const from = new Date(Date.now() - 2000).toISOString();
    await t.start('paris');
    await t.start('madrid');
    const london = await t.start('london');
    for (let n = 1; n <= 6; n++) await insert(t, 'paris', n, 'paris');
    for (let n = 101; n <= 103; n++) await insert(t, 'madrid', n, 'madrid');
    await waitFor('9 rows at london', async () => (await tableRows(t.db('london'), 'notes')).length === 9);
    await london.stop();
    await slotIdle(t, 'london');
    const p = await archivedPositions(t, 'paris', 6);
    const m = await archivedPositions(t, 'madrid', 3);
    assert.equal(p.length, 6);
    assert.equal(m.length, 3);

    // London as it was after paris' second and madrid's first transaction.
    await sql(t.db('london'), `DELETE FROM notes WHERE (body = 'paris' AND n > 2) OR (body = 'madrid' AND n > 101)`);
    await moveOrigin(t, 'paris', 'london', p[1]!);
    await moveOrigin(t, 'madrid', 'london', m[0]!);
    const ns = async (): Promise<number[]> => (await sql<{ n: number }>(t.db('london'), `SELECT n FROM notes ORDER BY n`)).map((r) => r.n);
    assert.deepEqual(await ns(), [1, 2, 101]);

    // Paris' third and fourth only.
    const ranged = await replay(t, 'london', '--source', t.sites.paris!, '--from', p[1]!, '--to', p[3]!);
    assert.equal(ranged.code, 0, ranged.stderr);
    assert.equal(ranged.stdout, `replayed 2 transactions from ${t.sites.paris} (0 already there, 0 skipped: undecodable, untrusted or outside the tables), now at ${p[3]}\n`);
    assert.deepEqual(await ns(), [1, 2, 3, 4, 101], 'paris up to --to, nothing of madrid');
    assert.equal(await originProgress(t, 'madrid', 'london'), m[0]);

    // A position belongs to one source.
    const ambiguous = await replay(t, 'london', '--from', p[1]!);
    assert.equal(ambiguous.code, 2);
    assert.match(oneLine(ambiguous), /^sitesync: SITESYNC_ERR_CONFIG: a position belongs to one source site, .* add --source/);

    // Every source from a time: the rest of both.
    const all = await replay(t, 'london', '--from', from);
    assert.equal(all.code, 0, all.stderr);
    assert.match(all.stdout, new RegExp(`^replayed 2 transactions from ${t.sites.paris} \\(4 already there, 0 skipped: undecodable, untrusted or outside the tables\\), now at ${p[5]}$`, 'm'));
    assert.match(all.stdout, new RegExp(`^replayed 2 transactions from ${t.sites.madrid} \\(1 already there, 0 skipped: undecodable, untrusted or outside the tables\\), now at ${m[2]}$`, 'm'));
    assert.deepEqual(await ns(), [1, 2, 3, 4, 5, 6, 101, 102, 103]);
    assert.deepEqual(await tableRows(t.db('london'), 'notes'), await tableRows(t.db('paris'), 'notes'));
  } finally {
    await t.cleanup();
  }
});

test('a range that starts after what the site holds stops with SITESYNC_ERR_GAP; a running site is refused', async () => {
  const t = await createTestSites(['paris', 'london']);
  try {
    await t.everywhere(TABLE);
    await t.start('paris');
    let london = await t.start('london');
    await insert(t, 'paris', 1, 'one');
    await insert(t, 'paris', 2, 'two');
    await waitFor('2 rows at london', async () => (await tableRows(t.db('london'), 'notes')).length === 2);
    await london.stop();
    await slotIdle(t, 'london');
    await insert(t, 'paris', 3, 'three');
    await insert(t, 'paris', 4, 'four');
    const p = await archivedPositions(t, 'paris', 4);

    // From after the third transaction: london holds only the second.
    const late = await replay(t, 'london', '--from', p[2]!);
    assert.equal(late.code, 1);
    assert.match(
      oneLine(late),
      new RegExp(`^sitesync: SITESYNC_ERR_GAP: from site ${t.sites.paris}, transaction ${p[3]} follows ${p[2]}, but ${t.sites.london} has applied only up to ${p[1]}: replay from an earlier --from \\(the archive keeps 90 days\\)`),
    );
    assert.equal((await tableRows(t.db('london'), 'notes')).length, 2, 'nothing applied');
    assert.equal(await originProgress(t, 'paris', 'london'), p[1]);

    // What the line says to do works.
    const earlier = await replay(t, 'london', '--from', p[1]!);
    assert.equal(earlier.code, 0, earlier.stderr);
    assert.equal(earlier.stdout, `replayed 2 transactions from ${t.sites.paris} (0 already there, 0 skipped: undecodable, untrusted or outside the tables), now at ${p[3]}\n`);
    assert.deepEqual(await tableRows(t.db('london'), 'notes'), await tableRows(t.db('paris'), 'notes'));

    // While london runs.
    london = await t.start('london');
    const running = await replay(t, 'london', '--from', p[0]!);
    assert.equal(running.code, 1);
    assert.match(oneLine(running), new RegExp(`stop "sitesync run --site ${t.sites.london}" first`));
    await london.stop();
    await slotIdle(t, 'london');

    // Another session holding the origin (a run whose capture is down, or anything else applying).
    const holder = new pg.Client({ connectionString: dbUrl(t.db('london')) });
    await holder.connect();
    try {
      await holder.query(`SELECT pg_replication_origin_session_setup($1)`, [originName(t.sites.paris!, t.sites.london!)]);
      const held = await replay(t, 'london', '--from', p[0]!);
      assert.equal(held.code, 1);
      assert.match(oneLine(held), new RegExp(`replication origin with ID \\d+ is already active for PID \\d+\\): stop "sitesync run --site ${t.sites.london}" first`));
    } finally {
      await holder.end();
    }
    assert.deepEqual(await tableRows(t.db('london'), 'notes'), await tableRows(t.db('paris'), 'notes'));
  } finally {
    await t.cleanup();
  }
});

test('a long replay reports its progress, applies large transactions part by part, and run then skips it all', async () => {
  const t = await createTestSites(['paris', 'london'], { capture: { maxMessageBytes: 4096, statusIntervalSeconds: 0.2, heartbeatSeconds: 2 } });
  try {
    await t.everywhere(TABLE);
    const from = new Date(Date.now() - 2000).toISOString();
    await t.start('paris');
    let london = await t.start('london');
    await insert(t, 'paris', 0, 'before');
    await waitFor('1 row at london', async () => (await tableRows(t.db('london'), 'notes')).length === 1);
    await london.stop();
    await slotIdle(t, 'london');

    // 1,100 small transactions, then one that travels in parts.
    await sql(t.db('paris'), `DO $$ BEGIN FOR i IN 1..1100 LOOP INSERT INTO notes VALUES (i, 'small'); COMMIT; END LOOP; END $$`);
    await sql(t.db('paris'), `INSERT INTO notes SELECT 2000, repeat('x', 200) FROM generate_series(1, 100)`);
    const p = await archivedPositions(t, 'paris', 1102);
    const parts = await waitFor('the large transaction archived in parts', async () => {
      const connection = await amqp.connect(BROKER);
      try {
        const channel = await connection.createChannel();
        await channel.prefetch(500);
        let count = 0;
        let last = Date.now();
        await channel.consume(t.config.broker.archiveStream, (m) => {
          if (!m) return;
          last = Date.now();
          channel.ack(m);
          if (m.properties.headers?.['sitesync-part'] !== undefined) count++;
        }, { arguments: { 'x-stream-offset': 'first' } });
        while (Date.now() - last < 500) await sleep(50);
        return count > 1 ? count : undefined;
      } finally {
        await connection.close();
      }
    });
    assert.ok(parts > 1);

    const outcome = await replay(t, 'london', '--from', from);
    assert.equal(outcome.code, 0, outcome.stderr);
    const lines = outcome.stdout.trimEnd().split('\n');
    // One line per ~1000 transactions (counted per message, so a little past 1000).
    const progress = new RegExp(`^replaying: (\\d+) transactions read; from ${t.sites.paris} (\\d+) applied, 1 already there, at ${LSN} \\(committed \\d{4}-`).exec(lines[0]!);
    assert.ok(progress, lines[0]!);
    assert.ok(Number(progress[1]) >= 1000 && Number(progress[1]) < 1101, lines[0]!);
    assert.equal(Number(progress[2]), Number(progress[1]) - 1);
    assert.equal(lines[1], `replayed 1101 transactions from ${t.sites.paris} (1 already there, 0 skipped: undecodable, untrusted or outside the tables), now at ${p[p.length - 1]}`);
    assert.equal(lines.length, 2);
    const paris = await tableRows(t.db('paris'), 'notes');
    assert.equal(paris.length, 1 + 1100 + 100);
    assert.deepEqual(await tableRows(t.db('london'), 'notes'), paris);

    // london's queue still holds all of it: its run acknowledges every message as a duplicate.
    london = await t.start('london');
    await waitFor('london\'s queue drained', async () => {
      const connection = await amqp.connect(BROKER);
      try {
        const channel = await connection.createChannel();
        return (await channel.checkQueue(siteQueue(t.sites.london!))).messageCount === 0;
      } finally {
        await connection.close();
      }
    }, 60_000);
    assert.deepEqual(await tableRows(t.db('london'), 'notes'), paris, 'every message of the queue was a duplicate');
    await sql(t.db('paris'), `INSERT INTO notes VALUES (3000, 'after')`);
    await waitFor('the next one applies', async () => (await tableRows(t.db('london'), 'notes')).length === paris.length + 1);
    assert.deepEqual(await tableRows(t.db('london'), 'notes'), await tableRows(t.db('paris'), 'notes'));
  } finally {
    await t.cleanup();
  }
});
