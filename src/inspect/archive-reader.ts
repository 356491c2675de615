/**
 * Reads the archive stream (`broker.archiveStream`) for people: `sitesync tail`, `trace`. Never a site's
 * queue: reading the archive takes nothing from anyone.
 *
 * `readArchive` yields each message in stream order, decoded and checked as an applier would check it
 * (message-provenance.ts: the exchange, the routing key and the RabbitMQ-validated user-id of the site it
 * claims, and its positions of that site's kind), with its offset. A message the codec refuses or whose
 * provenance RabbitMQ does not vouch for is yielded as `skipped` with the reason, never thrown.
 *
 * Where it ends: without `follow`, at the stream's last offset as measured when reading starts (`archiveEnd`,
 * which reads the stream's last chunk). A quiet consumer is never taken for the end: an AMQP consumer on a
 * stream can pause for many seconds on a loaded machine, so one that stalls before the end is closed and a
 * new one opened from the next offset (as test/faults/checker.ts does). With `follow` it goes on until the
 * signal aborts; a consumer quiet for a while is checked against a fresh measure of the end and reopened
 * if it fell behind.
 *
 * Deliveries are acknowledged (a stream consumer's credit) only as they are taken from the iterator, so a
 * slow reader holds at most `prefetch` messages.
 */
import type { Channel, ChannelModel, ConsumeMessage, MessageProperties } from 'amqplib';
import type { Config } from '../config/config-schema.ts';
import { connectBroker } from '../bus/broker-connection.ts';
import { SCHEMA_VERSION_HEADER } from '../bus/message-headers.ts';
import { archiveEnd, streamOffset, type StreamEnd } from '../bus/archive-stream.ts';
import type { ConnectorRegistry } from '../connector.ts';
import { decodeMessage } from '../events/avro-codec.ts';
import type { ChangeMessage } from '../events/transaction.ts';
import { describeError, SitesyncError } from '../errors.ts';
import { foreignShape, provenanceOf, untrustedReason } from '../apply/message-provenance.ts';
import { streamStart } from '../apply/replay.ts';
import { redactSecrets } from '../observability/logger.ts';
import { startPasses, type ArchiveStart } from './change-filter.ts';

export type ArchiveEntry =
  | {
      readonly kind: 'message';
      readonly offset: number;
      /** The message, with only the transactions at or after the start (time and position starts). */
      readonly message: ChangeMessage;
      readonly properties: MessageProperties;
    }
  | {
      readonly kind: 'skipped';
      readonly offset: number | null;
      readonly reason: string;
      /** The site its `sitesync-site` header names (untrusted), if any. */
      readonly site: string | null;
    };

export interface ArchiveReadOptions {
  readonly config: Config;
  readonly connectors: ConnectorRegistry;
  readonly start: ArchiveStart;
  /** Go on past the end, until `signal` aborts. */
  readonly follow?: boolean;
  readonly signal?: AbortSignal;
  /** Default broker.url. */
  readonly brokerUrl?: string;
  /** A connection to read with instead of opening one (tests); it is left open. */
  readonly connection?: ChannelModel;
  /** Name of the broker connection, as the management UI shows it. */
  readonly connectionName?: string;
  /** How long a consumer may deliver nothing before it is taken as stalled. Default 5 s. */
  readonly stallMs?: number;
  readonly prefetch?: number;
  /** Called once the consumer is registered: whatever is archived from then on will be read. */
  readonly onAttached?: () => void;
}

const STALL_MS = 5000;
const PREFETCH = 64; // messages held at most: up to capture.maxMessageBytes (1 MiB) each
/** Consumers reopened in a row without a single delivery before the read gives up. */
const MAX_EMPTY_REOPENS = 12;

/** The archive stream must exist: one line naming it and the fix otherwise. */
export async function checkArchive(connection: ChannelModel, stream: string): Promise<void> {
  const channel = await connection.createChannel();
  channel.on('error', () => undefined); // a 404 closes the channel; the rejected call reports it
  try {
    await channel.checkQueue(stream);
  } catch (error) {
    throw new SitesyncError(
      'SITESYNC_ERR_CONFIG',
      `the archive stream ${stream} cannot be read (${redactSecrets(describeError(error).split('\n')[0]!)}): nothing was archived under that name; check broker.archiveStream (sitesync run and sitesync setup create it)`,
      { cause: error },
    );
  } finally {
    await channel.close().catch(() => undefined);
  }
}

type StreamOffsetArgument = number | 'first' | ReturnType<typeof streamStart>;

/**
 * Where the first consumer attaches: the first chunk (first, a position), the last message, or the chunk
 * holding a time (RabbitMQ's timestamp offset, in whole seconds rounded down). A time after everything
 * archived attaches after the end: nothing archived was committed at or after it, so nothing is read but
 * what comes next (and without `follow`, nothing at all).
 */
