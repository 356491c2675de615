import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import fc from 'fast-check';
import avro from 'avsc';
import type { Type } from 'avsc';
import { CURRENT_SCHEMA_VERSION, decodeMessage, encodeMessage } from '../../src/events/avro-codec.ts';
import { EncodedRow } from '../../src/events/encoded-row.ts';
import { DecodeError, SitesyncError } from '../../src/errors.ts';
import { plainRows } from '../helpers/plain-rows.ts';
import type {
  Change,
  ChangeMessage,
  ColumnInfo,
  RelationInfo,
  RowImage,
  RowWriter,
  Transaction,
  TransactionPart,
} from '../../src/events/transaction.ts';
import { parseKind } from '../../src/events/value-kind.ts';

const SCHEMA_DIR = new URL('../../schemas/', import.meta.url);
const SCHEMA_FILE = /^change-message\.v([1-9][0-9]*)\.avsc$/;

/**
 * Canonical-form fingerprints (SHA-256) of published schema versions. A published file must never change;
 * when a version is published, add it here.
 */
const PUBLISHED_FINGERPRINTS: Readonly<Record<number, string>> = {
  1: '90d42234b222da3ee0c9316c6e4ce3c75c13ce30c4b78c824752fc1c5a3b8c96',
  2: '1d1fab5762f4f685fb00eaebdb6bf4aba7bf79c2d37e21c5a132d8743b964544',
  3: '74f7a4dfbbbe8315ce9a6f94ba4c21ade05c910bc1ef1bfc0d3c92fd425809c3',
  4: 'ad361adce5a566c033123fb496cfe53b498450b7f02eb60e30a00183f71266e2',
  5: '97c35404448f725798218bca616200219a423b70a2f23ccb19b3cbd808521eff',
};

/** The commit times avsc's long encoding keeps exact (see avro-codec.ts). */
const MAX_EXACT_MICROS = 9_007_199_254_740_990n;
const MIN_EXACT_MICROS = -4_503_599_627_370_496n;

type AvroSchema = Parameters<typeof avro.Type.forSchema>[0];

function schemaFiles(): { version: number; file: string; json: unknown }[] {
  return readdirSync(SCHEMA_DIR)
    .flatMap((file) => {
      const match = SCHEMA_FILE.exec(file);
      if (!match) return [];
      const json: unknown = JSON.parse(readFileSync(new URL(file, SCHEMA_DIR), 'utf8'));
      return [{ version: Number(match[1]), file, json }];
    })
    .sort((a, b) => a.version - b.version);
}

function typeFor(json: unknown): Type {
  return avro.Type.forSchema(json as AvroSchema, { wrapUnions: 'auto' });
}

function currentSchema(): unknown {
  const current = schemaFiles().find((s) => s.version === CURRENT_SCHEMA_VERSION);
  assert.ok(current, `schemas/ has no change-message.v${CURRENT_SCHEMA_VERSION}.avsc`);
  return current.json;
}

/** Asserts `fn` throws a DecodeError (nothing else) with a one-line message, and returns it. */
function decodeErrorOf(fn: () => unknown): DecodeError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof DecodeError, `expected a DecodeError, got ${String(error)}`);
    assert.equal(error.code, 'SITESYNC_ERR_DECODE');
    assert.doesNotMatch(error.message, /\n/);
    return error;
  }
  assert.fail('expected a DecodeError, nothing was thrown');
}

function relationsOf(change: Change): readonly RelationInfo[] {
  if (change.op === 'message') return [];
  return change.op === 'truncate' ? change.relations : [change.relation];
}

/** The same source relation object decodes to the same RelationInfo object, and distinct ones stay distinct. */
function assertRelationsShared(original: ChangeMessage, decoded: ChangeMessage): void {
  const map = new Map<RelationInfo, RelationInfo>();
  const images = new Set<RelationInfo>();
  original.transactions.forEach((tx, t) => {
    tx.changes.forEach((change, c) => {
      const decodedChange = decoded.transactions[t]?.changes[c];
      assert.ok(decodedChange);
      const from = relationsOf(change);
      const to = relationsOf(decodedChange);
      assert.equal(to.length, from.length);
      from.forEach((o, i) => {
        const d = to[i];
        assert.ok(d);
        const known = map.get(o);
        if (known === undefined) {
          assert.ok(!images.has(d), 'two source relations decoded to one object');
          map.set(o, d);
          images.add(d);
        } else {
          assert.equal(d, known, 'one source relation decoded to two objects');
        }
      });
    });
  });
}

// ---------------------------------------------------------------------------------------------------
// Arbitraries
// ---------------------------------------------------------------------------------------------------

/** fc.record, but with ordinary objects (fast-check 4 makes null-prototype ones by default). */
function record<T>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> {
  return fc.record(model, { noNullPrototype: true }) as unknown as fc.Arbitrary<T>;
}

const largeText = fc
  .tuple(fc.string({ unit: 'binary', minLength: 1, maxLength: 4 }), fc.integer({ min: 5_000, max: 40_000 }))
  .map(([s, n]) => s.repeat(Math.ceil(n / s.length)));

const text = fc.oneof(
  { arbitrary: fc.string({ unit: 'binary', maxLength: 12 }), weight: 20 },
  { arbitrary: fc.constantFrom('', 'é', '日本語', '👍🏽', 'a\u0000b', `O'Reilly "q" \\`), weight: 4 },
  { arbitrary: largeText, weight: 1 },
);

