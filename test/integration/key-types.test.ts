/**
 * Keys of every kind PostgreSQL lets a table have, and values of the shapes its own type tests try: a
 * table keyed by a composite (with NULLs inside, nested, an array of them), an array (empty,
 * multi-dimensional, with lower bounds other than 1), an enum and an enum array, an extension type
 * (hstore) and domains with checks (over a scalar, a composite and an array) replicates as PostgreSQL's
 * own logical replication replicates it: `SELECT x::text FROM t x ORDER BY …` is the same at both sites
 * after inserts, updates with and without a key change, and deletes — through each of the applier's
 * paths: COPY for runs of inserts (one big transaction, and many one-row ones), a statement per row
 * (an insert beside other changes, every update and delete, with its row lookup), and the batched insert
 * that redoes a COPY that met a key already there, whose conflicts are found and overwritten by key.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import { createTestSites, sql, type TestSites } from '../helpers/test-sites.ts';
import { PipelineEvents } from '../../src/observability/pipeline-events.ts';

const available = await sql<{ name: string }>('postgres', `SELECT name FROM pg_available_extensions WHERE name = 'hstore'`);
const HSTORE = available.length > 0;
if (!HSTORE) {
  console.warn('key-types: the hstore extension is not installed on this PostgreSQL server (Debian: postgresql-contrib); its cases are skipped');
}

const SCHEMA = `
  CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'with "quote" and , comma');
  CREATE TYPE pair AS (a int, b text);
  CREATE TYPE nested AS (p pair, ps pair[], tags text[], m mood, ms mood[]);
  CREATE DOMAIN positive AS int CHECK (VALUE > 0);
  CREATE DOMAIN checked_pair AS pair CHECK ((VALUE).a IS NULL OR (VALUE).a > 0);
  CREATE DOMAIN short_array AS int[] CHECK (cardinality(VALUE) <= 8);
  CREATE TYPE payload AS (p pair, ps pair[], empty int[], matrix int[], shifted int[], moods mood[],
                          d positive, dp checked_pair, sa short_array, nest nested);

  -- The same array with its lower bound at lower_bound ('[0:1]={1,2}' from '{1,2}').
  CREATE FUNCTION shifted(a anyarray, lower_bound int) RETURNS anyarray LANGUAGE plpgsql IMMUTABLE AS $$
  DECLARE r ALIAS FOR $0;
  BEGIN
    EXECUTE format('SELECT %L::%s', format('[%s:%s]=%s', lower_bound, lower_bound + cardinality(a) - 1, a), pg_typeof(a)) INTO r;
    RETURN r;
  END $$;
  CREATE FUNCTION mood_of(i int) RETURNS mood LANGUAGE sql IMMUTABLE AS $$ SELECT (enum_range(NULL::mood))[1 + i % 4] $$;
  -- Distinct for distinct i: odd i by a, even i (a NULL) by b.
  CREATE FUNCTION pair_of(i int) RETURNS pair LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN i % 2 = 0 THEN ROW(NULL, 'b ' || i || ' "q",(x)\\')::pair
                ELSE ROW(i, CASE WHEN i % 3 = 0 THEN NULL ELSE 'odd' END)::pair END $$;
  CREATE FUNCTION nested_of(i int) RETURNS nested LANGUAGE sql IMMUTABLE AS $$
    SELECT ROW(pair_of(i),
               CASE i % 3 WHEN 0 THEN '{}'::pair[] WHEN 1 THEN ARRAY[pair_of(i + 1), NULL, ROW(NULL, NULL)::pair] ELSE shifted(ARRAY[ROW(1, 'x')::pair, NULL], 0) END,
               ARRAY['t', NULL, 'with space', ''], mood_of(i), ARRAY[mood_of(i), mood_of(i + 1), NULL])::nested $$;
  CREATE FUNCTION int_array_of(i int) RETURNS int[] LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE i % 4 WHEN 0 THEN ARRAY[i, NULL] WHEN 1 THEN shifted(ARRAY[i, 2], 0)
                      WHEN 2 THEN ARRAY[[i, 1], [2, NULL]] ELSE ('[-3:-2][5:5]={{' || i || '},{7}}')::int[] END $$;
  CREATE FUNCTION pair_array_of(i int) RETURNS pair[] LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE i % 3 WHEN 0 THEN ARRAY[pair_of(i), NULL, ROW(NULL, NULL)::pair] WHEN 1 THEN ARRAY[[pair_of(i)], [ROW(NULL, 'm')::pair]]
                      ELSE shifted(ARRAY[pair_of(i), NULL], 2) END $$;
  -- Ten enum values from the digits of i in base 4: distinct for i below 4^10.
  CREATE FUNCTION moods_of(i int) RETURNS mood[] LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN i % 2 = 0 THEN a ELSE shifted(a, -1) END
      FROM (SELECT array_agg(mood_of(i / (4 ^ d)::int) ORDER BY d) AS a FROM generate_series(0, 9) d) x $$;
  CREATE FUNCTION payload_of(i int) RETURNS payload LANGUAGE sql IMMUTABLE AS $$
    SELECT ROW(ROW(NULL, 'p' || i)::pair, ARRAY[ROW(i, NULL)::pair, NULL, ROW(NULL, NULL)::pair], '{}'::int[],
               ARRAY[[i, 2], [3, NULL]], shifted(ARRAY[i, 2], 0), ARRAY['sad', 'with "quote" and , comma']::mood[],
               1 + i % 100, ROW(i + 1, NULL)::checked_pair, ARRAY[i]::short_array, nested_of(i))::payload $$;

  CREATE TABLE k_pair (k pair PRIMARY KEY, n int NOT NULL, v text, pl payload);
  CREATE TABLE k_nested (k nested PRIMARY KEY, n int NOT NULL, v text, pl payload);
  CREATE TABLE k_int_array (k int[] PRIMARY KEY, n int NOT NULL, v text, pl payload);
  CREATE TABLE k_pair_array (k pair[] PRIMARY KEY, n int NOT NULL, v text, pl payload);
  CREATE TABLE k_enum (e mood, ea mood[], n int NOT NULL, v text, pl payload, PRIMARY KEY (e, ea));
  CREATE TABLE k_positive (k positive PRIMARY KEY, n int NOT NULL, v text, pl payload);
  CREATE TABLE k_checked_pair (k checked_pair PRIMARY KEY, n int NOT NULL, v text, pl payload);
  CREATE TABLE k_short_array (k short_array PRIMARY KEY, n int NOT NULL, v text, pl payload);
  CREATE TABLE no_key (k pair, n int NOT NULL, v text, pl payload);
  ALTER TABLE no_key REPLICA IDENTITY FULL;
  ${
    HSTORE
      ? `CREATE EXTENSION hstore;
  CREATE FUNCTION hstore_of(i int) RETURNS hstore LANGUAGE sql IMMUTABLE AS $$
    SELECT hstore(ARRAY['a', 'quote "q" and , =>', 'n'], ARRAY[i::text, 'x=>y', NULL]) $$;
  CREATE TABLE k_hstore (k hstore PRIMARY KEY, n int NOT NULL, v text, pl payload);`
      : ''
  }
`;

interface KeyTable {
  readonly name: string;
  /** The key columns, comma separated. */
  readonly keyColumns: string;
  /** SQL for the key columns' values (comma separated) of generated row `i` (an SQL expression). */
  readonly key: (i: string) => string;
  /** Keys that are edge cases of their own, as SQL (row n = -1, -2, …). */
  readonly specials: readonly string[];
  /** Rows of the large transaction (a table without a key is matched by a scan: fewer). */
  readonly bulk: number;
  /** Whether rows can be there before (a conflict needs a key). */
  readonly keyed: boolean;
}

