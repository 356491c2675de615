/**
 * Reads the YAML file, lays environment overrides over it, validates once against the schema (unknown keys
 * rejected, defaults filled in), freezes it and hands it down. Precedence: environment, then file, then
 * the schema's defaults.
 *
 * An environment variable `SITESYNC_A__B__C` sets the key path a.b.c (matched case-insensitively, so
 * `SITESYNC_CAPTURE__HEARTBEATSECONDS` sets capture.heartbeatSeconds); its value is read as YAML, so
 * numbers, booleans and `[a, b]` lists work.
 */
import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { SitesyncError } from '../errors.ts';
import { capturingSites, configSchema, PATTERN_HINTS, SITE_NAME, type Config } from './config-schema.ts';

const ENV_PREFIX = 'SITESYNC_';

export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw configError(`cannot read the configuration file ${file} (${(error as NodeJS.ErrnoException).code ?? error}); pass an existing file with --config`);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (error) {
    throw configError(`${file} is not valid YAML: ${(error as Error).message.split('\n')[0]}; fix the syntax at that line`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw configError(`${file} must be a YAML mapping with at least "broker" and "sites"; see README.md, Configuration`);
  }
  return parseConfig(applyEnvironment(raw as Record<string, unknown>, env), file);
}

/** Validate an already-read configuration object (tests and the CLI's `--config -` use this). */
export function parseConfig(raw: unknown, origin = 'configuration'): Config {
  const copy = structuredClone(raw);
  if (!validate(copy)) throw configError(`${origin}: ${explain(validate.errors?.[0], copy)}`);
  const config = copy as Config;
  const problem = crossCheck(config);
  if (problem) throw configError(`${origin}: ${problem}`);
  return deepFreeze(config);
}

/**
 * Below this, the window can be smaller than the segments the server's kernel has already built (up to
 * 64 KiB over loopback), which then leave only with its zero-window probes, 200 ms and more apart
 * (connectors/postgres/receive-buffer.ts).
 */
const MIN_RECEIVE_BUFFER_BYTES = 65536;

/** What a schema cannot say: names that must refer to configured sites, and what only some sites may set. */
function crossCheck(config: Config): string | null {
  const sites = Object.keys(config.sites);
  if (capturingSites(config).length === 0) return `no site captures, so nothing would be replicated; remove "capture: false" from the site whose writes the others should receive`;
  const buffer = config.capture.receiveBufferBytes;
  if (buffer > 0 && buffer < MIN_RECEIVE_BUFFER_BYTES) return `capture.receiveBufferBytes = ${buffer} would stall the replication connection; set it to 0 (the kernel sizes it) or at least ${MIN_RECEIVE_BUFFER_BYTES}`;
  const tablesWithoutCapture = sites.find((site) => !config.sites[site]!.capture && config.sites[site]!.tables !== undefined);
  if (tablesWithoutCapture) return `sites.${tablesWithoutCapture}.tables lists the tables the site sends, but its capture is off; remove one of the two`;
  const policies = [
    { where: 'conflicts', policy: config.conflicts.policy, priority: config.conflicts.priority },
    ...Object.entries(config.conflicts.tables).map(([table, p]) => ({ where: `conflicts.tables.${table}`, policy: p.policy, priority: p.priority ?? config.conflicts.priority })),
  ];
  for (const { where, policy, priority } of policies) {
    const unknown = priority.find((site) => !sites.includes(site));
    if (unknown) return `${where}.priority names site "${unknown}", which is not in sites (${sites.join(', ')}); fix the name or add the site`;
    if (policy === 'site-priority' && priority.length === 0) return `${where}.policy is site-priority but no priority list is given; add ${where === 'conflicts' ? 'conflicts.priority' : `${where}.priority or conflicts.priority`}: [site, …]`;
  }
  return null;
}

const ajv = new Ajv({ allErrors: false, useDefaults: true, strict: true, allowUnionTypes: true });
const validate = ajv.compile(configSchema);

