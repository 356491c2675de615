/**
 * `sitesync verify`'s algorithm: compare one table across two or more sites, while writes go on, and say
 * exactly which keys differ — missing at a site (present at the reference), extra at a site (absent at the
 * reference), or changed (with the names of the columns that differ). Values are never part of the result:
 * they may be secret.
 *
 * Each site is read through its connector's TableReader, opened with `consistent: true`, so that every read
 * of one site sees one point in time and writes continuing meanwhile cannot make a range look different
 * from one read to the next.
 *
 * Two ways to compare, chosen per table:
 *
 * - **Range digests** (pg_comparator / pt-table-checksum style), when every site's reader computes digests
 *   of the same `digestKind` in its database: the digest of the whole key range at each site; equal rows
 *   and digest everywhere means the range is identical. Otherwise the range is split into about `fanout`
 *   sub-ranges and each is digested again, recursing only into those that differ, until no site holds
 *   more than `leafRows` rows in it; those few rows are then read and compared row by row. Rows read grow
 *   with the number of differences, not with the table.
 * - **Every row**, when the readers' digests are not comparable (different database kinds, or a reader
 *   without digests): each site's rows are streamed in key order, a page at a time, and merged by key.
 *   Memory is bounded by the page size, never by the table.
 *
 * Ranges are half-open intervals (from, to] of the key order; `null` is unbounded (from: before the first
 * key; to: after the last). A range is split at boundary keys b1 < b2 < … < bn taken inside it, into
 * (from, b1], (b1, b2], …, (bn, to]: together exactly the range, so every key of every site — the keys
 * only another site has included — falls in exactly one sub-range, whichever site the boundaries came from.
 * Boundaries are taken (keyAt) from the site that holds the most rows in the range, the reference on a tie,
 * so that each sub-range holds fewer of that site's rows than the range did and the recursion ends even
 * when another site holds many rows the reference lacks.
 *
 * For `--repair` (not here): `TableComparison` holds the listed differing keys, and `onDifference` hears
 * every one of them, uncapped, as it is found, with digests of the rows as verify saw them.
 */
import { compareKeys } from '../capture/key-order.ts';
import { rowKey, type RowKey, type TableReader, type TableShape } from '../capture/table-reader.ts';
import { describeError } from '../errors.ts';
import type { RowImage } from '../events/transaction.ts';
import { formatKind, type ValueKind } from '../events/value-kind.ts';
import { redactSecrets } from '../observability/logger.ts';
import { differingColumns, rowDigest } from './row-digest.ts';

/** One site taking part: its name and its reader (opened consistent). The first listed is the reference. */
export interface VerifySite {
  readonly site: string;
  readonly reader: TableReader;
}

export interface CompareOptions {
  /** Most differing keys listed per table; every difference is counted all the same. Default 100. */
  readonly maxKeys?: number;
  /** How many sub-ranges a differing range is split into. Default 16. */
  readonly fanout?: number;
  /** A differing range is read row by row once no site holds more than this many rows in it. Default 1,000. */
  readonly leafRows?: number;
  /** Rows per read (readChunk) when reading rows. Default 5,000. */
  readonly pageRows?: number;
  /** Hears every difference, in key order, listed or not: the hook for a repair. */
  readonly onDifference?: (difference: RowDifference) => void;
}

export const DEFAULT_MAX_KEYS = 100;
const DEFAULT_FANOUT = 16;
const DEFAULT_LEAF_ROWS = 1000;
const DEFAULT_PAGE_ROWS = 5000;

export type DifferenceKind = 'missing' | 'extra' | 'changed';

/** One key that differs between the reference and one other site. */
export interface RowDifference {
  /** missing: the reference has the row and `site` lacks it; extra: the other way round; changed: both have it, with other values. */
  readonly kind: DifferenceKind;
  readonly site: string;
  /** The key's values (canonical text), in key order: `TableComparison.keyColumns` names them. */
  readonly key: RowKey;
  /** changed: the compared columns whose values differ, in the reference's column order. */
  readonly columns?: readonly string[];
  /**
   * For a repair, which must not write over a row that changed since: the digest (row-digest.ts) of the
   * compared columns of the row at the reference and at `site` as verify read them, null where there is
   * none. Never printed: a digest of a short value can be reversed by guessing.
   */
  readonly digests: { readonly reference: string | null; readonly site: string | null };
}

