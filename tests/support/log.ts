/** A log that keeps its lines, for tests that assert what was logged. */

import type { Log } from "../../lib/log.ts";

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
