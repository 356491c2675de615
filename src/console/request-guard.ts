/**
 * Which requests the console answers. It has no login, so the browser's own rules are the defence:
 * - Host: only the console's own names. A page elsewhere that rebinds its DNS name to 127.0.0.1 is
 *   "same-origin" with the console as far as the browser knows, but its requests still carry its own name
 *   in Host, so they are refused (reads too: the API's answers are not for other pages).
 * - A POST (retry, discard) must say it comes from the console's own page: an `Origin` equal to the
 *   console's origin and/or `Sec-Fetch-Site: same-origin` (at least one present, none saying otherwise),
 *   and a JSON body, which a plain HTML form cannot send without a CORS preflight the console never grants.
 * Pure: the server asks, and answers the refusal as a JSON error.
 */
import type { IncomingHttpHeaders } from 'node:http';

export interface Refusal {
  readonly status: number;
  readonly error: string;
}

const LOOPBACK_NAMES = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);
const WILDCARDS = new Set(['0.0.0.0', '::', '[::]']);

export function isLoopback(host: string): boolean {
  return LOOPBACK_NAMES.has(host.toLowerCase()) || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** The name part of a Host header (`127.0.0.1:8099` → `127.0.0.1`, `[::1]:8099` → `[::1]`). */
function hostName(header: string): string {
  const m = /^(\[[^\]]*\]|[^:]*)(?::\d+)?$/.exec(header.trim().toLowerCase());
  return m ? m[1]! : '';
}

/** The Host header names this console (`bound`: the address it listens on). */
export function checkHost(headers: IncomingHttpHeaders, bound: string): Refusal | null {
  const host = headers.host;
  if (typeof host !== 'string' || host.length === 0) return { status: 400, error: 'the request has no Host header' };
  // Bound to every address, the console has as many names as the machine: the startup warning says so.
  if (WILDCARDS.has(bound)) return null;
  const name = hostName(host);
  if (name === bound.toLowerCase() || (isLoopback(bound) && isLoopback(name))) return null;
  return { status: 403, error: `Host ${JSON.stringify(host.slice(0, 100))} is not this console's address; open it as http://${bound.includes(':') ? `[${bound}]` : bound}:PORT/` };
}

/** A state-changing request comes from the console's own page and carries JSON. */
export function checkPost(headers: IncomingHttpHeaders): Refusal | null {
  const origin = headers.origin;
  const fetchSite = headers['sec-fetch-site'];
  if (origin === undefined && fetchSite === undefined) {
    return { status: 403, error: 'refused: a request that changes something must come from the console page (send Origin: http://HOST:PORT, as a browser does)' };
  }
  if (fetchSite !== undefined && fetchSite !== 'same-origin') return { status: 403, error: `refused: a ${fetchSite} request (Sec-Fetch-Site); only the console's own page may change something` };
  if (origin !== undefined && origin !== `http://${headers.host ?? ''}`) return { status: 403, error: `refused: Origin ${JSON.stringify(origin.slice(0, 100))} is not this console; only its own page may change something` };
  const type = (headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') return { status: 415, error: 'send the body as JSON (Content-Type: application/json)' };
  return null;
}
