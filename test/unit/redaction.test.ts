/**
 * No password in any output: URLs in messages, values quoted by configuration errors, and log fields.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { applyEnvironment, parseConfig } from '../../src/config/load-config.ts';
import { createLogger, redactSecrets, redactUrl } from '../../src/observability/logger.ts';

function minimal(): Record<string, unknown> {
  return {
    broker: { url: 'amqp://guest:guest@127.0.0.1:5672/' },
    sites: {
      paris: { postgres: 'postgres://postgres@127.0.0.1:5432/paris' },
      london: { postgres: 'postgres://postgres@127.0.0.1:5432/london' },
    },
  };
}

/** The message of the error fn throws; fails if it throws nothing. */
function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    return (error as Error).message;
  }
  assert.fail('expected an error');
}

describe('redactUrl', () => {
  test('hides the user-info password', () => {
    assert.equal(redactUrl('postgres://app:hunter2@db.example:5432/paris'), 'postgres://app:***@db.example:5432/paris');
    assert.equal(redactUrl('amqps://sitesync:hunter2@broker:5671/prod'), 'amqps://sitesync:***@broker:5671/prod');
  });

  test('hides password, sslpassword and pass in the query string, whatever their case, and keeps the rest as written', () => {
    assert.equal(redactUrl('postgres://app@db/paris?sslmode=require&password=hunter2'), 'postgres://app@db/paris?sslmode=require&password=***');
    assert.equal(redactUrl('postgres://app@db/paris?SSLPassword=hunter2&application_name=a%20b'), 'postgres://app@db/paris?SSLPassword=***&application_name=a%20b');
    assert.equal(redactUrl('amqp://broker/?Pass=hunter2'), 'amqp://broker/?Pass=***');
  });

  test('hides both at once', () => {
    const redacted = redactUrl('postgresql://app:hunter2@db/paris?password=hunter3&connect_timeout=5');
    assert.equal(redacted, 'postgresql://app:***@db/paris?password=***&connect_timeout=5');
  });

  test('a URL with no password comes back unchanged', () => {
    for (const url of ['postgres://postgres@127.0.0.1:5432/paris', 'amqp://127.0.0.1', 'postgres://db/paris?sslmode=require&passfile=/x', 'https://example.com/a?b=c']) {
      assert.equal(redactUrl(url), url);
    }
  });

  test('an unparseable URL is not echoed, since where its password ends cannot be known', () => {
    const redacted = redactUrl('postgres://app:hunter2@h1:5432,h2:5432/paris');
    assert.ok(!redacted.includes('hunter2'), redacted);
    assert.match(redacted, /unparseable/);
  });
});

describe('redactSecrets', () => {
  test('redacts every URL in a sentence and leaves the words around them alone', () => {
    const text = 'PostgreSQL of site paris (postgres://app:hunter2@db:5432/paris) is unreachable; RabbitMQ at amqp://sitesync:hunter3@broker:5672/. Fix it.';
    assert.equal(
      redactSecrets(text),
      'PostgreSQL of site paris (postgres://app:***@db:5432/paris) is unreachable; RabbitMQ at amqp://sitesync:***@broker:5672/. Fix it.',
    );
  });

  test('a URL of any scheme, inside JSON quotes, and a libpq password= keyword', () => {
    assert.equal(redactSecrets('"mysql://u:hunter2@h/db"'), '"mysql://u:***@h/db"');
    assert.equal(redactSecrets('"host=db user=app password=hunter2 dbname=paris"'), '"host=db user=app password=*** dbname=paris"');
  });

  test('text without secrets is unchanged', () => {
    const text = 'sites.paris.postgres = "postgres://postgres@127.0.0.1:5432/paris" is fine; see https://example.com/docs.';
    assert.equal(redactSecrets(text), text);
  });
});

describe('configuration errors never show a password', () => {
  test('a URL under the wrong scheme is quoted redacted', () => {
    const raw = minimal();
    (raw.sites as Record<string, Record<string, unknown>>).paris!.postgres = 'mysql://u:hunter2@h/db';
    const message = messageOf(() => parseConfig(raw));
    assert.match(message, /sites\.paris\.postgres = "mysql:\/\/u:\*\*\*@h\/db" is not valid; it must be a PostgreSQL URL/);
    assert.ok(!message.includes('hunter2'), message);
  });

  test('a wrong value from the environment is quoted redacted', () => {
    const raw = applyEnvironment(minimal(), { SITESYNC_BROKER__URL: 'http://sitesync:hunter2@broker:15672/' });
    const message = messageOf(() => parseConfig(raw));
    assert.match(message, /broker\.url = "http:\/\/sitesync:\*\*\*@broker:15672\/"/);
    assert.ok(!message.includes('hunter2'), message);
  });

  test('an environment value that is not valid YAML is not shown at all', () => {
    for (const value of ['[postgres://app:hunter2@db/paris', '*hunter2', '"hunter2', '{hunter2']) {
      const message = messageOf(() => applyEnvironment(minimal(), { SITESYNC_SITES__PARIS__POSTGRES: value }, () => undefined));
      assert.match(message, /environment variable SITESYNC_SITES__PARIS__POSTGRES is not a valid YAML value/);
      assert.ok(!message.includes('hunter2'), message);
    }
  });

  test('a YAML warning about an environment value goes to onWarning without the value, never to process warnings', (t) => {
    const emitted = t.mock.method(process, 'emitWarning', () => undefined);
    const warnings: string[] = [];
    applyEnvironment(minimal(), { SITESYNC_BROKER__EXCHANGE: '!secret hunter2', SITESYNC_APPLY__ONDATAERROR: '!!int hunter2' }, (line) => warnings.push(line));
    assert.equal(emitted.mock.callCount(), 0);
    assert.ok(warnings.length === 2 && warnings.every((w) => !w.includes('hunter2')), warnings.join('\n'));
  });
});

describe('logger', () => {
  test('connection URLs in log fields are redacted, the new per-site ones included', () => {
    let output = '';
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        output += chunk.toString();
        done();
      },
    });
    const log = createLogger('info', sink);
    const secret = 'postgres://app:hunter2@db/paris';
    log.info({ brokerUrl: 'amqp://u:hunter2@b/', monitor: secret, applyPostgres: secret, capturePostgres: secret, monitorPostgres: secret }, 'top level');
    log.info({ site: { brokerUrl: 'amqp://u:hunter2@b/', monitor: secret, applyPostgres: secret, capturePostgres: secret, monitorPostgres: secret, url: secret, postgres: secret } }, 'nested');
    assert.ok(output.includes('top level') && output.includes('nested'), output);
    assert.ok(!output.includes('hunter2'), output);
  });
});
