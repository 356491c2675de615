/**
 * The MariaDB capture source: the server's binary log, read as a replica reads it (binlog-reader.ts), grouped
 * into transactions (transaction-grouper.ts).
 *
 * The server keeps no replication slot: where this site's capture is, is sitesync's own row in
 * `capture_progress` of the bookkeeping database (`sitesync` by default): site, last published position,
 * checkpoint (binlog file and offset), causal context. The first prepare() writes it at the binlog's end then,
 * which is where capture starts (`previous` null). The server keeps binlog files by its own retention
 * (binlog_expire_logs_seconds, PURGE BINARY LOGS), not until sitesync has read them: a checkpoint in a purged
 * file fails loudly and says what to do.
 *
 * The reader registers as a replica with a server id derived from the site (replicaServerId): MariaDB ends an
 * older dump of the same id when a new one starts, so a second process of one site takes over (and the first
 * fails, retrying). While the runner holds the stream paused, the server's dump thread waits on a full socket;
 * past its net_write_timeout (60 s by default) it gives up and the stream breaks, to be resumed from the
 * checkpoint like any other break.
 *
 * The row is written when what a restart needs changes (the last published position, the causal context) or
 * when the checkpoint moves to another binlog file, and at a clean stop (`settle`). A checkpoint moved only by
 * transactions that were not published (filtered, relayed without news, DDL, sitesync's own bookkeeping) is
 * kept in memory meanwhile: after a crash the stream reads them again, at most one binlog file of them, and
 * skips them again. Writing it at every confirm would loop: the write is itself a transaction in this binlog
 * (in the sitesync database, which capture ignores), whose skip moves the checkpoint, whose confirm writes…
 *
 * Local writes for conflict detection (row-writers.ts): every row change of a local transaction handed on
 * (never a relayed one) is recorded in the bookkeeping database's row_writers as this site's, at the commit
 * time published, on this source's own connections, in batches, right after it is read (LocalWriteRecorder;
 * reading pauses while too many wait). How far everything read is recorded moves the RowWriterClock this
 * site's sink waits on; a checkpoint is confirmed only once every local write before it is recorded, so that
 * after a restart capture reads again, and records again, whatever was not (a record never replaces a later
 * one: bookkeeping.ts recordLocalWrites). These writes are transactions in the binlog too, of the
 * bookkeeping database: read back as empty, they record nothing.
 *
 * Snapshots (mariadb-snapshot-control.ts): of the bookkeeping database the stream reads apply_progress (the
 * loop marker) and snapshot_markers, whose inserts the grouper hands on as snapshot markers; `snapshots` and
 * the other bookkeeping tables are filtered out before their rows are decoded.
 */
import type { Pool, PoolOptions, RowDataPacket } from 'mysql2/promise';
import mysql from 'mysql2/promise';
import type { ResumePoint, Source, SourceHandler } from '../../src/capture/source.ts';
import { BOOKKEEPING_SCHEMA } from '../../src/config/names.ts';
import { describeError, SitesyncError } from '../../src/errors.ts';
import type { SeenSites } from '../../src/events/transaction.ts';
import type { Logger } from '../../src/observability/logger.ts';
import { BinlogReader, type BinlogEvent } from './binlog-reader.ts';
import type { CatalogColumn } from './mariadb-kinds.ts';
import { compareCoordinates, fileSequence, formatCheckpoint, parseCheckpoint, type BinlogCoordinates } from './mariadb-positions.ts';
import { APPLY_PROGRESS_TABLE, SNAPSHOT_MARKERS_TABLE, SNAPSHOTS_TABLE, SYSTEM_SCHEMAS, TransactionGrouper, type TableCatalog } from './transaction-grouper.ts';
import { Bookkeeping, localWriteValues } from './bookkeeping.ts';
import { keyId, LocalWriteRecorder, localWrites, RECORD_BATCH, seenJson, type ClockAttachment, type LocalWrite, type RowWriterClock } from './row-writers.ts';

/** Seconds between the server's heartbeat events on an idle stream; a stream silent for three of them is broken. */
const HEARTBEAT_SECONDS = 10;
/** Events read and not yet grouped (waiting for a catalog lookup) above which reading pauses. */
const QUEUE_HIGH = 2000;
const QUEUE_LOW = 200;
/**
 * Local writes read and not yet recorded in row_writers above which grouping (and, once its queue fills,
 * reading) pauses, and below which it goes on: a few batches ahead of the writer, and memory bounded.
 */
const RECORD_HIGH = 4 * RECORD_BATCH;
const RECORD_LOW = RECORD_BATCH;
/** Tries of one batch of local writes that met a deadlock or a lock wait timeout (the sink writes row_writers too). */
const RECORD_TRIES = 5;
const SETTLE_TIMEOUT_MS = 3000;

