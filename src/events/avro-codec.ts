/**
 * The wire form of a ChangeMessage: Avro, with the schemas in `schemas/change-message.vN.avsc`.
 *
 * A message writes each relation once, in `relations`, and its changes refer to them by index; reading
 * rebuilds one shared RelationInfo per relation. Writing always uses CURRENT_SCHEMA_VERSION; reading
 * resolves the writer's version (from the AMQP header `sitesync-schema-version`) to the current schema.
 *
 * This is on the hot path of both capture and apply, so: the avsc types and resolvers are built once, at
 * module load; `null|x` unions are plain values (avsc's unwrapped unions); row images in their wire form
 * (EncodedRow) are copied in and read out as views of the body, never as strings; encoding writes once into
 * a reused scratch buffer; bigint <-> number happens only here.
 *
 * decodeMessage throws DecodeError and nothing else. encodeMessage throws SitesyncError
 * SITESYNC_ERR_MESSAGE_INVALID for a message the model forbids (so nothing unreadable is ever published).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import avro from 'avsc';
import type { Type } from 'avsc';
import { DecodeError, SitesyncError } from '../errors.ts';
import { EncodedRow, RowOverrun } from './encoded-row.ts';
import { POSITION_PATTERN, SITE_NAME_PATTERN, SNAPSHOT_ID_PATTERN, SOURCE_KIND_PATTERN, transactionId } from './transaction.ts';
import { formatKind, parseKind, type ValueKind } from './value-kind.ts';
import type {
  Change,
  ChangeMessage,
  ColumnInfo,
  RelationInfo,
  RowImage,
  RowWriter,
  SourceKind,
  Transaction,
  TransactionPart,
} from './transaction.ts';

/** The schema version this code writes. Readers know it and every older version in `schemas/`. */
export const CURRENT_SCHEMA_VERSION: number = 5;

/** schemas/ at the package root: two levels up from src/events/, one from the bundle in dist/. */
const SCHEMA_DIR = [new URL('../../schemas/', import.meta.url), new URL('../schemas/', import.meta.url)].find((dir) => existsSync(dir))
  ?? new URL('../../schemas/', import.meta.url);
const SCHEMA_FILE = /^change-message\.v([1-9][0-9]*)\.avsc$/;

/**
 * Commit times travel as an Avro long, which avsc handles as a JS number: exact up to 2^53 - 2 µs (the
 * year 2255; avsc refuses more when reading), but for negative values only down to -2^52 µs (the year
 * 1827: beyond it avsc's zig-zag arithmetic silently loses the low bit, and it never reads one back).
 * Writing checks both ends.
 */
const MAX_EXACT_MICROS = 9_007_199_254_740_990n;
const MIN_EXACT_MICROS = -4_503_599_627_370_496n;

// ---------------------------------------------------------------------------------------------------
// Wire shapes (what avsc reads and writes with the current schema)
// ---------------------------------------------------------------------------------------------------

type WireOp = 'INSERT' | 'UPDATE' | 'DELETE' | 'TRUNCATE' | 'MESSAGE' | 'READ';

interface WireColumn {
  readonly name: string;
  /** The native type: name, id (its 32 bits as a signed int) and modifier. */
  readonly type: string;
  readonly typeOid: number;
  readonly typeModifier: number;
  readonly key: boolean;
  /** The logical kind's wire form (value-kind.ts). */
  readonly kind: string;
}

interface WireRelation {
  readonly schema: string;
  readonly table: string;
  readonly replicaIdentity: string;
  readonly columns: readonly WireColumn[];
}

interface WireChange {
  readonly op: WireOp;
  readonly relation: number | null;
  readonly relations: readonly number[] | null;
  readonly oldRow: RowImage | null;
  readonly newRow: RowImage | null;
  readonly cascade: boolean | null;
  readonly restartIdentity: boolean | null;
  readonly prefix: string | null;
  readonly content: Buffer | null;
  /** READ only (version 5): who last wrote the row at the source; null when unknown and for every other op. */
  readonly writer: WireRowWriter | null;
}

interface WireRowWriter {
  readonly site: string;
  readonly commitTimeMicros: number;
}

