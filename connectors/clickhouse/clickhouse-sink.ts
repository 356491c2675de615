/**
 * The ClickHouse sink: a receive-only site whose store keeps, per replicated table, every change (history) and
 * each key's row now (current state), written in batches as an analytics engine wants them. A batch of one
 * source's transactions is folded (src/apply/analytics-fold.ts) over what ClickHouse holds of the keys it
 * touches, read with FINAL, so conflicts are decided as a PostgreSQL site decides them; then its history rows
 * and its final rows are inserted, and its position recorded.
 *
 * What exactly-once means here. ClickHouse has no transaction across tables (nor, in practice, across two
 * inserts): a batch is several inserts, and a crash can stop it between any two. It is repaired, never seen
 * twice, by three things together:
 * 1. Before its first data insert, the batch is written down in its source's progress row as *pending*: its
 *    positions, the apply versions it uses and its transactions (encoded as on the wire). The row that records
 *    the batch's last position clears it. A sink that opens (or a session after a failure) finds a pending
 *    batch and applies that batch again — the same transactions, grouped the same, with the same versions —
 *    before anything else of that source, whatever the broker redelivers and however it regroups it.
 * 2. Each data insert carries an `insert_deduplication_token` derived from (source, first and last position
 *    of the batch, table, history|current), and every data table keeps the last 10,000 tokens
 *    (`non_replicated_deduplication_window`): the insert a crashed attempt made is dropped whole when made
 *    again. Because a pending batch is applied again first, no other insert of that source comes between.
 *    (Replicated tables an operator creates deduplicate by themselves.) Tables are independent in the fold, so
 *    the inserts the crashed attempt had not made yet are computed again from the same state as the first time;
 *    those it had made would now be folded over their own rows (an insert meeting the row it wrote loses its
 *    conflict), which is why they must be dropped, not written again: for history the tokens are what keeps
 *    `_sitesync_applied` right; for current state the second fold only ever writes a subset of the same rows
 *    with the same version, and the tokens are a second guard.
 *    The tests cut a batch short after each of its writes in turn (test/conformance/harnesses/clickhouse.ts).
 * 3. ReplacingMergeTree collapses what is left: history by (site, position, seq), one row per change however a
 *    batch was grouped; current state by key, the highest `_sitesync_version` winning. That version is an apply
 *    sequence that only grows (blocks reserved in `_sitesync_versions` before use), not the commit time: the
 *    fold already decided conflicts, so the row applied last must win even with an older commit time.
 * Truncations are rows too (every row written before the batch, written again as deleted with a lower version
 * than the batch's rows), so doing one again cannot remove the batch's own rows.
 *
 * Readers must use FINAL (or argMax by `_sitesync_version`): before a merge a table holds every version. A
 * reader may also see a batch's rows before its position is recorded: there is no isolation between inserts.
 * Inserts are as durable as the server makes them (`fsync_after_insert`); `durable: false` changes nothing.
 *
 * Deletes: `deletes=hard` (default) writes a deleted key's row once more with `_sitesync_deleted = 1`, the
 * is-deleted parameter of the table's ReplacingMergeTree, so FINAL leaves it out; `deletes=soft` writes the same
 * row into a table whose flag is a plain column, so FINAL keeps it, flagged. A table without a key has history
 * only. Sessions of all sources of a site take turns (one lock per sink): a fold must see every earlier write.
 *
 * Large transactions: parts before the last are kept in `_sitesync_spilled_parts`; the last part assembles the
 * transaction in memory (the fold needs all of it) and applies it as one batch, so a transaction in parts is
 * held whole at its last part: MAX_ASSEMBLED_BYTES (encoded) bounds it; past that it is a data error.
 */
