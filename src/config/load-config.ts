/**
 * Reads the YAML file, lays environment overrides over it, validates once against the schema (unknown keys
 * rejected, defaults filled in), freezes it and hands it down. Precedence: environment, then file, then
 * the schema's defaults.
 *
 * An environment variable `SITESYNC_A__B__C` sets the key path a.b.c (matched case-insensitively, so
 * `SITESYNC_CAPTURE__HEARTBEATSECONDS` sets capture.heartbeatSeconds); its value is read as YAML, so
 * numbers, booleans and `[a, b]` lists work. A SITESYNC_ variable that names no key of the schema is ignored
 * with a warning: orchestrators add their own (Kubernetes injects SITESYNC_SERVICE_HOST for a Service named
 * sitesync, compose files use SITESYNC_AMQP_PORT), and the file is not to blame for them.
 *
 * No message quotes a value as given: a value may be a URL with a password, so values are shown redacted,
 * and the yaml package is never let to print its source excerpts.
 */
import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject } from 'ajv';
import { parseDocument, type YAMLError } from 'yaml';
import { SitesyncError } from '../errors.ts';
import { redactSecrets } from '../observability/logger.ts';
import { brokerUserOf, capturingSites, configSchema, PATTERN_HINTS, SITE_NAME, type Config } from './config-schema.ts';

const ENV_PREFIX = 'SITESYNC_';
/** sitesync's own variables that are not configuration keys (setup-command.ts's passwords, bench/'s). */
const OWN_VARIABLES = /^SITESYNC_(SETUP_PASSWORD_|BENCH_)/;

/** Where a warning goes when the caller gives no other place: stderr, before the logger exists. */
function warnOnStderr(line: string): void {
  process.stderr.write(`sitesync: warning: ${line}\n`);
}

export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env, onWarning: (line: string) => void = warnOnStderr): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw configError(`cannot read the configuration file ${file} (${(error as NodeJS.ErrnoException).code ?? error}); pass an existing file with --config`);
  }
  const yaml = readYaml(text);
  if (yaml.error !== undefined) throw configError(`${file} is not valid YAML: ${yaml.error}; fix the syntax at that line`);
  for (const warning of yaml.warnings) onWarning(`${file}: ${warning}`);
  const raw = yaml.value;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw configError(`${file} must be a YAML mapping with at least "broker" and "sites"; see README.md, Configuration`);
  }
  return parseConfig(applyEnvironment(raw as Record<string, unknown>, env, onWarning), file);
}

/**
 * Parses YAML without the yaml package printing anything: its warnings go to process.emitWarning and its
 * messages end with the offending source line, either of which may show a password.
 */
function readYaml(text: string): { value?: unknown; error?: string; warnings: string[] } {
  const doc = parseDocument(text);
  const [error] = doc.errors;
  if (error) return { error: describeYamlProblem(error), warnings: [] };
  try {
    return { value: doc.toJS(), warnings: doc.warnings.map(describeYamlProblem) };
  } catch (toJsError) {
    // Some problems (an alias to no anchor) only show when the document is turned into values.
    return { error: describeYamlProblem(toJsError as Error), warnings: [] };
  }
}

/**
 * A YAML problem in one line that quotes nothing of the source: the first line of the message, without what
 * follows ": " (an alias, a tag or a header as written) and with the position the yaml package computed.
 */
