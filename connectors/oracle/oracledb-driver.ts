/**
 * The `oracledb` driver, loaded the first time an Oracle site connects: a process whose sites are all
 * PostgreSQL, MariaDB or SQL Server never pays for loading it. sitesync uses its Thin mode only (pure
 * JavaScript, no Oracle Client libraries): initOracleClient is never called, so the driver stays Thin.
 */
export type OracledbDriver = typeof import('oracledb');

let loading: Promise<OracledbDriver> | null = null;

export function loadOracledb(): Promise<OracledbDriver> {
  // A CommonJS package: its exports are the namespace's `default` when imported from an ES module.
  loading ??= import('oracledb').then((module) => (module as unknown as { default?: OracledbDriver }).default ?? (module as unknown as OracledbDriver));
  return loading;
}
