/**
 * Oracle under the conformance suite, on the simulator of redo and LogMiner (test/helpers/oracle-simulator.ts):
 * no Oracle runs on this project's machines. The connector's own code runs unchanged — OracleSource over a
 * reader of the simulator (SQL_REDO parsed, transactions buffered per XID, windows bounded by the redo threads),
 * OracleSink over the simulated apply connection — so the suite proves everything above the thin layer that
 * speaks to a database (oracledb-logminer-reader.ts, oracledb-apply-connection.ts), which
 * test/integration/oracle-live.test.ts runs against a real database when ORACLE_URL is set.
 *
 * Snapshots too: the table reader (oracle-table-reader.ts) and snapshot control (oracle-snapshot-control.ts) over
 * the simulator's OracleTableDatabase and SnapshotStore, whose marker rows reach the simulated redo and come out
 * of OracleSource as marker messages, as a real site's would.
 *
 * Kinds tried: those Oracle has a type for whose samples it can hold. Not string and bytes (Oracle stores ''
 * and an empty RAW as NULL: the sink refuses them, as it must), no date, time, interval of mixed parts, uuid,
 * json or enum. The integer kinds only at the sink: capture calls NUMBER(4,0) int16 and NUMBER(9,0) int32 (every
 * value they hold fits), but the samples are each kind's extremes (-32768, -2147483648), one digit too many for
 * those types; the sink writes them into NUMBER(5,0) and NUMBER(10,0). int64 nowhere: NUMBER(18,0) cannot hold
 * its extremes and NUMBER(19,0) is decimal(19,0).
 */
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { OracleColumn } from '../../../connectors/oracle/logminer-reader.ts';
import { canonicalText, oracleText } from '../../../connectors/oracle/oracle-kinds.ts';
import { OracleSink } from '../../../connectors/oracle/oracle-sink.ts';
import { OracleSnapshotControl } from '../../../connectors/oracle/oracle-snapshot-control.ts';
import { OracleSource } from '../../../connectors/oracle/oracle-source.ts';
import { OracleTableReader } from '../../../connectors/oracle/oracle-table-reader.ts';
import { createLogger } from '../../../src/observability/logger.ts';
import { simulatedConnect } from '../../helpers/oracle-simulated-apply.ts';
import { SimulatedOracle, type SimOracleColumn } from '../../helpers/oracle-simulator.ts';
import type { SinkFixture, SinkHarness, SourceFixture, SourceHarness, SourceOp } from '../harness.ts';
import { sortRows, type TableSpec } from '../tables.ts';

/** Oracle's type for each kind tried (see the file comment). */
const TYPES: Readonly<Record<string, Omit<SimOracleColumn, 'name'>>> = {
  float32: { type: 'BINARY_FLOAT' },
  float64: { type: 'BINARY_DOUBLE' },
  'decimal(12,2)': { type: 'NUMBER', precision: 12, scale: 2 },
  timestamp: { type: 'TIMESTAMP(6)', scale: 6 },
  timestamptz: { type: 'TIMESTAMP(6) WITH TIME ZONE', scale: 6 },
};

/** Integer columns at the sink: wide enough for the samples. */
const SINK_INTEGERS: Readonly<Record<string, Omit<SimOracleColumn, 'name'>>> = {
  int16: { type: 'NUMBER', precision: 5, scale: 0 },
  int32: { type: 'NUMBER', precision: 10, scale: 0 },
};

/** The suite's own tables' other kinds: int64 keys as NUMBER(19), text as VARCHAR2. */
const OTHER_TYPES: Readonly<Record<string, Omit<SimOracleColumn, 'name'>>> = {
  int32: { type: 'NUMBER', precision: 9, scale: 0 },
  int64: { type: 'NUMBER', precision: 19, scale: 0 },
  string: { type: 'VARCHAR2', length: 4000 },
};

export const ORACLE_KINDS = Object.keys(TYPES);
const ORACLE_SINK_KINDS = [...Object.keys(SINK_INTEGERS), ...ORACLE_KINDS];

export function oracleColumns(spec: TableSpec, sink = false): SimOracleColumn[] {
  let key = 0;
  const typeOf = (kind: string) => (sink ? SINK_INTEGERS[kind] : undefined) ?? TYPES[kind] ?? OTHER_TYPES[kind]!;
  return spec.columns.map((c) => ({ name: c.name, ...typeOf(c.kind), keyOrdinal: c.key ? ++key : 0, nullable: !c.key }));
}

