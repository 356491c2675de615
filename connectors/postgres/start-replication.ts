/**
 * The START_REPLICATION command for a site's slot.
 *
 * Always from 0/0: the server then resumes at the slot's confirmed position, never after a position this
 * process merely received. PostgreSQL 16 and later can drop transactions that carry a replication origin
 * on the server (`origin 'none'`), so relayed writes are not even decoded; capture still drops them itself
 * on older servers (and on newer ones, for safety). That option drops every origin-tagged transaction,
 * not only sitesync's: a database that also receives PostgreSQL's own subscriptions keeps those changes
 * local on 16+.
 */
import { quoteIdent } from './apply-plan.ts';

export const SERVER_ORIGIN_FILTER_VERSION = 160000;

export function startReplicationCommand(slot: string, publication: string, serverVersionNum: number): string {
  const options = [`proto_version '1'`, `publication_names '${publication.replace(/'/g, "''")}'`, `messages 'true'`];
  if (serverVersionNum >= SERVER_ORIGIN_FILTER_VERSION) options.push(`origin 'none'`);
  return `START_REPLICATION SLOT ${quoteIdent(slot)} LOGICAL 0/0 (${options.join(', ')})`;
}
