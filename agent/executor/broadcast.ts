/**
 * Counter-based change notifications (agent.md 3.5): every state update bumps a counter, and each
 * receiver wakes when the counter has moved past what it last saw.
 *
 * @module
 */

import { onAbort } from "../util/async.ts";

/** Announces "something changed" to every {@link Receiver} it created. */
export class Broadcaster {
  #count = 0;
  #waiters = new Set<() => void>();

  /** Number of broadcasts so far. */
  get count(): number {
    return this.#count;
  }

  /** Wakes every current waiter; receivers that are not waiting see it on their next `wait`. */
  broadcast(): void {
    this.#count++;
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const wake of waiters) wake();
  }

  /** A receiver that sees only broadcasts made after this call. */
  newReceiver(): Receiver {
    return new Receiver(this, this.#count);
  }

  /** @internal Registers `wake` for the next broadcast; returns its removal. */
  subscribe(wake: () => void): () => void {
    this.#waiters.add(wake);
    return () => this.#waiters.delete(wake);
  }
}

/** One listener's view of a {@link Broadcaster}. */
export class Receiver {
  #broadcaster: Broadcaster;
  #seen: number;

  constructor(broadcaster: Broadcaster, seen: number) {
    this.#broadcaster = broadcaster;
    this.#seen = seen;
  }

  /** True when a broadcast happened that {@link awake} has not yet marked as seen. */
  get pending(): boolean {
    return this.#broadcaster.count > this.#seen;
  }

  /**
   * Resolves `true` once a broadcast is pending (at once if one already is), or `false` when
   * `signal` aborts first. Never rejects. Does not mark the broadcast as seen.
   */
  wait(signal?: AbortSignal): Promise<boolean> {
    if (signal?.aborted) return Promise.resolve(false);
    if (this.pending) return Promise.resolve(true);
    const { promise, resolve } = Promise.withResolvers<boolean>();
    const unsubscribe = this.#broadcaster.subscribe(() => {
      removeAbort?.();
      resolve(true);
    });
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
