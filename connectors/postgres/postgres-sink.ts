/**
 * The PostgreSQL sink. One dedicated connection per source site, holding that source's replication
 * origin session for its whole life: every transaction it commits is tagged with the origin (so this
 * site's capture drops it as a relayed write) and records the source position in the same commit
 * (pg_replication_origin_xact_setup), so the data and the checkpoint are one atomic commit. Nothing else
 * may use that connection, or local writes would be tagged and silently dropped by capture.
 *
 * Large transactions: each part but the last is kept in sitesync.spilled_parts in a commit of its own
 * (without origin progress), so the runner acknowledges it at once and a crash loses nothing; the last
 * part reads them back one at a time and applies everything, then forgets them, in one commit with the
 * position. Memory stays at one part, whatever the transaction's size.
 */
import pg from 'pg';
import type { ApplyErrorKind, NewParkedRecord, ParkedRecord, Sink, SourceSession } from '../../src/apply/sink.ts';
import { originName } from '../../src/config/names.ts';
import { comparePositions } from '../../src/events/position.ts';
import { formatLsn, lsnToPosition, parseLsn, positionToLsn } from './postgres-positions.ts';
import { rowImageBytes } from '../../src/events/encoded-row.ts';
import { microsToIso } from '../../src/events/time.ts';
import type { Change, Position, Transaction, TransactionPart } from '../../src/events/transaction.ts';
import type { Logger } from '../../src/observability/logger.ts';
import {
  planChange,
  planCopy,
  planInsertBatch,
  planOverwrite,
  planReadBatch,
  planReadWriters,
  planRecordedWriters,
  planRecordReadWriters,
  planRowLookup,
  READ_WRITER_XIDS,
  READ_WRITERS_TABLE,
  readWriterKey,
  readWriterRelation,
  type CopyPlan,
  type ReadWriterEntry,
  type ReadWriterRef,
  type RowLookup,
  type Statement,
  type TargetTable,
} from './apply-plan.ts';
import { decide, DEFAULT_POLICY, isConcurrent, type ConflictKind, type ConflictPolicy, type Decision, type Writer } from '../../src/apply/conflict-policy.ts';
import { ORIGIN_PREFIX } from '../../src/config/names.ts';
import { classifyApplyError, describePostgresError } from './postgres-errors.ts';
import { PipelinedCopy } from './pipelined-copy.ts';
import { ensureBookkeepingSchema } from './bookkeeping-schema.ts';
import { CONNECTION_OPTIONS } from './session-settings.ts';
import { SitesyncError } from '../../src/errors.ts';
import { BOOKKEEPING_SCHEMA } from '../../src/config/names.ts';
import { CURRENT_SCHEMA_VERSION, decodeMessage, encodeMessage } from '../../src/events/avro-codec.ts';

const SPILL_TABLE = `${BOOKKEEPING_SCHEMA}.spilled_parts`;
/** What this site parked (src/apply/sink.ts ParkedRecord): an operator's retry must match a row here. */
const PARKED_TABLE = `${BOOKKEEPING_SCHEMA}.parked`;
const CREATE_PARKED_TABLE = `CREATE TABLE IF NOT EXISTS ${PARKED_TABLE} (
  id uuid PRIMARY KEY, parked_at timestamptz NOT NULL DEFAULT now(), kind text NOT NULL CHECK (kind IN ('skipped', 'refused')),
  source text, transaction_id text, body_sha256 text NOT NULL, user_id text, route text NOT NULL, reason text NOT NULL,
  done_at timestamptz)`;
// A refused message's id is derived from what it is (apply-runner.ts): refused again, it keeps its record.
const INSERT_PARKED = `INSERT INTO ${PARKED_TABLE} (id, kind, source, transaction_id, body_sha256, user_id, route, reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING`;
const parkedValues = (r: NewParkedRecord): unknown[] => [r.id, r.kind, r.source, r.transactionId, r.bodySha256, r.userId, r.route, r.reason.slice(0, 2000)];

/**
 * Apply sessions give up on a statement or a lock after these, so a target that hangs (a lock held by an
 * application, a runaway statement) surfaces as a cancel, retried as transient, and is told apart from data
 * the target refuses.
 */
const STATEMENT_TIMEOUT = '10min';
const LOCK_TIMEOUT = '1min';

/**
 * Most bytes of one transaction's parts kept at a target before its last part: a source that never finishes
 * a transaction (a broken or hostile one) cannot fill the target's disk. Past it the source halts, saying so.
 * Part 0 of any transaction starts over, so one transaction per source is kept at most.
 */
export const MAX_SPILLED_BYTES = 64 * 1024 ** 3;

/** Schemas no message may write into: PostgreSQL's catalogs (every pg_* schema) and sitesync's own. */
export function isReservedPostgresSchema(schema: string): boolean {
  return schema.startsWith('pg_') || schema === 'information_schema' || schema === BOOKKEEPING_SCHEMA;
}

export interface PostgresSinkOptions {
  readonly site: string;
  readonly url: string;
  /** Apply with session_replication_role = replica (target triggers and FK checks do not fire). */
  readonly replicaRole: boolean;
  /** The conflict policy of a table; default last-writer-wins everywhere. */
  readonly conflictPolicy?: (schema: string, table: string) => ConflictPolicy;
  /** Told of every conflict resolved (after the commit that recorded it). */
  readonly onConflict?: (conflict: ConflictRecord) => void;
  /**
   * The database kind of each source site (default: every source is PostgreSQL). A PostgreSQL source's
   * progress is its replication origin's; any other kind's positions do not fit a pg_lsn, so they go in a
   * progress row (APPLY_PROGRESS) written in the same commit.
   */
  readonly sourceKindOf?: (source: string) => string;
  readonly logger: Logger;
}

