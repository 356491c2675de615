/**
 * ClickHouse under the sink conformance suite: the real ClickHouseSink, its SQL run by a real engine — the one
 * embedded in this process (chdb, when installed: `npm run test:clickhouse`), or a server when CLICKHOUSE_URL is
 * set. Each fixture is a database of its own.
 *
 * `interrupt()` kills every driver the fixture's sinks hold, as a crash of the process would: what the engine
 * was running still finishes, nothing more is sent, and the next `sink()` opens as a restarted site.
 *
 * `rows()` reads what the sink stored with ClickHouse's own printing (toString, hex, a JSON array's text), not
 * with the sink's codecs, so that a value stored wrong cannot be read back right; values kept in
 * `_sitesync_special` are put back in their column. A table with a key reads its current state with FINAL
 * (rows flagged deleted left out); a table without one has only a history, which is replayed (inserts add a
 * row, updates replace the row equal to `_sitesync_before`, deletes remove one equal row, truncate empties).
 *
 * The sink is told the site replicates the suite's tables (sites.<site>.tables): a ClickHouse site creates the
 * tables its sources describe, so "a table the target lacks" is one it does not replicate.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { parseClickHouseUrl, type DeleteMode } from '../../../connectors/clickhouse/clickhouse-config.ts';
import type { ClickHouseDriver, InsertOptions, QueryRows, QuerySettings } from '../../../connectors/clickhouse/clickhouse-driver.ts';
import { ClickHouseHttpDriver } from '../../../connectors/clickhouse/clickhouse-http-driver.ts';
import { ClickHouseSink } from '../../../connectors/clickhouse/clickhouse-sink.ts';
import { clickHouseStatus, runReadOnlyQuery } from '../../../connectors/clickhouse/clickhouse-status.ts';
import type { ConflictPolicy } from '../../../src/apply/conflict-policy.ts';
import type { ResolvedConflict } from '../../../src/connector.ts';
import { SitesyncError } from '../../../src/errors.ts';
import type { Change, RelationInfo, SeenSites, Transaction } from '../../../src/events/transaction.ts';
import { qualified, quoteIdent, tableNames } from '../../../connectors/clickhouse/clickhouse-statements.ts';
import { parseKind, type ValueKind } from '../../../src/events/value-kind.ts';
import { formatFloat32, formatFloat64, formatValue, normalizeDecimal, parseValue, type NeutralArray } from '../../../src/events/value-parser.ts';
import { createLogger } from '../../../src/observability/logger.ts';
import { openChdb } from '../../helpers/chdb-driver.ts';
import type { SinkFixture, SinkHarness } from '../harness.ts';
import { KIND_SAMPLES, relationOf, rowOf, sortRows, type TableSpec } from '../tables.ts';

/** ClickHouse has a type for every kind of the suite's samples. */
export const CLICKHOUSE_KINDS = Object.keys(KIND_SAMPLES);

/** Where a fixture's database lives: fresh databases, and drivers onto them. */
export interface ClickHouseBackend {
  readonly name: string;
  createDatabase(): Promise<string>;
  driver(database: string): ClickHouseDriver;
  dropDatabase(database: string): Promise<void>;
}

/** The embedded engine, or why there is none. */
export async function chdbBackend(): Promise<ClickHouseBackend | string> {
  const engine = await openChdb();
  if (typeof engine === 'string') return engine;
  return {
    name: 'embedded ClickHouse (chdb)',
    createDatabase: () => engine.database('conf'),
    driver: () => engine.driver(),
    dropDatabase: async (database) => {
      await engine.driver().command(`DROP DATABASE IF EXISTS ${quoteIdent(database)}`);
    },
  };
}

/** A server: `url` names a database the user may create databases beside. */
export function liveBackend(url: string): ClickHouseBackend {
  const config = parseClickHouseUrl(url);
  const admin = (): ClickHouseHttpDriver => new ClickHouseHttpDriver(config);
  return {
    name: `ClickHouse at ${config.endpoint}`,
    async createDatabase() {
      const name = `sitesync_test_${randomBytes(4).toString('hex')}`;
      const driver = admin();
      try {
        await driver.command(`CREATE DATABASE ${quoteIdent(name)}`);
      } finally {
        await driver.close();
      }
      return name;
    },
    driver: (database) => new ClickHouseHttpDriver({ ...config, database }),
    async dropDatabase(database) {
      const driver = admin();
      try {
        await driver.command(`DROP DATABASE IF EXISTS ${quoteIdent(database)}`);
      } finally {
        await driver.close();
      }
    },
  };
}

/** A driver that fails from `kill()` on, as the connections of a crashed process. */
export class KillableDriver implements ClickHouseDriver {
  private killed = false;
  constructor(private readonly inner: ClickHouseDriver) {}
  kill(): void {
    this.killed = true;
    void this.inner.close().catch(() => undefined);
  }
  command(sql: string, settings?: QuerySettings): Promise<void> {
    return this.guard(() => this.inner.command(sql, settings));
  }
  insert(table: string, rows: readonly Readonly<Record<string, unknown>>[], options?: InsertOptions): Promise<void> {
    return this.guard(() => this.inner.insert(table, rows, options));
  }
  query(sql: string, settings?: QuerySettings): Promise<QueryRows> {
    return this.guard(() => this.inner.query(sql, settings));
  }
  close(): Promise<void> {
    this.killed = true;
    return this.inner.close();
  }
  private async guard<T>(work: () => Promise<T>): Promise<T> {
    const gone = (): Error => Object.assign(new Error('connection killed (the test crashed this sink)'), { code: 'ECONNRESET' });
    if (this.killed) throw gone();
    const result = await work();
    if (this.killed) throw gone();
    return result;
  }
}