function createDatabase(tables: readonly TableSpec[], sink = false): { db: SimulatedOracle; owner: string } {
  const db = new SimulatedOracle();
  const owner = `conf_${randomBytes(3).toString('hex')}`;
  db.createApplyProgress();
  for (const t of tables) db.createTable(owner, t.table, oracleColumns(t, sink));
  return { db, owner };
}

function columnsOf(db: SimulatedOracle, owner: string, table: string): OracleColumn[] {
  const described = db.describeTable(owner, table);
  if (!described) throw new Error(`no table ${owner}.${table} in the simulator`);
  return described.columns;
}

/** A neutral table's rows as capture reads them: each stored value in its kind's canonical text, sorted. */
export function simulatedOracleRows(db: SimulatedOracle, owner: string, spec: TableSpec): (string | null)[][] {
  const columns = columnsOf(db, owner, spec.table);
  return sortRows(db.rows(owner, spec.table).map((row) => row.map((value, i) => canonicalText(columns[i]!, value))));
}

function commitOps(db: SimulatedOracle, owner: string, ops: readonly SourceOp[], first?: (tx: ReturnType<SimulatedOracle['begin']>) => void): void {
  const text = (op: SourceOp, row: Readonly<Record<string, string | null>>): Record<string, string | null> => {
    const columns = columnsOf(db, owner, op.table.table);
    return Object.fromEntries(Object.entries(row).map(([name, value]) => [name, value === null ? null : oracleText(columns.find((c) => c.name === name)!, value)]));
  };
  const tx = db.begin();
  try {
    first?.(tx);
    for (const op of ops) {
      if (op.op === 'insert') tx.insert(owner, op.table.table, text(op, op.values));
      else if (op.op === 'update') tx.update(owner, op.table.table, text(op, op.where), text(op, op.set));
      else tx.delete(owner, op.table.table, text(op, op.where));
    }
    tx.commit();
  } catch (error) {
    tx.rollback();
    throw error;
  }
}

export const oracleSourceHarness: SourceHarness = {
  name: 'oracle (simulated LogMiner)',
  kinds: ORACLE_KINDS,
  snapshots: true,
  async open(tables) {
    const { db, owner } = createDatabase(tables);
    const site = `conf_${randomBytes(3).toString('hex')}`;
    const fixture: SourceFixture = {
      schema: owner,
      source: (maxPartBytes) =>
        new OracleSource({ site, reader: () => db.reader(), tables: null, maxPartBytes, pollIntervalMs: 20, progressWriteIntervalMs: 0, spillDirectory: join(tmpdir(), 'sitesync-conformance'), logger: createLogger('silent') }),
      commit: async (ops) => commitOps(db, owner, ops),
      commitRelayed: async (from, commitTimeMicros, ops) =>
        commitOps(db, owner, ops, (tx) => {
          const micros = commitTimeMicros.toString();
          if (tx.update('SITESYNC', 'APPLY_PROGRESS', { SOURCE: from }, { COMMIT_TIME_MICROS: micros }) === 0) {
            tx.insert('SITESYNC', 'APPLY_PROGRESS', { SOURCE: from, SOURCE_KIND: 'postgres', POSITION: '0000000000000001', COMMIT_TIME_MICROS: micros, APPLIED_TRANSACTIONS: '1' });
          }
        }),
      snapshots: async () => {
        const url = 'oracle://sim:sim@simulated:1521/CONFORMANCE';
        return { reader: new OracleTableReader({ site, url, consistent: false }, db.tableDatabase()), control: new OracleSnapshotControl({ site, url }, db.snapshotStore()) };
      },
      cleanup: async () => undefined,
    };
    return fixture;
  },
};

/** The Oracle sink on the simulator, told its source is of `sourceKind`. */
export function oracleSinkHarness(sourceKind: string, positionDigits: number): SinkHarness {
  return {
    name: `oracle (simulated, from a ${sourceKind} source)`,
    kinds: ORACLE_SINK_KINDS,
    sourceKind,
    position: (n) => n.toString(16).toUpperCase().padStart(positionDigits, '0'),
    async open(tables) {
      const { db, owner } = createDatabase(tables, true);
      const site = `conf_${randomBytes(3).toString('hex')}`;
      const opened: { close(): Promise<void> }[] = [];
      const fixture: SinkFixture = {
        schema: owner,
        sink: () => {
          const { connect } = simulatedConnect(db);
          return new OracleSink({
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
        rows: async (spec) => simulatedOracleRows(db, owner, spec),
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
