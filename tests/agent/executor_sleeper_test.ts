import assert from "node:assert/strict";
import type { PluginClient } from "../../agent/executor/clients.ts";
import { ExecutorCore } from "../../agent/executor/core.ts";
import { runPluginLoop } from "../../agent/executor/loops.ts";
import { runSleeper } from "../../agent/executor/sleeper.ts";
import type { PluginResponse, Resources } from "../../core/mod.ts";
import { VirtualClock } from "../../lib/virtual_clock.ts";
import { baselineConfig, cu, loadForCU, makeVm, metricsFor, rev0 } from "../core/helpers.ts";
import { recordingLog } from "../support/log.ts";
import { settle, waitFor } from "../support/wait.ts";
import type { Result } from "../../lib/result.ts";

/** A virtual clock that also lists the delay of every timer set on it. */
function countingClock(startMs = 1000): VirtualClock & { set: number[] } {
  const clock = Object.assign(new VirtualClock({ startMs }), { set: [] as number[] });
  const timer = clock.timer.bind(clock);
  clock.timer = (ms, fire) => {
    clock.set.push(ms);
    return timer(ms, fire);
  };
  return clock;
}

/** Counts the updates the sleeper makes (the test's own are subtracted by the caller). */
function countUpdates(core: ExecutorCore): () => number {
  const original = core.update.bind(core);
  let updates = 0;
  core.update = (fn) => {
    updates++;
    original(fn);
  };
  return () => updates;
}

// A VM already at its goal with a permit: the only action is to wait for the plugin tick.
function settled(core: ExecutorCore): void {
  core.update((s) => {
    s.updateSystemMetrics(metricsFor(loadForCU(1)));
    s.plugin().startingRequest(900, cu(1));
    s.plugin().requestSuccessful(900, rev0(900), { permit: cu(1) });
  });
}

Deno.test("sleeper: turns an elapsed wait into a refresh, then re-arms by itself", async () => {
  const clock = countingClock();
  const core = new ExecutorCore(makeVm(), baselineConfig({ neonVMRetryWait: 2000 }), { clock });
  const updates = countUpdates(core);
  const log = recordingLog();
  const stop = new AbortController();
  const sleeper = runSleeper(stop.signal, core, log);

  // A failed patch waits to be retried at 2900, the plugin tick comes at 5900.
  core.update((s) => {
    s.updateSystemMetrics(metricsFor(loadForCU(2)));
    s.plugin().startingRequest(900, cu(2));
    s.plugin().requestSuccessful(900, rev0(900), { permit: cu(2) });
    s.neonvm().startingRequest(900, cu(2));
    s.neonvm().requestFailed(900);
  });
  await waitFor(() => clock.set.length === 1);
  const wait = core.getActions();
  assert.deepEqual(Object.keys(wait.actions), ["wait"]);
  assert.equal(clock.nextDue(), 2900);

  const watcher = core.newReceiver();
  await clock.runUntil(2900);
  // A deliberate difference (docs/differences.md): a second timer with no outside change.
  assert.deepEqual(Object.keys(core.getActions().actions).sort(), ["neonvmRequest", "wait"]);
  assert.equal(clock.set.length, 2);
  assert.equal(clock.nextDue(), 5900);
  assert.equal(updates(), 2, "one refresh by the sleeper");
  assert.equal(watcher.pending, true, "the refresh reached the other loops");
  assert.equal(core.getActions().id, wait.id + 1, "and the actions were recomputed");
  assert.deepEqual(log.messages("debug"), ["wait elapsed, refreshing actions"]);

  stop.abort();
  await sleeper;
  assert.equal(clock.pendingTimers, 0, "its timer is cancelled");
});

Deno.test("sleeper: an outside change keeps a timer whose end stands, replaces one that moved", async () => {
  const clock = countingClock();
  const core = new ExecutorCore(makeVm(), baselineConfig(), { clock });
  const updates = countUpdates(core);
  const stop = new AbortController();
  const sleeper = runSleeper(stop.signal, core);

  settled(core);
  await waitFor(() => clock.set.length === 1);
  const end = clock.nextDue()!;

  // Time passes and something unrelated changes: the wait still ends at the same moment.
  await clock.advance(250);
  core.update(() => {});
  await settle();
  assert.equal(clock.set.length, 1, "no new timer");
  assert.equal(clock.nextDue(), end, "the armed one stays");
  assert.equal(updates(), 2, "only the test's own updates");

  // A later plugin answer moves the next tick: the timer is replaced.
  core.update((s) => {
    s.plugin().startingRequest(clock.now(), cu(1));
    s.plugin().requestSuccessful(clock.now(), rev0(clock.now()), { permit: cu(1) });
  });
  await waitFor(() => clock.set.length === 2);
  assert.equal(clock.pendingTimers, 1, "the first one is cancelled");
  assert.equal(clock.nextDue(), 1250 + end - 900, "the new one ends a tick after the answer");
  assert.equal(updates(), 3);

  // The timer fires together with a change: the change wins, so no refresh of the sleeper's
  // own; the actions it then finds hold the plugin request and no wait.
  assert.equal(clock.fireNext(), true);
  core.update(() => {});
  await settle();
  assert.equal(updates(), 4, "only the test's own updates");
  assert.ok(core.getActions().actions.pluginRequest);
  assert.equal(clock.set.length, 2);
  assert.equal(clock.pendingTimers, 0);

  stop.abort();
  await sleeper;
});

Deno.test("sleeper: sets no timer while the actions hold no wait, and ends with its signal", async () => {
  const clock = new VirtualClock({ startMs: 1000 });
  const core = new ExecutorCore(makeVm(), baselineConfig(), { clock });
  const stop = new AbortController();
  const sleeper = runSleeper(stop.signal, core);
  core.update(() => {});
  await settle();
  assert.equal(core.getActions().actions.wait, undefined);
  assert.equal(clock.pendingTimers, 0);
  stop.abort();
  await sleeper;
});

Deno.test("sleeper: keeps the plugin ticking without outside changes", async () => {
  const clock = new VirtualClock({ startMs: 1000 });
  const core = new ExecutorCore(makeVm(), baselineConfig({ pluginRequestTick: 50 }), { clock });
  const requests: number[] = [];
  const plugin: PluginClient = {
    request(_lastPermit, target: Resources): Promise<Result<PluginResponse>> {
      requests.push(clock.now());
      return Promise.resolve({ ok: true, value: { permit: target } });
    },
  };
  const stop = new AbortController();
  const loops = Promise.all([
    runSleeper(stop.signal, core),
    runPluginLoop(stop.signal, core, plugin),
  ]);
  core.updateSystemMetrics(metricsFor(loadForCU(1)));
  await clock.advance(160);
  stop.abort();
  await loops;
  assert.deepEqual(requests, [1000, 1050, 1100, 1150], "one request per tick, on the tick");
});