/** The applied position of each source whose positions are not PostgreSQL LSNs. */
const APPLY_PROGRESS = `${BOOKKEEPING_SCHEMA}.apply_progress`;
/** What may be inlined into the setup statement (checked again where it is). */
const SAFE_POSITION = /^[0-9A-F]{1,64}$/;
const SAFE_SITE = /^[a-z][a-z0-9_]{0,39}$/;

export interface ConflictRecord {
  readonly source: string;
  readonly kind: ConflictKind;
  readonly table: string;
  readonly resolution: 'apply' | 'skip';
}

const CONFLICT_LOG = `${BOOKKEEPING_SCHEMA}.conflicts`;
/**
 * READ_WRITERS (apply-plan.ts): the source's writer of each row a snapshot addressed to this site wrote,
 * valid while the row's xmin is the xid that recorded it. Rows deleted (or truncated) since keep their
 * entry: nothing deletes it, since a later row of that key has another xmin, and the entry no longer
 * matches; the next read of the key overwrites it. Indexed by xid for READ_WRITER_XIDS.
 */
const CREATE_READ_WRITERS_TABLE = `CREATE TABLE IF NOT EXISTS ${READ_WRITERS_TABLE} (
  relation text NOT NULL, key text NOT NULL, xid xid8 NOT NULL, site text NOT NULL, commit_micros bigint NOT NULL,
  PRIMARY KEY (relation, key))`;
const CREATE_READ_WRITERS_INDEX = `CREATE INDEX IF NOT EXISTS read_writers_xid ON ${READ_WRITERS_TABLE} (xid)`;

/**
 * The transactions that recorded writers in READ_WRITERS (their xid as a row's xmin reads it), for every
 * source session of one sink: a row whose xmin is not one of them is no snapshot's row, and READ_WRITERS is
 * not asked about it (a site that never joined never asks). Loaded when the first session connects, and
 * added to by each transaction that records writers, as soon as it does: before its commit, so that no
 * other session can lock a row it wrote before its xid is here. An xid that is then rolled back is never a
 * row's xmin: it costs at most a lookup that finds nothing.
 */
class ReadWriterXids {
  readonly xids = new Set<string>();
  private loaded: Promise<void> | null = null;

  load(client: pg.Client): Promise<void> {
    this.loaded ??= (async () => {
      const { rows } = await client.query<{ xid: string }>(READ_WRITER_XIDS);
      for (const r of rows) this.xids.add(r.xid);
    })().catch((error: unknown) => {
      this.loaded = null;
      throw error;
    });
    return this.loaded;
  }
}
/** Most consecutive inserts into one table sent as one statement. */
const MAX_BATCH_ROWS = 1000;
/** Most consecutive inserts into one table sent as one COPY, in rows and in bytes of values. */
const MAX_COPY_ROWS = 10_000;
const MAX_COPY_BYTES = 8 * 1024 * 1024;
/** Most transactions of inserts sent in one query (and MAX_COPY_BYTES of rows). */
const MAX_BATCH_TRANSACTIONS = 1000;

/**
 * Where the run of inserts into one table that starts at change `start` ends (exclusive), within
 * MAX_COPY_ROWS and MAX_COPY_BYTES; `start` itself when there is none (not an insert, or a table without
 * columns, which COPY cannot name).
 */
function insertRunEnd(tx: Transaction, start: number): number {
  const changes = tx.changes;
  const first = changes[start];
  if (first?.op !== 'insert' || first.relation.columns.length === 0) return start;
  let end = start + 1;
  let bytes = rowImageBytes(first.newRow);
  while (end < changes.length && end - start < MAX_COPY_ROWS && bytes < MAX_COPY_BYTES) {
    const next = changes[end]!;
    if (next.op !== 'insert' || next.relation !== first.relation) break;
    bytes += rowImageBytes(next.newRow);
    end++;
  }
  return end;
}

type InsertChange = Extract<Change, { op: 'insert' }>;
type ReadChange = Extract<Change, { op: 'read' }>;

/** COPY met a key that was already there: the work is redone without COPY, which resolves the conflict. */
class KeyAlreadyPresent extends Error {}

/** A target transaction to open: the source position and commit time it records, and what goes with it. */
interface TransactionStart {
  readonly position: Position;
  readonly commitTimeMicros: bigint;
  /** Whether its commit waits for the WAL flush (group commit: only the last of a durable call). */
  readonly waitForDisk: boolean;
  /** A run of inserts sent with the BEGIN, as COPY. */
  readonly run: InsertRun | null;
}

/** A run of inserts into one table that goes as one COPY. */
interface InsertRun {
  readonly plan: CopyPlan;
  readonly hasPrimaryKey: boolean;
  /** Index of the first change after the run. */
  readonly end: number;
}

export class PostgresSink implements Sink {
  readonly site: string;
  private readonly sessions = new Set<PostgresSourceSession>();
  /** For the parked records, apart from every source's origin session (nothing may share those). */
  private readonly bookkeeping: pg.Pool;
  private bookkeepingReady: Promise<void> | null = null;
  private readonly readWriters = new ReadWriterXids();

  constructor(private readonly options: PostgresSinkOptions) {
    this.site = options.site;
    this.bookkeeping = new pg.Pool({ connectionString: options.url, ...CONNECTION_OPTIONS, max: 1, application_name: `sitesync apply ${options.site} bookkeeping` });
    this.bookkeeping.on('error', (error) => options.logger.warn({ reason: error.message }, 'apply bookkeeping connection lost'));
  }

  classify(error: unknown): ApplyErrorKind {
    return classifyApplyError(error);
  }

  isReservedSchema(schema: string): boolean {
    return isReservedPostgresSchema(schema);
  }

  async recordParked(record: NewParkedRecord): Promise<void> {
    await this.parkedTable();
    await this.bookkeeping.query(INSERT_PARKED, parkedValues(record));
  }