/** How one site's table differs from the reference's, counted. */
export interface SiteDifferences {
  readonly missing: number;
  readonly extra: number;
  readonly changed: number;
  /** Every column found different in some changed row, in the reference's column order. */
  readonly changedColumns: readonly string[];
}

/** How one site's definition of the table differs from the reference's. */
export interface SchemaDifference {
  readonly site: string;
  /** Columns the reference has and this site lacks: left out of the comparison. */
  readonly missingColumns: readonly string[];
  /** Columns this site has and the reference lacks: left out of the comparison. */
  readonly extraColumns: readonly string[];
  /** Columns both have, of other kinds: still compared, by their canonical text. */
  readonly otherKinds: readonly { readonly column: string; readonly reference: string; readonly site: string }[];
}

/** The result for one table: what `verify` prints, and what a repair would start from. */
export interface TableComparison {
  /** `schema.table`. */
  readonly table: string;
  readonly reference: string;
  readonly sites: readonly string[];
  /** digest: range digests computed in the databases; rows: every row read and compared here; none: not compared (error). */
  readonly method: 'digest' | 'rows' | 'none';
  readonly keyColumns: readonly string[];
  /** The columns compared: the reference's columns that every site has. */
  readonly comparedColumns: readonly string[];
  /** Rows each site holds (at its point in time). */
  readonly rows: Readonly<Record<string, number>>;
  /** Rows read from each site's database into sitesync, the cost of the comparison (the rest stayed in the database). */
  readonly rowsRead: Readonly<Record<string, number>>;
  readonly schemaDifferences: readonly SchemaDifference[];
  /** Per site other than the reference. */
  readonly differences: Readonly<Record<string, SiteDifferences>>;
  /** Every differing key, counted (over every site). */
  readonly differenceCount: number;
  /** The first `maxKeys` differing keys, in key order. */
  readonly keys: readonly RowDifference[];
  /** Differing keys counted but not listed. */
  readonly keysOmitted: number;
  /** Why the table could not be compared (missing at a site, keys that differ, a lost connection), one line. */
  readonly error?: string;
  /** No difference of rows or columns, and no error. */
  readonly identical: boolean;
}

/** Compares `schema.table` at every site; the first is the reference. Never throws for the table's own problems: they are its `error`. */
export async function compareTable(sites: readonly VerifySite[], schema: string, table: string, options: CompareOptions = {}): Promise<TableComparison> {
  if (sites.length < 2) throw new Error('compareTable needs at least two sites');
  const name = `${schema}.${table}`;
  const tally = new Tally(sites.map((s) => s.site), options.maxKeys ?? DEFAULT_MAX_KEYS, options.onDifference);
  let plan: Plan | null = null;
  try {
    plan = await planTable(sites, schema, table);
    if ('error' in plan) return tally.result(name, null, plan.error);
    const comparison = new Comparison(plan, tally, options);
    if (plan.method === 'digest') await comparison.byDigests();
    else await comparison.byRows();
    return tally.result(name, plan);
  } catch (error) {
    return tally.result(name, plan && !('error' in plan) ? plan : null, redactSecrets(describeError(error)));
  }
}

// ---------------------------------------------------------------------------------------------------------
// Shapes: which columns are compared, where each is at each site, and whether the keys agree.

interface ReadyPlan {
  readonly sites: readonly VerifySite[];
  readonly shapes: readonly TableShape[];
  /** Per site, the index in its relation of each compared column. */
  readonly columns: readonly (readonly number[])[];
  readonly comparedColumns: readonly string[];
  readonly keyColumns: readonly string[];
  readonly schemaDifferences: readonly SchemaDifference[];
  readonly method: 'digest' | 'rows';
}

type Plan = ReadyPlan | { readonly error: string; readonly schemaDifferences?: readonly SchemaDifference[] };