const name = fc.string({ unit: 'binary', maxLength: 10 });
/**
 * Site names as the model allows them, including the ones that are also Object.prototype's keys
 * (`constructor`; `__proto__` is no site name and is refused at decode, see the shape tests).
 */
const siteName = fc.oneof(
  fc.stringMatching(/^[a-z][a-z0-9_]{0,39}$/),
  fc.constantFrom('constructor', 'paris', 'london', 'valueof', 'hasownproperty'),
);
const hex = fc.constantFrom(...'0123456789ABCDEF');
const position = fc.string({ unit: hex, minLength: 16, maxLength: 16 });
const int32 = fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });

const column: fc.Arbitrary<ColumnInfo> = record({
  name,
  kind: fc.constantFrom('int32', 'string', 'decimal', 'decimal(12,2)', 'decimal(5,-3)', 'array<string>', 'enum', 'timestamptz', 'other').map(parseKind),
  native: record({
    name: fc.constantFrom('int4', 'text', 'numeric', '_text', 'public.mood', 'timestamptz'),
    id: fc.oneof(fc.integer({ min: 0, max: 0xffff_ffff }), fc.constantFrom(0, 23, 2 ** 31, 0xffff_ffff)),
    modifier: fc.oneof(fc.constant(-1), int32),
  }),
  key: fc.boolean(),
});

const relation: fc.Arbitrary<RelationInfo> = record({
  schema: name,
  table: name,
  replicaIdentity: fc.constantFrom('d', 'f', 'i', 'n'),
  columns: fc.array(column, { maxLength: 6 }),
});

function rowFor(r: RelationInfo): fc.Arbitrary<RowImage> {
  const n = r.columns.length;
  const cell = record({ value: fc.option(text, { nil: null }), unchanged: fc.integer({ min: 0, max: 5 }) });
  return fc.array(cell, { minLength: n, maxLength: n }).map((cells) => ({
    values: cells.map((c) => (c.unchanged === 0 ? null : c.value)),
    unchanged: cells.flatMap((c, i) => (c.unchanged === 0 ? [i] : [])),
  }));
}

const commitTimeMicros = fc.oneof(
  fc.bigInt({ min: MIN_EXACT_MICROS, max: MAX_EXACT_MICROS }),
  fc.constantFrom(0n, 1_700_000_000_123_456n, MAX_EXACT_MICROS, MIN_EXACT_MICROS, -1n),
);

function change(pool: readonly RelationInfo[], snapshot: boolean): fc.Arbitrary<Change> {
  const pick = fc.constantFrom(...pool);
  // A snapshot's rows (read) have no unchanged columns and come only in snapshot transactions; some carry
  // their writer (version 5). A null writer reads back as none, so the model's messages here have none or one.
  const writer: fc.Arbitrary<RowWriter | undefined> = fc.option(record<RowWriter>({ site: siteName, commitTimeMicros }), { nil: undefined });
  const read = pick.chain((r) =>
    fc.tuple(rowFor(r), writer).map(([row, w]): Change => ({ op: 'read', relation: r, newRow: { values: row.values, unchanged: [] }, ...(w === undefined ? {} : { writer: w }) })),
  );
  return fc.oneof(
    ...(snapshot ? [read] : []),
    pick.chain((r) => rowFor(r).map((newRow): Change => ({ op: 'insert', relation: r, newRow }))),
    pick.chain((r) =>
      fc
        .tuple(fc.option(rowFor(r), { nil: null }), rowFor(r))
        .map(([oldRow, newRow]): Change => ({ op: 'update', relation: r, oldRow, newRow })),
    ),
    pick.chain((r) => rowFor(r).map((oldRow): Change => ({ op: 'delete', relation: r, oldRow }))),
    fc
      .tuple(fc.array(pick, { minLength: 1, maxLength: 3 }), fc.boolean(), fc.boolean())
      .map(([relations, cascade, restartIdentity]): Change => ({ op: 'truncate', relations, cascade, restartIdentity })),
    fc
      .tuple(text, fc.uint8Array({ maxLength: 64 }))
      .map(([prefix, content]): Change => ({ op: 'message', prefix, content: Buffer.from(content) })),
  );
}

// Every message the model allows: at least one transaction, all of the message's site; a part holds one.
const message: fc.Arbitrary<ChangeMessage> = fc.tuple(fc.array(relation, { minLength: 1, maxLength: 4 }), siteName).chain(([pool, site]) => {
  const snapshotTag = record({
    id: fc.constantFrom('s20261206t110000-a1b2c3', 'x', '0-_'),
    table: fc.constantFrom('public.accounts', 's.t'),
    chunk: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
    last: fc.boolean(),
    targets: fc.option(fc.array(siteName, { minLength: 1, maxLength: 3 }), { nil: null }),
  });
  const transaction: fc.Arbitrary<Transaction> = fc.option(snapshotTag, { nil: null }).chain((snapshot) =>
    fc
      .tuple(position, commitTimeMicros, fc.nat(), fc.dictionary(siteName, commitTimeMicros, { maxKeys: 3, noNullPrototype: true }), fc.array(change(pool, snapshot !== null), { maxLength: 8 }))
      .map(([position, commitTimeMicros, txid, seen, changes]) => ({
        id: `${site}:${position}`,
        site,
        position,
        commitTimeMicros,
        sourceTxId: String(txid),
        seen,
        changes,
        ...(snapshot === null ? {} : { snapshot }),
      })),
  );
  const part = record({ index: fc.integer({ min: 0, max: 2 ** 31 - 1 }), last: fc.boolean() });
  return fc.oneof(
    record({
      site: fc.constant(site),
      sourceKind: fc.constant('postgres' as const),
      previous: fc.option(position, { nil: null }),
      transactions: fc.array(transaction, { minLength: 1, maxLength: 4 }),
      part: fc.constant(null),
    }),
    record({
      site: fc.constant(site),
      sourceKind: fc.constant('postgres' as const),
      previous: fc.option(position, { nil: null }),
      transactions: fc.array(transaction, { minLength: 1, maxLength: 1 }),
      part: part as fc.Arbitrary<TransactionPart | null>,
    }),
  );
});

