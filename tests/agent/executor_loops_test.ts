import assert from "node:assert/strict";
import {
  type DownscaleResult,
  GenerationCounter,
  type MonitorClient,
  type MonitorHandle,
  type NeonVMClient,
  type PluginClient,
} from "../../agent/executor/clients.ts";
import { ExecutorCore } from "../../agent/executor/core.ts";
import {
  runMonitorDownscaleLoop,
  runMonitorUpscaleLoop,
  runNeonVMLoop,
  runPluginLoop,
} from "../../agent/executor/loops.ts";
import type {
  ActionNeonVMRequest,
  ApiMetrics,
  PluginResponse,
  Resources,
  RevisionWithTime,
} from "../../core/mod.ts";
import { baselineConfig, cu, loadForCU, makeVm, metricsFor, rev0 } from "../core/helpers.ts";
import { VirtualClock } from "../../lib/virtual_clock.ts";
import { recordingLog } from "../support/log.ts";
import { settle, waitFor } from "../support/wait.ts";
import type { Result } from "../../lib/result.ts";

// The executor's ports, implemented here: each call waits until the test answers it.

interface Call<A, R> {
  args: A;
  answer(outcome: Result<R>): void;
}

function pending<A, R>(calls: Call<A, R>[], args: A): Promise<Result<R>> {
  const { promise, resolve } = Promise.withResolvers<Result<R>>();
  calls.push({ args, answer: resolve });
  return promise;
}

class FakePlugin implements PluginClient {
  calls: Call<
    {
      lastPermit: Resources | null;
      target: Resources;
      metrics: ApiMetrics | null;
      signal: AbortSignal;
    },
    PluginResponse
  >[] = [];
  request(
    lastPermit: Resources | null,
    target: Resources,
    metrics: ApiMetrics | null,
    signal: AbortSignal,
  ) {
    return pending(this.calls, { lastPermit, target, metrics, signal });
  }
}

class FakeNeonVM implements NeonVMClient {
  calls: Call<ActionNeonVMRequest, void>[] = [];
  request(patch: ActionNeonVMRequest) {
    return pending(this.calls, patch);
  }
}

class FakeHandle implements MonitorHandle {
  downscales: Call<{ current: Resources; target: Resources }, DownscaleResult>[] = [];
  upscales: Call<{ current: Resources; target: Resources }, void>[] = [];
  constructor(readonly generation: number) {}
  downscale(current: Resources, target: Resources) {
    return pending(this.downscales, { current, target });
  }
  upscale(current: Resources, target: Resources) {
    return pending(this.upscales, { current, target });
  }
}

class FakeMonitor implements MonitorClient {
  counter = new GenerationCounter();
  handle: FakeHandle | null = null;
  connect(): FakeHandle {
    this.handle = new FakeHandle(this.counter.increment());
    return this.handle;
  }
  currentGeneration() {
    return this.counter.get();
  }
  getHandle() {
    return this.handle;
  }
}

/** Moves one millisecond per reading, so the order of timestamps shows. */
class SteppingClock extends VirtualClock {
  #readings = 0;
  override now(): number {
    return super.now() + this.#readings++;
  }
}

function start(loop: (signal: AbortSignal) => Promise<void>) {
  const stop = new AbortController();
  const done = loop(stop.signal);
  return {
    signal: stop.signal,
    async stop() {
      stop.abort();
      await done;
    },
  };
}

