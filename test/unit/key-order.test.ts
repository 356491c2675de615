/**
 * compareKeys (src/capture/key-order.ts): the kind-neutral key order. Each kind against a reference that
 * does not share its code (numbers by exact arithmetic on the values the texts were made from, text by
 * Buffer.compare of the UTF-8 bytes, dates and times by the values value-parser.ts formats), the edge cases
 * that break naive orders (int64 past 2^53, decimals of different scales, UTF-16 surrogates against
 * U+E000–U+FFFF, case, BC years, MariaDB's zero dates and long TIMEs), multi-column keys, and refusals.
 * test/integration/table-readers.test.ts checks that PostgreSQL and MariaDB sort keys this same way.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { compareKeys } from '../../src/capture/key-order.ts';
import type { RowKey, TableShape } from '../../src/capture/table-reader.ts';
import { parseKind } from '../../src/events/value-kind.ts';
import { daysToIsoDate, formatFloat32, formatFloat64, microsToTimeText, microsToTimestampText, normalizeDecimal, TIMESTAMP_MAX_MICROS, TIMESTAMP_MIN_MICROS, DATE_MAX_DAYS, DATE_MIN_DAYS } from '../../src/events/value-parser.ts';

/** A table whose key is the given kinds, in order (after one non-key column, so indexes are not 0..n). */
function shapeOf(...kinds: string[]): TableShape {
  return {
    relation: {
      schema: 's',
      table: 't',
      replicaIdentity: 'd',
      columns: [
        { name: 'payload', kind: parseKind('string'), native: { name: 'text', id: 25, modifier: -1 }, key: false },
        ...kinds.map((kind, i) => ({ name: `k${i}`, kind: parseKind(kind), native: { name: kind, id: 0, modifier: -1 }, key: true })),
      ],
    },
    keyColumns: kinds.map((_, i) => i + 1),
  };
}

const sign = (n: number): number => (n < 0 ? -1 : n > 0 ? 1 : 0);

/** Asserts that `texts` are in strictly ascending order for a one-column key of `kind`, pair by pair and sorted. */
function ascending(kind: string, texts: readonly string[]): void {
  const shape = shapeOf(kind);
  for (let i = 0; i < texts.length; i++) {
    for (let j = 0; j < texts.length; j++) {
      assert.equal(sign(compareKeys(shape, [texts[i]!], [texts[j]!])), sign(i - j), `${kind}: ${JSON.stringify(texts[i])} against ${JSON.stringify(texts[j])}`);
    }
  }
  const shuffled = [...texts].reverse().map((t): RowKey => [t]);
  assert.deepEqual(shuffled.sort((a, b) => compareKeys(shape, a, b)).map((k) => k[0]), texts);
}

function equal(kind: string, a: string, b: string): void {
  assert.equal(compareKeys(shapeOf(kind), [a], [b]), 0, `${kind}: ${a} = ${b}`);
}

