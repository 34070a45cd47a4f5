import assert from "node:assert/strict";
import {
  type FakeKubeApi,
  type JsonObject,
  makeVirtualMachine,
  type VirtualMachineOptions,
} from "../../sim/k8s/mod.ts";
import { type VmEvent, VmWatcher } from "../../agent/k8s/vm_watcher.ts";
import type { VirtualMachine } from "../../agent/k8s/vm.ts";
import { RecordingLog, settle, withFakeApi } from "./k8s_test_helpers.ts";
import { waitFor } from "../support/wait.ts";

const VMS = "virtualmachines";
const GiB = 1024 ** 3;
const BOUNDS = "autoscaling.neon.tech/bounds";
const GOOD_BOUNDS = '{"min":{"cpu":"250m","mem":"1Gi"},"max":{"cpu":2,"mem":"4Gi"}}';
const BAD_BOUNDS = '{"min":{"cpu":"250m","mem":"1Gi"},"max":{"cpu":2,"mem":"1500Mi"}}';

function vm(name: string, options: Partial<VirtualMachineOptions> = {}): JsonObject {
  return makeVirtualMachine({ name, podIP: "127.0.0.2", podName: `${name}-pod`, ...options });
}

interface Setup {
  api: FakeKubeApi;
  watcher: VmWatcher;
  events: VmEvent[];
  /** Events and per-VM metrics calls interleaved, as short strings. */
  timeline: string[];
  log: RecordingLog;
}

async function withWatcher(
  fn: (setup: Setup) => Promise<void>,
  prepare?: (api: FakeKubeApi) => void,
): Promise<void> {
  await withFakeApi(async (api, client) => {
    prepare?.(api);
    const events: VmEvent[] = [];
    const timeline: string[] = [];
    const log = new RecordingLog();
    const name = (vm: VirtualMachine) => vm.metadata.name;
    const watcher = new VmWatcher({
      source: client.virtualMachines(),
      nodeName: "sim-node",
      schedulerName: "autoscale-scheduler",
      onEvent: (event) => {
        events.push(event);
        timeline.push(`${event.kind} ${event.name}`);
      },
      vmMetrics: {
        add: (vm) => timeline.push(`metrics add ${name(vm)}`),
        update: (_old, vm) => timeline.push(`metrics update ${name(vm)}`),
        delete: (vm) => timeline.push(`metrics delete ${name(vm)}`),
      },
      retryDelayMs: 10,
      log,
    });
    const controller = new AbortController();
    try {
      await watcher.start(controller.signal);
      await waitFor(() => api.openWatches(VMS) === 1, { what: "the watch" });
      await fn({ api, watcher, events, timeline, log });
    } finally {
      controller.abort();
      await watcher.stopped;
    }
  });
}

function kinds(events: VmEvent[]): string[] {
  return events.splice(0).map((e) => `${e.kind} ${e.name} ${e.podName}`);
}

Deno.test("vm watcher: our VMs get added; other nodes are ignored but still measured", async () => {
  await withWatcher(async ({ api, events, timeline, watcher }) => {
    assert.deepEqual(timeline.splice(0), ["metrics add mine", "added mine", "metrics add theirs"]);
    const [added] = events.splice(0);
    assert.equal(added.kind, "added");
    assert.equal(added.namespace, "default");
    assert.equal(added.podName, "mine-pod");
    assert.equal(added.podIP, "127.0.0.2");
    assert.equal(added.endpointID, "ep-mine");
    assert.equal(added.vmUid, (api.get(VMS, "default", "mine")!.metadata as JsonObject).uid);
    assert.deepEqual(added.vmInfo.cpu, { min: 250, max: 1000, use: 250 });
    assert.deepEqual(added.vmInfo.mem, { min: 1, max: 4, use: 1, slotSize: GiB });

    api.create(VMS, vm("later", { node: "other-node" }));
    api.patchStatus(VMS, "default", "theirs", { phase: "Scaling" });
    api.delete(VMS, "default", "theirs");
    await waitFor(() => timeline.length === 4, { what: "the metrics calls" });
    assert.deepEqual(timeline.splice(0), [
      "metrics add later",
      "metrics update theirs",
      "metrics update theirs",
      "metrics delete theirs",
    ]);
    assert.equal(events.length, 0);
    assert.equal(watcher.vms().length, 2);
  }, (api) => {
    api.create(VMS, vm("mine"));
    api.create(VMS, vm("theirs", { node: "other-node" }));
  });
});

