/**
 * parseValue / formatValue (src/events/value-parser.ts): every kind round trips both ways on arbitrary values,
 * the edge cases PostgreSQL 15 prints read as the right values, and text that is not exactly canonical is
 * refused. test/integration/value-kinds-postgres.test.ts checks the same forms against the real server.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseKind, type ValueKind } from '../../src/events/value-kind.ts';
import {
  arrayDimensions,
  civilToDays,
  DATE_MAX_DAYS,
  DATE_MIN_DAYS,
  daysToCivil,
  daysToIsoDate,
  formatFloat32,
  formatFloat64,
  formatValue,
  microsToTimestampText,
  normalizeDecimal,
  parseValue,
  shortestFloat64Digits,
  TIMESTAMP_MAX_MICROS,
  TIMESTAMP_MIN_MICROS,
  ValueFormatError,
  type IntervalValue,
  type NeutralArray,
  type NeutralValue,
} from '../../src/events/value-parser.ts';

const k = (text: string): ValueKind => parseKind(text);

/** formatValue then parseValue gives the value back, and parseValue then formatValue the text back. */
function roundTrips(kindText: string, value: NeutralValue): string {
  const kind = k(kindText);
  const text = formatValue(value, kind);
  assert.deepStrictEqual(parseValue(text, kind), value, `${kindText} ${text}`);
  assert.equal(formatValue(parseValue(text, kind), kind), text);
  return text;
}

function property<T extends NeutralValue>(kindText: string, arb: fc.Arbitrary<T>, numRuns = 300): void {
  fc.assert(
    fc.property(arb, (v) => {
      roundTrips(kindText, v);
    }),
    { numRuns },
  );
}

function refuses(kindText: string, text: string, reason?: RegExp): void {
  assert.throws(
    () => parseValue(text, k(kindText)),
    (error: unknown) => {
      assert.ok(error instanceof ValueFormatError, `${kindText} ${JSON.stringify(text)}: ${String(error)}`);
      assert.ok(!error.message.includes('\n'), 'one line');
      assert.ok(error.message.startsWith(`${kindText}: `), error.message);
      if (reason) assert.match(error.message, reason);
      return true;
    },
    `${kindText} should refuse ${JSON.stringify(text)}`,
  );
}

/** Canonical texts as PostgreSQL 15 printed them (psql, sitesync's session settings), with their values. */
function reads(kindText: string, pairs: readonly (readonly [string, NeutralValue])[]): void {
  for (const [text, value] of pairs) {
    assert.deepStrictEqual(parseValue(text, k(kindText)), value, `${kindText} ${text}`);
    assert.equal(formatValue(value, k(kindText)), text);
  }
}

// ─── arbitraries ────────────────────────────────────────────────────────────────────────────────────────

const int32 = fc.integer({ min: -2147483648, max: 2147483647 });
const int64 = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n });
const float32FromBits = fc.integer({ min: 0, max: 0xffffffff }).map((bits) => {
  const view = new DataView(new ArrayBuffer(4));
  view.setUint32(0, bits);
  return view.getFloat32(0);
});
const float64FromBits = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map((bits) => {
  const view = new DataView(new ArrayBuffer(8));
  view.setBigUint64(0, bits);
  return view.getFloat64(0);
});
const days = fc.oneof(
  fc.integer({ min: DATE_MIN_DAYS, max: DATE_MAX_DAYS }),
  fc.integer({ min: -800_000, max: -650_000 }),
  fc.integer({ min: 2_900_000, max: 3_000_000 }),
  fc.constantFrom(Infinity, -Infinity),
);
const timestamps: fc.Arbitrary<bigint | number> = fc.oneof(
  fc.bigInt({ min: TIMESTAMP_MIN_MICROS, max: TIMESTAMP_MAX_MICROS }),
  fc.bigInt({ min: -70_000_000_000_000_000n, max: -55_000_000_000_000_000n }),
  fc.bigInt({ min: -1_000_000_000n, max: 1_000_000_000n }),
  fc.constantFrom<bigint | number>(Infinity, -Infinity, TIMESTAMP_MIN_MICROS, TIMESTAMP_MAX_MICROS),
);
const intervals: fc.Arbitrary<IntervalValue> = fc.record(
  {
    months: fc.oneof(int32, fc.integer({ min: -30, max: 30 })),
    days: fc.oneof(int32, fc.integer({ min: -40, max: 40 })),
    micros: fc.oneof(int64, fc.bigInt({ min: -100_000_000_000n, max: 100_000_000_000n })),
  },
  { noNullPrototype: true },
);
const strings = fc.oneof(
  fc.string({ unit: 'binary' }),
  fc.string({ unit: fc.constantFrom('a', ',', '"', '\\', '{', '}', '(', ')', ' ', '\t', '\n', '\v', '\f', '\r', 'é', '𝄞', ';'), maxLength: 8 }),
  fc.constantFrom('NULL', 'null', 'nUlL', '', ' '),
);

