/** End to end: the agent in-process against the simulated cluster, scaling real-looking VMs. */

import assert from "node:assert/strict";
import { startAgent } from "../../agent/agent.ts";
import { parseConfig } from "../../agent/config/config.ts";
import { kubeConfigFromString } from "../../agent/k8s/kubeconfig.ts";
import { silentLog } from "../../lib/log.ts";
import { Cluster } from "../../sim/cluster.ts";
import { decodeBytes } from "../../sim/quantity.ts";
import { constant } from "../../sim/vm/workload.ts";
import { sample, simConfigJson, specUse, startSimAgent } from "./e2e_helpers.ts";
import { waitFor } from "../support/wait.ts";

const GiB = 1024 ** 3;

Deno.test("e2e: rising load is scaled up: plugin approval, then patch, then monitor notification once the status shows it", async () => {
  // load 0.7 → 0.7 / 0.9 / 0.25 = 3.1 → 3 CU.
  const sim = await startSimAgent({
    cluster: {
      vms: [{ name: "busy", workload: constant({ load: 0.7, memory: 256 * 1024 ** 2 }) }],
    },
  });
  try {
    const { cluster } = sim;
    await waitFor(() => {
      const use = specUse(cluster, "busy");
      return use.cpu === "750m" && use.slots === 3;
    }, { what: "the VM to be patched to 3 CU" });
    const notified = await waitFor(
      () =>
        cluster.vm("busy").monitor.messages.find((m) =>
          m.type === "UpscaleNotification" &&
          (m.content as { granted: { cpu: number; mem: number } }).granted.mem === 3 * GiB
        ),
      { what: "the monitor to be told of 3 CU" },
    );
    const grant = cluster.plugin.requests.find((r) => r.request?.resources.milliCpu === 750);
    assert.ok(grant, "the plugin was asked for 750m");
    const patch = cluster.api.patches.find((p) => p.name === "busy" && p.status === 200);
    assert.ok(patch, "the VM was patched");
    assert.equal(patch.contentType, "application/json-patch+json");
    const ops = JSON.parse(patch.body);
    assert.deepStrictEqual(ops.map((o: { op: string; path: string }) => [o.op, o.path]), [
      ["replace", "/spec/guest/cpus/use"],
      ["replace", "/spec/guest/memorySlots/use"],
      ["replace", "/spec/targetRevision"],
    ]);
    assert.equal(ops[0].value, "750m");
    assert.equal(ops[1].value, 3);
    assert.ok(grant.at <= patch.at, "plugin approval before the patch");
    // notify only once the status shows the new size.
    // deno-lint-ignore no-explicit-any
    const status = (cluster.vmObject("busy") as any).status;
    assert.equal(status.memorySize, "3Gi");
    assert.ok(patch.at <= notified.at, "patch before the monitor notification");
    const metrics = await (await fetch(sim.agent.addresses.metrics!)).text();
    assert.ok(
      (sample(metrics, "autoscaling_agent_neonvm_outbound_requests_total", { result: "ok" }) ??
        0) >= 1,
    );
    assert.ok(
      (sample(metrics, "autoscaling_agent_scheduler_plugin_requests_total", { code: "200" }) ??
        0) >= 2,
    );
    assert.equal(
      sample(metrics, "autoscaling_agent_runners_current", { is_endpoint: "true", state: "ok" }),
      1,
    );
  } finally {
    await sim.stop();
  }
});

type MonitorMessage = { at: number; type: string; content: unknown };

function monitorMessages(
  sim: { cluster: { vm(n: string): { monitor: { messages: MonitorMessage[] } } } },
  vm: string,
  type: string,
) {
  return sim.cluster.vm(vm).monitor.messages.filter((m) => m.type === type);
}

Deno.test("e2e: falling load is scaled down: monitor approval first, one CU at a time, plugin told last", async () => {
  const sim = await startSimAgent({
    cluster: {
      vms: [{
        name: "idle",
        cpus: { min: 250, max: 1000, use: 1000 },
        memorySlots: { min: 1, max: 4, use: 4 },
        workload: constant({ load: 0.05, memory: 200 * 1024 ** 2 }),
      }],
    },
  });
  try {
    const { cluster } = sim;
    await waitFor(() => {
      const use = specUse(cluster, "idle");
      return use.cpu === "250m" && use.slots === 1;
    }, { what: "the VM to shrink to 1 CU" });
    const downscales = monitorMessages(sim, "idle", "DownscaleRequest");
    const targets = downscales.map((m) =>
      (m.content as { target: { mem: number } }).target.mem / GiB
    );
    assert.deepStrictEqual(targets.slice(0, 3), [3, 2, 1], "one CU per monitor request");
    const patches = cluster.api.patches.filter((p) => p.name === "idle" && p.status === 200);
    const firstPatch = patches[0];
    assert.ok(downscales[0].at <= firstPatch.at, "monitor approval before the first patch");
    const toldShrink = await waitFor(
      () => cluster.plugin.requests.find((r) => r.request?.resources.milliCpu === 250),
      { what: "the plugin to be told of the shrink" },
    );
    const lastPatch = patches.find((p) => JSON.parse(p.body)[1].value === 1)!;
    assert.ok(lastPatch.at <= toldShrink.at, "plugin told only after the patch");
  } finally {
    await sim.stop();
  }
});

