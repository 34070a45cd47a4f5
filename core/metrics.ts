/**
 * Parsing the VM's system and LFC metrics.
 *
 * @module
 */

import { prometheusTextSteps, type PromFamily, runSteps } from "./prometheus_text.ts";
import type { ApiMetrics, LFCMetrics, SystemMetrics } from "./types.ts";

/** Memory the kernel uses that host metrics do not report as used. */
const KERNEL_MEMORY_BYTES = 100 * 1024 * 1024;

const WSS_FAMILY = "lfc_approximate_working_set_size_windows";

// Pages carry many more families; only these become objects (the rest are checked, not kept).
const SYSTEM_FAMILIES: ReadonlySet<string> = new Set([
  "host_load1",
  "host_load5",
  "host_memory_total_bytes",
  "host_memory_available_bytes",
  "host_memory_cached_bytes",
]);
const LFC_FAMILIES: ReadonlySet<string> = new Set([
  "lfc_hits",
  "lfc_misses",
  "lfc_writes",
  WSS_FAMILY,
]);

function* familySteps(
  text: string,
  what: string,
  wanted: ReadonlySet<string>,
  sliceChars: number,
): Generator<void, Map<string, PromFamily>, void> {
  try {
    return yield* prometheusTextSteps(text, wanted, sliceChars);
  } catch (err) {
    throw new Error(`${what}: malformed Prometheus text: ${(err as Error).message}`);
  }
}

/** Checks that `name` is a declared gauge; records a problem and returns false otherwise. */
function checkGauge(
  families: Map<string, PromFamily>,
  name: string,
  problems: string[],
): PromFamily | null {
  const family = families.get(name);
  if (family === undefined) {
    problems.push(`missing metric family ${name}`);
    return null;
  }
  const type = family.type ?? "untyped";
  if (type !== "gauge") {
    problems.push(`metric family ${name} must be a gauge, is ${type}`);
    return null;
  }
  return family;
}

function singleGauge(
  families: Map<string, PromFamily>,
  name: string,
  problems: string[],
): number {
  const family = checkGauge(families, name, problems);
  if (family === null) return NaN;
  if (family.samples.length !== 1) {
    problems.push(
      `metric family ${name} must have exactly one sample, has ${family.samples.length}`,
    );
    return NaN;
  }
  return family.samples[0].value;
}

function fail(what: string, problems: string[]): never {
  throw new Error(`${what}: ${problems.join("; ")}`);
}

/** Throws Error on any problem. */
export function parseSystemMetrics(prometheusText: string): SystemMetrics {
  return runSteps(systemMetricsSteps(prometheusText, Infinity));
}

/**
 * {@link parseSystemMetrics} in steps, pausing after every `sliceChars` characters of the text
 * (see `prometheusTextSteps`).
 */
export function* systemMetricsSteps(
  prometheusText: string,
  sliceChars: number,
): Generator<void, SystemMetrics, void> {
  const what = "invalid system metrics";
  const families = yield* familySteps(prometheusText, what, SYSTEM_FAMILIES, sliceChars);
  const problems: string[] = [];
  const load1 = singleGauge(families, "host_load1", problems);
  const load5 = singleGauge(families, "host_load5", problems);
  const total = singleGauge(families, "host_memory_total_bytes", problems);
  const available = singleGauge(families, "host_memory_available_bytes", problems);
  const cached = singleGauge(families, "host_memory_cached_bytes", problems);
  if (problems.length > 0) fail(what, problems);
  return {
    loadAverage1Min: load1,
    loadAverage5Min: load5,
    memoryUsageBytes: total - available + KERNEL_MEMORY_BYTES,
    memoryCachedBytes: cached,
  };
}

/** Throws Error on any problem. */
export function parseLFCMetrics(prometheusText: string): LFCMetrics {
  return runSteps(lfcMetricsSteps(prometheusText, Infinity));
}

/** {@link parseLFCMetrics} in steps, as {@link systemMetricsSteps}. */
export function* lfcMetricsSteps(
  prometheusText: string,
  sliceChars: number,
): Generator<void, LFCMetrics, void> {
  const what = "invalid LFC metrics";
  const families = yield* familySteps(prometheusText, what, LFC_FAMILIES, sliceChars);
  const problems: string[] = [];
  const hits = singleGauge(families, "lfc_hits", problems);
  const misses = singleGauge(families, "lfc_misses", problems);
  const writes = singleGauge(families, "lfc_writes", problems);
  const buckets = workingSetBuckets(families, problems);
  if (problems.length > 0) fail(what, problems);
  return {
    cacheHitsTotal: hits,
    cacheMissesTotal: misses,
    cacheWritesTotal: writes,
    approximateWorkingSetSizeBuckets: buckets,
  };
}

