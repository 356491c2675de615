/**
 * A RabbitMQ node of the test's own (its own name, ports and data folder), for tests that restart the
 * broker, close all its connections or raise its alarms without touching the shared one. It runs as the
 * `rabbitmq` user with that user's Erlang cookie, so the machine's rabbitmqctl can manage it with `-n`.
 */
import { execFile } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const SERVER = '/usr/lib/rabbitmq/bin/rabbitmq-server';

export interface ScratchRabbitmq {
  readonly node: string;
  readonly url: string;
  /** rabbitmqctl against this node. */
  ctl(...args: string[]): Promise<void>;
  destroy(): Promise<void>;
}

export async function startScratchRabbitmq(amqpPort: number): Promise<ScratchRabbitmq> {
  const node = `sitesync_test_${amqpPort}@localhost`;
  const dir = mkdtempSync(join(tmpdir(), 'sitesync-rabbitmq-'));
  writeFileSync(join(dir, 'enabled_plugins'), '[].\n');
  const owner = await run('id', ['-u', 'rabbitmq']).then(({ stdout }) => Number(stdout.trim()));
  chownSync(dir, owner, -1);
  const ctl = async (...args: string[]): Promise<void> => {
    await run('rabbitmqctl', ['-q', '-n', node, ...args], { timeout: 120_000 });
  };
  await ctl('stop').catch(() => undefined); // a node left behind by an aborted run
  const env = {
    HOME: '/var/lib/rabbitmq',
    RABBITMQ_NODENAME: node,
    RABBITMQ_NODE_PORT: String(amqpPort),
    RABBITMQ_DIST_PORT: String(amqpPort + 1),
    RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: join(dir, 'log'),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
    RABBITMQ_CONFIG_FILE: join(dir, 'none'),
  };
  const asRabbitmq = process.getuid?.() === 0 ? ['runuser', ['-u', 'rabbitmq', '--', 'env', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), SERVER, '-detached']] as const : null;
  if (asRabbitmq) await run(asRabbitmq[0], [...asRabbitmq[1]]);
  else await run(SERVER, ['-detached'], { env: { ...process.env, ...env } });
  // -detached returns before the node is registered; await_startup fails until it is.
  for (let tries = 0; ; tries++) {
    try {
      await ctl('await_startup', '--timeout', '120');
      break;
    } catch (error) {
      if (tries > 60) throw error;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  return {
    node,
    url: `amqp://guest:guest@127.0.0.1:${amqpPort}/`,
    ctl,
    async destroy() {
      await ctl('stop').catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
