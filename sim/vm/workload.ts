/**
 * Workload profiles: what a simulated guest is doing, as a pure function of elapsed time.
 *
 * A profile gives the guest's instantaneous demand (runnable tasks, memory it wants, working
 * set). The load averages are derived from it the way Linux does: an exponential moving average
 * updated every 5 s, with time constants of 1 and 5 minutes, so `load5` lags `load1` as on a real
 * host. Everything runs in "workload time" = elapsed real time × the speed-up factor, so a daily
 * cycle can pass in minutes.
 *
 * @module
 */

/** 2^20 bytes. */
export const MiB = 1024 * 1024;
/** 2^30 bytes. */
export const GiB = 1024 * MiB;
/** One day in milliseconds, the default period of {@linkcode sine}. */
export const DAY_MS = 24 * 60 * 60 * 1000;

/** What the guest is asking for at one instant. */
export interface Demand {
  /** Runnable tasks: the instantaneous value the load averages smooth. */
  load: number;
  /** Memory the guest's processes want (non-reclaimable), in bytes. May exceed the VM's size. */
  memory: number;
  /** Distinct bytes of the file cache the database touches, in bytes. */
  workingSet: number;
}

/** A partial {@linkcode Demand}; missing fields take {@linkcode DEFAULT_DEMAND}'s values. */
export type Level = Partial<Demand>;

/** An idle small database. */
export const DEFAULT_DEMAND: Readonly<Demand> = {
  load: 0.05,
  memory: 256 * MiB,
  workingSet: 64 * MiB,
};

/** The guest's state at one instant, as its exporters would see it. */
export interface WorkloadSample {
  load1: number;
  load5: number;
  /** Memory the guest wants (non-reclaimable), in bytes. */
  memory: number;
  workingSet: number;
}

/** Instantaneous demand at `tMs` of workload time (never negative time). */
export type Shape = (tMs: number) => Demand;

// Linux updates the load averages every LOAD_FREQ (5 s) with these decay factors.
const TICK_MS = 5000;
const DECAY_1 = Math.exp(-TICK_MS / 60_000);
const DECAY_5 = Math.exp(-TICK_MS / 300_000);
// Ten time constants of the slower average: older history weighs less than e^-10.
const HISTORY_TICKS = 600;
/** Page size of the LFC working-set metric. */
export const LFC_PAGE_BYTES = 8192;
// Granularity at which the working-set windows look back for their maximum.
const WINDOW_SAMPLE_MS = 15_000;

/** A profile, with the speed-up factor that maps elapsed real time onto it. */
export class Workload {
  #cache: { tick: number; load1: number; load5: number } | undefined;

  /**
   * @param name short description, for logs and dumps
   * @param shape instantaneous demand as a function of workload time
   * @param speedUp workload milliseconds per real millisecond
   * @param isStatic true when `shape` never changes, so nobody needs to poll it
   */
  constructor(
    readonly name: string,
    readonly shape: Shape,
    readonly speedUp = 1,
    readonly isStatic = false,
  ) {
    if (!(speedUp > 0) || !Number.isFinite(speedUp)) {
      throw new Error(`workload ${name}: speed-up must be a positive number, got ${speedUp}`);
    }
  }

  /** The same profile running `factor` times faster than real time. */
  withSpeedUp(factor: number): Workload {
    return new Workload(this.name, this.shape, factor, this.isStatic);
  }

