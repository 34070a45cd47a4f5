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
  gunzip,
  makeEvent,
  metric,
  readBatchFile,
  recordingLog,
  reportingClock,
  spoolFile,
} from "./reporting_helpers.ts";

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const events = (from: number, n: number) =>
  Array.from({ length: n }, (_, i) => makeEvent(from + i));

function failing(scheduler: VirtualClock): FakeTransport {
  const transport = new FakeTransport(scheduler);
  transport.respond = () => {
    throw new SendFailure("HTTP code 503", false);
  };
  return transport;
}

async function withSpool(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "spool-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function open(
  spoolDir: string,
  scheduler: VirtualClock,
  extra: Partial<PipelineOptions> & { transport?: FakeTransport; maxBatchSize?: number } = {},
): ReportingPipeline {
  const transport = extra.transport ?? new FakeTransport(scheduler);
  return new ReportingPipeline({
    kind: "billing",
    clients: [fakeClient(transport, { maxBatchSize: extra.maxBatchSize ?? 3 })],
    spoolDir,
    registry: new Registry(),
    clock: scheduler,
    random: constantRandom(0),
    ...extra,
  });
}

Deno.test("spool: enqueue returns with the event in the journal on disk", async () => {
  await withSpool(async (dir) => {
    const pipeline = open(dir, reportingClock());
    pipeline.enqueue(makeEvent(0));
    assert.equal(Deno.readTextFileSync(spoolFile(dir, 1, "journal")), `${makeEvent(0)}\n`);
    pipeline.enqueue(makeEvent(1));
    assert.equal(
      Deno.readTextFileSync(spoolFile(dir, 1, "journal")),
      `${makeEvent(0)}\n${makeEvent(1)}\n`,
    );
    await pipeline.stop();
  });
});

Deno.test("spool: a full batch is one file with header and exact body; its journal goes", async () => {
  await withSpool(async (dir) => {
    const scheduler = reportingClock();
    const pipeline = open(dir, scheduler);
    pipeline.enqueueAll(events(0, 3));
    assert.ok(!exists(spoolFile(dir, 1, "journal")));
    const { header, body } = readBatchFile(spoolFile(dir, 1, "batch"));
    assert.deepEqual(header, {
      v: 1,
      seq: 1,
      count: 3,
      createdAt: scheduler.now(),
      objectKey: null,
      bodyBytes: body.length,
    });
    assert.deepEqual(body, jsonArrayBody(events(0, 3)));
    await pipeline.stop();
  });
});

Deno.test("spool: blob batches carry the object key chosen when they were completed", async () => {
  await withSpool(async (dir) => {
    const scheduler = reportingClock();
    const transport = new FakeTransport(scheduler);
    const pipeline = new ReportingPipeline({
      kind: "scalingevents",
      clients: [
        fakeClient(transport, {
          name: "s3",
          maxBatchSize: 2,
          objectKey: (at) => `p/${at.toISOString()}`,
        }),
      ],
      spoolDir: dir,
      registry: new Registry(),
      clock: scheduler,
    });
    pipeline.enqueueAll(events(0, 2));
    const { header, body } = readBatchFile(spoolFile(dir, 1, "batch", "s3", "scalingevents"));
    assert.equal(header.objectKey, `p/${new Date(scheduler.now()).toISOString()}`);
    assert.equal(await gunzip(body), `${makeEvent(0)}\n${makeEvent(1)}\n`);
    await pipeline.stop();
  });
});

Deno.test("spool: enqueueAll splits its journal writes at the batch boundaries", async () => {
  await withSpool(async (dir) => {
    const registry = new Registry();
    const pipeline = open(dir, reportingClock(), { maxBatchSize: 4, registry });
    pipeline.enqueue(makeEvent(0));
    pipeline.enqueueAll(events(1, 9));
    assert.deepEqual(readBatchFile(spoolFile(dir, 1, "batch")).body, jsonArrayBody(events(0, 4)));
    assert.deepEqual(readBatchFile(spoolFile(dir, 2, "batch")).body, jsonArrayBody(events(4, 4)));
    assert.equal(
      Deno.readTextFileSync(spoolFile(dir, 3, "journal")),
      events(8, 2).map((e) => `${e}\n`).join(""),
    );
    assert.equal(
      await metric(registry, "autoscaling_agent_billing_queue_size", { client: "http" }),
      10,
    );
    await pipeline.stop();
  });
});

