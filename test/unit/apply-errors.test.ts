/**
 * What a failed apply calls for (connectors/postgres/postgres-errors.ts): a message that breaks the plan is a
 * data error, never retried for ever as transient; a cancel or a lost connection is transient.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classifyApplyError } from '../../connectors/postgres/postgres-errors.ts';
import { SitesyncError } from '../../src/errors.ts';

const pgError = (code: string): Error => Object.assign(new Error(`SQLSTATE ${code}`), { code });

test('an error without a SQLSTATE is a data error unless the connection is gone', () => {
  assert.equal(classifyApplyError(new TypeError("Cannot read properties of undefined (reading 'length')")), 'data');
  assert.equal(classifyApplyError(new RangeError('Invalid time value')), 'data');
  assert.equal(classifyApplyError(new Error('Connection terminated unexpectedly')), 'transient');
  assert.equal(classifyApplyError(new Error('Client has encountered a connection error and is not queryable')), 'transient');
  assert.equal(classifyApplyError(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET', syscall: 'read' })), 'transient');
  assert.equal(classifyApplyError(Object.assign(new Error('Channel closed'), { name: 'IllegalOperationError' })), 'transient');
});

test('a cancel (statement_timeout) and a lock timeout are transient; refused data and a missing table are not', () => {
  assert.equal(classifyApplyError(pgError('57014')), 'transient');
  assert.equal(classifyApplyError(pgError('55P03')), 'transient');
  assert.equal(classifyApplyError(pgError('40P01')), 'transient');
  assert.equal(classifyApplyError(pgError('23514')), 'data');
  assert.equal(classifyApplyError(pgError('22P05')), 'data');
  assert.equal(classifyApplyError(pgError('42P01')), 'schema');
  assert.equal(classifyApplyError(new SitesyncError('SITESYNC_ERR_NOT_REPLICATED', 'x')), 'data');
  assert.equal(classifyApplyError(new SitesyncError('SITESYNC_ERR_GAP', 'x')), 'schema');
});