  async findParked(id: string): Promise<ParkedRecord | null> {
    await this.parkedTable();
    const { rows } = await this.bookkeeping.query<{ id: string; kind: 'skipped' | 'refused'; source: string | null; transaction_id: string | null; body_sha256: string; user_id: string | null; route: string; reason: string; done: boolean }>(
      `SELECT id::text, kind, source, transaction_id, body_sha256, user_id, route, reason, done_at IS NOT NULL AS done FROM ${PARKED_TABLE} WHERE id = $1`,
      [id],
    );
    const r = rows[0];
    return r ? { id: r.id, kind: r.kind, source: r.source, transactionId: r.transaction_id, bodySha256: r.body_sha256, userId: r.user_id, route: r.route, reason: r.reason, done: r.done } : null;
  }

  async finishParked(id: string): Promise<void> {
    await this.parkedTable();
    await this.bookkeeping.query(`UPDATE ${PARKED_TABLE} SET done_at = now() WHERE id = $1 AND done_at IS NULL`, [id]);
  }

  private parkedTable(): Promise<void> {
    this.bookkeepingReady ??= (async () => {
      await ensureBookkeepingSchema(this.bookkeeping);
      await this.bookkeeping.query(CREATE_PARKED_TABLE).catch(ignoreConcurrentCreate);
    })().catch((error: unknown) => {
      this.bookkeepingReady = null;
      throw error;
    });
    return this.bookkeepingReady;
  }

  async openSession(source: string): Promise<SourceSession> {
    const session = new PostgresSourceSession(this.options, source, this.readWriters, () => this.sessions.delete(session));
    try {
      await session.connect();
    } catch (error) {
      await session.close();
      throw describePostgresError(error, this.options.url, this.site);
    }
    this.sessions.add(session);
    return session;
  }

  async close(): Promise<void> {
    await Promise.all([...this.sessions].map((s) => s.close()));
    await this.bookkeeping.end().catch(() => undefined);
  }
}

class PostgresSourceSession implements SourceSession {
  private readonly client: pg.Client;
  private readonly origin: string;
  private readonly sourceKind: string;
  /** Progress kept in APPLY_PROGRESS (positions that are no LSN), not in the origin. */
  private readonly progressRow: boolean;
  private readonly tables = new Map<string, TargetTable>();
  private readonly logger: Logger;
  private inTransaction = false;
  /** How the open transaction ends: its origin set-up and COMMIT (begin). */
  private openEnd = 'COMMIT';
  private closed = false;
  /** Bytes of the unfinished transaction's parts kept in SPILL_TABLE (null: not read yet). */
  private spilledBytes: number | null = null;
  private commitTimestamps = true;
  /** Replication origin ids to the site they apply from (0 is this site's own writes). */
  private readonly originSites = new Map<number, string>();
  /** Conflicts recorded in the open transaction, reported once it commits; `position` is that transaction's. */
  private pendingConflicts: { readonly position: Position; readonly record: ConflictRecord }[] = [];

  constructor(
    private readonly options: PostgresSinkOptions,
    private readonly source: string,
    private readonly readWriters: ReadWriterXids,
    private readonly onClose: () => void,
  ) {
    this.origin = originName(source, options.site);
    this.sourceKind = options.sourceKindOf?.(source) ?? 'postgres';
    this.progressRow = this.sourceKind !== 'postgres';
    if (!SAFE_SITE.test(source)) throw new SitesyncError('SITESYNC_ERR_CONFIG', `source site name ${JSON.stringify(source)} is not a site name`);
    this.logger = options.logger.child({ source });
    this.client = new pg.Client({ connectionString: options.url, ...CONNECTION_OPTIONS, application_name: `sitesync apply ${source}->${options.site}` });
    this.client.on('error', (error) => this.logger.warn({ reason: error.message }, 'apply connection lost'));
  }

