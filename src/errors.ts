/**
 * Every error a user can cause, in one catalogue. Each has a code, a one-line message that says what
 * happened to what, and what to do. docs/errors.md lists the same codes; test/unit/errors.test.ts keeps
 * the two in step.
 *
 * `consequence` grades an error by what the pipeline does about it:
 * - fatal: stop the process (configuration, permissions): retrying cannot help.
 * - retry: wait and try again (a service unreachable, a connection lost): nothing is lost meanwhile.
 * - park: set the one message aside with its reason and go on.
 * - halt-source: stop applying one source site until the cause is fixed, then resume by itself.
 */
export type Consequence = 'fatal' | 'retry' | 'park' | 'halt-source';

export const ERROR_CODES = {
  SITESYNC_ERR_CONFIG: 'fatal',
  SITESYNC_ERR_WAL_LEVEL: 'fatal',
  SITESYNC_ERR_PERMISSION: 'fatal',
  SITESYNC_ERR_DATABASE_UNREACHABLE: 'retry',
  SITESYNC_ERR_SITE_IN_USE: 'retry',
  SITESYNC_ERR_CATALOG_CHANGED: 'retry',
  SITESYNC_ERR_BROKER_UNREACHABLE: 'retry',
  SITESYNC_ERR_BROKER_REJECTED: 'retry',
  SITESYNC_ERR_DECODE: 'park',
  SITESYNC_ERR_MESSAGE_INVALID: 'park',
  SITESYNC_ERR_UNTRUSTED: 'park',
  SITESYNC_ERR_NOT_REPLICATED: 'park',
  SITESYNC_ERR_APPLY_DATA: 'halt-source',
  SITESYNC_ERR_APPLY_SCHEMA: 'halt-source',
  SITESYNC_ERR_GAP: 'halt-source',
} as const satisfies Record<string, Consequence>;

export type ErrorCode = keyof typeof ERROR_CODES;

export class SitesyncError extends Error {
  readonly code: ErrorCode;
  readonly consequence: Consequence;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SitesyncError';
    this.code = code;
    this.consequence = ERROR_CODES[code];
  }
}

/** A byte stream that is not what its format says (pgoutput, Avro): always this error, never a crash. */
export class DecodeError extends SitesyncError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('SITESYNC_ERR_DECODE', message, options);
    this.name = 'DecodeError';
  }
}

/** The one line an operator sees: code, then what and what to do. */
export function describeError(error: unknown): string {
  if (error instanceof SitesyncError) return `${error.code}: ${error.message}`;
  if (error instanceof Error) return error.message;
  return String(error);
}
