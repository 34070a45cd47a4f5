import assert from "node:assert/strict";
import net from "node:net";
import { hostPort } from "../../agent/http/outcome.ts";
import {
  MAX_RESPONSE_BYTES,
  PLUGIN_IDLE_CONNECTIONS,
  PluginHttpPool,
} from "../../agent/plugin/http_pool.ts";
import { systemClock } from "../../lib/clock.ts";
import {
  decodePluginResponse,
  encodeAgentRequest,
  PLUGIN_PROTO_VERSION,
  postAgentRequest,
  SchedulerPluginClient,
  type SchedulerPluginClientOptions,
  shortestFloat32,
} from "../../agent/plugin/request.ts";
import { SchedulerPlugin } from "../../sim/plugin/scheduler_plugin.ts";
import { cu, GiB } from "../core/helpers.ts";
import { recordingLog } from "../support/log.ts";
import { waitFor } from "../support/wait.ts";

const POD = { namespace: "default", name: "example-x7k2p" };

// The reference's request, byte for byte (docs/wire.md).
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
    pool: PluginHttpPool,
  ) => Promise<void>,
): Promise<void> {
  const plugin = new SchedulerPlugin({ hostname: "127.0.0.1", port: 0 });
  plugin.start();
  plugin.registerPod(POD.namespace, POD.name);
  const pool = new PluginHttpPool(systemClock);
  try {
    await fn(plugin, (opts = {}) => {
      const log = recordingLog();
      const client = new SchedulerPluginClient({
        scheduler: () => "127.0.0.1",
        port: plugin.port,
        timeoutMs: 2000,
        pod: POD,
        computeUnit: cu(1),
        http: pool,
        log,
        ...opts,
      });
      return { client, log };
    }, pool);
  } finally {
    pool.close();
    await plugin.stop();
  }
}

/** Runs `fn` with a pool, and closes it. */
async function withPool<T>(fn: (pool: PluginHttpPool) => Promise<T>): Promise<T> {
  const pool = new PluginHttpPool(systemClock);
  try {
    return await fn(pool);
  } finally {
    pool.close();
  }
}

const never = new AbortController().signal;

