/**
 * Reading a DuckDB site while it runs. DuckDB lets one process open a file it writes, so `sitesync query` and
 * `sitesync status` ask that process: the sink serves queries on a Unix socket next to its file,
 * `<file>.sock`, created with mode 0600 (only the user the sink runs as may connect) and removed when it
 * closes; one a killed process left behind is replaced.
 *
 * Protocol: newline-delimited JSON, one answer per request.
 *   → {"sql": "SELECT …", "maxRows": 100}
 *   ← {"columns": [{"name": "id", "type": "BIGINT"}], "rows": [["1"]], "truncated": false}  or  {"error": "one line"}
 *
 * Each query runs on a connection of its own, as ONE prepared statement (a read: SELECT, EXPLAIN and their
 * likes) inside `BEGIN TRANSACTION READ ONLY` … `ROLLBACK`, on a snapshot: it never sees half a run, never
 * writes, and never waits for the writers. Values are made JSON-safe: numbers JSON holds exactly stay numbers;
 * 64-bit integers, decimals, times, intervals, UUIDs and bytes are text, in their kind's canonical form
 * (docs/value-kinds.md) where they have one.
 *
 * `queryDuckDb` (Connector.query) asks this process's own instance when it holds the file, else the socket,
 * and when no process serves it (no socket, or nobody listening) opens the file read-only itself.
 */
import { chmodSync, lstatSync, statSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Socket } from 'node:net';
import type * as DuckDb from '@duckdb/node-api';
import type { QueryOptions, QueryResult } from '../../src/connector.ts';
import type { Logger } from '../../src/observability/logger.ts';
import { parseDuckDbUrl } from './duckdb-config.ts';
import { heldDuckDbFile, loadDuckDbApi, openDuckDbInstance, realPathOf, type DuckDbFile, type DuckDbInstance } from './duckdb-connection.ts';
import { firstLine } from './duckdb-errors.ts';
import { DuckDbValues, parseTypeText, typeText } from './duckdb-kinds.ts';

/** Most rows a query may ask for. */
export const MAX_QUERY_ROWS = 1_000_000;
/** Longest request line (a SQL statement and its envelope). */
const MAX_REQUEST_BYTES = 1024 * 1024;
/** Longest answer a client reads (rows × columns of text). */
const MAX_ANSWER_BYTES = 512 * 1024 * 1024;
/** A query running longer is interrupted: the sink's process must not hold a runaway scan forever. */
const QUERY_SECONDS = 300;
/** Unix socket paths are at most 107 bytes (sun_path) on Linux. */
const MAX_SOCKET_PATH_BYTES = 107;

export function socketPathOf(path: string): string {
  return `${path}.sock`;
}

/** A query refused or failed: one line, said to whoever asked. */
export class DuckDbQueryError extends Error {
  override name = 'DuckDbQueryError';
}

// ─── running a query ─────────────────────────────────────────────────────────────────────────────────────

