/**
 * A stand-in for the NeonVM controller's status handling: after a
 * change of `cpus.use` or `memorySlots.use` on a Running VM it goes through `Scaling`, writes
 * the new `status.cpus`/`status.memorySize`, returns to `Running` and then acknowledges
 * `spec.targetRevision` in `status.currentRevision`. Each step is its own write and event.
 * Also migration and restart sequences for tests.
 */
import { cloneJson, getPath, isJsonObject, type Json, type JsonObject } from "./json.ts";
import type { ObjectStore, StoreEvent } from "./store.ts";
import {
  decodeBytes,
  decodeMilliCPU,
  encodeMilliCPU,
  formatK8sTime,
  formatQuantityBytes,
} from "../quantity.ts";

/** The timer functions the controller uses, injectable so tests can drive time. */
export interface Timers {
  setTimeout(callback: () => void, ms: number): TimerId;
  clearTimeout(id: TimerId): void;
}

export type TimerId = ReturnType<typeof setTimeout>;

export interface NeonVmControllerOptions {
  /** Whether spec changes are acted on (default false; switchable at run time). */
  enabled?: boolean;
  /** From the spec change to `phase: Scaling` (default 50 ms). */
  scalingDelayMs?: number;
  /** From `Scaling` to the new size and `Running` (default 50 ms). */
  resizeDelayMs?: number;
  /** Between the steps of `migrate` and `restart` (default 50 ms). */
  stepDelayMs?: number;
  timers?: Timers;
  /** Wall clock in ms, for `updatedAt`. */
  now?: () => number;
}

/** A change the controller would not apply, kept for assertions. */
export interface Refusal {
  at: number;
  namespace: string;
  name: string;
  reason: string;
}

interface Desired {
  milliCpu: number;
  bytes: number;
}

const defaultTimers: Timers = {
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (id) => clearTimeout(id),
};

function vmKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

function phaseOf(vm: JsonObject): Json | undefined {
  return getPath(vm, ["status", "phase"]);
}

/** What the spec asks for, or why it cannot be applied. */
function desiredSize(vm: JsonObject): Desired | string {
  try {
    const cpu = (b: string) => decodeMilliCPU(getPath(vm, ["spec", "guest", "cpus", b]));
    const slots = (b: string) => getPath(vm, ["spec", "guest", "memorySlots", b]);
    const [useSlots, minSlots, maxSlots] = [slots("use"), slots("min"), slots("max")];
    if (![useSlots, minSlots, maxSlots].every(Number.isInteger)) {
      return "memorySlots are not integers";
    }
    const milliCpu = cpu("use");
    if (milliCpu < cpu("min") || milliCpu > cpu("max")) {
      return `cpus.use ${milliCpu}m outside [${cpu("min")}m, ${cpu("max")}m]`;
    }
    if (
      (useSlots as number) < (minSlots as number) || (useSlots as number) > (maxSlots as number)
    ) {
      return `memorySlots.use ${useSlots} outside [${minSlots}, ${maxSlots}]`;
    }
    const slotSize = decodeBytes(getPath(vm, ["spec", "guest", "memorySlotSize"]) ?? "1Gi");
    return { milliCpu, bytes: (useSlots as number) * slotSize };
  } catch (e) {
    return (e as Error).message;
  }
}

function hasSize(vm: JsonObject, desired: Desired): boolean {
  try {
    return decodeMilliCPU(getPath(vm, ["status", "cpus"]) ?? null) === desired.milliCpu &&
      decodeBytes(getPath(vm, ["status", "memorySize"]) ?? null) === desired.bytes;
  } catch {
    return false;
  }
}

function revisionPending(vm: JsonObject): boolean {
  const target = getPath(vm, ["spec", "targetRevision", "revision"]);
  if (!isJsonObject(target)) return false;
  const current = getPath(vm, ["status", "currentRevision", "revision"]);
  return JSON.stringify(current) !== JSON.stringify(target);
}

