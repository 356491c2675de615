import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MAX_TABLE_HEADERS_BYTES, SCHEMA_VERSION_HEADER, messageHeaders, messageId, tableHeaders } from '../../src/bus/message-headers.ts';
import { microsToIso, nowMicros } from '../../src/events/time.ts';
import type { Change, ChangeMessage, RelationInfo, Transaction, TransactionPart } from '../../src/events/transaction.ts';
import { postgresPositions } from '../../connectors/postgres/postgres-positions.ts';

/** The PostgreSQL connector's display form, as capture passes it for a PostgreSQL site. */
const describeLsn = (position: string | null): string => (position === null ? 'none' : postgresPositions.describe(position));

/** ISO 8601 with six fractional digits back to microseconds, independently of microsToIso. */
function isoToMicros(iso: string): bigint {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{6})Z$/.exec(iso);
  assert.ok(m, `not ISO with six fractional digits: ${iso}`);
  const [, y, mo, d, h, mi, s, frac] = m;
  const seconds = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s)) / 1000;
  return BigInt(seconds) * 1_000_000n + BigInt(frac!);
}

describe('microsToIso', () => {
  test('keeps all six fractional digits', () => {
    assert.equal(microsToIso(0n), '1970-01-01T00:00:00.000000Z');
    assert.equal(microsToIso(1n), '1970-01-01T00:00:00.000001Z');
    assert.equal(microsToIso(999n), '1970-01-01T00:00:00.000999Z');
    assert.equal(microsToIso(1_000n), '1970-01-01T00:00:00.001000Z');
    assert.equal(microsToIso(1_704_164_645_123_456n), '2024-01-02T03:04:05.123456Z');
  });

  test('before 1970 it floors correctly', () => {
    assert.equal(microsToIso(-1n), '1969-12-31T23:59:59.999999Z');
    assert.equal(microsToIso(-999n), '1969-12-31T23:59:59.999001Z');
    assert.equal(microsToIso(-1_000n), '1969-12-31T23:59:59.999000Z');
    assert.equal(microsToIso(-1_001n), '1969-12-31T23:59:59.998999Z');
    assert.equal(microsToIso(-1_000_000n), '1969-12-31T23:59:59.000000Z');
    // PostgreSQL's epoch minus one microsecond
    assert.equal(microsToIso(946_684_800_000_000n - 1n), '1999-12-31T23:59:59.999999Z');
  });

  test('property: parsing the output back gives the input (years 1000 to 9999)', () => {
    const min = -30_610_224_000_000_000n; // 1000-01-01T00:00:00Z
    const max = 253_402_300_799_999_999n; // 9999-12-31T23:59:59.999999Z
    fc.assert(
      fc.property(fc.oneof(fc.bigInt({ min, max }), fc.bigInt({ min: -2_000_000n, max: 2_000_000n })), (micros) => {
        const iso = microsToIso(micros);
        assert.equal(isoToMicros(iso), micros, iso);
      }),
      { numRuns: 300 },
    );
  });

  test('nowMicros is close to Date.now and a whole number of milliseconds', () => {
    const before = BigInt(Date.now()) * 1000n;
    const now = nowMicros();
    const after = BigInt(Date.now()) * 1000n;
    assert.ok(now >= before && now <= after);
    assert.equal(now % 1000n, 0n);
  });
});

const rel = (schema: string, table: string): RelationInfo => ({ schema, table, replicaIdentity: 'd', columns: [] });
const row = { values: [], unchanged: [] };
const ins = (r: RelationInfo): Change => ({ op: 'insert', relation: r, newRow: row });
const upd = (r: RelationInfo): Change => ({ op: 'update', relation: r, oldRow: null, newRow: row });
const del = (r: RelationInfo): Change => ({ op: 'delete', relation: r, oldRow: row });

function tx(position: string, changes: Change[], commitTimeMicros = 1_704_164_645_123_456n): Transaction {
  return { id: `paris:${position}`, site: 'paris', position, commitTimeMicros, sourceTxId: '1', seen: {}, changes };
}

