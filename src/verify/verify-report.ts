/**
 * What `sitesync verify` prints: per table one line a person reads at a glance, then the differing keys;
 * or, with --json, one document with every table, its counts and its listed keys.
 *
 * Only keys and column names are ever printed, never other values (they may be secret). Keys are shown as
 * `column=value`, the value bare when it is plainly a word or a number and JSON-quoted otherwise, so that
 * spaces, commas or an empty string stay readable.
 */
import type { RowDifference, TableComparison } from './compare-tables.ts';

export interface VerifyReport {
  readonly reference: string;
  readonly sites: readonly string[];
  readonly tables: readonly TableComparison[];
}

/** Every table identical at every site, and none that could not be compared. */
export function allIdentical(report: VerifyReport): boolean {
  return report.tables.every((t) => t.identical);
}

/** One table: its summary line, then its schema differences and listed keys, indented. */
export function formatComparison(t: TableComparison): string[] {
  if (t.error !== undefined) return [`${t.table}: could not be compared: ${t.error}`, ...schemaLines(t)];
  const lines: string[] = [];
  const referenceRows = t.rows[t.reference] ?? 0;
  if (t.differenceCount === 0) {
    const sameCount = Object.values(t.rows).every((n) => n === referenceRows);
    const rows = sameCount ? `${referenceRows} rows` : t.sites.map((s) => `${t.rows[s]} rows at ${s}`).join(', ');
    lines.push(`${t.table}: ${rows}, ${t.identical ? 'identical' : 'identical on the columns every site has'}`);
  } else {
    const parts: string[] = [];
    for (const site of t.sites.slice(1)) {
      const d = t.differences[site]!;
      if (d.missing > 0) parts.push(`${d.missing} missing at ${site}`);
      if (d.extra > 0) parts.push(`${d.extra} extra at ${site}`);
      if (d.changed > 0) parts.push(`${d.changed} changed at ${site} (${d.changedColumns.join(', ')})`);
    }
    lines.push(`${t.table}: ${t.differenceCount} difference${t.differenceCount === 1 ? '' : 's'}: ${parts.join(', ')}`);
  }
  lines.push(...schemaLines(t));
  for (const d of t.keys) lines.push(`  ${describeDifference(t, d)}`);
  if (t.keysOmitted > 0) lines.push(`  … and ${t.keysOmitted} more not listed (raise --max-keys to list them)`);
  return lines;
}

function schemaLines(t: TableComparison): string[] {
  const lines: string[] = [];
  for (const d of t.schemaDifferences) {
    const parts: string[] = [];
    if (d.missingColumns.length > 0) parts.push(`lacks column${d.missingColumns.length === 1 ? '' : 's'} ${d.missingColumns.join(', ')}`);
    if (d.extraColumns.length > 0) parts.push(`has column${d.extraColumns.length === 1 ? '' : 's'} ${d.extraColumns.join(', ')} that ${t.reference} lacks`);
    if (d.otherKinds.length > 0) parts.push(`types differ: ${d.otherKinds.map((k) => `${k.column} ${k.site} (${t.reference}: ${k.reference})`).join(', ')}`);
    const compared = d.missingColumns.length + d.extraColumns.length > 0 ? '; compared on the columns every site has' : '';
    lines.push(`  schema at ${d.site}: ${parts.join('; ')}${compared}`);
  }
  return lines;
}

/** `missing at london: id=42`, `changed at london: (region=eu, id=7): balance, note`. */
export function describeDifference(t: TableComparison, d: RowDifference): string {
  const key = formatKey(t.keyColumns, d.key);
  const what = d.kind === 'missing' ? 'missing at' : d.kind === 'extra' ? 'extra at' : 'changed at';
  return `${what} ${d.site}: ${key}${d.columns && d.columns.length > 0 ? ` (${d.columns.join(', ')})` : ''}`;
}

export function formatKey(columns: readonly string[], key: readonly string[]): string {
  const pairs = key.map((value, i) => `${columns[i] ?? `#${i + 1}`}=${/^[A-Za-z0-9_.:+-]+$/.test(value) ? value : JSON.stringify(value)}`);
  return pairs.length === 1 ? pairs[0]! : `(${pairs.join(', ')})`;
}

/** The closing line: how many tables, how many identical. */
export function formatSummary(report: VerifyReport): string {
  const n = report.tables.length;
  const identical = report.tables.filter((t) => t.identical).length;
  const failed = report.tables.filter((t) => t.error !== undefined).length;
  const differing = n - identical - failed;
  const sites = `${report.sites.join(', ')} (reference ${report.reference})`;
  if (identical === n) return `${n} table${n === 1 ? '' : 's'} identical at ${sites}`;
  return `${n} table${n === 1 ? '' : 's'} at ${sites}: ${identical} identical, ${differing} with differences${failed > 0 ? `, ${failed} not compared` : ''}`;
}

/** The --json document: every table with its counts and listed keys (as {column: value} objects, in key order). */
export function reportJson(report: VerifyReport): unknown {
  return {
    reference: report.reference,
    sites: report.sites,
    identical: allIdentical(report),
    tables: report.tables.map((t) => ({
      table: t.table,
      identical: t.identical,
      ...(t.error === undefined ? {} : { error: t.error }),
      method: t.method,
      rows: t.rows,
      rowsRead: t.rowsRead,
      keyColumns: t.keyColumns,
      comparedColumns: t.comparedColumns,
      schemaDifferences: t.schemaDifferences,
      differenceCount: t.differenceCount,
      differences: t.differences,
      keys: t.keys.map((d) => ({
        kind: d.kind,
        site: d.site,
        key: Object.fromEntries(d.key.map((value, i) => [t.keyColumns[i] ?? `#${i + 1}`, value])),
        ...(d.columns ? { columns: d.columns } : {}),
      })),
      keysOmitted: t.keysOmitted,
    })),
  };
}
