/**
 * `sitesync join --site N --from A`: a new site N joins sites that keep writing. N's tables are filled from
 * snapshots of A sent to N alone, then N takes every other site from where A's snapshot left it
 * (join-coordinator.ts and docs/joining-a-running-mesh.md say how and why). No process restarts: the
 * other sites' processes learn of N by reloading their configuration (SIGHUP), A's and N's processes do
 * the join's work, and this command only writes down the join at both sites and starts the snapshots.
 *
 * In order, each step safe to repeat: N's tables must be empty and N's queue must exist with nobody
 * consuming it (N's process starts after this command); the join is recorded at N; A is asked to hold
 * (its apply stops between two messages and records what it applied of each site) and the command waits
 * for it; those positions are recorded at N; one snapshot per table starts at A, addressed to N.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { randomBytes } from 'node:crypto';
import { databaseUrlFor, siteConfig, type Config } from '../config/config-schema.ts';
import { siteQueue } from '../config/names.ts';
import { connectBroker } from '../bus/broker-connection.ts';
import { ensureTopology, siteNeeds } from '../bus/topology.ts';
import { connectorFor, type ConnectorRegistry } from '../connector.ts';
import { describeError, SitesyncError } from '../errors.ts';
import type { JoinBook } from '../apply/join-book.ts';
import { newSnapshotId, splitTable } from '../capture/snapshot-marker.ts';
import { describeProgress } from '../capture/snapshot-control.ts';
import type { Logger } from '../observability/logger.ts';
import { startSnapshot, withSnapshotControl } from './snapshot-command.ts';

export interface JoinRequest {
  /** The joining site. */
  readonly site: string;
  /** The donor: a capturing site whose rows N takes. */
  readonly from: string;
  /** `schema.table`s; default the tables both sites list in the configuration. */
  readonly tables?: readonly string[];
  readonly chunkRows?: number;
  /** How long to wait for the donor's process to hold. */
  readonly holdTimeoutMs?: number;
}

const DEFAULT_HOLD_TIMEOUT_MS = 60_000;

function bookOf(config: Config, connectors: ConnectorRegistry, site: string, role: string): JoinBook {
  const connector = connectorFor(connectors, config, site);
  if (!connector.openJoinBook) {
    const able = [...connectors.values()].filter((c) => c.openJoinBook).map((c) => c.kind);
    throw new SitesyncError('SITESYNC_ERR_CONFIG', `site ${site} is a ${connector.kind} database, which cannot be a join's ${role} yet (${able.join(', ') || 'none'} can); fill it with sitesync snapshot --to ${site} while writes pause, as the README's add-a-site steps say`);
  }
  return connector.openJoinBook({ site, url: databaseUrlFor(config, site, 'apply') });
}

/**
 * The tables of the join: asked for; else the ones both sites list (or the one that lists them); else, when
 * neither lists its tables (it replicates all of them), every table with a primary key both databases hold.
 */
async function joinTables(config: Config, connectors: ConnectorRegistry, request: JoinRequest): Promise<string[]> {
  const donor = siteConfig(config, request.from)!.tables ?? null;
  const joiner = siteConfig(config, request.site)!.tables ?? null;
  let tables = request.tables ?? (donor && joiner ? donor.filter((t) => joiner.includes(t)) : (donor ?? joiner));
  if (!tables) {
    const [atJoiner, atDonor] = await Promise.all([listTables(config, connectors, request.site), listTables(config, connectors, request.from)]);
    tables = atJoiner && atDonor ? atJoiner.filter((t) => atDonor.includes(t)) : null;
  }
  if (!tables || tables.length === 0) {
    throw new SitesyncError('SITESYNC_ERR_CONFIG', `no tables to join: create them at site ${request.site} (empty, with their primary keys), list them in sites.${request.site}.tables, or give --tables schema.table,…`);
  }
  return [...tables];
}

