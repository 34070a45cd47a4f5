import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { ManualBillingClock, type SleepHook } from "./manual_clock.ts";
import {
  BillingCollector,
  type BillingCollectorOptions,
  type VmSource,
} from "../../billing/collector.ts";
import { CHECKPOINT_FILE } from "../../billing/checkpoint.ts";
import { BillingCollectorMetrics } from "../../billing/metrics.ts";
import type { EventSink } from "../../billing/sink.ts";
import { denoStorage, type Storage } from "../../billing/storage.ts";
import { ReportingPipeline } from "../../billing/reporting/pipeline.ts";
import { SendFailure } from "../../billing/reporting/transport.ts";
import { VirtualClock } from "../../lib/virtual_clock.ts";
import { fakeClient, FakeTransport } from "./reporting_helpers.ts";
import { decodeVirtualMachine, type VirtualMachine } from "../../agent/k8s/vm.ts";

const NODE = "node-1";
const HOST = "autoscaler-agent-nwcnd";
const CPU = "effective_compute_seconds";
const ACTIVE = "active_time_seconds";
const ANNOTATION = "autoscaling.neon.tech/billing-endpoint-id";
/** Wall time at monotonic 0: `2024-04-12T12:09:36.344007537Z`. */
const BASE_NS = BigInt(Date.parse("2024-04-12T12:09:36Z")) * 1_000_000n + 344007537n;

interface VmSpec {
  uid: string;
  cpus?: string | null;
  endpoint?: string | null;
  node?: string;
  phase?: string;
  labels?: Record<string, string>;
  deleting?: boolean;
}

function vm(spec: VmSpec): VirtualMachine {
  const annotations: Record<string, string> = {};
  if (spec.endpoint !== null) annotations[ANNOTATION] = spec.endpoint ?? `ep-${spec.uid}`;
  const status: Record<string, unknown> = {
    phase: spec.phase ?? "Running",
    node: spec.node ?? NODE,
    podIP: "10.0.0.7",
  };
  if (spec.cpus !== null) status.cpus = spec.cpus ?? "1";
  const decoded = decodeVirtualMachine({
    metadata: {
      name: `vm-${spec.uid}`,
      namespace: "default",
      uid: spec.uid,
      labels: spec.labels ?? {},
      annotations,
      deletionTimestamp: spec.deleting ? "2024-04-12T12:00:00Z" : undefined,
    },
    spec: {
      schedulerName: "autoscale-scheduler",
      guest: {
        cpus: { min: 0.25, max: 4, use: 1 },
        memorySlotSize: "1Gi",
        memorySlots: { min: 1, max: 4, use: 1 },
      },
    },
    status,
  });
  if (!decoded.ok) throw new Error(decoded.error);
  return decoded.value;
}

class FakeSource implements VmSource {
  list: VirtualMachine[] = [];
  failing = false;
  vms(): readonly VirtualMachine[] {
    return this.list;
  }
}

class ArraySink implements EventSink {
  readonly events: string[];
  constructor(events: string[] = []) {
    this.events = events;
  }
  enqueue(eventJson: string): void {
    this.events.push(eventJson);
  }
  parsed(): Record<string, string | number>[] {
    return this.events.map((e) => JSON.parse(e));
  }
}

interface Parts {
  clock: ManualBillingClock;
  source: FakeSource;
  sink: ArraySink;
  metrics: BillingCollectorMetrics;
  registry: Registry;
  collector: BillingCollector;
}

interface SetupOptions extends Partial<Omit<BillingCollectorOptions, "clock">> {
  clock?: ManualBillingClock;
  /** What the collector's sleeps do. */
  sleep?: SleepHook;
}

/** A collector with the deployed timing; its own fake source and sink unless given others. */
function setup(options: SetupOptions = {}): Parts {
  const { sleep, ...collectorOptions } = options;
  const clock = options.clock ?? new ManualBillingClock(BASE_NS);
  if (sleep !== undefined) clock.sleepHook = sleep;
  const source = new FakeSource();
  const sink = options.sink instanceof ArraySink ? options.sink : new ArraySink();
  const registry = new Registry();
  const metrics = new BillingCollectorMetrics(registry);
  const collector = new BillingCollector({
    config: {
      cpuMetricName: CPU,
      activeTimeMetricName: ACTIVE,
      collectEverySeconds: 4,
      accumulateEverySeconds: 24,
    },
    nodeName: NODE,
    hostname: HOST,
    stateDir: null,
    metrics,
    source,
    sink,
    ...collectorOptions,
    clock,
  });
  return { clock, source, sink, metrics, registry, collector };
}

/** Moves both readings of the clock to `seconds` after monotonic 0. */
function at(clock: ManualBillingClock, seconds: number): void {
  clock.monoNs = BigInt(Math.round(seconds * 1e9));
  clock.wallNs = BASE_NS + clock.monoNs;
}

function wall(seconds: number): string {
  const ns = BASE_NS + BigInt(Math.round(seconds * 1e9));
  const whole = new Date(Number(ns / 1_000_000_000n) * 1000).toISOString().slice(0, 19);
  const fraction = (ns % 1_000_000_000n).toString().padStart(9, "0").replace(/0+$/, "");
  return fraction === "" ? `${whole}Z` : `${whole}.${fraction}Z`;
}

/**
 * A sleep on virtual time: it moves the clock forward by `ms`, or, when that would pass `stopAt`
 * seconds, moves it to `stopAt` and aborts (the agent's shutdown).
 */
