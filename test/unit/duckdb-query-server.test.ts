/**
 * Reading a DuckDB site while its sink runs in another process (DuckDB lets one process open the file): the
 * query server on `<file>.sock` (mode 0600) answers `sitesync query` and `sitesync status`, one read-only
 * statement at a time; writes and several statements are refused; a socket left by a killed process does not
 * stop a query (the file is opened read-only) and is replaced by the next sink; a file held by a process that
 * serves no socket is one line naming the file and what to do.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { lstatSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { duckdbConnector } from '../../connectors/duckdb/index.ts';
import { DuckDbSink } from '../../connectors/duckdb/duckdb-sink.ts';
import type { SourceSession } from '../../src/apply/sink.ts';
import { SitesyncError } from '../../src/errors.ts';
import type { RelationInfo, Transaction } from '../../src/events/transaction.ts';
import { parseKind } from '../../src/events/value-kind.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { SinkProcess } from '../conformance/harnesses/duckdb.ts';

const ITEMS: RelationInfo = {
  schema: 'app',
  table: 'items',
  replicaIdentity: 'd',
  columns: [
    { name: 'id', kind: parseKind('int64'), native: { name: 'int8', id: 20, modifier: -1 }, key: true },
    { name: 'note', kind: parseKind('string'), native: { name: 'text', id: 25, modifier: -1 }, key: false },
    { name: 'amount', kind: parseKind('decimal(12,2)'), native: { name: 'numeric', id: 1700, modifier: -1 }, key: false },
  ],
};

let n = 0;
function insert(id: number, note: string): Transaction {
  const position = (++n).toString(16).toUpperCase().padStart(16, '0');
  return { id: `remote:${position}`, site: 'remote', position, commitTimeMicros: 1_700_000_000_123_456n, sourceTxId: String(n), seen: {}, changes: [{ op: 'insert', relation: ITEMS, newRow: { values: [String(id), note, `${id}.00`], unchanged: [] } }] };
}

const ask = (url: string, sql: string, maxRows = 100) => duckdbConnector.query!(url, sql, { maxRows });

/** Sends raw lines to a query socket and collects one answer line per request. */
function raw(socketPath: string, lines: readonly string[]): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(socketPath);
    let received = '';
    socket.setEncoding('utf8');
    socket.on('error', reject);
    socket.on('connect', () => socket.write(lines.map((l) => `${l}\n`).join('')));
    socket.on('data', (chunk: string) => {
      received += chunk;
      const answers = received.split('\n').filter((l) => l !== '');
      if (answers.length >= lines.length) {
        socket.destroy();
        resolve(answers.map((a) => JSON.parse(a) as unknown));
      }
    });
  });
}

