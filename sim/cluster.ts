/**
 * A simulated node full of VMs, started and stopped as one: the fake Kubernetes API with its
 * NeonVM controller, one {@link FakeVm} per VirtualMachine (metrics endpoints and vm-monitor on
 * the VM's own loopback address), the scheduler plugin with its scheduler pod, and optionally
 * the billing collector.
 *
 * When the controller writes a VM's new size into its status, the VM's guest sees it: the
 * metrics and the monitor report the new allocation from then on.
 *
 * @module
 */

import { BillingCollector } from "./billing/collector.ts";
import {
  FakeKubeApi,
  type FakeKubeApiOptions,
  makeSchedulerPod,
  makeVirtualMachine,
} from "./k8s/mod.ts";
import type { Bounds } from "./k8s/objects.ts";
import type { StoreEvent } from "./k8s/store.ts";
import type { JsonObject } from "./k8s/json.ts";
import { SchedulerPlugin } from "./plugin/scheduler_plugin.ts";
import { decodeBytes, decodeMilliCPU } from "./quantity.ts";
import { DEFAULT_VM_PORTS, FakeVm, type FakeVmOptions, vmAddress } from "./vm/fake_vm.ts";
import { constant, type Workload } from "./vm/workload.ts";

/** The node the simulated VMs run on. */
export const SIM_NODE = "sim-node";
/** Loopback addresses a cluster may use: the API on 127.0.0.1, the plugin on 127.0.0.2–250. */
const PLUGIN_HOSTS = 249;
/** VMs get 127.0.x.y from a random start, so parallel clusters rarely meet (and skip if so). */
const VM_ADDRESS_SPACE = 254 * 250;

function randomInt(n: number): number {
  return Math.floor(Math.random() * n);
}

function isAddrInUse(err: unknown): boolean {
  return err instanceof Deno.errors.AddrInUse;
}

/** One simulated VM. */
export interface VmSpec {
  name: string;
  namespace?: string;
  /** Milli-CPU bounds and use (default 250 / 1000 / 250). */
  cpus?: Bounds;
  /** Memory slot bounds and use (default 1 / 4 / 1). */
  memorySlots?: Bounds;
  /** Bytes per slot (default 1 GiB). */
  memorySlotSize?: number;
  workload?: Workload;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** The node it runs on (default {@link SIM_NODE}). */
  node?: string;
  /** vm-monitor settings of this VM's fake monitor. */
  monitor?: FakeVmOptions["monitor"];
}

/** Options of {@link Cluster.start}. */
export interface ClusterOptions {
  /** VMs to create at start: a count of idle default VMs (`vm-0`, `vm-1`, …) or specs. */
  vms?: number | VmSpec[];
  /** Ports every VM listens on at its own address (default 9100 / 9499 / 10301). */
  vmPorts?: Partial<VmPorts>;
  /** The scheduler plugin's port (default 10299). */
  pluginPort?: number;
  /** Room on the node for the plugin's permits (default unlimited). */
  nodeCapacity?: { milliCpu: number; memBytes: number };
  /** NeonVM controller step delays in ms (default 35 each, ~100 ms per resize). */
  controllerStepMs?: number;
  /** Start a billing collector too. */
  billingCollector?: boolean;
  /** Where to write the kubeconfig file (default a new temporary file). */
  kubeconfigPath?: string;
  /** More settings of the API server (its clock, bookmark period, watch lifetimes, ...). */
  api?: Omit<FakeKubeApiOptions, "controller">;
}

/** The ports every VM listens on at its own address. */
export type VmPorts = Record<keyof typeof DEFAULT_VM_PORTS, number>;

function vmKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

/** The plugin on a free 127.0.0.x address (its port is the same for every cluster). */
function startPlugin(options: ClusterOptions): SchedulerPlugin {
  const first = randomInt(PLUGIN_HOSTS);
  for (let i = 0;; i++) {
    const plugin = new SchedulerPlugin({
      hostname: `127.0.0.${2 + (first + i) % PLUGIN_HOSTS}`,
      port: options.pluginPort ?? 10299,
      autoRegister: true,
      nodeCapacity: options.nodeCapacity,
    });
    try {
      plugin.start();
      return plugin;
    } catch (err) {
      if (!isAddrInUse(err) || i >= PLUGIN_HOSTS) throw err;
    }
  }
}

/** A running simulated cluster. */
export class Cluster {
  readonly api: FakeKubeApi;
  readonly plugin: SchedulerPlugin;
  readonly collector: BillingCollector | null;
  readonly vms = new Map<string, FakeVm>();
  readonly kubeconfigPath: string;
  readonly #vmPorts: VmPorts;
  #nextAddress = randomInt(VM_ADDRESS_SPACE);
  #unsubscribe: () => void = () => {};

  private constructor(
    api: FakeKubeApi,
    plugin: SchedulerPlugin,
    collector: BillingCollector | null,
    kubeconfigPath: string,
    vmPorts: VmPorts,
  ) {
    this.api = api;
    this.plugin = plugin;
    this.collector = collector;
    this.kubeconfigPath = kubeconfigPath;
    this.#vmPorts = vmPorts;
  }

