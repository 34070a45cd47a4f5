/** Wire-level behaviour of the fake Kubernetes API server, over fetch. */
import assert from "node:assert/strict";
import { type JsonObject, makeSchedulerPod } from "../../sim/k8s/mod.ts";
import {
  DEFAULT_VMS,
  getJson,
  openWatch,
  patch,
  rvOf,
  vm,
  VMS,
  withApi,
} from "./k8s_test_helpers.ts";

const JSON_PATCH = "application/json-patch+json";
const MERGE_PATCH = "application/merge-patch+json";

function meta(obj: JsonObject): JsonObject {
  return obj.metadata as JsonObject;
}

Deno.test("k8s list: VM items carry apiVersion/kind, pod items do not", async () => {
  await withApi(async (api) => {
    api.create("virtualmachines", vm("b"));
    api.create("virtualmachines", vm("a", { namespace: "other" }));
    api.create("pods", makeSchedulerPod({ name: "sched", podIP: "127.0.1.1" }));

    const vms = await getJson(api, VMS);
    assert.equal(vms.status, 200);
    assert.equal(vms.body.apiVersion, "vm.neon.tech/v1");
    assert.equal(vms.body.kind, "VirtualMachineList");
    assert.equal(meta(vms.body).resourceVersion, String(api.resourceVersion));
    const items = vms.body.items as JsonObject[];
    assert.deepEqual(items.map((i) => `${meta(i).namespace}/${meta(i).name}`), [
      "default/b",
      "other/a",
    ]);
    assert.equal(items[0].kind, "VirtualMachine");
    assert.deepEqual(items[0], api.get("virtualmachines", "default", "b"));

    const namespaced = await getJson(api, DEFAULT_VMS);
    assert.equal((namespaced.body.items as JsonObject[]).length, 1);

    const pods = await getJson(api, "/api/v1/namespaces/kube-system/pods");
    assert.equal(pods.body.kind, "PodList");
    const pod = (pods.body.items as JsonObject[])[0];
    assert.equal(pod.kind, undefined);
    assert.equal(pod.apiVersion, undefined);
    assert.equal(meta(pod).name, "sched");
    assert.equal((await getJson(api, "/api/v1/pods")).body.kind, "PodList");
    const single = await getJson(api, "/api/v1/namespaces/kube-system/pods/sched");
    assert.equal(single.body.kind, "Pod");
  });
});

Deno.test("k8s get: object, and a 404 Status for a missing one", async () => {
  await withApi(async (api) => {
    const created = api.create("virtualmachines", vm("example"));
    const found = await getJson(api, `${DEFAULT_VMS}/example`);
    assert.deepEqual(found.body, created);
    assert.equal(meta(found.body).generation, 1);
    assert.match(meta(found.body).uid as string, /^[0-9a-f-]{36}$/);
    assert.match(meta(found.body).creationTimestamp as string, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

    const missing = await getJson(api, `${DEFAULT_VMS}/nope`);
    assert.equal(missing.status, 404);
    assert.deepEqual(missing.body, {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: 'virtualmachines.vm.neon.tech "nope" not found',
      reason: "NotFound",
      details: { name: "nope", group: "vm.neon.tech", kind: "virtualmachines" },
      code: 404,
    });
    const pod = await getJson(api, "/api/v1/namespaces/kube-system/pods/nope");
    assert.equal(pod.body.message, 'pods "nope" not found');
    assert.deepEqual(pod.body.details, { name: "nope", kind: "pods" });
    const unknown = await getJson(api, "/apis/apps/v1/deployments");
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.message, "the server could not find the requested resource");
  });
});

