import {
  unixToPostgresMicros,
  type PgOutputMessage,
  type RelationMessage,
  type TupleData,
  type UpdateMessage,
} from '../../connectors/postgres/pgoutput-messages.ts';

/**
 * Encodes a PgOutputMessage as pgoutput protocol v1 bytes: the inverse of decodePgOutput, for tests
 * that need realistic payloads without a running PostgreSQL. Throws on messages that no server could
 * send (a key column marked unchanged but holding a value, an old tuple without its kind).
 */
export function encodePgOutput(message: PgOutputMessage): Buffer {
  const out = new ByteWriter();
  switch (message.tag) {
    case 'begin':
      out.char('B').uint64(message.finalLsn).int64(unixToPostgresMicros(message.commitTimeMicros)).uint32(message.xid);
      break;
    case 'commit':
      out
        .char('C')
        .uint8(message.flags)
        .uint64(message.commitLsn)
        .uint64(message.endLsn)
        .int64(unixToPostgresMicros(message.commitTimeMicros));
      break;
    case 'origin':
      out.char('O').uint64(message.originLsn).cstring(message.name);
      break;
    case 'relation':
      writeRelation(out, message);
      break;
    case 'type':
      out.char('Y').uint32(message.typeOid).cstring(message.schema).cstring(message.name);
      break;
    case 'insert':
      out.char('I').uint32(message.relationOid).char('N');
      writeTuple(out, message.newTuple);
      break;
    case 'update':
      writeUpdate(out, message);
      break;
    case 'delete':
      out.char('D').uint32(message.relationOid).char(message.oldKind);
      writeTuple(out, message.oldTuple);
      break;
    case 'truncate':
      out
        .char('T')
        .uint32(message.relationOids.length)
        .uint8((message.cascade ? 1 : 0) | (message.restartIdentity ? 2 : 0));
      for (const oid of message.relationOids) out.uint32(oid);
      break;
    case 'message':
      out
        .char('M')
        .uint8(message.transactional ? 1 : 0)
        .uint64(message.lsn)
        .cstring(message.prefix)
        .uint32(message.content.length)
        .bytes(message.content);
      break;
  }
  return out.toBuffer();
}

function writeRelation(out: ByteWriter, message: RelationMessage): void {
  out.char('R').uint32(message.relationOid).cstring(message.schema).cstring(message.table).char(message.replicaIdentity);
  out.uint16(message.columns.length);
  for (const column of message.columns) {
    out.uint8(column.flags).cstring(column.name).uint32(column.typeOid).int32(column.typeModifier);
  }
}

function writeUpdate(out: ByteWriter, message: UpdateMessage): void {
  out.char('U').uint32(message.relationOid);
  if (message.oldKind !== null || message.oldTuple !== null) {
    if (message.oldKind === null || message.oldTuple === null) {
      throw new Error('an update has both an old tuple and its kind, or neither');
    }
    out.char(message.oldKind);
    writeTuple(out, message.oldTuple);
  }
  out.char('N');
  writeTuple(out, message.newTuple);
}

function writeTuple(out: ByteWriter, tuple: TupleData): void {
  out.uint16(tuple.values.length);
  tuple.values.forEach((value, index) => {
    if (tuple.unchanged.includes(index)) {
      if (value !== null) throw new Error(`column ${index} is marked unchanged but has a value`);
      out.char('u');
    } else if (value === null) {
      out.char('n');
    } else {
      const text = Buffer.from(value, 'utf8');
      out.char('t').uint32(text.length).bytes(text);
    }
  });
}

/** Big-endian writes into a list of small buffers, joined once at the end. */
class ByteWriter {
  readonly #chunks: Buffer[] = [];

  char(c: string): this {
    return this.uint8(c.charCodeAt(0));
  }

  uint8(value: number): this {
    return this.#push(1, (b) => b.writeUInt8(value));
  }

  uint16(value: number): this {
    return this.#push(2, (b) => b.writeUInt16BE(value));
  }

  int32(value: number): this {
    return this.#push(4, (b) => b.writeInt32BE(value));
  }

  uint32(value: number): this {
    return this.#push(4, (b) => b.writeUInt32BE(value));
  }

  uint64(value: bigint): this {
    return this.#push(8, (b) => b.writeBigUInt64BE(value));
  }

  int64(value: bigint): this {
    return this.#push(8, (b) => b.writeBigInt64BE(value));
  }

  cstring(value: string): this {
    if (value.includes('\0')) throw new Error(`a NUL-terminated string cannot contain NUL: ${JSON.stringify(value)}`);
    return this.bytes(Buffer.from(value, 'utf8')).uint8(0);
  }

  bytes(value: Uint8Array): this {
    this.#chunks.push(Buffer.from(value));
    return this;
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.#chunks);
  }

  #push(size: number, write: (buffer: Buffer) => void): this {
    const buffer = Buffer.alloc(size);
    write(buffer);
    this.#chunks.push(buffer);
    return this;
  }
}
