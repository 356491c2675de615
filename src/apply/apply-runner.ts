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
 * Trust: nothing is applied that RabbitMQ does not vouch for. Before anything else a message must decode
 * to a well-formed shape (avro-codec.ts), claim a configured site other than this one, and have arrived
 * through the change exchange with that site's routing key and that site's broker user as its validated
 * user-id (message-provenance.ts); a transaction must touch only tables this site replicates
 * (apply-scope.ts). A message that fails is parked, whole, with its reason; a transaction outside the
 * scope is parked alone and recorded as skipped, so the source goes on. An operator's retry (RETRY_HEADER)
 * is honoured only through the default exchange and against the site's own record of what it parked.
 *
 * Failures, by what they call for: a lost connection or a deadlock is retried after a pause; a table
 * missing or different at the target, or data it refuses, halts that source (in order) and is retried
 * every apply.retrySeconds until someone fixes it (with apply.onDataError: park, refused data is parked
 * instead).
 */
import { createHash, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Channel, ConfirmChannel, ConsumeMessage } from 'amqplib';
import { brokerUrlFor, brokerUserOf, siteConfig, type Config } from '../config/config-schema.ts';
import { ORIGINAL_ROUTE_HEADER, ORIGINAL_USER_HEADER, PARKED_ID_HEADER, parkingExchange, parkingQueue, RETRY_HEADER, siteQueue, TABLE_HEADER_PREFIX } from '../config/names.ts';
import { connectBroker } from '../bus/broker-connection.ts';
import { SCHEMA_VERSION_HEADER, messageHeaders } from '../bus/message-headers.ts';
import { ensureTopology, siteNeeds } from '../bus/topology.ts';
import { CURRENT_SCHEMA_VERSION, decodeMessage, encodeMessage } from '../events/avro-codec.ts';
import { comparePositions } from '../events/position.ts';
import { describeSitePosition, type ConnectorRegistry } from '../connector.ts';
import { microsToIso } from '../events/time.ts';
import type { ChangeMessage, Position, RelationInfo, Transaction } from '../events/transaction.ts';
import { describeError, SitesyncError, type ErrorCode } from '../errors.ts';
import { SessionLoop } from '../session-loop.ts';
import type { Logger } from '../observability/logger.ts';
import type { PipelineEvents } from '../observability/pipeline-events.ts';
import { addressedTo, refusedChange, tableScope, withoutStaleReads, type TableScope } from './apply-scope.ts';
import type { ApplySessionHooks, JoinCoordinator } from './join-coordinator.ts';
import { describeRoute, foreignShape, parseRoute, provenanceOf, untrustedReason, type Provenance } from './message-provenance.ts';
import type { ApplyErrorKind, NewParkedRecord, ParkedRecord, Sink, SourceSession } from './sink.ts';

export interface ApplyRunnerOptions {
  readonly config: Config;
  readonly site: string;
  readonly sink: Sink;
  /** Every database kind's positions: a message must carry its site's kind, with positions of that kind. */
  readonly connectors: ConnectorRegistry;
  readonly events: PipelineEvents;
  readonly logger: Logger;
  /** Joining a running mesh, as donor or joiner (join-coordinator.ts); absent when the site's database cannot. */
  readonly join?: JoinCoordinator;
}

interface SourceState {
  session: SourceSession;
  progress: Position | null;
  halted: string | null;
}

/**
 * Largest message body decoded. RabbitMQ 3.x refuses larger messages by default (max_message_size 128 MiB;
 * 4.x: 16 MiB), so anything larger was not published by a sitesync capture on a default broker.
 */
export const MAX_BODY_BYTES = 128 * 1024 * 1024;
/** Parked messages past which each park logs a warning (the queue also has a hard byte limit, topology.ts). */
const PARKED_WARN_MESSAGES = 1000;

