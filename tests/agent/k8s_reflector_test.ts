import assert from "node:assert/strict";
import { type FakeKubeApi, makeVirtualMachine } from "../../sim/k8s/mod.ts";
import type { KubeClient } from "../../agent/k8s/client.ts";
import { Reflector, type ReflectorObserver } from "../../agent/k8s/reflector.ts";
import { decodeVirtualMachine, type VirtualMachine } from "../../agent/k8s/vm.ts";
import { RecordingLog, settle, withFakeApi } from "./k8s_test_helpers.ts";
import { waitFor } from "../support/wait.ts";

const VMS = "virtualmachines";

function vm(name: string, podIP = "127.0.0.2") {
  return makeVirtualMachine({ name, podIP });
}

/** Every handler call as a short string: "add a", "update a 3>5", "delete b stale". */
class Recorder {
  readonly calls: string[] = [];
  readonly counts = new Map<string, number>();
  readonly flags = new Map<string, boolean>();
  failing = false;
  alive: boolean | undefined;
  readonly undecodable: string[] = [];
  readonly handlerErrors: unknown[] = [];

  readonly observer: ReflectorObserver = {
    clientCall: (method) => this.#count(`call ${method}`),
    event: (type) => this.#count(`event ${type}`),
    error: (source) => this.#count(`error ${source}`),
    relistRequested: () => this.#count("relist requested"),
    alive: (alive) => (this.alive = alive),
    failing: (failing) => {
      this.failing = failing;
      if (failing) this.#count("failing");
    },
    undecodable: (error) => this.undecodable.push(error),
    handlerError: (error) => this.handlerErrors.push(error),
  };

  #count(key: string): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }

  count(key: string): number {
    return this.counts.get(key) ?? 0;
  }

  handlers = {
    add: (obj: VirtualMachine) => this.calls.push(`add ${obj.metadata.name}`),
    update: (oldObj: VirtualMachine, newObj: VirtualMachine) =>
      this.calls.push(
        `update ${newObj.metadata.name} ${oldObj.metadata.resourceVersion}>${newObj.metadata.resourceVersion}`,
      ),
    delete: (obj: VirtualMachine, stale: boolean) =>
      this.calls.push(`delete ${obj.metadata.name}${stale ? " stale" : ""}`),
  };

  take(): string[] {
    return this.calls.splice(0);
  }
}

function rv(api: FakeKubeApi, name: string): string {
  return (api.get(VMS, "default", name)!.metadata as { resourceVersion: string }).resourceVersion;
}

interface Setup {
  api: FakeKubeApi;
  client: KubeClient;
  reflector: Reflector<VirtualMachine>;
  rec: Recorder;
  log: RecordingLog;
}

/** A started reflector over VMs, stopped (and awaited) after `fn`. */
async function withReflector(
  fn: (setup: Setup) => Promise<void> | void,
  options: {
    prepare?: (api: FakeKubeApi) => void;
    expiredWatchAsHttp410?: boolean;
    watchIdleTimeoutMs?: number;
  } = {},
): Promise<void> {
  await withFakeApi(
    async (api, client) => {
      options.prepare?.(api);
      const rec = new Recorder();
      const log = new RecordingLog();
      const reflector = new Reflector({
        name: "VirtualMachines",
        source: client.virtualMachines(),
        decode: decodeVirtualMachine,
        handlers: rec.handlers,
        retryDelayMs: [20, 40],
        observer: rec.observer,
        log,
      });
      const controller = new AbortController();
      try {
        await reflector.start(controller.signal);
        await waitFor(() => api.openWatches(VMS) === 1, { what: "the first watch" });
        await fn({ api, client, reflector, rec, log });
      } finally {
        controller.abort();
        await reflector.stopped;
      }
      assert.equal(rec.alive, false, "alive is cleared when the loop ends");
    },
    { expiredWatchAsHttp410: options.expiredWatchAsHttp410 },
    {
      watchIdleTimeoutMs: options.watchIdleTimeoutMs,
    },
  );
}

Deno.test("reflector: initial list, then watch from its resourceVersion with bookmarks", async () => {
  await withReflector(({ api, reflector, rec }) => {
    assert.deepEqual(rec.take(), ["add a", "add b"]);
    assert.equal(reflector.resourceVersion, String(api.resourceVersion));
    assert.deepEqual(reflector.items().map((v) => v.metadata.name).sort(), ["a", "b"]);
    assert.equal(rec.alive, true);
    assert.equal(rec.count("call List"), 1);
    assert.equal(rec.count("call Watch"), 1);
    const list = api.requests.find((r) => r.method === "GET" && !r.query.includes("watch"))!;
    assert.equal(list.path, "/apis/vm.neon.tech/v1/virtualmachines");
    assert.equal(list.query, "", "no selectors, no resourceVersion, no limit");
    const watch = api.requests.find((r) => r.query.includes("watch=true"))!;
    const query = new URLSearchParams(watch.query);
    assert.equal(query.get("allowWatchBookmarks"), "true");
    assert.equal(query.get("resourceVersion"), reflector.resourceVersion);
  }, {
    prepare: (api) => {
      api.create(VMS, vm("a"));
      api.create(VMS, vm("b"));
    },
  });
});

