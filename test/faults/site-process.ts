/**
 * One `sitesync run` process of the fault suite: started, killed, started again, and its output kept
 * (the last lines, for the report when something goes wrong).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const ROOT = new URL('../../', import.meta.url).pathname;
const KEEP_LINES = 200;

export class SiteProcess {
  private child: ChildProcess | null = null;
  private lines: string[] = [];
  private killing = false;
  starts = 0;
  /** Exits nobody asked for, with what the process said last. */
  readonly unexpectedExits: string[] = [];

  constructor(
    readonly site: string,
    private readonly configFile: string,
  ) {}

  start(): void {
    const child = spawn(process.execPath, [join(ROOT, 'bin/sitesync.js'), 'run', '--config', this.configFile, '--site', this.site], {
      cwd: ROOT,
      env: { ...process.env, SITESYNC_LOG__LEVEL: process.env.TEST_SITESYNC_LOG ?? 'info' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child.stderr!.setEncoding('utf8');
    let partial = '';
    child.stderr!.on('data', (chunk: string) => {
      const parts = (partial + chunk).split('\n');
      partial = parts.pop() ?? '';
      this.lines.push(...parts);
      if (this.lines.length > KEEP_LINES * 2) this.lines = this.lines.slice(-KEEP_LINES);
    });
    child.once('exit', (code, signal) => {
      if (!this.killing) this.unexpectedExits.push(`${this.site} exited by itself (code ${code}, signal ${signal}):\n${this.tail(10)}`);
    });
    this.child = child;
    this.starts++;
  }

  get running(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Waits until the process streams and applies (after a start). */
  async ready(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const mark = this.starts;
    while (Date.now() < deadline) {
      const text = this.lines.join('\n');
      if (mark === this.starts && text.lastIndexOf('"capture started"') >= 0 && text.lastIndexOf('"applying"') >= 0) return;
      if (!this.running) throw new Error(`${this.site} exited:\n${this.tail(20)}`);
      await sleep(100);
    }
    throw new Error(`${this.site} not ready after ${timeoutMs} ms:\n${this.tail(20)}`);
  }

  async killAndRestart(): Promise<void> {
    await this.kill('SIGKILL');
    this.lines = [];
    this.start();
  }

  async kill(signal: NodeJS.Signals): Promise<number | null> {
    const child = this.child;
    if (!child || !this.running) return child?.exitCode ?? null;
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    this.killing = true;
    child.kill(signal);
    const code = await exited;
    this.killing = false;
    return code;
  }

  /** The last lines the process wrote: warnings and errors only, or `everything`. */
  tail(n: number, everything = false): string {
    return this.lines.filter((l) => everything || !l.includes('"level":30')).slice(-n).join('\n');
  }
}
