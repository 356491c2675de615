/**
 * Capture's replication connection with a small receive buffer (capture.receiveBufferBytes), against the
 * real server: the buffer is the size configured, and a backlog many times larger than it streams whole
 * and in order, the server waiting on the closed window rather than losing or reordering anything.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { PostgresSource } from '../../connectors/postgres/postgres-source.ts';
import type { Transaction } from '../../src/events/transaction.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { createTestSites, dbUrl, sql, waitFor, type TestSites } from '../helpers/test-sites.ts';

describe('the replication connection’s receive buffer', () => {
  let t: TestSites;

  before(async () => {
    t = await createTestSites(['paris', 'london']);
    await t.everywhere(`CREATE TABLE items (id int PRIMARY KEY, note text)`);
  });

  after(async () => {
    await t?.cleanup();
  });

  /** Its slot is created here: what is written after this is streamed by `open`. */
  async function prepared(receiveBufferBytes: number): Promise<PostgresSource> {
    const source = new PostgresSource({ site: t.sites.paris!, url: dbUrl(t.db('paris')), tables: null, maxPartBytes: 1 << 20, receiveBufferBytes, logger: createLogger('warn') });
    await source.prepare();
    return source;
  }

  async function open(source: PostgresSource): Promise<Transaction[]> {
    await source.resumePoint();
    const seen: Transaction[] = [];
    await source.open({ transaction: (tx) => seen.push(tx), skipped: () => undefined, idle: () => undefined });
    return seen;
  }

  test('the smallest allowed buffer streams a backlog ~25 times its size whole, in commit order', async () => {
    const source = await prepared(65536);
    // Written before streaming starts: 300 transactions of 100 rows, about 3 MB of pgoutput.
    for (let i = 0; i < 300; i++) {
      await sql(t.db('paris'), `INSERT INTO items SELECT g, repeat('x', 80) || g FROM generate_series($1::int, $2::int) g`, [i * 100 + 1, i * 100 + 100]);
    }
    try {
      const seen = await open(source);
      if (process.platform === 'linux') assert.equal(source.receiveBufferBytes, 131072);
      await waitFor('300 transactions', async () => seen.length >= 300 || undefined, 60_000).catch((e) => { throw new Error(`${e.message}: ${seen.length} seen`); });
      const ids = seen.flatMap((tx) => tx.changes.map((c) => Number(c.op === 'insert' ? c.newRow.values[0] : NaN)));
      assert.equal(ids.length, 30_000);
      assert.deepEqual(ids, Array.from({ length: 30_000 }, (_, i) => i + 1));
      for (let i = 1; i < seen.length; i++) assert.ok(seen[i]!.position > seen[i - 1]!.position, 'commit order');
    } finally {
      await source.end();
    }
  });

  test('0 leaves the buffer to the kernel', async () => {
    const source = await prepared(0);
    try {
      await open(source);
      assert.equal(source.receiveBufferBytes, null);
    } finally {
      await source.end();
    }
  });
});
