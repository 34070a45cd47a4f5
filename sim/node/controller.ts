/**
 * The NeonVM controller, as far as scaling goes: when a VM's spec asks for another size, the
 * status follows a fraction of a second to a few seconds later, together with the revision the
 * spec carried. While stalled it reconciles nothing; what piled up is applied when it resumes.
 *
 * @module
 */

import type { SeededRandom } from "../../lib/random.ts";
import type { JsonObject } from "../k8s/json.ts";
import type { StoreEvent } from "../k8s/store.ts";
import { decodeBytes, decodeMilliCPU, encodeMilliCPU, formatQuantityBytes } from "../quantity.ts";
import type { SimContext } from "./context.ts";
import type { KubeModel } from "./kube.ts";

/** A VM's size as its spec asks for it or its status shows it. */
export interface VmSize {
  milliCpu: number;
  memBytes: number;
}

/** The size the spec asks for. */
export function specSize(vm: JsonObject): VmSize {
  const guest = (vm.spec as JsonObject).guest as JsonObject;
  const slots = (guest.memorySlots as JsonObject).use as number;
  return {
    milliCpu: decodeMilliCPU((guest.cpus as JsonObject).use),
    memBytes: slots * decodeBytes(guest.memorySlotSize),
  };
}

/** The size the status shows. */
export function statusSize(vm: JsonObject): VmSize {
  const status = vm.status as JsonObject;
  return { milliCpu: decodeMilliCPU(status.cpus), memBytes: decodeBytes(status.memorySize) };
}

function sameSize(a: VmSize, b: VmSize): boolean {
  return a.milliCpu === b.milliCpu && a.memBytes === b.memBytes;
}

/** The controller model. */
export class NeonVMController {
  /** While true, nothing is reconciled. */
  stalled = false;
  readonly #ctx: SimContext;
  readonly #kube: KubeModel;
  readonly #random: SeededRandom;
  readonly #scheduled = new Set<string>();
  readonly #waiting = new Set<string>();

  constructor(ctx: SimContext, kube: KubeModel) {
    this.#ctx = ctx;
    this.#kube = kube;
    this.#random = ctx.fork();
    kube.store.subscribe((event) => this.#onEvent(event));
  }

  /** Reconciles everything that waited while stalled. */
  resume(): void {
    this.stalled = false;
    const waiting = [...this.#waiting];
    this.#waiting.clear();
    for (const key of waiting) this.#schedule(key);
  }

  #onEvent(event: StoreEvent): void {
    if (event.resource !== "virtualmachines" || event.type === "DELETED") return;
    const vm = event.object.value;
    if (!sameSize(specSize(vm), statusSize(vm))) {
      this.#schedule(`${event.object.namespace}/${event.object.name}`);
    }
  }

  #schedule(key: string): void {
    if (this.stalled) {
      this.#waiting.add(key);
      return;
    }
    if (this.#scheduled.has(key)) return;
    this.#scheduled.add(key);
    this.#ctx.clock.timer(this.#random.int(300, 3000), () => {
      this.#scheduled.delete(key);
      this.#reconcile(key);
    });
  }

  #reconcile(key: string): void {
    if (this.stalled) {
      this.#waiting.add(key);
      return;
    }
    const [namespace, name] = key.split("/");
    const stored = this.#kube.store.get("virtualmachines", namespace, name);
    if (stored === undefined) return;
    const vm = stored.value;
    const want = specSize(vm);
    if (sameSize(want, statusSize(vm))) return;
    const next = structuredClone(vm) as JsonObject;
    const status = next.status as JsonObject;
    status.cpus = encodeMilliCPU(want.milliCpu);
    status.memorySize = formatQuantityBytes(want.memBytes);
    const target = (vm.spec as JsonObject).targetRevision;
    if (target !== undefined) status.currentRevision = structuredClone(target);
    this.#ctx.tally.add("controller:resize");
    this.#ctx.trace.event("vm resized", {
      vm: name,
      cpu: `${want.milliCpu}m`,
      mem: `${want.memBytes / 1024 ** 3}Gi`,
    });
    this.#kube.store.write("virtualmachines", namespace, name, next);
  }
}
