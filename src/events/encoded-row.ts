/**
 * A row image kept in its wire form: the bytes of the Avro `RowImage` record (schemas/, an array of
 * `null|string` then an array of `int`), exactly as avsc would write them.
 *
 * Why: a value's text goes from the source's log to the target's COPY unchanged, and turning it into a
 * JavaScript string on the way, twice (capture decodes, apply decodes again), was a third of each process's
 * time with the garbage it made. So capture writes pgoutput's value bytes straight into this form
 * (EncodedRowWriter), the message encoder copies it as it is, the decoder hands out a view of the message
 * body, and the PostgreSQL sink copies the bytes into COPY. `values` and `unchanged` are still there for
 * everything else (conflict checks, statements, subscribers): decoded on first use, then kept.
 */
import { isUtf8 } from 'node:buffer';
import { inspect } from 'node:util';
import { DecodeError } from '../errors.ts';
import type { RowImage } from './transaction.ts';

const NO_COLUMNS: readonly number[] = Object.freeze([]);
const EMPTY: Buffer = Buffer.alloc(0);

export class EncodedRow implements RowImage {
  #values: (string | null)[] | undefined;
  #spans: Int32Array | undefined;

  constructor(
    /** Holds the encoding at [start, end); shared with other rows (a capture slab, a message body). */
    readonly buffer: Buffer,
    readonly start: number,
    readonly end: number,
    /** How many values the row has. */
    readonly columnCount: number,
    /** Where each value's bytes are in `buffer`: [start, end) pairs, start -1 for null; found when first asked. */
    spans: Int32Array | undefined,
    /** Unchanged TOASTed columns: decoded eagerly, since there are seldom any. */
    readonly unchanged: readonly number[],
  ) {
    this.#spans = spans;
  }

  /**
   * Reads one encoded row at `start` of `buffer`; throws RowOverrun when it runs past `limit`. The row's
   * structure is checked here, once; where its values are is found again when asked (`spans`, or
   * `scanSpans` for COPY), because keeping them cost an array per row: reading rows so was a sixth of the
   * applying process's busy time under the profiler, the scan that replaced it a twenty-fifth.
   */
  static read(buffer: Buffer, start: number, limit = buffer.length): EncodedRow {
    scan(buffer, start, limit);
    return new EncodedRow(buffer, start, scanned.end, scanned.count, undefined, scanned.unchanged);
  }

  /** Encodes a row image given as values (for rows that did not come from a source's bytes). */
  static of(row: RowImage): EncodedRow {
    if (row instanceof EncodedRow) return row;
    const texts = row.values.map((v) => (v === null ? null : Buffer.from(v, 'utf8')));
    const writer = new EncodedRowWriter();
    writer.begin(texts.length, texts.reduce((n, t) => n + (t?.length ?? 0), 0));
    const unchanged = new Set(row.unchanged);
    texts.forEach((text, i) => {
      if (unchanged.has(i)) writer.unchangedValue(i);
      else if (text === null) writer.nullValue();
      else writer.textValue(text, 0, text.length);
    });
    return writer.finish();
  }

  get byteLength(): number {
    return this.end - this.start;
  }

  /** [start, end) of each value's UTF-8 bytes in `buffer`, start -1 for SQL NULL and unchanged values. */
  get spans(): Int32Array {
    this.#spans ??= this.scanSpans().slice(0, 2 * this.columnCount);
    return this.#spans;
  }

  /**
   * The same as `spans`, in an array that is not the row's own: the next scan of any row overwrites it.
   * For a caller that uses them at once and keeps nothing (COPY's text), so a row read costs no array.
   */
  scanSpans(): Int32Array {
    return this.#spans ?? scan(this.buffer, this.start, this.end);
  }

  get values(): readonly (string | null)[] {
    if (this.#values === undefined) {
      const spans = this.spans;
      const values = new Array<string | null>(this.columnCount);
      for (let i = 0; i < this.columnCount; i++) {
        const from = spans[2 * i]!;
        if (from < 0) {
          values[i] = null;
          continue;
        }
        const to = spans[2 * i + 1]!;
        const text = this.buffer.toString('utf8', from, to);
        // Node's decoder turns invalid bytes into U+FFFD, which would be stored as if it were the value:
        // a text holding one (rare) is checked strictly, as capture checks every value and COPY does.
        if (text.includes('\uFFFD') && !isUtf8(this.buffer.subarray(from, to))) {
          throw new DecodeError(`a row image's value ${i} is not valid UTF-8 (bytes ${from} to ${to} of its message)`);
        }
        values[i] = text;
      }
      this.#values = values;
    }
    return this.#values;
  }

