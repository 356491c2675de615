/**
 * `sitesync run`: one site's pipeline until SIGTERM or SIGINT, and on SIGHUP the configuration file read
 * again, without the process restarting (a site joining a running mesh: every process must trust its broker
 * user and send to it).
 *
 * A reload reads and checks the file as at start. If it is invalid or no longer names this site, one error
 * line says so and the running pipeline goes on as it was. Otherwise one info line names the sites, the
 * pipeline finishes what is in flight (as at SIGTERM), and a new one starts with the new configuration and
 * the same PipelineEvents, so the metrics server goes on serving the same registry (the series of a source
 * that joined exist from then on) and /readyz says not ready until the new pipeline streams and consumes.
 * The log level of the new configuration applies from then on; the log format and the metrics port stay
 * the ones of the start.
 *
 * SIGTERM or SIGINT, before, during or after a reload, stops cleanly (a reload waiting for the pipeline to
 * stop is dropped); a second one exits at once. A fatal error of any pipeline ends the process as before.
 */
import type { Config } from '../config/config-schema.ts';
import { siteConfig } from '../config/config-schema.ts';
import type { ConnectorRegistry } from '../connector.ts';
import { describeError, SitesyncError } from '../errors.ts';
import { ConflictSummary } from '../observability/conflict-summary.ts';
import { PipelineHealth } from '../observability/health.ts';
import { createLogger, type LogFormat, type Logger } from '../observability/logger.ts';
import { createMetrics, serveMetrics } from '../observability/metrics.ts';
import { pipelineScope } from '../observability/pipeline-events.ts';
import { createPipeline, type Pipeline } from '../pipeline.ts';

export interface RunCommandOptions {
  readonly config: string;
  readonly site: string;
  readonly metricsPort?: number;
  /** Overrides log.format. */
  readonly logFormat?: LogFormat;
}

/** What the composition root (main.ts) hands to `run`. */
export interface RunCommandDeps {
  /** Reads and checks the configuration file (every site's database checked by its connector). */
  load(file: string): Config;
  readonly connectors: ConnectorRegistry;
  /** One line on stderr and the error's exit status: a failure before anything runs. */
  fail(error: unknown): never;
  /** Exits with `code` once the logs had their chance to be written, then writes `line` on stderr. */
  exitAfterLogs(log: Logger, code: number, line?: string): void;
  exitCodeOf(error: unknown): number;
}

const EXIT_FAILURE = 1;

/**
 * The configuration, logger and first pipeline, with the metrics server (/metrics, /healthz, /readyz)
 * started when a port is set.
 */
async function start(opts: RunCommandOptions, deps: RunCommandDeps): Promise<{ config: Config; log: Logger; pipeline: Pipeline; metricsPort: number }> {
  const config = deps.load(opts.config);
  const log = createLogger(config.log.level, undefined, opts.logFormat ?? config.log.format);
  const pipeline = createPipeline(config, opts.site, log, deps.connectors);
  const metricsPort = opts.metricsPort ?? config.metrics.port;
  if (metricsPort > 0) {
    const scope = pipelineScope(config, opts.site);
    const metrics = createMetrics(pipeline.events, scope);
    const health = new PipelineHealth(pipeline.events, scope);
    let server;
    try {
      server = await serveMetrics(metrics, metricsPort, undefined, health);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EADDRINUSE' || code === 'EACCES') {
        throw new SitesyncError('SITESYNC_ERR_CONFIG', `metrics port ${metricsPort} ${code === 'EADDRINUSE' ? 'is already in use (another sitesync run?)' : 'may not be opened by this user'}; choose another with --metrics-port or metrics.port`);
      }
      throw error;
    }
    server.unref();
    log.info({ port: metricsPort }, 'metrics on /metrics, health on /healthz and /readyz');
  }
  return { config, log, pipeline, metricsPort };
}

export async function runCommand(opts: RunCommandOptions, deps: RunCommandDeps): Promise<void> {
  // A SIGHUP while starting (the file may have changed after it was read) is kept for when the handlers are
  // in place, rather than ending the process as SIGHUP does by default.
  let hangupWhileStarting = false;
  const early = (): void => {
    hangupWhileStarting = true;
  };
  process.on('SIGHUP', early);
  let first;
  try {
    first = await start(opts, deps);
  } catch (error) {
    deps.fail(error);
  }
  process.off('SIGHUP', early);
  const { log, metricsPort } = first;
  const site = opts.site;
  const events = first.pipeline.events;
  /** The configuration the current pipeline runs with. */
  let running: Config = first.config;
  let current: Pipeline = first.pipeline;
  /** A valid configuration read at SIGHUP, waiting for the current pipeline to stop. */
  let pending: Config | null = null;
  let stopping = false;
  let signals = 0;

  const onSignal = (signal: string): void => {
    if (++signals > 1) {
      log.warn('second signal: exiting now; what was in flight is sent again at the next start');
      deps.exitAfterLogs(log, EXIT_FAILURE);
      return;
    }
    log.info({ signal }, 'stopping: finishing what is in flight');
    stopping = true;
    pending = null;
    current.stop();
  };
  const onHangup = (): void => {
    if (stopping) {
      log.warn('SIGHUP ignored: stopping');
      return;
    }
    let next: Config;
    try {
      next = deps.load(opts.config);
      if (!siteConfig(next, site)) {
        throw new SitesyncError('SITESYNC_ERR_CONFIG', `${opts.config} no longer has site ${JSON.stringify(site)} (sites: ${Object.keys(next.sites).join(', ')}), the site this process serves`);
      }
    } catch (error) {
      log.error(`configuration not reloaded, the running configuration is kept: ${describeError(error)}`);
      return;
    }
    pending = next;
    const sites = Object.keys(next.sites);
    log.info(
      { sites },
      `configuration reloaded: sites ${sites.join(', ')}; the pipeline restarts with it once what is in flight is finished (its log level applies; the metrics port ${metricsPort > 0 ? `stays ${metricsPort}` : 'stays off'} until sitesync restarts)`,
    );
    current.stop();
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGHUP', onHangup);
  log.info({ site }, 'sitesync running');
  if (hangupWhileStarting) onHangup();
  // Conflicts resolved, one info line per 10 s in which any were (each one's detail is at debug).
  const conflicts = new ConflictSummary({ events, logger: log.child({ site, part: 'apply' }) }).start();

  const fatal = (error: unknown): void => {
    conflicts.stop();
    deps.exitAfterLogs(log, deps.exitCodeOf(error), `sitesync: ${describeError(error)}\n`);
  };
  for (;;) {
    try {
      // Health and metrics start over with each pipeline: not ready until its parts report again.
      events.emit('pipeline:starting', pipelineScope(running, site));
      await current.run();
    } catch (error) {
      fatal(error);
      return;
    }
    const next = pending as Config | null; // set by onHangup, which TypeScript does not see
    pending = null;
    if (stopping || next === null) {
      conflicts.stop();
      log.info('stopped cleanly');
      deps.exitAfterLogs(log, 0);
      return;
    }
    // Built synchronously, right after the previous one stopped: a signal from now on stops the new one.
    try {
      log.level = next.log.level;
      current = createPipeline(next, site, log, deps.connectors, events);
      running = next;
    } catch (error) {
      log.error(`configuration not reloaded, the running configuration is kept: ${describeError(error)}`);
      try {
        log.level = running.log.level;
        current = createPipeline(running, site, log, deps.connectors, events);
      } catch (again) {
        fatal(again);
        return;
      }
    }
    log.debug({ sites: Object.keys(running.sites) }, 'pipeline restarted');
  }
}
