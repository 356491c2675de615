/**
 * The PostgreSQL sink's COPY path, against a real server: runs of inserts go as one pipelined COPY (merged
 * with the transaction's BEGIN and the previous COMMIT); a key already there makes the sink roll back and
 * redo, without COPY, whatever the origin has not recorded as committed — each transaction once, each
 * conflict resolved, logged and reported once.
 */
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { PostgresSink, type ConflictRecord } from '../../connectors/postgres/postgres-sink.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { lsnToPosition } from '../../connectors/postgres/postgres-positions.ts';
import { transactionId, type RelationInfo, type Transaction } from '../../src/events/transaction.ts';
import type { SourceSession } from '../../src/apply/sink.ts';
import { originName } from '../../src/config/names.ts';
import { EncodedRow } from '../../src/events/encoded-row.ts';
import { dbUrl, sql } from '../helpers/test-sites.ts';
import { parseKind } from '../../src/events/value-kind.ts';

// Replication origins belong to the whole server, not to a database: names of this run's own (random, not
// the pid, which a container may reuse while an aborted run's origin is still there).
const RUN = randomBytes(3).toString('hex');
const DB = `sitesync_test_copy_${RUN}`;
const SOURCE = `london${RUN}`;
const TARGET = `paris${RUN}`;
const HOUR_MICROS = 3_600_000_000n;
const items: RelationInfo = {
  schema: 'public',
  table: 'items',
  replicaIdentity: 'd',
  columns: [
    { name: 'id', kind: parseKind('int32'), native: { name: 'int4', id: 23, modifier: -1 }, key: true },
    { name: 'note', kind: parseKind('string'), native: { name: 'text', id: 25, modifier: -1 }, key: false },
  ],
};
const loose: RelationInfo = { ...items, table: 'loose', replicaIdentity: 'f', columns: items.columns.map((c) => ({ ...c, key: false })) };

let lsn = 0x1000n;
/** A London transaction inserting `rows`, committed an hour from now (it wins last-writer-wins). */
function inserts(rows: [number | string, string | null][], relation = items): Transaction {
  lsn += 0x100n;
  const position = lsnToPosition(lsn);
  return {
    id: transactionId(SOURCE, position),
    site: SOURCE,
    position,
    commitTimeMicros: BigInt(Date.now()) * 1000n + HOUR_MICROS,
    sourceTxId: String(lsn),
    seen: {},
    changes: rows.map(([id, note]) => ({ op: 'insert' as const, relation, newRow: { values: [String(id), note], unchanged: [] } })),
  };
}

/** `tx` with its rows in their wire form, as a message off the bus carries them. */
function encoded(tx: Transaction): Transaction {
  return { ...tx, changes: tx.changes.map((c) => (c.op === 'insert' ? { ...c, newRow: EncodedRow.of(c.newRow) } : c)) };
}

const conflicts: ConflictRecord[] = [];
let sink: PostgresSink;
let session: SourceSession;

before(async () => {
  await sql('postgres', `DROP DATABASE IF EXISTS ${DB}`);
  await sql('postgres', `CREATE DATABASE ${DB}`);
  await sql(DB, `CREATE TABLE items (id int PRIMARY KEY, note text CHECK (note <> 'refused'))`);
  await sql(DB, `CREATE TABLE loose (id int, note text)`);
  sink = new PostgresSink({ site: TARGET, url: dbUrl(DB), replicaRole: true, logger: createLogger('silent'), onConflict: (c) => conflicts.push(c) });
  session = await sink.openSession(SOURCE);
});

