/**
 * The SQL Server reader without a server: the T-SQL each call issues (compared to expected text), and what it
 * makes of result rows (INVENTED fixtures under test/fixtures/sqlserver/invented-*.json, written by hand to the
 * shapes mssql returns; a RECORD=1 run against a real server writes recorded-*.json beside them). Also the URL,
 * the error grading and the status, which are as thin.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { CaptureInstance } from '../../connectors/sqlserver/cdc-reader.ts';
import {
  bookkeepingStatement,
  captureInstancesStatement,
  changesStatement,
  ensureCaptureProgressStatement,
  maxTransactionLsnStatement,
  MssqlCdcReader,
  readCaptureInstances,
  readChanges,
  reviveFixtureRows,
  transactionTimesStatement,
  writeProgressStatement,
  type QueryRunner,
  type Row,
  type Statement,
} from '../../connectors/sqlserver/mssql-cdc-reader.ts';
import { checkSqlServerUrl, mssqlConfig, timeZoneOfUrl } from '../../connectors/sqlserver/mssql-connection.ts';
import { classifySqlServerError, describeSqlServerError, SqlServerUnreachableError } from '../../connectors/sqlserver/sqlserver-errors.ts';
import { readSqlServerStatus } from '../../connectors/sqlserver/sqlserver-status.ts';
import { SitesyncError } from '../../src/errors.ts';

function fixture(name: string): { rows?: Row[]; results?: Row[][] } {
  const body = JSON.parse(readFileSync(new URL(`../fixtures/sqlserver/${name}`, import.meta.url), 'utf8')) as { rows?: Row[]; results?: Row[][] };
  return { rows: body.rows && reviveFixtureRows(body.rows), results: body.results?.map((r) => reviveFixtureRows(r)) };
}

/** A runner that answers each query with the next prepared result (or error) and records what it was asked. */
class FakeRunner implements QueryRunner {
  readonly asked: { method: string; statement: Statement }[] = [];
  closed = false;
  constructor(private readonly answers: (Row[] | Error)[]) {}
  async query(method: string, statement: Statement): Promise<Row[]> {
    this.asked.push({ method, statement });
    const answer = this.answers.shift();
    if (answer === undefined) throw new Error(`unexpected query ${method}`);
    if (answer instanceof Error) throw answer;
    return answer;
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

const URL_ = 'sqlserver://sitesync:s3cret%40pw@db.madrid:1433/shop?encrypt=true&trustServerCertificate=true';

function serverError(number: number, message: string, klass = 16): Error {
  return Object.assign(new Error(message), { name: 'RequestError', code: 'EREQUEST', number, class: klass });
}

describe('SQL Server reader: statements', () => {
  test('max transaction LSN skips the capture job markers', () => {
    assert.equal(maxTransactionLsnStatement().sql, 'SELECT MAX(start_lsn) AS max_lsn FROM cdc.lsn_time_mapping WHERE tran_id <> 0x00');
  });

  test('capture instances: change tables, their captured columns in order, base types, primary key ordinals', () => {
    const sql = captureInstancesStatement().sql;
    for (const part of [
      'FROM cdc.change_tables AS ct',
      'JOIN sys.tables AS t ON t.object_id = ct.source_object_id',
      'JOIN sys.schemas AS s ON s.schema_id = t.schema_id',
      'JOIN cdc.captured_columns AS cc ON cc.object_id = ct.object_id',
      'JOIN sys.columns AS c ON c.object_id = ct.object_id AND c.name = cc.column_name',
      'COALESCE(CASE WHEN ty.is_user_defined = 0 THEN ty.name END, bt.name, ty.name) AS type_name',
      'LEFT JOIN sys.types AS bt ON bt.user_type_id = c.system_type_id',
      'WHERE i.is_primary_key = 1',
      ') AS pk ON pk.object_id = ct.source_object_id AND pk.column_id = cc.column_id',
      'ORDER BY ct.capture_instance, cc.column_ordinal',
    ]) {
      assert.ok(sql.includes(part), part);
    }
  });

  const instance: CaptureInstance = readCaptureInstances(fixture('invented-captureInstances-1.json').rows!)[1]!;

  test('changes: the change table itself, projections aliased by position, a keyset in its order', () => {
    const first = changesStatement(instance, '0000002A000001F00003', '00000031000000300004', null, 500);
    assert.equal(
      first.sql,
      [
        'SELECT TOP (@limit) [__$start_lsn], [__$seqval], [__$operation], [__$command_id], [id] AS [v0], CONVERT(varchar(41), [total]) AS [v1], [note] AS [v2]',
        'FROM cdc.[dbo_orders_v2_CT]',
        'WHERE [__$start_lsn] > @from AND [__$start_lsn] <= @to',
        'ORDER BY [__$start_lsn], [__$command_id], [__$seqval], [__$operation]',
      ].join('\n'),
    );
    assert.deepEqual(
      first.params.map((p) => [p.name, p.type, Buffer.isBuffer(p.value) ? p.value.toString('hex') : p.value]),
      [
        ['limit', 'int', 500],
        ['from', 'lsn', '0000002a000001f00003'],
        ['to', 'lsn', '00000031000000300004'],
      ],
    );
    const next = changesStatement(instance, '0000002A000001F00003', '00000031000000300004', { startLsn: '00000031000000300004', commandId: 2, seqval: '00000031000000300002', operation: 3 }, 500);
    assert.ok(
      next.sql.includes(
        '  AND ([__$start_lsn] > @afterLsn OR ([__$start_lsn] = @afterLsn AND ([__$command_id] > @afterCommand OR ([__$command_id] = @afterCommand AND ([__$seqval] > @afterSeqval OR ([__$seqval] = @afterSeqval AND [__$operation] > @afterOperation))))))\nORDER BY',
      ),
    );
    assert.deepEqual(
      next.params.slice(3).map((p) => [p.name, Buffer.isBuffer(p.value) ? p.value.toString('hex') : p.value]),
      [
        ['afterLsn', '00000031000000300004'],
        ['afterCommand', 2],
        ['afterSeqval', '00000031000000300002'],
        ['afterOperation', 3],
      ],
    );
    assert.ok(!next.sql.includes('fn_cdc_get_all_changes'), '!next.sql.includes(fn_cdc_get_all_changes)');
  });

  test('an instance name with a bracket is quoted', () => {
    const odd = { ...instance, name: 'dbo_we]ird' };
    assert.match(changesStatement(odd, '0'.repeat(20), '0'.repeat(20), null, 1).sql, /FROM cdc\.\[dbo_we\]\]ird_CT\]/);
  });

  test('transaction times: AT TIME ZONE the server zone, ISO text with the offset', () => {
    const s = transactionTimesStatement(['00000031000000200004', '00000031000000300004'], 'W. Europe Standard Time');
    assert.equal(
      s.sql,
      [
        'SELECT start_lsn,',
        "  REPLACE(STUFF(CONVERT(varchar(34), CAST(tran_end_time AT TIME ZONE @zone AS datetimeoffset(3))), 11, 1, 'T'), ' ', '') AS end_time",
        'FROM cdc.lsn_time_mapping',
        'WHERE start_lsn IN (@l0, @l1) AND tran_id <> 0x00',
        'ORDER BY start_lsn',
      ].join('\n'),
    );
    assert.deepEqual(s.params[0], { name: 'zone', type: 'nvarchar', value: 'W. Europe Standard Time' });
    assert.equal(s.params.length, 3);
  });

  test('capture_progress: created if missing, checkpoint bracketed (a T-SQL keyword), upserted', () => {
    const ddl = ensureCaptureProgressStatement().sql;
    assert.ok(ddl.startsWith("IF SCHEMA_ID(N'sitesync') IS NULL EXEC(N'CREATE SCHEMA [sitesync]');"), 'ddl.startsWith("IF SCHEMA_ID(Nsitesync) IS NULL EXEC(NCREATE SCHEMA [s');
    assert.ok(ddl.includes("IF OBJECT_ID(N'sitesync.capture_progress', N'U') IS NULL\nCREATE TABLE [sitesync].[capture_progress] ("), 'ddl.includes("IF OBJECT_ID(Nsitesync.capture_progress, NU) IS NULLnCRE');
    assert.ok(ddl.includes('[checkpoint] char(20) NOT NULL'), 'ddl.includes([checkpoint] char(20) NOT NULL)');
    const upsert = writeProgressStatement('madrid', { lastPublished: null, checkpoint: 'A'.repeat(20), seen: '{}', instances: '[]' });
    assert.match(upsert.sql, /^UPDATE \[sitesync\]\.\[capture_progress\] SET .*\[checkpoint\] = @checkpoint.* WHERE \[site\] = @site;\nIF @@ROWCOUNT = 0 INSERT INTO/);
    assert.deepEqual(upsert.params.map((p) => p.value), ['madrid', null, 'A'.repeat(20), '{}', '[]']);
  });

  test('bookkeeping: the progress instance is looked for only when CDC is on (no cdc schema otherwise)', () => {
    assert.ok(bookkeepingStatement(true).sql.includes("ct.capture_instance = N'sitesync_apply_progress'"), 'bookkeepingStatement(true).sql.includes("ct.capture_instance = Nsitesy');
    assert.ok(!bookkeepingStatement(false).sql.includes('cdc.'), '!bookkeepingStatement(false).sql.includes(cdc.)');
  });
});