/** ClickHouse's printing of a column (`c`: its quoted name), and how that becomes the kind's canonical text. */
function printed(kind: ValueKind, c: string): { sql: string; canonical(value: unknown): string } {
  const trim = (t: string): string => (t.includes('.') ? t.replace(/0+$/, '').replace(/\.$/, '') : t);
  const float = (t: string): number => (t === 'nan' ? NaN : t === 'inf' ? Infinity : t === '-inf' ? -Infinity : Number(t));
  const text = (sql: string, canonical: (t: string) => string = (t) => t) => ({ sql, canonical: (v: unknown) => canonical(String(v)) });
  switch (kind.kind) {
    case 'boolean':
      return text(`if(isNull(${c}), NULL, if(${c}, 't', 'f'))`);
    case 'float32':
      return text(`toString(toFloat64(${c}))`, (t) => formatFloat32(Math.fround(float(t))));
    case 'float64':
      return text(`toString(${c})`, (t) => formatFloat64(float(t)));
    case 'bytes':
      return text(`concat('\\\\x', lower(hex(unhex(${c}))))`);
    case 'time':
    case 'timestamp':
      return text(`toString(${c})`, trim);
    case 'timestamptz':
      return text(`toString(${c})`, (t) => `${trim(t)}+00`);
    case 'decimal':
      return text(`toString(${c})`, (t) => (kind.precision === null ? t : normalizeDecimal(t, kind)));
    case 'array': {
      if (kind.element.kind === 'struct') return text(`toString(${c})`);
      const element = printed(kind.element, 'x');
      return {
        sql: `arrayMap(x -> ${element.sql}, ${c})`,
        canonical: (v) => formatValue((v as unknown[]).map((e) => (e === null ? null : parseValue(element.canonical(e), kind.element))) as NeutralArray, kind),
      };
    }
    default:
      return text(`toString(${c})`);
  }
}

/** What the sink stored of `spec`, in canonical text, sorted (see the header). */
export async function storedRows(driver: ClickHouseDriver, database: string, schema: string, spec: TableSpec): Promise<(string | null)[][]> {
  const keyed = spec.columns.some((c) => c.key);
  const names = tableNames(schema, spec.table);
  const table = keyed ? names.current : names.history;
  const there = await driver.query(`SELECT 1 FROM system.tables WHERE database = '${database}' AND name = '${table.replace(/'/g, "\\'")}'`);
  if (there.rows.length === 0) return [];
  const columns = spec.columns.map((c) => printed(parseKind(c.kind), quoteIdent(c.name)));
  const n = spec.columns.length;
  const read = (row: readonly unknown[]): (string | null)[] => {
    const special = typeof row[n] === 'string' ? (JSON.parse(row[n] as string) as Record<string, string | null>) : {};
    return spec.columns.map((c, i) => (Object.hasOwn(special, c.name) ? special[c.name]! : row[i] === null ? null : columns[i]!.canonical(row[i])));
  };
  const select = columns.map((c) => c.sql).join(', ');
  if (keyed) {
    const result = await driver.query(`SELECT ${select}, _sitesync_special FROM ${qualified(database, table)} FINAL WHERE _sitesync_deleted = 0`);
    return sortRows(result.rows.map(read));
  }
  const history = await driver.query(`SELECT ${select}, _sitesync_special, _sitesync_op, _sitesync_before FROM ${qualified(database, table)} FINAL ORDER BY _sitesync_position, _sitesync_seq`);
  let rows: (string | null)[][] = [];
  const removeOne = (row: readonly (string | null)[]): void => {
    const at = rows.findIndex((r) => r.every((v, i) => v === row[i]));
    if (at !== -1) rows.splice(at, 1);
  };
  for (const entry of history.rows) {
    const values = read(entry);
    const op = entry[n + 1];
    if (op === 'insert' || op === 'read') rows.push(values);
    else if (op === 'delete') removeOne(values);
    else if (op === 'truncate') rows = [];
    else if (op === 'update') {
      const before = JSON.parse(entry[n + 2] as string) as Record<string, string | null>;
      removeOne(spec.columns.map((c) => before[c.name] ?? null));
      rows.push(values);
    }
  }
  return sortRows(rows);
}

/** The ClickHouse sink on `backend`, told its sources are of `sourceKind`, with `deletes`. */
export function clickhouseSinkHarness(backend: ClickHouseBackend, sourceKind: string, positionDigits: number, deletes: DeleteMode): SinkHarness {
  return {
    name: `clickhouse on ${backend.name}, ${deletes} deletes (from a ${sourceKind} source)`,
    kinds: CLICKHOUSE_KINDS,
    sourceKind,
    position: (n) => n.toString(16).toUpperCase().padStart(positionDigits, '0'),
    async open(tables) {
      const database = await backend.createDatabase();
      const schema = `conf_${randomBytes(3).toString('hex')}`;
      const site = `conf_${randomBytes(3).toString('hex')}`;
      const drivers = new Set<KillableDriver>();
      const reader = backend.driver(database);
      const fixture: SinkFixture = {
        schema,
        sink: () =>
          new ClickHouseSink({
            site,
            url: `clickhouse://default@embedded/${database}?deletes=${deletes}`,
            config: { endpoint: 'http://embedded:8123', username: 'default', password: '', database, deletes, tls: false },
            openDriver: () => {
              const driver = new KillableDriver(backend.driver(database));
              drivers.add(driver);
              return driver;
            },
            conflictPolicy: () => ({ policy: 'last-writer-wins', priority: [] }),
            sourceKindOf: () => sourceKind,
            tables: tables.map((t) => `${schema}.${t.table}`),
            logger: createLogger('silent'),
          }),
        rows: (spec) => storedRows(reader, database, schema, spec),
        async interrupt() {
          for (const d of drivers) d.kill();
          drivers.clear();
        },
        async cleanup() {
          for (const d of drivers) d.kill();
          await backend.dropDatabase(database);
          await reader.close();
        },
      };
      return fixture;
    },
  };
}

