/**
 * Counter-based change notifications (agent.md 3.5): every state update bumps a counter, and each
 * receiver wakes when the counter has moved past what it last saw.
 *
 * A receiver may also declare an interest: while it waits, a broadcast wakes it only once
 * {@link Broadcaster.wakeInterested} finds its interest met. The executor loops use this to sleep
 * through the many updates that carry no action for them: with thousands of Runners, waking every
 * loop on every update and re-arming its wait was a large share of the agent's allocations.
 *
 * @module
 */

import { onAbort } from "../util/async.ts";

interface Waiter<T> {
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

  /** @internal Registers `wake` for the next broadcast; returns its removal. */
  subscribe(wake: () => void, interest?: (value: T) => boolean): () => void {
    const waiter: Waiter<T> = { wake, interest };
    this.#waiters.add(waiter);
    if (interest !== undefined) this.#interested++;
    return () => this.#remove(waiter);
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
   * Resolves `true` once a broadcast is pending (at once if one already is; while waiting, only
   * one that meets the receiver's interest), or `false` when `signal` aborts first. Never
   * rejects. Does not mark the broadcast as seen.
   */
  wait(signal?: AbortSignal): Promise<boolean> {
    if (signal?.aborted) return Promise.resolve(false);
    if (this.pending) return Promise.resolve(true);
    const { promise, resolve } = Promise.withResolvers<boolean>();
    const unsubscribe = this.#broadcaster.subscribe(() => {
      removeAbort?.();
      resolve(true);
    }, this.#interest);
    const removeAbort = signal === undefined ? undefined : onAbort(signal, () => {
      unsubscribe();
      resolve(false);
    });
    return promise;
  }

  /**
   * Calls `wake` once at the next broadcast (without marking it seen); returns its removal.
   * For waiters that race a broadcast against something else without an `AbortSignal`.
   */
  onNext(wake: () => void): () => void {
    return this.#broadcaster.subscribe(wake);
  }

  /** Marks every broadcast so far as seen. */
  awake(): void {
    this.#seen = this.#broadcaster.count;
  }
}
