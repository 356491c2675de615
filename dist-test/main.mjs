// src/cli/main.ts
import { Command, InvalidArgumentError } from "commander";

// src/config/load-config.ts
import { readFileSync } from "node:fs";
import { Ajv } from "ajv";
import { parse as parseYaml } from "yaml";

// src/errors.ts
var ERROR_CODES = {
  SITESYNC_ERR_CONFIG: "fatal",
  SITESYNC_ERR_WAL_LEVEL: "fatal",
  SITESYNC_ERR_PERMISSION: "fatal",
  SITESYNC_ERR_POSTGRES_UNREACHABLE: "retry",
  SITESYNC_ERR_BROKER_UNREACHABLE: "retry",
  SITESYNC_ERR_BROKER_REJECTED: "retry",
  SITESYNC_ERR_DECODE: "park",
  SITESYNC_ERR_MESSAGE_INVALID: "park",
  SITESYNC_ERR_APPLY_DATA: "halt-source",
  SITESYNC_ERR_APPLY_SCHEMA: "halt-source",
  SITESYNC_ERR_GAP: "halt-source"
};
var SitesyncError = class extends Error {
  code;
  consequence;
  constructor(code, message, options) {
    super(message, options);
    this.name = "SitesyncError";
    this.code = code;
    this.consequence = ERROR_CODES[code];
  }
};
var DecodeError = class extends SitesyncError {
  constructor(message, options) {
    super("SITESYNC_ERR_DECODE", message, options);
    this.name = "DecodeError";
  }
};
function describeError(error) {
  if (error instanceof SitesyncError) return `${error.code}: ${error.message}`;
  if (error instanceof Error) return error.message;
  return String(error);
}

// src/config/config-schema.ts
var SITE_NAME = "^[a-z][a-z0-9_]{0,39}$";
var configSchema = {
  type: "object",
  additionalProperties: false,
  required: ["broker", "sites"],
  properties: {
    broker: {
      type: "object",
      additionalProperties: false,
      required: ["url"],
      properties: {
        url: { type: "string", pattern: "^amqps?://" },
        exchange: { type: "string", minLength: 1, default: "sitesync.changes" },
        archiveStream: { type: "string", minLength: 1, default: "sitesync.archive" },
        archiveRetentionDays: { type: "integer", minimum: 1, default: 90 }
      }
    },
    sites: {
      type: "object",
      minProperties: 2,
      propertyNames: { pattern: SITE_NAME },
      additionalProperties: {
        type: "object",
        additionalProperties: false,
        required: ["postgres"],
        properties: {
          postgres: { type: "string", pattern: "^postgres(ql)?://" },
          tables: {
            type: "array",
            minItems: 1,
            items: { type: "string", pattern: "^[^.]+\\.[^.]+$" }
          }
        }
      }
    },
    capture: {
      type: "object",
      additionalProperties: false,
      default: {},
      properties: {
        maxMessageBytes: { type: "integer", minimum: 4096, default: 1048576 },
        maxTransactionsPerMessage: { type: "integer", minimum: 1, default: 200 },
        maxUnconfirmedMessages: { type: "integer", minimum: 1, default: 512 },
        heartbeatSeconds: { type: "number", minimum: 0, default: 10 },
        statusIntervalSeconds: { type: "number", exclusiveMinimum: 0, default: 1 }
      }
    },
    apply: {
      type: "object",
      additionalProperties: false,
      default: {},
      properties: {
        prefetch: { type: "integer", minimum: 1, maximum: 65535, default: 16 },
        replicaRole: { type: "boolean", default: true },
        retrySeconds: { type: "number", exclusiveMinimum: 0, default: 5 },
        onDataError: { enum: ["halt", "park"], default: "halt" }
      }
    },
    watch: {
      type: "object",
      additionalProperties: false,
      default: {},
      properties: {
        intervalSeconds: { type: "number", exclusiveMinimum: 0, default: 30 },
        walRetentionWarnBytes: { type: "integer", minimum: 0, default: 1073741824 }
      }
    },
    conflicts: {
      type: "object",
      additionalProperties: false,
      default: {},
      properties: {
        policy: { enum: ["last-writer-wins", "site-priority", "keep-local"], default: "last-writer-wins" },
        priority: { type: "array", items: { type: "string", pattern: SITE_NAME }, default: [] },
        tables: {
          type: "object",
          default: {},
          propertyNames: { pattern: "^[^.]+\\.[^.]+$" },
          additionalProperties: {
            type: "object",
            additionalProperties: false,
            required: ["policy"],
            properties: {
              policy: { enum: ["last-writer-wins", "site-priority", "keep-local"] },
              priority: { type: "array", items: { type: "string", pattern: SITE_NAME } }
            }
          }
        }
      }
    },
    metrics: {
      type: "object",
      additionalProperties: false,
      default: {},
      properties: { port: { type: "integer", minimum: 0, maximum: 65535, default: 0 } }
    },
    log: {
      type: "object",
      additionalProperties: false,
      default: {},
      properties: {
        level: { enum: ["fatal", "error", "warn", "info", "debug", "trace", "silent"], default: "info" }
      }
    }
  }
};
var PATTERN_HINTS = {
  "^amqps?://": "an AMQP URL such as amqp://guest:guest@127.0.0.1:5672/",
  "^postgres(ql)?://": "a PostgreSQL URL such as postgres://postgres@127.0.0.1:5432/paris",
  "^[^.]+\\.[^.]+$": "a table as schema.table, such as public.users",
  [SITE_NAME]: "a site name of lower-case letters, digits and _ starting with a letter (at most 40)"
};

// src/config/load-config.ts
var ENV_PREFIX = "SITESYNC_";
function loadConfig(file, env = process.env) {
  let text;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw configError(`cannot read the configuration file ${file} (${error.code ?? error}); pass an existing file with --config`);
  }
  let raw;
  try {
    raw = parseYaml(text);
  } catch (error) {
    throw configError(`${file} is not valid YAML: ${error.message.split("\n")[0]}; fix the syntax at that line`);
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw configError(`${file} must be a YAML mapping with at least "broker" and "sites"; see README.md, Configuration`);
  }
  return parseConfig(applyEnvironment(raw, env), file);
}
function parseConfig(raw, origin = "configuration") {
  const copy = structuredClone(raw);
  if (!validate(copy)) throw configError(`${origin}: ${explain(validate.errors?.[0], copy)}`);
  const config = copy;
  const problem = crossCheck(config);
  if (problem) throw configError(`${origin}: ${problem}`);
  return deepFreeze(config);
}
function crossCheck(config) {
  const sites = Object.keys(config.sites);
  const policies = [
    { where: "conflicts", policy: config.conflicts.policy, priority: config.conflicts.priority },
    ...Object.entries(config.conflicts.tables).map(([table, p]) => ({ where: `conflicts.tables.${table}`, policy: p.policy, priority: p.priority ?? config.conflicts.priority }))
  ];
  for (const { where: where2, policy, priority } of policies) {
    const unknown = priority.find((site) => !sites.includes(site));
    if (unknown) return `${where2}.priority names site "${unknown}", which is not in sites (${sites.join(", ")}); fix the name or add the site`;
    if (policy === "site-priority" && priority.length === 0) return `${where2}.policy is site-priority but no priority list is given; add ${where2 === "conflicts" ? "conflicts.priority" : `${where2}.priority or conflicts.priority`}: [site, \u2026]`;
  }
  return null;
}
var ajv = new Ajv({ allErrors: false, useDefaults: true, strict: true, allowUnionTypes: true });
var validate = ajv.compile(configSchema);
function explain(error, data) {
  if (!error) return "invalid configuration";
  const path = error.instancePath.split("/").filter(Boolean).join(".") || "(top level)";
  const value = valueAt(data, error.instancePath);
  const shown = value === void 0 ? "" : ` = ${JSON.stringify(value)}`;
  if (error.propertyName !== void 0) {
    if (error.instancePath.endsWith("/tables")) return `${path} key ${JSON.stringify(error.propertyName)} is not valid; it must be ${PATTERN_HINTS["^[^.]+\\.[^.]+$"]}`;
    return `site name ${JSON.stringify(error.propertyName)} is not valid; it must be ${PATTERN_HINTS[SITE_NAME]}`;
  }
  switch (error.keyword) {
    case "additionalProperties": {
      const key = error.params.additionalProperty;
      const where2 = path === "(top level)" ? key : `${path}.${key}`;
      return `unknown key "${where2}"; remove it or check its spelling against README.md, Configuration`;
    }
    case "required": {
      const key = error.params.missingProperty;
      return `missing key "${path === "(top level)" ? key : `${path}.${key}`}"; add it (see README.md, Configuration)`;
    }
    case "pattern": {
      const hint = PATTERN_HINTS[error.params.pattern] ?? `text matching ${error.params.pattern}`;
      return `${path}${shown} is not valid; it must be ${hint}`;
    }
    case "minProperties":
      return `${path} needs at least two sites: sitesync replicates between sites`;
    default:
      return `${path}${shown} ${error.message ?? "is not valid"}; fix it (see README.md, Configuration)`;
  }
}
function valueAt(data, pointer) {
  let node = data;
  for (const part of pointer.split("/").filter(Boolean)) {
    if (node === null || typeof node !== "object") return void 0;
    node = node[part];
  }
  return node;
}
function applyEnvironment(raw, env) {
  const result = structuredClone(raw);
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || value === void 0) continue;
    const path = name.slice(ENV_PREFIX.length).split("__").filter(Boolean);
    if (path.length === 0) continue;
    let parsed;
    try {
      parsed = parseYaml(value);
    } catch (error) {
      throw configError(`environment variable ${name} = ${JSON.stringify(value)} is not a valid YAML value (${error.message.split("\n")[0]}); quote it or fix it`);
    }
    setPath(result, path, parsed ?? value);
  }
  return result;
}
function setPath(target, path, value) {
  let node = target;
  let schemaNode = configSchema;
  path.forEach((segment, i) => {
    const key = keyFor(node, schemaNode, segment);
    schemaNode = schemaNode?.properties?.[key] ?? (typeof schemaNode?.additionalProperties === "object" ? schemaNode.additionalProperties : void 0);
    if (i === path.length - 1) {
      node[key] = value;
      return;
    }
    const next = node[key];
    if (next === null || typeof next !== "object") node[key] = {};
    node = node[key];
  });
}
function keyFor(node, schemaNode, segment) {
  const wanted = segment.toLowerCase();
  const known = [...Object.keys(schemaNode?.properties ?? {}), ...Object.keys(node)];
  return known.find((k) => k.toLowerCase() === wanted) ?? wanted;
}
function configError(message) {
  return new SitesyncError("SITESYNC_ERR_CONFIG", message);
}
function deepFreeze(value) {
  if (value !== null && typeof value === "object") {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

// src/observability/logger.ts
import { pino } from "pino";
var REDACT_PATHS = ["url", "postgres", "connectionString", "password", "*.url", "*.postgres", "*.password"];
function createLogger(level, destination) {
  return pino(
    {
      level,
      base: { app: "sitesync" },
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      timestamp: pino.stdTimeFunctions.isoTime
    },
    destination ?? pino.destination({ fd: 2, sync: false })
  );
}
function redactUrl(url) {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(unparseable URL)";
  }
}

// src/observability/metrics.ts
import { createServer } from "node:http";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
function createMetrics(events) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "sitesync_process_" });
  const r = [registry];
  const site = ["site"];
  const siteSource = ["site", "source"];
  const lagBytes = new Gauge({ name: "sitesync_capture_lag_bytes", help: "WAL bytes between the server position and the slot position confirmed to it", labelNames: site, registers: r });
  const lagSeconds = new Gauge({ name: "sitesync_capture_lag_seconds", help: "Seconds between now and the commit of the last transaction decoded", labelNames: site, registers: r });
  const capturedTx = new Counter({ name: "sitesync_captured_transactions_total", help: "Transactions decoded at this site and sent to the bus", labelNames: site, registers: r });
  const capturedRows = new Counter({ name: "sitesync_captured_rows_total", help: "Row changes decoded at this site", labelNames: site, registers: r });
  const skipped = new Counter({ name: "sitesync_capture_skipped_transactions_total", help: "Transactions not sent: relayed writes applied here by sitesync, and empty ones", labelNames: ["site", "reason"], registers: r });
  const publishedTx = new Counter({ name: "sitesync_published_transactions_total", help: "Transactions published to the broker", labelNames: site, registers: r });
  const publishedBytes = new Counter({ name: "sitesync_published_bytes_total", help: "Message bytes published to the broker", labelNames: site, registers: r });
  const confirmed = new Counter({ name: "sitesync_confirmed_messages_total", help: "Messages the broker confirmed", labelNames: site, registers: r });
  const appliedTx = new Counter({ name: "sitesync_applied_transactions_total", help: "Source transactions applied at this site", labelNames: siteSource, registers: r });
  const appliedRows = new Counter({ name: "sitesync_applied_rows_total", help: "Row changes applied at this site", labelNames: siteSource, registers: r });
  const duplicates = new Counter({ name: "sitesync_duplicates_skipped_total", help: "Transactions received again and skipped (already applied)", labelNames: siteSource, registers: r });
  const conflicts = new Counter({ name: "sitesync_conflicts_total", help: "Concurrent writes to the same row detected and resolved, by kind and resolution", labelNames: [...siteSource, "kind", "resolution"], registers: r });
  const parked = new Counter({ name: "sitesync_parked_messages_total", help: "Messages that could not be applied and were parked with their reason", labelNames: [...siteSource, "code"], registers: r });
  const halted = new Gauge({ name: "sitesync_source_halted", help: "1 while applying from a source is halted on an error", labelNames: siteSource, registers: r });
  const siteSlot = ["site", "slot_site"];
  const slotRetained = new Gauge({ name: "sitesync_slot_retained_wal_bytes", help: "WAL bytes a site's replication slot keeps on its server (from the slot's restart position), as read by this process", labelNames: siteSlot, registers: r });
  const slotActive = new Gauge({ name: "sitesync_slot_active", help: "1 while a process is streaming from a site's replication slot, 0 otherwise", labelNames: siteSlot, registers: r });
  const latency = new Histogram({
    name: "sitesync_apply_latency_seconds",
    help: "Source commit to target commit",
    labelNames: siteSource,
    buckets: [5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: r
  });
  events.on("capture:transaction", (e) => {
    capturedTx.inc({ site: e.site });
    capturedRows.inc({ site: e.site }, e.rows);
  });
  events.on("capture:skipped", (e) => skipped.inc({ site: e.site, reason: e.reason }));
  events.on("capture:published", (e) => {
    publishedTx.inc({ site: e.site }, e.transactions);
    publishedBytes.inc({ site: e.site }, e.bytes);
  });
  events.on("capture:confirmed", (e) => confirmed.inc({ site: e.site }, e.messages));
  events.on("capture:lag", (e) => {
    lagBytes.set({ site: e.site }, e.bytes);
    lagSeconds.set({ site: e.site }, e.seconds);
  });
  events.on("apply:applied", (e) => {
    const labels = { site: e.site, source: e.source };
    appliedTx.inc(labels, e.transactions);
    appliedRows.inc(labels, e.rows);
    const micros = BigInt(Date.now()) * 1000n - e.commitTimeMicros;
    latency.observe(labels, Math.max(0, Number(micros) / 1e6));
  });
  events.on("apply:conflict", (e) => conflicts.inc({ site: e.site, source: e.source, kind: e.kind, resolution: e.resolution === "apply" ? "applied" : "skipped" }));
  events.on("apply:duplicate", (e) => duplicates.inc({ site: e.site, source: e.source }));
  events.on("apply:parked", (e) => parked.inc({ site: e.site, source: e.source, code: e.code }));
  events.on("apply:halted", (e) => halted.set({ site: e.site, source: e.source }, 1));
  events.on("apply:resumed", (e) => halted.set({ site: e.site, source: e.source }, 0));
  events.on("watch:slot", (e) => {
    const labels = { site: e.site, slot_site: e.slotSite };
    slotRetained.set(labels, e.retainedBytes);
    slotActive.set(labels, e.active ? 1 : 0);
  });
  return { registry };
}
async function serveMetrics(metrics, port2, host = "0.0.0.0") {
  const server = createServer((req, res) => {
    if (req.url !== "/metrics") {
      res.writeHead(404).end("sitesync serves /metrics\n");
      return;
    }
    metrics.registry.metrics().then(
      (body) => res.writeHead(200, { "content-type": metrics.registry.contentType }).end(body),
      (error) => res.writeHead(500).end(`${error.message}
`)
    );
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port2, host, () => resolve());
  });
  return server;
}

// src/apply/apply-runner.ts
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";

// src/config/names.ts
var ORIGIN_PREFIX = "sitesync_";
var BOOKKEEPING_SCHEMA = "sitesync";
var MESSAGE_PREFIX = "sitesync";
var slotName = (site) => `sitesync_${site}`;
var publicationName = (site) => `sitesync_${site}`;
var originName = (source, target) => `${ORIGIN_PREFIX}${source}_to_${target}`;
var siteQueue = (site) => `SITE_${site.toUpperCase()}`;
var parkingQueue = (site) => `${siteQueue(site)}.parked`;
var routingKey = (site) => `site.${site}`;
var tablesExchange = (exchange) => `${exchange}.tables`;
var TABLE_HEADER_PREFIX = "sitesync-table:";
var tableHeader = (site, table) => `${TABLE_HEADER_PREFIX}${site}/${table}`;
var allTablesHeader = (site) => `${TABLE_HEADER_PREFIX}${site}/*`;
var subscriberQueue = (name) => `sitesync.subscriber.${name}`;
var PARKED_ID_HEADER = "sitesync-parked-id";
var RETRY_HEADER = "sitesync-retry";

// src/bus/broker-connection.ts
import amqp from "amqplib";
async function connectBroker(url, name) {
  try {
    return await amqp.connect(url, { clientProperties: { connection_name: name }, timeout: 1e4 });
  } catch (error) {
    throw describeBrokerError(error, url);
  }
}
function describeBrokerError(error, url) {
  const message = error?.message ?? String(error);
  if (/ACCESS_REFUSED|403/.test(message)) {
    return new SitesyncError("SITESYNC_ERR_PERMISSION", `RabbitMQ at ${redactUrl(url)} refused the login (${message.split("\n")[0]}); check the user and password in broker.url and the user's permissions on the vhost`, { cause: error });
  }
  if (/NOT_ALLOWED|vhost/i.test(message)) {
    return new SitesyncError("SITESYNC_ERR_CONFIG", `RabbitMQ at ${redactUrl(url)} has no such virtual host (${message.split("\n")[0]}); fix the path of broker.url or create the vhost`, { cause: error });
  }
  return new SitesyncError("SITESYNC_ERR_BROKER_UNREACHABLE", `RabbitMQ at ${redactUrl(url)} is unreachable (${message.split("\n")[0]}); start it or fix broker.url \u2014 sitesync keeps retrying and loses nothing meanwhile`, { cause: error });
}

// src/events/position.ts
function comparePositions(a, b) {
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : a > b ? 1 : 0;
}
var LSN_TEXT = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;
function parseLsn(text) {
  const m = LSN_TEXT.exec(text);
  if (!m) throw new Error(`not a PostgreSQL LSN: ${JSON.stringify(text)}`);
  return BigInt(`0x${m[1]}`) << 32n | BigInt(`0x${m[2]}`);
}
function formatLsn(lsn) {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}
function lsnToPosition(lsn) {
  return lsn.toString(16).toUpperCase().padStart(16, "0");
}
function positionToLsn(position) {
  if (!/^[0-9A-F]{16}$/.test(position)) throw new Error(`not a PostgreSQL position: ${JSON.stringify(position)}`);
  return BigInt(`0x${position}`);
}
function describePosition(position) {
  if (position === null) return "none";
  return /^[0-9A-F]{16}$/.test(position) ? formatLsn(positionToLsn(position)) : position;
}

// src/events/time.ts
function microsToIso(micros) {
  const millis = micros >= 0n ? micros / 1000n : (micros - 999n) / 1000n;
  const rest = Number(micros - millis * 1000n);
  return `${new Date(Number(millis)).toISOString().slice(0, 23)}${String(rest).padStart(3, "0")}Z`;
}

// src/events/transaction.ts
function transactionId(site, position) {
  return `${site}:${position}`;
}
function countOperations(transactions) {
  const counts = { insert: 0, update: 0, delete: 0, truncate: 0, message: 0 };
  for (const tx of transactions) for (const change of tx.changes) counts[change.op]++;
  return counts;
}
function tablesTouched(transactions) {
  const seen = /* @__PURE__ */ new Set();
  for (const tx of transactions) {
    for (const change of tx.changes) {
      if (change.op === "message") continue;
      const relations = change.op === "truncate" ? change.relations : [change.relation];
      for (const r of relations) seen.add(`${r.schema}.${r.table}`);
    }
  }
  return [...seen];
}

