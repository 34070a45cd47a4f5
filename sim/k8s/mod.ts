/** The fake Kubernetes API server and what comes with it. */
export { FakeKubeApi, type FakeKubeApiOptions } from "./server.ts";
export {
  NeonVmController,
  type NeonVmControllerOptions,
  type Refusal,
  type TimerId,
  type Timers,
} from "./neonvm_controller.ts";
export {
  type Bounds,
  makeSchedulerPod,
  makeVirtualMachine,
  type SchedulerPodOptions,
  setPodReady,
  type VirtualMachineOptions,
} from "./objects.ts";
export { type KubeconfigOptions, kubeconfigYaml } from "./kubeconfig.ts";
export type { Resource } from "./resources.ts";
export type { EventType, RetentionOptions, StoreEvent, StoreListener } from "./store.ts";
export type { PatchRecord, RequestRecord } from "./records.ts";
export type { FailureOptions, Verb } from "./faults.ts";
export type { Json, JsonObject } from "./json.ts";
export { ApiError } from "./status.ts";
