import assert from "node:assert/strict";
import { hostPort } from "../../agent/http_request.ts";
import {
  decodePluginResponse,
  encodeAgentRequest,
  MAX_RESPONSE_BYTES,
  PLUGIN_IDLE_CONNECTIONS,
  PLUGIN_PROTO_VERSION,
  pluginHttpClient,
  postAgentRequest,
  SchedulerPluginClient,
  type SchedulerPluginClientOptions,
  shortestFloat32,
} from "../../agent/plugin/request.ts";
import { SchedulerPlugin } from "../../sim/plugin/scheduler_plugin.ts";
import { cu, GiB } from "../core/helpers.ts";
import { recordingLog, until } from "./executor_helpers.ts";

const POD = { namespace: "default", name: "example-x7k2p" };

// protocols.md §2.8, byte for byte.
const FIRST_REQUEST =
  '{"protoVersion":7,"pod":{"namespace":"default","name":"example-x7k2p"},"computeUnit":{"vCPUs":"250m","mem":"1Gi"},"resources":{"vCPUs":"500m","mem":"2Gi"},"lastPermit":null,"metrics":null}';
const UPSCALE_REQUEST =
  '{"protoVersion":7,"pod":{"namespace":"default","name":"example-x7k2p"},"computeUnit":{"vCPUs":"250m","mem":"1Gi"},"resources":{"vCPUs":"750m","mem":"3Gi"},"lastPermit":{"vCPUs":"500m","mem":"2Gi"},"metrics":{"loadAvg1M":1.37}}';

async function withPlugin(
  fn: (
    plugin: SchedulerPlugin,
    client: (opts?: Partial<SchedulerPluginClientOptions>) => {
      client: SchedulerPluginClient;
      log: ReturnType<typeof recordingLog>;
    },
  ) => Promise<void>,
): Promise<void> {
  const plugin = new SchedulerPlugin({ hostname: "127.0.0.1", port: 0 });
  plugin.start();
  plugin.registerPod(POD.namespace, POD.name);
  try {
    await fn(plugin, (opts = {}) => {
      const log = recordingLog();
      const client = new SchedulerPluginClient({
        scheduler: () => "127.0.0.1",
        port: plugin.port,
        timeoutMs: 2000,
        pod: POD,
        computeUnit: cu(1),
        log,
        ...opts,
      });
      return { client, log };
    });
  } finally {
    await plugin.stop();
  }
}

Deno.test("plugin request: the body matches protocols.md 2.8 byte for byte", () => {
  const base = { protoVersion: PLUGIN_PROTO_VERSION, pod: POD, computeUnit: cu(1) };
  assert.equal(
    encodeAgentRequest({ ...base, resources: cu(2), lastPermit: null, metrics: null }),
    FIRST_REQUEST,
  );
  assert.equal(
    encodeAgentRequest({
      ...base,
      resources: cu(3),
      lastPermit: cu(2),
      // What the core hands over: host_load1 rounded to float32.
      metrics: { loadAvg1M: Math.fround(1.37) },
    }),
    UPSCALE_REQUEST,
  );
  const whole = encodeAgentRequest({
    ...base,
    resources: { vCPU: 1000, mem: 4 * GiB },
    lastPermit: null,
    metrics: null,
  });
  assert.match(whole, /"resources":\{"vCPUs":1,"mem":"4Gi"\}/);
  const small = encodeAgentRequest({
    ...base,
    resources: { vCPU: 1500, mem: 512 },
    lastPermit: null,
    metrics: null,
  });
  assert.match(small, /"resources":\{"vCPUs":"1500m","mem":512\}/);
});

Deno.test("plugin request: loadAvg1M is the shortest decimal of its float32", () => {
  assert.equal(JSON.stringify(shortestFloat32(0.42)), "0.42");
  assert.equal(JSON.stringify(shortestFloat32(Math.fround(0.41999998688697815))), "0.42");
  assert.equal(JSON.stringify(shortestFloat32(0.1 + 0.2)), "0.3");
  assert.equal(JSON.stringify(shortestFloat32(16777217)), "16777216");
  assert.equal(JSON.stringify(shortestFloat32(1e-7)), "1e-7");
  assert.equal(JSON.stringify(shortestFloat32(0)), "0");
  assert.equal(JSON.stringify(shortestFloat32(Math.fround(1 / 3))), "0.33333334");
});

