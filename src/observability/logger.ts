/**
 * pino JSON logs. One root logger per process; each part takes a child with its site and source, so every
 * line says where it came from. Connection strings are redacted wherever they appear.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

/** Fields that hold a connection URL (with its password) wherever a part logs one. */
const REDACT_PATHS = [
  'url',
  'postgres',
  'connectionString',
  'password',
  'brokerUrl',
  'monitor',
  'applyPostgres',
  'capturePostgres',
  'monitorPostgres',
  'captureUrl',
  'applyUrl',
  'monitorUrl',
  '*.url',
  '*.captureUrl',
  '*.applyUrl',
  '*.monitorUrl',
  '*.postgres',
  '*.password',
  '*.brokerUrl',
  '*.monitor',
  '*.applyPostgres',
  '*.capturePostgres',
  '*.monitorPostgres',
];

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  const stderr = destination ? null : pino.destination({ fd: 2, sync: false });
  const logger = pino(
    {
      level,
      base: { app: 'sitesync' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination ?? stderr!,
  );
  // Whoever read stderr went away (a supervisor, a parent that closed its pipe): the logs cannot be written,
  // and sitesync must go on working, and stop when told, without them. Seen: the exit-time flush retried a
  // write to a closed pipe for ever, and kept a stopped process alive and busy. Every logger (children
  // included) writes through this stream, so from then on it takes lines and drops them.
  if (stderr) {
    stderr.on('error', () => {
      stderr.write = () => true;
      stderr.flushSync = () => undefined;
    });
  }
  return logger;
}

/** Query parameters that carry a password in libpq (`password`, `sslpassword`) and AMQP client URLs (`pass`). */
const SECRET_QUERY_PARAMETERS = new Set(['password', 'sslpassword', 'pass']);

/**
 * Replaces the password in a URL with ***, in its user-info and in its query string, for messages that must
 * name a server. A URL with nothing to hide is returned as given; one that cannot be parsed is not echoed,
 * since where its password starts cannot be known.
 */
export function redactUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return '(unparseable URL)';
  }
  const query = u.search.slice(1).split('&');
  const redactedQuery = query.map((pair) => {
    const name = pair.split('=', 1)[0]!;
    return SECRET_QUERY_PARAMETERS.has(decodeQueryName(name).toLowerCase()) ? `${name}=***` : pair;
  });
  const queryHasSecret = redactedQuery.some((pair, i) => pair !== query[i]);
  if (!u.password && !queryHasSecret) return url;
  if (u.password) u.password = '***';
  // Rebuilt by hand rather than through searchParams, which would re-encode every other parameter.
  if (queryHasSecret) u.search = `?${redactedQuery.join('&')}`;
  return u.toString();
}

function decodeQueryName(name: string): string {
  try {
    return decodeURIComponent(name.replaceAll('+', ' '));
  } catch {
    return name;
  }
}

/**
 * Any scheme, not only the ones sitesync speaks: a URL given under the wrong scheme (mysql://u:pw@…) is
 * exactly the one an error message quotes. It ends at white space, quotes, brackets and parentheses, so a
 * URL inside JSON or "(…)" is found whole; trailing sentence punctuation is left out.
 */
const URL_IN_TEXT = /\b[a-z][a-z0-9+.-]*:\/\/[^\s"'`<>()[\]{}]*[^\s"'`<>()[\]{}.,;:!?]/gi;

/** libpq keyword/value connection strings ("host=h password=secret") and the same keys anywhere in text. */
const PASSWORD_KEYWORD = /\b(password|sslpassword|pass)(\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s"'&,;)]+)/gi;

/** Redacts every URL and every password=… keyword in free text (an error message, a quoted value). */
export function redactSecrets(text: string): string {
  return text.replace(URL_IN_TEXT, (url) => redactUrl(url)).replace(PASSWORD_KEYWORD, (_match, key: string, equals: string) => `${key}${equals}***`);
}
