/**
 * The canonical text of each value kind is exactly what PostgreSQL 15 prints under sitesync's session
 * settings (docs/value-kinds.md): for each kind, random typed values (fast-check, fixed seed) are formatted
 * by `formatValue`, PostgreSQL casts each text to the matching type and prints it back, and the test asserts
 * that PostgreSQL printed exactly the formatted text and that `parseValue` of what it printed is the value.
 * One query per type (unnest of a text[] parameter), so the whole file takes a few seconds.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import pg from 'pg';
import { CONNECTION_OPTIONS } from '../../connectors/postgres/session-settings.ts';
import { parseKind, type ValueKind } from '../../src/events/value-kind.ts';
import {
  arrayDimensions,
  DATE_MAX_DAYS,
  DATE_MIN_DAYS,
  formatValue,
  normalizeDecimal,
  parseValue,
  TIMESTAMP_MAX_MICROS,
  TIMESTAMP_MIN_MICROS,
  type IntervalValue,
  type NeutralArray,
  type NeutralValue,
} from '../../src/events/value-parser.ts';

const URL = process.env.TEST_SITESYNC_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const SEED = 20240229;
const RUNS = 300;

let client: pg.Client;

before(async () => {
  client = new pg.Client({ connectionString: URL, ...CONNECTION_OPTIONS });
  await client.connect();
  await client.query(`CREATE TYPE pg_temp.kinds_rec AS (a text, b int4, c text[], d timestamptz)`);
});

after(async () => {
  await client?.end();
});

function sample<T>(arb: fc.Arbitrary<T>, runs = RUNS): T[] {
  return fc.sample(arb, { seed: SEED, numRuns: runs });
}

/**
 * PostgreSQL's text for each input text read as `pgType`, in order: what the type's output function prints,
 * which is what pgoutput sends. Not `::text`: a few types have their own cast to text that prints otherwise
 * (bool::text is `true`/`false` where boolout prints `t`/`f`; char(n)::text drops the padding).
 * format('%s') calls the output function.
 */
async function printed(pgType: string, texts: readonly string[]): Promise<string[]> {
  const { rows } = await client.query<{ out: string }>(
    `SELECT format('%s', u.t::${pgType}) AS out FROM unnest($1::text[]) WITH ORDINALITY AS u(t, n) ORDER BY u.n`,
    [texts],
  );
  return rows.map((r) => r.out);
}

function show(v: unknown): string {
  return typeof v === 'bigint' ? `${v}n` : Object.is(v, -0) ? '-0' : JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x)) ?? String(v);
}

/**
 * Formats every value, has PostgreSQL read and print it as `pgType`, and checks both directions. Failures are
 * collected so one run shows all of them (the first 10).
 */
