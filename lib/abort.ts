/**
 * Helpers around `AbortSignal`, the one way every wait in the agent is cancelled.
 *
 * @module
 */

const abortHubs = new WeakMap<AbortSignal, Set<() => void>>();

/**
 * Calls `fn` once when `signal` aborts (which must not have happened yet); returns the removal.
 * One real listener per signal fans out to a Set: the per-wait `addEventListener` /
 * `removeEventListener` pairs on a Runner's long-lived scope were a measurable share of the
 * agent's allocations with thousands of Runners. Each registration needs its own `fn`.
 */
export function onAbort(signal: AbortSignal, fn: () => void): () => void {
  let hub = abortHubs.get(signal);
  if (hub === undefined) {
    const callbacks = new Set<() => void>();
    hub = callbacks;
    abortHubs.set(signal, callbacks);
    signal.addEventListener("abort", () => {
      abortHubs.delete(signal);
      const pending = [...callbacks];
      callbacks.clear();
      for (const callback of pending) callback();
    }, { once: true });
  }
  const callbacks = hub;
  callbacks.add(fn);
  return () => callbacks.delete(fn);
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
  const onParent = () => child.abort(parent.reason);
  parent.addEventListener("abort", onParent, { once: true });
  child.signal.addEventListener("abort", () => parent.removeEventListener("abort", onParent), {
    once: true,
  });
  return child;
}
