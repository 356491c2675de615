/**
 * SQL Server under the conformance suite, on the simulator of CDC (test/helpers/sqlserver-simulator.ts): no
 * SQL Server runs on this project's machines. The connector's own code runs unchanged — SqlServerSource over a
 * reader of the simulator, SqlServerSink over the simulated apply connection — so the suite proves everything
 * above the thin layer that speaks to a server (mssql-cdc-reader.ts, mssql-apply-connection.ts): which is
 * what test/integration/sqlserver-live.test.ts runs against a real server when MSSQL_URL is set.
 *
 * Writes as an application makes them: a simulator transaction whose values are what SQL Server would store
 * for the canonical text (the sink's own binding, then the simulator's model of CONVERT), and the capture job
 * run at once after each commit, as if the Agent's job were quick. Relayed writes as the sink makes them: its
 * apply_progress row first, in the same transaction.
 *
 * Snapshots: the connector's own table reader and snapshot control (sqlserver-table-reader.ts,
 * sqlserver-snapshot-control.ts) over the simulator's table runner, whose markers are rows of the CDC-enabled
 * sitesync.snapshot_markers; the capture job runs on a timer meanwhile (the control's commits are not the
 * harness's, and the Agent's job would move them too).
 */
import { randomBytes } from 'node:crypto';
import type { ApplyConnection, TargetTable } from '../../../connectors/sqlserver/apply-connection.ts';
import type { CapturedColumn, ProjectedValue } from '../../../connectors/sqlserver/cdc-reader.ts';
import { bindValue } from '../../../connectors/sqlserver/sqlserver-bind.ts';
import { canonicalText } from '../../../connectors/sqlserver/sqlserver-kinds.ts';
import { SqlServerSink } from '../../../connectors/sqlserver/sqlserver-sink.ts';
import { SqlServerSnapshotControl } from '../../../connectors/sqlserver/sqlserver-snapshot-control.ts';
import { SqlServerSource } from '../../../connectors/sqlserver/sqlserver-source.ts';
import { SqlServerTableReader } from '../../../connectors/sqlserver/sqlserver-table-reader.ts';
import { parseKind } from '../../../src/events/value-kind.ts';
import { createLogger } from '../../../src/observability/logger.ts';
import { SimulatedApplyConnection, simulatedConnect, storedValue } from '../../helpers/sqlserver-simulated-apply.ts';
import { SimulatedSqlServer, type SimColumn } from '../../helpers/sqlserver-simulator.ts';
import type { SinkFixture, SinkHarness, SourceFixture, SourceHarness, SourceOp } from '../harness.ts';
import { sortRows, type TableSpec } from '../tables.ts';

/** SQL Server's type for each kind it has one for (no interval, arrays, enums, structs; JSON is text there). */
const TYPES: Readonly<Record<string, Omit<SimColumn, 'name'>>> = {
  boolean: { type: 'bit' },
  int16: { type: 'smallint' },
  int32: { type: 'int' },
  int64: { type: 'bigint' },
  float32: { type: 'real' },
  float64: { type: 'float' },
  'decimal(12,2)': { type: 'decimal', precision: 12, scale: 2 },
  string: { type: 'nvarchar', maxLength: -1 },
  bytes: { type: 'varbinary', maxLength: 64 },
  date: { type: 'date' },
  time: { type: 'time', scale: 6 },
  timestamp: { type: 'datetime2', scale: 6 },
  timestamptz: { type: 'datetimeoffset', scale: 6 },
  uuid: { type: 'uniqueidentifier' },
};

export const SQLSERVER_KINDS = Object.keys(TYPES);

/** The simulator's columns of a neutral table: its key columns numbered in order. */
export function sqlserverColumns(spec: TableSpec): SimColumn[] {
  let key = 0;
  return spec.columns.map((c) => ({ name: c.name, ...TYPES[c.kind]!, keyOrdinal: c.key ? ++key : 0, nullable: !c.key }));
}

function createServer(tables: readonly TableSpec[]): { sim: SimulatedSqlServer; schema: string } {
  const sim = new SimulatedSqlServer({ database: 'conformance' });
  const schema = `conf_${randomBytes(3).toString('hex')}`;
  sim.createApplyProgress();
  for (const t of tables) {
    sim.createTable(schema, t.table, sqlserverColumns(t));
    sim.enableCdc(schema, t.table);
  }
  return { sim, schema };
}

/** A neutral table's rows as capture reads them: each stored value in its kind's canonical text, sorted. */
export function simulatedRows(sim: SimulatedSqlServer, schema: string, spec: TableSpec): (string | null)[][] {
  const described = sim.describeTable(schema, spec.table);
  if (!described) throw new Error(`no table ${schema}.${spec.table} in the simulator`);
  const columns: CapturedColumn[] = described.columns.map((c) => ({ name: c.name, type: c.type, maxLength: c.maxLength, precision: c.precision, scale: c.scale, keyOrdinal: c.keyOrdinal }));
  return sortRows(sim.rows(schema, spec.table).map((row) => row.map((value, i) => canonicalText(columns[i]!, value))));
}

