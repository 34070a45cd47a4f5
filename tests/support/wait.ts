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

/** Options of {@link waitFor}. */
export interface WaitOptions {
  /** What is awaited, for the failure message. */
  what?: string;
  /**
   * Real milliseconds before giving up.
   * @default 10_000
   */
  limitMs?: number;
}

/**
 * Lets other work run (promise callbacks, timers, I/O) until `check` returns something other than
 * `undefined` or `false`, and returns that; throws when it still has not after `limitMs`.
 */
export async function waitFor<T>(
  check: () => T | undefined | false | Promise<T | undefined | false>,
  options: WaitOptions = {},
): Promise<T> {
  const { what = "condition", limitMs = 10_000 } = options;
  let expired = false;
  const limit = setTimeout(() => expired = true, limitMs);
  try {
    for (;;) {
      const value = await check();
      if (value !== undefined && value !== false) return value;
      if (expired) throw new Error(`timed out after ${limitMs} ms waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  } finally {
    clearTimeout(limit);
  }
}
