/**
 * Processes the benchmark starts: real `sitesync run` processes (bin/sitesync.js, as users start them) and
 * PostgreSQL's tools (pg_recvlogical, pgbench). Every child is remembered so that an interrupted run ends
 * them — by their own pid, nothing else.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const ROOT = new URL('../../', import.meta.url).pathname;
const KEEP_LINES = 400;

const children = new Set<ChildProcess>();

/** Ends every child still running (SIGKILL, by pid); for an interrupted run. */
export function killAllChildren(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}

function track(child: ChildProcess): void {
  children.add(child);
  child.once('exit', () => children.delete(child));
}

export interface SitesyncProcessOptions {
  readonly site: string;
  readonly configFile: string;
  /**
   * Write V8 CPU profiles under this folder when the process exits (node --cpu-prof), in a folder of each
   * start's own: node writes one file per thread (tsx's module loader runs on a thread of its own), named
   * after the pid and thread, so a fixed name would let one thread's profile overwrite the other's.
   */
  readonly cpuProfileDir?: string;
  /** Name of the start's folder (the time is added, as a process may be started again). */
  readonly cpuProfileName?: string;
}

/** One `sitesync run --site NAME`. */
export class SitesyncProcess {
  private child: ChildProcess | null = null;
  private lines: string[] = [];
  private exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  private stopping = false;
  /** performance.now() when it was spawned, and when it logged that it streams and applies. */
  startedAt = 0;
  readyAt: number | null = null;
  private exited: Promise<void> = Promise.resolve();

  constructor(private readonly options: SitesyncProcessOptions) {}

  get site(): string {
    return this.options.site;
  }

  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  get running(): boolean {
    return this.child !== null && this.exit === null;
  }

  /** Set when the process ended without being asked to. */
  get crashed(): string | null {
    if (this.exit === null || this.stopping) return null;
    return `sitesync run --site ${this.site} exited by itself (code ${this.exit.code}, signal ${this.exit.signal}): ${this.tail(8)}`;
  }

  start(): void {
    if (this.running) throw new Error(`${this.site} is already running`);
    const profile = this.options.cpuProfileDir
      ? ['--cpu-prof', '--cpu-prof-dir', join(this.options.cpuProfileDir, `${this.options.cpuProfileName ?? this.site}-${Date.now()}`)]
      : [];
    const child = spawn(process.execPath, [...profile, join(ROOT, 'bin/sitesync.js'), 'run', '--config', this.options.configFile, '--site', this.site], {
      cwd: ROOT,
      env: { ...process.env, SITESYNC_LOG__LEVEL: 'info' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    track(child);
    this.child = child;
    this.exit = null;
    this.stopping = false;
    this.readyAt = null;
    this.lines = [];
    this.startedAt = performance.now();
    let partial = '';
    let capturing = false;
    let applying = false;
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      const parts = (partial + chunk).split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) {
        // A site with capture off (it only receives) says so instead.
        if (line.includes('"msg":"capture started"') || line.includes('"msg":"capture off:')) capturing = true;
        if (line.includes('"msg":"applying"')) applying = true;
        if (capturing && applying && this.readyAt === null) this.readyAt = performance.now();
      }
      this.lines.push(...parts);
      if (this.lines.length > KEEP_LINES * 2) this.lines = this.lines.slice(-KEEP_LINES);
    });
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve();
      }),
    );
  }

  /** Waits until the process streams from its slot and consumes its queue. */
  async ready(timeoutMs = 60_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (this.readyAt === null) {
      if (!this.running) throw new Error(this.crashed ?? `${this.site} exited before it was ready`);
      if (performance.now() > deadline) throw new Error(`sitesync run --site ${this.site} not ready after ${timeoutMs / 1000} s: ${this.tail(8)}`);
      await sleep(50);
    }
  }

  /**
   * SIGTERM (sitesync finishes what is in flight and exits 0), SIGKILL if it takes longer than `graceMs`.
   * `problem` says what was not clean: killed by the signal itself (still starting, before sitesync's
   * handler was installed), an exit status other than 0, or no exit in time.
   */
  async stop(graceMs = 20_000): Promise<{ readonly clean: boolean; readonly problem: string | null }> {
    const child = this.child;
    if (!child) return { clean: true, problem: null };
    if (!this.running) return { clean: this.exit?.code === 0, problem: this.crashed };
    this.stopping = true;
    child.kill('SIGTERM');
    const inTime = await Promise.race([this.exited.then(() => true), sleep(graceMs).then(() => false)]);
    if (!inTime) {
      child.kill('SIGKILL');
      await this.exited;
      return { clean: false, problem: `${this.site} did not exit within ${graceMs / 1000} s of SIGTERM and was killed` };
    }
    const exit = this.exit!;
    if (exit.code === 0) return { clean: true, problem: null };
    if (exit.signal) return { clean: false, problem: `${this.site} was ended by ${exit.signal} itself (still starting: sitesync had not installed its handler yet)` };
    return { clean: false, problem: `${this.site} exited with status ${exit.code} after SIGTERM: ${this.tail(3)}` };
  }

  /** The last lines of its log that are not routine (level above info), for error reports. */
  tail(n: number): string {
    const lines = this.lines.filter((l) => !l.includes('"level":30'));
    return lines.slice(-n).join('\n') || '(no warnings or errors logged)';
  }
}

export interface ToolResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** From spawn to exit, in seconds. */
  readonly seconds: number;
  readonly timedOut: boolean;
}

/** Runs a program to its end (or kills it past `timeoutMs`), timing it from spawn to exit. */
export function runTool(command: string, args: readonly string[], timeoutMs: number): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    track(child);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, seconds: (performance.now() - started) / 1000, timedOut });
    });
  });
}
