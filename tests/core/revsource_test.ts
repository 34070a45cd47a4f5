/** Revisions and latency tracking. */

import assert from "node:assert/strict";
import {
  DefaultRevisionSource,
  MAX_REVISIONS,
  NilRevisionSource,
  propagate,
  type Revision,
  RevisionFlag,
  type RevisionFlags,
  withTime,
} from "../../core/mod.ts";

const UP = RevisionFlag.upscale;
const DOWN = RevisionFlag.downscale;

/** An observe callback that records its calls. */
function recorder() {
  const calls: [number, RevisionFlags][] = [];
  const cb = (latency: number, flags: RevisionFlags) => {
    calls.push([latency, flags]);
  };
  return { calls, cb };
}

// ---- flags and withTime ----

Deno.test("RevisionFlag: upscale = 1, downscale = 2", () => {
  assert.equal(RevisionFlag.upscale, 1);
  assert.equal(RevisionFlag.downscale, 2);
});

Deno.test("withTime: flat { value, flags, updatedAt }", () => {
  assert.deepStrictEqual(withTime({ value: 7, flags: UP | DOWN }, 12345), {
    value: 7,
    flags: 3,
    updatedAt: 12345,
  });
  assert.deepStrictEqual(withTime({ value: 0, flags: 0 }, 0), { value: 0, flags: 0, updatedAt: 0 });
});

Deno.test("withTime: returns a fresh object and leaves the revision untouched", () => {
  const rev: Revision = { value: 2, flags: DOWN };
  const stamped = withTime(rev, 99);
  stamped.value = 100;
  assert.deepStrictEqual(rev, { value: 2, flags: DOWN });
});

// ---- propagate ----

Deno.test("propagate: no callback and current returned when current equals target", () => {
  const { calls, cb } = recorder();
  const result = propagate(10_000, { value: 3, flags: UP, updatedAt: 1000 }, {
    value: 3,
    flags: DOWN,
  }, cb);
  assert.deepStrictEqual(result, { value: 3, flags: DOWN });
  assert.deepStrictEqual(calls, []);
});

Deno.test("propagate: no callback and current returned when current is newer", () => {
  const { calls, cb } = recorder();
  const result = propagate(10_000, { value: 3, flags: UP, updatedAt: 1000 }, {
    value: 5,
    flags: 0,
  }, cb);
  assert.deepStrictEqual(result, { value: 5, flags: 0 });
  assert.deepStrictEqual(calls, []);
});

Deno.test("propagate: newer target → callback(now − updatedAt, target flags), returns target without time", () => {
  const { calls, cb } = recorder();
  const result = propagate(10_000, { value: 4, flags: UP | DOWN, updatedAt: 2500 }, {
    value: 3,
    flags: DOWN,
  }, cb);
  assert.deepStrictEqual(result, { value: 4, flags: 3 });
  assert.deepStrictEqual(calls, [[7500, 3]]);
});

Deno.test("propagate: from the zero revision", () => {
  const { calls, cb } = recorder();
  const result = propagate(5000, { value: 1, flags: UP, updatedAt: 0 }, { value: 0, flags: 0 }, cb);
  assert.deepStrictEqual(result, { value: 1, flags: UP });
  assert.deepStrictEqual(calls, [[5000, UP]]);
});

Deno.test("propagate: a missing callback is allowed", () => {
  const target = { value: 4, flags: DOWN, updatedAt: 0 };
  assert.deepStrictEqual(propagate(1, target, { value: 1, flags: 0 }), { value: 4, flags: DOWN });
  assert.deepStrictEqual(propagate(1, target, { value: 1, flags: 0 }, null), {
    value: 4,
    flags: DOWN,
  });
});

Deno.test("propagate: repeated acknowledgement is measured once", () => {
  const { calls, cb } = recorder();
  const target = { value: 2, flags: UP, updatedAt: 100 };
  let current: Revision = { value: 1, flags: 0 };
  current = propagate(600, target, current, cb);
  current = propagate(900, target, current, cb);
  assert.deepStrictEqual(current, { value: 2, flags: UP });
  assert.deepStrictEqual(calls, [[500, UP]]);
});

