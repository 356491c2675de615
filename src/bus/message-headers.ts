/**
 * AMQP headers that make a change message readable in the RabbitMQ management UI without decoding Avro,
 * and the one the reader needs to decode it (the writer's schema version).
 */
import { describePosition } from '../events/position.ts';
import { microsToIso } from '../events/time.ts';
import { countOperations, tablesTouched, type ChangeMessage } from '../events/transaction.ts';

export const SCHEMA_VERSION_HEADER = 'sitesync-schema-version';

/** AMQP header values are limited; very long table lists are cut with a count of what was left out. */
const MAX_TABLES_HEADER = 2000;

export function messageHeaders(message: ChangeMessage, schemaVersion: number): Record<string, string | number> {
  const txs = message.transactions;
  const first = txs[0];
  const last = txs[txs.length - 1];
  const counts = countOperations(txs);
  let tables = tablesTouched(txs).join(',');
  if (tables.length > MAX_TABLES_HEADER) tables = `${tables.slice(0, MAX_TABLES_HEADER)}…`;
  const headers: Record<string, string | number> = {
    [SCHEMA_VERSION_HEADER]: schemaVersion,
    'sitesync-site': message.site,
    'sitesync-source-kind': message.sourceKind,
    'sitesync-transactions': txs.length,
    'sitesync-tables': tables,
    'sitesync-operations': Object.entries(counts).filter(([, n]) => n > 0).map(([op, n]) => `${op}=${n}`).join(' '),
  };
  if (first && last) {
    headers['sitesync-position'] = first === last ? describePosition(first.position) : `${describePosition(first.position)}..${describePosition(last.position)}`;
    headers['sitesync-commit-time'] = microsToIso(last.commitTimeMicros);
  }
  if (message.part) headers['sitesync-part'] = `${message.part.index}${message.part.last ? ' (last)' : ''}`;
  return headers;
}

export function messageId(message: ChangeMessage): string {
  const first = message.transactions[0];
  const id = first ? first.id : `${message.site}:empty`;
  return message.part ? `${id}#${message.part.index}` : id;
}