  async connect(): Promise<void> {
    await this.client.connect();
    await this.client.query(
      `SELECT pg_replication_origin_create($1) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = $1)`,
      [this.origin],
    ).catch((error: { code?: string }) => {
      if (error.code !== '23505') throw error; // created meanwhile
    });
    await ensureBookkeepingSchema(this.client);
    await this.client.query(
      `CREATE TABLE IF NOT EXISTS ${SPILL_TABLE} (source text, position text, part int, schema_version int NOT NULL, body bytea NOT NULL, PRIMARY KEY (source, position, part))`,
    ).catch(ignoreConcurrentCreate);
    await this.client.query(
      `CREATE TABLE IF NOT EXISTS ${CONFLICT_LOG} (
         id bigserial PRIMARY KEY, logged_at timestamptz NOT NULL DEFAULT now(),
         kind text NOT NULL, table_name text NOT NULL, key jsonb NOT NULL,
         remote_site text NOT NULL, remote_transaction text NOT NULL, remote_commit_time timestamptz NOT NULL,
         local_site text, local_commit_time timestamptz,
         policy text NOT NULL, winner text NOT NULL, resolution text NOT NULL)`,
    ).catch(ignoreConcurrentCreate);
    await this.client.query(CREATE_PARKED_TABLE).catch(ignoreConcurrentCreate);
    await this.client.query(CREATE_READ_WRITERS_TABLE).catch(ignoreConcurrentCreate);
    // CREATE INDEX takes its table's SHARE lock (and wants its owner) before it sees the index is there:
    // only when it is missing, so that a session starting never waits for another's open transaction.
    const { rows: index } = await this.client.query<{ present: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS present`, [`${BOOKKEEPING_SCHEMA}.read_writers_xid`]);
    if (!index[0]?.present) await this.client.query(CREATE_READ_WRITERS_INDEX).catch(ignoreConcurrentCreate);
    await this.readWriters.load(this.client);
    if (this.progressRow) {
      await this.client.query(`CREATE TABLE IF NOT EXISTS ${APPLY_PROGRESS} (source text PRIMARY KEY, source_kind text NOT NULL, position text NOT NULL, commit_time timestamptz NOT NULL)`).catch(ignoreConcurrentCreate);
    }
    await this.client.query(`SET statement_timeout = '${STATEMENT_TIMEOUT}'; SET lock_timeout = '${LOCK_TIMEOUT}'`);
    this.commitTimestamps = (await this.client.query<{ on: string }>(`SELECT current_setting('track_commit_timestamp') AS on`)).rows[0]?.on === 'on';
    if (!this.commitTimestamps) {
      this.logger.warn('track_commit_timestamp is off at this site: concurrent writes to the same row cannot be detected as conflicts; turn it on (npm run setup does) and restart PostgreSQL');
    }
    await this.client.query('SELECT pg_replication_origin_session_setup($1)', [this.origin]);
    if (this.options.replicaRole) {
      try {
        await this.client.query('SET session_replication_role = replica');
      } catch (error) {
        this.logger.warn(
          { err: (error as Error).message },
          'cannot set session_replication_role = replica (needs a superuser): target triggers will fire for applied rows; set apply.replicaRole: false to silence this',
        );
      }
    }
  }

  async progress(): Promise<Position | null> {
    if (this.progressRow) {
      const { rows } = await this.client.query<{ position: string }>(`SELECT position FROM ${APPLY_PROGRESS} WHERE source = $1`, [this.source]);
      return rows[0]?.position ?? null;
    }
    const { rows } = await this.client.query<{ lsn: string | null }>('SELECT pg_replication_origin_progress($1, true)::text AS lsn', [this.origin]);
    const lsn = rows[0]?.lsn;
    return lsn == null || lsn === '0/0' ? null : lsnToPosition(parseLsn(lsn));
  }

  /**
   * One target commit per source transaction, so that every row keeps its own source commit time (what
   * conflict detection compares). Commits do not wait for the WAL flush, except the last one of a durable
   * call: its flush covers every commit before it (group commit).
   *
   * Runs of inserts go as COPY. When COPY meets a key already there (a conflict, rare), everything not yet
   * committed is rolled back and done again without COPY, from the position the origin recorded.
   */
  async apply(transactions: readonly Transaction[], options: { readonly durable: boolean } = { durable: true }): Promise<void> {
    await this.inside(async () => {
      try {
        await this.applyEach(transactions, options.durable, true);
      } catch (error) {
        if (!(error instanceof KeyAlreadyPresent)) throw error;
        const uncertain = this.pendingConflicts;
        await this.rollback();
        const done = await this.progress();
        // What the rollback undid was never committed; what the origin records was (a COMMIT travels with
        // the next BEGIN, so the failed query may have committed the transaction before).
        const committed = (position: Position): boolean => done !== null && comparePositions(position, done) <= 0;
        this.report(uncertain.filter((c) => committed(c.position)));
        await this.applyEach(transactions.filter((tx) => !committed(tx.position)), options.durable, false);
      }
    });
  }

  private async applyEach(transactions: readonly Transaction[], durable: boolean, copy: boolean): Promise<void> {
    const waitFor = (i: number): boolean => durable && i === transactions.length - 1;
    for (let i = 0; i < transactions.length; ) {
      // Transactions that are each one run of inserts go out together: one write and one round trip for
      // all of them, each still its own target commit.
      const batch = copy ? await this.insertOnlyTransactionsFrom(transactions, i) : [];
      if (batch.length > 0) {
        // When the batch ends the call, its last COMMIT goes in the same query too.
        const last = i + batch.length === transactions.length;
        await this.begin(batch.map((run, k) => ({ ...transactions[i + k]!, waitForDisk: waitFor(i + k), run })), i > 0, last);
        i += batch.length;
        continue;
      }
      // Otherwise the previous transaction's COMMIT travels with this one's BEGIN, and so does a leading
      // run of inserts.
      const tx = transactions[i]!;
      const leading = copy ? await this.insertRunAt(tx, 0, 2) : null;
      await this.begin([{ ...tx, waitForDisk: waitFor(i), run: leading }], i > 0);
      await this.applyChanges(tx, copy, leading?.end ?? 0);
      i++;
    }
    if (this.inTransaction) await this.commit();
  }

  /** The transactions from `start` on that are each nothing but one run of inserts into one table. */
  private async insertOnlyTransactionsFrom(transactions: readonly Transaction[], start: number): Promise<InsertRun[]> {
    const runs: InsertRun[] = [];
    let bytes = 0;
    for (let i = start; i < transactions.length && runs.length < MAX_BATCH_TRANSACTIONS && bytes < MAX_COPY_BYTES; i++) {
      const tx = transactions[i]!;
      // The run's extent first: a transaction that is more than one run is not planned as one.
      if (tx.changes.length === 0 || insertRunEnd(tx, 0) !== tx.changes.length) break;
      const run = await this.planInsertRun(tx, 0, tx.changes.length);
      runs.push(run);
      bytes += run.plan.data.length;
    }
    return runs;
  }

  async applyPart(transaction: Transaction, part: TransactionPart): Promise<void> {
    const key = [this.source, transaction.position];
    await this.inside(async () => {
      if (part.index === 0) {
        // The source sends a transaction again from its first part after a restart: start over.
        await this.client.query(`DELETE FROM ${SPILL_TABLE} WHERE source = $1`, [this.source]);
        this.spilledBytes = 0;
      } else {
        const { rows } = await this.client.query(`SELECT 1 FROM ${SPILL_TABLE} WHERE source = $1 AND position = $2 AND part = $3`, [...key, part.index - 1]);
        if (rows.length === 0) {
          throw new SitesyncError('SITESYNC_ERR_GAP', `part ${part.index} of transaction ${transaction.id} arrived, but part ${part.index - 1} never did: a message is missing; replay the transaction from the archive to resume`);
        }
      }
      if (!part.last) {
        const body = encodeMessage({ site: this.source, sourceKind: 'postgres', previous: null, transactions: [transaction], part });
        this.spilledBytes ??= Number((await this.client.query<{ n: string }>(`SELECT coalesce(sum(octet_length(body)), 0) AS n FROM ${SPILL_TABLE} WHERE source = $1`, [this.source])).rows[0]?.n ?? 0);
        if (this.spilledBytes + body.length > MAX_SPILLED_BYTES) {
          throw new SitesyncError(
            'SITESYNC_ERR_APPLY_DATA',
            `transaction ${transaction.id} has sent ${this.spilledBytes + body.length} bytes in ${part.index + 1} parts without its last, more than a target keeps of one transaction (${MAX_SPILLED_BYTES}); see why site ${this.source} sends it, then skip it by replaying from after it`,
          );
        }
        await this.client.query(
          `INSERT INTO ${SPILL_TABLE} VALUES ($1, $2, $3, $4, $5) ON CONFLICT (source, position, part) DO UPDATE SET body = excluded.body, schema_version = excluded.schema_version`,
          [...key, part.index, CURRENT_SCHEMA_VERSION, body],
        );
        this.spilledBytes += body.length;
        return;
      }
      await this.copyOrRedo(async (copy) => {
        await this.begin([{ ...transaction, waitForDisk: true, run: null }]);
        for (let index = 0; index < part.index; index++) {
          const { rows } = await this.client.query<{ body: Buffer; schema_version: number }>(
            `SELECT body, schema_version FROM ${SPILL_TABLE} WHERE source = $1 AND position = $2 AND part = $3`,
            [...key, index],
          );
          const spilled = rows[0];
          if (!spilled) throw new SitesyncError('SITESYNC_ERR_GAP', `part ${index} of transaction ${transaction.id} is missing from ${SPILL_TABLE}`);
          await this.applyChanges(decodeMessage(spilled.body, spilled.schema_version).transactions[0]!, copy);
        }
        await this.applyChanges(transaction, copy);
        await this.client.query(`DELETE FROM ${SPILL_TABLE} WHERE source = $1`, [this.source]);
      });
      await this.commit();
    });
  }

  async skip(position: Position, commitTimeMicros: bigint, parked?: NewParkedRecord): Promise<void> {
    await this.inside(async () => {
      await this.begin([{ position, commitTimeMicros, waitForDisk: true, run: null }]);
      if (parked) await this.client.query(INSERT_PARKED, parkedValues(parked));
      await this.commit();
    });
  }

  /**
   * One target commit: the retried transaction's changes (tagged with the origin, so capture drops them as
   * relayed) and every open record of it marked done. The origin's progress does not move back: PostgreSQL
   * advances it only forward at commit.
   */
  async applyRetried(transactions: readonly Transaction[], parkedId: string): Promise<boolean> {
    const tx = transactions[0];
    if (transactions.length !== 1 || !tx) throw new SitesyncError('SITESYNC_ERR_MESSAGE_INVALID', `a retried parked message holds ${transactions.length} transactions; sitesync parks them one by one`);
    let applied = false;
    await this.inside(async () => {
      await this.begin([{ ...tx, waitForDisk: true, run: null }]);
      const { rowCount } = await this.client.query(
        `UPDATE ${PARKED_TABLE} SET done_at = now()
          WHERE transaction_id = $2 AND kind = 'skipped' AND done_at IS NULL
            AND EXISTS (SELECT 1 FROM ${PARKED_TABLE} WHERE id = $1 AND done_at IS NULL)`,
        [parkedId, tx.id],
      );
      if (!rowCount) {
        await this.rollback();
        return;
      }
      await this.applyChanges(tx, false);
      await this.commit();
      applied = true;
    });
    return applied;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.onClose();
    await this.client.end().catch(() => undefined);
  }

  /** Any failure rolls back what is open; a schema failure also forgets what was read of the catalog. */
  private async inside(work: () => Promise<void>): Promise<void> {
    try {
      await work();
    } catch (error) {
      if (this.inTransaction) await this.rollback().catch(() => undefined);
      if (classifyApplyError(error) === 'schema') this.tables.clear();
      throw error;
    }
  }

  /**
   * Runs one target transaction's work (that commits nothing before it) with COPY for runs of inserts;
   * when COPY meets a key that is already there, rolls it back and does it again without COPY.
   */
  private async copyOrRedo(work: (copy: boolean) => Promise<void>): Promise<void> {
    try {
      await work(true);
    } catch (error) {
      if (!(error instanceof KeyAlreadyPresent)) throw error;
      await this.rollback();
      await work(false);
    }
  }

  /**
   * Opens the target transactions that record each `tx.position` as applied, in one query: the origin's
   * commit position and time are set up front (they are sitesync's own formatted values, checked below,
   * never row data), and an xid makes the commit record carry the origin and its progress even when no row
   * is written. Each segment may carry a COPY of a run of inserts; every segment but the last is committed
   * by the query itself, and the last too with `commitLast`, else it stays open. With `commitOpen`, the
   * transaction open before is committed first, in the same query.
   */
  private async begin(segments: readonly TransactionStart[], commitOpen = false, commitLast = false): Promise<void> {
    const statements = segments.map(({ position, commitTimeMicros, waitForDisk, run }) => {
      const time = microsToIso(commitTimeMicros);
      if (!SAFE_POSITION.test(position) || !/^-?\d{4,6}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/.test(time)) {
        throw new SitesyncError('SITESYNC_ERR_MESSAGE_INVALID', `transaction position ${position} or commit time ${time} is not well formed`);
      }
      // The origin still tags the commit (capture drops it as relayed; conflict detection reads its site);
      // a position that is no LSN leaves the origin's own progress alone and moves the progress row instead,
      // only forward (a retried transaction is behind it). Same-kind positions have one width: "C" order is theirs.
      const lsn = this.progressRow ? '0/0' : formatLsn(positionToLsn(position));
      const progress = this.progressRow
        ? `; INSERT INTO ${APPLY_PROGRESS} AS p (source, source_kind, position, commit_time) VALUES ('${this.source}', '${this.sourceKind}', '${position}', '${time}')` +
          ` ON CONFLICT (source) DO UPDATE SET position = excluded.position, commit_time = excluded.commit_time WHERE excluded.position COLLATE "C" > p.position COLLATE "C"`
        : '';
      // The origin's position and time are set up only at the end, just before COMMIT, once everything that
      // can fail has run (SET CONSTRAINTS ALL IMMEDIATE runs deferred checks first). PostgreSQL 16 and later
      // also move a session's origin on ABORT (RecordTransactionAbort, and its WAL record through crash
      // recovery) to the position set up: set up at BEGIN, a transaction rolled back (a COPY that met a key,
      // data the target refuses, a process killed mid-transaction) would read as applied and be skipped.
      const end = `SET CONSTRAINTS ALL IMMEDIATE; SELECT pg_replication_origin_xact_setup('${lsn}', '${time}'); COMMIT`;
      const setup = `BEGIN;${waitForDisk ? '' : ' SET LOCAL synchronous_commit = off;'} SELECT pg_current_xact_id()${progress}`;
      return { body: run ? `${setup}; ${run.plan.text}` : setup, end };
    });
    const commit = commitOpen && this.inTransaction ? `${this.openEnd}; ` : '';
    const text = commit + statements.map(({ body, end }, i) => (i < statements.length - 1 || commitLast ? `${body}; ${end}` : body)).join('; ');
    // Open from here on, even if the query fails part way: a ROLLBACK then ends whatever it began.
    this.inTransaction = true;
    this.openEnd = statements[statements.length - 1]!.end;
    const runs = segments.flatMap((s) => (s.run ? [s.run] : []));
    if (runs.length > 0) await this.copy(text, runs);
    else await this.client.query(text);
    if (commitLast) this.inTransaction = false;
    if (commit || commitLast) this.reportConflicts();
  }

  private async rollback(): Promise<void> {
    this.inTransaction = false;
    this.pendingConflicts = []; // rolled back with the transaction that recorded them
    await this.client.query('ROLLBACK');
  }

  private async commit(): Promise<void> {
    this.inTransaction = false;
    await this.client.query(this.openEnd);
    this.reportConflicts();
  }

  /** Conflicts are told once the transaction that recorded them has committed. */
  private reportConflicts(): void {
    const conflicts = this.pendingConflicts;
    this.pendingConflicts = [];
    this.report(conflicts);
  }

  private report(conflicts: readonly { readonly record: ConflictRecord }[]): void {
    for (const { record } of conflicts) this.options.onConflict?.(record);
  }

  private async applyChanges(tx: Transaction, copy: boolean, from = 0): Promise<void> {
    const changes = tx.changes;
    for (let i = from; i < changes.length; ) {
      const change = changes[i]!;
      // A single insert inside a transaction stays an INSERT: it costs the same, and resolves a conflict itself.
      const run = copy ? await this.insertRunAt(tx, i, 2) : null;
      if (run) {
        await this.copy(run.plan.text, [run]);
        i = run.end;
        continue;
      }
      // A snapshot's rows into one table, as one statement.
      if (change.op === 'read') {
        let end = i + 1;
        while (end < changes.length && end - i < MAX_BATCH_ROWS) {
          const next = changes[end]!;
          if (next.op !== 'read' || next.relation !== change.relation) break;
          end++;
        }
        await this.applyReads(tx, changes.slice(i, end) as ReadChange[]);
        i = end;
        continue;
      }
      // Consecutive inserts into one table go as one statement.
      if (change.op === 'insert') {
        let end = i + 1;
        while (end < changes.length && end - i < MAX_BATCH_ROWS) {
          const next = changes[end]!;
          if (next.op !== 'insert' || next.relation !== change.relation) break;
          end++;
        }
        if (end - i > 1) {
          await this.applyInsertBatch(tx, changes.slice(i, end) as InsertChange[]);
          i = end;
          continue;
        }
      }
      await this.applyChange(tx, change);
      i++;
    }
  }

  /** The run of inserts into one table that starts at change `start`, as a COPY; null when shorter than `minRows`. */
  private async insertRunAt(tx: Transaction, start: number, minRows: number): Promise<InsertRun | null> {
    const end = insertRunEnd(tx, start);
    return end - start >= minRows ? this.planInsertRun(tx, start, end) : null;
  }

  private async planInsertRun(tx: Transaction, start: number, end: number): Promise<InsertRun> {
    const { relation } = tx.changes[start] as InsertChange;
    await this.loadTable(relation.schema, relation.table);
    const table = this.tables.get(`${relation.schema}.${relation.table}`)!;
    const rows = (tx.changes.slice(start, end) as InsertChange[]).map((c) => c.newRow);
    return { plan: planCopy(relation, rows, table), hasPrimaryKey: table.primaryKey !== null, end };
  }

  private async applyInsertBatch(tx: Transaction, inserts: readonly InsertChange[]): Promise<void> {
    const relation = inserts[0]!.relation;
    await this.loadTable(relation.schema, relation.table);
    const table = this.tables.get(`${relation.schema}.${relation.table}`)!;
    const result = await this.run(planInsertBatch(relation, inserts.map((c) => c.newRow), table));
    if (!table.primaryKey || result.rowCount === inserts.length) return;
    // Some keys were there already: find them (a row this transaction just inserted says `mine`) and
    // resolve each as a single insert's conflict would be.
    for (const change of inserts) {
      const lookup = planRowLookup(relation, change.newRow, table, this.commitTimestamps);
      const existing = (await this.run(lookup.statement)).rows[0] as { mine: boolean } | undefined;
      if (!existing || existing.mine) continue;
      const decision = await this.resolve(tx, 'insert_exists', lookup, table);
      if (decision.resolution === 'apply') await this.run(planOverwrite(relation, change.newRow, table));
    }
  }

  /**
   * A snapshot's rows: each becomes the row of its key, except, when the snapshot goes to every site, a row
   * this site last wrote in a transaction the snapshot's source had not seen (a concurrent local write, or
   * one from a third site): that write reaches the source through the mesh like any other, and the row it
   * made is kept. A snapshot sent to chosen sites (a repair, a site joining) replaces every row it names.
   *
   * Rows that carry their writer at the source (a snapshot addressed to this site) have it recorded in
   * READ_WRITERS in the same transaction: from then on the row's writer is that one, not this transaction.
   */
  private async applyReads(tx: Transaction, reads: readonly ReadChange[]): Promise<void> {
    const relation = reads[0]!.relation;
    await this.loadTable(relation.schema, relation.table);
    const table = this.tables.get(`${relation.schema}.${relation.table}`)!;
    let written = reads;
    const toEveryone = (tx.snapshot?.targets ?? null) === null;
    if (toEveryone && this.commitTimestamps) {
      const rows = reads.map((r) => r.newRow);
      const { rows: writers } = await this.run(planReadWriters(relation, rows, table));
      const found = writers as { i: string; mine: boolean; xmin: string; committed_micros: string | null; roident: number | null }[];
      const recorded = await this.recordedWriters(
        table,
        found.filter((w) => !w.mine).map((w) => ({ xmin: w.xmin, key: readWriterKey(relation, rows[Number(w.i) - 1]!, table) })),
      );
      const kept = new Set<number>();
      for (const w of found) {
        if (w.mine) continue;
        const key = readWriterKey(relation, rows[Number(w.i) - 1]!, table);
        let local: Writer | null = (key !== null ? recorded.get(key) : undefined) ?? null;
        if (local === null && w.committed_micros !== null) local = { site: await this.siteOfOrigin(w.roident ?? 0), commitTimeMicros: BigInt(w.committed_micros) };
        if (local !== null && isConcurrent(local, tx.site, tx.seen)) kept.add(Number(w.i) - 1);
      }
      if (kept.size > 0) {
        this.logger.debug({ tx: tx.id, table: `${relation.schema}.${relation.table}`, rows: kept.size }, 'snapshot rows left out: this site wrote them concurrently');
        written = reads.filter((_, i) => !kept.has(i));
      }
    }
    if (written.length === 0) return;
    await this.run(planReadBatch(relation, written.map((r) => r.newRow), table));
    const entries: ReadWriterEntry[] = [];
    for (const read of written) {
      if (!read.writer) continue;
      const key = readWriterKey(relation, read.newRow, table);
      if (key !== null) entries.push({ key, site: read.writer.site, commitTimeMicros: read.writer.commitTimeMicros });
    }
    if (entries.length === 0) return;
    const { rows } = await this.run(planRecordReadWriters(table, entries));
    this.readWriters.xids.add((rows[0] as { xid: string }).xid);
  }

  /**
   * The writers READ_WRITERS records for rows of `table` whose version (xmin) is the one the recording
   * transaction wrote, by key; READ_WRITERS is asked only for rows whose xmin recorded some.
   */
  private async recordedWriters(table: TargetTable, rows: readonly { readonly xmin: string | null | undefined; readonly key: string | null }[]): Promise<Map<string, Writer>> {
    const recorded = new Map<string, Writer>();
    const asked = rows.filter((r): r is { xmin: string; key: string } => r.key !== null && typeof r.xmin === 'string' && this.readWriters.xids.has(r.xmin));
    if (asked.length === 0) return recorded;
    const { rows: found } = await this.run(planRecordedWriters(readWriterRelation(table), asked));
    for (const r of found as { key: string; site: string; commit_micros: string }[]) recorded.set(r.key, { site: r.site, commitTimeMicros: BigInt(r.commit_micros) });
    return recorded;
  }

  /** The writer READ_WRITERS records for the row a lookup found at version `xmin`; null when none (or unknown). */
  private async recordedWriter(ref: ReadWriterRef | null | undefined, xmin: string | undefined): Promise<Writer | null> {
    if (!ref || xmin === undefined || !this.readWriters.xids.has(xmin)) return null;
    const { rows } = await this.run(planRecordedWriters(ref.relation, [{ key: ref.key, xmin }]));
    const r = rows[0] as { site: string; commit_micros: string } | undefined;
    return r ? { site: r.site, commitTimeMicros: BigInt(r.commit_micros) } : null;
  }

  private async applyChange(tx: Transaction, change: Change): Promise<void> {
    if (change.op === 'read') return this.applyReads(tx, [change]);
    const tables = change.op === 'truncate' ? change.relations : change.op === 'message' ? [] : [change.relation];
    for (const r of tables) await this.loadTable(r.schema, r.table);
    const target = (schema: string, table: string): TargetTable => this.tables.get(`${schema}.${table}`)!;
    if (change.op === 'truncate' || change.op === 'message') {
      for (const statement of planChange(change, target)) await this.run(statement);
      return;
    }
    const table = target(change.relation.schema, change.relation.table);
    const [statement] = planChange(change, target);
    if (!statement) return;
    if (change.op === 'insert') {
      if ((await this.run(statement)).rowCount !== 0 || !statement.expectsRow) return;
      // The key is there already: two sites inserted it, or it came back some other way.
      const lookup = planRowLookup(change.relation, change.newRow, table, this.commitTimestamps);
      const decision = await this.resolve(tx, 'insert_exists', lookup, table);
      if (decision.resolution === 'apply') await this.run(planOverwrite(change.relation, change.newRow, table));
      return;
    }
    const row = change.op === 'update' ? (change.oldRow ?? change.newRow) : change.oldRow;
    const lookup = planRowLookup(change.relation, row, table, this.commitTimestamps);
    const found = await this.lastWriter(lookup);
    if (found === 'missing') {
      await this.resolve(tx, change.op === 'update' ? 'update_missing' : 'delete_missing', lookup, table, null);
      return;
    }
    if (this.commitTimestamps && isConcurrent(found, tx.site, tx.seen)) {
      const decision = await this.resolve(tx, change.op === 'update' ? 'update_origin_differs' : 'delete_origin_differs', lookup, table, found);
      if (decision.resolution === 'skip') return;
    }
    await this.run(statement);
  }

  /**
   * Runs `text`, whose COPY statements read the runs' rows in order; with a primary key, a duplicate key
   * becomes KeyAlreadyPresent, and the work is redone without COPY.
   */
  private async copy(text: string, runs: readonly InsertRun[]): Promise<void> {
    try {
      await PipelinedCopy.run(this.client, text, runs.map((r) => r.plan.data));
    } catch (error) {
      if (runs.some((r) => r.hasPrimaryKey) && (error as { code?: string }).code === '23505') throw new KeyAlreadyPresent();
      throw error;
    }
  }

  private run(statement: Statement): Promise<pg.QueryResult> {
    return this.client.query({ name: statement.name, text: statement.text, values: statement.values as unknown[] });
  }

  /** Who wrote the row last: 'missing' when there is no such row, null when it cannot be known. */
  private async lastWriter(lookup: RowLookup): Promise<Writer | null | 'missing'> {
    const { rows } = await this.run(lookup.statement);
    const row = rows[0] as { mine: boolean; xmin?: string; committed_micros: string | null; roident: number | null } | undefined;
    if (!row) return 'missing';
    if (row.mine) return null;
    // A row a snapshot addressed to this site wrote, not changed since: its writer is the source's.
    const recorded = await this.recordedWriter(lookup.readWriter, row.xmin);
    if (recorded !== null) return recorded;
    if (row.committed_micros === null) return null;
    return { site: await this.siteOfOrigin(row.roident ?? 0), commitTimeMicros: BigInt(row.committed_micros) };
  }

  /** Decides a conflict, records it in the conflict log in the same transaction, and says what to do. */
  private async resolve(tx: Transaction, kind: ConflictKind, lookup: RowLookup, table: TargetTable, known?: Writer | null): Promise<Decision> {
    const local = known !== undefined ? known : await this.lastWriter(lookup).then((w) => (w === 'missing' ? null : w));
    // The source's own insert of a key it last wrote here: in its stream a delete would have come first,
    // so the row is one a snapshot read (after the insert committed) sent ahead of it. Not a conflict.
    if (kind === 'insert_exists' && local !== null && local.site === tx.site) return { resolution: 'apply', winner: 'remote' };
    const policy = this.options.conflictPolicy?.(table.schema, table.table) ?? DEFAULT_POLICY;
    const decision = decide(kind, { site: tx.site, commitTimeMicros: tx.commitTimeMicros }, local, policy);
    const tableName = `${table.schema}.${table.table}`;
    await this.client.query(
      `INSERT INTO ${CONFLICT_LOG} (kind, table_name, key, remote_site, remote_transaction, remote_commit_time, local_site, local_commit_time, policy, winner, resolution)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
      [kind, tableName, JSON.stringify(lookup.key), tx.site, tx.id, microsToIso(tx.commitTimeMicros), local?.site ?? null, local ? microsToIso(local.commitTimeMicros) : null, policy.policy, decision.winner, decision.resolution === 'apply' ? 'applied' : 'skipped'],
    );
    this.pendingConflicts.push({ position: tx.position, record: { source: this.source, kind, table: tableName, resolution: decision.resolution } });
    this.logger.debug({ tx: tx.id, kind, table: tableName, key: lookup.key, local: local?.site, winner: decision.winner }, 'conflict resolved');
    return decision;
  }

