/**
 * The web console's server (src/console/) with fake facts: the JSON API's shape, the live feed's events
 * (values hidden unless the server was started with them, filters checked before the stream opens),
 * escaping (JSON that cannot become markup, a page script that never writes markup, no outside resource),
 * the guards (POST only from the console's own page and as JSON; Host only the console's names), every
 * failure one JSON line with its status, and no password in any answer when every service fails.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { readFileSync } from 'node:fs';
import { after, test } from 'node:test';
import type { MessageProperties } from 'amqplib';
import { CONNECTORS } from '../../connectors/index.ts';
import { parseConfig } from '../../src/config/load-config.ts';
import { SitesyncError } from '../../src/errors.ts';
import type { SiteStatus } from '../../src/cli/status-command.ts';
import type { ArchiveEntry } from '../../src/inspect/archive-reader.ts';
import type { ChangeView } from '../../src/inspect/change-format.ts';
import { simpleKind } from '../../src/events/value-kind.ts';
import type { RelationInfo, Transaction } from '../../src/events/transaction.ts';
import { sharedFor, startConsoleServer, type ConsoleServer } from '../../src/console/console-server.ts';
import type { ConsoleData } from '../../src/console/console-data.ts';
import { parseTraceLines } from '../../src/console/console-views.ts';
import { uiCommand } from '../../src/cli/ui-command.ts';

const SECRET = 'sekrit-pw';
const config = parseConfig({
  broker: { url: `amqp://guest:${SECRET}@127.0.0.1:1/` },
  sites: { paris: { postgres: `postgres://sync:${SECRET}@127.0.0.1:1/paris` }, london: { postgres: `postgres://sync:${SECRET}@127.0.0.1:1/london` } },
  log: { level: 'silent' },
});

const native = { name: 'x', id: 0, modifier: -1 };
const notes: RelationInfo = {
  schema: 'public',
  table: 'notes',
  replicaIdentity: 'd',
  columns: [
    { name: 'id', kind: simpleKind('string'), native, key: true },
    { name: 'body', kind: simpleKind('string'), native, key: false },
  ],
};
const evil: RelationInfo = { ...notes, table: '<img src=x onerror=alert(1)>' };

function entry(offset: number, relation: RelationInfo, id: string, body: string): ArchiveEntry {
  const position = (0x16b3748 + offset).toString(16).toUpperCase().padStart(16, '0');
  const tx: Transaction = { id: `paris:${position}`, site: 'paris', position, commitTimeMicros: 1_714_555_800_123_456n, sourceTxId: '1', seen: {}, changes: [{ op: 'insert', relation, newRow: { values: [id, body], unchanged: [] } }] };
  return { kind: 'message', offset, message: { site: 'paris', sourceKind: 'postgres', previous: null, transactions: [tx], part: null }, properties: {} as MessageProperties };
}

const running = (site: string): SiteStatus => ({
  site,
  capture: true,
  captureState: { name: `slot sitesync_${site}`, exists: true, active: true, confirmed: '0/1', current: '0/2', lagBytes: 1, retainedBytes: 2048, release: '' },
  applied: [{ source: site === 'paris' ? 'london' : 'paris', name: 'origin', position: '00000000016B3748', applied: '0/16B3748' }],
  queue: { name: `q.${site}`, messages: 0, consumers: 1, parked: 1 },
});

const calls: string[] = [];
const fakeData: ConsoleData = {
  status: async () => [running('paris'), { site: 'london', capture: true, error: 'database unreachable' }],
  async *follow(signal, onAttached) {
    onAttached?.();
    yield entry(1, notes, 'n1', 'secret body');
    yield entry(2, evil, '<b>k</b>', 'x');
    yield { kind: 'skipped', offset: 3, reason: 'SITESYNC_ERR_DECODE: truncated', site: 'paris' };
    yield entry(4, notes, 'n4', 'x');
    await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
  },
  listParked: async (site) => (site === 'paris' ? { parked: [{ site, id: 'p-1', canRetry: true, parkedAt: '2024-01-01T00:00:00Z', source: 'london', transaction: 'london:00', code: '23514', reason: 'refused' }], truncated: false } : 'missing'),
  async actOnParked(site, action, id) {
    calls.push(`${action} ${site} ${id}`);
    if (id === 'gone') throw new SitesyncError('SITESYNC_ERR_CONFIG', `no parked message gone in q (0 there); list them with: sitesync parked`);
    return [`discarded: ${id}`];
  },
  recentConflicts: async (site) => ({ kind: 'read', entries: [{ site, loggedAt: site === 'paris' ? '2024-01-02T00:00:00.000Z' : '2024-01-01T00:00:00.000Z', kind: 'insert_exists', table: 'public.notes', key: '{"id": "n1"}', remoteSite: 'london', remoteTransaction: 'london:00', localSite: site, policy: 'last-writer-wins', winner: site, resolution: 'skipped' }] }),
  async trace(plan) {
    if (plan.filter.transaction === 'paris:0000000000000001') throw new Error('transaction paris:0000000000000001 is not in the archive x (it keeps 90 days); check the id');
    return [`transaction ${plan.filter.transaction} (paris at 0/16B3748), committed 2024-05-01T09:30:00.123456Z, archive offset 1: 1 change (insert=1) to public.notes`, '  london  applied (london has paris up to 0/16B3748)'];
  },
};

const servers: ConsoleServer[] = [];
after(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

async function start(values = false, data: ConsoleData = fakeData): Promise<ConsoleServer> {
  const server = await startConsoleServer({ config, connectors: CONNECTORS, values, host: '127.0.0.1', port: 0, data });
  servers.push(server);
  return server;
}

interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
  readonly json: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

/** A raw request: headers exactly as given (Host included), so the guards can be tested. */
function call(server: ConsoleServer, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: server.port, method, path, headers: { host: `127.0.0.1:${server.port}`, ...headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => {
        let json: unknown = null;
        try {
          json = JSON.parse(text);
        } catch {
          // not JSON: the page or a script
        }
        resolve({ status: res.statusCode!, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** The feed's events until `count` of them (hello included) arrived; then the page goes away. */
function feed(server: ConsoleServer, path: string, count: number): Promise<{ event: string; data: any }[]> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: server.port, path, headers: { host: `127.0.0.1:${server.port}` } }, (res) => {
      assert.equal(res.statusCode, 200);
      assert.match(String(res.headers['content-type']), /^text\/event-stream/);
      let buffer = '';
      const events: { event: string; data: any }[] = [];
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event && data) {
            assert.doesNotMatch(data, /[<>]/, 'no raw < or > in an event');
            events.push({ event, data: JSON.parse(data) });
          }
          if (events.length >= count) {
            req.destroy();
            resolve(events);
            return;
          }
        }
      });
    });
    req.on('error', (error) => (error.message.includes('socket hang up') ? undefined : reject(error)));
    req.end();
  });
}

