import type { VirtualClock } from "../../lib/virtual_clock.ts";
import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { jsonArrayBody } from "../../billing/reporting/batch.ts";
import { type PipelineOptions, ReportingPipeline } from "../../billing/reporting/pipeline.ts";
import { SendFailure } from "../../billing/reporting/transport.ts";
import {
  advance,
  constantRandom,
  exists,
  fakeClient,
  FakeTransport,
  makeEvent,
  metric,
  readBatchFile,
  recordingLog,
  reportingClock,
  spoolFile,
  tick,
} from "./reporting_helpers.ts";

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const events = (from: number, n: number) =>
  Array.from({ length: n }, (_, i) => makeEvent(from + i));
const body = (from: number, n: number) => text(jsonArrayBody(events(from, n)));

interface Setup {
  scheduler: VirtualClock;
  transport: FakeTransport;
  registry: Registry;
  pipeline: ReportingPipeline;
  dir: string;
}

async function withPipeline(
  options: Partial<PipelineOptions> & { maxBatchSize?: number; pushEveryMs?: number },
  fn: (s: Setup) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "sender-test-" });
  const scheduler = reportingClock();
  const transport = new FakeTransport(scheduler);
  const registry = new Registry();
  const pipeline = new ReportingPipeline({
    kind: "billing",
    clients: [
      fakeClient(transport, {
        maxBatchSize: options.maxBatchSize ?? 5,
        pushEveryMs: options.pushEveryMs ?? 10_000,
      }),
    ],
    spoolDir: dir,
    registry,
    clock: scheduler,
    random: constantRandom(0),
    log: recordingLog(),
    ...options,
  });
  try {
    await fn({ scheduler, transport, registry, pipeline, dir });
  } finally {
    await pipeline.stop({ deadlineMs: 0 });
    await Deno.remove(dir, { recursive: true });
  }
}

const fail = (label = "HTTP code 500", permanent = false) => () => {
  throw new SendFailure(label, permanent);
};

Deno.test("sender: a partial batch goes out P after start, a full one at once", async () => {
  await withPipeline({}, async ({ scheduler, transport, pipeline }) => {
    pipeline.start();
    pipeline.enqueueAll(events(0, 2));
    await advance(scheduler, pipeline, 9_999);
    assert.equal(transport.attempts.length, 0);
    await advance(scheduler, pipeline, 1);
    assert.deepEqual(transport.bodies, [body(0, 2)]);
    pipeline.enqueueAll(events(2, 5));
    await advance(scheduler, pipeline, 0);
    assert.deepEqual(transport.bodies, [body(0, 2), body(2, 5)]);
    assert.equal(transport.attempts[1].at, scheduler.now(), "without waiting for the timer");
  });
});

Deno.test("sender: every completion restarts the push period, as the reference", async () => {
  await withPipeline({}, async ({ scheduler, transport, pipeline }) => {
    pipeline.start();
    pipeline.enqueue(makeEvent(0));
    await advance(scheduler, pipeline, 6_000);
    pipeline.enqueueAll(events(1, 5)); // completes [0..4], leaves 5 in the ongoing batch
    await advance(scheduler, pipeline, 9_000);
    assert.deepEqual(transport.bodies, [body(0, 5)]);
    await advance(scheduler, pipeline, 1_000);
    assert.deepEqual(transport.bodies, [body(0, 5), body(5, 1)]);
  });
});

Deno.test("sender: failures are retried on a timer with doubling back-off capped at P", async () => {
  await withPipeline({}, async ({ scheduler, transport, pipeline, registry }) => {
    transport.respond = fail();
    pipeline.start();
    pipeline.enqueueAll(events(0, 5));
    const start = scheduler.now();
    await advance(scheduler, pipeline, 40_000);
    // No new events arrive: unlike the reference, the timer alone retries.
    assert.deepEqual(
      transport.attempts.map((a) => a.at - start),
      [0, 1_000, 3_000, 7_000, 15_000, 25_000, 35_000],
    );
    assert.equal(
      await metric(registry, "autoscaling_agent_billing_send_errors_total", {
        client: "http",
        cause: "HTTP code 500",
      }),
      7,
    );
    assert.equal(
      await metric(registry, "autoscaling_agent_billing_last_send_duration_seconds"),
      0,
    );
    assert.equal(await metric(registry, "autoscaling_agent_billing_queue_size"), 5);
    transport.respond = () => {};
    await advance(scheduler, pipeline, 10_000);
    assert.equal(transport.attempts.length, 8);
    assert.ok(transport.attempts.every((a) => a.body === body(0, 5)), "the same bytes each time");
    assert.equal(await metric(registry, "autoscaling_agent_billing_queue_size"), 0);
  });
});