function virtualSleep(clock: ManualBillingClock, stopAt: number, stop: AbortController) {
  const stopAtNs = BigInt(Math.round(stopAt * 1e9));
  return async (ms: number, signal?: AbortSignal): Promise<boolean> => {
    await Promise.resolve();
    if (signal?.aborted) return false;
    const target = clock.monoNs + BigInt(ms) * 1_000_000n;
    if (target > stopAtNs) {
      clock.advanceNs(stopAtNs - clock.monoNs);
      stop.abort();
      return false;
    }
    clock.advanceNs(target - clock.monoNs);
    return true;
  };
}

/** The worked example (a VM whose CPU doubles for 8 s): VM X's `.status.cpus` by time. */
function exampleCpus(seconds: number): string {
  return seconds >= 16 && seconds < 24 ? "500m" : "250m";
}

function seriesTotals(events: Record<string, string | number>[]): Map<string, number> {
  const totals = new Map<string, number>();
  for (const e of events) {
    const key = `${e.endpoint_id}/${e.metric}`;
    totals.set(key, (totals.get(key) ?? 0) + (e.value as number));
  }
  return totals;
}

async function metricValues(registry: Registry, name: string) {
  const metric = registry.getSingleMetric(name);
  assert.ok(metric, name);
  return (await metric.get()).values.map((v) => ({ labels: v.labels, value: v.value }));
}

Deno.test("collector: the worked example on the reference's tick schedule", async () => {
  const clock = new ManualBillingClock(BASE_NS);
  const seen: number[] = [];
  const stop = new AbortController();
  const { sink, collector } = setup({
    clock,
    finalDrain: false,
    sleep: virtualSleep(clock, 27, stop),
    source: {
      failing: false,
      vms() {
        const t = Number(clock.monoNs) / 1e9;
        seen.push(t);
        return [vm({ uid: "x", endpoint: "ep-1", cpus: exampleCpus(t) })];
      },
    },
  });
  await collector.run(stop.signal);

  assert.deepEqual(seen, [0.5, 4, 8, 12, 16, 20, 24]);
  assert.equal(wall(0.5), "2024-04-12T12:09:36.844007537Z");
  assert.deepEqual(sink.events, [
    '{"idempotency_key":"2024-04-12T12:10:00.844007Z-autoscaler-agent-nwcnd-1/2",' +
    '"metric":"effective_compute_seconds","type":"incremental","endpoint_id":"ep-1",' +
    '"start_time":"2024-04-12T12:09:36.844007537Z","stop_time":"2024-04-12T12:10:00.844007537Z",' +
    '"value":7}',
    '{"idempotency_key":"2024-04-12T12:10:00.844007Z-autoscaler-agent-nwcnd-2/2",' +
    '"metric":"active_time_seconds","type":"incremental","endpoint_id":"ep-1",' +
    '"start_time":"2024-04-12T12:09:36.844007537Z","stop_time":"2024-04-12T12:10:00.844007537Z",' +
    '"value":24}',
  ]);
});

Deno.test("collector: the worked example, step by step", async () => {
  const { clock, source, sink, collector } = setup();
  const step = async (t: number) => {
    at(clock, t);
    source.list = [vm({ uid: "x", endpoint: "ep-1", cpus: exampleCpus(t) })];
    await collector.collect();
  };
  at(clock, 0.5);
  collector.begin();
  for (const t of [0.5, 4, 8, 12, 16, 20]) await step(t);
  // Slices so far: [0.5,16]@250 merged, [16,20]@500 open. Nothing is emitted before a drain.
  assert.deepEqual(sink.events, []);
  await step(24);
  at(clock, 24.5);
  await collector.drain();
  const events = sink.parsed();
  assert.deepEqual(events.map((e) => [e.metric, e.value, e.idempotency_key]), [
    [CPU, 7, "2024-04-12T12:10:00.844007Z-autoscaler-agent-nwcnd-1/2"],
    [ACTIVE, 24, "2024-04-12T12:10:00.844007Z-autoscaler-agent-nwcnd-2/2"],
  ]);

  // The next window starts at the drain; [24,28] lands in it, at min(250, 250).
  await step(28);
  at(clock, 48.5);
  await collector.drain();
  assert.deepEqual(sink.parsed().slice(2).map((e) => [e.value, e.start_time, e.stop_time]), [
    [1, wall(24.5), wall(48.5)],
    [4, wall(24.5), wall(48.5)],
  ]);
});