interface WireTransaction {
  readonly id: string;
  readonly site: string;
  readonly position: string;
  readonly commitTimeMicros: number;
  readonly sourceTxId: string;
  readonly seen: readonly { readonly site: string; readonly commitTimeMicros: number }[];
  readonly changes: readonly WireChange[];
  readonly snapshot: WireSnapshotTag | null;
}

interface WireSnapshotTag {
  readonly id: string;
  readonly table: string;
  readonly chunk: number;
  readonly last: boolean;
  readonly targets: readonly string[] | null;
}

interface WireMessage {
  readonly site: string;
  readonly sourceKind: string;
  readonly previous: string | null;
  readonly relations: readonly WireRelation[];
  readonly transactions: readonly WireTransaction[];
  readonly part: TransactionPart | null;
}

// Records keyed by the model's unions, so that widening a union in transaction.ts fails to compile here.
const REPLICA_IDENTITIES: Record<RelationInfo['replicaIdentity'], true> = { d: true, f: true, i: true, n: true };

// ---------------------------------------------------------------------------------------------------
// Schemas, loaded once
// ---------------------------------------------------------------------------------------------------

type Resolver = ReturnType<Type['createResolver']>;
type AvroSchema = Parameters<typeof avro.Type.forSchema>[0];

/** The parts of avsc's internals the array guard below relies on (avsc 5.7). */
interface AvscTap {
  buf: Buffer;
  pos: number;
  readLong(): number;
  skipLong(): void;
}
interface AvscReader {
  readonly itemsType: { _read(tap: AvscTap): unknown };
}
interface AvscTypeInternals {
  readonly typeName: string;
  readonly fields?: readonly { readonly type: AvscTypeInternals }[];
  readonly itemsType?: AvscTypeInternals;
  readonly valuesType?: AvscTypeInternals;
  readonly types?: readonly AvscTypeInternals[];
  readonly underlyingType?: AvscTypeInternals;
  readonly _read: (this: AvscReader, tap: AvscTap) => unknown;
}

/** Thrown by the array guard; turned into a DecodeError. Not an Error: no stack to capture. */
class ArrayOverrun {
  constructor(
    readonly at: number,
    readonly count: number,
    readonly remaining: number,
  ) {}
}

/**
 * avsc reads an array's item count and then reads that many items, reading past the end of the buffer
 * without complaint (it only checks at the end). A corrupt count of 2^31 would have it build a 2^31-item
 * array before noticing. This replacement stops as soon as the items run past the end of the buffer, so
 * work stays proportional to the body's size. (Every item of our arrays takes at least one byte.)
 * Resolvers copy the reader array type's `_read`, so this also guards reads of older versions.
 */
function readArrayBounded(this: AvscReader, tap: AvscTap): unknown[] {
  const items = this.itemsType;
  const end = tap.buf.length;
  let out: unknown[] | undefined;
  let i = 0;
  let n: number;
  while ((n = tap.readLong()) !== 0) {
    if (n < 0) {
      n = -n;
      tap.skipLong(); // Block size in bytes.
    }
    const at = tap.pos;
    if (out === undefined) out = new Array<unknown>(Math.min(n, Math.max(end - at, 0)));
    while (n-- > 0) {
      out[i++] = items._read(tap);
      if (tap.pos > end) throw new ArrayOverrun(at, i + n, end - at);
    }
  }
  return out ?? [];
}

/** avsc freezes its types, so the guard goes on a subclass that the type hook below builds instead. */
class BoundedArrayType extends avro.types.ArrayType {}
(BoundedArrayType.prototype as unknown as { _read: typeof readArrayBounded })._read = readArrayBounded;

type WriteFn = (tap: AvscTap, value: unknown) => void;
const recordPrototype = avro.types.RecordType.prototype as unknown as { _createWriter(this: unknown): WriteFn };

/**
 * The current schema's RowImage, where most of a message's bytes are. An EncodedRow (what capture builds)
 * is written by copying its bytes; any other row image is written by avsc as usual. Rows are read as
 * EncodedRows that point into the message body (keeping it alive as long as they live), their values
 * decoded only if someone asks. avsc freezes its types after building their readers and writers, so these
 * are the builders, on a subclass the type hook creates for the current version only: older versions
 * are read through resolvers, into plain rows.
 */