Deno.test("sender: the back-off is jittered downwards by up to 20%", async () => {
  await withPipeline({ random: constantRandom(1) }, async ({ scheduler, transport, pipeline }) => {
    transport.respond = fail();
    pipeline.start();
    pipeline.enqueueAll(events(0, 5));
    const start = scheduler.now();
    await advance(scheduler, pipeline, 6_000);
    assert.deepEqual(transport.attempts.map((a) => a.at - start), [0, 800, 2_400, 5_600]);
  });
});

Deno.test("sender: batches behind a failing one wait and then go in FIFO order", async () => {
  await withPipeline({}, async ({ scheduler, transport, pipeline }) => {
    transport.respond = (_, attempt) => {
      if (attempt <= 3) throw new SendFailure("HTTP code 503", false);
    };
    pipeline.start();
    pipeline.enqueueAll(events(0, 15));
    await advance(scheduler, pipeline, 10_000);
    assert.deepEqual(transport.bodies, [
      body(0, 5),
      body(0, 5),
      body(0, 5),
      body(0, 5),
      body(5, 5),
      body(10, 5),
    ]);
  });
});

Deno.test("sender: clients are independent", async () => {
  const dir = await Deno.makeTempDir();
  const scheduler = reportingClock();
  const down = new FakeTransport(scheduler);
  down.respond = fail("S3 error");
  const up = new FakeTransport(scheduler);
  const pipeline = new ReportingPipeline({
    kind: "billing",
    clients: [fakeClient(down, { name: "s3" }), fakeClient(up, { name: "azureblob" })],
    spoolDir: dir,
    registry: new Registry(),
    clock: scheduler,
  });
  pipeline.start();
  for (let i = 0; i < 20; i++) {
    pipeline.enqueue(makeEvent(i));
    await advance(scheduler, pipeline, 1_000);
  }
  await advance(scheduler, pipeline, 10_000);
  assert.equal(up.attempts.reduce((n, a) => n + a.batch.count, 0), 20);
  assert.equal(pipeline.stats()[1].queuedEvents, 0);
  assert.equal(pipeline.stats()[0].queuedEvents, 20);
  await pipeline.stop({ deadlineMs: 0 });
  await Deno.remove(dir, { recursive: true });
});

Deno.test("sender: a batch failing permanently K times is quarantined; newer ones go", async () => {
  await withPipeline(
    { retry: { quarantineAfter: 3 } },
    async ({ scheduler, transport, pipeline, registry, dir }) => {
      const poison = body(0, 5);
      const kinds = ["permanent", "transient", "permanent", "permanent", "permanent"];
      let poisonAttempts = 0;
      transport.respond = (batch) => {
        if (text(batch.body) !== poison) return;
        const permanent = kinds[poisonAttempts++] === "permanent";
        throw new SendFailure(permanent ? "HTTP code 400" : "HTTP code 502", permanent);
      };
      pipeline.start();
      pipeline.enqueueAll(events(0, 10));
      await advance(scheduler, pipeline, 30_000);
      // A transient failure resets the count: 1, 0, 1, 2, 3.
      assert.equal(poisonAttempts, 5);
      assert.deepEqual(transport.bodies.filter((b) => b !== poison), [body(5, 5)]);
      const dead = `${dir}/billing/http/dead/000000000001.batch`;
      assert.ok(exists(dead));
      assert.equal(text(readBatchFile(dead).body), poison, "kept for a manual replay");
      assert.ok(!exists(spoolFile(dir, 1, "batch")));
      assert.equal(
        await metric(registry, "autoscaling_agent_billing_quarantined_batches_total"),
        1,
      );
      assert.equal(await metric(registry, "autoscaling_agent_billing_dead_batches"), 1);
      assert.equal(await metric(registry, "autoscaling_agent_billing_queue_size"), 0);
    },
  );
});

