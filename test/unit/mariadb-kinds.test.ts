import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { BinlogColumn } from '../../connectors/mariadb/binlog-reader.ts';
import { catalogAgrees, columnType, MariaDbType as T, type CatalogColumn } from '../../connectors/mariadb/mariadb-kinds.ts';
import { formatKind } from '../../src/events/value-kind.ts';

/** A table-map column as the reader gives it (shapes seen from MariaDB 10.11 with binlog_row_metadata=FULL). */
function column(typeCode: number, columnType: string, extra: Partial<BinlogColumn> = {}): BinlogColumn {
  return { name: 'c', typeCode, metadata: {}, unsigned: null, charset: null, columnType, members: null, ...extra };
}

function catalog(columnType: string, dataType: string, extra: Partial<CatalogColumn> = {}): CatalogColumn {
  return {
    name: 'c',
    columnType,
    dataType,
    numericPrecision: null,
    numericScale: null,
    datetimePrecision: null,
    characterMaximumLength: null,
    json: false,
    ...extra,
  };
}

const kindOf = (c: BinlogColumn, k?: CatalogColumn): string => formatKind(columnType(c, k).kind);

describe('MariaDB column kinds', () => {
  test('integers: width and signedness decide the kind', () => {
    assert.equal(kindOf(column(T.TINY, 'tinyint', { unsigned: false }), catalog('tinyint(4)', 'tinyint')), 'int16');
    assert.equal(kindOf(column(T.TINY, 'tinyint unsigned', { unsigned: true })), 'int16');
    assert.equal(kindOf(column(T.SHORT, 'smallint', { unsigned: false })), 'int16');
    assert.equal(kindOf(column(T.SHORT, 'smallint unsigned', { unsigned: true })), 'int32');
    assert.equal(kindOf(column(T.INT24, 'mediumint', { unsigned: false })), 'int32');
    assert.equal(kindOf(column(T.INT24, 'mediumint unsigned', { unsigned: true })), 'int32');
    assert.equal(kindOf(column(T.LONG, 'int', { unsigned: false })), 'int32');
    assert.equal(kindOf(column(T.LONG, 'int unsigned', { unsigned: true })), 'int64');
    assert.equal(kindOf(column(T.LONGLONG, 'bigint', { unsigned: false })), 'int64');
    assert.equal(kindOf(column(T.LONGLONG, 'bigint unsigned', { unsigned: true })), 'decimal(20,0)');
    assert.equal(kindOf(column(T.YEAR, 'year', { unsigned: true }), catalog('year(4)', 'year')), 'int16');
  });

  test('tinyint(1) is a boolean, known from the catalog only', () => {
    const tiny = column(T.TINY, 'tinyint', { unsigned: false });
    assert.equal(kindOf(tiny), 'int16');
    const t = columnType(tiny, catalog('tinyint(1)', 'tinyint'));
    assert.equal(formatKind(t.kind), 'boolean');
    assert.deepEqual(t.native, { name: 'tinyint(1)', id: T.TINY, modifier: -1 });
    assert.equal(kindOf(tiny, catalog('tinyint(1) unsigned', 'tinyint')), 'int16');
  });

  test('floats and decimals', () => {
    assert.equal(kindOf(column(T.FLOAT, 'float', { metadata: { size: 4 } })), 'float32');
    assert.equal(kindOf(column(T.DOUBLE, 'double', { metadata: { size: 8 } })), 'float64');
    const d = columnType(column(T.NEWDECIMAL, 'decimal(12,2)', { metadata: { precision: 12, decimals: 2 } }), catalog('decimal(12,2)', 'decimal'));
    assert.equal(formatKind(d.kind), 'decimal(12,2)');
    assert.deepEqual(d.native, { name: 'decimal(12,2)', id: T.NEWDECIMAL, modifier: 12 });
    assert.equal(kindOf(column(T.NEWDECIMAL, 'decimal(65,30)', { metadata: { precision: 65, decimals: 30 } })), 'decimal(65,30)');
  });

  test('strings and binary strings, by character set', () => {
    const v = columnType(column(T.VARCHAR, 'varchar(40)', { metadata: { max_length: 160 }, charset: 'utf8mb4' }), catalog('varchar(40)', 'varchar', { characterMaximumLength: 40 }));
    assert.equal(formatKind(v.kind), 'string');
    assert.deepEqual(v.native, { name: 'varchar(40)', id: T.VARCHAR, modifier: 40 });
    assert.equal(kindOf(column(T.STRING, 'char(3)', { metadata: { max_length: 12 }, charset: 'utf8mb4' })), 'string');
    assert.equal(kindOf(column(T.BLOB, 'text', { metadata: { length_size: 2 }, charset: 'latin1' })), 'string');
    const b = columnType(column(T.STRING, 'binary(4)', { metadata: { max_length: 4 } }), catalog('binary(4)', 'binary', { characterMaximumLength: 4 }));
    assert.equal(formatKind(b.kind), 'bytes');
    assert.equal(b.width, 4);
    const vb = columnType(column(T.VARCHAR, 'varbinary(10)', { metadata: { max_length: 10 } }));
    assert.equal(formatKind(vb.kind), 'bytes');
    assert.equal(vb.width, null);
    assert.equal(kindOf(column(T.BLOB, 'blob', { metadata: { length_size: 2 } })), 'bytes');
    assert.equal(kindOf(column(T.BLOB, 'longblob', { metadata: { length_size: 4 } })), 'bytes');
  });

  test('MariaDB JSON is a LONGTEXT the catalog says is checked with json_valid', () => {
    const j = column(T.BLOB, 'longtext', { metadata: { length_size: 4 }, charset: 'utf8mb4' });
    assert.equal(kindOf(j), 'string');
    assert.equal(kindOf(j, catalog('longtext', 'longtext', { json: true })), 'json');
    assert.equal(kindOf(column(T.JSON, 'json', { metadata: { length_size: 4 } })), 'json'); // MySQL's binary JSON
  });

  test('temporal types', () => {
    assert.equal(kindOf(column(T.DATE, 'date')), 'date');
    const time = columnType(column(T.TIME2, 'time(4)', { metadata: { decimals: 4 } }));
    assert.equal(formatKind(time.kind), 'time');
    assert.equal(time.native.modifier, 4);
    assert.equal(kindOf(column(T.DATETIME2, 'datetime(3)', { metadata: { decimals: 3 } })), 'timestamp');
    const ts = columnType(column(T.TIMESTAMP2, 'timestamp', { metadata: { decimals: 0 } }), catalog('timestamp', 'timestamp'));
    assert.equal(formatKind(ts.kind), 'timestamptz');
    assert.equal(ts.native.modifier, 0);
  });

  test('enum, set, bit', () => {
    const e = columnType(column(T.ENUM, "enum('a','b')", { metadata: { size: 1 }, members: ['a', 'b'], charset: 'utf8mb4' }));
    assert.equal(formatKind(e.kind), 'enum');
    assert.equal(e.native.name, "enum('a','b')");
    assert.equal(kindOf(column(T.SET, "set('x','y')", { metadata: { size: 1 }, members: ['x', 'y'] })), 'string');
    const bit = columnType(column(T.BIT, 'bit(5)', { metadata: { bits: 5 } }));
    assert.equal(formatKind(bit.kind), 'other');
    assert.equal(bit.width, 5);
  });

  test('UUID, INET4 and INET6 look like BINARY(16)/(4) in the binlog: the catalog tells them', () => {
    const binary16 = column(T.STRING, 'binary(16)', { metadata: { max_length: 16 } });
    assert.equal(kindOf(binary16), 'bytes');
    const u = columnType(binary16, catalog('uuid', 'uuid'));
    assert.equal(formatKind(u.kind), 'uuid');
    assert.equal(u.native.name, 'uuid');
    assert.equal(kindOf(binary16, catalog('inet6', 'inet6')), 'other');
    assert.equal(columnType(binary16, catalog('inet6', 'inet6')).shape, 'inet6');
    assert.equal(columnType(column(T.STRING, 'binary(4)', { metadata: { max_length: 4 } }), catalog('inet4', 'inet4')).shape, 'inet4');
  });

  test('a catalog row of another type (the table changed since the row was written) is ignored', () => {
    const tiny = column(T.TINY, 'tinyint', { unsigned: false });
    assert.equal(catalogAgrees(tiny, catalog('tinyint(1)', 'tinyint')), true);
    assert.equal(catalogAgrees(tiny, catalog('int(11)', 'int')), false);
    assert.equal(kindOf(tiny, catalog('varchar(1)', 'varchar')), 'int16');
    // a LONGTEXT that became a TEXT: the binlog's length prefix tells them apart
    const text = column(T.BLOB, 'text', { metadata: { length_size: 2 }, charset: 'utf8mb4' });
    assert.equal(kindOf(text, catalog('longtext', 'longtext', { json: true })), 'string');
    // a renamed column is another column
    assert.equal(catalogAgrees(tiny, { ...catalog('tinyint(1)', 'tinyint'), name: 'other' }), false);
    const binary16 = column(T.STRING, 'binary(16)', { metadata: { max_length: 16 } });
    assert.equal(kindOf(binary16, catalog('int(11)', 'int')), 'bytes');
  });

  test('native type: the catalog text when it agrees, else what the binlog says', () => {
    const big = column(T.LONGLONG, 'bigint unsigned', { unsigned: true });
    assert.equal(columnType(big).native.name, 'bigint unsigned');
    assert.equal(columnType(big, catalog('bigint(20) unsigned', 'bigint')).native.name, 'bigint(20) unsigned');
    assert.equal(columnType(big).native.id, T.LONGLONG);
    assert.equal(columnType(column(T.GEOMETRY, 'point')).native.name, 'point');
    assert.equal(formatKind(columnType(column(T.GEOMETRY, 'point')).kind), 'other');
  });
});
