/**
 * The table readers of PostgreSQL and MariaDB (connectors/<kind>/<kind>-table-reader.ts) against real servers:
 * the shared PostgreSQL 15 (a database of this test's own, dropped afterwards) and a private MariaDB
 * (test/helpers/private-mariadb.ts).
 *
 * What each must prove, for each kind:
 * 1. the same relation and values as capture: a row written once is captured through the connector's real
 *    source and read by the reader, and both describe the same columns (names, kinds, native types, key
 *    flags) and carry the same canonical texts;
 * 2. paging: chunks of a few thousand rows with composite keys (numbers and text with mixed case and
 *    non-ASCII) meet every row once, in the kind-neutral order (src/capture/key-order.ts) — the order the
 *    database produced equals sorting by compareKeys, for key columns of every orderable kind;
 * 3. readKeys gives the rows of the keys that exist, in key order;
 * 4. a consistent reader sees one point in time while another connection writes;
 * 5. a table without a primary key, or missing, is refused with a SitesyncError naming it;
 * 6. rangeDigest is equal for equal data in two databases and differs after one value changes (NULL vs ''
 *    included), counts rows of (from, to]; keyAt gives the key `offset` rows after `from`.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { mariadbConnector } from '../../connectors/mariadb/index.ts';
import { postgresConnector } from '../../connectors/postgres/index.ts';
import { compareKeys } from '../../src/capture/key-order.ts';
import type { SourceHandler } from '../../src/capture/source.ts';
import { rowKey, type RowKey, type TableReader, type TableShape } from '../../src/capture/table-reader.ts';
import { slotName } from '../../src/config/names.ts';
import { parseConfig } from '../../src/config/load-config.ts';
import { SitesyncError } from '../../src/errors.ts';
import type { Change, RelationInfo, RowImage, Transaction } from '../../src/events/transaction.ts';
import { formatKind } from '../../src/events/value-kind.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { startPrivateMariaDb, type PrivateMariaDb } from '../helpers/private-mariadb.ts';

const PG_ADMIN = process.env.TEST_SITESYNC_POSTGRES ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const silent = createLogger('silent');
const suffix = randomBytes(4).toString('hex');

function pgUrl(database: string): string {
  const url = new URL(PG_ADMIN);
  url.pathname = `/${database}`;
  return url.toString();
}

async function pgSql<T extends pg.QueryResultRow = Record<string, unknown>>(database: string, text: string, values?: unknown[]): Promise<T[]> {
  const client = new pg.Client({ connectionString: pgUrl(database) });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return (await client.query<T>(text, values)).rows;
  } finally {
    await client.end();
  }
}

/** Collects what a source hands on, as the capture runner would receive it. */
class Collector implements SourceHandler {
  readonly transactions: Transaction[] = [];
  transaction(tx: Transaction): void {
    this.transactions.push(tx);
  }
  skipped(): void {}
  idle(): void {}
  inserts(table: string): Extract<Change, { op: 'insert' }>[] {
    return this.transactions.flatMap((tx) => tx.changes.filter((c): c is Extract<Change, { op: 'insert' }> => c.op === 'insert' && c.relation.table === table));
  }
  async waitForInserts(table: string, n: number): Promise<Extract<Change, { op: 'insert' }>[]> {
    const deadline = Date.now() + 30_000;
    while (this.inserts(table).length < n) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${n} captured inserts into ${table}; have ${this.inserts(table).length}`);
      await sleep(20);
    }
    return this.inserts(table);
  }
}

/** A relation as the test compares it: each column's name, kind, native type and key flag. */
function describeRelation(relation: RelationInfo): string[] {
  return relation.columns.map((c) => `${c.name} ${formatKind(c.kind)} ${c.native.name}/${c.native.id}/${c.native.modifier}${c.key ? ' key' : ''}`);
}

/** Every row, by chunks of `limit`, checking that each chunk starts after the last key of the one before. */
async function readAll(reader: TableReader, shape: TableShape, limit: number): Promise<RowImage[]> {
  const rows: RowImage[] = [];
  let after: RowKey | null = null;
  for (;;) {
    const chunk = await reader.readChunk(shape, after, limit);
    assert.ok(chunk.length <= limit, 'a chunk is never longer than its limit');
    rows.push(...chunk);
    if (chunk.length < limit) return rows;
    after = rowKey(shape, chunk[chunk.length - 1]!);
  }
}

/** Keys of `rows` in order; asserts each is strictly after the one before by compareKeys. */
function keysInOrder(shape: TableShape, rows: readonly RowImage[]): RowKey[] {
  const keys = rows.map((row) => rowKey(shape, row));
  for (let i = 1; i < keys.length; i++) {
    assert.ok(compareKeys(shape, keys[i - 1]!, keys[i]!) < 0, `key ${JSON.stringify(keys[i - 1])} comes before ${JSON.stringify(keys[i])}`);
  }
  return keys;
}

function sortedByCompareKeys(shape: TableShape, keys: readonly RowKey[]): RowKey[] {
  return [...keys].sort((a, b) => compareKeys(shape, a, b));
}

function columnIndex(shape: TableShape, name: string): number {
  const index = shape.relation.columns.findIndex((c) => c.name === name);
  assert.ok(index >= 0, `column ${name}`);
  return index;
}

/** Names that sort differently by byte, by case-insensitive collations and by UTF-16 code units. */
const NAMES = ['a', 'A', 'b', 'B', 'ab', 'a b', 'a\u0001', '', 'é', 'É', 'e', 'z', 'Z', 'ß', 'ss', '日本', '😀', '\uff5e', 'Ω', 'zz'];

describe('PostgreSQL table reader', () => {
  const site = `trd_${suffix}`;
  const dbA = `sitesync_trd_${suffix}_a`;
  const dbB = `sitesync_trd_${suffix}_b`;
  const dbW = `sitesync_trd_${suffix}_w`;
  let slotCreated = false;

  const open = (database: string, consistent = false): Promise<TableReader> =>
    postgresConnector.openTableReader!({ site, url: pgUrl(database), consistent });

  before(async () => {
    await pgSql('postgres', `CREATE DATABASE ${dbA}`);
    await pgSql('postgres', `CREATE DATABASE ${dbB}`);
  });

  after(async () => {
    if (slotCreated) await pgSql('postgres', `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, [slotName(site)]).catch(() => undefined);
    await pgSql('postgres', `DROP DATABASE IF EXISTS ${dbA} WITH (FORCE)`);
    await pgSql('postgres', `DROP DATABASE IF EXISTS ${dbB} WITH (FORCE)`);
    await pgSql('postgres', `DROP DATABASE IF EXISTS ${dbW} WITH (FORCE)`);
  });

  test('describes each table as capture does, and reads the values capture sends', async () => {
    await pgSql(
      dbA,
      `CREATE TYPE mood AS ENUM ('sad', 'ok');
       CREATE TYPE pair AS (a int, b text);
       CREATE DOMAIN money2 AS numeric(12,2) CHECK (VALUE >= 0);
       CREATE DOMAIN email AS text;
       CREATE TABLE kinds (
         id int8, tag text, gone int, b bool, i2 int2, i4 int4, f4 float4, f8 float8, n numeric, n122 numeric(12,2), nneg numeric(5,-2),
         vc varchar(10), ch char(5), nm name, qc "char", by bytea, d date, tm time(3), tmtz timetz, ts timestamp, tstz timestamptz(6), iv interval,
         u uuid, j json, jb jsonb, m mood, p pair, dm money2, de email, ia int4[], ta text[], inet_col inet, mo money, pt point, r int4range,
         x xml, bits bit(4), doubled int8 GENERATED ALWAYS AS (length(tag)) STORED, last text,
         PRIMARY KEY (id, tag));
       ALTER TABLE kinds DROP COLUMN gone;`,
    );
    // A configuration names at least two sites; the second is never started.
    const config = parseConfig({ broker: { url: 'amqp://guest:guest@127.0.0.1:5672/' }, sites: { [site]: { postgres: pgUrl(dbA) }, [`${site}_b`]: { postgres: pgUrl(dbB) } } });
    const source = postgresConnector.createSource!({ site, url: pgUrl(dbA), tables: ['public.kinds'], config, logger: silent });
    const collector = new Collector();
    const reader = await open(dbA);
    try {
      await source.prepare();
      slotCreated = true;
      await source.resumePoint();
      await source.open(collector);
      await pgSql(
        dbA,
        `INSERT INTO kinds (id, tag, b, i2, i4, f4, f8, n, n122, nneg, vc, ch, nm, qc, by, d, tm, tmtz, ts, tstz, iv, u, j, jb, m, p, dm, de, ia, ta,
                            inet_col, mo, pt, r, x, bits, last)
         VALUES (-9223372036854775808, 'Ünïcode ✓ 😀', true, -32768, 2147483647, 0.1, 1e23, 1.50, 1234567890.12, 12300, 'x y', 'ab', 'nm', 'q',
                 '\\x00ff10', '0044-03-15 BC', '24:00:00', '12:00:00+05:30', '2024-02-29 12:34:56.789012', '2024-02-29 12:34:56.789012+02',
                 'P1Y2M-3DT4H5M6.000001S', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '  {"a":1, "a":2}  ', '{"b": [1, 2.50], "a": null}', 'ok',
                 ROW(1, 'x "y"'), 10.5, 'me@example.org', '{{1,2},{3,NULL}}', '{"a b","",NULL,"NULL"}', '10.0.0.1/32', 12.34, '(1,2)', '[1,5)',
                 '<a>x</a>', B'1010', ''),
                (9223372036854775807, '', NULL, NULL, NULL, 'NaN', '-Infinity', 'NaN', NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'infinity',
                 NULL, NULL, '-infinity', 'infinity', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '{}', NULL, NULL, NULL, NULL, 'empty', NULL, NULL, NULL)`,
      );
      const captured = await collector.waitForInserts('kinds', 2);
      const shape = await reader.describe('public', 'kinds');
      assert.deepEqual(describeRelation(shape.relation), describeRelation(captured[0]!.relation));
      assert.equal(shape.relation.replicaIdentity, captured[0]!.relation.replicaIdentity);
      assert.equal(shape.relation.columns.some((c) => c.name === 'doubled' || c.name === 'gone'), false, 'generated and dropped columns are not sent');
      assert.deepEqual(shape.keyColumns, [columnIndex(shape, 'id'), columnIndex(shape, 'tag')]);
      assert.deepEqual(
        { schema: shape.relation.schema, table: shape.relation.table },
        { schema: captured[0]!.relation.schema, table: captured[0]!.relation.table },
      );

      const read = await readAll(reader, shape, 1);
      assert.deepEqual(
        read.map((row) => row.values),
        captured.map((c) => c.newRow.values),
      );
      assert.deepEqual(read.map((row) => row.unchanged), [[], []]);
      // A few of the forms that a driver would otherwise have turned into JavaScript values.
      const first = read[0]!.values;
      assert.equal(first[columnIndex(shape, 'f4')], '0.1');
      assert.equal(first[columnIndex(shape, 'f8')], '9.999999999999999e+22');
      assert.equal(first[columnIndex(shape, 'b')], 't');
      assert.equal(first[columnIndex(shape, 'ch')], 'ab   ');
      assert.equal(first[columnIndex(shape, 'tstz')], '2024-02-29 10:34:56.789012+00');
      assert.equal(first[columnIndex(shape, 'd')], '0044-03-15 BC');
      assert.equal(first[columnIndex(shape, 'last')], '');
    } finally {
      await reader.close();
      await source.end();
    }
  });

  test('chunks meet every row once, in the kind-neutral order, with composite keys of numbers and text', async () => {
    await pgSql(
      dbA,
      // The names' own collation (ICU, English) orders them otherwise than their bytes: a reader that
      // sorted by it, or by the primary key's index, would fail here.
      `CREATE TABLE pages (n int, name text COLLATE "en-x-icu", payload text, PRIMARY KEY (n, name));
       CREATE TABLE pages_by_name (name varchar(20) COLLATE "en-x-icu", n int8, payload text, PRIMARY KEY (name, n));
       INSERT INTO pages SELECT n, name, md5(n || name) FROM generate_series(-80, 79) AS n, unnest($1::text[]) AS name;
       INSERT INTO pages_by_name SELECT name, n * 100000000000, 'p' FROM generate_series(-60, 59) AS n, unnest($1::text[]) AS name;`.replace(/\$1/g, pgArray(NAMES)),
    );
    const reader = await open(dbA);
    try {
      for (const [table, total] of [['pages', 160 * NAMES.length], ['pages_by_name', 120 * NAMES.length]] as const) {
        const shape = await reader.describe('public', table);
        const rows = await readAll(reader, shape, 97);
        assert.equal(rows.length, total, `${table}: every row`);
        const keys = keysInOrder(shape, rows);
        assert.equal(new Set(keys.map((k) => JSON.stringify(k))).size, total, `${table}: each row once`);
        const all = await pgSql<{ k: string[] }>(dbA, `SELECT ARRAY[${shape.keyColumns.map((i) => `${shape.relation.columns[i]!.name}::text`).join(', ')}] AS k FROM ${table}`);
        assert.deepEqual(keys, sortedByCompareKeys(shape, all.map((r) => r.k)), `${table}: the database's order is compareKeys' order`);
        const byIndex = await pgSql<{ k: string[] }>(dbA, `SELECT ARRAY[${shape.keyColumns.map((i) => `${shape.relation.columns[i]!.name}::text`).join(', ')}] AS k FROM ${table} ORDER BY ${shape.keyColumns.map((i) => shape.relation.columns[i]!.name).join(', ')}`);
        assert.notDeepEqual(byIndex.map((r) => r.k), keys, `${table}: the column's own collation orders otherwise (else this test proves nothing)`);
      }
    } finally {
      await reader.close();
    }
  });

  test('the database orders every orderable key kind as compareKeys does', async () => {
    const cases: [string, string, string[]][] = [
      ['k_int8', 'int8', ['-9223372036854775808', '-1', '0', '9', '10', '9007199254740993', '9223372036854775807']],
      ['k_numeric', 'numeric', ['NaN', 'Infinity', '-Infinity', '-1.5', '-0.001', '0', '0.0001', '1.50', '1.51', '10', '99999999999999999999.5']],
      ['k_numeric_scaled', 'numeric(6,2)', ['-9999.99', '-0.01', '0.00', '0.10', '1.00', '10.00']],
      ['k_float8', 'float8', ['NaN', 'Infinity', '-Infinity', '-1e+300', '-0.5', '0', '5e-324', '0.1', '1e+23', '2']],
      ['k_float4', 'float4', ['NaN', '-Infinity', '-3.4028235e+38', '-1', '0', '0.1', '0.100000024', '1e+06', 'Infinity']],
      ['k_bool', 'bool', ['t', 'f']],
      ['k_date', 'date', ['infinity', '-infinity', '4714-11-24 BC', '0001-12-31 BC', '0001-01-01', '1999-12-31', '2000-01-01', '10000-01-01']],
      ['k_ts', 'timestamp', ['infinity', '-infinity', '0044-03-15 12:00:00.5 BC', '1970-01-01 00:00:00', '1970-01-01 00:00:00.000001', '2024-02-29 23:59:59.999999']],
      ['k_tstz', 'timestamptz', ['2024-01-01 00:00:00+00', '2023-12-31 23:59:59.999999+00', 'infinity', '0001-01-01 00:00:00+00 BC']],
      ['k_time', 'time', ['00:00:00', '00:00:00.000001', '12:00:00.5', '23:59:59.999999', '24:00:00']],
      ['k_uuid', 'uuid', ['00000000-0000-0000-0000-000000000000', 'ffffffff-ffff-ffff-ffff-ffffffffffff', '0a000000-0000-0000-0000-000000000000', '9fffffff-0000-0000-0000-000000000000']],
      ['k_bytea', 'bytea', ['\\x', '\\x00', '\\x0000', '\\x01', '\\x7f', '\\x80', '\\xff', '\\xff00']],
      ['k_text', 'text', NAMES],
      ['k_text_icu', 'text COLLATE "en-x-icu"', NAMES],
      ['k_bpchar', 'char(3)', ['a', 'A', 'ab', 'b', 'é']],
      ['k_enum', 'colour', ['red', 'green', 'blue', 'Black']],
      ['k_interval', 'interval', ['P1D', 'PT1H', 'P-1D', 'P1Y', 'PT0S']],
      ['k_inet', 'inet', ['10.0.0.1', '9.0.0.1', '::1', '10.0.0.0/8']],
    ];
    await pgSql(dbA, `CREATE TYPE colour AS ENUM ('red', 'green', 'blue', 'Black')`);
    for (const [table, type, values] of cases) {
      await pgSql(dbA, `CREATE TABLE ${table} (k ${type} PRIMARY KEY); INSERT INTO ${table} SELECT unnest($1::text[])::${type}`.replace('$1', pgArray(values)));
    }
    const reader = await open(dbA);
    try {
      for (const [table, , values] of cases) {
        const shape = await reader.describe('public', table);
        const rows = await readAll(reader, shape, 2);
        const keys = keysInOrder(shape, rows);
        assert.equal(keys.length, values.length, `${table}: every row`);
        assert.deepEqual(keys, sortedByCompareKeys(shape, keys), `${table}: the database's order is compareKeys' order`);
        // And each chunk boundary found the rest: the key texts bound back as the same values.
        assert.deepEqual((await reader.readKeys(shape, keys)).map((r) => rowKey(shape, r)), keys, `${table}: readKeys finds every key it read`);
      }
    } finally {
      await reader.close();
    }
  });

  test('in a database of another encoding, text keys still sort by their UTF-8 bytes', async () => {
    // WIN1252's bytes order € (0x80) and Œ (0x8C) before ÿ (0xFF); UTF-8's put ÿ (C3 BF) before Œ (C5 92) and € (E2 82 AC).
    await pgSql('postgres', `CREATE DATABASE ${dbW} ENCODING 'WIN1252' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`);
    const names = ['a', 'z', 'é', 'ÿ', 'Œ', '€', 'ab'];
    await pgSql(dbW, `CREATE TABLE w (n int, k text, m text, PRIMARY KEY (n, k))`);
    await pgSql(dbW, `INSERT INTO w SELECT n, k, k FROM generate_series(1, 3) n, unnest($1::text[]) k`, [names]);
    const reader = await open(dbW);
    try {
      const shape = await reader.describe('public', 'w');
      const rows = await readAll(reader, shape, 2);
      const keys = keysInOrder(shape, rows);
      assert.equal(keys.length, 3 * names.length);
      assert.deepEqual(rows.map((r) => r.values[2]), keys.map((k) => k[1]), 'values arrive as UTF-8 text');
      const byDatabase = await pgSql<{ n: string; k: string }>(dbW, `SELECT n::text, k FROM w ORDER BY n, k COLLATE "C"`);
      assert.notDeepEqual(byDatabase.map((r) => [r.n, r.k]), keys, 'the database\'s own byte order is otherwise (else this test proves nothing)');
      assert.deepEqual((await reader.readKeys(shape, [['2', 'Œ'], ['1', '€']])).map((r) => rowKey(shape, r)), [['1', '€'], ['2', 'Œ']]);
    } finally {
      await reader.close();
    }
  });

  test('readKeys gives the rows of the keys that exist, in key order', async () => {
    const reader = await open(dbA);
    try {
      const shape = await reader.describe('public', 'pages');
      const wanted: RowKey[] = [['5', 'Z'], ['-80', 'a'], ['3', 'no such name'], ['79', '😀'], ['5', 'z'], ['1000', 'a'], ['-80', 'a'], ['0', '']];
      const rows = await reader.readKeys(shape, wanted);
      assert.deepEqual(
        rows.map((r) => rowKey(shape, r)),
        [['-80', 'a'], ['0', ''], ['5', 'Z'], ['5', 'z'], ['79', '😀']],
      );
      assert.equal(rows[0]!.values[columnIndex(shape, 'payload')], (await pgSql<{ p: string }>(dbA, `SELECT md5('-80a') AS p`))[0]!.p);
      assert.deepEqual(await reader.readKeys(shape, []), []);
    } finally {
      await reader.close();
    }
  });

  test('a consistent reader sees one point in time while another connection writes', async () => {
    await pgSql(dbA, `CREATE TABLE moving (id int PRIMARY KEY, v text); INSERT INTO moving SELECT g, 'before' FROM generate_series(1, 50) g`);
    const fixed = await open(dbA, true);
    const latest = await open(dbA, false);
    try {
      const shape = await fixed.describe('public', 'moving');
      await pgSql(dbA, `INSERT INTO moving VALUES (0, 'new'), (51, 'new'); DELETE FROM moving WHERE id = 25; UPDATE moving SET v = 'after' WHERE id = 10`);
      const seen = await readAll(fixed, shape, 7);
      assert.equal(seen.length, 50);
      assert.deepEqual(seen.map((r) => r.values[0]), Array.from({ length: 50 }, (_, i) => String(i + 1)));
      assert.ok(seen.every((r) => r.values[1] === 'before'));
      assert.deepEqual((await fixed.readKeys(shape, [['0'], ['25']])).map((r) => r.values), [['25', 'before']]);
      const latestShape = await latest.describe('public', 'moving');
      const now = await readAll(latest, latestShape, 7);
      assert.equal(now.length, 51);
      assert.equal(now.find((r) => r.values[0] === '10')!.values[1], 'after');
    } finally {
      await fixed.close();
      await latest.close();
    }
  });

  test('a table without a primary key, a missing table, a view and an array key are refused, naming the table', async () => {
    await pgSql(dbA, `CREATE TABLE keyless (a int, b text); CREATE VIEW pages_view AS SELECT * FROM pages; CREATE TABLE arrkey (k int[] PRIMARY KEY)`);
    const reader = await open(dbA, true);
    try {
      const refused = async (schema: string, table: string, pattern: RegExp): Promise<void> => {
        await assert.rejects(reader.describe(schema, table), (error: unknown) => {
          assert.ok(error instanceof SitesyncError, String(error));
          assert.equal(error.code, 'SITESYNC_ERR_CONFIG');
          assert.match(error.message, pattern);
          assert.ok(!error.message.includes('\n'), 'one line');
          return true;
        });
      };
      await refused('public', 'keyless', /table public\.keyless at site trd_\w+ has no primary key.*ADD PRIMARY KEY/);
      await refused('public', 'nowhere', /table public\.nowhere does not exist at site trd_\w+/);
      await refused('other', 'pages', /table other\.pages does not exist/);
      await refused('public', 'pages_view', /public\.pages_view at site trd_\w+ is not a table/);
      await refused('public', 'arrkey', /public\.arrkey at site trd_\w+: primary key column k is of type _int4 \(kind array\)/);
      // Refusals read only the catalog: the consistent reader's snapshot is still there.
      assert.equal((await reader.describe('public', 'pages')).relation.table, 'pages');
      // What sitesync join takes when no site lists its tables: tables with a primary key, not views, not sitesync's.
      await pgSql(dbA, `CREATE SCHEMA IF NOT EXISTS sitesync; CREATE TABLE IF NOT EXISTS sitesync.own (k int PRIMARY KEY)`);
      const listed = await reader.listTables!();
      assert.ok(listed.includes('public.pages') && listed.includes('public.arrkey'), listed.join(', '));
      for (const absent of ['public.keyless', 'public.pages_view', 'sitesync.own']) assert.ok(!listed.includes(absent), `${absent} is not listed`);
    } finally {
      await reader.close();
    }
  });

  test('rangeDigest: equal data, equal digests; one value changed (NULL against empty too), different; counts and keyAt', async () => {
    const create = `CREATE TABLE dig (id int, name text, v text, n numeric, PRIMARY KEY (id, name));
                    INSERT INTO dig SELECT g, CASE WHEN g % 3 = 0 THEN 'É' ELSE 'a' END, 'v' || g, g / 7.0 FROM generate_series(1, 3000) g;
                    UPDATE dig SET v = NULL WHERE id = 100; UPDATE dig SET v = '' WHERE id = 200; UPDATE dig SET v = 'NULL' WHERE id = 300;`;
    await pgSql(dbA, create);
    await pgSql(dbB, create);
    const a = await open(dbA, true);
    const b = await open(dbB);
    try {
      assert.equal(a.digestKind, 'postgres');
      const shapeA = await a.describe('public', 'dig');
      const shapeB = await b.describe('public', 'dig');
      const columns = shapeA.relation.columns.map((c) => c.name);
      const all = await readAll(a, shapeA, 1000);
      const keys = all.map((r) => rowKey(shapeA, r));
      const whole = await a.rangeDigest!(shapeA, columns, null, null);
      assert.equal(whole.rows, 3000);
      assert.deepEqual(await b.rangeDigest!(shapeB, columns, null, null), whole);
      const from = keys[99]!;
      const to = keys[1999]!;
      const part = await a.rangeDigest!(shapeA, columns, from, to);
      assert.equal(part.rows, 1900, '(from, to]: after from, up to and with to');
      assert.deepEqual(await b.rangeDigest!(shapeB, columns, from, to), part);
      assert.equal((await a.rangeDigest!(shapeA, columns, null, to)).rows, 2000);
      assert.equal((await a.rangeDigest!(shapeA, columns, from, null)).rows, 2900);
      assert.notEqual(part.digest, (await a.rangeDigest!(shapeA, columns, keys[100]!, to)).digest, 'one row less, another digest');

      const changes = [
        `UPDATE dig SET v = 'v1001 ' WHERE id = 1001`,
        `UPDATE dig SET v = '' WHERE id = 100`, // NULL → ''
        `UPDATE dig SET v = NULL WHERE id = 200`, // '' → NULL
        `UPDATE dig SET v = NULL WHERE id = 300`, // 'NULL' → NULL
        `UPDATE dig SET n = 1001 / 7.0 + 0.000000000000000000001 WHERE id = 1001`,
      ];
      for (const change of changes) {
        await pgSql(dbB, change);
        const changed = await b.rangeDigest!(shapeB, columns, null, null);
        assert.equal(changed.rows, 3000);
        assert.notEqual(changed.digest, whole.digest, change);
        await pgSql(dbB, `DROP TABLE dig; ${create}`);
        assert.deepEqual(await b.rangeDigest!(shapeB, columns, null, null), whole, 'equal again once the data is');
      }
      // Only the listed columns count (the key always does).
      await pgSql(dbB, `UPDATE dig SET v = 'other' WHERE id = 5`);
      assert.deepEqual(await b.rangeDigest!(shapeB, ['id', 'name', 'n'], null, null), await a.rangeDigest!(shapeA, ['id', 'name', 'n'], null, null));
      assert.notDeepEqual(await b.rangeDigest!(shapeB, ['v'], null, null), await a.rangeDigest!(shapeA, ['v'], null, null));

      assert.deepEqual(await a.keyAt!(shapeA, null, null, 0), keys[0]);
      assert.deepEqual(await a.keyAt!(shapeA, from, to, 0), keys[100]);
      assert.deepEqual(await a.keyAt!(shapeA, from, to, 1899), keys[1999]);
      assert.equal(await a.keyAt!(shapeA, from, to, 1900), null);
      assert.deepEqual(await a.keyAt!(shapeA, from, null, 2899), keys[2999]);
      assert.equal(await a.keyAt!(shapeA, from, null, 2900), null);
      assert.ok((await a.estimateRows(shapeA)) >= 0);
      await pgSql(dbA, 'ANALYZE dig');
      const fresh = await open(dbA);
      const estimate = await fresh.estimateRows(shapeA).finally(() => fresh.close());
      assert.ok(estimate > 2000 && estimate < 4000, `estimate ${estimate} after ANALYZE`);
    } finally {
      await a.close();
      await b.close();
    }
  });
});