/** Runs one read-only statement on a connection of its own; a failure is a DuckDbQueryError of one line. */
export async function runReadOnlyQuery(
  instance: DuckDbInstance,
  values: DuckDbValues,
  api: typeof DuckDb,
  sql: string,
  maxRows: number,
  /** Connections of queries under way, so that a server that stops can interrupt them. */
  active?: Set<DuckDb.DuckDBConnection>,
): Promise<QueryResult> {
  if (!Number.isSafeInteger(maxRows) || maxRows < 1 || maxRows > MAX_QUERY_ROWS) throw new DuckDbQueryError(`maxRows must be a whole number from 1 to ${MAX_QUERY_ROWS}`);
  const connection = await instance.connect();
  active?.add(connection);
  const timer = setTimeout(() => connection.interrupt(), QUERY_SECONDS * 1000);
  timer.unref();
  try {
    await connection.run('BEGIN TRANSACTION READ ONLY');
    try {
      const statements = await connection.extractStatements(sql);
      if (statements.count !== 1) throw new DuckDbQueryError(`give exactly one SQL statement (this text has ${statements.count})`);
      const prepared = await statements.prepare(0);
      const type = prepared.statementType;
      if (type !== api.StatementType.SELECT && type !== api.StatementType.EXPLAIN) {
        throw new DuckDbQueryError(`sitesync query is read-only: it runs one SELECT (or FROM, WITH, EXPLAIN, DESCRIBE, SHOW…); this is a ${api.StatementType[type] ?? 'other'} statement`);
      }
      if (prepared.parameterCount > 0) throw new DuckDbQueryError('the statement has parameters ($1, ?); write the values into it');
      const reader = await prepared.streamAndReadUntil(maxRows + 1);
      const types = reader.columnTypes();
      const columns = reader.columnNames().map((name, i) => ({ name, type: typeName(types[i]!) }));
      const all = reader.getRows();
      const rows = all.slice(0, maxRows).map((row) => row.map((value, i) => jsonSafe(values, value, typeName(types[i]!))));
      return { columns, rows, truncated: all.length > maxRows };
    } finally {
      await connection.run('ROLLBACK').catch(() => undefined);
    }
  } catch (error) {
    if (error instanceof DuckDbQueryError) throw error;
    const line = firstLine(error);
    throw new DuckDbQueryError(/^INTERRUPT/i.test(line) ? `the query ran longer than ${QUERY_SECONDS} s and was stopped; narrow it` : line);
  } finally {
    clearTimeout(timer);
    active?.delete(connection);
    connection.closeSync();
  }
}

function typeName(type: DuckDb.DuckDBType): string {
  return type.alias ?? type.toString();
}

/** A value as JSON can carry it (see the file's comment); `type` is the column's DuckDB type. */
function jsonSafe(values: DuckDbValues, value: unknown, type: string): unknown {
  if (value === null || value === undefined) return null;
  const known = parseTypeText(type);
  switch (known.name) {
    case 'BOOLEAN':
    case 'VARCHAR':
    case 'JSON':
      return value;
    case 'SMALLINT':
    case 'INTEGER':
      return value;
    case 'FLOAT':
    case 'DOUBLE': {
      const text = values.text(value, known);
      return Number.isFinite(value as number) ? Number(text) : text;
    }
    case 'LIST':
      return (value as { items: readonly unknown[] }).items.map((item) => jsonSafe(values, item, typeText(known.element)));
    case 'UNKNOWN':
      return generic(value);
    default:
      return values.text(value, known);
  }
}

/** A value of a type sitesync never creates (HUGEINT, STRUCT, MAP…): by its shape. */
function generic(value: unknown): unknown {
  if (value === null || value === undefined) return null;
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'number') return Number.isFinite(value) ? value : String(value);
  if (typeof value === 'boolean' || typeof value === 'string') return value;
  if (typeof value === 'object') {
    const v = value as { items?: unknown; entries?: unknown };
    if (Array.isArray(v.items)) return v.items.map(generic);
    if (Array.isArray(v.entries)) return v.entries.map((e: { key: unknown; value: unknown }) => ({ key: generic(e.key), value: generic(e.value) }));
    if (v.entries && typeof v.entries === 'object') return Object.fromEntries(Object.entries(v.entries).map(([k, e]) => [k, generic(e)]));
  }
  return String(value);
}

// ─── the server ──────────────────────────────────────────────────────────────────────────────────────────

/**
 * Serves queries on `socketPath` for the file this process holds; null (and a warning) when it cannot, in
 * which case `sitesync query` says the file is in use.
 */
