/** Shared fixtures for the core tests: the baseline configuration of the reference's tests. */

import assert from "node:assert/strict";
import {
  type CoreConfig,
  type CoreWarning,
  type CoreWarningCode,
  NilRevisionSource,
  type Resources,
  type RevisionSource,
  State,
  type SystemMetrics,
  type VmInfo,
} from "../../core/mod.ts";

export const GiB = 1024 * 1024 * 1024;
export const CU: Resources = { vCPU: 250, mem: GiB };

/** `n` compute units. */
export function cu(n: number): Resources {
  return { vCPU: 250 * n, mem: GiB * n };
}

export function res(vCPU: number, memGiB: number): Resources {
  return { vCPU, mem: memGiB * GiB };
}

export function baselineConfig(overrides: Partial<CoreConfig> = {}): CoreConfig {
  return {
    computeUnit: { ...CU },
    defaultScalingConfig: {
      loadAverageFractionTarget: 0.5,
      memoryUsageFractionTarget: 0.5,
      memoryTotalFractionTarget: 0.9,
      enableLFCMetrics: false,
      lfcUseLargestWindow: false,
      lfcToMemoryRatio: 0.75,
      lfcWindowSizeMinutes: 5,
      lfcMinWaitBeforeDownscaleMinutes: 15,
      cpuStableZoneRatio: 0,
      cpuMixedZoneRatio: 0,
    },
    neonVMRetryWait: 5000,
    pluginRequestTick: 5000,
    pluginRetryWait: 3000,
    pluginDeniedRetryWait: 2000,
    monitorDeniedDownscaleCooldown: 5000,
    monitorRequestedUpscaleValidPeriod: 10000,
    monitorRetryWait: 3000,
    revisionSource: new NilRevisionSource(),
    ...overrides,
  };
}

export interface VmShape {
  cpu?: { min: number; max: number; use: number };
  /** Slot counts; slot size 1 GiB unless `slotSize` is given. */
  mem?: { min: number; max: number; use: number };
  slotSize?: number;
}

export function makeVm(shape: VmShape = {}): VmInfo {
  const cpu = shape.cpu ?? { min: 250, max: 1000, use: 250 };
  const mem = shape.mem ?? { min: 1, max: 4, use: 1 };
  return {
    name: "vm",
    namespace: "default",
    cpu: { ...cpu },
    mem: { ...mem, slotSize: shape.slotSize ?? GiB },
    config: {
      autoMigrationEnabled: false,
      alwaysMigrate: false,
      scalingEnabled: true,
      scalingConfig: null,
    },
    currentRevision: null,
  };
}

/** Metrics that make the goal exactly `cpuCU` from load and `memCU` from memory. */
export function metricsFor(load1: number, memUsageGiB = 0.25): SystemMetrics {
  return {
    loadAverage1Min: load1,
    loadAverage5Min: 0,
    memoryUsageBytes: memUsageGiB * GiB,
    memoryCachedBytes: 0,
  };
}

/**
 * Load average giving a CPU goal of `n` CU under the baseline (LAFT 0.5, CU 0.25 vCPU):
 * cpu = load1 / 0.5 / 0.25.
 */
export function loadForCU(n: number): number {
  return n * 0.125;
}

export interface Harness {
  state: State;
  config: CoreConfig;
  warnings: CoreWarning[];
  /** Warning codes since the last call, then forgets them. */
  takeWarnings(): CoreWarningCode[];
}

export function harness(
  vm: VmInfo = makeVm(),
  overrides: Partial<CoreConfig> = {},
  revisionSource?: RevisionSource,
): Harness {
  const warnings: CoreWarning[] = [];
  const config = baselineConfig({
    log: { warn: (w) => warnings.push(w) },
    ...(revisionSource ? { revisionSource } : {}),
    ...overrides,
  });
  const state = new State(vm, config);
  return {
    state,
    config,
    warnings,
    takeWarnings() {
      const codes = warnings.map((w) => w.code);
      warnings.length = 0;
      return codes;
    },
  };
}

/** The zero revision stamped at `t`, as actions carry it with a NilRevisionSource. */
export function rev0(t: number) {
  return { value: 0, flags: 0, updatedAt: t };
}

/** A working-set series of 20 one-minute windows, in 8 KiB pages. */
export const WSS20 = [
  0,
  15000,
  30000,
  40000,
  50000,
  150000,
  175000,
  180000,
  185000,
  190000,
  250000,
  300000,
  350000,
  375000,
  400000,
  415000,
  425000,
  430000,
  435000,
  435000,
];

/** Runs the plugin request the state proposes at `t` and grants `permit` (default: all of it). */
export function grantPlugin(h: Harness, t: number, permit?: Resources): void {
  const a = h.state.nextActions(t);
  assert.ok(a.pluginRequest, `expected a plugin request at ${t}`);
  h.state.plugin().startingRequest(t, a.pluginRequest.target);
  assert.equal(
    h.state.plugin().requestSuccessful(t, a.pluginRequest.targetRevision, {
      permit: permit ?? a.pluginRequest.target,
    }),
    null,
  );
  h.takeWarnings();
}
