/**
 * The faults a run can inject, each switched on by name, and the seeded schedule of them.
 *
 * A fault is a window: it starts, and (unless it is an instant, such as a crash or a cut) heals
 * after a drawn duration. Every window closes before the run's quiet tail, in which liveness is
 * judged.
 *
 * @module
 */

import type { SeededRandom } from "../../lib/random.ts";

/** Every fault, by the name `--faults` takes. */
export const FAULT_KINDS = [
  "crash",
  "watch-cut",
  "gone",
  "overload",
  "api-error",
  "api-slow",
  "controller-stall",
  "monitor-disconnect",
  "monitor-silence",
  "monitor-deny",
  "monitor-garbage",
  "plugin-down",
  "plugin-deny",
  "plugin-garbage",
  "plugin-replaced",
  "scheduler-churn",
  "metrics-5xx",
  "metrics-garbage",
  "metrics-hang",
  "billing-outage",
  "vm-delete",
  "vm-migrate",
  "vm-bounds",
] as const;

export type FaultKind = (typeof FAULT_KINDS)[number];

const MINUTE = 60_000;

/** How long each kind lasts: [min, max) ms; 0 for an instant. */
const DURATIONS: Record<FaultKind, readonly [number, number]> = {
  "crash": [0, 0],
  "watch-cut": [0, 0],
  "gone": [MINUTE, 5 * MINUTE],
  "overload": [MINUTE, 10 * MINUTE],
  "api-error": [MINUTE, 10 * MINUTE],
  "api-slow": [2 * MINUTE, 15 * MINUTE],
  "controller-stall": [MINUTE, 10 * MINUTE],
  "monitor-disconnect": [10_000, 3 * MINUTE],
  "monitor-silence": [10_000, 2 * MINUTE],
  "monitor-deny": [5 * MINUTE, 60 * MINUTE],
  "monitor-garbage": [MINUTE, 10 * MINUTE],
  "plugin-down": [30_000, 10 * MINUTE],
  "plugin-deny": [5 * MINUTE, 30 * MINUTE],
  "plugin-garbage": [MINUTE, 10 * MINUTE],
  "plugin-replaced": [0, 0],
  "scheduler-churn": [5000, MINUTE],
  "metrics-5xx": [MINUTE, 20 * MINUTE],
  "metrics-garbage": [MINUTE, 20 * MINUTE],
  "metrics-hang": [MINUTE, 20 * MINUTE],
  "billing-outage": [30 * MINUTE, 4 * 60 * MINUTE],
  "vm-delete": [MINUTE, 10 * MINUTE],
  "vm-migrate": [5 * MINUTE, 60 * MINUTE],
  "vm-bounds": [0, 0],
};

/** Relative frequency of each kind. */
const WEIGHTS: Partial<Record<FaultKind, number>> = {
  "crash": 2,
  "billing-outage": 0.3,
};

/** One scheduled fault. */
export interface PlannedFault {
  kind: FaultKind;
  /** Virtual ms since the start. */
  at: number;
  /** How long it lasts (0: an instant). */
  durationMs: number;
  /** Which VM it hits, as an index into the VMs alive then (per-VM kinds). */
  target: number;
  /** A draw in [0, 1) for the fault's own parameters (a rate, a choice). */
  strength: number;
}

/** Parses `none`, `all` or a comma-separated list of kinds; throws naming an unknown kind. */
export function parseFaults(text: string): FaultKind[] {
  if (text === "none") return [];
  if (text === "all") return [...FAULT_KINDS];
  const kinds = text.split(",").map((k) => k.trim()).filter((k) => k !== "");
  for (const kind of kinds) {
    if (!(FAULT_KINDS as readonly string[]).includes(kind)) {
      throw new Error(
        `unknown fault ${JSON.stringify(kind)}; known: none, all, ${FAULT_KINDS.join(", ")}`,
      );
    }
  }
  return kinds as FaultKind[];
}

/**
 * The faults of a run, sorted by start: about `perHour` of them per hour between `fromMs` and
 * `healMs`, each kind by its weight, every window cut to end by `healMs`.
 */
export function planFaults(
  random: SeededRandom,
  kinds: readonly FaultKind[],
  fromMs: number,
  healMs: number,
  perHour: number,
): PlannedFault[] {
  if (kinds.length === 0 || healMs <= fromMs) return [];
  const weights = kinds.map((k) => WEIGHTS[k] ?? 1);
  const total = weights.reduce((a, b) => a + b, 0);
  const meanGapMs = 3_600_000 / perHour;
  const plan: PlannedFault[] = [];
  for (let t = fromMs + random.float() * meanGapMs; t < healMs;) {
    let pick = random.float() * total;
    let i = 0;
    while (pick >= weights[i] && i < kinds.length - 1) pick -= weights[i++];
    const kind = kinds[i];
    const [min, max] = DURATIONS[kind];
    const drawn = max === 0 ? 0 : random.int(min, max);
    const at = Math.round(t);
    plan.push({
      kind,
      at,
      durationMs: Math.min(drawn, healMs - at),
      target: random.int(0, 1 << 30),
      strength: random.float(),
    });
    // Exponential gaps: faults come as a Poisson process.
    t += -Math.log(1 - random.float()) * meanGapMs;
  }
  return plan;
}
