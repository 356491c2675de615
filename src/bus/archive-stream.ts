/**
 * The archive stream as a reader sees it: where it ends now, and the offset of a delivery. Shared by replay
 * (src/apply/replay.ts) and inspection (src/inspect/archive-reader.ts). A consumer on a stream never ends by
 * itself, and on a loaded machine it can pause for seconds: a reader must know the end it reads to.
 */
import type { ChannelModel, ConsumeMessage } from 'amqplib';
import { setTimeout as sleep } from 'node:timers/promises';
import { SitesyncError } from '../errors.ts';

/** How the end probe waits: for the last chunk's first message, then for quiet after the last one, at most. */
export interface EndProbeTimings {
  readonly firstMs: number;
  readonly quietMs: number;
  readonly maxMs: number;
  readonly prefetch: number;
}

export const END_PROBE: EndProbeTimings = { firstMs: 5000, quietMs: 500, maxMs: 4000, prefetch: 2000 };

/** Where the stream ends now: its highest offset, and the newest commit time (seconds) its last chunk names. */
export interface StreamEnd {
  readonly offset: number;
  /** The largest AMQP `timestamp` property (a transaction's commit time, in whole seconds) in the last chunk; null when none has one. */
  readonly timestampSeconds: number | null;
}

/**
 * The stream's highest offset now (null: it holds nothing): its last chunk, read until quiet. Under steady
 * writes the last chunk never goes quiet; the end is then what was seen by `maxMs`.
 */
export async function archiveEnd(connection: ChannelModel, stream: string, timings: EndProbeTimings = END_PROBE): Promise<StreamEnd | null> {
  const channel = await connection.createChannel();
  channel.on('error', () => undefined);
  try {
    await channel.prefetch(timings.prefetch);
    let highest: number | null = null;
    let timestampSeconds: number | null = null;
    let first = 0;
    let last = 0;
    const started = Date.now();
    await channel.consume(
      stream,
      (delivery) => {
        if (!delivery) return;
        const offset = streamOffset(delivery);
        if (offset !== null && (highest === null || offset > highest)) highest = offset;
        const stamp: unknown = delivery.properties.timestamp;
        if (typeof stamp === 'number' && (timestampSeconds === null || stamp > timestampSeconds)) timestampSeconds = stamp;
        last = Date.now();
        if (first === 0) first = last;
        channel.ack(delivery);
      },
      { arguments: { 'x-stream-offset': 'last' } },
    );
    for (;;) {
      const now = Date.now();
      if (highest === null ? now - started >= timings.firstMs : now - last >= timings.quietMs || now - first >= timings.maxMs) break;
      await sleep(50);
    }
    return highest === null ? null : { offset: highest, timestampSeconds };
  } finally {
    await channel.close().catch(() => undefined);
  }
}

export function streamOffset(delivery: ConsumeMessage): number | null {
  const offset: unknown = delivery.properties.headers?.['x-stream-offset'];
  return typeof offset === 'number' ? offset : typeof offset === 'bigint' ? Number(offset) : null;
}


/** How long capture waits for the archive stream to take readers before its session fails (and is retried). */
export const ARCHIVE_READY_TIMEOUT_MS = 60_000;

/**
 * Waits until the archive stream can take a consumer: what capture checks before it publishes anything.
 * RabbitMQ (3.10, seen here) confirms a message routed through the exchange to the site queues and to a
 * stream that is still starting after the broker restarted, and the stream never holds it: the archive
 * then lacks a transaction every site received, and the slot moves past it. A stream that takes a
 * consumer takes what is routed to it (docs/fault-injection.md has the experiment). Refused access means
 * this user may not read the archive (an older setup): it cannot check, says so, and goes on.
 */
export async function waitForArchive(connection: ChannelModel, stream: string, warn: (line: string) => void, timeoutMs = ARCHIVE_READY_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    const channel = await connection.createChannel();
    channel.on('error', () => undefined);
    try {
      await channel.prefetch(1); // a stream takes no consumer without one
      const { consumerTag } = await channel.consume(stream, () => undefined, { arguments: { 'x-stream-offset': 'next' } });
      await channel.cancel(consumerTag);
      return;
    } catch (error) {
      last = (error as Error).message?.split('\n')[0] ?? String(error);
      if (/ACCESS_REFUSED|403/.test(last)) {
        warn(`cannot check that the archive stream ${stream} takes messages (${last}): run sitesync setup, which lets each site's broker user read it`);
        return;
      }
    } finally {
      await channel.close().catch(() => undefined);
    }
    if (Date.now() > deadline) {
      throw new SitesyncError('SITESYNC_ERR_BROKER_UNREACHABLE', `the archive stream ${stream} takes no readers after ${Math.round(timeoutMs / 1000)} s (${last}); capture publishes nothing until it does (run sitesync setup if it is missing) and retries`);
    }
    await sleep(100);
  }
}
