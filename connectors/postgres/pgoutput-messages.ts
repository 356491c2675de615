/**
 * The messages of PostgreSQL's pgoutput logical decoding plugin, protocol version 1, as plain data.
 * https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html
 *
 * LSNs are bigint because they are full 64-bit positions. xids and OIDs are unsigned 32-bit numbers.
 * Times are microseconds since the Unix epoch (converted from PostgreSQL's 2000-01-01 epoch), as
 * bigint so that no microsecond is lost.
 */
import type { EncodedRow } from '../../src/events/encoded-row.ts';

/** Microseconds between 1970-01-01 and PostgreSQL's epoch, 2000-01-01 (both UTC). */
export const POSTGRES_EPOCH_OFFSET_MICROS = 946_684_800_000_000n;

export function postgresToUnixMicros(postgresMicros: bigint): bigint {
  return postgresMicros + POSTGRES_EPOCH_OFFSET_MICROS;
}

export function unixToPostgresMicros(unixMicros: bigint): bigint {
  return unixMicros - POSTGRES_EPOCH_OFFSET_MICROS;
}

/**
 * One row's column values in text form, kept as the row image's wire bytes (see EncodedRow). A value is
 * null both for SQL NULL ('n') and for an unchanged TOASTed value the server did not send ('u');
 * `unchanged` lists the indexes of the latter, ascending, so that an applier does not overwrite a stored
 * value with NULL.
 */
export type TupleData = EncodedRow;

export type ReplicaIdentity = 'd' | 'f' | 'i' | 'n';

export interface RelationColumn {
  /** 1 when the column is part of the replica identity key. */
  readonly flags: number;
  readonly name: string;
  readonly typeOid: number;
  /** Signed; -1 when the type has no modifier. */
  readonly typeModifier: number;
}

export interface BeginMessage {
  readonly tag: 'begin';
  readonly finalLsn: bigint;
  readonly commitTimeMicros: bigint;
  readonly xid: number;
}

export interface CommitMessage {
  readonly tag: 'commit';
  readonly flags: number;
  readonly commitLsn: bigint;
  readonly endLsn: bigint;
  readonly commitTimeMicros: bigint;
}

export interface OriginMessage {
  readonly tag: 'origin';
  readonly originLsn: bigint;
  readonly name: string;
}

export interface RelationMessage {
  readonly tag: 'relation';
  readonly relationOid: number;
  readonly schema: string;
  readonly table: string;
  readonly replicaIdentity: ReplicaIdentity;
  readonly columns: readonly RelationColumn[];
}

export interface TypeMessage {
  readonly tag: 'type';
  readonly typeOid: number;
  readonly schema: string;
  readonly name: string;
}

export interface InsertMessage {
  readonly tag: 'insert';
  readonly relationOid: number;
  readonly newTuple: TupleData;
}

/** oldKind 'K' sends only the key columns, 'O' the whole old row; null when neither was sent. */
export interface UpdateMessage {
  readonly tag: 'update';
  readonly relationOid: number;
  readonly oldKind: 'K' | 'O' | null;
  readonly oldTuple: TupleData | null;
  readonly newTuple: TupleData;
}

export interface DeleteMessage {
  readonly tag: 'delete';
  readonly relationOid: number;
  readonly oldKind: 'K' | 'O';
  readonly oldTuple: TupleData;
}

export interface TruncateMessage {
  readonly tag: 'truncate';
  readonly relationOids: readonly number[];
  readonly cascade: boolean;
  readonly restartIdentity: boolean;
}

/** A pg_logical_emit_message() record. */
export interface LogicalMessage {
  readonly tag: 'message';
  readonly transactional: boolean;
  readonly lsn: bigint;
  readonly prefix: string;
  readonly content: Buffer;
}

export type PgOutputMessage =
  | BeginMessage
  | CommitMessage
  | OriginMessage
  | RelationMessage
  | TypeMessage
  | InsertMessage
  | UpdateMessage
  | DeleteMessage
  | TruncateMessage
  | LogicalMessage;
