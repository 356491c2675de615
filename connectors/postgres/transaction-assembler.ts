/**
 * Turns the pgoutput message stream into transactions. A small state machine, pure (no I/O):
 *
 *   between ──BEGIN──▶ in-transaction ──(ORIGIN | RELATION | TYPE | INSERT | UPDATE | DELETE | TRUNCATE |
 *                                        MESSAGE)*──COMMIT──▶ between
 *
 * - A transaction that carries a sitesync replication origin is a relayed write: its changes are not kept
 *   and its commit is reported as skipped, so the slot moves past it but it never loops back. Its commit
 *   time (which decoding reports as the origin's, the source site's own) moves the causal context `seen`
 *   that every later transaction of this site carries: which of each other site's writes it came after.
 * - Changes to sitesync's own schema are dropped; a transaction left with nothing is skipped as empty.
 * - Memory is bounded: once the changes held reach `maxPartBytes`, they go out as a part and are let go.
 * - Positions: a transaction's position is its commit LSN, known from BEGIN, so the first part of a
 *   large transaction already carries the id; its checkpoint is the end of the commit record, which is
 *   what the slot must be confirmed to so that the server does not send it again.
 */
import { lsnToPosition } from './postgres-positions.ts';
import type { Change, ColumnInfo, RelationInfo, SeenSites, Transaction } from '../../src/events/transaction.ts';
import { changeBytes, transactionId } from '../../src/events/transaction.ts';
import type { SourceHandler } from '../../src/capture/source.ts';
import { BOOKKEEPING_SCHEMA, MESSAGE_PREFIX, ORIGIN_PREFIX } from '../../src/config/names.ts';
import { SNAPSHOT_MARKER_PREFIX } from '../../src/capture/snapshot-marker.ts';
import { DecodeError } from '../../src/errors.ts';
import type { PgOutputMessage } from './pgoutput-messages.ts';
import type { PostgresTypes } from './postgres-types.ts';

export interface AssemblerOptions {
  readonly site: string;
  /** Changes held before a part is sent; a transaction smaller than this goes out whole. */
  readonly maxPartBytes: number;
  /** The source database's types (names and kinds by OID), read from its catalog at start. */
  readonly types: PostgresTypes;
  /** The causal context as of where the stream resumes (persisted with the confirmed position). */
  readonly seen: SeenSites;
}

interface OpenTransaction {
  readonly position: string;
  readonly commitTimeMicros: bigint;
  readonly xid: number;
  relayed: boolean;
  /** The site a relayed transaction was first committed at. */
  relayedFrom: string | null;
  changes: Change[];
  bytes: number;
  partsSent: number;
}


export class TransactionAssembler {
  private readonly relations = new Map<number, RelationInfo>();
  private readonly originSuffix: string;
  private open: OpenTransaction | null = null;
  /** Replaced, never mutated: every transaction keeps the context it was committed in. */
  private seenSites: SeenSites;

  constructor(
    private readonly options: AssemblerOptions,
    private readonly handler: SourceHandler,
  ) {
    this.seenSites = options.seen;
    this.originSuffix = `_to_${options.site}`;
  }

  /** The causal context after everything accepted so far. */
  get seen(): SeenSites {
    return this.seenSites;
  }

  /** True inside a relayed transaction: its row changes will be dropped, so they need not be decoded. */
  get droppingChanges(): boolean {
    return this.open?.relayed ?? false;
  }

  /** True between BEGIN and COMMIT: positions the server reports then are not safe to confirm. */
  get inTransaction(): boolean {
    return this.open !== null;
  }

