/**
 * What a MariaDB column is, in sitesync's terms: its logical kind (value-kind.ts) and its native type.
 *
 * The binlog's table map (with binlog_row_metadata=FULL) says almost everything: the type code, precision and
 * scale, lengths, signedness, character sets (binary or not), ENUM/SET members, column names and the primary
 * key, as they were when the row was written. What it cannot say comes from information_schema (`CatalogColumn`):
 * a `tinyint(1)` (a boolean by convention) looks like any TINYINT, MariaDB's JSON is a LONGTEXT with a
 * `json_valid` check, and UUID, INET4 and INET6 look like BINARY(16)/BINARY(4). The catalog describes the table
 * as it is now, which may be later than the row (a backlog read across an ALTER TABLE): it refines a column
 * only when its type agrees with what the binlog says, and is otherwise ignored.
 */
import type { NativeType, ValueKind } from '../../src/events/value-kind.ts';
import { decimalKind, simpleKind } from '../../src/events/value-kind.ts';
import type { BinlogColumn } from './binlog-reader.ts';

/** MariaDB's column type codes (include/mysql_com.h, enum_field_types) as binlog table maps carry them. */
export const MariaDbType = {
  DECIMAL: 0,
  TINY: 1,
  SHORT: 2,
  LONG: 3,
  FLOAT: 4,
  DOUBLE: 5,
  NULL: 6,
  TIMESTAMP: 7,
  LONGLONG: 8,
  INT24: 9,
  DATE: 10,
  TIME: 11,
  DATETIME: 12,
  YEAR: 13,
  NEWDATE: 14,
  VARCHAR: 15,
  BIT: 16,
  TIMESTAMP2: 17,
  DATETIME2: 18,
  TIME2: 19,
  BLOB_COMPRESSED: 140,
  VARCHAR_COMPRESSED: 141,
  JSON: 245,
  NEWDECIMAL: 246,
  ENUM: 247,
  SET: 248,
  TINY_BLOB: 249,
  MEDIUM_BLOB: 250,
  LONG_BLOB: 251,
  BLOB: 252,
  VAR_STRING: 253,
  STRING: 254,
  GEOMETRY: 255,
} as const;

/** A column as information_schema.COLUMNS describes it (plus whether a `json_valid` check guards it). */
export interface CatalogColumn {
  readonly name: string;
  /** COLUMN_TYPE: `decimal(12,2)`, `tinyint(1)`, `varchar(40)`, `int(10) unsigned`, `uuid`. */
  readonly columnType: string;
  /** DATA_TYPE: `decimal`, `tinyint`, `longtext`, `uuid`. */
  readonly dataType: string;
  readonly numericPrecision: number | null;
  readonly numericScale: number | null;
  readonly datetimePrecision: number | null;
  readonly characterMaximumLength: number | null;
  /** MariaDB's JSON: a LONGTEXT with a CHECK (json_valid(column)). */
  readonly json: boolean;
}

/**
 * How a column's values are turned into text (mariadb-values.ts): usually its kind's canonical form, with a
 * few MariaDB types that share a kind but not a binlog value shape.
 */
export type ValueShape =
  | 'boolean'
  | 'integer'
  | 'year'
  | 'float32'
  | 'float64'
  | 'decimal'
  | 'text'
  | 'bytes'
  | 'date'
  | 'time'
  | 'datetime'
  | 'timestamp'
  | 'json'
  | 'enum'
  | 'set'
  | 'bit'
  | 'uuid'
  | 'inet4'
  | 'inet6'
  | 'geometry'
  | 'hex';

export interface MariaDbColumnType {
  readonly kind: ValueKind;
  readonly native: NativeType;
  readonly shape: ValueShape;
  /** Binary strings: the declared width of BINARY(n) (values are padded to it); BIT(n): its bits. */
  readonly width: number | null;
}

const T = MariaDbType;
const INTEGER_TYPES = new Set<number>([T.TINY, T.SHORT, T.INT24, T.LONG, T.LONGLONG]);
const BLOB_TYPES = new Set<number>([T.TINY_BLOB, T.MEDIUM_BLOB, T.LONG_BLOB, T.BLOB, T.BLOB_COMPRESSED]);
const STRING_TYPES = new Set<number>([T.VARCHAR, T.VAR_STRING, T.STRING, T.VARCHAR_COMPRESSED]);

