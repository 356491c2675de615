/**
 * Positions are opaque to everything but their source kind, but they must order. Every source kind writes
 * them as fixed-width upper-case hex, so two positions of one source compare as strings. PostgreSQL LSNs
 * are 64-bit: 16 hex digits. (Oracle SCNs and SQL Server's 10-byte LSNs fit the same rule at their widths.)
 */
import type { Position } from './transaction.ts';

export function comparePositions(a: Position, b: Position): number {
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

export function maxPosition(a: Position | null, b: Position | null): Position | null {
  if (a === null) return b;
  if (b === null) return a;
  return comparePositions(a, b) >= 0 ? a : b;
}

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

export function positionToLsn(position: Position): bigint {
  if (!/^[0-9A-F]{16}$/.test(position)) throw new Error(`not a PostgreSQL position: ${JSON.stringify(position)}`);
  return BigInt(`0x${position}`);
}

/** For logs and status: a PostgreSQL position in the form PostgreSQL tools print. */
export function describePosition(position: Position | null): string {
  if (position === null) return 'none';
  return /^[0-9A-F]{16}$/.test(position) ? formatLsn(positionToLsn(position)) : position;
}
