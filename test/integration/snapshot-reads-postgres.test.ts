/**
 * How the PostgreSQL sink writes a snapshot's rows, against the real server: addressed to this site, a read
 * replaces whatever row has its key; sent to every site, it leaves a row this site wrote in a transaction
 * the snapshot's source had not seen (that write reaches the source through the mesh), and replaces the
 * rest. PostgreSQL knows each row's last writer from its commit timestamp and replication origin.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { PostgresSink } from '../../connectors/postgres/postgres-sink.ts';
import type { SourceSession } from '../../src/apply/sink.ts';
import type { Change, RelationInfo, SnapshotTag, Transaction } from '../../src/events/transaction.ts';
import { parseKind } from '../../src/events/value-kind.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { dbUrl, sql } from '../helpers/test-sites.ts';

const suffix = randomBytes(3).toString('hex');
const db = `sitesync_test_reads_${suffix}`;
const site = `here_${suffix}`;
const source = `there_${suffix}`;
const relation: RelationInfo = {
  schema: 'public',
  table: 'accounts',
  replicaIdentity: 'd',
  columns: [
    { name: 'id', kind: parseKind('int32'), native: { name: 'int4', id: 23, modifier: -1 }, key: true },
    { name: 'note', kind: parseKind('string'), native: { name: 'text', id: 25, modifier: -1 }, key: false },
  ],
};
let sink: PostgresSink;
let session: SourceSession;
let n = 0;

function tx(changes: Change[], seen: Record<string, bigint>, snapshot?: SnapshotTag): Transaction {
  n++;
  const position = n.toString(16).toUpperCase().padStart(16, '0');
  return { id: `${source}:${position}`, site: source, position, commitTimeMicros: BigInt(Date.now()) * 1000n, sourceTxId: String(n), seen, changes, ...(snapshot ? { snapshot } : {}) };
}

const row = (id: number, note: string): Change => ({ op: 'read', relation, newRow: { values: [String(id), note], unchanged: [] } });

async function notes(): Promise<Record<string, string>> {
  const rows = await sql<{ id: number; note: string }>(db, 'SELECT id, note FROM accounts ORDER BY id');
  return Object.fromEntries(rows.map((r) => [String(r.id), r.note]));
}

before(async () => {
  await sql('postgres', `CREATE DATABASE ${db}`);
  await sql(db, 'CREATE TABLE accounts (id int PRIMARY KEY, note text)');
  sink = new PostgresSink({ site, url: dbUrl(db), replicaRole: false, sourceKindOf: () => 'postgres', logger: createLogger('silent') });
  session = await sink.openSession(source);
  // Rows 1 and 2 came from the source; row 3 is this site's own, written before the snapshot's source saw it.
  await session.apply([tx([{ op: 'insert', relation, newRow: { values: ['1', 'from there'], unchanged: [] } }, { op: 'insert', relation, newRow: { values: ['2', 'from there'], unchanged: [] } }], {})]);
  await sql(db, `INSERT INTO accounts VALUES (3, 'written here')`);
});

after(async () => {
  await session?.close();
  await sink?.close();
  await sql('postgres', `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  await sql('postgres', 'SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin WHERE roname LIKE $1', [`%${suffix}`]);
});

test('to every site: rows this site wrote concurrently are kept, the others replaced, absent ones inserted', async () => {
  // The source had seen nothing of this site: row 3's write is concurrent with the snapshot.
  await session.apply([tx([row(1, 'read 1'), row(3, 'read 3'), row(4, 'read 4')], { [site]: 0n }, { id: 'all', table: 'public.accounts', chunk: 0, last: true, targets: null })]);
  assert.deepEqual(await notes(), { 1: 'read 1', 2: 'from there', 3: 'written here', 4: 'read 4' });
});

test("to every site, once the source has seen this site's write: replaced", async () => {
  const later = BigInt(Date.now() + 60_000) * 1000n;
  await session.apply([tx([row(3, 'read 3 again')], { [site]: later }, { id: 'seen', table: 'public.accounts', chunk: 0, last: true, targets: null })]);
  assert.deepEqual((await notes())[3], 'read 3 again');
});

test('addressed to this site (a repair, --to): replaces whatever is there', async () => {
  await sql(db, `UPDATE accounts SET note = 'changed here' WHERE id = 2`);
  await session.apply([tx([row(2, 'repaired')], { [site]: 0n }, { id: 'to', table: 'public.accounts', chunk: 0, last: true, targets: [site] })]);
  assert.deepEqual((await notes())[2], 'repaired');
});