function initialOffset(start: ArchiveStart, end: StreamEnd | null): StreamOffsetArgument {
  if (end === null) return 'first'; // an empty stream: only what comes next
  switch (start.kind) {
    case 'first':
    case 'position':
      return 'first';
    case 'last':
      return end.offset;
    case 'time':
      // A message's timestamp is its last transaction's commit time, rounded down to the second.
      if (end.timestampSeconds !== null && BigInt(end.timestampSeconds) < start.micros / 1_000_000n) return end.offset + 1;
      return streamStart({ kind: 'time', micros: start.micros, text: start.text });
  }
}

interface Held {
  readonly delivery: ConsumeMessage;
  readonly channel: Channel;
}

/** The archive's messages from `start`, decoded and checked (see the header). */
export async function* readArchive(options: ArchiveReadOptions): AsyncGenerator<ArchiveEntry, void, undefined> {
  const { config, start, signal } = options;
  const stream = config.broker.archiveStream;
  const follow = options.follow ?? false;
  const stallMs = options.stallMs ?? STALL_MS;
  if (signal?.aborted) return;
  const connection = options.connection ?? (await connectBroker(options.brokerUrl ?? config.broker.url, options.connectionName ?? 'sitesync inspect'));
  let failure: Error | null = null;
  let closing = false;
  let wake: () => void = () => undefined;
  const fail = (error: Error): void => {
    failure ??= error;
    wake();
  };
  const onAbort = (): void => wake();
  signal?.addEventListener('abort', onAbort);
  const onError = (error: Error): void => fail(error);
  const onClose = (): void => {
    if (!closing) fail(new SitesyncError('SITESYNC_ERR_BROKER_UNREACHABLE', `the connection to RabbitMQ closed while reading ${stream}; run the command again`));
  };
  connection.on('error', onError);
  connection.on('close', onClose);

  const held: Held[] = [];
  /** The next offset wanted: a new consumer starts there, and deliveries below it (a chunk read again from its start) are dropped. */
  let next: number | null = null;
  let lastDelivery = Date.now();
  let channel: Channel | null = null;
  let emptyReopens = 0;
  let receivedSinceOpen = false;

  const open = async (from: StreamOffsetArgument): Promise<void> => {
    const opened = await connection.createChannel();
    channel = opened;
    receivedSinceOpen = false;
    opened.on('error', (error: Error) => {
      if (channel === opened) fail(error);
    });
    opened.on('close', () => {
      if (channel === opened && !closing) fail(new SitesyncError('SITESYNC_ERR_BROKER_UNREACHABLE', `the channel reading ${stream} closed; run the command again`));
    });
    await opened.prefetch(options.prefetch ?? PREFETCH);
    lastDelivery = Date.now();
    await opened.consume(
      stream,
      (delivery) => {
        if (channel !== opened) return; // a late delivery of a replaced consumer: the new one reads it again
        if (delivery === null) return fail(new SitesyncError('SITESYNC_ERR_BROKER_UNREACHABLE', `the archive stream ${stream} was deleted while it was read`));
        lastDelivery = Date.now();
        const offset = streamOffset(delivery);
        if (offset !== null && next !== null && offset < next) {
          opened.ack(delivery);
          return;
        }
        receivedSinceOpen = true; // progress, not a chunk read again
        if (offset !== null) next = offset + 1;
        held.push({ delivery, channel: opened });
        wake();
      },
      { arguments: { 'x-stream-offset': from } },
    );
  };

  /** Replaces a stalled consumer (nothing held, nothing delivered for stallMs) with one starting at the next offset wanted. */
  const reopen = async (fallback: StreamOffsetArgument): Promise<void> => {
    emptyReopens = receivedSinceOpen ? 0 : emptyReopens + 1;
    if (emptyReopens > MAX_EMPTY_REOPENS) {
      throw new SitesyncError(
        'SITESYNC_ERR_BROKER_UNREACHABLE',
        `RabbitMQ delivered nothing more of ${stream} after offset ${next === null ? '(none yet)' : next - 1} though the stream goes on (${MAX_EMPTY_REOPENS} consumers tried over ${Math.round((MAX_EMPTY_REOPENS * stallMs) / 1000)} s); check the broker (rabbitmq-diagnostics status), then run the command again`,
      );
    }
    const old = channel;
    channel = null;
    await old?.close().catch(() => undefined);
    await open(next ?? fallback);
  };

  try {
    await checkArchive(connection, stream);
    let end = await archiveEnd(connection, stream);
    const first = initialOffset(start, end);
    if (!follow && (end === null || (typeof first === 'number' && first > end.offset))) return; // nothing archived in range
    if (typeof first === 'number') next = first;
    await open(first);
    options.onAttached?.();
    let opened = start.kind !== 'position';
    for (;;) {
      if (failure) throw failure;
      if (signal?.aborted) return;
      const item = held.shift();
      if (item) {
        const offset = streamOffset(item.delivery);
        try {
          item.channel.ack(item.delivery); // a stream consumer's credit
        } catch {
          // its channel was replaced meanwhile: nothing to acknowledge
        }
        if (!follow && offset !== null && end !== null && offset > end.offset) return;
        const entry = inspectDelivery(item.delivery, offset, options, start, opened);
        if (entry?.kind === 'message') opened = true;
        if (entry !== null) yield entry;
        if (!follow && offset !== null && end !== null && offset >= end.offset) return;
        continue;
      }
      const waiting = new Promise<void>((resolve) => (wake = resolve));
      const timer = setTimeout(() => wake(), 200);
      await waiting;
      clearTimeout(timer);
      if (failure || signal?.aborted || held.length > 0) continue;
      if (Date.now() - lastDelivery < stallMs) continue;
      if (!follow) {
        // Quiet before the end (offsets up to end.offset are still to come): a stalled consumer, never the end.
        await reopen(first);
        continue;
      }
      // Following, quiet is normal; a consumer behind the stream's end, though, has stalled.
      const now = await archiveEnd(connection, stream);
      if (now !== null && (next === null || now.offset >= next)) {
        end = now;
        await reopen(first);
      } else {
        lastDelivery = Date.now();
      }
    }
  } finally {
    closing = true;
    signal?.removeEventListener('abort', onAbort);
    if (options.connection) {
      connection.off('error', onError);
      connection.off('close', onClose);
      const last = channel as Channel | null;
      await last?.close().catch(() => undefined);
    } else {
      await connection.close().catch(() => undefined);
    }
  }
}

