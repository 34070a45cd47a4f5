/**
 * Counts events in a sliding time window (the reference's failure-rate counters).
 *
 * @module
 */

import type { Clock } from "../../lib/clock.ts";

/** A sliding-window event counter. */
export class RecentCounter {
  #times: number[] = [];

  constructor(private readonly windowMs: number, private readonly clock: Clock) {}

  inc(): void {
    this.#times.push(this.clock.now());
  }

  /** Events within the last window; older ones are forgotten. */
  get(): number {
    const cutoff = this.clock.now() - this.windowMs;
    let drop = 0;
    while (drop < this.#times.length && this.#times[drop] <= cutoff) drop++;
    if (drop > 0) this.#times.splice(0, drop);
    return this.#times.length;
  }
}
