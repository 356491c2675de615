import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startReplicationCommand } from '../../connectors/postgres/start-replication.ts';

test("every version: no origin option, so relayed transactions reach capture (which drops them and learns `seen` from them)", () => {
  assert.equal(
    startReplicationCommand('sitesync_paris', 'sitesync_paris'),
    `START_REPLICATION SLOT "sitesync_paris" LOGICAL 0/0 (proto_version '1', publication_names 'sitesync_paris', messages 'true')`,
  );
  assert.doesNotMatch(startReplicationCommand('sitesync_paris', 'sitesync_paris'), /origin/);
});

test('names are quoted: a quote in the publication name cannot end the option', () => {
  assert.match(startReplicationCommand('s"x', "p'y"), /SLOT "s""x" .*publication_names 'p''y'/);
});
