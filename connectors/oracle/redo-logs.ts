/**
 * Which redo logs a mining window needs, and how far a window may safely reach. Pure: the reader's thread and
 * log lists go in, a window or a one-line error comes out.
 *
 * How far: a commit is only in V$LOGMNR_CONTENTS once its thread has written it to its online log. Each open
 * thread has written everything up to its own flushed SCN; a thread that is behind (a busy RAC instance) may
 * still write commits with SCNs below what another thread has already written. Reading past the lowest flushed
 * SCN over the open threads could pass such a commit for good (Debezium's DBZ-2552), so the window ends there,
 * never above CURRENT_SCN, and never more than `maxWindowScns` above its start (a bounded session). A closed
 * thread writes nothing more: it does not hold the window back, but its logs are still read.
 *
 * Which logs: LogMiner returns rows only from the logs added to the session. A window (from, to] needs, of every
 * thread, each log holding an SCN in it: FIRST_CHANGE# <= to and NEXT_CHANGE# > from + 1 (a log holds
 * [FIRST_CHANGE#, NEXT_CHANGE#)). Those must be contiguous by sequence, the lowest must begin at or below
 * from + 1 (or be the thread's first log), and the highest must be the current one or end above `to`. A
 * sequence missing anywhere (an archived log deleted by RMAN before capture read it, a log switch not yet
 * archived and no longer online) would silently lose every change in it (Debezium's DBZ-3516, DBZ-6942):
 * that stops capture with one line naming the thread, the sequence, the SCN and the fix.
 */
import { SitesyncError } from '../../src/errors.ts';
import type { RedoLog, RedoThread, Scn } from './logminer-reader.ts';

export interface WindowBoundInput {
  readonly threads: readonly RedoThread[];
  readonly currentScn: Scn;
  /** Everything at or below it was read. */
  readonly from: Scn;
  /** At most this many SCNs per window (undefined: no limit). */
  readonly maxWindowScns?: number;
}

/** The upper bound of the next window: min over open threads' flushed SCN, capped by CURRENT_SCN and the size; never below `from`. */
export function windowBound({ threads, currentScn, from, maxWindowScns }: WindowBoundInput): Scn {
  let to = currentScn;
  for (const t of threads) if (t.open && t.flushedScn < to) to = t.flushedScn;
  if (maxWindowScns !== undefined && maxWindowScns > 0) {
    const cap = from + BigInt(Math.floor(maxWindowScns));
    if (cap < to) to = cap;
  }
  return to < from ? from : to;
}

export interface ChooseLogsInput {
  readonly site: string;
  readonly logs: readonly RedoLog[];
  readonly threads: readonly RedoThread[];
  readonly from: Scn;
  readonly to: Scn;
}

function missing(site: string, thread: number, sequence: number, scn: Scn, from: Scn, why: string): SitesyncError {
  return new SitesyncError(
    'SITESYNC_ERR_CONFIG',
    `redo log sequence ${sequence} of thread ${thread} (SCN ${scn}) is missing for site ${site}: capture must read SCNs ${from + 1n} on and ${why}; restore it (RMAN: RESTORE ARCHIVELOG SEQUENCE ${sequence} THREAD ${thread};) and start again, or re-seed this site from a copy and start capture afresh`,
  );
}

/**
 * The logs that hold the SCNs (from, to], one per thread and sequence (an archived copy preferred to the online
 * one), ordered by thread and sequence; a SitesyncError when one is missing.
 */
