/**
 * What a report shows, whether it comes from the live demo or from a replay: per VM, the
 * allocated compute units over time, what the guest was doing, and the scaling events.
 *
 * Times are milliseconds since the start of the run, so both sources chart the same way.
 *
 * @module
 */

import { goalCU, type Resources, type ScalingGoalParts } from "../core/mod.ts";

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
  fromCU?: number;
  toCU?: number;
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
  goalCU: number | null;
  /**
   * The goal each metric gives on its own, in (fractional) compute units, from the metrics the
   * agent last scraped; null before its first scrape. A part is null when that metric is not used.
   */
  goalParts: ScalingGoalParts | null;
  /** The scheduler plugin's latest permit in compute units; null before the first one. */
  permitCU: number | null;
}

export interface VmTimeline {
  name: string;
  /** One line on what the workload does. */
  description: string;
  minCU: number;
  maxCU: number;
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
export function loadInCU(load: number, computeUnit: Resources): number {
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

/**
 * The goal the metrics ask for, in whole compute units: the largest part (CPU rounded to nearest,
 * memory and LFC up), as the core computes it, before the VM's bounds and the vm-monitor's
 * requests and refusals are applied. Null while the agent has no metrics.
 */
export function metricsGoalCU(sample: Pick<Sample, "goalParts">): number | null {
  if (sample.goalParts === null) return null;
  return goalCU({ hasAllMetrics: true, parts: sample.goalParts });
}

/** The figures that sum up one VM's run, or several VMs' runs added together. */
export interface Summary {
  /** The allocation integrated over the run. */
  cuHours: number;
  /** The metrics' goal ({@link metricsGoalCU}) integrated over the time it was known. */
  goalCUHours: number;
  /** Time during which the allocation was below the metrics' goal. */
  underMinutes: number;
  /** Time during which the allocation was above the metrics' goal. */
  overMinutes: number;
  /** How many times the allocation changed; changes within one instant count once. */
  scaleChanges: number;
}

const HOUR_MS = 3_600_000;
const MINUTE_MS = 60_000;

/** The allocation after each instant at which it changed, starting at time 0. */
export function allocationSteps(vm: Pick<VmTimeline, "cu">): { atMs: number; cu: number }[] {
  const steps: { atMs: number; cu: number }[] = [];
  for (const point of vm.cu) {
    const last = steps[steps.length - 1];
    if (last !== undefined && last.atMs === point.atMs) last.cu = point.cu;
    else steps.push({ ...point });
    const [before, after] = steps.slice(-2);
    if (steps.length >= 2 && before.cu === after.cu) steps.pop();
  }
  return steps;
}

/** A stretch of time with one allocation and one metrics' goal (null while unknown). */
export interface Stretch {
  fromMs: number;
  toMs: number;
  cu: number;
  goal: number | null;
}

/**
 * A VM's run over `[0, durationMs]` cut where the allocation or the metrics' goal changes. The
 * allocation holds from each change to the next; the goal holds from each sample to the next,
 * and from the last sample to the end.
 */
export function stretches(vm: VmTimeline, durationMs: number): Stretch[] {
  const alloc = allocationSteps(vm);
  const goals = vm.samples.map((s) => ({ atMs: s.atMs, goal: metricsGoalCU(s) }));
  const cuts = [
    ...new Set([0, durationMs, ...alloc.map((p) => p.atMs), ...goals.map((g) => g.atMs)]),
  ].filter((t) => t >= 0 && t <= durationMs).sort((a, b) => a - b);
  const out: Stretch[] = [];
  let a = 0;
  let g = -1;
  for (let i = 0; i + 1 < cuts.length; i++) {
    const fromMs = cuts[i];
    while (a + 1 < alloc.length && alloc[a + 1].atMs <= fromMs) a++;
    while (g + 1 < goals.length && goals[g + 1].atMs <= fromMs) g++;
    const cu = alloc[a]?.cu ?? 0;
    const goal = g >= 0 ? goals[g].goal : null;
    const last = out[out.length - 1];
    if (last !== undefined && last.cu === cu && last.goal === goal) last.toMs = cuts[i + 1];
    else out.push({ fromMs, toMs: cuts[i + 1], cu, goal });
  }
  return out;
}

/** Sums up a VM's run over `[0, durationMs]` (see {@link stretches}). */
export function summarize(vm: VmTimeline, durationMs: number): Summary {
  let cuMs = 0;
  let goalMs = 0;
  let underMs = 0;
  let overMs = 0;
  for (const { fromMs, toMs, cu, goal } of stretches(vm, durationMs)) {
    const span = toMs - fromMs;
    cuMs += cu * span;
    if (goal === null) continue;
    goalMs += goal * span;
    if (cu < goal) underMs += span;
    if (cu > goal) overMs += span;
  }
  return {
    cuHours: cuMs / HOUR_MS,
    goalCUHours: goalMs / HOUR_MS,
    underMinutes: underMs / MINUTE_MS,
    overMinutes: overMs / MINUTE_MS,
    scaleChanges: Math.max(0, allocationSteps(vm).length - 1),
  };
}

/** Several summaries added up. */
export function addSummaries(summaries: readonly Summary[]): Summary {
  const total: Summary = {
    cuHours: 0,
    goalCUHours: 0,
    underMinutes: 0,
    overMinutes: 0,
    scaleChanges: 0,
  };
  for (const s of summaries) {
    for (const key of Object.keys(total) as (keyof Summary)[]) total[key] += s[key];
  }
  return total;
}

/** A run of consecutive events of one kind between the same sizes. */
export interface EventGroup {
  first: ScalingEvent;
  lastAtMs: number;
  count: number;
}

/**
 * Collapses consecutive events that say the same thing (one kind, the same sizes) into one
 * group with a count, so that a refusal repeated every few seconds takes one line.
 */
export function groupEvents(events: readonly ScalingEvent[]): EventGroup[] {
  const groups: EventGroup[] = [];
  for (const e of events) {
    const last = groups[groups.length - 1];
    if (
      last !== undefined && last.first.kind === e.kind && last.first.fromCU === e.fromCU &&
      last.first.toCU === e.toCU
    ) {
      last.count++;
      last.lastAtMs = e.atMs;
    } else {
      groups.push({ first: e, lastAtMs: e.atMs, count: 1 });
    }
  }
  return groups;
}

/** `1.5`, `2`, `0.25`: compute units without trailing zeros. */
export function formatCU(cu: number): string {
  return String(Math.round(cu * 100) / 100);
}

/** `850 MiB`, `1.25 GiB`, `2 GiB`. */
export function formatBytes(bytes: number): string {
  const mib = bytes / 2 ** 20;
  if (mib < 1024) return `${Math.round(mib)} MiB`;
  return `${Math.round((mib / 1024) * 100) / 100} GiB`;
}

/** `0.25 vCPU, 1 GiB`: a size as a person reads it. */
export function formatResources(r: Resources): string {
  return `${r.vCPU / 1000} vCPU, ${formatBytes(r.mem)}`;
}

/**
 * Text from a peer (a vm-monitor's status) with every byte count of 1 MiB or more written in
 * MiB or GiB: `target memory 1073741824 is below …` reads `target memory 1 GiB is below …`.
 */
export function humanizeBytes(text: string): string {
  return text.replace(/\b\d{7,}\b/g, (digits) => {
    const n = Number(digits);
    return n >= 2 ** 20 ? formatBytes(n) : digits;
  });
}

/** `42s`, `3m05s`, `2h10m`. */
export function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`;
}
