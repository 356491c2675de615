/**
 * The capture and apply runners' exactly-once rules, proven with the in-memory fakes (which pass the same
 * conformance suite as the real connectors) through a real RabbitMQ: commit order, parts, duplicates after
 * a resend, a gap halting its source, a lost connection retried, refused data halting or parked — with no
 * database in the way, so each rule is seen alone.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { after, afterEach, before, test } from 'node:test';
import amqp from 'amqplib';
import { parseConfig } from '../../src/config/load-config.ts';
import type { Config } from '../../src/config/config-schema.ts';
import { parkingExchange, parkingQueue, siteQueue, tablesExchange } from '../../src/config/names.ts';
import type { ConnectorRegistry } from '../../src/connector.ts';
import type { Change, RelationInfo } from '../../src/events/transaction.ts';
import { parseKind } from '../../src/events/value-kind.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { PipelineEvents } from '../../src/observability/pipeline-events.ts';
import { createPipeline, type Pipeline } from '../../src/pipeline.ts';
import { withFake, type FakeDatabases } from '../helpers/fake-connector.ts';
import type { FakeLog } from '../helpers/fake-source.ts';
import { FakeStore } from '../helpers/fake-sink.ts';
import { BROKER, waitFor } from '../helpers/test-sites.ts';

const items: RelationInfo = {
  schema: 'app',
  table: 'items',
  replicaIdentity: 'd',
  columns: [
    { name: 'id', kind: parseKind('int64'), native: { name: 'int64', id: 0, modifier: -1 }, key: true },
    { name: 'note', kind: parseKind('string'), native: { name: 'string', id: 0, modifier: -1 }, key: false },
  ],
};
const insert = (id: number, note = `n${id}`): Change => ({ op: 'insert', relation: items, newRow: { values: [String(id), note], unchanged: [] } });

let suffix: string;
let paris: string;
let london: string;
let databases: FakeDatabases;
let connectors: ConnectorRegistry;
let config: Config;
const running: { pipeline: Pipeline; done: Promise<void> }[] = [];

function configure(onDataError: 'halt' | 'park' = 'halt'): Config {
  return parseConfig({
    broker: { url: BROKER, exchange: `sitesync.fake.${suffix}`, archiveStream: `sitesync.fake.${suffix}.archive` },
    sites: { [paris]: { database: { kind: 'fake', url: `fake://${paris}` } }, [london]: { database: { kind: 'fake', url: `fake://${london}` } } },
    capture: { statusIntervalSeconds: 0.1, heartbeatSeconds: 1, maxMessageBytes: 4096 },
    apply: { retrySeconds: 0.2, onDataError },
    log: { level: process.env.TEST_SITESYNC_LOG ?? 'silent' },
  });
}

async function start(site: string, events = new PipelineEvents()): Promise<{ pipeline: Pipeline; events: PipelineEvents; done: Promise<void> }> {
  const pipeline = createPipeline(config, site, createLogger(config.log.level), connectors, events);
  const ready = Promise.all([once(events, 'capture:streaming'), once(events, 'apply:consuming')]);
  const done = pipeline.run();
  done.catch(() => undefined);
  await Promise.race([ready, done]);
  const entry = { pipeline, done };
  running.push(entry);
  return { pipeline, events, done };
}

async function stopAll(): Promise<void> {
  for (const r of running.splice(0)) {
    r.pipeline.stop();
    await r.done.catch(() => undefined);
  }
}

const log = (site: string): FakeLog => databases.logs.get(site)!;
const store = (site: string): FakeStore => databases.stores.get(site)!;
/** The ids london holds, in key order. */
const ids = (site: string): number[] => store(site).rows('app', 'items').map((r) => Number(r[0])).sort((a, b) => a - b);

before(() => {
  suffix = randomBytes(3).toString('hex');
});

/** Every configuration a test made (one test makes two): what afterEach removes from the broker. */
const made: Config[] = [];

afterEach(async () => {
  await stopAll();
  const connection = await amqp.connect(BROKER);
  const channel = await connection.createChannel();
  for (const c of made.splice(0)) {
    for (const site of Object.keys(c.sites)) {
      await channel.deleteQueue(siteQueue(site));
      await channel.deleteQueue(parkingQueue(site));
    }
    await channel.deleteQueue(c.broker.archiveStream);
    for (const exchange of [tablesExchange(c.broker.exchange), parkingExchange(c.broker.exchange), c.broker.exchange]) await channel.deleteExchange(exchange);
  }
  await connection.close();
});

after(stopAll);

/** Fresh sites (names, fake databases, broker names) for each test. */
function fresh(onDataError: 'halt' | 'park' = 'halt'): void {
  suffix = randomBytes(3).toString('hex');
  paris = `paris_${suffix}`;
  london = `london_${suffix}`;
  databases = { logs: new Map(), stores: new Map() };
  connectors = withFake(databases);
  config = configure(onDataError);
  made.push(config);
  // Each site's database exists before its process starts, with the table to replicate.
  for (const site of [paris, london]) {
    const target = new FakeStore();
    target.createTable('app', 'items', ['id', 'note']);
    databases.stores.set(site, target);
  }
}

