/**
 * The layout is the architecture: the core (`src/`) imports no connector, so that every database is a
 * connector like any other; only the composition root (src/cli/main.ts) knows the registry. And every
 * connector folder has the same role-named files.
 */
import assert from 'node:assert/strict';
import { CONNECTORS } from '../../connectors/index.ts';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';

const ROOT = new URL('../../', import.meta.url).pathname;
const COMPOSITION_ROOT = 'src/cli/main.ts';
const ROLES = ['source', 'sink', 'status', 'config', 'positions'];

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : path.endsWith('.ts') ? [path] : [];
  });
}

test('src/ imports no connector; the composition root imports only the registry', () => {
  for (const path of files(join(ROOT, 'src'))) {
    const file = relative(ROOT, path);
    const imports = [...readFileSync(path, 'utf8').matchAll(/from '([^']+)'/g)].map((m) => m[1]!).filter((spec) => spec.includes('connectors/'));
    if (file === COMPOSITION_ROOT) assert.deepEqual(imports, ['../../connectors/index.ts'], `${file} imports the registry and nothing else of connectors/`);
    else assert.deepEqual(imports, [], `${file} imports a connector`);
  }
});

/** Database drivers: only connectors speak to a database (src/ reaches one through the connector contract). */
const DRIVERS = ['pg', 'pg-logical-replication', 'mysql2', 'mysql2/promise', '@vlasky/zongji', 'mssql', 'tedious', 'oracledb', '@duckdb/node-api', '@clickhouse/client'];

test('src/ imports no database driver', () => {
  for (const path of files(join(ROOT, 'src'))) {
    const imports = [...readFileSync(path, 'utf8').matchAll(/from '([^']+)'/g)].map((m) => m[1]!).filter((spec) => DRIVERS.includes(spec));
    assert.deepEqual(imports, [], `${relative(ROOT, path)} imports a database driver: put what it does in a connector`);
  }
});

test('every connector has its role-named files and an index', () => {
  const connectors = readdirSync(join(ROOT, 'connectors')).filter((name) => statSync(join(ROOT, 'connectors', name)).isDirectory());
  assert.ok(connectors.includes('postgres'));
  for (const kind of connectors) {
    const present = new Set(readdirSync(join(ROOT, 'connectors', kind)));
    // A store that only receives (an analytics database) has no source: the registry says which.
    const receivesOnly = CONNECTORS.get(kind)?.createSource === undefined;
    const roles = receivesOnly ? ROLES.filter((role) => role !== 'source') : ROLES;
    const missing = [...roles.map((role) => `${kind}-${role}.ts`), 'index.ts'].filter((name) => !present.has(name));
    assert.deepEqual(missing, [], `connectors/${kind}/ lacks ${missing.join(', ')}`);
  }
});
