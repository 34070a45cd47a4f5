/**
 * Domain types shared by the whole core.
 *
 * @module
 */

/** Epoch milliseconds. */
export type Millis = number;
/** Duration in milliseconds. */
export type DurationMs = number;
/** Thousandths of a vCPU (non-negative integer; 1000 = 1 vCPU). */
export type MilliCPU = number;
/** Byte count (non-negative integer, < 2^53). */
export type Bytes = number;

/** An amount of CPU and memory. */
export interface Resources {
  vCPU: MilliCPU;
  mem: Bytes;
}

/** Which resources the vm-monitor asked to grow. */
export interface MoreResources {
  cpu: boolean;
  memory: boolean;
}

/** vm-monitor wire representation of an allocation. */
export interface Allocation {
  /** vCPUs as a float (milli / 1000). */
  cpu: number;
  mem: Bytes;
}

/** Bitmask of RevisionFlag values. */
export type RevisionFlags = number;

/** Bits of {@link RevisionFlags}: how the desired resources moved when a revision was drawn. */
export const RevisionFlag = { upscale: 1, downscale: 2 } as const;

/** A tag on a desired configuration, so that its propagation can be timed. */
export interface Revision {
  value: number;
  flags: RevisionFlags;
}

/** A revision with the time it was produced or observed. */
export interface RevisionWithTime extends Revision {
  updatedAt: Millis;
}

/** Per-field optional scaling knobs (null/undefined = not set). */
export interface ScalingConfig {
  loadAverageFractionTarget?: number | null;
  memoryUsageFractionTarget?: number | null;
  memoryTotalFractionTarget?: number | null;
  enableLFCMetrics?: boolean | null;
  lfcUseLargestWindow?: boolean | null;
  lfcToMemoryRatio?: number | null;
  lfcMinWaitBeforeDownscaleMinutes?: number | null;
  lfcWindowSizeMinutes?: number | null;
  cpuStableZoneRatio?: number | null;
  cpuMixedZoneRatio?: number | null;
}

/** A ScalingConfig with every field present (result of merging onto complete defaults). */
export interface ResolvedScalingConfig {
  loadAverageFractionTarget: number;
  memoryUsageFractionTarget: number;
  memoryTotalFractionTarget: number;
  enableLFCMetrics: boolean;
  lfcUseLargestWindow: boolean;
  lfcToMemoryRatio: number;
  lfcMinWaitBeforeDownscaleMinutes: number;
  lfcWindowSizeMinutes: number;
  cpuStableZoneRatio: number;
  cpuMixedZoneRatio: number;
}

/** CPU bounds and allocation of a VM, in milli-CPU. */
export interface VmCpuInfo {
  min: MilliCPU;
  max: MilliCPU;
  use: MilliCPU;
}

/** Memory bounds and allocation of a VM, in memory slots. */
export interface VmMemInfo {
  /** Slot counts (0..65535). */
  min: number;
  max: number;
  use: number;
  slotSize: Bytes;
}

/** Per-VM settings taken from labels and annotations. */
export interface VmConfig {
  autoMigrationEnabled: boolean;
  alwaysMigrate: boolean;
  /** Ignored by core. */
  scalingEnabled: boolean;
  scalingConfig: ScalingConfig | null;
}

/** What the core knows about a VM. */
export interface VmInfo {
  name: string;
  namespace: string;
  cpu: VmCpuInfo;
  mem: VmMemInfo;
  config: VmConfig;
  currentRevision: RevisionWithTime | null;
}

/** Load and memory figures from the VM's host metrics. */
export interface SystemMetrics {
  loadAverage1Min: number;
  loadAverage5Min: number;
  memoryUsageBytes: number;
  memoryCachedBytes: number;
}

/** Local file cache figures from the compute's LFC exporter. */
export interface LFCMetrics {
  cacheHitsTotal: number;
  cacheMissesTotal: number;
  cacheWritesTotal: number;
  /** Index i = working-set size (8 KiB pages) over the last i+1 minutes. */
  approximateWorkingSetSizeBuckets: number[];
}

/** Metrics attached to scheduler requests (protocol v5: only loadAvg1M, float32-rounded). */
export interface ApiMetrics {
  loadAvg1M: number;
}

/** The scheduler plugin's answer to a request. */
export interface PluginResponse {
  permit: Resources;
  /** Presence = the scheduler will migrate the VM; ignored by core. */
  migrate?: Record<string, never> | null;
}

/** Call `nextActions` again after this long if nothing else happens. */
export interface ActionWait {
  duration: DurationMs;
}

/** Ask the scheduler plugin for `target` (or tell it about a shrink). */
export interface ActionPluginRequest {
  lastPermit: Resources | null;
  target: Resources;
  metrics: ApiMetrics | null;
  targetRevision: RevisionWithTime;
}

