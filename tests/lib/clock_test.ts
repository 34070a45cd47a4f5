/** The system clock and the virtual clock. */

import assert from "node:assert/strict";
import { SystemClock } from "../../lib/clock.ts";
import { VirtualClock } from "../../lib/virtual_clock.ts";

Deno.test("clock: the system clock gives nanosecond wall times close to Date.now()", () => {
  const clock = new SystemClock();
  let previous = clock.instant();
  let subMillisecond = false;
  for (let i = 0; i < 200; i++) {
    // Bracketed by two readings of Date.now(), so that a pause of this process in between (the
    // machine is shared) cannot fail it; the clock may differ from Date.now() by 1 ms of anchor.
    const before = BigInt(Date.now()) * 1_000_000n;
    const now = clock.instant();
    const after = BigInt(Date.now() + 1) * 1_000_000n;
    assert.ok(now.monoNs >= previous.monoNs);
    assert.ok(now.wallNs >= before - 1_000_000n && now.wallNs <= after + 1_000_000n);
    if (now.wallNs % 1_000_000n !== 0n) subMillisecond = true;
    previous = now;
  }
  assert.ok(subMillisecond, "wall times carry digits below the millisecond");
});

Deno.test("clock: virtual timers fire in due order, ties in the order they were set", async () => {
  const clock = new VirtualClock({ startMs: 0 });
  const fired: string[] = [];
  clock.timer(20, () => fired.push("b"));
  clock.timer(10, () => fired.push("a"));
  clock.timer(20, () => fired.push("c"));
  const cancel = clock.timer(15, () => fired.push("cancelled"));
  cancel();
  await clock.advance(19);
  assert.deepEqual(fired, ["a"]);
  assert.equal(clock.now(), 19);
  await clock.advance(1);
  assert.deepEqual(fired, ["a", "b", "c"]);
  assert.equal(clock.pendingTimers, 0);
});

Deno.test("clock: a virtual sleep resolves at its time, or false when aborted", async () => {
  const clock = new VirtualClock({ startMs: 0 });
  const slept = clock.sleep(60_000);
  const stop = new AbortController();
  const stopped = clock.sleep(120_000, stop.signal);
  await clock.advance(60_000);
  assert.equal(await slept, true);
  stop.abort();
  assert.equal(await stopped, false);
  assert.equal(clock.pendingTimers, 0, "the aborted sleep took back its timer");
});

Deno.test("clock: a deadline expires on time, or aborts with its parent", async () => {
  const clock = new VirtualClock({ startMs: 0 });
  const deadline = clock.deadline(1000, { reason: new Error("too slow") });
  await clock.advance(400);
  assert.equal(deadline.remainingMs(), 600);
  assert.equal(deadline.signal.aborted, false);
  await clock.advance(600);
  assert.equal(deadline.expired, true);
  assert.equal((deadline.signal.reason as Error).message, "too slow");

  const parent = new AbortController();
  const child = clock.deadline(1000, { signal: parent.signal });
  parent.abort(new Error("parent gone"));
  assert.equal(child.signal.aborted, true);
  assert.equal(child.expired, false);
  assert.equal((child.signal.reason as Error).message, "parent gone");
  assert.equal(clock.pendingTimers, 0, "the parent's abort took back the deadline's timer");
});
