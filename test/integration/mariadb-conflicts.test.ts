/**
 * Conflict detection at a MariaDB site, against a private MariaDB (binary log on): the sink driven directly,
 * with the site's capture running (sharing a RowWriterClock, as connectors/mariadb/index.ts shares it) where
 * local writes matter. A change from another site for a row this site wrote meanwhile (its write not covered
 * by the change's causal context) is a conflict, resolved by each policy as the PostgreSQL sink resolves
 * it; covered, or a row sitesync never saw written, it is none; an insert of a key that is there, a delete
 * racing an update; and the wait for capture: a local write committed just before the remote change, not
 * yet read by capture, is still seen.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import mysql from 'mysql2/promise';
import { pino } from 'pino';
import { MariaDbSink } from '../../connectors/mariadb/mariadb-sink.ts';
import { MariaDbSource } from '../../connectors/mariadb/mariadb-source.ts';
import { rowKey, RowWriterClock } from '../../connectors/mariadb/row-writers.ts';
import type { ConflictPolicy } from '../../src/apply/conflict-policy.ts';
import type { SourceSession } from '../../src/apply/sink.ts';
import type { ResolvedConflict } from '../../src/connector.ts';
import { transactionId, type Change, type ColumnInfo, type RelationInfo, type SeenSites, type Transaction } from '../../src/events/transaction.ts';
import { parseKind } from '../../src/events/value-kind.ts';
import { startPrivateMariaDb, type PrivateMariaDb } from '../helpers/private-mariadb.ts';

const silent = pino({ level: 'silent' });
const SITE = 'paris';

let db: PrivateMariaDb;
let admin: mysql.Connection;
let clock: RowWriterClock;
let source: MariaDbSource;
let sink: MariaDbSink;
let policy: ConflictPolicy = { policy: 'last-writer-wins', priority: [] };
const reported: ResolvedConflict[] = [];
const sessions = new Map<string, SourceSession>();

function col(name: string, kind: string, key = false): ColumnInfo {
  return { name, key, kind: parseKind(kind), native: { name: kind, id: 0, modifier: -1 } };
}

const items: RelationInfo = { schema: 'app', table: 'items', replicaIdentity: 'd', columns: [col('id', 'int32', true), col('note', 'string')] };

let counter = 0x1000;
/** A transaction of `site` (a PostgreSQL site: 16 hex digits) committed at `micros`. */
function remote(site: string, micros: bigint, changes: Change[], seen: SeenSites = {}): Transaction {
  counter += 0x10;
  const position = counter.toString(16).toUpperCase().padStart(16, '0');
  return { id: transactionId(site, position), site, position, commitTimeMicros: micros, sourceTxId: String(counter), seen, changes };
}

const ins = (id: number, note: string): Change => ({ op: 'insert', relation: items, newRow: { values: [String(id), note], unchanged: [] } });
const upd = (id: number, note: string): Change => ({ op: 'update', relation: items, oldRow: null, newRow: { values: [String(id), note], unchanged: [] } });
const del = (id: number): Change => ({ op: 'delete', relation: items, oldRow: { values: [String(id), null], unchanged: [] } });

async function session(site: string): Promise<SourceSession> {
  let s = sessions.get(site);
  if (!s) {
    s = await sink.openSession(site);
    sessions.set(site, s);
  }
  return s;
}

async function apply(tx: Transaction): Promise<void> {
  await (await session(tx.site)).apply([tx]);
}

/** A write as this site's application makes it (one transaction). */
async function local(text: string): Promise<void> {
  await admin.query(text);
}

async function note(id: number): Promise<string | null | undefined> {
  const [rows] = await admin.query<mysql.RowDataPacket[]>('SELECT note FROM app.items WHERE id = ?', [id]);
  return rows[0] === undefined ? undefined : (rows[0].note as string | null);
}

const key = (id: number) => rowKey('app.items', [{ name: 'id', kind: parseKind('int32'), text: String(id) }]);

/** row_writers' entry for a row of app.items. */
async function writer(id: number): Promise<{ site: string; micros: bigint; localPosition: string | null } | null> {
  const k = key(id);
  const [rows] = await admin.query<mysql.RowDataPacket[]>('SELECT site, commit_time_micros, local_position FROM sitesync.row_writers WHERE table_name = ? AND key_hash = ?', [k.table, k.hash]);
  const r = rows[0];
  return r ? { site: String(r.site), micros: BigInt(r.commit_time_micros), localPosition: r.local_position === null ? null : String(r.local_position) } : null;
}

