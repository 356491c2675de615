import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { DecodeError, ERROR_CODES, SitesyncError, describeError, type ErrorCode } from '../../src/errors.ts';

const DOC = new URL('../../docs/errors.md', import.meta.url);

interface DocRow {
  readonly code: string;
  readonly consequence: string;
}

/** The rows of the table in docs/errors.md whose first cell is a code in backquotes. */
function documentedCodes(markdown: string): DocRow[] {
  const rows: DocRow[] = [];
  for (const line of markdown.split('\n')) {
    if (!line.trim().startsWith('|')) continue;
    const cells = line.trim().replace(/^\|/, '').replace(/\|$/, '').split('|').map((c) => c.trim());
    const code = /^`([A-Z0-9_]+)`$/.exec(cells[0] ?? '');
    if (!code) continue;
    rows.push({ code: code[1]!, consequence: (cells[1] ?? '').split(/\s+/)[0] ?? '' });
  }
  return rows;
}

describe('docs/errors.md and src/errors.ts', () => {
  const rows = documentedCodes(readFileSync(DOC, 'utf8'));
  const documented = new Map(rows.map((r) => [r.code, r.consequence]));

  test('the table parses into rows', () => {
    assert.ok(rows.length >= 1, 'no error table found in docs/errors.md');
    assert.deepEqual(documentedCodes('| code | consequence |\n| --- | --- |\n| `A_B` | fatal (exit 2) | x |'), [{ code: 'A_B', consequence: 'fatal' }]);
  });

  test('every code in ERROR_CODES is documented with the same consequence', () => {
    for (const [code, consequence] of Object.entries(ERROR_CODES)) {
      assert.ok(documented.has(code), `${code} is missing from docs/errors.md`);
      assert.equal(documented.get(code), consequence, `${code}: docs say ${documented.get(code)}, code says ${consequence}`);
    }
  });

  test('every documented code exists in the code', () => {
    for (const { code } of rows) assert.ok(Object.hasOwn(ERROR_CODES, code), `docs/errors.md lists ${code}, which src/errors.ts does not define`);
  });

  test('no code is documented twice', () => {
    assert.equal(new Set(rows.map((r) => r.code)).size, rows.length);
  });
});

describe('errors', () => {
  test('describeError formats CODE: message', () => {
    assert.equal(describeError(new SitesyncError('SITESYNC_ERR_GAP', 'a message is missing')), 'SITESYNC_ERR_GAP: a message is missing');
    assert.equal(describeError(new DecodeError('bad bytes')), 'SITESYNC_ERR_DECODE: bad bytes');
  });

  test('describeError of other errors and values', () => {
    assert.equal(describeError(new Error('plain')), 'plain');
    assert.equal(describeError('text'), 'text');
    assert.equal(describeError(42), '42');
    assert.equal(describeError(undefined), 'undefined');
  });

  test('SitesyncError carries its code, its consequence and its cause', () => {
    const cause = new Error('root');
    for (const code of Object.keys(ERROR_CODES) as ErrorCode[]) {
      const error = new SitesyncError(code, 'm', { cause });
      assert.equal(error.code, code);
      assert.equal(error.consequence, ERROR_CODES[code]);
      assert.equal(error.cause, cause);
      assert.equal(error.name, 'SitesyncError');
      assert.ok(error instanceof Error);
    }
  });

  test('DecodeError is a SitesyncError with code SITESYNC_ERR_DECODE that parks', () => {
    const error = new DecodeError('x');
    assert.ok(error instanceof SitesyncError);
    assert.equal(error.code, 'SITESYNC_ERR_DECODE');
    assert.equal(error.consequence, 'park');
    assert.equal(error.name, 'DecodeError');
  });
});
