/**
 * `sitesync replay` options: times and positions in the forms people type, checked against the
 * configuration before anything is touched.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { streamStart } from '../../src/apply/replay.ts';
import { parseConfig } from '../../src/config/load-config.ts';
import { parseReplayPoint, planReplay } from '../../src/cli/replay-command.ts';
import { SitesyncError } from '../../src/errors.ts';
import { CONNECTORS } from '../../connectors/index.ts';
import { postgresPositions } from '../../connectors/postgres/postgres-positions.ts';

const config = parseConfig({
  broker: { url: 'amqp://guest:guest@127.0.0.1:5672/' },
  sites: {
    paris: { postgres: 'postgres://postgres@127.0.0.1:5432/paris' },
    london: { postgres: 'postgres://postgres@127.0.0.1:5432/london' },
    madrid: { postgres: 'postgres://postgres@127.0.0.1:5432/madrid' },
  },
});

function configError(fragment: RegExp): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.ok(error instanceof SitesyncError, String(error));
    assert.equal(error.code, 'SITESYNC_ERR_CONFIG');
    assert.match(error.message, fragment);
    assert.doesNotMatch(error.message, /\n/);
    return true;
  };
}

const micros = (iso: string, extra = 0n): bigint => BigInt(Date.parse(iso)) * 1000n + extra;

test('positions: PostgreSQL X/Y form and sitesync 16-digit form give the same position', () => {
  assert.deepEqual(parseReplayPoint('0/16B3748', '--from', postgresPositions), { kind: 'position', position: '00000000016B3748', text: '0/16B3748' });
  assert.deepEqual(parseReplayPoint('1A/ff', '--from', postgresPositions), { kind: 'position', position: '0000001A000000FF', text: '1A/ff' });
  assert.deepEqual(parseReplayPoint('00000000016b3748', '--to', postgresPositions), { kind: 'position', position: '00000000016B3748', text: '00000000016b3748' });
});

test('times: ISO 8601, UTC without an offset, microseconds kept', () => {
  const point = (text: string) => {
    const p = parseReplayPoint(text, '--from', postgresPositions);
    assert.equal(p.kind, 'time');
    return p.kind === 'time' ? p.micros : 0n;
  };
  assert.equal(point('2024-05-01T09:30:00Z'), micros('2024-05-01T09:30:00Z'));
  assert.equal(point('2024-05-01T09:30:00'), micros('2024-05-01T09:30:00Z'));
  assert.equal(point('2024-05-01 09:30'), micros('2024-05-01T09:30:00Z'));
  assert.equal(point('2024-05-01'), micros('2024-05-01T00:00:00Z'));
  assert.equal(point('2024-05-01T11:30:00+02:00'), micros('2024-05-01T09:30:00Z'));
  assert.equal(point('2024-05-01T11:30:00+0200'), micros('2024-05-01T09:30:00Z'));
  assert.equal(point('2024-05-01T04:30:00-05'), micros('2024-05-01T09:30:00Z'));
  assert.equal(point('2024-05-01T09:30:00.123456Z'), micros('2024-05-01T09:30:00Z', 123456n));
  assert.equal(point('2024-05-01T09:30:00.5Z'), micros('2024-05-01T09:30:00Z', 500000n));
  assert.equal(point('2024-05-01T09:30:00.123456789Z'), micros('2024-05-01T09:30:00Z', 123456n));
});

test('anything else is one line naming both accepted forms', () => {
  for (const bad of ['yesterday', '', '2024-02-30', '2024-13-01T00:00:00Z', '2024-05-01T24:00:00Z', '0/', '0/123456789', '16B3748', '2024-05-01T09:30:00+25:00']) {
    assert.throws(() => parseReplayPoint(bad, '--from', postgresPositions), configError(/^--from ".*" is neither a time nor a position; give an ISO 8601 time .* or a position \(0\/16B3748, as the source's database prints it\)/), bad);
  }
});

test('planReplay: every other site by default, one with --source', () => {
  const all = planReplay(config, { site: 'london', from: '2024-05-01T00:00:00Z' }, CONNECTORS);
  assert.deepEqual(all.sources, ['paris', 'madrid']);
  assert.equal(all.to, null);
  const one = planReplay(config, { site: 'london', from: '0/10', to: '0/20', source: 'paris' }, CONNECTORS);
  assert.deepEqual(one.sources, ['paris']);
  assert.deepEqual(one.from, { kind: 'position', position: '0000000000000010', text: '0/10' });
});

test('planReplay refuses what cannot work, in one line', () => {
  assert.throws(() => planReplay(config, { site: 'rome', from: '0/10' }, CONNECTORS), configError(/site "rome" is not in the configuration \(sites: paris, london, madrid\)/));
  assert.throws(() => planReplay(config, { site: 'london', from: '0/10', source: 'london' }, CONNECTORS), configError(/--source london is the site being replayed into/));
  assert.throws(() => planReplay(config, { site: 'london', from: '0/10', source: 'rome' }, CONNECTORS), configError(/--source "rome" is not in the configuration/));
  assert.throws(() => planReplay(config, { site: 'london', from: '0/10' }, CONNECTORS), configError(/a position belongs to one source site.*add --source/));
  assert.throws(() => planReplay(config, { site: 'london', from: '2024-05-01', to: '0/10' }, CONNECTORS), configError(/add --source/));
  assert.throws(() => planReplay(config, { site: 'london', from: '0/20', to: '0/10', source: 'paris' }, CONNECTORS), configError(/--to 0\/10 is before --from 0\/20/));
  assert.throws(() => planReplay(config, { site: 'london', from: '2024-05-02', to: '2024-05-01' }, CONNECTORS), configError(/--to 2024-05-01 is before --from 2024-05-02/));
});

test('the stream starts at a time in whole seconds, rounded down, or at the first message for a position', () => {
  assert.equal(streamStart({ kind: 'position', position: '0000000000000010', text: '0/10' }), 'first');
  assert.deepEqual(streamStart({ kind: 'time', micros: 1_714_555_800_999_999n, text: '' }), { '!': 'timestamp', value: 1_714_555_800 });
  assert.deepEqual(streamStart({ kind: 'time', micros: -5n, text: '' }), { '!': 'timestamp', value: 0 });
});

test('sites with capture off are left out of the default sources, and replayed only when named', () => {
  const oneSender = parseConfig({
    broker: { url: 'amqp://guest:guest@127.0.0.1:5672/' },
    sites: {
      paris: { postgres: 'postgres://postgres@127.0.0.1:5432/paris' },
      london: { postgres: 'postgres://postgres@127.0.0.1:5432/london', capture: false },
      madrid: { postgres: 'postgres://postgres@127.0.0.1:5432/madrid', capture: false },
    },
  });
  assert.deepEqual(planReplay(oneSender, { site: 'london', from: '0/1' }, CONNECTORS).sources, ['paris']);
  assert.throws(() => planReplay(oneSender, { site: 'paris', from: '0/1' }, CONNECTORS), configError(/every site but paris has capture off.*--source/));
  assert.deepEqual(planReplay(oneSender, { site: 'paris', source: 'madrid', from: '0/1' }, CONNECTORS).sources, ['madrid']);
});
