import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import type { OracleColumn } from '../../connectors/oracle/logminer-reader.ts';
import { canonicalText, isLob, kindOf, nativeOf, oracleText } from '../../connectors/oracle/oracle-kinds.ts';
import { DecodeError } from '../../src/errors.ts';
import { formatKind } from '../../src/events/value-kind.ts';
import { parseValue, ValueFormatError } from '../../src/events/value-parser.ts';

function column(type: string, extra: Partial<OracleColumn> = {}): OracleColumn {
  return { name: 'C', type, precision: null, scale: null, dataLength: 0, charLength: 0, nullable: true, keyOrdinal: 0, ...extra };
}

const kind = (type: string, extra: Partial<OracleColumn> = {}): string => formatKind(kindOf(column(type, extra)));

describe('Oracle column kinds', () => {
  test('the spec mapping', () => {
    assert.equal(kind('NUMBER', { precision: 4, scale: 0 }), 'int16');
    assert.equal(kind('NUMBER', { precision: 5, scale: 0 }), 'int32');
    assert.equal(kind('NUMBER', { precision: 9, scale: 0 }), 'int32');
    assert.equal(kind('NUMBER', { precision: 10, scale: 0 }), 'int64');
    assert.equal(kind('NUMBER', { precision: 18, scale: 0 }), 'int64');
    assert.equal(kind('NUMBER', { precision: 19, scale: 0 }), 'decimal(19,0)');
    assert.equal(kind('NUMBER', { precision: 12, scale: 2 }), 'decimal(12,2)');
    assert.equal(kind('NUMBER', { precision: 5, scale: -2 }), 'decimal(5,-2)');
    assert.equal(kind('NUMBER'), 'decimal');
    assert.equal(kind('NUMBER', { scale: 0 }), 'decimal(38,0)', 'INTEGER is NUMBER(*,0)');
    assert.equal(kind('FLOAT', { precision: 126 }), 'decimal');
    assert.equal(kind('BINARY_FLOAT'), 'float32');
    assert.equal(kind('BINARY_DOUBLE'), 'float64');
    for (const t of ['VARCHAR2', 'NVARCHAR2', 'CHAR', 'NCHAR', 'CLOB', 'NCLOB', 'LONG']) assert.equal(kind(t), 'string', t);
    for (const t of ['RAW', 'BLOB', 'LONG RAW']) assert.equal(kind(t), 'bytes', t);
    assert.equal(kind('DATE'), 'timestamp');
    assert.equal(kind('TIMESTAMP(6)'), 'timestamp');
    assert.equal(kind('TIMESTAMP(9) WITH TIME ZONE'), 'timestamptz');
    assert.equal(kind('TIMESTAMP(6) WITH LOCAL TIME ZONE'), 'timestamptz');
    assert.equal(kind('INTERVAL DAY(2) TO SECOND(6)'), 'interval');
    assert.equal(kind('INTERVAL YEAR(2) TO MONTH'), 'interval');
    for (const t of ['XMLTYPE', 'ROWID', 'UROWID', 'SDO_GEOMETRY']) assert.equal(kind(t), 'other', t);
  });

  test('native types carry their parameters', () => {
    const name = (type: string, extra: Partial<OracleColumn> = {}): string => nativeOf(column(type, extra)).name;
    assert.equal(name('NUMBER', { precision: 12, scale: 2 }), 'NUMBER(12,2)');
    assert.equal(name('NUMBER', { precision: 9, scale: 0 }), 'NUMBER(9)');
    assert.equal(name('NUMBER'), 'NUMBER');
    assert.equal(name('NUMBER', { scale: 0 }), 'NUMBER(*,0)');
    assert.equal(name('VARCHAR2', { dataLength: 160, charLength: 40 }), 'VARCHAR2(40)');
    assert.equal(name('NVARCHAR2', { dataLength: 80, charLength: 40 }), 'NVARCHAR2(40)');
    assert.equal(name('RAW', { dataLength: 16 }), 'RAW(16)');
    assert.equal(name('FLOAT', { precision: 126 }), 'FLOAT(126)');
    assert.equal(name('TIMESTAMP(6) WITH TIME ZONE', { scale: 6 }), 'TIMESTAMP(6) WITH TIME ZONE');
    assert.equal(name('TIMESTAMP WITH TIME ZONE', { scale: 3 }), 'TIMESTAMP(3) WITH TIME ZONE');
    assert.equal(name('INTERVAL DAY(2) TO SECOND(6)'), 'INTERVAL DAY(2) TO SECOND(6)');
    assert.deepEqual(nativeOf(column('DATE')), { name: 'DATE', id: 0, modifier: -1 });
  });

  test('LOBs', () => {
    for (const t of ['CLOB', 'NCLOB', 'BLOB']) assert.equal(isLob(column(t)), true, t);
    for (const t of ['LONG', 'RAW', 'VARCHAR2', 'LONG RAW']) assert.equal(isLob(column(t)), false, t);
  });
});

