import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { parseRedo, type ParsedRedo, type RedoFunction } from '../../connectors/oracle/sql-redo-parser.ts';
import { DecodeError } from '../../src/errors.ts';

interface Fixture {
  name: string;
  sql: string;
  op: string;
  owner: string;
  table: string;
  newValues: Record<string, string | null>;
  oldValues: Record<string, string | null>;
  emptyLobs: string[];
  unsupported: string[];
  functions: Record<string, string>;
}

const fixtures = JSON.parse(readFileSync(new URL('../fixtures/oracle/invented-redo-statements.json', import.meta.url), 'utf8')) as {
  statements: Fixture[];
  refused: { name: string; sql: string; message: string }[];
};

function plain(p: ParsedRedo): Omit<Fixture, 'name' | 'sql'> {
  return {
    op: p.op,
    owner: p.owner,
    table: p.table,
    newValues: Object.fromEntries(p.newValues),
    oldValues: Object.fromEntries(p.oldValues),
    emptyLobs: [...p.emptyLobs],
    unsupported: [...p.unsupported],
    functions: Object.fromEntries(p.functions),
  };
}

describe('LogMiner SQL_REDO parser: invented fixtures', () => {
  for (const f of fixtures.statements) {
    test(f.name, () => {
      const { name: _n, sql, ...expected } = f;
      assert.deepEqual(plain(parseRedo(sql)), expected);
    });
  }
  for (const r of fixtures.refused) {
    test(`refuses: ${r.name}`, () => {
      assert.throws(
        () => parseRedo(r.sql),
        (e: unknown) => e instanceof DecodeError && e.message.includes(r.message) && !e.message.includes('\n'),
      );
    });
  }

  test('the error is one line with a short preview, never the whole statement', () => {
    const long = 'x'.repeat(10_000);
    const sql = `insert into "A"."B"("X","Y") values ('${long}','${long}' '${long}');`;
    try {
      parseRedo(sql);
      assert.fail('accepted');
    } catch (e) {
      assert.ok(e instanceof DecodeError);
      assert.ok(e.message.length < 200, e.message);
      assert.match(e.message, /^cannot read LogMiner SQL_REDO of "A"\."B" at character \d+: /);
    }
  });

  test('keywords in any case, runs of whitespace', () => {
    const p = parseRedo('UPDATE  "A"."B"\n SET "X"=\'1\'\tWHERE "Y" is null AND rowid = \'AAA\' ;  ');
    assert.deepEqual(Object.fromEntries(p.newValues), { X: '1' });
    assert.deepEqual(Object.fromEntries(p.oldValues), { Y: null });
  });

  test('linear time: a long value of quotes and a long column list', () => {
    const value = "''".repeat(200_000);
    const started = performance.now();
    const p = parseRedo(`insert into "A"."B"("X") values ('${value}');`);
    assert.equal(p.newValues.get('X'), "'".repeat(200_000));
    const cols = Array.from({ length: 2000 }, (_, i) => `"C${i}"`);
    const q = parseRedo(`insert into "A"."B"(${cols.join(',')}) values (${cols.map((_, i) => `'${i}'`).join(',')});`);
    assert.equal(q.newValues.size, 2000);
    assert.ok(performance.now() - started < 2000);
  });
});

// ─── property: a small formatter of SQL_REDO and random statements read back ─────────────────────────────

type Lit = { text: string | null; fn: RedoFunction | null };

/** Writes a value as LogMiner could: a plain literal, UNISTR pieces joined by ||, or a function around it. */
function literal(v: Lit, style: number): string {
  if (v.text === null) return 'NULL';
  const q = (s: string): string => `'${s.replace(/'/g, "''")}'`;
  switch (v.fn) {
    case 'TO_DATE':
      return `TO_DATE(${q(v.text)}, 'YYYY-MM-DD HH24:MI:SS')`;
    case 'UNISTR': {
      // non-ASCII characters as \XXXX, backslashes as \\, split into || pieces at a point chosen by style
      const unistr = (s: string): string =>
        `UNISTR(${q([...s].map((ch) => (ch === '\\' ? '\\\\' : ch.charCodeAt(0) < 128 ? ch : [...Array(ch.length).keys()].map((i) => `\\${ch.charCodeAt(i).toString(16).toUpperCase().padStart(4, '0')}`).join(''))).join(''))})`;
      const chars = [...v.text];
      const cut = chars.length === 0 ? 0 : style % (chars.length + 1);
      const a = chars.slice(0, cut).join('');
      const b = chars.slice(cut).join('');
      const sep = ['||', ' || ', '|| ', ' ||'][style % 4]!;
      if (cut === 0) return unistr(b);
      return style % 3 === 0 ? `${q(a)}${sep}${unistr(b)}` : `${unistr(a)}${sep}${unistr(b)}`;
    }
    case null:
      return q(v.text);
    default:
      return `${v.fn}(${q(v.text)})`;
  }
}

