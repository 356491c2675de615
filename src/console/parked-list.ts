/**
 * A site's parked messages as data, for the console's list (the CLI's `sitesync parked` prints the same
 * facts as lines). Read without taking anything: every message is fetched unacknowledged and returns to the
 * parking queue when the channel closes. Only the parking headers are read, never the body, so no value of
 * a row is shown. The id of a message without one is the text `sitesync parked` gives it, so that the
 * console's Discard names it the way parkedCommand looks for it.
 */
import type { ChannelModel } from 'amqplib';
import { PARKED_ID_HEADER, parkingQueue } from '../config/names.ts';
import { oneLine } from './console-views.ts';

export interface ParkedView {
  readonly site: string;
  readonly id: string;
  /** Whether it carries a parked id: only those can be sent back (the applier recognises them by it). */
  readonly canRetry: boolean;
  readonly parkedAt: string | null;
  readonly source: string | null;
  readonly transaction: string | null;
  readonly code: string | null;
  readonly reason: string;
}

/** Messages listed per site at most: each one is held unacknowledged while the list is read. */
export const MAX_LISTED = 500;

function text(value: unknown): string | null {
  return typeof value === 'string' ? value : Buffer.isBuffer(value) ? value.toString('utf8') : typeof value === 'number' ? String(value) : null;
}

/** The site's parked messages (at most MAX_LISTED), and whether there were more; `missing` when the queue does not exist. */
export async function listParked(connection: ChannelModel, site: string): Promise<{ readonly parked: ParkedView[]; readonly truncated: boolean } | 'missing'> {
  const channel = await connection.createChannel();
  channel.on('error', () => undefined); // a 404 closes the channel; the rejected call reports it
  try {
    try {
      await channel.checkQueue(parkingQueue(site));
    } catch (error) {
      if ((error as { code?: unknown }).code === 404) return 'missing';
      throw error;
    }
    const parked: ParkedView[] = [];
    for (let n = 1; n <= MAX_LISTED + 1; n++) {
      const message = await channel.get(parkingQueue(site), { noAck: false });
      if (!message) return { parked, truncated: false };
      if (n > MAX_LISTED) return { parked, truncated: true };
      const h = message.properties.headers ?? {};
      const id = text(h[PARKED_ID_HEADER]);
      parked.push({
        site,
        id: id ?? `(no id: parked before ids existed, #${n})`,
        canRetry: id !== null,
        parkedAt: text(h['sitesync-parked-at']),
        source: text(h['sitesync-parked-source']),
        transaction: text(h['sitesync-parked-transaction']),
        code: text(h['sitesync-parked-code']),
        reason: oneLine(text(h['sitesync-parked-reason']) ?? 'no reason recorded (dead-lettered by RabbitMQ after too many deliveries)', 300),
      });
    }
    return { parked, truncated: true };
  } finally {
    await channel.close().catch(() => undefined); // unacknowledged: they stay parked
  }
}