function decimalText(unscaled: bigint, scale: number): string {
  if (scale <= 0) return unscaled === 0n ? '0' : `${unscaled}${'0'.repeat(-scale)}`;
  const negative = unscaled < 0n;
  const digits = (negative ? -unscaled : unscaled).toString().padStart(scale + 1, '0');
  return `${negative ? '-' : ''}${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
}

/** A rectangular array of 1 to 3 dimensions (or empty), maybe with lower bounds other than 1. */
function arrayOf(element: fc.Arbitrary<NeutralValue>, elementKind: ValueKind): fc.Arbitrary<NeutralArray> {
  const shaped = fc
    .tuple(fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 1, maxLength: 3 }), fc.option(fc.array(fc.integer({ min: -5, max: 5 }), { minLength: 3, maxLength: 3 })))
    .chain(([lengths, bounds]) => {
      const total = lengths.reduce((a, b) => a * b, 1);
      return fc.array(fc.option(element, { freq: 4 }), { minLength: total, maxLength: total }).map((flat) => {
        const build = (d: number, offset: number): NeutralArray => {
          const stride = lengths.slice(d + 1).reduce((a, b) => a * b, 1);
          return Array.from({ length: lengths[d]! }, (_, i) => (d + 1 < lengths.length ? build(d + 1, offset + i * stride) : flat[offset + i]!));
        };
        const value = build(0, 0);
        const lower = bounds?.slice(0, lengths.length);
        if (lower?.some((b) => b !== 1)) value.lowerBounds = lower;
        else if (arrayDimensions(value, elementKind) !== lengths.length) value.lowerBounds = lengths.map(() => 1);
        return value;
      });
    });
  return fc.oneof({ arbitrary: shaped, weight: 9 }, { arbitrary: fc.constant<NeutralArray>([]), weight: 1 });
}

// ─── per kind ───────────────────────────────────────────────────────────────────────────────────────────

describe('boolean and integers', () => {
  test('round trips', () => {
    roundTrips('boolean', true);
    roundTrips('boolean', false);
    property('int16', fc.integer({ min: -32768, max: 32767 }));
    property('int32', int32);
    property('int64', int64);
    reads('int64', [
      ['-9223372036854775808', -(2n ** 63n)],
      ['9223372036854775807', 2n ** 63n - 1n],
      ['0', 0n],
    ]);
    reads('int16', [
      ['-32768', -32768],
      ['32767', 32767],
    ]);
  });

  test('refusals: other spellings, leading zeros, signs, out of range', () => {
    for (const t of ['true', 'false', 'T', '1', '0', 'yes', '', ' t']) refuses('boolean', t);
    for (const t of ['+1', '01', '-0', '1.0', '1e3', ' 1', '1 ', '', '-', '0x10', '32768', '-32769']) refuses('int16', t);
    for (const t of ['2147483648', '-2147483649', '00']) refuses('int32', t);
    for (const t of ['9223372036854775808', '-9223372036854775809', '+0', '99999999999999999999999']) refuses('int64', t);
  });

  test('formatting refuses the wrong type and out of range values', () => {
    assert.throws(() => formatValue(1.5, k('int32')), ValueFormatError);
    assert.throws(() => formatValue(32768, k('int16')), ValueFormatError);
    assert.throws(() => formatValue(1, k('int64')), /expected a bigint/);
    assert.throws(() => formatValue(2n ** 63n, k('int64')), /out of range/);
    assert.throws(() => formatValue('t', k('boolean')), ValueFormatError);
  });
});

describe('floats', () => {
  test('float64 round trips every double, -0 and NaN included', () => {
    property('float64', fc.double(), 2000);
    property('float64', float64FromBits, 2000);
  });

  test('float32 round trips every 32-bit float', () => {
    property('float32', fc.float(), 2000);
    property('float32', float32FromBits, 2000);
  });

  test('PostgreSQL layout: fixed for exponents in [-4, 15) (float4: [-4, 6)), else d.ddde±XX', () => {
    reads('float64', [
      ['100000000000000', 1e14],
      ['1e+15', 1e15],
      ['123456789012345', 123456789012345],
      ['0.0001', 0.0001],
      ['1e-05', 0.00001],
      ['1e+100', 1e100],
      ['1.2345678901234566e-07', 1.2345678901234567e-7], // the same double: PostgreSQL prints ...566
      ['-0', -0],
      ['0', 0],
      ['NaN', NaN],
      ['Infinity', Infinity],
      ['-Infinity', -Infinity],
      ['5e-324', 5e-324],
      ['1.7976931348623157e+308', 1.7976931348623157e308],
      ['9.007199254740992e+15', 2 ** 53],
      ['0.30000000000000004', 0.1 + 0.2],
    ]);
    reads('float32', [
      ['100000', 100000],
      ['1e+06', 1e6],
      ['123456', 123456],
      ['1.234567e+06', 1234567],
      ['0.0001', Math.fround(0.0001)],
      ['1e-05', Math.fround(1e-5)],
      ['3.4028235e+38', Math.fround(3.4028235e38)],
      ['1e-45', Math.fround(1e-45)],
      ['0.1', Math.fround(0.1)],
      ['1.6777216e+07', 16777216],
      ['-0', -0],
    ]);
  });

  test('PostgreSQL never prints a midpoint between two floats, even where it is shorter (STRICTLY_SHORTEST 0)', () => {
    // JavaScript prints 1e+23, which reads back as this double only with round-half-even.
    assert.equal(String(1e23), '1e+23');
    assert.equal(formatFloat64(1e23), '9.999999999999999e+22');
    assert.equal(formatFloat32(106148464), '1.06148464e+08'); // not the midpoint 1.0614846e+08
    refuses('float64', '1e+23', /PostgreSQL prints 9.999999999999999e\+22/);
  });

  test("float64: JavaScript's shortest digits are PostgreSQL's except at a midpoint", () => {
    fc.assert(
      fc.property(fc.oneof(float64FromBits, fc.tuple(fc.bigInt({ min: 1n, max: 10n ** 17n }), fc.integer({ min: -30, max: 30 })).map(([d, e]) => Number(`${d}e${e}`))), (x) => {
        if (!Number.isFinite(x) || x === 0) return;
        const exact = shortestFloat64Digits(x);
        const [mantissa, exponent] = Math.abs(x).toExponential().split('e') as [string, string];
        const js = { digits: mantissa.replace('.', ''), exponent: Number(exponent) };
        if (js.digits === exact.digits && js.exponent === exact.exponent) return;
        // Where they differ, JavaScript's is exactly halfway to a neighbour: it reads back as x only by ties-to-even.
        assert.ok(exact.digits.length >= js.digits.length, `${x}`);
        const view = new DataView(new ArrayBuffer(8));
        view.setFloat64(0, Math.abs(x));
        assert.equal(view.getBigUint64(0) & 1n, 0n, `${x}: only an even mantissa accepts its midpoints`);
      }),
      { numRuns: 3000 },
    );
  });

  test('float32 reading decides a double rounding on the exact text', () => {
    // Every float32's canonical text reads back as itself (a double read first could land on a midpoint).
    fc.assert(
      fc.property(float32FromBits, (x) => {
        const text = formatFloat32(x);
        assert.ok(Object.is(parseValue(text, k('float32')), x), text);
      }),
      { numRuns: 5000 },
    );
  });

  test('refusals: other spellings and non-shortest digits', () => {
    for (const t of ['nan', 'inf', '+Infinity', 'infinity', '1E+100', '1e100', '1e+5', '1.50', '01', '+1', '.5', '1.', '0.10000000000000001', '1e-5', '100000000000000000', ' 1', '', '-', '0x1']) {
      refuses('float64', t);
    }
    for (const t of ['0.1000000015', '1234567', '1e+39', '1e-46', '3.4028236e+38']) refuses('float32', t);
    assert.throws(() => formatValue(0.1, k('float32')), /not exactly representable in 32 bits/);
    assert.equal(formatValue(Math.fround(0.1), k('float32')), '0.1');
  });
});

describe('decimal', () => {
  const scaled = (p: number, s: number) => fc.bigInt({ min: -(10n ** BigInt(p)) + 1n, max: 10n ** BigInt(p) - 1n }).map((u) => decimalText(u, s));

  test('round trips with and without typmod, negative scale, scale above precision', () => {
    property('decimal', fc.tuple(fc.bigInt({ min: -(10n ** 50n), max: 10n ** 50n }), fc.integer({ min: 0, max: 30 })).map(([u, s]) => decimalText(u, s)));
    property('decimal(20,5)', scaled(20, 5));
    property('decimal(10)', scaled(10, 0));
    property('decimal(5,-2)', scaled(5, -2));
    property('decimal(3,5)', scaled(3, 5));
    for (const t of ['NaN', 'Infinity', '-Infinity', '0', '0.00', '1.50', '-0.001']) roundTrips('decimal', t);
    roundTrips('decimal(3,1)', 'NaN');
  });

  test('refusals: negative zero, missing or extra scale digits, overflow, infinity with typmod, other notations', () => {
    for (const t of ['-0', '-0.00', '+1', '01', '.5', '1.', '1e3', 'nan', 'infinity', '1,5', ' 1', '']) refuses('decimal', t);
    refuses('decimal(20,5)', '1.5', /exactly 5 digits/);
    refuses('decimal(20,5)', '1.500000', /exactly 5 digits/);
    refuses('decimal(20,5)', '1000000000000000.00000', /too many digits/);
    refuses('decimal(20,5)', 'Infinity', /infinite/);
    refuses('decimal(5,-2)', '12345', /last 2 digits zero/);
    refuses('decimal(5,-2)', '10000000', /too many digits/);
    refuses('decimal(3,5)', '0.01000', /too many digits/);
    refuses('decimal(3)', '1000');
    reads('decimal(3,5)', [['0.00999', '0.00999']]);
    reads('decimal(5,-2)', [['9999900', '9999900']]);
  });

  test('formatValue (normalizeDecimal) writes any plain notation in canonical form, never rounding', () => {
    const cases: [string | bigint, string, string][] = [
      ['1.5', 'decimal(10,2)', '1.50'],
      ['+01.5', 'decimal(10,2)', '1.50'],
      ['.5', 'decimal', '0.5'],
      ['5.', 'decimal', '5'],
      ['1.50e1', 'decimal', '15.0'],
      ['1e3', 'decimal', '1000'],
      ['1.5e-3', 'decimal', '0.0015'],
      ['-0.00', 'decimal', '0.00'],
      ['-0', 'decimal(4,2)', '0.00'],
      ['12300', 'decimal(5,-2)', '12300'],
      [12300n, 'decimal(5,-2)', '12300'],
      [-42n, 'decimal(10,3)', '-42.000'],
      ['1.2300', 'decimal(10,2)', '1.23'],
      ['NaN', 'decimal(10,2)', 'NaN'],
    ];
    for (const [input, kindText, expected] of cases) assert.equal(formatValue(input, k(kindText)), expected, `${String(input)} as ${kindText}`);
    assert.throws(() => formatValue('1.234', k('decimal(10,2)')), /would round/);
    assert.throws(() => formatValue('12345', k('decimal(5,-2)')), /would round/);
    assert.throws(() => formatValue('123456', k('decimal(5)')), /too many digits/);
    assert.throws(() => formatValue('Infinity', k('decimal(5)')), /infinite/);
    assert.throws(() => formatValue('1,5', k('decimal')), /not a decimal number/);
    assert.throws(() => formatValue(1.5, k('decimal')), /expected a decimal string or a bigint/);
    assert.throws(() => normalizeDecimal('1', k('int32')), /not a decimal kind/);
    // Any lenient spelling of a canonical value normalizes to it.
    fc.assert(
      fc.property(fc.bigInt({ min: -(10n ** 12n), max: 10n ** 12n }), fc.integer({ min: 0, max: 6 }), fc.integer({ min: -3, max: 3 }), fc.nat(2), (u, s, e, zeros) => {
        const canonical = decimalText(u, s);
        const negative = canonical.startsWith('-');
        const body = negative ? canonical.slice(1) : canonical;
        // Move the point e places left and say e in the exponent instead.
        const digits = body.replace('.', '');
        const point = body.includes('.') ? body.indexOf('.') : body.length;
        const padded = '0'.repeat(Math.max(0, e - point + 1)) + digits + '0'.repeat(Math.max(0, -e - (digits.length - point)));
        const at = point + Math.max(0, e - point + 1) - e;
        const moved = `${padded.slice(0, at)}.${padded.slice(at)}`;
        const lenient = `${negative ? '-' : '+'}${'0'.repeat(zeros)}${moved}e${e}`;
        assert.equal(normalizeDecimal(lenient, k(`decimal(30,${s})`)), canonical, lenient);
      }),
      { numRuns: 500 },
    );
  });
});

describe('text kinds and bytes', () => {
  test('round trips', () => {
    property('string', strings);
    property('enum', strings);
    property('other', strings);
    property('json', fc.json());
    property('uuid', fc.uuid());
    property('bytes', fc.uint8Array().map((a) => Buffer.from(a)));
    reads('bytes', [
      ['\\x', Buffer.alloc(0)],
      ['\\xdeadbeef', Buffer.from('deadbeef', 'hex')],
    ]);
    reads('json', [['  {"a":1, "a":2}  ', '  {"a":1, "a":2}  ']]);
  });

  test('refusals', () => {
    for (const t of ['\\xDEADBEEF', '\\xabc', 'x00', '\\x0g', '\\\\x00', '\\X00', '']) refuses('bytes', t);
    for (const t of ['A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', 'a0eebc999c0b4ef8bb6d6bb9bd380a11', '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}', '']) refuses('uuid', t);
    for (const t of ['', '{', "{'a': 1}", 'undefined', 'NaN']) refuses('json', t);
    refuses('string', 'a\ud800b', /surrogate/);
  });
});

describe('dates and times', () => {
  test('civilToDays and daysToCivil are inverse over PostgreSQL’s whole date range, and agree with Date', () => {
    fc.assert(
      fc.property(fc.integer({ min: DATE_MIN_DAYS, max: DATE_MAX_DAYS }), (d) => {
        const { year, month, day } = daysToCivil(d);
        assert.equal(civilToDays(year, month, day), d);
        if (Math.abs(d) <= 100_000_000) {
          const date = new Date(d * 86_400_000);
          assert.deepEqual([date.getUTCFullYear(), date.getUTCMonth() + 1, date.getUTCDate()], [year, month, day]);
        }
      }),
      { numRuns: 3000 },
    );
  });

  test('date round trips; BC, years past 9999, infinity', () => {
    property('date', days, 1000);
    reads('date', [
      ['1970-01-01', 0],
      ['4714-11-24 BC', DATE_MIN_DAYS],
      ['5874897-12-31', DATE_MAX_DAYS],
      ['0001-01-01 BC', -719528],
      ['0001-12-31 BC', -719163], // 1 BC (astronomical 0) is a leap year
      ['0001-01-01', -719162],
      ['0005-02-29 BC', civilToDays(-4, 2, 29)], // 5 BC is astronomical -4: a leap year
      ['10000-01-01', 2932897],
      ['infinity', Infinity],
      ['-infinity', -Infinity],
      ['2024-02-29', 19782],
    ]);
    assert.equal(daysToIsoDate(-1), '1969-12-31');
  });

  test('date refusals', () => {
    for (const t of ['2024-02-30', '2023-02-29', '0000-01-01', '0004-02-29 BC', '2024-1-01', '24-01-01', '02024-01-01', '2024-13-01', '2024-01-01 AD', '2024-01-01 bc', 'Infinity', '+infinity', '4714-11-23 BC', '5874898-01-01', '']) {
      refuses('date', t);
    }
    assert.throws(() => formatValue(DATE_MAX_DAYS + 1, k('date')), /out of range/);
    assert.throws(() => formatValue(1.5, k('date')), /whole number/);
  });

  test('time round trips; trailing zeros trimmed; 24:00:00', () => {
    property('time', fc.bigInt({ min: 0n, max: 86_400_000_000n }), 1000);
    reads('time', [
      ['00:00:00', 0n],
      ['12:00:00.5', 43_200_500_000n],
      ['23:59:59.999999', 86_399_999_999n],
      ['24:00:00', 86_400_000_000n],
      ['00:00:00.000001', 1n],
    ]);
    for (const t of ['12:00:00.500', '12:00:00.', '24:00:00.000001', '25:00:00', '12:60:00', '12:00:60', '1:00:00', '12:00', '12:00:00+00', '']) refuses('time', t);
    assert.throws(() => formatValue(86_400_000_001n, k('time')), /out of range/);
  });

  test('timestamp and timestamptz round trip; BC after the time and after +00', () => {
    property('timestamp', timestamps, 1000);
    property('timestamptz', timestamps, 1000);
    reads('timestamp', [
      ['1970-01-01 00:00:00', 0n],
      ['1969-12-31 23:59:59.999999', -1n],
      ['0044-03-15 12:00:00.5 BC', -63_517_780_799_500_000n],
      ['294276-12-31 23:59:59.999999', TIMESTAMP_MAX_MICROS],
      ['4714-11-24 00:00:00 BC', TIMESTAMP_MIN_MICROS],
      ['infinity', Infinity],
      ['-infinity', -Infinity],
    ]);
    reads('timestamptz', [
      ['0044-03-15 12:00:00.5+00 BC', -63_517_780_799_500_000n],
      ['10000-01-01 00:00:00+00', 253_402_300_800_000_000n],
      ['2024-02-29 12:34:56.789012+00', 1_709_210_096_789_012n],
    ]);
    // Past the int64 maximum when counted from 1970, as PostgreSQL's last years are.
    assert.ok(TIMESTAMP_MAX_MICROS > 2n ** 63n - 1n);
  });

  test('timestamps agree with Date at millisecond precision', () => {
    fc.assert(
      fc.property(fc.integer({ min: -8_640_000_000_000_000, max: 8_640_000_000_000_000 }), (ms) => {
        const iso = new Date(ms).toISOString(); // ±YYYYYY-MM-DDTHH:MM:SS.sssZ
        const text = microsToTimestampText(BigInt(ms) * 1000n);
        const m = /^([+-]\d{6}|\d{4})-(\d\d)-(\d\d)T(\d\d:\d\d:\d\d)\.(\d{3})Z$/.exec(iso)!;
        const year = Number(m[1]);
        const shown = year > 0 ? String(year).padStart(4, '0') : String(1 - year).padStart(4, '0');
        const fraction = m[5]!.replace(/0+$/, '');
        assert.equal(text, `${shown}-${m[2]}-${m[3]} ${m[4]}${fraction ? `.${fraction}` : ''}${year <= 0 ? ' BC' : ''}`);
      }),
      { numRuns: 2000 },
    );
  });

  test('timestamp refusals', () => {
    for (const t of [
      '2024-01-01 00:00:00+00',
      '2024-01-01T00:00:00',
      '2024-01-01 24:00:00',
      '2024-01-01 00:00:00.10',
      '2024-01-01 00:00:00 BC+00',
      '0044-03-15 12:00:00 bc',
      '0000-01-01 00:00:00',
      '4714-11-23 23:59:59.999999 BC',
      '294277-01-01 00:00:00',
      '2024-01-01',
      'Infinity',
    ]) {
      refuses('timestamp', t);
    }
    for (const t of ['2024-01-01 00:00:00', '2024-01-01 00:00:00+01', '2024-01-01 00:00:00+00:00', '2024-01-01 00:00:00Z', '0044-03-15 12:00:00 BC+00']) {
      refuses('timestamptz', t);
    }
    assert.throws(() => formatValue(TIMESTAMP_MAX_MICROS + 1n, k('timestamp')), /out of range/);
    assert.throws(() => formatValue(5, k('timestamp')), /expected a bigint/);
  });
});

describe('interval', () => {
  test('round trips every combination of the three fields', () => {
    property('interval', intervals, 2000);
    reads('interval', [
      ['P1Y2M-3DT4H5M6.000001S', { months: 14, days: -3, micros: 14_706_000_001n }],
      ['PT0S', { months: 0, days: 0, micros: 0n }],
      ['P-1DT1S', { months: 0, days: -1, micros: 1_000_000n }],
      ['PT-1.5S', { months: 0, days: 0, micros: -1_500_000n }],
      ['PT-1H-30M', { months: 0, days: 0, micros: -5_400_000_000n }],
      ['P10M', { months: 10, days: 0, micros: 0n }],
      ['P-1Y-2M', { months: -14, days: 0, micros: 0n }],
      ['PT-0.000001S', { months: 0, days: 0, micros: -1n }],
      ['PT2562047788H54.775807S', { months: 0, days: 0, micros: 2n ** 63n - 1n }],
      ['PT-2562047788H-54.775808S', { months: 0, days: 0, micros: -(2n ** 63n) }],
      ['P-178956970Y-8M', { months: -2147483648, days: 0, micros: 0n }],
      ['P178956970Y7M', { months: 2147483647, days: 0, micros: 0n }],
    ]);
  });

  test('refusals: mixed signs PostgreSQL would not print, overflowing parts, other spellings', () => {
    for (const t of ['P1Y-2M', 'P12M', 'PT60S', 'PT60M', 'PT1H-1M', 'P0D', 'PT-0S', 'P', 'PT', 'P1DT', 'PT1.50S', 'PT0.5', '-P1D', 'P1W', 'p1d', 'P1.5D', 'PT1H0M', '1 day', 'P178956970Y8M', 'PT2562047788H54.775808S', '']) {
      refuses('interval', t);
    }
    assert.throws(() => formatValue({ months: 2 ** 31, days: 0, micros: 0n }, k('interval')), ValueFormatError);
    assert.throws(() => formatValue({ months: 0, days: 0, micros: 2n ** 63n }, k('interval')), /64-bit/);
    assert.throws(() => formatValue({ months: 0, days: 0, micros: 0 } as unknown as IntervalValue, k('interval')), ValueFormatError);
    assert.equal(formatValue({ months: -0, days: -0, micros: 0n }, k('interval')), 'PT0S');
  });
});

describe('arrays', () => {
  test('round trips of every element kind, with NULLs, dimensions and bounds', () => {
    property('array<int32>', arrayOf(int32, k('int32')), 500);
    property('array<string>', arrayOf(strings, k('string')), 1000);
    property('array<float64>', arrayOf(fc.double(), k('float64')));
    property('array<timestamptz>', arrayOf(timestamps, k('timestamptz')));
    property('array<date>', arrayOf(days, k('date')));
    property('array<interval>', arrayOf(intervals, k('interval')));
    property('array<bytes>', arrayOf(fc.uint8Array({ maxLength: 4 }).map((a) => Buffer.from(a)), k('bytes')));
    property('array<json>', arrayOf(fc.json(), k('json')));
    property('array<decimal(6,2)>', arrayOf(fc.integer({ min: -999999, max: 999999 }).map((u) => decimalText(BigInt(u), 2)), k('decimal(6,2)')));
    property('array<struct>', arrayOf(fc.array(fc.option(strings), { minLength: 1, maxLength: 3 }), k('struct')), 1000);
  });

  test('the forms PostgreSQL printed', () => {
    reads('array<string>', [
      ['{NULL,NULL,"NULL","null","a b","",x}', [null, null, 'NULL', 'null', 'a b', '', 'x']],
      ['{"a,b","c\\\\d","e\\"f"," ","{x}",é}', ['a,b', 'c\\d', 'e"f', ' ', '{x}', 'é']],
      // Only ASCII whitespace is quoted: a no-break space is not.
      ['{"a\tb","\u000b","\r",\u00a0,;}', ['a\tb', '\u000b', '\r', '\u00a0', ';']],
    ]);
    reads('array<int32>', [
      ['{}', []],
      ['{1,2,NULL}', [1, 2, null]],
      ['{{1,2},{3,4}}', [[1, 2], [3, 4]]],
      ['[0:1]={1,2}', Object.assign([1, 2], { lowerBounds: [0] })],
      ['[0:1][1:1]={{1},{2}}', Object.assign([[1], [2]], { lowerBounds: [0, 1] })],
      ['[-2147483648:-2147483648]={1}', Object.assign([1], { lowerBounds: [-2147483648] })],
      ['{{{1}},{{NULL}}}', [[[1]], [[null]]]],
    ]);
    reads('array<bytes>', [['{"\\\\xdead","\\\\x"}', [Buffer.from('dead', 'hex'), Buffer.alloc(0)]]]);
    reads('array<float64>', [['{NaN,-0,1e+100,Infinity}', [NaN, -0, 1e100, Infinity]]]);
    reads('array<json>', [['{"{\\"k\\": 1}","null",1}', ['{"k": 1}', 'null', '1']]]);
    reads('array<timestamptz>', [['{"2024-01-01 00:00:00+00",infinity,NULL}', [1_704_067_200_000_000n, Infinity, null]]]);
    reads('array<date>', [['{"2020-01-01 BC",2020-01-01}', [civilToDays(-2019, 1, 1), civilToDays(2020, 1, 1)]]]);
    reads('array<interval>', [['{P1D,P-1D,PT0S}', [{ months: 0, days: 1, micros: 0n }, { months: 0, days: -1, micros: 0n }, { months: 0, days: 0, micros: 0n }]]]);
    reads('array<struct>', [
      ['{"(,)"}', [[null, null]]],
      ['{"(1,\\"a b\\")",NULL}', [['1', 'a b'], null]],
      ['{{()}}', [[[null]]]], // parentheses alone are not quoted in arrays
      ['{{NULL}}', Object.assign([[null]], { lowerBounds: [1, 1] })], // a 2-D array of one NULL struct
      ['{{NULL,NULL}}', Object.assign([[null, null]], { lowerBounds: [1, 1] })],
    ]);
  });

  test('refusals: what PostgreSQL would print otherwise, and what is not an array', () => {
    for (const t of [
      '{1, 2}',
      ' {1,2}',
      '{null}',
      '{"1"}',
      '{{1,2},{3}}',
      '{{1},2}',
      '{1,{2}}',
      '{{}}',
      '{',
      '{1,2',
      '{1,2}x',
      '[1:2]={1,2}',
      '[1:1]={1,2}',
      '[0:1]={{1,2}}',
      '[0:0]={}',
      '{,}',
      '{1,}',
      '{01}',
      '1,2',
      '',
    ]) {
      refuses('array<int32>', t);
    }
    for (const t of ['{"a"}', '{a\\,b}', '{"a\\b"}', '{a b}', '{""NULL""}', '{"a"b}', '{NuLL}x']) refuses('array<string>', t);
    refuses('array<int32>', '{1,x}', /element: int32/);
  });

  test('formatting refuses shapes PostgreSQL cannot hold', () => {
    assert.throws(() => formatValue([[1, 2], [3]], k('array<int32>')), /not rectangular/);
    assert.throws(() => formatValue([[]], k('array<int32>')), /empty/);
    assert.throws(() => formatValue([null, [1]], k('array<int32>')), /expected an integer number, got array/);
    assert.throws(() => formatValue(Object.assign([1], { lowerBounds: [2147483647 + 1] }), k('array<int32>')), /32-bit/);
    assert.throws(() => formatValue(Object.assign([1, 2], { lowerBounds: [2147483647] }), k('array<int32>')), /32-bit/);
    assert.throws(() => formatValue('{1}', k('array<int32>')), /expected an array/);
    assert.equal(formatValue(Object.assign([1], { lowerBounds: [1] }), k('array<int32>')), '{1}');
    assert.equal(formatValue(Object.assign([1], { lowerBounds: [2147483647] }), k('array<int32>')), '[2147483647:2147483647]={1}');
  });
});

describe('struct', () => {
  test('round trips; empty string vs NULL; quoting doubles quotes and backslashes', () => {
    property('struct', fc.array(fc.option(strings), { minLength: 1, maxLength: 5 }), 1000);
    reads('struct', [
      ['()', [null]],
      ['(,)', [null, null]],
      ['("","a b","x""y\\\\z",,"(",",")', ['', 'a b', 'x"y\\z', null, '(', ',']],
      ['(1,"(2,""a b"")","{1,2}")', ['1', '(2,"a b")', '{1,2}']],
      ['(\u00a0)', ['\u00a0']], // PostgreSQL quotes only ASCII whitespace (isspace in its C.UTF-8 locale)
    ]);
  });

  test('refusals', () => {
    for (const t of ['', '(', ')', '(a', 'a)', '(a,b)x', '(a b)', '("a")', '(a"b)', '(a\\,b)', '("a\\"b")', '("")x', '((a))', '(a)(b)']) refuses('struct', t);
    assert.throws(() => formatValue([], k('struct')), /at least one/);
    assert.throws(() => formatValue([1] as unknown as string[], k('struct')), /field text/);
  });
});

describe('errors', () => {
  test('one line, naming the kind and a short preview of the text', () => {
    const long = `${'x'.repeat(500)}\nsecond line`;
    try {
      parseValue(long, k('int32'));
      assert.fail('should throw');
    } catch (error) {
      assert.ok(error instanceof ValueFormatError);
      assert.equal(error.kind, 'int32');
      assert.equal(error.name, 'ValueFormatError');
      assert.ok(error.message.length < 200, error.message);
      assert.ok(!error.message.includes('\n'));
      assert.match(error.message, /^int32: not a canonical integer: "x+…"$/);
    }
    assert.throws(() => parseValue('{1,x}', k('array<decimal(5,2)>')), /^ValueFormatError: array<decimal\(5,2\)>: element: decimal\(5,2\): /);
  });
});
