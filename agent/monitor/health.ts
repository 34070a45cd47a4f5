/**
 * The periodic health checks of one vm-monitor connection: a probe every period on a fixed grid,
 * and the end of the connection once probes have failed for longer than allowed.
 *
 * @module
 */

import type { Cancel, Clock } from "../../lib/clock.ts";
import { errorText, toError } from "../../lib/result.ts";
import type { MonitorLog } from "./dispatcher.ts";

/** The reference's hard-coded health-check period (protocols.md §1.8). */
export const DEFAULT_HEALTH_CHECK_INTERVAL_MS = 5000;

export interface HealthCheckOptions {
  clock: Clock;
  intervalMs: number;
  /** `monitor.maxHealthCheckSequentialFailuresSeconds`. */
  maxSequentialFailuresMs: number;
  log: MonitorLog;
  /** One probe; rejects when it fails. */
  probe(): Promise<void>;
  /** Whether the connection has ended; a probe that returns after that is ignored. */
  ended(): boolean;
  /** A probe succeeded (feeds "last successful monitor communication"). */
  onSuccess(): void;
  /** Ends the connection. */
  fail(error: Error): void;
}

/**
 * Probes every period on a fixed grid from the connect time, like Go's ticker: a check that
 * overran a tick runs the next one at once, and further missed ticks are dropped. Between
 * checks only the timer is held.
 */
export class HealthChecks {
  readonly #opts: HealthCheckOptions;
  /** The grid starts here; `#lastTick` is the grid point last checked for. */
  readonly #start: number;
  #lastTick: number;
  #cancelTimer: Cancel | undefined;
  readonly #onTick = () => {
    this.#cancelTimer = undefined;
    this.#lastTick += this.#opts.intervalMs;
    this.#startCheck();
  };
  #okSequence = 0;
  #failSequence = 0;
  #failStreakStart: number | null = null;

  constructor(opts: HealthCheckOptions) {
    this.#opts = opts;
    this.#start = this.#lastTick = opts.clock.now();
  }

  /** Schedules the first check, one period after construction. */
  start(): void {
    this.#schedule();
  }

  /** Cancels the next check; one in flight finds the connection ended and stops. */
  stop(): void {
    this.#cancelTimer?.();
  }

  #schedule(): void {
    const { clock, intervalMs: period } = this.#opts;
    const now = clock.now();
    if (now < this.#lastTick + period) {
      this.#cancelTimer = clock.timer(this.#lastTick + period - now, this.#onTick);
      return;
    }
    const start = this.#start;
    this.#lastTick = start + Math.floor((now - start) / period) * period;
    this.#startCheck();
  }

  #startCheck(): void {
    this.#run().catch((err) => this.#opts.fail(toError(err)));
  }

  async #run(): Promise<void> {
    const { clock, log } = this.#opts;
    const began = clock.now();
    let failure: unknown;
    try {
      await this.#opts.probe();
    } catch (err) {
      failure = err;
    }
    if (this.#opts.ended()) return;
    const ended = clock.now();
    const duration = ended - began;
    if (failure === undefined) {
      this.#failSequence = 0;
      this.#failStreakStart = null;
      const okSequence = ++this.#okSequence;
      if (okSequence % 10 === 0) {
        log.info("vm-monitor health check successful", { duration, okSequence });
      }
      try {
        this.#opts.onSuccess();
      } catch (err) {
        log.error("health check hook failed", { error: errorText(err) });
      }
      return this.#schedule();
    }
    this.#okSequence = 0;
    const failSequence = ++this.#failSequence;
    log.error("vm-monitor health check failed", {
      duration,
      failSequence,
      error: errorText(failure),
    });
    const maxMs = this.#opts.maxSequentialFailuresMs;
    if (this.#failStreakStart === null) {
      this.#failStreakStart = ended;
    } else if (ended - this.#failStreakStart > maxMs) {
      const error = new Error(
        `vm-monitor health checks have been failing for more than ` +
          `${maxMs} ms (${failSequence} in a row)`,
      );
      log.error("vm-monitor health checks failing for too long, closing connection", {
        failSequence,
      });
      return this.#opts.fail(error);
    }
    this.#schedule();
  }
}
