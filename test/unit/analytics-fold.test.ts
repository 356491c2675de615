/**
 * The analytics fold (src/apply/analytics-fold.ts), by properties with independent truths:
 * - one source: the folded store equals the source's table, whatever unchanged (TOASTed) values it left out,
 *   key changes and truncations it made, and however the run is cut into batches;
 * - two sites writing the same rows concurrently: every interleaving of their streams (each in its own
 *   order) ends with the same rows under last-writer-wins and site-priority, the row the policy names;
 * - history: every change exactly once, in order, losers marked.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fold, keyOf, keysTouched, type FoldResult, type HistoryEntry, type RowValues, type StoredRow } from '../../src/apply/analytics-fold.ts';
import { DEFAULT_POLICY, type ConflictPolicy } from '../../src/apply/conflict-policy.ts';
import type { Change, RelationInfo, Transaction } from '../../src/events/transaction.ts';
import { parseKind } from '../../src/events/value-kind.ts';
import { below, seededRandom } from '../helpers/seeded-random.ts';

const column = (name: string, kind: string, key = false) => ({ name, kind: parseKind(kind), native: { name: kind, id: 0, modifier: -1 }, key });
const narrow: RelationInfo = { schema: 'public', table: 't', replicaIdentity: 'd', columns: [column('id', 'int32', true), column('a', 'string'), column('big', 'string')] };
/** The same table after `ALTER TABLE … ADD COLUMN c`. */
const wide: RelationInfo = { ...narrow, columns: [...narrow.columns, column('c', 'string')] };

/** A store the way a sink keeps it: final rows replace, a truncation deletes (hard) every row first. */
class MemoryStore {
  readonly rows = new Map<string, StoredRow>();
  readonly history: HistoryEntry[] = [];
  lookup = (table: string, key: string): StoredRow | undefined => (table === 'public.t' ? this.rows.get(key) : undefined);
  write(result: FoldResult, deletes: 'soft' | 'hard'): void {
    this.history.push(...result.history);
    const outcome = result.tables.get('public.t');
    if (!outcome) return;
    if (outcome.truncatedBy) {
      if (deletes === 'hard') this.rows.clear();
      else for (const [k, r] of this.rows) this.rows.set(k, { ...r, deleted: true });
    }
    for (const [k, r] of outcome.rows) {
      if (r.deleted && deletes === 'hard') this.rows.delete(k);
      else this.rows.set(k, { values: r.values, deleted: r.deleted, writer: r.writer });
    }
  }
  /** Live rows as `id=…,a=…,…`, sorted. */
  live(): string[] {
    return [...this.rows.values()].filter((r) => !r.deleted).map((r) => render(r.values)).sort();
  }
}

function render(values: RowValues): string {
  return Object.keys(values)
    .sort()
    .map((k) => `${k}=${values[k]}`)
    .join(',');
}

/** Applies `transactions` in batches cut at random. */
function applyInBatches(store: MemoryStore, transactions: readonly Transaction[], random: () => number, deletes: 'soft' | 'hard', policy: ConflictPolicy = DEFAULT_POLICY): void {
  for (let i = 0; i < transactions.length; ) {
    const n = 1 + below(random, 6);
    const batch = transactions.slice(i, i + n);
    // What a sink looks up first must cover every key the fold asks for.
    const touched = keysTouched(batch);
    const asked = new Set<string>();
    const result = fold(
      batch,
      (table, key) => {
        asked.add(`${table} ${key}`);
        return store.lookup(table, key);
      },
      () => policy,
    );
    for (const entry of asked) {
      const [table, key] = [entry.slice(0, entry.indexOf(' ')), entry.slice(entry.indexOf(' ') + 1)];
      assert.ok(touched.get(table)?.has(key), `the fold looked up ${entry}, which keysTouched did not name`);
    }
    store.write(result, deletes);
    i += n;
  }
}