/** What SQL Server stores for one canonical text in a column: the sink's binding, then the model of its CONVERT. */
function stored(target: TargetTable, spec: TableSpec, name: string, text: string | null): ProjectedValue {
  const column = target.columns.find((c) => c.name === name)!;
  const kind = parseKind(spec.columns.find((c) => c.name === name)!.kind);
  const info = { name, kind, native: { name: kind.kind, id: 0, modifier: -1 }, key: false };
  return storedValue(target, column, bindValue(text, info, column, { schema: target.schema, table: target.table }, null));
}

async function inTransaction(sim: SimulatedSqlServer, schema: string, ops: readonly SourceOp[], first?: (tx: ReturnType<SimulatedSqlServer['begin']>) => void): Promise<void> {
  const describer = new SimulatedApplyConnection(sim);
  const targets = new Map<string, TargetTable>();
  for (const op of ops) if (!targets.has(op.table.table)) targets.set(op.table.table, (await describer.describeTable(schema, op.table.table))!);
  const values = (op: SourceOp, row: Readonly<Record<string, string | null>>): Record<string, ProjectedValue> =>
    Object.fromEntries(Object.entries(row).map(([name, text]) => [name, stored(targets.get(op.table.table)!, op.table, name, text)]));
  const tx = sim.begin();
  try {
    first?.(tx);
    for (const op of ops) {
      if (op.op === 'insert') tx.insert(schema, op.table.table, values(op, op.values));
      else if (op.op === 'update') tx.update(schema, op.table.table, values(op, op.where), values(op, op.set));
      else tx.delete(schema, op.table.table, values(op, op.where));
    }
    tx.commit();
  } catch (error) {
    tx.rollback();
    throw error;
  }
  sim.runCaptureJob();
}

export const sqlserverSourceHarness: SourceHarness = {
  name: 'sqlserver (simulated CDC)',
  kinds: SQLSERVER_KINDS,
  snapshots: true,
  async open(tables) {
    const { sim, schema } = createServer(tables);
    const site = `conf_${randomBytes(3).toString('hex')}`;
    let job: NodeJS.Timeout | null = null;
    const url = 'sqlserver://sitesync@simulated:1433/conformance';
    const fixture: SourceFixture = {
      schema,
      source: (maxPartBytes) =>
        Object.assign(new SqlServerSource({ site, reader: () => sim.reader(), tables: null, maxPartBytes, pollIntervalMs: 20, progressWriteIntervalMs: 0, logger: createLogger('silent') }), {}),
      commit: (ops) => inTransaction(sim, schema, ops),
      commitRelayed: (from, commitTimeMicros, ops) =>
        inTransaction(sim, schema, ops, (tx) => {
          const row = { source: from, source_kind: 'postgres', position: '0000000000000001', commit_time_micros: commitTimeMicros.toString(), applied_transactions: '1' };
          if (tx.update('sitesync', 'apply_progress', { source: from }, { commit_time_micros: row.commit_time_micros }) === 0) tx.insert('sitesync', 'apply_progress', row);
        }),
      async snapshots() {
        if (job === null) {
          job = setInterval(() => sim.runCaptureJob(), 10);
          job.unref();
        }
        return {
          reader: await SqlServerTableReader.open({ site, url, consistent: false, runner: async () => sim.runner() }),
          control: new SqlServerSnapshotControl({ site, url, runner: sim.runner() }),
        };
      },
      cleanup: async () => {
        if (job !== null) clearInterval(job);
      },
    };
    return fixture;
  },
};

/** The SQL Server sink on the simulator, told its source is of `sourceKind`. */
export function sqlserverSinkHarness(sourceKind: string, positionDigits: number): SinkHarness {
  return {
    name: `sqlserver (simulated, from a ${sourceKind} source)`,
    kinds: SQLSERVER_KINDS,
    sourceKind,
    position: (n) => n.toString(16).toUpperCase().padStart(positionDigits, '0'),
    async open(tables) {
      const { sim, schema } = createServer(tables);
      const site = `conf_${randomBytes(3).toString('hex')}`;
      const opened: ApplyConnection[] = [];
      const fixture: SinkFixture = {
        schema,
        sink: () => {
          const { connect } = simulatedConnect(sim);
          return new SqlServerSink({
            site,
            connect: async () => {
              const connection = await connect();
              opened.push(connection);
              return connection;
            },
            conflictPolicy: () => ({ policy: 'last-writer-wins', priority: [] }),
            sourceKindOf: () => sourceKind,
            logger: createLogger('silent'),
          });
        },
        rows: async (spec) => simulatedRows(sim, schema, spec),
        // A crash of the process or the network: every connection gone, its open transaction rolled back.
        interrupt: async () => {
          for (const connection of opened.splice(0)) await connection.close();
        },
        cleanup: async () => undefined,
      };
      return fixture;
    },
  };
}