Deno.test("k8s watch: synthetic ADDED without resourceVersion, then live events in order", async () => {
  await withApi(async (api) => {
    api.create("virtualmachines", vm("a"));
    api.create("virtualmachines", vm("b"));
    for (const rv of [undefined, "", "0"]) {
      const query: Record<string, string> = rv === undefined ? {} : { resourceVersion: rv };
      const { response, reader } = await openWatch(api, VMS, query);
      try {
        assert.equal(response.status, 200);
        assert.equal(response.headers.get("content-type"), "application/json");
        const first = await reader.event();
        const second = await reader.event();
        assert.deepEqual([first.type, second.type], ["ADDED", "ADDED"]);
        assert.deepEqual([meta(first.object).name, meta(second.object).name], ["a", "b"]);
        assert.equal(first.object.kind, "VirtualMachine");
      } finally {
        await reader.cancel();
      }
    }
    const { reader } = await openWatch(api, VMS, { resourceVersion: "0" });
    try {
      await reader.event();
      await reader.event();
      api.patchStatus("virtualmachines", "default", "a", { phase: "Scaling" });
      api.delete("virtualmachines", "default", "b");
      api.create("virtualmachines", vm("c"));
      const events = [await reader.event(), await reader.event(), await reader.event()];
      assert.deepEqual(events.map((e) => `${e.type} ${meta(e.object).name}`), [
        "MODIFIED a",
        "DELETED b",
        "ADDED c",
      ]);
      const rvs = events.map((e) => Number(rvOf(e.object)));
      assert.deepEqual(rvs, [rvs[0], rvs[0] + 1, rvs[0] + 2]);
    } finally {
      await reader.cancel();
    }
  });
});

Deno.test("k8s watch: resumes from a resourceVersion by replaying later events", async () => {
  await withApi(async (api) => {
    api.create("virtualmachines", vm("a"));
    const from = api.resourceVersion;
    api.patchStatus("virtualmachines", "default", "a", { phase: "Scaling" });
    api.create("pods", makeSchedulerPod({ name: "sched", podIP: "127.0.1.1" }));
    api.patchStatus("virtualmachines", "default", "a", { phase: "Running" });

    const { reader } = await openWatch(api, VMS, { resourceVersion: String(from) });
    try {
      const one = await reader.event();
      const two = await reader.event();
      assert.equal(one.type, "MODIFIED");
      assert.equal((one.object.status as JsonObject).phase, "Scaling");
      assert.equal(rvOf(one.object), String(from + 1));
      assert.equal((two.object.status as JsonObject).phase, "Running");
      assert.equal(rvOf(two.object), String(from + 3));
      assert.ok(await reader.quiet());
      api.patchStatus("virtualmachines", "default", "a", { podIP: "127.0.0.9" });
      assert.equal(rvOf((await reader.event()).object), String(from + 4));
    } finally {
      await reader.cancel();
    }
    // A resourceVersion ahead of the server is treated as current.
    const ahead = await openWatch(api, VMS, { resourceVersion: "999999" });
    try {
      assert.ok(await ahead.reader.quiet());
    } finally {
      await ahead.reader.cancel();
    }
  });
});

Deno.test("k8s watch: expired resourceVersion gives an ERROR 410 event, then the stream ends", async () => {
  await withApi(async (api) => {
    api.create("virtualmachines", vm("a"));
    api.create("virtualmachines", vm("b"));
    api.create("virtualmachines", vm("c"));
    // maxEvents 2: only rv 2 and 3 are kept, so rv 1 is the oldest a watch can start from.
    const ok = await openWatch(api, VMS, { resourceVersion: "1" });
    try {
      assert.equal(meta((await ok.reader.event()).object).name, "b");
    } finally {
      await ok.reader.cancel();
    }
    api.compactEvents();
    const old = await openWatch(api, VMS, { resourceVersion: "2" });
    assert.equal(old.response.status, 200);
    assert.deepEqual(await old.reader.event(), {
      type: "ERROR",
      object: {
        kind: "Status",
        apiVersion: "v1",
        metadata: {},
        status: "Failure",
        message: "too old resource version: 2 (4)",
        reason: "Expired",
        code: 410,
      },
    });
    assert.equal(await old.reader.next(), null);
    await old.reader.cancel();

    api.expiredWatchAsHttp410 = true;
    const http = await getJson(api, `${VMS}?watch=true&resourceVersion=2`);
    assert.equal(http.status, 410);
    assert.equal(http.body.reason, "Expired");
  }, { retention: { maxEvents: 2 } });
});

