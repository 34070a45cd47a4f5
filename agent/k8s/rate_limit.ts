/**
 * Client-side throttling of Kubernetes API calls, like client-go's default token bucket
 * (5 requests/s, burst 10, shared by all NeonVM calls of the process, as client-go's default), with
 * the upscales the vm-monitor asked for served first, then the other upscales, then the rest.
 *
 * @module
 */

import { type Clock, systemClock } from "../../lib/clock.ts";
import { onAbort } from "../../lib/abort.ts";

/** client-go's error when the limiter cannot serve a call before its deadline. */
export class RateLimitExceeded extends Error {
  override name = "RateLimitExceeded";
  constructor() {
    super(
      "client rate limiter Wait returned an error: rate: Wait(n=1) would exceed context deadline",
    );
  }
}

/**
 * How urgently a caller needs its token, most urgent first:
 * - `urgent`: the vm-monitor asked for more resources (the VM is close to running out of
 *   memory); goes ahead of every other caller and may take any token.
 * - `upscale`: a VM needs more resources now (its load rose); goes ahead of every `normal`
 *   caller and may use the tokens reserved for upscales, but leaves `urgentReserve`.
 * - `normal`: start-up resizes, downscales, lists; leaves `upscaleReserve`.
 */
export type TokenPriority = "urgent" | "upscale" | "normal";

/** The priorities in serving order. */
const PRIORITIES: readonly TokenPriority[] = ["urgent", "upscale", "normal"];

export interface TokenBucketOptions {
  /** Sustained rate: tokens added per second. */
  perSecond: number;
  /** Bucket size: how many calls may go at once after a quiet period. */
  burst: number;
  /**
   * Tokens only upscale and urgent callers may take (integer, below `burst`; default half the
   * burst, rounded down): a backlog of normal calls leaves them in the bucket, so an upscale
   * goes at once instead of behind the backlog.
   */
  upscaleReserve?: number;
  /**
   * Of those, the tokens only urgent callers may take (integer, at most `upscaleReserve`;
   * default half of it, rounded up): a backlog of upscales leaves them in the bucket, so an
   * urgent call goes at once instead of behind the backlog.
   */
  urgentReserve?: number;
  /** Times the refills and the waits for them. */
  clock?: Clock;
}

interface Waiter {
  /** Epoch ms after which the grant is useless to the caller. */
  deadline: number;
  resolve(): void;
  reject(reason: unknown): void;
  removeAbort?: () => void;
}

/** One priority: the tokens its callers must leave in the bucket, and its callers in order. */
interface Level {
  reserve: number;
  queue: Waiter[];
}

// Refills are sums of fractions: without a tolerance a token that is due can come out as
// 0.9999999999999999 and cost an extra timer round.
const EPSILON = 1e-9;

function checkReserve(what: string, value: number, ok: boolean, bound: string): void {
  if (!(Number.isInteger(value) && value >= 0 && ok)) {
    throw new RangeError(
      `token bucket ${what} reserve must be an integer >= 0 and ${bound}, got ${value}`,
    );
  }
}

/**
 * A token bucket that starts full. Waiting callers are served as tokens refill, level by level
 * (every queued urgent caller, then every queued upscale, then every queued normal caller),
 * each level in call order. A caller takes a token only when its level's reserve remains after
 * it (urgent: none; upscale: `urgentReserve`; normal: `upscaleReserve`), so each level alone
 * still gets the full sustained rate but a burst of only `burst` less its reserve. However
 * callers are ordered, no more tokens go out than a plain bucket of `perSecond` and `burst`
 * allows.
 */
export class TokenBucket {
  readonly perSecond: number;
  readonly burst: number;
  readonly upscaleReserve: number;
  readonly urgentReserve: number;
  readonly #clock: Clock;
  #tokens: number;
  #last: number;
  /** In serving order, as {@link PRIORITIES}; reserves never decrease along it. */
  readonly #levels: Level[];
  /** The one pending wake-up, for when the first waiter's token will have refilled. */
  #timer: { at: number; controller: AbortController } | undefined;

  constructor(options: TokenBucketOptions) {
    if (!(options.perSecond > 0)) {
      throw new RangeError(`token bucket rate must be positive, got ${options.perSecond}`);
    }
    if (!(Number.isInteger(options.burst) && options.burst >= 1)) {
      throw new RangeError(`token bucket burst must be an integer >= 1, got ${options.burst}`);
    }
    const upscaleReserve = options.upscaleReserve ?? Math.floor(options.burst / 2);
    checkReserve(
      "upscale",
      upscaleReserve,
      upscaleReserve < options.burst,
      `< burst (${options.burst})`,
    );
    const urgentReserve = options.urgentReserve ?? Math.ceil(upscaleReserve / 2);
    checkReserve(
      "urgent",
      urgentReserve,
      urgentReserve <= upscaleReserve,
      `<= the upscale reserve (${upscaleReserve})`,
    );
    this.perSecond = options.perSecond;
    this.burst = options.burst;
    this.upscaleReserve = upscaleReserve;
    this.urgentReserve = urgentReserve;
    const reserves: Record<TokenPriority, number> = {
      urgent: 0,
      upscale: urgentReserve,
      normal: upscaleReserve,
    };
    this.#levels = PRIORITIES.map((priority) => ({ reserve: reserves[priority], queue: [] }));
    this.#clock = options.clock ?? systemClock;
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

  /** The index of `priority` in {@link #levels}. */
  #levelOf(priority: TokenPriority): number {
    const level = PRIORITIES.indexOf(priority);
    if (level < 0) throw new TypeError(`unknown token priority ${String(priority)}`);
    return level;
  }

