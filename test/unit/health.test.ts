/**
 * /readyz's state, derived from pipeline events (src/observability/health.ts), and the endpoints that serve
 * it beside /metrics.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { PipelineHealth } from '../../src/observability/health.ts';
import { createMetrics, serveMetrics } from '../../src/observability/metrics.ts';
import { PipelineEvents, pipelineScope } from '../../src/observability/pipeline-events.ts';
import { parseConfig } from '../../src/config/load-config.ts';

const paris = { site: 'paris', capture: true, sources: ['london', 'madrid'] };

test('not ready until capture streams and apply consumes; then ready', () => {
  const events = new PipelineEvents();
  const health = new PipelineHealth(events, paris);
  assert.deepEqual(health.readiness(), { ready: false, site: 'paris', capture: 'starting', apply: 'starting', interrupted: {}, halted: {} });
  events.emit('apply:consuming', { site: 'paris' });
  assert.equal(health.readiness().ready, false, 'capture still starting');
  assert.equal(health.readiness().apply, 'consuming');
  events.emit('capture:streaming', { site: 'paris' });
  assert.deepEqual(health.readiness(), { ready: true, site: 'paris', capture: 'streaming', apply: 'consuming', interrupted: {}, halted: {} });
});

test('a site that only receives is ready once apply consumes', () => {
  const events = new PipelineEvents();
  const health = new PipelineHealth(events, { site: 'reporting', capture: false, sources: ['paris'] });
  assert.equal(health.readiness().capture, 'off');
  assert.equal(health.readiness().ready, false);
  events.emit('apply:consuming', { site: 'reporting' });
  assert.deepEqual(health.readiness(), { ready: true, site: 'reporting', capture: 'off', apply: 'consuming', interrupted: {}, halted: {} });
});

test('a halted source makes it not ready, with the reason, until that source resumes', () => {
  const events = new PipelineEvents();
  const health = new PipelineHealth(events, paris);
  events.emit('capture:streaming', { site: 'paris' });
  events.emit('apply:consuming', { site: 'paris' });
  events.emit('apply:halted', { site: 'paris', source: 'london', reason: 'SITESYNC_ERR_APPLY_SCHEMA: column "note" of table public.items does not exist at the target' });
  events.emit('apply:halted', { site: 'paris', source: 'madrid', reason: 'refused at postgres://u:secret@db/paris' });
  const halted = health.readiness();
  assert.equal(halted.ready, false);
  assert.deepEqual(halted.halted, {
    london: 'SITESYNC_ERR_APPLY_SCHEMA: column "note" of table public.items does not exist at the target',
    madrid: 'refused at postgres://u:***@db/paris',
  });
  events.emit('apply:resumed', { site: 'paris', source: 'london' });
  assert.deepEqual(Object.keys(health.readiness().halted), ['madrid']);
  assert.equal(health.readiness().ready, false);
  events.emit('apply:resumed', { site: 'paris', source: 'madrid' });
  assert.equal(health.readiness().ready, true);
});

test("another site's events do not count", () => {
  const events = new PipelineEvents();
  const health = new PipelineHealth(events, paris);
  events.emit('capture:streaming', { site: 'london' });
  events.emit('apply:consuming', { site: 'london' });
  assert.equal(health.readiness().ready, false);
  events.emit('capture:streaming', { site: 'paris' });
  events.emit('apply:consuming', { site: 'paris' });
  events.emit('apply:halted', { site: 'london', source: 'paris', reason: 'x' });
  assert.equal(health.readiness().ready, true);
});

test('a pipeline starting again (reload) is not ready until it reports, and forgets the old halts', () => {
  const events = new PipelineEvents();
  const health = new PipelineHealth(events, paris);
  events.emit('capture:streaming', { site: 'paris' });
  events.emit('apply:consuming', { site: 'paris' });
  events.emit('apply:halted', { site: 'paris', source: 'london', reason: 'x' });
  events.emit('pipeline:starting', { site: 'paris', capture: false, sources: ['london'] });
  assert.deepEqual(health.readiness(), { ready: false, site: 'paris', capture: 'off', apply: 'starting', interrupted: {}, halted: {} });
  events.emit('apply:consuming', { site: 'paris' });
  assert.equal(health.readiness().ready, true);
  health.close();
  events.emit('pipeline:starting', paris);
  assert.equal(health.readiness().ready, true, 'closed: no longer listening');
});

test('pipelineScope: sources are the other sites that capture', () => {
  const config = parseConfig({
    broker: { url: 'amqp://guest:guest@127.0.0.1:5672/' },
    sites: {
      paris: { postgres: 'postgres://postgres@127.0.0.1:5432/paris' },
      london: { postgres: 'postgres://postgres@127.0.0.1:5432/london' },
      reporting: { postgres: 'postgres://postgres@127.0.0.1:5432/reporting', capture: false },
    },
  });
  assert.deepEqual(pipelineScope(config, 'paris'), { site: 'paris', capture: true, sources: ['london'] });
  assert.deepEqual(pipelineScope(config, 'reporting'), { site: 'reporting', capture: false, sources: ['paris', 'london'] });
});

test('/healthz answers alive, /readyz 503 then 200 with the state as JSON, /metrics still served', async () => {
  const events = new PipelineEvents();
  const health = new PipelineHealth(events, paris);
  const server = await serveMetrics(createMetrics(events, paris), 0, '127.0.0.1', health);
  try {
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const alive = await fetch(`${base}/healthz`);
    assert.equal(alive.status, 200);
    assert.deepEqual(await alive.json(), { status: 'alive' });
    const starting = await fetch(`${base}/readyz`);
    assert.equal(starting.status, 503);
    assert.match(starting.headers.get('content-type') ?? '', /^application\/json/);
    assert.deepEqual(await starting.json(), { ready: false, site: 'paris', capture: 'starting', apply: 'starting', interrupted: {}, halted: {} });
    events.emit('capture:streaming', { site: 'paris' });
    events.emit('apply:consuming', { site: 'paris' });
    const ready = await fetch(`${base}/readyz?verbose`);
    assert.equal(ready.status, 200);
    assert.equal(((await ready.json()) as { ready: boolean }).ready, true);
    const metrics = await fetch(`${base}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(await metrics.text(), /^sitesync_apply_consuming\{site="paris"\} 1$/m);
    assert.equal((await fetch(`${base}/nothing`)).status, 404);
  } finally {
    server.close();
  }
});

test('a part whose connection was lost is not ready while it retries, and is again once it works', () => {
  const events = new PipelineEvents();
  const health = new PipelineHealth(events, paris);
  events.emit('capture:streaming', { site: 'paris' });
  events.emit('apply:consuming', { site: 'paris' });
  events.emit('apply:interrupted', { site: 'paris', reason: 'RabbitMQ at amqp://u:secret@broker/ is unreachable' });
  assert.deepEqual(health.readiness(), { ready: false, site: 'paris', capture: 'streaming', apply: 'retrying', interrupted: { apply: 'RabbitMQ at amqp://u:***@broker/ is unreachable' }, halted: {} });
  events.emit('capture:interrupted', { site: 'paris', reason: 'PostgreSQL of site paris is unreachable' });
  events.emit('apply:consuming', { site: 'paris' });
  assert.equal(health.readiness().ready, false, 'capture still retrying');
  events.emit('capture:streaming', { site: 'paris' });
  assert.deepEqual(health.readiness(), { ready: true, site: 'paris', capture: 'streaming', apply: 'consuming', interrupted: {}, halted: {} });
});
