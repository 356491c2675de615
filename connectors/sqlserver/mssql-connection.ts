/**
 * A site's SQL Server URL, read once into the driver's configuration, shared by the CDC reader
 * (mssql-cdc-reader.ts) and the apply connection (mssql-apply-connection.ts).
 *
 *   sqlserver://user:password@host:1433/database?encrypt=true&trustServerCertificate=false
 *
 * `mssql://` is the same. User and password are percent-decoded (a password with `@` or `/` is written
 * `%40`, `%2F`). The database is required: CDC is enabled per database, and sitesync's bookkeeping lives in
 * its `sitesync` schema. Parameters:
 * - `encrypt` (default true) and `trustServerCertificate` (default false): TLS, as the driver names them
 *   (a development server with a self-signed certificate needs `trustServerCertificate=true`);
 * - `instanceName`: a named instance (found through the SQL Browser; then leave the port out);
 * - `connectTimeout`, `requestTimeout`: milliseconds (driver defaults 15000 each);
 * - `applicationName`: shown in sys.dm_exec_sessions (default `sitesync`);
 * - `timeZone`: a Windows time zone name (`W. Europe Standard Time`) for servers older than SQL Server 2022,
 *   which cannot say their own (CURRENT_TIMEZONE_ID()): commit times are converted with it (mssql-cdc-reader.ts).
 */
import type { config as MssqlConfig } from 'mssql';

export const SQLSERVER_URL_EXAMPLE = 'a SQL Server URL such as sqlserver://sitesync:password@db.madrid:1433/shop?encrypt=true&trustServerCertificate=false';

const PARAMETERS = new Set(['encrypt', 'trustServerCertificate', 'instanceName', 'connectTimeout', 'requestTimeout', 'applicationName', 'timeZone']);
const BOOLEANS = new Set(['encrypt', 'trustServerCertificate']);
const MILLISECONDS = new Set(['connectTimeout', 'requestTimeout']);

function decode(text: string): string | null {
  try {
    return decodeURIComponent(text);
  } catch {
    return null;
  }
}

/** A problem with a SQL Server URL, said in a few words, or null. */
export function checkSqlServerUrl(url: string): string | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'is not a URL';
  }
  if (parsed.protocol !== 'sqlserver:' && parsed.protocol !== 'mssql:') return `starts with ${parsed.protocol}// instead of sqlserver:// or mssql://`;
  if (parsed.hostname === '') return 'names no host';
  if (parsed.port !== '' && !(Number(parsed.port) > 0 && Number(parsed.port) < 65536)) return `has port ${parsed.port}`;
  const path = parsed.pathname.replace(/^\//, '');
  if (path === '') return 'names no database (sqlserver://user:password@host:1433/database)';
  const database = decode(path);
  if (database === null) return 'has a badly encoded database name';
  if (database.includes('/')) return 'has more than a database in its path';
  if (decode(parsed.username) === null || decode(parsed.password) === null) return 'has a badly encoded user or password';
  for (const [name, value] of parsed.searchParams) {
    if (!PARAMETERS.has(name)) return `has unknown parameter ${name} (known: ${[...PARAMETERS].join(', ')})`;
    if (BOOLEANS.has(name) && value !== 'true' && value !== 'false') return `has ${name}=${value} instead of true or false`;
    if (MILLISECONDS.has(name) && !/^[1-9][0-9]{0,8}$/.test(value)) return `has ${name}=${value} instead of milliseconds`;
  }
  return null;
}

/** The driver's configuration of a URL; throws a plain Error with checkSqlServerUrl's words when it is wrong. */
export function mssqlConfig(url: string): MssqlConfig {
  const problem = checkSqlServerUrl(url);
  if (problem !== null) throw new Error(`the SQL Server URL ${problem}`);
  const parsed = new URL(url);
  const query = parsed.searchParams;
  const instanceName = query.get('instanceName') ?? undefined;
  const config: MssqlConfig = {
    server: parsed.hostname.replace(/^\[(.*)\]$/, '$1'),
    database: decode(parsed.pathname.replace(/^\//, ''))!,
    options: {
      encrypt: query.get('encrypt') !== 'false',
      trustServerCertificate: query.get('trustServerCertificate') === 'true',
      appName: query.get('applicationName') ?? 'sitesync',
      ...(instanceName !== undefined ? { instanceName } : {}),
    },
  };
  if (parsed.port !== '') config.port = Number(parsed.port);
  else if (instanceName === undefined) config.port = 1433;
  if (parsed.username !== '') config.user = decode(parsed.username)!;
  if (parsed.password !== '') config.password = decode(parsed.password)!;
  const connectTimeout = query.get('connectTimeout');
  if (connectTimeout !== null) config.connectionTimeout = Number(connectTimeout);
  const requestTimeout = query.get('requestTimeout');
  if (requestTimeout !== null) config.requestTimeout = Number(requestTimeout);
  return config;
}

/** The database a URL names (the reader's setup facts name it). */
export function databaseOfUrl(url: string): string {
  return mssqlConfig(url).database!;
}

/** The `timeZone` parameter of a URL (a Windows time zone name), or null. */
export function timeZoneOfUrl(url: string): string | null {
  try {
    return new URL(url).searchParams.get('timeZone');
  } catch {
    return null;
  }
}