test('/api/sites: one card per site with state, lag, retained WAL and queue', async () => {
  const server = await start();
  const answer = await call(server, 'GET', '/api/sites');
  assert.equal(answer.status, 200);
  assert.match(String(answer.headers['content-type']), /^application\/json/);
  assert.equal(answer.json.values, false);
  assert.deepEqual(answer.json.sites[0], {
    site: 'paris', state: 'running', capture: 'streaming', apply: 'consuming', lagBytes: 1, retainedBytes: 2048, captureName: 'slot sitesync_paris',
    applied: [{ source: 'london', position: '0/16B3748' }], queue: { messages: 0, consumers: 1, parked: 1 }, error: null,
  });
  assert.equal(answer.json.sites[1].state, 'unreachable');
  assert.equal(answer.json.sites[1].error, 'database unreachable');
});

test('/api/feed: each transaction as an event, key and column names only unless started with values', async () => {
  const server = await start();
  const events = await feed(server, '/api/feed', 4);
  assert.deepEqual(events.map((e) => e.event), ['hello', 'transaction', 'transaction', 'skipped']);
  assert.deepEqual(events[0]!.data, { values: false, filter: {} });
  const tx = events[1]!.data;
  assert.equal(tx.transaction, 'paris:00000000016B3749');
  assert.equal(tx.displayPosition, '0/16B3749');
  const change = tx.changes[0] as ChangeView;
  assert.equal(change.op, 'insert');
  assert.equal(change.table, 'public.notes');
  assert.deepEqual(change.key, { id: 'n1' });
  assert.deepEqual(change.columns, ['id', 'body']);
  assert.equal(change.row, undefined, 'values hidden');
  assert.ok(!JSON.stringify(events).includes('secret body'));
  assert.equal(events[2]!.data.changes[0].table, 'public.<img src=x onerror=alert(1)>', 'markup arrives as text, escaped on the wire');
  assert.deepEqual(events[3]!.data, { offset: 3, site: 'paris', reason: 'SITESYNC_ERR_DECODE: truncated' });

  const shown = await feed(await start(true), '/api/feed', 2);
  assert.equal(shown[0]!.data.values, true);
  assert.deepEqual(shown[1]!.data.changes[0].row, { id: 'n1', body: 'secret body' }, 'values with --values');
});