  accept(message: PgOutputMessage): void {
    switch (message.tag) {
      case 'begin':
        if (this.open) throw new DecodeError('pgoutput BEGIN inside an open transaction');
        this.open = {
          position: lsnToPosition(message.finalLsn),
          commitTimeMicros: message.commitTimeMicros,
          xid: message.xid,
          relayed: false,
          relayedFrom: null,
          changes: [],
          bytes: 0,
          partsSent: 0,
        };
        return;
      case 'origin': {
        const tx = this.current('ORIGIN');
        tx.relayed = message.name.startsWith(ORIGIN_PREFIX);
        if (tx.relayed && message.name.endsWith(this.originSuffix)) {
          tx.relayedFrom = message.name.slice(ORIGIN_PREFIX.length, -this.originSuffix.length);
        }
        return;
      }
      case 'relation':
        this.relations.set(message.relationOid, {
          schema: message.schema,
          table: message.table,
          replicaIdentity: message.replicaIdentity,
          columns: message.columns.map(
            (c): ColumnInfo => ({
              name: c.name,
              kind: this.options.types.kind(c.typeOid, c.typeModifier),
              native: this.options.types.native(c.typeOid, c.typeModifier),
              key: (c.flags & 1) === 1,
            }),
          ),
        });
        return;
      case 'type':
        this.options.types.announce(message.typeOid, message.schema === 'pg_catalog' ? message.name : `${message.schema}.${message.name}`);
        return;
      case 'insert':
        this.add(message.relationOid, (relation) => ({ op: 'insert', relation, newRow: message.newTuple }));
        return;
      case 'update':
        this.add(message.relationOid, (relation) => ({ op: 'update', relation, oldRow: message.oldTuple, newRow: message.newTuple }));
        return;
      case 'delete':
        this.add(message.relationOid, (relation) => ({ op: 'delete', relation, oldRow: message.oldTuple }));
        return;
      case 'truncate': {
        const tx = this.current('TRUNCATE');
        if (tx.relayed) return;
        const relations = message.relationOids.map((oid) => this.relation(oid)).filter((r) => r.schema !== BOOKKEEPING_SCHEMA);
        if (relations.length === 0) return;
        this.push(tx, { op: 'truncate', relations, cascade: message.cascade, restartIdentity: message.restartIdentity });
        return;
      }
      case 'message':
        if (!message.transactional) {
          // Outside any transaction: sitesync's own heartbeat says the stream is idle up to here. Other
          // non-transactional messages have no commit to order them by; they are not replicated.
          if (!this.open && message.prefix.startsWith(MESSAGE_PREFIX)) this.handler.idle(lsnToPosition(message.lsn), this.seenSites);
          return;
        }
        {
          const tx = this.current('MESSAGE');
          // sitesync's own messages are not replicated, except a snapshot marker: capture turns it into
          // the chunk it asks for (src/capture/snapshot-chunks.ts).
          if (tx.relayed || (message.prefix.startsWith(MESSAGE_PREFIX) && message.prefix !== SNAPSHOT_MARKER_PREFIX)) return;
          this.push(tx, { op: 'message', prefix: message.prefix, content: message.content });
        }
        return;
      case 'commit': {
        const tx = this.current('COMMIT');
        this.open = null;
        const checkpoint = lsnToPosition(message.endLsn);
        if (tx.relayed) {
          const from = tx.relayedFrom;
          if (from !== null && ((Object.hasOwn(this.seenSites, from) ? this.seenSites[from] : undefined) ?? -1n) < tx.commitTimeMicros) {
            this.seenSites = { ...this.seenSites, [from]: tx.commitTimeMicros };
          }
          this.handler.skipped(tx.position, checkpoint, 'relayed', this.seenSites);
        } else if (tx.changes.length === 0 && tx.partsSent === 0) {
          this.handler.skipped(tx.position, checkpoint, 'empty', this.seenSites);
        } else {
          const part = tx.partsSent > 0 ? { index: tx.partsSent, last: true } : null;
          this.handler.transaction(this.snapshot(tx), part, checkpoint);
        }
        return;
      }
    }
  }

  private current(what: string): OpenTransaction {
    if (!this.open) throw new DecodeError(`pgoutput ${what} outside a transaction`);
    return this.open;
  }

  private relation(oid: number): RelationInfo {
    const relation = this.relations.get(oid);
    if (!relation) throw new DecodeError(`pgoutput change for relation ${oid} before its RELATION message`);
    return relation;
  }

  private add(oid: number, make: (relation: RelationInfo) => Change): void {
    const tx = this.current('change');
    if (tx.relayed) return;
    const relation = this.relation(oid);
    if (relation.schema === BOOKKEEPING_SCHEMA) return;
    this.push(tx, make(relation));
  }

  private push(tx: OpenTransaction, change: Change): void {
    tx.changes.push(change);
    tx.bytes += changeBytes(change);
    if (tx.bytes >= this.options.maxPartBytes) {
      this.handler.transaction(this.snapshot(tx), { index: tx.partsSent, last: false }, null);
      tx.partsSent++;
      tx.changes = [];
      tx.bytes = 0;
    }
  }

  private snapshot(tx: OpenTransaction): Transaction {
    return {
      id: transactionId(this.options.site, tx.position),
      site: this.options.site,
      position: tx.position,
      commitTimeMicros: tx.commitTimeMicros,
      sourceTxId: String(tx.xid),
      seen: this.seenSites,
      changes: tx.changes,
    };
  }
}