describe('SQL Server reader: rows (INVENTED fixtures)', () => {
  test('capture instances grouped, LSNs from bytes, columns typed', () => {
    const instances = readCaptureInstances(fixture('invented-captureInstances-1.json').rows!);
    assert.deepEqual(
      instances.map((i) => [i.name, i.schema, i.table, i.startLsn, i.columns.map((c) => c.name).join(',')]),
      [
        ['dbo_orders', 'dbo', 'orders', '0000002A000001F00003', 'id,total'],
        ['dbo_orders_v2', 'dbo', 'orders', '0000003000000010000A', 'id,total,note'],
        ['sitesync_apply_progress', 'sitesync', 'apply_progress', '00000020000000800001', 'source,commit_time_micros'],
      ],
    );
    assert.deepEqual(instances[1]!.columns[1], { name: 'total', type: 'decimal', maxLength: 9, precision: 12, scale: 2, keyOrdinal: 0 });
    assert.equal(instances[0]!.columns[0]!.keyOrdinal, 1);
  });

  test('change rows: keys from bytes, values by position', () => {
    const instance = readCaptureInstances(fixture('invented-captureInstances-1.json').rows!)[1]!;
    const rows = readChanges(instance, fixture('invented-changes-1.json').rows!);
    assert.deepEqual(rows[0], { startLsn: '00000031000000200004', seqval: '00000031000000200002', operation: 2, commandId: 1, values: [7, '12.50', 'first'] });
    assert.deepEqual(rows.map((r) => r.operation), [2, 3, 4]);
    assert.deepEqual(rows[2]!.values, [7, '13.00', null]);
    assert.throws(() => readChanges(instance, [{ ...fixture('invented-changes-1.json').rows![0]!, v1: new Date() }]), SitesyncError);
  });

  test('the reader: setup facts from its statements, an optional one failing is unknown', async () => {
    const results = fixture('invented-setupFacts-1.json').results!;
    const runner = new FakeRunner([results[0]!, new Error('VIEW SERVER STATE permission was denied'), results[2]!, results[3]!, results[4]!]);
    const reader = new MssqlCdcReader({ url: URL_, site: 'madrid', runner });
    assert.deepEqual(await reader.setupFacts(), {
      database: 'shop',
      cdcEnabled: true,
      agentRunning: null,
      isDbOwner: true,
      bookkeepingReady: true,
      progressCaptured: true,
      capturedTables: ['dbo.orders'],
      uncapturedTables: ['dbo.audit'],
      retentionMinutes: 4320,
    });
    assert.equal(runner.asked.length, 5);
    await reader.close();
    assert.ok(runner.closed, 'runner.closed');
  });

  test('the reader: transaction times use CURRENT_TIMEZONE_ID(), else the URL zone, else a one-line fix', async () => {
    const times = [{ start_lsn: Buffer.from('00000031000000200004', 'hex'), end_time: '2026-12-06T09:00:00.123+01:00' }];
    const modern = new FakeRunner([[{ zone: 'Romance Standard Time' }], times]);
    const reader = new MssqlCdcReader({ url: URL_, site: 'madrid', runner: modern });
    assert.deepEqual(await reader.transactionTimes(['00000031000000200004']), [{ startLsn: '00000031000000200004', endTime: '2026-12-06T09:00:00.123+01:00' }]);
    assert.equal(modern.asked[1]!.statement.params[0]!.value, 'Romance Standard Time');
    assert.deepEqual(await reader.transactionTimes([]), []);

    const old = new FakeRunner([serverError(195, "'CURRENT_TIMEZONE_ID' is not a recognized built-in function name."), times]);
    const withZone = new MssqlCdcReader({ url: `${URL_}&timeZone=W.%20Europe%20Standard%20Time`, site: 'madrid', runner: old });
    await withZone.transactionTimes(['00000031000000200004']);
    assert.equal(old.asked[1]!.statement.params[0]!.value, 'W. Europe Standard Time');

    const none = new MssqlCdcReader({ url: URL_, site: 'madrid', runner: new FakeRunner([serverError(195, 'not a recognized built-in function name')]) });
    await assert.rejects(none.transactionTimes(['00000031000000200004']), (e: unknown) => e instanceof SitesyncError && e.code === 'SITESYNC_ERR_CONFIG' && /timeZone=/.test(e.message));
  });

  test('the reader: a failure becomes one line without the password', async () => {
    const lost = Object.assign(new Error('Connection lost - read ECONNRESET'), { code: 'ESOCKET' });
    const reader = new MssqlCdcReader({ url: URL_, site: 'madrid', runner: new FakeRunner([lost]) });
    await assert.rejects(reader.maxTransactionLsn(), (e: unknown) => e instanceof SqlServerUnreachableError && !e.message.includes('s3cret') && e.message.includes('***'));
  });

  test('the reader: progress row read back trimmed (char(20))', async () => {
    const runner = new FakeRunner([[{ last_published: null, checkpoint: '0000002A000001F00003', seen: '{"paris":"1"}', instances: '[]' }], []]);
    const reader = new MssqlCdcReader({ url: URL_, site: 'madrid', runner });
    assert.deepEqual(await reader.readProgress('madrid'), { lastPublished: null, checkpoint: '0000002A000001F00003', seen: '{"paris":"1"}', instances: '[]' });
    assert.equal(await reader.readProgress('madrid'), null);
  });
});

