/**
 * The reference: PostgreSQL's own logical replication (publication, pgoutput slot, subscription), what a
 * PostgreSQL-only user would run instead of sitesync. Slots are created by hand before the writes, as
 * sitesync's are, and subscriptions are created disabled with copy_data = false, create_slot = false
 * (creating a slot from CREATE SUBSCRIPTION on the same server would wait for itself).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { BenchServer } from './server.ts';

export interface NativeSubscriber {
  readonly database: string;
  readonly subscription: string;
  readonly slot: string;
}

export async function createNativePublication(server: BenchServer, sourceDb: string, publication: string, tables: readonly string[]): Promise<void> {
  await server.query(sourceDb, `CREATE PUBLICATION ${publication} FOR TABLE ${tables.join(', ')}`);
}

/** A slot at the source and a disabled subscription at the subscriber (dropped with the databases). */
export async function createNativeSubscriber(
  server: BenchServer,
  sourceDb: string,
  publication: string,
  subscriberDb: string,
  name: string,
  enabled = false,
): Promise<NativeSubscriber> {
  await server.query(sourceDb, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [name]);
  await server.query(
    subscriberDb,
    `CREATE SUBSCRIPTION ${name} CONNECTION '${server.conninfo(sourceDb)}' PUBLICATION ${publication}
       WITH (copy_data = false, create_slot = false, slot_name = '${name}', enabled = ${enabled})`,
  );
  return { database: subscriberDb, subscription: name, slot: name };
}

export async function enableSubscriber(server: BenchServer, subscriber: NativeSubscriber): Promise<void> {
  await server.query(subscriber.database, `ALTER SUBSCRIPTION ${subscriber.subscription} ENABLE`);
}

export async function disableSubscriber(server: BenchServer, subscriber: NativeSubscriber): Promise<void> {
  await server.query(subscriber.database, `ALTER SUBSCRIPTION ${subscriber.subscription} DISABLE`);
}

/** Waits until the subscriber's apply worker streams from its slot. */
export async function waitStreaming(server: BenchServer, subscriber: NativeSubscriber, timeoutMs = 30_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const rows = await server.query<{ active: boolean }>('postgres', `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, [subscriber.slot]);
    if (rows[0]?.active) return;
    if (performance.now() > deadline) throw new Error(`native subscription ${subscriber.subscription} did not start streaming within ${timeoutMs / 1000} s`);
    await sleep(50);
  }
}

/** Removes a subscription and its slot, so that it decodes nothing more (before another phase writes). */
export async function dropSubscriber(server: BenchServer, sourceDb: string, subscriber: NativeSubscriber): Promise<void> {
  await server.query(subscriber.database, `ALTER SUBSCRIPTION ${subscriber.subscription} DISABLE`);
  await server.query(subscriber.database, `ALTER SUBSCRIPTION ${subscriber.subscription} SET (slot_name = NONE)`);
  await server.query(subscriber.database, `DROP SUBSCRIPTION ${subscriber.subscription}`);
  for (let attempt = 0; ; attempt++) {
    try {
      await server.query(sourceDb, `SELECT pg_drop_replication_slot($1)`, [subscriber.slot]);
      return;
    } catch (error) {
      if (attempt >= 40) throw error; // the walsender of the disabled subscription is still exiting
      await sleep(250);
    }
  }
}
