import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyEnvironment, loadConfig, parseConfig } from '../../src/config/load-config.ts';
import { capturingSites, configSchema } from '../../src/config/config-schema.ts';
import { SitesyncError } from '../../src/errors.ts';

function minimal(): Record<string, unknown> {
  return {
    broker: { url: 'amqp://guest:guest@127.0.0.1:5672/' },
    sites: {
      paris: { postgres: 'postgres://postgres@127.0.0.1:5432/paris' },
      london: { postgres: 'postgresql://postgres@127.0.0.1:5432/london', tables: ['public.users'] },
    },
  };
}

/** Asserts a SitesyncError SITESYNC_ERR_CONFIG whose message contains every fragment. */
function configError(...fragments: string[]): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.ok(error instanceof SitesyncError, `expected SitesyncError, got ${(error as Error)?.constructor?.name}: ${String(error)}`);
    assert.equal(error.code, 'SITESYNC_ERR_CONFIG');
    assert.equal(error.consequence, 'fatal');
    for (const f of fragments) assert.ok(error.message.includes(f), `message ${JSON.stringify(error.message)} should name ${JSON.stringify(f)}`);
    return true;
  };
}

function isDeeplyFrozen(value: unknown, path = '(root)'): void {
  if (value === null || typeof value !== 'object') return;
  assert.ok(Object.isFrozen(value), `${path} is not frozen`);
  for (const [k, v] of Object.entries(value)) isDeeplyFrozen(v, `${path}.${k}`);
}