/** One source writing at random: its own table is the truth. */
function generateSource(seed: number, count: number): { transactions: Transaction[]; table: Map<number, Record<string, string | null>> } {
  const random = seededRandom(seed);
  const table = new Map<number, Record<string, string | null>>();
  const transactions: Transaction[] = [];
  let relation = narrow;
  for (let n = 1; n <= count; n++) {
    const changes: Change[] = [];
    for (let c = 1 + below(random, 4); c > 0; c--) {
      if (relation === narrow && random() < 0.02) relation = wide;
      const image = (row: Record<string, string | null>) => relation.columns.map((col) => row[col.name] ?? null);
      const ids = [...table.keys()];
      const roll = random();
      if (roll < 0.35 || ids.length === 0) {
        const id = below(random, 40);
        if (table.has(id)) continue;
        const row: Record<string, string | null> = { id: String(id), a: `a${n}`, big: `big${n}-${c}` };
        if (relation === wide) row.c = random() < 0.5 ? null : `c${n}`;
        table.set(id, row);
        changes.push({ op: 'insert', relation, newRow: { values: image(row), unchanged: [] } });
      } else if (roll < 0.75) {
        const id = ids[below(random, ids.length)]!;
        const before = table.get(id)!;
        const after: Record<string, string | null> = { ...before, a: `a${n}.${c}` };
        // Now and then the key itself changes (old key sent), and `big` is left out as PostgreSQL leaves out
        // an unchanged TOASTed value.
        const moved = random() < 0.15 ? below(random, 40) : id;
        if (moved !== id && table.has(moved)) continue;
        after.id = String(moved);
        if (relation === wide && random() < 0.3) after.c = `c${n}`;
        const leaveOutBig = random() < 0.5;
        table.delete(id);
        table.set(moved, after);
        const values = image(after);
        const unchanged = leaveOutBig ? [relation.columns.findIndex((col) => col.name === 'big')] : [];
        for (const i of unchanged) values[i] = null;
        changes.push({ op: 'update', relation, oldRow: moved !== id ? { values: relation.columns.map((col) => (col.key ? String(id) : null)), unchanged: [] } : null, newRow: { values, unchanged } });
      } else if (roll < 0.97) {
        const id = ids[below(random, ids.length)]!;
        table.delete(id);
        changes.push({ op: 'delete', relation, oldRow: { values: relation.columns.map((col) => (col.key ? String(id) : null)), unchanged: [] } });
      } else {
        table.clear();
        changes.push({ op: 'truncate', relations: [relation], cascade: false, restartIdentity: false });
      }
    }
    if (changes.length > 0) transactions.push(tx('paris', transactions.length + 1, BigInt(transactions.length + 1) * 1000n, {}, changes));
  }
  return { transactions, table };
}

function tx(site: string, n: number, commitTimeMicros: bigint, seen: Record<string, bigint>, changes: Change[]): Transaction {
  const position = n.toString(16).toUpperCase().padStart(16, '0');
  return { id: `${site}:${position}`, site, position, commitTimeMicros, sourceTxId: String(n), seen, changes };
}

/** The source's table as the store renders it: columns the store has (a column added later is null before). */
function expected(table: Map<number, Record<string, string | null>>, store: MemoryStore): string[] {
  return [...table.values()]
    .map((row) => {
      const stored = store.rows.get(keyOf([row.id!]));
      const withColumns: Record<string, string | null> = {};
      for (const name of Object.keys(stored?.values ?? row)) withColumns[name] = row[name] ?? null;
      return render(withColumns);
    })
    .sort();
}

test('one source: the store equals the source table, in any batching, with unchanged values kept', () => {
  for (let seed = 1; seed <= 60; seed++) {
    const { transactions, table } = generateSource(seed, 120);
    for (const deletes of ['soft', 'hard'] as const) {
      const store = new MemoryStore();
      applyInBatches(store, transactions, seededRandom(seed * 7 + (deletes === 'soft' ? 1 : 2)), deletes);
      assert.deepEqual(store.live(), expected(table, store), `seed ${seed}, ${deletes} deletes`);
      // Nothing the run left out stayed unknown: every current row is complete.
      assert.ok(
        store.history.every((h) => h.unchanged.length === 0),
        `seed ${seed}: an unchanged value was not found`,
      );
      const changes = transactions.flatMap((t) => t.changes.flatMap((c): unknown[] => (c.op === 'truncate' ? [...c.relations] : [c])));
      assert.equal(store.history.length, changes.length, `seed ${seed}: one history entry per change`);
      assert.ok(store.history.every((h) => h.applied), `seed ${seed}: one source never conflicts with itself`);
    }
  }
});

