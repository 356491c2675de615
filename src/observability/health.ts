/**
 * Whether a site's process is ready, derived from its pipeline's events: /readyz on the metrics port.
 *
 * Ready means capture streams (or is off: a site that only receives), apply consumes the site's queue, and
 * no source is halted. A pipeline that starts again (configuration reload) starts over as not ready until
 * its parts report again; a halted source is ready again once the runner reports it resumed.
 */
import { redactSecrets } from './logger.ts';
import type { PipelineEvents, PipelineScope } from './pipeline-events.ts';

export type CaptureState = 'starting' | 'streaming' | 'off';
export type ApplyState = 'starting' | 'consuming';

export interface Readiness {
  readonly ready: boolean;
  readonly site: string;
  readonly capture: CaptureState;
  readonly apply: ApplyState;
  /** Halted sources, each with the runner's reason. */
  readonly halted: Readonly<Record<string, string>>;
}

export class PipelineHealth {
  private capture: CaptureState = 'starting';
  private apply: ApplyState = 'starting';
  private readonly halted = new Map<string, string>();
  private readonly site: string;
  private readonly unsubscribe: () => void;

  /** `scope`: the pipeline already created, whose `pipeline:starting` may have gone by. */
  constructor(events: PipelineEvents, scope: PipelineScope) {
    this.site = scope.site;
    this.restart(scope);
    const mine = (e: { site: string }): boolean => e.site === this.site;
    const onStarting = (e: PipelineScope): void => void (mine(e) && this.restart(e));
    const onStreaming = (e: { site: string }): void => void (mine(e) && (this.capture = 'streaming'));
    const onConsuming = (e: { site: string }): void => void (mine(e) && (this.apply = 'consuming'));
    const onHalted = (e: { site: string; source: string; reason: string }): void => void (mine(e) && this.halted.set(e.source, redactSecrets(e.reason)));
    const onResumed = (e: { site: string; source: string }): void => void (mine(e) && this.halted.delete(e.source));
    events.on('pipeline:starting', onStarting);
    events.on('capture:streaming', onStreaming);
    events.on('apply:consuming', onConsuming);
    events.on('apply:halted', onHalted);
    events.on('apply:resumed', onResumed);
    this.unsubscribe = () => {
      events.off('pipeline:starting', onStarting);
      events.off('capture:streaming', onStreaming);
      events.off('apply:consuming', onConsuming);
      events.off('apply:halted', onHalted);
      events.off('apply:resumed', onResumed);
    };
  }

  readiness(): Readiness {
    const halted = Object.fromEntries([...this.halted].sort(([a], [b]) => a.localeCompare(b)));
    const ready = this.capture !== 'starting' && this.apply === 'consuming' && this.halted.size === 0;
    return { ready, site: this.site, capture: this.capture, apply: this.apply, halted };
  }

  /** Stops listening. */
  close(): void {
    this.unsubscribe();
  }

  private restart(scope: PipelineScope): void {
    this.capture = scope.capture ? 'starting' : 'off';
    this.apply = 'starting';
    this.halted.clear();
  }
}
