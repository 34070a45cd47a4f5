import assert from "node:assert/strict";
import {
  type FakeKubeApi,
  type JsonObject,
  makeSchedulerPod,
  setPodReady,
} from "../../sim/k8s/mod.ts";
import {
  decodeSchedulerPod,
  hostPort,
  SCHEDULER_NAMESPACE,
  type SchedulerInfo,
  schedulerLabelSelector,
  SchedulerTracker,
} from "../../agent/k8s/scheduler_tracker.ts";
import { RecordingLog, settle, withFakeApi } from "./k8s_test_helpers.ts";
import { waitFor } from "../support/wait.ts";

const T0 = Date.UTC(2025, 8, 23, 12, 0, 0);
const NS = "kube-system";

interface Setup {
  api: FakeKubeApi;
  tracker: SchedulerTracker;
  changes: (SchedulerInfo | null)[];
  log: RecordingLog;
}

async function withTracker(
  fn: (setup: Setup) => Promise<void> | void,
  prepare?: (api: FakeKubeApi) => void,
): Promise<void> {
  await withFakeApi(async (api, client) => {
    prepare?.(api);
    const changes: (SchedulerInfo | null)[] = [];
    const log = new RecordingLog();
    const tracker = new SchedulerTracker({
      source: client.pods(SCHEDULER_NAMESPACE, schedulerLabelSelector("autoscale-scheduler")),
      retryDelayMs: 10,
      onChange: (current) => changes.push(current),
      log,
    });
    const controller = new AbortController();
    try {
      await tracker.start(controller.signal);
      await waitFor(() => api.openWatches("pods") === 1, { what: "the pod watch" });
      await fn({ api, tracker, changes, log });
    } finally {
      controller.abort();
      await tracker.stopped;
    }
  });
}

function pod(name: string, podIP: string, createdSecondsAfterT0: number, ready = true) {
  return makeSchedulerPod({ name, podIP, ready, createdAt: T0 + createdSecondsAfterT0 * 1000 });
}

function setReady(api: FakeKubeApi, name: string, ready: boolean): void {
  api.update("pods", NS, name, (obj) => setPodReady(obj, ready));
}

function currentName(tracker: SchedulerTracker): string | null {
  return tracker.current()?.name ?? null;
}

Deno.test("scheduler tracker: the newest ready pod is current, chosen before start resolves", async () => {
  await withTracker(({ api, tracker, changes }) => {
    const current = tracker.current();
    assert.ok(current);
    assert.deepEqual(current, {
      name: "sched-new",
      uid: (api.get("pods", NS, "sched-new")!.metadata as JsonObject).uid,
      ip: "127.0.0.21",
      creationTimestamp: T0 + 60_000,
    });
    assert.deepEqual(changes.map((c) => c?.name), ["sched-new"], "listed by name: new first");
    const list = api.requests.find((r) => r.path === `/api/v1/namespaces/${NS}/pods`)!;
    assert.equal(new URLSearchParams(list.query).get("labelSelector"), "name=autoscale-scheduler");
    const watch = new URLSearchParams(
      api.requests.find((r) => r.path === list.path && r.query.includes("watch=true"))!.query,
    );
    assert.equal(watch.get("labelSelector"), "name=autoscale-scheduler");
    assert.equal(watch.get("allowWatchBookmarks"), "true");
  }, (api) => {
    api.create("pods", pod("sched-old", "127.0.0.20", 0));
    api.create("pods", pod("sched-new", "127.0.0.21", 60));
    api.create("pods", pod("sched-unready", "127.0.0.22", 120, false));
    api.create("pods", {
      ...pod("not-a-scheduler", "127.0.0.23", 180),
      metadata: {
        name: "not-a-scheduler",
        namespace: NS,
        labels: { name: "something-else" },
        creationTimestamp: new Date(T0 + 180_000).toISOString(),
      },
    });
  });
});