export async function startQueryServer(file: DuckDbFile, socketPath: string, logger: Logger): Promise<{ stop(): Promise<void> } | null> {
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH_BYTES) {
    logger.warn({ socket: socketPath }, `no query socket: its path is longer than ${MAX_SOCKET_PATH_BYTES} bytes; sitesync query cannot read this site while it runs (move the DuckDB file to a shorter path)`);
    return null;
  }
  if (!removeStale(socketPath, logger)) return null;
  const sockets = new Set<Socket>();
  const running = new Set<Promise<unknown>>();
  const queries = new Set<DuckDb.DuckDBConnection>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    serve(socket, file, running, queries);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // The socket is born 0600: a umask for the bind, which Node does synchronously inside listen().
    const umask = process.umask(0o177);
    try {
      server.listen(socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    } finally {
      process.umask(umask);
    }
  }).catch((error: unknown) => {
    logger.warn({ socket: socketPath, reason: firstLine(error) }, 'no query socket: sitesync query cannot read this site while it runs');
    return null;
  });
  if (!server.listening) return null;
  chmodSync(socketPath, 0o600);
  const inode = statSync(socketPath).ino;
  server.on('error', (error) => logger.warn({ reason: firstLine(error) }, 'query socket failed'));
  return {
    async stop() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      });
      // Nobody waits for their answers any more: the file is closing.
      for (const connection of queries) connection.interrupt();
      await Promise.allSettled([...running]);
      removeOwnSocket(socketPath, inode);
    },
  };
}

/** Removes a socket a killed process left; false when something else is at the path (not ours to delete). */
function removeStale(socketPath: string, logger: Logger): boolean {
  let stat;
  try {
    stat = lstatSync(socketPath);
  } catch {
    return true; // nothing there
  }
  if (!stat.isSocket()) {
    logger.warn({ socket: socketPath }, 'no query socket: a file that is not a socket is at its path; move it away and restart');
    return false;
  }
  // This process holds the DuckDB file's lock, so no live sink can be serving it: the socket is stale.
  unlinkSync(socketPath);
  return true;
}

/** Removes the socket at close, unless another process has put its own there since. */
function removeOwnSocket(socketPath: string, inode: number): void {
  try {
    if (statSync(socketPath).ino === inode) unlinkSync(socketPath);
  } catch {
    // gone already
  }
}

/** Answers the requests of one client, one line each, in order. */
function serve(socket: Socket, file: DuckDbFile, running: Set<Promise<unknown>>, queries: Set<DuckDb.DuckDBConnection>): void {
  let buffered = '';
  let queue: Promise<void> = Promise.resolve();
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    buffered += chunk;
    if (Buffer.byteLength(buffered) > MAX_REQUEST_BYTES && !buffered.includes('\n')) {
      socket.end(`${JSON.stringify({ error: `request longer than ${MAX_REQUEST_BYTES} bytes` })}\n`);
      buffered = '';
      return;
    }
    let at: number;
    while ((at = buffered.indexOf('\n')) !== -1) {
      const line = buffered.slice(0, at);
      buffered = buffered.slice(at + 1);
      queue = queue.then(async () => {
        const answer = answerLine(line, file, queries);
        running.add(answer);
        try {
          const text = await answer;
          if (!socket.destroyed) socket.write(`${text}\n`);
        } finally {
          running.delete(answer);
        }
      });
    }
  });
}

/** One request line's answer, as a JSON line. Nothing in the request is trusted. */
async function answerLine(line: string, file: DuckDbFile, queries: Set<DuckDb.DuckDBConnection>): Promise<string> {
  let request: unknown;
  try {
    request = JSON.parse(line);
  } catch {
    return JSON.stringify({ error: 'the request is not JSON; send {"sql": "…", "maxRows": N} and a newline' });
  }
  const { sql, maxRows } = (typeof request === 'object' && request !== null ? request : {}) as { sql?: unknown; maxRows?: unknown };
  if (typeof sql !== 'string') return JSON.stringify({ error: 'the request has no "sql" text' });
  if (typeof maxRows !== 'number' || !Number.isSafeInteger(maxRows) || maxRows < 1 || maxRows > MAX_QUERY_ROWS) {
    return JSON.stringify({ error: `"maxRows" must be a whole number from 1 to ${MAX_QUERY_ROWS}` });
  }
  try {
    return JSON.stringify(await runReadOnlyQuery(file.readInstance, file.values, file.api, sql, maxRows, queries));
  } catch (error) {
    return JSON.stringify({ error: error instanceof DuckDbQueryError ? error.message : firstLine(error) });
  }
}