Deno.test("plugin loop: waits for a change, then requests and records success and failure", async () => {
  const clock = new VirtualClock({ startMs: 1000 });
  const log = recordingLog();
  const core = new ExecutorCore(makeVm(), baselineConfig(), { clock });
  const plugin = new FakePlugin();
  const loop = start((signal) => runPluginLoop(signal, core, plugin, log));

  // The core wants a request from the start, but the loop only looks after a change.
  assert.ok(core.getActions().actions.pluginRequest);
  await settle();
  assert.equal(plugin.calls.length, 0);

  core.updateSystemMetrics(metricsFor(loadForCU(2)));
  await waitFor(() => plugin.calls.length === 1);
  assert.deepEqual({ ...plugin.calls[0].args, signal: undefined }, {
    lastPermit: null,
    target: cu(1),
    metrics: { loadAvg1M: 0.25 },
    signal: undefined,
  });
  assert.equal(plugin.calls[0].args.signal, loop.signal);
  assert.equal(core.dump().plugin.ongoingRequest, true);
  assert.deepEqual(core.dump().plugin.lastRequest, { at: 1000, resources: cu(1) });

  await clock.runUntil(1300);
  plugin.calls[0].answer({ ok: true, value: { permit: cu(1) } });
  // Its own update wakes the loop: the permit is known now, so it asks for the goal.
  await waitFor(() => plugin.calls.length === 2);
  assert.deepEqual(core.dump().plugin.permit, cu(1));
  assert.equal(core.dump().plugin.lastFailureAt, null);
  assert.deepEqual(plugin.calls[1].args.lastPermit, cu(1));
  assert.deepEqual(plugin.calls[1].args.target, cu(2));
  assert.deepEqual(core.dump().plugin.lastRequest, { at: 1300, resources: cu(2) });

  await clock.runUntil(1500);
  plugin.calls[1].answer({ ok: false, error: new Error("connection refused") });
  await waitFor(() => !core.dump().plugin.ongoingRequest);
  assert.equal(core.dump().plugin.lastFailureAt, 1500);
  assert.deepEqual(core.dump().plugin.permit, cu(1));
  await loop.stop();

  assert.deepEqual(log.messages(), [
    "starting plugin request",
    "plugin request successful",
    "starting plugin request",
    "plugin request failed",
  ]);
  const failed = log.lines[3].fields;
  assert.equal(failed.duration, 0.2);
  assert.equal(failed.error, "connection refused");
  assert.deepEqual((failed.action as { target: Resources }).target, cu(2));
  assert.deepEqual(log.lines[1].fields.response, { permit: cu(1) });
});

Deno.test("plugin loop: a response the core rejects is logged and counts as a failure", async () => {
  const clock = new VirtualClock({ startMs: 1000 });
  const log = recordingLog();
  const core = new ExecutorCore(makeVm(), baselineConfig(), { clock });
  const plugin = new FakePlugin();
  const loop = start((signal) => runPluginLoop(signal, core, plugin, log));
  core.update(() => {});
  await waitFor(() => plugin.calls.length === 1);
  await clock.runUntil(1100);
  plugin.calls[0].answer({ ok: true, value: { permit: cu(3) } });
  await waitFor(() => log.messages("error").length === 1);
  await loop.stop();
  assert.deepEqual(log.messages("error"), ["plugin response validation failed"]);
  assert.match(String(log.lines.at(-1)!.fields.error), /exceeds the request/);
  assert.equal(core.dump().plugin.permit, null);
  assert.equal(core.dump().plugin.lastFailureAt, 1100);
});

Deno.test("plugin loop: returns when the scope ends, also before any change", async () => {
  const core = new ExecutorCore(makeVm(), baselineConfig());
  const loop = start((signal) => runPluginLoop(signal, core, new FakePlugin()));
  await settle();
  await loop.stop();
});

function wantsUpscalePatch(core: ExecutorCore): void {
  core.update((s) => {
    s.updateSystemMetrics(metricsFor(loadForCU(2)));
    s.plugin().startingRequest(900, cu(2));
    assert.equal(s.plugin().requestSuccessful(950, rev0(900), { permit: cu(2) }), null);
  });
}

Deno.test("NeonVM loop: the send time stamps the revision and the outcome", async () => {
  const clock = new SteppingClock({ startMs: 2000 });
  const log = recordingLog();
  const core = new ExecutorCore(makeVm(), baselineConfig(), { clock });
  const neonvm = new FakeNeonVM();
  const loop = start((signal) => runNeonVMLoop(signal, core, neonvm, log));
  wantsUpscalePatch(core);
  await waitFor(() => neonvm.calls.length === 1);
  const { current, target, targetRevision, priority } = neonvm.calls[0].args;
  assert.deepEqual({ current, target, priority }, {
    current: cu(1),
    target: cu(2),
    priority: "upscale",
  });
  assert.deepEqual(core.dump().neonvm.ongoingRequested, cu(2));

  // The patch takes long; its outcome is still stamped with the moment it was sent.
  await clock.runUntil(9000);
  neonvm.calls[0].answer({ ok: false, error: new Error("409 conflict") });
  await waitFor(() => core.dump().neonvm.ongoingRequested === null);
  await loop.stop();

  const computedAt = (log.lines[0].fields.action as { targetRevision: RevisionWithTime })
    .targetRevision.updatedAt;
  assert.ok(targetRevision.updatedAt > computedAt, "stamped after the actions were computed");
  assert.ok(targetRevision.updatedAt < 9000);
  assert.equal(core.dump().neonvm.requestFailedAt, targetRevision.updatedAt);
  assert.deepEqual(log.messages(), ["starting NeonVM request", "NeonVM request failed"]);
  // Start and end one clock reading apart: the logged duration is ~0 however long it took.
  assert.equal(log.lines[1].fields.duration, 0.001);
  assert.equal(log.lines[1].fields.error, "409 conflict");
});

