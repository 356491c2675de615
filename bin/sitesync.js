#!/usr/bin/env node
// sitesync is written in TypeScript and has no build step to forget: this launcher bundles the sources
// and their dependencies into dist/sitesync.mjs with esbuild (well under a second) whenever a source file
// or the installed dependencies (package-lock.json) are newer than the bundle, then runs the bundle.
// Compiling every module on load (tsx) cost each process about half a second of CPU at start; the bundle
// loads in a third of that. Where no bundle can be written (a read-only install without one), the
// sources run through tsx.
//
// Stack traces name the bundle's lines; NODE_OPTIONS=--enable-source-maps maps them back to src/.
import { mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const ENTRY = join(ROOT, 'src/cli/main.ts');
const BUNDLE = join(ROOT, 'dist/sitesync.mjs');
const SOURCE_DIRS = ['src', 'connectors'].map((d) => join(ROOT, d));

function newestSourceMs() {
  let newest = 0;
  for (const file of ['package.json', 'package-lock.json']) {
    try {
      newest = Math.max(newest, statSync(join(ROOT, file)).mtimeMs);
    } catch {
      // not there: nothing to compare
    }
  }
  const visit = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) visit(path);
      else newest = Math.max(newest, statSync(path).mtimeMs);
    }
  };
  SOURCE_DIRS.forEach(visit);
  return newest;
}

function bundleMs() {
  try {
    return statSync(BUNDLE).mtimeMs;
  } catch {
    return -1;
  }
}

async function ensureBundle() {
  if (bundleMs() >= newestSourceMs()) return true;
  const scratch = join(dirname(BUNDLE), `.build-${process.pid}`);
  try {
    const { build } = await import('esbuild');
    // Built in a folder of its own, then renamed: processes starting together never read half a file.
    mkdirSync(scratch, { recursive: true });
    const partial = join(scratch, 'sitesync.mjs');
    await build({
      entryPoints: [ENTRY],
      outfile: partial,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      // Dependencies are bundled too (resolving and loading ~400 modules one by one was a third of the
      // start); the optional native pg driver stays outside, and CommonJS code gets a real require.
      external: ['pg-native'],
      banner: { js: "import { createRequire as __sitesyncCreateRequire } from 'node:module'; const require = __sitesyncCreateRequire(import.meta.url);" },
      sourcemap: 'linked',
      sourcesContent: false,
      logLevel: 'silent',
    });
    renameSync(`${partial}.map`, `${BUNDLE}.map`);
    renameSync(partial, BUNDLE);
    return true;
  } catch {
    return false;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

if (await ensureBundle()) {
  await import(pathToFileURL(BUNDLE).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(pathToFileURL(ENTRY).href);
}
