import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startReplicationCommand } from '../../connectors/postgres/start-replication.ts';

test('PostgreSQL 15: no origin option (the server would reject it); capture filters relayed writes itself', () => {
  assert.equal(
    startReplicationCommand('sitesync_paris', 'sitesync_paris', 150020),
    `START_REPLICATION SLOT "sitesync_paris" LOGICAL 0/0 (proto_version '1', publication_names 'sitesync_paris', messages 'true')`,
  );
});

test("PostgreSQL 16 and later: the server drops origin-tagged transactions (origin 'none')", () => {
  assert.match(startReplicationCommand('sitesync_paris', 'sitesync_paris', 160001), /, origin 'none'\)$/);
  assert.match(startReplicationCommand('sitesync_paris', 'sitesync_paris', 170000), /, origin 'none'\)$/);
});

test('names are quoted: a quote in the publication name cannot end the option', () => {
  assert.match(startReplicationCommand('s"x', "p'y", 150000), /SLOT "s""x" .*publication_names 'p''y'/);
});