function message(transactions: Transaction[], part: TransactionPart | null = null): ChangeMessage {
  return { site: 'paris', sourceKind: 'postgres', previous: null, transactions, part };
}

describe('messageHeaders', () => {
  const users = rel('public', 'users');
  const orders = rel('shop', 'orders');
  const items = rel('shop', 'items');

  test('one transaction: site, tables, operations, position, commit time, schema version', () => {
    const headers = messageHeaders(message([tx('0000000100000100', [ins(users), ins(orders), upd(users)])]), 3, describeLsn);
    assert.deepEqual(headers, {
      [SCHEMA_VERSION_HEADER]: 3,
      'sitesync-site': 'paris',
      'sitesync-source-kind': 'postgres',
      'sitesync-transactions': 1,
      'sitesync-tables': 'public.users,shop.orders',
      'sitesync-operations': 'insert=2 update=1',
      'sitesync-position': '1/100',
      'sitesync-commit-time': '2024-01-02T03:04:05.123456Z',
      'sitesync-table:paris/public.users': 1,
      'sitesync-table:paris/shop.orders': 1,
    });
    assert.equal(SCHEMA_VERSION_HEADER, 'sitesync-schema-version');
  });

  test('several transactions: tables deduplicated in first-seen order, counts summed, a position range', () => {
    const headers = messageHeaders(
      message([
        tx('00000000000000A0', [upd(orders), del(users)]),
        tx('00000000000000B0', [{ op: 'truncate', relations: [items, users], cascade: false, restartIdentity: false }]),
        tx('0000000200000000', [ins(orders), { op: 'message', prefix: 'app', content: Buffer.from('x') }, del(orders)], 5n),
      ]),
      1,
      describeLsn,
    );
    assert.equal(headers['sitesync-tables'], 'shop.orders,public.users,shop.items');
    assert.equal(headers['sitesync-operations'], 'insert=1 update=1 delete=2 truncate=1 message=1');
    assert.equal(headers['sitesync-position'], '0/A0..2/0');
    assert.equal(headers['sitesync-transactions'], 3);
    assert.equal(headers['sitesync-commit-time'], '1970-01-01T00:00:00.000005Z', 'the commit time of the last transaction');
    assert.equal(headers['sitesync-part'], undefined);
  });

  test('parts carry sitesync-part, the last one marked', () => {
    const t = tx('0000000000001000', [ins(users)]);
    assert.equal(messageHeaders(message([t], { index: 0, last: false }), 1)['sitesync-part'], '0');
    assert.equal(messageHeaders(message([t], { index: 4, last: false }), 1)['sitesync-part'], '4');
    assert.equal(messageHeaders(message([t], { index: 5, last: true }), 1)['sitesync-part'], '5 (last)');
  });

  test('an empty last part has empty tables and operations but keeps its position', () => {
    const headers = messageHeaders(message([tx('0000000000001000', [])], { index: 2, last: true }), 1, describeLsn);
    assert.equal(headers['sitesync-tables'], '');
    assert.equal(headers['sitesync-operations'], '');
    assert.equal(headers['sitesync-position'], '0/1000');
  });

  test('a very long table list is cut', () => {
    const many = Array.from({ length: 500 }, (_, i) => ins(rel('schema_with_a_long_name', `table_${i}`)));
    const tables = String(messageHeaders(message([tx('0000000000001000', many)]), 1)['sitesync-tables']);
    assert.ok(tables.length <= 2001, `length ${tables.length}`);
    assert.ok(tables.endsWith('…'));
    assert.ok(tables.startsWith('schema_with_a_long_name.table_0,schema_with_a_long_name.table_1,'));
  });

  test('property: tables are the distinct touched tables in first-seen order; counts add up', () => {
    const names = ['a.x', 'a.y', 'b.x', 'b."q"', 'c.Ü'];
    const relations = names.map((n) => {
      const [s, t] = n.split('.');
      return rel(s!, t!);
    });
    const changeArb = fc.oneof(
      fc.record({ op: fc.constantFrom('insert', 'update', 'delete'), r: fc.integer({ min: 0, max: names.length - 1 }) }),
      fc.record({ op: fc.constant('truncate'), rs: fc.uniqueArray(fc.integer({ min: 0, max: names.length - 1 }), { minLength: 1, maxLength: 3 }) }),
    );
    fc.assert(
      fc.property(fc.array(fc.array(changeArb, { maxLength: 6 }), { minLength: 1, maxLength: 4 }), (spec) => {
        const order: string[] = [];
        const counts: Record<string, number> = {};
        const txs = spec.map((changes, i) =>
          tx(
            (0x100 + i).toString(16).toUpperCase().padStart(16, '0'),
            changes.map((c): Change => {
              counts[c.op] = (counts[c.op] ?? 0) + 1;
              if ('rs' in c) {
                for (const i of c.rs) if (!order.includes(names[i]!)) order.push(names[i]!);
                return { op: 'truncate', relations: c.rs.map((i) => relations[i]!), cascade: false, restartIdentity: false };
              }
              if (!order.includes(names[c.r]!)) order.push(names[c.r]!);
              const r = relations[c.r]!;
              return c.op === 'insert' ? ins(r) : c.op === 'update' ? upd(r) : del(r);
            }),
          ),
        );
        const headers = messageHeaders(message(txs), 1);
        assert.equal(headers['sitesync-tables'], order.join(','));
        const expectedOps = ['insert', 'update', 'delete', 'truncate', 'message']
          .filter((op) => (counts[op] ?? 0) > 0)
          .map((op) => `${op}=${counts[op]}`)
          .join(' ');
        assert.equal(headers['sitesync-operations'], expectedOps);
        assert.equal(headers['sitesync-transactions'], txs.length);
        assert.ok(txs.length === 1 ? !String(headers['sitesync-position']).includes('..') : String(headers['sitesync-position']).includes('..'));
      }),
      { numRuns: 200 },
    );
  });
});

