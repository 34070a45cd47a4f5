/**
 * The per-VM scaling state machine.
 *
 * Executors report what happened through the three handles and {@link State.updatedVM} /
 * metrics updates, then ask {@link State.nextActions} what to start next.
 *
 * @module
 */

import { clampDirectional, fmt } from "./clamp.ts";
import { calculateGoalCU, goalCU } from "./goalcu.ts";
import { sanitizeLFCMetrics, sanitizeSystemMetrics, systemMetricsToApi } from "./metrics.ts";
import {
  divResources,
  hasFieldGreaterThan,
  hasFieldLessThan,
  resourcesEqual,
  resourcesMax,
  resourcesMin,
  resourcesMulSaturating,
  validateNonZero,
} from "./resources.ts";
import { propagate, revMin, withTime } from "./revsource.ts";
import { resolveScalingConfig, withOverrides } from "./scaling_config.ts";
import {
  type ActionMonitorDownscale,
  type ActionMonitorUpscale,
  type ActionNeonVMRequest,
  type ActionPluginRequest,
  type ActionSet,
  type CoreConfig,
  CoreInvariantError,
  type CoreWarning,
  type DurationMs,
  type LFCMetrics,
  type Millis,
  type MoreResources,
  type NeonVMPriority,
  type PluginResponse,
  type ResolvedScalingConfig,
  type Resources,
  type Revision,
  RevisionFlag,
  type RevisionWithTime,
  type SystemMetrics,
  type VmInfo,
} from "./types.ts";
import { cloneVmInfo, vmMax, vmMin, vmUsing, vmWithUsing } from "./vminfo.ts";

/** Result of {@link State.desiredResourcesFromMetricsOrRequestedUpscaling}. */
export interface DesiredResourcesResult {
  resources: Resources;
  /** Extra wait implied by cooldowns/validity periods, given the final action set; null = none. */
  calculateWait(actions: ActionSet): DurationMs | null;
}

/** How executors report scheduler plugin requests. */
export interface PluginHandle {
  startingRequest(now: Millis, resources: Resources): void;
  requestFailed(now: Millis): void;
  /** Returns null on success, an Error if the response was rejected (state updated either way). */
  requestSuccessful(
    now: Millis,
    targetRevision: RevisionWithTime,
    response: PluginResponse,
  ): Error | null;
}

/** How executors report the vm-monitor connection and its requests. */
export interface MonitorHandle {
  reset(): void;
  /**
   * The connection became active (or ended). `known` is what the monitor can be taken to have
   * been told of: the VM's size as its status shows it (default: the core's usage). Usage beyond
   * it (a patch that a previous Runner made and NeonVM has not applied yet) is an upscale the
   * monitor still has to hear of.
   */
  active(isActive: boolean, known?: Resources): void;
  /** Whether the connection is active: only then may it ask for an upscale. */
  isActive(): boolean;
  upscaleRequested(now: Millis, resources: MoreResources): void;
  startingUpscaleRequest(now: Millis, resources: Resources): void;
  upscaleRequestSuccessful(now: Millis): void;
  upscaleRequestFailed(now: Millis): void;
  startingDownscaleRequest(now: Millis, resources: Resources): void;
  downscaleRequestAllowed(now: Millis, targetRevision: RevisionWithTime): void;
  downscaleRequestDenied(now: Millis, targetRevision: RevisionWithTime): void;
  downscaleRequestFailed(now: Millis): void;
}

/** How executors report NeonVM patches. */
export interface NeonVMHandle {
  startingRequest(now: Millis, resources: Resources): void;
  requestSuccessful(now: Millis): void;
  /**
   * `outcomeUnknown`: the patch may have been applied all the same (no answer came back in
   * time), so the VM may have either size until the next patch goes through.
   */
  requestFailed(now: Millis, outcomeUnknown?: boolean): void;
}

/** Which kind of request is in flight to the vm-monitor. */
export type MonitorRequestKind = "upscale" | "downscale";

