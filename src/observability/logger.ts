/**
 * pino JSON logs. One root logger per process; each part takes a child with its site and source, so every
 * line says where it came from. Connection strings are redacted wherever they appear.
 *
 * `pretty` (log.format, --log-format) turns each JSON line into one line for people at a terminal: time,
 * level, site/part, message and the other fields as key=value, after redaction as in JSON.
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

export type LogFormat = 'json' | 'pretty';
export const LOG_FORMATS: readonly LogFormat[] = ['json', 'pretty'];

export function createLogger(level: string, destination?: pino.DestinationStream, format: LogFormat = 'json'): Logger {
  const stderr = destination ? null : pino.destination({ fd: 2, sync: false });
  const target = destination ?? stderr!;
  const colors = !destination && process.stderr.isTTY === true && !process.env.NO_COLOR;
  const logger = pino(
    {
      level,
      base: { app: 'sitesync' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    format === 'pretty' ? prettyStream(target, colors) : target,
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

/** Writes each of pino's JSON lines to `target` as a pretty line; flushing flushes `target`. */
function prettyStream(target: pino.DestinationStream, colors: boolean): pino.DestinationStream {
  const flushable = target as pino.DestinationStream & { flush?: (cb?: (error?: Error) => void) => void };
  return Object.assign(
    { write: (line: string) => void target.write(formatPrettyLine(line, colors)) },
    flushable.flush ? { flush: (cb?: (error?: Error) => void) => flushable.flush!(cb) } : {},
  );
}

const LEVEL_NAMES: Readonly<Record<number, string>> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const LEVEL_COLORS: Readonly<Record<number, string>> = { 10: '90', 20: '36', 30: '32', 40: '33', 50: '31', 60: '35' };
/** Fields shown in the line's head, or not at all. */
const HEAD_FIELDS = new Set(['time', 'level', 'msg', 'app', 'pid', 'hostname', 'site', 'part']);
const MAX_VALUE_CHARS = 200;

/**
 * One pino JSON line as `2024-05-01 09:00:00.123Z INFO  paris/apply  applying from london halted: …  source=london`
 * (with its newline). A line that is not a JSON object is returned as it is.
 */
export function formatPrettyLine(json: string, colors = false): string {
  let entry: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(json);
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return json;
    entry = parsed as Record<string, unknown>;
  } catch {
    return json;
  }
  const level = typeof entry.level === 'number' ? entry.level : 30;
  const levelName = (LEVEL_NAMES[level] ?? String(entry.level)).padEnd(5);
  const time = typeof entry.time === 'string' ? entry.time.replace('T', ' ') : String(entry.time ?? '');
  const where = [entry.site, entry.part].filter((v) => v !== undefined && v !== null).join('/');
  const fields = Object.entries(entry)
    .filter(([key, value]) => !HEAD_FIELDS.has(key) && value !== undefined)
    .map(([key, value]) => `${key}=${prettyValue(key, value)}`);
  const head = colors ? `\x1b[${LEVEL_COLORS[level] ?? '0'}m${levelName}\x1b[0m` : levelName;
  return `${[time, head, where || '-', String(entry.msg ?? '')].join('  ')}${fields.length > 0 ? `  ${fields.join(' ')}` : ''}\n`;
}

function prettyValue(key: string, value: unknown): string {
  // pino's error serializer: the message says it; the stack is in the JSON format.
  if (key === 'err' && value !== null && typeof value === 'object' && typeof (value as { message?: unknown }).message === 'string') {
    return JSON.stringify((value as { message: string }).message);
  }
  const text = typeof value === 'string' && /^[^\s"'=]+$/.test(value) ? value : JSON.stringify(value);
  return text.length > MAX_VALUE_CHARS ? `${text.slice(0, MAX_VALUE_CHARS - 1)}…` : text;
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