// A fixed sample with every op, shared relations, nulls and unchanged columns.
const accounts: RelationInfo = {
  schema: 'public',
  table: 'accounts',
  replicaIdentity: 'd',
  columns: [
    { name: 'id', kind: parseKind('int64'), native: { name: 'int8', id: 20, modifier: -1 }, key: true },
    { name: 'owner', kind: parseKind('string'), native: { name: 'text', id: 25, modifier: -1 }, key: false },
    { name: 'notes', kind: parseKind('string'), native: { name: 'text', id: 25, modifier: -1 }, key: false },
    { name: 'mood', kind: parseKind('enum'), native: { name: 'public.mood', id: 3_000_000_000, modifier: -1 }, key: false },
  ],
};
const audit: RelationInfo = {
  schema: 'audit',
  table: 'log',
  replicaIdentity: 'f',
  columns: [{ name: 'amount', kind: parseKind('decimal'), native: { name: 'numeric', id: 1700, modifier: 655366 }, key: false }],
};
const sample: ChangeMessage = {
  site: 'paris',
  sourceKind: 'postgres',
  previous: '00000000016B3740',
  part: null,
  transactions: [
    {
      id: 'paris:00000000016B3798',
      site: 'paris',
      position: '00000000016B3798',
      commitTimeMicros: 1_732_150_000_123_456n,
      sourceTxId: '7781',
      seen: { london: 1_700_000_000_000_001n },
      changes: [
        { op: 'insert', relation: accounts, newRow: { values: ['1', 'Zoë', null, 'happy'], unchanged: [] } },
        {
          op: 'update',
          relation: accounts,
          oldRow: null,
          newRow: { values: ['1', '', null, 'sad'], unchanged: [2] },
        },
        {
          op: 'update',
          relation: accounts,
          oldRow: { values: ['1', null, null, null], unchanged: [] },
          newRow: { values: ['2', '日本語', null, null], unchanged: [2] },
        },
        { op: 'delete', relation: audit, oldRow: { values: ['12.50'], unchanged: [] } },
        { op: 'truncate', relations: [audit, accounts], cascade: true, restartIdentity: false },
        { op: 'message', prefix: 'sitesync', content: Buffer.from([0, 1, 2, 255]) },
      ],
    },
    {
      id: 'paris:00000000016B3800',
      site: 'paris',
      position: '00000000016B3800',
      commitTimeMicros: 0n,
      sourceTxId: '7782',
      seen: {},
      changes: [{ op: 'insert', relation: audit, newRow: { values: [null], unchanged: [] } }],
    },
  ],
};

// ---------------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------------

test('round trip: any change message encodes and decodes to itself, relations shared', () => {
  fc.assert(
    fc.property(message, (m) => {
      const decoded = decodeMessage(encodeMessage(m), CURRENT_SCHEMA_VERSION);
      assert.deepStrictEqual(plainRows(decoded), m);
      assertRelationsShared(m, decoded);
    }),
    { numRuns: 300 },
  );
});

test('rows in their wire form (EncodedRow) encode to the very bytes avsc writes for the same values, and decode as such', () => {
  fc.assert(
    fc.property(message, (m) => {
      const plainBody = encodeMessage(m);
      const encoded = withEncodedRows(m);
      assert.deepEqual(encodeMessage(encoded), plainBody);
      const decoded = decodeMessage(plainBody, CURRENT_SCHEMA_VERSION);
      for (const tx of decoded.transactions) {
        for (const change of tx.changes) {
          if (change.op === 'insert' || change.op === 'update') assert.ok(change.newRow instanceof EncodedRow);
          if ((change.op === 'update' || change.op === 'delete') && change.oldRow) assert.ok(change.oldRow instanceof EncodedRow);
        }
      }
      // A decoded message, its rows views of the body, is written again byte for byte.
      assert.deepEqual(encodeMessage(decoded), plainBody);
    }),
    { numRuns: 300 },
  );
});

/** `m` with every row image turned into an EncodedRow, as capture builds them. */
function withEncodedRows(m: ChangeMessage): ChangeMessage {
  const encode = (row: RowImage | null): EncodedRow | null => (row === null ? null : EncodedRow.of(row));
  return {
    ...m,
    transactions: m.transactions.map((tx) => ({
      ...tx,
      changes: tx.changes.map((c): Change => {
        if (c.op === 'insert') return { ...c, newRow: encode(c.newRow)! };
        if (c.op === 'update') return { ...c, oldRow: encode(c.oldRow), newRow: encode(c.newRow)! };
        if (c.op === 'delete') return { ...c, oldRow: encode(c.oldRow)! };
        return c;
      }),
    })),
  };
}

