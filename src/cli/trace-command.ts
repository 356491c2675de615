/**
 * `sitesync trace`: where a transaction went. It finds the transaction in the archive stream (by its id,
 * or every transaction that touched one row: --table and --key, latest first), then says, for every other
 * configured site, one line:
 * - parked: its message waits in the site's parking queue (found by the `sitesync-parked-transaction`
 *   header, or in the body of a message refused whole), with the code and reason; looked at without
 *   taking anything (read unacknowledged, returned when the channel closes);
 * - applied: the site's applied position of the transaction's source (its connector's readStatus) is at or
 *   past it; at PostgreSQL sites, with what its conflict log (sitesync.conflicts) recorded of it: a lost
 *   conflict means the row kept the other write;
 * - passed over: at or behind the applied position but outside the site's tables (recorded as skipped);
 * - still queued: not applied, and messages wait in the site's queue;
 * - not applied, its process holds it (applying, or halted on an error), or not arrived (nothing queued).
 * main.ts only declares the command.
 */
import { databaseUrlFor, siteConfig, type Config } from '../config/config-schema.ts';
import { BOOKKEEPING_SCHEMA, parkingQueue, siteQueue } from '../config/names.ts';
import { connectBroker, withChannel } from '../bus/broker-connection.ts';
import { SCHEMA_VERSION_HEADER } from '../bus/message-headers.ts';
import { connectorFor, describeSitePosition, type ConnectorRegistry } from '../connector.ts';
import { describeError, SitesyncError } from '../errors.ts';
import { decodeMessage } from '../events/avro-codec.ts';
import { comparePositions } from '../events/position.ts';
import { microsToIso } from '../events/time.ts';
import { countOperations, tablesTouched, type Position, type Transaction } from '../events/transaction.ts';
import { refusedChange, tableScope } from '../apply/apply-scope.ts';
import { redactSecrets } from '../observability/logger.ts';
import { readArchive } from '../inspect/archive-reader.ts';
import { changePasses, parseChangeFilter, parseTransactionId, type ChangeFilter } from '../inspect/change-filter.ts';
import { flattenTransaction, showScalar, viewChange, type FlatChange } from '../inspect/change-format.ts';
import { readConflictsOf, type ConflictLookup } from '../inspect/conflict-log.ts';
import { parseLimit } from './tail-command.ts';
import type { ChannelModel } from 'amqplib';

export interface TraceCommandOptions {
  readonly transaction?: string;
  readonly table?: string;
  readonly key?: string;
  readonly limit?: string | number;
}

export interface TracePlan {
  /** What is looked for, as the not-found line names it. */
  readonly what: string;
  readonly filter: ChangeFilter;
  /** Transactions reported at most (a key: the latest ones). */
  readonly limit: number;
  /** A transaction id: the scan stops at the first message holding it. */
  readonly byId: boolean;
}

const DEFAULT_LIMIT = 10;
/** Parked messages looked at per site at most. */
const MAX_PARKED = 100_000;

function configError(message: string): SitesyncError {
  return new SitesyncError('SITESYNC_ERR_CONFIG', message);
}

export function planTrace(config: Config, connectors: ConnectorRegistry, options: TraceCommandOptions): TracePlan {
  const limit = parseLimit(options.limit) ?? DEFAULT_LIMIT;
  if (options.transaction !== undefined) {
    if (options.table !== undefined || options.key !== undefined) throw configError('give a transaction id, or --table and --key, not both');
    const id = parseTransactionId(config, connectors, options.transaction, 'the transaction id');
    return { what: `transaction ${id}`, filter: parseChangeFilter(config, connectors, { transaction: id }), limit: 1, byId: true };
  }
  if (options.table === undefined || options.key === undefined) {
    throw configError('give a transaction id as tail prints it (sitesync trace --config F paris:0/16B3748), or a row: --table schema.table --key \'{"id": 42}\'');
  }
  const filter = parseChangeFilter(config, connectors, { table: options.table, key: options.key });
  if (filter.tables!.size !== 1) throw configError(`--table ${JSON.stringify(options.table)}: trace follows one table's row; give one schema.table`);
  return { what: `a transaction that touched ${options.table} key ${options.key.trim()}`, filter, limit, byId: false };
}