Deno.test("spool: a restart sends what was left, in order, with the same bytes and keys", async () => {
  await withSpool(async (dir) => {
    const scheduler = reportingClock();
    const down = new FakeTransport(scheduler);
    down.respond = () => {
      throw new SendFailure("S3 error", false);
    };
    let n = 0;
    const objectKey = () => `key-${++n}`;
    const client = (transport: FakeTransport) =>
      fakeClient(transport, { name: "s3", maxBatchSize: 3, objectKey });
    const first = new ReportingPipeline({
      kind: "billing",
      clients: [client(down)],
      spoolDir: dir,
      registry: new Registry(),
      clock: scheduler,
    });
    first.enqueueAll(events(0, 7));
    first.start();
    await first.stop();
    assert.deepEqual(first.stats()[0].queuedEvents, 7);
    const sent = down.attempts.map((a) => [a.batch.objectKey, a.body]);
    assert.deepEqual(sent.map(([key]) => key), ["key-1"], "the final pass stopped at a failure");

    const up = new FakeTransport(scheduler);
    const second = new ReportingPipeline({
      kind: "billing",
      clients: [client(up)],
      spoolDir: dir,
      registry: new Registry(),
      clock: scheduler,
    });
    assert.equal(second.stats()[0].queuedEvents, 7);
    second.start();
    await advance(scheduler, second, 0);
    assert.deepEqual(up.attempts.map((a) => a.batch.objectKey), ["key-1", "key-2", "key-3"]);
    assert.equal(up.attempts[0].body, down.attempts[0].body, "byte-identical body");
    const lines = await Promise.all(up.attempts.map((a) => gunzip(a.batch.body)));
    assert.equal(lines.join(""), events(0, 7).map((e) => `${e}\n`).join(""));
    assert.equal(second.stats()[0].queuedEvents, 0);
    await second.stop();
    assert.equal(n, 3, "no key was chosen again");
  });
});

Deno.test("spool: recovery keeps the newest journal as the ongoing batch, minus a torn line", async () => {
  await withSpool(async (dir) => {
    Deno.mkdirSync(`${dir}/billing/http`, { recursive: true });
    Deno.writeTextFileSync(
      spoolFile(dir, 5, "journal"),
      `${makeEvent(1)}\n\0\0\0\n${makeEvent(2)}\n${makeEvent(3).slice(0, 40)}`,
    );
    const scheduler = reportingClock();
    const transport = new FakeTransport(scheduler);
    const log = recordingLog();
    const pipeline = open(dir, scheduler, { transport, maxBatchSize: 10, log });
    assert.equal(pipeline.stats()[0].queuedEvents, 2);
    const recovered = log.lines.find((l) => l.msg === "spool recovered");
    assert.equal(recovered?.fields.droppedInvalidLines, 1);
    pipeline.enqueue(makeEvent(4));
    assert.ok(
      Deno.readTextFileSync(spoolFile(dir, 5, "journal")).endsWith(
        `${makeEvent(2)}\n${makeEvent(4)}\n`,
      ),
      "appends continue after the last whole line",
    );
    pipeline.start();
    await pipeline.stop();
    assert.deepEqual(transport.bodies, [text(jsonArrayBody([1, 2, 4].map((i) => makeEvent(i))))]);
  });
});

Deno.test("spool: a journal whose batch exists is dropped, temp files are removed", async () => {
  await withSpool(async (dir) => {
    const scheduler = reportingClock();
    const first = open(dir, scheduler, { maxBatchSize: 2, transport: failing(scheduler) });
    first.enqueueAll(events(0, 2));
    await first.stop({ deadlineMs: 0 });
    // As if the process died between the batch's rename and the journal's removal.
    Deno.writeTextFileSync(
      spoolFile(dir, 1, "journal"),
      events(0, 2).map((e) => `${e}\n`).join(""),
    );
    Deno.writeTextFileSync(`${spoolFile(dir, 2, "batch")}.tmp`, "half a batch");
    const transport = new FakeTransport(scheduler);
    const second = open(dir, scheduler, { transport, maxBatchSize: 2 });
    assert.equal(second.stats()[0].queuedEvents, 2);
    assert.ok(!exists(spoolFile(dir, 1, "journal")));
    assert.ok(!exists(`${spoolFile(dir, 2, "batch")}.tmp`));
    second.start();
    await second.stop();
    assert.deepEqual(transport.bodies, [text(jsonArrayBody(events(0, 2)))]);
  });
});