import { fold, keyOf, keysTouched, tableName, type FinalRow, type HistoryEntry, type StoredRow } from '../../src/apply/analytics-fold.ts';
import type { ConflictPolicy } from '../../src/apply/conflict-policy.ts';
import { DEFAULT_POLICY } from '../../src/apply/conflict-policy.ts';
import type { ApplyErrorKind, NewParkedRecord, ParkedRecord, Sink, SourceSession } from '../../src/apply/sink.ts';
import { BOOKKEEPING_SCHEMA } from '../../src/config/names.ts';
import type { ResolvedConflict } from '../../src/connector.ts';
import { SitesyncError } from '../../src/errors.ts';
import { CURRENT_SCHEMA_VERSION, decodeMessage, encodeMessage } from '../../src/events/avro-codec.ts';
import { comparePositions } from '../../src/events/position.ts';
import type { Position, RelationInfo, Transaction, TransactionPart } from '../../src/events/transaction.ts';
import { microsToTimestampText } from '../../src/events/value-parser.ts';
import type { Logger } from '../../src/observability/logger.ts';
import type { ClickHouseConfig } from './clickhouse-config.ts';
import type { ClickHouseDriver, QuerySettings } from './clickhouse-driver.ts';
import { ClickHouseDataError, classifyClickHouseError, describeApplyError, describeClickHouseError, errorLine } from './clickhouse-errors.ts';
import { DATETIME64_MAX_MICROS, DATETIME64_MIN_MICROS, type ColumnCodec, type Written } from './clickhouse-kinds.ts';
import {
  APPLIED,
  BEFORE,
  bookkeepingTables,
  COMMIT_MICROS,
  COMMIT_TIME,
  currentMetaSelect,
  dedupToken,
  DELETED,
  literal,
  OP,
  PARKED_TABLE,
  POSITION,
  PROGRESS_TABLE,
  progressQuery,
  qualified,
  quoteIdent,
  quoteString,
  selectByKeys,
  SEQ,
  SITE,
  SPECIAL,
  SPILLED_TABLE,
  TRANSACTION,
  truncationMarkers,
  UNCHANGED,
  VERSION,
  VERSIONS_TABLE,
} from './clickhouse-statements.ts';
import { schemaError, TableCatalog, type StoreTable } from './clickhouse-tables.ts';

export interface ClickHouseSinkOptions {
  readonly site: string;
  /** The apply URL, for messages (redacted there). */
  readonly url: string;
  readonly config: ClickHouseConfig;
  /** The driver (production: ClickHouseHttpDriver over the URL; tests: an embedded engine). */
  readonly openDriver: () => ClickHouseDriver;
  readonly logger: Logger;
  /** The conflict policy of a table (default last-writer-wins). */
  readonly conflictPolicy?: (schema: string, table: string) => ConflictPolicy;
  /** Told of every conflict resolved, once its batch is recorded. */
  readonly onConflict?: (conflict: ResolvedConflict) => void;
  /**
   * `schema.table` names the site replicates (sites.<site>.tables); null or absent: every table. A ClickHouse
   * site creates the tables its sources describe, so it creates none that is not listed.
   */
  readonly tables?: readonly string[] | null;
  /** The database kind of a source site, written with a pending batch (metadata only). */
  readonly sourceKindOf?: (source: string) => string | undefined;
}

/** Most bytes of one transaction's parts, encoded, assembled in memory at its last part. */
export const MAX_ASSEMBLED_BYTES = 1024 ** 3;
/** Numbers of the apply sequence reserved at a time (one insert into _sitesync_versions per block). */
const VERSION_BLOCK = 1_000_000n;
/** Key literals per lookup statement, in bytes (the statement may be 16 MiB: LOOKUP_SETTINGS). */
const LOOKUP_BYTES = 1024 * 1024;
const LOOKUP_SETTINGS: QuerySettings = { max_query_size: 16 * 1024 * 1024 };

/** One source's progress row. */
interface Progress {
  readonly position: Position | null;
  readonly commitMicros: bigint;
  readonly pending: Pending | null;
}

/** A batch written down before its data (see the header). */
interface Pending {
  readonly first: Position;
  readonly last: Position;
  readonly version: bigint;
  /** The parked record this batch is the operator's retry of ('' for none). */
  readonly retryOf: string;
  /** A transaction in parts: its id and how many parts before the last are in _sitesync_spilled_parts. */
  readonly transaction: string;
  readonly parts: number;
}

/** What a batch writes, computed before anything is written. */
interface Plan {
  readonly history: Map<string, Record<string, unknown>[]>;
  readonly current: Map<string, Record<string, unknown>[]>;
  readonly truncations: { readonly table: StoreTable; readonly writer: Parameters<typeof truncationMarkers>[4] }[];
  readonly conflicts: readonly ResolvedConflict[];
}

/** Runs one piece of work at a time, in order. */
class Turns {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(work: () => Promise<T>): Promise<T> {
    const result = this.tail.then(work);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

export class ClickHouseSink implements Sink {
  readonly site: string;
  private readonly driver: ClickHouseDriver;
  private readonly turns = new Turns();
  private store: Promise<Store> | null = null;
  private readonly sessions = new Set<ClickHouseSession>();

  constructor(private readonly options: ClickHouseSinkOptions) {
    this.site = options.site;
    this.driver = options.openDriver();
  }

  classify(error: unknown): ApplyErrorKind {
    return classifyClickHouseError(error);
  }

  /** Source schemas map into one database as `schema__table`; only sitesync's own names are refused. */
  isReservedSchema(schema: string): boolean {
    return schema === BOOKKEEPING_SCHEMA || schema.startsWith('_sitesync');
  }

  async recordParked(record: NewParkedRecord): Promise<void> {
    await this.turns.run(async () => (await this.ready()).writeParked([{ ...record, done: false }]));
  }

