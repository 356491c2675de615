/**
 * Trust boundaries, on the real RabbitMQ and PostgreSQL: every site runs as a broker user of its own,
 * created by `sitesync setup` with the least permissions (no configure permission at all), and each attack
 * the issue lists is refused — by the broker where it can, otherwise parked with its reason by the applier —
 * while genuine traffic keeps flowing and nothing is lost:
 * a forged catalog update, a message claiming another site, messages RabbitMQ does not vouch for, an
 * archived message re-sent with a retry header, what a site user was not given, and each malformed shape.
 * Retries are the operator's, and are applied exactly once.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import amqp from 'amqplib';
import { parkedCommand } from '../../src/cli/parked-command.ts';
import { passwordVariable, setupCommand } from '../../src/cli/setup-command.ts';
import { parkingQueue, routingKey, siteQueue, parkingExchange, PARKED_ID_HEADER, RETRY_HEADER } from '../../src/config/names.ts';
import { messageHeaders, messageId } from '../../src/bus/message-headers.ts';
import { CURRENT_SCHEMA_VERSION, encodeMessage } from '../../src/events/avro-codec.ts';
import { lsnToPosition, parseLsn } from '../../connectors/postgres/postgres-positions.ts';
import type { ChangeMessage, RelationInfo, Transaction } from '../../src/events/transaction.ts';
import { BROKER, createTestSites, dbUrl, MANAGEMENT, parkedMessages, sql, waitFor, type RunningSite, type TestSites } from '../helpers/test-sites.ts';
import { parseKind } from '../../src/events/value-kind.ts';

let t: TestSites;
let london: RunningSite;
const users: Record<string, { user: string; password: string }> = {};
const parked: { reason: string; code: string }[] = [];

function userUrl(short: string): string {
  const url = new URL(BROKER);
  url.username = users[short]!.user;
  url.password = users[short]!.password;
  return url.toString();
}

before(async () => {
  t = await createTestSites(['paris', 'london'], (sites) => {
    for (const short of ['paris', 'london']) users[short] = { user: `sitesync_test_${sites[short]}`, password: randomUUID() };
    return {
      sites: Object.fromEntries(
        Object.entries(sites).map(([short, site]) => [
          site,
          { postgres: dbUrl(`sitesync_test_${site}`), brokerUser: users[short]!.user, brokerUrl: userUrl(short) },
        ]),
      ),
      apply: { retrySeconds: 0.5, onDataError: 'park' },
    };
  });
  const lines: string[] = [];
  await setupCommand(t.config, { managementUrl: MANAGEMENT }, (line) => lines.push(line), {
    [passwordVariable(t.sites.paris!)]: users.paris!.password,
    [passwordVariable(t.sites.london!)]: users.london!.password,
  });
  assert.match(lines.join('\n'), /created: publishes only site\.paris_\w+, parks only into its own parking queue/);
  // A table without a primary key: a row applied twice would show.
  await t.everywhere(`CREATE TABLE items (id int, v int); ALTER TABLE items REPLICA IDENTITY FULL`);
  await sql(t.db('london'), `ALTER TABLE items ADD CONSTRAINT small CHECK (v < 100)`);
  await t.start('paris');
  london = await t.start('london');
  london.events.on('apply:parked', (e) => parked.push({ reason: e.reason, code: e.code }));
});

after(async () => {
  await t?.cleanup();
  const auth = new URL(MANAGEMENT);
  const authorization = `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`;
  for (const { user } of Object.values(users)) {
    await fetch(new URL(`api/users/${encodeURIComponent(user)}`, `${auth.protocol}//${auth.host}/`), { method: 'DELETE', headers: { authorization } }).catch(() => undefined);
  }
});

/** Publishes as `url`'s user; resolves with what the broker said (ok, or the error that closed the channel). */
async function publishAs(url: string, exchange: string, key: string, body: Buffer, options: amqp.Options.Publish): Promise<'ok' | string> {
  const connection = await amqp.connect(url);
  connection.on('error', () => undefined);
  try {
    const channel = await connection.createConfirmChannel();
    let closed = '';
    channel.on('error', (error: Error) => (closed = error.message));
    return await new Promise((resolve) => {
      channel.on('close', () => resolve(closed || 'channel closed'));
      channel.publish(exchange, key, body, { persistent: true, ...options }, (error) => resolve(error ? closed || String(error) : 'ok'));
    });
  } finally {
    await connection.close().catch(() => undefined);
  }
}

