/**
 * A clock whose time moves only when told to: the tests' clock and the node simulator's.
 *
 * Timers fire in order of their due time, and timers due at the same moment in the order they
 * were set, so a run that sets the same timers fires them the same way every time. Between two
 * timers, {@link VirtualClock.advance} lets every promise that the last one settled run to its
 * end, as the real event loop does between two macrotasks.
 *
 * @example
 * ```ts
 * import { VirtualClock } from "./virtual_clock.ts";
 * const clock = new VirtualClock();
 * const slept = clock.sleep(60_000);
 * await clock.advance(60_000); // returns at once: a minute of virtual time
 * console.log(await slept); // true
 * ```
 *
 * @module
 */

import { BaseClock, type Cancel, type Instant } from "./clock.ts";

/** 2026-01-01T00:00:00Z: a fixed, unremarkable start for virtual time. */
export const VIRTUAL_EPOCH_MS = Date.UTC(2026, 0, 1);

interface VirtualTimer {
  at: number;
  seq: number;
  fire: (() => void) | null;
}

/** Lets every pending microtask run, and those they queue in turn. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Options of {@link VirtualClock}. */
export interface VirtualClockOptions {
  /**
   * Epoch milliseconds at the start.
   * @default {@link VIRTUAL_EPOCH_MS}
   */
  startMs?: number;
  /**
   * How the clock waits for the promises a fired timer settled before it fires the next one.
   * The simulator passes its own, cheaper barrier.
   * @default {@link settle}
   */
  settle?: () => Promise<void>;
}

/** A {@link BaseClock} on virtual time. */
export class VirtualClock extends BaseClock {
  #now: number;
  #seq = 0;
  // A binary min-heap on (at, seq): the simulator keeps tens of thousands of timers.
  #heap: VirtualTimer[] = [];
  #live = 0;
  readonly #settle: () => Promise<void>;
  readonly #startMs: number;

  constructor(options: VirtualClockOptions = {}) {
    super();
    this.#startMs = options.startMs ?? VIRTUAL_EPOCH_MS;
    this.#now = this.#startMs;
    this.#settle = options.settle ?? settle;
  }

  now(): number {
    return this.#now;
  }

  /** Wall time is virtual time; monotonic time counts from the clock's start. */
  instant(): Instant {
    const ns = BigInt(Math.round(this.#now * 1000)) * 1000n;
    return { wallNs: ns, monoNs: ns - BigInt(this.#startMs) * 1_000_000n };
  }

  timer(ms: number, fire: () => void): Cancel {
    const timer: VirtualTimer = {
      at: this.#now + (ms > 0 ? ms : 0),
      seq: this.#seq++,
      fire,
    };
    this.#push(timer);
    this.#live++;
    return () => {
      if (timer.fire === null) return;
      timer.fire = null;
      this.#live--;
    };
  }

  /** How many timers are set and have neither fired nor been cancelled. */
  get pendingTimers(): number {
    return this.#live;
  }

  /** When the next timer is due, or `undefined` when none is set. */
  nextDue(): number | undefined {
    this.#dropCancelled();
    return this.#heap[0]?.at;
  }

  /**
   * Fires the next timer due at or before `limit`, moving time to its due time; returns false
   * (and moves nothing) when there is none. The caller lets its promises settle.
   */
  fireNext(limit = Infinity): boolean {
    this.#dropCancelled();
    const head = this.#heap[0];
    if (head === undefined || head.at > limit) return false;
    this.#pop();
    const fire = head.fire!;
    head.fire = null;
    this.#live--;
    if (head.at > this.#now) this.#now = head.at;
    fire();
    return true;
  }

  /**
   * Moves time forward by `ms`, firing every timer that falls due on the way, each at its own due
   * time and with the promises it settled run before the next. Resolves at the new time.
   */
  async advance(ms: number, settle?: () => Promise<void>): Promise<void> {
    await this.runUntil(this.#now + ms, settle);
  }

  /**
   * Like {@link advance}, to the absolute time `at` (epoch ms). `settle` replaces the clock's own
   * barrier for this call, for a test that knows more about what its code waits for.
   */
  async runUntil(at: number, settle = this.#settle): Promise<void> {
    await settle();
    while (this.fireNext(at)) await settle();
    if (at > this.#now) this.#now = at;
    await settle();
  }

  #dropCancelled(): void {
    while (this.#heap.length > 0 && this.#heap[0].fire === null) this.#pop();
  }

  #push(timer: VirtualTimer): void {
    const heap = this.#heap;
    heap.push(timer);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(heap[i], heap[parent])) break;
      [heap[i], heap[parent]] = [heap[parent], heap[i]];
      i = parent;
    }
  }

  #pop(): void {
    const heap = this.#heap;
    const last = heap.pop()!;
    if (heap.length === 0) return;
    heap[0] = last;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let least = i;
      if (left < heap.length && before(heap[left], heap[least])) least = left;
      if (right < heap.length && before(heap[right], heap[least])) least = right;
      if (least === i) return;
      [heap[i], heap[least]] = [heap[least], heap[i]];
      i = least;
    }
  }
}

function before(a: VirtualTimer, b: VirtualTimer): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