Deno.test("collector: which VMs count", async () => {
  const { clock, source, sink, collector } = setup();
  source.list = [
    vm({ uid: "running", cpus: "1" }),
    vm({ uid: "premigrating", phase: "PreMigrating" }),
    vm({ uid: "migrating", phase: "Migrating" }),
    vm({ uid: "scaling", phase: "Scaling" }),
    vm({ uid: "empty-endpoint", endpoint: "" }),
    vm({ uid: "not-autoscaled", labels: { "autoscaling.neon.tech/enabled": "false" } }),
    vm({ uid: "deleting", deleting: true }),
    vm({ uid: "quarter", cpus: "250m" }),
    vm({ uid: "fraction", cpus: "0.0005" }),
    vm({ uid: "pending", phase: "Pending" }),
    vm({ uid: "succeeded", phase: "Succeeded" }),
    vm({ uid: "failed", phase: "Failed" }),
    vm({ uid: "no-phase", phase: "" }),
    vm({ uid: "no-cpus", cpus: null }),
    vm({ uid: "no-annotation", endpoint: null }),
    vm({ uid: "other-node", node: "node-2" }),
    vm({ uid: "no-node", node: "" }),
  ];
  at(clock, 0);
  collector.begin();
  await collector.collect();
  at(clock, 10);
  await collector.collect();
  await collector.drain();

  const totals = seriesTotals(sink.parsed());
  assert.deepEqual(Object.fromEntries(totals), {
    [`ep-running/${CPU}`]: 10,
    [`ep-running/${ACTIVE}`]: 10,
    [`ep-premigrating/${CPU}`]: 10,
    [`ep-premigrating/${ACTIVE}`]: 10,
    [`ep-migrating/${CPU}`]: 10,
    [`ep-migrating/${ACTIVE}`]: 10,
    [`ep-scaling/${CPU}`]: 10,
    [`ep-scaling/${ACTIVE}`]: 10,
    [`/${CPU}`]: 10,
    [`/${ACTIVE}`]: 10,
    [`ep-not-autoscaled/${CPU}`]: 10,
    [`ep-not-autoscaled/${ACTIVE}`]: 10,
    [`ep-deleting/${CPU}`]: 10,
    [`ep-deleting/${ACTIVE}`]: 10,
    // 10 s × 0.25 = 2.5, rounded half away from zero.
    [`ep-quarter/${CPU}`]: 3,
    [`ep-quarter/${ACTIVE}`]: 10,
    // 0.0005 vCPU rounds up to 1m: 10 s × 0.001 = 0.01, emitted as 0.
    [`ep-fraction/${CPU}`]: 0,
    [`ep-fraction/${ACTIVE}`]: 10,
  });
});

Deno.test("collector: series are (UID, endpoint ID) pairs", async () => {
  const { clock, source, sink, collector } = setup();
  at(clock, 0);
  collector.begin();
  source.list = [vm({ uid: "a", endpoint: "ep-shared" }), vm({ uid: "b", endpoint: "ep-shared" })];
  await collector.collect();
  at(clock, 4);
  await collector.collect();
  // The annotation of "b" changes: a new series, whose first sighting only records it.
  source.list = [vm({ uid: "a", endpoint: "ep-shared" }), vm({ uid: "b", endpoint: "ep-new" })];
  at(clock, 8);
  await collector.collect();
  at(clock, 12);
  await collector.collect();
  await collector.drain();
  const events = sink.parsed();
  assert.deepEqual(events.map((e) => [e.endpoint_id, e.metric, e.value]), [
    ["ep-shared", CPU, 12],
    ["ep-shared", ACTIVE, 12],
    ["ep-shared", CPU, 4],
    ["ep-shared", ACTIVE, 4],
    ["ep-new", CPU, 4],
    ["ep-new", ACTIVE, 4],
  ]);
});

Deno.test("collector: keys count odd for CPU and even for active time, over 2N", async () => {
  const { clock, source, sink, collector } = setup();
  at(clock, 0);
  collector.begin();
  source.list = [vm({ uid: "a" }), vm({ uid: "b" }), vm({ uid: "c" })];
  await collector.collect();
  at(clock, 4);
  await collector.collect();
  // "c" leaves mid-window: it keeps its history and is still reported with the full window.
  source.list = [vm({ uid: "a" }), vm({ uid: "b" })];
  at(clock, 8);
  await collector.collect();
  at(clock, 24.5);
  await collector.drain();
  const events = sink.parsed();
  assert.equal(events.length, 6);
  events.forEach((e, index) => {
    const i = index + 1;
    assert.equal(e.idempotency_key, `2024-04-12T12:10:00.844007Z-${HOST}-${i}/6`);
    assert.equal(e.metric, i % 2 === 1 ? CPU : ACTIVE);
    assert.equal(e.start_time, wall(0));
    assert.equal(e.stop_time, wall(24.5));
  });
  for (let i = 0; i < 6; i += 2) assert.equal(events[i].endpoint_id, events[i + 1].endpoint_id);
  assert.deepEqual(events.map((e) => e.value), [8, 8, 8, 8, 4, 4]);
});

Deno.test("collector: gaps around appearance, disappearance and a failing cache", async () => {
  const { clock, source, sink, collector, registry } = setup();
  const present = [vm({ uid: "a", cpus: "2" })];
  at(clock, 0);
  collector.begin();
  const timeline: [number, VirtualMachine[], boolean][] = [
    [0, present, false],
    [4, present, false], // [0,4] billed
    [8, [], false], // gone: [4,8] is not billed
    [12, present, false], // back: first sighting only, [8,12] not billed
    [16, present, false], // [12,16] billed
    [20, present, true], // cache failing: [16,20] not billed
    [24, present, false], // [20,24] not billed
    [28, present, false], // [24,28] billed
  ];
  for (const [t, list, failing] of timeline) {
    at(clock, t);
    source.list = list;
    source.failing = failing;
    await collector.collect();
    if (failing) {
      assert.deepEqual(await metricValues(registry, "autoscaling_agent_billing_vms_current"), []);
    }
  }
  await collector.drain();
  assert.deepEqual(sink.parsed().map((e) => e.value), [24, 12]);
  const errors = await metricValues(registry, "autoscaling_agent_billing_collector_errors_total");
  assert.deepEqual(errors, [{ labels: { cause: "cache_failing" }, value: 1 }]);
});

