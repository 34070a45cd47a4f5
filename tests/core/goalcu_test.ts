/** Goal compute units. */

import assert from "node:assert/strict";
import {
  calculateGoalCU,
  CoreInvariantError,
  type CoreWarningCode,
  goalCU,
  type LFCMetrics,
  MAX_GOAL_CU,
  type ResolvedScalingConfig,
  type Resources,
  type ScalingGoal,
  type ScalingGoalParts,
  type SystemMetrics,
} from "../../core/mod.ts";
import { WSS20 } from "./helpers.ts";

const GiB = 1024 * 1024 * 1024;
const CU: Resources = { vCPU: 250, mem: GiB };
const PAGE = 8192;

/** Test baseline scaling config. */
function scfg(over: Partial<ResolvedScalingConfig> = {}): ResolvedScalingConfig {
  return {
    loadAverageFractionTarget: 0.5,
    memoryUsageFractionTarget: 0.5,
    memoryTotalFractionTarget: 0.9,
    enableLFCMetrics: false,
    lfcUseLargestWindow: false,
    lfcToMemoryRatio: 0.75,
    lfcMinWaitBeforeDownscaleMinutes: 15,
    lfcWindowSizeMinutes: 5,
    cpuStableZoneRatio: 0,
    cpuMixedZoneRatio: 0,
    ...over,
  };
}

function sys(over: Partial<SystemMetrics> = {}): SystemMetrics {
  return {
    loadAverage1Min: 0,
    loadAverage5Min: 0,
    memoryUsageBytes: 0,
    memoryCachedBytes: 0,
    ...over,
  };
}

function lfc(buckets: number[]): LFCMetrics {
  return {
    cacheHitsTotal: 1,
    cacheMissesTotal: 2,
    cacheWritesTotal: 3,
    approximateWorkingSetSizeBuckets: buckets,
  };
}

interface Run {
  goal: ScalingGoal;
  warnings: CoreWarningCode[];
}

function run(
  cfg: ResolvedScalingConfig,
  system: SystemMetrics | null,
  lfcMetrics: LFCMetrics | null,
  cu: Resources = CU,
): Run {
  const warnings: CoreWarningCode[] = [];
  const goal = calculateGoalCU(cfg, cu, system, lfcMetrics, (w) => warnings.push(w.code));
  return { goal, warnings };
}

function parts(cpu: number | null, mem: number | null, lfcPart: number | null): ScalingGoal {
  return { hasAllMetrics: true, parts: { cpu, mem, lfc: lfcPart } };
}

function assertClose(actual: number | null, expected: number, eps: number): void {
  assert.ok(actual !== null, `expected ${expected}, got null`);
  assert.ok(Math.abs(actual - expected) <= eps, `expected ${expected} ± ${eps}, got ${actual}`);
}

/** lfc part for a projected page count. */
function lfcPartFor(pages: number, ratio = 0.75, cu = CU): number {
  return pages * PAGE / ratio / cu.mem;
}

// ---- worked examples ----

Deno.test("goalCU example 1: load1 0.3, load5 0, LAFT 0.5 → cpu 2.4 → goal 2", () => {
  const { goal } = run(scfg(), sys({ loadAverage1Min: 0.3 }), null);
  assert.deepStrictEqual(goal, { hasAllMetrics: true, parts: { cpu: 2.4, mem: 0, lfc: null } });
  assert.equal(goalCU(goal), 2);
});

Deno.test("goalCU example 2: zone blending with the 1e-6 epsilon → cpu ≈ 5.499997 → goal 5", () => {
  const cfg = scfg({
    loadAverageFractionTarget: 1,
    cpuStableZoneRatio: 0.5,
    cpuMixedZoneRatio: 0.5,
  });
  const { goal } = run(cfg, sys({ loadAverage1Min: 1.75, loadAverage5Min: 1 }), null);
  const w = 0.25 / (0.5 + 1e-6);
  const expected = (w * 1.75 + (1 - w) * 1) / 1 / 0.25;
  assertClose(goal.parts.cpu, expected, 1e-12);
  assertClose(goal.parts.cpu, 5.499997, 1e-6);
  // Without the epsilon the blend would be exactly 0.5 → cpu 5.5 → goal 6.
  assert.equal(goalCU(goal), 5);
});

