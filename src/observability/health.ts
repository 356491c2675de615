/**
 * Whether a site's process is ready, derived from its pipeline's events: /readyz on the metrics port.
 *
 * Ready means capture streams (or is off: a site that only receives), apply consumes the site's queue, and
 * no source is halted. A pipeline that starts again (configuration reload) starts over as not ready until
 * its parts report again; a halted source is ready again once the runner reports it resumed; a part whose
 * session failed (connection lost) is not ready while it retries, and is again once it streams or consumes.
 */
import { redactSecrets } from './logger.ts';
import type { PipelineEvents, PipelineScope } from './pipeline-events.ts';

export type CaptureState = 'starting' | 'streaming' | 'off' | 'retrying';
export type ApplyState = 'starting' | 'consuming' | 'retrying';

export interface Readiness {
  readonly ready: boolean;
  readonly site: string;
  readonly capture: CaptureState;
  readonly apply: ApplyState;
  /** Why capture or apply is retrying (their last error), when they are. */
  readonly interrupted: Readonly<Record<string, string>>;
  /** Halted sources, each with the runner's reason. */
  readonly halted: Readonly<Record<string, string>>;
}

export class PipelineHealth {
  private capture: CaptureState = 'starting';
  private apply: ApplyState = 'starting';
  private readonly halted = new Map<string, string>();
  private readonly interrupted = new Map<'capture' | 'apply', string>();
  private readonly site: string;
  private readonly unsubscribe: () => void;

  /** `scope`: the pipeline already created, whose `pipeline:starting` may have gone by. */
  constructor(events: PipelineEvents, scope: PipelineScope) {
    this.site = scope.site;
    this.restart(scope);
    const mine = (e: { site: string }): boolean => e.site === this.site;
    const onStarting = (e: PipelineScope): void => void (mine(e) && this.restart(e));
    const onStreaming = (e: { site: string }): void => {
      if (!mine(e)) return;
      this.capture = 'streaming';
      this.interrupted.delete('capture');
    };
    const onConsuming = (e: { site: string }): void => {
      if (!mine(e)) return;
      this.apply = 'consuming';
      this.interrupted.delete('apply');
    };
    const onCaptureInterrupted = (e: { site: string; reason: string }): void => {
      if (!mine(e)) return;
      this.capture = 'retrying';
      this.interrupted.set('capture', redactSecrets(e.reason));
    };
    const onApplyInterrupted = (e: { site: string; reason: string }): void => {
      if (!mine(e)) return;
      this.apply = 'retrying';
      this.interrupted.set('apply', redactSecrets(e.reason));
    };
    const onHalted = (e: { site: string; source: string; reason: string }): void => void (mine(e) && this.halted.set(e.source, redactSecrets(e.reason)));
    const onResumed = (e: { site: string; source: string }): void => void (mine(e) && this.halted.delete(e.source));
    events.on('pipeline:starting', onStarting);
    events.on('capture:streaming', onStreaming);
    events.on('apply:consuming', onConsuming);
    events.on('apply:halted', onHalted);
    events.on('apply:resumed', onResumed);
    events.on('capture:interrupted', onCaptureInterrupted);
    events.on('apply:interrupted', onApplyInterrupted);
    this.unsubscribe = () => {
      events.off('pipeline:starting', onStarting);
      events.off('capture:streaming', onStreaming);
      events.off('apply:consuming', onConsuming);
      events.off('apply:halted', onHalted);
      events.off('apply:resumed', onResumed);
      events.off('capture:interrupted', onCaptureInterrupted);
      events.off('apply:interrupted', onApplyInterrupted);
    };
  }

  readiness(): Readiness {
    const halted = Object.fromEntries([...this.halted].sort(([a], [b]) => a.localeCompare(b)));
    const ready = (this.capture === 'streaming' || this.capture === 'off') && this.apply === 'consuming' && this.halted.size === 0;
    return { ready, site: this.site, capture: this.capture, apply: this.apply, interrupted: Object.fromEntries(this.interrupted), halted };
  }

  /** Stops listening. */
  close(): void {
    this.unsubscribe();
  }

  private restart(scope: PipelineScope): void {
    this.capture = scope.capture ? 'starting' : 'off';
    this.apply = 'starting';
    this.halted.clear();
    this.interrupted.clear();
  }
}
