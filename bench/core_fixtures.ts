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

/** The deployed defaults. */
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

/** The size of the VM a metrics page describes; each item adds its own families' samples. */
export interface VectorPageShape {
  cpus: number;
  disks: number;
  interfaces: number;
  filesystems: number;
}

/**
 * A host-metrics page as vector's prometheus exporter writes it (HELP that repeats the name,
 * millisecond timestamps): the five families the agent reads among the many it ignores.
 */
export function vectorHostMetricsPage(shape: VectorPageShape): string {
  const out: string[] = [];
  const family = (name: string, type: string, samples: [string, number][]) => {
    out.push(`# HELP ${name} ${name}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) {
      out.push(`${name}{${labels}host="compute-x7k2p"} ${value} 1727093100000`);
    }
  };
  const each = (n: number, label: (i: number) => string, value: (i: number) => number) =>
    Array.from({ length: n }, (_, i): [string, number] => [label(i), value(i)]);
  const modes = ["idle", "io_wait", "nice", "system", "user"];
  family(
    "host_cpu_seconds_total",
    "counter",
    each(
      shape.cpus * modes.length,
      (i) => `collector="cpu",cpu="${Math.floor(i / modes.length)}",mode="${modes[i % 5]}",`,
      (i) => 1000 + i * 37.25,
    ),
  );
  for (const [name, value] of [["host_load1", 0.85], ["host_load5", 0.7], ["host_load15", 0.5]]) {
    family(name as string, "gauge", [['collector="loadavg",', value as number]]);
  }
  const memory: [string, number][] = [
    ["active", 402653184],
    ["available", 1503238553],
    ["buffers", 20971520],
    ["cached", 402653184],
    ["free", 1100585369],
    ["inactive", 302653184],
    ["total", 2079563776],
  ];
  for (const [what, value] of memory) {
    family(`host_memory_${what}_bytes`, "gauge", [['collector="memory",', value]]);
  }
  const perDevice = (prefix: string, collector: string, metrics: string[], devices: number) => {
    for (const metric of metrics) {
      family(
        `${prefix}_${metric}_total`,
        "counter",
        each(devices, (d) => `collector="${collector}",device="dev${d}",`, (d) => 12345678 + d),
      );
    }
  };
  perDevice("host_disk", "disk", ["read_bytes", "written_bytes"], shape.disks);
  perDevice("host_network", "network", ["receive_bytes", "transmit_bytes"], shape.interfaces);
  for (const metric of ["free_bytes", "total_bytes", "used_ratio"]) {
    family(
      `host_filesystem_${metric}`,
      "gauge",
      each(
        shape.filesystems,
        (f) => `collector="filesystem",device="/dev/vd${f}",filesystem="ext4",mountpoint="/m${f}",`,
        (f) => 1e9 + f,
      ),
    );
  }
  family("host_uptime", "gauge", [['collector="host",', 86400]]);
  return out.join("\n") + "\n";
}
