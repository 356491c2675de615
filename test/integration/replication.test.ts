/**
 * Two sites on the real PostgreSQL and RabbitMQ, both running: what is written at one appears at the
 * other, in every shape a table and a change can take, and nothing comes back.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createTestSites, sql, tableRows, waitFor, type RunningSite, type TestSites } from '../helpers/test-sites.ts';

describe('replication between two running sites', () => {
  let t: TestSites;
  let paris: RunningSite;
  let london: RunningSite;
  const published = { paris: 0, london: 0 };
  const captured = { paris: 0, london: 0 };

  before(async () => {
    t = await createTestSites(['paris', 'london']);
    await t.everywhere(`
      CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(12,2));
      CREATE TABLE "Odd ""Names"" é" ("select" int PRIMARY KEY, "Mixed Case" text, "ünï" text);
      CREATE TABLE nokey (a int, b text);
      ALTER TABLE nokey REPLICA IDENTITY FULL;
      CREATE TABLE docs (id int PRIMARY KEY, counter int, body text);
      CREATE TABLE measures (id int, at date, v int, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
      CREATE TABLE measures_2025 PARTITION OF measures FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
      CREATE TABLE measures_2026 PARTITION OF measures FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
      CREATE TABLE trunc (id int PRIMARY KEY);
      CREATE TABLE trunc_parent (id int PRIMARY KEY);
      CREATE TABLE trunc_child (id int PRIMARY KEY, parent int REFERENCES trunc_parent (id));
      CREATE TABLE saves (id int PRIMARY KEY, note text);
    `);
    paris = await t.start('paris');
    london = await t.start('london');
    for (const [short, site] of [['paris', paris], ['london', london]] as const) {
      site.events.on('capture:published', (e) => (published[short] += e.transactions));
      site.events.on('capture:transaction', () => captured[short]++);
    }
  });

  after(async () => {
    await t?.cleanup();
  });

  const converge = (table: string): Promise<string[]> =>
    waitFor(`${table} to converge`, async () => {
      const a = await tableRows(t.db('paris'), table);
      const b = await tableRows(t.db('london'), table);
      return JSON.stringify(a) === JSON.stringify(b) ? a : undefined;
    });

  test('inserts, updates and deletes flow both ways and converge', async () => {
    await sql(t.db('paris'), `INSERT INTO items VALUES (1, 'from paris', 1.50), (2, 'two', 2.25)`);
    await sql(t.db('london'), `INSERT INTO items VALUES (3, 'from london', 3.00)`);
    await waitFor('paris row at london', async () => (await sql(t.db('london'), 'SELECT 1 FROM items WHERE id = 1')).length === 1);
    await sql(t.db('london'), `UPDATE items SET name = 'changed at london' WHERE id = 1`);
    await sql(t.db('paris'), `DELETE FROM items WHERE id = 2`);
    await waitFor('update and delete', async () => {
      const rows = await tableRows(t.db('paris'), 'items');
      return rows.length === 2 && rows.includes('(1,"changed at london",1.50)');
    });
    assert.deepEqual(await converge('items'), ['(1,"changed at london",1.50)', '(3,"from london",3.00)']);
  });

  test('a primary key change moves the row', async () => {
    await sql(t.db('paris'), `INSERT INTO items VALUES (10, 'ten', 10)`);
    await waitFor('row 10 at london', async () => (await sql(t.db('london'), 'SELECT 1 FROM items WHERE id = 10')).length === 1);
    await sql(t.db('paris'), `UPDATE items SET id = 11 WHERE id = 10`);
    await waitFor('row 11 at london', async () => (await sql(t.db('london'), 'SELECT 1 FROM items WHERE id = 11')).length === 1);
    assert.equal((await sql(t.db('london'), 'SELECT 1 FROM items WHERE id = 10')).length, 0);
  });

  test('any identifier PostgreSQL allows: quotes, spaces, capitals, Unicode, reserved words', async () => {
    await sql(t.db('paris'), `INSERT INTO "Odd ""Names"" é" VALUES (1, 'Ä "quoted"', 'naïve ☃')`);
    await sql(t.db('paris'), `UPDATE "Odd ""Names"" é" SET "Mixed Case" = 'updated' WHERE "select" = 1`);
    const rows = await converge('"Odd ""Names"" é"');
    assert.deepEqual(rows, ['(1,updated,"naïve ☃")']);
  });

  test('a table without a primary key under REPLICA IDENTITY FULL keeps its duplicates exact', async () => {
    await sql(t.db('paris'), `INSERT INTO nokey VALUES (1, 'dup'), (1, 'dup'), (2, NULL)`);
    await waitFor('3 rows at london', async () => (await sql(t.db('london'), 'SELECT 1 FROM nokey')).length === 3);
    // One of two identical rows changes, then one goes: exactly one row each time.
    await sql(t.db('paris'), `UPDATE nokey SET b = 'one' WHERE ctid = (SELECT ctid FROM nokey WHERE a = 1 LIMIT 1)`);
    await sql(t.db('paris'), `DELETE FROM nokey WHERE b IS NULL`);
    const rows = await converge('nokey');
    assert.deepEqual(rows, ['(1,dup)', '(1,one)']);
  });

  test('an unchanged TOASTed value stays as it is (never NULL)', async () => {
    await sql(t.db('paris'), `INSERT INTO docs SELECT 1, 0, string_agg(md5(i::text), '') FROM generate_series(1, 4000) i`);
    await waitFor('doc at london', async () => (await sql(t.db('london'), 'SELECT 1 FROM docs')).length === 1);
    await sql(t.db('paris'), `UPDATE docs SET counter = counter + 1 WHERE id = 1`);
    await waitFor('counter at london', async () => (await sql<{ counter: number }>(t.db('london'), 'SELECT counter FROM docs'))[0]?.counter === 1);
    const [a] = await sql<{ h: string; l: number }>(t.db('paris'), 'SELECT md5(body) h, length(body) l FROM docs');
    const [b] = await sql<{ h: string; l: number }>(t.db('london'), 'SELECT md5(body) h, length(body) l FROM docs');
    assert.equal(a!.l, 128_000);
    assert.deepEqual(b, a);
  });

  test('partitioned tables replicate through their root', async () => {
    await sql(t.db('paris'), `INSERT INTO measures VALUES (1, '2025-06-01', 1), (2, '2026-06-01', 2)`);
    await sql(t.db('paris'), `UPDATE measures SET at = '2026-02-01' WHERE id = 1`); // moves between partitions
    const rows = await converge('measures');
    assert.deepEqual(rows, ['(1,2026-02-01,1)', '(2,2026-06-01,2)']);
    assert.equal((await sql(t.db('london'), 'SELECT 1 FROM measures_2026')).length, 2);
  });

  test('TRUNCATE replicates', async () => {
    await sql(t.db('london'), `INSERT INTO trunc SELECT generate_series(1, 50)`);
    await waitFor('rows at paris', async () => (await sql(t.db('paris'), 'SELECT 1 FROM trunc')).length === 50);
    await sql(t.db('london'), `TRUNCATE trunc`);
    await waitFor('truncated at paris', async () => (await sql(t.db('paris'), 'SELECT 1 FROM trunc')).length === 0);
  });

  test('TRUNCATE … CASCADE at the source empties the same tables at the target, without a CASCADE there', async () => {
    await sql(t.db('london'), `INSERT INTO trunc_parent VALUES (1), (2); INSERT INTO trunc_child VALUES (10, 1), (20, 2)`);
    await waitFor('child rows at paris', async () => (await sql(t.db('paris'), 'SELECT 1 FROM trunc_child')).length === 2);
    await sql(t.db('london'), `TRUNCATE trunc_parent CASCADE`);
    await waitFor('both truncated at paris', async () => (await sql(t.db('paris'), 'SELECT 1 FROM trunc_parent UNION ALL SELECT 1 FROM trunc_child')).length === 0);
  });

  test('a rolled-back savepoint is never visible at the other site', async () => {
    await sql(t.db('paris'), `BEGIN; INSERT INTO saves VALUES (1, 'kept'); SAVEPOINT s; INSERT INTO saves VALUES (2, 'rolled back'); UPDATE saves SET note = 'undone' WHERE id = 1; ROLLBACK TO SAVEPOINT s; INSERT INTO saves VALUES (3, 'kept too'); COMMIT`);
    await sql(t.db('paris'), `BEGIN; INSERT INTO saves VALUES (4, 'whole transaction rolled back'); ROLLBACK`);
    assert.deepEqual(await converge('saves'), ['(1,kept)', '(3,"kept too")']);
  });

  test('a table created later is replicated without a restart', async () => {
    await t.everywhere(`CREATE TABLE later (id int PRIMARY KEY, v text)`);
    await sql(t.db('london'), `INSERT INTO later VALUES (1, 'new table')`);
    assert.deepEqual(await converge('later'), ['(1,"new table")']);
  });

  test('nothing loops: a write applied at london is never sent back to paris', async () => {
    const applied = { paris: 0, london: 0 };
    const skippedRelayed = { paris: 0, london: 0 };
    paris.events.on('apply:applied', (e) => (applied.paris += e.transactions));
    london.events.on('apply:applied', (e) => (applied.london += e.transactions));
    london.events.on('capture:skipped', (e) => e.reason === 'relayed' && skippedRelayed.london++);
    await sql(t.db('paris'), `INSERT INTO items VALUES (100, 'loop check', 0)`);
    await waitFor('applied at london', async () => applied.london === 1);
    // London's capture sees the applied transaction in its WAL and drops it as relayed.
    await waitFor('relayed write dropped at london', async () => skippedRelayed.london === 1);
    await new Promise((r) => setTimeout(r, 1000)); // long enough for a loop to show
    assert.equal(applied.paris, 0, 'the row applied at london must not come back to paris');
    // Over the whole file: every transaction capture kept was published, none more.
    await waitFor('published = captured', async () => published.paris === captured.paris && published.london === captured.london);
  });
});
