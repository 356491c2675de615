/**
 * Capture: source → messages → broker, with the checkpoint rule.
 *
 * A session connects the broker, opens the source after its last confirmed checkpoint, and streams:
 * whole transactions are grouped into messages (message-batcher.ts: up to maxTransactionsPerMessage or
 * maxMessageBytes, and waiting for the confirms in flight, briefly), parts of large transactions go out one
 * per message. Publishing never waits for each confirm; the source is paused while too much is unconfirmed.
 * Every status interval the source is confirmed up to the tracker's frontier.
 *
 * Any failure (broker gone, a publish not confirmed, the database connection lost) ends the session; the
 * next one starts after a backoff from the source's confirmed checkpoint, so what was not confirmed is sent
 * again (appliers drop the duplicates) and nothing is lost.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { brokerUrlFor, brokerUserOf, type Config } from '../config/config-schema.ts';
import { routingKey } from '../config/names.ts';
import { CURRENT_SCHEMA_VERSION, encodeMessage } from '../events/avro-codec.ts';
import { changeBytes, type ChangeMessage, type Position, type SeenSites, type Transaction, type TransactionPart } from '../events/transaction.ts';
import type { DescribePosition } from '../events/position.ts';
import { connectBroker } from '../bus/broker-connection.ts';
import { ConfirmedPublisher } from '../bus/confirmed-publisher.ts';
import { messageHeaders, messageId } from '../bus/message-headers.ts';
import { ensureTopology } from '../bus/topology.ts';
import { waitForArchive } from '../bus/archive-stream.ts';
import { SitesyncError } from '../errors.ts';
import { SessionLoop } from '../session-loop.ts';
import type { Logger } from '../observability/logger.ts';
import type { PipelineEvents } from '../observability/pipeline-events.ts';
import { CheckpointTracker, type Entry } from './checkpoint-tracker.ts';
import { MessageBatcher } from './message-batcher.ts';
import type { Source, SourceHandler } from './source.ts';
import { SnapshotChunks } from './snapshot-chunks.ts';
import type { SnapshotControl } from './snapshot-control.ts';
import type { TableReader } from './table-reader.ts';

/**
 * Unconfirmed bytes above which the source is paused, whatever the message count. Each is held twice for a
 * while (the encoded body until its confirm, and amqplib's frame until the socket takes it): at 64 MB a 2 GB
 * transaction took the capture process to 273 MiB of its 300 MB budget; 32 MB still keeps confirms flowing.
 */
const MAX_UNCONFIRMED_BYTES = 32 * 1024 * 1024;
const LAG_INTERVAL_MS = 5000;
/** Longest a message that is not full waits for the confirms of those before it (message-batcher.ts). */
const LINGER_MS = 10;

export interface CaptureRunnerOptions {
  readonly config: Config;
  readonly source: Source;
  /** The display form of the source's positions (its connector's), for headers and logs. */
  readonly describePosition?: DescribePosition;
  readonly events: PipelineEvents;
  readonly logger: Logger;
  /** What reads snapshot chunks at this site, opened for each session; absent when its connector cannot. */
  readonly snapshots?: () => Promise<{ readonly reader: TableReader; readonly control: SnapshotControl }>;
}

export class CaptureRunner {
  private readonly site: string;
  private readonly loop: SessionLoop;

  constructor(private readonly options: CaptureRunnerOptions) {
    this.site = options.source.site;
    this.loop = new SessionLoop(options.logger, (reason) => options.events.emit('capture:interrupted', { site: this.site, reason }));
  }

  /** Runs sessions until `stop`; throws only on a fatal error (configuration, permissions). */
  run(): Promise<void> {
    return this.loop.run(async (healthy, onStop) => {
      await this.options.source.prepare();
      await this.session(healthy, onStop);
    });
  }

  /** Finish what is in flight (publish, wait for confirms, confirm the source), then return from run(). */
  stop(): void {
    this.loop.stop();
  }

