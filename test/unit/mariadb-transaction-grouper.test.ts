import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { BinlogColumn, BinlogEvent } from '../../connectors/mariadb/binlog-reader.ts';
import { MariaDbType as T } from '../../connectors/mariadb/mariadb-kinds.ts';
import { parseCheckpoint, positionOf } from '../../connectors/mariadb/mariadb-positions.ts';
import { TransactionGrouper, truncatedTable, type GrouperOptions, type TableCatalog } from '../../connectors/mariadb/transaction-grouper.ts';
import type { SourceHandler } from '../../src/capture/source.ts';
import { DecodeError, SitesyncError } from '../../src/errors.ts';
import { comparePositions } from '../../src/events/position.ts';
import { changeBytes, type Change, type SeenSites, type Transaction, type TransactionPart } from '../../src/events/transaction.ts';
import { formatKind } from '../../src/events/value-kind.ts';

type Event =
  | { kind: 'transaction'; tx: Transaction; part: TransactionPart | null; checkpoint: string | null }
  | { kind: 'skipped'; position: string; checkpoint: string; reason: 'relayed' | 'empty'; seen: SeenSites }
  | { kind: 'idle'; checkpoint: string; seen: SeenSites };

class Recorder implements SourceHandler {
  readonly events: Event[] = [];
  transaction(tx: Transaction, part: TransactionPart | null, checkpoint: string | null): void {
    // copy the changes: the grouper must not change what it already handed out
    this.events.push({ kind: 'transaction', tx: { ...tx, changes: [...tx.changes] }, part, checkpoint });
  }
  skipped(position: string, checkpoint: string, reason: 'relayed' | 'empty', seen: SeenSites): void {
    this.events.push({ kind: 'skipped', position, checkpoint, reason, seen });
  }
  idle(checkpoint: string, seen: SeenSites): void {
    this.events.push({ kind: 'idle', checkpoint, seen });
  }
  get transactions(): Extract<Event, { kind: 'transaction' }>[] {
    return this.events.filter((e): e is Extract<Event, { kind: 'transaction' }> => e.kind === 'transaction');
  }
}

const SITE = 'paris';
const FILE = 'mysql-bin.000007';
const SECONDS = 1_704_164_645;

const col = (name: string, typeCode: number, columnType: string, extra: Partial<BinlogColumn> = {}): BinlogColumn => ({
  name,
  typeCode,
  metadata: {},
  unsigned: typeCode === T.LONG || typeCode === T.LONGLONG ? false : null,
  charset: typeCode === T.VARCHAR ? 'utf8mb4' : null,
  columnType,
  members: null,
  ...extra,
});

const ITEMS_COLUMNS = [col('id', T.LONG, 'int'), col('name', T.VARCHAR, 'varchar(40)', { metadata: { max_length: 160 } }), col('price', T.NEWDECIMAL, 'decimal(12,2)', { metadata: { precision: 12, decimals: 2 } })];
const LOG_COLUMNS = [col('at', T.DATETIME2, 'datetime(6)', { metadata: { decimals: 6 } }), col('msg', T.VARCHAR, 'varchar(40)', { metadata: { max_length: 160 } })];
const PROGRESS_COLUMNS = [
  col('source', T.VARCHAR, 'varchar(40)', { metadata: { max_length: 160 } }),
  col('source_kind', T.VARCHAR, 'varchar(20)', { metadata: { max_length: 80 } }),
  col('position', T.VARCHAR, 'varchar(64)', { metadata: { max_length: 256 } }),
  col('commit_time_micros', T.LONGLONG, 'bigint'),
];

