/**
 * Neutral values to MariaDB (connectors/mariadb/mariadb-bind.ts): every kind's binding, every refusal, and
 * the checks that keep MariaDB from changing a value silently (rounding, truncating, dropping digits).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { bindValue, decimalDigits, formatDigits, targetColumn, type TargetColumn } from '../../connectors/mariadb/mariadb-bind.ts';
import { classifyMariaDbError, describeApplyError, describeMariaDbError, MariaDbDataError, MariaDbUnreachableError } from '../../connectors/mariadb/mariadb-errors.ts';
import { SitesyncError } from '../../src/errors.ts';
import type { ColumnInfo } from '../../src/events/transaction.ts';
import { parseKind, type ValueKind } from '../../src/events/value-kind.ts';

const WHERE = { schema: 'shop', table: 'items' };

function column(kind: string | ValueKind, native = 'text'): ColumnInfo {
  return { name: 'c', key: false, kind: typeof kind === 'string' ? parseKind(kind) : kind, native: { name: native, id: 0, modifier: -1 } };
}

/** A target column as information_schema would describe `columnType`. */
function target(columnType: string, facts: Partial<TargetColumn> = {}): TargetColumn {
  const dataType = /^[a-z]+/.exec(columnType)![0];
  const args = /\(([0-9]+)(?:,([0-9]+))?\)/.exec(columnType);
  const n = args ? Number(args[1]) : null;
  const defaults: Partial<TargetColumn> = {};
  if (dataType === 'varchar' || dataType === 'char') Object.assign(defaults, { maxChars: n, maxBytes: n === null ? null : n * 4, charset: 'utf8mb4' });
  if (dataType === 'binary' || dataType === 'varbinary') Object.assign(defaults, { maxChars: n, maxBytes: n });
  const textBytes: Record<string, number> = { tinytext: 255, text: 65535, mediumtext: 16777215, longtext: 4294967295, tinyblob: 255, blob: 65535 };
  if (dataType in textBytes) Object.assign(defaults, { maxChars: textBytes[dataType], maxBytes: textBytes[dataType], charset: dataType.endsWith('blob') ? null : 'utf8mb4' });
  if (dataType === 'decimal') Object.assign(defaults, { precision: n ?? 10, scale: args?.[2] !== undefined ? Number(args[2]) : 0 });
  if (dataType === 'bit') Object.assign(defaults, { precision: n ?? 1 });
  if (dataType === 'datetime' || dataType === 'timestamp' || dataType === 'time') Object.assign(defaults, { fractionalDigits: n ?? 0 });
  return {
    name: 'c',
    dataType,
    columnType,
    unsigned: /unsigned/.test(columnType),
    maxChars: null,
    maxBytes: null,
    precision: null,
    scale: null,
    fractionalDigits: null,
    charset: null,
    generated: false,
    ...defaults,
    ...facts,
  };
}

function bind(text: string | null, kind: string | ValueKind, columnType: string, sourceKind = 'postgres', facts: Partial<TargetColumn> = {}) {
  return bindValue(text, column(kind), target(columnType, facts), WHERE, sourceKind);
}

/** Asserts a refusal: a data error whose one line names the table, the column, the value and `why`. */
function refuses(text: string, kind: string, columnType: string, why: RegExp, sourceKind = 'postgres', facts: Partial<TargetColumn> = {}): void {
  assert.throws(
    () => bind(text, kind, columnType, sourceKind, facts),
    (error: unknown) => {
      assert.ok(error instanceof MariaDbDataError, `expected MariaDbDataError, got ${String(error)}`);
      assert.equal(error.code, 'SITESYNC_ERR_APPLY_DATA');
      assert.equal(classifyMariaDbError(error), 'data');
      assert.ok(!error.message.includes('\n'), 'one line');
      assert.match(error.message, /shop\.items column "c"/);
      assert.ok(error.message.includes(JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text)), `names the value: ${error.message}`);
      assert.match(error.message, why);
      return true;
    },
  );
}

describe('NULL', () => {
  test('binds as NULL whatever the kind', () => {
    for (const kind of ['boolean', 'int32', 'decimal(5,2)', 'date', 'interval', 'array<int32>', 'other']) assert.equal(bind(null, kind, 'int(11)'), null);
  });
});