test('history keeps the order of the stream and fills unchanged values from the row before', () => {
  const r = narrow;
  const t1 = tx('paris', 1, 1000n, {}, [{ op: 'insert', relation: r, newRow: { values: ['1', 'x', 'LONG'], unchanged: [] } }]);
  const t2 = tx('paris', 2, 2000n, {}, [
    { op: 'update', relation: r, oldRow: null, newRow: { values: ['1', 'y', null], unchanged: [2] } },
    { op: 'delete', relation: r, oldRow: { values: ['1', null, null], unchanged: [] } },
  ]);
  const result = fold([t1, t2], () => undefined, () => DEFAULT_POLICY);
  assert.deepEqual(
    result.history.map((h) => [h.transaction.position.slice(-1), h.seq, h.op, h.values && render(h.values)]),
    [
      ['1', 0, 'insert', 'a=x,big=LONG,id=1'],
      ['2', 0, 'update', 'a=y,big=LONG,id=1'],
      ['2', 1, 'delete', 'a=null,big=null,id=1'],
    ],
  );
  const row = result.tables.get('public.t')!.rows.get(keyOf(['1']))!;
  assert.equal(row.deleted, true);
  assert.equal(row.values.big, 'LONG', 'a soft-deleted row keeps its last values');
  // A value nobody knows stays listed, not invented.
  const lonely = fold([tx('paris', 3, 3000n, {}, [{ op: 'update', relation: r, oldRow: null, newRow: { values: ['9', 'z', null], unchanged: [2] } }])], (_t, k) => (k === keyOf(['9']) ? { values: { id: '9', a: 'q' }, deleted: false, writer: null } : undefined), () => DEFAULT_POLICY);
  assert.deepEqual(lonely.history[0]!.unchanged, ['big']);
});

/**
 * Two sites update the same rows; each knows of the other's writes what it had applied when it wrote: a
 * causal history on one timeline, where `seen` only grows and never names a write made later.
 */
function concurrentStreams(seed: number): { a: Transaction[]; b: Transaction[]; initial: Transaction } {
  const random = seededRandom(seed);
  const keys = [1, 2, 3, 4];
  const initial = tx('lyon', 1, 1n, {}, keys.map((id) => ({ op: 'insert', relation: narrow, newRow: { values: [String(id), 'init', 'B'], unchanged: [] } }) as Change));
  const streams: Record<string, Transaction[]> = { paris: [], london: [] };
  const seen: Record<string, Record<string, bigint>> = { paris: { lyon: 1n }, london: { lyon: 1n } };
  let time = 10n;
  for (let n = 1; n <= 24; n++) {
    time += BigInt(1 + below(random, 20));
    const site = random() < 0.5 ? 'paris' : 'london';
    const other = site === 'paris' ? 'london' : 'paris';
    // Now and then the site has caught up with the other's writes so far.
    const latest = streams[other]!.at(-1);
    if (latest && random() < 0.4) seen[site]![other] = latest.commitTimeMicros;
    const id = keys[below(random, keys.length)]!;
    const own = streams[site]!;
    own.push(tx(site, own.length + 1, time, { ...seen[site]! }, [{ op: 'update', relation: narrow, oldRow: null, newRow: { values: [String(id), `${site}${own.length + 1}@${time}`, 'B'], unchanged: [] } }]));
  }
  return { a: streams.paris!, b: streams.london!, initial };
}

/** Delivers two streams interleaved at random; with `causal`, a transaction only after what it had seen of the other. */
function deliver(a: readonly Transaction[], b: readonly Transaction[], random: () => number, causal: boolean): Transaction[] {
  const out: Transaction[] = [];
  const next = [0, 0];
  const streams = [a, b];
  const delivered = (site: string): bigint => out.filter((t) => t.site === site).at(-1)?.commitTimeMicros ?? 0n;
  while (next[0]! < a.length || next[1]! < b.length) {
    const ready = [0, 1].filter((s) => {
      const head = streams[s]![next[s]!];
      if (!head) return false;
      if (!causal) return true;
      const other = streams[1 - s]![0]?.site;
      return other === undefined || (head.seen[other] ?? 0n) <= delivered(other);
    });
    const s = ready[below(random, ready.length)]!;
    out.push(streams[s]![next[s]!++]!);
  }
  return out;
}

