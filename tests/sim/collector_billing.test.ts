import assert from "node:assert/strict";
import { BillingCollector, checkEvent } from "../../sim/billing/collector.ts";

let traceCounter = 0;
const traceId = () => `Tr${(++traceCounter).toString().replace(/[01]/g, "x")}abc`;

function event(i: number, n = 4, stop = "2024-04-12T12:10:00.845237402Z") {
  return {
    idempotency_key: `2024-04-12T12:10:00.845237Z-autoscaler-agent-nwcnd-${i}/${n}`,
    metric: "effective_compute_seconds",
    type: "incremental",
    endpoint_id: "ep-example",
    start_time: "2024-04-12T12:09:36.844007537Z",
    stop_time: stop,
    value: 6,
  };
}

async function withCollector(
  fn: (c: BillingCollector) => Promise<void>,
  basePath = "/base",
): Promise<void> {
  const collector = new BillingCollector({ basePath, maxBatchSize: 10 });
  collector.start();
  try {
    await fn(collector);
  } finally {
    await collector.stop();
  }
}

async function send(
  c: BillingCollector,
  body: string | Uint8Array,
  headers: Record<string, string> = {},
  path = "/usage_events",
): Promise<number> {
  const res = await fetch(c.url + path, {
    method: "POST",
    headers: { "content-type": "application/json", "x-trace-id": traceId(), ...headers },
    body: body as BodyInit,
  });
  await res.body?.cancel();
  return res.status;
}