describe('compareKeys', () => {
  test('integers by value, int64 beyond 2^53 exactly', () => {
    ascending('int16', ['-32768', '-10', '-9', '-1', '0', '1', '9', '10', '32767']);
    ascending('int64', ['-9223372036854775808', '-9007199254740993', '-9007199254740992', '-1', '0', '9007199254740992', '9007199254740993', '9223372036854775807']);
    fc.assert(
      fc.property(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), (a, b) => {
        assert.equal(sign(compareKeys(shapeOf('int64'), [String(a)], [String(b)])), a < b ? -1 : a > b ? 1 : 0);
      }),
    );
  });

  test('decimals by exact value, whatever their scales; NaN above Infinity', () => {
    ascending('decimal', ['-Infinity', '-10', '-9.99', '-1.5', '-1.49', '-0.001', '0', '0.001', '0.3', '0.30000000000000001', '1.49', '1.5', '9.99', '10', '123456789012345678901234567890.000000000000000000001', 'Infinity', 'NaN']);
    equal('decimal', '1.5', '1.50');
    equal('decimal', '0', '0.000');
    equal('decimal(20,0)', '18446744073709551615', '18446744073709551615');
    ascending('decimal(20,0)', ['0', '9', '10', '9223372036854775808', '18446744073709551615']);
    // Against exact rational arithmetic on random mantissas and scales (different scales in one comparison).
    const decimal = fc.tuple(fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }), fc.integer({ min: 0, max: 12 }));
    fc.assert(
      fc.property(decimal, decimal, ([ma, sa], [mb, sb]) => {
        const text = (m: bigint, s: number): string => {
          const digits = (m < 0n ? -m : m).toString().padStart(s + 1, '0');
          const body = s === 0 ? digits : `${digits.slice(0, -s)}.${digits.slice(-s)}`;
          return m < 0n ? `-${body}` : body;
        };
        const a = normalizeDecimal(text(ma, sa), parseKind('decimal'));
        const b = normalizeDecimal(text(mb, sb), parseKind('decimal'));
        const left = ma * 10n ** BigInt(sb);
        const right = mb * 10n ** BigInt(sa);
        assert.equal(sign(compareKeys(shapeOf('decimal'), [a], [b])), left < right ? -1 : left > right ? 1 : 0, `${a} against ${b}`);
      }),
    );
  });

  test('floats by value: -0 is 0, NaN above Infinity, float32 texts in float32 order', () => {
    ascending('float64', ['-Infinity', '-1.7976931348623157e+308', '-1', '-5e-324', '0', '5e-324', '0.1', '0.30000000000000004', '1e+23', 'Infinity', 'NaN']);
    equal('float64', '-0', '0');
    equal('float64', 'NaN', 'NaN');
    ascending('float32', ['-3.4028235e+38', '-1', '0', '1e-45', '0.1', '0.10000001', '1', '1.0000001', '1.6777216e+07', 'Infinity', 'NaN']);
    const reference = (a: number, b: number): number => (Number.isNaN(a) || Number.isNaN(b) ? (Number.isNaN(a) ? 1 : 0) - (Number.isNaN(b) ? 1 : 0) : a < b ? -1 : a > b ? 1 : 0);
    fc.assert(
      fc.property(fc.double(), fc.double(), (a, b) => {
        assert.equal(sign(compareKeys(shapeOf('float64'), [formatFloat64(a)], [formatFloat64(b)])), reference(a, b));
      }),
    );
    // Neighbouring float32s: their shortest texts, read as doubles, must not meet or cross.
    const float32 = fc.float({ noNaN: true });
    fc.assert(
      fc.property(float32, fc.integer({ min: -3, max: 3 }), (a, step) => {
        const view = new DataView(new ArrayBuffer(4));
        view.setFloat32(0, a);
        const bits = view.getInt32(0) + step;
        view.setInt32(0, bits);
        const b = view.getFloat32(0);
        fc.pre(!Number.isNaN(b));
        assert.equal(sign(compareKeys(shapeOf('float32'), [formatFloat32(a)], [formatFloat32(b)])), reference(a, b), `${formatFloat32(a)} against ${formatFloat32(b)}`);
      }),
    );
  });

  test('text by UTF-8 bytes: case, accents, and code points above U+FFFF after U+E000–U+FFFF', () => {
    ascending('string', ['', 'A', 'B', 'Z', 'a', 'a\u0001', 'a b', 'ab', 'b', 'z', 'É', 'é', 'Ω', '日本', '\uff5e', '😀']);
    // The one place UTF-16 code unit order (JavaScript's < on strings) is wrong:
    assert.ok('😀' < '\uff5e');
    assert.ok(compareKeys(shapeOf('string'), ['😀'], ['\uff5e']) > 0);
    const codePoint = fc.oneof(
      fc.constantFrom(0, 1, 0x7f, 0x80, 0x7ff, 0x800, 0xd7ff, 0xe000, 0xfffd, 0xffff, 0x10000, 0x10ffff),
      fc.integer({ min: 0, max: 0x10ffff }).filter((c) => c < 0xd800 || c > 0xdfff),
    );
    const text = fc.array(codePoint, { maxLength: 6 }).map((cps) => String.fromCodePoint(...cps));
    for (const kind of ['string', 'enum', 'json', 'other', 'interval']) {
      fc.assert(
        fc.property(text, text, (a, b) => {
          assert.equal(sign(compareKeys(shapeOf(kind), [a], [b])), Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8')));
        }),
      );
    }
  });

  test('bytes by their bytes, uuid by its hex digits, boolean f before t', () => {
    ascending('bytes', ['\\x', '\\x00', '\\x0000', '\\x01', '\\x0f', '\\x10', '\\x7f', '\\x80', '\\xff', '\\xff00']);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 6 }), fc.uint8Array({ maxLength: 6 }), (a, b) => {
        const hex = (x: Uint8Array): string => `\\x${Buffer.from(x).toString('hex')}`;
        assert.equal(sign(compareKeys(shapeOf('bytes'), [hex(a)], [hex(b)])), Buffer.compare(Buffer.from(a), Buffer.from(b)));
      }),
    );
    ascending('uuid', ['00000000-0000-0000-0000-000000000000', '0a000000-0000-0000-0000-000000000000', '9fffffff-ffff-ffff-ffff-ffffffffffff', 'a0000000-0000-0000-0000-000000000000', 'ffffffff-ffff-ffff-ffff-ffffffffffff']);
    // A MariaDB TINYINT(1) holding another number travels as that number, and sorts as one.
    ascending('boolean', ['-1', 'f', 't', '2']);
  });

  test('dates and timestamps by value: BC years, infinities, MariaDB zero and partial dates', () => {
    // MariaDB's year 0000 is the year before 0001, which PostgreSQL calls 1 BC.
    ascending('date', ['-infinity', '4714-11-24 BC', '0002-01-01 BC', '0000-00-00', '0001-12-31 BC', '0001-01-01', '2019-12-31', '2020-00-05', '2020-01-01', '9999-12-31', '10000-01-01', 'infinity']);
    ascending('timestamp', [
      '-infinity',
      '0044-03-15 12:00:00.5 BC',
      '0000-00-00 00:00:00',
      '1970-01-01 00:00:00',
      '1970-01-01 00:00:00.000001',
      '1970-01-01 00:00:00.49',
      '1970-01-01 00:00:00.5',
      '2024-02-29 23:59:59.999999',
      'infinity',
    ]);
    ascending('timestamptz', ['-infinity', '0044-03-15 12:00:00+00 BC', '0000-00-00 00:00:00.000000', '2024-02-29 12:34:56.789012+00', '10000-01-01 00:00:00+00', 'infinity']);
    // MariaDB's zero TIMESTAMP keeps its fraction digits; equal values of different spellings are one key.
    equal('timestamp', '2024-01-01 00:00:00.5', '2024-01-01 00:00:00.500000');
    fc.assert(
      fc.property(fc.bigInt({ min: TIMESTAMP_MIN_MICROS, max: TIMESTAMP_MAX_MICROS }), fc.bigInt({ min: TIMESTAMP_MIN_MICROS, max: TIMESTAMP_MAX_MICROS }), (a, b) => {
        for (const [kind, zone] of [['timestamp', false], ['timestamptz', true]] as const) {
          assert.equal(sign(compareKeys(shapeOf(kind), [microsToTimestampText(a, zone)], [microsToTimestampText(b, zone)])), a < b ? -1 : a > b ? 1 : 0);
        }
      }),
    );
    fc.assert(
      fc.property(fc.integer({ min: DATE_MIN_DAYS, max: DATE_MAX_DAYS }), fc.integer({ min: DATE_MIN_DAYS, max: DATE_MAX_DAYS }), (a, b) => {
        assert.equal(sign(compareKeys(shapeOf('date'), [daysToIsoDate(a)], [daysToIsoDate(b)])), sign(a - b));
      }),
    );
  });

  test('times by value, MariaDB TIMEs below zero and past a day included', () => {
    ascending('time', ['-838:59:59', '-01:00:00.5', '-01:00:00', '00:00:00', '00:00:00.000001', '12:00:00.5', '23:59:59.999999', '24:00:00', '838:59:59']);
    equal('time', '-01:02:03.500000', '-01:02:03.5');
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 86_400_000_000n }), fc.bigInt({ min: 0n, max: 86_400_000_000n }), (a, b) => {
        assert.equal(sign(compareKeys(shapeOf('time'), [microsToTimeText(a)], [microsToTimeText(b)])), a < b ? -1 : a > b ? 1 : 0);
      }),
    );
  });

  test('keys of several columns compare column by column, in key order', () => {
    const shape = shapeOf('int32', 'string');
    const keys: RowKey[] = [['-1', 'z'], ['1', ''], ['1', 'B'], ['1', 'a'], ['1', 'é'], ['2', 'A'], ['10', 'A']];
    for (let i = 0; i < keys.length; i++) {
      for (let j = 0; j < keys.length; j++) assert.equal(sign(compareKeys(shape, keys[i]!, keys[j]!)), sign(i - j), `${JSON.stringify(keys[i])} against ${JSON.stringify(keys[j])}`);
    }
    // The key columns' positions in the relation are what keyColumns says, not their order among the columns.
    const reversed: TableShape = { ...shape, keyColumns: [2, 1] };
    assert.ok(compareKeys(reversed, ['a', '9'], ['b', '1']) < 0, 'compared by the string first');
    assert.throws(() => compareKeys(shape, ['1'], ['1', 'a']), /has 2 columns; got keys of 1 and 2/);
  });

  test('kinds without a shared order, and texts a kind cannot read, are refused with the column named', () => {
    assert.throws(() => compareKeys(shapeOf('array<int32>'), ['{1}'], ['{2}']), /key column k0 of s\.t is of kind array, which has no order shared between databases/);
    assert.throws(() => compareKeys(shapeOf('struct'), ['(1)'], ['(2)']), /key column k0 of s\.t is of kind struct/);
    assert.throws(() => compareKeys(shapeOf('int64'), ['1'], ['1.5']), /key column k0 of s\.t: "1\.5" is not a int64 value/);
    assert.throws(() => compareKeys(shapeOf('int32'), [''], ['1']), /"" is not a int32 value/);
    assert.throws(() => compareKeys(shapeOf('decimal'), ['1e5'], ['1']), /"1e5" is not a decimal value/);
    assert.throws(() => compareKeys(shapeOf('date'), ['2024-1-1'], ['2024-01-01']), /is not a date value/);
    assert.throws(() => compareKeys(shapeOf('timestamptz'), ['2024-01-01 00:00:00+02'], ['2024-01-01 00:00:00+00']), /is not a timestamptz value/);
  });
});
