/**
 * `sitesync tail`, `trace` and `parked --show` against the real RabbitMQ and PostgreSQL, with three sites
 * running in this process: tail reads back from the archive stream what was written at two sites, each
 * filter narrows to what it names, --from a time, a position and last start where they say, --follow sees
 * a later write and stops on abort, a message the codec refuses is one "skipped" line; trace reports a
 * transaction applied at a site that applied it, queued at a stopped site, parked where the target refused
 * it, applied but lost a conflict where the other write won; parked --show decodes a parked message, which
 * kept every property of the original.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import amqp from 'amqplib';
import { CONNECTORS } from '../../connectors/index.ts';
import { parkingQueue, routingKey, siteQueue } from '../../src/config/names.ts';
import { SCHEMA_VERSION_HEADER } from '../../src/bus/message-headers.ts';
import { CURRENT_SCHEMA_VERSION } from '../../src/events/avro-codec.ts';
import { readArchive } from '../../src/inspect/archive-reader.ts';
import type { ChangeView } from '../../src/inspect/change-format.ts';
import { planTail, runTail, type TailCommandOptions } from '../../src/cli/tail-command.ts';
import { planTrace, runTrace, type TraceCommandOptions } from '../../src/cli/trace-command.ts';
import { showParked } from '../../src/cli/parked-command.ts';
import { BROKER, createTestSites, parkedMessages, sql, waitFor, type RunningSite, type TestSites } from '../helpers/test-sites.ts';

let t: TestSites;
let paris: string;
let london: string;
let madrid: string;
let madridRun: RunningSite;
let londonRun: RunningSite;

before(async () => {
  // London refuses id 666 (a rule only it has) and parks what it refuses.
  // One broker user for every site (the simple deployment): a parked message can keep its user-id there.
  t = await createTestSites(['paris', 'london', 'madrid'], { apply: { retrySeconds: 0.5, onDataError: 'park' } }, { leastPrivilege: false });
  ({ paris, london, madrid } = t.sites as { paris: string; london: string; madrid: string });
  await t.everywhere(`CREATE TABLE accounts (id int PRIMARY KEY, name text, balance numeric(12,2)); CREATE TABLE notes (id int PRIMARY KEY, body text)`);
  await sql(t.db('london'), `ALTER TABLE accounts ADD CONSTRAINT not_666 CHECK (id <> 666)`);
  await t.start('paris');
  londonRun = await t.start('london');
  madridRun = await t.start('madrid');
});

after(async () => {
  await t?.cleanup();
});

interface Run {
  readonly lines: string[];
  readonly problems: string[];
}

async function tail(options: TailCommandOptions, signal?: AbortSignal, onLine?: (line: string) => void): Promise<Run> {
  const lines: string[] = [];
  const problems: string[] = [];
  const plan = planTail(t.config, CONNECTORS, options);
  await runTail(t.config, CONNECTORS, plan, { print: (line) => (lines.push(line), onLine?.(line)), problem: (line) => problems.push(line) }, signal);
  return { lines, problems };
}

const views = (run: Run): ChangeView[] => run.lines.map((line) => JSON.parse(line) as ChangeView);
/** `site op table key` of each change, for comparing what was read with what was written. */
const summary = (list: ChangeView[]): string[] => list.map((v) => `${v.site} ${v.op} ${v.table} ${JSON.stringify(v.key)}`);

async function trace(options: TraceCommandOptions): Promise<string[]> {
  const lines: string[] = [];
  await runTrace(t.config, CONNECTORS, planTrace(t.config, CONNECTORS, options), (line) => lines.push(line));
  return lines;
}

/** Everything in the archive, once it holds at least `count` changes. */
async function archived(count: number, options: TailCommandOptions = {}): Promise<ChangeView[]> {
  return waitFor(`${count} changes in the archive`, async () => {
    const all = views(await tail({ from: 'first', ...options }));
    return all.length >= count ? all : undefined;
  }, 60_000);
}

let written: string[] = [];

