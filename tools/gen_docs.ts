/**
 * Generates `docs/configuration.md` and `docs/metrics.md` from the code: the config reference
 * from the zod schema in `agent/config/config.ts` (probed, so types, requiredness, in-code defaults and
 * range checks are the ones the agent enforces) plus `deploy/config.json`, the metrics reference
 * from the registries of `agent/observability/metrics.ts`. Run `deno task docs` after changing either.
 *
 * Prose the code cannot supply lives in the description tables below. Generation fails when a
 * schema key or environment variable has no description, or a description names a key that no
 * longer exists, so the reference cannot silently go stale.
 *
 * @module
 */

import { BillingCollectorMetrics } from "../billing/metrics.ts";
import { ReportingMetrics } from "../billing/reporting/metrics.ts";
import { z } from "zod";
import { collectDefaultMetrics, Histogram, Registry } from "prom-client";
import { agentConfigSchema, parseConfig } from "../agent/config/config.ts";
import { DEFAULT_STATE_DIR, EnvError, readEnv } from "../agent/config/env.ts";
import { objectSchemaOf } from "../lib/config_fields.ts";
import {
  GlobalMetrics,
  NODEJS_TOTAL_GAUGES,
  PerVmMetrics,
} from "../agent/observability/metrics.ts";

const ROOT = new URL("../", import.meta.url);
export const CONFIG_DOC = new URL("docs/configuration.md", ROOT);
export const METRICS_DOC = new URL("docs/metrics.md", ROOT);
const SHIPPED_CONFIG = new URL("deploy/config.json", ROOT);

const ENV_DESCRIPTIONS: Record<string, string> = {
  CONFIG_PATH: "Path of the JSON config file. The DaemonSet mounts the ConfigMap " +
    "`kube-system/autoscaler-agent-config` at `/etc/autoscaler-agent-config/config.json`.",
  K8S_NODE_NAME: "The node this agent serves; only VMs whose `.status.node` is this node are " +
    "scaled. The DaemonSet sets it from the downward API `spec.nodeName`.",
  K8S_POD_IP: "The agent pod's own IP, checked at start-up and otherwise unused. The DaemonSet " +
    "sets it from the downward API `status.podIP`.",
};

function failedRequestRate(prefix: string, party: string): Record<string, string> {
  return {
    [prefix]: `Stuck detection for ${party} requests: a VM's runner counts as stuck while more ` +
      "than `threshold` requests failed within the last `intervalSeconds`.",
    [`${prefix}.intervalSeconds`]: "Length of the sliding window, in seconds.",
    [`${prefix}.threshold`]: "Failures tolerated in the window; one more marks the runner stuck.",
  };
}

function clientBase(prefix: string): Record<string, string> {
  return {
    [`${prefix}.pushEverySeconds`]: "Seconds between pushes of completed batches.",
    [`${prefix}.pushRequestTimeoutSeconds`]: "Timeout of one push request, in seconds.",
    [`${prefix}.maxBatchSize`]: "Events per batch; a full batch is completed at once.",
  };
}

function azureBlobClient(prefix: string, what: string, prefixRule: string) {
  return {
    [prefix]: `Upload ${what} to Azure Blob Storage as gzipped NDJSON blobs, authenticated by ` +
      "the Azure default credential chain (`AZURE_CLIENT_ID`, workload identity, ...).",
    [`${prefix}.endpoint`]: "Storage account URL, e.g. `https://<account>.blob.core.windows.net`.",
    [`${prefix}.container`]: "Blob container name.",
    [`${prefix}.prefixInContainer`]: `Key prefix of the blobs${prefixRule}.`,
    ...clientBase(prefix),
  };
}

function s3Client(prefix: string, what: string, prefixRule: string) {
  return {
    [prefix]: `Upload ${what} to S3 as gzipped NDJSON objects, authenticated by the AWS ` +
      "credential chain (`AWS_ACCESS_KEY_ID`, web identity, ...).",
    [`${prefix}.bucket`]: "Bucket name.",
    [`${prefix}.region`]: "AWS region of the bucket.",
    [`${prefix}.endpoint`]: "Empty: the SDK's regional endpoint. Otherwise a base URL used " +
      "path-style, for S3-compatible stores such as MinIO.",
    [`${prefix}.prefixInBucket`]: `Key prefix of the objects${prefixRule}.`,
    ...clientBase(prefix),
  };
}

