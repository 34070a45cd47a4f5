/**
 * A coalescing wake-up signal: any number of `notify()` calls before the waiter wakes count as
 * one (the reference's VM-info-updated channel).
 *
 * @module
 */

import { onAbort } from "./async.ts";

/** One waiter, many notifiers, notifications coalesce. */
export class CoalescingSignal {
  #pending = false;
  #wake: (() => void) | null = null;

  notify(): void {
    this.#pending = true;
    this.#wake?.();
  }

  /** True once notified (consuming the notification); false when `signal` aborts first. */
  async wait(signal: AbortSignal): Promise<boolean> {
    while (!this.#pending) {
      if (signal.aborted) return false;
      const { promise, resolve } = Promise.withResolvers<void>();
      const wake = () => resolve();
      this.#wake = wake;
      const removeAbort = onAbort(signal, () => resolve());
      try {
        await promise;
      } finally {
        this.#wake = null;
        removeAbort();
      }
    }
    this.#pending = false;
    return true;
  }
}
