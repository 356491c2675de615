/**
 * The web console end to end, in a real browser: Debian's Chromium driven by playwright-core, against the
 * real RabbitMQ and PostgreSQL with two sites running in this process. A write at one site shows in the
 * live feed (its table and operation, its key as text even when it looks like markup, no other value); the
 * header shows both sites running; a trace of that transaction, from the feed, says it was applied at the
 * other site; a full-page screenshot is kept (test-artifacts/console.png) and is a real picture; a message
 * the other site refused shows in the parked list, and Discard (after its confirm dialog) removes it.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { CONNECTORS } from '../../connectors/index.ts';
import { parkingQueue } from '../../src/config/names.ts';
import { startConsoleServer, type ConsoleServer } from '../../src/console/console-server.ts';
import { createTestSites, parkedMessages, sql, waitFor, type TestSites } from '../helpers/test-sites.ts';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = new URL('../../test-artifacts/', import.meta.url).pathname;
const SCREENSHOT = `${ARTIFACTS}console.png`;

let t: TestSites;
let paris: string;
let london: string;
let console_: ConsoleServer;
let browser: Browser;
let page: Page;

before(async () => {
  // Not a skip: the console's only end-to-end proof needs the browser, which the project's setup installs.
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium is missing (${CHROMIUM}): run npm run setup, which installs Debian's chromium package`);
  // London refuses id 666 and parks what it refuses, so that the parked list has something to show.
  t = await createTestSites(['paris', 'london'], { apply: { retrySeconds: 0.5, onDataError: 'park' } }, { leastPrivilege: false });
  ({ paris, london } = t.sites as { paris: string; london: string });
  await t.everywhere(`CREATE TABLE notes (id text PRIMARY KEY, body text); CREATE TABLE accounts (id int PRIMARY KEY, name text)`);
  await sql(t.db('london'), `ALTER TABLE accounts ADD CONSTRAINT not_666 CHECK (id <> 666)`);
  await t.start('paris');
  await t.start('london');
  console_ = await startConsoleServer({ config: t.config, connectors: CONNECTORS, values: false, host: '127.0.0.1', port: 0 });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(error.message));
  page.on('console', (message) => void (message.type() === 'error' && errors.push(message.text())));
  (page as Page & { scriptErrors?: string[] }).scriptErrors = errors;
  await page.goto(console_.url);
  await page.locator('#feed-status', { hasText: 'live' }).waitFor({ timeout: 30_000 });
});

after(async () => {
  await browser?.close().catch(() => undefined);
  await console_?.close();
  await t?.cleanup();
});

test('a write at one site shows in the live feed, the header shows both sites, the trace says applied at the other', async () => {
  // The key looks like markup: the page must show it as text. The body is a value: hidden without --values.
  await sql(t.db('paris'), `INSERT INTO notes VALUES ('<i>n1</i>', 'a private body')`);
  const row = page.locator('#feed tbody tr[data-op="insert"][data-table="public.notes"]').first();
  await row.waitFor({ timeout: 60_000 });
  assert.equal(await row.locator('td.op').textContent(), 'insert');
  assert.equal(await row.locator('td.table').textContent(), 'public.notes');
  assert.ok(await row.locator('td.op').isVisible());
  assert.ok(await row.locator('td.table').isVisible());
  assert.equal(await row.locator('td.key').textContent(), 'id=<i>n1</i>', 'markup shown as text');
  assert.equal(await page.locator('#feed i').count(), 0, 'no element made from a value');
  assert.equal(await row.locator('td.rest').textContent(), 'id, body', 'column names, no values');
  assert.ok(!(await page.content()).includes('a private body'), 'values hidden unless --values');
  const transaction = (await row.getAttribute('data-transaction'))!;
  assert.match(transaction, new RegExp(`^${paris}:[0-9A-F]{16}$`));

  // The header: both sites, running (capture streaming, a consumer on the queue), with their lag and WAL kept.
  for (const site of [paris, london]) {
    const card = page.locator(`#sites .site[data-site="${site}"]`);
    await card.locator('.badge', { hasText: 'running' }).waitFor({ timeout: 30_000 });
    assert.match((await card.locator('dd.lag').textContent())!, /^\d+(\.\d)? (B|KiB|MiB|GiB)$/);
    assert.match((await card.locator('dd.retained').textContent())!, /^(\d+(\.\d+)? (B|KiB|MiB|GiB)|–)$/);
  }

  // Trace, from the feed's link, once london has the row.
  await waitFor('london to apply the note', async () => (await sql(t.db('london'), `SELECT 1 FROM notes WHERE id = '<i>n1</i>'`)).length === 1, 60_000);
  await row.locator('button.link').click();
  const result = page.locator(`#trace-result .trace[data-transaction="${transaction}"]`);
  await result.waitFor({ timeout: 60_000 });
  const londonLine = result.locator(`tr[data-site="${london}"]`);
  assert.equal(await londonLine.getAttribute('data-state'), 'applied', (await londonLine.textContent()) ?? '');
  assert.match((await londonLine.textContent())!, new RegExp(`applied \\(${london} has ${paris} up to [0-9A-F]+/[0-9A-F]+\\)`));
  assert.equal(await result.locator('tr').count(), 1, 'one line per other site');

  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  const png = readFileSync(SCREENSHOT);
  assert.equal(png.subarray(1, 4).toString('latin1'), 'PNG');
  const width = png.readUInt32BE(16); // IHDR: the first chunk, right after the 8-byte signature
  assert.ok(width > 800, `screenshot width ${width}`);
  assert.ok(statSync(SCREENSHOT).size > 10 * 1024, `screenshot of ${statSync(SCREENSHOT).size} bytes: too small to show the page`);
  assert.deepEqual((page as Page & { scriptErrors?: string[] }).scriptErrors, [], 'no error in the page script');
});

test('a parked message shows in the parked list, and Discard removes it', async () => {
  await sql(t.db('paris'), `INSERT INTO accounts VALUES (666, 'refused at london')`);
  const [feedRow] = await Promise.all([page.locator('#feed tbody tr[data-table="public.accounts"]').first().elementHandle({ timeout: 60_000 })]);
  const transaction = (await feedRow!.getAttribute('data-transaction'))!;
  await waitFor('london to park it', async () => (await parkedMessages(parkingQueue(london))).some((m) => m.properties.headers?.['sitesync-parked-transaction'] === transaction), 60_000);
  const row = page.locator(`#parked tbody tr[data-site="${london}"][data-transaction="${transaction}"]`);
  // The page reloads the list when a site's parked count changes (polled); Refresh makes it now.
  await page.locator('#parked-refresh').click();
  await row.waitFor({ timeout: 30_000 });
  assert.match((await row.locator('td.reason').textContent())!, /not_666/);

  const dialogs: string[] = [];
  page.once('dialog', (dialog) => {
    dialogs.push(dialog.message());
    void dialog.accept();
  });
  await row.locator('button', { hasText: 'Discard' }).click();
  await row.waitFor({ state: 'detached', timeout: 30_000 });
  assert.match(dialogs[0]!, /^Discard parked message \S+ of .* for good\?/);
  assert.match((await page.locator('#parked-message').textContent())!, /^discarded: /);
  assert.ok(!(await parkedMessages(parkingQueue(london))).some((m) => m.properties.headers?.['sitesync-parked-transaction'] === transaction), 'gone from the parking queue');
});