const single = (name: string, fn: string, specials: string[], bulk = 2000): KeyTable => ({ name, keyColumns: 'k', key: (i) => `${fn}(${i})`, specials, bulk, keyed: true });

const TABLES: readonly KeyTable[] = [
  single('k_pair', 'pair_of', [`ROW(NULL, NULL)::pair`, `ROW(0, '')::pair`]),
  single('k_nested', 'nested_of', [`ROW(NULL, NULL, NULL, NULL, NULL)::nested`, `ROW(ROW(NULL, NULL), '{}', '{}', NULL, '{}')::nested`]),
  single('k_int_array', 'int_array_of', [`'{}'::int[]`, `'{NULL}'::int[]`, `'{{1,2},{3,4}}'::int[]`, `'[0:1]={-1,2}'::int[]`, `'{-1,2}'::int[]`]),
  single('k_pair_array', 'pair_array_of', [`'{}'::pair[]`, `ARRAY[NULL]::pair[]`, `ARRAY[ROW(NULL, NULL)]::pair[]`]),
  { name: 'k_enum', keyColumns: 'e, ea', key: (i) => `mood_of(${i}), moods_of(${i})`, specials: [`'with "quote" and , comma', '{}'`, `'ok', '{ok}'`, `'happy', '{}'`, `'sad', '[0:0]={sad}'`, `'sad', '{sad}'`], bulk: 2000, keyed: true },
  single('k_positive', 'int4', ['2147483647']),
  single('k_checked_pair', 'pair_of', [`ROW(NULL, NULL)::checked_pair`]),
  single('k_short_array', 'int_array_of', [`'{}'::short_array`, `'{NULL}'::short_array`, `'{{1},{2}}'::short_array`, `'[0:1]={-1,2}'::short_array`]),
  ...(HSTORE ? [single('k_hstore', 'hstore_of', [`''::hstore`, `'a=>NULL'::hstore`])] : []),
  { ...single('no_key', 'pair_of', [`ROW(NULL, NULL)::pair`, `ROW(NULL, NULL)::pair`], 200), keyed: false },
];