  /** JSON, logs and `util.inspect` show the row, not its bytes. */
  toJSON(): RowImage {
    return { values: this.values, unchanged: this.unchanged };
  }

  [inspect.custom](_depth: number, options: object): string {
    return inspect(this.toJSON(), options);
  }
}

/** An encoded row's values run past the end of what holds them: a truncated or corrupt body. */
export class RowOverrun extends DecodeError {
  constructor(
    readonly at: number,
    readonly count: number,
    readonly remaining: number,
  ) {
    super(`a row image at byte ${at} claims ${count} items, only ${remaining} bytes remain`);
  }
}

/**
 * What the last `scan` found. Module state rather than an object per row: rows are scanned one at a
 * time, synchronously, a million of them in the drain benchmark.
 */
const scanned = { end: 0, count: 0, unchanged: NO_COLUMNS as readonly number[] };
/** The spans of the last scan: grown when a row has more values than any before it, up to a bound. */
let scratch = new Int32Array(64);
/** Room for the most columns a PostgreSQL table has (1,600): a corrupt count beyond it is not kept. */
const MOST_KEPT_SPANS = 2 * 2048;

/**
 * Walks the row at `start`: checks its structure, sets `scanned`, and writes where each value is into
 * `scratch`, which it returns (only its first 2 × `scanned.count` entries are the row's).
 */
function scan(buffer: Buffer, start: number, limit: number): Int32Array {
  const cursor = CURSOR.reset(buffer, start, limit);
  let spans = scratch;
  let count = 0;
  for (let block = cursor.blockCount(); block !== 0; block = cursor.blockCount()) {
    if (spans.length < 2 * (count + block)) {
      // Every value takes at least a byte: a count beyond what is left is a corrupt body, not a big row.
      if (block > limit - cursor.pos) throw new RowOverrun(cursor.pos, block, limit - cursor.pos);
      const grown = new Int32Array(Math.max(2 * spans.length, 2 * (count + block)));
      grown.set(spans.subarray(0, 2 * count));
      spans = grown;
      if (grown.length <= MOST_KEPT_SPANS) scratch = grown;
    }
    for (let i = 0; i < block; i++, count++) {
      const branch = cursor.varint();
      if (branch === 0) {
        spans[2 * count] = -1;
        spans[2 * count + 1] = -1;
      } else if (branch === 2) {
        const length = cursor.varint() / 2;
        if (!Number.isInteger(length)) throw new DecodeError(`a row value at byte ${cursor.pos} has a negative length`);
        spans[2 * count] = cursor.pos;
        cursor.skip(length);
        spans[2 * count + 1] = cursor.pos;
      } else {
        throw new DecodeError(`a row value at byte ${cursor.pos} has union branch ${branch / 2}; only 0 (null) and 1 (string) exist`);
      }
    }
  }
  let unchanged: number[] | undefined;
  for (let block = cursor.blockCount(); block !== 0; block = cursor.blockCount()) {
    unchanged ??= [];
    for (let i = 0; i < block; i++) {
      const zigzag = cursor.varint();
      unchanged.push(zigzag % 2 === 0 ? zigzag / 2 : -(zigzag + 1) / 2);
    }
  }
  scanned.end = cursor.pos;
  scanned.count = count;
  scanned.unchanged = unchanged ?? NO_COLUMNS;
  cursor.reset(EMPTY, 0, 0); // holds no message body until the next scan
  return spans;
}

/** Avro's zig-zag varints and block counts, read with bounds checks. */
class Cursor {
  private buffer: Buffer = EMPTY;
  pos = 0;
  private limit = 0;

  reset(buffer: Buffer, pos: number, limit: number): this {
    this.buffer = buffer;
    this.pos = pos;
    this.limit = limit;
    return this;
  }

  /** A non-negative varint as it stands (callers undo the zig-zag); lengths and counts fit in 2^35. */
  varint(): number {
    let result = 0;
    let scale = 1;
    for (let shift = 0; shift < 35; shift += 7) {
      if (this.pos >= this.limit) throw new RowOverrun(this.pos, 1, 0);
      const byte = this.buffer[this.pos++]!;
      result += (byte & 0x7f) * scale;
      if ((byte & 0x80) === 0) return result;
      scale *= 128;
    }
    throw new DecodeError(`a varint at byte ${this.pos} is longer than any length sitesync writes`);
  }

  /** The item count of the next array block, 0 at the end; a negative count is followed by the block's size. */
  blockCount(): number {
    const zigzag = this.varint();
    if (zigzag % 2 === 0) return zigzag / 2;
    this.varint(); // the block's size in bytes, which a reader may use to skip it
    return (zigzag + 1) / 2;
  }

