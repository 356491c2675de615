/**
 * The `sitesync` command line, and the composition root: the one place that hands the registry of every
 * database connector (connectors/index.ts) to the core. Every failure a user can cause ends in one line on
 * stderr naming what is wrong and how to fix it; configuration errors exit with status 2 before anything
 * is touched.
 */
import { Command, InvalidArgumentError } from 'commander';
import { CONNECTORS } from '../../connectors/index.ts';
import type { Config } from '../config/config-schema.ts';
import { loadConfig } from '../config/load-config.ts';
import { checkDatabases } from '../connector.ts';
import { describeError, SitesyncError } from '../errors.ts';
import { createLogger, type Logger } from '../observability/logger.ts';
import { createMetrics, serveMetrics } from '../observability/metrics.ts';
import { createPipeline } from '../pipeline.ts';
import { collectStatus, formatStatus, unreachableServices } from './status-command.ts';
import { setupCommand } from './setup-command.ts';
import { planReplay, runReplay, type ReplayCommandOptions } from './replay-command.ts';
import { subscribe, unsubscribe, type SubscriptionOptions } from './subscribe-command.ts';
import { parkedCommand } from './parked-command.ts';

/** The configuration, with every site's database checked by its connector (kind known, URLs of its form). */
function loadChecked(file: string): Config {
  const config = loadConfig(file);
  checkDatabases(CONNECTORS, config);
  return config;
}

const EXIT_CONFIG = 2;
const EXIT_FAILURE = 1;

function fail(error: unknown): never {
  process.stderr.write(`sitesync: ${describeError(error)}\n`);
  process.exit(exitCodeOf(error));
}

function exitCodeOf(error: unknown): number {
  return error instanceof SitesyncError && error.code === 'SITESYNC_ERR_CONFIG' ? EXIT_CONFIG : EXIT_FAILURE;
}

/**
 * Exits once the last log lines had their chance to be written: pino writes them asynchronously, and on exit
 * writes what is left synchronously, retrying for ever if stderr's reader is gone (seen: a stopped process
 * kept alive and busy). By then a failed write has made logger.ts drop the logs, so the exit is clean.
 */
function exitAfterLogs(log: Logger, code: number, line?: string): void {
  log.flush();
  setTimeout(() => {
    if (line) process.stderr.write(line);
    process.exit(code);
  }, 250);
}

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('a port is a whole number from 0 to 65535');
  return n;
}

const program = new Command()
  .name('sitesync')
  .description('Keeps the databases of several sites in step: PostgreSQL WAL → RabbitMQ → every other site, exactly once, in commit order.')
  .showHelpAfterError()
  .configureOutput({ outputError: (text, write) => write(`sitesync: ${text.replace(/^error: /, '')}`) })
  .exitOverride((error) => process.exit(error.exitCode === 0 ? 0 : EXIT_CONFIG));

program
  .command('run')
  .description('capture site NAME and apply every other site into it, until SIGTERM or SIGINT')
  .requiredOption('-c, --config <file>', 'configuration file (YAML)')
  .requiredOption('-s, --site <name>', 'the site this process serves')
  .option('--metrics-port <port>', 'serve Prometheus metrics on this port (overrides metrics.port)', port)
  .action(async (opts: { config: string; site: string; metricsPort?: number }) => {
    let pipeline;
    let logger;
    try {
      const config = loadChecked(opts.config);
      logger = createLogger(config.log.level);
      pipeline = createPipeline(config, opts.site, logger, CONNECTORS);
      const metricsPort = opts.metricsPort ?? config.metrics.port;
      if (metricsPort > 0) {
        const metrics = createMetrics(pipeline.events);
        const server = await serveMetrics(metrics, metricsPort);
        server.unref();
        logger.info({ port: metricsPort }, 'metrics on /metrics');
      }
    } catch (error) {
      fail(error);
    }
    const log = logger;
    const p = pipeline;
    let signals = 0;
    const onSignal = (signal: string): void => {
      if (++signals > 1) {
        log.warn('second signal: exiting now; what was in flight is sent again at the next start');
        exitAfterLogs(log, EXIT_FAILURE);
        return;
      }
      log.info({ signal }, 'stopping: finishing what is in flight');
      p.stop();
    };
    process.on('SIGTERM', () => onSignal('SIGTERM'));
    process.on('SIGINT', () => onSignal('SIGINT'));
    log.info({ site: opts.site }, 'sitesync running');
    try {
      await p.run();
      log.info('stopped cleanly');
      exitAfterLogs(log, 0);
    } catch (error) {
      exitAfterLogs(log, exitCodeOf(error), `sitesync: ${describeError(error)}\n`);
    }
  });

program
  .command('status')
  .description("show every site's slot, how far each source is applied, and the queues")
  .requiredOption('-c, --config <file>', 'configuration file (YAML)')
  .option('--json', 'print JSON instead of text')
  .action(async (opts: { config: string; json?: boolean }) => {
    try {
      const config = loadChecked(opts.config);
      const statuses = await collectStatus(config, CONNECTORS);
      process.stdout.write(opts.json ? `${JSON.stringify(statuses, null, 2)}\n` : `${formatStatus(statuses)}\n`);
      // A service that could not be read makes the whole answer partial: scripts and probes must see it.
      const unreachable = unreachableServices(statuses);
      for (const line of unreachable) process.stderr.write(`sitesync: ${line}\n`);
      process.exit(unreachable.length > 0 ? EXIT_FAILURE : 0);
    } catch (error) {
      fail(error);
    }
  });

