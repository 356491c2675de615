/**
 * The benchmark's private PostgreSQL server (initdb in a temporary folder, port 26470), so the shared server
 * is never loaded or changed. Settings are the same for sitesync and for the native-replication reference:
 * durable commits as in production (fsync on, synchronous_commit on), enough shared buffers that the
 * backlogs stay in memory, and a max_wal_size large enough that no checkpoint is forced in the middle of a
 * timed phase. One setting concerns the native reference only: wal_retrieve_retry_interval (default 5 s) is
 * also how long PostgreSQL's logical replication launcher waits between starting two apply workers, so
 * with the default the second of two subscriptions enabled together would start 5 s late — a startup
 * throttle, not replication speed.
 */
import { connect } from 'node:net';
import { join } from 'node:path';
import pg from 'pg';
import { startScratchPostgres, type ScratchPostgres } from '../../test/helpers/scratch-postgres.ts';
import type { Teardown } from './teardown.ts';

export const BENCH_PG_PORT = Number(process.env.SITESYNC_BENCH_PG_PORT ?? 26470);
export const PG_BIN = process.env.TEST_SITESYNC_PG_BIN ?? '/usr/lib/postgresql/15/bin';
export const pgTool = (name: string): string => join(PG_BIN, name);

/** The settings both sitesync and the native reference run under; printed with the report. */
export const SERVER_SETTINGS: Readonly<Record<string, string>> = {
  fsync: 'on',
  synchronous_commit: 'on',
  shared_buffers: '256MB',
  max_wal_size: '16GB',
  min_wal_size: '1GB',
  checkpoint_timeout: '30min',
  max_replication_slots: '32',
  max_wal_senders: '32',
  max_worker_processes: '16',
  max_logical_replication_workers: '8',
  logical_decoding_work_mem: '64MB',
  track_commit_timestamp: 'on',
  wal_retrieve_retry_interval: '200ms',
};

/**
 * How every client of the benchmark reaches the server, sitesync and the reference alike: TCP on loopback,
 * or the server's Unix-domain socket (as a process on the database's own host can).
 */
export type Transport = 'tcp' | 'socket';

export interface BenchServer {
  readonly port: number;
  readonly transport: Transport;
  /** 127.0.0.1, or the socket's folder: what `-h` and `host=` take. */
  readonly host: string;
  url(database: string): string;
  /** libpq key/value form, for CREATE SUBSCRIPTION ... CONNECTION. */
  conninfo(database: string): string;
  query<T extends pg.QueryResultRow = Record<string, unknown>>(database: string, text: string, values?: unknown[]): Promise<T[]>;
  /** Creates a database and registers its removal (subscriptions in it, slots on it, then the database). */
  createDatabase(name: string, scope: Teardown): Promise<void>;
  destroy(): Promise<void>;
}

function portInUse(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export async function startBenchServer(transport: Transport): Promise<BenchServer> {
  if (await portInUse(BENCH_PG_PORT)) {
    throw new Error(
      `port ${BENCH_PG_PORT} is already in use: another benchmark is running, or one was killed and left its server ` +
        `(find it with "ps -ef | grep 'port=${BENCH_PG_PORT}'" and stop it with pg_ctl -D <its data folder> stop); ` +
        `or pick another port with SITESYNC_BENCH_PG_PORT`,
    );
  }
  const scratch: ScratchPostgres = await startScratchPostgres(BENCH_PG_PORT, { ...SERVER_SETTINGS });
  const host = transport === 'socket' ? scratch.socketDir : '127.0.0.1';
  const server: BenchServer = {
    port: scratch.port,
    transport,
    host,
    url: (database) => (transport === 'socket' ? `postgres://postgres@/${database}?host=${encodeURIComponent(host)}&port=${scratch.port}` : scratch.url(database)),
    conninfo: (database) => `host=${host} port=${scratch.port} user=postgres dbname=${database}`,
    query: (database, text, values) => scratch.query(database, text, values),
    async createDatabase(name, scope) {
      await scratch.query('postgres', `CREATE DATABASE ${name}`);
      scope.add(`drop database ${name}`, () => dropDatabase(server, name));
    },
    destroy: () => scratch.destroy(),
  };
  return server;
}

/** Subscriptions first (DROP DATABASE refuses while they exist), then the slots on it, then the database. */
async function dropDatabase(server: BenchServer, name: string): Promise<void> {
  const subscriptions = await server
    .query<{ subname: string }>(name, `SELECT subname FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`)
    .catch(() => []);
  for (const { subname } of subscriptions) {
    await server.query(name, `ALTER SUBSCRIPTION ${subname} DISABLE`);
    await server.query(name, `ALTER SUBSCRIPTION ${subname} SET (slot_name = NONE)`);
    await server.query(name, `DROP SUBSCRIPTION ${subname}`);
  }
  for (let attempt = 0; ; attempt++) {
    await server.query('postgres', `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL`, [name]);
    try {
      await server.query('postgres', `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1`, [name]);
      break;
    } catch (error) {
      if (attempt >= 20) throw error; // a walsender that is still exiting holds its slot for a moment
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
  await server.query('postgres', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
}