export class NeonVmController {
  readonly #store: ObjectStore;
  readonly #timers: Timers;
  readonly #now: () => number;
  readonly #unsubscribe: () => void;
  #enabled: boolean;
  scalingDelayMs: number;
  resizeDelayMs: number;
  stepDelayMs: number;
  /** VMs with a scaling or revision step scheduled, and its timer. */
  readonly #inFlight = new Map<string, TimerId | undefined>();
  /** Pending sleeps of migrate/restart, resolved with false on close. */
  readonly #sleeps = new Map<TimerId, (completed: boolean) => void>();
  readonly #refused = new Map<string, string>();
  readonly refusals: Refusal[] = [];
  #closed = false;

  constructor(store: ObjectStore, options: NeonVmControllerOptions = {}) {
    this.#store = store;
    this.#timers = options.timers ?? defaultTimers;
    this.#now = options.now ?? store.now;
    this.#enabled = options.enabled ?? false;
    this.scalingDelayMs = options.scalingDelayMs ?? 50;
    this.resizeDelayMs = options.resizeDelayMs ?? 50;
    this.stepDelayMs = options.stepDelayMs ?? 50;
    this.#unsubscribe = store.subscribe((event) => this.#onEvent(event));
  }

  get enabled(): boolean {
    return this.#enabled;
  }

  /** Switching on reconciles every VM once; switching off cancels scheduled steps. */
  set enabled(on: boolean) {
    if (on === this.#enabled || this.#closed) return;
    this.#enabled = on;
    if (on) {
      for (const vm of this.#store.list("virtualmachines")) this.#reconcile(vm.namespace, vm.name);
    } else {
      this.#cancelAll();
    }
  }

  /** Steps still scheduled; 0 once every VM has settled. */
  get pendingSteps(): number {
    return this.#inFlight.size;
  }

  close(): void {
    this.#closed = true;
    this.#enabled = false;
    this.#unsubscribe();
    this.#cancelAll();
    for (const [id, resolve] of this.#sleeps) {
      this.#timers.clearTimeout(id);
      resolve(false);
    }
    this.#sleeps.clear();
  }

  /**
   * Live migration: `PreMigrating`, `Migrating`, the move to the new node, pod and IP, then
   * `Running`, one write each. Resolves false if the controller closed or the VM went away.
   */
  async migrate(
    namespace: string,
    name: string,
    target: { node: string; podIP: string; podName?: string },
  ): Promise<boolean> {
    const podName = target.podName ?? `${name}-${randomSuffix()}`;
    return await this.#sequence(namespace, name, [
      { phase: "PreMigrating" },
      { phase: "Migrating" },
      { node: target.node, podIP: target.podIP, podName },
      { phase: "Running" },
    ]);
  }

