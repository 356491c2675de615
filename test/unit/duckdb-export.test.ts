/**
 * The periodic Parquet export: with exportDir and exportSeconds in the site's URL, every current-state and
 * history table is written as `schema.table.parquet` / `schema.table__history.parquet`, whole (a temporary
 * name renamed over the last), names from the sources kept inside the directory, sitesync's own tables left out.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { loadDuckDbApi } from '../../connectors/duckdb/duckdb-connection.ts';
import { parquetFileName } from '../../connectors/duckdb/duckdb-export.ts';
import { DuckDbSink } from '../../connectors/duckdb/duckdb-sink.ts';
import type { RelationInfo, Transaction } from '../../src/events/transaction.ts';
import { parseKind } from '../../src/events/value-kind.ts';
import { createLogger } from '../../src/observability/logger.ts';

const dir = mkdtempSync(join(tmpdir(), 'sitesync-duckdb-export-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const relation = (table: string): RelationInfo => ({
  schema: 'app',
  table,
  replicaIdentity: 'd',
  columns: [
    { name: 'id', kind: parseKind('int64'), native: { name: 'int8', id: 20, modifier: -1 }, key: true },
    { name: 'at', kind: parseKind('timestamptz'), native: { name: 'timestamptz', id: 1184, modifier: -1 }, key: false },
  ],
});

async function waitFor(what: string, check: () => Promise<boolean> | boolean, ms = 15_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('every table is exported to Parquet on its period, whole, and reads back', async () => {
  const out = join(dir, 'out');
  const sink = new DuckDbSink({ site: 'here', url: `duckdb://${join(dir, 'site.duckdb')}?exportDir=${encodeURIComponent(out)}&exportSeconds=1`, logger: createLogger('silent') });
  try {
    const session = await sink.openSession('remote');
    const tx = (n: number, table: string, ids: number[]): Transaction => {
      const position = n.toString(16).toUpperCase().padStart(16, '0');
      return {
        id: `remote:${position}`,
        site: 'remote',
        position,
        commitTimeMicros: 1_700_000_000_000_000n,
        sourceTxId: String(n),
        seen: {},
        changes: ids.map((id) => ({ op: 'insert', relation: relation(table), newRow: { values: [String(id), '2024-02-29 13:45:10.5+00'], unchanged: [] } })),
      };
    };
    await session.apply([tx(1, 'orders', [1, 2, 3]), tx(2, '../escape/x', [9])]);
    const expected = ['app.orders.parquet', 'app.orders__history.parquet', parquetFileName('app', '../escape/x'), parquetFileName('app', '../escape/x__history')];
    assert.equal(expected[2], 'app.%2E.%2Fescape%2Fx.parquet', 'a name from the source stays one file inside the directory');
    await waitFor('the export', () => expected.every((f) => existsSync(join(out, f))));
    await session.apply([tx(3, 'orders', [4])]);
    const api = await loadDuckDbApi();
    const instance = await api.DuckDBInstance.create(':memory:');
    const connection = await instance.connect();
    try {
      const count = async (file: string): Promise<bigint> => (await connection.runAndReadAll(`SELECT count(*) FROM read_parquet('${join(out, file)}')`)).getRows()[0]![0] as bigint;
      // The next round sees the fourth order.
      await waitFor('the next round', async () => (await count('app.orders.parquet')) === 4n);
      assert.equal(await count('app.orders__history.parquet'), 4n);
      assert.equal(await count(expected[2]!), 1n);
      const columns = (await connection.runAndReadAll(`SELECT name, type FROM parquet_schema('${join(out, 'app.orders.parquet')}') WHERE name IN ('id', 'at', '_sitesync_deleted')`)).getRows();
      assert.deepEqual(columns.map((c) => c[0]).sort(), ['_sitesync_deleted', 'at', 'id']);
    } finally {
      connection.closeSync();
      instance.closeSync();
    }
    assert.deepEqual(
      readdirSync(out).filter((f) => f.startsWith('.') || f.includes('sitesync')),
      [],
      'no temporary file left, and sitesync\'s own tables are not exported',
    );
    const allowed = new Set(['out', 'site.duckdb', 'site.duckdb.sock', 'site.duckdb.wal']);
    assert.deepEqual(readdirSync(dir).filter((f) => !allowed.has(f)), [], 'nothing written outside the directory');
    assert.equal(existsSync(join(dir, 'escape')), false);
    await session.close();
  } finally {
    await sink.close();
  }
});
