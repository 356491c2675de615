/**
 * Neutral values into SQL Server columns (connectors/sqlserver/sqlserver-bind.ts): what is bound for each kind
 * and type, and what is refused, with one line naming table.column, kind, SQL Server type and why. Columns
 * are invented fixtures. The round-trip properties go bind → the simulated server's model of CONVERT
 * (test/helpers/sqlserver-simulated-apply.ts storedValue) → capture's canonicalText (sqlserver-kinds.ts):
 * a value that binds comes back out of a SQL Server capture as the same canonical text.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { targetTable, type TargetColumn } from '../../connectors/sqlserver/apply-connection.ts';
import { bindValue } from '../../connectors/sqlserver/sqlserver-bind.ts';
import { SqlServerDataError } from '../../connectors/sqlserver/sqlserver-errors.ts';
import { canonicalText } from '../../connectors/sqlserver/sqlserver-kinds.ts';
import type { ColumnInfo } from '../../src/events/transaction.ts';
import { parseKind } from '../../src/events/value-kind.ts';
import { formatFloat64, formatValue } from '../../src/events/value-parser.ts';
import { storedValue } from '../helpers/sqlserver-simulated-apply.ts';

function target(type: string, facts: Partial<TargetColumn> = {}): TargetColumn {
  return { name: 'c', type, maxLength: -1, precision: 0, scale: 0, nullable: true, identity: false, computed: false, keyOrdinal: 0, collation: null, ...facts };
}

function source(kind: string, native = kind): ColumnInfo {
  return { name: 'c', key: false, kind: parseKind(kind), native: { name: native, id: 0, modifier: -1 } };
}

const where = { schema: 'shop', table: 'orders' };

function bind(text: string | null, kind: string, type: string, facts: Partial<TargetColumn> = {}, sourceKind = 'postgres'): string | Buffer | null {
  return bindValue(text, source(kind), target(type, facts), where, sourceKind);
}

function refused(text: string, kind: string, type: string, facts: Partial<TargetColumn>, why: RegExp, sourceKind = 'postgres'): void {
  assert.throws(
    () => bind(text, kind, type, facts, sourceKind),
    (error: unknown) => {
      assert.ok(error instanceof SqlServerDataError, String(error));
      assert.equal(error.code, 'SITESYNC_ERR_APPLY_DATA');
      assert.match(error.message, /^cannot write .* into shop\.orders column "c" \(/);
      assert.doesNotMatch(error.message, /\n/);
      assert.match(error.message, why);
      return true;
    },
  );
}

describe('sqlserver bind (invented columns)', () => {
  test('NULL is NULL whatever the types', () => {
    assert.equal(bind(null, 'interval', 'int'), null);
  });

  test('integers: exact text within the type, tinyint 0..255', () => {
    assert.equal(bind('255', 'int16', 'tinyint'), '255');
    refused('256', 'int16', 'tinyint', {}, /tinyint; int16 from postgres int16\): it is out of the range of tinyint \(0 to 255\)/);
    refused('-1', 'int16', 'tinyint', {}, /out of the range/);
    assert.equal(bind('-9223372036854775808', 'int64', 'bigint'), '-9223372036854775808');
    refused('2147483648', 'int64', 'int', {}, /out of the range of int/);
    assert.equal(bind('12.000', 'decimal(10,3)', 'int'), '12');
    refused('12.5', 'decimal', 'int', {}, /fractional part/);
    assert.equal(bind('t', 'boolean', 'int'), '1');
    refused('x', 'string', 'int', {}, /a string is not a number/);
  });

  test('bit: booleans as 1/0, integers 0 and 1 only', () => {
    assert.equal(bind('t', 'boolean', 'bit'), '1');
    assert.equal(bind('f', 'boolean', 'bit'), '0');
    assert.equal(bind('1', 'int32', 'bit'), '1');
    refused('2', 'int32', 'bit', {}, /0 or 1 only/);
  });

  test('decimal: scale and integer digits checked, never rounded; money ranges', () => {
    assert.equal(bind('12.50', 'decimal(10,2)', 'decimal', { precision: 10, scale: 2 }), '12.5');
    assert.equal(bind('12.5', 'decimal', 'decimal', { precision: 5, scale: 3 }), '12.5');
    refused('1.005', 'decimal', 'decimal', { precision: 10, scale: 2 }, /decimal\(10,2\); decimal from postgres decimal\): it has 3 digits after the point and decimal\(10,2\) keeps 2: SQL Server would round it/);
    refused('1000', 'int32', 'decimal', { precision: 5, scale: 2 }, /4 digits before the point and decimal\(5,2\) holds 3/);
    refused('NaN', 'decimal', 'decimal', { precision: 5, scale: 2 }, /has no NaN/);
    assert.equal(bind('922337203685477.5807', 'decimal(19,4)', 'money'), '922337203685477.5807');
    refused('922337203685477.5808', 'decimal(19,4)', 'money', {}, /out of the range of money/);
    refused('214748.3648', 'decimal(10,4)', 'smallmoney', {}, /out of the range of smallmoney/);
    assert.equal(bind('1e+20', 'float64', 'decimal', { precision: 38, scale: 0 }), '100000000000000000000');
  });

  test('float and real: the double itself; NaN and infinity refused; real only for float32 values', () => {
    assert.equal(bind('0.1', 'float64', 'float', { precision: 53 }), '0.1');
    assert.equal(bind('-0', 'float64', 'float', { precision: 53 }), '-0');
    refused('NaN', 'float64', 'float', { precision: 53 }, /SQL Server's float has no NaN/);
    refused('-Infinity', 'float32', 'real', {}, /has no infinity/);
    assert.equal(Number(bind('0.1', 'float32', 'real')), Math.fround(0.1));
    refused('0.1', 'float64', 'real', {}, /real \(single precision\) would round/);
    assert.equal(bind('9007199254740992', 'int64', 'float', { precision: 53 }), '9.007199254740992e+15'); // the double's shortest text, bound as a float
    refused('9007199254740993', 'int64', 'float', { precision: 53 }, /binary floating point/);
    assert.equal(bind('0.10', 'decimal(3,2)', 'float', { precision: 53 }), '0.1');
    refused('0.12345678901234567', 'decimal', 'float', { precision: 53 }, /would hold it as 0\.12345678901234566/);
  });

  test('strings: nvarchar counts UTF-16 code units; varchar bytes, ASCII only unless the collation is UTF-8', () => {
    assert.equal(bind('héllo', 'string', 'nvarchar', { maxLength: 10 }), 'héllo');
    assert.equal(bind('😀😀', 'string', 'nvarchar', { maxLength: 8 }), '😀😀');
    refused('😀😀😀', 'string', 'nvarchar', { maxLength: 10 }, /it is 6 UTF-16 code units long and nvarchar\(5\) holds 5/);
    assert.equal(bind('x'.repeat(10_000), 'string', 'nvarchar', { maxLength: -1 }), 'x'.repeat(10_000));
    refused('héllo', 'string', 'varchar', { maxLength: 10, collation: 'SQL_Latin1_General_CP1_CI_AS' }, /outside ASCII.*collation SQL_Latin1_General_CP1_CI_AS.*use nvarchar or a _UTF8 collation/);
    assert.equal(bind('héllo', 'string', 'varchar', { maxLength: 6, collation: 'Latin1_General_100_CI_AS_SC_UTF8' }), 'héllo');
    refused('héllo', 'string', 'varchar', { maxLength: 5, collation: 'Latin1_General_100_CI_AS_SC_UTF8' }, /6 bytes long and varchar\(5\) holds 5/);
    refused('abcdef', 'string', 'char', { maxLength: 5 }, /6 bytes long and char\(5\) holds 5/);
    assert.equal(bind('ab', 'string', 'char', { maxLength: 5 }), 'ab'); // SQL Server pads char(n): documented
    assert.equal(bind('{"a": 1}', 'json', 'nvarchar', { maxLength: -1 }), '{"a": 1}');
    assert.equal(bind('happy', 'enum', 'nvarchar', { maxLength: 20 }), 'happy');
    assert.equal(bind('2024-01-01 00:00:00+00', 'timestamptz', 'nvarchar', { maxLength: 100 }), '2024-01-01 00:00:00+00');
    refused('\\x00', 'bytes', 'nvarchar', { maxLength: 100 }, /bytes have no text form/);
  });

  test('bytes: lengths; binary(n) refuses a shorter value instead of padding it', () => {
    assert.deepEqual(bind('\\xdeadbeef', 'bytes', 'varbinary', { maxLength: 4 }), Buffer.from('deadbeef', 'hex'));
    refused('\\xdeadbeef00', 'bytes', 'varbinary', { maxLength: 4 }, /5 bytes long and varbinary\(4\) holds 4/);
    refused('\\xdead', 'bytes', 'binary', { maxLength: 4 }, /would pad it with zero bytes to 4/);
    refused('abc', 'string', 'varbinary', { maxLength: 4 }, /holds bytes, not a string/);
  });

  test('uuid into uniqueidentifier; a string that is a uuid too', () => {
    assert.equal(bind('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'uuid', 'uniqueidentifier'), 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
    assert.equal(bind('A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', 'string', 'uniqueidentifier'), 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11');
    refused('nope', 'string', 'uniqueidentifier', {}, /not a uuid/);
  });

  test('dates and times: ranges, fractional digits, 24:00:00, BC, infinity', () => {
    assert.equal(bind('0001-01-01', 'date', 'date'), '0001-01-01');
    refused('0001-12-31 BC', 'date', 'date', {}, /outside SQL Server's date range/);
    refused('infinity', 'date', 'date', {}, /no infinity/);
    assert.equal(bind('2024-02-29 00:00:00', 'timestamp', 'date'), '2024-02-29');
    refused('2024-02-29 00:00:01', 'timestamp', 'date', {}, /drop its time of day/);
    assert.equal(bind('23:59:59.999999', 'time', 'time', { scale: 7 }), '23:59:59.999999');
    refused('24:00:00', 'time', 'time', { scale: 7 }, /no 24:00:00/);
    refused('12:00:00.1234', 'time', 'time', { scale: 3 }, /4 fractional digits of seconds and time\(3\) keeps 3/);
    assert.equal(bind('2024-01-02 03:04:05.123456', 'timestamp', 'datetime2', { scale: 7 }), '2024-01-02T03:04:05.123456');
    assert.equal(bind('2024-01-02 03:04:05', 'timestamp', 'datetime2', { scale: 0 }), '2024-01-02T03:04:05');
    refused('2024-01-02 03:04:05.5', 'timestamp', 'datetime2', { scale: 0 }, /datetime2\(0\) keeps 0/);
    refused('10000-01-01 00:00:00', 'timestamp', 'datetime2', { scale: 7 }, /outside datetime2\(7\)'s range/);
    refused('infinity', 'timestamp', 'datetime2', { scale: 7 }, /no infinity/);
    assert.equal(bind('2024-01-02', 'date', 'datetime2', { scale: 7 }), '2024-01-02T00:00:00');
  });

  test('datetime keeps 1/300 s (milliseconds ending 0, 3, 7) from 1753; smalldatetime whole minutes 1900..2079', () => {
    assert.equal(bind('2024-01-02 03:04:05.997', 'timestamp', 'datetime'), '2024-01-02T03:04:05.997');
    assert.equal(bind('2024-01-02 03:04:05.5', 'timestamp', 'datetime'), '2024-01-02T03:04:05.500');
    assert.equal(bind('2024-01-02 03:04:05', 'timestamp', 'datetime'), '2024-01-02T03:04:05');
    refused('2024-01-02 03:04:05.998', 'timestamp', 'datetime', {}, /1\/300 of a second/);
    refused('2024-01-02 03:04:05.9971', 'timestamp', 'datetime', {}, /1\/300 of a second/);
    refused('1752-12-31 23:59:59', 'timestamp', 'datetime', {}, /1753-01-01 to 9999-12-31/);
    assert.equal(bind('2079-06-06 23:59:00', 'timestamp', 'smalldatetime'), '2079-06-06T23:59:00');
    refused('2079-06-07 00:00:00', 'timestamp', 'smalldatetime', {}, /smalldatetime's range/);
    refused('2024-01-02 03:04:05', 'timestamp', 'smalldatetime', {}, /whole minutes/);
  });

  test('timestamptz: into datetime2 as UTC, into datetimeoffset as +00:00; a timestamp has no offset to give', () => {
    assert.equal(bind('2024-01-02 03:04:05.5+00', 'timestamptz', 'datetime2', { scale: 7 }), '2024-01-02T03:04:05.5');
    assert.equal(bind('2024-01-02 03:04:05.5+00', 'timestamptz', 'datetimeoffset', { scale: 7 }), '2024-01-02T03:04:05.5+00:00');
    refused('2024-01-02 03:04:05', 'timestamp', 'datetimeoffset', { scale: 7 }, /has no time zone, and datetimeoffset\(7\) needs an offset/);
  });

  test('interval, array and struct are refused everywhere; other only from SQL Server into its own types', () => {
    refused('P1D', 'interval', 'nvarchar', { maxLength: 100 }, /SQL Server has no interval type/);
    refused('{1,2}', 'array<int32>', 'nvarchar', { maxLength: 100 }, /no array type/);
    refused('(1,2)', 'struct', 'nvarchar', { maxLength: 100 }, /no struct type/);
    assert.equal(bind('/1/2/', 'other', 'hierarchyid', {}, 'sqlserver'), '/1/2/');
    refused('/1/2/', 'other', 'hierarchyid', {}, /other from postgres has no hierarchyid form/);
    assert.equal(bind('10.0.0.1', 'other', 'nvarchar', { maxLength: 100 }), '10.0.0.1');
  });

  test('text that is not canonical is refused with its reason', () => {
    refused('01', 'int32', 'int', {}, /not the canonical text of a int32 value/);
    refused('2024-01-02T03:04:05', 'timestamp', 'datetime2', { scale: 7 }, /not the canonical text/);
  });

  // ─── properties ─────────────────────────────────────────────────────────────────────────────────────────

  /** bind → CONVERT (modelled) → the reader's projection → capture's canonical text. */
  function roundTrip(text: string, kind: string, type: string, facts: Partial<TargetColumn>): string | null {
    const t = target(type, facts);
    const bound = bindValue(text, source(kind), t, where, 'postgres');
    const stored = storedValue(targetTable('shop', 'orders', [t]), t, bound);
    return canonicalText({ name: 'c', type, maxLength: t.maxLength, precision: t.precision, scale: t.scale, keyOrdinal: 0 }, stored);
  }

  test('property: every int64 comes back from a bigint column as it went in', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), (n) => {
        assert.equal(roundTrip(n.toString(), 'int64', 'bigint', {}), n.toString());
      }),
    );
  });

  test('property: decimals that fit decimal(p,s) come back with the column scale, equal in value', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 38 }), fc.nat(38), fc.bigInt({ min: -(10n ** 38n), max: 10n ** 38n }), (precision, s, raw) => {
        const scale = Math.min(s, precision);
        const bound = 10n ** BigInt(precision);
        const n = raw % bound; // |n| < 10^p: fits decimal(p,s) as n / 10^s
        const kind = `decimal(${precision},${scale})`;
        const scaled = scale === 0 ? n.toString() : shift(n.toString(), scale);
        assert.equal(roundTrip(scaled, kind, 'decimal', { precision, scale }), scaled);
      }),
    );
  });

  test('property: timestamps of years 1..9999 come back from datetime2(6) and datetimeoffset(6) unchanged', () => {
    const min = -62135596800000000n; // 0001-01-01
    const max = 253402300799999999n; // 9999-12-31 23:59:59.999999
    fc.assert(
      fc.property(fc.bigInt({ min, max }), (micros) => {
        const plain = formatValue(micros, parseKind('timestamp'));
        assert.equal(roundTrip(plain, 'timestamp', 'datetime2', { scale: 6 }), plain);
        const zoned = formatValue(micros, parseKind('timestamptz'));
        assert.equal(roundTrip(zoned, 'timestamptz', 'datetimeoffset', { scale: 6 }), zoned);
        assert.equal(roundTrip(zoned, 'timestamptz', 'datetime2', { scale: 7 }), plain);
      }),
    );
  });

  test('property: finite doubles come back from float exactly; float32 values from real', () => {
    fc.assert(
      fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.float({ noNaN: true, noDefaultInfinity: true }), (x, f) => {
        const text = formatFloat64(x);
        assert.equal(roundTrip(text, 'float64', 'float', { precision: 53 }), text);
        const f32 = formatValue(f, parseKind('float32'));
        assert.equal(roundTrip(f32, 'float32', 'real', { precision: 24 }), f32);
      }),
    );
  });

  test('property: strings within nvarchar(n) come back unchanged', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 20 }), (s) => {
        assert.equal(roundTrip(s, 'string', 'nvarchar', { maxLength: 200 }), s);
      }),
    );
  });
});

/** `digits` / 10^scale as canonical decimal text with exactly `scale` fraction digits. */
function shift(text: string, scale: number): string {
  const negative = text.startsWith('-');
  const digits = (negative ? text.slice(1) : text).padStart(scale + 1, '0');
  const value = `${digits.slice(0, digits.length - scale)}.${digits.slice(digits.length - scale)}`;
  return negative && /[1-9]/.test(value) ? `-${value}` : value;
}