Deno.test("scheduler tracker: readiness flips, deletion and a second, newer scheduler", async () => {
  await withTracker(async ({ api, tracker, changes, log }) => {
    assert.equal(currentName(tracker), "a");
    changes.splice(0);

    api.create("pods", pod("b", "127.0.0.31", 10));
    await waitFor(() => currentName(tracker) === "b", { what: "the newer scheduler" });

    setReady(api, "b", false);
    await waitFor(() => currentName(tracker) === "a", { what: "fallback to the older one" });
    setReady(api, "b", true);
    await waitFor(() => currentName(tracker) === "b", { what: "back to the newer one" });

    api.patchStatus("pods", NS, "b", { podIP: "" });
    await waitFor(() => currentName(tracker) === "a", { what: "no IP: not usable" });
    api.patchStatus("pods", NS, "b", { podIP: "127.0.0.31" });
    await waitFor(() => currentName(tracker) === "b", { what: "usable again" });

    api.delete("pods", NS, "b");
    await waitFor(() => currentName(tracker) === "a", { what: "after deleting b" });
    setReady(api, "a", false);
    await waitFor(() => tracker.current() === null, { what: "none ready" });
    assert.deepEqual(changes.map((c) => c?.name ?? null), ["b", "a", "b", "a", "b", "a", null]);
    assert.ok(log.messages("warn").includes("no ready scheduler known"));
    assert.ok(log.messages("info").includes("current scheduler changed"));

    setReady(api, "a", true);
    await waitFor(() => currentName(tracker) === "a", { what: "ready again" });
    assert.ok(log.messages("info").includes("scheduler appeared"));
  }, (api) => api.create("pods", pod("a", "127.0.0.30", 0)));
});

Deno.test("scheduler tracker: an older pod becoming ready does not displace the newest", async () => {
  await withTracker(async ({ api, tracker, changes }) => {
    assert.equal(currentName(tracker), "new");
    changes.splice(0);
    setReady(api, "old", true);
    await settle(50);
    assert.equal(currentName(tracker), "new");
    assert.equal(changes.length, 0, "no change reported");
  }, (api) => {
    api.create("pods", pod("old", "127.0.0.40", 0, false));
    api.create("pods", pod("new", "127.0.0.41", 5));
  });
});

Deno.test("scheduler tracker: ties on creationTimestamp are broken by name, not map order", async () => {
  for (const order of [["x", "y"], ["y", "x"]]) {
    await withTracker(({ tracker }) => {
      assert.equal(currentName(tracker), "y");
    }, (api) => {
      for (const name of order) api.create("pods", pod(name, "127.0.0.50", 0));
    });
  }
});

Deno.test("scheduler tracker: an IP change on a pod that stays ready is not picked up", async () => {
  await withTracker(async ({ api, tracker }) => {
    api.patchStatus("pods", NS, "a", { podIP: "127.0.0.99" });
    await settle(50);
    assert.equal(tracker.current()?.ip, "127.0.0.60");
  }, (api) => api.create("pods", pod("a", "127.0.0.60", 0)));
});

Deno.test("scheduler tracker: an undecodable pod event is skipped", async () => {
  await withTracker(async ({ api, tracker, log }) => {
    api.injectUndecodable("pods", NS, "a");
    await waitFor(() => log.messages("error").includes("skipping object"), { what: "the skip" });
    assert.equal(currentName(tracker), "a");
    setReady(api, "a", false);
    await waitFor(() => tracker.current() === null, { what: "later events still apply" });
  }, (api) => api.create("pods", pod("a", "127.0.0.70", 0)));
});

Deno.test("scheduler tracker: pod decoding reads both wire strings and client-node Dates", () => {
  const fromWatch = decodeSchedulerPod({
    metadata: { name: "p", uid: "u", creationTimestamp: "2025-09-23T12:00:00Z" },
    status: { podIP: "10.0.0.1", conditions: [{ type: "Ready", status: "True" }] },
  });
  const fromList = decodeSchedulerPod({
    metadata: { name: "p", uid: "u", creationTimestamp: new Date(T0) },
    status: { podIP: "10.0.0.1", conditions: [{ type: "Ready", status: "True" }] },
  });
  assert.deepEqual(fromWatch, fromList);
  assert.deepEqual(fromWatch, {
    ok: true,
    value: { name: "p", uid: "u", podIP: "10.0.0.1", ready: true, creationTimestamp: T0 },
  });
  const bare = decodeSchedulerPod({ metadata: { name: "p", uid: "u" } });
  assert.deepEqual(bare, {
    ok: true,
    value: { name: "p", uid: "u", podIP: "", ready: false, creationTimestamp: 0 },
  });
  const broken = decodeSchedulerPod({
    metadata: { name: "p", uid: "u" },
    status: { conditions: "not-a-list" },
  });
  assert.equal(broken.ok, false);
});

Deno.test("hostPort brackets IPv6 literals", () => {
  assert.equal(hostPort("10.0.0.1", 10299), "10.0.0.1:10299");
  assert.equal(hostPort("fd00::1", 10299), "[fd00::1]:10299");
  assert.equal(hostPort("[fd00::1]", 10299), "[fd00::1]:10299");
  assert.equal(hostPort("::1", 10301), "[::1]:10301");
});
