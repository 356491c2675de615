/**
 * The `mssql` driver (over `tedious`), loaded the first time a SQL Server site connects: a process whose sites
 * are all PostgreSQL or MariaDB never pays for loading it (it roughly doubles the CLI's start-up otherwise).
 */
export type MssqlDriver = typeof import('mssql');

let loading: Promise<MssqlDriver> | null = null;

export function loadMssql(): Promise<MssqlDriver> {
  // A CommonJS package: its exports are the namespace's `default` when imported from an ES module.
  loading ??= import('mssql').then((module) => (module as unknown as { default?: MssqlDriver }).default ?? (module as unknown as MssqlDriver));
  return loading;
}
