/**
 * What `sitesync tail` and `trace` select: each filter narrows to what it names, filters combine as "and",
 * keys match by value whatever form the operator types, and every bad option is one line naming the option
 * and the form to give.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../src/config/load-config.ts';
import { SitesyncError } from '../../src/errors.ts';
import { decimalKind, simpleKind } from '../../src/events/value-kind.ts';
import type { RelationInfo, Transaction } from '../../src/events/transaction.ts';
import { changePasses, parseChangeFilter, parseKeyFilter, parseTransactionId, startPasses, type FilterOptions } from '../../src/inspect/change-filter.ts';
import { parseArchiveStart } from '../../src/cli/tail-command.ts';
import { flattenTransaction, keyTexts, type FlatChange } from '../../src/inspect/change-format.ts';
import { CONNECTORS } from '../../connectors/index.ts';
import { below, seededRandom } from '../helpers/seeded-random.ts';

const config = parseConfig({
  broker: { url: 'amqp://guest:guest@127.0.0.1:5672/' },
  sites: {
    paris: { postgres: 'postgres://postgres@127.0.0.1:5432/paris' },
    london: { postgres: 'postgres://postgres@127.0.0.1:5432/london' },
  },
});

function configError(fragment: RegExp): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.ok(error instanceof SitesyncError, String(error));
    assert.equal(error.code, 'SITESYNC_ERR_CONFIG');
    assert.match(error.message, fragment);
    assert.doesNotMatch(error.message, /\n/);
    return true;
  };
}

const filter = (options: FilterOptions) => parseChangeFilter(config, CONNECTORS, options);
const native = { name: 'x', id: 0, modifier: -1 };

const accounts: RelationInfo = {
  schema: 'public',
  table: 'accounts',
  replicaIdentity: 'd',
  columns: [
    { name: 'id', kind: simpleKind('int64'), native, key: true },
    { name: 'name', kind: simpleKind('string'), native, key: false },
  ],
};
const prices: RelationInfo = {
  schema: 'shop',
  table: 'prices',
  replicaIdentity: 'd',
  columns: [
    { name: 'region', kind: simpleKind('string'), native, key: true },
    { name: 'amount', kind: decimalKind(10, 2), native, key: true },
    { name: 'active', kind: simpleKind('boolean'), native, key: false },
  ],
};

function transaction(site: string, position: string, changes: Transaction['changes'], commitTimeMicros = 1_000_000n): Transaction {
  return { id: `${site}:${position}`, site, position, commitTimeMicros, sourceTxId: '1', seen: {}, changes };
}

const row = (...values: (string | null)[]) => ({ values, unchanged: [] });

test('bad options: one line naming the option and the form to give', () => {
  assert.throws(() => filter({ site: 'rome' }), configError(/--site "rome": site "rome" is not in the configuration; give one of: paris, london/));
  assert.throws(() => filter({ table: 'accounts' }), configError(/--table "accounts" is not schema\.table; give the schema too \(public\.accounts\)/));
  assert.throws(() => filter({ op: 'insert,upsert' }), configError(/--op "upsert" is not an operation; give one or more of insert, update, delete, truncate, read/));
  assert.throws(() => filter({ key: '{"id": 4' }), configError(/--key "\{\\"id\\": 4" is not valid JSON .*give an object of key columns such as \{"id": 42\}/));
  assert.throws(() => filter({ key: '{"id": {"a": 1}}' }), configError(/--key: column "id" is object; give a number, a string, true\/false or null/));
  assert.throws(() => filter({ key: '{}' }), configError(/names no column/));
  assert.throws(() => filter({ transaction: 'paris' }), configError(/--transaction "paris" is not a transaction id; give site:position as tail prints it \(paris:0\/16B3748\)/));
  assert.throws(() => filter({ transaction: 'paris:zz' }), configError(/"zz" is not a position of site paris; give one as its database prints it \(paris:0\/16B3748\)/));
  assert.throws(() => filter({ transaction: 'rome:0/1' }), configError(/site "rome" is not in the configuration/));
});

test('a transaction id in the database\'s form or as tail prints it is the same id', () => {
  assert.equal(parseTransactionId(config, CONNECTORS, 'paris:0/16B3748', '--transaction'), 'paris:00000000016B3748');
  assert.equal(parseTransactionId(config, CONNECTORS, ' paris:00000000016b3748 ', '--transaction'), 'paris:00000000016B3748');
});

test('--from: first, last, a time, a site position; anything else says what to give', () => {
  assert.deepEqual(parseArchiveStart(config, CONNECTORS, 'first'), { kind: 'first' });
  assert.deepEqual(parseArchiveStart(config, CONNECTORS, 'last'), { kind: 'last' });
  const time = parseArchiveStart(config, CONNECTORS, '2024-05-01T09:30:00.5Z');
  assert.deepEqual(time, { kind: 'time', micros: 1_714_555_800_500_000n, text: '2024-05-01T09:30:00.5Z' });
  assert.deepEqual(parseArchiveStart(config, CONNECTORS, 'london:0/16B3748'), { kind: 'position', site: 'london', position: '00000000016B3748', text: 'london:0/16B3748' });
  assert.throws(() => parseArchiveStart(config, CONNECTORS, 'yesterday'), configError(/--from "yesterday" is not a start; give first, last, an ISO 8601 time .* or site:position \(paris:0\/16B3748/));
  assert.throws(() => parseArchiveStart(config, CONNECTORS, 'paris:xyz'), configError(/"xyz" is not a position of site paris/));
  assert.throws(() => parseArchiveStart(config, CONNECTORS, '2024-02-30T00:00:00Z'), configError(/is not a start/));
});

test('start points: a time keeps what committed at or after it; a position opens at that site\'s transaction', () => {
  const t = transaction('paris', '0000000000000010', [], 5_000_000n);
  assert.equal(startPasses({ kind: 'time', micros: 5_000_000n, text: '' }, t, false), true);
  assert.equal(startPasses({ kind: 'time', micros: 5_000_001n, text: '' }, t, false), false);
  const start = { kind: 'position' as const, site: 'paris', position: '0000000000000010', text: '' };
  assert.equal(startPasses(start, t, false), true, 'at the position: included');
  assert.equal(startPasses(start, transaction('paris', '000000000000000F', []), false), false);
  assert.equal(startPasses(start, transaction('london', '00000000000000FF', []), false), false, 'another site before the start is out');
  assert.equal(startPasses(start, transaction('london', '0000000000000001', []), true), true, 'and in once the start is passed');
});

test('keys: by column or by value, in the form an operator types', () => {
  assert.deepEqual(keyTexts(prices, row('eu', '12.50', 't')).map((k) => k.text), ['eu', '12.50']);
  assert.deepEqual(parseKeyFilter(' 42 '), { kind: 'values', values: ['42'] });
  const matches = (text: string) => changePasses(filter({ key: text }), { tx: transaction('paris', '0000000000000001', []), change: null as never, op: 'insert', relation: prices, row: row('eu', '12.50', 't'), oldRow: null });
  assert.equal(matches('{"region": "eu", "amount": 12.5}'), true, 'a number matches a decimal\'s canonical text');
  assert.equal(matches('{"amount": "12.50"}'), true);
  assert.equal(matches('{"amount": "12.5"}'), true, 'numeric text of a numeric kind compares as a number');
  assert.equal(matches('{"region": "us"}'), false);
  assert.equal(matches('{"active": true}'), false, 'only key columns are matched');
  assert.equal(matches('["eu", 12.5]'), true);
  assert.equal(matches('eu,12.50'), true, 'a composite key as the table shows it');
  assert.equal(matches('eu'), false);
  const one = (text: string, id: string) => changePasses(filter({ key: text }), { tx: transaction('paris', '0000000000000001', []), change: null as never, op: 'insert', relation: accounts, row: row(id, 'x'), oldRow: null });
  assert.equal(one('42', '42'), true);
  assert.equal(one('"42"', '42'), true);
  assert.equal(one('{"id": 42}', '42'), true);
  assert.equal(one('{"id": 42}', '420'), false);
  assert.equal(one('{"id": "9007199254740993"}', '9007199254740993'), true);
  assert.throws(() => one('{"id": 9007199254740993}', '9007199254740992'), configError(/column "id" is an integer beyond 2\^53, which JSON numbers do not hold exactly; give it as a string/));
  assert.equal(one('{"name": "x"}', '1'), false);
});

test('an update that changed its key is found by the old key too', () => {
  const [flat] = flattenTransaction(transaction('paris', '0000000000000001', [{ op: 'update', relation: accounts, oldRow: row('1', null), newRow: row('2', 'b') }]));
  assert.equal(changePasses(filter({ key: '{"id": 1}' }), flat!), true);
  assert.equal(changePasses(filter({ key: '{"id": 2}' }), flat!), true);
  assert.equal(changePasses(filter({ key: '{"id": 3}' }), flat!), false);
});

/** Random changes over two sites, two tables, every operation. */
function randomChanges(seed: number, n: number): FlatChange[] {
  const random = seededRandom(seed);
  const out: FlatChange[] = [];
  const ops = ['insert', 'update', 'delete', 'truncate', 'read'] as const;
  for (let i = 0; i < n; i++) {
    const site = random() < 0.5 ? 'paris' : 'london';
    const position = (i + 1).toString(16).toUpperCase().padStart(16, '0');
    const relation = random() < 0.5 ? accounts : prices;
    const op = ops[below(random, ops.length)]!;
    const r = relation === accounts ? row(String(below(random, 5)), 'n') : row(random() < 0.5 ? 'eu' : 'us', `${below(random, 3)}.00`, 'f');
    const change: Transaction['changes'][number] =
      op === 'truncate' ? { op, relations: [relation], cascade: false, restartIdentity: false }
      : op === 'update' ? { op, relation, oldRow: null, newRow: r }
      : op === 'delete' ? { op, relation, oldRow: r }
      : op === 'insert' ? { op, relation, newRow: r }
      : { op: 'read', relation, newRow: r };
    out.push(...flattenTransaction(transaction(site, position, [change])));
  }
  return out;
}

