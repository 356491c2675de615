/**
 * Which change tables capture reads for one interval of commit LSNs, and which LSNs each covers. Pure: the
 * instance list (CdcReader.captureInstances, fetched each poll) and what capture knew at its checkpoint go in,
 * a plan comes out, or an error when the cleanup job already deleted changes capture had not read.
 *
 * An interval is (fromLsn, toLsn]: fromLsn the position everything up to which was read, toLsn the commit LSN
 * of the last transaction the capture job has written (read BEFORE the instance list, so that an instance
 * created after the list was taken starts above the log's end then, hence above toLsn: it belongs to a later
 * interval).
 *
 * Two instances of one table (a schema change: the new one captures the added column). Both capture every
 * change after their start_lsn, so the rows from the newer one's start on are in both. Each LSN is read from
 * exactly one: the newer covers [newer.startLsn, toLsn], the older (fromLsn, newer.startLsn). So nothing is
 * sent twice, and an instance created inside the interval is read from its start, not from the next interval
 * (Debezium lost or doubled those changes: DBZ-3992, DBZ-4273). "Newer" orders by startLsn, then createDate,
 * then name: after the cleanup job raised both start_lsn to one low-water mark, the one created later holds
 * everything from there. An instance always holds whole transactions from its start_lsn on, because
 * sp_cdc_enable_table takes a schema-modification lock on the table and so waits for the transactions that
 * wrote to it.
 *
 * What is read: the instances of the captured tables (`tables`, `schema.table`, compared case-insensitively as
 * SQL Server's default collations compare names; null = every table outside the sitesync schema and cdc), and
 * always those of sitesync.apply_progress (a change to it marks a relayed transaction) and of
 * sitesync.snapshot_markers (an insert into it is a snapshot marker: change-stream.ts hands it on as the marker
 * message, never as a row; sqlserver-snapshot-control.ts writes it). Other sitesync tables are never read.
 *
 * The cleanup guard. The cleanup job deletes change rows below a low-water mark and raises every instance's
 * start_lsn to it. Capture keeps, with its checkpoint, the instances it knew there with their start_lsn
 * (`KnownInstance`). An instance known at the checkpoint whose start_lsn is now above max(checkpoint, the
 * start_lsn known then) may have lost rows capture never read: that stops capture (SITESYNC_ERR_CONFIG) naming
 * the site, the instance, the checkpoint, its min LSN and the fix (raise the retention; re-seed this site's
 * data at the other sites), since continuing would silently diverge the sites. This is conservative: when the
 * low-water mark falls exactly on the first transaction not yet read, nothing was lost, but no reader can tell
 * that from rows that are gone; a capture that far behind is one transaction from loss anyway.
 *
 * Edge rules, written down:
 * - An instance known at the checkpoint and gone now (disabled): what it held above the checkpoint is gone.
 *   When another instance of its table holds everything after the checkpoint (its start_lsn <= checkpoint),
 *   nothing is lost and it is only noted; otherwise a warning names the instance and the LSNs whose changes are
 *   lost (up to the other instance's start, or all), and capture goes on (an operator disabled it on purpose).
 * - An instance re-created under the same name (a different createDate) is the old one gone plus a new one.
 * - A new instance (not known at the checkpoint) is read from max(fromLsn, what the split gives). Its start_lsn
 *   cannot lie at or below the checkpoint because the cleanup moved it: cleanup only raises start_lsn, and an
 *   instance created after the checkpoint was read started above it. So a new instance at or below the
 *   checkpoint existed when the checkpoint was read but was not recorded (the first start, an old progress
 *   row): it is read from the checkpoint like the others; whether the cleanup took rows from it cannot be told.
 * - A new instance above the checkpoint whose start_lsn was already raised by the cleanup: its rows before that
 *   are gone from every instance of its table, and an older known instance of the table trips the guard; a table
 *   newly enabled and cleaned before capture first saw it cannot be told from one enabled there.
 * - sitesync.apply_progress without any instance: relayed writes could no longer be told from local ones and
 *   would travel back out; capture stops naming the fix (setup creates it).
 */
import { BOOKKEEPING_SCHEMA } from '../../src/config/names.ts';
import { SitesyncError } from '../../src/errors.ts';
import type { CaptureInstance, Lsn } from './cdc-reader.ts';
import { compareLsn, describeLsn, ZERO_LSN } from './sqlserver-positions.ts';

/** sitesync's table the sink writes first in every transaction it applies. */
export const APPLY_PROGRESS_TABLE = 'apply_progress';

/** sitesync's table each snapshot marker is inserted into (sqlserver-snapshot-control.ts): an insert there is the marker. */
export const SNAPSHOT_MARKERS_TABLE = 'snapshot_markers';

/** An instance as capture recorded it with a checkpoint (sitesync.capture_progress.instances). */
export interface KnownInstance {
  readonly name: string;
  readonly startLsn: Lsn;
  /** Absent in rows that did not record it. */
  readonly createDate?: string;
  /** `schema.table`; absent in rows that did not record it. */
  readonly table?: string;
}

