/**
 * Publishing with RabbitMQ's publisher confirms: persistent, mandatory, many in flight. Each publish
 * resolves when the broker has taken responsibility for the message and rejects when it nacks it,
 * returns it (no queue bound: a message nobody would receive is a failure, never silently dropped) or the
 * channel closes first.
 */
import { once } from 'node:events';
import type { ConfirmChannel } from 'amqplib';
import { SitesyncError } from '../errors.ts';

export class ConfirmedPublisher {
  private readonly returned = new Map<string, string>();
  private closedError: Error | null = null;

  constructor(
    private readonly channel: ConfirmChannel,
    private readonly exchange: string,
    /** The connection's user, sent as AMQP user-id, which RabbitMQ validates: appliers trust only it. */
    private readonly userId: string,
  ) {
    // The broker sends basic.return before the confirm of the same message.
    channel.on('return', (message) => {
      const id = message.properties.messageId as string | undefined;
      const fields = message.fields as unknown as { replyCode?: number; replyText?: string };
      if (id) this.returned.set(id, `${fields.replyCode ?? ''} ${fields.replyText ?? 'returned'}`.trim());
    });
    channel.on('close', () => (this.closedError ??= new Error('channel closed')));
    channel.on('error', (error: Error) => (this.closedError = error));
  }

  publish(routingKey: string, body: Buffer, messageId: string, headers: Record<string, unknown>, timestampSeconds: number): Promise<void> {
    if (this.closedError) return Promise.reject(brokerFailure(this.closedError));
    return new Promise((resolve, reject) => {
      const settle = (error: unknown): void => {
        const returnedReason = this.returned.get(messageId);
        this.returned.delete(messageId);
        if (error) reject(brokerFailure(error));
        else if (returnedReason) reject(new SitesyncError('SITESYNC_ERR_BROKER_REJECTED', `message ${messageId} was returned by RabbitMQ as unroutable (${returnedReason}); the exchange ${this.exchange} has no queue for ${routingKey} — sitesync declares the topology at start, so check that nobody deleted it`));
        else resolve();
      };
      try {
        this.channel.publish(this.exchange, routingKey, body, {
          persistent: true,
          mandatory: true,
          messageId,
          userId: this.userId,
          headers,
          timestamp: timestampSeconds,
          contentType: 'application/vnd.sitesync.change+avro',
          appId: 'sitesync',
        }, settle);
      } catch (error) {
        reject(brokerFailure(error));
      }
    });
  }

  /** Resolves when the channel's write buffer has room again (TCP back-pressure or a blocked broker). */
  async drained(): Promise<void> {
    await once(this.channel, 'drain');
  }
}

function brokerFailure(error: unknown): SitesyncError {
  if (error instanceof SitesyncError) return error;
  return new SitesyncError('SITESYNC_ERR_BROKER_REJECTED', `RabbitMQ did not confirm a message (${(error as Error)?.message ?? error}); sitesync reconnects and sends it again`, { cause: error });
}
