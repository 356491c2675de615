/**
 * Where the machine's CPU goes during a measurement: CPU seconds (user + system, from /proc/<pid>/stat)
 * of each sitesync process, of the PostgreSQL server (the postmaster, its live children, and the children
 * it has reaped), and of the RabbitMQ node. Wall time on a shared 2-core machine is noisy; CPU seconds
 * say which component to make cheaper, and they barely move with what else runs.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import type { BenchServer } from './server.ts';

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
 * CPU seconds of a PostgreSQL server's processes: each live child by pid, with its process title less the
 * client address and activity (`walsender postgres`, `postgres site_b`, `walwriter`); under pid 0, the
 * postmaster itself with every child it has reaped.
 */
function postgresProcesses(postmasterPid: number): Map<number, { role: string; seconds: number }> {
  const processes = new Map<number, { role: string; seconds: number }>();
  const root = readStat(postmasterPid);
  if (!root) return processes;
  processes.set(0, { role: 'exited backends', seconds: (root.own + root.reaped) / TICKS_PER_SECOND });
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
    const role = title.replace(/^postgres:\s*/, '').replace(/\s+\d+\.\d+\.\d+\.\d+\(\d+\).*$/, '');
    processes.set(pid, { role, seconds: (stat.own + stat.reaped) / TICKS_PER_SECOND });
  }
  return processes;
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

/**
 * CPU used between begin() and end(): by each named process (the sitesync processes, the RabbitMQ node)
 * and by each role of a PostgreSQL server's processes. A backend that exits in between moves its CPU into
 * the postmaster's count of reaped children; what it had used before begin() is taken out again there.
 */
export class CpuMeter {
  private named = new Map<string, number>();
  private postgres = new Map<number, { role: string; seconds: number }>();

  constructor(
    private readonly processes: () => ReadonlyMap<string, number | null>,
    private readonly postmasterPid: number | null,
  ) {}

  begin(): void {
    this.named = this.readNamed();
    this.postgres = this.postmasterPid === null ? new Map() : postgresProcesses(this.postmasterPid);
  }

  /**
   * `labels` names some PostgreSQL processes by pid instead of by title: walsenders all read `walsender
   * postgres`, so a caller passes the slot each one serves (see walsenderLabels).
   */
  end(labels: ReadonlyMap<number, string> = new Map()): Map<string, number> {
    const used = new Map<string, number>();
    for (const [name, now] of this.readNamed()) used.set(name, now - (this.named.get(name) ?? 0));
    if (this.postmasterPid === null) return used;
    const now = postgresProcesses(this.postmasterPid);
    const byRole = new Map<string, number>();
    const add = (role: string, seconds: number): void => {
      byRole.set(role, (byRole.get(role) ?? 0) + seconds);
    };
    for (const [pid, { role, seconds }] of now) add(labels.get(pid) ?? role, seconds - (this.postgres.get(pid)?.seconds ?? 0));
    for (const [pid, { seconds }] of this.postgres) if (pid !== 0 && !now.has(pid)) add('exited backends', -seconds);
    for (const [role, seconds] of byRole) used.set(`PostgreSQL ${role}`, seconds);
    return used;
  }

  private readNamed(): Map<string, number> {
    const values = new Map<string, number>();
    for (const [name, pid] of this.processes()) {
      const seconds = pid === null ? null : processCpuSeconds(pid);
      if (seconds !== null) values.set(name, seconds);
    }
    return values;
  }
}

/** The walsender of each active slot on `server`, by pid, labelled `walsender for slot <name>`. */
export async function walsenderLabels(server: Pick<BenchServer, 'query'>): Promise<Map<number, string>> {
  const rows = await server.query<{ active_pid: number; slot_name: string }>('postgres', 'SELECT active_pid, slot_name FROM pg_replication_slots WHERE active_pid IS NOT NULL');
  return new Map(rows.map((r) => [r.active_pid, `walsender for slot ${r.slot_name}`]));
}

export function formatCpu(used: ReadonlyMap<string, number>): string {
  return `${[...used].filter(([, s]) => s >= 0.005).map(([name, s]) => `${name} ${s.toFixed(2)} s`).join(', ')} (total ${total(used).toFixed(2)} s)`;
}