/** One change table to read for an interval: rows with `fromLsn < __$start_lsn <= toLsn`. */
export interface InstanceRead {
  readonly instance: CaptureInstance;
  readonly fromLsn: Lsn;
  readonly toLsn: Lsn;
  /** sitesync.apply_progress: its rows mark relayed transactions. */
  readonly progress: boolean;
}

export interface IntervalPlan {
  readonly reads: readonly InstanceRead[];
  /** The instances to record with a checkpoint inside or at the end of this interval. */
  readonly known: readonly KnownInstance[];
  /** Lines to log: known instances gone (warn) or gone harmlessly (info). */
  readonly warnings: readonly string[];
  readonly notes: readonly string[];
}

export interface PlanInput {
  readonly site: string;
  readonly instances: readonly CaptureInstance[];
  /** The instances known at `fromLsn` (the checkpoint or the position read to). */
  readonly known: readonly KnownInstance[];
  readonly fromLsn: Lsn;
  readonly toLsn: Lsn;
  readonly tables: readonly string[] | null;
}

export function tableName(instance: { readonly schema: string; readonly table: string }): string {
  return `${instance.schema}.${instance.table}`;
}

export function isProgressTable(instance: { readonly schema: string; readonly table: string }): boolean {
  return instance.schema.toLowerCase() === BOOKKEEPING_SCHEMA && instance.table.toLowerCase() === APPLY_PROGRESS_TABLE;
}

/** sitesync.snapshot_markers: its inserts are snapshot markers (change-stream.ts). */
export function isMarkersTable(instance: { readonly schema: string; readonly table: string }): boolean {
  return instance.schema.toLowerCase() === BOOKKEEPING_SCHEMA && instance.table.toLowerCase() === SNAPSHOT_MARKERS_TABLE;
}

/** Whether capture reads this instance's table (apply_progress and snapshot_markers included). */
export function isRead(instance: CaptureInstance, tables: readonly string[] | null): boolean {
  if (isProgressTable(instance) || isMarkersTable(instance)) return true;
  const schema = instance.schema.toLowerCase();
  if (schema === BOOKKEEPING_SCHEMA || schema === 'cdc' || schema === 'sys') return false;
  if (tables === null) return true;
  const name = tableName(instance).toLowerCase();
  return tables.some((t) => t.toLowerCase() === name);
}

/** A point in time from createDate text: with an offset or Z as given, without one as UTC wall time. */
function instantOf(text: string): number {
  const withZone = /(Z|[+-]\d\d:?\d\d)$/.test(text.trim());
  const t = Date.parse(withZone ? text : `${text.trim().replace(' ', 'T')}Z`);
  return Number.isNaN(t) ? 0 : t;
}

/** Older first: startLsn, then createDate, then name. */
export function compareAge(a: CaptureInstance, b: CaptureInstance): number {
  const byLsn = compareLsn(a.startLsn, b.startLsn);
  if (byLsn !== 0) return byLsn;
  const byDate = instantOf(a.createDate) - instantOf(b.createDate);
  if (byDate !== 0) return byDate;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** The LSN just below `lsn` (20 hex digits); ZERO_LSN stays. */
export function lsnBefore(lsn: Lsn): Lsn {
  const value = BigInt(`0x${lsn}`);
  if (value === 0n) return ZERO_LSN;
  return (value - 1n).toString(16).toUpperCase().padStart(20, '0');
}

function maxLsn(a: Lsn, b: Lsn): Lsn {
  return compareLsn(a, b) >= 0 ? a : b;
}

function minLsn(a: Lsn, b: Lsn): Lsn {
  return compareLsn(a, b) <= 0 ? a : b;
}

function sameInstance(known: KnownInstance, instance: CaptureInstance): boolean {
  if (known.name !== instance.name) return false;
  return known.createDate === undefined || known.createDate === instance.createDate;
}

/** What capture records of the instances it reads. */
export function knownInstances(instances: readonly CaptureInstance[]): KnownInstance[] {
  return instances.map((i) => ({ name: i.name, startLsn: i.startLsn, createDate: i.createDate, table: tableName(i) }));
}

export function parseKnown(json: string): KnownInstance[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    return [];
  }
  if (!Array.isArray(parsed)) return [];
  return parsed.flatMap((entry): KnownInstance[] => {
    if (typeof entry !== 'object' || entry === null) return [];
    const e = entry as Record<string, unknown>;
    if (typeof e.name !== 'string' || typeof e.startLsn !== 'string') return [];
    return [{ name: e.name, startLsn: e.startLsn, ...(typeof e.createDate === 'string' ? { createDate: e.createDate } : {}), ...(typeof e.table === 'string' ? { table: e.table } : {}) }];
  });
}

