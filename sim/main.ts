/**
 * `deno task sim`: serves a simulated cluster until interrupted, for manual use with kubectl and
 * `deno task start`.
 *
 *     deno task sim -- --vms 50 [--plugin-port 10299] [--speed-up 60]
 *
 * Prints the addresses it serves and, once ready, a line `kubeconfig: PATH`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Cluster, SIM_NODE, type VmSpec } from "./cluster.ts";
import { constant, memoryGrowth, sine, spike, step, type Workload } from "./vm/workload.ts";

const MiB = 1024 ** 2;
const MINUTE = 60_000;

/** A mix of realistic profiles, so a node of N VMs shows every kind of scaling. */
function workloadFor(i: number, speedUp: number): Workload {
  const profiles: Workload[] = [
    constant({ load: 0.05, memory: 300 * MiB }),
    step({ from: { load: 0.1 }, to: { load: 0.8, memory: 600 * MiB }, atMs: 2 * MINUTE }),
    sine({ mean: { load: 0.5, memory: 800 * MiB }, amplitude: { load: 0.45, memory: 400 * MiB } }),
    spike({
      base: { load: 0.1 },
      peak: { load: 1.5 },
      atMs: MINUTE,
      durationMs: MINUTE,
      everyMs: 5 * MINUTE,
    }),
    memoryGrowth({
      base: { load: 0.1 },
      fromBytes: 300 * MiB,
      bytesPerSecond: 2 * MiB,
      maxBytes: 3000 * MiB,
    }),
  ];
  return profiles[i % profiles.length].withSpeedUp(speedUp);
}

function usage(error: string): never {
  console.error(`error: ${error}`);
  console.error("usage: deno task sim -- [--vms N] [--plugin-port PORT] [--speed-up FACTOR]");
  Deno.exit(2);
}

function numberArg(
  name: string,
  text: string | undefined,
  fallback: number,
  { allowZero = false } = {},
): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0 || (n === 0 && !allowZero)) {
    const what = allowZero ? "non-negative" : "positive";
    usage(`--${name} must be a ${what} number, got ${JSON.stringify(text)}`);
  }
  return n;
}

let args;
try {
  args = parseArgs({
    // `deno task sim -- --vms 5` passes the `--` through.
    args: Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args,
    options: {
      vms: { type: "string" },
      "plugin-port": { type: "string" },
      "speed-up": { type: "string" },
    },
    strict: true,
  }).values;
} catch (err) {
  usage((err as Error).message);
}
const count = Math.floor(numberArg("vms", args.vms, 10));
const speedUp = numberArg("speed-up", args["speed-up"], 1);
const specs: VmSpec[] = Array.from({ length: count }, (_, i) => ({
  name: `vm-${i}`,
  workload: workloadFor(i, speedUp),
}));

const started = performance.now();
const cluster = await Cluster.start({
  vms: specs,
  // 0 lets the system pick a free port.
  pluginPort: Math.floor(numberArg("plugin-port", args["plugin-port"], 10299, { allowZero: true })),
});
console.log(
  `simulated node ${SIM_NODE}: ${count} VMs in namespace default, started in ${
    Math.round(performance.now() - started)
  } ms`,
);
console.log(`kubernetes API: ${cluster.api.url}`);
console.log(`scheduler plugin: ${cluster.plugin.url}`);
console.log(`VM ports: ${JSON.stringify(cluster.vmPorts)}`);
console.log(`kubeconfig: ${cluster.kubeconfigPath}`);

const stop = Promise.withResolvers<void>();
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => stop.resolve());
}
await stop.promise;
await cluster.close();
