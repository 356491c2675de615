/**
 * Where sitesync processes spend their time: reads the V8 CPU profiles that `node --cpu-prof` writes when a
 * process exits (sampled call stacks: nodes with their call frame, the node of each sample and the time
 * between samples) and sums self time by function and by area (a package under node_modules, a source file
 * of the project, or V8's own buckets: idle, garbage collector, program).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = new URL('../../', import.meta.url).pathname;

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}

interface CpuProfile {
  readonly nodes: readonly { readonly id: number; readonly callFrame: CallFrame }[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export interface ProfileSummary {
  readonly name: string;
  readonly totalMs: number;
  readonly busyMs: number;
  readonly areas: readonly { readonly area: string; readonly ms: number }[];
  readonly functions: readonly { readonly fn: string; readonly ms: number }[];
}

function areaOf(frame: CallFrame): string {
  const url = frame.url;
  if (!url) return frame.functionName.startsWith('(') ? frame.functionName : '(native)';
  if (url.startsWith('node:')) return 'node internals';
  const modules = url.lastIndexOf('/node_modules/');
  if (modules >= 0) {
    const rest = url.slice(modules + '/node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  return url.replace(/^file:\/\//, '').replace(ROOT, '');
}

export function summarizeProfile(file: string, top = 12): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const frames = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  const byArea = new Map<string, number>();
  const byFunction = new Map<string, number>();
  let totalUs = 0;
  let idleUs = 0;
  profile.samples.forEach((nodeId, i) => {
    // timeDeltas[i] is the time since the previous sample; the time until the next is what sample i stands for.
    const us = profile.timeDeltas[i + 1] ?? profile.timeDeltas[i] ?? 0;
    const frame = frames.get(nodeId);
    if (!frame) return;
    totalUs += us;
    if (frame.functionName === '(idle)') {
      idleUs += us;
      return;
    }
    const area = areaOf(frame);
    byArea.set(area, (byArea.get(area) ?? 0) + us);
    // Lines of .ts files are those of tsx's output (no source map), so only the name and file are shown.
    const line = frame.url.endsWith('.ts') ? '' : `:${frame.lineNumber + 1}`;
    const fn = frame.url ? `${frame.functionName || '(anonymous)'} ${area}${line}` : frame.functionName;
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + us);
  });
  const sorted = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).slice(0, top);
  return {
    name: file.slice(file.lastIndexOf('/') + 1).replace(/\.cpuprofile$/, ''),
    totalMs: totalUs / 1000,
    busyMs: (totalUs - idleUs) / 1000,
    areas: sorted(byArea).map(([area, us]) => ({ area, ms: us / 1000 })),
    functions: sorted(byFunction).map(([fn, us]) => ({ fn, ms: us / 1000 })),
  };
}

/**
 * Summaries of the profiles under `dir` (one folder per process start, one file per thread) with at least
 * `minBusyMs` of work: startup-only runs and the module loader's thread are left out.
 */
export function summarizeProfiles(dir: string, minBusyMs = 2000): ProfileSummary[] {
  const summaries: ProfileSummary[] = [];
  for (const start of readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort()) {
    for (const file of readdirSync(join(dir, start)).filter((f) => f.endsWith('.cpuprofile'))) {
      const summary = summarizeProfile(join(dir, start, file));
      if (summary.busyMs >= minBusyMs) summaries.push({ ...summary, name: `${start} (${file})` });
    }
  }
  return summaries;
}

export function formatProfile(s: ProfileSummary): string {
  const pct = (ms: number): string => `${((100 * ms) / s.busyMs).toFixed(1)}%`.padStart(6);
  const lines = [`${s.name}: ${(s.totalMs / 1000).toFixed(1)} s sampled, ${(s.busyMs / 1000).toFixed(1)} s busy (${((100 * s.busyMs) / s.totalMs).toFixed(0)}%); self time, share of busy:`];
  lines.push('  by area:');
  for (const a of s.areas) lines.push(`    ${pct(a.ms)}  ${a.area}`);
  lines.push('  by function:');
  for (const f of s.functions) lines.push(`    ${pct(f.ms)}  ${f.fn}`);
  return lines.join('\n');
}