export interface MariaDbSourceOptions {
  readonly site: string;
  /** `mariadb://user:password@host:3306/` (or `mysql://`). */
  readonly url: string;
  /** `schema.table` names (schema = MariaDB database); null = every table outside MariaDB's own and sitesync's. */
  readonly tables: readonly string[] | null;
  readonly maxPartBytes: number;
  readonly logger: Logger;
  /** Seconds between the server's heartbeats on an idle stream (default 10); silent for three, the stream is broken. */
  readonly heartbeatSeconds?: number;
  /**
   * The database of sitesync's own tables at this site (default `sitesync`), the same as the MariaDB sink's:
   * capture keeps its progress there and knows relayed writes by the sink's apply_progress there.
   */
  readonly bookkeepingDatabase?: string;
  /**
   * Shared with this site's sink in this process (row-writers.ts): capture moves it once every local write
   * read is recorded in row_writers, and the sink waits on it before a conflict check.
   */
  readonly rowWriters?: RowWriterClock;
}

interface Persisted {
  readonly lastPublished: string | null;
  readonly checkpoint: string;
  readonly seen: SeenSites;
}

/** The replica server id this site's reader registers with: fixed per site, so a second reader of one site replaces the first. */
export function replicaServerId(site: string): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(`sitesync:${site}`)) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return 0x80000000 + (hash % 0x7ffffffe) + 1;
}

/** mysql2 connection options from a `mariadb://` or `mysql://` URL. */
export function connectionOptions(url: string): PoolOptions {
  const u = new URL(url);
  if (u.protocol !== 'mariadb:' && u.protocol !== 'mysql:') throw new Error(`not a mariadb:// or mysql:// URL: ${u.protocol}`);
  const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
  return {
    host: u.hostname || '127.0.0.1',
    port: u.port ? Number(u.port) : 3306,
    user: decodeURIComponent(u.username) || 'root',
    password: u.password ? decodeURIComponent(u.password) : undefined,
    database: database || undefined,
  };
}

export class MariaDbSource implements Source {
  readonly kind = 'mariadb' as const;
  readonly site: string;
  ended: Promise<void> | null = null;
  private readonly pool: Pool;
  /** The bookkeeping database, and capture's progress table in it (quoted). */
  private readonly bookkeeping: string;
  private readonly progressTable: string;
  private readonly tables: Bookkeeping;
  private readonly connection: PoolOptions;
  /** The shared clock of this site, while this source lives. */
  private readonly clock: ClockAttachment | null;
  /** Records the local writes read by the open stream. */
  private recorder: LocalWriteRecorder | null = null;
  private persisted: Persisted | null = null;
  /** The last checkpoint the runner confirmed (persisted or not yet). */
  private confirmed: string | null = null;
  private reader: BinlogReader | null = null;
  private grouper: TransactionGrouper | null = null;
  private handler: SourceHandler | null = null;
  private stream: {
    queue: BinlogEvent[];
    head: number;
    pumping: boolean;
    loading: boolean;
    runnerPaused: boolean;
    queuePaused: boolean;
    recorderPaused: boolean;
    broken: boolean;
    lastReceived: number;
    fail: (error: unknown) => void;
    finish: () => void;
    watchdog: NodeJS.Timeout;
  } | null = null;
  private readonly catalogs = new Map<string, TableCatalog>();
  /** Commit time (seconds) of the last transaction read: for lag. */
  private lastEventSeconds = 0;

  constructor(private readonly options: MariaDbSourceOptions) {
    this.site = options.site;
    this.connection = connectionOptions(options.url);
    this.bookkeeping = options.bookkeepingDatabase ?? BOOKKEEPING_SCHEMA;
    if (!/^[A-Za-z_][A-Za-z0-9_$]{0,63}$/.test(this.bookkeeping)) {
      throw new SitesyncError('SITESYNC_ERR_CONFIG', `bookkeeping database name ${JSON.stringify(this.bookkeeping.slice(0, 80))} is not a plain identifier (letters, digits, _, $; at most 64); choose another`);
    }
    this.progressTable = `${quoteIdent(this.bookkeeping)}.capture_progress`;
    this.tables = new Bookkeeping(this.bookkeeping);
    this.pool = mysql.createPool({
      ...this.connection,
      // Progress, catalogs, the local writes' records and the sink's reads of the binlog's end.
      connectionLimit: 3,
      dateStrings: true,
      supportBigNumbers: true,
      bigNumberStrings: true,
      multipleStatements: false,
    });
    // One line with the code: the error object carries the connection.
    this.pool.on('connection', (connection) => connection.on('error', (error: Error) => options.logger.warn({ code: (error as { code?: string }).code }, describeError(this.describe(error)))));
    this.clock = options.rowWriters?.attach(() => this.binlogEnd()) ?? null;
  }

  private where(): string {
    return `${this.connection.host}:${this.connection.port}`;
  }

  private get user(): string {
    return String(this.connection.user);
  }