test('tail reads back from the archive what was written at two sites, in order per site, values only when asked', async () => {
  await sql(t.db('paris'), `INSERT INTO accounts VALUES (1, 'Ada', 12.50), (2, 'Bob', 3)`);
  await sql(t.db('paris'), `UPDATE accounts SET balance = 13.75 WHERE id = 1`);
  await sql(t.db('paris'), `DELETE FROM accounts WHERE id = 2`);
  await sql(t.db('london'), `INSERT INTO notes VALUES (10, 'from london')`);
  await sql(t.db('london'), `UPDATE notes SET body = 'edited' WHERE id = 10`);
  written = [
    `${paris} insert public.accounts {"id":1}`,
    `${paris} insert public.accounts {"id":2}`,
    `${paris} update public.accounts {"id":1}`,
    `${paris} delete public.accounts {"id":2}`,
    `${london} insert public.notes {"id":10}`,
    `${london} update public.notes {"id":10}`,
  ];
  const all = await archived(6);
  assert.deepEqual(summary(all).filter((s) => s.startsWith(paris)), written.slice(0, 4));
  assert.deepEqual(summary(all).filter((s) => s.startsWith(london)), written.slice(4));
  for (const v of all) {
    assert.equal(v.row, undefined, 'values hidden without --values');
    assert.match(v.transaction, new RegExp(`^${v.site}:[0-9A-F]{16}$`));
    assert.equal(v.transaction, `${v.site}:${v.position}`);
    assert.match(v.displayPosition, /^[0-9A-F]+\/[0-9A-F]+$/);
    assert.match(v.commitTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    assert.ok(Number.isInteger(v.offset));
  }
  assert.deepEqual(all.find((v) => v.op === 'insert' && v.key.id === 1)!.columns, ['id', 'name', 'balance']);
  const withValues = views(await tail({ from: 'first', values: true, site: paris, op: 'insert,update' }));
  assert.deepEqual(withValues.map((v) => v.row), [
    { id: 1, name: 'Ada', balance: '12.50' },
    { id: 2, name: 'Bob', balance: '3.00' },
    { id: 1, name: 'Ada', balance: '13.75' },
  ]);
  const pretty = await tail({ from: 'first', pretty: true, table: 'public.notes' });
  assert.match(pretty.lines[0]!, /^COMMIT TIME\s+SITE\s+POSITION\s+OP\s+TABLE\s+KEY\s+COLUMNS$/);
  assert.equal(pretty.lines.length, 3);
  assert.match(pretty.lines[1]!, new RegExp(`${london}\\s+\\S+\\s+insert\\s+public\\.notes\\s+id=10\\s+id,body$`));
});

test('each filter narrows to what it names', async () => {
  const all = await archived(6);
  const check = async (options: TailCommandOptions, expected: string[]): Promise<void> => {
    assert.deepEqual(summary(views(await tail({ from: 'first', ...options }))), expected, JSON.stringify(options));
  };
  await check({ site: london }, written.slice(4));
  await check({ table: 'public.accounts' }, written.slice(0, 4));
  await check({ op: 'delete' }, [written[3]!]);
  await check({ op: 'insert', table: 'public.notes' }, [written[4]!]);
  await check({ key: '{"id": 1}' }, [written[0]!, written[2]!]);
  await check({ key: '2', table: 'public.accounts' }, [written[1]!, written[3]!]);
  const update = all.find((v) => v.op === 'update' && v.table === 'public.accounts')!;
  await check({ transaction: update.transaction }, [written[2]!]);
  await check({ transaction: `${paris}:${update.displayPosition}` }, [written[2]!]);
  await check({ limit: 2 }, summary(all).slice(0, 2));
});

test('--from a time, a position and last start where they say', async () => {
  const before = await archived(6);
  await sleep(50);
  const from = new Date().toISOString();
  await sleep(50);
  await sql(t.db('paris'), `INSERT INTO notes VALUES (20, 'later')`);
  const all = await archived(before.length + 1);
  assert.deepEqual(summary(views(await tail({ from }))), [`${paris} insert public.notes {"id":20}`]);

  // From a position: that transaction (and the rest of the stream after it), whatever site.
  const second = before.find((v) => v.site === paris && v.op === 'update')!;
  const fromPosition = views(await tail({ from: `${paris}:${second.displayPosition}` }));
  assert.equal(fromPosition[0]!.transaction, second.transaction);
  assert.deepEqual(summary(fromPosition), summary(all.filter((v) => v.offset! >= second.offset!)));

  // The last message archived: the notes insert just written (the only change of its message).
  assert.deepEqual(summary(views(await tail({ from: 'last' }))), [`${paris} insert public.notes {"id":20}`]);
  assert.deepEqual(summary(views(await tail({}))), [`${paris} insert public.notes {"id":20}`], 'last is the default');
});

test('--follow sees a later write, then stops when aborted', async () => {
  const abort = new AbortController();
  let started!: () => void;
  const reading = new Promise<void>((resolve) => (started = resolve));
  const seen: string[] = [];
  const following = tail({ from: 'last', follow: true }, abort.signal, (line) => {
    seen.push(line);
    started();
  });
  await reading; // the last message came first: the reader is at the end
  await sql(t.db('london'), `INSERT INTO notes VALUES (30, 'while following')`);
  await waitFor('the followed write', async () => seen.some((line) => (JSON.parse(line) as ChangeView).key.id === 30), 60_000);
  abort.abort();
  const run = await following;
  assert.deepEqual(summary(views(run)).at(-1), `${london} insert public.notes {"id":30}`);
});

test('a message the codec refuses is one "skipped" line, and tail goes on', async () => {
  const connection = await amqp.connect(BROKER);
  const channel = await connection.createConfirmChannel();
  channel.publish(t.config.broker.exchange, routingKey(paris), Buffer.from([1, 2, 3]), { headers: { [SCHEMA_VERSION_HEADER]: CURRENT_SCHEMA_VERSION, 'sitesync-site': paris }, persistent: true });
  await channel.waitForConfirms();
  await connection.close();
  await sql(t.db('paris'), `INSERT INTO notes VALUES (40, 'after the bad one')`);
  const run = await waitFor('the write after the bad message', async () => {
    const r = await tail({ from: 'first', table: 'public.notes' });
    return r.lines.some((line) => (JSON.parse(line) as ChangeView).key.id === 40) ? r : undefined;
  }, 60_000);
  assert.equal(run.problems.length, 1, run.problems.join('\n'));
  assert.match(run.problems[0]!, new RegExp(`^skipped offset \\d+ \\(says site ${paris}\\): SITESYNC_ERR_DECODE: .*truncated`));
});

test('trace: applied where it was applied, queued at a stopped site, parked where it was refused; parked --show decodes it', async () => {
  await madridRun.stop();
  await sql(t.db('paris'), `INSERT INTO accounts VALUES (666, 'refused at london', 6.66)`);
  const [view] = await archived(1, { key: '{"id": 666}' });
  const id = view!.transaction;
  await waitFor('london to park it', async () => (await parkedMessages(parkingQueue(london))).some((m) => m.properties.headers?.['sitesync-parked-transaction'] === id), 60_000);
  const lines = await trace({ transaction: id });
  assert.match(lines[0]!, new RegExp(`^transaction ${id} \\(${paris} at [0-9A-F]+/[0-9A-F]+\\), committed .*Z, archive offset \\d+: 1 change \\(insert=1\\) to public\\.accounts$`));
  assert.equal(lines.length, 3, lines.join('\n'));
  assert.match(lines.find((l) => l.trim().startsWith(london))!, new RegExp(`parked in ${parkingQueue(london).replace(/\./g, '\\.')} as [0-9a-f-]{36}: 23514: .*not_666.*sitesync parked --site ${london} --show`));
  assert.match(lines.find((l) => l.trim().startsWith(madrid))!, new RegExp(`still queued: \\d+ messages? wait in ${siteQueue(madrid)}, no process consumes it: start sitesync run --site ${madrid}`));

  // A transaction london applied.
  const applied = (await archived(1, { site: paris, key: '{"id": 1}', op: 'update' }))[0]!;
  await waitFor('london to have the update', async () => (await sql<{ balance: string }>(t.db('london'), `SELECT balance::text FROM accounts WHERE id = 1`))[0]?.balance === '13.75');
  const appliedLines = await trace({ transaction: applied.transaction });
  assert.match(appliedLines.find((l) => l.trim().startsWith(london))!, new RegExp(`applied \\(${london} has ${paris} up to [0-9A-F]+/[0-9A-F]+\\)$`));

  // By row: every transaction that touched it, latest first, bounded by --limit.
  const byKey = await trace({ table: 'public.accounts', key: '{"id": 1}' });
  const heads = byKey.filter((l) => l.startsWith('transaction'));
  assert.equal(heads.length, 2);
  assert.match(heads[0]!, /: update public\.accounts id=1$/);
  assert.match(heads[1]!, /: insert public\.accounts id=1$/);
  assert.equal((await trace({ table: 'public.accounts', key: '1', limit: 1 })).filter((l) => l.startsWith('transaction')).length, 1);

  // Not in the archive: one line.
  await assert.rejects(trace({ transaction: `${paris}:0/1` }), (error: Error) => /is not in the archive .* check the id with sitesync tail --from first/.test(error.message) && !error.message.includes('\n'));

  // parked --show: headers, then the change with its values; the message stays parked.
  const parkedId = String((await parkedMessages(parkingQueue(london))).find((m) => m.properties.headers?.['sitesync-parked-transaction'] === id)!.properties.headers!['sitesync-parked-id']);
  const shown: string[] = [];
  await showParked(t.config, CONNECTORS, london, parkedId, {}, (line) => shown.push(line));
  assert.equal(shown[0], `parked message ${parkedId} in ${parkingQueue(london)}`);
  assert.ok(shown.some((l) => /^ {2}reason: .*not_666/.test(l)), shown.join('\n'));
  assert.ok(shown.includes('  code: 23514'));
  assert.ok(shown.includes(`  source: ${paris}`));
  assert.ok(shown.includes(`  transaction: ${id}`));
  const change = JSON.parse(shown.at(-1)!) as ChangeView;
  assert.deepEqual(change.row, { id: 666, name: 'refused at london', balance: '6.66' });
  assert.ok((await parkedMessages(parkingQueue(london))).some((m) => m.properties.headers?.['sitesync-parked-id'] === parkedId), 'still parked');
  await assert.rejects(showParked(t.config, CONNECTORS, london, 'nope', {}, () => undefined), /no parked message nope in .*list them with: sitesync parked/);
});

test('a parked message keeps every property of the original', async () => {
  const parked = (await parkedMessages(parkingQueue(london))).find((m) => typeof m.properties.headers?.['sitesync-parked-transaction'] === 'string')!;
  const id = String(parked.properties.headers!['sitesync-parked-transaction']);
  let original: amqp.MessageProperties | undefined;
  for await (const entry of readArchive({ config: t.config, connectors: CONNECTORS, start: { kind: 'first' } })) {
    if (entry.kind === 'message' && entry.message.transactions.some((tx) => tx.id === id)) original = entry.properties;
  }
  assert.ok(original, 'the original is in the archive');
  const p = parked.properties;
  assert.equal(p.messageId, original.messageId);
  assert.equal(p.contentType, original.contentType);
  assert.equal(p.timestamp, original.timestamp);
  assert.equal(p.appId, original.appId);
  assert.equal(p.userId, original.userId, "kept: the parking connection's user is the one that published it here");
  assert.equal(p.deliveryMode, 2);
  for (const [name, value] of Object.entries(original.headers ?? {})) {
    if (name === 'x-stream-offset') continue; // the archive's own
    assert.deepEqual(p.headers?.[name], value, `header ${name}`);
  }
  assert.equal(p.headers?.['sitesync-original-user-id'], original.userId);
  assert.equal(p.headers?.['sitesync-original-route'], `${t.config.broker.exchange}/${routingKey(paris)}`);
});

test('trace: a transaction that lost a conflict at a site says so, from its conflict log', async () => {
  // London is stopped while both sites write key 5; London's write is the later one, so it wins everywhere.
  await londonRun.stop();
  await sql(t.db('paris'), `INSERT INTO accounts VALUES (5, 'paris first', 1)`);
  await sleep(20);
  await sql(t.db('london'), `INSERT INTO accounts VALUES (5, 'london later', 2)`);
  londonRun = await t.start('london');
  const [view] = await archived(1, { site: paris, key: '{"id": 5}' });
  await waitFor('london to resolve the conflict', async () => (await sql(t.db('london'), `SELECT 1 FROM sitesync.conflicts WHERE remote_transaction = $1`, [view!.transaction])).length > 0, 60_000);
  const lines = await trace({ transaction: view!.transaction });
  assert.match(lines.find((l) => l.trim().startsWith(london))!, new RegExp(`applied \\(${london} has ${paris} up to [0-9A-F/]+\\), but lost a conflict: public\\.accounts \\{"id": "5"\\} \\(insert_exists, last-writer-wins: ${london}'s write kept\\)$`));
  const [theirs] = await archived(1, { site: london, key: '{"id": 5}' });
  await waitFor('paris to apply london\'s write', async () => (await sql<{ name: string }>(t.db('paris'), `SELECT name FROM accounts WHERE id = 5`))[0]?.name === 'london later', 60_000);
  const won = await trace({ transaction: theirs!.transaction });
  assert.match(won.find((l) => l.trim().startsWith(paris))!, /applied \(.*\), won a conflict$/);
});
