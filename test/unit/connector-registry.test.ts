/**
 * A site's database is checked by its connector before anything connects: an unknown kind, or a URL of
 * another database's form, is one configuration line naming the site, what is wrong and what to give.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CONNECTORS } from '../../connectors/index.ts';
import { parseConfig } from '../../src/config/load-config.ts';
import { checkDatabases, connectorFor, describeSitePosition } from '../../src/connector.ts';
import { SitesyncError } from '../../src/errors.ts';

const configWith = (madrid: Record<string, unknown>) =>
  parseConfig({ broker: { url: 'amqp://guest:guest@127.0.0.1:5672/' }, sites: { paris: { postgres: 'postgres://postgres@127.0.0.1:5432/paris' }, madrid } });

function configError(pattern: RegExp): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof SitesyncError && error.code === 'SITESYNC_ERR_CONFIG', String(error));
    assert.match(error.message, pattern);
    assert.doesNotMatch(error.message, /\n/);
    return true;
  };
}

test('every site finds its connector: the postgres shorthand and database.kind alike', () => {
  const config = configWith({ database: { kind: 'mariadb', url: 'mariadb://root@127.0.0.1:3306/' } });
  checkDatabases(CONNECTORS, config);
  assert.equal(connectorFor(CONNECTORS, config, 'paris').kind, 'postgres');
  assert.equal(connectorFor(CONNECTORS, config, 'madrid').kind, 'mariadb');
});

test('a kind no connector has is refused, naming the ones there are', () => {
  const config = configWith({ database: { kind: 'db2', url: 'db2://db:50000/x' } });
  assert.throws(() => checkDatabases(CONNECTORS, config), configError(/^sites\.madrid\.database\.kind = "db2" is not a database sitesync knows; use one of: postgres, mariadb, sqlserver, oracle, duckdb, clickhouse$/));
});

test("a URL of another database's form is refused, with the form to give", () => {
  const config = configWith({ database: { kind: 'mariadb', url: 'postgres://postgres@127.0.0.1:5432/madrid' } });
  assert.throws(() => checkDatabases(CONNECTORS, config), configError(/^sites\.madrid: the capture URL starts with postgres:\/\/ instead of mariadb:\/\/ or mysql:\/\/; give a MariaDB URL such as mariadb:\/\//));
});

test("positions read in each site's own database's form", () => {
  const config = configWith({ database: { kind: 'mariadb', url: 'mariadb://root@127.0.0.1:3306/' } });
  assert.equal(describeSitePosition(CONNECTORS, config, 'paris', '00000000016B3748'), '0/16B3748');
  assert.equal(describeSitePosition(CONNECTORS, config, 'madrid', '0000002A00000000000004D2'), '000042:1234');
  assert.equal(describeSitePosition(CONNECTORS, config, 'madrid', null), 'none');
});

test('a site gives its database once: database or the postgres shorthand, not both', () => {
  assert.throws(
    () => configWith({ database: { kind: 'mariadb', url: 'mariadb://root@127.0.0.1:3306/' }, postgres: 'postgres://postgres@127.0.0.1:5432/madrid' }),
    configError(/sites\.madrid has both "database" and "postgres"; keep one: "postgres: URL" is short for "database: \{kind: postgres, url: URL\}"/),
  );
  assert.throws(() => configWith({ database: { kind: 'mariadb' } }), configError(/missing key "sites\.madrid\.database\.url"/));
});

test('a SQL Server site: its URL must name the database; its positions display as SQL Server prints an LSN', () => {
  const config = configWith({ database: { kind: 'sqlserver', url: 'sqlserver://sitesync:secret@db.madrid:1433/shop' } });
  checkDatabases(CONNECTORS, config);
  assert.equal(describeSitePosition(CONNECTORS, config, 'madrid', '0000002A000001F00003'), '0000002a:000001f0:0003');
  const noDatabase = configWith({ database: { kind: 'sqlserver', url: 'sqlserver://sitesync:secret@db.madrid:1433/' } });
  assert.throws(() => checkDatabases(CONNECTORS, noDatabase), (error: unknown) => {
    assert.ok(error instanceof SitesyncError && error.code === 'SITESYNC_ERR_CONFIG', String(error));
    assert.match(error.message, /^sites\.madrid: the capture URL .*database.*; give a SQL Server URL such as sqlserver:\/\//);
    assert.doesNotMatch(error.message, /secret/);
    return true;
  });
});

test('an Oracle site: its URL must name the service; its positions display as commit SCN, thread and XID', () => {
  const config = configWith({ database: { kind: 'oracle', url: 'oracle://C%23%23SITESYNC:secret@db.madrid:1521/FREEPDB1' } });
  checkDatabases(CONNECTORS, config);
  assert.equal(describeSitePosition(CONNECTORS, config, 'madrid', '00000000005BBD5900010A001F00E3010000'), '6012249/1/0A001F00E3010000');
  const noService = configWith({ database: { kind: 'oracle', url: 'oracle://C%23%23SITESYNC:secret@db.madrid:1521/' } });
  assert.throws(() => checkDatabases(CONNECTORS, noService), (error: unknown) => {
    assert.ok(error instanceof SitesyncError && error.code === 'SITESYNC_ERR_CONFIG', String(error));
    assert.match(error.message, /^sites\.madrid: the capture URL .*; give an Oracle URL such as oracle:\/\//);
    assert.doesNotMatch(error.message, /secret/);
    return true;
  });
});
