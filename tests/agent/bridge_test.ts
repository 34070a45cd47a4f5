import assert from "node:assert/strict";
import { makeVirtualMachine } from "../../sim/k8s/mod.ts";
import type { NeonVMPriority, Resources, VmInfo } from "../../core/mod.ts";
import { neonvmBridge } from "../../agent/executor/bridge.ts";
import { KubeClient, openKubeClient } from "../../agent/k8s/client.ts";
import { kubeConfigFromString } from "../../agent/k8s/kubeconfig.ts";
import { buildNeonVMPatch, type JsonPatchOperation } from "../../agent/k8s/patch.ts";
import { TokenBucket, type TokenPriority } from "../../agent/k8s/rate_limit.ts";
import { GlobalMetrics } from "../../agent/observability/metrics.ts";
import { PodStatus } from "../../agent/runner/pod_status.ts";
import { systemClock } from "../../lib/clock.ts";
import { ok } from "../../lib/result.ts";
import { VmStatusWaiter } from "../../agent/k8s/vm_status_waiter.ts";
import { recordingLog } from "../support/log.ts";
import { withFakeApi } from "./k8s_test_helpers.ts";

const GiB = 1024 ** 3;

function size(vCPU: number, slots: number): Resources {
  return { vCPU, mem: slots * GiB };
}

function revision(value: number) {
  return { value, flags: 0, updatedAt: Date.now() };
}

/** The target revision a recorded patch carries: it tells the patches apart. */
function revisionOf(body: string): number {
  const ops = JSON.parse(body) as JsonPatchOperation[];
  const op = ops.find((o) => o.path === "/spec/targetRevision")!;
  return (op.value as { revision: { value: number } }).revision.value;
}

const limits = {
  unhealthyAfterSilenceMs: 1,
  unhealthyStartupGraceMs: 1,
  monitorFailureThreshold: 0,
  neonvmFailureThreshold: 0,
  schedulerFailureThreshold: 0,
  monitorFailureWindowMs: 1,
  neonvmFailureWindowMs: 1,
  schedulerFailureWindowMs: 1,
};

/** A NeonVM bridge for the VM "example" over `kube`. */
function bridgeOn(kube: KubeClient) {
  const status = new PodStatus({} as VmInfo, "", limits, systemClock, () => {});
  const bridge = neonvmBridge(
    {
      kube,
      vm: { namespace: "default", name: "example" },
      memorySlotSize: GiB,
      timeoutMs: 10_000,
      statusWaitMs: 0,
      statusWaiter: new VmStatusWaiter(systemClock),
      clock: systemClock,
      log: recordingLog(),
    },
    new GlobalMetrics(),
    status,
  );
  return { bridge, status };
}

/** One patch through the bridge, from `current` to `target`. */
function patchOf(
  current: Resources,
  target: Resources,
  revisionValue: number,
  priority: NeonVMPriority,
) {
  return { current, target, targetRevision: revision(revisionValue), priority };
}

/** Another VM's patch straight through the client, told apart by its revision. */
function otherPatch(kube: KubeClient, value: number, priority?: TokenPriority) {
  return kube.patchVirtualMachine(
    "default",
    "example",
    buildNeonVMPatch({
      target: size(500, 2),
      memorySlotSize: GiB,
      revision: revision(value),
      now: Date.now(),
    }),
    { priority },
  );
}

/** A client whose VM bucket hands out a token every 250 ms, burst 2, one kept for upscales. */
function slowBucketClient(kubeconfig: string, urgentReserve: number): Promise<KubeClient> {
  return openKubeClient(kubeConfigFromString(kubeconfig), {
    vmRateLimiter: new TokenBucket({ perSecond: 4, burst: 2, upscaleReserve: 1, urgentReserve }),
  });
}

const exampleVM = () =>
  makeVirtualMachine({
    name: "example",
    podIP: "127.0.0.2",
    cpus: { min: 250, max: 1250, use: 500 },
    memorySlots: { min: 1, max: 5, use: 2 },
  });

Deno.test("neonvm bridge: an upscale patch goes ahead of a backlog in the token bucket", async () => {
  await withFakeApi(async (api) => {
    api.create("virtualmachines", exampleVM());
    // 250 ms per token: wide enough apart that the order the fake sees is the bucket's.
    const kube = await slowBucketClient(api.kubeconfig(), 0);
    const { bridge, status } = bridgeOn(kube);
    const signal = new AbortController().signal;
    // Other VMs' patches: the first takes the last unreserved token, the others queue.
    const backlog = [1, 2, 3].map((value) => otherPatch(kube, value));
    const upscale = await bridge.request(
      patchOf(size(500, 2), size(750, 3), 10, "upscale"),
      signal,
    );
    assert.deepEqual(upscale, { ok: true, value: undefined });
    const downscale = await bridge.request(
      patchOf(size(750, 3), size(250, 1), 11, "normal"),
      signal,
    );
    assert.deepEqual(downscale, { ok: true, value: undefined });
    assert.deepEqual(await Promise.all(backlog), [ok(undefined), ok(undefined), ok(undefined)]);
    const order = api.patches.map((p) => revisionOf(p.body));
    assert.deepEqual(order.slice(0, 2).sort((a, b) => a - b), [1, 10], "both went at once");
    assert.deepEqual(order.slice(2), [2, 3, 11], "the downscale queued behind the backlog");
    assert.equal(status.failedNeonVMRequests.get(), 0);
  });
});

Deno.test("neonvm bridge: an upscale the vm-monitor asked for goes ahead of queued upscales", async () => {
  await withFakeApi(async (api) => {
    api.create("virtualmachines", exampleVM());
    // Upscales leave the one urgent token; 250 ms per token, as above.
    const kube = await slowBucketClient(api.kubeconfig(), 1);
    const { bridge, status } = bridgeOn(kube);
    const signal = new AbortController().signal;
    // A surge of other VMs' load-driven upscales: the first takes the last unreserved token.
    const backlog = [1, 2, 3].map((value) => otherPatch(kube, value, "upscale"));
    const urgent = await bridge.request(patchOf(size(500, 2), size(750, 3), 10, "urgent"), signal);
    assert.deepEqual(urgent, { ok: true, value: undefined });
    // Once the request is met, the next growth is load-driven and queues like the others.
    const upscale = await bridge.request(
      patchOf(size(750, 3), size(1000, 4), 11, "upscale"),
      signal,
    );
    assert.deepEqual(upscale, { ok: true, value: undefined });
    await bridge.request(patchOf(size(1000, 4), size(750, 3), 12, "normal"), signal);
    assert.deepEqual(await Promise.all(backlog), [ok(undefined), ok(undefined), ok(undefined)]);
    const order = api.patches.map((p) => revisionOf(p.body));
    assert.deepEqual(order.slice(0, 2).sort((a, b) => a - b), [1, 10], "both went at once");
    assert.deepEqual(order.slice(2), [2, 3, 11, 12], "the load-driven upscale queued");
    assert.equal(status.failedNeonVMRequests.get(), 0);
  });
});
