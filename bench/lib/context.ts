/**
 * What every measurement receives (the private server, the sizes for this mode, a cleanup scope, a log),
 * and the shape of what it gives back: an outcome per side, sitesync or reference, either a value or the
 * reason it has none — a measurement never throws because sitesync failed, it reports it.
 */
import type { BacklogSpec } from './db.ts';
import type { BenchServer } from './server.ts';
import type { Teardown } from './teardown.ts';

export type Mode = 'quick' | 'full';

export interface BenchParams {
  /** (a), (b), (d): the backlog written at the source. */
  readonly backlog: BacklogSpec;
  /** (c): a fixed rate of small transactions. */
  readonly steady: { readonly transactionsPerSecond: number; readonly rowsPerTransaction: number; readonly seconds: number; readonly clients: number };
  /** (e): bytes of row data in one transaction. */
  readonly largeTransactionBytes: number;
  /** A sitesync phase may take this many times its reference (and at least `minLimitSeconds`) before it is called failed. */
  readonly limitFactor: number;
  readonly minLimitSeconds: number;
  readonly maxLimitSeconds: number;
}

export const PARAMS: Readonly<Record<Mode, BenchParams>> = {
  quick: {
    backlog: { rows: 100_000, rowsPerTransaction: 100 },
    steady: { transactionsPerSecond: 500, rowsPerTransaction: 5, seconds: 15, clients: 2 },
    largeTransactionBytes: 200 * 1024 * 1024,
    limitFactor: 30,
    minLimitSeconds: 60,
    maxLimitSeconds: 180,
  },
  full: {
    backlog: { rows: 1_000_000, rowsPerTransaction: 100 },
    steady: { transactionsPerSecond: 2000, rowsPerTransaction: 5, seconds: 60, clients: 4 },
    largeTransactionBytes: 2 * 1024 * 1024 * 1024,
    limitFactor: 30,
    minLimitSeconds: 120,
    maxLimitSeconds: 1800,
  },
};

export interface BenchContext {
  readonly mode: Mode;
  readonly params: BenchParams;
  readonly server: BenchServer;
  /** The run's cleanup; a measurement opens its own scope under it. */
  readonly teardown: Teardown;
  readonly log: (line: string) => void;
  /** When set, sitesync processes write CPU profiles here. */
  readonly cpuProfileDir: string | null;
  /** How many times each drain (b, b2, d, d2) is measured, each run against its own reference. */
  readonly repeat: number;
}

/** How long a sitesync phase may take, given its reference's time. */
export function limitSeconds(params: BenchParams, referenceSeconds: number | null): number {
  const scaled = referenceSeconds === null ? params.maxLimitSeconds : referenceSeconds * params.limitFactor;
  return Math.min(params.maxLimitSeconds, Math.max(params.minLimitSeconds, scaled));
}

export type Outcome<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: string };

export async function attempt<T>(work: () => Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await work() };
  } catch (error) {
    return { ok: false, error: (error as Error)?.message ?? String(error) };
  }
}

export function valueOf<T>(outcome: Outcome<T>): T | null {
  return outcome.ok ? outcome.value : null;
}
