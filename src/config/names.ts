/**
 * Every name sitesync creates, in one place. Several sites may share one PostgreSQL server, and
 * replication origins are server-wide, so every server-side name includes the site(s) it belongs to.
 */

/** Prefix of every replication origin sitesync creates; capture drops transactions that carry one. */
export const ORIGIN_PREFIX = 'sitesync_';

/** Schema holding sitesync's own bookkeeping at a site; never replicated. */
export const BOOKKEEPING_SCHEMA = 'sitesync';

/** Prefix of logical messages sitesync emits itself (heartbeats); never published. */
export const MESSAGE_PREFIX = 'sitesync';

export const slotName = (site: string): string => `sitesync_${site}`;
export const publicationName = (site: string): string => `sitesync_${site}`;
/** The origin that records how far `source`'s transactions have been applied at `target`. */
export const originName = (source: string, target: string): string => `${ORIGIN_PREFIX}${source}_to_${target}`;

/** The quorum queue a site applies from (SITE_PARIS in the original design). */
export const siteQueue = (site: string): string => `SITE_${site.toUpperCase()}`;
/** Where messages that cannot be applied at a site wait, with their reason, for an operator. */
export const parkingQueue = (site: string): string => `${siteQueue(site)}.parked`;
/**
 * The topic exchange appliers park through (routing key: the parking site's name), so that a site's
 * broker user can be allowed to park only into its own parking queue and needs no access to the
 * default exchange (through which only operators send messages back, see RETRY_HEADER).
 */
export const parkingExchange = (exchange: string): string => `${exchange}.parking`;
/** Routing key of a source site's change messages on the topic exchange. */
export const routingKey = (site: string): string => `site.${site}`;
/** The headers exchange, bound to the topic exchange with `site.#`, that selective subscribers bind to. */
export const tablesExchange = (exchange: string): string => `${exchange}.tables`;
/** Prefix of the message headers (and subscriber binding arguments) naming a (site, table) a message touches. */
export const TABLE_HEADER_PREFIX = 'sitesync-table:';
/** Header naming one table of a site: `sitesync-table:<site>/<schema>.<table>`. */
export const tableHeader = (site: string, table: string): string => `${TABLE_HEADER_PREFIX}${site}/${table}`;
/** Header standing for every table of a site, when a message touches too many to name (see message-headers.ts). */
export const allTablesHeader = (site: string): string => `${TABLE_HEADER_PREFIX}${site}/*`;
/** The quorum queue of a selective subscriber (`sitesync subscribe --name NAME`). */
export const subscriberQueue = (name: string): string => `sitesync.subscriber.${name}`;

/** Header naming a parked message, for `sitesync parked --retry/--discard`. */
export const PARKED_ID_HEADER = 'sitesync-parked-id';
/**
 * Header of a parked message an operator sent back to its site's queue (`sitesync parked --retry`): its
 * value is the parked id. The applier honours it only on a message that came through the default
 * exchange (which site users may not publish to) and whose id and body match a record the site wrote
 * when it parked the message. A transaction set aside is applied and its record closed in one commit
 * (exactly once); a message refused whole is handled as if it had just arrived, then its record closed.
 */
export const RETRY_HEADER = 'sitesync-retry';
/** Headers a parked message keeps of how it first arrived (RabbitMQ validates user-id only at publish). */
export const ORIGINAL_USER_HEADER = 'sitesync-original-user-id';
export const ORIGINAL_ROUTE_HEADER = 'sitesync-original-route';
