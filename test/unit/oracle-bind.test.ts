/**
 * Neutral values into Oracle columns (connectors/oracle/oracle-bind.ts): what is bound for each kind and type,
 * and what is refused, with one line naming table.column, kind, Oracle type and why. Columns are invented
 * fixtures. The round-trip properties go bind → the simulated database's model of Oracle's conversions
 * (test/helpers/oracle-simulated-apply.ts storedValue, which gives the Oracle text form the simulator stores)
 * → capture's canonicalText (connectors/oracle/oracle-kinds.ts): a value that binds comes back out of an
 * Oracle capture as the same canonical text.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { baseType, targetTable, type TargetColumn } from '../../connectors/oracle/apply-connection.ts';
import type { OracleColumn } from '../../connectors/oracle/logminer-reader.ts';
import { bindValue } from '../../connectors/oracle/oracle-bind.ts';
import { OracleDataError } from '../../connectors/oracle/oracle-errors.ts';
import { canonicalText, kindOf } from '../../connectors/oracle/oracle-kinds.ts';
import type { ColumnInfo } from '../../src/events/transaction.ts';
import { formatKind, parseKind, type ValueKind } from '../../src/events/value-kind.ts';
import { civilToDays, formatFloat32, formatFloat64, formatInterval, MICROS_PER_DAY, microsToTimestampText } from '../../src/events/value-parser.ts';
import { storedValue } from '../helpers/oracle-simulated-apply.ts';

function target(type: string, facts: Partial<TargetColumn> = {}): TargetColumn {
  return { name: 'C', type, precision: null, scale: null, dataLength: 0, charLength: 0, nullable: true, keyOrdinal: 0, identity: null, virtual: false, charset: null, ...facts };
}

function source(kind: string | ValueKind, native = typeof kind === 'string' ? kind : formatKind(kind)): ColumnInfo {
  return { name: 'c', key: false, kind: typeof kind === 'string' ? parseKind(kind) : kind, native: { name: native, id: 0, modifier: -1 } };
}

const where = { schema: 'SHOP', table: 'ORDERS' };

function bind(text: string | null, kind: string, type: string, facts: Partial<TargetColumn> = {}, sourceKind = 'postgres'): string | Buffer | null {
  return bindValue(text, source(kind), target(type, facts), where, sourceKind);
}

function refused(text: string, kind: string, type: string, facts: Partial<TargetColumn>, why: RegExp, sourceKind = 'postgres'): void {
  assert.throws(
    () => bind(text, kind, type, facts, sourceKind),
    (error: unknown) => {
      assert.ok(error instanceof OracleDataError, String(error));
      assert.equal(error.code, 'SITESYNC_ERR_APPLY_DATA');
      assert.match(error.message, /^cannot write .* into SHOP\.ORDERS column "C" \(/);
      assert.doesNotMatch(error.message, /\n/);
      assert.match(error.message, why);
      return true;
    },
  );
}

const VARCHAR = { dataLength: 10, charLength: 10, charset: 'AL32UTF8' };

describe('oracle bind (invented columns)', () => {
  test('NULL is NULL whatever the types', () => {
    assert.equal(bind(null, 'interval', 'NUMBER'), null);
  });

  test('NUMBER: exact digits within precision and scale, never rounded; NaN, infinity, -0 refused', () => {
    assert.equal(bind('12.50', 'decimal(10,2)', 'NUMBER', { precision: 10, scale: 2 }), '12.5');
    assert.equal(bind('-2147483648', 'int32', 'NUMBER', { precision: 10, scale: 0 }), '-2147483648');
    refused('1.005', 'decimal', 'NUMBER', { precision: 10, scale: 2 }, /NUMBER\(10,2\); decimal from postgres decimal\): it has 3 digits after the point and NUMBER\(10,2\) keeps 2: Oracle would round it/);
    refused('1000', 'int32', 'NUMBER', { precision: 5, scale: 2 }, /too large for NUMBER\(5,2\) \(at most 3 digits before the point\)/);
    refused('12.5', 'decimal', 'NUMBER', { scale: 0 }, /1 digits after the point and NUMBER\(\*,0\) keeps 0/);
    assert.equal(bind('12300', 'int32', 'NUMBER', { precision: 5, scale: -2 }), '12300');
    refused('12345', 'int32', 'NUMBER', { precision: 5, scale: -2 }, /keeps multiples of 1E2 only/);
    refused('50', 'int32', 'NUMBER', { precision: 5, scale: -2 }, /keeps multiples of 1E2 only/);
    assert.equal(bind('0.00123', 'decimal', 'NUMBER', { precision: 3, scale: 5 }), '0.00123');
    refused('0.0123', 'decimal', 'NUMBER', { precision: 3, scale: 5 }, /too large for NUMBER\(3,5\)/);
    refused('NaN', 'decimal', 'NUMBER', {}, /NUMBER has no NaN/);
    refused('Infinity', 'float64', 'NUMBER', {}, /NUMBER has no infinity/);
    refused('-0', 'float64', 'NUMBER', {}, /no negative zero/);
    const digits39 = '1'.repeat(39);
    refused(digits39, 'decimal', 'NUMBER', {}, /39 significant digits and NUMBER keeps 38/);
    assert.equal(bind('1'.repeat(38), 'decimal', 'NUMBER'), '1'.repeat(38));
    refused(`1${'0'.repeat(126)}`, 'decimal', 'NUMBER', {}, /out of the range of NUMBER/);
    refused(`0.${'0'.repeat(130)}1`, 'decimal', 'NUMBER', {}, /smallest magnitude \(1E-130\): Oracle would store 0/);
    assert.equal(bind('1e+20', 'float64', 'NUMBER'), '100000000000000000000');
    assert.equal(bind('t', 'boolean', 'NUMBER', { precision: 1, scale: 0 }), '1');
    assert.equal(bind('f', 'boolean', 'NUMBER', { precision: 1, scale: 0 }), '0');
    refused('x', 'string', 'NUMBER', {}, /a string is not a number/);
  });

  test('FLOAT(b) keeps ceil(b × 0.30103) significant digits', () => {
    assert.equal(bind('120', 'int32', 'FLOAT', { precision: 5 }), '120');
    refused('123', 'int32', 'FLOAT', { precision: 5 }, /3 significant digits and FLOAT\(5\) keeps 2/);
    assert.equal(bind('1'.repeat(38), 'decimal', 'FLOAT', { precision: 126 }), '1'.repeat(38));
  });

  test('BINARY_FLOAT / BINARY_DOUBLE: IEEE values exactly; single precision only when exact', () => {
    assert.equal(bind('0.1', 'float64', 'BINARY_DOUBLE'), '0.1');
    assert.equal(bind('NaN', 'float64', 'BINARY_DOUBLE'), 'NaN');
    assert.equal(bind('-Infinity', 'float32', 'BINARY_FLOAT'), '-Infinity');
    assert.equal(bind('0.1', 'float32', 'BINARY_FLOAT'), formatFloat64(Math.fround(0.1)));
    refused('0.1', 'float64', 'BINARY_FLOAT', {}, /BINARY_FLOAT \(single precision\) would round/);
    refused('-0', 'float64', 'BINARY_DOUBLE', {}, /-0 equal to 0/);
    assert.equal(bind('0.5', 'decimal', 'BINARY_DOUBLE'), '0.5');
    refused('0.1234567890123456789', 'decimal', 'BINARY_DOUBLE', {}, /would hold it as 0\.12345678901234568/);
    refused('t', 'boolean', 'BINARY_DOUBLE', {}, /a boolean is not a number/);
  });

  test('character types: the empty string refused (Oracle stores NULL); characters and bytes counted; legacy sets ASCII only', () => {
    assert.equal(bind('hello', 'string', 'VARCHAR2', VARCHAR), 'hello');
    refused('', 'string', 'VARCHAR2', VARCHAR, /Oracle stores an empty string as NULL/);
    refused('', 'string', 'CLOB', { charset: 'AL32UTF8' }, /empty string as NULL/);
    refused('', 'string', 'CHAR', { ...VARCHAR, charset: 'AL32UTF8' }, /empty string as NULL/);
    refused('x'.repeat(11), 'string', 'VARCHAR2', VARCHAR, /11 characters \(UTF-16 code units\) long and VARCHAR2\(10 BYTE\) holds 10/);
    refused('ééééé é', 'string', 'VARCHAR2', VARCHAR, /13 bytes long in AL32UTF8 and VARCHAR2\(10 BYTE\) holds 10 bytes/);
    assert.equal(bind('ééééé é', 'string', 'VARCHAR2', { dataLength: 40, charLength: 10, charset: 'AL32UTF8' }), 'ééééé é');
    refused('é', 'string', 'VARCHAR2', { ...VARCHAR, charset: 'WE8MSWIN1252' }, /characters outside ASCII, and VARCHAR2\(10 BYTE\) keeps characters in character set WE8MSWIN1252/);
    refused('é', 'string', 'VARCHAR2', { ...VARCHAR, charset: null }, /character set \(unknown\)/);
    assert.equal(bind('😀', 'string', 'NVARCHAR2', { dataLength: 4, charLength: 2, charset: 'AL16UTF16' }), '😀');
    refused('😀😀', 'string', 'NVARCHAR2', { dataLength: 6, charLength: 3, charset: 'AL16UTF16' }, /4 characters \(UTF-16 code units\)/);
    refused('😀', 'string', 'VARCHAR2', { dataLength: 5, charLength: 5, charset: 'UTF8' }, /6 bytes long in UTF8/);
    assert.equal(bind('x'.repeat(100_000), 'string', 'CLOB', { charset: 'AL32UTF8' }), 'x'.repeat(100_000));
    assert.equal(bind('ab', 'string', 'CHAR', { dataLength: 5, charLength: 5, charset: 'AL32UTF8' }), 'ab'); // Oracle pads it, as it always does
    assert.equal(bind('{"a": 1}', 'json', 'CLOB', { charset: 'AL32UTF8' }), '{"a": 1}');
    assert.equal(bind('12:00:00.5', 'time', 'VARCHAR2', { dataLength: 20, charLength: 20, charset: 'AL32UTF8' }), '12:00:00.5');
    assert.equal(bind('0a0b0c0d-0000-4000-8000-000000000001', 'uuid', 'VARCHAR2', { dataLength: 36, charLength: 36, charset: 'AL32UTF8' }), '0a0b0c0d-0000-4000-8000-000000000001');
    refused('\\x00', 'bytes', 'VARCHAR2', VARCHAR, /bytes have no text form/);
    refused('{1,2}', 'array<int32>', 'VARCHAR2', VARCHAR, /no column type sitesync writes an array into/);
    refused('(1,2)', 'struct', 'CLOB', {}, /a composite \(struct\)/);
  });

  test('RAW and BLOB: bytes within the length, zero bytes refused; a uuid into RAW(16)', () => {
    assert.deepEqual(bind('\\xdeadbeef', 'bytes', 'RAW', { dataLength: 4 }), Buffer.from('deadbeef', 'hex'));
    refused('\\xdeadbeef00', 'bytes', 'RAW', { dataLength: 4 }, /5 bytes long and RAW\(4\) holds 4/);
    refused('\\x', 'bytes', 'RAW', { dataLength: 4 }, /zero bytes as NULL/);
    refused('\\x', 'bytes', 'BLOB', {}, /zero bytes as NULL/);
    assert.deepEqual(bind('0a0b0c0d-0000-4000-8000-000000000001', 'uuid', 'RAW', { dataLength: 16 }), Buffer.from('0a0b0c0d000040008000000000000001', 'hex'));
    refused('hello', 'string', 'RAW', { dataLength: 16 }, /this string is not a uuid/);
    refused('1', 'int32', 'BLOB', {}, /BLOB holds bytes, not a int32/);
  });

  test('DATE and TIMESTAMP: no rounded fractions, years 1 to 9999, no BC, no days Oracle\'s calendar lacks', () => {
    assert.equal(bind('2024-02-29 12:34:56', 'timestamp', 'DATE'), '2024-02-29 12:34:56');
    assert.equal(bind('2024-02-29', 'date', 'DATE'), '2024-02-29 00:00:00');
    refused('2024-02-29 12:34:56.5', 'timestamp', 'DATE', {}, /DATE has no fractional seconds: Oracle would round them/);
    assert.equal(bind('2024-02-29 12:34:56.123456', 'timestamp', 'TIMESTAMP', { scale: 6 }), '2024-02-29 12:34:56.123456');
    assert.equal(bind('2024-02-29 12:34:56.5', 'timestamp', 'TIMESTAMP', { scale: 1 }), '2024-02-29 12:34:56.500000');
    refused('2024-02-29 12:34:56.25', 'timestamp', 'TIMESTAMP', { scale: 1 }, /2 fractional digits of seconds and TIMESTAMP\(1\) keeps 1: Oracle would round it/);
    refused('0044-03-15 12:00:00 BC', 'timestamp', 'TIMESTAMP', { scale: 6 }, /a BC date/);
    refused('10000-01-01 00:00:00', 'timestamp', 'DATE', {}, /after DATE's last day \(9999-12-31\)/);
    refused('1582-10-10', 'date', 'DATE', {}, /no 1582-10-05 to 1582-10-14/);
    assert.equal(bind('1582-10-04', 'date', 'DATE'), '1582-10-04 00:00:00');
    assert.equal(bind('0001-01-01', 'date', 'DATE'), '0001-01-01 00:00:00');
    refused('infinity', 'timestamp', 'TIMESTAMP', { scale: 6 }, /has no infinity/);
    refused('12:00:00', 'time', 'DATE', {}, /DATE holds a date and time, not a time/);
  });

  test('timestamptz: +00:00 into WITH TIME ZONE; as its UTC time into DATE/TIMESTAMP; a zone-less value never into a zoned type', () => {
    assert.equal(bind('2024-02-29 12:34:56.5+00', 'timestamptz', 'TIMESTAMP WITH TIME ZONE', { scale: 6 }), '2024-02-29 12:34:56.500000 +00:00');
    assert.equal(bind('2024-02-29 12:34:56+00', 'timestamptz', 'TIMESTAMP WITH LOCAL TIME ZONE', { scale: 0 }), '2024-02-29 12:34:56.000000 +00:00');
    assert.equal(bind('2024-02-29 12:34:56.5+00', 'timestamptz', 'TIMESTAMP', { scale: 6 }), '2024-02-29 12:34:56.500000');
    assert.equal(bind('2024-02-29 12:34:56+00', 'timestamptz', 'DATE'), '2024-02-29 12:34:56');
    refused('2024-02-29 12:34:56', 'timestamp', 'TIMESTAMP WITH TIME ZONE', { scale: 6 }, /a timestamp has no time zone, and TIMESTAMP\(6\) WITH TIME ZONE needs one/);
    refused('2024-02-29 12:34:56.1234+00', 'timestamptz', 'TIMESTAMP WITH TIME ZONE', { scale: 3 }, /4 fractional digits/);
  });

  test('intervals: year-month or day-second when the value is of that part alone and fits', () => {
    assert.equal(bind('P1Y2M', 'interval', 'INTERVAL YEAR TO MONTH', { precision: 2 }), '+1-02');
    assert.equal(bind('P-1Y-2M', 'interval', 'INTERVAL YEAR TO MONTH', { precision: 2 }), '-1-02');
    refused('P100Y', 'interval', 'INTERVAL YEAR TO MONTH', { precision: 2 }, /100 years need more than the 2 digits/);
    refused('P1DT1H', 'interval', 'INTERVAL YEAR TO MONTH', { precision: 2 }, /keeps years and months only/);
    assert.equal(bind('P1DT2H3M4.5S', 'interval', 'INTERVAL DAY TO SECOND', { precision: 2, scale: 6 }), '+1 02:03:04.500000');
    assert.equal(bind('PT-0.5S', 'interval', 'INTERVAL DAY TO SECOND', { precision: 2, scale: 6 }), '-0 00:00:00.500000');
    assert.equal(bind('P-3DT-1H', 'interval', 'INTERVAL DAY TO SECOND', { precision: 2, scale: 6 }), '-3 01:00:00.000000');
    refused('P1M', 'interval', 'INTERVAL DAY TO SECOND', { precision: 2, scale: 6 }, /a month has no fixed length/);
    refused('P1DT-1H', 'interval', 'INTERVAL DAY TO SECOND', { precision: 2, scale: 6 }, /opposite signs/);
    refused('PT25H', 'interval', 'INTERVAL DAY TO SECOND', { precision: 2, scale: 6 }, /a day or more/);
    refused('P100D', 'interval', 'INTERVAL DAY TO SECOND', { precision: 2, scale: 6 }, /100 days need more than the 2 digits/);
    refused('PT0.25S', 'interval', 'INTERVAL DAY TO SECOND', { precision: 2, scale: 1 }, /2 fractional digits/);
    refused('1', 'int32', 'INTERVAL DAY TO SECOND', {}, /holds an interval, not a int32/);
  });

  test('types sitesync does not write, and values that are not canonical', () => {
    refused('x', 'string', 'LONG', {}, /does not write LONG/);
    refused('<a/>', 'other', 'XMLTYPE', {}, /does not write Oracle's XMLTYPE/, 'oracle');
    refused('{}', 'json', 'JSON', {}, /keeps its own normal form/);
    refused('01', 'int32', 'NUMBER', {}, /not a canonical int32/);
  });
});

// ─── round trips: bind → the model of Oracle's conversions → capture's canonicalText ──────────────────────

function oracleColumn(type: string, facts: Partial<OracleColumn> = {}): OracleColumn {
  return { name: 'C', type, precision: null, scale: null, dataLength: 22, charLength: 0, nullable: true, keyOrdinal: 0, ...facts };
}

/** The TargetColumn describeTable gives for a column (as the simulated connection builds it). */
function targetOf(c: OracleColumn): TargetColumn {
  const type = baseType(c.type);
  const sizes = [...c.type.matchAll(/\((\d+)\)/g)].map((m) => Number(m[1]));
  const national = /^N(VARCHAR2|CHAR|CLOB)$/.test(type);
  return {
    name: c.name,
    type,
    precision: c.precision ?? (type.startsWith('INTERVAL') ? (sizes[0] ?? 2) : null),
    scale: c.scale ?? (type.startsWith('TIMESTAMP') ? (sizes[0] ?? 6) : type === 'INTERVAL DAY TO SECOND' ? (sizes[1] ?? 6) : null),
    dataLength: c.dataLength,
    charLength: c.charLength,
    nullable: true,
    keyOrdinal: 0,
    identity: null,
    virtual: false,
    charset: national ? 'AL16UTF16' : /CHAR|CLOB/.test(type) ? 'AL32UTF8' : null,
  };
}

