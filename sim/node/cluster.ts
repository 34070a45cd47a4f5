/**
 * The VMs of the simulated cluster: their VirtualMachine objects in the API model, their guests
 * and vm-monitors, and what happens to them besides scaling (deletion, migration to another node
 * and back, new bounds).
 *
 * Each VM's guest is shown the size its status reports, so a resize reaches the guest only once
 * the NeonVM controller has made it.
 *
 * @module
 */

import type { SeededRandom } from "../../lib/random.ts";
import type { JsonObject } from "../k8s/json.ts";
import { makeVirtualMachine } from "../k8s/objects.ts";
import type { StoreEvent } from "../k8s/store.ts";
import { encodeMilliCPU } from "../quantity.ts";
import type { Shape } from "../vm/workload.ts";
import type { SimContext } from "./context.ts";
import { specSize, statusSize } from "./controller.ts";
import { Guest } from "./guest.ts";
import type { KubeModel } from "./kube.ts";
import { type MonitorObserver, SimMonitor } from "./monitor.ts";

/** The node the agent runs on, and the one VMs migrate to. */
export const NODE = "sim-node";
export const OTHER_NODE = "sim-node-2";
export const NAMESPACE = "default";
export const SCHEDULER_NAME = "autoscale-scheduler";
export const GiB = 1024 ** 3;
/** 0.25 vCPU and 1 GiB. */
export const CU = { milliCpu: 250, memBytes: GiB } as const;

const ANNOTATION_BILLING_ENDPOINT = "autoscaling.neon.tech/billing-endpoint-id";
const ANNOTATION_BOUNDS = "autoscaling.neon.tech/bounds";
const ALIVE_PHASES = new Set(["Running", "PreMigrating", "Migrating", "Scaling"]);

/** Bounds in compute units. */
export interface CuBounds {
  min: number;
  max: number;
}

/** How one VM is made. */
export interface VmPlan {
  name: string;
  /** Compute units of the spec's bounds. */
  bounds: CuBounds;
  startCu: number;
  shape: Shape;
  /** Short description of the workload, for the trace. */
  workload: string;
}

/** One VM and everything inside it. */
export class SimVm {
  readonly name: string;
  readonly uid: string;
  readonly endpoint: string;
  readonly plan: VmPlan;
  readonly guest: Guest;
  readonly monitor: SimMonitor;
  podName = "";
  podIP = "";
  node = NODE;
  phase = "Running";
  deleted = false;

  constructor(
    plan: VmPlan,
    uid: string,
    endpoint: string,
    guest: Guest,
    monitor: SimMonitor,
  ) {
    this.name = plan.name;
    this.uid = uid;
    this.endpoint = endpoint;
    this.plan = plan;
    this.guest = guest;
    this.monitor = monitor;
  }

  get pod(): string {
    return `${NAMESPACE}/${this.podName}`;
  }

  /** The agent on {@link NODE} should run a Runner for it. */
  get ours(): boolean {
    return !this.deleted && this.node === NODE &&
      (this.phase === "Running" || this.phase === "PreMigrating");
  }

  /** Billed by the agent on {@link NODE}: alive there, whatever the migration phase. */
  get billable(): boolean {
    return !this.deleted && this.node === NODE && ALIVE_PHASES.has(this.phase);
  }
}

/** What the cluster tells the rest of the simulation. */
export interface ClusterObserver {
  /** A VM's stored object changed (or was deleted: `vm.deleted`). */
  changed(vm: SimVm, object: JsonObject | undefined): void;
  /** A VM's pod is gone (the VM got a new pod on migration, or was deleted). */
  podGone(pod: string): void;
}

/** Every VM of the cluster. */
export class NodeCluster {
  readonly vms = new Map<string, SimVm>();
  readonly #byIp = new Map<string, SimVm>();
  readonly #byPod = new Map<string, SimVm>();
  readonly #ctx: SimContext;
  readonly #kube: KubeModel;
  readonly #random: SeededRandom;
  readonly #monitorObserver: MonitorObserver;
  readonly #observer: ClusterObserver;
  #nextIp = 0;
  #nextPod = 0;

  constructor(
    ctx: SimContext,
    kube: KubeModel,
    monitorObserver: MonitorObserver,
    observer: ClusterObserver,
  ) {
    this.#ctx = ctx;
    this.#kube = kube;
    this.#random = ctx.fork();
    this.#monitorObserver = monitorObserver;
    this.#observer = observer;
    kube.store.subscribe((event) => this.#onEvent(event));
  }

  byIp(ip: string): SimVm | undefined {
    return this.#byIp.get(ip);
  }

  byPod(pod: string): SimVm | undefined {
    return this.#byPod.get(pod);
  }

  /** VMs that exist (not deleted), in creation order. */
  live(): SimVm[] {
    return [...this.vms.values()].filter((vm) => !vm.deleted);
  }

  #newPod(vm: SimVm): void {
    if (vm.podIP !== "") this.#byIp.delete(vm.podIP);
    if (vm.podName !== "") {
      this.#byPod.delete(vm.pod);
      this.#observer.podGone(vm.pod);
    }
    this.#nextIp++;
    this.#nextPod++;
    vm.podIP = `10.0.${Math.floor(this.#nextIp / 250) % 250}.${this.#nextIp % 250 + 1}`;
    vm.podName = `${vm.name}-${this.#nextPod.toString(36).padStart(5, "0")}`;
    this.#byIp.set(vm.podIP, vm);
    this.#byPod.set(vm.pod, vm);
  }

