import assert from "node:assert/strict";
import { Alarm } from "../../lib/alarm.ts";
import { Broadcaster, changeOrAlarm } from "../../lib/broadcast.ts";
import { VirtualClock } from "../../lib/virtual_clock.ts";
import { NEVER, settle } from "../support/wait.ts";

Deno.test("broadcast: a receiver sees only broadcasts made after its creation", async () => {
  const b = new Broadcaster();
  b.broadcast();
  b.broadcast();
  const r = b.newReceiver();
  assert.equal(r.pending, false);
  const stop = new AbortController();
  const waiting = r.wait(stop.signal);
  await settle();
  stop.abort();
  assert.equal(await waiting, false);
});

Deno.test("broadcast: wait resolves at once while a broadcast is unseen, until awake()", async () => {
  const b = new Broadcaster();
  const r = b.newReceiver();
  b.broadcast();
  assert.equal(r.pending, true);
  assert.equal(await r.wait(NEVER), true);
  // Waiting does not consume the broadcast.
  assert.equal(await r.wait(NEVER), true);
  r.awake();
  assert.equal(r.pending, false);
});

Deno.test("broadcast: a pending wait resolves on the next broadcast", async () => {
  const b = new Broadcaster();
  const r = b.newReceiver();
  let woke = false;
  const waiting = r.wait(NEVER).then((v) => {
    woke = true;
    return v;
  });
  await settle();
  assert.equal(woke, false);
  b.broadcast();
  assert.equal(await waiting, true);
});

Deno.test("broadcast: several broadcasts before a wait coalesce into one wake-up", async () => {
  const b = new Broadcaster();
  const r = b.newReceiver();
  b.broadcast();
  b.broadcast();
  b.broadcast();
  assert.equal(await r.wait(NEVER), true);
  r.awake();
  assert.equal(r.pending, false);
  assert.equal(b.count, 3);
});

Deno.test("broadcast: receivers are independent", async () => {
  const b = new Broadcaster();
  const r1 = b.newReceiver();
  const r2 = b.newReceiver();
  const both = Promise.all([r1.wait(NEVER), r2.wait(NEVER)]);
  b.broadcast();
  assert.deepEqual(await both, [true, true]);
  r1.awake();
  assert.equal(r1.pending, false);
  assert.equal(r2.pending, true);
});

Deno.test("broadcast: an aborted wait resolves false and is not woken later", async () => {
  const b = new Broadcaster();
  const r = b.newReceiver();
  const stop = new AbortController();
  const waiting = r.wait(stop.signal);
  stop.abort();
  assert.equal(await waiting, false);
  // Already aborted: false without waiting, even with a broadcast pending.
  b.broadcast();
  assert.equal(await r.wait(stop.signal), false);
  assert.equal(await r.wait(NEVER), true);
});

Deno.test("broadcast: a waiting receiver with an interest wakes only when it is met", async () => {
  const b = new Broadcaster<number>();
  const evens = b.newReceiver((n) => n % 2 === 0);
  const all = b.newReceiver();
  let evenWoke = false;
  let allWoke = false;
  const waitingEven = evens.wait(NEVER).then(() => evenWoke = true);
  const waitingAll = all.wait(NEVER).then(() => allWoke = true);
  assert.equal(b.hasInterestedWaiters, true);
  b.broadcast();
  await waitingAll;
  b.wakeInterested(1);
  await settle();
  assert.equal(allWoke, true);
  assert.equal(evenWoke, false);
  b.wakeInterested(2);
  await waitingEven;
  assert.equal(b.hasInterestedWaiters, false);
});

Deno.test("broadcast: a broadcast missed while busy ends the next wait whatever the interest", async () => {
  const b = new Broadcaster<number>();
  const r = b.newReceiver(() => false);
  b.broadcast();
  assert.equal(await r.wait(NEVER), true);
  r.awake();
  const stop = new AbortController();
  const waiting = r.wait(stop.signal);
  b.broadcast();
  b.wakeInterested(0);
  await settle();
  stop.abort();
  assert.equal(await waiting, false);
  // An aborted wait leaves nothing subscribed.
  assert.equal(b.hasInterestedWaiters, false);
});

Deno.test("broadcast: an armed receiver wakes once per arming, and not once disarmed", () => {
  const b = new Broadcaster<number>();
  const r = b.newReceiver((n) => n % 2 === 0);
  let wakes = 0;
  const wake = () => wakes++;
  r.arm(wake);
  r.arm(wake);
  assert.equal(b.hasInterestedWaiters, true);
  b.wakeInterested(1);
  assert.equal(wakes, 0, "the interest is not met by an odd value");
  b.wakeInterested(2);
  assert.equal(wakes, 1, "armed twice, woken once");
  assert.equal(b.hasInterestedWaiters, false, "a waiter leaves when it wakes");
  b.wakeInterested(4);
  assert.equal(wakes, 1, "no wake without arming again");

  r.arm(wake);
  r.disarm();
  assert.equal(b.hasInterestedWaiters, false);
  b.wakeInterested(2);
  assert.equal(wakes, 1);
});

Deno.test("broadcast: a receiver without an interest is woken by every broadcast it is armed for", () => {
  const b = new Broadcaster();
  const r = b.newReceiver();
  let wakes = 0;
  r.arm(() => wakes++);
  b.broadcast();
  b.broadcast();
  assert.equal(wakes, 1);
  assert.equal(r.pending, true, "waking does not mark the broadcast seen");
});

Deno.test("changeOrAlarm: a change, the alarm, or the abort, whichever comes first", async () => {
  const clock = new VirtualClock({ startMs: 0 });
  const b = new Broadcaster();
  const r = b.newReceiver();
  const alarm = new Alarm(clock);
  const stop = new AbortController();

  alarm.setAt(100);
  const first = changeOrAlarm(r, alarm, stop.signal);
  await clock.advance(50);
  b.broadcast();
  assert.equal(await first, "change");
  assert.equal(r.pending, true, "nothing is marked seen");
  r.awake();

  const second = changeOrAlarm(r, alarm, stop.signal);
  await clock.advance(50);
  assert.equal(await second, "alarm");

  // Ringing and a change in the same turn: the change wins.
  alarm.setAt(200);
  const third = changeOrAlarm(r, alarm, stop.signal);
  assert.equal(clock.fireNext(), true);
  b.broadcast();
  assert.equal(await third, "change");
  r.awake();
  assert.equal(alarm.rang, true);

  alarm.setAt(undefined);
  const fourth = changeOrAlarm(r, alarm, stop.signal);
  stop.abort();
  assert.equal(await fourth, "abort");
  assert.equal(b.hasInterestedWaiters, false);
});

Deno.test("changeOrAlarm: returns at once for a pending change or an alarm that rang", async () => {
  const clock = new VirtualClock({ startMs: 0 });
  const b = new Broadcaster();
  const r = b.newReceiver();
  const alarm = new Alarm(clock);
  b.broadcast();
  assert.equal(await changeOrAlarm(r, alarm, NEVER), "change");
  r.awake();
  alarm.setAt(0);
  await clock.advance(0);
  assert.equal(await changeOrAlarm(r, alarm, NEVER), "alarm");
});