Deno.test("collector: a changed allocation bills the smaller end of the interval", async () => {
  const { clock, source, sink, collector } = setup();
  at(clock, 0);
  collector.begin();
  for (const [t, cpus] of [[0, "1"], [10, "3"], [20, "2"], [30, "2"]] as const) {
    at(clock, t);
    source.list = [vm({ uid: "a", cpus })];
    await collector.collect();
  }
  await collector.drain();
  // [0,10]@1 + [10,20]@2 + [20,30]@2 = 50.
  assert.deepEqual(sink.parsed().map((e) => e.value), [50, 30]);
});

Deno.test("collector: merged slices keep the reference's float results", async () => {
  const { clock, source, sink, collector } = setup();
  at(clock, 0);
  collector.begin();
  source.list = [vm({ uid: "a", cpus: "500m" })];
  for (let i = 0; i <= 10; i++) {
    at(clock, i / 10);
    await collector.collect();
  }
  await collector.drain();
  // One merged 1 s slice: 1 × 0.5 = 0.5 → 1. Ten summed 0.1 s products would give
  // 0.49999999999999994 → 0.
  assert.deepEqual(sink.parsed().map((e) => e.value), [1, 1]);
});

Deno.test("collector: rounding is per window and per series, half away from zero", async () => {
  const { clock, source, sink, collector } = setup();
  at(clock, 0);
  collector.begin();
  source.list = [vm({ uid: "a", cpus: "500m" })];
  await collector.collect();
  at(clock, 2.5);
  await collector.collect();
  at(clock, 3);
  await collector.drain(); // cpu 1.25 → 1, active 2.5 → 3
  at(clock, 4);
  await collector.collect();
  at(clock, 5);
  await collector.drain(); // cpu 0.75 → 1, active 1.5 → 2
  assert.deepEqual(sink.parsed().map((e) => e.value), [1, 3, 1, 2]);
});

Deno.test("collector: nothing is emitted for an empty window or a single sighting", async () => {
  const { clock, source, sink, collector } = setup();
  at(clock, 0);
  collector.begin();
  await collector.drain();
  source.list = [vm({ uid: "a" })];
  await collector.collect();
  at(clock, 1);
  await collector.drain();
  assert.deepEqual(sink.events, []);
});

Deno.test("collector: timestamps carry nanoseconds, keys microseconds, both trimmed", async () => {
  const clock = new ManualBillingClock(
    BigInt(Date.parse("2024-04-12T12:00:00Z")) * 1_000_000n + 100n,
  );
  const { source, sink, collector } = setup({ clock });
  collector.begin();
  source.list = [vm({ uid: "a" })];
  await collector.collect();
  clock.advanceNs(1_500_000_000n);
  await collector.collect();
  clock.advanceNs(120_000_000n - 100n);
  await collector.drain();
  const [event] = sink.parsed();
  assert.equal(event.start_time, "2024-04-12T12:00:00.0000001Z");
  assert.equal(event.stop_time, "2024-04-12T12:00:01.62Z");
  assert.equal(event.idempotency_key, `2024-04-12T12:00:01.62Z-${HOST}-1/2`);
});

Deno.test("collector: VM metrics count every visible VM and reset the current gauge", async () => {
  const { clock, source, collector, registry } = setup();
  at(clock, 0);
  collector.begin();
  const enabled = { "autoscaling.neon.tech/enabled": "true" };
  source.list = [
    vm({ uid: "a", labels: enabled }),
    vm({ uid: "b" }),
    vm({ uid: "c", endpoint: null, phase: "Pending" }),
    vm({ uid: "elsewhere", node: "node-2" }),
  ];
  await collector.collect();
  source.list = [vm({ uid: "b" })];
  await collector.collect();

  const labels = (isEndpoint: boolean, enabled: boolean, phase: string) => ({
    is_endpoint: String(isEndpoint),
    autoscaling_enabled: String(enabled),
    phase,
  });
  const sort = (values: { labels: object; value: number }[]) =>
    values.sort((x, y) => JSON.stringify(x).localeCompare(JSON.stringify(y)));
  assert.deepEqual(
    sort(await metricValues(registry, "autoscaling_agent_billing_vms_processed_total")),
    sort([
      { labels: labels(true, true, "Running"), value: 1 },
      { labels: labels(true, false, "Running"), value: 2 },
      { labels: labels(false, false, "Pending"), value: 1 },
    ]),
  );
  assert.deepEqual(await metricValues(registry, "autoscaling_agent_billing_vms_current"), [
    { labels: labels(true, false, "Running"), value: 1 },
  ]);
});

Deno.test("collector: a negative slice is skipped and counted, not fatal", async () => {
  const { clock, source, sink, collector, registry } = setup();
  source.list = [vm({ uid: "a" })];
  at(clock, 10);
  collector.begin();
  await collector.collect();
  at(clock, 5);
  await collector.collect();
  at(clock, 9);
  await collector.collect();
  await collector.drain();
  assert.deepEqual(sink.parsed().map((e) => e.value), [4, 4]);
  const errors = await metricValues(registry, "autoscaling_agent_billing_collector_errors_total");
  assert.deepEqual(errors, [{ labels: { cause: "negative_duration" }, value: 1 }]);
});

