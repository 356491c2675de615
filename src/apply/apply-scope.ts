/**
 * What a target accepts: only the tables it replicates itself. A message, even one RabbitMQ validated as
 * coming from a configured site, never writes into a catalog, into sitesync's own bookkeeping, or into a
 * table the target did not opt into — by default the same table set the site sends (its `tables` list, or
 * every table of its database, as its publication does), as PostgreSQL's subscriptions apply only into
 * tables of their own publication's set.
 *
 * Pure: the runner asks before it applies a transaction; a refused one is parked with this reason.
 */
import type { Change, ChangeMessage, RelationInfo, Transaction } from '../events/transaction.ts';

/** The reason a table is refused at `site`, or null when it is accepted. */
export type TableScope = (schema: string, table: string) => string | null;

export function tableScope(site: string, tables: readonly string[] | null, isReservedSchema: (schema: string) => boolean): TableScope {
  const accepted = tables === null ? null : new Set(tables);
  return (schema, table) => {
    const name = `${schema}.${table}`;
    if (isReservedSchema(schema)) return `table ${JSON.stringify(name)} is in a catalog or in sitesync's own schema, which are never written`;
    if (accepted !== null && !accepted.has(name)) {
      return `table ${JSON.stringify(name)} is not one site ${site} replicates (sites.${site}.tables); add it there to accept changes to it`;
    }
    return null;
  };
}

/** The first reason one of the transaction's changes is refused, or null when all are accepted. */
export function refusedChange(tx: Transaction, scope: TableScope, checked = new Map<RelationInfo, string | null>()): string | null {
  // Changes of one relation share its object: each relation is judged once per message.
  const judge = (relation: RelationInfo): string | null => {
    let reason = checked.get(relation);
    if (reason === undefined) {
      reason = scope(relation.schema, relation.table);
      checked.set(relation, reason);
    }
    return reason;
  };
  for (const change of tx.changes) {
    if (change.op === 'message') continue; // a logical message writes no table
    const relations = change.op === 'truncate' ? change.relations : [change.relation];
    for (const relation of relations) {
      const reason = judge(relation);
      if (reason !== null) return reason;
    }
  }
  return null;
}

/**
 * The message as `site` applies it: a snapshot's rows addressed to other sites (a site joining, a repair)
 * are not written here, but their transactions still count, so the position moves past them.
 */
export function addressedTo(message: ChangeMessage, site: string): ChangeMessage {
  if (!message.transactions.some((tx) => isForOthers(tx, site))) return message;
  return { ...message, transactions: message.transactions.map((tx) => (isForOthers(tx, site) ? { ...tx, changes: [] } : tx)) };
}

function isForOthers(tx: Transaction, site: string): boolean {
  const targets = tx.snapshot?.targets;
  return targets !== undefined && targets !== null && !targets.includes(site);
}

/**
 * A snapshot sent to every site carries each row as its source held it when it read the chunk, with who wrote
 * it last there. A row another site W wrote travels in W's own stream too, and the streams of two sites reach a
 * target in no common order: W may have deleted or changed the row since, and the target applied that
 * already. So a read is left out where the target's row is as new as the read's or newer: the target is W
 * itself, or it has applied W's transactions up to the read's write (`appliedCommit`: commit time of the last
 * transaction from W applied here, undefined when not known). Without this, a row a site deleted comes back
 * (no site keeps tombstones). Kept: rows the source wrote (no other stream carries them), rows whose writer is
 * not known, and every row of a snapshot addressed to chosen sites (a repair replaces what is there).
 */
export function withoutStaleReads(message: ChangeMessage, site: string, appliedCommit: (source: string) => bigint | undefined): ChangeMessage {
  const stale = (change: Change): boolean => {
    if (change.op !== 'read' || !change.writer || change.writer.site === message.site) return false;
    if (change.writer.site === site) return true;
    const applied = appliedCommit(change.writer.site);
    return applied !== undefined && applied >= change.writer.commitTimeMicros;
  };
  const broadcast = (tx: Transaction): boolean => tx.snapshot !== undefined && tx.snapshot !== null && tx.snapshot.targets === null;
  if (!message.transactions.some((tx) => broadcast(tx) && tx.changes.some(stale))) return message;
  return { ...message, transactions: message.transactions.map((tx) => (broadcast(tx) ? { ...tx, changes: tx.changes.filter((c) => !stale(c)) } : tx)) };
}