Deno.test("reflector: add, modify and delete in order; DELETED runs update then delete", async () => {
  await withReflector(async ({ api, rec }) => {
    rec.take();
    const before = rv(api, "a");
    api.create(VMS, vm("c"));
    api.patchStatus(VMS, "default", "a", { phase: "Scaling" });
    const after = rv(api, "a");
    api.delete(VMS, "default", "b");
    await waitFor(() => rec.calls.length === 4, { what: "four handler calls" });
    const deletedRv = String(api.resourceVersion);
    assert.deepEqual(rec.take(), [
      "add c",
      `update a ${before}>${after}`,
      `update b 2>${deletedRv}`,
      "delete b",
    ]);
    assert.equal(rec.count("event ADDED"), 1);
    assert.equal(rec.count("event MODIFIED"), 1);
    assert.equal(rec.count("event DELETED"), 1);
    assert.equal(rec.count("call List"), 1, "no relist");
  }, {
    prepare: (api) => {
      api.create(VMS, vm("a"));
      api.create(VMS, vm("b"));
    },
  });
});

Deno.test("reflector: a clean end of stream re-watches from the last RV without relisting", async () => {
  await withReflector(async ({ api, reflector, rec }) => {
    rec.take();
    api.patchStatus(VMS, "default", "a", { phase: "Scaling" });
    await waitFor(() => rec.calls.length === 1, { what: "the update" });
    const lastRv = reflector.resourceVersion;
    assert.equal(api.endWatches(VMS), 1);
    await waitFor(() => rec.count("call Watch") === 2 && api.openWatches(VMS) === 1, {
      what: "re-watch",
    });
    const watches = api.requests.filter((r) => r.query.includes("watch=true"));
    assert.equal(new URLSearchParams(watches[1].query).get("resourceVersion"), lastRv);
    api.create(VMS, vm("b"));
    await waitFor(() => rec.calls.length === 2, { what: "the add" });
    assert.deepEqual(rec.take().slice(1), ["add b"]);
    assert.equal(rec.count("call List"), 1);
    assert.equal(rec.failing, false);
  }, { prepare: (api) => api.create(VMS, vm("a")) });
});

Deno.test("reflector: a bookmark advances the resourceVersion", async () => {
  await withReflector(async ({ api, reflector }) => {
    api.create("pods", {
      metadata: { name: "unrelated", namespace: "kube-system" },
      spec: {},
      status: {},
    });
    const current = String(api.resourceVersion);
    assert.notEqual(reflector.resourceVersion, current);
    assert.equal(api.sendBookmarks(VMS), 1);
    await waitFor(() => reflector.resourceVersion === current, { what: "the bookmark's RV" });
  }, { prepare: (api) => api.create(VMS, vm("a")) });
});

/** Makes changes the reflector cannot see live, then lets it come back to a compacted log. */
async function missChangesWhileDown(api: FakeKubeApi, rec: Recorder): Promise<void> {
  api.failRequests("watch", { resource: VMS });
  api.endWatches(VMS);
  await waitFor(() => rec.failing, { what: "the failing re-watch" });
  api.delete(VMS, "default", "b");
  api.patchStatus(VMS, "default", "a", { phase: "Scaling" });
  api.create(VMS, vm("c"));
  api.compactEvents();
  api.clearFaults();
}

Deno.test("reflector: an ERROR 410 event relists: stale deletes, updates for all, adds", async () => {
  await withReflector(async ({ api, rec, log }) => {
    rec.take();
    const aBefore = rv(api, "a");
    const dBefore = rv(api, "d");
    await missChangesWhileDown(api, rec);
    await waitFor(() => rec.calls.length === 4, { what: "the relist's handler calls" });
    assert.deepEqual(rec.take(), [
      "delete b stale",
      `update a ${aBefore}>${rv(api, "a")}`,
      "add c",
      `update d ${dBefore}>${dBefore}`,
    ]);
    assert.equal(rec.count("call List"), 2);
    assert.equal(rec.count("event ERROR"), 1);
    assert.equal(rec.count("error Watch.Event"), 1);
    assert.ok(log.messages("warn").includes("watch resourceVersion expired; relisting"));
    await waitFor(() => api.openWatches(VMS) === 1, { what: "watching again" });
    await waitFor(() => !rec.failing, { what: "no longer failing" });
    api.patchStatus(VMS, "default", "c", { phase: "Scaling" });
    await waitFor(() => rec.calls.length === 1, { what: "live events again" });
  }, {
    prepare: (api) => {
      api.create(VMS, vm("a"));
      api.create(VMS, vm("b"));
      api.create(VMS, vm("d"));
    },
  });
});