/** A transaction found in the archive, with the changes that matched. */
export interface FoundTransaction {
  readonly tx: Transaction;
  readonly offset: number;
  readonly matched: readonly FlatChange[];
}

/** Finds the transactions in the archive: latest first, at most plan.limit. */
export async function findTransactions(config: Config, connectors: ConnectorRegistry, plan: TracePlan, signal?: AbortSignal): Promise<FoundTransaction[]> {
  // By transaction id, newest last: a transaction published twice (a crash before the checkpoint) counts once.
  const found = new Map<string, FoundTransaction>();
  for await (const entry of readArchive({ config, connectors, start: { kind: 'first' }, signal, connectionName: 'sitesync trace' })) {
    if (entry.kind !== 'message') continue;
    let hit = false;
    for (const tx of entry.message.transactions) {
      const matched = flattenTransaction(tx).filter((flat) => changePasses(plan.filter, flat));
      if (matched.length === 0 && !(plan.byId && tx.id === plan.filter.transaction)) continue;
      const before = found.get(tx.id);
      found.delete(tx.id);
      hit = true;
      // A transaction in parts: its changes are spread over several messages.
      found.set(tx.id, { tx, offset: before?.offset ?? entry.offset, matched: [...(before?.matched ?? []), ...matched] });
      if (found.size > plan.limit) found.delete(found.keys().next().value!);
    }
    // By id, the first copy will do (all of it: a transaction in parts ends with its last part).
    if (plan.byId && hit && (!entry.message.part || entry.message.part.last)) break;
  }
  return [...found.values()].reverse();
}

/** What one site holds of interest to the transactions traced. */
interface SiteFacts {
  /** Applied position by source site; a string: why it could not be read. */
  readonly applied: Map<string, Position | null> | string;
  readonly queue: { readonly messages: number; readonly consumers: number } | 'missing' | { readonly error: string };
  readonly parked: readonly ParkedMessage[] | { readonly error: string };
}

interface ParkedMessage {
  readonly id: string;
  readonly transactions: readonly string[];
  readonly code: string;
  readonly reason: string;
}

function headerText(value: unknown): string | null {
  return typeof value === 'string' ? value : Buffer.isBuffer(value) ? value.toString('utf8') : null;
}


/** The site's parking queue, looked at without taking anything. */
async function readParked(connection: ChannelModel, site: string): Promise<ParkedMessage[]> {
  return withChannel(connection, async (channel) => {
    const queue = parkingQueue(site);
    await channel.checkQueue(queue);
    const parked: ParkedMessage[] = [];
    for (let n = 1; n <= MAX_PARKED; n++) {
      const message = await channel.get(queue, { noAck: false });
      if (!message) break;
      const h = message.properties.headers ?? {};
      let transactions: string[] = [];
      const named = headerText(h['sitesync-parked-transaction']);
      if (named !== null) transactions = [named];
      else {
        // Refused whole (untrusted, undecodable…): its transactions are in its body, if it decodes.
        try {
          transactions = decodeMessage(message.content, Number(h[SCHEMA_VERSION_HEADER] ?? NaN)).transactions.map((tx) => tx.id);
        } catch {
          transactions = [];
        }
      }
      parked.push({
        id: headerText(h['sitesync-parked-id']) ?? `(no id, #${n})`,
        transactions,
        code: headerText(h['sitesync-parked-code']) ?? 'dead-lettered',
        reason: oneLine(headerText(h['sitesync-parked-reason']) ?? 'no reason recorded (dead-lettered by RabbitMQ after too many deliveries)'),
      });
    }
    return parked;
  });
}

