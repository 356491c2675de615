/**
 * A site's Oracle URL, read once into the driver's connection attributes, shared by the LogMiner reader
 * (oracledb-logminer-reader.ts) and the apply connection (oracledb-apply-connection.ts).
 *
 *   oracle://user:password@host:1521/service_name
 *
 * The path is the service name (Oracle's Easy Connect `host:port/service_name`); it is required, since an
 * instance serves several (in a multitenant database one per pluggable database: FREEPDB1, ORCLPDB1). Name the
 * service of the database the application's tables are in: the sink writes there, the reader reads its
 * tables and SITESYNC's there, and mines redo from the root itself when the database is a CDB. User and
 * password are percent-decoded (a password with `@` or `/` is written `%40`, `%2F`); a common user's `C##` is
 * written as is (`#` must be `%23` in a URL: oracle://C%23%23SITESYNC:…). Parameters:
 * - `connectTimeout`: seconds to wait for the listener (the driver's default is 60);
 * - `callTimeout`: milliseconds a round trip may take before the driver gives up (default none);
 * - `timeZone`: the IANA name of the zone of the database server's clock (its operating system's, in which
 *   LogMiner's times are written). Optional: without it the reader takes the offset of SYSTIMESTAMP at the
 *   start of each mining window, which is right unless a daylight-saving change falls between a change and its
 *   mining; set it on servers whose zone has daylight saving (oracledb-logminer-reader.ts).
 * Thin mode only (oracledb-driver.ts): no Oracle Client libraries, no tnsnames.ora.
 */
import type { ConnectionAttributes } from 'oracledb';

export const ORACLE_URL_EXAMPLE = 'an Oracle URL such as oracle://C%23%23SITESYNC:password@db.madrid:1521/FREEPDB1';

const PARAMETERS = new Set(['connectTimeout', 'callTimeout', 'timeZone']);

function decode(text: string): string | null {
  try {
    return decodeURIComponent(text);
  } catch {
    return null;
  }
}

/** A problem with an Oracle URL, said in a few words, or null. */
export function checkOracleUrl(url: string): string | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'is not a URL';
  }
  if (parsed.protocol !== 'oracle:') return `starts with ${parsed.protocol}// instead of oracle://`;
  if (parsed.hostname === '') return 'names no host';
  if (parsed.port !== '' && !(Number(parsed.port) > 0 && Number(parsed.port) < 65536)) return `has port ${parsed.port}`;
  const path = parsed.pathname.replace(/^\//, '');
  if (path === '') return 'names no service (oracle://user:password@host:1521/service_name)';
  const service = decode(path);
  if (service === null) return 'has a badly encoded service name';
  if (!/^[A-Za-z0-9_.$#-]+$/.test(service)) return 'has a service name that is not a plain name (one path segment of letters, digits, _ . $ # -)';
  if (decode(parsed.username) === null || decode(parsed.password) === null) return 'has a badly encoded user or password';
  if (parsed.username === '') return 'names no user (oracle://user:password@host:1521/service_name)';
  for (const [name, value] of parsed.searchParams) {
    if (!PARAMETERS.has(name)) return `has unknown parameter ${name} (known: ${[...PARAMETERS].join(', ')})`;
    if (name === 'connectTimeout' && !/^[1-9][0-9]{0,5}$/.test(value)) return `has connectTimeout=${value} instead of seconds`;
    if (name === 'callTimeout' && !/^[1-9][0-9]{0,8}$/.test(value)) return `has callTimeout=${value} instead of milliseconds`;
    if (name === 'timeZone' && !isIanaZone(value)) return `has timeZone=${value}, which is not an IANA time zone`;
  }
  return null;
}

function isIanaZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** What the driver needs, plus the call timeout (set on the connection, not given at connect). */
export interface OracleConnectionConfig {
  readonly attributes: ConnectionAttributes;
  /** connection.callTimeout in milliseconds, or null. */
  readonly callTimeout: number | null;
  /** The service name of the URL (the PDB, in a CDB). */
  readonly service: string;
  readonly user: string;
}

/** The driver's configuration of a URL; throws a plain Error with checkOracleUrl's words when it is wrong. */
export function oracledbConfig(url: string): OracleConnectionConfig {
  const problem = checkOracleUrl(url);
  if (problem !== null) throw new Error(`the Oracle URL ${problem}`);
  const parsed = new URL(url);
  const host = parsed.hostname; // an IPv6 address keeps its brackets: Easy Connect wants them
  const port = parsed.port === '' ? 1521 : Number(parsed.port);
  const service = decode(parsed.pathname.replace(/^\//, ''))!;
  const user = decode(parsed.username)!;
  const attributes: ConnectionAttributes = {
    user,
    connectString: `${host}:${port}/${service}`,
    ...(parsed.password !== '' ? { password: decode(parsed.password)! } : {}),
  };
  const connectTimeout = parsed.searchParams.get('connectTimeout');
  if (connectTimeout !== null) attributes.connectTimeout = Number(connectTimeout);
  const callTimeout = parsed.searchParams.get('callTimeout');
  return { attributes, callTimeout: callTimeout === null ? null : Number(callTimeout), service, user };
}

/** The service a URL names (setup facts and status lines name it). */
export function serviceOfUrl(url: string): string {
  return oracledbConfig(url).service;
}
