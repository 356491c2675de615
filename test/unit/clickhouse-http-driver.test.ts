/**
 * The production driver's requests as ClickHouse's HTTP interface receives them, from a stand-in server on
 * 127.0.0.1 that records them: where the settings go (URL parameters, so `readonly=1` and the deduplication
 * token bind the one request), the login, the statement and the rows; and how a server error comes back (its
 * code as a number, for classify). A real server runs the same driver in clickhouse-live.test.ts.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { parseClickHouseUrl } from '../../connectors/clickhouse/clickhouse-config.ts';
import { ClickHouseServerError } from '../../connectors/clickhouse/clickhouse-driver.ts';
import { classifyClickHouseError } from '../../connectors/clickhouse/clickhouse-errors.ts';
import { ClickHouseHttpDriver } from '../../connectors/clickhouse/clickhouse-http-driver.ts';

interface Seen {
  readonly params: URLSearchParams;
  readonly body: string;
  readonly authorization: string | undefined;
}

let server: Server;
let port: number;
const seen: Seen[] = [];
let answer: (request: Seen) => { status: number; body: string; headers?: Record<string, string> } = () => ({ status: 200, body: '' });

before(async () => {
  server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const request = { params: new URL(req.url!, 'http://x').searchParams, body: Buffer.concat(chunks).toString('utf8'), authorization: req.headers.authorization };
      seen.push(request);
      const { status, body, headers } = answer(request);
      res.writeHead(status, { 'Content-Type': 'text/plain', ...headers });
      res.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});
after(() => new Promise<void>((resolve) => server.close(() => resolve())));

const driver = (): ClickHouseHttpDriver => new ClickHouseHttpDriver(parseClickHouseUrl(`clickhouse://sitesync:p%40ss@127.0.0.1:${port}/analytics`));

test('a query: the statement in the body, the read settings and its own as URL parameters, the login and database', async () => {
  answer = () => ({ status: 200, body: JSON.stringify({ meta: [{ name: 'n', type: 'Int64' }], data: [['9007199254740993']], rows: 1 }) });
  const d = driver();
  try {
    const result = await d.query('SELECT n FROM t', { readonly: 1, max_result_rows: 11 });
    assert.deepEqual(result, { columns: [{ name: 'n', type: 'Int64' }], rows: [['9007199254740993']] });
  } finally {
    await d.close();
  }
  const request = seen.at(-1)!;
  assert.match(request.body, /^SELECT n FROM t\s+FORMAT JSONCompact\s*$/);
  assert.equal(request.params.get('readonly'), '1');
  assert.equal(request.params.get('max_result_rows'), '11');
  assert.equal(request.params.get('output_format_json_quote_64bit_integers'), '1');
  assert.equal(request.params.get('output_format_decimal_trailing_zeros'), '1');
  assert.equal(request.params.get('database'), 'analytics');
  assert.equal(request.authorization, `Basic ${Buffer.from('sitesync:p@ss').toString('base64')}`);
});

test('an insert: the table as given (quoted), the rows as JSON lines, the deduplication token as a URL parameter', async () => {
  answer = () => ({ status: 200, body: '' });
  const d = driver();
  try {
    await d.insert('`analytics`.`app__items`', [{ id: '1', note: 'a\nb' }, { id: '2', note: null }], { dedupToken: 'sitesync:abc' });
  } finally {
    await d.close();
  }
  const request = seen.at(-1)!;
  assert.equal(request.params.get('query'), 'INSERT INTO `analytics`.`app__items` FORMAT JSONEachRow');
  assert.equal(request.params.get('insert_deduplication_token'), 'sitesync:abc');
  assert.equal(request.params.get('insert_deduplicate'), '1');
  assert.deepEqual(request.body.trim().split('\n').map((l) => JSON.parse(l)), [{ id: '1', note: 'a\nb' }, { id: '2', note: null }]);
});

test("a server's refusal comes back as ClickHouseServerError with its code, graded by it", async () => {
  answer = () => ({
    status: 404,
    body: "Code: 60. DB::Exception: Unknown table expression identifier 'nope'. (UNKNOWN_TABLE) (version 25.8.1.1)\n",
    headers: { 'X-ClickHouse-Exception-Code': '60' },
  });
  const d = driver();
  try {
    await assert.rejects(d.command('SELECT * FROM nope'), (error) => {
      assert.ok(error instanceof ClickHouseServerError, String(error));
      assert.equal(error.code, 60);
      assert.equal(classifyClickHouseError(error), 'schema');
      return true;
    });
  } finally {
    await d.close();
  }
});
