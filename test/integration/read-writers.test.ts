/**
 * A snapshot addressed to chosen sites (a site joining) carries each row's last writer at the source, and
 * the joining site decides later conflicts on the row against that writer, not against the snapshot
 * transaction that wrote it there: the PostgreSQL table reader reads writers (commit timestamp and
 * replication origin of each row version), snapshot-chunks puts them on addressed chunks, and the sink
 * records them in sitesync.read_writers for as long as the row version is the one the snapshot wrote.
 * Against the local PostgreSQL 15 (track_commit_timestamp on); transactions are applied to the sink directly.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { PostgresSink } from '../../connectors/postgres/postgres-sink.ts';
import { PostgresTableReader } from '../../connectors/postgres/postgres-table-reader.ts';
import type { SourceSession } from '../../src/apply/sink.ts';
import { SnapshotChunks } from '../../src/capture/snapshot-chunks.ts';
import type { SnapshotControl } from '../../src/capture/snapshot-control.ts';
import { encodeMarker, SNAPSHOT_MARKER_PREFIX, type SnapshotMarker } from '../../src/capture/snapshot-marker.ts';
import { originName } from '../../src/config/names.ts';
import type { Change, RelationInfo, RowWriter, SeenSites, SnapshotTag, Transaction } from '../../src/events/transaction.ts';
import { parseKind } from '../../src/events/value-kind.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { dbUrl, sql } from '../helpers/test-sites.ts';

const suffix = randomBytes(3).toString('hex');
const a = `a_${suffix}`;
const b = `b_${suffix}`;
const n = `n_${suffix}`;
const logger = createLogger('silent');
const SECOND = 1_000_000n;

const relation: RelationInfo = {
  schema: 'public',
  table: 'accounts',
  replicaIdentity: 'd',
  columns: [
    { name: 'id', kind: parseKind('int32'), native: { name: 'int4', id: 23, modifier: -1 }, key: true },
    { name: 'note', kind: parseKind('string'), native: { name: 'text', id: 25, modifier: -1 }, key: false },
  ],
};

after(async () => {
  await sql('postgres', 'SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin WHERE roname LIKE $1', [`%${suffix}%`]);
});

/** The commit time (microseconds) of the transaction that wrote a row's current version. */
async function commitMicros(db: string, table: string, id: number): Promise<bigint> {
  const [r] = await sql<{ micros: string }>(db, `SELECT (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000)::int8::text AS micros FROM ${table} WHERE id = $1`, [id]);
  return BigInt(r!.micros);
}

/** Writes `text` in a transaction tagged with replication origin `origin`, committed at `at` (ISO). */
async function writeAsOrigin(db: string, origin: string, at: string, text: string): Promise<void> {
  const client = new pg.Client({ connectionString: dbUrl(db) });
  await client.connect();
  try {
    await client.query('SELECT pg_replication_origin_create($1) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = $1)', [origin]);
    await client.query('SELECT pg_replication_origin_session_setup($1)', [origin]);
    await client.query('BEGIN');
    await client.query(text);
    await client.query(`SELECT pg_replication_origin_xact_setup('0/1', $1::timestamptz)`, [at]);
    await client.query('COMMIT');
    await client.query('SELECT pg_replication_origin_session_reset()');
  } finally {
    await client.end();
  }
}

