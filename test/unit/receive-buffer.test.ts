/**
 * The replication connection's receive buffer, on real TCP sockets of this machine's kernel: set when it
 * can be, and otherwise a reason, never an exception (capture works without it).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, Socket, type AddressInfo } from 'node:net';
import { connect as connectTls, createServer as createTlsServer } from 'node:tls';
import { after, before, test } from 'node:test';
import { setReceiveBuffer } from '../../connectors/postgres/receive-buffer.ts';

const server = createServer((peer) => peer.resume());
let port = 0;
const sockets: Socket[] = [];

before(async () => {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as AddressInfo).port;
});

after(async () => {
  for (const s of sockets) s.destroy();
  server.close();
});

async function connected(): Promise<Socket> {
  const socket = new Socket();
  sockets.push(socket);
  socket.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  return socket;
}

test('a connected TCP socket gets the size asked for (Linux reports it doubled, for its bookkeeping)', { skip: process.platform !== 'linux' && 'Linux only' }, async () => {
  const socket = await connected();
  assert.deepEqual(setReceiveBuffer(socket, 32768), { bytes: 65536 });
  assert.deepEqual(setReceiveBuffer(socket, 8192), { bytes: 16384 });
});

test('over TLS, as pg wraps its connected socket, the TCP socket underneath gets it', { skip: process.platform !== 'linux' && 'Linux only' }, async () => {
  // A self-signed certificate for localhost, made for this test (openssl req -x509 -days 36500).
  const fixtures = new URL('../fixtures/', import.meta.url);
  const tlsServer = createTlsServer({ key: readFileSync(new URL('localhost-key.pem', fixtures)), cert: readFileSync(new URL('localhost-cert.pem', fixtures)) }, (peer) => peer.resume());
  tlsServer.listen(0, '127.0.0.1');
  await once(tlsServer, 'listening');
  const plain = new Socket();
  plain.connect((tlsServer.address() as AddressInfo).port, '127.0.0.1');
  await once(plain, 'connect');
  const secure = connectTls({ socket: plain, rejectUnauthorized: false });
  await once(secure, 'secureConnect');
  try {
    assert.deepEqual(setReceiveBuffer(secure, 32768), { bytes: 65536 });
  } finally {
    secure.destroy();
    tlsServer.close();
  }
});

test('a socket not connected yet has no descriptor: left alone, with the reason', () => {
  const outcome = setReceiveBuffer(new Socket(), 32768);
  assert.ok('notSet' in outcome && /no socket descriptor/.test(outcome.notSet), JSON.stringify(outcome));
});

test('without the native package the buffer is left to the kernel, and the reason names the package', async () => {
  const socket = await connected();
  const outcome = setReceiveBuffer(socket, 32768, () => new Error("Cannot find module 'sockopt'\nRequire stack: …"));
  assert.ok('notSet' in outcome);
  assert.equal(outcome.notSet, "the optional package sockopt is not installed or not built (Cannot find module 'sockopt')");
  assert.match(outcome.fix, /npm ci where python3, make and a C\+\+ compiler are installed, or set capture.receiveBufferBytes: 0/);
});

test('a failing setsockopt is a reason too', async () => {
  const socket = await connected();
  const failing = {
    setsockopt: () => {
      throw new Error('EINVAL');
    },
    getsockopt: () => 0,
  };
  assert.deepEqual(setReceiveBuffer(socket, 32768, () => failing), { notSet: 'setsockopt failed: EINVAL', fix: 'set capture.receiveBufferBytes: 0' });
});
