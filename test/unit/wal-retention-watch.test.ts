import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger } from '../../src/observability/logger.ts';
import { PipelineEvents, type PipelineEventMap } from '../../src/observability/pipeline-events.ts';
import { formatBytes, WalRetentionWatch, type SlotReader, type SlotReading } from '../../src/observability/wal-retention-watch.ts';

const GIB = 1024 ** 3;
type SlotEvent = PipelineEventMap['watch:slot'][0];
interface LogLine {
  level: number;
  msg: string;
  site?: string;
  part?: string;
  slotSite?: string;
}

const slot = (retainedBytes: number | null, active = false, exists = true): SlotReading => ({ exists, active, retainedBytes });

/** A watch over `sites` whose reader answers from `script` (one entry per call; the last repeats). */
function harness(script: Record<string, (SlotReading | Error)[]>, options: { warnBytes?: number; intervalSeconds?: number; readTimeoutMs?: number; readSlot?: SlotReader } = {}) {
  const events = new PipelineEvents();
  const seen: SlotEvent[] = [];
  events.on('watch:slot', (e) => seen.push(e));
  const lines: LogLine[] = [];
  const logger = createLogger('debug', { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) }).child({ site: 'paris', part: 'watch' });
  const calls: string[] = [];
  const readSlot: SlotReader =
    options.readSlot ??
    (async (slotSite) => {
      calls.push(slotSite);
      const answers = script[slotSite] ?? [];
      const answer = answers.length > 1 ? answers.shift() : answers[0];
      if (answer === undefined) throw new Error(`no script for ${slotSite}`);
      if (answer instanceof Error) throw answer;
      return answer;
    });
  const watch = new WalRetentionWatch({
    site: 'paris',
    sites: Object.keys(script),
    readSlot,
    intervalSeconds: options.intervalSeconds ?? 30,
    warnBytes: options.warnBytes ?? GIB,
    events,
    logger,
    ...(options.readTimeoutMs === undefined ? {} : { readTimeoutMs: options.readTimeoutMs }),
  });
  const warnings = (slotSite?: string): LogLine[] => lines.filter((l) => l.level === 40 && (slotSite === undefined || l.slotSite === slotSite));
  return { watch, events, seen, lines, calls, warnings };
}

