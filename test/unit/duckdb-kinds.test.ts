/**
 * Neutral kinds in DuckDB: each kind's type, every kind's canonical texts (extremes, BC, infinity, NaN, -0,
 * quoting) stored in a real DuckDB column of that type and read back as the same text, and the values a typed
 * column cannot hold kept whole in `_sitesync_special` by the sink (NaN and ±Infinity decimals, timestamps
 * past DuckDB's last, arrays of more than one dimension) — in the current state and the history, and still
 * there after an update that did not send them.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { duckdbConnector } from '../../connectors/duckdb/index.ts';
import { loadDuckDbApi, type DuckDbApi } from '../../connectors/duckdb/duckdb-connection.ts';
import { DuckDbSink } from '../../connectors/duckdb/duckdb-sink.ts';
import { DuckDbValues, duckTypeOf, kindOfDuckType, parseTypeText, typeText, UNHOLDABLE } from '../../connectors/duckdb/duckdb-kinds.ts';
import type { Change, RelationInfo, Transaction } from '../../src/events/transaction.ts';
import { ValueFormatError } from '../../src/events/value-parser.ts';
import { formatKind, parseKind } from '../../src/events/value-kind.ts';
import { createLogger } from '../../src/observability/logger.ts';

const TYPES: [string, string][] = [
  ['boolean', 'BOOLEAN'],
  ['int16', 'SMALLINT'],
  ['int32', 'INTEGER'],
  ['int64', 'BIGINT'],
  ['float32', 'FLOAT'],
  ['float64', 'DOUBLE'],
  ['decimal(12,2)', 'DECIMAL(12,2)'],
  ['decimal(5)', 'DECIMAL(5,0)'],
  ['decimal(38,38)', 'DECIMAL(38,38)'],
  ['decimal', 'VARCHAR'],
  ['decimal(39,2)', 'VARCHAR'],
  ['decimal(5,-2)', 'VARCHAR'],
  ['decimal(3,5)', 'VARCHAR'],
  ['string', 'VARCHAR'],
  ['enum', 'VARCHAR'],
  ['struct', 'VARCHAR'],
  ['other', 'VARCHAR'],
  ['bytes', 'BLOB'],
  ['date', 'DATE'],
  ['time', 'TIME'],
  ['timestamp', 'TIMESTAMP'],
  ['timestamptz', 'TIMESTAMP WITH TIME ZONE'],
  ['interval', 'INTERVAL'],
  ['uuid', 'UUID'],
  ['json', 'JSON'],
  ['array<int32>', 'INTEGER[]'],
  ['array<decimal>', 'VARCHAR[]'],
  ['array<json>', 'JSON[]'],
];

/** Canonical texts of each kind that trip converters. */
const SAMPLES: Record<string, readonly string[]> = {
  boolean: ['t', 'f'],
  int16: ['-32768', '32767', '0'],
  int32: ['-2147483648', '2147483647'],
  int64: ['-9223372036854775808', '9223372036854775807'],
  float32: ['1.5', '-0.25', '0.1', 'NaN', 'Infinity', '-Infinity', '-0', '3.4028235e+38', '1e-45', '1.06148464e+08'],
  float64: ['3.141592653589793', '1e+100', 'NaN', '-Infinity', '-0', '5e-324', '9.999999999999999e+22', '1.7976931348623157e+308'],
  'decimal(12,2)': ['1234567890.12', '-0.50', '0.00', '-9999999999.99'],
  'decimal(5)': ['12345', '-1', '0'],
  'decimal(38,38)': ['0.12345678901234567890123456789012345678', '-0.00000000000000000000000000000000000001'],
  decimal: ['1.50', '1.5', 'NaN', 'Infinity', '-Infinity', '123456789012345678901234567890123456789012.000000000000000000001'],
  'decimal(5,-2)': ['12300'],
  string: ['héllo, "wörld" \\ ✓', '', 'a\u0000b', '  padded  '],
  enum: ['ok'],
  struct: ['(1,"a b",)', '()'],
  other: ['(1,2)', '08:00:2b:01:02:03'],
  bytes: ['\\x00ff10', '\\x'],
  date: ['2024-02-29', '1970-01-01', '0044-03-15 BC', '4714-11-24 BC', '5874897-12-31', 'infinity', '-infinity'],
  time: ['00:00:00', '13:45:10.123456', '12:00:00.5', '24:00:00'],
  timestamp: ['2024-02-29 13:45:10.123456', '1999-12-31 23:59:59', '0044-03-15 12:00:00.5 BC', '4714-11-24 00:00:00 BC', '294247-01-10 04:00:54.775806', 'infinity', '-infinity'],
  timestamptz: ['2024-02-29 13:45:10.123456+00', '0044-03-15 12:00:00+00 BC', '10000-01-01 00:00:00+00', 'infinity', '-infinity'],
  interval: ['P1Y2M3DT4H5M6.5S', 'PT0S', 'P1Y2M-3DT4H5M6.000001S', 'P-178956970Y-8M', 'P178956970Y7M', 'P2147483647D', 'PT2562047788H54.775807S', 'PT-2562047788H-54.775808S', 'PT-0.000001S'],
  uuid: ['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '00000000-0000-0000-0000-000000000000', 'ffffffff-ffff-ffff-ffff-ffffffffffff'],
  json: ['  {"a":1, "a":2}  ', '[]', '"x"', '{"a": [1, 2.5, "x"]}'],
  'array<int32>': ['{1,2,NULL}', '{}', '{NULL}'],
  'array<string>': ['{"a b","",NULL,"NULL",x}', '{"c\\\\d","e\\"f"}'],
  'array<decimal(10,2)>': ['{1.50,NULL,-0.01}'],
  'array<decimal>': ['{1.5,NaN,Infinity}'],
  'array<timestamptz>': ['{"2024-01-01 00:00:00+00",infinity,"0044-03-15 12:00:00+00 BC"}'],
  'array<json>': ['{"{\\"k\\": 1}","null"}'],
  'array<bytes>': ['{"\\\\xdead","\\\\x"}'],
  'array<date>': ['{2024-01-01,"0044-03-15 BC",-infinity}'],
  'array<interval>': ['{P1Y,PT-1.5S}'],
  'array<uuid>': ['{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'],
  'array<boolean>': ['{t,f,NULL}'],
  'array<float32>': ['{NaN,-0,1.5}'],
};

describe('DuckDB kinds', () => {
  let api: DuckDbApi;
  let values: DuckDbValues;
  before(async () => {
    api = await loadDuckDbApi();
    values = new DuckDbValues(api);
  });

  test('each kind has its DuckDB type, and each type reads back as a kind of the same text', () => {
    for (const [kind, type] of TYPES) {
      assert.equal(typeText(duckTypeOf(parseKind(kind), true)), type, kind);
      assert.equal(typeText(parseTypeText(type)), type);
    }
    assert.equal(typeText(duckTypeOf(parseKind('json'), false)), 'VARCHAR', 'json without the engine having JSON');
    assert.equal(formatKind(kindOfDuckType(parseTypeText('DECIMAL(12,2)'))), 'decimal(12,2)');
    assert.equal(formatKind(kindOfDuckType(parseTypeText('TIMESTAMP WITH TIME ZONE[]'))), 'array<timestamptz>');
    assert.equal(parseTypeText('HUGEINT').name, 'UNKNOWN');
  });

  test('every kind round-trips: canonical text, bound into its DuckDB type, stored, read back as the same text', async () => {
    const instance = await api.DuckDBInstance.create(':memory:');
    const connection = await instance.connect();
    try {
      for (const [kindText, texts] of Object.entries(SAMPLES)) {
        const kind = parseKind(kindText);
        const type = duckTypeOf(kind, true);
        await connection.run(`CREATE OR REPLACE TABLE t (v ${typeText(type)})`);
        const appender = await connection.createAppender('t');
        const columnType = appender.columnType(0);
        for (const text of texts) {
          const value = values.bind(text, kind, type);
          assert.notEqual(value, UNHOLDABLE, `${kindText} ${text} is holdable`);
          appender.appendValue(value as Exclude<typeof value, typeof UNHOLDABLE>, columnType);
          appender.endRow();
        }
        appender.closeSync();
        const rows = (await connection.runAndReadAll('SELECT v FROM t')).getRows();
        // A VARCHAR holds the text as it came whatever kind; other types read back by their own kind.
        assert.deepEqual(
          rows.map((r) => values.text(r[0], type)),
          [...texts],
          kindText,
        );
      }
    } finally {
      connection.closeSync();
      instance.closeSync();
    }
  });

  test('values a typed column cannot hold are unholdable; texts that are not canonical are refused', () => {
    const unholdable: [string, string][] = [
      ['decimal(10,2)', 'NaN'],
      ['decimal(12,2)', 'NaN'],
      ['timestamp', '294247-01-10 04:00:54.775807'],
      ['timestamp', '294276-12-31 23:59:59.999999'],
      ['timestamptz', '294276-12-31 23:59:59.999999+00'],
      ['array<int32>', '{{1,2},{3,4}}'],
      ['array<int32>', '[0:1]={1,2}'],
      ['array<decimal(10,2)>', '{1.00,NaN}'],
      ['array<timestamp>', '{"294276-12-31 23:59:59.999999"}'],
    ];
    for (const [kind, text] of unholdable) assert.equal(values.bind(text, parseKind(kind), duckTypeOf(parseKind(kind), true)), UNHOLDABLE, `${kind} ${text}`);
    for (const [kind, text] of [
      ['int32', '01'],
      ['decimal(12,2)', '12345678901234.00'],
      ['boolean', 'true'],
      ['timestamptz', '2024-01-01 00:00:00'],
      ['json', '{bad'],
    ] as const) {
      assert.throws(() => values.bind(text, parseKind(kind), duckTypeOf(parseKind(kind), true)), ValueFormatError, `${kind} ${text}`);
    }
  });
});

describe('DuckDB sink: what a column cannot hold is kept in _sitesync_special', () => {
  let dir: string;
  let url: string;
  let sink: DuckDbSink;
  const relation: RelationInfo = {
    schema: 'app',
    table: 'odd',
    replicaIdentity: 'd',
    columns: [
      { name: 'id', kind: parseKind('int64'), native: { name: 'int8', id: 20, modifier: -1 }, key: true },
      { name: 'price', kind: parseKind('decimal(10,2)'), native: { name: 'numeric', id: 1700, modifier: -1 }, key: false },
      { name: 'total', kind: parseKind('decimal'), native: { name: 'numeric', id: 1700, modifier: -1 }, key: false },
      { name: 'at', kind: parseKind('timestamp'), native: { name: 'timestamp', id: 1114, modifier: -1 }, key: false },
      { name: 'grid', kind: parseKind('array<int32>'), native: { name: '_int4', id: 1007, modifier: -1 }, key: false },
      { name: 'note', kind: parseKind('string'), native: { name: 'text', id: 25, modifier: -1 }, key: false },
    ],
  };
  let n = 0;
  const tx = (changes: Change[]): Transaction => {
    const position = (++n).toString(16).toUpperCase().padStart(16, '0');
    return { id: `remote:${position}`, site: 'remote', position, commitTimeMicros: 1_700_000_000_000_000n + BigInt(n), sourceTxId: String(n), seen: {}, changes };
  };
  const query = async (sql: string) => (await duckdbConnector.query!(url, sql, { maxRows: 100 })).rows;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'sitesync-duckdb-kinds-'));
    url = `duckdb://${join(dir, 'k.duckdb')}`;
    sink = new DuckDbSink({ site: 'here', url, logger: createLogger('silent') });
  });
  after(async () => {
    await sink.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('NaN and ±Infinity decimals, a timestamp past DuckDB, a 2-D array: NULL in their column, their exact text in _sitesync_special', async () => {
    const session = await sink.openSession('remote');
    await session.apply([
      tx([
        { op: 'insert', relation, newRow: { values: ['1', 'NaN', 'Infinity', '294276-12-31 23:59:59.999999', '{{1,2},{3,4}}', 'a'], unchanged: [] } },
        { op: 'insert', relation, newRow: { values: ['2', '1.50', '-Infinity', '2024-01-01 00:00:00', '{1,2}', 'b'], unchanged: [] } },
      ]),
    ]);
    const special = { price: 'NaN', at: '294276-12-31 23:59:59.999999', grid: '{{1,2},{3,4}}' };
    assert.deepEqual(await query('SELECT id, price, total, "at", grid, _sitesync_special FROM app.odd ORDER BY id'), [
      // An unconstrained decimal is a VARCHAR holding the exact text: Infinity needs no special.
      ['1', null, 'Infinity', null, null, JSON.stringify(special)],
      ['2', '1.50', '-Infinity', '2024-01-01 00:00:00', [1, 2], null],
    ]);
    assert.deepEqual(await query('SELECT id, price, "at", grid, _sitesync_special FROM app.odd__history ORDER BY id'), [
      ['1', null, null, null, JSON.stringify(special)],
      ['2', '1.50', '2024-01-01 00:00:00', [1, 2], null],
    ]);
    // An update that does not send them (unchanged TOASTed values) keeps them: the fold reads them back whole.
    await session.apply([tx([{ op: 'update', relation, oldRow: null, newRow: { values: ['1', null, null, null, null, 'changed'], unchanged: [1, 2, 3, 4] } }])]);
    assert.deepEqual(await query('SELECT note, price, total, "at", grid, _sitesync_special FROM app.odd WHERE id = 1'), [['changed', null, 'Infinity', null, null, JSON.stringify(special)]]);
    assert.deepEqual(await query(`SELECT note, _sitesync_special, _sitesync_unchanged FROM app.odd__history WHERE id = 1 AND _sitesync_op = 'update'`), [['changed', JSON.stringify(special), []]]);
    await session.close();
  });

  test('a key the typed column cannot hold is a data error naming it, and nothing is applied', async () => {
    const keyed: RelationInfo = { ...relation, table: 'odd_keys', columns: [{ ...relation.columns[1]!, key: true }, relation.columns[5]!] };
    const session = await sink.openSession('remote');
    const before = await session.progress();
    await assert.rejects(session.apply([tx([{ op: 'insert', relation: keyed, newRow: { values: ['NaN', 'x'], unchanged: [] } }])]), (error: unknown) => {
      assert.equal(sink.classify(error), 'data');
      assert.match(String((error as Error).message), /key column price of app\.odd_keys from site remote holds "NaN", which DuckDB's DECIMAL\(10,2\) cannot hold/);
      return true;
    });
    assert.equal(await session.progress(), before);
    await session.close();
  });
});