  async findParked(id: string): Promise<ParkedRecord | null> {
    return (await (await this.ready()).parked(`id = ${quoteString(id.toLowerCase())}`))[0] ?? null;
  }

  async finishParked(id: string): Promise<void> {
    await this.turns.run(async () => {
      const store = await this.ready();
      const open = await store.parked(`id = ${quoteString(id.toLowerCase())} AND done = 0`);
      await store.writeParked(open.map((r) => ({ ...r, done: true })));
    });
  }

  async openSession(source: string): Promise<SourceSession> {
    const store = await this.ready();
    const session = new ClickHouseSession(store, this.turns, source, this.options.logger.child({ source }), () => this.sessions.delete(session));
    await this.turns.run(() => session.recover()).catch((error: unknown) => {
      throw describeApplyError(error, { source, site: this.site, what: 'the batch a crash left pending' });
    });
    this.sessions.add(session);
    return session;
  }

  async close(): Promise<void> {
    await Promise.all([...this.sessions].map((s) => s.close()));
    await this.driver.close().catch(() => undefined);
  }

  /** sitesync's tables there, what the server can store, and the apply sequence: once per sink. */
  private ready(): Promise<Store> {
    this.store ??= Store.open(this.driver, this.options).catch((error: unknown) => {
      this.store = null;
      throw describeClickHouseError(error, this.options.url, this.site);
    });
    return this.store;
  }
}

/** Everything one sink knows of its ClickHouse database; used by one session at a time (Turns). */
class Store {
  readonly database: string;
  private readonly replicated: ReadonlySet<string> | null;
  private nextVersion = 0n;
  private reservedUpTo = 0n;

  private constructor(
    readonly driver: ClickHouseDriver,
    readonly options: ClickHouseSinkOptions,
    readonly catalog: TableCatalog,
  ) {
    this.database = options.config.database;
    this.replicated = options.tables ? new Set(options.tables) : null;
  }

  static async open(driver: ClickHouseDriver, options: ClickHouseSinkOptions): Promise<Store> {
    const database = options.config.database;
    for (const table of bookkeepingTables(database)) await driver.command(table.create);
    const time64 = (await driver.query(`SELECT name FROM system.data_type_families WHERE name = 'Time64'`)).rows.length > 0;
    const flag = (await driver.query(`SELECT name FROM system.settings WHERE name = 'enable_time_time64_type'`)).rows.length > 0;
    const ddl: QuerySettings = time64 && flag ? { enable_time_time64_type: 1 } : {};
    return new Store(driver, options, new TableCatalog(driver, database, options.config.deletes, { time64 }, ddl));
  }

  table(name: string): string {
    return qualified(this.database, name);
  }

  /** `n` consecutive numbers of the apply sequence, greater than any ever used at this database. */
  async versions(n: bigint): Promise<bigint> {
    if (this.nextVersion === 0n || this.nextVersion + n - 1n > this.reservedUpTo) {
      const rows = (await this.driver.query(`SELECT toString(greatest((SELECT max(reserved) FROM ${this.table(VERSIONS_TABLE)}), (SELECT max(version) FROM ${this.table(PROGRESS_TABLE)})))`)).rows;
      const stored = BigInt(String(rows[0]?.[0] ?? '0'));
      const from = (stored > this.reservedUpTo ? stored : this.reservedUpTo) + 1n;
      const upTo = from - 1n + (n > VERSION_BLOCK ? n : VERSION_BLOCK);
      await this.driver.insert(this.table(VERSIONS_TABLE), [{ reserved: String(upTo) }]);
      this.nextVersion = from;
      this.reservedUpTo = upTo;
    }
    const first = this.nextVersion;
    this.nextVersion += n;
    return first;
  }

  async progress(source: string): Promise<Progress> {
    const row = (await this.driver.query(progressQuery(this.database, source))).rows[0] as unknown[] | undefined;
    if (!row) return { position: null, commitMicros: 0n, pending: null };
    const [position, commitMicros, , first, last, pendingVersion, retryOf, transaction, parts] = row.map((v) => String(v));
    const pending: Pending | null = pendingVersion !== '0' ? { first: first!, last: last!, version: BigInt(pendingVersion!), retryOf: retryOf!, transaction: transaction!, parts: Number(parts) } : null;
    return { position: position === '' ? null : position!, commitMicros: BigInt(commitMicros!), pending };
  }

  /** The encoded transactions of a pending batch, and the schema version they were written with. */
  async pendingBody(source: string): Promise<{ body: Buffer; schemaVersion: number }> {
    const row = (await this.driver.query(`SELECT pending_body, pending_schema_version FROM ${this.table(PROGRESS_TABLE)} FINAL WHERE source = ${quoteString(source)}`)).rows[0];
    if (!row) throw new Error(`internal: the pending batch of ${source} vanished`);
    return { body: Buffer.from(String(row[0]), 'base64'), schemaVersion: Number(row[1]) };
  }

