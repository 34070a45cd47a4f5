/**
 * A timer a loop re-aims between its waits.
 *
 * Aiming it again at the moment it is already set for keeps the timer that is running. A loop
 * that looks at its deadline after every change of state (the executor's sleeper, several times a
 * minute per VM) mostly finds it where it was; a fresh timer each time would live long enough to be
 * promoted to V8's old generation, for thousands of VMs at once.
 *
 * @example
 * ```ts
 * import { Alarm } from "./alarm.ts";
 * import { VirtualClock } from "./virtual_clock.ts";
 * const clock = new VirtualClock();
 * const alarm = new Alarm(clock);
 * alarm.setAt(clock.now() + 1_000);
 * await clock.advance(1_000);
 * console.log(alarm.rang); // true
 * ```
 *
 * @module
 */

import type { Cancel, Clock } from "./clock.ts";

/** One re-aimable timer on a {@link Clock}. */
export class Alarm {
  readonly #clock: Clock;
  #at: number | undefined;
  #cancel: Cancel | undefined;
  #rang = false;
  #onRing: (() => void) | undefined;
  readonly #ring = () => {
    this.#cancel = undefined;
    this.#rang = true;
    this.#onRing?.();
  };

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** True once the alarm rang, until it is set again. */
  get rang(): boolean {
    return this.#rang;
  }

  /**
   * Rings at `at` (epoch ms on the clock; at once if that has passed), or never for `undefined`.
   * A running timer already due at `at` is kept.
   */
  setAt(at: number | undefined): void {
    if (at === this.#at && this.#cancel !== undefined) return;
    this.#cancel?.();
    this.#cancel = undefined;
    this.#rang = false;
    this.#at = at;
    if (at !== undefined) this.#cancel = this.#clock.timer(at - this.#clock.now(), this.#ring);
  }

  /** Calls `wake` when the alarm rings (`undefined` takes it back). */
  onRing(wake: (() => void) | undefined): void {
    this.#onRing = wake;
  }
}