export class ApplyRunner {
  private readonly loop: SessionLoop;
  private readonly scope: TableScope;
  /** Commit time of the last transaction applied here from each source, since this process started. */
  private readonly appliedCommit = new Map<string, bigint>();

  constructor(private readonly options: ApplyRunnerOptions) {
    this.loop = new SessionLoop(options.logger, (reason) => options.events.emit('apply:interrupted', { site: options.site, reason }));
    options.events.on('apply:applied', this.noteApplied);
    const tables = siteConfig(options.config, options.site)?.tables ?? null;
    this.scope = tableScope(options.site, tables, (schema) => options.sink.isReservedSchema(schema));
  }

  /** What is applied from each source, for snapshot reads the target holds newer already (withoutStaleReads). */
  private readonly noteApplied = (e: { site: string; source: string; commitTimeMicros: bigint }): void => {
    if (e.site !== this.options.site) return;
    const known = this.appliedCommit.get(e.source);
    if (known === undefined || e.commitTimeMicros > known) this.appliedCommit.set(e.source, e.commitTimeMicros);
  };

  /**
   * Runs sessions until `stop`; throws only on a fatal error. The events object outlives this runner (a
   * SIGHUP reload builds a new one on it), so the runner stops listening when it ends.
   */
  async run(): Promise<void> {
    try {
      await this.loop.run((healthy, onStop) => this.session(healthy, onStop));
    } finally {
      this.options.events.off('apply:applied', this.noteApplied);
    }
  }

  /** Finish the message being applied, then return from run(). */
  stop(): void {
    this.loop.stop();
  }

