/** The NeonVM controller simulator: status updates after a spec change, migration, restart. */
import assert from "node:assert/strict";
import { type JsonObject, type TimerId, type Timers } from "../../sim/k8s/mod.ts";
import { DEFAULT_VMS, openWatch, patch, rvOf, vm, VMS, withApi } from "./k8s_test_helpers.ts";

function status(obj: JsonObject): JsonObject {
  return obj.status as JsonObject;
}

function generation(obj: JsonObject): number {
  return (obj.metadata as JsonObject).generation as number;
}

const agentPatch = (cpu: string, slots: number, revision: number) => [
  { op: "replace", path: "/spec/guest/cpus/use", value: cpu },
  { op: "replace", path: "/spec/guest/memorySlots/use", value: slots },
  {
    op: "replace",
    path: "/spec/targetRevision",
    value: { revision: { value: revision, flags: 1 }, updatedAt: "2025-09-23T12:05:10Z" },
  },
];

Deno.test("k8s controller: Scaling, new size and Running, then currentRevision, after ~100 ms", async () => {
  await withApi(async (api) => {
    api.create(
      "virtualmachines",
      vm("example", {
        cpus: { min: 250, max: 1250, use: 500 },
        memorySlots: { min: 1, max: 5, use: 2 },
        revision: { value: 123, flags: 1 },
      }),
    );
    const { reader } = await openWatch(api, VMS, { resourceVersion: String(api.resourceVersion) });
    try {
      const started = performance.now();
      const r = await patch(
        api,
        `${DEFAULT_VMS}/example`,
        "application/json-patch+json",
        agentPatch("750m", 3, 124),
      );
      assert.equal(r.status, 200);
      const specEvent = await reader.event();
      assert.equal(generation(specEvent.object), 2);
      assert.equal(status(specEvent.object).cpus, "500m");

      const scaling = await reader.event();
      assert.equal(status(scaling.object).phase, "Scaling");
      const resized = await reader.event();
      const elapsed = performance.now() - started;
      assert.deepEqual(
        [
          status(resized.object).phase,
          status(resized.object).cpus,
          status(resized.object).memorySize,
        ],
        ["Running", "750m", "3Gi"],
      );
      assert.ok(elapsed >= 95, `resized after ${elapsed} ms`);
      const acknowledged = await reader.event();
      const current = status(acknowledged.object).currentRevision as JsonObject;
      assert.deepEqual(current.revision, { value: 124, flags: 1 });
      assert.match(current.updatedAt as string, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      for (const e of [scaling, resized, acknowledged]) {
        assert.equal(e.type, "MODIFIED");
        assert.equal(generation(e.object), 2, "status writes keep the generation");
      }
      assert.deepEqual(
        [scaling, resized, acknowledged].map((e) => Number(rvOf(e.object))),
        [1, 2, 3].map((n) => Number(rvOf(specEvent.object)) + n),
      );

      // A whole number of CPUs is written as a JSON number; a revision-only patch is acknowledged.
      await patch(
        api,
        `${DEFAULT_VMS}/example`,
        "application/json-patch+json",
        agentPatch("1", 3, 125),
      );
      await reader.event();
      await reader.event();
      assert.equal(status((await reader.event()).object).cpus, 1);
      await reader.event();
      await patch(
        api,
        `${DEFAULT_VMS}/example`,
        "application/json-patch+json",
        agentPatch("1", 3, 126),
      );
      await reader.event();
      const revisionOnly = await reader.event();
      assert.deepEqual((status(revisionOnly.object).currentRevision as JsonObject).revision, {
        value: 126,
        flags: 1,
      });
      assert.equal(status(revisionOnly.object).phase, "Running");
      assert.ok(await reader.quiet());
      assert.equal(api.controller.pendingSteps, 0);
    } finally {
      await reader.cancel();
    }
  }, { controller: { enabled: true } });
});

/** Timers run by hand, to step the controller deterministically. */
class ManualTimers implements Timers {
  #next = 1;
  readonly pending = new Map<number, { callback: () => void; ms: number }>();

  setTimeout(callback: () => void, ms: number): TimerId {
    const id = this.#next++;
    this.pending.set(id, { callback, ms });
    return id as unknown as TimerId;
  }

  clearTimeout(id: TimerId): void {
    this.pending.delete(id as unknown as number);
  }

  /** Runs timers in order, letting the code they resume run too, until none is left. */
  async runAll(): Promise<number[]> {
    const delays: number[] = [];
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, 0));
      const first = this.pending.entries().next();
      if (first.done) return delays;
      const [id, timer] = first.value;
      this.pending.delete(id);
      delays.push(timer.ms);
      timer.callback();
    }
  }
}

