/**
 * The connector contract: what one kind of database (PostgreSQL, MariaDB…) gives the core. Each connector
 * is one folder, `connectors/<kind>/`, with the same role-named files (`<kind>-source.ts`, `-sink.ts`,
 * `-status.ts`, `-config.ts`, `-positions.ts`) and an `index.ts` that exports its Connector;
 * `connectors/index.ts` registers them all. The core never imports a connector: the composition root
 * (`src/cli/main.ts`, and tests) hands the registry to what needs one.
 *
 * A site names its database in the configuration as `database: {kind, url}` (or the `postgres:`
 * shorthand); `connectorFor` finds its connector and says, in one line, what to fix when there is none.
 */
import type { Source } from './capture/source.ts';
import type { Sink } from './apply/sink.ts';
import type { JoinBook, JoinBookOptions } from './apply/join-book.ts';
import type { TableReader, TableReaderOptions } from './capture/table-reader.ts';
import type { SnapshotControl, SnapshotControlOptions } from './capture/snapshot-control.ts';
import type { ConflictKind, ConflictPolicy } from './apply/conflict-policy.ts';
import type { Config } from './config/config-schema.ts';
import { databaseOf, siteConfig } from './config/config-schema.ts';
import { SitesyncError } from './errors.ts';
import type { Position } from './events/transaction.ts';
import type { Logger } from './observability/logger.ts';

/** A conflict a sink resolved, for the conflict log and metrics. */
export interface ResolvedConflict {
  readonly source: string;
  readonly kind: ConflictKind;
  readonly table: string;
  readonly resolution: 'apply' | 'skip';
}

export interface SourceOptions {
  readonly site: string;
  /** The capture role's URL. */
  readonly url: string;
  /** `schema.table` names; null = every table, including tables created later. */
  readonly tables: readonly string[] | null;
  readonly config: Config;
  readonly logger: Logger;
}

export interface SinkOptions {
  readonly site: string;
  /** The apply role's URL. */
  readonly url: string;
  readonly config: Config;
  /** The conflict policy of a table (config.conflicts resolved per table). */
  readonly conflictPolicy: (schema: string, table: string) => ConflictPolicy;
  /** Told of every conflict resolved (after the commit that recorded it). */
  readonly onConflict: (conflict: ResolvedConflict) => void;
  readonly logger: Logger;
}

/** What keeps this site's log for its capture (a PostgreSQL slot, a MariaDB binary log reader). */
export interface CaptureStatus {
  /** What it is, as an operator would look for it: `slot sitesync_paris`. */
  readonly name: string;
  readonly exists: boolean;
  /** Being read right now (by this site's process). */
  readonly active: boolean;
  /** Confirmed and current positions in the database's own display form. */
  readonly confirmed: string | null;
  readonly current: string;
  /** Bytes of log written past the confirmed position (capture lag). */
  readonly lagBytes: number | null;
  /** Bytes of log the database keeps on disk for it; null when it keeps none for it. */
  readonly retainedBytes: number | null;
  /** How an operator lets it go, when the site no longer captures (SQL to run). */
  readonly release: string;
}

/** How far one source site has been applied at this site. */
export interface AppliedStatus {
  readonly source: string;
  /** Where the progress is kept: `origin sitesync_london_to_paris`, `sitesync.apply_progress`. */
  readonly name: string;
  /** The applied position (the source kind's, as it travels), or null: nothing applied yet. */
  readonly position: Position | null;
}

export interface SiteDatabaseStatus {
  readonly capture: CaptureStatus;
  readonly applied: readonly AppliedStatus[];
}

/** A source kind's positions: the width and meaning of their hex digits are the connector's own. */
export interface PositionFormat {
  /** Whether `position` is one of this kind's. */
  isPosition(position: string): boolean;
  /** A position as a person types it (the display form, or the position itself in any case); null if it is none. */
  parse(text: string): Position | null;
  /** One position in the display form, for messages: `0/16B3748`. */
  readonly example: string;
  /** The form the database's own tools print: `0/16B3748` (PostgreSQL), `mysql-bin.000042:1234`. */
  describe(position: Position): string;
}

/** One thing `sitesync setup` found at a site's database: what is wrong (or was done), and how to fix it. */
export interface DatabaseFinding {
  /** error: the site cannot run until it is fixed; warning: it runs, but look at it; done: setup did it. */
  readonly severity: 'error' | 'warning' | 'done';
  readonly problem: string;
  /** What to run or change (SQL the connector cannot run itself), empty for `done`. */
  readonly fix: string;
}

