/**
 * A fixed, small receive buffer (SO_RCVBUF) for the replication connection, so that the server sends the
 * WAL in large pieces.
 *
 * The walsender hands each pgoutput message (a row, ~140 bytes) to a send() of its own. While the
 * connection's receive window is open, each leaves at once in a small TCP segment, and the kernel's work
 * per segment is charged to the server's process. Linux grows the buffer of a reader that keeps up
 * (autotuning) to a megabyte and more, so capture's window stayed open: 100-500k segments for the drain
 * benchmark's million rows. With a buffer of 128 KiB (65536 set; Linux doubles it) the window closes
 * whenever capture is busy with what it read: the server's sends then only queue in its socket, and leave
 * together when capture reads again. See README, "Where the time goes", for what it saved.
 *
 * Not smaller: the server's kernel builds segments of up to half the largest window it has seen, which is
 * set before this call (64 KiB here at the handshake; more where the kernel's default buffer is larger),
 * and over loopback a segment larger than the window leaves only with a zero-window probe, 200 ms and
 * more apart. test/integration/receive-buffer.test.ts, with the size changed, streamed its 3 MB in 1.4 s
 * with 16384 set (32 KiB), in 53 s with 8192 (16 KiB), and not within 60 s with 4096. 65536 leaves
 * room for the largest segment loopback allows.
 *
 * Node.js has no API for socket options, so the optional native package `sockopt` sets it, over plain TCP
 * and TLS alike. Where it is not built (no C++ toolchain at `npm ci`), the kernel sizes the buffer as
 * before: capture works the same, at more cost to the server.
 *
 * A window bounds throughput to about its size per round trip: 128 KiB allows ~100 MB/s at 1 ms, more
 * than a walsender sends beside its database, but not across a WAN. Hence `capture.receiveBufferBytes`,
 * with 0 to leave the buffer to the kernel.
 */
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';

/**
 * What was done: the size the kernel now reports (Linux doubles what is set, for its bookkeeping), or why
 * nothing was and what would make it work.
 */
export type ReceiveBufferOutcome = { readonly bytes: number } | { readonly notSet: string; readonly fix: string };

const SILENCE = 'or set capture.receiveBufferBytes: 0 to leave it to the kernel without this warning';

/** The part of the `sockopt` package used here. */
export interface Sockopt {
  getsockopt(socket: { _handle: { fd: number } }, level: number, name: number): number;
  setsockopt(socket: { _handle: { fd: number } }, level: number, name: number, value: number): void;
}

/** SOL_SOCKET and SO_RCVBUF in the platform's <sys/socket.h>. */
const SO_RCVBUF_BY_PLATFORM: Partial<Record<NodeJS.Platform, readonly [level: number, name: number]>> = {
  linux: [1, 8],
  darwin: [0xffff, 0x1002],
  freebsd: [0xffff, 0x1002],
};

let sockopt: Sockopt | Error | undefined;

function loadSockopt(): Sockopt | Error {
  if (sockopt === undefined) {
    try {
      sockopt = createRequire(import.meta.url)('sockopt') as Sockopt;
    } catch (error) {
      sockopt = error instanceof Error ? error : new Error(String(error));
    }
  }
  return sockopt;
}

/** Sets the receive buffer of `socket`, a connected plain TCP socket, to `bytes`. `load` is for tests. */
export function setReceiveBuffer(socket: Socket, bytes: number, load: () => Sockopt | Error = loadSockopt): ReceiveBufferOutcome {
  const option = SO_RCVBUF_BY_PLATFORM[process.platform];
  if (!option) return { notSet: `socket options are not known on ${process.platform}`, fix: `set capture.receiveBufferBytes: 0` };
  // Over TLS (pg wraps its connected socket) the handle is the TLS layer's, which gives the TCP socket's
  // descriptor too. Only a socket not connected yet has none.
  const fd = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return { notSet: 'the connection has no socket descriptor yet', fix: `set capture.receiveBufferBytes: 0 if this repeats` };
  const addon = load();
  if (addon instanceof Error) {
    return { notSet: `the optional package sockopt is not installed or not built (${addon.message.split('\n')[0]})`, fix: `run npm ci where python3, make and a C++ compiler are installed, ${SILENCE}` };
  }
  const handle = { _handle: { fd } };
  try {
    addon.setsockopt(handle, option[0], option[1], bytes);
    return { bytes: addon.getsockopt(handle, option[0], option[1]) };
  } catch (error) {
    return { notSet: `setsockopt failed: ${error instanceof Error ? error.message : String(error)}`, fix: `set capture.receiveBufferBytes: 0` };
  }
}