// src/bus/message-headers.ts
var SCHEMA_VERSION_HEADER = "sitesync-schema-version";
var MAX_TABLES_HEADER = 2e3;
var MAX_TABLE_HEADERS_BYTES = 16 * 1024;
var MAX_HEADER_KEY_BYTES = 255;
function tableHeaders(site, tables) {
  const headers = {};
  let bytes = 0;
  for (const table of tables) {
    const key = tableHeader(site, table);
    const keyBytes = Buffer.byteLength(key);
    bytes += keyBytes + 3;
    if (bytes > MAX_TABLE_HEADERS_BYTES || keyBytes > MAX_HEADER_KEY_BYTES) return { [allTablesHeader(site)]: 1 };
    headers[key] = 1;
  }
  return headers;
}
function messageHeaders(message, schemaVersion) {
  const txs = message.transactions;
  const first = txs[0];
  const last = txs[txs.length - 1];
  const counts = countOperations(txs);
  const touched = tablesTouched(txs);
  let tables = touched.join(",");
  if (tables.length > MAX_TABLES_HEADER) tables = `${tables.slice(0, MAX_TABLES_HEADER)}\u2026`;
  const headers = {
    [SCHEMA_VERSION_HEADER]: schemaVersion,
    "sitesync-site": message.site,
    "sitesync-source-kind": message.sourceKind,
    "sitesync-transactions": txs.length,
    "sitesync-tables": tables,
    "sitesync-operations": Object.entries(counts).filter(([, n]) => n > 0).map(([op, n]) => `${op}=${n}`).join(" ")
  };
  if (first && last) {
    headers["sitesync-position"] = first === last ? describePosition(first.position) : `${describePosition(first.position)}..${describePosition(last.position)}`;
    headers["sitesync-commit-time"] = microsToIso(last.commitTimeMicros);
  }
  if (message.part) headers["sitesync-part"] = `${message.part.index}${message.part.last ? " (last)" : ""}`;
  Object.assign(headers, tableHeaders(message.site, touched));
  return headers;
}
function messageId(message) {
  const first = message.transactions[0];
  const id = first ? first.id : `${message.site}:empty`;
  return message.part ? `${id}#${message.part.index}` : id;
}

// src/bus/topology.ts
async function declareTopology(channel, config) {
  const { exchange, archiveStream, archiveRetentionDays } = config.broker;
  const step = async (what, action) => {
    try {
      await action();
    } catch (error) {
      throw new SitesyncError(
        "SITESYNC_ERR_BROKER_REJECTED",
        `the broker refused to declare ${what}: ${error.message}; if it exists with other settings, delete it (rabbitmqctl delete_queue / delete_exchange) or give sitesync another name in the configuration`,
        { cause: error }
      );
    }
  };
  await step(`exchange ${exchange}`, () => channel.assertExchange(exchange, "topic", { durable: true }));
  await step(
    `stream ${archiveStream}`,
    () => channel.assertQueue(archiveStream, {
      durable: true,
      arguments: { "x-queue-type": "stream", "x-max-age": `${archiveRetentionDays}D` }
    })
  );
  await step(`binding of ${archiveStream}`, () => channel.bindQueue(archiveStream, exchange, "site.#"));
  const tables = tablesExchange(exchange);
  await step(`exchange ${tables}`, () => channel.assertExchange(tables, "headers", { durable: true }));
  await step(`binding of exchange ${tables}`, () => channel.bindExchange(tables, exchange, "site.#"));
  const sites = Object.keys(config.sites);
  for (const site of sites) {
    const queue = siteQueue(site);
    await step(
      `queue ${queue}`,
      () => channel.assertQueue(queue, {
        durable: true,
        arguments: { "x-queue-type": "quorum", "x-single-active-consumer": true }
      })
    );
    for (const other of sites) {
      if (other !== site) await step(`binding of ${queue}`, () => channel.bindQueue(queue, exchange, routingKey(other)));
    }
    await step(
      `queue ${parkingQueue(site)}`,
      () => channel.assertQueue(parkingQueue(site), { durable: true, arguments: { "x-queue-type": "quorum" } })
    );
  }
}

// src/events/avro-codec.ts
import { readdirSync, readFileSync as readFileSync2 } from "node:fs";
import avro from "avsc";
var CURRENT_SCHEMA_VERSION = 2;
var SCHEMA_DIR = new URL("../../schemas/", import.meta.url);
var SCHEMA_FILE = /^change-message\.v([1-9][0-9]*)\.avsc$/;
var MAX_EXACT_MICROS = 9007199254740990n;
var MIN_EXACT_MICROS = -4503599627370496n;
var SOURCE_KINDS = { postgres: true };
var REPLICA_IDENTITIES = { d: true, f: true, i: true, n: true };
var ArrayOverrun = class {
  constructor(at, count, remaining) {
    this.at = at;
    this.count = count;
    this.remaining = remaining;
  }
  at;
  count;
  remaining;
};
function readArrayBounded(tap) {
  const items = this.itemsType;
  const end = tap.buf.length;
  let out;
  let i = 0;
  let n;
  while ((n = tap.readLong()) !== 0) {
    if (n < 0) {
      n = -n;
      tap.skipLong();
    }
    const at = tap.pos;
    if (out === void 0) out = new Array(Math.min(n, Math.max(end - at, 0)));
    while (n-- > 0) {
      out[i++] = items._read(tap);
      if (tap.pos > end) throw new ArrayOverrun(at, i + n, end - at);
    }
  }
  return out ?? [];
}
var BoundedArrayType = class extends avro.types.ArrayType {
};
BoundedArrayType.prototype._read = readArrayBounded;
var TYPE_OPTIONS = {
  wrapUnions: "auto",
  typeHook: (schema, options) => {
    const s = schema;
    if (typeof s === "object" && s !== null && s.type === "array" && s.logicalType === void 0) {
      return new BoundedArrayType(schema, options);
    }
    return void 0;
  }
};
function checkTypes(type, seen) {
  if (seen.has(type)) return;
  seen.add(type);
  if (type.typeName === "union:wrapped") {
    throw new Error("avro-codec: a union in the change-message schema is wrapped; every union must be null|x");
  }
  if (type.typeName === "array" && type._read !== readArrayBounded) {
    throw new Error("avro-codec: an array type escaped the bounded reader (avsc internals changed?)");
  }
  for (const field of type.fields ?? []) checkTypes(field.type, seen);
  for (const branch of type.types ?? []) checkTypes(branch, seen);
  if (type.itemsType) checkTypes(type.itemsType, seen);
  if (type.valuesType) checkTypes(type.valuesType, seen);
  if (type.underlyingType) checkTypes(type.underlyingType, seen);
}
function loadCodec() {
  const types = /* @__PURE__ */ new Map();
  for (const file of readdirSync(SCHEMA_DIR).sort()) {
    const match = SCHEMA_FILE.exec(file);
    if (!match) continue;
    const version = Number(match[1]);
    const url = new URL(file, SCHEMA_DIR);
    let type;
    try {
      type = avro.Type.forSchema(JSON.parse(readFileSync2(url, "utf8")), { ...TYPE_OPTIONS });
    } catch (error) {
      throw new Error(`avro-codec: ${url.pathname} is not a valid Avro schema: ${oneLine(error)}`, { cause: error });
    }
    checkTypes(type, /* @__PURE__ */ new Set());
    types.set(version, type);
  }
  const current = types.get(CURRENT_SCHEMA_VERSION);
  if (current === void 0) {
    throw new Error(
      `avro-codec: no schema for the current version ${CURRENT_SCHEMA_VERSION} (change-message.v${CURRENT_SCHEMA_VERSION}.avsc) in ${SCHEMA_DIR.pathname}`
    );
  }
  const readers = /* @__PURE__ */ new Map();
  for (const [version, type] of types) {
    if (version === CURRENT_SCHEMA_VERSION) {
      readers.set(version, null);
      continue;
    }
    try {
      readers.set(version, current.createResolver(type));
    } catch (error) {
      throw new Error(
        `avro-codec: schema version ${version} cannot be read by version ${CURRENT_SCHEMA_VERSION}: ${oneLine(error)}`,
        { cause: error }
      );
    }
  }
  const known = [...readers.keys()].sort((a, b) => a - b).join(", ");
  return { current, readers, known };
}
var codec = loadCodec();
var scratch = Buffer.allocUnsafeSlow(64 * 1024);
var MAX_SCRATCH = 16 * 1024 * 1024;
function encodeMessage(message) {
  let wire;
  try {
    wire = toWire(message);
    return write(wire);
  } catch (error) {
    if (error instanceof SitesyncError) throw error;
    const problem = wire === void 0 ? void 0 : wireProblem(wire);
    throw invalid(`cannot encode change message: ${problem ?? oneLine(error)}`, error);
  }
}
function write(wire) {
  const type = codec.current;
  let end = type.encode(wire, scratch, 0);
  if (end < 0) {
    const size = scratch.length - end;
    if (size > MAX_SCRATCH) {
      const exact = Buffer.allocUnsafe(size);
      type.encode(wire, exact, 0);
      return exact;
    }
    scratch = Buffer.allocUnsafeSlow(Math.min(MAX_SCRATCH, Math.max(size, 2 * scratch.length)));
    end = type.encode(wire, scratch, 0);
  }
  const out = Buffer.allocUnsafe(end);
  scratch.copy(out, 0, 0, end);
  return out;
}
function toWire(message) {
  const relations = [];
  const indexes = /* @__PURE__ */ new Map();
  const relationIndex = (relation, t2, c) => {
    let index = indexes.get(relation);
    if (index === void 0) {
      index = relations.length;
      relations.push(relationToWire(relation, where(t2, c)));
      indexes.set(relation, index);
    }
    return index;
  };
  const transactions = new Array(message.transactions.length);
  let t = 0;
  for (const tx of message.transactions) {
    const micros = tx.commitTimeMicros;
    if (typeof micros !== "bigint" || micros > MAX_EXACT_MICROS || micros < MIN_EXACT_MICROS) {
      throw invalid(
        `cannot encode change message: transaction ${t} (${preview(tx.id)}) commit time ${String(micros)} \xB5s is not a bigint from -2^52 to 2^53-2 (years 1827 to 2255)`
      );
    }
    const changes = new Array(tx.changes.length);
    let c = 0;
    for (const change of tx.changes) {
      changes[c] = changeToWire(change, relationIndex, t, c);
      c++;
    }
    transactions[t++] = {
      id: tx.id,
      site: tx.site,
      position: tx.position,
      commitTimeMicros: Number(micros),
      sourceTxId: tx.sourceTxId,
      seen: Object.entries(tx.seen).map(([site, time]) => ({ site, commitTimeMicros: Number(time) })),
      changes
    };
  }
  return {
    site: message.site,
    sourceKind: message.sourceKind,
    previous: message.previous,
    relations,
    transactions,
    part: message.part
  };
}
function changeToWire(change, relationIndex, t, c) {
  switch (change.op) {
    case "insert":
      checkRow(change.newRow, t, c, "newRow");
      return rowChange("INSERT", relationIndex(change.relation, t, c), null, change.newRow);
    case "update":
      if (change.oldRow !== null) checkRow(change.oldRow, t, c, "oldRow");
      checkRow(change.newRow, t, c, "newRow");
      return rowChange("UPDATE", relationIndex(change.relation, t, c), change.oldRow, change.newRow);
    case "delete":
      checkRow(change.oldRow, t, c, "oldRow");
      return rowChange("DELETE", relationIndex(change.relation, t, c), change.oldRow, null);
    case "truncate": {
      const indexes = change.relations.map((relation) => relationIndex(relation, t, c));
      return {
        op: "TRUNCATE",
        relation: null,
        relations: indexes,
        oldRow: null,
        newRow: null,
        cascade: change.cascade,
        restartIdentity: change.restartIdentity,
        prefix: null,
        content: null
      };
    }
    case "message":
      return {
        op: "MESSAGE",
        relation: null,
        relations: null,
        oldRow: null,
        newRow: null,
        cascade: null,
        restartIdentity: null,
        prefix: change.prefix,
        content: change.content
      };
    default:
      throw invalid(
        `cannot encode change message: ${where(t, c)} has unknown op ${preview(change.op)}`
      );
  }
}
function rowChange(op, relation, oldRow, newRow) {
  return {
    op,
    relation,
    relations: null,
    oldRow,
    newRow,
    cascade: null,
    restartIdentity: null,
    prefix: null,
    content: null
  };
}
function checkRow(row2, t, c, which) {
  const unchanged = row2.unchanged;
  if (unchanged.length === 0) return;
  const count = row2.values.length;
  for (const index of unchanged) {
    if (!(Number.isInteger(index) && index >= 0 && index < count)) {
      throw invalid(
        `cannot encode change message: ${where(t, c)} ${which} lists unchanged column ${String(index)} but has ${count} values`
      );
    }
  }
}
function relationToWire(relation, at) {
  const name = preview(`${relation.schema}.${relation.table}`);
  if (!Object.hasOwn(REPLICA_IDENTITIES, relation.replicaIdentity)) {
    throw invalid(
      `cannot encode change message: relation ${name} (first used by ${at}) has unknown replica identity ${preview(relation.replicaIdentity)}`
    );
  }
  return {
    schema: relation.schema,
    table: relation.table,
    replicaIdentity: relation.replicaIdentity,
    columns: relation.columns.map((column) => {
      const oid = column.typeOid;
      if (!(Number.isInteger(oid) && oid >= 0 && oid <= 4294967295)) {
        throw invalid(
          `cannot encode change message: relation ${name} column ${preview(column.name)} has type OID ${String(oid)}, not an unsigned 32-bit integer`
        );
      }
      return {
        name: column.name,
        type: column.type,
        typeOid: oid | 0,
        typeModifier: column.typeModifier,
        key: column.key
      };
    })
  };
}
function wireProblem(wire) {
  let problem;
  try {
    codec.current.isValid(wire, {
      errorHook: (path, value, type) => {
        problem ??= `${path.join(".") || "message"} = ${preview(value)} is not a valid Avro ${type.typeName}`;
      }
    });
  } catch {
  }
  return problem;
}
function where(t, c) {
  return `transaction ${t} change ${c}`;
}
function invalid(message, cause) {
  return new SitesyncError("SITESYNC_ERR_MESSAGE_INVALID", message, cause === void 0 ? void 0 : { cause });
}
function decodeMessage(body, writerVersion) {
  let label = "message body is not a sitesync Avro change message";
  try {
    const resolver = codec.readers.get(writerVersion);
    if (resolver === void 0) {
      throw new DecodeError(
        `message has sitesync-schema-version ${preview(writerVersion)}, which this reader does not know (known: ${codec.known})`
      );
    }
    label = `message body is not a sitesync v${writerVersion} Avro change message`;
    if (!Buffer.isBuffer(body)) throw new DecodeError(`${label}: the body is ${preview(body)}, not a Buffer`);
    let decoded;
    try {
      decoded = codec.current.decode(body, 0, resolver ?? void 0);
    } catch (error) {
      if (error instanceof ArrayOverrun) {
        throw new DecodeError(
          error.remaining > 0 ? `${label}: truncated at byte ${body.length} (an array at byte ${error.at} claims ${error.count} items, only ${error.remaining} bytes remain)` : `${label}: truncated at byte ${body.length}`
        );
      }
      throw new DecodeError(`${label}: ${oneLine(error)}`, { cause: error });
    }
    if (decoded.offset < 0) throw new DecodeError(`${label}: truncated at byte ${body.length}`);
    if (decoded.offset !== body.length) {
      throw new DecodeError(
        `${label}: ${body.length - decoded.offset} trailing byte(s) after the message ends at byte ${decoded.offset}`
      );
    }
    return fromWire(decoded.value, label);
  } catch (error) {
    if (error instanceof DecodeError) throw error;
    throw new DecodeError(`${label}: ${oneLine(error)}`, { cause: error });
  }
}
function fromWire(wire, label) {
  if (!Object.hasOwn(SOURCE_KINDS, wire.sourceKind)) {
    throw new DecodeError(`${label}: unknown source kind ${preview(wire.sourceKind)}`);
  }
  const relations = new Array(wire.relations.length);
  let r = 0;
  for (const relation of wire.relations) {
    relations[r] = relationFromWire(relation, r, label);
    r++;
  }
  const relationAt = (index, t2, c) => {
    const relation = relations[index];
    if (relation === void 0) {
      throw new DecodeError(
        `${label}: ${where(t2, c)} refers to relation ${index}, but the message has ${relations.length} relations`
      );
    }
    return relation;
  };
  const rowOf = (row2, t2, c, which, op) => {
    if (row2 === null) throw new DecodeError(`${label}: ${where(t2, c)} is ${op} without ${which}`);
    const { values, unchanged } = row2;
    for (const index of unchanged) {
      if (index < 0 || index >= values.length) {
        throw new DecodeError(
          `${label}: ${where(t2, c)} ${which} lists unchanged column ${index} but has ${values.length} values`
        );
      }
    }
    return { values, unchanged };
  };
  const transactions = new Array(wire.transactions.length);
  let t = 0;
  for (const tx of wire.transactions) {
    const changes = new Array(tx.changes.length);
    let c = 0;
    for (const change of tx.changes) {
      let decoded;
      switch (change.op) {
        case "INSERT":
          decoded = {
            op: "insert",
            relation: relationAt(required(change.relation, t, c, "relation", change.op, label), t, c),
            newRow: rowOf(change.newRow, t, c, "newRow", change.op)
          };
          break;
        case "UPDATE":
          decoded = {
            op: "update",
            relation: relationAt(required(change.relation, t, c, "relation", change.op, label), t, c),
            oldRow: change.oldRow === null ? null : rowOf(change.oldRow, t, c, "oldRow", change.op),
            newRow: rowOf(change.newRow, t, c, "newRow", change.op)
          };
          break;
        case "DELETE":
          decoded = {
            op: "delete",
            relation: relationAt(required(change.relation, t, c, "relation", change.op, label), t, c),
            oldRow: rowOf(change.oldRow, t, c, "oldRow", change.op)
          };
          break;
        case "TRUNCATE":
          decoded = {
            op: "truncate",
            relations: required(change.relations, t, c, "relations", change.op, label).map(
              (index) => relationAt(index, t, c)
            ),
            cascade: required(change.cascade, t, c, "cascade", change.op, label),
            restartIdentity: required(change.restartIdentity, t, c, "restartIdentity", change.op, label)
          };
          break;
        case "MESSAGE":
          decoded = {
            op: "message",
            prefix: required(change.prefix, t, c, "prefix", change.op, label),
            content: required(change.content, t, c, "content", change.op, label)
          };
          break;
        default:
          throw new DecodeError(`${label}: ${where(t, c)} has unknown op ${preview(change.op)}`);
      }
      changes[c++] = decoded;
    }
    transactions[t++] = {
      id: tx.id,
      site: tx.site,
      position: tx.position,
      commitTimeMicros: BigInt(tx.commitTimeMicros),
      sourceTxId: tx.sourceTxId,
      seen: Object.fromEntries(tx.seen.map((s) => [s.site, BigInt(s.commitTimeMicros)])),
      changes
    };
  }
  return {
    site: wire.site,
    sourceKind: wire.sourceKind,
    previous: wire.previous,
    transactions,
    part: wire.part === null ? null : { index: wire.part.index, last: wire.part.last }
  };
}
function required(value, t, c, field, op, label) {
  if (value === null) throw new DecodeError(`${label}: ${where(t, c)} is ${op} without ${field}`);
  return value;
}
function relationFromWire(relation, index, label) {
  const identity = relation.replicaIdentity;
  if (!Object.hasOwn(REPLICA_IDENTITIES, identity)) {
    throw new DecodeError(
      `${label}: relation ${index} (${preview(`${relation.schema}.${relation.table}`)}) has unknown replica identity ${preview(identity)}`
    );
  }
  return {
    schema: relation.schema,
    table: relation.table,
    replicaIdentity: identity,
    columns: relation.columns.map(
      (column) => ({
        name: column.name,
        type: column.type,
        typeOid: column.typeOid >>> 0,
        typeModifier: column.typeModifier,
        key: column.key
      })
    )
  };
}
function oneLine(error) {
  let text;
  try {
    text = error instanceof Error ? error.message : String(error);
  } catch {
    text = "unprintable error";
  }
  return text.replace(/\s+/g, " ").trim() || "unknown error";
}
function preview(value) {
  try {
    if (typeof value === "string") return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}\u2026` : value);
    if (Buffer.isBuffer(value)) return `a ${value.length}-byte Buffer`;
    if (value === null || typeof value !== "object") return String(value);
    return Array.isArray(value) ? `an array of ${value.length}` : "an object";
  } catch {
    return "an unprintable value";
  }
}

// src/session-loop.ts
var FIRST_DELAY_MS = 500;
var MAX_DELAY_MS = 3e4;
var HEALTHY_FOR_MS = 1e4;
var SessionLoop = class {
  constructor(logger) {
    this.logger = logger;
  }
  logger;
  stopping = false;
  wake = null;
  endSession = null;
  get stopped() {
    return this.stopping;
  }
  /** `session` calls `healthy` once it works, and `onStop` with how to end it early. */
  async run(session) {
    let attempt = 0;
    let worked = false;
    while (!this.stopping) {
      let healthySince = null;
      try {
        await session(
          () => {
            healthySince = Date.now();
            worked = true;
          },
          (end) => {
            this.endSession = end;
            if (this.stopping) end();
          }
        );
      } catch (error) {
        const fatal = error instanceof SitesyncError && error.consequence === "fatal";
        if (fatal && !worked) throw error;
        if (this.stopping) break;
        if (healthySince !== null && Date.now() - healthySince >= HEALTHY_FOR_MS) attempt = 0;
        const delay = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** Math.min(attempt++, 6));
        this.logger[fatal ? "error" : "warn"]({ code: error.code, retryInMs: delay }, describeError(error));
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, delay);
          this.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      } finally {
        this.endSession = null;
      }
    }
  }
  /** Ends the current session (it finishes what is in flight) and the loop. */
  stop() {
    this.stopping = true;
    this.wake?.();
    this.endSession?.();
  }
};

// src/apply/apply-runner.ts
var ApplyRunner = class {
  constructor(options) {
    this.options = options;
    this.loop = new SessionLoop(options.logger);
  }
  options;
  loop;
  /** Runs sessions until `stop`; throws only on a fatal error. */
  run() {
    return this.loop.run((healthy, onStop) => this.session(healthy, onStop));
  }
  /** Finish the message being applied, then return from run(). */
  stop() {
    this.loop.stop();
  }
  async session(onHealthy, onStop) {
    const { config, site, logger } = this.options;
    const connection = await connectBroker(config.broker.url, `sitesync apply ${site}`);
    const sources = /* @__PURE__ */ new Map();
    let broken = null;
    let endWaiting = null;
    const ended = new Promise((resolve) => endWaiting = resolve);
    const end = (error) => {
      broken ??= error;
      endWaiting?.();
    };
    onStop(() => end(null));
    connection.on("error", (error) => end(error));
    connection.on("close", () => end(new SitesyncError("SITESYNC_ERR_BROKER_UNREACHABLE", "the connection to RabbitMQ closed; sitesync reconnects")));
    try {
      const channel = await connection.createChannel();
      channel.on("error", (error) => end(error));
      channel.on("close", () => end(new SitesyncError("SITESYNC_ERR_BROKER_UNREACHABLE", "the consuming channel closed; sitesync reconnects")));
      await declareTopology(channel, config);
      const parking = await connection.createConfirmChannel();
      const ctx = { channel, parking, sources, deferred: [], parkedReturned: false, waiting: () => backlog.length, alive: () => broken === null && !this.loop.stopped };
      parking.on("return", () => ctx.parkedReturned = true);
      const backlog = [];
      let working = false;
      const pump = async () => {
        if (working) return;
        working = true;
        try {
          while (backlog.length > 0 && ctx.alive()) await this.handle(ctx, backlog.shift());
        } catch (error) {
          end(error);
        } finally {
          working = false;
        }
      };
      await channel.prefetch(config.apply.prefetch);
      await channel.consume(siteQueue(site), (delivery) => {
        if (delivery === null) return end(new SitesyncError("SITESYNC_ERR_BROKER_UNREACHABLE", `queue ${siteQueue(site)} was deleted; sitesync declares it again`));
        backlog.push(delivery);
        void pump();
      });
      onHealthy();
      this.options.events.emit("apply:consuming", { site });
      logger.info({ queue: siteQueue(site) }, "applying");
      await ended;
      while (working) await sleep(10);
      if (broken) throw broken;
    } finally {
      for (const state of sources.values()) await state.session.close();
      await connection.close().catch(() => void 0);
    }
  }
  async handle(ctx, delivery) {
    const { config, site } = this.options;
    let message;
    try {
      const version = Number(delivery.properties.headers?.[SCHEMA_VERSION_HEADER] ?? NaN);
      if (!Number.isInteger(version)) throw new SitesyncError("SITESYNC_ERR_MESSAGE_INVALID", `message has no ${SCHEMA_VERSION_HEADER} header: it was not published by sitesync`);
      message = decodeMessage(delivery.content, version);
    } catch (error) {
      await this.park(ctx, delivery.content, delivery.properties.headers ?? {}, "unknown", error);
      ctx.channel.ack(delivery);
      return;
    }
    if (!(message.site in config.sites) || message.site === site) {
      const why = message.site === site ? `it comes from site ${site} itself` : `site ${JSON.stringify(message.site)} is not in the configuration`;
      await this.park(ctx, delivery.content, delivery.properties.headers ?? {}, message.site, new SitesyncError("SITESYNC_ERR_MESSAGE_INVALID", `message cannot be applied: ${why}; add the site to the configuration, then retry it from the parking queue`));
      ctx.channel.ack(delivery);
      return;
    }
    const state = await this.sourceState(ctx, message.site);
    for (let attempt = 0; ctx.alive(); attempt++) {
      try {
        await this.applyMessage(ctx, state, message, delivery);
        if (state.halted) {
          this.options.logger.info({ source: message.site }, "source resumed");
          this.options.events.emit("apply:resumed", { site, source: message.site });
          state.halted = null;
        }
        return;
      } catch (error) {
        const kind = this.options.sink.classify(error);
        if (kind !== "transient") state.progress = await state.session.progress().catch(() => state.progress);
        if (kind === "data" && !message.part && this.options.config.apply.onDataError === "park") {
          await this.applyParkingFailures(ctx, state, message, delivery);
          return;
        }
        if (kind === "transient" && ctx.deferred.length > 0) {
          throw new SitesyncError("SITESYNC_ERR_POSTGRES_UNREACHABLE", `the connection to site ${this.options.site}'s PostgreSQL failed with commits not yet on disk (${describeError(error)}); their messages are delivered again`, { cause: error });
        }
        await this.waitAndRecover(state, message.site, kind, error, attempt);
      }
    }
  }
  /** Applies a message. Duplicates are acknowledged, gaps throw, parts stay open until the last. */
  async applyMessage(ctx, state, message, delivery) {
    const { site, events } = this.options;
    const source = message.site;
    const applied = (p) => state.progress !== null && comparePositions(p, state.progress) <= 0;
    if (delivery.properties.headers?.[RETRY_HEADER] === true && !message.part) {
      try {
        await state.session.apply(message.transactions);
      } catch (error) {
        if (this.options.sink.classify(error) !== "data") throw error;
        const { [RETRY_HEADER]: _retry, ...headers } = delivery.properties.headers ?? {};
        await this.park(ctx, delivery.content, headers, source, error, message.transactions[0]);
        ctx.channel.ack(delivery);
        return;
      }
      this.ackDeferred(ctx);
      ctx.channel.ack(delivery);
      const last2 = message.transactions[message.transactions.length - 1];
      if (last2 && !applied(last2.position)) state.progress = last2.position;
      if (last2) events.emit("apply:applied", { site, source, transactions: message.transactions.length, rows: message.transactions.reduce((n, tx) => n + tx.changes.length, 0), position: last2.position, commitTimeMicros: last2.commitTimeMicros });
      return;
    }
    if (message.part) {
      const tx = message.transactions[0];
      const part = message.part;
      if (applied(tx.position)) {
        events.emit("apply:duplicate", { site, source, position: tx.position });
        ctx.channel.ack(delivery);
        return;
      }
      if (part.index === 0) this.checkGap(state, message);
      await state.session.applyPart(tx, part);
      this.ackDeferred(ctx);
      ctx.channel.ack(delivery);
      if (part.last) {
        state.progress = tx.position;
        events.emit("apply:applied", { site, source, transactions: 1, rows: tx.changes.length, position: tx.position, commitTimeMicros: tx.commitTimeMicros });
      }
      return;
    }
    const fresh = message.transactions.filter((tx) => !applied(tx.position));
    for (const tx of message.transactions) if (applied(tx.position)) events.emit("apply:duplicate", { site, source, position: tx.position });
    if (fresh.length === 0) {
      ctx.channel.ack(delivery);
      return;
    }
    if (fresh[0] === message.transactions[0]) this.checkGap(state, message);
    const durable = ctx.waiting() === 0 || ctx.deferred.length >= MAX_DEFERRED_ACKS;
    await state.session.apply(fresh, { durable });
    const last = fresh[fresh.length - 1];
    state.progress = last.position;
    if (durable) {
      this.ackDeferred(ctx);
      ctx.channel.ack(delivery);
    } else ctx.deferred.push(delivery);
    events.emit("apply:applied", { site, source, transactions: fresh.length, rows: fresh.reduce((n, tx) => n + tx.changes.length, 0), position: last.position, commitTimeMicros: last.commitTimeMicros });
  }
  /** Acknowledges what group commit held: called right after a durable commit, which covers them. */
  ackDeferred(ctx) {
    for (const d of ctx.deferred) ctx.channel.ack(d);
    ctx.deferred.length = 0;
  }
  checkGap(state, message) {
    if (message.previous === null || state.progress === null) return;
    if (comparePositions(message.previous, state.progress) <= 0) return;
    throw new SitesyncError(
      "SITESYNC_ERR_GAP",
      `a message from site ${message.site} follows position ${describePosition(message.previous)}, but ${this.options.site} has applied only up to ${describePosition(state.progress)}: a message is missing (was ${siteQueue(this.options.site)} purged?); replay the missing range from the archive to resume`
    );
  }
  /** A transaction the target refused: apply the message's transactions one by one, parking each refused one. */
  async applyParkingFailures(ctx, state, message, delivery) {
    let previous = message.previous;
    for (const tx of message.transactions) {
      const single = { ...message, previous, transactions: [tx], part: null };
      previous = tx.position;
      if (state.progress !== null && comparePositions(tx.position, state.progress) <= 0) continue;
      try {
        await state.session.apply([tx]);
      } catch (error) {
        if (this.options.sink.classify(error) !== "data") throw error;
        await this.park(ctx, encodeMessage(single), messageHeaders(single, CURRENT_SCHEMA_VERSION), message.site, error, tx);
        await state.session.skip(tx.position, tx.commitTimeMicros);
      }
      state.progress = tx.position;
    }
    this.ackDeferred(ctx);
    ctx.channel.ack(delivery);
  }
  async waitAndRecover(state, source, kind, error, attempt) {
    const { site, logger, events, config } = this.options;
    const reason = describeError(error);
    if (kind !== "transient") {
      if (state.halted !== reason) {
        logger.error({ source, code: error.code ?? error.code }, `applying from ${source} halted: ${reason}`);
        events.emit("apply:halted", { site, source, reason });
        state.halted = reason;
      }
    } else {
      logger.warn({ source, attempt }, `applying from ${source} failed, retrying: ${reason}`);
    }
    await sleep(kind !== "transient" ? config.apply.retrySeconds * 1e3 : Math.min(1e4, 200 * 2 ** Math.min(attempt, 5)));
    if (kind === "transient") {
      await state.session.close();
      state.session = await this.options.sink.openSession(source);
      state.progress = await state.session.progress();
    }
  }
  async sourceState(ctx, source) {
    let state = ctx.sources.get(source);
    if (!state) {
      const session = await this.options.sink.openSession(source);
      state = { session, progress: await session.progress(), halted: null };
      ctx.sources.set(source, state);
      this.options.logger.info({ source, applied: describePosition(state.progress) }, "applying from source");
    }
    return state;
  }
  async park(ctx, body, headers, source, error, tx) {
    const { site, logger, events } = this.options;
    const code = error.code ?? "SITESYNC_ERR_APPLY_DATA";
    const reason = describeError(error);
    ctx.parkedReturned = false;
    ctx.parking.publish("", parkingQueue(site), body, {
      persistent: true,
      mandatory: true,
      headers: {
        ...headers,
        "sitesync-parked-reason": reason.slice(0, 2e3),
        "sitesync-parked-code": code,
        "sitesync-parked-source": source,
        "sitesync-parked-at": microsToIso(BigInt(Date.now()) * 1000n),
        [PARKED_ID_HEADER]: randomUUID(),
        ...tx ? { "sitesync-parked-transaction": tx.id } : {}
      }
    });
    await ctx.parking.waitForConfirms();
    if (ctx.parkedReturned) {
      throw new SitesyncError("SITESYNC_ERR_BROKER_REJECTED", `queue ${parkingQueue(site)} does not exist, so a message could not be parked; sitesync reconnects and declares it again`);
    }
    logger.error({ source, code, tx: tx?.id, queue: parkingQueue(site) }, `message parked: ${reason}`);
    events.emit("apply:parked", { site, source, reason, code: String(code) });
  }
};
var MAX_DEFERRED_ACKS = 256;