  /** A database error as the one line that says what happened and what to do. */
  private describe(error: unknown): unknown {
    if (error instanceof SitesyncError) return error;
    const e = error as { code?: string; errno?: number; message?: string };
    const message = e?.message ?? String(error);
    if (e?.errno === 1045) {
      return new SitesyncError('SITESYNC_ERR_PERMISSION', `MariaDB of site ${this.site} at ${this.where()} refused user ${this.user} (${message}); check the capture URL's user and password`, { cause: error });
    }
    if (/same server_uuid\/server_id/i.test(message)) {
      // MariaDB ends the older of two dumps registered with one replica id (replicaServerId: one per site).
      return new SitesyncError('SITESYNC_ERR_SITE_IN_USE', `another binlog reader of site ${this.site} took over from this one (${message}); is another "sitesync run --site ${this.site}" running? sitesync retries`, { cause: error });
    }
    if (e?.errno === 1236 && /could not find first log|purged|impossible position/i.test(message)) {
      return new SitesyncError(
        'SITESYNC_ERR_CONFIG',
        `MariaDB of site ${this.site} no longer has the binary log capture must resume from (${message}): the changes written there never reached the other sites; copy this site's data to them (or accept the loss), then run "DELETE FROM ${this.bookkeeping}.capture_progress WHERE site = '${this.site}'" so that capture starts again at the end of the binlog, and keep binlogs longer (binlog_expire_logs_seconds)`,
        { cause: error },
      );
    }
    if (e?.errno === 1236) {
      return new SitesyncError('SITESYNC_ERR_DATABASE_UNREACHABLE', `MariaDB of site ${this.site} stopped sending its binary log (${message}); sitesync retries`, { cause: error });
    }
    const network = ['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EHOSTUNREACH', 'ETIMEDOUT', 'EPIPE', 'PROTOCOL_CONNECTION_LOST', 'ER_SERVER_SHUTDOWN', 'ER_CONNECTION_KILLED'];
    if ((e?.code && network.includes(e.code)) || e?.errno === 1053 || /closed|Connection lost|Can't write in closed state/i.test(message)) {
      return new SitesyncError('SITESYNC_ERR_DATABASE_UNREACHABLE', `lost or cannot reach MariaDB of site ${this.site} at ${this.where()} (${e?.code ?? message}); sitesync retries`, { cause: error });
    }
    return error;
  }

  private async query<T extends RowDataPacket[]>(sql: string, params: unknown[] = []): Promise<T> {
    try {
      const [rows] = await this.pool.query<T>(sql, params);
      return rows;
    } catch (error) {
      throw this.describe(error);
    }
  }

  // ─── prepare ───────────────────────────────────────────────────────────────────────────────────────────

  async prepare(): Promise<void> {
    await this.checkServer();
    await this.checkGrants();
    await this.ensureBookkeeping();
  }

  private async checkServer(): Promise<void> {
    const [info] = await this.query<RowDataPacket[]>('SELECT @@version AS version, @@log_bin AS log_bin, @@binlog_format AS format, @@binlog_row_image AS image');
    const version = String(info?.version ?? '');
    const where = `MariaDB ${version} of site ${this.site} at ${this.where()}`;
    if (Number(info?.log_bin) !== 1) {
      throw new SitesyncError(
        'SITESYNC_ERR_CONFIG',
        `${where} has the binary log off (log_bin=OFF), which capture reads: add "log_bin = mysql-bin", "binlog_format = ROW", "binlog_row_image = FULL", "binlog_row_metadata = FULL" and a unique "server_id" under [mariadb] in its my.cnf and restart it`,
      );
    }
    const settings: [string, string, string][] = [
      ['binlog_format', String(info?.format ?? ''), 'ROW'],
      ['binlog_row_image', String(info?.image ?? ''), 'FULL'],
    ];
    let metadata: string;
    try {
      const [row] = await this.query<RowDataPacket[]>('SELECT @@binlog_row_metadata AS metadata');
      metadata = String(row?.metadata ?? '');
    } catch {
      throw new SitesyncError('SITESYNC_ERR_CONFIG', `${where} has no binlog_row_metadata (MariaDB 10.5 or later has it): sitesync needs the column names and keys it writes into the binlog; upgrade MariaDB`);
    }
    settings.push(['binlog_row_metadata', metadata, 'FULL']);
    for (const [name, value, wanted] of settings) {
      if (value.toUpperCase() !== wanted) {
        throw new SitesyncError(
          'SITESYNC_ERR_CONFIG',
          `${where} has ${name}=${value}; capture needs ${wanted}: add "${name} = ${wanted}" under [mariadb] in its my.cnf and run SET GLOBAL ${name} = '${wanted}' (sessions already connected keep the old value until they reconnect)`,
        );
      }
    }
  }