/** An offset for the new keys of key changes: beyond every generated row. */
const MOVED = 100_000;

let t: TestSites;
const trouble: string[] = [];
const conflicts: string[] = [];

before(async () => {
  t = await createTestSites(['paris', 'london']);
  await t.everywhere(SCHEMA);
  // Rows London has before its capture starts (so they stay there): Paris inserts the same keys later.
  for (const table of TABLES.filter((x) => x.keyed)) {
    await sql(t.db('london'), `INSERT INTO ${table.name} (${table.keyColumns}, n, v, pl) SELECT ${table.key('i')}, i, 'london', payload_of(i + 1) FROM generate_series(50000, 50001) i`);
  }
  const events = new PipelineEvents();
  events.on('apply:halted', (e) => trouble.push(`halted: ${e.reason}`));
  events.on('apply:parked', (e) => trouble.push(`parked (${e.code}): ${e.reason}`));
  events.on('apply:conflict', (e) => conflicts.push(`${e.table} ${e.kind} ${e.resolution}`));
  await t.start('paris');
  await t.start('london', events);
});

after(async () => {
  await t?.cleanup();
});

/** Every table as `SELECT x::text FROM t x ORDER BY n, x::text`. */
async function contents(short: string): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const table of TABLES) {
    const rows = await sql<{ r: string }>(t.db(short), `SELECT x::text AS r FROM ${table.name} x ORDER BY n, x::text COLLATE "C"`);
    out[table.name] = rows.map((r) => r.r);
  }
  return out;
}

/** Waits until London holds exactly what Paris holds; fails at once when London's apply halts or parks. */
async function converged(what: string, timeoutMs = 120_000): Promise<Record<string, string[]>> {
  const expected = await contents('paris');
  const deadline = Date.now() + timeoutMs;
  let last: Record<string, string[]> = {};
  while (Date.now() < deadline) {
    assert.deepEqual(trouble, [], `London could not apply (${what})`);
    last = await contents('london');
    if (JSON.stringify(last) === JSON.stringify(expected)) return expected;
    await sleep(200);
  }
  const differing = TABLES.filter((x) => JSON.stringify(last[x.name]) !== JSON.stringify(expected[x.name])).map((x) => x.name);
  assert.fail(`timed out waiting for ${what}: ${differing.join(', ')} differ`);
}

/** An INSERT of the generated rows `from`…`to` of a table (one statement: a run of inserts, sent as COPY). */
const insertRows = (table: KeyTable, from: number | string, to: number | string): string =>
  `INSERT INTO ${table.name} (${table.keyColumns}, n, v, pl) SELECT ${table.key('i')}, i, 'v' || i, payload_of(i) FROM generate_series(${from}, ${to}) i`;

test('a key already at the target: COPY is redone as one batched insert, and each conflict is found by its key and overwritten', async () => {
  // Every keyed table: a run of inserts (COPY) whose keys 50000 and 50001 London already has.
  const keyed = TABLES.filter((x) => x.keyed);
  await sql(t.db('paris'), keyed.map((x) => insertRows(x, 50000, 50004)).join('; '));
  await converged('the conflicting inserts');
  assert.equal(conflicts.length, 2 * keyed.length, conflicts.join('\n'));
  assert.ok(conflicts.every((c) => c.endsWith('insert_exists apply')), conflicts.join('\n'));
});

