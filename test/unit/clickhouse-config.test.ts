/**
 * A ClickHouse site's URL is checked before anything connects: its problems are one line that never shows the
 * password; the connector is registered as a store that only receives.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CONNECTORS } from '../../connectors/index.ts';
import { checkClickHouseUrl, parseClickHouseUrl } from '../../connectors/clickhouse/clickhouse-config.ts';
import { parseConfig } from '../../src/config/load-config.ts';
import { checkDatabases } from '../../src/connector.ts';
import { SitesyncError } from '../../src/errors.ts';

test('a clickhouse:// URL gives the HTTP endpoint, user, password, database and delete mode', () => {
  assert.deepEqual(parseClickHouseUrl('clickhouse://sitesync:s%40cret@db.analytics:8123/warehouse?deletes=soft'), {
    endpoint: 'http://db.analytics:8123',
    username: 'sitesync',
    password: 's@cret',
    database: 'warehouse',
    deletes: 'soft',
    tls: false,
  });
  assert.deepEqual(parseClickHouseUrl('clickhouses://db'), { endpoint: 'https://db:8443', username: 'default', password: '', database: 'default', deletes: 'hard', tls: true });
  assert.equal(parseClickHouseUrl('clickhouse://[::1]/x').endpoint, 'http://[::1]:8123');
  assert.equal(checkClickHouseUrl('clickhouse://u:p@h:8123/db?deletes=hard'), null);
});

test('every problem with a URL is one line naming it, and never the password', () => {
  const cases: [string, RegExp][] = [
    ['not a url', /^is not a URL$/],
    ['postgres://u:topsecret@h/db', /^starts with postgres:\/\/ instead of clickhouse:\/\/ or clickhouses:\/\/$/],
    ['clickhouse://u:topsecret@h:99999/db', /^is not a URL$|^has port/],
    ['clickhouse://u:topsecret@h/a/b', /^has path \/a\/b: give one database name after the host$/],
    ['clickhouse://u:topsecret@h/db?deletes=maybe', /^has deletes=maybe: give deletes=hard or deletes=soft$/],
    ['clickhouse://u:topsecret@h/db?password=x', /^has option "password", which sitesync does not know \(known: deletes=hard\|soft\)$/],
    ['clickhouse://u:topsecret@h/%zz', /malformed %-escape/],
  ];
  for (const [url, expected] of cases) {
    const problem = checkClickHouseUrl(url);
    assert.ok(problem !== null, url);
    assert.match(problem, expected, url);
    assert.doesNotMatch(problem, /topsecret|\n/);
  }
  assert.throws(() => parseClickHouseUrl('clickhouse://u:topsecret@h/db?deletes=x'), (error: Error) => !/topsecret/.test(error.message) && /give a ClickHouse URL such as/.test(error.message));
});

test('the clickhouse connector is registered, only receives, and its sites must say capture: false', () => {
  const connector = CONNECTORS.get('clickhouse');
  assert.ok(connector);
  assert.equal(connector.createSource, undefined);
  assert.equal(typeof connector.query, 'function');
  assert.equal(connector.positions.isPosition('0000000000000001'), false, 'a ClickHouse site has no positions of its own');
  assert.equal(connector.positions.parse('0/16B3748'), null);
  const config = (extra: Record<string, unknown>) =>
    parseConfig({ broker: { url: 'amqp://guest:guest@127.0.0.1:5672/' }, sites: { paris: { postgres: 'postgres://postgres@127.0.0.1:5432/paris' }, analytics: { database: { kind: 'clickhouse', url: 'clickhouse://u:topsecret@ch:8123/sitesync' }, ...extra } } });
  assert.throws(() => checkDatabases(CONNECTORS, config({})), (error) => error instanceof SitesyncError && /^sites\.analytics: a clickhouse database only receives; add "capture: false" to the site$/.test(error.message));
  checkDatabases(CONNECTORS, config({ capture: false }));
  const bad = parseConfig({ broker: { url: 'amqp://guest:guest@127.0.0.1:5672/' }, sites: { paris: { postgres: 'postgres://postgres@127.0.0.1:5432/paris' }, analytics: { database: { kind: 'clickhouse', url: 'clickhouse://u:topsecret@ch:8123/sitesync?deletes=sometimes' }, capture: false } } });
  assert.throws(() => checkDatabases(CONNECTORS, bad), (error) => error instanceof SitesyncError && /^sites\.analytics: the apply URL has deletes=sometimes.*give a ClickHouse URL/.test(error.message) && !/topsecret/.test(error.message));
});
