/**
 * Who may say what: a change message is applied only if RabbitMQ says it came from the site it claims.
 *
 * RabbitMQ validates the AMQP `user-id` property against the publishing connection's user, and (with topic
 * permissions) lets each site's user publish only with its own routing key. So a message is trusted when
 * it arrived through the change exchange, with the claiming site's routing key, and with that site's broker
 * user (sites.<name>.brokerUser) as its validated user-id; its transactions all being of that site is
 * checked at decode. Anything else is parked with the reason this returns.
 *
 * Pure: the runner passes what the delivery says of itself.
 */
import { databaseOf, expectedBrokerUser, isConfiguredSite, type Config } from '../config/config-schema.ts';
import type { ConnectorRegistry } from '../connector.ts';
import type { ChangeMessage, Position } from '../events/transaction.ts';
import { routingKey } from '../config/names.ts';

/** How a message reached the queue, as RabbitMQ reports it. */
export interface Provenance {
  /** The validated AMQP user-id property; undefined when the publisher set none. */
  readonly userId: string | undefined;
  readonly exchange: string;
  readonly routingKey: string;
}

/** What a delivery (from a queue or the archive stream) says of how it arrived. */
export function provenanceOf(delivery: { readonly fields: { readonly exchange: string; readonly routingKey: string }; readonly properties: { readonly userId?: unknown } }): Provenance {
  const userId = delivery.properties.userId;
  return { userId: typeof userId === 'string' ? userId : undefined, exchange: delivery.fields.exchange, routingKey: delivery.fields.routingKey };
}

/** Why a message claiming `source` cannot be trusted at `site`, or null when it can. */
export function untrustedReason(config: Config, site: string, source: string, provenance: Provenance): string | null {
  if (source === site) return `it claims to come from site ${site} itself`;
  if (!isConfiguredSite(config, source)) return `site ${JSON.stringify(source)} is not in the configuration; add it, then retry the message (sitesync parked --retry)`;
  const exchange = config.broker.exchange;
  if (provenance.exchange !== exchange) {
    return `it claims site ${source} but arrived through exchange ${JSON.stringify(provenance.exchange)}, not ${exchange}`;
  }
  if (provenance.routingKey !== routingKey(source)) {
    return `it claims site ${source} but was routed with ${JSON.stringify(provenance.routingKey)}, not ${routingKey(source)}`;
  }
  const expected = expectedBrokerUser(config, source);
  if (provenance.userId === undefined) {
    return `it claims site ${source} but carries no user-id, so RabbitMQ did not vouch for its publisher (site ${source} publishes as ${JSON.stringify(expected)})`;
  }
  if (provenance.userId !== expected) {
    return `it claims site ${source} but was published by RabbitMQ user ${JSON.stringify(provenance.userId)}, not ${JSON.stringify(expected)} (sites.${source}.brokerUser)`;
  }
  return null;
}

/** `exchange/routing key`, as parked records and headers keep it. */
export function describeRoute(provenance: Pick<Provenance, 'exchange' | 'routingKey'>): string {
  return `${provenance.exchange}/${provenance.routingKey}`;
}

/** The inverse of describeRoute: AMQP exchange names hold no slash (letters, digits, -, _, ., :), routing keys may. */
export function parseRoute(route: string): Pick<Provenance, 'exchange' | 'routingKey'> {
  const slash = route.indexOf('/');
  return slash < 0 ? { exchange: route, routingKey: '' } : { exchange: route.slice(0, slash), routingKey: route.slice(slash + 1) };
}

/**
 * Why a trusted message still cannot be from the database its site runs, or null: its source kind must be
 * the site's configured one, and every position one of that kind's (the decoder checked only their shape).
 */
export function foreignShape(config: Config, connectors: ConnectorRegistry, message: ChangeMessage): string | null {
  const kind = databaseOf(config, message.site).kind;
  if (message.sourceKind !== kind) return `site ${message.site} runs ${kind}, but the message says its transactions come from ${JSON.stringify(message.sourceKind)}`;
  const positions = connectors.get(kind)?.positions;
  if (!positions) return `site ${message.site} runs ${kind}, which this process has no connector for`;
  const bad = [message.previous, ...message.transactions.map((tx) => tx.position)].find((p): p is Position => p !== null && !positions.isPosition(p));
  return bad === undefined ? null : `position ${JSON.stringify(bad.slice(0, 70))} is not a ${kind} position`;
}
