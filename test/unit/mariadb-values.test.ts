import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { BinlogColumn } from '../../connectors/mariadb/binlog-reader.ts';
import { columnType, MariaDbType as T, type CatalogColumn } from '../../connectors/mariadb/mariadb-kinds.ts';
import { formatInet6, trimFraction, valueFormatter } from '../../connectors/mariadb/mariadb-values.ts';
import {
  compareCoordinates,
  describePosition,
  formatCheckpoint,
  formatPosition,
  MARIADB_POSITION_PATTERN,
  parseCheckpoint,
  parsePosition,
  positionOf,
  mariadbPositions,
} from '../../connectors/mariadb/mariadb-positions.ts';
import { DecodeError } from '../../src/errors.ts';

function format(typeCode: number, columnTypeText: string, value: unknown, extra: Partial<BinlogColumn> = {}, catalog?: Partial<CatalogColumn> & { columnType: string; dataType: string }): string | null {
  const column: BinlogColumn = { name: 'c', typeCode, metadata: {}, unsigned: null, charset: null, columnType: columnTypeText, members: null, ...extra };
  const row: CatalogColumn | undefined = catalog
    ? { name: 'c', numericPrecision: null, numericScale: null, datetimePrecision: null, characterMaximumLength: null, json: false, ...catalog }
    : undefined;
  return valueFormatter(columnType(column, row), () => 'column c of app.t')(value);
}

