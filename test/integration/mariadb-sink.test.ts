/**
 * The MariaDB sink against a real server (a private one, test/helpers/private-mariadb.ts, or SITESYNC_TEST_MARIADB_URL;
 * never the machine's own MariaDB):
 * inserts, updates (key changes, unchanged columns), deletes, truncates, tables without a key; progress atomic
 * with the data (a failing change, a connection killed mid-transaction); nothing applied twice; parts of a
 * large transaction (restart at part 0, a gap); skip with its parked record; a retried transaction exactly
 * once; values of every kind MariaDB holds, and the ones it cannot refused.
 *
 * Every run uses its own target database and its own bookkeeping database (both dropped after), so runs and
 * sites sharing the server never meet.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import mysql from 'mysql2/promise';
import { MariaDbSink } from '../../connectors/mariadb/mariadb-sink.ts';
import { createLogger } from '../../src/observability/logger.ts';
import type { ResolvedConflict } from '../../src/connector.ts';
import type { SourceSession } from '../../src/apply/sink.ts';
import { SitesyncError } from '../../src/errors.ts';
import { transactionId, type Change, type ColumnInfo, type RelationInfo, type Transaction } from '../../src/events/transaction.ts';
import { parseKind } from '../../src/events/value-kind.ts';
import { startPrivateMariaDb, type PrivateMariaDb } from '../helpers/private-mariadb.ts';
import { rowKey } from '../../connectors/mariadb/row-writers.ts';

let URL = process.env.SITESYNC_TEST_MARIADB_URL ?? '';
let server: PrivateMariaDb | null = null;
const RUN = randomBytes(4).toString('hex');
const DB = `sitesync_it_${RUN}`;
const BK = `sitesync_bk_${RUN}`;
const SOURCE = 'london';
const logger = createLogger('silent');

let admin: mysql.Connection;
const sinks: MariaDbSink[] = [];

function sink(options: Partial<ConstructorParameters<typeof MariaDbSink>[0]> = {}): MariaDbSink {
  const s = new MariaDbSink({ site: 'paris', url: URL, bookkeepingDatabase: BK, logger, sourceKindOf: () => 'postgres', ...options });
  sinks.push(s);
  return s;
}

function col(name: string, kind: string, key = false): ColumnInfo {
  return { name, key, kind: parseKind(kind), native: { name: kind, id: 0, modifier: -1 } };
}

const items: RelationInfo = {
  schema: DB,
  table: 'items',
  replicaIdentity: 'd',
  columns: [col('id', 'int32', true), col('note', 'string'), col('qty', 'int32'), col('big', 'string')],
};
const loose: RelationInfo = { schema: DB, table: 'loose', replicaIdentity: 'f', columns: [col('a', 'string'), col('b', 'int32')] };

let counter = 0x100;
/** Positions as a MariaDB source writes them: 24 upper-case hex digits, increasing. */
function nextPosition(): string {
  counter += 0x10;
  return counter.toString(16).toUpperCase().padStart(24, '0');
}

function tx(changes: Change[], position = nextPosition()): Transaction {
  return { id: transactionId(SOURCE, position), site: SOURCE, position, commitTimeMicros: BigInt(counter) * 1000n, sourceTxId: String(counter), seen: {}, changes };
}

const ins = (id: number, note: string | null, qty: number | null = 1, big: string | null = null, relation = items): Change => ({
  op: 'insert',
  relation,
  newRow: { values: [String(id), note, qty === null ? null : String(qty), big], unchanged: [] },
});
const upd = (id: number, note: string | null, oldId?: number): Change => ({
  op: 'update',
  relation: items,
  oldRow: oldId === undefined ? null : { values: [String(oldId), null, null, null], unchanged: [] },
  newRow: { values: [String(id), note, '1', null], unchanged: [3] },
});
const del = (id: number): Change => ({ op: 'delete', relation: items, oldRow: { values: [String(id), null, null, null], unchanged: [] } });