  /** The grants the capture user needs: reading the binlog, and SELECT on what it captures (for information_schema). */
  private async checkGrants(): Promise<void> {
    const rows = await this.query<RowDataPacket[]>('SHOW GRANTS');
    const grants = rows.map((row) => String(Object.values(row)[0] ?? ''));
    const [who] = await this.query<RowDataPacket[]>('SELECT CURRENT_USER() AS user');
    const account = quoteAccount(String(who?.user ?? this.user));
    const global = privilegesOn(grants, '*.*');
    const has = (set: Set<string>, privilege: string): boolean => set.has('ALL PRIVILEGES') || set.has(privilege);
    const missing: string[] = [];
    if (!has(global, 'REPLICATION SLAVE')) missing.push('REPLICATION SLAVE');
    if (!has(global, 'BINLOG MONITOR') && !has(global, 'REPLICATION CLIENT') && !has(global, 'SUPER')) missing.push('BINLOG MONITOR');
    if (missing.length > 0) {
      throw new SitesyncError(
        'SITESYNC_ERR_PERMISSION',
        `user ${account} at site ${this.site} may not read the binary log (it lacks ${missing.join(' and ')}); as an administrator run: GRANT ${missing.join(', ')} ON *.* TO ${account} (MariaDB before 10.5: REPLICATION CLIENT instead of BINLOG MONITOR)`,
      );
    }
    if (has(global, 'SELECT')) return;
    const tables = this.options.tables;
    if (tables === null) {
      throw new SitesyncError(
        'SITESYNC_ERR_PERMISSION',
        `user ${account} at site ${this.site} captures every table but may not read them all (it needs their column types from information_schema); as an administrator run: GRANT SELECT ON *.* TO ${account}, or list the tables to capture`,
      );
    }
    const unreadable = tables.filter((name) => {
      const [database, table] = splitTable(name);
      return !has(privilegesOn(grants, `${quoteIdent(database)}.*`), 'SELECT') && !has(privilegesOn(grants, `${quoteIdent(database)}.${quoteIdent(table)}`), 'SELECT');
    });
    if (unreadable.length > 0) {
      throw new SitesyncError(
        'SITESYNC_ERR_PERMISSION',
        `user ${account} at site ${this.site} may not read ${unreadable.join(', ')} (capture needs their column types from information_schema); as an administrator run: ${unreadable.map((t) => `GRANT SELECT ON ${quoteQualified(t)} TO ${account}`).join('; ')}`,
      );
    }
  }

  /** The bookkeeping table, and this site's row in it: the first start fixes where capture begins (the binlog's end then). */
  private async ensureBookkeeping(): Promise<void> {
    const account = this.user;
    try {
      await this.query(`CREATE DATABASE IF NOT EXISTS ${quoteIdent(this.bookkeeping)}`);
      await this.query(
        `CREATE TABLE IF NOT EXISTS ${this.progressTable} (site VARCHAR(40) NOT NULL PRIMARY KEY, last_published VARCHAR(64) NULL, checkpoint VARCHAR(300) NOT NULL, seen JSON NOT NULL) ENGINE=InnoDB`,
      );
      await this.query(this.tables.createRowWriters());
      const rows = await this.query<RowDataPacket[]>(`SELECT checkpoint FROM ${this.progressTable} WHERE site = ?`, [this.site]);
      if (rows.length > 0) return;
      const end = await this.binlogEnd();
      await this.query(`INSERT IGNORE INTO ${this.progressTable} (site, last_published, checkpoint, seen) VALUES (?, NULL, ?, '{}')`, [this.site, formatCheckpoint(end)]);
      this.options.logger.info({ checkpoint: formatCheckpoint(end) }, 'capture of this site starts at the current end of the binary log');
    } catch (error) {
      const errno = (error as { cause?: { errno?: number }; errno?: number })?.errno ?? (error as { cause?: { errno?: number } })?.cause?.errno;
      if (errno === 1044 || errno === 1142) {
        throw new SitesyncError(
          'SITESYNC_ERR_PERMISSION',
          `user ${account} at site ${this.site} may not keep capture's progress in database ${this.bookkeeping}; as an administrator run: GRANT CREATE, SELECT, INSERT, UPDATE, DELETE ON ${quoteIdent(this.bookkeeping)}.* TO ${quoteAccount(account)}`,
          { cause: error },
        );
      }
      throw error;
    }
  }

  /** The server's current binlog file and its end (SHOW MASTER STATUS, or SHOW BINARY LOG STATUS where that is gone). */
  private async binlogEnd(): Promise<BinlogCoordinates> {
    let rows: RowDataPacket[];
    try {
      rows = await this.query<RowDataPacket[]>('SHOW MASTER STATUS');
    } catch (error) {
      if ((error as { errno?: number }).errno !== 1064) throw error;
      rows = await this.query<RowDataPacket[]>('SHOW BINARY LOG STATUS');
    }
    const row = rows[0];
    if (!row) throw new SitesyncError('SITESYNC_ERR_CONFIG', `MariaDB of site ${this.site} at ${this.where()} reports no binary log (SHOW MASTER STATUS is empty): is log_bin on?`);
    return { file: String(row.File), offset: Number(row.Position) };
  }

  private async binaryLogs(): Promise<{ file: string; size: number }[]> {
    const rows = await this.query<RowDataPacket[]>('SHOW BINARY LOGS');
    return rows.map((row) => ({ file: String(row.Log_name), size: Number(row.File_size) }));
  }

  // ─── resume point and confirmation ────────────────────────────────────────────────────────────────────

