/**
 * Wires one site's pipeline — its database's source into capture, the site's queue through apply into its
 * database's sink, and the watch over every site's log retention — from the connectors of the kinds the
 * configuration names (the registry comes from the composition root: src/cli/main.ts, or a test). Built
 * apart from being started, so tests drive it without a process.
 */
import { ApplyRunner } from './apply/apply-runner.ts';
import { JoinCoordinator } from './apply/join-coordinator.ts';
import { policyResolver } from './apply/conflict-policy.ts';
import { CaptureRunner, type CaptureRunnerOptions } from './capture/capture-runner.ts';
import { capturingSites, databaseUrlFor, siteConfig, type Config } from './config/config-schema.ts';
import { connectorFor, type Connector, type ConnectorRegistry } from './connector.ts';
import { describeError, SitesyncError } from './errors.ts';
import type { Logger } from './observability/logger.ts';
import { PipelineEvents } from './observability/pipeline-events.ts';
import { WalRetentionWatch } from './observability/wal-retention-watch.ts';

export interface Pipeline {
  readonly site: string;
  readonly events: PipelineEvents;
  /** Runs capture, apply and the WAL retention watch until `stop`; rejects on a fatal error (after stopping them all). */
  run(): Promise<void>;
  stop(): void;
}

export function createPipeline(config: Config, site: string, logger: Logger, connectors: ConnectorRegistry, events = new PipelineEvents()): Pipeline {
  const ownConfig = siteConfig(config, site);
  if (!ownConfig) {
    throw new SitesyncError('SITESYNC_ERR_CONFIG', `site ${JSON.stringify(site)} is not in the configuration (sites: ${Object.keys(config.sites).join(', ')}); pass one of them with --site`);
  }
  const connector = connectorFor(connectors, config, site);
  const sink = connector.createSink({
    site,
    url: databaseUrlFor(config, site, 'apply'),
    config,
    conflictPolicy: policyResolver(config.conflicts),
    onConflict: (c) => events.emit('apply:conflict', { site, source: c.source, kind: c.kind, table: c.table, resolution: c.resolution }),
    logger: logger.child({ site, part: 'apply' }),
  });
  // A site that only receives has no source at all: nothing at its database is decoded or published.
  if (ownConfig.capture && !connector.createSource) {
    throw new SitesyncError('SITESYNC_ERR_CONFIG', `sites.${site}: a ${connector.kind} database only receives; add "capture: false" to the site`);
  }
  const source = ownConfig.capture && connector.createSource
    ? connector.createSource({ site, url: databaseUrlFor(config, site, 'capture'), tables: ownConfig.tables ?? null, config, logger: logger.child({ site, part: 'capture' }) })
    : null;
  const capture = source
    ? new CaptureRunner({
        config,
        source,
        describePosition: (p) => (p === null ? 'none' : connector.positions.describe(p)),
        events,
        logger: logger.child({ site, part: 'capture' }),
        snapshots: snapshotsOf(connector, site, databaseUrlFor(config, site, 'capture')),
      })
    : null;
  const joins = connector.openJoinBook?.({ site, url: databaseUrlFor(config, site, 'apply') }) ?? null;
  const applyLogger = logger.child({ site, part: 'apply' });
  const join = joins
    ? new JoinCoordinator({ config, site, joins, sink, connectors, logger: applyLogger, snapshotStates: snapshotStatesOf(connector, site, ownConfig.capture ? databaseUrlFor(config, site, 'capture') : null) })
    : undefined;
  const apply = new ApplyRunner({ config, site, sink, connectors, events, logger: applyLogger, join });
  const watch = new WalRetentionWatch({
    site,
    sites: capturingSites(config),
    // Other sites' logs are read with their monitoring URL: no process needs another site's capture or apply role.
    readSlot: async (slotSite) =>
      (await connectorFor(connectors, config, slotSite).readStatus(databaseUrlFor(config, slotSite, slotSite === site ? 'capture' : 'monitor'), slotSite, [])).capture,
    intervalSeconds: config.watch.intervalSeconds,
    warnBytes: config.watch.walRetentionWarnBytes,
    events,
    logger: logger.child({ site, part: 'watch' }),
  });

  const stop = (): void => {
    capture?.stop();
    apply.stop();
    void watch.stop();
  };
  return {
    site,
    events,
    stop,
    async run() {
      const guard = (work: Promise<void>): Promise<void> =>
        work.catch((error: unknown) => {
          stop();
          throw error;
        });
      watch.start();
      try {
        if (!capture) void announceCaptureOff(connector, databaseUrlFor(config, site, 'monitor'), site, logger.child({ site, part: 'capture' }));
        const results = await Promise.allSettled([capture ? guard(capture.run()) : Promise.resolve(), guard(apply.run())]);
        const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed) throw failed.reason;
      } finally {
        await watch.stop();
        await source?.end().catch(() => undefined);
        await sink.close().catch(() => undefined);
        await joins?.close().catch(() => undefined);
      }
    },
  };
}

/** How capture reads snapshot chunks at a site, when its connector can. */
function snapshotsOf(connector: Connector, site: string, url: string): CaptureRunnerOptions['snapshots'] {
  const { openTableReader, openSnapshotControl } = connector;
  if (!openTableReader || !openSnapshotControl) return undefined;
  return async () => ({ reader: await openTableReader({ site, url, consistent: false }), control: openSnapshotControl({ site, url }) });
}

/** The states of this site's snapshots by id, for a donor's hold (join-coordinator.ts). */
function snapshotStatesOf(connector: Connector, site: string, url: string | null): ((ids: readonly string[]) => Promise<ReadonlyMap<string, string>>) | undefined {
  const { openSnapshotControl } = connector;
  if (!openSnapshotControl || url === null) return undefined;
  return async (ids) => {
    const control = openSnapshotControl({ site, url });
    try {
      const states = new Map<string, string>();
      for (const status of await control.list()) if (ids.includes(status.id)) states.set(status.id, status.state);
      return states;
    } finally {
      await control.close().catch(() => undefined);
    }
  };
}

/**
 * Says that the site only receives, and warns if it still has a slot: a site whose capture was turned off
 * keeps the slot it had, and PostgreSQL then keeps every WAL segment from the slot's position on, until its
 * disk fills.
 */
async function announceCaptureOff(connector: Connector, url: string, site: string, logger: Logger): Promise<void> {
  logger.info('capture off: this site applies what the other sites send and sends nothing');
  try {
    const { capture } = await connector.readStatus(url, site, []);
    if (!capture.exists || capture.retainedBytes === null) return;
    logger.warn(
      { slot: capture.name, retainedBytes: capture.retainedBytes },
      `capture is off but ${capture.name} still exists and keeps its log on disk; drop it: ${capture.release}`,
    );
  } catch (error) {
    logger.warn(`capture off: could not check for a leftover slot: ${describeError(error)}`);
  }
}