class RowImageType extends avro.types.RecordType {}
Object.assign(RowImageType.prototype, {
  _createWriter(this: unknown): WriteFn {
    const writePlain = recordPrototype._createWriter.call(this);
    return (tap, row) => {
      if (!(row instanceof EncodedRow)) return writePlain(tap, row);
      const at = tap.pos;
      tap.pos += row.byteLength;
      // Past the end, avsc's own writes write nothing and encode() reports the size it needs.
      if (tap.pos <= tap.buf.length) row.buffer.copy(tap.buf, at, row.start, row.end);
    };
  },
  _createReader(): (tap: AvscTap) => EncodedRow {
    return (tap) => {
      const row = EncodedRow.read(tap.buf, tap.pos);
      tap.pos = row.end;
      return row;
    };
  },
});

type TypeOptions = NonNullable<Parameters<typeof avro.Type.forSchema>[1]>;
function typeOptions(current: boolean): TypeOptions {
  return {
    wrapUnions: 'auto',
    typeHook: (schema, options) => {
      const s = schema as { type?: unknown; logicalType?: unknown; name?: unknown };
      if (typeof s !== 'object' || s === null || s.logicalType !== undefined) return undefined;
      if (s.type === 'array') return new BoundedArrayType(schema, options);
      if (current && s.type === 'record' && s.name === 'RowImage') return new RowImageType(schema, options);
      return undefined;
    },
  };
}

/** Checks, once, that every array is guarded and every union is a plain `null|x` value. */
function checkTypes(type: AvscTypeInternals, seen: Set<AvscTypeInternals>): void {
  if (seen.has(type)) return;
  seen.add(type);
  if (type.typeName === 'union:wrapped') {
    throw new Error('avro-codec: a union in the change-message schema is wrapped; every union must be null|x');
  }
  if (type.typeName === 'array' && type._read !== readArrayBounded) {
    throw new Error('avro-codec: an array type escaped the bounded reader (avsc internals changed?)');
  }
  for (const field of type.fields ?? []) checkTypes(field.type, seen);
  for (const branch of type.types ?? []) checkTypes(branch, seen);
  if (type.itemsType) checkTypes(type.itemsType, seen);
  if (type.valuesType) checkTypes(type.valuesType, seen);
  if (type.underlyingType) checkTypes(type.underlyingType, seen);
}

interface Codec {
  /** The current schema: what encodeMessage writes and what decodeMessage reads into. */
  readonly current: Type;
  /** Per writer version: the resolver to the current schema, or null for the current version itself. */
  readonly readers: ReadonlyMap<number, Resolver | null>;
  readonly known: string;
}

function loadCodec(): Codec {
  const types = new Map<number, Type>();
  for (const file of readdirSync(SCHEMA_DIR).sort()) {
    const match = SCHEMA_FILE.exec(file);
    if (!match) continue;
    const version = Number(match[1]);
    const url = new URL(file, SCHEMA_DIR);
    let type: Type;
    try {
      type = avro.Type.forSchema(JSON.parse(readFileSync(url, 'utf8')) as AvroSchema, typeOptions(version === CURRENT_SCHEMA_VERSION));
    } catch (error) {
      throw new Error(`avro-codec: ${url.pathname} is not a valid Avro schema: ${oneLine(error)}`, { cause: error });
    }
    checkTypes(type as unknown as AvscTypeInternals, new Set());
    types.set(version, type);
  }
  const current = types.get(CURRENT_SCHEMA_VERSION);
  if (current === undefined) {
    throw new Error(
      `avro-codec: no schema for the current version ${CURRENT_SCHEMA_VERSION} (change-message.v${CURRENT_SCHEMA_VERSION}.avsc) in ${SCHEMA_DIR.pathname}`,
    );
  }
  const readers = new Map<number, Resolver | null>();
  for (const [version, type] of types) {
    if (version === CURRENT_SCHEMA_VERSION) {
      readers.set(version, null);
      continue;
    }
    try {
      readers.set(version, current.createResolver(type));
    } catch (error) {
      throw new Error(
        `avro-codec: schema version ${version} cannot be read by version ${CURRENT_SCHEMA_VERSION}: ${oneLine(error)}`,
        { cause: error },
      );
    }
  }
  const known = [...readers.keys()].sort((a, b) => a - b).join(', ');
  return { current, readers, known };
}

const codec = loadCodec();

// ---------------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------------