export function chooseLogs({ site, logs, threads, from, to }: ChooseLogsInput): RedoLog[] {
  if (to <= from) return [];
  const byThread = new Map<number, Map<number, RedoLog>>();
  for (const log of logs) {
    let seqs = byThread.get(log.thread);
    if (!seqs) byThread.set(log.thread, (seqs = new Map()));
    const known = seqs.get(log.sequence);
    if (!known || (!known.archived && log.archived)) seqs.set(log.sequence, log);
  }
  const chosen: RedoLog[] = [];
  const threadNumbers = new Set<number>([...threads.map((t) => t.thread), ...byThread.keys()]);
  for (const thread of [...threadNumbers].sort((a, b) => a - b)) {
    const all = [...(byThread.get(thread)?.values() ?? [])].sort((a, b) => a.sequence - b.sequence);
    const needed = all.filter((l) => l.firstScn <= to && (l.nextScn === null || l.nextScn > from + 1n));
    const state = threads.find((t) => t.thread === thread);
    if (needed.length === 0) {
      // A thread with no log in the window: fine when its logs all end below it (closed, or idle with none
      // listed above `from`); an open thread always has a current log.
      if (state?.open && !all.some((l) => l.nextScn === null)) {
        const last = all[all.length - 1];
        throw missing(site, thread, last ? last.sequence + 1 : 0, from + 1n, from, 'no online or archived log of this open thread holds them');
      }
      continue;
    }
    const first = needed[0]!;
    if (first.firstScn > from + 1n && first.sequence > 1) {
      throw missing(site, thread, first.sequence - 1, from + 1n, from, `the log before sequence ${first.sequence} (which begins at SCN ${first.firstScn}) is not listed`);
    }
    for (let i = 1; i < needed.length; i++) {
      const prev = needed[i - 1]!;
      if (needed[i]!.sequence !== prev.sequence + 1) {
        throw missing(site, thread, prev.sequence + 1, prev.nextScn ?? from + 1n, from, `sequences ${prev.sequence} and ${needed[i]!.sequence} are listed but not the one between`);
      }
    }
    const last = needed[needed.length - 1]!;
    if (last.nextScn !== null && last.nextScn <= to) {
      throw missing(site, thread, last.sequence + 1, last.nextScn, from, `up to ${to}, but sequence ${last.sequence} ends at ${last.nextScn - 1n} and the next one is not listed`);
    }
    chosen.push(...needed);
  }
  return chosen;
}

/**
 * A configured table name: `OWNER.TABLE`; a quoted part (`"hr"."Emp"`) is that exact name, an unquoted one
 * matches itself or its upper-case form (Oracle's name for an unquoted identifier).
 */
export interface TableName {
  readonly owner: string;
  readonly table: string;
  readonly ownerQuoted: boolean;
  readonly tableQuoted: boolean;
}

export function splitTableName(name: string): TableName {
  const m = /^(?:"((?:[^"]|"")+)"|([^."]+))\.(?:"((?:[^"]|"")+)"|([^."]+))$/.exec(name.trim());
  if (!m) throw new SitesyncError('SITESYNC_ERR_CONFIG', `table ${JSON.stringify(name)} is not OWNER.TABLE`);
  const owner = m[1] !== undefined ? m[1].replace(/""/g, '"') : m[2]!;
  const table = m[3] !== undefined ? m[3].replace(/""/g, '"') : m[4]!;
  return { owner, table, ownerQuoted: m[1] !== undefined, tableQuoted: m[3] !== undefined };
}

function namesOf(part: string, quoted: boolean): string[] {
  return quoted || part === part.toUpperCase() ? [part] : [part, part.toUpperCase()];
}

/** The schemas to mine: those of the captured tables and the bookkeeping owner's (relayed writes); null: every one. */
export function minedOwners(tables: readonly string[] | null, bookkeepingOwner: string): string[] | null {
  if (tables === null) return null;
  const owners = new Set<string>([bookkeepingOwner]);
  for (const name of tables) {
    const t = splitTableName(name);
    for (const o of namesOf(t.owner, t.ownerQuoted)) owners.add(o);
  }
  return [...owners].sort();
}

/** Whether a table is captured: in `tables` (null: any), never one of the bookkeeping owner's. */
export function capturedTables(tables: readonly string[] | null, bookkeepingOwner: string): (owner: string, table: string) => boolean {
  const exclude = (owner: string): boolean => owner === bookkeepingOwner;
  if (tables === null) return (owner) => !exclude(owner);
  const set = new Set<string>();
  for (const name of tables) {
    const t = splitTableName(name);
    for (const o of namesOf(t.owner, t.ownerQuoted)) for (const n of namesOf(t.table, t.tableQuoted)) set.add(`${o}\u0000${n}`);
  }
  return (owner, table) => !exclude(owner) && set.has(`${owner}\u0000${table}`);
}
