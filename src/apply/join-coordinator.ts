/**
 * The apply side of joining a running mesh (join-book.ts; docs/joining-a-running-mesh.md), for the site's
 * apply runner, in both roles a site can have.
 *
 * Donor A: when `sitesync join` asks for a hold, A stops applying (between two messages), records what it
 * has applied of each other site, and applies nothing more until every snapshot of the join was read to its
 * end. Each chunk A reads then holds every other site's writes up to that recorded position and none after.
 *
 * Joiner N: from the donor, transactions before the join's first snapshot chunk are dropped (its rows come
 * in the chunks); then N applies the donor's stream in order, chunks included. From every other site S,
 * messages are dropped while the join lasts (the archive keeps them). Once every snapshot is applied, N
 * reads the archive, in its (causal) publish order, for every other site: each held S from the position the
 * donor had applied of S when it began to hold, which is where the donor's chunks leave S, and the donor
 * from its last chunk. Every write of S is then either in the chunks or applied after them, decided against
 * each row's real last writer (the chunks carry it), and no write is applied before one it followed. Then
 * the join is done and N applies its queue (what the archive gave it arrives there again, as duplicates).
 *
 * A kill anywhere loses nothing: the donor's hold and the joiner's join are rows in their databases; the
 * joiner knows it started from its position of the donor (null until the first chunk is applied), and that
 * every snapshot is applied from the last chunks' positions, written before each is applied.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../config/config-schema.ts';
import { brokerUrlFor, capturingSites } from '../config/config-schema.ts';
import type { ConnectorRegistry } from '../connector.ts';
import { describeError, SitesyncError } from '../errors.ts';
import { comparePositions } from '../events/position.ts';
import type { ChangeMessage, Position } from '../events/transaction.ts';
import type { Logger } from '../observability/logger.ts';
import { joinSnapshotsApplied, type DonorHold, type Join, type JoinBook } from './join-book.ts';
import { formatReplaySummary, replayArchive } from './replay.ts';
import type { Sink } from './sink.ts';

export interface JoinCoordinatorOptions {
  readonly config: Config;
  readonly site: string;
  readonly joins: JoinBook;
  readonly sink: Sink;
  readonly connectors: ConnectorRegistry;
  readonly logger: Logger;
  /** The state of this site's snapshots by id (running, done, cancelled); ids it does not know are absent. */
  readonly snapshotStates?: (ids: readonly string[]) => Promise<ReadonlyMap<string, string>>;
}

/** What the coordinator needs of the apply runner's session. */
export interface ApplySessionHooks {
  /** What this site has applied of `source` (its session opened if it was not). */
  progressOf(source: string): Promise<Position | null>;
  /** Closes the runner's session of `source`, so that a replay can take its place. */
  closeSession(source: string): Promise<void>;
  /** Acknowledges what group commit held: every commit before the last durable one is on disk. */
  ackDeferred(): void;
  alive(): boolean;
}

/** How often the book is read again (a hold asked for is noticed within this). */
const REFRESH_MS = 1000;
const HOLD_POLL_MS = 250;
/** A hold whose snapshots never appear at the donor (the join command died first) ends after this. */
const ORPHAN_HOLD_MS = 10 * 60 * 1000;
/** Reads of the archive, in one catch-up, that may end before what was set aside, before the apply loop retries. */
const CATCH_UP_ATTEMPTS = 5;
/** How far before the join the archive is first read from when catching up (further on a gap). */
const CATCH_UP_MARGIN_MICROS = 3_600_000_000n;

export class JoinCoordinator {
  private hold: DonorHold | null = null;
  private join: Join | null = null;
  private readAt = 0;
  /**
   * The last position this process dropped of each held site: the catch-up must apply at least that far
   * from the archive, whatever its end probe measured (a probe on a loaded broker can end early, and what
   * was dropped is no longer in the queue).
   */
  private readonly dropped = new Map<string, Position>();

  constructor(private readonly options: JoinCoordinatorOptions) {}

  private async refresh(force = false): Promise<void> {
    if (!force && Date.now() - this.readAt < REFRESH_MS) return;
    [this.hold, this.join] = await Promise.all([this.options.joins.hold(), this.options.joins.join()]);
    this.readAt = Date.now();
  }

