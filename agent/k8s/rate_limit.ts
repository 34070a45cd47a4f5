/**
 * Client-side throttling of Kubernetes API calls, like client-go's default token bucket
 * (agent.md S-33: 5 requests/s, burst 10, shared by all NeonVM calls of the process).
 *
 * @module
 */

import { type Clock, systemClock } from "../util/clock.ts";
import { sleep } from "../util/async.ts";

/** client-go's error when the limiter cannot serve a call before its deadline. */
export class RateLimitExceeded extends Error {
  override name = "RateLimitExceeded";
  constructor() {
    super(
      "client rate limiter Wait returned an error: rate: Wait(n=1) would exceed context deadline",
    );
  }
}

export interface TokenBucketOptions {
  /** Sustained rate: tokens added per second. */
  perSecond: number;
  /** Bucket size: how many calls may go at once after a quiet period. */
  burst: number;
  clock?: Clock;
  /** Waits `ms` or rejects when `signal` aborts; injectable so tests run on virtual time. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/**
 * A token bucket that starts full. Callers are served in the order they called {@link take}:
 * each call reserves the next token, possibly driving the balance negative, and then waits
 * until the balance it reserved has been refilled.
 */
export class TokenBucket {
  readonly perSecond: number;
  readonly burst: number;
  readonly #clock: Clock;
  readonly #sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  #tokens: number;
  #last: number;

  constructor(options: TokenBucketOptions) {
    if (!(options.perSecond > 0)) {
      throw new RangeError(`token bucket rate must be positive, got ${options.perSecond}`);
    }
    if (!(Number.isInteger(options.burst) && options.burst >= 1)) {
      throw new RangeError(`token bucket burst must be an integer >= 1, got ${options.burst}`);
    }
    this.perSecond = options.perSecond;
    this.burst = options.burst;
    this.#clock = options.clock ?? systemClock;
    this.#sleep = options.sleep ?? sleep;
    this.#tokens = options.burst;
    this.#last = this.#clock.now();
  }

  #refill(): void {
    const now = this.#clock.now();
    // A clock that steps backwards adds nothing rather than removing tokens.
    const elapsed = Math.max(0, now - this.#last);
    this.#last = Math.max(this.#last, now);
    this.#tokens = Math.min(this.burst, this.#tokens + (elapsed * this.perSecond) / 1000);
  }

  /** Tokens available right now (negative while callers are queued). */
  get available(): number {
    this.#refill();
    return this.#tokens;
  }

  /** Takes a token if one is available now, without waiting. */
  tryTake(): boolean {
    this.#refill();
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  /**
   * Waits for a token. When `signal` aborts first, the reservation is returned and the promise
   * rejects with the signal's reason. When the wait would be longer than `maxWaitMs` (the
   * caller's remaining deadline), rejects at once with a {@link RateLimitExceeded} and reserves
   * nothing, as client-go's limiter (`x/time/rate`) does: a reservation that cannot be used
   * before its deadline would only push every later caller past theirs, and under sustained
   * overload no call would get through at all.
   */
  async take(signal?: AbortSignal, maxWaitMs?: number): Promise<void> {
    signal?.throwIfAborted();
    this.#refill();
    if (this.#tokens < 1 && maxWaitMs !== undefined) {
      const wouldWait = Math.ceil(((1 - this.#tokens) * 1000) / this.perSecond);
      if (wouldWait > maxWaitMs) throw new RateLimitExceeded();
    }
    this.#tokens -= 1;
    if (this.#tokens >= 0) return;
    const waitMs = Math.ceil((-this.#tokens * 1000) / this.perSecond);
    try {
      await this.#sleep(waitMs, signal);
    } catch (e) {
      this.#tokens += 1;
      throw e;
    }
  }
}
