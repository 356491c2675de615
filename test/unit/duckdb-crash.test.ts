/**
 * All or nothing across a kill: the DuckDB sink runs in a process of its own, which is SIGKILLed at moments
 * spread over the time one large run takes to apply (while its rows are staged, appended, replaced, committed).
 * After each kill the file opens again, and holds the run's every change with its progress, or none of it;
 * sent again, it is applied exactly once.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { duckdbConnector } from '../../connectors/duckdb/index.ts';
import type { Change, RelationInfo, Transaction } from '../../src/events/transaction.ts';
import { parseKind } from '../../src/events/value-kind.ts';
import { SinkProcess } from '../conformance/harnesses/duckdb.ts';

const ITEMS: RelationInfo = {
  schema: 'app',
  table: 'items',
  replicaIdentity: 'd',
  columns: [
    { name: 'id', kind: parseKind('int64'), native: { name: 'int8', id: 20, modifier: -1 }, key: true },
    { name: 'note', kind: parseKind('string'), native: { name: 'text', id: 25, modifier: -1 }, key: false },
  ],
};
const ROWS = 10_000;

const dir = mkdtempSync(join(tmpdir(), 'sitesync-duckdb-crash-'));
const url = `duckdb://${join(dir, 'site.duckdb')}`;
let sink: SinkProcess | null = null;
after(async () => {
  await sink?.kill();
  rmSync(dir, { recursive: true, force: true });
});

let n = 0;
/** A run that inserts ROWS new rows, updates the previous run's rows, and deletes one of them. */
function run(round: number): Transaction {
  const position = (++n).toString(16).toUpperCase().padStart(16, '0');
  const changes: Change[] = Array.from({ length: ROWS }, (_, i) => ({ op: 'insert', relation: ITEMS, newRow: { values: [String(round * ROWS + i), `round ${round}`], unchanged: [] } }));
  if (round > 0) {
    for (let i = 1; i < 100; i++) changes.push({ op: 'update', relation: ITEMS, oldRow: null, newRow: { values: [String((round - 1) * ROWS + i), `updated in ${round}`], unchanged: [] } });
    changes.push({ op: 'delete', relation: ITEMS, oldRow: { values: [String((round - 1) * ROWS), null], unchanged: [] } });
  }
  return { id: `remote:${position}`, site: 'remote', position, commitTimeMicros: 1_700_000_000_000_000n + BigInt(n), sourceTxId: String(n), seen: {}, changes };
}

const count = async (sql: string): Promise<number> => Number((await duckdbConnector.query!(url, sql, { maxRows: 1 })).rows[0]![0]);

test('a kill at any moment of a run leaves all of it or none of it; sent again, it is applied once', { timeout: 300_000 }, async () => {
  sink = new SinkProcess({ site: 'here', url, sourceKind: 'postgres', tables: null });
  let session = await sink.openSession('remote');
  const started = Date.now();
  await session.apply([run(0)]);
  const duration = Date.now() - started;
  const outcomes: string[] = [];
  for (const [round, fraction] of [0.05, 0.25, 0.5, 0.7, 0.85, 0.95, 1.05].entries()) {
    const tx = run(round + 1);
    const applying = session.apply([tx]).then(
      () => 'committed',
      () => 'killed',
    );
    await new Promise((r) => setTimeout(r, Math.round(duration * fraction)));
    await sink.kill();
    const seen = await applying;
    // Restarted: the file opens (DuckDB replays its log); what it holds of the run, with the progress.
    sink = new SinkProcess({ site: 'here', url, sourceKind: 'postgres', tables: null });
    session = await sink.openSession('remote');
    const progress = await session.progress();
    const history = await count(`SELECT count(*) FROM app.items__history WHERE _sitesync_transaction = '${tx.id}'`);
    const current = await count(`SELECT count(*) FROM app.items WHERE _sitesync_transaction = '${tx.id}'`);
    if (progress === tx.position) {
      assert.equal(history, tx.changes.length, `round ${round + 1}: progress moved, every change is in the history`);
      assert.equal(current, ROWS + 100, `round ${round + 1}: and every row it wrote is current (99 updated, one flagged deleted)`);
      outcomes.push('all');
    } else {
      assert.equal(seen, 'killed', 'a run that returned was committed');
      assert.equal(history, 0, `round ${round + 1}: progress did not move, no change of it is there`);
      assert.equal(current, 0);
      outcomes.push('none');
      await session.apply([tx]); // the runner sends it again
      assert.equal(await session.progress(), tx.position);
    }
    await session.apply([tx]); // and once more: a duplicate, left out
    assert.equal(await count(`SELECT count(*) FROM app.items__history WHERE _sitesync_transaction = '${tx.id}'`), tx.changes.length, 'exactly once');
  }
  assert.ok(outcomes.includes('none'), `some kill landed before the commit (${outcomes.join(', ')})`);
  assert.equal(await count('SELECT count(*) FROM app.items WHERE NOT _sitesync_deleted'), ROWS * 8 - 7);
  await session.close();
  await sink.close();
  sink = null;
});