const tmp = mkdtempSync(join(tmpdir(), 'sitesync-config-test-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
let fileCounter = 0;
function writeConfig(text: string): string {
  const file = join(tmp, `config-${++fileCounter}.yaml`);
  writeFileSync(file, text);
  return file;
}

const YAML_CONFIG = `
broker:
  url: amqp://guest:guest@127.0.0.1:5672/
sites:
  paris:
    postgres: postgres://postgres@127.0.0.1:5432/paris
  london:
    postgres: postgres://postgres@127.0.0.1:5432/london
capture:
  heartbeatSeconds: 3
`;

describe('parseConfig', () => {
  test('defaults are filled in from the schema', () => {
    const config = parseConfig(minimal());
    assert.equal(config.broker.exchange, 'sitesync.changes');
    assert.equal(config.broker.archiveStream, 'sitesync.archive');
    assert.equal(config.broker.archiveRetentionDays, 90);
    assert.deepEqual(config.capture, {
      maxMessageBytes: 1_048_576,
      maxTransactionsPerMessage: 200,
      maxUnconfirmedMessages: 512,
      heartbeatSeconds: 10,
      statusIntervalSeconds: 1,
      receiveBufferBytes: 65536,
    });
    assert.deepEqual(config.apply, { prefetch: 16, replicaRole: true, retrySeconds: 5, onDataError: 'halt' });
    assert.deepEqual(config.metrics, { port: 0 });
    assert.deepEqual(config.log, { level: 'info', format: 'json' });
    assert.equal(config.sites.paris?.tables, undefined, 'tables has no default: absent means every table');
    assert.deepEqual(config.sites.london?.tables, ['public.users']);
  });

  test('the defaults match the ones the schema declares', () => {
    const config = parseConfig(minimal());
    for (const section of ['capture', 'apply', 'metrics', 'log'] as const) {
      const properties = configSchema.properties[section].properties as Record<string, { default: unknown }>;
      for (const [key, schema] of Object.entries(properties)) {
        assert.deepEqual((config[section] as Record<string, unknown>)[key], schema.default, `${section}.${key}`);
      }
    }
  });

  test('given values win over defaults; a partly given section gets the rest as defaults', () => {
    const raw = minimal();
    raw.capture = { maxMessageBytes: 8192 };
    raw.apply = { replicaRole: false };
    const config = parseConfig(raw);
    assert.equal(config.capture.maxMessageBytes, 8192);
    assert.equal(config.capture.maxTransactionsPerMessage, 200);
    assert.equal(config.apply.replicaRole, false);
    assert.equal(config.apply.prefetch, 16);
  });

  test('the result is deeply frozen, and the input is left untouched', () => {
    const raw = minimal();
    const config = parseConfig(raw);
    isDeeplyFrozen(config);
    assert.throws(() => {
      (config.capture as { maxMessageBytes: number }).maxMessageBytes = 1;
    }, TypeError);
    assert.throws(() => {
      (config.sites.london!.tables as string[]).push('public.x');
    }, TypeError);
    assert.equal(Object.isFrozen(raw), false);
    assert.equal('capture' in raw, false, 'defaults are not written into the caller\'s object');
  });

  test('unknown key', () => {
    const raw = minimal();
    (raw.broker as Record<string, unknown>).urll = 'amqp://x';
    assert.throws(() => parseConfig(raw), configError('broker.urll', 'unknown key'));
    const top = { ...minimal(), extra: 1 };
    assert.throws(() => parseConfig(top), configError('"extra"'));
    const site = minimal();
    (site.sites as Record<string, Record<string, unknown>>).paris!.table = ['public.a'];
    assert.throws(() => parseConfig(site), configError('sites.paris.table'));
    const capture = { ...minimal(), capture: { maxMessageByte: 9000 } };
    assert.throws(() => parseConfig(capture), configError('capture.maxMessageByte'));
  });

  test('missing key', () => {
    const noBroker = minimal();
    delete noBroker.broker;
    assert.throws(() => parseConfig(noBroker), configError('missing key "broker"'));
    const noUrl = { ...minimal(), broker: {} };
    assert.throws(() => parseConfig(noUrl), configError('missing key "broker.url"'));
    const noPostgres = minimal();
    (noPostgres.sites as Record<string, unknown>).paris = {};
    assert.throws(() => parseConfig(noPostgres), configError('missing key "sites.paris.postgres"'));
  });

  test('wrong type', () => {
    const cases: [string, (raw: Record<string, unknown>) => void][] = [
      ['capture.maxMessageBytes', (raw) => (raw.capture = { maxMessageBytes: '65536' })],
      ['capture.maxMessageBytes', (raw) => (raw.capture = { maxMessageBytes: 1.5 })],
      ['broker.archiveRetentionDays', (raw) => ((raw.broker as Record<string, unknown>).archiveRetentionDays = 'ninety')],
      ['apply.replicaRole', (raw) => (raw.apply = { replicaRole: 'yes' })],
      ['log.level', (raw) => (raw.log = { level: 'verbose' })],
      ['sites.london.tables', (raw) => ((raw.sites as Record<string, Record<string, unknown>>).london!.tables = 'public.users')],
      ['capture', (raw) => (raw.capture = 7)],
    ];
    for (const [key, mutate] of cases) {
      const raw = minimal();
      mutate(raw);
      assert.throws(() => parseConfig(raw), configError(key));
    }
  });

  test('out of range', () => {
    const raw = { ...minimal(), capture: { maxMessageBytes: 100 } };
    assert.throws(() => parseConfig(raw), configError('capture.maxMessageBytes', '100'));
    const port = { ...minimal(), metrics: { port: 70000 } };
    assert.throws(() => parseConfig(port), configError('metrics.port'));
  });

  test('bad URL', () => {
    const raw = minimal();
    (raw.broker as Record<string, unknown>).url = 'http://127.0.0.1:15672/';
    assert.throws(() => parseConfig(raw), configError('broker.url', 'http://127.0.0.1:15672/', 'AMQP URL'));
    const pg = minimal();
    (pg.sites as Record<string, Record<string, unknown>>).paris!.postgres = 'mysql://x/paris';
    assert.throws(() => parseConfig(pg), configError('sites.paris.postgres', 'PostgreSQL URL'));
  });

  test('bad site name', () => {
    for (const name of ['Paris', '1paris', 'par-is', 'a'.repeat(41), '']) {
      const raw = minimal();
      (raw.sites as Record<string, unknown>)[name] = { postgres: 'postgres://x/y' };
      assert.throws(() => parseConfig(raw), configError(`site name ${JSON.stringify(name)}`), name);
    }
    const ok = minimal();
    (ok.sites as Record<string, unknown>)['a'.repeat(40)] = { postgres: 'postgres://x/y' };
    assert.doesNotThrow(() => parseConfig(ok));
  });

  test('fewer than two sites', () => {
    const raw = minimal();
    delete (raw.sites as Record<string, unknown>).london;
    assert.throws(() => parseConfig(raw), configError('sites', 'at least two sites'));
    assert.throws(() => parseConfig({ ...minimal(), sites: {} }), configError('at least two sites'));
  });

  test('tables entry without a schema', () => {
    const raw = minimal();
    (raw.sites as Record<string, Record<string, unknown>>).london!.tables = ['public.users', 'orders'];
    assert.throws(() => parseConfig(raw), configError('sites.london.tables.1', '"orders"', 'schema.table'));
    const empty = minimal();
    (empty.sites as Record<string, Record<string, unknown>>).london!.tables = [];
    assert.throws(() => parseConfig(empty), configError('sites.london.tables'));
  });

  test('the origin is named in the message', () => {
    assert.throws(() => parseConfig({}, 'sitesync.yaml'), configError('sitesync.yaml:', 'missing key'));
  });

  test('every site captures unless told otherwise; capture: false makes a site that only receives', () => {
    assert.deepEqual(capturingSites(parseConfig(minimal())), ['paris', 'london']);
    const raw = minimal();
    (raw.sites as Record<string, Record<string, unknown>>).paris!.capture = false;
    const config = parseConfig(raw);
    assert.equal(config.sites.paris?.capture, false);
    assert.deepEqual(capturingSites(config), ['london']);
  });

  test('capture off everywhere is refused; a site that does not capture may list the tables it accepts', () => {
    const none = minimal();
    for (const site of Object.values(none.sites as Record<string, Record<string, unknown>>)) {
      site.capture = false;
      delete site.tables;
    }
    assert.throws(() => parseConfig(none), configError('no site captures', 'capture: false'));
    const listed = minimal();
    (listed.sites as Record<string, Record<string, unknown>>).london!.capture = false;
    assert.deepEqual(parseConfig(listed).sites.london!.tables, (listed.sites as Record<string, { tables: string[] }>).london!.tables);
  });

  test("a site's broker URL and broker user must name the same RabbitMQ user", () => {
    const config = minimal();
    const london = (config.sites as Record<string, Record<string, unknown>>).london!;
    london.brokerUrl = 'amqp://sitesync_london:pw@127.0.0.1/';
    london.brokerUser = 'someone_else';
    assert.throws(() => parseConfig(config), configError('sites.london.brokerUrl logs in as "sitesync_london" but sites.london.brokerUser is "someone_else"'));
    london.brokerUser = 'sitesync_london';
    assert.equal(parseConfig(config).sites.london!.brokerUser, 'sitesync_london');
  });

  test('a receive buffer is 0 (the kernel sizes it) or at least 65536, which cannot stall the connection', () => {
    for (const ok of [0, 65536, 1 << 20]) {
      const raw = minimal();
      raw.capture = { receiveBufferBytes: ok };
      assert.equal(parseConfig(raw).capture.receiveBufferBytes, ok);
    }
    for (const bad of [1, 32768, 65535]) {
      const raw = minimal();
      raw.capture = { receiveBufferBytes: bad };
      assert.throws(() => parseConfig(raw), configError(`capture.receiveBufferBytes = ${bad} would stall`, 'set it to 0', 'at least 65536'));
    }
  });
});

describe('applyEnvironment', () => {
  test('SITESYNC_BROKER__URL overrides the file', () => {
    const result = applyEnvironment(minimal(), { SITESYNC_BROKER__URL: 'amqps://user:pw@broker.example:5671/vhost' });
    assert.equal((result.broker as Record<string, unknown>).url, 'amqps://user:pw@broker.example:5671/vhost');
    assert.equal(parseConfig(result).broker.url, 'amqps://user:pw@broker.example:5671/vhost');
  });

  test('SITESYNC_CAPTURE__MAXMESSAGEBYTES=65536 sets capture.maxMessageBytes to the number 65536', () => {
    const result = applyEnvironment(minimal(), { SITESYNC_CAPTURE__MAXMESSAGEBYTES: '65536' });
    assert.deepEqual(result.capture, { maxMessageBytes: 65536 });
    const config = parseConfig(result);
    assert.equal(config.capture.maxMessageBytes, 65536);
    assert.equal(typeof config.capture.maxMessageBytes, 'number');
    assert.equal(config.capture.maxTransactionsPerMessage, 200);
  });

  test('keys match case-insensitively and values are read as YAML', () => {
    const result = applyEnvironment(minimal(), {
      SITESYNC_Capture__HeartbeatSeconds: '2.5',
      SITESYNC_APPLY__REPLICAROLE: 'false',
      SITESYNC_LOG__LEVEL: 'debug',
      SITESYNC_SITES__LONDON__TABLES: '[public.a, app.b]',
    });
    const config = parseConfig(result);
    assert.equal(config.capture.heartbeatSeconds, 2.5);
    assert.equal(config.apply.replicaRole, false);
    assert.equal(config.log.level, 'debug');
    assert.deepEqual(config.sites.london?.tables, ['public.a', 'app.b']);
  });

  test('SITESYNC_SITES__PARIS__POSTGRES sets sites.paris.postgres; a new site can be added', () => {
    const result = applyEnvironment(minimal(), {
      SITESYNC_SITES__PARIS__POSTGRES: 'postgres://other@10.0.0.1:5432/paris',
      SITESYNC_SITES__BERLIN__POSTGRES: 'postgres://x@10.0.0.2/berlin',
    });
    const config = parseConfig(result);
    assert.equal(config.sites.paris?.postgres, 'postgres://other@10.0.0.1:5432/paris');
    assert.equal(config.sites.berlin?.postgres, 'postgres://x@10.0.0.2/berlin');
    assert.deepEqual(Object.keys(config.sites).sort(), ['berlin', 'london', 'paris']);
  });

  test('unrelated environment variables are ignored', () => {
    const raw = minimal();
    const warnings: string[] = [];
    const result = applyEnvironment(raw, {
      PATH: '/usr/bin',
      HOME: '/root',
      SITESYNC: 'x',
      SITESYNCX_BROKER__URL: 'amqp://wrong',
      sitesync_broker__url: 'amqp://wrong',
      BROKER__URL: 'amqp://wrong',
      SITESYNC_: 'ignored: nothing after the prefix',
      NODE_OPTIONS: '--import tsx',
    }, (line) => warnings.push(line));
    assert.deepEqual(result, raw);
    assert.equal(parseConfig(result).broker.url, 'amqp://guest:guest@127.0.0.1:5672/');
    assert.equal(warnings.length, 1, 'only SITESYNC_ has the prefix, and it names no key');
    assert.match(warnings[0]!, /^environment variable SITESYNC_ names no configuration key; ignored/);
  });

  test('does not change its input', () => {
    const raw = minimal();
    const before = structuredClone(raw);
    applyEnvironment(raw, { SITESYNC_BROKER__URL: 'amqp://other/', SITESYNC_SITES__PARIS__POSTGRES: 'postgres://z/z' });
    assert.deepEqual(raw, before);
  });

  test('a SITESYNC_ variable that names no key is ignored with a warning naming it and the fix, never its value', () => {
    const raw = minimal();
    const warnings: string[] = [];
    const result = applyEnvironment(raw, {
      // Kubernetes, for a Service named sitesync:
      SITESYNC_PORT_9464_TCP: 'tcp://10.96.0.12:9464',
      SITESYNC_SERVICE_HOST: '10.96.0.12',
      // docker-compose.yml's port override, and a value that is not even valid YAML:
      SITESYNC_AMQP_PORT: '[5672',
      SITESYNC_BROKER__PASSWORD: 'hunter2',
      SITESYNC_BROKER__URL__HOST: 'hunter2',
    }, (line) => warnings.push(line));
    assert.deepEqual(result, raw);
    assert.doesNotThrow(() => parseConfig(result));
    assert.deepEqual(warnings, [
      'environment variable SITESYNC_PORT_9464_TCP names no configuration key (it would set "port_9464_tcp"); ignored — rename it if it was meant for sitesync (SITESYNC_ + key path in capitals joined by __, e.g. SITESYNC_BROKER__URL)',
      'environment variable SITESYNC_SERVICE_HOST names no configuration key (it would set "service_host"); ignored — rename it if it was meant for sitesync (SITESYNC_ + key path in capitals joined by __, e.g. SITESYNC_BROKER__URL)',
      'environment variable SITESYNC_AMQP_PORT names no configuration key (it would set "amqp_port"); ignored — rename it if it was meant for sitesync (SITESYNC_ + key path in capitals joined by __, e.g. SITESYNC_BROKER__URL)',
      'environment variable SITESYNC_BROKER__PASSWORD names no configuration key (it would set "broker.password"); ignored — rename it if it was meant for sitesync (SITESYNC_ + key path in capitals joined by __, e.g. SITESYNC_BROKER__URL)',
      'environment variable SITESYNC_BROKER__URL__HOST names no configuration key (it would set "broker.url.host"); ignored — rename it if it was meant for sitesync (SITESYNC_ + key path in capitals joined by __, e.g. SITESYNC_BROKER__URL)',
    ]);
  });

  test('a free key (a site, a table) must match its pattern, or the variable is ignored saying why', () => {
    const warnings: string[] = [];
    const result = applyEnvironment(minimal(), { 'SITESYNC_SITES__PAR-IS__POSTGRES': 'postgres://x/y' }, (line) => warnings.push(line));
    assert.deepEqual(result, minimal());
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /SITESYNC_SITES__PAR-IS__POSTGRES names no configuration key \(it would set "sites\.par-is\.postgres", but "par-is" is not a site name of lower-case letters/);
    const table = applyEnvironment(minimal(), { 'SITESYNC_CONFLICTS__TABLES__PUBLIC.USERS__POLICY': 'keep-local' }, (line) => warnings.push(line));
    assert.equal(parseConfig(table).conflicts.tables['public.users']?.policy, 'keep-local');
    assert.equal(warnings.length, 1, 'a schema.table key is a real key');
  });

  test('every key the schema declares can be set, including keys added to it later', () => {
    // Walks the schema itself, so that a key another change adds is covered here too.
    const sections = configSchema.properties as Record<string, { properties?: Record<string, unknown>; additionalProperties?: unknown }>;
    const siteKeys = Object.keys((sections.sites!.additionalProperties as { properties: Record<string, unknown> }).properties);
    const names = [
      ...Object.entries(sections).flatMap(([section, schema]) => Object.keys(schema.properties ?? {}).map((key) => `SITESYNC_${section}__${key}`.toUpperCase())),
      ...siteKeys.map((key) => `SITESYNC_SITES__PARIS__${key.toUpperCase()}`),
      ...siteKeys.map((key) => `SITESYNC_SITES__MADRID__${key.toUpperCase()}`),
    ];
    const warnings: string[] = [];
    applyEnvironment(minimal(), Object.fromEntries(names.map((name) => [name, 'x'])), (line) => warnings.push(line));
    assert.deepEqual(warnings, []);
    assert.ok(names.includes('SITESYNC_SITES__PARIS__POSTGRES') && names.includes('SITESYNC_CAPTURE__MAXMESSAGEBYTES'));
  });

  test('real keys, a new site included, still apply without a warning', () => {
    const warnings: string[] = [];
    const result = applyEnvironment(minimal(), {
      SITESYNC_BROKER__URL: 'amqp://u:p@b/',
      SITESYNC_SITES__PARIS__POSTGRES: 'postgres://x@h/paris2',
      SITESYNC_SITES__MADRID__POSTGRES: 'postgres://x@h/madrid',
      SITESYNC_CAPTURE__MAXMESSAGEBYTES: '65536',
    }, (line) => warnings.push(line));
    const config = parseConfig(result);
    assert.deepEqual(warnings, []);
    assert.equal(config.broker.url, 'amqp://u:p@b/');
    assert.equal(config.sites.paris?.postgres, 'postgres://x@h/paris2');
    assert.equal(config.sites.madrid?.postgres, 'postgres://x@h/madrid');
    assert.equal(config.capture.maxMessageBytes, 65536);
  });

  test('without onWarning, the warning goes to stderr as one "sitesync: warning:" line', (t) => {
    const written: string[] = [];
    t.mock.method(process.stderr, 'write', (chunk: string) => {
      written.push(chunk);
      return true;
    });
    applyEnvironment(minimal(), { SITESYNC_SERVICE_HOST: '10.96.0.12' });
    t.mock.restoreAll();
    assert.equal(written.length, 1);
    assert.match(written[0]!, /^sitesync: warning: environment variable SITESYNC_SERVICE_HOST names no configuration key .*\n$/);
    assert.ok(!written[0]!.includes('10.96.0.12'), 'the value is never shown');
  });

  test('an environment value that is not valid YAML is a configuration error naming the variable, not the value', () => {
    for (const value of ['[unclosed', '@prod', '*hunter2', '[postgres://u:hunter2@h/db']) {
      assert.throws(() => applyEnvironment(minimal(), { SITESYNC_BROKER__EXCHANGE: value }), (error: unknown) => {
        configError('SITESYNC_BROKER__EXCHANGE', 'not a valid YAML value')(error);
        assert.ok(!(error as Error).message.includes(value), (error as Error).message);
        assert.ok(!(error as Error).message.includes('hunter2'), (error as Error).message);
        return true;
      }, value);
    }
  });
});

describe('loadConfig', () => {
  test('reads the YAML file, lays the environment over it, fills defaults and freezes', () => {
    const file = writeConfig(YAML_CONFIG);
    const config = loadConfig(file, { SITESYNC_BROKER__URL: 'amqp://env/', SITESYNC_CAPTURE__MAXMESSAGEBYTES: '65536', PATH: '/bin' });
    assert.equal(config.broker.url, 'amqp://env/');
    assert.equal(config.capture.maxMessageBytes, 65536);
    assert.equal(config.capture.heartbeatSeconds, 3);
    assert.equal(config.broker.exchange, 'sitesync.changes');
    assert.equal(config.broker.archiveRetentionDays, 90);
    isDeeplyFrozen(config);
  });

  test('a variable that names no key is reported through onWarning and does not stop loading', () => {
    const file = writeConfig(YAML_CONFIG);
    const warnings: string[] = [];
    const config = loadConfig(file, { SITESYNC_PORT_9464_TCP: 'tcp://10.96.0.12:9464', SITESYNC_CAPTURE__HEARTBEATSECONDS: '4' }, (line) => warnings.push(line));
    assert.equal(config.capture.heartbeatSeconds, 4);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /SITESYNC_PORT_9464_TCP/);
  });

  test('an environment override wins over the file value of the same key', () => {
    const file = writeConfig(YAML_CONFIG);
    assert.equal(loadConfig(file, { SITESYNC_CAPTURE__HEARTBEATSECONDS: '0' }).capture.heartbeatSeconds, 0);
  });

  test('a missing file, invalid YAML and a non-mapping are configuration errors naming the file', () => {
    const missing = join(tmp, 'does-not-exist.yaml');
    assert.throws(() => loadConfig(missing, {}), configError(missing));
    const broken = writeConfig('broker: [unclosed\n');
    assert.throws(() => loadConfig(broken, {}), configError(broken, 'not valid YAML'));
    const list = writeConfig('- a\n- b\n');
    assert.throws(() => loadConfig(list, {}), configError(list, 'mapping'));
    const empty = writeConfig('');
    assert.throws(() => loadConfig(empty, {}), configError(empty));
  });

  test('a YAML warning in the file goes to onWarning with its position, not through process warnings', (t) => {
    const emitted = t.mock.method(process, 'emitWarning', () => undefined);
    // The yaml package would print the line, password and all.
    const file = writeConfig(YAML_CONFIG.replace('url: amqp://guest:guest@', 'url: !vault amqp://guest:hunter2@'));
    const warnings: string[] = [];
    assert.equal(loadConfig(file, {}, (line) => warnings.push(line)).broker.url, 'amqp://guest:hunter2@127.0.0.1:5672/');
    assert.equal(emitted.mock.callCount(), 0);
    assert.deepEqual(warnings, [`${file}: Unresolved tag at line 3, column 8`]);
  });

  test('a validation error names the file', () => {
    const file = writeConfig(YAML_CONFIG.replace('amqp://', 'http://'));
    assert.throws(() => loadConfig(file, {}), configError(file, 'broker.url'));
  });
});