/** The tables with a primary key a site's database holds; null when its connector cannot list them. */
async function listTables(config: Config, connectors: ConnectorRegistry, site: string): Promise<string[] | null> {
  const { openTableReader } = connectorFor(connectors, config, site);
  if (!openTableReader) return null;
  const reader = await openTableReader({ site, url: databaseUrlFor(config, site, 'apply'), consistent: false });
  try {
    return reader.listTables ? await reader.listTables() : null;
  } finally {
    await reader.close().catch(() => undefined);
  }
}

export async function startJoin(config: Config, connectors: ConnectorRegistry, request: JoinRequest, logger: Logger, print: (line: string) => void): Promise<{ joinId: string; snapshotIds: string[] }> {
  const { site, from } = request;
  for (const name of [site, from]) {
    if (!siteConfig(config, name)) throw new SitesyncError('SITESYNC_ERR_CONFIG', `site ${JSON.stringify(name)} is not in the configuration (sites: ${Object.keys(config.sites).join(', ')}); add it there, reload every running process (kill -HUP), then join`);
  }
  if (site === from) throw new SitesyncError('SITESYNC_ERR_CONFIG', `--from ${from}: a site cannot join from itself; name a running site whose rows it takes`);
  const tables = await joinTables(config, connectors, request);
  const joiner = bookOf(config, connectors, site, 'joining site');
  const donor = bookOf(config, connectors, from, 'donor');
  try {
    await checkEmpty(config, connectors, site, tables);
    await checkQueueIdle(config, site, logger);
    const open = await joiner.join();
    const joinId = open?.joinId ?? `j${newSnapshotId().slice(1, 16)}-${randomBytes(3).toString('hex')}`;
    const snapshotIds = open?.snapshotIds.length ? [...open.snapshotIds] : tables.map(() => newSnapshotId());
    if (open && open.donor !== from) throw new SitesyncError('SITESYNC_ERR_CONFIG', `site ${site} is already joining from ${open.donor} (join ${open.joinId}); finish it, or cancel it with sitesync join --cancel --site ${site} --from ${open.donor}`);
    await joiner.beginJoin({ joinId, donor: from, snapshotIds, positions: {} });
    await donor.requestHold(joinId, site, snapshotIds);
    print(`join ${joinId}: asked site ${from} to hold its apply while it reads ${tables.length} table${tables.length === 1 ? '' : 's'} for ${site}`);
    const hold = await waitForHold(donor, joinId, request.holdTimeoutMs ?? DEFAULT_HOLD_TIMEOUT_MS, from);
    await joiner.beginJoin({ joinId, donor: from, snapshotIds, positions: hold.positions });
    const started = new Set((await withSnapshotControl(config, connectors, from, (control) => control.list())).map((s) => s.id));
    for (const [i, table] of tables.entries()) {
      const id = snapshotIds[i]!;
      if (started.has(id)) continue;
      const { estimatedRows } = await startSnapshot(config, connectors, { site: from, table, targets: [site], chunkRows: request.chunkRows, id });
      print(`join ${joinId}: snapshot ${id} of ${table} started at ${from}${estimatedRows > 0 ? ` (about ${estimatedRows} rows)` : ''}`);
    }
    print(`join ${joinId}: start (or keep running) sitesync run --site ${site}; sitesync join --status --site ${site} --from ${from} follows it`);
    return { joinId, snapshotIds };
  } finally {
    await joiner.close();
    await donor.close();
  }
}

async function waitForHold(donor: JoinBook, joinId: string, timeoutMs: number, from: string) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const hold = await donor.hold();
    if (hold?.joinId === joinId && hold.state === 'holding') return hold;
    if (Date.now() > deadline) {
      await donor.releaseHold(joinId, 'the donor did not hold in time');
      throw new SitesyncError('SITESYNC_ERR_CONFIG', `site ${from}'s sitesync run did not hold its apply within ${Math.round(timeoutMs / 1000)} s: start sitesync run --site ${from} (or check its log), then run sitesync join again`);
    }
    await sleep(200);
  }
}

