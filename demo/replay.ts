/**
 * Replay: what the agent would have done with one VM whose guest behaved as a recorded trace.
 *
 * The core `State` runs with the agent's timings in virtual time. Its surroundings are idealised:
 * the scheduler plugin grants every request, NeonVM applies every patch at once, and the
 * vm-monitor approves a downscale unless the guest's memory would not fit (the real monitor's
 * rule), and asks for more memory when the guest uses over 90% of it, checking every second.
 * The agent's scrapes see what the simulator's exporters would report for the trace: load
 * averages and LFC windows derived as in the simulator, memory as the core's parser reads it.
 *
 * @module
 */

import type { AgentConfig } from "../agent/config/config.ts";
import { coreConfigOf, timingsOf } from "../agent/config/timings.ts";
import {
  calculateGoalCU,
  type LFCMetrics,
  parseSystemMetrics,
  resolveScalingConfig,
  type Resources,
  type ScalingConfig,
  State,
  type SystemMetrics,
  type VmInfo,
  withOverrides,
} from "../core/mod.ts";
import { realMonitorPolicy } from "../sim/vm/monitor_server.ts";
import { guestMemory } from "../sim/vm/workload.ts";
import type { ReplayGuest } from "./trace.ts";
import type { Report, Sample, ScalingEvent } from "./timeline.ts";
import { cuOf, formatBytes, formatCU, formatResources } from "./timeline.ts";

/** The fake and the real vm-monitor ask for more memory above this share of the VM's memory. */
const MONITOR_UPSCALE_FRACTION = 0.9;
/** How often the vm-monitor looks at memory, and its minimum spacing of requests. */
const MONITOR_CHECK_MS = 1000;
/** A settled core asks for nothing more; a loop beyond this many actions in one instant is a bug. */
const MAX_ACTIONS_PER_INSTANT = 100;
/** Any epoch works for the core; a fixed one keeps replays reproducible. */
const EPOCH_MS = Date.UTC(2024, 0, 1);

/** The replayed VM's bounds (in compute units) and its `autoscaling.neon.tech/config`. */
export interface ReplayVm {
  name: string;
  minCU: number;
  maxCU: number;
  startCU: number;
  scalingConfig: ScalingConfig | null;
}

/** What the core was told at one instant, so that a check can feed a fresh `State` the same. */
export interface ReplayInput {
  atMs: number;
  system?: SystemMetrics;
  lfc?: LFCMetrics;
  /** The vm-monitor asked for more memory. */
  monitorUpscale?: true;
}

export interface ReplayOptions {
  workload: ReplayGuest;
  durationMs: number;
  config: AgentConfig;
  vm: ReplayVm;
  /** The report's one-line description of the inputs. */
  source: string;
  description: string;
}

export interface ReplayResult {
  report: Report;
  inputs: ReplayInput[];
}

/** The VM as the core sees it: CPU and memory slots of one compute unit each. */
export function replayVmInfo(vm: ReplayVm, computeUnit: Resources): VmInfo {
  return {
    name: vm.name,
    namespace: "default",
    cpu: {
      min: vm.minCU * computeUnit.vCPU,
      max: vm.maxCU * computeUnit.vCPU,
      use: vm.startCU * computeUnit.vCPU,
    },
    mem: { min: vm.minCU, max: vm.maxCU, use: vm.startCU, slotSize: computeUnit.mem },
    config: {
      autoMigrationEnabled: false,
      alwaysMigrate: false,
      scalingEnabled: true,
      scalingConfig: vm.scalingConfig,
    },
    currentRevision: null,
  };
}

/**
 * What the core's parser adds to the guest's used memory for the kernel: its reading of a guest
 * that uses none. Scrapes are built directly from it, since rendering and parsing Prometheus
 * text for every scrape of a day-long trace would take most of the replay's time.
 */
