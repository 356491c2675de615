/**
 * Values are lossless: every kind of value, read at the source and written at the target, is the same
 * value. Compared as `row::text` at both sites, which spells out every digit, microsecond and byte.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createTestSites, sql, tableRows, waitFor, type TestSites } from '../helpers/test-sites.ts';

const SCHEMA = `
  CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'with "quote" and , comma');
  CREATE DOMAIN positive AS numeric CHECK (VALUE > 0);
  CREATE TYPE address AS (street text, number int, tags text[]);
  CREATE TYPE floatrange AS RANGE (subtype = float8);
  CREATE TABLE every_type (
    id int PRIMARY KEY,
    b bool, i2 int2, i4 int4, i8 int8, n numeric, n_scaled numeric(20,6), f4 float4, f8 float8,
    money_v money, ch char(5), vc varchar(10), t text, nm name, one_char "char",
    by bytea, bits bit(8), vbits varbit,
    d date, tm time, tmtz timetz, ts timestamp, tstz timestamptz, iv interval,
    j json, jb jsonb, x xml, u uuid,
    ip inet, net cidr, mac macaddr, mac8 macaddr8,
    pt point, ln line, ls lseg, bx box, pa path, pg polygon, ci circle,
    tsv tsvector, tsq tsquery, lsn pg_lsn, oid_v oid,
    ir int4range, nr numrange, tsr tstzrange, dr daterange, mr int4multirange, fr floatrange,
    ia int[], ta text[], na numeric[], matrix int[][], tsa timestamptz[], ja jsonb[],
    e mood, ea mood[], dom positive, comp address, compa address[]
  );
`;

const ROWS = [
  // Extremes and the values that break naive converters.
  `(1, true, -32768, -2147483648, -9223372036854775808, 'NaN', 12345678901234.123456, 'NaN', '-Infinity',
    '-92233720368547758.08', 'ab', 'x', E'tab\\t newline\\n quote '' backslash \\\\ unicode ✓ 𝄞', 'a name', 'z',
    '\\x00ff10', B'10101010', B'1',
    '-infinity', '23:59:59.999999', '00:00:00+14', 'infinity', '-infinity', '-178000000 years',
    '{"a": [1, 2.50, "x"], "dup": 1, "dup": 2}', '{"b": {"c": null}, "a": 1e-7}', '<a x="1">t &amp; u</a>', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    '2001:db8::1/64', '10.0.0.0/8', '08:00:2b:01:02:03', '08:00:2b:01:02:03:04:05',
    '(1.5,-2.25)', '{1,-1,0}', '[(0,0),(1,1)]', '((0,0),(2,2))', '[(0,0),(1,1),(2,0)]', '((0,0),(1,1),(1,0))', '<(0,0),1.5>',
    'a fat:1A cat:2B', 'fat & (rat | cat)', 'FFFFFFFF/FFFFFFFF', 4294967295,
    '(,5)', '[0.1,0.2)', '[2024-01-01 00:00:00.000001+00,infinity)', 'empty', '{[1,3), [5,7)}', '[-Infinity,NaN]',
    '{1,NULL,3}', '{"a b","c,d","e\\"f",NULL,""}', '{NaN,1.10,-0}', '{{1,2},{3,4}}', '{"2024-02-29 12:00:00.123456+00","infinity"}', ARRAY['{"k": 1}'::jsonb, 'null'::jsonb],
    'with "quote" and , comma', '{sad,happy}', 0.000001, ROW('Main "St"', 42, '{a,NULL}'), ARRAY[ROW('x', 1, NULL)::address, NULL])`,
  // Ordinary values, with precision that a double or a Date would lose.
  `(2, false, 1, 2, 9007199254740993, 0.1000000000000000000001, 1.5, 3.4028235e38, 0.1,
    '12.34', 'abcde', 'ten chars!', '', 'n', 'a',
    '', B'00000000', B'',
    '2024-02-29', '12:34:56.789012', '12:34:56.789012-03:30', '2024-02-29 12:34:56.789012', '1970-01-01 00:00:00.000001+00', '1 year 2 mons 3 days 04:05:06.789012',
    '[]', '[]', '<empty/>', '00000000-0000-0000-0000-000000000000',
    '127.0.0.1', '192.168.0.0/16', '00:00:00:00:00:00', '00:00:00:00:00:00:00:00',
    '(0,0)', '{0,1,0}', '[(0,0),(0,0)]', '((1,1),(1,1))', '((0,0))', '((0,0))', '<(0,0),0>',
    '', 'a', '0/0', 0,
    '[1,2]', '(,)', '(,)', '[2024-01-01,2024-12-31]', '{}', '(1.5,2.5]',
    '{}', '{}', '{}', '{}', '{}', '{}',
    'sad', '{}', 1e20, ROW(NULL, NULL, NULL), '{}')`,
];

let t: TestSites;

before(async () => {
  t = await createTestSites(['paris', 'london']);
  await t.everywhere(SCHEMA);
  await t.start('paris');
  await t.start('london');
});

after(async () => {
  await t?.cleanup();
});

const converged = (what: string) =>
  waitFor(what, async () => {
    const a = await tableRows(t.db('paris'), 'every_type');
    const b = await tableRows(t.db('london'), 'every_type');
    return a.length > 0 && JSON.stringify(a) === JSON.stringify(b) ? a : undefined;
  });

test('every kind of value arrives exactly as it was written (row::text equal)', async () => {
  await sql(t.db('paris'), `INSERT INTO every_type VALUES ${ROWS.join(', ')}`);
  await sql(t.db('paris'), `INSERT INTO every_type (id) VALUES (3)`); // every column NULL
  const rows = await converged('inserted rows');
  assert.equal(rows.length, 3);
  // Spot checks that the comparison is not vacuous: the hard values are really there.
  const [first] = await sql<{ n: string; i8: string; tstz: string; f8: number }>(t.db('london'), `SELECT n::text, i8::text, tstz::text, f8 FROM every_type WHERE id = 1`);
  assert.equal(first?.n, 'NaN');
  assert.equal(first?.i8, '-9223372036854775808');
  assert.equal(first?.tstz, '-infinity');
  const [second] = await sql<{ n: string; i8: string; ts: string }>(t.db('london'), `SELECT n::text, i8::text, ts::text FROM every_type WHERE id = 2`);
  assert.equal(second?.n, '0.1000000000000000000001');
  assert.equal(second?.i8, '9007199254740993');
  assert.equal(second?.ts, '2024-02-29 12:34:56.789012');
});

test('updates of every kind of value arrive exactly too', async () => {
  await sql(t.db('paris'), `UPDATE every_type SET (b, i2, i4, i8, n, n_scaled, f4, f8, money_v, ch, vc, t, nm, one_char, by, bits, vbits, d, tm, tmtz, ts, tstz, iv, j, jb, x, u, ip, net, mac, mac8, pt, ln, ls, bx, pa, pg, ci, tsv, tsq, lsn, oid_v, ir, nr, tsr, dr, mr, fr, ia, ta, na, matrix, tsa, ja, e, ea, dom, comp, compa)
    = (SELECT b, i2, i4, i8, n, n_scaled, f4, f8, money_v, ch, vc, t, nm, one_char, by, bits, vbits, d, tm, tmtz, ts, tstz, iv, j, jb, x, u, ip, net, mac, mac8, pt, ln, ls, bx, pa, pg, ci, tsv, tsq, lsn, oid_v, ir, nr, tsr, dr, mr, fr, ia, ta, na, matrix, tsa, ja, e, ea, dom, comp, compa FROM every_type WHERE id = 1)
    WHERE id = 3`);
  const rows = await converged('updated row');
  assert.equal(rows.filter((r) => r.includes('NaN')).length, 2);
});