Deno.test("vm watcher: moving in and out of responsibility", async () => {
  await withWatcher(async ({ api, events }) => {
    assert.deepEqual(kinds(events), []);
    api.patchStatus(VMS, "default", "v", { phase: "Running" });
    await waitFor(() => events.length === 1, { what: "added" });
    api.patchStatus(VMS, "default", "v", { phase: "Scaling" });
    await waitFor(() => events.length === 2, { what: "updated" });
    api.patchStatus(VMS, "default", "v", { phase: "Migrating" });
    await waitFor(() => events.length === 3, { what: "deleted" });
    api.patchStatus(VMS, "default", "v", { phase: "Running", node: "node-b" });
    api.update(VMS, "default", "v", (obj) => {
      ((obj.metadata as JsonObject).labels as JsonObject)["autoscaling.neon.tech/enabled"] =
        "false";
    });
    api.patchStatus(VMS, "default", "v", { node: "sim-node" });
    await settle(50);
    api.update(VMS, "default", "v", (obj) => {
      ((obj.metadata as JsonObject).labels as JsonObject)["autoscaling.neon.tech/enabled"] = "true";
    });
    await waitFor(() => events.length === 4, { what: "added again" });
    api.patchStatus(VMS, "default", "v", { podIP: "" });
    await waitFor(() => events.length === 5, { what: "deleted again" });
    assert.deepEqual(kinds(events), [
      "added v v-pod",
      "updated v v-pod",
      "deleted v v-pod",
      "added v v-pod",
      "deleted v v-pod",
    ]);
  }, (api) => api.create(VMS, vm("v", { phase: "Pending" })));
});

Deno.test("vm watcher: a VM invalid when first ours gets a Runner once it becomes valid", async () => {
  await withWatcher(async ({ api, events, log }) => {
    assert.equal(events.length, 0, "invalid at first sight: no event");
    const [error] = log.lines.filter((l) => l.level === "error");
    assert.equal(error.message, "invalid VirtualMachine; event dropped");
    assert.equal(error.fields.virtualmachine, "default/v");
    assert.match(
      error.fields.error as string,
      /max\.mem 1500Mi is not a multiple of the slot size 1Gi/,
    );

    api.patchStatus(VMS, "default", "v", { phase: "Scaling" });
    await settle(50);
    assert.equal(events.length, 0, "still invalid");

    // Replaces the reference, where this VM would stay without a Runner until it left and
    // re-entered the agent's responsibility.
    api.update(VMS, "default", "v", (obj) => {
      ((obj.metadata as JsonObject).annotations as JsonObject)[BOUNDS] = GOOD_BOUNDS;
    });
    await waitFor(() => events.length === 1, { what: "added" });
    assert.equal(events[0].kind, "added");
    assert.equal(events[0].vmInfo.cpu.max, 2000);
    api.patchStatus(VMS, "default", "v", { phase: "Running" });
    await waitFor(() => events.length === 2, { what: "updated" });
    assert.deepEqual(kinds(events), ["added v v-pod", "updated v v-pod"]);
  }, (api) => api.create(VMS, vm("v", { annotations: { [BOUNDS]: BAD_BOUNDS } })));
});