  /**
   * Runner pod restart: `Failed`, then `Pending` without pod, IP and node, then `Running` with
   * the new pod and IP and `restartCount + 1`.
   */
  async restart(
    namespace: string,
    name: string,
    next: { podIP: string; podName?: string; node?: string },
  ): Promise<boolean> {
    const vm = this.#store.get("virtualmachines", namespace, name)?.value;
    if (vm === undefined) return false;
    const node = next.node ?? getPath(vm, ["status", "node"]) ?? null;
    const podName = next.podName ?? `${name}-${randomSuffix()}`;
    return await this.#sequence(namespace, name, [
      { phase: "Failed" },
      { phase: "Pending", podName: null, podIP: null, node: null },
      {
        phase: "Running",
        podName,
        podIP: next.podIP,
        node,
        restartCount: Number(getPath(vm, ["status", "restartCount"]) ?? 0) + 1,
      },
    ]);
  }

  async #sequence(namespace: string, name: string, steps: JsonObject[]): Promise<boolean> {
    for (const [i, step] of steps.entries()) {
      if (i > 0 && !(await this.#sleep(this.stepDelayMs))) return false;
      if (!this.#writeStatus(namespace, name, (status) => mergeInto(status, step))) return false;
    }
    return true;
  }

  #sleep(ms: number): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const id = this.#timers.setTimeout(() => {
        this.#sleeps.delete(id);
        resolve(true);
      }, ms);
      this.#sleeps.set(id, resolve);
    });
  }

  #cancelAll(): void {
    for (const id of this.#inFlight.values()) {
      if (id !== undefined) this.#timers.clearTimeout(id);
    }
    this.#inFlight.clear();
  }

  #onEvent(event: StoreEvent): void {
    if (event.resource !== "virtualmachines") return;
    const { namespace, name } = event.object;
    const key = vmKey(namespace, name);
    if (event.type === "DELETED") {
      const id = this.#inFlight.get(key);
      if (id !== undefined) this.#timers.clearTimeout(id);
      this.#inFlight.delete(key);
      this.#refused.delete(key);
      return;
    }
    if (this.#enabled) this.#reconcile(namespace, name);
  }

  /** Schedules the next step for a VM unless one is already scheduled. */
  #reconcile(namespace: string, name: string): void {
    const key = vmKey(namespace, name);
    if (this.#inFlight.has(key)) return;
    const vm = this.#store.get("virtualmachines", namespace, name)?.value;
    if (vm === undefined || phaseOf(vm) !== "Running") return;
    const desired = desiredSize(vm);
    if (typeof desired === "string") {
      this.#refuse(key, namespace, name, desired);
      return;
    }
    this.#refused.delete(key);
    if (!hasSize(vm, desired)) {
      this.#schedule(key, this.scalingDelayMs, () => this.#startScaling(namespace, name));
    } else if (revisionPending(vm)) {
      // Writes happen from a timer, never from inside the store's event dispatch.
      this.#schedule(key, 0, () => this.#acknowledgeRevision(namespace, name));
    }
  }

  #refuse(key: string, namespace: string, name: string, reason: string): void {
    if (this.#refused.get(key) === reason) return;
    this.#refused.set(key, reason);
    this.refusals.push({ at: this.#now(), namespace, name, reason });
  }

  #schedule(key: string, ms: number, step: () => void): void {
    this.#inFlight.set(
      key,
      this.#timers.setTimeout(() => {
        this.#inFlight.delete(key);
        step();
      }, ms),
    );
  }

  #startScaling(namespace: string, name: string): void {
    const key = vmKey(namespace, name);
    // Hold the VM while writing so the write's own event does not schedule another step.
    this.#inFlight.set(key, undefined);
    const ok = this.#writeStatus(namespace, name, (status) => {
      status.phase = "Scaling";
    });
    this.#inFlight.delete(key);
    if (ok) this.#schedule(key, this.resizeDelayMs, () => this.#finishScaling(namespace, name));
  }

  #finishScaling(namespace: string, name: string): void {
    const key = vmKey(namespace, name);
    const vm = this.#store.get("virtualmachines", namespace, name)?.value;
    if (vm === undefined || phaseOf(vm) !== "Scaling") return;
    const desired = desiredSize(vm);
    this.#inFlight.set(key, undefined);
    this.#writeStatus(namespace, name, (status) => {
      if (typeof desired !== "string") {
        status.cpus = encodeMilliCPU(desired.milliCpu);
        status.memorySize = formatQuantityBytes(desired.bytes);
      }
      status.phase = "Running";
    });
    this.#acknowledgeRevision(namespace, name);
    this.#inFlight.delete(key);
    if (this.#enabled) this.#reconcile(namespace, name);
  }

  #acknowledgeRevision(namespace: string, name: string): void {
    const vm = this.#store.get("virtualmachines", namespace, name)?.value;
    if (vm === undefined || phaseOf(vm) !== "Running" || !revisionPending(vm)) return;
    const revision = getPath(vm, ["spec", "targetRevision", "revision"]) as JsonObject;
    this.#writeStatus(namespace, name, (status) => {
      status.currentRevision = {
        revision: cloneJson(revision),
        updatedAt: formatK8sTime(this.#now()),
      };
    });
  }

  /** Rewrites a VM's status; false when the VM no longer exists. */
  #writeStatus(namespace: string, name: string, change: (status: JsonObject) => void): boolean {
    const stored = this.#store.get("virtualmachines", namespace, name);
    if (stored === undefined) return false;
    const next = cloneJson(stored.value);
    if (!isJsonObject(next.status)) next.status = {};
    change(next.status as JsonObject);
    this.#store.write("virtualmachines", namespace, name, next);
    return true;
  }
}

function mergeInto(status: JsonObject, fields: JsonObject): void {
  for (const [key, value] of Object.entries(fields)) {
    if (value === null) delete status[key];
    else status[key] = value;
  }
}

function randomSuffix(): string {
  return crypto.randomUUID().slice(0, 5);
}
