/**
 * Billing on a full state directory, against the agent as a process on a small file system of
 * its own (a tmpfs in a mount namespace of its own; skipped where mounting is not allowed): the
 * disk fills while the billing destination answers 503. Delivery must resume when the
 * destination does, whether or not the disk has room, and a stop that can neither deliver nor
 * save usage must say so, with the amount, in the log and in the exit status.
 */

import assert from "node:assert/strict";
import { Cluster } from "../../sim/cluster.ts";
import { constant } from "../../sim/vm/workload.ts";
import { waitFor } from "../support/wait.ts";
import { AgentProcess, canMountTmpfs } from "./agent_process.ts";
import { HEALTHY_LOAD, healthyScaled } from "./helpers.ts";

const BILLED = "autoscaling.neon.tech/billing-endpoint-id";
const mountable = await canMountTmpfs();

async function start() {
  const cluster = await Cluster.start({
    pluginPort: 0,
    billingCollector: true,
    vms: [
      { name: "healthy", workload: constant({ load: HEALTHY_LOAD }) },
      ...["a", "b", "c"].map((id) => ({
        name: `billed-${id}`,
        annotations: { [BILLED]: `ep-${id}` },
        cpus: { min: 1000, max: 1000, use: 1000 },
      })),
    ],
  });
  const agent = await AgentProcess.start({
    cluster,
    stateDirKiB: 512,
    config: (raw) => {
      raw.billing.collectEverySeconds = 1;
      raw.billing.accumulateEverySeconds = 2;
      raw.billing.clients = {
        http: {
          url: cluster.collector!.url,
          pushEverySeconds: 1,
          pushRequestTimeoutSeconds: 1,
          maxBatchSize: 100,
        },
      };
    },
  });
  // The agent's state directory as its mount namespace sees it.
  const stateDir = `/proc/${agent.pid}/root${agent.stateDir}`;
  const filler = `${stateDir}/filler`;
  const fill = async () => {
    const file = await Deno.open(filler, { create: true, write: true, append: true });
    try {
      const block = new Uint8Array(4096);
      for (;;) await file.write(block);
    } catch {
      // ENOSPC: full.
    } finally {
      file.close();
    }
  };
  const billedEvents = () =>
    cluster.collector!.events.filter((e) => String(e.endpoint_id).startsWith("ep-"));
  return { cluster, agent, fill, free: () => Deno.remove(filler), billedEvents };
}

Deno.test({
  name:
    "hostile: a full state dir while the destination is down; delivery resumes with the destination, not with the disk",
  ignore: !mountable,
  async fn() {
    const { cluster, agent, fill, free, billedEvents } = await start();
    try {
      await waitFor(() => billedEvents().length >= 6, { what: "first events", limitMs: 20_000 });
      cluster.collector!.failFor(6000, 503);
      await fill();
      await healthyScaled(cluster, ["healthy"]);
      const beforeRecovery = billedEvents().length;
      // The destination is back; the disk stays full. Drains made since must still arrive.
      await waitFor(() => billedEvents().length >= beforeRecovery + 12, {
        what: "events delivered with the disk still full",
        limitMs: 20_000,
      });
      const lines = JSON.stringify(agent.lines);
      assert.match(lines, /No space left on device/);
      await free();
    } finally {
      const status = await agent.stop();
      await cluster.close();
      assert.ok(status?.success, `agent exit ${JSON.stringify(status)}:\n${agent.tail()}`);
      assert.ok(!agent.lines.some((l) => l.msg.startsWith("usage lost")), agent.tail());
      assert.equal(cluster.collector!.duplicates, 0);
    }
  },
});

Deno.test({
  name:
    "hostile: stopping with the disk full and the destination down logs the usage lost and exits 1",
  ignore: !mountable,
  async fn() {
    const { cluster, agent, fill, billedEvents } = await start();
    try {
      await waitFor(() => billedEvents().length >= 6, { what: "first events", limitMs: 20_000 });
      cluster.collector!.failFor(120_000, 503);
      await fill();
      // A few drains go to memory only.
      await new Promise((r) => setTimeout(r, 5000));
    } finally {
      const status = await agent.stop();
      await cluster.close();
      assert.equal(status?.code, 1, `agent exit ${JSON.stringify(status)}:\n${agent.tail()}`);
      const lost = agent.lines.find((l) => l.msg.startsWith("usage lost"));
      assert.ok(lost, agent.tail());
      assert.equal(lost.level, "error");
      assert.equal(lost.client, "http");
      assert.ok(lost.events >= 6, JSON.stringify(lost));
      assert.ok(lost.amounts.effective_compute_seconds >= 3, JSON.stringify(lost));
    }
  },
});