async function agrees(pgType: string, kindText: string, values: readonly NeutralValue[]): Promise<void> {
  const kind = parseKind(kindText);
  const texts = values.map((v) => formatValue(v, kind));
  const out = await printed(pgType, texts);
  const failures: string[] = [];
  for (let i = 0; i < values.length; i++) {
    if (out[i] !== texts[i]) {
      failures.push(`${show(values[i])}: formatted ${JSON.stringify(texts[i])}, PostgreSQL printed ${JSON.stringify(out[i])}`);
      continue;
    }
    try {
      assert.deepStrictEqual(parseValue(out[i]!, kind), values[i]);
    } catch (error) {
      failures.push(`${JSON.stringify(out[i])}: parsed differently: ${(error as Error).message.split("\n").slice(1).join(" ").replace(/\s+/g, " ").slice(0, 300)}`);
    }
  }
  assert.deepEqual(failures.slice(0, 10), [], `${failures.length} of ${values.length} ${pgType} values disagree`);
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
const FLOAT_EDGES = [0, -0, NaN, Infinity, -Infinity, 1, -1, 0.1, 1.5, 1e100, 1e-100, 123456, 1234567, 1e14, 1e15, 1e-4, 1e-5, 1e21, 2 ** 53, 2 ** 53 + 2];
/**
 * Doubles next to a midpoint that JavaScript prints as the midpoint (shortest, read back with ties to even) and
 * PostgreSQL does not (its Ryu is built with STRICTLY_SHORTEST 0): 1e23 is 9.999999999999999e+22 there.
 */
const MIDPOINT_DOUBLES = [1e23, -1e23, 9.5e22, 2 ** 60 + 2 ** 8, 5e-324 * 3];
/** Integers and decimals of up to 17 digits, big and small: where the midpoint cases are. */
const decimalDouble = fc
  .tuple(fc.bigInt({ min: 1n, max: 10n ** 17n }), fc.integer({ min: -30, max: 30 }), fc.boolean())
  .map(([d, e, negative]) => (negative ? -1 : 1) * Number(`${d}e${e}`));

/** Canonical decimal text of unscaled × 10^-scale (scale may be negative: trailing integer zeros). */
function decimalText(unscaled: bigint, scale: number): string {
  if (scale <= 0) return unscaled === 0n ? '0' : `${unscaled}${'0'.repeat(-scale)}`;
  const negative = unscaled < 0n;
  const digits = (negative ? -unscaled : unscaled).toString().padStart(scale + 1, '0');
  const text = `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
  return negative ? `-${text}` : text;
}

function decimalOf(precision: number, scale: number): fc.Arbitrary<string> {
  const limit = 10n ** BigInt(precision);
  // Small, medium and full-width values, not only full-width ones.
  const unscaled = fc.oneof(fc.bigInt({ min: -limit + 1n, max: limit - 1n }), fc.bigInt({ min: -999n, max: 999n }));
  return unscaled.map((u) => decimalText(u, scale));
}

const bareDecimal = fc
  .tuple(fc.bigInt({ min: -(10n ** 60n), max: 10n ** 60n }), fc.integer({ min: 0, max: 40 }))
  .map(([u, s]) => decimalText(u, s));

const micros = fc.bigInt({ min: TIMESTAMP_MIN_MICROS, max: TIMESTAMP_MAX_MICROS });
/** Mostly around today and around the year 1 and 10000, where the text changes shape. */
const timestamp: fc.Arbitrary<bigint | number> = fc.oneof(
  micros,
  fc.bigInt({ min: -70_000_000_000_000_000n, max: -55_000_000_000_000_000n }), // 250 BC to 200 AD
  fc.bigInt({ min: 253_000_000_000_000_000n, max: 254_000_000_000_000_000n }), // around 10000 AD
  fc.bigInt({ min: 0n, max: 4_102_444_800_000_000n }),
  fc.constantFrom<bigint | number>(Infinity, -Infinity, TIMESTAMP_MIN_MICROS, TIMESTAMP_MAX_MICROS, 0n, -1n),
);

const date: fc.Arbitrary<number> = fc.oneof(
  fc.integer({ min: DATE_MIN_DAYS, max: DATE_MAX_DAYS }),
  fc.integer({ min: -800_000, max: -650_000 }), // around 1 BC / 1 AD
  fc.integer({ min: 2_900_000, max: 3_000_000 }), // around 10000 AD
  fc.constantFrom(Infinity, -Infinity, DATE_MIN_DAYS, DATE_MAX_DAYS, 0, -1, -719528, -719529),
);

const interval: fc.Arbitrary<IntervalValue> = fc.record(
  {
    months: fc.oneof(int32, fc.integer({ min: -30, max: 30 })),
    days: fc.oneof(int32, fc.integer({ min: -40, max: 40 })),
    micros: fc.oneof(int64, fc.bigInt({ min: -100_000_000_000n, max: 100_000_000_000n }), fc.constantFrom(0n, 1n, -1n, 500_000n, -500_000n)),
  },
  { noNullPrototype: true },
);

/** Strings that stress quoting: separators, quotes, backslashes, braces, whitespace, NULL in any case. */
const tricky = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 12 }),
  fc.string({
    unit: fc.constantFrom('a', 'Z', ',', '"', '\\', '{', '}', '(', ')', ' ', '\t', '\n', '\r', '\v', '\f', 'é', '𝄞', '\u00a0', '\u2003', ';'),
    maxLength: 8,
  }),
  fc.constantFrom('NULL', 'null', 'Null', '', ' ', 'NULLS', 'x'),
).filter((s) => !s.includes('\0'));

/** A rectangular array of 1 to 3 dimensions (or empty), maybe with lower bounds other than 1. */
function arrayOf<T extends NeutralValue>(element: fc.Arbitrary<T>, elementKind?: ValueKind): fc.Arbitrary<NeutralArray> {
  const shaped = fc
    .tuple(fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 1, maxLength: 3 }), fc.option(fc.array(fc.integer({ min: -3, max: 3 }), { minLength: 3, maxLength: 3 })))
    .chain(([lengths, bounds]) =>
      fc.array(fc.option(element, { freq: 5 }), { minLength: lengths.reduce((a, b) => a * b, 1), maxLength: lengths.reduce((a, b) => a * b, 1) }).map((flat) => {
        const build = (d: number, offset: number): NeutralArray => {
          const out: NeutralArray = [];
          const stride = lengths.slice(d + 1).reduce((a, b) => a * b, 1);
          for (let i = 0; i < lengths[d]!; i++) out.push(d + 1 < lengths.length ? build(d + 1, offset + i * stride) : flat[offset + i]!);
          return out;
        };
        const value = build(0, 0);
        const lower = bounds?.slice(0, lengths.length);
        if (lower && lower.some((b) => b !== 1)) value.lowerBounds = lower;
        // Structs are arrays too: where the nesting alone does not tell the dimensions, say them.
        else if (elementKind && arrayDimensions(value, elementKind) !== lengths.length) value.lowerBounds = lengths.map(() => 1);
        return value;
      }),
    );
  return fc.oneof({ arbitrary: shaped, weight: 9 }, { arbitrary: fc.constant<NeutralArray>([]), weight: 1 });
}

// ─── the kinds ──────────────────────────────────────────────────────────────────────────────────────────

test('boolean: bool', async () => {
  await agrees('bool', 'boolean', [true, false]);
});

test('integers: int2, int4, int8 with their bounds', async () => {
  await agrees('int2', 'int16', [...sample(fc.integer({ min: -32768, max: 32767 })), -32768, 32767, 0]);
  await agrees('int4', 'int32', [...sample(int32), -2147483648, 2147483647, 0]);
  await agrees('int8', 'int64', [...sample(int64), -(2n ** 63n), 2n ** 63n - 1n, 0n]);
});

test('float8: shortest exact output, exponents, NaN, ±Infinity, -0, subnormals', async () => {
  await agrees('float8', 'float64', [
    ...FLOAT_EDGES,
    ...MIDPOINT_DOUBLES,
    5e-324,
    -5e-324,
    2.2250738585072014e-308,
    1.7976931348623157e308,
    ...sample(fc.double()),
    ...sample(float64FromBits),
    ...sample(decimalDouble, 1000),
  ]);
});

test('float4: shortest output of the 32-bit value, not of the double', async () => {
  // 106148464: JavaScript-style shortest would be the midpoint 1.0614846e+08; PostgreSQL prints 1.06148464e+08.
  const edges = [...FLOAT_EDGES, 1e-45, 1.1754944e-38, 3.4028235e38, 16777216, 16777217, 7.038531e-26, 1.0000001, 106148464].map(Math.fround);
  const decimalFloat = fc.tuple(fc.integer({ min: 1, max: 999_999_999 }), fc.integer({ min: -40, max: 29 })).map(([d, e]) => Math.fround(Number(`${d}e${e}`)));
  await agrees('float4', 'float32', [...edges, ...sample(fc.float()), ...sample(float32FromBits), ...sample(decimalFloat, 1000)]);
});

test('numeric: with and without typmod, negative scale, scale above precision, NaN and infinities', async () => {
  await agrees('numeric', 'decimal', [...sample(bareDecimal), 'NaN', 'Infinity', '-Infinity', '0', '0.000', '1.50']);
  await agrees('numeric(20,5)', 'decimal(20,5)', [...sample(decimalOf(20, 5)), 'NaN', '0.00000', '-99999999999999999999'.slice(0, 16) + '.99999']);
  await agrees('numeric(10)', 'decimal(10)', [...sample(decimalOf(10, 0), 100), '9999999999', '-9999999999']);
  await agrees('numeric(5,-2)', 'decimal(5,-2)', sample(decimalOf(5, -2), 100));
  await agrees('numeric(3,5)', 'decimal(3,5)', sample(decimalOf(3, 5), 100));
});

test('numeric: normalizeDecimal writes what PostgreSQL makes of plain decimal notations', async () => {
  const lenient = fc
    .tuple(fc.constantFrom('', '+', '-'), fc.bigInt({ min: 0n, max: 10n ** 12n }), fc.integer({ min: 0, max: 6 }), fc.integer({ min: -3, max: 3 }), fc.boolean(), fc.nat(3))
    .map(([sign, u, s, e, withExponent, zeros]) => {
      const body = decimalText(u, s);
      return `${sign}${'0'.repeat(zeros)}${body}${withExponent ? `e${e}` : ''}`;
    });
  for (const [pgType, kindText] of [
    ['numeric', 'decimal'],
    ['numeric(30,8)', 'decimal(30,8)'],
  ] as const) {
    const kind = parseKind(kindText);
    const inputs = sample(lenient, 200);
    const out = await printed(pgType, inputs);
    for (let i = 0; i < inputs.length; i++) {
      let mine: string;
      try {
        mine = normalizeDecimal(inputs[i]!, kind);
      } catch (error) {
        // PostgreSQL rounds to the typmod's scale; normalizeDecimal refuses to (a value is never changed).
        assert.match((error as Error).message, /would round/, inputs[i]!);
        assert.notEqual(kindText, 'decimal', 'a bare decimal keeps every digit');
        continue;
      }
      assert.equal(mine, out[i], `${pgType} of ${inputs[i]}`);
    }
  }
});

test('text: any unicode, including astral characters and controls', async () => {
  const text = fc.oneof(fc.string({ unit: 'binary', maxLength: 40 }), fc.string({ unit: 'grapheme', maxLength: 40 }), tricky);
  await agrees('text', 'string', sample(text.filter((s) => !s.includes('\0'))));
});

test('bytea: \\x and lowercase hex', async () => {
  await agrees('bytea', 'bytes', [Buffer.alloc(0), ...sample(fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)))]);
});

test('date: BC years, years past 9999, ±infinity, the whole range', async () => {
  await agrees('date', 'date', sample(date, 600));
});

test('time: microseconds, trailing zeros trimmed, 24:00:00', async () => {
  const time = fc.oneof(fc.bigInt({ min: 0n, max: 86_400_000_000n }), fc.bigInt({ min: 0n, max: 86_400n }).map((s) => s * 1_000_000n), fc.constantFrom(0n, 86_400_000_000n, 86_399_999_999n, 500_000n, 10n));
  await agrees('time', 'time', sample(time));
});

test('timestamp and timestamptz: the whole range, BC, ±infinity', async () => {
  await agrees('timestamp', 'timestamp', sample(timestamp, 600));
  await agrees('timestamptz', 'timestamptz', sample(timestamp, 600));
});

test('interval: ISO 8601 with each field signed on its own, the whole range of each field', async () => {
  await agrees('interval', 'interval', [
    ...sample(interval, 600),
    { months: 0, days: 0, micros: 0n },
    { months: -2147483648, days: -2147483648, micros: -(2n ** 63n) },
    { months: 2147483647, days: 2147483647, micros: 2n ** 63n - 1n },
  ]);
});

test('uuid: lowercase 8-4-4-4-12', async () => {
  await agrees('uuid', 'uuid', sample(fc.uuid()));
});

test('json keeps its text; jsonb prints its own normal form, which reads back as itself', async () => {
  const json = fc.oneof(fc.json(), fc.json().map((j) => JSON.stringify(JSON.parse(j), null, 1)), fc.constantFrom('  {"a":1, "a":2}  ', '"\\u0000"', '1e-7', '[]'));
  await agrees('json', 'json', sample(json));
  // jsonb rewrites: the value of its text is checked, and its text is a fixed point.
  const inputs = sample(fc.json());
  const out = await printed('jsonb', inputs);
  const again = await printed('jsonb', out);
  for (let i = 0; i < inputs.length; i++) {
    assert.equal(parseValue(out[i]!, parseKind('json')), out[i]);
    assert.equal(again[i], out[i]);
    assert.deepEqual(JSON.parse(out[i]!), JSON.parse(inputs[i]!), inputs[i]!);
  }
});

test('arrays: int4[] of 1 to 3 dimensions with NULLs and bounds', async () => {
  await agrees('int4[]', 'array<int32>', sample(arrayOf(int32)));
});

test('arrays: text[] quoting of commas, quotes, backslashes, braces, whitespace, and NULL string vs NULL', async () => {
  await agrees('text[]', 'array<string>', sample(arrayOf(tricky), 500));
});

test('arrays: timestamptz[], float8[], numeric[], bytea[], interval[], date[]', async () => {
  await agrees('timestamptz[]', 'array<timestamptz>', sample(arrayOf(timestamp)));
  await agrees('float8[]', 'array<float64>', sample(arrayOf(fc.double())));
  await agrees('numeric[]', 'array<decimal>', sample(arrayOf(bareDecimal), 100));
  await agrees('bytea[]', 'array<bytes>', sample(arrayOf(fc.uint8Array({ maxLength: 4 }).map((a) => Buffer.from(a))), 100));
  await agrees('interval[]', 'array<interval>', sample(arrayOf(interval), 100));
  await agrees('date[]', 'array<date>', sample(arrayOf(date), 100));
});

/** Fields of pg_temp.kinds_rec (text, int4, text[], timestamptz) as their own texts. */
const record: fc.Arbitrary<(string | null)[]> = fc.tuple(
  fc.option(tricky),
  fc.option(int32.map(String)),
  fc.option(arrayOf(tricky).map((a) => formatValue(a, parseKind('array<string>')))),
  fc.option(timestamp.map((t) => formatValue(t, parseKind('timestamptz')))),
);

test('struct: a record literal with empty, NULL, quoted and nested fields', async () => {
  await agrees('pg_temp.kinds_rec', 'struct', [...sample(record), [null, null, null, null], ['', null, '{}', null]]);
});

test('arrays of structs: quoting inside quoting, NULL structs, all-NULL structs', async () => {
  await agrees('pg_temp.kinds_rec[]', 'array<struct>', [
    ...sample(arrayOf(record, parseKind('struct')), 200),
    [[null, null, null, null]], // {"(,,,)"}: one struct, all its fields NULL
    Object.assign([[null, null, null, null]], { lowerBounds: [1, 1] }), // {{NULL,NULL,NULL,NULL}}: four NULL structs
    Object.assign([[null]], { lowerBounds: [1, 1] }),
    [null],
  ]);
});