/** Reused between calls so that a message is written once, then copied out at its exact size. */
let scratch = Buffer.allocUnsafeSlow(64 * 1024);
/** Above this, write into a one-off buffer instead of keeping a huge scratch buffer alive. */
const MAX_SCRATCH = 16 * 1024 * 1024;

/** Writes a message with the current schema (CURRENT_SCHEMA_VERSION). */
export function encodeMessage(message: ChangeMessage): Buffer {
  let wire: WireMessage | undefined;
  try {
    wire = toWire(message);
    return write(wire);
  } catch (error) {
    if (error instanceof SitesyncError) throw error;
    const problem = wire === undefined ? undefined : wireProblem(wire);
    throw invalid(`cannot encode change message: ${problem ?? oneLine(error)}`, error);
  }
}

function write(wire: WireMessage): Buffer {
  const type = codec.current;
  let end = type.encode(wire, scratch, 0);
  if (end < 0) {
    // encode() returned minus the number of missing bytes.
    const size = scratch.length - end;
    if (size > MAX_SCRATCH) {
      const exact = Buffer.allocUnsafe(size);
      type.encode(wire, exact, 0);
      return exact;
    }
    scratch = Buffer.allocUnsafeSlow(Math.min(MAX_SCRATCH, Math.max(size, 2 * scratch.length)));
    end = type.encode(wire, scratch, 0);
  }
  const out = Buffer.allocUnsafe(end);
  scratch.copy(out, 0, 0, end);
  return out;
}

function toWire(message: ChangeMessage): WireMessage {
  const relations: WireRelation[] = [];
  const indexes = new Map<RelationInfo, number>();
  const relationIndex: RelationIndex = (relation, t, c) => {
    let index = indexes.get(relation);
    if (index === undefined) {
      index = relations.length;
      relations.push(relationToWire(relation, where(t, c)));
      indexes.set(relation, index);
    }
    return index;
  };

  const transactions: WireTransaction[] = new Array<WireTransaction>(message.transactions.length);
  let t = 0;
  for (const tx of message.transactions) {
    const micros = tx.commitTimeMicros;
    if (typeof micros !== 'bigint' || micros > MAX_EXACT_MICROS || micros < MIN_EXACT_MICROS) {
      throw invalid(
        `cannot encode change message: transaction ${t} (${preview(tx.id)}) commit time ${String(micros)} µs is not a bigint from -2^52 to 2^53-2 (years 1827 to 2255)`,
      );
    }
    const changes: WireChange[] = new Array<WireChange>(tx.changes.length);
    let c = 0;
    for (const change of tx.changes) {
      changes[c] = changeToWire(change, relationIndex, t, c);
      c++;
    }
    transactions[t++] = {
      id: tx.id,
      site: tx.site,
      position: tx.position,
      commitTimeMicros: Number(micros),
      sourceTxId: tx.sourceTxId,
      seen: Object.entries(tx.seen).map(([site, time]) => ({ site, commitTimeMicros: Number(time) })),
      changes,
      snapshot: tx.snapshot ? { id: tx.snapshot.id, table: tx.snapshot.table, chunk: tx.snapshot.chunk, last: tx.snapshot.last, targets: tx.snapshot.targets } : null,
    };
  }
  return {
    site: message.site,
    sourceKind: message.sourceKind,
    previous: message.previous,
    relations,
    transactions,
    part: message.part,
  };
}

type RelationIndex = (relation: RelationInfo, t: number, c: number) => number;

function changeToWire(change: Change, relationIndex: RelationIndex, t: number, c: number): WireChange {
  // Every change has the same shape (all fields, unused ones null): avsc's record writer stays monomorphic.
  switch (change.op) {
    case 'insert':
      checkRow(change.newRow, t, c, 'newRow');
      return rowChange('INSERT', relationIndex(change.relation, t, c), null, change.newRow);
    case 'read':
      checkRow(change.newRow, t, c, 'newRow');
      return rowChange('READ', relationIndex(change.relation, t, c), null, change.newRow, writerToWire(change.writer, t, c));
    case 'update':
      if (change.oldRow !== null) checkRow(change.oldRow, t, c, 'oldRow');
      checkRow(change.newRow, t, c, 'newRow');
      return rowChange('UPDATE', relationIndex(change.relation, t, c), change.oldRow, change.newRow);
    case 'delete':
      checkRow(change.oldRow, t, c, 'oldRow');
      return rowChange('DELETE', relationIndex(change.relation, t, c), change.oldRow, null);
    case 'truncate': {
      const indexes = change.relations.map((relation) => relationIndex(relation, t, c));
      return {
        op: 'TRUNCATE',
        relation: null,
        relations: indexes,
        oldRow: null,
        newRow: null,
        cascade: change.cascade,
        restartIdentity: change.restartIdentity,
        prefix: null,
        content: null,
        writer: null,
      };
    }
    case 'message':
      return {
        op: 'MESSAGE',
        relation: null,
        relations: null,
        oldRow: null,
        newRow: null,
        cascade: null,
        restartIdentity: null,
        prefix: change.prefix,
        content: change.content,
        writer: null,
      };
    default:
      throw invalid(
        `cannot encode change message: ${where(t, c)} has unknown op ${preview((change as { op: unknown }).op)}`,
      );
  }
}

