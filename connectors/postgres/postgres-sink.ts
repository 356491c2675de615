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
import type { ApplyErrorKind, Sink, SourceSession } from '../../src/apply/sink.ts';
import { originName } from '../../src/config/names.ts';
import { formatLsn, lsnToPosition, parseLsn, positionToLsn } from '../../src/events/position.ts';
import { microsToIso } from '../../src/events/time.ts';
import type { Position, Transaction, TransactionPart } from '../../src/events/transaction.ts';
import type { Logger } from '../../src/observability/logger.ts';
import { planChange, type TargetTable } from './apply-plan.ts';
import { classifyApplyError, describePostgresError } from './postgres-errors.ts';
import { SESSION_OPTIONS } from './session-settings.ts';
import { SitesyncError } from '../../src/errors.ts';
import { BOOKKEEPING_SCHEMA } from '../../src/config/names.ts';
import { CURRENT_SCHEMA_VERSION, decodeMessage, encodeMessage } from '../../src/events/avro-codec.ts';

const SPILL_TABLE = `${BOOKKEEPING_SCHEMA}.spilled_parts`;

export interface PostgresSinkOptions {
  readonly site: string;
  readonly url: string;
  /** Apply with session_replication_role = replica (target triggers and FK checks do not fire). */
  readonly replicaRole: boolean;
  readonly logger: Logger;
}

export class PostgresSink implements Sink {
  readonly site: string;
  private readonly sessions = new Set<PostgresSourceSession>();

  constructor(private readonly options: PostgresSinkOptions) {
    this.site = options.site;
  }

  classify(error: unknown): ApplyErrorKind {
    return classifyApplyError(error);
  }

  async openSession(source: string): Promise<SourceSession> {
    const session = new PostgresSourceSession(this.options, source, () => this.sessions.delete(session));
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
  }
}

class PostgresSourceSession implements SourceSession {
  private readonly client: pg.Client;
  private readonly origin: string;
  private readonly tables = new Map<string, TargetTable>();
  private readonly logger: Logger;
  private inTransaction = false;
  private closed = false;

  constructor(
    private readonly options: PostgresSinkOptions,
    private readonly source: string,
    private readonly onClose: () => void,
  ) {
    this.origin = originName(source, options.site);
    this.logger = options.logger.child({ source });
    this.client = new pg.Client({ connectionString: options.url, options: SESSION_OPTIONS, application_name: `sitesync apply ${source}->${options.site}` });
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
    await this.client.query(`CREATE SCHEMA IF NOT EXISTS ${BOOKKEEPING_SCHEMA}`).catch(ignoreConcurrentCreate);
    await this.client.query(
      `CREATE TABLE IF NOT EXISTS ${SPILL_TABLE} (source text, position text, part int, schema_version int NOT NULL, body bytea NOT NULL, PRIMARY KEY (source, position, part))`,
    ).catch(ignoreConcurrentCreate);
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
    const { rows } = await this.client.query<{ lsn: string | null }>('SELECT pg_replication_origin_progress($1, true)::text AS lsn', [this.origin]);
    const lsn = rows[0]?.lsn;
    return lsn == null || lsn === '0/0' ? null : lsnToPosition(parseLsn(lsn));
  }

  async apply(transactions: readonly Transaction[]): Promise<void> {
    const last = transactions[transactions.length - 1];
    if (!last) return;
    await this.inside(async () => {
      await this.begin();
      for (const tx of transactions) await this.applyChanges(tx);
      await this.commit(last.position, last.commitTimeMicros);
    });
  }

