/**
 * Small async helpers on web-platform primitives (`AbortSignal`, `Promise.withResolvers`).
 *
 * @module
 */

import { systemTimer, type Timer } from "./clock.ts";

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

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  const timer = setTimeout(() => {
    unsubscribe?.();
    resolve();
  }, Math.max(0, ms));
  const unsubscribe = signal === undefined ? undefined : onAbort(signal, () => {
    clearTimeout(timer);
    reject(signal.reason);
  });
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
  firstMs: number,
  everyMs: number,
  task: () => Promise<void> | void,
  timer: Timer = systemTimer,
): void {
  const { signal } = scope;
  if (signal.aborted) return;
  let cancel: (() => void) | null = null;
  const fail = (err: unknown) => {
    removeAbort();
    scope.fail(err);
  };
  const next = () => {
    if (!signal.aborted) cancel = timer(everyMs, run);
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
  cancel = timer(firstMs, run);
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
