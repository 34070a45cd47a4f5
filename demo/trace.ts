/**
 * Metrics traces for the replay: a CSV file, or what Prometheus's `/api/v1/query_range` returned
 * for a VM's series, read into one table of rows and turned into the guest the replay scrapes.
 *
 * A trace gives the load either as runnable tasks (`load`), which the replay averages over one
 * and five minutes as Linux does, or as the load averages the VM reported (`load1`, optionally
 * `load5`), which the replay hands to the core unchanged: a recorded `host_load1` must not be
 * averaged a second time. `memory` is the guest's used memory in bytes and `working_set` the
 * LFC working set in bytes. Between rows values are interpolated linearly; before the first row
 * and after the last the nearest row holds. Every error names the file and the line or point.
 *
 * @module
 */

import { z } from "zod";
import { type Demand, Workload, type WorkloadSample } from "../sim/vm/workload.ts";

/** What the replay reads from a guest; the simulator's {@link Workload} is one. */
export interface ReplayGuest {
  at(elapsedMs: number): WorkloadSample;
  demandAt(elapsedMs: number): Demand;
  workingSetWindows(elapsedMs: number): number[];
}

/** The columns a trace can have besides its timestamp. */
export const COLUMNS = ["load", "load1", "load5", "memory", "working_set"] as const;
export type Column = typeof COLUMNS[number];

/** One instant of a trace, `t` in milliseconds since its first row. */
export interface TraceRow {
  t: number;
  /** Runnable tasks (for a `load` trace) or the 1-minute load average (for a `load1` trace). */
  load: number;
  /** The 5-minute load average of a `load1` trace. */
  load5: number;
  memory: number;
  workingSet: number;
}

export interface Trace {
  /** The file (or files) it was read from, for messages and reports. */
  name: string;
  /** Whether `load` is runnable tasks to average, or recorded load averages. */
  load: "tasks" | "averages";
  rows: TraceRow[];
  /** The first row's time as epoch milliseconds, when the trace had dates. */
  startEpochMs: number | null;
}

/** A trace that cannot be read; the message names the file and the line or point. */
export class TraceError extends Error {
  override name = "TraceError";
}

const CSV_HEADERS = {
  tasks: ["timestamp", "load", "memory", "working_set"],
  averages: ["timestamp", "load1", "load5", "memory", "working_set"],
} as const;

/** The time a trace covers. */
export function traceSpanMs(trace: Trace): number {
  return trace.rows[trace.rows.length - 1].t;
}

function parseTimestamp(text: string, where: string): number {
  if (/^[+-]?(\d+\.?\d*|\.\d+)$/.test(text)) return Number(text) * 1000;
  const ms = /^\d{4}-\d\d-\d\dT/.test(text) ? Date.parse(text) : NaN;
  if (Number.isNaN(ms)) {
    throw new TraceError(
      `${where}: timestamp ${JSON.stringify(text)} is neither seconds nor an RFC 3339 date`,
    );
  }
  return ms;
}

function parseValue(text: string, column: string, where: string): number {
  const value = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text) ? Number(text) : NaN;
  if (!Number.isFinite(value) || value < 0) {
    throw new TraceError(
      `${where}: ${column} ${JSON.stringify(text)} is not a non-negative number`,
    );
  }
  return value;
}

/**
 * A CSV trace with the header `timestamp,load,memory,working_set` (runnable tasks) or
 * `timestamp,load1,load5,memory,working_set` (recorded load averages). Timestamps are seconds
 * (any origin) or RFC 3339 dates, strictly increasing; blank lines are skipped.
 */