Deno.test("k8s controller: injected timers, refusals, disable, migration and restart", async () => {
  const timers = new ManualTimers();
  await withApi(async (api) => {
    const controller = api.controller;
    api.create("virtualmachines", vm("v", { memorySlots: { min: 1, max: 4, use: 1 } }));
    assert.equal(timers.pending.size, 0, "disabled: nothing scheduled");
    api.update("virtualmachines", "default", "v", (o) => {
      ((o.spec as JsonObject).guest as { memorySlots: JsonObject }).memorySlots.use = 2;
    });
    assert.equal(timers.pending.size, 0);

    controller.enabled = true;
    assert.deepEqual(await timers.runAll(), [10, 20]);
    assert.equal(status(api.get("virtualmachines", "default", "v")!).memorySize, "2Gi");

    // Outside the bounds (only the harness can store that): refused, status untouched.
    api.update("virtualmachines", "default", "v", (o) => {
      ((o.spec as JsonObject).guest as { memorySlots: JsonObject }).memorySlots.use = 9;
    });
    assert.equal(timers.pending.size, 0);
    assert.equal(controller.refusals.length, 1);
    assert.match(controller.refusals[0].reason, /memorySlots\.use 9 outside \[1, 4\]/);

    api.update("virtualmachines", "default", "v", (o) => {
      ((o.spec as JsonObject).guest as { memorySlots: JsonObject }).memorySlots.use = 3;
    });
    assert.equal(timers.pending.size, 1);
    controller.enabled = false;
    assert.equal(timers.pending.size, 0, "switching off cancels scheduled steps");
    controller.enabled = true;
    await timers.runAll();
    assert.equal(status(api.get("virtualmachines", "default", "v")!).memorySize, "3Gi");

    const phases: string[] = [];
    const stop = api.onEvent((e) => phases.push(String(status(e.object.value).phase)));
    const migration = controller.migrate("default", "v", { node: "node-b", podIP: "127.0.0.7" });
    await timers.runAll();
    assert.equal(await migration, true);
    const migrated = status(api.get("virtualmachines", "default", "v")!);
    assert.deepEqual([migrated.node, migrated.podIP, migrated.phase], [
      "node-b",
      "127.0.0.7",
      "Running",
    ]);

    const restart = controller.restart("default", "v", { podIP: "127.0.0.8", podName: "v-new" });
    await timers.runAll();
    assert.equal(await restart, true);
    stop();
    assert.deepEqual(phases, [
      "PreMigrating",
      "Migrating",
      "Migrating",
      "Running",
      "Failed",
      "Pending",
      "Running",
    ]);
    const restarted = status(api.get("virtualmachines", "default", "v")!);
    assert.deepEqual(
      [restarted.podName, restarted.podIP, restarted.node, restarted.restartCount],
      ["v-new", "127.0.0.8", "node-b", 1],
    );

    // Closing mid-sequence ends the helper early and leaves no timer behind.
    const interrupted = controller.restart("default", "v", { podIP: "127.0.0.9" });
    controller.close();
    assert.equal(await interrupted, false);
    assert.equal(timers.pending.size, 0);
  }, { controller: { timers, scalingDelayMs: 10, resizeDelayMs: 20, stepDelayMs: 5 } });
});

Deno.test("k8s controller: closing the server mid-scaling clears the controller's timers", async () => {
  await withApi(async (api) => {
    api.create("virtualmachines", vm("v", { memorySlots: { min: 1, max: 4, use: 1 } }));
    await patch(api, `${DEFAULT_VMS}/v`, "application/json-patch+json", agentPatch("250m", 2, 1));
    assert.equal(api.controller.pendingSteps, 1);
  }, { controller: { enabled: true, scalingDelayMs: 10_000 } });
});
