/**
 * The agent's JSON config file: decoding and validation.
 *
 * Decoding follows the reference's Go decoder where a file could tell the difference: keys match
 * case-insensitively, `null` means absent, unknown keys are rejected at every level, and content
 * after the first JSON value is ignored. Validation collects every problem with its dotted key
 * path and reports them together.
 *
 * @module
 */

import { z } from "zod";
import {
  resolveScalingConfig,
  type Resources,
  type ScalingConfig,
  validateScalingConfig,
} from "../../core/mod.ts";
import { endOfJsonValue } from "../../lib/go_json.ts";
import { parseQuantity, quantityToBytes, quantityToMilli } from "../../lib/quantity.ts";
import { estimatorProblems } from "../k8s/vm.ts";
import { MAX_METRICS_BODY_BYTES, METRICS_BYTES_PER_SECOND } from "../vm_metrics/scrape.ts";
import { INBOUND_RATE_LIMIT } from "../monitor/dispatcher.ts";
import { billingConfigSchema, scalingEventsConfigSchema } from "../../billing/config.ts";
import {
  isUint,
  objectSchemaOf,
  port,
  positiveNumber,
  Problem,
  scalar,
  show,
  string,
  uint,
} from "../../lib/config_fields.ts";

/** A config file that cannot be used; `problems` lists each violation on its own. */
export class ConfigError extends Error {
  readonly problems: string[];

  constructor(message: string, problems: string[]) {
    super(message);
    this.name = "ConfigError";
    this.problems = problems;
  }
}

/**
 * A Kubernetes quantity given as a JSON number or a string (`0.25`, `"250m"`, `"1Gi"`),
 * converted exactly: CPU to milli-CPU, memory to bytes, both rounded up. Must be positive.
 */
function quantity(kind: "CPU" | "memory") {
  const example = kind === "CPU" ? `"250m"` : `"1Gi"`;
  const convert = kind === "CPU" ? quantityToMilli : quantityToBytes;
  return scalar(
    `a positive ${kind} quantity (a number or a string such as ${example})`,
    (value) => {
      if (typeof value !== "number" && typeof value !== "string") return undefined;
      let amount: number;
      try {
        const parsed = parseQuantity(value);
        if (parsed.mantissa < 0n) return undefined;
        amount = convert(parsed);
      } catch {
        return undefined;
      }
      return amount > 0 ? amount : new Problem(`must be non-zero, got ${show(value)}`);
    },
  );
}

const optionalFloat = scalar("a number", (v) => typeof v === "number" ? v : undefined).optional();
const optionalInt = scalar("an integer", (v) => Number.isSafeInteger(v) ? v as number : undefined)
  .optional();
const optionalBool = scalar("true or false", (v) => typeof v === "boolean" ? v : undefined)
  .optional();

/** Stuck detection: a party is failing when more than `threshold` failures fall in the window. */
const failedRequestRate = z.strictObject({
  intervalSeconds: uint({ nonZero: true }),
  threshold: uint({ nonZero: false, absent: 0 }),
});

/**
 * `scaling.defaultConfig`: the per-field types here, the required fields and ranges from the
 * core's "defaults" validation, so both the agent and per-VM overrides share the core's rules.
 * The result is the resolved (complete) config.
 */
const defaultScalingConfig = z
  .strictObject({
    loadAverageFractionTarget: optionalFloat,
    memoryUsageFractionTarget: optionalFloat,
    memoryTotalFractionTarget: optionalFloat,
    enableLFCMetrics: optionalBool,
    lfcUseLargestWindow: optionalBool,
    lfcToMemoryRatio: optionalFloat,
    lfcWindowSizeMinutes: optionalInt,
    lfcMinWaitBeforeDownscaleMinutes: optionalInt,
    cpuStableZoneRatio: optionalFloat,
    cpuMixedZoneRatio: optionalFloat,
  })
  .check((ctx) => {
    // A field whose type was already rejected is left to that message, not called missing too.
    const rejected = new Set(ctx.issues.flatMap(({ path }) => path?.length ? [path[0]] : []));
    const typed = Object.fromEntries(
      Object.entries(ctx.value).filter(([key]) => !rejected.has(key)),
    );
    const problems = [
      ...validateScalingConfig(typed as ScalingConfig, "defaults"),
      ...estimatorProblems(typed as ScalingConfig),
    ];
    for (const problem of problems) {
      const [, key, rest] = /^(\w+) (.*)$/.exec(problem) ?? [];
      if (rejected.has(key)) continue;
      ctx.issues.push({
        code: "custom",
        message: key === undefined ? problem : rest,
        path: key === undefined ? [] : [key],
        input: ctx.value,
        continue: true,
      });
    }
  })
  .transform(resolveScalingConfig);

/** In-VM metrics endpoint: `metrics.system` and `metrics.lfc`. */
const metricsSource = z.strictObject({
  port: port({ allowZero: false }),
  requestTimeoutSeconds: uint({ nonZero: true }),
  secondsBetweenRequests: uint({ nonZero: true }),
});

