/**
 * The web console's HTTP server (`sitesync ui`): plain node:http, one page and a JSON API.
 *
 *   GET  /, /console.js, /console.css     the page (console-assets.ts)
 *   GET  /api/sites                       every site: state, lag, retained log, queues (status-command.ts)
 *   GET  /api/feed?site=&table=&op=       server-sent events of each transaction archived from now on (live-feed.ts)
 *   GET  /api/parked?site=                parked messages, read without taking them (parked-list.ts)
 *   POST /api/parked/retry, /discard      {site, id}: what `sitesync parked --retry/--discard` does
 *   GET  /api/conflicts?site=&limit=      the newest conflict resolutions (recent-conflicts.ts)
 *   GET  /api/trace?transaction= | ?table=&key=   where a transaction went, site by site (trace-command.ts)
 *
 * Every query is checked with the CLI's own parsers before anything is read; every failure is
 * `{"error": "one line"}` with its status, secrets redacted. Values other than keys are shown only when
 * the server was started with `values` (--values), as `sitesync tail` does. There is no login: the
 * requests are held to the console's own page (request-guard.ts), and it listens on 127.0.0.1 unless told.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isConfiguredSite, type Config } from '../config/config-schema.ts';
import { describeSitePosition, type ConnectorRegistry } from '../connector.ts';
import { describeError, SitesyncError } from '../errors.ts';
import { parseChangeFilter } from '../inspect/change-filter.ts';
import type { ShowOptions } from '../inspect/change-format.ts';
import { planTrace } from '../cli/trace-command.ts';
import { loadAssets, type Asset } from './console-assets.ts';
import { liveConsoleData, type ConsoleData } from './console-data.ts';
import { oneLine, parseTraceLines, siteView } from './console-views.ts';
import { sendError, sendJson, SECURITY_HEADERS } from './json-response.ts';
import { serveFeed } from './live-feed.ts';
import type { ConflictView } from './recent-conflicts.ts';
import type { ParkedView } from './parked-list.ts';
import { checkHost, checkPost } from './request-guard.ts';

export interface ConsoleServerOptions {
  readonly config: Config;
  readonly connectors: ConnectorRegistry;
  /** Show every value of a change, not only its key (--values). */
  readonly values: boolean;
  readonly host: string;
  /** 0: any free port. */
  readonly port: number;
  /** Where the facts come from (tests pass fakes); default the real broker and databases. */
  readonly data?: ConsoleData;
  readonly assets?: ReadonlyMap<string, Asset>;
  /** A line about a failure nobody asked for (an unexpected error answered 500). */
  readonly log?: (line: string) => void;
}

export interface ConsoleServer {
  /** http://host:port/ */
  readonly url: string;
  readonly port: number;
  readonly server: Server;
  close(): Promise<void>;
}

/** Open feeds at most: each holds a broker connection. */
/** How long one status answer serves every page (the page asks every 5 s). */
const STATUS_SHARED_MS = 2000;
const MAX_FEEDS = 16;
/** Traces running at most: each reads the archive from its start. */
const MAX_TRACES = 4;
const MAX_BODY_BYTES = 4096;
const DEFAULT_CONFLICTS = 50;
const MAX_CONFLICTS = 500;

/** A failure to answer with a status; anything else thrown by a route is a 500 (or 400/502, statusOf). */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** The status of an error thrown by the CLI's functions: a bad request, or a service that failed. */
function statusOf(error: unknown): number {
  if (error instanceof HttpError) return error.status;
  if (error instanceof SitesyncError) {
    if (error.code === 'SITESYNC_ERR_CONFIG') return /^no parked message |does not exist/.test(error.message) ? 404 : 400;
    return 502; // RabbitMQ or a database: the console is fine, what it reads is not
  }
  if (error instanceof Error && / is not in the archive /.test(error.message)) return 404;
  return 500;
}

