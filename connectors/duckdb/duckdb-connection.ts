/**
 * Opening DuckDB files.
 *
 * The engine: `@duckdb/node-api` is an optional dependency whose engine ships in a package per platform; it is
 * loaded with a dynamic import the first time a DuckDB site is used, so that a deployment without DuckDB sites
 * never needs it, and one that needs it and lacks it gets one line naming the package to install.
 *
 * One writer per file: DuckDB lets one process at a time open a file for writing (a lock on the file). Within
 * a process, one DuckDBInstance per file is shared by every user of it (the sink's sessions, its parked
 * records, the query server, the Parquet export), each with connections of its own; two instances of one file
 * in one process would each believe they own it. `acquireDuckDbFile` counts the users and closes the instance
 * (which checkpoints the write-ahead log into the file) when the last one lets go.
 *
 * Writes to a file are serialised (`exclusive`): DuckDB would let two connections write, then fail one of them
 * at commit when they touched the same rows or tables; one after the other, nothing conflicts, and nothing is
 * slower (DuckDB writes on one thread at commit anyway). Reads (queries, the export) run beside them on
 * snapshots of their own.
 */
import { existsSync, realpathSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type * as DuckDb from '@duckdb/node-api';
import { describeLoadError, describeOpenError, isInvalidated } from './duckdb-errors.ts';
import { DuckDbValues } from './duckdb-kinds.ts';

export type DuckDbApi = typeof DuckDb;
export type DuckDbConnection = DuckDb.DuckDBConnection;
export type DuckDbInstance = DuckDb.DuckDBInstance;

let loaded: Promise<DuckDbApi> | null = null;

/**
 * The package, named through a variable: bin/sitesync.js bundles sitesync with esbuild, which would pull a
 * literal import's package in, and DuckDB's native engine (a .node file per platform) cannot be bundled.
 * Named so, it stays a runtime import, resolved from node_modules when a DuckDB site is first used.
 */
const DUCKDB_PACKAGE: string = '@duckdb/node-api';

/**
 * DuckDB's node API, imported on first use. `importer` is for tests (a missing engine); the real import is
 * cached, a failed one tried again next time (someone may install the package meanwhile).
 */
export function loadDuckDbApi(importer?: () => Promise<unknown>): Promise<DuckDbApi> {
  const load = async (): Promise<DuckDbApi> => {
    try {
      const module = (await (importer ? importer() : import(DUCKDB_PACKAGE))) as { default?: DuckDbApi } & DuckDbApi;
      // A CommonJS package: its exports arrive as the default export (and, where Node could tell, by name).
      return module.default ?? module;
    } catch (error) {
      throw describeLoadError(error);
    }
  };
  if (importer) return load();
  loaded ??= load().catch((error: unknown) => {
    loaded = null;
    throw error;
  });
  return loaded;
}

/**
 * Opens a DuckDB file. Engine settings: never download an extension at run time (what a site needs is built
 * in; a download would stall or fail behind a firewall).
 */
export async function openDuckDbInstance(api: DuckDbApi, path: string, readOnly: boolean): Promise<DuckDbInstance> {
  try {
    return await api.DuckDBInstance.create(path, { access_mode: readOnly ? 'READ_ONLY' : 'READ_WRITE', autoinstall_known_extensions: 'false' });
  } catch (error) {
    throw describeOpenError(error, path, readOnly);
  }
}

/** Whether this engine has the JSON type built in (loading it if it is there but not loaded; never downloading it). */
async function hasJson(connection: DuckDbConnection): Promise<boolean> {
  const rows = (await connection.runAndReadAll(`SELECT loaded, installed FROM duckdb_extensions() WHERE extension_name = 'json'`)).getRows();
  const [isLoaded, installed] = (rows[0] ?? [false, false]) as [boolean, boolean];
  if (isLoaded) return true;
  if (!installed) return false;
  try {
    await connection.run('LOAD json');
    return true;
  } catch {
    return false;
  }
}

/** A DuckDB file held open for writing by this process, shared by everything here that uses it. */
export class DuckDbFile {
  /** DuckDB's JSON type is there: json columns and `_sitesync_special` are JSON, else VARCHAR. */
  readonly json: boolean;
  readonly values: DuckDbValues;
  private chain: Promise<unknown> = Promise.resolve();
  private users = 0;
  private invalidated = false;
  /** Started with the file's first user, stopped before its instance closes (the query server, the export). */
  private readonly services = new Map<string, Promise<{ stop(): Promise<void> } | null>>();

  private constructor(
    readonly api: DuckDbApi,
    readonly path: string,
    private instance: DuckDbInstance,
    json: boolean,
  ) {
    this.json = json;
    this.values = new DuckDbValues(api);
  }

  static async open(path: string): Promise<DuckDbFile> {
    const api = await loadDuckDbApi();
    const instance = await openDuckDbInstance(api, path, false);
    let connection: DuckDbConnection | null = null;
    try {
      connection = await instance.connect();
      return new DuckDbFile(api, path, instance, await hasJson(connection));
    } catch (error) {
      instance.closeSync();
      throw describeOpenError(error, path, false);
    } finally {
      connection?.closeSync();
    }
  }

  /** A new connection of its own (each session, query and export has one). */
  async connect(): Promise<DuckDbConnection> {
    if (this.invalidated) await this.reopen();
    return this.instance.connect();
  }

  /**
   * Runs `work` when no other write to this file runs. A failure that invalidated the database (DuckDB refuses
   * every statement after a fatal error) makes the next connection reopen it.
   */
  exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.chain.then(work, work);
    this.chain = run.catch((error: unknown) => {
      if (isInvalidated(error)) this.invalidated = true;
    });
    return run;
  }

  /** Starts a service of the file once (the first user's options win: one file, one server); a failed start is tried again by the next user. */
  async startService(name: string, start: () => Promise<{ stop(): Promise<void> } | null>): Promise<void> {
    let started = this.services.get(name);
    if (!started) {
      started = start();
      this.services.set(name, started);
      started.catch(() => this.services.delete(name));
    }
    await started;
  }

  private async reopen(): Promise<void> {
    this.invalidated = false;
    const old = this.instance;
    old.closeSync();
    this.instance = await openDuckDbInstance(this.api, this.path, false);
  }

  /** The instance, for readers running beside the writers (the query server, the export). */
  get readInstance(): DuckDbInstance {
    return this.instance;
  }

  /** Counted by acquireDuckDbFile; false once the last user let go (the file is closing or closed). */
  retain(): boolean {
    if (this.users < 0) return false;
    this.users++;
    return true;
  }

  /** Lets go of the file; the last user stops its services and closes it (DuckDB checkpoints at close). */
  async release(): Promise<void> {
    if (--this.users > 0) return;
    this.users = -1; // closing: nobody may take it any more
    files.delete(this.path);
    const done = (async () => {
      await this.chain.catch(() => undefined);
      await Promise.all([...this.services.values()].map((s) => s.then((service) => service?.stop()).catch(() => undefined)));
      this.services.clear();
      this.instance.closeSync();
    })();
    // Whoever opens the file again in this process waits for this close: two instances of one file in one
    // process would both write it (DuckDB's lock is per process).
    closing.set(this.path, done);
    try {
      await done;
    } finally {
      if (closing.get(this.path) === done) closing.delete(this.path);
    }
  }
}

