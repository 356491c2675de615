/**
 * The thin layer over zongji (@vlasky/zongji 0.9): connects as a replica, asks the server for its binary log
 * from a given file and offset, and hands each event on, in log order, as plain data (BinlogEvent). No
 * business logic: which events make a transaction, what to keep and what a value means is the grouper's
 * (transaction-grouper.ts).
 *
 * What zongji is told, and why:
 * - always an explicit file and offset (never `startAtEnd`, never its own `options.position`, which it moves
 *   by its own rules): where to resume is sitesync's checkpoint, nothing else;
 * - `dateStrings: true` and `timezone: 'Z'` on its connection: DATE, DATETIME and TIMESTAMP values come as
 *   text built from their stored parts (a TIMESTAMP, stored as UTC seconds, printed in UTC), never through a
 *   Date in the process's local time zone, and keep their microseconds;
 * - `jsonStrings: true` (MySQL's binary JSON as its text; MariaDB's JSON is LONGTEXT and is text anyway) and
 *   DECIMAL as exact strings (zongji's default since 0.7); 64-bit integers beyond 2^53 come as exact strings;
 * - the schema filters only spare it decoding rows nobody wants: the grouper filters again;
 * - binlog checksums (MariaDB's default CRC32) are detected by zongji (`@master_binlog_checksum`) and skipped;
 *   it does not verify them.
 *
 * Events inside a transaction carry their own end offset on MariaDB 10.11 (zongji's notes say some servers
 * write 0 there); `end` is passed on as the server wrote it and consumers ignore 0.
 */
import ZongJi from '@vlasky/zongji';
import type { ConnectionOptions } from 'mysql2';

export interface BinlogColumn {
  readonly name: string;
  /** MariaDB column type code as the table map gives it, ENUM (247) and SET (248) resolved from STRING. */
  readonly typeCode: number;
  /** Per-type table-map metadata: precision/decimals, max_length, length_size, bits, size. */
  readonly metadata: Readonly<Record<string, number>>;
  /** Numeric columns: unsigned or not; null where the binlog does not say. */
  readonly unsigned: boolean | null;
  /** Character set of a text column (`utf8mb4`, `latin1`); null for binary strings and non-text types. */
  readonly charset: string | null;
  /** The column type as zongji derives it from the metadata: `decimal(12,2)`, `varchar(40)`, `binary(16)`. */
  readonly columnType: string;
  /** ENUM and SET member lists, when the binlog carries them. */
  readonly members: readonly string[] | null;
}

export type BinlogEvent =
  /** The events that follow are in `file`, from `offset` (sent first on every connection, and at each new file). */
  | { readonly type: 'rotate'; readonly file: string; readonly offset: number }
  /** MariaDB's GTID event: opens an event group (a transaction, or one standalone statement such as DDL). */
  | {
      readonly type: 'gtid';
      readonly gtid: string;
      /** A group without a commit event (DDL and other statements that commit by themselves). */
      readonly standalone: boolean;
      /** Every change of the group can be rolled back (transactional engines only). */
      readonly transactional: boolean;
      /** XA: the group is an XA PREPARE (`prepared`) or an XA COMMIT/ROLLBACK (`completed`). */
      readonly xa: 'prepared' | 'completed' | null;
      readonly end: number;
      /** Seconds since the epoch: MariaDB writes the commit's time here (whole seconds). */
      readonly timestamp: number;
    }
  | { readonly type: 'query'; readonly query: string; readonly database: string; readonly end: number; readonly timestamp: number }
  | {
      readonly type: 'tablemap';
      readonly tableId: number;
      readonly database: string;
      readonly table: string;
      readonly columns: readonly BinlogColumn[];
      /** Indexes of the primary key's columns (binlog_row_metadata=FULL); null when the binlog does not say. */
      readonly primaryKey: readonly number[] | null;
      readonly end: number;
    }
  | { readonly type: 'rows'; readonly op: 'insert' | 'delete'; readonly tableId: number; readonly rows: readonly (readonly unknown[])[]; readonly end: number }
  | {
      readonly type: 'rows';
      readonly op: 'update';
      readonly tableId: number;
      readonly rows: readonly { readonly before: readonly unknown[]; readonly after: readonly unknown[] }[];
      readonly end: number;
    }
  /** The commit of a transaction on a transactional engine. */
  | { readonly type: 'xid'; readonly xid: string; readonly end: number; readonly timestamp: number }
  | { readonly type: 'xaprepare'; readonly end: number }
  /** The server has sent everything up to `offset` of `file` and is waiting for more. */
  | { readonly type: 'heartbeat'; readonly file: string; readonly offset: number }
  /**
   * Any other event (format description, GTID list, binlog checkpoint, annotate rows…): nothing a transaction
   * is made of, only where it ends in the current file — so that a reader knows it has read the log up to
   * its end even when the last events there are of these.
   */
  | { readonly type: 'other'; readonly end: number };

