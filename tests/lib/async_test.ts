import assert from "node:assert/strict";
import { repeat } from "../../lib/async.ts";
import { CoalescingSignal } from "../../lib/signal.ts";
import { ManualClock, runTask, settle } from "../agent/executor_helpers.ts";

/** Timers the test fires by hand. */
function manualTimers() {
  const calls: { ms: number; live: boolean; fire: () => void }[] = [];
  const timer = (ms: number, fire: () => void) => {
    const call = { ms, live: true, fire: () => call.live && (call.live = false, fire()) };
    calls.push(call);
    return () => call.live = false;
  };
  const clock = new ManualClock();
  clock.timerHook = timer;
  return { calls, clock };
}

Deno.test("repeat: first delay, then the period after each run has ended", async () => {
  const { calls, clock } = manualTimers();
  const stop = new AbortController();
  const finish: (() => void)[] = [];
  let runs = 0;
  const loop = runTask(stop.signal, (scope) =>
    repeat(scope, clock, 30, 100, () => {
      runs++;
      return new Promise<void>((resolve) => finish.push(resolve));
    }));
  assert.deepEqual(calls.map((c) => c.ms), [30]);
  calls[0].fire();
  assert.equal(runs, 1);
  await settle();
  assert.equal(calls.length, 1, "no timer while the run is in flight");
  finish[0]();
  await settle();
  assert.deepEqual(calls.map((c) => c.ms), [30, 100]);
  stop.abort();
  await loop;
  assert.equal(calls[1].live, false, "the pending timer is cancelled");
  assert.equal(runs, 1);
});

Deno.test("repeat: synchronous runs re-arm at once, and a throwing run rejects", async () => {
  const { calls, clock } = manualTimers();
  let runs = 0;
  const loop = runTask(new AbortController().signal, (scope) =>
    repeat(scope, clock, 0, 5, () => {
      if (++runs === 3) throw new Error("run 3 broke");
    }));
  calls[0].fire();
  calls[1].fire();
  calls[2].fire();
  await assert.rejects(loop, /run 3 broke/);
  assert.equal(calls.length, 3, "no timer after the failure");
});

Deno.test("coalescing signal: notifications before a call count once, a pending one at once", async () => {
  const s = new CoalescingSignal();
  s.notify();
  const stop = new AbortController();
  let calls = 0;
  const listening = runTask(stop.signal, (scope) => s.each(scope, () => calls++));
  await settle();
  assert.equal(calls, 1, "the notification from before the listener");
  s.notify();
  s.notify();
  s.notify();
  assert.equal(calls, 1, "never inside the notifier");
  await settle();
  assert.equal(calls, 2, "three notifications, one call");
  stop.abort();
  await listening;
  s.notify();
  await settle();
  assert.equal(calls, 2, "nothing after the abort");
});

Deno.test("coalescing signal: a throwing listener rejects and stops listening", async () => {
  const s = new CoalescingSignal();
  const listening = runTask(new AbortController().signal, (scope) =>
    s.each(scope, () => {
      throw new Error("listener broke");
    }));
  s.notify();
  await assert.rejects(listening, /listener broke/);
});