  private async session(onHealthy: () => void, onStop: (end: () => void) => void): Promise<void> {
    const { config, source, events, logger } = this.options;
    const brokerUrl = brokerUrlFor(config, this.site);
    const connection = await connectBroker(brokerUrl, `sitesync capture ${this.site}`);
    // Once the session fails, nothing more is published from it: what the source handed over after the
    // failure may be incomplete, and the next session sends everything unconfirmed again anyway.
    let dead = false;
    let failure: ((error: unknown) => void) | null = null;
    const failed = new Promise<never>((_, reject) => (failure = (error) => ((dead = true), reject(error))));
    failed.catch(() => undefined);
    connection.on('error', (error: Error) => failure?.(error));
    connection.on('close', () => failure?.(new SitesyncError('SITESYNC_ERR_BROKER_UNREACHABLE', 'the connection to RabbitMQ closed; sitesync reconnects')));
    connection.on('blocked', (reason: string) => logger.warn({ reason }, 'RabbitMQ blocks publishing (resource alarm); capture waits, the slot keeps the WAL'));
    connection.on('unblocked', () => logger.info('RabbitMQ accepts publishing again'));
    const timers: NodeJS.Timeout[] = [];
    let batcher: MessageBatcher | null = null; // for the finally: closed with the session
    let snapshotChunks: SnapshotChunks | null = null;
    try {
      await ensureTopology(connection, config, { exchanges: [config.broker.exchange], queues: [] }, logger);
      // After a broker restart the archive stream may not take what is routed to it yet, while RabbitMQ
      // still confirms the publish (the site queues took it): nothing is published before it does.
      await waitForArchive(connection, config.broker.archiveStream, (line) => logger.warn(line));
      const channel = await connection.createConfirmChannel();
      // RabbitMQ checks the user-id against this connection's user: it is what appliers trust.
      const publisher = new ConfirmedPublisher(channel, config.broker.exchange, brokerUserOf(brokerUrl));
      const capture = config.capture;

      const resume = await source.resumePoint();
      let previous: Position | null = resume.lastPublished;
      const tracker = new CheckpointTracker(resume);
      let unconfirmed = 0;
      let unconfirmedBytes = 0;
      let paused = false;
      // The source reads while nobody holds it: flow control (too much unconfirmed) and a snapshot chunk
      // being read each hold it for their own reason.
      const holds = new Set<string>();
      const hold = (reason: string): void => {
        if (holds.size === 0) source.pause();
        holds.add(reason);
      };
      const release = (reason: string): void => {
        if (holds.delete(reason) && holds.size === 0) source.resume();
      };
      let lastActivity = Date.now();
      let newestCommitMicros = 0n;

      const publish = (transactions: Transaction[], part: TransactionPart | null, checkpoint: string | null, seen: SeenSites): void => {
        if (dead) return;
        const t = tracker;
        const message: ChangeMessage = { site: this.site, sourceKind: source.kind, previous, transactions, part };
        const body = encodeMessage(message);
        const last = transactions[transactions.length - 1]!;
        const wholeDone = part === null || part.last;
        const entry: Entry = t.published(checkpoint, wholeDone ? last.position : null, seen);
        if (wholeDone) previous = last.position;
        unconfirmed++;
        unconfirmedBytes += body.length;
        if (!paused && (unconfirmed >= capture.maxUnconfirmedMessages || unconfirmedBytes >= MAX_UNCONFIRMED_BYTES)) {
          paused = true;
          hold('unconfirmed');
        }
        events.emit('capture:published', { site: this.site, transactions: wholeDone ? transactions.length : 0, bytes: body.length });
        publisher
          .publish(routingKey(this.site), body, messageId(message), messageHeaders(message, CURRENT_SCHEMA_VERSION, this.options.describePosition), Number(last.commitTimeMicros / 1_000_000n))
          .then(
            () => {
              t.confirmed(entry);
              unconfirmed--;
              unconfirmedBytes -= body.length;
              batches.confirmed();
              events.emit('capture:confirmed', { site: this.site, messages: 1 });
              if (paused && unconfirmed < capture.maxUnconfirmedMessages / 2 && unconfirmedBytes < MAX_UNCONFIRMED_BYTES / 2) {
                paused = false;
                release('unconfirmed');
              }
            },
            (error: unknown) => failure?.(error),
          );
      };

      const batches = new MessageBatcher(
        { maxTransactions: capture.maxTransactionsPerMessage, maxBytes: capture.maxMessageBytes, lingerMs: LINGER_MS },
        () => unconfirmed,
        ({ transactions, checkpoint, seen }) => publish(transactions, null, checkpoint, seen),
      );
      batcher = batches;

      /** A checkpoint past nothing new to publish: it rides with the message being gathered, or stands alone. */
      const passed = (checkpoint: string, seen: SeenSites): void => {
        if (!batches.passed(checkpoint, seen)) tracker.passed(checkpoint, seen);
      };

      const handler: SourceHandler = {
        transaction: (tx, part, checkpoint) => {
          lastActivity = Date.now();
          newestCommitMicros = tx.commitTimeMicros;
          if (part === null || part.index === 0) events.emit('capture:transaction', { site: this.site, position: tx.position, rows: tx.changes.length, commitTimeMicros: tx.commitTimeMicros });
          if (part !== null) {
            batches.flush();
            publish([tx], part, checkpoint, tx.seen);
            return;
          }
          batches.add(tx, estimateBytes(tx), checkpoint);
        },
        skipped: (position, checkpoint, reason, seen) => {
          lastActivity = Date.now();
          events.emit('capture:skipped', { site: this.site, position, reason });
          passed(checkpoint, seen);
        },
        idle: (checkpoint, seen) => passed(checkpoint, seen),
      };

      if (this.options.snapshots) {
        const { reader, control } = await this.options.snapshots();
        snapshotChunks = new SnapshotChunks({
          site: this.site,
          reader,
          control,
          maxPartBytes: capture.maxMessageBytes,
          pause: () => hold('snapshot'),
          resume: () => release('snapshot'),
          onError: (error) => failure?.(error),
          onChunk: (chunk) => events.emit('capture:snapshot-chunk', { site: this.site, ...chunk }),
          logger,
        });
      }
      await source.open(snapshotChunks ? snapshotChunks.wrap(handler) : handler);
      onHealthy();
      events.emit('capture:streaming', { site: this.site });
      logger.info({ lastPublished: previous }, 'capture started');

      let confirmedCheckpoint: string | null = null;
      // One confirmation at a time; a call during one waits for it and then confirms what is new since.
      let confirming: Promise<void> = Promise.resolve();
      let busy = false;
      const confirmFrontier = (): Promise<void> => {
        busy = true;
        confirming = confirming.catch(() => undefined).then(async () => {
          const frontier = tracker.advance();
          if (frontier.checkpoint !== null && frontier.checkpoint !== confirmedCheckpoint) {
            await source.confirm(frontier.checkpoint, frontier);
            confirmedCheckpoint = frontier.checkpoint;
            events.emit('capture:slot-confirmed', { site: this.site, position: frontier.checkpoint });
          }
        }).finally(() => (busy = false));
        return confirming;
      };
      timers.push(
        setInterval(() => {
          if (!busy) confirmFrontier().catch((error: unknown) => failure?.(error));
        }, capture.statusIntervalSeconds * 1000),
      );
      if (capture.heartbeatSeconds > 0) {
        timers.push(
          setInterval(() => {
            if (Date.now() - lastActivity < capture.heartbeatSeconds * 1000) return;
            lastActivity = Date.now();
            source.heartbeat().catch((error: unknown) => failure?.(error));
          }, capture.heartbeatSeconds * 1000),
        );
      }
      timers.push(
        setInterval(() => {
          source.lag().then(
            (lag) => {
              if (!lag) return;
              const seconds = unconfirmed > 0 && newestCommitMicros > 0n ? Math.max(0, Date.now() / 1000 - Number(newestCommitMicros) / 1e6) : 0;
              events.emit('capture:lag', { site: this.site, bytes: lag.bytes, seconds });
            },
            () => undefined,
          );
        }, LAG_INTERVAL_MS),
      );

      const stopRequested = new Promise<'stop'>((resolve) => onStop(() => resolve('stop')));
      const outcome = await Promise.race([source.ended!.then(() => 'ended' as const), failed, stopRequested]);
      if (outcome === 'stop') {
        // Clean stop: stop reading, publish what is held, wait (bounded) for the broker, confirm the source.
        source.pause();
        batches.flush();
        const deadline = Date.now() + 10_000;
        while (unconfirmed > 0 && Date.now() < deadline) await Promise.race([sleep(20), failed]);
        await confirmFrontier();
        const settled = await source.settle();
        if (!settled) logger.warn({ confirmed: confirmedCheckpoint }, 'the source did not show the last confirmed position in time; the next start sends what follows its previous one again (applied once)');
        logger.info({ unconfirmed, confirmed: confirmedCheckpoint }, 'capture stopped');
      } else {
        throw new SitesyncError('SITESYNC_ERR_DATABASE_UNREACHABLE', `the change stream of site ${this.site} ended; sitesync restarts it`);
      }
    } finally {
      failure = null;
      for (const timer of timers) clearInterval(timer);
      batcher?.close();
      await source.close().catch(() => undefined);
      await snapshotChunks?.close();
      await connection.close().catch(() => undefined);
    }
  }
}

function estimateBytes(tx: Transaction): number {
  let bytes = 64;
  for (const change of tx.changes) bytes += changeBytes(change);
  return bytes;
}