describe('boolean', () => {
  test('t and f bind as 1 and 0', () => {
    assert.equal(bind('t', 'boolean', 'tinyint(1)'), 1);
    assert.equal(bind('f', 'boolean', 'tinyint(1)'), 0);
    assert.deepEqual(bind('t', 'boolean', 'bit(1)'), Buffer.from([1]));
  });
  test('anything else is refused', () => refuses('yes', 'boolean', 'tinyint(1)', /not the canonical text of a boolean/));
});

describe('integers', () => {
  test('bind as their exact text', () => {
    assert.equal(bind('42', 'int32', 'int(11)'), '42');
    assert.equal(bind('-32768', 'int16', 'smallint(6)'), '-32768');
    assert.equal(bind('9223372036854775807', 'int64', 'bigint(20)'), '9223372036854775807');
    assert.equal(bind('4294967295', 'int64', 'int(10) unsigned'), '4294967295');
    assert.equal(bind('-8388608', 'int32', 'mediumint(9)'), '-8388608');
  });
  test('out of the target range is refused', () => {
    refuses('128', 'int16', 'tinyint(4)', /out of the range of tinyint\(4\) \(-128 to 127\)/);
    refuses('-1', 'int32', 'int(10) unsigned', /out of the range/);
    refuses('2147483648', 'int64', 'int(11)', /out of the range/);
    refuses('8388608', 'int32', 'mediumint(9)', /out of the range/);
  });
  test('into DECIMAL, FLOAT, DOUBLE, BIT and text columns', () => {
    assert.equal(bind('123', 'int32', 'decimal(5,2)'), '123');
    refuses('1234', 'int32', 'decimal(5,2)', /more digits before the point/);
    assert.equal(bind('9007199254740992', 'int64', 'double'), '9007199254740992');
    refuses('9007199254740993', 'int64', 'double', /significant digits and DOUBLE keeps 15/);
    assert.equal(bind('16777216', 'int32', 'float'), '16777216');
    refuses('16777217', 'int32', 'float', /FLOAT keeps 6/);
    assert.deepEqual(bind('5', 'int32', 'bit(3)'), Buffer.from([5]));
    assert.deepEqual(bind('258', 'int32', 'bit(10)'), Buffer.from([1, 2]));
    assert.deepEqual(bind('18446744073709551615', 'int64', 'bit(64)'), Buffer.alloc(8, 0xff));
    refuses('8', 'int32', 'bit(3)', /does not fit in bit\(3\)/);
    refuses('-1', 'int32', 'bit(3)', /non-negative integer/);
    assert.equal(bind('123', 'int32', 'varchar(3)'), '123');
    refuses('1234', 'int32', 'varchar(3)', /4 characters long and varchar\(3\) holds 3/);
  });
  test('malformed text is refused', () => {
    refuses('1.5', 'int32', 'int(11)', /not the canonical text of a int32/);
    refuses('12abc', 'int64', 'bigint(20)', /not the canonical text/);
  });
});

describe('floats', () => {
  test('bind as their text into DOUBLE and FLOAT', () => {
    assert.equal(bind('1.5', 'float64', 'double'), '1.5');
    assert.equal(bind('1e+300', 'float64', 'double'), '1e+300');
    assert.equal(bind('-0', 'float64', 'double'), '-0');
    assert.equal(bind('0.1', 'float32', 'float'), '0.1', 'the shortest text of a float32 reads back as that float32');
    assert.equal(bind('0.5', 'float64', 'float'), '0.5');
    assert.equal(bind('3.4028235e+38', 'float32', 'float'), '3.4028235e+38');
  });
  test('NaN and infinity are refused in number columns, kept as text in text columns', () => {
    refuses('NaN', 'float64', 'double', /DOUBLE has no NaN/);
    refuses('Infinity', 'float32', 'float', /FLOAT has no infinity/);
    refuses('-Infinity', 'float64', 'decimal(10,2)', /DECIMAL has no infinity/);
    refuses('NaN', 'float64', 'int(11)', /has no NaN/);
    assert.equal(bind('NaN', 'float64', 'varchar(10)'), 'NaN');
    assert.equal(bind('-Infinity', 'float64', 'text'), '-Infinity');
  });
  test('a double a FLOAT would round is refused', () => {
    refuses('0.1', 'float64', 'float', /FLOAT \(single precision\) would round/);
    refuses('1e+39', 'float64', 'float', /out of the range of FLOAT/);
  });
  test('into DECIMAL and integer columns: exact, or refused', () => {
    assert.equal(bind('1e-07', 'float64', 'decimal(10,8)'), '0.0000001');
    assert.equal(bind('2.5', 'float64', 'decimal(3,1)'), '2.5');
    refuses('0.125', 'float64', 'decimal(5,2)', /3 digits after the point and decimal\(5,2\) keeps 2/);
    assert.equal(bind('2', 'float64', 'int(11)'), '2');
    refuses('1.5', 'float32', 'int(11)', /fractional part/);
  });
  test('FLOAT(M,D) and DOUBLE(M,D) keep D decimals', () => {
    refuses('1.125', 'float64', 'double(10,2)', /keeps 2/, 'postgres', { scale: 2, precision: 10 });
    assert.equal(bind('1.25', 'float64', 'double(10,2)', 'postgres', { scale: 2, precision: 10 }), '1.25');
  });
  test('malformed text is refused', () => refuses('1,5', 'float64', 'double', /not the canonical text/));
});

