/**
 * A token bucket without waiting: an allowance of something (messages, bytes, log lines) that
 * refills at a steady rate up to a burst, for limits that refuse or skip rather than queue.
 *
 * @example
 * ```ts
 * import { Allowance } from "./allowance.ts";
 * import { systemClock } from "./clock.ts";
 * const messages = new Allowance({ perSecond: 50, burst: 100, clock: systemClock });
 * if (!messages.take()) console.log("over the limit");
 * ```
 *
 * @module
 */

import type { Clock } from "./clock.ts";

/** Options of {@link Allowance}. */
export interface AllowanceOptions {
  /** Refill rate, per second. */
  perSecond: number;
  /** Most that may be taken at once after a quiet period; the bucket starts full. */
  burst: number;
  /** Reads the time for the refills. */
  clock: Clock;
}

/** A token bucket read on demand: no timer, no promise, a few numbers. */
export class Allowance {
  readonly perSecond: number;
  readonly burst: number;
  readonly #clock: Clock;
  #tokens: number;
  #at: number;

  constructor(options: AllowanceOptions) {
    this.perSecond = options.perSecond;
    this.burst = options.burst;
    this.#clock = options.clock;
    this.#tokens = options.burst;
    this.#at = options.clock.now();
  }

  /** The tokens now; negative while a {@link spend} beyond them is being paid back. */
  get tokens(): number {
    const now = this.#clock.now();
    if (now > this.#at) {
      const tokens = this.#tokens + ((now - this.#at) / 1000) * this.perSecond;
      // Refills are sums of fractions: a token that is due must not come out a hair short.
      const whole = Math.round(tokens);
      this.#tokens = Math.min(this.burst, Math.abs(tokens - whole) < 1e-9 ? whole : tokens);
      this.#at = now;
    }
    return this.#tokens;
  }

  /** Takes `n` tokens if there are that many; false, taking nothing, otherwise. */
  take(n = 1): boolean {
    if (this.tokens < n) return false;
    this.#tokens -= n;
    return true;
  }

  /** Takes `n` tokens even if that leaves a debt, which the refills pay back first. */
  spend(n: number): void {
    this.#tokens = this.tokens - n;
  }

  /** Milliseconds until there are `n` tokens (0 if there are already). */
  msUntil(n = 1): number {
    const missing = n - this.tokens;
    return missing <= 0 ? 0 : Math.ceil((missing / this.perSecond) * 1000);
  }
}
