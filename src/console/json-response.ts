/**
 * How the console answers: JSON that is safe wherever it lands, and the headers every answer carries.
 *
 * `<`, `>` and `&` are written as \u escapes: the page reads the JSON with JSON.parse and renders with
 * textContent, so this is a second line, for a browser or a proxy that would take the body for HTML.
 * U+2028/2029 too, so that a value can never end a line of an event stream or a script.
 */
import type { ServerResponse } from 'node:http';

export function safeJson(value: unknown): string {
  return JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * Sent with every answer: no script, style or connection but the console's own (so even a value that got
 * into the page as markup could not run or call out), never framed (clickjacking of Retry/Discard), no
 * type sniffing, no referrer.
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-resource-policy': 'same-origin',
};

export function sendJson(response: ServerResponse, status: number, value: unknown): void {
  const body = safeJson(value);
  response.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
  response.end(body);
}

/** Every failure: `{error: "one line"}` with its status. */
export function sendError(response: ServerResponse, status: number, error: string): void {
  if (response.headersSent) {
    response.end();
    return;
  }
  sendJson(response, status, { error });
}
