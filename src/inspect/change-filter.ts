/**
 * What an operator asked to see (`sitesync tail`, `trace`): sites, tables, operations, a key, a transaction,
 * and where in the archive to start. Each option is checked against the configuration before anything is
 * read; a bad one is one line (SITESYNC_ERR_CONFIG) naming the option, the value and the form to give.
 * Pure.
 */
import { isConfiguredSite, type Config } from '../config/config-schema.ts';
import { connectorFor, type ConnectorRegistry } from '../connector.ts';
import { SitesyncError } from '../errors.ts';
import { comparePositions } from '../events/position.ts';
import { transactionId, type ChangeOp, type Position, type Transaction } from '../events/transaction.ts';
import { changedKey, keyTexts, tableName, type FlatChange, type KeyText } from './change-format.ts';

/** The operations `--op` takes (a logical message is shown only when no --op is given). */
export const FILTER_OPS = ['insert', 'update', 'delete', 'truncate', 'read'] as const;

export type KeyFilter =
  /** `{"id": 42, "region": "eu"}`: each named key column has that value. */
  | { readonly kind: 'columns'; readonly columns: ReadonlyMap<string, Scalar> }
  /** `42`, `abc` or `[42, "eu"]`: the key's values, in its column order. */
  | { readonly kind: 'values'; readonly values: readonly Scalar[] };

type Scalar = string | number | boolean | null;

export interface ChangeFilter {
  readonly sites: ReadonlySet<string> | null;
  readonly tables: ReadonlySet<string> | null;
  readonly ops: ReadonlySet<ChangeOp> | null;
  readonly key: KeyFilter | null;
  readonly transaction: string | null;
}

export interface FilterOptions {
  readonly site?: string;
  readonly table?: string;
  readonly op?: string;
  readonly key?: string;
  readonly transaction?: string;
}

/** Where reading the archive starts. */
export type ArchiveStart =
  | { readonly kind: 'first' }
  /** The last message archived when reading starts. */
  | { readonly kind: 'last' }
  /** Transactions committed at or after this time (microseconds since the epoch). */
  | { readonly kind: 'time'; readonly micros: bigint; readonly text: string }
  /** From `site`'s transaction at `position` (or its first one after it) on, every site's. */
  | { readonly kind: 'position'; readonly site: string; readonly position: Position; readonly text: string };

function configError(message: string): SitesyncError {
  return new SitesyncError('SITESYNC_ERR_CONFIG', message);
}

function list(text: string): string[] {
  return text.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
}

function sitesOf(config: Config): string {
  return Object.keys(config.sites).join(', ');
}

function checkSite(config: Config, site: string, option: string, value: string): void {
  if (!isConfiguredSite(config, site)) throw configError(`${option} ${JSON.stringify(value)}: site ${JSON.stringify(site)} is not in the configuration; give one of: ${sitesOf(config)}`);
}

const TABLE_NAME = /^[^.\s]+\.[^.\s]+$/;

export function parseChangeFilter(config: Config, connectors: ConnectorRegistry, options: FilterOptions): ChangeFilter {
  let sites: Set<string> | null = null;
  if (options.site !== undefined) {
    const names = list(options.site);
    if (names.length === 0) throw configError(`--site is empty; give a site name (${sitesOf(config)}), or several separated by commas`);
    for (const site of names) checkSite(config, site, '--site', options.site);
    sites = new Set(names);
  }
  let tables: Set<string> | null = null;
  if (options.table !== undefined) {
    const names = list(options.table);
    if (names.length === 0) throw configError('--table is empty; give schema.table (public.accounts), or several separated by commas');
    const bad = names.find((name) => !TABLE_NAME.test(name));
    if (bad !== undefined) throw configError(`--table ${JSON.stringify(bad)} is not schema.table; give the schema too (public.${bad.includes('.') ? 'accounts' : bad})`);
    tables = new Set(names);
  }
  let ops: Set<ChangeOp> | null = null;
  if (options.op !== undefined) {
    const names = list(options.op.toLowerCase());
    const known = new Set<string>(FILTER_OPS);
    const bad = names.find((name) => !known.has(name));
    if (names.length === 0 || bad !== undefined) throw configError(`--op ${JSON.stringify(bad ?? options.op)} is not an operation; give one or more of ${FILTER_OPS.join(', ')}, separated by commas`);
    ops = new Set(names as ChangeOp[]);
  }
  const key = options.key === undefined ? null : parseKeyFilter(options.key);
  const transaction = options.transaction === undefined ? null : parseTransactionId(config, connectors, options.transaction, '--transaction');
  return { sites, tables, ops, key, transaction };
}

/** `--key`: a JSON object of key columns, a JSON array of the key's values, or one value as text. */
export function parseKeyFilter(text: string): KeyFilter {
  const trimmed = text.trim();
  if (trimmed.length === 0) throw configError('--key is empty; give the key as JSON ({"id": 42}) or its value (42)');
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(trimmed);
    } catch (error) {
      throw configError(`--key ${JSON.stringify(shorten(text))} is not valid JSON (${(error as Error).message.split('\n')[0]}); give an object of key columns such as {"id": 42} (quote it for the shell), or the value alone`);
    }
    if (Array.isArray(parsed)) {
      if (parsed.length === 0) throw configError('--key [] names no value; give the key\'s values in column order ([42, "eu"]) or an object ({"id": 42})');
      return { kind: 'values', values: parsed.map((v, i) => scalar(v, `value ${i + 1}`)) };
    }
    const entries = Object.entries(parsed as Record<string, unknown>);
    if (entries.length === 0) throw configError('--key {} names no column; give the key columns and their values ({"id": 42})');
    return { kind: 'columns', columns: new Map(entries.map(([name, v]) => [name, scalar(v, `column ${JSON.stringify(name)}`)])) };
  }
  // A bare JSON number or string is the value it spells; anything else is text as typed.
  if (/^"(?:[^"\\]|\\.)*"$/.test(trimmed)) {
    try {
      return { kind: 'values', values: [JSON.parse(trimmed) as string] };
    } catch {
      // not a JSON string after all: the text itself
    }
  }
  return { kind: 'values', values: [trimmed] };
}