test('/api/feed says hello only once the archive reader is attached: a write made after it is in the feed', async () => {
  const order: string[] = [];
  const server = await start(false, {
    ...fakeData,
    async *follow(signal, onAttached) {
      await new Promise((resolve) => setTimeout(resolve, 200)); // the broker answering slowly
      order.push('attached');
      onAttached?.();
      yield entry(1, notes, 'n1', 'x');
      await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
    },
  });
  const events = await feed(server, '/api/feed', 1);
  order.push(events[0]!.event);
  assert.deepEqual(order, ['attached', 'hello']);
});

test('/api/feed filters by site and table, checked before the stream opens', async () => {
  const server = await start();
  const events = await feed(server, '/api/feed?table=public.notes&site=paris', 3);
  assert.deepEqual(events[0]!.data.filter, { site: 'paris', table: 'public.notes' });
  // The other table is left out, and so is the skipped message (a filtered feed asked for one table).
  assert.deepEqual(events.slice(1).map((e) => `${e.event} ${e.data.offset}`), ['transaction 1', 'transaction 4']);
  const bad = await call(server, 'GET', '/api/feed?site=nowhere');
  assert.equal(bad.status, 400);
  assert.match(bad.json.error, /site "nowhere" is not in the configuration; give one of: paris, london/);
  assert.equal((await call(server, 'GET', '/api/feed?table=notes')).status, 400);
});

test('parked, conflicts and trace answer their shapes; failures are one JSON line with a status', async () => {
  const server = await start();
  const parked = await call(server, 'GET', '/api/parked');
  assert.equal(parked.status, 200);
  assert.deepEqual(parked.json, { parked: [{ site: 'paris', id: 'p-1', canRetry: true, parkedAt: '2024-01-01T00:00:00Z', source: 'london', transaction: 'london:00', code: '23514', reason: 'refused' }], truncated: [], problems: [] });
  assert.equal((await call(server, 'GET', '/api/parked?site=nowhere')).status, 400);

  const conflicts = await call(server, 'GET', '/api/conflicts?limit=1');
  assert.equal(conflicts.json.conflicts.length, 1);
  assert.equal(conflicts.json.conflicts[0].site, 'paris', 'newest first, across sites');
  assert.equal((await call(server, 'GET', '/api/conflicts?limit=0')).status, 400);

  const trace = await call(server, 'GET', '/api/trace?transaction=paris:0/16B3748');
  assert.equal(trace.status, 200);
  assert.deepEqual(trace.json.transactions[0].sites, [{ site: 'london', state: 'applied', detail: 'applied (london has paris up to 0/16B3748)' }]);
  assert.equal(trace.json.transactions[0].transaction, 'paris:00000000016B3748');
  const missing = await call(server, 'GET', '/api/trace?transaction=paris:0/1');
  assert.equal(missing.status, 404);
  assert.match(missing.json.error, /is not in the archive/);
  const bad = await call(server, 'GET', '/api/trace?transaction=nonsense');
  assert.equal(bad.status, 400);
  assert.match(bad.json.error, /^SITESYNC_ERR_CONFIG: the transaction id "nonsense" is not a transaction id/);
  assert.equal((await call(server, 'GET', '/api/trace')).status, 400);

  const unknown = await call(server, 'GET', '/api/nothing');
  assert.equal(unknown.status, 404);
  assert.deepEqual(Object.keys(unknown.json), ['error']);
  assert.equal((await call(server, 'POST', '/api/sites', { origin: `http://127.0.0.1:${server.port}`, 'content-type': 'application/json' }, '{}')).status, 405);
  assert.equal((await call(server, 'DELETE', '/')).status, 405);
  for (const answer of [missing, bad, unknown]) assert.ok(!answer.json.error.includes('\n'));
});

