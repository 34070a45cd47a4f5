/** The fake Kubernetes API through `@kubernetes/client-node`, as the agent will use it. */
import assert from "node:assert/strict";
import * as k8s from "@kubernetes/client-node";
import { type FakeKubeApi, type JsonObject, makeSchedulerPod } from "../../sim/k8s/mod.ts";
import { vm, withApi } from "./k8s_test_helpers.ts";

const GROUP = { group: "vm.neon.tech", version: "v1", plural: "virtualmachines" };

function kubeConfig(api: FakeKubeApi): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  kc.loadFromString(api.kubeconfig());
  return kc;
}

interface Seen {
  type: string;
  name: string;
  rv: string;
}

/** Collects watch events and lets a test wait for the n-th one. */
class Events {
  readonly seen: Seen[] = [];
  #waiters: (() => void)[] = [];

  push(type: string, obj: k8s.KubernetesObject): void {
    this.seen.push({
      type,
      name: obj.metadata?.name ?? "",
      rv: obj.metadata?.resourceVersion ?? "",
    });
    for (const wake of this.#waiters.splice(0)) wake();
  }

  async waitFor(count: number, timeoutMs = 3000): Promise<Seen[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.seen.length < count) {
      if (Date.now() > deadline) {
        throw new Error(`saw ${JSON.stringify(this.seen)}, wanted ${count} events`);
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        timer = setTimeout(resolve, 50);
      });
      clearTimeout(timer);
    }
    return this.seen.slice(0, count);
  }
}

Deno.test("k8s client-node: list custom objects and pods", async () => {
  await withApi(async (api) => {
    api.create("virtualmachines", vm("a"));
    api.create("virtualmachines", vm("b", { namespace: "tenant" }));
    api.create("pods", makeSchedulerPod({ name: "sched", podIP: "127.0.1.1" }));
    const kc = kubeConfig(api);

    const custom = kc.makeApiClient(k8s.CustomObjectsApi);
    const list = await custom.listClusterCustomObject(GROUP) as {
      items: JsonObject[];
      metadata: JsonObject;
    };
    assert.deepEqual(list.items, api.list("virtualmachines"));
    assert.equal(list.metadata.resourceVersion, String(api.resourceVersion));
    const namespaced = await custom.listNamespacedCustomObject({ ...GROUP, namespace: "tenant" });
    assert.equal((namespaced as { items: unknown[] }).items.length, 1);

    const core = kc.makeApiClient(k8s.CoreV1Api);
    const pods = await core.listNamespacedPod({
      namespace: "kube-system",
      labelSelector: "name=autoscale-scheduler",
    });
    assert.deepEqual(pods.items.map((p) => p.status?.podIP), ["127.0.1.1"]);
    assert.equal(pods.items[0].status?.conditions?.find((c) => c.type === "Ready")?.status, "True");
  });
});

Deno.test("k8s client-node: Watch receives ADDED, MODIFIED, DELETED and BOOKMARK", async () => {
  await withApi(async (api) => {
    api.create("virtualmachines", vm("a"));
    const from = String(api.resourceVersion);
    const events = new Events();
    let doneWith: unknown = "not done";
    const watch = new k8s.Watch(kubeConfig(api));
    const controller = await watch.watch(
      "/apis/vm.neon.tech/v1/virtualmachines",
      { allowWatchBookmarks: true, resourceVersion: from },
      (type, obj) => events.push(type, obj),
      (err) => doneWith = err,
    );
    try {
      api.create("virtualmachines", vm("b"));
      api.patchStatus("virtualmachines", "default", "a", { phase: "Scaling" });
      api.delete("virtualmachines", "default", "b");
      api.sendBookmarks();
      const seen = await events.waitFor(4);
      assert.deepEqual(seen.map((e) => `${e.type} ${e.name}`), [
        "ADDED b",
        "MODIFIED a",
        "DELETED b",
        "BOOKMARK ",
      ]);
      assert.deepEqual(
        seen.map((e) => Number(e.rv)),
        [1, 2, 3, 3].map((n) => Number(from) + n),
      );
      assert.equal(
        api.requests.at(-1)!.query,
        `watch=true&allowWatchBookmarks=true&resourceVersion=${from}`,
      );

      // A server-side end reaches the done callback without an error.
      api.endWatches();
      const deadline = Date.now() + 2000;
      while (doneWith === "not done" && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      assert.equal(doneWith, null);
    } finally {
      controller.abort();
    }
  });
});

Deno.test("k8s client-node: an expired resourceVersion arrives as an ERROR event", async () => {
  await withApi(async (api) => {
    api.create("virtualmachines", vm("a"));
    api.create("virtualmachines", vm("b"));
    api.compactEvents();
    const events: { type: string; obj: JsonObject }[] = [];
    let done!: () => void;
    const finished = new Promise<void>((resolve) => done = resolve);
    const controller = await new k8s.Watch(kubeConfig(api)).watch(
      "/apis/vm.neon.tech/v1/virtualmachines",
      { resourceVersion: "1" },
      (type, obj) => events.push({ type, obj }),
      () => done(),
    );
    try {
      await finished;
      assert.equal(events.length, 1);
      assert.equal(events[0].type, "ERROR");
      assert.equal(events[0].obj.code, 410);
    } finally {
      controller.abort();
    }
  });
});

Deno.test("k8s client-node: patchNamespacedCustomObject sends a JSON Patch the fake applies", async () => {
  await withApi(async (api) => {
    api.create("virtualmachines", vm("example", { cpus: { min: 250, max: 1250, use: 500 } }));
    const custom = kubeConfig(api).makeApiClient(k8s.CustomObjectsApi);
    const body = [
      { op: "replace", path: "/spec/guest/cpus/use", value: "750m" },
      { op: "replace", path: "/spec/guest/memorySlots/use", value: 3 },
      {
        op: "replace",
        path: "/spec/targetRevision",
        value: { revision: { value: 124, flags: 1 }, updatedAt: "2025-09-23T12:05:10Z" },
      },
    ];
    const updated = await custom.patchNamespacedCustomObject({
      ...GROUP,
      namespace: "default",
      name: "example",
      body,
    }) as JsonObject;
    assert.deepEqual((updated.spec as JsonObject).targetRevision, body[2].value);

    const record = api.patches.at(-1)!;
    assert.equal(record.contentType, "application/json-patch+json");
    assert.deepEqual(JSON.parse(record.body), body);
    assert.equal(record.status, 200);

    const denied = custom.patchNamespacedCustomObject({
      ...GROUP,
      namespace: "default",
      name: "example",
      body: [{ op: "replace", path: "/spec/guest/cpus/use", value: "2" }],
    });
    await assert.rejects(denied, (e: unknown) => (e as { code?: number }).code === 403);
    const missing = custom.patchNamespacedCustomObject({
      ...GROUP,
      namespace: "default",
      name: "missing",
      body,
    });
    await assert.rejects(missing, (e: unknown) => (e as { code?: number }).code === 404);
  });
});
