import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { EncodedRow } from '../../src/events/encoded-row.ts';
import { planChange, planCopy, planInsertBatch, quoteIdent, type Statement, type TargetTable, planRowLookup } from '../../connectors/postgres/apply-plan.ts';
import { SitesyncError } from '../../src/errors.ts';
import type { Change, ColumnInfo, RelationInfo, RowImage } from '../../src/events/transaction.ts';
import { parseKind } from '../../src/events/value-kind.ts';

function col(name: string, key = false): ColumnInfo {
  return { name, kind: parseKind('string'), native: { name: 'text', id: 25, modifier: -1 }, key };
}

function rel(schema: string, table: string, replicaIdentity: RelationInfo['replicaIdentity'], columns: ColumnInfo[]): RelationInfo {
  return { schema, table, replicaIdentity, columns };
}

function rowOf(values: (string | null)[], unchanged: number[] = []): RowImage {
  return { values, unchanged };
}

/**
 * A target that has exactly the source's columns (or those given) and the given primary key; its column
 * types (as the sink reads them with format_type) are text, as the test's columns are, unless given.
 */
function targetFor(
  relation: RelationInfo,
  primaryKey: string[] | null,
  columns?: string[],
  types: Readonly<Record<string, string>> = {},
): (schema: string, table: string) => TargetTable {
  return (schema, table) => {
    assert.equal(schema, relation.schema);
    assert.equal(table, relation.table);
    const names = columns ?? relation.columns.map((c) => c.name);
    return { schema, table, columns: new Set(names), columnTypes: new Map(names.map((name) => [name, types[name] ?? 'text'])), primaryKey };
  };
}

function only(statements: Statement[]): Statement {
  assert.equal(statements.length, 1);
  return statements[0]!;
}

function schemaError(column?: string): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.ok(error instanceof SitesyncError, `expected SitesyncError, got ${String(error)}`);
    assert.equal(error.code, 'SITESYNC_ERR_APPLY_SCHEMA');
    if (column !== undefined) assert.ok(error.message.includes(JSON.stringify(column)), `message names ${column}: ${error.message}`);
    return true;
  };
}

const users = rel('public', 'users', 'd', [col('id', true), col('name'), col('bio')]);

describe('quoteIdent', () => {
  test('quotes exactly, doubling embedded quotes', () => {
    assert.equal(quoteIdent('users'), '"users"');
    assert.equal(quoteIdent('a"b'), '"a""b"');
    assert.equal(quoteIdent('"'), '""""');
    assert.equal(quoteIdent('My Table'), '"My Table"');
    assert.equal(quoteIdent('CamelCase'), '"CamelCase"');
    assert.equal(quoteIdent('café_日本'), '"café_日本"');
    assert.equal(quoteIdent('select'), '"select"');
    assert.equal(quoteIdent("o'neil"), '"o\'neil"');
    assert.equal(quoteIdent(''), '""');
  });

  test('property: unquoting the result gives the name back', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 20 }), (name) => {
        const quoted = quoteIdent(name);
        assert.ok(quoted.startsWith('"') && quoted.endsWith('"'));
        const inner = quoted.slice(1, -1);
        // every quote inside comes in pairs, so the identifier cannot end early
        assert.ok(!/(^|[^"])"("")*([^"]|$)/.test(inner), `unpaired quote in ${quoted}`);
        assert.equal(inner.replace(/""/g, '"'), name);
      }),
      { numRuns: 300 },
    );
  });
});

