/**
 * `sitesync parked`: what waits in a site's parking queue, and what to do with it. A message sent back
 * (--retry) goes straight into the site's queue (through the default exchange, which only an operator's
 * broker user may publish to), marked with its parked id. The running applier honours the mark only if
 * the site recorded parking exactly that body under that id: a transaction it set aside is applied as it
 * is (its position is behind what was applied since), once; if the target still refuses it, it is parked
 * again. --discard removes it for good. Without either, the command only lists: nothing moves. --show
 * prints one message decoded (showParked), and nothing moves either.
 */
import type { Config } from '../config/config-schema.ts';
import { ORIGINAL_ROUTE_HEADER, ORIGINAL_USER_HEADER, PARKED_ID_HEADER, parkingQueue, RETRY_HEADER, siteQueue } from '../config/names.ts';
import { connectBroker } from '../bus/broker-connection.ts';
import { SCHEMA_VERSION_HEADER } from '../bus/message-headers.ts';
import { describeSitePosition, type ConnectorRegistry } from '../connector.ts';
import { describeError, SitesyncError } from '../errors.ts';
import { decodeMessage } from '../events/avro-codec.ts';
import type { ChangeMessage } from '../events/transaction.ts';
import { flattenTransaction, formatJsonLine, formatTableHeader, formatTableRow, safeText, tableLayout, viewChange, type ShowOptions } from '../inspect/change-format.ts';

export type ParkedAction = { readonly kind: 'list' } | { readonly kind: 'retry' | 'discard'; readonly id: string };

export async function parkedCommand(config: Config, site: string, action: ParkedAction, print: (line: string) => void): Promise<void> {
  if (!(site in config.sites)) {
    throw new SitesyncError('SITESYNC_ERR_CONFIG', `site ${JSON.stringify(site)} is not in the configuration (sites: ${Object.keys(config.sites).join(', ')}); pass one of them with --site`);
  }
  const connection = await connectBroker(config.broker.url, `sitesync parked ${site}`);
  try {
    const channel = await connection.createConfirmChannel();
    const queue = parkingQueue(site);
    await channel.checkQueue(queue).catch(() => {
      throw new SitesyncError('SITESYNC_ERR_CONFIG', `queue ${queue} does not exist: run the site once first`);
    });
    let count = 0;
    let matched = 0;
    // Every message is taken without acknowledging; those left alone return to the queue when the
    // connection closes.
    for (;;) {
      const message = await channel.get(queue, { noAck: false });
      if (!message) break;
      count++;
      const h = message.properties.headers ?? {};
      const id = String(h[PARKED_ID_HEADER] ?? `(no id: parked before ids existed, #${count})`);
      const what = `${id}  ${h['sitesync-parked-at'] ?? '?'}  from ${h['sitesync-parked-source'] ?? '?'}  ${h['sitesync-parked-transaction'] ?? ''}  ${h['sitesync-parked-code'] ?? ''}: ${h['sitesync-parked-reason'] ?? ''}`;
      if (action.kind === 'list' || (action.id !== 'all' && action.id !== id)) {
        if (action.kind === 'list') print(what);
        continue;
      }
      matched++;
      if (action.kind === 'retry') {
        if (h[PARKED_ID_HEADER] === undefined) {
          throw new SitesyncError('SITESYNC_ERR_CONFIG', `parked message #${count} in ${queue} has no ${PARKED_ID_HEADER} (parked by an older sitesync, or dead-lettered by RabbitMQ), so ${site} cannot recognise it as its own: replay its range from the archive (sitesync replay), then discard it`);
        }
        const p = message.properties;
        channel.sendToQueue(siteQueue(site), message.content, { persistent: true, headers: { ...h, [RETRY_HEADER]: id }, messageId: p.messageId, timestamp: p.timestamp, contentType: p.contentType, appId: p.appId });
        await channel.waitForConfirms();
        channel.ack(message);
        print(`sent back to ${siteQueue(site)}: ${id}`);
      } else {
        channel.ack(message);
        print(`discarded: ${id}`);
      }
    }
    if (action.kind === 'list') print(`${count} parked message(s) in ${queue}`);
    else if (matched === 0) throw new SitesyncError('SITESYNC_ERR_CONFIG', `no parked message ${action.id} in ${queue} (${count} there); list them with: sitesync parked --config FILE --site ${site}`);
  } finally {
    await connection.close().catch(() => undefined);
  }
}

export interface ShowParkedOptions {
  /** An aligned table instead of JSON lines. */
  readonly pretty?: boolean;
}

/**
 * `sitesync parked --show ID`: one parked message, decoded, without taking it: its parking headers (reason,
 * code, source, transaction, when, how it first arrived), the properties it kept, then its changes as
 * `sitesync tail` prints them, values included (the operator asked for this message). A message without
 * an id (dead-lettered by RabbitMQ, or parked by an older sitesync) is `#N`, its place in the list.
 * Everything printed comes from the wire and is shown escaped, one line per item.
 */