describe('decimal', () => {
  test('fits the target precision and scale, or is refused (never rounded)', () => {
    assert.equal(bind('123.45', 'decimal(5,2)', 'decimal(5,2)'), '123.45');
    assert.equal(bind('-0.5', 'decimal', 'decimal(5,2)'), '-0.5');
    assert.equal(bind('123.450', 'decimal', 'decimal(5,2)'), '123.45', 'trailing zeros are not digits of the value');
    assert.equal(bind('007', 'decimal', 'decimal(5,2)'), '7');
    assert.equal(bind('12345678901234567890123456789012345678901234567890.123', 'decimal', 'decimal(65,3)'), '12345678901234567890123456789012345678901234567890.123');
    refuses('123.456', 'decimal', 'decimal(5,2)', /3 digits after the point and decimal\(5,2\) keeps 2: MariaDB would round it/);
    refuses('1234.5', 'decimal', 'decimal(5,2)', /more digits before the point than decimal\(5,2\) holds \(3\)/);
  });
  test('NaN and infinity are refused in DECIMAL and DOUBLE', () => {
    refuses('NaN', 'decimal', 'decimal(10,2)', /DECIMAL has no NaN/);
    refuses('Infinity', 'decimal', 'decimal(10,2)', /DECIMAL has no infinity/);
    refuses('-Infinity', 'decimal', 'double', /DOUBLE has no infinity/);
    assert.equal(bind('NaN', 'decimal', 'varchar(3)'), 'NaN');
  });
  test('into DOUBLE only with the digits it keeps exactly; into integers only when integral', () => {
    assert.equal(bind('0.1', 'decimal', 'double'), '0.1');
    assert.equal(bind('123456789012345', 'decimal', 'double'), '123456789012345');
    refuses('1.2345678901234567', 'decimal', 'double', /17 significant digits/);
    assert.equal(bind('5.00', 'decimal', 'int(11)'), '5');
    refuses('5.5', 'decimal', 'int(11)', /fractional part/);
    refuses('99999999999', 'decimal', 'int(11)', /out of the range/);
  });
  test('malformed text is refused', () => {
    refuses('1e5', 'decimal', 'decimal(10,0)', /not the canonical text of a decimal/);
    refuses('abc', 'decimal', 'decimal(10,0)', /not the canonical text/);
  });
});

