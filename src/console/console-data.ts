/**
 * Where the console's facts come from: the same functions the CLI's commands use (status, the archive
 * reader, the parking queue, the conflict log, trace). One interface, so that the server's routes, their
 * checks and their answers are tested with fakes (test/unit/console-server.test.ts) and the real thing is
 * tested end to end (test/integration/console-browser.test.ts).
 */
import type { Config } from '../config/config-schema.ts';
import type { ConnectorRegistry } from '../connector.ts';
import { connectBroker } from '../bus/broker-connection.ts';
import { collectStatus, type SiteStatus } from '../cli/status-command.ts';
import { parkedCommand } from '../cli/parked-command.ts';
import { runTrace, type TracePlan } from '../cli/trace-command.ts';
import { readArchive, type ArchiveEntry } from '../inspect/archive-reader.ts';
import { listParked } from './parked-list.ts';
import { readRecentConflicts, type RecentConflicts } from './recent-conflicts.ts';

export interface ConsoleData {
  status(): Promise<SiteStatus[]>;
  /** The archive from its last message on, following, until `signal` aborts; `onAttached` once it reads. */
  follow(signal: AbortSignal, onAttached?: () => void): AsyncIterable<ArchiveEntry>;
  listParked(site: string): ReturnType<typeof listParked>;
  /** Retry or discard one parked message; the lines `sitesync parked` would print. */
  actOnParked(site: string, action: 'retry' | 'discard', id: string): Promise<string[]>;
  recentConflicts(site: string, limit: number): Promise<RecentConflicts>;
  /** `sitesync trace`'s lines. */
  trace(plan: TracePlan, signal: AbortSignal): Promise<string[]>;
}

export function liveConsoleData(config: Config, connectors: ConnectorRegistry): ConsoleData {
  return {
    status: () => collectStatus(config, connectors),
    follow: (signal, onAttached) => readArchive({ config, connectors, start: { kind: 'last' }, follow: true, signal, onAttached, connectionName: 'sitesync ui feed' }),
    async listParked(site) {
      const connection = await connectBroker(config.broker.url, 'sitesync ui parked');
      connection.on('error', () => undefined); // the pending call reports a lost connection
      try {
        return await listParked(connection, site);
      } finally {
        await connection.close().catch(() => undefined);
      }
    },
    async actOnParked(site, action, id) {
      const lines: string[] = [];
      await parkedCommand(config, site, { kind: action, id }, (line) => lines.push(line));
      return lines;
    },
    recentConflicts: (site, limit) => readRecentConflicts(config, connectors, site, limit),
    async trace(plan, signal) {
      const lines: string[] = [];
      await runTrace(config, connectors, plan, (line) => lines.push(line), signal);
      return lines;
    },
  };
}