function metricsSource(prefix: string, what: string): Record<string, string> {
  return {
    [prefix]: `Scraping of each VM's ${what} endpoint (Prometheus text at ` +
      "`http://<pod IP>:<port>/metrics`).",
    [`${prefix}.port`]: "Port of the endpoint on the VM's pod IP.",
    [`${prefix}.requestTimeoutSeconds`]: "Timeout of one scrape, in seconds.",
    [`${prefix}.secondsBetweenRequests`]: "Pause after each scrape attempt; also the upper " +
      "bound of the random delay before a runner's first scrape.",
  };
}

const CONFIG_DESCRIPTIONS: Record<string, string> = {
  refereshStateIntervalSeconds: "Period of each runner's status refresh (stuck detection and " +
    "the `autoscaling_agent_runners_current` state). The key is misspelled as in the reference. " +
    "Unlike the reference, 0 is rejected.",

  billing: "Billing: sampling of each VM's allocated CPU and active time into usage events.",
  "billing.cpuMetricName": "Metric name written into CPU usage events.",
  "billing.activeTimeMetricName": "Metric name written into active-time events.",
  "billing.collectEverySeconds": "Sampling period of the VMs' CPU allocations, in seconds.",
  "billing.accumulateEverySeconds": "Period at which samples are turned into events, in seconds.",
  "billing.clients": "Where billing events go: any of `http`, `azureBlob`, `s3`. Absent, `null` " +
    "or `{}` sends them nowhere.",
  "billing.clients.http": 'POST batches to `<url>/usage_events` as `{"events":[...]}`.',
  "billing.clients.http.url": "Base URL of the billing collector.",
  ...clientBase("billing.clients.http"),
  ...azureBlobClient("billing.clients.azureBlob", "billing events", "; may be empty"),
  ...s3Client("billing.clients.s3", "billing events", "; may be empty"),

  scalingEvents: "Scaling events: `actual` ones for each NeonVM resize request, `hypothetical` " +
    "ones when a VM's desired CU changes.",
  "scalingEvents.cuMultiplier": "Converts the agent's compute units into reported CU " +
    "(reported = internal × multiplier); also scales `autoscaling_vm_desired_cu`.",
  "scalingEvents.rereportThreshold": "A hypothetical event with an unchanged target CU is " +
    "skipped while every goal component differs from the last reported one by less than this " +
    "(in reported CU). Used as configured; the reference hard-codes 0.25.",
  "scalingEvents.regionName": "Region name copied into every scaling event.",
  "scalingEvents.clients": "Where scaling events go: `azureBlob` and/or `s3` (there is no " +
    "`http` sink). Absent, `null` or `{}` sends them nowhere.",
  ...azureBlobClient("scalingEvents.clients.azureBlob", "scaling events", "; required"),
  ...s3Client("scalingEvents.clients.s3", "scaling events", "; required"),

  scaling: "The compute unit and the default scaling config of every VM.",
  "scaling.computeUnit": "One compute unit (CU): the step in which VMs are scaled.",
  "scaling.computeUnit.vCPUs": "CPU of one CU, in cores; kept as milli-CPU, rounded up.",
  "scaling.computeUnit.mem": "Memory of one CU, in bytes; rounded up to a whole byte.",
  "scaling.defaultConfig": "Scaling config used for every VM; a VM's " +
    "`autoscaling.neon.tech/config` annotation overrides it field by field.",
  "scaling.defaultConfig.loadAverageFractionTarget": "Desired ratio of load average to " +
    "vCPUs; smaller means more CPU.",
  "scaling.defaultConfig.memoryUsageFractionTarget": "Largest share of the VM's memory that " +
    "used (non-reclaimable) memory may take.",
  "scaling.defaultConfig.memoryTotalFractionTarget": "Largest share of the VM's memory that " +
    "used memory plus the cached part of the LFC working set may take.",
  "scaling.defaultConfig.enableLFCMetrics": "Scrape the VM's local file cache (LFC) metrics " +
    "and size the VM for the cache's working set.",
  "scaling.defaultConfig.lfcUseLargestWindow": "Take the largest working-set window as the " +
    "estimate instead of the estimator's.",
  "scaling.defaultConfig.lfcToMemoryRatio": "Share of a VM's memory that goes to the LFC.",
  "scaling.defaultConfig.lfcWindowSizeMinutes": "Window, in minutes, of the working-set " +
    "estimator's slope comparisons.",
  "scaling.defaultConfig.lfcMinWaitBeforeDownscaleMinutes": "Minutes of working-set history " +
    "that may not be forgotten when shrinking.",
  "scaling.defaultConfig.cpuStableZoneRatio": "Half-width, as a fraction of the 5-minute load, " +
    "of the band around it in which the CPU goal follows the 5-minute load; 0 disables it.",
  "scaling.defaultConfig.cpuMixedZoneRatio": "Width, as a fraction of the 5-minute load, of the " +
    "band beyond the stable one in which the CPU goal blends the 1- and 5-minute loads.",

  metrics: "Scraping of the in-VM metrics endpoints.",
  ...metricsSource("metrics.system", "system metrics (load, memory)"),
  ...metricsSource("metrics.lfc", "LFC metrics (only with `enableLFCMetrics`)"),
  "metrics.maxBodyBytes": "Not in the reference: the longest page read from a VM's endpoint, " +
    "in bytes. A longer page is cut off while it is read and the scrape fails.",
  "metrics.bytesPerSecond": "Not in the reference: the bytes per second one endpoint may send " +
    "on average, pages cut off included. Past it, that endpoint's scrapes are skipped (and " +
    "counted as failed) until the allowance has refilled, so that parsing one VM's pages " +
    "costs at most this much CPU. At most `maxBodyBytes` may come at once.",

  scheduler: "Requests to the scheduler plugin, which approves upscaling.",
  "scheduler.schedulerName": "Only VMs whose `spec.schedulerName` equals this are scaled; the " +
    "plugin is found among the `kube-system` pods labelled `name=<schedulerName>`.",
  "scheduler.requestTimeoutSeconds": "Timeout of one plugin request (the reference uses " +
    "`neonvm.requestTimeoutSeconds` here).",
  "scheduler.requestAtLeastEverySeconds": "Longest gap between plugin requests, even when " +
    "nothing changed.",
  "scheduler.retryFailedRequestSeconds": "Wait after a failed plugin request.",
  "scheduler.retryDeniedUpscaleSeconds": "Wait before asking again for resources that were " +
    "not fully granted.",
  "scheduler.requestPort": "Port of the plugin's HTTP API on the scheduler pod's IP.",
  ...failedRequestRate("scheduler.maxFailedRequestRate", "plugin"),

  monitor: "The websocket connection to each VM's vm-monitor, which approves downscaling.",
  "monitor.serverPort": "vm-monitor port on the VM's pod IP (`ws://<pod IP>:<port>/monitor`).",
  "monitor.responseTimeoutSeconds": "Timeout of the reply to any request sent to the monitor, " +
    "health checks included.",
  "monitor.connectionTimeoutSeconds": "Budget for the websocket dial and version handshake.",
  "monitor.connectionRetryMinWaitSeconds": "Shortest time between the starts of two " +
    "connection attempts.",
  "monitor.unhealthyAfterSilenceDurationSeconds": "After a successful health check, the " +
    "runner counts as stuck when no further check succeeds within this.",
  "monitor.unhealthyStartupGracePeriodSeconds": "Grace period from runner start before the " +
    "first successful health check is expected.",
  "monitor.maxHealthCheckSequentialFailuresSeconds": "A streak of failing health checks older " +
    "than this closes the connection and reconnects.",
  "monitor.retryDeniedDownscaleSeconds": "Wait before repeating a downscale the monitor denied.",
  "monitor.requestedUpscaleValidSeconds": "How long a monitor's upscale request is honoured.",
  "monitor.retryFailedRequestSeconds": "Wait after a failed monitor request.",
  ...failedRequestRate("monitor.maxFailedRequestRate", "vm-monitor"),
  "monitor.inboundRateLimit": "Not in the reference: how many messages a VM's vm-monitor may " +
    "send. One more than the allowance ends the connection (close code 4008, logged with the " +
    "reason); it is opened again after `connectionRetryMinWaitSeconds`.",
  "monitor.inboundRateLimit.perSecond": "Messages per second on average.",
  "monitor.inboundRateLimit.burst": "Messages at once after a quiet period.",

  neonvm: "Patches of the NeonVM `VirtualMachine` objects that resize VMs.",
  "neonvm.requestTimeoutSeconds": "Timeout of one VM patch, waiting for a rate-limit token " +
    "included.",
  "neonvm.retryFailedRequestSeconds": "Wait after a failed patch.",
  ...failedRequestRate("neonvm.maxFailedRequestRate", "NeonVM"),
  "neonvm.statusWaitSeconds": "Not in the reference: how long to wait for the VM status to " +
    "show a patched size before the vm-monitor is told of an upscale anyway. 0 notifies right " +
    "after the patch, as the reference does.",
  "neonvm.patchRateLimit": "Not in the reference: client-side token bucket shared by VM " +
    "patches and the VirtualMachine list/watch (client-go's default throttling).",
  "neonvm.patchRateLimit.perSecond": "Tokens added per second.",
  "neonvm.patchRateLimit.burst": "Bucket size: requests allowed at once.",
  "neonvm.patchRateLimit.upscaleReserve": "Tokens only upscale patches may take; must be less " +
    "than `burst`. Absent: half of `burst`, rounded down. Upscale patches go ahead of every " +
    "other NeonVM call waiting for a token (those the vm-monitor asked for first, see " +
    "`urgentReserve`); the others get the full rate but a burst of only `burst` minus this.",
  "neonvm.patchRateLimit.urgentReserve": "Of the `upscaleReserve` tokens, those only upscales " +
    "the vm-monitor asked for (the VM is short of memory) may take; must be at most " +
    "`upscaleReserve`. Absent: half of `upscaleReserve`, rounded up. Those upscales go ahead " +
    "of every other NeonVM call waiting for a token, load-driven upscales included.",

  dumpState: "The state-dump HTTP server (`GET /` returns the agent's state as JSON). Absent " +
    "or `null` disables it.",
  "dumpState.port": "Port of the state-dump server.",
  "dumpState.timeoutSeconds": "Time limit for assembling one dump.",

  listen: "Not in the reference: the agent's own listening addresses, so that several agents " +
    "and a simulated cluster fit on one machine.",
  "listen.host": "Address every HTTP server of the agent binds.",
  "listen.metricsPort": "Port of the global metrics (`/metrics`); 0 lets the OS choose.",
  "listen.vmMetricsPort": "Port of the per-VM metrics (`/metrics`); 0 lets the OS choose.",
  "listen.maxConnections": "Connections each of the agent's HTTP servers (metrics, per-VM " +
    "metrics, dump) holds at once; one more is answered 503 and closed at once.",
  "listen.headerTimeoutSeconds": "How long a request's head may take to arrive (from the " +
    "connection's start, or from the first byte of a later request), and how long a client " +
    "may take to read a response; past it, the connection is closed.",
  "listen.idleTimeoutSeconds": "How long a kept-alive connection may wait for its next " +
    "request before it is closed.",
};

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Messages of the issues `schema` raises for `value` at `key` (or everywhere, without one). */
function issues(schema: z.ZodType, value: unknown, key?: string): string[] {
  const result = schema.safeParse(value);
  if (result.success) return [];
  return result.error.issues
    .filter(({ path }) => key === undefined || path[0] === key)
    .map(({ message }) => message);
}