/** information_schema DATA_TYPEs each binlog type code may stand for (to tell a stale catalog row). */
const FAMILIES: Readonly<Record<number, readonly string[]>> = {
  [T.TINY]: ['tinyint', 'bool', 'boolean'],
  [T.SHORT]: ['smallint'],
  [T.INT24]: ['mediumint'],
  [T.LONG]: ['int', 'integer'],
  [T.LONGLONG]: ['bigint'],
  [T.FLOAT]: ['float'],
  [T.DOUBLE]: ['double', 'double precision', 'real'],
  [T.NEWDECIMAL]: ['decimal', 'numeric'],
  [T.YEAR]: ['year'],
  [T.DATE]: ['date'],
  [T.NEWDATE]: ['date'],
  [T.TIME]: ['time'],
  [T.TIME2]: ['time'],
  [T.DATETIME]: ['datetime'],
  [T.DATETIME2]: ['datetime'],
  [T.TIMESTAMP]: ['timestamp'],
  [T.TIMESTAMP2]: ['timestamp'],
  [T.BIT]: ['bit'],
  [T.ENUM]: ['enum'],
  [T.SET]: ['set'],
  [T.JSON]: ['json'],
  [T.GEOMETRY]: ['geometry', 'point', 'linestring', 'polygon', 'multipoint', 'multilinestring', 'multipolygon', 'geometrycollection', 'geomcollection'],
  [T.VARCHAR]: ['varchar', 'varbinary', 'char', 'binary', 'uuid', 'inet4', 'inet6', 'vector'],
  [T.VAR_STRING]: ['varchar', 'varbinary', 'char', 'binary'],
  [T.STRING]: ['char', 'binary', 'uuid', 'inet4', 'inet6'],
  [T.VARCHAR_COMPRESSED]: ['varchar', 'varbinary'],
  [T.BLOB_COMPRESSED]: ['tinytext', 'text', 'mediumtext', 'longtext', 'tinyblob', 'blob', 'mediumblob', 'longblob'],
};

const BLOB_BY_LENGTH_SIZE: Readonly<Record<number, readonly string[]>> = {
  1: ['tinytext', 'tinyblob'],
  2: ['text', 'blob'],
  3: ['mediumtext', 'mediumblob'],
  4: ['longtext', 'longblob'],
};

/** Whether a catalog row can describe this binlog column (same name, same type family). */
export function catalogAgrees(column: BinlogColumn, catalog: CatalogColumn | undefined): catalog is CatalogColumn {
  if (!catalog || catalog.name !== column.name) return false;
  const dataType = catalog.dataType.toLowerCase();
  const family = FAMILIES[column.typeCode];
  if (BLOB_TYPES.has(column.typeCode) && column.typeCode !== T.BLOB_COMPRESSED) {
    // Every TEXT and BLOB is type BLOB in a table map; the width of its length prefix tells which.
    const sized = BLOB_BY_LENGTH_SIZE[column.metadata.length_size ?? 2] ?? [];
    return sized.includes(dataType) || (dataType === 'json' && column.metadata.length_size === 4);
  }
  return family !== undefined && family.includes(dataType);
}

/**
 * The kind and native type of a column, from its table-map entry and (when it agrees) its catalog row.
 * Native name: information_schema's COLUMN_TYPE when it agrees, else the type the binlog describes
 * (`decimal(12,2)`, `varchar(40)`, `bigint unsigned`); id: the MariaDB type code; modifier: the declared
 * length, precision or fractional digits, -1 when none.
 */
