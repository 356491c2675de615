import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { SetupFacts } from '../../connectors/sqlserver/cdc-reader.ts';
import { assertApplyReady, assertCaptureReady, ENABLE_PROGRESS_CAPTURE_SQL, enableTableSql, setupProblems } from '../../connectors/sqlserver/sqlserver-setup.ts';
import { SitesyncError } from '../../src/errors.ts';

const READY: SetupFacts = {
  database: 'shop',
  cdcEnabled: true,
  agentRunning: true,
  isDbOwner: true,
  bookkeepingReady: true,
  progressCaptured: true,
  capturedTables: ['dbo.orders'],
  uncapturedTables: [],
  retentionMinutes: 4320,
};

function refusal(facts: Partial<SetupFacts>, assertion = assertCaptureReady): SitesyncError {
  try {
    assertion({ ...READY, ...facts }, 'madrid');
  } catch (error) {
    assert.ok(error instanceof SitesyncError, 'error instanceof SitesyncError');
    assert.ok(!error.message.includes('\n'), 'one line');
    assert.match(error.message, /site madrid \(database shop\)/);
    return error;
  }
  assert.fail('expected a refusal');
}

describe('SQL Server setup: capture readiness', () => {
  test('a ready database passes, whatever the Agent state it cannot tell', () => {
    assertCaptureReady(READY, 'madrid');
    assertCaptureReady({ ...READY, agentRunning: null }, 'madrid');
    assertCaptureReady({ ...READY, uncapturedTables: ['dbo.audit'], retentionMinutes: 60 }, 'madrid');
  });

  test('CDC off: names the procedure', () => {
    const e = refusal({ cdcEnabled: false, progressCaptured: false });
    assert.equal(e.code, 'SITESYNC_ERR_CONFIG');
    assert.match(e.message, /change data capture is not enabled on database shop/);
    assert.match(e.message, /USE \[shop\]; EXEC sys\.sp_cdc_enable_db;/);
  });

  test('not db_owner: a permission error with the ALTER ROLE', () => {
    const e = refusal({ isDbOwner: false });
    assert.equal(e.code, 'SITESYNC_ERR_PERMISSION');
    assert.match(e.message, /ALTER ROLE db_owner ADD MEMBER/);
  });

  test('Agent stopped: says the capture job needs it and how to start it', () => {
    const e = refusal({ agentRunning: false });
    assert.equal(e.code, 'SITESYNC_ERR_CONFIG');
    assert.match(e.message, /Agent is not running/);
    assert.match(e.message, /capture job/);
    assert.match(e.message, /MSSQL_AGENT_ENABLED=true/);
    assert.match(e.message, /mssql-conf set sqlagent\.enabled true/);
  });

  test('apply_progress not captured: the exact enable_table call', () => {
    const e = refusal({ progressCaptured: false });
    assert.ok(
      e.message.includes(
        "EXEC sys.sp_cdc_enable_table @source_schema = N'sitesync', @source_name = N'apply_progress', @role_name = NULL, @capture_instance = N'sitesync_apply_progress';",
      ),
      e.message,
    );
  });

  test('the first blocking problem wins, in the documented order', () => {
    assert.match(refusal({ cdcEnabled: false, isDbOwner: false, agentRunning: false, progressCaptured: false }).message, /sp_cdc_enable_db/);
    assert.match(refusal({ isDbOwner: false, agentRunning: false, progressCaptured: false }).message, /db_owner/);
    assert.match(refusal({ agentRunning: false, progressCaptured: false }).message, /Agent/);
  });
});

describe('SQL Server setup: every problem listed', () => {
  test('uncaptured tables each get their enable_table, retention under a day a warning', () => {
    const problems = setupProblems({ ...READY, uncapturedTables: ['dbo.audit', "sales.o'brien"], retentionMinutes: 60 });
    assert.deepEqual(
      problems.map((p) => p.severity),
      ['warning', 'warning', 'warning'],
    );
    assert.ok(problems[0]!.fix.endsWith(enableTableSql('dbo', 'audit')), 'problems[0]!.fix.endsWith(enableTableSql(dbo, audit))');
    assert.match(problems[1]!.fix, /@source_schema = N'sales', @source_name = N'o''brien'.*@capture_instance = N'sales_o''brien'/);
    assert.match(problems[2]!.problem, /60 minutes/);
    assert.match(problems[2]!.fix, /sp_cdc_change_job @job_type = N'cleanup', @retention = 4320;/);
  });

  test('a ready database has no problem; an unknown Agent is a warning', () => {
    assert.deepEqual(setupProblems(READY), []);
    const [agent] = setupProblems({ ...READY, agentRunning: null });
    assert.equal(agent!.severity, 'warning');
    assert.match(agent!.fix, /sp_cdc_help_jobs/);
  });

  test('everything missing: errors first, all with a fix', () => {
    const problems = setupProblems({
      ...READY,
      cdcEnabled: false,
      isDbOwner: false,
      agentRunning: false,
      bookkeepingReady: false,
      progressCaptured: false,
      uncapturedTables: ['dbo.orders'],
      retentionMinutes: 10,
    });
    assert.equal(problems.length, 7);
    const firstWarning = problems.findIndex((p) => p.severity === 'warning');
    assert.ok(problems.slice(firstWarning).every((p) => p.severity === 'warning'), 'problems.slice(firstWarning).every((p) => p.severity === warning)');
    for (const p of problems) assert.ok(p.fix.length > 0 && !p.fix.includes('\n'), 'p.fix.length > 0 && !p.fix.includes(n)');
  });
});

describe('SQL Server setup: apply readiness', () => {
  test('a pure target (no CDC) needs nothing of CDC', () => {
    assertApplyReady({ ...READY, cdcEnabled: false, progressCaptured: false, agentRunning: false }, 'madrid');
  });

  test('a target that also captures must capture apply_progress', () => {
    const e = refusal({ progressCaptured: false }, assertApplyReady);
    assert.ok(e.message.includes(ENABLE_PROGRESS_CAPTURE_SQL), 'e.message.includes(ENABLE_PROGRESS_CAPTURE_SQL)');
    assertApplyReady({ ...READY, agentRunning: false }, 'madrid');
  });
});
