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
import { VERSION } from '../observability/version.ts';
import { runCommand, type RunCommandOptions } from './run-command.ts';
import { collectStatus, formatStatus, unreachableServices } from './status-command.ts';
import { setupCommand } from './setup-command.ts';
import { planReplay, runReplay, type ReplayCommandOptions } from './replay-command.ts';
import { subscribe, unsubscribe, type SubscriptionOptions } from './subscribe-command.ts';
import { parkedCommand, showParked } from './parked-command.ts';
import { planTail, runTail, type TailCommandOptions } from './tail-command.ts';
import { planTrace, runTrace } from './trace-command.ts';
import { runUiCommand, type UiCommandOptions } from './ui-command.ts';
import { removeSite } from './remove-site-command.ts';
import { formatSnapshot, startSnapshot, waitForSnapshot, withSnapshotControl } from './snapshot-command.ts';
import { cancelJoin, startJoin, waitForJoin } from './join-command.ts';
import { planVerify, runVerify, type VerifyCommandOptions } from './verify-command.ts';
import { verifyAndRepair } from './repair-command.ts';
import { queryCommand } from './query-command.ts';
import type { TableComparison } from '../verify/compare-tables.ts';
import { allIdentical, formatComparison, formatSummary, reportJson } from '../verify/verify-report.ts';

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
  .version(VERSION, '-V, --version', 'print the sitesync version')
  .showHelpAfterError()
  .configureOutput({ outputError: (text, write) => write(`sitesync: ${text.replace(/^error: /, '')}`) })
  .exitOverride((error) => process.exit(error.exitCode === 0 ? 0 : EXIT_CONFIG));

program
  .command('run')
  .description('capture site NAME and apply every other site into it, until SIGTERM or SIGINT')
  .requiredOption('-c, --config <file>', 'configuration file (YAML)')
  .requiredOption('-s, --site <name>', 'the site this process serves')
  .option('--metrics-port <port>', 'serve Prometheus metrics on this port (overrides metrics.port)', port)
  .option('--log-format <format>', 'json (the default: one JSON object a line) or pretty (readable lines for a terminal); overrides log.format', (v: string) => {
    if (v !== 'json' && v !== 'pretty') throw new InvalidArgumentError('json or pretty');
    return v;
  })
  .action((opts: RunCommandOptions) => runCommand(opts, { load: loadChecked, connectors: CONNECTORS, fail, exitAfterLogs, exitCodeOf }));

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
  .command('snapshot')
  .description("send the rows a table holds at a site to the other sites through the site's stream, while everyone keeps writing (or list / cancel the site's snapshots)")
  .requiredOption('-c, --config <file>', 'configuration file (YAML)')
  .requiredOption('-s, --site <name>', 'the site whose rows are sent (its `sitesync run` reads them)')
  .option('-t, --table <schema.table>', 'the table to send')
  .option('--to <sites>', 'only these sites write the rows, comma-separated (default: every site that applies this one)')
  .option('--chunk-rows <n>', 'rows read per chunk (default 1024)', (v) => Number(v))
  .option('--wait', 'wait until every chunk has been read, showing progress')
  .option('--list', "list the site's snapshots with their progress")
  .option('--cancel <id>', 'stop a running snapshot')
  .addHelpText(
    'after',
    `
The rows travel as snapshot reads in the site's own commit order: each site writes them whatever it holds,
and every change made meanwhile is applied on top, so no site is left with a stale row. A kill of any
process resumes from the chunk that was not confirmed. The table needs a primary key.

Examples:
  sitesync snapshot --config sitesync.yml --site paris --table public.accounts --wait
  sitesync snapshot --config sitesync.yml --site paris --table public.accounts --to madrid
  sitesync snapshot --config sitesync.yml --site paris --list`,
  )
  .action(async (opts: { config: string; site: string; table?: string; to?: string; chunkRows?: number; wait?: boolean; list?: boolean; cancel?: string }) => {
    try {
      const config = loadChecked(opts.config);
      const out = (line: string): boolean => process.stdout.write(`${line}\n`);
      if (opts.list) {
        const all = await withSnapshotControl(config, CONNECTORS, opts.site, (control) => control.list());
        if (all.length === 0) out(`no snapshots at ${opts.site}`);
        for (const status of all) out(formatSnapshot(status));
        process.exit(0);
      }
      if (opts.cancel) {
        const id = opts.cancel;
        const cancelled = await withSnapshotControl(config, CONNECTORS, opts.site, (control) => control.cancel(id));
        if (!cancelled) throw new SitesyncError('SITESYNC_ERR_CONFIG', `no running snapshot ${id} at ${opts.site}; see sitesync snapshot --site ${opts.site} --list`);
        out(`cancelled ${id}: chunks already sent stay applied; no more are read`);
        process.exit(0);
      }
      if (!opts.table) throw new SitesyncError('SITESYNC_ERR_CONFIG', 'give --table schema.table (or --list, or --cancel ID)');
      const targets = opts.to ? opts.to.split(',').map((s) => s.trim()).filter((s) => s.length > 0) : null;
      const { id, estimatedRows } = await startSnapshot(config, CONNECTORS, { site: opts.site, table: opts.table, targets, chunkRows: opts.chunkRows });
      out(`snapshot ${id} of ${opts.table} at ${opts.site} started${estimatedRows > 0 ? ` (about ${estimatedRows} rows)` : ''}; the site's running sitesync reads it chunk by chunk`);
      if (opts.wait) {
        const done = await withSnapshotControl(config, CONNECTORS, opts.site, (control) => waitForSnapshot(control, id, (status) => out(formatSnapshot(status))));
        if (done.state !== 'done') throw new SitesyncError('SITESYNC_ERR_CONFIG', `snapshot ${id} was ${done.state}`);
      }
      process.exit(0);
    } catch (error) {
      fail(error);
    }
  });