Deno.test("goalCU example 3: memoryUsage 3 GiB, MUFT 0.75 → mem 4.0 → goal 4", () => {
  const cfg = scfg({ memoryUsageFractionTarget: 0.75 });
  const { goal } = run(cfg, sys({ memoryUsageBytes: 3 * GiB }), null);
  assert.deepStrictEqual(goal.parts, { cpu: 0, mem: 4, lfc: null });
  assert.equal(goalCU(goal), 4);
});

Deno.test("goalCU example 4: WSS20, minWait 5, window 5, ratio 0.75 → lfc ≈ 2.0345 → goal 3", () => {
  const cfg = scfg({ lfcMinWaitBeforeDownscaleMinutes: 5, lfcWindowSizeMinutes: 5 });
  const { goal, warnings } = run(cfg, sys(), lfc(WSS20));
  // projected 200000 pages → 1 638 400 000 B → / 0.75 / 1 GiB.
  assert.equal(goal.parts.lfc, 1638400000 / 0.75 / GiB);
  assert.equal(goal.parts.lfc, lfcPartFor(200000));
  assertClose(goal.parts.lfc, 2.0345, 1e-4);
  assert.deepStrictEqual(warnings, []);
  assert.equal(goalCU(goal), 3);
});

Deno.test("goalCU: WSS20 with minWait 15 → no cut, whole series projected → ≈ 4.4505", () => {
  const { goal } = run(scfg(), sys(), lfc(WSS20));
  assert.equal(goal.parts.lfc, lfcPartFor(437500));
  assertClose(goal.parts.lfc, 4.4505, 1e-4);
  assert.equal(goalCU(goal), 5);
});

Deno.test("goalCU: lfcUseLargestWindow takes the last bucket as the estimate", () => {
  // minWait 5 / window 5 would cut at 190000 with the estimator; the largest window is 435000,
  // so every value from the offset is ≤ estimate and the whole series is projected.
  const cfg = scfg({
    lfcMinWaitBeforeDownscaleMinutes: 5,
    lfcWindowSizeMinutes: 5,
    lfcUseLargestWindow: true,
  });
  assert.equal(run(cfg, sys(), lfc(WSS20)).goal.parts.lfc, lfcPartFor(437500));
  // Same result as minWait 15 without it.
  const cfg15 = scfg({ lfcUseLargestWindow: true });
  assert.equal(run(cfg15, sys(), lfc(WSS20)).goal.parts.lfc, lfcPartFor(437500));
});

Deno.test("goalCU: lfcUseLargestWindow uses the last bucket even when it is not the largest value", () => {
  // The estimate is values[length - 1] = 6, not the maximum 20: the scan stops at index 3.
  const cfg = scfg({
    lfcMinWaitBeforeDownscaleMinutes: 2,
    lfcWindowSizeMinutes: 2,
    lfcUseLargestWindow: true,
  });
  // values: [2, 4, 6, 20, 6]; estimate = 6; end: 1 (4 ≤ 6), 2 (6 ≤ 6), stop at 3 (20 > 6).
  // projection of [2, 4, 6] with 0.5: 6 + 2 * 0.5 = 7 (with the maximum as estimate: 27).
  assert.equal(run(cfg, sys(), lfc([2, 4, 6, 20, 6])).goal.parts.lfc, lfcPartFor(7));
});

// ---- CPU part ----