export interface Connector {
  readonly kind: string;
  /** What the configuration's URLs for this kind look like, for error messages: `postgres://user@host:5432/db`. */
  readonly urlExample: string;
  readonly positions: PositionFormat;
  /** A problem with a site's URL for this kind, in one line, or null. */
  checkUrl(url: string): string | null;
  /** Reads the site's log; absent for a store that only receives (an analytics database): its sites set `capture: false`. */
  createSource?(options: SourceOptions): Source & { end(): Promise<void> };
  createSink(options: SinkOptions): Sink;
  /**
   * Runs one read-only SQL statement at the site's database for `sitesync query`, through the running
   * process when the database allows one process only (DuckDB); connectors people query with their own
   * tools have none.
   */
  query?(url: string, sql: string, options: QueryOptions): Promise<QueryResult>;
  /**
   * The site's conflict log with its monitoring URL, newest first: the entries of one remote transaction, or
   * the latest `limit`. Never throws: what stops the read is its `reason`. Connectors that keep no log have none.
   */
  readConflicts?(url: string, which: { readonly transaction?: string; readonly limit: number }): Promise<ConflictLogRead>;
  /** The site's capture and apply state, read with its monitoring URL; `sources` are the sites it applies from. */
  readStatus(url: string, site: string, sources: readonly string[]): Promise<SiteDatabaseStatus>;
  /**
   * For `sitesync setup`: creates what sitesync keeps at the site's database when it may, and says what an
   * administrator must still do there, with the statements to run. Connectors whose source and sink prepare
   * everything themselves at start (PostgreSQL, MariaDB) have none.
   */
  checkDatabase?(urls: { readonly capture: string | null; readonly apply: string }, site: string): Promise<readonly DatabaseFinding[]>;
  /** Reads a site's existing rows by key (snapshots, `sitesync verify`); connectors that cannot have none. */
  openTableReader?(options: TableReaderOptions): Promise<TableReader>;
  /** A site's snapshots and their markers in its log; with openTableReader, what online snapshots need. */
  openSnapshotControl?(options: SnapshotControlOptions): SnapshotControl;
  /** What a joining site and its donor write down (`sitesync join`); connectors without one cannot join or donate. */
  openJoinBook?(options: JoinBookOptions): JoinBook;
  /**
   * For `sitesync remove-site REMOVED`, at the database of `site` (every configured site in turn, REMOVED
   * first): forgets what sitesync keeps there of REMOVED, so that a site added later under the same name
   * starts afresh, neither a duplicate nor a gap. At REMOVED's own database (`site === removed`, with its
   * capture URL): its capture state (a slot, a publication, a checkpoint row) and the progress it kept of
   * every other site of `sites`; at any other (`capture` null): the progress of REMOVED kept there.
   * Idempotent: each step prints one line as it is done (`dropped slot sitesync_madrid at madrid`), or
   * `already gone: …`. Throws one line naming what and how to fix at the first step it cannot do; what was
   * done stays done, and a second run goes on from there.
   */
  forgetSite?(
    urls: { readonly capture: string | null; readonly apply: string },
    site: string,
    removed: string,
    sites: readonly string[],
    print: (line: string) => void,
  ): Promise<void>;
}

/** One resolution from a site's conflict log (kept by its sink, in the commit of the data). */
export interface ConflictLogEntry {
  /** When it was recorded (ISO 8601). */
  readonly loggedAt: string;
  readonly kind: string;
  readonly table: string;
  /** The key as the sink recorded it (JSON text). */
  readonly key: string;
  readonly remoteSite: string;
  readonly remoteTransaction: string;
  readonly localSite: string | null;
  readonly policy: string;
  readonly winner: string;
  /** applied (the remote change won) or skipped (it lost: the local write was kept). */
  readonly resolution: string;
}

/** What a conflict log gave: entries, or why it could not be read (a role without the right, a database down). */
export type ConflictLogRead = { readonly kind: 'read'; readonly entries: readonly ConflictLogEntry[] } | { readonly kind: 'unreadable'; readonly reason: string };

export interface QueryOptions {
  /** Rows returned at most; the result says when there were more. */
  readonly maxRows: number;
}

export interface QueryResult {
  readonly columns: readonly { readonly name: string; readonly type: string }[];
  /** Each value as JSON can carry it: numbers beyond 2^53, decimals, times and bytes as text. */
  readonly rows: readonly (readonly unknown[])[];
  /** More rows than `maxRows` were there. */
  readonly truncated: boolean;
}

export type ConnectorRegistry = ReadonlyMap<string, Connector>;

/** The connector of a site's database; a kind nobody registered is a configuration error. */
export function connectorFor(connectors: ConnectorRegistry, config: Config, site: string): Connector {
  const { kind } = databaseOf(config, site);
  const connector = connectors.get(kind);
  if (connector) return connector;
  throw new SitesyncError(
    'SITESYNC_ERR_CONFIG',
    `sites.${site}.database.kind = "${kind}" is not a database sitesync knows; use one of: ${[...connectors.keys()].join(', ')}`,
  );
}

/** Every site's URLs checked by its connector, before anything connects; throws the first problem. */
export function checkDatabases(connectors: ConnectorRegistry, config: Config): void {
  for (const site of Object.keys(config.sites)) {
    const connector = connectorFor(connectors, config, site);
    const database = databaseOf(config, site);
    if (!connector.createSource && siteConfig(config, site)?.capture !== false) {
      throw new SitesyncError('SITESYNC_ERR_CONFIG', `sites.${site}: a ${connector.kind} database only receives; add "capture: false" to the site`);
    }
    for (const [role, url] of Object.entries(database.urls)) {
      const problem = connector.checkUrl(url);
      if (problem) throw new SitesyncError('SITESYNC_ERR_CONFIG', `sites.${site}: the ${role} URL ${problem}; give ${connector.urlExample}`);
    }
  }
}

/** A position of `site` for logs: the display form of the site's database kind when known, else as it is. */
export function describeSitePosition(connectors: ConnectorRegistry, config: Config, site: string, position: Position | null): string {
  if (position === null) return 'none';
  const kind = Object.hasOwn(config.sites, site) ? databaseOf(config, site).kind : null;
  return (kind === null ? undefined : connectors.get(kind)?.positions.describe(position)) ?? position;
}
