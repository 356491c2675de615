/**
 * The SQL Server connector's server side (`SqlServerIo` of connectors/sqlserver/index.ts) over the simulator of
 * sqlserver-simulator.ts, so that a whole pipeline — the real capture and apply runners, the broker, a
 * PostgreSQL site on the other end — runs the connector's own code against simulated CDC:
 * `createSqlServerConnector(simulatedSqlServerIo(sim), { pollIntervalMs: 50 })` in the test's connector registry.
 *
 * - reader: a new reader of the simulator per call (as a new connection of the real reader would be);
 * - connect: the simulated apply connection (sqlserver-simulated-apply.ts);
 * - readStatus: the same shape as sqlserver-status.ts gives, through its own `statusOf`, from what the
 *   simulator holds: the capture progress row (with the time it was last written, which the simulator does not
 *   keep, so the readers made here note it), the last transaction the capture job wrote, and each source's
 *   apply_progress row as the apply connection reads it.
 *
 * What the Agent does at a real site, the test does here: `startCaptureJob` runs the capture job on a timer
 * (SQL Server's job scans the log every few seconds; 50 ms keeps tests quick), and `prepareSimulatedSite`
 * creates sitesync.apply_progress with its capture instance, which `sitesync setup` (or deploy/sqlserver/init.sql)
 * does before a site first runs: capture refuses to start without it.
 */
import type { SiteDatabaseStatus } from '../../src/connector.ts';
import type { SqlServerIo } from '../../connectors/sqlserver/index.ts';
import type { CaptureProgressRow, CdcReader } from '../../connectors/sqlserver/cdc-reader.ts';
import { lsnToBytes } from '../../connectors/sqlserver/sqlserver-positions.ts';
import { statusOf } from '../../connectors/sqlserver/sqlserver-status.ts';
import { SimulatedApplyConnection } from './sqlserver-simulated-apply.ts';
import type { SimulatedSqlServer } from './sqlserver-simulator.ts';

/** When each site's capture progress row was last written (the real table's updated_at), by simulator. */
const WRITTEN = new WeakMap<SimulatedSqlServer, Map<string, number>>();

function writtenAt(sim: SimulatedSqlServer): Map<string, number> {
  let times = WRITTEN.get(sim);
  if (!times) WRITTEN.set(sim, (times = new Map()));
  return times;
}

/** A reader of the simulator that notes when it writes a site's progress row (for status' `active`). */
function notingReader(sim: SimulatedSqlServer): CdcReader {
  const reader = sim.reader();
  const times = writtenAt(sim);
  return {
    maxTransactionLsn: () => reader.maxTransactionLsn(),
    captureInstances: () => reader.captureInstances(),
    changes: (instance, fromLsn, toLsn, after, limit) => reader.changes(instance, fromLsn, toLsn, after, limit),
    transactionTimes: (lsns) => reader.transactionTimes(lsns),
    setupFacts: () => reader.setupFacts(),
    ensureCaptureProgress: () => reader.ensureCaptureProgress(),
    readProgress: (site) => reader.readProgress(site),
    async writeProgress(site: string, row: CaptureProgressRow): Promise<void> {
      await reader.writeProgress(site, row);
      times.set(site, Date.now());
    },
    close: () => reader.close(),
  };
}

export function simulatedSqlServerIo(sim: SimulatedSqlServer): SqlServerIo {
  return {
    reader: () => notingReader(sim),
    connect: async () => new SimulatedApplyConnection(sim),
    readStatus: async (_url, site, sources): Promise<SiteDatabaseStatus> => {
      const reader = sim.reader();
      const connection = new SimulatedApplyConnection(sim);
      try {
        const progress = await reader.readProgress(site);
        const max = await reader.maxTransactionLsn();
        const hasApplyProgress = sim.describeTable('sitesync', 'apply_progress') !== null;
        const applied = [];
        if (hasApplyProgress) {
          for (const source of sources) {
            const position = await connection.readProgress(source);
            if (position !== null) applied.push({ source, position });
          }
        }
        const written = writtenAt(sim).get(site);
        return statusOf(site, sources, {
          tables: [{ table_name: 'capture_progress' }, ...(hasApplyProgress ? [{ table_name: 'apply_progress' }] : [])],
          capture: progress === null ? [] : [{ checkpoint: progress.checkpoint, age_seconds: written === undefined ? 0 : Math.floor((Date.now() - written) / 1000) }],
          maxLsn: [{ max_lsn: max === null ? null : lsnToBytes(max) }],
          applied,
        });
      } finally {
        await reader.close();
        await connection.close();
      }
    },
  };
}

/** What setup does at a site before it first runs: sitesync.apply_progress, captured as sitesync_apply_progress. */
export function prepareSimulatedSite(sim: SimulatedSqlServer): void {
  if (sim.describeTable('sitesync', 'apply_progress') === null) sim.createApplyProgress();
}

export interface CaptureJob {
  /** Stops the timer (a last run first, so that what was committed before the stop is in the change tables). */
  stop(): void;
}

/** The SQL Server Agent's CDC capture job: every `intervalMs`, committed transactions move into the change tables. */
export function startCaptureJob(sim: SimulatedSqlServer, intervalMs = 50): CaptureJob {
  const timer = setInterval(() => sim.runCaptureJob(), intervalMs);
  timer.unref();
  let stopped = false;
  return {
    stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      sim.runCaptureJob();
    },
  };
}