Deno.test("plugin request: a load Go could not encode is sent as no metrics", () => {
  const body = encodeAgentRequest({
    protoVersion: 7,
    pod: POD,
    computeUnit: cu(1),
    resources: cu(1),
    lastPermit: null,
    metrics: { loadAvg1M: NaN },
  });
  assert.match(body, /"metrics":null}$/);
});

Deno.test("plugin request: the fake plugin receives exactly the documented request", async () => {
  await withPlugin(async (plugin, make) => {
    const { client, log } = make();
    const first = await client.request(null, cu(2), null, new AbortController().signal);
    assert.deepEqual(first, { code: "200", ok: true, value: { permit: cu(2) } });
    const second = await client.request(
      cu(2),
      cu(3),
      { loadAvg1M: Math.fround(1.37) },
      new AbortController().signal,
    );
    assert.deepEqual(second, { code: "200", ok: true, value: { permit: cu(3) } });

    const [r1, r2] = plugin.requests;
    assert.deepEqual(
      { method: r1.method, path: r1.path, type: r1.contentType, raw: r1.raw, status: r1.status },
      { method: "POST", path: "/", type: "application/json", raw: FIRST_REQUEST, status: 200 },
    );
    assert.equal(r2.raw, UPSCALE_REQUEST);
    assert.deepEqual(r2.request?.metrics, { loadAvg1M: Math.fround(1.37) });
    assert.deepEqual(log.messages(), ["plugin response", "plugin response"]);
  });
});

Deno.test("plugin request: a partial grant is returned and logged at warn", async () => {
  await withPlugin(async (plugin, make) => {
    plugin.setGrant({ cpu: 1, mem: 0 });
    const { client, log } = make();
    const result = await client.request(cu(1), cu(3), null, new AbortController().signal);
    assert.deepEqual(result, {
      code: "200",
      ok: true,
      value: { permit: { vCPU: 750, mem: GiB } },
    });
    assert.deepEqual(log.messages(), ["plugin permit below requested resources"]);
  });
});

Deno.test("plugin request: migrate is accepted, passed on, and logged once per client", async () => {
  await withPlugin(async (plugin, make) => {
    plugin.setMigrate(true);
    const { client, log } = make();
    for (let i = 0; i < 2; i++) {
      const result = await client.request(null, cu(1), null, new AbortController().signal);
      assert.deepEqual(result, { code: "200", ok: true, value: { permit: cu(1), migrate: {} } });
    }
    assert.deepEqual(log.messages("debug"), [
      "plugin response asks to migrate the VM; ignored",
      "plugin response",
      "plugin response",
    ]);
  });
});

Deno.test("plugin request: error statuses fail with the status as code and the body", async () => {
  await withPlugin(async (plugin, make) => {
    const { client, log } = make();
    plugin.setFault({ kind: "status", status: 500, body: "timed out waiting for updates" });
    const result = await client.request(null, cu(1), null, new AbortController().signal);
    assert.equal(result.code, "500");
    assert.ok(!result.ok);
    assert.equal(
      result.error.message,
      'received response status 500 body "timed out waiting for updates"',
    );
    assert.deepEqual(log.messages("error"), ["plugin request failed"]);
    assert.equal(log.lines[0].fields.code, "500");

    plugin.setFault(undefined);
    plugin.removePod(POD.namespace, POD.name);
    const unknown = await client.request(null, cu(1), null, new AbortController().signal);
    assert.equal(unknown.code, "404");
    assert.ok(!unknown.ok && /pod not found/.test(unknown.error.message));
  });
});