Deno.test("goalCU: with zone ratios 0 the CPU part uses load1 whenever load1 ≠ load5", () => {
  const { goal } = run(scfg(), sys({ loadAverage1Min: 0.5, loadAverage5Min: 2 }), null);
  assert.equal(goal.parts.cpu, 0.5 / 0.5 / 0.25);
  const same = run(scfg(), sys({ loadAverage1Min: 1, loadAverage5Min: 1 }), null);
  assert.equal(same.goal.parts.cpu, 1 / 0.5 / 0.25);
});

Deno.test("goalCU: blend is 0 when diff ≤ stable band, inclusive", () => {
  const cfg = scfg({
    loadAverageFractionTarget: 1,
    cpuStableZoneRatio: 0.5,
    cpuMixedZoneRatio: 0.5,
  });
  // diff = 0.5 = stable → w = 0 → load5.
  assert.equal(run(cfg, sys({ loadAverage1Min: 1.5, loadAverage5Min: 1 }), null).goal.parts.cpu, 4);
  assert.equal(run(cfg, sys({ loadAverage1Min: 0.5, loadAverage5Min: 1 }), null).goal.parts.cpu, 4);
  assert.equal(run(cfg, sys({ loadAverage1Min: 1.2, loadAverage5Min: 1 }), null).goal.parts.cpu, 4);
});

Deno.test("goalCU: the stable band wins over the mixed band when they coincide (v <= t1 first)", () => {
  // Mixed ratio 0 → t1 = t2 = 0.5; diff = 0.5 satisfies both tests, and v <= t1 is checked first.
  const cfg = scfg({ loadAverageFractionTarget: 1, cpuStableZoneRatio: 0.5, cpuMixedZoneRatio: 0 });
  assert.equal(run(cfg, sys({ loadAverage1Min: 1.5, loadAverage5Min: 1 }), null).goal.parts.cpu, 4);
  // Just beyond the band the blend is 1 → load1.
  assert.equal(run(cfg, sys({ loadAverage1Min: 2, loadAverage5Min: 1 }), null).goal.parts.cpu, 8);
});

Deno.test("goalCU: blend is 1 when diff ≥ mixed band end, inclusive", () => {
  const cfg = scfg({
    loadAverageFractionTarget: 1,
    cpuStableZoneRatio: 0.5,
    cpuMixedZoneRatio: 0.5,
  });
  // diff = 1 = mixed → w = 1 → load1 exactly (the epsilon formula would give ≈ 7.99999).
  assert.equal(run(cfg, sys({ loadAverage1Min: 2, loadAverage5Min: 1 }), null).goal.parts.cpu, 8);
  assert.equal(run(cfg, sys({ loadAverage1Min: 3, loadAverage5Min: 1 }), null).goal.parts.cpu, 12);
});

Deno.test("goalCU: CPU part divides by LAFT and the CU's vCPUs", () => {
  const cfg = scfg({ loadAverageFractionTarget: 0.8 });
  const cu: Resources = { vCPU: 500, mem: 2 * GiB };
  const { goal } = run(cfg, sys({ loadAverage1Min: 2 }), null, cu);
  assert.equal(goal.parts.cpu, 2 / 0.8 / 0.5);
});

// ---- memory part ----

Deno.test("goalCU: memory goal bytes are rounded to whole bytes before dividing", () => {
  const cu: Resources = { vCPU: 250, mem: 4 };
  // 5 / 0.75 = 6.67 → 7 bytes → 7 / 4 = 1.75 (unrounded would be 1.6667).
  const cfg = scfg({ memoryUsageFractionTarget: 0.75 });
  assert.equal(run(cfg, sys({ memoryUsageBytes: 5 }), null, cu).goal.parts.mem, 1.75);
  // 1.25 / 0.5 = 2.5 → rounds half away from zero to 3 → 0.75.
  assert.equal(run(scfg(), sys({ memoryUsageBytes: 1.25 }), null, cu).goal.parts.mem, 0.75);
  // 1.2 / 0.5 = 2.4 → 2 → 0.5.
  assert.equal(run(scfg(), sys({ memoryUsageBytes: 1.2 }), null, cu).goal.parts.mem, 0.5);
});

