/**
 * What every model of the simulated node shares: virtual time, the trace, its own stream of
 * randomness, the tally for the summary, and the way to report a broken promise.
 *
 * @module
 */

import type { VirtualClock } from "../../lib/virtual_clock.ts";
import type { SeededRandom } from "../../lib/random.ts";
import type { Trace } from "./trace.ts";
import type { ProcessClock } from "./driver.ts";

/** A broken invariant: which one, what showed it, and when. */
export interface Violation {
  invariant: string;
  detail: string;
  /** Virtual ms since the start. */
  atMs: number;
  /** The last trace lines before it. */
  recent: string[];
}

/** Counts for the run's summary, by name. */
export class Tally {
  readonly #counts = new Map<string, number>();

  add(name: string, n = 1): void {
    this.#counts.set(name, (this.#counts.get(name) ?? 0) + n);
  }

  get(name: string): number {
    return this.#counts.get(name) ?? 0;
  }

  /** Every name starting with `prefix`, without the prefix, sorted. */
  group(prefix: string): [string, number][] {
    return [...this.#counts]
      .filter(([name]) => name.startsWith(prefix))
      .map(([name, n]): [string, number] => [name.slice(prefix.length), n])
      .sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0);
  }
}

/** One incarnation of the agent, as the models see it. */
export interface AgentProcess {
  readonly id: number;
  readonly clock: ProcessClock;
  readonly alive: boolean;
}

/** Shared by every model. */
export interface SimContext {
  readonly clock: VirtualClock;
  readonly trace: Trace;
  readonly tally: Tally;
  /** Epoch ms when the run started. */
  readonly startMs: number;
  /** Reports a broken invariant; the run stops after the current timer. */
  violate(invariant: string, detail: string): void;
  /** A fresh, independent random stream (drawn in a fixed order at set-up). */
  fork(): SeededRandom;
}
