/** Fault injection, authentication, request records and scale of the fake Kubernetes API. */
import assert from "node:assert/strict";
import type { JsonObject } from "../../sim/k8s/mod.ts";
import { DEFAULT_VMS, getJson, openWatch, patch, vm, VMS, withApi } from "./k8s_test_helpers.ts";

Deno.test("k8s faults: 5xx on list, watch and patch, counted or until cleared", async () => {
  await withApi(async (api) => {
    api.create("virtualmachines", vm("v"));
    api.failRequests("list", { status: 503, count: 1 });
    const failed = await getJson(api, VMS);
    assert.equal(failed.status, 503);
    assert.equal(failed.body.reason, "ServiceUnavailable");
    assert.equal(failed.body.kind, "Status");
    assert.equal((await getJson(api, VMS)).status, 200);

    api.failRequests("watch", { resource: "pods" });
    assert.equal((await getJson(api, "/api/v1/pods?watch=true")).status, 500);
    assert.equal((await getJson(api, "/api/v1/pods?watch=1")).status, 500);
    const vmWatch = await openWatch(api, VMS);
    assert.equal(vmWatch.response.status, 200, "the rule is for pods only");
    await vmWatch.reader.cancel();
    api.clearFaults();
    const podWatch = await openWatch(api, "/api/v1/pods");
    assert.equal(podWatch.response.status, 200);
    await podWatch.reader.cancel();

    api.failRequests("patch", { status: 504, count: 1, message: "etcd timed out" });
    const r = await patch(api, `${DEFAULT_VMS}/v`, "application/merge-patch+json", {});
    assert.deepEqual([r.status, r.body.reason, r.body.message], [504, "Timeout", "etcd timed out"]);
    assert.equal(
      (await patch(api, `${DEFAULT_VMS}/v`, "application/merge-patch+json", {})).status,
      200,
    );

    api.failRequests("get", { garbage: true, count: 1 });
    const garbage = await fetch(`${api.url}${DEFAULT_VMS}/v`);
    assert.equal(garbage.status, 200);
    await assert.rejects(garbage.json());
  });
});

Deno.test("k8s faults: added latency delays every request", async () => {
  await withApi(async (api) => {
    api.latencyMs = 120;
    const started = performance.now();
    assert.equal((await getJson(api, "/version")).status, 200);
    assert.ok(performance.now() - started >= 110);
  });
});

Deno.test("k8s faults: a watch cut mid-event delivers half a line, then the connection fails", async () => {
  await withApi(async (api) => {
    api.create("virtualmachines", vm("v"));
    const response = await fetch(
      `${api.url}${VMS}?watch=true&resourceVersion=${api.resourceVersion}`,
    );
    const reader = response.body!.getReader();
    try {
      assert.equal(api.cutWatches("virtualmachines"), 1);
      api.patchStatus("virtualmachines", "default", "v", { phase: "Scaling" });
      const { value } = await reader.read();
      const text = new TextDecoder().decode(value);
      assert.ok(text.startsWith('{"type":"MODIFIED","object":{'));
      assert.ok(!text.includes("\n"), "only a partial line, and nothing after it");
      await assert.rejects(reader.read());
    } finally {
      await reader.cancel().catch(() => {});
    }
    assert.equal(api.openWatches(), 0);
  });
});

