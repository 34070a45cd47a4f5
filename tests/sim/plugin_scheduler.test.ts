import assert from "node:assert/strict";
import {
  decodeAgentRequest,
  SchedulerPlugin,
  type SchedulerPluginOptions,
} from "../../sim/plugin/scheduler_plugin.ts";

const GiB = 1024 ** 3;
const CU = { vCPUs: "250m", mem: "1Gi" };
const POD = { namespace: "default", name: "example-x7k2p" };

async function withPlugin(
  opts: Partial<SchedulerPluginOptions>,
  fn: (p: SchedulerPlugin) => Promise<void>,
): Promise<void> {
  const plugin = new SchedulerPlugin({ hostname: "127.0.0.1", port: 0, ...opts });
  plugin.start();
  plugin.registerPod(POD.namespace, POD.name);
  try {
    await fn(plugin);
  } finally {
    await plugin.stop();
  }
}

function request(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    protoVersion: 7,
    pod: POD,
    computeUnit: CU,
    resources: { vCPUs: "500m", mem: "2Gi" },
    lastPermit: null,
    metrics: null,
    ...overrides,
  };
}

async function post(
  plugin: SchedulerPlugin,
  body: unknown,
  init: RequestInit = {},
): Promise<{ status: number; type: string | null; body: string }> {
  const res = await fetch(plugin.url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
    ...init,
  });
  return { status: res.status, type: res.headers.get("content-type"), body: await res.text() };
}

Deno.test("plugin: first request is granted as asked, in the exact encodings", async () => {
  await withPlugin({}, async (plugin) => {
    const res = await post(
      plugin,
      '{"protoVersion":7,"pod":{"namespace":"default","name":"example-x7k2p"},"computeUnit":{"vCPUs":"250m","mem":"1Gi"},"resources":{"vCPUs":"500m","mem":"2Gi"},"lastPermit":null,"metrics":null}',
    );
    assert.deepEqual(res, {
      status: 200,
      type: "application/json",
      body: '{"permit":{"vCPUs":"500m","mem":"2Gi"}}',
    });
    assert.deepEqual(plugin.pod(POD.namespace, POD.name)?.approved, {
      milliCpu: 500,
      memBytes: 2 * GiB,
    });
  });
});

Deno.test("plugin: whole CPUs are JSON numbers", async () => {
  await withPlugin({}, async (plugin) => {
    const res = await post(plugin, request({ resources: { vCPUs: 1, mem: "4Gi" } }));
    assert.equal(res.body, '{"permit":{"vCPUs":1,"mem":"4Gi"}}');
  });
});

Deno.test("plugin: upscale fully, partially or not approved ", async () => {
  const upscale = request({
    resources: { vCPUs: "750m", mem: "3Gi" },
    lastPermit: { vCPUs: "500m", mem: "2Gi" },
    metrics: { loadAvg1M: 1.37 },
  });
  await withPlugin({}, async (plugin) => {
    assert.equal((await post(plugin, upscale)).body, '{"permit":{"vCPUs":"750m","mem":"3Gi"}}');
    plugin.setGrant({ cpu: 1, mem: 0 });
    assert.equal((await post(plugin, upscale)).body, '{"permit":{"vCPUs":"750m","mem":"2Gi"}}');
    plugin.setGrant({ cpu: 0, mem: 0 });
    assert.equal((await post(plugin, upscale)).body, '{"permit":{"vCPUs":"500m","mem":"2Gi"}}');
    plugin.setMigrate(true);
    assert.equal(
      (await post(plugin, upscale)).body,
      '{"permit":{"vCPUs":"500m","mem":"2Gi"},"migrate":{}}',
    );
  });
});

Deno.test("plugin: a partial grant is whole compute units of the increase", async () => {
  await withPlugin({}, async (plugin) => {
    plugin.setGrant({ cpu: 0.5, mem: 0.5 });
    const res = await post(
      plugin,
      request({
        resources: { vCPUs: "1250m", mem: "5Gi" },
        lastPermit: { vCPUs: "250m", mem: "1Gi" },
      }),
    );
    // Half of +4 CU is +2 CU.
    assert.equal(res.body, '{"permit":{"vCPUs":"750m","mem":"3Gi"}}');
  });
});

Deno.test("plugin: node capacity limits increases, shared between pods", async () => {
  await withPlugin(
    { nodeCapacity: { milliCpu: 2000, memBytes: 8 * GiB } },
    async (plugin) => {
      plugin.registerPod("default", "other", { milliCpu: 1000, memBytes: 5 * GiB });
      const res = await post(
        plugin,
        request({
          resources: { vCPUs: 2, mem: "8Gi" },
          lastPermit: { vCPUs: "250m", mem: "1Gi" },
        }),
      );
      // Room: 1 CPU and 3 GiB (whole compute units from the base).
      assert.equal(res.body, '{"permit":{"vCPUs":1,"mem":"3Gi"}}');
      plugin.removePod("default", "other");
      const more = await post(
        plugin,
        request({ resources: { vCPUs: 2, mem: "8Gi" }, lastPermit: { vCPUs: 1, mem: "3Gi" } }),
      );
      assert.equal(more.body, '{"permit":{"vCPUs":2,"mem":"8Gi"}}');
    },
  );
});