async function rows(table = 'items', order = 'id'): Promise<Record<string, unknown>[]> {
  const [r] = await admin.query<mysql.RowDataPacket[]>(`SELECT * FROM \`${DB}\`.\`${table}\` ORDER BY ${order}`);
  return r.map((x) => ({ ...x }));
}

async function progressRow(): Promise<{ position: string; applied: number } | null> {
  const [r] = await admin.query<mysql.RowDataPacket[]>(`SELECT position, applied_transactions FROM \`${BK}\`.apply_progress WHERE source = ?`, [SOURCE]);
  return r[0] ? { position: String(r[0].position), applied: Number(r[0].applied_transactions) } : null;
}

async function resetItems(): Promise<void> {
  await admin.query(`DELETE FROM \`${DB}\`.items`);
}

before(async () => {
  if (!URL) {
    server = await startPrivateMariaDb();
    URL = server.url().replace(/^mariadb:/, 'mysql:');
  }
  admin = await mysql.createConnection({ uri: URL, multipleStatements: true, dateStrings: true, supportBigNumbers: true, bigNumberStrings: true });
  await admin.query(`CREATE DATABASE \`${DB}\``);
  await admin.query(`
    CREATE TABLE \`${DB}\`.items (id INT PRIMARY KEY, note VARCHAR(100), qty INT, big TEXT) ENGINE=InnoDB;
    CREATE TABLE \`${DB}\`.loose (a VARCHAR(20), b INT) ENGINE=InnoDB;
  `);
});

after(async () => {
  for (const s of sinks) await s.close().catch(() => undefined);
  await admin.query(`DROP DATABASE IF EXISTS \`${DB}\``);
  await admin.query(`DROP DATABASE IF EXISTS \`${BK}\``);
  await admin.end();
  await server?.destroy();
});

describe('applying', () => {
  let session: SourceSession;
  before(async () => {
    session = await sink().openSession(SOURCE);
  });

  test('creates the bookkeeping tables; no progress yet', async () => {
    assert.equal(await session.progress(), null);
    const [tables] = await admin.query<mysql.RowDataPacket[]>('SELECT TABLE_NAME AS t FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY 1', [BK]);
    assert.deepEqual(tables.map((t) => t.t), ['apply_progress', 'conflicts', 'parked', 'row_writers', 'spilled_parts']);
  });

  test('inserts, updates, a key change, deletes; progress recorded with each', async () => {
    const t1 = tx([ins(1, 'one'), ins(2, 'two'), ins(3, 'three'), ins(4, "it's `four`")]);
    const t2 = tx([upd(1, 'uno'), upd(20, 'twenty', 2), del(3)]);
    await session.apply([t1, t2]);
    assert.deepEqual(
      (await rows()).map((r) => [r.id, r.note]),
      [
        [1, 'uno'],
        [4, "it's `four`"],
        [20, 'twenty'],
      ],
    );
    assert.equal(await session.progress(), t2.position);
    assert.deepEqual(await progressRow(), { position: t2.position, applied: 2 });
  });

  test('unchanged columns are left as they are', async () => {
    await session.apply([tx([ins(5, 'five', 5, 'x'.repeat(10_000))])]);
    await session.apply([tx([upd(5, 'cinq')])]);
    const five = (await rows()).find((r) => r.id === 5)!;
    assert.equal(five.note, 'cinq');
    assert.equal(five.big, 'x'.repeat(10_000), 'not NULL, not a placeholder');
  });

  test('truncate empties the table inside the transaction', async () => {
    const t = tx([{ op: 'truncate', relations: [items], cascade: false, restartIdentity: false }, ins(100, 'after')]);
    await session.apply([t]);
    assert.deepEqual((await rows()).map((r) => r.id), [100]);
    assert.equal(await session.progress(), t.position);
  });

  test('tables without a key: updates and deletes match every old column NULL-safe, one row', async () => {
    const row = (a: string | null, b: string | null) => ({ values: [a, b], unchanged: [] });
    await session.apply([
      tx([
        { op: 'insert', relation: loose, newRow: row('x', '1') },
        { op: 'insert', relation: loose, newRow: row('x', '1') },
        { op: 'insert', relation: loose, newRow: row('X', '1') },
        { op: 'insert', relation: loose, newRow: row('y', null) },
      ]),
    ]);
    await session.apply([
      tx([
        { op: 'update', relation: loose, oldRow: row('x', '1'), newRow: row('z', '2') },
        { op: 'delete', relation: loose, oldRow: row('y', null) },
        { op: 'delete', relation: loose, oldRow: row('X', '1') },
      ]),
    ]);
    assert.deepEqual(
      (await rows('loose', 'a COLLATE utf8mb4_bin, b')).map((r) => [r.a, r.b]),
      [
        ['x', 1],
        ['z', 2],
      ],
      'one of the duplicates changed; case told apart; NULL matched',
    );
  });

  test('a logical message writes nothing but the progress', async () => {
    const t = tx([{ op: 'message', prefix: 'app', content: Buffer.from('hello') }]);
    await session.apply([t]);
    assert.equal(await session.progress(), t.position);
  });
});