  skip(length: number): void {
    if (length > this.limit - this.pos) throw new RowOverrun(this.pos, length, this.limit - this.pos);
    this.pos += length;
  }
}

/** The one cursor `scan` uses (rows are scanned one at a time): no object per row. */
const CURSOR = new Cursor();

/** Capture slabs: rows are written into one until it is full, so a row costs no allocation of its own. */
const SLAB_BYTES = 64 * 1024;

/**
 * Writes rows into the encoded form, value by value, from bytes a source hands over. Decoding is
 * synchronous, so one writer serves a whole process; `begin` reserves the room the row may need, so the
 * writes check nothing.
 */
export class EncodedRowWriter {
  private slab = Buffer.allocUnsafeSlow(0);
  private pos = 0;
  private rowStart = 0;
  private count = 0;
  private written = 0;
  private unchanged: number[] | null = null;

  /** Starts a row of `count` values whose texts total at most `textBytes` bytes. */
  begin(count: number, textBytes: number): void {
    // The count, then per value a branch and a length (1 + 5), the texts and the end of the values; then
    // `unchanged`: its count, at most an index per value, and its end.
    const room = 5 + 6 * count + textBytes + 1 + 5 + 5 * count + 1;
    if (this.slab.length - this.pos < room) {
      this.slab = Buffer.allocUnsafeSlow(Math.max(SLAB_BYTES, room));
      this.pos = 0;
    }
    this.rowStart = this.pos;
    // Avro writes an array as blocks: a count and its items, then a count of 0. An empty array is the 0 alone.
    if (count > 0) this.pos = writeVarint(this.slab, this.pos, 2 * count);
    this.count = count;
    this.written = 0;
    this.unchanged = null;
  }

  nullValue(): void {
    this.slab[this.pos++] = 0;
    this.written++;
  }

  /** An unchanged TOASTed value: null on the wire, and its index in `unchanged`. */
  unchangedValue(index: number): void {
    (this.unchanged ??= []).push(index);
    this.nullValue();
  }

  /** A text value from `source[start, end)`; throws DecodeError unless it is valid UTF-8 (offsets are the source's). */
  textValue(source: Buffer, start: number, end: number): void {
    const slab = this.slab;
    slab[this.pos++] = 2; // the union's branch 1, string, zig-zag encoded
    this.pos = writeVarint(slab, this.pos, 2 * (end - start));
    if (end - start > 64) {
      source.copy(slab, this.pos, start, end);
      if (!isUtf8(slab.subarray(this.pos, this.pos + end - start))) throw new DecodeError(`invalid UTF-8 in text at offset ${start}`);
      this.pos += end - start;
    } else {
      // Short values, the common case: a loop beats a native call, and it sees whether any byte is not ASCII.
      let high = 0;
      let at = this.pos;
      for (let i = start; i < end; i++) {
        const byte = source[i]!;
        high |= byte;
        slab[at++] = byte;
      }
      if (high & 0x80 && !isUtf8(slab.subarray(this.pos, at))) throw new DecodeError(`invalid UTF-8 in text at offset ${start}`);
      this.pos = at;
    }
    this.written++;
  }

  finish(): EncodedRow {
    if (this.written !== this.count) throw new Error(`EncodedRowWriter: ${this.written} values written for a row of ${this.count}`);
    const slab = this.slab;
    slab[this.pos++] = 0; // end of the values
    const unchanged = this.unchanged ?? NO_COLUMNS;
    if (unchanged.length > 0) {
      this.pos = writeVarint(slab, this.pos, 2 * unchanged.length);
      for (const index of unchanged) this.pos = writeVarint(slab, this.pos, 2 * index);
    }
    slab[this.pos++] = 0; // end of `unchanged`
    return new EncodedRow(slab, this.rowStart, this.pos, this.count, undefined, unchanged);
  }
}

/** A non-negative number as an Avro varint (the caller zig-zags it: 2n for n ≥ 0). */
function writeVarint(buffer: Buffer, at: number, value: number): number {
  while (value >= 0x80) {
    buffer[at++] = (value & 0x7f) | 0x80;
    value = Math.floor(value / 128);
  }
  buffer[at++] = value;
  return at;
}

/** Bytes a row image takes in a message, near enough: what memory bounds and batch sizes count. */
export function rowImageBytes(row: RowImage): number {
  if (row instanceof EncodedRow) return row.byteLength;
  let bytes = 2;
  for (const v of row.values) bytes += v === null ? 1 : v.length + 2;
  return bytes;
}