describe('the PostgreSQL table reader', () => {
  const db = `sitesync_test_rw_reader_${suffix}`;
  let reader: PostgresTableReader;

  before(async () => {
    await sql('postgres', `CREATE DATABASE ${db}`);
    await sql(db, 'CREATE TABLE accounts (id int PRIMARY KEY, note text)');
    await sql(db, `INSERT INTO accounts VALUES (1, 'local')`);
    // Row 2 came from site b (sitesync applied it here, at a's database, tagged with b's origin).
    await writeAsOrigin(db, originName(b, a), '2020-01-02T03:04:05.123456Z', `INSERT INTO accounts VALUES (2, 'from b')`);
    // Row 3 was written through an origin that is not sitesync's: its writer is unknown.
    await writeAsOrigin(db, `other_${suffix}`, '2021-01-01T00:00:00Z', `INSERT INTO accounts VALUES (3, 'other origin')`);
    // Row 4 came from b applied at another site (an origin to another site, on the same server): unknown here.
    await writeAsOrigin(db, originName(b, `z_${suffix}`), '2022-01-01T00:00:00Z', `INSERT INTO accounts VALUES (4, 'not to a')`);
    await sql(db, `INSERT INTO accounts VALUES (5, 'local again')`);
    reader = await PostgresTableReader.open({ site: a, url: dbUrl(db), consistent: false });
  });

  after(async () => {
    await reader?.close();
    await sql('postgres', `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  });

  test('gives the rows readChunk gives, each with the writer of its row version', async () => {
    const shape = await reader.describe('public', 'accounts');
    const { rows, writers } = await reader.readChunkWithWriters(shape, null, 10);
    assert.deepEqual(rows, await reader.readChunk(shape, null, 10));
    assert.deepEqual(
      rows.map((r) => r.values),
      [
        ['1', 'local'],
        ['2', 'from b'],
        ['3', 'other origin'],
        ['4', 'not to a'],
        ['5', 'local again'],
      ],
    );
    const expected: (RowWriter | null)[] = [
      { site: a, commitTimeMicros: await commitMicros(db, 'accounts', 1) },
      { site: b, commitTimeMicros: 1577934245123456n },
      null,
      null,
      { site: a, commitTimeMicros: await commitMicros(db, 'accounts', 5) },
    ];
    assert.deepEqual(writers, expected);
  });

  test('chunk by chunk, in key order, after a key and up to a limit', async () => {
    const shape = await reader.describe('public', 'accounts');
    const { rows, writers } = await reader.readChunkWithWriters(shape, ['1'], 2);
    assert.deepEqual(rows, await reader.readChunk(shape, ['1'], 2));
    assert.deepEqual(rows.map((r) => r.values[0]), ['2', '3']);
    assert.deepEqual(writers, [{ site: b, commitTimeMicros: 1577934245123456n }, null]);
    const consistent = await PostgresTableReader.open({ site: a, url: dbUrl(db), consistent: true });
    try {
      const read = await consistent.readChunkWithWriters(await consistent.describe('public', 'accounts'), ['3'], 5);
      assert.deepEqual(read.rows.map((r) => r.values[0]), ['4', '5']);
      assert.deepEqual(read.writers, [null, { site: a, commitTimeMicros: await commitMicros(db, 'accounts', 5) }]);
    } finally {
      await consistent.close();
    }
  });

  test('snapshot chunks carry writers, addressed or sent to every site (targets leave out reads they hold newer), never for keys', async () => {
    const shape = await reader.describe('public', 'accounts');
    const control: SnapshotControl = {
      start: async () => undefined,
      advance: async () => 'advanced',
      list: async () => [],
      cancel: async () => false,
      close: async () => undefined,
    };
    const chunkOf = async (marker: SnapshotMarker): Promise<Change[]> => {
      const delivered: Transaction[] = [];
      const chunks = new SnapshotChunks({ site: a, reader, control, maxPartBytes: 1 << 20, pause: () => undefined, resume: () => undefined, onError: (e) => assert.fail(String(e)), logger });
      const stream = chunks.wrap({ transaction: (t) => delivered.push(t), skipped: () => undefined, idle: () => undefined });
      const position = '0000000000000001';
      stream.transaction(
        { id: `${a}:${position}`, site: a, position, commitTimeMicros: 1n, sourceTxId: '1', seen: {}, changes: [{ op: 'message', prefix: SNAPSHOT_MARKER_PREFIX, content: Buffer.from(encodeMarker(marker)) }] },
        null,
        position,
      );
      for (let i = 0; i < 200 && delivered.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.equal(delivered.length, 1);
      return [...delivered[0]!.changes];
    };
    const marker: SnapshotMarker = { id: 'rw', table: 'public.accounts', chunk: 0, chunkRows: 3, targets: [n], after: null, keys: null };
    const addressed = await chunkOf(marker);
    assert.deepEqual(
      addressed.map((c) => (c.op === 'read' ? [c.newRow.values[0], c.writer ?? 'none'] : c.op)),
      [
        ['1', { site: a, commitTimeMicros: await commitMicros(db, 'accounts', 1) }],
        ['2', { site: b, commitTimeMicros: 1577934245123456n }],
        ['3', 'none'],
      ],
    );
    // A row whose writer is unknown has no `writer` at all.
    assert.equal('writer' in addressed[2]!, false);
    const everyone = await chunkOf({ ...marker, targets: null });
    assert.deepEqual(
      everyone.map((c) => (c.op === 'read' ? [c.newRow.values[0], c.writer ?? 'none'] : c.op)),
      addressed.map((c) => (c.op === 'read' ? [c.newRow.values[0], c.writer ?? 'none'] : c.op)),
    );
    const keys = await chunkOf({ ...marker, keys: [['1'], ['2']] });
    assert.equal(keys.length, 2);
    assert.ok(keys.every((c) => c.op === 'read' && !('writer' in c)));
  });
});

describe('the PostgreSQL sink of a joining site', () => {
  const db = `sitesync_test_rw_sink_${suffix}`;
  let sink: PostgresSink;
  let fromA: SourceSession;
  let fromB: SourceSession;
  const positions = new Map<string, number>();
  // Times relative to the snapshot's: t0 < t2 < t1 < t3 < snapshot.
  const snapshotTime = BigInt(Date.now()) * 1000n;
  const t0 = snapshotTime - 10n * SECOND;
  const t2 = snapshotTime - 7n * SECOND;
  const t1 = snapshotTime - 5n * SECOND;
  const t3 = snapshotTime - 2n * SECOND;

  function tx(site: string, commitTimeMicros: bigint, seen: SeenSites, changes: Change[], snapshot?: SnapshotTag): Transaction {
    const next = (positions.get(site) ?? 0) + 1;
    positions.set(site, next);
    const position = next.toString(16).toUpperCase().padStart(16, '0');
    return { id: `${site}:${position}`, site, position, commitTimeMicros, sourceTxId: String(next), seen, changes, ...(snapshot ? { snapshot } : {}) };
  }
  const read = (id: number, note: string, writer?: RowWriter): Change => ({ op: 'read', relation, newRow: { values: [String(id), note], unchanged: [] }, ...(writer ? { writer } : {}) });
  const update = (id: number, note: string): Change => ({ op: 'update', relation, oldRow: null, newRow: { values: [String(id), note], unchanged: [] } });
  const insert = (id: number, note: string): Change => ({ op: 'insert', relation, newRow: { values: [String(id), note], unchanged: [] } });
  const note = async (id: number): Promise<string | undefined> => (await sql<{ note: string }>(db, 'SELECT note FROM accounts WHERE id = $1', [id]))[0]?.note;

  before(async () => {
    await sql('postgres', `CREATE DATABASE ${db}`);
    await sql(db, 'CREATE TABLE accounts (id int PRIMARY KEY, note text)');
    sink = new PostgresSink({ site: n, url: dbUrl(db), replicaRole: false, sourceKindOf: () => 'postgres', logger });
    fromA = await sink.openSession(a);
    fromB = await sink.openSession(b);
    // The donor a's snapshot, addressed to n: rows b last wrote at t0 and rows a last wrote at t1; row 20 of unknown writer.
    const fromBAtT0 = { site: b, commitTimeMicros: t0 };
    const fromAAtT1 = { site: a, commitTimeMicros: t1 };
    await fromA.apply([
      tx(a, snapshotTime, {}, [
        read(1, 'read 1', fromBAtT0),
        read(2, 'read 2', fromAAtT1),
        read(3, 'read 3', fromAAtT1),
        read(4, 'read 4', fromBAtT0),
        read(5, 'read 5', fromBAtT0),
        read(6, 'read 6', fromAAtT1),
        read(7, 'read 7', fromAAtT1),
        read(8, 'read 8', fromAAtT1),
        read(9, 'read 9', fromAAtT1),
        read(20, 'read 20'),
      ], { id: 'join', table: 'public.accounts', chunk: 0, last: true, targets: [n] }),
    ]);
  });

  after(async () => {
    await fromA?.close();
    await fromB?.close();
    await sink?.close();
    await sql('postgres', `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  });

  test('the writers are recorded with the xid that wrote the rows, rows without one are not', async () => {
    const rows = await sql<{ key: string; site: string; micros: string; matches: boolean }>(
      db,
      `SELECT rw.key, rw.site, rw.commit_micros::text AS micros, rw.xid::xid = a.xmin AS matches
         FROM sitesync.read_writers rw JOIN accounts a ON rw.key = json_build_array(a.id::text)::text
        WHERE rw.relation = '"public"."accounts"' ORDER BY a.id`,
    );
    assert.equal(rows.length, 9);
    assert.deepEqual(rows[0], { key: '["1"]', site: b, micros: String(t0), matches: true });
    assert.deepEqual(rows[1], { key: '["2"]', site: a, micros: String(t1), matches: true });
    // The snapshot's transaction is still what PostgreSQL says wrote them.
    assert.equal(await commitMicros(db, 'accounts', 1), snapshotTime);
  });

  test("an update from the row's recorded writer's own site follows it, though the snapshot committed later", async () => {
    // Before read_writers, the row's writer was (a, snapshot time): concurrent with b (seen {}), and later than t2.
    await fromB.apply([tx(b, t2, {}, [update(1, 'b after t0')])]);
    assert.equal(await note(1), 'b after t0');
  });

  test('an update from another site is decided against the recorded writer: older than it, skipped and logged', async () => {
    await fromB.apply([tx(b, t2, { [a]: t1 - SECOND }, [update(2, 'b at t2')])]);
    assert.equal(await note(2), 'read 2');
    const [logged] = await sql<{ local_site: string; local_micros: string; resolution: string }>(
      db,
      `SELECT local_site, (extract(epoch FROM local_commit_time) * 1000000)::int8::text AS local_micros, resolution FROM sitesync.conflicts WHERE key = '{"id": "2"}'::jsonb AND remote_site = $1`,
      [b],
    );
    assert.deepEqual(logged, { local_site: a, local_micros: String(t1), resolution: 'skipped' });
  });

  test('an update from another site later than the recorded writer (though earlier than the snapshot) wins', async () => {
    await fromB.apply([tx(b, t3, { [a]: t1 - SECOND }, [update(3, 'b at t3')])]);
    assert.equal(await note(3), 'b at t3');
  });

  test('inserts of keys there already are decided against the recorded writer too (one insert, and a batch)', async () => {
    await fromB.apply([tx(b, t3, { [a]: t1 - SECOND }, [insert(6, 'b inserted 6')])]);
    assert.equal(await note(6), 'b inserted 6');
    await fromB.apply([tx(b, t3, { [a]: t1 - SECOND }, [insert(7, 'b inserted 7'), insert(8, 'b inserted 8')])]);
    assert.equal(await note(7), 'b inserted 7');
    assert.equal(await note(8), 'b inserted 8');
  });

  test("a snapshot to every site decides against the recorded writer: it replaces a row whose writer its source had seen", async () => {
    // b had seen a up to t1: (a, t1) is no concurrent write, (a, snapshot time) would have been.
    await fromB.apply([tx(b, snapshotTime + SECOND, { [a]: t1 }, [read(9, 'b read 9')], { id: 'all', table: 'public.accounts', chunk: 0, last: true, targets: null })]);
    assert.equal(await note(9), 'b read 9');
  });

  test('a row written again after the snapshot has that later writer again', async () => {
    // Written here after the snapshot: its writer is now this site, now, not (b, t0).
    await sql(db, `UPDATE accounts SET note = 'written at n' WHERE id = 4`);
    await fromB.apply([tx(b, t2, {}, [update(4, 'b at t2')])]);
    assert.equal(await note(4), 'written at n');
  });

  test('a restarted sink still finds the recorded writers', async () => {
    await fromA.close();
    await fromB.close();
    await sink.close();
    sink = new PostgresSink({ site: n, url: dbUrl(db), replicaRole: false, sourceKindOf: () => 'postgres', logger });
    fromA = await sink.openSession(a);
    fromB = await sink.openSession(b);
    await fromB.apply([tx(b, t2, {}, [update(5, 'b after restart')])]);
    assert.equal(await note(5), 'b after restart');
    // A row of unknown writer is the snapshot's, as before: b's older, concurrent update loses.
    await fromB.apply([tx(b, t2, {}, [update(20, 'b on 20')])]);
    assert.equal(await note(20), 'read 20');
  });
});