// ─── the client ──────────────────────────────────────────────────────────────────────────────────────────

/** Asks the process serving `socketPath`; null when none does (no socket, or nobody listening on it). */
export function askQueryServer(socketPath: string, sql: string, maxRows: number, timeoutMs = (QUERY_SECONDS + 30) * 1000): Promise<QueryResult | null> {
  return new Promise((resolve, reject) => {
    let received = '';
    let settled = false;
    const finish = (error: Error | null, result?: QueryResult | null): void => {
      if (settled) return;
      settled = true;
      socket.destroy();
      if (error) reject(error);
      else resolve(result ?? null);
    };
    const socket = createConnection(socketPath);
    socket.setEncoding('utf8');
    socket.setTimeout(timeoutMs, () => finish(new DuckDbQueryError(`the process serving ${socketPath} did not answer within ${Math.round(timeoutMs / 1000)} s`)));
    socket.on('error', (error: NodeJS.ErrnoException) => {
      if (['ENOENT', 'ECONNREFUSED', 'ENOTSOCK', 'ENOTDIR'].includes(error.code ?? '')) finish(null, null);
      else finish(new DuckDbQueryError(`cannot ask the process serving ${socketPath}: ${firstLine(error)}`));
    });
    socket.on('connect', () => socket.write(`${JSON.stringify({ sql, maxRows })}\n`));
    socket.on('data', (chunk: string) => {
      received += chunk;
      if (received.length > MAX_ANSWER_BYTES) return finish(new DuckDbQueryError(`the answer from ${socketPath} is larger than ${MAX_ANSWER_BYTES} bytes; ask for fewer rows`));
      const at = received.indexOf('\n');
      if (at === -1) return;
      try {
        finish(null, checkAnswer(JSON.parse(received.slice(0, at))));
      } catch (error) {
        finish(error instanceof DuckDbQueryError ? error : new DuckDbQueryError(`the answer from ${socketPath} is not what a DuckDB site sends`));
      }
    });
    socket.on('end', () => finish(new DuckDbQueryError(`the process serving ${socketPath} closed the connection without an answer`)));
  });
}

/** An answer as the server must send it: a result, or an error line (re-thrown here). */
function checkAnswer(answer: unknown): QueryResult {
  const a = answer as { error?: unknown; columns?: unknown; rows?: unknown; truncated?: unknown } | null;
  if (typeof a !== 'object' || a === null) throw new DuckDbQueryError('malformed answer');
  if (typeof a.error === 'string') throw new DuckDbQueryError(a.error.split('\n')[0]!.slice(0, 2000));
  const columns = a.columns;
  if (!Array.isArray(columns) || !columns.every((c) => typeof c?.name === 'string' && typeof c?.type === 'string')) throw new DuckDbQueryError('malformed answer columns');
  const rows = a.rows;
  if (!Array.isArray(rows) || !rows.every((r) => Array.isArray(r) && r.length === columns.length)) throw new DuckDbQueryError('malformed answer rows');
  if (typeof a.truncated !== 'boolean') throw new DuckDbQueryError('malformed answer');
  return { columns: columns.map((c: { name: string; type: string }) => ({ name: c.name, type: c.type })), rows, truncated: a.truncated };
}

/**
 * Connector.query: this process's own instance of the file when it holds one, else the process serving its
 * socket, else the file opened read-only here (it fails with one line when another process holds it).
 */
export async function queryDuckDb(url: string, sql: string, options: QueryOptions): Promise<QueryResult> {
  const { path } = parseDuckDbUrl(url);
  const held = await heldDuckDbFile(path);
  if (held) return runReadOnlyQuery(held.readInstance, held.values, held.api, sql, options.maxRows);
  const served = await askQueryServer(socketPathOf(realPathOf(path)), sql, options.maxRows);
  if (served) return served;
  const api = await loadDuckDbApi();
  const instance = await openDuckDbInstance(api, path, true);
  try {
    return await runReadOnlyQuery(instance, new DuckDbValues(api), api, sql, options.maxRows);
  } finally {
    instance.closeSync();
  }
}
