/**
 * What `sitesync status` (and the log retention watch) shows of one MariaDB site: its binary log reader's
 * confirmed checkpoint against the server's binlog end (capture side), and each source's row in
 * apply_progress (apply side). MariaDB keeps its binlogs for binlog_expire_logs_seconds whatever a reader
 * has read, so no log is retained for capture: retainedBytes is null.
 */
import mysql from 'mysql2/promise';
import type { RowDataPacket } from 'mysql2/promise';
import type { AppliedStatus, SiteDatabaseStatus } from '../../src/connector.ts';
import { BOOKKEEPING_SCHEMA } from '../../src/config/names.ts';
import { describeMariaDbError } from './mariadb-errors.ts';
import { fileSequence, parseCheckpoint } from './mariadb-positions.ts';
import { connectionOptions } from './mariadb-source.ts';

export async function readMariaDbStatus(url: string, site: string, sources: readonly string[]): Promise<SiteDatabaseStatus> {
  let connection: mysql.Connection | null = null;
  try {
    connection = await mysql.createConnection({ ...connectionOptions(url), connectTimeout: 10_000 });
    const tables = await rows(connection, `SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?`, [BOOKKEEPING_SCHEMA]);
    const has = (name: string): boolean => tables.some((t) => t.name === name);
    const progress = has('capture_progress') ? (await rows(connection, `SELECT checkpoint FROM \`${BOOKKEEPING_SCHEMA}\`.capture_progress WHERE site = ?`, [site]))[0] : undefined;
    const logs = await rows(connection, 'SHOW BINARY LOGS').catch(() => [] as RowDataPacket[]);
    const last = logs.at(-1);
    const current = last ? `${String(last.Log_name)}:${String(last.File_size)}` : 'no binary log';
    let lagBytes: number | null = null;
    if (progress && logs.length > 0) {
      const from = parseCheckpoint(String(progress.checkpoint));
      lagBytes = 0;
      for (const log of logs) {
        const order = fileSequence(String(log.Log_name)) - fileSequence(from.file);
        if (order > 0) lagBytes += Number(log.File_size);
        else if (order === 0) lagBytes += Math.max(0, Number(log.File_size) - from.offset);
      }
    }
    const dumps = await rows(connection, `SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'`).catch(() => [{ n: 0 }] as RowDataPacket[]);
    const applied: AppliedStatus[] = [];
    const applyRows = has('apply_progress') && sources.length > 0
      ? await rows(connection, `SELECT source, position FROM \`${BOOKKEEPING_SCHEMA}\`.apply_progress WHERE source IN (${sources.map(() => '?').join(', ')})`, [...sources])
      : [];
    for (const source of sources) {
      const row = applyRows.find((r) => r.source === source);
      applied.push({ source, name: `${BOOKKEEPING_SCHEMA}.apply_progress`, position: row ? String(row.position) : null });
    }
    return {
      capture: {
        name: `binlog reader of ${site}`,
        exists: progress !== undefined,
        active: Number(dumps[0]?.n ?? 0) > 0,
        confirmed: progress ? String(progress.checkpoint) : null,
        current,
        lagBytes,
        retainedBytes: null,
        release: `DELETE FROM ${BOOKKEEPING_SCHEMA}.capture_progress WHERE site = '${site}'`,
      },
      applied,
    };
  } catch (error) {
    throw describeMariaDbError(error, url, site);
  } finally {
    await connection?.end().catch(() => undefined);
  }
}

async function rows(connection: mysql.Connection, text: string, values: unknown[] = []): Promise<RowDataPacket[]> {
  const [result] = await connection.query<RowDataPacket[]>(text, values);
  return result;
}