function oneLine(text: string): string {
  const line = redactSecrets(text.split('\n')[0]!);
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

async function siteFacts(config: Config, connectors: ConnectorRegistry, connection: ChannelModel | string, site: string, sources: readonly string[]): Promise<SiteFacts> {
  let applied: SiteFacts['applied'];
  try {
    const status = await connectorFor(connectors, config, site).readStatus(databaseUrlFor(config, site, 'monitor'), site, sources);
    applied = new Map(status.applied.map((a) => [a.source, a.position]));
  } catch (error) {
    applied = oneLine(describeError(error));
  }
  if (typeof connection === 'string') return { applied, queue: { error: connection }, parked: { error: connection } };
  const queue = await withChannel(connection, async (channel) => {
    const q = await channel.checkQueue(siteQueue(site));
    return { messages: q.messageCount, consumers: q.consumerCount };
  }).catch((error: { code?: unknown }): SiteFacts['queue'] => (error.code === 404 ? 'missing' : { error: oneLine(describeError(error)) }));
  const parked = await readParked(connection, site).catch((error: { code?: unknown }): SiteFacts['parked'] => (error.code === 404 ? [] : { error: oneLine(describeError(error)) }));
  return { applied, queue, parked };
}

/** The line of one site for one transaction (without the site's name). */
async function siteLine(config: Config, connectors: ConnectorRegistry, site: string, facts: SiteFacts, tx: Transaction): Promise<string> {
  const describe = (p: Position | null): string => describeSitePosition(connectors, config, tx.site, p);
  const parked = Array.isArray(facts.parked) ? facts.parked.filter((p) => p.transactions.includes(tx.id)) : [];
  if (parked.length > 0) {
    const p = parked[parked.length - 1]!;
    return `parked in ${parkingQueue(site)} as ${p.id}: ${p.code}: ${p.reason} (see it: sitesync parked --site ${site} --show ${p.id})`;
  }
  const parkedUnknown = Array.isArray(facts.parked) ? '' : `; its parking queue could not be read (${(facts.parked as { error: string }).error})`;
  if (typeof facts.applied === 'string') return `unknown: its database could not be read (${facts.applied})${queueNote(site, facts)}${parkedUnknown}`;
  const progress = facts.applied.get(tx.site) ?? null;
  if (progress !== null && comparePositions(progress, tx.position) >= 0) {
    const refused = refusedChange(tx, tableScope(site, siteConfig(config, site)?.tables ?? null, (schema) => schema === BOOKKEEPING_SCHEMA || schema === 'pg_catalog' || schema === 'information_schema'));
    if (refused !== null) return `passed over, not applied: ${refused}; recorded as skipped, and its parked copy is no longer in ${parkingQueue(site)} (retried or discarded)${parkedUnknown}`;
    const targets = tx.snapshot?.targets;
    if (targets && !targets.includes(site)) return `recorded, rows not written here: snapshot ${tx.snapshot!.id} was sent to ${targets.join(', ')} only`;
    const conflicts = await readConflictsOf(config, connectors, site, tx.id);
    return `applied (${site} has ${tx.site} up to ${describe(progress)})${conflictNote(conflicts)}${parkedUnknown}`;
  }
  const behind = progress === null ? `${site} has applied nothing from ${tx.site} yet` : `${site} has ${tx.site} up to ${describe(progress)}`;
  if (facts.queue === 'missing') return `not arrived: queue ${siteQueue(site)} does not exist (${behind}); run the site once (sitesync run --site ${site})${parkedUnknown}`;
  if ('error' in facts.queue) return `not applied (${behind}); its queue could not be read (${facts.queue.error})${parkedUnknown}`;
  const { messages, consumers } = facts.queue;
  const consumed = consumers === 0 ? `no process consumes it: start sitesync run --site ${site}` : `${consumers} consumer${consumers === 1 ? '' : 's'}`;
  if (messages > 0) return `still queued: ${messages} message${messages === 1 ? '' : 's'} wait in ${siteQueue(site)}, ${consumed} (${behind})${parkedUnknown}`;
  if (consumers > 0) return `not applied yet, nothing waiting in ${siteQueue(site)}: its process holds it, applying it or halted on an error (${behind}); see sitesync status and that site's log${parkedUnknown}`;
  return `not arrived: not applied and nothing queued in ${siteQueue(site)} (${behind}); check that site's process (sitesync status, its log)${parkedUnknown}`;
}

function queueNote(site: string, facts: SiteFacts): string {
  if (facts.queue === 'missing') return `; queue ${siteQueue(site)} does not exist`;
  if ('error' in facts.queue) return '';
  return `; ${facts.queue.messages} message(s) wait in ${siteQueue(site)}`;
}

function conflictNote(lookup: ConflictLookup): string {
  if (lookup.kind === 'unsupported') return ' (its kind of database keeps no conflict log trace can read)';
  if (lookup.kind === 'unreadable') return ` (its conflict log could not be read: ${lookup.reason})`;
  const lost = lookup.entries.filter((e) => e.resolution === 'skipped');
  const won = lookup.entries.length - lost.length;
  const describeEntry = (e: (typeof lookup.entries)[number]): string => `${e.table} ${e.key} (${e.kind}, ${e.policy}: ${e.localSite ?? 'local'}'s write kept)`;
  let note = '';
  if (lost.length > 0) {
    note += `, but lost ${lost.length === 1 ? 'a conflict' : `${lost.length} conflicts`}: ${lost.slice(0, 3).map(describeEntry).join('; ')}${lost.length > 3 ? '; …' : ''}`;
  }
  if (won > 0) note += `${lost.length > 0 ? ', and' : ','} won ${won === 1 ? 'a conflict' : `${won} conflicts`}`;
  return note;
}

/** `transaction paris:… (0/16B3748), committed …, archive offset N: 2 changes (insert=1 update=1) to public.accounts`. */
export function describeFound(config: Config, connectors: ConnectorRegistry, found: FoundTransaction, byId: boolean): string {
  const { tx } = found;
  const head = `transaction ${tx.id} (${tx.site} at ${describeSitePosition(connectors, config, tx.site, tx.position)}), committed ${microsToIso(tx.commitTimeMicros)}, archive offset ${found.offset}`;
  if (!byId && found.matched.length > 0) {
    const show = { values: false, describe: (site: string, p: string) => describeSitePosition(connectors, config, site, p) };
    const changes = found.matched.slice(0, 5).map((flat) => {
      const view = viewChange(flat, show);
      return `${view.op} ${view.table} ${Object.entries(view.key).map(([k, v]) => `${k}=${showScalar(v)}`).join(',')}`;
    });
    return `${head}: ${changes.join('; ')}${found.matched.length > 5 ? '; …' : ''}`;
  }
  const counts = Object.entries(countOperations([tx])).filter(([, n]) => n > 0).map(([op, n]) => `${op}=${n}`).join(' ');
  const n = tx.changes.length;
  return `${head}: ${n} change${n === 1 ? '' : 's'}${counts ? ` (${counts})` : ''}${n > 0 ? ` to ${tablesTouched([tx]).join(', ')}` : ''}`;
}

/**
 * Finds and reports; returns the lines (a header per transaction, then one indented line per other site),
 * or throws a one-line Error when the archive does not hold it.
 */
export async function runTrace(config: Config, connectors: ConnectorRegistry, plan: TracePlan, print: (line: string) => void, signal?: AbortSignal): Promise<number> {
  const found = await findTransactions(config, connectors, plan, signal);
  if (found.length === 0) {
    throw new Error(`${plan.what} is not in the archive ${config.broker.archiveStream} (it keeps ${config.broker.archiveRetentionDays} days); check the id with sitesync tail --from first${plan.byId ? ` --transaction ${plan.filter.transaction}` : ''}`);
  }
  const sources = [...new Set(found.map((f) => f.tx.site))];
  let connection: ChannelModel | string;
  try {
    connection = await connectBroker(config.broker.url, 'sitesync trace');
    connection.on('error', () => undefined);
  } catch (error) {
    connection = oneLine(describeError(error));
  }
  try {
    const facts = new Map<string, SiteFacts>();
    const width = Math.max(...Object.keys(config.sites).map((s) => s.length));
    for (const f of found) {
      print(describeFound(config, connectors, f, plan.byId));
      for (const site of Object.keys(config.sites)) {
        if (site === f.tx.site) continue;
        let known = facts.get(site);
        if (!known) facts.set(site, (known = await siteFacts(config, connectors, connection, site, sources.filter((s) => s !== site))));
        print(`  ${site.padEnd(width)}  ${await siteLine(config, connectors, site, known, f.tx)}`);
      }
    }
  } finally {
    if (typeof connection !== 'string') await connection.close().catch(() => undefined);
  }
  return found.length;
}