Deno.test("e2e: a monitor denial blocks the downscale, which is retried after the cooldown", async () => {
  const sim = await startSimAgent({
    cluster: {
      vms: [{
        name: "stubborn",
        cpus: { min: 250, max: 1000, use: 500 },
        memorySlots: { min: 1, max: 4, use: 2 },
        workload: constant({ load: 0.05, memory: 200 * 1024 ** 2 }),
        monitor: { minMemBytes: 2 * GiB },
      }],
    },
    config: (raw) => raw.monitor.retryDeniedDownscaleSeconds = 1,
  });
  try {
    const { cluster } = sim;
    const denied = await waitFor(() => {
      const requests = monitorMessages(sim, "stubborn", "DownscaleRequest");
      return requests.length >= 2 && requests;
    }, { what: "two denied downscale requests" });
    assert.ok(denied[1].at - denied[0].at >= 1000, "the retry waits for the 1 s cooldown");
    assert.deepStrictEqual(specUse(cluster, "stubborn"), { cpu: "500m", slots: 2 }, "no shrink");
    cluster.vm("stubborn").monitor.setDownscalePolicy(() => ({ ok: true, status: "ok" }));
    await waitFor(() => specUse(cluster, "stubborn").slots === 1, {
      what: "the shrink once the monitor agrees",
    });
    const metrics = await (await fetch(sim.agent.addresses.metrics!)).text();
    assert.ok(
      (sample(metrics, "autoscaling_agent_monitor_latency_seconds_count", { direction: "dec" }) ??
        0) >= 2,
      "denials and approvals are both measured",
    );
  } finally {
    await sim.stop();
  }
});

Deno.test("e2e: a monitor UpscaleRequest scales memory up within one plugin round trip", async () => {
  const sim = await startSimAgent({
    cluster: {
      vms: [{
        name: "hungry",
        workload: constant({ load: 0.05, memory: 200 * 1024 ** 2 }),
        monitor: { upscaleThreshold: null },
      }],
    },
  });
  try {
    const { cluster } = sim;
    const monitor = cluster.vm("hungry").monitor;
    await waitFor(() => monitor.connected, { what: "the monitor connection" });
    await waitFor(() => cluster.plugin.requests.length > 0, { what: "a first plugin answer" });
    const before = cluster.plugin.requests.length;
    monitor.requestUpscale();
    const patch = await waitFor(
      () =>
        cluster.api.patches.find((p) => p.name === "hungry" && JSON.parse(p.body)[1].value === 2),
      { what: "the memory upscale patch" },
    );
    const pluginCalls = cluster.plugin.requests.slice(before).filter((r) => r.at <= patch.at);
    assert.equal(pluginCalls.length, 1, "exactly one plugin round trip before the patch");
    const metrics = await (await fetch(sim.agent.addresses.metrics!)).text();
    assert.equal(
      sample(metrics, "autoscaling_agent_monitor_inbound_requests_total", {
        endpoint: "UpscaleRequest",
        code: "ok",
      }),
      1,
    );
    assert.equal(
      sample(metrics, "autoscaling_agent_monitor_upscale_request_to_patch_seconds_count"),
      1,
    );
  } finally {
    await sim.stop();
  }
});

Deno.test("e2e: the plugin granting less caps the patch; the rest is asked for again later", async () => {
  const sim = await startSimAgent({
    cluster: {
      vms: [{ name: "capped", workload: constant({ load: 0.9, memory: 200 * 1024 ** 2 }) }],
    },
  });
  try {
    const { cluster } = sim;
    cluster.plugin.setGrant({ cpu: 0.5, mem: 0.5 });
    const firstPatch = await waitFor(
      () => cluster.api.patches.find((p) => p.name === "capped" && p.status === 200),
      { what: "a patch" },
    );
    const ops = JSON.parse(firstPatch.body);
    const granted = cluster.plugin.requests.filter((r) => r.status === 200 && r.at <= firstPatch.at)
      .at(-1)!;
    const permit = JSON.parse(granted.response).permit;
    assert.equal(ops[1].value, decodeBytes(permit.mem) / GiB, "the patch stops at the permit");
    assert.ok(ops[1].value < 4, `patched to ${ops[1].value} slots, below the 4 CU asked for`);
    cluster.plugin.setGrant({ cpu: 1, mem: 1 });
    await waitFor(() => specUse(cluster, "capped").slots === 4, {
      what: "the rest once the plugin grants it",
    });
    const metrics = await (await fetch(sim.agent.addresses.metrics!)).text();
    assert.ok(
      (sample(metrics, "autoscaling_agent_scaling_partial_approvals_total", { direction: "inc" }) ??
        0) >= 1,
    );
  } finally {
    await sim.stop();
  }
});

