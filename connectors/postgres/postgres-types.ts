/**
 * PostgreSQL's types as capture describes them: each column's native type (name, OID, typmod) and its
 * logical kind (src/events/value-kind.ts), computed from the catalog — a domain has its base type's kind,
 * an array `array<element kind>`, an enum `enum`, a composite `struct` — and cached per (type, typmod).
 *
 * The catalog is read whole when capture starts. pgoutput names every user type (OID >= 10000) in a Type
 * message before the first relation that uses it, so a type created while capture runs shows up as an OID
 * this catalog does not hold: the relation cannot be described, and capture restarts its stream (and reads
 * the catalog again) rather than publish a column of the wrong kind (`UnknownTypeError`).
 */
import { arrayKind, decimalKind, OTHER, simpleKind, type NativeType, type SimpleKindName, type ValueKind } from '../../src/events/value-kind.ts';

/** The pg_type columns the kinds are computed from. */
export interface PgTypeRow {
  readonly oid: number;
  /** Schema-qualified unless in pg_catalog: `int4`, `public.mood`. */
  readonly name: string;
  /** pg_type.typtype: b(ase), c(omposite), d(omain), e(num), p(seudo), r(ange), m(ultirange). */
  readonly typtype: string;
  /** pg_type.typcategory: 'A' for arrays. */
  readonly category: string;
  /** Element type of an array type, else 0. */
  readonly element: number;
  /** Base type of a domain, else 0; with the domain's own typmod. */
  readonly base: number;
  readonly baseModifier: number;
  /** In pg_catalog: a built-in type, whose name says its kind. */
  readonly builtin: boolean;
  /** pg_type.typdelim: what separates this type's values in an array of it (`,` for all but box). */
  readonly delimiter: string;
  /** Printed by array_out: a true array literal (int2vector and oidvector print `1 2`). */
  readonly trueArray: boolean;
}

/** The SQL that reads what PgTypeRow holds, for every type of the database. */
export const PG_TYPES_QUERY = `
  SELECT t.oid::int8 AS oid,
         CASE WHEN n.nspname = 'pg_catalog' THEN t.typname ELSE n.nspname || '.' || t.typname END AS name,
         t.typtype AS typtype, t.typcategory AS category, t.typelem::int8 AS element,
         t.typbasetype::int8 AS base, t.typtypmod AS "baseModifier", n.nspname = 'pg_catalog' AS builtin,
         t.typdelim AS delimiter, t.typoutput = 'array_out'::regproc AS "trueArray"
    FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace`;

/** pg_catalog base types with a neutral kind; every other base type is `other`. */
const BUILTIN_KINDS: Readonly<Record<string, SimpleKindName>> = {
  bool: 'boolean',
  int2: 'int16',
  int4: 'int32',
  int8: 'int64',
  float4: 'float32',
  float8: 'float64',
  text: 'string',
  varchar: 'string',
  bpchar: 'string',
  name: 'string',
  char: 'string',
  bytea: 'bytes',
  date: 'date',
  time: 'time',
  timestamp: 'timestamp',
  timestamptz: 'timestamptz',
  interval: 'interval',
  uuid: 'uuid',
  json: 'json',
  jsonb: 'json',
};
const NUMERIC = 'numeric';

/** A relation names a type this catalog does not hold (created since it was read): read it again. */
export class UnknownTypeError extends Error {
  constructor(readonly oid: number) {
    super(`type OID ${oid} is not in the catalog read at start (created since?); capture reads the catalog again`);
    this.name = 'UnknownTypeError';
  }
}

/** Deepest domain-over-domain or array-of-domain chain followed before giving up (a catalog cycle cannot happen, but input is input). */
const MAX_DEPTH = 32;

export class PostgresTypes {
  private readonly rows = new Map<number, PgTypeRow>();
  private readonly kinds = new Map<string, ValueKind>();
  /** Names of types pgoutput announced that the catalog read at start did not hold. */
  private readonly announced = new Map<number, string>();
  /**
   * Types found missing once. Kept across loads: a type still missing after the catalog was read again
   * was dropped since, and its columns are described as `other` rather than restarting for ever.
   */
  private readonly missing = new Set<number>();

  load(rows: readonly PgTypeRow[]): void {
    this.rows.clear();
    this.kinds.clear();
    for (const row of rows) this.rows.set(Number(row.oid), { ...row, oid: Number(row.oid), element: Number(row.element), base: Number(row.base) });
  }

  /** pgoutput's Type message: the name of a user type, which the catalog may not hold yet. */
  announce(oid: number, name: string): void {
    if (!this.rows.has(oid)) this.announced.set(oid, name);
  }

  has(oid: number): boolean {
    return this.rows.has(oid);
  }

  native(oid: number, modifier: number): NativeType {
    return { name: this.rows.get(oid)?.name ?? this.announced.get(oid) ?? `oid:${oid}`, id: oid, modifier };
  }

  /** The kind of a column of type `oid` with typmod `modifier`; throws UnknownTypeError for a type not read. */
  kind(oid: number, modifier: number): ValueKind {
    const key = `${oid}:${modifier}`;
    let kind = this.kinds.get(key);
    if (kind === undefined) {
      kind = this.compute(oid, modifier, 0);
      this.kinds.set(key, kind);
    }
    return kind;
  }

  private compute(oid: number, modifier: number, depth: number): ValueKind {
    const row = this.rows.get(oid);
    if (row === undefined) {
      if (this.missing.has(oid)) return OTHER;
      this.missing.add(oid);
      throw new UnknownTypeError(oid);
    }
    if (depth > MAX_DEPTH) return OTHER;
    switch (row.typtype) {
      case 'd':
        // A domain column's typmod is -1; the domain itself carries its base's (numeric(10,2) and the like).
        return this.compute(row.base, row.baseModifier, depth + 1);
      case 'e':
        return simpleKind('enum');
      case 'c':
        return simpleKind('struct');
      case 'b':
        // An array's typmod is its element's (numeric(10,2)[]). Only true arrays whose elements PostgreSQL
        // separates with commas print as array literals: int2vector and oidvector print `1 2`, box[]
        // separates with `;`; they have no neutral form.
        if (row.category === 'A' && row.element !== 0) {
          const element = this.rows.get(row.element);
          if (!row.trueArray || (element !== undefined && element.delimiter !== ',')) return OTHER;
          return arrayKind(this.compute(row.element, modifier, depth + 1));
        }
        if (!row.builtin) return OTHER;
        if (row.name === NUMERIC) return numericKind(modifier);
        return BUILTIN_KINDS[row.name] === undefined ? OTHER : simpleKind(BUILTIN_KINDS[row.name]!);
      default:
        return OTHER;
    }
  }
}

/** numeric's typmod: ((precision << 16) | (scale & 0x7ff)) + 4, scale signed 11 bits (PostgreSQL 15 allows negative scales). */
function numericKind(modifier: number): ValueKind {
  if (modifier < 4) return decimalKind(null, null);
  const packed = modifier - 4;
  const precision = (packed >> 16) & 0xffff;
  const scale = ((packed & 0x7ff) ^ 1024) - 1024;
  return decimalKind(precision, scale);
}