// ---- DefaultRevisionSource ----

Deno.test("MAX_REVISIONS is 100", () => {
  assert.equal(MAX_REVISIONS, 100);
});

Deno.test("DefaultRevisionSource: fresh source issues 1; observed 5 s later → callback(5000, flags)", () => {
  const { calls, cb } = recorder();
  const src = new DefaultRevisionSource(0, cb);
  const rev = src.next(1000, UP);
  assert.deepStrictEqual(rev, { value: 1, flags: UP });
  assert.strictEqual(src.observe(6000, rev), null);
  assert.deepStrictEqual(calls, [[5000, UP]]);
});

Deno.test("DefaultRevisionSource: revisions at 0 s and 5 s; observing #1 at 10 s → 10000, #2 at 12 s → 7000", () => {
  const { calls, cb } = recorder();
  const src = new DefaultRevisionSource(0, cb);
  const r1 = src.next(0, UP);
  const r2 = src.next(5000, DOWN);
  assert.deepStrictEqual([r1, r2], [{ value: 1, flags: UP }, { value: 2, flags: DOWN }]);
  assert.strictEqual(src.observe(10_000, r1), null);
  assert.strictEqual(src.observe(12_000, r2), null);
  assert.deepStrictEqual(calls, [[10_000, UP], [7000, DOWN]]);
});

Deno.test("DefaultRevisionSource: observing the same revision twice → no second callback", () => {
  const { calls, cb } = recorder();
  const src = new DefaultRevisionSource(0, cb);
  const rev = src.next(0, UP);
  assert.strictEqual(src.observe(1000, rev), null);
  assert.strictEqual(src.observe(2000, rev), null);
  assert.deepStrictEqual(calls, [[1000, UP]]);
});

Deno.test("DefaultRevisionSource: initial revision 5 → first next gives 6", () => {
  const src = new DefaultRevisionSource(5);
  assert.deepStrictEqual(src.next(0, DOWN), { value: 6, flags: DOWN });
  assert.deepStrictEqual(src.next(0, UP | DOWN), { value: 7, flags: 3 });
});

Deno.test("DefaultRevisionSource: values increase by one per next, flags passed through", () => {
  const src = new DefaultRevisionSource(0);
  const values = [UP, DOWN, 0, UP | DOWN].map((f, i) => src.next(i, f));
  assert.deepStrictEqual(values, [
    { value: 1, flags: 1 },
    { value: 2, flags: 2 },
    { value: 3, flags: 0 },
    { value: 4, flags: 3 },
  ]);
});

Deno.test("DefaultRevisionSource: observing a newer revision drops older pending ones", () => {
  const { calls, cb } = recorder();
  const src = new DefaultRevisionSource(0, cb);
  const r1 = src.next(0, UP);
  const r2 = src.next(1000, UP);
  const r3 = src.next(2000, DOWN);
  assert.strictEqual(src.observe(5000, r2), null);
  // r1 is older than the new offset: already handled, no callback.
  assert.strictEqual(src.observe(6000, r1), null);
  assert.strictEqual(src.observe(7000, r3), null);
  assert.deepStrictEqual(calls, [[4000, UP], [5000, DOWN]]);
  // Numbering continues after the observed ones.
  assert.deepStrictEqual(src.next(8000, UP), { value: 4, flags: UP });
});

Deno.test("DefaultRevisionSource: the callback gets the observed revision's flags", () => {
  const { calls, cb } = recorder();
  const src = new DefaultRevisionSource(0, cb);
  src.next(0, UP);
  assert.strictEqual(src.observe(300, { value: 1, flags: UP | DOWN }), null);
  assert.deepStrictEqual(calls, [[300, 3]]);
});