Deno.test("collector: a late tick gives a longer slice and does not pile up", async () => {
  const clock = new ManualBillingClock(BASE_NS);
  const seen: number[] = [];
  const source: VmSource = {
    failing: false,
    vms() {
      seen.push(Number(clock.monoNs) / 1e9);
      return [vm({ uid: "a" })];
    },
  };
  const stop = new AbortController();
  const base = virtualSleep(clock, 30, stop);
  let sleeps = 0;
  const { sink, collector } = setup({
    clock,
    source,
    finalDrain: false,
    sleep: async (ms: number, signal?: AbortSignal) => {
      // The event loop stalls for 9 s during the third wait.
      if (++sleeps === 3) clock.advanceNs(9_000_000_000n);
      return await base(ms, signal);
    },
  });
  await collector.run(stop.signal);
  // The wait for t=8 ends at 17: one collection then, the next on the 4 s grid.
  assert.deepEqual(seen, [0.5, 4, 17, 20, 24, 28]);
  assert.deepEqual(sink.parsed().map((e) => [e.value, e.stop_time]), [
    [24, wall(24.5)],
    [24, wall(24.5)],
  ]);
});

Deno.test("collector: stopping runs a final collection and drain by default", async () => {
  for (const finalDrain of [undefined, false]) {
    const clock = new ManualBillingClock(BASE_NS);
    const stop = new AbortController();
    const { source, sink, collector } = setup({
      clock,
      finalDrain,
      sleep: virtualSleep(clock, 30, stop),
    });
    source.list = [vm({ uid: "a", cpus: "2" })];
    await collector.run(stop.signal);
    const windows = sink.parsed().map((e) => [e.value, e.start_time, e.stop_time]);
    const first = [[47, wall(0.5), wall(24.5)], [24, wall(0.5), wall(24.5)]];
    // The final collection at 30 adds [28,30]: the last window is [24.5, 30].
    assert.deepEqual(
      windows,
      finalDrain === false
        ? first
        : [...first, [12, wall(24.5), wall(30)], [6, wall(24.5), wall(30)]],
    );
  }
});

Deno.test("collector: stopping during the first 500 ms measures nothing", async () => {
  const clock = new ManualBillingClock(BASE_NS);
  const stop = new AbortController();
  let listed = 0;
  const { sink, collector } = setup({
    clock,
    source: {
      failing: false,
      vms: () => {
        listed++;
        return [vm({ uid: "a" })];
      },
    },
    sleep: virtualSleep(clock, 0.2, stop),
  });
  await collector.run(stop.signal);
  assert.equal(listed, 0);
  assert.deepEqual(sink.events, []);
});

// ---- Checkpoint and crash recovery ----

async function withStateDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "billing-collector-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function readCheckpoint(dir: string): string | null {
  try {
    return Deno.readTextFileSync(`${dir}/${CHECKPOINT_FILE}`);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  }
}

Deno.test("collector: a crash loses no measured usage; recovery uses the stored hostname", async () => {
  await withStateDir(async (dir) => {
    const first = setup({ stateDir: dir });
    const { clock, source } = first;
    source.list = [vm({ uid: "a", cpus: "2" }), vm({ uid: "b", cpus: "250m" })];
    await first.collector.recover();
    at(clock, 0.5);
    first.collector.begin();
    for (const t of [0.5, 4, 8]) {
      at(clock, t);
      await first.collector.collect();
    }
    // The process dies here: the collector object is dropped without stopping.
    assert.deepEqual(first.sink.events, []);

    at(clock, 100);
    const second = setup({ clock, stateDir: dir, hostname: "autoscaler-agent-other" });
    await second.collector.recover();
    const key = (i: number) => `2024-04-12T12:09:44.344007Z-${HOST}-${i}/4`;
    assert.deepEqual(second.sink.events, [
      `{"idempotency_key":"${key(1)}","metric":"${CPU}","type":"incremental",` +
      `"endpoint_id":"ep-a","start_time":"${wall(0.5)}","stop_time":"${wall(8)}","value":15}`,
      `{"idempotency_key":"${key(2)}","metric":"${ACTIVE}","type":"incremental",` +
      `"endpoint_id":"ep-a","start_time":"${wall(0.5)}","stop_time":"${wall(8)}","value":8}`,
      `{"idempotency_key":"${key(3)}","metric":"${CPU}","type":"incremental",` +
      `"endpoint_id":"ep-b","start_time":"${wall(0.5)}","stop_time":"${wall(8)}","value":2}`,
      `{"idempotency_key":"${key(4)}","metric":"${ACTIVE}","type":"incremental",` +
      `"endpoint_id":"ep-b","start_time":"${wall(0.5)}","stop_time":"${wall(8)}","value":8}`,
    ]);
    assert.deepEqual(
      await metricValues(second.registry, "autoscaling_agent_billing_recovered_events_total"),
      [
        { labels: {}, value: 4 },
      ],
    );

    // Recovered once: a later restart finds nothing left to emit.
    const third = setup({ clock, stateDir: dir });
    await third.collector.recover();
    assert.deepEqual(third.sink.events, []);
    assert.deepEqual(await Array.fromAsync(Deno.readDir(dir), (e) => e.name), [CHECKPOINT_FILE]);
  });
});

