import assert from "node:assert/strict";
import type { Outcome, PluginClient } from "../../agent/executor/clients.ts";
import { ExecutorCore } from "../../agent/executor/core.ts";
import { runPluginLoop } from "../../agent/executor/loops.ts";
import { runSleeper } from "../../agent/executor/sleeper.ts";
import type { PluginResponse, Resources } from "../../core/mod.ts";
import { baselineConfig, cu, loadForCU, makeVm, metricsFor, rev0 } from "../core/helpers.ts";
import { ManualClock, recordingLog, runTask, settle, until } from "./executor_helpers.ts";

/** Timers the test fires by hand; a cancelled one no longer fires. */
class FakeTimers {
  calls: { ms: number; cancelled: boolean; fire(): void }[] = [];
  timer = (ms: number, fire: () => void): () => void => {
    const call = {
      ms,
      cancelled: false,
      fire: () => {
        if (!call.cancelled) fire();
      },
    };
    this.calls.push(call);
    return () => call.cancelled = true;
  };
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
  const core = new ExecutorCore(makeVm(), baselineConfig(), { clock: new ManualClock(1000) });
  const updates = countUpdates(core);
  const timers = new FakeTimers();
  (core.clock as ManualClock).timerHook = timers.timer;
  const log = recordingLog();
  const stop = new AbortController();
  const sleeper = runTask(stop.signal, (scope) => runSleeper(scope, core, log));

  settled(core);
  await until(() => timers.calls.length === 1);
  const wait = core.getActions();
  assert.deepEqual(Object.keys(wait.actions), ["wait"]);
  assert.equal(timers.calls[0].ms, wait.actions.wait!.duration);

  const watcher = core.newReceiver();
  timers.calls[0].fire();
  // The deliberate S-4 deviation: a second timer with no outside change in between.
  await until(() => timers.calls.length === 2);
  assert.equal(updates(), 2, "one refresh by the sleeper");
  assert.equal(watcher.pending, true, "the refresh reached the other loops");
  assert.equal(core.getActions().id, wait.id + 1, "and the actions were recomputed");
  assert.deepEqual(log.messages("debug"), ["wait elapsed, refreshing actions"]);

  stop.abort();
  await sleeper;
  assert.equal(timers.calls[1].cancelled, true);
});

Deno.test("sleeper: an outside change keeps a timer whose end stands, replaces one that moved", async () => {
  const clock = new ManualClock(1000);
  const core = new ExecutorCore(makeVm(), baselineConfig(), { clock });
  const updates = countUpdates(core);
  const timers = new FakeTimers();
  (core.clock as ManualClock).timerHook = timers.timer;
  const stop = new AbortController();
  const sleeper = runTask(stop.signal, (scope) => runSleeper(scope, core, undefined));

  settled(core);
  await until(() => timers.calls.length === 1);
  const end = clock.now() + timers.calls[0].ms;

  // Time passes and something unrelated changes: the wait still ends at the same moment.
  clock.t += 250;
  core.update(() => {});
  await settle();
  assert.equal(timers.calls.length, 1, "no new timer");
  assert.equal(timers.calls[0].cancelled, false, "the armed one stays");
  assert.equal(updates(), 2, "only the test's own updates");

  // A later plugin answer moves the next tick: the timer is replaced.
  core.update((s) => {
    s.plugin().startingRequest(clock.now(), cu(1));
    s.plugin().requestSuccessful(clock.now(), rev0(clock.now()), { permit: cu(1) });
  });
  await until(() => timers.calls.length === 2);
  assert.equal(timers.calls[0].cancelled, true);
  assert.ok(clock.now() + timers.calls[1].ms > end, "the new timer ends later");
  assert.equal(updates(), 3);

  // The timer fires together with a change: the change wins, still no refresh, and the wait
  // (which has not ended on the core's clock) gets a timer again.
  timers.calls[1].fire();
  core.update(() => {});
  await until(() => timers.calls.length === 3);
  await settle();
  assert.equal(updates(), 4);
  assert.equal(timers.calls[2].cancelled, false);

  stop.abort();
  await sleeper;
  assert.equal(timers.calls[2].cancelled, true);
});

Deno.test("sleeper: sets no timer while the actions hold no wait, and ends with its scope", async () => {
  const core = new ExecutorCore(makeVm(), baselineConfig(), { clock: new ManualClock(1000) });
  const timers = new FakeTimers();
  (core.clock as ManualClock).timerHook = timers.timer;
  const stop = new AbortController();
  const sleeper = runTask(stop.signal, (scope) => runSleeper(scope, core, undefined));
  core.update(() => {});
  await settle();
  assert.equal(core.getActions().actions.wait, undefined);
  assert.equal(timers.calls.length, 0);
  stop.abort();
  await sleeper;
});

Deno.test("sleeper: with real timers, keeps the plugin ticking without outside changes", async () => {
  const core = new ExecutorCore(makeVm(), baselineConfig({ pluginRequestTick: 50 }));
  const requests: number[] = [];
  const plugin: PluginClient = {
    request(_lastPermit, target: Resources): Promise<Outcome<PluginResponse>> {
      requests.push(Date.now());
      return Promise.resolve({ ok: true, value: { permit: target } });
    },
  };
  const stop = new AbortController();
  const loops = Promise.all([
    runTask(stop.signal, (scope) => runSleeper(scope, core)),
    runTask(stop.signal, (scope) => runPluginLoop(scope, core, plugin)),
  ]);
  core.updateSystemMetrics(metricsFor(loadForCU(1)));
  await until(() => requests.length >= 4, 3000, "four plugin requests");
  stop.abort();
  await loops;
  const gaps = requests.slice(1).map((t, i) => t - requests[i]);
  assert.ok(gaps.every((gap) => gap >= 40), `requests spaced by the tick: ${gaps}`);
});
