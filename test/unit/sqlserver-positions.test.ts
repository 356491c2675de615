/**
 * SQL Server positions: a commit LSN's 10 bytes as 20 hex digits, ordered as the server orders LSNs, shown and
 * read in the forms SQL Server's tools print (`0x…` binary, `vlf:block:slot` as fn_dblog and Debezium show it).
 * The LSNs here are invented (no server recorded them), in the shapes Microsoft's documentation shows.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { compareLsn, describeLsn, lsnFromBytes, lsnToBytes, parseLsnText, sqlserverPositions } from '../../connectors/sqlserver/sqlserver-positions.ts';

test('invented LSNs: bytes, display and the forms a person types', () => {
  const bytes = Buffer.from([0x00, 0x00, 0x00, 0x2a, 0x00, 0x00, 0x01, 0xf0, 0x00, 0x03]);
  const lsn = lsnFromBytes(bytes);
  assert.equal(lsn, '0000002A000001F00003');
  assert.deepEqual(lsnToBytes(lsn), bytes);
  assert.equal(describeLsn(lsn), '0000002a:000001f0:0003');
  assert.equal(parseLsnText('0000002a:000001f0:0003'), lsn);
  assert.equal(parseLsnText('2a:1f0:3'), lsn);
  assert.equal(parseLsnText('0x0000002A000001F00003'), lsn);
  assert.equal(parseLsnText('0000002a000001f00003'), lsn);
  for (const bad of ['', '0/16B3748', '0x123', '1:2', 'zz:1:1', '000000000:1:1']) assert.equal(parseLsnText(bad), null, bad);
  assert.throws(() => lsnFromBytes(Buffer.alloc(9)), /10/);
  assert.equal(sqlserverPositions.isPosition(lsn), true);
  assert.equal(sqlserverPositions.isPosition('0000002a000001f00003'), false, 'positions travel upper case');
  assert.equal(sqlserverPositions.describe(lsn), sqlserverPositions.example);
});

test('string order of positions is the order of the LSNs they encode, and every display form reads back', () => {
  const lsnBytes = fc.uint8Array({ minLength: 10, maxLength: 10 }).map((a) => Buffer.from(a));
  fc.assert(
    fc.property(lsnBytes, lsnBytes, (a, b) => {
      const [x, y] = [lsnFromBytes(a), lsnFromBytes(b)];
      assert.equal(Math.sign(compareLsn(x, y)), Math.sign(Buffer.compare(a, b)));
      assert.equal(parseLsnText(describeLsn(x)), x);
      assert.equal(parseLsnText(`0x${a.toString('hex')}`), x);
    }),
  );
});