async function gzip(text: string): Promise<Uint8Array> {
  const stream = new Blob([text]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

Deno.test("collector: accepts the agent's plain JSON batch and checks it", async () => {
  await withCollector(async (c) => {
    const body = JSON.stringify({ events: [event(1), event(2)] });
    assert.equal(await send(c, body), 200);
    const [batch] = c.batches;
    assert.equal(batch.path, "/base/usage_events");
    assert.equal(batch.format, "object");
    assert.equal(batch.compressed, false);
    assert.deepEqual(batch.problems, []);
    assert.equal(new TextDecoder().decode(batch.raw), body);
    assert.equal(c.events.length, 2);
    assert.equal(c.events[0].idempotency_key, event(1).idempotency_key);
  });
});

Deno.test("collector: accepts gzip batches, JSON object or JSON Lines", async () => {
  await withCollector(async (c) => {
    const object = await gzip(JSON.stringify({ events: [event(1)] }));
    assert.equal(await send(c, object, { "content-encoding": "gzip" }), 200);
    const lines = await gzip(`${JSON.stringify(event(2))}\n${JSON.stringify(event(3))}\n`);
    assert.equal(await send(c, lines), 200);
    assert.deepEqual(
      c.batches.map((b) => [b.compressed, b.format, b.problems.length]),
      [[true, "object", 0], [true, "ndjson", 0]],
    );
    assert.equal(c.events.length, 3);
  });
});

Deno.test("collector: deduplicates by idempotency key across batches", async () => {
  await withCollector(async (c) => {
    const body = JSON.stringify({ events: [event(1), event(2)] });
    await send(c, body);
    await send(c, body);
    await send(c, JSON.stringify({ events: [event(2), event(3)] }));
    assert.equal(c.events.length, 3);
    assert.equal(c.duplicates, 3);
    assert.deepEqual(c.batches.map((b) => b.duplicates), [0, 2, 1]);
  });
});

Deno.test("collector: fails with 500 for a while, committing nothing meanwhile", async () => {
  await withCollector(async (c) => {
    c.failFor(150);
    const body = JSON.stringify({ events: [event(1)] });
    assert.equal(await send(c, body), 500);
    assert.equal(c.events.length, 0);
    assert.equal(c.batches[0].committed, false);
    await new Promise((r) => setTimeout(r, 160));
    assert.equal(await send(c, body), 200);
    assert.equal(c.events.length, 1);
    assert.equal(c.duplicates, 0);
  });
});

Deno.test("collector: scripted statuses per request number", async () => {
  await withCollector(async (c) => {
    c.script({ status: 204, when: ({ number }) => number === 1 });
    c.script({ status: 400, times: 1 });
    const body = () => JSON.stringify({ events: [event(1)] });
    assert.equal(await send(c, body()), 204);
    assert.equal(await send(c, body()), 400);
    assert.equal(await send(c, body()), 200);
    assert.deepEqual(c.batches.map((b) => b.outcome), [204, 400, 200]);
    assert.deepEqual(c.batches.map((b) => b.committed), [true, false, true]);
  });
});

Deno.test("collector: drops the connection before or after reading the body", async () => {
  await withCollector(async (c) => {
    const body = JSON.stringify({ events: [event(1)] });
    c.dropNext(1, "beforeBody");
    await assert.rejects(send(c, body));
    assert.equal(c.events.length, 0);
    c.dropNext(1, "afterBody");
    await assert.rejects(send(c, body));
    // The ambiguous commit: the collector kept the events, the agent saw a failure.
    assert.equal(c.events.length, 1);
    assert.equal(await send(c, body), 200);
    assert.equal(c.duplicates, 1);
    assert.deepEqual(c.batches.map((b) => b.outcome), ["dropped", "dropped", 200]);
  });
});

Deno.test("collector: latency and redirects", async () => {
  await withCollector(async (c) => {
    c.setLatency(120);
    const started = Date.now();
    assert.equal(await send(c, JSON.stringify({ events: [event(1)] })), 200);
    assert.ok(Date.now() - started >= 110);
    c.clearScript();
    c.script({ redirect: "/elsewhere", times: 1 });
    const res = await fetch(`${c.url}/usage_events`, {
      method: "POST",
      body: "{}",
      redirect: "manual",
    });
    await res.body?.cancel();
    assert.equal(res.status, 307);
    assert.equal(res.headers.get("location"), "/elsewhere");
  });
});

Deno.test("collector: other paths are 404; the base path is honoured", async () => {
  await withCollector(async (c) => {
    assert.equal(await send(c, "{}", {}, "//usage_events"), 404);
    assert.equal(await send(c, "{}", {}, "/usage_events/x"), 404);
  });
});

Deno.test("collector: undecodable bodies are rejected with 400", async () => {
  await withCollector(async (c) => {
    assert.equal(await send(c, "not json"), 400);
    assert.equal(await send(c, '{"events":[],"extra":1}'), 400);
    assert.equal(await send(c, new Uint8Array([0x1f, 0x8b, 1, 2, 3])), 400);
    assert.equal(c.events.length, 0);
    assert.ok(c.batches.every((b) => b.problems.length > 0));
  });
});

Deno.test("collector: reports deviations from the agent's format", async () => {
  await withCollector(async (c) => {
    const { metric, ...rest } = event(1);
    const shuffled = { metric, ...rest };
    const badTime = { ...event(2, 4, "2024-04-12T12:10:00.845237400Z") };
    await send(c, JSON.stringify({ events: [shuffled, badTime, badTime] }), {
      "content-type": "text/plain",
      "x-trace-id": "",
    });
    const problems = c.batches[0].problems.join("\n");
    assert.match(problems, /content-type is "text\/plain"/);
    assert.match(problems, /x-trace-id "" is not a short id/);
    assert.match(problems, /event 0: keys are metric,idempotency_key/);
    assert.match(problems, /event 1: stop_time .* is not an RFC 3339 UTC timestamp/);
    assert.match(problems, /event 2: idempotency key repeated in the batch/);

    const reused = traceId();
    await send(c, JSON.stringify({ events: [event(3)] }), { "x-trace-id": reused });
    await send(c, JSON.stringify({ events: [event(3)] }), { "x-trace-id": reused });
    assert.match(c.batches[2].problems.join(), /already used/);
    const many = Array.from({ length: 11 }, (_, i) => event(i + 1, 22));
    await send(c, JSON.stringify({ events: many }));
    assert.match(c.batches[3].problems.join(), /11 events, expected 1\.\.10/);
  });
});

Deno.test("collector: event checks follow the billing event format", () => {
  assert.deepEqual(checkEvent(event(1)), []);
  assert.deepEqual(checkEvent({ ...event(1), stop_time: "2024-04-12T12:10:00.845237Z" }), []);
  assert.match(
    checkEvent({ ...event(1), stop_time: "2024-04-12T12:10:01Z" }).join(),
    /not stop_time truncated/,
  );
  assert.match(checkEvent({ ...event(1), value: -1 }).join(), /non-negative integer/);
  assert.match(checkEvent({ ...event(1), value: 1.5 }).join(), /non-negative integer/);
  assert.match(checkEvent({ ...event(1), type: "absolute" }).join(), /type is "absolute"/);
  assert.match(
    checkEvent({ ...event(1), idempotency_key: "2024-04-12T12:10:00.845237Z-host-5/4" }).join(),
    /out of range/,
  );
  // Hostnames contain dashes: the key splits from the right.
  assert.deepEqual(
    checkEvent({
      ...event(1),
      idempotency_key: "2024-04-12T12:10:00Z-a-b-c-1/2",
      stop_time: "2024-04-12T12:10:00.0000004Z",
    }),
    [],
  );
});

Deno.test("collector: stop closes idle keep-alive connections", async () => {
  const c = new BillingCollector();
  c.start();
  assert.equal(await send(c, JSON.stringify({ events: [event(1)] })), 200);
  await c.stop();
  await assert.rejects(send(c, "{}"));
});

Deno.test("collector: reads chunked request bodies", async () => {
  await withCollector(async (c) => {
    const text = JSON.stringify({ events: [event(1), event(2)] });
    const body = new Blob([text]).stream();
    const res = await fetch(`${c.url}/usage_events`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-trace-id": traceId() },
      body,
    });
    await res.body?.cancel();
    assert.equal(res.status, 200);
    assert.equal(c.batches[0].headers["transfer-encoding"], "chunked");
    assert.equal(c.events.length, 2);
  });
});