Deno.test("reflector: an HTTP 410 on the watch also relists (no endless retry)", async () => {
  await withReflector(async ({ api, rec, log }) => {
    rec.take();
    await missChangesWhileDown(api, rec);
    await waitFor(() => rec.calls.length === 4, { what: "the relist's handler calls" });
    assert.deepEqual(rec.take().map((c) => c.split(" ").slice(0, 2).join(" ")), [
      "delete b",
      "update a",
      "add c",
      "update d",
    ]);
    assert.equal(rec.count("call List"), 2);
    assert.equal(rec.count("event ERROR"), 0);
    assert.ok(log.messages("warn").includes("watch answered 410 Gone; relisting"));
    await waitFor(() => api.openWatches(VMS) === 1 && !rec.failing, { what: "watching again" });
  }, {
    expiredWatchAsHttp410: true,
    prepare: (api) => {
      api.create(VMS, vm("a"));
      api.create(VMS, vm("b"));
      api.create(VMS, vm("d"));
    },
  });
});

Deno.test("reflector: a non-410 ERROR event relists too", async () => {
  await withReflector(async ({ api, rec, log }) => {
    rec.take();
    api.injectWatchError(VMS, { code: 500, message: "etcd hiccup" });
    await waitFor(() => rec.count("call List") === 2, { what: "the relist" });
    await waitFor(() => rec.calls.length === 1, { what: "the relist's update" });
    assert.match(rec.take()[0], /^update a /);
    assert.ok(log.messages("error").includes("watch ERROR event; relisting"));
  }, { prepare: (api) => api.create(VMS, vm("a")) });
});

Deno.test("reflector: a stream cut mid-event is re-watched from the same RV, no relist", async () => {
  await withReflector(async ({ api, reflector, rec }) => {
    rec.take();
    const lastRv = reflector.resourceVersion;
    assert.equal(api.cutWatches(VMS), 1);
    // The half line never completes; the reset ends the stream and the watch resumes.
    await waitFor(() => rec.count("call Watch") === 2, { what: "the re-watch" });
    api.patchStatus(VMS, "default", "a", { phase: "Scaling" });
    await waitFor(() => rec.calls.length === 1, { what: "the update after re-watching" });
    assert.match(rec.take()[0], /^update a /);
    assert.equal(rec.count("call List"), 1);
    assert.equal(rec.undecodable.length, 0, "the half line was not taken for an event");
    const watches = api.requests.filter((r) => r.query.includes("watch=true"));
    assert.equal(new URLSearchParams(watches[1].query).get("resourceVersion"), lastRv);
  }, { prepare: (api) => api.create(VMS, vm("a")), watchIdleTimeoutMs: 300 });
});

Deno.test("reflector: 5xx on watch and list back off, then recover", async () => {
  await withReflector(async ({ api, reflector, rec }) => {
    rec.take();
    api.failRequests("watch", { status: 503, count: 3 });
    const started = performance.now();
    api.endWatches(VMS);
    await waitFor(
      () => rec.count("call Watch") === 5 && api.openWatches(VMS) === 1 && !rec.failing,
      { what: "recovery" },
    );
    assert.ok(performance.now() - started >= 55, "three retries at >= 20 ms each");
    assert.equal(rec.count("error Watch"), 3);
    assert.equal(rec.count("failing"), 1);

    api.failRequests("list", { status: 500, count: 2 });
    reflector.requestRelist();
    await waitFor(() => rec.count("call List") === 4 && !rec.failing, { what: "relist recovery" });
    assert.equal(rec.count("error List"), 2);
    assert.equal(rec.count("relist requested"), 1);
    await waitFor(() => rec.calls.length === 1, { what: "the relist's update" });
    api.create(VMS, vm("b"));
    await waitFor(() => rec.calls.includes("add b"), { what: "live again" });
  }, { prepare: (api) => api.create(VMS, vm("a")) });
});

Deno.test("reflector: duplicate ADDED and unknown MODIFIED are inconsistencies → relist", async () => {
  await withReflector(async ({ api, rec, log }) => {
    rec.take();
    api.injectDuplicateAdded(VMS, "default", "a");
    await waitFor(() => rec.count("call List") === 2 && rec.calls.length === 1, {
      what: "first relist",
    });
    assert.match(rec.take()[0], /^update a /);
    assert.ok(log.messages("warn").includes("watch event inconsistent with the store; relisting"));

    await waitFor(() => api.openWatches(VMS) === 1, { what: "watching again" });
    const ghost = makeVirtualMachine({ name: "ghost", podIP: "127.0.0.9" });
    (ghost.metadata as Record<string, unknown>).uid = "no-such-uid";
    (ghost.metadata as Record<string, unknown>).resourceVersion = String(api.resourceVersion);
    api.injectWatchEvent(VMS, "MODIFIED", ghost);
    await waitFor(() => rec.count("call List") === 3, { what: "second relist" });
    await waitFor(() => rec.calls.length === 1, { what: "its update" });
    assert.ok(!rec.take().some((c) => c.includes("ghost")));
  }, { prepare: (api) => api.create(VMS, vm("a")) });
});