const scheduler = z.strictObject({
  schedulerName: string(),
  /** Timeout of plugin requests, used as intended, unlike the reference (docs/differences.md). */
  requestTimeoutSeconds: uint({ nonZero: true }),
  requestAtLeastEverySeconds: uint({ nonZero: true }),
  retryFailedRequestSeconds: uint({ nonZero: true }),
  retryDeniedUpscaleSeconds: uint({ nonZero: true }),
  requestPort: port({ allowZero: false }),
  maxFailedRequestRate: failedRequestRate,
});

const monitor = z.strictObject({
  serverPort: port({ allowZero: false }),
  responseTimeoutSeconds: uint({ nonZero: true }),
  connectionTimeoutSeconds: uint({ nonZero: true }),
  connectionRetryMinWaitSeconds: uint({ nonZero: true }),
  unhealthyAfterSilenceDurationSeconds: uint({ nonZero: true }),
  unhealthyStartupGracePeriodSeconds: uint({ nonZero: true }),
  maxHealthCheckSequentialFailuresSeconds: uint({ nonZero: true }),
  retryDeniedDownscaleSeconds: uint({ nonZero: true }),
  requestedUpscaleValidSeconds: uint({ nonZero: true }),
  retryFailedRequestSeconds: uint({ nonZero: true }),
  maxFailedRequestRate: failedRequestRate,
  /**
   * Our key: messages per second a vm-monitor may send on average, and at once; one more ends
   * its connection, which is opened again after `connectionRetryMinWaitSeconds`.
   */
  inboundRateLimit: z
    .strictObject({
      perSecond: positiveNumber(INBOUND_RATE_LIMIT.perSecond),
      burst: uint({ nonZero: true, absent: INBOUND_RATE_LIMIT.burst }),
    })
    .prefault({}),
});

const neonvm = z.strictObject({
  requestTimeoutSeconds: uint({ nonZero: true }),
  retryFailedRequestSeconds: uint({ nonZero: true }),
  maxFailedRequestRate: failedRequestRate,
  /**
   * Our key: how long to wait
   * for the VM status to show a patched size before notifying the monitor anyway. 0 notifies
   * right after the patch, as the reference does.
   */
  statusWaitSeconds: uint({ nonZero: false, absent: 10 }),
  /** Our key: token bucket shared by all NeonVM API calls. */
  patchRateLimit: z
    .strictObject({
      perSecond: positiveNumber(5),
      burst: uint({ nonZero: true, absent: 10 }),
      /** Absent: the token bucket's default, half the burst. */
      upscaleReserve: uint({ nonZero: false }).optional(),
      /** Absent: the token bucket's default, half the upscale reserve, rounded up. */
      urgentReserve: uint({ nonZero: false }).optional(),
    })
    .check((ctx) => {
      const { burst, upscaleReserve, urgentReserve } = ctx.value;
      // One already rejected on its own is left to that message.
      if (!isUint(burst)) return;
      if (isUint(upscaleReserve) && upscaleReserve >= burst) {
        ctx.issues.push({
          code: "custom",
          message: `must be less than burst (${burst}), got ${upscaleReserve}`,
          path: ["upscaleReserve"],
          input: ctx.value,
          continue: true,
        });
        return;
      }
      // Absent, the upscale reserve is the bucket's default, which the urgent one must not exceed.
      const upscale = upscaleReserve ?? Math.floor(burst / 2);
      if (!isUint(upscale) || !isUint(urgentReserve) || urgentReserve <= upscale) return;
      ctx.issues.push({
        code: "custom",
        message: `must be at most upscaleReserve (${upscale}${
          upscaleReserve === undefined ? ", its default" : ""
        }), got ${urgentReserve}`,
        path: ["urgentReserve"],
        input: ctx.value,
        continue: true,
      });
    })
    .prefault({}),
});

/** Absent or `null` disables the state-dump server. */
const dumpState = z
  .strictObject({
    port: port({ allowZero: false }),
    timeoutSeconds: uint({ nonZero: true }),
  })
  .nullable()
  .default(null);

/**
 * Our key: the agent's own listening addresses, configurable so that several agents and a
 * simulated cluster fit on one machine. `host` is the address all of the agent's HTTP servers
 * bind; the dump server's port stays `dumpState.port`. Port 0 lets the OS pick (tests).
 */
const listen = z
  .strictObject({
    host: string("0.0.0.0"),
    metricsPort: port({ allowZero: true, absent: 9100 }),
    vmMetricsPort: port({ allowZero: true, absent: 9101 }),
    /** Connections each server holds at once; one more is refused. */
    maxConnections: uint({ nonZero: true, absent: 256 }),
    /** How long a request head may take to arrive, and a response to be taken. */
    headerTimeoutSeconds: uint({ nonZero: true, absent: 10 }),
    /** How long a kept-alive connection may wait for its next request. */
    idleTimeoutSeconds: uint({ nonZero: true, absent: 60 }),
  })
  .prefault({});