  /** Starts every party and creates the initial VMs. */
  static async start(options: ClusterOptions = {}): Promise<Cluster> {
    const step = options.controllerStepMs ?? 35;
    const api = new FakeKubeApi({
      ...options.api,
      controller: { enabled: true, scalingDelayMs: step, resizeDelayMs: step, stepDelayMs: step },
    });
    await api.start();
    let collector: BillingCollector | null = null;
    let plugin: SchedulerPlugin | undefined;
    try {
      plugin = startPlugin(options);
      if (options.billingCollector) {
        collector = new BillingCollector();
        await collector.start();
      }
    } catch (err) {
      await plugin?.stop();
      await api.close();
      throw err;
    }
    const kubeconfigPath = options.kubeconfigPath ??
      await Deno.makeTempFile({ prefix: "sim-kubeconfig-", suffix: ".yaml" });
    await Deno.writeTextFile(kubeconfigPath, api.kubeconfig());
    const cluster = new Cluster(api, plugin, collector, kubeconfigPath, {
      ...DEFAULT_VM_PORTS,
      ...options.vmPorts,
    });
    cluster.#unsubscribe = api.onEvent((event) => cluster.#onEvent(event));
    api.create("pods", makeSchedulerPod({ name: "autoscale-scheduler-0", podIP: plugin.hostname }));
    const specs = typeof options.vms === "number"
      ? Array.from({ length: options.vms }, (_, i) => ({ name: `vm-${i}` }))
      : options.vms ?? [];
    try {
      for (const spec of specs) cluster.addVm(spec);
    } catch (err) {
      await cluster.close();
      throw err;
    }
    return cluster;
  }

  /** The VM ports, as the agent's `metrics`/`monitor` config must name them. */
  get vmPorts(): VmPorts {
    return { ...this.#vmPorts };
  }

  /** Creates a VirtualMachine and starts its guest on the next free loopback address. */
  addVm(spec: VmSpec): FakeVm {
    const namespace = spec.namespace ?? "default";
    const key = vmKey(namespace, spec.name);
    if (this.vms.has(key)) throw new Error(`VM ${key} already exists`);
    const cpus = spec.cpus ?? { min: 250, max: 1000, use: 250 };
    const memorySlots = spec.memorySlots ?? { min: 1, max: 4, use: 1 };
    const slotSize = spec.memorySlotSize ?? 1024 ** 3;
    const vm = this.#bootGuest(spec, { milliCpu: cpus.use, memBytes: memorySlots.use * slotSize });
    const ip = vm.ip;
    this.vms.set(key, vm);
    this.api.create(
      "virtualmachines",
      makeVirtualMachine({
        name: spec.name,
        namespace,
        podIP: ip,
        node: spec.node ?? SIM_NODE,
        cpus,
        memorySlots,
        memorySlotSize: slotSize,
        labels: spec.labels,
        annotations: spec.annotations,
      }),
    );
    return vm;
  }

  /** Starts a guest on the next free address, skipping addresses another cluster holds. */
  #bootGuest(spec: VmSpec, size: { milliCpu: number; memBytes: number }): FakeVm {
    for (let attempt = 0;; attempt++) {
      const vm = new FakeVm({
        name: spec.name,
        ip: vmAddress(this.#nextAddress),
        ports: this.#vmPorts,
        size,
        workload: spec.workload ?? constant(),
        monitor: spec.monitor,
      });
      this.#nextAddress = (this.#nextAddress + 1) % VM_ADDRESS_SPACE;
      try {
        vm.start();
        return vm;
      } catch (err) {
        if (!isAddrInUse(err) || attempt >= 1000) throw err;
        // Another cluster holds this stretch of addresses: jump elsewhere rather than walk it.
        this.#nextAddress = randomInt(VM_ADDRESS_SPACE);
      }
    }
  }

  /** The guest of a VM. */
  vm(name: string, namespace = "default"): FakeVm {
    const vm = this.vms.get(vmKey(namespace, name));
    if (vm === undefined) throw new Error(`no VM ${namespace}/${name}`);
    return vm;
  }

  /** The VirtualMachine object as the API server stores it. */
  vmObject(name: string, namespace = "default"): JsonObject {
    const obj = this.api.get("virtualmachines", namespace, name);
    if (obj === undefined || obj === null) {
      throw new Error(`no VirtualMachine ${namespace}/${name}`);
    }
    return obj as JsonObject;
  }

  /** Deletes a VM's object and stops its guest. */
  async removeVm(name: string, namespace = "default"): Promise<void> {
    const key = vmKey(namespace, name);
    const vm = this.vms.get(key);
    this.vms.delete(key);
    this.api.delete("virtualmachines", namespace, name);
    await vm?.stop();
  }

  /** Stops everything and removes the kubeconfig file. */
  async close(): Promise<void> {
    this.#unsubscribe();
    await Promise.all([...this.vms.values()].map((vm) => vm.stop()));
    this.vms.clear();
    await this.plugin.stop();
    await this.collector?.stop();
    await this.api.close();
    await Deno.remove(this.kubeconfigPath).catch(() => {});
  }

  /** Shows each VM's guest the size its status reports. */
  #onEvent(event: StoreEvent): void {
    if (event.resource !== "virtualmachines" || event.type === "DELETED") return;
    const obj = event.object.value;
    const vm = this.vms.get(vmKey(event.object.namespace, event.object.name));
    const status = obj.status as JsonObject | undefined;
    if (vm === undefined || status === undefined) return;
    if (status.cpus === undefined || status.memorySize === undefined) return;
    try {
      const size = {
        milliCpu: decodeMilliCPU(status.cpus),
        memBytes: decodeBytes(status.memorySize),
      };
      const current = vm.size;
      if (size.milliCpu !== current.milliCpu || size.memBytes !== current.memBytes) {
        vm.setSize(size);
      }
    } catch {
      // A status the controller did not write (a test's garbage) leaves the guest as it was.
    }
  }
}
