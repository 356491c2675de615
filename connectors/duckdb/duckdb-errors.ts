/**
 * DuckDB's errors, graded and said in one line.
 *
 * DuckDB reports an error as an exception type and a message, `Catalog Error: Table with name x does not
 * exist!`, often followed by lines that point into the SQL. The node API hands it over as a plain Error with
 * that text: the type before ` Error:` is what grades it.
 * - transient (wait, retry, lose nothing): the file or the disk (IO), memory, a write-write conflict between
 *   two connections (TransactionContext), an interrupted statement, a database DuckDB invalidated after a
 *   fatal error (the session reopens it).
 * - schema (halt the source until someone fixes the target): a table or column that is not as expected
 *   (Catalog, Binder, Dependency), a type that does not match.
 * - data (park the transaction): a value DuckDB refuses (Conversion, Out of Range, Invalid Input,
 *   Constraint…), and anything else: retrying what the engine refused never ends.
 */
import type { ApplyErrorKind } from '../../src/apply/sink.ts';
import { SitesyncError } from '../../src/errors.ts';

/** The exception type DuckDB put before ` Error:` (`Catalog`, `IO`, `Conversion`…), or null. */
export function duckDbErrorType(error: unknown): string | null {
  const message = error instanceof Error ? error.message : typeof error === 'string' ? error : '';
  const m = /^([A-Za-z][A-Za-z_ ]{0,40}?) Error: /.exec(message);
  return m ? m[1]! : null;
}

const TRANSIENT_TYPES = new Set(['IO', 'Out of Memory', 'TransactionContext', 'INTERRUPT', 'Interrupt', 'FATAL', 'Fatal', 'Connection', 'Network', 'HTTP']);
const SCHEMA_TYPES = new Set(['Catalog', 'Binder', 'Dependency', 'Mismatch Type', 'Permission']);

/** A database DuckDB refuses to use any more after a fatal error: it must be closed and opened again. */
export function isInvalidated(error: unknown): boolean {
  const message = error instanceof Error ? error.message : String(error);
  return /database has been invalidated|FATAL Error/i.test(message);
}

export function classifyDuckDbError(error: unknown): ApplyErrorKind {
  if (error instanceof DuckDbApplyError) return error.kind;
  if (error instanceof SitesyncError) {
    // As the other sinks grade their own: a value refused parks; gaps, schema drift and configuration halt the
    // source; a bad or untrusted message parks; a file in use or unreachable retries.
    if (error.code === 'SITESYNC_ERR_APPLY_DATA' || error.consequence === 'park') return 'data';
    return error.consequence === 'retry' ? 'transient' : 'schema';
  }
  const type = duckDbErrorType(error);
  if (type === null) return 'data';
  if (TRANSIENT_TYPES.has(type) || isInvalidated(error)) return 'transient';
  if (SCHEMA_TYPES.has(type)) return 'schema';
  return 'data';
}

/** The first line of an error's message (DuckDB adds lines pointing into the SQL). */
export function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return (text.split('\n')[0] ?? '').trim();
}

/** A DuckDB error met while applying, said in one line, graded as DuckDB's own type says. */
export class DuckDbApplyError extends Error {
  readonly kind: ApplyErrorKind;
  constructor(message: string, kind: ApplyErrorKind, cause: unknown) {
    super(message, { cause });
    this.name = 'DuckDbApplyError';
    this.kind = kind;
  }
}

/** An error met while applying, as one line naming where and what to do; SitesyncErrors pass as they are. */
export function describeApplyError(error: unknown, context: { readonly source: string; readonly site: string; readonly transaction?: string }): Error {
  if (error instanceof SitesyncError || error instanceof DuckDbApplyError) return error;
  const kind = classifyDuckDbError(error);
  const what = `applying ${context.transaction ? `transaction ${context.transaction}` : `site ${context.source}'s changes`} at DuckDB site ${context.site}`;
  const fix =
    kind === 'transient'
      ? 'sitesync retries and loses nothing meanwhile'
      : kind === 'schema'
        ? "make the DuckDB tables match the source's (sitesync retries and resumes by itself)"
        : 'fix the value at the source or skip it, then retry the parked transaction';
  return new DuckDbApplyError(`${what}: ${firstLine(error)}; ${fix}`, kind, error);
}

/** A failure to open a site's file or prepare sitesync's tables in it, as one line naming the site and the file. */
export function describeFileError(error: unknown, site: string, path: string): Error {
  if (error instanceof SitesyncError || error instanceof DuckDbApplyError) return error;
  const kind = classifyDuckDbError(error);
  const fix = kind === 'transient' ? 'sitesync retries and loses nothing meanwhile' : "fix the file, its directory or its permissions (or the site's URL)";
  return new DuckDbApplyError(`DuckDB site ${site} (${path}): ${firstLine(error)}; ${fix}`, kind, error);
}

/**
 * A failure to open the DuckDB file, said in one line naming the file. Held by another process (DuckDB lets
 * one process write a file): retried, since that process may be on its way out; the line says to stop it or to
 * read through it with `sitesync query`.
 */
export function describeOpenError(error: unknown, path: string, readOnly: boolean): SitesyncError {
  if (error instanceof SitesyncError) return error;
  const line = firstLine(error);
  const holder = /Conflicting lock is held in (.*?) \(PID ([0-9]+)\)/.exec(line);
  if (/Could not set lock on file/i.test(line)) {
    const who = holder ? `another process (${holder[1]}, PID ${holder[2]})` : 'another process';
    return new SitesyncError(
      'SITESYNC_ERR_SITE_IN_USE',
      `DuckDB file ${path} is held by ${who}, and DuckDB lets one process at a time use a file it writes; stop that process, or read the file through it with \`sitesync query\``,
      { cause: error },
    );
  }
  if (readOnly && /database does not exist/i.test(line)) {
    return new SitesyncError('SITESYNC_ERR_CONFIG', `DuckDB file ${path} does not exist: nothing was applied there yet (start its site with \`sitesync run\`) or the site's URL names another file`, { cause: error });
  }
  return new SitesyncError('SITESYNC_ERR_CONFIG', `cannot open DuckDB file ${path}: ${line}; fix the path in the site's URL, its directory or its permissions`, { cause: error });
}

/**
 * A failure to load DuckDB's engine, said in one line naming the package to install. `@duckdb/node-api` is an
 * optional dependency; its engine ships in a package per platform (`@duckdb/node-bindings-linux-x64`…), which
 * npm leaves out with `--omit=optional` or on a platform it did not resolve at install.
 */
export function describeLoadError(error: unknown): SitesyncError {
  const line = firstLine(error);
  const platformPackage = /@duckdb\/node-bindings-[a-z0-9-]+/.exec(line)?.[0];
  const wanted = platformPackage ?? (/@duckdb\/node-bindings\b/.test(line) ? '@duckdb/node-bindings' : '@duckdb/node-api');
  return new SitesyncError(
    'SITESYNC_ERR_CONFIG',
    `DuckDB sites need the package ${wanted} (DuckDB's engine for ${process.platform}-${process.arch}), which is not installed: run \`npm install --include=optional\` in sitesync's directory (${line})`,
    { cause: error },
  );
}