Deno.test("plugin request: the plugin's version check answers 400", async () => {
  await withPlugin(async (plugin) => {
    const body = FIRST_REQUEST.replace('"protoVersion":7', '"protoVersion":6');
    const result = await postAgentRequest(plugin.url, body, 2000, new AbortController().signal);
    assert.equal(result.code, "400");
    assert.ok(!result.ok);
    assert.match(result.error.message, /expected v5\.0 \(7\), got v4\.0 \(6\)/);
  });
});

Deno.test("plugin request: a body over the plugin's 1 KiB read limit is bad JSON", async () => {
  await withPlugin(async (plugin, make) => {
    const pod = { namespace: "default", name: "x".repeat(1100) };
    plugin.registerPod(pod.namespace, pod.name);
    const { client } = make({ pod });
    const result = await client.request(null, cu(1), null, new AbortController().signal);
    assert.equal(result.code, "400");
    assert.ok(!result.ok);
    assert.equal(result.error.message, 'received response status 400 body "bad JSON"');
  });
});

Deno.test("plugin request: a 200 with a body that is not a response fails with code 200", async () => {
  await withPlugin(async (plugin, make) => {
    plugin.setFault({ kind: "malformedJson" });
    const { client } = make();
    const result = await client.request(null, cu(1), null, new AbortController().signal);
    assert.equal(result.code, "200");
    assert.ok(!result.ok);
    assert.match(result.error.message, /^bad JSON response: /);
  });
});

Deno.test("plugin request: transport failures are coded by their root cause", async (t) => {
  await t.step("no scheduler known", async () => {
    const client = new SchedulerPluginClient({
      scheduler: () => null,
      port: 10299,
      timeoutMs: 1000,
      pod: POD,
      computeUnit: cu(1),
    });
    const result = await client.request(null, cu(1), null, new AbortController().signal);
    assert.equal(
      result.code,
      "[error doing request: no known ready scheduler to send request to]",
    );
    assert.ok(!result.ok);
  });

  await t.step("connection refused", async () => {
    await withPlugin(async (plugin, make) => {
      const { client } = make();
      await plugin.stop();
      const result = await client.request(null, cu(1), null, new AbortController().signal);
      assert.match(result.code, /^\[error doing request: .*Connection refused.*\]$/);
      assert.doesNotMatch(result.code, /127\.0\.0\.1/, "no address in the label");
      assert.ok(!result.ok && result.error.message.startsWith("error doing request: "));
    });
  });

  await t.step("timeout", async () => {
    await withPlugin(async (plugin, make) => {
      plugin.setLatency(2000);
      const { client } = make({ timeoutMs: 100 });
      const started = Date.now();
      const result = await client.request(null, cu(1), null, new AbortController().signal);
      assert.ok(Date.now() - started < 1000);
      assert.equal(result.code, "[error doing request: context deadline exceeded]");
    });
  });

  await t.step("cancelled by the Runner's scope", async () => {
    await withPlugin(async (plugin, make) => {
      plugin.setLatency(2000);
      const { client } = make();
      const scope = new AbortController();
      setTimeout(() => scope.abort(), 50);
      const result = await client.request(null, cu(1), null, scope.signal);
      assert.equal(result.code, "[error doing request: context canceled]");
    });
  });
});

Deno.test("plugin request: an oversized response body fails after the status", async () => {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response("x".repeat(MAX_RESPONSE_BYTES + 1)),
  );
  try {
    const url = `http://${hostPort("127.0.0.1", server.addr.port)}/`;
    const result = await postAgentRequest(url, FIRST_REQUEST, 2000, new AbortController().signal);
    assert.equal(result.code, "200");
    assert.ok(!result.ok);
    assert.match(result.error.message, /^error reading response body: response body larger than/);
  } finally {
    await server.shutdown();
  }
});

