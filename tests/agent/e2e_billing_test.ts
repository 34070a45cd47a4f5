/** End to end: the agent bills the VMs on its node to an HTTP collector, and loses nothing. */

import assert from "node:assert/strict";
import type { Cluster } from "../../sim/cluster.ts";
import { startSimAgent } from "./e2e_helpers.ts";
import { waitFor } from "../support/wait.ts";

const BILLED = "autoscaling.neon.tech/billing-endpoint-id";

function cpuEvents(cluster: Cluster, endpoint: string) {
  return cluster.collector!.events.filter((e) =>
    e.metric === "effective_compute_seconds" && e.endpoint_id === endpoint
  );
}

function cpuSeconds(cluster: Cluster, endpoint: string): number {
  return cpuEvents(cluster, endpoint).reduce((sum, e) => sum + Number(e.value), 0);
}

Deno.test("e2e billing: VMs with a billing endpoint are billed to the HTTP collector; the final drain bills the rest", async () => {
  const sim = await startSimAgent({
    cluster: {
      billingCollector: true,
      vms: [
        {
          name: "billed",
          annotations: { [BILLED]: "ep-billed" },
          cpus: { min: 1000, max: 1000, use: 1000 },
        },
        { name: "free" },
      ],
    },
    config: (raw, cluster) => {
      raw.billing.collectEverySeconds = 1;
      raw.billing.accumulateEverySeconds = 2;
      raw.billing.clients = {
        http: {
          url: cluster.collector!.url,
          pushEverySeconds: 1,
          pushRequestTimeoutSeconds: 2,
          maxBatchSize: 100,
        },
      };
    },
  });
  const { cluster } = sim;
  try {
    await waitFor(() => cpuEvents(cluster, "ep-billed").length >= 2, {
      what: "CPU events for the billed VM",
      limitMs: 15_000,
    });
    assert.equal(cluster.collector!.events.filter((e) => e.endpoint_id !== "ep-billed").length, 0);
    const active = cluster.collector!.events.filter((e) => e.metric === "active_time_seconds");
    assert.ok(active.length >= 1, "active time is billed too");
  } finally {
    await sim.agent.stop();
  }
  // One whole vCPU all along: each window's CPU-seconds equal its active seconds (both rounded
  // per window, as the reference does); the windows, the final drain's included, follow each
  // other without gap or overlap, and together bill the time they span but the first collection
  // period, as the events' own timestamps tell.
  const active = cluster.collector!.events
    .filter((e) => e.metric === "active_time_seconds" && e.endpoint_id === "ep-billed")
    .sort((a, b) => String(a.start_time).localeCompare(String(b.start_time)));
  const byWindow = new Map(active.map((e) => [e.stop_time, Number(e.value)]));
  for (const e of cpuEvents(cluster, "ep-billed")) {
    assert.equal(Number(e.value), byWindow.get(e.stop_time), `window ending ${e.stop_time}`);
  }
  for (let i = 1; i < active.length; i++) {
    assert.equal(active[i].start_time, active[i - 1].stop_time, `window ${i} follows the last`);
  }
  const spanS = (Date.parse(String(active.at(-1)!.stop_time)) -
    Date.parse(String(active[0].start_time))) / 1000;
  const billed = cpuSeconds(cluster, "ep-billed");
  const windows = active.length;
  assert.ok(billed <= spanS + 0.5 * windows, `billed ${billed} CPU-s over ${spanS} s`);
  assert.ok(billed >= spanS - 2 - 0.5 * windows, `billed ${billed} CPU-s over ${spanS} s`);
  assert.equal(cluster.collector!.duplicates, 0);
  await cluster.close();
  await Deno.remove(sim.stateDir, { recursive: true });
});
