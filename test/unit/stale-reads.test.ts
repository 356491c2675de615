/**
 * withoutStaleReads (src/apply/apply-scope.ts): which rows of a snapshot sent to every site a target leaves
 * out because it holds them newer already. The failure it prevents, seen in snapshot.test.ts under load: a
 * row london deleted came back at london and madrid from paris's chunk, read before paris applied the delete.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { withoutStaleReads } from '../../src/apply/apply-scope.ts';
import type { Change, ChangeMessage, RelationInfo, Transaction } from '../../src/events/transaction.ts';
import { parseKind } from '../../src/events/value-kind.ts';

const relation: RelationInfo = { schema: 'public', table: 'accounts', replicaIdentity: 'd', columns: [{ name: 'id', kind: parseKind('int32'), native: { name: 'int4', id: 23, modifier: -1 }, key: true }] };
const read = (id: number, writer?: { site: string; commitTimeMicros: bigint }): Change => ({ op: 'read', relation, newRow: { values: [String(id)], unchanged: [] }, ...(writer ? { writer } : {}) });

function chunk(targets: readonly string[] | null, changes: Change[]): ChangeMessage {
  const tx: Transaction = { id: 'paris:0000000000000010', site: 'paris', position: '0000000000000010', commitTimeMicros: 500n, sourceTxId: '9', seen: { london: 300n }, changes, snapshot: { id: 's1', table: 'public.accounts', chunk: 0, last: false, targets } };
  return { site: 'paris', sourceKind: 'postgres', previous: null, transactions: [tx], part: null };
}
const ids = (m: ChangeMessage): string[] => m.transactions[0]!.changes.map((c) => (c.op === 'read' ? c.newRow.values[0]! : c.op));

test('a row the target itself wrote last is left out at the target: its own state is newer or the same', () => {
  const m = chunk(null, [read(1, { site: 'london', commitTimeMicros: 200n }), read(2, { site: 'paris', commitTimeMicros: 100n }), read(3)]);
  assert.deepEqual(ids(withoutStaleReads(m, 'london', () => undefined)), ['2', '3']);
});

test("a row a third site wrote is left out once the target applied that site's stream up to the write", () => {
  const m = chunk(null, [read(1, { site: 'london', commitTimeMicros: 200n }), read(2, { site: 'london', commitTimeMicros: 280n })]);
  const applied = (source: string): bigint | undefined => (source === 'london' ? 250n : undefined);
  assert.deepEqual(ids(withoutStaleReads(m, 'madrid', applied)), ['2'], 'the write at 280 is not applied at madrid yet: the read brings it');
  assert.deepEqual(ids(withoutStaleReads(m, 'madrid', () => undefined)), ['1', '2'], 'nothing known of london: every read is written');
});

test("the source's own rows, rows of unknown writer, and snapshots addressed to chosen sites are kept whole", () => {
  const m = chunk(null, [read(1, { site: 'paris', commitTimeMicros: 100n }), read(2)]);
  assert.equal(withoutStaleReads(m, 'london', () => 1_000n), m, 'nothing left out: the same message');
  const addressed = chunk(['london'], [read(1, { site: 'london', commitTimeMicros: 200n })]);
  assert.equal(withoutStaleReads(addressed, 'london', () => 1_000n), addressed, 'a repair replaces what is there');
});