Deno.test("k8s watch: bookmarks only when allowed, periodic and on demand", async () => {
  await withApi(async (api) => {
    api.create("virtualmachines", vm("a"));
    const rv = String(api.resourceVersion);
    const plain = await openWatch(api, VMS, { resourceVersion: rv });
    const marked = await openWatch(api, VMS, { resourceVersion: rv, allowWatchBookmarks: "true" });
    try {
      assert.equal(api.sendBookmarks("virtualmachines"), 1);
      assert.deepEqual(await marked.reader.event(), {
        type: "BOOKMARK",
        object: {
          apiVersion: "vm.neon.tech/v1",
          kind: "VirtualMachine",
          metadata: { resourceVersion: rv },
        },
      });
      assert.ok(await plain.reader.quiet());
      api.bookmarkPeriodMs = 30;
      const periodic = await openWatch(api, "/api/v1/pods", {
        resourceVersion: rv,
        allowWatchBookmarks: "true",
      });
      try {
        const event = await periodic.reader.event(500);
        assert.equal(event.type, "BOOKMARK");
        assert.equal(event.object.kind, "Pod");
      } finally {
        await periodic.reader.cancel();
      }
    } finally {
      await plain.reader.cancel();
      await marked.reader.cancel();
    }
  });
});

Deno.test("k8s watch: timeoutSeconds and maximum lifetime end the stream cleanly", async () => {
  await withApi(async (api) => {
    const started = Date.now();
    const short = await openWatch(api, VMS, { timeoutSeconds: "0.1" });
    assert.equal(await short.reader.next(), null);
    await short.reader.cancel();
    const withBookmark = await openWatch(api, VMS, { allowWatchBookmarks: "true" });
    assert.equal((await withBookmark.reader.event()).type, "BOOKMARK");
    assert.equal(await withBookmark.reader.next(), null);
    await withBookmark.reader.cancel();
    assert.ok(Date.now() - started < 1500);
    assert.equal(api.openWatches(), 0);
  }, { watchLifetimeMs: 200 });
});

Deno.test("k8s watch: selector transitions become ADDED and DELETED with the old content", async () => {
  await withApi(async (api) => {
    api.create("virtualmachines", vm("x", { labels: { team: "b" } }));
    const { reader } = await openWatch(api, VMS, {
      labelSelector: "team=a",
      resourceVersion: String(api.resourceVersion),
    });
    try {
      const setTeam = (team: string) =>
        api.update("virtualmachines", "default", "x", (o) => {
          (meta(o).labels as JsonObject).team = team;
        });
      setTeam("a");
      const added = await reader.event();
      assert.equal(added.type, "ADDED");
      assert.equal((meta(added.object).labels as JsonObject).team, "a");

      api.patchStatus("virtualmachines", "default", "x", { phase: "Scaling" });
      assert.equal((await reader.event()).type, "MODIFIED");

      const moved = setTeam("c");
      const deleted = await reader.event();
      assert.equal(deleted.type, "DELETED");
      // Old content (team a), new resourceVersion.
      assert.equal((meta(deleted.object).labels as JsonObject).team, "a");
      assert.equal(rvOf(deleted.object), rvOf(moved));

      setTeam("d");
      assert.ok(await reader.quiet());
    } finally {
      await reader.cancel();
    }
  });
});

Deno.test("k8s selectors: label operators, field selectors and their 400s", async () => {
  await withApi(async (api) => {
    api.create("virtualmachines", vm("a", { labels: { tier: "gold", zone: "z1" } }));
    api.create("virtualmachines", vm("b", { labels: { tier: "silver" } }));
    api.create("virtualmachines", vm("c"));
    const names = async (query: string) => {
      const { status, body } = await getJson(api, `${VMS}?${query}`);
      assert.equal(status, 200, JSON.stringify(body));
      return (body.items as JsonObject[]).map((i) => meta(i).name).join(",");
    };
    const label = (s: string) => names(`labelSelector=${encodeURIComponent(s)}`);
    assert.equal(await label("tier=gold"), "a");
    assert.equal(await label("tier==silver"), "b");
    assert.equal(await label("tier!=gold"), "b,c");
    assert.equal(await label("tier"), "a,b");
    assert.equal(await label("!tier"), "c");
    assert.equal(await label("tier in (gold, silver),zone"), "a");
    assert.equal(await label("tier notin (gold)"), "b,c");
    assert.equal(await label(""), "a,b,c");
    assert.equal(await names("fieldSelector=metadata.name%3Db"), "b");
    assert.equal(await names("fieldSelector=metadata.namespace!%3Ddefault"), "");

    const bad = await getJson(api, `${VMS}?labelSelector=${encodeURIComponent("a=b=c")}`);
    assert.equal(bad.status, 400);
    assert.match(bad.body.message as string, /^unable to parse requirement/);
    const node = await getJson(api, `${VMS}?fieldSelector=status.node%3Dsim-node`);
    assert.equal(node.status, 400);
    assert.equal(node.body.message, "field label not supported: status.node");
    assert.equal(node.body.reason, "BadRequest");

    api.create("pods", makeSchedulerPod({ name: "s1", podIP: "127.0.1.1", nodeName: "n1" }));
    const pods = await getJson(
      api,
      "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1,status.phase%3DRunning",
    );
    assert.equal((pods.body.items as JsonObject[]).length, 1);
  });
});

