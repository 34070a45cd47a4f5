/**
 * The run's event trace: one line per thing that happened, stamped with virtual time, hashed as
 * it goes (SHA-256) so that two runs of one seed can be compared by a single value, and kept in a
 * short ring for the report of a violation. Only `--trace` prints the whole of it.
 *
 * @module
 */

import { createHash, type Hash } from "node:crypto";
import type { Log } from "../../lib/log.ts";

const RING = 60;

/** `H:MM:SS.mmm` of virtual time since the start. */
export function formatOffset(ms: number): string {
  const total = Math.max(0, Math.round(ms));
  const h = Math.floor(total / 3_600_000);
  const m = Math.floor(total / 60_000) % 60;
  const s = Math.floor(total / 1000) % 60;
  const frac = total % 1000;
  return `${h}:${String(m).padStart(2, "0")}:${String(s).padStart(2, "0")}.${
    String(frac).padStart(3, "0")
  }`;
}

function valueText(value: unknown): string {
  switch (typeof value) {
    case "string":
      return value;
    case "number":
    case "boolean":
      return String(value);
    case "bigint":
      return value.toString();
    default:
      return JSON.stringify(
        value,
        (_k, v) => typeof v === "bigint" ? v.toString() : v instanceof Error ? v.message : v,
      );
  }
}

function fieldsText(fields: Record<string, unknown> | undefined): string {
  if (fields === undefined) return "";
  let text = "";
  for (const key in fields) {
    const value = fields[key];
    if (value !== undefined) text += ` ${key}=${valueText(value)}`;
  }
  return text;
}

/** The trace of one run. */
export class Trace {
  readonly #now: () => number;
  readonly #start: number;
  readonly #hash: Hash = createHash("sha256");
  readonly #ring: string[] = [];
  #next = 0;
  #lines = 0;
  readonly #print: ((line: string) => void) | undefined;

  constructor(now: () => number, print?: (line: string) => void) {
    this.#now = now;
    this.#start = now();
    this.#print = print;
  }

  /** Lines so far. */
  get lines(): number {
    return this.#lines;
  }

  /** Records one event: `<time> <what> key=value …`. */
  event(what: string, fields?: Record<string, unknown>): void {
    const line = `${formatOffset(this.#now() - this.#start)} ${what}${fieldsText(fields)}`;
    this.#hash.update(line);
    this.#hash.update("\n");
    this.#lines++;
    if (this.#ring.length < RING) this.#ring.push(line);
    else this.#ring[this.#next] = line;
    this.#next = (this.#next + 1) % RING;
    this.#print?.(line);
  }

  /** The last lines, oldest first. */
  recent(): string[] {
    return this.#ring.length < RING
      ? [...this.#ring]
      : [...this.#ring.slice(this.#next), ...this.#ring.slice(0, this.#next)];
  }

  /** The SHA-256 of every line so far, in hex; ends the trace. */
  digest(): string {
    return this.#hash.digest("hex");
  }

  /**
   * The agent's log, as trace lines without wall-clock timestamps: `warn` and `error` always,
   * `info` when asked, `debug` never (hot paths skip building their fields).
   */
  log(process: string, withInfo: boolean): Log {
    const event = (what: string, fields: Record<string, unknown> | undefined) =>
      this.event(what, fields);
    const make = (name: string, fields: Record<string, unknown>): Log => {
      const prefix = `agent${process}`;
      const context = fieldsText(fields);
      const line = (level: string) => (message: string, extra?: Record<string, unknown>) =>
        event(`${prefix} ${level} ${name}: ${message}${context}`, extra);
      const drop = () => {};
      return {
        debug: drop,
        info: withInfo ? line("info") : drop,
        warn: line("warn"),
        error: line("error"),
        with: (more) => make(name, { ...fields, ...more }),
        child: (child) => make(name === "" ? child : `${name}.${child}`, fields),
        isEnabled: () => false,
      };
    };
    return make("", {});
  }
}