function workingSetBuckets(families: Map<string, PromFamily>, problems: string[]): number[] {
  const family = checkGauge(families, WSS_FAMILY, problems);
  if (family === null) return [];
  if (family.samples.length === 0) {
    problems.push(`metric family ${WSS_FAMILY} has no samples`);
    return [];
  }
  const windows: { duration: number; value: number }[] = [];
  let labelsOk = true;
  for (const sample of family.samples) {
    const label = sample.labels["duration_seconds"];
    if (label === undefined) {
      problems.push(`a sample of ${WSS_FAMILY} has no duration_seconds label`);
      labelsOk = false;
    } else if (!/^[+-]?\d+$/.test(label)) {
      problems.push(`${WSS_FAMILY} duration_seconds ${JSON.stringify(label)} is not an integer`);
      labelsOk = false;
    } else {
      windows.push({ duration: Number(label), value: sample.value });
    }
  }
  if (!labelsOk) return [];
  windows.sort((a, b) => a.duration - b.duration);
  for (let i = 0; i < windows.length; i++) {
    const expected = 60 * (i + 1);
    if (windows[i].duration !== expected) {
      problems.push(
        `${WSS_FAMILY} window ${i} has duration_seconds ${
          windows[i].duration
        }, expected ${expected} (windows must be 60 s apart starting at 60 s)`,
      );
      return [];
    }
  }
  return windows.map((w) => w.value);
}

/** What {@link sanitizeSystemMetrics} and {@link sanitizeLFCMetrics} return. */
export interface Sanitized<T> {
  metrics: T;
  /** The fields that were negative or not finite and now read 0; empty when none was. */
  replaced: string[];
}

function usable(value: number): boolean {
  return Number.isFinite(value) && value >= 0;
}

/**
 * The metrics with every negative or non-finite value replaced by 0. A VM's exporters run in
 * the customer's VM, so these numbers are whatever the tenant makes them: a negative load would
 * otherwise reach the scheduler plugin, and an infinite or NaN one the goal.
 */
export function sanitizeSystemMetrics(m: SystemMetrics): Sanitized<SystemMetrics> {
  const replaced: string[] = [];
  const fix = (name: keyof SystemMetrics) => {
    if (usable(m[name])) return m[name];
    replaced.push(name);
    return 0;
  };
  const metrics: SystemMetrics = {
    loadAverage1Min: fix("loadAverage1Min"),
    loadAverage5Min: fix("loadAverage5Min"),
    memoryUsageBytes: fix("memoryUsageBytes"),
    memoryCachedBytes: fix("memoryCachedBytes"),
  };
  return { metrics: replaced.length === 0 ? m : metrics, replaced };
}

/** As {@link sanitizeSystemMetrics}, for the LFC counters and working-set windows. */
export function sanitizeLFCMetrics(m: LFCMetrics): Sanitized<LFCMetrics> {
  const replaced: string[] = [];
  const fix = (name: Exclude<keyof LFCMetrics, "approximateWorkingSetSizeBuckets">) => {
    if (usable(m[name])) return m[name];
    replaced.push(name);
    return 0;
  };
  const counters = {
    cacheHitsTotal: fix("cacheHitsTotal"),
    cacheMissesTotal: fix("cacheMissesTotal"),
    cacheWritesTotal: fix("cacheWritesTotal"),
  };
  const buckets = m.approximateWorkingSetSizeBuckets;
  const badBucket = !buckets.every(usable);
  if (badBucket) replaced.push("approximateWorkingSetSizeBuckets");
  if (replaced.length === 0) return { metrics: m, replaced };
  return {
    metrics: {
      ...counters,
      approximateWorkingSetSizeBuckets: badBucket ? buckets.map((v) => usable(v) ? v : 0) : buckets,
    },
    replaced,
  };
}

/** The scheduler protocol carries only the 1-minute load average, as a 32-bit float. */
export function systemMetricsToApi(m: SystemMetrics): ApiMetrics {
  return { loadAvg1M: Math.fround(m.loadAverage1Min) };
}