test('two sites writing the same rows: every arrival order ends with the same rows (last-writer-wins; site-priority in causal order)', () => {
  // Site-priority is only order-free when each site receives a write after the writes it had seen: a
  // write that follows a priority site's write, arriving before it, is taken for concurrent with it by the
  // rule every sink shares (conflict-policy.ts keeps no writer's own context). README, Limits.
  const cases: [ConflictPolicy, boolean][] = [
    [DEFAULT_POLICY, false],
    [{ policy: 'site-priority', priority: ['london'] }, true],
  ];
  for (let seed = 1; seed <= 40; seed++) {
    const { a, b, initial } = concurrentStreams(seed);
    for (const [policy, causal] of cases) {
      const outcomes = new Set<string>();
      for (let order = 0; order < 6; order++) {
        const store = new MemoryStore();
        const random = seededRandom(seed * 100 + order);
        store.write(fold([initial], store.lookup, () => policy), 'hard');
        for (const t of deliver(a, b, random, causal)) store.write(fold([t], store.lookup, () => policy), 'hard');
        outcomes.add(store.live().join(' | '));
        assert.equal(store.history.length, 4 + a.length + b.length);
      }
      assert.equal(outcomes.size, 1, `seed ${seed}, ${policy.policy}: the arrival order changed the outcome: ${[...outcomes].join('\n')}`);
    }
  }
});

test('a concurrent write that loses is history, marked, and the winner stays current', () => {
  const init = tx('lyon', 1, 1n, {}, [{ op: 'insert', relation: narrow, newRow: { values: ['1', 'init', 'B'], unchanged: [] } }]);
  const late = tx('paris', 1, 200n, { lyon: 1n }, [{ op: 'update', relation: narrow, oldRow: null, newRow: { values: ['1', 'paris', 'B'], unchanged: [] } }]);
  const early = tx('london', 1, 100n, { lyon: 1n }, [{ op: 'update', relation: narrow, oldRow: null, newRow: { values: ['1', 'london', 'B'], unchanged: [] } }]);
  const store = new MemoryStore();
  store.write(fold([init], store.lookup, () => DEFAULT_POLICY), 'soft');
  store.write(fold([late], store.lookup, () => DEFAULT_POLICY), 'soft');
  const result = fold([early], store.lookup, () => DEFAULT_POLICY);
  assert.deepEqual(result.conflicts, [{ source: 'london', kind: 'update_origin_differs', table: 'public.t', resolution: 'skip' }]);
  assert.equal(result.history[0]!.applied, false);
  store.write(result, 'soft');
  assert.deepEqual(store.live(), ['a=paris,big=B,id=1']);
  // A change that follows what its site had seen is no conflict.
  const after = tx('london', 2, 300n, { lyon: 1n, paris: 200n }, [{ op: 'update', relation: narrow, oldRow: null, newRow: { values: ['1', 'london2', 'B'], unchanged: [] } }]);
  const followed = fold([after], store.lookup, () => DEFAULT_POLICY);
  assert.deepEqual(followed.conflicts, []);
});

test('a table without a key keeps history only', () => {
  const keyless: RelationInfo = { schema: 'public', table: 'log', replicaIdentity: 'f', columns: [column('line', 'string')] };
  const result = fold([tx('paris', 1, 1n, {}, [{ op: 'insert', relation: keyless, newRow: { values: ['x'], unchanged: [] } }])], () => undefined, () => DEFAULT_POLICY);
  assert.equal(result.tables.size, 0);
  assert.equal(result.history.length, 1);
  assert.equal(keysTouched([tx('paris', 1, 1n, {}, [{ op: 'insert', relation: keyless, newRow: { values: ['x'], unchanged: [] } }])]).size, 0);
});