Deno.test("k8s list: limit and continue page through one consistent snapshot", async () => {
  await withApi(async (api) => {
    for (const name of ["a", "b", "c", "d", "e"]) api.create("virtualmachines", vm(name));
    const first = await getJson(api, `${VMS}?limit=2`);
    const firstMeta = meta(first.body);
    assert.equal(firstMeta.remainingItemCount, 3);
    assert.equal(typeof firstMeta.continue, "string");
    // Changes after the first page do not show in later pages.
    api.delete("virtualmachines", "default", "e");
    api.create("virtualmachines", vm("f"));
    const token = encodeURIComponent(firstMeta.continue as string);
    const second = await getJson(api, `${VMS}?limit=2&continue=${token}`);
    assert.equal(meta(second.body).resourceVersion, firstMeta.resourceVersion);
    const third = await getJson(
      api,
      `${VMS}?limit=2&continue=${encodeURIComponent(meta(second.body).continue as string)}`,
    );
    assert.equal(meta(third.body).continue, undefined);
    const all = [first, second, third].flatMap((p) => p.body.items as JsonObject[]);
    assert.deepEqual(all.map((i) => meta(i).name), ["a", "b", "c", "d", "e"]);

    const bad = await getJson(api, `${VMS}?limit=2&continue=garbage`);
    assert.equal(bad.status, 400);
    api.compactEvents();
    const expired = await getJson(api, `${VMS}?limit=2&continue=${token}`);
    assert.equal(expired.status, 410);
  });
});

Deno.test("k8s patch: the agent's JSON Patch, replace on an absent member, recorded", async () => {
  await withApi(async (api) => {
    const before = api.create(
      "virtualmachines",
      vm("example", { cpus: { min: 250, max: 1250, use: 500 } }),
    );
    assert.equal((before.spec as JsonObject).targetRevision, undefined);
    const ops = [
      { op: "replace", path: "/spec/guest/cpus/use", value: "750m" },
      { op: "replace", path: "/spec/guest/memorySlots/use", value: 3 },
      {
        op: "replace",
        path: "/spec/targetRevision",
        value: { revision: { value: 124, flags: 1 }, updatedAt: "2025-09-23T12:05:10Z" },
      },
    ];
    const { status, body } = await patch(api, `${DEFAULT_VMS}/example`, JSON_PATCH, ops);
    assert.equal(status, 200, JSON.stringify(body));
    const spec = body.spec as JsonObject;
    assert.equal((spec.guest as JsonObject as { cpus: JsonObject }).cpus.use, "750m");
    assert.deepEqual(spec.targetRevision, ops[2].value);
    assert.equal(meta(body).generation, 2);
    assert.equal(Number(rvOf(body)), Number(rvOf(before)) + 1);
    assert.deepEqual(body.status, before.status);

    const [record] = api.patches;
    assert.equal(record.contentType, JSON_PATCH);
    assert.equal(record.body, JSON.stringify(ops));
    assert.equal(record.status, 200);
    assert.equal(record.name, "example");
    assert.deepEqual(record.response, body);
  });
});