  private async readPersisted(): Promise<Persisted> {
    const rows = await this.query<RowDataPacket[]>(`SELECT last_published, checkpoint, seen FROM ${this.progressTable} WHERE site = ?`, [this.site]);
    const row = rows[0];
    if (!row) {
      await this.ensureBookkeeping();
      return this.readPersisted();
    }
    const raw = typeof row.seen === 'string' ? (JSON.parse(row.seen) as Record<string, string>) : ((row.seen ?? {}) as Record<string, string>);
    const seen: SeenSites = Object.fromEntries(Object.entries(raw).map(([site, micros]) => [site, BigInt(micros)]));
    this.persisted = { lastPublished: row.last_published === null ? null : String(row.last_published), checkpoint: String(row.checkpoint), seen };
    return this.persisted;
  }

  async resumePoint(): Promise<ResumePoint> {
    const persisted = await this.readPersisted();
    return { lastPublished: persisted.lastPublished, seen: persisted.seen };
  }

  async confirm(checkpoint: string, resume: ResumePoint): Promise<void> {
    const persisted = this.persisted ?? (await this.readPersisted());
    // A checkpoint is where the next stream starts reading: every local write before it must be recorded
    // in row_writers first, or a crash would lose its record (recorded right after reading: rarely a wait).
    await this.recorder?.whenThrough(parseCheckpoint(checkpoint));
    this.confirmed = checkpoint;
    const movedFile = parseCheckpoint(checkpoint).file !== parseCheckpoint(persisted.checkpoint).file;
    if (resume.lastPublished === persisted.lastPublished && sameSeen(resume.seen, persisted.seen) && !movedFile) return;
    await this.write({ lastPublished: resume.lastPublished, checkpoint, seen: resume.seen });
  }

  private async write(next: Persisted): Promise<void> {
    const seen = Object.fromEntries(Object.entries(next.seen).map(([site, micros]) => [site, micros.toString()]));
    await this.query(
      `INSERT INTO ${this.progressTable} (site, last_published, checkpoint, seen) VALUES (?, ?, ?, ?)
       ON DUPLICATE KEY UPDATE last_published = VALUES(last_published), checkpoint = VALUES(checkpoint), seen = VALUES(seen)`,
      [this.site, next.lastPublished, next.checkpoint, JSON.stringify(seen)],
    );
    this.persisted = next;
  }

  /** A clean stop: the last confirmed checkpoint is written if it is not yet, so the next start resumes there. */
  async settle(): Promise<boolean> {
    const confirmed = this.confirmed;
    const persisted = this.persisted;
    if (confirmed === null || persisted === null || persisted.checkpoint === confirmed) return true;
    const written = this.write({ ...persisted, checkpoint: confirmed }).then(
      () => true,
      (error: unknown) => {
        this.options.logger.warn(describeError(error));
        return false;
      },
    );
    return Promise.race([written, new Promise<boolean>((resolve) => setTimeout(() => resolve(false), SETTLE_TIMEOUT_MS).unref())]);
  }

  // ─── the stream ──────────────────────────────────────────────────────────────────────────────────────

