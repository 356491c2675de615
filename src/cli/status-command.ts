/**
 * `sitesync status`: every site's capture (its slot or log reader), how far each source is applied there,
 * and the queues, at a glance. Each site's database is read by its connector.
 */
import { capturingSites, databaseUrlFor, type Config } from '../config/config-schema.ts';
import { connectorFor, describeSitePosition, type AppliedStatus, type CaptureStatus, type ConnectorRegistry } from '../connector.ts';
import { parkingQueue, siteQueue } from '../config/names.ts';
import { connectBroker } from '../bus/broker-connection.ts';
import { describeError } from '../errors.ts';
import { redactSecrets } from '../observability/logger.ts';
import { describeProgress, type SnapshotStatus } from '../capture/snapshot-control.ts';
import type { JoinSummary } from '../apply/join-book.ts';

export interface SiteStatus {
  readonly site: string;
  /** False for a site that only receives (its slot is shown only if one is left over). */
  readonly capture: boolean;
  readonly error?: string;
  /** What keeps the site's log for capture (a PostgreSQL slot…). */
  readonly captureState?: CaptureStatus;
  /** Per source site, how far it is applied here; `applied` is its display form. */
  readonly applied?: (AppliedStatus & { readonly applied: string | null })[];
  readonly queue?: QueueStatus;
  /** Snapshots this site is sending now, with their progress (absent: the site cannot snapshot, or its book could not be read). */
  readonly snapshots?: readonly SnapshotStatus[];
  /** Joins this site takes part in now, as donor or joining site. */
  readonly joins?: readonly JoinSummary[];
}

export type QueueStatus =
  | { name: string; messages: number; consumers: number; parked: number }
  /** `unreachable`: RabbitMQ could not be read (down, login refused, connection lost), as opposed to a queue
   *  merely not declared yet, which is the normal state of a site never run. */
  | { name: string; error: string; unreachable?: true };

/**
 * One line per service that `status` had to read and could not: each site whose database did not answer,
 * and RabbitMQ once (it is one broker for every site). Empty when every answer came back, even if some
 * queue or slot does not exist yet. The CLI exits non-zero when this is not empty, so that a script or a
 * probe running `sitesync status` notices.
 */
export function unreachableServices(statuses: readonly SiteStatus[]): string[] {
  const databases = statuses.flatMap((s) => (s.error ? [`site ${s.site}: ${s.error}`] : []));
  const brokerErrors = new Set(statuses.flatMap((s) => (s.queue && 'error' in s.queue && s.queue.unreachable ? [s.queue.error] : [])));
  return [...databases, ...[...brokerErrors].map((error) => `RabbitMQ: ${error}`)];
}

export async function collectStatus(config: Config, connectors: ConnectorRegistry): Promise<SiteStatus[]> {
  const sites = Object.keys(config.sites);
  const sources = capturingSites(config);
  const queues = await readQueues(config, sites);
  return Promise.all(
    sites.map(async (site): Promise<SiteStatus> => {
      const queue = queues.get(site);
      const capture = config.sites[site]!.capture;
      try {
        const read = await connectorFor(connectors, config, site).readStatus(databaseUrlFor(config, site, 'monitor'), site, sources.filter((s) => s !== site));
        const applied = read.applied.map((a) => ({ ...a, applied: a.position === null ? null : describeSitePosition(connectors, config, a.source, a.position) }));
        const monitor = databaseUrlFor(config, site, 'monitor');
        const [snapshots, joins] = await Promise.all([runningSnapshots(connectors, config, site, monitor), openJoins(connectors, config, site, monitor)]);
        return { site, capture, captureState: read.capture, applied, ...(queue ? { queue } : {}), ...(snapshots ? { snapshots } : {}), ...(joins ? { joins } : {}) };
      } catch (error) {
        return { site, capture, error: redactSecrets(describeError(error)), ...(queue ? { queue } : {}) };
      }
    }),
  );
}

/** The site's running snapshots; undefined when it has none it can tell of (its kind cannot snapshot, or the book is unreadable). */
async function runningSnapshots(connectors: ConnectorRegistry, config: Config, site: string, url: string): Promise<SnapshotStatus[] | undefined> {
  const { openSnapshotControl } = connectorFor(connectors, config, site);
  if (!openSnapshotControl || !config.sites[site]!.capture) return undefined;
  const control = openSnapshotControl({ site, url });
  try {
    return (await control.list()).filter((s) => s.state === 'running');
  } catch {
    return undefined; // a monitoring role without the right to read sitesync.snapshots: status shows the rest
  } finally {
    await control.close().catch(() => undefined);
  }
}

