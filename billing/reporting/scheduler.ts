/**
 * Time for the reporting pipeline: wall-clock reads and one-shot timers, injected so that tests
 * can run push intervals, back-off and request timeouts on virtual time.
 *
 * @module
 */

import type { Clock } from "../../agent/util/clock.ts";

/** A clock that can also run a callback later. */
export interface Scheduler extends Clock {
  /** Runs `fn` once, `ms` from now; the returned function cancels it. */
  after(ms: number, fn: () => void): () => void;
}

/** Real time. */
export const systemScheduler: Scheduler = {
  now: () => Date.now(),
  after(ms, fn) {
    const timer = setTimeout(fn, Math.max(0, ms));
    return () => clearTimeout(timer);
  },
};

/** A signal that aborts with `reason` after `ms` on `scheduler`, or when `parent` aborts. */
export function timeoutSignal(
  scheduler: Scheduler,
  ms: number,
  reason: Error,
  parent?: AbortSignal,
): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const cancel = scheduler.after(ms, () => controller.abort(reason));
  const onParent = () => controller.abort(parent!.reason);
  if (parent?.aborted) onParent();
  else parent?.addEventListener("abort", onParent, { once: true });
  return {
    signal: controller.signal,
    dispose() {
      cancel();
      parent?.removeEventListener("abort", onParent);
    },
  };
}
