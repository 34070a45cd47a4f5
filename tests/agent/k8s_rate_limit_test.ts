import assert from "node:assert/strict";
import { RateLimitExceeded, TokenBucket } from "../../agent/k8s/rate_limit.ts";

/** Virtual time: `sleep` records the wait and advances the clock instead of waiting. */
class FakeTime {
  now = 1_000_000;
  readonly sleeps: number[] = [];
  readonly clock = { now: () => this.now };
  readonly sleep = (ms: number, signal?: AbortSignal): Promise<void> => {
    signal?.throwIfAborted();
    this.sleeps.push(ms);
    this.now += ms;
    return Promise.resolve();
  };
}

Deno.test("token bucket: starts full, then refills at the rate", () => {
  const time = new FakeTime();
  const bucket = new TokenBucket({ perSecond: 5, burst: 10, clock: time.clock });
  for (let i = 0; i < 10; i++) assert.ok(bucket.tryTake(), `burst token ${i}`);
  assert.equal(bucket.tryTake(), false);
  time.now += 199;
  assert.equal(bucket.tryTake(), false, "not yet a whole token");
  time.now += 1;
  assert.ok(bucket.tryTake());
  time.now += 60_000;
  assert.equal(bucket.available, 10, "never more than the burst");
});

Deno.test("token bucket: take waits in call order, 1/rate apart", async () => {
  const time = new FakeTime();
  const bucket = new TokenBucket({ perSecond: 5, burst: 2, clock: time.clock, sleep: time.sleep });
  await bucket.take();
  await bucket.take();
  assert.deepEqual(time.sleeps, [], "the burst goes without waiting");
  await bucket.take();
  assert.deepEqual(time.sleeps, [200]);
  await bucket.take();
  assert.deepEqual(time.sleeps, [200, 200]);
});

Deno.test("token bucket: queued callers each reserve their own slot", () => {
  const time = new FakeTime();
  const waits: number[] = [];
  const bucket = new TokenBucket({
    perSecond: 10,
    burst: 1,
    clock: time.clock,
    sleep: (ms) => {
      waits.push(ms);
      return new Promise(() => {});
    },
  });
  void bucket.take();
  void bucket.take();
  void bucket.take();
  void bucket.take();
  assert.deepEqual(waits, [100, 200, 300]);
});

Deno.test("token bucket: an aborted wait returns its reservation", async () => {
  const time = new FakeTime();
  const bucket = new TokenBucket({
    perSecond: 1,
    burst: 1,
    clock: time.clock,
    sleep: (_ms, signal) =>
      new Promise((_resolve, reject) => {
        signal?.addEventListener("abort", () => reject(signal.reason), { once: true });
      }),
  });
  assert.ok(bucket.tryTake());
  const controller = new AbortController();
  const waiting = bucket.take(controller.signal);
  assert.equal(bucket.available, -1);
  controller.abort(new Error("stop"));
  await assert.rejects(waiting, /stop/);
  assert.equal(bucket.available, 0);
  await assert.rejects(bucket.take(controller.signal), /stop/, "already aborted: no token taken");
  assert.equal(bucket.available, 0);
});

Deno.test("token bucket: a clock stepping back adds nothing", () => {
  const time = new FakeTime();
  const bucket = new TokenBucket({ perSecond: 1, burst: 1, clock: time.clock });
  assert.ok(bucket.tryTake());
  time.now -= 10_000;
  assert.equal(bucket.tryTake(), false);
  time.now += 10_000;
  assert.equal(bucket.tryTake(), false, "the step back is not counted as elapsed time");
  time.now += 1000;
  assert.ok(bucket.tryTake());
});

Deno.test("token bucket: rejects nonsense settings", () => {
  assert.throws(() => new TokenBucket({ perSecond: 0, burst: 1 }), RangeError);
  assert.throws(() => new TokenBucket({ perSecond: 1, burst: 0 }), RangeError);
  assert.throws(() => new TokenBucket({ perSecond: 1, burst: 1.5 }), RangeError);
});

Deno.test("token bucket: real time with the default sleep", async () => {
  const bucket = new TokenBucket({ perSecond: 50, burst: 1 });
  const started = performance.now();
  await bucket.take();
  await bucket.take();
  await bucket.take();
  assert.ok(performance.now() - started >= 35);
});

Deno.test("token bucket: a wait beyond the caller's deadline fails at once and reserves nothing", async () => {
  const time = new FakeTime();
  const waits: number[] = [];
  const bucket = new TokenBucket({
    perSecond: 10,
    burst: 1,
    clock: time.clock,
    sleep: (ms) => {
      waits.push(ms);
      return new Promise(() => {});
    },
  });
  await bucket.take(undefined, 0);
  void bucket.take(undefined, 100);
  assert.deepEqual(waits, [100], "a wait within the deadline is queued");
  // The next slot is 200 ms away: beyond 150 ms, so no reservation (client-go's x/time/rate).
  await assert.rejects(bucket.take(undefined, 150), RateLimitExceeded);
  await assert.rejects(bucket.take(undefined, 150), /would exceed context deadline/);
  assert.equal(bucket.available, -1, "the rejected calls took no token");
  void bucket.take(undefined, 200);
  assert.deepEqual(waits, [100, 200], "later callers are not pushed back by rejected ones");
});
