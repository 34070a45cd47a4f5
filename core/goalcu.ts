/**
 * The goal number of compute units from the VM's metrics.
 *
 * @module
 */

import { estimateTrueWorkingSetSize, projectNextHighest } from "./wss.ts";
import type {
  CoreWarning,
  LFCMetrics,
  ResolvedScalingConfig,
  Resources,
  ScalingGoal,
  SystemMetrics,
} from "./types.ts";

/** LFC windows count 8 KiB Postgres pages. */
const PAGE_BYTES = 8192;
const WSS_MAX_ALLOWED_INCREASE_FACTOR = 3.0;
const WSS_PROJECT_LEN = 0.5;
/** Keeps the blend's denominator non-zero when both zone ratios are zero. */
const BLEND_EPSILON = 1e-6;

function roundHalfAwayFromZero(x: number): number {
  return Math.sign(x) * Math.round(Math.abs(x));
}

/** 0 below t1, 1 above t2, linear in between. */
function blend(v: number, t1: number, t2: number): number {
  if (v <= t1) return 0;
  if (v >= t2) return 1;
  return (v - t1) / (t2 - t1 + BLEND_EPSILON);
}

/** Computes the goal per input: load, memory and the file-cache working set. */
export function calculateGoalCU(
  cfg: ResolvedScalingConfig,
  computeUnit: Resources,
  systemMetrics: SystemMetrics | null,
  lfcMetrics: LFCMetrics | null,
  warn?: (warning: CoreWarning) => void,
): ScalingGoal {
  const hasAllMetrics = systemMetrics !== null && (!cfg.enableLFCMetrics || lfcMetrics !== null);
  if (!hasAllMetrics) {
    warn?.({
      code: "incompleteMetrics",
      message: systemMetrics === null
        ? "no system metrics yet: not scaling below current usage"
        : "LFC metrics are enabled but missing: not scaling below current usage",
    });
  }
  const parts: ScalingGoal["parts"] = { cpu: null, mem: null, lfc: null };

  let wssEstimateBytes: number | null = null;
  if (lfcMetrics !== null) {
    const values = lfcMetrics.approximateWorkingSetSizeBuckets;
    const offset = cfg.lfcMinWaitBeforeDownscaleMinutes - 1;
    const window = cfg.lfcWindowSizeMinutes;
    if (values.length < offset + window) {
      warn?.({
        code: "insufficientWssData",
        message: `have ${values.length} working-set windows, need at least ${offset + window}`,
      });
      parts.lfc = 0;
    } else {
      const estimate = cfg.lfcUseLargestWindow
        ? values[values.length - 1]
        : estimateTrueWorkingSetSize(values, {
          maxAllowedIncreaseFactor: WSS_MAX_ALLOWED_INCREASE_FACTOR,
          initialOffset: offset,
          windowSize: window,
        });
      let end = offset;
      while (end < values.length && values[end] <= estimate) end++;
      const projected = projectNextHighest(values.slice(0, end), WSS_PROJECT_LEN);
      const wssBytes = projected * PAGE_BYTES;
      parts.lfc = wssBytes / cfg.lfcToMemoryRatio / computeUnit.mem;
      wssEstimateBytes = Math.trunc(wssBytes);
    }
  }

  if (systemMetrics !== null) {
    const load1 = systemMetrics.loadAverage1Min;
    const load5 = systemMetrics.loadAverage5Min;
    const stable = cfg.cpuStableZoneRatio * load5;
    const mixed = stable + cfg.cpuMixedZoneRatio * load5;
    const w = blend(Math.abs(load1 - load5), stable, mixed);
    const blendedLoad = w * load1 + (1 - w) * load5;
    parts.cpu = blendedLoad / cfg.loadAverageFractionTarget / (computeUnit.vCPU / 1000);

    const goalBytes = roundHalfAwayFromZero(
      systemMetrics.memoryUsageBytes / cfg.memoryUsageFractionTarget,
    );
    parts.mem = goalBytes / computeUnit.mem;

    if (wssEstimateBytes !== null) {
      const cached = Math.min(wssEstimateBytes, systemMetrics.memoryCachedBytes);
      const total = (cached + systemMetrics.memoryUsageBytes) / cfg.memoryTotalFractionTarget /
        computeUnit.mem;
      parts.mem = Math.max(parts.mem, total);
    }
  }

  return { hasAllMetrics, parts };
}

/** The largest goal: the reference's goal is a uint32. */
export const MAX_GOAL_CU = 2 ** 32 - 1;

/**
 * ceil(max(round(cpu), mem, lfc)) with null parts treated as 0, saturated to
 * [0, {@link MAX_GOAL_CU}]; NaN is 0.
 */
export function goalCU(goal: ScalingGoal): number {
  const { cpu, mem, lfc } = goal.parts;
  const value = Math.ceil(Math.max(roundHalfAwayFromZero(cpu ?? 0), mem ?? 0, lfc ?? 0));
  // Replaces the reference's conversion to uint32, which wraps a huge goal modulo 2^32 into an
  // arbitrary size: a VM asking for more than anything gets the most, not a random amount.
  if (!(value > 0)) return 0;
  return Math.min(value, MAX_GOAL_CU);
}