  private async session(onHealthy: () => void, onStop: (end: () => void) => void): Promise<void> {
    const { config, site, logger } = this.options;
    const connection = await connectBroker(brokerUrlFor(config, site), `sitesync apply ${site}`);
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
      await ensureTopology(connection, config, siteNeeds(config, site), logger);
      const channel = await connection.createChannel();
      channel.on('error', (error: Error) => end(error));
      channel.on('close', () => end(new SitesyncError('SITESYNC_ERR_BROKER_UNREACHABLE', 'the consuming channel closed; sitesync reconnects')));
      const parking = await connection.createConfirmChannel();
      const ctx: Context = { channel, parking, sources, deferred: [], parkedReturned: false, parkedWarned: false, waiting: () => backlog.length, alive: () => broken === null && !this.loop.stopped };
      parking.on('return', () => (ctx.parkedReturned = true));

      // Deliveries are handled strictly one after another, in queue order.
      const backlog: ConsumeMessage[] = [];
      let working = false;
      const pump = async (tick = false): Promise<void> => {
        if (working) return;
        working = true;
        try {
          // A join's hold or catch-up is due even when nothing arrives.
          if (tick && this.options.join) await this.options.join.beforeDelivery(this.joinHooks(ctx));
          while (backlog.length > 0 && ctx.alive()) await this.handle(ctx, backlog.shift()!);
        } catch (error) {
          end(error as Error);
        } finally {
          working = false;
        }
      };
      const ticker = this.options.join ? setInterval(() => void pump(true), JOIN_TICK_MS) : null;
      void ended.then(() => ticker && clearInterval(ticker));
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

  /** One delivery, from the queue to the sink or the parking queue; returns once it is acknowledged (or held by group commit). */
  private async handle(ctx: Context, delivery: ConsumeMessage): Promise<void> {
    const headers = delivery.properties.headers ?? {};
    const retry: unknown = headers[RETRY_HEADER];
    if (retry !== undefined) return this.handleRetry(ctx, delivery, retry);
    await this.options.join?.beforeDelivery(this.joinHooks(ctx));
    if (!ctx.alive()) return;
    const provenance = provenanceOf(delivery);
    await this.handleAs(ctx, delivery, provenance);
  }

  /**
   * Decodes, checks trust and applies a delivery as if it had arrived the way `provenance` says. With
   * `retryOf`, it is an operator's retry of a message this site refused: applied durably, and parked again
   * under the same id if every transaction in it is already behind what was applied from its source.
   */
  private async handleAs(ctx: Context, delivery: ConsumeMessage, provenance: Provenance, retryOf?: ParkedRecord): Promise<Outcome> {
    const refuse = async (source: string | null, error: SitesyncError): Promise<Outcome> => {
      await this.parkRefused(ctx, delivery, provenance, source, error);
      return 'parked';
    };
    if (delivery.content.length > MAX_BODY_BYTES) {
      return refuse(null, new SitesyncError('SITESYNC_ERR_MESSAGE_INVALID', `message body of ${delivery.content.length} bytes is larger than any sitesync publishes (${MAX_BODY_BYTES}); not decoded`));
    }
    let message: ChangeMessage;
    try {
      const version = Number(delivery.properties.headers?.[SCHEMA_VERSION_HEADER] ?? NaN);
      if (!Number.isInteger(version)) throw new SitesyncError('SITESYNC_ERR_MESSAGE_INVALID', `message has no ${SCHEMA_VERSION_HEADER} header: it was not published by sitesync`);
      message = withoutStaleReads(addressedTo(decodeMessage(delivery.content, version), this.options.site), this.options.site, (source) => this.appliedCommit.get(source));
    } catch (error) {
      return refuse(null, error as SitesyncError);
    }
    const untrusted = untrustedReason(this.options.config, this.options.site, message.site, provenance);
    if (untrusted !== null) {
      const code = message.site === this.options.site || !Object.hasOwn(this.options.config.sites, message.site) ? 'SITESYNC_ERR_MESSAGE_INVALID' : 'SITESYNC_ERR_UNTRUSTED';
      return refuse(message.site, new SitesyncError(code, `message cannot be applied: ${untrusted}`));
    }
    const foreign = foreignShape(this.options.config, this.options.connectors, message);
    if (foreign !== null) return refuse(message.site, new SitesyncError('SITESYNC_ERR_MESSAGE_INVALID', `message cannot be applied: ${foreign}`));
    const join = this.options.join;
    if (join && retryOf === undefined) {
      const admitted = await join.admit(message, async (source) => (await this.sourceState(ctx, source)).progress);
      if (admitted === null) {
        ctx.channel.ack(delivery); // held or before the join: the archive keeps it (join-coordinator.ts)
        return 'applied';
      }
      message = admitted;
    }
    const state = await this.sourceState(ctx, message.site);
    return this.withRetries(ctx, state, message, () => this.applyMessage(ctx, state, message, delivery, retryOf));
  }

  /** What the join coordinator may do with this session. */
  private joinHooks(ctx: Context): ApplySessionHooks {
    return {
      progressOf: async (source) => (await this.sourceState(ctx, source)).progress,
      closeSession: async (source) => {
        const state = ctx.sources.get(source);
        if (!state) return;
        ctx.sources.delete(source);
        await state.session.close();
      },
      ackDeferred: () => this.ackDeferred(ctx),
      alive: () => ctx.alive(),
    };
  }

  /** A position of `source` in its database's display form, for log lines. */
  private describe(source: string, position: Position | null): string {
    return describeSitePosition(this.options.connectors, this.options.config, source, position);
  }

  /**
   * Runs `work` until it succeeds: transient failures wait and retry, a halted source retries every
   * apply.retrySeconds, refused data with `onData` goes there. 'unsettled' when the session ended first
   * (the delivery then comes again).
   */
  private async withRetries(ctx: Context, state: SourceState, message: ChangeMessage, work: () => Promise<Outcome>, onData?: (error: unknown) => Promise<Outcome>): Promise<Outcome> {
    const source = message.site;
    for (let attempt = 0; ctx.alive(); attempt++) {
      try {
        const outcome = await work();
        if (state.halted) {
          this.options.logger.info({ source }, 'source resumed');
          this.options.events.emit('apply:resumed', { site: this.options.site, source });
          state.halted = null;
        }
        return outcome;
      } catch (error) {
        const kind = this.options.sink.classify(error);
        // Transactions of a message commit one by one: some may be in before the failure.
        if (kind !== 'transient') state.progress = await state.session.progress().catch(() => state.progress);
        if (kind === 'data' && onData) return onData(error);
        if (kind === 'transient' && ctx.deferred.length > 0) {
          // Commits that group commit has not seen reach the disk may be gone with the connection: end
          // the session, so that every unacknowledged message comes again, in order, and the applied
          // position (which rolled back with them) filters what did survive.
          throw new SitesyncError('SITESYNC_ERR_DATABASE_UNREACHABLE', `the connection to site ${this.options.site}'s PostgreSQL failed with commits not yet on disk (${describeError(error)}); their messages are delivered again`, { cause: error });
        }
        await this.waitAndRecover(state, source, kind, error, attempt);
      }
    }
    return 'unsettled';
  }

  /** Applies a message. Duplicates are acknowledged, gaps throw, parts stay open until the last. */
  private async applyMessage(ctx: Context, state: SourceState, message: ChangeMessage, delivery: ConsumeMessage, retryOf?: ParkedRecord): Promise<Outcome> {
    const { site, events } = this.options;
    const source = message.site;
    const applied = (p: Position): boolean => state.progress !== null && comparePositions(p, state.progress) <= 0;
    if (retryOf && message.transactions.every((tx) => applied(tx.position))) {
      // Either applied since (sent again by its source), or this source's history here started after it
      // (its site was configured, or its broker user fixed, only later): a person must tell which.
      const why = new SitesyncError(
        'SITESYNC_ERR_MESSAGE_INVALID',
        `retried, but site ${site} has applied ${source} up to ${this.describe(source, state.progress)}, past every transaction in it: either it arrived again and was applied, or ${source}'s history here started after it; check, then discard it or replay it`,
      );
      await this.publishParked(ctx, delivery.content, withoutRetry(delivery), delivery, { ...retryOf, reason: describeError(why) }, why, false);
      ctx.channel.ack(delivery);
      return 'parked';
    }
    if (message.part) {
      const tx = message.transactions[0]!;
      const part = message.part;
      if (applied(tx.position)) {
        events.emit('apply:duplicate', { site, source, position: tx.position });
        ctx.channel.ack(delivery);
        return 'applied';
      }
      if (part.index === 0) this.checkGap(state, message);
      const refused = refusedChange(tx, this.scope);
      if (refused !== null) {
        // Set aside whole, from this part on: the part is parked with the reason, the transaction recorded
        // as skipped, so its other parts arrive as duplicates and the source goes on. (Parts cannot be
        // retried one by one: to apply it, add the table to the scope and replay the range.)
        const why = new SitesyncError('SITESYNC_ERR_NOT_REPLICATED', `transaction ${tx.id} (in parts, set aside whole at part ${part.index}) cannot be applied at ${site}: ${refused}`);
        await this.parkRefused(ctx, delivery, provenanceOf(delivery), source, why);
        await state.session.skip(tx.position, tx.commitTimeMicros);
        state.progress = tx.position;
        this.ackDeferred(ctx);
        ctx.channel.ack(delivery);
        return 'parked';
      }
      await state.session.applyPart(tx, part);
      this.ackDeferred(ctx);
      ctx.channel.ack(delivery);
      if (part.last) {
        state.progress = tx.position;
        events.emit('apply:applied', { site, source, transactions: 1, rows: tx.changes.length, position: tx.position, commitTimeMicros: tx.commitTimeMicros });
      }
      return 'applied';
    }
    const fresh = message.transactions.filter((tx) => !applied(tx.position));
    for (const tx of message.transactions) if (applied(tx.position)) events.emit('apply:duplicate', { site, source, position: tx.position });
    if (fresh.length === 0) {
      ctx.channel.ack(delivery);
      return 'applied';
    }
    if (fresh[0] === message.transactions[0]) this.checkGap(state, message);
    const judged = new Map<RelationInfo, string | null>();
    if (fresh.some((tx) => refusedChange(tx, this.scope, judged) !== null)) {
      // Some transaction touches a table this site does not replicate: one at a time, that one set aside.
      return this.applyOneByOne(ctx, state, message, delivery, this.options.config.apply.onDataError === 'park');
    }
    // Group commit: while more messages wait, commit without waiting for the disk and hold the
    // acknowledgement; the next durable commit (when the queue runs dry, or enough are held) covers them.
    // A retry is durable: its parked record is closed after it.
    const durable = retryOf !== undefined || ctx.waiting() === 0 || ctx.deferred.length >= MAX_DEFERRED_ACKS;
    try {
      await state.session.apply(fresh, { durable });
    } catch (error) {
      if (this.options.sink.classify(error) === 'data' && this.options.config.apply.onDataError === 'park') {
        state.progress = await state.session.progress();
        return this.applyOneByOne(ctx, state, message, delivery, true);
      }
      throw error;
    }
    const last = fresh[fresh.length - 1]!;
    state.progress = last.position;
    if (durable) {
      this.ackDeferred(ctx);
      ctx.channel.ack(delivery);
    } else ctx.deferred.push(delivery);
    events.emit('apply:applied', { site, source, transactions: fresh.length, rows: fresh.reduce((n, tx) => n + tx.changes.length, 0), position: last.position, commitTimeMicros: last.commitTimeMicros });
    return 'applied';
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
      `a message from site ${message.site} follows position ${this.describe(message.site, message.previous)}, but ${this.options.site} has applied only up to ${this.describe(message.site, state.progress)}: a message is missing (was ${siteQueue(this.options.site)} purged?); replay the missing range from the archive to resume`,
    );
  }

