import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { OracleSetupFacts } from '../../connectors/oracle/logminer-reader.ts';
import {
  APPLY_PROGRESS_DDL,
  assertCaptureReady,
  COMMON_USER_SQL,
  grantSql,
  privilegeGrants,
  REQUIRED_PRIVILEGES,
  setupProblems,
  tableAllColumnsSql,
} from '../../connectors/oracle/oracle-setup.ts';
import { SitesyncError } from '../../src/errors.ts';

const READY: OracleSetupFacts = {
  archiveLog: true,
  minimalSupplementalLogging: true,
  allColumnsLogging: true,
  tablesWithoutLogging: [],
  missingPrivileges: [],
  cdb: true,
  user: 'C##SITESYNC',
  progressTable: true,
};

function refusal(facts: Partial<OracleSetupFacts>): SitesyncError {
  try {
    assertCaptureReady({ ...READY, ...facts }, 'madrid');
  } catch (error) {
    assert.ok(error instanceof SitesyncError, 'error instanceof SitesyncError');
    assert.ok(!error.message.includes('\n'), 'one line');
    assert.match(error.message, /^Oracle of site madrid \(user [^)]+\): /);
    return error;
  }
  assert.fail('expected a refusal');
}

describe('Oracle setup: capture readiness', () => {
  test('a ready database passes (CDB with a common user, or a plain database with a local one)', () => {
    assertCaptureReady(READY, 'madrid');
    assertCaptureReady({ ...READY, cdb: false, user: 'SITESYNC_CAPTURE' }, 'madrid');
    assert.deepEqual(setupProblems(READY), []);
  });

  test('not in ARCHIVELOG mode: the restart sequence, in the root of a CDB', () => {
    const e = refusal({ archiveLog: false });
    assert.equal(e.code, 'SITESYNC_ERR_CONFIG');
    assert.match(e.message, /not in ARCHIVELOG mode/);
    assert.ok(e.message.includes('SHUTDOWN IMMEDIATE; STARTUP MOUNT; ALTER DATABASE ARCHIVELOG; ALTER DATABASE OPEN;'), e.message);
    assert.match(e.message, /as SYSDBA in CDB\$ROOT/);
    assert.doesNotMatch(refusal({ archiveLog: false, cdb: false, user: 'CAP' }).message, /CDB\$ROOT/);
  });

  test('minimal supplemental logging off: ADD SUPPLEMENTAL LOG DATA', () => {
    const e = refusal({ minimalSupplementalLogging: false });
    assert.ok(e.message.includes('ALTER DATABASE ADD SUPPLEMENTAL LOG DATA;'), e.message);
  });

  test('missing privileges: a permission error with the GRANTs, CONTAINER=ALL in a CDB', () => {
    const e = refusal({ missingPrivileges: ['SELECT ON V_$LOGMNR_CONTENTS', 'LOGMINING'] });
    assert.equal(e.code, 'SITESYNC_ERR_PERMISSION');
    assert.match(e.message, /lacks SELECT ON V_\$LOGMNR_CONTENTS, LOGMINING/);
    // in REQUIRED_PRIVILEGES order
    assert.ok(e.message.includes('GRANT LOGMINING TO C##SITESYNC CONTAINER=ALL; GRANT SELECT ON SYS.V_$LOGMNR_CONTENTS TO C##SITESYNC CONTAINER=ALL;'), e.message);
    const plain = refusal({ cdb: false, user: 'CAP', missingPrivileges: ['EXECUTE ON DBMS_LOGMNR'] });
    assert.ok(plain.message.includes('GRANT EXECUTE ON SYS.DBMS_LOGMNR TO CAP;'), plain.message);
  });

  test('a quoted (mixed-case) user name is quoted in the GRANT', () => {
    const e = refusal({ cdb: false, user: 'capture', missingPrivileges: ['LOGMINING'] });
    assert.ok(e.message.includes('GRANT LOGMINING TO "capture";'), e.message);
  });

  test('a local user in a CDB: create the common user with every grant', () => {
    const e = refusal({ user: 'SITESYNC_CAPTURE', missingPrivileges: ['LOGMINING'] });
    assert.equal(e.code, 'SITESYNC_ERR_PERMISSION');
    assert.match(e.message, /not a common user/);
    assert.ok(e.message.includes('CREATE USER C##SITESYNC IDENTIFIED BY "<password>" CONTAINER=ALL;'), e.message);
    for (const p of REQUIRED_PRIVILEGES) assert.ok(COMMON_USER_SQL.includes(grantSql(p, 'C##SITESYNC', true)), p);
  });

  test('no ALL COLUMNS logging: the database-wide statement, or one ALTER TABLE per table', () => {
    const whole = refusal({ allColumnsLogging: false });
    assert.ok(whole.message.includes('ALTER DATABASE ADD SUPPLEMENTAL LOG DATA (ALL) COLUMNS;'), whole.message);
    const tables = refusal({ allColumnsLogging: false, tablesWithoutLogging: ['HR.EMP', 'HR.Mixed"Name'] });
    assert.match(tables.message, /tables HR\.EMP, HR\.Mixed"Name have no supplemental logging of all columns/);
    assert.ok(tables.message.includes('ALTER TABLE "HR"."EMP" ADD SUPPLEMENTAL LOG DATA (ALL) COLUMNS; ALTER TABLE "HR"."Mixed""Name" ADD SUPPLEMENTAL LOG DATA (ALL) COLUMNS;'), tables.message);
  });

  test('SITESYNC.APPLY_PROGRESS missing: setup creates it, or the DDL with its logging', () => {
    const e = refusal({ progressTable: false });
    assert.match(e.message, /SITESYNC\.APPLY_PROGRESS is missing/);
    assert.ok(e.message.includes(APPLY_PROGRESS_DDL), e.message);
    assert.ok(APPLY_PROGRESS_DDL.includes(tableAllColumnsSql('SITESYNC', 'APPLY_PROGRESS')));
  });

  test('the first blocking problem wins, in the documented order', () => {
    const all: Partial<OracleSetupFacts> = { archiveLog: false, minimalSupplementalLogging: false, missingPrivileges: ['LOGMINING'], allColumnsLogging: false, progressTable: false };
    assert.match(refusal(all).message, /ARCHIVELOG/);
    assert.match(refusal({ ...all, archiveLog: true }).message, /minimal supplemental logging/);
    assert.match(refusal({ ...all, archiveLog: true, minimalSupplementalLogging: true }).message, /lacks LOGMINING/);
    assert.match(refusal({ ...all, archiveLog: true, minimalSupplementalLogging: true, missingPrivileges: [] }).message, /all columns/);
    assert.equal(setupProblems({ ...READY, ...all }).length, 5);
  });

  test('privilegeGrants orders by the required list and knows unlisted names', () => {
    assert.equal(privilegeGrants(['SELECT ON V_$LOG', 'CREATE SESSION'], 'U', false), 'GRANT CREATE SESSION TO U; GRANT SELECT ON SYS.V_$LOG TO U;');
    assert.equal(grantSql('SELECT ANY DICTIONARY', 'U', true), 'GRANT SELECT ANY DICTIONARY TO U CONTAINER=ALL;');
  });
});
