/**
 * Where the machine's CPU goes during a measurement: CPU seconds (user + system, from /proc/<pid>/stat)
 * of each sitesync process, of the PostgreSQL server (the postmaster, its live children, and the children
 * it has reaped), and of the RabbitMQ node. Wall time on a shared 2-core machine is noisy; CPU seconds
 * say which component to make cheaper, and they barely move with what else runs.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

const TICKS_PER_SECOND = 100; // CLK_TCK on Linux

interface ProcStat {
  readonly ppid: number;
  /** utime + stime, ticks. */
  readonly own: number;
  /** cutime + cstime: children that exited and were waited for, ticks. */
  readonly reaped: number;
}

function readStat(pid: number): ProcStat | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) may hold spaces and parentheses: fields are counted after its last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const n = (i: number): number => Number(fields[i - 3]);
  return { ppid: n(4), own: n(14) + n(15), reaped: n(16) + n(17) };
}

/** CPU seconds of one process (all its threads). */
export function processCpuSeconds(pid: number): number | null {
  const stat = readStat(pid);
  return stat ? stat.own / TICKS_PER_SECOND : null;
}

/**
 * CPU seconds of a PostgreSQL server by role: each live child under its process title without the client
 * address and activity (`walsender postgres site_a`, `postgres site_b`, `walwriter`), and the postmaster
 * itself with every child that has exited under `exited backends`.
 */
export function postgresCpuByRole(postmasterPid: number): Map<string, number> {
  const byRole = new Map<string, number>();
  const root = readStat(postmasterPid);
  if (!root) return byRole;
  const add = (role: string, ticks: number): void => {
    byRole.set(role, (byRole.get(role) ?? 0) + ticks / TICKS_PER_SECOND);
  };
  add('exited backends', root.own + root.reaped);
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    const stat = readStat(pid);
    if (!stat || stat.ppid !== postmasterPid) continue;
    let title = '';
    try {
      title = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
    } catch {
      continue;
    }
    add(title.replace(/^postgres:\s*/, '').replace(/\s+\d+\.\d+\.\d+\.\d+\(\d+\).*$/, ''), stat.own + stat.reaped);
  }
  return byRole;
}

/** The pid of the process listening on a local TCP port (the RabbitMQ node), or null. */
export function listenerPid(port: number): number | null {
  try {
    const out = execFileSync('ss', ['-ltnpH', `sport = :${port}`], { encoding: 'utf8' });
    const m = /pid=(\d+)/.exec(out);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** The postmaster's pid, from the first line of postmaster.pid in the server's data directory. */
export function postmasterPid(dataDirectory: string): number | null {
  try {
    const pid = Number(readFileSync(`${dataDirectory}/postmaster.pid`, 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/** The sum of a breakdown. */
export function total(used: ReadonlyMap<string, number>): number {
  return [...used.values()].reduce((a, b) => a + b, 0);
}

/** Readings of named CPU counters at two moments, and their difference. */
export class CpuMeter {
  private start = new Map<string, number>();

  constructor(private readonly sources: () => ReadonlyMap<string, number | null>) {}

  begin(): void {
    this.start = this.read();
  }

  /** CPU seconds used by each source since begin(); sources that vanished are left out. */
  end(): Map<string, number> {
    const used = new Map<string, number>();
    for (const [name, now] of this.read()) used.set(name, now - (this.start.get(name) ?? 0));
    return used;
  }

  private read(): Map<string, number> {
    const values = new Map<string, number>();
    for (const [name, value] of this.sources()) if (value !== null) values.set(name, value);
    return values;
  }
}

export function formatCpu(used: ReadonlyMap<string, number>): string {
  return `${[...used].filter(([, s]) => s >= 0.005).map(([name, s]) => `${name} ${s.toFixed(2)} s`).join(', ')} (total ${total(used).toFixed(2)} s)`;
}