const asParis = (message: ChangeMessage, extra: amqp.Options.Publish = {}): Promise<'ok' | string> =>
  publishAs(userUrl('paris'), t.config.broker.exchange, routingKey(t.sites.paris!), encodeMessage(message), {
    headers: messageHeaders(message, CURRENT_SCHEMA_VERSION),
    userId: users.paris!.user,
    messageId: messageId(message),
    timestamp: 1_700_000_000,
    ...extra,
  });

/** A position after everything paris committed so far (its next commits end beyond it). */
async function parisPositionAhead(): Promise<string> {
  const [row] = await sql<{ lsn: string }>(t.db('paris'), 'SELECT pg_current_wal_lsn()::text AS lsn');
  return lsnToPosition(parseLsn(row!.lsn) + 1n);
}

function transaction(site: string, position: string, changes: Transaction['changes']): Transaction {
  return { id: `${site}:${position}`, site, position, commitTimeMicros: BigInt(Date.now()) * 1000n, sourceTxId: '1', seen: {}, changes };
}

const items: RelationInfo = {
  schema: 'public',
  table: 'items',
  replicaIdentity: 'f',
  columns: [
    { name: 'id', kind: parseKind('int32'), native: { name: 'int4', id: 23, modifier: -1 }, key: true },
    { name: 'v', kind: parseKind('int32'), native: { name: 'int4', id: 23, modifier: -1 }, key: true },
  ],
};

async function flows(id: number): Promise<void> {
  await sql(t.db('paris'), `INSERT INTO items VALUES ($1, 1)`, [id]);
  await waitFor(`row ${id} at london`, async () => (await sql(t.db('london'), 'SELECT 1 FROM items WHERE id = $1', [id])).length === 1);
}

test('each site runs as its own broker user, without configure permission, and replicates', async () => {
  await flows(1);
  await sql(t.db('london'), `INSERT INTO items VALUES (2, 2)`);
  await waitFor('row 2 at paris', async () => (await sql(t.db('paris'), 'SELECT 1 FROM items WHERE id = 2')).length === 1);
  const connection = await amqp.connect(userUrl('paris'));
  connection.on('error', () => undefined);
  const channel = await connection.createChannel();
  channel.on('error', () => undefined);
  await assert.rejects(channel.assertExchange(t.config.broker.exchange, 'topic', { durable: true }), /ACCESS_REFUSED/);
  await connection.close().catch(() => undefined);
});

test('the broker refuses what a site user was not given', async () => {
  const body = Buffer.from('x');
  const paris = userUrl('paris');
  const ex = t.config.broker.exchange;
  assert.match(await publishAs(paris, ex, routingKey(t.sites.london!), body, { userId: users.paris!.user }), /ACCESS_REFUSED/, "another site's routing key");
  assert.match(await publishAs(paris, ex, routingKey(t.sites.paris!), body, { userId: users.london!.user }), /PRECONDITION_FAILED|user_id/i, "another site's user-id");
  assert.match(await publishAs(paris, '', siteQueue(t.sites.london!), body, {}), /ACCESS_REFUSED/, 'the default exchange (operators only)');
  assert.match(await publishAs(paris, parkingExchange(ex), t.sites.london!, body, {}), /ACCESS_REFUSED/, "another site's parking queue");
  const connection = await amqp.connect(paris);
  connection.on('error', () => undefined);
  const channel = await connection.createChannel();
  channel.on('error', () => undefined);
  await assert.rejects(channel.consume(siteQueue(t.sites.london!), () => undefined), /ACCESS_REFUSED/, "another site's queue");
  await connection.close().catch(() => undefined);
  // A user the administrator gave no rights at all cannot even open the virtual host.
  const nobody = { user: `sitesync_test_nobody_${t.suffix}`, password: randomUUID() };
  users.nobody = nobody;
  const management = new URL(MANAGEMENT);
  const authorization = `Basic ${Buffer.from(`${management.username}:${management.password}`).toString('base64')}`;
  const created = await fetch(new URL(`api/users/${nobody.user}`, `${management.protocol}//${management.host}/`), { method: 'PUT', headers: { authorization, 'content-type': 'application/json' }, body: JSON.stringify({ password: nobody.password, tags: '' }) });
  assert.ok(created.ok);
  await assert.rejects(amqp.connect(userUrl('nobody')), /ACCESS_REFUSED|access to vhost|403|ConnectionClose/i);
  await flows(3);
});

