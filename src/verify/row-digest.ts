/**
 * Row values compared in Node, for `sitesync verify`: two rows read at two sites (of the same or of
 * different database kinds) are the same row when the canonical texts of their compared columns are the
 * same (docs/value-kinds.md), NULL apart from every text ('' and 'NULL' included).
 *
 * `differingColumns` is what the merge compares every row pair with (a few string comparisons per row).
 * `rowDigest` fingerprints a row that differs, so that a repair can later check that the row is still what
 * verify saw without verify keeping or printing its values. Hashing every row instead costs about fifty
 * times as much in Node (12 µs against 0.3 µs a row, measured on the project's machine) and says nothing
 * more: equal digests mean equal values.
 *
 * The digest hashes each value with a tag and its byte length before its bytes, so that NULL, '' and the
 * text 'NULL' all differ, and no two lists of values run together into the same bytes (['ab', 'c'] is not
 * ['a', 'bc']). It is never printed: values may be secret, and a short value can be found from its digest
 * by guessing.
 */
import { createHash } from 'node:crypto';
import type { RowImage } from '../events/transaction.ts';

/**
 * The digest of `row`'s values at `columns` (indexes into the row's relation), in that order. A column the
 * source did not send (an unchanged TOASTed value) has no value to compare: readers of existing rows send
 * every column, so such a row is a caller's error.
 *
 * Encoding: NULL is the byte 0; a value is the byte 1, its UTF-8 byte length in decimal, ':', its bytes.
 */
export function rowDigest(row: RowImage, columns: readonly number[]): string {
  const hash = createHash('sha256');
  if (row.unchanged.length > 0) {
    const missing = columns.find((i) => row.unchanged.includes(i));
    if (missing !== undefined) throw new Error(`column ${missing} of a row read for verify was not sent (unchanged TOAST); a table reader sends every column`);
  }
  for (const i of columns) {
    const value = row.values[i];
    if (value === null || value === undefined) hash.update('\u0000');
    else {
      hash.update(`\u0001${Buffer.byteLength(value, 'utf8')}:`);
      hash.update(value, 'utf8');
    }
  }
  return hash.digest('base64');
}

/**
 * The positions in `columns` (0-based, into the compared column list) whose values differ between two rows
 * (`aColumns[c]` of `a` against `bColumns[c]` of `b`): none when they are the same row's values.
 */
export function differingColumns(a: RowImage, aColumns: readonly number[], b: RowImage, bColumns: readonly number[]): number[] {
  const differing: number[] = [];
  for (let c = 0; c < aColumns.length; c++) {
    const x = a.values[aColumns[c]!] ?? null;
    const y = b.values[bColumns[c]!] ?? null;
    if (x !== y) differing.push(c);
  }
  return differing;
}
