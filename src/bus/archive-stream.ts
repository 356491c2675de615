/**
 * The archive stream as a reader sees it: where it ends now, and the offset of a delivery. Shared by replay
 * (src/apply/replay.ts) and inspection (src/inspect/archive-reader.ts). A consumer on a stream never ends by
 * itself, and on a loaded machine it can pause for seconds: a reader must know the end it reads to.
 */
import type { ChannelModel, ConsumeMessage } from 'amqplib';
import { setTimeout as sleep } from 'node:timers/promises';

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