  /** Demand at `elapsedMs` of real time since the VM started. */
  demandAt(elapsedMs: number): Demand {
    const { load, memory, workingSet } = this.shape(this.#workloadTime(elapsedMs));
    return { load, memory, workingSet };
  }

  /** The guest's state at `elapsedMs` of real time since the VM started. */
  at(elapsedMs: number): WorkloadSample {
    const t = this.#workloadTime(elapsedMs);
    const { load1, load5 } = this.#loadAverages(Math.floor(t / TICK_MS));
    const now = this.shape(t);
    return { load1, load5, memory: now.memory, workingSet: now.workingSet };
  }

  /**
   * The LFC working-set windows at `elapsedMs`: for window i, the largest working set seen in
   * the last (i+1) minutes of workload time, in 8 KiB pages. Longer windows never report less
   * than shorter ones, as with the real estimator.
   */
  workingSetWindows(elapsedMs: number, count = 60): number[] {
    const t = this.#workloadTime(elapsedMs);
    const windows: number[] = [];
    let max = 0;
    let back = 0;
    for (let i = 1; i <= count; i++) {
      for (; back <= i * 60_000; back += WINDOW_SAMPLE_MS) {
        max = Math.max(max, this.shape(Math.max(0, t - back)).workingSet);
      }
      windows.push(Math.ceil(max / LFC_PAGE_BYTES));
    }
    return windows;
  }

  #workloadTime(elapsedMs: number): number {
    return Math.max(0, elapsedMs) * this.speedUp;
  }

  // Pure in `tick`: the average starts HISTORY_TICKS back in the steady state of the demand
  // there (before time 0 the guest is taken to have been running at its time-0 demand).
  #loadAverages(tick: number): { load1: number; load5: number } {
    if (this.#cache?.tick === tick) return this.#cache;
    const first = Math.max(0, tick - HISTORY_TICKS);
    let load1 = this.shape(first * TICK_MS).load;
    let load5 = load1;
    for (let k = first + 1; k <= tick; k++) {
      const n = this.shape(k * TICK_MS).load;
      load1 = load1 * DECAY_1 + n * (1 - DECAY_1);
      load5 = load5 * DECAY_5 + n * (1 - DECAY_5);
    }
    this.#cache = { tick, load1, load5 };
    return this.#cache;
  }
}

/** The memory figures the guest's exporter reports for a VM of `totalBytes`. */
export interface GuestMemory {
  total: number;
  available: number;
  cached: number;
  used: number;
}

/**
 * Memory as seen inside a VM of `totalBytes`: the guest cannot use more than it has, and the
 * page cache holds the working set as far as the free memory allows.
 */
export function guestMemory(sample: WorkloadSample, totalBytes: number): GuestMemory {
  const used = Math.min(Math.max(0, Math.round(sample.memory)), totalBytes);
  const available = totalBytes - used;
  const cached = Math.min(Math.max(0, Math.round(sample.workingSet)), available);
  return { total: totalBytes, available, cached, used };
}

function fill(level: Level): Demand {
  return { ...DEFAULT_DEMAND, ...level };
}

function nonNegative(d: Demand): Demand {
  return {
    load: Math.max(0, d.load),
    memory: Math.max(0, d.memory),
    workingSet: Math.max(0, d.workingSet),
  };
}

function lerp(a: Demand, b: Demand, f: number): Demand {
  return {
    load: a.load + (b.load - a.load) * f,
    memory: a.memory + (b.memory - a.memory) * f,
    workingSet: a.workingSet + (b.workingSet - a.workingSet) * f,
  };
}

function checkDuration(what: string, ms: number, allowZero = false): void {
  if (!Number.isFinite(ms) || ms < 0 || (!allowZero && ms === 0)) {
    throw new Error(`${what} must be a ${allowZero ? "non-negative" : "positive"} number of ms`);
  }
}

/** The same demand forever: `constant({ load: 0.5, memory: 1 * GiB })`. */
export function constant(level: Level = {}): Workload {
  const d = nonNegative(fill(level));
  return new Workload(`constant(${JSON.stringify(level)})`, () => d, 1, true);
}

/** `from` until `atMs`, then `to`: `step({ atMs: 60_000, to: { load: 3 } })`. */
export function step(opts: { from?: Level; to: Level; atMs: number }): Workload {
  checkDuration("step atMs", opts.atMs, true);
  const from = nonNegative(fill(opts.from ?? {}));
  const to = nonNegative(fill(opts.to));
  return new Workload("step", (t) => (t < opts.atMs ? from : to));
}

