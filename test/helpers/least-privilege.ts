/**
 * The least-privilege deployment of README "Security model", as an administrator sets it up: three
 * PostgreSQL roles per server, none of them a superuser, and the grants each needs at each site's database.
 * The SQL here is the README's, so the tests that run on it prove the README.
 *
 *   capture  LOGIN REPLICATION; CREATE on schema sitesync (its capture_progress table). The publication
 *            is the administrator's (FOR ALL TABLES needs a superuser).
 *   apply    LOGIN; owns the replicated tables; CREATE on schema sitesync (spilled parts, conflicts,
 *            parked records); EXECUTE on the replication origin functions.
 *   monitor  LOGIN; EXECUTE on pg_replication_origin_progress (status, the WAL watch of other sites).
 */
import { publicationName } from '../../src/config/names.ts';

export interface Roles {
  readonly capture: string;
  readonly apply: string;
  readonly monitor: string;
}

export function rolesFor(suffix: string): Roles {
  return { capture: `sitesync_capture_${suffix}`, apply: `sitesync_apply_${suffix}`, monitor: `sitesync_monitor_${suffix}` };
}

type Query = (text: string) => Promise<unknown>;

/** Once per server (roles are server-wide). */
export async function createRoles(admin: Query, roles: Roles): Promise<void> {
  await admin(`CREATE ROLE ${roles.capture} LOGIN REPLICATION`);
  await admin(`CREATE ROLE ${roles.apply} LOGIN`);
  await admin(`CREATE ROLE ${roles.monitor} LOGIN`);
}

/**
 * Once per site database, before its tables are created (by the apply role, which then owns them; or
 * created by anyone and given to it with ALTER TABLE … OWNER TO). `capture` false: a site that only
 * receives, with no publication.
 */
export async function prepareDatabase(admin: Query, roles: Roles, site: string, capture = true): Promise<void> {
  await admin(`CREATE SCHEMA sitesync`);
  await admin(`GRANT USAGE, CREATE ON SCHEMA sitesync TO ${roles.capture}, ${roles.apply}`);
  await admin(`GRANT USAGE, CREATE ON SCHEMA public TO ${roles.apply}`);
  // Function privileges belong to each database's catalog.
  await admin(
    `GRANT EXECUTE ON FUNCTION pg_replication_origin_create(text), pg_replication_origin_session_setup(text),
       pg_replication_origin_xact_setup(pg_lsn, timestamptz), pg_replication_origin_progress(text, boolean) TO ${roles.apply}`,
  );
  await admin(`GRANT EXECUTE ON FUNCTION pg_replication_origin_progress(text, boolean) TO ${roles.monitor}`);
  if (capture) await admin(`CREATE PUBLICATION ${publicationName(site)} FOR ALL TABLES WITH (publish_via_partition_root = true)`);
}

/** Gives every table of schema public to `role` (tables created before the roles were). */
export async function giveTablesTo(admin: Query, role: string): Promise<void> {
  await admin(`DO $$ DECLARE t record; BEGIN
    FOR t IN SELECT format('%I.%I', schemaname, tablename) AS name FROM pg_tables WHERE schemaname = 'public' LOOP
      EXECUTE format('ALTER TABLE %s OWNER TO %I', t.name, '${role}');
    END LOOP; END $$`);
}

/** Removes the roles, once the databases that hold their grants and objects are dropped. */
export async function dropRoles(admin: Query, roles: Roles): Promise<void> {
  for (const role of [roles.capture, roles.apply, roles.monitor]) await admin(`DROP ROLE IF EXISTS ${role}`);
}

/** A PostgreSQL URL with another user. */
export function asRole(url: string, role: string): string {
  const u = new URL(url);
  u.username = role;
  u.password = '';
  return u.toString();
}