/** The `sitesync-table:` headers of a message, in order. */
const tableKeys = (headers: Record<string, unknown>): string[] => Object.keys(headers).filter((k) => k.startsWith('sitesync-table:'));

describe('table headers (what the headers exchange routes selective subscribers on)', () => {
  const users = rel('public', 'users');
  const orders = rel('shop', 'orders');
  const items = rel('shop', 'items');

  test('one header per table touched, sitesync-table:<site>/<schema>.<table>, value the integer 1', () => {
    const headers = messageHeaders(
      message([
        tx('00000000000000A0', [upd(orders), del(users)]),
        tx('00000000000000B0', [{ op: 'truncate', relations: [items, users], cascade: false, restartIdentity: false }]),
      ]),
      1,
    );
    assert.deepEqual(tableKeys(headers), ['sitesync-table:paris/shop.orders', 'sitesync-table:paris/public.users', 'sitesync-table:paris/shop.items']);
    for (const key of tableKeys(headers)) assert.equal(headers[key], 1);
    assert.equal(typeof headers['sitesync-table:paris/shop.orders'], 'number');
  });

  test('the site is the message\'s site; a part carries the tables of its own changes', () => {
    const london = { ...message([tx('0000000000001000', [ins(items)])], { index: 3, last: false }), site: 'london_2' };
    assert.deepEqual(tableKeys(messageHeaders(london, 1)), ['sitesync-table:london_2/shop.items']);
  });

  test('no table touched (logical messages only, an empty last part): no table header', () => {
    assert.deepEqual(tableKeys(messageHeaders(message([tx('0000000000001000', [{ op: 'message', prefix: 'app', content: Buffer.from('x') }])]), 1)), []);
    assert.deepEqual(tableKeys(messageHeaders(message([tx('0000000000001000', [])], { index: 2, last: true }), 1)), []);
    assert.deepEqual(tableKeys(messageHeaders(message([]), 1)), []);
  });

  test('unusual names go into the key unchanged (dots, quotes, non-ASCII)', () => {
    assert.deepEqual(tableHeaders('paris', ['a."q"', 'c.Ü', 'Sch.Tab']), {
      'sitesync-table:paris/a."q"': 1,
      'sitesync-table:paris/c.Ü': 1,
      'sitesync-table:paris/Sch.Tab': 1,
    });
  });

  test('past 16 KiB of table headers, one sitesync-table:<site>/* header instead', () => {
    const name = (i: number): string => `schema_with_a_long_name.table_${String(i).padStart(4, '0')}`;
    const entry = Buffer.byteLength(`sitesync-table:paris/${name(0)}`) + 3;
    const fit = Math.floor(MAX_TABLE_HEADERS_BYTES / entry);
    assert.equal(MAX_TABLE_HEADERS_BYTES, 16 * 1024);

    const atLimit = Array.from({ length: fit }, (_, i) => name(i));
    const kept = tableHeaders('paris', atLimit);
    assert.equal(Object.keys(kept).length, fit, 'as many as fit are named');

    const over = [...atLimit, name(fit)];
    assert.deepEqual(tableHeaders('paris', over), { 'sitesync-table:paris/*': 1 });

    const many = Array.from({ length: 2000 }, (_, i) => ins(rel('schema_with_a_long_name', `table_${i}`)));
    const headers = messageHeaders(message([tx('0000000000001000', many)]), 1);
    assert.deepEqual(tableKeys(headers), ['sitesync-table:paris/*']);
    assert.equal(headers['sitesync-table:paris/*'], 1);
    // The other headers are still there, and the whole table stays far below amqplib's 64 KiB.
    assert.equal(headers['sitesync-transactions'], 1);
    assert.ok(Buffer.byteLength(JSON.stringify(headers)) < 8 * 1024);
  });

  test('property: the table headers name exactly the distinct tables, unless they would pass 16 KiB', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.tuple(fc.string({ minLength: 1, maxLength: 63 }), fc.string({ minLength: 1, maxLength: 63 })), { maxLength: 400 }), (pairs) => {
        const tables = [...new Set(pairs.map(([s, t]) => `${s}.${t}`))];
        const headers = tableHeaders('site_1', tables);
        const bytes = tables.reduce((n, t) => n + Buffer.byteLength(`sitesync-table:site_1/${t}`) + 3, 0);
        if (bytes > MAX_TABLE_HEADERS_BYTES) assert.deepEqual(headers, { 'sitesync-table:site_1/*': 1 });
        else assert.deepEqual(Object.keys(headers), tables.map((t) => `sitesync-table:site_1/${t}`));
      }),
      { numRuns: 100 },
    );
  });
});

describe('messageId', () => {
  test('is the first transaction id, with #index for parts', () => {
    const a = tx('00000000000000A0', []);
    const b = tx('00000000000000B0', []);
    assert.equal(messageId(message([a, b])), 'paris:00000000000000A0');
    assert.equal(messageId(message([a], { index: 0, last: false })), 'paris:00000000000000A0#0');
    assert.equal(messageId(message([a], { index: 7, last: true })), 'paris:00000000000000A0#7');
  });

  test('different parts of one transaction and different transactions get different ids', () => {
    const a = tx('00000000000000A0', []);
    const ids = new Set([
      messageId(message([a])),
      messageId(message([a], { index: 0, last: false })),
      messageId(message([a], { index: 1, last: true })),
      messageId(message([tx('00000000000000A1', [])])),
    ]);
    assert.equal(ids.size, 4);
  });

  test('a message without transactions still gets an id naming its site', () => {
    assert.equal(messageId(message([])), 'paris:empty');
    assert.deepEqual(Object.keys(messageHeaders(message([]), 1)).includes('sitesync-position'), false);
  });
});