/** Waits until capture has recorded this site's last write of the row, and returns its commit time. */
async function recordedLocally(id: number): Promise<bigint> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const w = await writer(id);
    if (w?.site === SITE) return w.micros;
    if (Date.now() > deadline) throw new Error(`capture never recorded the local write of row ${id} (entry: ${JSON.stringify(w, (_, v) => (typeof v === 'bigint' ? String(v) : v))})`);
    await sleep(20);
  }
}

interface Logged {
  kind: string;
  key: unknown;
  remote_site: string;
  local_site: string | null;
  policy: string;
  winner: string;
  resolution: string;
}

/** The conflicts logged for a row, oldest first. */
async function logged(id: number): Promise<Logged[]> {
  const [rows] = await admin.query<mysql.RowDataPacket[]>(
    "SELECT kind, `key`, remote_site, local_site, policy, winner, resolution FROM sitesync.conflicts WHERE table_name = 'app.items' AND JSON_VALUE(`key`, '$.id') = ? ORDER BY id",
    [String(id)],
  );
  return rows.map((r) => ({ ...(r as Logged), key: typeof r.key === 'string' ? JSON.parse(r.key) : r.key }));
}

const SECOND = 1_000_000n;

/** Waits until capture has recorded everything up to the binlog's end as it is now. */
async function caughtUp(): Promise<void> {
  const [[status]] = await admin.query<mysql.RowDataPacket[]>('SHOW MASTER STATUS');
  const end = { file: String(status!.File), offset: Number(status!.Position) };
  const deadline = Date.now() + 20_000;
  for (;;) {
    const through = clock.recordedThrough;
    if (through && (through.file > end.file || (through.file === end.file && through.offset >= end.offset))) return;
    if (Date.now() > deadline) throw new Error(`capture did not catch up with ${end.file}:${end.offset} (at ${JSON.stringify(through)})`);
    await sleep(20);
  }
}

before(async () => {
  db = await startPrivateMariaDb();
  admin = await mysql.createConnection({ host: '127.0.0.1', port: db.port, user: 'root', supportBigNumbers: true, bigNumberStrings: true });
  await admin.query('CREATE DATABASE app');
  await admin.query('CREATE TABLE app.items (id INT PRIMARY KEY, note VARCHAR(100)) ENGINE=InnoDB');
  // Rows written before this site captured: sitesync never saw who wrote them.
  await admin.query("INSERT INTO app.items VALUES (1, 'before'), (2, 'before')");
  clock = new RowWriterClock(SITE);
  source = new MariaDbSource({ site: SITE, url: db.url(), tables: ['app.items'], maxPartBytes: 1 << 20, logger: silent, heartbeatSeconds: 1, rowWriters: clock });
  await source.prepare();
  await source.open({ transaction: () => undefined, skipped: () => undefined, idle: () => undefined });
  sink = new MariaDbSink({ site: SITE, url: db.url(), logger: silent, sourceKindOf: () => 'postgres', rowWriters: clock, conflictPolicy: () => policy, onConflict: (c) => reported.push(c) });
});

after(async () => {
  for (const s of sessions.values()) await s.close().catch(() => undefined);
  await sink?.close();
  await source?.end().catch(() => undefined);
  await admin?.end();
  await db?.destroy();
});

describe('not a conflict', () => {
  test('a row sitesync never saw written: the change applies, nothing is logged', async () => {
    await apply(remote('london', 1n * SECOND, [upd(1, 'london')]));
    assert.equal(await note(1), 'london');
    assert.deepEqual(await logged(1), []);
    const w = await writer(1);
    assert.equal(w?.site, 'london', 'the applied write is recorded as the source site’s');
    assert.equal(w?.micros, 1n * SECOND);
    assert.equal(w?.localPosition, null);
  });

  test('a local write the change had seen (covered by its causal context): the change follows it', async () => {
    await local("UPDATE app.items SET note = 'paris' WHERE id = 2");
    const at = await recordedLocally(2);
    await apply(remote('london', at + 5n * SECOND, [upd(2, 'london after paris')], { [SITE]: at }));
    assert.equal(await note(2), 'london after paris');
    assert.deepEqual(await logged(2), []);
    // A change from the site that wrote last follows it too, whatever its context.
    await apply(remote('london', at + 6n * SECOND, [upd(2, 'london again')]));
    assert.equal(await note(2), 'london again');
    assert.deepEqual(await logged(2), []);
  });

  test("capture records this site's own writes, never the sink's", async () => {
    await local("INSERT INTO app.items VALUES (3, 'paris')");
    await recordedLocally(3);
    const w = await writer(3);
    assert.match(w!.localPosition!, /^[0-9A-F]{24}$/);
    await apply(remote('london', 10n * SECOND, [ins(4, 'london')]));
    await sleep(500); // capture reads the sink's transaction too: it must leave the entry alone
    assert.equal((await writer(4))?.site, 'london');
  });
});