export interface BinlogReaderOptions {
  /** Connection options of the replica connection (and zongji's control connection). */
  readonly connection: ConnectionOptions;
  /** Where to start: the server sends the events from this offset of this file on. */
  readonly file: string;
  readonly offset: number;
  /** The replica server id to register with: unique among the server's replicas (a second one with the same id takes over). */
  readonly serverId: number;
  /** zongji schema filters: row events of other tables are not decoded. */
  readonly includeSchema?: Record<string, string[] | true>;
  readonly excludeSchema?: Record<string, string[] | true>;
  /** Ask the server for a heartbeat event after this many idle seconds (0: none). */
  readonly heartbeatSeconds: number;
}

interface ZongJiTableEntry {
  readonly parentSchema: string;
  readonly tableName: string;
  readonly columns: { name: string; charset: string | null; type: number; metadata?: Record<string, number> }[];
  readonly columnSchemas: { COLUMN_TYPE: string; UNSIGNED?: boolean; ENUM_VALUES?: string[]; SET_VALUES?: string[] }[];
}

type ZongJiEvent = Record<string, unknown> & { getEventName(): string; nextPosition: number; timestamp: number };

const NUMERIC_TYPES = new Set([0, 1, 2, 3, 4, 5, 8, 9, 13, 246]);

/**
 * One replica connection. `start` resolves once the dump is requested; every event then reaches
 * `onEvent`, synchronously and in log order. `ended` resolves after `stop` and rejects when the stream
 * breaks (the server went away, it refused the dump, `onEvent` threw); after that nothing more is passed on.
 */
export class BinlogReader {
  readonly ended: Promise<void>;
  private readonly zongji: ZongJi;
  private settle!: { resolve: () => void; reject: (error: unknown) => void };
  private finished = false;
  private paused = false;

  constructor(
    private readonly options: BinlogReaderOptions,
    private readonly onEvent: (event: BinlogEvent) => void,
  ) {
    this.ended = new Promise<void>((resolve, reject) => (this.settle = { resolve, reject }));
    this.ended.catch(() => undefined);
    this.zongji = new ZongJi({ ...options.connection, dateStrings: true, timezone: 'Z', jsonStrings: true, decimalNumbers: false, supportBigNumbers: true, bigNumberStrings: true } as ConnectionOptions);
    this.zongji.on('error', (error: Error) => this.fail(error));
    this.zongji.on('binlog', (event) => {
      if (this.finished) return;
      let mapped: BinlogEvent | null;
      try {
        mapped = this.map(event as unknown as ZongJiEvent);
        if (mapped) this.onEvent(mapped);
      } catch (error) {
        this.fail(error);
      }
    });
  }

  start(): Promise<void> {
    const { file, offset, serverId, includeSchema, excludeSchema, heartbeatSeconds } = this.options;
    return new Promise<void>((resolve, reject) => {
      this.ended.catch(reject);
      this.zongji.once('ready', () => {
        // 'ready' is emitted just before zongji queues the dump command on the same connection: a query
        // queued here runs first. MariaDB's dump thread reads the heartbeat period (nanoseconds) from it.
        const connection = this.zongji.connection;
        if (connection && heartbeatSeconds > 0) {
          connection.query(`SET @master_heartbeat_period = ${Math.round(heartbeatSeconds * 1e9)}`, (error: unknown) => {
            if (error) this.fail(error);
          });
        }
        connection?.on('end', () => this.fail(new Error('the server closed the binlog connection')));
        if (this.paused) connection?.pause();
        resolve();
      });
      this.zongji.start({ filename: file, position: offset, serverId, includeSchema, excludeSchema });
    });
  }

  /** Stop reading from the server (its events wait in the socket and the server's send buffer). */
  pause(): void {
    this.paused = true;
    this.zongji.connection?.pause();
  }