/** Binds `text` of `kind` into `c`; the Oracle text the model stores, or the bind's refusal. */
function through(c: OracleColumn, text: string, kind: ValueKind = kindOf(c)): { stored: string | null } | { refused: string } {
  const t = targetOf(c);
  try {
    const bound = bindValue(text, source(kind), t, where, 'oracle');
    const stored = storedValue(targetTable('SHOP', 'ORDERS', [t]), t, bound);
    // The simulator pads CHAR and NCHAR to their length, as Oracle stores them.
    return { stored: stored !== null && (t.type === 'CHAR' || t.type === 'NCHAR') ? stored.padEnd(t.charLength, ' ') : stored };
  } catch (error) {
    if (error instanceof OracleDataError) return { refused: error.message };
    throw error;
  }
}

function roundTrip(c: OracleColumn, text: string, expected = text, allowed?: RegExp): void {
  const r = through(c, text);
  if ('refused' in r) {
    assert.ok(allowed?.test(r.refused), `${c.type}: ${text} refused: ${r.refused}`);
    return;
  }
  assert.equal(canonicalText(c, r.stored), expected, `${c.type}: ${text} stored as ${r.stored}`);
}

const YEAR_1 = BigInt(civilToDays(1, 1, 1)) * MICROS_PER_DAY;
const AFTER_9999 = BigInt(civilToDays(10000, 1, 1)) * MICROS_PER_DAY - 1n;
const GAP = /no 1582-10-05 to 1582-10-14/;