program
  .command('join')
  .description('fill a new site from a running one while every site keeps writing, then have it stream like the others')
  .requiredOption('-c, --config <file>', 'configuration file (YAML)')
  .requiredOption('-s, --site <name>', 'the joining site (configured, set up, its tables empty, its sitesync run not started yet)')
  .requiredOption('--from <site>', 'the donor: a running site whose rows the joining site takes')
  .option('--tables <list>', 'schema.table,… (default: the tables both sites list; when neither lists any, every table with a primary key both databases hold)')
  .option('--chunk-rows <n>', 'rows read per chunk (default 1024)', (v) => Number(v))
  .option('--wait', 'wait until the join is done, showing progress')
  .option('--status', "show the join's progress until it is done")
  .option('--cancel', 'end an open join (and its snapshots)')
  .addHelpText(
    'after',
    `
Before: add the site to the configuration everywhere and send SIGHUP to every running sitesync run (they
then accept and send to it without restarting), and run sitesync setup for it. After this command, start
sitesync run --site NAME. The donor applies nothing from other sites while its rows are read (its own
writes, and every other site's, go on); the joining site then takes every other site from the archive.

Example:
  sitesync join --config sitesync.yml --site madrid --from paris --wait`,
  )
  .action(async (opts: { config: string; site: string; from: string; tables?: string; chunkRows?: number; wait?: boolean; status?: boolean; cancel?: boolean }) => {
    try {
      const config = loadChecked(opts.config);
      const out = (line: string): boolean => process.stdout.write(`${line}\n`);
      if (opts.cancel) {
        await cancelJoin(config, CONNECTORS, opts.site, opts.from, out);
        process.exit(0);
      }
      if (!opts.status) {
        const tables = opts.tables ? opts.tables.split(',').map((t) => t.trim()).filter((t) => t.length > 0) : undefined;
        await startJoin(config, CONNECTORS, { site: opts.site, from: opts.from, tables, chunkRows: opts.chunkRows }, createLogger('warn'), out);
      }
      if (opts.wait || opts.status) await waitForJoin(config, CONNECTORS, opts.site, opts.from, out);
      process.exit(0);
    } catch (error) {
      fail(error);
    }
  });