/** JSON-serialisable snapshot of a {@link State}. */
export interface StateDump {
  /** The config's values; its hooks (log, revision source, callbacks) are not data. */
  config: Omit<CoreConfig, "log" | "revisionSource" | "observabilityCallbacks">;
  debug: boolean;
  vm: VmInfo;
  plugin: {
    ongoingRequest: boolean;
    lastRequest: { at: Millis; resources: Resources } | null;
    lastFailureAt: Millis | null;
    permit: Resources | null;
    currentRevision: Revision;
  };
  monitor: {
    ongoingRequest: { kind: MonitorRequestKind; requested: Resources } | null;
    requestedUpscale: { at: Millis; base: Resources; requested: MoreResources } | null;
    deniedDownscale: { at: Millis; current: Resources; requested: Resources } | null;
    approved: Resources | null;
    downscaleFailureAt: Millis | null;
    upscaleFailureAt: Millis | null;
    currentRevision: Revision;
  };
  neonvm: {
    lastSuccess: Resources | null;
    ongoingRequested: Resources | null;
    requestFailedAt: Millis | null;
    targetRevision: RevisionWithTime;
    currentRevision: Revision;
  };
  metrics: SystemMetrics | null;
  lfcMetrics: LFCMetrics | null;
  targetRevision: Revision;
  lastDesiredResources: Resources | null;
}

type PluginState = StateDump["plugin"];
type MonitorState = StateDump["monitor"];
type NeonVMState = StateDump["neonvm"];

const ZERO_REVISION: Revision = { value: 0, flags: 0 };

function copyRes(r: Resources): Resources {
  return { vCPU: r.vCPU, mem: r.mem };
}

function copyOrNull(r: Resources | null): Resources | null {
  return r === null ? null : copyRes(r);
}

function copyRev(r: Revision): Revision {
  return { value: r.value, flags: r.flags };
}

function initialMonitorState(): MonitorState {
  return {
    ongoingRequest: null,
    requestedUpscale: null,
    deniedDownscale: null,
    approved: null,
    downscaleFailureAt: null,
    upscaleFailureAt: null,
    currentRevision: copyRev(ZERO_REVISION),
  };
}

/** A partial decision: an optional action and an optional wait before re-evaluating. */
interface Decision<A> {
  action?: A;
  wait?: DurationMs;
}

