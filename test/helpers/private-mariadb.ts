/**
 * A MariaDB server of the test's own: `mariadb-install-db` into a temporary folder, then `mariadbd` on a free
 * port of 127.0.0.1 with the binary log on as sitesync's capture needs it (row format, full row images, full
 * row metadata). Small and quick: a 32 MB buffer pool, an 8 MB redo log, no fsync (a killed server loses
 * nothing, a crashed machine might). Root has no password over TCP. MariaDB runs as root only when told so
 * (`--user=root`), which these tests do when they run as root.
 *
 * Never the machine's own MariaDB (3306, binary log off): each server here has its own data folder, socket,
 * port and pid file, and is killed by `destroy` (or when the test process exits).
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import mysql from 'mysql2/promise';
import { freePort } from './scratch-postgres.ts';

const run = promisify(execFile);
const MARIADBD = process.env.TEST_SITESYNC_MARIADBD ?? '/usr/sbin/mariadbd';
const INSTALL_DB = process.env.TEST_SITESYNC_MARIADB_INSTALL_DB ?? 'mariadb-install-db';

export interface PrivateMariaDbOptions {
  /** server_id (the binlog's own; replicas must use another). Default 1. */
  readonly serverId?: number;
  /** Start with the binary log off (to see what capture says about it). */
  readonly binlog?: boolean;
  /** Extra `--name=value` server options. */
  readonly settings?: Readonly<Record<string, string>>;
}

export interface PrivateMariaDb {
  readonly port: number;
  /** The server's data folder (its binlog files are there). */
  readonly dataDir: string;
  /** `mariadb://root@127.0.0.1:PORT/` (or with a database). */
  url(database?: string): string;
  /** One statement on a fresh connection (several with multipleStatements), as root. */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  /** Shut the server down cleanly (SHUTDOWN), waiting for the process to end. */
  stop(): Promise<void>;
  /** Start it again on the same data and port. */
  start(): Promise<void>;
  /** stop() then start(). */
  restart(): Promise<void>;
  /** Kill it at once (no clean shutdown) and start it again. */
  crashAndRestart(): Promise<void>;
  /** Stop the server process (SIGSTOP): its connections stay open and silent, as over a dead network. */
  freeze(): void;
  /** Let it run again (SIGCONT). */
  thaw(): void;
  /** Kill it and remove its folder. */
  destroy(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export async function startPrivateMariaDb(options: PrivateMariaDbOptions = {}): Promise<PrivateMariaDb> {
  const dir = mkdtempSync(join(tmpdir(), 'sitesync-mariadb-'));
  const dataDir = join(dir, 'data');
  const port = await freePort();
  const asRoot = process.getuid?.() === 0;
  const user = asRoot ? ['--user=root'] : [];
  const small = ['--innodb-log-file-size=8M', '--innodb-data-file-path=ibdata1:12M:autoextend'];
  await run(INSTALL_DB, ['--no-defaults', `--datadir=${dataDir}`, ...user, '--auth-root-authentication-method=normal', '--skip-test-db', '--skip-name-resolve', ...small], {
    timeout: 60_000,
  });
  const binlog =
    options.binlog === false
      ? ['--skip-log-bin']
      : ['--log-bin=mysql-bin', '--binlog-format=ROW', '--binlog-row-image=FULL', '--binlog-row-metadata=FULL'];
  const args = [
    '--no-defaults',
    `--datadir=${dataDir}`,
    ...user,
    `--port=${port}`,
    `--socket=${join(dir, 'mariadb.sock')}`,
    `--pid-file=${join(dir, 'mariadb.pid')}`,
    `--log-error=${join(dir, 'error.log')}`,
    '--bind-address=127.0.0.1',
    '--skip-networking=0',
    '--skip-name-resolve',
    `--server-id=${options.serverId ?? 1}`,
    ...binlog,
    '--innodb-buffer-pool-size=32M',
    ...small,
    '--innodb-flush-log-at-trx-commit=2', // written to the OS at each commit: a killed server loses nothing
    '--sync-binlog=0',
    '--innodb-doublewrite=0',
    '--performance-schema=0',
    '--max-connections=100',
    '--character-set-server=utf8mb4',
    '--collation-server=utf8mb4_general_ci',
    ...Object.entries(options.settings ?? {}).map(([name, value]) => `--${name}=${value}`),
  ];
  const url = (database = ''): string => `mariadb://root@127.0.0.1:${port}/${database}`;
  let child: ChildProcess | null = null;

  const connect = () => mysql.createConnection({ host: '127.0.0.1', port, user: 'root', multipleStatements: true, dateStrings: true, supportBigNumbers: true, bigNumberStrings: true });

  const start = async (): Promise<void> => {
    const server = spawn(MARIADBD, args, { stdio: 'ignore' });
    child = server;
    running.add(server);
    let exited = false;
    server.once('exit', () => {
      exited = true;
      running.delete(server);
    });
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (exited) throw new Error(`mariadbd exited at start; see ${join(dir, 'error.log')}`);
      try {
        const connection = await connect();
        await connection.end();
        return;
      } catch {
        if (Date.now() > deadline) throw new Error(`mariadbd did not accept connections on ${port} within 30 s; see ${join(dir, 'error.log')}`);
        await sleep(50);
      }
    }
  };

  const waitExit = async (server: ChildProcess, ms: number): Promise<boolean> => {
    if (server.exitCode !== null || server.signalCode !== null) return true;
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      server.once('exit', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  };

  const stop = async (): Promise<void> => {
    const server = child;
    if (!server) return;
    child = null;
    try {
      const connection = await connect();
      await connection.query('SHUTDOWN').catch(() => undefined);
      await connection.end().catch(() => undefined);
    } catch {
      server.kill('SIGTERM');
    }
    if (!(await waitExit(server, 30_000))) {
      server.kill('SIGKILL');
      await waitExit(server, 5_000);
    }
  };

  const kill = async (): Promise<void> => {
    const server = child;
    if (!server) return;
    child = null;
    server.kill('SIGKILL');
    await waitExit(server, 10_000);
  };

  await start();
  return {
    port,
    dataDir,
    url,
    async query<T>(sql: string, params: unknown[] = []): Promise<T[]> {
      const connection = await connect();
      try {
        const [rows] = await connection.query(sql, params);
        return (Array.isArray(rows) ? rows : [rows]) as T[];
      } finally {
        await connection.end().catch(() => undefined);
      }
    },
    stop,
    start,
    async restart() {
      await stop();
      await start();
    },
    async crashAndRestart() {
      await kill();
      await start();
    },
    freeze() {
      child?.kill('SIGSTOP');
    },
    thaw() {
      child?.kill('SIGCONT');
    },
    async destroy() {
      child?.kill('SIGCONT');
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