export function parseCsvTrace(csv: string, name: string): Trace {
  const lines = csv.split("\n").map((l) => l.replace(/\r$/, ""));
  const headerIndex = lines.findIndex((l) => l.trim() !== "");
  if (headerIndex < 0) throw new TraceError(`${name}: empty file, expected a header line`);
  const header = lines[headerIndex].split(",").map((f) => f.trim()).join(",");
  const load = (Object.keys(CSV_HEADERS) as (keyof typeof CSV_HEADERS)[])
    .find((kind) => CSV_HEADERS[kind].join(",") === header);
  if (load === undefined) {
    throw new TraceError(
      `${name} line ${headerIndex + 1}: the header must be "${CSV_HEADERS.tasks.join(",")}" or "${
        CSV_HEADERS.averages.join(",")
      }", got ${JSON.stringify(lines[headerIndex])}`,
    );
  }
  const columns = CSV_HEADERS[load];
  const rows: TraceRow[] = [];
  let origin: number | undefined;
  let startEpochMs: number | null = null;
  for (let i = headerIndex + 1; i < lines.length; i++) {
    if (lines[i].trim() === "") continue;
    const where = `${name} line ${i + 1}`;
    const fields = lines[i].split(",").map((f) => f.trim());
    if (fields.length !== columns.length) {
      throw new TraceError(
        `${where}: expected ${columns.length} fields (${columns.join(",")}), got ${fields.length}`,
      );
    }
    const stamp = parseTimestamp(fields[0], where);
    if (origin === undefined) {
      origin = stamp;
      if (!/^[+-]?[\d.]+$/.test(fields[0])) startEpochMs = stamp;
    }
    const t = stamp - origin;
    if (rows.length > 0 && t <= rows[rows.length - 1].t) {
      throw new TraceError(`${where}: timestamp ${fields[0]} is not after the previous row's`);
    }
    const value = (column: string) =>
      parseValue(fields[columns.indexOf(column as never)], column, where);
    rows.push({
      t,
      load: value(load === "tasks" ? "load" : "load1"),
      load5: load === "tasks" ? 0 : value("load5"),
      memory: value("memory"),
      workingSet: value("working_set"),
    });
  }
  if (rows.length === 0) throw new TraceError(`${name}: the file has a header but no rows`);
  return { name, load, rows, startEpochMs };
}

/** The parts of a `query_range` answer the replay reads. */
const QueryRange = z.union([
  z.object({
    status: z.literal("success"),
    data: z.object({
      resultType: z.literal("matrix"),
      result: z.array(z.object({
        metric: z.record(z.string(), z.string()),
        values: z.array(z.tuple([z.number(), z.string()])),
      })),
    }),
  }),
  z.object({
    status: z.literal("error"),
    errorType: z.string().optional(),
    error: z.string().optional(),
  }),
]);

/** One series' points, `[epoch ms, value]`, in time order. */
type Points = [number, number][];

/** The one series of a `query_range` answer, checked. */
export function seriesOf(json: unknown, where: string): Points {
  const parsed = QueryRange.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const at = issue.path.length > 0 ? ` at ${issue.path.join(".")}` : "";
    throw new TraceError(
      `${where}: not a Prometheus query_range answer (a matrix)${at}: ${issue.message}`,
    );
  }
  const answer = parsed.data;
  if (answer.status === "error") {
    throw new TraceError(
      `${where}: Prometheus answered with an error: ${answer.errorType ?? "error"}: ${
        answer.error ?? "(no message)"
      }`,
    );
  }
  const { result } = answer.data;
  if (result.length !== 1) {
    const labels = result.slice(0, 3).map((s) => JSON.stringify(s.metric)).join(", ");
    throw new TraceError(
      `${where}: the query returned ${result.length} series, expected exactly one` +
        (result.length > 1 ? ` (narrow the selector to one VM; got ${labels}…)` : ""),
    );
  }
  const points: Points = [];
  for (const [seconds, text] of result[0].values) {
    const at = `${where} at ${new Date(seconds * 1000).toISOString()}`;
    const value = parseValue(text, "value", at);
    const t = Math.round(seconds * 1000);
    if (points.length > 0 && t <= points[points.length - 1][0]) {
      throw new TraceError(`${at}: the point is not after the previous one`);
    }
    points.push([t, value]);
  }
  if (points.length === 0) throw new TraceError(`${where}: the series has no points`);
  return points;
}

/** The value of `points` at `t`, linear between points, the nearest one outside them. */
function valueAt(points: Points, t: number): number {
  if (t <= points[0][0]) return points[0][1];
  const last = points[points.length - 1];
  if (t >= last[0]) return last[1];
  let lo = 0;
  let hi = points.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (points[mid][0] <= t) lo = mid;
    else hi = mid;
  }
  const [t0, v0] = points[lo];
  const [t1, v1] = points[hi];
  return v0 + ((v1 - v0) * (t - t0)) / (t1 - t0);
}

/**
 * A trace from `query_range` answers, one per column: `memory` and one of `load` or `load1` are
 * needed; a missing `load5` is taken equal to `load1`, a missing `working_set` as zero. The rows
 * are every instant at which some series has a point, within the time all series cover.
 */