  async writeProgress(source: string, progress: { position: Position | null; commitMicros: bigint }, version: bigint, pending: { spec: Pending; body: Buffer } | null): Promise<void> {
    await this.driver.insert(this.table(PROGRESS_TABLE), [
      {
        source,
        position: progress.position ?? '',
        commit_micros: String(progress.commitMicros),
        version: String(version),
        pending_first: pending?.spec.first ?? '',
        pending_last: pending?.spec.last ?? '',
        pending_version: String(pending?.spec.version ?? 0n),
        pending_retry_of: pending?.spec.retryOf ?? '',
        pending_transaction: pending?.spec.transaction ?? '',
        pending_parts: pending?.spec.parts ?? 0,
        pending_schema_version: CURRENT_SCHEMA_VERSION,
        pending_body: pending ? pending.body.toString('base64') : '',
      },
    ]);
  }

  async parked(where: string): Promise<ParkedRecord[]> {
    const rows = (await this.driver.query(`SELECT id, kind, source, transaction_id, body_sha256, user_id, route, reason, done FROM ${this.table(PARKED_TABLE)} FINAL WHERE ${where}`)).rows;
    return rows.map((r) => ({
      id: String(r[0]),
      kind: r[1] === 'refused' ? 'refused' : 'skipped',
      source: r[2] === null ? null : String(r[2]),
      transactionId: r[3] === null ? null : String(r[3]),
      bodySha256: String(r[4]),
      userId: r[5] === null ? null : String(r[5]),
      route: String(r[6]),
      reason: String(r[7]),
      done: Number(r[8]) === 1,
    }));
  }

  async writeParked(records: readonly ParkedRecord[]): Promise<void> {
    if (records.length === 0) return;
    const version = await this.versions(BigInt(records.length));
    await this.driver.insert(
      this.table(PARKED_TABLE),
      records.map((r, i) => ({
        id: r.id.toLowerCase(),
        kind: r.kind,
        source: r.source,
        transaction_id: r.transactionId,
        body_sha256: r.bodySha256,
        user_id: r.userId,
        route: r.route,
        reason: r.reason,
        done: r.done ? 1 : 0,
        version: String(version + BigInt(i)),
      })),
    );
  }

  /**
   * Folds a batch over what the store holds and turns it into rows, writing nothing: every value is checked
   * here, so that a value ClickHouse cannot hold is a data error before the first insert.
   */
  async plan(source: string, batch: readonly Transaction[]): Promise<Plan> {
    const relations: RelationInfo[] = [];
    for (const tx of batch) {
      for (const change of tx.changes) {
        if (change.op === 'message') continue;
        for (const r of change.op === 'truncate' ? change.relations : [change.relation]) {
          if (isReserved(r.schema)) {
            throw new SitesyncError('SITESYNC_ERR_UNTRUSTED', `a change from site ${source} writes into ${r.schema}.${r.table}, a schema site ${this.options.site} never writes into (sitesync's own); sitesync parks it`);
          }
          if (this.replicated !== null && !this.replicated.has(`${r.schema}.${r.table}`)) {
            throw schemaError(
              `table ${r.schema}.${r.table} from site ${source} is not one ClickHouse site ${this.options.site} replicates, so it is not created there; add it to sites.${this.options.site}.tables (sitesync retries and resumes by itself)`,
            );
          }
          if (change.op === 'read' && !r.columns.some((c) => c.key)) {
            throw schemaError(`a snapshot of site ${source} reads rows into ${r.schema}.${r.table}, which has no key: ClickHouse keeps only the history of such a table, and a snapshot's rows need a key to replace; give the table a primary key at the source`);
          }
          relations.push(r);
        }
      }
    }
    await this.catalog.ensure(relations, source);
    const stored = new Map<string, Map<string, StoredRow>>();
    const latest = new Map<string, RelationInfo>(relations.map((r) => [tableName(r), r]));
    for (const [table, keys] of keysTouched(batch)) {
      const relation = latest.get(table)!;
      const current = this.catalog.of(relation.schema, relation.table).current;
      if (current) stored.set(table, await this.lookup(current, relation, [...keys.values()]));
    }
    const policy = this.options.conflictPolicy ?? (() => DEFAULT_POLICY);
    const result = fold(batch, (table, key) => stored.get(table)?.get(key), policy);

    const history = new Map<string, Record<string, unknown>[]>();
    for (const entry of result.history) {
      const table = this.catalog.of(entry.relation.schema, entry.relation.table).history;
      let rows = history.get(table.name);
      if (!rows) history.set(table.name, (rows = []));
      rows.push(historyRow(entry, table));
    }
    const current = new Map<string, Record<string, unknown>[]>();
    const truncations: Plan['truncations'][number][] = [];
    for (const outcome of result.tables.values()) {
      const table = this.catalog.of(outcome.relation.schema, outcome.relation.table).current;
      if (!table) continue;
      if (outcome.truncatedBy) {
        const by = outcome.truncatedBy;
        truncations.push({ table, writer: { site: by.writer.site, commitMicros: by.writer.commitTimeMicros, commitTime: commitTime(by.writer.commitTimeMicros, by.transactionId), position: by.position, transaction: by.transactionId } });
      }
      const rows = [...outcome.rows.values()].map((row) => currentRow(row, outcome.relation, table));
      if (rows.length > 0) current.set(table.name, rows);
    }
    return { history, current, truncations, conflicts: result.conflicts };
  }

