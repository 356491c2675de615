/**
 * Replay: the archive stream → a site's sink, for a site that lost what it had applied (restored from an
 * older copy) or to check that it has everything. `sitesync replay` drives it; the site's own
 * `sitesync run` must be stopped meanwhile.
 *
 * The archive (`broker.archiveStream`, a RabbitMQ stream) keeps every site's messages in publish order for
 * `broker.archiveRetentionDays`. Replay reads it with an AMQP 0.9.1 stream consumer from `--from`:
 * - a time starts at the stream chunk holding that time (RabbitMQ's `x-stream-offset` timestamp, in
 *   seconds), so a few messages from just before it may be read too; those the site has are skipped;
 * - a position starts at the first message kept and leaves out the source's transactions at or below it.
 * It considers the messages of the chosen sources only, and applies them exactly as the apply runner does:
 * per source, a transaction at or below the position recorded at the target is already there (counted,
 * not applied); the rest is applied in stream order; a message whose predecessor the target does not hold
 * stops the replay with SITESYNC_ERR_GAP (the range read starts too late). Replaying twice changes nothing.
 *
 * A stream consumer never ends by itself. Replay learns where the stream ends when it starts (the highest
 * offset of its last chunk) and stops once it has handled that offset; messages published later are in
 * the site's queue anyway, for `sitesync run`. As a fallback it also stops when nothing arrives for
 * IDLE_END_MS while it waits. It stops earlier at `--to`, once every chosen source has passed it.
 *
 * A message that cannot be decoded is counted and reported, never fatal: the archive is not the place to
 * park it (the site's queue parked it when it first arrived).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { ChannelModel, ConsumeMessage } from 'amqplib';
import type { Config } from '../config/config-schema.ts';
import { siteQueue } from '../config/names.ts';
import { connectBroker, withChannel } from '../bus/broker-connection.ts';
import { archiveEnd, streamOffset, type EndProbeTimings } from '../bus/archive-stream.ts';
import { SCHEMA_VERSION_HEADER } from '../bus/message-headers.ts';
import { decodeMessage } from '../events/avro-codec.ts';
import { addressedTo } from './apply-scope.ts';
import { comparePositions } from '../events/position.ts';
import { describeSitePosition, type ConnectorRegistry } from '../connector.ts';
import { microsToIso } from '../events/time.ts';
import type { ChangeMessage, Position, Transaction } from '../events/transaction.ts';
import { describeError, SitesyncError } from '../errors.ts';
import type { Logger } from '../observability/logger.ts';
import type { Sink, SourceSession } from './sink.ts';
import { refusedChange, tableScope, type TableScope } from './apply-scope.ts';
import { foreignShape, provenanceOf, untrustedReason } from './message-provenance.ts';

/** Where a replay starts or ends: a time (microseconds since the epoch) or a source position. */
export type ReplayPoint =
  | { readonly kind: 'time'; readonly micros: bigint; readonly text: string }
  | { readonly kind: 'position'; readonly position: Position; readonly text: string };

export interface ReplayOptions {
  readonly config: Config;
  /** The target site. */
  readonly site: string;
  /** The source sites whose messages are replayed (never the target itself). */
  readonly sources: readonly string[];
  readonly from: ReplayPoint;
  readonly to: ReplayPoint | null;
  readonly sink: Sink;
  /** Every database kind's positions, for the display form of each source's. */
  readonly connectors: ConnectorRegistry;
  readonly logger: Logger;
  /** Receives the progress lines (one per ~PROGRESS_EVERY transactions) and nothing else. */
  readonly report: (line: string) => void;
  /**
   * The site's own `sitesync run` replays (a joining site catching up, join-coordinator.ts): its queue's
   * consumer is that process, which applies nothing else meanwhile. Default false: the replay refuses to
   * run while anyone consumes the site's queue.
   */
  readonly insideRun?: boolean;
  /** The broker URL to read the archive with. Default broker.url. */
  readonly brokerUrl?: string;
  /** How long without a message, while waiting, means the end of the stream. Default 2 s. */
  readonly idleEndMs?: number;
}

