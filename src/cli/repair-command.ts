/**
 * `sitesync verify --repair`: after verify found differing keys, the reference site sends its rows for those
 * keys to each site that differs, through its own stream — a snapshot of those keys addressed to that site
 * (snapshot-chunks.ts) — so the rows are applied by the normal apply path: exactly once, in the reference's
 * commit order, with the changes made since applied on top. Keys the reference does not hold are sent as
 * deletes. Then verify runs again until the sites agree (or the time is up).
 *
 * Needs the reference's `sitesync run` to be running (it reads the chunks) and the differing sites' too
 * (they apply them).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../config/config-schema.ts';
import type { ConnectorRegistry } from '../connector.ts';
import { SitesyncError } from '../errors.ts';
import { MAX_MARKER_KEYS } from '../capture/snapshot-marker.ts';
import type { RowKey } from '../capture/table-reader.ts';
import type { RowDifference, TableComparison } from '../verify/compare-tables.ts';
import { allIdentical, type VerifyReport } from '../verify/verify-report.ts';
import { startSnapshot, waitForSnapshot, withSnapshotControl } from './snapshot-command.ts';
import { runVerify, type VerifyPlan } from './verify-command.ts';

export interface RepairOutcome {
  readonly first: VerifyReport;
  /** The last verify after the repair; null when nothing needed repair. */
  readonly last: VerifyReport | null;
}

/** Verifies, repairs what differs, verifies again until identical or `timeoutSeconds` have passed. */
export async function verifyAndRepair(
  config: Config,
  connectors: ConnectorRegistry,
  plan: VerifyPlan,
  print: (line: string) => void,
  onTable: (result: TableComparison) => void,
  timeoutSeconds: number,
): Promise<RepairOutcome> {
  const reference = plan.sites[0]!;
  // Every difference (listed or not), by table and site: compareTable tells them as it finds them, and the
  // table's result after them.
  let pending: RowDifference[] = [];
  const found = new Map<string, Map<string, RowKey[]>>();
  const first = await runVerify(
    config,
    connectors,
    plan,
    (result) => {
      const bySite = new Map<string, RowKey[]>();
      if (!result.error) for (const d of pending) (bySite.get(d.site) ?? bySite.set(d.site, []).get(d.site)!).push(d.key);
      if (bySite.size > 0) found.set(result.table, bySite);
      pending = [];
      onTable(result);
    },
    { onDifference: (d) => pending.push(d) },
  );
  if (found.size === 0) return { first, last: null };

  const started: string[] = [];
  for (const [table, bySite] of found) {
    for (const [site, keys] of bySite) {
      for (let i = 0; i < keys.length; i += MAX_MARKER_KEYS) {
        const batch = keys.slice(i, i + MAX_MARKER_KEYS);
        const { id } = await startSnapshot(config, connectors, { site: reference, table, targets: [site], keys: batch });
        started.push(id);
        print(`repair: ${reference} sends its rows of ${batch.length} key(s) of ${table} to ${site} (snapshot ${id})`);
      }
    }
  }
  const deadline = Date.now() + timeoutSeconds * 1000;
  await withSnapshotControl(config, connectors, reference, async (control) => {
    for (const id of started) {
      const done = await Promise.race([waitForSnapshot(control, id, () => undefined), sleep(Math.max(0, deadline - Date.now())).then(() => null)]);
      if (done === null) {
        throw new SitesyncError('SITESYNC_ERR_CONFIG', `repair: snapshot ${id} was not read at ${reference} within ${timeoutSeconds} s; is "sitesync run --site ${reference}" running? It goes on when it runs (sitesync snapshot --site ${reference} --list)`);
      }
    }
  });
  // The rows are applied as each site's queue reaches them: verify again until the sites agree.
  const tables = plan.tables.filter(({ schema, table }) => found.has(`${schema}.${table}`));
  let last: VerifyReport;
  for (;;) {
    last = await runVerify(config, connectors, { ...plan, tables });
    if (allIdentical(last) || Date.now() > deadline) break;
    await sleep(1000);
  }
  return { first, last };
}