const KERNEL_BYTES = parseSystemMetrics(
  [
    "host_load1",
    "host_load5",
    "host_memory_total_bytes",
    "host_memory_available_bytes",
    "host_memory_cached_bytes",
  ].map((name) => `# TYPE ${name} gauge\n${name} 0\n`).join(""),
).memoryUsageBytes;

/** What the agent's system-metrics scrape sees at `atMs` of a VM with `memBytes`. */
function systemMetricsAt(workload: ReplayGuest, atMs: number, memBytes: number): SystemMetrics {
  const sample = workload.at(atMs);
  const mem = guestMemory(sample, memBytes);
  return {
    loadAverage1Min: sample.load1,
    loadAverage5Min: sample.load5,
    memoryUsageBytes: mem.total - mem.available + KERNEL_BYTES,
    memoryCachedBytes: mem.cached,
  };
}

/** What the agent's LFC scrape sees at `atMs` (the counters play no part in scaling). */
function lfcMetricsAt(workload: ReplayGuest, atMs: number): LFCMetrics {
  return {
    cacheHitsTotal: 0,
    cacheMissesTotal: 0,
    cacheWritesTotal: 0,
    approximateWorkingSetSizeBuckets: workload.workingSetWindows(atMs),
  };
}

/** The vm-monitor's answer to a downscale to `target` at `atMs`. */
export function monitorAllows(
  workload: ReplayGuest,
  atMs: number,
  target: Resources,
): { ok: boolean; status: string } {
  return realMonitorPolicy()(
    { cpu: target.vCPU / 1000, mem: target.mem },
    { memoryUsed: workload.demandAt(atMs).memory, allocation: undefined },
  );
}

