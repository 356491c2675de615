import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { EventEmitter, once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoalescedReads } from '../../connectors/postgres/coalesced-reads.ts';

/** A loopback connection: the server side writes, the client side reads through CoalescedReads. */
async function pair(): Promise<{ writer: Socket; reader: Socket; server: Server; received: Buffer[] }> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  const accepted = once(server, 'connection');
  const reader = connect(port, '127.0.0.1');
  const [writer] = (await accepted) as [Socket];
  await once(reader, 'connect');
  const received: Buffer[] = [];
  reader.on('data', (chunk: Buffer) => received.push(chunk));
  return { writer, reader, server, received };
}

async function close(p: { writer: Socket; reader: Socket; server: Server }): Promise<void> {
  p.writer.destroy();
  p.reader.destroy();
  await new Promise((resolve) => p.server.close(resolve));
}

test('small writes that arrive while the reader rests are read together, and every byte arrives in order', async () => {
  const p = await pair();
  const reads = new CoalescedReads(p.reader, 20);
  try {
    const messages = Array.from({ length: 200 }, (_, i) => Buffer.from(`message ${i};`));
    for (const m of messages) {
      p.writer.write(m);
      await sleep(0); // each on its own, as the walsender sends them
    }
    const expected = Buffer.concat(messages);
    while (Buffer.concat(p.received).length < expected.length) await sleep(5);
    assert.deepEqual(Buffer.concat(p.received), expected);
    // Without the rests each message would be a read of its own.
    assert.ok(p.received.length < messages.length / 4, `${p.received.length} reads for ${messages.length} messages`);
  } finally {
    reads.stop();
    await close(p);
  }
});

test('pause() holds the stream through a rest, and resume() lets it go', async () => {
  const p = await pair();
  const reads = new CoalescedReads(p.reader, 10);
  try {
    p.writer.write('first');
    while (p.received.length === 0) await sleep(2);
    reads.pause(); // during the rest that followed the short read
    p.writer.write('second');
    await sleep(60); // several rests long
    assert.equal(Buffer.concat(p.received).toString(), 'first');
    reads.resume();
    while (Buffer.concat(p.received).toString() !== 'firstsecond') await sleep(2);
  } finally {
    reads.stop();
    await close(p);
  }
});

test('a read of 16 KiB or more (more may be waiting) never rests; a short one rests once', async () => {
  // A socket stand-in: the reads are the chunks emitted here; its handle counts stops and starts.
  const calls: string[] = [];
  const handle = {
    reading: true,
    readStop: () => (calls.push('stop'), 0),
    readStart: () => (calls.push('start'), 0),
  };
  const socket = Object.assign(new EventEmitter(), { _handle: handle, destroyed: false, readableLength: 0 });
  const reads = new CoalescedReads(socket as unknown as Socket, 5);
  socket.emit('data', Buffer.alloc(64 * 1024));
  socket.emit('data', Buffer.alloc(16 * 1024));
  await sleep(1);
  assert.deepEqual(calls, []);
  socket.emit('data', Buffer.alloc(100));
  socket.emit('data', Buffer.alloc(100)); // already resting: no second rest
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(calls, ['stop']);
  assert.equal(handle.reading, false);
  await sleep(30);
  assert.deepEqual(calls, ['stop', 'start']);
  assert.equal(handle.reading, true);
  reads.stop();
});
