/**
 * The VMs of a run, drawn from the seed: their bounds, starting size and workload. Workloads
 * mix the shapes of `sim/vm/workload.ts` (steady, daily, spiky) with two of their own that a
 * seed makes up in advance: random steps between levels, and memory that leaks until the
 * database restarts.
 *
 * @module
 */

import type { SeededRandom } from "../../lib/random.ts";
import { constant, type Demand, type Shape, sine, spike } from "../vm/workload.ts";
import { GiB, type VmPlan } from "./cluster.ts";

const MiB = 1024 ** 2;
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

function uniform(random: SeededRandom, min: number, max: number): number {
  return min + random.float() * (max - min);
}

/** A level for a VM of `maxCu` compute units: load in CPUs, memory and working set in bytes. */
function level(random: SeededRandom, maxCu: number, busy: number): Demand {
  const load = uniform(random, 0.02, busy * maxCu * 0.25);
  const memory = uniform(random, 200 * MiB, Math.max(300 * MiB, busy * maxCu * 0.7 * GiB));
  return { load, memory, workingSet: memory / 2 };
}

/** Levels that change at random moments, held in between. */
function steps(random: SeededRandom, maxCu: number, spanMs: number): Shape {
  const times: number[] = [0];
  const levels: Demand[] = [level(random, maxCu, 0.6)];
  for (let t = 0; t < spanMs;) {
    t += uniform(random, 5 * MINUTE, 45 * MINUTE);
    times.push(t);
    levels.push(level(random, maxCu, random.float() < 0.2 ? 1.1 : 0.6));
  }
  return (t) => {
    let lo = 0;
    let hi = times.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (times[mid] <= t) lo = mid;
      else hi = mid - 1;
    }
    return levels[lo];
  };
}

/** Memory that grows steadily and drops back when the process restarts. */
function leak(random: SeededRandom, maxCu: number): Shape {
  const base = uniform(random, 200 * MiB, 600 * MiB);
  const top = Math.max(base + 500 * MiB, maxCu * 0.8 * GiB);
  const periodMs = uniform(random, 20 * MINUTE, 3 * HOUR);
  const load = uniform(random, 0.05, 0.5);
  return (t) => {
    const memory = base + (top - base) * ((t % periodMs) / periodMs);
    return { load, memory, workingSet: memory / 3 };
  };
}

/** The plan of `count` VMs named `vm-0` … for a run of `spanMs`. */
export function planVms(random: SeededRandom, count: number, spanMs: number): VmPlan[] {
  return Array.from({ length: count }, (_, i) => planVm(random, `vm-${i}`, spanMs));
}

/** One VM's plan. */
export function planVm(random: SeededRandom, name: string, spanMs: number): VmPlan {
  const min = random.int(1, 3);
  const max = min + random.int(2, 7);
  const startCu = random.int(min, Math.min(max, min + 2) + 1);
  const kind = random.int(0, 5);
  let shape: Shape;
  let workload: string;
  switch (kind) {
    case 0: {
      const d = level(random, max, 0.5);
      shape = constant(d).shape;
      workload = "steady";
      break;
    }
    case 1: {
      const mean = level(random, max, 0.5);
      shape = sine({
        mean,
        amplitude: { load: mean.load * 0.9, memory: mean.memory * 0.5 },
        periodMs: uniform(random, 2 * HOUR, 24 * HOUR),
        phaseMs: uniform(random, 0, 24 * HOUR),
      }).shape;
      workload = "daily";
      break;
    }
    case 2: {
      const base = level(random, max, 0.3);
      const peak = level(random, max, 1.1);
      const everyMs = uniform(random, 10 * MINUTE, 90 * MINUTE);
      shape = spike({
        base,
        peak,
        atMs: uniform(random, 0, everyMs),
        durationMs: uniform(random, MINUTE, Math.min(15 * MINUTE, everyMs)),
        everyMs,
      }).shape;
      workload = "spiky";
      break;
    }
    case 3:
      shape = steps(random, max, spanMs);
      workload = "steps";
      break;
    default:
      shape = leak(random, max);
      workload = "leak";
  }
  return { name, bounds: { min, max }, startCu, shape, workload };
}