  /** Callers queued at the levels before `level`: all served ahead of any caller at it. */
  #queuedBefore(level: number): number {
    let n = 0;
    for (let i = 0; i < level; i++) n += this.#levels[i].queue.length;
    return n;
  }

  /**
   * The balance a caller at `level` needs to be served once everyone ahead of it has been:
   * `ahead` tokens for them, one for itself, and its level's reserve left over. Reserves grow
   * down the levels, so whoever is ahead needed no more than this when served.
   */
  #need(level: number, ahead: number): number {
    return ahead + 1 + this.#levels[level].reserve;
  }

  /** Milliseconds until the balance reaches `need`, 0 if it has. */
  #msUntil(need: number): number {
    const missing = need - this.#tokens;
    return missing <= EPSILON ? 0 : Math.ceil((missing * 1000) / this.perSecond);
  }

  /** The first level with a queued caller, or undefined when nobody waits. */
  #firstWaiting(): number | undefined {
    const level = this.#levels.findIndex((l) => l.queue.length > 0);
    return level < 0 ? undefined : level;
  }

  /** Tokens in the bucket less the callers queued for them: negative while callers wait. */
  get available(): number {
    this.#refill();
    return this.#tokens - this.#queuedBefore(this.#levels.length);
  }

  /** Takes a token if a normal-priority caller could have one now, without waiting. */
  tryTake(): boolean {
    this.#serve();
    const level = this.#levelOf("normal");
    if (this.#msUntil(this.#need(level, this.#queuedBefore(level + 1))) > 0) return false;
    this.#tokens -= 1;
    return true;
  }

  /**
   * Waits for a token. When `signal` aborts first, the caller leaves the queue and the promise
   * rejects with the signal's reason. When the wait would be longer than `maxWaitMs` (the
   * caller's remaining deadline), rejects at once with a {@link RateLimitExceeded} and queues
   * nothing, as client-go's limiter (`x/time/rate`) does: a caller that cannot be served before
   * its deadline would only push every later caller past theirs, and under sustained overload
   * no call would get through at all. A queued caller that a later, more urgent one pushes past
   * its deadline is rejected the same way as soon as that happens.
   */
  take(
    signal?: AbortSignal,
    maxWaitMs?: number,
    priority: TokenPriority = "normal",
  ): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    const level = this.#levelOf(priority);
    // Waiters whose token is due go first, even if their wake-up has not run yet.
    this.#serve();
    const { queue } = this.#levels[level];
    const waitMs = this.#msUntil(this.#need(level, this.#queuedBefore(level + 1)));
    if (waitMs === 0) {
      this.#tokens -= 1;
      this.#rejectLate(level + 1);
      return Promise.resolve();
    }
    if (maxWaitMs !== undefined && waitMs > maxWaitMs) {
      return Promise.reject(new RateLimitExceeded());
    }
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    const waiter: Waiter = {
      deadline: maxWaitMs === undefined ? Infinity : this.#clock.now() + maxWaitMs,
      resolve,
      reject,
    };
    if (signal !== undefined) {
      waiter.removeAbort = onAbort(signal, () => {
        queue.splice(queue.indexOf(waiter), 1);
        reject(signal.reason);
        this.#serve();
      });
    }
    queue.push(waiter);
    this.#rejectLate(level + 1);
    this.#arm();
    return promise;
  }

  /**
   * Rejects the callers queued at `from` or a later level whose turn now comes after their
   * deadline. Only a caller at an earlier level moves their turn later, so this runs after
   * each one, for the levels behind it.
   */
  #rejectLate(from: number): void {
    const now = this.#clock.now();
    let ahead = this.#queuedBefore(from);
    for (let level = from; level < this.#levels.length; level++) {
      const { queue } = this.#levels[level];
      let kept = 0;
      for (const waiter of queue) {
        // The balance by the deadline, were nobody served until then.
        const byDeadline = this.#tokens + ((waiter.deadline - now) * this.perSecond) / 1000;
        if (byDeadline + EPSILON >= this.#need(level, ahead)) {
          queue[kept++] = waiter;
          ahead++;
        } else {
          waiter.removeAbort?.();
          waiter.reject(new RateLimitExceeded());
        }
      }
      queue.length = kept;
    }
  }

  /** Hands refilled tokens to the waiters in turn, then waits for the next one's token. */
  #serve(): void {
    this.#refill();
    for (;;) {
      const level = this.#firstWaiting();
      // A later level needs a larger balance: if the first waiter cannot go, nobody can.
      if (level === undefined || this.#msUntil(this.#need(level, 0)) > 0) break;
      const waiter = this.#levels[level].queue.shift()!;
      this.#tokens -= 1;
      waiter.removeAbort?.();
      waiter.resolve();
    }
    this.#arm();
  }

  /**
   * Keeps the wake-up at the time the first waiter's token will have refilled: brought
   * forward when a more urgent caller arrives, dropped when nobody waits. One that comes too
   * early (its waiter left) is simply re-armed by {@link #serve}.
   */
  #arm(): void {
    const level = this.#firstWaiting();
    if (level === undefined) {
      this.#timer?.controller.abort();
      this.#timer = undefined;
      return;
    }
    const ms = this.#msUntil(this.#need(level, 0));
    const at = this.#clock.now() + ms;
    if (this.#timer !== undefined && this.#timer.at <= at) return;
    this.#timer?.controller.abort();
    const timer = { at, controller: new AbortController() };
    this.#timer = timer;
    const wake = () => {
      if (this.#timer !== timer) return;
      this.#timer = undefined;
      this.#serve();
    };
    this.#clock.sleep(ms, timer.controller.signal).then(wake);
  }
}
