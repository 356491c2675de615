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
/** Routing key of a source site's change messages on the topic exchange. */
export const routingKey = (site: string): string => `site.${site}`;
