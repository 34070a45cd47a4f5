/**
 * Starts a simulated cluster of 2,000 VMs (API server objects, NeonVM controller, every VM's
 * metrics endpoints and vm-monitor, the scheduler plugin) in this process, then reports how long
 * that took and how much CPU the idle cluster burns.
 *
 *     deno task bench:sim [-- --vms N --idle-seconds S]
 *
 * Targets (issue 3): start < 10 s, idle < 5 % of one core.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Cluster, type VmSpec } from "../sim/cluster.ts";
import { sine } from "../sim/vm/workload.ts";

const { values } = parseArgs({
  args: Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args,
  options: {
    vms: { type: "string", default: "2000" },
    "idle-seconds": { type: "string", default: "10" },
  },
});
const count = Number(values.vms);
const idleSeconds = Number(values["idle-seconds"]);

/** User + system CPU time of this process, in seconds (/proc/self/stat fields 14 and 15). */
function cpuSeconds(): number {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ is 100 on Linux
}

const workload = sine({ mean: { load: 0.5, memory: 512 * 1024 ** 2 }, amplitude: { load: 0.4 } })
  .withSpeedUp(60);
const specs: VmSpec[] = Array.from({ length: count }, (_, i) => ({
  name: `vm-${i}`,
  cpus: { min: 250, max: 4000, use: 1000 },
  memorySlots: { min: 1, max: 16, use: 4 },
  workload,
}));

const started = performance.now();
// Ports off the defaults, so an agent (or anything else) on 9100 does not get in the way.
const cluster = await Cluster.start({
  vms: specs,
  vmPorts: { system: 19100, lfc: 19499, monitor: 20301 },
  pluginPort: 0,
});
const startMs = performance.now() - started;
console.log(
  `started ${count} simulated VMs (objects + ${count * 3} listeners) in ${startMs.toFixed(0)} ms`,
);

const cpuBefore = cpuSeconds();
const idleFrom = performance.now();
await new Promise((resolve) => setTimeout(resolve, idleSeconds * 1000));
const wallSeconds = (performance.now() - idleFrom) / 1000;
const idleFraction = (cpuSeconds() - cpuBefore) / wallSeconds;
console.log(
  `idle CPU over ${wallSeconds.toFixed(1)} s: ${(idleFraction * 100).toFixed(2)}% of one core`,
);

const stopFrom = performance.now();
await cluster.close();
console.log(`stopped in ${(performance.now() - stopFrom).toFixed(0)} ms`);
console.log(
  `targets: start < 10000 ms: ${startMs < 10_000 ? "met" : "MISSED"}; idle < 5%: ${
    idleFraction < 0.05 ? "met" : "MISSED"
  }`,
);
