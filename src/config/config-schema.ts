/**
 * The configuration contract: the JSON Schema that validates a config file, and the type it yields.
 * Every option says its unit and default here; docs in README.md "Configuration" mirror this file.
 */
import { SITE_NAME_PATTERN } from '../events/transaction.ts';

/** Which database a site runs, and how each of sitesync's roles connects to it. */
export interface DatabaseConfig {
  /** The connector: `postgres`, `mariadb`. */
  readonly kind: string;
  /** The default URL for capture, apply and monitoring; required unless each has its own. */
  readonly url?: string;
  readonly captureUrl?: string;
  readonly applyUrl?: string;
  readonly monitorUrl?: string;
}

export interface SiteConfig {
  /** This site's database. A site gives either this or the PostgreSQL shorthand below (`postgres:` …). */
  readonly database?: DatabaseConfig;
  /**
   * Shorthand for `database: {kind: postgres, url: …}`: the PostgreSQL URL of this site's database, the
   * default for capture, apply and monitoring. Required unless each of those has a URL of its own.
   */
  readonly postgres?: string;
  /** A URL (role) for capture alone: REPLICATION, no superuser needed. Default `postgres`. */
  readonly capturePostgres?: string;
  /** A URL (role) for apply alone: owner of the replicated tables. Default `postgres`. */
  readonly applyPostgres?: string;
  /**
   * A read-only URL (role) that other sites' processes and `status` use to read this site's slot and
   * origins, so that no process needs another site's capture or apply credentials. Default `postgres`.
   */
  readonly monitorPostgres?: string;
  /**
   * Tables to replicate as `schema.table`; absent = every user table, including tables created later.
   * The same list bounds what the site accepts from the others: a change to any other table is refused.
   */
  readonly tables?: readonly string[];
  /**
   * The RabbitMQ user this site's process publishes as. Appliers refuse a message that claims this site
   * unless RabbitMQ validated it as published by this user (AMQP `user-id`). Default: the user of
   * `brokerUrl`, else of `broker.url`.
   */
  readonly brokerUser?: string;
  /** AMQP URL this site's process connects with (its own user). Default `broker.url`. */
  readonly brokerUrl?: string;
  /**
   * Whether this site's own writes are captured and sent to the others. Default true. False makes a site
   * that only receives (a reporting copy, a standby): no slot or publication at its database, and none of
   * the cost of decoding what it applied, which PostgreSQL 15 charges a capturing site in full.
   */
  readonly capture: boolean;
}

export interface ConflictsConfig {
  /** Default last-writer-wins (commit time, then site name). */
  readonly policy: 'last-writer-wins' | 'site-priority' | 'keep-local';
  /** Sites in order of precedence, for site-priority. Default empty. */
  readonly priority: readonly string[];
  /** Per `schema.table`, a policy other than the default. */
  readonly tables: Readonly<Record<string, { readonly policy: 'last-writer-wins' | 'site-priority' | 'keep-local'; readonly priority?: readonly string[] }>>;
}

export interface Config {
  readonly broker: {
    readonly url: string;
    /** Topic exchange for change messages. Default `sitesync.changes`. */
    readonly exchange: string;
    /** Stream that archives every site's messages. Default `sitesync.archive`. */
    readonly archiveStream: string;
    /** How long the archive keeps messages, in days. Default 90. */
    readonly archiveRetentionDays: number;
  };
  readonly sites: Readonly<Record<string, SiteConfig>>;
  readonly capture: {
    /** Largest message body before a transaction is split into parts, in bytes. Default 1 MiB. */
    readonly maxMessageBytes: number;
    /** Most transactions grouped into one message. Default 200. */
    readonly maxTransactionsPerMessage: number;
    /** Most messages published and not yet confirmed by the broker before capture pauses. Default 512. */
    readonly maxUnconfirmedMessages: number;
    /** Seconds between heartbeats that keep a quiet site's slot moving. Default 10; 0 turns them off. */
    readonly heartbeatSeconds: number;
    /** Seconds between standby status updates to the server. Default 1. */
    readonly statusIntervalSeconds: number;
    /** SO_RCVBUF of the replication connection, as setsockopt takes it (Linux doubles it). Default 65536,
     *  the least allowed; 0 leaves it to the kernel. Small, so the server sends the WAL in large pieces
     *  (connectors/postgres/receive-buffer.ts). */
    readonly receiveBufferBytes: number;
  };
  readonly apply: {
    /** Messages the broker may deliver ahead of the one being applied (bounds memory: up to this many
     *  message bodies are held). Default 16. */
    readonly prefetch: number;
    /** Apply with session_replication_role = replica, so that target triggers and FK checks do not
     *  fire again for rows the source already checked (as PostgreSQL's own subscriptions do). Needs a
     *  superuser; default true. */
    readonly replicaRole: boolean;
    /** Seconds to wait before retrying a source that halted (missing table, lost connection). Default 5. */
    readonly retrySeconds: number;
    /**
     * A transaction the target refuses (a constraint, a value that does not fit, a column that differs):
     * `halt` (default) stops applying from its source, in order, and retries every retrySeconds until the
     * target is fixed; `park` sets it aside in the site's parking queue and goes on (the target then lacks it).
     */
    readonly onDataError: 'halt' | 'park';
  };
  readonly watch: {
    /** Seconds between reads of the WAL retained by the slot of every site that captures (each process
     *  watches them all, so a stopped site is noticed by the others). Default 30. */
    readonly intervalSeconds: number;
    /** WAL a slot may retain, in bytes, before a warning is logged (once each time it crosses the
     *  amount). Default 1 GiB (1073741824); 0 turns the warning off (the metric stays). */
    readonly walRetentionWarnBytes: number;
  };
  /** How concurrent writes to the same row at two sites are resolved (the same way at every site). */
  readonly conflicts: ConflictsConfig;
  readonly metrics: {
    /** Port of the Prometheus /metrics endpoint; 0 turns it off. Default 0 (off). */
    readonly port: number;
  };
  readonly log: {
    readonly level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
    /** `json` (pino's JSON lines, for collectors) or `pretty` (one readable line each, for a terminal). Default json. */
    readonly format: 'json' | 'pretty';
  };
}

