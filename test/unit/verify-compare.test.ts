/**
 * `sitesync verify`'s algorithm (src/verify/compare-tables.ts) against in-memory table readers: one that
 * computes range digests and keys by offset, as a database does, and one that only reads rows.
 *
 * The property: over random tables and random edits at random sites (inserts, deletes, changed values,
 * at the first and last keys, keys only some non-reference site has), the reported differences are exactly
 * the true ones, computed here by brute force over every key — whichever reader and whatever the split
 * sizes. And the cost: with digests, the rows read grow with the differences, not with the table.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compareKeys } from '../../src/capture/key-order.ts';
import { rowKey, type RowKey, type TableReader, type TableShape } from '../../src/capture/table-reader.ts';
import { SitesyncError } from '../../src/errors.ts';
import type { ColumnInfo, RowImage } from '../../src/events/transaction.ts';
import { simpleKind, type SimpleKindName } from '../../src/events/value-kind.ts';
import { compareTable, type CompareOptions, type RowDifference, type VerifySite } from '../../src/verify/compare-tables.ts';
import { rowDigest } from '../../src/verify/row-digest.ts';
import { formatComparison, reportJson } from '../../src/verify/verify-report.ts';

// ---------------------------------------------------------------------------------------------------------
// In-memory readers.

function column(name: string, kind: SimpleKindName, key = false): ColumnInfo {
  return { name, kind: simpleKind(kind), native: { name: kind, id: 0, modifier: -1 }, key };
}

function shapeOf(columns: ColumnInfo[], schema = 'public', table = 't'): TableShape {
  return {
    relation: { schema, table, replicaIdentity: 'd', columns },
    keyColumns: columns.flatMap((c, i) => (c.key ? [i] : [])),
  };
}

const row = (...values: (string | null)[]): RowImage => ({ values, unchanged: [] });

function sortRows(shape: TableShape, rows: readonly RowImage[]): RowImage[] {
  const keyed = rows.map((r) => ({ r, key: rowKey(shape, r) }));
  keyed.sort((a, b) => compareKeys(shape, a.key, b.key));
  return keyed.map(({ r }) => r);
}

/**
 * A row's digest as two 24-bit numbers, remembered per row and column list: range digests are then sums
 * (prefix sums make each one quick), a collision about 2^-48 likely. The digest covers the key, so an
 * order-insensitive sum still tells every edit apart.
 */
const rowNumbers = new WeakMap<RowImage, { id: string; a: number; b: number }>();

function numbersOf(r: RowImage, indexes: readonly number[], id: string): { a: number; b: number } {
  let known = rowNumbers.get(r);
  if (known?.id !== id) {
    const bytes = Buffer.from(rowDigest(r, indexes), 'base64');
    known = { id, a: bytes.readUIntBE(0, 3), b: bytes.readUIntBE(3, 3) };
    rowNumbers.set(r, known);
  }
  return known;
}

interface Calls {
  readChunk: number;
  rowsRead: number;
  rangeDigest: number;
  keyAt: number;
}

/** A table held in memory, read as a TableReader without digests (compared row by row). */
class RowsReader implements TableReader {
  readonly calls: Calls = { readChunk: 0, rowsRead: 0, rangeDigest: 0, keyAt: 0 };
  protected readonly rows: RowImage[];

  constructor(
    protected readonly shape: TableShape,
    rows: RowImage[],
    sorted = false,
  ) {
    this.rows = sorted ? rows : sortRows(shape, rows);
  }

  async describe(schema: string, table: string): Promise<TableShape> {
    if (schema !== this.shape.relation.schema || table !== this.shape.relation.table) throw new SitesyncError('SITESYNC_ERR_CONFIG', `table ${schema}.${table} does not exist; create it`);
    return this.shape;
  }