program
  .command('parked')
  .description("list a site's parked messages (with their reasons), show one decoded, send them back to be applied, or discard them")
  .requiredOption('-c, --config <file>', 'configuration file (YAML)')
  .requiredOption('-s, --site <name>', 'the site whose parking queue to look at')
  .option('--show <id>', 'print this parked message decoded, values included, leaving it parked')
  .option('--pretty', 'with --show: its changes as an aligned table')
  .option('--retry <id>', "send the parked message with this id (or 'all') back to the site's queue, to be applied as it is")
  .option('--discard <id>', "remove the parked message with this id (or 'all') for good")
  .action(async (opts: { config: string; site: string; show?: string; pretty?: boolean; retry?: string; discard?: string }) => {
    try {
      if ([opts.show, opts.retry, opts.discard].filter((o) => o !== undefined).length > 1) throw new SitesyncError('SITESYNC_ERR_CONFIG', 'give one of --show, --retry and --discard');
      const config = loadChecked(opts.config);
      const print = (line: string): void => void process.stdout.write(`${line}\n`);
      if (opts.show !== undefined) await showParked(config, CONNECTORS, opts.site, opts.show, { pretty: opts.pretty }, print);
      else await parkedCommand(config, opts.site, opts.retry ? { kind: 'retry', id: opts.retry } : opts.discard ? { kind: 'discard', id: opts.discard } : { kind: 'list' }, print);
      process.exit(0);
    } catch (error) {
      fail(error);
    }
  });

program
  .command('tail')
  .description("print the archive stream's changes, one JSON line each: key and column names; other values only with --values (they may be personal data)")
  .requiredOption('-c, --config <file>', 'configuration file (YAML)')
  .option('--from <start>', 'first, last (default), an ISO 8601 time (UTC without offset), or site:position (a transaction id)')
  .option('-f, --follow', 'then print what is archived next, until Ctrl-C')
  .option('-s, --site <sites>', 'only these sites, comma-separated')
  .option('-t, --table <tables>', 'only these schema.table, comma-separated')
  .option('--op <ops>', 'only these of insert,update,delete,truncate,read')
  .option('--key <key>', 'only this row: its key as JSON (\'{"id": 42}\') or its value (42)')
  .option('--transaction <id>', 'only this transaction (site:position)')
  .option('--limit <n>', 'stop after N changes')
  .option('--pretty', 'an aligned table instead of JSON lines')
  .option('--values', 'show every value, not only the key (values may be personal data)')
  .action(async (opts: TailCommandOptions & { config: string }) => {
    try {
      const config = loadChecked(opts.config);
      const plan = planTail(config, CONNECTORS, opts);
      const abort = new AbortController();
      process.once('SIGINT', () => abort.abort());
      process.once('SIGTERM', () => abort.abort());
      process.stdout.on('error', (e: NodeJS.ErrnoException) => (e.code === 'EPIPE' ? process.exit(0) : fail(e)));
      await runTail(config, CONNECTORS, plan, { print: (l) => void process.stdout.write(`${l}\n`), problem: (l) => void process.stderr.write(`sitesync: ${l}\n`) }, abort.signal);
      process.exit(0);
    } catch (error) {
      fail(error);
    }
  });