describe('MariaDB values in canonical text', () => {
  test('NULL is null', () => {
    assert.equal(format(T.LONG, 'int', null), null);
  });

  test('booleans: 0 and 1; any other TINYINT(1) value keeps its number (a sink refuses it)', () => {
    const b = (v: unknown) => format(T.TINY, 'tinyint', v, { unsigned: false }, { columnType: 'tinyint(1)', dataType: 'tinyint' });
    assert.equal(b(1), 't');
    assert.equal(b(0), 'f');
    assert.equal(b(2), '2');
    assert.equal(b(-1), '-1');
  });

  test('integers, BIGINT beyond 2^53 exact, YEAR 0000', () => {
    assert.equal(format(T.LONG, 'int', -2147483648, { unsigned: false }), '-2147483648');
    assert.equal(format(T.LONGLONG, 'bigint', '-9223372036854775808', { unsigned: false }), '-9223372036854775808');
    assert.equal(format(T.LONGLONG, 'bigint unsigned', '18446744073709551615', { unsigned: true }), '18446744073709551615');
    assert.equal(format(T.LONGLONG, 'bigint unsigned', 0, { unsigned: true }), '0');
    assert.equal(format(T.YEAR, 'year', 2024), '2024');
    assert.equal(format(T.YEAR, 'year', 1900), '0'); // zongji: stored 0 + 1900
  });

  test("floats: a FLOAT's own shortest text, PostgreSQL's layout", () => {
    assert.equal(format(T.FLOAT, 'float', 1.100000023841858), '1.1');
    assert.equal(format(T.FLOAT, 'float', 1000000), '1e+06');
    assert.equal(format(T.FLOAT, 'float', 3.4028234663852886e38), '3.4028235e+38');
    assert.equal(format(T.FLOAT, 'float', -0), '-0');
    assert.equal(format(T.DOUBLE, 'double', 1e100), '1e+100');
    assert.equal(format(T.DOUBLE, 'double', 0.1), '0.1');
    assert.equal(format(T.DOUBLE, 'double', 1e-5), '1e-05');
    assert.equal(format(T.DOUBLE, 'double', 123456789012345), '123456789012345');
    assert.equal(format(T.DOUBLE, 'double', 1234567890123456), '1.234567890123456e+15');
  });

  test('decimals keep the declared scale', () => {
    const d = (v: string) => format(T.NEWDECIMAL, 'decimal(12,2)', v, { metadata: { precision: 12, decimals: 2 } });
    assert.equal(d('1.50'), '1.50');
    assert.equal(d('-1234567.89'), '-1234567.89');
    assert.equal(d('0.00'), '0.00');
    assert.equal(d('-0.00'), '0.00');
    assert.equal(format(T.NEWDECIMAL, 'decimal(5,0)', '-12345', { metadata: { precision: 5, decimals: 0 } }), '-12345');
  });

  test('strings as they are, bytes as \\x hex, BINARY(n) padded', () => {
    assert.equal(format(T.VARCHAR, 'varchar(10)', 'héllo', { charset: 'utf8mb4' }), 'héllo');
    assert.equal(format(T.VARCHAR, 'varbinary(10)', Buffer.from([0, 255])), '\\x00ff');
    assert.equal(format(T.STRING, 'binary(4)', Buffer.from([1, 2]), { metadata: { max_length: 4 } }), '\\x01020000');
    assert.equal(format(T.BLOB, 'blob', Buffer.alloc(0), { metadata: { length_size: 2 } }), '\\x');
    assert.throws(() => format(T.VARCHAR, 'varchar(10)', Buffer.from('x'), { charset: 'dec8' }), DecodeError);
  });

  test('json, enum (the error value is the empty string), set', () => {
    assert.equal(format(T.BLOB, 'longtext', '{"a": 1}', { metadata: { length_size: 4 }, charset: 'utf8mb4' }, { columnType: 'longtext', dataType: 'longtext', json: true }), '{"a": 1}');
    assert.equal(format(T.ENUM, "enum('a','b')", 'b', { members: ['a', 'b'] }), 'b');
    assert.equal(format(T.ENUM, "enum('a','b')", undefined, { members: ['a', 'b'] }), '');
    assert.equal(format(T.SET, "set('x','y')", 'x,y'), 'x,y');
    assert.equal(format(T.SET, "set('x','y')", ''), '');
  });

  test('dates, times and timestamps: canonical when they have a canonical form, else as MariaDB printed them', () => {
    assert.equal(format(T.DATE, 'date', '2024-02-29'), '2024-02-29');
    assert.equal(format(T.DATE, 'date', '0000-00-00'), '0000-00-00');
    assert.equal(format(T.DATE, 'date', '2020-00-05'), '2020-00-05');
    assert.equal(format(T.DATE, 'date', '0999-01-01'), '0999-01-01');
    assert.equal(format(T.TIME2, 'time(4)', '12:34:56.1200', { metadata: { decimals: 4 } }), '12:34:56.12');
    assert.equal(format(T.TIME2, 'time', '00:00:00'), '00:00:00');
    assert.equal(format(T.TIME2, 'time(4)', '-838:59:59.1000', { metadata: { decimals: 4 } }), '-838:59:59.1000');
    assert.equal(format(T.TIME2, 'time', '25:00:00'), '25:00:00');
    assert.equal(format(T.DATETIME2, 'datetime(6)', '2024-01-02 03:04:05.123450', { metadata: { decimals: 6 } }), '2024-01-02 03:04:05.12345');
    assert.equal(format(T.DATETIME2, 'datetime(3)', '2024-01-02 03:04:05.000', { metadata: { decimals: 3 } }), '2024-01-02 03:04:05');
    assert.equal(format(T.DATETIME2, 'datetime', '0000-00-00 00:00:00'), '0000-00-00 00:00:00');
    assert.equal(format(T.TIMESTAMP2, 'timestamp(6)', '2024-01-02 03:04:05.123456', { metadata: { decimals: 6 } }), '2024-01-02 03:04:05.123456+00');
    assert.equal(format(T.TIMESTAMP2, 'timestamp', '0000-00-00 00:00:00'), '0000-00-00 00:00:00');
  });

  test('uuid, inet, bit', () => {
    const uuid = Buffer.from('123e4567e89b12d3a456426614174000', 'hex');
    assert.equal(format(T.STRING, 'binary(16)', uuid, { metadata: { max_length: 16 } }, { columnType: 'uuid', dataType: 'uuid' }), '123e4567-e89b-12d3-a456-426614174000');
    const one = Buffer.alloc(16);
    one[15] = 1;
    assert.equal(format(T.STRING, 'binary(16)', one, { metadata: { max_length: 16 } }, { columnType: 'inet6', dataType: 'inet6' }), '::1');
    assert.equal(format(T.STRING, 'binary(4)', Buffer.from([10, 0, 0, 1]), { metadata: { max_length: 4 } }, { columnType: 'inet4', dataType: 'inet4' }), '10.0.0.1');
    assert.equal(formatInet6(Buffer.from('20010db8000000000000000000000001', 'hex')), '2001:db8::1');
    assert.equal(formatInet6(Buffer.from('00000000000000000000ffffc0000201', 'hex')), '::ffff:192.0.2.1');
    assert.equal(format(T.BIT, 'bit(5)', Buffer.from([21]), { metadata: { bits: 5 } }), '10101');
    assert.equal(format(T.BIT, 'bit(10)', Buffer.from([3, 255]), { metadata: { bits: 10 } }), '1111111111');
  });

  test('a value of the wrong shape is a decode error naming the column', () => {
    assert.throws(() => format(T.LONG, 'int', 'x', { unsigned: false }), /column c of app\.t \(int\)/);
    assert.throws(() => format(T.LONG, 'int', undefined, { unsigned: false }), DecodeError);
  });

  test('trimFraction', () => {
    assert.equal(trimFraction('10:00:00.500'), '10:00:00.5');
    assert.equal(trimFraction('10:00:00.000'), '10:00:00');
    assert.equal(trimFraction('10:00:00'), '10:00:00');
  });
});