  async open(handler: SourceHandler): Promise<void> {
    const persisted = await this.readPersisted();
    const start = parseCheckpoint(persisted.checkpoint);
    await this.checkStart(start);
    this.confirmed = persisted.checkpoint;
    const heartbeatSeconds = this.options.heartbeatSeconds ?? HEARTBEAT_SECONDS;
    // Every local write read is recorded in row_writers; every event read moves the mark that says how far.
    let failStream = (_error: unknown): void => undefined;
    const record = (batch: readonly LocalWrite[]): Promise<void> =>
      this.recordLocal(batch).catch((error: unknown) => {
        failStream(error);
        throw error;
      });
    const recorder = new LocalWriteRecorder(record, start, {
      through: (at) => this.clock?.advance(at),
      recorded: () => this.recorderBacklog(),
    });
    this.recorder = recorder;
    this.clock?.advance(start);
    let lastSeen: { readonly seen: SeenSites; readonly json: string } | null = null;
    const seen = (s: SeenSites): string => {
      if (lastSeen?.seen !== s) lastSeen = { seen: s, json: seenJson(s) };
      return lastSeen.json;
    };
    const runner = handler;
    handler = {
      transaction: (tx, part, checkpoint) => {
        recorder.add(localWrites(tx, seen(tx.seen)));
        this.recorderBacklog();
        runner.transaction(tx, part, checkpoint);
        if (checkpoint !== null) recorder.mark(parseCheckpoint(checkpoint));
      },
      skipped: (position, checkpoint, reason, seenSites) => {
        runner.skipped(position, checkpoint, reason, seenSites);
        recorder.mark(parseCheckpoint(checkpoint));
      },
      idle: (checkpoint, seenSites) => {
        runner.idle(checkpoint, seenSites);
        recorder.mark(parseCheckpoint(checkpoint));
      },
    };
    const grouper = new TransactionGrouper(
      {
        site: this.site,
        maxPartBytes: this.options.maxPartBytes,
        tables: this.options.tables,
        seen: persisted.seen,
        start,
        catalog: (database, table) => this.catalogs.get(`${database}.${table}`),
        bookkeeping: this.bookkeeping,
      },
      handler,
    );
    this.grouper = grouper;
    this.handler = handler;
    this.catalogs.clear();

    let finish!: () => void;
    let fail!: (error: unknown) => void;
    const ended = new Promise<void>((resolve, reject) => {
      finish = resolve;
      fail = reject;
    });
    ended.catch(() => undefined);
    const stream = {
      queue: [] as BinlogEvent[],
      head: 0,
      pumping: false,
      loading: false,
      runnerPaused: false,
      queuePaused: false,
      recorderPaused: false,
      broken: false,
      lastReceived: Date.now(),
      fail: (error: unknown): void => {
        if (stream.broken) return;
        stream.broken = true;
        recorder.fail(this.describe(error));
        clearInterval(stream.watchdog);
        fail(this.describe(error));
        void this.reader?.stop();
      },
      finish: (): void => {
        stream.broken = true;
        recorder.fail(new SitesyncError('SITESYNC_ERR_DATABASE_UNREACHABLE', `the binlog stream of site ${this.site} ended; sitesync restarts it`));
        clearInterval(stream.watchdog);
        finish();
      },
      watchdog: setInterval(() => {
        if (stream.runnerPaused || stream.queuePaused || stream.recorderPaused) {
          stream.lastReceived = Date.now();
          return;
        }
        if (Date.now() - stream.lastReceived > 3 * heartbeatSeconds * 1000) {
          stream.fail(new SitesyncError('SITESYNC_ERR_DATABASE_UNREACHABLE', `the binlog stream of site ${this.site} from ${this.where()} sent nothing, not even a heartbeat, for ${3 * heartbeatSeconds} s; sitesync reconnects`));
        }
      }, heartbeatSeconds * 1000),
    };
    stream.watchdog.unref();
    this.stream = stream;
    failStream = stream.fail;

    const reader = new BinlogReader(
      {
        connection: { ...this.connection, database: undefined },
        file: start.file,
        offset: start.offset,
        serverId: replicaServerId(this.site),
        ...this.filters(),
        heartbeatSeconds,
      },
      (event) => {
        stream.lastReceived = Date.now();
        stream.queue.push(event);
        if (!stream.queuePaused && stream.queue.length - stream.head > QUEUE_HIGH) {
          stream.queuePaused = true;
          this.applyPause();
        }
        this.pump();
      },
    );
    this.reader = reader;
    reader.ended.then(
      () => stream.finish(),
      (error: unknown) => stream.fail(error),
    );
    this.ended = ended;
    try {
      await Promise.race([reader.start(), ended]);
    } catch (error) {
      throw this.describe(error);
    }
    this.options.logger.info({ from: persisted.checkpoint, serverId: replicaServerId(this.site) }, 'reading the binary log');
  }

  /** Fails before connecting when the checkpoint's binlog file is gone (purged) or shorter than the checkpoint. */
  private async checkStart(start: BinlogCoordinates): Promise<void> {
    const logs = await this.binaryLogs();
    const file = logs.find((log) => log.file === start.file);
    if (!file) {
      const first = logs[0]?.file ?? 'none';
      const purged = logs.length > 0 && compareCoordinates(start, { file: first, offset: 0 }) < 0;
      throw new SitesyncError(
        'SITESYNC_ERR_CONFIG',
        `MariaDB of site ${this.site} no longer has binlog file ${start.file} that capture resumes from (${purged ? 'purged: ' : ''}its oldest is ${first}): what was written there never reached the other sites; copy this site's data to them (or accept the loss), run "DELETE FROM ${this.bookkeeping}.capture_progress WHERE site = '${this.site}'" so that capture starts again at the end of the binlog, and keep binlogs longer (binlog_expire_logs_seconds)`,
      );
    }
    if (start.offset > file.size) {
      throw new SitesyncError(
        'SITESYNC_ERR_CONFIG',
        `binlog file ${start.file} of site ${this.site} is ${file.size} bytes, shorter than capture's checkpoint ${formatCheckpoint(start)} (was the binary log reset?); run "DELETE FROM ${this.bookkeeping}.capture_progress WHERE site = '${this.site}'" to start again at the end of the binlog`,
      );
    }
  }

  /** The reader's schema filters: spare decoding rows that are not captured (the grouper filters anyway). */
  private filters(): { includeSchema?: Record<string, string[] | true>; excludeSchema?: Record<string, string[] | true> } {
    const tables = this.options.tables;
    if (tables === null) {
      // sitesync's own tables are never captured: only apply_progress (the loop marker) and snapshot_markers
      // (each insert a snapshot marker, transaction-grouper.ts) are read.
      const excludeSchema: Record<string, string[] | true> = { [this.bookkeeping]: ['capture_progress', 'row_writers', 'conflicts', 'spilled_parts', 'parked', SNAPSHOTS_TABLE] };
      for (const schema of SYSTEM_SCHEMAS) excludeSchema[schema] = true;
      return { excludeSchema };
    }
    const includeSchema: Record<string, string[]> = { [this.bookkeeping]: [APPLY_PROGRESS_TABLE, SNAPSHOT_MARKERS_TABLE] };
    for (const name of tables) {
      const [database, table] = splitTable(name);
      (includeSchema[database] ??= []).push(table);
    }
    return { includeSchema };
  }

