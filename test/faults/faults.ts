/**
 * The faults, one function each. Every fault ends healed: the suite injects them one after another at
 * random moments, and the checker judges the outcome once they stop.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { ScratchPostgres } from '../helpers/scratch-postgres.ts';
import type { ScratchRabbitmq } from '../helpers/scratch-rabbitmq.ts';
import type { SiteProcess } from './site-process.ts';
import type { TcpProxy } from './tcp-proxy.ts';

export const FAULT_KINDS = [
  'kill-sitesync',
  'postgres-crash',
  'terminate-walsender',
  'terminate-applier',
  'broker-connections-closed',
  'broker-restart',
  'broker-network-cut',
  'broker-network-stall',
  'postgres-network-cut',
  'postgres-network-stall',
  'broker-disk-alarm',
] as const;

export type FaultKind = (typeof FAULT_KINDS)[number];

export interface FaultTargets {
  readonly processes: readonly SiteProcess[];
  readonly postgres: ScratchPostgres;
  readonly broker: ScratchRabbitmq;
  readonly postgresProxy: TcpProxy;
  readonly brokerProxy: TcpProxy;
}

const between = (low: number, high: number): number => low + Math.floor(Math.random() * (high - low));
const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)]!;

/** The broker's default free-disk limit, restored after every alarm. */
export const DISK_FREE_LIMIT_DEFAULT = '50MB';

export async function inject(kind: FaultKind, t: FaultTargets): Promise<void> {
  switch (kind) {
    case 'kill-sitesync':
      await pick(t.processes).killAndRestart();
      return;
    case 'postgres-crash':
      await t.postgres.crashAndRestart();
      return;
    case 'terminate-walsender':
      await terminate(t.postgres, `backend_type = 'walsender' AND application_name LIKE 'sitesync capture %'`);
      return;
    case 'terminate-applier':
      await terminate(t.postgres, `backend_type = 'client backend' AND application_name LIKE 'sitesync apply %'`);
      return;
    case 'broker-connections-closed':
      await t.broker.ctl('close_all_connections', 'sitesync fault suite: connections closed');
      return;
    case 'broker-restart':
      await t.broker.ctl('stop_app');
      await sleep(between(0, 1000));
      await t.broker.ctl('start_app');
      return;
    case 'broker-network-cut':
      await t.brokerProxy.cut(between(300, 2000));
      return;
    case 'broker-network-stall':
      await t.brokerProxy.stall(between(300, 3000));
      return;
    case 'postgres-network-cut':
      await t.postgresProxy.cut(between(300, 2000));
      return;
    case 'postgres-network-stall':
      await t.postgresProxy.stall(between(300, 3000));
      return;
    case 'broker-disk-alarm':
      // A free-disk limit above the disk's size raises the alarm at once: publishers are blocked.
      await t.broker.ctl('set_disk_free_limit', String(10 ** 15));
      try {
        await sleep(between(500, 3000));
      } finally {
        await t.broker.ctl('set_disk_free_limit', DISK_FREE_LIMIT_DEFAULT);
      }
      return;
  }
}

/** Ends one of the backends that match (a random one), as an operator's pg_terminate_backend would. */
async function terminate(postgres: ScratchPostgres, where: string): Promise<void> {
  const rows = await postgres.query<{ pid: number }>('postgres', `SELECT pid FROM pg_stat_activity WHERE ${where}`);
  if (rows.length === 0) return; // between sessions: nothing to end this time
  await postgres.query('postgres', 'SELECT pg_terminate_backend($1)', [pick(rows).pid]);
}