/** Open files of this process by real path; a promise while one is being opened. */
const files = new Map<string, Promise<DuckDbFile>>();
/** Files of this process being closed, by real path. */
const closing = new Map<string, Promise<void>>();

/** The real path of a file that may not exist yet (its directory's real path, and its name). */
export function realPathOf(path: string): string {
  try {
    return existsSync(path) ? realpathSync(path) : join(realpathSync(dirname(path)), basename(path));
  } catch {
    return path;
  }
}

/** Opens `path` for writing, or shares this process's instance of it; call release() when done. */
export async function acquireDuckDbFile(path: string): Promise<DuckDbFile> {
  const key = realPathOf(path);
  for (;;) {
    await closing.get(key)?.catch(() => undefined);
    let opening = files.get(key);
    if (!opening) {
      opening = DuckDbFile.open(key);
      files.set(key, opening);
      opening.catch(() => {
        if (files.get(key) === opening) files.delete(key);
      });
    }
    const file = await opening;
    if (file.retain()) return file;
    // It was let go while this waited: open it again once it is closed.
  }
}

/** This process's open instance of `path`, if it has one (sitesync query then asks it directly). */
export async function heldDuckDbFile(path: string): Promise<DuckDbFile | undefined> {
  const opening = files.get(realPathOf(path));
  return opening?.catch(() => undefined);
}