test('round trip: the fixed sample, with each relation written once', () => {
  const body = encodeMessage(sample);
  const decoded = decodeMessage(body, CURRENT_SCHEMA_VERSION);
  assert.deepStrictEqual(plainRows(decoded), sample);
  assertRelationsShared(sample, decoded);
  const wire = typeFor(currentSchema()).fromBuffer(body) as { relations: { table: string }[] };
  assert.deepEqual(
    wire.relations.map((r) => r.table),
    ['accounts', 'log'],
  );
});

test('every schema version in schemas/ is readable by the current reader', () => {
  const files = schemaFiles();
  const versions = files.map((f) => f.version);
  for (let v = 1; v <= CURRENT_SCHEMA_VERSION; v++) {
    assert.ok(versions.includes(v), `schemas/change-message.v${v}.avsc is missing: published versions are never removed`);
  }
  const current = typeFor(currentSchema());
  // The sample as the current writer writes it, then as each version's writer would have written it.
  const wire: unknown = current.fromBuffer(encodeMessage(sample));
  for (const { version, file, json } of files) {
    const writer = typeFor(json);
    const body = writer.toBuffer(writer.clone(wire));
    // A version that adds fields must say here how older messages read, if not exactly as the sample.
    let expected = sample;
    if (version < 3) expected = kindsReadAsOther(expected); // v3 added each column's kind
    if (version < 2) expected = { ...expected, transactions: expected.transactions.map((tx) => ({ ...tx, seen: {} })) }; // v2 added `seen`
    assert.deepStrictEqual(plainRows(decodeMessage(body, version)), expected, `${file} did not read back as the sample`);
  }
});

/** A message as a reader sees it when its writer knew no kinds: every column `other`. */
function kindsReadAsOther(message: ChangeMessage): ChangeMessage {
  const relations = new Map<RelationInfo, RelationInfo>();
  const other = (r: RelationInfo): RelationInfo => {
    let copy = relations.get(r);
    if (!copy) relations.set(r, (copy = { ...r, columns: r.columns.map((c) => ({ ...c, kind: parseKind('other') })) }));
    return copy;
  };
  return {
    ...message,
    transactions: message.transactions.map((tx) => ({
      ...tx,
      changes: tx.changes.map((c): Change => {
        if (c.op === 'truncate') return { ...c, relations: c.relations.map(other) };
        if (c.op === 'message') return c;
        return { ...c, relation: other(c.relation) } as Change;
      }),
    })),
  };
}

test('published schema versions are never edited', () => {
  for (const { version, file, json } of schemaFiles()) {
    if (version > CURRENT_SCHEMA_VERSION) continue;
    const pinned = PUBLISHED_FINGERPRINTS[version];
    assert.ok(pinned, `${file} is published (version <= ${CURRENT_SCHEMA_VERSION}) but has no pinned fingerprint`);
    assert.equal(
      typeFor(json).fingerprint('sha256').toString('hex'),
      pinned,
      `${file} was edited after publication: add a new version instead`,
    );
  }
});

test('every schema file parses, and every record, enum and field has a doc', () => {
  const files = schemaFiles();
  assert.ok(files.length > 0);
  for (const { file, json } of files) {
    typeFor(json);
    const missing: string[] = [];
    const walk = (schema: unknown, path: string): void => {
      if (Array.isArray(schema)) {
        schema.forEach((branch, i) => walk(branch, `${path}|${i}`));
        return;
      }
      if (typeof schema !== 'object' || schema === null) return;
      const s = schema as Record<string, unknown>;
      if ((s.type === 'record' || s.type === 'enum') && !(typeof s.doc === 'string' && s.doc.trim())) {
        missing.push(`${path} (${String(s.name)})`);
      }
      if (s.type === 'record') {
        for (const field of s.fields as Record<string, unknown>[]) {
          const fieldPath = `${path}.${String(field.name)}`;
          if (!(typeof field.doc === 'string' && field.doc.trim())) missing.push(fieldPath);
          walk(field.type, fieldPath);
        }
      }
      if (s.type === 'array') walk(s.items, `${path}[]`);
      if (s.type === 'map') walk(s.values, `${path}{}`);
    };
    walk(json, 'ChangeMessage');
    assert.deepEqual(missing, [], `${file}: missing doc`);
  }
});

test('random bytes throw DecodeError only', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      try {
        decodeMessage(Buffer.from(bytes), CURRENT_SCHEMA_VERSION);
      } catch (error) {
        assert.ok(error instanceof DecodeError, String(error));
        assert.match(
          error.message,
          new RegExp(`^message body is not a sitesync v${CURRENT_SCHEMA_VERSION} Avro change message: [^\\n]+$`),
        );
      }
    }),
    { numRuns: 300 },
  );
});

test('corrupted valid messages decode or throw DecodeError only', () => {
  fc.assert(
    fc.property(
      message,
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
      (m, flips) => {
        const body = Buffer.from(encodeMessage(m));
        for (const [at, byte] of flips) body[at % body.length] = byte;
        try {
          decodeMessage(body, CURRENT_SCHEMA_VERSION);
        } catch (error) {
          assert.ok(error instanceof DecodeError, String(error));
        }
      },
    ),
    { numRuns: 300 },
  );
});

