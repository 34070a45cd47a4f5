import assert from "node:assert/strict";
import { type JsonObject, makeVirtualMachine } from "../../sim/k8s/mod.ts";
import { buildNeonVMPatch } from "../../agent/k8s/patch.ts";
import { openKubeClient } from "../../agent/k8s/client.ts";
import { kubeConfigFromString, loadKubeConfig } from "../../agent/k8s/kubeconfig.ts";
import { TokenBucket } from "../../agent/k8s/rate_limit.ts";
import { withFakeApi } from "./k8s_test_helpers.ts";
import { VirtualClock } from "../../lib/virtual_clock.ts";
import { ok } from "../../lib/result.ts";
import { waitFor } from "../support/wait.ts";

const GiB = 1024 ** 3;
const VM_PATH = "/apis/vm.neon.tech/v1/namespaces/default/virtualmachines/example";

Deno.test("patch: the exact body of a 2 CU → 3 CU upscale", () => {
  const ops = buildNeonVMPatch({
    target: { vCPU: 750, mem: 3 * GiB },
    memorySlotSize: GiB,
    revision: { value: 124, flags: 1 },
    now: Date.UTC(2025, 8, 23, 12, 5, 10, 870),
  });
  assert.equal(
    JSON.stringify(ops),
    '[{"op":"replace","path":"/spec/guest/cpus/use","value":"750m"},' +
      '{"op":"replace","path":"/spec/guest/memorySlots/use","value":3},' +
      '{"op":"replace","path":"/spec/targetRevision","value":{"revision":{"value":124,"flags":1},' +
      '"updatedAt":"2025-09-23T12:05:10Z"}}]',
  );
});

Deno.test("patch: whole CPUs are strings, slots truncate", () => {
  const ops = buildNeonVMPatch({
    target: { vCPU: 2000, mem: 3.5 * GiB },
    memorySlotSize: GiB,
    revision: { value: 1, flags: 3 },
    now: 0,
  });
  assert.deepEqual(ops.map((op) => op.value), [
    "2",
    3,
    { revision: { value: 1, flags: 3 }, updatedAt: "1970-01-01T00:00:00Z" },
  ]);
  assert.throws(() => buildNeonVMPatch({ ...paramsZeroSlot() }), RangeError);
});

function paramsZeroSlot() {
  return {
    target: { vCPU: 1000, mem: GiB },
    memorySlotSize: 0,
    revision: { value: 1, flags: 0 },
    now: 0,
  };
}

function exampleVm(revision = true): JsonObject {
  return makeVirtualMachine({
    name: "example",
    podIP: "127.0.0.2",
    cpus: { min: 250, max: 1250, use: 500 },
    memorySlots: { min: 1, max: 5, use: 2 },
    revision: revision ? { value: 123, flags: 1 } : undefined,
  });
}

function spec(obj: JsonObject | undefined): JsonObject {
  return obj!.spec as JsonObject;
}

Deno.test("patch: sent as application/json-patch+json and applied by the fake", async () => {
  await withFakeApi(async (api, client) => {
    api.create("virtualmachines", exampleVm());
    const ops = buildNeonVMPatch({
      target: { vCPU: 750, mem: 3 * GiB },
      memorySlotSize: GiB,
      revision: { value: 124, flags: 1 },
      now: Date.UTC(2025, 8, 23, 12, 5, 10, 500),
    });
    assert.deepEqual(await client.patchVirtualMachine("default", "example", ops), {
      ok: true,
      value: undefined,
    });

    const [record] = api.patches;
    assert.equal(record.contentType, "application/json-patch+json");
    assert.equal(record.body, JSON.stringify(ops));
    assert.equal(record.status, 200);
    const request = api.requests.find((r) => r.method === "PATCH")!;
    assert.equal(request.path, VM_PATH);

    const vm = spec(api.get("virtualmachines", "default", "example"));
    const guest = vm.guest as JsonObject;
    assert.deepEqual(guest.cpus, { min: "250m", max: "1250m", use: "750m" });
    assert.deepEqual(guest.memorySlots, { min: 1, max: 5, use: 3 });
    assert.deepEqual(vm.targetRevision, {
      revision: { value: 124, flags: 1 },
      updatedAt: "2025-09-23T12:05:10Z",
    });
  });
});