  /** Groups the events read, in order; waits (reading paused when too many wait) while a table's catalog loads. */
  private pump(): void {
    const stream = this.stream;
    const grouper = this.grouper;
    if (!stream || !grouper || stream.pumping || stream.broken) return;
    stream.pumping = true;
    try {
      while (stream.head < stream.queue.length && !stream.runnerPaused && !stream.recorderPaused && !stream.broken) {
        const event = stream.queue[stream.head]!;
        if (event.type === 'tablemap' && grouper.captures(event.database, event.table) && !this.catalogs.has(`${event.database}.${event.table}`)) {
          if (!stream.loading) {
            stream.loading = true;
            this.loadCatalog(event.database, event.table).then(
              (catalog) => {
                this.catalogs.set(`${event.database}.${event.table}`, catalog);
                stream.loading = false;
                this.pump();
              },
              (error: unknown) => stream.fail(error),
            );
          }
          return;
        }
        if (event.type === 'query' && !/^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|XA)\b/i.test(event.query)) {
          this.catalogs.clear(); // DDL: the next table maps are described again
        }
        if (event.type === 'gtid') this.lastEventSeconds = event.timestamp;
        stream.queue[stream.head] = undefined as unknown as BinlogEvent;
        stream.head++;
        if (event.type === 'other') {
          // Between transactions, the log is read up to its end: what the sink's wait compares with the
          // binlog's end (a new file begins with such events, and no transaction may follow for a while).
          if (!grouper.inTransaction) this.recorder?.mark({ file: grouper.coordinates.file, offset: event.end });
          continue;
        }
        grouper.accept(event);
      }
      if (stream.head >= stream.queue.length) {
        stream.queue = [];
        stream.head = 0;
      } else if (stream.head > 4096) {
        stream.queue = stream.queue.slice(stream.head);
        stream.head = 0;
      }
      if (stream.queuePaused && stream.queue.length - stream.head < QUEUE_LOW) {
        stream.queuePaused = false;
        this.applyPause();
      }
    } catch (error) {
      stream.fail(error);
    } finally {
      stream.pumping = false;
    }
  }

  private applyPause(): void {
    const stream = this.stream;
    if (!stream || !this.reader) return;
    if (stream.runnerPaused || stream.queuePaused || stream.recorderPaused) this.reader.pause();
    else this.reader.resume();
  }

  /** Reading pauses while too many local writes wait to be recorded, and goes on below a lower mark. */
  private recorderBacklog(): void {
    const stream = this.stream;
    const recorder = this.recorder;
    if (!stream || !recorder) return;
    const backlog = recorder.backlog;
    if (!stream.recorderPaused && backlog > RECORD_HIGH) {
      stream.recorderPaused = true;
      this.applyPause();
    } else if (stream.recorderPaused && backlog < RECORD_LOW) {
      stream.recorderPaused = false;
      this.applyPause();
      this.pump();
    }
  }

  /**
   * Records a batch of local writes in row_writers (bookkeeping.ts recordLocalWrites: an entry is replaced
   * only by a later write), one statement, keys in order; a write met twice in the batch once, the later.
   * Capture ignores the bookkeeping database, so these writes come back only as empty transactions.
   */
  private async recordLocal(batch: readonly LocalWrite[]): Promise<void> {
    const byKey = new Map<string, LocalWrite>();
    for (const write of batch) byKey.set(keyId(write.key), write);
    const writes = [...byKey.values()].sort((a, b) => (a.key.table < b.key.table ? -1 : a.key.table > b.key.table ? 1 : Buffer.compare(a.key.hash, b.key.hash)));
    const sql = this.tables.recordLocalWrites(writes.length);
    const values = writes.flatMap((write) => localWriteValues(write, this.site));
    for (let attempt = 1; ; attempt++) {
      try {
        await this.pool.query(sql, values);
        return;
      } catch (error) {
        const errno = (error as { errno?: number }).errno;
        // The sink writes row_writers too (its own rows' locks): a deadlock or a lock wait is tried again.
        if ((errno === 1213 || errno === 1205) && attempt < RECORD_TRIES) {
          await new Promise((resolve) => setTimeout(resolve, 50 * attempt));
          continue;
        }
        throw this.describe(error);
      }
    }
  }

  private async loadCatalog(database: string, table: string): Promise<TableCatalog> {
    const columns = await this.query<RowDataPacket[]>(
      `SELECT COLUMN_NAME AS name, COLUMN_TYPE AS columnType, DATA_TYPE AS dataType, NUMERIC_PRECISION AS numericPrecision, NUMERIC_SCALE AS numericScale,
              DATETIME_PRECISION AS datetimePrecision, CHARACTER_MAXIMUM_LENGTH AS characterMaximumLength, COLUMN_KEY AS columnKey
         FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`,
      [database, table],
    );
    let checks: RowDataPacket[] = [];
    try {
      checks = await this.query<RowDataPacket[]>('SELECT CHECK_CLAUSE AS clause FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?', [database, table]);
    } catch {
      // MariaDB before 10.3.10 has no CHECK_CONSTRAINTS: JSON columns then read as strings.
    }
    const [engine] = await this.query<RowDataPacket[]>(
      `SELECT e.TRANSACTIONS AS transactions FROM information_schema.TABLES t LEFT JOIN information_schema.ENGINES e ON e.ENGINE = t.ENGINE WHERE t.TABLE_SCHEMA = ? AND t.TABLE_NAME = ?`,
      [database, table],
    );
    const clauses = new Set(checks.map((row) => String(row.clause).replace(/\s+/g, '')));
    const number = (value: unknown): number | null => (value === null || value === undefined ? null : Number(value));
    const byName = new Map<string, CatalogColumn>();
    for (const row of columns) {
      const name = String(row.name);
      byName.set(name, {
        name,
        columnType: String(row.columnType),
        dataType: String(row.dataType),
        numericPrecision: number(row.numericPrecision),
        numericScale: number(row.numericScale),
        datetimePrecision: number(row.datetimePrecision),
        characterMaximumLength: number(row.characterMaximumLength),
        json: clauses.has(`json_valid(\`${name.replace(/`/g, '``')}\`)`),
      });
    }
    return {
      columns: byName,
      primaryKey: columns.filter((row) => row.columnKey === 'PRI').map((row) => String(row.name)),
      transactional: engine?.transactions === undefined || engine.transactions === null ? true : String(engine.transactions) === 'YES',
    };
  }

  pause(): void {
    if (!this.stream) return;
    this.stream.runnerPaused = true;
    this.applyPause();
  }

  resume(): void {
    if (!this.stream) return;
    this.stream.runnerPaused = false;
    this.applyPause();
    this.pump();
  }

  /** When nothing is open, the read position is a place to resume from: it never passes data not yet read. */
  async heartbeat(): Promise<void> {
    const grouper = this.grouper;
    if (!grouper || !this.handler || !this.stream || this.stream.broken || grouper.inTransaction) return;
    this.handler.idle(grouper.checkpoint, grouper.seen);
  }

  async lag(): Promise<{ bytes: number; seconds: number } | null> {
    const checkpoint = this.confirmed ?? this.persisted?.checkpoint;
    if (!checkpoint) return null;
    const from = parseCheckpoint(checkpoint);
    const logs = await this.binaryLogs();
    let bytes = 0;
    for (const log of logs) {
      const order = fileSequence(log.file) - fileSequence(from.file);
      if (order > 0) bytes += log.size;
      else if (order === 0) bytes += Math.max(0, log.size - from.offset);
    }
    const seconds = bytes > 0 && this.lastEventSeconds > 0 ? Math.max(0, Date.now() / 1000 - this.lastEventSeconds) : 0;
    return { bytes, seconds };
  }

  async close(): Promise<void> {
    const reader = this.reader;
    const stream = this.stream;
    this.reader = null;
    if (reader) await reader.stop();
    stream?.finish();
    // Nothing is recorded until the next open: a sink waiting for it hears so now (a transient error).
    this.clock?.interrupt();
    await this.ended?.catch(() => undefined);
    this.ended = null;
    this.stream = null;
    this.grouper = null;
    this.handler = null;
  }

  async end(): Promise<void> {
    await this.close();
    this.clock?.detach();
    await this.pool.end();
  }

  /** For logs: the last confirmed checkpoint. */
  describeConfirmed(): string {
    return this.confirmed ?? 'none';
  }
}