Deno.test("NeonVM loop: success makes the core assume the new size", async () => {
  const log = recordingLog();
  const core = new ExecutorCore(makeVm(), baselineConfig(), {
    clock: new VirtualClock({ startMs: 2000 }),
  });
  const neonvm = new FakeNeonVM();
  const loop = start((signal) => runNeonVMLoop(signal, core, neonvm, log));
  wantsUpscalePatch(core);
  await waitFor(() => neonvm.calls.length === 1);
  neonvm.calls[0].answer({ ok: true, value: undefined });
  await waitFor(() => core.dump().neonvm.ongoingRequested === null);
  await loop.stop();
  assert.deepEqual(core.dump().neonvm.lastSuccess, null, "the core keeps no copy of it");
  assert.equal(core.dump().vm.cpu.use, 500);
  assert.equal(core.dump().vm.mem.use, 2);
  assert.deepEqual(log.messages(), ["starting NeonVM request", "NeonVM request successful"]);
});

// A VM at 2 CU whose metrics want 1 CU, with the monitor connected: the core asks to downscale.
function downscaleSetup(monitor: FakeMonitor) {
  const clock = new VirtualClock({ startMs: 1000 });
  const core = new ExecutorCore(
    makeVm({ cpu: { min: 250, max: 1000, use: 500 }, mem: { min: 1, max: 4, use: 2 } }),
    baselineConfig(),
    { clock },
  );
  const handle = monitor.connect();
  return {
    core,
    clock,
    handle,
    trigger: () =>
      core.update((s) => {
        s.updateSystemMetrics(metricsFor(loadForCU(1)));
        s.plugin().startingRequest(900, cu(2));
        s.plugin().requestSuccessful(950, rev0(900), { permit: cu(2) });
        s.monitor().active(true);
      }),
  };
}

Deno.test("monitor downscale loop: approval, denial and failure reach the core", async (t) => {
  for (
    const [name, outcome, check] of [
      ["approved", { ok: true, value: { ok: true, status: "" } }, (core: ExecutorCore) => {
        assert.deepEqual(core.dump().monitor.approved, cu(1));
      }],
      ["denied", { ok: true, value: { ok: false, status: "no" } }, (core: ExecutorCore) => {
        assert.deepEqual(core.dump().monitor.deniedDownscale, {
          at: 1400,
          current: cu(2),
          requested: cu(1),
        });
        assert.deepEqual(core.dump().monitor.approved, cu(2));
      }],
      ["failed", { ok: false, error: new Error("timed out") }, (core: ExecutorCore) => {
        assert.equal(core.dump().monitor.downscaleFailureAt, 1400);
      }],
    ] as const
  ) {
    await t.step(name, async () => {
      const monitor = new FakeMonitor();
      const log = recordingLog();
      const { core, clock, handle, trigger } = downscaleSetup(monitor);
      const loop = start((signal) => runMonitorDownscaleLoop(signal, core, monitor, log));
      trigger();
      await waitFor(() => handle.downscales.length === 1);
      assert.deepEqual(handle.downscales[0].args, { current: cu(2), target: cu(1) });
      assert.deepEqual(core.dump().monitor.ongoingRequest, {
        kind: "downscale",
        requested: cu(1),
      });
      await clock.runUntil(1400);
      handle.downscales[0].answer(outcome);
      await waitFor(() => core.dump().monitor.ongoingRequest === null);
      await loop.stop();
      check(core);
      assert.equal(log.lines[1].fields.unchanged, true);
      assert.equal(log.lines[1].fields.duration, 0.4);
    });
  }
});