describe('oracle bind round trips: bind → simulated Oracle → canonicalText', () => {
  test('NUMBER(p,s), NUMBER, NUMBER(*,0), FLOAT', () => {
    fc.assert(
      fc.property(fc.integer({ min: -2147483648, max: 2147483647 }), (n) => roundTrip(oracleColumn('NUMBER', { precision: 10, scale: 0 }), String(n))),
    );
    fc.assert(
      fc.property(fc.bigInt({ min: -(10n ** 12n) + 1n, max: 10n ** 12n - 1n }), (n) => {
        const abs = n < 0n ? -n : n;
        const text = `${n < 0n ? '-' : ''}${abs / 100n}.${String(abs % 100n).padStart(2, '0')}`;
        roundTrip(oracleColumn('NUMBER', { precision: 12, scale: 2 }), text);
      }),
    );
    fc.assert(
      fc.property(fc.bigInt({ min: -(10n ** 38n) + 1n, max: 10n ** 38n - 1n }), fc.integer({ min: 0, max: 60 }), (n, scale) => {
        // A bare NUMBER: the shortest text of any number of at most 38 significant digits.
        const abs = (n < 0n ? -n : n).toString().padStart(scale + 1, '0');
        let text = scale === 0 ? abs : `${abs.slice(0, abs.length - scale)}.${abs.slice(abs.length - scale)}`;
        if (text.includes('.')) text = text.replace(/0+$/, '').replace(/\.$/, '');
        if (text !== '0' && n < 0n) text = `-${text}`;
        roundTrip(oracleColumn('NUMBER'), text);
        roundTrip(oracleColumn('FLOAT', { precision: 126 }), text);
      }),
    );
    fc.assert(fc.property(fc.bigInt({ min: -(10n ** 38n) + 1n, max: 10n ** 38n - 1n }), (n) => roundTrip(oracleColumn('NUMBER', { scale: 0 }), n.toString())));
  });

  test('BINARY_DOUBLE and BINARY_FLOAT (NaN and infinities included, -0 refused)', () => {
    fc.assert(fc.property(fc.double(), (x) => roundTrip(oracleColumn('BINARY_DOUBLE', { dataLength: 8 }), formatFloat64(x), formatFloat64(x), /-0 equal to 0/)));
    fc.assert(fc.property(fc.float(), (x) => roundTrip(oracleColumn('BINARY_FLOAT', { dataLength: 4 }), formatFloat32(x), formatFloat32(x), /-0 equal to 0/)));
  });

  test('VARCHAR2, NVARCHAR2, CHAR: what binds comes back (CHAR padded); what is refused is too long or empty', () => {
    const varchar = oracleColumn('VARCHAR2', { dataLength: 20, charLength: 20 });
    const nvarchar = oracleColumn('NVARCHAR2', { dataLength: 20, charLength: 10 });
    const char = oracleColumn('CHAR', { dataLength: 8, charLength: 8 });
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 12 }), (s) => {
        roundTrip(varchar, s, s, Buffer.byteLength(s) > 20 || s.length > 20 || s === '' ? /./ : /^$/);
        roundTrip(nvarchar, s, s, s.length > 10 || s === '' ? /./ : /^$/);
        roundTrip(char, s, s.padEnd(8, ' '), Buffer.byteLength(s) > 8 || s.length > 8 || s === '' ? /./ : /^$/);
      }),
    );
  });

  test('RAW', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 16 }), (bytes) => {
        roundTrip(oracleColumn('RAW', { dataLength: 16 }), `\\x${Buffer.from(bytes).toString('hex')}`);
      }),
    );
  });

  test('DATE, TIMESTAMP(n), WITH TIME ZONE, WITH LOCAL TIME ZONE', () => {
    const micros = fc.bigInt({ min: YEAR_1, max: AFTER_9999 });
    fc.assert(
      fc.property(micros, (m) => {
        const seconds = m - (((m % 1_000_000n) + 1_000_000n) % 1_000_000n);
        roundTrip(oracleColumn('DATE', { dataLength: 7 }), microsToTimestampText(seconds), microsToTimestampText(seconds), GAP);
        roundTrip(oracleColumn('TIMESTAMP(6)', { scale: 6 }), microsToTimestampText(m), microsToTimestampText(m), GAP);
        roundTrip(oracleColumn('TIMESTAMP(6) WITH TIME ZONE', { scale: 6 }), microsToTimestampText(m, true), microsToTimestampText(m, true), GAP);
        roundTrip(oracleColumn('TIMESTAMP(6) WITH LOCAL TIME ZONE', { scale: 6 }), microsToTimestampText(m, true), microsToTimestampText(m, true), GAP);
        const millis = m - (((m % 1000n) + 1000n) % 1000n);
        roundTrip(oracleColumn('TIMESTAMP(3)', { scale: 3 }), microsToTimestampText(millis), microsToTimestampText(millis), GAP);
      }),
    );
  });

  test('INTERVAL DAY(9) TO SECOND(6) and INTERVAL YEAR(9) TO MONTH', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 999_999_999 }), fc.bigInt({ min: 0n, max: MICROS_PER_DAY - 1n }), fc.boolean(), (days, micros, negative) => {
        const text = formatInterval({ months: 0, days: negative ? -days : days, micros: negative ? -micros : micros });
        roundTrip(oracleColumn('INTERVAL DAY(9) TO SECOND(6)', { precision: 9, scale: 6 }), text);
      }),
    );
    fc.assert(
      fc.property(fc.integer({ min: -2147483647, max: 2147483647 }), (months) => {
        roundTrip(oracleColumn('INTERVAL YEAR(9) TO MONTH', { precision: 9, scale: 0 }), formatInterval({ months, days: 0, micros: 0n }));
      }),
    );
  });

  test('from other kinds: int64 into NUMBER(19), uuid into RAW(16), date into DATE, boolean into NUMBER(1)', () => {
    assert.deepEqual(through(oracleColumn('NUMBER', { precision: 19, scale: 0 }), '-9223372036854775808', parseKind('int64')), { stored: '-9223372036854775808' });
    assert.deepEqual(through(oracleColumn('RAW', { dataLength: 16 }), '0a0b0c0d-0000-4000-8000-000000000001', parseKind('uuid')), { stored: '0A0B0C0D000040008000000000000001' });
    assert.deepEqual(through(oracleColumn('DATE', { dataLength: 7 }), '2024-02-29', parseKind('date')), { stored: '2024-02-29 00:00:00' });
    assert.deepEqual(through(oracleColumn('NUMBER', { precision: 1, scale: 0 }), 't', parseKind('boolean')), { stored: '1' });
    assert.deepEqual(through(oracleColumn('NUMBER', { precision: 10, scale: 2 }), '0.50', parseKind('decimal(10,2)')), { stored: '.5' });
  });
});