Deno.test("DefaultRevisionSource: observing a never-issued revision returns an Error, no throw, no callback", () => {
  const { calls, cb } = recorder();
  const src = new DefaultRevisionSource(0, cb);
  const err = src.observe(1000, { value: 1, flags: UP });
  assert.ok(err instanceof Error);
  src.next(0, UP);
  const err2 = src.observe(1000, { value: 2, flags: UP });
  assert.ok(err2 instanceof Error);
  assert.deepStrictEqual(calls, []);
  // The failed observations changed nothing: revision 1 is still pending and 2 comes next.
  assert.strictEqual(src.observe(1500, { value: 1, flags: UP }), null);
  assert.deepStrictEqual(calls, [[1500, UP]]);
  assert.deepStrictEqual(src.next(2000, DOWN), { value: 2, flags: DOWN });
});

Deno.test("DefaultRevisionSource: revisions at or below the initial revision are ignored", () => {
  const { calls, cb } = recorder();
  const src = new DefaultRevisionSource(5, cb);
  assert.strictEqual(src.observe(1000, { value: 5, flags: UP }), null);
  assert.strictEqual(src.observe(1000, { value: 0, flags: 0 }), null);
  assert.deepStrictEqual(calls, []);
  assert.ok(src.observe(1000, { value: 6, flags: UP }) instanceof Error);
});

Deno.test("DefaultRevisionSource: past MAX_REVISIONS the oldest is dropped and the offset shifts", () => {
  const { calls, cb } = recorder();
  const src = new DefaultRevisionSource(0, cb);
  // Revision k is created at time k * 1000.
  for (let k = 1; k <= MAX_REVISIONS + 1; k++) {
    assert.deepStrictEqual(src.next(k * 1000, UP), { value: k, flags: UP });
  }
  // Revision 1 was forgotten: observing it is a silent no-op (value < offset), not an Error.
  assert.strictEqual(src.observe(500_000, { value: 1, flags: UP }), null);
  assert.deepStrictEqual(calls, []);
  // Revision 2 is still known, with its own creation time.
  assert.strictEqual(src.observe(500_000, { value: 2, flags: UP }), null);
  assert.deepStrictEqual(calls, [[498_000, UP]]);
  // The newest is still matched at the right index.
  assert.strictEqual(src.observe(600_000, { value: 101, flags: DOWN }), null);
  assert.deepStrictEqual(calls, [[498_000, UP], [499_000, DOWN]]);
  assert.deepStrictEqual(src.next(0, UP), { value: 102, flags: UP });
});

Deno.test("DefaultRevisionSource: numbering continues unbroken through overflow", () => {
  const { calls, cb } = recorder();
  const src = new DefaultRevisionSource(0, cb);
  for (let k = 1; k <= 250; k++) src.next(k, 0);
  assert.deepStrictEqual(src.next(1000, UP), { value: 251, flags: UP });
  // Oldest remembered is now 152 (251 - 100 + 1); 151 is forgotten.
  assert.strictEqual(src.observe(2000, { value: 151, flags: 0 }), null);
  assert.deepStrictEqual(calls, []);
  assert.strictEqual(src.observe(2000, { value: 152, flags: 0 }), null);
  assert.deepStrictEqual(calls, [[2000 - 152, 0]]);
  assert.ok(src.observe(2000, { value: 252, flags: 0 }) instanceof Error);
});

Deno.test("DefaultRevisionSource: works without a callback", () => {
  const src = new DefaultRevisionSource(0, null);
  const rev = src.next(0, UP);
  assert.strictEqual(src.observe(10, rev), null);
  assert.ok(new DefaultRevisionSource(0).observe(0, { value: 1, flags: 0 }) instanceof Error);
});

// ---- NilRevisionSource ----

Deno.test("NilRevisionSource: next always returns the zero revision", () => {
  const src = new NilRevisionSource();
  assert.deepStrictEqual(src.next(0, UP), { value: 0, flags: 0 });
  assert.deepStrictEqual(src.next(5000, UP | DOWN), { value: 0, flags: 0 });
  assert.deepStrictEqual(src.next(10_000, DOWN), { value: 0, flags: 0 });
});

Deno.test("NilRevisionSource: observe always returns null", () => {
  const src = new NilRevisionSource();
  assert.strictEqual(src.observe(0, { value: 0, flags: 0 }), null);
  assert.strictEqual(src.observe(1000, { value: 42, flags: UP }), null);
  assert.strictEqual(src.observe(1000, { value: 42, flags: UP }), null);
});
