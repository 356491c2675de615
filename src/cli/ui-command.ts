/**
 * `sitesync ui`: the web console (src/console/) in a process of its own, until SIGINT or SIGTERM. It
 * listens on 127.0.0.1 unless told otherwise: it has no login, so any other address gets a one-line
 * warning. Values other than keys are shown only with --values, as `sitesync tail` does. main.ts only
 * declares the command.
 */
import type { Config } from '../config/config-schema.ts';
import type { ConnectorRegistry } from '../connector.ts';
import { SitesyncError } from '../errors.ts';
import { startConsoleServer, type ConsoleServer } from '../console/console-server.ts';
import { isLoopback } from '../console/request-guard.ts';

export interface UiCommandOptions {
  readonly port?: number;
  readonly host?: string;
  readonly values?: boolean;
}

export const DEFAULT_UI_PORT = 8099;
export const DEFAULT_UI_HOST = '127.0.0.1';

export interface UiOutput {
  /** Where it listens, and how values are shown (stdout). */
  print(line: string): void;
  /** The warning of an address other than loopback, and failures nobody asked for (stderr). */
  problem(line: string): void;
}

/** Starts the console; resolves once it listens. */
export async function uiCommand(config: Config, connectors: ConnectorRegistry, options: UiCommandOptions, out: UiOutput): Promise<ConsoleServer> {
  const host = (options.host ?? DEFAULT_UI_HOST).trim();
  const port = options.port ?? DEFAULT_UI_PORT;
  if (host === '') throw new SitesyncError('SITESYNC_ERR_CONFIG', `--host is empty; give an address to listen on (${DEFAULT_UI_HOST}, the default, is reachable from this machine only)`);
  if (!isLoopback(host)) out.problem(`sitesync ui: warning: listening on ${host}: the console has no authentication, so anyone who can reach ${host}:${port} can read the stream and retry or discard parked messages; put it behind an authenticating proxy or use ${DEFAULT_UI_HOST}`);
  let server: ConsoleServer;
  try {
    server = await startConsoleServer({ config, connectors, values: options.values ?? false, host, port, log: out.problem });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') throw new SitesyncError('SITESYNC_ERR_CONFIG', `port ${port} on ${host} is in use; pick another with --port`);
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN') throw new SitesyncError('SITESYNC_ERR_CONFIG', `--host ${JSON.stringify(host)} is not an address of this machine; give one (${DEFAULT_UI_HOST}, the default)`);
    if (code === 'EACCES') throw new SitesyncError('SITESYNC_ERR_CONFIG', `port ${port} needs privileges this user lacks; pick one above 1023 with --port`);
    throw error;
  }
  out.print(`sitesync ui: console at ${server.url} (${options.values ? 'every value shown: --values' : 'keys and column names only; --values shows the values'}); Ctrl-C stops it`);
  return server;
}

/** `sitesync ui` as the CLI runs it: serves until SIGINT or SIGTERM, then closes (open feeds end first). */
export async function runUiCommand(config: Config, connectors: ConnectorRegistry, options: UiCommandOptions, out: UiOutput): Promise<void> {
  const server = await uiCommand(config, connectors, options, out);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  await server.close();
}