  /** The current rows of `keys`, as FINAL shows them, by `keyOf` of their canonical key values. */
  private async lookup(table: StoreTable, relation: RelationInfo, keys: readonly (readonly (string | null)[])[]): Promise<Map<string, StoredRow>> {
    const codecs = [...table.codecs(relation)];
    const byName = new Map(codecs);
    const keyCodecs = table.key.map((name) => byName.get(name)!);
    const select = [...codecs.map(([name, codec]) => codec.select(quoteIdent(name))), ...currentMetaSelect()];
    const found = new Map<string, StoredRow>();
    let chunk: string[][] = [];
    let bytes = 0;
    const flush = async (): Promise<void> => {
      if (chunk.length === 0) return;
      const result = await this.driver.query(selectByKeys(this.database, table.name, select, table.key, chunk), LOOKUP_SETTINGS);
      chunk = [];
      bytes = 0;
      for (const row of result.rows) {
        const [deleted, site, micros, specialText] = row.slice(codecs.length);
        const special = parseSpecial(specialText, table.name);
        const values: Record<string, string | null> = {};
        codecs.forEach(([name, codec], i) => {
          values[name] = Object.hasOwn(special, name) ? special[name]! : codec.read(row[i]);
        });
        const key = keyOf(table.key.map((name) => values[name] ?? null));
        found.set(key, { values, deleted: Number(deleted) === 1, writer: site ? { site: String(site), commitTimeMicros: BigInt(String(micros)) } : null });
      }
    };
    for (const key of keys) {
      const literals = key.map((text, i) => literal(written(keyCodecs[i]!, text, () => `key column ${table.key[i]} of ${relation.schema}.${relation.table}`).value));
      chunk.push(literals);
      bytes += literals.reduce((n, l) => n + l.length + 2, 2);
      if (bytes >= LOOKUP_BYTES) await flush();
    }
    await flush();
    return found;
  }

  /** The data of a batch, in the order that lets a crash anywhere be repaired (see the header). */
  async write(source: string, batch: readonly Transaction[], plan: Plan, version: bigint): Promise<void> {
    const first = batch[0]!.position;
    const last = batch[batch.length - 1]!.position;
    for (const [name, rows] of plan.history) await this.driver.insert(this.table(name), rows, { dedupToken: dedupToken(source, first, last, name, 'history') });
    for (const { table, writer } of plan.truncations) await this.driver.command(truncationMarkers(this.database, table.name, [...table.columns.keys()], version, writer));
    for (const [name, rows] of plan.current) {
      for (const row of rows) row[VERSION] = String(version + 1n);
      await this.driver.insert(this.table(name), rows, { dedupToken: dedupToken(source, first, last, name, 'current') });
    }
  }

  async readSpilled(source: string, transactionId: string, part: number): Promise<{ body: Buffer; schemaVersion: number } | null> {
    const row = (
      await this.driver.query(
        `SELECT body, schema_version FROM ${this.table(SPILLED_TABLE)} FINAL WHERE source = ${quoteString(source)} AND transaction_id = ${quoteString(transactionId)} AND part = ${part}`,
      )
    ).rows[0];
    return row ? { body: Buffer.from(String(row[0]), 'base64'), schemaVersion: Number(row[1]) } : null;
  }

  async forgetSpilled(source: string): Promise<void> {
    await this.driver.command(`DELETE FROM ${this.table(SPILLED_TABLE)} WHERE source = ${quoteString(source)}`);
  }
}

function isReserved(schema: string): boolean {
  return schema === BOOKKEEPING_SCHEMA || schema.startsWith('_sitesync');
}

function parseSpecial(text: unknown, table: string): Record<string, string | null> {
  if (text === null || text === undefined || text === '' || text === '{}') return {};
  if (typeof text !== 'string') throw new ClickHouseDataError(`a row of ClickHouse table ${table} has a ${SPECIAL} that is not text`);
  try {
    const parsed = JSON.parse(text) as unknown;
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed) && Object.values(parsed).every((v) => v === null || typeof v === 'string')) return parsed as Record<string, string | null>;
  } catch {
    // below
  }
  throw new ClickHouseDataError(`a row of ClickHouse table ${table} has a ${SPECIAL} that is not a JSON object of texts; fix or clear it there (sitesync writes NULL or such an object)`);
}

