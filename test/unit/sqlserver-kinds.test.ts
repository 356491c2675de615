import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import type { CapturedColumn, ProjectedValue } from '../../connectors/sqlserver/cdc-reader.ts';
import { canonicalText, kindOf, nativeOf, projection } from '../../connectors/sqlserver/sqlserver-kinds.ts';
import { DecodeError } from '../../src/errors.ts';
import { formatKind } from '../../src/events/value-kind.ts';
import { microsToTimestampText, microsToTimeText, parseValue } from '../../src/events/value-parser.ts';

function column(type: string, extra: Partial<CapturedColumn> = {}): CapturedColumn {
  return { name: 'c', type, maxLength: 0, precision: 0, scale: 0, keyOrdinal: 0, ...extra };
}

const kind = (type: string, extra: Partial<CapturedColumn> = {}): string => formatKind(kindOf(column(type, extra)));

describe('SQL Server column kinds', () => {
  test('the spec mapping', () => {
    assert.equal(kind('bit'), 'boolean');
    assert.equal(kind('tinyint'), 'int16');
    assert.equal(kind('smallint'), 'int16');
    assert.equal(kind('int'), 'int32');
    assert.equal(kind('bigint'), 'int64');
    assert.equal(kind('real', { precision: 24 }), 'float32');
    assert.equal(kind('float', { precision: 53 }), 'float64');
    assert.equal(kind('float', { precision: 24 }), 'float32');
    assert.equal(kind('decimal', { precision: 12, scale: 2 }), 'decimal(12,2)');
    assert.equal(kind('numeric', { precision: 38, scale: 0 }), 'decimal(38,0)');
    assert.equal(kind('money'), 'decimal(19,4)');
    assert.equal(kind('smallmoney'), 'decimal(10,4)');
    for (const t of ['char', 'varchar', 'nchar', 'nvarchar', 'text', 'ntext', 'sysname']) assert.equal(kind(t), 'string', t);
    assert.equal(kind('xml'), 'other');
    for (const t of ['binary', 'varbinary', 'image', 'timestamp', 'rowversion']) assert.equal(kind(t), 'bytes', t);
    assert.equal(kind('uniqueidentifier'), 'uuid');
    assert.equal(kind('date'), 'date');
    assert.equal(kind('time', { scale: 7 }), 'time');
    for (const t of ['datetime', 'datetime2', 'smalldatetime']) assert.equal(kind(t), 'timestamp', t);
    assert.equal(kind('datetimeoffset', { scale: 7 }), 'timestamptz');
    for (const t of ['sql_variant', 'hierarchyid', 'geography', 'geometry']) assert.equal(kind(t), 'other', t);
    assert.equal(kind('DATETIME2'), 'timestamp', 'type names in any case');
  });

  test('native types carry their parameters', () => {
    const name = (type: string, extra: Partial<CapturedColumn> = {}): string => nativeOf(column(type, extra)).name;
    assert.equal(name('nvarchar', { maxLength: 100 }), 'nvarchar(50)', 'n-types: max_length is bytes');
    assert.equal(name('nchar', { maxLength: 20 }), 'nchar(10)');
    assert.equal(name('nvarchar', { maxLength: -1 }), 'nvarchar(max)');
    assert.equal(name('varchar', { maxLength: 40 }), 'varchar(40)');
    assert.equal(name('varbinary', { maxLength: -1 }), 'varbinary(max)');
    assert.equal(name('binary', { maxLength: 16 }), 'binary(16)');
    assert.equal(name('decimal', { precision: 12, scale: 2 }), 'decimal(12,2)');
    assert.equal(name('numeric', { precision: 5, scale: 0 }), 'numeric(5,0)');
    assert.equal(name('datetime2', { scale: 7 }), 'datetime2(7)');
    assert.equal(name('time', { scale: 3 }), 'time(3)');
    assert.equal(name('datetimeoffset', { scale: 0 }), 'datetimeoffset(0)');
    assert.equal(name('float', { precision: 53 }), 'float');
    assert.equal(name('float', { precision: 24 }), 'real');
    assert.equal(name('int'), 'int');
    assert.deepEqual(nativeOf(column('int')), { name: 'int', id: 0, modifier: -1 });
  });

  test('projections convert in SQL what the driver would lose, with documented styles', () => {
    const p = (type: string, name = 'c'): string => projection(column(type, { name }));
    assert.equal(p('bigint'), 'CONVERT(varchar(20), [c])');
    assert.equal(p('decimal'), 'CONVERT(varchar(41), [c])');
    assert.equal(p('numeric'), 'CONVERT(varchar(41), [c])');
    assert.equal(p('money'), 'CONVERT(varchar(30), [c], 2)', 'style 2: four fraction digits, no separators');
    assert.equal(p('smallmoney'), 'CONVERT(varchar(30), [c], 2)');
    assert.equal(p('uniqueidentifier'), 'CONVERT(char(36), [c])');
    assert.equal(p('date'), 'CONVERT(char(10), [c], 23)', 'style 23: yyyy-mm-dd');
    assert.equal(p('time'), 'CONVERT(varchar(16), [c])', 'the default form hh:mm:ss[.nnnnnnn]');
    assert.equal(p('datetime2'), 'CONVERT(varchar(27), [c], 126)', 'style 126: ISO 8601 with T');
    assert.equal(p('datetime'), 'CONVERT(varchar(27), [c], 126)');
    assert.equal(p('smalldatetime'), 'CONVERT(varchar(27), [c], 126)');
    assert.equal(p('datetimeoffset'), "REPLACE(STUFF(CONVERT(varchar(34), [c]), 11, 1, 'T'), ' ', '')");
    assert.equal(p('xml'), 'CONVERT(nvarchar(max), [c])');
    assert.equal(p('hierarchyid'), '[c].ToString()');
    for (const t of ['bit', 'int', 'real', 'float', 'nvarchar', 'char', 'varbinary', 'timestamp']) assert.equal(p(t), '[c]', t);
    assert.equal(p('int', 'odd]name'), '[odd]]name]', 'a closing bracket is doubled');
  });
});