Deno.test("plugin request: the body matches the reference's byte for byte", () => {
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
  await withPlugin(async (plugin, _make, pool) => {
    const body = FIRST_REQUEST.replace('"protoVersion":7', '"protoVersion":6');
    const result = await postAgentRequest(plugin.url, body, 2000, never, pool);
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
    await withPool(async (http) => {
      const client = new SchedulerPluginClient({
        scheduler: () => null,
        port: 10299,
        timeoutMs: 1000,
        pod: POD,
        computeUnit: cu(1),
        http,
      });
      const result = await client.request(null, cu(1), null, new AbortController().signal);
      assert.equal(
        result.code,
        "[error doing request: no known ready scheduler to send request to]",
      );
      assert.ok(!result.ok);
    });
  });

  await t.step("connection refused", async () => {
    await withPlugin(async (plugin, make) => {
      const { client } = make();
      await plugin.stop();
      const result = await client.request(null, cu(1), null, new AbortController().signal);
      // What the reference's Go client says.
      assert.equal(result.code, "[error doing request: connection refused]");
      assert.ok(!result.ok);
      assert.equal(result.error.message, "error doing request: connection refused");
    });
  });

  await t.step("timeout", async () => {
    await withPlugin(async (plugin, make) => {
      plugin.setLatency(2000);
      const { client } = make({ timeoutMs: 100 });
      const result = await client.request(null, cu(1), null, new AbortController().signal);
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
    await withPool(async (pool) => {
      const url = `http://${hostPort("127.0.0.1", server.addr.port)}/`;
      const result = await postAgentRequest(url, FIRST_REQUEST, 2000, never, pool);
      assert.equal(result.code, "200");
      assert.ok(!result.ok);
      assert.equal(
        result.error.message,
        `error reading response body: response body larger than ${MAX_RESPONSE_BYTES} bytes`,
      );
    });
  } finally {
    await server.shutdown();
  }
});

/**
 * A TCP server that hands every connection, once the request arrived, to `answer`, which owns
 * it from there; for answers an HTTP server would not give.
 */
async function withRawPlugin<T>(
  answer: (conn: Deno.TcpConn) => void | Promise<void>,
  fn: (url: string) => Promise<T>,
): Promise<T> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const handlers: Promise<void>[] = [];
  const accepting = (async () => {
    for await (const conn of listener) {
      handlers.push((async () => {
        try {
          await conn.read(new Uint8Array(64 * 1024));
          await answer(conn);
        } catch {
          // The client went away.
        }
      })());
    }
  })().catch(() => {});
  try {
    return await fn(`http://127.0.0.1:${listener.addr.port}/`);
  } finally {
    listener.close();
    await accepting;
    await Promise.all(handlers);
  }
}

function write(conn: Deno.Conn, text: string): Promise<number> {
  return conn.write(new TextEncoder().encode(text));
}

const post = (url: string) =>
  withPool((pool) => postAgentRequest(url, FIRST_REQUEST, 2000, never, pool));

Deno.test("plugin request: broken connections are coded in the reference's (Go's) words", async (t) => {
  await t.step("closed before an answer: EOF", async () => {
    const result = await withRawPlugin((conn) => conn.close(), post);
    assert.equal(result.code, "[error doing request: EOF]");
    assert.ok(!result.ok);
    assert.equal(result.error.message, "error doing request: EOF");
  });

  await t.step("reset: the system's message, lower-cased", async () => {
    const server = net.createServer((socket) => {
      socket.once("data", () => socket.resetAndDestroy());
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const result = await post(
        `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/`,
      );
      assert.equal(result.code, "[error doing request: connection reset by peer]");
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  await t.step("cut short in the body: the status, and Go's body error", async () => {
    const result = await withRawPlugin(async (conn) => {
      await write(conn, "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{}");
      conn.close();
    }, post);
    assert.equal(result.code, "200");
    assert.ok(!result.ok);
    assert.equal(
      result.error.message,
      "error reading response body: unexpected EOF",
    );
  });

  await t.step("a malformed head: this client's own words", async () => {
    const result = await withRawPlugin(async (conn) => {
      await write(conn, "nonsense\r\n\r\n");
      conn.close();
    }, post);
    assert.equal(result.code, '[error doing request: malformed HTTP status line "nonsense"]');
  });
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
 * counts the connections the client opened and keeps open.
 */
function countingServer(answerDelayMs: number) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  let accepted = 0;
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
      for await (const conn of listener) {
        accepted++;
        serve(conn);
      }
    } catch {
      // Closed.
    }
  })();
  return {
    url: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}/`,
    get open() {
      return open.size;
    },
    get accepted() {
      return accepted;
    },
    async close() {
      listener.close();
      for (const conn of open) conn.close();
      open.clear();
      await accepting;
    },
  };
}

const ANY_BODY = JSON.stringify({ any: "request" });

function pooledPost(url: string, pool: PluginHttpPool, timeoutMs = 2000) {
  return postAgentRequest(url, ANY_BODY, timeoutMs, never, pool);
}

/** Two requests at once, both answered: the pool then holds two connections to `url`. */
async function postTwoAtOnce(url: string, pool: PluginHttpPool): Promise<void> {
  const two = await Promise.all([pooledPost(url, pool), pooledPost(url, pool)]);
  assert.ok(two.every((r) => r.ok));
}

/**
 * With one connection idle and `inFlight` on the other when the pool let go of `server`: the
 * idle one closes at once, the request in flight ends normally and its connection closes after.
 */
async function inFlightOutlivesIdle(
  server: { open: number },
  inFlight: ReturnType<typeof pooledPost>,
): Promise<void> {
  await waitFor(() => server.open === 1, { what: "the idle connection closed", limitMs: 2000 });
  assert.ok((await inFlight).ok, "a request in flight ends normally");
  await waitFor(() => server.open === 0, { what: "its connection closed after it", limitMs: 2000 });
}

Deno.test("plugin client pool: a burst of requests leaves at most a handful of connections open", async () => {
  const server = countingServer(20);
  const pool = new PluginHttpPool(systemClock);
  const burst = (n: number) =>
    Promise.all(
      Array.from({ length: n }, () => pooledPost(server.url, pool, 5000)),
    );
  try {
    const results = await burst(60);
    assert.ok(results.every((r) => r.ok), "every request answered");
    // No cap: no request of the burst waited for another's connection.
    assert.equal(server.accepted, 60);
    await waitFor(() => server.open === PLUGIN_IDLE_CONNECTIONS, {
      what: "idle connections closed",
      limitMs: 2000,
    });
    // The kept ones serve the next requests.
    assert.ok((await burst(PLUGIN_IDLE_CONNECTIONS)).every((r) => r.ok));
    assert.equal(server.accepted, 60);
  } finally {
    pool.close();
    await server.close();
  }
});

Deno.test("plugin client pool: requests one after another share one connection", async () => {
  const server = countingServer(0);
  try {
    await withPool(async (pool) => {
      for (let i = 0; i < 3; i++) {
        assert.ok((await pooledPost(server.url, pool)).ok);
      }
      assert.equal(server.accepted, 1);
      assert.equal(server.open, 1);
    });
  } finally {
    await server.close();
  }
});

Deno.test("plugin client pool: a new scheduler URL closes the old one's connections", async () => {
  const old = countingServer(50);
  const current = countingServer(0);
  try {
    await withPool(async (pool) => {
      await postTwoAtOnce(old.url, pool);
      assert.equal(old.open, 2);
      // When the URL changes, one of them is idle and the other in flight.
      const lateRequest = pooledPost(old.url, pool);
      assert.ok((await pooledPost(current.url, pool)).ok);
      await inFlightOutlivesIdle(old, lateRequest);
      assert.equal(current.open, 1);
    });
  } finally {
    await old.close();
    await current.close();
  }
});

Deno.test("plugin client pool: a failed request leaves no connection behind", async () => {
  const server = countingServer(300);
  try {
    await withPool(async (pool) => {
      const result = await pooledPost(server.url, pool, 50);
      assert.equal(result.code, "[error doing request: context deadline exceeded]");
      await waitFor(() => server.open === 0, { what: "the connection closed", limitMs: 2000 });
      assert.ok((await pooledPost(server.url, pool)).ok);
      assert.equal(server.accepted, 2);
    });
  } finally {
    await server.close();
  }
});

Deno.test("plugin client pool: close() closes idle connections and fails later requests", async () => {
  const server = countingServer(50);
  const pool = new PluginHttpPool(systemClock);
  try {
    await postTwoAtOnce(server.url, pool);
    assert.equal(server.open, 2);
    const inFlight = pooledPost(server.url, pool);
    pool.close();
    await inFlightOutlivesIdle(server, inFlight);
    const late = await pooledPost(server.url, pool);
    assert.equal(late.code, "[error doing request: plugin connection pool closed]");
    assert.equal(server.accepted, 2);
  } finally {
    pool.close();
    await server.close();
  }
});
