/**
 * The MariaDB sink's statements (connectors/mariadb/mariadb-statements.ts, bookkeeping.ts): the progress
 * row first in every transaction, then the changes in order; identifiers quoted, values bound; batching;
 * rows found by key, by the old key when it changed, or by every column NULL-safe when there is no key.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Bookkeeping, checkBookkeepingDatabase, parkedValues } from '../../connectors/mariadb/bookkeeping.ts';
import { MAX_BATCH_ROWS, planTransaction, qualifiedName, quoteIdent, type ExistingKey, type PlanContext, type Statement } from '../../connectors/mariadb/mariadb-statements.ts';
import type { TargetColumn, TargetTable } from '../../connectors/mariadb/mariadb-bind.ts';
import { MariaDbDataError } from '../../connectors/mariadb/mariadb-errors.ts';
import { SitesyncError } from '../../src/errors.ts';
import type { Change, ColumnInfo, RelationInfo, RowImage, Transaction } from '../../src/events/transaction.ts';
import { parseKind } from '../../src/events/value-kind.ts';

const bookkeeping = new Bookkeeping('sitesync_t');

function col(name: string, kind = 'string', key = false): ColumnInfo {
  return { name, key, kind: parseKind(kind), native: { name: kind === 'string' ? 'text' : kind, id: 0, modifier: -1 } };
}

function targetCol(name: string, dataType = 'varchar', facts: Partial<TargetColumn> = {}): TargetColumn {
  return {
    name,
    dataType,
    columnType: dataType === 'varchar' ? 'varchar(100)' : dataType,
    unsigned: false,
    maxChars: dataType === 'varchar' ? 100 : null,
    maxBytes: dataType === 'varchar' ? 400 : null,
    precision: null,
    scale: null,
    fractionalDigits: null,
    charset: dataType === 'varchar' || dataType === 'text' ? 'utf8mb4' : null,
    generated: false,
    ...facts,
  };
}

function table(schema: string, name: string, columns: TargetColumn[], primaryKey: string[] | null): TargetTable {
  return { schema, table: name, columns: new Map(columns.map((c) => [c.name, c])), primaryKey };
}

const users: RelationInfo = { schema: 'shop', table: 'users', replicaIdentity: 'd', columns: [col('id', 'int32', true), col('name'), col('bio')] };
const usersTable = table('shop', 'users', [targetCol('id', 'int'), targetCol('name'), targetCol('bio', 'text')], ['id']);
const orders: RelationInfo = { schema: 'shop', table: 'orders', replicaIdentity: 'd', columns: [col('id', 'int32', true), col('note')] };
const ordersTable = table('shop', 'orders', [targetCol('id', 'int'), targetCol('note')], ['id']);
const loose: RelationInfo = { schema: 'shop', table: 'loose', replicaIdentity: 'f', columns: [col('a'), col('f', 'float64'), col('n', 'int32')] };
const looseTable = table('shop', 'loose', [targetCol('a'), targetCol('f', 'float'), targetCol('n', 'int')], null);

function context(tables: TargetTable[] = [usersTable, ordersTable, looseTable], existingKey?: ExistingKey): PlanContext {
  return {
    bookkeeping,
    sourceKind: 'postgres',
    target: (schema, name) => {
      const t = tables.find((x) => x.schema === schema && x.table === name);
      if (!t) throw new Error(`no table ${schema}.${name}`);
      return t;
    },
    ...(existingKey ? { existingKey: () => existingKey } : {}),
  };
}

function row(values: (string | null)[], unchanged: number[] = []): RowImage {
  return { values, unchanged };
}

function tx(changes: Change[], position = '00000000000000000000000A'): Transaction {
  return { id: `london:${position}`, site: 'london', position, commitTimeMicros: 1_700_000_000_000_000n, sourceTxId: '1', seen: {}, changes };
}

function plan(changes: Change[], ctx = context(), mode: 'forward' | 'always' = 'forward'): Statement[] {
  return [...planTransaction(tx(changes), 'london', ctx, mode)];
}

const insert = (relation: RelationInfo, values: (string | null)[]): Change => ({ op: 'insert', relation, newRow: row(values) });

describe('identifiers', () => {
  test('are backtick-quoted, backticks doubled', () => {
    assert.equal(quoteIdent('users'), '`users`');
    assert.equal(quoteIdent('a`b'), '`a``b`');
    assert.equal(quoteIdent('`'), '````');
    assert.equal(quoteIdent('my table; DROP'), '`my table; DROP`');
    assert.equal(qualifiedName('shop', 'or`ders'), '`shop`.`or``ders`');
  });
  test('a hostile name never leaves its quotes', () => {
    const evil: RelationInfo = { schema: 'shop`; DROP DATABASE x; --', table: 't`', replicaIdentity: 'd', columns: [col('i`d', 'int32', true)] };
    const t = table(evil.schema, evil.table, [targetCol('i`d', 'int')], ['i`d']);
    const [, s] = plan([insert(evil, ['1'])], context([t]));
    assert.equal(s!.text, 'INSERT INTO `shop``; DROP DATABASE x; --`.`t``` (`i``d`) VALUES (?)');
  });
  test('the bookkeeping database must be a plain identifier', () => {
    assert.equal(checkBookkeepingDatabase('sitesync_2'), 'sitesync_2');
    for (const bad of ['', 'a-b', 'a`b', 'x'.repeat(65), '1abc']) assert.throws(() => new Bookkeeping(bad), SitesyncError, bad);
  });
});

describe('the progress row', () => {
  test('is the first statement of every transaction, whatever its changes', () => {
    const cases: Change[][] = [
      [],
      [insert(users, ['1', 'a', 'b'])],
      [{ op: 'delete', relation: users, oldRow: row(['1', null, null]) }],
      [{ op: 'truncate', relations: [users], cascade: false, restartIdentity: false }],
      [{ op: 'message', prefix: 'x', content: Buffer.from('y') }],
    ];
    for (const changes of cases) {
      const statements = plan(changes);
      assert.equal(statements[0]!.role, 'progress');
      assert.ok(statements[0]!.text.startsWith('INSERT INTO `sitesync_t`.`apply_progress` (source, source_kind, position, commit_time_micros, applied_transactions) VALUES (?, ?, ?, ?, 1) ON DUPLICATE KEY UPDATE'));
      assert.deepEqual(statements[0]!.values, ['london', 'postgres', '00000000000000000000000A', '1700000000000000']);
      assert.ok(statements.slice(1).every((s) => s.role !== 'progress'), 'once');
    }
  });
  test('moves only forward (positions compare by length, then as strings), position assigned last', () => {
    const { text } = bookkeeping.progressUpsert({ source: 's', sourceKind: 'mariadb', position: '01', commitTimeMicros: 1n }, 'forward');
    const newer = '(CHAR_LENGTH(VALUES(position)) > CHAR_LENGTH(position) OR (CHAR_LENGTH(VALUES(position)) = CHAR_LENGTH(position) AND VALUES(position) > position))';
    assert.ok(text.includes(`applied_transactions = applied_transactions + IF(${newer}, 1, 0)`));
    assert.ok(text.endsWith(`position = IF(${newer}, VALUES(position), position)`));
    assert.ok(text.indexOf('commit_time_micros = IF') < text.indexOf('position = IF'));
  });
  test('a retried transaction changes the row in any case (the marker must be written), its position still only forward', () => {
    const statements = plan([insert(users, ['1', 'a', 'b'])], context(), 'always');
    assert.equal(statements[0]!.role, 'progress');
    assert.ok(statements[0]!.text.includes('applied_transactions = applied_transactions + 1,'));
    assert.ok(statements[0]!.text.includes('position = IF((CHAR_LENGTH(VALUES(position)) > CHAR_LENGTH(position)'));
  });
});

describe('inserts', () => {
  test('one INSERT with bound values', () => {
    const [, s, ...rest] = plan([insert(users, ['1', "O'Neil", null])]);
    assert.equal(rest.length, 0);
    assert.equal(s!.role, 'insert');
    assert.equal(s!.text, 'INSERT INTO `shop`.`users` (`id`, `name`, `bio`) VALUES (?, ?, ?)');
    assert.deepEqual(s!.values, ['1', "O'Neil", null]);
    assert.equal(s!.fallback, null, 'an existing key is a data error without a conflict policy');
  });
  test('consecutive inserts into one table go as multi-row INSERTs of power-of-two sizes, in order', () => {
    const changes = Array.from({ length: 7 }, (_, i) => insert(users, [String(i), `n${i}`, null]));
    const [, ...statements] = plan(changes);
    assert.deepEqual(statements.map((s) => s.rows), [4, 2, 1]);
    assert.equal(statements[0]!.text, 'INSERT INTO `shop`.`users` (`id`, `name`, `bio`) VALUES (?, ?, ?), (?, ?, ?), (?, ?, ?), (?, ?, ?)');
    assert.deepEqual(statements.flatMap((s) => s.values).filter((_, i) => i % 3 === 0), ['0', '1', '2', '3', '4', '5', '6']);
  });
  test('a batch holds at most MAX_BATCH_ROWS rows and 65535 parameters', () => {
    const [, ...big] = plan(Array.from({ length: 600 }, (_, i) => insert(users, [String(i), null, null])));
    assert.deepEqual(big.map((s) => s.rows), [512, 64, 16, 8]);
    assert.ok(big.every((s) => s.rows <= MAX_BATCH_ROWS));
    const wide: RelationInfo = { schema: 'shop', table: 'wide', replicaIdentity: 'd', columns: Array.from({ length: 300 }, (_, i) => col(`c${i}`, 'int32', i === 0)) };
    const wideTable = table('shop', 'wide', wide.columns.map((c) => targetCol(c.name, 'int')), ['c0']);
    const [, ...statements] = plan(Array.from({ length: 300 }, (_, r) => insert(wide, wide.columns.map((_, i) => String(r * 1000 + i)))), context([wideTable]));
    assert.ok(statements.every((s) => s.values.length <= 65_535));
    assert.equal(statements.reduce((n, s) => n + s.rows, 0), 300);
  });
  test('a change in between, or another table, ends a batch: order is kept', () => {
    const [, ...s] = plan([
      insert(users, ['1', 'a', null]),
      insert(users, ['2', 'b', null]),
      insert(orders, ['1', 'x']),
      insert(users, ['3', 'c', null]),
      { op: 'delete', relation: users, oldRow: row(['1', null, null]) },
      insert(users, ['4', 'd', null]),
    ]);
    assert.deepEqual(
      s.map((x) => `${x.role} ${x.table} ${x.rows}`),
      ['insert shop.users 2', 'insert shop.orders 1', 'insert shop.users 1', 'delete shop.users 1', 'insert shop.users 1'],
    );
  });
  test('conflicts resolved: a per-row fallback — the row alone, the locking read of the row its key finds, its overwrite', () => {
    const [, s] = plan([insert(users, ['1', 'a', 'b']), insert(users, ['2', 'c', 'd'])], context(undefined, 'resolve'));
    assert.equal(s!.text, 'INSERT INTO `shop`.`users` (`id`, `name`, `bio`) VALUES (?, ?, ?), (?, ?, ?)', 'a plain INSERT first');
    assert.equal(s!.existing, 'resolve');
    assert.deepEqual(s!.fallback!().map((f) => f.insert.text), ['INSERT INTO `shop`.`users` (`id`, `name`, `bio`) VALUES (?, ?, ?)', 'INSERT INTO `shop`.`users` (`id`, `name`, `bio`) VALUES (?, ?, ?)']);
    assert.deepEqual(s!.fallback!().map((f) => f.overwrite.text), [
      'INSERT INTO `shop`.`users` (`id`, `name`, `bio`) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE `name` = VALUES(`name`), `bio` = VALUES(`bio`)',
      'INSERT INTO `shop`.`users` (`id`, `name`, `bio`) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE `name` = VALUES(`name`), `bio` = VALUES(`bio`)',
    ]);
    assert.deepEqual(s!.fallback!().map((f) => f.overwrite.values), [['1', 'a', 'b'], ['2', 'c', 'd']]);
    assert.deepEqual(s!.fallback!().map((f) => [f.lookup.text, f.lookup.values]), [
      ['SELECT 1 FROM `shop`.`users` WHERE `id` = ? LIMIT 1 FOR UPDATE', ['1']],
      ['SELECT 1 FROM `shop`.`users` WHERE `id` = ? LIMIT 1 FOR UPDATE', ['2']],
    ]);
    assert.deepEqual(s!.fallback!().map((f) => f.key?.json), ['{"id":"1"}', '{"id":"2"}']);
    const keyOnly: RelationInfo = { schema: 'shop', table: 'tags', replicaIdentity: 'd', columns: [col('id', 'int32', true)] };
    const [, k] = plan([insert(keyOnly, ['1'])], context([table('shop', 'tags', [targetCol('id', 'int')], ['id'])], 'resolve'));
    assert.equal(k!.fallback!()[0]!.overwrite.text, 'INSERT INTO `shop`.`tags` (`id`) VALUES (?) ON DUPLICATE KEY UPDATE `id` = `id`', 'nothing to overwrite: a no-op');
  });
  test('every insert says the keys it writes (for row_writers); the plain INSERT has no lookup', () => {
    const [, s] = plan([insert(users, ['1', 'a', 'b']), insert(users, ['2', 'c', 'd'])]);
    assert.deepEqual(s!.writes!.map((k) => [k.table, k.json]), [
      ['shop.users', '{"id":"1"}'],
      ['shop.users', '{"id":"2"}'],
    ]);
    assert.equal(s!.target, undefined);
  });
  test('columns the target generates are left out', () => {
    const t = table('shop', 'users', [targetCol('id', 'int'), targetCol('name'), targetCol('bio', 'text', { generated: true })], ['id']);
    const [, s] = plan([insert(users, ['1', 'a', 'b'])], context([t]));
    assert.equal(s!.text, 'INSERT INTO `shop`.`users` (`id`, `name`) VALUES (?, ?)');
    assert.deepEqual(s!.values, ['1', 'a']);
  });
  test('a source column the target lacks is a schema error naming it', () => {
    const t = table('shop', 'users', [targetCol('id', 'int'), targetCol('name')], ['id']);
    assert.throws(
      () => plan([insert(users, ['1', 'a', 'b'])], context([t])),
      (e: unknown) => e instanceof SitesyncError && e.code === 'SITESYNC_ERR_APPLY_SCHEMA' && e.message.includes('column "bio" of table shop.users does not exist at the target'),
    );
  });
  test('a value the target cannot hold stops the plan with a data error', () => {
    const t = table('shop', 'users', [targetCol('id', 'int'), targetCol('name', 'varchar', { maxChars: 2, columnType: 'varchar(2)' }), targetCol('bio', 'text')], ['id']);
    assert.throws(() => plan([insert(users, ['1', 'abc', null])], context([t])), MariaDbDataError);
  });
});

describe('updates', () => {
  test('by the key, every column set but those unchanged', () => {
    const [, s] = plan([{ op: 'update', relation: users, oldRow: null, newRow: row(['7', 'new', null], [2]) }]);
    assert.equal(s!.text, 'UPDATE `shop`.`users` SET `id` = ?, `name` = ? WHERE `id` = ?');
    assert.deepEqual(s!.values, ['7', 'new', '7']);
  });
  test('a changed key: found by the old row key', () => {
    const [, s] = plan([{ op: 'update', relation: users, oldRow: row(['7', null, null]), newRow: row(['8', 'x', 'y']) }]);
    assert.equal(s!.text, 'UPDATE `shop`.`users` SET `id` = ?, `name` = ?, `bio` = ? WHERE `id` = ?');
    assert.deepEqual(s!.values, ['8', 'x', 'y', '7']);
  });
  test('replica identity full with a primary key at the target: found by that key', () => {
    const full: RelationInfo = { ...users, replicaIdentity: 'f', columns: users.columns.map((c) => ({ ...c, key: false })) };
    const [, s] = plan([{ op: 'update', relation: full, oldRow: row(['7', 'old', 'b']), newRow: row(['7', 'new', 'b']) }]);
    assert.equal(s!.text, 'UPDATE `shop`.`users` SET `id` = ?, `name` = ?, `bio` = ? WHERE `id` = ?');
    assert.deepEqual(s!.values, ['7', 'new', 'b', '7']);
  });
  test('no key: every old column NULL-safe (text exactly, FLOAT as FLOAT), one row', () => {
    const [, s] = plan([{ op: 'update', relation: loose, oldRow: row(['a', '1.5', null]), newRow: row(['b', '1.5', '3']) }]);
    assert.equal(s!.text, 'UPDATE `shop`.`loose` SET `a` = ?, `f` = ?, `n` = ? WHERE `a` COLLATE utf8mb4_nopad_bin <=> ? AND `f` <=> CAST(? AS FLOAT) AND `n` <=> ? LIMIT 1');
    assert.deepEqual(s!.values, ['b', '1.5', '3', 'a', '1.5', null]);
  });
  test('a table without a usable key at the source is a schema error', () => {
    const nokey: RelationInfo = { ...users, replicaIdentity: 'd', columns: users.columns.map((c) => ({ ...c, key: false })) };
    assert.throws(
      () => plan([{ op: 'update', relation: nokey, oldRow: null, newRow: row(['1', 'a', 'b']) }]),
      (e: unknown) => e instanceof SitesyncError && e.code === 'SITESYNC_ERR_APPLY_SCHEMA' && /no usable key/.test(e.message),
    );
  });
});

describe('the row each change finds, and the keys it writes', () => {
  test('an update locks the row it changes first, by the same key, and writes that key', () => {
    const [, s] = plan([{ op: 'update', relation: users, oldRow: null, newRow: row(['7', 'new', null], [2]) }]);
    assert.equal(s!.target!.lookup.text, 'SELECT 1 FROM `shop`.`users` WHERE `id` = ? LIMIT 1 FOR UPDATE');
    assert.deepEqual(s!.target!.lookup.values, ['7']);
    assert.equal(s!.target!.key!.json, '{"id":"7"}');
    assert.deepEqual(s!.writes!.map((k) => k.json), ['{"id":"7"}']);
    assert.deepEqual(s!.into, { schema: 'shop', table: 'users' });
  });
  test('a changed key: the old key is checked, both keys are written', () => {
    const [, s] = plan([{ op: 'update', relation: users, oldRow: row(['7', null, null]), newRow: row(['8', 'x', 'y']) }]);
    assert.deepEqual(s!.target!.lookup.values, ['7']);
    assert.equal(s!.target!.key!.json, '{"id":"7"}');
    assert.deepEqual(s!.writes!.map((k) => k.json), ['{"id":"8"}', '{"id":"7"}']);
  });
  test('a delete: the old key', () => {
    const [, s] = plan([{ op: 'delete', relation: users, oldRow: row(['7', null, null]) }]);
    assert.equal(s!.target!.lookup.text, 'SELECT 1 FROM `shop`.`users` WHERE `id` = ? LIMIT 1 FOR UPDATE');
    assert.deepEqual(s!.writes!.map((k) => k.json), ['{"id":"7"}']);
  });
  test('no key: every column, in the lookup as in the key', () => {
    const [, s] = plan([{ op: 'delete', relation: loose, oldRow: row(['a', null, '2']) }]);
    assert.equal(s!.target!.lookup.text, 'SELECT 1 FROM `shop`.`loose` WHERE `a` COLLATE utf8mb4_nopad_bin <=> ? AND `f` <=> CAST(? AS FLOAT) AND `n` <=> ? LIMIT 1 FOR UPDATE');
    assert.equal(s!.target!.key!.json, '{"a":"a","f":null,"n":"2"}');
  });
  test('replica identity full with a primary key at the target: the key is that primary key, as capture names it', () => {
    const full: RelationInfo = { ...users, replicaIdentity: 'f', columns: users.columns.map((c) => ({ ...c, key: false })) };
    const [, s] = plan([{ op: 'update', relation: full, oldRow: row(['7', 'old', 'b']), newRow: row(['7', 'new', 'b']) }]);
    assert.equal(s!.target!.key!.json, '{"id":"7"}');
    assert.deepEqual(s!.writes!.map((k) => k.json), ['{"id":"7"}']);
  });
});

describe('deletes, truncates, messages', () => {
  test('delete by key', () => {
    const [, s] = plan([{ op: 'delete', relation: users, oldRow: row(['7', null, null]) }]);
    assert.equal(s!.text, 'DELETE FROM `shop`.`users` WHERE `id` = ?');
    assert.deepEqual(s!.values, ['7']);
  });
  test('delete without a key: every column NULL-safe, one row', () => {
    const [, s] = plan([{ op: 'delete', relation: loose, oldRow: row(['a', null, '2']) }]);
    assert.equal(s!.text, 'DELETE FROM `shop`.`loose` WHERE `a` COLLATE utf8mb4_nopad_bin <=> ? AND `f` <=> CAST(? AS FLOAT) AND `n` <=> ? LIMIT 1');
    assert.deepEqual(s!.values, ['a', null, '2']);
  });
  test('truncate is a DELETE FROM each table, never TRUNCATE (which would commit)', () => {
    const statements = plan([{ op: 'truncate', relations: [users, orders], cascade: true, restartIdentity: true }]);
    assert.deepEqual(statements.slice(1).map((s) => s.text), ['DELETE FROM `shop`.`users`', 'DELETE FROM `shop`.`orders`']);
    assert.ok(statements.every((s) => !/TRUNCATE/i.test(s.text)));
  });
  test('logical messages write nothing', () => {
    assert.equal(plan([{ op: 'message', prefix: 'p', content: Buffer.from('x') }]).length, 1);
  });
  test('a transaction statement list: progress, then each change in order', () => {
    const statements = plan([
      insert(users, ['1', 'a', null]),
      { op: 'update', relation: users, oldRow: null, newRow: row(['1', 'b', null]) },
      { op: 'message', prefix: 'p', content: Buffer.alloc(0) },
      { op: 'delete', relation: orders, oldRow: row(['9', null]) },
      { op: 'truncate', relations: [loose], cascade: false, restartIdentity: false },
    ]);
    assert.deepEqual(statements.map((s) => s.role), ['progress', 'insert', 'update', 'delete', 'truncate']);
  });
});

describe('parked records', () => {
  test('values are cut to the columns, ids lower-cased', () => {
    const values = parkedValues({ id: 'ABCDEF00-0000-4000-8000-000000000000', kind: 'refused', source: 'x'.repeat(300), transactionId: null, bodySha256: 'f'.repeat(64), userId: null, route: 'ex/site.x', reason: 'r'.repeat(3000) });
    assert.equal(values[0], 'abcdef00-0000-4000-8000-000000000000');
    assert.equal((values[2] as string).length, 255);
    assert.equal((values[7] as string).length, 2000);
  });
});