function rowChange(op: WireOp, relation: number, oldRow: RowImage | null, newRow: RowImage | null, writer: WireRowWriter | null = null): WireChange {
  return {
    op,
    relation,
    relations: null,
    oldRow,
    newRow,
    cascade: null,
    restartIdentity: null,
    prefix: null,
    content: null,
    writer,
  };
}

/** A read's writer as it travels: its site a site name, its commit time in the range every commit time keeps. */
function writerToWire(writer: RowWriter | null | undefined, t: number, c: number): WireRowWriter | null {
  if (writer === undefined || writer === null) return null;
  if (typeof writer.site !== 'string' || !SITE_NAME.test(writer.site)) {
    throw invalid(`cannot encode change message: ${where(t, c)} writer site ${preview(writer.site)} is not a site name`);
  }
  const micros = writer.commitTimeMicros;
  if (typeof micros !== 'bigint' || micros > MAX_EXACT_MICROS || micros < MIN_EXACT_MICROS) {
    throw invalid(
      `cannot encode change message: ${where(t, c)} writer commit time ${String(micros)} µs is not a bigint from -2^52 to 2^53-2 (years 1827 to 2255)`,
    );
  }
  return { site: writer.site, commitTimeMicros: Number(micros) };
}

function checkRow(row: RowImage, t: number, c: number, which: string): void {
  const unchanged = row.unchanged;
  if (unchanged.length === 0) return;
  const count = columnCount(row);
  for (const index of unchanged) {
    if (!(Number.isInteger(index) && index >= 0 && index < count)) {
      throw invalid(
        `cannot encode change message: ${where(t, c)} ${which} lists unchanged column ${String(index)} but has ${count} values`,
      );
    }
  }
}

function relationToWire(relation: RelationInfo, at: string): WireRelation {
  const name = preview(`${relation.schema}.${relation.table}`);
  if (!Object.hasOwn(REPLICA_IDENTITIES, relation.replicaIdentity)) {
    throw invalid(
      `cannot encode change message: relation ${name} (first used by ${at}) has unknown replica identity ${preview(relation.replicaIdentity)}`,
    );
  }
  return {
    schema: relation.schema,
    table: relation.table,
    replicaIdentity: relation.replicaIdentity,
    columns: relation.columns.map((column: ColumnInfo): WireColumn => {
      const id = column.native.id;
      if (!(Number.isInteger(id) && id >= 0 && id <= 0xffff_ffff)) {
        throw invalid(
          `cannot encode change message: relation ${name} column ${preview(column.name)} has native type id ${String(id)}, not an unsigned 32-bit integer`,
        );
      }
      return {
        name: column.name,
        type: column.native.name,
        typeOid: id | 0,
        typeModifier: column.native.modifier,
        key: column.key,
        kind: formatKind(column.kind),
      };
    }),
  };
}

/** On the error path only: the first value avsc refuses, by path. */
function wireProblem(wire: WireMessage): string | undefined {
  let problem: string | undefined;
  try {
    codec.current.isValid(wire, {
      errorHook: (path: string[], value: unknown, type: Type) => {
        problem ??= `${path.join('.') || 'message'} = ${preview(value)} is not a valid Avro ${type.typeName}`;
      },
    });
  } catch {
    // Fall back to avsc's own message.
  }
  return problem;
}

/** A row's number of values, without decoding an EncodedRow's. */
function columnCount(row: RowImage): number {
  return row instanceof EncodedRow ? row.columnCount : row.values.length;
}