  resume(): void {
    this.paused = false;
    this.zongji.connection?.resume();
  }

  async stop(): Promise<void> {
    if (!this.finished) {
      this.finished = true;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 2000);
        this.zongji.once('stopped', () => {
          clearTimeout(timer);
          resolve();
        });
        this.zongji.stop();
      });
      this.settle.resolve();
    }
    await this.ended.catch(() => undefined);
  }

  private fail(error: unknown): void {
    if (this.finished) return;
    this.finished = true;
    this.settle.reject(error);
    try {
      this.zongji.stop();
    } catch {
      // already torn down
    }
  }

  private map(event: ZongJiEvent): BinlogEvent | null {
    const end = event.nextPosition;
    const timestamp = Math.floor(event.timestamp / 1000);
    switch (event.getEventName()) {
      case 'rotate':
        return { type: 'rotate', file: event.binlogName as string, offset: Number(event.position) };
      case 'mariadbgtid':
        return {
          type: 'gtid',
          gtid: event.gtid as string,
          standalone: event.standalone as boolean,
          transactional: event.transactional as boolean,
          xa: event.preparedXa ? 'prepared' : event.completedXa ? 'completed' : null,
          end,
          timestamp,
        };
      case 'query':
        return { type: 'query', query: event.query as string, database: event.schema as string, end, timestamp };
      case 'tablemap':
        return this.tableMap(event, end);
      case 'writerows':
      case 'deleterows':
      case 'updaterows':
        return this.rows(event, end);
      case 'xid':
        return { type: 'xid', xid: String(event.xid), end, timestamp };
      case 'xaprepare':
        return { type: 'xaprepare', end };
      case 'heartbeat': {
        const offset = end > 0 ? end : Number(event.position ?? 0);
        return { type: 'heartbeat', file: event.binlogName as string, offset };
      }
      default:
        // format description, GTID list, binlog checkpoint, intvar, annotate rows, MySQL GTID events…: nothing
        // a transaction is made of (a MySQL server's transactions still open with a BEGIN query). Where it
        // ends is passed on (0: an artificial event, or one inside a transaction that does not say).
        return end > 0 ? { type: 'other', end } : null;
    }
  }

  private entry(tableId: number): ZongJiTableEntry {
    const entry = (this.zongji.tableMap as unknown as Record<number, ZongJiTableEntry | undefined>)[tableId];
    if (!entry || !entry.columns) throw new Error(`binlog rows for table id ${tableId} without its table map`);
    return entry;
  }

  private tableMap(event: ZongJiEvent, end: number): BinlogEvent {
    const tableId = event.tableId as number;
    const entry = this.entry(tableId);
    const columns = entry.columns.map((column, i): BinlogColumn => {
      const schema = entry.columnSchemas[i];
      const unsigned = schema?.UNSIGNED;
      return {
        name: column.name,
        typeCode: column.type,
        metadata: column.metadata ?? {},
        unsigned: NUMERIC_TYPES.has(column.type) ? (unsigned ?? /unsigned/.test(schema?.COLUMN_TYPE ?? '')) : null,
        charset: column.charset ?? null,
        columnType: schema?.COLUMN_TYPE ?? '',
        members: schema?.ENUM_VALUES ?? schema?.SET_VALUES ?? null,
      };
    });
    const primaryKey = Array.isArray(event.primaryKey) ? (event.primaryKey as number[]) : null;
    return { type: 'tablemap', tableId, database: event.schemaName as string, table: event.tableName as string, columns, primaryKey, end };
  }

  private rows(event: ZongJiEvent, end: number): BinlogEvent {
    const tableId = event.tableId as number;
    const names = this.entry(tableId).columns.map((c) => c.name);
    const values = (row: Record<string, unknown>): unknown[] => names.map((name) => row[name]);
    const name = event.getEventName();
    if (name === 'updaterows') {
      const rows = (event.rows as { before: Record<string, unknown>; after: Record<string, unknown> }[]).map((r) => ({ before: values(r.before), after: values(r.after) }));
      return { type: 'rows', op: 'update', tableId, rows, end };
    }
    const rows = (event.rows as Record<string, unknown>[]).map(values);
    return { type: 'rows', op: name === 'writerows' ? 'insert' : 'delete', tableId, rows, end };
  }
}
