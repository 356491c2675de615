/**
 * What a target accepts: only the tables it replicates itself. A message, even one RabbitMQ validated as
 * coming from a configured site, never writes into a catalog, into sitesync's own bookkeeping, or into a
 * table the target did not opt into — by default the same table set the site sends (its `tables` list, or
 * every table of its database, as its publication does), as PostgreSQL's subscriptions apply only into
 * tables of their own publication's set.
 *
 * Pure: the runner asks before it applies a transaction; a refused one is parked with this reason.
 */
import type { ChangeMessage, RelationInfo, Transaction } from '../events/transaction.ts';

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
