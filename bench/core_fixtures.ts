/** Realistic core states shared by the core benchmarks. */

import {
  type CoreConfig,
  DefaultRevisionSource,
  type LFCMetrics,
  type ResolvedScalingConfig,
  State,
  type SystemMetrics,
  type VmInfo,
} from "../core/mod.ts";

const GiB = 1024 ** 3;

/** The deployed defaults (core.md 13.1). */
export function deployedConfig(): CoreConfig {
  return {
    computeUnit: { vCPU: 250, mem: GiB },
    defaultScalingConfig: deployedScaling(),
    neonVMRetryWait: 5000,
    pluginRequestTick: 14950,
    pluginRetryWait: 3000,
    pluginDeniedRetryWait: 2000,
    monitorDeniedDownscaleCooldown: 5000,
    monitorRequestedUpscaleValidPeriod: 10000,
    monitorRetryWait: 3000,
    log: { warn: () => {}, info: null },
    revisionSource: new DefaultRevisionSource(0),
    observabilityCallbacks: {
      pluginLatency: () => {},
      monitorLatency: () => {},
      neonvmLatency: () => {},
      hypotheticalScaling: () => {},
    },
  };
}

export function deployedScaling(lfc = false): ResolvedScalingConfig {
  return {
    loadAverageFractionTarget: 0.9,
    memoryUsageFractionTarget: 0.75,
    memoryTotalFractionTarget: 0.9,
    enableLFCMetrics: lfc,
    lfcUseLargestWindow: false,
    lfcToMemoryRatio: 0.75,
    lfcMinWaitBeforeDownscaleMinutes: 5,
    lfcWindowSizeMinutes: 5,
    cpuStableZoneRatio: 0,
    cpuMixedZoneRatio: 0,
  };
}

export function vm(lfc: boolean): VmInfo {
  return {
    name: "bench",
    namespace: "default",
    cpu: { min: 250, max: 4000, use: 1000 },
    mem: { min: 1, max: 16, use: 4, slotSize: GiB },
    config: {
      autoMigrationEnabled: false,
      alwaysMigrate: false,
      scalingEnabled: true,
      scalingConfig: lfc ? { enableLFCMetrics: true } : null,
    },
    currentRevision: null,
  };
}

export const systemMetrics: SystemMetrics = {
  loadAverage1Min: 0.85,
  loadAverage5Min: 0.7,
  memoryUsageBytes: 2.2 * GiB,
  memoryCachedBytes: 1.1 * GiB,
};

/** 60 one-minute windows growing like a real working set. */
export const lfcMetrics: LFCMetrics = {
  cacheHitsTotal: 123456,
  cacheMissesTotal: 789,
  cacheWritesTotal: 4567,
  approximateWorkingSetSizeBuckets: Array.from(
    { length: 60 },
    (_, i) => Math.round(40000 + 9000 * Math.sqrt(i + 1) + (i > 40 ? 2000 * (i - 40) : 0)),
  ),
};

/** A connected VM at its steady size: the call every Runner makes most often. */
export function steadyState(lfc: boolean): State {
  const state = new State(vm(lfc), deployedConfig());
  state.monitor().active(true);
  state.updateSystemMetrics(systemMetrics);
  if (lfc) state.updateLFCMetrics(lfcMetrics);
  const first = state.nextActions(0);
  if (first.pluginRequest) {
    state.plugin().startingRequest(0, first.pluginRequest.target);
    state.plugin().requestSuccessful(5, first.pluginRequest.targetRevision, {
      permit: { vCPU: 4000, mem: 16 * GiB },
    });
  }
  return state;
}