test('small transactions: an insert beside other changes, updates with and without a key change, deletes (a statement per row)', async () => {
  for (const table of TABLES) {
    const statements: string[] = [];
    // Inserts one at a time, each followed by an update of it: no run for COPY, a statement each.
    for (let i = 1; i <= 4; i++) {
      statements.push(insertRows(table, i, i), `UPDATE ${table.name} SET v = 'changed in the same transaction' WHERE n = ${i}`);
    }
    table.specials.forEach((key, s) => {
      statements.push(
        `INSERT INTO ${table.name} (${table.keyColumns}, n, v, pl) VALUES (${key}, ${-1 - s}, 'special', payload_of(${s}))`,
        `UPDATE ${table.name} SET v = 'special, changed' WHERE n = ${-1 - s}`,
      );
    });
    await sql(t.db('paris'), statements.join('; '));
    await sql(t.db('paris'), `UPDATE ${table.name} SET v = v || ' then updated', pl = payload_of(n + 7) WHERE n IN (1, -1)`);
    await sql(t.db('paris'), `UPDATE ${table.name} SET (${table.keyColumns}) = ROW(${table.key(`n + ${MOVED}`)}) WHERE n = 2`);
    await sql(t.db('paris'), `UPDATE ${table.name} SET (${table.keyColumns}) = ROW(${table.key(`n + ${MOVED}`)}), v = 'moved' WHERE n = -2`);
    await sql(t.db('paris'), `DELETE FROM ${table.name} WHERE n IN (3, -3)`);
    // Transactions of one insert each: they go out together, each a COPY in one query.
    for (let i = 5; i <= 8; i++) await sql(t.db('paris'), insertRows(table, i, i));
  }
  const rows = await converged('the small transactions');
  // Not vacuous: the edge cases are there, and changed as written.
  const [shifted] = await sql<{ r: string }>(t.db('paris'), `SELECT ROW('[0:1]={-1,2}'::int[], -4, 'special, changed', payload_of(3))::text AS r`);
  assert.ok(rows.k_int_array!.includes(shifted!.r), `${shifted!.r} among\n${rows.k_int_array!.join('\n')}`);
  assert.ok(rows.k_int_array!.some((r) => r.startsWith('("{-1,2}",-5,')), rows.k_int_array!.join('\n'));
  assert.ok(rows.k_pair!.some((r) => r.startsWith('("(,)",-1,"special, changed then updated",')), rows.k_pair!.join('\n'));
  assert.ok(rows.k_enum!.some((r) => r.startsWith('(sad,[0:0]={sad},-4,')), rows.k_enum!.join('\n'));
  for (const table of TABLES) {
    const [state] = await sql<{ kept: boolean; moved: boolean; gone: boolean }>(
      t.db('london'),
      `SELECT bool_or(n = 1 AND v = 'changed in the same transaction then updated') AS kept,
              bool_or(n = 2 AND (${table.keyColumns}) = (${table.key(`n + ${MOVED}`)})) AS moved,
              NOT bool_or(n IN (3, -3)) AS gone
         FROM ${table.name}`,
    );
    assert.deepEqual(state, { kept: true, moved: true, gone: true }, table.name);
  }
});

test('a large transaction: thousands of rows by COPY, then thousands of updates, key changes and deletes', async () => {
  await sql(t.db('paris'), TABLES.map((x) => insertRows(x, 10_000, 10_000 + x.bulk - 1)).join('; '));
  await converged('the large insert');
  await sql(t.db('paris'), TABLES.map((x) => `UPDATE ${x.name} SET v = v || ' updated', pl = payload_of(n + 1) WHERE n >= 10000 AND n % 5 = 0`).join('; '));
  await sql(t.db('paris'), TABLES.map((x) => `UPDATE ${x.name} SET (${x.keyColumns}) = ROW(${x.key(`n + ${MOVED}`)}) WHERE n >= 10000 AND n % 7 = 0`).join('; '));
  await sql(t.db('paris'), TABLES.map((x) => `DELETE FROM ${x.name} WHERE n >= 10000 AND n % 11 = 0`).join('; '));
  await converged('the large updates and deletes');
  for (const table of TABLES) {
    const [counts] = await sql<{ rows: number; updated: number; moved: number }>(
      t.db('london'),
      `SELECT count(*)::int AS rows, count(*) FILTER (WHERE v LIKE '% updated')::int AS updated,
              count(*) FILTER (WHERE (${table.keyColumns}) = (${table.key(`n + ${MOVED}`)}))::int AS moved
         FROM ${table.name} WHERE n BETWEEN 10000 AND 19999`,
    );
    const ns = Array.from({ length: table.bulk }, (_, k) => 10_000 + k).filter((n) => n % 11 !== 0);
    assert.deepEqual(counts, { rows: ns.length, updated: ns.filter((n) => n % 5 === 0).length, moved: ns.filter((n) => n % 7 === 0).length }, table.name);
  }
});