Deno.test("k8s patch: JSON Patch add/test/move semantics, atomicity, 400 and 422", async () => {
  await withApi(async (api) => {
    const stored = api.create("virtualmachines", vm("v"));
    const path = `${DEFAULT_VMS}/v`;
    const apply = (ops: unknown) => patch(api, path, JSON_PATCH, ops);

    let r = await apply([{ op: "add", path: "/metadata/annotations/x~1y", value: "1" }]);
    assert.equal(r.status, 200);
    assert.equal((meta(r.body).annotations as JsonObject)["x/y"], "1");

    r = await apply([{ op: "test", path: "/spec/targetRevision", value: null }]);
    assert.equal(r.status, 200, "a missing member tests equal to null");
    r = await apply([{ op: "test", path: "/spec/targetRevision", value: {} }]);
    assert.equal(r.status, 422);
    r = await apply([{
      op: "test",
      path: "/spec/guest/memorySlots",
      value: { use: 1, max: 4, min: 1 },
    }]);
    assert.equal(r.status, 200, "deep equality ignores key order");

    const rv = api.resourceVersion;
    r = await apply([
      { op: "replace", path: "/spec/guest/memorySlots/use", value: 2 },
      { op: "replace", path: "/spec/missing/parent", value: 1 },
    ]);
    assert.equal(r.status, 422);
    assert.equal(r.body.kind, "Status");
    assert.equal(api.resourceVersion, rv, "a failed patch applies nothing");
    assert.deepEqual(
      ((api.get("virtualmachines", "default", "v")!.spec as JsonObject).guest as JsonObject)
        .memorySlots as unknown as JsonObject,
      ((stored.spec as JsonObject).guest as JsonObject).memorySlots,
    );

    r = await apply([{ op: "add", path: "/spec/guest/ports/7", value: {} }]);
    assert.equal(r.status, 422, "array index out of range");
    r = await apply([{ op: "remove", path: "/spec/nothing" }]);
    assert.equal(r.status, 422);
    r = await apply([
      { op: "copy", from: "/metadata/labels/neon~1endpoint-id", path: "/metadata/labels/copy" },
      { op: "move", from: "/metadata/labels/copy", path: "/metadata/labels/moved" },
      { op: "add", path: "/spec/guest/ports/-", value: { name: "extra", port: 1 } },
    ]);
    assert.equal(r.status, 200);
    assert.equal((meta(r.body).labels as JsonObject).moved, "ep-v");
    assert.equal(((r.body.spec as JsonObject).guest as { ports: unknown[] }).ports.length, 4);

    for (
      const malformed of [
        "not json",
        { op: "replace" },
        [{ op: "frobnicate", path: "/a" }],
        [{ op: "replace", path: "a", value: 1 }],
        [{ op: "replace", path: "/spec" }],
      ]
    ) {
      const bad = await apply(malformed);
      assert.equal(bad.status, 400, JSON.stringify(malformed));
      assert.equal(bad.body.reason, "BadRequest");
    }
  });
});