describe('a remote change concurrent with a local write', () => {
  /** Row `id` written at this site (recorded), and a concurrent change from london `offset` seconds later. */
  async function race(id: number, offsetSeconds: bigint, change: (id: number) => Change): Promise<{ local: bigint; remote: bigint }> {
    await local(`INSERT INTO app.items VALUES (${id}, 'paris')`);
    const at = await recordedLocally(id);
    const micros = at + offsetSeconds * SECOND;
    await apply(remote('london', micros, [change(id)], { [SITE]: at - 10n * SECOND }));
    return { local: at, remote: micros };
  }

  test('last-writer-wins: the later commit wins, at its time', async () => {
    policy = { policy: 'last-writer-wins', priority: [] };
    reported.length = 0;
    await race(10, 2n, (id) => upd(id, 'london later'));
    assert.equal(await note(10), 'london later');
    await race(11, -2n, (id) => upd(id, 'london earlier'));
    assert.equal(await note(11), 'paris');
    assert.deepEqual(
      [...(await logged(10)), ...(await logged(11))].map((c) => [c.kind, c.key, c.remote_site, c.local_site, c.policy, c.winner, c.resolution]),
      [
        ['update_origin_differs', { id: '10' }, 'london', SITE, 'last-writer-wins', 'remote', 'applied'],
        ['update_origin_differs', { id: '11' }, 'london', SITE, 'last-writer-wins', 'local', 'skipped'],
      ],
    );
    assert.deepEqual(reported, [
      { source: 'london', kind: 'update_origin_differs', table: 'app.items', resolution: 'apply' },
      { source: 'london', kind: 'update_origin_differs', table: 'app.items', resolution: 'skip' },
    ]);
    assert.equal((await writer(10))?.site, 'london', 'the winner is now the row’s writer');
    assert.equal((await writer(11))?.site, SITE, 'a skipped change leaves the writer as it was');
  });

  test('last-writer-wins: the same time, the site name decides', async () => {
    policy = { policy: 'last-writer-wins', priority: [] };
    await race(12, 0n, (id) => upd(id, 'london same second'));
    assert.equal(await note(12), 'paris', 'paris > london');
  });

  test('site-priority: the site listed first wins though earlier', async () => {
    policy = { policy: 'site-priority', priority: ['london', SITE] };
    await race(13, -5n, (id) => upd(id, 'london ranks first'));
    assert.equal(await note(13), 'london ranks first');
    policy = { policy: 'site-priority', priority: [SITE, 'london'] };
    await race(14, 5n, (id) => upd(id, 'london ranks second'));
    assert.equal(await note(14), 'paris');
    assert.deepEqual((await logged(13)).map((c) => [c.policy, c.winner]), [['site-priority', 'remote']]);
    assert.deepEqual((await logged(14)).map((c) => [c.policy, c.winner]), [['site-priority', 'local']]);
  });

  test('keep-local: the row stays as this site has it', async () => {
    policy = { policy: 'keep-local', priority: [] };
    await race(15, 5n, (id) => upd(id, 'london'));
    assert.equal(await note(15), 'paris');
    assert.deepEqual((await logged(15)).map((c) => [c.kind, c.winner, c.resolution]), [['update_origin_differs', 'local', 'skipped']]);
  });

  test('an insert of a key this site inserted: insert_exists, by the policy', async () => {
    policy = { policy: 'last-writer-wins', priority: [] };
    await local("INSERT INTO app.items VALUES (20, 'paris'), (21, 'paris')");
    const at = await recordedLocally(21);
    // One batch of three inserts: 19 is new (no lookup), 20 and 21 are there.
    await apply(remote('london', at + 3n * SECOND, [ins(19, 'london'), ins(20, 'london'), ins(21, 'london')]));
    assert.deepEqual([await note(19), await note(20), await note(21)], ['london', 'london', 'london']);
    await local("INSERT INTO app.items VALUES (22, 'paris')");
    const at22 = await recordedLocally(22);
    await apply(remote('london', at22 - 3n * SECOND, [ins(22, 'london')]));
    assert.equal(await note(22), 'paris');
    assert.deepEqual((await logged(19)).length, 0);
    assert.deepEqual((await logged(20)).map((c) => [c.kind, c.local_site, c.winner, c.resolution]), [['insert_exists', SITE, 'remote', 'applied']]);
    assert.deepEqual((await logged(22)).map((c) => [c.kind, c.local_site, c.winner, c.resolution]), [['insert_exists', SITE, 'local', 'skipped']]);
  });

  test('a delete racing an update: the delete wins either way (keep-local: where it was made)', async () => {
    policy = { policy: 'last-writer-wins', priority: [] };
    // Updated here, deleted at london (even earlier): gone.
    await race(30, -5n, (id) => del(id));
    assert.equal(await note(30), undefined);
    assert.deepEqual((await logged(30)).map((c) => [c.kind, c.winner, c.resolution]), [['delete_origin_differs', 'remote', 'applied']]);
    // Deleted here, updated at london (later): stays gone.
    await admin.query("INSERT INTO app.items VALUES (31, 'seed')");
    await local('DELETE FROM app.items WHERE id = 31');
    await recordedLocally(31);
    await apply(remote('london', 4_000_000_000n * SECOND, [upd(31, 'london')]));
    assert.equal(await note(31), undefined);
    assert.deepEqual((await logged(31)).map((c) => [c.kind, c.local_site, c.winner, c.resolution]), [['update_missing', null, 'none', 'skipped']]);
    // keep-local: the update made here stays.
    policy = { policy: 'keep-local', priority: [] };
    await race(32, 5n, (id) => del(id));
    assert.equal(await note(32), 'paris');
  });
});

