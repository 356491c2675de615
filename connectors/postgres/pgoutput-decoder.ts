import { DecodeError } from '../../src/errors.ts';
import { EncodedRowWriter } from '../../src/events/encoded-row.ts';
import { BinaryReader } from './binary-reader.ts';
import {
  postgresToUnixMicros,
  type DeleteMessage,
  type InsertMessage,
  type LogicalMessage,
  type PgOutputMessage,
  type RelationColumn,
  type RelationMessage,
  type ReplicaIdentity,
  type TruncateMessage,
  type TupleData,
  type UpdateMessage,
} from './pgoutput-messages.ts';

/**
 * Decodes one pgoutput message (protocol version 1, text tuples) — the payload of one XLogData frame.
 * https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html
 *
 * Throws DecodeError for anything that is not exactly one well-formed v1 message, including the
 * protocol-v2 streaming messages and binary tuple values, which we never ask the server for: seeing
 * one means the slot was opened with options we do not understand, and guessing would lose data.
 */
export function decodePgOutput(payload: Buffer): PgOutputMessage {
  const reader = new BinaryReader(payload);
  const message = decodeBody(reader);
  if (!reader.atEnd) {
    throw new DecodeError(
      `${reader.remaining} trailing bytes after a complete pgoutput ${message.tag} message at offset ${reader.offset}`,
    );
  }
  return message;
}

/**
 * Whether a pgoutput message is an INSERT, UPDATE or DELETE, told by its first byte alone (the rows are not
 * read; `undefined` for an empty message).
 */
export function isRowChangeTag(tag: number | undefined): boolean {
  return tag === 0x49 /* I */ || tag === 0x55 /* U */ || tag === 0x44 /* D */;
}

function decodeBody(reader: BinaryReader): PgOutputMessage {
  const tag = reader.readUInt8('message tag');
  switch (tag) {
    case 0x42 /* B */:
      return {
        tag: 'begin',
        finalLsn: reader.readUInt64('begin final LSN'),
        commitTimeMicros: readTimestamp(reader, 'begin commit time'),
        xid: reader.readUInt32('begin xid'),
      };
    case 0x43 /* C */:
      return {
        tag: 'commit',
        flags: reader.readUInt8('commit flags'),
        commitLsn: reader.readUInt64('commit LSN'),
        endLsn: reader.readUInt64('commit end LSN'),
        commitTimeMicros: readTimestamp(reader, 'commit time'),
      };
    case 0x4f /* O */:
      return { tag: 'origin', originLsn: reader.readUInt64('origin LSN'), name: reader.readCString('origin name') };
    case 0x52 /* R */:
      return decodeRelation(reader);
    case 0x59 /* Y */:
      return {
        tag: 'type',
        typeOid: reader.readUInt32('type OID'),
        schema: reader.readCString('type schema'),
        name: reader.readCString('type name'),
      };
    case 0x49 /* I */:
      return decodeInsert(reader);
    case 0x55 /* U */:
      return decodeUpdate(reader);
    case 0x44 /* D */:
      return decodeDelete(reader);
    case 0x54 /* T */:
      return decodeTruncate(reader);
    case 0x4d /* M */:
      return decodeLogicalMessage(reader);
    default:
      throw new DecodeError(`unknown pgoutput message tag ${describeByte(tag)} at offset 0`);
  }
}

function decodeRelation(reader: BinaryReader): RelationMessage {
  const relationOid = reader.readUInt32('relation OID');
  const schema = reader.readCString('relation schema');
  const table = reader.readCString('relation name');
  const replicaIdentity = readReplicaIdentity(reader);
  const count = reader.readUInt16('relation column count');
  const columns: RelationColumn[] = [];
  for (let i = 0; i < count; i++) {
    columns.push({
      flags: reader.readUInt8(`relation column ${i} flags`),
      name: reader.readCString(`relation column ${i} name`),
      typeOid: reader.readUInt32(`relation column ${i} type OID`),
      typeModifier: reader.readInt32(`relation column ${i} type modifier`),
    });
  }
  return { tag: 'relation', relationOid, schema, table, replicaIdentity, columns };
}

function readReplicaIdentity(reader: BinaryReader): ReplicaIdentity {
  const offset = reader.offset;
  const byte = reader.readUInt8('relation replica identity');
  const setting = String.fromCharCode(byte);
  if (setting === 'd' || setting === 'f' || setting === 'i' || setting === 'n') return setting;
  throw new DecodeError(`unknown replica identity ${describeByte(byte)} at offset ${offset}`);
}

function decodeInsert(reader: BinaryReader): InsertMessage {
  const relationOid = reader.readUInt32('insert relation OID');
  expectByte(reader, 0x4e /* N */, 'insert new-tuple marker');
  return { tag: 'insert', relationOid, newTuple: readTuple(reader, 'insert new tuple') };
}

