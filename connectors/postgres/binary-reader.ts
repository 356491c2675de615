import { DecodeError } from '../../src/errors.ts';

/**
 * A forward-only cursor over a big-endian byte buffer, as PostgreSQL's wire formats use.
 *
 * Every read names what it is reading (the `what` argument) so that a malformed message yields a
 * DecodeError that says which field ran out and where, rather than a RangeError from Buffer.
 * Nothing but DecodeError ever leaves this class.
 */
export class BinaryReader {
  readonly #buffer: Buffer;
  #offset = 0;

  // fatal: a silently replaced character would be data corruption passed downstream as truth.
  // ignoreBOM: a leading U+FEFF is part of the value, not a marker to strip.
  static readonly #utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

  constructor(buffer: Buffer) {
    this.#buffer = buffer;
  }

  /** What is being read, for a caller that copies bytes out itself (after `skip`). */
  get buffer(): Buffer {
    return this.#buffer;
  }

  get offset(): number {
    return this.#offset;
  }

  get remaining(): number {
    return this.#buffer.length - this.#offset;
  }

  get atEnd(): boolean {
    return this.remaining === 0;
  }

  readUInt8(what = 'uint8'): number {
    return this.#buffer.readUInt8(this.#take(1, what));
  }

  readInt16(what = 'int16'): number {
    return this.#buffer.readInt16BE(this.#take(2, what));
  }

  readUInt16(what = 'uint16'): number {
    return this.#buffer.readUInt16BE(this.#take(2, what));
  }

  readInt32(what = 'int32'): number {
    return this.#buffer.readInt32BE(this.#take(4, what));
  }

  readUInt32(what = 'uint32'): number {
    return this.#buffer.readUInt32BE(this.#take(4, what));
  }

  readUInt64(what = 'uint64'): bigint {
    return this.#buffer.readBigUInt64BE(this.#take(8, what));
  }

  readInt64(what = 'int64'): bigint {
    return this.#buffer.readBigInt64BE(this.#take(8, what));
  }

  /** A NUL-terminated UTF-8 string; the terminator is consumed but not returned. */
  readCString(what = 'string'): string {
    const start = this.#offset;
    const nul = this.#buffer.indexOf(0, start);
    if (nul === -1) {
      throw new DecodeError(`no NUL terminator for ${what} starting at offset ${start} of ${this.#buffer.length}`);
    }
    const text = this.#decodeUtf8(start, nul, what);
    this.#offset = nul + 1;
    return text;
  }

  /** Advances past `length` bytes and returns where they start in `buffer`. */
  skip(length: number, what = 'bytes'): number {
    return this.#take(length, what);
  }

  /** A copy, because the pg driver reuses the buffer we were handed once we return. */
  readBytes(length: number, what = 'bytes'): Buffer {
    const start = this.#take(length, what);
    return Buffer.from(this.#buffer.subarray(start, start + length));
  }

  /** Advances past `length` bytes and returns where they start, or throws if they are not all there. */
  #take(length: number, what: string): number {
    const start = this.#offset;
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new DecodeError(`invalid length ${length} for ${what} at offset ${start}`);
    }
    if (length > this.remaining) {
      throw new DecodeError(
        `unexpected end of data reading ${what} (${length} bytes) at offset ${start}: only ${this.remaining} left`,
      );
    }
    this.#offset = start + length;
    return start;
  }

  /**
   * Names (relations, columns, types, origins, message prefixes); values never become strings here (see
   * EncodedRowWriter). Node's own slice decoder is the fast one, but it replaces invalid sequences with
   * U+FFFD instead of failing; invalid input always leaves a U+FFFD, so only a text that holds one (rare: a
   * real U+FFFD in the name, or invalid bytes) is checked again strictly.
   */
  #decodeUtf8(start: number, end: number, what: string): string {
    const text = this.#buffer.toString('utf8', start, end);
    if (!text.includes('\uFFFD')) return text;
    try {
      return BinaryReader.#utf8.decode(this.#buffer.subarray(start, end));
    } catch (cause) {
      throw new DecodeError(`invalid UTF-8 in ${what} at offset ${start}`, { cause });
    }
  }
}