// ---- hasAllMetrics and warnings ----

Deno.test("goalCU: system metrics without LFC, LFC disabled → hasAllMetrics, no warning", () => {
  const { goal, warnings } = run(scfg(), sys(), null);
  assert.equal(goal.hasAllMetrics, true);
  assert.deepStrictEqual(warnings, []);
});

Deno.test("goalCU: no system metrics → hasAllMetrics false and incompleteMetrics", () => {
  const { goal, warnings } = run(scfg(), null, null);
  assert.deepStrictEqual(goal, {
    hasAllMetrics: false,
    parts: { cpu: null, mem: null, lfc: null },
  });
  assert.deepStrictEqual(warnings, ["incompleteMetrics"]);
});

Deno.test("goalCU: LFC enabled but missing → hasAllMetrics false and incompleteMetrics", () => {
  const { goal, warnings } = run(
    scfg({ enableLFCMetrics: true }),
    sys({ loadAverage1Min: 0.3 }),
    null,
  );
  assert.equal(goal.hasAllMetrics, false);
  assert.deepStrictEqual(warnings, ["incompleteMetrics"]);
  // The parts are still computed from what exists.
  assert.deepStrictEqual(goal.parts, { cpu: 2.4, mem: 0, lfc: null });
});

Deno.test("goalCU: LFC enabled and present with system metrics → hasAllMetrics", () => {
  const cfg = scfg({ enableLFCMetrics: true });
  const { goal, warnings } = run(cfg, sys(), lfc(WSS20));
  assert.equal(goal.hasAllMetrics, true);
  assert.deepStrictEqual(warnings, []);
});

Deno.test("goalCU: LFC present but no system metrics → hasAllMetrics false, lfc part still computed", () => {
  const cfg = scfg({ enableLFCMetrics: true });
  const { goal, warnings } = run(cfg, null, lfc(WSS20));
  assert.deepStrictEqual(goal, {
    hasAllMetrics: false,
    parts: { cpu: null, mem: null, lfc: lfcPartFor(437500) },
  });
  assert.deepStrictEqual(warnings, ["incompleteMetrics"]);
});

Deno.test("goalCU: LFC metrics are used even if enableLFCMetrics is false", () => {
  const cfg = scfg({ enableLFCMetrics: false, lfcMinWaitBeforeDownscaleMinutes: 5 });
  const { goal, warnings } = run(cfg, sys(), lfc(WSS20));
  assert.equal(goal.hasAllMetrics, true);
  assert.equal(goal.parts.lfc, lfcPartFor(200000));
  assert.deepStrictEqual(warnings, []);
});

Deno.test("goalCU: the warning callback is optional", () => {
  const goal = calculateGoalCU(scfg(), CU, null, lfc([1, 2]));
  assert.deepStrictEqual(goal, { hasAllMetrics: false, parts: { cpu: null, mem: null, lfc: 0 } });
});

// ---- insufficient working-set data ----

Deno.test("goalCU: too few buckets → lfc 0 (not null) and insufficientWssData", () => {
  // minWait 5, window 5 → needs offset 4 + 5 = 9 buckets.
  const cfg = scfg({ enableLFCMetrics: true, lfcMinWaitBeforeDownscaleMinutes: 5 });
  const { goal, warnings } = run(cfg, sys(), lfc(WSS20.slice(0, 8)));
  assert.strictEqual(goal.parts.lfc, 0);
  assert.deepStrictEqual(warnings, ["insufficientWssData"]);
  // hasAllMetrics is unaffected by the shortness.
  assert.equal(goal.hasAllMetrics, true);
});