  /** The site a replication origin applies from; 0 (no origin) is this site. */
  private async siteOfOrigin(roident: number): Promise<string> {
    if (roident === 0) return this.options.site;
    if (!this.originSites.has(roident)) {
      const { rows } = await this.client.query<{ roident: number; roname: string }>('SELECT roident::int AS roident, roname FROM pg_replication_origin');
      const suffix = `_to_${this.options.site}`;
      for (const r of rows) {
        const isOurs = r.roname.startsWith(ORIGIN_PREFIX) && r.roname.endsWith(suffix);
        this.originSites.set(r.roident, isOurs ? r.roname.slice(ORIGIN_PREFIX.length, -suffix.length) : this.options.site);
      }
    }
    return this.originSites.get(roident) ?? this.options.site;
  }

  private async loadTable(schema: string, table: string): Promise<void> {
    const key = `${schema}.${table}`;
    if (this.tables.has(key)) return;
    const { rows } = await this.client.query<{ columns: string[] | null; types: string[] | null; pk: string[] | null }>(
      `SELECT (SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
                WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '') AS columns,
              (SELECT array_agg(format_type(a.atttypid, -1) ORDER BY a.attnum) FROM pg_attribute a
                WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '') AS types,
              (SELECT array_agg(a.attname::text ORDER BY array_position(i.indkey::int2[], a.attnum)) FROM pg_index i
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                WHERE i.indrelid = c.oid AND i.indisprimary) AS pk
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`,
      [schema, table],
    );
    const row = rows[0];
    if (!row) {
      throw new SitesyncError(
        'SITESYNC_ERR_APPLY_SCHEMA',
        `table ${schema}.${table} does not exist at site ${this.options.site}; create it as at site ${this.source} (sitesync retries and resumes by itself)`,
      );
    }
    const columns = row.columns ?? [];
    this.tables.set(key, {
      schema,
      table,
      columns: new Set(columns),
      columnTypes: new Map(columns.map((name, i) => [name, row.types?.[i] ?? 'text'])),
      primaryKey: row.pk && row.pk.length > 0 ? row.pk : null,
    });
  }
}

/** Two sessions starting at once may both try to create the bookkeeping objects. */
function ignoreConcurrentCreate(error: { code?: string }): void {
  if (error.code !== '23505' && error.code !== '42P07' && error.code !== '42P06') throw error;
}

