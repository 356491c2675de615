/**
 * Conflict resolutions in the log: one info line per interval in which any happened, grouped by
 * source→site and kind, never one line each (src/observability/conflict-summary.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConflictSummary } from '../../src/observability/conflict-summary.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { PipelineEvents } from '../../src/observability/pipeline-events.ts';

interface LogLine {
  level: number;
  msg: string;
  conflicts?: number;
  seconds?: number;
  groups?: { source: string; site: string; kind: string; applied: number; skipped: number; tables: string[] }[];
}

function harness(intervalMs = 10_000) {
  const events = new PipelineEvents();
  const lines: LogLine[] = [];
  const logger = createLogger('info', { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) });
  let clock = 1_000_000;
  const summary = new ConflictSummary({ events, logger, intervalMs, now: () => clock });
  const conflict = (source: string, kind: string, resolution: 'apply' | 'skip', table = 'public.accounts') =>
    events.emit('apply:conflict', { site: 'paris', source, kind, table, resolution });
  return { events, lines, summary, conflict, advance: (ms: number) => (clock += ms) };
}

test('43 conflicts in 10 s are one line, grouped by source→site and kind, the largest group first', () => {
  const h = harness();
  for (let i = 0; i < 40; i++) h.conflict('london', 'update_origin_differs', 'apply');
  h.conflict('london', 'update_origin_differs', 'skip');
  h.conflict('london', 'update_origin_differs', 'skip', 'public.orders');
  h.conflict('madrid', 'insert_exists', 'skip');
  assert.equal(h.lines.length, 0, 'nothing logged per conflict');
  h.advance(10_000);
  const line = h.summary.flush();
  assert.equal(line, 'conflicts resolved in the last 10 s: 43 (london→paris update_origin_differs: 40 applied, 2 skipped; madrid→paris insert_exists: 1 skipped)');
  assert.equal(h.lines.length, 1);
  const logged = h.lines[0]!;
  assert.equal(logged.level, 30, 'info');
  assert.equal(logged.msg, line);
  assert.equal(logged.conflicts, 43);
  assert.equal(logged.seconds, 10);
  assert.deepEqual(logged.groups, [
    { source: 'london', site: 'paris', kind: 'update_origin_differs', applied: 40, skipped: 2, tables: ['public.accounts', 'public.orders'] },
    { source: 'madrid', site: 'paris', kind: 'insert_exists', applied: 0, skipped: 1, tables: ['public.accounts'] },
  ]);
});

test('an interval without conflicts logs nothing; the next one counts only its own', () => {
  const h = harness();
  h.conflict('london', 'delete_missing', 'skip');
  h.advance(10_000);
  assert.ok(h.summary.flush());
  h.advance(10_000);
  assert.equal(h.summary.flush(), null);
  h.conflict('london', 'delete_missing', 'skip');
  h.advance(10_000);
  assert.equal(h.summary.flush(), 'conflicts resolved in the last 10 s: 1 (london→paris delete_missing: 1 skipped)');
  assert.equal(h.lines.length, 2);
});

test('started, it logs on its own every interval; stopped, it logs what is left and stops listening', async () => {
  const h = harness(50);
  h.summary.start();
  h.conflict('london', 'update_missing', 'apply');
  const deadline = Date.now() + 5000;
  while (h.lines.length === 0 && Date.now() < deadline) await sleep(10);
  assert.equal(h.lines.length, 1, 'a summary without a flush call');
  assert.match(h.lines[0]!.msg, /^conflicts resolved in the last \d+ s: 1 \(london→paris update_missing: 1 applied\)$/);
  h.conflict('london', 'update_missing', 'skip');
  h.summary.stop();
  assert.equal(h.lines.length, 2, 'the rest at stop');
  assert.match(h.lines[1]!.msg, /: 1 \(london→paris update_missing: 1 skipped\)$/);
  h.conflict('london', 'update_missing', 'skip');
  await sleep(120);
  assert.equal(h.summary.flush(), null, 'no longer listening');
  assert.equal(h.events.listenerCount('apply:conflict'), 0);
});
