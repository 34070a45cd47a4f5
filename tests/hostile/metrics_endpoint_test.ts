/**
 * Hostile metrics endpoints: a redirect to somewhere on the node, and pages as large as the limit
 * allows, every scrape. Healthy VMs beside them keep scaling.
 */

import assert from "node:assert/strict";
import { constant } from "../../sim/vm/workload.ts";
import { sample, startSimAgent } from "../agent/e2e_helpers.ts";
import { canary, HEALTHY_LOAD, healthyScaled, replaceSystemMetrics } from "./helpers.ts";
import { waitFor } from "../support/wait.ts";

const healthy = (name: string) => ({ name, workload: constant({ load: HEALTHY_LOAD }) });

Deno.test("hostile: a metrics redirect is followed only to the VM's own address", async () => {
  const node = canary("127.0.0.1");
  const sim = await startSimAgent({
    cluster: { vms: [healthy("healthy"), { name: "redirector" }] },
  });
  try {
    const stop = await replaceSystemMetrics(
      sim.cluster,
      "redirector",
      () => new Response(null, { status: 302, headers: { location: node.url } }),
    );
    try {
      const refused = await waitFor(
        () =>
          sim.logs.find((l) =>
            l.message === "error getting system metrics" &&
            String(l.fields.error).includes("redirect to")
          ),
        { what: "the refused redirect in the logs" },
      );
      assert.match(
        String(refused.fields.error),
        new RegExp(`redirect to "${node.url.replaceAll(".", "\\.")}" refused`),
      );
      await healthyScaled(sim.cluster, ["healthy"]);
      assert.equal(node.state.requests, 0, "the agent fetched the node-local URL");
    } finally {
      await stop();
    }
  } finally {
    await sim.stop();
    await node.close();
  }
});

Deno.test("hostile: pages over the body limit are cut off, and large ones only within the byte allowance", async () => {
  const LIMIT = 1024 * 1024;
  const PAGE = "# TYPE filler gauge\n" + 'filler{a="b"} 1\n'.repeat(Math.ceil(LIMIT / 16));
  const sim = await startSimAgent({
    cluster: {
      vms: [healthy("healthy-a"), healthy("healthy-b"), { name: "big" }, { name: "huge" }],
    },
    config: (raw) => {
      raw.metrics.maxBodyBytes = 2 * LIMIT;
      raw.metrics.bytesPerSecond = 16 * 1024;
    },
  });
  const served = { big: 0, huge: 0 };
  const stops: (() => Promise<void>)[] = [];
  try {
    // "big" sends just over half the limit, valid but useless; "huge" sends more than the limit.
    stops.push(
      await replaceSystemMetrics(sim.cluster, "big", () => {
        served.big++;
        return new Response(PAGE.slice(0, LIMIT));
      }),
      await replaceSystemMetrics(sim.cluster, "huge", () => {
        served.huge++;
        return new Response(PAGE + PAGE + PAGE);
      }),
    );
    await healthyScaled(sim.cluster, ["healthy-a", "healthy-b"]);
    await waitFor(
      () => sim.logs.find((l) => String(l.fields.error).startsWith("scrape skipped:")),
      { what: "a skipped scrape" },
    );
    const cut = sim.logs.find((l) =>
      String(l.fields.error).includes(`response body larger than ${2 * LIMIT} bytes`)
    );
    assert.ok(cut, "the huge page was cut off at the limit");
    // Scraped every second, each sent one page: the allowance let through far fewer.
    await new Promise((r) => setTimeout(r, 3000));
    assert.ok(served.big <= 3, `big served ${served.big} pages`);
    assert.ok(served.huge <= 3, `huge served ${served.huge} pages`);
    const metrics = await (await fetch(sim.agent.addresses.metrics!)).text();
    assert.ok(
      (sample(metrics, "autoscaling_agent_vm_metrics_scrape_errors_total", { kind: "system" }) ??
        0) >= 2,
    );
  } finally {
    for (const stop of stops) await stop();
    await sim.stop();
  }
});
