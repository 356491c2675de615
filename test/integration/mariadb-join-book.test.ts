/**
 * The join book at a MariaDB site (connectors/mariadb/mariadb-join-book.ts), against a private MariaDB:
 * a donor's hold and a joiner's join go through their states as PostgreSQL's book takes them, a second
 * join is refused in one line, two last chunks noted at once both stay, times are UTC, a user that may only
 * read the bookkeeping lists the joins (as `sitesync status` does, and it shows them), and an unreachable
 * server is one line.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { MariaDbJoinBook } from '../../connectors/mariadb/mariadb-join-book.ts';
import { CONNECTORS } from '../../connectors/index.ts';
import { joinSnapshotsApplied } from '../../src/apply/join-book.ts';
import { collectStatus, formatStatus } from '../../src/cli/status-command.ts';
import { parseConfig } from '../../src/config/load-config.ts';
import { comparePositions } from '../../src/events/position.ts';
import { startPrivateMariaDb, type PrivateMariaDb } from '../helpers/private-mariadb.ts';
import { BROKER, dbUrl } from '../helpers/test-sites.ts';

let db: PrivateMariaDb;
const books: MariaDbJoinBook[] = [];

function book(site: string, url = db.url()): MariaDbJoinBook {
  const b = new MariaDbJoinBook({ site, url });
  books.push(b);
  return b;
}

before(async () => {
  db = await startPrivateMariaDb();
});

after(async () => {
  for (const b of books) await b.close();
  await db?.destroy();
});

/** Within a minute of now, the clocks of this process and the server both read as UTC. */
function recent(at: Date): boolean {
  return Math.abs(at.getTime() - Date.now()) < 60_000;
}

test("a donor's hold: requested, holding with the positions, released; a second join's hold is refused in one line", async () => {
  const donor = book('paris');
  assert.equal(await donor.hold(), null, 'no table yet: no hold');
  await donor.requestHold('j1', 'madrid', ['s1', 's2']);
  await donor.requestHold('j1', 'madrid', ['s1', 's2']); // again: nothing changes
  const requested = await donor.hold();
  assert.deepEqual({ ...requested, requestedAt: undefined }, { joinId: 'j1', joiner: 'madrid', state: 'requested', positions: {}, snapshotIds: ['s1', 's2'], requestedAt: undefined });
  assert.ok(recent(requested!.requestedAt), `requested at ${requested!.requestedAt.toISOString()}`);
  await assert.rejects(donor.requestHold('j2', 'rome', ['s3']), (error: Error) => {
    assert.match(error.message, /^this site already holds for join j1 of site madrid; let it finish .* or cancel it with sitesync join --cancel$/);
    assert.equal(error.message.split('\n').length, 1);
    return true;
  });
  await donor.confirmHold('j1', { london: '0/16B3748', rome: '00000001000000000000000A' });
  const holding = await donor.hold();
  assert.equal(holding?.state, 'holding');
  assert.deepEqual(holding?.positions, { london: '0/16B3748', rome: '00000001000000000000000A' });
  await donor.confirmHold('j1', {}); // only a requested hold is confirmed
  assert.deepEqual((await donor.hold())?.positions, { london: '0/16B3748', rome: '00000001000000000000000A' });
  await donor.releaseHold('j1', 'every snapshot was read');
  assert.equal(await donor.hold(), null);
  const [listed] = await donor.list();
  assert.equal(listed?.state, 'released');
  assert.ok(listed?.endedAt && recent(listed.endedAt));
});