Deno.test("collector: the downtime is not billed; the new process starts its own window", async () => {
  await withStateDir(async (dir) => {
    const first = setup({ stateDir: dir });
    first.source.list = [vm({ uid: "a" })];
    await first.collector.recover();
    at(first.clock, 0);
    first.collector.begin();
    await first.collector.collect();
    at(first.clock, 4);
    await first.collector.collect();

    const { clock, source, sink, collector } = setup({ stateDir: dir, hostname: "new-host" });
    source.list = [vm({ uid: "a" })];
    at(clock, 60);
    await collector.recover();
    collector.begin();
    await collector.collect();
    at(clock, 64);
    await collector.collect();
    at(clock, 65);
    await collector.drain();
    assert.deepEqual(sink.parsed().map((e) => [e.value, e.start_time, e.stop_time]), [
      [4, wall(0), wall(4)],
      [4, wall(0), wall(4)],
      [4, wall(60), wall(65)],
      [4, wall(60), wall(65)],
    ]);
  });
});

/** A disk state at a crash: the checkpoint file as it was, and what the sink held. */
interface CrashState {
  label: string;
  checkpoint: string | null;
  sinkEvents: string[];
}

/** A sink that records the possible crash states around every enqueue. */
class CrashRecordingSink extends ArraySink {
  readonly states: CrashState[] = [];
  constructor(readonly dir: string, events: string[] = []) {
    super(events);
  }
  override enqueue(eventJson: string): void {
    this.snapshot("before enqueue");
    super.enqueue(eventJson);
    this.snapshot("after enqueue");
  }
  snapshot(label: string): void {
    this.states.push({ label, checkpoint: readCheckpoint(this.dir), sinkEvents: [...this.events] });
  }
}

