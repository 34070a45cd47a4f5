/**
 * A {@link Log} that writes at most so many lines: for the lines a tenant can cause (one per
 * message its vm-monitor sends, one per scrape of its exporter), so that one VM cannot flood the
 * node's logs. Lines over the allowance are dropped and counted; the next line written carries
 * the count as `suppressedLines`. Error lines have an allowance of their own, so that the line
 * saying why a connection was cut off is not lost among the lines the flood caused.
 *
 * @example
 * ```ts
 * import { rateLimitedLog } from "./log_limit.ts";
 * import { agentLog } from "./log.ts";
 * import { systemClock } from "./clock.ts";
 * const log = rateLimitedLog(agentLog("runner"), { perSecond: 1, burst: 20, clock: systemClock });
 * for (let i = 0; i < 100; i++) log.info("a tenant made this happen"); // 20 lines
 * ```
 *
 * @module
 */

import { Allowance, type AllowanceOptions } from "./allowance.ts";
import { type Log, logEnabled } from "./log.ts";

/** Lines per second and burst of a tenant's log, each for errors and for the rest. */
export const TENANT_LOG_LINES = { perSecond: 1, burst: 50 } as const;

type Level = "debug" | "info" | "warn" | "error";

/** What the loggers made by `with` and `child` share: one allowance, one count. */
interface Budget {
  lines: Allowance;
  errors: Allowance;
  suppressed: number;
}

/** `log`, and every logger derived from it, writing at most the allowance's lines. */
export function rateLimitedLog(log: Log, options: AllowanceOptions): Log {
  return new LimitedLog(log, {
    lines: new Allowance(options),
    errors: new Allowance(options),
    suppressed: 0,
  });
}

/** Methods on the prototype: a Runner holds a dozen loggers, thousands of Runners a process. */
class LimitedLog implements Log {
  readonly #inner: Log;
  readonly #budget: Budget;

  constructor(inner: Log, budget: Budget) {
    this.#inner = inner;
    this.#budget = budget;
  }

  debug(message: string, fields?: Record<string, unknown>): void {
    if (logEnabled(this.#inner, "debug")) this.#write("debug", message, fields);
  }

  info(message: string, fields?: Record<string, unknown>): void {
    this.#write("info", message, fields);
  }

  warn(message: string, fields?: Record<string, unknown>): void {
    this.#write("warn", message, fields);
  }

  error(message: string, fields?: Record<string, unknown>): void {
    this.#write("error", message, fields);
  }

  with(fields: Record<string, unknown>): Log {
    return new LimitedLog(this.#inner.with(fields), this.#budget);
  }

  child(name: string): Log {
    return new LimitedLog(this.#inner.child(name), this.#budget);
  }

  isEnabled(level: "debug"): boolean {
    return logEnabled(this.#inner, level);
  }

  #write(level: Level, message: string, fields?: Record<string, unknown>): void {
    const budget = this.#budget;
    if (!(level === "error" ? budget.errors : budget.lines).take()) {
      budget.suppressed++;
      return;
    }
    if (budget.suppressed > 0) {
      fields = { ...fields, suppressedLines: budget.suppressed };
      budget.suppressed = 0;
    }
    this.#inner[level](message, fields);
  }
}
