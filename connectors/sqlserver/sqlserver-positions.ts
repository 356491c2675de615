/**
 * SQL Server positions and checkpoints.
 *
 * A position is a commit LSN: the `__$start_lsn` every change row of a transaction carries in CDC, as its 10
 * bytes in 20 upper-case hex digits (virtual log file 4 bytes, log block 4 bytes, slot 2 bytes, big-endian),
 * so that string order is LSN order. Commit LSNs are unique per transaction and CDC writes them in commit
 * order, so two positions of one site order as its commits did.
 *
 * A checkpoint is a commit LSN too: everything up to it was published or skipped. Capture only ever
 * checkpoints at a whole transaction (the last part of one, or a transaction skipped whole) or at the upper
 * bound of an interval read to its end (idle), never inside a transaction: a restart reads every transaction
 * after the checkpoint from its first change (Debezium's DBZ-2329 lost the rest of a transaction it resumed
 * inside of).
 *
 * Display forms: SQL Server's tools print an LSN as `0x0000002A000001F00003` (the binary) or
 * `0000002a:000001f0:0003` (fn_dblog, Debezium's offsets); both are read back, as are the 20 digits.
 */
import type { PositionFormat } from '../../src/connector.ts';
import type { Position } from '../../src/events/transaction.ts';

export const SQLSERVER_POSITION_PATTERN = /^[0-9A-F]{20}$/;

/** The lowest LSN: where nothing has been read yet. */
export const ZERO_LSN = '0'.repeat(20);

/** An LSN from the driver's 10-byte Buffer. */
export function lsnFromBytes(bytes: Buffer): Position {
  if (bytes.length !== 10) throw new Error(`not a SQL Server LSN: ${bytes.length} bytes instead of 10`);
  return bytes.toString('hex').toUpperCase();
}

/** The 10 bytes of an LSN, to bind as binary(10). */
export function lsnToBytes(lsn: Position): Buffer {
  if (!SQLSERVER_POSITION_PATTERN.test(lsn)) throw new Error(`not a SQL Server LSN: ${JSON.stringify(lsn)}`);
  return Buffer.from(lsn, 'hex');
}

/** `0000002a:000001f0:0003`, as fn_dblog and Debezium print an LSN. */
export function describeLsn(lsn: Position | null): string {
  if (lsn === null) return 'none';
  if (!SQLSERVER_POSITION_PATTERN.test(lsn)) return lsn;
  const hex = lsn.toLowerCase();
  return `${hex.slice(0, 8)}:${hex.slice(8, 16)}:${hex.slice(16)}`;
}

const COLON_FORM = /^([0-9A-Fa-f]{1,8}):([0-9A-Fa-f]{1,8}):([0-9A-Fa-f]{1,4})$/;
const BINARY_FORM = /^0[xX]([0-9A-Fa-f]{20})$/;

/** An LSN as a person types it: `0000002a:000001f0:0003`, `0x0000002A000001F00003` or the 20 digits; null if none. */
export function parseLsnText(text: string): Position | null {
  const trimmed = text.trim();
  if (/^[0-9A-Fa-f]{20}$/.test(trimmed)) return trimmed.toUpperCase();
  const binary = BINARY_FORM.exec(trimmed);
  if (binary) return binary[1]!.toUpperCase();
  const colon = COLON_FORM.exec(trimmed);
  if (!colon) return null;
  return (colon[1]!.padStart(8, '0') + colon[2]!.padStart(8, '0') + colon[3]!.padStart(4, '0')).toUpperCase();
}

/** Compares two LSNs (string order is LSN order). */
export function compareLsn(a: Position, b: Position): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** SQL Server positions for the connector registry (src/connector.ts). */
export const sqlserverPositions: PositionFormat = {
  isPosition: (position) => SQLSERVER_POSITION_PATTERN.test(position),
  parse: parseLsnText,
  example: '0000002a:000001f0:0003',
  describe: (position) => describeLsn(position),
};