function explain(error: ErrorObject | undefined, data: unknown): string {
  if (!error) return 'invalid configuration';
  const path = error.instancePath.split('/').filter(Boolean).join('.') || '(top level)';
  const value = valueAt(data, error.instancePath);
  const shown = value === undefined ? '' : ` = ${JSON.stringify(value)}`;
  if (error.propertyName !== undefined) {
    if (error.instancePath.endsWith('/tables')) return `${path} key ${JSON.stringify(error.propertyName)} is not valid; it must be ${PATTERN_HINTS['^[^.]+\\.[^.]+$']}`;
    return `site name ${JSON.stringify(error.propertyName)} is not valid; it must be ${PATTERN_HINTS[SITE_NAME]}`;
  }
  switch (error.keyword) {
    case 'additionalProperties': {
      const key = (error.params as { additionalProperty: string }).additionalProperty;
      const where = path === '(top level)' ? key : `${path}.${key}`;
      return `unknown key "${where}"; remove it or check its spelling against README.md, Configuration`;
    }
    case 'required': {
      const key = (error.params as { missingProperty: string }).missingProperty;
      return `missing key "${path === '(top level)' ? key : `${path}.${key}`}"; add it (see README.md, Configuration)`;
    }
    case 'pattern': {
      const hint = PATTERN_HINTS[(error.params as { pattern: string }).pattern] ?? `text matching ${(error.params as { pattern: string }).pattern}`;
      return `${path}${shown} is not valid; it must be ${hint}`;
    }
    case 'minProperties':
      return `${path} needs at least two sites: sitesync replicates between sites`;
    default:
      return `${path}${shown} ${error.message ?? 'is not valid'}; fix it (see README.md, Configuration)`;
  }
}

function valueAt(data: unknown, pointer: string): unknown {
  let node = data;
  for (const part of pointer.split('/').filter(Boolean)) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

/** Lays every SITESYNC_A__B variable over the raw configuration. */
export function applyEnvironment(raw: Record<string, unknown>, env: NodeJS.ProcessEnv): Record<string, unknown> {
  const result = structuredClone(raw);
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || value === undefined) continue;
    const path = name.slice(ENV_PREFIX.length).split('__').filter(Boolean);
    if (path.length === 0) continue;
    let parsed: unknown;
    try {
      parsed = parseYaml(value);
    } catch (error) {
      throw configError(`environment variable ${name} = ${JSON.stringify(value)} is not a valid YAML value (${(error as Error).message.split('\n')[0]}); quote it or fix it`);
    }
    setPath(result, path, parsed ?? value);
  }
  return result;
}

function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = target;
  let schemaNode: SchemaNode | undefined = configSchema as SchemaNode;
  path.forEach((segment, i) => {
    const key = keyFor(node, schemaNode, segment);
    schemaNode = schemaNode?.properties?.[key] ?? (typeof schemaNode?.additionalProperties === 'object' ? schemaNode.additionalProperties : undefined);
    if (i === path.length - 1) {
      node[key] = value;
      return;
    }
    const next = node[key];
    if (next === null || typeof next !== 'object') node[key] = {};
    node = node[key] as Record<string, unknown>;
  });
}

interface SchemaNode {
  properties?: Record<string, SchemaNode>;
  additionalProperties?: SchemaNode | boolean;
}

/** The real key an upper-case environment segment means: a known key of the schema, an existing key, or lower case. */
function keyFor(node: Record<string, unknown>, schemaNode: SchemaNode | undefined, segment: string): string {
  const wanted = segment.toLowerCase();
  const known = [...Object.keys(schemaNode?.properties ?? {}), ...Object.keys(node)];
  return known.find((k) => k.toLowerCase() === wanted) ?? wanted;
}

function configError(message: string): SitesyncError {
  return new SitesyncError('SITESYNC_ERR_CONFIG', message);
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
