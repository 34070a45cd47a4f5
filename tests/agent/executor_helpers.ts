/** Shared fixtures for the executor, plugin and scrape tests. */

import type { Log } from "../../agent/log.ts";

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

/** A clock that only moves when told to. */
export class ManualClock {
  constructor(public t = 1000) {}
  now(): number {
    return this.t;
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