Deno.test("e2e: bounds changed on the VM object take effect", async () => {
  const sim = await startSimAgent({
    cluster: {
      vms: [{ name: "bounded", workload: constant({ load: 2, memory: 200 * 1024 ** 2 }) }],
    },
  });
  try {
    const { cluster } = sim;
    await waitFor(() => specUse(cluster, "bounded").slots === 4, {
      what: "the VM at its 4 CU maximum",
    });
    cluster.api.update("virtualmachines", "default", "bounded", (vm) => {
      // deno-lint-ignore no-explicit-any
      (vm as any).metadata.annotations["autoscaling.neon.tech/bounds"] = JSON.stringify({
        min: { cpu: "250m", mem: "1Gi" },
        max: { cpu: "500m", mem: "2Gi" },
      });
    });
    await waitFor(() => {
      const use = specUse(cluster, "bounded");
      return use.cpu === "500m" && use.slots === 2;
    }, { what: "the VM brought down to the new 2 CU maximum" });
  } finally {
    await sim.stop();
  }
});

Deno.test("e2e: VMs get and lose Runners as they are created, deleted and migrated; other nodes are ignored", async () => {
  const sim = await startSimAgent({
    cluster: { vms: [{ name: "first" }, { name: "elsewhere", node: "other-node" }] },
  });
  try {
    const { cluster, agent } = sim;
    await waitFor(() => agent.state.size === 1, { what: "one Runner" });
    cluster.addVm({ name: "second" });
    await waitFor(() => agent.state.size === 2, { what: "two Runners" });
    await cluster.removeVm("first");
    await waitFor(() => agent.state.size === 1, { what: "back to one Runner" });
    assert.deepStrictEqual(agent.state.dump().map((p) => p.podName.name), [
      // deno-lint-ignore no-explicit-any
      (cluster.vmObject("second") as any).status.podName,
    ]);
    assert.equal(
      await cluster.api.controller.migrate("default", "second", {
        node: "other-node",
        podIP: "127.0.0.99",
      }),
      true,
    );
    await waitFor(() => agent.state.size === 0, { what: "no Runner once the VM migrated away" });
    const metrics = await (await fetch(sim.agent.addresses.metrics!)).text();
    assert.equal(sample(metrics, "autoscaling_agent_runner_starts"), 2);
    assert.equal(
      cluster.vm("elsewhere").monitor.sessionCount,
      0,
      "the other node's VM is never contacted",
    );
    assert.equal(cluster.vm("elsewhere").system.reads, 0);
  } finally {
    await sim.stop();
  }
});

Deno.test("e2e: the agent binds its ports before it watches or starts a Runner; a taken port fails the start first", async () => {
  const cluster = await Cluster.start({ vms: [{ name: "orphan" }], pluginPort: 0 });
  const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const stateDir = await Deno.makeTempDir();
  try {
    const raw = await simConfigJson();
    raw.listen = { host: "127.0.0.1", metricsPort: 0, vmMetricsPort: 0 };
    raw.dumpState = { port: (busy.addr as Deno.NetAddr).port, timeoutSeconds: 1 };
    raw.scheduler.requestPort = cluster.plugin.port;
    cluster.api.clearRecords();
    await assert.rejects(
      startAgent({
        config: parseConfig(JSON.stringify(raw)),
        nodeName: "sim-node",
        podIP: "127.0.0.1",
        kubeConfig: kubeConfigFromString(cluster.api.kubeconfig()),
        stateDir,
        hostname: "agent-test",
        log: silentLog,
      }),
      Deno.errors.AddrInUse,
    );
    assert.deepEqual(cluster.api.requests, [], "nothing was listed or watched");
    // A Runner would have opened (or kept re-opening) the VM's monitor session.
    const monitor = cluster.vm("orphan").monitor;
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(monitor.sessionCount, 0, "no Runner ever connected");
  } finally {
    busy.close();
    await cluster.close();
    await Deno.remove(stateDir, { recursive: true });
  }
});