Deno.test("plugin: without lastPermit the stored approval is the base", async () => {
  await withPlugin({}, async (plugin) => {
    plugin.registerPod(POD.namespace, POD.name, { milliCpu: 500, memBytes: 2 * GiB });
    plugin.setGrant({ cpu: 0, mem: 0 });
    const res = await post(plugin, request({ resources: { vCPUs: 1, mem: "4Gi" } }));
    assert.equal(res.body, '{"permit":{"vCPUs":"500m","mem":"2Gi"}}');
  });
});

Deno.test("plugin: request ≤ lastPermit is answered at once with the request", async () => {
  await withPlugin({}, async (plugin) => {
    plugin.setGrant({ cpu: 0, mem: 0 });
    const res = await post(
      plugin,
      request({
        resources: { vCPUs: "250m", mem: "2Gi" },
        lastPermit: { vCPUs: "500m", mem: "2Gi" },
      }),
    );
    assert.equal(res.body, '{"permit":{"vCPUs":"250m","mem":"2Gi"}}');
    assert.equal(plugin.requests.at(-1)?.shortcut, true);
  });
});

Deno.test("plugin: a decrease in one field and an increase in the other", async () => {
  await withPlugin({}, async (plugin) => {
    plugin.setGrant({ cpu: 0, mem: 0 });
    const res = await post(
      plugin,
      request({
        resources: { vCPUs: "250m", mem: "3Gi" },
        lastPermit: { vCPUs: "500m", mem: "2Gi" },
      }),
    );
    assert.equal(res.body, '{"permit":{"vCPUs":"250m","mem":"2Gi"}}');
    assert.equal(plugin.requests.at(-1)?.shortcut, false);
  });
});

Deno.test("plugin: non-POST is 400 must be POST", async () => {
  await withPlugin({}, async (plugin) => {
    const res = await fetch(plugin.url + "any/path");
    assert.equal(res.status, 400);
    assert.equal(await res.text(), "must be POST");
    assert.match(res.headers.get("content-type")!, /^text\/plain/);
  });
});

Deno.test("plugin: any path and content type are accepted", async () => {
  await withPlugin({}, async (plugin) => {
    const res = await fetch(plugin.url + "some/where", {
      method: "POST",
      headers: { "content-type": "text/weird" },
      body: JSON.stringify(request()),
    });
    assert.equal(res.status, 200);
    await res.body?.cancel();
    assert.equal(plugin.requests[0].path, "/some/where");
  });
});

Deno.test("plugin: at most 1024 body bytes are read", async () => {
  await withPlugin({}, async (plugin) => {
    const base = JSON.stringify(request());
    const padded = (size: number) => base.slice(0, -1) + " ".repeat(size - base.length) + "}";
    assert.equal(padded(1024).length, 1024);
    assert.equal((await post(plugin, padded(1024))).status, 200);
    const over = await post(plugin, padded(1025));
    assert.deepEqual([over.status, over.type, over.body], [400, "text/plain", "bad JSON"]);
    assert.equal(plugin.requests.at(-1)?.raw.length, 1024);
    // Data after the first JSON value is never looked at, as with Go's json.Decoder.
    assert.equal((await post(plugin, base + "x".repeat(5000))).status, 200);
  });
});

Deno.test("plugin: bad JSON", async () => {
  await withPlugin({}, async (plugin) => {
    for (
      const body of [
        "",
        "{",
        "[]",
        "7",
        '{"protoVersion":"7"}',
        '{"protoVersion":7,"resources":{"vCPUs":"lots"}}',
        '{"protoVersion":7,"pod":{"name":5}}',
      ]
    ) {
      const res = await post(plugin, body);
      assert.deepEqual([res.status, res.body, res.type], [400, "bad JSON", "text/plain"], body);
    }
  });
});

Deno.test("plugin: protoVersion must be 7; the error names both versions", async () => {
  await withPlugin({}, async (plugin) => {
    const old = await post(plugin, request({ protoVersion: 6 }));
    assert.equal(old.status, 400);
    assert.equal(old.type, "text/plain");
    assert.match(old.body, /v5\.0/);
    assert.match(old.body, /v4\.0/);
    const future = await post(plugin, request({ protoVersion: 8 }));
    assert.equal(future.status, 400);
    assert.match(future.body, /v5\.0.*8/);
    for (const zero of [request({ protoVersion: 0 }), request({ protoVersion: undefined }), null]) {
      const res = await post(plugin, zero);
      assert.equal(res.status, 400, JSON.stringify(zero));
      assert.notEqual(res.body, "bad JSON");
    }
  });
});

Deno.test("plugin: a zero compute unit field is 400", async () => {
  await withPlugin({}, async (plugin) => {
    for (const cu of [{ vCPUs: 0, mem: "1Gi" }, { vCPUs: "250m", mem: 0 }, null]) {
      const res = await post(plugin, request({ computeUnit: cu }));
      assert.equal(res.status, 400);
      assert.match(res.body, /computeUnit/);
    }
  });
});

