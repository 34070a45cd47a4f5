/**
 * Structured JSON-lines logging through LogTape, in the shape of the reference's zap
 * production logs: `level`, `ts` (epoch seconds), `logger` (dot-joined name), `msg`, then fields.
 *
 * @module
 */

import {
  configure,
  getLogger,
  type Logger,
  type LogLevel,
  type LogRecord,
  type Sink,
} from "@logtape/logtape";

/** The root logger name. */
export const ROOT_LOGGER = "autoscaler-agent";

/** The logging surface every agent module accepts; fields are structured, never interpolated. */
export interface Log {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
  /** A logger with extra fields on every line. */
  with(fields: Record<string, unknown>): Log;
  /** A child logger, named `<this>.<name>`. */
  child(name: string): Log;
  /**
   * Whether lines at `level` are written; lets hot paths skip building fields nobody reads.
   * Optional: a Log without it is taken to write everything.
   */
  isEnabled?(level: "debug"): boolean;
}

/** True unless `log` says lines at `level` are dropped. */
export function logEnabled(log: Log, level: "debug"): boolean {
  return log.isEnabled?.(level) ?? true;
}

const ZAP_LEVELS: Record<LogLevel, string> = {
  trace: "debug",
  debug: "debug",
  info: "info",
  warning: "warn",
  error: "error",
  fatal: "fatal",
};

/** Errors carry their message (and stack at error level) instead of serialising as `{}`. */
function replacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return value.message;
  if (typeof value === "bigint") return value.toString();
  return value;
}

/** One log record as one JSON line. */
export function formatJsonLine(record: LogRecord): string {
  const line: Record<string, unknown> = {
    level: ZAP_LEVELS[record.level],
    ts: record.timestamp / 1000,
    logger: record.category.join("."),
    msg: typeof record.rawMessage === "string" ? record.rawMessage : record.message.join(""),
  };
  for (const [key, value] of Object.entries(record.properties)) {
    if (!(key in line)) line[key] = value;
  }
  const error = record.properties["error"];
  if (error instanceof Error && error.stack && !("stacktrace" in line)) {
    line["stacktrace"] = error.stack;
  }
  return JSON.stringify(line, replacer) + "\n";
}

/** A LogTape sink writing JSON lines through `write` (stderr by default). */
export function jsonLinesSink(write?: (line: string) => void): Sink {
  const encoder = new TextEncoder();
  const out = write ?? ((line: string) => Deno.stderr.writeSync(encoder.encode(line)));
  return (record) => out(formatJsonLine(record));
}

/** Configures LogTape for the whole process; call once at start-up. */
export async function setupLogging(
  options: { level?: LogLevel; write?: (line: string) => void } = {},
): Promise<void> {
  await configure({
    reset: true,
    sinks: { json: jsonLinesSink(options.write) },
    loggers: [
      { category: [ROOT_LOGGER], lowestLevel: options.level ?? "info", sinks: ["json"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["json"] },
    ],
  });
}

/** A {@link Log} backed by LogTape, under the root logger. */
export function agentLog(...names: string[]): Log {
  return wrap([ROOT_LOGGER, ...names], {});
}

function wrap(category: string[], fields: Record<string, unknown>): Log {
  return new LogTapeLog(category, fields);
}

/**
 * Methods live on the prototype and the LogTape logger is made on the first line written: every
 * Runner holds a dozen of these, most of which write nothing at the default level, and a closure
 * per method per instance was a measurable share of the agent's heap.
 */
class LogTapeLog implements Log {
  readonly #category: string[];
  readonly #fields: Record<string, unknown>;
  #logger: Logger | undefined;

  constructor(category: string[], fields: Record<string, unknown>) {
    this.#category = category;
    this.#fields = fields;
  }

  #target(): Logger {
    if (this.#logger === undefined) {
      const logger = getLogger(this.#category);
      this.#logger = Object.keys(this.#fields).length > 0 ? logger.with(this.#fields) : logger;
    }
    return this.#logger;
  }

  debug(message: string, fields?: Record<string, unknown>): void {
    if (this.isEnabled("debug")) this.#target().debug(message, fields ?? {});
  }

  info(message: string, fields?: Record<string, unknown>): void {
    this.#target().info(message, fields ?? {});
  }

  warn(message: string, fields?: Record<string, unknown>): void {
    this.#target().warn(message, fields ?? {});
  }

  error(message: string, fields?: Record<string, unknown>): void {
    this.#target().error(message, fields ?? {});
  }

  with(fields: Record<string, unknown>): Log {
    return new LogTapeLog(this.#category, { ...this.#fields, ...fields });
  }

  child(name: string): Log {
    return new LogTapeLog([...this.#category, name], this.#fields);
  }

  isEnabled(level: "debug"): boolean {
    // The category's logger holds the level; the fields do not change it.
    return getLogger(this.#category).isEnabledFor(level);
  }
}

/** A {@link Log} that drops everything. */
export const silentLog: Log = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  with: () => silentLog,
  child: () => silentLog,
  isEnabled: () => false,
};
