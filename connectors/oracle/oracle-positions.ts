/**
 * Oracle positions and checkpoints.
 *
 * A position is where a transaction committed: its commit SCN, then its redo thread, then its XID, as
 * 16 + 4 + 16 upper-case hex digits, so that string order is that order. Several transactions can commit at
 * one SCN (on one thread, or on several threads of a RAC database: Debezium's DBZ-4936 lost all but one of them
 * when it resumed "after" that SCN); thread and XID tell them apart and order them the same way every time
 * they are read. A transaction is handed on only at its COMMIT, so each part of a large one already knows its
 * position.
 *
 * A checkpoint says two things: the position up to which everything was published or skipped (`after`), and
 * the SCN to mine from again after a restart (`resume`): the start SCN of the oldest transaction still open
 * there (its changes were logged before its commit, which is still to come), or the SCN read to when none is.
 * A restart mines from `resume` and hands on only commits above `after`: every transaction that committed past
 * the checkpoint is rebuilt whole from its first change, and none at or below it is sent again. Its text is
 * `<after>:<resume as 16 hex digits>`.
 *
 * Display form: `<commit SCN in decimal>/<thread>/<xid in hex>` (`6012345/1/0A001F00E3010000`), as Oracle's
 * tools print SCNs in decimal; a bare decimal SCN is read as the first position at that SCN (for replay).
 */
import type { PositionFormat } from '../../src/connector.ts';
import type { Position } from '../../src/events/transaction.ts';
import type { Scn } from './logminer-reader.ts';

export const ORACLE_POSITION_PATTERN = /^[0-9A-F]{36}$/;
const XID_PATTERN = /^[0-9A-F]{16}$/;
const MAX_SCN = (1n << 64n) - 1n;
const MAX_THREAD = 0xffff;

export interface CommitPoint {
  readonly scn: Scn;
  readonly thread: number;
  /** 16 upper-case hex digits. */
  readonly xid: string;
}

export function formatPosition({ scn, thread, xid }: CommitPoint): Position {
  if (scn < 0n || scn > MAX_SCN) throw new Error(`SCN out of range: ${scn}`);
  if (!Number.isInteger(thread) || thread < 0 || thread > MAX_THREAD) throw new Error(`redo thread out of range: ${thread}`);
  if (!XID_PATTERN.test(xid)) throw new Error(`not an XID of 16 upper-case hex digits: ${JSON.stringify(xid)}`);
  return scn.toString(16).toUpperCase().padStart(16, '0') + thread.toString(16).toUpperCase().padStart(4, '0') + xid;
}

export function parsePosition(position: Position): CommitPoint {
  if (!ORACLE_POSITION_PATTERN.test(position)) throw new Error(`not an Oracle position: ${JSON.stringify(position)}`);
  return { scn: BigInt(`0x${position.slice(0, 16)}`), thread: parseInt(position.slice(16, 20), 16), xid: position.slice(20) };
}

/** The lowest position at an SCN (before every commit there). */
export function firstAt(scn: Scn): Position {
  return formatPosition({ scn, thread: 0, xid: '0'.repeat(16) });
}

/** The highest position at an SCN (after every commit there). */
export function lastAt(scn: Scn): Position {
  return formatPosition({ scn, thread: MAX_THREAD, xid: 'F'.repeat(16) });
}

export function describePosition(position: Position | null): string {
  if (position === null) return 'none';
  if (!ORACLE_POSITION_PATTERN.test(position)) return position;
  const { scn, thread, xid } = parsePosition(position);
  return `${scn}/${thread}/${xid}`;
}

const DISPLAY = /^([0-9]{1,20})(?:\/([0-9]{1,5})\/([0-9A-Fa-f]{16}))?$/;

/** A position as a person types it: `6012345/1/0A001F00E3010000`, a bare SCN `6012345`, or the 36 digits; null if none. */
export function parsePositionText(text: string): Position | null {
  const trimmed = text.trim();
  if (/^[0-9A-Fa-f]{36}$/.test(trimmed)) return trimmed.toUpperCase();
  const m = DISPLAY.exec(trimmed);
  if (!m) return null;
  const scn = BigInt(m[1]!);
  if (scn > MAX_SCN) return null;
  if (m[2] === undefined) return firstAt(scn);
  const thread = Number(m[2]);
  if (thread > MAX_THREAD) return null;
  return formatPosition({ scn, thread, xid: m[3]!.toUpperCase() });
}

export interface Checkpoint {
  /** Everything at or below this position was published or skipped. */
  readonly after: Position;
  /** Where mining starts again: no change of a transaction committed above `after` lies at or below it. */
  readonly resume: Scn;
}

export function formatCheckpoint({ after, resume }: Checkpoint): string {
  if (!ORACLE_POSITION_PATTERN.test(after)) throw new Error(`not an Oracle position: ${JSON.stringify(after)}`);
  if (resume < 0n || resume > MAX_SCN) throw new Error(`SCN out of range: ${resume}`);
  return `${after}:${resume.toString(16).toUpperCase().padStart(16, '0')}`;
}

export function parseCheckpoint(text: string): Checkpoint {
  const m = /^([0-9A-F]{36}):([0-9A-F]{16})$/.exec(text);
  if (!m) throw new Error(`not an Oracle checkpoint (position:resume SCN): ${JSON.stringify(text)}`);
  return { after: m[1]!, resume: BigInt(`0x${m[2]}`) };
}

/** Oracle positions for the connector registry (src/connector.ts). */
export const oraclePositions: PositionFormat = {
  isPosition: (position) => ORACLE_POSITION_PATTERN.test(position),
  parse: parsePositionText,
  example: '6012345/1/0A001F00E3010000',
  describe: (position) => describePosition(position),
};