async function planTable(sites: readonly VerifySite[], schema: string, table: string): Promise<Plan> {
  const described = await Promise.all(
    sites.map(async ({ site, reader }) => {
      try {
        return { shape: await reader.describe(schema, table) };
      } catch (error) {
        return { error: `at ${site}: ${redactSecrets(describeError(error))}` };
      }
    }),
  );
  const failed = described.flatMap((d) => ('error' in d ? [d.error] : []));
  if (failed.length > 0) return { error: failed.join('; ') };
  const shapes = described.map((d) => (d as { shape: TableShape }).shape);
  const reference = shapes[0]!;
  const names = (shape: TableShape): string[] => shape.relation.columns.map((c) => c.name);
  const keyNames = (shape: TableShape): string[] => shape.keyColumns.map((i) => shape.relation.columns[i]!.name);

  const comparedColumns = names(reference).filter((column) => shapes.every((shape) => names(shape).includes(column)));
  const schemaDifferences: SchemaDifference[] = [];
  for (let s = 1; s < sites.length; s++) {
    const shape = shapes[s]!;
    const missingColumns = names(reference).filter((c) => !names(shape).includes(c));
    const extraColumns = names(shape).filter((c) => !names(reference).includes(c));
    const otherKinds = comparedColumns.flatMap((column) => {
      const a = formatKind(reference.relation.columns.find((c) => c.name === column)!.kind);
      const b = formatKind(shape.relation.columns.find((c) => c.name === column)!.kind);
      return a === b ? [] : [{ column, reference: a, site: b }];
    });
    if (missingColumns.length + extraColumns.length + otherKinds.length > 0) schemaDifferences.push({ site: sites[s]!.site, missingColumns, extraColumns, otherKinds });
  }

  const keyColumns = keyNames(reference);
  for (let s = 1; s < sites.length; s++) {
    const shape = shapes[s]!;
    const theirs = keyNames(shape);
    if (theirs.join('\u0000') !== keyColumns.join('\u0000')) {
      return {
        error: `the primary key is (${keyColumns.join(', ')}) at ${sites[0]!.site} but (${theirs.join(', ')}) at ${sites[s]!.site}: rows cannot be matched; give the table the same primary key at every site`,
        schemaDifferences,
      };
    }
    for (let k = 0; k < keyColumns.length; k++) {
      const a = reference.relation.columns[reference.keyColumns[k]!]!.kind;
      const b = shape.relation.columns[shape.keyColumns[k]!]!.kind;
      if (keyOrderClass(a) !== keyOrderClass(b)) {
        return {
          error: `key column ${keyColumns[k]} is ${formatKind(a)} at ${sites[0]!.site} but ${formatKind(b)} at ${sites[s]!.site}, which sort differently: rows cannot be matched; give it the same type at every site`,
          schemaDifferences,
        };
      }
    }
  }

  const columns = shapes.map((shape) => comparedColumns.map((column) => shape.relation.columns.findIndex((c) => c.name === column)));
  const digestKinds = new Set(sites.map((s) => s.reader.digestKind));
  const digests = digestKinds.size === 1 && sites.every((s) => s.reader.digestKind !== undefined && s.reader.rangeDigest && s.reader.keyAt);
  return { sites, shapes, columns, comparedColumns, keyColumns, schemaDifferences, method: digests ? 'digest' : 'rows' };
}

/**
 * Which comparator of key-order.ts sorts a key column of this kind. Key columns of two sites must share
 * one, so that one merge orders both sites' keys alike: integers of any width do, and the kinds compared
 * by their UTF-8 bytes do (a uuid at one site and the same text as a string at another); an integer and a
 * decimal do not, since a decimal's text need not read as an integer.
 */
