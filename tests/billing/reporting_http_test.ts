import type { VirtualClock } from "../../lib/virtual_clock.ts";
import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { BillingCollector } from "../../sim/billing/collector.ts";
import { jsonArrayBody } from "../../billing/reporting/batch.ts";
import { billingClients, openReportingPipelines } from "../../billing/reporting/clients.ts";
import { type PipelineOptions, ReportingPipeline } from "../../billing/reporting/pipeline.ts";
import {
  advance,
  constantRandom,
  exists,
  keyOf,
  makeEvent,
  metric,
  recordingLog,
  reportingClock,
} from "./reporting_helpers.ts";

const events = (from: number, n: number) =>
  Array.from({ length: n }, (_, i) => makeEvent(from + i));
const SHORT_ID = /^[2-9A-HJ-NP-Za-km-z]{1,22}$/;

interface Setup {
  collector: BillingCollector;
  scheduler: VirtualClock;
  registry: Registry;
  pipeline: ReportingPipeline;
  dir: string;
}

async function withCollector(
  options: Partial<PipelineOptions> & {
    maxBatchSize?: number;
    url?: (collector: BillingCollector) => string;
    timeoutSeconds?: number;
  },
  fn: (s: Setup) => Promise<void>,
): Promise<void> {
  const collector = new BillingCollector({ basePath: "/base", maxBatchSize: 100 });
  collector.start();
  const dir = await Deno.makeTempDir({ prefix: "http-test-" });
  const scheduler = reportingClock();
  const registry = new Registry();
  const pipeline = new ReportingPipeline({
    kind: "billing",
    clients: billingClients({
      http: {
        url: options.url?.(collector) ?? collector.url,
        pushEverySeconds: 10,
        pushRequestTimeoutSeconds: options.timeoutSeconds ?? 5,
        maxBatchSize: options.maxBatchSize ?? 3,
      },
    }),
    spoolDir: dir,
    registry,
    clock: scheduler,
    random: constantRandom(0),
    log: recordingLog(),
    ...options,
  });
  try {
    await fn({ collector, scheduler, registry, pipeline, dir });
  } finally {
    await pipeline.stop({ deadlineMs: 0 });
    await collector.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

const errors = (registry: Registry, cause: string) =>
  metric(registry, "autoscaling_agent_billing_send_errors_total", { client: "http", cause });

Deno.test("http: POSTs the exact JSON body to <url>/usage_events with the agent's headers", async () => {
  await withCollector({}, async ({ collector, scheduler, pipeline }) => {
    pipeline.start();
    pipeline.enqueueAll(events(0, 3));
    await advance(scheduler, pipeline, 0);
    assert.equal(collector.batches.length, 1);
    const [batch] = collector.batches;
    assert.equal(batch.method, "POST");
    assert.equal(batch.path, "/base/usage_events");
    assert.equal(batch.headers["content-type"], "application/json");
    assert.match(batch.headers["x-trace-id"], SHORT_ID);
    assert.equal(batch.headers["content-encoding"], undefined);
    assert.deepEqual(batch.raw, jsonArrayBody(events(0, 3)));
    assert.deepEqual(batch.problems, []);
    assert.equal(batch.outcome, 200);
    assert.deepEqual(collector.events.map((e) => e.idempotency_key), events(0, 3).map(keyOf));
  });
});

Deno.test("http: 200, 201, 202 and 204 all count as success", async () => {
  await withCollector({}, async ({ collector, scheduler, pipeline, registry }) => {
    for (const status of [201, 202, 204]) collector.script({ status, times: 1 });
    pipeline.start();
    pipeline.enqueueAll(events(0, 12));
    await advance(scheduler, pipeline, 0);
    assert.deepEqual(collector.batches.map((b) => b.outcome), [201, 202, 204, 200]);
    assert.equal(collector.events.length, 12);
    assert.equal(await metric(registry, "autoscaling_agent_billing_send_errors_total"), undefined);
    assert.equal(pipeline.stats()[0].queuedEvents, 0);
  });
});

Deno.test("http: a non-2xx fails as `HTTP code N`; the retry is byte-identical with a new trace id", async () => {
  await withCollector({}, async ({ collector, scheduler, pipeline, registry }) => {
    collector.script({ status: 500, times: 2 });
    pipeline.start();
    pipeline.enqueueAll(events(0, 3));
    await advance(scheduler, pipeline, 5_000);
    assert.deepEqual(collector.batches.map((b) => b.outcome), [500, 500, 200]);
    const [first, ...rest] = collector.batches;
    for (const b of rest) assert.deepEqual(b.raw, first.raw);
    assert.equal(new Set(collector.batches.map((b) => b.headers["x-trace-id"])).size, 3);
    assert.deepEqual(collector.batches.flatMap((b) => b.problems), []);
    assert.equal(await errors(registry, "HTTP code 500"), 2);
    assert.equal(collector.events.length, 3);
  });
});

Deno.test("http: 400 every time quarantines the batch after K attempts; the next one goes", async () => {
  await withCollector(
    { retry: { quarantineAfter: 3 } },
    async ({ collector, scheduler, pipeline, registry, dir }) => {
      collector.script({ status: 400, times: 3 });
      pipeline.enqueueAll(events(0, 6));
      pipeline.start();
      await advance(scheduler, pipeline, 10_000);
      assert.deepEqual(collector.batches.map((b) => b.outcome), [400, 400, 400, 200]);
      assert.deepEqual(collector.events.map((e) => e.idempotency_key), events(3, 3).map(keyOf));
      assert.ok(exists(`${dir}/billing/http/dead/000000000001.batch`));
      assert.equal(await errors(registry, "HTTP code 400"), 3);
      assert.equal(
        await metric(registry, "autoscaling_agent_billing_quarantined_batches_total"),
        1,
      );
    },
  );
});

Deno.test("http: transport errors are labelled with the innermost message", async () => {
  const closed = new BillingCollector();
  closed.start();
  const url = closed.url;
  await closed.stop();
  await withCollector({ url: () => url }, async ({ scheduler, pipeline, registry }) => {
    pipeline.start();
    pipeline.enqueueAll(events(0, 3));
    await advance(scheduler, pipeline, 0);
    assert.equal(await errors(registry, "connection refused"), 1);
  });
});

Deno.test("http: an answer slower than the request timeout is `context deadline exceeded`", async () => {
  await withCollector(
    { timeoutSeconds: 2 },
    async ({ collector, scheduler, pipeline, registry }) => {
      collector.setLatency(60_000);
      pipeline.start();
      pipeline.enqueueAll(events(0, 3));
      await scheduler.advance(2_000);
      await pipeline.idle();
      assert.equal(await errors(registry, "context deadline exceeded"), 1);
      assert.equal(pipeline.stats()[0].queuedEvents, 3);
    },
  );
});

Deno.test("http: a 307 redirect is followed with the same body", async () => {
  await withCollector({}, async ({ collector, scheduler, pipeline }) => {
    collector.script({ redirect: `${collector.url}/usage_events`, times: 1 });
    pipeline.start();
    pipeline.enqueueAll(events(0, 3));
    await advance(scheduler, pipeline, 0);
    assert.deepEqual(collector.batches.map((b) => b.outcome), [307, 200]);
    assert.deepEqual(collector.batches[1].raw, collector.batches[0].raw);
    assert.equal(collector.events.length, 3);
  });
});

Deno.test("http: a connection cut after the body is retried; dedup leaves each event once", async () => {
  await withCollector({}, async ({ collector, scheduler, pipeline }) => {
    collector.dropNext(1, "afterBody");
    pipeline.start();
    pipeline.enqueueAll(events(0, 3));
    await advance(scheduler, pipeline, 5_000);
    assert.deepEqual(collector.batches.map((b) => b.outcome), ["dropped", 200]);
    assert.equal(collector.duplicates, 3);
    assert.deepEqual(collector.events.map((e) => e.idempotency_key), events(0, 3).map(keyOf));
  });
});

Deno.test("http: 500 for ten simulated minutes, then everything arrives; memory stays bounded", async () => {
  const MAX_BATCH = 20;
  const CAP = 16 * 1024;
  await withCollector(
    { maxBatchSize: MAX_BATCH, spoolCapBytes: CAP },
    async ({ collector, scheduler, pipeline, registry }) => {
      const outageEnds = scheduler.now() + 10 * 60_000;
      collector.script({ status: 500, when: () => scheduler.now() < outageEnds });
      pipeline.start();
      const produced: string[] = [];
      let maxMemory = 0;
      let maxSpool = 0;
      let capSeen = false;
      for (let i = 0; scheduler.now() < outageEnds; i += 2) {
        // A billing drain: two events every five seconds.
        pipeline.enqueueAll([makeEvent(i), makeEvent(i + 1)]);
        produced.push(makeEvent(i), makeEvent(i + 1));
        await advance(scheduler, pipeline, 5_000);
        const [stats] = pipeline.stats();
        maxMemory = Math.max(maxMemory, stats.memoryBytes);
        maxSpool = Math.max(maxSpool, stats.spoolBytes);
        capSeen ||= await metric(registry, "autoscaling_agent_billing_spool_cap_reached") === 1;
      }
      assert.equal(produced.length, 240);
      assert.equal(collector.events.length, 0);
      const longest = Math.max(...produced.map((e) => e.length));
      assert.ok(maxMemory <= MAX_BATCH * longest, `memory ${maxMemory} B stayed in one batch`);
      assert.ok(maxSpool > CAP, `the backlog (${maxSpool} B) went to disk, past the cap`);
      assert.ok(capSeen);
      const attempts = collector.batches.length;
      assert.ok(attempts <= 70, `${attempts} attempts in 10 min: back-off capped at P = 10 s`);

      await advance(scheduler, pipeline, 10_000);
      assert.equal(collector.events.length, 240);
      assert.deepEqual(
        new Set(collector.events.map((e) => e.idempotency_key)),
        new Set(produced.map(keyOf)),
      );
      assert.deepEqual(pipeline.stats()[0], {
        client: "http",
        queuedEvents: 0,
        completedBatches: 0,
        spoolBytes: 0,
        memoryBytes: 0,
        deadBatches: 0,
      });
      assert.equal(await metric(registry, "autoscaling_agent_billing_spool_cap_reached"), 0);
    },
  );
});

Deno.test("http: openReportingPipelines builds both pipelines from the config", async () => {
  const collector = new BillingCollector();
  collector.start();
  const dir = await Deno.makeTempDir({ prefix: "pipelines-test-" });
  const registry = new Registry();
  const { billing, scalingEvents } = await openReportingPipelines({
    billing: {
      cpuMetricName: "effective_compute_seconds",
      activeTimeMetricName: "active_time_seconds",
      collectEverySeconds: 4,
      accumulateEverySeconds: 24,
      clients: {
        http: {
          url: collector.url,
          pushEverySeconds: 10,
          pushRequestTimeoutSeconds: 5,
          maxBatchSize: 100,
        },
      },
    },
    scalingEvents: { cuMultiplier: 0.25, rereportThreshold: 0.25, regionName: "r", clients: {} },
  }, { spoolDir: dir, registry });
  billing.start();
  scalingEvents.start();
  billing.enqueueAll(events(0, 4));
  scalingEvents.enqueue(makeEvent(99));
  await Promise.all([billing.stop(), scalingEvents.stop()]);
  assert.equal(collector.events.length, 4);
  assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["billing"]);
  assert.equal(await metric(registry, "autoscaling_agent_billing_queue_size"), 0);
  await collector.stop();
  await Deno.remove(dir, { recursive: true });
});
