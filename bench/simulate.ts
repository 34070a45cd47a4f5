/**
 * `deno task bench:simulate`: the node simulator's speed at 10, 50 and 200 VMs, every fault on.
 *
 * Each size runs a few times, each run in its own process with the flags of `deno task
 * simulate`, and the median and range of the wall time are printed with what they mean: how many
 * times faster than real time, VM-hours per second, microseconds per timer fired. The machine is
 * shared: run it when it is quiet, or read the range.
 *
 *     deno task bench:simulate [-- --runs 3]
 *
 * @module
 */

import { parseArgs } from "node:util";

const args = parseArgs({
  args: Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args,
  options: { runs: { type: "string" } },
}).values;
const runs = Number(args.runs ?? 3);

/** Sizes and how long each runs in virtual time, so that a run takes tens of seconds. */
const CASES = [
  { vms: 10, hours: 24 },
  { vms: 50, hours: 4 },
  { vms: 200, hours: 1 },
];

interface Run {
  wallS: number;
  timers: number;
  ok: boolean;
}

async function once(vms: number, hours: number, seed: number): Promise<Run> {
  const command = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-env",
      "--v8-flags=--max-semi-space-size=64",
      new URL("../sim/node/main.ts", import.meta.url).pathname,
      "--seed",
      String(seed),
      "--vms",
      String(vms),
      "--hours",
      String(hours),
      "--faults",
      "all",
    ],
    stdout: "piped",
    stderr: "inherit",
  });
  const output = await command.output();
  const text = new TextDecoder().decode(output.stdout);
  const match = /virtual in ([\d.]+) s .*?, (\d+) timers/.exec(text);
  if (match === null) throw new Error(`no summary in the output:\n${text}`);
  return { wallS: Number(match[1]), timers: Number(match[2]), ok: output.code === 0 };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

console.log(`${runs} runs per size, seed 1, every fault; wall time as the simulator reports it`);
console.log(
  "VMs  virtual h  wall s median (range)   × real time  VM-h per s  µs per timer  timers",
);
for (const { vms, hours } of CASES) {
  const results: Run[] = [];
  for (let i = 0; i < runs; i++) results.push(await once(vms, hours, 1));
  const walls = results.map((r) => r.wallS);
  const wall = median(walls);
  const timers = results[0].timers;
  console.log(
    `${String(vms).padStart(3)}  ${String(hours).padStart(9)}  ${wall.toFixed(1).padStart(13)} (${
      Math.min(...walls).toFixed(1)
    }–${Math.max(...walls).toFixed(1)})  ${
      Math.round(hours * 3600 / wall).toString().padStart(11)
    }  ${(vms * hours / wall).toFixed(1).padStart(10)}  ${
      (wall * 1e6 / timers).toFixed(1).padStart(12)
    }  ${timers}${results.every((r) => r.ok) ? "" : "  (a run broke an invariant)"}`,
  );
}