Deno.test("goalCU: exactly offset + window buckets is enough", () => {
  const cfg = scfg({ lfcMinWaitBeforeDownscaleMinutes: 5 });
  const { goal, warnings } = run(cfg, sys(), lfc(WSS20.slice(0, 9)));
  assert.deepStrictEqual(warnings, []);
  // 9 values, offset 4, w 4: t=4 only: d0 = 50000, d1 = 135000 ≤ 150000 → estimate 185000.
  // Scan from 4 up to 185000 → all 9 values; projection → 150000 + 50000 = 200000.
  assert.equal(goal.parts.lfc, lfcPartFor(200000));
});

Deno.test("goalCU: the baseline's minWait 15 needs 19 buckets", () => {
  assert.deepStrictEqual(run(scfg(), sys(), lfc(WSS20.slice(0, 18))).warnings, [
    "insufficientWssData",
  ]);
  assert.deepStrictEqual(run(scfg(), sys(), lfc(WSS20.slice(0, 19))).warnings, []);
});

Deno.test("goalCU: no working-set estimate when data is insufficient → no total-memory part", () => {
  const cfg = scfg({ lfcMinWaitBeforeDownscaleMinutes: 5 });
  const metrics = sys({ memoryUsageBytes: GiB / 4, memoryCachedBytes: 100 * GiB });
  const { goal } = run(cfg, metrics, lfc(WSS20.slice(0, 8).map((v) => v * 100)));
  // Only the usage part: round(0.25 GiB / 0.5) / 1 GiB.
  assert.equal(goal.parts.mem, 0.5);
  assert.equal(goal.parts.lfc, 0);
});

Deno.test("goalCU: warnings come in order incompleteMetrics, insufficientWssData", () => {
  const cfg = scfg({ enableLFCMetrics: true });
  const { goal, warnings } = run(cfg, null, lfc([1, 2, 3]));
  assert.deepStrictEqual(warnings, ["incompleteMetrics", "insufficientWssData"]);
  assert.deepStrictEqual(goal, { hasAllMetrics: false, parts: { cpu: null, mem: null, lfc: 0 } });
});

// ---- projection slice ----

Deno.test("goalCU: scanning for the projection slice starts at the offset", () => {
  // offset 4, window 5; no cut (estimate = last = 0); values before the offset are kept even though
  // 100 > estimate: projection over all 9 values → 100 + (100 - 0) * 0.5 = 150 pages.
  const cfg = scfg({ lfcMinWaitBeforeDownscaleMinutes: 5 });
  const { goal } = run(cfg, sys(), lfc([0, 0, 100, 0, 0, 0, 0, 0, 0]));
  assert.equal(goal.parts.lfc, lfcPartFor(150));
});

Deno.test("goalCU: the projection slice ends at the first value above the estimate", () => {
  // WSS20 / minWait 5: estimate 190000; scan stops at index 10 (250000) → projected 200000, not 437500.
  const cfg = scfg({ lfcMinWaitBeforeDownscaleMinutes: 5 });
  assert.equal(run(cfg, sys(), lfc(WSS20)).goal.parts.lfc, lfcPartFor(200000));
});

// ---- total-memory part ----

Deno.test("goalCU: total-memory part uses the projected working set, capped by cached memory", () => {
  const cfg = scfg({ lfcMinWaitBeforeDownscaleMinutes: 5 });
  const usage = GiB / 4;
  // Plenty of cache: cached = projected 200000 pages = 1 638 400 000 B (not the raw 190000 pages).
  const big = run(cfg, sys({ memoryUsageBytes: usage, memoryCachedBytes: 10 * GiB }), lfc(WSS20));
  assert.equal(big.goal.parts.mem, (1638400000 + usage) / 0.9 / GiB);
  // Little cache: cached = memoryCachedBytes.
  const small = run(cfg, sys({ memoryUsageBytes: usage, memoryCachedBytes: GiB / 2 }), lfc(WSS20));
  assert.equal(small.goal.parts.mem, (GiB / 2 + usage) / 0.9 / GiB);
  // The lfc part is independent of the cap.
  assert.equal(big.goal.parts.lfc, small.goal.parts.lfc);
});