program
  .command('trace')
  .description('find a transaction (or those that touched a row) in the archive; say for every other site: applied, lost a conflict, queued, parked, not arrived')
  .requiredOption('-c, --config <file>', 'configuration file (YAML)')
  .argument('[transaction]', 'a transaction id as tail prints it (paris:0/16B3748)')
  .option('-t, --table <schema.table>', "with --key: the row's table")
  .option('--key <key>', 'with --table: the row\'s key as JSON (\'{"id": 42}\') or its value')
  .option('--limit <n>', 'with --key: the latest N transactions (default 10)')
  .action(async (transaction: string | undefined, opts: { config: string; table?: string; key?: string; limit?: string }) => {
    try {
      const config = loadChecked(opts.config);
      await runTrace(config, CONNECTORS, planTrace(config, CONNECTORS, { transaction, table: opts.table, key: opts.key, limit: opts.limit }), (l) => void process.stdout.write(`${l}\n`));
      process.exit(0);
    } catch (error) {
      fail(error); // not in the archive: one line, exit 1
    }
  });

program
  .command('ui')
  .description('serve the web console: sites, a live feed of the archive, parked messages (retry, discard), recent conflicts, trace; keys and column names only unless --values')
  .requiredOption('-c, --config <file>', 'configuration file (YAML)')
  .option('--port <port>', 'port to listen on (default 8099)', port)
  .option('--host <address>', 'address to listen on (default 127.0.0.1: this machine only; the console has no login)')
  .option('--values', 'show every value, not only the key (values may be personal data)')
  .action(async (opts: UiCommandOptions & { config: string }) => {
    try {
      const out = { print: (line: string) => void process.stdout.write(`${line}\n`), problem: (line: string) => void process.stderr.write(`${line}\n`) };
      await runUiCommand(loadChecked(opts.config), CONNECTORS, opts, out);
      process.exit(0);
    } catch (error) {
      fail(error);
    }
  });

program
  .command('query')
  .description("run one read-only SQL statement at a site's analytics store (DuckDB), through its running process if there is one")
  .requiredOption('-c, --config <file>', 'configuration file (YAML)')
  .requiredOption('-s, --site <name>', 'the site whose store to query')
  .argument('<sql>', 'one SQL statement; it runs in a read-only transaction')
  .option('--json', 'one JSON object per row instead of a table')
  .option('--max-rows <n>', 'rows shown at most', (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('a whole number of rows, at least 1');
    return n;
  }, 1000)
  .action(async (sql: string, opts: { config: string; site: string; json?: boolean; maxRows: number }) => {
    try {
      await queryCommand(loadChecked(opts.config), CONNECTORS, { site: opts.site, sql, maxRows: opts.maxRows, format: opts.json ? 'json' : 'table' }, (line) => process.stdout.write(`${line}\n`));
      process.exit(0);
    } catch (error) {
      fail(error);
    }
  });

