/**
 * Factories for realistic objects: a NeonVM `VirtualMachine` as the API server serves it
 * and an autoscale-scheduler pod.
 */
import type { JsonObject } from "./json.ts";
import { encodeMilliCPU, formatK8sTime, formatQuantityBytes } from "../quantity.ts";

export interface Bounds {
  min: number;
  max: number;
  use: number;
}

export interface VirtualMachineOptions {
  name: string;
  namespace?: string;
  /** `status.node` (default "sim-node"). */
  node?: string;
  /** `status.podIP`; "" leaves the VM without an address. */
  podIP: string;
  /** Runner pod name (default derived from the VM name). */
  podName?: string;
  /** Milli-CPU (default min 250, max 1000, use 250). */
  cpus?: Bounds;
  /** Slot counts (default min 1, max 4, use 1). */
  memorySlots?: Bounds;
  /** Bytes per memory slot (default 1 GiB). */
  memorySlotSize?: number;
  /** Extra labels, merged over `autoscaling.neon.tech/enabled: "true"`. */
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** `neon/endpoint-id` label (default `ep-<name>`). */
  endpointId?: string;
  /** `spec.schedulerName` (default "autoscale-scheduler"). */
  schedulerName?: string;
  /** `status.phase` (default "Running"). */
  phase?: string;
  restartCount?: number;
  /** `spec.targetRevision` and `status.currentRevision` share this revision when set. */
  revision?: { value: number; flags: number };
  finalizers?: string[];
  /** creationTimestamp in ms (default: set by the store on create). */
  createdAt?: number;
}

/** A short, stable pod-name suffix, like the random ones the controller makes. */
function suffixFor(name: string): string {
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
  return hash.toString(36).padStart(5, "0").slice(-5);
}

export function makeVirtualMachine(options: VirtualMachineOptions): JsonObject {
  const cpus = options.cpus ?? { min: 250, max: 1000, use: 250 };
  const slots = options.memorySlots ?? { min: 1, max: 4, use: 1 };
  const slotSize = options.memorySlotSize ?? 1024 ** 3;
  const podName = options.podName ?? `${options.name}-${suffixFor(options.name)}`;
  const metadata: JsonObject = {
    name: options.name,
    namespace: options.namespace ?? "default",
    labels: {
      "autoscaling.neon.tech/enabled": "true",
      "neon/endpoint-id": options.endpointId ?? `ep-${options.name}`,
      ...options.labels,
    },
    annotations: { ...options.annotations },
  };
  if (options.finalizers !== undefined) metadata.finalizers = [...options.finalizers];
  if (options.createdAt !== undefined) {
    metadata.creationTimestamp = formatK8sTime(options.createdAt);
  }
  const spec: JsonObject = {
    schedulerName: options.schedulerName ?? "autoscale-scheduler",
    cpuScalingMode: "SysfsScaling",
    restartPolicy: "Always",
    guest: {
      cpus: {
        min: encodeMilliCPU(cpus.min),
        max: encodeMilliCPU(cpus.max),
        use: encodeMilliCPU(cpus.use),
      },
      memorySlotSize: formatQuantityBytes(slotSize),
      memorySlots: { min: slots.min, max: slots.max, use: slots.use },
      rootDisk: { image: "vm-postgres:16-bullseye", size: "8Gi", imagePullPolicy: "IfNotPresent" },
      ports: [
        { name: "postgres", port: 5432, protocol: "TCP" },
        { name: "host-metrics", port: 9100, protocol: "TCP" },
        { name: "monitor", port: 10301, protocol: "TCP" },
      ],
    },
  };
  const status: JsonObject = {
    phase: options.phase ?? "Running",
    restartCount: options.restartCount ?? 0,
    podName,
    podIP: options.podIP,
    node: options.node ?? "sim-node",
    cpus: encodeMilliCPU(cpus.use),
    memorySize: formatQuantityBytes(slots.use * slotSize),
    conditions: [{
      type: "Available",
      status: "True",
      reason: "Reconciling",
      message: `Pod (${podName}) for VirtualMachine (${options.name}) created successfully`,
      lastTransitionTime: formatK8sTime(options.createdAt ?? Date.now()),
    }],
  };
  if (options.revision !== undefined) {
    const updatedAt = formatK8sTime(options.createdAt ?? Date.now());
    spec.targetRevision = { revision: { ...options.revision }, updatedAt };
    status.currentRevision = { revision: { ...options.revision }, updatedAt };
  }
  return { apiVersion: "vm.neon.tech/v1", kind: "VirtualMachine", metadata, spec, status };
}

export interface SchedulerPodOptions {
  name: string;
  /** The fake plugin's address. */
  podIP: string;
  namespace?: string;
  /** Value of the `name` label (default "autoscale-scheduler"). */
  schedulerName?: string;
  nodeName?: string;
  ready?: boolean;
  /** creationTimestamp in ms (default: set by the store on create). */
  createdAt?: number;
}

export function makeSchedulerPod(options: SchedulerPodOptions): JsonObject {
  const schedulerName = options.schedulerName ?? "autoscale-scheduler";
  const metadata: JsonObject = {
    name: options.name,
    namespace: options.namespace ?? "kube-system",
    labels: { name: schedulerName },
  };
  if (options.createdAt !== undefined) {
    metadata.creationTimestamp = formatK8sTime(options.createdAt);
  }
  const pod: JsonObject = {
    apiVersion: "v1",
    kind: "Pod",
    metadata,
    spec: {
      nodeName: options.nodeName ?? "sim-control-plane",
      serviceAccountName: schedulerName,
      containers: [{
        name: schedulerName,
        image: "neondatabase/autoscale-scheduler:sim",
        ports: [{ name: "plugin", containerPort: 10299, protocol: "TCP" }],
      }],
    },
    status: {
      phase: "Running",
      podIP: options.podIP,
      podIPs: [{ ip: options.podIP }],
      conditions: [],
      containerStatuses: [{ name: schedulerName, ready: false, restartCount: 0, started: true }],
    },
  };
  setPodReady(pod, options.ready ?? true);
  return pod;
}

/** Sets a pod's Ready and ContainersReady conditions and its containers' `ready` flags. */
export function setPodReady(pod: JsonObject, ready: boolean): void {
  const status = (pod.status ??= {}) as JsonObject;
  const value = ready ? "True" : "False";
  const conditions = (Array.isArray(status.conditions) ? status.conditions : []) as JsonObject[];
  const others = conditions.filter((c) => c.type !== "Ready" && c.type !== "ContainersReady");
  status.conditions = [
    ...others,
    { type: "Ready", status: value },
    { type: "ContainersReady", status: value },
  ];
  if (Array.isArray(status.containerStatuses)) {
    for (const container of status.containerStatuses as JsonObject[]) container.ready = ready;
  }
}