// src/apply/conflict-policy.ts
var DEFAULT_POLICY = { policy: "last-writer-wins", priority: [] };
function isConcurrent(local, remoteSite, remoteSeen) {
  if (local === null || local.site === remoteSite) return false;
  const known = remoteSeen[local.site];
  return known === void 0 || local.commitTimeMicros > known;
}
function decide(kind, remote, local, policy) {
  switch (kind) {
    case "update_missing":
    case "delete_missing":
      return { resolution: "skip", winner: "none" };
    case "delete_origin_differs":
      return policy.policy === "keep-local" ? { resolution: "skip", winner: "local" } : { resolution: "apply", winner: "remote" };
    case "insert_exists":
    case "update_origin_differs": {
      if (local === null) return { resolution: "apply", winner: "remote" };
      const remoteWins = policy.policy === "keep-local" ? false : policy.policy === "site-priority" ? byPriority(remote, local, policy.priority) : lastWriterWins(remote, local);
      return remoteWins ? { resolution: "apply", winner: "remote" } : { resolution: "skip", winner: "local" };
    }
  }
}
function lastWriterWins(remote, local) {
  if (remote.commitTimeMicros !== local.commitTimeMicros) return remote.commitTimeMicros > local.commitTimeMicros;
  return remote.site > local.site;
}
function byPriority(remote, local, priority) {
  const rank = (site) => {
    const i = priority.indexOf(site);
    return i === -1 ? priority.length : i;
  };
  const r = rank(remote.site);
  const l = rank(local.site);
  return r !== l ? r < l : lastWriterWins(remote, local);
}
function policyResolver(conflicts) {
  const fallback = { policy: conflicts.policy, priority: conflicts.priority };
  return (schema, table) => {
    const own = conflicts.tables[`${schema}.${table}`];
    return own ? { policy: own.policy, priority: own.priority ?? conflicts.priority } : fallback;
  };
}

// src/capture/capture-runner.ts
import { setTimeout as sleep2 } from "node:timers/promises";

// src/bus/confirmed-publisher.ts
import { once } from "node:events";
var ConfirmedPublisher = class {
  constructor(channel, exchange) {
    this.channel = channel;
    this.exchange = exchange;
    channel.on("return", (message) => {
      const id = message.properties.messageId;
      const fields = message.fields;
      if (id) this.returned.set(id, `${fields.replyCode ?? ""} ${fields.replyText ?? "returned"}`.trim());
    });
    channel.on("close", () => this.closedError ??= new Error("channel closed"));
    channel.on("error", (error) => this.closedError = error);
  }
  channel;
  exchange;
  returned = /* @__PURE__ */ new Map();
  closedError = null;
  publish(routingKey2, body, messageId2, headers, timestampSeconds) {
    if (this.closedError) return Promise.reject(brokerFailure(this.closedError));
    return new Promise((resolve, reject) => {
      const settle = (error) => {
        const returnedReason = this.returned.get(messageId2);
        this.returned.delete(messageId2);
        if (error) reject(brokerFailure(error));
        else if (returnedReason) reject(new SitesyncError("SITESYNC_ERR_BROKER_REJECTED", `message ${messageId2} was returned by RabbitMQ as unroutable (${returnedReason}); the exchange ${this.exchange} has no queue for ${routingKey2} \u2014 sitesync declares the topology at start, so check that nobody deleted it`));
        else resolve();
      };
      try {
        this.channel.publish(this.exchange, routingKey2, body, {
          persistent: true,
          mandatory: true,
          messageId: messageId2,
          headers,
          timestamp: timestampSeconds,
          contentType: "application/vnd.sitesync.change+avro",
          appId: "sitesync"
        }, settle);
      } catch (error) {
        reject(brokerFailure(error));
      }
    });
  }
  /** Resolves when the channel's write buffer has room again (TCP back-pressure or a blocked broker). */
  async drained() {
    await once(this.channel, "drain");
  }
};
function brokerFailure(error) {
  if (error instanceof SitesyncError) return error;
  return new SitesyncError("SITESYNC_ERR_BROKER_REJECTED", `RabbitMQ did not confirm a message (${error?.message ?? error}); sitesync reconnects and sends it again`, { cause: error });
}

