/**
 * Positions are opaque to everything but their source kind, but they must order. Every source kind writes
 * them as upper-case hex of a width fixed for that kind (PostgreSQL LSNs: 16 digits; MariaDB binary log
 * file and offset: 24), so two positions of one source compare as strings. What the digits mean and how
 * they display is each connector's (`connectors/<kind>/<kind>-positions.ts`).
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

/** How a position reads in logs: its kind's display form (the composition root knows the kinds). */
export type DescribePosition = (position: Position | null) => string;

/** The display form when nothing better is known: the position as it travels. */
export const rawPosition: DescribePosition = (position) => position ?? 'none';