test("a joiner's join: snapshotting, last chunks noted (two at once both stay), catching up, done", async () => {
  const joiner = book('madrid');
  await joiner.beginJoin({ joinId: 'j1', donor: 'paris', snapshotIds: ['s1', 's2'], positions: {} });
  // The command records the join again once the donor holds, with the donor's positions.
  await joiner.beginJoin({ joinId: 'j1', donor: 'paris', snapshotIds: ['s1', 's2'], positions: { london: '0/16B3748' } });
  const join = await joiner.join();
  assert.deepEqual({ ...join, startedAt: undefined }, { joinId: 'j1', donor: 'paris', state: 'snapshotting', snapshotIds: ['s1', 's2'], lastChunks: {}, positions: { london: '0/16B3748' }, startedAt: undefined });
  assert.ok(recent(join!.startedAt));
  await assert.rejects(joiner.beginJoin({ joinId: 'j9', donor: 'london', snapshotIds: ['s9'], positions: {} }), (error: Error) => {
    assert.equal(error.message, 'this site is already joining (join j1, from paris); let it finish or cancel it with sitesync join --cancel');
    return true;
  });
  // Two processes' pools, each noting one snapshot's last chunk at the same moment: both keys stay.
  const other = book('madrid');
  await Promise.all([joiner.noteLastChunk('j1', 's1', '0/3000060'), other.noteLastChunk('j1', 's2', '0/3000100')]);
  const noted = (await joiner.join())!;
  assert.deepEqual(noted.lastChunks, { s1: '0/3000060', s2: '0/3000100' });
  assert.equal(joinSnapshotsApplied(noted, '0/30000F0', comparePositions), false, 'not yet past the second');
  assert.equal(joinSnapshotsApplied(noted, '0/3000100', comparePositions), true);
  await joiner.beginCatchUp('j1');
  assert.equal((await joiner.join())?.state, 'catching-up');
  await joiner.finishJoin('j1');
  assert.equal(await joiner.join(), null);
  const [done] = (await joiner.list()).filter((j) => j.role === 'joiner');
  assert.deepEqual({ ...done, startedAt: undefined, endedAt: undefined }, { joinId: 'j1', role: 'joiner', peer: 'paris', state: 'done', snapshotIds: ['s1', 's2'], startedAt: undefined, endedAt: undefined });
});

test('cancel ends what is open here (both roles) and says how many; a user that may only read lists them, and status shows them', async () => {
  const site = `m_${randomBytes(3).toString('hex')}`;
  const b = book(site);
  await b.requestHold('j3', 'rome', ['s5']);
  await b.beginJoin({ joinId: 'j4', donor: 'london', snapshotIds: ['s6'], positions: {} });
  // What `sitesync status` reads with the monitoring user: SELECT only, no CREATE.
  await db.query("CREATE USER 'watcher'@'127.0.0.1'");
  await db.query("GRANT SELECT ON sitesync.* TO 'watcher'@'127.0.0.1'");
  const watcherUrl = `mariadb://watcher@127.0.0.1:${db.port}/`;
  const reading = book(site, watcherUrl);
  assert.deepEqual((await reading.list()).slice(0, 2).map((j) => [j.joinId, j.role, j.state]).sort(), [['j3', 'donor', 'requested'], ['j4', 'joiner', 'snapshotting']]);
  const config = parseConfig({
    broker: { url: BROKER, exchange: `sitesync.test.${site}`, archiveStream: `sitesync.test.${site}.archive` },
    // A second site, as a configuration needs: its database does not exist (status says so for it alone).
    sites: { [site]: { database: { kind: 'mariadb', url: db.url(), monitorUrl: watcherUrl } }, [`p_${site}`]: { postgres: dbUrl(`sitesync_test_absent_${site}`) } },
  });
  const shown = formatStatus(await collectStatus(config, CONNECTORS));
  assert.match(shown, /join j3: donor for rome \(requested: applying nothing from other sites until its snapshots are read\)/);
  assert.match(shown, /join j4: joining from london \(snapshotting\)/);
  assert.equal(await b.cancel('cancelled by sitesync join --cancel'), 2);
  assert.equal(await b.hold(), null);
  assert.equal(await b.join(), null);
  assert.equal(await b.cancel('again'), 0);
});

test('an unreachable server is one line naming the site and the fix, without the password', async () => {
  const gone = book('lyon', 'mariadb://root:s3cret@127.0.0.1:1/');
  await assert.rejects(gone.hold(), (error: Error) => {
    assert.match(error.message, /^MariaDB of site lyon \(.*\) is unreachable or went away .*; start it or fix the site's MariaDB URL/);
    assert.equal(error.message.split('\n').length, 1);
    assert.doesNotMatch(error.message, /s3cret/);
    return true;
  });
});
