/** Shared fixtures for the executor, plugin and scrape tests. */

import type { Log } from "../../lib/log.ts";
import type { TaskScope } from "../../lib/async.ts";
import { BaseClock, type Cancel, type Instant } from "../../lib/clock.ts";
import type { Receiver } from "../../agent/executor/broadcast.ts";

export interface LogLine {
  level: "debug" | "info" | "warn" | "error";
  msg: string;
  fields: Record<string, unknown>;
}

/** A {@link Log} that keeps every line. */
export function recordingLog(): Log & { lines: LogLine[]; messages(level?: string): string[] } {
  const lines: LogLine[] = [];
  const at = (level: LogLine["level"]) => (msg: string, fields: Record<string, unknown> = {}) => {
    lines.push({ level, msg, fields });
  };
  const log = {
    lines,
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    with: () => log,
    child: () => log,
    messages: (level?: string) =>
      lines.filter((l) => level === undefined || l.level === level).map((l) => l.msg),
  };
  return log;
}

/**
 * A clock that only moves when told to (`clock.t = …`); its timers are handed to `timerHook`,
 * which a test sets when it wants to fire them by hand.
 */
export class ManualClock extends BaseClock {
  timerHook: ((ms: number, fire: () => void) => Cancel) | undefined;

  constructor(public t = 1000) {
    super();
  }

  now(): number {
    return this.t;
  }

  instant(): Instant {
    const ns = BigInt(this.t) * 1_000_000n;
    return { wallNs: ns, monoNs: ns };
  }

  timer(ms: number, fire: () => void): Cancel {
    if (this.timerHook === undefined) throw new Error("set timerHook to use this clock's timers");
    return this.timerHook(ms, fire);
  }
}

/** Lets pending promise callbacks and zero-delay timers run. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Polls `check` (letting tasks run) until it holds; fails after `ms`. */
export async function until(check: () => boolean, ms = 2000, what = "condition"): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

/**
 * Runs a task (`start` gets its scope) as a promise: resolves when `signal` aborts, rejects with
 * the error the task fails its scope with.
 */
export function runTask(signal: AbortSignal, start: (scope: TaskScope) => void): Promise<void> {
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  if (signal.aborted) resolve();
  else signal.addEventListener("abort", () => resolve(), { once: true });
  try {
    start({ signal, fail: reject });
  } catch (err) {
    reject(err);
  }
  return promise;
}

/**
 * Resolves `true` once a broadcast is pending for `receiver` (at once if one already is; while
 * waiting, only one that meets its interest), `false` when `signal` aborts first. Does not mark
 * the broadcast seen. The executor loops wait the same way, through `arm`.
 */
export function waitForChange<T>(receiver: Receiver<T>, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  if (receiver.pending) return Promise.resolve(true);
  return new Promise((resolve) => {
    const onAbort = () => {
      receiver.disarm();
      resolve(false);
    };
    receiver.arm(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve(true);
    });
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
