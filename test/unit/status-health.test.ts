/**
 * `sitesync status` fails when a service it must read did not answer, and only then.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { unreachableServices, type SiteStatus } from '../../src/cli/status-command.ts';

const BROKER_DOWN = 'SITESYNC_ERR_BROKER_UNREACHABLE: RabbitMQ at amqp://guest:***@127.0.0.1:1/ is unreachable (connect ECONNREFUSED 127.0.0.1:1); start it or fix broker.url';

function healthy(site: string): SiteStatus {
  return {
    site,
    capture: true,
    captureState: { name: `slot sitesync_${site}`, exists: true, active: true, confirmed: '0/1', current: '0/1', lagBytes: 0, retainedBytes: 0, release: `SELECT pg_drop_replication_slot('sitesync_${site}')` },
    applied: [],
    queue: { name: `SITE_${site.toUpperCase()}`, messages: 0, consumers: 1, parked: 0 },
  };
}

test('every service answered: nothing is unreachable', () => {
  assert.deepEqual(unreachableServices([healthy('paris'), healthy('london')]), []);
});

test('a queue not declared yet, or a slot not created yet, is a state, not an unreachable service', () => {
  const fresh: SiteStatus = {
    ...healthy('madrid'),
    captureState: { ...healthy('madrid').captureState!, exists: false },
    queue: { name: 'SITE_MADRID', error: 'not declared yet (run the site once)' },
  };
  assert.deepEqual(unreachableServices([healthy('paris'), fresh]), []);
});

test('one line per site whose database could not be read', () => {
  const { captureState: _state, applied: _applied, ...rest } = healthy('london');
  const down: SiteStatus = { ...rest, error: 'SITESYNC_ERR_DATABASE_UNREACHABLE: PostgreSQL of site london is unreachable' };
  assert.deepEqual(unreachableServices([healthy('paris'), down]), ['site london: SITESYNC_ERR_DATABASE_UNREACHABLE: PostgreSQL of site london is unreachable']);
});

test('RabbitMQ unreachable is one line, however many sites report it', () => {
  const statuses = ['paris', 'london', 'madrid'].map((site): SiteStatus => ({ ...healthy(site), queue: { name: `SITE_${site.toUpperCase()}`, error: BROKER_DOWN, unreachable: true } }));
  assert.deepEqual(unreachableServices(statuses), [`RabbitMQ: ${BROKER_DOWN}`]);
});

test('databases and the broker down together: the sites first, then RabbitMQ', () => {
  const paris: SiteStatus = { site: 'paris', capture: true, error: 'paris down', queue: { name: 'SITE_PARIS', error: BROKER_DOWN, unreachable: true } };
  const london: SiteStatus = { site: 'london', capture: false, error: 'london down', queue: { name: 'SITE_LONDON', error: BROKER_DOWN, unreachable: true } };
  assert.deepEqual(unreachableServices([paris, london]), ['site paris: paris down', 'site london: london down', `RabbitMQ: ${BROKER_DOWN}`]);
});
