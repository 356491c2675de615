/**
 * The archive reader against a stream that misbehaves as RabbitMQ's can on a loaded machine: a consumer
 * that stops delivering before the end is replaced by one reading on from the next offset (never taken for
 * the end), chunks read again from their start are not shown twice, a follower whose consumer stalls is
 * caught up once the end moves, a consumer that never delivers again ends in one line; undecodable and
 * untrusted messages are "skipped" entries; start points. A fake connection stands for the broker, so
 * every stall happens exactly where the test says.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ChannelModel } from 'amqplib';
import { parseConfig } from '../../src/config/load-config.ts';
import { routingKey } from '../../src/config/names.ts';
import { SCHEMA_VERSION_HEADER } from '../../src/bus/message-headers.ts';
import { CURRENT_SCHEMA_VERSION, encodeMessage } from '../../src/events/avro-codec.ts';
import { simpleKind } from '../../src/events/value-kind.ts';
import { readArchive, type ArchiveEntry } from '../../src/inspect/archive-reader.ts';
import type { ArchiveStart } from '../../src/inspect/change-filter.ts';
import { CONNECTORS } from '../../connectors/index.ts';

const config = parseConfig({
  broker: { url: 'amqp://guest:guest@127.0.0.1:5672/', exchange: 'x', archiveStream: 'archive' },
  sites: { paris: { postgres: 'postgres://postgres@127.0.0.1:5432/paris' }, london: { postgres: 'postgres://postgres@127.0.0.1:5432/london' } },
});

const CHUNK = 4;
const BASE_MICROS = 1_714_555_800_000_000n;

interface Stored {
  readonly body: Buffer;
  readonly userId: string;
  readonly commitMicros: bigint;
}

/** A change message of paris: one insert, committed `seconds` after BASE. */
function change(n: number, seconds = n): Stored {
  const position = (0x1000 + n).toString(16).toUpperCase().padStart(16, '0');
  const commitMicros = BASE_MICROS + BigInt(seconds) * 1_000_000n;
  const relation = { schema: 'public', table: 't', replicaIdentity: 'd' as const, columns: [{ name: 'id', kind: simpleKind('int32'), native: { name: 'int4', id: 23, modifier: -1 }, key: true }] };
  const body = encodeMessage({
    site: 'paris',
    sourceKind: 'postgres',
    previous: null,
    part: null,
    transactions: [{ id: `paris:${position}`, site: 'paris', position, commitTimeMicros: commitMicros, sourceTxId: String(n), seen: {}, changes: [{ op: 'insert', relation, newRow: { values: [String(n)], unchanged: [] } }] }],
  });
  return { body, userId: 'guest', commitMicros };
}

/**
 * A stream of messages in chunks of CHUNK. `stallAt(offset, consumer)` says whether consumer number
 * `consumer` (1, 2…; the end probes are not counted) stops delivering for good before that offset.
 */
class FakeStream {
  readonly messages: Stored[] = [];
  consumers = 0;
  private readonly listeners = new Set<() => void>();
  constructor(readonly stallAt: (offset: number, consumer: number) => boolean = () => false) {}

  append(stored: Stored): void {
    this.messages.push(stored);
    for (const listener of this.listeners) listener();
  }

  connection(): ChannelModel {
    const stream = this;
    return {
      on: () => undefined,
      off: () => undefined,
      close: async () => undefined,
      async createChannel() {
        let closed = false;
        let listener: (() => void) | undefined;
        return {
          on: () => undefined,
          prefetch: async () => undefined,
          ack: () => undefined,
          checkQueue: async () => ({ queue: 'archive', messageCount: 0, consumerCount: 0 }),
          close: async () => {
            closed = true;
            if (listener) stream.listeners.delete(listener);
          },
          async consume(_queue: string, deliver: (m: unknown) => void, options: { arguments: { 'x-stream-offset': unknown } }) {
            const from = options.arguments['x-stream-offset'];
            const probe = from === 'last';
            const consumer = probe ? 0 : ++stream.consumers;
            // A stream starts at the chunk holding the offset asked for: earlier messages of it come again.
            let at =
              from === 'first' ? 0
              : from === 'last' ? Math.max(0, Math.floor((stream.messages.length - 1) / CHUNK) * CHUNK)
              : typeof from === 'number' ? Math.floor(from / CHUNK) * CHUNK
              : timestampStart(stream, from as { value: number });
            let stalled = false;
            const pump = (): void => {
              while (!closed && !stalled && at < stream.messages.length) {
                if (!probe && stream.stallAt(at, consumer)) {
                  stalled = true;
                  return;
                }
                const offset = at++;
                const m = stream.messages[offset]!;
                setImmediate(() => {
                  if (closed) return;
                  deliver({
                    content: m.body,
                    fields: { exchange: 'x', routingKey: routingKey('paris') },
                    properties: { userId: m.userId, timestamp: Number(m.commitMicros / 1_000_000n), headers: { 'x-stream-offset': offset, [SCHEMA_VERSION_HEADER]: CURRENT_SCHEMA_VERSION, 'sitesync-site': 'paris' } },
                  });
                });
              }
            };
            listener = pump;
            stream.listeners.add(pump);
            pump();
            return { consumerTag: String(consumer) };
          },
        };
      },
    } as unknown as ChannelModel;
  }
}

