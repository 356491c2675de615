/**
 * Reads the replication stream in large pieces.
 *
 * The walsender hands each pgoutput message (a row, ~100 bytes) to its own send(). When the reader keeps up,
 * every send finds it waiting and wakes it: a wake-up and a context switch on each side per row, and a read,
 * a 'data' event and a parse per row here. On loopback that costs the server more than decoding the WAL.
 * So after a short read (the kernel's buffer held little), the socket rests for a moment: meanwhile the
 * server's sends only queue bytes, and the next read takes hundreds of messages at once.
 *
 * Short means under 16 KiB, not under a full 64 KiB read: over a Unix-domain socket the sender's buffer is
 * charged a few hundred bytes of overhead per send, so it is full at about 28 KiB of 100-byte rows, and
 * a rest after such a read would stall a walsender that has more to send (`npm run bench -- --only a
 * --socket`: 148k rows/s resting after every read under 64 KiB, 219k under 16 KiB, pg_recvlogical ~300k).
 * A read of 16 KiB already carries ~150 rows, so a busy stream is never held, and a trickle still is.
 *
 * A rest must stop the reads from the kernel, which socket.pause() does not: a paused socket keeps reading,
 * one small chunk per wake-up, until 16 KiB wait in its own buffer. So a rest stops and restarts the reading
 * of the socket's handle, as Node's net.js does for sockets with `onread`; the stream above never notices.
 *
 * The rest adds at most `restMs` to the time a change takes through capture. Flow control (pause/resume from
 * the pipeline, when too much is unconfirmed) is the socket's own pause and resume, as before.
 */
import type { Socket } from 'node:net';

/** Reads shorter than this are followed by a rest (libuv reads at most 64 KiB at a time). */
const REST_BELOW_BYTES = 16 * 1024;

/** The part of a net.Socket's libuv handle that starts and stops reading (Node's own net.js uses it so). */
interface ReadingHandle {
  reading: boolean;
  readStop(): number;
  readStart(): number;
}

export class CoalescedReads {
  private resting: NodeJS.Timeout | null = null;
  private readonly onData = (chunk: Buffer): void => {
    // Only a read straight from the kernel says whether more was waiting there; chunks that queued in
    // the socket's own buffer meanwhile come out one by one and say nothing.
    if (chunk.length >= REST_BELOW_BYTES || this.resting !== null || this.socket.readableLength > 0) return;
    // Stopped once the stream has had its say: after each chunk it asks for the next read (on the next
    // tick), which would start a stopped handle again.
    setImmediate(() => this.stopHandle());
    this.resting = setTimeout(() => {
      this.resting = null;
      this.startHandle();
    }, this.restMs);
  };

  constructor(
    private readonly socket: Socket,
    private readonly restMs = 1,
  ) {
    socket.on('data', this.onData);
  }

  /** Flow control: no more 'data' until resume(). */
  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  stop(): void {
    this.socket.off('data', this.onData);
    if (this.resting !== null) clearTimeout(this.resting);
    this.resting = null;
    this.startHandle();
  }

  private handle(): ReadingHandle | null {
    const handle = (this.socket as unknown as { _handle?: Partial<ReadingHandle> | null })._handle;
    if (!handle || typeof handle.readStop !== 'function' || typeof handle.readStart !== 'function' || this.socket.destroyed) return null;
    return handle as ReadingHandle;
  }

  private stopHandle(): void {
    const handle = this.handle();
    if (this.resting === null || !handle?.reading) return;
    handle.reading = false;
    const error = handle.readStop();
    if (error) this.socket.destroy(new Error(`cannot stop reading the replication connection (libuv error ${error})`));
  }

  private startHandle(): void {
    const handle = this.handle();
    if (!handle || handle.reading) return;
    handle.reading = true;
    const error = handle.readStart();
    if (error) this.socket.destroy(new Error(`cannot read the replication connection (libuv error ${error})`));
  }
}