/** A value the schema accepts: the shipped one where there is one. */
function sample(schema: z.ZodType, shipped: unknown, path: string): unknown {
  const object = objectSchemaOf(schema);
  if (object !== undefined) {
    const value = Object.fromEntries(
      Object.entries(object.shape).map((
        [key, child],
      ) => [key, sample(child, isObject(shipped) ? shipped[key] : undefined, `${path}.${key}`)]),
    );
    if (schema.safeParse(value).success) return value;
    // Keys the shipped file leaves out take their defaults, which agree with each other.
    const shippedOnly = Object.fromEntries(
      Object.entries(value).filter(([key]) => isObject(shipped) && shipped[key] !== undefined),
    );
    if (!schema.safeParse(shippedOnly).success) throw new Error(`no valid sample for ${path}`);
    return shippedOnly;
  }
  for (const candidate of [shipped, 1, "x", true]) {
    if (candidate !== undefined && schema.safeParse(candidate).success) return candidate;
  }
  // An optional key the shipped file leaves out takes its default.
  if (schema.safeParse(undefined).success) return undefined;
  throw new Error(`no valid sample for ${path}`);
}

interface Row {
  path: string;
  accepts: string;
  shipped: unknown;
  ifAbsent: string;
}

function code(value: unknown): string {
  return `\`${JSON.stringify(value)}\``;
}