Deno.test("vm watcher: broken annotations keep the last VmInfo and still delete the Runner", async () => {
  await withWatcher(async ({ api, events, log }) => {
    assert.deepEqual(kinds(events), ["added v v-pod"]);
    api.update(VMS, "default", "v", (obj) => {
      ((obj.metadata as JsonObject).annotations as JsonObject)[BOUNDS] = GOOD_BOUNDS;
    });
    await waitFor(() => events.length === 1, { what: "updated with the bounds" });
    const [updated] = events.splice(0);
    assert.equal(updated.kind, "updated");
    assert.equal(updated.vmInfo.cpu.max, 2000);

    api.update(VMS, "default", "v", (obj) => {
      ((obj.metadata as JsonObject).annotations as JsonObject)[BOUNDS] = "{not json";
    });
    await waitFor(() => log.messages("error").length === 1, { what: "the invalid update logged" });
    assert.equal(events.length, 0, "no updated event for an invalid VM");

    api.delete(VMS, "default", "v");
    await waitFor(() => events.length === 1, { what: "deleted" });
    const [deleted] = events;
    // Replaces the reference's deleted event built by full extraction, dropped here.
    assert.equal(deleted.kind, "deleted");
    assert.equal(deleted.podName, "v-pod");
    assert.equal(deleted.namespace, "default");
    assert.equal(deleted.vmInfo.cpu.max, 2000, "the last good VmInfo");
  }, (api) => api.create(VMS, vm("v")));
});

Deno.test("vm watcher: deleting a VM that stops being ours while broken still deletes", async () => {
  await withWatcher(async ({ api, events }) => {
    kinds(events);
    api.update(VMS, "default", "v", (obj) => {
      ((obj.metadata as JsonObject).annotations as JsonObject)[BOUNDS] = BAD_BOUNDS;
    });
    api.patchStatus(VMS, "default", "v", { phase: "Succeeded" });
    await waitFor(() => events.length === 1, { what: "deleted" });
    assert.deepEqual(kinds(events), ["deleted v v-pod"]);
  }, (api) => api.create(VMS, vm("v")));
});

Deno.test("vm watcher: a pod rename while ours retires the old Runner and adds a new one", async () => {
  await withWatcher(async ({ api, events }) => {
    kinds(events);
    api.patchStatus(VMS, "default", "v", { podName: "v-pod2", podIP: "127.0.0.3" });
    await waitFor(() => events.length === 2, { what: "deleted and added" });
    assert.deepEqual(kinds(events), ["deleted v v-pod", "added v v-pod2"]);
  }, (api) => api.create(VMS, vm("v")));
});

Deno.test("vm watcher: a relist fans updated events out to every Runner", async () => {
  await withWatcher(async ({ watcher, events, timeline }) => {
    kinds(events);
    timeline.splice(0);
    watcher.requestRelist();
    await waitFor(() => events.length === 2, { what: "two updated events" });
    assert.deepEqual(kinds(events).sort(), ["updated a a-pod", "updated b b-pod"]);
    assert.deepEqual(timeline.filter((t) => t.startsWith("metrics")).sort(), [
      "metrics update a",
      "metrics update b",
      "metrics update c",
    ]);
  }, (api) => {
    api.create(VMS, vm("a"));
    api.create(VMS, vm("b"));
    api.create(VMS, vm("c", { node: "other-node" }));
  });
});

Deno.test("vm watcher: metrics are updated before the event they cause", async () => {
  await withWatcher(async ({ api, timeline }) => {
    timeline.splice(0);
    api.create(VMS, vm("n"));
    api.patchStatus(VMS, "default", "n", { phase: "Scaling" });
    api.delete(VMS, "default", "n");
    await waitFor(() => timeline.length === 8, { what: "all calls" });
    assert.deepEqual(timeline, [
      "metrics add n",
      "added n",
      "metrics update n",
      "updated n",
      // A DELETED event is an update to the final state, then the delete.
      "metrics update n",
      "updated n",
      "metrics delete n",
      "deleted n",
    ]);
  });
});