Deno.test("patch: replace of an absent targetRevision works", async () => {
  await withFakeApi(async (api, client) => {
    api.create("virtualmachines", exampleVm(false));
    assert.equal(spec(api.get("virtualmachines", "default", "example")).targetRevision, undefined);
    const ops = buildNeonVMPatch({
      target: { vCPU: 1000, mem: 2 * GiB },
      memorySlotSize: GiB,
      revision: { value: 1, flags: 1 },
      now: Date.UTC(2025, 0, 1),
    });
    assert.deepEqual(await client.patchVirtualMachine("default", "example", ops), {
      ok: true,
      value: undefined,
    });
    const vm = spec(api.get("virtualmachines", "default", "example"));
    assert.equal(((vm.guest as JsonObject).cpus as JsonObject).use, "1");
    assert.deepEqual(vm.targetRevision, {
      revision: { value: 1, flags: 1 },
      updatedAt: "2025-01-01T00:00:00Z",
    });
  });
});

Deno.test("patch: failures carry the status, reason and Status message", async () => {
  await withFakeApi(async (api, client) => {
    api.create("virtualmachines", exampleVm());
    const patch = (name: string, vCPU: number, mem: number) =>
      client.patchVirtualMachine(
        "default",
        name,
        buildNeonVMPatch({
          target: { vCPU, mem },
          memorySlotSize: GiB,
          revision: { value: 2, flags: 1 },
          now: Date.now(),
        }),
      );

    assert.deepEqual(await patch("nope", 500, GiB), {
      ok: false,
      error: {
        status: 404,
        reason: "NotFound",
        message: 'virtualmachines.vm.neon.tech "nope" not found',
      },
    });

    const forbidden = await patch("example", 2000, GiB);
    assert.equal(forbidden.ok, false);
    assert.ok(!forbidden.ok);
    assert.equal(forbidden.error.status, 403);
    assert.equal(forbidden.error.reason, "Forbidden");
    assert.match(forbidden.error.message, /admission webhook "vvirtualmachine\.kb\.io" denied/);

    const invalid = await patch("example", 500, 0);
    assert.ok(!invalid.ok);
    assert.equal(invalid.error.status, 422);
    assert.equal(invalid.error.reason, "Invalid");
    assert.match(invalid.error.message, /memorySlots/);

    api.failRequests("patch", { status: 409, count: 1, message: "the object has been modified" });
    assert.deepEqual(await patch("example", 500, GiB), {
      ok: false,
      error: { status: 409, reason: "Conflict", message: "the object has been modified" },
    });

    api.failRequests("patch", { status: 503, count: 1, message: "etcd is sad" });
    const unavailable = await patch("example", 500, GiB);
    assert.ok(!unavailable.ok);
    assert.equal(unavailable.error.status, 503);
    assert.equal(unavailable.error.message, "etcd is sad");

    assert.deepEqual(
      await patch("example", 1000, 2 * GiB),
      { ok: true, value: undefined },
      "recovers",
    );
  });
});

