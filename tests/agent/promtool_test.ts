/**
 * `promtool check metrics` on both of a running agent's metrics ports finds nothing beyond what
 * it finds in the reference agent's own names. Skipped, with a note, where promtool is missing
 * (CI installs it).
 */

import assert from "node:assert/strict";
import { constant } from "../../sim/vm/workload.ts";
import { startSimAgent } from "./e2e_helpers.ts";
import { findPromtool, problemsBeyondReference, promtoolProblems } from "./promtool.ts";
import { waitFor } from "../support/wait.ts";

const promtool = findPromtool();
if (promtool === undefined) {
  console.log("promtool not found on PATH: skipping the metrics lint test (promtool_test)");
}

Deno.test({
  name: "promtool: both metrics ports of a scaling agent lint clean but for the reference's names",
  ignore: promtool === undefined,
  fn: async () => {
    const sim = await startSimAgent({
      cluster: {
        vms: [{ name: "busy", workload: constant({ load: 0.7, memory: 256 * 1024 ** 2 }) }],
      },
    });
    try {
      // Series of every kind exist once a VM has been scaled and counted.
      await waitFor(
        () => sim.cluster.api.patches.some((p) => p.name === "busy" && p.status === 200),
        { what: "an upscale and a scaling event" },
      );
      const global = await (await fetch(sim.agent.addresses.metrics!)).text();
      const perVm = await (await fetch(sim.agent.addresses.vmMetrics!)).text();
      assert.match(perVm, /^autoscaling_vm_cpu_cores\{/m);
      assert.deepEqual(await problemsBeyondReference(promtool!, global), []);
      assert.deepEqual(await problemsBeyondReference(promtool!, perVm), []);
      // The check itself works: it flags what it should.
      assert.deepEqual(await promtoolProblems(promtool!, "# TYPE x_total gauge\nx_total 1\n"), [
        "x_total no help text",
        'x_total non-counter metrics should not have "_total" suffix',
      ]);
    } finally {
      await sim.stop();
    }
  },
});