test('POST routes: only from the console page, as JSON; one message a click', async () => {
  const server = await start();
  const own = `http://127.0.0.1:${server.port}`;
  const json = { 'content-type': 'application/json' };
  const body = JSON.stringify({ site: 'paris', id: 'p-1' });
  calls.length = 0;
  const refusals: [Record<string, string>, number, RegExp][] = [
    [json, 403, /must come from the console page/],
    [{ ...json, origin: 'http://evil.example' }, 403, /Origin "http:\/\/evil\.example" is not this console/],
    [{ ...json, origin: 'null' }, 403, /is not this console/],
    [{ ...json, 'sec-fetch-site': 'cross-site' }, 403, /cross-site request/],
    [{ ...json, origin: own, 'sec-fetch-site': 'same-site' }, 403, /same-site request/],
    [{ origin: own, 'content-type': 'text/plain' }, 415, /Content-Type: application\/json/],
    [{ origin: own, 'content-type': 'application/x-www-form-urlencoded' }, 415, /JSON/],
  ];
  for (const [headers, status, error] of refusals) {
    const answer = await call(server, 'POST', '/api/parked/discard', headers, body);
    assert.equal(answer.status, status, JSON.stringify(headers));
    assert.match(answer.json.error, error);
  }
  assert.deepEqual(calls, [], 'nothing was done for a refused request');

  const ok = await call(server, 'POST', '/api/parked/discard', { ...json, origin: own, 'sec-fetch-site': 'same-origin' }, body);
  assert.equal(ok.status, 200);
  assert.deepEqual(ok.json, { done: 'discarded: p-1' });
  assert.equal((await call(server, 'POST', '/api/parked/retry', { ...json, 'sec-fetch-site': 'same-origin' }, body)).status, 200);
  assert.deepEqual(calls, ['discard paris p-1', 'retry paris p-1']);

  const post = (payload: string): Promise<Answer> => call(server, 'POST', '/api/parked/discard', { ...json, origin: own }, payload);
  assert.equal((await post('{nope')).status, 400);
  assert.equal((await post(JSON.stringify({ site: 'paris' }))).status, 400);
  assert.equal((await post(JSON.stringify({ site: 'nowhere', id: 'p-1' }))).status, 400);
  assert.match((await post(JSON.stringify({ site: 'paris', id: 'all' }))).json.error, /one message at a time/);
  assert.equal((await post(JSON.stringify({ site: 'paris', id: 'x'.repeat(5000) }))).status, 413);
  const gone = await post(JSON.stringify({ site: 'paris', id: 'gone' }));
  assert.equal(gone.status, 404);
  assert.match(gone.json.error, /no parked message gone/);
});