Deno.test("sender: stop completes the ongoing batch and makes a final pass", async () => {
  await withPipeline({}, async ({ transport, pipeline, registry }) => {
    pipeline.start();
    pipeline.enqueueAll(events(0, 2));
    await pipeline.stop();
    assert.deepEqual(transport.bodies, [body(0, 2)]);
    assert.equal(await metric(registry, "autoscaling_agent_billing_queue_size"), 0);
  });
});

Deno.test("sender: an empty final pass sets the duration to 1e-6", async () => {
  await withPipeline({}, async ({ pipeline, registry }) => {
    assert.equal(await metric(registry, "autoscaling_agent_billing_queue_size"), 0);
    assert.equal(
      await metric(registry, "autoscaling_agent_billing_last_send_duration_seconds"),
      undefined,
      "appears only once set",
    );
    pipeline.start();
    await pipeline.stop();
    assert.equal(
      await metric(registry, "autoscaling_agent_billing_last_send_duration_seconds"),
      1e-6,
    );
  });
});

Deno.test("sender: the shutdown deadline cancels attempts; the batch stays spooled", async () => {
  await withPipeline(
    { pushEveryMs: 60_000 },
    async ({ scheduler, transport, pipeline, dir }) => {
      // Hangs until its attempt is cancelled.
      transport.respond = (_batch, _attempt, signal) =>
        new Promise((_, reject) => {
          signal.addEventListener("abort", () => reject(signal.reason), { once: true });
        });
      pipeline.start();
      pipeline.enqueueAll(events(0, 3));
      const stopped = pipeline.stop({ deadlineMs: 5_000 });
      await tick();
      assert.equal(transport.attempts.length, 1);
      await scheduler.advance(5_000);
      await stopped;
      assert.equal(pipeline.stats()[0].queuedEvents, 3);
      assert.ok(exists(spoolFile(dir, 1, "batch")));
    },
  );
});

Deno.test("metrics: both pipelines share a registry under their own prefixes", async () => {
  const dir = await Deno.makeTempDir();
  const scheduler = reportingClock();
  const registry = new Registry();
  const down = new FakeTransport(scheduler);
  down.respond = fail("S3 error");
  const open = (kind: "billing" | "scalingevents", names: ("http" | "s3" | "azureblob")[]) =>
    new ReportingPipeline({
      kind,
      clients: names.map((name) => fakeClient(down, { name, maxBatchSize: 2 })),
      spoolDir: dir,
      registry,
      clock: scheduler,
    });
  const billing = open("billing", ["http", "azureblob", "s3"]);
  const scaling = open("scalingevents", ["azureblob", "s3"]);
  const names = (await registry.getMetricsAsJSON()).map((m) => `${m.name} ${m.type}`);
  for (const p of ["billing", "scalingevents"]) {
    for (
      const family of [
        "queue_size gauge",
        "last_send_duration_seconds gauge",
        "send_errors_total counter",
        "spool_bytes gauge",
        "spool_oldest_batch_age_seconds gauge",
        "spool_cap_reached gauge",
        "quarantined_batches_total counter",
        "dead_batches gauge",
        "spool_write_errors_total counter",
      ]
    ) {
      assert.ok(names.includes(`autoscaling_agent_${p}_${family}`), `${p} ${family}`);
    }
  }
  const q = (p: string, client: string) =>
    metric(registry, `autoscaling_agent_${p}_queue_size`, { client });
  assert.deepEqual(
    await Promise.all([q("billing", "http"), q("billing", "azureblob"), q("billing", "s3")]),
    [0, 0, 0],
  );
  assert.equal(await q("scalingevents", "s3"), 0);
  assert.equal(await q("scalingevents", "http"), undefined);

  scaling.enqueueAll(events(0, 3));
  await scheduler.advance(90_000);
  assert.equal(await q("scalingevents", "s3"), 3);
  assert.equal(
    await metric(registry, "autoscaling_agent_scalingevents_spool_oldest_batch_age_seconds", {
      client: "s3",
    }),
    90,
  );
  const bytes = await metric(registry, "autoscaling_agent_scalingevents_spool_bytes", {
    client: "s3",
  });
  assert.equal(bytes, scaling.stats()[1].spoolBytes);
  assert.ok(bytes! > 0);
  await billing.stop({ deadlineMs: 0 });
  await scaling.stop({ deadlineMs: 0 });
  await Deno.remove(dir, { recursive: true });
});
