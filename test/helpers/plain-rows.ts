import { EncodedRow } from '../../src/events/encoded-row.ts';

/**
 * A copy of `value` with every EncodedRow replaced by the plain `{ values, unchanged }` it stands for, so
 * that deepEqual compares rows by what they hold, not by how they are kept. Other objects keep their
 * prototype (deepStrictEqual compares it); Buffers, bigints and the like are left as they are.
 */
export function plainRows<T>(value: T): T {
  if (value instanceof EncodedRow) return { values: [...value.values], unchanged: [...value.unchanged] } as T;
  if (Array.isArray(value)) return value.map(plainRows) as T;
  if (value === null || typeof value !== 'object' || Buffer.isBuffer(value)) return value;
  const proto = Object.getPrototypeOf(value) as object | null;
  if (proto !== Object.prototype && proto !== null) return value;
  const copy = Object.create(proto) as Record<string, unknown>;
  for (const [key, v] of Object.entries(value)) copy[key] = plainRows(v);
  return copy as T;
}
