/**
 * Waits until a VM's status shows a size: the monitor is told of an upscale, and the plugin of a
 * downscale, only once NeonVM has actually applied the patch (docs/differences.md).
 *
 * The VM watcher feeds every status it sees; Runners wait on it after each patch. Only what is
 * seen after the patch was sent counts: a status seen before it may be older than the state the
 * patch changes (the watch can lag, or be down, while the VM is resized), and a match against it
 * would tell a peer of a size the VM does not have.
 *
 * @module
 */

import type { Resources } from "../../core/mod.ts";
import type { Clock } from "../../lib/clock.ts";

/** A VM's size as its status reports it; null where the status has no value yet. */
export interface ObservedSize {
  vCPU: number | null;
  mem: number | null;
}

interface Waiter {
  target: Resources;
  resolve(reached: boolean): void;
}

function reached(size: ObservedSize | undefined, target: Resources): boolean {
  return size !== undefined && size.vCPU === target.vCPU && size.mem === target.mem;
}

/** Latest observed sizes per VM key, and the waiters for them. */
export class VmStatusWaiter {
  #latest = new Map<string, ObservedSize>();
  #waiters = new Map<string, Set<Waiter>>();
  readonly #clock: Clock;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** Records the size a VM's status shows now and wakes those waiting for it. */
  observe(key: string, size: ObservedSize): void {
    this.#latest.set(key, size);
    const waiters = this.#waiters.get(key);
    if (waiters === undefined) return;
    for (const waiter of waiters) {
      if (reached(size, waiter.target)) {
        waiters.delete(waiter);
        waiter.resolve(true);
      }
    }
    if (waiters.size === 0) this.#waiters.delete(key);
  }

  /** Forgets a VM that left this node. */
  forget(key: string): void {
    this.#latest.delete(key);
  }

  /** The size the VM's status showed last, when it showed both. */
  latest(key: string): Resources | undefined {
    const size = this.#latest.get(key);
    if (size === undefined || size.vCPU === null || size.mem === null) return undefined;
    return { vCPU: size.vCPU, mem: size.mem };
  }

  /** A patch of the VM is about to be sent: only statuses observed from now on count. */
  expectChange(key: string): void {
    this.#latest.delete(key);
  }

  /** True once the status shows `target`; false after `timeoutMs` or when `signal` aborts. */
  waitFor(
    key: string,
    target: Resources,
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<boolean> {
    if (reached(this.#latest.get(key), target)) return Promise.resolve(true);
    if (timeoutMs <= 0 || signal.aborted) return Promise.resolve(false);
    const { promise, resolve } = Promise.withResolvers<boolean>();
    let waiters = this.#waiters.get(key);
    if (waiters === undefined) {
      waiters = new Set();
      this.#waiters.set(key, waiters);
    }
    const set = waiters;
    const finish = (ok: boolean) => {
      cancelTimer();
      signal.removeEventListener("abort", onAbort);
      set.delete(waiter);
      if (set.size === 0 && this.#waiters.get(key) === set) this.#waiters.delete(key);
      resolve(ok);
    };
    const waiter: Waiter = { target, resolve: finish };
    const onAbort = () => finish(false);
    const cancelTimer = this.#clock.timer(timeoutMs, () => finish(false));
    signal.addEventListener("abort", onAbort, { once: true });
    set.add(waiter);
    return promise;
  }
}