/** Writes binlog events the way MariaDB lays them out: each event after the previous one. */
class Binlog {
  offset = 256;
  constructor(public file = FILE) {}
  private at(size: number): number {
    this.offset += size;
    return this.offset;
  }
  rotate(file: string): BinlogEvent {
    this.file = file;
    this.offset = 4;
    return { type: 'rotate', file, offset: 4 };
  }
  gtid(seq: number, extra: Partial<Extract<BinlogEvent, { type: 'gtid' }>> = {}): BinlogEvent {
    return { type: 'gtid', gtid: `0-1-${seq}`, standalone: false, transactional: true, xa: null, end: this.at(42), timestamp: SECONDS + seq, ...extra };
  }
  items(tableId = 21): BinlogEvent {
    return { type: 'tablemap', tableId, database: 'app', table: 'items', columns: ITEMS_COLUMNS, primaryKey: [0], end: this.at(60) };
  }
  log(tableId = 22): BinlogEvent {
    return { type: 'tablemap', tableId, database: 'app', table: 'log', columns: LOG_COLUMNS, primaryKey: [], end: this.at(50) };
  }
  table(tableId: number, database: string, table: string, columns = ITEMS_COLUMNS, primaryKey: number[] | null = [0]): BinlogEvent {
    return { type: 'tablemap', tableId, database, table, columns, primaryKey, end: this.at(50) };
  }
  progress(tableId = 30): BinlogEvent {
    return { type: 'tablemap', tableId, database: 'sitesync', table: 'apply_progress', columns: PROGRESS_COLUMNS, primaryKey: [0], end: this.at(70) };
  }
  insert(tableId: number, ...rows: unknown[][]): BinlogEvent {
    return { type: 'rows', op: 'insert', tableId, rows, end: this.at(30 * rows.length) };
  }
  update(tableId: number, ...rows: [unknown[], unknown[]][]): BinlogEvent {
    return { type: 'rows', op: 'update', tableId, rows: rows.map(([before, after]) => ({ before, after })), end: this.at(60 * rows.length) };
  }
  delete(tableId: number, ...rows: unknown[][]): BinlogEvent {
    return { type: 'rows', op: 'delete', tableId, rows, end: this.at(30 * rows.length) };
  }
  xid(): BinlogEvent {
    return { type: 'xid', xid: '77', end: this.at(31), timestamp: SECONDS };
  }
  query(query: string): BinlogEvent {
    return { type: 'query', query, database: 'app', end: this.at(40 + query.length), timestamp: SECONDS };
  }
  get checkpoint(): string {
    return `${this.file}:${this.offset}`;
  }
}

function setup(options: Partial<GrouperOptions> = {}) {
  const recorder = new Recorder();
  const log = new Binlog();
  const grouper = new TransactionGrouper({ site: SITE, maxPartBytes: 1 << 20, tables: null, seen: {}, start: { file: FILE, offset: 256 }, ...options }, recorder);
  const feed = (...events: BinlogEvent[]): void => {
    for (const e of events) grouper.accept(e);
  };
  return { recorder, log, grouper, feed };
}

const values = (change: Change): (string | null)[] => (change.op === 'insert' || change.op === 'update' ? [...change.newRow.values] : change.op === 'delete' ? [...change.oldRow.values] : []);