test('every transaction, small or in parts, is applied once, in commit order', async () => {
  fresh();
  await start(london);
  await start(paris);
  for (let i = 1; i <= 200; i++) log(paris).commit(i % 50 === 0 ? Array.from({ length: 300 }, (_, j) => insert(10_000 * i + j, 'x'.repeat(40))) : [insert(i)]);
  await waitFor('everything at london', async () => store(london).commits.length >= 200, 60_000);
  const commits = store(london).commits;
  assert.equal(commits.length, 200, 'one commit per source transaction, none twice');
  for (let i = 1; i < commits.length; i++) assert.ok(commits[i - 1]!.position < commits[i]!.position, 'commit order');
  assert.equal(ids(london).length, 196 + 4 * 300);
});

test('a stopped pipeline leaves no listener on its events, which outlive it across SIGHUP reloads', async () => {
  fresh();
  const events = new PipelineEvents();
  const before = events.eventNames().map((name) => [name, events.listenerCount(name)] as const);
  for (let reload = 0; reload < 3; reload++) {
    const { pipeline, done } = await start(london, events);
    pipeline.stop();
    await done;
    running.splice(0);
  }
  assert.deepEqual(events.eventNames().map((name) => [name, events.listenerCount(name)] as const), before);
});

test('a source that resends what it published (its confirmation lost) is applied once: the resent are duplicates', async () => {
  fresh();
  const londonEvents = new PipelineEvents();
  await start(london, londonEvents);
  const first = await start(paris);
  for (let i = 1; i <= 20; i++) log(paris).commit([insert(i)]);
  await waitFor('twenty at london', async () => store(london).commits.length >= 20);
  first.pipeline.stop();
  await first.done;
  running.splice(running.findIndex((r) => r.pipeline === first.pipeline), 1);
  // As if the source had never recorded its confirmation: the next process resends all twenty.
  log(paris).confirmedCheckpoint = null;
  log(paris).resume = { lastPublished: null, seen: {} };
  let duplicates = 0;
  londonEvents.on('apply:duplicate', () => duplicates++);
  await start(paris);
  log(paris).commit([insert(21)]);
  await waitFor('the new one at london', async () => ids(london).includes(21));
  assert.equal(duplicates, 20, 'each resent transaction is recognised as a duplicate');
  assert.equal(store(london).commits.length, 21, 'and none is applied twice');
});

test('a lost connection before a commit is retried: applied once', async () => {
  fresh();
  await start(london);
  await start(paris);
  store(london).loseConnectionBeforeCommit = 2;
  for (let i = 1; i <= 5; i++) log(paris).commit([insert(i)]);
  await waitFor('five at london', async () => store(london).commits.length >= 5);
  assert.deepEqual(ids(london), [1, 2, 3, 4, 5]);
  assert.equal(store(london).commits.length, 5);
});

test('a missing message halts its source with a gap, and nothing after it is applied', async () => {
  fresh();
  const londonEvents = new PipelineEvents();
  const l = await start(london, londonEvents);
  await start(paris);
  log(paris).commit([insert(1)]);
  await waitFor('the first at london', async () => ids(london).includes(1));
  l.pipeline.stop();
  await l.done;
  running.splice(running.findIndex((r) => r.pipeline === l.pipeline), 1);
  log(paris).commit([insert(2)]);
  // The message of 2 is lost (the queue purged while london was stopped).
  const connection = await amqp.connect(BROKER);
  const channel = await connection.createChannel();
  await waitFor('the message of 2 in the queue', async () => (await channel.checkQueue(siteQueue(london))).messageCount >= 1);
  await channel.purgeQueue(siteQueue(london));
  await connection.close();
  log(paris).commit([insert(3)]);
  const halted = once(londonEvents, 'apply:halted');
  await start(london, londonEvents);
  const [event] = (await halted) as [{ reason: string }];
  assert.match(event.reason, /SITESYNC_ERR_GAP: a message from site paris_\w+ follows position #2, but london_\w+ has applied only up to #1: a message is missing/);
  assert.deepEqual(ids(london), [1], 'nothing after the gap');
});

test('refused data halts its source until fixed (onDataError: halt), or is parked and skipped (park)', async () => {
  fresh('halt');
  const events = new PipelineEvents();
  await start(london, events);
  await start(paris);
  store(london).refuse = (change) => (change.op === 'insert' && change.newRow.values[0] === '2' ? 'check constraint "positive" is violated' : null);
  const halted = once(events, 'apply:halted');
  for (let i = 1; i <= 3; i++) log(paris).commit([insert(i)]);
  const [event] = (await halted) as [{ reason: string }];
  assert.match(event.reason, /positive/);
  assert.deepEqual(ids(london), [1]);
  store(london).refuse = null; // the operator fixes the target
  await waitFor('the rest once fixed', async () => ids(london).length === 3);
  await stopAll();

  fresh('park');
  const parkEvents = new PipelineEvents();
  await start(london, parkEvents);
  await start(paris);
  store(london).refuse = (change) => (change.op === 'insert' && change.newRow.values[0] === '2' ? 'check constraint "positive" is violated' : null);
  const parked = once(parkEvents, 'apply:parked');
  for (let i = 1; i <= 3; i++) log(paris).commit([insert(i)]);
  const [p] = (await parked) as [{ code: string; reason: string }];
  assert.equal(p.code, 'SITESYNC_ERR_APPLY_DATA');
  await waitFor('the others applied', async () => ids(london).includes(3));
  assert.deepEqual(ids(london), [1, 3]);
  assert.equal([...store(london).parked.values()].filter((r) => r.kind === 'skipped').length, 1, 'the skip is recorded with its parked record');
});
