/**
 * A DuckDB site's URL, checked before anything opens: each problem is one line saying what is wrong and what to
 * give; the options parse as documented. A DuckDB site only receives (its positions are none), and a missing
 * engine is one line naming the package to install.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CONNECTORS } from '../../connectors/index.ts';
import { checkDuckDbUrl, parseDuckDbUrl } from '../../connectors/duckdb/duckdb-config.ts';
import { loadDuckDbApi } from '../../connectors/duckdb/duckdb-connection.ts';
import { duckdbPositions } from '../../connectors/duckdb/duckdb-positions.ts';
import { parseConfig } from '../../src/config/load-config.ts';
import { checkDatabases } from '../../src/connector.ts';
import { SitesyncError } from '../../src/errors.ts';

test('URL problems are one phrase each, naming what is wrong', () => {
  const problems: [string, RegExp][] = [
    ['not a url', /^is not a URL$/],
    ['postgres://db/x', /^starts with postgres: instead of duckdb:$/],
    ['duckdb://host/site.duckdb', /^names a host \(host\).*three slashes/],
    ['duckdb:', /^names no file$/],
    ['duckdb:///', /^names no file$/],
    ['duckdb::memory:', /in-memory database/],
    ['duckdb:///data/', /^names a directory/],
    ['duckdb://user:pw@db/x.duckdb', /^names a host \(db\)/],
    ['duckdb:///x.duckdb?deletes=maybe', /^has deletes="maybe"; use deletes=soft .* or deletes=hard/],
    ['duckdb:///x.duckdb?deletes=soft&deletes=hard', /^gives deletes twice$/],
    ['duckdb:///x.duckdb?exportDir=/tmp/out', /^gives only one of exportDir and exportSeconds/],
    ['duckdb:///x.duckdb?exportSeconds=10', /^gives only one of exportDir and exportSeconds/],
    ['duckdb:///x.duckdb?exportDir=/tmp/out&exportSeconds=0', /^has exportSeconds="0"; give a whole number of seconds from 1 to 86400$/],
    ['duckdb:///x.duckdb?exportDir=/tmp/out&exportSeconds=1.5', /^has exportSeconds="1.5"/],
    ['duckdb:///x.duckdb?exportDir=/tmp/out&exportSeconds=90000', /^has exportSeconds="90000"/],
    ['duckdb:///x.duckdb?threads=4', /^has an unknown option "threads" \(known: deletes, exportDir, exportSeconds\)$/],
    ['duckdb:///x.duckdb#frag', /fragment/],
  ];
  for (const [url, pattern] of problems) {
    const problem = checkDuckDbUrl(url);
    assert.ok(problem !== null, `${url} is refused`);
    assert.match(problem, pattern, url);
    assert.doesNotMatch(problem, /\n/);
  }
});

test('paths: absolute as given, relative to the working directory; options with their defaults', () => {
  assert.equal(checkDuckDbUrl('duckdb:///var/lib/sitesync/site.duckdb'), null);
  assert.equal(checkDuckDbUrl('duckdb:relative/site.duckdb?deletes=hard'), null);
  assert.deepEqual(parseDuckDbUrl('duckdb:///var/lib/s.duckdb'), { path: '/var/lib/s.duckdb', deletes: 'soft', export: null });
  assert.deepEqual(parseDuckDbUrl('duckdb:data/s.duckdb?deletes=hard', '/srv'), { path: '/srv/data/s.duckdb', deletes: 'hard', export: null });
  assert.deepEqual(parseDuckDbUrl('duckdb:my%20site.duckdb', '/srv'), { path: '/srv/my site.duckdb', deletes: 'soft', export: null });
  assert.deepEqual(parseDuckDbUrl('duckdb:///s.duckdb?exportDir=out&exportSeconds=60', '/srv'), { path: '/s.duckdb', deletes: 'soft', export: { dir: '/srv/out', seconds: 60 } });
  assert.throws(
    () => parseDuckDbUrl('duckdb:///s.duckdb?deletes=never'),
    (error: unknown) => error instanceof SitesyncError && error.code === 'SITESYNC_ERR_CONFIG' && /^the DuckDB URL has deletes="never"; .*; give a DuckDB file URL such as duckdb:\/\/\//.test(error.message),
  );
});

test('a DuckDB site in a configuration: it must not capture, and its URL is checked with the others', () => {
  const config = (madrid: Record<string, unknown>) =>
    parseConfig({ broker: { url: 'amqp://guest:guest@127.0.0.1:5672/' }, sites: { paris: { postgres: 'postgres://postgres@127.0.0.1:5432/paris' }, madrid } });
  checkDatabases(CONNECTORS, config({ database: { kind: 'duckdb', url: 'duckdb:///var/lib/madrid.duckdb' }, capture: false }));
  assert.throws(
    () => checkDatabases(CONNECTORS, config({ database: { kind: 'duckdb', url: 'duckdb:///var/lib/madrid.duckdb' } })),
    (error: unknown) => error instanceof SitesyncError && error.message === 'sites.madrid: a duckdb database only receives; add "capture: false" to the site',
  );
  assert.throws(
    () => checkDatabases(CONNECTORS, config({ database: { kind: 'duckdb', url: 'duckdb:///var/lib/madrid.duckdb?deletes=later' }, capture: false })),
    (error: unknown) =>
      error instanceof SitesyncError && /^sites\.madrid: the apply URL has deletes="later"; use deletes=soft .*; give a DuckDB file URL such as duckdb:\/\/\/var\/lib\/sitesync\/site\.duckdb/.test(error.message),
  );
});

test('a DuckDB site captures nothing: no position is of its kind', () => {
  for (const text of ['0000000000000001', '0/16B3748', '', 'FFFF']) {
    assert.equal(duckdbPositions.isPosition(text), false);
    assert.equal(duckdbPositions.parse(text), null);
  }
});

test("a missing engine is one line naming the package to install", async () => {
  const missing = (message: string) => () => Promise.reject(Object.assign(new Error(message), { code: 'MODULE_NOT_FOUND' }));
  await assert.rejects(
    loadDuckDbApi(missing("Cannot find module '@duckdb/node-bindings-linux-x64/duckdb.node'\nRequire stack:\n- /app/node_modules/@duckdb/node-bindings/duckdb.js")),
    (error: unknown) => {
      assert.ok(error instanceof SitesyncError && error.code === 'SITESYNC_ERR_CONFIG');
      assert.match(error.message, /^DuckDB sites need the package @duckdb\/node-bindings-linux-x64 \(DuckDB's engine for .*\), which is not installed: run `npm install --include=optional`/);
      assert.doesNotMatch(error.message, /\n/);
      return true;
    },
  );
  await assert.rejects(loadDuckDbApi(missing("Cannot find package '@duckdb/node-api' imported from /app/connectors/duckdb/duckdb-connection.ts")), /^SitesyncError: DuckDB sites need the package @duckdb\/node-api /);
  // The engine of this machine is there: the real import works.
  const api = await loadDuckDbApi();
  assert.equal(typeof api.DuckDBInstance.create, 'function');
});