function scalar(value: unknown, what: string): Scalar {
  if (typeof value === 'number' && Number.isInteger(value) && !Number.isSafeInteger(value)) {
    throw configError(`--key: ${what} is an integer beyond 2^53, which JSON numbers do not hold exactly; give it as a string ("12345678901234567890")`);
  }
  if (value === null || typeof value === 'string' || typeof value === 'boolean' || (typeof value === 'number' && Number.isFinite(value))) return value as Scalar;
  throw configError(`--key: ${what} is ${Array.isArray(value) ? 'an array' : typeof value}; give a number, a string, true/false or null for each key column`);
}

function shorten(text: string): string {
  return text.length > 60 ? `${text.slice(0, 60)}…` : text;
}

/** A transaction id as tail prints it (`paris:00000000016B3748`), or with the position as the site's database prints it (`paris:0/16B3748`). */
export function parseTransactionId(config: Config, connectors: ConnectorRegistry, text: string, option: string): string {
  const value = text.trim();
  const colon = value.indexOf(':');
  const first = Object.keys(config.sites)[0];
  const example = first === undefined ? 'paris:0/16B3748' : `${first}:${connectorFor(connectors, config, first).positions.example}`;
  if (colon <= 0) throw configError(`${option} ${JSON.stringify(shorten(text))} is not a transaction id; give site:position as tail prints it (${example})`);
  const site = value.slice(0, colon);
  checkSite(config, site, option, text);
  const positions = connectorFor(connectors, config, site).positions;
  const position = positions.parse(value.slice(colon + 1));
  if (position === null) throw configError(`${option} ${JSON.stringify(shorten(text))}: ${JSON.stringify(shorten(value.slice(colon + 1)))} is not a position of site ${site}; give one as its database prints it (${site}:${positions.example}) or as tail prints it`);
  return transactionId(site, position);
}

/** Whether the transaction's site and id pass (checked before its changes). */
export function transactionPasses(filter: ChangeFilter, tx: Transaction): boolean {
  if (filter.sites !== null && !filter.sites.has(tx.site)) return false;
  if (filter.transaction !== null && tx.id !== filter.transaction) return false;
  return true;
}

/** Whether one change passes every filter. */
export function changePasses(filter: ChangeFilter, flat: FlatChange): boolean {
  if (!transactionPasses(filter, flat.tx)) return false;
  if (filter.ops !== null && !filter.ops.has(flat.op)) return false;
  if (filter.tables !== null && (flat.relation === null || !filter.tables.has(tableName(flat.relation)))) return false;
  if (filter.key !== null) {
    const keys = [keyTexts(flat.relation, flat.row), changedKey(flat)].filter((k): k is KeyText[] => k !== null && k.length > 0);
    if (!keys.some((key) => keyMatches(filter.key!, key))) return false;
  }
  return true;
}

/** Whether a row's key (its key columns' texts) is the one asked for. */
export function keyMatches(filter: KeyFilter, key: readonly KeyText[]): boolean {
  if (filter.kind === 'columns') {
    for (const [name, want] of filter.columns) {
      const column = key.find((k) => k.name === name);
      if (column === undefined || !valueMatches(want, column)) return false;
    }
    return true;
  }
  const { values } = filter;
  if (values.length === key.length) return values.every((want, i) => valueMatches(want, key[i]!));
  // One text for a composite key: its values joined by commas, as the table shows them.
  if (values.length === 1 && typeof values[0] === 'string' && key.length > 1) return key.map((k) => k.text ?? 'NULL').join(',') === values[0];
  return false;
}

const NUMERIC = new Set(['int16', 'int32', 'int64', 'float32', 'float64', 'decimal']);

function valueMatches(want: Scalar, column: KeyText): boolean {
  const text = column.text;
  if (want === null) return text === null;
  if (text === null) return false;
  if (typeof want === 'boolean') return column.kind.kind === 'boolean' ? text === (want ? 't' : 'f') : text === String(want);
  if (text === String(want)) return true;
  // 12.5 matches a decimal's 12.50; "0042" never matches 42 as text, but does as a number of a numeric kind.
  if (NUMERIC.has(column.kind.kind)) {
    const asked = typeof want === 'number' ? want : /^-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$/.test(want) ? Number(want) : NaN;
    if (!Number.isNaN(asked) && Number(text) === asked) {
      // Integers beyond 2^53 are compared exactly, as text.
      return !(column.kind.kind === 'int64' && !Number.isSafeInteger(asked));
    }
  }
  return false;
}

/**
 * The start point's test of each transaction: inside the range or not. For a position start, `opened` says
 * whether the start was passed already (every later transaction of every site is in).
 */
export function startPasses(start: ArchiveStart, tx: Transaction, opened: boolean): boolean {
  switch (start.kind) {
    case 'first':
    case 'last':
      return true;
    case 'time':
      return tx.commitTimeMicros >= start.micros;
    case 'position':
      return opened || (tx.site === start.site && comparePositions(tx.position, start.position) >= 0);
  }
}