  /**
   * Applies a message's transactions one at a time. One outside the scope, or (with `parkData`) one the
   * target refuses, is parked alone and recorded as skipped, in one commit; the others are applied.
   */
  private async applyOneByOne(ctx: Context, state: SourceState, message: ChangeMessage, delivery: ConsumeMessage, parkData: boolean): Promise<Outcome> {
    const { site, events } = this.options;
    let previous = message.previous;
    for (const tx of message.transactions) {
      const single: ChangeMessage = { ...message, previous, transactions: [tx], part: null };
      previous = tx.position;
      if (state.progress !== null && comparePositions(tx.position, state.progress) <= 0) continue;
      const refused = refusedChange(tx, this.scope);
      try {
        if (refused !== null) throw new SitesyncError('SITESYNC_ERR_NOT_REPLICATED', `transaction ${tx.id} cannot be applied at ${site}: ${refused}`);
        await state.session.apply([tx]);
        events.emit('apply:applied', { site, source: message.site, transactions: 1, rows: tx.changes.length, position: tx.position, commitTimeMicros: tx.commitTimeMicros });
      } catch (error) {
        if (refused === null && !(parkData && this.options.sink.classify(error) === 'data')) throw error;
        const body = encodeMessage(single);
        const record = skippedRecord(body, message.site, tx, delivery, error);
        // The original's headers, with those that describe the body (now this transaction alone) made again as capture makes them.
        const headers = { ...withoutTableHeaders(withoutRetry(delivery)), ...messageHeaders(single, CURRENT_SCHEMA_VERSION, (p) => this.describe(message.site, p)) };
        await this.publishParked(ctx, body, { ...headers, ...originalHeaders(provenanceOf(delivery)) }, delivery, record, error);
        await state.session.skip(tx.position, tx.commitTimeMicros, record);
      }
      state.progress = tx.position;
    }
    this.ackDeferred(ctx);
    ctx.channel.ack(delivery);
    return 'applied';
  }