test('what RabbitMQ does not vouch for, and what london does not replicate, is parked with its reason; the rest flows', async () => {
  const paris = t.sites.paris!;
  const before = parked.length;
  const insert = async (id: number, site = paris): Promise<ChangeMessage> => {
    const position = await parisPositionAhead();
    return { site, sourceKind: 'postgres', previous: null, part: null, transactions: [transaction(site, position, [{ op: 'insert', relation: items, newRow: { values: [String(id), '1'], unchanged: [] } }])] };
  };
  // Published by the administrator's user, claiming paris: with no user-id, and with its own.
  const admin = await insert(900);
  assert.equal(await publishAs(BROKER, t.config.broker.exchange, routingKey(paris), encodeMessage(admin), { headers: messageHeaders(admin, CURRENT_SCHEMA_VERSION) }), 'ok');
  assert.equal(await publishAs(BROKER, t.config.broker.exchange, routingKey(paris), encodeMessage(admin), { headers: messageHeaders(admin, CURRENT_SCHEMA_VERSION), userId: 'guest' }), 'ok');
  // Published by paris's user, claiming london (london's own site).
  assert.equal(await asParis(await insert(901, t.sites.london!)), 'ok');
  // A forged catalog update, and a change to a table london does not have in its scope (sitesync's own).
  const authid: RelationInfo = { schema: 'pg_catalog', table: 'pg_authid', replicaIdentity: 'd', columns: [{ name: 'rolname', kind: parseKind('string'), native: { name: 'name', id: 19, modifier: -1 }, key: true }, { name: 'rolpassword', kind: parseKind('string'), native: { name: 'text', id: 25, modifier: -1 }, key: false }] };
  const catalog: ChangeMessage = { site: paris, sourceKind: 'postgres', previous: null, part: null, transactions: [transaction(paris, await parisPositionAhead(), [{ op: 'update', relation: authid, oldRow: null, newRow: { values: ['postgres', 'md5forged'], unchanged: [] } }])] };
  assert.equal(await asParis(catalog), 'ok');
  // Malformed shapes: one value too many, a part of two transactions, a malformed position.
  const tooMany = await insert(902);
  assert.equal(await asParis({ ...tooMany, transactions: [{ ...tooMany.transactions[0]!, changes: [{ op: 'insert', relation: items, newRow: { values: ['902', '1', 'extra'], unchanged: [] } }] }] }), 'ok');
  const two = await insert(903);
  assert.equal(await asParis({ ...two, part: { index: 0, last: false }, transactions: [two.transactions[0]!, { ...two.transactions[0]!, position: 'FFFFFFFFFFFFFFFF', id: `${paris}:FFFFFFFFFFFFFFFF` }] }), 'ok');
  const malformed = await insert(904);
  assert.equal(await asParis({ ...malformed, transactions: [{ ...malformed.transactions[0]!, position: '0/16B3748', id: `${paris}:0/16B3748` }] }), 'ok');
  // Well-formed, but not what paris's database writes: another kind, a position of another kind's width.
  const otherKind = await insert(906);
  assert.equal(await asParis({ ...otherKind, sourceKind: 'mariadb' }), 'ok');
  const wide = await insert(907);
  const widePosition = `00000000${wide.transactions[0]!.position}`;
  assert.equal(await asParis({ ...wide, transactions: [{ ...wide.transactions[0]!, position: widePosition, id: `${paris}:${widePosition}` }] }), 'ok');

  // A transaction in parts whose first part writes a catalog: set aside whole, its last part a duplicate.
  const inParts = transaction(paris, await parisPositionAhead(), [{ op: 'update', relation: authid, oldRow: null, newRow: { values: ['postgres', 'md5forged'], unchanged: [] } }]);
  assert.equal(await asParis({ site: paris, sourceKind: 'postgres', previous: null, part: { index: 0, last: false }, transactions: [inParts] }), 'ok');
  assert.equal(await asParis({ site: paris, sourceKind: 'postgres', previous: null, part: { index: 1, last: true }, transactions: [{ ...inParts, changes: [{ op: 'insert', relation: items, newRow: { values: ['905', '1'], unchanged: [] } }] }] }), 'ok');

  await flows(4);
  await waitFor('every forgery parked', async () => parked.length - before >= 10);
  const reasons = parked.slice(before).map((p) => `${p.code} ${p.reason}`);
  const expect = (pattern: RegExp, what: string): void => assert.ok(reasons.some((r) => pattern.test(r)), `${what} is parked with its reason; parked: ${reasons.join('\n')}`);
  expect(new RegExp(`SITESYNC_ERR_UNTRUSTED .*claims site ${paris} but carries no user-id`), 'a message without user-id');
  expect(new RegExp(`SITESYNC_ERR_UNTRUSTED .*published by RabbitMQ user "guest", not "${users.paris!.user}"`), "a message by another user");
  expect(/SITESYNC_ERR_MESSAGE_INVALID .*claims to come from site london_\w+ itself/, 'a message claiming the target itself');
  expect(/SITESYNC_ERR_NOT_REPLICATED .*table "pg_catalog\.pg_authid" is in a catalog/, 'a forged catalog update');
  expect(/SITESYNC_ERR_NOT_REPLICATED .*\(in parts, set aside whole at part 0\).*pg_authid/, 'a forged catalog update in parts');
  expect(/SITESYNC_ERR_DECODE .*has 3 values for the 2 columns/, 'one value too many');
  expect(/SITESYNC_ERR_DECODE .*part 0 holds 2 transactions instead of one/, 'a part of two transactions');
  expect(new RegExp(`SITESYNC_ERR_MESSAGE_INVALID .*site ${paris} runs postgres, but the message says its transactions come from "mariadb"`), 'a message of another database kind');
  expect(/SITESYNC_ERR_MESSAGE_INVALID .*position "0{8}[0-9A-F]{16}" is not a postgres position/, 'a position of another width');
  expect(/SITESYNC_ERR_DECODE .*position "0\/16B3748" is not a position/, 'a malformed position');
  assert.equal((await sql(t.db('london'), 'SELECT 1 FROM items WHERE id >= 900')).length, 0, 'nothing forged was applied');
  const [role] = await sql<{ p: string | null }>('postgres', `SELECT rolpassword AS p FROM pg_authid WHERE rolname = 'postgres'`);
  assert.notEqual(role!.p, 'md5forged');
  const kept = await parkedMessages(parkingQueue(t.sites.london!));
  assert.ok(kept.length >= 8, 'every refused message is kept in the parking queue');
  const catalogCopy = kept.find((m) => /pg_authid/.test(String(m.properties.headers?.['sitesync-parked-reason'])));
  assert.equal(catalogCopy?.properties.messageId, messageId(catalog), 'its properties are kept');
  assert.equal(catalogCopy?.properties.timestamp, 1_700_000_000);
  assert.equal(catalogCopy?.properties.headers?.['sitesync-original-user-id'], users.paris!.user);
});

