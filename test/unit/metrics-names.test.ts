/**
 * The registry as Prometheus scrapes it: names by Prometheus's conventions, the series of the site and of
 * every source present from the start, and every sitesync metric that the compose monitoring (Grafana
 * dashboard, Prometheus alert rules) queries exported under that name.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createMetrics } from '../../src/observability/metrics.ts';
import { PipelineEvents, type PipelineScope } from '../../src/observability/pipeline-events.ts';
import { VERSION } from '../../src/observability/version.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const paris: PipelineScope = { site: 'paris', capture: true, sources: ['london', 'madrid'] };

interface Family {
  type: string;
  help: string;
}

/** Families (name → type and help) and sample lines of a scrape. */
function parse(text: string): { families: Map<string, Family>; samples: string[] } {
  const families = new Map<string, Family>();
  const samples: string[] = [];
  for (const line of text.split('\n')) {
    const help = /^# HELP (\S+) (.*)$/.exec(line);
    if (help) families.set(help[1]!, { type: families.get(help[1]!)?.type ?? '', help: help[2]! });
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) families.set(type[1]!, { help: families.get(type[1]!)?.help ?? '', type: type[2]! });
    if (line !== '' && !line.startsWith('#')) samples.push(line);
  }
  return { families, samples };
}

async function scrape(scope?: PipelineScope, events = new PipelineEvents()): Promise<{ families: Map<string, Family>; samples: string[]; text: string }> {
  const text = await createMetrics(events, scope).registry.metrics();
  return { ...parse(text), text };
}

test('names: one sitesync_ prefix, counters end in _total and nothing else does, units as suffixes', async () => {
  const { families, text } = await scrape(paris);
  assert.ok(families.size > 20, `families read from the scrape: ${families.size}`);
  assert.doesNotMatch(text, /process_process/);
  assert.doesNotMatch(text, /sitesync_sitesync_/);
  for (const name of ['sitesync_process_cpu_seconds_total', 'sitesync_process_resident_memory_bytes', 'sitesync_process_start_time_seconds', 'sitesync_nodejs_heap_size_used_bytes']) {
    assert.ok(families.has(name), `${name} is exported`);
  }
  for (const [name, { type, help }] of families) {
    assert.match(name, /^sitesync_[a-z][a-z0-9_]*[a-z0-9]$/, `${name}: one sitesync_ prefix, snake case`);
    if (type === 'counter') assert.match(name, /_total$/, `counter ${name} ends in _total`);
    else assert.doesNotMatch(name, /_total$/, `${type} ${name} does not end in _total (kept for counters)`);
    // A unit in the name is its last word (before _total for a counter): _seconds, _bytes.
    const base = name.replace(/_total$/, '');
    for (const unit of ['seconds', 'bytes']) {
      if (base.split('_').includes(unit)) assert.ok(base.endsWith(`_${unit}`), `${name}: the unit ${unit} ends the name`);
    }
    // sitesync's own metrics: what the help says is measured in seconds or bytes says it in the name.
    if (!/^sitesync_(process|nodejs)_/.test(name)) {
      for (const unit of ['seconds', 'bytes']) {
        if (new RegExp(`\\b${unit}\\b`, 'i').test(help)) assert.ok(base.endsWith(`_${unit}`), `${name} (${help}) ends in _${unit}`);
      }
    }
  }
  assert.equal(families.get('sitesync_capture_lag_seconds')?.type, 'gauge');
  assert.equal(families.get('sitesync_apply_latency_seconds')?.type, 'histogram');
});

test('build_info is 1 with the package version and the Node.js version', async () => {
  const { samples } = await scrape();
  assert.ok(samples.includes(`sitesync_build_info{version="${VERSION}",node="${process.versions.node}"} 1`), samples.filter((s) => s.includes('build_info')).join('\n'));
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  assert.equal(VERSION, pkg.version);
});

test('every series of the site and of each configured source is there from the start, at 0', async () => {
  const { samples } = await scrape(paris);
  const expected = [
    'sitesync_capture_streaming{site="paris"} 0',
    'sitesync_apply_consuming{site="paris"} 0',
    'sitesync_captured_transactions_total{site="paris"} 0',
    'sitesync_captured_rows_total{site="paris"} 0',
    'sitesync_published_transactions_total{site="paris"} 0',
    'sitesync_published_bytes_total{site="paris"} 0',
    'sitesync_confirmed_messages_total{site="paris"} 0',
    'sitesync_capture_skipped_transactions_total{site="paris",reason="relayed"} 0',
    'sitesync_capture_skipped_transactions_total{site="paris",reason="empty"} 0',
  ];
  for (const source of ['london', 'madrid']) {
    const labels = `site="paris",source="${source}"`;
    expected.push(
      `sitesync_applied_transactions_total{${labels}} 0`,
      `sitesync_applied_rows_total{${labels}} 0`,
      `sitesync_duplicates_skipped_total{${labels}} 0`,
      `sitesync_source_halted{${labels}} 0`,
      `sitesync_apply_latency_seconds_count{${labels}} 0`,
      `sitesync_apply_latency_seconds_bucket{le="+Inf",${labels}} 0`,
      `sitesync_conflicts_total{${labels},kind="update_origin_differs",resolution="applied"} 0`,
      `sitesync_conflicts_total{${labels},kind="insert_exists",resolution="skipped"} 0`,
      `sitesync_conflicts_total{${labels},kind="delete_missing",resolution="skipped"} 0`,
    );
  }
  for (const line of expected) assert.ok(samples.includes(line), `${line} in\n${samples.filter((s) => s.startsWith('sitesync_') && !/_(process|nodejs)_/.test(s)).join('\n')}`);
  assert.equal(samples.filter((s) => s.startsWith('sitesync_conflicts_total{')).length, 2 * 5 * 2, 'two sources × five kinds × two resolutions');
});