/** Replays the trace; throws if the core rejects a call (a bug in the core or here). */
export function replay(options: ReplayOptions): ReplayResult {
  const { workload, durationMs, config, vm } = options;
  const cu = config.scaling.computeUnit;
  const state = new State(replayVmInfo(vm, cu), coreConfigOf(config));
  const scaling = resolveScalingConfig(
    withOverrides(config.scaling.defaultConfig, vm.scalingConfig),
  );
  const lfcEnabled = scaling.enableLFCMetrics;
  const { system, lfc } = timingsOf(config).metrics;
  const systemEveryMs = system.everyMs;
  const lfcEveryMs = lfc.everyMs;

  let using: Resources = { vCPU: vm.startCU * cu.vCPU, mem: vm.startCU * cu.mem };
  const cuPoints = [{ atMs: 0, cu: cuOf(using, cu) }];
  const samples: Sample[] = [];
  const events: ScalingEvent[] = [];
  const inputs: ReplayInput[] = [];
  const size = (r: Resources) => cuOf(r, cu);

  /** Runs every action the core asks for at `atMs` to completion; returns the wait it asks for. */
  const settle = (atMs: number): number | null => {
    const now = EPOCH_MS + atMs;
    for (let n = 0; n < MAX_ACTIONS_PER_INSTANT; n++) {
      const actions = state.nextActions(now);
      // One action at a time, then a fresh decision: the agent's executors never start an
      // action from an outdated action set either.
      if (actions.pluginRequest) {
        const { target, targetRevision } = actions.pluginRequest;
        state.plugin().startingRequest(now, target);
        const invalid = state.plugin().requestSuccessful(now, targetRevision, { permit: target });
        if (invalid !== null) throw invalid;
      } else if (actions.neonvmRequest) {
        const { target } = actions.neonvmRequest;
        state.neonvm().startingRequest(now, target);
        state.neonvm().requestSuccessful(now);
        const fromCU = size(using);
        using = { ...target };
        const toCU = size(using);
        cuPoints.push({ atMs, cu: toCU });
        events.push({
          atMs,
          kind: toCU > fromCU ? "upscale" : "downscale",
          fromCU,
          toCU,
          detail: `NeonVM patched to ${formatResources(target)}`,
        });
      } else if (actions.monitorDownscale) {
        const { target, targetRevision } = actions.monitorDownscale;
        state.monitor().startingDownscaleRequest(now, target);
        const answer = monitorAllows(workload, atMs, target);
        if (answer.ok) state.monitor().downscaleRequestAllowed(now, targetRevision);
        else state.monitor().downscaleRequestDenied(now, targetRevision);
        events.push({
          atMs,
          kind: answer.ok ? "approved" : "denied",
          fromCU: size(using),
          toCU: size(target),
          detail: `vm-monitor: ${answer.status} (guest memory ${
            formatBytes(workload.demandAt(atMs).memory)
          })`,
        });
      } else if (actions.monitorUpscale) {
        state.monitor().startingUpscaleRequest(now, actions.monitorUpscale.target);
        state.monitor().upscaleRequestSuccessful(now);
      } else {
        return actions.wait?.duration ?? null;
      }
    }
    throw new Error(`replay: the core still asks for actions after ${MAX_ACTIONS_PER_INSTANT}`);
  };

  state.monitor().active(true);
  let nextSystem = 0;
  let nextLfc = 0;
  let nextMonitor = 0;
  let goalCU: number | null = null;
  let lastLfc: LFCMetrics | null = null;
  for (let atMs = 0; atMs <= durationMs;) {
    const input: ReplayInput = { atMs };
    if (atMs >= nextSystem) {
      input.system = systemMetricsAt(workload, atMs, using.mem);
      state.updateSystemMetrics(input.system);
      nextSystem += systemEveryMs;
    }
    if (lfcEnabled && atMs >= nextLfc) {
      input.lfc = lfcMetricsAt(workload, atMs);
      lastLfc = input.lfc;
      state.updateLFCMetrics(input.lfc);
      nextLfc += lfcEveryMs;
    }
    if (atMs >= nextMonitor) {
      nextMonitor += MONITOR_CHECK_MS;
      const wanted = workload.demandAt(atMs).memory;
      if (wanted > MONITOR_UPSCALE_FRACTION * using.mem) {
        input.monitorUpscale = true;
        state.monitor().upscaleRequested(EPOCH_MS + atMs, { cpu: false, memory: true });
        // At its maximum the VM cannot grow: the monitor's repeated asks are not worth listing.
        if (size(using) < vm.maxCU) {
          events.push({
            atMs,
            kind: "monitor-upscale",
            fromCU: size(using),
            detail: `the vm-monitor asked for more memory: the guest wants ${
              formatBytes(wanted)
            } of ${formatBytes(using.mem)}`,
          });
        }
      }
    }
    inputs.push(input);
    const wait = settle(atMs);
    // A zero wait would stall virtual time; a timer of 0 ms fires a moment later in the agent too.
    const wakeAt = wait === null ? Infinity : atMs + Math.max(1, wait);
    if (input.system) {
      const dump = state.dump();
      if (dump.lastDesiredResources !== null) goalCU = size(dump.lastDesiredResources);
      const sample = workload.at(atMs);
      const permit = dump.plugin.permit;
      samples.push({
        atMs,
        load: sample.load1,
        memBytes: sample.memory,
        workingSetBytes: lfcEnabled ? sample.workingSet : null,
        goalCU,
        goalParts: calculateGoalCU(scaling, cu, input.system, lfcEnabled ? lastLfc : null).parts,
        permitCU: permit === null ? null : size(permit),
      });
    }
    atMs = Math.min(nextSystem, lfcEnabled ? nextLfc : Infinity, nextMonitor, wakeAt);
  }

  return {
    inputs,
    report: {
      title: `autoscaler-agent replay: ${vm.name}`,
      source: `${options.source} · bounds ${formatCU(vm.minCU)}–${formatCU(vm.maxCU)} CU`,
      generatedAt: new Date().toISOString(),
      durationMs,
      computeUnit: { ...cu },
      vms: [{
        name: vm.name,
        description: options.description,
        minCU: vm.minCU,
        maxCU: vm.maxCU,
        cu: cuPoints,
        samples,
        events,
      }],
    },
  };
}