test('retries are the operator’s: a forged or replayed retry is refused, a real one is applied exactly once', async () => {
  const paris = t.sites.paris!;
  // A genuine update later overwritten: re-applying the archived first one would roll the row back.
  await sql(t.db('paris'), `INSERT INTO items VALUES (10, 1)`);
  await sql(t.db('paris'), `UPDATE items SET v = 2 WHERE id = 10`);
  await waitFor('row 10 at v = 2', async () => (await sql<{ v: number }>(t.db('london'), 'SELECT v FROM items WHERE id = 10'))[0]?.v === 2);
  const archived = await readArchive((m) => String(m.properties.headers?.['sitesync-operations']).includes('insert=1') && String(m.properties.headers?.['sitesync-site']) === paris);
  const before = parked.length;
  const headers = archived.properties.headers ?? {};
  // Re-published through the change exchange with a retry header (by paris's own user, so it passes the broker).
  assert.equal(await publishAs(userUrl('paris'), t.config.broker.exchange, routingKey(paris), archived.content, { headers: { ...headers, [RETRY_HEADER]: true }, userId: users.paris!.user }), 'ok');
  // Straight into london's queue by an operator, but with no parked id, and with an id london never parked.
  assert.equal(await publishAs(BROKER, '', siteQueue(t.sites.london!), archived.content, { headers: { ...headers, [RETRY_HEADER]: true } }), 'ok');
  assert.equal(await publishAs(BROKER, '', siteQueue(t.sites.london!), archived.content, { headers: { ...headers, [RETRY_HEADER]: randomUUID() } }), 'ok');
  await waitFor('the three forged retries parked', async () => parked.length - before >= 3);
  const reasons = parked.slice(before).map((p) => p.reason).join('\n');
  assert.match(reasons, /refused a retry: it carries sitesync-retry but came through exchange/);
  assert.match(reasons, /refused a retry: its sitesync-retry header is not a parked id/);
  assert.match(reasons, /refused a retry: site london_\w+ never parked a message/);
  assert.deepEqual(await sql(t.db('london'), 'SELECT v FROM items WHERE id = 10'), [{ v: 2 }], 'nothing rolled back');

  // A transaction london refuses (its CHECK), parked and recorded as skipped.
  const refusedBefore = parked.length;
  await sql(t.db('paris'), `INSERT INTO items VALUES (20, 500)`);
  await flows(21);
  assert.equal(parked[refusedBefore]?.code, '23514');
  const copy = (await parkedMessages(parkingQueue(t.sites.london!))).find((m) => String(m.properties.headers?.['sitesync-parked-code']) === '23514');
  assert.ok(copy);
  const id = String(copy.properties.headers?.[PARKED_ID_HEADER]);
  // Its body with its parked id, but through the change exchange: refused.
  assert.equal(await publishAs(userUrl('paris'), t.config.broker.exchange, routingKey(paris), copy.content, { headers: { ...copy.properties.headers, [RETRY_HEADER]: id }, userId: users.paris!.user }), 'ok');
  // Its parked id with another body: refused.
  assert.equal(await publishAs(BROKER, '', siteQueue(t.sites.london!), archived.content, { headers: { ...headers, [RETRY_HEADER]: id } }), 'ok');
  await waitFor('both refused', async () => parked.length - refusedBefore >= 3);
  assert.match(parked.slice(refusedBefore + 1).map((p) => p.reason).join('\n'), /its body is not the one site london_\w+ parked as/);

  await sql(t.db('london'), 'ALTER TABLE items DROP CONSTRAINT small'); // the cause, fixed
  await parkedCommand(t.config, t.sites.london!, { kind: 'retry', id }, () => undefined);
  await waitFor('the retried row at london', async () => (await sql(t.db('london'), 'SELECT 1 FROM items WHERE id = 20')).length === 1);
  // The same retry again (an operator's second try, or a copy): a duplicate, never applied twice.
  assert.equal(await publishAs(BROKER, '', siteQueue(t.sites.london!), copy.content, { headers: { ...copy.properties.headers, [RETRY_HEADER]: id } }), 'ok');
  await flows(22);
  assert.equal((await sql(t.db('london'), 'SELECT 1 FROM items WHERE id = 20')).length, 1, 'applied exactly once');
  const [record] = await sql<{ done: boolean }>(t.db('london'), `SELECT done_at IS NOT NULL AS done FROM sitesync.parked WHERE id = $1`, [id]);
  assert.equal(record?.done, true, 'the parked record is cleared by the apply');
});

/** The first archived message that `wanted` accepts (the stream, read as the administrator). */
async function readArchive(wanted: (m: amqp.ConsumeMessage) => boolean): Promise<amqp.ConsumeMessage> {
  const connection = await amqp.connect(BROKER);
  try {
    const channel = await connection.createChannel();
    await channel.prefetch(100); // streams require a prefetch
    return await waitFor('an archived message', () =>
      new Promise<amqp.ConsumeMessage | undefined>((resolve) => {
        let found: amqp.ConsumeMessage | undefined;
        const timer = setTimeout(() => resolve(found), 2000);
        void channel.consume(
          t.config.broker.archiveStream,
          (m) => {
            if (!m) return;
            channel.ack(m);
            if (!found && wanted(m)) {
              found = m;
              clearTimeout(timer);
              resolve(m);
            }
          },
          { noAck: false, arguments: { 'x-stream-offset': 'first' } },
        );
      }),
    );
  } finally {
    await connection.close().catch(() => undefined);
  }
}
