/**
 * Prometheus metrics, fed by the pipeline's events, served on /metrics with /healthz and /readyz beside them.
 *
 * Names follow Prometheus's conventions: one `sitesync_` prefix (Node's default process metrics read
 * `sitesync_process_cpu_seconds_total`, `sitesync_nodejs_heap_size_used_bytes`), counters end in `_total`,
 * units are suffixes (`_seconds`, `_bytes`). The counters and state gauges of the site and of every source it
 * applies exist from the start at 0, so that rate() and alerts see the first change; gauges that measure
 * something (lag, retained WAL) appear with their first measurement. test/unit/metrics-names.test.ts checks it.
 */
import { createServer, type Server, type ServerResponse } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ConflictKind } from '../apply/conflict-policy.ts';
import type { PipelineHealth } from './health.ts';
import type { PipelineEvents, PipelineScope } from './pipeline-events.ts';
import { VERSION } from './version.ts';

export interface Metrics {
  readonly registry: Registry;
}

/** Every kind of conflict (checked against ConflictKind), for series that exist from the start. */
const CONFLICT_KINDS = Object.keys({
  insert_exists: true,
  update_origin_differs: true,
  update_missing: true,
  delete_origin_differs: true,
  delete_missing: true,
} satisfies Record<ConflictKind, true>);
const RESOLUTIONS = ['applied', 'skipped'] as const;
const SKIP_REASONS = ['relayed', 'empty'] as const;

/**
 * The registry of one process. With `scope` (the site's pipeline as it starts) its series exist at once;
 * each `pipeline:starting` event (a reload) declares the scope again and resets the state gauges.
 */
