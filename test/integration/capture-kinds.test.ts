/**
 * PostgreSQL capture describes each column by its logical kind, computed from the catalog: built-in types
 * by name, numeric with its precision and scale, domains by their base type, arrays by their element,
 * enums and composites as such, and a type created while capture runs once the stream has read the catalog
 * again (it restarts itself rather than publish a column of the wrong kind).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { PostgresSource } from '../../connectors/postgres/postgres-source.ts';
import type { Transaction } from '../../src/events/transaction.ts';
import { formatKind } from '../../src/events/value-kind.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { createTestSites, dbUrl, sql, waitFor, type TestSites } from '../helpers/test-sites.ts';

describe('capture: logical kinds from the catalog', () => {
  let t: TestSites;

  before(async () => {
    t = await createTestSites(['paris', 'london']);
    await t.everywhere(`
      CREATE TYPE mood AS ENUM ('sad', 'ok');
      CREATE TYPE pair AS (a int, b text);
      CREATE DOMAIN money2 AS numeric(12,2) CHECK (VALUE >= 0);
      CREATE DOMAIN email AS text;
      CREATE DOMAIN amounts AS money2[];
      CREATE TABLE everything (
        id int8 PRIMARY KEY, b bool, i2 int2, i4 int4, f4 float4, f8 float8,
        n numeric, n122 numeric(12,2), nneg numeric(5,-2), t text, vc varchar(10), ch char(3), nm name, by bytea,
        d date, tm time, tmtz timetz, ts timestamp, tstz timestamptz, iv interval, u uuid, j json, jb jsonb,
        m mood, p pair, dm money2, de email, ia int4[], na numeric(6,1)[], ma mood[], da amounts,
        inet_col inet, mo money, pt point, r int4range, x xml, iv2 int2vector, bx box[], tx text[][])`);
  });

  after(async () => {
    await t?.cleanup();
  });

  function source(): PostgresSource {
    return new PostgresSource({ site: t.sites.paris!, url: dbUrl(t.db('paris')), tables: null, maxPartBytes: 1 << 20, receiveBufferBytes: 0, logger: createLogger('silent') });
  }

  async function stream(capture: PostgresSource): Promise<Transaction[]> {
    await capture.resumePoint();
    const seen: Transaction[] = [];
    await capture.open({ transaction: (tx) => seen.push(tx), skipped: () => undefined, idle: () => undefined });
    return seen;
  }

  function kindsOf(tx: Transaction): Record<string, string> {
    const change = tx.changes[0];
    assert.ok(change && change.op === 'insert');
    return Object.fromEntries(change.relation.columns.map((c) => [c.name, formatKind(c.kind)]));
  }

  test('every column has the kind its type calls for, and its native type', async () => {
    const capture = source();
    await capture.prepare();
    try {
      const seen = await stream(capture);
      await sql(t.db('paris'), `INSERT INTO everything (id) VALUES (1)`);
      await waitFor('the insert', async () => seen.length >= 1 || undefined);
      assert.deepEqual(kindsOf(seen[0]!), {
        id: 'int64', b: 'boolean', i2: 'int16', i4: 'int32', f4: 'float32', f8: 'float64',
        n: 'decimal', n122: 'decimal(12,2)', nneg: 'decimal(5,-2)', t: 'string', vc: 'string', ch: 'string', nm: 'string', by: 'bytes',
        d: 'date', tm: 'time', tmtz: 'other', ts: 'timestamp', tstz: 'timestamptz', iv: 'interval', u: 'uuid', j: 'json', jb: 'json',
        m: 'enum', p: 'struct', dm: 'decimal(12,2)', de: 'string', ia: 'array<int32>', na: 'array<decimal(6,1)>', ma: 'array<enum>', da: 'array<decimal(12,2)>',
        inet_col: 'other', mo: 'other', pt: 'other', r: 'other', x: 'other', iv2: 'other', bx: 'other', tx: 'array<string>',
      });
      const change = seen[0]!.changes[0]!;
      assert.ok(change.op === 'insert');
      const native = Object.fromEntries(change.relation.columns.map((c) => [c.name, c.native]));
      assert.equal(native.n122!.name, 'numeric');
      assert.equal(native.n122!.id, 1700);
      assert.equal(native.m!.name, 'public.mood');
      assert.equal(native.dm!.name, 'public.money2');
      assert.equal(native.vc!.modifier, 14); // varchar(10): length + 4
    } finally {
      await capture.end();
    }
  });

  test('a type created while capture runs: the stream restarts once, reads the catalog again, and the column has its kind', async () => {
    const capture = source();
    await capture.prepare();
    const seen = await stream(capture);
    try {
      await sql(t.db('paris'), `CREATE TYPE colour AS ENUM ('red', 'blue'); CREATE TABLE paints (id int PRIMARY KEY, c colour); INSERT INTO paints VALUES (1, 'red')`);
      await assert.rejects(capture.ended!, (error: Error & { code?: string }) => {
        assert.equal(error.code, 'SITESYNC_ERR_CATALOG_CHANGED');
        assert.match(error.message, /^site \w+: type OID \d+ is not in the catalog read at start \(created since\?\); capture reads the catalog again$/);
        return true;
      });
      assert.equal(seen.filter((tx) => tx.changes.some((c) => c.op === 'insert' && c.relation.table === 'paints')).length, 0, 'nothing of the undescribed table was handed on');
    } finally {
      await capture.close();
    }
    // What the capture runner does next: prepare (reading the catalog) and stream from the checkpoint again.
    await capture.prepare();
    const again = await stream(capture);
    try {
      await waitFor('the insert, again', async () => again.find((tx) => tx.changes.some((c) => c.op === 'insert' && c.relation.table === 'paints')));
      const tx = again.find((tx) => tx.changes.some((c) => c.op === 'insert' && c.relation.table === 'paints'))!;
      assert.deepEqual(kindsOf(tx), { id: 'int32', c: 'enum' });
    } finally {
      await capture.end();
    }
  });
});
