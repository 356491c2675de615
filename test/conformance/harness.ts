/**
 * What the conformance suite needs from each connector (or fake) to try it: a database of its own, the
 * neutral tables created in it, and writes made the way that database's users and sitesync's own sink make
 * them. The suite never speaks SQL; each harness does, for its database.
 */
import type { Source } from '../../src/capture/source.ts';
import type { Sink } from '../../src/apply/sink.ts';
import type { TableSpec } from './tables.ts';
import type { TableReader } from '../../src/capture/table-reader.ts';
import type { SnapshotControl } from '../../src/capture/snapshot-control.ts';

/** One write of a transaction at a source, in canonical text by column name. */
export type SourceOp =
  | { readonly op: 'insert'; readonly table: TableSpec; readonly values: Readonly<Record<string, string | null>> }
  | { readonly op: 'update'; readonly table: TableSpec; readonly where: Readonly<Record<string, string | null>>; readonly set: Readonly<Record<string, string | null>> }
  | { readonly op: 'delete'; readonly table: TableSpec; readonly where: Readonly<Record<string, string | null>> };

export interface SourceFixture {
  /** The schema (PostgreSQL) or database (MariaDB) the tables are in: what changes name. */
  readonly schema: string;
  /** A source of this database as the site `site` captures it; each call is a new process's source. */
  source(maxPartBytes: number): Source & { end(): Promise<void> };
  /** Commits one transaction made of `ops`, as an application would. */
  commit(ops: readonly SourceOp[]): Promise<void>;
  /** Commits one transaction the way this kind's sink applies one from `from` (so capture must drop it). */
  commitRelayed(from: string, commitTimeMicros: bigint, ops: readonly SourceOp[]): Promise<void>;
  /** The connector's table reader and snapshot control at this database (harnesses with `snapshots`). */
  snapshots?(): Promise<{ readonly reader: TableReader; readonly control: SnapshotControl }>;
  cleanup(): Promise<void>;
}

export interface SourceHarness {
  readonly name: string;
  /** Kinds (wire form) this database has a native type for, tried by the kinds round trip. */
  readonly kinds: readonly string[];
  /** The connector can snapshot (Connector.openTableReader and openSnapshotControl): the suite tries it. */
  readonly snapshots?: boolean;
  /** A database with `tables` created, and the site name its source captures as. */
  open(tables: readonly TableSpec[]): Promise<SourceFixture>;
}

export interface SinkFixture {
  readonly schema: string;
  /** A sink of this database; each call is a new process's sink. */
  sink(): Sink;
  /** A table's rows in canonical text, sorted: what the sink stored. */
  rows(table: TableSpec): Promise<(string | null)[][]>;
  /** Kills the sink's connections to its database now, as a crash of the process or the network would. */
  interrupt(): Promise<void>;
  cleanup(): Promise<void>;
}

export interface SinkHarness {
  readonly name: string;
  readonly kinds: readonly string[];
  /** The kind of source the suite's transactions claim to come from (what the sink is told of them). */
  readonly sourceKind: string;
  /** A position of that kind for the n-th transaction (n >= 1), ordered as n. */
  position(n: number): string;
  open(tables: readonly TableSpec[]): Promise<SinkFixture>;
}