describe('the wait for capture', () => {
  test('a local write committed just before the remote change, not yet read by capture, is still seen', async () => {
    policy = { policy: 'last-writer-wins', priority: [] };
    // Written last by london (so that, were the local write below missed, london's change would simply follow).
    await apply(remote('london', 20n * SECOND, [ins(40, 'seed')]));
    await caughtUp();
    source.pause(); // capture reads nothing more for now
    try {
      await local("UPDATE app.items SET note = 'paris' WHERE id = 40");
      const [[now]] = await admin.query<mysql.RowDataPacket[]>('SELECT UNIX_TIMESTAMP() AS s');
      // Earlier than the local write: it loses, if the sink knows of that write.
      let settled = false;
      const applying = apply(remote('london', (BigInt(now!.s) - 30n) * SECOND, [upd(40, 'london')])).finally(() => (settled = true));
      await sleep(800);
      assert.equal(settled, false, 'the sink waits for capture');
      assert.equal((await writer(40))?.site, 'london', 'the local write is not recorded yet');
      assert.equal(clock.capturing, true);
      source.resume();
      await applying;
    } finally {
      source.resume();
    }
    assert.equal(await note(40), 'paris');
    assert.deepEqual((await logged(40)).map((c) => [c.kind, c.local_site, c.winner]), [['update_origin_differs', SITE, 'local']]);
  });

  test('past its bound the wait is a transient error naming the site; retried once capture caught up, it applies', async () => {
    const impatient = new MariaDbSink({ site: SITE, url: db.url(), logger: silent, sourceKindOf: () => 'postgres', rowWriters: clock, captureWaitMs: 300, conflictPolicy: () => policy });
    const madrid = await impatient.openSession('madrid');
    try {
      await admin.query("INSERT INTO app.items VALUES (41, 'seed')");
      const at = await recordedLocally(41);
      source.pause();
      await local("UPDATE app.items SET note = 'paris' WHERE id = 41");
      const tx = remote('madrid', at + 60n * SECOND, [upd(41, 'madrid')]);
      await assert.rejects(madrid.apply([tx]), (error: unknown) => {
        assert.equal(impatient.classify(error), 'transient');
        assert.match((error as Error).message, /^capture of site paris is behind; conflict detection waits for it/);
        return true;
      });
      source.resume();
      await madrid.apply([tx]);
      assert.equal(await note(41), 'madrid', 'later: it wins');
      assert.deepEqual((await logged(41)).map((c) => [c.kind, c.remote_site, c.local_site, c.winner]), [['update_origin_differs', 'madrid', SITE, 'remote']]);
    } finally {
      source.resume();
      await madrid.close();
      await impatient.close();
    }
  });

  test('without a source at this site, the sink decides from row_writers alone (no wait)', async () => {
    const alone = new MariaDbSink({ site: 'lyon', url: db.url(), logger: silent, sourceKindOf: () => 'postgres', rowWriters: new RowWriterClock('lyon'), conflictPolicy: () => policy });
    const s = await alone.openSession('london');
    try {
      source.pause(); // were it waiting on paris's capture, it would hang
      await s.apply([remote('london', 5_000_000_000n * SECOND, [upd(41, 'from lyon')])]);
      assert.equal(await note(41), 'from lyon', 'the entry says madrid wrote it, london had not seen it, and london is later');
    } finally {
      source.resume();
      await s.close();
      await alone.close();
    }
  });
});

