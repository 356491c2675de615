/**
 * The Oracle connector's server side (`OracleIo` of connectors/oracle/index.ts) over the simulator of
 * oracle-simulator.ts, so that a whole pipeline — the real capture and apply runners, the broker, a PostgreSQL
 * site on the other end — runs the connector's own code against simulated redo and LogMiner:
 * `createOracleConnector(simulatedOracleIo(db), { pollIntervalMs: 50 })` in the test's connector registry.
 *
 * - reader: a new reader of the simulator per call (as a new connection of the real reader would be);
 * - connect: the simulated apply connection (oracle-simulated-apply.ts);
 * - readStatus: the same shape as oracle-status.ts gives, through its own `statusOf`, from what the simulator
 *   holds: the capture progress row (with its age: the simulator does not keep UPDATED_AT, so the readers made
 *   here note when they write it), CURRENT_SCN, and each source's SITESYNC.APPLY_PROGRESS row as committed.
 *
 * What the database and its DBA do at a real site, the test does here: `startArchiver` switches and archives
 * the redo logs on a timer (ARCn; a capture then mines archived logs and online ones together), and
 * `prepareSimulatedSite` creates SITESYNC.APPLY_PROGRESS, which `sitesync setup` (or deploy/oracle/) does before a
 * site first runs: capture refuses to start without it.
 */
import type { SiteDatabaseStatus } from '../../src/connector.ts';
import type { OracleIo } from '../../connectors/oracle/index.ts';
import type { LogMinerReader, OracleProgressRow } from '../../connectors/oracle/logminer-reader.ts';
import { statusOf } from '../../connectors/oracle/oracle-status.ts';
import { SimulatedApplyConnection } from './oracle-simulated-apply.ts';
import type { SimulatedOracle } from './oracle-simulator.ts';

/** When each site's capture progress row was last written (the real table's UPDATED_AT), by simulator. */
const WRITTEN = new WeakMap<SimulatedOracle, Map<string, number>>();

function writtenAt(db: SimulatedOracle): Map<string, number> {
  let times = WRITTEN.get(db);
  if (!times) WRITTEN.set(db, (times = new Map()));
  return times;
}

/** A reader of the simulator that notes when it writes a site's progress row (for status' `active`). */
function notingReader(db: SimulatedOracle): LogMinerReader {
  const reader = db.reader();
  const times = writtenAt(db);
  // Every other call goes to the simulator's reader as it is (whatever the interface has grown).
  return new Proxy(reader, {
    get(target, property, receiver) {
      if (property === 'writeProgress') {
        return async (site: string, row: OracleProgressRow): Promise<void> => {
          await target.writeProgress(site, row);
          times.set(site, Date.now());
        };
      }
      const value: unknown = Reflect.get(target, property, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

export function simulatedOracleIo(db: SimulatedOracle): OracleIo {
  return {
    reader: () => notingReader(db),
    connect: async () => new SimulatedApplyConnection(db),
    readStatus: async (_url, site, sources): Promise<SiteDatabaseStatus> => {
      const progress = db.bookkeeping.captureProgress.get(site);
      const hasApplyProgress = db.describeTable('SITESYNC', 'APPLY_PROGRESS') !== null;
      // SOURCE, SOURCE_KIND, POSITION, COMMIT_TIME_MICROS, APPLIED_TRANSACTIONS: committed rows only.
      const applied = hasApplyProgress
        ? db
            .rows('SITESYNC', 'APPLY_PROGRESS')
            .filter((r) => sources.includes(String(r[0])))
            .map((r) => ({ SOURCE: r[0], POSITION: r[2] }))
        : [];
      const written = writtenAt(db).get(site);
      return statusOf(site, sources, {
        tables: [{ TABLE_NAME: 'CAPTURE_PROGRESS' }, ...(hasApplyProgress ? [{ TABLE_NAME: 'APPLY_PROGRESS' }] : [])],
        capture: progress === undefined ? [] : [{ CHECKPOINT: progress.checkpoint, AGE_SECONDS: written === undefined ? 0 : Math.floor((Date.now() - written) / 1000) }],
        currentScn: [{ CURRENT_SCN: db.scn.toString() }],
        applied,
      });
    },
  };
}

/** What setup does at a site before it first runs: SITESYNC.APPLY_PROGRESS (capture drops relayed writes by it). */
export function prepareSimulatedSite(db: SimulatedOracle): void {
  if (db.describeTable('SITESYNC', 'APPLY_PROGRESS') === null) db.createApplyProgress();
}

export interface Archiver {
  /** Stops the timer. */
  stop(): void;
}

/**
 * ALTER SYSTEM SWITCH LOGFILE and ARCn, every `intervalMs`: the logs a capture mines are then a mix of archived
 * and online ones, of several sequences per thread, as at a busy site.
 */
export function startArchiver(db: SimulatedOracle, intervalMs = 300): Archiver {
  const timer = setInterval(() => {
    db.switchLog();
    db.archive();
  }, intervalMs);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
    },
  };
}
