/**
 * The DuckDB sink's tables, on a real DuckDB file: soft and hard deletes, truncation, a key change, an unchanged
 * (TOASTed) column kept from the stored row, a column added at the source without a restart, a column whose
 * type changed halting its source with one line, a table without a key kept as history only, a lost conflict
 * kept as history, duplicates left out, parts numbered in order, and the tables a site may not create.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { duckdbConnector } from '../../connectors/duckdb/index.ts';
import { DuckDbSink } from '../../connectors/duckdb/duckdb-sink.ts';
import type { ResolvedConflict } from '../../src/connector.ts';
import type { Change, ColumnInfo, RelationInfo, SeenSites, Transaction } from '../../src/events/transaction.ts';
import { parseKind } from '../../src/events/value-kind.ts';
import { createLogger } from '../../src/observability/logger.ts';

const column = (name: string, kind: string, key = false): ColumnInfo => ({ name, kind: parseKind(kind), native: { name: kind, id: 0, modifier: -1 }, key });
const relation = (table: string, columns: ColumnInfo[], schema = 'app'): RelationInfo => ({ schema, table, replicaIdentity: columns.some((c) => c.key) ? 'd' : 'f', columns });
const ITEMS = relation('items', [column('id', 'int64', true), column('note', 'string'), column('amount', 'decimal(12,2)')]);
const row = (...values: (string | null)[]) => ({ values, unchanged: [] as number[] });

/** Transactions of one source, numbered in commit order. */
function source(site: string, start = 0) {
  let n = start;
  return (changes: Change[], seen: SeenSites = {}, commitTimeMicros?: bigint): Transaction => {
    const position = (++n).toString(16).toUpperCase().padStart(16, '0');
    return { id: `${site}:${position}`, site, position, commitTimeMicros: commitTimeMicros ?? 1_700_000_000_000_000n + BigInt(n) * 1000n, sourceTxId: String(n), seen, changes };
  };
}

