/**
 * Counter-based change notifications: every `broadcast()` bumps a counter, and each receiver wakes
 * when the counter has moved past what it last saw. Any number of broadcasts between two looks
 * count as one, so a slow listener never falls behind.
 *
 * A receiver may also declare an interest: while it waits, a broadcast wakes it only once
 * {@link Broadcaster.wakeInterested} finds its interest met. The executor loops use this to sleep
 * through the many updates that carry no action for them: with thousands of Runners, waking every
 * loop on every update and re-arming its wait was a large share of the agent's allocations.
 *
 * @example
 * ```ts
 * import { Broadcaster } from "./broadcast.ts";
 * const changes = new Broadcaster();
 * const receiver = changes.newReceiver();
 * const stop = new AbortController();
 * const listening = (async () => {
 *   while (await receiver.wait(stop.signal)) {
 *     receiver.awake();
 *     console.log("something changed");
 *     stop.abort();
 *   }
 * })();
 * changes.broadcast();
 * await listening;
 * ```
 *
 * @module
 */

import { onAbort } from "./abort.ts";
import { wakeOrAbort } from "./async.ts";
import type { Alarm } from "./alarm.ts";

/** @internal */
export interface Waiter<T> {
  wake: () => void;
  interest?: (value: T) => boolean;
}

/** Announces "something changed" to every {@link Receiver} it created. */
export class Broadcaster<T = unknown> {
  #count = 0;
  #waiters = new Set<Waiter<T>>();
  #interested = 0;

  /** Number of broadcasts so far. */
  get count(): number {
    return this.#count;
  }

  /** True while a receiver with an interest waits; {@link wakeInterested} decides for it. */
  get hasInterestedWaiters(): boolean {
    return this.#interested > 0;
  }

  /**
   * Wakes every current waiter without an interest; receivers that are not waiting see the
   * broadcast on their next `wait`.
   */
  broadcast(): void {
    this.#count++;
    this.#wake((waiter) => waiter.interest === undefined);
  }

  /**
   * Wakes the waiting receivers whose interest `value` (what changed into) meets; `null` wakes
   * all of them, for when the value cannot be known.
   */
  wakeInterested(value: T | null): void {
    if (this.#interested === 0) return;
    this.#wake((waiter) =>
      waiter.interest !== undefined && (value === null || waiter.interest(value))
    );
  }

  /** Unsubscribes the waiters `select` picks, then wakes them. */
  #wake(select: (waiter: Waiter<T>) => boolean): void {
    if (this.#waiters.size === 0) return;
    const woken: Waiter<T>[] = [];
    for (const waiter of this.#waiters) if (select(waiter)) woken.push(waiter);
    for (const waiter of woken) this.#remove(waiter);
    for (const waiter of woken) waiter.wake();
  }

  /** A receiver that sees only broadcasts made after this call. */
  newReceiver(interest?: (value: T) => boolean): Receiver<T> {
    return new Receiver(this, this.#count, interest);
  }

  /** @internal Registers a waiter kept by its owner for the next broadcast (again: no-op). */
  attach(waiter: Waiter<T>): void {
    if (this.#waiters.has(waiter)) return;
    this.#waiters.add(waiter);
    if (waiter.interest !== undefined) this.#interested++;
  }

  /** @internal Removes a waiter registered with {@link attach}, if it still is. */
  detach(waiter: Waiter<T>): void {
    this.#remove(waiter);
  }

  #remove(waiter: Waiter<T>): void {
    if (this.#waiters.delete(waiter) && waiter.interest !== undefined) this.#interested--;
  }
}

/** One listener's view of a {@link Broadcaster}. */
export class Receiver<T = unknown> {
  #broadcaster: Broadcaster<T>;
  #seen: number;
  #interest: ((value: T) => boolean) | undefined;
  #waiter: Waiter<T> | null = null;

  constructor(broadcaster: Broadcaster<T>, seen: number, interest?: (value: T) => boolean) {
    this.#broadcaster = broadcaster;
    this.#seen = seen;
    this.#interest = interest;
  }

  /** True when a broadcast happened that {@link awake} has not yet marked as seen. */
  get pending(): boolean {
    return this.#broadcaster.count > this.#seen;
  }

  /**
   * Calls `wake` at the next broadcast meeting the receiver's interest, once, without marking it
   * seen; {@link disarm} takes it back. One waiter object serves every arming, so a loop that
   * arms and re-arms for the life of a Runner allocates nothing per wait.
   */
  arm(wake: () => void): void {
    if (this.#waiter === null || this.#waiter.wake !== wake) {
      if (this.#waiter !== null) this.#broadcaster.detach(this.#waiter);
      this.#waiter = { wake, interest: this.#interest };
    }
    this.#broadcaster.attach(this.#waiter);
  }

  /** Takes back the wake-up {@link arm} registered, if it has not fired. */
  disarm(): void {
    if (this.#waiter !== null) this.#broadcaster.detach(this.#waiter);
  }

  /** Marks every broadcast so far as seen. */
  awake(): void {
    this.#seen = this.#broadcaster.count;
  }

  /**
   * Resolves `true` once a broadcast is pending (at once if one already is; while waiting, only
   * one that meets the receiver's interest), `false` as soon as `signal` aborts. Does not mark the
   * broadcast seen: call {@link awake} before looking at what changed. One wait at a time.
   */
  wait(signal: AbortSignal): Promise<boolean> {
    if (signal.aborted) return Promise.resolve(false);
    if (this.pending) return Promise.resolve(true);
    // The wake and abort callbacks are the receiver's own, so a wait allocates only its promise.
    return new Promise((resolve) => {
      this.#resolve = resolve;
      this.#removeAbort = onAbort(signal, this.#aborted);
      this.arm(this.#woken);
    });
  }

  #resolve: ((woke: boolean) => void) | null = null;
  #removeAbort: (() => void) | null = null;
  readonly #woken = () => this.#endWait(true);
  readonly #aborted = () => this.#endWait(false);

  #endWait(woke: boolean): void {
    const resolve = this.#resolve;
    if (resolve === null) return;
    this.#resolve = null;
    this.#removeAbort?.();
    this.#removeAbort = null;
    this.disarm();
    resolve(woke);
  }
}

/** What ended a {@link changeOrAlarm}. */
export type Woke = "change" | "alarm" | "abort";

/**
 * Waits for a broadcast `receiver` has not seen, for `alarm` to ring, or for `signal` to abort,
 * whichever comes first; a change that comes with the alarm wins. Marks nothing seen.
 */
export async function changeOrAlarm<T>(
  receiver: Receiver<T>,
  alarm: Alarm,
  signal: AbortSignal,
): Promise<Woke> {
  if (!receiver.pending && !alarm.rang && !signal.aborted) {
    await wakeOrAbort(signal, (wake) => {
      if (wake === undefined) receiver.disarm();
      else receiver.arm(wake);
      alarm.onRing(wake);
    });
  }
  if (signal.aborted) return "abort";
  return receiver.pending ? "change" : "alarm";
}
