/**
 * A service reading the changes of a few tables from its sitesync subscriber queue. After
 *   npx sitesync subscribe --config sitesync.yml --name billing --tables public.users,public.tenants
 * run it with
 *   node --import tsx examples/table-subscriber.ts amqp://guest:guest@127.0.0.1:5672/ billing public.users,public.tenants
 */
import { inspect } from 'node:util';
import amqp from 'amqplib';
import { decodeMessage } from '../src/events/avro-codec.ts';
import type { RelationInfo, RowImage } from '../src/events/transaction.ts';
import { parseValue, ValueFormatError, type NeutralValue } from '../src/events/value-parser.ts';

const [url = 'amqp://guest:guest@127.0.0.1:5672/', name = 'billing', tables = 'public.users'] = process.argv.slice(2);
const wanted = new Set(tables.split(','));
const handled = new Set<string>(); // at-least-once delivery: a real service keeps this with its own data

/**
 * A row with each value typed by its column's kind (docs/value-kinds.md): int64 and times as bigint
 * (microseconds), dates as days since 1970, decimals as exact text, bytes as a Buffer, arrays as arrays.
 * Unchanged TOASTed columns (not sent by the source) are left out: they are not NULL.
 */
const row = (relation: RelationInfo, image: RowImage): Record<string, NeutralValue | null> =>
  Object.fromEntries(
    relation.columns.flatMap((c, i): [string, NeutralValue | null][] => {
      if (image.unchanged.includes(i)) return [];
      const text = image.values[i] ?? null;
      if (text === null) return [[c.name, null]];
      try {
        return [[c.name, parseValue(text, c.kind)]];
      } catch (error) {
        if (!(error instanceof ValueFormatError)) throw error;
        // A value its kind does not read (a source bug or a newer form): keep the text, say which column.
        console.error(`${relation.schema}.${relation.table}.${c.name} (${c.native.name}): ${error.message}`);
        return [[c.name, text]];
      }
    }),
  );
const show = (value: unknown): string => inspect(value, { depth: null, breakLength: Infinity, compact: true });

const connection = await amqp.connect(url);
const channel = await connection.createChannel();
await channel.prefetch(16);
process.once('SIGINT', () => void connection.close());
process.once('SIGTERM', () => void connection.close());
console.log(`reading sitesync.subscriber.${name} for ${[...wanted].join(', ')}`);
await channel.consume(`sitesync.subscriber.${name}`, (delivery) => {
  if (!delivery) return; // the queue was deleted
  // One message holds one or more whole transactions of one site (or one part of a large one).
  let message;
  try {
    message = decodeMessage(delivery.content, Number(delivery.properties.headers?.['sitesync-schema-version']));
  } catch (error) {
    console.error(`dropping unreadable message ${delivery.properties.messageId}: ${(error as Error).message}`);
    return channel.nack(delivery, false, false);
  }
  for (const tx of message.transactions) {
    const id = message.part ? `${tx.id}#${message.part.index}` : tx.id; // tx.id is `site:position`
    if (handled.has(id)) continue;
    for (const change of tx.changes) {
      if (change.op === 'message') continue;
      if (change.op === 'truncate') {
        for (const r of change.relations) if (wanted.has(`${r.schema}.${r.table}`)) console.log(`${tx.id} truncate ${r.schema}.${r.table}`);
        continue;
      }
      const table = `${change.relation.schema}.${change.relation.table}`;
      if (!wanted.has(table)) continue; // the transaction touched one of our tables, not necessarily this one
      const image = change.op === 'delete' ? change.oldRow : change.newRow;
      console.log(`${tx.id} ${change.op} ${table} ${show(row(change.relation, image))}`);
    }
    handled.add(id);
  }
  channel.ack(delivery); // after processing: a crash before this line gets the message again
});
