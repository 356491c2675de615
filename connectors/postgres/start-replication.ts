/**
 * The START_REPLICATION command for a site's slot.
 *
 * Always from 0/0: the server then resumes at the slot's confirmed position, never after a position this
 * process merely received.
 *
 * Never `origin 'none'`, though PostgreSQL 16 and later offer it: the server would then drop every
 * transaction that carries a replication origin before decoding it, BEGIN and COMMIT included, so capture
 * would never see the relayed transactions (those sitesync applied here) from which it learns the causal
 * context `seen`: the commit time of the last transaction applied from each other site. Without it every
 * later local write reaches the other sites as concurrent with whatever it followed: false conflicts, and
 * under site-priority or keep-local a causal update thrown away (test/integration/postgres-versions.test.ts).
 * Capture drops relayed transactions itself on every version (transaction-assembler.ts) without decoding
 * their rows; the slot still moves past them.
 */
import { quoteIdent } from './apply-plan.ts';

export function startReplicationCommand(slot: string, publication: string): string {
  const options = [`proto_version '1'`, `publication_names '${publication.replace(/'/g, "''")}'`, `messages 'true'`];
  return `START_REPLICATION SLOT ${quoteIdent(slot)} LOGICAL 0/0 (${options.join(', ')})`;
}
