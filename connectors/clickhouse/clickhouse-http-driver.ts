/**
 * The production driver: ClickHouse's HTTP interface through @clickhouse/client (pure JavaScript, keep-alive
 * connections, settings per request). Each request is independent: ClickHouse serves many readers and
 * writers at once, so the sink, the status reader and `sitesync query` each open their own.
 */
import { ClickHouseError, ClickHouseLogLevel, createClient, type ClickHouseClient, type ClickHouseSettings } from '@clickhouse/client';
import type { ClickHouseConfig } from './clickhouse-config.ts';
import { ClickHouseServerError, READ_SETTINGS, type ClickHouseDriver, type InsertOptions, type QueryRows, type QuerySettings } from './clickhouse-driver.ts';

/** A statement running longer than this is abandoned (a transient error: sitesync retries). */
const REQUEST_TIMEOUT_MS = 600_000;

export class ClickHouseHttpDriver implements ClickHouseDriver {
  private readonly client: ClickHouseClient;

  constructor(config: ClickHouseConfig) {
    this.client = createClient({
      url: config.endpoint,
      username: config.username,
      password: config.password,
      database: config.database,
      application: 'sitesync',
      request_timeout: REQUEST_TIMEOUT_MS,
      // Errors reach sitesync's own log, redacted, as one line; the client prints nothing of its own.
      log: { level: ClickHouseLogLevel.OFF },
    });
  }

  async command(sql: string, settings: QuerySettings = {}): Promise<void> {
    await this.run(() => this.client.command({ query: sql, clickhouse_settings: settings as ClickHouseSettings }));
  }

  async insert(table: string, rows: readonly Readonly<Record<string, unknown>>[], options: InsertOptions = {}): Promise<void> {
    if (rows.length === 0) return;
    const settings: Record<string, string | number> = { ...options.settings };
    if (options.dedupToken !== undefined) {
      settings.insert_deduplicate = 1;
      settings.insert_deduplication_token = options.dedupToken;
    }
    await this.run(() => this.client.insert({ table, values: rows as Record<string, unknown>[], format: 'JSONEachRow', clickhouse_settings: settings as ClickHouseSettings }));
  }

  async query(sql: string, settings: QuerySettings = {}): Promise<QueryRows> {
    return this.run(async () => {
      const result = await this.client.query({ query: sql, format: 'JSONCompact', clickhouse_settings: { ...READ_SETTINGS, ...settings } as ClickHouseSettings });
      const body = await result.json<unknown[]>();
      return { columns: body.meta?.map((m) => ({ name: m.name, type: m.type })) ?? [], rows: body.data };
    });
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  /** The client's ClickHouseError becomes ClickHouseServerError (code as a number); socket errors pass as they are. */
  private async run<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      if (error instanceof ClickHouseError) {
        const code = Number(error.code);
        throw new ClickHouseServerError(error.message, Number.isInteger(code) ? code : 0, error.type, { cause: error });
      }
      throw error;
    }
  }
}
