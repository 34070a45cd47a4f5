/**
 * The tests' one way to wait for something asynchronous: let pending work run, or poll a
 * condition until it holds. Time-dependent code under test runs on a `VirtualClock`; the limit
 * here only keeps a broken test from hanging, it never measures anything.
 *
 * @module
 */

export { settle } from "../../lib/virtual_clock.ts";

/** A signal that never aborts, for calls that require one. */
export const NEVER: AbortSignal = new AbortController().signal;

/**
 * Lets other work run (promise callbacks, timers, I/O) until `check` holds; throws when it still
 * does not after `limitMs` real milliseconds.
 */
export async function until(
  check: () => boolean,
  limitMs = 5000,
  what = "condition",
): Promise<void> {
  let expired = false;
  const limit = setTimeout(() => expired = true, limitMs);
  try {
    while (!check()) {
      if (expired) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  } finally {
    clearTimeout(limit);
  }
}
