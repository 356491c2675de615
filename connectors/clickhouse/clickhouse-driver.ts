/**
 * The thin layer between the ClickHouse sink and a ClickHouse engine: three calls, nothing more. Production
 * speaks HTTP (clickhouse-http-driver.ts, over @clickhouse/client); the tests run the same SQL in an embedded
 * engine (test/helpers/chdb-driver.ts), so ReplacingMergeTree, FINAL, is_deleted and insert deduplication are
 * the real engine's, not a model of them.
 *
 * Every driver reads results with READ_SETTINGS (exact text for 64-bit integers, decimals with their scale,
 * Float64 as text, NaN and infinities as text) and reports a server's refusal as ClickHouseServerError with
 * the server's error code, whatever its transport's own error type.
 */

/** Query-level settings, as ClickHouse names them. */
export type QuerySettings = Readonly<Record<string, string | number>>;

/** What a query answered: its columns (name, ClickHouse type) and its rows as JSON values. */
export interface QueryRows {
  readonly columns: readonly { readonly name: string; readonly type: string }[];
  readonly rows: readonly (readonly unknown[])[];
}

export interface InsertOptions {
  /**
   * `insert_deduplication_token`: a second insert with the same token into the same table is dropped whole
   * (within the table's `non_replicated_deduplication_window`).
   */
  readonly dedupToken?: string;
  readonly settings?: QuerySettings;
}

export interface ClickHouseDriver {
  /** Runs a statement that returns nothing (DDL, INSERT … SELECT, DELETE). */
  command(sql: string, settings?: QuerySettings): Promise<void>;
  /** Inserts rows (objects by column name, JSONEachRow) into `table`, given quoted and qualified: `` `db`.`t` ``. */
  insert(table: string, rows: readonly Readonly<Record<string, unknown>>[], options?: InsertOptions): Promise<void>;
  /** Runs a query (no FORMAT or SETTINGS clause: the driver adds what it needs) and returns every row. */
  query(sql: string, settings?: QuerySettings): Promise<QueryRows>;
  close(): Promise<void>;
}

/** How every driver reads results: values JSON carries exactly (text where a JSON number would round). */
export const READ_SETTINGS: QuerySettings = {
  output_format_json_quote_64bit_integers: 1,
  output_format_json_quote_64bit_floats: 1,
  output_format_json_quote_decimals: 1,
  output_format_json_quote_denormals: 1,
  output_format_decimal_trailing_zeros: 1,
  date_time_output_format: 'simple',
};

/** A ClickHouse server refused a statement: its numeric error code and name (`UNKNOWN_TABLE`), and its message. */
export class ClickHouseServerError extends Error {
  constructor(
    message: string,
    readonly code: number,
    readonly type: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ClickHouseServerError';
  }
}

/** `Code: 60. DB::Exception: … (UNKNOWN_TABLE)`: the code and name in a server's message, when it has them. */
export function serverErrorFacts(message: string): { code: number; type: string | undefined } | null {
  const code = /\bCode: (\d+)\./.exec(message);
  if (!code) return null;
  const type = /\(([A-Z][A-Z0-9_]+)\)(?: \(version [^)]*\))?\s*$/.exec(message.split('\n')[0]!.trim());
  return { code: Number(code[1]), type: type?.[1] };
}