// src/capture/checkpoint-tracker.ts
var CheckpointTracker = class {
  entries = [];
  head = 0;
  checkpoint = null;
  lastPublished;
  seen;
  constructor(resume) {
    this.lastPublished = resume.lastPublished;
    this.seen = resume.seen;
  }
  /** A message handed to the broker, not yet confirmed. */
  published(checkpoint, lastPosition, seen) {
    const entry = { checkpoint, lastPosition, seen, done: false };
    this.entries.push(entry);
    return entry;
  }
  /** A position that is safe as soon as everything before it is (skipped transactions, keepalives). */
  passed(checkpoint, seen) {
    const tail = this.entries[this.entries.length - 1];
    if (tail && tail.done && this.entries.length > this.head && tail.lastPosition === null) {
      tail.checkpoint = checkpoint;
      tail.seen = seen;
      return;
    }
    this.entries.push({ checkpoint, lastPosition: null, seen, done: true });
  }
  confirmed(entry) {
    entry.done = true;
  }
  /** Moves over done entries; returns where the source may now be confirmed. */
  advance() {
    while (this.head < this.entries.length) {
      const entry = this.entries[this.head];
      if (!entry || !entry.done) break;
      if (entry.checkpoint !== null) {
        this.checkpoint = entry.checkpoint;
        this.seen = entry.seen;
      }
      if (entry.lastPosition !== null) this.lastPublished = entry.lastPosition;
      this.head++;
    }
    if (this.head > 1024 && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
    return { checkpoint: this.checkpoint, lastPublished: this.lastPublished, seen: this.seen };
  }
  /** Messages published and not yet confirmed. */
  get unconfirmed() {
    let n = 0;
    for (let i = this.head; i < this.entries.length; i++) if (!this.entries[i]?.done) n++;
    return n;
  }
};

// src/capture/capture-runner.ts
var MAX_UNCONFIRMED_BYTES = 64 * 1024 * 1024;
var LAG_INTERVAL_MS = 5e3;
var CaptureRunner = class {
  constructor(options) {
    this.options = options;
    this.site = options.source.site;
    this.loop = new SessionLoop(options.logger);
  }
  options;
  site;
  loop;
  /** Runs sessions until `stop`; throws only on a fatal error (configuration, permissions). */
  run() {
    return this.loop.run(async (healthy, onStop) => {
      await this.options.source.prepare();
      await this.session(healthy, onStop);
    });
  }
  /** Finish what is in flight (publish, wait for confirms, confirm the source), then return from run(). */
  stop() {
    this.loop.stop();
  }
  async session(onHealthy, onStop) {
    const { config, source, events, logger } = this.options;
    const connection = await connectBroker(config.broker.url, `sitesync capture ${this.site}`);
    let dead = false;
    let failure = null;
    const failed = new Promise((_, reject) => failure = (error) => (dead = true, reject(error)));
    failed.catch(() => void 0);
    connection.on("error", (error) => failure?.(error));
    connection.on("close", () => failure?.(new SitesyncError("SITESYNC_ERR_BROKER_UNREACHABLE", "the connection to RabbitMQ closed; sitesync reconnects")));
    connection.on("blocked", (reason) => logger.warn({ reason }, "RabbitMQ blocks publishing (resource alarm); capture waits, the slot keeps the WAL"));
    connection.on("unblocked", () => logger.info("RabbitMQ accepts publishing again"));
    const timers = [];
    try {
      const channel = await connection.createConfirmChannel();
      await declareTopology(channel, config);
      const publisher = new ConfirmedPublisher(channel, config.broker.exchange);
      const capture = config.capture;
      const resume = await source.resumePoint();
      let previous = resume.lastPublished;
      const tracker = new CheckpointTracker(resume);
      let batch = null;
      let flushScheduled = false;
      let unconfirmed = 0;
      let unconfirmedBytes = 0;
      let paused = false;
      let lastActivity = Date.now();
      let newestCommitMicros = 0n;
      const publish = (transactions, part, checkpoint, seen) => {
        if (dead) return;
        const t = tracker;
        const message = { site: this.site, sourceKind: source.kind, previous, transactions, part };
        const body = encodeMessage(message);
        const last = transactions[transactions.length - 1];
        const wholeDone = part === null || part.last;
        const entry = t.published(checkpoint, wholeDone ? last.position : null, seen);
        if (wholeDone) previous = last.position;
        unconfirmed++;
        unconfirmedBytes += body.length;
        if (!paused && (unconfirmed >= capture.maxUnconfirmedMessages || unconfirmedBytes >= MAX_UNCONFIRMED_BYTES)) {
          paused = true;
          source.pause();
        }
        events.emit("capture:published", { site: this.site, transactions: wholeDone ? transactions.length : 0, bytes: body.length });
        publisher.publish(routingKey(this.site), body, messageId(message), messageHeaders(message, CURRENT_SCHEMA_VERSION), Number(last.commitTimeMicros / 1000000n)).then(
          () => {
            t.confirmed(entry);
            unconfirmed--;
            unconfirmedBytes -= body.length;
            events.emit("capture:confirmed", { site: this.site, messages: 1 });
            if (paused && unconfirmed < capture.maxUnconfirmedMessages / 2 && unconfirmedBytes < MAX_UNCONFIRMED_BYTES / 2) {
              paused = false;
              source.resume();
            }
          },
          (error) => failure?.(error)
        );
      };
      const flush = () => {
        flushScheduled = false;
        if (!batch) return;
        const { transactions, checkpoint, seen } = batch;
        batch = null;
        publish(transactions, null, checkpoint, seen);
      };
      const passed = (checkpoint, seen) => {
        if (batch) {
          batch.checkpoint = checkpoint;
          batch.seen = seen;
        } else tracker.passed(checkpoint, seen);
      };
      const handler = {
        transaction: (tx, part, checkpoint) => {
          lastActivity = Date.now();
          newestCommitMicros = tx.commitTimeMicros;
          if (part === null || part.index === 0) events.emit("capture:transaction", { site: this.site, position: tx.position, rows: tx.changes.length, commitTimeMicros: tx.commitTimeMicros });
          if (part !== null) {
            flush();
            publish([tx], part, checkpoint, tx.seen);
            return;
          }
          batch ??= { transactions: [], bytes: 0, checkpoint: null, seen: tx.seen };
          batch.transactions.push(tx);
          batch.bytes += estimateBytes(tx);
          batch.checkpoint = checkpoint;
          batch.seen = tx.seen;
          if (batch.transactions.length >= capture.maxTransactionsPerMessage || batch.bytes >= capture.maxMessageBytes) flush();
          else if (!flushScheduled) {
            flushScheduled = true;
            setImmediate(flush);
          }
        },
        skipped: (position, checkpoint, reason, seen) => {
          lastActivity = Date.now();
          events.emit("capture:skipped", { site: this.site, position, reason });
          passed(checkpoint, seen);
        },
        idle: (checkpoint, seen) => passed(checkpoint, seen)
      };
      await source.open(handler);
      onHealthy();
      events.emit("capture:streaming", { site: this.site });
      logger.info({ lastPublished: previous }, "capture started");
      let confirmedCheckpoint = null;
      let confirming = Promise.resolve();
      let busy = false;
      const confirmFrontier = () => {
        busy = true;
        confirming = confirming.catch(() => void 0).then(async () => {
          const frontier = tracker.advance();
          if (frontier.checkpoint !== null && frontier.checkpoint !== confirmedCheckpoint) {
            await source.confirm(frontier.checkpoint, frontier);
            confirmedCheckpoint = frontier.checkpoint;
            events.emit("capture:slot-confirmed", { site: this.site, position: frontier.checkpoint });
          }
        }).finally(() => busy = false);
        return confirming;
      };
      timers.push(
        setInterval(() => {
          if (!busy) confirmFrontier().catch((error) => failure?.(error));
        }, capture.statusIntervalSeconds * 1e3)
      );
      if (capture.heartbeatSeconds > 0) {
        timers.push(
          setInterval(() => {
            if (Date.now() - lastActivity < capture.heartbeatSeconds * 1e3) return;
            lastActivity = Date.now();
            source.heartbeat().catch((error) => failure?.(error));
          }, capture.heartbeatSeconds * 1e3)
        );
      }
      timers.push(
        setInterval(() => {
          source.lag().then(
            (lag) => {
              if (!lag) return;
              const seconds = unconfirmed > 0 && newestCommitMicros > 0n ? Math.max(0, Date.now() / 1e3 - Number(newestCommitMicros) / 1e6) : 0;
              events.emit("capture:lag", { site: this.site, bytes: lag.bytes, seconds });
            },
            () => void 0
          );
        }, LAG_INTERVAL_MS)
      );
      const stopRequested = new Promise((resolve) => onStop(() => resolve("stop")));
      const outcome = await Promise.race([source.ended.then(() => "ended"), failed, stopRequested]);
      if (outcome === "stop") {
        source.pause();
        flush();
        const deadline = Date.now() + 1e4;
        while (unconfirmed > 0 && Date.now() < deadline) await Promise.race([sleep2(20), failed]);
        await confirmFrontier();
        logger.info({ unconfirmed, confirmed: confirmedCheckpoint }, "capture stopped");
      } else {
        throw new SitesyncError("SITESYNC_ERR_POSTGRES_UNREACHABLE", `the replication stream of site ${this.site} ended; sitesync restarts it`);
      }
    } finally {
      failure = null;
      for (const timer of timers) clearInterval(timer);
      await source.close().catch(() => void 0);
      await connection.close().catch(() => void 0);
    }
  }
};
function estimateBytes(tx) {
  let bytes = 64;
  for (const change of tx.changes) {
    bytes += 16;
    if (change.op === "insert" || change.op === "update") for (const v of change.newRow.values) bytes += v === null ? 1 : v.length + 2;
    if ((change.op === "update" || change.op === "delete") && change.oldRow) for (const v of change.oldRow.values) bytes += v === null ? 1 : v.length + 2;
  }
  return bytes;
}

// src/observability/pipeline-events.ts
import { EventEmitter } from "node:events";
var PipelineEvents = class extends EventEmitter {
};

// src/observability/wal-retention-watch.ts
var DEFAULT_READ_TIMEOUT_MS = 1e4;
var WalRetentionWatch = class {
  constructor(options) {
    this.options = options;
    this.readTimeoutMs = options.readTimeoutMs ?? DEFAULT_READ_TIMEOUT_MS;
  }
  options;
  readTimeoutMs;
  timer = null;
  round = null;
  started = false;
  stopping = false;
  /** Slots warned about, until they hold no more than the threshold again. */
  over = /* @__PURE__ */ new Set();
  /** Sites whose read was given up (timed out) and has not settled yet: not read again until it does. */
  unanswered = /* @__PURE__ */ new Set();
  /** Starts the rounds: the first at once, then one every interval. No effect once stopped. */
  start() {
    if (this.started || this.stopping) return;
    this.started = true;
    this.schedule(0);
  }
  /** Ends the rounds; resolves once a round in progress has finished. Never rejects. */
  async stop() {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.round;
  }
  /** Runs one round now (or joins the one in progress): read every slot, emit, warn. Never rejects. */
  check() {
    if (this.stopping) return this.round ?? Promise.resolve();
    this.round ??= this.runRound().catch((error) => this.options.logger.warn(`WAL retention watch: round failed, next one as planned: ${describeError(error)}`)).finally(() => {
      this.round = null;
    });
    return this.round;
  }
  schedule(delayMs) {
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.check().then(() => {
        if (!this.stopping) this.schedule(this.options.intervalSeconds * 1e3);
      });
    }, delayMs);
    this.timer.unref();
  }
  async runRound() {
    const { sites, logger } = this.options;
    const readings = await Promise.all(sites.map((slotSite) => this.read(slotSite)));
    if (this.stopping) return;
    sites.forEach((slotSite, i) => {
      const reading = readings[i];
      if (!reading) return;
      try {
        this.report(slotSite, reading);
      } catch (error) {
        logger.warn({ slotSite }, `WAL retention watch: reporting the slot of site ${slotSite} failed: ${describeError(error)}`);
      }
    });
  }
  /** The slot's reading, or undefined when the site cannot be read this round (logged at debug). */
  async read(slotSite) {
    const { logger, readSlot } = this.options;
    if (this.unanswered.has(slotSite)) {
      logger.debug({ slotSite }, `slot of site ${slotSite} not read this round: the previous read has not answered yet`);
      return void 0;
    }
    this.unanswered.add(slotSite);
    const reading = (async () => {
      try {
        return await readSlot(slotSite);
      } finally {
        this.unanswered.delete(slotSite);
      }
    })();
    reading.catch(() => void 0);
    let timeout;
    const givenUp = new Promise((_, reject) => {
      timeout = setTimeout(() => reject(new Error(`no answer within ${this.readTimeoutMs} ms`)), this.readTimeoutMs);
      timeout.unref();
    });
    try {
      return await Promise.race([reading, givenUp]);
    } catch (error) {
      logger.debug({ slotSite }, `slot of site ${slotSite} not read this round (its own process reports its errors): ${describeError(error)}`);
      return void 0;
    } finally {
      clearTimeout(timeout);
    }
  }
  report(slotSite, reading) {
    const { site, events, logger, warnBytes } = this.options;
    const retainedBytes = reading.exists ? reading.retainedBytes ?? 0 : 0;
    const active = reading.exists && reading.active;
    if (!reading.exists) logger.debug({ slotSite }, `slot ${slotName(slotSite)} of site ${slotSite} does not exist (yet)`);
    events.emit("watch:slot", { site, slotSite, retainedBytes, active });
    if (warnBytes <= 0) return;
    if (retainedBytes > warnBytes) {
      if (this.over.has(slotSite)) return;
      this.over.add(slotSite);
      logger.warn({ slotSite, slot: slotName(slotSite), retainedBytes, active, warnBytes }, retentionWarning(slotSite, retainedBytes, active));
    } else if (this.over.delete(slotSite)) {
      logger.info({ slotSite, slot: slotName(slotSite), retainedBytes, active, warnBytes }, `slot ${slotName(slotSite)} on site ${slotSite} holds ${formatBytes(retainedBytes)} of WAL again, no more than ${formatBytes(warnBytes)}`);
    }
  }
};
function retentionWarning(slotSite, retainedBytes, active) {
  const slot = slotName(slotSite);
  const held = `slot ${slot} on site ${slotSite} holds ${formatBytes(retainedBytes)} of WAL`;
  return active ? `${held} although a process is streaming from it: site ${slotSite} is falling behind; check that process's log and sitesync_capture_lag_bytes (broker blocked or slow, a very large transaction) before the disk fills` : `${held} and no process is streaming from it: start "sitesync run --site ${slotSite}", or drop the slot if the site is gone (SELECT pg_drop_replication_slot('${slot}')), before the disk fills`;
}
function formatBytes(bytes) {
  const units = ["KiB", "MiB", "GiB", "TiB", "PiB"];
  if (bytes < 1024) return `${bytes} B`;
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1023.95 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

// connectors/postgres/postgres-sink.ts
import pg from "pg";

// connectors/postgres/apply-plan.ts
import { createHash } from "node:crypto";
function quoteIdent(name) {
  return `"${name.replace(/"/g, '""')}"`;
}
function qualifiedName(schema, table) {
  return `${quoteIdent(schema)}.${quoteIdent(table)}`;
}
function planChange(change, target) {
  switch (change.op) {
    case "insert":
      return [planInsert(change.relation, change.newRow, target(change.relation.schema, change.relation.table))];
    case "update":
      return [planUpdate(change.relation, change.oldRow, change.newRow, target(change.relation.schema, change.relation.table))];
    case "delete":
      return [planDelete(change.relation, change.oldRow, target(change.relation.schema, change.relation.table))];
    case "truncate": {
      const names = change.relations.map((r) => {
        const t = target(r.schema, r.table);
        return qualifiedName(t.schema, t.table);
      });
      const text = `TRUNCATE ${names.join(", ")}${change.restartIdentity ? " RESTART IDENTITY" : ""}${change.cascade ? " CASCADE" : ""}`;
      return [statement(text, [], false)];
    }
    case "message":
      return [];
  }
}
function planInsert(relation, row2, target) {
  const names = [];
  const values = [];
  relation.columns.forEach((column, i) => {
    if (row2.unchanged.includes(i)) return;
    requireColumn(target, column.name);
    names.push(quoteIdent(column.name));
    values.push(row2.values[i] ?? null);
  });
  const placeholders = values.map((_, i) => `$${i + 1}`).join(", ");
  const onConflict = target.primaryKey ? ` ON CONFLICT (${target.primaryKey.map(quoteIdent).join(", ")}) DO NOTHING` : "";
  const text = `INSERT INTO ${qualifiedName(target.schema, target.table)} (${names.join(", ")}) OVERRIDING SYSTEM VALUE VALUES (${placeholders})${onConflict}`;
  return statement(text, values, target.primaryKey !== null);
}
function planUpdate(relation, oldRow, newRow, target) {
  const sets = [];
  const values = [];
  relation.columns.forEach((column, i) => {
    if (newRow.unchanged.includes(i)) return;
    requireColumn(target, column.name);
    values.push(newRow.values[i] ?? null);
    sets.push(`${quoteIdent(column.name)} = $${values.length}`);
  });
  const { clause } = rowMatch(relation, oldRow ?? newRow, target, values);
  return statement(`UPDATE ${qualifiedName(target.schema, target.table)} SET ${sets.join(", ")} WHERE ${clause}`, values, true);
}
function planInsertBatch(relation, rows, target) {
  const columns = relation.columns.map((c) => c.name);
  const values = columns.map(() => []);
  for (const row2 of rows) row2.values.forEach((v, i) => values[i].push(v));
  const casts = columns.map((name, i) => {
    requireColumn(target, name);
    const type = target.columnTypes?.get(name);
    if (!type) throw new SitesyncError("SITESYNC_ERR_APPLY_SCHEMA", `the type of column ${JSON.stringify(name)} of ${target.schema}.${target.table} is not known at the target`);
    return `u.c${i}::${type}`;
  });
  const arrays = columns.map((_, i) => `$${i + 1}::text[]`).join(", ");
  const aliases = columns.map((_, i) => `c${i}`).join(", ");
  const pk = target.primaryKey;
  const tail = pk ? ` ON CONFLICT (${pk.map(quoteIdent).join(", ")}) DO NOTHING` : "";
  const text = `INSERT INTO ${qualifiedName(target.schema, target.table)} (${columns.map(quoteIdent).join(", ")}) OVERRIDING SYSTEM VALUE SELECT ${casts.join(", ")} FROM unnest(${arrays}) AS u(${aliases})${tail}`;
  return statement(text, values, false);
}
function planOverwrite(relation, newRow, target) {
  return planUpdate(relation, null, newRow, target);
}
function planRowLookup(relation, row2, target, commitTimestamps = true) {
  const values = [];
  const { clause, keyNames } = rowMatch(relation, row2, target, values);
  const locked = `(SELECT xmin, xmin = pg_current_xact_id()::xid AS mine FROM ${qualifiedName(target.schema, target.table)} WHERE ${clause} FOR UPDATE) x`;
  const text = commitTimestamps ? `SELECT x.mine, (extract(epoch FROM c.timestamp) * 1000000)::int8::text AS committed_micros, c.roident FROM ${locked}, LATERAL pg_xact_commit_timestamp_origin(x.xmin) c` : `SELECT x.mine, NULL::text AS committed_micros, NULL::int AS roident FROM ${locked}`;
  return { statement: statement(text, values, false), key: Object.fromEntries(keyNames.map((name, i) => [name, values[i] ?? null])) };
}
function planDelete(relation, oldRow, target) {
  const values = [];
  const { clause } = rowMatch(relation, oldRow, target, values);
  return statement(`DELETE FROM ${qualifiedName(target.schema, target.table)} WHERE ${clause}`, values, true);
}
function rowMatch(relation, row2, target, values) {
  const indexOf = (name2) => relation.columns.findIndex((c) => c.name === name2);
  let keyNames;
  if (relation.replicaIdentity === "f") keyNames = target.primaryKey;
  else keyNames = relation.columns.filter((c) => c.key).map((c) => c.name);
  if (keyNames && keyNames.length > 0 && keyNames.every((k) => indexOf(k) >= 0 && !row2.unchanged.includes(indexOf(k)))) {
    const clause = keyNames.map((name2) => {
      requireColumn(target, name2);
      values.push(row2.values[indexOf(name2)] ?? null);
      return `${quoteIdent(name2)} = $${values.length}`;
    }).join(" AND ");
    return { clause, keyNames: [...keyNames] };
  }
  if (relation.replicaIdentity !== "f") {
    throw new SitesyncError(
      "SITESYNC_ERR_APPLY_SCHEMA",
      `table ${relation.schema}.${relation.table} has no usable replica identity key at the source; give it a primary key or run ALTER TABLE ... REPLICA IDENTITY FULL there`
    );
  }
  const conditions = relation.columns.map((column, i) => {
    requireColumn(target, column.name);
    values.push(row2.values[i] ?? null);
    return `(${quoteIdent(column.name)})::text IS NOT DISTINCT FROM $${values.length}::text`;
  });
  const name = qualifiedName(target.schema, target.table);
  return {
    clause: `(tableoid, ctid) = (SELECT tableoid, ctid FROM ${name} WHERE ${conditions.join(" AND ")} LIMIT 1)`,
    keyNames: relation.columns.map((c) => c.name)
  };
}
function requireColumn(target, name) {
  if (!target.columns.has(name)) {
    throw new SitesyncError(
      "SITESYNC_ERR_APPLY_SCHEMA",
      `column ${JSON.stringify(name)} of table ${target.schema}.${target.table} does not exist at the target; add it as at the source (sitesync retries and resumes by itself)`
    );
  }
}
var statementNames = /* @__PURE__ */ new Map();
function statement(text, values, expectsRow) {
  let name = statementNames.get(text);
  if (name === void 0) {
    name = `sitesync_${createHash("sha1").update(text).digest("hex").slice(0, 20)}`;
    if (statementNames.size < 1e4) statementNames.set(text, name);
  }
  return { name, text, values, expectsRow };
}

// connectors/postgres/postgres-errors.ts
var TRANSIENT = [/^08/, /^53/, /^57P0[1-3]$/, /^40001$/, /^40P01$/, /^55P03$/, /^55006$/];
var SCHEMA = [/^42P01$/, /^42703$/, /^42704$/, /^42804$/, /^42883$/, /^3F000$/, /^42501$/];
function classifyApplyError(error) {
  if (error instanceof SitesyncError) {
    return error.consequence === "halt-source" || error.consequence === "fatal" ? "schema" : error.consequence === "park" ? "data" : "transient";
  }
  const code = error?.code;
  if (!code) return "transient";
  if (isSocketError(error)) return "transient";
  if (TRANSIENT.some((re) => re.test(code))) return "transient";
  if (SCHEMA.some((re) => re.test(code))) return "schema";
  return "data";
}
function isSocketError(error) {
  const e = error;
  return typeof e?.syscall === "string" || typeof e?.code === "string" && /^E[A-Z_]+$/.test(e.code);
}
var ORIGIN_FUNCTIONS = [
  "pg_replication_origin_create(text)",
  "pg_replication_origin_session_setup(text)",
  "pg_replication_origin_xact_setup(pg_lsn, timestamptz)",
  "pg_replication_origin_progress(text, boolean)"
];
function roleOf(url) {
  let name = "";
  try {
    name = decodeURIComponent(new URL(url).username);
  } catch {
  }
  if (!name) return "<sitesync's role>";
  return /^[a-z_][a-z0-9_$]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}
function describePostgresError(error, url, site) {
  if (error instanceof SitesyncError) return error;
  const e = error;
  const where2 = `PostgreSQL of site ${site} (${redactUrl(url)})`;
  const first = (e?.message ?? String(error)).split("\n")[0];
  const make = (code, text) => new SitesyncError(code, text, { cause: error });
  const unreachable = () => make("SITESYNC_ERR_POSTGRES_UNREACHABLE", `${where2} is unreachable (${first}); start it or fix sites.${site}.postgres \u2014 sitesync retries and loses nothing meanwhile`);
  switch (e?.code) {
    case "28P01":
    case "28000":
      return make("SITESYNC_ERR_PERMISSION", `${where2} refused the login (${first}); fix the user or password in sites.${site}.postgres, or pg_hba.conf`);
    case "3D000":
      return make("SITESYNC_ERR_CONFIG", `${where2}: ${first}; create the database or fix sites.${site}.postgres`);
    case "42501":
      if (/pg_replication_origin_/.test(first ?? "")) {
        const role = roleOf(url);
        return make("SITESYNC_ERR_PERMISSION", `${where2}: ${first}; applying needs a superuser, or run as one: GRANT EXECUTE ON FUNCTION ${ORIGIN_FUNCTIONS.join(", ")} TO ${role}`);
      }
      return make("SITESYNC_ERR_PERMISSION", `${where2}: ${first}; sitesync's role needs REPLICATION and ownership of the replicated tables (or superuser)`);
    case void 0:
      return unreachable();
    default:
      if (isSocketError(e)) return unreachable();
      if (/^08|^57P/.test(e.code)) return make("SITESYNC_ERR_POSTGRES_UNREACHABLE", `${where2} closed the connection (${first}); sitesync retries`);
      return make("SITESYNC_ERR_POSTGRES_UNREACHABLE", `${where2}: ${first} (SQLSTATE ${e.code})`);
  }
}

// connectors/postgres/session-settings.ts
var SESSION_OPTIONS = [
  "synchronous_commit=on",
  "tcp_keepalives_idle=20",
  "tcp_keepalives_interval=10",
  "tcp_keepalives_count=3",
  "datestyle=ISO",
  "intervalstyle=postgres",
  "extra_float_digits=3",
  "timezone=UTC",
  "bytea_output=hex",
  "lc_monetary=C",
  "standard_conforming_strings=on"
].map((setting) => `-c ${setting}`).join(" ");

// connectors/postgres/postgres-sink.ts
var SPILL_TABLE = `${BOOKKEEPING_SCHEMA}.spilled_parts`;
var CONFLICT_LOG = `${BOOKKEEPING_SCHEMA}.conflicts`;
var MAX_BATCH_ROWS = 1e3;
var PostgresSink = class {
  constructor(options) {
    this.options = options;
    this.site = options.site;
  }
  options;
  site;
  sessions = /* @__PURE__ */ new Set();
  classify(error) {
    return classifyApplyError(error);
  }
  async openSession(source) {
    const session = new PostgresSourceSession(this.options, source, () => this.sessions.delete(session));
    try {
      await session.connect();
    } catch (error) {
      await session.close();
      throw describePostgresError(error, this.options.url, this.site);
    }
    this.sessions.add(session);
    return session;
  }
  async close() {
    await Promise.all([...this.sessions].map((s) => s.close()));
  }
};
var PostgresSourceSession = class {
  constructor(options, source, onClose) {
    this.options = options;
    this.source = source;
    this.onClose = onClose;
    this.origin = originName(source, options.site);
    this.logger = options.logger.child({ source });
    this.client = new pg.Client({ connectionString: options.url, options: SESSION_OPTIONS, keepAlive: true, keepAliveInitialDelayMillis: 1e4, application_name: `sitesync apply ${source}->${options.site}` });
    this.client.on("error", (error) => this.logger.warn({ reason: error.message }, "apply connection lost"));
  }
  options;
  source;
  onClose;
  client;
  origin;
  tables = /* @__PURE__ */ new Map();
  logger;
  inTransaction = false;
  closed = false;
  commitTimestamps = true;
  /** Replication origin ids to the site they apply from (0 is this site's own writes). */
  originSites = /* @__PURE__ */ new Map();
  /** Conflicts recorded in the open transaction, reported once it commits. */
  pendingConflicts = [];
  async connect() {
    await this.client.connect();
    await this.client.query(
      `SELECT pg_replication_origin_create($1) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = $1)`,
      [this.origin]
    ).catch((error) => {
      if (error.code !== "23505") throw error;
    });
    await this.client.query(`CREATE SCHEMA IF NOT EXISTS ${BOOKKEEPING_SCHEMA}`).catch(ignoreConcurrentCreate);
    await this.client.query(
      `CREATE TABLE IF NOT EXISTS ${SPILL_TABLE} (source text, position text, part int, schema_version int NOT NULL, body bytea NOT NULL, PRIMARY KEY (source, position, part))`
    ).catch(ignoreConcurrentCreate);
    await this.client.query(
      `CREATE TABLE IF NOT EXISTS ${CONFLICT_LOG} (
         id bigserial PRIMARY KEY, logged_at timestamptz NOT NULL DEFAULT now(),
         kind text NOT NULL, table_name text NOT NULL, key jsonb NOT NULL,
         remote_site text NOT NULL, remote_transaction text NOT NULL, remote_commit_time timestamptz NOT NULL,
         local_site text, local_commit_time timestamptz,
         policy text NOT NULL, winner text NOT NULL, resolution text NOT NULL)`
    ).catch(ignoreConcurrentCreate);
    this.commitTimestamps = (await this.client.query(`SELECT current_setting('track_commit_timestamp') AS on`)).rows[0]?.on === "on";
    if (!this.commitTimestamps) {
      this.logger.warn("track_commit_timestamp is off at this site: concurrent writes to the same row cannot be detected as conflicts; turn it on (npm run setup does) and restart PostgreSQL");
    }
    await this.client.query("SELECT pg_replication_origin_session_setup($1)", [this.origin]);
    if (this.options.replicaRole) {
      try {
        await this.client.query("SET session_replication_role = replica");
      } catch (error) {
        this.logger.warn(
          { err: error.message },
          "cannot set session_replication_role = replica (needs a superuser): target triggers will fire for applied rows; set apply.replicaRole: false to silence this"
        );
      }
    }
  }
  async progress() {
    const { rows } = await this.client.query("SELECT pg_replication_origin_progress($1, true)::text AS lsn", [this.origin]);
    const lsn = rows[0]?.lsn;
    return lsn == null || lsn === "0/0" ? null : lsnToPosition(parseLsn(lsn));
  }
  /**
   * One target commit per source transaction, so that every row keeps its own source commit time (what
   * conflict detection compares). Commits do not wait for the WAL flush, except the last one of a durable
   * call: its flush covers every commit before it (group commit).
   */
  async apply(transactions, options = { durable: true }) {
    await this.inside(async () => {
      for (const [i, tx] of transactions.entries()) {
        const wait = options.durable && i === transactions.length - 1;
        await this.begin(tx.position, tx.commitTimeMicros, wait, i > 0);
        await this.applyChanges(tx);
      }
      if (this.inTransaction) await this.commit();
    });
  }
  async applyPart(transaction, part) {
    const key = [this.source, transaction.position];
    await this.inside(async () => {
      if (part.index === 0) {
        await this.client.query(`DELETE FROM ${SPILL_TABLE} WHERE source = $1`, [this.source]);
      } else {
        const { rows } = await this.client.query(`SELECT 1 FROM ${SPILL_TABLE} WHERE source = $1 AND position = $2 AND part = $3`, [...key, part.index - 1]);
        if (rows.length === 0) {
          throw new SitesyncError("SITESYNC_ERR_GAP", `part ${part.index} of transaction ${transaction.id} arrived, but part ${part.index - 1} never did: a message is missing; replay the transaction from the archive to resume`);
        }
      }
      if (!part.last) {
        const body = encodeMessage({ site: this.source, sourceKind: "postgres", previous: null, transactions: [transaction], part });
        await this.client.query(
          `INSERT INTO ${SPILL_TABLE} VALUES ($1, $2, $3, $4, $5) ON CONFLICT (source, position, part) DO UPDATE SET body = excluded.body, schema_version = excluded.schema_version`,
          [...key, part.index, CURRENT_SCHEMA_VERSION, body]
        );
        return;
      }
      await this.begin(transaction.position, transaction.commitTimeMicros);
      for (let index = 0; index < part.index; index++) {
        const { rows } = await this.client.query(
          `SELECT body, schema_version FROM ${SPILL_TABLE} WHERE source = $1 AND position = $2 AND part = $3`,
          [...key, index]
        );
        const spilled = rows[0];
        if (!spilled) throw new SitesyncError("SITESYNC_ERR_GAP", `part ${index} of transaction ${transaction.id} is missing from ${SPILL_TABLE}`);
        await this.applyChanges(decodeMessage(spilled.body, spilled.schema_version).transactions[0]);
      }
      await this.applyChanges(transaction);
      await this.client.query(`DELETE FROM ${SPILL_TABLE} WHERE source = $1`, [this.source]);
      await this.commit();
    });
  }
  async skip(position, commitTimeMicros) {
    await this.inside(async () => {
      await this.begin(position, commitTimeMicros);
      await this.commit();
    });
  }
  async close() {
    if (this.closed) return;
    this.closed = true;
    this.onClose();
    await this.client.end().catch(() => void 0);
  }
  /** Any failure rolls back what is open; a schema failure also forgets what was read of the catalog. */
  async inside(work) {
    try {
      await work();
    } catch (error) {
      if (this.inTransaction) await this.rollback().catch(() => void 0);
      if (classifyApplyError(error) === "schema") this.tables.clear();
      throw error;
    }
  }
  /**
   * Opens the target transaction that will record `position` as applied: the origin's commit position and
   * time are set up front, in the same round trip as BEGIN (they are sitesync's own formatted values,
   * checked below, never row data). An xid makes the commit record carry the origin and its progress even
   * when no row is written.
   */
  async begin(position, commitTimeMicros, waitForDisk = true, commitOpen = false) {
    const lsn = formatLsn(positionToLsn(position));
    const time = microsToIso(commitTimeMicros);
    if (!/^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/.test(lsn) || !/^-?\d{4,6}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/.test(time)) {
      throw new SitesyncError("SITESYNC_ERR_MESSAGE_INVALID", `transaction position ${position} or commit time ${time} is not well formed`);
    }
    const commit = commitOpen && this.inTransaction ? "COMMIT; " : "";
    await this.client.query(
      `${commit}BEGIN;${waitForDisk ? "" : " SET LOCAL synchronous_commit = off;"} SELECT pg_current_xact_id(), pg_replication_origin_xact_setup('${lsn}', '${time}')`
    );
    if (commit) this.reportConflicts();
    this.inTransaction = true;
  }
  async rollback() {
    this.inTransaction = false;
    this.pendingConflicts = [];
    await this.client.query("ROLLBACK");
  }
  async commit() {
    this.inTransaction = false;
    await this.client.query("COMMIT");
    this.reportConflicts();
  }
  /** Conflicts are told once the transaction that recorded them has committed. */
  reportConflicts() {
    const conflicts = this.pendingConflicts;
    this.pendingConflicts = [];
    for (const conflict of conflicts) this.options.onConflict?.(conflict);
  }
  async applyChanges(tx) {
    const changes = tx.changes;
    for (let i = 0; i < changes.length; ) {
      const change = changes[i];
      if (change.op === "insert") {
        let end = i + 1;
        while (end < changes.length && end - i < MAX_BATCH_ROWS) {
          const next = changes[end];
          if (next.op !== "insert" || next.relation !== change.relation) break;
          end++;
        }
        if (end - i > 1) {
          await this.applyInsertBatch(tx, changes.slice(i, end));
          i = end;
          continue;
        }
      }
      await this.applyChange(tx, change);
      i++;
    }
  }
  async applyInsertBatch(tx, inserts) {
    const relation = inserts[0].relation;
    await this.loadTable(relation.schema, relation.table);
    const table = this.tables.get(`${relation.schema}.${relation.table}`);
    const result = await this.run(planInsertBatch(relation, inserts.map((c) => c.newRow), table));
    if (!table.primaryKey || result.rowCount === inserts.length) return;
    for (const change of inserts) {
      const lookup = planRowLookup(relation, change.newRow, table, this.commitTimestamps);
      const existing = (await this.run(lookup.statement)).rows[0];
      if (!existing || existing.mine) continue;
      const decision = await this.resolve(tx, "insert_exists", lookup, table);
      if (decision.resolution === "apply") await this.run(planOverwrite(relation, change.newRow, table));
    }
  }
  async applyChange(tx, change) {
    const tables = change.op === "truncate" ? change.relations : change.op === "message" ? [] : [change.relation];
    for (const r of tables) await this.loadTable(r.schema, r.table);
    const target = (schema, table2) => this.tables.get(`${schema}.${table2}`);
    if (change.op === "truncate" || change.op === "message") {
      for (const statement3 of planChange(change, target)) await this.run(statement3);
      return;
    }
    const table = target(change.relation.schema, change.relation.table);
    const [statement2] = planChange(change, target);
    if (!statement2) return;
    if (change.op === "insert") {
      if ((await this.run(statement2)).rowCount !== 0 || !statement2.expectsRow) return;
      const lookup2 = planRowLookup(change.relation, change.newRow, table, this.commitTimestamps);
      const decision = await this.resolve(tx, "insert_exists", lookup2, table);
      if (decision.resolution === "apply") await this.run(planOverwrite(change.relation, change.newRow, table));
      return;
    }
    const row2 = change.op === "update" ? change.oldRow ?? change.newRow : change.oldRow;
    const lookup = planRowLookup(change.relation, row2, table, this.commitTimestamps);
    const found = await this.lastWriter(lookup);
    if (found === "missing") {
      await this.resolve(tx, change.op === "update" ? "update_missing" : "delete_missing", lookup, table, null);
      return;
    }
    if (this.commitTimestamps && isConcurrent(found, tx.site, tx.seen)) {
      const decision = await this.resolve(tx, change.op === "update" ? "update_origin_differs" : "delete_origin_differs", lookup, table, found);
      if (decision.resolution === "skip") return;
    }
    await this.run(statement2);
  }
  run(statement2) {
    return this.client.query({ name: statement2.name, text: statement2.text, values: statement2.values });
  }
  /** Who wrote the row last: 'missing' when there is no such row, null when it cannot be known. */
  async lastWriter(lookup) {
    const { rows } = await this.run(lookup.statement);
    const row2 = rows[0];
    if (!row2) return "missing";
    if (row2.mine || row2.committed_micros === null) return null;
    return { site: await this.siteOfOrigin(row2.roident ?? 0), commitTimeMicros: BigInt(row2.committed_micros) };
  }
  /** Decides a conflict, records it in the conflict log in the same transaction, and says what to do. */
  async resolve(tx, kind, lookup, table, known) {
    const local = known !== void 0 ? known : await this.lastWriter(lookup).then((w) => w === "missing" ? null : w);
    const policy = this.options.conflictPolicy?.(table.schema, table.table) ?? DEFAULT_POLICY;
    const decision = decide(kind, { site: tx.site, commitTimeMicros: tx.commitTimeMicros }, local, policy);
    const tableName = `${table.schema}.${table.table}`;
    await this.client.query(
      `INSERT INTO ${CONFLICT_LOG} (kind, table_name, key, remote_site, remote_transaction, remote_commit_time, local_site, local_commit_time, policy, winner, resolution)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
      [kind, tableName, JSON.stringify(lookup.key), tx.site, tx.id, microsToIso(tx.commitTimeMicros), local?.site ?? null, local ? microsToIso(local.commitTimeMicros) : null, policy.policy, decision.winner, decision.resolution === "apply" ? "applied" : "skipped"]
    );
    this.pendingConflicts.push({ source: this.source, kind, table: tableName, resolution: decision.resolution });
    this.logger.info({ tx: tx.id, kind, table: tableName, key: lookup.key, local: local?.site, winner: decision.winner }, "conflict resolved");
    return decision;
  }
  /** The site a replication origin applies from; 0 (no origin) is this site. */
  async siteOfOrigin(roident) {
    if (roident === 0) return this.options.site;
    if (!this.originSites.has(roident)) {
      const { rows } = await this.client.query("SELECT roident::int AS roident, roname FROM pg_replication_origin");
      const suffix = `_to_${this.options.site}`;
      for (const r of rows) {
        const isOurs = r.roname.startsWith(ORIGIN_PREFIX) && r.roname.endsWith(suffix);
        this.originSites.set(r.roident, isOurs ? r.roname.slice(ORIGIN_PREFIX.length, -suffix.length) : this.options.site);
      }
    }
    return this.originSites.get(roident) ?? this.options.site;
  }
  async loadTable(schema, table) {
    const key = `${schema}.${table}`;
    if (this.tables.has(key)) return;
    const { rows } = await this.client.query(
      `SELECT (SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
                WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '') AS columns,
              (SELECT array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum) FROM pg_attribute a
                WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '') AS types,
              (SELECT array_agg(a.attname::text ORDER BY array_position(i.indkey::int2[], a.attnum)) FROM pg_index i
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                WHERE i.indrelid = c.oid AND i.indisprimary) AS pk
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`,
      [schema, table]
    );
    const row2 = rows[0];
    if (!row2) {
      throw new SitesyncError(
        "SITESYNC_ERR_APPLY_SCHEMA",
        `table ${schema}.${table} does not exist at site ${this.options.site}; create it as at site ${this.source} (sitesync retries and resumes by itself)`
      );
    }
    const columns = row2.columns ?? [];
    this.tables.set(key, {
      schema,
      table,
      columns: new Set(columns),
      columnTypes: new Map(columns.map((name, i) => [name, row2.types?.[i] ?? "text"])),
      primaryKey: row2.pk && row2.pk.length > 0 ? row2.pk : null
    });
  }
};
function ignoreConcurrentCreate(error) {
  if (error.code !== "23505" && error.code !== "42P07" && error.code !== "42P06") throw error;
}

// connectors/postgres/postgres-source.ts
import pg2 from "pg";
import { LogicalReplicationService } from "pg-logical-replication";
import { AbstractPlugin } from "pg-logical-replication/dist/output-plugins/abstract.plugin.js";

// connectors/postgres/binary-reader.ts
var BinaryReader = class _BinaryReader {
  #buffer;
  #offset = 0;
  // fatal: a silently replaced character would be data corruption passed downstream as truth.
  // ignoreBOM: a leading U+FEFF is part of the value, not a marker to strip.
  static #utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  constructor(buffer) {
    this.#buffer = buffer;
  }
  get offset() {
    return this.#offset;
  }
  get remaining() {
    return this.#buffer.length - this.#offset;
  }
  get atEnd() {
    return this.remaining === 0;
  }
  readUInt8(what = "uint8") {
    return this.#buffer.readUInt8(this.#take(1, what));
  }
  readInt16(what = "int16") {
    return this.#buffer.readInt16BE(this.#take(2, what));
  }
  readUInt16(what = "uint16") {
    return this.#buffer.readUInt16BE(this.#take(2, what));
  }
  readInt32(what = "int32") {
    return this.#buffer.readInt32BE(this.#take(4, what));
  }
  readUInt32(what = "uint32") {
    return this.#buffer.readUInt32BE(this.#take(4, what));
  }
  readUInt64(what = "uint64") {
    return this.#buffer.readBigUInt64BE(this.#take(8, what));
  }
  readInt64(what = "int64") {
    return this.#buffer.readBigInt64BE(this.#take(8, what));
  }
  /** A NUL-terminated UTF-8 string; the terminator is consumed but not returned. */
  readCString(what = "string") {
    const start = this.#offset;
    const nul = this.#buffer.indexOf(0, start);
    if (nul === -1) {
      throw new DecodeError(`no NUL terminator for ${what} starting at offset ${start} of ${this.#buffer.length}`);
    }
    const text = this.#decodeUtf8(start, nul, what);
    this.#offset = nul + 1;
    return text;
  }
  /** `length` bytes of UTF-8 text, decoded without an intermediate copy. */
  readUtf8(length, what = "text") {
    const start = this.#take(length, what);
    return this.#decodeUtf8(start, start + length, what);
  }
  /** A copy, because the pg driver reuses the buffer we were handed once we return. */
  readBytes(length, what = "bytes") {
    const start = this.#take(length, what);
    return Buffer.from(this.#buffer.subarray(start, start + length));
  }
  /** Advances past `length` bytes and returns where they start, or throws if they are not all there. */
  #take(length, what) {
    const start = this.#offset;
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new DecodeError(`invalid length ${length} for ${what} at offset ${start}`);
    }
    if (length > this.remaining) {
      throw new DecodeError(
        `unexpected end of data reading ${what} (${length} bytes) at offset ${start}: only ${this.remaining} left`
      );
    }
    this.#offset = start + length;
    return start;
  }
  #decodeUtf8(start, end, what) {
    try {
      return _BinaryReader.#utf8.decode(this.#buffer.subarray(start, end));
    } catch (cause) {
      throw new DecodeError(`invalid UTF-8 in ${what} at offset ${start}`, { cause });
    }
  }
};