function where(t: number, c: number): string {
  return `transaction ${t} change ${c}`;
}

function invalid(message: string, cause?: unknown): SitesyncError {
  return new SitesyncError('SITESYNC_ERR_MESSAGE_INVALID', message, cause === undefined ? undefined : { cause });
}

// ---------------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------------

/**
 * Reads a message body written with schema version `writerVersion` (the `sitesync-schema-version`
 * header). Throws DecodeError, and only DecodeError, for anything that is not exactly one valid message.
 */
export function decodeMessage(body: Buffer, writerVersion: number): ChangeMessage {
  let label = 'message body is not a sitesync Avro change message';
  try {
    const resolver = codec.readers.get(writerVersion);
    if (resolver === undefined) {
      throw new DecodeError(
        `message has sitesync-schema-version ${preview(writerVersion)}, which this reader does not know (known: ${codec.known})`,
      );
    }
    label = `message body is not a sitesync v${writerVersion} Avro change message`;
    if (!Buffer.isBuffer(body)) throw new DecodeError(`${label}: the body is ${preview(body)}, not a Buffer`);
    let decoded: { value: unknown; offset: number };
    try {
      decoded = codec.current.decode(body, 0, resolver ?? undefined);
    } catch (error) {
      if (error instanceof ArrayOverrun || error instanceof RowOverrun) {
        throw new DecodeError(
          error.remaining > 0
            ? `${label}: truncated at byte ${body.length} (an array at byte ${error.at} claims ${error.count} items, only ${error.remaining} bytes remain)`
            : `${label}: truncated at byte ${body.length}`,
        );
      }
      throw new DecodeError(`${label}: ${oneLine(error)}`, { cause: error });
    }
    if (decoded.offset < 0) throw new DecodeError(`${label}: truncated at byte ${body.length}`);
    if (decoded.offset !== body.length) {
      throw new DecodeError(
        `${label}: ${body.length - decoded.offset} trailing byte(s) after the message ends at byte ${decoded.offset}`,
      );
    }
    return fromWire(decoded.value as WireMessage, label);
  } catch (error) {
    if (error instanceof DecodeError) throw error;
    throw new DecodeError(`${label}: ${oneLine(error)}`, { cause: error });
  }
}

const SITE_NAME = new RegExp(SITE_NAME_PATTERN);
const SOURCE_KIND = new RegExp(SOURCE_KIND_PATTERN);
const POSITION = new RegExp(POSITION_PATTERN);
const SNAPSHOT_ID = new RegExp(SNAPSHOT_ID_PATTERN);

/**
 * The shape rules the model states and Avro cannot: what the applier relies on, checked once here so that
 * a hostile or broken message is refused (and parked) before anything reads it. A message holds at least
 * one transaction, all of its own site, each with the id its site and position make; a part holds exactly
 * one; positions are in their source kind's format; every row has one value per column of its relation.
 */
function checkMessageShape(wire: WireMessage, label: string): void {
  const bad = (what: string): never => {
    throw new DecodeError(`${label}: ${what}`);
  };
  const kind = wire.sourceKind;
  if (!SOURCE_KIND.test(kind)) bad(`source kind ${preview(kind)} is not a source kind name`);
  // Each kind's exact width is its connector's to check (the applier knows the site's kind); here, the shape.
  const format = POSITION;
  if (!SITE_NAME.test(wire.site)) bad(`site ${preview(wire.site)} is not a site name`);
  if (wire.previous !== null && !format.test(wire.previous)) bad(`previous position ${preview(wire.previous)} is not a position (upper-case hex)`);
  if (wire.transactions.length === 0) bad('it holds no transaction');
  if (wire.part !== null) {
    if (wire.transactions.length !== 1) bad(`part ${wire.part.index} holds ${wire.transactions.length} transactions instead of one`);
    if (wire.part.index < 0) bad(`part index ${wire.part.index} is negative`);
  }
  let t = 0;
  for (const tx of wire.transactions) {
    if (tx.site !== wire.site) bad(`transaction ${t} names site ${preview(tx.site)} in a message of site ${preview(wire.site)}`);
    if (!format.test(tx.position)) bad(`transaction ${t} position ${preview(tx.position)} is not a position (upper-case hex)`);
    if (tx.id !== transactionId(tx.site, tx.position)) bad(`transaction ${t} id ${preview(tx.id)} is not ${preview(transactionId(tx.site, tx.position))}`);
    // Times need no check: avsc reads a long only within ±2^53 µs (years 1684 to 2255), which every
    // sink's date type holds.
    for (const s of tx.seen) if (!SITE_NAME.test(s.site)) bad(`transaction ${t} causal context names ${preview(s.site)}, not a site name`);
    const snapshot = tx.snapshot;
    if (snapshot !== null) {
      if (!SNAPSHOT_ID.test(snapshot.id)) bad(`transaction ${t} snapshot id ${preview(snapshot.id)} is not a snapshot id`);
      if (snapshot.chunk < 0) bad(`transaction ${t} snapshot chunk ${snapshot.chunk} is negative`);
      for (const target of snapshot.targets ?? []) if (!SITE_NAME.test(target)) bad(`transaction ${t} snapshot targets ${preview(target)}, not a site name`);
    }
    t++;
  }
}