test('every truncation of a valid message throws DecodeError saying truncated', () => {
  fc.assert(
    fc.property(message, fc.array(fc.nat(), { minLength: 1, maxLength: 8 }), (m, cuts) => {
      const body = encodeMessage(m);
      for (const cut of [0, body.length - 1, ...cuts.map((c) => c % body.length)]) {
        const error = decodeErrorOf(() => decodeMessage(body.subarray(0, cut), CURRENT_SCHEMA_VERSION));
        assert.match(error.message, new RegExp(`truncated at byte ${cut}\\b`));
      }
    }),
    { numRuns: 200 },
  );
  const body = encodeMessage(sample);
  for (let cut = 0; cut < body.length; cut++) {
    decodeErrorOf(() => decodeMessage(body.subarray(0, cut), CURRENT_SCHEMA_VERSION));
  }
});

test('trailing bytes throw DecodeError', () => {
  const body = encodeMessage(sample);
  const error = decodeErrorOf(() => decodeMessage(Buffer.concat([body, Buffer.from([0, 0])]), CURRENT_SCHEMA_VERSION));
  assert.match(error.message, new RegExp(`2 trailing byte\\(s\\) after the message ends at byte ${body.length}`));
});

test('an unknown or malformed schema version throws DecodeError', () => {
  const body = encodeMessage(sample);
  const next = Math.max(...schemaFiles().map((f) => f.version)) + 1;
  for (const version of [0, -1, next, 1.5, Number.NaN, Infinity]) {
    const error = decodeErrorOf(() => decodeMessage(body, version));
    assert.match(error.message, /sitesync-schema-version .* which this reader does not know \(known: 1[,)]/);
  }
  decodeErrorOf(() => decodeMessage('not a buffer' as unknown as Buffer, CURRENT_SCHEMA_VERSION));
});

/** Zig-zag varint, as Avro writes int and long. */
function avroLong(n: number): number[] {
  let z = n >= 0 ? n * 2 : -n * 2 - 1;
  const out: number[] = [];
  while (z >= 0x80) {
    out.push((z % 0x80) | 0x80);
    z = Math.floor(z / 0x80);
  }
  out.push(z);
  return out;
}
function avroString(s: string): number[] {
  const bytes = Buffer.from(s, 'utf8');
  return [...avroLong(bytes.length), ...bytes];
}

test('a huge array count is refused quickly, without building the array', () => {
  for (const count of [2 ** 31, 2 ** 40, -(2 ** 31)]) {
    // site "", sourceKind "postgres", previous null, then `relations` claiming `count` items.
    const body = Buffer.from([...avroString(''), ...avroString('postgres'), 0, ...avroLong(count), 0, 0, 0, 0]);
    const started = process.hrtime.bigint();
    const error = decodeErrorOf(() => decodeMessage(body, CURRENT_SCHEMA_VERSION));
    assert.ok(process.hrtime.bigint() - started < 100_000_000n, 'took over 100 ms');
    assert.match(error.message, /truncated/);
  }
});

test('references and values the model forbids throw DecodeError saying what is wrong', () => {
  const type = typeFor(currentSchema());
  const wire = (): Record<string, unknown> & { relations: Record<string, unknown>[]; transactions: { changes: Record<string, unknown>[] }[] } =>
    JSON.parse(JSON.stringify(type.fromBuffer(encodeMessage(sample)))) as never;
  const read = (w: unknown): DecodeError =>
    decodeErrorOf(() => decodeMessage(type.toBuffer(type.clone(w, { coerceBuffers: true })), CURRENT_SCHEMA_VERSION));

  let w = wire();
  w.transactions[0]!.changes[0]!.relation = 2;
  assert.match(read(w).message, /transaction 0 change 0 refers to relation 2, but the message has 2 relations/);

  w = wire();
  w.transactions[0]!.changes[4]!.relations = [0, 9];
  assert.match(read(w).message, /transaction 0 change 4 refers to relation 9/);

  w = wire();
  w.transactions[0]!.changes[0]!.newRow = null;
  assert.match(read(w).message, /transaction 0 change 0 is INSERT without newRow/);

  w = wire();
  w.transactions[0]!.changes[3]!.oldRow = { values: ['1'], unchanged: [1] };
  assert.match(read(w).message, /transaction 0 change 3 oldRow lists unchanged column 1 but has 1 values/);

  w = wire();
  w.relations[0]!.replicaIdentity = 'x';
  assert.match(read(w).message, /unknown replica identity "x"/);

  w = wire();
  w.sourceKind = 'Oracle 19c';
  assert.match(read(w).message, /source kind "Oracle 19c" is not a source kind name/);

  w = wire();
  (w.relations[0]!.columns as { kind: string }[])[1]!.kind = 'money';
  assert.match(read(w).message, /relation 0 \("public\.accounts"\) column 1: unknown value kind "money"/);

  w = wire();
  (w.relations[0]!.columns as { kind: string }[])[1]!.kind = 'array<array<int32>>';
  assert.match(read(w).message, /nests arrays/);
});