/** One delivery as an entry: decoded and checked, trimmed to the start; null when it is before the start. */
function inspectDelivery(delivery: ConsumeMessage, offset: number | null, options: ArchiveReadOptions, start: ArchiveStart, opened: boolean): ArchiveEntry | null {
  const { config, connectors } = options;
  const headers = delivery.properties.headers ?? {};
  const named: unknown = headers['sitesync-site'];
  const headerSite = typeof named === 'string' ? named : Buffer.isBuffer(named) ? named.toString('utf8') : null;
  const site = headerSite !== null && /^[a-z][a-z0-9_]{0,39}$/.test(headerSite) ? headerSite : null;
  const skipped = (reason: string): ArchiveEntry | null => {
    // Before a position start nothing is shown; before a time start, what was published before it.
    if (!opened) return null;
    if (start.kind === 'time' && typeof delivery.properties.timestamp === 'number' && BigInt(delivery.properties.timestamp) * 1_000_000n + 999_999n < start.micros) return null;
    return { kind: 'skipped', offset, reason, site };
  };
  let message: ChangeMessage;
  try {
    const version = Number(headers[SCHEMA_VERSION_HEADER] ?? NaN);
    if (!Number.isInteger(version)) throw new SitesyncError('SITESYNC_ERR_MESSAGE_INVALID', `message has no ${SCHEMA_VERSION_HEADER} header: it was not published by sitesync`);
    message = decodeMessage(delivery.content, version);
  } catch (error) {
    return skipped(oneLine(describeError(error)));
  }
  // The archive holds whatever was published with a site's routing key: only what RabbitMQ vouches was
  // published by that site's broker user is shown as that site's (no site is the reader, so '' is none).
  const untrusted = untrustedReason(config, '', message.site, provenanceOf(delivery)) ?? foreignShape(config, connectors, message);
  if (untrusted !== null) return skipped(oneLine(`not trusted: ${untrusted}`));
  let transactions = message.transactions;
  let inRange = opened;
  if (start.kind === 'time' || start.kind === 'position') {
    transactions = transactions.filter((tx) => {
      inRange ||= startPasses(start, tx, false);
      return inRange;
    });
    if (transactions.length === 0) return null;
    if (start.kind === 'time') transactions = transactions.filter((tx) => startPasses(start, tx, false));
    if (transactions.length === 0) return null;
  }
  const trimmed = transactions.length === message.transactions.length ? message : { ...message, transactions };
  return { kind: 'message', offset: offset ?? -1, message: trimmed, properties: delivery.properties };
}

function oneLine(text: string): string {
  const line = text.split('\n')[0]!;
  return redactSecrets(line.length > 500 ? `${line.slice(0, 500)}…` : line);
}