Deno.test("goalCU: memory part is the max of usage part and total part", () => {
  const cfg = scfg({ lfcMinWaitBeforeDownscaleMinutes: 5 });
  // Usage part round(3 GiB / 0.5) / GiB = 6 beats total (cached + 3 GiB) / 0.9 / GiB ≈ 5.03.
  const { goal } = run(
    cfg,
    sys({ memoryUsageBytes: 3 * GiB, memoryCachedBytes: 10 * GiB }),
    lfc(WSS20),
  );
  assert.equal(goal.parts.mem, 6);
});

Deno.test("goalCU: total-memory part applies with LFC disabled when LFC metrics exist", () => {
  const cfg = scfg({ enableLFCMetrics: false, lfcMinWaitBeforeDownscaleMinutes: 5 });
  const { goal } = run(cfg, sys({ memoryCachedBytes: 10 * GiB }), lfc(WSS20));
  assert.equal(goal.parts.mem, 1638400000 / 0.9 / GiB);
});

Deno.test("goalCU: no total-memory part without LFC metrics", () => {
  const { goal } = run(scfg(), sys({ memoryUsageBytes: GiB, memoryCachedBytes: 100 * GiB }), null);
  assert.equal(goal.parts.mem, 2);
});

Deno.test("goalCU: the working-set estimate is truncated to whole bytes", () => {
  // CU memory of 1 byte makes the truncation visible. Three equal buckets of 1 + 2^-14 pages
  // project to 8192.5 bytes; the estimate is 8192 → total = 8192 / 0.5 / 1 = 16384 (not 16385).
  const cu: Resources = { vCPU: 250, mem: 1 };
  const cfg = scfg({
    memoryTotalFractionTarget: 0.5,
    lfcMinWaitBeforeDownscaleMinutes: 2,
    lfcWindowSizeMinutes: 2,
  });
  const v = 1 + 2 ** -14;
  const { goal } = run(cfg, sys({ memoryCachedBytes: 1e12 }), lfc([v, v, v]), cu);
  assert.equal(goal.parts.mem, 16384);
  // The lfc part itself is not truncated.
  assert.equal(goal.parts.lfc, 8192.5 / 0.75 / 1);
});

// ---- WSS preconditions ----

Deno.test("goalCU: minWait < window with enough buckets throws CoreInvariantError", () => {
  // offset 1 < window - 1 = 4.
  const cfg = scfg({ lfcMinWaitBeforeDownscaleMinutes: 2, lfcWindowSizeMinutes: 5 });
  assert.throws(() => run(cfg, sys(), lfc([1, 2, 3, 4, 5, 6])), CoreInvariantError);
});

Deno.test("goalCU: minWait < window with too few buckets does not throw", () => {
  const cfg = scfg({ lfcMinWaitBeforeDownscaleMinutes: 2, lfcWindowSizeMinutes: 5 });
  const { goal, warnings } = run(cfg, sys(), lfc([1, 2, 3, 4, 5]));
  assert.strictEqual(goal.parts.lfc, 0);
  assert.deepStrictEqual(warnings, ["insufficientWssData"]);
});

Deno.test("goalCU: a window below 2 throws CoreInvariantError", () => {
  const cfg = scfg({ lfcMinWaitBeforeDownscaleMinutes: 5, lfcWindowSizeMinutes: 1 });
  assert.throws(() => run(cfg, sys(), lfc(WSS20)), CoreInvariantError);
});

Deno.test("goalCU: a projection slice shorter than 2 throws CoreInvariantError", () => {
  // lfcUseLargestWindow skips the estimator; minWait 1 → offset 0; window 1 → needs 1 bucket.
  const cfg = scfg({
    lfcUseLargestWindow: true,
    lfcMinWaitBeforeDownscaleMinutes: 1,
    lfcWindowSizeMinutes: 1,
  });
  // [5]: slice of length 1.
  assert.throws(() => run(cfg, sys(), lfc([5])), CoreInvariantError);
  // [10, 5]: estimate 5, 10 > 5 at the offset → empty slice.
  assert.throws(() => run(cfg, sys(), lfc([10, 5])), CoreInvariantError);
});