program
  .command('verify')
  .description('compare tables at two or more sites while writes go on; print the keys that differ, exit 1 if any')
  .requiredOption('-c, --config <file>', 'configuration file (YAML)')
  .option('--sites <list>', 'sites to compare, comma-separated (default: every site whose database verify can read)')
  .option('--reference <site>', 'the site the others are compared with (default: the first of --sites)')
  .option('-t, --tables <list>', "schema.table list, comma-separated (default: the reference's sites.<name>.tables)")
  .option('--max-keys <n>', 'differing keys listed per table; all are counted (default 100)')
  .option('--json', 'print one JSON document instead of text')
  .option('--repair', "send the reference's rows for every differing key to the site that differs, through the reference's stream, then verify again")
  .option('--repair-timeout <seconds>', 'with --repair: how long to wait for the sites to agree (default 120)', (v) => Number(v))
  .addHelpText(
    'after',
    `
Each site is read at one point in time (a repeatable-read snapshot) with its monitoring URL (else capture,
else apply). Where every site's database can checksum key ranges itself, verify compares checksums and reads
only the ranges that differ; otherwise it reads every row of each site in key order. Only keys and column
names are printed, never other values. A row being replicated while verify reads may show as a difference:
run it again to tell drift from rows in flight. Exit status: 0 identical, 1 differences (or a table that
could not be compared), 2 a configuration error.

  public.accounts: 10000 rows, identical
  public.orders: 2 differences: 1 missing at london, 1 changed at london (status)
    missing at london: id=42
    changed at london: id=57 (status)

Examples:
  sitesync verify --config sitesync.yml --sites paris,london --tables public.accounts
  sitesync verify --config sitesync.yml --sites paris,london,madrid --reference london --json`,
  )
  .action(async (opts: VerifyCommandOptions & { config: string; json?: boolean; repair?: boolean; repairTimeout?: number }) => {
    try {
      const config = loadChecked(opts.config);
      const plan = planVerify(config, opts, CONNECTORS);
      const print = (line: string): void => void process.stdout.write(`${line}\n`);
      const onTable = (table: TableComparison): void => {
        if (!opts.json) formatComparison(table).forEach(print);
      };
      if (opts.repair) {
        const timeout = opts.repairTimeout ?? 120;
        if (!(timeout > 0)) throw new SitesyncError('SITESYNC_ERR_CONFIG', '--repair-timeout: give a number of seconds above 0');
        const { first, last } = await verifyAndRepair(config, CONNECTORS, plan, opts.json ? () => undefined : print, onTable, timeout);
        if (opts.json) print(JSON.stringify({ before: reportJson(first), after: last ? reportJson(last) : null }, null, 2));
        else if (last === null) print(formatSummary(first));
        else {
          last.tables.forEach((t) => formatComparison(t).forEach((line) => print(`after repair: ${line}`)));
          print(allIdentical(last) ? 'repaired: the sites agree' : `not repaired within ${timeout} s: ${formatSummary(last)}`);
        }
        process.exit(allIdentical(last ?? first) ? 0 : EXIT_FAILURE);
      }
      const report = await runVerify(config, CONNECTORS, plan, onTable);
      if (opts.json) print(JSON.stringify(reportJson(report), null, 2));
      else print(formatSummary(report));
      process.exit(allIdentical(report) ? 0 : EXIT_FAILURE);
    } catch (error) {
      fail(error);
    }
  });

program
  .command('remove-site')
  .description("remove site NAME (stopped, still in the configuration): drop its slot, origins, progress rows, queues and broker user at every site and on the broker")
  .argument('<name>', 'the site to remove, as the configuration names it')
  .requiredOption('-c, --config <file>', 'configuration file (YAML) that still lists NAME')
  .option('--management-url <url>', "RabbitMQ's management API with an administrator's credentials (http://admin:secret@host:15672/): delete NAME's broker user; without it, the rabbitmqctl command is printed")
  .option('--database-gone', "NAME's database is gone for good: touch nothing there, forget it everywhere else")
  .addHelpText(
    'after',
    `
Refuses while NAME's "sitesync run" is connected (its capture active, or a consumer on its queue). Each step
is one line, "dropped …" or "already gone: …", so running it twice is safe; a step that cannot be done is one
line on stderr with its fix, and the command exits 1. Then remove NAME from the configuration file; the
other sites' processes need no restart.

Example:
  sitesync remove-site madrid --config sitesync.yml --management-url http://admin:…@rabbit:15672/`,
  )
  .action(async (name: string, opts: { config: string; managementUrl?: string; databaseGone?: boolean }) => {
    try {
      const out = { print: (line: string) => void process.stdout.write(`${line}\n`), problem: (line: string) => void process.stderr.write(`sitesync: ${line}\n`) };
      const problems = await removeSite(loadChecked(opts.config), name, { connectors: CONNECTORS, managementUrl: opts.managementUrl, databaseGone: opts.databaseGone }, out);
      if (problems > 0) out.problem(`${problems} step${problems === 1 ? '' : 's'} not done (above, each with its fix); run remove-site again once fixed: what is done says "already gone"`);
      process.exit(problems > 0 ? EXIT_FAILURE : 0);
    } catch (error) {
      fail(error);
    }
  });

await program.parseAsync(process.argv);
