/**
 * A status read (the WAL retention watch runs one in every process, periodically) whose connection is reset
 * mid-way must fail its promise and nothing else: node-postgres also emits a socket error as an 'error'
 * event on the client, which ends the process if nobody listens (the soak caught it once).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readPostgresStatus } from '../../connectors/postgres/postgres-status.ts';
import { TcpProxy } from '../faults/tcp-proxy.ts';
import { PG_ADMIN } from '../helpers/test-sites.ts';

test('a status read whose connection is reset rejects, and the process goes on', async () => {
  const admin = new URL(PG_ADMIN);
  const proxy = new TcpProxy(admin.hostname, Number(admin.port || 5432));
  const url = new URL(PG_ADMIN);
  url.port = String(await proxy.listen());
  const sources = Array.from({ length: 400 }, (_, i) => `nosuchsite${i}`); // one query each: a read that lasts
  let rejected = 0;
  try {
    for (let attempt = 0; attempt < 20 && rejected === 0; attempt++) {
      const read = readPostgresStatus(url.toString(), `status_test_${process.pid}`, sources).then(
        () => false,
        () => true,
      );
      await new Promise((resolve) => setTimeout(resolve, 20));
      await proxy.cut(50); // every connection reset (RST), as a crash or a network cut does
      if (await read) rejected++;
    }
  } finally {
    await proxy.close();
  }
  assert.ok(rejected > 0, 'the read was never caught mid-way: nothing was tested');
});
