/**
 * Selective subscribers: `sitesync subscribe` / `unsubscribe` (the real CLI) against running sites, which
 * are never restarted. A subscriber's queue receives the messages of its sites that touch its tables,
 * nothing else, from the moment it subscribed.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import amqp, { type Channel, type ChannelModel } from 'amqplib';
import { subscriberQueue, tablesExchange } from '../../src/config/names.ts';
import { decodeMessage } from '../../src/events/avro-codec.ts';
import { tablesTouched } from '../../src/events/transaction.ts';
import { BROKER, createTestSites, sql, waitFor, type RunningSite, type TestSites } from '../helpers/test-sites.ts';
import { runSitesync, type CliResult } from '../helpers/run-cli.ts';

const ROOT = new URL('../../', import.meta.url).pathname;

const sitesync = (args: string[]): Promise<CliResult> => runSitesync(args, { timeoutMs: 60_000 });

/** What a subscriber received: per message, per transaction, its site and `table:id` of every row. */
interface Received {
  site: string;
  tables: string[];
  rows: string[];
}

describe('selective subscribers', () => {
  let t: TestSites;
  let paris: RunningSite;
  let london: RunningSite;
  let connection: ChannelModel;
  let channel: Channel;
  const restarts: string[] = [];
  const settled: string[] = [];
  let name: string;
  let queue: string;

  const write = async (short: 'paris' | 'london', table: 'accounts' | 'notes', id: number): Promise<void> => {
    await sql(t.db(short), `INSERT INTO ${table} (id, v) VALUES ($1, $2)`, [id, `${short}-${id}`]);
  };
  /** The other site applied the row: the message went through the broker and is in every queue it routes to. */
  const applied = async (short: 'paris' | 'london', table: string, id: number): Promise<void> => {
    const other = short === 'paris' ? 'london' : 'paris';
    await waitFor(`${short} ${table} ${id} at ${other}`, async () => (await sql(t.db(other), `SELECT 1 FROM ${table} WHERE id = $1`, [id])).length > 0);
  };
  const writeAndWait = async (short: 'paris' | 'london', table: 'accounts' | 'notes', id: number): Promise<void> => {
    await write(short, table, id);
    await applied(short, table, id);
  };
  /**
   * Takes (and acknowledges) everything in the subscriber's queue. A consumer, not basic.get, which
   * quorum queues with a single active consumer refuse. Called once every write has been applied at the
   * other site, so the queue holds all it will.
   */
  const drain = async (): Promise<Received[]> => {
    const received: Received[] = [];
    const { messageCount } = await channel.checkQueue(queue);
    if (messageCount === 0) return received;
    let taken = 0;
    let all!: () => void;
    const done = new Promise<void>((resolve, reject) => {
      all = resolve;
      setTimeout(() => reject(new Error(`the subscriber queue delivered ${taken} of its ${messageCount} messages within 10 s`)), 10_000).unref();
    });
    const { consumerTag } = await channel.consume(queue, (delivery) => {
      if (!delivery) return;
      const message = decodeMessage(delivery.content, Number(delivery.properties.headers?.['sitesync-schema-version']));
      for (const tx of message.transactions) {
        const rows = tx.changes.flatMap((c) => (c.op === 'insert' ? [`${c.relation.table}:${c.newRow.values[0]}`] : []));
        received.push({ site: tx.site, tables: tablesTouched([tx]), rows });
      }
      channel.ack(delivery);
      if (++taken >= messageCount) all();
    });
    await done;
    await channel.cancel(consumerTag);
    return received;
  };

  before(async () => {
    t = await createTestSites(['paris', 'london']);
    name = `test.${t.suffix}`;
    queue = subscriberQueue(name);
    await t.everywhere('CREATE TABLE accounts (id int PRIMARY KEY, v text); CREATE TABLE notes (id int PRIMARY KEY, v text)');
    paris = await t.start('paris');
    london = await t.start('london');
    for (const [short, site] of [['paris', paris], ['london', london]] as const) {
      // Any new capture or apply session after this point would be a restart.
      site.events.on('capture:streaming', () => restarts.push(`${short} capture`));
      site.events.on('apply:consuming', () => restarts.push(`${short} apply`));
      site.done.then(
        () => settled.push(`${short} stopped`),
        (error: unknown) => settled.push(`${short} failed: ${(error as Error).message}`),
      );
    }
    connection = await amqp.connect(BROKER);
    channel = await connection.createChannel();
    await channel.prefetch(1);
    // Published before anyone subscribed: no subscriber receives it.
    await writeAndWait('paris', 'accounts', 1);
  });

  after(async () => {
    await connection?.close().catch(() => undefined);
    try {
      await t?.cleanup();
    } finally {
      // cleanup() knows neither the subscriber queues nor the headers exchange.
      if (t) {
        const admin = await amqp.connect(BROKER);
        for (const drop of [
          (c: Channel) => c.deleteQueue(queue),
          (c: Channel) => c.deleteQueue(subscriberQueue(`bad.${t.suffix}`)),
          (c: Channel) => c.deleteExchange(tablesExchange(t.config.broker.exchange)),
        ]) {
          const c = await admin.createChannel();
          c.on('error', () => undefined);
          await drop(c).catch(() => undefined);
          await c.close().catch(() => undefined);
        }
        await admin.close();
      }
    }
  });

  test('subscribe to one table of one site: exactly the transactions of that site touching it', async () => {
    const result = await sitesync(['subscribe', '--config', t.configFile, '--name', name, '--tables', 'public.accounts', '--sites', t.sites.paris!]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(result.stdout.trim().split('\n'), [
      `topology ready: headers exchange ${t.config.broker.exchange}.tables receives every message of ${t.config.broker.exchange} (site.#)`,
      `queue ${queue} ready (quorum, 0 messages waiting)`,
      `${queue} receives ${t.sites.paris}/public.accounts`,
    ]);

    // Separate transactions, each published (and applied) before the next, so each is its own message.
    await writeAndWait('paris', 'accounts', 2); // A
    await writeAndWait('paris', 'notes', 3); // B only
    await sql(t.db('paris'), `BEGIN; INSERT INTO notes VALUES (4, 'x'); INSERT INTO accounts VALUES (4, 'x'); COMMIT`); // A and B
    await applied('paris', 'accounts', 4);
    await writeAndWait('london', 'accounts', 5); // A, but from london
    await writeAndWait('paris', 'notes', 6); // B only

    const { messageCount } = await channel.checkQueue(queue);
    assert.equal(messageCount, 2);
    assert.deepEqual(await drain(), [
      { site: t.sites.paris, tables: ['public.accounts'], rows: ['accounts:2'] },
      { site: t.sites.paris, tables: ['public.notes', 'public.accounts'], rows: ['notes:4', 'accounts:4'] },
    ]);
  });

  test('the publishing sites were not restarted, and what they published before is not in the queue', async () => {
    assert.deepEqual(restarts, []);
    assert.deepEqual(settled, [], 'both pipelines still running');
    // accounts:1 was published (and applied at london) before the subscription: the first test received
    // exactly accounts:2 and accounts:4. And a B-only transaction still does not arrive.
    await writeAndWait('paris', 'notes', 7);
    assert.deepEqual(await drain(), []);
  });

  test('subscribe adds tables; unsubscribe --tables removes them', async () => {
    const added = await sitesync(['subscribe', '--config', t.configFile, '--name', name, '--tables', 'public.notes', '--sites', t.sites.paris!]);
    assert.equal(added.code, 0, added.stderr);
    assert.match(added.stdout, new RegExp(`${queue.replaceAll('.', '\\.')} receives ${t.sites.paris}/public\\.notes\\n`));
    await writeAndWait('paris', 'notes', 10);
    await writeAndWait('paris', 'accounts', 11);
    await writeAndWait('london', 'notes', 12);
    assert.deepEqual(await drain(), [
      { site: t.sites.paris, tables: ['public.notes'], rows: ['notes:10'] },
      { site: t.sites.paris, tables: ['public.accounts'], rows: ['accounts:11'] },
    ]);

    const removed = await sitesync(['unsubscribe', '--config', t.configFile, '--name', name, '--tables', 'public.accounts']);
    assert.equal(removed.code, 0, removed.stderr);
    assert.deepEqual(removed.stdout.trim().split('\n'), [
      `${queue} no longer receives ${t.sites.paris}/public.accounts`,
      `${queue} no longer receives ${t.sites.london}/public.accounts`,
      `queue ${queue} kept (0 messages waiting)`,
    ]);
    await writeAndWait('paris', 'accounts', 13);
    await writeAndWait('paris', 'notes', 14);
    assert.deepEqual(await drain(), [{ site: t.sites.paris, tables: ['public.notes'], rows: ['notes:14'] }]);
    assert.deepEqual(restarts, []);
  });

  test('the example consumer prints the changes of its tables', async () => {
    await sql(t.db('paris'), `BEGIN; INSERT INTO notes VALUES (20, 'hello'); INSERT INTO accounts VALUES (20, 'not for us'); COMMIT`);
    await applied('paris', 'notes', 20);
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'examples/table-subscriber.ts'), BROKER, name, 'public.notes'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 30_000,
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const exited = once(child, 'exit');
    try {
      await waitFor('the example to print the change', async () => output.includes(`{ id: 20, v: 'hello' }`), 20_000);
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
    const lines = output.trim().split('\n');
    assert.equal(lines[0], `reading ${queue} for public.notes`);
    // Typed by kind: the int4 id is a number now, not text.
    assert.match(lines[1]!, new RegExp(`^${t.sites.paris}:[0-9A-F]{16} insert public\\.notes \\{ id: 20, v: 'hello' \\}$`));
    assert.equal(lines.length, 2, output);
    // It acknowledged what it processed.
    assert.equal((await channel.checkQueue(queue)).messageCount, 0);
  });

  test('unsubscribe without --tables deletes the queue and says how many messages it held', async () => {
    await writeAndWait('paris', 'notes', 30);
    await writeAndWait('paris', 'notes', 31);
    const result = await sitesync(['unsubscribe', '--config', t.configFile, '--name', name]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, `deleted queue ${queue} (it held 2 messages)\n`);
    const check = await connection.createChannel();
    check.on('error', () => undefined);
    await assert.rejects(check.checkQueue(queue), /NOT_FOUND/);
    const again = await sitesync(['unsubscribe', '--config', t.configFile, '--name', name]);
    assert.equal(again.code, 2);
    assert.equal(again.stderr, `sitesync: SITESYNC_ERR_CONFIG: there is no subscriber "${name}" (queue ${queue} does not exist); create it with sitesync subscribe\n`);
    // The sites go on replicating.
    await writeAndWait('london', 'notes', 32);
    assert.deepEqual(restarts, []);
    assert.deepEqual(settled, []);
  });

  const errors: [string, string[], RegExp][] = [
    ['an unknown site', ['--tables', 'public.accounts', '--sites', 'tokyo'], /site "tokyo" is not in the configuration \(sites: .*\); pass some of them with --sites/],
    ['a table without schema', ['--tables', 'accounts'], /table "accounts" is not valid; write schema\.table \(for example public\.users\)/],
    ['a table with two dots', ['--tables', 'public.accounts,a.b.c'], /table "a\.b\.c" is not valid/],
    ['a name too long for PostgreSQL', ['--tables', `public.${'x'.repeat(64)}`], /is not valid; .* at most 63 bytes each/],
    ['a bad subscriber name', ['--tables', 'public.accounts', '--name', 'Billing Team'], /subscriber name "Billing Team" is not valid; use 1 to 200 lower-case letters, digits, '_', '\.' or '-'/],
  ];
  for (const [what, args, expected] of errors) {
    test(`subscribe with ${what}: one line, exit status 2, nothing created`, async () => {
      const result = await sitesync(['subscribe', '--config', t.configFile, '--name', `bad.${t.suffix}`, ...args]);
      assert.equal(result.code, 2);
      assert.match(result.stderr, /^sitesync: SITESYNC_ERR_CONFIG: /);
      assert.match(result.stderr, expected);
      assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
      assert.equal(result.stdout, '');
      const check = await connection.createChannel();
      check.on('error', () => undefined);
      await assert.rejects(check.checkQueue(subscriberQueue(`bad.${t.suffix}`)), /NOT_FOUND/);
    });
  }

  test('unsubscribe --sites without --tables is refused', async () => {
    const result = await sitesync(['unsubscribe', '--config', t.configFile, '--name', name, '--sites', t.sites.paris!]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /^sitesync: SITESYNC_ERR_CONFIG: unsubscribe --sites needs --tables/);
  });
});
