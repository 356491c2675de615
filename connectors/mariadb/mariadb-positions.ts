/**
 * MariaDB positions and checkpoints.
 *
 * A position is where a transaction sits in the server's binary log, as 24 upper-case hex digits: 8 for the
 * binlog file's sequence number (the numeric suffix of `mysql-bin.000042`), 16 for a byte offset in that
 * file. Binlog files are written one after the other and a transaction is written to the binlog whole, at
 * its commit, so binlog order is commit order and string order of positions is that order on that server.
 *
 * Which offset: the end of the transaction's first event (MariaDB's GTID event, which opens every event
 * group, or a `BEGIN` query where there is none). MariaDB's GTID event does not say how long the group is,
 * so the end of its commit (XID) event is known only once every row has been read; a transaction too large
 * for one message goes out in parts before that, and every part must already carry the transaction's id
 * (`site:position`). The offset of its first event is known from the start, is the same every time the
 * transaction is read again (deterministic ids, whatever the part size), and orders exactly as the commit
 * offsets would, since groups never overlap in the log.
 *
 * A checkpoint is what the stream resumes after: the binlog file name and the offset of the end of the last
 * event consumed (for a transaction, the end of its XID or COMMIT event), `mysql-bin.000042:1234`. It names
 * the file in full because a position only keeps its number.
 */
import type { PositionFormat } from '../../src/connector.ts';
import type { Position } from '../../src/events/transaction.ts';

/** The form of every MariaDB position (POSITION_FORMATS.mariadb). */
export const MARIADB_POSITION_PATTERN = /^[0-9A-F]{24}$/;

const FILE_SEQUENCE = /\.([0-9]+)$/;
const MAX_SEQUENCE = 0xffffffff;

export interface BinlogCoordinates {
  /** The binlog file's base name, `mysql-bin.000042`. */
  readonly file: string;
  /** Byte offset in that file. */
  readonly offset: number;
}

/** The numeric suffix of a binlog file name: `mysql-bin.000042` → 42. */
export function fileSequence(file: string): number {
  const m = FILE_SEQUENCE.exec(file);
  const sequence = m ? Number(m[1]) : NaN;
  if (!Number.isSafeInteger(sequence) || sequence > MAX_SEQUENCE) {
    throw new Error(`not a binlog file name with a sequence number: ${JSON.stringify(file)}`);
  }
  return sequence;
}

export function formatPosition(sequence: number, offset: number): Position {
  if (!Number.isSafeInteger(sequence) || sequence < 0 || sequence > MAX_SEQUENCE) throw new Error(`binlog file sequence out of range: ${sequence}`);
  if (!Number.isSafeInteger(offset) || offset < 0) throw new Error(`binlog offset out of range: ${offset}`);
  return sequence.toString(16).toUpperCase().padStart(8, '0') + offset.toString(16).toUpperCase().padStart(16, '0');
}

/** The position of an offset in a binlog file, by the file's name. */
export function positionOf(file: string, offset: number): Position {
  return formatPosition(fileSequence(file), offset);
}

export function parsePosition(position: Position): { sequence: number; offset: number } {
  if (!MARIADB_POSITION_PATTERN.test(position)) throw new Error(`not a MariaDB position: ${JSON.stringify(position)}`);
  const offset = BigInt(`0x${position.slice(8)}`);
  if (offset > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`MariaDB position offset out of range: ${position}`);
  return { sequence: parseInt(position.slice(0, 8), 16), offset: Number(offset) };
}

/**
 * For logs and status: `000042:1234` (the file's sequence number, zero-padded as MariaDB names files, and the
 * offset), or `mysql-bin.000042:1234` given the binlog base name.
 */
export function describePosition(position: Position | null, baseName?: string): string {
  if (position === null) return 'none';
  if (!MARIADB_POSITION_PATTERN.test(position)) return position;
  const { sequence, offset } = parsePosition(position);
  const file = String(sequence).padStart(6, '0');
  return baseName ? `${baseName}.${file}:${offset}` : `${file}:${offset}`;
}

const CHECKPOINT = /^(.+):([0-9]{1,16})$/;

export function formatCheckpoint({ file, offset }: BinlogCoordinates): string {
  fileSequence(file);
  return `${file}:${offset}`;
}

export function parseCheckpoint(checkpoint: string): BinlogCoordinates {
  const m = CHECKPOINT.exec(checkpoint);
  const offset = m ? Number(m[2]) : NaN;
  if (!m || !Number.isSafeInteger(offset)) throw new Error(`not a MariaDB checkpoint (binlog-file:offset): ${JSON.stringify(checkpoint)}`);
  fileSequence(m[1]!);
  return { file: m[1]!, offset };
}

/** Compares two binlog coordinates of one server: by file sequence, then offset. */
export function compareCoordinates(a: BinlogCoordinates, b: BinlogCoordinates): number {
  return fileSequence(a.file) - fileSequence(b.file) || a.offset - b.offset;
}

const DISPLAY = /^(?:.*\.)?([0-9]+):([0-9]+)$/;

/** A position as a person types it: `mysql-bin.000042:1234`, `000042:1234`, or the 24 hex digits; null if none. */
export function parsePositionText(text: string): Position | null {
  if (/^[0-9A-Fa-f]{24}$/.test(text)) return text.toUpperCase();
  const m = DISPLAY.exec(text.trim());
  if (!m) return null;
  const sequence = Number(m[1]);
  const offset = Number(m[2]);
  if (!Number.isSafeInteger(sequence) || sequence > MAX_SEQUENCE || !Number.isSafeInteger(offset)) return null;
  return formatPosition(sequence, offset);
}

/** MariaDB positions for the connector registry (src/connector.ts). */
export const mariadbPositions: PositionFormat = {
  isPosition: (position) => MARIADB_POSITION_PATTERN.test(position),
  parse: parsePositionText,
  example: '000042:1234',
  describe: (position) => describePosition(position),
};