export function knownJson(known: readonly KnownInstance[]): string {
  return JSON.stringify(known.map((k) => ({ name: k.name, startLsn: k.startLsn, createDate: k.createDate, table: k.table })));
}

/** The error of the cleanup guard: rows capture had not read were deleted (user tables named first). */
export function cleanupPassedError(site: string, instances: readonly CaptureInstance[], checkpoint: Lsn): SitesyncError {
  const named = [...instances].sort((a, b) => Number(isProgressTable(a)) - Number(isProgressTable(b)));
  const which = named.map((i) => `${i.name} (${tableName(i)}, min LSN now ${describeLsn(i.startLsn)})`).join(', ');
  return new SitesyncError(
    'SITESYNC_ERR_CONFIG',
    `SQL Server of site ${site}: the CDC cleanup job deleted changes capture had not read, of capture instance${named.length > 1 ? 's' : ''} ${which}: capture's checkpoint is ${describeLsn(checkpoint)}; those changes never reached the other sites. Fix: raise the retention above the longest capture outage with EXEC sys.sp_cdc_change_job @job_type = N'cleanup', @retention = <minutes> (e.g. 4320, three days), then re-seed this site's data at the other sites and run DELETE FROM ${BOOKKEEPING_SCHEMA}.capture_progress WHERE site = '${site}' so that capture starts again at the current end`,
  );
}

/**
 * The plan of one interval; throws the cleanup guard's error when rows capture had not read are gone, or a
 * configuration error when sitesync.apply_progress is no longer captured.
 */
export function planInterval(input: PlanInput): IntervalPlan {
  const { site, instances, known, fromLsn, toLsn, tables } = input;
  const warnings: string[] = [];
  const notes: string[] = [];

  // The guard, before anything is read.
  const cleaned: CaptureInstance[] = [];
  for (const k of known) {
    const current = instances.find((i) => sameInstance(k, i));
    if (current && compareLsn(current.startLsn, maxLsn(fromLsn, k.startLsn)) > 0) cleaned.push(current);
  }
  if (cleaned.length > 0) throw cleanupPassedError(site, cleaned, fromLsn);

  const read = instances.filter((i) => isRead(i, tables));
  if (!read.some(isProgressTable)) {
    throw new SitesyncError(
      'SITESYNC_ERR_CONFIG',
      `SQL Server of site ${site}: ${BOOKKEEPING_SCHEMA}.${APPLY_PROGRESS_TABLE} has no capture instance any more, so transactions applied here from other sites can no longer be told from local ones and would be sent back out; fix: EXEC sys.sp_cdc_enable_table @source_schema = N'${BOOKKEEPING_SCHEMA}', @source_name = N'${APPLY_PROGRESS_TABLE}', @role_name = NULL, @capture_instance = N'${BOOKKEEPING_SCHEMA}_${APPLY_PROGRESS_TABLE}'; (sitesync setup does it)`,
    );
  }

  // Known instances gone.
  for (const k of known) {
    if (instances.some((i) => sameInstance(k, i))) continue;
    const others = instances.filter((i) => k.table !== undefined && tableName(i) === k.table);
    const covering = others.filter((i) => compareLsn(i.startLsn, fromLsn) <= 0);
    if (covering.length > 0) {
      notes.push(`capture instance ${k.name} of site ${site} was disabled; ${covering[0]!.name} holds its table's changes after ${describeLsn(fromLsn)}: nothing lost`);
      continue;
    }
    const next = others.sort(compareAge)[0];
    warnings.push(
      next
        ? `capture instance ${k.name} of site ${site} was disabled before capture read its changes after ${describeLsn(fromLsn)}: the changes of ${k.table} up to ${describeLsn(next.startLsn)} (where ${next.name} begins) are gone and reach no other site`
        : `capture instance ${k.name} of site ${site}${k.table ? ` (${k.table})` : ''} was disabled before capture read its changes after ${describeLsn(fromLsn)}: they are gone and reach no other site`,
    );
  }

  // The split between the instances of one table.
  const byTable = new Map<string, CaptureInstance[]>();
  for (const i of read) {
    const key = tableName(i).toLowerCase();
    const list = byTable.get(key);
    if (list) list.push(i);
    else byTable.set(key, [i]);
  }
  const reads: InstanceRead[] = [];
  for (const list of byTable.values()) {
    list.sort(compareAge);
    for (let n = 0; n < list.length; n++) {
      const instance = list[n]!;
      const newer = list[n + 1];
      // From: the interval's start, or (rows below its start_lsn do not exist) just below its start.
      const from = maxLsn(fromLsn, lsnBefore(instance.startLsn));
      const to = newer ? minLsn(toLsn, lsnBefore(newer.startLsn)) : toLsn;
      if (compareLsn(from, to) >= 0) continue;
      reads.push({ instance, fromLsn: from, toLsn: to, progress: isProgressTable(instance) });
    }
  }
  return { reads, known: knownInstances(read), warnings, notes };
}
