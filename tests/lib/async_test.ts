import assert from "node:assert/strict";
import { wakeOrAbort } from "../../lib/async.ts";
import { Alarm } from "../../lib/alarm.ts";
import { VirtualClock } from "../../lib/virtual_clock.ts";
import { settle } from "../support/wait.ts";

Deno.test("wakeOrAbort: resolves on the wake, then takes the wake back", async () => {
  let armed: (() => void) | undefined;
  const arms: string[] = [];
  const waiting = wakeOrAbort(new AbortController().signal, (wake) => {
    arms.push(wake === undefined ? "disarm" : "arm");
    armed = wake;
  });
  let done = false;
  waiting.then(() => done = true);
  await settle();
  assert.equal(done, false);
  armed!();
  await waiting;
  assert.deepEqual(arms, ["arm", "disarm"]);
  assert.equal(armed, undefined, "a stale wake is not kept");
});

Deno.test("wakeOrAbort: resolves on abort, and at once for an aborted signal", async () => {
  const stop = new AbortController();
  const arms: string[] = [];
  const waiting = wakeOrAbort(stop.signal, (wake) => arms.push(wake ? "arm" : "disarm"));
  stop.abort();
  await waiting;
  assert.deepEqual(arms, ["arm", "disarm"]);
  await wakeOrAbort(stop.signal, () => arms.push("never"));
  assert.deepEqual(arms, ["arm", "disarm"], "an aborted signal arms nothing");
});

Deno.test("alarm: rings at its time on the clock, once", async () => {
  const clock = new VirtualClock({ startMs: 0 });
  const alarm = new Alarm(clock);
  let rings = 0;
  alarm.onRing(() => rings++);
  alarm.setAt(100);
  await clock.advance(99);
  assert.equal(alarm.rang, false);
  await clock.advance(1);
  assert.equal(alarm.rang, true);
  assert.equal(rings, 1);
  await clock.advance(1000);
  assert.equal(rings, 1);
});

Deno.test("alarm: re-aimed at the same time it keeps its timer, elsewhere it replaces it", async () => {
  const clock = new VirtualClock({ startMs: 0 });
  const set: number[] = [];
  const timer = clock.timer.bind(clock);
  clock.timer = (ms, fire) => (set.push(ms), timer(ms, fire));
  const alarm = new Alarm(clock);
  alarm.setAt(100);
  await clock.advance(40);
  alarm.setAt(100);
  assert.deepEqual(set, [100], "kept");
  alarm.setAt(120);
  assert.deepEqual(set, [100, 80], "replaced");
  assert.equal(clock.pendingTimers, 1);
  alarm.setAt(undefined);
  assert.equal(clock.pendingTimers, 0, "off");
  await clock.advance(200);
  assert.equal(alarm.rang, false);
  // After it rang, aiming it at the same (past) time sets it again: it rings at once.
  alarm.setAt(300);
  await clock.advance(100);
  assert.equal(alarm.rang, true);
  alarm.setAt(300);
  assert.equal(alarm.rang, false);
  await clock.advance(0);
  assert.equal(alarm.rang, true);
});