export const SITE_NAME = SITE_NAME_PATTERN;

export const configSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['broker', 'sites'],
  properties: {
    broker: {
      type: 'object',
      additionalProperties: false,
      required: ['url'],
      properties: {
        url: { type: 'string', pattern: '^amqps?://' },
        exchange: { type: 'string', minLength: 1, default: 'sitesync.changes' },
        archiveStream: { type: 'string', minLength: 1, default: 'sitesync.archive' },
        archiveRetentionDays: { type: 'integer', minimum: 1, default: 90 },
      },
    },
    sites: {
      type: 'object',
      minProperties: 2,
      propertyNames: { pattern: SITE_NAME },
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        properties: {
          database: {
            type: 'object',
            additionalProperties: false,
            required: ['kind'],
            properties: {
              kind: { type: 'string', pattern: '^[a-z][a-z0-9]{0,19}$' },
              url: { type: 'string', pattern: '^[a-z][a-z0-9+.-]*:' },
              captureUrl: { type: 'string', pattern: '^[a-z][a-z0-9+.-]*:' },
              applyUrl: { type: 'string', pattern: '^[a-z][a-z0-9+.-]*:' },
              monitorUrl: { type: 'string', pattern: '^[a-z][a-z0-9+.-]*:' },
            },
          },
          postgres: { type: 'string', pattern: '^postgres(ql)?://' },
          capturePostgres: { type: 'string', pattern: '^postgres(ql)?://' },
          applyPostgres: { type: 'string', pattern: '^postgres(ql)?://' },
          monitorPostgres: { type: 'string', pattern: '^postgres(ql)?://' },
          brokerUser: { type: 'string', minLength: 1, maxLength: 255 },
          brokerUrl: { type: 'string', pattern: '^amqps?://' },
          tables: {
            type: 'array',
            minItems: 1,
            items: { type: 'string', pattern: '^[^.]+\\.[^.]+$' },
          },
          capture: { type: 'boolean', default: true },
        },
      },
    },
    capture: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        maxMessageBytes: { type: 'integer', minimum: 4096, default: 1048576 },
        maxTransactionsPerMessage: { type: 'integer', minimum: 1, default: 200 },
        maxUnconfirmedMessages: { type: 'integer', minimum: 1, default: 512 },
        heartbeatSeconds: { type: 'number', minimum: 0, default: 10 },
        statusIntervalSeconds: { type: 'number', exclusiveMinimum: 0, default: 1 },
        receiveBufferBytes: { type: 'integer', minimum: 0, default: 65536 },
      },
    },
    apply: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        prefetch: { type: 'integer', minimum: 1, maximum: 65535, default: 16 },
        replicaRole: { type: 'boolean', default: true },
        retrySeconds: { type: 'number', exclusiveMinimum: 0, default: 5 },
        onDataError: { enum: ['halt', 'park'], default: 'halt' },
      },
    },
    watch: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        intervalSeconds: { type: 'number', exclusiveMinimum: 0, default: 30 },
        walRetentionWarnBytes: { type: 'integer', minimum: 0, default: 1073741824 },
      },
    },
    conflicts: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        policy: { enum: ['last-writer-wins', 'site-priority', 'keep-local'], default: 'last-writer-wins' },
        priority: { type: 'array', items: { type: 'string', pattern: SITE_NAME }, default: [] },
        tables: {
          type: 'object',
          default: {},
          propertyNames: { pattern: '^[^.]+\\.[^.]+$' },
          additionalProperties: {
            type: 'object',
            additionalProperties: false,
            required: ['policy'],
            properties: {
              policy: { enum: ['last-writer-wins', 'site-priority', 'keep-local'] },
              priority: { type: 'array', items: { type: 'string', pattern: SITE_NAME } },
            },
          },
        },
      },
    },
    metrics: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: { port: { type: 'integer', minimum: 0, maximum: 65535, default: 0 } },
    },
    log: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        level: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info' },
        format: { enum: ['json', 'pretty'], default: 'json' },
      },
    },
  },
} as const;

