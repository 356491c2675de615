/**
 * Memory of real processes, read from /proc/<pid>/status: VmRSS (resident now) sampled on a timer, and
 * VmHWM (the kernel's own high-water mark of VmRSS since the process started, so no short peak between two
 * samples is missed).
 */
import { readFileSync } from 'node:fs';

export interface MemoryReading {
  readonly rssBytes: number;
  readonly hwmBytes: number;
}

export function readMemory(pid: number): MemoryReading | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null; // exited
  }
  const field = (name: string): number => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text);
    return m ? Number(m[1]) * 1024 : 0;
  };
  return { rssBytes: field('VmRSS'), hwmBytes: field('VmHWM') };
}

export interface MemoryPeak {
  /** Largest VmRSS sampled while sampling. */
  readonly sampledPeakBytes: number;
  /** VmHWM at the last reading: the peak over the process's whole life. */
  readonly hwmBytes: number;
  /** Smallest VmRSS sampled (the process at rest, when sampling began before the work). */
  readonly firstBytes: number;
  readonly samples: number;
}

/** Samples a set of processes every `intervalMs` until stopped. */
export class MemorySampler {
  private readonly peaks = new Map<string, { peak: number; hwm: number; first: number; samples: number }>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly pids: () => ReadonlyMap<string, number | null>,
    private readonly intervalMs = 100,
  ) {}

  start(): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
  }

  /** Takes one last reading (call while the processes still run) and stops. */
  stop(): Map<string, MemoryPeak> {
    this.sample();
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const result = new Map<string, MemoryPeak>();
    for (const [name, p] of this.peaks) result.set(name, { sampledPeakBytes: p.peak, hwmBytes: p.hwm, firstBytes: p.first, samples: p.samples });
    return result;
  }

  private sample(): void {
    for (const [name, pid] of this.pids()) {
      if (pid === null) continue;
      const reading = readMemory(pid);
      if (!reading) continue;
      const p = this.peaks.get(name) ?? { peak: 0, hwm: 0, first: reading.rssBytes, samples: 0 };
      p.peak = Math.max(p.peak, reading.rssBytes);
      p.hwm = Math.max(p.hwm, reading.hwmBytes);
      p.samples++;
      this.peaks.set(name, p);
    }
  }
}

export function formatMiB(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(0)} MiB`;
}