/** A value through its column's codec; a value the column cannot hold is a data error naming where it is. */
function written(codec: ColumnCodec, text: string | null, where: () => string): Written {
  try {
    return codec.write(text);
  } catch (error) {
    throw new ClickHouseDataError(`${where()}: ${errorLine(error)}; ClickHouse column type ${codec.type}: fix the value at the source, or the column (any kind fits String), then retry the parked transaction`, { cause: error });
  }
}

/** The source columns of a row (those the table has), with the values they cannot hold in `_sitesync_special`. */
function sourceValues(values: Readonly<Record<string, string | null>> | null, codecs: ReadonlyMap<string, ColumnCodec>, where: (column: string) => string): { row: Record<string, unknown>; special: string | null } {
  const row: Record<string, unknown> = {};
  const special: Record<string, string | null> = {};
  if (values) {
    for (const [name, text] of Object.entries(values)) {
      const codec = codecs.get(name);
      if (!codec) continue; // a column the table does not have (nor ever had): nothing to keep
      const w = written(codec, text, () => where(name));
      row[name] = w.value;
      if (w.special) special[name] = w.special.text;
    }
  }
  return { row, special: Object.keys(special).length > 0 ? JSON.stringify(special) : null };
}

function historyRow(entry: HistoryEntry, table: StoreTable): Record<string, unknown> {
  const tx = entry.transaction;
  const { row, special } = sourceValues(entry.values, table.codecs(entry.relation), (column) => `transaction ${tx.id}, ${entry.table}.${column}`);
  row[OP] = entry.op;
  row[APPLIED] = entry.applied ? 1 : 0;
  row[UNCHANGED] = entry.unchanged;
  row[SITE] = tx.site;
  row[POSITION] = tx.position;
  row[SEQ] = entry.seq;
  row[COMMIT_MICROS] = String(tx.commitTimeMicros);
  row[COMMIT_TIME] = commitTime(tx.commitTimeMicros, tx.id);
  row[TRANSACTION] = tx.id;
  row[SPECIAL] = special;
  // An update's old row as the source sent it (as the DuckDB sink keeps it): which row a keyless update changed.
  const change = tx.changes[entry.seq];
  row[BEFORE] = change?.op === 'update' && change.oldRow ? JSON.stringify(Object.fromEntries(entry.relation.columns.map((c, i) => [c.name, change.oldRow!.values[i] ?? null]))) : null;
  return row;
}

function currentRow(final: FinalRow, relation: RelationInfo, table: StoreTable): Record<string, unknown> {
  const { row, special } = sourceValues(final.values, table.codecs(relation), (column) => `transaction ${final.transactionId}, ${tableName(relation)}.${column}`);
  row[DELETED] = final.deleted ? 1 : 0;
  row[SITE] = final.writer.site;
  row[COMMIT_MICROS] = String(final.writer.commitTimeMicros);
  row[COMMIT_TIME] = commitTime(final.writer.commitTimeMicros, final.transactionId);
  row[POSITION] = final.position;
  row[TRANSACTION] = final.transactionId;
  row[SPECIAL] = special;
  return row;
}

/** A commit time as `_sitesync_commit_time` holds it; one it cannot (before 1900, after 2299) is a data error. */
function commitTime(micros: bigint, transaction: string): string {
  if (micros < DATETIME64_MIN_MICROS || micros > DATETIME64_MAX_MICROS) {
    throw new ClickHouseDataError(`transaction ${transaction} has commit time ${micros} µs since 1970, outside what ClickHouse's DateTime64 holds (1900 to 2299); see what its site sends`);
  }
  return microsToTimestampText(micros);
}

/** One source's session: everything it does runs in the sink's turns, after any batch a crash left pending. */
class ClickHouseSession implements SourceSession {
  /** The progress as last read or written; null: read it again (after a failure, pending work may be there). */
  private known: Progress | null = null;
  private closed = false;
  private readonly sourceKind: string;

  constructor(
    private readonly store: Store,
    private readonly turns: Turns,
    private readonly source: string,
    private readonly logger: Logger,
    private readonly onClose: () => void,
  ) {
    this.sourceKind = store.options.sourceKindOf?.(source) ?? 'unknown';
  }

  async progress(): Promise<Position | null> {
    return this.turns.run(async () => (await this.recover()).position);
  }

