/**
 * Logical kinds: what a column's values are, in terms every database and consumer understands, beside the
 * native type the source gave them (`ColumnInfo.native`). Values travel as text, in one canonical form per
 * kind (docs/value-kinds.md states each, and `value-parser.ts` reads them): a sink of the source's own kind
 * binds the text as it came (PostgreSQL to PostgreSQL is byte-for-byte what the source printed), a sink or
 * consumer of another kind parses by kind and refuses what its database cannot hold.
 *
 * On the wire a kind is a short string (`int64`, `decimal(12,2)`, `array<timestamptz>`), written once per
 * column of each relation of a message; `parseKind` reads it back and caches what it read, since every
 * message repeats the same few.
 */

/** Kinds without parameters. */
export const SIMPLE_KINDS = [
  'boolean',
  'int16',
  'int32',
  'int64',
  'float32',
  'float64',
  'string',
  'bytes',
  'date',
  'time',
  'timestamp',
  'timestamptz',
  'interval',
  'uuid',
  'json',
  'enum',
  'struct',
  'other',
] as const;

export type SimpleKindName = (typeof SIMPLE_KINDS)[number];

export type ValueKind =
  | { readonly kind: SimpleKindName }
  /** Exact decimal; precision and scale as declared (null: unconstrained, like a bare `numeric`). */
  | { readonly kind: 'decimal'; readonly precision: number | null; readonly scale: number | null }
  /** Array of any dimensions whose elements are of `element` (never itself an array). */
  | { readonly kind: 'array'; readonly element: ValueKind };

export type ValueKindName = ValueKind['kind'];

const SIMPLE = new Set<string>(SIMPLE_KINDS);
const cache = new Map<string, ValueKind>();
/** Bound on the cache: wire input is untrusted, and a hostile stream could name endless distinct kinds. */
const CACHE_LIMIT = 1024;

/** The one instance of each simple kind, so kinds compare by identity where that is handy. */
const simpleKinds = new Map<string, ValueKind>(SIMPLE_KINDS.map((name) => [name, Object.freeze({ kind: name })]));

export function simpleKind(name: SimpleKindName): ValueKind {
  return simpleKinds.get(name)!;
}

export function decimalKind(precision: number | null, scale: number | null): ValueKind {
  return { kind: 'decimal', precision, scale };
}

export function arrayKind(element: ValueKind): ValueKind {
  if (element.kind === 'array') return element; // arrays of arrays are multi-dimensional arrays
  return { kind: 'array', element };
}

export const OTHER: ValueKind = simpleKind('other');

/** Wire forms already written, by kind object: every message writes its relations' kinds again. */
const formatted = new WeakMap<ValueKind, string>();

/** The wire form: `int32`, `decimal`, `decimal(10)`, `decimal(10,2)`, `array<uuid>`. */
export function formatKind(kind: ValueKind): string {
  let wire = formatted.get(kind);
  if (wire === undefined) formatted.set(kind, (wire = formatUncached(kind)));
  return wire;
}

function formatUncached(kind: ValueKind): string {
  switch (kind.kind) {
    case 'decimal':
      if (kind.precision === null) return 'decimal';
      return kind.scale === null ? `decimal(${kind.precision})` : `decimal(${kind.precision},${kind.scale})`;
    case 'array':
      return `array<${formatUncached(kind.element)}>`;
    default:
      return kind.kind;
  }
}

const DECIMAL = /^decimal(?:\(([1-9][0-9]{0,4})(?:,(-?[0-9]{1,5}))?\))?$/;

/** Reads a kind's wire form; throws a one-line Error naming what is wrong (callers wrap it). */
export function parseKind(text: string): ValueKind {
  const cached = cache.get(text);
  if (cached !== undefined) return cached;
  const kind = parseUncached(text);
  if (cache.size >= CACHE_LIMIT) cache.clear();
  cache.set(text, kind);
  return kind;
}

function parseUncached(text: string): ValueKind {
  const simple = simpleKinds.get(text);
  if (simple !== undefined) return simple;
  if (text.startsWith('array<') && text.endsWith('>')) {
    const element = parseUncached(text.slice(6, -1));
    if (element.kind === 'array') throw new Error(`kind ${JSON.stringify(text)} nests arrays; a multi-dimensional array is array<element>`);
    return arrayKind(element);
  }
  const m = DECIMAL.exec(text);
  if (m) {
    return decimalKind(m[1] === undefined ? null : Number(m[1]), m[2] === undefined ? null : Number(m[2]));
  }
  const shown = text.length > 40 ? `${text.slice(0, 40)}…` : text;
  throw new Error(`unknown value kind ${JSON.stringify(shown)} (known: ${[...SIMPLE].join(', ')}, decimal(p,s), array<kind>)`);
}

/** A column's type in its own database's terms: what a sink of the same kind reads, and people debugging. */
export interface NativeType {
  /** The database's name for it, schema-qualified for user types: `int4`, `numeric`, `_text`, `public.mood`, `varchar`. */
  readonly name: string;
  /** The database's id for it (PostgreSQL type OID, MariaDB column type code, …); 0 where there is none. */
  readonly id: number;
  /** Modifier as the database states it (PostgreSQL typmod: precision, length…); -1 when none. */
  readonly modifier: number;
}