describe('planChange', () => {
  test('insert: every column, quoted, values as parameters in order', () => {
    const s = only(planChange({ op: 'insert', relation: users, newRow: rowOf(['1', 'Ann', null]) }, targetFor(users, ['id'])));
    // With a primary key, an existing key is left for conflict resolution: 0 rows, not an error.
    assert.equal(s.text, 'INSERT INTO "public"."users" ("id", "name", "bio") OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3) ON CONFLICT ("id") DO NOTHING');
    assert.deepEqual(s.values, ['1', 'Ann', null]);
    assert.equal(s.expectsRow, true);
  });

  test('insert into a table without a primary key: a plain insert, nothing to conflict on', () => {
    const s = only(planChange({ op: 'insert', relation: users, newRow: rowOf(['1', 'Ann', null]) }, targetFor(users, null)));
    assert.equal(s.text, 'INSERT INTO "public"."users" ("id", "name", "bio") OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3)');
    assert.equal(s.expectsRow, false);
  });

  test('insert: identifiers with quotes, spaces, capitals, Unicode and reserved words are quoted exactly', () => {
    const r = rel('My Schema', 'a"b', 'd', [col('select', true), col('Név Ünïcode'), col('x"y"z')]);
    const s = only(planChange({ op: 'insert', relation: r, newRow: rowOf(['1', '2', '3']) }, targetFor(r, ['select'])));
    assert.equal(s.text, 'INSERT INTO "My Schema"."a""b" ("select", "Név Ünïcode", "x""y""z") OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3) ON CONFLICT ("select") DO NOTHING');
  });

  test('insert: the table name comes from the target, not the change', () => {
    const s = only(
      planChange({ op: 'insert', relation: users, newRow: rowOf(['1', 'a', 'b']) }, (schema, table) => ({
        schema: 'Other',
        table: `${table}"x`,
        columns: new Set(['id', 'name', 'bio']),
        primaryKey: ['id'],
      })),
    );
    assert.ok(s.text.startsWith('INSERT INTO "Other"."users""x" ('), s.text);
  });

  test('update by key: SET every sent column, WHERE on the key', () => {
    const s = only(planChange({ op: 'update', relation: users, oldRow: null, newRow: rowOf(['7', 'Bo', 'hi']) }, targetFor(users, ['id'])));
    assert.equal(s.text, 'UPDATE "public"."users" SET "id" = $1, "name" = $2, "bio" = $3 WHERE "id" = $4::text');
    assert.deepEqual(s.values, ['7', 'Bo', 'hi', '7']);
    assert.equal(s.expectsRow, true);
  });

  test('update: unchanged TOAST columns are left out of SET', () => {
    const s = only(planChange({ op: 'update', relation: users, oldRow: null, newRow: rowOf(['7', 'Bo', null], [2]) }, targetFor(users, ['id'])));
    assert.equal(s.text, 'UPDATE "public"."users" SET "id" = $1, "name" = $2 WHERE "id" = $3::text');
    assert.deepEqual(s.values, ['7', 'Bo', '7']);
    assert.ok(!s.text.includes('"bio"'));
  });

  test('update: an unchanged TOAST column need not exist at the target', () => {
    const s = only(
      planChange({ op: 'update', relation: users, oldRow: null, newRow: rowOf(['7', 'Bo', null], [2]) }, targetFor(users, ['id'], ['id', 'name'])),
    );
    assert.equal(s.text, 'UPDATE "public"."users" SET "id" = $1, "name" = $2 WHERE "id" = $3::text');
  });

  test('update with a key change: WHERE uses the OLD key', () => {
    const s = only(
      planChange({ op: 'update', relation: users, oldRow: rowOf(['1', null, null]), newRow: rowOf(['2', 'Ann', 'x']) }, targetFor(users, ['id'])),
    );
    assert.equal(s.text, 'UPDATE "public"."users" SET "id" = $1, "name" = $2, "bio" = $3 WHERE "id" = $4::text');
    assert.deepEqual(s.values, ['2', 'Ann', 'x', '1']);
  });

  test('composite replica identity key (index identity)', () => {
    const r = rel('s', 't', 'i', [col('a', true), col('v'), col('b', true)]);
    const s = only(planChange({ op: 'delete', relation: r, oldRow: rowOf(['1', null, '2']) }, targetFor(r, null)));
    assert.equal(s.text, 'DELETE FROM "s"."t" WHERE "a" = $1::text AND "b" = $2::text');
    assert.deepEqual(s.values, ['1', '2']);
  });

  test('a key is compared as the target column\'s own type: a composite key is not read as an anonymous record', () => {
    // Without the casts, `"k" = $1` makes PostgreSQL infer `record` for $1 when k is a composite (or a
    // domain over one), and the statement fails: "input of anonymous composite types is not implemented".
    const r = rel('s', 'keyed', 'd', [col('k', true), col('e', true), col('a', true), col('d', true), col('v')]);
    const types = { k: '"My Schema"."pair type"', e: 'mood', a: 'integer[]', d: 'positive', v: 'character varying' };
    const oldRow = rowOf(['(1,"x y")', 'sad', '[0:1]={1,2}', '5', null]);
    const del = only(planChange({ op: 'delete', relation: r, oldRow }, targetFor(r, ['k', 'e', 'a', 'd'], undefined, types)));
    assert.equal(del.text, 'DELETE FROM "s"."keyed" WHERE "k" = $1::"My Schema"."pair type" AND "e" = $2::mood AND "a" = $3::integer[] AND "d" = $4::positive');
    assert.deepEqual(del.values, ['(1,"x y")', 'sad', '[0:1]={1,2}', '5']);
    // Assigned values take the column's type without a cast; only the old key is cast.
    const update = only(
      planChange({ op: 'update', relation: r, oldRow, newRow: rowOf(['(2,z)', 'ok', '{}', '6', 'v']) }, targetFor(r, ['k', 'e', 'a', 'd'], undefined, types)),
    );
    assert.equal(
      update.text,
      'UPDATE "s"."keyed" SET "k" = $1, "e" = $2, "a" = $3, "d" = $4, "v" = $5 WHERE "k" = $6::"My Schema"."pair type" AND "e" = $7::mood AND "a" = $8::integer[] AND "d" = $9::positive',
    );
    const lookup = planRowLookup(r, oldRow, targetFor(r, ['k', 'e', 'a', 'd'], undefined, types)('s', 'keyed'));
    assert.match(lookup.statement.text, /WHERE "k" = \$1::"My Schema"\."pair type" AND "e" = \$2::mood AND "a" = \$3::integer\[\] AND "d" = \$4::positive FOR UPDATE/);
    assert.deepEqual(lookup.key, { k: '(1,"x y")', e: 'sad', a: '[0:1]={1,2}', d: '5' });
  });

  test('a key column whose type the target does not state is a schema error naming it', () => {
    const noTypes = (schema: string, table: string): TargetTable => ({ schema, table, columns: new Set(['id', 'name', 'bio']), primaryKey: ['id'] });
    assert.throws(() => planChange({ op: 'delete', relation: users, oldRow: rowOf(['1', null, null]) }, noTypes), schemaError('id'));
    assert.throws(() => planRowLookup(users, rowOf(['1', null, null]), noTypes('public', 'users')), schemaError('id'));
    // Inserts and the match of a keyless table by text need no type.
    assert.equal(planChange({ op: 'insert', relation: users, newRow: rowOf(['1', 'a', 'b']) }, noTypes).length, 1);
  });

  test('delete by key', () => {
    const s = only(planChange({ op: 'delete', relation: users, oldRow: rowOf(['9', null, null]) }, targetFor(users, ['id'])));
    assert.equal(s.text, 'DELETE FROM "public"."users" WHERE "id" = $1::text');
    assert.deepEqual(s.values, ['9']);
    assert.equal(s.expectsRow, true);
  });

  test('REPLICA IDENTITY FULL with a target primary key matches on the key only', () => {
    const r = rel('public', 'full_pk', 'f', [col('id', true), col('a', true), col('b', true)]);
    const update = only(
      planChange({ op: 'update', relation: r, oldRow: rowOf(['1', 'x', 'y']), newRow: rowOf(['1', 'x2', 'y2']) }, targetFor(r, ['id'])),
    );
    assert.equal(update.text, 'UPDATE "public"."full_pk" SET "id" = $1, "a" = $2, "b" = $3 WHERE "id" = $4::text');
    assert.deepEqual(update.values, ['1', 'x2', 'y2', '1']);
    const del = only(planChange({ op: 'delete', relation: r, oldRow: rowOf(['1', 'x', 'y']) }, targetFor(r, ['id'])));
    assert.equal(del.text, 'DELETE FROM "public"."full_pk" WHERE "id" = $1::text');
    assert.deepEqual(del.values, ['1']);
  });

  test('REPLICA IDENTITY FULL with a primary key that changed: WHERE has the old key value', () => {
    const r = rel('public', 'full_pk', 'f', [col('id', true), col('a', true)]);
    const s = only(planChange({ op: 'update', relation: r, oldRow: rowOf(['1', 'x']), newRow: rowOf(['5', 'x']) }, targetFor(r, ['id'])));
    assert.deepEqual(s.values, ['5', 'x', '1']);
    assert.ok(s.text.endsWith('WHERE "id" = $3::text'), s.text);
  });

  test('REPLICA IDENTITY FULL without a key matches every column by text and changes one row', () => {
    const r = rel('public', 'nokey', 'f', [col('a', true), col('b', true)]);
    const del = only(planChange({ op: 'delete', relation: r, oldRow: rowOf(['1', null]) }, targetFor(r, null)));
    assert.equal(
      del.text,
      'DELETE FROM "public"."nokey" WHERE (tableoid, ctid) = (SELECT tableoid, ctid FROM "public"."nokey" WHERE ("a")::text IS NOT DISTINCT FROM $1::text AND ("b")::text IS NOT DISTINCT FROM $2::text LIMIT 1)',
    );
    assert.deepEqual(del.values, ['1', null]);
    const update = only(planChange({ op: 'update', relation: r, oldRow: rowOf(['1', null]), newRow: rowOf(['2', 'z']) }, targetFor(r, null)));
    assert.equal(
      update.text,
      'UPDATE "public"."nokey" SET "a" = $1, "b" = $2 WHERE (tableoid, ctid) = (SELECT tableoid, ctid FROM "public"."nokey" WHERE ("a")::text IS NOT DISTINCT FROM $3::text AND ("b")::text IS NOT DISTINCT FROM $4::text LIMIT 1)',
    );
    assert.deepEqual(update.values, ['2', 'z', '1', null]);
    // an empty primary key is no key
    const emptyKey = only(planChange({ op: 'delete', relation: r, oldRow: rowOf(['1', '2']) }, targetFor(r, [])));
    assert.ok(emptyKey.text.includes('(tableoid, ctid) = (SELECT tableoid, ctid FROM "public"."nokey" WHERE'), emptyKey.text);
  });

  test('a column missing at the target throws SITESYNC_ERR_APPLY_SCHEMA naming the column', () => {
    const missing = targetFor(users, ['id'], ['id', 'name']);
    assert.throws(() => planChange({ op: 'insert', relation: users, newRow: rowOf(['1', 'a', 'b']) }, missing), schemaError('bio'));
    assert.throws(() => planChange({ op: 'update', relation: users, oldRow: null, newRow: rowOf(['1', 'a', 'b']) }, missing), schemaError('bio'));
    const noKeyColumn = targetFor(users, ['id'], ['name', 'bio']);
    assert.throws(() => planChange({ op: 'delete', relation: users, oldRow: rowOf(['1', null, null]) }, noKeyColumn), schemaError('id'));
    const r = rel('public', 'nokey', 'f', [col('a', true), col('b', true)]);
    assert.throws(() => planChange({ op: 'delete', relation: r, oldRow: rowOf(['1', '2']) }, targetFor(r, null, ['a'])), schemaError('b'));
  });

  test("replica identity 'n' (nothing) for update and delete throws SITESYNC_ERR_APPLY_SCHEMA", () => {
    const r = rel('public', 'nothing', 'n', [col('a'), col('b')]);
    assert.throws(() => planChange({ op: 'update', relation: r, oldRow: null, newRow: rowOf(['1', '2']) }, targetFor(r, ['a'])), schemaError());
    assert.throws(() => planChange({ op: 'delete', relation: r, oldRow: rowOf(['1', '2']) }, targetFor(r, ['a'])), schemaError());
    // a default identity without any key column is no better
    const d = rel('public', 'nopk', 'd', [col('a'), col('b')]);
    assert.throws(() => planChange({ op: 'update', relation: d, oldRow: null, newRow: rowOf(['1', '2']) }, targetFor(d, null)), schemaError());
    // inserts need no key
    assert.equal(planChange({ op: 'insert', relation: r, newRow: rowOf(['1', '2']) }, targetFor(r, null)).length, 1);
  });

  test('truncate: every table, quoted, with RESTART IDENTITY as sent, never CASCADE (the source lists what its cascade reached)', () => {
    const a = rel('public', 'a"b', 'd', [col('id', true)]);
    const b = rel('Other', 'T', 'd', [col('id', true)]);
    const target = (schema: string, table: string): TargetTable => ({ schema, table, columns: new Set(['id']), primaryKey: ['id'] });
    const plain = only(planChange({ op: 'truncate', relations: [a, b], cascade: false, restartIdentity: false }, target));
    assert.equal(plain.text, 'TRUNCATE "public"."a""b", "Other"."T"');
    assert.deepEqual(plain.values, []);
    assert.equal(plain.expectsRow, false);
    const both = only(planChange({ op: 'truncate', relations: [a], cascade: true, restartIdentity: true }, target));
    assert.equal(both.text, 'TRUNCATE "public"."a""b" RESTART IDENTITY');
    const cascade = only(planChange({ op: 'truncate', relations: [a], cascade: true, restartIdentity: false }, target));
    assert.equal(cascade.text, 'TRUNCATE "public"."a""b"');
  });

  test('a logical message plans no statement', () => {
    const change: Change = { op: 'message', prefix: 'app', content: Buffer.from('hello') };
    assert.deepEqual(
      planChange(change, () => {
        throw new Error('no table should be looked up');
      }),
      [],
    );
  });

  test('statement names: same text, same name; different text, different name', () => {
    const target = targetFor(users, ['id']);
    const s1 = only(planChange({ op: 'insert', relation: users, newRow: rowOf(['1', 'a', 'b']) }, target));
    const s2 = only(planChange({ op: 'insert', relation: users, newRow: rowOf(['2', 'c', null]) }, target));
    const s3 = only(planChange({ op: 'delete', relation: users, oldRow: rowOf(['2', null, null]) }, target));
    assert.equal(s1.text, s2.text);
    assert.equal(s1.name, s2.name);
    assert.notEqual(s1.name, s3.name);
    assert.match(s1.name, /^[a-z_][a-z0-9_]*$/);
    assert.ok(Buffer.byteLength(s1.name) <= 63, 'a PostgreSQL identifier is at most 63 bytes');
  });

  test('property: statement names are a function of the text, and distinct texts get distinct names', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }), { minLength: 2, maxLength: 12 }), (tables) => {
        const byText = new Map<string, string>();
        for (const table of tables) {
          const r = rel('public', table, 'd', [col('id', true)]);
          for (let repeat = 0; repeat < 2; repeat++) {
            for (const s of planChange({ op: 'delete', relation: r, oldRow: rowOf(['1']) }, targetFor(r, ['id']))) {
              const known = byText.get(s.text);
              if (known !== undefined) assert.equal(s.name, known);
              byText.set(s.text, s.name);
            }
          }
        }
        assert.equal(byText.size, tables.length);
        assert.equal(new Set(byText.values()).size, byText.size);
      }),
      { numRuns: 200 },
    );
  });

  test('property: values are only ever parameters, in placeholder order $1..$n', () => {
    const value = fc.option(fc.string({ unit: 'grapheme', maxLength: 16 }), { nil: null, freq: 5 });
    const opArb = fc.constantFrom('insert', 'update', 'update-key-change', 'delete', 'full-update', 'full-delete');
    fc.assert(
      fc.property(
        opArb,
        fc.array(value, { minLength: 3, maxLength: 3 }),
        fc.array(value, { minLength: 3, maxLength: 3 }),
        fc.uniqueArray(fc.integer({ min: 0, max: 2 }), { maxLength: 2 }),
        (op, newValues, oldValues, unchangedRaw) => {
          const unchanged = unchangedRaw.filter((i) => i !== 0).sort(); // the key is always sent
          const keyed = rel('app', 'items', 'd', [col('k', true), col('c1'), col('c2')]);
          const full = rel('app', 'items', 'f', [col('k', true), col('c1', true), col('c2', true)]);
          let change: Change;
          let relation = keyed;
          const newRow = rowOf(newValues.map((v, i) => (unchanged.includes(i) ? null : v)), unchanged);
          switch (op) {
            case 'insert':
              change = { op: 'insert', relation: keyed, newRow: rowOf(newValues) };
              break;
            case 'update':
              change = { op: 'update', relation: keyed, oldRow: null, newRow };
              break;
            case 'update-key-change':
              change = { op: 'update', relation: keyed, oldRow: rowOf([oldValues[0]!, null, null]), newRow };
              break;
            case 'delete':
              change = { op: 'delete', relation: keyed, oldRow: rowOf([oldValues[0]!, null, null]) };
              break;
            case 'full-update':
              relation = full;
              change = { op: 'update', relation: full, oldRow: rowOf(oldValues), newRow };
              break;
            default:
              relation = full;
              change = { op: 'delete', relation: full, oldRow: rowOf(oldValues) };
          }
          const s = only(planChange(change, targetFor(relation, null)));

          // Expected values, in the order the placeholders appear.
          const setValues = op === 'insert' ? newValues : op.endsWith('delete') ? [] : newValues.filter((_, i) => !unchanged.includes(i));
          const whereValues = op === 'insert' ? [] : op.startsWith('full') ? oldValues : op === 'update' ? [newValues[0]!] : [oldValues[0]!];
          assert.deepEqual(s.values, [...setValues, ...whereValues]);

          const placeholders = [...s.text.matchAll(/\$(\d+)/g)].map((m) => Number(m[1]));
          assert.deepEqual(
            placeholders,
            s.values.map((_, i) => i + 1),
          );

          // The SQL text does not depend on the values at all: with every value replaced, by a word or by
          // something that would break SQL, it is the same text. (A search for each value in the text cannot
          // tell a leak from chance: the value '"ap' is in '"app"."items"' whatever the values are.)
          const textWith = (fill: string): string =>
            only(
              planChange(
                JSON.parse(
                  JSON.stringify(change, (k, v: unknown) =>
                    k === 'values' && Array.isArray(v) ? v.map((x: unknown) => (x === null ? null : fill)) : v,
                  ),
                ) as Change,
                targetFor(relation, null),
              ),
            ).text;
          assert.equal(textWith('v'), s.text);
          assert.equal(textWith(`x'); DROP TABLE items; --`), s.text);
        },
      ),
      { numRuns: 300 },
    );
  });

  test('values that look like SQL stay parameters', () => {
    const evil = `x'); DROP TABLE users; --`;
    const s = only(planChange({ op: 'insert', relation: users, newRow: rowOf(['1', evil, '$1']) }, targetFor(users, ['id'])));
    assert.ok(!s.text.includes('DROP'));
    assert.deepEqual(s.values, ['1', evil, '$1']);
  });
});