export async function showParked(config: Config, connectors: ConnectorRegistry, site: string, id: string, options: ShowParkedOptions, print: (line: string) => void): Promise<void> {
  if (!(site in config.sites)) {
    throw new SitesyncError('SITESYNC_ERR_CONFIG', `site ${JSON.stringify(site)} is not in the configuration (sites: ${Object.keys(config.sites).join(', ')}); pass one of them with --site`);
  }
  const connection = await connectBroker(config.broker.url, `sitesync parked ${site} --show`);
  connection.on('error', () => undefined);
  try {
    const channel = await connection.createChannel();
    channel.on('error', () => undefined);
    const queue = parkingQueue(site);
    await channel.checkQueue(queue).catch(() => {
      throw new SitesyncError('SITESYNC_ERR_CONFIG', `queue ${queue} does not exist: run the site once first`);
    });
    // Read without acknowledging: every message returns to the queue when the connection closes.
    for (let count = 1; ; count++) {
      const message = await channel.get(queue, { noAck: false });
      if (!message) throw new SitesyncError('SITESYNC_ERR_CONFIG', `no parked message ${id} in ${queue} (${count - 1} there); list them with: sitesync parked --config FILE --site ${site}`);
      const h = message.properties.headers ?? {};
      const parkedId = text(h[PARKED_ID_HEADER]);
      if (parkedId !== null ? parkedId !== id : id !== `#${count}`) continue;
      for (const line of describeParked(config, connectors, message.properties, message.content, parkedId ?? `#${count}`, queue, options)) print(line);
      return;
    }
  } finally {
    await connection.close().catch(() => undefined);
  }
}

function text(value: unknown): string | null {
  return typeof value === 'string' ? value : Buffer.isBuffer(value) ? value.toString('utf8') : typeof value === 'number' ? String(value) : null;
}

/** The lines `--show` prints of one parked message (pure: for tests too). */
export function describeParked(
  config: Config,
  connectors: ConnectorRegistry,
  properties: { readonly headers?: Record<string, unknown>; readonly messageId?: unknown; readonly contentType?: unknown; readonly timestamp?: unknown; readonly appId?: unknown; readonly userId?: unknown },
  body: Buffer,
  id: string,
  queue: string,
  options: ShowParkedOptions,
): string[] {
  const h = properties.headers ?? {};
  const lines: string[] = [`parked message ${id} in ${queue}`];
  const field = (label: string, value: unknown): void => {
    const shown = text(value);
    if (shown !== null && shown !== '') lines.push(safeText(`  ${label}: ${shown.length > 2000 ? `${shown.slice(0, 2000)}…` : shown}`));
  };
  field('reason', h['sitesync-parked-reason'] ?? 'none recorded: dead-lettered by RabbitMQ after too many deliveries, or parked by an older sitesync');
  field('code', h['sitesync-parked-code']);
  field('source', h['sitesync-parked-source'] ?? h['sitesync-site']);
  field('transaction', h['sitesync-parked-transaction']);
  field('parked at', h['sitesync-parked-at']);
  field('first arrived as user', h[ORIGINAL_USER_HEADER]);
  field('first arrived through', h[ORIGINAL_ROUTE_HEADER]);
  field('message id', properties.messageId);
  field('content type', properties.contentType);
  if (typeof properties.timestamp === 'number') field('timestamp', new Date(properties.timestamp * 1000).toISOString());
  field('app id', properties.appId);
  field('user id', properties.userId);
  let message: ChangeMessage;
  try {
    const version = Number(h[SCHEMA_VERSION_HEADER] ?? NaN);
    if (!Number.isInteger(version)) throw new SitesyncError('SITESYNC_ERR_MESSAGE_INVALID', `message has no ${SCHEMA_VERSION_HEADER} header: it was not published by sitesync`);
    message = decodeMessage(body, version);
  } catch (error) {
    lines.push(safeText(`  body (${body.length} bytes) does not decode: ${describeError(error).split('\n')[0]}`));
    return lines;
  }
  const n = message.transactions.reduce((sum, tx) => sum + tx.changes.length, 0);
  lines.push(`  ${message.transactions.length} transaction${message.transactions.length === 1 ? '' : 's'} of site ${message.site}${message.part ? `, part ${message.part.index}${message.part.last ? ' (last)' : ''}` : ''}, ${n} change${n === 1 ? '' : 's'}:`);
  const show: ShowOptions = { values: true, describe: (s, p) => describeSitePosition(connectors, config, s, p) };
  const layout = tableLayout(Object.keys(config.sites));
  if (options.pretty) lines.push(formatTableHeader(layout, true));
  for (const tx of message.transactions) {
    for (const flat of flattenTransaction(tx)) {
      const view = viewChange(flat, show, { message });
      lines.push(options.pretty ? formatTableRow(view, layout) : formatJsonLine(view));
    }
  }
  return lines;
}