/** The user an AMQP URL logs in as (amqplib's default is guest). */
export function brokerUserOf(url: string): string {
  try {
    return decodeURIComponent(new URL(url).username) || 'guest';
  } catch {
    return 'guest';
  }
}

/** The AMQP URL the process of `site` connects with. */
export function brokerUrlFor(config: Config, site: string): string {
  return siteConfig(config, site)?.brokerUrl ?? config.broker.url;
}

/** The RabbitMQ user whose messages are the only ones accepted as coming from `site`. */
export function expectedBrokerUser(config: Config, site: string): string {
  const c = siteConfig(config, site);
  return c?.brokerUser ?? brokerUserOf(c?.brokerUrl ?? config.broker.url);
}

/** A configured site's settings, or undefined: prototype-safe (`constructor` is a valid site name). */
export function siteConfig(config: Config, site: string): SiteConfig | undefined {
  return Object.hasOwn(config.sites, site) ? config.sites[site] : undefined;
}

export function isConfiguredSite(config: Config, site: string): boolean {
  return Object.hasOwn(config.sites, site);
}

export type DatabaseRole = 'capture' | 'apply' | 'monitor';

/** A site's database: its kind and the URL of each role it uses (the PostgreSQL shorthand read as `database`). */
export function databaseOf(config: Config, site: string): { readonly kind: string; readonly urls: Partial<Record<DatabaseRole, string>> } {
  const c = siteConfig(config, site)!;
  const d: DatabaseConfig = c.database ?? { kind: 'postgres', url: c.postgres, captureUrl: c.capturePostgres, applyUrl: c.applyPostgres, monitorUrl: c.monitorPostgres };
  const urls: Partial<Record<DatabaseRole, string>> = {};
  const capture = d.captureUrl ?? d.url;
  const apply = d.applyUrl ?? d.url;
  const monitor = d.monitorUrl ?? d.url;
  if (c.capture && capture !== undefined) urls.capture = capture;
  if (apply !== undefined) urls.apply = apply;
  if (monitor !== undefined) urls.monitor = monitor;
  return { kind: d.kind, urls };
}

/** The URL of one role of a site's database (capture, apply, monitor), falling back to its default URL. */
export function databaseUrlFor(config: Config, site: string, role: DatabaseRole): string {
  // load-config.ts's crossCheck made sure every role a site uses has a URL.
  const c = siteConfig(config, site)!;
  const d = c.database;
  if (d) return (role === 'capture' ? d.captureUrl : role === 'apply' ? d.applyUrl : d.monitorUrl) ?? d.url!;
  return (role === 'capture' ? c.capturePostgres : role === 'apply' ? c.applyPostgres : c.monitorPostgres) ?? c.postgres!;
}

/** The sites whose writes are captured and sent, in configuration order. */
export function capturingSites(config: Config): string[] {
  return Object.entries(config.sites).flatMap(([site, c]) => (c.capture ? [site] : []));
}

/** What each schema pattern means, for error messages a person can act on. */
export const PATTERN_HINTS: Readonly<Record<string, string>> = {
  '^amqps?://': 'an AMQP URL such as amqp://guest:guest@127.0.0.1:5672/',
  '^postgres(ql)?://': 'a PostgreSQL URL such as postgres://postgres@127.0.0.1:5432/paris',
  '^[a-z][a-z0-9+.-]*:': 'a database URL such as postgres://postgres@127.0.0.1:5432/paris, mysql://root@127.0.0.1:3306/paris or duckdb:analytics/paris.duckdb',
  '^[a-z][a-z0-9]{0,19}$': 'a database kind such as postgres or mariadb',
  '^[^.]+\\.[^.]+$': 'a table as schema.table, such as public.users',
  [SITE_NAME]: 'a site name of lower-case letters, digits and _ starting with a letter (at most 40)',
};