  /** Index of the first row whose key is after `key` (0 for null). */
  protected after(key: RowKey | null): number {
    if (key === null) return 0;
    let lo = 0;
    let hi = this.rows.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareKeys(this.shape, rowKey(this.shape, this.rows[mid]!), key) <= 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  async readChunk(shape: TableShape, after: RowKey | null, limit: number): Promise<RowImage[]> {
    assert.equal(shape, this.shape, 'a reader is given its own shape');
    const start = this.after(after);
    const chunk = this.rows.slice(start, start + limit);
    this.calls.readChunk++;
    this.calls.rowsRead += chunk.length;
    return chunk;
  }

  async readKeys(): Promise<RowImage[]> {
    throw new Error('verify does not read keys one by one');
  }

  async estimateRows(): Promise<number> {
    return this.rows.length;
  }

  async close(): Promise<void> {}
}

/** The same, computing what a database would: digests of key ranges and keys at an offset. */
class DigestReader extends RowsReader {
  readonly digestKind: string;
  /** Prefix sums of the rows' digest numbers for one column list. */
  private sums: { id: string; a: number[]; b: number[] } | null = null;

  constructor(shape: TableShape, rows: RowImage[], digestKind = 'memory-sum', sorted = false) {
    super(shape, rows, sorted);
    this.digestKind = digestKind;
  }

  async rangeDigest(shape: TableShape, columns: readonly string[], from: RowKey | null, to: RowKey | null): Promise<{ rows: number; digest: string }> {
    assert.equal(shape, this.shape);
    this.calls.rangeDigest++;
    const indexes = columns.map((name) => {
      const i = shape.relation.columns.findIndex((c) => c.name === name);
      assert.ok(i >= 0, `column ${name} asked for exists`);
      return i;
    });
    const id = indexes.join(',');
    if (this.sums?.id !== id) {
      const a = [0];
      const b = [0];
      for (const r of this.rows) {
        const n = numbersOf(r, indexes, id);
        a.push(a.at(-1)! + n.a);
        b.push(b.at(-1)! + n.b);
      }
      this.sums = { id, a, b };
    }
    const start = this.after(from);
    const end = Math.max(start, to === null ? this.rows.length : this.after(to));
    return { rows: end - start, digest: `${this.sums.a[end]! - this.sums.a[start]!}:${this.sums.b[end]! - this.sums.b[start]!}` };
  }