Deno.test("k8s faults: watch reset, clean end, ERROR, duplicate, undecodable and raw lines", async () => {
  await withApi(async (api) => {
    api.create("virtualmachines", vm("v"));
    const rv = String(api.resourceVersion);

    const reset = await openWatch(api, VMS, { resourceVersion: rv });
    assert.equal(api.resetWatches(), 1);
    await assert.rejects(reset.reader.next());
    await reset.reader.cancel();

    const ended = await openWatch(api, VMS, { resourceVersion: rv, allowWatchBookmarks: "true" });
    assert.equal(api.endWatches("virtualmachines", true), 1);
    assert.equal((await ended.reader.event()).type, "BOOKMARK");
    assert.equal(await ended.reader.next(), null);
    await ended.reader.cancel();

    const errored = await openWatch(api, VMS, { resourceVersion: rv });
    api.injectWatchError("virtualmachines", { code: 500, message: "boom" });
    const error = await errored.reader.event();
    assert.equal(error.type, "ERROR");
    assert.deepEqual(
      [error.object.kind, error.object.code, error.object.reason, error.object.message],
      ["Status", 500, "InternalError", "boom"],
    );
    assert.equal(await errored.reader.next(), null);
    await errored.reader.cancel();

    const { reader } = await openWatch(api, VMS, { resourceVersion: rv });
    try {
      api.injectDuplicateAdded("virtualmachines", "default", "v");
      const duplicate = await reader.event();
      assert.equal(duplicate.type, "ADDED");
      assert.deepEqual(duplicate.object, api.get("virtualmachines", "default", "v"));

      api.injectUndecodable("virtualmachines", "default", "v");
      const broken = await reader.event();
      assert.equal(broken.type, "MODIFIED");
      const guest = (broken.object.spec as JsonObject).guest as { cpus: JsonObject };
      assert.equal(guest.cpus.use, "abc");

      api.injectWatchEvent("virtualmachines", "MODIFIED", { kind: "Unknown" });
      assert.deepEqual((await reader.event()).object, { kind: "Unknown" });
      api.injectRawWatchLine("virtualmachines", "not json at all");
      assert.equal(await reader.next(), "not json at all");
      api.injectWatchError("virtualmachines", { code: 410, close: false });
      assert.equal((await reader.event()).object.reason, "Expired");
      assert.ok(await reader.quiet(), "the stream stayed open");
    } finally {
      await reader.cancel();
    }
  });
});

Deno.test("k8s auth: a configured token is required, 401 Status otherwise", async () => {
  await withApi(async (api) => {
    const denied = await getJson(api, VMS);
    assert.equal(denied.status, 401);
    assert.equal(denied.body.reason, "Unauthorized");
    const allowed = await getJson(api, VMS, { authorization: "Bearer s3cret" });
    assert.equal(allowed.status, 200);
    assert.match(api.kubeconfig(), /token: "s3cret"/);
  }, { token: "s3cret" });
});

Deno.test("k8s records: requests are kept with method, path, query, headers and status", async () => {
  await withApi(async (api) => {
    await getJson(api, `${VMS}?labelSelector=a%3Db`, { accept: "application/json" });
    const response = await fetch(`${api.url}${VMS}`, { method: "DELETE" });
    assert.equal(response.status, 405);
    assert.equal((await response.json()).reason, "MethodNotAllowed");
    const [list, del] = api.requests;
    assert.deepEqual(
      [list.method, list.path, list.query, list.accept, list.status],
      ["GET", VMS, "labelSelector=a%3Db", "application/json", 200],
    );
    assert.deepEqual([del.method, del.status], ["DELETE", 405]);
    api.clearRecords();
    assert.equal(api.requests.length, 0);
  }, { maxRecords: 5 });
});

Deno.test("k8s scale: 2,000 VMs list quickly and fan out to several watchers", async () => {
  await withApi(async (api) => {
    let started = performance.now();
    for (let i = 0; i < 2000; i++) {
      api.create("virtualmachines", vm(`vm-${String(i).padStart(4, "0")}`));
    }
    const createMs = performance.now() - started;

    started = performance.now();
    const list = await getJson(api, VMS);
    const listMs = performance.now() - started;
    assert.equal((list.body.items as JsonObject[]).length, 2000);

    const watchers = await Promise.all([0, 1, 2, 3].map(() => openWatch(api, VMS)));
    try {
      for (const { reader } of watchers) {
        for (let i = 0; i < 2000; i++) assert.equal((await reader.event()).type, "ADDED");
      }
      api.patchStatus("virtualmachines", "default", "vm-1234", { phase: "Scaling" });
      for (const { reader } of watchers) {
        const event = await reader.event();
        assert.equal((event.object.metadata as JsonObject).name, "vm-1234");
      }
    } finally {
      await Promise.all(watchers.map(({ reader }) => reader.cancel()));
    }
    console.log(
      `2,000 VMs: created in ${createMs.toFixed(0)} ms, listed in ${listMs.toFixed(0)} ms`,
    );
    assert.ok(listMs < 1000, `list took ${listMs} ms`);
  });
});
