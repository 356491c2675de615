/**
 * sitesync's own schema at a site (names.ts BOOKKEEPING_SCHEMA). `CREATE SCHEMA IF NOT EXISTS` needs the
 * CREATE right on the database even when the schema exists, which a least-privilege capture or apply role
 * does not have: an administrator creates the schema once and grants USAGE and CREATE on it, and then
 * each role only creates its own tables in it. So the schema is created only when it is missing.
 */
import { BOOKKEEPING_SCHEMA } from '../../src/config/names.ts';

interface Queryable {
  query<R extends Record<string, unknown>>(text: string, values?: unknown[]): Promise<{ rows: R[] }>;
}

export async function ensureBookkeepingSchema(db: Queryable): Promise<void> {
  const { rows } = await db.query<{ present: boolean }>('SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) AS present', [BOOKKEEPING_SCHEMA]);
  if (rows[0]?.present) return;
  await db.query(`CREATE SCHEMA IF NOT EXISTS ${BOOKKEEPING_SCHEMA}`).catch((error: { code?: string }) => {
    if (error.code !== '23505' && error.code !== '42P06') throw error; // created meanwhile by another session
  });
}
