/**
 * (d) Fan-out: the backlog drain of (b) with three sites — A writes, B and C both apply it through sitesync
 * (three `sitesync run` processes) — against native logical replication with two subscribers (two slots,
 * two subscriptions, enabled together). Timed until both targets hold every row.
 *
 * Ratio: native seconds ÷ sitesync seconds; target ≥ 0.5, as for (b).
 */
import type { BenchContext } from './lib/context.ts';
import { measureBacklogDrain, type DrainResult } from './drain.ts';

export function measureFanout(ctx: BenchContext, targetsCapture: boolean): Promise<DrainResult> {
  return measureBacklogDrain(ctx, { label: targetsCapture ? 'fanout2' : 'fanout', targets: 2, targetsCapture });
}
