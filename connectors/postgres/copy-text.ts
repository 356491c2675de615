/**
 * Rows in COPY's text format (https://www.postgresql.org/docs/15/sql-copy.html, "Text Format"): values
 * separated by tabs, rows ended by a newline, SQL NULL as \N, and backslash, tab, newline and carriage
 * return escaped with a backslash. Values are the source's text forms, which PostgreSQL reads with each
 * column type's own input function, as it would a parameter: lossless for every type.
 *
 * An EncodedRow's value bytes are copied as they are, with no string made on the way; PostgreSQL checks
 * their encoding as it reads them. Other rows' values are encoded here.
 */
import { EncodedRow } from '../../src/events/encoded-row.ts';
import type { RowImage } from '../../src/events/transaction.ts';

const TAB = 0x09;
const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;
const BACKSLASH = 0x5c;

/** The bytes COPY … FROM STDIN reads for `rows`, every column of each, in order. */
export function copyText(rows: readonly RowImage[]): Buffer {
  const out = new CopyTextWriter(rows.reduce((n, row) => n + estimate(row), 0));
  for (const row of rows) out.row(row);
  return out.finish();
}

function estimate(row: RowImage): number {
  return row instanceof EncodedRow ? row.byteLength + 8 : 64;
}

class CopyTextWriter {
  private buffer: Buffer;
  private at = 0;

  constructor(expectedBytes: number) {
    this.buffer = Buffer.allocUnsafe(Math.max(256, expectedBytes));
  }

  row(row: RowImage): void {
    if (row instanceof EncodedRow) this.encodedRow(row);
    else this.plainRow(row.values);
    this.room(1);
    this.buffer[this.at++] = NEWLINE;
  }

  finish(): Buffer {
    return this.buffer.subarray(0, this.at);
  }

  private encodedRow(row: EncodedRow): void {
    const spans = row.scanSpans(); // overwritten by the next row's scan: used here and dropped
    const source = row.buffer;
    for (let i = 0; i < row.columnCount; i++) {
      const start = spans[2 * i]!;
      const end = spans[2 * i + 1]!;
      // Room for the worst case: every byte escaped, plus the separator or \N.
      this.room(2 * (end - start) + 3);
      const buffer = this.buffer;
      if (i > 0) buffer[this.at++] = TAB;
      if (start < 0) {
        buffer[this.at++] = BACKSLASH;
        buffer[this.at++] = 0x4e; // N
        continue;
      }
      let at = this.at;
      for (let j = start; j < end; j++) {
        const byte = source[j]!;
        if (byte === BACKSLASH || (byte <= CARRIAGE_RETURN && (byte === TAB || byte === NEWLINE || byte === CARRIAGE_RETURN))) {
          buffer[at++] = BACKSLASH;
          buffer[at++] = byte === BACKSLASH ? BACKSLASH : byte === TAB ? 0x74 /* t */ : byte === NEWLINE ? 0x6e /* n */ : 0x72 /* r */;
        } else {
          buffer[at++] = byte;
        }
      }
      this.at = at;
    }
  }

  private plainRow(values: readonly (string | null)[]): void {
    values.forEach((value, i) => {
      const text = value === null ? '\\N' : escape(value);
      this.room(3 * text.length + 1);
      if (i > 0) this.buffer[this.at++] = TAB;
      this.at += this.buffer.write(text, this.at, 'utf8');
    });
  }

  /** Makes sure `bytes` more fit, doubling the buffer when they do not. */
  private room(bytes: number): void {
    if (this.at + bytes <= this.buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.max(2 * this.buffer.length, this.at + bytes));
    this.buffer.copy(grown, 0, 0, this.at);
    this.buffer = grown;
  }
}

const ESCAPES: Readonly<Record<string, string>> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };

function escape(value: string): string {
  return /[\\\t\n\r]/.test(value) ? value.replace(/[\\\t\n\r]/g, (c) => ESCAPES[c]!) : value;
}
