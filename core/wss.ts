/**
 * Working-set-size estimation from LFC windows.
 *
 * @module
 */

import { CoreInvariantError } from "./types.ts";

/** Parameters of {@link estimateTrueWorkingSetSize}. */
export interface WssEstimatorConfig {
  maxAllowedIncreaseFactor: number;
  initialOffset: number;
  windowSize: number;
}

/**
 * The size at the first point after which the working set grows much faster than before it: a
 * sign that older windows count pages that are no longer live.
 */
export function estimateTrueWorkingSetSize(
  series: readonly number[],
  cfg: WssEstimatorConfig,
): number {
  if (cfg.windowSize < 2) {
    throw new CoreInvariantError(
      `working-set window size must be at least 2, is ${cfg.windowSize}`,
    );
  }
  if (cfg.initialOffset < cfg.windowSize - 1) {
    throw new CoreInvariantError(
      `working-set initial offset ${cfg.initialOffset} must be at least window size - 1 (${
        cfg.windowSize - 1
      })`,
    );
  }
  const w = cfg.windowSize - 1;
  for (let t = cfg.initialOffset; t < series.length - w; t++) {
    const before = Math.max(0, series[t] - series[t - w]);
    const after = Math.max(0, series[t + w] - series[t]);
    if (after > before * cfg.maxAllowedIncreaseFactor) return series[t];
  }
  return series[series.length - 1];
}

/** How high the series could get if any recent growth continued for `projectLen` more steps. */
export function projectNextHighest(series: readonly number[], projectLen: number): number {
  if (series.length < 2) {
    throw new CoreInvariantError(
      `working-set projection needs at least 2 values, got ${series.length}`,
    );
  }
  let highest = series[0];
  for (let i = 1; i < series.length; i++) {
    const x0 = series[i - 1];
    const x1 = Math.max(x0, series[i]);
    highest = Math.max(highest, x1 + (x1 - x0) * projectLen);
  }
  return highest;
}
