/**
 * `sitesync verify`: compares the same tables at two or more sites while writes go on, and names the keys
 * that differ (src/verify/compare-tables.ts). This file reads the options against the configuration (pure,
 * unit-testable: every problem is a configuration error, one line, exit 2), opens one consistent table
 * reader per site through its connector, and compares the tables one after the other; main.ts only
 * declares the command and prints.
 *
 * Each site is read with the least privileged URL it has: its monitoring URL, else its capture URL, else
 * its apply URL.
 */
import { databaseOf, isConfiguredSite, siteConfig, type Config } from '../config/config-schema.ts';
import { connectorFor, type ConnectorRegistry } from '../connector.ts';
import type { TableReader } from '../capture/table-reader.ts';
import { describeError, SitesyncError } from '../errors.ts';
import { redactSecrets } from '../observability/logger.ts';
import { compareTable, DEFAULT_MAX_KEYS, type CompareOptions, type TableComparison, type VerifySite } from '../verify/compare-tables.ts';
import type { VerifyReport } from '../verify/verify-report.ts';

export interface VerifyCommandOptions {
  /** Comma-separated sites; default: every site whose database kind has a table reader. */
  readonly sites?: string;
  /** The site the others are compared with; default: the first of the sites. */
  readonly reference?: string;
  /** Comma-separated `schema.table` list; default: the reference's `tables` in the configuration. */
  readonly tables?: string;
  /** As typed: a whole number, 0 or more; default 100. */
  readonly maxKeys?: string;
}

export interface VerifyPlan {
  /** The reference first. */
  readonly sites: readonly string[];
  readonly tables: readonly { readonly schema: string; readonly table: string }[];
  readonly maxKeys: number;
}

const TABLE = /^([^.]+)\.([^.]+)$/;

function configError(message: string): SitesyncError {
  return new SitesyncError('SITESYNC_ERR_CONFIG', message);
}

function list(value: string): string[] {
  return [...new Set(value.split(',').map((item) => item.trim()).filter((item) => item !== ''))];
}

/** Checks the options against the configuration: which sites, which reference, which tables. */
export function planVerify(config: Config, options: VerifyCommandOptions, connectors: ConnectorRegistry): VerifyPlan {
  const configured = Object.keys(config.sites);
  const readable = (site: string): boolean => connectorFor(connectors, config, site).openTableReader !== undefined;
  let sites: string[];
  if (options.sites === undefined) {
    sites = configured.filter(readable);
    if (sites.length < 2) {
      throw configError(
        `verify needs two sites whose databases it can read by key, and the configuration has ${sites.length === 0 ? 'none' : `only ${sites[0]}`} (kinds: ${configured.map((s) => `${s} ${databaseOf(config, s).kind}`).join(', ')})`,
      );
    }
  } else {
    sites = list(options.sites);
    for (const site of sites) {
      if (!isConfiguredSite(config, site)) throw configError(`--sites names ${JSON.stringify(site)}, which is not in the configuration (sites: ${configured.join(', ')}); fix the name`);
      if (!readable(site)) throw configError(`--sites names ${site}, whose database kind (${databaseOf(config, site).kind}) verify cannot read by key yet; leave it out of --sites`);
    }
    if (sites.length < 2) throw configError(`--sites names ${sites.length === 0 ? 'no site' : `only ${sites[0]}`}; name two or more sites to compare, comma-separated (--sites ${configured.slice(0, 2).join(',')})`);
  }
  const reference = options.reference ?? sites[0]!;
  if (!sites.includes(reference)) {
    throw configError(`--reference ${JSON.stringify(reference)} is not one of the sites compared (${sites.join(', ')}); name one of them, or add it to --sites`);
  }
  sites = [reference, ...sites.filter((s) => s !== reference)];

  let names: readonly string[];
  if (options.tables !== undefined) {
    names = list(options.tables);
    if (names.length === 0) throw configError('--tables names no table; give schema.table names, comma-separated (--tables public.accounts,public.orders)');
    const bad = names.find((name) => !TABLE.test(name));
    if (bad !== undefined) throw configError(`--tables: ${JSON.stringify(bad)} is not a table as schema.table; write it as public.accounts`);
  } else {
    const configuredTables = siteConfig(config, reference)!.tables;
    if (configuredTables === undefined) {
      throw configError(`sites.${reference}.tables is not set (${reference} replicates every table), so verify does not know which tables to compare; name them with --tables schema.t1,schema.t2`);
    }
    names = configuredTables;
  }
  const maxKeys = options.maxKeys === undefined ? DEFAULT_MAX_KEYS : Number(options.maxKeys);
  if (options.maxKeys !== undefined && (!/^[0-9]+$/.test(options.maxKeys.trim()) || !Number.isSafeInteger(maxKeys))) {
    throw configError(`--max-keys ${JSON.stringify(options.maxKeys)} is not a number of keys; give a whole number, 0 or more (default ${DEFAULT_MAX_KEYS})`);
  }
  return {
    sites,
    tables: names.map((name) => {
      const [, schema, table] = TABLE.exec(name)!;
      return { schema: schema!, table: table! };
    }),
    maxKeys,
  };
}

/** The URL verify reads a site with: its monitoring role's, else capture's, else apply's. */
export function verifyUrlFor(config: Config, site: string): string {
  const { urls } = databaseOf(config, site);
  const url = urls.monitor ?? urls.capture ?? urls.apply;
  if (url === undefined) throw configError(`sites.${site} gives no database URL to read it with; add sites.${site}.database.monitorUrl`);
  return url;
}

/**
 * Opens a consistent reader at every site, compares every table, closes the readers. `onTable` hears each
 * table's result as soon as it is known (for output as it goes). A site that cannot be opened stops it all.
 */
export async function runVerify(
  config: Config,
  connectors: ConnectorRegistry,
  plan: VerifyPlan,
  onTable: (result: TableComparison) => void = () => undefined,
  compare: Omit<CompareOptions, 'maxKeys'> = {},
): Promise<VerifyReport> {
  const opened = await Promise.allSettled(
    plan.sites.map(async (site): Promise<VerifySite> => {
      const connector = connectorFor(connectors, config, site);
      const reader: TableReader = await connector.openTableReader!({ site, url: verifyUrlFor(config, site), consistent: true });
      return { site, reader };
    }),
  );
  const readers = opened.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
  try {
    const failed = opened.findIndex((o) => o.status === 'rejected');
    if (failed >= 0) {
      const reason = (opened[failed] as PromiseRejectedResult).reason;
      const detail = reason instanceof SitesyncError ? reason.message : describeError(reason);
      const message = `cannot read ${plan.sites[failed]}'s database: ${redactSecrets(detail)}`;
      throw reason instanceof SitesyncError ? new SitesyncError(reason.code, message) : new Error(message);
    }
    const tables: TableComparison[] = [];
    for (const { schema, table } of plan.tables) {
      const result = await compareTable(readers, schema, table, { ...compare, maxKeys: plan.maxKeys });
      tables.push(result);
      onTable(result);
    }
    return { reference: plan.sites[0]!, sites: plan.sites, tables };
  } finally {
    await Promise.all(readers.map(({ reader }) => reader.close().catch(() => undefined)));
  }
}