const OPEN_JOIN_STATES = new Set(['requested', 'holding', 'snapshotting', 'catching-up']);

async function openJoins(connectors: ConnectorRegistry, config: Config, site: string, url: string): Promise<JoinSummary[] | undefined> {
  const { openJoinBook } = connectorFor(connectors, config, site);
  if (!openJoinBook) return undefined;
  const book = openJoinBook({ site, url });
  try {
    return (await book.list()).filter((j) => OPEN_JOIN_STATES.has(j.state));
  } catch {
    return undefined;
  } finally {
    await book.close().catch(() => undefined);
  }
}

/** `[######--------------]`: a snapshot's share read, for people. */
export function progressBar(status: Pick<SnapshotStatus, 'rowsSent' | 'estimatedRows' | 'state'>, width = 20): string {
  const total = Math.max(status.estimatedRows, status.rowsSent);
  const share = status.state === 'done' ? 1 : total === 0 ? 0 : Math.min(0.99, status.rowsSent / total);
  const filled = Math.floor(share * width);
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`;
}

/** AMQP reply code of a passive declare for a queue that does not exist. */
const AMQP_NOT_FOUND = 404;

async function readQueues(config: Config, sites: string[]): Promise<Map<string, QueueStatus>> {
  const result = new Map<string, QueueStatus>();
  let connection;
  try {
    connection = await connectBroker(config.broker.url, 'sitesync status');
  } catch (error) {
    for (const site of sites) result.set(site, { name: siteQueue(site), error: redactSecrets(describeError(error)), unreachable: true });
    return result;
  }
  try {
    for (const site of sites) {
      try {
        // A failed check closes the channel, so each queue gets its own.
        const channel = await connection.createChannel();
        channel.on('error', () => undefined);
        const q = await channel.checkQueue(siteQueue(site));
        const parked = await channel.checkQueue(parkingQueue(site)).then((p) => p.messageCount, () => 0);
        result.set(site, { name: siteQueue(site), messages: q.messageCount, consumers: q.consumerCount, parked });
        await channel.close().catch(() => undefined);
      } catch (error) {
        // Only NOT_FOUND means "not declared yet"; a refused check or a lost connection means RabbitMQ could not be read.
        const notDeclared = (error as { code?: unknown }).code === AMQP_NOT_FOUND;
        result.set(site, notDeclared ? { name: siteQueue(site), error: 'not declared yet (run the site once)' } : { name: siteQueue(site), error: redactSecrets(describeError(error)), unreachable: true });
      }
    }
  } finally {
    await connection.close().catch(() => undefined);
  }
  return result;
}

export function formatStatus(statuses: SiteStatus[]): string {
  const lines: string[] = [];
  for (const s of statuses) {
    lines.push(`site ${s.site}`);
    if (s.error) lines.push(`  error: ${s.error}`);
    const state = s.captureState;
    if (!s.capture) {
      lines.push(state?.exists && state.retainedBytes !== null ? `  capture off, but ${state.name} is left over and keeps ${formatBytes(state.retainedBytes)} of log: drop it (${state.release})` : '  capture off: receives only');
    } else if (state) {
      lines.push(
        state.exists
          ? `  ${state.name}: ${state.active ? 'streaming' : 'idle'}, confirmed ${state.confirmed}, server at ${state.current}, lag ${formatBytes(state.lagBytes)}${state.retainedBytes === null ? '' : `, log kept ${formatBytes(state.retainedBytes)}`}`
          : `  ${state.name}: not created yet (run the site once)`,
      );
    }
    for (const a of s.applied ?? []) lines.push(`  from ${a.source}: applied up to ${a.applied ?? 'nothing yet'} (${a.name})`);
    for (const snap of s.snapshots ?? []) {
      lines.push(`  snapshot ${snap.id} of ${snap.table} to ${snap.targets ? snap.targets.join(', ') : 'every site'}: ${progressBar(snap)} ${describeProgress(snap)}`);
    }
    for (const j of s.joins ?? []) {
      lines.push(j.role === 'donor' ? `  join ${j.joinId}: donor for ${j.peer} (${j.state}: applying nothing from other sites until its snapshots are read)` : `  join ${j.joinId}: joining from ${j.peer} (${j.state})`);
    }
    if (s.queue) {
      lines.push('error' in s.queue ? `  queue ${s.queue.name}: ${s.queue.error}` : `  queue ${s.queue.name}: ${s.queue.messages} waiting, ${s.queue.consumers} consumer(s), ${s.queue.parked} parked`);
    }
  }
  return lines.join('\n');
}

function formatBytes(bytes: number | null): string {
  if (bytes === null) return 'unknown';
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}
