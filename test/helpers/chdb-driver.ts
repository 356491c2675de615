/**
 * The ClickHouse engine embedded in this process (chdb: ClickHouse 26.x as a library) behind the sink's driver
 * interface, so that the tests run the sink's own SQL through the real engine: ReplacingMergeTree, FINAL,
 * is_deleted, insert deduplication tokens, the JSON input and output formats.
 *
 * chdb is not a dependency (its engine is about 540 MB): `npm run test:clickhouse` installs it (`npm install
 * --no-save chdb@3.4.0`) when it is absent. Without it, `openChdb()` says why and the tests skip, saying how to
 * run them.
 *
 * One engine per process (chdb keeps one); each test's store is a database of its own in it. Settings: the
 * read settings every driver uses are set once for the session; a query's own settings go in its SETTINGS
 * clause (so `readonly=1` binds that statement only); a command's with SET (they stay, which the sink's DDL
 * setting `enable_time_time64_type` may). `kill()` makes a driver fail from then on, as a crashed process's
 * connections would: what the engine was already doing still finishes, as on a server.
 */
import { READ_SETTINGS, ClickHouseServerError, serverErrorFacts, type ClickHouseDriver, type InsertOptions, type QueryRows, type QuerySettings } from '../../connectors/clickhouse/clickhouse-driver.ts';

export const CHDB_MISSING = 'chdb (embedded ClickHouse) is not installed: run `npm run test:clickhouse`, which installs it (npm install --no-save chdb@3.4.0) and runs these tests';

interface ChdbResult {
  text(): string;
}
interface ChdbSession {
  queryAsync(query: string, options?: { format?: string }): Promise<ChdbResult>;
  close(): void;
}
interface ChdbModule {
  Session: new (path?: string) => ChdbSession;
}

let engine: Promise<ChdbEngine | string> | null = null;

/** The process's embedded engine, or why there is none. */
export function openChdb(): Promise<ChdbEngine | string> {
  engine ??= (async () => {
    let chdb: ChdbModule;
    try {
      // A variable keeps TypeScript from requiring the (absent) package's types.
      const name = 'chdb';
      chdb = (await import(name)) as ChdbModule;
    } catch (error) {
      return `${CHDB_MISSING} (${(error as Error).message.split('\n')[0]})`;
    }
    const session = new chdb.Session();
    const settings = Object.entries(READ_SETTINGS).map(([k, v]) => `${k} = ${typeof v === 'number' ? v : `'${v}'`}`);
    await session.queryAsync(`SET ${settings.join(', ')}`);
    return new ChdbEngine(session);
  })();
  return engine;
}

export class ChdbEngine {
  private databases = 0;
  /** Calls run one after another: the embedded engine has one session. */
  private tail: Promise<unknown> = Promise.resolve();

  constructor(private readonly session: ChdbSession) {}

  /** A fresh database, for one test's store. */
  async database(prefix = 'ch'): Promise<string> {
    const name = `${prefix}_${process.pid}_${++this.databases}`;
    await this.run(`CREATE DATABASE ${name}`, 'TabSeparated');
    return name;
  }

  driver(): ChdbDriver {
    return new ChdbDriver(this);
  }

  run(sql: string, format: string): Promise<string> {
    const result = this.tail.then(async () => {
      try {
        return (await this.session.queryAsync(sql, { format })).text();
      } catch (error) {
        const message = (error as Error).message ?? String(error);
        const facts = serverErrorFacts(message) ?? { code: Number((error as { clickhouseCode?: unknown }).clickhouseCode ?? 0), type: undefined };
        throw new ClickHouseServerError(message.split('\n')[0]!, facts.code, facts.type, { cause: error });
      }
    });
    this.tail = result.catch(() => undefined);
    return result;
  }
}

export class ChdbDriver implements ClickHouseDriver {
  private killed = false;
  readonly statements: string[] = [];

  constructor(private readonly engine: ChdbEngine) {}

  /** From now on every call fails as a lost connection does. */
  kill(): void {
    this.killed = true;
  }

  async command(sql: string, settings: QuerySettings = {}): Promise<void> {
    if (settings.readonly !== undefined) throw new Error('internal: readonly applies to queries here');
    const set = Object.keys(settings).length > 0 ? `SET ${settingsList(settings)}; ` : '';
    await this.run(`${set}${sql}`, 'TabSeparated');
  }

  async insert(table: string, rows: readonly Readonly<Record<string, unknown>>[], options: InsertOptions = {}): Promise<void> {
    if (rows.length === 0) return;
    const settings: Record<string, string | number> = { ...options.settings };
    if (options.dedupToken !== undefined) {
      settings.insert_deduplicate = 1;
      settings.insert_deduplication_token = options.dedupToken;
    }
    const clause = Object.keys(settings).length > 0 ? ` SETTINGS ${settingsList(settings)}` : '';
    await this.run(`INSERT INTO ${table}${clause} FORMAT JSONEachRow\n${rows.map((r) => JSON.stringify(r)).join('\n')}\n`, 'TabSeparated');
  }

  async query(sql: string, settings: QuerySettings = {}): Promise<QueryRows> {
    const clause = Object.keys(settings).length > 0 ? ` SETTINGS ${settingsList(settings)}` : '';
    const text = await this.run(`${sql}${clause}`, 'JSONCompact');
    if (text.trim() === '') return { columns: [], rows: [] };
    const body = JSON.parse(text) as { meta?: { name: string; type: string }[]; data?: unknown[][] };
    return { columns: (body.meta ?? []).map((m) => ({ name: m.name, type: m.type })), rows: body.data ?? [] };
  }

  async close(): Promise<void> {
    this.killed = true;
  }

  private async run(sql: string, format: string): Promise<string> {
    if (this.killed) throw Object.assign(new Error('connection killed (the test stopped this driver, as a crash would)'), { code: 'ECONNRESET' });
    this.statements.push(sql.length > 400 ? `${sql.slice(0, 400)}…` : sql);
    if (this.statements.length > 1000) this.statements.splice(0, 500);
    const text = await this.engine.run(sql, format);
    if (this.killed) throw Object.assign(new Error('connection killed (the test stopped this driver, as a crash would)'), { code: 'ECONNRESET' });
    return text;
  }
}

function settingsList(settings: QuerySettings): string {
  return Object.entries(settings)
    .map(([k, v]) => `${k} = ${typeof v === 'number' ? v : `'${String(v).replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`}`)
    .join(', ');
}
