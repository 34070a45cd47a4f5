import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { GlobalMetrics } from "../../agent/observability/metrics.ts";
import { ManualBillingClock } from "./manual_clock.ts";
import { scalingEventsTotal } from "../../billing/metrics.ts";
import { ScalingEventsReporter } from "../../billing/scaling_events.ts";
import type { EventSink } from "../../billing/sink.ts";
import type { ScalingGoalParts } from "../../core/mod.ts";
import { recordingLog } from "../support/log.ts";

const T0 = BigInt(Date.parse("2024-10-31T23:00:00Z")) * 1_000_000n;

class ArraySink implements EventSink {
  events: string[] = [];
  fail = false;
  enqueue(eventJson: string): void {
    if (this.fail) throw new Error("spool unavailable");
    this.events.push(eventJson);
  }
  parsed(): Record<string, unknown>[] {
    return this.events.map((e) => JSON.parse(e));
  }
}

function setup(config: { cuMultiplier?: number; rereportThreshold?: number } = {}) {
  const sink = new ArraySink();
  const registry = new Registry();
  const clock = new ManualBillingClock(T0 + 123456789n);
  const log = recordingLog();
  const reporter = new ScalingEventsReporter({
    config: {
      cuMultiplier: config.cuMultiplier ?? 0.25,
      rereportThreshold: config.rereportThreshold ?? 0.25,
      regionName: "eu-central-1",
    },
    sink,
    eventsTotal: scalingEventsTotal(registry),
    clock,
    log,
  });
  return { sink, registry, clock, log, reporter };
}

function parts(cpu: number | null, mem: number | null = null, lfc: number | null = null) {
  return { cpu, mem, lfc } satisfies ScalingGoalParts;
}

async function kinds(registry: Registry) {
  const metric = registry.getSingleMetric("autoscaling_agent_scaling_events_total")!;
  return Object.fromEntries((await metric.get()).values.map((v) => [v.labels.kind, v.value]));
}

Deno.test("scaling events: the reference's examples, byte for byte", () => {
  const { sink, clock, reporter } = setup();
  reporter.reportActual("ep-x", 4, 8);
  clock.wallNs = T0 + 5_500_000_000n;
  // Internal goal parts cpu 5.25 and mem 3 give a goal of 5 CU; the VM is at 8 CU.
  reporter.reportHypothetical(reporter.newLimiter(), "ep-x", 8, 5, parts(5.25, 3));
  assert.deepEqual(sink.events, [
    '{"timestamp":"2024-10-31T23:00:00.123456789Z","region":"eu-central-1","endpoint_id":"ep-x",' +
    '"kind":"actual","current_cu":1000,"target_cu":2000}',
    '{"timestamp":"2024-10-31T23:00:05.5Z","region":"eu-central-1","endpoint_id":"ep-x",' +
    '"kind":"hypothetical","current_cu":2000,"target_cu":1250,' +
    '"goalComponents":{"cpu":1.3125,"mem":0.75}}',
  ]);
});

Deno.test("scaling events: milli-CU as the reference computes and stores them", () => {
  const cases: [number, number, number][] = [
    [0.25, 1, 250],
    [0.3, 3, 900],
    [1, 0, 0],
    [0.0005, 1, 1], // 0.5 rounds away from zero
    // (1000 × 803) × 0.0025 = 2007.5 → 2008; other operation orders give 2007.4999999999998.
    [0.0025, 803, 2008],
    // uint32 wraps: 5e9 mod 2^32.
    [1, 5_000_000, 705032704],
  ];
  for (const [cuMultiplier, cu, milli] of cases) {
    const { sink, reporter } = setup({ cuMultiplier });
    reporter.reportActual("ep", cu, cu);
    const [event] = sink.parsed();
    assert.deepEqual([event.current_cu, event.target_cu], [milli, milli], `${cuMultiplier}×${cu}`);
  }
});

Deno.test("scaling events: components are multiplied, absent ones left out", () => {
  const { sink, reporter } = setup({ cuMultiplier: 0.5 });
  reporter.reportHypothetical(reporter.newLimiter(), "", 2, 3, parts(null, 2.5, 0.1));
  reporter.reportHypothetical(reporter.newLimiter(), "", 2, 3, parts(null));
  reporter.reportActual("", 2, 3);
  assert.deepEqual(sink.parsed().map((e) => e.goalComponents), [
    { mem: 1.25, lfc: 0.05 },
    {},
    undefined,
  ]);
  assert.ok(!sink.events[2].includes("goalComponents"));
});

