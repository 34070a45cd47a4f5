/**
 * A coalescing wake-up signal: any number of `notify()` calls before the waiter wakes count as
 * one (the reference's VM-info-updated channel).
 *
 * @module
 */

import { wakeOrAbort } from "./async.ts";

/** One waiter, many notifiers, notifications coalesce. */
export class CoalescingSignal {
  #pending = false;
  #wake: (() => void) | undefined;

  notify(): void {
    this.#pending = true;
    this.#wake?.();
  }

  /** True once notified (consuming the notification); false when `signal` aborts first. */
  async wait(signal: AbortSignal): Promise<boolean> {
    while (!this.#pending) {
      if (signal.aborted) return false;
      await wakeOrAbort(signal, (wake) => this.#wake = wake);
    }
    this.#pending = false;
    return true;
  }
}