function keyOrderClass(kind: ValueKind): string {
  switch (kind.kind) {
    case 'int16':
    case 'int32':
    case 'int64':
      return 'integer';
    case 'float32':
    case 'float64':
      return 'float';
    case 'date':
    case 'timestamp':
    case 'timestamptz':
      return 'date and time';
    case 'uuid':
    case 'bytes':
    case 'string':
    case 'enum':
    case 'json':
    case 'interval':
    case 'other':
      return 'UTF-8 bytes';
    default:
      return kind.kind;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Counting and listing differences.

class Tally {
  private readonly counts = new Map<string, { missing: number; extra: number; changed: number; columns: Set<string> }>();
  private readonly listed: RowDifference[] = [];
  private total = 0;
  readonly rows: Record<string, number> = {};
  readonly rowsRead: Record<string, number> = {};

  constructor(
    private readonly sites: readonly string[],
    private readonly maxKeys: number,
    private readonly onDifference: ((difference: RowDifference) => void) | undefined,
  ) {
    for (const site of sites) {
      this.rowsRead[site] = 0;
      if (site !== sites[0]) this.counts.set(site, { missing: 0, extra: 0, changed: 0, columns: new Set() });
    }
  }

  add(difference: RowDifference): void {
    const count = this.counts.get(difference.site)!;
    count[difference.kind]++;
    for (const column of difference.columns ?? []) count.columns.add(column);
    this.total++;
    if (this.listed.length < this.maxKeys) this.listed.push(difference);
    this.onDifference?.(difference);
  }

  result(table: string, plan: ReadyPlan | null, error?: string): TableComparison {
    const order = plan?.comparedColumns ?? [];
    const differences: Record<string, SiteDifferences> = {};
    for (const [site, c] of this.counts) {
      differences[site] = { missing: c.missing, extra: c.extra, changed: c.changed, changedColumns: order.filter((column) => c.columns.has(column)) };
    }
    const schemaDifferences = plan?.schemaDifferences ?? [];
    const schemaDrift = schemaDifferences.some((d) => d.missingColumns.length + d.extraColumns.length > 0);
    return {
      table,
      reference: this.sites[0]!,
      sites: this.sites,
      method: plan && error === undefined ? plan.method : 'none',
      keyColumns: plan?.keyColumns ?? [],
      comparedColumns: order,
      rows: { ...this.rows },
      rowsRead: { ...this.rowsRead },
      schemaDifferences,
      differences,
      differenceCount: this.total,
      keys: [...this.listed],
      keysOmitted: this.total - this.listed.length,
      ...(error === undefined ? {} : { error }),
      identical: error === undefined && this.total === 0 && !schemaDrift,
    };
  }
}

// ---------------------------------------------------------------------------------------------------------
// The comparison proper.

interface RangeDigest {
  readonly rows: number;
  readonly digest: string;
}

class Comparison {
  private readonly fanout: number;
  private readonly leafRows: number;
  private readonly pageRows: number;
  private readonly reference: TableShape;

  constructor(
    private readonly plan: ReadyPlan,
    private readonly tally: Tally,
    options: CompareOptions,
  ) {
    this.fanout = Math.max(2, options.fanout ?? DEFAULT_FANOUT);
    this.leafRows = Math.max(1, options.leafRows ?? DEFAULT_LEAF_ROWS);
    this.pageRows = Math.max(1, options.pageRows ?? DEFAULT_PAGE_ROWS);
    this.reference = plan.shapes[0]!;
  }

  /** Every site's rows streamed in key order and merged: for readers whose digests cannot be compared. */
  async byRows(): Promise<void> {
    const counted = await this.mergeRange(null, null, null);
    this.plan.sites.forEach(({ site }, s) => (this.tally.rows[site] = counted[s]!));
  }

  /** Range digests, recursing into the ranges that differ. */
  async byDigests(): Promise<void> {
    const whole = await this.digestRanges([{ from: null, to: null }]);
    this.plan.sites.forEach(({ site }, s) => (this.tally.rows[site] = whole[s]![0]!.rows));
    await this.compareRange(null, null, whole.map((d) => d[0]!));
  }

  /** The range (from, to], whose digest at each site is `digests[site]`. */
  private async compareRange(from: RowKey | null, to: RowKey | null, digests: readonly RangeDigest[]): Promise<void> {
    const reference = digests[0]!;
    if (digests.every((d) => d.rows === reference.rows && d.digest === reference.digest)) return;
    const most = Math.max(...digests.map((d) => d.rows));
    if (most <= this.leafRows) {
      await this.mergeRange(from, to, digests.map((d) => d.rows));
      return;
    }
    // Boundaries from the site holding the most rows here (the reference on a tie), each `step` rows
    // after the previous one: every sub-range then holds fewer of its rows than this range does.
    const splitter = digests.findIndex((d) => d.rows === most);
    const { reader } = this.plan.sites[splitter]!;
    const shape = this.plan.shapes[splitter]!;
    const step = Math.ceil(most / this.fanout);
    const bounds: RowKey[] = [];
    let after = from;
    while (bounds.length < this.fanout - 1) {
      const key = await reader.keyAt!(shape, after, to, step - 1);
      if (key === null || (to !== null && compareKeys(shape, key, to) >= 0)) break;
      bounds.push(key);
      after = key;
    }
    if (bounds.length === 0) throw new Error(`${this.plan.sites[splitter]!.site} counts ${most} rows in a range but finds no key in it: its table reader does not read one point in time`);
    const ranges = [...bounds, to].map((end, i) => ({ from: i === 0 ? from : bounds[i - 1]!, to: end }));
    const children = await this.digestRanges(ranges);
    // The sub-ranges together are the range: their rows must add up at every site.
    children.forEach((perRange, s) => {
      const sum = perRange.reduce((n, d) => n + d.rows, 0);
      if (sum !== digests[s]!.rows) throw new Error(`${this.plan.sites[s]!.site} counts ${digests[s]!.rows} rows in a range but ${sum} in its parts: its table reader does not read one point in time`);
    });
    for (let r = 0; r < ranges.length; r++) {
      await this.compareRange(ranges[r]!.from, ranges[r]!.to, children.map((perRange) => perRange[r]!));
    }
  }

  /** The digest of each range at each site: [site][range]. One site's ranges one after the other, the sites at once. */
  private digestRanges(ranges: readonly { from: RowKey | null; to: RowKey | null }[]): Promise<RangeDigest[][]> {
    const columns = this.plan.comparedColumns;
    return Promise.all(
      this.plan.sites.map(async ({ reader }, s) => {
        const out: RangeDigest[] = [];
        for (const range of ranges) out.push(await reader.rangeDigest!(this.plan.shapes[s]!, columns, range.from, range.to));
        return out;
      }),
    );
  }

  /**
   * Reads the rows of (from, to] at every site in key order and compares them by key. `expected`: how many
   * rows each site holds there (known from its digest), so that no read goes past them; null: unknown.
   * Returns the rows read at each site.
   */
  private async mergeRange(from: RowKey | null, to: RowKey | null, expected: readonly number[] | null): Promise<number[]> {
    const { sites, shapes, columns } = this.plan;
    const streams = sites.map(({ reader }, s) => new RangeRows(reader, shapes[s]!, from, to, expected?.[s] ?? null, this.pageRows, (n) => (this.tally.rowsRead[sites[s]!.site]! += n)));
    const counted = sites.map(() => 0);
    const heads: (RowImage | null)[] = sites.map(() => null);
    const keys: (RowKey | null)[] = sites.map(() => null);
    const here: boolean[] = sites.map(() => true);
    for (;;) {
      // The next row of each site that moved on (waiting only where a page must be read first).
      for (let s = 0; s < sites.length; s++) {
        if (!here[s]) continue;
        let row = streams[s]!.peek();
        if (row === undefined) row = await streams[s]!.fill();
        heads[s] = row;
        keys[s] = row === null ? null : rowKey(shapes[s]!, row);
      }
      // The least key among the sites' next rows, and which sites have it. Where every site is at the same
      // key text, the usual case, that is the key (a text has one value); otherwise the key order decides.
      let least: RowKey | null = keys[0] ?? null;
      if (least === null || !keys.every((key) => key !== null && sameText(key, least!))) {
        least = null;
        for (const key of keys) if (key !== null && (least === null || compareKeys(this.reference, key, least) < 0)) least = key;
        if (least === null) break;
        for (let s = 0; s < sites.length; s++) here[s] = keys[s] !== null && compareKeys(this.reference, keys[s]!, least) === 0;
      } else here.fill(true);
      // Rows are compared value by value (their canonical texts, NULL apart from every text): what equal
      // digests would say, without hashing every row. Digests are taken of the rows that differ only.
      const referenceRow = here[0] ? heads[0]! : null;
      for (let s = 1; s < sites.length; s++) {
        const site = sites[s]!.site;
        const row = here[s] ? heads[s]! : null;
        let kind: DifferenceKind | null = null;
        let differing: string[] | undefined;
        if (referenceRow && !row) kind = 'missing';
        else if (!referenceRow && row) kind = 'extra';
        else if (referenceRow && row) {
          const columnsDiffering = differingColumns(referenceRow, columns[0]!, row, columns[s]!);
          if (columnsDiffering.length > 0) {
            kind = 'changed';
            differing = columnsDiffering.map((c) => this.plan.comparedColumns[c]!);
          }
        }
        if (kind === null) continue;
        const digests = { reference: referenceRow && rowDigest(referenceRow, columns[0]!), site: row && rowDigest(row, columns[s]!) };
        this.tally.add({ kind, site, key: least, ...(differing ? { columns: differing } : {}), digests });
      }
      for (let s = 0; s < sites.length; s++) {
        if (!here[s]) continue;
        counted[s]!++;
        streams[s]!.take();
      }
    }
    return counted;
  }
}

function sameText(a: RowKey, b: RowKey): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return a.length === b.length;
}

/**
 * One site's rows of (from, to], in key order, read a page at a time with the next page asked for while
 * this one is compared. At most two pages are held.
 */
class RangeRows {
  private page: RowImage[] = [];
  private index = 0;
  private next: Promise<{ readonly rows: RowImage[]; readonly limit: number }> | null;
  /** Rows handed out so far, and whether the range is known to hold no more. */
  private seen = 0;
  private done = false;

  constructor(
    private readonly reader: TableReader,
    private readonly shape: TableShape,
    from: RowKey | null,
    private readonly to: RowKey | null,
    private readonly expected: number | null,
    private readonly pageRows: number,
    private readonly onRead: (rows: number) => void,
  ) {
    this.next = null;
    if (expected === 0) this.done = true;
    else this.prefetch(from);
  }

  private limit(): number {
    return this.expected === null ? this.pageRows : Math.max(1, Math.min(this.pageRows, this.expected - this.seen));
  }

  private async read(after: RowKey | null): Promise<{ rows: RowImage[]; limit: number }> {
    const limit = this.limit();
    const rows = await this.reader.readChunk(this.shape, after, limit);
    this.onRead(rows.length);
    return { rows, limit };
  }

  /** Starts reading the next page; a failure surfaces where it is awaited (peek), never as an unhandled rejection. */
  private prefetch(after: RowKey | null): void {
    const next = this.read(after);
    next.catch(() => undefined);
    this.next = next;
  }

  /** The next row of the range; null past its end; undefined when the next page must be read first (fill). */
  peek(): RowImage | null | undefined {
    if (this.index < this.page.length) return this.page[this.index]!;
    return this.next === null ? null : undefined;
  }

  /** Waits for the next page, then returns the next row, or null past the end of the range. */
  async fill(): Promise<RowImage | null> {
    while (this.index >= this.page.length) {
      if (this.next === null) return null;
      const { rows, limit: requested } = await this.next;
      this.next = null;
      // A row past `to` ends the range; so does a short page, or as many rows as the digest counted.
      let end = rows.length;
      if (this.to !== null) {
        const past = rows.findIndex((row) => compareKeys(this.shape, rowKey(this.shape, row), this.to!) > 0);
        if (past >= 0) {
          end = past;
          this.done = true;
        }
      }
      if (rows.length < requested) this.done = true;
      if (this.expected !== null && this.seen + end >= this.expected) this.done = true;
      this.page = end === rows.length ? rows : rows.slice(0, end);
      this.index = 0;
      this.seen += this.page.length;
      if (!this.done && this.page.length > 0) this.prefetch(rowKey(this.shape, this.page[this.page.length - 1]!));
    }
    return this.page[this.index]!;
  }

  take(): void {
    this.index++;
  }
}