function fromWire(wire: WireMessage, label: string): ChangeMessage {
  checkMessageShape(wire, label);
  const relations: RelationInfo[] = new Array<RelationInfo>(wire.relations.length);
  let r = 0;
  for (const relation of wire.relations) {
    relations[r] = relationFromWire(relation, r, label);
    r++;
  }

  const relationAt = (index: number, t: number, c: number): RelationInfo => {
    const relation = relations[index];
    if (relation === undefined) {
      throw new DecodeError(
        `${label}: ${where(t, c)} refers to relation ${index}, but the message has ${relations.length} relations`,
      );
    }
    return relation;
  };
  const rowOf = (row: RowImage | null, t: number, c: number, which: string, op: WireOp, relation: RelationInfo): RowImage => {
    if (row === null) throw new DecodeError(`${label}: ${where(t, c)} is ${op} without ${which}`);
    const count = columnCount(row);
    if (count !== relation.columns.length) {
      throw new DecodeError(`${label}: ${where(t, c)} ${which} has ${count} values for the ${relation.columns.length} columns of ${preview(`${relation.schema}.${relation.table}`)}`);
    }
    for (const index of row.unchanged) {
      if (index < 0 || index >= count) {
        throw new DecodeError(`${label}: ${where(t, c)} ${which} lists unchanged column ${index} but has ${count} values`);
      }
    }
    return row instanceof EncodedRow ? row : { values: row.values, unchanged: row.unchanged };
  };

  const writerOf = (writer: WireRowWriter, t: number, c: number): RowWriter => {
    if (!SITE_NAME.test(writer.site)) throw new DecodeError(`${label}: ${where(t, c)} writer site ${preview(writer.site)} is not a site name`);
    // Like a transaction's, the time needs no check: avsc reads a long only from -2^52 to 2^53-2, the very
    // range encodeMessage writes (MIN_EXACT_MICROS, MAX_EXACT_MICROS; the unit test pins this).
    return { site: writer.site, commitTimeMicros: BigInt(writer.commitTimeMicros) };
  };

  const transactions: Transaction[] = new Array<Transaction>(wire.transactions.length);
  let t = 0;
  for (const tx of wire.transactions) {
    const changes: Change[] = new Array<Change>(tx.changes.length);
    let c = 0;
    for (const change of tx.changes) {
      let decoded: Change;
      if (change.writer !== null && change.op !== 'READ') {
        throw new DecodeError(`${label}: ${where(t, c)} is ${change.op} with a writer, which only READ carries`);
      }
      switch (change.op) {
        case 'INSERT': {
          const relation = relationAt(required(change.relation, t, c, 'relation', change.op, label), t, c);
          decoded = { op: 'insert', relation, newRow: rowOf(change.newRow, t, c, 'newRow', change.op, relation) };
          break;
        }
        case 'READ': {
          if (tx.snapshot === null) throw new DecodeError(`${label}: ${where(t, c)} is READ in a transaction that is not a snapshot's`);
          const relation = relationAt(required(change.relation, t, c, 'relation', change.op, label), t, c);
          const newRow = rowOf(change.newRow, t, c, 'newRow', change.op, relation);
          // Only a read whose source knew the writer carries one: every other reads back exactly as it was written.
          decoded = change.writer === null ? { op: 'read', relation, newRow } : { op: 'read', relation, newRow, writer: writerOf(change.writer, t, c) };
          break;
        }
        case 'UPDATE': {
          const relation = relationAt(required(change.relation, t, c, 'relation', change.op, label), t, c);
          decoded = {
            op: 'update',
            relation,
            oldRow: change.oldRow === null ? null : rowOf(change.oldRow, t, c, 'oldRow', change.op, relation),
            newRow: rowOf(change.newRow, t, c, 'newRow', change.op, relation),
          };
          break;
        }
        case 'DELETE': {
          const relation = relationAt(required(change.relation, t, c, 'relation', change.op, label), t, c);
          decoded = { op: 'delete', relation, oldRow: rowOf(change.oldRow, t, c, 'oldRow', change.op, relation) };
          break;
        }
        case 'TRUNCATE':
          decoded = {
            op: 'truncate',
            relations: required(change.relations, t, c, 'relations', change.op, label).map((index) =>
              relationAt(index, t, c),
            ),
            cascade: required(change.cascade, t, c, 'cascade', change.op, label),
            restartIdentity: required(change.restartIdentity, t, c, 'restartIdentity', change.op, label),
          };
          break;
        case 'MESSAGE':
          decoded = {
            op: 'message',
            prefix: required(change.prefix, t, c, 'prefix', change.op, label),
            content: required(change.content, t, c, 'content', change.op, label),
          };
          break;
        default:
          throw new DecodeError(`${label}: ${where(t, c)} has unknown op ${preview(change.op)}`);
      }
      changes[c++] = decoded;
    }
    transactions[t++] = {
      id: tx.id,
      site: tx.site,
      position: tx.position,
      commitTimeMicros: BigInt(tx.commitTimeMicros),
      sourceTxId: tx.sourceTxId,
      seen: Object.fromEntries(tx.seen.map((s) => [s.site, BigInt(s.commitTimeMicros)])),
      changes,
      // Only snapshot transactions carry the tag: every other one reads back exactly as it was written.
      ...(tx.snapshot === null ? {} : { snapshot: { id: tx.snapshot.id, table: tx.snapshot.table, chunk: tx.snapshot.chunk, last: tx.snapshot.last, targets: tx.snapshot.targets } }),
    };
  }
  return {
    site: wire.site,
    sourceKind: wire.sourceKind as SourceKind,
    previous: wire.previous,
    transactions,
    part: wire.part === null ? null : { index: wire.part.index, last: wire.part.last },
  };
}

