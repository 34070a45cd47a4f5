/**
 * End to end: the agent's watches against an API server that behaves as a production one, with
 * a bookmark every minute, compactions every 5 min and a quiet cluster. The API server and the
 * agent's Kubernetes client share a virtual clock, so minutes pass in a second; the rest of the
 * agent and the VMs run on real time.
 */

import assert from "node:assert/strict";
import { KubeClient, openKubeClient } from "../../agent/k8s/client.ts";
import { kubeConfigFromString } from "../../agent/k8s/kubeconfig.ts";
import { TokenBucket } from "../../agent/k8s/rate_limit.ts";
import { VirtualClock } from "../../lib/virtual_clock.ts";
import { SeededRandom } from "../../lib/random.ts";
import { makeSchedulerPod } from "../../sim/k8s/mod.ts";
import { constant } from "../../sim/vm/workload.ts";
import { specUse, startSimAgent } from "./e2e_helpers.ts";
import { waitFor } from "../support/wait.ts";

const MiB = 1024 ** 2;
const GiB = 1024 * MiB;
const SECOND = 1000;
const MINUTE = 60 * SECOND;
const realSettle = () => new Promise<void>((resolve) => setTimeout(resolve, 10));

const VM_PATH = "/apis/vm.neon.tech/v1/virtualmachines";
const POD_PATH = "/api/v1/namespaces/kube-system/pods";

Deno.test("e2e watch: on a quiet cluster each watch is opened once for minutes, and an upscale still completes through it", async () => {
  const clock = new VirtualClock();
  let kube: KubeClient | undefined;
  const sim = await startSimAgent({
    cluster: {
      vms: [{ name: "quiet", workload: constant({ load: 0.05, memory: 256 * MiB }) }],
      api: { clock, random: new SeededRandom(7), bookmarkPeriodMs: MINUTE },
    },
    ports: async (cluster) => {
      const bucket = () => new TokenBucket({ perSecond: 5, burst: 10, clock });
      kube = await openKubeClient(kubeConfigFromString(cluster.api.kubeconfig()), {
        vmRateLimiter: bucket(),
        podRateLimiter: bucket(),
        clock,
      });
      return { kube };
    },
  });
  try {
    const { cluster } = sim;
    const { api } = cluster;
    await waitFor(() => cluster.vm("quiet").monitor.connected, { what: "the monitor connection" });
    const calls = (path: string, watch: boolean) =>
      api.requests.filter((r) => r.path === path && r.query.includes("watch=true") === watch);
    const watchCount = () => [calls(VM_PATH, true).length, calls(POD_PATH, true).length];

    // Writes nobody watches move the cluster's resourceVersion on, as leases do in a real one.
    api.create("pods", makeSchedulerPod({ name: "noise", podIP: "127.0.9.9" }));
    const churn = () => {
      api.update("pods", "kube-system", "noise", (pod) => {
        (pod.metadata as Record<string, unknown>).labels = { tick: String(clock.now()) };
      });
      clock.timer(20 * SECOND, churn);
    };
    churn();

    await clock.advance(290 * SECOND, realSettle);
    assert.deepEqual(watchCount(), [1, 1], "each watch opened once in almost 5 minutes");
    const timeouts = [...calls(VM_PATH, true), ...calls(POD_PATH, true)].map((r) =>
      Number(new URLSearchParams(r.query).get("timeoutSeconds"))
    );
    assert.ok(timeouts.every((t) => t >= 300 && t < 600), `timeoutSeconds ${timeouts}`);

    // Past the servers' ends of them: re-watched from a bookmark, never relisted.
    await clock.advance(12 * MINUTE, realSettle);
    await waitFor(() => api.openWatches() === 2, { what: "no watch is being re-opened" });
    const [vmWatches, podWatches] = watchCount();
    assert.ok(vmWatches >= 2 && vmWatches <= 3, `${vmWatches} VM watches in 17 min`);
    assert.ok(podWatches >= 2 && podWatches <= 3, `${podWatches} pod watches in 17 min`);
    assert.deepEqual([calls(VM_PATH, false).length, calls(POD_PATH, false).length], [1, 1]);

    // The upscale's new status reaches the agent through the watch it holds.
    const held = watchCount();
    cluster.vm("quiet").setWorkload(constant({ load: 0.7, memory: 256 * MiB }));
    await waitFor(() => {
      const use = specUse(cluster, "quiet");
      return use.cpu === "750m" && use.slots === 3;
    }, { what: "the VM patched to 3 CU" });
    await waitFor(
      () =>
        cluster.vm("quiet").monitor.messages.some((m) =>
          m.type === "UpscaleNotification" &&
          (m.content as { granted: { mem: number } }).granted.mem === 3 * GiB
        ),
      { what: "the monitor told of 3 CU once the status showed it" },
    );
    assert.deepEqual(watchCount(), held, "no watch was re-opened for it");
    const warnings = sim.logs.filter((l) => l.message.startsWith("VM status did not show"));
    assert.deepEqual(warnings, [], "the status was seen, not waited out");
  } finally {
    await sim.stop();
    kube?.close();
  }
});