  async keyAt(shape: TableShape, from: RowKey | null, to: RowKey | null, offset: number): Promise<RowKey | null> {
    assert.equal(shape, this.shape);
    this.calls.keyAt++;
    const i = this.after(from) + offset;
    const r = this.rows[i];
    if (r === undefined) return null;
    const key = rowKey(shape, r);
    return to !== null && compareKeys(shape, key, to) > 0 ? null : key;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Random tables, random edits, and the true differences by brute force.

function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Values that must all be told apart: NULL, the empty string, the text NULL, and ordinary text. */
const VALUES: (string | null)[] = [null, '', 'NULL', 'null', 'a', 'b', 'a b', '0'];

interface Site {
  readonly name: string;
  readonly shape: TableShape;
  /** By key (joined), the row. */
  readonly rows: Map<string, RowImage>;
}

const keyId = (key: RowKey): string => JSON.stringify(key);

/** The true differences, in key order then site order, as verify must report them. */
function trueDifferences(sites: Site[], compared: string[]): Omit<RowDifference, 'digests'>[] {
  const reference = sites[0]!;
  const keys = new Map<string, RowKey>();
  for (const site of sites) for (const r of site.rows.values()) keys.set(keyId(rowKey(site.shape, r)), rowKey(site.shape, r));
  const ordered = [...keys.values()].sort((a, b) => compareKeys(reference.shape, a, b));
  const index = (shape: TableShape, name: string): number => shape.relation.columns.findIndex((c) => c.name === name);
  const out: Omit<RowDifference, 'digests'>[] = [];
  for (const key of ordered) {
    const ref = reference.rows.get(keyId(key));
    for (const site of sites.slice(1)) {
      const mine = site.rows.get(keyId(key));
      if (ref && !mine) out.push({ kind: 'missing', site: site.name, key });
      else if (!ref && mine) out.push({ kind: 'extra', site: site.name, key });
      else if (ref && mine) {
        const columns = compared.filter((name) => ref.values[index(reference.shape, name)] !== mine.values[index(site.shape, name)]);
        if (columns.length > 0) out.push({ kind: 'changed', site: site.name, key, columns });
      }
    }
  }
  return out;
}

interface Case {
  readonly sites: Site[];
  readonly compared: string[];
  readonly schemaDrift: boolean;
}

/**
 * A random table (int or composite string+int key), copied to 2 or 3 sites, then edited at random sites:
 * deletes, inserts of new keys, changed values; often at the first and the last key. Sometimes one site
 * has a column the others lack (never compared) and its columns in another order.
 */
function randomCase(random: () => number): Case {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const int = (n: number): number => Math.floor(random() * n);
  const composite = random() < 0.3;
  const keyColumns = composite ? [column('region', 'string', true), column('id', 'int32', true)] : [column('id', 'int64', true)];
  const base = [...keyColumns, column('name', 'string'), column('note', 'string'), column('n', 'int32')];
  const siteCount = random() < 0.7 ? 2 : 3;
  const sizes = [0, 1, 2, 5, 40, 300, 1500, 4000];
  const size = pick(sizes);
  const regions = ['', 'eu', 'eu-west', 'us', 'é', 'Z', 'a b'];
  const newKey = (): string[] => (composite ? [pick(regions), String(int(10_000) - 5000)] : [String(int(200_000) - 100_000)]);
  const baseRows = new Map<string, (string | null)[]>();
  while (baseRows.size < size) {
    const key = newKey();
    baseRows.set(keyId(key), [...key, pick(VALUES), pick(VALUES), String(int(100))]);
  }
  const extraColumnAt = siteCount > 1 && random() < 0.2 ? 1 + int(siteCount - 1) : -1;
  const sites: Site[] = [];
  for (let s = 0; s < siteCount; s++) {
    // A site with an extra column holds it first among the non-key columns: other positions, same names.
    const columns = s === extraColumnAt ? [...keyColumns, column('extra', 'string'), ...base.slice(keyColumns.length).reverse()] : base;
    const shape = shapeOf(columns);
    const rows = new Map<string, RowImage>();
    const toSite = (values: (string | null)[]): RowImage =>
      row(...columns.map((c) => (c.name === 'extra' ? pick(VALUES) : values[base.findIndex((b) => b.name === c.name)]!)));
    for (const [id, values] of baseRows) rows.set(id, toSite(values));
    sites.push({ name: ['paris', 'london', 'madrid'][s]!, shape, rows });
  }
  // Edits at random sites, the reference included.
  const edits = pick([0, 0, 1, 2, 3, 5, 12, 40]);
  /** The first or last key of a site (by key order), or any. */
  const someKey = (site: Site, where: number): string | null => {
    const keys = [...site.rows.values()].map((r) => rowKey(site.shape, r));
    if (keys.length === 0) return null;
    if (where >= 0.3) return keyId(pick(keys));
    const sign = where < 0.15 ? -1 : 1;
    return keyId(keys.reduce((best, key) => (Math.sign(compareKeys(site.shape, key, best)) === sign ? key : best)));
  };
  for (let e = 0; e < edits; e++) {
    const site = pick(sites);
    const where = random();
    const existing = someKey(site, where);
    const op = pick(['insert', 'delete', 'change', 'change']);
    const nameIndex = (name: string): number => site.shape.relation.columns.findIndex((c) => c.name === name);
    if (op === 'insert' || existing === null) {
      // A new key: sometimes before the first or after the last key anywhere.
      const key = where < 0.1 ? (composite ? ['', '-99999'] : ['-999999']) : where < 0.2 ? (composite ? ['\u{10FFFF}', '99999'] : ['999999']) : newKey();
      if (site.rows.has(keyId(key))) continue;
      const values = site.shape.relation.columns.map((c, i) => (c.key ? key[site.shape.keyColumns.indexOf(i)]! : c.name === 'n' ? String(int(100)) : pick(VALUES)));
      site.rows.set(keyId(key), row(...values));
    } else if (op === 'delete') {
      site.rows.delete(existing);
    } else {
      const old = site.rows.get(existing)!;
      const name = pick(['name', 'note', 'n', ...(site.shape.relation.columns.some((c) => c.name === 'extra') ? ['extra'] : [])]);
      const i = nameIndex(name);
      const choices = name === 'n' ? ['0', '1', '99', '100'] : VALUES;
      const value = choices.find((v) => v !== old.values[i] && random() < 0.5) ?? choices.find((v) => v !== old.values[i])!;
      const values = [...old.values];
      values[i] = value;
      site.rows.set(existing, row(...values));
    }
  }
  return { sites, compared: base.map((c) => c.name), schemaDrift: extraColumnAt >= 0 };
}

function readers(c: Case, make: (site: Site, s: number) => RowsReader): { verifySites: VerifySite[]; made: RowsReader[] } {
  const made = c.sites.map((site, s) => make(site, s));
  return { verifySites: c.sites.map((site, s) => ({ site: site.name, reader: made[s]! })), made };
}

/** A site's rows in key order, sorted once per case for all the readers made of it. */
const ordered = new WeakMap<Site, RowImage[]>();
function rowsOf(site: Site): RowImage[] {
  let rows = ordered.get(site);
  if (rows === undefined) ordered.set(site, (rows = sortRows(site.shape, [...site.rows.values()])));
  return rows;
}

const plain = (site: Site): RowsReader => new RowsReader(site.shape, rowsOf(site), true);
const digesting = (site: Site): RowsReader => new DigestReader(site.shape, rowsOf(site), 'memory-sum', true);

/** A difference without its row digests (checked apart), to compare with the true ones. */
const normalize = (d: Omit<RowDifference, 'digests'>): Omit<RowDifference, 'digests'> => ({ kind: d.kind, site: d.site, key: [...d.key], ...(d.columns ? { columns: [...d.columns] } : {}) });

// ---------------------------------------------------------------------------------------------------------

test('random tables and random edits: exactly the true differences, by digests and row by row (300 cases, fixed seed)', async () => {
  const random = prng(20240611);
  let withDifferences = 0;
  let deep = 0;
  for (let n = 0; n < 300; n++) {
    const c = randomCase(random);
    const expected = trueDifferences(c.sites, c.compared);
    if (expected.length > 0) withDifferences++;
    // Small splits in some cases, so that ranges are split several levels deep with few rows.
    const small: CompareOptions = { fanout: 2 + Math.floor(random() * 4), leafRows: 1 + Math.floor(random() * 20), pageRows: 1 + Math.floor(random() * 50) };
    const variants: [string, (site: Site, s: number) => RowsReader, CompareOptions, 'digest' | 'rows'][] = [
      ['digests, default sizes', digesting, {}, 'digest'],
      ['digests, small splits', digesting, small, 'digest'],
      ['rows', plain, {}, 'rows'],
      ['rows, small pages', plain, small, 'rows'],
      ['mixed readers', (site, s) => (s === 0 ? digesting(site) : plain(site)), {}, 'rows'],
      ['digests of other kinds', (site, s) => new DigestReader(site.shape, rowsOf(site), `kind-${s}`, true), small, 'rows'],
    ];
    for (const [name, make, options, method] of variants) {
      const { verifySites, made } = readers(c, make);
      const result = await compareTable(verifySites, 'public', 't', { ...options, maxKeys: 1_000_000 });
      const context = `case ${n} (${c.sites.map((s) => `${s.name}: ${s.rows.size} rows`).join(', ')}), ${name}`;
      assert.equal(result.error, undefined, `${context}: ${result.error}`);
      assert.equal(result.method, method, context);
      assert.deepEqual(result.keys.map(normalize), expected.map(normalize), context);
      assert.equal(result.differenceCount, expected.length, context);
      assert.equal(result.keysOmitted, 0, context);
      assert.equal(result.identical, expected.length === 0 && !c.schemaDrift, context);
      for (const site of c.sites) assert.equal(result.rows[site.name], site.rows.size, `${context}: rows at ${site.name}`);
      for (const site of c.sites.slice(1)) {
        const mine = expected.filter((d) => d.site === site.name);
        const counts = result.differences[site.name]!;
        assert.equal(counts.missing, mine.filter((d) => d.kind === 'missing').length, context);
        assert.equal(counts.extra, mine.filter((d) => d.kind === 'extra').length, context);
        assert.equal(counts.changed, mine.filter((d) => d.kind === 'changed').length, context);
      }
      // Every row the comparison read was counted, and none was read twice over when compared row by row.
      made.forEach((reader, s) => assert.equal(result.rowsRead[c.sites[s]!.name], reader.calls.rowsRead, context));
      if (method === 'rows') made.forEach((reader, s) => assert.equal(reader.calls.rowsRead, c.sites[s]!.rows.size, `${context}: every row read once`));
      if (name === 'digests, small splits' && made[0]!.calls.keyAt > 4) deep++;
    }
  }
  // The cases are not all trivial: most have differences, and many split ranges several levels deep.
  assert.ok(withDifferences > 200, `${withDifferences} of 300 cases with differences`);
  assert.ok(deep > 50, `${deep} cases split deeply`);
});

test('keys listed are capped, but every difference is counted and heard', async () => {
  const shape = shapeOf([column('id', 'int32', true), column('v', 'string')]);
  const reference = Array.from({ length: 50 }, (_, i) => row(String(i), 'x'));
  const other = reference.filter((_, i) => i % 5 !== 0); // 10 missing
  const heard: RowDifference[] = [];
  const result = await compareTable(
    [
      { site: 'paris', reader: new DigestReader(shape, reference) },
      { site: 'london', reader: new DigestReader(shape, other) },
    ],
    'public',
    't',
    { maxKeys: 3, leafRows: 4, onDifference: (d) => heard.push(d) },
  );
  assert.equal(result.differenceCount, 10);
  assert.deepEqual(result.keys.map((d) => d.key), [['0'], ['5'], ['10']]);
  assert.equal(result.keysOmitted, 7);
  assert.deepEqual(heard.map((d) => d.key[0]), ['0', '5', '10', '15', '20', '25', '30', '35', '40', '45']);
  assert.match(formatComparison(result).join('\n'), /… and 7 more not listed/);
});

test('with digests, rows read grow with the differences, not with the table: 100k rows, 3 differences', async () => {
  const shape = shapeOf([column('id', 'int64', true), column('owner', 'string'), column('balance', 'int32')]);
  const reference = Array.from({ length: 100_000 }, (_, i) => row(String(i * 2), `owner ${i % 97}`, String(i % 1000)));
  const other = reference.filter((r) => r.values[0] !== '77778');
  other.push(row('150001', 'someone', '1')); // a key only london has
  const changed = other.findIndex((r) => r.values[0] === '199998'); // the last key
  other[changed] = row('199998', 'owner x', other[changed]!.values[2]!);
  const paris = new DigestReader(shape, reference);
  const london = new DigestReader(shape, other);
  const result = await compareTable(
    [
      { site: 'paris', reader: paris },
      { site: 'london', reader: london },
    ],
    'public',
    't',
  );
  assert.equal(result.method, 'digest');
  assert.deepEqual(result.keys.map(normalize), [
    { kind: 'missing', site: 'london', key: ['77778'] },
    { kind: 'extra', site: 'london', key: ['150001'] },
    { kind: 'changed', site: 'london', key: ['199998'], columns: ['owner'] },
  ]);
  for (const [site, reader] of [['paris', paris], ['london', london]] as const) {
    assert.ok(reader.calls.rowsRead < 5000, `${site} read ${reader.calls.rowsRead} of 100,000 rows`);
    assert.equal(result.rowsRead[site], reader.calls.rowsRead);
  }
  // The same table without digests reads every row: the test tells the two apart.
  const plainResult = await compareTable(
    [
      { site: 'paris', reader: new RowsReader(shape, reference) },
      { site: 'london', reader: new RowsReader(shape, other) },
    ],
    'public',
    't',
  );
  assert.deepEqual(plainResult.keys, result.keys);
  assert.equal(plainResult.rowsRead.paris, 100_000);
});

test('identical tables: one digest per site, no row read', async () => {
  const shape = shapeOf([column('id', 'int32', true), column('v', 'string')]);
  const rows = Array.from({ length: 10_000 }, (_, i) => row(String(i), i % 3 === 0 ? null : String(i)));
  const paris = new DigestReader(shape, rows);
  const london = new DigestReader(shape, rows);
  const result = await compareTable(
    [
      { site: 'paris', reader: paris },
      { site: 'london', reader: london },
    ],
    'public',
    't',
  );
  assert.equal(result.identical, true);
  assert.deepEqual(result.rows, { paris: 10_000, london: 10_000 });
  assert.deepEqual([paris.calls, london.calls].map((c) => [c.rangeDigest, c.rowsRead]), [[1, 0], [1, 0]]);
  assert.deepEqual(formatComparison(result), ['public.t: 10000 rows, identical']);
});

test('NULL, the empty string and the text NULL are three different values', async () => {
  const shape = shapeOf([column('id', 'int32', true), column('v', 'string')]);
  const values = [null, '', 'NULL'];
  for (const a of values) {
    for (const b of values) {
      for (const make of [plain, digesting]) {
        const result = await compareTable(
          [
            { site: 'paris', reader: make({ name: 'paris', shape, rows: new Map([["1", row("1", a)]]) }) },
            { site: 'london', reader: make({ name: 'london', shape, rows: new Map([["1", row("1", b)]]) }) },
          ],
          'public',
          't',
        );
        assert.equal(result.identical, a === b, `${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
      }
    }
  }
});

test('shapes: a column only some sites have is a schema difference, compared on the common columns; a different key is an error', async () => {
  const reference = shapeOf([column('id', 'int32', true), column('v', 'string'), column('gone', 'string')]);
  const other = shapeOf([column('id', 'int64', true), column('v', 'string'), column('added', 'string')]);
  const result = await compareTable(
    [
      { site: 'paris', reader: new DigestReader(reference, [row('1', 'a', 'x')]) },
      { site: 'london', reader: new DigestReader(other, [row('1', 'a', 'y')]) },
    ],
    'public',
    't',
  );
  assert.equal(result.error, undefined);
  assert.equal(result.differenceCount, 0);
  assert.equal(result.identical, false, 'a schema difference is drift');
  assert.deepEqual(result.comparedColumns, ['id', 'v']);
  assert.deepEqual(result.schemaDifferences, [{ site: 'london', missingColumns: ['gone'], extraColumns: ['added'], otherKinds: [{ column: 'id', reference: 'int32', site: 'int64' }] }]);
  assert.deepEqual(formatComparison(result), [
    'public.t: 1 rows, identical on the columns every site has',
    '  schema at london: lacks column gone; has column added that paris lacks; types differ: id int64 (paris: int32); compared on the columns every site has',
  ]);

  const otherKey = shapeOf([column('id', 'int32'), column('v', 'string', true)]);
  const keyed = await compareTable(
    [
      { site: 'paris', reader: new DigestReader(reference, []) },
      { site: 'london', reader: new DigestReader(otherKey, []) },
    ],
    'public',
    't',
  );
  assert.equal(keyed.identical, false);
  assert.match(keyed.error!, /primary key is \(id\) at paris but \(v\) at london/);

  const stringKey = shapeOf([column('id', 'string', true), column('v', 'string')]);
  const sorted = await compareTable(
    [
      { site: 'paris', reader: new DigestReader(reference, []) },
      { site: 'london', reader: new DigestReader(stringKey, []) },
    ],
    'public',
    't',
  );
  assert.match(sorted.error!, /key column id is int32 at paris but string at london, which sort differently/);

  const missing = await compareTable(
    [
      { site: 'paris', reader: new DigestReader(reference, []) },
      { site: 'london', reader: new DigestReader(shapeOf(reference.relation.columns as ColumnInfo[], 'public', 'other'), []) },
    ],
    'public',
    't',
  );
  assert.equal(missing.method, 'none');
  assert.match(missing.error!, /^at london: SITESYNC_ERR_CONFIG: table public\.t does not exist/);
  assert.match(formatComparison(missing)[0]!, /^public\.t: could not be compared: at london: /);
});

test('a reader that does not hold one point in time is an error, not a wrong answer', async () => {
  const shape = shapeOf([column('id', 'int32', true), column('v', 'string')]);
  const rows = Array.from({ length: 5000 }, (_, i) => row(String(i), 'x'));
  const moving = new DigestReader(shape, rows);
  const first = moving.rangeDigest.bind(moving);
  let calls = 0;
  // The whole table as it was, then its parts after a row was added.
  moving.rangeDigest = async (...args) => (calls++ === 0 ? { rows: 4999, digest: 'then' } : first(...args));
  const result = await compareTable(
    [
      { site: 'paris', reader: new DigestReader(shape, rows) },
      { site: 'london', reader: moving },
    ],
    'public',
    't',
  );
  assert.match(result.error!, /london counts 4999 rows in a range but 5000 in its parts: its table reader does not read one point in time/);
});

test('the report prints keys and column names, never other values', async () => {
  const shape = shapeOf([column('id', 'int32', true), column('region', 'string', true), column('secret', 'string'), column('balance', 'int32')]);
  const r = await compareTable(
    [
      { site: 'paris', reader: new RowsReader(shape, [row('1', 'eu', 'hunter2', '10'), row('2', 'a b', 'swordfish', '5'), row('3', '', 'opensesame', '1')]) },
      { site: 'london', reader: new RowsReader(shape, [row('1', 'eu', 'hunter3', '11'), row('3', '', 'opensesame', '1'), row('4', 'us', 'letmein', '0')]) },
    ],
    'public',
    't',
  );
  const text = formatComparison(r).join('\n');
  assert.equal(
    text,
    [
      'public.t: 3 differences: 1 missing at london, 1 extra at london, 1 changed at london (secret, balance)',
      '  changed at london: (id=1, region=eu) (secret, balance)',
      '  missing at london: (id=2, region="a b")',
      '  extra at london: (id=4, region=us)',
    ].join('\n'),
  );
  // For a repair: digests of the rows as verify saw them (every column compared here), none where absent.
  assert.deepEqual(r.keys.map((d) => d.digests), [
    { reference: rowDigest(row('1', 'eu', 'hunter2', '10'), [0, 1, 2, 3]), site: rowDigest(row('1', 'eu', 'hunter3', '11'), [0, 1, 2, 3]) },
    { reference: rowDigest(row('2', 'a b', 'swordfish', '5'), [0, 1, 2, 3]), site: null },
    { reference: null, site: rowDigest(row('4', 'us', 'letmein', '0'), [0, 1, 2, 3]) },
  ]);
  const json = JSON.stringify(reportJson({ reference: 'paris', sites: ['paris', 'london'], tables: [r] }));
  for (const secret of ['hunter', 'swordfish', 'opensesame', 'letmein', r.keys[0]!.digests.reference!]) {
    assert.ok(!text.includes(secret) && !json.includes(secret), `${secret} printed`);
  }
  const parsed = JSON.parse(json) as { identical: boolean; tables: { keys: unknown[] }[] };
  assert.equal(parsed.identical, false);
  assert.deepEqual(parsed.tables[0]!.keys, [
    { kind: 'changed', site: 'london', key: { id: '1', region: 'eu' }, columns: ['secret', 'balance'] },
    { kind: 'missing', site: 'london', key: { id: '2', region: 'a b' } },
    { kind: 'extra', site: 'london', key: { id: '4', region: 'us' } },
  ]);
});
