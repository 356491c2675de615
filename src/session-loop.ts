/**
 * The life of capture and apply: run a session (connect, work) until it fails, wait with exponential
 * backoff, run another, until `stop`. A session that worked for a while starts the backoff over.
 *
 * A fatal error (configuration, permissions, wal_level) at start leaves the loop: the process exits with
 * the one line that says what to fix. Once a session has worked, the same errors are retried instead,
 * logged at error level: a broker still booting reports a missing vhost, a restarted server may have
 * lost a setting for a while, and a long-running site should recover by itself when it is fixed.
 */
import { describeError, SitesyncError } from './errors.ts';
import type { Logger } from './observability/logger.ts';

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 30_000;
/** A session must work this long before a failure starts the backoff over (no tight loop of retries). */
const HEALTHY_FOR_MS = 10_000;

export class SessionLoop {
  private stopping = false;
  private wake: (() => void) | null = null;
  private endSession: (() => void) | null = null;

  /** `onInterrupted` hears of every session that ended in an error and will be retried (for readiness). */
  constructor(
    private readonly logger: Logger,
    private readonly onInterrupted: (reason: string) => void = () => undefined,
  ) {}

  get stopped(): boolean {
    return this.stopping;
  }

  /** `session` calls `healthy` once it works, and `onStop` with how to end it early. */
  async run(session: (healthy: () => void, onStop: (end: () => void) => void) => Promise<void>): Promise<void> {
    let attempt = 0;
    let worked = false;
    while (!this.stopping) {
      let healthySince: number | null = null;
      try {
        await session(
          () => {
            healthySince = Date.now();
            worked = true;
          },
          (end) => {
            this.endSession = end;
            if (this.stopping) end();
          },
        );
      } catch (error) {
        const fatal = error instanceof SitesyncError && error.consequence === 'fatal';
        if (fatal && !worked) throw error;
        if (this.stopping) break;
        if (healthySince !== null && Date.now() - healthySince >= HEALTHY_FOR_MS) attempt = 0;
        const delay = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** Math.min(attempt++, 6));
        this.logger[fatal ? 'error' : 'warn']({ code: (error as SitesyncError).code, retryInMs: delay }, describeError(error));
        this.onInterrupted(describeError(error));
        // Not unref'd: while both halves wait to retry, this timer is what keeps the process alive.
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delay);
          this.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      } finally {
        this.endSession = null;
      }
    }
  }

  /** Ends the current session (it finishes what is in flight) and the loop. */
  stop(): void {
    this.stopping = true;
    this.wake?.();
    this.endSession?.();
  }
}
