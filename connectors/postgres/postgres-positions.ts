/**
 * PostgreSQL positions: a transaction's position is the LSN of its commit (64 bits) as 16 upper-case hex
 * digits, so that two of them order as strings; PostgreSQL's own tools print the same LSN as `X/Y`.
 */
import type { PositionFormat } from '../../src/connector.ts';
import type { Position } from '../../src/events/transaction.ts';

const POSITION = /^[0-9A-F]{16}$/;
const LSN_TEXT = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

/** PostgreSQL's `X/Y` text form to a 64-bit number. */
export function parseLsn(text: string): bigint {
  const m = LSN_TEXT.exec(text);
  if (!m) throw new Error(`not a PostgreSQL LSN: ${JSON.stringify(text)}`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

/** A 64-bit LSN to PostgreSQL's `X/Y` text form. */
export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

export function lsnToPosition(lsn: bigint): Position {
  return lsn.toString(16).toUpperCase().padStart(16, '0');
}

export function isPostgresPosition(position: string): boolean {
  return POSITION.test(position);
}

export function positionToLsn(position: Position): bigint {
  if (!POSITION.test(position)) throw new Error(`not a PostgreSQL position: ${JSON.stringify(position)}`);
  return BigInt(`0x${position}`);
}

export const postgresPositions: PositionFormat = {
  isPosition: isPostgresPosition,
  /** PostgreSQL's `X/Y` form as `pg_current_wal_lsn()` prints it, or sitesync's own 16 hex digits as in `status --json`. */
  parse: (text) => (LSN_TEXT.test(text) ? lsnToPosition(parseLsn(text)) : /^[0-9A-Fa-f]{16}$/.test(text) ? text.toUpperCase() : null),
  example: '0/16B3748',
  /** For logs and status: in the form PostgreSQL's tools print. */
  describe: (position) => (POSITION.test(position) ? formatLsn(BigInt(`0x${position}`)) : position),
};
