/**
 * The VM watcher: a reflector over every VirtualMachine in the cluster whose
 * handlers turn responsibility changes into runner events, in watch order.
 *
 * Two reference bugs are fixed here:
 * - whether a VM has a Runner is tracked per UID, so a VM that was invalid when it first became
 *   ours gets an `added` event as soon as it becomes valid, instead of never;
 * - `deleted` events are built from the names recorded when the Runner was announced, so a VM
 *   whose annotations broke still loses its Runner.
 *
 * @module
 */

import type { ScalingConfig, VmInfo } from "../../core/mod.ts";
import type { Clock } from "../../lib/clock.ts";
import { type Log, silentLog } from "../../lib/log.ts";
import type { Random } from "../../lib/random.ts";
import {
  type ListWatchSource,
  Reflector,
  type ReflectorHandlers,
  type ReflectorObserver,
} from "./reflector.ts";
import {
  decodeVirtualMachine,
  extractVmInfo,
  isOurResponsibility,
  LABEL_ENDPOINT_ID,
  type ResponsibilityParams,
  type VirtualMachine,
} from "./vm.ts";

/** Identity of a runner event; the runner registry is keyed by (namespace, podName). */
export interface VmEventTarget {
  vmUid: string;
  namespace: string;
  name: string;
  podName: string;
  podIP: string;
  endpointID: string;
}

export interface VmEvent extends VmEventTarget {
  kind: "added" | "updated" | "deleted";
  /** For `deleted`: the last VmInfo announced, since the final state may not extract. */
  vmInfo: VmInfo;
}

/** Sees every VM add/update/delete, ours or not, before any event it causes. */
export interface VmMetricsObserver {
  add(vm: VirtualMachine): void;
  update(oldVm: VirtualMachine, newVm: VirtualMachine): void;
  delete(vm: VirtualMachine): void;
}

export interface VmWatcherOptions extends ResponsibilityParams {
  /** Usually `KubeClient.virtualMachines()`. */
  source: ListWatchSource;
  /** Receives runner events; must not block (the reference appends to an unbounded queue). */
  onEvent(event: VmEvent): void;
  /** `scaling.defaultConfig`, which a VM's config annotation is checked against. */
  defaultScalingConfig?: ScalingConfig;
  vmMetrics?: VmMetricsObserver;
  /** Watcher metrics hooks (`watcher_instance="VirtualMachines"`). */
  observer?: ReflectorObserver;
  /** Default: a random whole ms in [500, 1000). */
  retryDelayMs?: number | readonly [number, number];
  /** Times the waits before retries (and, through the source, the watch's own timers). */
  clock?: Clock;
  /** Draws the random retry delays. */
  random?: Random;
  log?: Log;
}

/** The reflector's instance name, also the `watcher_instance` metric label. */
export const VM_WATCHER_NAME = "VirtualMachines";

interface Announced {
  target: VmEventTarget;
  vmInfo: VmInfo;
}

function vmKey(vm: VirtualMachine): string {
  return `${vm.metadata.namespace}/${vm.metadata.name}`;
}

/** Lists and watches VirtualMachines and emits the runner events of this node. */
export class VmWatcher {
  readonly #options: VmWatcherOptions;
  readonly #log: Log;
  readonly #reflector: Reflector<VirtualMachine>;
  // VMs with an announced Runner, by UID.
  readonly #announced = new Map<string, Announced>();

