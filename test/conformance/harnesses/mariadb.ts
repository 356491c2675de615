/**
 * MariaDB under the conformance suite: a private server per fixture (binary log on, row format, full images
 * and metadata: test/helpers/private-mariadb.ts), the neutral tables in MariaDB types in a database named
 * like the fixture's schema, writes as an application makes them, and relayed writes as the MariaDB sink
 * makes them (its apply_progress row first).
 */
import { randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';
import { MariaDbSink } from '../../../connectors/mariadb/mariadb-sink.ts';
import { MariaDbSnapshotControl } from '../../../connectors/mariadb/mariadb-snapshot-control.ts';
import { MariaDbSource } from '../../../connectors/mariadb/mariadb-source.ts';
import { MariaDbTableReader } from '../../../connectors/mariadb/mariadb-table-reader.ts';
import { createLogger } from '../../../src/observability/logger.ts';
import { formatFloat32, formatFloat64 } from '../../../src/events/value-parser.ts';
import { startPrivateMariaDb, type PrivateMariaDb } from '../../helpers/private-mariadb.ts';
import type { SinkFixture, SinkHarness, SourceFixture, SourceHarness, SourceOp } from '../harness.ts';
import { ENUM_LABELS, sortRows, type TableSpec } from '../tables.ts';

/** MariaDB's type for each kind it has one for (no interval, no arrays). */
const TYPES: Readonly<Record<string, string>> = {
  boolean: 'tinyint(1)',
  int16: 'smallint',
  int32: 'int',
  int64: 'bigint',
  float32: 'float',
  float64: 'double',
  'decimal(12,2)': 'decimal(12,2)',
  string: 'text',
  bytes: 'varbinary(64)',
  date: 'date',
  time: 'time(6)',
  timestamp: 'datetime(6)',
  timestamptz: 'timestamp(6) NULL',
  json: 'json',
  uuid: 'uuid',
  enum: `enum(${ENUM_LABELS.map((l) => `'${l}'`).join(', ')})`,
};

/** MariaDB's type for each kind, for a test's own tables. */
export const MARIADB_TYPES = TYPES;

export const MARIADB_KINDS = Object.keys(TYPES);

const quote = (name: string): string => `\`${name.replace(/`/g, '``')}\``;

/** A canonical text as MariaDB takes it in an INSERT (the session is in UTC). */
function bindable(kind: string, text: string | null): unknown {
  if (text === null) return null;
  switch (kind) {
    case 'boolean':
      return text === 't' ? 1 : 0;
    case 'bytes':
      return Buffer.from(text.slice(2), 'hex');
    case 'timestamptz':
      return text.replace(/\+00$/, '');
    default:
      return text;
  }
}

async function createServer(tables: readonly TableSpec[]): Promise<{ server: PrivateMariaDb; schema: string }> {
  const server = await startPrivateMariaDb();
  const schema = `conf_${randomBytes(3).toString('hex')}`;
  await server.query(`CREATE DATABASE ${schema} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`);
  for (const t of tables) {
    const columns = t.columns.map((c) => `${quote(c.name)} ${TYPES[c.kind]}`);
    const key = t.columns.filter((c) => c.key).map((c) => quote(c.name));
    await server.query(`CREATE TABLE ${schema}.${quote(t.table)} (${[...columns, ...(key.length > 0 ? [`PRIMARY KEY (${key.join(', ')})`] : [])].join(', ')})`);
  }
  return { server, schema };
}

function statement(schema: string, op: SourceOp): { text: string; values: unknown[] } {
  const kind = (name: string): string => op.table.columns.find((c) => c.name === name)!.kind;
  const values: unknown[] = [];
  const bind = (name: string, value: string | null): string => {
    values.push(bindable(kind(name), value));
    return '?';
  };
  const where = (w: Readonly<Record<string, string | null>>): string => Object.entries(w).map(([k, v]) => `${quote(k)} = ${bind(k, v)}`).join(' AND ');
  const table = `${schema}.${quote(op.table.table)}`;
  switch (op.op) {
    case 'insert': {
      const names = Object.keys(op.values);
      return { text: `INSERT INTO ${table} (${names.map(quote).join(', ')}) VALUES (${names.map((n) => bind(n, op.values[n]!)).join(', ')})`, values };
    }
    case 'update':
      return { text: `UPDATE ${table} SET ${Object.entries(op.set).map(([k, v]) => `${quote(k)} = ${bind(k, v)}`).join(', ')} WHERE ${where(op.where)}`, values };
    case 'delete':
      return { text: `DELETE FROM ${table} WHERE ${where(op.where)}`, values };
  }
}

async function inTransaction(server: PrivateMariaDb, schema: string, ops: readonly SourceOp[], first?: (c: mysql.Connection) => Promise<void>): Promise<void> {
  const connection = await mysql.createConnection({ host: '127.0.0.1', port: server.port, user: 'root', timezone: 'Z' });
  try {
    await connection.query(`SET time_zone = '+00:00'`);
    await connection.beginTransaction();
    await first?.(connection);
    for (const op of ops) {
      const { text, values } = statement(schema, op);
      await connection.query(text, values);
    }
    await connection.commit();
  } finally {
    await connection.end();
  }
}