/** The first chunk whose messages were committed at or after the time (what RabbitMQ's timestamp offset does, roughly). */
function timestampStart(stream: FakeStream, stamp: { value: number }): number {
  const i = stream.messages.findIndex((m) => m.commitMicros / 1_000_000n >= BigInt(stamp.value));
  return i < 0 ? stream.messages.length : Math.floor(i / CHUNK) * CHUNK;
}

async function readAll(stream: FakeStream, start: ArchiveStart = { kind: 'first' }, extra: { follow?: boolean; signal?: AbortSignal; onEntry?: (e: ArchiveEntry) => void } = {}): Promise<ArchiveEntry[]> {
  const entries: ArchiveEntry[] = [];
  for await (const entry of readArchive({ config, connectors: CONNECTORS, start, connection: stream.connection(), stallMs: 30, follow: extra.follow, signal: extra.signal })) {
    entries.push(entry);
    extra.onEntry?.(entry);
  }
  return entries;
}

const offsets = (entries: ArchiveEntry[]): (number | null)[] => entries.map((e) => e.offset);
const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);

test('a consumer that stalls before the end is replaced from the next offset: every message once, in order', async () => {
  // The first consumer stops before offset 6, the second before 13: each new one starts at a chunk's start.
  const stream = new FakeStream((offset, consumer) => (consumer === 1 && offset === 6) || (consumer === 2 && offset === 13));
  for (let n = 0; n < 20; n++) stream.append(change(n));
  const entries = await readAll(stream);
  assert.deepEqual(offsets(entries), range(0, 20));
  assert.equal(stream.consumers, 3);
  assert.ok(entries.every((e) => e.kind === 'message'));
});

test('the end is the one measured at start: later messages are not read without --follow', async () => {
  const stream = new FakeStream();
  for (let n = 0; n < 6; n++) stream.append(change(n));
  const entries = await readAll(stream, { kind: 'first' }, { onEntry: (e) => e.offset === 2 && stream.append(change(99)) });
  assert.deepEqual(offsets(entries), range(0, 6));
});

test('a consumer that never delivers again ends the read with one line, after many tries', async () => {
  const stream = new FakeStream((offset) => offset === 3);
  for (let n = 0; n < 8; n++) stream.append(change(n));
  await assert.rejects(readAll(stream), (error: Error) => /delivered nothing more of archive after offset 2 though the stream goes on .*check the broker/.test(error.message) && !error.message.includes('\n'));
});

test('following: a stalled consumer is caught up once the end moves; abort stops it', async () => {
  const stream = new FakeStream((offset, consumer) => consumer === 1 && offset === 5);
  for (let n = 0; n < 3; n++) stream.append(change(n));
  const abort = new AbortController();
  const entries = await readAll(stream, { kind: 'first' }, {
    follow: true,
    signal: abort.signal,
    onEntry: (e) => {
      if (e.offset === 2) for (let n = 3; n < 9; n++) stream.append(change(n));
      if (e.offset === 8) abort.abort();
    },
  });
  assert.deepEqual(offsets(entries), range(0, 9));
  assert.equal(stream.consumers, 2);
});

test('undecodable and untrusted messages are skipped entries with their reason; the rest is read', async () => {
  const stream = new FakeStream();
  stream.append(change(0));
  stream.append({ body: Buffer.from([1, 2, 3]), userId: 'guest', commitMicros: BASE_MICROS });
  stream.append({ ...change(2), userId: 'mallory' });
  stream.append(change(3));
  const entries = await readAll(stream);
  assert.deepEqual(entries.map((e) => e.kind), ['message', 'skipped', 'skipped', 'message']);
  assert.match((entries[1] as { reason: string }).reason, /^SITESYNC_ERR_DECODE: .*truncated/);
  assert.match((entries[2] as { reason: string }).reason, /^not trusted: it claims site paris but was published by RabbitMQ user "mallory", not "guest"/);
});

test('start points: last, a time (to the microsecond, though the stream starts at a chunk), a position', async () => {
  const stream = new FakeStream();
  for (let n = 0; n < 10; n++) stream.append(change(n));
  assert.deepEqual(offsets(await readAll(stream, { kind: 'last' })), [9]);
  assert.deepEqual(offsets(await readAll(stream, { kind: 'time', micros: BASE_MICROS + 5_000_001n, text: '' })), range(6, 10));
  assert.deepEqual(offsets(await readAll(stream, { kind: 'time', micros: BASE_MICROS + 60_000_000n, text: '' })), [], 'after everything: nothing');
  assert.deepEqual(offsets(await readAll(stream, { kind: 'position', site: 'paris', position: (0x1000 + 7).toString(16).toUpperCase().padStart(16, '0'), text: '' })), [7, 8, 9]);
});
