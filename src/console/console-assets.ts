/**
 * The console's page, script and style: plain files beside this module, served as they are (no build
 * step). They are read once at start, so a missing file fails `sitesync ui` at once, not a visitor later.
 *
 * Where they are: beside this file when it runs from the sources (tsx); when it runs from the CLI's
 * bundle (bin/sitesync.js writes dist/sitesync.mjs, so import.meta.url is the bundle), in
 * ../src/console/ relative to the bundle.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Asset {
  readonly type: string;
  readonly body: Buffer;
}

const FILES: Record<string, { readonly file: string; readonly type: string }> = {
  '/': { file: 'console-page.html', type: 'text/html; charset=utf-8' },
  '/console.js': { file: 'console.js', type: 'text/javascript; charset=utf-8' },
  '/console.css': { file: 'console.css', type: 'text/css; charset=utf-8' },
};

export function assetDirectory(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [here, join(here, '..', 'src', 'console')];
  const found = candidates.find((dir) => existsSync(join(dir, 'console-page.html')));
  if (found === undefined) throw new Error(`the console's files (console-page.html, console.js, console.css) are not in ${candidates.join(' or ')}; reinstall sitesync`);
  return found;
}

/** Path → asset, read now. */
export function loadAssets(directory = assetDirectory()): ReadonlyMap<string, Asset> {
  return new Map(Object.entries(FILES).map(([path, { file, type }]) => [path, { type, body: readFileSync(join(directory, file)) }]));
}
