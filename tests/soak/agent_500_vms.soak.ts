/** 500 simulated VMs for 60 s: no unhandled rejections, no growing memory. */

import assert from "node:assert/strict";
import { Cluster, type VmSpec } from "../../sim/cluster.ts";
import { constant, sine, spike, step } from "../../sim/vm/workload.ts";
import { simConfigJson } from "../agent/e2e_helpers.ts";

const VMS = 500;
const MiB = 1024 ** 2;

Deno.test("soak: an agent with 500 VMs runs 60 s without unhandled rejections or growing heap", async () => {
  const profiles = [
    constant({ load: 0.05, memory: 300 * MiB }),
    sine({ mean: { load: 0.5 }, amplitude: { load: 0.4 }, periodMs: 60_000 }),
    step({ from: { load: 0.1 }, to: { load: 0.8 }, atMs: 15_000 }),
    spike({
      base: { load: 0.1 },
      peak: { load: 1.2 },
      atMs: 5_000,
      durationMs: 10_000,
      everyMs: 30_000,
    }),
  ];
  const specs: VmSpec[] = Array.from({ length: VMS }, (_, i) => ({
    name: `soak-${i}`,
    workload: profiles[i % profiles.length],
  }));
  const cluster = await Cluster.start({ vms: specs, pluginPort: 0 });
  const raw = await simConfigJson();
  raw.listen = { host: "127.0.0.1", metricsPort: 0, vmMetricsPort: 0 };
  raw.dumpState = null;
  raw.scheduler.requestPort = cluster.plugin.port;
  raw.metrics.system.secondsBetweenRequests = 5;
  raw.scheduler.requestAtLeastEverySeconds = 15;
  const configPath = await Deno.makeTempFile({ suffix: ".json" });
  await Deno.writeTextFile(configPath, JSON.stringify(raw));
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      "--v8-flags=--expose-gc",
      new URL("./soak_agent.ts", import.meta.url).pathname,
      configPath,
      cluster.kubeconfigPath,
      "10",
      "60",
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  try {
    const output = await child.output();
    const stderr = new TextDecoder().decode(output.stderr);
    assert.ok(output.success, stderr.slice(-2000));
    const samples = new TextDecoder().decode(output.stdout).trim().split("\n").map((l) =>
      JSON.parse(l) as {
        t: number;
        heapUsed: number;
        rss: number;
        rejections: number;
        runners: number;
      }
    );
    console.log(
      samples.map((s) =>
        `t=${s.t}s heap=${(s.heapUsed / MiB).toFixed(1)}MiB rss=${(s.rss / MiB).toFixed(0)}MiB`
      ).join("\n"),
    );
    assert.equal(samples.at(-1)!.t, 60);
    assert.equal(samples.at(-1)!.rejections, 0, stderr.slice(-2000));
    assert.ok(samples.every((s) => s.t < 20 || s.runners === VMS), "every VM has a Runner");
    const at20 = samples.find((s) => s.t === 20)!.heapUsed;
    const at60 = samples.find((s) => s.t === 60)!.heapUsed;
    assert.ok(at60 <= at20 * 1.1, `heap grew from ${at20} to ${at60} bytes between 20 s and 60 s`);
  } finally {
    await cluster.close();
    await Deno.remove(configPath);
  }
});