  /**
   * An operator's retry (`sitesync parked --retry`). Honoured only through the default exchange, which no
   * site user may publish to, and only for a body this site recorded when it parked it; a transaction
   * recorded as skipped is applied as it is, exactly once; a refused message is handled as it first came.
   */
  private async handleRetry(ctx: Context, delivery: ConsumeMessage, retry: unknown): Promise<void> {
    const { sink, site, logger } = this.options;
    const asReceived = provenanceOf(delivery);
    const forged = (why: string): Promise<void> =>
      this.parkRefused(ctx, delivery, asReceived, null, new SitesyncError('SITESYNC_ERR_UNTRUSTED', `refused a retry: ${why}; only \`sitesync parked --retry\` sends retries`));
    if (delivery.fields.exchange !== '') return forged(`it carries ${RETRY_HEADER} but came through exchange ${JSON.stringify(delivery.fields.exchange)} (user ${JSON.stringify(asReceived.userId ?? 'none')}), not straight into ${siteQueue(site)}`);
    if (typeof retry !== 'string' || !UUID.test(retry)) return forged(`its ${RETRY_HEADER} header is not a parked id`);
    let record: ParkedRecord | null;
    try {
      record = await this.retrying(ctx, () => sink.findParked(retry));
    } catch (error) {
      if (!ctx.alive()) throw error;
      return forged(`site ${site} could not look up parked id ${retry} (${describeError(error)})`);
    }
    if (record === null) return forged(`site ${site} never parked a message ${retry}`);
    if (record.bodySha256 !== sha256(delivery.content)) return forged(`its body is not the one site ${site} parked as ${retry}`);
    if (record.done) {
      logger.info({ parked: retry, tx: record.transactionId }, 'retry of a parked message that was already handled: ignored as a duplicate');
      ctx.channel.ack(delivery);
      return;
    }
    if (record.kind === 'refused') {
      // Closed only once handled here: applied (or found applied). Parked again, it keeps its id, open.
      const outcome = await this.handleAs(ctx, delivery, { userId: record.userId ?? undefined, ...parseRoute(record.route) }, record);
      if (outcome === 'applied') await this.retrying(ctx, () => sink.finishParked(retry));
      return;
    }
    let message: ChangeMessage;
    try {
      message = addressedTo(decodeMessage(delivery.content, Number(delivery.properties.headers?.[SCHEMA_VERSION_HEADER])), this.options.site);
    } catch (error) {
      return forged(`its body does not decode with its ${SCHEMA_VERSION_HEADER} header (${describeError(error)})`);
    }
    const state = await this.sourceState(ctx, message.site);
    const reparked = async (error: unknown): Promise<Outcome> => {
      // Refused again: back to the parking queue under the same id, whose record stays open.
      await this.publishParked(ctx, delivery.content, withoutRetry(delivery), delivery, { ...record, reason: describeError(error) }, error, false);
      ctx.channel.ack(delivery);
      return 'parked';
    };
    let applied = false;
    const outcome = await this.withRetries(ctx, state, message, async () => {
      const refused = refusedChange(message.transactions[0]!, this.scope);
      if (refused !== null) throw new SitesyncError('SITESYNC_ERR_NOT_REPLICATED', `transaction ${record.transactionId} cannot be applied at ${site}: ${refused}`);
      applied = await state.session.applyRetried(message.transactions, retry);
      return 'applied';
    }, reparked);
    if (outcome !== 'applied') return;
    // Acknowledged after the commit (outside the retried work: a closed channel must not re-park it).
    this.ackDeferred(ctx);
    ctx.channel.ack(delivery);
    if (!applied) return;
    const last = message.transactions[message.transactions.length - 1]!;
    logger.info({ parked: retry, tx: last.id }, 'parked transaction applied on retry');
    this.options.events.emit('apply:applied', { site, source: message.site, transactions: message.transactions.length, rows: message.transactions.reduce((n, tx) => n + tx.changes.length, 0), position: last.position, commitTimeMicros: last.commitTimeMicros });
  }

