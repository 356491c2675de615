/**
 * The periodic Parquet export (`exportDir` and `exportSeconds` in the site's URL): every N seconds, each
 * current-state and history table of the site is written as one Parquet file in the directory, for tools that
 * read files rather than DuckDB (`schema.table.parquet`, `schema.table__history.parquet`).
 *
 * All tables of one export are read in one read-only transaction, so the files of one round show the same
 * moment; each is written to a temporary name in the same directory and renamed over the previous one, so a
 * reader finds the last complete file, never a half-written one. A round still running when the next is due
 * is not doubled; a failure is logged and the next round tries again.
 *
 * Names come from the sources: each part is percent-encoded (`/` cannot lead out of the directory).
 */
import { mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../../src/observability/logger.ts';
import type { DuckDbFile } from './duckdb-connection.ts';
import { firstLine } from './duckdb-errors.ts';
import { copyToParquet, REPLICATED_TABLES } from './duckdb-statements.ts';

/** The file one table is exported to. */
export function parquetFileName(schema: string, table: string): string {
  const part = (name: string): string => encodeURIComponent(name).replace(/^\./, '%2E');
  return `${part(schema)}.${part(table)}.parquet`;
}

/** Writes every replicated table of the file into `dir`, once; returns the files written. */
export async function exportParquet(file: DuckDbFile, dir: string): Promise<string[]> {
  mkdirSync(dir, { recursive: true });
  const connection = await file.readInstance.connect();
  const written: string[] = [];
  try {
    await connection.run('BEGIN TRANSACTION READ ONLY');
    try {
      const tables = (await connection.runAndReadAll(REPLICATED_TABLES)).getRows() as [string, string][];
      for (const [schema, table] of tables) {
        const name = parquetFileName(schema, table);
        const temporary = join(dir, `.${name}.${process.pid}.tmp`);
        try {
          await connection.run(copyToParquet(schema, table, temporary));
          renameSync(temporary, join(dir, name));
          written.push(name);
        } catch (error) {
          rmSync(temporary, { force: true });
          throw error;
        }
      }
    } finally {
      await connection.run('ROLLBACK').catch(() => undefined);
    }
  } finally {
    connection.closeSync();
  }
  return written;
}

/** Starts the rounds; stop() ends them, waiting for one under way. */
export function startParquetExport(file: DuckDbFile, options: { readonly dir: string; readonly seconds: number }, logger: Logger): { stop(): Promise<void> } {
  let running: Promise<void> | null = null;
  const round = (): void => {
    if (running) return;
    running = exportParquet(file, options.dir)
      .then((written) => logger.debug({ dir: options.dir, files: written.length }, 'Parquet export written'))
      .catch((error: unknown) => logger.warn({ dir: options.dir, reason: firstLine(error) }, 'Parquet export failed; the next round tries again'))
      .finally(() => {
        running = null;
      });
  };
  const timer = setInterval(round, options.seconds * 1000);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
