/**
 * The life of capture and apply: run a session (connect, work) until it fails, wait with exponential
 * backoff, run another, until `stop`. A session that got going resets the backoff. Only a fatal error
 * (configuration, permissions) leaves the loop: retrying cannot cure it.
 */
import { describeError, SitesyncError } from './errors.ts';
import type { Logger } from './observability/logger.ts';

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 30_000;

export class SessionLoop {
  private stopping = false;
  private wake: (() => void) | null = null;
  private endSession: (() => void) | null = null;

  constructor(private readonly logger: Logger) {}

  get stopped(): boolean {
    return this.stopping;
  }

  /** `session` calls `healthy` once it works, and `onStop` with how to end it early. */
  async run(session: (healthy: () => void, onStop: (end: () => void) => void) => Promise<void>): Promise<void> {
    let attempt = 0;
    while (!this.stopping) {
      try {
        await session(
          () => (attempt = 0),
          (end) => {
            this.endSession = end;
            if (this.stopping) end();
          },
        );
      } catch (error) {
        if (error instanceof SitesyncError && error.consequence === 'fatal') throw error;
        if (this.stopping) break;
        const delay = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** Math.min(attempt++, 6));
        this.logger.warn({ code: (error as SitesyncError).code, retryInMs: delay }, describeError(error));
        await new Promise<void>((resolve) => {
          this.wake = resolve;
          setTimeout(resolve, delay).unref();
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
