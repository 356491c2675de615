/**
 * What a site's conflict log says, for `sitesync trace` (one transaction) and the console (the newest). Each
 * sink keeps its log in its own database; the connector reads it (`Connector.readConflicts`, with the site's
 * monitoring URL). Kinds whose connector reads none are `unsupported`, said as such.
 */
import { connectorFor, type ConflictLogEntry, type ConflictLogRead, type ConnectorRegistry } from '../connector.ts';
import { databaseUrlFor, type Config } from '../config/config-schema.ts';

export type ConflictEntry = ConflictLogEntry;

export type ConflictLookup = ConflictLogRead | { readonly kind: 'unsupported' };

const MAX_ROWS_OF_ONE = 100;

/** The entries of remote transaction `transactionId` in the conflict log of `site`. */
export async function readConflictsOf(config: Config, connectors: ConnectorRegistry, site: string, transactionId: string): Promise<ConflictLookup> {
  return readConflicts(config, connectors, site, { transaction: transactionId, limit: MAX_ROWS_OF_ONE });
}

/** The newest `limit` entries of the conflict log of `site`. */
export async function readRecentConflicts(config: Config, connectors: ConnectorRegistry, site: string, limit: number): Promise<ConflictLookup> {
  return readConflicts(config, connectors, site, { limit });
}

async function readConflicts(config: Config, connectors: ConnectorRegistry, site: string, which: { readonly transaction?: string; readonly limit: number }): Promise<ConflictLookup> {
  const { readConflicts: read } = connectorFor(connectors, config, site);
  if (!read) return { kind: 'unsupported' };
  return read(databaseUrlFor(config, site, 'monitor'), which);
}
