/**
 * The shipped ConfigMap can be handed back to the reference agent: its decoder rejects unknown
 * fields and its validation rejects zero or empty required ones, so `deploy/config.json` holds
 * only keys the reference's Go config structs have, and every one of them it requires. The key
 * set below is written from those structs (`agent.Config` and the billing, scaling-events and
 * reporting client configs they embed); our own keys stay out of the file and take their
 * defaults.
 */

import assert from "node:assert/strict";
import { parseConfig } from "../../agent/config/config.ts";
import { readText } from "./helpers.ts";

const BASE_CLIENT = ["pushEverySeconds", "pushRequestTimeoutSeconds", "maxBatchSize"];
const AZURE_BLOB = [...BASE_CLIENT, "container", "endpoint", "prefixInContainer"];
const S3 = [...BASE_CLIENT, "bucket", "region", "endpoint", "prefixInBucket"];
const RATE = ["intervalSeconds", "threshold"];
const METRICS_SOURCE = ["port", "requestTimeoutSeconds", "secondsBetweenRequests"];

function under(prefix: string, keys: string[]): string[] {
  return keys.map((key) => `${prefix}.${key}`);
}

/** Every key path the reference's config decoder accepts. */
const REFERENCE_KEYS = new Set([
  "refereshStateIntervalSeconds",
  ...under("billing", [
    "cpuMetricName",
    "activeTimeMetricName",
    "collectEverySeconds",
    "accumulateEverySeconds",
    ...under("clients", [
      ...under("azureBlob", AZURE_BLOB),
      ...under("http", [...BASE_CLIENT, "url"]),
      ...under("s3", S3),
    ]),
  ]),
  ...under("scalingEvents", [
    "cuMultiplier",
    "rereportThreshold",
    "regionName",
    ...under("clients", [...under("azureBlob", AZURE_BLOB), ...under("s3", S3)]),
  ]),
  ...under("scaling", [
    "computeUnit.vCPUs",
    "computeUnit.mem",
    ...under("defaultConfig", [
      "loadAverageFractionTarget",
      "memoryUsageFractionTarget",
      "memoryTotalFractionTarget",
      "enableLFCMetrics",
      "lfcUseLargestWindow",
      "lfcToMemoryRatio",
      "lfcMinWaitBeforeDownscaleMinutes",
      "lfcWindowSizeMinutes",
      "cpuStableZoneRatio",
      "cpuMixedZoneRatio",
    ]),
  ]),
  ...under("metrics", [...under("system", METRICS_SOURCE), ...under("lfc", METRICS_SOURCE)]),
  ...under("scheduler", [
    "schedulerName",
    "requestTimeoutSeconds",
    "requestAtLeastEverySeconds",
    "retryFailedRequestSeconds",
    "retryDeniedUpscaleSeconds",
    "requestPort",
    ...under("maxFailedRequestRate", RATE),
  ]),
  ...under("monitor", [
    "responseTimeoutSeconds",
    "connectionTimeoutSeconds",
    "connectionRetryMinWaitSeconds",
    "serverPort",
    "unhealthyAfterSilenceDurationSeconds",
    "unhealthyStartupGracePeriodSeconds",
    "maxHealthCheckSequentialFailuresSeconds",
    ...under("maxFailedRequestRate", RATE),
    "retryFailedRequestSeconds",
    "retryDeniedDownscaleSeconds",
    "requestedUpscaleValidSeconds",
  ]),
  ...under("neonvm", [
    "requestTimeoutSeconds",
    "retryFailedRequestSeconds",
    ...under("maxFailedRequestRate", RATE),
  ]),
  ...under("dumpState", ["port", "timeoutSeconds"]),
]);

