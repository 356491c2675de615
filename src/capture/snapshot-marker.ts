/**
 * A snapshot marker: what `sitesync snapshot` (and, chunk after chunk, the capture itself) writes into a
 * site's log to ask capture for the next chunk of existing rows. The marker is a transaction of its own in
 * the log, so it has a position in the site's commit order: capture reads the chunk when the stream reaches
 * it and sends the rows at exactly that position (snapshot-chunks.ts says why that is consistent).
 *
 * A marker travels inside the site's own log, but it is still read as untrusted text: parsed strictly,
 * every field checked, and a marker that does not parse is reported and dropped, never half-used.
 */
import { randomBytes } from 'node:crypto';
import { SITE_NAME_PATTERN, SNAPSHOT_ID_PATTERN } from '../events/transaction.ts';
import type { RowKey } from './table-reader.ts';

/** The logical-message prefix of a marker (connectors whose logs carry no messages write it as a row). */
export const SNAPSHOT_MARKER_PREFIX = 'sitesync_snapshot';

/** Rows per chunk unless asked otherwise: what Debezium's incremental snapshots and DBLog use. */
export const DEFAULT_CHUNK_ROWS = 1024;
export const MAX_CHUNK_ROWS = 100_000;
/** Keys one repair may name: they travel in every marker of it. */
export const MAX_MARKER_KEYS = 10_000;

export interface SnapshotMarker {
  readonly id: string;
  /** `schema.table`. */
  readonly table: string;
  /** The number of the chunk this marker asks for. */
  readonly chunk: number;
  readonly chunkRows: number;
  /** The sites that write the rows; null: every site that applies this one. */
  readonly targets: readonly string[] | null;
  /** Whole table: the last key of the previous chunk (null: from the first row). */
  readonly after: RowKey | null;
  /** Only these keys (a repair), the ones not yet read; null: the whole table. */
  readonly keys: readonly RowKey[] | null;
}

const ID = new RegExp(SNAPSHOT_ID_PATTERN);
const SITE = new RegExp(SITE_NAME_PATTERN);
const TABLE = /^[^.\s]+\.[^\s]+$/;

/** A new snapshot id: sortable by time, unique without coordination. */
export function newSnapshotId(now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\..*/, '').toLowerCase();
  return `s${stamp}-${randomBytes(3).toString('hex')}`;
}

export function encodeMarker(marker: SnapshotMarker): string {
  return JSON.stringify({ v: 1, ...marker });
}

/** The marker in `text`; throws an Error saying what is wrong with it. */
export function parseMarker(text: string): SnapshotMarker {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error('snapshot marker is not JSON');
  }
  const m = value as Record<string, unknown>;
  if (typeof m !== 'object' || m === null || m.v !== 1) throw new Error('snapshot marker is not version 1');
  if (typeof m.id !== 'string' || !ID.test(m.id)) throw new Error('snapshot marker has no valid id');
  if (typeof m.table !== 'string' || !TABLE.test(m.table) || m.table.length > 200) throw new Error(`snapshot marker ${m.id} names no valid schema.table`);
  if (!Number.isInteger(m.chunk) || (m.chunk as number) < 0) throw new Error(`snapshot marker ${m.id} has no valid chunk number`);
  if (!Number.isInteger(m.chunkRows) || (m.chunkRows as number) < 1 || (m.chunkRows as number) > MAX_CHUNK_ROWS) throw new Error(`snapshot marker ${m.id} has chunkRows outside 1..${MAX_CHUNK_ROWS}`);
  const targets = m.targets;
  if (targets !== null && !(Array.isArray(targets) && targets.length > 0 && targets.every((t) => typeof t === 'string' && SITE.test(t)))) {
    throw new Error(`snapshot marker ${m.id} has targets that are not site names`);
  }
  const after = m.after;
  if (after !== null && !isKey(after)) throw new Error(`snapshot marker ${m.id} has an invalid key in after`);
  const keys = m.keys;
  if (keys !== null && !(Array.isArray(keys) && keys.length <= MAX_MARKER_KEYS && keys.every(isKey))) throw new Error(`snapshot marker ${m.id} has invalid keys`);
  if (after !== null && keys !== null) throw new Error(`snapshot marker ${m.id} has both after and keys`);
  return {
    id: m.id,
    table: m.table,
    chunk: m.chunk as number,
    chunkRows: m.chunkRows as number,
    targets: targets as string[] | null,
    after: after as RowKey | null,
    keys: keys as RowKey[] | null,
  };
}

function isKey(value: unknown): value is RowKey {
  return Array.isArray(value) && value.length > 0 && value.length <= 32 && value.every((v) => typeof v === 'string' && v.length <= 4096);
}

/** `schema.table` split at the first dot (the configuration's table names never hold one in the schema). */
export function splitTable(table: string): { schema: string; table: string } {
  const dot = table.indexOf('.');
  return { schema: table.slice(0, dot), table: table.slice(dot + 1) };
}