/** A joining site's tables must be empty: its rows all come from the donor. */
async function checkEmpty(config: Config, connectors: ConnectorRegistry, site: string, tables: readonly string[]): Promise<void> {
  const { openTableReader } = connectorFor(connectors, config, site);
  if (!openTableReader) return;
  const reader = await openTableReader({ site, url: databaseUrlFor(config, site, 'apply'), consistent: false });
  try {
    for (const table of tables) {
      const { schema, table: name } = splitTable(table);
      const shape = await reader.describe(schema, name);
      if ((await reader.readChunk(shape, null, 1)).length > 0) {
        throw new SitesyncError('SITESYNC_ERR_CONFIG', `table ${table} at site ${site} already holds rows: a joining site's rows all come from the donor; empty it (TRUNCATE ${table}) or create it anew, then join`);
      }
    }
  } finally {
    await reader.close().catch(() => undefined);
  }
}

/** N's queue must exist (bound to every other site) and nobody may consume it yet. */
async function checkQueueIdle(config: Config, site: string, logger: Logger): Promise<void> {
  const connection = await connectBroker(config.broker.url, `sitesync join ${site}`);
  try {
    await ensureTopology(connection, config, siteNeeds(config, site), logger);
    const channel = await connection.createChannel();
    const { consumerCount } = await channel.checkQueue(siteQueue(site));
    await channel.close().catch(() => undefined);
    if (consumerCount > 0) {
      throw new SitesyncError('SITESYNC_ERR_CONFIG', `site ${site}'s sitesync run is already applying ${siteQueue(site)}: stop it, run sitesync join, then start it again (a joining site must not apply anything before its join)`);
    }
  } finally {
    await connection.close().catch(() => undefined);
  }
}

/** One line per join step, until the joining site's join is done; returns when it is. */
export async function waitForJoin(config: Config, connectors: ConnectorRegistry, site: string, from: string, print: (line: string) => void, pollMs = 1000): Promise<void> {
  const joiner = bookOf(config, connectors, site, 'joining site');
  let told = '';
  try {
    for (;;) {
      const join = await joiner.join();
      if (!join) {
        const last = (await joiner.list()).find((j) => j.role === 'joiner');
        print(last ? `join ${last.joinId}: ${last.state}` : `site ${site} has no join`);
        return;
      }
      const statuses = await withSnapshotControl(config, connectors, from, (control) => control.list()).catch((error: unknown) => {
        throw new SitesyncError('SITESYNC_ERR_DATABASE_UNREACHABLE', `cannot read site ${from}'s snapshots: ${describeError(error)}`);
      });
      const mine = statuses.filter((s) => join.snapshotIds.includes(s.id));
      const applied = Object.keys(join.lastChunks).length;
      const line = `join ${join.joinId}: ${join.state}; read at ${from}: ${mine.map((s) => `${s.table} ${s.state} ${describeProgress(s)}`).join(', ') || 'not started'}; applied at ${site}: ${applied}/${join.snapshotIds.length} tables`;
      if (line !== told) print(line);
      told = line;
      await sleep(pollMs);
    }
  } finally {
    await joiner.close();
  }
}

/** Ends an open join at both sites and cancels its snapshots at the donor. */
export async function cancelJoin(config: Config, connectors: ConnectorRegistry, site: string, from: string, print: (line: string) => void): Promise<void> {
  const joiner = bookOf(config, connectors, site, 'joining site');
  const donor = bookOf(config, connectors, from, 'donor');
  try {
    const join = await joiner.join();
    if (join) await withSnapshotControl(config, connectors, from, async (control) => {
      for (const id of join.snapshotIds) await control.cancel(id);
    });
    const n = (await joiner.cancel('cancelled by sitesync join --cancel')) + (await donor.cancel('cancelled by sitesync join --cancel'));
    print(n > 0 ? `cancelled the join of ${site} from ${from}: ${site} holds what it applied so far; empty its tables before joining again` : `no open join of ${site} from ${from}`);
  } finally {
    await joiner.close();
    await donor.close();
  }
}
