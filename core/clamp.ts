/**
 * Directional clamping.
 *
 * @module
 */

import { hasFieldGreaterThan, hasFieldLessThan } from "./resources.ts";
import { CoreInvariantError, type Resources } from "./types.ts";

function clampField(current: number, desired: number, lower?: number, upper?: number): number {
  if (desired < current && lower !== undefined) return Math.max(desired, lower);
  if (desired > current && upper !== undefined) return Math.min(desired, upper);
  return desired;
}

/**
 * Moves from `current` towards `desired`, but not below `lower` when shrinking nor above `upper`
 * when growing; each field on its own.
 */
export function clampDirectional(
  current: Resources,
  desired: Resources,
  lower: Resources | null,
  upper: Resources | null,
): Resources {
  if (lower !== null && hasFieldGreaterThan(lower, current)) {
    throw new CoreInvariantError(
      `clamp lower bound ${fmt(lower)} exceeds current ${fmt(current)}`,
    );
  }
  if (upper !== null && hasFieldLessThan(upper, current)) {
    throw new CoreInvariantError(
      `clamp upper bound ${fmt(upper)} is below current ${fmt(current)}`,
    );
  }
  return {
    vCPU: clampField(current.vCPU, desired.vCPU, lower?.vCPU, upper?.vCPU),
    mem: clampField(current.mem, desired.mem, lower?.mem, upper?.mem),
  };
}

/** Short human form of resources for messages. */
export function fmt(r: Resources): string {
  return `{vCPU: ${r.vCPU}m, mem: ${r.mem}B}`;
}