export function traceFromSeries(series: Partial<Record<Column, unknown>>, name: string): Trace {
  const given = (Object.keys(series) as Column[]).filter((c) => series[c] !== undefined);
  const unknown = given.filter((c) => !COLUMNS.includes(c));
  if (unknown.length > 0) {
    throw new TraceError(
      `${name}: unknown series ${unknown.join(", ")}; the series are ${COLUMNS.join(", ")}`,
    );
  }
  if (series.load !== undefined && (series.load1 !== undefined || series.load5 !== undefined)) {
    throw new TraceError(`${name}: give either load (runnable tasks) or load1/load5, not both`);
  }
  const loadColumn: Column = series.load !== undefined ? "load" : "load1";
  for (const needed of [loadColumn, "memory"] as const) {
    if (series[needed] === undefined) {
      throw new TraceError(
        `${name}: the ${needed} series is missing (needed: memory, and load or load1)`,
      );
    }
  }
  const points = new Map<Column, Points>();
  for (const column of given) {
    points.set(column, seriesOf(series[column], `${name}: ${column}`));
  }
  const all = [...points.values()];
  const from = Math.max(...all.map((p) => p[0][0]));
  const to = Math.min(...all.map((p) => p[p.length - 1][0]));
  if (from > to) throw new TraceError(`${name}: the series do not overlap in time`);
  const times = [...new Set(all.flatMap((p) => p.map(([t]) => t)))]
    .filter((t) => t >= from && t <= to).sort((a, b) => a - b);
  const at = (column: Column, t: number, otherwise: number) => {
    const p = points.get(column);
    return p === undefined ? otherwise : valueAt(p, t);
  };
  const rows = times.map((t) => {
    const load = at(loadColumn, t, 0);
    return {
      t: t - from,
      load,
      load5: loadColumn === "load" ? 0 : at("load5", t, load),
      memory: at("memory", t, 0),
      workingSet: at("working_set", t, 0),
    };
  });
  return { name, load: loadColumn === "load" ? "tasks" : "averages", rows, startEpochMs: from };
}

/**
 * A trace from a combined file: a JSON object whose keys are columns (`load1`, `memory`, …) and
 * whose values are the `query_range` answers for them.
 */
export function parseCombinedJson(text: string, name: string): Trace {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new TraceError(`${name}: not JSON: ${(err as Error).message}`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new TraceError(
      `${name}: expected an object of query_range answers keyed by series (${COLUMNS.join(", ")})`,
    );
  }
  if ("status" in json) {
    throw new TraceError(
      `${name}: this is a single query_range answer; name its series with --series ` +
        `COLUMN=${name}, or combine several in one object keyed by series`,
    );
  }
  return traceFromSeries(json as Partial<Record<Column, unknown>>, name);
}

/** The row at `t`: linear between rows, the nearest row outside them. */
function rowAt(rows: readonly TraceRow[], t: number): TraceRow {
  if (t <= rows[0].t) return rows[0];
  const last = rows[rows.length - 1];
  if (t >= last.t) return last;
  let lo = 0;
  let hi = rows.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (rows[mid].t <= t) lo = mid;
    else hi = mid;
  }
  const a = rows[lo];
  const b = rows[hi];
  const f = (t - a.t) / (b.t - a.t);
  const mix = (x: number, y: number) => x + (y - x) * f;
  return {
    t,
    load: mix(a.load, b.load),
    load5: mix(a.load5, b.load5),
    memory: mix(a.memory, b.memory),
    workingSet: mix(a.workingSet, b.workingSet),
  };
}

/** A guest that replays recorded load averages as they are. */
class RecordedAverages implements ReplayGuest {
  readonly #rows: readonly TraceRow[];
  readonly #windows: Workload;

  constructor(trace: Trace) {
    this.#rows = trace.rows;
    this.#windows = new Workload(trace.name, (t) => rowAt(trace.rows, t));
  }

  at(elapsedMs: number): WorkloadSample {
    const row = rowAt(this.#rows, elapsedMs);
    return { load1: row.load, load5: row.load5, memory: row.memory, workingSet: row.workingSet };
  }

  demandAt(elapsedMs: number): Demand {
    const row = rowAt(this.#rows, elapsedMs);
    return { load: row.load, memory: row.memory, workingSet: row.workingSet };
  }

  workingSetWindows(elapsedMs: number): number[] {
    return this.#windows.workingSetWindows(elapsedMs);
  }
}

/** The guest whose exporters report the trace. */
export function guestOf(trace: Trace): ReplayGuest {
  if (trace.load === "averages") return new RecordedAverages(trace);
  return new Workload(trace.name, (t) => rowAt(trace.rows, t));
}