describe('SQL Server URL', () => {
  test('mssql configuration: decoded user and password, database required, TLS parameters', () => {
    const config = mssqlConfig(URL_);
    assert.equal(config.server, 'db.madrid');
    assert.equal(config.port, 1433);
    assert.equal(config.user, 'sitesync');
    assert.equal(config.password, 's3cret@pw');
    assert.equal(config.database, 'shop');
    assert.equal(config.options?.encrypt, true);
    assert.equal(config.options?.trustServerCertificate, true);
    const defaults = mssqlConfig('mssql://u@h/db');
    assert.equal(defaults.port, 1433);
    assert.equal(defaults.options?.encrypt, true);
    assert.equal(defaults.options?.trustServerCertificate, false);
    assert.equal(mssqlConfig('sqlserver://u@h/db?instanceName=SQLEXPRESS').port, undefined, 'a named instance is found by the browser');
    assert.equal(mssqlConfig('sqlserver://u@h/db?requestTimeout=60000').requestTimeout, 60000);
    assert.equal(timeZoneOfUrl('sqlserver://u@h/db?timeZone=UTC'), 'UTC');
  });

  test('problems in a few words', () => {
    assert.equal(checkSqlServerUrl(URL_), null);
    assert.equal(checkSqlServerUrl('not a url'), 'is not a URL');
    assert.match(checkSqlServerUrl('postgres://u@h/db')!, /instead of sqlserver:\/\/ or mssql:\/\//);
    assert.match(checkSqlServerUrl('sqlserver://u@h:1433/')!, /names no database/);
    assert.match(checkSqlServerUrl('sqlserver://u@h:1433')!, /names no database/);
    assert.equal(checkSqlServerUrl('sqlserver://u@h:0/db'), 'has port 0');
    assert.match(checkSqlServerUrl('sqlserver://u@h/db?encrypt=yes')!, /encrypt=yes instead of true or false/);
    assert.match(checkSqlServerUrl('sqlserver://u@h/db?colour=blue')!, /unknown parameter colour/);
    assert.match(checkSqlServerUrl('sqlserver://u@h/a/b')!, /more than a database/);
  });
});

describe('SQL Server errors', () => {
  test('graded by number', () => {
    for (const n of [1205, 1222, -2, 40613]) assert.equal(classifySqlServerError(serverError(n, 'x')), 'transient', String(n));
    for (const n of [208, 207, 4711, 229]) assert.equal(classifySqlServerError(serverError(n, 'x')), 'schema', String(n));
    for (const n of [2627, 2601, 515, 8152, 2628, 241, 242, 8114, 8115, 547]) assert.equal(classifySqlServerError(serverError(n, 'x')), 'data', String(n));
    assert.equal(classifySqlServerError(serverError(50000, 'a RAISERROR')), 'data', 'an unlisted server error is data');
    assert.equal(classifySqlServerError(serverError(50000, 'resources', 17)), 'transient', 'severity 17+ is the server, not the values');
  });

  test('the real cause behind "statement terminated" counts', () => {
    const terminated = Object.assign(serverError(3621, 'The statement has been terminated.'), { precedingErrors: [serverError(2627, 'Violation of PRIMARY KEY constraint')] });
    assert.equal(classifySqlServerError(terminated), 'data');
  });

  test('connection codes are transient', () => {
    for (const code of ['ESOCKET', 'ETIMEOUT', 'ECONNRESET', 'ECONNCLOSED']) {
      assert.equal(classifySqlServerError(Object.assign(new Error('gone'), { code })), 'transient', code);
    }
    assert.equal(classifySqlServerError(new TypeError('cannot bind')), 'data');
  });

  test('described in one line, never with the password', () => {
    const login = describeSqlServerError(Object.assign(new Error("Login failed for user 'sitesync'."), { code: 'ELOGIN' }), URL_, 'madrid');
    assert.ok(login instanceof SitesyncError && login.code === 'SITESYNC_ERR_PERMISSION', login.message);
    const login2 = describeSqlServerError(serverError(18456, "Login failed for user 'sitesync'.", 14), URL_, 'madrid');
    assert.ok(login2 instanceof SitesyncError && login2.code === 'SITESYNC_ERR_PERMISSION', login2.message);
    const unreachable = describeSqlServerError(Object.assign(new Error('Failed to connect to db.madrid:1433 - getaddrinfo ENOTFOUND'), { code: 'ESOCKET' }), URL_, 'madrid');
    assert.ok(unreachable instanceof SitesyncError && unreachable.code === 'SITESYNC_ERR_DATABASE_UNREACHABLE', unreachable.message);
    const noDb = describeSqlServerError(Object.assign(new Error('Cannot open database "shop" requested by the login. The login failed.'), { code: 'ELOGIN' }), URL_, 'madrid');
    assert.ok(noDb instanceof SitesyncError && noDb.code === 'SITESYNC_ERR_CONFIG', noDb.message);
    const denied = describeSqlServerError(serverError(229, "The SELECT permission was denied on the object 'change_tables'"), URL_, 'madrid');
    assert.ok(denied instanceof SitesyncError && denied.code === 'SITESYNC_ERR_PERMISSION', denied.message);
    for (const e of [login, login2, unreachable, noDb, denied]) {
      assert.ok(!e.message.includes('s3cret'), e.message);
      assert.ok(!e.message.includes('\n'), 'one line');
      assert.match(e.message, /SQL Server of site madrid \(sqlserver:\/\/sitesync:\*\*\*@db\.madrid:1433\/shop/);
    }
  });
});

describe('SQL Server status', () => {
  test('capture row, max LSN, applied rows', async () => {
    const runner = new FakeRunner([
      [{ table_name: 'capture_progress' }, { table_name: 'apply_progress' }],
      [{ checkpoint: '0000002A000001F00003', age_seconds: 4 }],
      [{ max_lsn: Buffer.from('00000031000000300004', 'hex') }],
      [{ source: 'paris', position: '0/16B3748' }],
    ]);
    const status = await readSqlServerStatus(URL_, 'madrid', ['paris', 'london'], runner);
    assert.deepEqual(status, {
      capture: {
        name: 'CDC capture of madrid',
        exists: true,
        active: true,
        confirmed: '0000002a:000001f0:0003',
        current: '00000031:00000030:0004',
        lagBytes: null,
        retainedBytes: null,
        release: "DELETE FROM sitesync.capture_progress WHERE site = 'madrid'",
      },
      applied: [
        { source: 'paris', name: 'sitesync.apply_progress', position: '0/16B3748' },
        { source: 'london', name: 'sitesync.apply_progress', position: null },
      ],
    });
    assert.ok(runner.closed, 'runner.closed');
  });

  test('no capture row, an old one, no CDC', async () => {
    const none = await readSqlServerStatus(URL_, 'madrid', [], new FakeRunner([[], new Error('Invalid object name cdc.lsn_time_mapping')]));
    assert.equal(none.capture.exists, false);
    assert.equal(none.capture.current, 'CDC is not enabled');
    const stale = await readSqlServerStatus(URL_, 'madrid', [], new FakeRunner([[{ table_name: 'capture_progress' }], [{ checkpoint: '0000002A000001F00003', age_seconds: 600 }], [{ max_lsn: null }]]));
    assert.equal(stale.capture.active, false);
    assert.equal(stale.capture.current, 'no transaction captured yet');
  });
});