/** The scaling state of one VM. Callers serialise all calls. */
export class State {
  readonly #config: CoreConfig;
  #debug = false;
  #vm: VmInfo;
  #plugin: PluginState = {
    ongoingRequest: false,
    lastRequest: null,
    lastFailureAt: null,
    permit: null,
    currentRevision: copyRev(ZERO_REVISION),
  };
  #monitor: MonitorState = initialMonitorState();
  /**
   * A patch failed without an answer and may have been applied: until a patch succeeds, the VM
   * may not have the size the core holds, so the core says it again (deliberate deviation, "Peers
   * hear of what the VM has" in docs/differences.md).
   */
  #neonvmUnsure = false;
  #neonvm: NeonVMState = {
    lastSuccess: null,
    ongoingRequested: null,
    requestFailedAt: null,
    targetRevision: withTime(ZERO_REVISION, 0),
    currentRevision: copyRev(ZERO_REVISION),
  };
  #metrics: SystemMetrics | null = null;
  #lfcMetrics: LFCMetrics | null = null;
  #targetRevision: Revision = copyRev(ZERO_REVISION);
  #lastDesiredResources: Resources | null = null;
  /** Cache of the effective scaling config; cleared whenever the VM object changes. */
  #effective: ResolvedScalingConfig | null = null;

  readonly #pluginHandle: PluginHandle;
  readonly #monitorHandle: MonitorHandle;
  readonly #neonvmHandle: NeonVMHandle;

  /** Copies vm; keeps config by reference (callbacks are invoked from it). */
  constructor(vm: VmInfo, config: CoreConfig) {
    this.#config = config;
    this.#vm = cloneVmInfo(vm);
    this.#pluginHandle = this.#makePluginHandle();
    this.#monitorHandle = this.#makeMonitorHandle();
    this.#neonvmHandle = this.#makeNeonVMHandle();
  }

  #warn(code: CoreWarning["code"], message: string): void {
    this.#config.log?.warn?.({ code, message });
  }

  #effectiveConfig(): ResolvedScalingConfig {
    this.#effective ??= resolveScalingConfig(
      withOverrides(this.#config.defaultScalingConfig, this.#vm.config.scalingConfig),
    );
    return this.#effective;
  }

  /** What to do next: the requests to start, and how long to wait before asking again. */
  nextActions(now: Millis): ActionSet {
    const desired = this.desiredResourcesFromMetricsOrRequestedUpscaling(now);
    const using = vmUsing(this.#vm);
    const actions: ActionSet = {};
    const waits: DurationMs[] = [];
    const collect = <A>(decision: Decision<A>, put: (action: A) => void): boolean => {
      if (decision.wait !== undefined) waits.push(decision.wait);
      if (decision.action === undefined) return false;
      put(decision.action);
      return true;
    };

    const pluginDecision = this.#pluginAction(now, using, desired.resources);
    collect(pluginDecision, (a) => actions.pluginRequest = a);
    const pluginRequested = this.#plugin.ongoingRequest
      ? this.#plugin.lastRequest!.resources
      : pluginDecision.action?.target ?? null;

    this.#clampApprovedToUsage(using);
    collect(
      this.#neonvmAction(now, using, desired.resources, pluginRequested),
      (a) => actions.neonvmRequest = a,
    );
    const plannedUpscale = collect(
      this.#monitorUpscaleAction(now, using, desired.resources),
      (a) => actions.monitorUpscale = a,
    );
    collect(
      this.#monitorDownscaleAction(now, using, desired.resources, plannedUpscale),
      (a) => actions.monitorDownscale = a,
    );

    const extra = desired.calculateWait(actions);
    if (extra !== null) waits.push(extra);
    if (waits.length > 0) actions.wait = { duration: Math.min(...waits) };
    return actions;
  }

  /** Desired resources from metrics, monitor requests and denials. Not read-only. */
  desiredResourcesFromMetricsOrRequestedUpscaling(now: Millis): DesiredResourcesResult {
    const cu = this.#config.computeUnit;
    const using = vmUsing(this.#vm);
    const vmLow = vmMin(this.#vm);
    const vmHigh = vmMax(this.#vm);
    const goal = calculateGoalCU(
      this.#effectiveConfig(),
      cu,
      this.#metrics,
      this.#lfcMetrics,
      (w) => this.#config.log?.warn?.(w),
    );
    let goalUnits = goalCU(goal);

    const hypothetical = this.#config.observabilityCallbacks?.hypotheticalScaling;
    if (hypothetical && goal.hasAllMetrics) {
      const currentCU = divResources(using, cu);
      if (currentCU !== null) hypothetical(now, currentCU, goalUnits, { ...goal.parts });
    }

    const initialGoal = goalUnits;
    let upscaleAffected = false;
    let deniedAffected = false;

    const requested = this.#monitor.requestedUpscale;
    const remainingUp = requested !== null
      ? requested.at + this.#config.monitorRequestedUpscaleValidPeriod - now
      : 0;
    if (requested !== null && remainingUp > 0) {
      let req = 0;
      if (requested.requested.cpu) {
        req = Math.max(req, 1 + Math.floor(requested.base.vCPU / cu.vCPU));
      }
      if (requested.requested.memory) {
        req = Math.max(req, 1 + Math.floor(requested.base.mem / cu.mem));
      }
      if (req > initialGoal) {
        goalUnits = Math.max(goalUnits, req);
        upscaleAffected = true;
      }
    }

    const denied = this.#monitor.deniedDownscale;
    const remainingDenied = denied !== null
      ? denied.at + this.#config.monitorDeniedDownscaleCooldown - now
      : 0;
    if (denied !== null && remainingDenied > 0) {
      const req = Math.max(
        1 + Math.floor(denied.requested.vCPU / cu.vCPU),
        1 + Math.floor(denied.requested.mem / cu.mem),
      );
      if (req > initialGoal) {
        goalUnits = Math.max(goalUnits, req);
        deniedAffected = true;
      }
    }

    let goalResources = resourcesMulSaturating(cu, goalUnits);
    if (!goal.hasAllMetrics) goalResources = resourcesMax(goalResources, using);
    let result = resourcesMax(resourcesMin(goalResources, vmHigh), vmLow);

    if (denied !== null && remainingDenied > 0) {
      if (!hasFieldGreaterThan(result, denied.requested)) {
        this.#warn(
          "deniedDownscaleExceedsMax",
          `desired ${fmt(result)} is not above the denied downscale target ${
            fmt(denied.requested)
          }: the VM maximum holds it down`,
        );
      }
      const floor: Resources = {
        vCPU: Math.min(
          denied.current.vCPU,
          cu.vCPU * (1 + Math.floor(denied.requested.vCPU / cu.vCPU)),
        ),
        mem: Math.min(denied.current.mem, cu.mem * (1 + Math.floor(denied.requested.mem / cu.mem))),
      };
      const raised = resourcesMax(result, floor);
      if (!resourcesEqual(raised, result)) {
        result = raised;
        deniedAffected = true;
      }
    }

    if (!deniedAffected && hasFieldGreaterThan(result, vmHigh)) {
      throw new CoreInvariantError(
        `desired resources ${fmt(result)} exceed the VM maximum ${fmt(vmHigh)}`,
      );
    }
    if (hasFieldLessThan(result, vmLow)) {
      throw new CoreInvariantError(
        `desired resources ${fmt(result)} are below the VM minimum ${fmt(vmLow)}`,
      );
    }

    const last = this.#lastDesiredResources ?? using;
    if (!resourcesEqual(result, last)) {
      const flags = (hasFieldGreaterThan(result, last) ? RevisionFlag.upscale : 0) |
        (hasFieldLessThan(result, last) ? RevisionFlag.downscale : 0);
      this.#targetRevision = copyRev(this.#config.revisionSource.next(now, flags));
    }
    this.#lastDesiredResources = copyRes(result);

    this.#config.log?.info?.("Calculated desired resources", {
      current: using,
      target: copyRes(result),
      targetRevision: copyRev(this.#targetRevision),
      goalCU: goalUnits,
      goal: { hasAllMetrics: goal.hasAllMetrics, parts: { ...goal.parts } },
    });

    return {
      resources: copyRes(result),
      calculateWait: (actions: ActionSet): DurationMs | null => {
        let wait: DurationMs | null = null;
        if (
          deniedAffected && actions.monitorDownscale === undefined &&
          this.#monitor.ongoingRequest === null
        ) {
          wait = remainingDenied;
        }
        if (upscaleAffected) wait = wait === null ? remainingUp : Math.min(wait, remainingUp);
        return wait;
      },
    };
  }

  #pluginAction(
    now: Millis,
    using: Resources,
    desired: Resources,
  ): Decision<ActionPluginRequest> {
    const plugin = this.#plugin;
    const ongoingNeonVM = this.#neonvm.ongoingRequested;
    const currentResources = ongoingNeonVM !== null ? resourcesMax(using, ongoingNeonVM) : using;
    // Deliberate deviation ("Peers hear of what the VM has", docs/differences.md): the reference
    // asks for max(desired, using) even while a patch that grows the VM is in flight, so a drop in
    // the goal meanwhile tells the scheduler the VM will be smaller while the patch is about to
    // make it bigger. The in-flight target counts as in use.
    const requestResources = clampDirectional(currentResources, desired, currentResources, null);

    const last = plugin.lastRequest;
    const untilTick = last !== null ? this.#config.pluginRequestTick - (now - last.at) : 0;
    const tickDue = untilTick <= 0;
    const previouslyDenied = !plugin.ongoingRequest && last !== null && plugin.permit !== null &&
      hasFieldGreaterThan(last.resources, plugin.permit);
    const untilDeniedRetry = previouslyDenied
      ? last!.at + this.#config.pluginDeniedRetryWait - now
      : 0;
    const inDeniedBackoff = untilDeniedRetry > 0;
    const wantNew = last !== null && plugin.permit !== null &&
      !resourcesEqual(requestResources, plugin.permit);
    const shouldNew = wantNew && !inDeniedBackoff;
    const target = shouldNew ? requestResources : currentResources;

    if (plugin.ongoingRequest) {
      if (!resourcesEqual(last!.resources, target)) {
        this.#warn(
          "pluginOngoingRequestDiffers",
          `wanted to make a plugin request for ${fmt(target)} but one for ${
            fmt(last!.resources)
          } is ongoing`,
        );
      }
      return {};
    }
    if (plugin.lastFailureAt !== null) {
      const remaining = plugin.lastFailureAt + this.#config.pluginRetryWait - now;
      if (remaining > 0) {
        this.#warn("pluginFailedTooRecently", "last plugin request failed too recently to retry");
        return { wait: remaining };
      }
    }
    if (tickDue || shouldNew) {
      return {
        action: {
          lastPermit: copyOrNull(plugin.permit),
          target: copyRes(target),
          metrics: this.#metrics !== null ? systemMetricsToApi(this.#metrics) : null,
          targetRevision: withTime(this.#targetRevision, now),
        },
      };
    }
    if (wantNew && inDeniedBackoff) {
      this.#warn(
        "pluginDeniedTooRecently",
        `plugin denied ${fmt(last!.resources)} too recently to ask for ${fmt(requestResources)}`,
      );
    }
    return { wait: inDeniedBackoff ? Math.min(untilTick, untilDeniedRetry) : untilTick };
  }

  /**
   * Deliberate deviation: the reference panics in the NeonVM clamp when a shrink
   * completed while an upscale notification was in flight. We lower `approved` to usage instead.
   */
  #clampApprovedToUsage(using: Resources): void {
    const approved = this.#monitor.approved;
    if (approved === null || !hasFieldGreaterThan(approved, using)) return;
    const clamped = resourcesMin(approved, using);
    this.#warn(
      "monitorApprovedAboveUsage",
      `vm-monitor approved ${fmt(approved)} is above current usage ${fmt(using)}; clamped to ${
        fmt(clamped)
      }`,
    );
    this.#monitor.approved = clamped;
  }

  #neonvmAction(
    now: Millis,
    using: Resources,
    desired: Resources,
    pluginRequested: Resources | null,
  ): Decision<ActionNeonVMRequest> {
    let rev = this.#targetRevision;
    if (hasFieldLessThan(desired, using) && this.#monitor.currentRevision.value > 0) {
      rev = revMin(rev, this.#monitor.currentRevision);
    }
    if (hasFieldGreaterThan(desired, using) && this.#plugin.currentRevision.value > 0) {
      rev = revMin(rev, this.#plugin.currentRevision);
    }

    const lower = this.#monitor.approved ?? using;
    // A permit is never below usage when it is accepted; max() keeps the clamp's precondition
    // even if a later, smaller permit arrived while a bigger patch was in flight.
    const upper = resourcesMax(this.#plugin.permit ?? using, using);
    const target = clampDirectional(using, desired, lower, upper);
    if (resourcesEqual(target, using) && !this.#neonvmUnsure) return {};

    const ongoing = this.#neonvm.ongoingRequested;
    const conflicting = pluginRequested !== null && hasFieldLessThan(pluginRequested, target);
    if (ongoing === null && !conflicting) {
      if (this.#neonvm.requestFailedAt !== null) {
        const remaining = this.#neonvm.requestFailedAt + this.#config.neonVMRetryWait - now;
        if (remaining > 0) {
          this.#warn("neonvmFailedTooRecently", "last NeonVM request failed too recently to retry");
          return { wait: remaining };
        }
      }
      this.#neonvm.targetRevision = withTime(rev, now);
      return {
        action: {
          current: copyRes(using),
          target,
          targetRevision: { ...this.#neonvm.targetRevision },
          priority: this.#neonvmPriority(now, using, target),
        },
      };
    }
    if (this.#plugin.ongoingRequest || (ongoing !== null && !resourcesEqual(ongoing, target))) {
      this.#warn(
        "neonvmBlocked",
        `wanted to patch the VM to ${fmt(target)} but ${
          this.#plugin.ongoingRequest ? "a plugin request" : "another NeonVM request"
        } is ongoing`,
      );
    }
    return {};
  }

  /**
   * A patch that grows the VM is urgent while a vm-monitor upscale request is in force and not
   * yet met: the VM is, in some resource the monitor asked for, no larger than when it asked. The
   * request stays recorded until the connection resets and is never marked met, so both are
   * checked here.
   */
  #neonvmPriority(now: Millis, using: Resources, target: Resources): NeonVMPriority {
    if (!hasFieldGreaterThan(target, using)) return "normal";
    const request = this.#monitor.requestedUpscale;
    if (request === null || request.at + this.#config.monitorRequestedUpscaleValidPeriod <= now) {
      return "upscale";
    }
    const { requested, base } = request;
    const unmet = (requested.cpu && using.vCPU <= base.vCPU) ||
      (requested.memory && using.mem <= base.mem);
    return unmet ? "urgent" : "upscale";
  }

  #monitorUpscaleAction(
    now: Millis,
    using: Resources,
    desired: Resources,
  ): Decision<ActionMonitorUpscale> {
    const monitor = this.#monitor;
    const approved = monitor.approved;
    if (approved === null) return {};
    // Deliberate deviation ("Peers hear of what the VM has", docs/differences.md): the reference
    // tells the monitor of `using` even while a patch that shrinks the VM is in flight, so the
    // monitor could hear of memory the VM is about to lose. Only what the VM keeps either way
    // counts.
    const patching = this.#neonvm.ongoingRequested;
    const kept = patching === null ? using : resourcesMin(using, patching);
    // The reference's further "one CU per step" clamp is built from this target and never
    // changes it, so it is left out.
    const target = clampDirectional(approved, kept, approved, resourcesMax(desired, approved));
    if (resourcesEqual(target, approved)) return {};
    const ongoing = monitor.ongoingRequest;
    if (ongoing !== null) {
      if (ongoing.kind === "downscale" || !resourcesEqual(ongoing.requested, target)) {
        this.#warn(
          "monitorUpscaleBlocked",
          `wanted to notify the vm-monitor of ${fmt(target)} but a ${ongoing.kind} is ongoing`,
        );
      }
      return {};
    }
    if (monitor.upscaleFailureAt !== null) {
      const remaining = monitor.upscaleFailureAt + this.#config.monitorRetryWait - now;
      if (remaining > 0) {
        this.#warn(
          "monitorUpscaleFailedTooRecently",
          "last vm-monitor upscale notification failed too recently to retry",
        );
        return { wait: remaining };
      }
    }
    return {
      action: {
        current: copyRes(approved),
        target,
        targetRevision: withTime(this.#targetRevision, now),
      },
    };
  }

  #monitorDownscaleAction(
    now: Millis,
    using: Resources,
    desired: Resources,
    plannedUpscale: boolean,
  ): Decision<ActionMonitorDownscale> {
    const monitor = this.#monitor;
    const approved = monitor.approved;
    if (approved === null) {
      if (hasFieldLessThan(desired, using)) {
        this.#warn(
          "monitorDownscaleNoConnection",
          `wanted to downscale to ${fmt(desired)} but there is no vm-monitor connection`,
        );
      }
      return {};
    }
    const cu = this.#config.computeUnit;
    const step = (d: number, a: number, unit: number) =>
      d < a ? Math.max(d, Math.max(0, a - unit)) : a;
    const target: Resources = {
      vCPU: step(desired.vCPU, approved.vCPU, cu.vCPU),
      mem: step(desired.mem, approved.mem, cu.mem),
    };
    if (resourcesEqual(target, approved)) return {};
    if (plannedUpscale) {
      this.#warn(
        "monitorDownscaleBlockedByPlannedUpscale",
        `wanted to ask the vm-monitor for ${fmt(target)} but an upscale notification is planned`,
      );
      return {};
    }
    const ongoing = monitor.ongoingRequest;
    if (ongoing !== null) {
      if (ongoing.kind === "upscale" || !resourcesEqual(ongoing.requested, target)) {
        this.#warn(
          "monitorDownscaleBlocked",
          `wanted to ask the vm-monitor for ${fmt(target)} but a ${ongoing.kind} is ongoing`,
        );
      }
      return {};
    }
    if (monitor.downscaleFailureAt !== null) {
      const remaining = monitor.downscaleFailureAt + this.#config.monitorRetryWait - now;
      if (remaining > 0) {
        this.#warn(
          "monitorDownscaleFailedTooRecently",
          "last vm-monitor downscale request failed too recently to retry",
        );
        return { wait: remaining };
      }
    }
    const denied = monitor.deniedDownscale;
    if (
      denied !== null && denied.at + this.#config.monitorDeniedDownscaleCooldown - now > 0 &&
      !hasFieldLessThan(denied.requested, target)
    ) {
      throw new CoreInvariantError(
        `downscale target ${fmt(target)} is not above the still-denied ${fmt(denied.requested)}`,
      );
    }
    return {
      action: {
        current: copyRes(approved),
        target,
        targetRevision: withTime(this.#targetRevision, now),
      },
    };
  }

  /** Swaps in a new VM object, keeping the core's own record of usage. */
  updatedVM(vm: VmInfo): void {
    this.#vm = vmWithUsing(vm, vmUsing(this.#vm));
    this.#effective = null;
    const reported = vm.currentRevision;
    if (reported !== null && reported !== undefined) {
      this.#neonvm.currentRevision = propagate(
        reported.updatedAt,
        this.#neonvm.targetRevision,
        this.#neonvm.currentRevision,
        this.#config.observabilityCallbacks?.neonvmLatency,
      );
      const err = this.#config.revisionSource.observe(reported.updatedAt, {
        value: reported.value,
        flags: reported.flags,
      });
      if (err !== null) this.#warn("revisionObserveFailed", err.message);
      this.#lastDesiredResources = null;
    }
    const merged = withOverrides(this.#config.defaultScalingConfig, this.#vm.config.scalingConfig);
    if (!merged.enableLFCMetrics) this.#lfcMetrics = null;
  }

  /** Negative and non-finite values are stored as 0 (see `sanitizeSystemMetrics`). */
  updateSystemMetrics(metrics: SystemMetrics): void {
    this.#metrics = { ...sanitizeSystemMetrics(metrics).metrics };
  }

  /** Stored even while LFC metrics are disabled. */
  updateLFCMetrics(lfc: LFCMetrics): void {
    const metrics = sanitizeLFCMetrics(lfc).metrics;
    this.#lfcMetrics = {
      ...metrics,
      approximateWorkingSetSizeBuckets: [...metrics.approximateWorkingSetSizeBuckets],
    };
  }

  plugin(): PluginHandle {
    return this.#pluginHandle;
  }

  monitor(): MonitorHandle {
    return this.#monitorHandle;
  }

  neonvm(): NeonVMHandle {
    return this.#neonvmHandle;
  }

  /** No behavioural effect; recorded in dump(). */
  debug(enabled: boolean): void {
    this.#debug = enabled;
  }

  /** A deep, JSON-serialisable snapshot. */
  dump(): StateDump {
    const c = this.#config;
    const p = this.#plugin;
    const m = this.#monitor;
    const n = this.#neonvm;
    return {
      config: {
        computeUnit: copyRes(c.computeUnit),
        defaultScalingConfig: { ...c.defaultScalingConfig },
        neonVMRetryWait: c.neonVMRetryWait,
        pluginRequestTick: c.pluginRequestTick,
        pluginRetryWait: c.pluginRetryWait,
        pluginDeniedRetryWait: c.pluginDeniedRetryWait,
        monitorDeniedDownscaleCooldown: c.monitorDeniedDownscaleCooldown,
        monitorRequestedUpscaleValidPeriod: c.monitorRequestedUpscaleValidPeriod,
        monitorRetryWait: c.monitorRetryWait,
      },
      debug: this.#debug,
      vm: cloneVmInfo(this.#vm),
      plugin: {
        ongoingRequest: p.ongoingRequest,
        lastRequest: p.lastRequest === null
          ? null
          : { at: p.lastRequest.at, resources: copyRes(p.lastRequest.resources) },
        lastFailureAt: p.lastFailureAt,
        permit: copyOrNull(p.permit),
        currentRevision: copyRev(p.currentRevision),
      },
      monitor: {
        ongoingRequest: m.ongoingRequest === null
          ? null
          : { kind: m.ongoingRequest.kind, requested: copyRes(m.ongoingRequest.requested) },
        requestedUpscale: m.requestedUpscale === null ? null : {
          at: m.requestedUpscale.at,
          base: copyRes(m.requestedUpscale.base),
          requested: { ...m.requestedUpscale.requested },
        },
        deniedDownscale: m.deniedDownscale === null ? null : {
          at: m.deniedDownscale.at,
          current: copyRes(m.deniedDownscale.current),
          requested: copyRes(m.deniedDownscale.requested),
        },
        approved: copyOrNull(m.approved),
        downscaleFailureAt: m.downscaleFailureAt,
        upscaleFailureAt: m.upscaleFailureAt,
        currentRevision: copyRev(m.currentRevision),
      },
      neonvm: {
        lastSuccess: copyOrNull(n.lastSuccess),
        ongoingRequested: copyOrNull(n.ongoingRequested),
        requestFailedAt: n.requestFailedAt,
        targetRevision: { ...n.targetRevision },
        currentRevision: copyRev(n.currentRevision),
      },
      metrics: this.#metrics === null ? null : { ...this.#metrics },
      lfcMetrics: this.#lfcMetrics === null ? null : {
        ...this.#lfcMetrics,
        approximateWorkingSetSizeBuckets: [...this.#lfcMetrics.approximateWorkingSetSizeBuckets],
      },
      targetRevision: copyRev(this.#targetRevision),
      lastDesiredResources: copyOrNull(this.#lastDesiredResources),
    };
  }

  #makePluginHandle(): PluginHandle {
    const plugin = this.#plugin;
    return {
      startingRequest: (now, resources) => {
        plugin.lastRequest = { at: now, resources: copyRes(resources) };
        plugin.ongoingRequest = true;
      },
      requestFailed: (now) => {
        plugin.ongoingRequest = false;
        plugin.lastFailureAt = now;
      },
      requestSuccessful: (now, targetRevision, response) => {
        const requested = plugin.lastRequest;
        if (requested === null) {
          throw new CoreInvariantError("plugin request succeeded but none was started");
        }
        plugin.ongoingRequest = false;
        const permit = response.permit;
        const using = vmUsing(this.#vm);
        let problem = validateNonZero(permit)?.message ?? null;
        if (problem === null && hasFieldGreaterThan(permit, requested.resources)) {
          problem = `permit ${fmt(permit)} exceeds the request ${fmt(requested.resources)}`;
        }
        if (problem === null && hasFieldLessThan(permit, using)) {
          problem = `permit ${fmt(permit)} is below current usage ${fmt(using)}`;
        }
        if (problem !== null) {
          plugin.lastFailureAt = now;
          return new Error(`invalid plugin response: ${problem}`);
        }
        plugin.permit = copyRes(permit);
        plugin.currentRevision = propagate(
          now,
          targetRevision,
          plugin.currentRevision,
          this.#config.observabilityCallbacks?.pluginLatency,
        );
        return null;
      },
    };
  }

  #makeMonitorHandle(): MonitorHandle {
    const ongoingOrThrow = (what: string) => {
      const ongoing = this.#monitor.ongoingRequest;
      if (ongoing === null) {
        throw new CoreInvariantError(`vm-monitor ${what} but no request is ongoing`);
      }
      return ongoing;
    };
    const acknowledge = (now: Millis, targetRevision: RevisionWithTime) => {
      this.#monitor.currentRevision = propagate(
        now,
        targetRevision,
        this.#monitor.currentRevision,
        this.#config.observabilityCallbacks?.monitorLatency,
      );
    };
    return {
      reset: () => {
        this.#monitor = initialMonitorState();
      },
      active: (isActive, known) => {
        const using = vmUsing(this.#vm);
        this.#monitor.approved = !isActive
          ? null
          : known === undefined
          ? using
          : resourcesMin(known, using);
      },
      isActive: () => this.#monitor.approved !== null,
      upscaleRequested: (now, resources) => {
        const approved = this.#monitor.approved;
        if (approved === null) {
          throw new CoreInvariantError("vm-monitor requested upscale but is not active");
        }
        this.#monitor.requestedUpscale = {
          at: now,
          base: copyRes(approved),
          requested: { cpu: resources.cpu, memory: resources.memory },
        };
      },
      startingUpscaleRequest: (_now, resources) => {
        this.#monitor.ongoingRequest = { kind: "upscale", requested: copyRes(resources) };
        this.#monitor.upscaleFailureAt = null;
      },
      upscaleRequestSuccessful: (_now) => {
        const ongoing = ongoingOrThrow("upscale succeeded");
        this.#monitor.approved = copyRes(ongoing.requested);
        this.#monitor.ongoingRequest = null;
      },
      upscaleRequestFailed: (now) => {
        this.#monitor.ongoingRequest = null;
        this.#monitor.upscaleFailureAt = now;
      },
      startingDownscaleRequest: (_now, resources) => {
        this.#monitor.ongoingRequest = { kind: "downscale", requested: copyRes(resources) };
        this.#monitor.downscaleFailureAt = null;
      },
      downscaleRequestAllowed: (now, targetRevision) => {
        const ongoing = ongoingOrThrow("allowed a downscale");
        this.#monitor.approved = copyRes(ongoing.requested);
        this.#monitor.ongoingRequest = null;
        acknowledge(now, targetRevision);
      },
      downscaleRequestDenied: (now, targetRevision) => {
        const ongoing = ongoingOrThrow("denied a downscale");
        const approved = this.#monitor.approved;
        if (approved === null) {
          throw new CoreInvariantError("vm-monitor denied a downscale but is not active");
        }
        this.#monitor.deniedDownscale = {
          at: now,
          current: copyRes(approved),
          requested: copyRes(ongoing.requested),
        };
        this.#monitor.ongoingRequest = null;
        acknowledge(now, targetRevision);
      },
      downscaleRequestFailed: (now) => {
        this.#monitor.ongoingRequest = null;
        this.#monitor.downscaleFailureAt = now;
      },
    };
  }

  #makeNeonVMHandle(): NeonVMHandle {
    const neonvm = this.#neonvm;
    return {
      startingRequest: (now, resources) => {
        const actualScaling = this.#config.observabilityCallbacks?.actualScaling;
        if (actualScaling) {
          const cu = this.#config.computeUnit;
          const currentCU = divResources(vmUsing(this.#vm), cu);
          const targetCU = divResources(resources, cu);
          if (currentCU !== null && targetCU !== null) actualScaling(now, currentCU, targetCU);
        }
        neonvm.ongoingRequested = copyRes(resources);
      },
      requestSuccessful: (_now) => {
        if (neonvm.ongoingRequested === null) {
          throw new CoreInvariantError("NeonVM request succeeded but none was started");
        }
        this.#vm = vmWithUsing(this.#vm, neonvm.ongoingRequested);
        neonvm.ongoingRequested = null;
        this.#neonvmUnsure = false;
      },
      requestFailed: (now, outcomeUnknown = false) => {
        neonvm.ongoingRequested = null;
        neonvm.requestFailedAt = now;
        if (outcomeUnknown) this.#neonvmUnsure = true;
      },
    };
  }
}
