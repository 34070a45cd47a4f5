/**
 * A coalescing wake-up signal: any number of `notify()` calls before the listener runs count as
 * one (the reference's VM-info-updated channel).
 *
 * @module
 */

import { onAbort } from "./abort.ts";
import type { TaskScope } from "./async.ts";

/** One listener, many notifiers, notifications coalesce. */
export class CoalescingSignal {
  #pending = false;
  #wake: (() => void) | undefined;

  notify(): void {
    this.#pending = true;
    this.#wake?.();
  }

  /**
   * Calls `fn` once for the notifications that came since its last call (at once for one that
   * came before this), until the scope's signal aborts; an error `fn` throws ends it through
   * `scope.fail`. A callback rather than a loop around a wait, so an idle listener holds no
   * suspended async call.
   */
  each(scope: TaskScope, fn: () => void): void {
    const { signal } = scope;
    if (signal.aborted) return;
    const deliver = () => {
      if (signal.aborted || !this.#pending) return;
      this.#pending = false;
      try {
        fn();
      } catch (err) {
        stop();
        scope.fail(err);
      }
    };
    // Notifiers run inside other work: the listener runs after it, never within it.
    const wake = () => queueMicrotask(deliver);
    const stop = () => {
      if (this.#wake === wake) this.#wake = undefined;
      removeAbort();
    };
    const removeAbort = onAbort(signal, stop);
    this.#wake = wake;
    if (this.#pending) wake();
  }
}
