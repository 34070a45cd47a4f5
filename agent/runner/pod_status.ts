/**
 * The status a VM's Runner shares across its incarnations: end states, failure
 * counters, monitor health, and the derived runner state that feeds `runners_current`.
 *
 * @module
 */

import type { VmInfo } from "../../core/mod.ts";
import type { Clock } from "../../lib/clock.ts";
import { RecentCounter } from "./recent_counter.ts";

/** The runner-state label of `autoscaling_agent_runners_current`. */
export type RunnerStateLabel = "ok" | "stuck" | "panicked" | "";

/** How one Runner incarnation ended. */
export interface EndState {
  exitKind: "panicked" | "canceled";
  error: string | null;
  time: number;
}

/** The thresholds of stuck detection, in milliseconds and counts. */
export interface StuckLimits {
  unhealthyAfterSilenceMs: number;
  unhealthyStartupGraceMs: number;
  monitorFailureThreshold: number;
  neonvmFailureThreshold: number;
  schedulerFailureThreshold: number;
  monitorFailureWindowMs: number;
  neonvmFailureWindowMs: number;
  schedulerFailureWindowMs: number;
}

/** Moves one runner between label series; `null` = not counted. */
export type RunnerGaugeUpdate = (
  from: { isEndpoint: boolean; state: RunnerStateLabel } | null,
  to: { isEndpoint: boolean; state: RunnerStateLabel } | null,
) => void;

/** The shared status of one runner pod. */
export class PodStatus {
  startTime: number;
  deleted = false;
  endState: EndState | null = null;
  previousEndStates: EndState[] = [];
  lastSuccessfulMonitorComm: number | null = null;
  readonly failedMonitorRequests: RecentCounter;
  readonly failedNeonVMRequests: RecentCounter;
  readonly failedSchedulerRequests: RecentCounter;
  vmInfo: VmInfo;
  endpointID: string;
  endpointAssignedAt: number;
  state: RunnerStateLabel = "";
  stateUpdatedAt: number;

  constructor(
    vmInfo: VmInfo,
    endpointID: string,
    private readonly limits: StuckLimits,
    private readonly clock: Clock,
    private readonly gauge: RunnerGaugeUpdate,
  ) {
    const now = clock.now();
    this.startTime = now;
    this.endpointAssignedAt = now;
    this.stateUpdatedAt = now;
    this.vmInfo = vmInfo;
    this.endpointID = endpointID;
    this.failedMonitorRequests = new RecentCounter(limits.monitorFailureWindowMs, clock);
    this.failedNeonVMRequests = new RecentCounter(limits.neonvmFailureWindowMs, clock);
    this.failedSchedulerRequests = new RecentCounter(limits.schedulerFailureWindowMs, clock);
  }

  /**
   * Applies `change` and re-derives the runner state, moving the runner between gauge series.
   * Deliberate deviation: the label follows the status as it is after the
   * change, instead of the reference's label that lags one update behind.
   */
  update(change: (status: PodStatus) => void = () => {}): void {
    const before = this.deleted || this.state === ""
      ? null
      : { isEndpoint: this.endpointID !== "", state: this.state };
    change(this);
    if (this.deleted) {
      this.gauge(before, null);
      return;
    }
    let label: RunnerStateLabel;
    if (this.endState?.exitKind === "panicked") label = "panicked";
    else if (this.endState?.exitKind === "canceled" && this.state !== "") label = this.state;
    else label = this.stuckReasons().length > 0 ? "stuck" : "ok";
    this.state = label;
    this.stateUpdatedAt = this.clock.now();
    this.gauge(before, { isEndpoint: this.endpointID !== "", state: label });
  }

  /** Why this runner counts as stuck; empty when it does not. */
  stuckReasons(): string[] {
    const now = this.clock.now();
    const reasons: string[] = [];
    const deadline = this.lastSuccessfulMonitorComm !== null
      ? this.lastSuccessfulMonitorComm + this.limits.unhealthyAfterSilenceMs
      : (this.endpointID !== "" ? this.endpointAssignedAt : this.startTime) +
        this.limits.unhealthyStartupGraceMs;
    if (now > deadline) reasons.push("monitor health check failed");
    if (this.failedMonitorRequests.get() > this.limits.monitorFailureThreshold) {
      reasons.push("monitor requests failed");
    }
    if (this.failedSchedulerRequests.get() > this.limits.schedulerFailureThreshold) {
      reasons.push("scheduler requests failed");
    }
    if (this.failedNeonVMRequests.get() > this.limits.neonvmFailureThreshold) {
      reasons.push("neonvm requests failed");
    }
    return reasons;
  }
}
