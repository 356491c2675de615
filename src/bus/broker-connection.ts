/**
 * Connecting to RabbitMQ with errors a person can act on. Reconnection is the caller's loop: capture and
 * apply each restart their whole session after a broker failure, which is what keeps "nothing lost" simple
 * (the slot and the queue both still hold everything that was not confirmed).
 */
import amqp, { type Channel, type ChannelModel } from 'amqplib';
import { SitesyncError } from '../errors.ts';
import { redactUrl } from '../observability/logger.ts';

export async function connectBroker(url: string, name: string): Promise<ChannelModel> {
  try {
    return await amqp.connect(url, { clientProperties: { connection_name: name }, timeout: 10_000 });
  } catch (error) {
    throw describeBrokerError(error, url);
  }
}

export function describeBrokerError(error: unknown, url: string): SitesyncError {
  const message = (error as Error)?.message ?? String(error);
  if (/ACCESS_REFUSED|403/.test(message)) {
    return new SitesyncError('SITESYNC_ERR_PERMISSION', `RabbitMQ at ${redactUrl(url)} refused the login (${message.split('\n')[0]}); check the user and password in broker.url and the user's permissions on the vhost`, { cause: error });
  }
  if (/NOT_ALLOWED|vhost/i.test(message)) {
    return new SitesyncError('SITESYNC_ERR_CONFIG', `RabbitMQ at ${redactUrl(url)} has no such virtual host (${message.split('\n')[0]}); fix the path of broker.url or create the vhost`, { cause: error });
  }
  return new SitesyncError('SITESYNC_ERR_BROKER_UNREACHABLE', `RabbitMQ at ${redactUrl(url)} is unreachable (${message.split('\n')[0]}); start it or fix broker.url — sitesync keeps retrying and loses nothing meanwhile`, { cause: error });
}

/**
 * Runs `work` on a channel of its own, closed after it. A failed declaration or check (a 404) closes the
 * channel: the rejected call reports it, the connection lives on, and unacknowledged messages go back to
 * their queue when it closes.
 */
export async function withChannel<T>(connection: ChannelModel, work: (channel: Channel) => Promise<T>): Promise<T> {
  const channel = await connection.createChannel();
  channel.on('error', () => undefined);
  try {
    return await work(channel);
  } finally {
    await channel.close().catch(() => undefined);
  }
}