export interface ReplaySourceResult {
  readonly source: string;
  /** Transactions applied by this replay. */
  readonly applied: number;
  /** Transactions read that the target already had. */
  readonly alreadyThere: number;
  /** Messages of this source skipped: undecodable, not vouched for by RabbitMQ, or transactions outside the target's tables. */
  readonly undecodable: number;
  /** The source's position at the target after the replay (null: nothing ever applied). */
  readonly progress: Position | null;
}

export interface ReplayResult {
  readonly sources: readonly ReplaySourceResult[];
  /** Undecodable messages that name no site (or a site that is not configured). */
  readonly undecodableUnattributed: number;
  /** Messages read from the stream, whatever their source. */
  readonly messagesRead: number;
}

const PROGRESS_EVERY = 1000;
const IDLE_END_MS = 2000;
/**
 * How long the end-of-stream probe waits: for a first message, then for quiet after the last one; under steady
 * writes the last chunk never goes quiet, and the end is what was seen by then (anything later reaches the
 * site's queue anyway).
 */
const END_PROBE: EndProbeTimings = { firstMs: 1500, quietMs: 300, maxMs: 3000, prefetch: 0 };

interface SourceReplay {
  readonly source: string;
  readonly session: SourceSession;
  progress: Position | null;
  applied: number;
  alreadyThere: number;
  undecodable: number;
  /** Past `--to`: nothing more of this source is applied. */
  finished: boolean;
}

/** The summary line of one source, as `sitesync replay` prints it at the end. */
export function formatReplaySummary(result: ReplaySourceResult, describe: (position: Position | null) => string = (p) => p ?? 'none'): string {
  return `replayed ${result.applied} transactions from ${result.source} (${result.alreadyThere} already there, ${result.undecodable} skipped: undecodable, untrusted or outside the tables), now at ${describe(result.progress)}`;
}

/** The line that says the site's own process must be stopped first. */
export function stopRunFirst(site: string, why: string): Error {
  return new Error(`site ${site} is in use (${why}): stop "sitesync run --site ${site}" first, then replay, then start it again (replay and run cannot apply to one site at the same time)`);
}

export async function replayArchive(options: ReplayOptions): Promise<ReplayResult> {
  const { config, site, sources, sink } = options;
  const connection = await connectBroker(options.brokerUrl ?? config.broker.url, `sitesync replay ${site}`);
  // Errors arrive through the channels' and the reader's own handling; this keeps a late one from crashing.
  connection.on('error', () => undefined);
  const states = new Map<string, SourceReplay>();
  try {
    if (!options.insideRun) await checkNotApplying(connection, site);
    await checkArchive(connection, config);
    for (const source of sources) {
      const session = await openSession(sink, source, site);
      const state: SourceReplay = { source, session, progress: null, applied: 0, alreadyThere: 0, undecodable: 0, finished: false };
      states.set(source, state);
      state.progress = await session.progress();
      options.logger.info({ source, applied: describeSitePosition(options.connectors, config, source, state.progress) }, 'replaying from source');
    }
    const end = (await archiveEnd(connection, config.broker.archiveStream, { ...END_PROBE, prefetch: config.apply.prefetch }))?.offset ?? null;
    let read = { messagesRead: 0, undecodableUnattributed: 0 };
    if (end !== null) read = await new ArchiveReader(options, connection, states, end).run();
    return {
      sources: [...states.values()].map((s) => ({ source: s.source, applied: s.applied, alreadyThere: s.alreadyThere, undecodable: s.undecodable, progress: s.progress })),
      ...read,
    };
  } finally {
    for (const state of states.values()) await state.session.close().catch(() => undefined);
    await connection.close().catch(() => undefined);
  }
}

/** The site's `sitesync run` consumes its queue: while it does, its apply would race the replay. */
async function checkNotApplying(connection: ChannelModel, site: string): Promise<void> {
  const consumers = await withChannel(connection, async (channel) => (await channel.checkQueue(siteQueue(site))).consumerCount).catch(() => 0);
  if (consumers > 0) throw stopRunFirst(site, `${siteQueue(site)} has ${consumers} consumer${consumers === 1 ? '' : 's'}`);
}

async function checkArchive(connection: ChannelModel, config: Config): Promise<void> {
  const stream = config.broker.archiveStream;
  try {
    await withChannel(connection, (channel) => channel.checkQueue(stream));
  } catch (error) {
    throw new SitesyncError(
      'SITESYNC_ERR_CONFIG',
      `the archive stream ${stream} cannot be read (${describeError(error).split('\n')[0]}): nothing was archived under that name; check broker.archiveStream (sitesync run creates the stream)`,
      { cause: error },
    );
  }
}