describe('planRowLookup', () => {
  test('reads the last writer from the commit timestamp and origin of the row version', () => {
    const lookup = planRowLookup(users, rowOf(['7', 'a', null]), targetFor(users, ['id'])('public', 'users'));
    assert.match(lookup.statement.text, /pg_xact_commit_timestamp_origin\(x\.xmin\)/);
    assert.match(lookup.statement.text, /FOR UPDATE/);
    assert.deepEqual(lookup.key, { id: '7' });
  });

  test('without track_commit_timestamp it only locks the row and says whether this transaction wrote it', () => {
    const lookup = planRowLookup(users, rowOf(['7', 'a', null]), targetFor(users, ['id'])('public', 'users'), false);
    assert.doesNotMatch(lookup.statement.text, /commit_timestamp/);
    assert.match(lookup.statement.text, /^SELECT x\.mine, NULL::text AS committed_micros, NULL::int AS roident FROM \(SELECT xmin, xmin = pg_current_xact_id\(\)::xid AS mine FROM "public"\."users" WHERE "id" = \$1::text FOR UPDATE\) x$/);
  });
});

describe('planInsertBatch (inserts without COPY)', () => {
  test('one text array per column, unnested and cast to the target\'s types as given; existing keys skipped', () => {
    const r = rel('public', 'keyed', 'd', [col('k', true), col('v')]);
    const target = targetFor(r, ['k'], undefined, { k: '"My Schema"."pair type"', v: 'character varying' })('public', 'keyed');
    const s = planInsertBatch(r, [rowOf(['(1,a)', 'x']), rowOf(['(,)', null])], target);
    assert.equal(
      s.text,
      'INSERT INTO "public"."keyed" ("k", "v") OVERRIDING SYSTEM VALUE SELECT u.c0::"My Schema"."pair type", u.c1::character varying FROM unnest($1::text[], $2::text[]) AS u(c0, c1) ON CONFLICT ("k") DO NOTHING',
    );
    assert.deepEqual(s.values, [['(1,a)', '(,)'], ['x', null]]);
  });

  test('a column whose type the target does not state is a schema error naming it', () => {
    const r = rel('public', 'keyed', 'd', [col('k', true), col('v')]);
    const target: TargetTable = { schema: 'public', table: 'keyed', columns: new Set(['k', 'v']), columnTypes: new Map([['k', 'integer']]), primaryKey: ['k'] };
    assert.throws(() => planInsertBatch(r, [rowOf(['1', 'x'])], target), schemaError('v'));
  });
});