/** What a scalar accepts, in the words of its own "expected ..." message. */
function scalarAccepts(schema: z.ZodType, path: string): string {
  for (const message of issues(schema, {})) {
    const match = /^expected (.*), got \{\}$/.exec(message);
    if (match) return match[1];
  }
  throw new Error(`cannot tell what ${path} accepts; extend tools/gen_docs.ts for its schema`);
}

/**
 * One row per key of `parent`, each object's row followed by the rows of its keys.
 * Requiredness, defaults and range checks are probed on the parent, because some (the default
 * scaling config's) are checks of the enclosing object rather than of the field.
 */
function rows(parent: z.ZodType, parentSample: Json, shipped: unknown, prefix: string): Row[] {
  const result: Row[] = [];
  for (const [key, child] of Object.entries(objectSchemaOf(parent)!.shape)) {
    const path = prefix === "" ? key : `${prefix}.${key}`;
    const shippedValue = isObject(shipped) ? shipped[key] : undefined;
    const { [key]: _, ...without } = parentSample;
    const absent = parent.safeParse(without);
    const fallback = absent.success && isObject(absent.data) ? absent.data[key] : undefined;
    const ifAbsent = !absent.success
      ? "required"
      : fallback === undefined
      ? "optional"
      : isObject(fallback) && Object.keys(fallback).length > 0
      ? "_see below_"
      : code(fallback);
    if (objectSchemaOf(child) !== undefined) {
      // A non-empty shipped object is shown key by key in the rows below.
      const shownShipped = isObject(shippedValue) && Object.keys(shippedValue).length > 0
        ? undefined
        : shippedValue;
      const accepts = child.safeParse(null).success ? "object or `null`" : "object";
      result.push({ path, accepts, shipped: shownShipped, ifAbsent });
      const childSample = sample(child, shippedValue, path) as Json;
      result.push(...rows(child, childSample, shippedValue, path));
      continue;
    }
    let accepts = scalarAccepts(child, path);
    if (typeof parentSample[key] === "number") {
      // Range checks of the enclosing object show up only when the whole object is parsed.
      const own = new Set(issues(child, -1));
      for (const message of issues(parent, { ...parentSample, [key]: -1 }, key)) {
        if (own.has(message)) continue;
        const range = message.replace(/^must be /, "").replace(/, got -1$/, "");
        accepts = range.startsWith(accepts) ? range : `${accepts}; ${range}`;
      }
    }
    result.push({ path, accepts, shipped: shippedValue, ifAbsent });
  }
  return result;
}

