/**
 * The status wait after a NeonVM patch counts only what the VM watch shows after the patch was
 * sent. Found by the node simulator (seed 4, 10 VMs, 2 h, all faults): with the watch down while
 * the controller applied an earlier upscale, a downscale back to the size last seen "arrived" at
 * once, and the plugin heard of it while the VM still had the larger size.
 */

import assert from "node:assert/strict";
import type { Resources, VmInfo } from "../../core/mod.ts";
import { neonvmBridge } from "../../agent/executor/bridge.ts";
import { VmStatusWaiter } from "../../agent/k8s/vm_status_waiter.ts";
import type { KubeApi } from "../../agent/ports.ts";
import { GlobalMetrics } from "../../agent/observability/metrics.ts";
import { PodStatus } from "../../agent/runner/pod_status.ts";
import { VirtualClock } from "../../lib/virtual_clock.ts";
import { recordingLog } from "../support/log.ts";

const GiB = 1024 ** 3;
const KEY = "default/example";

function size(vCPU: number, slots: number): Resources {
  return { vCPU, mem: slots * GiB };
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

/** A Kubernetes API whose patches all succeed at once, and a bridge for "example" over it. */
function setUp(clock: VirtualClock, waiter: VmStatusWaiter) {
  const patches: string[] = [];
  const kube: KubeApi = {
    transport: "test",
    virtualMachines: () => {
      throw new Error("not used");
    },
    pods: () => {
      throw new Error("not used");
    },
    patchVirtualMachine(_namespace, _name, operations) {
      patches.push(JSON.stringify(operations));
      return Promise.resolve({ ok: true, value: undefined });
    },
    close: () => {},
  };
  const bridge = neonvmBridge(
    {
      kube,
      vm: { namespace: "default", name: "example" },
      memorySlotSize: GiB,
      timeoutMs: 10_000,
      statusWaitMs: 10_000,
      statusWaiter: waiter,
      clock,
      log: recordingLog(),
    },
    new GlobalMetrics(),
    new PodStatus({} as VmInfo, "", limits, clock, () => {}),
  );
  return { bridge, patches };
}

function downscale(current: Resources, target: Resources) {
  return {
    current,
    target,
    targetRevision: { value: 2, flags: 0, updatedAt: 0 },
    priority: "normal" as const,
  };
}

Deno.test("status wait: a status seen before the patch does not count as the patch arriving", async () => {
  const clock = new VirtualClock();
  const waiter = new VmStatusWaiter(clock);
  // Last seen at 1 CU; the VM has since grown to 2 CU unseen (the watch is down).
  waiter.observe(KEY, size(250, 1));
  const { bridge, patches } = setUp(clock, waiter);
  let done = false;
  const request = bridge.request(
    downscale(size(500, 2), size(250, 1)),
    new AbortController().signal,
  )
    .then((result) => {
      done = true;
      return result;
    });
  await clock.advance(5_000);
  assert.equal(patches.length, 1);
  assert.equal(done, false, "the request waits for a status seen after the patch");
  // The watch delivers the VM as the patch left it: status at 1 CU again.
  waiter.observe(KEY, size(250, 1));
  await clock.advance(0);
  assert.equal(done, true);
  assert.deepEqual(await request, { ok: true, value: undefined });
});

Deno.test("status wait: with no newer status the request goes on after the status wait", async () => {
  const clock = new VirtualClock();
  const waiter = new VmStatusWaiter(clock);
  waiter.observe(KEY, size(250, 1));
  const { bridge } = setUp(clock, waiter);
  let doneAt: number | null = null;
  const request = bridge.request(
    downscale(size(500, 2), size(250, 1)),
    new AbortController().signal,
  )
    .then((result) => {
      doneAt = clock.now();
      return result;
    });
  const start = clock.now();
  await clock.advance(9_999);
  assert.equal(doneAt, null);
  await clock.advance(1);
  assert.equal(doneAt, start + 10_000);
  assert.deepEqual(await request, { ok: true, value: undefined });
});

Deno.test("status wait: a status seen after the patch that already shows the target counts at once", async () => {
  const clock = new VirtualClock();
  const waiter = new VmStatusWaiter(clock);
  const { bridge } = setUp(clock, waiter);
  waiter.expectChange(KEY);
  waiter.observe(KEY, size(250, 1));
  assert.equal(await waiter.waitFor(KEY, size(250, 1), 1000, new AbortController().signal), true);
  // And a bridge request whose target the fresh status shows after the patch, too.
  const request = bridge.request(
    downscale(size(500, 2), size(250, 1)),
    new AbortController().signal,
  );
  await clock.advance(0);
  waiter.observe(KEY, size(250, 1));
  await clock.advance(0);
  assert.deepEqual(await request, { ok: true, value: undefined });
});