// connectors/postgres/pgoutput-messages.ts
var POSTGRES_EPOCH_OFFSET_MICROS = 946684800000000n;
function postgresToUnixMicros(postgresMicros) {
  return postgresMicros + POSTGRES_EPOCH_OFFSET_MICROS;
}
function unixToPostgresMicros(unixMicros) {
  return unixMicros - POSTGRES_EPOCH_OFFSET_MICROS;
}

// connectors/postgres/pgoutput-decoder.ts
function decodePgOutput(payload) {
  const reader = new BinaryReader(payload);
  const message = decodeBody(reader);
  if (!reader.atEnd) {
    throw new DecodeError(
      `${reader.remaining} trailing bytes after a complete pgoutput ${message.tag} message at offset ${reader.offset}`
    );
  }
  return message;
}
function decodeBody(reader) {
  const tag = reader.readUInt8("message tag");
  switch (tag) {
    case 66:
      return {
        tag: "begin",
        finalLsn: reader.readUInt64("begin final LSN"),
        commitTimeMicros: readTimestamp(reader, "begin commit time"),
        xid: reader.readUInt32("begin xid")
      };
    case 67:
      return {
        tag: "commit",
        flags: reader.readUInt8("commit flags"),
        commitLsn: reader.readUInt64("commit LSN"),
        endLsn: reader.readUInt64("commit end LSN"),
        commitTimeMicros: readTimestamp(reader, "commit time")
      };
    case 79:
      return { tag: "origin", originLsn: reader.readUInt64("origin LSN"), name: reader.readCString("origin name") };
    case 82:
      return decodeRelation(reader);
    case 89:
      return {
        tag: "type",
        typeOid: reader.readUInt32("type OID"),
        schema: reader.readCString("type schema"),
        name: reader.readCString("type name")
      };
    case 73:
      return decodeInsert(reader);
    case 85:
      return decodeUpdate(reader);
    case 68:
      return decodeDelete(reader);
    case 84:
      return decodeTruncate(reader);
    case 77:
      return decodeLogicalMessage(reader);
    default:
      throw new DecodeError(`unknown pgoutput message tag ${describeByte(tag)} at offset 0`);
  }
}
function decodeRelation(reader) {
  const relationOid = reader.readUInt32("relation OID");
  const schema = reader.readCString("relation schema");
  const table = reader.readCString("relation name");
  const replicaIdentity = readReplicaIdentity(reader);
  const count = reader.readUInt16("relation column count");
  const columns = [];
  for (let i = 0; i < count; i++) {
    columns.push({
      flags: reader.readUInt8(`relation column ${i} flags`),
      name: reader.readCString(`relation column ${i} name`),
      typeOid: reader.readUInt32(`relation column ${i} type OID`),
      typeModifier: reader.readInt32(`relation column ${i} type modifier`)
    });
  }
  return { tag: "relation", relationOid, schema, table, replicaIdentity, columns };
}
function readReplicaIdentity(reader) {
  const offset = reader.offset;
  const byte = reader.readUInt8("relation replica identity");
  const setting = String.fromCharCode(byte);
  if (setting === "d" || setting === "f" || setting === "i" || setting === "n") return setting;
  throw new DecodeError(`unknown replica identity ${describeByte(byte)} at offset ${offset}`);
}
function decodeInsert(reader) {
  const relationOid = reader.readUInt32("insert relation OID");
  expectByte(reader, 78, "insert new-tuple marker");
  return { tag: "insert", relationOid, newTuple: readTuple(reader, "insert new tuple") };
}
function decodeUpdate(reader) {
  const relationOid = reader.readUInt32("update relation OID");
  const markerOffset = reader.offset;
  const marker = reader.readUInt8("update tuple marker");
  if (marker === 78) {
    return { tag: "update", relationOid, oldKind: null, oldTuple: null, newTuple: readTuple(reader, "update new tuple") };
  }
  const oldKind = oldKindOf(marker, markerOffset, "update");
  const oldTuple = readTuple(reader, "update old tuple");
  expectByte(reader, 78, "update new-tuple marker");
  return { tag: "update", relationOid, oldKind, oldTuple, newTuple: readTuple(reader, "update new tuple") };
}
function decodeDelete(reader) {
  const relationOid = reader.readUInt32("delete relation OID");
  const markerOffset = reader.offset;
  const oldKind = oldKindOf(reader.readUInt8("delete tuple marker"), markerOffset, "delete");
  return { tag: "delete", relationOid, oldKind, oldTuple: readTuple(reader, "delete old tuple") };
}
function oldKindOf(marker, offset, context) {
  if (marker === 75) return "K";
  if (marker === 79) return "O";
  throw new DecodeError(`unexpected ${context} tuple marker ${describeByte(marker)} at offset ${offset}`);
}
var TRUNCATE_CASCADE = 1;
var TRUNCATE_RESTART_IDENTITY = 2;
function decodeTruncate(reader) {
  const count = reader.readUInt32("truncate relation count");
  const optionsOffset = reader.offset;
  const options = reader.readUInt8("truncate options");
  if ((options & ~(TRUNCATE_CASCADE | TRUNCATE_RESTART_IDENTITY)) !== 0) {
    throw new DecodeError(`unknown truncate option bits ${options} at offset ${optionsOffset}`);
  }
  const relationOids = [];
  for (let i = 0; i < count; i++) relationOids.push(reader.readUInt32(`truncate relation OID ${i}`));
  return {
    tag: "truncate",
    relationOids,
    cascade: (options & TRUNCATE_CASCADE) !== 0,
    restartIdentity: (options & TRUNCATE_RESTART_IDENTITY) !== 0
  };
}
function decodeLogicalMessage(reader) {
  const flagsOffset = reader.offset;
  const flags = reader.readUInt8("logical message flags");
  if (flags !== 0 && flags !== 1) {
    throw new DecodeError(`unknown logical message flags ${flags} at offset ${flagsOffset}`);
  }
  const lsn = reader.readUInt64("logical message LSN");
  const prefix = reader.readCString("logical message prefix");
  const length = reader.readUInt32("logical message content length");
  const content = reader.readBytes(length, "logical message content");
  return { tag: "message", transactional: flags === 1, lsn, prefix, content };
}
function readTuple(reader, what) {
  const count = reader.readUInt16(`${what} column count`);
  const values = [];
  const unchanged = [];
  for (let i = 0; i < count; i++) {
    const kindOffset = reader.offset;
    const kind = reader.readUInt8(`${what} column ${i} kind`);
    switch (kind) {
      case 110:
        values.push(null);
        break;
      case 117:
        values.push(null);
        unchanged.push(i);
        break;
      case 116: {
        const length = reader.readUInt32(`${what} column ${i} length`);
        values.push(reader.readUtf8(length, `${what} column ${i} text`));
        break;
      }
      default:
        throw new DecodeError(`unsupported ${what} column ${i} kind ${describeByte(kind)} at offset ${kindOffset}`);
    }
  }
  return { values, unchanged };
}
function readTimestamp(reader, what) {
  return postgresToUnixMicros(reader.readInt64(what));
}
function expectByte(reader, expected, what) {
  const offset = reader.offset;
  const actual = reader.readUInt8(what);
  if (actual !== expected) {
    throw new DecodeError(`expected ${what} ${describeByte(expected)} but found ${describeByte(actual)} at offset ${offset}`);
  }
}
function describeByte(byte) {
  return `${JSON.stringify(String.fromCharCode(byte))} (${byte})`;
}