function cell(text: string): string {
  return text.replaceAll("|", "\\|").replaceAll("\n", " ");
}

function table(header: string[], body: string[][]): string {
  return [
    `| ${header.join(" | ")} |`,
    `| ${header.map(() => "---").join(" | ")} |`,
    ...body.map((row) => `| ${row.map(cell).join(" | ")} |`),
  ].join("\n");
}

function environmentVariables(): string[] {
  try {
    readEnv({});
  } catch (err) {
    if (err instanceof EnvError) {
      return err.problems.map((problem) => {
        const match = /^missing (\S+) in environment$/.exec(problem);
        if (!match) throw new Error(`unexpected environment problem: ${problem}`);
        return match[1];
      });
    }
    throw err;
  }
  throw new Error("readEnv accepted an empty environment");
}

export function checkDescribed(kind: string, keys: string[], descriptions: Record<string, string>) {
  const missing = keys.filter((key) => !Object.hasOwn(descriptions, key));
  const stale = Object.keys(descriptions).filter((key) => !keys.includes(key));
  const problems = [
    ...missing.map((key) => `${kind} "${key}" has no description`),
    ...stale.map((key) => `description of ${kind} "${key}", which does not exist`),
  ];
  if (problems.length > 0) {
    throw new Error(`${problems.join("\n")}\n(edit the description tables in tools/gen_docs.ts)`);
  }
}