Deno.test("plugin: unknown pods are 404 unless auto-registered", async () => {
  await withPlugin({}, async (plugin) => {
    const stranger = request({ pod: { namespace: "default", name: "stranger" } });
    const res = await post(plugin, stranger);
    assert.deepEqual([res.status, res.body, res.type], [404, "pod not found", "text/plain"]);
    plugin.setAutoRegister(true);
    assert.equal((await post(plugin, stranger)).status, 200);
    assert.ok(plugin.pod("default", "stranger")?.approved);
  });
});

Deno.test("plugin: decodes like Go: case-insensitive keys, unknown keys, float32 load", () => {
  const decoded = decodeAgentRequest(
    '{"PROTOVERSION":7,"Pod":{"Namespace":"ns","NAME":"p"},"computeunit":{"VCPUS":0.25,"Mem":1073741824},' +
      '"resources":{"vCPUs":"1","mem":"2Gi"},"lastPermit":{"vCPUs":"1000m","mem":null},' +
      '"metrics":{"loadAvg1M":0.42,"loadAvg5M":1},"extra":[1,2]} trailing',
  );
  assert.deepEqual(decoded, {
    protoVersion: 7,
    pod: { namespace: "ns", name: "p" },
    computeUnit: { milliCpu: 250, memBytes: GiB },
    resources: { milliCpu: 1000, memBytes: 2 * GiB },
    lastPermit: { milliCpu: 1000, memBytes: 0 },
    metrics: { loadAvg1M: Math.fround(0.42) },
  });
});

Deno.test("plugin: records raw and decoded requests with timestamps", async () => {
  const seen: number[] = [];
  await withPlugin({ onRequest: (r) => seen.push(r.status) }, async (plugin) => {
    const raw = JSON.stringify(request({ metrics: { loadAvg1M: 0.42 } }));
    const before = Date.now();
    await post(plugin, raw);
    const [record] = plugin.requests;
    assert.equal(record.raw, raw);
    assert.equal(record.method, "POST");
    assert.equal(record.contentType, "application/json");
    assert.ok(record.at >= before);
    assert.equal(record.request?.lastPermit, null);
    assert.equal(record.request?.metrics?.loadAvg1M, Math.fround(0.42));
    assert.equal(record.status, 200);
    assert.equal(record.response, '{"permit":{"vCPUs":"500m","mem":"2Gi"}}');
    assert.deepEqual(seen, [200]);
  });
});

Deno.test("plugin: faults: failure status, malformed JSON, lying permits", async () => {
  const upscale = request({
    resources: { vCPUs: "750m", mem: "3Gi" },
    lastPermit: { vCPUs: "500m", mem: "2Gi" },
  });
  await withPlugin({}, async (plugin) => {
    plugin.setFault({ kind: "status", status: 500, body: "timed out waiting for updates" });
    assert.deepEqual(await post(plugin, upscale), {
      status: 500,
      type: "text/plain",
      body: "timed out waiting for updates",
    });
    plugin.setFault({ kind: "malformedJson" });
    const garbage = await post(plugin, upscale);
    assert.equal(garbage.status, 200);
    assert.throws(() => JSON.parse(garbage.body));
    plugin.setFault({ kind: "permitAboveRequest" });
    assert.equal((await post(plugin, upscale)).body, '{"permit":{"vCPUs":1,"mem":"4Gi"}}');
    plugin.setFault({ kind: "permitBelowUsage" });
    assert.equal((await post(plugin, upscale)).body, '{"permit":{"vCPUs":"250m","mem":"1Gi"}}');
    plugin.setFault({ kind: "zeroPermit" });
    assert.equal((await post(plugin, upscale)).body, '{"permit":{"vCPUs":0,"mem":0}}');
    plugin.setFault(undefined);
    // The lies were not stored as approvals.
    assert.equal(plugin.pod(POD.namespace, POD.name)?.approved, undefined);
    assert.equal((await post(plugin, upscale)).body, '{"permit":{"vCPUs":"750m","mem":"3Gi"}}');
  });
});

Deno.test("plugin: fixed latency, cut short by stopping", async () => {
  await withPlugin({}, async (plugin) => {
    plugin.setLatency(150);
    const started = Date.now();
    assert.equal((await post(plugin, request())).status, 200);
    assert.ok(Date.now() - started >= 140);
    plugin.setLatency(60_000);
    const pending = post(plugin, request()).then((r) => r.status, () => "error");
    await new Promise((r) => setTimeout(r, 50));
    const stopping = Date.now();
    await plugin.stop();
    assert.ok(Date.now() - stopping < 1000);
    assert.ok([503, "error"].includes(await pending));
  });
});

Deno.test("plugin: disappears and comes back on the same address", async () => {
  await withPlugin({}, async (plugin) => {
    const url = plugin.url;
    await plugin.stop();
    await assert.rejects(post(plugin, request()), (e: Error) => /refused/i.test(String(e.cause)));
    plugin.start();
    assert.equal(plugin.url, url);
    assert.equal((await post(plugin, request())).status, 200);
  });
});