/** A PostgreSQL array literal of texts, as SQL. */
function pgArray(values: readonly string[]): string {
  const element = (v: string): string => `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  return `('{${values.map(element).join(',')}}' :: text)`.replace(/\u0001/g, "' || chr(1) || '");
}


describe('MariaDB table reader', () => {
  const site = `trm_${suffix}`;
  let db: PrivateMariaDb;

  const open = (consistent = false): Promise<TableReader> => mariadbConnector.openTableReader!({ site, url: db.url(), consistent });

  /** Statements on a connection of their own, with this session's time zone and SQL mode. */
  async function my(sql: string, params: unknown[] = [], session = `SET time_zone = '+00:00'`): Promise<RowDataPacketLike[]> {
    const connection = await mysql.createConnection({ host: '127.0.0.1', port: db.port, user: 'root', multipleStatements: true, dateStrings: true, supportBigNumbers: true, bigNumberStrings: true });
    try {
      await connection.query(session);
      const [rows] = await connection.query(sql, params);
      return rows as RowDataPacketLike[];
    } finally {
      await connection.end();
    }
  }

  before(async () => {
    db = await startPrivateMariaDb({ serverId: 21 });
    await db.query(`
      CREATE DATABASE app_a;
      CREATE DATABASE app_b;
      CREATE DATABASE IF NOT EXISTS sitesync;
      CREATE TABLE IF NOT EXISTS sitesync.apply_progress (
        source VARCHAR(40) NOT NULL PRIMARY KEY, source_kind VARCHAR(20) NOT NULL, position VARCHAR(64) NOT NULL, commit_time_micros BIGINT NOT NULL
      ) ENGINE=InnoDB;`);
  });

  after(async () => {
    await db?.destroy();
  });

  test('describes each table as capture does, and reads the values capture sends', async () => {
    await db.query(`
      CREATE TABLE app_a.kinds (
        id INT, tag VARCHAR(40), b TINYINT(1), i8 TINYINT, i16 SMALLINT, u16 SMALLINT UNSIGNED, i24 MEDIUMINT, i32 INT, u32 INT UNSIGNED,
        i64 BIGINT, u64 BIGINT UNSIGNED, f FLOAT, d DOUBLE, dec2 DECIMAL(12,2), dec0 DECIMAL(30,0), c CHAR(5), vc VARCHAR(40) CHARACTER SET latin1,
        txt TEXT, tt TINYTEXT, mt MEDIUMTEXT, bin BINARY(4), vbin VARBINARY(10), blb BLOB, lb LONGBLOB, dt DATE, tm TIME(6), tm0 TIME, dtm DATETIME(6),
        dtm0 DATETIME, ts TIMESTAMP(6) NULL DEFAULT NULL, j JSON, e ENUM('a','b'), s SET('x','y'), y YEAR, bt BIT(5), u UUID, ip INET6, ip4 INET4,
        virt INT AS (i32 + 1) VIRTUAL, stored INT AS (i32 + 2) PERSISTENT, hidden INT INVISIBLE, n INT NULL,
        PRIMARY KEY (id, tag)
      ) DEFAULT CHARSET=utf8mb4;`);
    const config = parseConfig({
      broker: { url: 'amqp://guest:guest@127.0.0.1:5672/' },
      sites: { [site]: { database: { kind: 'mariadb', url: db.url() } }, [`${site}_b`]: { database: { kind: 'mariadb', url: db.url() } } },
    });
    const source = mariadbConnector.createSource!({ site, url: db.url(), tables: ['app_a.kinds'], config, logger: silent });
    const collector = new Collector();
    const reader = await open();
    try {
      await source.prepare();
      await source.resumePoint();
      await source.open(collector);
      // The writer's time zone must not matter (a TIMESTAMP is an instant); values without a canonical form
      // (zero dates, TIME past a day, a TINYINT(1) of 2, an ENUM's error value) travel as MariaDB prints them.
      await my(
        `INSERT INTO app_a.kinds (id, tag, b, i8, i16, u16, i24, i32, u32, i64, u64, f, d, dec2, dec0, c, vc, txt, tt, mt, bin, vbin, blb, lb, dt, tm, tm0,
                                  dtm, dtm0, ts, j, e, s, y, bt, u, ip, ip4, hidden, n)
         VALUES (1, 'Ünïcode ✓ 😀', 1, -128, -32768, 65535, -8388608, -2147483648, 4294967295, -9223372036854775808, 18446744073709551615, 1.1, 1e100,
                 -1234567.89, 123456789012345678901234567890, 'ab', 'héllo wörld', 'multi\nline', 't', 'm', x'0102', x'00ff', x'deadbeef', x'', '2024-02-29',
                 '12:34:56.789', '01:02:03', '2024-01-02 03:04:05.12345', '2024-01-02 03:04:05', '2024-01-02 03:04:05.123456',
                 '{"a": [1, 2.5, "x"], "big": 12345678901234567890}', 'b', 'x,y', 2155, b'10101', '123e4567-e89b-12d3-a456-426614174000', '2001:db8::1',
                 '192.0.2.1', 7, NULL),
                (2, '', 2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 3.4028234e38, -2.5e-300, 0, -1, '', '', '', NULL, NULL, NULL, NULL, NULL, NULL,
                 '0000-00-00', '-01:02:03.5', '838:59:59', '0000-00-00 00:00:00', '0000-00-00 00:00:00', '0000-00-00 00:00:00', NULL, 'zzz', '', 0, b'0',
                 '9f2c1a4e-5b6d-4c7e-8f90-a1b2c3d4e5f6', '::ffff:192.0.2.1', '0.0.0.0', NULL, NULL),
                (3, 'x', 0, 0, 0, 0, 0, 0, 0, 0, 0, -0.5, 0.1, 0.5, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '2020-00-05', '00:00:00',
                 '00:00:00', '9999-12-31 23:59:59.999999', '1000-01-01 00:00:00', '2038-01-19 03:14:07', 'null', 'a', 'x', 1901, NULL, NULL, NULL, NULL,
                 NULL, 5)`,
        [],
        `SET time_zone = '+05:00', sql_mode = ''`,
      );
      const captured = await collector.waitForInserts('kinds', 3);
      const shape = await reader.describe('app_a', 'kinds');
      assert.deepEqual(describeRelation(shape.relation), describeRelation(captured[0]!.relation));
      assert.equal(shape.relation.replicaIdentity, captured[0]!.relation.replicaIdentity);
      assert.deepEqual(shape.keyColumns, [columnIndex(shape, 'id'), columnIndex(shape, 'tag')]);
      assert.deepEqual({ schema: shape.relation.schema, table: shape.relation.table }, { schema: 'app_a', table: 'kinds' });

      const read = await readAll(reader, shape, 2);
      assert.deepEqual(
        read.map((row) => row.values),
        captured.map((c) => c.newRow.values),
      );
      const first = read[0]!.values;
      assert.equal(first[columnIndex(shape, 'f')], '1.1', 'a FLOAT as its float32, read exactly');
      assert.equal(first[columnIndex(shape, 'ts')], '2024-01-01 22:04:05.123456+00');
      assert.equal(first[columnIndex(shape, 'u64')], '18446744073709551615');
      assert.equal(read[1]!.values[columnIndex(shape, 'tm')], '-01:02:03.500000');
    } finally {
      await reader.close();
      await source.end();
    }
  });

  /** Names that do not collide under utf8mb4_general_ci (case, accents and supplementary characters are equal there). */
  const CI_NAMES = ['a', 'B', 'ab', 'a b', 'a\u0001', '', 'É', 'Z', 'ß', 'ss', '日本', '😀', 'Ω', 'zz'];

  test('chunks meet every row once, in the kind-neutral order, with composite keys of numbers and text', async () => {
    // utf8mb4_bin sorts by code point but with PAD SPACE ('a' after 'a\u0001'); general_ci ignores case.
    await my(`CREATE TABLE app_a.pages (n INT, name VARCHAR(20) COLLATE utf8mb4_bin, payload VARCHAR(40), PRIMARY KEY (n, name));
              CREATE TABLE app_a.pages_by_name (name VARCHAR(20) COLLATE utf8mb4_general_ci, n BIGINT, payload VARCHAR(40), PRIMARY KEY (name, n))`);
    const pages = NAMES.flatMap((name) => Array.from({ length: 160 }, (_, i) => [i - 80, name, `p${i}${name}`]));
    await my(`INSERT INTO app_a.pages VALUES ${pages.map(() => '(?, ?, ?)').join(', ')}`, pages.flat());
    const byName = CI_NAMES.flatMap((name) => Array.from({ length: 120 }, (_, i) => [name, String((i - 60) * 100000000000), 'p']));
    await my(`INSERT INTO app_a.pages_by_name VALUES ${byName.map(() => '(?, ?, ?)').join(', ')}`, byName.flat());
    const reader = await open();
    try {
      for (const [table, total] of [['pages', pages.length], ['pages_by_name', byName.length]] as const) {
        const shape = await reader.describe('app_a', table);
        const rows = await readAll(reader, shape, 97);
        assert.equal(rows.length, total, `${table}: every row`);
        const keys = keysInOrder(shape, rows);
        assert.equal(new Set(keys.map((k) => JSON.stringify(k))).size, total, `${table}: each row once`);
        // Chunks smaller than the rows of one first-column value (readChunk bounds its range by that column).
        assert.deepEqual((await readAll(reader, shape, 7)).map((r) => rowKey(shape, r)), keys, `${table}: the same rows in chunks of 7`);
        const keyNames = shape.keyColumns.map((i) => `\`${shape.relation.columns[i]!.name}\``);
        const all = await my(`SELECT ${keyNames.join(', ')} FROM app_a.${table}`);
        const allKeys = all.map((r) => shape.keyColumns.map((i) => String(r[shape.relation.columns[i]!.name])));
        assert.deepEqual(keys, sortedByCompareKeys(shape, allKeys), `${table}: the database's order is compareKeys' order`);
        const byIndex = await my(`SELECT ${keyNames.join(', ')} FROM app_a.${table} ORDER BY ${keyNames.join(', ')}`);
        assert.notDeepEqual(
          byIndex.map((r) => shape.keyColumns.map((i) => String(r[shape.relation.columns[i]!.name]))),
          keys,
          `${table}: the column's own collation orders otherwise (else this test proves nothing)`,
        );
      }
    } finally {
      await reader.close();
    }
  });

  test('the database orders every orderable key kind as compareKeys does', async () => {
    const cases: [string, string, string[]][] = [
      ['k_int', 'INT', ['-2147483648', '-1', '0', '9', '10', '2147483647']],
      ['k_bigint', 'BIGINT', ['-9223372036854775808', '-1', '0', '9007199254740993', '9223372036854775807']],
      ['k_ubigint', 'BIGINT UNSIGNED', ['0', '9', '10', '9223372036854775808', '18446744073709551615']],
      ['k_bool', 'TINYINT(1)', ['0', '1', '2', '-1']],
      ['k_decimal', 'DECIMAL(10,2)', ['-99999999.99', '-0.01', '0', '0.10', '1.5', '10']],
      ['k_float', 'FLOAT', ['-3.4028234e38', '-1', '0', '0.1', '0.10000001', '1e6', '16777216']],
      ['k_double', 'DOUBLE', ['-1e300', '-0.5', '0', '5e-324', '0.1', '0.30000000000000004', '1e23']],
      ['k_year', 'YEAR', ['0000', '1901', '2000', '2155']],
      ['k_date', 'DATE', ['0000-00-00', '2020-00-05', '2019-12-31', '2020-01-01', '1000-01-01', '9999-12-31']],
      ['k_datetime', 'DATETIME(6)', ['0000-00-00 00:00:00', '1000-01-01 00:00:00', '2024-02-29 23:59:59.999999', '2024-03-01 00:00:00', '2024-03-01 00:00:00.000001']],
      ['k_timestamp', 'TIMESTAMP(6)', ['1970-01-01 00:00:01', '2024-02-29 23:59:59.999999', '2024-03-01 00:00:00', '2038-01-19 03:14:07']],
      ['k_time', 'TIME(6)', ['-838:59:59', '-01:00:00.5', '00:00:00', '00:00:00.000001', '23:59:59.999999', '24:00:00', '838:59:59']],
      ['k_text', 'VARCHAR(20) COLLATE utf8mb4_bin', NAMES],
      ['k_latin1', 'VARCHAR(20) CHARACTER SET latin1', ['a', 'B', 'é', '€', 'z', 'ÿ', 'Œ']],
      ['k_char', 'CHAR(3) COLLATE utf8mb4_general_ci', ['a', 'B', 'ab', 'é', 'ß']],
      ['k_enum', "ENUM('red','green','blue','Black')", ['red', 'green', 'blue', 'Black']],
      ['k_set', "SET('x','y','Z')", ['x', 'y', 'Z', 'x,y', 'x,Z']],
      ['k_binary', 'BINARY(2)', ['\0\0', '\0\x01', 'a ', 'a\0', '\xff\0']],
      ['k_varbinary', 'VARBINARY(4)', ['', '\0', '\0\0', 'a', 'a ', 'a\0', 'b']],
      ['k_uuid', 'UUID', ['00000000-0000-0000-0000-000000000001', '123e4567-e89b-12d3-a456-426614174000', '9f2c1a4e-5b6d-4c7e-8f90-a1b2c3d4e5f6', 'ffffffff-0000-1000-8000-000000000000', '0a000000-0000-4000-8000-00000000000a']],
      ['k_inet6', 'INET6', ['::1', '2001:db8::1', '::ffff:10.0.0.1', 'fe80::1', '10::']],
      ['k_bit', 'BIT(5)', ['0', '1', '2', '16', '31']],
    ];
    for (const [table, type, values] of cases) {
      const binary = /BINARY/.test(type);
      await my(`CREATE TABLE app_a.${table} (k ${type} PRIMARY KEY)`);
      await my(
        `INSERT INTO app_a.${table} VALUES ${values.map(() => (binary ? '(UNHEX(?))' : /BIT/.test(type) ? '(CAST(? AS UNSIGNED))' : '(?)')).join(', ')}`,
        values.map((v) => (binary ? Buffer.from(v, 'latin1').toString('hex') : v)),
        `SET time_zone = '+00:00', sql_mode = ''`,
      );
    }
    const reader = await open();
    try {
      for (const [table, , values] of cases) {
        const shape = await reader.describe('app_a', table);
        const rows = await readAll(reader, shape, 2);
        const keys = keysInOrder(shape, rows);
        assert.equal(keys.length, values.length, `${table}: every row`);
        assert.deepEqual(keys, sortedByCompareKeys(shape, keys), `${table}: the database's order is compareKeys' order`);
        assert.deepEqual((await reader.readKeys(shape, keys)).map((r) => rowKey(shape, r)), keys, `${table}: readKeys finds every key it read`);
      }
    } finally {
      await reader.close();
    }
  });

  test('readKeys gives the rows of the keys that exist, in key order, matching their text exactly', async () => {
    const reader = await open();
    try {
      const shape = await reader.describe('app_a', 'pages');
      const wanted: RowKey[] = [['5', 'Z'], ['-80', 'a'], ['3', 'no such name'], ['79', '😀'], ['5', 'z'], ['1000', 'a'], ['-80', 'a'], ['0', ''], ['0', 'a ']];
      const rows = await reader.readKeys(shape, wanted);
      assert.deepEqual(
        rows.map((r) => rowKey(shape, r)),
        [['-80', 'a'], ['0', ''], ['5', 'Z'], ['5', 'z'], ['79', '😀']],
        "'a ' is not 'a', though PAD SPACE finds one for the other",
      );
      assert.equal(rows[0]!.values[columnIndex(shape, 'payload')], 'p0a');
      // A case-insensitive key column finds 'A' for 'a': not the row asked for.
      const ci = await reader.describe('app_a', 'pages_by_name');
      assert.deepEqual((await reader.readKeys(ci, [['A', '0'], ['a', '0'], ['Ä', '0'], ['SS', '0']])).map((r) => rowKey(ci, r)), [['a', '0']]);
      // More keys than one statement takes.
      const many = Array.from({ length: 700 }, (_, i): RowKey => [String((i % 160) - 80), NAMES[i % NAMES.length]!]);
      const found = await reader.readKeys(shape, many);
      const distinct = [...new Map(many.map((k) => [JSON.stringify(k), k])).values()];
      assert.deepEqual(found.map((r) => rowKey(shape, r)), sortedByCompareKeys(shape, distinct));
      assert.deepEqual(await reader.readKeys(shape, []), []);
    } finally {
      await reader.close();
    }
  });

  test('a consistent reader sees one point in time while another connection writes', async () => {
    await my(`CREATE TABLE app_a.moving (id INT PRIMARY KEY, v VARCHAR(10)) ENGINE=InnoDB;
              INSERT INTO app_a.moving SELECT seq, 'before' FROM app_a.seq_1_to_50`);
    const fixed = await open(true);
    const latest = await open(false);
    try {
      const shape = await fixed.describe('app_a', 'moving');
      await my(`INSERT INTO app_a.moving VALUES (0, 'new'), (51, 'new'); DELETE FROM app_a.moving WHERE id = 25; UPDATE app_a.moving SET v = 'after' WHERE id = 10`);
      const seen = await readAll(fixed, shape, 7);
      assert.deepEqual(seen.map((r) => r.values[0]), Array.from({ length: 50 }, (_, i) => String(i + 1)));
      assert.ok(seen.every((r) => r.values[1] === 'before'));
      assert.deepEqual((await fixed.readKeys(shape, [['0'], ['25']])).map((r) => r.values), [['25', 'before']]);
      const now = await readAll(latest, await latest.describe('app_a', 'moving'), 7);
      assert.equal(now.length, 51);
      assert.equal(now.find((r) => r.values[0] === '10')!.values[1], 'after');
    } finally {
      await fixed.close();
      await latest.close();
    }
  });

  test('a table without a primary key, a missing table and a view are refused, naming the table', async () => {
    await my(`CREATE TABLE app_a.keyless (a INT, b TEXT); CREATE VIEW app_a.pages_view AS SELECT * FROM app_a.pages`);
    const reader = await open(true);
    try {
      const refused = async (schema: string, table: string, pattern: RegExp): Promise<void> => {
        await assert.rejects(reader.describe(schema, table), (error: unknown) => {
          assert.ok(error instanceof SitesyncError, String(error));
          assert.equal(error.code, 'SITESYNC_ERR_CONFIG');
          assert.match(error.message, pattern);
          assert.ok(!error.message.includes('\n'), 'one line');
          return true;
        });
      };
      await refused('app_a', 'keyless', /table app_a\.keyless at site trm_\w+ has no primary key.*ADD PRIMARY KEY/);
      await refused('app_a', 'nowhere', /table app_a\.nowhere does not exist at site trm_\w+/);
      await refused('nodb', 'pages', /table nodb\.pages does not exist/);
      await refused('app_a', 'pages_view', /app_a\.pages_view at site trm_\w+ is not a table \(view\)/);
      assert.equal((await reader.describe('app_a', 'pages')).relation.table, 'pages');
      // What sitesync join takes when no site lists its tables: tables with a primary key, not views, not sitesync's or the server's.
      await my(`CREATE DATABASE IF NOT EXISTS sitesync; CREATE TABLE IF NOT EXISTS sitesync.own (k INT PRIMARY KEY)`);
      const listed = await reader.listTables!();
      assert.ok(listed.includes('app_a.pages'), listed.join(', '));
      for (const absent of ['app_a.keyless', 'app_a.pages_view', 'sitesync.own', 'mysql.user']) assert.ok(!listed.includes(absent), `${absent} is not listed`);
    } finally {
      await reader.close();
    }
  });

  test('rangeDigest: equal data, equal digests; one value changed (NULL against empty too), different; counts and keyAt', async () => {
    const create = (schema: string): string => `
      CREATE TABLE ${schema}.dig (id INT, name VARCHAR(10), v VARCHAR(20), f FLOAT, d DECIMAL(20,10), b VARBINARY(4), PRIMARY KEY (id, name));
      INSERT INTO ${schema}.dig SELECT seq, IF(seq % 3 = 0, 'É', 'a'), CONCAT('v', seq), seq / 7, seq / 7, UNHEX(HEX(seq)) FROM ${schema}.seq_1_to_3000;
      UPDATE ${schema}.dig SET v = NULL WHERE id = 100; UPDATE ${schema}.dig SET v = '' WHERE id = 200; UPDATE ${schema}.dig SET v = 'NULL' WHERE id = 300;`;
    await my(create('app_a'));
    await my(create('app_b'));
    const reader = await open(true);
    const other = await open();
    try {
      assert.equal(reader.digestKind, 'mariadb');
      const shapeA = await reader.describe('app_a', 'dig');
      const shapeB = await other.describe('app_b', 'dig');
      const columns = shapeA.relation.columns.map((c) => c.name);
      const keys = (await readAll(reader, shapeA, 1000)).map((r) => rowKey(shapeA, r));
      const whole = await reader.rangeDigest!(shapeA, columns, null, null);
      assert.equal(whole.rows, 3000);
      assert.deepEqual(await other.rangeDigest!(shapeB, columns, null, null), whole);
      const from = keys[99]!;
      const to = keys[1999]!;
      const part = await reader.rangeDigest!(shapeA, columns, from, to);
      assert.equal(part.rows, 1900);
      assert.deepEqual(await other.rangeDigest!(shapeB, columns, from, to), part);
      assert.equal((await reader.rangeDigest!(shapeA, columns, null, to)).rows, 2000);
      assert.equal((await reader.rangeDigest!(shapeA, columns, from, null)).rows, 2900);
      assert.notEqual(part.digest, (await reader.rangeDigest!(shapeA, columns, keys[100]!, to)).digest);

      const changes = [
        `UPDATE app_b.dig SET v = 'v1001 ' WHERE id = 1001`,
        `UPDATE app_b.dig SET v = '' WHERE id = 100`,
        `UPDATE app_b.dig SET v = NULL WHERE id = 200`,
        `UPDATE app_b.dig SET v = NULL WHERE id = 300`,
        // The next float32 after 1001/7: the text a FLOAT prints would not show it.
        `UPDATE app_b.dig SET f = 143.00002 WHERE id = 1001`,
        `UPDATE app_b.dig SET d = d + 0.0000000001 WHERE id = 1001`,
        `UPDATE app_b.dig SET b = CONCAT(b, x'00') WHERE id = 1001`,
      ];
      for (const change of changes) {
        await my(change);
        const changed = await other.rangeDigest!(shapeB, columns, null, null);
        assert.equal(changed.rows, 3000);
        assert.notEqual(changed.digest, whole.digest, change);
        await my(`DROP TABLE app_b.dig; ${create('app_b')}`);
        assert.deepEqual(await other.rangeDigest!(shapeB, columns, null, null), whole, 'equal again once the data is');
      }
      // Only the listed columns count (the key always does).
      await my(`UPDATE app_b.dig SET v = 'other' WHERE id = 5`);
      assert.deepEqual(await other.rangeDigest!(shapeB, ['f', 'd', 'b'], null, null), await reader.rangeDigest!(shapeA, ['f', 'd', 'b'], null, null));
      assert.notDeepEqual(await other.rangeDigest!(shapeB, ['v'], null, null), await reader.rangeDigest!(shapeA, ['v'], null, null));
      assert.deepEqual(await reader.keyAt!(shapeA, null, null, 0), keys[0]);
      assert.deepEqual(await reader.keyAt!(shapeA, from, to, 0), keys[100]);
      assert.deepEqual(await reader.keyAt!(shapeA, from, to, 1899), keys[1999]);
      assert.equal(await reader.keyAt!(shapeA, from, to, 1900), null);
      assert.deepEqual(await reader.keyAt!(shapeA, from, null, 2899), keys[2999]);
      assert.equal(await reader.keyAt!(shapeA, from, null, 2900), null);
      const estimate = await other.estimateRows(shapeB);
      assert.ok(estimate > 1000 && estimate < 6000, `estimate ${estimate}`);
    } finally {
      await reader.close();
      await other.close();
    }
  });
});

type RowDataPacketLike = Record<string, unknown>;