/** A MariaDB table's rows as the MariaDB capture reads them: each value in its kind's canonical text, sorted. */
export async function mariadbRows(port: number, schema: string, spec: TableSpec): Promise<(string | null)[][]> {
  const columns = spec.columns.map((c) => {
    const q = quote(c.name);
    const trimmed = (format: string): string => `TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM ${format}))`;
    switch (c.kind) {
      case 'boolean':
        return `IF(${q} IS NULL, NULL, IF(${q}, 't', 'f'))`;
      case 'bytes':
        return `IF(${q} IS NULL, NULL, CONCAT('\\\\x', LOWER(HEX(${q}))))`;
      case 'timestamptz':
        return `IF(${q} IS NULL, NULL, CONCAT(${trimmed(`DATE_FORMAT(${q}, '%Y-%m-%d %H:%i:%s.%f')`)}, '+00'))`;
      case 'timestamp':
        return trimmed(`DATE_FORMAT(${q}, '%Y-%m-%d %H:%i:%s.%f')`);
      case 'time':
        return trimmed(`TIME_FORMAT(${q}, '%H:%i:%s.%f')`);
      case 'float32':
      case 'float64':
        return q; // a number, printed below as the capture prints it
      default:
        return `CAST(${q} AS CHAR)`;
    }
  });
  const connection = await mysql.createConnection({ host: '127.0.0.1', port, user: 'root', rowsAsArray: true });
  try {
    await connection.query(`SET time_zone = '+00:00'`);
    const [rows] = await connection.query<mysql.RowDataPacket[]>(`SELECT ${columns.join(', ')} FROM ${quote(schema)}.${quote(spec.table)}`);
    const text = (kind: string, v: unknown): string | null =>
      v === null ? null : kind === 'float32' ? formatFloat32(Math.fround(Number(v))) : kind === 'float64' ? formatFloat64(Number(v)) : String(v);
    return sortRows(rows.map((r) => (r as unknown as unknown[]).map((v, i) => text(spec.columns[i]!.kind, v))));
  } finally {
    await connection.end();
  }
}

export const mariadbSourceHarness: SourceHarness = {
  name: 'mariadb',
  kinds: MARIADB_KINDS,
  snapshots: true,
  async open(tables) {
    const { server, schema } = await createServer(tables);
    const site = `conf_${randomBytes(3).toString('hex')}`;
    const fixture: SourceFixture = {
      schema,
      source: (maxPartBytes) => new MariaDbSource({ site, url: server.url(), tables: null, maxPartBytes, logger: createLogger('silent') }),
      commit: (ops) => inTransaction(server, schema, ops),
      // What the MariaDB sink does: the first write of every transaction it applies is its progress row.
      commitRelayed: async (from, commitTimeMicros, ops) => {
        await server.query(`CREATE DATABASE IF NOT EXISTS sitesync`);
        await server.query(
          `CREATE TABLE IF NOT EXISTS sitesync.apply_progress (source VARCHAR(40) NOT NULL PRIMARY KEY, source_kind VARCHAR(20) NOT NULL, position VARCHAR(64) NOT NULL, commit_time_micros BIGINT NOT NULL, applied_transactions BIGINT NOT NULL DEFAULT 0) ENGINE=InnoDB`,
        );
        await inTransaction(server, schema, ops, async (c) => {
          await c.query(
            `INSERT INTO sitesync.apply_progress (source, source_kind, position, commit_time_micros, applied_transactions) VALUES (?, 'postgres', '0000000000000001', ?, 1)
             ON DUPLICATE KEY UPDATE commit_time_micros = VALUES(commit_time_micros), applied_transactions = applied_transactions + 1`,
            [from, commitTimeMicros.toString()],
          );
        });
      },
      snapshots: async () => ({ reader: await MariaDbTableReader.open({ site, url: server.url(), consistent: false }), control: new MariaDbSnapshotControl({ site, url: server.url() }) }),
      cleanup: () => server.destroy(),
    };
    return fixture;
  },
};

/** The MariaDB sink, told its source is of `sourceKind`. */
export function mariadbSinkHarness(sourceKind: string, positionDigits: number): SinkHarness {
  return {
    name: `mariadb (from a ${sourceKind} source)`,
    kinds: MARIADB_KINDS,
    sourceKind,
    position: (n) => n.toString(16).toUpperCase().padStart(positionDigits, '0'),
    async open(tables) {
      const { server, schema } = await createServer(tables);
      const site = `conf_${randomBytes(3).toString('hex')}`;
      const fixture: SinkFixture = {
        schema,
        sink: () => new MariaDbSink({ site, url: server.url(), conflictPolicy: () => ({ policy: 'last-writer-wins', priority: [] }), sourceKindOf: () => sourceKind, logger: createLogger('silent') }),
        rows: (spec) => mariadbRows(server.port, schema, spec),
        async interrupt() {
          const processes = await server.query<{ ID: number }>(`SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND USER = 'root' AND COMMAND <> 'Daemon'`);
          for (const p of processes) await server.query(`KILL ${Number(p.ID)}`).catch(() => undefined);
        },
        cleanup: () => server.destroy(),
      };
      return fixture;
    },
  };
}