const values = JSON.parse(readFileSync(new URL('../fixtures/oracle/invented-redo-values.json', import.meta.url), 'utf8')) as {
  columns: Record<string, Partial<OracleColumn> & { type: string }>;
  values: [string, string, string | null][];
};

describe('Oracle text → canonical text: invented values per type', () => {
  for (const [col, text, expected] of values.values) {
    const c = column(values.columns[col]!.type, values.columns[col]);
    test(`${col} ${JSON.stringify(text)} → ${expected === null ? 'refused' : JSON.stringify(expected)}`, () => {
      if (expected === null) {
        assert.throws(() => canonicalText(c, text), (e: unknown) => e instanceof DecodeError && e.message.includes(`column C (${col})`) && !e.message.includes('\n'));
      } else {
        const canonical = canonicalText(c, text);
        assert.equal(canonical, expected);
        parseValue(canonical!, kindOf(c)); // canonical for its kind
      }
    });
  }

  test('NULL is null', () => {
    assert.equal(canonicalText(column('NUMBER'), null), null);
  });

  test('a region-name zone names the fix', () => {
    assert.throws(() => canonicalText(column('TIMESTAMP(6) WITH TIME ZONE'), '2024-01-01 01:00:00.000000000 US/Pacific PST'), /time zone region.*offsets/);
  });
});

describe('canonical text → Oracle text', () => {
  test('Oracle prints NUMBER without trailing zeros or a leading 0', () => {
    const c = column('NUMBER', { precision: 12, scale: 2 });
    assert.equal(oracleText(c, '0.50'), '.5');
    assert.equal(oracleText(c, '-0.50'), '-.5');
    assert.equal(oracleText(c, '10.00'), '10');
    assert.equal(oracleText(c, '0.00'), '0');
  });

  test('values the Oracle type cannot hold are refused', () => {
    assert.throws(() => oracleText(column('NUMBER'), 'NaN'), ValueFormatError);
    assert.throws(() => oracleText(column('DATE'), '2024-01-01 00:00:00.5'), /whole seconds/);
    assert.throws(() => oracleText(column('TIMESTAMP(6)'), '0044-03-15 12:00:00 BC'), /years 1 to 9999/);
    assert.throws(() => oracleText(column('INTERVAL DAY(2) TO SECOND(6)'), 'P1M'), /no months/);
    assert.throws(() => oracleText(column('INTERVAL YEAR(2) TO MONTH'), 'P1D'), /years and months only/);
    assert.throws(() => oracleText(column('NUMBER', { precision: 4, scale: 0 }), '1.5'), ValueFormatError);
  });

  test('forms', () => {
    assert.equal(oracleText(column('BINARY_DOUBLE'), 'Infinity'), 'Inf');
    assert.equal(oracleText(column('BINARY_DOUBLE'), 'NaN'), 'Nan');
    assert.equal(oracleText(column('BINARY_DOUBLE'), '1e+100'), '1E+100');
    assert.equal(oracleText(column('RAW'), '\\x0aff'), '0AFF');
    assert.equal(oracleText(column('DATE'), '2024-02-29 08:30:00'), '2024-02-29 08:30:00');
    assert.equal(oracleText(column('TIMESTAMP(9)'), '2024-02-29 08:30:00.5'), '2024-02-29 08:30:00.500000000');
    assert.equal(oracleText(column('TIMESTAMP(6) WITH TIME ZONE'), '2024-02-29 08:30:00+00'), '2024-02-29 08:30:00.000000000 +00:00');
    assert.equal(oracleText(column('TIMESTAMP(6) WITH LOCAL TIME ZONE'), '2024-02-29 08:30:00+00'), '2024-02-29 08:30:00.000000000');
    assert.equal(oracleText(column('INTERVAL DAY(2) TO SECOND(6)'), 'P-1DT-2H-3M-4.56S'), '-01 02:03:04.560000000');
    assert.equal(oracleText(column('INTERVAL DAY(2) TO SECOND(6)'), 'P1DT-1H'), '+00 23:00:00.000000000');
    // 23:59:59.9999995 rounds (half to even) up to a whole day, carried into the days as Oracle would keep it.
    assert.equal(canonicalText(column('INTERVAL DAY(9) TO SECOND(9)'), '+00 23:59:59.999999500'), 'P1D');
    assert.equal(canonicalText(column('INTERVAL DAY(9) TO SECOND(9)'), '-00 23:59:59.999999500'), 'P-1D');
    assert.equal(oracleText(column('INTERVAL YEAR(2) TO MONTH'), 'P-3Y-6M'), '-03-06');
  });
});

// ─── round trips: canonical → oracleText → canonicalText ─────────────────────────────────────────────────