test('property: each filter keeps exactly what it names, and filters combine as "and"', () => {
  const changes = randomChanges(7, 400);
  const random = seededRandom(8);
  const choices: FilterOptions[] = [
    { site: 'paris' },
    { site: 'london' },
    { table: 'public.accounts' },
    { table: 'shop.prices' },
    { op: 'insert' },
    { op: 'update,delete' },
    { op: 'truncate' },
    { key: '{"id": 3}' },
    { key: '{"region": "eu"}' },
    { transaction: changes[below(random, changes.length)]!.tx.id },
  ];
  const keep = (options: FilterOptions, flat: FlatChange): boolean => {
    if (options.site && flat.tx.site !== options.site) return false;
    if (options.table && `${flat.relation?.schema}.${flat.relation?.table}` !== options.table) return false;
    if (options.op && !options.op.split(',').includes(flat.op)) return false;
    if (options.transaction && flat.tx.id !== parseTransactionId(config, CONNECTORS, options.transaction, '')) return false;
    if (options.key) {
      const [name, value] = Object.entries(JSON.parse(options.key) as Record<string, unknown>)[0]!;
      const column = flat.relation?.columns.findIndex((c) => c.name === name && c.key) ?? -1;
      if (column < 0 || flat.row === null || flat.row.values[column] !== String(value)) return false;
    }
    return true;
  };
  for (const one of choices) {
    const kept = changes.filter((flat) => changePasses(filter(one), flat));
    assert.deepEqual(kept, changes.filter((flat) => keep(one, flat)), JSON.stringify(one));
    assert.ok(kept.length > 0, `${JSON.stringify(one)} keeps something of the sample`);
  }
  for (let i = 0; i < 200; i++) {
    const a = choices[below(random, choices.length)]!;
    const b = choices[below(random, choices.length)]!;
    if (Object.keys(a).some((key) => key in b)) continue; // one option each
    const both = filter({ ...a, ...b });
    for (const flat of changes) assert.equal(changePasses(both, flat), changePasses(filter(a), flat) && changePasses(filter(b), flat), `${JSON.stringify(a)} and ${JSON.stringify(b)}`);
  }
});