describe('strings, enums, uuids, json', () => {
  test('bind as their text', () => {
    assert.equal(bind('hello', 'string', 'varchar(10)'), 'hello');
    assert.equal(bind('happy', 'enum', "enum('happy','sad')"), 'happy');
    assert.equal(bind('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'uuid', 'uuid'), 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
    assert.equal(bind('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'uuid', 'char(36)'), 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
    assert.equal(bind('{"a": [1, 2]}', 'json', 'longtext'), '{"a": [1, 2]}');
  });
  test('a string longer than the column is refused, counted in characters (code points)', () => {
    assert.equal(bind('😀é😀', 'string', 'varchar(3)'), '😀é😀');
    refuses('abcd', 'string', 'varchar(3)', /4 characters long and varchar\(3\) holds 3/);
    refuses('ab ', 'string', 'char(2)', /3 characters long/, 'postgres');
    refuses('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'uuid', 'binary(16)', /36 bytes long and binary\(16\) holds 16/);
  });
  test('TEXT types hold bytes', () => {
    assert.equal(bind('é'.repeat(127), 'string', 'tinytext'), 'é'.repeat(127));
    refuses('é'.repeat(128), 'string', 'tinytext', /256 bytes long and tinytext holds 255/);
  });
  test('a string into a DATE column keeps no time of day', () => {
    assert.equal(bind('2024-01-01', 'string', 'date'), '2024-01-01');
    assert.equal(bind('2024-01-01 00:00:00', 'string', 'date'), '2024-01-01 00:00:00');
    refuses('2024-01-01 10:00:00', 'string', 'date', /drop its time of day/);
    refuses('2024-01-01 10:00:00.5', 'string', 'datetime', /1 fractional digits/);
  });
  test('a string into a number column is read as a number', () => {
    assert.equal(bind('12.50', 'string', 'decimal(5,2)'), '12.5');
    refuses('1.5', 'string', 'int(11)', /fractional part/);
    refuses('twelve', 'string', 'int(11)', /not a number/);
  });
});

describe('bytes', () => {
  test('bind as a Buffer', () => {
    assert.deepEqual(bind('\\x0102ff', 'bytes', 'varbinary(10)'), Buffer.from([1, 2, 255]));
    assert.deepEqual(bind('\\x', 'bytes', 'blob'), Buffer.alloc(0));
  });
  test('longer than the column is refused', () => refuses('\\x010203', 'bytes', 'varbinary(2)', /3 bytes long and varbinary\(2\) holds 2/));
  test('malformed text is refused', () => {
    refuses('\\xZZ', 'bytes', 'blob', /not the canonical text of a bytes/);
    refuses('0102', 'bytes', 'blob', /not the canonical text/);
  });
});

describe('date', () => {
  test('binds as its text', () => {
    assert.equal(bind('2024-02-29', 'date', 'date'), '2024-02-29');
    assert.equal(bind('0001-01-01', 'date', 'date'), '0001-01-01');
    assert.equal(bind('2024-02-29', 'date', 'datetime'), '2024-02-29');
  });
  test('infinity, BC and years past 9999 are refused', () => {
    refuses('infinity', 'date', 'date', /DATE has no infinity/);
    refuses('-infinity', 'date', 'date', /DATE has no infinity/);
    refuses('0044-03-15 BC', 'date', 'date', /before the year 1 \(BC\)/);
    refuses('10000-01-01', 'date', 'date', /no years past 9999/);
  });
  test('into a TIME column is refused', () => refuses('2024-01-01', 'date', 'time', /keeps a time of day only/));
});

describe('time', () => {
  test('binds as its text, within the fractional digits the column keeps', () => {
    assert.equal(bind('12:34:56.123456', 'time', 'time(6)'), '12:34:56.123456');
    assert.equal(bind('12:34:56.5', 'time', 'time(1)'), '12:34:56.5');
    assert.equal(bind('12:34:56.500000', 'time', 'time(1)'), '12:34:56.500000', 'trailing zeros are no digits of the value');
    assert.equal(bind('24:00:00', 'time', 'time'), '24:00:00');
  });
  test('fractional digits the column would drop are refused', () => {
    refuses('12:34:56.123456', 'time', 'time', /6 fractional digits of seconds and time keeps 0: MariaDB would drop them/);
    refuses('12:34:56.25', 'time', 'time(1)', /2 fractional digits/);
  });
  test('into a DATETIME column is refused', () => refuses('12:00:00', 'time', 'datetime', /has no date/));
  test('malformed text is refused', () => refuses('12:34', 'time', 'time', /not the canonical text of a time/));
});

describe('timestamp', () => {
  test('binds as its text', () => {
    assert.equal(bind('2024-01-01 10:00:00.123456', 'timestamp', 'datetime(6)'), '2024-01-01 10:00:00.123456');
    assert.equal(bind('2024-01-01 10:00:00.123000', 'timestamp', 'datetime(3)'), '2024-01-01 10:00:00.123000');
    assert.equal(bind('2024-01-01 10:00:00', 'timestamp', 'timestamp'), '2024-01-01 10:00:00');
  });
  test('into a DATE column only at midnight', () => {
    assert.equal(bind('2024-01-01 00:00:00', 'timestamp', 'date'), '2024-01-01');
    refuses('2024-01-01 10:00:00', 'timestamp', 'date', /DATE column would drop its time of day/);
  });
  test('infinity, BC, years past 9999 and dropped fractional digits are refused', () => {
    refuses('infinity', 'timestamp', 'datetime(6)', /no infinity/);
    refuses('-infinity', 'timestamp', 'datetime(6)', /no infinity/);
    refuses('0044-03-15 12:00:00 BC', 'timestamp', 'datetime(6)', /BC/);
    refuses('10000-01-01 00:00:00', 'timestamp', 'datetime(6)', /past 9999/);
    refuses('2024-01-01 10:00:00.123456', 'timestamp', 'datetime(3)', /6 fractional digits of seconds and datetime\(3\) keeps 3/);
  });
});

describe('timestamptz', () => {
  test('binds as its UTC text', () => {
    assert.equal(bind('2024-01-01 10:00:00+00', 'timestamptz', 'timestamp'), '2024-01-01 10:00:00');
    assert.equal(bind('2024-01-01 10:00:00.5+00', 'timestamptz', 'datetime(1)'), '2024-01-01 10:00:00.5');
  });
  test('infinity, BC, past 9999 and anything but UTC are refused', () => {
    refuses('infinity', 'timestamptz', 'timestamp(6)', /no infinity/);
    refuses('0044-03-15 12:00:00+00 BC', 'timestamptz', 'timestamp(6)', /BC/);
    refuses('10000-01-01 00:00:00+00', 'timestamptz', 'datetime(6)', /past 9999/);
    refuses('2024-01-01 10:00:00+02', 'timestamptz', 'timestamp', /not the canonical text of a timestamptz/);
  });
});

describe('kinds MariaDB has no type for', () => {
  test('interval, array and struct are refused', () => {
    refuses('P1Y2M', 'interval', 'varchar(100)', /MariaDB has no interval type/);
    refuses('{1,2,3}', 'array<int32>', 'varchar(100)', /MariaDB has no array type/);
    refuses('(1,x)', 'struct', 'varchar(100)', /no composite \(struct\) type/);
  });
  test('other: as it is from a MariaDB source, refused from any other kind', () => {
    assert.equal(bind('POINT(1 2)', 'other', 'varchar(100)', 'mariadb'), 'POINT(1 2)');
    assert.equal(bind('a,b', 'other', "set('a','b')", 'mariadb'), 'a,b');
    refuses('(1,2)', 'other', 'varchar(100)', /kind other\) has no MariaDB form/, 'postgres');
    refuses('(1,2)', 'other', 'varchar(100)', /kind other\) has no MariaDB form/, 'unknown');
  });
});

describe('from a MariaDB source', () => {
  test('its values bind as they are, checked against the column all the same', () => {
    assert.equal(bind('2024-01-01 10:00:00.5+00', 'timestamptz', 'timestamp(1)', 'mariadb'), '2024-01-01 10:00:00.5');
    assert.equal(bind('12.50', 'decimal(5,2)', 'decimal(5,2)', 'mariadb'), '12.5');
    refuses('abcd', 'string', 'varchar(3)', /holds 3/, 'mariadb');
  });
});

describe('reading information_schema', () => {
  test('targetColumn reads a COLUMNS row, numbers given as strings', () => {
    const c = targetColumn({
      COLUMN_NAME: 'n',
      DATA_TYPE: 'DECIMAL',
      COLUMN_TYPE: 'decimal(12,3) unsigned',
      CHARACTER_MAXIMUM_LENGTH: null,
      CHARACTER_OCTET_LENGTH: null,
      NUMERIC_PRECISION: '12',
      NUMERIC_SCALE: '3',
      DATETIME_PRECISION: null,
      CHARACTER_SET_NAME: null,
      IS_GENERATED: 'NEVER',
    });
    assert.deepEqual(c, { name: 'n', dataType: 'decimal', columnType: 'decimal(12,3) unsigned', unsigned: true, maxChars: null, maxBytes: null, precision: 12, scale: 3, fractionalDigits: null, charset: null, generated: false });
    const g = targetColumn({ ...c, COLUMN_NAME: 'g', DATA_TYPE: 'int', COLUMN_TYPE: 'int(11)', CHARACTER_MAXIMUM_LENGTH: null, CHARACTER_OCTET_LENGTH: null, NUMERIC_PRECISION: 10, NUMERIC_SCALE: 0, DATETIME_PRECISION: null, CHARACTER_SET_NAME: null, IS_GENERATED: 'ALWAYS' } as never);
    assert.equal(g.generated, true);
  });
});

describe('decimalDigits', () => {
  test('reads plain and exponent forms exactly', () => {
    const cases: [string, string][] = [
      ['0', '0'],
      ['-0', '0'],
      ['-0.000', '0'],
      ['00123.4500', '123.45'],
      ['.5', '0.5'],
      ['5.', '5'],
      ['1e3', '1000'],
      ['1.5e-3', '0.0015'],
      ['-1.5E+2', '-150'],
      ['123e-5', '0.00123'],
      ['+7', '7'],
    ];
    for (const [text, want] of cases) assert.equal(formatDigits(decimalDigits(text)!), want, text);
  });
  test('refuses what is not a number', () => {
    for (const text of ['', '.', '-', 'e5', '1e', '1.2.3', 'NaN', ' 1']) assert.equal(decimalDigits(text), null, text);
  });
  test('a huge exponent stays bounded (and out of every range)', () => {
    const n = decimalDigits('1e999999999')!;
    assert.ok(n.integer.length <= 401);
  });
});

describe('grading MariaDB errors (mariadb-errors.ts)', () => {
  const server = (errno: number, message = `error ${errno}`) => Object.assign(new Error(message), { errno, sqlState: 'HY000', code: 'ER_X' });
  test('transient: lock wait timeout, deadlock, shutdown, killed, timeouts, lost or refused connections', () => {
    for (const errno of [1205, 1213, 1053, 1927, 1969, 1040, 1317]) assert.equal(classifyMariaDbError(server(errno)), 'transient', String(errno));
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:3306'), { code: 'ECONNREFUSED', errno: -111, syscall: 'connect' });
    assert.equal(classifyMariaDbError(refused), 'transient');
    assert.equal(classifyMariaDbError(Object.assign(new Error('Connection lost: The server closed the connection.'), { code: 'PROTOCOL_CONNECTION_LOST', fatal: true })), 'transient');
    assert.equal(classifyMariaDbError(new Error("Can't add new command when connection is in closed state")), 'transient');
  });
  test('schema: unknown table, column, database; missing rights', () => {
    for (const errno of [1146, 1054, 1049, 1142, 1143]) assert.equal(classifyMariaDbError(server(errno)), 'schema', String(errno));
  });
  test('data: duplicate key, too long, out of range, incorrect values, foreign keys, check constraints, refusals', () => {
    for (const errno of [1062, 1406, 1264, 1292, 1366, 1265, 1451, 1452, 4025, 1048]) assert.equal(classifyMariaDbError(server(errno)), 'data', String(errno));
    assert.equal(classifyMariaDbError(new MariaDbDataError('refused')), 'data');
    assert.equal(classifyMariaDbError(new TypeError('Bind parameters must not contain undefined')), 'data');
  });
  test('sitesync errors: gaps and schema drift halt, bad messages park', () => {
    assert.equal(classifyMariaDbError(new SitesyncError('SITESYNC_ERR_GAP', 'gap')), 'schema');
    assert.equal(classifyMariaDbError(new SitesyncError('SITESYNC_ERR_APPLY_SCHEMA', 'x')), 'schema');
    assert.equal(classifyMariaDbError(new SitesyncError('SITESYNC_ERR_UNTRUSTED', 'x')), 'data');
  });
  test('described: one line, what and how to fix, graded the same, no password', () => {
    const dup = describeApplyError(server(1062, "Duplicate entry '1' for key 'PRIMARY'\nmore"), { source: 'london', site: 'paris', transaction: 'london:01' });
    assert.equal(dup.message, "applying transaction london:01 at site paris: Duplicate entry '1' for key 'PRIMARY' (MariaDB error 1062); the key is already there at the target: remove or fix the row there, or set a conflict policy, then retry the parked transaction");
    assert.equal(classifyMariaDbError(dup), 'data');
    assert.equal(describeApplyError(dup, { source: 'london', site: 'paris' }), dup, 'described once');
    const url = 'mysql://apply:s3cret@db.example:3306/?password=s3cret';
    const refused = Object.assign(new Error(`connect ECONNREFUSED (${url})`), { code: 'ECONNREFUSED', errno: -111, syscall: 'connect' });
    const unreachable = describeMariaDbError(refused, url, 'paris');
    assert.ok(unreachable instanceof MariaDbUnreachableError);
    assert.equal(classifyMariaDbError(unreachable), 'transient');
    assert.ok(!unreachable.message.includes('s3cret'), unreachable.message);
    assert.match(unreachable.message, /MariaDB of site paris \(mysql:\/\/apply:\*\*\*@db\.example:3306\/.*\) is unreachable .* sitesync retries/);
    const denied = describeMariaDbError(server(1045, "Access denied for user 'apply'@'x' (using password: YES)"), url, 'paris');
    assert.ok(denied instanceof SitesyncError && denied.code === 'SITESYNC_ERR_PERMISSION');
    assert.ok(!denied.message.includes('s3cret') && !denied.message.includes('\n'));
  });
});