Deno.test("spool: older journals without a batch are batched again after the rest", async () => {
  await withSpool(async (dir) => {
    const scheduler = reportingClock();
    const first = open(dir, scheduler, { maxBatchSize: 2, transport: failing(scheduler) });
    first.enqueueAll(events(10, 2)); // batch 1
    await first.stop({ deadlineMs: 0 });
    // Journal 0 stands for a batch whose file could not be written; journal 2 is the ongoing one.
    Deno.writeTextFileSync(spoolFile(dir, 0, "journal"), `${makeEvent(1)}\n`);
    Deno.writeTextFileSync(spoolFile(dir, 2, "journal"), `${makeEvent(20)}\n`);
    const transport = new FakeTransport(scheduler);
    const second = open(dir, scheduler, { transport, maxBatchSize: 2 });
    assert.equal(second.stats()[0].queuedEvents, 4);
    assert.ok(!exists(spoolFile(dir, 0, "journal")));
    second.start();
    await second.stop();
    assert.deepEqual(transport.bodies, [
      text(jsonArrayBody(events(10, 2))),
      text(jsonArrayBody([makeEvent(20), makeEvent(1)])),
    ]);
  });
});

Deno.test("spool: an unreadable batch file is moved to dead/ with an error", async () => {
  await withSpool(async (dir) => {
    Deno.mkdirSync(`${dir}/billing/http`, { recursive: true });
    Deno.writeTextFileSync(spoolFile(dir, 3, "batch"), '{"v":1,"bodyBytes":100}\nshort');
    const registry = new Registry();
    const log = recordingLog();
    const pipeline = open(dir, reportingClock(), { registry, log });
    assert.ok(exists(`${dir}/billing/http/dead/000000000003.batch`));
    assert.equal(await metric(registry, "autoscaling_agent_billing_dead_batches"), 1);
    assert.ok(log.messages("error").includes("unreadable spooled batch moved to dead/"));
    pipeline.enqueue(makeEvent(0));
    assert.ok(exists(spoolFile(dir, 4, "journal")), "sequence numbers continue after dead ones");
    await pipeline.stop();
  });
});

Deno.test("spool: a second process cannot open a spool in use", async () => {
  await withSpool(async (dir) => {
    const pipeline = open(dir, reportingClock());
    assert.throws(() => open(dir, reportingClock()), /in use by another process/);
    await pipeline.stop();
    const again = open(dir, reportingClock());
    await again.stop();
  });
});

Deno.test("spool: a journal that cannot be written keeps the events in memory, and they are still sent", async () => {
  await withSpool(async (dir) => {
    const scheduler = reportingClock();
    const registry = new Registry();
    const a = new FakeTransport(scheduler);
    const b = new FakeTransport(scheduler);
    const log = recordingLog();
    const pipeline = new ReportingPipeline({
      kind: "billing",
      clients: [fakeClient(a), fakeClient(b, { name: "s3" })],
      spoolDir: dir,
      registry,
      clock: scheduler,
      log,
    });
    pipeline.enqueue(makeEvent(0));
    // The s3 client's directory becomes a plain file: its journal writes fail, as on a full disk.
    Deno.removeSync(`${dir}/billing/s3`, { recursive: true });
    Deno.writeTextFileSync(`${dir}/billing/s3`, "");
    pipeline.enqueue(makeEvent(1));
    pipeline.enqueue(makeEvent(2));
    assert.equal(
      Deno.readTextFileSync(spoolFile(dir, 1, "journal")),
      `${makeEvent(0)}\n${makeEvent(1)}\n${makeEvent(2)}\n`,
      "the http journal has every event",
    );
    assert.deepEqual(pipeline.stats().map((s) => s.queuedEvents), [3, 3]);
    assert.equal(
      await metric(registry, "autoscaling_agent_billing_spool_write_errors_total", {
        client: "s3",
      }),
      2,
    );
    // Logged once for the minute, not once per event.
    assert.deepEqual(
      log.lines.filter((l) => l.level === "error").map((l) => [l.msg, l.fields.events]),
      [["cannot write events to the spool; they are sent from memory", 1]],
    );
    pipeline.start();
    assert.deepEqual(await pipeline.stop(), [], "everything was delivered");
    assert.deepEqual(a.bodies, [text(jsonArrayBody(events(0, 3)))]);
    assert.deepEqual(await Promise.all(b.attempts.map((x) => gunzip(x.batch.body))), [
      `${makeEvent(0)}\n${makeEvent(1)}\n${makeEvent(2)}\n`,
    ]);
  });
});

