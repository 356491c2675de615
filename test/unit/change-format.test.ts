/**
 * How `sitesync tail` shows a change: values typed by their kind as JSON holds them exactly, values hidden
 * unless asked, keys (old and new), unchanged columns, one line per change whatever the wire holds, and an
 * aligned table.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { arrayKind, decimalKind, simpleKind, type ValueKind } from '../../src/events/value-kind.ts';
import { formatValue, parseValue } from '../../src/events/value-parser.ts';
import type { RelationInfo, Transaction } from '../../src/events/transaction.ts';
import { flattenTransaction, formatJsonLine, formatTableHeader, formatTableRow, jsonValue, safeText, tableLayout, viewChange, type ShowOptions } from '../../src/inspect/change-format.ts';
import { seededRandom, below } from '../helpers/seeded-random.ts';

const k = simpleKind;
const native = { name: 'x', id: 0, modifier: -1 };

test('values become what JSON holds exactly', () => {
  assert.equal(jsonValue('t', k('boolean')), true);
  assert.equal(jsonValue('f', k('boolean')), false);
  assert.equal(jsonValue('-32768', k('int16')), -32768);
  assert.equal(jsonValue('2147483647', k('int32')), 2147483647);
  assert.equal(jsonValue('9007199254740991', k('int64')), 9007199254740991);
  assert.equal(jsonValue('9007199254740993', k('int64')), '9007199254740993', 'beyond 2^53: a string, exact');
  assert.equal(jsonValue('-9223372036854775808', k('int64')), '-9223372036854775808');
  assert.equal(jsonValue('1.5', k('float64')), 1.5);
  assert.equal(jsonValue('NaN', k('float64')), 'NaN');
  assert.equal(jsonValue('-Infinity', k('float64')), '-Infinity');
  assert.equal(jsonValue('-0', k('float64')), '-0', '-0 has no JSON number');
  assert.equal(jsonValue('0.1', k('float32')), 0.1, 'a float32 by its own shortest digits');
  assert.equal(jsonValue('12.50', decimalKind(10, 2)), '12.50', 'decimals stay text: no rounding');
  assert.equal(jsonValue('\\xdeadbeef', k('bytes')), 'deadbeef');
  assert.equal(jsonValue('2024-02-29', k('date')), '2024-02-29');
  assert.equal(jsonValue('2024-02-29 10:11:12.123456+00', k('timestamptz')), '2024-02-29 10:11:12.123456+00');
  assert.equal(jsonValue('{"a": 1}', k('json')), '{"a": 1}', 'json stays its text (numbers beyond doubles survive)');
  assert.equal(jsonValue('hello', k('string')), 'hello');
  assert.equal(jsonValue(null, k('string')), null);
});

test('arrays: typed elements, NULLs, several dimensions; bounds other than 1 keep the text', () => {
  assert.deepEqual(jsonValue('{1,NULL,3}', arrayKind(k('int32'))), [1, null, 3]);
  assert.deepEqual(jsonValue('{{1,2},{3,4}}', arrayKind(k('int64'))), [[1, 2], [3, 4]]);
  assert.deepEqual(jsonValue('{NaN,2.5}', arrayKind(k('float64'))), ['NaN', 2.5]);
  assert.deepEqual(jsonValue('{0.1}', arrayKind(k('float32'))), [0.1]);
  assert.deepEqual(jsonValue('{2024-01-01,NULL}', arrayKind(k('date'))), ['2024-01-01', null]);
  assert.deepEqual(jsonValue('{"\\\\xab"}', arrayKind(k('bytes'))), ['ab']);
  assert.equal(jsonValue('[0:1]={7,8}', arrayKind(k('int32'))), '[0:1]={7,8}');
});

test('a value that is not its kind\'s canonical text is shown as it travelled, never dropped or thrown', () => {
  assert.equal(jsonValue('yes', k('boolean')), 'yes');
  assert.equal(jsonValue('01', k('int32')), '01');
  assert.equal(jsonValue('{1,', arrayKind(k('int32'))), '{1,');
});

test('property: integers and doubles read back from the JSON line as the same value', () => {
  const random = seededRandom(19);
  for (let i = 0; i < 2000; i++) {
    const big = (BigInt(below(random, 2 ** 31)) << 32n) | BigInt(below(random, 2 ** 32));
    const n = random() < 0.5 ? -big : big;
    const text = n.toString();
    const shown = JSON.parse(JSON.stringify(jsonValue(text, k('int64')))) as number | string;
    assert.equal(typeof shown === 'number', Number.isSafeInteger(Number(n)) && BigInt(Number(n)) === n, text);
    assert.equal(String(shown), text);
    const bits = new DataView(new ArrayBuffer(8));
    bits.setUint32(0, below(random, 2 ** 32));
    bits.setUint32(4, below(random, 2 ** 32));
    const x = bits.getFloat64(0);
    const canonical = formatValue(x, k('float64'));
    const back = JSON.parse(JSON.stringify(jsonValue(canonical, k('float64')))) as number | string;
    if (typeof back === 'number') assert.ok(Object.is(back, parseValue(canonical, k('float64'))), canonical);
    else assert.equal(back, canonical);
  }
});

const accounts: RelationInfo = {
  schema: 'public',
  table: 'accounts',
  replicaIdentity: 'd',
  columns: [
    { name: 'id', kind: k('int64'), native, key: true },
    { name: 'name', kind: k('string'), native, key: false },
    { name: 'balance', kind: decimalKind(12, 2), native, key: false },
    { name: 'doc', kind: k('json'), native, key: false },
  ],
};

function tx(changes: Transaction['changes']): Transaction {
  return { id: 'paris:00000000016B3748', site: 'paris', position: '00000000016B3748', commitTimeMicros: 1_714_555_800_123_456n, sourceTxId: '771', seen: {}, changes };
}

const show = (values: boolean): ShowOptions => ({ values, describe: (_site, p) => `0/${p.replace(/^0+/, '')}` });

test('a change without --values: its key and column names, no other value', () => {
  const [flat] = flattenTransaction(tx([{ op: 'insert', relation: accounts, newRow: { values: ['7', 'Ada', '12.50', null], unchanged: [] } }]));
  const view = viewChange(flat!, show(false), { offset: 42 });
  assert.deepEqual(view, {
    offset: 42,
    transaction: 'paris:00000000016B3748',
    site: 'paris',
    position: '00000000016B3748',
    displayPosition: '0/16B3748',
    commitTime: '2024-05-01T09:30:00.123456Z',
    op: 'insert',
    table: 'public.accounts',
    key: { id: 7 },
    columns: ['id', 'name', 'balance', 'doc'],
    unchanged: [],
  });
  assert.doesNotMatch(formatJsonLine(view), /Ada|12\.50/);
});

test('with --values: the typed row; an update lists unchanged columns and its old key when the key changed', () => {
  const [flat] = flattenTransaction(tx([{ op: 'update', relation: accounts, oldRow: { values: ['6', null, null, null], unchanged: [] }, newRow: { values: ['7', 'Ada', '12.50', null], unchanged: [3] } }]));
  const view = viewChange(flat!, show(true));
  assert.deepEqual(view.key, { id: 7 });
  assert.deepEqual(view.oldKey, { id: 6 });
  assert.deepEqual(view.row, { id: 7, name: 'Ada', balance: '12.50' });
  assert.deepEqual(view.unchanged, ['doc']);
  assert.deepEqual(view.columns, ['id', 'name', 'balance']);
  const same = viewChange(flattenTransaction(tx([{ op: 'update', relation: accounts, oldRow: null, newRow: { values: ['7', 'Bo', '1.00', '{}'], unchanged: [] } }]))[0]!, show(true));
  assert.equal(same.oldKey, undefined);
});

test('a delete shows its key (the whole old row only under REPLICA IDENTITY FULL); a truncate is one change per table', () => {
  const del = viewChange(flattenTransaction(tx([{ op: 'delete', relation: accounts, oldRow: { values: ['7', null, null, null], unchanged: [] } }]))[0]!, show(true));
  assert.deepEqual(del.row, { id: 7 });
  const full = { ...accounts, replicaIdentity: 'f' as const };
  const delFull = viewChange(flattenTransaction(tx([{ op: 'delete', relation: full, oldRow: { values: ['7', 'Ada', null, null], unchanged: [] } }]))[0]!, show(true));
  assert.deepEqual(delFull.row, { id: 7, name: 'Ada', balance: null, doc: null });
  const other: RelationInfo = { ...accounts, table: 'orders' };
  const truncated = flattenTransaction(tx([{ op: 'truncate', relations: [accounts, other], cascade: false, restartIdentity: false }]));
  assert.deepEqual(truncated.map((f) => viewChange(f, show(false)).table), ['public.accounts', 'public.orders']);
});

test('one line stays one line: control characters from the wire are escaped in JSON and in the table', () => {
  const evil: RelationInfo = { ...accounts, table: 'acc\u001b[2Jounts\u009b' };
  const view = viewChange(flattenTransaction(tx([{ op: 'insert', relation: evil, newRow: { values: ['1', 'a\nb\u009b', null, null], unchanged: [] } }]))[0]!, show(true));
  const json = formatJsonLine(view);
  assert.doesNotMatch(json, /[\u0000-\u001f\u007f-\u009f]/);
  assert.deepEqual(JSON.parse(json).row.name, 'a\nb\u009b');
  const row = formatTableRow(view, tableLayout(['paris']));
  assert.doesNotMatch(row, /[\u0000-\u001f\u007f-\u009f]/);
  assert.equal(safeText('x\u001by'), 'x\\u001by');
});

test('the table: a header and rows whose columns line up', () => {
  const layout = tableLayout(['paris', 'london']);
  const a = viewChange(flattenTransaction(tx([{ op: 'insert', relation: accounts, newRow: { values: ['7', 'Ada', '12.50', null], unchanged: [] } }]))[0]!, show(true));
  const b = viewChange(flattenTransaction(tx([{ op: 'delete', relation: accounts, oldRow: { values: ['123456', null, null, null], unchanged: [] } }]))[0]!, show(false));
  const header = formatTableHeader(layout, true);
  const rows = [formatTableRow(a, layout), formatTableRow(b, layout)];
  for (const label of ['SITE', 'POSITION', 'OP', 'TABLE', 'KEY']) {
    const at = header.indexOf(label);
    assert.ok(at > 0, label);
    for (const row of rows) assert.equal(row[at - 1], ' ', `${label} column starts after a space in ${row}`);
  }
  assert.match(rows[0]!, /insert\s+public\.accounts\s+id=7\s+id=7 name=Ada balance=12\.50 doc=NULL$/);
  assert.match(rows[1]!, /delete\s+public\.accounts\s+id=123456\s+id$/);
});

test('kinds without a JSON number keep their canonical text for every simple kind', () => {
  const samples: [ValueKind, string][] = [
    [k('time'), '10:11:12.5'],
    [k('interval'), '1 year 2 mons'],
    [k('uuid'), '0e1a3f64-8c4b-4c59-9a0c-6a2c0d3b4e5f'],
    [k('enum'), 'happy'],
    [k('timestamp'), 'infinity'],
  ];
  for (const [kind, text] of samples) assert.equal(jsonValue(text, kind), text, `${kind.kind} ${text}`);
});
