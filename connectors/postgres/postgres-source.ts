/**
 * The PostgreSQL capture source: pgoutput over a logical replication slot.
 *
 * Transport: pg-logical-replication's LogicalReplicationService carries the replication connection, but
 * none of its traps can bite: its acknowledgement timer is off (timeoutSeconds 0, auto false) and its own
 * acknowledge() (which reports lsn + 1) is never called; we start replication ourselves at 0/0, so the
 * server resumes at the slot's confirmed position and never after the last *received* one; and its
 * frame listener and parser are replaced by ours (exact 64-bit LSNs, unsigned xids and OIDs, microsecond
 * times), which run synchronously on each frame before the driver reuses its buffer.
 */
import type { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import pg from 'pg';
import { LogicalReplicationService } from 'pg-logical-replication';
import type { Client } from 'pg';
import { AbstractPlugin } from 'pg-logical-replication/dist/output-plugins/abstract.plugin.js';
import type { ResumePoint, Source, SourceHandler } from '../../src/capture/source.ts';
import { ensureBookkeepingSchema } from './bookkeeping-schema.ts';
import { BOOKKEEPING_SCHEMA, MESSAGE_PREFIX, publicationName, slotName } from '../../src/config/names.ts';
import { formatLsn, lsnToPosition, parseLsn, positionToLsn } from './postgres-positions.ts';
import type { Position, SeenSites } from '../../src/events/transaction.ts';
import { describeError, SitesyncError } from '../../src/errors.ts';
import type { Logger } from '../../src/observability/logger.ts';
import { decodePgOutput, isRowChangeTag } from './pgoutput-decoder.ts';
import { describePostgresError } from './postgres-errors.ts';
import { decodeReplicationFrame, encodeStandbyStatus, isXLogData, XLOG_DATA_HEADER_LENGTH } from './replication-frames.ts';
import { CoalescedReads } from './coalesced-reads.ts';
import { setReceiveBuffer, type ReceiveBufferOutcome } from './receive-buffer.ts';
import { CONNECTION_OPTIONS } from './session-settings.ts';
import { startReplicationCommand } from './start-replication.ts';
import { TransactionAssembler } from './transaction-assembler.ts';
import { PG_TYPES_QUERY, PostgresTypes, UnknownTypeError, type PgTypeRow } from './postgres-types.ts';

/** The first PostgreSQL version whose logical slots can be failover slots (pg_create_logical_replication_slot's `failover`). */
const FAILOVER_SLOTS_VERSION = 170000;

/** How long a clean stop waits for the slot to show the last status sent. */
const SETTLE_TIMEOUT_MS = 3000;

export interface PostgresSourceOptions {
  readonly site: string;
  readonly url: string;
  /** `schema.table` names; null = every table, including tables created later. */
  readonly tables: readonly string[] | null;
  readonly maxPartBytes: number;
  /** SO_RCVBUF for the replication connection (receive-buffer.ts); 0 leaves it to the kernel. */
  readonly receiveBufferBytes: number;
  readonly logger: Logger;
}

/** Hands the replication client to us when the service starts streaming, and passes raw payloads. */
class RawPgOutput extends AbstractPlugin<{ command: string; onStart: (client: Client) => void }> {
  get name(): string {
    return 'pgoutput';
  }
  start(client: Client): Promise<unknown> {
    this.options.onStart(client);
    return client.query(this.options.command);
  }
  parse(buffer: Buffer): Buffer {
    return buffer;
  }
}

export class PostgresSource implements Source {
  readonly kind = 'postgres' as const;
  readonly site: string;
  private readonly slot: string;
  private readonly publication: string;
  private readonly pool: pg.Pool;
  private readonly types = new PostgresTypes();
  private service: LogicalReplicationService | null = null;
  private client: Client | null = null;
  private reads: CoalescedReads | null = null;
  private assembler: TransactionAssembler | null = null;
  private lastSentStatus = 0n;
  private toldReceiveBuffer = false;
  /** The replication connection's receive buffer as the kernel reports it, once set; null when it was not. */
  receiveBufferBytes: number | null = null;
  private persisted: ResumePoint = { lastPublished: null, seen: {} };
  ended: Promise<void> | null = null;

  constructor(private readonly options: PostgresSourceOptions) {
    this.site = options.site;
    this.slot = slotName(options.site);
    this.publication = publicationName(options.site);
    this.pool = new pg.Pool({ connectionString: options.url, max: 2, ...CONNECTION_OPTIONS, application_name: `sitesync capture ${options.site}` });
    // One line with the code, not the error object: pg attaches the whole client to it.
    this.pool.on('error', (error) => options.logger.warn({ code: (error as { code?: string }).code }, describeError(describePostgresError(error, options.url, options.site))));
  }

  /** Why the buffer was not set is told once per process run, not at every reconnection. */
  private noteReceiveBuffer(outcome: ReceiveBufferOutcome): void {
    if ('bytes' in outcome) {
      this.receiveBufferBytes = outcome.bytes;
      this.options.logger.debug({ receiveBufferBytes: outcome.bytes }, 'replication connection receive buffer set');
      return;
    }
    this.receiveBufferBytes = null;
    if (this.toldReceiveBuffer) return;
    this.toldReceiveBuffer = true;
    this.options.logger.warn(
      `capture.receiveBufferBytes not applied: ${outcome.notSet}; the kernel sizes the buffer, which costs the server more CPU per row: ${outcome.fix}`,
    );
  }

  async prepare(): Promise<void> {
    try {
      await this.checkServer();
      await this.ensureBookkeeping();
      await this.ensurePublication();
      await this.ensureSlot();
      await this.loadTypes();
    } catch (error) {
      throw describePostgresError(error, this.options.url, this.site);
    }
  }

  private async checkServer(): Promise<void> {
    const { rows } = await this.pool.query<{ wal_level: string; replication: boolean; superuser: boolean; user: string; encoding: string; database: string }>(
      `SELECT current_setting('wal_level') AS wal_level, r.rolreplication AS replication, r.rolsuper AS superuser, current_user AS user,
              current_setting('server_encoding') AS encoding, current_database() AS database
         FROM pg_roles r WHERE r.rolname = current_user`,
    );
    const info = rows[0];
    if (!info) throw new SitesyncError('SITESYNC_ERR_PERMISSION', `site ${this.site}: cannot read the role of the current user`);
    if (info.wal_level !== 'logical') {
      throw new SitesyncError(
        'SITESYNC_ERR_WAL_LEVEL',
        `PostgreSQL of site ${this.site} has wal_level=${info.wal_level}; sitesync needs logical: run "ALTER SYSTEM SET wal_level = logical" and restart PostgreSQL (npm run setup does it on this machine)`,
      );
    }
    if (!info.replication && !info.superuser) {
      throw new SitesyncError(
        'SITESYNC_ERR_PERMISSION',
        `role ${info.user} at site ${this.site} may not stream changes; run "ALTER ROLE ${info.user} REPLICATION" as a superuser`,
      );
    }
    // The walsender converts what it sends from the database's encoding into UTF-8 (session-settings.ts).
    // SQL_ASCII stores bytes without saying what they mean, so nothing can convert them: the walsender
    // sends them unchanged, only checked to be UTF-8, and the first value that is not stops the stream at
    // the server (invalid byte sequence for encoding "UTF8"), at the same place on every retry, while the
    // slot holds WAL. Refuse before creating anything.
    if (info.encoding === 'SQL_ASCII') {
      throw new SitesyncError(
        'SITESYNC_ERR_CONFIG',
        `database ${info.database} of site ${this.site} has encoding SQL_ASCII, whose bytes no one can convert to UTF-8; re-create it with ENCODING 'UTF8' (CREATE DATABASE … ENCODING 'UTF8' TEMPLATE template0) and restore a dump into it, or set sites.${this.site}.capture: false if this site only receives`,
      );
    }
  }

  /** sitesync's own state at a source: the position of the last transaction the broker confirmed. */
  private async ensureBookkeeping(): Promise<void> {
    await ensureBookkeepingSchema(this.pool);
    await this.pool.query(
      `CREATE TABLE IF NOT EXISTS ${BOOKKEEPING_SCHEMA}.capture_progress (site text PRIMARY KEY, last_published text, seen jsonb NOT NULL DEFAULT '{}')`,
    );
    // Added after the first release: a table from then gains the column.
    await this.pool.query(`ALTER TABLE ${BOOKKEEPING_SCHEMA}.capture_progress ADD COLUMN IF NOT EXISTS seen jsonb NOT NULL DEFAULT '{}'`);
    await this.pool.query(`ALTER TABLE ${BOOKKEEPING_SCHEMA}.capture_progress ALTER COLUMN last_published DROP NOT NULL`);
  }

  /**
   * The publication `sitesync_<site>`: every table, or the `tables` list. An existing one that already says
   * that is left as it is, so an administrator may create it (creating one needs a superuser for FOR ALL
   * TABLES, else ownership of every table) and capture then runs as a role with nothing but REPLICATION.
   */
  private async ensurePublication(): Promise<void> {
    const pub = quoteIdent(this.publication);
    const tables = this.options.tables;
    const target = tables ? `FOR TABLE ${tables.map(quoteQualified).join(', ')}` : 'FOR ALL TABLES';
    const { rows } = await this.pool.query<{ puballtables: boolean; tables: string[] | null }>(
      `SELECT p.puballtables,
              (SELECT array_agg(n.nspname || '.' || c.relname ORDER BY 1) FROM pg_publication_rel r
                 JOIN pg_class c ON c.oid = r.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE r.prpubid = p.oid) AS tables
         FROM pg_publication p WHERE p.pubname = $1`,
      [this.publication],
    );
    const existing = rows[0];
    const create = `CREATE PUBLICATION ${pub} ${target} WITH (publish_via_partition_root = true)`;
    const may = (what: string, action: () => Promise<unknown>): Promise<unknown> =>
      action().catch((error: { code?: string }) => {
        if (error.code !== '42501') throw error;
        throw new SitesyncError(
          'SITESYNC_ERR_PERMISSION',
          `capture's role at site ${this.site} may not ${what} (a superuser can, or the owner of every listed table); as one, run: ${existing ? `DROP PUBLICATION ${pub}; ` : ''}${create}`,
          { cause: error },
        );
      });
    if (!existing) {
      await may(`create publication ${this.publication}`, () => this.pool.query(create));
      this.options.logger.info({ publication: this.publication, tables: tables ?? 'all' }, 'created publication');
      return;
    }
    if (existing.puballtables !== (tables === null)) {
      // Switching between all tables and a list cannot be altered in place.
      await may(`recreate publication ${this.publication}`, async () => {
        await this.pool.query(`DROP PUBLICATION ${pub}`);
        await this.pool.query(create);
      });
      this.options.logger.info({ publication: this.publication, tables: tables ?? 'all' }, 'recreated publication for the new table list');
    } else if (tables && !sameTables(existing.tables ?? [], tables)) {
      await may(`change the tables of publication ${this.publication}`, () => this.pool.query(`ALTER PUBLICATION ${pub} SET TABLE ${tables.map(quoteQualified).join(', ')}`));
    }
  }

  private async ensureSlot(): Promise<void> {
    const { rows } = await this.pool.query<{ plugin: string; database: string }>('SELECT plugin, database FROM pg_replication_slots WHERE slot_name = $1', [this.slot]);
    const existing = rows[0];
    if (existing) {
      const db = (await this.pool.query<{ db: string }>('SELECT current_database() AS db')).rows[0]?.db;
      if (existing.plugin !== 'pgoutput' || existing.database !== db) {
        throw new SitesyncError(
          'SITESYNC_ERR_CONFIG',
          `replication slot ${this.slot} exists for database ${existing.database} with plugin ${existing.plugin}; site ${this.site} needs it on ${db} with pgoutput: drop it (SELECT pg_drop_replication_slot('${this.slot}')) if it is left over`,
        );
      }
      return;
    }
    // PostgreSQL 17 and later: a failover slot, which a standby with sync_replication_slots keeps in step, so
    // that after a failover capture resumes on the promoted server from where it confirmed (without a standby
    // so configured, the flag changes nothing).
    const version = Number((await this.pool.query<{ v: string }>(`SELECT current_setting('server_version_num') AS v`)).rows[0]?.v ?? 0);
    const create = version >= FAILOVER_SLOTS_VERSION ? `SELECT pg_create_logical_replication_slot($1, 'pgoutput', false, false, true)` : `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`;
    try {
      await this.pool.query(create, [this.slot]);
    } catch (error) {
      if ((error as { code?: string }).code === '53400') {
        throw new SitesyncError('SITESYNC_ERR_CONFIG', `PostgreSQL of site ${this.site} has no free replication slot; raise max_replication_slots and restart it`, { cause: error });
      }
      if ((error as { code?: string }).code !== '42710') throw error; // created meanwhile by another start
    }
    this.options.logger.info({ slot: this.slot }, 'created replication slot');
  }

  private async loadTypes(): Promise<void> {
    const { rows } = await this.pool.query<PgTypeRow>(PG_TYPES_QUERY);
    this.types.load(rows);
  }

  /** A query on the capture pool; a failure becomes the one line that says what happened and what to do. */
  private async query<T extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<T>> {
    try {
      return await this.pool.query<T>(text, values);
    } catch (error) {
      throw describePostgresError(error, this.options.url, this.site);
    }
  }

  async resumePoint(): Promise<ResumePoint> {
    const { rows } = await this.query<{ last_published: string | null; seen: Record<string, string> }>(
      `SELECT last_published, seen FROM ${BOOKKEEPING_SCHEMA}.capture_progress WHERE site = $1`,
      [this.site],
    );
    const row = rows[0];
    const seen: SeenSites = Object.fromEntries(Object.entries(row?.seen ?? {}).map(([site, micros]) => [site, BigInt(micros)]));
    this.persisted = { lastPublished: row?.last_published ?? null, seen };
    return this.persisted;
  }

  async open(handler: SourceHandler): Promise<void> {
    this.assembler = new TransactionAssembler({ site: this.site, maxPartBytes: this.options.maxPartBytes, types: this.types, seen: this.persisted.seen }, handler);
    const service = new LogicalReplicationService(
      { connectionString: this.options.url, ...CONNECTION_OPTIONS, application_name: `sitesync capture ${this.site}` },
      { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: false } },
    );
    this.service = service;
    const assembler = this.assembler;
    // After one message fails to decode, nothing more of this stream may reach the handler: the rest of
    // the socket chunk (that transaction's COMMIT included) is still parsed synchronously, and a
    // transaction missing a change must never be handed on.
    let broken = false;
    const onFrame = (chunk: Buffer): void => {
      if (broken) return;
      try {
        if (isXLogData(chunk)) {
          // The rows of a relayed transaction are dropped; decoding them would cost as much as this site's own.
          if (assembler.droppingChanges && isRowChangeTag(chunk[XLOG_DATA_HEADER_LENGTH])) return;
          assembler.accept(decodePgOutput(chunk.subarray(XLOG_DATA_HEADER_LENGTH)));
          return;
        }
        const frame = decodeReplicationFrame(chunk);
        if (frame.kind !== 'keepalive') return;
        if (!assembler.inTransaction) handler.idle(lsnToPosition(frame.walEnd), assembler.seen);
        if (frame.replyRequested) this.sendStatus(this.lastSentStatus);
      } catch (error) {
        broken = true;
        service.emit('error', error);
      }
    };
    const started = new Promise<void>((resolve) => service.once('start', () => resolve()));
    const command = startReplicationCommand(this.slot, this.publication);
    const plugin = new RawPgOutput({
      command,
      onStart: (client) => {
        this.client = client;
        // Frames come straight here. The service's own listener would turn each one (each row) into an LSN
        // string, an EventEmitter2 event and an unawaited promise (its acknowledge, which is off here): work
        // for nothing (the drain benchmark's two processes: 8.1 / 7.1 CPU seconds with it, 6.8 / 6.1 without).
        const connection = (client as unknown as { connection: EventEmitter & { stream?: Socket } }).connection;
        connection.removeAllListeners('copyData');
        connection.on('copyData', (message: { chunk: Buffer }) => onFrame(message.chunk));
        this.reads = connection.stream ? new CoalescedReads(connection.stream) : null;
        if (connection.stream && this.options.receiveBufferBytes > 0) this.noteReceiveBuffer(setReceiveBuffer(connection.stream, this.options.receiveBufferBytes));
      },
    });
    const failed = new Promise<never>((_, reject) => service.once('error', (error: unknown) => reject(error)));
    this.ended = Promise.race([service.subscribe(plugin, this.slot).then(() => undefined), failed]).catch((error: unknown) => {
      throw describeStreamError(error, this.options.url, this.site, this.slot);
    });
    await Promise.race([started, this.ended]);
    const confirmed = await this.query<{ lsn: string | null }>('SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1', [this.slot]);
    this.lastSentStatus = parseLsn(confirmed.rows[0]?.lsn ?? '0/0');
    this.options.logger.info({ slot: this.slot, from: confirmed.rows[0]?.lsn }, 'streaming changes');
  }

  pause(): void {
    this.reads?.pause();
  }

  resume(): void {
    this.reads?.resume();
  }

  async confirm(checkpoint: string, resume: ResumePoint): Promise<void> {
    const lsn = positionToLsn(checkpoint);
    if (lsn <= this.lastSentStatus) return;
    // Written before the slot moves: after a crash the next stream's `previous` is never behind what the
    // broker holds (so an applier can tell a resend from a gap), and its causal context is never ahead of
    // where it resumes. Written only when it changed: the write is itself a transaction in this WAL.
    if (resume.lastPublished !== this.persisted.lastPublished || resume.seen !== this.persisted.seen) {
      const seen = Object.fromEntries(Object.entries(resume.seen).map(([site, micros]) => [site, micros.toString()]));
      await this.query(
        `INSERT INTO ${BOOKKEEPING_SCHEMA}.capture_progress (site, last_published, seen) VALUES ($1, $2, $3)
         ON CONFLICT (site) DO UPDATE SET last_published = excluded.last_published, seen = excluded.seen`,
        [this.site, resume.lastPublished, JSON.stringify(seen)],
      );
      this.persisted = resume;
    }
    this.sendStatus(lsn);
  }

  /**
   * The standby status is sent and not answered, and the connection is then closed by destroying it (pg's
   * end() during a query): a status the walsender had not read by then was lost, and the next stream
   * resent what it confirmed (`test/integration/clean-stop.test.ts`). So a clean stop waits until the
   * slot shows the position.
   */
  async settle(): Promise<boolean> {
    if (this.lastSentStatus === 0n) return true;
    const deadline = Date.now() + SETTLE_TIMEOUT_MS;
    for (;;) {
      const { rows } = await this.query<{ lsn: string | null }>('SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1', [this.slot]);
      if (parseLsn(rows[0]?.lsn ?? '0/0') >= this.lastSentStatus) return true;
      if (Date.now() > deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  private sendStatus(lsn: bigint): void {
    const connection = (this.client as unknown as { connection?: { sendCopyFromChunk(b: Buffer): void } })?.connection;
    if (!connection) return;
    connection.sendCopyFromChunk(encodeStandbyStatus(lsn, BigInt(Date.now()) * 1000n));
    this.lastSentStatus = lsn;
  }

  async heartbeat(): Promise<void> {
    await this.query('SELECT pg_logical_emit_message(false, $1, $2)', [`${MESSAGE_PREFIX}_heartbeat`, this.site]);
  }

  async lag(): Promise<{ bytes: number; seconds: number } | null> {
    const { rows } = await this.pool.query<{ bytes: string | null }>(
      'SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::int8 AS bytes FROM pg_replication_slots WHERE slot_name = $1',
      [this.slot],
    );
    const bytes = rows[0]?.bytes;
    return bytes == null ? null : { bytes: Number(bytes), seconds: 0 };
  }

  async close(): Promise<void> {
    const service = this.service;
    this.service = null;
    this.client = null;
    this.reads?.stop();
    this.reads = null;
    if (service) await service.destroy().catch(() => undefined);
    await this.ended?.catch(() => undefined);
    this.ended = null;
  }

  async end(): Promise<void> {
    await this.close();
    await this.pool.end();
  }

  describeConfirmed(): string {
    return formatLsn(this.lastSentStatus);
  }
}

function describeStreamError(error: unknown, url: string, site: string, slot: string): SitesyncError {
  if (error instanceof UnknownTypeError) return new SitesyncError('SITESYNC_ERR_CATALOG_CHANGED', `site ${site}: ${error.message}`, { cause: error });
  const message = (error as Error)?.message ?? '';
  if (/is active for PID/.test(message)) {
    return new SitesyncError('SITESYNC_ERR_SITE_IN_USE', `replication slot ${slot} is in use by another process (${message}); is another "sitesync run --site ${site}" running? sitesync retries`, { cause: error });
  }
  return describePostgresError(error, url, site);
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function quoteQualified(table: string): string {
  const dot = table.indexOf('.');
  return `${quoteIdent(table.slice(0, dot))}.${quoteIdent(table.slice(dot + 1))}`;
}

/** Whether a publication's `schema.table` list is the configured one (order aside). */
function sameTables(published: readonly string[], configured: readonly string[]): boolean {
  const wanted = new Set(configured);
  return published.length === wanted.size && published.every((t) => wanted.has(t));
}