/**
 * The harnesses this machine can run, and why the others cannot (each a skipped test): the embedded engine
 * when chdb is installed, a server when CLICKHOUSE_URL is set.
 */
export async function clickhouseSinkHarnesses(): Promise<{ harnesses: SinkHarness[]; skipped: string[] }> {
  const harnesses: SinkHarness[] = [];
  const skipped: string[] = [];
  const chdb = await chdbBackend();
  if (typeof chdb === 'string') skipped.push(chdb);
  else harnesses.push(clickhouseSinkHarness(chdb, 'postgres', 16, 'hard'), clickhouseSinkHarness(chdb, 'mariadb', 24, 'soft'));
  const url = process.env.CLICKHOUSE_URL;
  if (!url) skipped.push('no ClickHouse server: set CLICKHOUSE_URL=clickhouse://user:password@host:8123/database (docker-compose --profile clickhouse up -d clickhouse) to run the suite against one');
  else harnesses.push(clickhouseSinkHarness(liveBackend(url), 'postgres', 16, 'hard'));
  return { harnesses, skipped };
}

// ─── the sink's own scenarios (test/unit/clickhouse-sink.test.ts on the embedded engine, test/integration/clickhouse-live.test.ts on a server) ───

/** A driver whose `failAt`-th write (insert or command) from `arm()` on lands, then fails as a crash right after it would. */
export class CrashingDriver implements ClickHouseDriver {
  private writes = 0;
  private failAt = 0;
  private crashed = false;
  constructor(private readonly inner: ClickHouseDriver) {}
  arm(failAt: number): void {
    this.writes = 0;
    this.failAt = failAt;
  }
  get didCrash(): boolean {
    return this.crashed;
  }
  async command(sql: string, settings?: QuerySettings): Promise<void> {
    this.alive();
    await this.inner.command(sql, settings);
    this.wrote();
  }
  async insert(table: string, rows: readonly Readonly<Record<string, unknown>>[], options?: InsertOptions): Promise<void> {
    this.alive();
    await this.inner.insert(table, rows, options);
    this.wrote();
  }
  query(sql: string, settings?: QuerySettings): Promise<QueryRows> {
    this.alive();
    return this.inner.query(sql, settings);
  }
  close(): Promise<void> {
    this.crashed = true;
    return this.inner.close();
  }
  private alive(): void {
    if (this.crashed) throw Object.assign(new Error('connection killed (crashed)'), { code: 'ECONNRESET' });
  }
  private wrote(): void {
    if (this.failAt > 0 && ++this.writes === this.failAt) {
      this.crashed = true;
      throw Object.assign(new Error('connection killed (crashed right after a write landed)'), { code: 'ECONNRESET' });
    }
  }
}

