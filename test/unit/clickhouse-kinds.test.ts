/**
 * Kinds in ClickHouse without an engine: the type each kind gets, what an insert writes for a canonical text
 * (or keeps in `_sitesync_special`), what comes back, and which column types cannot hold a kind. The engine's
 * own reading of these values is proven in clickhouse-sink.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { baseTypeFor, codecFor, columnTypeFor, kindOfType } from '../../connectors/clickhouse/clickhouse-kinds.ts';
import { parseKind } from '../../src/events/value-kind.ts';

const caps = { time64: true };

test('each kind gets its ClickHouse type; non-key columns are Nullable, arrays cannot be', () => {
  const types: Record<string, string> = {
    boolean: 'Bool',
    int16: 'Int16',
    int64: 'Int64',
    float32: 'Float32',
    'decimal(12,2)': 'Decimal(12, 2)',
    'decimal(10)': 'Decimal(10, 0)',
    'decimal(76,76)': 'Decimal(76, 76)',
    'decimal(77,2)': 'String',
    'decimal(5,-2)': 'String',
    'decimal(3,5)': 'String',
    decimal: 'String',
    bytes: 'String',
    date: 'Date32',
    time: 'Time64(6)',
    timestamp: "DateTime64(6, 'UTC')",
    timestamptz: "DateTime64(6, 'UTC')",
    interval: 'String',
    uuid: 'UUID',
    json: 'String',
    'array<int32>': 'Array(Nullable(Int32))',
    'array<struct>': 'String',
  };
  for (const [kind, type] of Object.entries(types)) assert.equal(baseTypeFor(parseKind(kind), caps), type, kind);
  assert.equal(baseTypeFor(parseKind('time'), { time64: false }), 'String', 'a server without Time64 keeps the text');
  assert.equal(columnTypeFor(parseKind('int64'), true, caps), 'Nullable(Int64)');
  assert.equal(columnTypeFor(parseKind('int64'), false, caps), 'Int64');
  assert.equal(columnTypeFor(parseKind('array<int32>'), true, caps), 'Array(Nullable(Int32))');
});

test('values a typed column cannot hold go to _sitesync_special, exact; the column gets NULL ([] for an array)', () => {
  const write = (kind: string, type: string, text: string | null) => codecFor(parseKind(kind), type)!.write(text);
  assert.deepEqual(write('decimal(12,2)', 'Nullable(Decimal(12, 2))', 'NaN'), { value: null, special: { text: 'NaN' } });
  assert.deepEqual(write('decimal(12,2)', 'Nullable(Decimal(12, 2))', '-0.50'), { value: '-0.50' });
  assert.deepEqual(write('date', 'Nullable(Date32)', '1899-12-31'), { value: null, special: { text: '1899-12-31' } });
  assert.deepEqual(write('date', 'Nullable(Date32)', '1900-01-01'), { value: '1900-01-01' });
  assert.deepEqual(write('date', 'Nullable(Date32)', 'infinity'), { value: null, special: { text: 'infinity' } });
  assert.deepEqual(write('timestamptz', "Nullable(DateTime64(6, 'UTC'))", '2299-12-31 23:59:59.999999+00'), { value: '2299-12-31 23:59:59.999999' });
  assert.deepEqual(write('timestamptz', "Nullable(DateTime64(6, 'UTC'))", '2300-01-01 00:00:00+00'), { value: null, special: { text: '2300-01-01 00:00:00+00' } });
  assert.deepEqual(write('array<int32>', 'Array(Nullable(Int32))', null), { value: [], special: { text: null } });
  assert.deepEqual(write('array<int32>', 'Array(Nullable(Int32))', '{{1},{2}}'), { value: [], special: { text: '{{1},{2}}' } });
  assert.deepEqual(write('array<int32>', 'Array(Nullable(Int32))', '[0:1]={1,2}'), { value: [], special: { text: '[0:1]={1,2}' } });
  assert.deepEqual(write('array<int32>', 'Array(Nullable(Int32))', '{1,NULL}'), { value: [1, null] });
  assert.deepEqual(write('float64', 'Nullable(Float64)', 'NaN'), { value: 'nan' });
  assert.deepEqual(write('bytes', 'Nullable(String)', '\\xdeadbeef'), { value: 'deadbeef' });
  assert.deepEqual(write('int64', 'Nullable(String)', '-9223372036854775808'), { value: '-9223372036854775808' }, 'any kind fits String');
});

test('a key column takes no NULL and no special value; a text that is not canonical is refused, never adjusted', () => {
  const key = codecFor(parseKind('date'), 'Date32')!;
  assert.throws(() => key.write('1800-01-01'), /cannot hold \(a key column has no _sitesync_special\)/);
  assert.throws(() => key.write(null), /NULL, which this column \(a key column\) cannot hold/);
  assert.throws(() => codecFor(parseKind('decimal(12,2)'), 'Nullable(Decimal(12, 2))')!.write('1.5'), /decimal/);
  assert.throws(() => codecFor(parseKind('int32'), 'Nullable(Int32)')!.write('1e3'), /int32/);
  assert.throws(() => codecFor(parseKind('boolean'), 'Nullable(Bool)')!.write('true'), /boolean/);
});

test('what ClickHouse returns (under the read settings) reads back as canonical text', () => {
  const read = (kind: string, type: string, value: unknown) => {
    const codec = codecFor(parseKind(kind), type)!;
    return codec.read(value);
  };
  assert.equal(read('float32', 'Float32', '0.10000000149011612'), '0.1');
  assert.equal(read('float64', 'Float64', '1e100'), '1e+100');
  assert.equal(read('float64', 'Float64', '-0'), '-0');
  assert.equal(read('float64', 'Float64', 'nan'), 'NaN');
  assert.equal(read('float64', 'Float64', '-inf'), '-Infinity');
  assert.equal(read('time', 'Time64(6)', '24:00:00.000000'), '24:00:00');
  assert.equal(read('timestamptz', "DateTime64(6, 'UTC')", '2024-02-29 13:45:10.120000'), '2024-02-29 13:45:10.12+00');
  assert.equal(read('bytes', 'String', ''), '\\x');
  assert.equal(read('boolean', 'Bool', false), 'f');
  assert.equal(read('array<decimal(12,2)>', 'Array(Nullable(Decimal(12, 2)))', ['1.50', null]), '{1.50,NULL}');
  assert.equal(read('array<string>', 'Array(Nullable(String))', ['a b', 'NULL', '']), '{"a b","NULL",""}');
  assert.equal(codecFor(parseKind('float32'), 'Nullable(Float32)')!.select('`f`'), 'toFloat64(`f`)', 'Float32 is read through Float64');
  assert.throws(() => read('int32', 'Int32', 'x'), /expected an integer from ClickHouse/);
});

test('a column type that cannot hold a kind has no codec (the caller halts with a schema error); dropped columns read by their type', () => {
  assert.equal(codecFor(parseKind('int64'), 'Int32'), null);
  assert.equal(codecFor(parseKind('decimal(12,2)'), 'Decimal(12, 3)'), null);
  assert.equal(codecFor(parseKind('string'), 'Int64'), null);
  assert.equal(codecFor(parseKind('array<int32>'), 'Int32'), null);
  assert.ok(codecFor(parseKind('string'), 'LowCardinality(Nullable(String))'));
  assert.deepEqual(kindOfType('Nullable(Decimal(12, 2))'), { kind: 'decimal', precision: 12, scale: 2 });
  assert.deepEqual(kindOfType('Array(Nullable(Int32))'), { kind: 'array', element: { kind: 'int32' } });
  assert.equal(kindOfType('Map(String, String)'), null);
});