/** Keys the reference's validation requires to be non-zero, non-empty (or, for defaults, set). */
const REFERENCE_REQUIRED = [
  "billing.cpuMetricName",
  "billing.activeTimeMetricName",
  "billing.collectEverySeconds",
  "billing.accumulateEverySeconds",
  "scalingEvents.cuMultiplier",
  "scalingEvents.rereportThreshold",
  "scalingEvents.regionName",
  ...under("metrics.system", METRICS_SOURCE),
  ...under("metrics.lfc", METRICS_SOURCE),
  "scaling.computeUnit.vCPUs",
  "scaling.computeUnit.mem",
  "scaling.defaultConfig.loadAverageFractionTarget",
  "scaling.defaultConfig.memoryUsageFractionTarget",
  "scaling.defaultConfig.memoryTotalFractionTarget",
  "scaling.defaultConfig.enableLFCMetrics",
  "scaling.defaultConfig.lfcToMemoryRatio",
  "scaling.defaultConfig.lfcWindowSizeMinutes",
  "scaling.defaultConfig.lfcMinWaitBeforeDownscaleMinutes",
  "neonvm.requestTimeoutSeconds",
  "neonvm.retryFailedRequestSeconds",
  "neonvm.maxFailedRequestRate.intervalSeconds",
  "monitor.responseTimeoutSeconds",
  "monitor.connectionTimeoutSeconds",
  "monitor.connectionRetryMinWaitSeconds",
  "monitor.serverPort",
  "monitor.unhealthyAfterSilenceDurationSeconds",
  "monitor.unhealthyStartupGracePeriodSeconds",
  "monitor.maxHealthCheckSequentialFailuresSeconds",
  "monitor.retryFailedRequestSeconds",
  "monitor.retryDeniedDownscaleSeconds",
  "monitor.requestedUpscaleValidSeconds",
  "monitor.maxFailedRequestRate.intervalSeconds",
  "scheduler.requestPort",
  "scheduler.requestTimeoutSeconds",
  "scheduler.requestAtLeastEverySeconds",
  "scheduler.retryFailedRequestSeconds",
  "scheduler.retryDeniedUpscaleSeconds",
  "scheduler.schedulerName",
  "scheduler.maxFailedRequestRate.intervalSeconds",
];

/** Every leaf's dotted path (an empty object, such as `clients: {}`, is a leaf). */
function leafPaths(value: unknown, prefix = ""): Map<string, unknown> {
  const out = new Map<string, unknown>();
  const isObject = typeof value === "object" && value !== null && !Array.isArray(value);
  if (!isObject || Object.keys(value).length === 0) {
    out.set(prefix, value);
    return out;
  }
  for (const [key, child] of Object.entries(value)) {
    for (const [path, leaf] of leafPaths(child, prefix === "" ? key : `${prefix}.${key}`)) {
      out.set(path, leaf);
    }
  }
  return out;
}

const shipped = JSON.parse(readText("deploy/config.json"));
const leaves = leafPaths(shipped);

/** Whether `path` is a reference key, or an object holding some (an empty `clients`). */
function accepted(path: string): boolean {
  return REFERENCE_KEYS.has(path) || [...REFERENCE_KEYS].some((k) => k.startsWith(`${path}.`));
}

Deno.test("rollback-safe config: deploy/config.json holds only keys the reference accepts", () => {
  const foreign = [...leaves.keys()].filter((path) => !accepted(path));
  assert.deepEqual(foreign, [], "keys the reference's decoder would reject");
});

Deno.test("rollback-safe config: every key the reference requires is set", () => {
  for (const path of REFERENCE_REQUIRED) {
    const value = leaves.get(path);
    assert.ok(value !== undefined && value !== 0 && value !== "", `${path} is set: ${value}`);
  }
});

Deno.test("rollback-safe config: our own keys take their defaults when absent", () => {
  const config = parseConfig(readText("deploy/config.json"), "deploy/config.json");
  assert.equal(config.neonvm.statusWaitSeconds, 10);
  assert.deepEqual(
    {
      perSecond: config.neonvm.patchRateLimit.perSecond,
      burst: config.neonvm.patchRateLimit.burst,
    },
    { perSecond: 5, burst: 10 },
  );
  assert.equal(config.listen.host, "0.0.0.0");
  assert.deepEqual([config.listen.metricsPort, config.listen.vmMetricsPort], [9100, 9101]);
});

Deno.test("rollback-safe config: the check notices a key of ours", () => {
  const withOurs = leafPaths({ ...shipped, listen: { metricsPort: 9100 } });
  assert.deepEqual([...withOurs.keys()].filter((path) => !accepted(path)), [
    "listen.metricsPort",
  ]);
});