const SCENARIO_SCHEMA = 'app';
const ITEMS_SPEC: TableSpec = {
  table: 'items',
  columns: [
    { name: 'id', kind: 'int64', key: true },
    { name: 'note', kind: 'string' },
    { name: 'amount', kind: 'decimal(12,2)' },
  ],
};
const LOG_SPEC: TableSpec = {
  table: 'log',
  columns: [
    { name: 'v', kind: 'int32' },
    { name: 'note', kind: 'string' },
  ],
};
/** Every kind sitesync maps to a ClickHouse type of its own, and the values that need `_sitesync_special`. */
const EXACT_SPEC: TableSpec = {
  table: 'exact',
  columns: [
    { name: 'id', kind: 'int32', key: true },
    { name: 'd', kind: 'decimal(12,2)' },
    { name: 'dn', kind: 'decimal' },
    { name: 'dt', kind: 'date' },
    { name: 'ts', kind: 'timestamp' },
    { name: 'tz', kind: 'timestamptz' },
    { name: 'f64', kind: 'float64' },
    { name: 'f32', kind: 'float32' },
    { name: 'b', kind: 'bytes' },
    { name: 't', kind: 'time' },
    { name: 'a', kind: 'array<int32>' },
    { name: 'ad', kind: 'array<decimal(12,2)>' },
    { name: 'iv', kind: 'interval' },
    { name: 'j', kind: 'json' },
    { name: 'u', kind: 'uuid' },
    { name: 'ok', kind: 'boolean' },
  ],
};
const EXACT_ROWS: readonly Readonly<Record<string, string | null>>[] = [
  // What the typed columns cannot hold: NaN decimals, dates and times out of range, infinities, NULL and
  // multi-dimensional arrays, lower bounds, an element needing special.
  { id: '1', d: 'NaN', dn: '-Infinity', dt: '1800-01-01', ts: 'infinity', tz: '2300-01-01 00:00:00+00', f64: 'NaN', f32: '-0', b: '\\xdeadbeef', t: '24:00:00', a: null, ad: '{1.50,NaN}', iv: 'P1Y2M3DT4H5M6.5S', j: '{"a": [1, 2.5]}', u: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', ok: 't' },
  { id: '2', d: '-0.50', dn: '123.4500', dt: '2024-02-29', ts: '2024-02-29 13:45:10.123456', tz: '1900-01-01 00:00:00+00', f64: '1e+100', f32: '3.4028235e+38', b: '\\x', t: '00:00:00.000001', a: '{{1,2},{3,4}}', ad: '{}', iv: 'PT0S', j: '[]', u: '00000000-0000-0000-0000-000000000000', ok: 'f' },
  { id: '3', d: null, dn: null, dt: '0044-03-15 BC', ts: '2299-12-31 23:59:59.999999', tz: '-infinity', f64: '-Infinity', f32: '1e-45', b: null, t: null, a: '[0:1]={1,2}', ad: '{NULL,2.00}', iv: null, j: null, u: null, ok: null },
  { id: '4', d: '9999999999.99', dn: '0.000000000000000000000000000000000000000000000000000000000000000000000000000001', dt: '2299-12-31', ts: '1900-01-01 00:00:00', tz: '2024-02-29 13:45:10.5+00', f64: '-0', f32: '0.1', b: '\\x00ff', t: '12:00:00', a: '{1,NULL,3}', ad: '{-1.25}', iv: 'P-1Y-2M', j: '"x"', u: null, ok: 't' },
];

interface Scenario {
  readonly database: string;
  readonly reader: ClickHouseDriver;
  readonly conflicts: ResolvedConflict[];
  /** A sink on the scenario's database; `crashing` wraps its driver. */
  sink(options?: { deletes?: DeleteMode; policy?: ConflictPolicy; crashing?: (driver: CrashingDriver) => void }): ClickHouseSink;
  rows(spec: TableSpec): Promise<(string | null)[][]>;
  table(spec: TableSpec, role?: 'current' | 'history'): string;
}

/** The sink's scenarios on `backend` (or, when there is none, one skipped test saying why). */
export function clickhouseSinkScenarios(name: string, backend: ClickHouseBackend | string): void {
  if (typeof backend === 'string') {
    test(`ClickHouse sink (${name})`, { skip: backend }, () => {});
    return;
  }
  describe(`ClickHouse sink on ${backend.name}`, () => {
    const databases: string[] = [];
    after(async () => {
      for (const d of databases) await backend.dropDatabase(d).catch(() => undefined);
    });
    const open = async (deletes: DeleteMode = 'hard'): Promise<Scenario> => {
      const database = await backend.createDatabase();
      databases.push(database);
      const reader = backend.driver(database);
      const conflicts: ResolvedConflict[] = [];
      return {
        database,
        reader,
        conflicts,
        sink: (options = {}) =>
          new ClickHouseSink({
            site: 'analytics',
            url: `clickhouse://default@test/${database}`,
            config: { endpoint: 'http://test:8123', username: 'default', password: '', database, deletes: options.deletes ?? deletes, tls: false },
            openDriver: () => {
              const driver = backend.driver(database);
              if (!options.crashing) return driver;
              const crashing = new CrashingDriver(driver);
              options.crashing(crashing);
              return crashing;
            },
            conflictPolicy: () => options.policy ?? { policy: 'last-writer-wins', priority: [] },
            onConflict: (c) => conflicts.push(c),
            logger: createLogger(process.env.CLICKHOUSE_TEST_LOG ?? 'silent'),
          }),
        rows: (spec) => storedRows(reader, database, SCENARIO_SCHEMA, spec),
        table: (spec, role = 'current') => qualified(database, tableNames(SCENARIO_SCHEMA, spec.table)[role]),
      };
    };
    let n = 0;
    const tx = (site: string, changes: Change[], options: { micros?: bigint; seen?: SeenSites } = {}): Transaction => {
      const position = (++n).toString(16).toUpperCase().padStart(16, '0');
      return { id: `${site}:${position}`, site, position, commitTimeMicros: options.micros ?? 1_700_000_000_000_000n + BigInt(n), sourceTxId: String(n), seen: options.seen ?? {}, changes };
    };
    const items = relationOf(SCENARIO_SCHEMA, ITEMS_SPEC);
    const log = relationOf(SCENARIO_SCHEMA, LOG_SPEC);
    const ins = (relation: RelationInfo, values: (string | null)[]): Change => ({ op: 'insert', relation, newRow: { values, unchanged: [] } });
    const upd = (relation: RelationInfo, values: (string | null)[], unchanged: number[] = [], oldRow: (string | null)[] | null = null): Change => ({
      op: 'update',
      relation,
      oldRow: oldRow === null ? null : { values: oldRow, unchanged: [] },
      newRow: { values, unchanged },
    });
    const del = (relation: RelationInfo, values: (string | null)[]): Change => ({ op: 'delete', relation, oldRow: { values, unchanged: [] } });
    const truncate = (...relations: RelationInfo[]): Change => ({ op: 'truncate', relations, cascade: false, restartIdentity: false });
    const oneLine = (error: unknown): string => {
      const message = (error as Error).message;
      assert.doesNotMatch(message, /\n/, 'one line');
      return message;
    };
    const query = async (s: Scenario, sql: string): Promise<unknown[][]> => (await s.reader.query(sql)).rows.map((r) => [...r]);

    test('every kind comes back exactly; what a typed column cannot hold is NULL there and exact in _sitesync_special', async () => {
      const s = await open();
      const sink = s.sink();
      const session = await sink.openSession('paris');
      const exact = relationOf(SCENARIO_SCHEMA, EXACT_SPEC);
      await session.apply([tx('paris', EXACT_ROWS.map((r) => ins(exact, rowOf(EXACT_SPEC, r))))]);
      assert.deepEqual(await s.rows(EXACT_SPEC), sortRows(EXACT_ROWS.map((r) => rowOf(EXACT_SPEC, r))));
      // As ClickHouse holds them.
      const types = Object.fromEntries(await query(s, `SELECT name, type FROM system.columns WHERE database = '${s.database}' AND table = 'app__exact'`));
      assert.equal(types.id, 'Int32');
      assert.equal(types.d, 'Nullable(Decimal(12, 2))');
      assert.equal(types.dn, 'Nullable(String)');
      assert.equal(types.dt, 'Nullable(Date32)');
      assert.equal(types.tz, "Nullable(DateTime64(6, 'UTC'))");
      assert.equal(types.b, 'Nullable(String)');
      assert.match(String(types.t), /^Nullable\((Time64\(6\)|String)\)$/);
      assert.equal(types.a, 'Array(Nullable(Int32))');
      assert.equal(types._sitesync_version, 'UInt64');
      const [one] = await query(s, `SELECT d, dt, ts, a, ad, b, _sitesync_special FROM ${s.table(EXACT_SPEC)} FINAL WHERE id = 1`);
      assert.deepEqual(one!.slice(0, 6), [null, null, null, [], [], 'deadbeef']);
      assert.deepEqual(JSON.parse(String(one![6])), { d: 'NaN', dt: '1800-01-01', ts: 'infinity', tz: '2300-01-01 00:00:00+00', a: null, ad: '{1.50,NaN}' });
      const [two] = await query(s, `SELECT toString(d), dn, toString(dt), toString(ts), a, _sitesync_special FROM ${s.table(EXACT_SPEC)} FINAL WHERE id = 2`);
      assert.deepEqual(two, ['-0.5', '123.4500', '2024-02-29', '2024-02-29 13:45:10.123456', [], JSON.stringify({ a: '{{1,2},{3,4}}' })]);
      assert.deepEqual(await query(s, `SELECT dn FROM ${s.table(EXACT_SPEC)} FINAL WHERE id = 1`), [['-Infinity']], 'a bare decimal is exact text: infinity fits');
      const [four] = await query(s, `SELECT _sitesync_special FROM ${s.table(EXACT_SPEC)} FINAL WHERE id = 4`);
      assert.deepEqual(four, [null], 'a row whose values all fit has no _sitesync_special');
      // The sink reads them back itself too: an update sending one column carries the rest over, specials included.
      const unchanged = EXACT_SPEC.columns.map((_, i) => i).filter((i) => i > 1);
      await session.apply([tx('paris', [upd(exact, rowOf(EXACT_SPEC, { id: '1', d: '1.00' }), unchanged)])]);
      assert.deepEqual(await s.rows(EXACT_SPEC), sortRows(EXACT_ROWS.map((r) => rowOf(EXACT_SPEC, r.id === '1' ? { ...r, d: '1.00' } : r))));
      await session.close();
      await sink.close();
    });

    test('a key value the key column cannot hold is a data error, one line, and nothing of its batch is written', async () => {
      const s = await open();
      const sink = s.sink();
      const session = await sink.openSession('paris');
      const spec: TableSpec = { table: 'days', columns: [{ name: 'day', kind: 'date', key: true }, { name: 'v', kind: 'int32' }] };
      const days = relationOf(SCENARIO_SCHEMA, spec);
      await assert.rejects(session.apply([tx('paris', [ins(days, ['2024-01-01', '1']), ins(days, ['1800-01-01', '2'])])]), (error) => {
        assert.equal(sink.classify(error), 'data');
        assert.match(oneLine(error), /key column day.*1800-01-01.*Date32/);
        return true;
      });
      assert.equal(await session.progress(), null);
      assert.deepEqual(await s.rows(spec), []);
      await sink.close();
    });

    for (const deletes of ['hard', 'soft'] as const) {
      test(`${deletes} deletes: FINAL ${deletes === 'hard' ? 'leaves the deleted row out' : 'keeps the deleted row, flagged'}; truncate removes what was before it, not what follows it`, async () => {
        const s = await open(deletes);
        const sink = s.sink();
        const session = await sink.openSession('paris');
        await session.apply([tx('paris', [ins(items, ['1', 'a', '1.00']), ins(items, ['2', 'b', '2.00']), ins(items, ['3', 'c', '3.00'])])]);
        await session.apply([tx('paris', [del(items, ['2', null, null])])]);
        const engine = String((await query(s, `SELECT engine_full FROM system.tables WHERE database = '${s.database}' AND name = 'app__items'`))[0]![0]);
        assert.match(engine, deletes === 'hard' ? /ReplacingMergeTree\(_sitesync_version, _sitesync_deleted\)/ : /ReplacingMergeTree\(_sitesync_version\)/);
        const final = await query(s, `SELECT toString(id), _sitesync_deleted FROM ${s.table(ITEMS_SPEC)} FINAL ORDER BY id`);
        assert.deepEqual(final, deletes === 'hard' ? [['1', 0], ['3', 0]] : [['1', 0], ['2', 1], ['3', 0]]);
        // Before a merge the table holds every version; the deleted key's newest is flagged.
        assert.deepEqual(await query(s, `SELECT _sitesync_deleted FROM ${s.table(ITEMS_SPEC)} WHERE id = 2 ORDER BY _sitesync_version`), [[0], [1]]);
        // Truncate, then a row in the same batch: the earlier rows go, the later one stays.
        await session.apply([tx('paris', [ins(items, ['4', 'd', '4.00'])]), tx('paris', [truncate(items)]), tx('paris', [ins(items, ['5', 'e', '5.00'])])]);
        assert.deepEqual(await s.rows(ITEMS_SPEC), [['5', 'e', '5.00']]);
        const after = await query(s, `SELECT toString(id), _sitesync_deleted FROM ${s.table(ITEMS_SPEC)} FINAL ORDER BY id`);
        // Row 4 was inserted and truncated in the same batch: it never reached the current state (its history has it).
        assert.deepEqual(after, deletes === 'hard' ? [['5', 0]] : [['1', 1], ['2', 1], ['3', 1], ['5', 0]]);
        const ops = await query(s, `SELECT _sitesync_op, count() FROM ${s.table(ITEMS_SPEC, 'history')} FINAL GROUP BY _sitesync_op ORDER BY _sitesync_op`);
        assert.deepEqual(ops, [['delete', '1'], ['insert', '5'], ['truncate', '1']]);
        await session.close();
        await sink.close();
        // The same tables under the other mode: one line saying what to change.
        const other = s.sink({ deletes: deletes === 'hard' ? 'soft' : 'hard' });
        const again = await other.openSession('paris');
        await assert.rejects(again.apply([tx('paris', [ins(items, ['6', 'f', '6.00'])])]), (error) => {
          assert.equal(other.classify(error), 'schema');
          assert.match(oneLine(error), new RegExp(`created for deletes=${deletes}.*give deletes=${deletes}`));
          return true;
        });
        await other.close();
      });
    }

    test('a key change deletes the old key and writes the new one; an unchanged (TOASTed) column keeps its stored value', async () => {
      const s = await open();
      const sink = s.sink();
      const session = await sink.openSession('paris');
      await session.apply([tx('paris', [ins(items, ['1', 'a', '1.00'])])]);
      await session.apply([tx('paris', [upd(items, ['10', 'a', '1.00'], [], ['1', null, null])])]);
      assert.deepEqual(await s.rows(ITEMS_SPEC), [['10', 'a', '1.00']]);
      // `amount` not sent: it is not NULL, it stays; the history row has it too (known from the store).
      await session.apply([tx('paris', [upd(items, ['10', 'b', null], [2])])]);
      assert.deepEqual(await s.rows(ITEMS_SPEC), [['10', 'b', '1.00']]);
      const history = await query(s, `SELECT _sitesync_op, toString(amount), _sitesync_unchanged, _sitesync_before, _sitesync_applied FROM ${s.table(ITEMS_SPEC, 'history')} FINAL ORDER BY _sitesync_position, _sitesync_seq`);
      assert.deepEqual(history, [
        ['insert', '1', [], null, 1],
        ['update', '1', [], JSON.stringify({ id: '1', note: null, amount: null }), 1],
        ['update', '1', [], null, 1],
      ]);
      // An update of a row that is not there: not applied (update_missing); what nobody knew stays listed.
      await session.apply([tx('paris', [upd(items, ['99', 'x', null], [2])])]);
      const missing = await query(s, `SELECT _sitesync_applied, _sitesync_unchanged FROM ${s.table(ITEMS_SPEC, 'history')} FINAL WHERE id = 99`);
      assert.deepEqual(missing, [[0, ['amount']]]);
      assert.deepEqual(s.conflicts.map((c) => c.kind), ['update_missing']);
      await sink.close();
    });

    test('a new source column is added to both tables; a kind its column cannot hold halts the source with one line naming the fix', async () => {
      const s = await open();
      const sink = s.sink();
      const session = await sink.openSession('paris');
      await session.apply([tx('paris', [ins(items, ['1', 'a', '1.00'])])]);
      const wider = relationOf(SCENARIO_SCHEMA, { ...ITEMS_SPEC, columns: [...ITEMS_SPEC.columns, { name: 'added', kind: 'int32' }] });
      await session.apply([tx('paris', [ins(wider, ['2', 'b', '2.00', '7'])])]);
      for (const role of ['current', 'history'] as const) {
        const rows = await query(s, `SELECT toString(id), added FROM ${s.table(ITEMS_SPEC, role)} FINAL ORDER BY id`);
        assert.deepEqual(rows, [['1', null], ['2', 7]], role);
      }
      const before = await session.progress();
      const retyped = relationOf(SCENARIO_SCHEMA, { ...ITEMS_SPEC, columns: [ITEMS_SPEC.columns[0]!, ITEMS_SPEC.columns[1]!, { name: 'amount', kind: 'int64' }] });
      await assert.rejects(session.apply([tx('paris', [ins(retyped, ['3', 'c', '300'])])]), (error) => {
        assert.equal(sink.classify(error), 'schema');
        assert.match(oneLine(error), /column amount of ClickHouse table .* is Nullable\(Decimal\(12, 2\)\) but site paris now sends app\.items\.amount as int64 .*MODIFY COLUMN `amount` Nullable\(Int64\)/);
        return true;
      });
      assert.equal(await session.progress(), before);
      // Any kind fits a String column: the operator's fix is taken, and sitesync resumes.
      await s.reader.command(`ALTER TABLE ${s.table(ITEMS_SPEC)} MODIFY COLUMN amount Nullable(String)`);
      await s.reader.command(`ALTER TABLE ${s.table(ITEMS_SPEC, 'history')} MODIFY COLUMN amount Nullable(String)`);
      await session.apply([tx('paris', [ins(retyped, ['3', 'c', '300'])])]);
      assert.deepEqual(await query(s, `SELECT amount FROM ${s.table(ITEMS_SPEC)} FINAL WHERE id = 3`), [['300']]);
      await sink.close();
    });

    test('a key that changed at the source halts it with one line: ClickHouse cannot change a sorting key', async () => {
      const s = await open();
      const sink = s.sink();
      const session = await sink.openSession('paris');
      await session.apply([tx('paris', [ins(items, ['1', 'a', '1.00'])])]);
      const rekeyed = relationOf(SCENARIO_SCHEMA, { ...ITEMS_SPEC, columns: ITEMS_SPEC.columns.map((c) => (c.name === 'note' ? { ...c, key: true } : c)) });
      await assert.rejects(session.apply([tx('paris', [ins(rekeyed, ['2', 'b', '2.00'])])]), (error) => {
        assert.equal(sink.classify(error), 'schema');
        assert.match(oneLine(error), /is ordered by \(id\) but the key of app\.items is now \(id, note\); ClickHouse cannot change a sorting key/);
        return true;
      });
      assert.deepEqual(await s.rows(ITEMS_SPEC), [['1', 'a', '1.00']]);
      await sink.close();
    });

    test('the apply sequence wins at merge, not the commit time: a write that wins its conflict with an older commit time stays (site-priority)', async () => {
      const s = await open();
      const policy: ConflictPolicy = { policy: 'site-priority', priority: ['berlin', 'paris'] };
      const sink = s.sink({ policy });
      const paris = await sink.openSession('paris');
      const berlin = await sink.openSession('berlin');
      await paris.apply([tx('paris', [ins(items, ['1', 'from paris', '1.00'])], { micros: 2_000_000_000_000_000n })]);
      // Berlin had not seen paris's write (concurrent), commits earlier, and comes first in the priority.
      await berlin.apply([tx('berlin', [upd(items, ['1', 'from berlin', '2.00'])], { micros: 1_000_000_000_000_000n })]);
      assert.deepEqual(s.conflicts, [{ source: 'berlin', kind: 'update_origin_differs', table: 'app.items', resolution: 'apply' }]);
      await s.reader.command(`OPTIMIZE TABLE ${s.table(ITEMS_SPEC)} FINAL`);
      const rows = await query(s, `SELECT note, _sitesync_site, toString(_sitesync_commit_micros), count() OVER () FROM ${s.table(ITEMS_SPEC)}`);
      assert.deepEqual(rows, [['from berlin', 'berlin', '1000000000000000', '1']], 'merged to the row applied last, though its commit time is older');
      // And paris's later change, which had seen berlin's, follows it.
      await paris.apply([tx('paris', [upd(items, ['1', 'paris again', '3.00'])], { micros: 2_000_000_000_000_001n, seen: { berlin: 1_000_000_000_000_000n } })]);
      assert.deepEqual(await s.rows(ITEMS_SPEC), [['1', 'paris again', '3.00']]);
      assert.equal(s.conflicts.length, 1);
      await sink.close();
    });

    test('a batch cut short after any of its writes (a crash before its progress) is applied once: history and current as if it never failed, raw and under FINAL', async () => {
      // Reference: the same batches on a sink that never fails.
      const setup = (): Transaction[] => [tx('paris', [ins(items, ['1', 'a', '1.00']), ins(items, ['2', 'b', '2.00']), ins(items, ['3', 'c', '3.00']), ins(log, ['1', 'x'])])];
      const batch = (): Transaction[] => [
        tx('paris', [upd(items, ['1', 'a2', null], [2]), ins(items, ['4', 'd', '4.00']), del(items, ['2', null, null]), ins(log, ['2', 'y'])]),
        tx('paris', [truncate(items), ins(items, ['5', 'e', '5.00'])]),
        tx('paris', [upd(items, ['5', 'e2', null], [2]), upd(log, ['2', 'z'], [], ['2', 'y'])]),
        // Folded again over what a crashed attempt wrote, this insert would meet its own row (a conflict it
        // loses): the batch's second attempt must not write what a fold over that state says.
        tx('paris', [ins(items, ['6', 'f', '6.00'])]),
      ];
      const snapshot = async (s: Scenario): Promise<unknown> => ({
        items: await s.rows(ITEMS_SPEC),
        log: await s.rows(LOG_SPEC),
        history: await query(s, `SELECT * EXCEPT (id, note, amount) , toString(id), note, toString(amount) FROM ${s.table(ITEMS_SPEC, 'history')} FINAL ORDER BY _sitesync_position, _sitesync_seq`),
        current: await query(s, `SELECT * EXCEPT (_sitesync_version) FROM ${s.table(ITEMS_SPEC)} FINAL ORDER BY id`),
        raw: await query(s, `SELECT (SELECT count() FROM ${s.table(ITEMS_SPEC, 'history')}), (SELECT count() FROM ${s.table(LOG_SPEC, 'history')}), (SELECT count() FROM ${s.table(ITEMS_SPEC)})`),
      });
      const reference = await (async () => {
        const s = await open();
        const sink = s.sink();
        const session = await sink.openSession('paris');
        const first = setup();
        const second = batch();
        n -= first.length + second.length; // the faulty runs below make the same positions
        await session.apply(first);
        await session.apply(second);
        const result = await snapshot(s);
        await sink.close();
        return { result, progress: second[second.length - 1]!.position };
      })();
      // Writes of the batch: reserving versions (the first batch took a block), pending, 2 history inserts, the truncation, 1 current insert, progress.
      for (let failAt = 1; failAt <= 6; failAt++) {
        const s = await open();
        let crashing: CrashingDriver | null = null;
        const sink = s.sink({ crashing: (d) => (crashing = d) });
        const session = await sink.openSession('paris');
        const first = setup();
        const second = batch();
        n -= first.length + second.length;
        await session.apply(first);
        crashing!.arm(failAt);
        await assert.rejects(session.apply(second), (error) => sink.classify(error) === 'transient');
        assert.ok(crashing!.didCrash, `write ${failAt} happened`);
        await sink.close();
        // A restarted site: the pending batch is applied again first; then the broker's copy is a duplicate,
        // whole or regrouped.
        const restarted = s.sink();
        const again = await restarted.openSession('paris');
        assert.equal(await again.progress(), reference.progress, `after a crash at write ${failAt}`);
        await again.apply(second);
        await again.apply(second.slice(1));
        assert.deepEqual(await snapshot(s), reference.result, `after a crash at write ${failAt}`);
        assert.deepEqual(s.conflicts, [], 'no conflict reported (the reference had none)');
        await restarted.close();
      }
    });

    test('a transaction in parts cut short at its last part is assembled again from its kept parts', async () => {
      const s = await open();
      let crashing: CrashingDriver | null = null;
      const sink = s.sink({ crashing: (d) => (crashing = d) });
      const session = await sink.openSession('paris');
      await session.apply([tx('paris', [ins(items, ['0', 'n0', '1.00'])])]); // the tables are there, a block of versions reserved
      const whole = tx('paris', []);
      const part = (ids: number[]): Transaction => ({ ...whole, changes: ids.map((id) => ins(items, [String(id), `n${id}`, '1.00'])) });
      await session.applyPart(part([1, 2]), { index: 0, last: false });
      await session.applyPart(part([3]), { index: 1, last: false });
      crashing!.arm(2); // the pending batch, then its history insert lands and the process dies
      await assert.rejects(session.applyPart(part([4]), { index: 2, last: true }));
      await sink.close();
      const restarted = s.sink();
      const again = await restarted.openSession('paris');
      assert.equal(await again.progress(), whole.position);
      assert.deepEqual((await s.rows(ITEMS_SPEC)).map((r) => r[0]), ['0', '1', '2', '3', '4']);
      assert.deepEqual(await query(s, `SELECT count() FROM ${qualified(s.database, '_sitesync_spilled_parts')} FINAL`), [['0']], 'the parts are forgotten');
      assert.deepEqual(await query(s, `SELECT count(), max(_sitesync_seq) FROM ${s.table(ITEMS_SPEC, 'history')} FINAL WHERE _sitesync_position = '${whole.position}'`), [['4', 3]]);
      assert.deepEqual(await query(s, `SELECT count() FROM ${s.table(ITEMS_SPEC, 'history')}`), [['5']], 'no history row twice, even before a merge');
      await restarted.close();
    });

    test('query runs one statement read-only, keeps at most maxRows and says so; status shows each source\'s position', async () => {
      const s = await open();
      const sink = s.sink();
      const session = await sink.openSession('paris');
      const last = tx('paris', [ins(items, ['1', 'a', '1.00']), ins(items, ['2', 'b', '2.00']), ins(items, ['3', 'c', '3.00'])]);
      await session.apply([last]);
      await sink.close();
      const result = await runReadOnlyQuery(s.reader, `SELECT id, note, amount FROM ${s.table(ITEMS_SPEC)} FINAL ORDER BY id;`, { maxRows: 2 });
      assert.deepEqual(result.columns, [{ name: 'id', type: 'Int64' }, { name: 'note', type: 'Nullable(String)' }, { name: 'amount', type: 'Nullable(Decimal(12, 2))' }]);
      assert.deepEqual(result.rows, [['1', 'a', '1.00'], ['2', 'b', '2.00']]);
      assert.equal(result.truncated, true);
      for (const write of [`INSERT INTO ${s.table(ITEMS_SPEC)} (id) SELECT 9`, `ALTER TABLE ${s.table(ITEMS_SPEC)} DELETE WHERE 1`]) {
        await assert.rejects(runReadOnlyQuery(s.reader, write, { maxRows: 10 }), (error) => {
          assert.ok(error instanceof SitesyncError && error.code === 'SITESYNC_ERR_CONFIG', String(error));
          assert.match(oneLine(error), /read-only/);
          return true;
        });
      }
      assert.deepEqual(await s.rows(ITEMS_SPEC), [['1', 'a', '1.00'], ['2', 'b', '2.00'], ['3', 'c', '3.00']]);
      const status = await clickHouseStatus(s.reader, s.database, ['paris', 'london']);
      assert.equal(status.capture.exists, false);
      assert.deepEqual(status.applied, [
        { source: 'paris', name: `${s.database}._sitesync_progress`, position: last.position },
        { source: 'london', name: `${s.database}._sitesync_progress`, position: null },
      ]);
    });

    test('parked records: recorded, found, finished once', async () => {
      const s = await open();
      const sink = s.sink();
      const id = randomUUID();
      assert.equal(await sink.findParked(id), null);
      await sink.recordParked({ id, kind: 'refused', source: null, transactionId: null, bodySha256: 'a'.repeat(64), userId: null, route: 'x/y', reason: 'undecodable' });
      assert.deepEqual(await sink.findParked(id.toUpperCase()), { id, kind: 'refused', source: null, transactionId: null, bodySha256: 'a'.repeat(64), userId: null, route: 'x/y', reason: 'undecodable', done: false });
      await sink.finishParked(id);
      assert.equal((await sink.findParked(id))?.done, true);
      await sink.close();
    });
  });
}
