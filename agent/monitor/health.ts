/**
 * The periodic health checks of one vm-monitor connection: a probe every period on a fixed grid,
 * and the end of the connection once probes have failed for longer than allowed.
 *
 * @module
 */

import type { Clock } from "../../lib/clock.ts";
import { errorText } from "../../lib/result.ts";
import type { Log } from "../../lib/log.ts";

/** The reference's hard-coded health-check period. */
export const DEFAULT_HEALTH_CHECK_INTERVAL_MS = 5000;

export interface HealthCheckOptions {
  clock: Clock;
  intervalMs: number;
  /** `monitor.maxHealthCheckSequentialFailuresSeconds`. */
  maxSequentialFailuresMs: number;
  log: Log;
  /** One probe; rejects when it fails. */
  probe(): Promise<void>;
  /** A probe succeeded (feeds "last successful monitor communication"). */
  onSuccess(): void;
}

/**
 * Probes every period on a fixed grid from the start, like Go's ticker: a check that overran a
 * tick runs the next one at once, and further missed ticks are dropped. Resolves `null` when
 * `signal` aborts (a probe in flight is then ignored), or with the error that must end the
 * connection once probes have been failing for longer than `maxSequentialFailuresMs`.
 */
export async function runHealthChecks(
  signal: AbortSignal,
  opts: HealthCheckOptions,
): Promise<Error | null> {
  const { clock, log, intervalMs: period, maxSequentialFailuresMs: maxMs } = opts;
  const start = clock.now();
  let tick = start;
  let okSequence = 0;
  let failSequence = 0;
  let failStreakStart: number | null = null;
  for (;;) {
    const now = clock.now();
    if (now < tick + period) {
      tick += period;
      if (!await clock.sleep(tick - now, signal)) return null;
    } else {
      tick = start + Math.floor((now - start) / period) * period;
    }
    const began = clock.now();
    let failure: unknown;
    try {
      await opts.probe();
    } catch (err) {
      failure = err;
    }
    if (signal.aborted) return null;
    const ended = clock.now();
    const duration = ended - began;
    if (failure === undefined) {
      failSequence = 0;
      failStreakStart = null;
      okSequence++;
      if (okSequence % 10 === 0) {
        log.info("vm-monitor health check successful", { duration, okSequence });
      }
      try {
        opts.onSuccess();
      } catch (err) {
        log.error("health check hook failed", { error: errorText(err) });
      }
      continue;
    }
    okSequence = 0;
    failSequence++;
    log.error("vm-monitor health check failed", {
      duration,
      failSequence,
      error: errorText(failure),
    });
    if (failStreakStart === null) {
      failStreakStart = ended;
    } else if (ended - failStreakStart > maxMs) {
      log.error("vm-monitor health checks failing for too long, closing connection", {
        failSequence,
      });
      return new Error(
        `vm-monitor health checks have been failing for more than ` +
          `${maxMs} ms (${failSequence} in a row)`,
      );
    }
  }
}
