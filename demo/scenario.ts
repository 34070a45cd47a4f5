/**
 * The demo's VMs: one per kind of scaling the agent does, tuned so that upscales, downscales and
 * a denied downscale all happen within the first 15 seconds.
 *
 * Every VM has the simulated cluster's default bounds, 1–4 compute units of 0.25 vCPU and 1 GiB.
 *
 * @module
 */

import type { VmSpec } from "../sim/cluster.ts";
import {
  constant,
  DAY_MS,
  GiB,
  MiB,
  sine,
  step,
  trace,
  workingSetGrowth,
  type Workload,
} from "../sim/vm/workload.ts";

/** A VM of the demo and what it shows. */
export interface DemoVm {
  spec: VmSpec;
  description: string;
}

const SECOND = 1000;

/** One simulated day every 40 s, so a 60 s demo sees a trough and both slopes. */
const DAY_SPEED_UP = DAY_MS / (40 * SECOND);

// 10× keeps the load averages' 1-minute time constant at 6 s: the step climbs CU by CU.
const STEP_SPEED_UP = 10;

// One real second is one minute of LFC windows, so the working-set estimator has history soon.
const LFC_SPEED_UP = 60;

/**
 * `[seconds, MiB]`: plateaus at 450, 900, 1650 and 2330 MiB, each needing one CU more than the
 * last by the agent's 75% memory target (with the 100 MiB it counts for the kernel).
 */
const MEMORY_RAMPS: [number, number][] = [
  [0, 450],
  [2, 450],
  [4, 900],
  [8, 900],
  [13, 1650],
  [25, 1650],
  [30, 2330],
];

/** Memory through `[seconds, MiB]` points, linear in between, at a low load. */
function memoryRamps(points: [number, number][]): Workload {
  const rows = points.map(([s, mib]) => `${s},0.1,${mib * MiB},${64 * MiB}`);
  return trace(["timestamp,load,memory,working_set", ...rows].join("\n"), { name: "memory ramps" });
}

/** The demo's VMs, in table order. */
export function demoVms(): DemoVm[] {
  return [
    {
      description: "load steps from 0.1 to 0.7 at 2 s",
      spec: {
        name: "step-load",
        workload: step({
          from: { load: 0.1, memory: 300 * MiB },
          to: { load: 0.7, memory: 300 * MiB },
          atMs: 2 * SECOND * STEP_SPEED_UP,
        }).withSpeedUp(STEP_SPEED_UP),
      },
    },
    {
      description: "daily load sine, one day per 40 s, starting at the peak",
      spec: {
        name: "daily-sine",
        cpus: { min: 250, max: 1000, use: 1000 },
        memorySlots: { min: 1, max: 4, use: 4 },
        workload: sine({
          mean: { load: 0.55, memory: 400 * MiB },
          amplitude: { load: 0.5 },
          phaseMs: DAY_MS / 4,
        }).withSpeedUp(DAY_SPEED_UP),
      },
    },
    {
      description: "memory climbs in three ramps to 2.3 GiB; its vm-monitor asks for more above " +
        "60% use",
      spec: {
        name: "mem-growth",
        workload: memoryRamps(MEMORY_RAMPS),
        // Below the agent's own 75% target, so during each ramp the monitor asks before the
        // metrics show the need. Each plateau stays below 60% of the size the agent then wants,
        // so the monitor does not keep asking and the VM does not flap once its request expires.
        monitor: { upscaleThreshold: 0.6, memoryCheckIntervalMs: 250 },
      },
    },
    {
      description: "LFC working set grows from 200 MiB to 3 GiB (enableLFCMetrics)",
      spec: {
        name: "lfc-cache",
        annotations: { "autoscaling.neon.tech/config": JSON.stringify({ enableLFCMetrics: true }) },
        workload: workingSetGrowth({
          base: { load: 0.1, memory: 300 * MiB },
          fromBytes: 200 * MiB,
          bytesPerSecond: MiB,
          maxBytes: 3 * GiB,
        }).withSpeedUp(LFC_SPEED_UP),
      },
    },
    {
      description: "idle at 2 CU; its vm-monitor refuses to go below 2 GiB",
      spec: {
        name: "stubborn",
        cpus: { min: 250, max: 1000, use: 500 },
        memorySlots: { min: 1, max: 4, use: 2 },
        workload: constant({ load: 0.05, memory: 300 * MiB }),
        monitor: { minMemBytes: 2 * GiB },
      },
    },
  ];
}