const GENERATED_NOTE = (sources: string) =>
  `<!-- Generated by \`deno task docs\` (tools/gen_docs.ts) from ${sources}. Do not edit. -->`;

/** The Markdown of `docs/configuration.md`, before formatting. */
export async function renderConfigurationDoc(): Promise<string> {
  const shippedText = await Deno.readTextFile(SHIPPED_CONFIG);
  // Documenting shipped values the agent would reject helps nobody.
  parseConfig(shippedText, "deploy/config.json");
  const shipped = JSON.parse(shippedText) as Json;
  const all = rows(
    agentConfigSchema,
    sample(agentConfigSchema, shipped, "(top level)") as Json,
    shipped,
    "",
  );
  checkDescribed("config key", all.map(({ path }) => path), CONFIG_DESCRIPTIONS);
  const env = environmentVariables();
  checkDescribed("environment variable", env, ENV_DESCRIPTIONS);

  const topLevel = objectSchemaOf(agentConfigSchema)!.shape;
  const sections = new Map<string, Row[]>();
  for (const row of all) {
    const [top] = row.path.split(".");
    const section = objectSchemaOf(topLevel[top]) === undefined ? "(top level)" : top;
    sections.set(section, [...(sections.get(section) ?? []), row]);
  }

  const header = ["Key", "Accepts", "Shipped", "If absent", "Meaning"];
  const parts = [
    GENERATED_NOTE("`agent/config/config.ts`, `agent/config/env.ts` and `deploy/config.json`"),
    "",
    "# Configuration reference",
    "",
    "The agent takes no command-line flags. It reads three environment variables and one JSON",
    "config file; any problem with them stops it at start-up with exit status 2, after one log",
    "line that lists every problem found.",
    "",
    "## Environment",
    "",
    "Each variable must be set and non-empty.",
    "",
    table(["Variable", "Meaning"], env.map((name) => [`\`${name}\``, ENV_DESCRIPTIONS[name]])),
    "",
    "Optional:",
    "",
    table(["Variable", "Default", "Meaning"], [[
      "`AUTOSCALER_AGENT_STATE_DIR`",
      `\`${DEFAULT_STATE_DIR}\``,
      "Where the billing checkpoint and the reporting spools live; it must survive restarts of " +
      "the agent (the DaemonSet mounts a hostPath there). An environment variable rather than a " +
      "config key, so that the same ConfigMap also works with the reference agent.",
    ]]),
    "",
    "Outside a cluster, the standard `KUBECONFIG` variable names the Kubernetes API server.",
    "",
    "## Config file",
    "",
    "The file named by `CONFIG_PATH` holds one JSON object; anything after it is ignored. Keys",
    "match case-insensitively, `null` counts as absent, and unknown keys are rejected at every",
    "level. Changes take effect when the agent restarts.",
    "",
    "Columns: **Shipped** is the value in `deploy/config.json` (the ConfigMap of the",
    "deployment); **If absent** is `required`, `optional` (nothing happens without it), _see",
    "below_ (each key has its own default) or the value the agent uses. Durations are whole",
    "seconds unless the key says otherwise. A quantity is a Kubernetes quantity given as a JSON",
    "number or string.",
    "",
    "`deploy/config.json` sets only keys the reference agent accepts, so the ConfigMap can be",
    "handed back to it (its decoder rejects unknown keys); the keys marked _Not in the",
    "reference_ are left out of it and take the defaults below.",
  ];
  for (const [section, sectionRows] of sections) {
    parts.push(
      "",
      section === "(top level)" ? "### Top level" : `### \`${section}\``,
      "",
      table(
        header,
        sectionRows.map((row) => [
          `\`${row.path}\``,
          row.accepts,
          row.shipped === undefined ? "" : code(row.shipped),
          row.ifAbsent,
          CONFIG_DESCRIPTIONS[row.path],
        ]),
      ),
    );
  }
  return parts.join("\n") + "\n";
}

interface Family {
  name: string;
  type: string;
  help: string;
  labels: string[];
  /** The label values of the series that exist before anything happened. */
  atStart: string;
  buckets?: number[];
}

