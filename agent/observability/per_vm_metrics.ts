/**
 * Upkeep of the per-VM gauges for every VM on this node, whether or not
 * it has a Runner, driven synchronously by the VM watch.
 *
 * @module
 */

import type { VmMetricsObserver } from "../k8s/vm_watcher.ts";
import {
  ANNOTATION_BOUNDS,
  decodeBoundsAnnotation,
  LABEL_ENDPOINT_ID,
  LABEL_PROJECT_ID,
  type VirtualMachine,
} from "../k8s/vm.ts";
import type { PerVmMetrics } from "./metrics.ts";

type CommonLabels = {
  vm_namespace: string;
  vm_name: string;
  endpoint_id: string;
  project_id: string;
};

interface Sample {
  labels: Record<string, string>;
  value: number;
}

const DESIRED_COMPONENTS = ["total", "cpu", "mem", "lfc"] as const;

interface VmSeries {
  common: CommonLabels;
  cpu: Sample[];
  memory: Sample[];
  restartCount: number;
  extraIp: number;
  /**
   * The desired-CU value last set per component (null: removed), and the label set of each, so
   * that a recomputation touches only the gauges whose value moved.
   */
  desired?: Map<string, { labels: Record<string, string>; value: number | null }>;
}

function key(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

function seriesOf(vm: VirtualMachine): VmSeries {
  const common: CommonLabels = {
    vm_namespace: vm.metadata.namespace,
    vm_name: vm.metadata.name,
    endpoint_id: vm.metadata.labels[LABEL_ENDPOINT_ID] ?? "",
    project_id: vm.metadata.labels[LABEL_PROJECT_ID] ?? "",
  };
  const guest = vm.spec.guest;
  const slot = guest.memorySlotSize;
  const cpu: Sample[] = [
    { labels: { value: "spec_min" }, value: guest.cpus.min / 1000 },
    { labels: { value: "spec_max" }, value: guest.cpus.max / 1000 },
    { labels: { value: "spec_use" }, value: guest.cpus.use / 1000 },
  ];
  const memory: Sample[] = [
    { labels: { value: "spec_min" }, value: guest.memorySlots.min * slot },
    { labels: { value: "spec_max" }, value: guest.memorySlots.max * slot },
    { labels: { value: "spec_use" }, value: guest.memorySlots.use * slot },
  ];
  if (vm.status.cpus !== null) {
    cpu.push({ labels: { value: "status_use" }, value: vm.status.cpus / 1000 });
  }
  if (vm.status.memorySize !== null) {
    memory.push({ labels: { value: "status_use" }, value: vm.status.memorySize });
  }
  const annotation = vm.metadata.annotations[ANNOTATION_BOUNDS];
  if (annotation !== undefined) {
    const bounds = decodeBoundsAnnotation(annotation);
    if (bounds.ok) {
      cpu.push({ labels: { value: "autoscaling_min" }, value: bounds.value.min.cpu / 1000 });
      cpu.push({ labels: { value: "autoscaling_max" }, value: bounds.value.max.cpu / 1000 });
      memory.push({ labels: { value: "autoscaling_min" }, value: bounds.value.min.mem });
      memory.push({ labels: { value: "autoscaling_max" }, value: bounds.value.max.mem });
    }
  }
  return {
    common,
    cpu,
    memory,
    restartCount: vm.status.restartCount,
    extraIp: vm.status.extraNetIP !== "" ? 1 : 0,
  };
}

/** Keeps the per-VM registry in step with the VMs on `nodeName`. */
export class PerVmMetricsUpkeep implements VmMetricsObserver {
  readonly #metrics: PerVmMetrics;
  readonly #nodeName: string;
  readonly #cuMultiplier: number;
  readonly #active = new Map<string, VmSeries>();

  constructor(metrics: PerVmMetrics, nodeName: string, cuMultiplier: number) {
    this.#metrics = metrics;
    this.#nodeName = nodeName;
    this.#cuMultiplier = cuMultiplier;
  }

  add(vm: VirtualMachine): void {
    if (vm.status.node !== this.#nodeName) return;
    const series = seriesOf(vm);
    this.#set(series);
    this.#active.set(key(vm.metadata.namespace, vm.metadata.name), series);
  }

  update(oldVm: VirtualMachine, newVm: VirtualMachine): void {
    const k = key(newVm.metadata.namespace, newVm.metadata.name);
    const previous = this.#active.get(key(oldVm.metadata.namespace, oldVm.metadata.name));
    if (
      previous === undefined || newVm.status.node !== this.#nodeName ||
      previous.common.endpoint_id !== (newVm.metadata.labels[LABEL_ENDPOINT_ID] ?? "") ||
      previous.common.project_id !== (newVm.metadata.labels[LABEL_PROJECT_ID] ?? "")
    ) {
      this.delete(oldVm);
      this.add(newVm);
      return;
    }
    const next = seriesOf(newVm);
    const gone = (before: Sample[], after: Sample[]) =>
      before.filter((s) => !after.some((a) => a.labels.value === s.labels.value));
    for (const s of gone(previous.cpu, next.cpu)) {
      this.#metrics.cpuCores.remove({ ...previous.common, ...s.labels });
    }
    for (const s of gone(previous.memory, next.memory)) {
      this.#metrics.memoryBytes.remove({ ...previous.common, ...s.labels });
    }
    this.#set(next);
    this.#active.set(k, next);
  }

  delete(vm: VirtualMachine): void {
    const k = key(vm.metadata.namespace, vm.metadata.name);
    const series = this.#active.get(k);
    if (series === undefined) return;
    this.#active.delete(k);
    for (const s of series.cpu) this.#metrics.cpuCores.remove({ ...series.common, ...s.labels });
    for (const s of series.memory) {
      this.#metrics.memoryBytes.remove({ ...series.common, ...s.labels });
    }
    this.#metrics.restartCount.remove(series.common);
    this.#metrics.extraIp.remove(series.common);
    for (const component of ["total", "cpu", "mem", "lfc"]) {
      this.#metrics.desiredCU.remove({ ...series.common, component });
    }
  }

  /** Sets the desired-CU gauges of a VM still on this node; parts are CU, unscaled. */
  desiredCU(
    vm: { namespace: string; name: string },
    goalCU: number,
    parts: Record<string, number | null>,
  ): void {
    const series = this.#active.get(key(vm.namespace, vm.name));
    if (series === undefined) return;
    // Recomputed on every state change; usually one component moved, if any.
    let desired = series.desired;
    if (desired === undefined) {
      desired = new Map();
      for (const component of DESIRED_COMPONENTS) {
        desired.set(component, { labels: { ...series.common, component }, value: null });
      }
      series.desired = desired;
    }
    const m = this.#cuMultiplier;
    for (const component of DESIRED_COMPONENTS) {
      const part = component === "total" ? goalCU : parts[component] ?? null;
      const value = part === null ? null : part * m;
      const last = desired.get(component)!;
      if (value === last.value) continue;
      if (value === null) this.#metrics.desiredCU.remove(last.labels);
      else this.#metrics.desiredCU.set(last.labels, value);
      last.value = value;
    }
  }

  #set(series: VmSeries): void {
    for (const s of series.cpu) {
      this.#metrics.cpuCores.set({ ...series.common, ...s.labels }, s.value);
    }
    for (const s of series.memory) {
      this.#metrics.memoryBytes.set({ ...series.common, ...s.labels }, s.value);
    }
    this.#metrics.restartCount.set(series.common, series.restartCount);
    this.#metrics.extraIp.set(series.common, series.extraIp);
  }
}