  async apply(transactions: readonly Transaction[], _options: { readonly durable: boolean } = { durable: true }): Promise<void> {
    await this.turns.run(() =>
      this.inside('a batch', async () => {
        const progress = await this.recover();
        const fresh = transactions.filter((tx) => progress.position === null || comparePositions(tx.position, progress.position) > 0);
        if (fresh.length === 0) return;
        const body = encodeMessage({ site: this.source, sourceKind: this.sourceKind, previous: null, transactions: fresh, part: null });
        await this.applyBatch(fresh, progress, { retryOf: '', transaction: '', parts: 0 }, body, null);
      }),
    );
  }

  async applyPart(transaction: Transaction, part: TransactionPart): Promise<void> {
    await this.turns.run(() =>
      this.inside(`part ${part.index} of transaction ${transaction.id}`, async () => {
        const progress = await this.recover();
        if (progress.position !== null && comparePositions(transaction.position, progress.position) <= 0) {
          // A copy of a transaction applied already: nothing to keep; what an unfinished copy kept goes.
          if (part.last) await this.store.forgetSpilled(this.source);
          return;
        }
        if (part.index === 0) await this.store.forgetSpilled(this.source);
        else if (!(await this.hasPart(transaction.id, part.index - 1))) {
          throw new SitesyncError(
            'SITESYNC_ERR_GAP',
            `part ${part.index} of transaction ${transaction.id} arrived at site ${this.store.options.site}, but part ${part.index - 1} never did: a message is missing; replay the transaction from the archive to resume`,
          );
        }
        const body = encodeMessage({ site: this.source, sourceKind: this.sourceKind, previous: null, transactions: [transaction], part });
        if (!part.last) {
          const kept = await this.spilledBytes();
          if (kept + body.length > MAX_ASSEMBLED_BYTES) {
            throw new SitesyncError(
              'SITESYNC_ERR_APPLY_DATA',
              `transaction ${transaction.id} has sent ${kept + body.length} bytes in ${part.index + 1} parts without its last, more than the ClickHouse sink assembles of one transaction (${MAX_ASSEMBLED_BYTES}); see why site ${this.source} sends it, then skip it by replaying from after it`,
            );
          }
          await this.store.driver.insert(this.store.table(SPILLED_TABLE), [
            { source: this.source, transaction_id: transaction.id, part: part.index, schema_version: CURRENT_SCHEMA_VERSION, bytes: body.length, body: body.toString('base64') },
          ]);
          return;
        }
        const whole = await this.assemble(transaction, part.index);
        await this.applyBatch([whole], progress, { retryOf: '', transaction: transaction.id, parts: part.index }, body, null);
        await this.store.forgetSpilled(this.source);
      }),
    );
  }

  async skip(position: Position, commitTimeMicros: bigint, parked?: NewParkedRecord): Promise<void> {
    await this.turns.run(() =>
      this.inside(`the skip of ${position}`, async () => {
        const progress = await this.recover();
        if (parked) await this.store.writeParked([{ ...parked, done: false }]);
        if (progress.position !== null && comparePositions(position, progress.position) <= 0) return;
        const next = { position, commitMicros: commitTimeMicros, pending: null };
        await this.store.writeProgress(this.source, next, await this.store.versions(1n), null);
        this.known = next;
      }),
    );
  }

