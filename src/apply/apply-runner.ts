/**
 * Apply: the site's queue → the sink, exactly once, in each source's commit order.
 *
 * Messages are taken one at a time from the site's quorum queue (single active consumer, so one process
 * sees them in queue order) and acknowledged only after the sink committed them. Per source site:
 * - a transaction at or below the source's applied position is a duplicate: acknowledged, not applied;
 * - a message whose `previous` is beyond the applied position means a message is missing: that source
 *   halts with SITESYNC_ERR_GAP rather than skip (and, the queue being shared, the site waits);
 * - parts of a large transaction are kept durably by the sink, each acknowledged at once, and applied
 *   together in one target commit when the last arrives: memory and prefetch stay bounded.
 *
 * Failures, by what they call for: a lost connection or a deadlock is retried after a pause; a table
 * missing or different at the target, or data it refuses, halts that source (in order) and is retried
 * every apply.retrySeconds until someone fixes it (with apply.onDataError: park, refused data is parked
 * instead); a message that cannot be decoded or comes from an unknown site is published to the site's
 * parking queue with its reason, counted, and skipped, so the rest goes on.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Channel, ConfirmChannel, ConsumeMessage } from 'amqplib';
import type { Config } from '../config/config-schema.ts';
import { PARKED_ID_HEADER, parkingQueue, RETRY_HEADER, siteQueue } from '../config/names.ts';
import { connectBroker } from '../bus/broker-connection.ts';
import { SCHEMA_VERSION_HEADER, messageHeaders } from '../bus/message-headers.ts';
import { declareTopology } from '../bus/topology.ts';
import { CURRENT_SCHEMA_VERSION, decodeMessage, encodeMessage } from '../events/avro-codec.ts';
import { comparePositions, describePosition } from '../events/position.ts';
import { microsToIso } from '../events/time.ts';
import type { ChangeMessage, Position, Transaction } from '../events/transaction.ts';
import { describeError, SitesyncError, type ErrorCode } from '../errors.ts';
import { SessionLoop } from '../session-loop.ts';
import type { Logger } from '../observability/logger.ts';
import type { PipelineEvents } from '../observability/pipeline-events.ts';
import type { ApplyErrorKind, Sink, SourceSession } from './sink.ts';

export interface ApplyRunnerOptions {
  readonly config: Config;
  readonly site: string;
  readonly sink: Sink;
  readonly events: PipelineEvents;
  readonly logger: Logger;
}

interface SourceState {
  session: SourceSession;
  progress: Position | null;
  halted: string | null;
}

export class ApplyRunner {
  private readonly loop: SessionLoop;

  constructor(private readonly options: ApplyRunnerOptions) {
    this.loop = new SessionLoop(options.logger);
  }

  /** Runs sessions until `stop`; throws only on a fatal error. */
  run(): Promise<void> {
    return this.loop.run((healthy, onStop) => this.session(healthy, onStop));
  }

  /** Finish the message being applied, then return from run(). */
  stop(): void {
    this.loop.stop();
  }

  private async session(onHealthy: () => void, onStop: (end: () => void) => void): Promise<void> {
    const { config, site, logger } = this.options;
    const connection = await connectBroker(config.broker.url, `sitesync apply ${site}`);
    const sources = new Map<string, SourceState>();
    let broken: Error | null = null;
    let endWaiting: (() => void) | null = null;
    const ended = new Promise<void>((resolve) => (endWaiting = resolve));
    const end = (error: Error | null): void => {
      broken ??= error;
      endWaiting?.();
    };
    onStop(() => end(null));
    connection.on('error', (error: Error) => end(error));
    connection.on('close', () => end(new SitesyncError('SITESYNC_ERR_BROKER_UNREACHABLE', 'the connection to RabbitMQ closed; sitesync reconnects')));
    try {
      const channel = await connection.createChannel();
      channel.on('error', (error: Error) => end(error));
      channel.on('close', () => end(new SitesyncError('SITESYNC_ERR_BROKER_UNREACHABLE', 'the consuming channel closed; sitesync reconnects')));
      await declareTopology(channel, config);
      const parking = await connection.createConfirmChannel();
      const ctx: Context = { channel, parking, sources, deferred: [], parkedReturned: false, waiting: () => backlog.length, alive: () => broken === null && !this.loop.stopped };
      parking.on('return', () => (ctx.parkedReturned = true));

      // Deliveries are handled strictly one after another, in queue order.
      const backlog: ConsumeMessage[] = [];
      let working = false;
      const pump = async (): Promise<void> => {
        if (working) return;
        working = true;
        try {
          while (backlog.length > 0 && ctx.alive()) await this.handle(ctx, backlog.shift()!);
        } catch (error) {
          end(error as Error);
        } finally {
          working = false;
        }
      };
      await channel.prefetch(config.apply.prefetch);
      await channel.consume(siteQueue(site), (delivery) => {
        if (delivery === null) return end(new SitesyncError('SITESYNC_ERR_BROKER_UNREACHABLE', `queue ${siteQueue(site)} was deleted; sitesync declares it again`));
        backlog.push(delivery);
        void pump();
      });
      onHealthy();
      this.options.events.emit('apply:consuming', { site });
      logger.info({ queue: siteQueue(site) }, 'applying');
      await ended;
      while (working) await sleep(10);
      if (broken) throw broken;
    } finally {
      for (const state of sources.values()) await state.session.close();
      await connection.close().catch(() => undefined);
    }
  }

  private async handle(ctx: Context, delivery: ConsumeMessage): Promise<void> {
    const { config, site } = this.options;
    let message: ChangeMessage;
    try {
      const version = Number(delivery.properties.headers?.[SCHEMA_VERSION_HEADER] ?? NaN);
      if (!Number.isInteger(version)) throw new SitesyncError('SITESYNC_ERR_MESSAGE_INVALID', `message has no ${SCHEMA_VERSION_HEADER} header: it was not published by sitesync`);
      message = decodeMessage(delivery.content, version);
    } catch (error) {
      await this.park(ctx, delivery.content, delivery.properties.headers ?? {}, 'unknown', error);
      ctx.channel.ack(delivery);
      return;
    }
    if (!(message.site in config.sites) || message.site === site) {
      const why = message.site === site ? `it comes from site ${site} itself` : `site ${JSON.stringify(message.site)} is not in the configuration`;
      await this.park(ctx, delivery.content, delivery.properties.headers ?? {}, message.site, new SitesyncError('SITESYNC_ERR_MESSAGE_INVALID', `message cannot be applied: ${why}; add the site to the configuration, then retry it from the parking queue`));
      ctx.channel.ack(delivery);
      return;
    }
    const state = await this.sourceState(ctx, message.site);
    for (let attempt = 0; ctx.alive(); attempt++) {
      try {
        await this.applyMessage(ctx, state, message, delivery);
        if (state.halted) {
          this.options.logger.info({ source: message.site }, 'source resumed');
          this.options.events.emit('apply:resumed', { site, source: message.site });
          state.halted = null;
        }
        return;
      } catch (error) {
        const kind = this.options.sink.classify(error);
        // Transactions of a message commit one by one: some may be in before the failure.
        if (kind !== 'transient') state.progress = await state.session.progress().catch(() => state.progress);
        if (kind === 'data' && !message.part && this.options.config.apply.onDataError === 'park') {
          await this.applyParkingFailures(ctx, state, message, delivery);
          return;
        }
        if (kind === 'transient' && ctx.deferred.length > 0) {
          // Commits that group commit has not seen reach the disk may be gone with the connection: end
          // the session, so that every unacknowledged message comes again, in order, and the applied
          // position (which rolled back with them) filters what did survive.
          throw new SitesyncError('SITESYNC_ERR_POSTGRES_UNREACHABLE', `the connection to site ${this.options.site}'s PostgreSQL failed with commits not yet on disk (${describeError(error)}); their messages are delivered again`, { cause: error });
        }
        await this.waitAndRecover(state, message.site, kind, error, attempt);
      }
    }
  }

  /** Applies a message. Duplicates are acknowledged, gaps throw, parts stay open until the last. */
  private async applyMessage(ctx: Context, state: SourceState, message: ChangeMessage, delivery: ConsumeMessage): Promise<void> {
    const { site, events } = this.options;
    const source = message.site;
    const applied = (p: Position): boolean => state.progress !== null && comparePositions(p, state.progress) <= 0;
    if (delivery.properties.headers?.[RETRY_HEADER] === true && !message.part) {
      // A parked transaction an operator sent back (`sitesync parked --retry`): its position is behind
      // what was applied since, so it is applied as it is; the applied position never moves back.
      try {
        await state.session.apply(message.transactions);
      } catch (error) {
        if (this.options.sink.classify(error) !== 'data') throw error;
        const { [RETRY_HEADER]: _retry, ...headers } = delivery.properties.headers ?? {};
        await this.park(ctx, delivery.content, headers, source, error, message.transactions[0]);
        ctx.channel.ack(delivery);
        return;
      }
      this.ackDeferred(ctx);
      ctx.channel.ack(delivery);
      const last = message.transactions[message.transactions.length - 1];
      if (last && !applied(last.position)) state.progress = last.position;
      if (last) events.emit('apply:applied', { site, source, transactions: message.transactions.length, rows: message.transactions.reduce((n, tx) => n + tx.changes.length, 0), position: last.position, commitTimeMicros: last.commitTimeMicros });
      return;
    }
    if (message.part) {
      const tx = message.transactions[0]!;
      const part = message.part;
      if (applied(tx.position)) {
        events.emit('apply:duplicate', { site, source, position: tx.position });
        ctx.channel.ack(delivery);
        return;
      }
      if (part.index === 0) this.checkGap(state, message);
      await state.session.applyPart(tx, part);
      this.ackDeferred(ctx);
      ctx.channel.ack(delivery);
      if (part.last) {
        state.progress = tx.position;
        events.emit('apply:applied', { site, source, transactions: 1, rows: tx.changes.length, position: tx.position, commitTimeMicros: tx.commitTimeMicros });
      }
      return;
    }
    const fresh = message.transactions.filter((tx) => !applied(tx.position));
    for (const tx of message.transactions) if (applied(tx.position)) events.emit('apply:duplicate', { site, source, position: tx.position });
    if (fresh.length === 0) {
      ctx.channel.ack(delivery);
      return;
    }
    if (fresh[0] === message.transactions[0]) this.checkGap(state, message);
    // Group commit: while more messages wait, commit without waiting for the disk and hold the
    // acknowledgement; the next durable commit (when the queue runs dry, or enough are held) covers them.
    const durable = ctx.waiting() === 0 || ctx.deferred.length >= MAX_DEFERRED_ACKS;
    await state.session.apply(fresh, { durable });
    const last = fresh[fresh.length - 1]!;
    state.progress = last.position;
    if (durable) {
      this.ackDeferred(ctx);
      ctx.channel.ack(delivery);
    } else ctx.deferred.push(delivery);
    events.emit('apply:applied', { site, source, transactions: fresh.length, rows: fresh.reduce((n, tx) => n + tx.changes.length, 0), position: last.position, commitTimeMicros: last.commitTimeMicros });
  }

  /** Acknowledges what group commit held: called right after a durable commit, which covers them. */
  private ackDeferred(ctx: Context): void {
    for (const d of ctx.deferred) ctx.channel.ack(d);
    ctx.deferred.length = 0;
  }

  private checkGap(state: SourceState, message: ChangeMessage): void {
    if (message.previous === null || state.progress === null) return; // a site's first message starts its history
    if (comparePositions(message.previous, state.progress) <= 0) return;
    throw new SitesyncError(
      'SITESYNC_ERR_GAP',
      `a message from site ${message.site} follows position ${describePosition(message.previous)}, but ${this.options.site} has applied only up to ${describePosition(state.progress)}: a message is missing (was ${siteQueue(this.options.site)} purged?); replay the missing range from the archive to resume`,
    );
  }

  /** A transaction the target refused: apply the message's transactions one by one, parking each refused one. */
  private async applyParkingFailures(ctx: Context, state: SourceState, message: ChangeMessage, delivery: ConsumeMessage): Promise<void> {
    let previous = message.previous;
    for (const tx of message.transactions) {
      const single: ChangeMessage = { ...message, previous, transactions: [tx], part: null };
      previous = tx.position;
      if (state.progress !== null && comparePositions(tx.position, state.progress) <= 0) continue;
      try {
        await state.session.apply([tx]);
      } catch (error) {
        if (this.options.sink.classify(error) !== 'data') throw error;
        await this.park(ctx, encodeMessage(single), messageHeaders(single, CURRENT_SCHEMA_VERSION), message.site, error, tx);
        await state.session.skip(tx.position, tx.commitTimeMicros);
      }
      state.progress = tx.position;
    }
    this.ackDeferred(ctx);
    ctx.channel.ack(delivery);
  }

  private async waitAndRecover(state: SourceState, source: string, kind: ApplyErrorKind, error: unknown, attempt: number): Promise<void> {
    const { site, logger, events, config } = this.options;
    const reason = describeError(error);
    if (kind !== 'transient') {
      // The target refuses this transaction (a table, a column or a constraint that differs from the
      // source's): nothing after it is applied until it goes in, so order is kept; retried until fixed.
      if (state.halted !== reason) {
        logger.error({ source, code: (error as SitesyncError).code ?? (error as { code?: string }).code }, `applying from ${source} halted: ${reason}`);
        events.emit('apply:halted', { site, source, reason });
        state.halted = reason;
      }
    } else {
      logger.warn({ source, attempt }, `applying from ${source} failed, retrying: ${reason}`);
    }
    await sleep(kind !== 'transient' ? config.apply.retrySeconds * 1000 : Math.min(10_000, 200 * 2 ** Math.min(attempt, 5)));
    if (kind === 'transient') {
      await state.session.close();
      state.session = await this.options.sink.openSession(source);
      state.progress = await state.session.progress();
    }
  }

  private async sourceState(ctx: Context, source: string): Promise<SourceState> {
    let state = ctx.sources.get(source);
    if (!state) {
      const session = await this.options.sink.openSession(source);
      state = { session, progress: await session.progress(), halted: null };
      ctx.sources.set(source, state);
      this.options.logger.info({ source, applied: describePosition(state.progress) }, 'applying from source');
    }
    return state;
  }

  private async park(ctx: Context, body: Buffer, headers: Record<string, unknown>, source: string, error: unknown, tx?: Transaction): Promise<void> {
    const { site, logger, events } = this.options;
    const code: ErrorCode | string = (error as SitesyncError).code ?? 'SITESYNC_ERR_APPLY_DATA';
    const reason = describeError(error);
    ctx.parkedReturned = false;
    ctx.parking.publish('', parkingQueue(site), body, {
      persistent: true,
      mandatory: true,
      headers: {
        ...headers,
        'sitesync-parked-reason': reason.slice(0, 2000),
        'sitesync-parked-code': code,
        'sitesync-parked-source': source,
        'sitesync-parked-at': microsToIso(BigInt(Date.now()) * 1000n),
        [PARKED_ID_HEADER]: randomUUID(),
        ...(tx ? { 'sitesync-parked-transaction': tx.id } : {}),
      },
    });
    await ctx.parking.waitForConfirms();
    if (ctx.parkedReturned) {
      // The parking queue is gone: the message stays unacknowledged, and the next session declares it again.
      throw new SitesyncError('SITESYNC_ERR_BROKER_REJECTED', `queue ${parkingQueue(site)} does not exist, so a message could not be parked; sitesync reconnects and declares it again`);
    }
    logger.error({ source, code, tx: tx?.id, queue: parkingQueue(site) }, `message parked: ${reason}`);
    events.emit('apply:parked', { site, source, reason, code: String(code) });
  }
}

/** Most acknowledgements group commit holds before it waits for the disk anyway. */
const MAX_DEFERRED_ACKS = 256;

interface Context {
  readonly channel: Channel;
  /** Deliveries applied without waiting for the disk, acknowledged after the next durable commit. */
  readonly deferred: ConsumeMessage[];
  /** Set when RabbitMQ returns a message published to the parking queue (the queue is missing). */
  parkedReturned: boolean;
  /** Deliveries received and not yet handled. */
  waiting(): number;
  readonly parking: ConfirmChannel;
  readonly sources: Map<string, SourceState>;
  alive(): boolean;
}