/** The whole config file. */
export const agentConfigSchema = z.strictObject({
  // Rejected when 0, unlike the reference, whose refresh ticker then throws forever.
  refereshStateIntervalSeconds: uint({ nonZero: true }),
  billing: billingConfigSchema,
  scalingEvents: scalingEventsConfigSchema,
  scaling: z.strictObject({
    /** Converted to the core's units: milli-CPU and bytes. */
    computeUnit: z
      .strictObject({ vCPUs: quantity("CPU"), mem: quantity("memory") })
      .transform(({ vCPUs, mem }): Resources => ({ vCPU: vCPUs, mem })),
    defaultConfig: defaultScalingConfig,
  }),
  metrics: z.strictObject({
    system: metricsSource,
    lfc: metricsSource,
    /** Our key: the longest page read from a VM's endpoint; a longer one is cut off. */
    maxBodyBytes: uint({ nonZero: true, absent: MAX_METRICS_BODY_BYTES }),
    /** Our key: what one endpoint may send on average; beyond it, its scrapes are skipped. */
    bytesPerSecond: uint({ nonZero: true, absent: METRICS_BYTES_PER_SECOND }),
  }),
  scheduler,
  monitor,
  neonvm,
  dumpState,
  listen,
});

/** The decoded and validated config. */
export type AgentConfig = z.output<typeof agentConfigSchema>;
export type {
  AzureBlobClientConfig,
  BillingConfig,
  HttpClientConfig,
  S3ClientConfig,
  ScalingEventsConfig,
} from "../../billing/config.ts";
export type MetricsSourceConfig = z.output<typeof metricsSource>;
export type FailedRequestRateConfig = z.output<typeof failedRequestRate>;
export type SchedulerConfig = AgentConfig["scheduler"];
export type MonitorConfig = AgentConfig["monitor"];
export type NeonVMConfig = AgentConfig["neonvm"];
export type DumpStateConfig = NonNullable<AgentConfig["dumpState"]>;
export type ListenConfig = AgentConfig["listen"];

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Renames each key to the schema's spelling when it matches case-insensitively (an exact match
 * wins, as in Go), and drops known keys whose value is `null`. Unknown keys are kept for the
 * schema to reject; two keys naming the same field are reported as ambiguous.
 */
function normaliseKeys(
  value: unknown,
  schema: z.ZodType,
  path: string[],
  problems: string[],
): unknown {
  const shape = objectSchemaOf(schema)?.shape;
  if (shape === undefined || !isPlainObject(value)) return value;
  const known = Object.keys(shape);
  const result: Record<string, unknown> = {};
  const spelledAs = new Map<string, string>();
  for (const [key, child] of Object.entries(value)) {
    const target = Object.hasOwn(shape, key)
      ? key
      : known.find((name) => name.toLowerCase() === key.toLowerCase());
    if (target === undefined) {
      result[key] = child;
      continue;
    }
    const other = spelledAs.get(target);
    if (other !== undefined) {
      const where = (name: string) => [...path, name].join(".");
      problems.push(`keys "${where(other)}" and "${where(key)}" both set "${where(target)}"`);
      continue;
    }
    spelledAs.set(target, key);
    if (child !== null) {
      result[target] = normaliseKeys(child, shape[target], [...path, target], problems);
    }
  }
  return result;
}

function describeIssue(issue: z.core.$ZodIssue): string[] {
  const where = issue.path.length > 0 ? issue.path.join(".") : "(top level)";
  if (issue.code === "unrecognized_keys") {
    return issue.keys.map((key) => `unknown key "${[...issue.path, key].join(".")}"`);
  }
  if (issue.code === "invalid_type" && issue.expected === "object") {
    return [
      issue.input === undefined
        ? `${where}: missing, expected an object`
        : `${where}: expected an object, got ${show(issue.input)}`,
    ];
  }
  return [`${where}: ${issue.message}`];
}

/**
 * Go's decoder reads one JSON value and ignores whatever follows it; this finds
 * the end of a leading object or array so the rest can be ignored the same way.
 */
function firstJsonValue(text: string): string {
  const start = text.search(/\S/);
  if (start < 0 || (text[start] !== "{" && text[start] !== "[")) return text;
  const end = endOfJsonValue(text, start);
  return end < 0 ? text : text.slice(0, end);
}

/**
 * Decodes and validates a config file's text; `source` names it in messages.
 * Throws {@link ConfigError} listing every problem.
 */
export function parseConfig(text: string, source = "config"): AgentConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(firstJsonValue(text));
  } catch (err) {
    const message = `error decoding JSON config in "${source}": ${(err as Error).message}`;
    throw new ConfigError(message, [message]);
  }
  const problems: string[] = [];
  const normalised = normaliseKeys(raw, agentConfigSchema, [], problems);
  const result = agentConfigSchema.safeParse(normalised, { reportInput: true });
  if (!result.success) problems.push(...result.error.issues.flatMap(describeIssue));
  if (problems.length > 0 || !result.success) {
    throw new ConfigError(`invalid config in "${source}": ${problems.join("; ")}`, problems);
  }
  return result.data;
}

/** Reads, decodes and validates the config file at `path`. Throws {@link ConfigError}. */
export async function loadConfig(path: string): Promise<AgentConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    const message = `error opening config file "${path}": ${(err as Error).message}`;
    throw new ConfigError(message, [message]);
  }
  return parseConfig(text, path);
}
