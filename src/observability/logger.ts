/**
 * pino JSON logs. One root logger per process; each part takes a child with its site and source, so every
 * line says where it came from. Connection strings are redacted wherever they appear.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

const REDACT_PATHS = ['url', 'postgres', 'connectionString', 'password', '*.url', '*.postgres', '*.password'];

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { app: 'sitesync' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination ?? pino.destination({ fd: 2, sync: false }),
  );
}

/** Replaces the password in a URL with ***, for messages that must name a server. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable URL)';
  }
}
