/**
 * `sitesync snapshot`: send the rows a table already holds at a site to the other sites (all, or the ones
 * named), through the site's own stream, while everyone keeps writing — for a table that drifted, a table
 * added to the replication set after it had data, or a site or store that starts empty. Also lists the
 * site's snapshots with their progress, and cancels one.
 *
 * The command only writes the snapshot's first marker into the site's log (snapshot-control.ts); the site's
 * running `sitesync run` reads the chunks (snapshot-chunks.ts). Nothing restarts; if that process is not
 * running, the snapshot starts when it does.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { databaseUrlFor, siteConfig, type Config } from '../config/config-schema.ts';
import { connectorFor, type Connector, type ConnectorRegistry } from '../connector.ts';
import { SitesyncError } from '../errors.ts';
import { describeProgress, type SnapshotControl, type SnapshotStatus } from '../capture/snapshot-control.ts';
import { DEFAULT_CHUNK_ROWS, MAX_CHUNK_ROWS, MAX_MARKER_KEYS, newSnapshotId, splitTable, type SnapshotMarker } from '../capture/snapshot-marker.ts';
import type { RowKey } from '../capture/table-reader.ts';

export interface SnapshotRequest {
  readonly site: string;
  /** `schema.table`. */
  readonly table: string;
  /** Sites that write the rows; null: every site that applies this one. */
  readonly targets: readonly string[] | null;
  readonly chunkRows?: number;
  /** Only these keys (a repair); keys the site does not hold are sent as deletes. */
  readonly keys?: readonly RowKey[];
  /** The snapshot's id when the caller needs it before the snapshot starts (a join); default a new one. */
  readonly id?: string;
}

/** The capabilities a site needs for snapshots; one line saying why not otherwise. */
function snapshotConnector(connectors: ConnectorRegistry, config: Config, site: string): Required<Pick<Connector, 'openTableReader' | 'openSnapshotControl'>> {
  const own = siteConfig(config, site);
  if (!own) throw new SitesyncError('SITESYNC_ERR_CONFIG', `site ${JSON.stringify(site)} is not in the configuration (sites: ${Object.keys(config.sites).join(', ')})`);
  if (!own.capture) throw new SitesyncError('SITESYNC_ERR_CONFIG', `site ${site} does not capture (sites.${site}.capture: false): it has no stream to send a snapshot through`);
  const connector = connectorFor(connectors, config, site);
  const { openTableReader, openSnapshotControl } = connector;
  if (!openTableReader || !openSnapshotControl) {
    const able = [...connectors.values()].filter((c) => c.openTableReader && c.openSnapshotControl).map((c) => c.kind);
    throw new SitesyncError(
      'SITESYNC_ERR_CONFIG',
      `site ${site} is a ${connector.kind} database, whose connector cannot snapshot yet; take the snapshot from a site whose database can (${able.join(', ') || 'none registered'})`,
    );
  }
  return { openTableReader, openSnapshotControl };
}

/** Starts a snapshot (writes its first marker); returns its id. */
export async function startSnapshot(config: Config, connectors: ConnectorRegistry, request: SnapshotRequest): Promise<{ id: string; estimatedRows: number }> {
  const { site, table } = request;
  const { openTableReader, openSnapshotControl } = snapshotConnector(connectors, config, site);
  const own = siteConfig(config, site)!;
  if (!/^[^.\s]+\.[^\s]+$/.test(table)) throw new SitesyncError('SITESYNC_ERR_CONFIG', `--table ${JSON.stringify(table)} is not schema.table; give it as public.accounts`);
  if (own.tables && !own.tables.includes(table)) {
    throw new SitesyncError('SITESYNC_ERR_CONFIG', `table ${table} is not one site ${site} replicates (sites.${site}.tables); add it there first`);
  }
  for (const target of request.targets ?? []) {
    if (!siteConfig(config, target) || target === site) {
      throw new SitesyncError('SITESYNC_ERR_CONFIG', `--to ${target}: not another configured site (sites: ${Object.keys(config.sites).filter((s) => s !== site).join(', ')})`);
    }
  }
  const chunkRows = request.chunkRows ?? DEFAULT_CHUNK_ROWS;
  if (!Number.isInteger(chunkRows) || chunkRows < 1 || chunkRows > MAX_CHUNK_ROWS) throw new SitesyncError('SITESYNC_ERR_CONFIG', `--chunk-rows ${chunkRows}: give a whole number from 1 to ${MAX_CHUNK_ROWS}`);
  const keys = request.keys ?? null;
  if (keys !== null && (keys.length === 0 || keys.length > MAX_MARKER_KEYS)) throw new SitesyncError('SITESYNC_ERR_CONFIG', `a snapshot of chosen keys takes 1 to ${MAX_MARKER_KEYS} keys; got ${keys.length}`);
  const url = databaseUrlFor(config, site, 'capture');
  const reader = await openTableReader({ site, url, consistent: false });
  const control = openSnapshotControl({ site, url });
  try {
    const { schema, table: name } = splitTable(table);
    const shape = await reader.describe(schema, name); // no primary key, no such table: one line, before anything is written
    const estimatedRows = keys !== null ? keys.length : await reader.estimateRows(shape);
    const marker: SnapshotMarker = { id: request.id ?? newSnapshotId(), table, chunk: 0, chunkRows, targets: request.targets, after: null, keys };
    await control.start(marker, estimatedRows);
    return { id: marker.id, estimatedRows };
  } finally {
    await reader.close().catch(() => undefined);
    await control.close().catch(() => undefined);
  }
}

/** Runs `work` with the site's snapshot control. */
export async function withSnapshotControl<T>(config: Config, connectors: ConnectorRegistry, site: string, work: (control: SnapshotControl) => Promise<T>): Promise<T> {
  const { openSnapshotControl } = snapshotConnector(connectors, config, site);
  const control = openSnapshotControl({ site, url: databaseUrlFor(config, site, 'capture') });
  try {
    return await work(control);
  } finally {
    await control.close().catch(() => undefined);
  }
}

/**
 * Waits until the snapshot is read to its end (or cancelled), telling its progress when it changes. It
 * measures reading at the source: the rows are applied at each site as its queue reaches them.
 */
export async function waitForSnapshot(control: SnapshotControl, id: string, progress: (status: SnapshotStatus) => void, pollMs = 500): Promise<SnapshotStatus> {
  let told = '';
  for (;;) {
    const status = (await control.list()).find((s) => s.id === id);
    if (!status) throw new SitesyncError('SITESYNC_ERR_CONFIG', `no snapshot ${id} at this site`);
    const line = `${status.state} ${describeProgress(status)}`;
    if (line !== told) progress(status);
    told = line;
    if (status.state !== 'running') return status;
    await sleep(pollMs);
  }
}

export function formatSnapshot(status: SnapshotStatus): string {
  const to = status.targets ? ` to ${status.targets.join(', ')}` : ' to every site';
  return `${status.id}  ${status.table}${to}  ${status.state}  ${describeProgress(status)}  started ${status.startedAt.toISOString()}`;
}
