import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { inspect } from 'node:util';
import fc from 'fast-check';
import avro from 'avsc';
import { EncodedRow, EncodedRowWriter, RowOverrun, rowImageBytes } from '../../src/events/encoded-row.ts';
import { CURRENT_SCHEMA_VERSION } from '../../src/events/avro-codec.ts';
import { DecodeError } from '../../src/errors.ts';
import type { RowImage } from '../../src/events/transaction.ts';

/** The RowImage record of the current schema, as avsc reads and writes it. */
function rowImageType(): avro.Type {
  const schema: unknown = JSON.parse(readFileSync(new URL(`../../schemas/change-message.v${CURRENT_SCHEMA_VERSION}.avsc`, import.meta.url), 'utf8'));
  let found: unknown;
  const walk = (node: unknown): void => {
    if (found !== undefined || node === null || typeof node !== 'object') return;
    if ((node as { name?: unknown }).name === 'RowImage' && (node as { type?: unknown }).type === 'record') found = node;
    else for (const child of Object.values(node)) walk(child);
  };
  walk(schema);
  assert.ok(found, 'the current schema has a RowImage record');
  return avro.Type.forSchema(found as avro.Schema, { wrapUnions: 'auto' });
}
const avscRow = rowImageType();

const text = fc.oneof(fc.string({ unit: 'grapheme', maxLength: 20 }), fc.string({ unit: 'binary', minLength: 60, maxLength: 400 }));
const row: fc.Arbitrary<RowImage> = fc
  .array(fc.oneof(fc.constant<'n'>('n'), fc.constant<'u'>('u'), text), { maxLength: 70 })
  .map((cells) => ({
    values: cells.map((c) => (c === 'n' || c === 'u' ? null : c)),
    unchanged: cells.flatMap((c, i) => (c === 'u' ? [i] : [])),
  }));

test('property: an EncodedRow is byte for byte what avsc writes for the same row, and reads back to it', () => {
  fc.assert(
    fc.property(row, (r) => {
      const encoded = EncodedRow.of(r);
      const bytes = encoded.buffer.subarray(encoded.start, encoded.end);
      assert.deepEqual(bytes, avscRow.toBuffer(r));
      assert.deepEqual([...encoded.values], r.values);
      assert.deepEqual([...encoded.unchanged], r.unchanged);
      assert.equal(encoded.columnCount, r.values.length);
      assert.equal(rowImageBytes(encoded), bytes.length);
      // Read from the middle of a larger buffer, as from a message body.
      const body = Buffer.concat([Buffer.from([7, 7, 7]), bytes, Buffer.from([9])]);
      const read = EncodedRow.read(body, 3);
      assert.equal(read.end, 3 + bytes.length);
      assert.deepEqual([...read.values], r.values);
      assert.deepEqual([...read.unchanged], r.unchanged);
    }),
    { numRuns: 300 },
  );
});

test('spans point at each value’s UTF-8 bytes, -1 for null', () => {
  const encoded = EncodedRow.of({ values: ['1', null, 'hé'], unchanged: [] });
  const spans = encoded.spans;
  assert.equal(encoded.buffer.toString('utf8', spans[0], spans[1]), '1');
  assert.deepEqual([spans[2], spans[3]], [-1, -1]);
  assert.equal(encoded.buffer.toString('utf8', spans[4], spans[5]), 'hé');
});

test('a row read keeps no spans of its own: scanSpans is overwritten by the next scan, spans are the row’s', () => {
  // 100 values in blocks of 40, 40 and 20: more than any row before, so the shared scratch grows mid-row.
  const values = Array.from({ length: 100 }, (_, i) => (i % 7 === 3 ? null : `v${i}`));
  const items = values.map((v) => (v === null ? Buffer.from([0]) : Buffer.concat([Buffer.from([2, 2 * Buffer.byteLength(v)]), Buffer.from(v)])));
  const block = (from: number, to: number): Buffer[] => [Buffer.from([2 * (to - from)]), ...items.slice(from, to)];
  const wide = Buffer.concat([...block(0, 40), ...block(40, 80), ...block(80, 100), Buffer.from([0, 0])]);
  const narrow = EncodedRow.of({ values: ['x', null], unchanged: [] });
  const big = EncodedRow.read(wide, 0);
  assert.equal(big.end, wide.length);
  const shared = big.scanSpans();
  const first = [...shared.subarray(0, 200)];
  assert.equal(wide.toString('utf8', first[2 * 99], first[2 * 99 + 1]), 'v99');
  narrow.scanSpans(); // another row's scan overwrites the shared array
  assert.notDeepEqual([...shared.subarray(0, 4)], first.slice(0, 4));
  const own = big.spans; // the row's own, kept from now on
  assert.deepEqual([...own], first);
  narrow.scanSpans();
  assert.deepEqual([...big.spans], first);
  assert.equal(big.scanSpans(), own);
  assert.deepEqual(big.values, values);
  assert.equal(wide.toString('utf8', own[2 * 99], own[2 * 99 + 1]), 'v99');
});