describe('MariaDB positions', () => {
  test('24 hex digits: file sequence then offset, ordered as strings', () => {
    const p = positionOf('mysql-bin.000042', 1234);
    assert.equal(p, '0000002A00000000000004D2');
    assert.match(p, MARIADB_POSITION_PATTERN);
    assert.deepEqual(parsePosition(p), { sequence: 42, offset: 1234 });
    assert.equal(describePosition(p), '000042:1234');
    assert.equal(describePosition(p, 'mysql-bin'), 'mysql-bin.000042:1234');
    assert.equal(describePosition(null), 'none');
    const ordered = [positionOf('b.000001', 4), positionOf('b.000001', 1000), positionOf('b.000002', 4), positionOf('b.000010', 4), positionOf('b.999999', 0), positionOf('b.1000000', 4)];
    assert.deepEqual([...ordered].sort(), ordered);
    assert.equal(formatPosition(0xffffffff, Number.MAX_SAFE_INTEGER), 'FFFFFFFF001FFFFFFFFFFFFF');
    assert.throws(() => positionOf('mysql-bin', 4), /sequence number/);
    assert.throws(() => parsePosition('0/16B3748'), /not a MariaDB position/);
  });

  test('the connector position format reads what people type', () => {
    const p = positionOf('mysql-bin.000042', 1234);
    assert.equal(mariadbPositions.parse('mysql-bin.000042:1234'), p);
    assert.equal(mariadbPositions.parse('000042:1234'), p);
    assert.equal(mariadbPositions.parse(p.toLowerCase()), p);
    assert.equal(mariadbPositions.parse('0/16B3748'), null);
    assert.equal(mariadbPositions.isPosition(p), true);
    assert.equal(mariadbPositions.isPosition('00000000016B3748'), false);
    assert.equal(mariadbPositions.describe(p), '000042:1234');
  });

  test('checkpoints name the file in full', () => {
    assert.equal(formatCheckpoint({ file: 'mysql-bin.000003', offset: 328 }), 'mysql-bin.000003:328');
    assert.deepEqual(parseCheckpoint('mysql-bin.000003:328'), { file: 'mysql-bin.000003', offset: 328 });
    assert.deepEqual(parseCheckpoint('host:1-bin.000003:4'), { file: 'host:1-bin.000003', offset: 4 });
    assert.throws(() => parseCheckpoint('mysql-bin.000003'), /not a MariaDB checkpoint/);
    assert.ok(compareCoordinates({ file: 'x.000002', offset: 4 }, { file: 'x.000001', offset: 9999 }) > 0);
    assert.ok(compareCoordinates({ file: 'x.000002', offset: 4 }, { file: 'x.000002', offset: 5 }) < 0);
  });
});