describe('planCopy (runs of inserts)', () => {
  const relation = rel('public', 'We"ird', 'd', [col('id', true), col('note')]);
  const target = targetFor(relation, ['id'])('public', 'We"ird');

  test('quoted names, one line per row, \\N for null', () => {
    const plan = planCopy(relation, [rowOf(['1', 'a']), rowOf(['2', null])], target);
    assert.equal(plan.text, 'COPY "public"."We""ird" ("id", "note") FROM STDIN');
    assert.equal(plan.data.toString(), '1\ta\n2\t\\N\n');
  });

  /** COPY's text format read back as PostgreSQL reads it: the escapes planCopy writes, and \N. */
  function readCopyField(field: string): string | null {
    if (field === '\\N') return null;
    return field.replace(/\\(.)/g, (_, c: string) => ({ t: '\t', n: '\n', r: '\r' } as Record<string, string>)[c] ?? c);
  }

  test('property: every value, with tabs, newlines, carriage returns, backslashes and the text "\\N", comes back as it was', () => {
    const value = fc.option(fc.string({ unit: fc.constantFrom('a', '\\', '\t', '\n', '\r', 'N', '.', 'é') }), { nil: null });
    fc.assert(
      fc.property(fc.array(fc.tuple(value, value), { minLength: 1, maxLength: 5 }), (rows) => {
        // Rows as values, and rows in their wire form as capture and the decoder hand them over: the same bytes.
        const plan = planCopy(relation, rows.map((r) => rowOf(r)), target);
        const encoded = planCopy(relation, rows.map((r) => EncodedRow.of(rowOf(r))), target);
        assert.deepEqual(encoded.data, plan.data);
        const data = plan.data.toString();
        assert.ok(data.endsWith('\n'));
        const lines = data.slice(0, -1).split('\n');
        assert.deepEqual(lines.map((line) => line.split('\t').map(readCopyField)), rows);
      }),
    );
  });

  test('a column missing at the target is a schema error naming it', () => {
    const narrow = targetFor(relation, ['id'], ['id'])('public', 'We"ird');
    assert.throws(() => planCopy(relation, [rowOf(['1', 'a'])], narrow), schemaError('note'));
  });
});