Deno.test("reflector: an undecodable object is skipped and reported, the stream goes on", async () => {
  await withReflector(async ({ api, rec, log }) => {
    rec.take();
    const before = rv(api, "a");
    api.injectUndecodable(VMS, "default", "a");
    api.injectRawWatchLine(VMS, '{"type":"ADDED","object":{"metadata":{"name":"no-uid"}}}');
    await waitFor(() => rec.undecodable.length === 2, { what: "both skipped" });
    assert.match(rec.undecodable[0], /spec\.guest\.cpus\.use: invalid quantity "abc"/);
    assert.match(rec.undecodable[1], /no metadata\.uid/);
    assert.ok(log.messages("error").includes("skipping object"));
    api.patchStatus(VMS, "default", "a", { phase: "Scaling" });
    await waitFor(() => rec.calls.length === 1, { what: "the next good event" });
    assert.deepEqual(rec.take(), [`update a ${before}>${rv(api, "a")}`]);
    assert.equal(rec.count("call List"), 1, "no relist");
  }, { prepare: (api) => api.create(VMS, vm("a")) });
});

Deno.test("reflector: undecodable objects in a list are skipped; they join once they decode", async () => {
  await withReflector(async ({ api, rec }) => {
    assert.deepEqual(rec.take(), ["add good"]);
    assert.equal(rec.undecodable.length, 1);
    api.update(VMS, "default", "bad", (obj) => {
      (obj.spec as Record<string, Record<string, Record<string, unknown>>>).guest.cpus.use = 250;
    });
    await waitFor(() => rec.calls.length === 1, { what: "the add" });
    assert.deepEqual(rec.take(), ["add bad"], "a MODIFIED for a skipped object is an add");
    assert.equal(rec.count("call List"), 1);
  }, {
    prepare: (api) => {
      api.create(VMS, vm("good"));
      api.create(VMS, vm("bad"));
      api.update(VMS, "default", "bad", (obj) => {
        (obj.spec as Record<string, Record<string, Record<string, unknown>>>).guest.cpus.use =
          "abc";
      });
    },
  });
});

Deno.test("reflector: throwing handlers and observers are reported; events keep coming", async () => {
  await withFakeApi(async (api, client) => {
    api.create(VMS, vm("a"));
    const seen: string[] = [];
    const errors: unknown[] = [];
    const reflector = new Reflector({
      name: "VirtualMachines",
      source: client.virtualMachines(),
      decode: decodeVirtualMachine,
      handlers: {
        add: (obj) => {
          seen.push(obj.metadata.name);
          if (obj.metadata.name === "boom") throw new Error("handler bug");
        },
        update: () => {},
        delete: () => {},
      },
      retryDelayMs: 10,
      observer: {
        handlerError: (e) => errors.push(e),
        event: () => {
          throw new Error("metrics bug");
        },
      },
    });
    const controller = new AbortController();
    await reflector.start(controller.signal);
    api.create(VMS, vm("boom"));
    api.create(VMS, vm("after"));
    await waitFor(() => seen.length === 3, { what: "all adds" });
    assert.deepEqual(seen, ["a", "boom", "after"]);
    assert.equal(errors.length, 1);
    controller.abort();
    await reflector.stopped;
  });
});

Deno.test("reflector: start rejects when the initial list fails, and may be retried", async () => {
  await withFakeApi(async (api, client) => {
    api.create(VMS, vm("a"));
    api.failRequests("list", { status: 500, count: 1, message: "not yet" });
    const rec = new Recorder();
    const reflector = new Reflector({
      name: "VirtualMachines",
      source: client.virtualMachines(),
      decode: decodeVirtualMachine,
      handlers: rec.handlers,
      observer: rec.observer,
    });
    const controller = new AbortController();
    await assert.rejects(reflector.start(controller.signal), /listing VirtualMachines: not yet/);
    assert.equal(rec.alive, undefined, "no loop was started");
    await reflector.start(controller.signal);
    assert.deepEqual(rec.take(), ["add a"]);
    await assert.rejects(reflector.start(controller.signal), /already started/);
    controller.abort();
    await reflector.stopped;
    await settle(20);
    assert.equal(api.openWatches(), 0);
  });
});
