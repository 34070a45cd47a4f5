/**
 * Starts 2,000 fake VMs and the fake scheduler plugin in this process, then reports how long
 * that took and how much CPU the idle simulation burns.
 *
 *     deno run -A bench/sim_start.ts [--vms N] [--idle-seconds S]
 *
 * Targets (issue 3): start < 10 s, idle < 5 % of one core.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { FakeVm, vmAddress } from "../sim/vm/fake_vm.ts";
import { SchedulerPlugin } from "../sim/plugin/scheduler_plugin.ts";
import { GiB, sine } from "../sim/vm/workload.ts";

const { values } = parseArgs({
  options: {
    vms: { type: "string", default: "2000" },
    "idle-seconds": { type: "string", default: "10" },
  },
});
const count = Number(values.vms);
const idleSeconds = Number(values["idle-seconds"]);

// User + system CPU time of this process, in seconds (/proc/self/stat fields 14 and 15).
function cpuSeconds(): number {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ is 100 on Linux
}

// Ports off the defaults, so an agent (or anything else) on 9100 does not get in the way.
const ports = { system: 19100, lfc: 19499, monitor: 20301 };
const workload = sine({ mean: { load: 0.5, memory: 512 * 1024 * 1024 }, amplitude: { load: 0.4 } });

const started = performance.now();
const plugin = new SchedulerPlugin({ hostname: "127.0.0.2", port: 10299 });
plugin.start();
const vms: FakeVm[] = [];
for (let i = 0; i < count; i++) {
  const vm = new FakeVm({
    name: `vm-${i}`,
    ip: vmAddress(i),
    ports,
    size: { milliCpu: 1000, memBytes: 4 * GiB },
    workload: workload.withSpeedUp(60),
  });
  vm.start();
  plugin.registerPod("default", `vm-${i}`);
  vms.push(vm);
}
const startMs = performance.now() - started;
console.log(
  `started ${count} fake VMs (${count * 3} listeners) + plugin in ${startMs.toFixed(0)} ms`,
);

const cpuBefore = cpuSeconds();
const idleFrom = performance.now();
await new Promise((resolve) => setTimeout(resolve, idleSeconds * 1000));
const wallSeconds = (performance.now() - idleFrom) / 1000;
const idleFraction = (cpuSeconds() - cpuBefore) / wallSeconds;
console.log(
  `idle CPU over ${wallSeconds.toFixed(1)} s: ${(idleFraction * 100).toFixed(2)}% of one core`,
);

// What a scrape costs the simulation: every VM's two endpoints once, 100 at a time.
const scrapeCpu = cpuSeconds();
const scrapeFrom = performance.now();
for (let i = 0; i < vms.length; i += 100) {
  await Promise.all(
    vms.slice(i, i + 100).flatMap((vm) =>
      [vm.system.url, vm.lfc.url].map(async (url) => {
        const res = await fetch(url);
        await res.text();
      })
    ),
  );
}
console.log(
  `one scrape of all ${count * 2} metrics endpoints: ${
    (performance.now() - scrapeFrom).toFixed(0)
  } ms wall, ${((cpuSeconds() - scrapeCpu) * 1000).toFixed(0)} ms CPU (client included)`,
);

const stopping = performance.now();
await Promise.all([plugin.stop(), ...vms.map((vm) => vm.stop())]);
console.log(`stopped in ${(performance.now() - stopping).toFixed(0)} ms`);
console.log(
  `targets: start < 10000 ms: ${startMs < 10_000 ? "met" : "MISSED"}; ` +
    `idle < 5%: ${idleFraction < 0.05 ? "met" : "MISSED"}`,
);
