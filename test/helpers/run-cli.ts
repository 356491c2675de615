/**
 * `sitesync …` run as a user runs it (node bin/sitesync.js): its exit code and output, whatever the code,
 * so that a test can assert on a refusal's one line as well as on a success.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const CLI = join(new URL('../../', import.meta.url).pathname, 'bin/sitesync.js');

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface CliOptions {
  /** Added to this process's environment. */
  readonly env?: Readonly<Record<string, string>>;
  readonly timeoutMs?: number;
}

export async function runSitesync(args: readonly string[], options: CliOptions = {}): Promise<CliResult> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], {
      env: { ...process.env, ...options.env },
      timeout: options.timeoutMs ?? 120_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number | string; stdout?: string; stderr?: string; message: string };
    // A run that could not start or was killed by the timeout has no exit code: say so in stderr.
    if (typeof e.code !== 'number') return { code: -1, stdout: e.stdout ?? '', stderr: `${e.stderr ?? ''}\n${e.message}` };
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}