/**
 * How soon a patch must go out when patches queue for the API server's rate limit: `urgent` for
 * growth the vm-monitor asked for (the VM is short of memory) and has not got yet, `upscale` for
 * any other growth, `normal` for a shrink or a patch that only moves one resource down.
 */
export type NeonVMPriority = "urgent" | "upscale" | "normal";

/** Patch the VirtualMachine object from `current` to `target`. */
export interface ActionNeonVMRequest {
  current: Resources;
  target: Resources;
  targetRevision: RevisionWithTime;
  priority: NeonVMPriority;
}

/** Ask the vm-monitor whether the VM may shrink to `target`. */
export interface ActionMonitorDownscale {
  current: Resources;
  target: Resources;
  targetRevision: RevisionWithTime;
}

/** Tell the vm-monitor the VM grew to `target`. */
export interface ActionMonitorUpscale {
  current: Resources;
  target: Resources;
  targetRevision: RevisionWithTime;
}

/** Absent members are omitted (never present with value undefined). */
export interface ActionSet {
  wait?: ActionWait;
  pluginRequest?: ActionPluginRequest;
  neonvmRequest?: ActionNeonVMRequest;
  monitorDownscale?: ActionMonitorDownscale;
  monitorUpscale?: ActionMonitorUpscale;
}

/** Machine-readable warning codes. */
export type CoreWarningCode =
  | "incompleteMetrics"
  | "insufficientWssData"
  | "deniedDownscaleExceedsMax"
  | "pluginOngoingRequestDiffers"
  | "pluginFailedTooRecently"
  | "pluginDeniedTooRecently"
  | "neonvmFailedTooRecently"
  | "neonvmBlocked"
  | "monitorUpscaleBlocked"
  | "monitorUpscaleFailedTooRecently"
  | "monitorDownscaleNoConnection"
  | "monitorDownscaleBlockedByPlannedUpscale"
  | "monitorDownscaleBlocked"
  | "monitorDownscaleFailedTooRecently"
  | "revisionObserveFailed"
  | "monitorApprovedAboveUsage";

/** A warning emitted while computing or updating state. */
export interface CoreWarning {
  code: CoreWarningCode;
  /** Human-readable; wording is not part of the contract. */
  message: string;
}

/** Logging callbacks supplied by the caller. */
export interface LogConfig {
  info?: ((message: string, fields: Record<string, unknown>) => void) | null;
  warn?: ((warning: CoreWarning) => void) | null;
}

/** Receives a measured latency and the flags of the revision it belongs to. */
export type ObserveCallback = (latency: DurationMs, flags: RevisionFlags) => void;

/** The goal in compute units per input; null = no input for it. */
export interface ScalingGoalParts {
  cpu: number | null;
  mem: number | null;
  lfc: number | null;
}

/** Result of the goal-CU computation. */
export interface ScalingGoal {
  hasAllMetrics: boolean;
  parts: ScalingGoalParts;
}

/** Hooks for latency histograms and scaling events. */
export interface ObservabilityCallbacks {
  pluginLatency?: ObserveCallback | null;
  monitorLatency?: ObserveCallback | null;
  neonvmLatency?: ObserveCallback | null;
  /** Called from neonvm().startingRequest when both sides are whole CU counts. */
  actualScaling?: ((timestamp: Millis, currentCU: number, targetCU: number) => void) | null;
  /** Called on every desired-resources computation with complete metrics and whole-CU usage. */
  hypotheticalScaling?:
    | ((timestamp: Millis, currentCU: number, goalCU: number, parts: ScalingGoalParts) => void)
    | null;
}

/** Generates revisions and observes their arrival. */
export interface RevisionSource {
  next(now: Millis, flags: RevisionFlags): Revision;
  /** Returns an Error (does not throw) when the revision cannot be matched. */
  observe(moment: Millis, rev: Revision): Error | null;
}

/** Everything the core needs to know besides the VM. */
export interface CoreConfig {
  computeUnit: Resources;
  /** Must be complete (all fields set); lfcUseLargestWindow defaults to false if absent. */
  defaultScalingConfig: ScalingConfig;
  neonVMRetryWait: DurationMs;
  pluginRequestTick: DurationMs;
  pluginRetryWait: DurationMs;
  pluginDeniedRetryWait: DurationMs;
  monitorDeniedDownscaleCooldown: DurationMs;
  monitorRequestedUpscaleValidPeriod: DurationMs;
  monitorRetryWait: DurationMs;
  log?: LogConfig | null;
  revisionSource: RevisionSource;
  observabilityCallbacks?: ObservabilityCallbacks | null;
}

/** Thrown on violated internal invariants / caller preconditions. */
export class CoreInvariantError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CoreInvariantError";
  }
}