describe('MariaDB transaction grouper', () => {
  test('whole transactions in commit order: position (end of GTID), id, checkpoint (end of XID), commit time, GTID', () => {
    const { recorder, log, feed } = setup();
    const g1 = log.gtid(1);
    feed(g1, log.items(), log.insert(21, [1, 'pen', '1.50'], [2, 'ink', '10.00']));
    const x1 = log.xid();
    feed(x1);
    const cp1 = log.checkpoint;
    const g2 = log.gtid(2);
    feed(g2, log.items(), log.update(21, [[1, 'pen', '1.50'], [1, 'pen', '1.75']]), log.delete(21, [2, 'ink', '10.00']), log.xid());
    const cp2 = log.checkpoint;
    const [a, b] = recorder.transactions;
    assert.equal(recorder.events.length, 2);
    assert.equal(a!.tx.position, positionOf(FILE, (g1 as { end: number }).end));
    assert.equal(a!.tx.id, `${SITE}:${a!.tx.position}`);
    assert.equal(a!.checkpoint, cp1);
    assert.equal(a!.part, null);
    assert.equal(a!.tx.commitTimeMicros, BigInt(SECONDS + 1) * 1_000_000n);
    assert.equal(a!.tx.sourceTxId, '0-1-1');
    assert.equal(b!.checkpoint, cp2);
    assert.ok(comparePositions(a!.tx.position, b!.tx.position) < 0);
    assert.ok(a!.tx.position < b!.tx.position);
    assert.deepEqual(a!.tx.changes.map(values), [
      ['1', 'pen', '1.50'],
      ['2', 'ink', '10.00'],
    ]);
    assert.deepEqual(
      b!.tx.changes.map((c) => c.op),
      ['update', 'delete'],
    );
  });

  test('relation: database as schema, table, primary key as key columns, kinds and native types', () => {
    const { recorder, log, feed } = setup();
    feed(log.gtid(1), log.items(), log.insert(21, [1, 'pen', '1.50']), log.xid());
    const change = recorder.transactions[0]!.tx.changes[0]!;
    assert.equal(change.op, 'insert');
    if (change.op !== 'insert') return;
    const r = change.relation;
    assert.equal(r.schema, 'app');
    assert.equal(r.table, 'items');
    assert.equal(r.replicaIdentity, 'd');
    assert.deepEqual(
      r.columns.map((c) => [c.name, c.key, formatKind(c.kind), c.native.name, c.native.id, c.native.modifier]),
      [
        ['id', true, 'int32', 'int', T.LONG, -1],
        ['name', false, 'string', 'varchar(40)', T.VARCHAR, 40],
        ['price', false, 'decimal(12,2)', 'decimal(12,2)', T.NEWDECIMAL, 12],
      ],
    );
  });

  test('one table keeps one relation object while its description is the same, even under a new table id', () => {
    const { recorder, log, feed } = setup();
    feed(log.gtid(1), log.items(21), log.insert(21, [1, 'a', '1.00']), log.xid());
    feed(log.gtid(2), log.items(45), log.insert(45, [2, 'b', '2.00']), log.xid());
    const [a, b] = recorder.transactions.map((t) => (t.tx.changes[0] as Extract<Change, { op: 'insert' }>).relation);
    assert.equal(a, b);
  });

  test('updates: no old row unless the key changed, then the key columns only; deletes: the key', () => {
    const { recorder, log, feed } = setup();
    feed(
      log.gtid(1),
      log.items(),
      log.update(21, [[1, 'pen', '1.50'], [1, 'pencil', '1.50']], [[2, 'ink', '3.00'], [3, 'ink', '3.00']]),
      log.delete(21, [3, 'ink', '3.00']),
      log.xid(),
    );
    const [same, moved, gone] = recorder.transactions[0]!.tx.changes;
    assert.equal(same!.op, 'update');
    assert.equal(same!.op === 'update' && same!.oldRow, null);
    assert.deepEqual(moved!.op === 'update' && moved!.oldRow?.values, ['2', null, null]);
    assert.deepEqual(moved!.op === 'update' && moved!.newRow.values, ['3', 'ink', '3.00']);
    assert.deepEqual(gone!.op === 'delete' && gone!.oldRow.values, ['3', null, null]);
  });

  test('a table without primary key: replica identity full, every column a key, whole before images', () => {
    const { recorder, log, feed } = setup();
    feed(
      log.gtid(1),
      log.log(),
      log.insert(22, ['2024-01-02 03:04:05.500000', 'hi']),
      log.update(22, [['2024-01-02 03:04:05.500000', 'hi'], ['2024-01-02 03:04:05.500000', 'ho']]),
      log.delete(22, ['2024-01-02 03:04:05.500000', 'ho']),
      log.xid(),
    );
    const [ins, upd, del] = recorder.transactions[0]!.tx.changes;
    const relation = ins!.op === 'insert' ? ins!.relation : null;
    assert.equal(relation?.replicaIdentity, 'f');
    assert.deepEqual(relation?.columns.map((c) => c.key), [true, true]);
    assert.deepEqual(ins!.op === 'insert' && ins!.newRow.values, ['2024-01-02 03:04:05.5', 'hi']);
    assert.deepEqual(upd!.op === 'update' && upd!.oldRow?.values, ['2024-01-02 03:04:05.5', 'hi']);
    assert.deepEqual(del!.op === 'delete' && del!.oldRow.values, ['2024-01-02 03:04:05.5', 'ho']);
  });

  test('the primary key from the catalog when the binlog does not carry it', () => {
    const catalog: TableCatalog = { columns: new Map(), primaryKey: ['name'], transactional: true };
    const { recorder, log, feed } = setup({ catalog: () => catalog });
    feed(log.gtid(1), log.table(21, 'app', 'items', ITEMS_COLUMNS, null), log.insert(21, [1, 'a', '1.00']), log.xid());
    const change = recorder.transactions[0]!.tx.changes[0]!;
    assert.deepEqual(change.op === 'insert' && change.relation.columns.map((c) => c.key), [false, true, false]);
  });

  test('large transactions go out in parts as they are read, each carrying the id; the checkpoint on the last only', () => {
    const rowBytes = changeBytes({ op: 'insert', relation: null as never, newRow: { values: ['1', 'pen', '1.50'], unchanged: [] } });
    const { recorder, log, feed } = setup({ maxPartBytes: rowBytes * 3 });
    feed(log.gtid(1), log.items());
    for (let i = 0; i < 7; i++) feed(log.insert(21, [i, 'pen', '1.50']));
    assert.equal(recorder.transactions.length, 2, 'two parts out before the commit is read');
    feed(log.xid());
    const parts = recorder.transactions;
    assert.deepEqual(
      parts.map((p) => [p.part?.index, p.part?.last, p.checkpoint === null, p.tx.changes.length]),
      [
        [0, false, true, 3],
        [1, false, true, 3],
        [2, true, false, 1],
      ],
    );
    assert.equal(new Set(parts.map((p) => p.tx.id)).size, 1);
    assert.equal(parts[2]!.checkpoint, log.checkpoint);
    assert.deepEqual(
      parts.flatMap((p) => p.tx.changes.map((c) => values(c)[0])),
      ['0', '1', '2', '3', '4', '5', '6'],
    );
  });

  test('a transaction that writes sitesync.apply_progress is relayed: skipped, and its commit time moves seen', () => {
    const { recorder, log, feed, grouper } = setup({ seen: { london: 5n } });
    feed(log.gtid(1), log.progress(), log.insert(30, ['madrid', 'postgres', '0000000001000000', '1704164645123456']), log.items(), log.insert(21, [1, 'a', '1.00']), log.xid());
    const cp = log.checkpoint;
    assert.deepEqual(recorder.events, [{ kind: 'skipped', position: recorder.events[0]!.kind === 'skipped' ? recorder.events[0]!.position : '', checkpoint: cp, reason: 'relayed', seen: { london: 5n, madrid: 1_704_164_645_123_456n } }]);
    // An update of the row (the sink's ON DUPLICATE KEY UPDATE) reads the after image; an older time never moves it back.
    feed(log.gtid(2), log.progress(), log.update(30, [['london', 'mariadb', 'A', 5], ['london', 'mariadb', 'B', 9_000_000_000_000_000]]), log.xid());
    feed(log.gtid(3), log.progress(), log.update(30, [['madrid', 'postgres', 'A', '1704164645123456'], ['madrid', 'postgres', 'B', '1']]), log.xid());
    assert.deepEqual(grouper.seen, { london: 9_000_000_000_000_000n, madrid: 1_704_164_645_123_456n });
    // A local transaction after them carries the context.
    feed(log.gtid(4), log.items(), log.insert(21, [2, 'b', '2.00']), log.xid());
    const local = recorder.transactions[0]!;
    assert.deepEqual(local.tx.seen, { london: 9_000_000_000_000_000n, madrid: 1_704_164_645_123_456n });
    assert.deepEqual(
      recorder.events.map((e) => e.kind === 'skipped' ? e.reason : e.kind),
      ['relayed', 'relayed', 'relayed', 'transaction'],
    );
  });

  test('the bookkeeping database is the site’s own: its apply_progress marks relayed writes', () => {
    const { recorder, log, feed, grouper } = setup({ bookkeeping: 'sync_paris' });
    assert.equal(grouper.captures('sync_paris', 'anything'), false);
    feed(log.gtid(1), log.table(30, 'sync_paris', 'apply_progress', PROGRESS_COLUMNS), log.insert(30, ['madrid', 'postgres', 'X', 7]), log.items(), log.insert(21, [1, 'a', '1.00']), log.xid());
    feed(log.gtid(2), log.progress(), log.insert(30, ['london', 'postgres', 'X', 8]), log.items(), log.insert(21, [2, 'b', '2.00']), log.xid());
    assert.deepEqual(
      recorder.events.map((e) => (e.kind === 'skipped' ? e.reason : e.kind)),
      ['relayed', 'transaction'],
    );
    assert.deepEqual(grouper.seen, { madrid: 7n });
  });

  test('seen objects are replaced, never changed: what was handed out keeps its context', () => {
    const { recorder, log, feed } = setup();
    feed(log.gtid(1), log.items(), log.insert(21, [1, 'a', '1.00']), log.xid());
    const before = recorder.transactions[0]!.tx.seen;
    feed(log.gtid(2), log.progress(), log.insert(30, ['madrid', 'postgres', 'X', 7]), log.xid());
    assert.deepEqual(before, {});
  });

  test('a relayed write after a part already went out stops the stream (never a loop)', () => {
    const rowBytes = changeBytes({ op: 'insert', relation: null as never, newRow: { values: ['1', 'pen', '1.50'], unchanged: [] } });
    const { log, feed } = setup({ maxPartBytes: rowBytes });
    feed(log.gtid(1), log.items(), log.insert(21, [1, 'pen', '1.50']), log.progress());
    assert.throws(() => feed(log.insert(30, ['madrid', 'postgres', 'X', 7])), (e: unknown) => e instanceof DecodeError && /must write it first/.test(e.message));
  });

  test('nothing left after filtering: skipped as empty, with the checkpoint', () => {
    const { recorder, log, feed } = setup({ tables: ['app.items'] });
    feed(log.gtid(1), log.log(), log.insert(22, ['2024-01-02 03:04:05', 'x']), log.xid());
    const cp1 = log.checkpoint;
    feed(log.gtid(2), log.table(40, 'sitesync', 'capture_progress'), log.insert(40, [1, 'x', '1.00']), log.xid());
    const cp2 = log.checkpoint;
    feed(log.gtid(3), log.xid()); // a transaction with no rows at all
    assert.deepEqual(
      recorder.events.map((e) => (e.kind === 'skipped' ? [e.reason, e.checkpoint] : [e.kind])),
      [
        ['empty', cp1],
        ['empty', cp2],
        ['empty', log.checkpoint],
      ],
    );
  });

  test('filtering: a table list keeps those tables; null keeps every table but MariaDB’s own and sitesync’s', () => {
    const listed = setup({ tables: ['app.items'] });
    assert.equal(listed.grouper.captures('app', 'items'), true);
    assert.equal(listed.grouper.captures('app', 'log'), false);
    assert.equal(listed.grouper.captures('sitesync', 'apply_progress'), false);
    const all = setup();
    for (const schema of ['mysql', 'sys', 'information_schema', 'performance_schema', 'sitesync']) assert.equal(all.grouper.captures(schema, 't'), false);
    assert.equal(all.grouper.captures('shop', 'orders'), true);
    const { recorder, log, feed } = listed;
    feed(log.gtid(1), log.log(), log.insert(22, ['2024-01-02 03:04:05', 'x']), log.items(), log.insert(21, [1, 'a', '1.00']), log.xid());
    assert.deepEqual(recorder.transactions[0]!.tx.changes.map((c) => (c.op === 'insert' ? c.relation.table : c.op)), ['items']);
  });

  test('rotation: positions and checkpoints carry on in the next file, in order', () => {
    const { recorder, log, feed, grouper } = setup();
    feed(log.gtid(1), log.items(), log.insert(21, [1, 'a', '1.00']), log.xid());
    feed(log.rotate('mysql-bin.000008'));
    assert.equal(grouper.checkpoint, 'mysql-bin.000008:4');
    feed(log.gtid(2), log.items(), log.insert(21, [2, 'b', '2.00']), log.xid());
    feed(log.rotate('mysql-bin.000010'), log.gtid(3), log.items(), log.insert(21, [3, 'c', '3.00']), log.xid());
    const txs = recorder.transactions;
    assert.deepEqual(txs.map((t) => parseCheckpoint(t.checkpoint!).file), ['mysql-bin.000007', 'mysql-bin.000008', 'mysql-bin.000010']);
    const positions = txs.map((t) => t.tx.position);
    assert.deepEqual([...positions].sort(), positions);
    assert.ok(positions[0]!.startsWith('00000007') && positions[1]!.startsWith('00000008') && positions[2]!.startsWith('0000000A'));
  });

  test('DDL (a standalone group) is a place to resume from, and tables are described again after it', () => {
    let calls = 0;
    const { recorder, log, feed, grouper } = setup({
      catalog: () => {
        calls++;
        return undefined;
      },
    });
    feed(log.gtid(1), log.items(), log.insert(21, [1, 'a', '1.00']), log.xid());
    feed(log.gtid(2, { standalone: true, transactional: false }));
    assert.equal(grouper.inTransaction, true);
    feed(log.query('ALTER TABLE items ADD COLUMN x int'));
    assert.equal(grouper.inTransaction, false);
    assert.deepEqual(recorder.events.at(-1), { kind: 'idle', checkpoint: log.checkpoint, seen: {} });
    feed(log.gtid(3), log.items(), log.insert(21, [2, 'b', '2.00']), log.xid());
    assert.equal(calls, 2);
  });

  test('TRUNCATE of a captured table is a transaction of one truncate change; of another table, an idle point', () => {
    const { recorder, log, feed } = setup({ tables: ['app.items'] });
    feed(log.gtid(1), log.items(), log.insert(21, [1, 'a', '1.00']), log.xid());
    const relation = (recorder.transactions[0]!.tx.changes[0] as Extract<Change, { op: 'insert' }>).relation;
    const g = log.gtid(2, { standalone: true, transactional: false });
    feed(g, log.query('TRUNCATE TABLE `app`.`items`'));
    const t = recorder.transactions[1]!;
    assert.equal(t.tx.position, positionOf(FILE, (g as { end: number }).end));
    assert.equal(t.tx.sourceTxId, '0-1-2');
    assert.equal(t.checkpoint, log.checkpoint);
    assert.deepEqual(t.tx.changes, [{ op: 'truncate', relations: [relation], cascade: false, restartIdentity: true }]);
    feed(log.gtid(3, { standalone: true }), log.query('TRUNCATE log'));
    assert.equal(recorder.events.at(-1)!.kind, 'idle');
    // A table not seen yet since the stream started: named, without columns.
    const other = setup({ tables: ['shop.orders'] });
    other.feed(other.log.gtid(1, { standalone: true }), { type: 'query', query: 'truncate orders', database: 'shop', end: 999, timestamp: SECONDS });
    assert.deepEqual(other.recorder.transactions[0]!.tx.changes, [{ op: 'truncate', relations: [{ schema: 'shop', table: 'orders', replicaIdentity: 'd', columns: [] }], cascade: false, restartIdentity: true }]);
  });

  test('truncatedTable reads the statement forms', () => {
    assert.deepEqual(truncatedTable('TRUNCATE TABLE app.items', ''), { database: 'app', table: 'items' });
    assert.deepEqual(truncatedTable('truncate items', 'app'), { database: 'app', table: 'items' });
    assert.deepEqual(truncatedTable(' TRUNCATE `my db`.`it``ems`; ', ''), { database: 'my db', table: 'it`ems' });
    assert.equal(truncatedTable('TRUNCATE TABLE a, b', 'x'), null);
    assert.equal(truncatedTable('ALTER TABLE items TRUNCATE PARTITION p0', 'app'), null);
    assert.equal(truncatedTable('CREATE TABLE truncate_me (id int)', 'app'), null);
  });

  test('a group on a non-transactional table ends with a COMMIT query', () => {
    const { recorder, log, feed } = setup();
    feed(log.gtid(1, { transactional: false }), log.items(), log.insert(21, [1, 'a', '1.00']), log.query('COMMIT'));
    assert.equal(recorder.transactions.length, 1);
    assert.equal(recorder.transactions[0]!.checkpoint, log.checkpoint);
  });

  test('a group ended by ROLLBACK keeps the changes of non-transactional tables only', () => {
    const catalog = (database: string, table: string): TableCatalog => ({ columns: new Map(), primaryKey: [], transactional: table !== 'log' });
    const { recorder, log, feed } = setup({ catalog });
    feed(log.gtid(1, { transactional: false }), log.items(), log.insert(21, [1, 'a', '1.00']), log.log(), log.insert(22, ['2024-01-02 03:04:05', 'kept']), log.query('ROLLBACK'));
    assert.deepEqual(recorder.transactions[0]!.tx.changes.map(values), [['2024-01-02 03:04:05', 'kept']]);
    feed(log.gtid(2, { transactional: false }), log.items(), log.insert(21, [1, 'a', '1.00']), log.query('ROLLBACK'));
    assert.deepEqual(recorder.events.at(-1), { kind: 'skipped', position: (recorder.events.at(-1) as { position: string }).position, checkpoint: log.checkpoint, reason: 'empty', seen: {} });
  });

  test('a ROLLBACK after parts went out stops the stream', () => {
    const { log, feed } = setup({ maxPartBytes: 1 });
    feed(log.gtid(1, { transactional: false }), log.items(), log.insert(21, [1, 'a', '1.00']));
    assert.throws(() => feed(log.query('ROLLBACK')), DecodeError);
  });

  test('ROLLBACK TO a savepoint drops the transactional changes made since it, keeps the non-transactional ones', () => {
    // MariaDB writes SAVEPOINT and ROLLBACK TO into the group when the transaction also changed a MyISAM table.
    const catalog = (database: string, table: string): TableCatalog => ({ columns: new Map(), primaryKey: [], transactional: table !== 'log' });
    const { recorder, log, feed } = setup({ catalog });
    feed(log.gtid(1, { transactional: false }), log.items(), log.insert(21, [1, 'kept', '1.00']), log.query('SAVEPOINT `a`'));
    feed(log.insert(21, [2, 'gone', '1.00']), log.log(), log.insert(22, ['2024-01-02 03:04:05', 'kept']));
    feed(log.query('SAVEPOINT `B`'), log.insert(21, [3, 'gone', '1.00']), log.query('ROLLBACK TO `b`'), log.insert(21, [5, 'gone', '1.00']));
    feed(log.query('ROLLBACK TO `a`'), log.items(), log.insert(21, [4, 'kept', '1.00']));
    assert.throws(() => feed(log.query('ROLLBACK TO `b`')), /without its SAVEPOINT/); // gone with the rollback to a, as in MariaDB
    assert.equal(recorder.events.length, 0);
    feed(log.xid());
    assert.deepEqual(recorder.transactions[0]!.tx.changes.map((c) => values(c)[1]), ['kept', 'kept', 'kept']);
  });

  test('ROLLBACK TO behind a part already sent stops the stream', () => {
    const rowBytes = changeBytes({ op: 'insert', relation: null as never, newRow: { values: ['1', 'pen', '1.50'], unchanged: [] } });
    const { log, feed } = setup({ maxPartBytes: rowBytes * 2 });
    feed(log.gtid(1, { transactional: false }), log.items(), log.query('SAVEPOINT `a`'), log.insert(21, [1, 'pen', '1.50']), log.insert(21, [2, 'pen', '1.50']));
    assert.throws(() => feed(log.query('ROLLBACK TO `a`')), DecodeError);
  });

  test('XA transactions are refused with what to do', () => {
    const { log, feed } = setup();
    assert.throws(
      () => feed(log.gtid(1, { xa: 'prepared' })),
      (e: unknown) => e instanceof SitesyncError && e.code === 'SITESYNC_ERR_CONFIG' && /XA/.test(e.message),
    );
  });

  test('heartbeats: an idle checkpoint between transactions, nothing inside one', () => {
    const { recorder, log, feed } = setup();
    feed({ type: 'heartbeat', file: FILE, offset: 900 });
    assert.deepEqual(recorder.events, [{ kind: 'idle', checkpoint: `${FILE}:900`, seen: {} }]);
    log.offset = 900;
    feed(log.gtid(1), log.items(), { type: 'heartbeat', file: FILE, offset: 5000 });
    assert.equal(recorder.events.length, 1);
    feed({ type: 'heartbeat', file: 'mysql-bin.000001', offset: 10 }); // not the file being read: ignored
    assert.equal(recorder.events.length, 1);
  });

  test('events out of place are decode errors', () => {
    const { log, feed } = setup();
    assert.throws(() => feed(log.insert(21, [1, 'a', '1.00'])), DecodeError);
    assert.throws(() => feed(log.xid()), DecodeError);
    feed(log.gtid(1));
    assert.throws(() => feed(log.gtid(2)), DecodeError);
    assert.throws(() => feed(log.insert(99, [1])), /before its table map/);
  });

  test('a server without GTID events: BEGIN opens the transaction', () => {
    const { recorder, log, feed } = setup();
    const begin = log.query('BEGIN');
    feed(begin, log.items(), log.insert(21, [1, 'a', '1.00']), log.xid());
    assert.equal(recorder.transactions[0]!.tx.position, positionOf(FILE, (begin as { end: number }).end));
  });

  test('any stream of transactions: parts rebuild every change in order; positions and checkpoints only grow', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ rows: fc.nat(12), filtered: fc.boolean(), rotate: fc.boolean() }), { maxLength: 30 }),
        fc.integer({ min: 1, max: 400 }),
        (txs, maxPartBytes) => {
          const { recorder, log, feed } = setup({ maxPartBytes, tables: ['app.items'] });
          const expected: string[][] = [];
          let n = 0;
          let file = 7;
          for (const [i, t] of txs.entries()) {
            if (t.rotate) feed(log.rotate(`mysql-bin.${String(++file).padStart(6, '0')}`));
            feed(log.gtid(i + 1), t.filtered ? log.log() : log.items());
            const rows: string[] = [];
            for (let r = 0; r < t.rows; r++) {
              const id = n++;
              feed(t.filtered ? log.insert(22, ['2024-01-02 03:04:05', String(id)]) : log.insert(21, [id, 'x', '1.00']));
              rows.push(String(id));
            }
            feed(log.xid());
            if (!t.filtered && rows.length > 0) expected.push(rows);
          }
          // Reassemble whole transactions from their parts.
          const got: string[][] = [];
          let current: string[] = [];
          let id: string | null = null;
          const checkpoints: string[] = [];
          for (const e of recorder.events) {
            if (e.kind !== 'transaction') {
              checkpoints.push(e.checkpoint);
              continue;
            }
            if (id !== null) assert.equal(e.tx.id, id);
            id = e.tx.id;
            current.push(...e.tx.changes.map((c) => values(c)[0]!));
            if (e.part === null || e.part.last) {
              assert.ok(e.checkpoint !== null);
              checkpoints.push(e.checkpoint);
              got.push(current);
              current = [];
              id = null;
            } else assert.equal(e.checkpoint, null);
          }
          assert.deepEqual(got, expected);
          const positions = recorder.transactions.filter((e) => e.part === null || e.part.last).map((e) => e.tx.position);
          for (let i = 1; i < positions.length; i++) assert.ok(positions[i - 1]! < positions[i]!);
          const coords = checkpoints.map(parseCheckpoint);
          for (let i = 1; i < coords.length; i++) {
            const a = coords[i - 1]!;
            const b = coords[i]!;
            assert.ok(a.file < b.file || (a.file === b.file && a.offset < b.offset), `${JSON.stringify(a)} then ${JSON.stringify(b)}`);
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
