/**
 * The typed map of what happens in a pipeline. Capture and apply emit these; metrics and tests subscribe
 * to them, so counting and waiting live in one place instead of being sprinkled through the logic.
 */
import { EventEmitter } from 'node:events';
import { capturingSites, siteConfig, type Config } from '../config/config-schema.ts';

export interface PipelineEventMap {
  /** A pipeline of `site` is about to run (at start, and again after a configuration reload): nothing of it
   *  streams or consumes yet, and no source is halted yet. `capture` is false for a site that only receives;
   *  `sources` are the sites it applies from (every other site that captures). */
  'pipeline:starting': [PipelineScope];
  /** The slot exists and changes stream from it: every commit from now on will be captured. */
  'capture:streaming': [{ site: string }];
  /** The site's queue has a consumer: messages for this site are being applied. */
  'apply:consuming': [{ site: string }];
  /** A session ended in an error and is retried after a backoff (its connection was lost, its server went away…). */
  'capture:interrupted': [{ site: string; reason: string }];
  'apply:interrupted': [{ site: string; reason: string }];
  /** A transaction was decoded at `site` (relayed ones are reported by `capture:relayed` instead). */
  'capture:transaction': [{ site: string; position: string; rows: number; commitTimeMicros: bigint }];
  /** A relayed write (applied here by sitesync) or an empty transaction was dropped; the slot passes it. */
  'capture:skipped': [{ site: string; position: string; reason: 'relayed' | 'empty' }];
  'capture:published': [{ site: string; transactions: number; bytes: number }];
  'capture:confirmed': [{ site: string; messages: number }];
  /** The slot's confirmed position moved. */
  'capture:slot-confirmed': [{ site: string; position: string }];
  'capture:lag': [{ site: string; bytes: number; seconds: number }];
  /** A snapshot chunk was read at `site` and handed on, at its marker's position (snapshot-chunks.ts). */
  'capture:snapshot-chunk': [{ site: string; id: string; table: string; chunk: number; rows: number; last: boolean }];
  'apply:applied': [{ site: string; source: string; transactions: number; rows: number; position: string; commitTimeMicros: bigint }];
  /** A concurrent write to the same row was detected and resolved (recorded in sitesync.conflicts). */
  'apply:conflict': [{ site: string; source: string; kind: string; table: string; resolution: 'apply' | 'skip' }];
  'apply:duplicate': [{ site: string; source: string; position: string }];
  'apply:parked': [{ site: string; source: string; reason: string; code: string }];
  'apply:halted': [{ site: string; source: string; reason: string }];
  'apply:resumed': [{ site: string; source: string }];
  /** The process of `site` read the WAL retained by the slot of `slotSite` (every configured site, its own
   *  included); a slot that does not exist, or no longer holds WAL, reads as 0 bytes and not active. */
  'watch:slot': [{ site: string; slotSite: string; retainedBytes: number; active: boolean }];
}

/** What one site's pipeline runs: whether it captures, and which sources it applies. */
export interface PipelineScope {
  readonly site: string;
  readonly capture: boolean;
  readonly sources: readonly string[];
}

/** The scope of `site`'s pipeline under `config`. */
export function pipelineScope(config: Config, site: string): PipelineScope {
  return { site, capture: siteConfig(config, site)?.capture ?? false, sources: capturingSites(config).filter((s) => s !== site) };
}

export class PipelineEvents extends EventEmitter<PipelineEventMap> {}