async function openSession(sink: Sink, source: string, site: string): Promise<SourceSession> {
  try {
    return await sink.openSession(source);
  } catch (error) {
    const held = originInUse(error);
    if (held !== null) throw stopRunFirst(site, held);
    throw error;
  }
}

/**
 * PostgreSQL refuses a replication origin that another session holds with "replication origin with ID …
 * is already active for PID …": SQLSTATE 55006 (object_in_use) in PostgreSQL 15, 55000 in some older
 * releases. The sink wraps it; the cause keeps it.
 */
function originInUse(error: unknown): string | null {
  for (let e = error as { code?: unknown; message?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 5; e = e.cause as typeof e, depth++) {
    if ((e.code === '55006' || e.code === '55000') && typeof e.message === 'string' && /replication origin .* is already active/.test(e.message)) return e.message.split('\n')[0]!;
  }
  return null;
}

/**
 * x-stream-offset for `--from`. amqplib writes a JavaScript Date in a table as an (empty) nested table,
 * which RabbitMQ 3.10 answers by closing the connection (541 INTERNAL_ERROR): a time must be sent as an
 * AMQP timestamp, through amqplib's `{'!': 'timestamp'}` form, in whole seconds (rounded down, so the
 * start is never late).
 */
export function streamStart(from: ReplayPoint): 'first' | { readonly '!': 'timestamp'; readonly value: number } {
  if (from.kind === 'position') return 'first';
  const seconds = from.micros <= 0n ? 0n : from.micros / 1_000_000n;
  return { '!': 'timestamp', value: Number(seconds) };
}

class ArchiveReader {
  /** A position of `source` in its database's display form. */
  private describe(source: string, position: Position | null): string {
    return describeSitePosition(this.options.connectors, this.options.config, source, position);
  }

  private messagesRead = 0;
  private undecodableUnattributed = 0;
  private handled = 0;
  private done = false;
  private failure: Error | null = null;
  private finish: () => void = () => undefined;

  constructor(
    private readonly options: ReplayOptions,
    private readonly connection: ChannelModel,
    private readonly states: Map<string, SourceReplay>,
    /** The stream's highest offset when the replay started. */
    private readonly end: number,
  ) {
    const { config, site, sink } = options;
    this.scope = tableScope(site, config.sites[site]?.tables ?? null, (schema) => sink.isReservedSchema(schema));
  }

  /** The tables the target accepts (apply-scope.ts), as `sitesync run` does. */
  private readonly scope: TableScope;

  async run(): Promise<{ messagesRead: number; undecodableUnattributed: number }> {
    const { config } = this.options;
    const stream = config.broker.archiveStream;
    const finished = new Promise<void>((resolve) => (this.finish = resolve));
    const stop = (error: Error | null): void => {
      if (this.done) return;
      this.done = true;
      this.failure = error;
      this.finish();
    };
    const onConnectionError = (error: Error): void => stop(error);
    const onConnectionClose = (): void => stop(new SitesyncError('SITESYNC_ERR_BROKER_UNREACHABLE', `the connection to RabbitMQ closed while reading ${stream}; run the replay again (it skips what it applied)`));
    this.connection.on('error', onConnectionError);
    this.connection.on('close', onConnectionClose);
    const channel = await this.connection.createChannel();
    channel.on('error', (error: Error) => stop(error));
    channel.on('close', () => stop(new SitesyncError('SITESYNC_ERR_BROKER_UNREACHABLE', `the channel reading ${stream} closed; run the replay again (it skips what it applied)`)));

    // Deliveries are handled strictly one after another, in stream order.
    const backlog: ConsumeMessage[] = [];
    let working = false;
    let lastActivity = Date.now();
    const pump = async (): Promise<void> => {
      if (working) return;
      working = true;
      try {
        while (backlog.length > 0 && !this.done) {
          const delivery = backlog.shift()!;
          await this.handle(delivery);
          channel.ack(delivery); // on a stream, acknowledgements are the consumer's credit
          const offset = streamOffset(delivery);
          if (offset !== null && offset >= this.end) stop(null);
          if ([...this.states.values()].every((s) => s.finished)) stop(null);
        }
      } catch (error) {
        stop(error as Error);
      } finally {
        working = false;
        lastActivity = Date.now();
      }
    };
    const idleEndMs = this.options.idleEndMs ?? IDLE_END_MS;
    const idle = setInterval(() => {
      if (!working && backlog.length === 0 && Date.now() - lastActivity >= idleEndMs) stop(null);
    }, 100);
    try {
      await channel.prefetch(config.apply.prefetch);
      await channel.consume(
        stream,
        (delivery) => {
          if (delivery === null) return stop(new SitesyncError('SITESYNC_ERR_BROKER_UNREACHABLE', `the archive stream ${stream} was deleted while the replay read it`));
          if (this.done) return;
          backlog.push(delivery);
          lastActivity = Date.now();
          void pump();
        },
        { arguments: { 'x-stream-offset': streamStart(this.options.from) } },
      );
      await finished;
      while (working) await sleep(10);
    } catch (error) {
      stop(error as Error);
    } finally {
      clearInterval(idle);
      this.done = true;
      this.connection.off('error', onConnectionError);
      this.connection.off('close', onConnectionClose);
      await channel.close().catch(() => undefined);
    }
    if (this.failure) throw this.failure;
    return { messagesRead: this.messagesRead, undecodableUnattributed: this.undecodableUnattributed };
  }

  private async handle(delivery: ConsumeMessage): Promise<void> {
    this.messagesRead++;
    const headers = delivery.properties.headers ?? {};
    const named = headers['sitesync-site'];
    const headerSite = typeof named === 'string' ? named : Buffer.isBuffer(named) ? named.toString('utf8') : null;
    // Another site's message (or the target's own): not read further.
    if (headerSite !== null && !this.states.has(headerSite)) return;
    let message: ChangeMessage;
    try {
      const version = Number(headers[SCHEMA_VERSION_HEADER] ?? NaN);
      if (!Number.isInteger(version)) throw new SitesyncError('SITESYNC_ERR_MESSAGE_INVALID', `message has no ${SCHEMA_VERSION_HEADER} header: it was not published by sitesync`);
      message = addressedTo(decodeMessage(delivery.content, version), this.options.site);
    } catch (error) {
      const state = headerSite === null ? undefined : this.states.get(headerSite);
      if (state) state.undecodable++;
      else this.undecodableUnattributed++;
      this.options.logger.warn({ source: headerSite ?? undefined, offset: streamOffset(delivery) }, `archived message skipped: ${describeError(error)}`);
      return;
    }
    const state = this.states.get(message.site);
    if (!state || state.finished) return;
    // The archive holds whatever was published with a site's routing key: only what RabbitMQ vouches was
    // published by that site's broker user is replayed (message-provenance.ts), as `sitesync run` applies.
    const untrusted = untrustedReason(this.options.config, this.options.site, message.site, provenanceOf(delivery)) ?? foreignShape(this.options.config, this.options.connectors, message);
    if (untrusted !== null) {
      state.undecodable++;
      this.options.logger.warn({ source: message.site, offset: streamOffset(delivery) }, `archived message skipped: ${untrusted}`);
      return;
    }
    await this.applyMessage(state, message);
  }

  private async applyMessage(state: SourceReplay, message: ChangeMessage): Promise<void> {
    const { from, to } = this.options;
    const inRange = (tx: Transaction): boolean => from.kind !== 'position' || comparePositions(tx.position, from.position) > 0;
    const pastEnd = (tx: Transaction): boolean =>
      to !== null && (to.kind === 'position' ? comparePositions(tx.position, to.position) > 0 : tx.commitTimeMicros > to.micros);
    const there = (tx: Transaction): boolean => state.progress !== null && comparePositions(tx.position, state.progress) <= 0;

    if (message.part) {
      const tx = message.transactions[0];
      if (!tx || !inRange(tx)) return;
      if (there(tx)) {
        if (message.part.last) this.count(state, 0, 1, tx);
        return;
      }
      if (pastEnd(tx)) {
        state.finished = true;
        return;
      }
      if (message.part.index === 0) this.checkGap(state, message.previous, tx);
      if (await this.setAside(state, tx)) return;
      try {
        await state.session.applyPart(tx, message.part);
      } catch (error) {
        if ((error as SitesyncError).code === 'SITESYNC_ERR_GAP') throw this.gap(state, `part ${message.part.index} of transaction ${tx.id} is the first of it in the range read`);
        throw this.failed(state, tx, error);
      }
      if (message.part.last) {
        state.progress = tx.position;
        this.count(state, 1, 0, tx);
      }
      return;
    }

    // Whole transactions: the message's transactions in range, cut at --to.
    let previous = message.previous;
    const fresh: Transaction[] = [];
    let already = 0;
    let lastThere: Transaction | undefined;
    for (const tx of message.transactions) {
      if (!inRange(tx)) {
        previous = tx.position;
        continue;
      }
      if (there(tx)) {
        already++;
        lastThere = tx;
        previous = tx.position;
        continue;
      }
      if (pastEnd(tx)) {
        state.finished = true;
        break;
      }
      if (fresh.length === 0) this.checkGap(state, previous, tx);
      fresh.push(tx);
    }
    if (already > 0) this.count(state, 0, already, lastThere!);
    // Applied in runs; a transaction outside the target's scope between them is set aside (setAside).
    let run: Transaction[] = [];
    const flush = async (): Promise<void> => {
      const last = run[run.length - 1];
      if (!last) return;
      try {
        await state.session.apply(run);
      } catch (error) {
        throw this.failed(state, run[0]!, error);
      }
      state.progress = last.position;
      this.count(state, run.length, 0, last);
      run = [];
    };
    for (const tx of fresh) {
      if (refusedChange(tx, this.scope) === null) {
        run.push(tx);
        continue;
      }
      await flush();
      await this.setAside(state, tx);
    }
    await flush();
  }

  /**
   * A transaction that touches a table outside the target's scope (apply-scope.ts) is recorded as skipped,
   * as `sitesync run` sets it aside, and said in a warning; true when `tx` was one.
   */
  private async setAside(state: SourceReplay, tx: Transaction): Promise<boolean> {
    const refused = refusedChange(tx, this.scope);
    if (refused === null) return false;
    await state.session.skip(tx.position, tx.commitTimeMicros);
    state.progress = tx.position;
    state.undecodable++;
    this.options.logger.warn({ source: state.source, tx: tx.id }, `transaction set aside, not replayed: ${refused}`);
    return true;
  }

  /** The transactions before `tx` must be at the target already: otherwise the range read starts too late. */
  private checkGap(state: SourceReplay, previous: Position | null, tx: Transaction): void {
    if (previous === null || state.progress === null) return; // a source's first message starts its history
    if (comparePositions(previous, state.progress) <= 0) return;
    throw this.gap(state, `transaction ${this.describe(state.source, tx.position)} follows ${this.describe(state.source, previous)}`);
  }

  private gap(state: SourceReplay, what: string): SitesyncError {
    const { site, config } = this.options;
    return new SitesyncError(
      'SITESYNC_ERR_GAP',
      `from site ${state.source}, ${what}, but ${site} has applied only up to ${this.describe(state.source, state.progress)}: replay from an earlier --from (the archive keeps ${config.broker.archiveRetentionDays} days); nothing after ${this.describe(state.source, state.progress)} was applied`,
    );
  }

  private failed(state: SourceReplay, tx: Transaction, error: unknown): Error {
    return new Error(
      `replay stopped at transaction ${this.describe(state.source, tx.position)} from ${state.source} (committed ${microsToIso(tx.commitTimeMicros)}), ${this.options.site} is at ${this.describe(state.source, state.progress)}: ${describeError(error).split('\n')[0]}`,
      { cause: error },
    );
  }

  private count(state: SourceReplay, applied: number, alreadyThere: number, last: Transaction): void {
    state.applied += applied;
    state.alreadyThere += alreadyThere;
    const before = this.handled;
    this.handled += applied + alreadyThere;
    if (Math.floor(before / PROGRESS_EVERY) !== Math.floor(this.handled / PROGRESS_EVERY)) {
      this.options.report(
        `replaying: ${this.handled} transactions read; from ${state.source} ${state.applied} applied, ${state.alreadyThere} already there, at ${this.describe(state.source, last.position)} (committed ${microsToIso(last.commitTimeMicros)})`,
      );
    }
  }
}