Deno.test("spool: at stop, events neither delivered nor saved are reported with their amounts", async () => {
  await withSpool(async (dir) => {
    const scheduler = reportingClock();
    const log = recordingLog();
    const pipeline = open(dir, scheduler, { transport: failing(scheduler), log, maxBatchSize: 2 });
    pipeline.enqueue(makeEvent(1));
    Deno.removeSync(`${dir}/billing/http`, { recursive: true });
    Deno.writeTextFileSync(`${dir}/billing/http`, "");
    pipeline.enqueueAll(events(2, 3));
    pipeline.start();
    const unsaved = await pipeline.stop({ deadlineMs: 0 });
    // Event 1 is in the journal that was removed with the directory, but it had been saved: only
    // what never reached a file counts. Values are i % 13: 2 + 3 + 4.
    assert.deepEqual(unsaved, [
      { client: "http", events: 3, amounts: { effective_compute_seconds: 9 } },
    ]);
    const lost = log.lines.find((l) => l.msg.startsWith("usage lost"));
    assert.equal(lost?.level, "error");
    assert.deepEqual(lost?.fields, unsaved[0]);
  });
});

Deno.test("spool: above the cap events are still accepted, with a metric and one loud log", async () => {
  await withSpool(async (dir) => {
    const scheduler = reportingClock();
    const registry = new Registry();
    const log = recordingLog();
    const transport = new FakeTransport(scheduler);
    transport.respond = () => {
      throw new SendFailure("HTTP code 500", false);
    };
    const pipeline = open(dir, scheduler, {
      transport,
      registry,
      log,
      maxBatchSize: 10,
      spoolCapBytes: 4096,
    });
    const capReached = () =>
      metric(registry, "autoscaling_agent_billing_spool_cap_reached", { client: "http" });
    assert.equal(await capReached(), 0);
    pipeline.start();
    for (let i = 0; i < 100; i++) {
      pipeline.enqueue(makeEvent(i));
      await advance(scheduler, pipeline, 1000);
    }
    assert.equal(pipeline.stats()[0].queuedEvents, 100, "nothing was refused or dropped");
    assert.ok(pipeline.stats()[0].spoolBytes > 4096);
    assert.equal(await capReached(), 1);
    assert.equal(
      log.messages("error").filter((m) => m.includes("above its size cap")).length,
      1,
      "logged once within five minutes",
    );
    await advance(scheduler, pipeline, 5 * 60_000);
    assert.equal(log.messages("error").filter((m) => m.includes("above its size cap")).length, 2);
    transport.respond = () => {};
    await advance(scheduler, pipeline, 10_000);
    assert.equal(pipeline.stats()[0].queuedEvents, 0);
    assert.equal(await capReached(), 0);
    assert.ok(log.messages("info").includes("spool is below its size cap again"));
    await pipeline.stop();
  });
});

Deno.test("spool: an event already in the ongoing batch is not added twice", async () => {
  await withSpool(async (dir) => {
    const scheduler = reportingClock();
    const transport = new FakeTransport(scheduler);
    const pipeline = open(dir, scheduler, { transport, maxBatchSize: 3 });
    pipeline.enqueueAll([makeEvent(0), makeEvent(1)]);
    // A producer re-emitting after a crash: the same bytes again, and one new event.
    pipeline.enqueueAll([makeEvent(0), makeEvent(1), makeEvent(1), makeEvent(2), makeEvent(0)]);
    assert.equal(pipeline.stats()[0].queuedEvents, 4);
    assert.equal(
      Deno.readTextFileSync(spoolFile(dir, 2, "journal")),
      `${makeEvent(0)}\n`,
      "a later batch may repeat it: consumers deduplicate across batches",
    );
    pipeline.start();
    await pipeline.stop();
    assert.deepEqual(transport.bodies, [
      text(jsonArrayBody(events(0, 3))),
      text(jsonArrayBody([makeEvent(0)])),
    ]);
  });
});

Deno.test("spool: with no clients events are dropped and the disk is not touched", async () => {
  await withSpool(async (dir) => {
    const pipeline = open(dir, reportingClock(), { clients: [] });
    pipeline.enqueue(makeEvent(0));
    pipeline.start();
    await pipeline.stop();
    assert.deepEqual([...Deno.readDirSync(dir)], []);
    assert.deepEqual(pipeline.stats(), []);
  });
});
