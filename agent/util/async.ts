/**
 * Small async helpers on web-platform primitives (`AbortSignal`, `Promise.withResolvers`).
 *
 * @module
 */

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  const onAbort = () => {
    clearTimeout(timer);
    reject(signal!.reason);
  };
  const timer = setTimeout(() => {
    signal?.removeEventListener("abort", onAbort);
    resolve();
  }, Math.max(0, ms));
  signal?.addEventListener("abort", onAbort, { once: true });
  return promise;
}

/** Like {@link sleep} but resolves `false` instead of rejecting when the signal aborts. */
export async function sleepUnlessAborted(ms: number, signal: AbortSignal): Promise<boolean> {
  try {
    await sleep(ms, signal);
    return true;
  } catch (err) {
    if (signal.aborted) return false;
    throw err;
  }
}

/** Resolves when the signal aborts (never rejects). */
export function aborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  const { promise, resolve } = Promise.withResolvers<void>();
  signal.addEventListener("abort", () => resolve(), { once: true });
  return promise;
}

/** A child scope: aborted when the parent aborts or when `abort()` is called. */
export function childScope(parent: AbortSignal): AbortController {
  const child = new AbortController();
  if (parent.aborted) {
    child.abort(parent.reason);
    return child;
  }
  const onAbort = () => child.abort(parent.reason);
  parent.addEventListener("abort", onAbort, { once: true });
  child.signal.addEventListener("abort", () => parent.removeEventListener("abort", onAbort), {
    once: true,
  });
  return child;
}

/** A uniformly random integer in [min, max). */
export function randomInt(min: number, max: number): number {
  return min + Math.floor(Math.random() * (max - min));
}
