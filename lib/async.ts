/**
 * Long-lived tasks: where they stop, how they report the error that ends them, and the shapes
 * they run in.
 *
 * @module
 */

import { onAbort } from "./abort.ts";
import type { Clock } from "./clock.ts";

/**
 * Waits for one wake-up: resolves when the function handed to `arm` is called, or when `signal`
 * aborts. `arm` gets `undefined` again once the wait is over, so a stale wake is never kept.
 */
export async function wakeOrAbort(
  signal: AbortSignal,
  arm: (wake: (() => void) | undefined) => void,
): Promise<void> {
  const { promise, resolve } = Promise.withResolvers<void>();
  arm(() => resolve());
  const removeAbort = onAbort(signal, () => resolve());
  try {
    await promise;
  } finally {
    arm(undefined);
    removeAbort();
  }
}

/**
 * What a long-lived task runs in: when to stop, and where to report the error that ends it.
 *
 * Tasks take a scope instead of returning a promise: a Runner has a dozen tasks that are idle
 * nearly all the time, and with thousands of Runners the promise, resolvers and suspended
 * supervising call of each were a large share of the agent's heap.
 */
export interface TaskScope {
  readonly signal: AbortSignal;
  /** Reports the error that ends the task; the task has stopped itself when it calls this. */
  fail(error: unknown): void;
}

/**
 * Runs `task` after `firstMs`, then again `everyMs` after each run has ended, until the scope's
 * signal aborts; the first error a run throws ends it through `scope.fail`. Between runs only a
 * timer is held.
 */
export function repeat(
  scope: TaskScope,
  clock: Clock,
  firstMs: number,
  everyMs: number,
  task: () => Promise<void> | void,
): void {
  const { signal } = scope;
  if (signal.aborted) return;
  let cancel: (() => void) | null = null;
  const fail = (err: unknown) => {
    removeAbort();
    scope.fail(err);
  };
  const next = () => {
    if (!signal.aborted) cancel = clock.timer(everyMs, run);
  };
  const run = () => {
    cancel = null;
    if (signal.aborted) return;
    try {
      const work = task();
      if (work === undefined) next();
      else work.then(next, fail);
    } catch (err) {
      fail(err);
    }
  };
  const removeAbort = onAbort(signal, () => cancel?.());
  cancel = clock.timer(firstMs, run);
}