// ---- combined goal ----

Deno.test("goalCU: CPU part rounds to nearest, half away from zero", () => {
  assert.equal(goalCU(parts(2.4, null, null)), 2);
  assert.equal(goalCU(parts(2.5, null, null)), 3);
  assert.equal(goalCU(parts(2.0000001, null, null)), 2);
  assert.equal(goalCU(parts(1.6, 0, 0)), 2);
  assert.equal(goalCU(parts(0.4, 0, 0)), 0);
  assert.equal(goalCU(parts(0.5, 0, 0)), 1);
});

Deno.test("goalCU: memory and LFC parts round up", () => {
  assert.equal(goalCU(parts(null, 2.0000001, null)), 3);
  assert.equal(goalCU(parts(null, null, 2.0000001)), 3);
  assert.equal(goalCU(parts(0, 2.1, 0)), 3);
  assert.equal(goalCU(parts(0, 0.01, 0)), 1);
  assert.equal(goalCU(parts(0, 4, 0)), 4);
  assert.equal(goalCU(parts(0, 0, 3)), 3);
});

Deno.test("goalCU: max of rounded CPU, memory and LFC", () => {
  // cpu 2.4 → 2 and mem 2.1 → ceil 3.
  assert.equal(goalCU(parts(2.4, 2.1, null)), 3);
  assert.equal(goalCU(parts(3.4, 2.1, 2.9)), 3);
  assert.equal(goalCU(parts(4.5, 2.1, 2.9)), 5);
  assert.equal(goalCU(parts(1, 1.5, 2.2)), 3);
  assert.equal(goalCU(parts(2.49, 2, 0)), 2);
});

Deno.test("goalCU: null parts count as 0", () => {
  assert.equal(goalCU(parts(null, null, null)), 0);
  assert.equal(goalCU(parts(null, 1.2, null)), 2);
  assert.equal(goalCU(parts(null, null, 0)), 0);
  assert.equal(goalCU({ hasAllMetrics: false, parts: { cpu: 2.6, mem: null, lfc: null } }), 3);
});

Deno.test("goalCU: does not mutate its inputs", () => {
  const cfg = scfg({ lfcMinWaitBeforeDownscaleMinutes: 5 });
  const cfgCopy = structuredClone(cfg);
  const metrics = sys({ memoryUsageBytes: GiB, loadAverage1Min: 1 });
  const metricsCopy = structuredClone(metrics);
  const l = lfc([...WSS20]);
  const lCopy = structuredClone(l);
  const goal = run(cfg, metrics, l).goal;
  const p: ScalingGoalParts = { ...goal.parts };
  goalCU(goal);
  assert.deepStrictEqual(cfg, cfgCopy);
  assert.deepStrictEqual(metrics, metricsCopy);
  assert.deepStrictEqual(l, lCopy);
  assert.deepStrictEqual(goal.parts, p);
});

Deno.test("goalCU saturates at 2^32 - 1 instead of wrapping; NaN and negatives are 0", () => {
  const goal = (cpu: number | null, mem: number | null = null) =>
    goalCU({ hasAllMetrics: true, parts: { cpu, mem, lfc: null } });
  assert.equal(goal(2 ** 32 - 1), MAX_GOAL_CU);
  assert.equal(goal(2 ** 32), MAX_GOAL_CU, "wrapped, this was 0");
  assert.equal(goal(2 ** 33 + 5), MAX_GOAL_CU, "wrapped, this was 5");
  assert.equal(goal(1e300), MAX_GOAL_CU);
  assert.equal(goal(null, Infinity), MAX_GOAL_CU);
  assert.equal(goal(NaN), 0);
  assert.equal(goal(-3, -7), 0);
});
