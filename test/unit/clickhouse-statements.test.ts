/**
 * The ClickHouse sink's SQL as text, and its errors as grades: what does not need an engine. The same SQL runs
 * against the embedded engine in clickhouse-sink.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ClickHouseServerError } from '../../connectors/clickhouse/clickhouse-driver.ts';
import { classifyClickHouseError, ClickHouseDataError, describeApplyError, describeClickHouseError } from '../../connectors/clickhouse/clickhouse-errors.ts';
import {
  createCurrentTable,
  createHistoryTable,
  dedupToken,
  deleteModeOfEngine,
  literal,
  ownerComment,
  parseOwnerComment,
  quoteIdent,
  quoteString,
  selectByKeys,
  tableNames,
  truncationMarkers,
} from '../../connectors/clickhouse/clickhouse-statements.ts';
import { SitesyncError } from '../../src/errors.ts';

test('identifiers and strings are quoted so that no name or value ends its quote', () => {
  assert.equal(quoteIdent('we`ird\\name'), '`we\\`ird\\\\name`');
  assert.equal(quoteString("it's \\ fine"), "'it\\'s \\\\ fine'");
  assert.equal(literal(["a'b", null, 3, true]), "['a\\'b', NULL, 3, true]");
  assert.deepEqual(tableNames('public', 'orders'), { current: 'public__orders', history: 'public__orders__history' });
});

test('the current-state table: ReplacingMergeTree by the apply version, is-deleted only for hard deletes, ordered by the key, deduplicating', () => {
  const owner = { schema: 'public', table: 'orders', role: 'current' as const };
  const hard = createCurrentTable('db', 'public__orders', [{ name: 'id', type: 'Int64' }, { name: 'note', type: 'Nullable(String)' }], ['id'], 'hard', owner);
  assert.match(hard, /^CREATE TABLE IF NOT EXISTS `db`\.`public__orders` \(`id` Int64, `note` Nullable\(String\), `_sitesync_version` UInt64, `_sitesync_deleted` UInt8, /);
  assert.match(hard, /ENGINE = ReplacingMergeTree\(`_sitesync_version`, `_sitesync_deleted`\) ORDER BY `id` SETTINGS non_replicated_deduplication_window = 10000 COMMENT/);
  const soft = createCurrentTable('db', 't', [{ name: 'a', type: 'Int32' }, { name: 'b', type: 'String' }], ['a', 'b'], 'soft', owner);
  assert.match(soft, /ENGINE = ReplacingMergeTree\(`_sitesync_version`\) ORDER BY \(`a`, `b`\)/);
  assert.equal(deleteModeOfEngine('ReplacingMergeTree(_sitesync_version, _sitesync_deleted) ORDER BY id SETTINGS index_granularity = 8192'), 'hard');
  assert.equal(deleteModeOfEngine("ReplicatedReplacingMergeTree('/t/{shard}', '{replica}', _sitesync_version) ORDER BY id"), 'soft');
  assert.equal(deleteModeOfEngine('MergeTree ORDER BY id'), null);
  const history = createHistoryTable('db', 'public__orders__history', [{ name: 'id', type: 'Nullable(Int64)' }], { ...owner, role: 'history' });
  assert.match(history, /`_sitesync_op` LowCardinality\(String\), `_sitesync_applied` UInt8, `_sitesync_unchanged` Array\(String\), `_sitesync_site` LowCardinality\(String\), `_sitesync_position` String, `_sitesync_seq` UInt32, `_sitesync_commit_micros` Int64, `_sitesync_commit_time` DateTime64\(6, 'UTC'\), `_sitesync_transaction` String, `_sitesync_special` Nullable\(String\), `_sitesync_before` Nullable\(String\)\)/);
  assert.match(history, /ENGINE = ReplacingMergeTree ORDER BY \(`_sitesync_site`, `_sitesync_position`, `_sitesync_seq`\)/);
  assert.deepEqual(parseOwnerComment(ownerComment(owner)), owner);
  assert.equal(parseOwnerComment('made by hand'), null);
});

test('lookups read FINAL by key; a truncation only flags rows older than its batch', () => {
  assert.equal(selectByKeys('db', 't', ['`a`'], ['id'], [['1'], ['2']]), 'SELECT `a` FROM `db`.`t` FINAL WHERE `id` IN (1, 2)');
  assert.equal(selectByKeys('db', 't', ['`a`'], ['x', 'y'], [["'p'", '1']]), "SELECT `a` FROM `db`.`t` FINAL WHERE (`x`, `y`) IN (('p', 1))");
  const markers = truncationMarkers('db', 't', ['id', 'note'], 42n, { site: 'paris', commitMicros: 5n, commitTime: '1970-01-01 00:00:00.000005', position: '0A', transaction: 'paris:0A' });
  assert.match(markers, /^INSERT INTO `db`\.`t` \(`id`, `note`, `_sitesync_version`, `_sitesync_deleted`, /);
  assert.match(markers, /SELECT `id`, `note`, toUInt64\(42\), toUInt8\(1\), 'paris', toInt64\(5\), /);
  assert.match(markers, /FROM `db`\.`t` FINAL WHERE `_sitesync_version` < 42 AND `_sitesync_deleted` = 0$/);
});

test('deduplication tokens: the same batch and table give the same token; anything else another', () => {
  const token = dedupToken('paris', '01', '09', 'public__orders', 'current');
  assert.equal(token, dedupToken('paris', '01', '09', 'public__orders', 'current'));
  const others = [
    dedupToken('london', '01', '09', 'public__orders', 'current'),
    dedupToken('paris', '02', '09', 'public__orders', 'current'),
    dedupToken('paris', '01', '08', 'public__orders', 'current'),
    dedupToken('paris', '01', '09', 'public__orders__history', 'current'),
    dedupToken('paris', '01', '09', 'public__orders', 'history'),
    // No concatenation ambiguity.
    dedupToken('paris0', '1', '09', 'public__orders', 'current'),
  ];
  assert.equal(new Set([token, ...others]).size, others.length + 1);
  assert.match(token, /^sitesync:[0-9a-f]{64}$/);
});

test("ClickHouse's errors are graded by code: retry, halt the source, or park", () => {
  const server = (code: number) => new ClickHouseServerError(`Code: ${code}. DB::Exception: x`, code, undefined);
  assert.equal(classifyClickHouseError(server(252)), 'transient', 'TOO_MANY_PARTS');
  assert.equal(classifyClickHouseError(server(241)), 'transient', 'MEMORY_LIMIT_EXCEEDED');
  assert.equal(classifyClickHouseError(server(60)), 'schema', 'UNKNOWN_TABLE');
  assert.equal(classifyClickHouseError(server(497)), 'schema', 'ACCESS_DENIED');
  assert.equal(classifyClickHouseError(server(27)), 'data', 'CANNOT_PARSE_INPUT_ASSERTION_FAILED');
  assert.equal(classifyClickHouseError(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8123'), { code: 'ECONNREFUSED' })), 'transient');
  assert.equal(classifyClickHouseError(new ClickHouseDataError('x')), 'data');
  assert.equal(classifyClickHouseError(new SitesyncError('SITESYNC_ERR_APPLY_SCHEMA', 'x')), 'schema');
  assert.equal(classifyClickHouseError(new SitesyncError('SITESYNC_ERR_UNTRUSTED', 'x')), 'data');
  // Described, the grade stays (the server error is the cause), on one line, without the password.
  const described = describeApplyError(new ClickHouseServerError('Code: 60. DB::Exception: Unknown table\nstack', 60, 'UNKNOWN_TABLE'), { source: 'paris', site: 'analytics', what: 'a batch' });
  assert.equal(classifyClickHouseError(described), 'schema');
  assert.match(described.message, /^applying a batch from site paris at site analytics: Code: 60\. DB::Exception: Unknown table \(ClickHouse error 60\); fix the table/);
  const login = describeClickHouseError(new ClickHouseServerError('Code: 516. DB::Exception: default: Authentication failed', 516, 'AUTHENTICATION_FAILED'), 'clickhouse://u:topsecret@h:8123/db', 'analytics');
  assert.ok(login instanceof SitesyncError && login.code === 'SITESYNC_ERR_PERMISSION');
  assert.match(login.message, /^ClickHouse of site analytics \(clickhouse:\/\/u:\*\*\*@h:8123\/db\) refused the login/);
  assert.doesNotMatch(login.message, /topsecret|\n/);
  const down = describeClickHouseError(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), 'clickhouse://u:topsecret@h:8123/db', 'analytics');
  assert.equal(classifyClickHouseError(down), 'transient');
  assert.doesNotMatch(down.message, /topsecret/);
});