/** Linear change from `from` to `to` over `durationMs`, starting at `startMs` (default 0). */
export function ramp(
  opts: { from?: Level; to: Level; durationMs: number; startMs?: number },
): Workload {
  const start = opts.startMs ?? 0;
  checkDuration("ramp startMs", start, true);
  checkDuration("ramp durationMs", opts.durationMs);
  const from = fill(opts.from ?? {});
  const to = fill(opts.to);
  return new Workload("ramp", (t) => {
    const f = Math.min(1, Math.max(0, (t - start) / opts.durationMs));
    return nonNegative(lerp(from, to, f));
  });
}

/**
 * `mean + amplitude × sin(2π (t + phaseMs) / periodMs)` per field, daily by default:
 * `sine({ mean: { load: 1 }, amplitude: { load: 0.8 } })`. Fields absent from `amplitude` stay
 * at the mean; results below zero are clamped to zero.
 */
export function sine(
  opts: { mean?: Level; amplitude: Partial<Demand>; periodMs?: number; phaseMs?: number },
): Workload {
  const period = opts.periodMs ?? DAY_MS;
  checkDuration("sine periodMs", period);
  const mean = fill(opts.mean ?? {});
  const amp: Demand = { load: 0, memory: 0, workingSet: 0, ...opts.amplitude };
  const phase = opts.phaseMs ?? 0;
  return new Workload("sine", (t) => {
    const s = Math.sin((2 * Math.PI * (t + phase)) / period);
    return nonNegative({
      load: mean.load + amp.load * s,
      memory: mean.memory + amp.memory * s,
      workingSet: mean.workingSet + amp.workingSet * s,
    });
  });
}

/**
 * `base`, except `peak` during `[atMs, atMs + durationMs)`, repeating every `everyMs` when
 * given: `spike({ atMs: 30_000, durationMs: 10_000, peak: { load: 4 } })`.
 */
export function spike(
  opts: { base?: Level; peak: Level; atMs: number; durationMs: number; everyMs?: number },
): Workload {
  checkDuration("spike atMs", opts.atMs, true);
  checkDuration("spike durationMs", opts.durationMs);
  if (opts.everyMs !== undefined) {
    checkDuration("spike everyMs", opts.everyMs);
    if (opts.everyMs < opts.durationMs) throw new Error("spike everyMs must be ≥ durationMs");
  }
  const base = nonNegative(fill(opts.base ?? {}));
  const peak = nonNegative(fill(opts.peak));
  return new Workload("spike", (t) => {
    if (t < opts.atMs) return base;
    const since = opts.everyMs === undefined ? t - opts.atMs : (t - opts.atMs) % opts.everyMs;
    return since < opts.durationMs ? peak : base;
  });
}

interface GrowthOptions {
  /** The other fields of the demand. */
  base?: Level;
  /** Starting value in bytes (default: the base's value). */
  fromBytes?: number;
  bytesPerSecond: number;
  /** Growth stops here (default: unbounded). */
  maxBytes?: number;
  /** Growth starts here (default 0). */
  startMs?: number;
}

function growth(field: "memory" | "workingSet", opts: GrowthOptions): Workload {
  const base = nonNegative(fill(opts.base ?? {}));
  const from = opts.fromBytes ?? base[field];
  const max = opts.maxBytes ?? Infinity;
  const start = opts.startMs ?? 0;
  checkDuration(`${field} growth startMs`, start, true);
  return new Workload(`${field}Growth`, (t) => {
    const grown = from + (opts.bytesPerSecond * Math.max(0, t - start)) / 1000;
    return { ...base, [field]: Math.max(0, Math.min(max, grown)) };
  });
}

/** Memory rising linearly (a leak, a growing sort): `memoryGrowth({ bytesPerSecond: MiB })`. */
export function memoryGrowth(opts: GrowthOptions): Workload {
  return growth("memory", opts);
}

/** The working set rising linearly: `workingSetGrowth({ bytesPerSecond: 4 * MiB })`. */
export function workingSetGrowth(opts: GrowthOptions): Workload {
  return growth("workingSet", opts);
}

const TRACE_HEADER = ["timestamp", "load", "memory", "working_set"];

