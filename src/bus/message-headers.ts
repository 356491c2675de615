/**
 * AMQP headers that make a change message readable in the RabbitMQ management UI without decoding Avro,
 * the one the reader needs to decode it (the writer's schema version), and the ones the headers exchange
 * routes on for selective subscribers: `sitesync-table:<site>/<schema>.<table>` = 1 for every table the
 * message touches (or `sitesync-table:<site>/*` = 1 when they would not fit; see tableHeaders).
 */
import { allTablesHeader, tableHeader } from '../config/names.ts';
import { rawPosition, type DescribePosition } from '../events/position.ts';
import { microsToIso } from '../events/time.ts';
import { countOperations, tablesTouched, type ChangeMessage } from '../events/transaction.ts';

export const SCHEMA_VERSION_HEADER = 'sitesync-schema-version';

/** AMQP header values are limited; very long table lists are cut with a count of what was left out. */
const MAX_TABLES_HEADER = 2000;

/**
 * Most bytes the `sitesync-table:` headers of one message may take (key, type tag and value of each, as
 * AMQP encodes them). amqplib refuses a headers table past 64 KiB, and RabbitMQ matches every header of
 * every message against the headers exchange's bindings, so the list stays well below: past this, the
 * message carries the single `sitesync-table:<site>/*` header instead, and reaches every subscriber of
 * that site (subscribers' bindings include it).
 */
export const MAX_TABLE_HEADERS_BYTES = 16 * 1024;

/** AMQP field-table keys are short strings (at most 255 bytes). */
const MAX_HEADER_KEY_BYTES = 255;

/**
 * The routing headers for the tables (`schema.table`) one site's message touches: one per table, value 1,
 * or the site's `/*` header alone when they would take more than MAX_TABLE_HEADERS_BYTES (or a key would
 * be longer than AMQP allows). No table (a message holding only logical messages, or an empty last part):
 * no header, and no subscriber receives it.
 */
export function tableHeaders(site: string, tables: readonly string[]): Record<string, number> {
  const headers: Record<string, number> = {};
  let bytes = 0;
  for (const table of tables) {
    const key = tableHeader(site, table);
    const keyBytes = Buffer.byteLength(key);
    // 1 length byte + key, 1 type tag, 1 value byte (amqplib writes 1 as a signed byte).
    bytes += keyBytes + 3;
    if (bytes > MAX_TABLE_HEADERS_BYTES || keyBytes > MAX_HEADER_KEY_BYTES) return { [allTablesHeader(site)]: 1 };
    headers[key] = 1;
  }
  return headers;
}

export function messageHeaders(message: ChangeMessage, schemaVersion: number, describePosition: DescribePosition = rawPosition): Record<string, string | number> {
  const txs = message.transactions;
  const first = txs[0];
  const last = txs[txs.length - 1];
  const counts = countOperations(txs);
  const touched = tablesTouched(txs);
  let tables = touched.join(',');
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
  Object.assign(headers, tableHeaders(message.site, touched));
  return headers;
}

export function messageId(message: ChangeMessage): string {
  const first = message.transactions[0];
  const id = first ? first.id : `${message.site}:empty`;
  return message.part ? `${id}#${message.part.index}` : id;
}