  /** Creates a VM on {@link NODE}. */
  create(plan: VmPlan): SimVm {
    const now = this.#ctx.clock.now();
    const uid = this.#random.uuid();
    const endpoint = `ep-${plan.name}-${uid.slice(0, 8)}`;
    const guest = new Guest(plan.shape, now, plan.startCu * CU.milliCpu, plan.startCu * GiB);
    const monitor = new SimMonitor(this.#ctx, this.#ctx.fork(), plan.name, {
      memoryDemand: () => guest.demandAt(this.#ctx.clock.now()).memory,
      allocation: () => ({ cpu: guest.milliCpu / 1000, mem: guest.memBytes }),
    }, this.#monitorObserver);
    const vm = new SimVm(plan, uid, endpoint, guest, monitor);
    this.vms.set(plan.name, vm);
    this.#newPod(vm);
    const object = makeVirtualMachine({
      name: plan.name,
      namespace: NAMESPACE,
      node: NODE,
      podIP: vm.podIP,
      podName: vm.podName,
      cpus: {
        min: plan.bounds.min * CU.milliCpu,
        max: plan.bounds.max * CU.milliCpu,
        use: plan.startCu * CU.milliCpu,
      },
      memorySlots: { min: plan.bounds.min, max: plan.bounds.max, use: plan.startCu },
      memorySlotSize: GiB,
      annotations: { [ANNOTATION_BILLING_ENDPOINT]: endpoint },
      schedulerName: SCHEDULER_NAME,
      createdAt: now,
      revision: { value: 0, flags: 0 },
    });
    (object.metadata as JsonObject).uid = uid;
    this.#ctx.trace.event("vm created", {
      vm: plan.name,
      bounds: `${plan.bounds.min}-${plan.bounds.max}`,
      cu: plan.startCu,
      workload: plan.workload,
    });
    this.#kube.store.create("virtualmachines", object);
    return vm;
  }

  delete(vm: SimVm): void {
    this.#ctx.trace.event("vm deleted", { vm: vm.name });
    this.#kube.store.delete("virtualmachines", NAMESPACE, vm.name);
  }

  /** Rewrites a VM's stored object through `edit` (what its controller or an operator does). */
  edit(vm: SimVm, edit: (object: JsonObject) => void): void {
    const stored = this.#kube.store.get("virtualmachines", NAMESPACE, vm.name);
    if (stored === undefined) return;
    const next = structuredClone(stored.value) as JsonObject;
    edit(next);
    this.#kube.store.write("virtualmachines", NAMESPACE, vm.name, next);
  }

  /** Moves a VM to the other node, or back: phases as a live migration goes through them. */
  migrate(vm: SimVm, to: string, done: () => void): void {
    this.#ctx.trace.event("vm migration", { vm: vm.name, to });
    const step = (phase: string, after: number, then: () => void) =>
      this.#ctx.clock.timer(after, () => {
        if (vm.deleted) return;
        this.edit(vm, (o) => ((o.status as JsonObject).phase = phase));
        then();
      });
    step(
      "PreMigrating",
      0,
      () =>
        step(
          "Migrating",
          this.#random.int(2000, 15_000),
          () =>
            this.#ctx.clock.timer(this.#random.int(5000, 30_000), () => {
              if (vm.deleted) {
                return;
              }
              this.#newPod(vm);
              this.edit(vm, (o) => {
                const status = o.status as JsonObject;
                status.phase = "Running";
                status.node = to;
                status.podName = vm.podName;
                status.podIP = vm.podIP;
              });
              done();
            }),
        ),
    );
  }

  /** New bounds (through the annotation) that still hold the VM's current size. */
  rebound(vm: SimVm): CuBounds | undefined {
    const stored = this.#kube.store.get("virtualmachines", NAMESPACE, vm.name);
    if (stored === undefined) return undefined;
    const spec = specSize(stored.value);
    const status = statusSize(stored.value);
    const units = [spec, status].flatMap((s) => [s.milliCpu / CU.milliCpu, s.memBytes / GiB]);
    const low = Math.min(...units);
    const high = Math.max(...units);
    const min = this.#random.int(vm.plan.bounds.min, Math.floor(low) + 1);
    const max = this.#random.int(Math.ceil(high), vm.plan.bounds.max + 1);
    const bounds = { min, max };
    this.#ctx.trace.event("vm bounds changed", { vm: vm.name, bounds: `${min}-${max}` });
    this.edit(vm, (o) => {
      const annotations = ((o.metadata as JsonObject).annotations ??= {}) as JsonObject;
      annotations[ANNOTATION_BOUNDS] = JSON.stringify({
        min: { cpu: encodeMilliCPU(min * CU.milliCpu), mem: `${min}Gi` },
        max: { cpu: encodeMilliCPU(max * CU.milliCpu), mem: `${max}Gi` },
      });
    });
    return bounds;
  }

  #onEvent(event: StoreEvent): void {
    if (event.resource !== "virtualmachines") return;
    const vm = this.vms.get(event.object.name);
    if (vm === undefined) return;
    if (event.type === "DELETED") {
      vm.deleted = true;
      this.#byIp.delete(vm.podIP);
      this.#byPod.delete(vm.pod);
      this.#observer.podGone(vm.pod);
      vm.monitor.drop();
      this.#observer.changed(vm, undefined);
      return;
    }
    const object = event.object.value;
    const status = object.status as JsonObject;
    vm.phase = status.phase as string;
    vm.node = status.node as string;
    const size = statusSize(object);
    if (size.milliCpu !== vm.guest.milliCpu || size.memBytes !== vm.guest.memBytes) {
      vm.guest.milliCpu = size.milliCpu;
      vm.guest.memBytes = size.memBytes;
      vm.monitor.checkMemory();
    }
    this.#observer.changed(vm, object);
  }
}