/** "After enqueue k" and "before enqueue k + 1" are often the same disk state. */
function distinct(states: CrashState[]): CrashState[] {
  const seen = new Set<string>();
  return states.filter((state) => {
    const key = JSON.stringify([state.checkpoint, state.sinkEvents.length]);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** Usage measured up to a checkpoint, from its last collection time. */
function measuredUpTo(checkpoint: string | null): Map<string, number> {
  const lastCollect = checkpoint === null ? null : JSON.parse(checkpoint).lastCollectNs;
  const expected = new Map<string, number>();
  if (lastCollect === null) return expected;
  const t = Number((BigInt(lastCollect) - BASE_NS) / 1_000_000_000n);
  // "a" (2 vCPU) from t=0; "b" (1 vCPU) from t=3.
  expected.set(`ep-a/${CPU}`, 2 * t).set(`ep-a/${ACTIVE}`, t);
  if (t > 3) expected.set(`ep-b/${CPU}`, t - 3).set(`ep-b/${ACTIVE}`, t - 3);
  return expected;
}

/** Deduplicates on idempotency_key; the same key must always carry the same bytes. */
function dedup(events: string[]): Record<string, string | number>[] {
  const byKey = new Map<string, string>();
  for (const json of events) {
    const key = JSON.parse(json).idempotency_key;
    const seen = byKey.get(key);
    assert.ok(seen === undefined || seen === json, `key ${key} with different bytes`);
    byKey.set(key, json);
  }
  return [...byKey.values()].map((json) => JSON.parse(json));
}

function withoutZeros(totals: Map<string, number>): Record<string, number> {
  return Object.fromEntries([...totals].filter(([, value]) => value !== 0));
}

let replacements = 0;

/** Restores a crash state into a fresh directory and recovers from it, as a new pod. */
async function recoverFrom(state: CrashState): Promise<{ dir: string; sink: CrashRecordingSink }> {
  const dir = await Deno.makeTempDir({ prefix: "billing-recovery-" });
  if (state.checkpoint !== null) {
    await Deno.writeTextFile(`${dir}/${CHECKPOINT_FILE}`, state.checkpoint);
  }
  const sink = new CrashRecordingSink(dir, [...state.sinkEvents]);
  const clock = new ManualBillingClock(BASE_NS + 1_000_000_000_000n, 5n);
  const hostname = `replacement-pod-${++replacements}`;
  const { collector } = setup({ clock, sink, stateDir: dir, hostname });
  await collector.recover();
  sink.snapshot("after recovery");
  return { dir, sink };
}

Deno.test("collector: a crash at any point, even during recovery, bills exactly once", async () => {
  await withStateDir(async (dir) => {
    const sink = new CrashRecordingSink(dir);
    const { clock, source, collector } = setup({ sink, stateDir: dir });
    await collector.recover();
    sink.snapshot("start");
    at(clock, 0);
    collector.begin();
    const steps: [string, number][] = [
      ["collect", 0],
      ["collect", 1],
      ["collect", 2],
      ["drain", 2.5],
      ["collect", 3],
      ["collect", 4],
      ["drain", 4.5],
      ["collect", 5],
      ["collect", 6],
      ["collect", 7],
      ["drain", 7.5],
      ["collect", 8],
    ];
    for (const [what, t] of steps) {
      at(clock, t);
      source.list = t < 3 ? [vm({ uid: "a", cpus: "2" })] : [
        vm({ uid: "a", cpus: "2" }),
        vm({ uid: "b", cpus: "1" }),
      ];
      await (what === "collect" ? collector.collect() : collector.drain());
      sink.snapshot(`after ${what} at ${t}`);
    }
    assert.equal(sink.events.length, 2 + 4 + 4);

    const dirs: string[] = [];
    try {
      let checked = 0;
      for (const crash of distinct(sink.states)) {
        const expected = withoutZeros(measuredUpTo(crash.checkpoint));
        const first = await recoverFrom(crash);
        dirs.push(first.dir);
        const recovered = first.sink.events.slice(crash.sinkEvents.length);
        assert.deepEqual(
          withoutZeros(seriesTotals(dedup(first.sink.events))),
          expected,
          crash.label,
        );
        // Recovering the same crash again produces the same bytes.
        const again = await recoverFrom(crash);
        dirs.push(again.dir);
        assert.deepEqual(again.sink.events.slice(crash.sinkEvents.length), recovered);
        // A crash at any point of the recovery, then another recovery: still exactly once.
        for (const nested of distinct(first.sink.states)) {
          const second = await recoverFrom(nested);
          dirs.push(second.dir);
          assert.deepEqual(
            withoutZeros(seriesTotals(dedup(second.sink.events))),
            expected,
            `${crash.label}, then ${nested.label} in recovery`,
          );
          for (const json of second.sink.events) {
            assert.ok(first.sink.events.includes(json), "recovery events are byte-identical");
          }
          checked++;
        }
      }
      assert.ok(checked > 40, `${checked} nested crash points`);
    } finally {
      for (const d of dirs) await Deno.remove(d, { recursive: true });
    }
  });
});

Deno.test("collector: drains the sink refused stay pending and go out in order", async () => {
  await withStateDir(async (dir) => {
    let refuse = true;
    const events: string[] = [];
    const sink: EventSink = {
      enqueue(json) {
        if (refuse) throw new Error("spool full");
        events.push(json);
      },
    };
    const { clock, source, collector, registry } = setup({ sink, stateDir: dir });
    source.list = [vm({ uid: "a" })];
    await collector.recover();
    at(clock, 0);
    collector.begin();
    for (const t of [0, 4, 8]) {
      at(clock, t);
      await collector.collect();
    }
    at(clock, 8.5);
    await collector.drain();
    at(clock, 12);
    await collector.collect();
    at(clock, 12.5);
    await collector.drain();
    assert.deepEqual(events, []);
    assert.deepEqual(await metricValues(registry, "autoscaling_agent_billing_pending_drains"), [
      { labels: {}, value: 2 },
    ]);

    refuse = false;
    at(clock, 16);
    await collector.collect();
    assert.deepEqual(JSON.parse(readCheckpoint(dir)!).pending, []);
    assert.deepEqual(events.map((e) => JSON.parse(e)).map((e) => [e.value, e.stop_time]), [
      [8, wall(8.5)],
      [8, wall(8.5)],
      [4, wall(12.5)],
      [4, wall(12.5)],
    ]);
    assert.deepEqual(await metricValues(registry, "autoscaling_agent_billing_pending_drains"), [
      { labels: {}, value: 0 },
    ]);
  });
});

/**
 * The file system, filling up on demand: a full disk fails writes as ENOSPC does, after
 * leaving what fitted of the temporary file.
 */
function fillableStorage(): Storage & { full: boolean } {
  const storage = {
    ...denoStorage,
    full: false,
    replace(path: string, chunks: readonly Uint8Array[]): Promise<void> {
      if (!storage.full) return denoStorage.replace(path, chunks);
      Deno.writeFileSync(`${path}.tmp`, chunks[0].subarray(0, chunks[0].length >> 1));
      return Promise.reject(new Error("No space left on device (os error 28)"));
    },
  };
  return storage;
}

Deno.test("collector: while the checkpoint cannot be written, drains still reach the sink; the stale checkpoint goes", async () => {
  await withStateDir(async (dir) => {
    const storage = fillableStorage();
    const { clock, source, sink, collector, registry } = setup({ stateDir: dir, storage });
    source.list = [vm({ uid: "a" })];
    await collector.recover();
    at(clock, 0);
    collector.begin();
    await collector.collect();
    at(clock, 4);
    await collector.collect();
    assert.ok(readCheckpoint(dir) !== null);

    storage.full = true;
    at(clock, 8);
    await collector.collect();
    at(clock, 8.5);
    await collector.drain();
    // Delivered without the disk: before the fix, nothing reached the sink until a write did.
    assert.deepEqual(sink.parsed().map((e) => [e.value, e.stop_time]), [
      [8, wall(8.5)],
      [8, wall(8.5)],
    ]);
    // The old checkpoint held that usage as history: a recovery from it would bill it again.
    assert.equal(readCheckpoint(dir), null);
    assert.deepEqual(await Array.fromAsync(Deno.readDir(dir), (e) => e.name), []);
    const errors = await metricValues(registry, "autoscaling_agent_billing_collector_errors_total");
    assert.deepEqual(errors, [{ labels: { cause: "checkpoint_write" }, value: 3 }]);

    // A crash now bills nothing twice: the next process finds no checkpoint.
    const next = setup({ stateDir: dir });
    await next.collector.recover();
    assert.deepEqual(next.sink.events, []);

    storage.full = false;
    at(clock, 12);
    await collector.collect();
    const checkpoint = JSON.parse(readCheckpoint(dir)!);
    assert.equal(checkpoint.generation, 1);
    assert.deepEqual(checkpoint.pending, []);
    assert.equal(sink.events.length, 2);
  });
});

Deno.test("collector: leftover temporary checkpoint files are removed at start", async () => {
  await withStateDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/${CHECKPOINT_FILE}.tmp`, '{"version":1,"hostn');
    const { collector } = setup({ stateDir: dir });
    await collector.recover();
    assert.deepEqual(await Array.fromAsync(Deno.readDir(dir), (e) => e.name), []);
  });
});

Deno.test("collector: with the spool as its sink, a long full-disk outage leaves a checkpoint the size of its VMs", async () => {
  await withStateDir(async (dir) => {
    const storage = fillableStorage();
    const scheduler = new VirtualClock();
    const transport = new FakeTransport(scheduler);
    let down = true;
    transport.respond = () => {
      if (down) throw new SendFailure("HTTP code 503", false);
    };
    const pipeline = new ReportingPipeline({
      kind: "billing",
      clients: [fakeClient(transport, { maxBatchSize: 1000 })],
      spoolDir: `${dir}/spool`,
      registry: new Registry(),
      clock: scheduler,
      storage: {
        ...storage,
        openAppend(path) {
          const handle = denoStorage.openAppend(path);
          return {
            ...handle,
            write: (bytes) => {
              if (storage.full) throw new Error("No space left on device (os error 28)");
              handle.write(bytes);
            },
          };
        },
      },
    });
    const { clock, source, collector } = setup({ stateDir: dir, storage, sink: pipeline });
    source.list = Array.from({ length: 3 }, (_, i) => vm({ uid: `u${i}` }));
    await collector.recover();
    at(clock, 0);
    collector.begin();
    storage.full = true;
    // An hour of collections and drains with the disk full and the destination down.
    for (let t = 4; t <= 3600; t += 4) {
      at(clock, t);
      await collector.collect();
      if (t % 24 === 0) await collector.drain();
    }
    storage.full = false;
    at(clock, 3604);
    await collector.collect();
    const size = readCheckpoint(dir)!.length;
    assert.ok(size < 1500, `checkpoint of ${size} bytes for 3 VMs after an hour`);
    assert.deepEqual(JSON.parse(readCheckpoint(dir)!).pending, []);
    // The destination comes back: the whole hour goes out from memory.
    down = false;
    pipeline.start();
    assert.deepEqual(await pipeline.stop(), []);
    const { events } = JSON.parse(transport.attempts.at(-1)!.body);
    assert.equal(events.length, 3 * 2 * 150, "150 drains of 3 VMs, 2 events each");
  });
});

Deno.test("collector: an unreadable checkpoint is moved aside, not overwritten", async () => {
  await withStateDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/${CHECKPOINT_FILE}`, "{not json");
    const { clock, source, sink, collector, registry } = setup({ stateDir: dir });
    await collector.recover();
    source.list = [vm({ uid: "a" })];
    at(clock, 0);
    collector.begin();
    await collector.collect();
    assert.deepEqual(sink.events, []);
    const names = await Array.fromAsync(Deno.readDir(dir), (e) => e.name);
    assert.equal(names.length, 2);
    const aside = names.find((name) => name.startsWith(`${CHECKPOINT_FILE}.corrupt-`));
    assert.ok(aside);
    assert.equal(await Deno.readTextFile(`${dir}/${aside}`), "{not json");
    const errors = await metricValues(registry, "autoscaling_agent_billing_collector_errors_total");
    assert.deepEqual(errors, [{ labels: { cause: "checkpoint_read" }, value: 1 }]);
  });
});