export function columnType(column: BinlogColumn, catalogRow?: CatalogColumn): MariaDbColumnType {
  const catalog = catalogAgrees(column, catalogRow) ? catalogRow : undefined;
  const code = column.typeCode;
  const name = (catalog?.columnType ?? column.columnType).toLowerCase();
  const native = (modifier: number): NativeType => ({ name: name === '' ? `type:${code}` : name, id: code, modifier });
  const make = (kind: ValueKind, shape: ValueShape, modifier = -1, width: number | null = null): MariaDbColumnType => ({ kind, native: native(modifier), shape, width });
  const unsigned = column.unsigned === true;

  if (INTEGER_TYPES.has(code)) {
    switch (code) {
      case T.TINY:
        // MariaDB has no boolean type: BOOLEAN is TINYINT(1), and only the catalog keeps the (1).
        if (catalog && /^tinyint\(1\)$/.test(catalog.columnType.toLowerCase())) return make(simpleKind('boolean'), 'boolean');
        return make(simpleKind('int16'), 'integer');
      case T.SHORT:
        return make(simpleKind(unsigned ? 'int32' : 'int16'), 'integer');
      case T.INT24:
        return make(simpleKind('int32'), 'integer');
      case T.LONG:
        return make(simpleKind(unsigned ? 'int64' : 'int32'), 'integer');
      default:
        return unsigned ? make(decimalKind(20, 0), 'integer', 20) : make(simpleKind('int64'), 'integer');
    }
  }
  switch (code) {
    case T.YEAR:
      return make(simpleKind('int16'), 'year');
    case T.FLOAT:
      return make(simpleKind('float32'), 'float32');
    case T.DOUBLE:
      return make(simpleKind('float64'), 'float64');
    case T.NEWDECIMAL:
    case T.DECIMAL: {
      const precision = column.metadata.precision ?? catalog?.numericPrecision ?? null;
      const scale = column.metadata.decimals ?? catalog?.numericScale ?? null;
      return make(decimalKind(precision, precision === null ? null : scale), 'decimal', precision ?? -1);
    }
    case T.DATE:
    case T.NEWDATE:
      return make(simpleKind('date'), 'date');
    case T.TIME:
    case T.TIME2:
      return make(simpleKind('time'), 'time', fractionDigits(column, catalog));
    case T.DATETIME:
    case T.DATETIME2:
      return make(simpleKind('timestamp'), 'datetime', fractionDigits(column, catalog));
    case T.TIMESTAMP:
    case T.TIMESTAMP2:
      return make(simpleKind('timestamptz'), 'timestamp', fractionDigits(column, catalog));
    case T.BIT:
      return make(simpleKind('other'), 'bit', column.metadata.bits ?? -1, column.metadata.bits ?? 1);
    case T.ENUM:
      return make(simpleKind('enum'), 'enum');
    case T.SET:
      return make(simpleKind('string'), 'set');
    case T.JSON:
      return make(simpleKind('json'), 'json');
    case T.GEOMETRY:
      return make(simpleKind('other'), 'geometry');
  }
  if (BLOB_TYPES.has(code)) {
    if (column.charset === null) return make(simpleKind('bytes'), 'bytes');
    if (catalog?.json) return make(simpleKind('json'), 'json');
    return make(simpleKind('string'), 'text');
  }
  if (STRING_TYPES.has(code)) {
    const dataType = catalog?.dataType.toLowerCase();
    if (dataType === 'uuid') return make(simpleKind('uuid'), 'uuid');
    if (dataType === 'inet6') return make(simpleKind('other'), 'inet6');
    if (dataType === 'inet4') return make(simpleKind('other'), 'inet4');
    if (dataType === 'vector') return make(simpleKind('other'), 'hex');
    const length = declaredLength(column, catalog);
    if (column.charset === null) {
      const fixed = code === T.STRING || /^binary\(/.test(name);
      return make(simpleKind('bytes'), 'bytes', length, fixed && length > 0 ? length : null);
    }
    return make(simpleKind('string'), 'text', length);
  }
  return make(simpleKind('other'), 'hex');
}

function fractionDigits(column: BinlogColumn, catalog: CatalogColumn | undefined): number {
  const decimals = column.metadata.decimals ?? catalog?.datetimePrecision ?? null;
  return decimals === null ? -1 : decimals;
}

/** Declared length in characters (bytes for binary strings): the catalog's, else from the type text. */
function declaredLength(column: BinlogColumn, catalog: CatalogColumn | undefined): number {
  if (catalog?.characterMaximumLength != null) return catalog.characterMaximumLength;
  const m = /\((\d+)\)/.exec(column.columnType);
  return m ? Number(m[1]) : -1;
}