after(async () => {
  await sink.close();
  await sql('postgres', `DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
  await sql('postgres', `SELECT pg_replication_origin_drop($1)`, [originName(SOURCE, TARGET)]);
});

async function rows(table = 'items'): Promise<string[]> {
  return (await sql<{ r: string }>(DB, `SELECT (id, note)::text AS r FROM ${table} ORDER BY id, note`)).map((x) => x.r);
}

test('transactions of inserts arrive whole, once, with the position of the last', async () => {
  const txs = [inserts([[1, 'a'], [2, 'tab\there\nnewline \\ backslash']]), inserts([[3, null], [4, 'd']]), inserts([[5, 'e'], [6, 'f']])];
  await session.apply(txs.slice(0, 2), { durable: false });
  await session.apply(txs.slice(2), { durable: true });
  assert.deepEqual(await rows(), ['(1,a)', '(2,"tab\there\nnewline \\\\ backslash")', '(3,)', '(4,d)', '(5,e)', '(6,f)']);
  assert.equal(await session.progress(), txs[2]!.position);
});

test('rows in their wire form go into COPY byte for byte, escapes and all; bytes that are not UTF-8 are refused as a data error, by COPY or as a statement', async () => {
  await session.apply([encoded(inserts([[60, 'tab\there\nnewline \\ backslash \\N ✓ 𝄞'], [61, null], [62, '']]))], { durable: true });
  assert.deepEqual((await rows()).filter((r) => /^\(6[0-9],/.test(r)), ['(60,"tab\there\nnewline \\\\ backslash \\\\N ✓ 𝄞")', '(61,)', '(62,"")']);
  // What capture never writes (it checks UTF-8), but a message from elsewhere could hold: the row (64,
  // 'a' 0xC0 0xAF) as Avro: 2 values; string "64"; string of 3 bytes; end of values; no unchanged columns.
  const bad = inserts([[63, null], [64, null]]);
  const invalid = EncodedRow.read(Buffer.from([4, 2, 4, 0x36, 0x34, 2, 6, 0x61, 0xc0, 0xaf, 0, 0]), 0);
  const withInvalid: Transaction = { ...bad, changes: [bad.changes[0]!, { op: 'insert', relation: items, newRow: invalid }] };
  const error = await session.apply([encoded(withInvalid)], { durable: true }).catch((e: unknown) => e);
  assert.equal((error as { code?: string }).code, '22021', 'invalid byte sequence for encoding "UTF8"');
  assert.equal(sink.classify(error), 'data');
  assert.deepEqual((await rows()).filter((r) => /^\(6[3-9],/.test(r)), [], 'nothing of that transaction is there');
  // The same row applied as a statement (one insert beside a delete) is refused too, not stored with U+FFFD.
  const single: Transaction = { ...bad, changes: [{ op: 'insert', relation: items, newRow: invalid }, { op: 'delete', relation: items, oldRow: { values: ['99', null], unchanged: [] } }] };
  const statementError = await session.apply([single], { durable: true }).catch((e: unknown) => e);
  assert.equal(sink.classify(statementError), 'data', String(statementError));
  assert.deepEqual((await rows()).filter((r) => /^\(6[3-9],/.test(r)), [], 'nothing of that transaction is there');
});

test('a key already there: the conflicts of the committed transaction before and of the redone one are each reported once', async () => {
  await sql(DB, `INSERT INTO items VALUES (10, 'local ten'), (21, 'local twenty-one')`);
  conflicts.length = 0;
  // A is not only inserts, so it goes on its own: its insert conflicts on 10, its delete finds nothing.
  // B and C, inserts only, go as one query that starts with A's COMMIT; B's COPY meets 21. So A is
  // committed when B fails: B and C are redone without COPY, A is not, and A's conflicts are still told.
  const a = inserts([[10, 'london ten']]);
  const withDelete: Transaction = { ...a, changes: [...a.changes, { op: 'delete', relation: items, oldRow: { values: ['99', null], unchanged: [] } }] };
  const b = inserts([[20, 'b'], [21, 'london twenty-one'], [22, 'b']]);
  const c = inserts([[30, 'c'], [31, 'c']]);
  await session.apply([withDelete, b, c], { durable: true });
  assert.deepEqual((await rows()).filter((r) => /^\([123][0-9],/.test(r)), ['(10,"london ten")', '(20,b)', '(21,"london twenty-one")', '(22,b)', '(30,c)', '(31,c)']);
  assert.deepEqual(conflicts.map((x) => x.kind), ['insert_exists', 'delete_missing', 'insert_exists']);
  const logged = await sql<{ kind: string; remote_transaction: string }>(DB, `SELECT kind, remote_transaction FROM sitesync.conflicts ORDER BY id`);
  assert.deepEqual(logged.map((l) => [l.kind, l.remote_transaction]), [['insert_exists', a.id], ['delete_missing', a.id], ['insert_exists', b.id]]);
  assert.equal(await session.progress(), c.position);
});

test('transactions of inserts only go as one query; a conflict in the middle redoes them all, each once', async () => {
  await sql(DB, `INSERT INTO items VALUES (51, 'local')`);
  conflicts.length = 0;
  const txs = [inserts([[50, 'x']]), inserts([[51, 'london']]), inserts([[52, 'y'], [53, 'y']])];
  await session.apply(txs, { durable: true });
  assert.deepEqual((await rows()).filter((r) => /^\(5[0-9],/.test(r)), ['(50,x)', '(51,london)', '(52,y)', '(53,y)']);
  assert.deepEqual(conflicts.map((x) => x.kind), ['insert_exists']);
  assert.equal(await session.progress(), txs[2]!.position);
});

test('a row the target refuses inside a COPY fails the transaction alone; the session goes on', async () => {
  const before = await session.progress();
  const good = inserts([[40, 'g'], [41, 'g']]);
  const refused = inserts([[42, 'x'], [43, 'refused']]);
  await assert.rejects(session.apply([good, refused], { durable: true }), (error: { code?: string }) => error.code === '23514');
  assert.equal(sink.classify(await session.apply([refused]).catch((e: unknown) => e)), 'data');
  // The merged COMMIT made `good` durable before the refusal; nothing of `refused` is there.
  assert.equal(await session.progress(), good.position);
  assert.notEqual(before, good.position);
  assert.deepEqual((await rows()).filter((r) => /^\(4[0-9],/.test(r)), ['(40,g)', '(41,g)']);
  await session.apply([inserts([[44, 'after'], [45, 'after']])]);
  assert.deepEqual((await rows()).filter((r) => /^\(4[4-5],/.test(r)), ['(44,after)', '(45,after)']);
});

test('a table without a primary key takes duplicate rows as the source had them', async () => {
  await session.apply([inserts([[1, 'same'], [1, 'same'], [2, null]], loose)]);
  assert.deepEqual(await rows('loose'), ['(1,same)', '(1,same)', '(2,)']);
});