Deno.test("collector: run() recovers first, checkpoints, and leaves nothing after a stop", async () => {
  await withStateDir(async (dir) => {
    const clock = new ManualBillingClock(BASE_NS);
    const stop = new AbortController();
    const { source, sink, collector } = setup({
      clock,
      stateDir: dir,
      sleep: virtualSleep(clock, 50, stop),
    });
    source.list = [vm({ uid: "a" })];
    await collector.run(stop.signal);
    assert.deepEqual(sink.parsed().map((e) => e.value), [24, 24, 24, 24, 2, 2]);
    const checkpoint = JSON.parse(readCheckpoint(dir)!);
    assert.equal(checkpoint.generation, 3);
    assert.equal(checkpoint.hostname, HOST);
    assert.deepEqual([checkpoint.history, checkpoint.pending], [[], []]);

    const next = setup({ stateDir: dir });
    await next.collector.recover();
    assert.deepEqual(next.sink.events, []);
  });
});

Deno.test("collector: a drain in the same microsecond as the previous one still gets its own keys", async () => {
  const { clock, source, sink, collector } = setup();
  at(clock, 0.5);
  collector.begin();
  source.list = [vm({ uid: "x", endpoint: "ep-1", cpus: "2" })];
  for (const t of [0.5, 4, 8, 12, 16, 20, 24]) {
    at(clock, t);
    await collector.collect();
  }
  at(clock, 24.5);
  await collector.drain();
  // The clock has not moved: a last collection and a drain at the very same instant.
  await collector.collect();
  await collector.drain();
  const keys = sink.parsed().map((e) => String(e.idempotency_key));
  assert.equal(keys.length, 4);
  assert.equal(new Set(keys).size, 4, keys.join("\n"));
  const last = sink.parsed().slice(2);
  assert.equal(last[0].start_time, wall(24.5));
  // 24.5 s is …00.844007537Z: the drain instant moves on to the next whole microsecond.
  assert.equal(last[0].stop_time, "2024-04-12T12:10:00.844008Z");
  assert.equal(last[0].value, 1, "the half second [24, 24.5] at 2 vCPU");
});