const pad = (n: number, w: number): string => String(n).padStart(w, '0');
const dateTime = fc
  .record({ y: fc.integer({ min: 1, max: 9999 }), mo: fc.integer({ min: 1, max: 12 }), d: fc.integer({ min: 1, max: 28 }), h: fc.integer({ min: 0, max: 23 }), mi: fc.integer({ min: 0, max: 59 }), s: fc.integer({ min: 0, max: 59 }) })
  .map((t) => `${pad(t.y, 4)}-${pad(t.mo, 2)}-${pad(t.d, 2)} ${pad(t.h, 2)}:${pad(t.mi, 2)}:${pad(t.s, 2)}`);
const nanos = fc.integer({ min: 0, max: 999_999_999 }).map((n) => pad(n, 9));

/** Oracle text forms of each type, as Oracle would print them. */
const oracleForms: [string, OracleColumn, fc.Arbitrary<string>][] = [
  ['NUMBER(12,2)', column('NUMBER', { precision: 12, scale: 2 }), fc.tuple(fc.boolean(), fc.bigInt({ min: 0n, max: 9_999_999_999n }), fc.integer({ min: 0, max: 99 })).map(([neg, i, f]) => `${neg ? '-' : ''}${i}.${pad(f, 2)}`)],
  ['NUMBER', column('NUMBER'), fc.tuple(fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }), fc.integer({ min: -40, max: 40 })).map(([m, e]) => `${m}E${e >= 0 ? '+' : ''}${e}`)],
  ['NUMBER(18)', column('NUMBER', { precision: 18, scale: 0 }), fc.bigInt({ min: -(10n ** 18n) + 1n, max: 10n ** 18n - 1n }).map(String)],
  ['NUMBER(4)', column('NUMBER', { precision: 4, scale: 0 }), fc.integer({ min: -9999, max: 9999 }).map(String)],
  ['BINARY_FLOAT', column('BINARY_FLOAT'), fc.float({ noDefaultInfinity: false }).map((x) => (Number.isNaN(x) ? 'Nan' : x === Infinity ? 'Inf' : x === -Infinity ? '-Inf' : x.toExponential().toUpperCase()))],
  ['BINARY_DOUBLE', column('BINARY_DOUBLE'), fc.double().map((x) => (Number.isNaN(x) ? 'Nan' : x === Infinity ? 'Inf' : x === -Infinity ? '-Inf' : String(x)))],
  ['VARCHAR2', column('VARCHAR2'), fc.string({ unit: 'grapheme', minLength: 1 })],
  ['RAW', column('RAW'), fc.uint8Array({ maxLength: 20 }).map((b) => Buffer.from(b).toString('hex').toUpperCase())],
  ['DATE', column('DATE'), dateTime],
  ['TIMESTAMP(9)', column('TIMESTAMP(9)'), fc.tuple(dateTime, nanos).map(([d, n]) => `${d}.${n}`)],
  ['TIMESTAMP(9) WITH TIME ZONE', column('TIMESTAMP(9) WITH TIME ZONE'), fc.tuple(dateTime, nanos, fc.integer({ min: -12 * 60, max: 14 * 60 })).map(([d, n, o]) => `${d.replace(/^0001-01-0([12])/, '2000-01-1$1').replace(/^9999-12-[23]/, '2000-01-1')}.${n} ${o < 0 ? '-' : '+'}${pad(Math.trunc(Math.abs(o) / 60), 2)}:${pad(Math.abs(o) % 60, 2)}`)],
  ['INTERVAL DAY TO SECOND', column('INTERVAL DAY(9) TO SECOND(9)'), fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 999_999_999 }), fc.integer({ min: 0, max: 86399 }), nanos).map(([neg, d, s, n]) => `${neg ? '-' : '+'}${pad(d, 2)} ${pad(Math.trunc(s / 3600), 2)}:${pad(Math.trunc(s / 60) % 60, 2)}:${pad(s % 60, 2)}.${n}`)],
  ['INTERVAL YEAR TO MONTH', column('INTERVAL YEAR(9) TO MONTH'), fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 99_999_999 }), fc.integer({ min: 0, max: 11 })).map(([neg, y, m]) => `${neg ? '-' : '+'}${pad(y, 2)}-${pad(m, 2)}`)],
];

describe('round trips', () => {
  for (const [name, c, forms] of oracleForms) {
    test(`${name}: canonical → oracleText → canonicalText is the identity`, () => {
      fc.assert(
        fc.property(forms, (text) => {
          const canonical = canonicalText(c, text)!;
          parseValue(canonical, kindOf(c));
          let back: string;
          try {
            back = oracleText(c, canonical);
          } catch (error) {
            // a timestamp rounded up past 9999-12-31 23:59:59.999999 has no Oracle form
            if (error instanceof ValueFormatError && /years 1 to 9999/.test(error.message)) return;
            throw error;
          }
          assert.equal(canonicalText(c, back), canonical, `${text} → ${canonical} → ${back}`);
        }),
        { numRuns: 300 },
      );
    });
  }
});
