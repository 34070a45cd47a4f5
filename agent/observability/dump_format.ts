/**
 * The state dump's JSON shapes: the reference's field names and encodings, so
 * tools written against its dumps read ours. Resources use the scheduler protocol's encoding,
 * durations are nanoseconds, times RFC 3339 as Go writes them; errors are strings rather than Go's `{}`.
 *
 * @module
 */

import type {
  LFCMetrics,
  Resources,
  Revision,
  RevisionWithTime,
  StateDump,
  SystemMetrics,
  VmInfo,
} from "../../core/mod.ts";
import { encodeBytes, encodeMilliCPU, formatGoTime, formatK8sTime } from "../../lib/quantity.ts";
import type { PodDump } from "../runner/global_state.ts";
import type { RunnerDump } from "../runner/runner.ts";

type Json = unknown;

function resources(r: Resources | null): Json {
  return r === null ? null : { vCPUs: encodeMilliCPU(r.vCPU), mem: encodeBytes(r.mem) };
}

function time(ms: number | null): string | null {
  return ms === null ? null : formatGoTime(ms);
}

function nanoseconds(ms: number): number {
  return Math.round(ms * 1e6);
}

function revision(r: Revision): Json {
  return { value: r.value, flags: r.flags };
}

/** A zero `metav1.Time` is `null` on the wire. */
function revisionWithTime(r: RevisionWithTime): Json {
  return {
    revision: revision(r),
    updatedAt: r.updatedAt === 0 ? null : formatK8sTime(r.updatedAt),
  };
}

/** `api.VmInfo` as the reference serialises it. */
export function vmInfoJson(vm: VmInfo): Json {
  return {
    name: vm.name,
    namespace: vm.namespace,
    cpu: {
      min: encodeMilliCPU(vm.cpu.min),
      max: encodeMilliCPU(vm.cpu.max),
      use: encodeMilliCPU(vm.cpu.use),
    },
    mem: {
      min: vm.mem.min,
      max: vm.mem.max,
      use: vm.mem.use,
      slotSize: encodeBytes(vm.mem.slotSize),
    },
    config: {
      autoMigrationEnabled: vm.config.autoMigrationEnabled,
      alwaysMigrate: vm.config.alwaysMigrate,
      scalingEnabled: vm.config.scalingEnabled,
      ...(vm.config.scalingConfig === null ? {} : { scalingConfig: vm.config.scalingConfig }),
    },
    ...(vm.currentRevision === null
      ? {}
      : { currentRevision: revisionWithTime(vm.currentRevision) }),
  };
}

function systemMetrics(m: SystemMetrics | null): Json {
  return m === null ? null : {
    LoadAverage1Min: m.loadAverage1Min,
    LoadAverage5Min: m.loadAverage5Min,
    MemoryUsageBytes: m.memoryUsageBytes,
    MemoryCachedBytes: m.memoryCachedBytes,
  };
}

function lfcMetrics(m: LFCMetrics | null): Json {
  return m === null ? null : {
    CacheHitsTotal: m.cacheHitsTotal,
    CacheMissesTotal: m.cacheMissesTotal,
    CacheWritesTotal: m.cacheWritesTotal,
    // The reference's field really is spelled with a lower-case "w".
    ApproximateworkingSetSizeBuckets: m.approximateWorkingSetSizeBuckets,
  };
}

/** The core state, with the Go struct's capitalised field names. */
export function coreStateJson(d: StateDump): Json {
  const c = d.config;
  const p = d.plugin;
  const m = d.monitor;
  const n = d.neonvm;
  return {
    Config: {
      ComputeUnit: resources(c.computeUnit),
      DefaultScalingConfig: c.defaultScalingConfig,
      NeonVMRetryWait: nanoseconds(c.neonVMRetryWait),
      PluginRequestTick: nanoseconds(c.pluginRequestTick),
      PluginRetryWait: nanoseconds(c.pluginRetryWait),
      PluginDeniedRetryWait: nanoseconds(c.pluginDeniedRetryWait),
      MonitorDeniedDownscaleCooldown: nanoseconds(c.monitorDeniedDownscaleCooldown),
      MonitorRequestedUpscaleValidPeriod: nanoseconds(c.monitorRequestedUpscaleValidPeriod),
      MonitorRetryWait: nanoseconds(c.monitorRetryWait),
    },
    Debug: d.debug,
    VM: vmInfoJson(d.vm),
    Plugin: {
      OngoingRequest: p.ongoingRequest,
      LastRequest: p.lastRequest === null
        ? null
        : { At: time(p.lastRequest.at), Resources: resources(p.lastRequest.resources) },
      LastFailureAt: time(p.lastFailureAt),
      Permit: resources(p.permit),
      CurrentRevision: revision(p.currentRevision),
    },
    Monitor: {
      OngoingRequest: m.ongoingRequest === null
        ? null
        : { Kind: m.ongoingRequest.kind, Requested: resources(m.ongoingRequest.requested) },
      RequestedUpscale: m.requestedUpscale === null ? null : {
        At: time(m.requestedUpscale.at),
        Base: resources(m.requestedUpscale.base),
        Requested: m.requestedUpscale.requested,
      },
      DeniedDownscale: m.deniedDownscale === null ? null : {
        At: time(m.deniedDownscale.at),
        Current: resources(m.deniedDownscale.current),
        Requested: resources(m.deniedDownscale.requested),
      },
      Approved: resources(m.approved),
      DownscaleFailureAt: time(m.downscaleFailureAt),
      UpscaleFailureAt: time(m.upscaleFailureAt),
      CurrentRevision: revision(m.currentRevision),
    },
    NeonVM: {
      LastSuccess: resources(n.lastSuccess),
      OngoingRequested: resources(n.ongoingRequested),
      RequestFailedAt: time(n.requestFailedAt),
      TargetRevision: revisionWithTime(n.targetRevision),
      CurrentRevision: revision(n.currentRevision),
    },
    Metrics: systemMetrics(d.metrics),
    LFCMetrics: lfcMetrics(d.lfcMetrics),
    TargetRevision: revision(d.targetRevision),
    LastDesiredResources: resources(d.lastDesiredResources),
  };
}

/** A Runner's part of a pod dump. */
export function runnerJson(r: RunnerDump): Json {
  return {
    podIP: r.podIP,
    executorState: r.executorState === null ? null : coreStateJson(r.executorState),
    monitor: r.monitor,
    backgroundWorkerCount: r.backgroundWorkerCount,
  };
}

/** One pod of the dump, from the global state's own record of it. */
export function podJson(pod: PodDump): Json {
  const status = pod.status as Record<string, unknown> & { vmInfo: VmInfo };
  return {
    podName: pod.podName,
    status: { ...status, vmInfo: vmInfoJson(status.vmInfo) },
    ...(pod.runner === undefined ? {} : { runner: runnerJson(pod.runner) }),
    ...(pod.collectionError === undefined ? {} : { collectionError: pod.collectionError }),
  };
}