function required<T>(value: T | null, t: number, c: number, field: string, op: WireOp, label: string): T {
  if (value === null) throw new DecodeError(`${label}: ${where(t, c)} is ${op} without ${field}`);
  return value;
}

function relationFromWire(relation: WireRelation, index: number, label: string): RelationInfo {
  const identity = relation.replicaIdentity;
  if (!Object.hasOwn(REPLICA_IDENTITIES, identity)) {
    throw new DecodeError(
      `${label}: relation ${index} (${preview(`${relation.schema}.${relation.table}`)}) has unknown replica identity ${preview(identity)}`,
    );
  }
  return {
    schema: relation.schema,
    table: relation.table,
    replicaIdentity: identity as RelationInfo['replicaIdentity'],
    columns: relation.columns.map((column, c): ColumnInfo => {
      let kind: ValueKind;
      try {
        kind = parseKind(column.kind);
      } catch (error) {
        throw new DecodeError(`${label}: relation ${index} (${preview(`${relation.schema}.${relation.table}`)}) column ${c}: ${oneLine(error)}`);
      }
      return {
        name: column.name,
        kind,
        native: { name: column.type, id: column.typeOid >>> 0, modifier: column.typeModifier },
        key: column.key,
      };
    }),
  };
}

// ---------------------------------------------------------------------------------------------------

function oneLine(error: unknown): string {
  let text: string;
  try {
    text = error instanceof Error ? error.message : String(error);
  } catch {
    text = 'unprintable error';
  }
  return text.replace(/\s+/g, ' ').trim() || 'unknown error';
}

function preview(value: unknown): string {
  try {
    if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
    if (Buffer.isBuffer(value)) return `a ${value.length}-byte Buffer`;
    if (value === null || typeof value !== 'object') return String(value);
    return Array.isArray(value) ? `an array of ${value.length}` : 'an object';
  } catch {
    return 'an unprintable value';
  }
}