interface TracePoint extends Demand {
  t: number;
}

/**
 * A recorded trace, CSV with the header `timestamp,load,memory,working_set`. `timestamp` is in
 * seconds (any origin: the first row is time 0) or an RFC 3339 date; memory and working set are
 * bytes. Values between rows are interpolated linearly; before the first row and after the last
 * the nearest row holds, unless `loop` replays the trace. Blank lines are skipped. Errors name
 * the line.
 */
export function trace(csv: string, opts: { loop?: boolean; name?: string } = {}): Workload {
  const name = opts.name ?? "trace";
  const points = parseTrace(csv, name);
  const span = points[points.length - 1].t;
  if (opts.loop && span === 0) throw new Error(`${name}: a looping trace needs two timestamps`);
  return new Workload(name, (t) => interpolate(points, opts.loop ? t % span : t));
}

/** {@linkcode trace} read from a file. */
export async function traceFile(path: string, opts: { loop?: boolean } = {}): Promise<Workload> {
  return trace(await Deno.readTextFile(path), { ...opts, name: path });
}

function parseTrace(csv: string, name: string): TracePoint[] {
  const lines = csv.split("\n").map((l) => l.replace(/\r$/, ""));
  const headerIndex = lines.findIndex((l) => l.trim() !== "");
  if (headerIndex < 0) throw new Error(`${name}: empty trace, expected a header line`);
  const header = lines[headerIndex].split(",").map((f) => f.trim());
  if (header.join(",") !== TRACE_HEADER.join(",")) {
    throw new Error(
      `${name} line ${headerIndex + 1}: header must be "${TRACE_HEADER.join(",")}", got ${
        JSON.stringify(lines[headerIndex])
      }`,
    );
  }
  const points: TracePoint[] = [];
  let origin: number | undefined;
  for (let i = headerIndex + 1; i < lines.length; i++) {
    if (lines[i].trim() === "") continue;
    const where = `${name} line ${i + 1}`;
    const fields = lines[i].split(",").map((f) => f.trim());
    if (fields.length !== TRACE_HEADER.length) {
      throw new Error(
        `${where}: expected ${TRACE_HEADER.length} fields (${
          TRACE_HEADER.join(",")
        }), got ${fields.length}`,
      );
    }
    const stamp = parseTimestamp(fields[0], where);
    origin ??= stamp;
    const t = stamp - origin;
    const previous = points[points.length - 1];
    if (previous !== undefined && t <= previous.t) {
      throw new Error(`${where}: timestamp ${fields[0]} is not after the previous row's`);
    }
    points.push({
      t,
      load: parseField(fields[1], "load", where),
      memory: parseField(fields[2], "memory", where),
      workingSet: parseField(fields[3], "working_set", where),
    });
  }
  if (points.length === 0) throw new Error(`${name}: the trace has a header but no rows`);
  return points;
}

function parseTimestamp(text: string, where: string): number {
  if (/^[+-]?(\d+\.?\d*|\.\d+)$/.test(text)) return Number(text) * 1000;
  const ms = /^\d{4}-\d\d-\d\dT/.test(text) ? Date.parse(text) : NaN;
  if (Number.isNaN(ms)) {
    throw new Error(
      `${where}: timestamp ${JSON.stringify(text)} is neither seconds nor an RFC 3339 date`,
    );
  }
  return ms;
}

function parseField(text: string, field: string, where: string): number {
  const value = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text) ? Number(text) : NaN;
  if (!Number.isFinite(value) || value < 0) {
    throw new Error(`${where}: ${field} ${JSON.stringify(text)} is not a non-negative number`);
  }
  return value;
}

function interpolate(points: TracePoint[], t: number): Demand {
  if (t <= points[0].t) return points[0];
  const last = points[points.length - 1];
  if (t >= last.t) return last;
  let lo = 0;
  let hi = points.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (points[mid].t <= t) lo = mid;
    else hi = mid;
  }
  const a = points[lo];
  const b = points[hi];
  return lerp(a, b, (t - a.t) / (b.t - a.t));
}
