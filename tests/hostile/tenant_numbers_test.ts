/**
 * Hostile tenants: a VM's exporter reports a negative load, or a load so large that the goal
 * would wrap. A healthy VM beside them scales as usual.
 */

import assert from "node:assert/strict";
import { constant } from "../../sim/vm/workload.ts";
import { sample, specUse, startSimAgent } from "../agent/e2e_helpers.ts";
import { waitFor } from "../support/wait.ts";

// The goal is load / 0.9 / 0.25 CU: this load asks for 2^32 + 2^16 + 1 CU, which wrapped
// modulo 2^32 and then 2^16 is 1 CU, the VM's minimum.
const WRAPPING_LOAD = (2 ** 32 + 2 ** 16 + 1) * 0.225;

Deno.test("hostile: negative and huge loads are neither forwarded nor wrapped; a healthy VM scales", async () => {
  const sim = await startSimAgent({
    cluster: {
      vms: [
        { name: "healthy", workload: constant({ load: 0.7 }) },
        { name: "negative", cpus: { min: 250, max: 1000, use: 500 } },
        { name: "huge" },
      ],
    },
  });
  try {
    const { cluster } = sim;
    cluster.vm("negative").system.set({ load1: -5, load5: -5 });
    cluster.vm("huge").system.set({ load1: WRAPPING_LOAD, load5: WRAPPING_LOAD });
    await waitFor(() => specUse(cluster, "healthy").cpu === "750m", {
      what: "the healthy VM to reach 3 CU",
    });
    await waitFor(() => specUse(cluster, "huge").slots === 4, {
      what: "the huge VM to reach its maximum",
    });
    const negative = await waitFor(
      () =>
        cluster.plugin.requests.find((r) =>
          r.request?.pod.name.startsWith("negative-") && r.request.metrics !== null
        ),
      { what: "a plugin request for the negative VM" },
    );
    for (const r of cluster.plugin.requests) {
      const load = r.request?.metrics?.loadAvg1M;
      if (load !== undefined) assert.ok(load >= 0, `plugin saw load ${load} in ${r.raw}`);
    }
    assert.equal(negative.request?.metrics?.loadAvg1M, 0);
    const metrics = await (await fetch(sim.agent.addresses.metrics!)).text();
    const counted = sample(metrics, "autoscaling_agent_vm_metrics_invalid_values_total", {
      kind: "system",
      field: "loadAverage1Min",
    });
    assert.ok((counted ?? 0) >= 1, "negative loads are counted");
  } finally {
    await sim.stop();
  }
});