test('Host must name the console: a rebound DNS name is refused, reads included', async () => {
  const server = await start();
  for (const host of [`evil.example:${server.port}`, 'evil.example']) {
    const answer = await call(server, 'GET', '/api/sites', { host });
    assert.equal(answer.status, 403, host);
    assert.match(answer.json.error, /is not this console's address/);
  }
  assert.equal((await call(server, 'GET', '/api/sites', { host: `localhost:${server.port}` })).status, 200);
});

test('escaping: JSON cannot become markup, the page writes no markup and loads nothing from outside', async () => {
  const server = await start();
  const page = await call(server, 'GET', '/');
  assert.equal(page.status, 200);
  assert.match(String(page.headers['content-type']), /^text\/html/);
  assert.match(String(page.headers['content-security-policy']), /default-src 'none'; script-src 'self'/);
  assert.match(String(page.headers['content-security-policy']), /frame-ancestors 'none'/);
  assert.equal(page.headers['x-content-type-options'], 'nosniff');
  const script = await call(server, 'GET', '/console.js');
  assert.match(String(script.headers['content-type']), /^text\/javascript/);
  assert.equal((await call(server, 'GET', '/console.css')).status, 200);
  const style = (await call(server, 'GET', '/console.css')).text;
  for (const text of [page.text, script.text, style]) assert.doesNotMatch(text, /https?:\/\/|["'(]\/\/\w/i, 'nothing from outside (no internet at test time)');
  assert.doesNotMatch(style, /url\(|@import|@font-face/i, 'system fonts, no outside file');
  assert.doesNotMatch(page.text, /<script>|\son\w+=/i, 'no inline script or handler (the CSP forbids them)');
  // The page script puts data on the page as text only.
  assert.doesNotMatch(script.text, /innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function/);
  assert.equal(readFileSync(new URL('../../src/console/console.js', import.meta.url), 'utf8'), script.text);

  // A value with markup in an API answer travels as \u escapes.
  const markup: ConsoleData = { ...fakeData, status: async () => [{ ...running('paris'), error: '<script>alert(1)</script> & more' }] };
  const answer = await call(await start(false, markup), 'GET', '/api/sites');
  assert.doesNotMatch(answer.text, /[<>&]/);
  assert.equal(answer.json.sites[0].error, '<script>alert(1)</script> & more');
});

test('no password in any answer when every service fails (the real readers, pointed at closed ports)', async () => {
  const server = await startConsoleServer({ config, connectors: CONNECTORS, values: false, host: '127.0.0.1', port: 0 });
  servers.push(server);
  const own = { origin: `http://127.0.0.1:${server.port}`, 'content-type': 'application/json' };
  const answers = [
    await call(server, 'GET', '/api/sites'),
    await call(server, 'GET', '/api/parked'),
    await call(server, 'GET', '/api/conflicts'),
    await call(server, 'GET', '/api/trace?transaction=paris:0/16B3748'),
    await call(server, 'POST', '/api/parked/discard', own, JSON.stringify({ site: 'paris', id: 'p-1' })),
  ];
  const events = await feed(server, '/api/feed', 2);
  assert.equal(events[1]!.event, 'failure');
  assert.match(events[1]!.data.error, /RabbitMQ at amqp:\/\/guest:\*+@127\.0\.0\.1:1\/ is unreachable|unreachable/);
  for (const answer of answers) assert.ok(!answer.text.includes(SECRET), answer.text);
  assert.ok(!JSON.stringify(events).includes(SECRET));
  assert.equal(answers[0]!.json.sites[0].state, 'unreachable');
  assert.equal(answers[1]!.json.problems.length, 2);
  assert.equal(answers[3]!.status, 502);
  assert.equal(answers[4]!.status, 502);
});

test('trace lines become one result per site', () => {
  assert.deepEqual(parseTraceLines(['transaction paris:0A (paris at 0/A), committed x: 1 change', '  london  parked in q as 1: 23514: no', '  madrid  still queued: 1 message waits']), [
    {
      transaction: 'paris:0A',
      summary: 'transaction paris:0A (paris at 0/A), committed x: 1 change',
      sites: [
        { site: 'london', state: 'parked', detail: 'parked in q as 1: 23514: no' },
        { site: 'madrid', state: 'still queued', detail: 'still queued: 1 message waits' },
      ],
    },
  ]);
});

test('sitesync ui warns in one line when it listens anywhere but loopback', async () => {
  const lines: string[] = [];
  const problems: string[] = [];
  const out = { print: (l: string) => lines.push(l), problem: (l: string) => problems.push(l) };
  servers.push(await uiCommand(config, CONNECTORS, { host: '127.0.0.1', port: 0 }, out));
  assert.equal(problems.length, 0, problems.join('\n'));
  assert.match(lines[0]!, /^sitesync ui: console at http:\/\/127\.0\.0\.1:\d+\/ \(keys and column names only; --values shows the values\)/);
  servers.push(await uiCommand(config, CONNECTORS, { host: '0.0.0.0', port: 0, values: true }, out));
  assert.equal(problems.length, 1);
  assert.match(problems[0]!, /^sitesync ui: warning: listening on 0\.0\.0\.0: the console has no authentication/);
  assert.ok(!problems[0]!.includes('\n'));
  // Bound to every address it has every name: the warning above is the guard, not Host.
  assert.equal((await call(servers.at(-1)!, 'GET', '/api/conflicts', { host: 'some-name.example' })).status, 200);
  await assert.rejects(uiCommand(config, CONNECTORS, { host: '127.0.0.1', port: servers.at(-2)!.port }, out), /port \d+ on 127\.0\.0\.1 is in use; pick another with --port/);
});

test('status answers are shared by the pages asking within 2 s of one (or while it is read); a failed one is not', async () => {
  let clock = 0;
  let reads = 0;
  let fail = false;
  const shared = sharedFor(2000, async () => {
    reads++;
    if (fail) throw new Error('unreachable');
    return reads;
  }, () => clock);
  const [a, b] = await Promise.all([shared(), shared()]);
  assert.deepEqual([a, b, reads], [1, 1, 1], 'two pages at once: one read');
  clock = 1999;
  assert.equal(await shared(), 1);
  clock = 2000;
  assert.equal(await shared(), 2, 'older than 2 s: read again');
  clock = 5000;
  fail = true;
  await assert.rejects(shared());
  fail = false;
  assert.equal(await shared(), 4, 'after a failure the next page reads again');
});
