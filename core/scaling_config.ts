/**
 * Merging, resolving and validating scaling configurations.
 *
 * @module
 */

import { CoreInvariantError, type ResolvedScalingConfig, type ScalingConfig } from "./types.ts";

const SCALING_CONFIG_KEYS = [
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
] as const satisfies readonly (keyof ScalingConfig)[];

type ScalingConfigKey = typeof SCALING_CONFIG_KEYS[number];

/** The reference's "require all" validation does not list lfcUseLargestWindow. */
const REQUIRED_IN_DEFAULTS: readonly ScalingConfigKey[] = SCALING_CONFIG_KEYS.filter(
  (key) => key !== "lfcUseLargestWindow",
);

/** Range checks that apply whenever the field is present: [0, upper). */
const FRACTION_LIMITS: readonly [ScalingConfigKey, number][] = [
  ["loadAverageFractionTarget", 2],
  ["memoryUsageFractionTarget", 1],
  ["memoryTotalFractionTarget", 1],
];

function isSet<T>(value: T | null | undefined): value is T {
  return value !== null && value !== undefined;
}

/** A copy of `defaults` in which every field set in `overrides` replaces the default. */
export function withOverrides(
  defaults: ScalingConfig,
  overrides: ScalingConfig | null | undefined,
): ScalingConfig {
  const merged: ScalingConfig = { ...defaults };
  if (!isSet(overrides)) return merged;
  const target = merged as Record<ScalingConfigKey, unknown>;
  for (const key of SCALING_CONFIG_KEYS) {
    const value = overrides[key];
    if (isSet(value)) target[key] = value;
  }
  return merged;
}

/** Fills lfcUseLargestWindow=false if absent; throws CoreInvariantError if any other field is missing. */
export function resolveScalingConfig(cfg: ScalingConfig): ResolvedScalingConfig {
  const missing = REQUIRED_IN_DEFAULTS.filter((key) => !isSet(cfg[key]));
  if (missing.length > 0) {
    throw new CoreInvariantError(`scaling config is missing ${missing.join(", ")}`);
  }
  return {
    loadAverageFractionTarget: cfg.loadAverageFractionTarget!,
    memoryUsageFractionTarget: cfg.memoryUsageFractionTarget!,
    memoryTotalFractionTarget: cfg.memoryTotalFractionTarget!,
    enableLFCMetrics: cfg.enableLFCMetrics!,
    // Deliberate deviation: the reference dereferences a nil pointer here.
    lfcUseLargestWindow: cfg.lfcUseLargestWindow ?? false,
    lfcToMemoryRatio: cfg.lfcToMemoryRatio!,
    lfcMinWaitBeforeDownscaleMinutes: cfg.lfcMinWaitBeforeDownscaleMinutes!,
    lfcWindowSizeMinutes: cfg.lfcWindowSizeMinutes!,
    cpuStableZoneRatio: cfg.cpuStableZoneRatio!,
    cpuMixedZoneRatio: cfg.cpuMixedZoneRatio!,
  };
}

/** mode "defaults" requires all fields; returns the list of problems (empty = valid). */
export function validateScalingConfig(
  cfg: ScalingConfig,
  mode: "defaults" | "overrides",
): string[] {
  const problems: string[] = [];
  if (mode === "defaults") {
    for (const key of REQUIRED_IN_DEFAULTS) {
      if (!isSet(cfg[key])) problems.push(`${key} is required`);
    }
  }
  for (const [key, upper] of FRACTION_LIMITS) {
    const value = cfg[key];
    if (!isSet(value)) continue;
    if (typeof value !== "number" || !(value >= 0 && value < upper)) {
      problems.push(`${key} must be a number at least 0 and below ${upper}, got ${value}`);
    }
  }
  return problems;
}