Deno.test("scaling events: a non-finite component is left out and logged", () => {
  const { sink, log, reporter } = setup();
  reporter.reportHypothetical(reporter.newLimiter(), "ep", 1, 1, parts(NaN, Infinity, 2));
  assert.deepEqual(sink.parsed()[0].goalComponents, { lfc: 0.5 });
  assert.equal(log.messages("warn").length, 2);
});

Deno.test("scaling events: the limiter skips repeats closer than the threshold (strict <)", () => {
  const { sink, reporter } = setup();
  const limiter = reporter.newLimiter();
  const report = (target: number, p: ScalingGoalParts) =>
    reporter.reportHypothetical(limiter, "ep", 4, target, p);

  assert.equal(report(4, parts(4, 2)), true, "the first event is always sent");
  assert.equal(report(4, parts(4.75, 2)), false, "cpu 1 → 1.1875 after the multiplier");
  assert.equal(report(4, parts(5, 2)), true, "cpu 1 → 1.25: exactly the threshold is not close");
  assert.equal(report(5, parts(5, 2)), true, "a different target");
  assert.equal(report(5, parts(5, 2, 1)), true, "lfc appeared");
  assert.equal(report(5, parts(5, 2, 1)), false, "identical");
  assert.equal(report(5, parts(5, null, 1)), true, "mem disappeared");
  assert.equal(report(5, parts(5, null, 1)), false, "both absent count as close");
  // Compared with the last *submitted* event, so slow drift is reported eventually.
  assert.equal(report(5, parts(5.5, null, 1)), false);
  assert.equal(report(5, parts(5.9, null, 1)), false);
  assert.equal(report(5, parts(6, null, 1)), true);

  assert.equal(sink.events.length, 6);
  // A new runner has no memory: its first event is sent.
  assert.equal(
    reporter.reportHypothetical(reporter.newLimiter(), "ep", 4, 5, parts(6, null, 1)),
    true,
  );
});

Deno.test("scaling events: the limiter uses the configured rereportThreshold", () => {
  const { reporter } = setup({ rereportThreshold: 0.5 });
  const limiter = reporter.newLimiter();
  assert.equal(reporter.reportHypothetical(limiter, "ep", 4, 4, parts(4)), true);
  assert.equal(reporter.reportHypothetical(limiter, "ep", 4, 4, parts(5.96)), false);
  assert.equal(reporter.reportHypothetical(limiter, "ep", 4, 4, parts(6)), true);
});

Deno.test("scaling events: actual events are never limited", () => {
  const { sink, reporter } = setup();
  for (let i = 0; i < 3; i++) reporter.reportActual("ep", 1, 2);
  assert.equal(sink.events.length, 3);
});

Deno.test("scaling events: a failed enqueue is logged, not thrown, and not remembered", async () => {
  const { sink, log, registry, reporter } = setup();
  const limiter = reporter.newLimiter();
  sink.fail = true;
  assert.equal(reporter.reportHypothetical(limiter, "ep", 1, 2, parts(1)), false);
  reporter.reportActual("ep", 1, 2);
  assert.equal(log.messages("error").length, 2);
  sink.fail = false;
  assert.equal(reporter.reportHypothetical(limiter, "ep", 1, 2, parts(1)), true);
  assert.equal(sink.events.length, 1);
  assert.deepEqual(await kinds(registry), { hypothetical: 2, actual: 1 });
});

Deno.test("scaling events: the events-total gauge is shared with the agent's metrics", async () => {
  const global = new GlobalMetrics();
  assert.equal(scalingEventsTotal(global.registry), global.scalingEvents);

  const { registry, reporter } = setup();
  reporter.reportActual("ep", 1, 2);
  reporter.reportActual("ep", 2, 3);
  reporter.reportHypothetical(reporter.newLimiter(), "ep", 1, 2, parts(1));
  assert.deepEqual(await kinds(registry), { actual: 2, hypothetical: 1 });
  assert.match(await registry.metrics(), /# TYPE autoscaling_agent_scaling_events_total gauge/);
});