describe('progress is atomic with the data', () => {
  test('a transaction whose second change fails leaves nothing and no progress, and a new session sees the previous progress', async () => {
    const s = sink();
    let session = await s.openSession(SOURCE);
    await resetItems();
    const good = tx([ins(1, 'a')]);
    await session.apply([good]);
    const bad = tx([ins(2, 'b'), ins(1, 'duplicate key')]);
    const later = tx([ins(3, 'c')]);
    await assert.rejects(session.apply([bad, later]), (error: unknown) => {
      assert.equal(s.classify(error), 'data');
      assert.match((error as Error).message, /Duplicate entry/);
      assert.ok(!(error as Error).message.includes('\n'));
      return true;
    });
    assert.deepEqual((await rows()).map((r) => r.id), [1], 'nothing of it, nothing after it');
    assert.equal(await session.progress(), good.position);
    await session.close();
    session = await s.openSession(SOURCE);
    assert.equal(await session.progress(), good.position);
    await session.close();
  });

  test('a value the target cannot hold: refused before anything of the transaction commits', async () => {
    const s = sink();
    const session = await s.openSession(SOURCE);
    const before = await session.progress();
    const bad = tx([ins(7, 'fine'), ins(8, 'x'.repeat(101))]);
    await assert.rejects(session.apply([bad]), (error: unknown) => {
      assert.equal(s.classify(error), 'data');
      assert.match((error as Error).message, /items column "note" \(varchar\(100\)/);
      return true;
    });
    assert.ok(!(await rows()).some((r) => r.id === 7));
    assert.equal(await session.progress(), before);
    await session.close();
  });

  test('a connection killed between statements: nothing of the transaction, no progress; a new session resumes', async () => {
    const s = sink();
    let session = await s.openSession(SOURCE);
    await resetItems();
    const first = tx([ins(5, 'five')]);
    await session.apply([first]);
    // Another connection holds row 5: the session's locking read of it (before its UPDATE) waits, after its
    // progress row and an insert.
    const blocker = await mysql.createConnection({ uri: URL });
    await blocker.query('START TRANSACTION');
    await blocker.query(`SELECT * FROM \`${DB}\`.items WHERE id = 5 FOR UPDATE`);
    const victim = tx([ins(6, 'six'), upd(5, 'changed')]);
    const applying = session.apply([victim]).then(
      () => null,
      (error: unknown) => error,
    );
    let thread: number | undefined;
    for (let i = 0; i < 100 && thread === undefined; i++) {
      const [p] = await admin.query<mysql.RowDataPacket[]>(`SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT 1 FROM \`${DB}\`.\`items\`%FOR UPDATE'`);
      thread = p[0]?.ID === undefined ? undefined : Number(p[0].ID);
      if (thread === undefined) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(thread !== undefined, 'the session waits on the row lock');
    await admin.query(`KILL ${thread}`);
    const error = await applying;
    assert.ok(error, 'apply failed');
    assert.equal(s.classify(error), 'transient');
    await blocker.query('ROLLBACK');
    await blocker.end();
    assert.deepEqual((await rows()).map((r) => [r.id, r.note]), [[5, 'five']], 'the insert before the kill rolled back');
    await session.close();
    session = await s.openSession(SOURCE);
    assert.equal(await session.progress(), first.position);
    await session.apply([victim]);
    assert.deepEqual((await rows()).map((r) => [r.id, r.note]), [
      [5, 'changed'],
      [6, 'six'],
    ]);
    await session.close();
  });
});

describe('never applied twice', () => {
  test('at or below the progress: left out, by this session and by a new one', async () => {
    const s = sink();
    let session = await s.openSession(SOURCE);
    await resetItems();
    const t = tx([ins(1, 'once')]);
    await session.apply([t]);
    const again = { ...t, changes: [ins(2, 'same position, other data')] };
    const older = tx([ins(3, 'older')], '000000000000000000000001');
    await session.apply([again, older]);
    await session.close();
    session = await s.openSession(SOURCE); // knows nothing yet: the progress row's upsert tells
    const applied = (await progressRow())!.applied;
    await session.apply([again, older]);
    const next = tx([ins(4, 'next')]);
    await session.apply([t, next]);
    assert.deepEqual((await rows()).map((r) => r.id), [1, 4]);
    assert.equal((await progressRow())!.applied, applied + 1, 'the progress row moved for the new one only');
    assert.equal(await session.progress(), next.position);
    await session.close();
  });
});

describe('parts of a large transaction', () => {
  test('kept until the last, applied with it in one commit; part 0 again starts over', async () => {
    const s = sink();
    const session = await s.openSession(SOURCE);
    await resetItems();
    const before = await session.progress();
    const position = nextPosition();
    const part = (changes: Change[]) => tx(changes, position);
    await session.applyPart(part([ins(1, 'p0')]), { index: 0, last: false });
    await session.applyPart(part([ins(2, 'p1 first try')]), { index: 1, last: false });
    assert.deepEqual(await rows(), [], 'nothing applied before the last part');
    assert.equal(await session.progress(), before);
    // The source restarted and sends the transaction again from its start.
    await session.applyPart(part([ins(1, 'p0')]), { index: 0, last: false });
    await session.applyPart(part([ins(2, 'p1')]), { index: 1, last: false });
    await session.applyPart(part([ins(3, 'p2'), upd(1, 'p2 changed p0')]), { index: 2, last: true });
    assert.deepEqual((await rows()).map((r) => [r.id, r.note]), [
      [1, 'p2 changed p0'],
      [2, 'p1'],
      [3, 'p2'],
    ]);
    assert.equal(await session.progress(), position);
    const [kept] = await admin.query<mysql.RowDataPacket[]>(`SELECT COUNT(*) AS n FROM \`${BK}\`.spilled_parts`);
    assert.equal(Number(kept[0]!.n), 0, 'forgotten once applied');
    // Copies of its parts after it was applied (a redelivery), by this session or a new one: nothing again.
    const applied = (await progressRow())!.applied;
    await session.applyPart(part([ins(2, 'p1')]), { index: 1, last: false });
    await session.applyPart(part([ins(3, 'p2'), upd(1, 'p2 changed p0')]), { index: 2, last: true });
    await session.close();
    const fresh = await s.openSession(SOURCE);
    await fresh.applyPart(part([ins(1, 'p0')]), { index: 0, last: false });
    await fresh.applyPart(part([ins(3, 'p2'), upd(1, 'p2 changed p0')]), { index: 2, last: true });
    assert.equal((await progressRow())!.applied, applied);
    assert.equal((await rows()).length, 3);
    const [left] = await admin.query<mysql.RowDataPacket[]>(`SELECT COUNT(*) AS n FROM \`${BK}\`.spilled_parts`);
    assert.equal(Number(left[0]!.n), 0);
    await fresh.close();
  });

  test('a part whose predecessor never came is a gap', async () => {
    const s = sink();
    const session = await s.openSession(SOURCE);
    const position = nextPosition();
    await session.applyPart(tx([ins(50, 'p0')], position), { index: 0, last: false });
    await assert.rejects(session.applyPart(tx([ins(52, 'p2')], position), { index: 2, last: false }), (error: unknown) => {
      assert.ok(error instanceof SitesyncError);
      assert.equal(error.code, 'SITESYNC_ERR_GAP');
      assert.equal(s.classify(error), 'schema', 'halts the source');
      assert.match(error.message, /part 2 of transaction .* part 1 never did/);
      return true;
    });
    await assert.rejects(session.applyPart(tx([ins(52, 'p2')], position), { index: 2, last: true }), (error: unknown) => error instanceof SitesyncError && error.code === 'SITESYNC_ERR_GAP');
    assert.ok(!(await rows()).some((r) => r.id === 50));
    await session.close();
  });

  test('a single part that is also the last applies like a transaction', async () => {
    const s = sink();
    const session = await s.openSession(SOURCE);
    const t = tx([ins(60, 'alone')]);
    await session.applyPart(t, { index: 0, last: true });
    assert.ok((await rows()).some((r) => r.id === 60));
    assert.equal(await session.progress(), t.position);
    await session.close();
  });
});

describe('skipping, parking and retrying', () => {
  test('skip records the progress and the parked record in one commit; a retry applies the transaction exactly once', async () => {
    const s = sink();
    const session = await s.openSession(SOURCE);
    await resetItems();
    const skipped = tx([ins(70, 'set aside')]);
    const id = randomUUID();
    const record = { id, kind: 'skipped' as const, source: SOURCE, transactionId: skipped.id, bodySha256: 'a'.repeat(64), userId: 'london', route: 'sitesync/site.london', reason: 'the target refused it' };
    await session.skip(skipped.position, skipped.commitTimeMicros, record);
    assert.equal(await session.progress(), skipped.position);
    assert.deepEqual(await s.findParked(id.toUpperCase()), { ...record, done: false });
    assert.deepEqual(await rows(), []);
    // More is applied after it; then the operator retries it.
    const later = tx([ins(71, 'later')]);
    await session.apply([later]);
    const marker = (await progressRow())!.applied;
    assert.equal(await session.applyRetried([skipped], id), true);
    assert.deepEqual((await rows()).map((r) => r.id), [70, 71]);
    assert.equal(await session.progress(), later.position, 'the progress does not move back');
    assert.equal((await progressRow())!.applied, marker + 1, 'the progress row was written (the loop marker) all the same');
    assert.equal((await s.findParked(id))!.done, true);
    assert.equal(await session.applyRetried([skipped], id), false, 'a second retry applies nothing');
    assert.equal((await progressRow())!.applied, marker + 1);
    assert.deepEqual((await rows()).map((r) => r.id), [70, 71]);
    await assert.rejects(session.applyRetried([skipped, later], id), (e: unknown) => e instanceof SitesyncError && e.code === 'SITESYNC_ERR_MESSAGE_INVALID');
    await session.close();
  });

  test('a retry whose record is unknown applies nothing', async () => {
    const s = sink();
    const session = await s.openSession(SOURCE);
    const t = tx([ins(80, 'never')]);
    assert.equal(await session.applyRetried([t], randomUUID()), false);
    assert.ok(!(await rows()).some((r) => r.id === 80));
    await session.close();
  });

  test('refused records: recorded once, found, finished', async () => {
    const s = sink();
    const id = randomUUID();
    const record = { id, kind: 'refused' as const, source: null, transactionId: null, bodySha256: 'b'.repeat(64), userId: null, route: 'sitesync/site.nobody', reason: 'untrusted' };
    await s.recordParked(record);
    await s.recordParked({ ...record, reason: 'again' });
    assert.deepEqual(await s.findParked(id), { ...record, done: false });
    await s.finishParked(id);
    assert.equal((await s.findParked(id))!.done, true);
    assert.equal(await s.findParked(randomUUID()), null);
  });
});

describe('existing keys and conflict policies', () => {
  test('without a policy an insert of an existing key is a data error; with one it upserts or keeps, and says so', async () => {
    await resetItems();
    await admin.query(`INSERT INTO \`${DB}\`.items (id, note) VALUES (90, 'local'), (91, 'local')`);
    const plain = await sink().openSession(SOURCE);
    await assert.rejects(plain.apply([tx([ins(90, 'remote')])]), /Duplicate entry/);
    await plain.close();
    // Row 91's last writer is known (this site, as its capture records it); row 90's is not (a row sitesync
    // never saw written: the incoming row wins whatever the policy, as the PostgreSQL sink decides).
    const key91 = rowKey(`${DB}.items`, [{ name: 'id', kind: parseKind('int32'), text: '91' }]);
    await admin.query(`INSERT INTO \`${BK}\`.row_writers (table_name, key_hash, key_json, site, commit_time_micros, local_position, seen) VALUES (?, ?, ?, 'paris', 1, '000000010000000000000001', '{}')`, [key91.table, key91.hash, key91.json]);
    const conflicts: ResolvedConflict[] = [];
    const lww = await sink({ conflictPolicy: () => ({ policy: 'last-writer-wins', priority: [] }), onConflict: (c) => conflicts.push(c) }).openSession(SOURCE);
    await lww.apply([tx([ins(89, 'new'), ins(90, 'remote')])]);
    const keep = await sink({ conflictPolicy: () => ({ policy: 'keep-local', priority: [] }), onConflict: (c) => conflicts.push(c) }).openSession(SOURCE);
    await keep.apply([tx([ins(91, 'remote'), ins(92, 'new')])]);
    assert.deepEqual((await rows()).map((r) => [r.id, r.note]), [
      [89, 'new'],
      [90, 'remote'],
      [91, 'local'],
      [92, 'new'],
    ]);
    assert.deepEqual(conflicts, [
      { source: SOURCE, kind: 'insert_exists', table: `${DB}.items`, resolution: 'apply' },
      { source: SOURCE, kind: 'insert_exists', table: `${DB}.items`, resolution: 'skip' },
    ]);
    await lww.close();
    await keep.close();
  });
});

describe('schema', () => {
  test('a missing table halts (schema), and applying resumes once it is created', async () => {
    const s = sink();
    const session = await s.openSession(SOURCE);
    const later: RelationInfo = { schema: DB, table: 'later', replicaIdentity: 'd', columns: [col('id', 'int64', true), col('v', 'string')] };
    const t = tx([{ op: 'insert', relation: later, newRow: { values: ['1', 'v'], unchanged: [] } }]);
    await assert.rejects(session.apply([t]), (error: unknown) => {
      assert.equal(s.classify(error), 'schema');
      assert.match((error as Error).message, /table .*\.later does not exist at site paris/);
      return true;
    });
    await admin.query(`CREATE TABLE \`${DB}\`.later (id BIGINT PRIMARY KEY, v TEXT)`);
    await session.apply([t]);
    assert.deepEqual((await rows('later')).map((r) => [String(r.id), r.v]), [['1', 'v']]);
    await session.close();
  });

  test('a column the target lacks halts (schema); once added, the table is read again', async () => {
    const s = sink();
    const session = await s.openSession(SOURCE);
    await admin.query(`CREATE TABLE \`${DB}\`.narrow (id INT PRIMARY KEY)`);
    const narrow: RelationInfo = { schema: DB, table: 'narrow', replicaIdentity: 'd', columns: [col('id', 'int32', true)] };
    await session.apply([tx([{ op: 'insert', relation: narrow, newRow: { values: ['1'], unchanged: [] } }])]);
    const wider: RelationInfo = { ...narrow, columns: [...narrow.columns, col('extra', 'string')] };
    const t = tx([{ op: 'insert', relation: wider, newRow: { values: ['2', 'e'], unchanged: [] } }]);
    await assert.rejects(session.apply([t]), (error: unknown) => s.classify(error) === 'schema' && /column "extra"/.test((error as Error).message));
    await admin.query(`ALTER TABLE \`${DB}\`.narrow ADD COLUMN extra VARCHAR(10)`);
    await session.apply([t]);
    assert.deepEqual((await rows('narrow')).map((r) => [r.id, r.extra]), [
      [1, null],
      [2, 'e'],
    ]);
    await session.close();
  });

  test('reserved databases: MariaDB catalogs and the bookkeeping database, never written', async () => {
    const s = sink();
    for (const name of ['mysql', 'sys', 'information_schema', 'PERFORMANCE_SCHEMA', BK]) assert.equal(s.isReservedSchema(name), true, name);
    assert.equal(s.isReservedSchema(DB), false);
    const session = await s.openSession(SOURCE);
    const evil: RelationInfo = { schema: BK, table: 'apply_progress', replicaIdentity: 'd', columns: [col('source', 'string', true), col('position', 'string')] };
    await assert.rejects(session.apply([tx([{ op: 'update', relation: evil, oldRow: null, newRow: { values: [SOURCE, 'FFFFFFFFFFFFFFFFFFFFFFFF'], unchanged: [] } }])]), (error: unknown) => s.classify(error) === 'data');
    await session.close();
  });
});

describe('values', () => {
  test('every kind MariaDB holds goes in exactly', async () => {
    await admin.query(`CREATE TABLE \`${DB}\`.kinds (
      id INT PRIMARY KEY, flag TINYINT(1), small SMALLINT, big BIGINT, ubig BIGINT UNSIGNED, price DECIMAL(12,3), ratio DOUBLE, single FLOAT,
      bytes VARBINARY(20), day DATE, moment TIME(6), local DATETIME(6), utc TIMESTAMP(6) NULL, doc JSON, uid UUID, mood ENUM('happy','sad'), txt TEXT, bits BIT(4))`);
    const kinds: RelationInfo = {
      schema: DB,
      table: 'kinds',
      replicaIdentity: 'd',
      columns: [
        col('id', 'int32', true),
        col('flag', 'boolean'),
        col('small', 'int16'),
        col('big', 'int64'),
        col('ubig', 'decimal(20,0)'),
        col('price', 'decimal(12,3)'),
        col('ratio', 'float64'),
        col('single', 'float32'),
        col('bytes', 'bytes'),
        col('day', 'date'),
        col('moment', 'time'),
        col('local', 'timestamp'),
        col('utc', 'timestamptz'),
        col('doc', 'json'),
        col('uid', 'uuid'),
        col('mood', 'enum'),
        col('txt', 'string'),
        col('bits', 'int16'),
      ],
    };
    const values = ['1', 't', '-32768', '-9223372036854775808', '18446744073709551615', '123456789.125', '0.1', '1.5', '\\x00ff10', '0001-01-01', '23:59:59.999999', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.5+00', '{"a": [1, "é"]}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'sad', 'héllo 😀', '9'];
    const session = await sink().openSession(SOURCE);
    await session.apply([tx([{ op: 'insert', relation: kinds, newRow: { values, unchanged: [] } }])]);
    const [r] = await admin.query<mysql.RowDataPacket[]>(
      `SELECT id, flag, small, big, ubig, price, ratio, single, HEX(bytes) AS bytes, day, moment, local, utc, CONCAT(doc) AS doc, uid, mood, txt, bits + 0 AS bits FROM \`${DB}\`.kinds`,
    );
    // The sink writes TIMESTAMP columns in UTC (its session's time_zone is +00:00), whatever the server's
    // zone: UNIX_TIMESTAMP reads the instant itself. 2038-01-19 03:14:07.5 UTC is 2^31 - 0.5 seconds.
    const [[instant]] = await admin.query<mysql.RowDataPacket[]>(`SELECT UNIX_TIMESTAMP(utc) AS s FROM \`${DB}\`.kinds`);
    assert.equal(instant!.s, '2147483647.500000');
    const [[utc]] = await admin.query<mysql.RowDataPacket[]>(`SELECT CONVERT_TZ(utc, @@session.time_zone, '+00:00') AS utc FROM \`${DB}\`.kinds`);
    const got = r[0]!;
    assert.deepEqual(
      { ...got, utc: utc!.utc },
      {
        id: 1,
        flag: 1,
        small: -32768,
        big: '-9223372036854775808',
        ubig: '18446744073709551615',
        price: '123456789.125',
        ratio: 0.1,
        single: 1.5,
        bytes: '00FF10',
        day: '0001-01-01',
        moment: '23:59:59.999999',
        local: '9999-12-31 23:59:59.999999',
        utc: '2038-01-19 03:14:07.500000',
        doc: '{"a": [1, "é"]}',
        uid: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
        mood: 'sad',
        txt: 'héllo 😀',
        bits: 9,
      },
    );
    // What MariaDB cannot hold is refused, never changed; nothing of the transaction stays.
    const refusals: [number, string, RegExp][] = [
      [5, '123456789.1255', /keeps 3: MariaDB would round it/],
      [6, 'NaN', /has no NaN/],
      [9, 'infinity', /no infinity/],
      [11, '2024-01-01 10:00:00.1234567', /not the canonical text/],
      [9, '0044-03-15 BC', /BC/],
      [2, '40000', /out of the range of smallint/],
    ];
    for (const [index, text, why] of refusals) {
      const bad = [...values];
      bad[0] = '2';
      bad[index] = text;
      await assert.rejects(session.apply([tx([{ op: 'insert', relation: kinds, newRow: { values: bad, unchanged: [] } }])]), (error: unknown) => {
        assert.equal(sinks[sinks.length - 1]!.classify(error), 'data');
        assert.match((error as Error).message, why);
        return true;
      });
    }
    // MariaDB's own strict checks refuse what the binder leaves to it (a 30th of February, a bad enum).
    // Zero dates too: the server's default sql_mode here lacks NO_ZERO_DATE and NO_ZERO_IN_DATE, the sink's sessions set them.
    for (const [index, text] of [
      [9, '2023-02-30'],
      [15, 'angry'],
      [9, '0000-00-00'],
      [9, '2024-00-10'],
      [11, '0000-00-00 00:00:00'],
    ] as const) {
      const bad = [...values];
      bad[0] = '3';
      bad[index] = text;
      await assert.rejects(session.apply([tx([{ op: 'insert', relation: kinds, newRow: { values: bad, unchanged: [] } }])]), (error: unknown) => sinks[sinks.length - 1]!.classify(error) === 'data');
    }
    assert.deepEqual((await rows('kinds')).map((x) => x.id), [1]);
    await session.close();
  });
});

describe('connecting', () => {
  test('an unreachable server: transient, one line, no password', async () => {
    const s = sink({ url: 'mysql://apply:s3cret@127.0.0.1:1/' });
    await assert.rejects(s.openSession(SOURCE), (error: unknown) => {
      assert.equal(s.classify(error), 'transient');
      const message = (error as Error).message;
      assert.ok(!message.includes('s3cret'), message);
      assert.ok(!message.includes('\n'));
      assert.match(message, /MariaDB of site paris \(mysql:\/\/apply:\*\*\*@127\.0\.0\.1:1\/\) is unreachable/);
      return true;
    });
    await assert.rejects(s.findParked(randomUUID()), (error: unknown) => s.classify(error) === 'transient' && !(error as Error).message.includes('s3cret'));
  });

  test('a refused login is fatal, and says what to fix', async () => {
    const where = new globalThis.URL(URL);
    const s = sink({ url: `mysql://nobody_here:wrong@${where.host}/` });
    await assert.rejects(s.openSession(SOURCE), (error: unknown) => {
      assert.ok(error instanceof SitesyncError);
      assert.equal(error.code, 'SITESYNC_ERR_PERMISSION');
      assert.ok(!error.message.includes('wrong@'), error.message);
      return true;
    });
  });
});