program
  .command('setup')
  .description("declare the broker topology, give each site's broker user the least permissions it needs (run with an administrator's credentials in broker.url), and check each site's database where its connector can (SQL Server: CDC, the Agent, rights)")
  .requiredOption('-c, --config <file>', 'configuration file (YAML)')
  .option('--management-url <url>', "RabbitMQ's management API with an administrator's credentials (http://admin:secret@host:15672/): create the users and set their permissions; without it, the rabbitmqctl commands are printed")
  .addHelpText(
    'after',
    `
A new site user's password is read from SITESYNC_SETUP_PASSWORD_<SITE> (never printed). Run it again after
adding a site. The running processes then need no configure permission. A site database's problems are printed
one per line with the statement to run, and make setup exit 1.`,
  )
  .action(async (opts: { config: string; managementUrl?: string }) => {
    try {
      await setupCommand(loadChecked(opts.config), { managementUrl: opts.managementUrl, connectors: CONNECTORS }, (line) => process.stdout.write(`${line}\n`));
      process.exit(0);
    } catch (error) {
      fail(error);
    }
  });

program
  .command('subscribe')
  .description('create or extend subscriber NAME: a queue that receives the transactions touching some tables of some sites')
  .requiredOption('-c, --config <file>', 'configuration file (YAML)')
  .requiredOption('-n, --name <name>', 'subscriber name; its queue is sitesync.subscriber.NAME')
  .requiredOption('-t, --tables <list>', 'schema.table list, comma-separated (added to those it already receives)')
  .option('--sites <list>', 'source sites, comma-separated (default: every configured site)')
  .action(async (opts: SubscriptionOptions & { config: string }) => {
    try {
      await subscribe(loadChecked(opts.config), opts, (line) => process.stdout.write(`${line}\n`));
      process.exit(0);
    } catch (error) {
      fail(error);
    }
  });

program
  .command('unsubscribe')
  .description('stop subscriber NAME receiving some tables (--tables), or delete it and its queue')
  .requiredOption('-c, --config <file>', 'configuration file (YAML)')
  .requiredOption('-n, --name <name>', 'subscriber name')
  .option('-t, --tables <list>', 'schema.table list to stop receiving; without it the queue is deleted')
  .option('--sites <list>', 'with --tables: only from these sites (default: every configured site)')
  .action(async (opts: SubscriptionOptions & { config: string }) => {
    try {
      await unsubscribe(loadChecked(opts.config), opts, (line) => process.stdout.write(`${line}\n`));
      process.exit(0);
    } catch (error) {
      fail(error);
    }
  });

program
  .command('replay')
  .description('re-apply transactions from the archive stream to site NAME (its `sitesync run` must be stopped)')
  .requiredOption('-c, --config <file>', 'configuration file (YAML)')
  .requiredOption('-s, --site <name>', 'the site to replay into')
  .requiredOption('--from <time|position>', 'where to start: an ISO 8601 time (UTC without an offset) or a source position (0/16B3748)')
  .option('--to <time|position>', 'where to stop, included (default: the end of the archive)')
  .option('--source <site>', 'replay only this source site (default: every site but --site; needed with a position)')
  .addHelpText(
    'after',
    `
Transactions the site already has are counted and left alone, so replaying what a site has changes
nothing, and a site restored from an older copy is brought level. A range that starts after what the
site holds stops with SITESYNC_ERR_GAP: replay from an earlier --from. The archive keeps
broker.archiveRetentionDays days (default 90). Ends with one line per source:
  replayed N transactions from SOURCE (M already there, K skipped: undecodable, untrusted or outside the tables), now at POSITION

Examples:
  sitesync replay --config sitesync.yml --site london --from 2024-05-01T09:00:00Z
  sitesync replay --config sitesync.yml --site london --source paris --from 0/16B3748 --to 0/17000A0`,
  )
  .action(async (opts: ReplayCommandOptions & { config: string }) => {
    let logger;
    try {
      const config = loadChecked(opts.config);
      const plan = planReplay(config, opts, CONNECTORS);
      logger = createLogger(config.log.level);
      const lines = await runReplay(config, CONNECTORS, plan, logger, (line) => process.stdout.write(`${line}\n`));
      for (const line of lines) process.stdout.write(`${line}\n`);
      exitAfterLogs(logger, 0);
    } catch (error) {
      if (!logger) fail(error);
      exitAfterLogs(logger, exitCodeOf(error), `sitesync: ${describeError(error)}\n`);
    }
  });

program
  .command('parked')
  .description("list a site's parked messages (with their reasons), send them back to be applied, or discard them")
  .requiredOption('-c, --config <file>', 'configuration file (YAML)')
  .requiredOption('-s, --site <name>', 'the site whose parking queue to look at')
  .option('--retry <id>', "send the parked message with this id (or 'all') back to the site's queue, to be applied as it is")
  .option('--discard <id>', "remove the parked message with this id (or 'all') for good")
  .action(async (opts: { config: string; site: string; retry?: string; discard?: string }) => {
    try {
      if (opts.retry && opts.discard) throw new SitesyncError('SITESYNC_ERR_CONFIG', 'give --retry or --discard, not both');
      const config = loadChecked(opts.config);
      const action = opts.retry ? { kind: 'retry' as const, id: opts.retry } : opts.discard ? { kind: 'discard' as const, id: opts.discard } : { kind: 'list' as const };
      await parkedCommand(config, opts.site, action, (line) => process.stdout.write(`${line}\n`));
      process.exit(0);
    } catch (error) {
      fail(error);
    }
  });

await program.parseAsync(process.argv);