describe('a snapshot read that carries its writer (a site joining from a donor)', () => {
  const read = (id: number, text: string, writer?: { site: string; commitTimeMicros: bigint }): Change =>
    writer ? { op: 'read', relation: items, newRow: { values: [String(id), text], unchanged: [] }, writer } : { op: 'read', relation: items, newRow: { values: [String(id), text], unchanged: [] } };
  /** A chunk of madrid's snapshot sent to this site alone, committed at `micros`, having applied london up to `londonSeen`. */
  function chunk(micros: bigint, londonSeen: bigint, changes: Change[]): Transaction {
    const tx = remote('madrid', micros, changes, { london: londonSeen });
    return { ...tx, snapshot: { id: 's-join', table: 'app.items', chunk: 0, last: true, targets: [SITE] } };
  }

  /** row_writers' whole entry for a row of app.items, seen included. */
  async function entry(id: number): Promise<{ site: string; micros: bigint; localPosition: string | null; seen: string } | null> {
    const k = key(id);
    const [rows] = await admin.query<mysql.RowDataPacket[]>('SELECT site, commit_time_micros, local_position, seen FROM sitesync.row_writers WHERE table_name = ? AND key_hash = ?', [k.table, k.hash]);
    const r = rows[0];
    return r ? { site: String(r.site), micros: BigInt(r.commit_time_micros), localPosition: r.local_position === null ? null : String(r.local_position), seen: String(r.seen) } : null;
  }

  test("each row is recorded as its writer's at the donor; one without a writer as the snapshot's", async () => {
    policy = { policy: 'last-writer-wins', priority: [] };
    const london = 6_000_000_000n * SECOND;
    const snapshotAt = london + 100n * SECOND;
    await apply(chunk(snapshotAt, london, [read(50, 'london at madrid', { site: 'london', commitTimeMicros: london }), read(51, 'madrid'), read(52, 'london at madrid', { site: 'london', commitTimeMicros: london })]));
    assert.deepEqual([await note(50), await note(51), await note(52)], ['london at madrid', 'madrid', 'london at madrid']);
    assert.deepEqual(await entry(50), { site: 'london', micros: london, localPosition: null, seen: '{}' });
    assert.deepEqual(await entry(51), { site: 'madrid', micros: snapshotAt, localPosition: null, seen: '{"london":"6000000000000000"}' });
    assert.deepEqual(await logged(50), []);
  });

  test('a later change from a site that had not seen the row\'s writer is decided against that writer, not the snapshot', async () => {
    policy = { policy: 'last-writer-wins', priority: [] };
    const london = 6_000_000_000n * SECOND;
    // rome wrote row 50 after london's write (but before madrid's snapshot read it), not having seen it:
    // concurrent with london's write, and later, so it wins, as it did at madrid.
    await apply(remote('rome', london + 10n * SECOND, [upd(50, 'rome')]));
    assert.equal(await note(50), 'rome');
    assert.deepEqual((await logged(50)).map((c) => [c.kind, c.remote_site, c.local_site, c.winner, c.resolution]), [['update_origin_differs', 'rome', 'london', 'remote', 'applied']]);
    // london's own next write of row 52 follows its earlier one: no conflict (the snapshot's commit time,
    // later than it, would have thrown it away).
    await apply(remote('london', london + 20n * SECOND, [upd(52, 'london again')]));
    assert.equal(await note(52), 'london again');
    assert.deepEqual(await logged(52), []);
    assert.equal((await writer(52))?.site, 'london');
  });
});