  /** Sink bookkeeping outside any source's session: retried while it fails transiently. */
  private async retrying<T>(ctx: Context, work: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await work();
      } catch (error) {
        if (this.options.sink.classify(error) !== 'transient' || !ctx.alive()) throw error;
        this.options.logger.warn({ attempt }, `site ${this.options.site}'s bookkeeping failed, retrying: ${describeError(error)}`);
        await sleep(Math.min(10_000, 200 * 2 ** Math.min(attempt, 5)));
      }
    }
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
      this.options.logger.info({ source, applied: this.describe(source, state.progress) }, 'applying from source');
    }
    return state;
  }

  /**
   * Parks a message that is not applied at all (undecodable, untrusted, from an unknown site): the site's
   * record of it first (so that an operator's retry is recognised), then the parking queue, then the ack.
   */
  private async parkRefused(ctx: Context, delivery: ConsumeMessage, provenance: Provenance, source: string | null, error: unknown, count = true): Promise<void> {
    const bodySha256 = sha256(delivery.content);
    const route = describeRoute(provenance);
    const record: NewParkedRecord = {
      // The same message refused again (a reconnect while the parking queue refused more) keeps one record.
      id: stableId(`refused:${bodySha256}:${route}:${provenance.userId ?? ''}`),
      kind: 'refused',
      source,
      transactionId: null,
      bodySha256,
      userId: provenance.userId ?? null,
      route,
      reason: describeError(error),
    };
    await this.retrying(ctx, () => this.options.sink.recordParked(record));
    await this.publishParked(ctx, delivery.content, { ...withoutRetry(delivery), ...originalHeaders(provenance) }, delivery, record, error, count);
    ctx.channel.ack(delivery);
  }

  /** Publishes to the site's parking queue through the parking exchange and waits for the broker's confirm. */
  private async publishParked(ctx: Context, body: Buffer, headers: Record<string, unknown>, delivery: ConsumeMessage, record: NewParkedRecord, error: unknown, count = true): Promise<void> {
    const { site, logger, events, config } = this.options;
    const code: ErrorCode | string = (error as SitesyncError).code ?? (error as { code?: string }).code ?? 'SITESYNC_ERR_APPLY_DATA';
    const reason = describeError(error);
    ctx.parkedReturned = false;
    const p = delivery.properties;
    ctx.parking.publish(parkingExchange(config.broker.exchange), site, body, {
      persistent: true,
      mandatory: true,
      // What the original said of itself is kept. Its user-id too when it is this connection's user (RabbitMQ
      // refuses any other at publish); it is always in a header as well. Not its expiration: parked, it waits.
      messageId: p.messageId,
      timestamp: p.timestamp,
      contentType: p.contentType,
      contentEncoding: p.contentEncoding,
      appId: p.appId,
      correlationId: p.correlationId,
      replyTo: p.replyTo,
      type: p.type,
      priority: p.priority,
      ...(typeof p.userId === 'string' && p.userId === brokerUserOf(brokerUrlFor(config, site)) ? { userId: p.userId } : {}),
      headers: {
        ...headers,
        'sitesync-parked-reason': reason.slice(0, 2000),
        'sitesync-parked-code': code,
        'sitesync-parked-source': record.source ?? 'unknown',
        'sitesync-parked-at': microsToIso(BigInt(Date.now()) * 1000n),
        [PARKED_ID_HEADER]: record.id,
        ...(record.transactionId ? { 'sitesync-parked-transaction': record.transactionId } : {}),
      },
    });
    try {
      await ctx.parking.waitForConfirms();
    } catch (cause) {
      throw new SitesyncError('SITESYNC_ERR_BROKER_REJECTED', `RabbitMQ refused to park a message in ${parkingQueue(site)} (it holds at most 1 GiB, then refuses more); list and discard what is there with sitesync parked, and the message is parked then`, { cause });
    }
    if (ctx.parkedReturned) {
      // The parking queue is gone: the message stays unacknowledged, and the next session declares it again.
      throw new SitesyncError('SITESYNC_ERR_BROKER_REJECTED', `queue ${parkingQueue(site)} does not exist, so a message could not be parked; sitesync reconnects and declares it again`);
    }
    logger.error({ source: record.source, code, tx: record.transactionId, parked: record.id, queue: parkingQueue(site) }, `message parked: ${reason}`);
    if (count) events.emit('apply:parked', { site, source: this.metricSource(record.source), reason, code: String(code) });
    await this.warnIfParkingFills(ctx);
  }

  /** Metric labels name configured sites only: a message can claim any name. */
  private metricSource(source: string | null): string {
    return source !== null && Object.hasOwn(this.options.config.sites, source) ? source : 'unknown';
  }

  private async warnIfParkingFills(ctx: Context): Promise<void> {
    const queue = parkingQueue(this.options.site);
    const { messageCount } = await ctx.parking.checkQueue(queue);
    if (messageCount >= PARKED_WARN_MESSAGES && !ctx.parkedWarned) {
      ctx.parkedWarned = true;
      this.options.logger.warn({ queue, messages: messageCount }, `${messageCount} messages wait in ${queue}: see why with sitesync parked, then retry or discard them (the queue refuses more past 1 GiB, and applying then waits)`);
    }
  }
}