/** The old tuple is optional: the byte after the OID is 'K' or 'O' if one follows, else already 'N'. */
function decodeUpdate(reader: BinaryReader): UpdateMessage {
  const relationOid = reader.readUInt32('update relation OID');
  const markerOffset = reader.offset;
  const marker = reader.readUInt8('update tuple marker');
  if (marker === 0x4e /* N */) {
    return { tag: 'update', relationOid, oldKind: null, oldTuple: null, newTuple: readTuple(reader, 'update new tuple') };
  }
  const oldKind = oldKindOf(marker, markerOffset, 'update');
  const oldTuple = readTuple(reader, 'update old tuple');
  expectByte(reader, 0x4e /* N */, 'update new-tuple marker');
  return { tag: 'update', relationOid, oldKind, oldTuple, newTuple: readTuple(reader, 'update new tuple') };
}

function decodeDelete(reader: BinaryReader): DeleteMessage {
  const relationOid = reader.readUInt32('delete relation OID');
  const markerOffset = reader.offset;
  const oldKind = oldKindOf(reader.readUInt8('delete tuple marker'), markerOffset, 'delete');
  return { tag: 'delete', relationOid, oldKind, oldTuple: readTuple(reader, 'delete old tuple') };
}

function oldKindOf(marker: number, offset: number, context: string): 'K' | 'O' {
  if (marker === 0x4b /* K */) return 'K';
  if (marker === 0x4f /* O */) return 'O';
  throw new DecodeError(`unexpected ${context} tuple marker ${describeByte(marker)} at offset ${offset}`);
}

const TRUNCATE_CASCADE = 1;
const TRUNCATE_RESTART_IDENTITY = 2;

function decodeTruncate(reader: BinaryReader): TruncateMessage {
  const count = reader.readUInt32('truncate relation count');
  const optionsOffset = reader.offset;
  const options = reader.readUInt8('truncate options');
  // An unknown option would change what the TRUNCATE means; refuse it rather than apply it wrongly.
  if ((options & ~(TRUNCATE_CASCADE | TRUNCATE_RESTART_IDENTITY)) !== 0) {
    throw new DecodeError(`unknown truncate option bits ${options} at offset ${optionsOffset}`);
  }
  const relationOids: number[] = [];
  for (let i = 0; i < count; i++) relationOids.push(reader.readUInt32(`truncate relation OID ${i}`));
  return {
    tag: 'truncate',
    relationOids,
    cascade: (options & TRUNCATE_CASCADE) !== 0,
    restartIdentity: (options & TRUNCATE_RESTART_IDENTITY) !== 0,
  };
}

function decodeLogicalMessage(reader: BinaryReader): LogicalMessage {
  const flagsOffset = reader.offset;
  const flags = reader.readUInt8('logical message flags');
  if (flags !== 0 && flags !== 1) {
    throw new DecodeError(`unknown logical message flags ${flags} at offset ${flagsOffset}`);
  }
  const lsn = reader.readUInt64('logical message LSN');
  const prefix = reader.readCString('logical message prefix');
  const length = reader.readUInt32('logical message content length');
  const content = reader.readBytes(length, 'logical message content');
  return { tag: 'message', transactional: flags === 1, lsn, prefix, content };
}

/**
 * Text values go into the row's wire form as they are (see EncodedRow): no string is made here. Rows are
 * written into slabs that this writer owns, so they never point into the driver's buffer, which it reuses.
 */
const rowWriter = new EncodedRowWriter();

function readTuple(reader: BinaryReader, what: string): TupleData {
  const count = reader.readUInt16(`${what} column count`);
  // The texts cannot be longer than what is left of the message.
  rowWriter.begin(count, reader.remaining);
  // The hot loop of decoding: its reads carry fixed labels, and a failure gets the tuple and the column
  // added here, so that no message text is built for the millions of values that are fine.
  let i = 0;
  try {
    for (; i < count; i++) {
      const kindOffset = reader.offset;
      const kind = reader.readUInt8('kind');
      switch (kind) {
        case 0x6e /* n: SQL NULL */:
          rowWriter.nullValue();
          break;
        case 0x75 /* u: unchanged TOASTed value, not sent */:
          rowWriter.unchangedValue(i);
          break;
        case 0x74 /* t: text */: {
          const length = reader.readUInt32('length');
          const start = reader.skip(length, 'text');
          rowWriter.textValue(reader.buffer, start, start + length);
          break;
        }
        default:
          throw new DecodeError(`unsupported kind ${describeByte(kind)} at offset ${kindOffset}`);
      }
    }
  } catch (error) {
    if (error instanceof DecodeError) throw new DecodeError(`${what} column ${i}: ${error.message}`, { cause: error });
    throw error;
  }
  return rowWriter.finish();
}

function readTimestamp(reader: BinaryReader, what: string): bigint {
  return postgresToUnixMicros(reader.readInt64(what));
}

function expectByte(reader: BinaryReader, expected: number, what: string): void {
  const offset = reader.offset;
  const actual = reader.readUInt8(what);
  if (actual !== expected) {
    throw new DecodeError(`expected ${what} ${describeByte(expected)} but found ${describeByte(actual)} at offset ${offset}`);
  }
}

/** Both forms, since a tag may be printable ('S') or not (0x00), and either may be what someone greps for. */
function describeByte(byte: number): string {
  return `${JSON.stringify(String.fromCharCode(byte))} (${byte})`;
}