function fixture(deletes: 'soft' | 'hard', tables?: readonly string[]) {
  const dir = mkdtempSync(join(tmpdir(), `sitesync-duckdb-${deletes}-`));
  const url = `duckdb://${join(dir, 'site.duckdb')}?deletes=${deletes}`;
  const conflicts: ResolvedConflict[] = [];
  const sink = new DuckDbSink({ site: 'here', url, tables, onConflict: (c) => conflicts.push(c), logger: createLogger('silent') });
  return {
    sink,
    conflicts,
    query: async (sql: string) => (await duckdbConnector.query!(url, sql, { maxRows: 1000 })).rows,
    async cleanup() {
      await sink.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

describe('DuckDB sink, soft deletes', () => {
  const f = fixture('soft');
  const tx = source('remote');
  after(() => f.cleanup());

  test('a delete keeps the row flagged, with its values and the deleting writer; history has each change once', async () => {
    const session = await f.sink.openSession('remote');
    const inserted = tx([
      { op: 'insert', relation: ITEMS, newRow: row('1', 'one', '1.00') },
      { op: 'insert', relation: ITEMS, newRow: row('2', 'two', '2.00') },
    ]);
    const deleted = tx([{ op: 'delete', relation: ITEMS, oldRow: row('1', null, null) }]);
    await session.apply([inserted, deleted]);
    await session.apply([inserted, deleted]); // delivered again: left out
    assert.deepEqual(await f.query('SELECT id, note, amount, _sitesync_deleted, _sitesync_position, _sitesync_transaction FROM app.items ORDER BY id'), [
      ['1', 'one', '1.00', true, deleted.position, deleted.id],
      ['2', 'two', '2.00', false, inserted.position, inserted.id],
    ]);
    assert.deepEqual(await f.query('SELECT id, _sitesync_op, _sitesync_seq, _sitesync_applied, _sitesync_position FROM app.items__history ORDER BY _sitesync_position, _sitesync_seq'), [
      ['1', 'insert', 0, true, inserted.position],
      ['2', 'insert', 1, true, inserted.position],
      ['1', 'delete', 0, true, deleted.position],
    ]);
    // A deleted row counts as not there: inserting its key again is no conflict.
    await session.apply([tx([{ op: 'insert', relation: ITEMS, newRow: row('1', 'again', '3.00') }])]);
    assert.deepEqual(await f.query('SELECT id, note, _sitesync_deleted FROM app.items WHERE id = 1'), [['1', 'again', false]]);
    assert.deepEqual(f.conflicts, []);
    await session.close();
  });

  test('a key change: the old key is deleted (kept, flagged), the new one live; history says which row it was', async () => {
    const session = await f.sink.openSession('remote');
    await session.apply([tx([{ op: 'update', relation: ITEMS, oldRow: row('2', null, null), newRow: row('20', 'twenty', '2.00') }])]);
    assert.deepEqual(await f.query('SELECT id, note, _sitesync_deleted FROM app.items WHERE id IN (2, 20) ORDER BY id'), [
      ['2', 'two', true],
      ['20', 'twenty', false],
    ]);
    assert.deepEqual(await f.query(`SELECT id, _sitesync_before FROM app.items__history WHERE _sitesync_op = 'update'`), [['20', JSON.stringify({ id: '2', note: null, amount: null })]]);
    await session.close();
  });

  test('an unchanged (TOASTed) column is taken from the stored row, in the current state and the history', async () => {
    const session = await f.sink.openSession('remote');
    const long = 'x'.repeat(5000);
    await session.apply([tx([{ op: 'insert', relation: ITEMS, newRow: row('5', long, '5.00') }])]);
    await session.apply([tx([{ op: 'update', relation: ITEMS, oldRow: null, newRow: { values: ['5', null, '6.00'], unchanged: [1] } }])]);
    assert.deepEqual(await f.query('SELECT length(note), amount FROM app.items WHERE id = 5'), [['5000', '6.00']]);
    assert.deepEqual(await f.query(`SELECT length(note), _sitesync_unchanged FROM app.items__history WHERE id = 5 AND _sitesync_op = 'update'`), [['5000', []]]);
    // Of a row nobody has, the value is not known: listed as unchanged, and the change is a conflict kept as history.
    await session.apply([tx([{ op: 'update', relation: ITEMS, oldRow: null, newRow: { values: ['6', null, '6.00'], unchanged: [1] } }])]);
    assert.deepEqual(await f.query(`SELECT note, _sitesync_unchanged, _sitesync_applied FROM app.items__history WHERE id = 6`), [[null, ['note'], false]]);
    assert.deepEqual(await f.query('SELECT count(*) FROM app.items WHERE id = 6'), [['0']]);
    assert.deepEqual(f.conflicts, [{ source: 'remote', kind: 'update_missing', table: 'app.items', resolution: 'skip' }]);
    f.conflicts.length = 0;
    await session.close();
  });

  test('a truncation flags every stored row deleted by its writer; rows written after it in the run stay', async () => {
    const session = await f.sink.openSession('remote');
    const truncated = tx([
      { op: 'truncate', relations: [ITEMS], cascade: false, restartIdentity: false },
      { op: 'insert', relation: ITEMS, newRow: row('7', 'after', '7.00') },
    ]);
    await session.apply([truncated]);
    assert.deepEqual(await f.query('SELECT id, _sitesync_deleted FROM app.items WHERE NOT _sitesync_deleted ORDER BY id'), [['7', false]]);
    // Rows 1, 5 and 20 were live; row 2 was deleted already and keeps its own deleting writer.
    assert.deepEqual(await f.query(`SELECT id FROM app.items WHERE _sitesync_deleted AND _sitesync_transaction = '${truncated.id}' ORDER BY id`), [['1'], ['5'], ['20']]);
    assert.deepEqual(await f.query(`SELECT _sitesync_transaction <> '${truncated.id}' FROM app.items WHERE id = 2`), [[true]]);
    assert.deepEqual(await f.query(`SELECT id, _sitesync_op FROM app.items__history WHERE _sitesync_transaction = '${truncated.id}' ORDER BY _sitesync_seq`), [
      [null, 'truncate'],
      ['7', 'insert'],
    ]);
    await session.close();
  });

  test('a column added at the source is added to both tables, without a restart', async () => {
    const session = await f.sink.openSession('remote');
    const wider = relation('items', [...ITEMS.columns, column('region', 'string')]);
    await session.apply([tx([{ op: 'insert', relation: wider, newRow: row('8', 'eight', '8.00', 'eu') }])]);
    assert.deepEqual(await f.query('SELECT id, region FROM app.items WHERE id IN (7, 8) ORDER BY id'), [
      ['7', null],
      ['8', 'eu'],
    ]);
    assert.deepEqual(await f.query('SELECT region FROM app.items__history WHERE id = 8'), [['eu']]);
    // An older description (without the column) still applies: the column stays, and keeps its value.
    await session.apply([tx([{ op: 'update', relation: ITEMS, oldRow: null, newRow: row('8', 'eight!', '8.00') }])]);
    assert.deepEqual(await f.query('SELECT note, region FROM app.items WHERE id = 8'), [['eight!', 'eu']]);
    await session.close();
  });

  test('a column whose kind changed to another DuckDB type halts its source with one line; nothing is applied', async () => {
    const session = await f.sink.openSession('remote');
    const before = await session.progress();
    const history = await f.query('SELECT count(*) FROM app.items__history');
    const changed = relation('items', [column('id', 'int64', true), column('note', 'int32'), column('amount', 'decimal(12,2)')]);
    await assert.rejects(session.apply([tx([{ op: 'insert', relation: ITEMS, newRow: row('9', 'nine', '9.00') }, { op: 'insert', relation: changed, newRow: row('10', '10', '10.00') }])]), (error: unknown) => {
      assert.equal(f.sink.classify(error), 'schema');
      const message = (error as Error).message;
      assert.match(message, /^column note of app\.items is VARCHAR at DuckDB site here, but site remote now sends it as int32 \(DuckDB INTEGER\); stop sitesync, change the column to INTEGER in both app\.items and its __history table/);
      assert.doesNotMatch(message, /\n/);
      return true;
    });
    assert.equal(await session.progress(), before);
    assert.deepEqual(await f.query('SELECT count(*) FROM app.items__history'), history);
    assert.deepEqual(await f.query('SELECT count(*) FROM app.items WHERE id = 9'), [['0']]);
    // The same column sent as a kind DuckDB holds the same way (an enum is a VARCHAR too) goes in.
    const asEnum = relation('items', [column('id', 'int64', true), column('note', 'enum'), column('amount', 'decimal(12,2)')]);
    await session.apply([tx([{ op: 'insert', relation: asEnum, newRow: row('9', 'ok', '9.00') }])]);
    assert.deepEqual(await f.query('SELECT note FROM app.items WHERE id = 9'), [['ok']]);
    await session.close();
  });

  test('a table without a key has its history only', async () => {
    const session = await f.sink.openSession('remote');
    const log = relation('log', [column('v', 'int32'), column('note', 'string')]);
    await session.apply([tx([{ op: 'insert', relation: log, newRow: row('1', 'a') }, { op: 'update', relation: log, oldRow: row('1', 'a'), newRow: row('1', 'b') }])]);
    assert.deepEqual(await f.query(`SELECT table_name FROM duckdb_tables() WHERE schema_name = 'app' AND table_name LIKE 'log%' ORDER BY 1`), [['log__history']]);
    assert.deepEqual(await f.query('SELECT v, note, _sitesync_op, _sitesync_before FROM app.log__history ORDER BY _sitesync_seq'), [
      [1, 'a', 'insert', null],
      [1, 'b', 'update', JSON.stringify({ v: '1', note: 'a' })],
    ]);
    await session.close();
  });

  test('a concurrent change that loses its conflict is history only, reported once committed', async () => {
    const other = source('other', 100);
    const mine = await f.sink.openSession('remote');
    const theirs = await f.sink.openSession('other');
    await mine.apply([tx([{ op: 'insert', relation: ITEMS, newRow: row('30', 'first', '3.00') }])]);
    await theirs.apply([other([{ op: 'update', relation: ITEMS, oldRow: null, newRow: row('30', 'theirs', '3.00') }], {}, 1_900_000_000_000_000n)]);
    // other had not seen remote's write of row 30: concurrent, and other's is the later commit: it wins.
    assert.deepEqual(f.conflicts, [{ source: 'other', kind: 'update_origin_differs', table: 'app.items', resolution: 'apply' }]);
    f.conflicts.length = 0;
    // remote had not seen other's write, and commits earlier: last writer wins keeps other's.
    await mine.apply([tx([{ op: 'update', relation: ITEMS, oldRow: null, newRow: row('30', 'mine', '3.00') }])]);
    assert.deepEqual(await f.query('SELECT note, _sitesync_site FROM app.items WHERE id = 30'), [['theirs', 'other']]);
    assert.deepEqual(await f.query(`SELECT note, _sitesync_applied FROM app.items__history WHERE id = 30 AND _sitesync_site = 'remote' AND note = 'mine'`), [['mine', false]]);
    assert.deepEqual(f.conflicts, [{ source: 'remote', kind: 'update_origin_differs', table: 'app.items', resolution: 'skip' }]);
    await mine.close();
    await theirs.close();
  });

  test('a large transaction in parts: its history numbered in order across the parts', async () => {
    const session = await f.sink.openSession('remote');
    const whole = tx([]);
    const part = (ids: number[]): Transaction => ({ ...whole, changes: ids.map((id) => ({ op: 'insert', relation: ITEMS, newRow: row(String(id), null, '1.00') }) as Change) });
    await session.applyPart(part([301, 302]), { index: 0, last: false });
    await session.applyPart(part([303]), { index: 1, last: false });
    await session.applyPart(part([304, 305]), { index: 2, last: true });
    assert.deepEqual(await f.query(`SELECT id, _sitesync_seq FROM app.items__history WHERE _sitesync_transaction = '${whole.id}' ORDER BY _sitesync_seq`), [
      ['301', 0],
      ['302', 1],
      ['303', 2],
      ['304', 3],
      ['305', 4],
    ]);
    assert.deepEqual(await f.query('SELECT count(*) FROM sitesync.spilled_parts'), [['0']]);
    await session.close();
  });
});

describe('DuckDB sink, hard deletes', () => {
  const f = fixture('hard', ['app.items', 'app.log']);
  const tx = source('remote');
  after(() => f.cleanup());

  test('deletes, key changes and truncations remove rows; history keeps every change', async () => {
    const session = await f.sink.openSession('remote');
    await session.apply([
      tx([
        { op: 'insert', relation: ITEMS, newRow: row('1', 'one', '1.00') },
        { op: 'insert', relation: ITEMS, newRow: row('2', 'two', '2.00') },
        { op: 'insert', relation: ITEMS, newRow: row('3', 'three', '3.00') },
      ]),
      tx([{ op: 'delete', relation: ITEMS, oldRow: row('1', null, null) }]),
      tx([{ op: 'update', relation: ITEMS, oldRow: row('2', null, null), newRow: row('20', 'twenty', '2.00') }]),
    ]);
    assert.deepEqual(await f.query('SELECT id, note FROM app.items ORDER BY id'), [
      ['3', 'three'],
      ['20', 'twenty'],
    ]);
    await session.apply([tx([{ op: 'truncate', relations: [ITEMS], cascade: false, restartIdentity: false }, { op: 'insert', relation: ITEMS, newRow: row('4', 'four', '4.00') }])]);
    assert.deepEqual(await f.query('SELECT id FROM app.items'), [['4']]);
    assert.deepEqual(await f.query('SELECT _sitesync_op, count(*) FROM app.items__history GROUP BY 1 ORDER BY 1'), [
      ['delete', '1'],
      ['insert', '4'],
      ['truncate', '1'],
      ['update', '1'],
    ]);
    await session.close();
  });

  test('tables the site does not replicate, or in a reserved schema, are not created', async () => {
    const session = await f.sink.openSession('remote');
    const before = await session.progress();
    const elsewhere = relation('secrets', [column('id', 'int64', true)]);
    await assert.rejects(session.apply([tx([{ op: 'insert', relation: elsewhere, newRow: row('1') }])]), (error: unknown) => {
      assert.equal(f.sink.classify(error), 'schema');
      assert.match((error as Error).message, /^table app\.secrets from site remote is not one DuckDB site here replicates, so it is not created there; add it to sites\.here\.tables/);
      return true;
    });
    const own = relation('apply_progress', [column('source', 'string', true)], 'sitesync');
    await assert.rejects(session.apply([tx([{ op: 'insert', relation: own, newRow: row('x') }])]), (error: unknown) => {
      assert.equal(f.sink.classify(error), 'data', 'parked, as an untrusted message');
      assert.match((error as Error).message, /writes into sitesync\.apply_progress, a schema DuckDB site here never writes into/);
      return true;
    });
    assert.equal(await session.progress(), before);
    assert.deepEqual(await f.query(`SELECT count(*) FROM duckdb_tables() WHERE table_name = 'secrets'`), [['0']]);
    assert.equal(f.sink.isReservedSchema('SITESYNC'), true);
    assert.equal(f.sink.isReservedSchema('information_schema'), true);
    assert.equal(f.sink.isReservedSchema('app'), false);
    await session.close();
  });
});

describe('DuckDB sink, one file per process', () => {
  let f: ReturnType<typeof fixture>;
  before(() => {
    f = fixture('soft');
  });
  after(() => f.cleanup());

  test('sessions of several sources share the file, their writes one after the other', async () => {
    const sessions = await Promise.all(['a', 'b', 'c'].map((s) => f.sink.openSession(s)));
    const runs = ['a', 'b', 'c'].map((s) => source(s));
    await Promise.all(
      sessions.map(async (session, i) => {
        for (let j = 0; j < 5; j++) await session.apply([runs[i]!([{ op: 'insert', relation: ITEMS, newRow: row(String(i * 100 + j), 'x', '1.00') }])]);
      }),
    );
    assert.deepEqual(await f.query('SELECT count(*), count(DISTINCT _sitesync_site) FROM app.items'), [['15', '3']]);
    assert.deepEqual(await f.query('SELECT source, position FROM sitesync.apply_progress ORDER BY source'), [
      ['a', '0000000000000005'],
      ['b', '0000000000000005'],
      ['c', '0000000000000005'],
    ]);
    await Promise.all(sessions.map((s) => s.close()));
  });
});

describe('DuckDB sink, group commit', () => {
  let f: ReturnType<typeof fixture>;
  before(() => {
    f = fixture('soft');
  });
  after(() => f.cleanup());

  test('non-durable applies wait in memory and are written with the next durable one, in one transaction', async () => {
    const session = await f.sink.openSession('remote');
    const tx = source('remote');
    await session.apply([tx([{ op: 'insert', relation: ITEMS, newRow: row('1', 'one', '1.00') }])], { durable: false });
    await session.apply([tx([{ op: 'insert', relation: ITEMS, newRow: row('2', 'two', '2.00') }])], { durable: false });
    assert.deepEqual(await f.query('SELECT count(*) FROM sitesync.apply_progress'), [['0']], 'nothing written before a durable apply');
    await session.apply([tx([{ op: 'update', relation: ITEMS, oldRow: null, newRow: row('1', 'uno', '1.00') }])], { durable: true });
    assert.deepEqual(await f.query('SELECT id, note FROM app.items ORDER BY id'), [['1', 'uno'], ['2', 'two']]);
    assert.deepEqual(await f.query('SELECT position FROM sitesync.apply_progress'), [['0000000000000003']]);
    // Anything else the session is asked writes what waits first.
    await session.apply([tx([{ op: 'insert', relation: ITEMS, newRow: row('3', 'three', '3.00') }])], { durable: false });
    assert.equal(await session.progress(), '0000000000000004');
    // Closed before a durable apply, what waited is dropped: it was never acknowledged, the broker sends it again.
    await session.apply([tx([{ op: 'insert', relation: ITEMS, newRow: row('4', 'four', '4.00') }])], { durable: false });
    await session.close();
    const again = await f.sink.openSession('remote');
    assert.equal(await again.progress(), '0000000000000004');
    await again.close();
  });

  test('a combined run the store refuses is transient; the source is then written through, so the refused transaction is found alone', async () => {
    const session = await f.sink.openSession('other');
    const tx = source('other');
    const good = tx([{ op: 'insert', relation: ITEMS, newRow: row('10', 'ten', '1.00') }]);
    // A write into sitesync's own schema: refused as data (parked, as an untrusted message would be).
    const bad = tx([{ op: 'insert', relation: relation('apply_progress', [column('source', 'string', true)], 'sitesync'), newRow: row('x') }]);
    const later = tx([{ op: 'insert', relation: ITEMS, newRow: row('11', 'eleven', '1.00') }]);
    await session.apply([good], { durable: false });
    await assert.rejects(session.apply([bad], { durable: true }), (error: unknown) => {
      assert.equal(f.sink.classify(error), 'transient', 'which of the run was refused is not known: sent again');
      assert.match((error as Error).message, /refused one of 2 transactions from other written together/);
      return true;
    });
    await session.close();
    // The runner's next session, as the broker sends the messages again: one at a time, written through.
    const retry = await f.sink.openSession('other');
    await retry.apply([good], { durable: false });
    assert.equal(await retry.progress(), good.position, 'written through: not held in memory');
    await assert.rejects(retry.apply([bad], { durable: false }), (error: unknown) => f.sink.classify(error) === 'data');
    await retry.skip(bad.position, bad.commitTimeMicros);
    await retry.apply([later], { durable: false });
    await retry.apply([], { durable: true });
    assert.deepEqual(await f.query(`SELECT id FROM app.items WHERE _sitesync_site = 'other' ORDER BY id`), [['10'], ['11']]);
    await retry.close();
  });
});
