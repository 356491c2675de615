/**
 * The report: one row per figure, with its conditions, sitesync's figure, the reference's, their ratio
 * (the meaningful number on a shared, noisy machine), the target and whether it is met.
 */

export type Verdict = 'pass' | 'FAIL' | 'error' | 'info';

export interface ReportRow {
  /** Measurement letter from the issue: a to e. */
  readonly id: string;
  readonly figure: string;
  /** Rows, transaction size, sites, rate: what the figure was measured under. */
  readonly conditions: string;
  readonly sitesync: string;
  readonly reference: string;
  readonly ratio: number | null;
  /** What the ratio divides, e.g. "sitesync rows/s ÷ pg_recvlogical rows/s". */
  readonly ratioMeaning: string;
  readonly target: string;
  readonly verdict: Verdict;
  readonly notes: readonly string[];
}

/** pass / FAIL from a ratio and its target; `error` when a side has no figure. */
export function judge(ratio: number | null, meets: (ratio: number) => boolean): Verdict {
  if (ratio === null || !Number.isFinite(ratio)) return 'error';
  return meets(ratio) ? 'pass' : 'FAIL';
}

export function formatRatio(ratio: number | null): string {
  if (ratio === null || !Number.isFinite(ratio)) return '—';
  if (ratio >= 10) return ratio.toFixed(1);
  if (ratio >= 0.01) return ratio.toFixed(2);
  return ratio.toExponential(1); // 8.2e-5: fits the column, keeps the order of magnitude
}

export function formatRate(perSecond: number, unit: string): string {
  if (perSecond >= 100_000) return `${(perSecond / 1000).toFixed(0)}k ${unit}/s`;
  if (perSecond >= 10_000) return `${(perSecond / 1000).toFixed(1)}k ${unit}/s`;
  return `${perSecond.toFixed(0)} ${unit}/s`;
}

export function formatSeconds(seconds: number): string {
  return seconds >= 100 ? `${seconds.toFixed(0)} s` : seconds >= 10 ? `${seconds.toFixed(1)} s` : `${seconds.toFixed(2)} s`;
}

export function formatMs(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(ms >= 100 ? 0 : 1)} ms`;
}

/** A plain-text table; long cells are wrapped within their column. */
export function formatTable(rows: readonly ReportRow[]): string {
  const header = ['', 'figure', 'conditions', 'sitesync', 'reference', 'ratio', 'target', 'result'];
  const widths = [2, 26, 30, 26, 26, 6, 16, 6];
  const cells = rows.map((r) => [r.id, r.figure, r.conditions, r.sitesync, r.reference, formatRatio(r.ratio), r.target, r.verdict]);
  const wrap = (text: string, width: number): string[] => {
    const lines: string[] = [];
    let line = '';
    for (const word of text.split(/\s+/)) {
      if (line && line.length + 1 + word.length > width) {
        lines.push(line);
        line = word;
      } else line = line ? `${line} ${word}` : word;
      while (line.length > width) {
        lines.push(line.slice(0, width));
        line = line.slice(width);
      }
    }
    lines.push(line);
    return lines;
  };
  const render = (row: string[]): string[] => {
    const wrapped = row.map((cell, i) => wrap(cell, widths[i]!));
    const height = Math.max(...wrapped.map((w) => w.length));
    const out: string[] = [];
    for (let l = 0; l < height; l++) out.push(wrapped.map((w, i) => (w[l] ?? '').padEnd(widths[i]!)).join(' │ ').trimEnd());
    return out;
  };
  const rule = widths.map((w) => '─'.repeat(w)).join('─┼─');
  const lines = [...render(header), rule];
  for (const [i, row] of cells.entries()) {
    lines.push(...render(row));
    if (i < cells.length - 1 && rows[i + 1]!.id !== rows[i]!.id) lines.push(rule);
  }
  return lines.join('\n');
}

/** Per measurement: what each ratio means (once for the rows that share it), then its notes. */
export function formatNotes(rows: readonly ReportRow[]): string {
  const lines: string[] = [];
  for (const id of [...new Set(rows.map((r) => r.id))]) {
    const mine = rows.filter((r) => r.id === id);
    const meanings = new Map<string, string[]>();
    for (const r of mine) meanings.set(r.ratioMeaning, [...(meanings.get(r.ratioMeaning) ?? []), r.figure]);
    lines.push(`${id}.`);
    for (const [meaning, figures] of meanings) lines.push(`   ratio of ${figures.join(', ')} = ${meaning}`);
    for (const note of mine.flatMap((r) => r.notes)) lines.push(`   - ${note}`);
  }
  return lines.join('\n');
}

/** One line: how many figures passed, failed, could not be measured, or have no target. */
export function formatVerdicts(rows: readonly ReportRow[]): string {
  const count = (v: Verdict): number => rows.filter((r) => r.verdict === v).length;
  return `${rows.length} figures: ${count('pass')} pass, ${count('FAIL')} FAIL, ${count('error')} not measured (error), ${count('info')} without a target (info)`;
}
