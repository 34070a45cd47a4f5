/**
 * The pure scaling core of the autoscaler-agent: given what the executors report, it decides
 * what to ask the scheduler plugin, NeonVM and the vm-monitor next. No I/O, no clocks: time
 * comes in as epoch milliseconds.
 *
 * This export list is the whole contract: everything a caller may use, nothing else.
 *
 * @module
 */

export type {
  ActionMonitorDownscale,
  ActionMonitorUpscale,
  ActionNeonVMRequest,
  ActionPluginRequest,
  ActionSet,
  ActionWait,
  Allocation,
  ApiMetrics,
  Bytes,
  CoreConfig,
  CoreWarning,
  CoreWarningCode,
  DurationMs,
  LFCMetrics,
  LogConfig,
  MilliCPU,
  Millis,
  MoreResources,
  NeonVMPriority,
  ObservabilityCallbacks,
  ObserveCallback,
  PluginResponse,
  ResolvedScalingConfig,
  Resources,
  Revision,
  RevisionFlags,
  RevisionSource,
  RevisionWithTime,
  ScalingConfig,
  ScalingGoal,
  ScalingGoalParts,
  SystemMetrics,
  VmConfig,
  VmCpuInfo,
  VmInfo,
  VmMemInfo,
} from "./types.ts";
export { CoreInvariantError, RevisionFlag } from "./types.ts";
export {
  convertToAllocation,
  divResources,
  hasFieldGreaterThan,
  hasFieldLessThan,
  increaseFrom,
  resourcesAdd,
  resourcesEqual,
  resourcesMax,
  resourcesMin,
  resourcesMul,
  saturatingSub,
  validateNonZero,
} from "./resources.ts";
export { vmMax, vmMin, vmUsing, vmWithUsing } from "./vminfo.ts";
export { resolveScalingConfig, validateScalingConfig, withOverrides } from "./scaling_config.ts";
export {
  lfcMetricsSteps,
  parseLFCMetrics,
  parseSystemMetrics,
  type Sanitized,
  sanitizeLFCMetrics,
  sanitizeSystemMetrics,
  systemMetricsSteps,
  systemMetricsToApi,
} from "./metrics.ts";
export { runSteps } from "./prometheus_text.ts";
export { estimateTrueWorkingSetSize, projectNextHighest, type WssEstimatorConfig } from "./wss.ts";
export { calculateGoalCU, goalCU, MAX_GOAL_CU } from "./goalcu.ts";
export {
  DefaultRevisionSource,
  MAX_REVISIONS,
  NilRevisionSource,
  propagate,
  withTime,
} from "./revsource.ts";
export {
  type DesiredResourcesResult,
  type MonitorHandle,
  type MonitorRequestKind,
  type NeonVMHandle,
  type PluginHandle,
  State,
  type StateDump,
} from "./state.ts";
