/**
 * Field-wise arithmetic on {@link Resources}.
 *
 * Every operation treats CPU and memory independently of each other.
 *
 * @module
 */

import type { Allocation, MoreResources, Resources } from "./types.ts";

/** The reference multiplies and divides with 16-bit unsigned factors; we keep the wrap-around. */
const UINT16 = 65536;

function toUint16(n: number): number {
  return ((Math.trunc(n) % UINT16) + UINT16) % UINT16;
}

/** True when `a` exceeds `b` in CPU or in memory. */
export function hasFieldGreaterThan(a: Resources, b: Resources): boolean {
  return a.vCPU > b.vCPU || a.mem > b.mem;
}

/** True when `a` is below `b` in CPU or in memory. */
export function hasFieldLessThan(a: Resources, b: Resources): boolean {
  return hasFieldGreaterThan(b, a);
}

/** True when both fields are equal. */
export function resourcesEqual(a: Resources, b: Resources): boolean {
  return a.vCPU === b.vCPU && a.mem === b.mem;
}

/** Field-wise minimum. */
export function resourcesMin(a: Resources, b: Resources): Resources {
  return { vCPU: Math.min(a.vCPU, b.vCPU), mem: Math.min(a.mem, b.mem) };
}

/** Field-wise maximum. */
export function resourcesMax(a: Resources, b: Resources): Resources {
  return { vCPU: Math.max(a.vCPU, b.vCPU), mem: Math.max(a.mem, b.mem) };
}

/** Field-wise sum. */
export function resourcesAdd(a: Resources, b: Resources): Resources {
  return { vCPU: a.vCPU + b.vCPU, mem: a.mem + b.mem };
}

/** Field-wise `a - b`, clamped at zero like the reference's unsigned subtraction. */
export function saturatingSub(a: Resources, b: Resources): Resources {
  return { vCPU: Math.max(0, a.vCPU - b.vCPU), mem: Math.max(0, a.mem - b.mem) };
}

/** `r` times `factor`; factor is reduced modulo 65536 first. */
export function resourcesMul(r: Resources, factor: number): Resources {
  const n = toUint16(factor);
  return { vCPU: r.vCPU * n, mem: r.mem * n };
}

/**
 * `r` times `factor`, with `factor` saturated to [0, 65535] instead of reduced modulo 65536:
 * for the goal, where a wrapped factor would turn a huge demand into a tiny size.
 */
export function resourcesMulSaturating(r: Resources, factor: number): Resources {
  const n = Math.min(Math.max(Math.trunc(factor), 0), UINT16 - 1) || 0;
  return { vCPU: r.vCPU * n, mem: r.mem * n };
}

/** Exact whole-unit quotient, or null if r is not an exact equal multiple of unit in both fields. */
export function divResources(r: Resources, unit: Resources): number | null {
  if (unit.vCPU === 0 || unit.mem === 0) return null;
  if (r.vCPU % unit.vCPU !== 0 || r.mem % unit.mem !== 0) return null;
  const cpuFactor = toUint16(r.vCPU / unit.vCPU);
  const memFactor = toUint16(r.mem / unit.mem);
  return cpuFactor === memFactor ? cpuFactor : null;
}

/** Which fields grew from `old` to `next`. */
export function increaseFrom(next: Resources, old: Resources): MoreResources {
  return { cpu: next.vCPU > old.vCPU, memory: next.mem > old.mem };
}

/** Returns an Error describing the first zero field, or null. */
export function validateNonZero(r: Resources): Error | null {
  if (r.vCPU === 0) return new Error("vCPU must be non-zero");
  if (r.mem === 0) return new Error("mem must be non-zero");
  return null;
}

/**
 * The vm-monitor wire form. `milli * 0.001` rather than `milli / 1000` keeps the float bits
 * identical to the reference's.
 */
export function convertToAllocation(r: Resources): Allocation {
  return { cpu: r.vCPU * 0.001, mem: r.mem };
}