interface FixtureCase {
  column: Partial<CapturedColumn> & { type: string };
  value: string | number | boolean | { hex: string } | null;
  canonical: string | null;
}

const fixture = JSON.parse(readFileSync(new URL('../fixtures/sqlserver/invented-projected-values.json', import.meta.url), 'utf8')) as { cases: FixtureCase[] };

function revive(value: FixtureCase['value']): ProjectedValue {
  return value !== null && typeof value === 'object' ? Buffer.from(value.hex, 'hex') : value;
}

describe('SQL Server projected values to canonical text (INVENTED fixtures: no server produced them)', () => {
  for (const c of fixture.cases) {
    test(`${c.column.type} ${JSON.stringify(c.value)}`, () => {
      const col = column(c.column.type, c.column);
      const text = canonicalText(col, revive(c.value));
      assert.equal(text, c.canonical);
      // Every canonical text is exactly what the kind's parser accepts.
      if (text !== null) parseValue(text, kindOf(col));
    });
  }

  test('NULL is null whatever the type', () => {
    for (const t of ['int', 'nvarchar', 'datetime2', 'uniqueidentifier']) assert.equal(canonicalText(column(t), null), null);
  });

  test('what a type cannot hold as projected is a DecodeError naming the column and type', () => {
    const bad: [string, ProjectedValue, Partial<CapturedColumn>][] = [
      ['bit', 2, {}],
      ['int', 'x', {}],
      ['bigint', 1.5, {}],
      ['decimal', 12.5, { precision: 12, scale: 2 }],
      ['decimal', '12.345', { precision: 12, scale: 2 }],
      ['nvarchar', Buffer.from('a'), { maxLength: 10 }],
      ['varbinary', 'ab', { maxLength: 10 }],
      ['uniqueidentifier', 'not-a-guid', {}],
      ['date', '2023-02-29', {}],
      ['time', '25:00:00', { scale: 0 }],
      ['datetime2', '2024-01-01', { scale: 7 }],
      ['datetimeoffset', '2024-01-01T00:00:00', { scale: 0 }],
      ['datetimeoffset', '2024-01-01T00:00:00+15:00', { scale: 0 }],
    ];
    for (const [type, value, extra] of bad) {
      assert.throws(
        () => canonicalText(column(type, { name: 'price', ...extra }), value),
        (error: unknown) => error instanceof DecodeError && /column price \(/.test(error.message) && !error.message.includes('\n'),
        `${type} ${String(value)}`,
      );
    }
  });
});

describe('SQL Server canonical text, property-based', () => {
  test('datetime2(7): the 7th digit rounds half to even into micros, carrying into seconds and days', () => {
    const MIN = -62135596800n * 10_000_000n; // 0001-01-01 in 100 ns units since 1970
    const MAX = 253402300799n * 10_000_000n + 9_999_999n; // 9999-12-31 23:59:59.9999999
    fc.assert(
      fc.property(fc.bigInt({ min: MIN, max: MAX }), (ticks) => {
        const ms = Number(ticks / 10_000n - (ticks % 10_000n < 0n ? 1n : 0n));
        const iso = new Date(ms).toISOString(); // YYYY-MM-DDTHH:MM:SS.mmmZ for years 1..9999
        const fraction = ((ticks % 10_000_000n) + 10_000_000n) % 10_000_000n;
        const text = `${iso.slice(0, 19)}.${fraction.toString().padStart(7, '0')}`;
        let micros = ticks / 10n - (ticks % 10n < 0n ? 1n : 0n);
        const last = ticks - micros * 10n;
        if (last > 5n || (last === 5n && micros % 2n !== 0n)) micros += 1n;
        const canonical = canonicalText(column('datetime2', { scale: 7 }), text);
        assert.equal(canonical, microsToTimestampText(micros));
        parseValue(canonical!, kindOf(column('datetime2', { scale: 7 })));
      }),
      { numRuns: 2000 },
    );
  });

  test('datetimeoffset: any offset gives the same UTC instant as +00:00', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: Date.UTC(1, 1, 1), max: Date.UTC(9999, 10, 30) }),
        fc.integer({ min: -14 * 60, max: 14 * 60 }),
        fc.integer({ min: 0, max: 9999 }),
        (ms, offset, subMs) => {
          const local = new Date(ms + offset * 60_000).toISOString().slice(0, 23);
          const sign = offset < 0 ? '-' : '+';
          const abs = Math.abs(offset);
          const text = `${local}${String(subMs).padStart(4, '0')}${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
          const utc = `${new Date(ms).toISOString().slice(0, 23)}${String(subMs).padStart(4, '0')}+00:00`;
          const col = column('datetimeoffset', { scale: 7 });
          assert.equal(canonicalText(col, text), canonicalText(col, utc));
          assert.match(canonicalText(col, text)!, /\+00$/);
        },
      ),
      { numRuns: 1000 },
    );
  });

  test('time(n): canonical text is the rounded microseconds', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 863_999_999_999n }), (ticks) => {
        const seconds = ticks / 10_000_000n;
        const h = seconds / 3600n;
        const m = (seconds / 60n) % 60n;
        const s = seconds % 60n;
        const text = `${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}.${String(ticks % 10_000_000n).padStart(7, '0')}`;
        let micros = ticks / 10n;
        const last = ticks % 10n;
        if (last > 5n || (last === 5n && micros % 2n === 1n)) micros += 1n;
        assert.equal(canonicalText(column('time', { scale: 7 }), text), microsToTimeText(micros));
      }),
      { numRuns: 1000 },
    );
  });

  test('decimal(p,s) text keeps its scale and reads back as itself', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 38 }).chain((p) => fc.tuple(fc.constant(p), fc.integer({ min: 0, max: p }))), fc.bigInt(), ([p, s], n) => {
        const limit = 10n ** BigInt(p);
        const v = n % limit;
        const abs = (v < 0n ? -v : v).toString().padStart(s + 1, '0');
        const text = `${v < 0n ? '-' : ''}${s > 0 ? `${abs.slice(0, abs.length - s)}.${abs.slice(abs.length - s)}` : abs}`;
        const col = column('decimal', { precision: p, scale: s });
        const canonical = canonicalText(col, text);
        if (v === 0n) assert.equal(canonical, s > 0 ? `0.${'0'.repeat(s)}` : '0');
        else assert.equal(canonical, text);
        assert.equal(parseValue(canonical!, kindOf(col)), canonical);
      }),
      { numRuns: 1000 },
    );
  });

  test('float and real round-trip through their canonical text', () => {
    fc.assert(
      fc.property(fc.double({ noNaN: false }), (x) => {
        const text = canonicalText(column('float', { precision: 53 }), x)!;
        assert.ok(Object.is(parseValue(text, kindOf(column('float', { precision: 53 }))), x), text);
      }),
      { numRuns: 1000 },
    );
    fc.assert(
      fc.property(fc.float(), (x) => {
        const col = column('real', { precision: 24 });
        const text = canonicalText(col, x)!;
        assert.ok(Object.is(parseValue(text, kindOf(col)), Math.fround(x)), text);
      }),
      { numRuns: 1000 },
    );
  });

  test('bigint text is int64 canonical', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), (n) => {
        assert.equal(canonicalText(column('bigint'), n.toString()), n.toString());
      }),
    );
  });
});