  /**
   * Before each delivery: a donor asked to hold holds here until its join's snapshots are read; a joiner
   * whose snapshots are all applied catches up first.
   */
  async beforeDelivery(hooks: ApplySessionHooks): Promise<void> {
    await this.refresh();
    if (this.hold) await this.holdAsDonor(hooks, this.hold);
    if (this.join) {
      const donorApplied = await hooks.progressOf(this.join.donor);
      if (this.join.state === 'catching-up' || joinSnapshotsApplied(this.join, donorApplied, comparePositions)) await this.catchUp(hooks, this.join);
    }
  }

  /**
   * A joiner's view of a message: null to drop it (acknowledged, not applied), or the transactions to apply.
   * `appliedOf` says what this site has applied of a site.
   */
  async admit(message: ChangeMessage, appliedOf: (source: string) => Promise<Position | null>): Promise<ChangeMessage | null> {
    const join = this.join;
    if (!join) return message;
    if (message.site !== join.donor) {
      // Held: taken from the archive once the snapshots are in.
      const last = message.transactions[message.transactions.length - 1];
      const known = this.dropped.get(message.site);
      if (last && (known === undefined || comparePositions(last.position, known) > 0)) this.dropped.set(message.site, last.position);
      return null;
    }
    let admitted = message;
    if ((await appliedOf(join.donor)) === null) {
      // Not started: everything before the first chunk of the join's snapshots is in the chunks.
      const first = message.transactions.findIndex((tx) => tx.snapshot && join.snapshotIds.includes(tx.snapshot.id));
      if (first < 0) return null;
      admitted = first === 0 ? message : { ...message, previous: null, transactions: message.transactions.slice(first) };
    }
    for (const [i, tx] of admitted.transactions.entries()) {
      const tag = tx.snapshot;
      const last = tag?.last && (message.part === null || message.part.last);
      const current = this.join!;
      if (tag && last && current.snapshotIds.includes(tag.id) && current.lastChunks[tag.id] === undefined) {
        await this.options.joins.noteLastChunk(current.joinId, tag.id, tx.position);
        this.join = { ...current, lastChunks: { ...current.lastChunks, [tag.id]: tx.position } };
        if (current.snapshotIds.every((id) => this.join!.lastChunks[id] !== undefined) && i < admitted.transactions.length - 1) {
          // The donor's transactions after its last chunk come from the archive, in causal order with the
          // held sites' (catchUp): not from this message.
          return { ...admitted, transactions: admitted.transactions.slice(0, i + 1) };
        }
      }
    }
    return admitted;
  }

  private async holdAsDonor(hooks: ApplySessionHooks, hold: DonorHold): Promise<void> {
    const { joins, logger, config, site } = this.options;
    if (hold.state === 'requested') {
      const positions: Record<string, Position> = {};
      for (const source of capturingSites(config)) {
        if (source === site || source === hold.joiner) continue;
        const applied = await hooks.progressOf(source);
        if (applied !== null) positions[source] = applied;
      }
      // A synchronous commit: every commit of group commit before it is on disk with it.
      await joins.confirmHold(hold.joinId, positions);
      hooks.ackDeferred();
      logger.info({ join: hold.joinId, joiner: hold.joiner }, `holding: applying nothing from other sites while site ${hold.joiner}'s snapshot is read here`);
      await this.refresh(true);
    }
    let current = this.hold;
    while (current && current.joinId === hold.joinId && hooks.alive()) {
      const why = await this.holdOver(current);
      if (why !== null) {
        await joins.releaseHold(current.joinId, why);
        logger.info({ join: current.joinId }, `hold released (${why}): applying again`);
        break;
      }
      await sleep(HOLD_POLL_MS);
      await this.refresh(true);
      current = this.hold;
    }
    await this.refresh(true);
  }

