/**
 * The change accounting of the execution bridge, as pure functions: they say what
 * to add to which counter, and the caller adds it. For NeonVM only the requested change is
 * counted: {@link resourceChanges} from the current size to the target.
 *
 * @module
 */

import { type Resources, resourcesEqual } from "../../core/mod.ts";

export type Direction = "inc" | "dec";

/** An amount to add to a `…_cpu_change_total` (cores) or `…_mem_change_total` (MiB) counter. */
export interface Change {
  resource: "cpu" | "mem";
  direction: Direction;
  amount: number;
}

const MiB = 1 << 20;

/**
 * The per-resource change from `base` to `target`: CPU in cores, memory in MiB. A resource that
 * did not change is left out.
 */
export function resourceChanges(base: Resources, target: Resources): Change[] {
  const changes: Change[] = [];
  if (target.vCPU !== base.vCPU) {
    changes.push({
      resource: "cpu",
      direction: target.vCPU > base.vCPU ? "inc" : "dec",
      amount: Math.abs(target.vCPU - base.vCPU) / 1000,
    });
  }
  if (target.mem !== base.mem) {
    changes.push({
      resource: "mem",
      direction: target.mem > base.mem ? "inc" : "dec",
      // Exact: byte counts are integers below 2^53, and dividing by a power of two loses nothing
      // (the reference splits whole MiB and remainder because its uint64 may exceed 2^53).
      amount: Math.abs(target.mem - base.mem) / MiB,
    });
  }
  return changes;
}

/** How the scheduler plugin answered a request. */
export type PluginOutcome = "approved" | "partiallyApproved" | "denied" | "failed";

/** What one plugin request adds to the metrics and to the pod's failure count. */
export interface PluginAccounting {
  outcome: PluginOutcome;
  /** `scheduler_plugin_requested_*_change_total`. */
  requested: Change[];
  /** `scheduler_plugin_accepted_*_change_total`. */
  accepted: Change[];
  /** `scaling_partial_approvals_total{direction="inc"}` +1. */
  partialApproval: boolean;
  /** `scaling_full_denials_total{direction="inc"}` +1. */
  fullDenial: boolean;
  /** The pod status's scheduler failure counter +1 (denials count too). */
  schedulerFailure: boolean;
}

/**
 * Accounting for one plugin request from the last permit (null before the first success) to
 * `target`; `permit` is the answer, or null when the request failed.
 */
export function pluginAccounting(
  lastPermit: Resources | null,
  target: Resources,
  permit: Resources | null,
): PluginAccounting {
  const requested = lastPermit === null ? [] : resourceChanges(lastPermit, target);
  const accepted = lastPermit === null || permit === null
    ? []
    : resourceChanges(lastPermit, permit);
  let outcome: PluginOutcome;
  if (permit === null) outcome = "failed";
  else if (resourcesEqual(permit, target)) outcome = "approved";
  else if (lastPermit !== null && !resourcesEqual(permit, lastPermit)) {
    outcome = "partiallyApproved";
  } // Without a last permit, anything but the target counts as a denial.
  else outcome = "denied";
  return {
    outcome,
    requested,
    accepted,
    partialApproval: outcome === "partiallyApproved",
    fullDenial: outcome === "denied",
    schedulerFailure: outcome === "denied" || outcome === "failed",
  };
}

/** What one vm-monitor request adds to the metrics and to the pod's failure count. */
export interface MonitorAccounting {
  /** `monitor_requested_*_change_total`. */
  requested: Change[];
  /** `monitor_approved_*_change_total`. */
  approved: Change[];
  /** The pod status's monitor failure counter +1. */
  monitorFailure: boolean;
  /** `scaling_full_denials_total{direction="dec"}` +1: failed downscale requests. */
  fullDenialDec: boolean;
}

/**
 * Accounting for one vm-monitor request from `current` to `target`. `result` is `"failed"` when
 * the call failed; for a downscale `"approved"` or `"denied"`, for an upscale notification
 * `"approved"`.
 */
export function monitorAccounting(
  kind: "downscale" | "upscale",
  current: Resources,
  target: Resources,
  result: "approved" | "denied" | "failed",
): MonitorAccounting {
  const requested = resourceChanges(current, target);
  return {
    requested,
    approved: result === "approved" ? requested : [],
    monitorFailure: result === "failed",
    fullDenialDec: kind === "downscale" && result === "failed",
  };
}