test('shapes an applier must never act on throw DecodeError saying what is wrong (hostile or broken input)', () => {
  const type = typeFor(currentSchema());
  type Wire = Record<string, unknown> & { part: unknown; transactions: (Record<string, unknown> & { seen: { site: string; commitTimeMicros: number }[]; changes: Record<string, unknown>[] })[] };
  const wire = (): Wire => JSON.parse(JSON.stringify(type.fromBuffer(encodeMessage(sample)))) as never;
  const read = (w: unknown): DecodeError =>
    decodeErrorOf(() => decodeMessage(type.toBuffer(type.clone(w, { coerceBuffers: true })), CURRENT_SCHEMA_VERSION));
  const cases: [string, (w: Wire) => void, RegExp][] = [
    ['one value too many', (w) => ((w.transactions[0]!.changes[0]!.newRow as { values: unknown[] }).values.push('extra')), /newRow has \d+ values for the \d+ columns of "public\.accounts"/],
    ['no transaction', (w) => (w.transactions = []), /it holds no transaction/],
    ['a part of several transactions', (w) => (w.part = { index: 1, last: false }), /part 1 holds 2 transactions instead of one/],
    ['a negative part', (w) => ((w.part = { index: -1, last: true }), w.transactions.pop()), /part index -1 is negative/],
    ['a transaction of another site', (w) => (w.transactions[0]!.site = 'london'), /transaction 0 names site "london" in a message of site "paris"/],
    ['an id that is not site:position', (w) => (w.transactions[0]!.id = 'paris:0'), /transaction 0 id "paris:0" is not "paris:00000000016B3798"/],
    ['a malformed position', (w) => ((w.transactions[0]!.position = '0/16B3748'), (w.transactions[0]!.id = 'paris:0/16B3748')), /position "0\/16B3748" is not a position \(upper-case hex\)/],
    ['a lower-case position', (w) => ((w.transactions[0]!.position = '00000000016b3748'), (w.transactions[0]!.id = 'paris:00000000016b3748')), /is not a position/],
    ['a malformed previous', (w) => (w.previous = 'x'), /previous position "x" is not a position/],
    ['a site that is no site name', (w) => (w.site = '__proto__'), /site "__proto__" is not a site name/],
    ['a causal context keyed __proto__', (w) => w.transactions[0]!.seen.push({ site: '__proto__', commitTimeMicros: 1 }), /causal context names "__proto__", not a site name/],
  ];
  for (const [what, corrupt, expected] of cases) {
    const w = wire();
    corrupt(w);
    assert.match(read(w).message, expected, what);
  }
});

test('an enum index the schema does not have throws DecodeError', () => {
  // The same schema with one more op: a writer that should not exist.
  const json = JSON.parse(JSON.stringify(currentSchema())) as unknown;
  const text = JSON.stringify(json).replace('"READ"]', '"READ","UPSERT"]');
  assert.notEqual(text, JSON.stringify(json));
  const rogue = typeFor(JSON.parse(text));
  const wire = rogue.fromBuffer(encodeMessage(sample)) as { transactions: { changes: { op: string }[] }[] };
  wire.transactions[0]!.changes[0]!.op = 'UPSERT';
  const error = decodeErrorOf(() => decodeMessage(rogue.toBuffer(wire), CURRENT_SCHEMA_VERSION));
  assert.match(error.message, /enum index: 6/);
});

test('encode refuses what no reader could read back', () => {
  const invalid = (m: ChangeMessage, pattern: RegExp): void => {
    assert.throws(
      () => encodeMessage(m),
      (error: unknown) =>
        error instanceof SitesyncError &&
        error.code === 'SITESYNC_ERR_MESSAGE_INVALID' &&
        pattern.test(error.message) &&
        !error.message.includes('\n'),
    );
  };
  const tx = sample.transactions[0]!;
  invalid(
    { ...sample, transactions: [{ ...tx, commitTimeMicros: MAX_EXACT_MICROS + 1n }] },
    /transaction 0 \("paris:00000000016B3798"\) commit time 9007199254740991 µs/,
  );
  invalid(
    { ...sample, transactions: [{ ...tx, commitTimeMicros: MIN_EXACT_MICROS - 1n }] },
    /transaction 0 .* commit time -4503599627370497 µs/,
  );
  invalid(
    {
      ...sample,
      transactions: [{ ...tx, changes: [{ op: 'insert', relation: audit, newRow: { values: [null], unchanged: [1] } }] }],
    },
    /transaction 0 change 0 newRow lists unchanged column 1 but has 1 values/,
  );
  const badOid: RelationInfo = { ...audit, columns: [{ ...audit.columns[0]!, native: { ...audit.columns[0]!.native, id: 2 ** 32 } }] };
  invalid(
    {
      ...sample,
      transactions: [{ ...tx, changes: [{ op: 'delete', relation: badOid, oldRow: { values: ['1'], unchanged: [] } }] }],
    },
    /column "amount" has native type id 4294967296/,
  );
  invalid(
    {
      ...sample,
      transactions: [{ ...tx, changes: [{ op: 'insert', relation: audit, newRow: { values: [7 as unknown as string], unchanged: [] } }] }],
    },
    /transactions\.0\.changes\.0\.newRow\.values\.0 = 7/,
  );
});