Deno.test("k8s patch: merge patch, status put back, 409/415/422/403 bodies", async () => {
  await withApi(async (api) => {
    const stored = api.create("virtualmachines", vm("example"));
    const path = `${DEFAULT_VMS}/example`;

    let r = await patch(api, path, `${MERGE_PATCH}; charset=utf-8`, {
      metadata: { labels: { extra: "1", "neon/endpoint-id": null } },
      status: { phase: "Failed" },
    });
    assert.equal(r.status, 200);
    assert.deepEqual(meta(r.body).labels, { "autoscaling.neon.tech/enabled": "true", extra: "1" });
    assert.equal((r.body.status as JsonObject).phase, "Running", "status is a subresource");
    assert.equal(meta(r.body).generation, 1, "metadata changes keep the generation");

    r = await patch(api, path, MERGE_PATCH, { metadata: { resourceVersion: rvOf(stored) } });
    assert.equal(r.status, 409);
    assert.deepEqual(r.body, {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: 'Operation cannot be fulfilled on virtualmachines.vm.neon.tech "example": the ' +
        "object has been modified; please apply your changes to the latest version and try again",
      reason: "Conflict",
      details: { name: "example", group: "vm.neon.tech", kind: "virtualmachines" },
      code: 409,
    });

    for (
      const type of [
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
        "application/json",
        null,
      ]
    ) {
      const response = await fetch(`${api.url}${path}`, {
        method: "PATCH",
        headers: type === null ? {} : { "content-type": type },
        body: "{}",
      });
      const status = await response.json();
      assert.equal(response.status, 415);
      assert.equal(status.reason, "UnsupportedMediaType");
      assert.match(status.message, /^the body of the request was in an unknown format/);
    }

    r = await patch(api, path, MERGE_PATCH, {
      spec: { guest: { memorySlots: { use: 600 }, cpus: { use: "abc" } } },
    });
    assert.equal(r.status, 422);
    assert.equal(r.body.reason, "Invalid");
    assert.match(
      r.body.message as string,
      /^VirtualMachine\.vm\.neon\.tech "example" is invalid: \[/,
    );
    const causes = (r.body.details as { causes: JsonObject[] }).causes;
    assert.deepEqual(causes.map((c) => c.field), [
      "spec.guest.cpus.use",
      "spec.guest.memorySlots.use",
    ]);
    r = await patch(api, path, JSON_PATCH, [{
      op: "replace",
      path: "/spec/guest/cpus/use",
      value: 0.5,
    }]);
    assert.equal(r.status, 422, "a fractional JSON number is not int-or-string");

    r = await patch(api, path, JSON_PATCH, [{
      op: "replace",
      path: "/spec/guest/cpus/use",
      value: "1500m",
    }]);
    assert.equal(r.status, 403);
    assert.deepEqual(r.body, {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: 'admission webhook "vvirtualmachine.kb.io" denied the request: ' +
        ".spec.guest.cpus.use (1500m) should be less than or equal to the .spec.guest.cpus.max (1)",
      reason: "Forbidden",
      code: 403,
    });
    r = await patch(api, path, JSON_PATCH, [{
      op: "replace",
      path: "/spec/guest/memorySlots/use",
      value: 0,
    }]);
    assert.equal(r.status, 422);
    r = await patch(api, path, JSON_PATCH, [{
      op: "replace",
      path: "/spec/guest/memorySlots/max",
      value: 8,
    }]);
    assert.equal(r.status, 403);
    assert.match(r.body.message as string, /\.spec\.guest\.memorySlots\.max is immutable$/);
    r = await patch(api, path, JSON_PATCH, [{
      op: "replace",
      path: "/spec/guest/cpus/min",
      value: "0.25",
    }]);
    assert.equal(r.status, 200, "the same minimum in another quantity form is no change");

    assert.equal((await patch(api, `${DEFAULT_VMS}/nope`, JSON_PATCH, [])).status, 404);
    const podPatch = await patch(api, "/api/v1/namespaces/kube-system/pods/x", MERGE_PATCH, {});
    assert.equal(podPatch.status, 405);
    assert.deepEqual(api.patches.map((p) => p.status), [
      200,
      409,
      415,
      415,
      415,
      415,
      422,
      422,
      403,
      422,
      403,
      200,
      404,
    ]);
  });
});

Deno.test("k8s patch: a no-op patch keeps the resourceVersion and emits no event", async () => {
  await withApi(async (api) => {
    const stored = api.create("virtualmachines", vm("v"));
    const { reader } = await openWatch(api, VMS, {
      resourceVersion: rvOf(stored),
      allowWatchBookmarks: "true",
    });
    try {
      const r = await patch(api, `${DEFAULT_VMS}/v`, JSON_PATCH, [
        { op: "replace", path: "/spec/guest/cpus/use", value: "250m" },
      ]);
      assert.equal(r.status, 200);
      assert.equal(rvOf(r.body), rvOf(stored));
      const merge = await patch(api, `${DEFAULT_VMS}/v`, MERGE_PATCH, { metadata: { labels: {} } });
      assert.equal(rvOf(merge.body), rvOf(stored));
      assert.deepEqual(api.update("virtualmachines", "default", "v", () => {}), stored);
      api.sendBookmarks();
      assert.equal((await reader.event()).type, "BOOKMARK", "no event came before the bookmark");
    } finally {
      await reader.cancel();
    }
  });
});

Deno.test("k8s patch: /status subresource changes only the status; normalisation mode", async () => {
  await withApi(async (api) => {
    api.create("virtualmachines", vm("v", { cpus: { min: 250, max: 2000, use: 500 } }));
    const r = await patch(api, `${DEFAULT_VMS}/v/status`, MERGE_PATCH, {
      status: { phase: "Migrating" },
      spec: { guest: { cpus: { use: 1 } } },
    });
    assert.equal(r.status, 200);
    assert.equal((r.body.status as JsonObject).phase, "Migrating");
    assert.equal(meta(r.body).generation, 1);
    assert.equal(api.patches[0].subresource, "status");

    api.normalizeCpus = true;
    const n = await patch(api, `${DEFAULT_VMS}/v`, JSON_PATCH, [
      { op: "replace", path: "/spec/guest/cpus/use", value: "1" },
    ]);
    const cpus = ((n.body.spec as JsonObject).guest as JsonObject).cpus;
    assert.deepEqual(cpus, { min: "250m", max: 2, use: 1 });
  });
});

Deno.test("k8s harness: generation, finalizers and deletion events", async () => {
  await withApi(async (api) => {
    api.create("virtualmachines", vm("v", { finalizers: ["vm.neon.tech/finalizer"] }));
    const { reader } = await openWatch(api, VMS, { resourceVersion: String(api.resourceVersion) });
    try {
      const labelled = api.update("virtualmachines", "default", "v", (o) => {
        (meta(o).labels as JsonObject).x = "y";
      });
      assert.equal(meta(labelled).generation, 1);
      const status = api.patchStatus("virtualmachines", "default", "v", { restartCount: 3 });
      assert.equal(meta(status).generation, 1);
      const spec = api.update("virtualmachines", "default", "v", (o) => {
        (o.spec as JsonObject).restartPolicy = "Never";
      });
      assert.equal(meta(spec).generation, 2);

      const marked = api.delete("virtualmachines", "default", "v");
      assert.match(meta(marked).deletionTimestamp as string, /Z$/);
      assert.ok(api.get("virtualmachines", "default", "v") !== undefined);
      api.update("virtualmachines", "default", "v", (o) => {
        meta(o).finalizers = [];
      });
      assert.equal(api.get("virtualmachines", "default", "v"), undefined);
      const types = [];
      for (let i = 0; i < 5; i++) types.push((await reader.event()).type);
      assert.deepEqual(types, ["MODIFIED", "MODIFIED", "MODIFIED", "MODIFIED", "DELETED"]);
      assert.throws(() => api.delete("virtualmachines", "default", "v"), /not found/);
      api.create("virtualmachines", vm("w"));
      assert.throws(() => api.create("virtualmachines", vm("w")), /already exists/);
    } finally {
      await reader.cancel();
    }
  });
});

Deno.test("k8s table: server-side printing for lists, objects and watches", async () => {
  await withApi(async (api) => {
    api.create("virtualmachines", vm("v", { cpus: { min: 250, max: 1000, use: 500 } }));
    const accept = {
      accept:
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
    };
    const list = await getJson(api, VMS, accept);
    assert.equal(list.body.kind, "Table");
    assert.equal(list.body.apiVersion, "meta.k8s.io/v1");
    const columns = (list.body.columnDefinitions as JsonObject[])
      .filter((c) => c.priority === 0)
      .map((c) => c.name);
    assert.deepEqual(columns, ["Name", "Cpus", "Memory", "Pod", "Status", "Restarts", "Age"]);
    const row = (list.body.rows as JsonObject[])[0];
    const podName = ((api.get("virtualmachines", "default", "v")!.status) as JsonObject).podName;
    assert.deepEqual(row.cells, [
      "v",
      "500m",
      "1Gi",
      podName,
      null,
      "Running",
      0,
      "sim-node",
      "0s",
    ]);
    assert.equal((row.object as JsonObject).kind, "PartialObjectMetadata");

    const full = await getJson(api, `${DEFAULT_VMS}/v?includeObject=Object`, accept);
    assert.equal(((full.body.rows as JsonObject[])[0].object as JsonObject).kind, "VirtualMachine");

    const { reader } = await openWatch(
      api,
      VMS,
      { resourceVersion: String(api.resourceVersion) },
      accept,
    );
    try {
      api.patchStatus("virtualmachines", "default", "v", { phase: "Scaling" });
      const event = await reader.event();
      assert.equal(event.type, "MODIFIED");
      assert.equal(event.object.kind, "Table");
      assert.ok(((event.object.rows as JsonObject[])[0].cells as unknown[]).includes("Scaling"));
    } finally {
      await reader.cancel();
    }
  });
});