Deno.test("monitor downscale loop: a result from a replaced connection is discarded", async () => {
  const monitor = new FakeMonitor();
  const log = recordingLog();
  const { core, handle, trigger } = downscaleSetup(monitor);
  const loop = start((signal) => runMonitorDownscaleLoop(signal, core, monitor, log));
  trigger();
  await waitFor(() => handle.downscales.length === 1);

  // The connection drops meanwhile: the Runner resets the core's monitor state and reconnects.
  core.resetMonitor(() => monitor.counter.increment());
  core.monitorActive(true, () => monitor.connect());
  handle.downscales[0].answer({ ok: true, value: { ok: true, status: "" } });
  await waitFor(() => log.messages("warn").length === 1);
  // The approval was for the old connection: the new one starts from the VM's current size.
  assert.deepEqual(core.dump().monitor.approved, cu(2));

  // The loop carries on, asking again over the new connection.
  await waitFor(() => monitor.handle!.downscales.length === 1);
  assert.equal(monitor.handle!.generation, 3);
  monitor.handle!.downscales[0].answer({ ok: false, error: new Error("x") });
  await loop.stop();

  assert.deepEqual(log.messages().slice(0, 4), [
    "starting vm-monitor downscale request",
    "vm-monitor approved downscale",
    "skipping state update after vm-monitor downscale request: connection changed",
    "starting vm-monitor downscale request",
  ]);
  assert.equal(log.lines[1].fields.unchanged, false);
  assert.deepEqual(
    { request: log.lines[2].fields.requestGeneration, now: log.lines[2].fields.currentGeneration },
    { request: 1, now: 3 },
  );
});

Deno.test("monitor downscale loop: a request without a connection is a programming error", async () => {
  const monitor = new FakeMonitor();
  const { core, trigger } = downscaleSetup(monitor);
  monitor.handle = null;
  const stop = new AbortController();
  const loop = runMonitorDownscaleLoop(stop.signal, core, monitor);
  trigger();
  await assert.rejects(loop, /no vm-monitor connection/);
});

Deno.test("monitor upscale loop: notification success and failure reach the core", async () => {
  for (const ok of [true, false]) {
    const monitor = new FakeMonitor();
    const handle = monitor.connect();
    const clock = new VirtualClock({ startMs: 1000 });
    const log = recordingLog();
    const core = new ExecutorCore(makeVm(), baselineConfig(), { clock });
    const loop = start((signal) => runMonitorUpscaleLoop(signal, core, monitor, log));
    core.update((s) => {
      s.updateSystemMetrics(metricsFor(loadForCU(2)));
      s.monitor().active(true);
      s.plugin().startingRequest(900, cu(2));
      s.plugin().requestSuccessful(950, rev0(900), { permit: cu(2) });
      s.neonvm().startingRequest(960, cu(2));
      s.neonvm().requestSuccessful(970);
    });
    await waitFor(() => handle.upscales.length === 1);
    assert.deepEqual(handle.upscales[0].args, { current: cu(1), target: cu(2) });
    await clock.runUntil(1250);
    handle.upscales[0].answer(
      ok ? { ok: true, value: undefined } : { ok: false, error: new Error("send failed") },
    );
    await waitFor(() => core.dump().monitor.ongoingRequest === null);
    await loop.stop();
    if (ok) {
      assert.deepEqual(core.dump().monitor.approved, cu(2));
      assert.deepEqual(log.messages(), [
        "starting vm-monitor upscale request",
        "vm-monitor upscale request successful",
      ]);
    } else {
      assert.deepEqual(core.dump().monitor.approved, cu(1));
      assert.equal(core.dump().monitor.upscaleFailureAt, 1250);
      assert.deepEqual(log.messages("error"), ["vm-monitor upscale request failed"]);
    }
  }
});

Deno.test("loops: an executor that lost the race to a newer action set re-plans", async () => {
  const core = new ExecutorCore(makeVm(), baselineConfig(), {
    clock: new VirtualClock({ startMs: 1000 }),
  });
  const plugin = new FakePlugin();
  // Every time the plugin loop looks, someone else recomputes first: it must never start.
  const original = core.getActions.bind(core);
  let looks = 0;
  core.getActions = () => {
    const mine = original();
    if (looks++ < 3) {
      core.update(() => {});
      original();
    }
    return mine;
  };
  const loop = start((signal) => runPluginLoop(signal, core, plugin));
  core.update(() => {});
  await waitFor(() => plugin.calls.length === 1);
  assert.equal(looks, 4);
  plugin.calls[0].answer({ ok: false, error: new Error("x") });
  await loop.stop();
});