describe('WalRetentionWatch', () => {
  // The watch's timers are unref'd (they never hold a process open); this keeps the test's event loop
  // alive while it waits on them.
  let keepAlive: NodeJS.Timeout | undefined;
  before(() => {
    keepAlive = setInterval(() => undefined, 60_000);
  });
  after(() => clearInterval(keepAlive));

  test('each round emits watch:slot for every configured site, its own included', async () => {
    const h = harness({ paris: [slot(4096, true)], london: [slot(70_000, false)], madrid: [slot(null, false, false)] });
    await h.watch.check();
    assert.deepEqual(h.seen, [
      { site: 'paris', slotSite: 'paris', retainedBytes: 4096, active: true },
      { site: 'paris', slotSite: 'london', retainedBytes: 70_000, active: false },
      { site: 'paris', slotSite: 'madrid', retainedBytes: 0, active: false },
    ]);
    assert.deepEqual(h.warnings(), []);
    await h.watch.check();
    assert.equal(h.seen.length, 6);
  });

  test('warns once per crossing: again only after the slot went back under', async () => {
    const h = harness({
      paris: [slot(1000, true)],
      madrid: [slot(2 * GIB), slot(2.5 * GIB), slot(3 * GIB), slot(GIB), slot(512), slot(GIB + 1), slot(4 * GIB)],
    });
    for (let i = 0; i < 3; i++) await h.watch.check();
    assert.equal(h.warnings('madrid').length, 1, 'three rounds over the threshold: one warning');
    await h.watch.check(); // exactly the threshold: not more than it
    await h.watch.check();
    assert.equal(h.warnings('madrid').length, 1);
    assert.ok(h.lines.some((l) => l.level === 30 && l.slotSite === 'madrid' && /no more than 1\.0 GiB/.test(l.msg)), 'going back under is said once');
    await h.watch.check();
    await h.watch.check();
    assert.equal(h.warnings('madrid').length, 2, 'crossed, fell back, crossed again: two warnings');
    assert.deepEqual(h.warnings('paris'), []);
    assert.equal(h.seen.filter((e) => e.slotSite === 'madrid').length, 7, 'the event is emitted every round, warned or not');
  });

  test('the warning for an inactive slot names the slot, the bytes and what to do', async () => {
    const h = harness({ paris: [slot(1, true)], madrid: [slot(1.2 * GIB, false)] });
    await h.watch.check();
    const [warning] = h.warnings('madrid');
    assert.ok(warning);
    assert.equal(warning.site, 'paris');
    assert.equal(warning.part, 'watch');
    assert.equal(
      warning.msg,
      `slot sitesync_madrid on site madrid holds 1.2 GiB of WAL and no process is streaming from it: start "sitesync run --site madrid", or drop the slot if the site is gone (SELECT pg_drop_replication_slot('sitesync_madrid')), before the disk fills`,
    );
    assert.deepEqual({ ...warning, level: undefined, msg: undefined, time: undefined, app: undefined }, {
      level: undefined,
      msg: undefined,
      time: undefined,
      app: undefined,
      site: 'paris',
      part: 'watch',
      slotSite: 'madrid',
      slot: 'sitesync_madrid',
      retainedBytes: 1.2 * GIB,
      active: false,
      warnBytes: GIB,
    });
  });

  test('the warning for an active slot says the site is falling behind', async () => {
    const h = harness({ paris: [slot(1, true)], madrid: [slot(3 * GIB, true)] });
    await h.watch.check();
    const [warning] = h.warnings('madrid');
    assert.ok(warning);
    assert.match(warning.msg, /^slot sitesync_madrid on site madrid holds 3\.0 GiB of WAL/);
    assert.match(warning.msg, /falling behind/);
    assert.doesNotMatch(warning.msg, /no process is streaming/);
  });

  test('walRetentionWarnBytes 0 turns the warning off, not the events', async () => {
    const h = harness({ paris: [slot(1, true)], madrid: [slot(50 * GIB)] }, { warnBytes: 0 });
    await h.watch.check();
    assert.deepEqual(h.warnings(), []);
    assert.deepEqual(h.seen.map((e) => [e.slotSite, e.retainedBytes]), [['paris', 1], ['madrid', 50 * GIB]]);
  });

  test('an unreachable site is skipped for the round with a debug line, never an exception', async () => {
    const h = harness({
      paris: [slot(10, true)],
      london: [new Error('connect ECONNREFUSED 127.0.0.1:5433'), new Error('still down'), slot(2 * GIB)],
      madrid: [slot(20)],
    });
    await h.watch.check();
    assert.deepEqual(h.seen.map((e) => e.slotSite), ['paris', 'madrid']);
    const debug = h.lines.filter((l) => l.level === 20 && l.slotSite === 'london');
    assert.equal(debug.length, 1);
    assert.match(debug[0]!.msg, /ECONNREFUSED/);
    assert.deepEqual(h.warnings(), [], 'an unreachable site is not warned about by the others');
    await h.watch.check();
    await h.watch.check();
    assert.deepEqual(h.seen.filter((e) => e.slotSite === 'london').map((e) => e.retainedBytes), [2 * GIB], 'read again once it answers');
    assert.equal(h.warnings('london').length, 1);
  });

  test('a reader that throws at once, or a listener that throws, does not break the round', async () => {
    const h = harness({ paris: [], london: [] }, {
      readSlot: (slotSite) => {
        if (slotSite === 'london') throw new Error('synchronous failure');
        return Promise.resolve(slot(5, true));
      },
    });
    h.events.once('watch:slot', () => {
      throw new Error('listener bug');
    });
    await h.watch.check();
    assert.ok(h.lines.some((l) => l.level === 40 && /listener bug/.test(l.msg)));
    await h.watch.check();
    assert.deepEqual(h.seen.map((e) => e.slotSite), ['paris', 'paris']);
  });

  test('a read that does not answer is given up for the round and not started again while pending', async () => {
    let answer: ((reading: SlotReading) => void) | undefined;
    let londonCalls = 0;
    const h = harness({ paris: [], london: [] }, {
      readTimeoutMs: 30,
      readSlot: (slotSite) => {
        if (slotSite === 'paris') return Promise.resolve(slot(1, true));
        if (++londonCalls > 1) return Promise.resolve(slot(9, false));
        return new Promise((resolve) => (answer = resolve));
      },
    });
    await h.watch.check();
    assert.deepEqual(h.seen.map((e) => e.slotSite), ['paris']);
    assert.ok(h.lines.some((l) => l.level === 20 && l.slotSite === 'london' && /no answer within 30 ms/.test(l.msg)));
    await h.watch.check();
    assert.equal(londonCalls, 1, 'the hanging read is not started again');
    assert.ok(h.lines.some((l) => l.level === 20 && l.slotSite === 'london' && /not answered yet/.test(l.msg)));
    answer!(slot(7, false));
    await sleep(0);
    assert.equal(h.seen.length, 2, 'a late answer is not reported');
    await h.watch.check();
    assert.equal(londonCalls, 2, 'read again once the hanging read settled');
    assert.deepEqual(h.seen.map((e) => [e.slotSite, e.retainedBytes]), [['paris', 1], ['paris', 1], ['paris', 1], ['london', 9]]);
  });

  test('start() runs a round at once and then every interval; stop() ends it', async () => {
    const h = harness({ paris: [slot(1, true)], madrid: [slot(2 * GIB)] }, { intervalSeconds: 0.02 });
    h.watch.start();
    h.watch.start(); // a second start changes nothing
    const deadline = Date.now() + 5000;
    while (h.seen.length < 6 && Date.now() < deadline) await sleep(5);
    assert.ok(h.seen.length >= 6, 'at least three rounds');
    assert.equal(h.warnings('madrid').length, 1);
    await h.watch.stop();
    const calls = h.calls.length;
    const events = h.seen.length;
    await sleep(100);
    assert.equal(h.calls.length, calls, 'no read after stop');
    assert.equal(h.seen.length, events, 'no event after stop');
    h.watch.start();
    await h.watch.check();
    assert.equal(h.calls.length, calls, 'a stopped watch does not start again');
  });

  test('stop() waits for the round in progress, which then emits nothing', async () => {
    let answer: ((reading: SlotReading) => void) | undefined;
    let called: (() => void) | undefined;
    const readStarted = new Promise<void>((resolve) => (called = resolve));
    const h = harness({ paris: [], madrid: [] }, {
      intervalSeconds: 60,
      readSlot: (slotSite) => {
        if (slotSite === 'paris') return Promise.resolve(slot(1, true));
        called!();
        return new Promise((resolve) => (answer = resolve));
      },
    });
    h.watch.start();
    await readStarted;
    let stopped = false;
    const stopping = h.watch.stop().then(() => (stopped = true));
    await sleep(50);
    assert.equal(stopped, false, 'stop() waits for the read in progress');
    answer!(slot(2 * GIB));
    await stopping;
    assert.equal(stopped, true);
    assert.deepEqual(h.seen, [], 'a round finished after stop() emits nothing');
    assert.deepEqual(h.warnings(), []);
  });
});

describe('formatBytes', () => {
  test('binary units with one decimal', () => {
    assert.equal(formatBytes(0), '0 B');
    assert.equal(formatBytes(1023), '1023 B');
    assert.equal(formatBytes(65536), '64.0 KiB');
    assert.equal(formatBytes(1.2 * GIB), '1.2 GiB');
    assert.equal(formatBytes(1024 ** 2 - 1), '1.0 MiB');
    assert.equal(formatBytes(3 * 1024 ** 4), '3.0 TiB');
  });
});