Deno.test("patch: timeout, abort and transport errors", async () => {
  await withFakeApi(async (api, client) => {
    api.create("virtualmachines", exampleVm());
    const ops = buildNeonVMPatch({
      target: { vCPU: 500, mem: 2 * GiB },
      memorySlotSize: GiB,
      revision: { value: 2, flags: 0 },
      now: Date.now(),
    });
    api.latencyMs = 300;
    assert.deepEqual(
      await client.patchVirtualMachine("default", "example", ops, { timeoutMs: 50 }),
      { ok: false, error: { message: "context deadline exceeded" } },
    );
    const controller = new AbortController();
    const pending = client.patchVirtualMachine("default", "example", ops, {
      signal: controller.signal,
    });
    controller.abort();
    assert.deepEqual(await pending, { ok: false, error: { message: "context canceled" } });
    api.latencyMs = 0;
    // Let the requests the fake is still sleeping on finish before it shuts down.
    await new Promise((r) => setTimeout(r, 350));
  });

  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const kubeconfig = [
    "apiVersion: v1",
    "kind: Config",
    "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:" + port +
    "', insecure-skip-tls-verify: true}}]",
    "users: [{name: u, user: {token: t}}]",
    "contexts: [{name: x, context: {cluster: c, user: u}}]",
    "current-context: x",
  ].join("\n");
  const offline = await openKubeClient(kubeConfigFromString(kubeconfig));
  const result = await offline.patchVirtualMachine("default", "example", [], { timeoutMs: 2000 });
  assert.ok(!result.ok);
  assert.equal(result.error.status, undefined);
  assert.match(result.error.message, /refused|ECONNREFUSED/i);
});

Deno.test("patch: throttled by the client's token bucket", async () => {
  await withFakeApi(async (api) => {
    api.create("virtualmachines", exampleVm());
    const clock = new VirtualClock({ startMs: 0 });
    const client = await openKubeClient(kubeConfigFromString(api.kubeconfig()), {
      vmRateLimiter: new TokenBucket({ perSecond: 10, burst: 1, clock }),
      clock,
    });
    const ops = buildNeonVMPatch({
      target: { vCPU: 500, mem: 2 * GiB },
      memorySlotSize: GiB,
      revision: { value: 2, flags: 0 },
      now: 0,
    });
    const sentAt: number[] = [];
    const patches = [1, 2, 3].map(() =>
      client.patchVirtualMachine("default", "example", ops).then((result) => {
        sentAt.push(clock.now());
        return result;
      })
    );
    await waitFor(() => api.patches.length === 1, { what: "the first patch" });
    await clock.advance(100);
    await waitFor(() => api.patches.length === 2, { what: "the second patch" });
    await clock.advance(100);
    const results = await Promise.all(patches);
    assert.deepEqual(results, [ok(undefined), ok(undefined), ok(undefined)]);
    assert.deepEqual(sentAt, [0, 100, 200], "one token every 100 ms, the burst of 1 first");
  });
});

Deno.test("client: KUBECONFIG selects the API server outside a cluster", async () => {
  await withFakeApi(async (api) => {
    const path = await Deno.makeTempFile({ suffix: ".yaml" });
    const previous = Deno.env.get("KUBECONFIG");
    try {
      await Deno.writeTextFile(path, api.kubeconfig());
      Deno.env.set("KUBECONFIG", path);
      const client = await openKubeClient(loadKubeConfig());
      assert.equal(client.transport, "fetch");
      api.create("virtualmachines", exampleVm());
      const listed = await client.virtualMachines().list(new AbortController().signal);
      assert.equal(listed.items.length, 1);
      assert.equal(listed.resourceVersion, String(api.resourceVersion));
    } finally {
      if (previous === undefined) Deno.env.delete("KUBECONFIG");
      else Deno.env.set("KUBECONFIG", previous);
      await Deno.remove(path);
    }
  });
});

Deno.test("client: a hanging List times out instead of stalling its watcher", async () => {
  await withFakeApi(
    async (api, client) => {
      api.latencyMs = 300;
      await assert.rejects(
        client.virtualMachines().list(new AbortController().signal),
        /^KubeApiError: listing VirtualMachines: request timed out after 100 ms$/,
      );
      api.failRequests("list", { status: 500, message: "broken" });
      api.latencyMs = 0;
      await new Promise((r) => setTimeout(r, 300));
      await assert.rejects(
        client.pods("kube-system", "name=x").list(new AbortController().signal),
        (e: Error & { status?: number }) =>
          e.message === "listing pods: broken" && e.status === 500,
      );
    },
    {},
    { listTimeoutMs: 100 },
  );
});