/** How often an idle apply looks at its site's join book (a hold asked for, a catch-up due). */
const JOIN_TICK_MS = 1000;

/** Most acknowledgements group commit holds before it waits for the disk anyway. */
const MAX_DEFERRED_ACKS = 256;

/** What became of a delivery: applied (or found applied), parked, or not settled before the session ended. */
type Outcome = 'applied' | 'parked' | 'unsettled';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A UUID-shaped id derived from `text` (SHA-256, version bits of a name-based UUID). */
function stableId(text: string): string {
  const h = createHash('sha256').update(text).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${((parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

function sha256(body: Buffer): string {
  return createHash('sha256').update(body).digest('hex');
}

/** The record of a transaction set aside (recorded as skipped in the same commit). */
function skippedRecord(body: Buffer, source: string, tx: Transaction, delivery: ConsumeMessage, error: unknown): NewParkedRecord {
  const provenance = provenanceOf(delivery);
  return {
    id: randomUUID(),
    kind: 'skipped',
    source,
    transactionId: tx.id,
    bodySha256: sha256(body),
    userId: provenance.userId ?? null,
    route: describeRoute(provenance),
    reason: describeError(error),
  };
}

/** The delivery's headers without a retry mark (a message parked again is not a retry until sent back). */
function withoutRetry(delivery: ConsumeMessage): Record<string, unknown> {
  const { [RETRY_HEADER]: _retry, ...headers } = delivery.properties.headers ?? {};
  return headers;
}

/** Headers without the routing headers of the tables a message touches (a transaction set aside touches fewer). */
function withoutTableHeaders(headers: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !name.startsWith(TABLE_HEADER_PREFIX)));
}

/** How the message first arrived, for people reading the parking queue (never trusted: the record is). */
function originalHeaders(provenance: Provenance): Record<string, string> {
  return { [ORIGINAL_USER_HEADER]: provenance.userId ?? '', [ORIGINAL_ROUTE_HEADER]: describeRoute(provenance) };
}

interface Context {
  readonly channel: Channel;
  /** Deliveries applied without waiting for the disk, acknowledged after the next durable commit. */
  readonly deferred: ConsumeMessage[];
  /** Set when RabbitMQ returns a message published to the parking queue (the queue is missing). */
  parkedReturned: boolean;
  /** The parking queue's size was warned about in this session. */
  parkedWarned: boolean;
  /** Deliveries received and not yet handled. */
  waiting(): number;
  readonly parking: ConfirmChannel;
  readonly sources: Map<string, SourceState>;
  alive(): boolean;
}