test('a snapshot transaction round-trips with its tag; a READ outside one is refused', () => {
  const read: ChangeMessage = {
    ...sample,
    transactions: [
      {
        ...sample.transactions[0]!,
        changes: [{ op: 'read', relation: accounts, newRow: { values: ['1', 'ann', null, null], unchanged: [] } }],
        snapshot: { id: 's20261206t110000-a1b2c3', table: 'public.accounts', chunk: 3, last: true, targets: ['london'] },
      },
    ],
  };
  assert.deepStrictEqual(plainRows(decodeMessage(encodeMessage(read), CURRENT_SCHEMA_VERSION)), read);
  const type = typeFor(currentSchema());
  const wire = type.fromBuffer(encodeMessage(read)) as { transactions: { snapshot: unknown }[] };
  wire.transactions[0]!.snapshot = null;
  assert.match(decodeErrorOf(() => decodeMessage(type.toBuffer(wire), CURRENT_SCHEMA_VERSION)).message, /READ in a transaction that is not a snapshot's/);
  const badTarget = type.fromBuffer(encodeMessage(read)) as { transactions: { snapshot: { targets: string[] } }[] };
  badTarget.transactions[0]!.snapshot.targets = ['London!'];
  assert.match(decodeErrorOf(() => decodeMessage(type.toBuffer(badTarget), CURRENT_SCHEMA_VERSION)).message, /snapshot targets "London!", not a site name/);
});

/** `sample`'s first transaction as a snapshot chunk of reads: one whose writer the source knew, one it did not. */
const readsWithWriter: ChangeMessage = {
  ...sample,
  transactions: [
    {
      ...sample.transactions[0]!,
      changes: [
        {
          op: 'read',
          relation: accounts,
          newRow: { values: ['1', 'ann', null, null], unchanged: [] },
          writer: { site: 'london', commitTimeMicros: 1_732_149_999_000_001n },
        },
        { op: 'read', relation: accounts, newRow: { values: ['2', 'bob', 'x', 'sad'], unchanged: [] } },
        { op: 'read', relation: accounts, newRow: { values: ['3', null, null, null], unchanged: [] }, writer: { site: 'paris', commitTimeMicros: MAX_EXACT_MICROS } },
        { op: 'read', relation: accounts, newRow: { values: ['4', null, null, null], unchanged: [] }, writer: { site: 'constructor', commitTimeMicros: MIN_EXACT_MICROS } },
      ],
      snapshot: { id: 's20261206t110000-a1b2c3', table: 'public.accounts', chunk: 0, last: false, targets: ['london', 'rome'] },
    },
  ],
};

test('v5: a read carries its writer exactly (bigint commit time); a read without one decodes with no writer property', () => {
  const decoded = decodeMessage(encodeMessage(readsWithWriter), CURRENT_SCHEMA_VERSION);
  assert.deepStrictEqual(plainRows(decoded), readsWithWriter);
  const [withWriter, without, latest, earliest] = decoded.transactions[0]!.changes;
  assert.ok(withWriter?.op === 'read' && without?.op === 'read' && latest?.op === 'read' && earliest?.op === 'read');
  assert.equal(typeof withWriter.writer?.commitTimeMicros, 'bigint');
  assert.deepStrictEqual(withWriter.writer, { site: 'london', commitTimeMicros: 1_732_149_999_000_001n });
  assert.equal(latest.writer?.commitTimeMicros, MAX_EXACT_MICROS);
  assert.equal(earliest.writer?.commitTimeMicros, MIN_EXACT_MICROS);
  assert.ok(!Object.hasOwn(without, 'writer'), 'a read without a writer decodes with no writer property');
  // A writer given as null is the same as none: null on the wire, no property when read.
  const nullWriter: ChangeMessage = {
    ...readsWithWriter,
    transactions: [{ ...readsWithWriter.transactions[0]!, changes: [{ op: 'read', relation: accounts, newRow: { values: ['5', null, null, null], unchanged: [] }, writer: null }] }],
  };
  const again = decodeMessage(encodeMessage(nullWriter), CURRENT_SCHEMA_VERSION).transactions[0]!.changes[0]!;
  assert.ok(again.op === 'read' && !Object.hasOwn(again, 'writer'));
  // On the wire, every other op's writer is null.
  const wire = typeFor(currentSchema()).fromBuffer(encodeMessage(sample)) as { transactions: { changes: { writer: unknown }[] }[] };
  for (const tx of wire.transactions) for (const change of tx.changes) assert.equal(change.writer, null);
});

test('v5: a version 4 message of reads still decodes, its reads without a writer', () => {
  const v4 = schemaFiles().find((f) => f.version === 4);
  assert.ok(v4, 'schemas/change-message.v4.avsc is missing');
  const writer = typeFor(v4.json);
  // The reads as a version 4 writer wrote them: it knew no writer field.
  const wire = typeFor(currentSchema()).fromBuffer(encodeMessage(readsWithWriter));
  const body = writer.toBuffer(writer.clone(wire));
  const expected: ChangeMessage = {
    ...readsWithWriter,
    transactions: readsWithWriter.transactions.map((tx) => ({
      ...tx,
      changes: tx.changes.map((c): Change => (c.op === 'read' ? { op: 'read', relation: c.relation, newRow: c.newRow } : c)),
    })),
  };
  const decoded = decodeMessage(body, 4);
  assert.deepStrictEqual(plainRows(decoded), expected);
  for (const change of decoded.transactions[0]!.changes) assert.ok(!Object.hasOwn(change, 'writer'));
  // And one the version 4 writer's own type wrote from scratch reads the same.
  assert.deepStrictEqual(plainRows(decodeMessage(writer.toBuffer(writer.fromBuffer(body)), 4)), expected);
});

test('v5: a writer the model forbids, from the wire, throws DecodeError saying what is wrong', () => {
  const type = typeFor(currentSchema());
  type Wire = { transactions: { changes: (Record<string, unknown> & { writer: { site: string; commitTimeMicros: number } | null })[] }[] };
  const read = (corrupt: (w: Wire) => void, message: ChangeMessage = readsWithWriter): DecodeError => {
    const w = type.fromBuffer(encodeMessage(message)) as Wire;
    corrupt(w);
    return decodeErrorOf(() => decodeMessage(type.toBuffer(w), CURRENT_SCHEMA_VERSION));
  };
  const label = /^message body is not a sitesync v5 Avro change message: /;
  for (const site of ['London!', '__proto__', '', 'a'.repeat(41), 'Paris']) {
    const error = read((w) => (w.transactions[0]!.changes[0]!.writer!.site = site));
    assert.match(error.message, label);
    assert.match(error.message, /transaction 0 change 0 writer site .* is not a site name/, site);
  }
  // A writer on a read that had none.
  assert.match(
    read((w) => (w.transactions[0]!.changes[1]!.writer = { site: 'Rome', commitTimeMicros: 1 })).message,
    /transaction 0 change 1 writer site "Rome" is not a site name/,
  );
  // A commit time past what the codec writes: avsc refuses it while reading (the codec relies on that, as
  // for a transaction's commit time; see the bounds test below).
  const body = encodeMessage(readsWithWriter);
  const at = indexOfOnce(body, zigZag(MAX_EXACT_MICROS));
  const past = Buffer.concat([body.subarray(0, at), zigZag(MAX_EXACT_MICROS + 1n), body.subarray(at + zigZag(MAX_EXACT_MICROS).length)]);
  assert.match(decodeErrorOf(() => decodeMessage(past, CURRENT_SCHEMA_VERSION)).message, /^message body is not a sitesync v5 Avro change message: .*precision loss/);
  // A writer on any other op: the schema lets the field exist on every change, the model only on a read.
  const error = read((w) => (w.transactions[0]!.changes[0]!.writer = { site: 'london', commitTimeMicros: 1 }), sample);
  assert.match(error.message, /transaction 0 change 0 is INSERT with a writer, which only READ carries/);
});

test('v5: encode refuses a writer no reader could read back', () => {
  const tx = readsWithWriter.transactions[0]!;
  const withWriter = (writer: RowWriter): ChangeMessage => ({
    ...readsWithWriter,
    transactions: [{ ...tx, changes: [{ op: 'read', relation: accounts, newRow: { values: ['1', null, null, null], unchanged: [] }, writer }] }],
  });
  const refused = (m: ChangeMessage, pattern: RegExp): void => {
    assert.throws(
      () => encodeMessage(m),
      (error: unknown) => error instanceof SitesyncError && error.code === 'SITESYNC_ERR_MESSAGE_INVALID' && pattern.test(error.message) && !error.message.includes('\n'),
    );
  };
  refused(withWriter({ site: 'London!', commitTimeMicros: 1n }), /transaction 0 change 0 writer site "London!" is not a site name/);
  refused(withWriter({ site: 'london', commitTimeMicros: MAX_EXACT_MICROS + 1n }), /transaction 0 change 0 writer commit time 9007199254740991 µs/);
  refused(withWriter({ site: 'london', commitTimeMicros: MIN_EXACT_MICROS - 1n }), /transaction 0 change 0 writer commit time -4503599627370497 µs/);
  refused(withWriter({ site: 'london', commitTimeMicros: 5 as unknown as bigint }), /transaction 0 change 0 writer commit time 5 µs is not a bigint/);
});

/** Avro's zig-zag varint of a long, exact for any bigint (avroLong above is exact only within ±2^52). */
function zigZag(n: bigint): Buffer {
  let z = n >= 0n ? n * 2n : -n * 2n - 1n;
  const out: number[] = [];
  while (z >= 0x80n) {
    out.push(Number(z % 0x80n) | 0x80);
    z /= 0x80n;
  }
  out.push(Number(z));
  return Buffer.from(out);
}
function indexOfOnce(body: Buffer, bytes: Buffer): number {
  const at = body.indexOf(bytes);
  assert.ok(at >= 0 && body.indexOf(bytes, at + 1) < 0, 'the bytes occur once in the body');
  return at;
}

test('the commit times avsc reads from the wire are exactly those the codec writes (why decode does not check them)', () => {
  const long = typeFor('long');
  assert.equal(long.fromBuffer(zigZag(MAX_EXACT_MICROS)), Number(MAX_EXACT_MICROS));
  assert.equal(long.fromBuffer(zigZag(MIN_EXACT_MICROS)), Number(MIN_EXACT_MICROS));
  assert.throws(() => long.fromBuffer(zigZag(MAX_EXACT_MICROS + 1n)), /precision loss/);
  // Below -2^52, zig-zag needs over 53 bits: avsc's float arithmetic drops the sign bit, and the value reads
  // as a positive one within range (or is refused), never as a time below MIN_EXACT_MICROS.
  for (const n of [MIN_EXACT_MICROS - 1n, MIN_EXACT_MICROS - 2n, -(2n ** 53n) + 2n, -(2n ** 53n), -(2n ** 63n)]) {
    let read: unknown;
    try {
      read = long.fromBuffer(zigZag(n));
    } catch {
      continue;
    }
    assert.ok(typeof read === 'number' && read >= Number(MIN_EXACT_MICROS) && read <= Number(MAX_EXACT_MICROS), `${n} read as ${String(read)}`);
  }
});