Deno.test("plugin response: numbers and quantity strings both decode", () => {
  const expect = { response: { permit: { vCPU: 500, mem: 2 * GiB } }, migrate: false };
  assert.deepEqual(decodePluginResponse('{"permit":{"vCPUs":"500m","mem":"2Gi"}}'), expect);
  assert.deepEqual(decodePluginResponse('{"permit":{"vCPUs":0.5,"mem":2147483648}}'), expect);
  assert.deepEqual(decodePluginResponse('{"permit":{"vCPUs":"0.5","mem":"2147483648"}}'), expect);
  assert.deepEqual(
    decodePluginResponse('{"permit":{"vCPUs":1,"mem":"4Gi"},"migrate":{},"future":[1]}'),
    { response: { permit: { vCPU: 1000, mem: 4 * GiB } }, migrate: true },
  );
  assert.equal(
    decodePluginResponse('{"permit":{"vCPUs":1,"mem":512},"migrate":null}').migrate,
    false,
  );
});

Deno.test("plugin response: malformed responses are rejected with the reason", () => {
  for (
    const [body, reason] of [
      ["", /bad JSON response: .*JSON/],
      ["[]", /bad JSON response: .*object/],
      ['{"migrate":{}}', /permit/],
      ['{"permit":{"vCPUs":"lots","mem":"1Gi"}}', /permit\.vCPUs: invalid quantity "lots"/],
      ['{"permit":{"vCPUs":1,"mem":-5}}', /permit\.mem: .*negative/],
      ['{"permit":{"vCPUs":1,"mem":{}}}', /permit\.mem: expected a quantity/],
      ['{"permit":{"vCPUs":1,"mem":"1Gi"},"migrate":true}', /migrate/],
    ] as const
  ) {
    assert.throws(() => decodePluginResponse(body), reason, body);
  }
});

Deno.test("plugin request: IPv6 addresses are bracketed", () => {
  assert.equal(hostPort("fd00::5", 10299), "[fd00::5]:10299");
  assert.equal(hostPort("10.0.0.5", 10299), "10.0.0.5:10299");
});

/**
 * An HTTP/1.1 keep-alive server over raw TCP that answers every request with a fixed permit and
 * counts the connections the client keeps open.
 */
function countingServer(answerDelayMs: number) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  const body = JSON.stringify({ permit: { vCPUs: 1, mem: 4 * GiB } });
  const response = new TextEncoder().encode(
    `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
  );
  const serve = async (conn: Deno.Conn) => {
    open.add(conn);
    const buf = new Uint8Array(64 * 1024);
    let pending = "";
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        pending += new TextDecoder().decode(buf.subarray(0, n));
        // Requests carry a content-length body: answer once headers and body are in.
        for (;;) {
          const end = pending.indexOf("\r\n\r\n");
          if (end < 0) break;
          const length = Number(/content-length: (\d+)/i.exec(pending.slice(0, end))?.[1] ?? 0);
          if (pending.length < end + 4 + length) break;
          pending = pending.slice(end + 4 + length);
          await new Promise((r) => setTimeout(r, answerDelayMs));
          await conn.write(response);
        }
      }
    } catch {
      // The client went away.
    } finally {
      // Closed here, or already by close() below.
      if (open.delete(conn)) conn.close();
    }
  };
  const accepting = (async () => {
    try {
      for await (const conn of listener) serve(conn);
    } catch {
      // Closed.
    }
  })();
  return {
    url: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}/`,
    get open() {
      return open.size;
    },
    async close() {
      listener.close();
      for (const conn of open) conn.close();
      open.clear();
      await accepting;
    },
  };
}

Deno.test("plugin client pool: a burst of requests leaves at most a handful of connections open", async () => {
  const server = countingServer(20);
  const http = pluginHttpClient();
  try {
    const body = JSON.stringify({ any: "request" });
    const signal = new AbortController().signal;
    const results = await Promise.all(
      Array.from({ length: 60 }, () => postAgentRequest(server.url, body, 5000, signal, http)),
    );
    assert.ok(results.every((r) => r.ok), "every request answered");
    await until(() => server.open <= PLUGIN_IDLE_CONNECTIONS, 2000, "idle connections closed");
    assert.ok(server.open > 0, "some connections are kept for the next requests");
  } finally {
    http.close();
    await server.close();
  }
});