// connectors/postgres/replication-frames.ts
var STANDBY_STATUS_UPDATE = 114;
var STANDBY_STATUS_LENGTH = 1 + 8 * 4 + 1;
function encodeStandbyStatus(lsn, nowMicrosUnix, replyRequested = false) {
  const frame = Buffer.alloc(STANDBY_STATUS_LENGTH);
  let offset = frame.writeUInt8(STANDBY_STATUS_UPDATE, 0);
  offset = frame.writeBigUInt64BE(lsn, offset);
  offset = frame.writeBigUInt64BE(lsn, offset);
  offset = frame.writeBigUInt64BE(lsn, offset);
  offset = frame.writeBigInt64BE(unixToPostgresMicros(nowMicrosUnix), offset);
  frame.writeUInt8(replyRequested ? 1 : 0, offset);
  return frame;
}

// connectors/postgres/start-replication.ts
var SERVER_ORIGIN_FILTER_VERSION = 16e4;
function startReplicationCommand(slot, publication, serverVersionNum) {
  const options = [`proto_version '1'`, `publication_names '${publication.replace(/'/g, "''")}'`, `messages 'true'`];
  if (serverVersionNum >= SERVER_ORIGIN_FILTER_VERSION) options.push(`origin 'none'`);
  return `START_REPLICATION SLOT ${quoteIdent(slot)} LOGICAL 0/0 (${options.join(", ")})`;
}

// connectors/postgres/transaction-assembler.ts
var CHANGE_OVERHEAD_BYTES = 16;
var TransactionAssembler = class {
  constructor(options, handler) {
    this.options = options;
    this.handler = handler;
    this.seenSites = options.seen;
    this.originSuffix = `_to_${options.site}`;
  }
  options;
  handler;
  relations = /* @__PURE__ */ new Map();
  originSuffix;
  open = null;
  /** Replaced, never mutated: every transaction keeps the context it was committed in. */
  seenSites;
  /** The causal context after everything accepted so far. */
  get seen() {
    return this.seenSites;
  }
  /** True between BEGIN and COMMIT: positions the server reports then are not safe to confirm. */
  get inTransaction() {
    return this.open !== null;
  }
  accept(message) {
    switch (message.tag) {
      case "begin":
        if (this.open) throw new DecodeError("pgoutput BEGIN inside an open transaction");
        this.open = {
          position: lsnToPosition(message.finalLsn),
          commitTimeMicros: message.commitTimeMicros,
          xid: message.xid,
          relayed: false,
          relayedFrom: null,
          changes: [],
          bytes: 0,
          partsSent: 0
        };
        return;
      case "origin": {
        const tx = this.current("ORIGIN");
        tx.relayed = message.name.startsWith(ORIGIN_PREFIX);
        if (tx.relayed && message.name.endsWith(this.originSuffix)) {
          tx.relayedFrom = message.name.slice(ORIGIN_PREFIX.length, -this.originSuffix.length);
        }
        return;
      }
      case "relation":
        this.relations.set(message.relationOid, {
          schema: message.schema,
          table: message.table,
          replicaIdentity: message.replicaIdentity,
          columns: message.columns.map(
            (c) => ({
              name: c.name,
              type: this.options.typeNames.get(c.typeOid) ?? `oid:${c.typeOid}`,
              typeOid: c.typeOid,
              typeModifier: c.typeModifier,
              key: (c.flags & 1) === 1
            })
          )
        });
        return;
      case "type":
        this.options.typeNames.set(message.typeOid, message.schema === "pg_catalog" ? message.name : `${message.schema}.${message.name}`);
        return;
      case "insert":
        this.add(message.relationOid, (relation) => ({ op: "insert", relation, newRow: row(message.newTuple) }), message.newTuple);
        return;
      case "update":
        this.add(
          message.relationOid,
          (relation) => ({ op: "update", relation, oldRow: message.oldTuple ? row(message.oldTuple) : null, newRow: row(message.newTuple) }),
          message.newTuple,
          message.oldTuple
        );
        return;
      case "delete":
        this.add(message.relationOid, (relation) => ({ op: "delete", relation, oldRow: row(message.oldTuple) }), message.oldTuple);
        return;
      case "truncate": {
        const tx = this.current("TRUNCATE");
        if (tx.relayed) return;
        const relations = message.relationOids.map((oid) => this.relation(oid)).filter((r) => r.schema !== BOOKKEEPING_SCHEMA);
        if (relations.length === 0) return;
        this.push(tx, { op: "truncate", relations, cascade: message.cascade, restartIdentity: message.restartIdentity }, CHANGE_OVERHEAD_BYTES * relations.length);
        return;
      }
      case "message":
        if (!message.transactional) {
          if (!this.open && message.prefix.startsWith(MESSAGE_PREFIX)) this.handler.idle(lsnToPosition(message.lsn), this.seenSites);
          return;
        }
        {
          const tx = this.current("MESSAGE");
          if (tx.relayed || message.prefix.startsWith(MESSAGE_PREFIX)) return;
          this.push(tx, { op: "message", prefix: message.prefix, content: message.content }, CHANGE_OVERHEAD_BYTES + message.content.length + message.prefix.length);
        }
        return;
      case "commit": {
        const tx = this.current("COMMIT");
        this.open = null;
        const checkpoint = lsnToPosition(message.endLsn);
        if (tx.relayed) {
          const from = tx.relayedFrom;
          if (from !== null && (this.seenSites[from] ?? -1n) < tx.commitTimeMicros) {
            this.seenSites = { ...this.seenSites, [from]: tx.commitTimeMicros };
          }
          this.handler.skipped(tx.position, checkpoint, "relayed", this.seenSites);
        } else if (tx.changes.length === 0 && tx.partsSent === 0) {
          this.handler.skipped(tx.position, checkpoint, "empty", this.seenSites);
        } else {
          const part = tx.partsSent > 0 ? { index: tx.partsSent, last: true } : null;
          this.handler.transaction(this.snapshot(tx), part, checkpoint);
        }
        return;
      }
    }
  }
  current(what) {
    if (!this.open) throw new DecodeError(`pgoutput ${what} outside a transaction`);
    return this.open;
  }
  relation(oid) {
    const relation = this.relations.get(oid);
    if (!relation) throw new DecodeError(`pgoutput change for relation ${oid} before its RELATION message`);
    return relation;
  }
  add(oid, make, ...tuples) {
    const tx = this.current("change");
    if (tx.relayed) return;
    const relation = this.relation(oid);
    if (relation.schema === BOOKKEEPING_SCHEMA) return;
    let bytes = CHANGE_OVERHEAD_BYTES;
    for (const tuple of tuples) if (tuple) for (const v of tuple.values) bytes += v === null ? 1 : v.length + 2;
    this.push(tx, make(relation), bytes);
  }
  push(tx, change, bytes) {
    tx.changes.push(change);
    tx.bytes += bytes;
    if (tx.bytes >= this.options.maxPartBytes) {
      this.handler.transaction(this.snapshot(tx), { index: tx.partsSent, last: false }, null);
      tx.partsSent++;
      tx.changes = [];
      tx.bytes = 0;
    }
  }
  snapshot(tx) {
    return {
      id: transactionId(this.options.site, tx.position),
      site: this.options.site,
      position: tx.position,
      commitTimeMicros: tx.commitTimeMicros,
      sourceTxId: String(tx.xid),
      seen: this.seenSites,
      changes: tx.changes
    };
  }
};
function row(tuple) {
  return { values: tuple.values, unchanged: tuple.unchanged };
}

// connectors/postgres/postgres-source.ts
var RawPgOutput = class extends AbstractPlugin {
  get name() {
    return "pgoutput";
  }
  start(client) {
    this.options.onStart(client);
    return client.query(this.options.command);
  }
  parse(buffer) {
    return buffer;
  }
};
var PostgresSource = class {
  constructor(options) {
    this.options = options;
    this.site = options.site;
    this.slot = slotName(options.site);
    this.publication = publicationName(options.site);
    this.pool = new pg2.Pool({ connectionString: options.url, max: 2, options: SESSION_OPTIONS, keepAlive: true, keepAliveInitialDelayMillis: 1e4, application_name: `sitesync capture ${options.site}` });
    this.pool.on("error", (error) => options.logger.warn({ code: error.code }, describeError(describePostgresError(error, options.url, options.site))));
  }
  options;
  kind = "postgres";
  site;
  slot;
  publication;
  pool;
  typeNames = /* @__PURE__ */ new Map();
  service = null;
  client = null;
  assembler = null;
  lastSentStatus = 0n;
  persisted = { lastPublished: null, seen: {} };
  ended = null;
  async prepare() {
    try {
      await this.checkServer();
      await this.ensureBookkeeping();
      await this.ensurePublication();
      await this.ensureSlot();
      await this.loadTypeNames();
    } catch (error) {
      throw describePostgresError(error, this.options.url, this.site);
    }
  }
  async checkServer() {
    const { rows } = await this.pool.query(
      `SELECT current_setting('wal_level') AS wal_level, r.rolreplication AS replication, r.rolsuper AS superuser, current_user AS user
         FROM pg_roles r WHERE r.rolname = current_user`
    );
    const info = rows[0];
    if (!info) throw new SitesyncError("SITESYNC_ERR_PERMISSION", `site ${this.site}: cannot read the role of the current user`);
    if (info.wal_level !== "logical") {
      throw new SitesyncError(
        "SITESYNC_ERR_WAL_LEVEL",
        `PostgreSQL of site ${this.site} has wal_level=${info.wal_level}; sitesync needs logical: run "ALTER SYSTEM SET wal_level = logical" and restart PostgreSQL (npm run setup does it on this machine)`
      );
    }
    if (!info.replication && !info.superuser) {
      throw new SitesyncError(
        "SITESYNC_ERR_PERMISSION",
        `role ${info.user} at site ${this.site} may not stream changes; run "ALTER ROLE ${info.user} REPLICATION" as a superuser`
      );
    }
  }
  /** sitesync's own state at a source: the position of the last transaction the broker confirmed. */
  async ensureBookkeeping() {
    await this.pool.query(`CREATE SCHEMA IF NOT EXISTS ${BOOKKEEPING_SCHEMA}`);
    await this.pool.query(
      `CREATE TABLE IF NOT EXISTS ${BOOKKEEPING_SCHEMA}.capture_progress (site text PRIMARY KEY, last_published text, seen jsonb NOT NULL DEFAULT '{}')`
    );
    await this.pool.query(`ALTER TABLE ${BOOKKEEPING_SCHEMA}.capture_progress ADD COLUMN IF NOT EXISTS seen jsonb NOT NULL DEFAULT '{}'`);
    await this.pool.query(`ALTER TABLE ${BOOKKEEPING_SCHEMA}.capture_progress ALTER COLUMN last_published DROP NOT NULL`);
  }
  async ensurePublication() {
    const pub = quoteIdent2(this.publication);
    const tables = this.options.tables;
    const target = tables ? `FOR TABLE ${tables.map(quoteQualified).join(", ")}` : "FOR ALL TABLES";
    const { rows } = await this.pool.query("SELECT puballtables FROM pg_publication WHERE pubname = $1", [this.publication]);
    const existing = rows[0];
    if (!existing) {
      await this.pool.query(`CREATE PUBLICATION ${pub} ${target} WITH (publish_via_partition_root = true)`);
      this.options.logger.info({ publication: this.publication, tables: tables ?? "all" }, "created publication");
      return;
    }
    if (existing.puballtables !== (tables === null)) {
      await this.pool.query(`DROP PUBLICATION ${pub}`);
      await this.pool.query(`CREATE PUBLICATION ${pub} ${target} WITH (publish_via_partition_root = true)`);
      this.options.logger.info({ publication: this.publication, tables: tables ?? "all" }, "recreated publication for the new table list");
    } else if (tables) {
      await this.pool.query(`ALTER PUBLICATION ${pub} SET TABLE ${tables.map(quoteQualified).join(", ")}`);
    }
  }
  async ensureSlot() {
    const { rows } = await this.pool.query("SELECT plugin, database FROM pg_replication_slots WHERE slot_name = $1", [this.slot]);
    const existing = rows[0];
    if (existing) {
      const db = (await this.pool.query("SELECT current_database() AS db")).rows[0]?.db;
      if (existing.plugin !== "pgoutput" || existing.database !== db) {
        throw new SitesyncError(
          "SITESYNC_ERR_CONFIG",
          `replication slot ${this.slot} exists for database ${existing.database} with plugin ${existing.plugin}; site ${this.site} needs it on ${db} with pgoutput: drop it (SELECT pg_drop_replication_slot('${this.slot}')) if it is left over`
        );
      }
      return;
    }
    try {
      await this.pool.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [this.slot]);
    } catch (error) {
      if (error.code === "53400") {
        throw new SitesyncError("SITESYNC_ERR_CONFIG", `PostgreSQL of site ${this.site} has no free replication slot; raise max_replication_slots and restart it`, { cause: error });
      }
      if (error.code !== "42710") throw error;
    }
    this.options.logger.info({ slot: this.slot }, "created replication slot");
  }
  async loadTypeNames() {
    const { rows } = await this.pool.query(
      `SELECT t.oid::int8 AS oid, CASE WHEN n.nspname = 'pg_catalog' THEN t.typname ELSE n.nspname || '.' || t.typname END AS name
         FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace`
    );
    for (const row2 of rows) this.typeNames.set(Number(row2.oid), row2.name);
  }
  /** A query on the capture pool; a failure becomes the one line that says what happened and what to do. */
  async query(text, values) {
    try {
      return await this.pool.query(text, values);
    } catch (error) {
      throw describePostgresError(error, this.options.url, this.site);
    }
  }
  async resumePoint() {
    const { rows } = await this.query(
      `SELECT last_published, seen FROM ${BOOKKEEPING_SCHEMA}.capture_progress WHERE site = $1`,
      [this.site]
    );
    const row2 = rows[0];
    const seen = Object.fromEntries(Object.entries(row2?.seen ?? {}).map(([site, micros]) => [site, BigInt(micros)]));
    this.persisted = { lastPublished: row2?.last_published ?? null, seen };
    return this.persisted;
  }
  async open(handler) {
    this.assembler = new TransactionAssembler({ site: this.site, maxPartBytes: this.options.maxPartBytes, typeNames: this.typeNames, seen: this.persisted.seen }, handler);
    const service = new LogicalReplicationService(
      { connectionString: this.options.url, options: SESSION_OPTIONS, keepAlive: true, keepAliveInitialDelayMillis: 1e4, application_name: `sitesync capture ${this.site}` },
      { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: false } }
    );
    this.service = service;
    const assembler = this.assembler;
    let broken = false;
    service.on("data", (_lsn, payload) => {
      if (broken) return;
      try {
        assembler.accept(decodePgOutput(payload));
      } catch (error) {
        broken = true;
        service.emit("error", error);
      }
    });
    service.on("heartbeat", (lsn, _time, replyRequested) => {
      if (broken) return;
      if (!assembler.inTransaction) handler.idle(lsnToPosition(parseLsn(lsn)), assembler.seen);
      if (replyRequested) this.sendStatus(this.lastSentStatus);
    });
    const started = new Promise((resolve) => service.once("start", () => resolve()));
    const version = await this.query(`SELECT current_setting('server_version_num') AS v`);
    const command = startReplicationCommand(this.slot, this.publication, Number(version.rows[0]?.v ?? 0));
    const plugin = new RawPgOutput({ command, onStart: (client) => this.client = client });
    const failed = new Promise((_, reject) => service.once("error", (error) => reject(error)));
    this.ended = Promise.race([service.subscribe(plugin, this.slot).then(() => void 0), failed]).catch((error) => {
      throw describeStreamError(error, this.options.url, this.site, this.slot);
    });
    await Promise.race([started, this.ended]);
    const confirmed = await this.query("SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1", [this.slot]);
    this.lastSentStatus = parseLsn(confirmed.rows[0]?.lsn ?? "0/0");
    this.options.logger.info({ slot: this.slot, from: confirmed.rows[0]?.lsn }, "streaming changes");
  }
  pause() {
    this.client?.connection?.stream?.pause();
  }
  resume() {
    this.client?.connection?.stream?.resume();
  }
  async confirm(checkpoint, resume) {
    const lsn = positionToLsn(checkpoint);
    if (lsn <= this.lastSentStatus) return;
    if (resume.lastPublished !== this.persisted.lastPublished || resume.seen !== this.persisted.seen) {
      const seen = Object.fromEntries(Object.entries(resume.seen).map(([site, micros]) => [site, micros.toString()]));
      await this.query(
        `INSERT INTO ${BOOKKEEPING_SCHEMA}.capture_progress (site, last_published, seen) VALUES ($1, $2, $3)
         ON CONFLICT (site) DO UPDATE SET last_published = excluded.last_published, seen = excluded.seen`,
        [this.site, resume.lastPublished, JSON.stringify(seen)]
      );
      this.persisted = resume;
    }
    this.sendStatus(lsn);
  }
  sendStatus(lsn) {
    const connection = this.client?.connection;
    if (!connection) return;
    connection.sendCopyFromChunk(encodeStandbyStatus(lsn, BigInt(Date.now()) * 1000n));
    this.lastSentStatus = lsn;
  }
  async heartbeat() {
    await this.query("SELECT pg_logical_emit_message(false, $1, $2)", [`${MESSAGE_PREFIX}_heartbeat`, this.site]);
  }
  async lag() {
    const { rows } = await this.pool.query(
      "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::int8 AS bytes FROM pg_replication_slots WHERE slot_name = $1",
      [this.slot]
    );
    const bytes = rows[0]?.bytes;
    return bytes == null ? null : { bytes: Number(bytes), seconds: 0 };
  }
  async close() {
    const service = this.service;
    this.service = null;
    this.client = null;
    if (service) await service.destroy().catch(() => void 0);
    await this.ended?.catch(() => void 0);
    this.ended = null;
  }
  async end() {
    await this.close();
    await this.pool.end();
  }
  describeConfirmed() {
    return formatLsn(this.lastSentStatus);
  }
};
function describeStreamError(error, url, site, slot) {
  const message = error?.message ?? "";
  if (/is active for PID/.test(message)) {
    return new SitesyncError("SITESYNC_ERR_POSTGRES_UNREACHABLE", `replication slot ${slot} is in use by another process (${message}); is another "sitesync run --site ${site}" running? sitesync retries`, { cause: error });
  }
  return describePostgresError(error, url, site);
}
function quoteIdent2(name) {
  return `"${name.replace(/"/g, '""')}"`;
}
function quoteQualified(table) {
  const dot = table.indexOf(".");
  return `${quoteIdent2(table.slice(0, dot))}.${quoteIdent2(table.slice(dot + 1))}`;
}

