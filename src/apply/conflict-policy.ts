/**
 * Conflicts between sites, decided the same way at every site. Pure: no I/O.
 *
 * When is it a conflict? A change arrives from site S for a row this site last wrote in a transaction W
 * (known from the row's commit timestamp and replication origin). If W came from S itself, or S had
 * already applied W when it wrote the change (W's commit time is covered by the change's causal context
 * `seen`), the change simply follows W. Otherwise the two writes were concurrent: a conflict. A change
 * for a row that is not there (update, delete) and an insert of a key that is there are conflicts too.
 *
 * Who wins? Every site must pick the same winner whatever order the two writes reach it in:
 * - last-writer-wins (default): the later commit time; the site name breaks a tie.
 * - site-priority: the site listed first; sites not listed come after, in last-writer-wins order.
 * - keep-local: the row as this site has it. Sites may then differ: that is what it asks for.
 * A delete racing an update wins at every site (with keep-local, at the site that deleted): no
 * tombstones are kept, so a site where the delete arrived first cannot tell the update apart from a
 * change to a row that never existed, and skips it.
 */
import type { SeenSites } from '../events/transaction.ts';

export type ConflictKind = 'insert_exists' | 'update_origin_differs' | 'update_missing' | 'delete_origin_differs' | 'delete_missing';

export type PolicyName = 'last-writer-wins' | 'site-priority' | 'keep-local';

export interface ConflictPolicy {
  readonly policy: PolicyName;
  /** Sites in order of precedence, for site-priority. */
  readonly priority: readonly string[];
}

export interface Writer {
  readonly site: string;
  readonly commitTimeMicros: bigint;
}

export interface Decision {
  /** apply: write the incoming change; skip: leave the row as it is. */
  readonly resolution: 'apply' | 'skip';
  readonly winner: 'remote' | 'local' | 'none';
}

export const DEFAULT_POLICY: ConflictPolicy = { policy: 'last-writer-wins', priority: [] };

/**
 * Was the row's last write (`local`) made without the incoming change's site knowing it? `null` when the
 * row's last writer cannot be known (a frozen or very old row version, or written earlier in this same
 * apply transaction): then it is not a conflict.
 */
export function isConcurrent(local: Writer | null, remoteSite: string, remoteSeen: SeenSites): boolean {
  if (local === null || local.site === remoteSite) return false;
  // Own keys only: `seen` comes off the wire, and a site may be named `constructor`.
  const known = Object.hasOwn(remoteSeen, local.site) ? remoteSeen[local.site] : undefined;
  return known === undefined || local.commitTimeMicros > known;
}

export function decide(kind: ConflictKind, remote: Writer, local: Writer | null, policy: ConflictPolicy): Decision {
  switch (kind) {
    case 'update_missing':
    case 'delete_missing':
      return { resolution: 'skip', winner: 'none' };
    case 'delete_origin_differs':
      return policy.policy === 'keep-local' ? { resolution: 'skip', winner: 'local' } : { resolution: 'apply', winner: 'remote' };
    case 'insert_exists':
    case 'update_origin_differs': {
      if (local === null) return { resolution: 'apply', winner: 'remote' };
      const remoteWins = policy.policy === 'keep-local' ? false : policy.policy === 'site-priority' ? byPriority(remote, local, policy.priority) : lastWriterWins(remote, local);
      return remoteWins ? { resolution: 'apply', winner: 'remote' } : { resolution: 'skip', winner: 'local' };
    }
  }
}

function lastWriterWins(remote: Writer, local: Writer): boolean {
  if (remote.commitTimeMicros !== local.commitTimeMicros) return remote.commitTimeMicros > local.commitTimeMicros;
  return remote.site > local.site;
}

function byPriority(remote: Writer, local: Writer, priority: readonly string[]): boolean {
  const rank = (site: string): number => {
    const i = priority.indexOf(site);
    return i === -1 ? priority.length : i;
  };
  const r = rank(remote.site);
  const l = rank(local.site);
  return r !== l ? r < l : lastWriterWins(remote, local);
}

/** The policy of each table from the configuration's `conflicts` section. */
export function policyResolver(conflicts: {
  readonly policy: PolicyName;
  readonly priority: readonly string[];
  readonly tables: Readonly<Record<string, { readonly policy: PolicyName; readonly priority?: readonly string[] }>>;
}): (schema: string, table: string) => ConflictPolicy {
  const fallback: ConflictPolicy = { policy: conflicts.policy, priority: conflicts.priority };
  return (schema, table) => {
    const own = conflicts.tables[`${schema}.${table}`];
    return own ? { policy: own.policy, priority: own.priority ?? conflicts.priority } : fallback;
  };
}