function labelNames(metric: unknown, name: string): string[] {
  // prom-client keeps the configured label names on the instance but not in its typings.
  const names = (metric as { labelNames?: unknown } | undefined)?.labelNames;
  if (!Array.isArray(names)) throw new Error(`cannot read the label names of ${name}`);
  return names.map(String);
}

type LabelSet = Record<string, string | number | undefined>;

function describeSeries(labels: string[], series: LabelSet[]): string {
  if (series.length === 0) return "none";
  if (labels.length === 0) return "one";
  return labels.map((label) => {
    const values = [...new Set(series.map((s) => String(s[label])))];
    return `\`${label}\` ∈ ${values.map((v) => `\`${v}\``).join(", ")}`;
  }).join("; ");
}

async function families(registry: Registry, skip: Set<string>): Promise<Family[]> {
  const result: Family[] = [];
  for (const { name, help, type, values } of await registry.getMetricsAsJSON()) {
    if (skip.has(name)) continue;
    const metric = registry.getSingleMetric(name);
    const labels = labelNames(metric, name);
    let series: LabelSet[] = values.map(({ labels }) => labels);
    let buckets: number[] | undefined;
    if (metric instanceof Histogram) {
      series = series.filter((labels) => !("le" in labels));
      // A histogram only shows its buckets once a series exists; this registry is thrown away.
      metric.zero(Object.fromEntries(labels.map((label) => [label, "x"])));
      buckets = (await metric.get()).values.flatMap(({ labels }) => {
        const le = (labels as LabelSet).le;
        return le === undefined || le === "+Inf" ? [] : [Number(le)];
      });
    }
    result.push({
      name,
      type: String(type),
      help,
      labels,
      atStart: describeSeries(labels, series),
      buckets,
    });
  }
  return result;
}

/** `atStart` only for the agent's own families: the runtime's depend on what is running. */
function familyTable(list: Family[], atStart: boolean): string {
  return table(
    ["Name", "Type", "Labels", ...(atStart ? ["Series at start"] : []), "Help"],
    list.map((f) => [
      `\`${f.name}\``,
      f.type,
      f.labels.map((label) => `\`${label}\``).join(", "),
      ...(atStart ? [f.atStart] : []),
      f.help,
    ]),
  );
}

function bucketNotes(list: Family[]): string[] {
  const byBuckets = new Map<string, string[]>();
  for (const f of list) {
    if (f.buckets === undefined) continue;
    const key = f.buckets.join(", ");
    byBuckets.set(key, [...(byBuckets.get(key) ?? []), `\`${f.name}\``]);
  }
  return [...byBuckets].flatMap(([buckets, names]) => [
    "",
    `Buckets (seconds) of ${names.join(", ")}: ${buckets}.`,
  ]);
}

interface MetricFamilies {
  agentGlobal: Family[];
  runtime: Family[];
  perVm: Family[];
}

/** The families of both registries, as this process sees them. */
async function metricFamilies(): Promise<MetricFamilies> {
  const defaults = new Registry();
  collectDefaultMetrics({ register: defaults });
  const defaultNames = new Set(defaults.getMetricsAsArray().map(({ name }) => name));
  const global = new GlobalMetrics().registry;
  // What the agent registers next to GlobalMetrics at start-up: billing and both pipelines.
  new BillingCollectorMetrics(global);
  new ReportingMetrics("billing", global);
  new ReportingMetrics("scalingevents", global);
  const agentGlobal = await families(global, defaultNames);
  const runtime = await families(global, new Set(agentGlobal.map(({ name }) => name)));
  const perVm = await families(new PerVmMetrics().registry, new Set());
  return { agentGlobal, runtime, perVm };
}

/** The permission flags the Dockerfile compiles the agent with. */
async function agentPermissions(): Promise<string[]> {
  const dockerfile = await Deno.readTextFile(new URL("Dockerfile", ROOT));
  const compile = /\bdeno compile\b(?:[^\n]*\\\n)*[^\n]*/.exec(dockerfile);
  if (!compile) throw new Error("the Dockerfile runs no `deno compile`");
  return compile[0].match(/--allow-[\w-]+(=\S+)?/g) ?? [];
}

/**
 * Which process metrics prom-client registers depends on the permissions (Deno reads
 * `/proc/self` only with all of them), so the families are listed by a child process that has
 * exactly the agent's.
 */
