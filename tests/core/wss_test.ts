/** Working-set-size estimation. */

import assert from "node:assert/strict";
import {
  CoreInvariantError,
  estimateTrueWorkingSetSize,
  projectNextHighest,
  type WssEstimatorConfig,
} from "../../core/mod.ts";
import { WSS20 } from "./helpers.ts";

function cfg(initialOffset: number, windowSize: number, factor = 3): WssEstimatorConfig {
  return { maxAllowedIncreaseFactor: factor, initialOffset, windowSize };
}

function assertClose(actual: number, expected: number, eps = 1e-12): void {
  assert.ok(Math.abs(actual - expected) <= eps, `expected ${expected} ± ${eps}, got ${actual}`);
}

// ---- estimateTrueWorkingSetSize ----

Deno.test("estimateTrueWorkingSetSize: WSS20 with offset 4, window 5, factor 3 cuts at t=9 → 190000", () => {
  assert.equal(estimateTrueWorkingSetSize(WSS20, cfg(4, 5)), 190000);
});

Deno.test("estimateTrueWorkingSetSize: WSS20 with offset 14 finds no cut → last value 435000", () => {
  assert.equal(estimateTrueWorkingSetSize(WSS20, cfg(14, 5)), 435000);
});

Deno.test("estimateTrueWorkingSetSize: the factor decides where WSS20 is cut", () => {
  // With factor 1, t=4 already cuts: d1 = 135000 > d0 = 50000.
  assert.equal(estimateTrueWorkingSetSize(WSS20, cfg(4, 5, 1)), 50000);
  // With factor 5, t=9's 185000 > 5 * 40000 = 200000 is false; no later t cuts.
  assert.equal(estimateTrueWorkingSetSize(WSS20, cfg(4, 5, 5)), 435000);
});

Deno.test("estimateTrueWorkingSetSize: the cut compares with strict >", () => {
  // t=1: d0 = 10, d1 = 30 = 3 * 10 → not a cut; the last value is returned.
  assert.equal(estimateTrueWorkingSetSize([0, 10, 40], cfg(1, 2)), 40);
  // One more page after the point makes it a cut at t=1.
  assert.equal(estimateTrueWorkingSetSize([0, 10, 41], cfg(1, 2)), 10);
});

Deno.test("estimateTrueWorkingSetSize: when the preceding slope clamps to 0, any positive following slope cuts", () => {
  // d0 = 0, d1 = 1 > 0 * factor, even with a huge factor.
  assert.equal(estimateTrueWorkingSetSize([5, 5, 6], cfg(1, 2, 1e9)), 5);
  // The preceding slope is negative (10 → 5) and clamps to 0; the following slope is 1.
  assert.equal(estimateTrueWorkingSetSize([10, 5, 6], cfg(1, 2, 1e9)), 5);
});

Deno.test("estimateTrueWorkingSetSize: a negative preceding slope clamps to 0, so a flat following slope does not cut", () => {
  // t=1: d0 = max(0, 5 - 10) = 0, d1 = max(0, 5 - 5) = 0: 0 > 0 is false (unclamped, 0 > -15 would cut).
  // t=2: d0 = 0, d1 = max(0, 4 - 5) = 0: no cut. Result: the last value, 4.
  assert.equal(estimateTrueWorkingSetSize([10, 5, 5, 4], cfg(1, 2)), 4);
});

Deno.test("estimateTrueWorkingSetSize: a negative following slope clamps to 0", () => {
  // t=1: d0 = max(0, 5 - 10) = 0, d1 = max(0, 3 - 5) = 0 → no cut; last value 3.
  assert.equal(estimateTrueWorkingSetSize([10, 5, 3], cfg(1, 2, 0)), 3);
});

Deno.test("estimateTrueWorkingSetSize: the following slope clamps to 0 as well", () => {
  // Only observable with a negative factor: t=1: d0 = 5, d1 = max(0, 0 - 10) = 0 > 5 * -1 → cut.
  // (Unclamped, -10 > -5 would be false and the last value 0 returned.)
  assert.equal(estimateTrueWorkingSetSize([5, 10, 0], cfg(1, 2, -1)), 10);
});

Deno.test("estimateTrueWorkingSetSize: scanning starts at initialOffset", () => {
  const series = [0, 0, 9, 9, 9];
  // Offset 1: t=1 has d0 = 0, d1 = 9 → cut at series[1] = 0.
  assert.equal(estimateTrueWorkingSetSize(series, cfg(1, 2)), 0);
  // Offset 2: t=2 has d0 = 9, d1 = 0; t=3 has d0 = 0, d1 = 0 → no cut → last value.
  assert.equal(estimateTrueWorkingSetSize(series, cfg(2, 2)), 9);
});

Deno.test("estimateTrueWorkingSetSize: examines t up to length - windowSize", () => {
  // w = 1; the last t examined is 2, where d0 = 0 and d1 = 9.
  assert.equal(estimateTrueWorkingSetSize([0, 0, 0, 9], cfg(1, 2)), 0);
  // w = 2: t=2 needs series[4]; with only 4 values no t is examined → last value.
  assert.equal(estimateTrueWorkingSetSize([0, 0, 0, 9], cfg(2, 3)), 9);
});

