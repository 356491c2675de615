// The sitesync console's page script: plain browser JavaScript, no build step, no library.
//
// Everything shown comes from the wire (table names, keys, reasons, values): it is put on the page only as
// text (textContent, createTextNode), never as markup, so no value can become HTML or script. The server's
// Content-Security-Policy forbids inline script as a second line.
'use strict';

const FEED_ROWS = 200; // changes kept in the feed table
const SITES_EVERY_MS = 5000;
const CONFLICTS_EVERY_MS = 10000;

const $ = (id) => document.getElementById(id);

/** An element with text children only: `el('td', {className: 'key'}, 'id=1')`. */
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (name === 'dataset') Object.assign(node.dataset, value);
    else if (['className', 'title', 'type', 'disabled', 'colSpan'].includes(name)) node[name] = value;
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(child === null || child === undefined ? '' : String(child)));
  return node;
}

function show(node, text) {
  node.textContent = text || '';
  node.hidden = !text;
}

function bytes(n) {
  if (n === null || n === undefined) return '–';
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

/** A JSON value as a cell shows it: text bare, NULL for null, anything else as JSON. */
function scalar(value) {
  if (value === null) return 'NULL';
  return typeof value === 'string' ? value : JSON.stringify(value);
}

function pairs(object) {
  return Object.entries(object || {}).map(([name, value]) => `${name}=${scalar(value)}`).join(', ');
}

/** GET or POST JSON; a failure throws the server's one-line error. */
async function api(path, body) {
  const init = body === undefined ? {} : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
  const response = await fetch(path, init);
  let answer;
  try {
    answer = await response.json();
  } catch {
    throw new Error(`${path}: HTTP ${response.status}`);
  }
  if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
  return answer;
}

// ---- sites -------------------------------------------------------------------------------------------

let parkedTotal = null;

async function loadSites() {
  try {
    const { sites, values } = await api('/api/sites');
    show($('sites-error'), '');
    $('values-note').textContent = values ? 'Every value is shown (started with --values).' : 'Only keys and column names are shown; start sitesync ui with --values to see values.';
    $('feed-rest').textContent = values ? 'values' : 'columns';
    $('sites').replaceChildren(...sites.map(siteCard));
    fillSiteFilter(sites.map((s) => s.site));
    const total = sites.reduce((sum, s) => sum + (s.queue ? s.queue.parked : 0), 0);
    if (parkedTotal !== null && total !== parkedTotal) loadParked();
    parkedTotal = total;
  } catch (error) {
    show($('sites-error'), `sites: ${error.message}`);
  }
}

function siteCard(s) {
  const applied = s.applied.map((a) => `${a.source} up to ${a.position === null ? 'nothing yet' : a.position}`).join('; ');
  return el(
    'div',
    { className: `site ${s.state}`, dataset: { site: s.site, state: s.state } },
    el('h3', {}, s.site, ' ', el('span', { className: `badge ${s.state}` }, s.state)),
    el('dl', {},
      el('dt', {}, 'capture'), el('dd', {}, s.capture),
      el('dt', {}, 'apply'), el('dd', {}, s.apply),
      el('dt', {}, 'lag'), el('dd', { className: 'lag' }, bytes(s.lagBytes)),
      el('dt', {}, 'WAL kept'), el('dd', { className: 'retained' }, bytes(s.retainedBytes)),
      el('dt', {}, 'queue'), el('dd', {}, s.queue ? `${s.queue.messages} waiting, ${s.queue.parked} parked` : '–'),
    ),
    applied ? el('p', { className: 'note' }, `applied: ${applied}`) : '',
    s.error ? el('p', { className: 'error' }, s.error) : '',
  );
}

function fillSiteFilter(names) {
  const select = $('feed-site');
  const have = [...select.options].map((o) => o.value).filter((v) => v !== '');
  if (have.join() === names.join()) return;
  const chosen = select.value;
  // new Option(text, value) sets both as text.
  select.replaceChildren(new Option('every site', ''), ...names.map((name) => new Option(name, name)));
  select.value = names.includes(chosen) ? chosen : '';
}

// ---- live feed ---------------------------------------------------------------------------------------

let source = null;
const seen = new Set(); // offset:transaction already shown: a reconnect starts again at the last message

function feedUrl() {
  const query = new URLSearchParams();
  if ($('feed-site').value) query.set('site', $('feed-site').value);
  if ($('feed-table').value.trim()) query.set('table', $('feed-table').value.trim());
  const text = query.toString();
  return `/api/feed${text ? `?${text}` : ''}`;
}

function connectFeed() {
  if (source) source.close();
  const url = feedUrl();
  show($('feed-error'), '');
  setFeedStatus('connecting');
  source = new EventSource(url);
  source.addEventListener('hello', () => setFeedStatus('live'));
  source.addEventListener('transaction', (event) => addTransaction(JSON.parse(event.data)));
  source.addEventListener('skipped', (event) => addSkipped(JSON.parse(event.data)));
  source.addEventListener('failure', (event) => show($('feed-error'), `feed: ${JSON.parse(event.data).error}`));
  source.onerror = async () => {
    if (source.readyState !== EventSource.CLOSED) {
      setFeedStatus('reconnecting');
      return;
    }
    // Closed for good: the server refused the request (a bad filter); ask again to read its reason.
    setFeedStatus('stopped');
    try {
      await api(url);
    } catch (error) {
      show($('feed-error'), `feed: ${error.message}`);
    }
  };
}

function setFeedStatus(status) {
  const badge = $('feed-status');
  badge.textContent = status;
  badge.className = `badge ${status}`;
}

function addRow(row) {
  const body = $('feed').tBodies[0];
  body.prepend(row);
  while (body.rows.length > FEED_ROWS) body.deleteRow(-1);
}

function addTransaction(tx) {
  const mark = `${tx.offset}:${tx.transaction}`;
  if (seen.has(mark)) return;
  seen.add(mark);
  if (seen.size > 5000) seen.delete(seen.values().next().value);
  // Changes in commit order, each prepended: the transaction's last change ends on top.
  tx.changes.forEach((change, i) => {
    let rest = change.row ? pairs(change.row) : change.columns.join(', ');
    if (change.unchanged.length) rest += ` (unchanged: ${change.unchanged.join(', ')})`;
    if (change.prefix !== undefined) rest = `message ${change.prefix}`;
    if (i === tx.changes.length - 1 && tx.more > 0) rest += ` … and ${tx.more} more change(s)`;
    const traceLink = el('button', { type: 'button', className: 'link', title: 'trace this transaction' }, tx.transaction);
    traceLink.addEventListener('click', () => trace(tx.transaction));
    addRow(
      el('tr', { className: `op-${change.op}`, dataset: { transaction: tx.transaction, op: change.op, table: change.table || '', site: tx.site } },
        el('td', {}, change.commitTime),
        el('td', {}, tx.site),
        el('td', { className: 'op' }, change.op),
        el('td', { className: 'table' }, change.table || '–'),
        el('td', { className: 'key' }, pairs(change.key) + (change.oldKey ? ` (was ${pairs(change.oldKey)})` : '')),
        el('td', { className: 'rest' }, rest),
        el('td', {}, traceLink),
      ),
    );
  });
}

function addSkipped(skipped) {
  addRow(el('tr', { className: 'skipped' }, el('td', {}, ''), el('td', {}, skipped.site || '?'), el('td', { className: 'op' }, 'skipped'), el('td', { colSpan: 4 }, `offset ${skipped.offset}: ${skipped.reason}`)));
}

// ---- parked ------------------------------------------------------------------------------------------

async function loadParked() {
  try {
    const { parked, truncated, problems } = await api('/api/parked');
    const rows = parked.map((p) => {
      const retry = el('button', { type: 'button', disabled: !p.canRetry, title: p.canRetry ? 'send it back to be applied' : 'parked without an id: replay its range, then discard it' }, 'Retry');
      const discard = el('button', { type: 'button', className: 'danger' }, 'Discard');
      retry.addEventListener('click', () => act('retry', p, `Send parked message ${p.id} back to ${p.site}'s queue, to be applied as it is?`));
      discard.addEventListener('click', () => act('discard', p, `Discard parked message ${p.id} of ${p.site} for good? Its changes will not be applied there.`));
      return el('tr', { dataset: { site: p.site, id: p.id, transaction: p.transaction || '' } },
        el('td', {}, p.site), el('td', { className: 'id' }, p.id), el('td', {}, p.parkedAt || '?'), el('td', {}, p.source || '?'),
        el('td', {}, p.transaction || ''), el('td', {}, p.code || ''), el('td', { className: 'reason' }, p.reason), el('td', { className: 'actions' }, retry, ' ', discard));
    });
    $('parked').tBodies[0].replaceChildren(...rows);
    $('parked-empty').hidden = rows.length > 0;
    const notes = [...problems.map((p) => `${p.site}: ${p.error}`), ...truncated.map((site) => `${site}: only the first messages are listed`)];
    if (notes.length) show($('parked-message'), notes.join('; '));
  } catch (error) {
    show($('parked-message'), `parked: ${error.message}`);
  }
}

async function act(action, parked, question) {
  if (!window.confirm(question)) return;
  try {
    const { done } = await api(`/api/parked/${action}`, { site: parked.site, id: parked.id });
    show($('parked-message'), done);
  } catch (error) {
    show($('parked-message'), `${action}: ${error.message}`);
  }
  await loadParked();
  loadSites();
}

// ---- conflicts ---------------------------------------------------------------------------------------

async function loadConflicts() {
  try {
    const { conflicts } = await api('/api/conflicts?limit=50');
    $('conflicts').tBodies[0].replaceChildren(...conflicts.map((c) =>
      el('tr', { className: `resolution-${c.resolution}`, dataset: { site: c.site } },
        el('td', {}, c.loggedAt), el('td', {}, c.site), el('td', {}, c.table), el('td', { className: 'key' }, c.key), el('td', {}, c.kind),
        el('td', {}, c.remoteTransaction), el('td', {}, c.winner), el('td', {}, c.resolution === 'skipped' ? `lost (${c.localSite || 'local'}'s write kept)` : 'applied'))));
    $('conflicts-empty').hidden = conflicts.length > 0;
  } catch (error) {
    $('conflicts-empty').hidden = false;
    $('conflicts-empty').textContent = `conflicts: ${error.message}`;
  }
}

// ---- trace -------------------------------------------------------------------------------------------

async function trace(id) {
  $('trace-id').value = id;
  $('trace-section').scrollIntoView({ block: 'nearest' });
  show($('trace-status'), `tracing ${id}… (reads the archive from its start)`);
  $('trace-result').replaceChildren();
  try {
    const { transactions } = await api(`/api/trace?transaction=${encodeURIComponent(id)}`);
    show($('trace-status'), '');
    $('trace-result').replaceChildren(...transactions.map((t) =>
      el('div', { className: 'trace', dataset: { transaction: t.transaction || '' } },
        el('p', {}, t.summary),
        el('table', {}, el('tbody', {}, ...t.sites.map((s) =>
          el('tr', { className: `state-${s.state.replace(/ /g, '-')}`, dataset: { site: s.site, state: s.state } },
            el('td', {}, s.site), el('td', { className: 'state' }, s.state), el('td', {}, s.detail))))))));
  } catch (error) {
    show($('trace-status'), `trace: ${error.message}`);
  }
}

// ---- start -------------------------------------------------------------------------------------------

function start() {
  $('feed-filter').addEventListener('submit', (event) => {
    event.preventDefault();
    connectFeed();
  });
  $('feed-clear').addEventListener('click', () => {
    $('feed').tBodies[0].replaceChildren();
    seen.clear();
  });
  $('trace-form').addEventListener('submit', (event) => {
    event.preventDefault();
    if ($('trace-id').value.trim()) trace($('trace-id').value.trim());
  });
  $('parked-refresh').addEventListener('click', loadParked);
  connectFeed();
  loadSites();
  loadParked();
  loadConflicts();
  setInterval(loadSites, SITES_EVERY_MS);
  setInterval(loadConflicts, CONFLICTS_EVERY_MS);
}

start();