function describeYamlProblem(problem: Pick<YAMLError, 'message'> & Partial<Pick<YAMLError, 'linePos'>>): string {
  const what = problem.message.split('\n')[0]!.split(': ')[0]!.replace(/ at line \d+, column \d+:?$/, '');
  const where = problem.linePos?.[0];
  return redactSecrets(where ? `${what} at line ${where.line}, column ${where.col}` : what);
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
  for (const site of sites) {
    const c = config.sites[site]!;
    const shorthand = (['postgres', 'capturePostgres', 'applyPostgres', 'monitorPostgres'] as const).filter((k) => c[k] !== undefined);
    if (c.database !== undefined) {
      if (shorthand.length > 0) return `sites.${site} has both "database" and "${shorthand[0]}"; keep one: "postgres: URL" is short for "database: {kind: postgres, url: URL}"`;
      const d = c.database;
      if (d.url === undefined) {
        const roles = [c.capture ? 'captureUrl' : null, 'applyUrl', 'monitorUrl'].filter((k): k is string => k !== null);
        const missing = roles.filter((k) => d[k as 'applyUrl'] === undefined);
        if (missing.length > 0) return `missing key "sites.${site}.database.url"; add it (see README.md, Configuration), or give each role a URL of its own: ${missing.map((k) => `sites.${site}.database.${k}`).join(', ')}`;
      }
    } else if (c.postgres === undefined) {
      const roles = [c.capture ? 'capturePostgres' : null, 'applyPostgres', 'monitorPostgres'].filter((k): k is string => k !== null);
      const missing = roles.filter((k) => c[k as 'applyPostgres'] === undefined);
      if (missing.length > 0) return `missing key "sites.${site}.postgres" (or "sites.${site}.database"); add it (see README.md, Configuration), or give each role a URL of its own: ${missing.map((k) => `sites.${site}.${k}`).join(', ')}`;
    }
  }
  for (const site of sites) {
    const { brokerUser, brokerUrl } = config.sites[site]!;
    if (brokerUser !== undefined && brokerUrl !== undefined && brokerUserOf(brokerUrl) !== brokerUser) {
      return `sites.${site}.brokerUrl logs in as "${brokerUserOf(brokerUrl)}" but sites.${site}.brokerUser is "${brokerUser}": the other sites would refuse every message of ${site}; make them the same user`;
    }
  }
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
  const shown = value === undefined ? '' : ` = ${quoted(value)}`;
  if (error.propertyName !== undefined) {
    if (error.instancePath.endsWith('/tables')) return `${path} key ${quoted(error.propertyName)} is not valid; it must be ${PATTERN_HINTS['^[^.]+\\.[^.]+$']}`;
    return `site name ${quoted(error.propertyName)} is not valid; it must be ${PATTERN_HINTS[SITE_NAME]}`;
  }
  switch (error.keyword) {
    case 'additionalProperties': {
      const key = (error.params as { additionalProperty: string }).additionalProperty;
      const where = path === '(top level)' ? key : `${path}.${key}`;
      return `unknown key ${quoted(where)}; remove it or check its spelling against README.md, Configuration`;
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

/** A value or key as JSON, with any password in it replaced: the value at fault is often a connection URL. */
function quoted(value: unknown): string {
  return redactSecrets(JSON.stringify(value));
}

function valueAt(data: unknown, pointer: string): unknown {
  let node = data;
  for (const part of pointer.split('/').filter(Boolean)) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

/**
 * Lays every SITESYNC_A__B variable that names a key of the schema over the raw configuration; the others
 * are reported through onWarning and left out (their values never shown).
 */
export function applyEnvironment(raw: Record<string, unknown>, env: NodeJS.ProcessEnv, onWarning: (line: string) => void = warnOnStderr): Record<string, unknown> {
  const result = structuredClone(raw);
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || OWN_VARIABLES.test(name) || value === undefined) continue;
    const segments = name.slice(ENV_PREFIX.length).split('__').filter(Boolean);
    const resolved = resolveKeyPath(result, segments);
    if (!resolved.known) {
      onWarning(`environment variable ${name} names no configuration key${resolved.wouldSet ? ` (it would set "${resolved.wouldSet}"${resolved.why ? `, but ${resolved.why}` : ''})` : ''}; ignored — rename it if it was meant for sitesync (SITESYNC_ + key path in capitals joined by __, e.g. SITESYNC_BROKER__URL)`);
      continue;
    }
    const yaml = readYaml(value);
    if (yaml.error !== undefined) throw configError(`environment variable ${name} is not a valid YAML value (${yaml.error}); quote it or fix it`);
    for (const warning of yaml.warnings) onWarning(`environment variable ${name}: ${warning}`);
    setPath(result, resolved.keys, yaml.value ?? value);
  }
  return result;
}

/** The part of the JSON Schema that says which keys exist: enough to walk configSchema without its literal type. */
interface SchemaNode {
  properties?: Record<string, SchemaNode>;
  /** An object: the schema of every key not in properties; true: any key, anything below; false or absent: none. */
  additionalProperties?: SchemaNode | boolean;
  propertyNames?: { pattern?: string };
}

type KeyPathResolution = { known: true; keys: string[] } | { known: false; wouldSet: string; why?: string };

/**
 * The real key path the upper-case segments of a variable mean, found by walking the schema (so keys added to
 * it later work with no change here): a named property, matched case-insensitively, or under an object whose
 * keys are free (sites.<name>, conflicts.tables.<schema.table>) an existing key or the segment in lower case,
 * if it matches that object's propertyNames pattern. Anything else names no key.
 */
function resolveKeyPath(raw: Record<string, unknown>, segments: readonly string[]): KeyPathResolution {
  const keys: string[] = [];
  let schemaNode: SchemaNode | true = configSchema as SchemaNode;
  let node: unknown = raw;
  for (const [i, segment] of segments.entries()) {
    const wanted = segment.toLowerCase();
    const namesNoKey = (why?: string): KeyPathResolution => ({ known: false, wouldSet: [...keys, ...segments.slice(i).map((s) => s.toLowerCase())].join('.'), ...(why ? { why } : {}) });
    let key: string;
    if (schemaNode === true) {
      key = existingKey(node, wanted) ?? wanted;
    } else {
      const property: string | undefined = Object.keys(schemaNode.properties ?? {}).find((k) => k.toLowerCase() === wanted);
      const free: SchemaNode | boolean | undefined = schemaNode.additionalProperties;
      if (property !== undefined) {
        key = property;
        schemaNode = schemaNode.properties![property]!;
      } else if (free === true || typeof free === 'object') {
        key = existingKey(node, wanted) ?? wanted;
        const pattern = schemaNode.propertyNames?.pattern;
        // Ajv reads schema patterns as Unicode regular expressions; read them the same way.
        if (pattern !== undefined && !new RegExp(pattern, 'u').test(key)) return namesNoKey(`"${key}" is not ${PATTERN_HINTS[pattern] ?? `text matching ${pattern}`}`);
        schemaNode = free;
      } else {
        return namesNoKey();
      }
    }
    keys.push(key);
    node = node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[key] : undefined;
  }
  return keys.length > 0 ? { known: true, keys } : { known: false, wouldSet: '' };
}

/** The key of a raw object that a lower-cased segment means, if the file already has it (in whatever case). */
function existingKey(node: unknown, wanted: string): string | undefined {
  if (node === null || typeof node !== 'object') return undefined;
  return Object.keys(node).find((k) => k.toLowerCase() === wanted);
}

function setPath(target: Record<string, unknown>, keys: readonly string[], value: unknown): void {
  let node = target;
  for (const key of keys.slice(0, -1)) {
    const next = node[key];
    if (next === null || typeof next !== 'object') node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[keys[keys.length - 1]!] = value;
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