test('a row wider than any table is read, and the rows after it still are', () => {
  const values = Array.from({ length: 3000 }, (_, i) => (i % 2 ? null : String(i)));
  const wide = EncodedRow.of({ values, unchanged: [] });
  const read = EncodedRow.read(Buffer.from(wide.buffer.subarray(wide.start, wide.end)), 0);
  assert.deepEqual(read.values, values);
  const narrow = EncodedRow.of({ values: ['a', null, 'c'], unchanged: [] });
  const spans = narrow.scanSpans();
  assert.equal(narrow.buffer.toString('utf8', spans[4], spans[5]), 'c');
  assert.deepEqual(narrow.values, ['a', null, 'c']);
});

test('arrays written in blocks with negative counts (allowed by Avro, not written by avsc) are read', () => {
  // values: a block of -2 items (then its size in bytes), a block of 1, end; unchanged: a block of 1, end.
  const bytes = Buffer.from([3, 8, 2, 2, 0x61, 0, 2, 2, 2, 0x62, 0, 2, 2, 0]);
  const read = EncodedRow.read(bytes, 0);
  assert.deepEqual(read.values, ['a', null, 'b']);
  assert.deepEqual(read.unchanged, [1]);
  assert.equal(read.end, bytes.length);
});

test('a truncated or corrupt row throws DecodeError, never reads past the end', () => {
  const bytes = EncodedRow.of({ values: ['abc', null, 'de'], unchanged: [1] });
  const whole = bytes.buffer.subarray(bytes.start, bytes.end);
  for (let cut = 0; cut < whole.length; cut++) {
    assert.throws(() => EncodedRow.read(whole.subarray(0, cut), 0), RowOverrun, `cut at ${cut}`);
  }
  assert.throws(() => EncodedRow.read(Buffer.from([2, 4, 0, 0]), 0), (e: unknown) => e instanceof DecodeError && /union branch 2/.test(e.message));
  assert.throws(() => EncodedRow.read(Buffer.from([2, 2, 1, 0, 0]), 0), (e: unknown) => e instanceof DecodeError && /negative length/.test(e.message));
  // A count of a billion values in a 6-byte body is refused before anything is allocated for it.
  assert.throws(() => EncodedRow.read(Buffer.from([0x80, 0xa8, 0xd6, 0xb9, 0x07, 0]), 0), RowOverrun);
});

test('values that are not valid UTF-8 are refused when read, never turned into U+FFFD; a real U+FFFD is a value', () => {
  // 2 values: "a" 0xC0 0xAF, then "x" U+FFFD; no unchanged columns.
  const invalid = EncodedRow.read(Buffer.from([4, 2, 6, 0x61, 0xc0, 0xaf, 2, 8, 0x78, 0xef, 0xbf, 0xbd, 0, 0]), 0);
  assert.throws(() => invalid.values, (e: unknown) => e instanceof DecodeError && /value 0 is not valid UTF-8/.test(e.message));
  const valid = EncodedRow.read(Buffer.from([2, 2, 8, 0x78, 0xef, 0xbf, 0xbd, 0, 0]), 0);
  assert.deepEqual(valid.values, ['x\uFFFD']);
});

test('the writer refuses invalid UTF-8, short or long, naming the offset in the source', () => {
  for (const bad of [Buffer.from([0x61, 0xc0, 0xaf]), Buffer.concat([Buffer.alloc(100, 0x61), Buffer.from([0xed, 0xa0, 0x80])])]) {
    const writer = new EncodedRowWriter();
    writer.begin(1, bad.length);
    assert.throws(() => writer.textValue(bad, 0, bad.length), (e: unknown) => e instanceof DecodeError && /invalid UTF-8 in text at offset 0/.test(e.message));
  }
  const writer = new EncodedRowWriter();
  const ok = Buffer.from('a\uFFFDb é'.repeat(20));
  writer.begin(1, ok.length);
  writer.textValue(ok, 0, ok.length);
  assert.deepEqual(writer.finish().values, ['a\uFFFDb é'.repeat(20)]);
});

test('rows written one after another into shared slabs stay intact', () => {
  const writer = new EncodedRowWriter();
  const expected: string[][] = [];
  const rows: EncodedRow[] = [];
  for (let i = 0; i < 5_000; i++) {
    const values = [String(i), 'x'.repeat(i % 97), 'é'.repeat(i % 13)];
    const sources = values.map((v) => Buffer.from(v));
    writer.begin(values.length, sources.reduce((n, b) => n + b.length, 0));
    for (const source of sources) writer.textValue(source, 0, source.length);
    rows.push(writer.finish());
    expected.push(values);
  }
  // A row larger than a slab gets one of its own.
  const big = Buffer.alloc(200_000, 0x7a);
  writer.begin(1, big.length);
  writer.textValue(big, 0, big.length);
  const bigRow = writer.finish();
  assert.deepEqual(rows.map((r) => r.values), expected);
  assert.equal(bigRow.values[0], big.toString());
});

test('JSON and inspect show the values, not the bytes', () => {
  const encoded = EncodedRow.of({ values: ['1', null], unchanged: [1] });
  assert.equal(JSON.stringify(encoded), '{"values":["1",null],"unchanged":[1]}');
  assert.match(inspect(encoded), /values: \[ '1', null \]/);
});
