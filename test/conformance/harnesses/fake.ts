/**
 * The in-memory fakes under the conformance suite: a FakeLog written through a shadow of its tables (so
 * that updates and deletes carry the images a database would log), and a FakeStore.
 */
import { FakeLog, FakeSource, fakePosition } from '../../helpers/fake-source.ts';
import { FakeSink, FakeStore } from '../../helpers/fake-sink.ts';
import type { Change } from '../../../src/events/transaction.ts';
import type { SinkHarness, SourceHarness, SourceOp } from '../harness.ts';
import { KIND_SAMPLES, relationOf, rowOf, sortRows, type TableSpec } from '../tables.ts';

const SCHEMA = 'app';
const KINDS = Object.keys(KIND_SAMPLES);

type Row = (string | null)[];

/** The rows an application wrote, so that an op by values becomes a change with old and new images. */
class Shadow {
  private readonly tables = new Map<string, Row[]>();

  changes(op: SourceOp): Change[] {
    const spec = op.table;
    const relation = relationOf(SCHEMA, spec);
    const rows = this.rowsOf(spec);
    const matches = (row: Row, where: Readonly<Record<string, string | null>>): boolean => Object.entries(where).every(([k, v]) => row[spec.columns.findIndex((c) => c.name === k)] === v);
    const keyed = spec.columns.some((c) => c.key);
    /** What a database logs as the old row: the key alone (others null) when there is one, else every column. */
    const oldImage = (row: Row): Row => (keyed ? row.map((v, i) => (spec.columns[i]!.key ? v : null)) : [...row]);
    switch (op.op) {
      case 'insert': {
        const row = rowOf(spec, op.values);
        rows.push(row);
        return [{ op: 'insert', relation, newRow: { values: [...row], unchanged: [] } }];
      }
      case 'update':
        return rows.filter((row) => matches(row, op.where)).map((row): Change => {
          const next = row.map((v, i) => (spec.columns[i]!.name in op.set ? op.set[spec.columns[i]!.name]! : v));
          const keyChanged = keyed && spec.columns.some((c, i) => c.key && next[i] !== row[i]);
          const old = keyed ? (keyChanged ? oldImage(row) : null) : [...row];
          row.splice(0, row.length, ...next);
          return { op: 'update', relation, oldRow: old === null ? null : { values: old, unchanged: [] }, newRow: { values: [...next], unchanged: [] } };
        });
      case 'delete': {
        const gone = rows.filter((row) => matches(row, op.where));
        this.tables.set(spec.table, rows.filter((row) => !gone.includes(row)));
        return gone.map((row): Change => ({ op: 'delete', relation, oldRow: { values: oldImage(row), unchanged: [] } }));
      }
    }
  }

  private rowsOf(spec: TableSpec): Row[] {
    let rows = this.tables.get(spec.table);
    if (!rows) this.tables.set(spec.table, (rows = []));
    return rows;
  }
}

export const fakeSourceHarness: SourceHarness = {
  name: 'in-memory fake',
  kinds: KINDS,
  async open() {
    const log = new FakeLog();
    const shadow = new Shadow();
    return {
      schema: SCHEMA,
      source: (maxPartBytes) => new FakeSource({ site: 'fake', log, maxPartBytes }),
      async commit(ops) {
        log.commit(ops.flatMap((op) => shadow.changes(op)));
      },
      async commitRelayed(from, commitTimeMicros, ops) {
        log.commit(ops.flatMap((op) => shadow.changes(op)), { relayedFrom: from, commitTimeMicros });
      },
      async cleanup() {},
    };
  },
};

export const fakeSinkHarness: SinkHarness = {
  name: 'in-memory fake',
  kinds: KINDS,
  sourceKind: 'fake',
  position: fakePosition,
  async open(tables) {
    const store = new FakeStore();
    for (const t of tables) store.createTable(SCHEMA, t.table, t.columns.map((c) => c.name));
    return {
      schema: SCHEMA,
      sink: () => new FakeSink('fake', store),
      rows: async (spec) => sortRows(store.rows(SCHEMA, spec.table)),
      async interrupt() {
        store.killConnections();
      },
      async cleanup() {},
    };
  },
};

