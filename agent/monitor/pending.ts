/**
 * The requests of one vm-monitor connection that wait for their reply: even ids from 2, each
 * registered before its frame is sent so that a fast reply always finds it, each bounded by its
 * own timeout.
 *
 * @module
 */

import type { Cancel, Clock } from "../../lib/clock.ts";
import { err, ok, type Result } from "../../lib/result.ts";
import type { InboundMessage, ReplyType, RequestType } from "./messages.ts";

/** Why a request got no usable reply; `[error: <label>]` is its outbound metric code. */
export interface RequestFailure {
  label: string;
  error: Error;
}

/** What a request waits for. */
export type RequestOutcome = Result<InboundMessage, RequestFailure>;

interface Waiter {
  expect: ReplyType;
  settle(outcome: RequestOutcome): void;
  cancelTimer: Cancel;
}

/** One request, registered under its id. */
export interface Pending {
  readonly id: number;
  readonly outcome: Promise<RequestOutcome>;
  /** Forgets the request (its frame could not be sent). */
  cancel(): void;
}

/** The waiting requests of one connection, by id. */
export class PendingRequests {
  readonly #clock: Clock;
  readonly #waiters = new Map<number, Waiter>();
  #lastId = 0;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  get size(): number {
    return this.#waiters.size;
  }

  /** Registers the next request, which fails with a timeout after `timeoutMs`. */
  open(type: RequestType, expect: ReplyType, timeoutMs: number): Pending {
    const id = this.#lastId += 2;
    const { promise, resolve } = Promise.withResolvers<RequestOutcome>();
    const waiter: Waiter = {
      expect,
      settle: resolve,
      cancelTimer: this.#clock.timer(timeoutMs, () => {
        if (this.#waiters.get(id) !== waiter) return;
        this.#waiters.delete(id);
        resolve(err({
          label: "timed out waiting for response",
          error: new Error(`timed out waiting ${timeoutMs} ms for vm-monitor response to ${type}`),
        }));
      }),
    };
    this.#waiters.set(id, waiter);
    return { id, outcome: promise, cancel: () => this.#take(id) };
  }

  /** The reply type the request with `id` expects, if one waits under that id. */
  expected(id: number): ReplyType | undefined {
    return this.#waiters.get(id)?.expect;
  }

  /** Answers the request with `id`; false when none waits under that id. */
  reply(id: number, message: InboundMessage): boolean {
    const waiter = this.#take(id);
    waiter?.settle(ok(message));
    return waiter !== undefined;
  }

  /** Fails the request with `id`; false when none waits under that id. */
  fail(id: number, failure: RequestFailure): boolean {
    const waiter = this.#take(id);
    waiter?.settle(err(failure));
    return waiter !== undefined;
  }

  /** Fails every waiting request. */
  failAll(failure: RequestFailure): void {
    for (const id of [...this.#waiters.keys()]) this.fail(id, failure);
  }

  #take(id: number): Waiter | undefined {
    const waiter = this.#waiters.get(id);
    if (waiter === undefined) return undefined;
    this.#waiters.delete(id);
    waiter.cancelTimer();
    return waiter;
  }
}
