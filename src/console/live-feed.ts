/**
 * `/api/feed`: the archive as it grows, as server-sent events. Each open page has its own archive reader
 * (from the last message archived, following), so a page sees every transaction archived after it
 * connected, and a closed page stops its reader at once (the response's close aborts it).
 *
 * Events: `hello` (the feed is attached — sent once the archive reader is, so that a write made after
 * the page saw it is in the feed — with whether values are shown and the filter), `transaction` and
 * `skipped` (console-views.ts), and `failure` ({error}: the reader stopped, e.g. RabbitMQ went away; the
 * browser's EventSource reconnects by itself after `retry`). A comment line every KEEPALIVE_MS keeps
 * proxies from closing a quiet feed.
 */
import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import type { ChangeFilter } from '../inspect/change-filter.ts';
import type { ShowOptions } from '../inspect/change-format.ts';
import { describeError } from '../errors.ts';
import type { ConsoleData } from './console-data.ts';
import { feedEvents, oneLine } from './console-views.ts';
import { safeJson } from './json-response.ts';

const KEEPALIVE_MS = 15_000;
const RECONNECT_MS = 3000;

export interface FeedRequest {
  readonly data: ConsoleData;
  readonly filter: ChangeFilter;
  readonly show: ShowOptions;
  /** The filter as asked, echoed in `hello`. */
  readonly asked: Readonly<Record<string, string>>;
  /** Aborted when the server closes. */
  readonly serverSignal: AbortSignal;
}

export async function serveFeed(response: ServerResponse, feed: FeedRequest): Promise<void> {
  const abort = new AbortController();
  const stop = (): void => abort.abort();
  // The response's close, not the request's: a request's close only says its body was read.
  response.on('close', stop);
  feed.serverSignal.addEventListener('abort', stop);
  response.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
    connection: 'keep-alive',
    'x-accel-buffering': 'no', // a reverse proxy must pass events on as they come
  });
  const send = async (event: string, data: unknown): Promise<void> => {
    if (abort.signal.aborted) return;
    // A slow page holds the reader back (its prefetch bounds what waits) rather than growing a buffer here.
    if (!response.write(`event: ${event}\ndata: ${safeJson(data)}\n\n`)) await once(response, 'drain', { signal: abort.signal }).catch(() => undefined);
  };
  response.write(`retry: ${RECONNECT_MS}\n\n`);
  const keepalive = setInterval(() => response.write(': keepalive\n\n'), KEEPALIVE_MS);
  let attached: () => void = () => undefined;
  const attachedOrEnded = new Promise<void>((resolve) => (attached = resolve));
  const entries = feed.data.follow(abort.signal, () => attached())[Symbol.asyncIterator]();
  try {
    // The reader starts with the first pull; hello waits for it to attach (or to fail, said below).
    let pending = entries.next();
    await Promise.race([attachedOrEnded, pending.then(() => undefined, () => undefined)]);
    await send('hello', { values: feed.show.values, filter: feed.asked });
    for (;;) {
      const { done, value: entry } = await pending;
      if (done || abort.signal.aborted) break;
      for (const event of feedEvents(entry, feed.filter, feed.show)) await send(event.event, event.data);
      if (abort.signal.aborted) break;
      pending = entries.next();
    }
  } catch (error) {
    if (!abort.signal.aborted) await send('failure', { error: oneLine(describeError(error)) });
  } finally {
    abort.abort();
    await entries.return?.(undefined).catch(() => undefined);
    clearInterval(keepalive);
    feed.serverSignal.removeEventListener('abort', stop);
    response.end();
  }
}
