/**
 * `sitesync parked`: what waits in a site's parking queue, and what to do with it. A message sent back
 * (--retry) goes straight into the site's queue (through the default exchange, which only an operator's
 * broker user may publish to), marked with its parked id. The running applier honours the mark only if
 * the site recorded parking exactly that body under that id: a transaction it set aside is applied as it
 * is (its position is behind what was applied since), once; if the target still refuses it, it is parked
 * again. --discard removes it for good. Without either, the command only lists: nothing moves.
 */
import type { Config } from '../config/config-schema.ts';
import { PARKED_ID_HEADER, parkingQueue, RETRY_HEADER, siteQueue } from '../config/names.ts';
import { connectBroker } from '../bus/broker-connection.ts';
import { SitesyncError } from '../errors.ts';

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
