/**
 * The one primitive every wait in the agent is built on: park until something calls back or the
 * signal aborts.
 *
 * @module
 */

import { onAbort } from "./abort.ts";

/**
 * Waits for one wake-up: resolves when the function handed to `arm` is called, or when `signal`
 * aborts. `arm` gets `undefined` again once the wait is over, so a stale wake is never kept.
 *
 * @example
 * ```ts
 * import { wakeOrAbort } from "./async.ts";
 * let wake: (() => void) | undefined;
 * const waiting = wakeOrAbort(new AbortController().signal, (w) => wake = w);
 * wake?.();
 * await waiting;
 * ```
 */
export async function wakeOrAbort(
  signal: AbortSignal,
  arm: (wake: (() => void) | undefined) => void,
): Promise<void> {
  if (signal.aborted) return;
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