async function agentMetricFamilies(): Promise<MetricFamilies> {
  const { success, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...await agentPermissions(), new URL(import.meta.url).pathname, FAMILIES_FLAG],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!success) {
    throw new Error(`listing the metric families failed: ${new TextDecoder().decode(stderr)}`);
  }
  return JSON.parse(new TextDecoder().decode(stdout));
}

const FAMILIES_FLAG = "--metric-families";

/** The Markdown of `docs/metrics.md`, before formatting. */
export async function renderMetricsDoc(): Promise<string> {
  const { listen } = parseConfig(await Deno.readTextFile(SHIPPED_CONFIG), "deploy/config.json");
  const { agentGlobal, runtime, perVm } = await agentMetricFamilies();

  return [
    GENERATED_NOTE("the registries of `agent/observability/metrics.ts`"),
    "",
    "# Metrics reference",
    "",
    "The agent serves two Prometheus registries in the text exposition format, each only at",
    "`/metrics`, listed here in the order the agent registers them. Families the reference",
    "agent also has keep its names, types and labels, so its dashboards and alerts keep working.",
    "**Series at start** lists the series that exist (at 0) before anything happened, which",
    "matters for alerts on absent series.",
    "",
    `## Global metrics: port ${listen.metricsPort}`,
    "",
    `Port \`listen.metricsPort\` (default ${listen.metricsPort}), container port \`metrics\`.`,
    "This is the port the cluster's scrape config collects.",
    "",
    familyTable(agentGlobal, true),
    ...bucketNotes(agentGlobal),
    "",
    "### Process and runtime",
    "",
    "prom-client's default collectors, in place of the reference's `go_*` metrics, as they",
    "appear on Linux under the permissions the Dockerfile compiles the agent with.",
    "",
    "Not reported, unlike the reference: `process_open_fds`, `process_max_fds` and",
    "`process_virtual_memory_bytes`. They come from `/proc/self`, which Deno lets a process",
    "read only when it runs with every permission (`--allow-all`), and the agent runs with",
    "the few it needs; a wrong 0 would be worse than no series. `process_resident_memory_bytes`",
    "and `process_heap_bytes` come from the runtime instead. prom-client's",
    `${NODEJS_TOTAL_GAUGES.map((n) => `\`${n}\``).join(", ")} are left out:`,
    "gauges named like counters, which `promtool check metrics` flags; the per-type gauges",
    "beside them carry the same counts.",
    "",
    familyTable(runtime.sort((a, b) => a.name.localeCompare(b.name)), false),
    ...bucketNotes(runtime),
    "",
    `## Per-VM metrics: port ${listen.vmMetricsPort}`,
    "",
    `Port \`listen.vmMetricsPort\` (default ${listen.vmMetricsPort}), container port`,
    "`vm-metrics`. One set of series per VM on this node, identified by `vm_namespace`,",
    "`vm_name`, `endpoint_id` and `project_id`; a VM's series go away with it.",
    "",
    familyTable(perVm, true),
  ].join("\n") + "\n";
}

/** Both documents, formatted as `deno fmt` would leave them, keyed by their file URL. */
export async function generateDocs(): Promise<Map<string, string>> {
  return new Map([
    [CONFIG_DOC.href, await formatMarkdown(await renderConfigurationDoc())],
    [METRICS_DOC.href, await formatMarkdown(await renderMetricsDoc())],
  ]);
}

/** `deno fmt --check` covers Markdown, so the files are written the way it formats them. */
async function formatMarkdown(text: string): Promise<string> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--ext=md", "-"],
    cwd: ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const { success, stdout, stderr } = await child.output();
  if (!success) throw new Error(`deno fmt failed: ${new TextDecoder().decode(stderr)}`);
  return new TextDecoder().decode(stdout);
}

if (import.meta.main && Deno.args[0] === FAMILIES_FLAG) {
  console.log(JSON.stringify(await metricFamilies()));
} else if (import.meta.main) {
  for (const [href, text] of await generateDocs()) {
    const url = new URL(href);
    await Deno.mkdir(new URL(".", url), { recursive: true });
    await Deno.writeTextFile(url, text);
    console.log(`wrote ${url.pathname.slice(ROOT.pathname.length)}`);
  }
}