export function createMetrics(events: PipelineEvents, scope?: PipelineScope): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'sitesync_' });
  // prom-client also exports the sums of its active handle/request/resource gauges as gauges named *_total,
  // the suffix Prometheus keeps for counters; the gauges by type stay (sum them in a query).
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(`sitesync_${name}`);
  const r = [registry];
  const site = ['site'];
  const siteSource = ['site', 'source'];

  const buildInfo = new Gauge({ name: 'sitesync_build_info', help: 'Always 1: the sitesync version and the Node.js version this process runs', labelNames: ['version', 'node'], registers: r });
  buildInfo.set({ version: VERSION, node: process.versions.node }, 1);
  const captureStreaming = new Gauge({ name: 'sitesync_capture_streaming', help: "1 while capture streams changes from the site's database; absent for a site that only receives", labelNames: site, registers: r });
  const applyConsuming = new Gauge({ name: 'sitesync_apply_consuming', help: "1 while apply consumes the site's queue", labelNames: site, registers: r });
  const lagBytes = new Gauge({ name: 'sitesync_capture_lag_bytes', help: 'WAL bytes between the server position and the slot position confirmed to it', labelNames: site, registers: r });
  const lagSeconds = new Gauge({ name: 'sitesync_capture_lag_seconds', help: 'Seconds between now and the commit of the last transaction decoded', labelNames: site, registers: r });
  const capturedTx = new Counter({ name: 'sitesync_captured_transactions_total', help: 'Transactions decoded at this site and sent to the bus', labelNames: site, registers: r });
  const capturedRows = new Counter({ name: 'sitesync_captured_rows_total', help: 'Row changes decoded at this site', labelNames: site, registers: r });
  const skipped = new Counter({ name: 'sitesync_capture_skipped_transactions_total', help: 'Transactions not sent: relayed writes applied here by sitesync, and empty ones', labelNames: ['site', 'reason'], registers: r });
  const publishedTx = new Counter({ name: 'sitesync_published_transactions_total', help: 'Transactions published to the broker', labelNames: site, registers: r });
  const publishedBytes = new Counter({ name: 'sitesync_published_bytes_total', help: 'Message bytes published to the broker', labelNames: site, registers: r });
  const confirmed = new Counter({ name: 'sitesync_confirmed_messages_total', help: 'Messages the broker confirmed', labelNames: site, registers: r });
  const appliedTx = new Counter({ name: 'sitesync_applied_transactions_total', help: 'Source transactions applied at this site', labelNames: siteSource, registers: r });
  const appliedRows = new Counter({ name: 'sitesync_applied_rows_total', help: 'Row changes applied at this site', labelNames: siteSource, registers: r });
  const duplicates = new Counter({ name: 'sitesync_duplicates_skipped_total', help: 'Transactions received again and skipped (already applied)', labelNames: siteSource, registers: r });
  const conflicts = new Counter({ name: 'sitesync_conflicts_total', help: 'Concurrent writes to the same row detected and resolved, by kind and resolution', labelNames: [...siteSource, 'kind', 'resolution'], registers: r });
  const parked = new Counter({ name: 'sitesync_parked_messages_total', help: 'Messages that could not be applied and were parked with their reason', labelNames: [...siteSource, 'code'], registers: r });
  const halted = new Gauge({ name: 'sitesync_source_halted', help: '1 while applying from a source is halted on an error', labelNames: siteSource, registers: r });
  const snapshotRows = new Counter({ name: 'sitesync_snapshot_rows_total', help: 'Rows (and deletes of keys a repair named) read by snapshots at this site and sent, by table', labelNames: ['site', 'table'], registers: r });
  const snapshotChunks = new Counter({ name: 'sitesync_snapshot_chunks_total', help: 'Snapshot chunks read at this site and sent, by table', labelNames: ['site', 'table'], registers: r });
  const siteSlot = ['site', 'slot_site'];
  const slotRetained = new Gauge({ name: 'sitesync_slot_retained_wal_bytes', help: "WAL bytes a site's replication slot keeps on its server (from the slot's restart position), as read by this process", labelNames: siteSlot, registers: r });
  const slotActive = new Gauge({ name: 'sitesync_slot_active', help: "1 while a process is streaming from a site's replication slot, 0 otherwise", labelNames: siteSlot, registers: r });
  const latency = new Histogram({
    name: 'sitesync_apply_latency_seconds',
    help: 'Seconds from the commit at the source to the commit at this site',
    labelNames: siteSource,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: r,
  });

  /** Sources whose halted gauge this registry holds, by site: a source gone from the configuration loses it. */
  const declaredSources = new Map<string, Set<string>>();
  const declare = (scope: PipelineScope): void => {
    const own = { site: scope.site };
    if (scope.capture) {
      captureStreaming.set(own, 0);
      for (const counter of [capturedTx, capturedRows, publishedTx, publishedBytes, confirmed]) counter.inc(own, 0);
      for (const reason of SKIP_REASONS) skipped.inc({ ...own, reason }, 0);
    } else {
      captureStreaming.remove(own);
    }
    applyConsuming.set(own, 0);
    const previous = declaredSources.get(scope.site) ?? new Set<string>();
    for (const source of previous) if (!scope.sources.includes(source)) halted.remove({ ...own, source });
    declaredSources.set(scope.site, new Set(scope.sources));
    for (const source of scope.sources) {
      const labels = { ...own, source };
      for (const counter of [appliedTx, appliedRows, duplicates]) counter.inc(labels, 0);
      for (const kind of CONFLICT_KINDS) for (const resolution of RESOLUTIONS) conflicts.inc({ ...labels, kind, resolution }, 0);
      halted.set(labels, 0);
      latency.zero(labels);
    }
  };
  if (scope) declare(scope);
  events.on('pipeline:starting', declare);
  events.on('capture:streaming', (e) => captureStreaming.set({ site: e.site }, 1));
  events.on('apply:consuming', (e) => applyConsuming.set({ site: e.site }, 1));
  // A session that failed is retried after a backoff: not streaming or consuming until it works again.
  events.on('capture:interrupted', (e) => captureStreaming.set({ site: e.site }, 0));
  events.on('apply:interrupted', (e) => applyConsuming.set({ site: e.site }, 0));
  events.on('capture:transaction', (e) => {
    capturedTx.inc({ site: e.site });
    capturedRows.inc({ site: e.site }, e.rows);
  });
  events.on('capture:skipped', (e) => skipped.inc({ site: e.site, reason: e.reason }));
  events.on('capture:published', (e) => {
    publishedTx.inc({ site: e.site }, e.transactions);
    publishedBytes.inc({ site: e.site }, e.bytes);
  });
  events.on('capture:confirmed', (e) => confirmed.inc({ site: e.site }, e.messages));
  events.on('capture:lag', (e) => {
    lagBytes.set({ site: e.site }, e.bytes);
    lagSeconds.set({ site: e.site }, e.seconds);
  });
  events.on('capture:snapshot-chunk', (e) => {
    snapshotChunks.inc({ site: e.site, table: e.table });
    snapshotRows.inc({ site: e.site, table: e.table }, e.rows);
  });
  events.on('apply:applied', (e) => {
    const labels = { site: e.site, source: e.source };
    appliedTx.inc(labels, e.transactions);
    appliedRows.inc(labels, e.rows);
    const micros = BigInt(Date.now()) * 1000n - e.commitTimeMicros;
    latency.observe(labels, Math.max(0, Number(micros) / 1e6));
  });
  events.on('apply:conflict', (e) => conflicts.inc({ site: e.site, source: e.source, kind: e.kind, resolution: e.resolution === 'apply' ? 'applied' : 'skipped' }));
  events.on('apply:duplicate', (e) => duplicates.inc({ site: e.site, source: e.source }));
  events.on('apply:parked', (e) => parked.inc({ site: e.site, source: e.source, code: e.code }));
  events.on('apply:halted', (e) => halted.set({ site: e.site, source: e.source }, 1));
  events.on('apply:resumed', (e) => halted.set({ site: e.site, source: e.source }, 0));
  events.on('watch:slot', (e) => {
    const labels = { site: e.site, slot_site: e.slotSite };
    slotRetained.set(labels, e.retainedBytes);
    slotActive.set(labels, e.active ? 1 : 0);
  });
  return { registry };
}

/**
 * Serves GET /metrics, and with `health` /healthz (the process answers: 200 {"status":"alive"}) and /readyz
 * (200 when ready, 503 otherwise; the body says which part is not: health.ts). Resolves once listening.
 */
export async function serveMetrics(metrics: Metrics, port: number, host = '0.0.0.0', health?: PipelineHealth): Promise<Server> {
  const json = (res: ServerResponse, status: number, body: unknown): void =>
    void res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' }).end(`${JSON.stringify(body)}\n`);
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (health && path === '/healthz') return json(res, 200, { status: 'alive' });
    if (health && path === '/readyz') {
      const readiness = health.readiness();
      return json(res, readiness.ready ? 200 : 503, readiness);
    }
    if (path !== '/metrics') {
      res.writeHead(404).end(`sitesync serves ${health ? '/metrics, /healthz and /readyz' : '/metrics'}\n`);
      return;
    }
    metrics.registry.metrics().then(
      (body) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body),
      (error: Error) => res.writeHead(500).end(`${error.message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}