test('a site that only receives has no capture series; a reload declares a joining source and drops a removed one', async () => {
  const events = new PipelineEvents();
  const metrics = createMetrics(events, { site: 'reporting', capture: false, sources: ['paris', 'london'] });
  let { samples } = parse(await metrics.registry.metrics());
  assert.ok(!samples.some((s) => s.startsWith('sitesync_capture_streaming') || s.startsWith('sitesync_captured_')), 'no capture series for a receive-only site');
  assert.ok(samples.includes('sitesync_source_halted{site="reporting",source="london"} 0'));

  events.emit('apply:consuming', { site: 'reporting' });
  events.emit('apply:halted', { site: 'reporting', source: 'paris', reason: 'x' });
  ({ samples } = parse(await metrics.registry.metrics()));
  assert.ok(samples.includes('sitesync_apply_consuming{site="reporting"} 1'));
  assert.ok(samples.includes('sitesync_source_halted{site="reporting",source="paris"} 1'));

  events.emit('pipeline:starting', { site: 'reporting', capture: false, sources: ['paris', 'rome'] });
  ({ samples } = parse(await metrics.registry.metrics()));
  assert.ok(samples.includes('sitesync_apply_consuming{site="reporting"} 0'), 'the new pipeline does not consume yet');
  assert.ok(samples.includes('sitesync_source_halted{site="reporting",source="paris"} 0'), 'the new pipeline has no halt yet');
  assert.ok(samples.includes('sitesync_applied_transactions_total{site="reporting",source="rome"} 0'), 'the joining source is there at once');
  assert.ok(!samples.some((s) => s.startsWith('sitesync_source_halted{site="reporting",source="london"}')), 'the removed source has no halted gauge');
});

test('state gauges follow the events', async () => {
  const events = new PipelineEvents();
  const metrics = createMetrics(events, paris);
  events.emit('capture:streaming', { site: 'paris' });
  events.emit('apply:consuming', { site: 'paris' });
  events.emit('apply:halted', { site: 'paris', source: 'london', reason: 'x' });
  events.emit('apply:conflict', { site: 'paris', source: 'madrid', kind: 'update_origin_differs', table: 'public.t', resolution: 'skip' });
  let { samples } = parse(await metrics.registry.metrics());
  for (const line of [
    'sitesync_capture_streaming{site="paris"} 1',
    'sitesync_apply_consuming{site="paris"} 1',
    'sitesync_source_halted{site="paris",source="london"} 1',
    'sitesync_conflicts_total{site="paris",source="madrid",kind="update_origin_differs",resolution="skipped"} 1',
  ]) {
    assert.ok(samples.includes(line), line);
  }
  events.emit('apply:resumed', { site: 'paris', source: 'london' });
  ({ samples } = parse(await metrics.registry.metrics()));
  assert.ok(samples.includes('sitesync_source_halted{site="paris",source="london"} 0'));
});

/** Files under `dir`, recursively. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

test('every sitesync metric the compose monitoring (dashboard, alert rules) queries is exported', async () => {
  const { families } = await scrape(paris);
  const files = [...filesUnder(join(ROOT, 'deploy/grafana')), ...filesUnder(join(ROOT, 'deploy/prometheus'))];
  assert.ok(files.some((f) => f.endsWith('.json')) && files.some((f) => f.includes('rules')), `dashboard and rules found: ${files.join(', ')}`);
  const referenced = new Set<string>();
  for (const file of files) for (const match of readFileSync(file, 'utf8').matchAll(/\bsitesync_[a-z0-9_]+/g)) referenced.add(match[0]);
  // Not metric names: job and rule-group names of the compose files.
  for (const other of ['sitesync_alerts']) referenced.delete(other);
  assert.ok(referenced.size >= 8, `metric names found: ${[...referenced].join(', ')}`);
  const exported = (name: string): boolean => families.has(name) || (families.get(name.replace(/_(bucket|sum|count)$/, ''))?.type === 'histogram');
  const missing = [...referenced].filter((name) => !exported(name));
  assert.deepEqual(missing, [], 'queried but not exported');
});
