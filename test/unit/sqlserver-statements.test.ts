/**
 * The SQL Server apply statements (connectors/sqlserver/sqlserver-statements.ts), compared with expected
 * T-SQL text. The tables are invented fixtures (no server here): what is checked is the text the mssql
 * connection sends — bracket quoting, parameters, CONVERT styles, IDENTITY_INSERT, exact image matches with
 * TOP (1), the forward-only progress MERGE.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { targetTable, type TargetColumn } from '../../connectors/sqlserver/apply-connection.ts';
import * as sql from '../../connectors/sqlserver/sqlserver-statements.ts';

function col(name: string, type: string, facts: Partial<TargetColumn> = {}): TargetColumn {
  return { name, type, maxLength: -1, precision: 0, scale: 0, nullable: true, identity: false, computed: false, keyOrdinal: 0, collation: null, ...facts };
}

const id = col('id', 'int', { keyOrdinal: 1, nullable: false, maxLength: 4, precision: 10 });
const note = col('note', 'nvarchar', { maxLength: 100 });
const amount = col('amount', 'decimal', { precision: 12, scale: 2, maxLength: 9 });
const orders = targetTable('shop', 'orders', [id, note, amount]);

describe('sqlserver statements (invented fixtures)', () => {
  test('identifiers are bracket-quoted with ] doubled', () => {
    assert.equal(sql.quoteName('a]b'), '[a]]b]');
    assert.equal(sql.qualifiedName('we]ird', 'ta ble'), '[we]]ird].[ta ble]');
  });

  test('type texts for CONVERT: lengths in characters for n-types, max, precision and scale', () => {
    assert.equal(sql.typeText(col('a', 'nvarchar', { maxLength: 100 })), 'nvarchar(50)');
    assert.equal(sql.typeText(col('a', 'varchar', { maxLength: -1 })), 'varchar(max)');
    assert.equal(sql.typeText(col('a', 'binary', { maxLength: 16 })), 'binary(16)');
    assert.equal(sql.typeText(amount), 'decimal(12,2)');
    assert.equal(sql.typeText(col('a', 'datetime2', { scale: 3 })), 'datetime2(3)');
    assert.equal(sql.typeText(col('a', 'float', { precision: 24 })), 'real');
    assert.equal(sql.typeText(col('a', 'float', { precision: 53 })), 'float');
  });

  test('value expressions convert server-side with explicit styles', () => {
    const e = (c: TargetColumn): string => sql.valueExpression(c, '@p0');
    assert.equal(e(col('a', 'datetime2', { scale: 7 })), 'CONVERT(datetime2(7), @p0, 126)');
    assert.equal(e(col('a', 'datetime')), 'CONVERT(datetime, @p0, 126)');
    assert.equal(e(col('a', 'smalldatetime')), 'CONVERT(smalldatetime, @p0, 126)');
    assert.equal(e(col('a', 'datetimeoffset', { scale: 6 })), 'CONVERT(datetimeoffset(6), @p0, 127)');
    assert.equal(e(col('a', 'date')), 'CONVERT(date, @p0, 23)');
    assert.equal(e(col('a', 'time', { scale: 7 })), 'CONVERT(time(7), @p0)');
    assert.equal(e(amount), 'CONVERT(decimal(12,2), @p0)');
    assert.equal(e(col('a', 'uniqueidentifier')), 'CONVERT(uniqueidentifier, @p0)');
    assert.equal(e(col('a', 'bit')), 'CONVERT(bit, @p0)');
    assert.equal(e(col('a', 'bigint')), 'CONVERT(bigint, @p0)');
    assert.equal(e(col('a', 'money')), 'CONVERT(money, @p0)');
    assert.equal(e(note), '@p0');
    assert.equal(e(col('a', 'varbinary', { maxLength: 10 })), '@p0');
    assert.equal(e(col('a', 'varchar', { maxLength: 10, collation: 'Latin1_General_100_CI_AS_SC_UTF8' })), 'CONVERT(varchar(max), @p0 COLLATE Latin1_General_100_CI_AS_SC_UTF8)');
    assert.equal(e(col('a', 'varchar', { maxLength: 10, collation: "bad'name" })), 'CONVERT(varchar(max), @p0)');
    assert.equal(e(col('a', 'float', { precision: 53 })), 'CONVERT(float, @p0)');
  });

  test('insert: one row, TRY…CATCH answering a duplicate key without an error', () => {
    const s = sql.insertStatement(orders, { columns: [id, note, amount], values: ['7', 'hello', '12.50'] });
    assert.equal(
      s.text,
      [
        'BEGIN TRY',
        '  INSERT INTO [shop].[orders] ([id], [note], [amount]) VALUES (CONVERT(int, @p0), @p1, CONVERT(decimal(12,2), @p2));',
        '  SELECT CAST(0 AS bit) AS duplicate;',
        'END TRY',
        'BEGIN CATCH',
        '  IF ERROR_NUMBER() NOT IN (2627, 2601) OR XACT_STATE() <> 1 THROW;',
        '  SELECT CAST(1 AS bit) AS duplicate;',
        'END CATCH;',
      ].join('\n'),
    );
    assert.deepEqual(s.parameters, [
      { name: 'p0', type: 'text', value: '7' },
      { name: 'p1', type: 'text', value: 'hello' },
      { name: 'p2', type: 'text', value: '12.50' },
    ]);
  });

  test('insert carrying an identity value: IDENTITY_INSERT ON before, OFF after and in the CATCH', () => {
    const ident = col('id', 'bigint', { keyOrdinal: 1, identity: true, nullable: false });
    const data = col('data', 'varbinary', { maxLength: -1 });
    const t = targetTable('dbo', 'events', [ident, data]);
    const s = sql.insertStatement(t, { columns: [ident, data], values: ['42', Buffer.from([1, 2])] });
    assert.equal(
      s.text,
      [
        'SET IDENTITY_INSERT [dbo].[events] ON;',
        'BEGIN TRY',
        '  INSERT INTO [dbo].[events] ([id], [data]) VALUES (CONVERT(bigint, @p0), @p1);',
        '  SET IDENTITY_INSERT [dbo].[events] OFF;',
        '  SELECT CAST(0 AS bit) AS duplicate;',
        'END TRY',
        'BEGIN CATCH',
        '  SET IDENTITY_INSERT [dbo].[events] OFF;',
        '  IF ERROR_NUMBER() NOT IN (2627, 2601) OR XACT_STATE() <> 1 THROW;',
        '  SELECT CAST(1 AS bit) AS duplicate;',
        'END CATCH;',
      ].join('\n'),
    );
    assert.equal(s.parameters[1]!.type, 'binary');
    // Leaving the identity column out (the target generates it): no IDENTITY_INSERT.
    assert.doesNotMatch(sql.insertStatement(t, { columns: [data], values: [Buffer.from([1])] }).text, /IDENTITY_INSERT/);
  });

  test('insert with no column to write: DEFAULT VALUES', () => {
    assert.match(sql.insertStatement(orders, { columns: [], values: [] }).text, /INSERT INTO \[shop\]\.\[orders\] DEFAULT VALUES;/);
  });

  test('computed and rowversion columns are never written', () => {
    const computed = col('total', 'decimal', { computed: true, precision: 12, scale: 2 });
    const version = col('rv', 'timestamp', { maxLength: 8 });
    assert.throws(() => sql.insertStatement(orders, { columns: [computed], values: ['1'] }), /never written/);
    assert.throws(() => sql.updateStatement(orders, { columns: [version], values: [null] }, { by: 'key', columns: [id], values: ['1'] }), /never written/);
    assert.equal(sql.isWritable(computed), false);
    assert.equal(sql.isWritable(version), false);
  });

  test('update by key', () => {
    const s = sql.updateStatement(orders, { columns: [note], values: ['x'] }, { by: 'key', columns: [id], values: ['7'] });
    assert.equal(s.text, 'UPDATE [shop].[orders] SET [note] = @p0 WHERE [id] = CONVERT(int, @p1);\nSELECT @@ROWCOUNT AS affected;');
    assert.deepEqual(
      s.parameters.map((p) => p.value),
      ['x', '7'],
    );
  });

  test('update and delete of a table without a key: the whole image, exact, NULL with IS NULL, TOP (1)', () => {
    const name = col('name', 'varchar', { maxLength: 20, collation: 'SQL_Latin1_General_CP1_CI_AS' });
    const code = col('code', 'nchar', { maxLength: 10 });
    const weight = col('weight', 'float', { precision: 53 });
    const blob = col('blob', 'varbinary', { maxLength: 100 });
    const when = col('at', 'datetime2', { scale: 6 });
    const loose = targetTable('dbo', 'loose', [name, code, weight, blob, when]);
    const match = { by: 'image' as const, columns: [name, code, weight, blob, when], values: ['Ab ', 'x', '1.5', Buffer.from([0]), null] };
    const u = sql.updateStatement(loose, { columns: [name], values: ['b'] }, match);
    const where =
      '(CONVERT(varbinary(max), [name]) = CONVERT(varbinary(max), CONVERT(varchar(20), @p1 COLLATE SQL_Latin1_General_CP1_CI_AS)) AND DATALENGTH(CONVERT(varbinary(max), [name])) = DATALENGTH(CONVERT(varbinary(max), CONVERT(varchar(20), @p1 COLLATE SQL_Latin1_General_CP1_CI_AS))))' +
      ' AND (CONVERT(varbinary(max), [code]) = CONVERT(varbinary(max), CONVERT(nchar(5), @p2)) AND DATALENGTH(CONVERT(varbinary(max), [code])) = DATALENGTH(CONVERT(varbinary(max), CONVERT(nchar(5), @p2))))' +
      ' AND [weight] = CONVERT(float, @p3)' +
      ' AND ([blob] = @p4 AND DATALENGTH([blob]) = DATALENGTH(@p4))' +
      ' AND [at] IS NULL';
    assert.equal(u.text, `UPDATE TOP (1) [dbo].[loose] SET [name] = CONVERT(varchar(max), @p0 COLLATE SQL_Latin1_General_CP1_CI_AS) WHERE ${where};\nSELECT @@ROWCOUNT AS affected;`);
    assert.deepEqual(
      u.parameters.map((p) => p.type),
      ['text', 'text', 'text', 'float', 'binary'],
    );
    const d = sql.deleteStatement(loose, match);
    assert.equal(d.text, `DELETE TOP (1) FROM [dbo].[loose] WHERE ${where.replaceAll('@p1', '@p0').replaceAll('@p2', '@p1').replaceAll('@p3', '@p2').replaceAll('@p4', '@p3')};\nSELECT @@ROWCOUNT AS affected;`);
  });

  test('delete by key, exists with a lock, delete of every row for a TRUNCATE', () => {
    assert.equal(sql.deleteStatement(orders, { by: 'key', columns: [id], values: ['7'] }).text, 'DELETE FROM [shop].[orders] WHERE [id] = CONVERT(int, @p0);\nSELECT @@ROWCOUNT AS affected;');
    assert.equal(sql.existsStatement(orders, { by: 'key', columns: [id], values: ['7'] }).text, 'SELECT TOP (1) 1 AS found FROM [shop].[orders] WITH (UPDLOCK, HOLDLOCK) WHERE [id] = CONVERT(int, @p0);');
    assert.equal(sql.deleteAllStatement(orders).text, 'DELETE FROM [shop].[orders];\nSELECT @@ROWCOUNT AS affected;');
    assert.doesNotMatch(sql.deleteAllStatement(orders).text, /TRUNCATE/);
  });

  test('the progress MERGE moves the row only forward, with HOLDLOCK', () => {
    const s = sql.progressStatement({ source: 'paris', sourceKind: 'postgres', position: '00000000016B3748', commitTimeMicros: 1_700_000_000_000_000n }, 'forward');
    assert.equal(
      s.text,
      [
        'MERGE [sitesync].[apply_progress] WITH (HOLDLOCK) AS t',
        'USING (SELECT CONVERT(varchar(40), @p0) AS source, CONVERT(varchar(20), @p1) AS source_kind, CONVERT(varchar(64), @p2) AS position, CONVERT(bigint, @p3) AS commit_time_micros) AS s',
        'ON t.source = s.source',
        'WHEN MATCHED AND (LEN(t.position) < LEN(s.position) OR (LEN(t.position) = LEN(s.position) AND t.position COLLATE Latin1_General_BIN2 < s.position COLLATE Latin1_General_BIN2)) THEN',
        '  UPDATE SET source_kind = s.source_kind, position = s.position, commit_time_micros = s.commit_time_micros, applied_transactions = t.applied_transactions + 1',
        'WHEN NOT MATCHED THEN',
        '  INSERT (source, source_kind, position, commit_time_micros, applied_transactions) VALUES (s.source, s.source_kind, s.position, s.commit_time_micros, 1);',
        'SELECT @@ROWCOUNT AS affected;',
      ].join('\n'),
    );
    assert.deepEqual(
      s.parameters.map((p) => p.value),
      ['paris', 'postgres', '00000000016B3748', '1700000000000000'],
    );
    const always = sql.progressStatement({ source: 'paris', sourceKind: 'postgres', position: '01', commitTimeMicros: 1n }, 'always');
    assert.match(always.text, /WHEN MATCHED THEN\n {2}UPDATE SET source_kind = CASE WHEN .* THEN s\.source_kind ELSE t\.source_kind END, .*position = CASE WHEN .* THEN s\.position ELSE t\.position END, applied_transactions = t\.applied_transactions \+ 1/);
  });

  test('bookkeeping: schema and tables created only when missing; spilled parts; parked records; conflicts', () => {
    assert.equal(sql.CREATE_SCHEMA, "IF SCHEMA_ID(N'sitesync') IS NULL EXEC(N'CREATE SCHEMA [sitesync]');");
    assert.deepEqual(
      sql.BOOKKEEPING_TABLES.map((t) => t.name),
      ['apply_progress', 'parked', 'spilled_parts', 'conflicts'],
    );
    assert.match(sql.BOOKKEEPING_TABLES[0]!.create, /source varchar\(40\) NOT NULL PRIMARY KEY,\n {2}source_kind varchar\(20\) NOT NULL,\n {2}position varchar\(64\) NOT NULL,\n {2}commit_time_micros bigint NOT NULL,\n {2}applied_transactions bigint NOT NULL DEFAULT 0/);
    const keep = sql.keepPartStatement('paris', 'paris:01', 3, 3, Buffer.from('x'));
    assert.equal(
      keep.text,
      'DELETE FROM [sitesync].[spilled_parts] WHERE source = @p0 AND transaction_id = @p1 AND part = CONVERT(int, @p2);\n' +
        'INSERT INTO [sitesync].[spilled_parts] (source, transaction_id, part, schema_version, body) VALUES (@p0, @p1, CONVERT(int, @p2), CONVERT(int, @p3), @p4);',
    );
    assert.deepEqual(
      keep.parameters.map((p) => p.type),
      ['text', 'text', 'text', 'text', 'binary'],
    );
    const parked = sql.insertParkedStatement({ id: 'ABC', kind: 'skipped', source: 'paris', transactionId: 'paris:01', bodySha256: 'f'.repeat(64), userId: null, route: 'x/y', reason: 'r' });
    assert.match(parked.text, /^IF NOT EXISTS \(SELECT 1 FROM \[sitesync\]\.\[parked\] WITH \(UPDLOCK, HOLDLOCK\) WHERE id = @p0\)\n {2}INSERT INTO \[sitesync\]\.\[parked\] /);
    assert.equal(parked.parameters[0]!.value, 'abc');
    const conflict = sql.insertConflictStatement({
      kind: 'insert_exists',
      table: 'shop.orders',
      keyJson: '{"id":"7"}',
      remoteSite: 'paris',
      remoteTransaction: 'paris:01',
      remoteCommitTimeMicros: 1_700_000_000_123_456n,
      localSite: null,
      localCommitTimeMicros: null,
      policy: 'last-writer-wins',
      winner: 'remote',
      resolution: 'applied',
    });
    assert.match(conflict.text, /remote_commit_time, local_site, local_commit_time, policy, winner, resolution\) VALUES \(@p0, @p1, @p2, @p3, @p4, CONVERT\(datetime2\(6\), @p5, 126\), @p6, CONVERT\(datetime2\(6\), @p7, 126\), @p8, @p9, @p10\);/);
    assert.equal(conflict.parameters[5]!.value, '2023-11-14T22:13:20.123456');
    assert.equal(conflict.parameters[7]!.value, null);
  });

  test('describeTable reads sys.columns with base types and the primary key ordinal', () => {
    const s = sql.describeTableStatement('shop', 'orders');
    assert.match(s.text, /FROM sys\.columns c\n WHERE c\.object_id = OBJECT_ID\(QUOTENAME\(@p0\) \+ N'\.' \+ QUOTENAME\(@p1\), N'U'\)\n ORDER BY c\.column_id;/);
    assert.match(s.text, /CASE WHEN c\.system_type_id = 240 THEN TYPE_NAME\(c\.user_type_id\) ELSE TYPE_NAME\(c\.system_type_id\) END AS type/);
    assert.deepEqual(
      s.parameters.map((p) => p.value),
      ['shop', 'orders'],
    );
  });
});