Deno.test("estimateTrueWorkingSetSize: a series too short for any comparison returns its last value", () => {
  assert.equal(estimateTrueWorkingSetSize([1, 2], cfg(1, 2)), 2);
  assert.equal(estimateTrueWorkingSetSize([7, 3, 2, 1, 8], cfg(4, 5)), 8);
});

Deno.test("estimateTrueWorkingSetSize: uses a window of windowSize - 1 steps on each side", () => {
  // windowSize 3 → w = 2. t=2: d0 = s[2] - s[0] = 2, d1 = s[4] - s[2] = 10 > 6 → cut at s[2] = 2.
  // (With w = 1 the cut would be at t=3 → 3; with w = 3 no t would be examined → 12.)
  assert.equal(estimateTrueWorkingSetSize([0, 1, 2, 3, 12], cfg(2, 3)), 2);
  // t=2: d0 = 2, d1 = 8 - 2 = 6, 6 > 6 is false → no cut → last value 8.
  // (With w = 1, t=3 would cut: d1 = 5 > 3 * 1 → 3.)
  assert.equal(estimateTrueWorkingSetSize([0, 1, 2, 3, 8], cfg(2, 3)), 8);
});

Deno.test("estimateTrueWorkingSetSize: windowSize < 2 throws CoreInvariantError", () => {
  for (const windowSize of [1, 0, -1]) {
    assert.throws(
      () => estimateTrueWorkingSetSize(WSS20, cfg(4, windowSize)),
      CoreInvariantError,
      `windowSize ${windowSize}`,
    );
  }
});

Deno.test("estimateTrueWorkingSetSize: initialOffset < windowSize - 1 throws CoreInvariantError", () => {
  assert.throws(() => estimateTrueWorkingSetSize(WSS20, cfg(3, 5)), CoreInvariantError);
  assert.throws(() => estimateTrueWorkingSetSize(WSS20, cfg(0, 2)), CoreInvariantError);
  // The boundary initialOffset = windowSize - 1 is allowed.
  assert.equal(estimateTrueWorkingSetSize(WSS20, cfg(4, 5)), 190000);
  assert.equal(estimateTrueWorkingSetSize([0, 10, 41], cfg(1, 2)), 10);
});

Deno.test("estimateTrueWorkingSetSize: preconditions are checked even for short series", () => {
  assert.throws(() => estimateTrueWorkingSetSize([1, 2], cfg(0, 2)), CoreInvariantError);
  assert.throws(() => estimateTrueWorkingSetSize([1, 2], cfg(1, 1)), CoreInvariantError);
});

Deno.test("estimateTrueWorkingSetSize: does not mutate the series", () => {
  const series = [...WSS20];
  estimateTrueWorkingSetSize(series, cfg(4, 5));
  assert.deepStrictEqual(series, WSS20);
});

// ---- projectNextHighest ----

Deno.test("projectNextHighest: example [0.5 … 1.0], 0.5 → 1.05", () => {
  const series = [0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0];
  assertClose(projectNextHighest(series, 0.5), 1.05);
});

Deno.test("projectNextHighest: example [0, 0.3, 0.5, 0.6], 2.0 → 0.9", () => {
  assertClose(projectNextHighest([0, 0.3, 0.5, 0.6], 2.0), 0.9);
});

Deno.test("projectNextHighest: example [1, 4, 2, 3], 1 → 7", () => {
  assert.equal(projectNextHighest([1, 4, 2, 3], 1), 7);
});

Deno.test("projectNextHighest: WSS20 first 10 values → 200000; whole series → 437500", () => {
  assert.equal(projectNextHighest(WSS20.slice(0, 10), 0.5), 200000);
  assert.equal(projectNextHighest(WSS20, 0.5), 437500);
});

Deno.test("projectNextHighest: x0 is the raw previous value, decreases are ignored", () => {
  // i=1: x0 = 4, x1 = max(4, 2) = 4 → 4; i=2: x0 = 2 (not 4), x1 = 3 → 3 + 1 * 10 = 13.
  assert.equal(projectNextHighest([4, 2, 3], 10), 13);
  // A pure decrease projects nothing: highest stays the first value.
  assert.equal(projectNextHighest([9, 1], 5), 9);
});

Deno.test("projectNextHighest: highest starts at series[0]", () => {
  assert.equal(projectNextHighest([100, 1, 2], 1), 100);
});

Deno.test("projectNextHighest: two values are enough", () => {
  assert.equal(projectNextHighest([3, 5], 0.5), 6);
  assert.equal(projectNextHighest([3, 5], 0), 5);
});

Deno.test("projectNextHighest: fewer than 2 values throws CoreInvariantError", () => {
  assert.throws(() => projectNextHighest([], 0.5), CoreInvariantError);
  assert.throws(() => projectNextHighest([5], 0.5), CoreInvariantError);
});