  constructor(options: VmWatcherOptions) {
    this.#options = options;
    this.#log = options.log ?? silentLog;
    const handlers: ReflectorHandlers<VirtualMachine> = {
      add: (vm) => this.#add(vm),
      update: (oldVm, newVm) => this.#update(oldVm, newVm),
      delete: (vm) => this.#delete(vm),
    };
    this.#reflector = new Reflector({
      ...options,
      name: VM_WATCHER_NAME,
      decode: decodeVirtualMachine,
      handlers,
      log: this.#log,
    });
  }

  /** Initial List (rejects if it fails), then watches until `signal` aborts. */
  start(signal: AbortSignal): Promise<void> {
    return this.#reflector.start(signal);
  }

  get stopped(): Promise<void> {
    return this.#reflector.stopped;
  }

  get failing(): boolean {
    return this.#reflector.failing;
  }

  /** The latest state of every VM in the cluster (billing reads the same stream). */
  vms(): VirtualMachine[] {
    return this.#reflector.items();
  }

  requestRelist(): void {
    this.#reflector.requestRelist();
  }

  #ours(vm: VirtualMachine): boolean {
    return isOurResponsibility(vm, this.#options);
  }

  #metrics(call: (observer: VmMetricsObserver) => void, vm: VirtualMachine): void {
    const observer = this.#options.vmMetrics;
    if (observer === undefined) return;
    try {
      call(observer);
    } catch (e) {
      this.#log.error("per-VM metrics update failed", {
        virtualmachine: vmKey(vm),
        error: e instanceof Error ? e.message : String(e),
      });
    }
  }

  #add(vm: VirtualMachine): void {
    this.#metrics((m) => m.add(vm), vm);
    if (this.#ours(vm)) this.#announce(vm);
  }

  #update(oldVm: VirtualMachine, newVm: VirtualMachine): void {
    this.#metrics((m) => m.update(oldVm, newVm), newVm);
    const announced = this.#announced.get(newVm.metadata.uid);
    const ours = this.#ours(newVm);
    if (announced === undefined) {
      // Replaces the reference's "invalid at first sight never gets a Runner": retried per update.
      if (ours) this.#announce(newVm);
    } else if (!ours) {
      this.#retire(newVm.metadata.uid, announced);
    } else if (newVm.status.podName !== announced.target.podName) {
      // The registry is keyed by pod name: a rename would orphan the Runner.
      this.#retire(newVm.metadata.uid, announced);
      this.#announce(newVm);
    } else {
      this.#refresh(newVm, announced);
    }
  }

  #delete(vm: VirtualMachine): void {
    this.#metrics((m) => m.delete(vm), vm);
    const announced = this.#announced.get(vm.metadata.uid);
    if (announced !== undefined) this.#retire(vm.metadata.uid, announced);
  }

  #extract(vm: VirtualMachine, kind: "added" | "updated") {
    const result = extractVmInfo(vm, this.#options.defaultScalingConfig);
    const fields = { virtualmachine: vmKey(vm), pod: vm.status.podName, event: kind };
    if (!result.ok) {
      this.#log.error("invalid VirtualMachine; event dropped", { ...fields, error: result.error });
      return undefined;
    }
    for (const warning of result.value.warnings) this.#log.warn(warning, fields);
    return result.value;
  }

  #target(vm: VirtualMachine): VmEventTarget {
    return {
      vmUid: vm.metadata.uid,
      namespace: vm.metadata.namespace,
      name: vm.metadata.name,
      podName: vm.status.podName,
      podIP: vm.status.podIP,
      endpointID: vm.metadata.labels[LABEL_ENDPOINT_ID] ?? "",
    };
  }

  #announce(vm: VirtualMachine): void {
    const result = this.#extract(vm, "added");
    if (result === undefined) return;
    const target = this.#target(vm);
    this.#announced.set(vm.metadata.uid, { target, vmInfo: result.vmInfo });
    this.#options.onEvent({ kind: "added", ...target, vmInfo: result.vmInfo });
  }

  #refresh(vm: VirtualMachine, announced: Announced): void {
    // An invalid update leaves the Runner on its previous VmInfo, as in the reference.
    const result = this.#extract(vm, "updated");
    if (result === undefined) return;
    const target = this.#target(vm);
    announced.vmInfo = result.vmInfo;
    announced.target.endpointID = target.endpointID;
    this.#options.onEvent({ kind: "updated", ...target, vmInfo: result.vmInfo });
  }

  #retire(uid: string, announced: Announced): void {
    // Replaces the reference's extraction of the final state, which dropped the event.
    this.#announced.delete(uid);
    this.#options.onEvent({ kind: "deleted", ...announced.target, vmInfo: announced.vmInfo });
  }
}