  async applyRetried(transactions: readonly Transaction[], parkedId: string): Promise<boolean> {
    const tx = transactions[0];
    if (transactions.length !== 1 || !tx) throw new SitesyncError('SITESYNC_ERR_MESSAGE_INVALID', `a retried parked message holds ${transactions.length} transactions; sitesync parks them one by one`);
    return this.turns.run(() =>
      this.inside(`the retry of transaction ${tx.id}`, async () => {
        const progress = await this.recover();
        if ((await this.store.parked(`id = ${quoteString(parkedId.toLowerCase())} AND done = 0`)).length === 0) return false;
        const body = encodeMessage({ site: this.source, sourceKind: this.sourceKind, previous: null, transactions: [tx], part: null });
        await this.applyBatch([tx], progress, { retryOf: parkedId.toLowerCase(), transaction: '', parts: 0 }, body, null);
        return true;
      }),
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.onClose();
  }

  /**
   * The source's progress, after applying again any batch a crash (or a failure in this session) left pending.
   * A pending batch that now fails as data (the server refuses a value) is given up: its rows written so far
   * stay, its transactions come again from the broker and park one by one as any refused transaction.
   */
  async recover(): Promise<Progress> {
    if (this.closed) throw new SitesyncError('SITESYNC_ERR_DATABASE_UNREACHABLE', `the apply session of site ${this.source} at site ${this.store.options.site} is closed; sitesync opens a new one`);
    if (this.known && !this.known.pending) return this.known;
    let progress = await this.store.progress(this.source);
    const pending = progress.pending;
    if (pending) {
      this.logger.warn({ first: pending.first, last: pending.last }, 'a batch was cut short (a crash or a failure between its inserts); applying it again exactly as it was');
      try {
        const { body, schemaVersion } = await this.store.pendingBody(this.source);
        const message = decodeMessage(body, schemaVersion);
        const batch = pending.parts > 0 ? [await this.assemble(message.transactions[0]!, pending.parts)] : message.transactions;
        await this.applyBatch(batch, progress, pending, body, pending.version);
        if (pending.parts > 0) await this.store.forgetSpilled(this.source);
      } catch (error) {
        const kind = classifyClickHouseError(error);
        if (kind !== 'data') throw error;
        this.logger.error({ reason: errorLine(error) }, 'the batch cut short cannot be applied again (data); given up: its transactions come again and park one by one');
        await this.store.writeProgress(this.source, progress, await this.store.versions(1n), null);
      }
      progress = await this.store.progress(this.source);
    }
    this.known = progress;
    return progress;
  }

  /**
   * One batch: planned (nothing written), written down as pending (unless it is the pending batch applied
   * again, `redo` its versions), its data, then the row that records its position and clears the pending one.
   */
  private async applyBatch(batch: readonly Transaction[], progress: Progress, spec: Omit<Pending, 'first' | 'last' | 'version'>, body: Buffer, redo: bigint | null): Promise<void> {
    const plan = await this.store.plan(this.source, batch);
    const first = batch[0]!;
    const last = batch[batch.length - 1]!;
    // Three numbers: truncation markers, the batch's rows, the progress row that ends it.
    const version = redo ?? (await this.store.versions(3n));
    const pending: Pending = { ...spec, first: first.position, last: last.position, version };
    // A batch that writes no data (heartbeats, messages, changes to nothing) needs no pending record.
    const writes = plan.history.size + plan.current.size + plan.truncations.length > 0 || spec.retryOf !== '';
    if (redo === null && writes) {
      await this.store.writeProgress(this.source, progress, version, { spec: pending, body });
      this.known = { ...progress, pending };
    }
    try {
      await this.store.write(this.source, batch, plan, version);
    } catch (error) {
      if (classifyClickHouseError(error) === 'data' && redo === null) {
        // The server refused a row: this batch will not be applied again as it is (the runner parks its
        // transactions one by one); what it wrote stays.
        this.logger.error({ reason: errorLine(error) }, 'ClickHouse refused a batch part way through; what it wrote stays');
        await this.store.writeProgress(this.source, progress, version + 2n, null).catch(() => undefined);
        this.known = null;
      }
      throw error;
    }
    if (spec.retryOf !== '') {
      const open = await this.store.parked(`done = 0 AND (id = ${quoteString(spec.retryOf)} OR (kind = 'skipped' AND transaction_id = ${quoteString(last.id)}))`);
      await this.store.writeParked(open.map((r) => ({ ...r, done: true })));
    }
    const moved = progress.position === null || comparePositions(last.position, progress.position) > 0;
    const next: Progress = { position: moved ? last.position : progress.position, commitMicros: moved ? last.commitTimeMicros : progress.commitMicros, pending: null };
    await this.store.writeProgress(this.source, next, version + 2n, null);
    this.known = next;
    if (redo !== null) {
      if (plan.conflicts.length > 0) this.logger.info({ conflicts: plan.conflicts.length }, 'conflicts of a batch applied again are not reported again');
      return;
    }
    for (const conflict of plan.conflicts) this.store.options.onConflict?.(conflict);
  }

  /** A transaction from its spilled parts (0 … parts − 1) and its last part. */
  private async assemble(last: Transaction, parts: number): Promise<Transaction> {
    const changes: Transaction['changes'][number][] = [];
    for (let index = 0; index < parts; index++) {
      const spilled = await this.store.readSpilled(this.source, last.id, index);
      if (!spilled) {
        throw new SitesyncError('SITESYNC_ERR_GAP', `part ${index} of transaction ${last.id} is missing from ${SPILLED_TABLE}; replay the transaction from the archive to resume`);
      }
      changes.push(...decodeMessage(spilled.body, spilled.schemaVersion).transactions[0]!.changes);
    }
    changes.push(...last.changes);
    return { ...last, changes };
  }

  private async hasPart(transactionId: string, part: number): Promise<boolean> {
    return (await this.store.readSpilled(this.source, transactionId, part)) !== null;
  }

  private async spilledBytes(): Promise<number> {
    const row = (await this.store.driver.query(`SELECT toString(sum(bytes)) FROM ${this.store.table(SPILLED_TABLE)} FINAL WHERE source = ${quoteString(this.source)}`)).rows[0];
    return Number(row?.[0] ?? 0);
  }

  /** Runs work; any failure makes the next call read the progress again (and recover), as one line. */
  private async inside<T>(what: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      this.known = null;
      const described = describeApplyError(error, { source: this.source, site: this.store.options.site, what });
      if (classifyClickHouseError(described) === 'schema') this.store.catalog.forget();
      throw described;
    }
  }
}
