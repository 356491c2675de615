/**
 * `sitesync status` shows each running snapshot with its progress and each open join, one line each.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatStatus, progressBar, type SiteStatus } from '../../src/cli/status-command.ts';

const site: SiteStatus = {
  site: 'paris',
  capture: true,
  applied: [],
  snapshots: [
    { id: 's1', table: 'public.accounts', targets: ['madrid'], nextChunk: 3, rowsSent: 2500, estimatedRows: 10_000, state: 'running', startedAt: new Date(0), updatedAt: new Date(0) },
  ],
  joins: [{ joinId: 'j1', role: 'donor', peer: 'madrid', state: 'holding', snapshotIds: ['s1'], startedAt: new Date(0), endedAt: null }],
};

test('a running snapshot is one line with a bar and its share; a join says who holds for whom', () => {
  const lines = formatStatus([site]).split('\n');
  assert.ok(lines.includes('  snapshot s1 of public.accounts to madrid: [#####---------------] 2500/10000 rows (25%)'), lines.join('\n'));
  assert.ok(lines.some((l) => l.startsWith('  join j1: donor for madrid (holding: applying nothing from other sites')), lines.join('\n'));
  const joiner = formatStatus([{ ...site, snapshots: [], joins: [{ ...site.joins![0]!, role: 'joiner', peer: 'paris', state: 'catching-up' }] }]);
  assert.match(joiner, /join j1: joining from paris \(catching-up\)/);
});

test('the bar never shows full before the snapshot is done, and is empty when nothing is known', () => {
  assert.equal(progressBar({ rowsSent: 10_000, estimatedRows: 10_000, state: 'running' }, 10), '[#########-]');
  assert.equal(progressBar({ rowsSent: 10_000, estimatedRows: 10_000, state: 'done' }, 10), '[##########]');
  assert.equal(progressBar({ rowsSent: 0, estimatedRows: 0, state: 'running' }, 10), '[----------]');
  assert.equal(progressBar({ rowsSent: 500, estimatedRows: 100, state: 'running' }, 10), '[#########-]'); // estimate exceeded
});