const identifier = fc.string({ unit: fc.constantFrom('A', 'b', '_', ' ', "'", '#', '$', 'é', '名', ',', '(', ')', '=', ';', '|'), minLength: 1, maxLength: 8 });
const text = fc.string({ unit: fc.constantFrom('a', 'Z', "'", "''", '\n', ';', '||', ',', '(', ')', '"', '\\', ' ', 'é', '😀', '/*', '*/', 'where', ' and '), maxLength: 12 });
const fnArb = fc.constantFrom<RedoFunction | null>(null, null, 'UNISTR', 'TO_DATE', 'TO_TIMESTAMP', 'TO_TIMESTAMP_TZ', 'HEXTORAW', 'TO_DSINTERVAL', 'TO_YMINTERVAL', 'TO_BINARY_DOUBLE');
const lit = fc.record({ text: fc.option(text, { nil: null }), fn: fnArb });
const columns = fc.uniqueArray(fc.tuple(identifier, lit, fc.nat(30)), { minLength: 1, maxLength: 6, selector: (c) => c[0] });

function expectedFunctions(cols: [string, Lit, number][]): Record<string, string> {
  return Object.fromEntries(cols.filter(([, v]) => v.text !== null && v.fn !== null).map(([n, v]) => [n, v.fn!]));
}

describe('LogMiner SQL_REDO parser: random statements read back', () => {
  test('insert', () => {
    fc.assert(
      fc.property(identifier, identifier, columns, fc.boolean(), fc.boolean(), (owner, table, cols, space, semicolon) => {
        const sql = `insert into "${owner}"."${table}"${space ? ' ' : ''}(${cols.map(([n]) => `"${n}"`).join(',')}) values (${cols.map(([, v, s]) => literal(v, s)).join(',')})${semicolon ? ';' : ''}`;
        const p = parseRedo(sql);
        assert.equal(p.op, 'insert');
        assert.equal(p.owner, owner);
        assert.equal(p.table, table);
        assert.deepEqual(Object.fromEntries(p.newValues), Object.fromEntries(cols.map(([n, v]) => [n, v.text])));
        assert.deepEqual(Object.fromEntries(p.functions), expectedFunctions(cols));
        assert.equal(p.oldValues.size, 0);
      }),
      { numRuns: 400 },
    );
  });

  test('update and delete', () => {
    fc.assert(
      fc.property(identifier, identifier, columns, columns, fc.boolean(), fc.boolean(), (owner, table, set, where, rowid, isDelete) => {
        const cond = where.map(([n, v, s]) => (v.text === null ? `"${n}" IS NULL` : `"${n}" = ${literal(v, s)}`));
        if (rowid) cond.push("ROWID = 'AAAHTCAABAAAZAPAAN'");
        const sql = isDelete
          ? `delete from "${owner}"."${table}" where ${cond.join(' and ')};`
          : `update "${owner}"."${table}" set ${set.map(([n, v, s]) => `"${n}" = ${literal(v, s)}`).join(', ')} where ${cond.join(' and ')};`;
        const p = parseRedo(sql);
        assert.equal(p.op, isDelete ? 'delete' : 'update');
        assert.equal(p.table, table);
        assert.deepEqual(Object.fromEntries(p.oldValues), Object.fromEntries(where.map(([n, v]) => [n, v.text])));
        assert.deepEqual(Object.fromEntries(p.newValues), isDelete ? {} : Object.fromEntries(set.map(([n, v]) => [n, v.text])));
      }),
      { numRuns: 400 },
    );
  });

  test('a statement cut short anywhere is refused, never misread', () => {
    fc.assert(
      fc.property(identifier, columns, fc.nat(), (table, cols, at) => {
        const sql = `insert into "O"."${table}"(${cols.map(([n]) => `"${n}"`).join(',')}) values (${cols.map(([, v, s]) => literal(v, s)).join(',')});`;
        const cut = sql.slice(0, at % (sql.length - 1));
        assert.throws(() => parseRedo(cut), DecodeError);
      }),
      { numRuns: 300 },
    );
  });
});
