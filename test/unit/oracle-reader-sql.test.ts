/**
 * The thin server layer of the Oracle connector without a database: the SQL text every reader method sends
 * (compared with the expected text), the reading of result rows (invented fixtures of the shapes oracledb
 * returns, test/fixtures/oracle/invented-rows-*.json), the reader's call sequence over fake sessions, the URL,
 * the error grading and the status.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { RedoLog } from '../../connectors/oracle/logminer-reader.ts';
import {
  addLogfilesStatement,
  archivedLogsStatement,
  columnsStatement,
  contentsStatement,
  ensureCaptureProgressStatement,
  localTimeToIso,
  oldestOpenTransactionStatement,
  onlineLogsStatement,
  OracleLogMinerReader,
  readColumns,
  readLogs,
  readMinedRows,
  readOldestOpenTransaction,
  readProgressRow,
  readScn,
  readSetupFacts,
  readThreads,
  sessionSetupStatement,
  startLogminerStatement,
  tablesWithoutLoggingStatement,
  viewProbeStatement,
  writeProgressStatement,
  type Cursor,
  type OracleSession,
  type Row,
  type Statement,
} from '../../connectors/oracle/oracledb-logminer-reader.ts';
import { checkOracleUrl, oracledbConfig } from '../../connectors/oracle/oracledb-connection.ts';
import { classifyOracleError, describeOracleError, OracleUnreachableError } from '../../connectors/oracle/oracle-errors.ts';
import { setupProblems } from '../../connectors/oracle/oracle-setup.ts';
import { readOracleStatus, statusOf } from '../../connectors/oracle/oracle-status.ts';
import { SitesyncError } from '../../src/errors.ts';

const fixture = (name: string): Record<string, unknown> => JSON.parse(readFileSync(new URL(`../fixtures/oracle/${name}`, import.meta.url), 'utf8')) as Record<string, unknown>;
const rowsOf = (name: string, key = 'rows'): Row[] => fixture(name)[key] as Row[];

const URL_ = 'oracle://C%23%23SITESYNC:s3cret%40pw@db.madrid:1521/FREEPDB1';

describe('Oracle URL', () => {
  test('oracledbConfig: Easy Connect string, decoded user and password, default port', () => {
    const config = oracledbConfig(URL_);
    assert.deepEqual(config.attributes, { user: 'C##SITESYNC', password: 's3cret@pw', connectString: 'db.madrid:1521/FREEPDB1' });
    assert.equal(config.service, 'FREEPDB1');
    assert.equal(config.callTimeout, null);
    const other = oracledbConfig('oracle://app:pw@[::1]/ORCLPDB1?connectTimeout=5&callTimeout=30000&timeZone=Europe/Madrid');
    assert.equal(other.attributes.connectString, '[::1]:1521/ORCLPDB1');
    assert.equal(other.attributes.connectTimeout, 5);
    assert.equal(other.callTimeout, 30000);
  });

  test('checkOracleUrl names what is wrong', () => {
    assert.equal(checkOracleUrl(URL_), null);
    assert.match(checkOracleUrl('postgres://u:p@h/db')!, /instead of oracle:\/\//);
    assert.match(checkOracleUrl('oracle://u:p@h:1521')!, /names no service/);
    assert.match(checkOracleUrl('oracle://u:p@h:1521/a/b')!, /not a plain name/);
    assert.match(checkOracleUrl('oracle://h:1521/FREE')!, /names no user/);
    assert.match(checkOracleUrl('oracle://u:p@h/FREE?sslmode=require')!, /unknown parameter sslmode/);
    assert.match(checkOracleUrl('oracle://u:p@h/FREE?timeZone=Mars/Olympus')!, /not an IANA time zone/);
    assert.match(checkOracleUrl('oracle://u:p@h/FREE?connectTimeout=soon')!, /instead of seconds/);
    assert.throws(() => oracledbConfig('oracle://u:p@h'), /the Oracle URL names no service/);
  });
});

describe('Oracle reader: statements', () => {
  test('the session settings the SQL_REDO parser relies on', () => {
    assert.equal(
      sessionSetupStatement().sql,
      "ALTER SESSION SET NLS_DATE_FORMAT = 'YYYY-MM-DD HH24:MI:SS' NLS_TIMESTAMP_FORMAT = 'YYYY-MM-DD HH24:MI:SS.FF9' " +
        "NLS_TIMESTAMP_TZ_FORMAT = 'YYYY-MM-DD HH24:MI:SS.FF9 TZH:TZM' NLS_NUMERIC_CHARACTERS = '.,' TIME_ZONE = '+00:00'",
    );
  });

  test('log lists bind the SCN as text', () => {
    const online = onlineLogsStatement(9007199254740993n);
    assert.deepEqual(online.binds, [{ name: 'fromScn', value: '9007199254740993' }]);
    assert.equal(
      online.sql,
      [
        'SELECT MIN(F.MEMBER) AS NAME, L.THREAD# AS THREAD, L.SEQUENCE# AS SEQ, TO_CHAR(L.FIRST_CHANGE#) AS FIRST_SCN,',
        '  TO_CHAR(L.NEXT_CHANGE#) AS NEXT_SCN, L.STATUS AS STATUS',
        'FROM V$LOG L JOIN V$LOGFILE F ON F.GROUP# = L.GROUP#',
        "WHERE L.STATUS IN ('CURRENT', 'ACTIVE', 'INACTIVE') AND (F.STATUS IS NULL OR F.STATUS NOT IN ('INVALID', 'DELETED'))",
        "  AND (L.STATUS = 'CURRENT' OR L.NEXT_CHANGE# IS NULL OR L.NEXT_CHANGE# > TO_NUMBER(:fromScn))",
        'GROUP BY L.GROUP#, L.THREAD#, L.SEQUENCE#, L.FIRST_CHANGE#, L.NEXT_CHANGE#, L.STATUS',
        'ORDER BY L.THREAD#, L.SEQUENCE#',
      ].join('\n'),
    );
    assert.equal(
      archivedLogsStatement(5n).sql,
      [
        'SELECT NAME, THREAD# AS THREAD, SEQUENCE# AS SEQ, TO_CHAR(FIRST_CHANGE#) AS FIRST_SCN, TO_CHAR(NEXT_CHANGE#) AS NEXT_SCN, DEST_ID',
        'FROM V$ARCHIVED_LOG',
        "WHERE NAME IS NOT NULL AND ARCHIVED = 'YES' AND STATUS = 'A' AND STANDBY_DEST = 'NO'",
        '  AND RESETLOGS_CHANGE# = (SELECT RESETLOGS_CHANGE# FROM V$DATABASE)',
        '  AND NEXT_CHANGE# > TO_NUMBER(:fromScn)',
        'ORDER BY THREAD#, SEQUENCE#, DEST_ID',
      ].join('\n'),
    );
  });

  test('ADD_LOGFILE: NEW first, ADDFILE after, names bound', () => {
    const logs: RedoLog[] = [
      { name: '/a/1_41.dbf', thread: 1, sequence: 41, firstScn: 1n, nextScn: 5n, archived: true },
      { name: "/b/it's.log", thread: 1, sequence: 42, firstScn: 5n, nextScn: null, archived: false },
    ];
    const s = addLogfilesStatement(logs);
    assert.equal(
      s.sql,
      [
        'BEGIN',
        '  SYS.DBMS_LOGMNR.ADD_LOGFILE(LOGFILENAME => :f0, OPTIONS => SYS.DBMS_LOGMNR.NEW);',
        '  SYS.DBMS_LOGMNR.ADD_LOGFILE(LOGFILENAME => :f1, OPTIONS => SYS.DBMS_LOGMNR.ADDFILE);',
        'END;',
      ].join('\n'),
    );
    assert.deepEqual(s.binds, [
      { name: 'f0', value: '/a/1_41.dbf' },
      { name: 'f1', value: "/b/it's.log" },
    ]);
    assert.throws(() => addLogfilesStatement([]));
  });

  test('START_LOGMNR from the SCN after `from` up to `to`, online catalog, no ROWID in statements', () => {
    const s = startLogminerStatement(6012000n, 6012100n);
    assert.match(s.sql, /STARTSCN => TO_NUMBER\(:startScn\), ENDSCN => TO_NUMBER\(:endScn\)/);
    assert.match(s.sql, /OPTIONS => SYS\.DBMS_LOGMNR\.DICT_FROM_ONLINE_CATALOG \+ SYS\.DBMS_LOGMNR\.NO_ROWID_IN_STMT\);/);
    assert.deepEqual(s.binds, [
      { name: 'startScn', value: '6012001' },
      { name: 'endScn', value: '6012100' },
    ]);
  });

  test('contents: the window, the PDB, markers of every transaction, changes of the owners and SITESYNC', () => {
    const s = contentsStatement(10n, 20n, ['HR', 'SITESYNC', 'Sales'], 'FREEPDB1');
    assert.equal(
      s.sql,
      [
        'SELECT TO_CHAR(SCN) AS SCN, TO_CHAR(START_SCN) AS START_SCN, TO_CHAR(COMMIT_SCN) AS COMMIT_SCN,',
        "  TO_CHAR(CASE WHEN OPERATION_CODE = 7 AND COMMIT_TIMESTAMP IS NOT NULL THEN COMMIT_TIMESTAMP ELSE TIMESTAMP END, 'YYYY-MM-DD HH24:MI:SS') AS TS,",
        '  RAWTOHEX(XID) AS XID, OPERATION_CODE, SEG_OWNER, TABLE_NAME, SQL_REDO, ROW_ID, ROLLBACK, CSF, RS_ID, SSN, THREAD# AS THREAD, USERNAME',
        'FROM V$LOGMNR_CONTENTS',
        'WHERE SCN > TO_NUMBER(:fromScn) AND SCN <= TO_NUMBER(:toScn)',
        '  AND SRC_CON_NAME = :pdb',
        '  AND (OPERATION_CODE IN (6, 7, 36) OR (OPERATION_CODE IN (1, 2, 3, 5, 9, 10) AND SEG_OWNER IN (:owner0, :owner1, :owner2)))',
      ].join('\n'),
    );
    assert.deepEqual(s.binds, [
      { name: 'fromScn', value: '10' },
      { name: 'toScn', value: '20' },
      { name: 'owner0', value: 'HR' },
      { name: 'owner1', value: 'SITESYNC' },
      { name: 'owner2', value: 'Sales' },
      { name: 'pdb', value: 'FREEPDB1' },
    ]);
    const all = contentsStatement(10n, 20n, null, null);
    assert.ok(!all.sql.includes('SRC_CON_NAME'));
    assert.ok(all.sql.endsWith("AND SEG_OWNER NOT IN (SELECT USERNAME FROM ALL_USERS WHERE ORACLE_MAINTAINED = 'Y')))"), all.sql);
    assert.equal(all.binds.length, 2);
    assert.ok(!/\bORDER BY\b/.test(all.sql), 'LogMiner order, no sort');
  });

  test('columns: no hidden or virtual column, primary key positions, COLUMN_ID order', () => {
    const s = columnsStatement('HR', 'Emp');
    assert.match(s.sql, /FROM ALL_TAB_COLS C/);
    assert.match(s.sql, /C\.HIDDEN_COLUMN = 'NO' AND C\.VIRTUAL_COLUMN = 'NO'/);
    assert.match(s.sql, /PK\.CONSTRAINT_TYPE = 'P'/);
    assert.match(s.sql, /ORDER BY C\.COLUMN_ID$/);
    assert.deepEqual(s.binds, [
      { name: 'ownerName', value: 'HR' },
      { name: 'tableName', value: 'Emp' },
    ]);
  });

  test('bind names are never Oracle reserved words', () => {
    const reserved = new Set(['FROM', 'TO', 'TABLE', 'USER', 'SESSION', 'START', 'SIZE', 'LEVEL', 'MODE', 'ROW', 'ROWS', 'UID', 'FILE', 'OPTION']);
    const statements: Statement[] = [
      onlineLogsStatement(1n),
      startLogminerStatement(1n, 2n),
      contentsStatement(1n, 2n, ['A'], 'P'),
      columnsStatement('A', 'B'),
      writeProgressStatement('madrid', { lastPublished: null, checkpoint: 'c', seen: '{}' }),
      tablesWithoutLoggingStatement(['A']),
    ];
    for (const s of statements) for (const b of s.binds) assert.ok(!reserved.has(b.name.toUpperCase()), b.name);
  });

  test('setup probes and the ALL COLUMNS check', () => {
    assert.equal(viewProbeStatement('V_$LOGMNR_CONTENTS').sql, 'SELECT COUNT(*) AS N FROM V$LOGMNR_CONTENTS WHERE 1 = 0');
    assert.throws(() => viewProbeStatement('DUAL; DROP TABLE X'));
    const t = tablesWithoutLoggingStatement(['HR']);
    assert.match(t.sql, /T\.OWNER IN \(:owner0, :owner1\)/);
    assert.match(t.sql, /\(T\.OWNER <> 'SITESYNC' OR T\.TABLE_NAME = 'APPLY_PROGRESS'\)/);
    assert.match(t.sql, /G\.LOG_GROUP_TYPE = 'ALL COLUMN LOGGING'/);
    assert.deepEqual(t.binds.map((b) => b.value), ['HR', 'SITESYNC']);
  });

  test('CAPTURE_PROGRESS: created unless there (ORA-00955 ignored), one MERGE with SEEN as a CLOB', () => {
    const ddl = ensureCaptureProgressStatement().sql;
    assert.ok(ddl.startsWith('BEGIN\n  EXECUTE IMMEDIATE \'CREATE TABLE "SITESYNC"."CAPTURE_PROGRESS" ("SITE" VARCHAR2(40) NOT NULL PRIMARY KEY'), ddl);
    assert.match(ddl, /SYS_EXTRACT_UTC\(SYSTIMESTAMP\)/);
    assert.match(ddl, /EXCEPTION WHEN OTHERS THEN\n {2}IF SQLCODE <> -955 THEN RAISE; END IF;\nEND;$/);
    assert.ok(!/[^']'[^']/.test(ddl.slice(ddl.indexOf("'") + 1, ddl.lastIndexOf("'"))), 'quotes inside the DDL doubled');
    const w = writeProgressStatement('madrid', { lastPublished: null, checkpoint: 'X:Y', seen: '{"paris":"5"}' });
    assert.match(w.sql, /^MERGE INTO "SITESYNC"\."CAPTURE_PROGRESS" P\nUSING \(SELECT :site AS "SITE" FROM DUAL\) S ON \(P\."SITE" = S\."SITE"\)/);
    assert.deepEqual(w.binds, [
      { name: 'site', value: 'madrid' },
      { name: 'lastPublished', value: null },
      { name: 'checkpoint', value: 'X:Y' },
      { name: 'seen', value: '{"paris":"5"}', type: 'clob' },
    ]);
  });
});

describe('Oracle reader: reading rows', () => {
  test('SCNs past 2^53 stay exact; anything else is refused', () => {
    assert.equal(readScn('9007199254740993', 'x'), 9007199254740993n);
    assert.equal(readScn(42, 'x'), 42n);
    assert.throws(() => readScn('1.5', 'x'), (e: unknown) => e instanceof SitesyncError && e.code === 'SITESYNC_ERR_DECODE');
    assert.throws(() => readScn(null, 'x'), SitesyncError);
  });

  test('threads: open ones, flushed SCN one below LAST_REDO_SCN', () => {
    assert.deepEqual(readThreads(rowsOf('invented-rows-threads.json')), [
      { thread: 1, open: true, flushedScn: 9007199254741000n },
      { thread: 2, open: false, flushedScn: 6011999n },
      { thread: 3, open: true, flushedScn: 0n },
    ]);
  });

  test('logs: archived copies win, once per thread and sequence; current logs have no next SCN', () => {
    const f = fixture('invented-rows-logs.json');
    const logs = readLogs(f.online as Row[], f.archived as Row[]);
    assert.deepEqual(
      logs.map((l) => [l.thread, l.sequence, l.name, l.firstScn, l.nextScn, l.archived]),
      [
        [1, 40, '/opt/oracle/fra/FREE/archivelog/1_40_1160000000.dbf', 6009000n, 6010000n, true],
        [1, 41, '/opt/oracle/fra/FREE/archivelog/1_41_1160000000.dbf', 6010000n, 6011000n, true],
        [1, 42, '/opt/oracle/fra/FREE/archivelog/1_42_1160000000.dbf', 6011000n, 6012000n, true],
        [1, 43, '/opt/oracle/oradata/FREE/redo03.log', 6012000n, null, false],
        [2, 6, '/opt/oracle/fra/FREE/archivelog/2_6_1160000000.dbf', 6008000n, 6011500n, true],
        [2, 7, '/opt/oracle/oradata/FREE/redo04.log', 6011500n, null, false],
      ],
    );
  });

  test('mined rows: XID upper case, RS_ID trimmed, flags as booleans, times with the offset of an IANA zone', () => {
    const rows = readMinedRows(rowsOf('invented-rows-contents.json'), 'Europe/Madrid');
    assert.equal(rows.length, 7);
    assert.deepEqual(rows[0], {
      scn: 6012001n,
      startScn: null,
      commitScn: null,
      timestamp: '2026-03-29T01:59:59+01:00',
      xid: '0A001F00E3010000',
      operationCode: 6,
      owner: null,
      table: null,
      sqlRedo: 'set transaction read write;',
      rowId: 'AAAAAAAAAAAAAAAAAA',
      rollback: false,
      csf: false,
      rsId: '0x00002b.00000102.0010',
      ssn: 0,
      thread: 1,
      username: 'APP',
    });
    assert.equal(rows[1]!.timestamp, '2026-03-29T03:00:00+02:00', 'after the spring change');
    assert.equal(rows[1]!.sqlRedo, 'insert into "HR"."EMP"("ID","NAME") values (\'1\',\'Ann\');');
    assert.deepEqual([rows[2]!.csf, rows[3]!.csf], [true, false]);
    assert.equal(rows[4]!.rollback, true);
    assert.deepEqual([rows[5]!.operationCode, rows[5]!.commitScn, rows[5]!.startScn], [7, 6012005n, 6012001n]);
    assert.deepEqual([rows[6]!.operationCode, rows[6]!.thread], [36, 2]);
    const fixed = readMinedRows(rowsOf('invented-rows-contents.json'), '-05:00');
    assert.equal(fixed[0]!.timestamp, '2026-03-29T01:59:59-05:00');
    assert.throws(() => readMinedRows([{ ...rowsOf('invented-rows-contents.json')[0]!, XID: 'ABC' }], '+00:00'), SitesyncError);
  });

  test('localTimeToIso: both sides of the autumn change, the earlier offset in the repeated hour', () => {
    assert.equal(localTimeToIso('2026-10-25 01:30:00', 'Europe/Madrid'), '2026-10-25T01:30:00+02:00');
    assert.equal(localTimeToIso('2026-10-25 02:30:00', 'Europe/Madrid'), '2026-10-25T02:30:00+02:00');
    assert.equal(localTimeToIso('2026-10-25 03:30:00', 'Europe/Madrid'), '2026-10-25T03:30:00+01:00');
    assert.equal(localTimeToIso('2026-07-01 12:00:00', 'America/St_Johns'), '2026-07-01T12:00:00-02:30');
    assert.equal(localTimeToIso('2026-07-01 12:00:00', 'UTC'), '2026-07-01T12:00:00+00:00');
  });

  test('columns: as ALL_TAB_COLS says, null for a table that is gone', () => {
    const columns = readColumns(rowsOf('invented-rows-columns.json'))!;
    assert.deepEqual(columns[0], { name: 'ID', type: 'NUMBER', precision: 10, scale: 0, dataLength: 22, charLength: 0, nullable: false, keyOrdinal: 1 });
    assert.deepEqual(columns[1], { name: 'REGION', type: 'VARCHAR2', precision: null, scale: null, dataLength: 160, charLength: 40, nullable: false, keyOrdinal: 2 });
    assert.deepEqual(
      columns.map((c) => [c.name, c.type, c.nullable, c.keyOrdinal]),
      [
        ['ID', 'NUMBER', false, 1],
        ['REGION', 'VARCHAR2', false, 2],
        ['HIRED', 'TIMESTAMP(6) WITH TIME ZONE', true, 0],
        ['Rate', 'FLOAT', true, 0],
        ['NOTES', 'CLOB', true, 0],
      ],
    );
    assert.equal(readColumns([]), null);
  });

  test('setup facts: privileges, probes, the tables without ALL COLUMNS logging, and the fixes they lead to', () => {
    const f = fixture('invented-rows-setup.json');
    const facts = readSetupFacts({
      database: f.database as Row[],
      privileges: f.privileges as Row[],
      // V_$TRANSACTION (the first start's oldest open transaction) was added after the fixture was written.
      views: new Map([...Object.entries(f.views as Record<string, boolean>), ['V_$TRANSACTION', true]]),
      packages: f.packages as Row[],
      tablesWithoutLogging: f.tablesWithoutLogging as Row[],
      progressTable: f.progressTable as Row[],
    });
    assert.deepEqual(facts, {
      archiveLog: true,
      minimalSupplementalLogging: true,
      allColumnsLogging: false,
      tablesWithoutLogging: ['HR.EMP', 'SITESYNC.APPLY_PROGRESS'],
      missingPrivileges: ['LOGMINING', 'SELECT ON V_$LOGMNR_LOGS'],
      cdb: true,
      user: 'C##SITESYNC',
      progressTable: true,
    });
    assert.deepEqual(
      setupProblems(facts).map((p) => p.fix),
      [
        'as SYSDBA in CDB$ROOT: GRANT LOGMINING TO C##SITESYNC CONTAINER=ALL; GRANT SELECT ON SYS.V_$LOGMNR_LOGS TO C##SITESYNC CONTAINER=ALL;',
        'ALTER TABLE "HR"."EMP" ADD SUPPLEMENTAL LOG DATA (ALL) COLUMNS; ALTER TABLE "SITESYNC"."APPLY_PROGRESS" ADD SUPPLEMENTAL LOG DATA (ALL) COLUMNS; (or for the whole database: ALTER DATABASE ADD SUPPLEMENTAL LOG DATA (ALL) COLUMNS;)',
      ],
    );
    const logged = readSetupFacts({ database: [{ ...(f.database as Row[])[0], SUPPLEMENTAL_LOG_DATA_ALL: 'YES', CDB: 'NO' }], privileges: [], views: new Map(), packages: [], tablesWithoutLogging: null, progressTable: [] });
    assert.equal(logged.allColumnsLogging, true);
    assert.equal(logged.progressTable, false);
    assert.ok(!logged.missingPrivileges.includes('SET CONTAINER'), 'SET CONTAINER only in a CDB');
    assert.ok(logged.missingPrivileges.includes('EXECUTE ON DBMS_LOGMNR'));
    assert.ok(logged.missingPrivileges.includes('SELECT ON V_$TRANSACTION'), 'the first start reads V$TRANSACTION');
  });

  test('progress row', () => {
    assert.equal(readProgressRow([]), null);
    assert.deepEqual(readProgressRow([{ LAST_PUBLISHED: null, CHECKPOINT: 'A:B ', SEEN: '{}' }]), { lastPublished: null, checkpoint: 'A:B', seen: '{}' });
  });
});

/** A session that answers by method from a script and records every call. */
class FakeSession implements OracleSession {
  readonly calls: { kind: string; method: string; statement: Statement }[] = [];
  closed = false;
  constructor(private readonly answers: Record<string, Row[] | Error>) {}
  private answer(method: string): Row[] {
    const a = this.answers[method];
    if (a instanceof Error) throw a;
    return a ?? [];
  }
  async query(method: string, statement: Statement): Promise<Row[]> {
    this.calls.push({ kind: 'query', method, statement });
    return this.answer(method);
  }
  async execute(method: string, statement: Statement): Promise<void> {
    this.calls.push({ kind: 'execute', method, statement });
    this.answer(method);
  }
  async open(method: string, statement: Statement): Promise<Cursor> {
    this.calls.push({ kind: 'open', method, statement });
    const rows = [...this.answer(method)];
    return {
      next: async (limit) => {
        this.calls.push({ kind: 'next', method, statement });
        return rows.splice(0, limit);
      },
      close: async () => {
        this.calls.push({ kind: 'close', method, statement });
      },
    };
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

const oraError = (n: number, text: string): Error => Object.assign(new Error(`ORA-${String(n).padStart(5, '0')}: ${text}`), { errorNum: n, code: `ORA-${String(n).padStart(5, '0')}` });

describe('Oracle reader over fake sessions', () => {
  const LOG: RedoLog = { name: '/redo01.log', thread: 1, sequence: 43, firstScn: 6012000n, nextScn: null, archived: false };

  test('mine: clock offset, logs added, LogMiner started, contents in batches, filtered to the PDB, then ended', async () => {
    const catalog = new FakeSession({ container: [{ CON_NAME: 'FREEPDB1', CDB: 'YES' }] });
    const miner = new FakeSession({ clockOffset: [{ OFFSET: '+02:00' }], mine: rowsOf('invented-rows-contents.json') });
    const reader = new OracleLogMinerReader({ url: URL_, site: 'madrid', sessions: { catalog, miner } });
    const session = await reader.mine([LOG], 6012000n, 6012010n, ['HR']);
    const first = await session.next(4);
    const second = await session.next(4);
    const third = await session.next(4);
    await session.end();
    await session.end();
    assert.deepEqual([first.length, second.length, third.length], [4, 3, 0]);
    assert.equal(first[0]!.timestamp, '2026-03-29T01:59:59+02:00');
    assert.deepEqual(
      miner.calls.map((c) => `${c.kind}:${c.method}`),
      ['query:clockOffset', 'execute:addLogfiles', 'execute:startLogminer', 'open:mine', 'next:mine', 'next:mine', 'next:mine', 'close:mine', 'execute:endLogminer'],
    );
    const contents = miner.calls.find((c) => c.kind === 'open')!.statement;
    assert.deepEqual(contents.binds.find((b) => b.name === 'pdb'), { name: 'pdb', value: 'FREEPDB1' });
    await reader.close();
    assert.ok(miner.closed && catalog.closed);
  });

  test('mine: the URL time zone is used instead of the clock offset; an empty window starts nothing', async () => {
    const catalog = new FakeSession({ container: [{ CON_NAME: 'ORCL', CDB: 'NO' }] });
    const miner = new FakeSession({ mine: rowsOf('invented-rows-contents.json') });
    const reader = new OracleLogMinerReader({ url: `${URL_}?timeZone=Europe/Madrid`, site: 'madrid', sessions: { catalog, miner } });
    const empty = await reader.mine([LOG], 10n, 10n, null);
    assert.deepEqual(await empty.next(10), []);
    await empty.end();
    assert.equal(miner.calls.length, 0);
    const session = await reader.mine([LOG], 1n, 10n, null);
    assert.equal((await session.next(100))[1]!.timestamp, '2026-03-29T03:00:00+02:00');
    assert.ok(!miner.calls.some((c) => c.method === 'clockOffset'));
    assert.ok(!miner.calls.find((c) => c.kind === 'open')!.statement.sql.includes('SRC_CON_NAME'), 'not a CDB: no PDB filter');
  });

  test('mine: a failed START_LOGMNR ends LogMiner and says what failed, without the password', async () => {
    const catalog = new FakeSession({ container: [{ CON_NAME: 'FREEPDB1', CDB: 'YES' }] });
    const miner = new FakeSession({ clockOffset: [{ OFFSET: '+00:00' }], startLogminer: oraError(1291, 'missing log file') });
    const reader = new OracleLogMinerReader({ url: URL_, site: 'madrid', sessions: { catalog, miner } });
    await assert.rejects(reader.mine([LOG], 1n, 10n, null), (e: unknown) => {
      assert.ok(e instanceof SitesyncError);
      assert.match(e.message, /ORA-01291: missing log file/);
      assert.ok(!e.message.includes('s3cret'), e.message);
      return true;
    });
    assert.equal(miner.calls.at(-1)!.method, 'endLogminer');
  });

  test('logs, threads, current SCN on the miner; columns and progress on the catalog', async () => {
    const f = fixture('invented-rows-logs.json');
    const catalog = new FakeSession({ container: [{ CON_NAME: 'FREEPDB1', CDB: 'YES' }], columns: rowsOf('invented-rows-columns.json'), readProgress: [] });
    const miner = new FakeSession({ onlineLogs: f.online as Row[], archivedLogs: f.archived as Row[], threads: rowsOf('invented-rows-threads.json'), currentScn: [{ CURRENT_SCN: '6012345' }] });
    const reader = new OracleLogMinerReader({ url: URL_, site: 'madrid', sessions: { catalog, miner } });
    assert.equal((await reader.logs(6009500n)).length, 6);
    assert.equal((await reader.threads()).length, 3);
    assert.equal(await reader.currentScn(), 6012345n);
    assert.equal((await reader.columns('HR', 'EMP'))!.length, 5);
    assert.equal(await reader.readProgress('madrid'), null);
    await reader.ensureCaptureProgress();
    await reader.writeProgress('madrid', { lastPublished: null, checkpoint: 'c', seen: '{}' });
    assert.deepEqual(
      catalog.calls.map((c) => c.method),
      ['container', 'columns', 'readProgress', 'ensureCaptureProgress', 'writeProgress'],
    );
  });

  test('oldest open transaction: V$TRANSACTION on the miner, only the PDB\'s in a CDB, exact past 2^53, null when none', async () => {
    assert.deepEqual(oldestOpenTransactionStatement(null), { sql: 'SELECT TO_CHAR(MIN(START_SCN)) AS START_SCN FROM V$TRANSACTION', binds: [] });
    assert.deepEqual(oldestOpenTransactionStatement('FREEPDB1'), {
      sql: 'SELECT TO_CHAR(MIN(START_SCN)) AS START_SCN FROM V$TRANSACTION WHERE CON_ID = CON_NAME_TO_ID(:pdb)',
      binds: [{ name: 'pdb', value: 'FREEPDB1' }],
    });
    assert.equal(readOldestOpenTransaction([{ START_SCN: null }]), null);
    assert.equal(readOldestOpenTransaction([{ START_SCN: '9007199254740993' }]), 9007199254740993n);
    assert.throws(() => readOldestOpenTransaction([{ START_SCN: '12.5' }]), SitesyncError);
    const catalog = new FakeSession({ container: [{ CON_NAME: 'FREEPDB1', CDB: 'YES' }] });
    const miner = new FakeSession({ oldestOpenTransaction: [{ START_SCN: '6012001' }] });
    const reader = new OracleLogMinerReader({ url: URL_, site: 'madrid', sessions: { catalog, miner } });
    assert.equal(await reader.oldestOpenTransactionScn(), 6012001n);
    assert.deepEqual(miner.calls.map((c) => [c.method, c.statement.binds]), [['oldestOpenTransaction', [{ name: 'pdb', value: 'FREEPDB1' }]]]);
    const plain = new OracleLogMinerReader({ url: URL_, site: 'madrid', sessions: { catalog: new FakeSession({ container: [{ CON_NAME: 'ORCL', CDB: 'NO' }] }), miner: new FakeSession({ oldestOpenTransaction: [{ START_SCN: null }] }) } });
    assert.equal(await plain.oldestOpenTransactionScn(), null);
  });

  test('setupFacts: a view the user cannot read is a missing privilege', async () => {
    const f = fixture('invented-rows-setup.json');
    const catalog = new FakeSession({ container: [{ CON_NAME: 'FREEPDB1', CDB: 'YES' }], setupFacts: f.progressTable as Row[] });
    const noView = oraError(942, 'table or view does not exist');
    class ProbingMiner extends FakeSession {
      override async query(method: string, statement: Statement): Promise<Row[]> {
        if (statement.sql.includes('FROM V$LOGMNR_LOGS')) throw noView;
        if (statement.sql.startsWith('SELECT COUNT(*) AS N FROM V$')) return [{ N: 0 }];
        if (statement.sql.includes('FROM SESSION_PRIVS')) return f.privileges as Row[];
        if (statement.sql.includes('FROM ALL_OBJECTS')) return f.packages as Row[];
        return super.query(method, statement);
      }
    }
    const miner = new ProbingMiner({ setupFacts: [{ ...(f.database as Row[])[0], SUPPLEMENTAL_LOG_DATA_ALL: 'YES' }] });
    const reader = new OracleLogMinerReader({ url: URL_, site: 'madrid', sessions: { catalog, miner } });
    const facts = await reader.setupFacts(['HR']);
    assert.deepEqual(facts.missingPrivileges, ['LOGMINING', 'SELECT ON V_$LOGMNR_LOGS']);
    assert.equal(facts.allColumnsLogging, true);
    assert.ok(!catalog.calls.some((c) => c.statement.sql.includes('ALL_LOG_GROUPS')), 'not asked when the database logs all columns');
  });
});

describe('Oracle errors', () => {
  const njs = (code: string, text: string, errorNum?: number): Error => Object.assign(new Error(`${code}: ${text}`), { code, ...(errorNum !== undefined ? { errorNum } : {}) });

  test('grading by ORA number', () => {
    for (const n of [60, 54, 30006, 3113, 3114, 3135, 12170, 12541, 12514, 1013]) assert.equal(classifyOracleError(oraError(n, 'x')), 'transient', `ORA-${n}`);
    for (const n of [942, 904, 1031]) assert.equal(classifyOracleError(oraError(n, 'x')), 'schema', `ORA-${n}`);
    for (const n of [1, 1400, 12899, 1401, 1438, 1840, 1841, 1861, 2291, 2292, 1722]) assert.equal(classifyOracleError(oraError(n, 'x')), 'data', `ORA-${n}`);
    assert.equal(classifyOracleError(oraError(20001, 'a trigger refused it')), 'data', 'unlisted: data');
    assert.equal(classifyOracleError(new TypeError('cannot bind')), 'data');
  });

  test('connection loss from the driver: NJS codes, and ORA numbers the driver rewrote to NJS-500', () => {
    assert.equal(classifyOracleError(njs('NJS-500', 'connection to Oracle Database was closed or broken\nORA-03113: end-of-file on communication channel', 3113)), 'transient');
    assert.equal(classifyOracleError(njs('NJS-503', 'connection to host db port 1521 could not be established.')), 'transient');
    assert.equal(classifyOracleError(njs('NJS-511', 'connection to listener at host db port 1521 was refused.')), 'transient');
    assert.equal(classifyOracleError(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1521'), { code: 'ECONNREFUSED' })), 'transient');
  });

  test('SitesyncErrors graded by their consequence', () => {
    assert.equal(classifyOracleError(new SitesyncError('SITESYNC_ERR_APPLY_SCHEMA', 'x')), 'schema');
    assert.equal(classifyOracleError(new SitesyncError('SITESYNC_ERR_DECODE', 'x')), 'data');
    assert.equal(classifyOracleError(new OracleUnreachableError('x')), 'transient');
  });

  test('describe: a redo log reused between listing and mining (ORA-00310, ORA-01291) breaks the stream as retryable, not fatal', () => {
    const url = 'oracle://APP:s3cret@db:1521/FREEPDB1';
    const reused = Object.assign(new Error("ORA-00310: archived log contains sequence 45; sequence 43 required\nORA-00334: archived log: '/opt/oracle/oradata/FREE/redo01.log'"), { errorNum: 310 });
    const missing = oraError(1291, 'missing logfile');
    for (const error of [reused, missing, Object.assign(new Error('ORA-06512: at "SYS.DBMS_LOGMNR", line 72\nORA-01291: missing logfile'), { errorNum: 6512 })]) {
      const described = describeOracleError(error, url, 'madrid') as SitesyncError;
      assert.equal(described.code, 'SITESYNC_ERR_DATABASE_UNREACHABLE', error.message);
      assert.equal(described.consequence, 'retry');
      assert.ok(!described.message.includes('s3cret') && !described.message.includes('\n'));
    }
  });

  test('describe: login refused, unreachable, missing service, privileges — one line, never the password', () => {
    const url = 'oracle://APP:s3cret@db:1521/FREEPDB1';
    const login = describeOracleError(oraError(1017, 'invalid credential or not authorized; logon denied'), url, 'madrid') as SitesyncError;
    assert.equal(login.code, 'SITESYNC_ERR_PERMISSION');
    assert.match(login.message, /refused the login/);
    const down = describeOracleError(njs('NJS-503', 'connection to host db port 1521 could not be established. (CONNECTION_ID=x)\nconnect ECONNREFUSED'), url, 'madrid') as SitesyncError;
    assert.equal(down.code, 'SITESYNC_ERR_DATABASE_UNREACHABLE');
    assert.ok(down instanceof OracleUnreachableError);
    const service = describeOracleError(njs('NJS-518', 'cannot connect to Oracle Database. Service "FREEPDB9" is not registered with the listener at host db port 1521.'), url, 'madrid') as SitesyncError;
    assert.equal(service.code, 'SITESYNC_ERR_DATABASE_UNREACHABLE');
    assert.match(service.message, /listener does not know the service/);
    const rights = describeOracleError(oraError(1031, 'insufficient privileges'), url, 'madrid') as SitesyncError;
    assert.equal(rights.code, 'SITESYNC_ERR_PERMISSION');
    for (const e of [login, down, service, rights]) {
      assert.ok(!e.message.includes('s3cret'), e.message);
      assert.ok(!e.message.includes('\n'), e.message);
      assert.match(e.message, /^Oracle of site madrid \(oracle:\/\/APP:\*\*\*@db:1521\/FREEPDB1\)/);
    }
    const other = describeOracleError(oraError(6550, 'line 1, column 7: PLS-00201'), url, 'madrid') as SitesyncError;
    assert.equal(other.code, 'SITESYNC_ERR_CONFIG');
    assert.match(other.message, /\(ORA-06550\)/);
  });
});

describe('Oracle status', () => {
  test('statusOf: the checkpoint described, the current SCN, applied positions', () => {
    const after = '00000000005BBE3900010A001F00E3010000';
    const status = statusOf('madrid', ['paris', 'rome'], {
      tables: [{ TABLE_NAME: 'CAPTURE_PROGRESS' }, { TABLE_NAME: 'APPLY_PROGRESS' }],
      capture: [{ CHECKPOINT: `${after}:00000000005BBE30`, AGE_SECONDS: 4 }],
      currentScn: [{ CURRENT_SCN: '6012400' }],
      applied: [{ SOURCE: 'paris', POSITION: '0000000016B3748' }],
    });
    assert.deepEqual(status.capture, {
      name: 'LogMiner capture of madrid',
      exists: true,
      active: true,
      confirmed: '6012473/1/0A001F00E3010000',
      current: 'SCN 6012400',
      lagBytes: null,
      retainedBytes: null,
      release: "DELETE FROM SITESYNC.CAPTURE_PROGRESS WHERE SITE = 'madrid'; COMMIT;",
    });
    assert.deepEqual(status.applied, [
      { source: 'paris', name: 'SITESYNC.APPLY_PROGRESS', position: '0000000016B3748' },
      { source: 'rome', name: 'SITESYNC.APPLY_PROGRESS', position: null },
    ]);
    const idle = statusOf('madrid', [], { tables: [], capture: [], currentScn: null, applied: [] });
    assert.equal(idle.capture.exists, false);
    assert.equal(idle.capture.current, 'unknown (no right to read V$DATABASE)');
  });

  test('readOracleStatus reads only the tables there are', async () => {
    const session = new FakeSession({ status: [{ TABLE_NAME: 'APPLY_PROGRESS' }], currentScn: [{ CURRENT_SCN: '77' }] });
    const status = await readOracleStatus(URL_, 'madrid', ['paris'], session);
    assert.equal(status.capture.exists, false);
    assert.equal(status.capture.current, 'SCN 77');
    assert.ok(session.closed);
    assert.ok(!session.calls.some((c) => c.statement.sql.includes('CAPTURE_PROGRESS')));
  });
});