  async applyPart(transaction: Transaction, part: TransactionPart): Promise<void> {
    const key = [this.source, transaction.position];
    await this.inside(async () => {
      if (part.index === 0) {
        // The source sends a transaction again from its first part after a restart: start over.
        await this.client.query(`DELETE FROM ${SPILL_TABLE} WHERE source = $1`, [this.source]);
      } else {
        const { rows } = await this.client.query(`SELECT 1 FROM ${SPILL_TABLE} WHERE source = $1 AND position = $2 AND part = $3`, [...key, part.index - 1]);
        if (rows.length === 0) {
          throw new SitesyncError('SITESYNC_ERR_GAP', `part ${part.index} of transaction ${transaction.id} arrived, but part ${part.index - 1} never did: a message is missing; replay the transaction from the archive to resume`);
        }
      }
      if (!part.last) {
        const body = encodeMessage({ site: this.source, sourceKind: 'postgres', previous: null, transactions: [transaction], part });
        await this.client.query(
          `INSERT INTO ${SPILL_TABLE} VALUES ($1, $2, $3, $4, $5) ON CONFLICT (source, position, part) DO UPDATE SET body = excluded.body, schema_version = excluded.schema_version`,
          [...key, part.index, CURRENT_SCHEMA_VERSION, body],
        );
        return;
      }
      await this.begin();
      for (let index = 0; index < part.index; index++) {
        const { rows } = await this.client.query<{ body: Buffer; schema_version: number }>(
          `SELECT body, schema_version FROM ${SPILL_TABLE} WHERE source = $1 AND position = $2 AND part = $3`,
          [...key, index],
        );
        const spilled = rows[0];
        if (!spilled) throw new SitesyncError('SITESYNC_ERR_GAP', `part ${index} of transaction ${transaction.id} is missing from ${SPILL_TABLE}`);
        await this.applyChanges(decodeMessage(spilled.body, spilled.schema_version).transactions[0]!);
      }
      await this.applyChanges(transaction);
      await this.client.query(`DELETE FROM ${SPILL_TABLE} WHERE source = $1`, [this.source]);
      await this.commit(transaction.position, transaction.commitTimeMicros);
    });
  }

  async skip(position: Position, commitTimeMicros: bigint): Promise<void> {
    await this.inside(async () => {
      await this.begin();
      await this.commit(position, commitTimeMicros);
    });
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

  private async begin(): Promise<void> {
    await this.client.query('BEGIN');
    this.inTransaction = true;
  }

  private async rollback(): Promise<void> {
    this.inTransaction = false;
    await this.client.query('ROLLBACK');
  }

  private async commit(position: Position, commitTimeMicros: bigint): Promise<void> {
    // An xid makes the commit record carry the origin and its progress even when no row was written.
    await this.client.query('SELECT pg_current_xact_id(), pg_replication_origin_xact_setup($1, $2)', [
      formatLsn(positionToLsn(position)),
      microsToIso(commitTimeMicros),
    ]);
    this.inTransaction = false;
    await this.client.query('COMMIT');
  }

  private async applyChanges(tx: Transaction): Promise<void> {
    for (const change of tx.changes) {
      const tables = change.op === 'truncate' ? change.relations : change.op === 'message' ? [] : [change.relation];
      for (const r of tables) await this.loadTable(r.schema, r.table);
      for (const statement of planChange(change, (schema, table) => this.tables.get(`${schema}.${table}`)!)) {
        const result = await this.client.query({ name: statement.name, text: statement.text, values: statement.values as (string | null)[] });
        if (statement.expectsRow && result.rowCount === 0) {
          this.logger.warn({ tx: tx.id, op: change.op, table: change.op !== 'truncate' && change.op !== 'message' ? `${change.relation.schema}.${change.relation.table}` : undefined }, 'row to change not found at the target');
        }
      }
    }
  }

  private async loadTable(schema: string, table: string): Promise<void> {
    const key = `${schema}.${table}`;
    if (this.tables.has(key)) return;
    const { rows } = await this.client.query<{ columns: string[] | null; pk: string[] | null }>(
      `SELECT (SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
                WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '') AS columns,
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
    this.tables.set(key, { schema, table, columns: new Set(row.columns ?? []), primaryKey: row.pk && row.pk.length > 0 ? row.pk : null });
  }
}

/** Two sessions starting at once may both try to create the bookkeeping objects. */
function ignoreConcurrentCreate(error: { code?: string }): void {
  if (error.code !== '23505' && error.code !== '42P07' && error.code !== '42P06') throw error;
}
