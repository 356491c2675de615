/**
 * The WAL retention watch on the real PostgreSQL and RabbitMQ: paris has run once and is stopped, so its
 * slot keeps every byte of WAL written since; london, the only site running, reports paris's slot in its
 * events and metrics and warns, once, that nothing streams from it.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { slotName } from '../../src/config/names.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { PipelineEvents, type PipelineEventMap } from '../../src/observability/pipeline-events.ts';
import { createPipeline, type Pipeline } from '../../src/pipeline.ts';
import { createTestSites, sql, waitFor, type TestSites } from '../helpers/test-sites.ts';
import { CONNECTORS } from '../../connectors/index.ts';

const WARN_BYTES = 65536;
type SlotEvent = PipelineEventMap['watch:slot'][0];

describe('WAL retention watch', () => {
  let t: TestSites;
  let london: Pipeline | undefined;
  let londonDone: Promise<void> | undefined;

  before(async () => {
    t = await createTestSites(['paris', 'london'], { watch: { intervalSeconds: 0.5, walRetentionWarnBytes: WARN_BYTES } });
    await t.everywhere('CREATE TABLE filler (id int PRIMARY KEY, pad text)');
    // Run paris once so that its slot exists, then stop it: from now on its slot only holds WAL.
    const paris = await t.start('paris');
    await paris.stop();
    const slot = slotName(t.sites.paris!);
    await waitFor('paris slot to be idle', async () => (await sql<{ active: boolean }>('postgres', 'SELECT active FROM pg_replication_slots WHERE slot_name = $1', [slot]))[0]?.active === false, 10_000);
    // Well over 64 kB of WAL at paris (and on its server) that nothing confirms.
    await sql(t.db('paris'), `INSERT INTO filler SELECT g, repeat('x', 200) FROM generate_series(1, 5000) g`);
  });

  after(async () => {
    london?.stop();
    await londonDone?.catch(() => undefined);
    await t?.cleanup();
  });

  test('a running site reports a stopped site slot in events and metrics, and warns once', async () => {
    const parisSite = t.sites.paris!;
    const londonSite = t.sites.london!;
    // london runs in this process, as t.start would, with its log lines kept.
    const lines: { level: number; msg: string; slotSite?: string; active?: boolean; retainedBytes?: number }[] = [];
    const logger = createLogger('warn', { write: (line: string) => void lines.push(JSON.parse(line)) });
    const events = new PipelineEvents();
    const metrics = createMetrics(events);
    const parisReadings: SlotEvent[] = [];
    events.on('watch:slot', (e) => {
      if (e.slotSite === parisSite) parisReadings.push(e);
    });
    london = createPipeline(t.config, londonSite, logger, CONNECTORS, events);
    const streaming = once(events, 'capture:streaming');
    londonDone = london.run();
    londonDone.catch(() => undefined);
    await Promise.race([streaming, londonDone]);

    const over = await waitFor('london to read paris slot over the threshold', async () => parisReadings.find((e) => e.retainedBytes > WARN_BYTES), 10_000);
    assert.deepEqual({ ...over, retainedBytes: 0 }, { site: londonSite, slotSite: parisSite, retainedBytes: 0, active: false });

    // Two more rounds: still over, still one warning.
    const seen = parisReadings.length;
    await waitFor('two more rounds', async () => parisReadings.length >= seen + 2, 5000);
    assert.ok(parisReadings.every((e) => e.active === false && e.site === londonSite));
    const warnings = lines.filter((l) => l.level === 40 && l.slotSite === parisSite);
    assert.equal(warnings.length, 1, `one warning per crossing, got ${JSON.stringify(warnings)}`);
    const warning = warnings[0]!;
    const slot = slotName(parisSite);
    assert.match(warning.msg, new RegExp(`^slot ${slot} on site ${parisSite} holds [0-9.]+ (KiB|MiB|GiB) of WAL and no process is streaming from it`));
    assert.ok(warning.msg.includes(`start "sitesync run --site ${parisSite}"`), warning.msg);
    assert.ok(warning.msg.includes(`pg_drop_replication_slot('${slot}')`), warning.msg);
    assert.equal(warning.active, false);
    assert.ok((warning.retainedBytes ?? 0) > WARN_BYTES);

    const text = await metrics.registry.metrics();
    const labels = `{site="${londonSite}",slot_site="${parisSite}"}`;
    const retained = text.match(new RegExp(`^sitesync_slot_retained_wal_bytes${labels} (\\d+)$`, 'm'));
    assert.ok(retained, `retained gauge for paris's slot in\n${text.split('\n').filter((l) => l.startsWith('sitesync_slot')).join('\n')}`);
    assert.ok(Number(retained[1]) > WARN_BYTES);
    assert.match(text, new RegExp(`^sitesync_slot_active${labels} 0$`, 'm'));
    assert.match(text, new RegExp(`^sitesync_slot_active\\{site="${londonSite}",slot_site="${londonSite}"\\} [01]$`, 'm'), 'london watches its own slot too');

    london.stop();
    await londonDone;
  });
});