// connectors/postgres/postgres-status.ts
import pg3 from "pg";
async function readPostgresStatus(url, site, sources) {
  const client = new pg3.Client({ connectionString: url, application_name: "sitesync status" });
  try {
    await client.connect();
    const slot = slotName(site);
    const { rows } = await client.query(
      `SELECT pg_current_wal_lsn()::text AS current, s.confirmed_flush_lsn::text AS confirmed, s.active,
              pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::int8 AS lag,
              pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::int8 AS retained
         FROM (SELECT 1) one LEFT JOIN pg_replication_slots s ON s.slot_name = $1`,
      [slot]
    );
    const r = rows[0];
    const origins = [];
    for (const source of sources) {
      const origin = originName(source, site);
      const progress = await client.query(
        `SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = $1)
                THEN pg_replication_origin_progress($1, true)::text END AS lsn`,
        [origin]
      );
      origins.push({ source, origin, applied: progress.rows[0]?.lsn ?? null });
    }
    return {
      slot: {
        slot,
        exists: r.confirmed !== null || r.active !== null,
        active: r.active === true,
        confirmed: r.confirmed,
        current: r.current,
        lagBytes: r.lag === null ? null : Number(r.lag),
        retainedBytes: r.retained === null ? null : Number(r.retained)
      },
      origins
    };
  } catch (error) {
    throw describePostgresError(error, url, site);
  } finally {
    await client.end().catch(() => void 0);
  }
}

// src/pipeline.ts
function createPipeline(config, site, logger, events = new PipelineEvents()) {
  const siteConfig = config.sites[site];
  if (!siteConfig) {
    throw new SitesyncError("SITESYNC_ERR_CONFIG", `site ${JSON.stringify(site)} is not in the configuration (sites: ${Object.keys(config.sites).join(", ")}); pass one of them with --site`);
  }
  const source = new PostgresSource({
    site,
    url: siteConfig.postgres,
    tables: siteConfig.tables ?? null,
    maxPartBytes: config.capture.maxMessageBytes,
    logger: logger.child({ site, part: "capture" })
  });
  const sink = new PostgresSink({
    site,
    url: siteConfig.postgres,
    replicaRole: config.apply.replicaRole,
    conflictPolicy: policyResolver(config.conflicts),
    onConflict: (c) => events.emit("apply:conflict", { site, source: c.source, kind: c.kind, table: c.table, resolution: c.resolution }),
    logger: logger.child({ site, part: "apply" })
  });
  const capture = new CaptureRunner({ config, source, events, logger: logger.child({ site, part: "capture" }) });
  const apply = new ApplyRunner({ config, site, sink, events, logger: logger.child({ site, part: "apply" }) });
  const watch = new WalRetentionWatch({
    site,
    sites: Object.keys(config.sites),
    readSlot: async (slotSite) => (await readPostgresStatus(config.sites[slotSite].postgres, slotSite, [])).slot,
    intervalSeconds: config.watch.intervalSeconds,
    warnBytes: config.watch.walRetentionWarnBytes,
    events,
    logger: logger.child({ site, part: "watch" })
  });
  const stop = () => {
    capture.stop();
    apply.stop();
    void watch.stop();
  };
  return {
    site,
    events,
    stop,
    async run() {
      const guard = (work) => work.catch((error) => {
        stop();
        throw error;
      });
      watch.start();
      try {
        const results = await Promise.allSettled([guard(capture.run()), guard(apply.run())]);
        const failed = results.find((r) => r.status === "rejected");
        if (failed) throw failed.reason;
      } finally {
        await watch.stop();
        await source.end().catch(() => void 0);
        await sink.close().catch(() => void 0);
      }
    }
  };
}

// src/cli/status-command.ts
async function collectStatus(config) {
  const sites = Object.keys(config.sites);
  const queues = await readQueues(config, sites);
  return Promise.all(
    sites.map(async (site) => {
      const queue = queues.get(site);
      try {
        const pgStatus = await readPostgresStatus(config.sites[site].postgres, site, sites.filter((s) => s !== site));
        return { site, ...pgStatus, ...queue ? { queue } : {} };
      } catch (error) {
        return { site, error: describeError(error), ...queue ? { queue } : {} };
      }
    })
  );
}
async function readQueues(config, sites) {
  const result = /* @__PURE__ */ new Map();
  let connection;
  try {
    connection = await connectBroker(config.broker.url, "sitesync status");
  } catch (error) {
    for (const site of sites) result.set(site, { name: siteQueue(site), error: describeError(error) });
    return result;
  }
  try {
    for (const site of sites) {
      const channel = await connection.createChannel();
      channel.on("error", () => void 0);
      try {
        const q = await channel.checkQueue(siteQueue(site));
        const parked = await channel.checkQueue(parkingQueue(site)).then((p) => p.messageCount, () => 0);
        result.set(site, { name: siteQueue(site), messages: q.messageCount, consumers: q.consumerCount, parked });
        await channel.close().catch(() => void 0);
      } catch {
        result.set(site, { name: siteQueue(site), error: "not declared yet (run the site once)" });
      }
    }
  } finally {
    await connection.close().catch(() => void 0);
  }
  return result;
}
function formatStatus(statuses) {
  const lines = [];
  for (const s of statuses) {
    lines.push(`site ${s.site}`);
    if (s.error) lines.push(`  error: ${s.error}`);
    if (s.slot) {
      const slot = s.slot;
      lines.push(
        slot.exists ? `  slot ${slot.slot}: ${slot.active ? "streaming" : "idle"}, confirmed ${slot.confirmed}, server at ${slot.current}, lag ${formatBytes2(slot.lagBytes)}, WAL kept ${formatBytes2(slot.retainedBytes)}` : `  slot ${slot.slot}: not created yet (run the site once)`
      );
    }
    for (const o of s.origins ?? []) lines.push(`  from ${o.source}: applied up to ${o.applied ?? "nothing yet"} (origin ${o.origin})`);
    if (s.queue) {
      lines.push("error" in s.queue ? `  queue ${s.queue.name}: ${s.queue.error}` : `  queue ${s.queue.name}: ${s.queue.messages} waiting, ${s.queue.consumers} consumer(s), ${s.queue.parked} parked`);
    }
  }
  return lines.join("\n");
}
function formatBytes2(bytes) {
  if (bytes === null) return "unknown";
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}

// src/apply/replay.ts
import { setTimeout as sleep3 } from "node:timers/promises";
var PROGRESS_EVERY = 1e3;
var IDLE_END_MS = 2e3;
var PROBE_FIRST_MS = 1500;
var PROBE_QUIET_MS = 300;
function formatReplaySummary(result) {
  return `replayed ${result.applied} transactions from ${result.source} (${result.alreadyThere} already there, ${result.undecodable} skipped as undecodable), now at ${describePosition(result.progress)}`;
}
function stopRunFirst(site, why) {
  return new Error(`site ${site} is in use (${why}): stop "sitesync run --site ${site}" first, then replay, then start it again (replay and run cannot apply to one site at the same time)`);
}
async function replayArchive(options) {
  const { config, site, sources, sink } = options;
  const connection = await connectBroker(config.broker.url, `sitesync replay ${site}`);
  connection.on("error", () => void 0);
  const states = /* @__PURE__ */ new Map();
  try {
    await checkNotApplying(connection, site);
    await checkArchive(connection, config);
    for (const source of sources) {
      const session = await openSession(sink, source, site);
      const state = { source, session, progress: null, applied: 0, alreadyThere: 0, undecodable: 0, finished: false };
      states.set(source, state);
      state.progress = await session.progress();
      options.logger.info({ source, applied: describePosition(state.progress) }, "replaying from source");
    }
    const end = await probeEnd(connection, config.broker.archiveStream, config.apply.prefetch);
    let read = { messagesRead: 0, undecodableUnattributed: 0 };
    if (end !== null) read = await new ArchiveReader(options, connection, states, end).run();
    return {
      sources: [...states.values()].map((s) => ({ source: s.source, applied: s.applied, alreadyThere: s.alreadyThere, undecodable: s.undecodable, progress: s.progress })),
      ...read
    };
  } finally {
    for (const state of states.values()) await state.session.close().catch(() => void 0);
    await connection.close().catch(() => void 0);
  }
}
async function checkNotApplying(connection, site) {
  const consumers = await withChannel(connection, async (channel) => (await channel.checkQueue(siteQueue(site))).consumerCount).catch(() => 0);
  if (consumers > 0) throw stopRunFirst(site, `${siteQueue(site)} has ${consumers} consumer${consumers === 1 ? "" : "s"}`);
}
async function checkArchive(connection, config) {
  const stream = config.broker.archiveStream;
  try {
    await withChannel(connection, (channel) => channel.checkQueue(stream));
  } catch (error) {
    throw new SitesyncError(
      "SITESYNC_ERR_CONFIG",
      `the archive stream ${stream} cannot be read (${describeError(error).split("\n")[0]}): nothing was archived under that name; check broker.archiveStream (sitesync run creates the stream)`,
      { cause: error }
    );
  }
}
async function withChannel(connection, work) {
  const channel = await connection.createChannel();
  channel.on("error", () => void 0);
  try {
    return await work(channel);
  } finally {
    await channel.close().catch(() => void 0);
  }
}
async function openSession(sink, source, site) {
  try {
    return await sink.openSession(source);
  } catch (error) {
    const held = originInUse(error);
    if (held !== null) throw stopRunFirst(site, held);
    throw error;
  }
}
function originInUse(error) {
  for (let e = error, depth = 0; e && depth < 5; e = e.cause, depth++) {
    if ((e.code === "55006" || e.code === "55000") && typeof e.message === "string" && /replication origin .* is already active/.test(e.message)) return e.message.split("\n")[0];
  }
  return null;
}
async function probeEnd(connection, stream, prefetch) {
  const channel = await connection.createChannel();
  channel.on("error", () => void 0);
  try {
    await channel.prefetch(prefetch);
    let highest = null;
    let lastSeen = Date.now();
    const started = Date.now();
    await channel.consume(
      stream,
      (delivery) => {
        if (!delivery) return;
        const offset = streamOffset(delivery);
        if (offset !== null && (highest === null || offset > highest)) highest = offset;
        lastSeen = Date.now();
        channel.ack(delivery);
      },
      { arguments: { "x-stream-offset": "last" } }
    );
    while (highest === null ? Date.now() - started < PROBE_FIRST_MS : Date.now() - lastSeen < PROBE_QUIET_MS) await sleep3(50);
    return highest;
  } finally {
    await channel.close().catch(() => void 0);
  }
}
function streamOffset(delivery) {
  const offset = delivery.properties.headers?.["x-stream-offset"];
  return typeof offset === "number" ? offset : typeof offset === "bigint" ? Number(offset) : null;
}
function streamStart(from) {
  if (from.kind === "position") return "first";
  const seconds = from.micros <= 0n ? 0n : from.micros / 1000000n;
  return { "!": "timestamp", value: Number(seconds) };
}
var ArchiveReader = class {
  constructor(options, connection, states, end) {
    this.options = options;
    this.connection = connection;
    this.states = states;
    this.end = end;
  }
  options;
  connection;
  states;
  end;
  messagesRead = 0;
  undecodableUnattributed = 0;
  handled = 0;
  done = false;
  failure = null;
  finish = () => void 0;
  async run() {
    const { config } = this.options;
    const stream = config.broker.archiveStream;
    const finished = new Promise((resolve) => this.finish = resolve);
    const stop = (error) => {
      if (this.done) return;
      this.done = true;
      this.failure = error;
      this.finish();
    };
    const onConnectionError = (error) => stop(error);
    const onConnectionClose = () => stop(new SitesyncError("SITESYNC_ERR_BROKER_UNREACHABLE", `the connection to RabbitMQ closed while reading ${stream}; run the replay again (it skips what it applied)`));
    this.connection.on("error", onConnectionError);
    this.connection.on("close", onConnectionClose);
    const channel = await this.connection.createChannel();
    channel.on("error", (error) => stop(error));
    channel.on("close", () => stop(new SitesyncError("SITESYNC_ERR_BROKER_UNREACHABLE", `the channel reading ${stream} closed; run the replay again (it skips what it applied)`)));
    const backlog = [];
    let working = false;
    let lastActivity = Date.now();
    const pump = async () => {
      if (working) return;
      working = true;
      try {
        while (backlog.length > 0 && !this.done) {
          const delivery = backlog.shift();
          await this.handle(delivery);
          channel.ack(delivery);
          const offset = streamOffset(delivery);
          if (offset !== null && offset >= this.end) stop(null);
          if ([...this.states.values()].every((s) => s.finished)) stop(null);
        }
      } catch (error) {
        stop(error);
      } finally {
        working = false;
        lastActivity = Date.now();
      }
    };
    const idleEndMs = this.options.idleEndMs ?? IDLE_END_MS;
    const idle = setInterval(() => {
      if (!working && backlog.length === 0 && Date.now() - lastActivity >= idleEndMs) stop(null);
    }, 100);
    try {
      await channel.prefetch(config.apply.prefetch);
      await channel.consume(
        stream,
        (delivery) => {
          if (delivery === null) return stop(new SitesyncError("SITESYNC_ERR_BROKER_UNREACHABLE", `the archive stream ${stream} was deleted while the replay read it`));
          if (this.done) return;
          backlog.push(delivery);
          lastActivity = Date.now();
          void pump();
        },
        { arguments: { "x-stream-offset": streamStart(this.options.from) } }
      );
      await finished;
      while (working) await sleep3(10);
    } catch (error) {
      stop(error);
    } finally {
      clearInterval(idle);
      this.done = true;
      this.connection.off("error", onConnectionError);
      this.connection.off("close", onConnectionClose);
      await channel.close().catch(() => void 0);
    }
    if (this.failure) throw this.failure;
    return { messagesRead: this.messagesRead, undecodableUnattributed: this.undecodableUnattributed };
  }
  async handle(delivery) {
    this.messagesRead++;
    const headers = delivery.properties.headers ?? {};
    const named = headers["sitesync-site"];
    const headerSite = typeof named === "string" ? named : Buffer.isBuffer(named) ? named.toString("utf8") : null;
    if (headerSite !== null && !this.states.has(headerSite)) return;
    let message;
    try {
      const version = Number(headers[SCHEMA_VERSION_HEADER] ?? NaN);
      if (!Number.isInteger(version)) throw new SitesyncError("SITESYNC_ERR_MESSAGE_INVALID", `message has no ${SCHEMA_VERSION_HEADER} header: it was not published by sitesync`);
      message = decodeMessage(delivery.content, version);
    } catch (error) {
      const state2 = headerSite === null ? void 0 : this.states.get(headerSite);
      if (state2) state2.undecodable++;
      else this.undecodableUnattributed++;
      this.options.logger.warn({ source: headerSite ?? void 0, offset: streamOffset(delivery) }, `archived message skipped: ${describeError(error)}`);
      return;
    }
    const state = this.states.get(message.site);
    if (!state || state.finished) return;
    await this.applyMessage(state, message);
  }
  async applyMessage(state, message) {
    const { from, to } = this.options;
    const inRange = (tx) => from.kind !== "position" || comparePositions(tx.position, from.position) > 0;
    const pastEnd = (tx) => to !== null && (to.kind === "position" ? comparePositions(tx.position, to.position) > 0 : tx.commitTimeMicros > to.micros);
    const there = (tx) => state.progress !== null && comparePositions(tx.position, state.progress) <= 0;
    if (message.part) {
      const tx = message.transactions[0];
      if (!tx || !inRange(tx)) return;
      if (there(tx)) {
        if (message.part.last) this.count(state, 0, 1, tx);
        return;
      }
      if (pastEnd(tx)) {
        state.finished = true;
        return;
      }
      if (message.part.index === 0) this.checkGap(state, message.previous, tx);
      try {
        await state.session.applyPart(tx, message.part);
      } catch (error) {
        if (error.code === "SITESYNC_ERR_GAP") throw this.gap(state, `part ${message.part.index} of transaction ${tx.id} is the first of it in the range read`);
        throw this.failed(state, tx, error);
      }
      if (message.part.last) {
        state.progress = tx.position;
        this.count(state, 1, 0, tx);
      }
      return;
    }
    let previous = message.previous;
    const fresh = [];
    let already = 0;
    let lastThere;
    for (const tx of message.transactions) {
      if (!inRange(tx)) {
        previous = tx.position;
        continue;
      }
      if (there(tx)) {
        already++;
        lastThere = tx;
        previous = tx.position;
        continue;
      }
      if (pastEnd(tx)) {
        state.finished = true;
        break;
      }
      if (fresh.length === 0) this.checkGap(state, previous, tx);
      fresh.push(tx);
    }
    if (already > 0) this.count(state, 0, already, lastThere);
    const last = fresh[fresh.length - 1];
    if (!last) return;
    try {
      await state.session.apply(fresh);
    } catch (error) {
      throw this.failed(state, fresh[0], error);
    }
    state.progress = last.position;
    this.count(state, fresh.length, 0, last);
  }
  /** The transactions before `tx` must be at the target already: otherwise the range read starts too late. */
  checkGap(state, previous, tx) {
    if (previous === null || state.progress === null) return;
    if (comparePositions(previous, state.progress) <= 0) return;
    throw this.gap(state, `transaction ${describePosition(tx.position)} follows ${describePosition(previous)}`);
  }
  gap(state, what) {
    const { site, config } = this.options;
    return new SitesyncError(
      "SITESYNC_ERR_GAP",
      `from site ${state.source}, ${what}, but ${site} has applied only up to ${describePosition(state.progress)}: replay from an earlier --from (the archive keeps ${config.broker.archiveRetentionDays} days); nothing after ${describePosition(state.progress)} was applied`
    );
  }
  failed(state, tx, error) {
    return new Error(
      `replay stopped at transaction ${describePosition(tx.position)} from ${state.source} (committed ${microsToIso(tx.commitTimeMicros)}), ${this.options.site} is at ${describePosition(state.progress)}: ${describeError(error).split("\n")[0]}`,
      { cause: error }
    );
  }
  count(state, applied, alreadyThere, last) {
    state.applied += applied;
    state.alreadyThere += alreadyThere;
    const before = this.handled;
    this.handled += applied + alreadyThere;
    if (Math.floor(before / PROGRESS_EVERY) !== Math.floor(this.handled / PROGRESS_EVERY)) {
      this.options.report(
        `replaying: ${this.handled} transactions read; from ${state.source} ${state.applied} applied, ${state.alreadyThere} already there, at ${describePosition(last.position)} (committed ${microsToIso(last.commitTimeMicros)})`
      );
    }
  }
};

