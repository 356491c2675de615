import { DecodeError } from '../../src/errors.ts';
import { BinaryReader } from './binary-reader.ts';
import { postgresToUnixMicros, unixToPostgresMicros } from './pgoutput-messages.ts';

/**
 * The CopyData messages of the streaming replication protocol that wrap pgoutput.
 * https://www.postgresql.org/docs/15/protocol-replication.html
 *
 * Times here are microseconds since the Unix epoch, like everywhere else in sitesync; the
 * conversion from and to PostgreSQL's 2000-01-01 epoch happens only at this boundary.
 */

export interface XLogDataFrame {
  readonly kind: 'xlog';
  readonly walStart: bigint;
  readonly walEnd: bigint;
  readonly sendTimeMicros: bigint;
  /** A view into the chunk, not a copy: decode it before the driver reuses the buffer. */
  readonly payload: Buffer;
}

export interface KeepaliveFrame {
  readonly kind: 'keepalive';
  readonly walEnd: bigint;
  readonly sendTimeMicros: bigint;
  readonly replyRequested: boolean;
}

export type ReplicationFrame = XLogDataFrame | KeepaliveFrame;

const XLOG_DATA = 0x77; // 'w'
const PRIMARY_KEEPALIVE = 0x6b; // 'k'
const STANDBY_STATUS_UPDATE = 0x72; // 'r'
const STANDBY_STATUS_LENGTH = 1 + 8 * 4 + 1;

/** Tag, WAL start, WAL end and send time: the bytes before an XLogData frame's pgoutput message. */
export const XLOG_DATA_HEADER_LENGTH = 1 + 8 + 8 + 8;

/**
 * Whether a frame is XLogData, read from its tag alone. Capture takes every position from pgoutput's own
 * messages (Begin, Commit), so the header of the frame that carries each row is never decoded: this runs
 * once per row, and the header's three 64-bit numbers would cost three bigints each time.
 */
export function isXLogData(chunk: Buffer): boolean {
  if (chunk[0] !== XLOG_DATA) return false;
  if (chunk.length < XLOG_DATA_HEADER_LENGTH) {
    throw new DecodeError(`XLogData frame of ${chunk.length} bytes is shorter than its ${XLOG_DATA_HEADER_LENGTH}-byte header`);
  }
  return true;
}

export function decodeReplicationFrame(chunk: Buffer): ReplicationFrame {
  const reader = new BinaryReader(chunk);
  const tag = reader.readUInt8('replication frame tag');
  switch (tag) {
    case XLOG_DATA:
      return decodeXLogData(reader, chunk);
    case PRIMARY_KEEPALIVE:
      return decodeKeepalive(reader);
    default:
      throw new DecodeError(
        `unknown replication frame tag ${JSON.stringify(String.fromCharCode(tag))} (${tag}) at offset 0`,
      );
  }
}

function decodeXLogData(reader: BinaryReader, chunk: Buffer): XLogDataFrame {
  const walStart = reader.readUInt64('XLogData WAL start');
  const walEnd = reader.readUInt64('XLogData WAL end');
  const sendTimeMicros = postgresToUnixMicros(reader.readInt64('XLogData send time'));
  return { kind: 'xlog', walStart, walEnd, sendTimeMicros, payload: chunk.subarray(reader.offset) };
}

function decodeKeepalive(reader: BinaryReader): KeepaliveFrame {
  const walEnd = reader.readUInt64('keepalive WAL end');
  const sendTimeMicros = postgresToUnixMicros(reader.readInt64('keepalive send time'));
  const replyOffset = reader.offset;
  const reply = reader.readUInt8('keepalive reply flag');
  if (reply !== 0 && reply !== 1) {
    throw new DecodeError(`keepalive reply flag must be 0 or 1, found ${reply} at offset ${replyOffset}`);
  }
  if (!reader.atEnd) {
    throw new DecodeError(`${reader.remaining} trailing bytes after keepalive at offset ${reader.offset}`);
  }
  return { kind: 'keepalive', walEnd, sendTimeMicros, replyRequested: reply === 1 };
}

/**
 * The Standby Status Update that confirms progress. Written, flushed and applied are all `lsn`, as
 * given: the caller passes the position it has durably handled, and the server may recycle WAL before
 * it, so adding anything here would acknowledge data we have not handled.
 * Out-of-range bigints (a negative LSN) throw RangeError: that is a bug in the caller, not bad input.
 */
export function encodeStandbyStatus(lsn: bigint, nowMicrosUnix: bigint, replyRequested = false): Buffer {
  const frame = Buffer.alloc(STANDBY_STATUS_LENGTH);
  let offset = frame.writeUInt8(STANDBY_STATUS_UPDATE, 0);
  offset = frame.writeBigUInt64BE(lsn, offset); // written
  offset = frame.writeBigUInt64BE(lsn, offset); // flushed
  offset = frame.writeBigUInt64BE(lsn, offset); // applied
  offset = frame.writeBigInt64BE(unixToPostgresMicros(nowMicrosUnix), offset);
  frame.writeUInt8(replyRequested ? 1 : 0, offset);
  return frame;
}