describe('DuckDB query server', () => {
  let dir: string;
  let path: string;
  let url: string;
  let sink: SinkProcess;
  let session: SourceSession;
  let applied: Transaction;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sitesync-duckdb-query-'));
    path = join(dir, 'site.duckdb');
    url = `duckdb://${path}`;
    sink = new SinkProcess({ site: 'here', url, sourceKind: 'postgres', tables: null });
    session = await sink.openSession('remote');
    applied = insert(1, 'one');
    await session.apply([applied]);
  });
  after(async () => {
    await sink?.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a query while the sink holds the file is answered through its socket, values JSON-safe', async () => {
    assert.equal(statSync(`${path}.sock`).mode & 0o777, 0o600, 'only the sink\'s user may connect');
    const result = await ask(url, 'SELECT id, note, amount, _sitesync_commit_time, _sitesync_deleted, 7::INTEGER AS n, 2.5::DOUBLE AS d FROM app.items');
    assert.deepEqual(result.columns, [
      { name: 'id', type: 'BIGINT' },
      { name: 'note', type: 'VARCHAR' },
      { name: 'amount', type: 'DECIMAL(12,2)' },
      { name: '_sitesync_commit_time', type: 'TIMESTAMP WITH TIME ZONE' },
      { name: '_sitesync_deleted', type: 'BOOLEAN' },
      { name: 'n', type: 'INTEGER' },
      { name: 'd', type: 'DOUBLE' },
    ]);
    assert.deepEqual(result.rows, [['1', 'one', '1.00', '2023-11-14 22:13:20.123456+00', false, 7, 2.5]]);
    assert.equal(result.truncated, false);
    const many = await ask(url, 'SELECT range FROM range(10)', 3);
    assert.deepEqual(many.rows, [['0'], ['1'], ['2']]);
    assert.equal(many.truncated, true);
  });

  test('sitesync status reads the progress through the same path', async () => {
    const status = await duckdbConnector.readStatus(url, 'here', ['remote', 'nobody']);
    assert.equal(status.capture.exists, false);
    assert.deepEqual(status.applied, [
      { source: 'remote', name: 'sitesync.apply_progress', position: applied.position },
      { source: 'nobody', name: 'sitesync.apply_progress', position: null },
    ]);
  });

  test('writes, several statements and parameters are refused, each in one line; nothing changes', async () => {
    const refused: [string, RegExp][] = [
      ["INSERT INTO app.items (id) VALUES (99)", /^sitesync query is read-only: it runs one SELECT .*; this is a INSERT statement$/],
      ['DELETE FROM app.items', /this is a DELETE statement$/],
      ["COPY app.items TO '/tmp/stolen.csv'", /this is a COPY statement$/],
      ['CREATE TABLE app.x (i INT)', /this is a CREATE statement$/],
      ["ATTACH ':memory:' AS other", /this is a ATTACH statement$/],
      ['SELECT 1; DELETE FROM app.items', /^give exactly one SQL statement \(this text has 2\)$/],
      ['SELECT $1', /parameters/],
      ['SELEC 1', /^Failed to extract statements: Parser Error: syntax error at or near "SELEC"$/],
    ];
    for (const [sql, pattern] of refused) {
      await assert.rejects(ask(url, sql), (error: unknown) => {
        assert.match((error as Error).message, pattern, sql);
        assert.doesNotMatch((error as Error).message, /\n/);
        return true;
      });
    }
    assert.deepEqual((await ask(url, 'SELECT count(*) FROM app.items')).rows, [['1']]);
  });

  test('the socket trusts nothing: each bad request gets its error line, and the next one its answer', async () => {
    const answers = await raw(`${path}.sock`, ['not json', '{"sql": 1, "maxRows": 1}', '{"sql": "SELECT 1", "maxRows": 0}', '{"sql": "SELECT 42 AS x", "maxRows": 1}']);
    assert.deepEqual(answers, [
      { error: 'the request is not JSON; send {"sql": "…", "maxRows": N} and a newline' },
      { error: 'the request has no "sql" text' },
      { error: '"maxRows" must be a whole number from 1 to 1000000' },
      { columns: [{ name: 'x', type: 'INTEGER' }], rows: [[42]], truncated: false },
    ]);
  });

  test('a killed sink leaves its socket: a query then reads the file itself; the next sink replaces the socket', async () => {
    await sink.kill();
    assert.ok(lstatSync(`${path}.sock`).isSocket(), 'the killed process could not remove its socket');
    assert.deepEqual((await ask(url, 'SELECT id, note FROM app.items')).rows, [['1', 'one']], 'read from the file, read-only (nobody listens on the socket)');
    sink = new SinkProcess({ site: 'here', url, sourceKind: 'postgres', tables: null });
    session = await sink.openSession('remote');
    await session.apply([insert(2, 'two')]);
    // Answered through the new socket: the new sink holds the file, so it could not be opened here.
    assert.deepEqual((await ask(url, 'SELECT id FROM app.items ORDER BY id')).rows, [['1'], ['2']]);
    await sink.close();
    assert.throws(() => lstatSync(`${path}.sock`), /ENOENT/, 'a sink that closes removes its socket');
  });
});

describe('DuckDB file held by another process', () => {
  let dir: string;
  let path: string;
  let holder: ChildProcess;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sitesync-duckdb-lock-'));
    path = join(dir, 'held.duckdb');
    // A process that holds the file for writing and serves no socket (DuckDB's CLI, another program).
    holder = spawn(process.execPath, ['-e', `const { DuckDBInstance } = require('@duckdb/node-api'); DuckDBInstance.create(${JSON.stringify(path)}).then(() => { console.log('ready'); setInterval(() => {}, 1000); });`], {
      cwd: process.cwd(),
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve, reject) => {
      holder.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
      holder.on('exit', () => reject(new Error('the holder exited')));
    });
  });
  after(() => {
    holder?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  const lockLine = (error: unknown): boolean => {
    assert.ok(error instanceof SitesyncError, String(error));
    assert.equal(error.code, 'SITESYNC_ERR_SITE_IN_USE');
    assert.equal(
      error.message,
      `DuckDB file ${path} is held by another process (${process.execPath}, PID ${holder.pid}), and DuckDB lets one process at a time use a file it writes; stop that process, or read the file through it with \`sitesync query\``,
    );
    return true;
  };

  test('sitesync query says which file, who holds it, and what to do', async () => {
    await assert.rejects(ask(`duckdb://${path}`, 'SELECT 1'), lockLine);
  });

  test('a sink cannot open it either: the same line, graded transient (the holder may be on its way out)', async () => {
    const sink = new DuckDbSink({ site: 'here', url: `duckdb://${path}`, logger: createLogger('silent') });
    try {
      await assert.rejects(sink.openSession('remote'), (error: unknown) => {
        assert.equal(sink.classify(error), 'transient');
        return lockLine(error);
      });
    } finally {
      await sink.close();
    }
  });
});