  /** Why the hold can end (every snapshot read or cancelled), or null while it must go on. */
  private async holdOver(hold: DonorHold): Promise<string | null> {
    const states = (await this.options.snapshotStates?.(hold.snapshotIds)) ?? new Map<string, string>();
    const known = hold.snapshotIds.filter((id) => states.has(id));
    if (known.length === 0 && Date.now() - hold.requestedAt.getTime() > ORPHAN_HOLD_MS) return 'none of its snapshots was ever started';
    if (known.length < hold.snapshotIds.length) return null;
    return hold.snapshotIds.every((id) => states.get(id) !== 'running') ? 'every snapshot was read' : null;
  }

  /** Takes every held site from the archive, from where the donor's chunks leave it; then the join is done. */
  private async catchUp(hooks: ApplySessionHooks, join: Join): Promise<void> {
    const { joins, sink, config, site, logger, connectors } = this.options;
    if (join.state !== 'catching-up') await joins.beginCatchUp(join.joinId);
    const held = capturingSites(config).filter((s) => s !== site && s !== join.donor);
    // The donor too: the archive holds every site's messages in the order they were published, which
    // is causal (a site publishes a change after it applied what the change followed), so the held sites'
    // writes and the donor's since its last chunk are applied in that order, as any site's queue gives them.
    const sources = [join.donor, ...held];
    for (const source of sources) await hooks.closeSession(source);
    // Where the archive is read from for each held site: the donor's position of it (what its chunks hold).
    for (const source of held) {
      const start = join.positions[source];
      if (start === undefined) continue;
      const session = await sink.openSession(source);
      try {
        const applied = await session.progress();
        if (applied === null || comparePositions(applied, start) < 0) await session.skip(start, BigInt(join.startedAt.getTime()) * 1000n);
      } finally {
        await session.close();
      }
    }
    logger.info({ join: join.joinId, sources: held }, `every snapshot from ${join.donor} is applied: taking ${held.join(', ') || 'no other site'} from the archive`);
    const replay = (micros: bigint) =>
      replayArchive({
        config,
        site,
        sources,
        from: { kind: 'time', micros, text: micros === 0n ? 'the start of the archive' : new Date(Number(micros / 1000n)).toISOString() },
        to: null,
        sink,
        connectors,
        logger,
        report: (line) => logger.info(line),
        insideRun: true,
        brokerUrl: brokerUrlFor(config, site),
      });
    const since = BigInt(join.startedAt.getTime()) * 1000n - CATCH_UP_MARGIN_MICROS;
    let from = since > 0n ? since : 0n;
    for (let attempt = 1; ; attempt++) {
      let result;
      try {
        result = await replay(from);
      } catch (error) {
        if ((error as SitesyncError).code !== 'SITESYNC_ERR_GAP' || from === 0n) throw error;
        logger.info(`the archive from an hour before the join does not reach far enough back (${describeError(error)}): reading it from its start`);
        from = 0n;
        continue;
      }
      for (const r of result.sources) logger.info({ join: join.joinId }, formatReplaySummary(r));
      const short = await this.notYetApplied(sink, held);
      if (short.length === 0) break;
      if (attempt >= CATCH_UP_ATTEMPTS) {
        throw new SitesyncError('SITESYNC_ERR_BROKER_UNREACHABLE', `the archive stream ended, as read, before what this site set aside during its join (${short.join('; ')}); sitesync reads it again`);
      }
      logger.info({ join: join.joinId }, `the archive was read to an end before what this site set aside (${short.join('; ')}): reading it again`);
    }
    await joins.finishJoin(join.joinId);
    this.dropped.clear();
    logger.info({ join: join.joinId }, `joined: site ${site} now applies every site from its queue`);
    await this.refresh(true);
  }
  /** The held sites whose dropped messages the catch-up has not applied yet, as `site: applied … of …`. */
  private async notYetApplied(sink: Sink, held: readonly string[]): Promise<string[]> {
    const short: string[] = [];
    for (const source of held) {
      const wanted = this.dropped.get(source);
      if (wanted === undefined) continue;
      const session = await sink.openSession(source);
      try {
        const applied = await session.progress();
        if (applied === null || comparePositions(applied, wanted) < 0) short.push(`${source}: applied ${applied ?? 'nothing'} of ${wanted}`);
      } finally {
        await session.close();
      }
    }
    return short;
  }
}