// src/cli/replay-command.ts
var LSN_FORM = /^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$/;
var POSITION_FORM = /^[0-9A-Fa-f]{16}$/;
var ISO_TIME = /^(\d{4}-\d\d-\d\d)(?:[T ](\d\d:\d\d)(?::(\d\d)(?:[.,](\d{1,9}))?)?)?(Z|z|[+-]\d\d(?::?\d\d)?)?$/;
function configError2(message) {
  return new SitesyncError("SITESYNC_ERR_CONFIG", message);
}
function parseReplayPoint(text, option) {
  const value = text.trim();
  if (LSN_FORM.test(value)) return { kind: "position", position: lsnToPosition(parseLsn(value)), text: value };
  if (POSITION_FORM.test(value)) return { kind: "position", position: value.toUpperCase(), text: value };
  const m = ISO_TIME.exec(value);
  if (m) {
    const [, date, hm, seconds, fraction, zone] = m;
    const offset = zone === void 0 || zone === "z" ? "Z" : zone.length === 3 ? `${zone}:00` : zone.replace(/^([+-]\d\d)(\d\d)$/, "$1:$2");
    const millis = Date.parse(`${date}T${hm ?? "00:00"}:${seconds ?? "00"}${offset}`);
    if (Number.isFinite(millis) && sameCalendarDate(date, millis, offset)) {
      const micros = BigInt(millis) * 1000n + BigInt((fraction ?? "").padEnd(9, "0").slice(0, 6) || "0");
      return { kind: "time", micros, text: value };
    }
  }
  throw configError2(
    `${option} ${JSON.stringify(text)} is neither a time nor a position; give an ISO 8601 time (2024-05-01T09:30:00Z, UTC when no offset is given) or a position (0/16B3748, as PostgreSQL prints it)`
  );
}
function sameCalendarDate(date, millis, offset) {
  const sign = offset === "Z" ? 0 : offset.startsWith("-") ? -1 : 1;
  const [h, mm] = offset === "Z" ? [0, 0] : offset.slice(1).split(":").map(Number);
  const local = new Date(millis + sign * ((h ?? 0) * 60 + (mm ?? 0)) * 6e4);
  return local.toISOString().slice(0, 10) === date;
}
function planReplay(config, options) {
  const sites = Object.keys(config.sites);
  const { site } = options;
  if (!(site in config.sites)) {
    throw configError2(`site ${JSON.stringify(site)} is not in the configuration (sites: ${sites.join(", ")}); pass one of them with --site`);
  }
  let sources = sites.filter((s) => s !== site);
  if (options.source !== void 0) {
    const source = options.source;
    if (source === site) throw configError2(`--source ${source} is the site being replayed into; give another site (${sources.join(", ")}), or leave --source out for all of them`);
    if (!(source in config.sites)) throw configError2(`--source ${JSON.stringify(source)} is not in the configuration (sites: ${sites.join(", ")})`);
    sources = [source];
  }
  const from = parseReplayPoint(options.from, "--from");
  const to = options.to === void 0 ? null : parseReplayPoint(options.to, "--to");
  if ((from.kind === "position" || to?.kind === "position") && sources.length > 1) {
    throw configError2(`a position belongs to one source site, and ${site} has ${sources.length} (${sources.join(", ")}): add --source, or give times instead`);
  }
  if (to !== null && to.kind === from.kind) {
    const backwards = from.kind === "position" && to.kind === "position" ? comparePositions(to.position, from.position) < 0 : from.kind === "time" && to.kind === "time" && to.micros < from.micros;
    if (backwards) throw configError2(`--to ${to.text} is before --from ${from.text}; swap them`);
  }
  return { site, sources, from, to };
}
async function runReplay(config, plan, logger, report) {
  const siteConfig = config.sites[plan.site];
  const { slot } = await readPostgresStatus(siteConfig.postgres, plan.site, []);
  if (slot.active) throw stopRunFirst(plan.site, `its slot ${slot.slot} is being read`);
  const sink = new PostgresSink({
    site: plan.site,
    url: siteConfig.postgres,
    replicaRole: config.apply.replicaRole,
    conflictPolicy: policyResolver(config.conflicts),
    logger: logger.child({ site: plan.site, part: "replay" })
  });
  let result;
  try {
    result = await replayArchive({ config, site: plan.site, sources: plan.sources, from: plan.from, to: plan.to, sink, logger: logger.child({ site: plan.site, part: "replay" }), report });
  } finally {
    await sink.close().catch(() => void 0);
  }
  const lines = result.sources.map(formatReplaySummary);
  if (result.undecodableUnattributed > 0) lines.push(`${result.undecodableUnattributed} messages naming no configured site skipped as undecodable`);
  return lines;
}

// src/cli/subscribe-command.ts
var NAME = /^[a-z0-9_.-]+$/;
var MAX_NAME_LENGTH = 200;
var TABLE = /^([^.]+)\.([^.]+)$/;
var MAX_IDENTIFIER_BYTES = 63;
function configError3(message) {
  return new SitesyncError("SITESYNC_ERR_CONFIG", message);
}
function list(value) {
  return [...new Set(value.split(",").map((item) => item.trim()))];
}
function parseSubscription(config, options) {
  const { name } = options;
  if (!NAME.test(name) || name.length > MAX_NAME_LENGTH) {
    throw configError3(`subscriber name ${JSON.stringify(name)} is not valid; use 1 to ${MAX_NAME_LENGTH} lower-case letters, digits, '_', '.' or '-'`);
  }
  const configured = Object.keys(config.sites);
  const sites = options.sites === void 0 ? configured : list(options.sites);
  for (const site of sites) {
    if (!configured.includes(site)) {
      throw configError3(`site ${JSON.stringify(site)} is not in the configuration (sites: ${configured.join(", ")}); pass some of them with --sites, or leave --sites out for all of them`);
    }
  }
  const tables = options.tables === void 0 ? [] : list(options.tables);
  for (const table of tables) {
    const match = TABLE.exec(table);
    if (!match || Buffer.byteLength(match[1]) > MAX_IDENTIFIER_BYTES || Buffer.byteLength(match[2]) > MAX_IDENTIFIER_BYTES) {
      throw configError3(`table ${JSON.stringify(table)} is not valid; write schema.table (for example public.users), names as PostgreSQL stores them, without quotes, at most 63 bytes each`);
    }
  }
  return { name, queue: subscriberQueue(name), sites, tables };
}
function bindingArguments(site, table) {
  return { "x-match": "any", [tableHeader(site, table)]: 1, [allTablesHeader(site)]: 1 };
}
async function withChannel2(config, purpose, work) {
  const connection = await connectBroker(config.broker.url, `sitesync ${purpose}`);
  connection.on("error", () => void 0);
  try {
    const channel = await connection.createChannel();
    channel.on("error", () => void 0);
    return await work(channel);
  } finally {
    await connection.close().catch(() => void 0);
  }
}
function refused(what, error) {
  if (error instanceof SitesyncError) return error;
  const message = (error?.message ?? String(error)).split("\n")[0];
  return new SitesyncError("SITESYNC_ERR_BROKER_REJECTED", `RabbitMQ refused to ${what}: ${message}`, { cause: error });
}
async function brokerStep(what, action) {
  try {
    return await action();
  } catch (error) {
    throw refused(what, error);
  }
}
async function existingQueue(channel, subscription) {
  try {
    return (await channel.checkQueue(subscription.queue)).messageCount;
  } catch (error) {
    if (/NOT_FOUND|404/.test(error?.message ?? "")) {
      throw configError3(`there is no subscriber ${JSON.stringify(subscription.name)} (queue ${subscription.queue} does not exist); create it with sitesync subscribe`);
    }
    throw refused(`check queue ${subscription.queue}`, error);
  }
}
async function subscribe(config, options, print) {
  const subscription = parseSubscription(config, options);
  if (subscription.tables.length === 0) throw configError3("subscribe needs --tables schema.table[,schema.table\u2026]");
  const exchange = tablesExchange(config.broker.exchange);
  await withChannel2(config, `subscribe ${subscription.name}`, async (channel) => {
    await declareTopology(channel, config);
    print(`topology ready: headers exchange ${exchange} receives every message of ${config.broker.exchange} (site.#)`);
    const queue = await brokerStep(
      `declare queue ${subscription.queue}`,
      () => channel.assertQueue(subscription.queue, {
        durable: true,
        arguments: { "x-queue-type": "quorum", "x-single-active-consumer": true }
      })
    );
    print(`queue ${subscription.queue} ready (quorum, ${queue.messageCount} messages waiting)`);
    for (const site of subscription.sites) {
      for (const table of subscription.tables) {
        await brokerStep(`bind ${subscription.queue} to ${exchange}`, () => channel.bindQueue(subscription.queue, exchange, "", bindingArguments(site, table)));
        print(`${subscription.queue} receives ${site}/${table}`);
      }
    }
  });
  return subscription;
}
async function unsubscribe(config, options, print) {
  const subscription = parseSubscription(config, options);
  if (options.sites !== void 0 && subscription.tables.length === 0) {
    throw configError3("unsubscribe --sites needs --tables (the tables to stop receiving from those sites); without both, unsubscribe deletes the whole subscriber");
  }
  const exchange = tablesExchange(config.broker.exchange);
  await withChannel2(config, `unsubscribe ${subscription.name}`, async (channel) => {
    const waiting = await existingQueue(channel, subscription);
    if (subscription.tables.length > 0) {
      for (const site of subscription.sites) {
        for (const table of subscription.tables) {
          await brokerStep(`unbind ${subscription.queue} from ${exchange}`, () => channel.unbindQueue(subscription.queue, exchange, "", bindingArguments(site, table)));
          print(`${subscription.queue} no longer receives ${site}/${table}`);
        }
      }
      print(`queue ${subscription.queue} kept (${waiting} messages waiting)`);
      return;
    }
    const deleted = await brokerStep(`delete queue ${subscription.queue}`, () => channel.deleteQueue(subscription.queue));
    print(`deleted queue ${subscription.queue} (it held ${deleted.messageCount} messages)`);
  });
  return subscription;
}

// src/cli/parked-command.ts
async function parkedCommand(config, site, action, print) {
  if (!(site in config.sites)) {
    throw new SitesyncError("SITESYNC_ERR_CONFIG", `site ${JSON.stringify(site)} is not in the configuration (sites: ${Object.keys(config.sites).join(", ")}); pass one of them with --site`);
  }
  const connection = await connectBroker(config.broker.url, `sitesync parked ${site}`);
  try {
    const channel = await connection.createConfirmChannel();
    const queue = parkingQueue(site);
    await channel.checkQueue(queue).catch(() => {
      throw new SitesyncError("SITESYNC_ERR_CONFIG", `queue ${queue} does not exist: run the site once first`);
    });
    let count = 0;
    let matched = 0;
    for (; ; ) {
      const message = await channel.get(queue, { noAck: false });
      if (!message) break;
      count++;
      const h = message.properties.headers ?? {};
      const id = String(h[PARKED_ID_HEADER] ?? `(no id: parked before ids existed, #${count})`);
      const what = `${id}  ${h["sitesync-parked-at"] ?? "?"}  from ${h["sitesync-parked-source"] ?? "?"}  ${h["sitesync-parked-transaction"] ?? ""}  ${h["sitesync-parked-code"] ?? ""}: ${h["sitesync-parked-reason"] ?? ""}`;
      if (action.kind === "list" || action.id !== "all" && action.id !== id) {
        if (action.kind === "list") print(what);
        continue;
      }
      matched++;
      if (action.kind === "retry") {
        channel.sendToQueue(siteQueue(site), message.content, { persistent: true, headers: { ...h, [RETRY_HEADER]: true }, messageId: message.properties.messageId });
        await channel.waitForConfirms();
        channel.ack(message);
        print(`sent back to ${siteQueue(site)}: ${id}`);
      } else {
        channel.ack(message);
        print(`discarded: ${id}`);
      }
    }
    if (action.kind === "list") print(`${count} parked message(s) in ${queue}`);
    else if (matched === 0) throw new SitesyncError("SITESYNC_ERR_CONFIG", `no parked message ${action.id} in ${queue} (${count} there); list them with: sitesync parked --config FILE --site ${site}`);
  } finally {
    await connection.close().catch(() => void 0);
  }
}

// src/cli/main.ts
var EXIT_CONFIG = 2;
var EXIT_FAILURE = 1;
function fail(error) {
  process.stderr.write(`sitesync: ${describeError(error)}
`);
  const config = error instanceof SitesyncError && error.code === "SITESYNC_ERR_CONFIG";
  process.exit(config ? EXIT_CONFIG : EXIT_FAILURE);
}
function port(value) {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError("a port is a whole number from 0 to 65535");
  return n;
}
var program = new Command().name("sitesync").description("Keeps the databases of several sites in step: PostgreSQL WAL \u2192 RabbitMQ \u2192 every other site, exactly once, in commit order.").showHelpAfterError().configureOutput({ outputError: (text, write2) => write2(`sitesync: ${text.replace(/^error: /, "")}`) }).exitOverride((error) => process.exit(error.exitCode === 0 ? 0 : EXIT_CONFIG));
program.command("run").description("capture site NAME and apply every other site into it, until SIGTERM or SIGINT").requiredOption("-c, --config <file>", "configuration file (YAML)").requiredOption("-s, --site <name>", "the site this process serves").option("--metrics-port <port>", "serve Prometheus metrics on this port (overrides metrics.port)", port).action(async (opts) => {
  let pipeline;
  let logger;
  try {
    const config = loadConfig(opts.config);
    logger = createLogger(config.log.level);
    pipeline = createPipeline(config, opts.site, logger);
    const metricsPort = opts.metricsPort ?? config.metrics.port;
    if (metricsPort > 0) {
      const metrics = createMetrics(pipeline.events);
      const server = await serveMetrics(metrics, metricsPort);
      server.unref();
      logger.info({ port: metricsPort }, "metrics on /metrics");
    }
  } catch (error) {
    fail(error);
  }
  const log = logger;
  const p = pipeline;
  let signals = 0;
  const onSignal = (signal) => {
    if (++signals > 1) {
      log.warn("second signal: exiting now; what was in flight is sent again at the next start");
      process.exit(EXIT_FAILURE);
    }
    log.info({ signal }, "stopping: finishing what is in flight");
    p.stop();
  };
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGINT", () => onSignal("SIGINT"));
  log.info({ site: opts.site }, "sitesync running");
  try {
    await p.run();
    log.info("stopped cleanly");
    log.flush();
    process.exit(0);
  } catch (error) {
    log.flush();
    fail(error);
  }
});
program.command("status").description("show every site's slot, how far each source is applied, and the queues").requiredOption("-c, --config <file>", "configuration file (YAML)").option("--json", "print JSON instead of text").action(async (opts) => {
  try {
    const config = loadConfig(opts.config);
    const statuses = await collectStatus(config);
    process.stdout.write(opts.json ? `${JSON.stringify(statuses, null, 2)}
` : `${formatStatus(statuses)}
`);
    process.exit(0);
  } catch (error) {
    fail(error);
  }
});
program.command("subscribe").description("create or extend subscriber NAME: a queue that receives the transactions touching some tables of some sites").requiredOption("-c, --config <file>", "configuration file (YAML)").requiredOption("-n, --name <name>", "subscriber name; its queue is sitesync.subscriber.NAME").requiredOption("-t, --tables <list>", "schema.table list, comma-separated (added to those it already receives)").option("--sites <list>", "source sites, comma-separated (default: every configured site)").action(async (opts) => {
  try {
    await subscribe(loadConfig(opts.config), opts, (line) => process.stdout.write(`${line}
`));
    process.exit(0);
  } catch (error) {
    fail(error);
  }
});
program.command("unsubscribe").description("stop subscriber NAME receiving some tables (--tables), or delete it and its queue").requiredOption("-c, --config <file>", "configuration file (YAML)").requiredOption("-n, --name <name>", "subscriber name").option("-t, --tables <list>", "schema.table list to stop receiving; without it the queue is deleted").option("--sites <list>", "with --tables: only from these sites (default: every configured site)").action(async (opts) => {
  try {
    await unsubscribe(loadConfig(opts.config), opts, (line) => process.stdout.write(`${line}
`));
    process.exit(0);
  } catch (error) {
    fail(error);
  }
});
program.command("replay").description("re-apply transactions from the archive stream to site NAME (its `sitesync run` must be stopped)").requiredOption("-c, --config <file>", "configuration file (YAML)").requiredOption("-s, --site <name>", "the site to replay into").requiredOption("--from <time|position>", "where to start: an ISO 8601 time (UTC without an offset) or a source position (0/16B3748)").option("--to <time|position>", "where to stop, included (default: the end of the archive)").option("--source <site>", "replay only this source site (default: every site but --site; needed with a position)").addHelpText(
  "after",
  `
Transactions the site already has are counted and left alone, so replaying what a site has changes
nothing, and a site restored from an older copy is brought level. A range that starts after what the
site holds stops with SITESYNC_ERR_GAP: replay from an earlier --from. The archive keeps
broker.archiveRetentionDays days (default 90). Ends with one line per source:
  replayed N transactions from SOURCE (M already there, K skipped as undecodable), now at POSITION

Examples:
  sitesync replay --config sitesync.yml --site london --from 2024-05-01T09:00:00Z
  sitesync replay --config sitesync.yml --site london --source paris --from 0/16B3748 --to 0/17000A0`
).action(async (opts) => {
  let logger;
  try {
    const config = loadConfig(opts.config);
    const plan = planReplay(config, opts);
    logger = createLogger(config.log.level);
    const lines = await runReplay(config, plan, logger, (line) => process.stdout.write(`${line}
`));
    for (const line of lines) process.stdout.write(`${line}
`);
    logger.flush();
    process.exit(0);
  } catch (error) {
    logger?.flush();
    fail(error);
  }
});
program.command("parked").description("list a site's parked messages (with their reasons), send them back to be applied, or discard them").requiredOption("-c, --config <file>", "configuration file (YAML)").requiredOption("-s, --site <name>", "the site whose parking queue to look at").option("--retry <id>", "send the parked message with this id (or 'all') back to the site's queue, to be applied as it is").option("--discard <id>", "remove the parked message with this id (or 'all') for good").action(async (opts) => {
  try {
    if (opts.retry && opts.discard) throw new SitesyncError("SITESYNC_ERR_CONFIG", "give --retry or --discard, not both");
    const config = loadConfig(opts.config);
    const action = opts.retry ? { kind: "retry", id: opts.retry } : opts.discard ? { kind: "discard", id: opts.discard } : { kind: "list" };
    await parkedCommand(config, opts.site, action, (line) => process.stdout.write(`${line}
`));
    process.exit(0);
  } catch (error) {
    fail(error);
  }
});
await program.parseAsync(process.argv);
