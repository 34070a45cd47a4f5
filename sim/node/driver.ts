/**
 * What moves the simulated node forward: one {@link VirtualClock} fired timer by timer, with
 * every promise a timer settled run to its end before the next timer, and a clock per agent
 * process that a crash can stop dead.
 *
 * Nothing in a run waits on real I/O or real timers, so the only barrier needed between two
 * timers is "every pending microtask has run". `setImmediate` gives exactly that (it runs after
 * the microtask queue is empty) for a few microseconds, where `setTimeout(0)` is clamped to
 * milliseconds once nested.
 *
 * @module
 */

import { setImmediate } from "node:timers";
import { BaseClock, type Cancel, type Instant } from "../../lib/clock.ts";
import type { VirtualClock } from "../../lib/virtual_clock.ts";

/** Resolves once every microtask queued so far, and every one they queue, has run. */
export function drain(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Fires the clock's timers in order, draining between them, until told to stop. */
export class Driver {
  readonly clock: VirtualClock;
  /** Timers fired so far. */
  fired = 0;
  #stopped = false;

  constructor(clock: VirtualClock) {
    this.clock = clock;
  }

  /** Ends every run in progress after the current timer (a violation was found). */
  stop(): void {
    this.#stopped = true;
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  /** Runs every timer due up to `at` (epoch ms), then moves the clock to `at`. */
  async runUntil(at: number): Promise<void> {
    // One setImmediate per timer and no promise per step: the loop is the hot path of a run.
    await new Promise<void>((resolve) => {
      const step = () => {
        if (this.#stopped || !this.clock.fireNext(at)) return resolve();
        this.fired++;
        setImmediate(step);
      };
      setImmediate(step);
    });
    if (!this.#stopped) await this.clock.runUntil(at, () => Promise.resolve());
  }

  /**
   * Runs timers until `promise` settles, for at most `limitMs` of virtual time; returns its
   * value, or undefined when it did not settle in time (or the run stopped).
   */
  async until<T>(promise: Promise<T>, limitMs: number): Promise<T | undefined> {
    let settled = false;
    let value: T | undefined;
    let error: unknown;
    let failed = false;
    promise.then((v) => {
      settled = true;
      value = v;
    }, (e) => {
      settled = true;
      failed = true;
      error = e;
    });
    const end = this.clock.now() + limitMs;
    await drain();
    while (!settled && !this.#stopped && this.clock.fireNext(end)) {
      this.fired++;
      await drain();
    }
    if (failed) throw error;
    return settled ? value : undefined;
  }
}

/**
 * One agent process's clock: the shared virtual time, with every timer it set remembered so
 * that {@link kill} can take them all back, as the death of a process takes its timers.
 */
export class ProcessClock extends BaseClock {
  readonly #inner: VirtualClock;
  readonly #timers = new Set<Cancel>();
  #alive = true;

  constructor(inner: VirtualClock) {
    super();
    this.#inner = inner;
  }

  get alive(): boolean {
    return this.#alive;
  }

  /** Timers set and neither fired nor cancelled. */
  get pendingTimers(): number {
    return this.#timers.size;
  }

  now(): number {
    return this.#inner.now();
  }

  instant(): Instant {
    return this.#inner.instant();
  }

  timer(ms: number, fire: () => void): Cancel {
    if (!this.#alive) return () => {};
    const timers = this.#timers;
    const cancel = this.#inner.timer(ms, () => {
      timers.delete(cancel);
      fire();
    });
    timers.add(cancel);
    return () => {
      if (timers.delete(cancel)) cancel();
    };
  }

  /** The process died: none of its timers will fire, and it can set no more. */
  kill(): void {
    this.#alive = false;
    for (const cancel of this.#timers) cancel();
    this.#timers.clear();
  }
}
