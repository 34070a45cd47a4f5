/**
 * What a report shows, whether it comes from the live demo or from a replay: per VM, the
 * allocated compute units over time, what the guest was doing, and the scaling events.
 *
 * Times are milliseconds since the start of the run, so both sources chart the same way.
 *
 * @module
 */

import type { Resources } from "../core/mod.ts";

/** What happened, as the report's legend names it. */
export type EventKind =
  /** NeonVM was asked for a bigger VM. */
  | "upscale"
  /** NeonVM was asked for a smaller VM. */
  | "downscale"
  /** The vm-monitor refused to let the VM shrink. */
  | "denied"
  /** The vm-monitor agreed to let the VM shrink (the patch follows). */
  | "approved"
  /** The vm-monitor asked for more memory on its own. */
  | "monitor-upscale";

export interface ScalingEvent {
  atMs: number;
  kind: EventKind;
  /** Compute units before and after (for a denial: the size kept and the size refused). */
  fromCu?: number;
  toCu?: number;
  detail: string;
}

/** The guest and the agent at one instant. */
export interface Sample {
  atMs: number;
  /** 1-minute load average. */
  load: number;
  /** Memory the guest's processes want, bytes (may exceed the VM's size). */
  memBytes: number;
  /** LFC working set, bytes, when the VM uses LFC metrics. */
  workingSetBytes: number | null;
  /** The agent's desired size in compute units; null before its first decision. */
  goalCu: number | null;
}

export interface VmTimeline {
  name: string;
  /** One line on what the workload does. */
  description: string;
  minCu: number;
  maxCu: number;
  /** Allocated compute units, one point per change, the first at time 0. */
  cu: { atMs: number; cu: number }[];
  samples: Sample[];
  events: ScalingEvent[];
}

export interface Report {
  title: string;
  /** Where the data came from (the demo's VMs, or a trace and a config file). */
  source: string;
  generatedAt: string;
  durationMs: number;
  computeUnit: Resources;
  vms: VmTimeline[];
}

/** Compute units of `r`: the larger of its CPU and memory shares. */
export function cuOf(r: Resources, computeUnit: Resources): number {
  return Math.max(r.vCPU / computeUnit.vCPU, r.mem / computeUnit.mem);
}

/** Load in compute units: the CPU it keeps busy, over one CU's CPU. */
export function loadInCu(load: number, computeUnit: Resources): number {
  return load / (computeUnit.vCPU / 1000);
}

/** The allocated CU at `atMs`. */
export function cuAt(timeline: Pick<VmTimeline, "cu">, atMs: number): number {
  let value = timeline.cu[0]?.cu ?? 0;
  for (const point of timeline.cu) {
    if (point.atMs > atMs) break;
    value = point.cu;
  }
  return value;
}

/** How many events of each kind a timeline holds. */
export function countEvents(vms: readonly VmTimeline[]): Record<EventKind, number> {
  const counts: Record<EventKind, number> = {
    upscale: 0,
    downscale: 0,
    denied: 0,
    approved: 0,
    "monitor-upscale": 0,
  };
  for (const vm of vms) for (const e of vm.events) counts[e.kind]++;
  return counts;
}

/** `1.5`, `2`, `0.25`: compute units without trailing zeros. */
export function formatCu(cu: number): string {
  return String(Math.round(cu * 100) / 100);
}

/** `850 MiB`, `1.25 GiB`. */
export function formatBytes(bytes: number): string {
  const mib = bytes / 2 ** 20;
  return mib < 1024 ? `${Math.round(mib)} MiB` : `${(mib / 1024).toFixed(2)} GiB`;
}

/** `42s`, `3m05s`, `2h10m`. */
export function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`;
}
