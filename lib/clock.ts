/**
 * The one source of time for everything outside `core/`: readings, timers, sleeps and deadlines.
 *
 * Production code never calls `Date.now()`, `setTimeout` or `performance.now()` itself; it is
 * handed a {@link Clock}. The agent gets {@link systemClock}; tests and the node simulator get a
 * {@link VirtualClock} (`lib/virtual_clock.ts`), on which hours pass in milliseconds and every
 * run is repeatable. `tests/lib/purity_test.ts` enforces this.
 *
 * @example
 * ```ts
 * import { systemClock } from "./clock.ts";
 * const deadline = systemClock.deadline(5_000);
 * try {
 *   await fetch("http://127.0.0.1:9100/metrics", { signal: deadline.signal });
 * } finally {
 *   deadline.dispose();
 * }
 * ```
 *
 * @module
 */

import process from "node:process";
import { onAbort } from "./abort.ts";

/** One moment in nanoseconds, read from the wall clock and from a clock that never steps. */
export interface Instant {
  /** Nanoseconds since the Unix epoch (UTC): what timestamps are written from. */
  wallNs: bigint;
  /** Nanoseconds on a monotonic clock: only differences mean anything; durations use these. */
  monoNs: bigint;
}

/** A time limit: its signal aborts when the time is up or when the parent signal aborts. */
export interface Deadline {
  readonly signal: AbortSignal;
  /** True once the time ran out (not when the parent aborted). */
  readonly expired: boolean;
  /** Milliseconds left, never negative. */
  remainingMs(): number;
  /** Cancels the timer and lets go of the parent; call it when the guarded work is over. */
  dispose(): void;
}

/** Options of {@link Clock.deadline}. */
export interface DeadlineOptions {
  /** Aborts the deadline's signal, with its own reason, when it aborts first. */
  signal?: AbortSignal;
  /**
   * What the deadline's signal aborts with when the time runs out.
   * @default a `DOMException` named `TimeoutError`, as `AbortSignal.timeout` gives
   */
  reason?: unknown;
}

/** Time, timers, sleeps and deadlines. */
export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
  /** Nanosecond wall and monotonic readings, for billing timestamps and durations. */
  instant(): Instant;
  /** Calls `fire` once, `ms` from now (at once for `ms` ≤ 0, but never synchronously). */
  timer(ms: number, fire: () => void): Cancel;
  /** Resolves `true` after `ms`, or `false` as soon as `signal` aborts. Never rejects. */
  sleep(ms: number, signal?: AbortSignal): Promise<boolean>;
  /** A {@link Deadline} `ms` from now. */
  deadline(ms: number, options?: DeadlineOptions): Deadline;
}

/** Config files give durations in whole seconds, as the reference's do; everything else is ms. */
export function secondsToMs(seconds: number): number {
  return seconds * 1000;
}

/** Takes back a timer that has not fired; calling it again, or after the timer fired, is harmless. */
export type Cancel = () => void;

/**
 * {@link Clock.sleep} and {@link Clock.deadline} built on the three primitive operations, so that
 * every clock behaves the same way around them.
 */
export abstract class BaseClock implements Clock {
  abstract now(): number;
  abstract instant(): Instant;
  abstract timer(ms: number, fire: () => void): Cancel;

  sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
    if (signal?.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const cancel = this.timer(ms, () => {
        removeAbort?.();
        resolve(true);
      });
      const removeAbort = signal === undefined ? undefined : onAbort(signal, () => {
        cancel();
        resolve(false);
      });
    });
  }

  deadline(ms: number, options: DeadlineOptions = {}): Deadline {
    return new ClockDeadline(this, ms, options);
  }
}

class ClockDeadline implements Deadline {
  readonly #controller = new AbortController();
  readonly #clock: Clock;
  readonly #end: number;
  #cancel: Cancel | undefined;
  #removeParent: (() => void) | undefined;
  #expired = false;

  constructor(clock: Clock, ms: number, options: DeadlineOptions) {
    this.#clock = clock;
    this.#end = clock.now() + ms;
    const parent = options.signal;
    if (parent?.aborted) {
      this.#controller.abort(parent.reason);
      return;
    }
    this.#cancel = clock.timer(ms, () => {
      this.#cancel = undefined;
      this.#expired = true;
      this.#removeParent?.();
      this.#controller.abort(
        options.reason ?? new DOMException("the deadline passed", "TimeoutError"),
      );
    });
    if (parent !== undefined) {
      this.#removeParent = onAbort(parent, () => {
        this.dispose();
        this.#controller.abort(parent.reason);
      });
    }
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  get expired(): boolean {
    return this.#expired;
  }

  remainingMs(): number {
    return Math.max(0, this.#end - this.#clock.now());
  }

  dispose(): void {
    this.#cancel?.();
    this.#cancel = undefined;
    this.#removeParent?.();
    this.#removeParent = undefined;
  }
}

const NS_PER_MS = 1_000_000n;
// Past this distance from Date.now(), the wall clock was stepped (or drifted) and the anchor moves.
const REANCHOR_NS = 1_000_000n;

/**
 * The process's real clocks.
 *
 * `Date` alone has millisecond resolution, but billing timestamps carry nanosecond fractions as
 * the reference agent's do, so {@link instant}'s wall time is a `Date` anchor plus the monotonic
 * time elapsed since it. The anchor is re-taken whenever it disagrees with `Date.now()` by more
 * than a millisecond, so that a stepped wall clock shows in timestamps as it would in Go's.
 */
export class SystemClock extends BaseClock {
  #anchorWallNs = 0n;
  #anchorMonoNs = 0n;
  #anchored = false;

  now(): number {
    return Date.now();
  }

  instant(): Instant {
    if (!this.#anchored) this.#anchor();
    const monoNs = process.hrtime.bigint();
    let wallNs = this.#anchorWallNs + (monoNs - this.#anchorMonoNs);
    // Date.now() truncates, so the true wall time lies in [dateNs, dateNs + 1 ms).
    const dateNs = BigInt(Date.now()) * NS_PER_MS;
    if (wallNs < dateNs - REANCHOR_NS || wallNs > dateNs + NS_PER_MS + REANCHOR_NS) {
      this.#anchor();
      wallNs = this.#anchorWallNs + (monoNs - this.#anchorMonoNs);
    }
    return { wallNs, monoNs };
  }

  timer(ms: number, fire: () => void): Cancel {
    const id = setTimeout(fire, clampDelay(ms));
    return () => clearTimeout(id);
  }

  // Anchoring on the edge of a Date.now() millisecond makes the anchor exact to within the spin.
  #anchor(): void {
    this.#anchored = true;
    const start = Date.now();
    let ms = start;
    while (ms === start) ms = Date.now();
    this.#anchorMonoNs = process.hrtime.bigint();
    this.#anchorWallNs = BigInt(ms) * NS_PER_MS;
  }
}

// setTimeout fires at once for delays past 2^31-1 ms; a wait that long is as good as forever.
const MAX_DELAY_MS = 2 ** 31 - 1;

function clampDelay(ms: number): number {
  if (!(ms > 0)) return 0;
  return Math.min(ms, MAX_DELAY_MS);
}

/** The real clock of this process. */
export const systemClock: Clock = new SystemClock();