function sameSeen(a: SeenSites, b: SeenSites): boolean {
  if (a === b) return true;
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((key) => Object.hasOwn(b, key) && b[key] === a[key]);
}

function splitTable(name: string): [string, string] {
  const dot = name.indexOf('.');
  if (dot <= 0) throw new SitesyncError('SITESYNC_ERR_CONFIG', `table ${JSON.stringify(name)} is not database.table`);
  return [name.slice(0, dot), name.slice(dot + 1)];
}

function quoteIdent(name: string): string {
  return `\`${name.replace(/`/g, '``')}\``;
}

function quoteQualified(name: string): string {
  const [database, table] = splitTable(name);
  return `${quoteIdent(database)}.${quoteIdent(table)}`;
}

/** `user@host` as CURRENT_USER() prints it, quoted as GRANT takes it: `'user'@'host'`. */
function quoteAccount(account: string): string {
  const at = account.lastIndexOf('@');
  if (at < 0) return `'${account}'`;
  return `'${account.slice(0, at)}'@'${account.slice(at + 1)}'`;
}

/** The privileges `SHOW GRANTS` lines give on one object (`*.*`, `` `db`.* ``, `` `db`.`t` ``), upper-case. */
function privilegesOn(grants: readonly string[], object: string): Set<string> {
  const privileges = new Set<string>();
  for (const line of grants) {
    const m = /^GRANT (.+?) ON (\S+) TO /i.exec(line);
    if (!m || m[2] !== object) continue;
    for (const privilege of m[1]!.split(',')) privileges.add(privilege.trim().toUpperCase().replace(/\s*\(.*\)$/, ''));
  }
  return privileges;
}