export async function startConsoleServer(options: ConsoleServerOptions): Promise<ConsoleServer> {
  const { config, connectors, values, host } = options;
  const data = options.data ?? liveConsoleData(config, connectors);
  const status = sharedFor(STATUS_SHARED_MS, () => data.status());
  const assets = options.assets ?? loadAssets();
  const closing = new AbortController();
  const show: ShowOptions = { values, describe: (site, position) => describeSitePosition(connectors, config, site, position) };
  let feeds = 0;
  let traces = 0;

  const siteParam = (url: URL, required: boolean): string[] => {
    const site = url.searchParams.get('site');
    if (site === null || site === '') {
      if (required) throw new HttpError(400, `give site: one of ${Object.keys(config.sites).join(', ')}`);
      return Object.keys(config.sites);
    }
    if (!isConfiguredSite(config, site)) throw new HttpError(400, `site ${JSON.stringify(site.slice(0, 60))} is not in the configuration; give one of ${Object.keys(config.sites).join(', ')}`);
    return [site];
  };

  const routes: Record<string, (request: IncomingMessage, response: ServerResponse, url: URL) => Promise<void>> = {
    'GET /api/sites': async (_request, response) => {
      const statuses = await status();
      sendJson(response, 200, { values, sites: statuses.map(siteView) });
    },

    'GET /api/feed': async (_request, response, url) => {
      // The filter is checked before the stream opens, so a bad one is a plain 400 the page can show.
      const asked: Record<string, string> = {};
      for (const name of ['site', 'table', 'op'] as const) {
        const value = url.searchParams.get(name);
        if (value !== null && value.trim() !== '') asked[name] = value;
      }
      const filter = parseChangeFilter(config, connectors, asked);
      if (feeds >= MAX_FEEDS) throw new HttpError(503, `${MAX_FEEDS} live feeds are open already; close a console tab`);
      feeds++;
      try {
        await serveFeed(response, { data, filter, show, asked, serverSignal: closing.signal });
      } finally {
        feeds--;
      }
    },

    'GET /api/parked': async (_request, response, url) => {
      const parked: ParkedView[] = [];
      const problems: { site: string; error: string }[] = [];
      const truncated: string[] = [];
      for (const site of siteParam(url, false)) {
        try {
          const listed = await data.listParked(site);
          if (listed === 'missing') continue; // a site never run parks nothing
          parked.push(...listed.parked);
          if (listed.truncated) truncated.push(site);
        } catch (error) {
          problems.push({ site, error: oneLine(describeError(error)) });
        }
      }
      sendJson(response, 200, { parked, truncated, problems });
    },

    'POST /api/parked/retry': (request, response) => actOnParked(request, response, 'retry'),
    'POST /api/parked/discard': (request, response) => actOnParked(request, response, 'discard'),

    'GET /api/conflicts': async (_request, response, url) => {
      const limitText = url.searchParams.get('limit');
      const limit = limitText === null ? DEFAULT_CONFLICTS : Number(limitText);
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_CONFLICTS) throw new HttpError(400, `limit ${JSON.stringify(limitText)}: give a whole number from 1 to ${MAX_CONFLICTS}`);
      const conflicts: ConflictView[] = [];
      const problems: { site: string; error: string }[] = [];
      await Promise.all(
        siteParam(url, false).map(async (site) => {
          const recent = await data.recentConflicts(site, limit);
          if (recent.kind === 'read') conflicts.push(...recent.entries);
          else problems.push({ site, error: recent.kind === 'unsupported' ? 'its kind of database keeps no conflict log the console can read' : oneLine(recent.reason) });
        }),
      );
      conflicts.sort((a, b) => b.loggedAt.localeCompare(a.loggedAt));
      sendJson(response, 200, { conflicts: conflicts.slice(0, limit), problems });
    },

    'GET /api/trace': async (_request, response, url) => {
      const param = (name: string): string | undefined => {
        const value = url.searchParams.get(name);
        return value === null || value.trim() === '' ? undefined : value;
      };
      const plan = planTrace(config, connectors, { transaction: param('transaction'), table: param('table'), key: param('key'), limit: param('limit') });
      if (traces >= MAX_TRACES) throw new HttpError(503, `${MAX_TRACES} traces are running already; try again when one ends`);
      traces++;
      const abort = new AbortController();
      const stop = (): void => abort.abort();
      response.on('close', stop); // the page went away: stop reading the archive
      closing.signal.addEventListener('abort', stop);
      try {
        const lines = await data.trace(plan, abort.signal);
        sendJson(response, 200, { transactions: parseTraceLines(lines) });
      } finally {
        traces--;
        response.off('close', stop);
        closing.signal.removeEventListener('abort', stop);
      }
    },
  };

  async function actOnParked(request: IncomingMessage, response: ServerResponse, action: 'retry' | 'discard'): Promise<void> {
    const body = await readJsonBody(request);
    const { site, id } = body as { site?: unknown; id?: unknown };
    if (typeof site !== 'string' || typeof id !== 'string' || id.length === 0 || id.length > 200) throw new HttpError(400, 'send {"site": "…", "id": "…"}: the site and the parked message id the list shows');
    if (!isConfiguredSite(config, site)) throw new HttpError(400, `site ${JSON.stringify(site.slice(0, 60))} is not in the configuration; give one of ${Object.keys(config.sites).join(', ')}`);
    // One message a click: "all" is the CLI's, where the operator types it.
    if (id === 'all') throw new HttpError(400, `the console ${action}s one message at a time; for all of them run sitesync parked --site ${site} --${action} all`);
    const lines = await data.actOnParked(site, action, id);
    sendJson(response, 200, { done: oneLine(lines.join('; ')) });
  }

  const server = createServer((request, response) => {
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) response.setHeader(name, value);
    void handle(request, response).catch((error: unknown) => {
      const status = statusOf(error);
      const message = oneLine(describeError(error));
      if (status === 500) options.log?.(`sitesync ui: ${request.method} ${(request.url ?? '').split('?')[0]}: ${message}`);
      sendError(response, status, message);
    });
  });

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const refusedHost = checkHost(request.headers, host);
    if (refusedHost) return sendError(response, refusedHost.status, refusedHost.error);
    const url = new URL(request.url ?? '/', 'http://console.invalid');
    const method = request.method ?? 'GET';
    const asset = assets.get(url.pathname);
    if (asset) {
      if (method !== 'GET' && method !== 'HEAD') return sendError(response, 405, `${method} is not allowed here; use GET`);
      response.writeHead(200, { 'content-type': asset.type, 'content-length': asset.body.length, 'cache-control': 'no-cache' });
      response.end(method === 'HEAD' ? undefined : asset.body);
      return;
    }
    if (url.pathname === '/favicon.ico') {
      // Browsers ask for it on their own; no icon is no error.
      response.writeHead(204, { 'cache-control': 'max-age=86400' });
      response.end();
      return;
    }
    const route = routes[`${method} ${url.pathname}`];
    if (!route) {
      const other = Object.keys(routes).find((key) => key.endsWith(` ${url.pathname}`));
      if (other) return sendError(response, 405, `${method} is not allowed on ${url.pathname}; use ${other.split(' ')[0]}`);
      return sendError(response, 404, `no such page: ${url.pathname.slice(0, 100)}`);
    }
    if (method === 'POST') {
      const refused = checkPost(request.headers);
      if (refused) return sendError(response, refused.status, refused.error);
    }
    await route(request, response, url);
  }

  server.listen(options.port, host);
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const port = (server.address() as AddressInfo).port;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shownHost}:${port}/`,
    port,
    server,
    async close() {
      closing.abort(); // open feeds and traces end, so that close() does not wait for them for ever
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      // A browser's keep-alive connection mid-request would hold close() open: give answers a moment, then cut.
      const cut = setTimeout(() => server.closeAllConnections(), 2000);
      await closed;
      clearTimeout(cut);
    },
  };
}

async function readJsonBody(request: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, `the body is over ${MAX_BODY_BYTES} bytes; send {"site": "…", "id": "…"}`);
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    throw new HttpError(400, 'the body is not JSON; send {"site": "…", "id": "…"}');
  }
}

/**
 * Every open page asks for the sites' status every few seconds, and each answer reads every site's database
 * and the broker: pages asking within `ms` of an answer (or while one is read) share it, so ten tabs cost
 * what one does.
 */
export function sharedFor<T>(ms: number, read: () => Promise<T>, now: () => number = Date.now): () => Promise<T> {
  // settledAt: null while the read is under way (shared too).
  let last: { settledAt: number | null; readonly value: Promise<T> } | null = null;
  return () => {
    if (last !== null && (last.settledAt === null || now() - last.settledAt < ms)) return last.value;
    const entry: { settledAt: number | null; readonly value: Promise<T> } = { settledAt: null, value: read() };
    last = entry;
    entry.value.then(
      () => (entry.settledAt = now()),
      () => {
        if (last === entry) last = null; // a failed read is not shared past its own askers: the next one reads again
      },
    );
    return entry.value;
  };
}
