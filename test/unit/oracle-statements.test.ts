/**
 * The Oracle apply statements (connectors/oracle/oracle-statements.ts), compared with expected SQL text. The
 * tables are invented fixtures (no database here): what is checked is the text oracledb-apply-connection.ts
 * sends — double-quoted names, bind variables and how each is bound, conversions with explicit format models,
 * exact image matches with ROWNUM = 1, CHAR compared as CHAR, LOBs by DBMS_LOB.COMPARE, the forward-only
 * progress MERGE, no trailing `;`.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { baseType, findColumn, targetTable, type TargetColumn } from '../../connectors/oracle/apply-connection.ts';
import * as sql from '../../connectors/oracle/oracle-statements.ts';

function col(name: string, type: string, facts: Partial<TargetColumn> = {}): TargetColumn {
  return { name, type, precision: null, scale: null, dataLength: 0, charLength: 0, nullable: true, keyOrdinal: 0, identity: null, virtual: false, charset: null, ...facts };
}

const id = col('ID', 'NUMBER', { precision: 10, scale: 0, keyOrdinal: 1, nullable: false, dataLength: 22 });
const note = col('Note', 'VARCHAR2', { dataLength: 80, charLength: 20, charset: 'AL32UTF8' });
const amount = col('AMOUNT', 'NUMBER', { precision: 12, scale: 2, dataLength: 22 });
const orders = targetTable('SHOP', 'ORDERS', [id, note, amount]);

describe('oracle statements (invented fixtures)', () => {
  test('identifiers are double-quoted as Oracle keeps them; a name Oracle cannot have is refused', () => {
    assert.equal(sql.quoteName('Mixed Case'), '"Mixed Case"');
    assert.equal(sql.qualifiedName('HR', 'emp$1'), '"HR"."emp$1"');
    assert.throws(() => sql.quoteName('a"b'), /not a possible Oracle identifier/);
    assert.throws(() => sql.quoteName(''), /not a possible Oracle identifier/);
  });

  test('column types from ALL_TAB_COLS: sizes dropped from DATA_TYPE; names exact first, then upper case', () => {
    assert.equal(baseType('TIMESTAMP(6) WITH TIME ZONE'), 'TIMESTAMP WITH TIME ZONE');
    assert.equal(baseType('INTERVAL DAY(2) TO SECOND(6)'), 'INTERVAL DAY TO SECOND');
    assert.equal(baseType('interval year(4) to month'), 'INTERVAL YEAR TO MONTH');
    assert.equal(baseType('NUMBER'), 'NUMBER');
    assert.equal(findColumn(orders, 'Note'), note);
    assert.equal(findColumn(orders, 'amount'), amount);
    assert.equal(findColumn(orders, 'note'), undefined); // "Note" is neither note nor NOTE
  });

  test('type texts for messages', () => {
    assert.equal(sql.typeText(amount), 'NUMBER(12,2)');
    assert.equal(sql.typeText(col('A', 'NUMBER', { scale: 0 })), 'NUMBER(*,0)');
    assert.equal(sql.typeText(col('A', 'NUMBER')), 'NUMBER');
    assert.equal(sql.typeText(col('A', 'FLOAT', { precision: 63 })), 'FLOAT(63)');
    assert.equal(sql.typeText(note), 'VARCHAR2(20 CHAR)');
    assert.equal(sql.typeText(col('A', 'VARCHAR2', { dataLength: 20, charLength: 20 })), 'VARCHAR2(20 BYTE)');
    assert.equal(sql.typeText(col('A', 'NVARCHAR2', { dataLength: 40, charLength: 20 })), 'NVARCHAR2(20)');
    assert.equal(sql.typeText(col('A', 'RAW', { dataLength: 16 })), 'RAW(16)');
    assert.equal(sql.typeText(col('A', 'TIMESTAMP WITH TIME ZONE', { scale: 3 })), 'TIMESTAMP(3) WITH TIME ZONE');
    assert.equal(sql.typeText(col('A', 'INTERVAL DAY TO SECOND', { precision: 3, scale: 2 })), 'INTERVAL DAY(3) TO SECOND(2)');
  });

  test('value expressions convert server-side with explicit format models; binds typed per column', () => {
    const e = (c: TargetColumn): string => sql.valueExpression(c, ':p0');
    assert.equal(e(amount), 'TO_NUMBER(:p0)');
    assert.equal(e(col('A', 'FLOAT')), 'TO_NUMBER(:p0)');
    assert.equal(e(col('A', 'DATE')), "TO_DATE(:p0, 'YYYY-MM-DD HH24:MI:SS')");
    assert.equal(e(col('A', 'TIMESTAMP', { scale: 6 })), "TO_TIMESTAMP(:p0, 'YYYY-MM-DD HH24:MI:SS.FF6')");
    assert.equal(e(col('A', 'TIMESTAMP WITH TIME ZONE', { scale: 6 })), "TO_TIMESTAMP_TZ(:p0, 'YYYY-MM-DD HH24:MI:SS.FF6 TZH:TZM')");
    assert.equal(e(col('A', 'TIMESTAMP WITH LOCAL TIME ZONE', { scale: 6 })), "TO_TIMESTAMP_TZ(:p0, 'YYYY-MM-DD HH24:MI:SS.FF6 TZH:TZM')");
    assert.equal(e(col('A', 'INTERVAL YEAR TO MONTH')), 'TO_YMINTERVAL(:p0)');
    assert.equal(e(col('A', 'INTERVAL DAY TO SECOND')), 'TO_DSINTERVAL(:p0)');
    assert.equal(e(note), ':p0');
    assert.equal(e(col('A', 'RAW', { dataLength: 16 })), ':p0');
    assert.equal(e(col('A', 'BINARY_DOUBLE')), ':p0');
    const t = (type: string): string => sql.parameterType(col('A', type));
    assert.deepEqual(
      ['VARCHAR2', 'CHAR', 'NVARCHAR2', 'NCHAR', 'CLOB', 'NCLOB', 'RAW', 'BLOB', 'BINARY_DOUBLE', 'BINARY_FLOAT', 'NUMBER', 'DATE'].map(t),
      ['text', 'text', 'ntext', 'ntext', 'clob', 'nclob', 'raw', 'blob', 'double', 'float', 'text', 'text'],
    );
  });

  test('insert: one row, no PL/SQL, no savepoint (ORA-00001 undoes the statement only)', () => {
    const s = sql.insertStatement(orders, { columns: [id, note, amount], values: ['7', 'hello', '12.5'] });
    assert.equal(s.text, 'INSERT INTO "SHOP"."ORDERS" ("ID", "Note", "AMOUNT") VALUES (TO_NUMBER(:p0), :p1, TO_NUMBER(:p2))');
    assert.deepEqual(s.parameters, [
      { name: 'p0', type: 'text', value: '7' },
      { name: 'p1', type: 'text', value: 'hello' },
      { name: 'p2', type: 'text', value: '12.5' },
    ]);
    assert.throws(() => sql.insertStatement(orders, { columns: [col('V', 'NUMBER', { virtual: true })], values: ['1'] }), /never written/);
    assert.throws(() => sql.insertStatement(orders, { columns: [col('I', 'NUMBER', { identity: 'ALWAYS' })], values: ['1'] }), /GENERATED ALWAYS/);
  });

  test('update and delete by key, plain equality', () => {
    const u = sql.updateStatement(orders, { columns: [note], values: ['x'] }, { by: 'key', columns: [id], values: ['7'] });
    assert.equal(u.text, 'UPDATE "SHOP"."ORDERS" SET "Note" = :p0 WHERE "ID" = TO_NUMBER(:p1)');
    const d = sql.deleteStatement(orders, { by: 'key', columns: [id], values: ['7'] });
    assert.equal(d.text, 'DELETE FROM "SHOP"."ORDERS" WHERE "ID" = TO_NUMBER(:p0)');
    assert.throws(() => sql.updateStatement(orders, { columns: [], values: [] }, { by: 'key', columns: [id], values: ['7'] }), /without columns/);
  });

  test('a table without a key: the whole old image, NULL with IS NULL, CHAR as CHAR, LOBs compared, ROWNUM = 1', () => {
    const code = col('CODE', 'CHAR', { dataLength: 5, charLength: 5 });
    const ncode = col('NCODE', 'NCHAR', { dataLength: 10, charLength: 5 });
    const body = col('BODY', 'CLOB');
    const bytes = col('BYTES', 'BLOB');
    const when = col('WHEN', 'TIMESTAMP', { scale: 6 });
    const loose = targetTable('SHOP', 'LOOSE', [code, ncode, body, bytes, when, note]);
    const match = { by: 'image' as const, columns: [code, ncode, body, bytes, when, note], values: ['ab', 'é', 'long text', Buffer.from([1]), '2024-01-01 00:00:00.000000', null] };
    const d = sql.deleteStatement(loose, match);
    assert.equal(
      d.text,
      'DELETE FROM "SHOP"."LOOSE" WHERE "CODE" = CAST(:p0 AS CHAR(5 BYTE)) AND "NCODE" = CAST(:p1 AS NCHAR(5)) AND DBMS_LOB.COMPARE("BODY", :p2) = 0 AND DBMS_LOB.COMPARE("BYTES", :p3) = 0 AND "WHEN" = TO_TIMESTAMP(:p4, \'YYYY-MM-DD HH24:MI:SS.FF6\') AND "Note" IS NULL AND ROWNUM = 1',
    );
    assert.deepEqual(
      d.parameters.map((p) => p.type),
      ['text', 'ntext', 'clob', 'blob', 'text'],
    );
    const u = sql.updateStatement(loose, { columns: [note], values: ['y'] }, match);
    assert.match(u.text, /^UPDATE "SHOP"\."LOOSE" SET "Note" = :p0 WHERE "CODE" = CAST\(:p1 AS CHAR\(5 BYTE\)\) .* AND ROWNUM = 1$/);
  });

  test('exists locks the row it finds (FOR UPDATE), one row at most', () => {
    assert.equal(sql.existsStatement(orders, { by: 'key', columns: [id], values: ['7'] }).text, 'SELECT 1 AS FOUND FROM "SHOP"."ORDERS" WHERE "ID" = TO_NUMBER(:p0) AND ROWNUM = 1 FOR UPDATE');
    assert.equal(sql.existsStatement(orders, { by: 'image', columns: [note], values: ['a'] }).text, 'SELECT 1 AS FOUND FROM "SHOP"."ORDERS" WHERE "Note" = :p0 AND ROWNUM = 1 FOR UPDATE');
  });

  test('a TRUNCATE change is a DELETE (TRUNCATE TABLE is DDL and commits)', () => {
    assert.deepEqual(sql.deleteAllStatement(orders), { text: 'DELETE FROM "SHOP"."ORDERS"', parameters: [] });
  });

  test('the progress MERGE moves the row only forward (length, then value); always mode counts up in any case', () => {
    const forward = sql.progressStatement({ source: 'paris', sourceKind: 'postgres', position: '00000000000000AB', commitTimeMicros: 1700000000000000n }, 'forward');
    assert.equal(
      forward.text,
      [
        'MERGE INTO "SITESYNC"."APPLY_PROGRESS" t',
        'USING (SELECT CAST(:p0 AS VARCHAR2(40)) AS SOURCE, CAST(:p1 AS VARCHAR2(20)) AS SOURCE_KIND, CAST(:p2 AS VARCHAR2(64)) AS POSITION, TO_NUMBER(:p3) AS COMMIT_TIME_MICROS FROM DUAL) s',
        'ON (t.SOURCE = s.SOURCE)',
        'WHEN MATCHED THEN',
        '  UPDATE SET t.SOURCE_KIND = s.SOURCE_KIND, t.POSITION = s.POSITION, t.COMMIT_TIME_MICROS = s.COMMIT_TIME_MICROS, t.APPLIED_TRANSACTIONS = t.APPLIED_TRANSACTIONS + 1',
        '  WHERE (LENGTH(t.POSITION) < LENGTH(s.POSITION) OR (LENGTH(t.POSITION) = LENGTH(s.POSITION) AND t.POSITION < s.POSITION))',
        'WHEN NOT MATCHED THEN',
        '  INSERT (SOURCE, SOURCE_KIND, POSITION, COMMIT_TIME_MICROS, APPLIED_TRANSACTIONS) VALUES (s.SOURCE, s.SOURCE_KIND, s.POSITION, s.COMMIT_TIME_MICROS, 1)',
      ].join('\n'),
    );
    assert.deepEqual(
      forward.parameters.map((p) => p.value),
      ['paris', 'postgres', '00000000000000AB', '1700000000000000'],
    );
    const always = sql.progressStatement({ source: 'paris', sourceKind: 'postgres', position: '00000000000000AB', commitTimeMicros: 1n }, 'always');
    assert.match(always.text, /WHEN MATCHED THEN\n {2}UPDATE SET t\.SOURCE_KIND = CASE WHEN \(LENGTH/);
    assert.match(always.text, /t\.POSITION = CASE WHEN .* THEN s\.POSITION ELSE t\.POSITION END, t\.APPLIED_TRANSACTIONS = t\.APPLIED_TRANSACTIONS \+ 1\n/);
    assert.doesNotMatch(always.text, /\n {2}WHERE/);
  });

  test('describeTable reads ALL_TAB_COLS of a table (not a view) with key, identity and character set', () => {
    const s = sql.describeTableStatement('SHOP', 'Mixed');
    assert.deepEqual(
      s.parameters.map((p) => p.value),
      ['SHOP', 'Mixed'],
    );
    assert.match(s.text, /FROM ALL_TAB_COLS c\n WHERE c\.OWNER = :p0 AND c\.TABLE_NAME = :p1 AND c\.HIDDEN_COLUMN = 'NO'/);
    assert.match(s.text, /ALL_TAB_IDENTITY_COLS/);
    assert.match(s.text, /CONSTRAINT_TYPE = 'P'/);
    assert.match(s.text, /NLS_NCHAR_CHARACTERSET/);
    assert.match(s.text, /EXISTS \(SELECT 1 FROM ALL_TABLES/);
    assert.match(s.text, /ORDER BY c\.COLUMN_ID$/);
  });

  test('bookkeeping: SITESYNC tables, ALL COLUMNS logging on APPLY_PROGRESS, pinned session settings, no trailing ;', () => {
    assert.deepEqual(
      sql.BOOKKEEPING_TABLES.map((t) => t.name),
      ['APPLY_PROGRESS', 'PARKED', 'SPILLED_PARTS', 'CONFLICTS'],
    );
    assert.ok(sql.BOOKKEEPING_TABLES[0]!.create.includes('ALTER TABLE "SITESYNC"."APPLY_PROGRESS" ADD SUPPLEMENTAL LOG DATA (ALL) COLUMNS'));
    for (const t of sql.BOOKKEEPING_TABLES) for (const text of t.create) assert.ok(!text.trimEnd().endsWith(';'), text);
    for (const text of sql.SESSION_SETTINGS) assert.match(text, /^ALTER SESSION SET [A-Z_]+ = /);
    assert.ok(sql.SESSION_SETTINGS.includes("ALTER SESSION SET NLS_NUMERIC_CHARACTERS = '.,'"));
    assert.ok(sql.SESSION_SETTINGS.includes('ALTER SESSION SET NLS_COMP = BINARY'));
    assert.equal(sql.EXISTING_TABLES, "SELECT TABLE_NAME FROM ALL_TABLES WHERE OWNER = 'SITESYNC'");
  });

  test('parked records: MERGE keeps a record written before; cut to the columns; retried marks done once', () => {
    const p = sql.insertParkedStatement({ id: 'ABC', kind: 'refused', source: 's'.repeat(300), transactionId: null, bodySha256: 'f'.repeat(64), userId: null, route: 'r', reason: 'x'.repeat(3000) });
    assert.match(p.text, /^MERGE INTO "SITESYNC"\."PARKED" t\nUSING \(SELECT CAST\(:p0 AS CHAR\(36 BYTE\)\) AS ID FROM DUAL\) s\nON \(t\.ID = s\.ID\)\nWHEN NOT MATCHED THEN\n/);
    assert.equal(p.parameters[0]!.value, 'abc');
    assert.equal((p.parameters[2]!.value as string).length, 255);
    assert.equal((p.parameters[7]!.value as string).length, 2000);
    assert.equal(sql.cut('a\ud83d\ude00b', 2), 'a'); // never half a surrogate pair
    const f = sql.finishRetriedStatement('paris:1', 'ABC');
    assert.match(f.text, /WHERE TRANSACTION_ID = :p0 AND KIND = 'skipped' AND DONE_AT IS NULL\n {3}AND EXISTS \(SELECT 1 FROM "SITESYNC"\."PARKED" o WHERE o\.ID = CAST\(:p1 AS CHAR\(36 BYTE\)\) AND o\.DONE_AT IS NULL\)$/);
  });

  test('spilled parts: a MERGE with the body as a BLOB; conflicts with UTC times', () => {
    const k = sql.keepPartStatement('paris', 'paris:9', 2, 3, Buffer.from('body'));
    assert.match(k.text, /^MERGE INTO "SITESYNC"\."SPILLED_PARTS" t\n/);
    assert.deepEqual(
      k.parameters.map((p) => p.type),
      ['text', 'text', 'text', 'text', 'blob'],
    );
    assert.equal(sql.microsToOracleTimestamp(1_700_000_000_123_456n), '2023-11-14 22:13:20.123456');
    const c = sql.insertConflictStatement({ kind: 'update_missing', table: 'SHOP.ORDERS', keyJson: '{"id":"1"}', remoteSite: 'paris', remoteTransaction: 'paris:1', remoteCommitTimeMicros: 1n, localSite: null, localCommitTimeMicros: null, policy: 'last-writer-wins', winner: 'none', resolution: 'skipped' });
    assert.match(c.text, /^INSERT INTO "SITESYNC"\."CONFLICTS" \(KIND, TABLE_NAME, KEY, .*TO_TIMESTAMP\(:p5, 'YYYY-MM-DD HH24:MI:SS\.FF6'\)/);
    assert.equal(c.parameters[2]!.type, 'nclob');
    assert.equal(c.parameters[5]!.value, '1970-01-01 00:00:00.000001');
    assert.equal(c.parameters[7]!.value, null);
  });
});
