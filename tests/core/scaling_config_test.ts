/** Merging, resolving and validating scaling configurations. */

import assert from "node:assert/strict";
import {
  CoreInvariantError,
  type ResolvedScalingConfig,
  resolveScalingConfig,
  type ScalingConfig,
  validateScalingConfig,
  withOverrides,
} from "../../core/mod.ts";

/** The deployed defaults, with lfcUseLargestWindow set. */
function deployed(): ResolvedScalingConfig {
  return {
    loadAverageFractionTarget: 0.9,
    memoryUsageFractionTarget: 0.75,
    memoryTotalFractionTarget: 0.9,
    enableLFCMetrics: false,
    lfcUseLargestWindow: false,
    lfcToMemoryRatio: 0.75,
    lfcMinWaitBeforeDownscaleMinutes: 5,
    lfcWindowSizeMinutes: 5,
    cpuStableZoneRatio: 0,
    cpuMixedZoneRatio: 0,
  };
}

/** Non-default values everywhere, so overrides are distinguishable from defaults. */
function distinct(): ResolvedScalingConfig {
  return {
    loadAverageFractionTarget: 0.5,
    memoryUsageFractionTarget: 0.5,
    memoryTotalFractionTarget: 0.8,
    enableLFCMetrics: true,
    lfcUseLargestWindow: true,
    lfcToMemoryRatio: 0.6,
    lfcMinWaitBeforeDownscaleMinutes: 15,
    lfcWindowSizeMinutes: 7,
    cpuStableZoneRatio: 0.25,
    cpuMixedZoneRatio: 0.5,
  };
}

const REQUIRED_FIELDS = [
  "loadAverageFractionTarget",
  "memoryUsageFractionTarget",
  "memoryTotalFractionTarget",
  "enableLFCMetrics",
  "lfcToMemoryRatio",
  "lfcMinWaitBeforeDownscaleMinutes",
  "lfcWindowSizeMinutes",
  "cpuStableZoneRatio",
  "cpuMixedZoneRatio",
] as const;

function without(cfg: ScalingConfig, key: keyof ScalingConfig): ScalingConfig {
  const copy: ScalingConfig = { ...cfg };
  delete copy[key];
  return copy;
}

// ---- withOverrides ----

Deno.test("withOverrides: null or undefined overrides give an equal copy of the defaults", () => {
  for (const overrides of [null, undefined]) {
    const defaults = deployed();
    const merged = withOverrides(defaults, overrides);
    assert.deepStrictEqual(merged, deployed());
    assert.notStrictEqual(merged, defaults);
    merged.loadAverageFractionTarget = 1.5;
    assert.equal(defaults.loadAverageFractionTarget, 0.9);
  }
});

Deno.test("withOverrides: an empty override object changes nothing", () => {
  assert.deepStrictEqual(withOverrides(deployed(), {}), deployed());
});

Deno.test("withOverrides: every defined field replaces the default", () => {
  assert.deepStrictEqual(withOverrides(deployed(), distinct()), distinct());
});

Deno.test("withOverrides: only the fields set in overrides change", () => {
  const merged = withOverrides(deployed(), {
    enableLFCMetrics: true,
    memoryUsageFractionTarget: 0.7,
  });
  assert.deepStrictEqual(merged, {
    ...deployed(),
    enableLFCMetrics: true,
    memoryUsageFractionTarget: 0.7,
  });
});

Deno.test("withOverrides: null fields in overrides do not override", () => {
  const overrides: ScalingConfig = {
    loadAverageFractionTarget: null,
    memoryUsageFractionTarget: null,
    memoryTotalFractionTarget: null,
    enableLFCMetrics: null,
    lfcUseLargestWindow: null,
    lfcToMemoryRatio: null,
    lfcMinWaitBeforeDownscaleMinutes: null,
    lfcWindowSizeMinutes: null,
    cpuStableZoneRatio: null,
    cpuMixedZoneRatio: null,
  };
  assert.deepStrictEqual(withOverrides(distinct(), overrides), distinct());
});

Deno.test("withOverrides: undefined fields in overrides do not override", () => {
  const overrides: ScalingConfig = {
    loadAverageFractionTarget: undefined,
    enableLFCMetrics: undefined,
    lfcWindowSizeMinutes: undefined,
  };
  assert.deepStrictEqual(withOverrides(distinct(), overrides), distinct());
});

Deno.test("withOverrides: false and 0 are real values and do override", () => {
  const merged = withOverrides(distinct(), {
    enableLFCMetrics: false,
    lfcUseLargestWindow: false,
    cpuStableZoneRatio: 0,
    cpuMixedZoneRatio: 0,
    loadAverageFractionTarget: 0,
  });
  assert.deepStrictEqual(merged, {
    ...distinct(),
    enableLFCMetrics: false,
    lfcUseLargestWindow: false,
    cpuStableZoneRatio: 0,
    cpuMixedZoneRatio: 0,
    loadAverageFractionTarget: 0,
  });
});

Deno.test("withOverrides: the result is a fresh copy; neither input is mutated", () => {
  const defaults = deployed();
  const overrides: ScalingConfig = { lfcToMemoryRatio: 0.5 };
  const merged = withOverrides(defaults, overrides);
  assert.notStrictEqual(merged, defaults);
  assert.notStrictEqual(merged, overrides);
  merged.lfcToMemoryRatio = 0.1;
  merged.cpuMixedZoneRatio = 0.9;
  assert.deepStrictEqual(defaults, deployed());
  assert.deepStrictEqual(overrides, { lfcToMemoryRatio: 0.5 });
});

Deno.test("withOverrides: fields absent from defaults are filled from overrides", () => {
  const merged = withOverrides({ enableLFCMetrics: false }, { lfcUseLargestWindow: true });
  assert.equal(merged.enableLFCMetrics, false);
  assert.equal(merged.lfcUseLargestWindow, true);
});

// ---- resolveScalingConfig ----

Deno.test("resolveScalingConfig: a complete config resolves to the same values", () => {
  assert.deepStrictEqual(resolveScalingConfig(distinct()), distinct());
  assert.deepStrictEqual(resolveScalingConfig(deployed()), deployed());
});

Deno.test("resolveScalingConfig: absent lfcUseLargestWindow resolves to false", () => {
  const cfg = without(distinct(), "lfcUseLargestWindow");
  assert.deepStrictEqual(resolveScalingConfig(cfg), { ...distinct(), lfcUseLargestWindow: false });
});

Deno.test("resolveScalingConfig: null lfcUseLargestWindow resolves to false", () => {
  const cfg: ScalingConfig = { ...distinct(), lfcUseLargestWindow: null };
  assert.deepStrictEqual(resolveScalingConfig(cfg), { ...distinct(), lfcUseLargestWindow: false });
});

Deno.test("resolveScalingConfig: false and 0 count as present", () => {
  const resolved = resolveScalingConfig(deployed());
  assert.equal(resolved.enableLFCMetrics, false);
  assert.equal(resolved.cpuStableZoneRatio, 0);
  assert.equal(resolved.cpuMixedZoneRatio, 0);
});

Deno.test("resolveScalingConfig: any other missing field throws CoreInvariantError naming it", () => {
  for (const key of REQUIRED_FIELDS) {
    assert.throws(
      () => resolveScalingConfig(without(distinct(), key)),
      (err: unknown) => err instanceof CoreInvariantError && err.message.includes(key),
      `missing ${key}`,
    );
    assert.throws(
      () => resolveScalingConfig({ ...distinct(), [key]: null }),
      (err: unknown) => err instanceof CoreInvariantError && err.message.includes(key),
      `null ${key}`,
    );
  }
});

Deno.test("resolveScalingConfig: the result is a fresh object", () => {
  const cfg = distinct();
  const resolved = resolveScalingConfig(cfg);
  assert.notStrictEqual(resolved, cfg);
  resolved.lfcToMemoryRatio = 0.01;
  assert.equal(cfg.lfcToMemoryRatio, 0.6);
});

// ---- validateScalingConfig ----

Deno.test("validateScalingConfig: valid complete defaults give an empty list", () => {
  assert.deepStrictEqual(validateScalingConfig(deployed(), "defaults"), []);
  assert.deepStrictEqual(validateScalingConfig(distinct(), "defaults"), []);
});

Deno.test("validateScalingConfig: defaults do not require lfcUseLargestWindow", () => {
  assert.deepStrictEqual(
    validateScalingConfig(without(deployed(), "lfcUseLargestWindow"), "defaults"),
    [],
  );
});

Deno.test("validateScalingConfig: defaults require every other field, each problem names it", () => {
  for (const key of REQUIRED_FIELDS) {
    const problems = validateScalingConfig(without(deployed(), key), "defaults");
    assert.equal(problems.length, 1, `missing ${key}: ${JSON.stringify(problems)}`);
    assert.ok(problems[0].includes(key), `missing ${key}: ${problems[0]}`);

    const nullProblems = validateScalingConfig({ ...deployed(), [key]: null }, "defaults");
    assert.equal(nullProblems.length, 1, `null ${key}: ${JSON.stringify(nullProblems)}`);
    assert.ok(nullProblems[0].includes(key), `null ${key}: ${nullProblems[0]}`);
  }
});

Deno.test("validateScalingConfig: an empty config lists all nine required fields in defaults mode", () => {
  const problems = validateScalingConfig({}, "defaults");
  assert.equal(problems.length, REQUIRED_FIELDS.length);
  for (const key of REQUIRED_FIELDS) {
    assert.ok(problems.some((p) => p.includes(key)), `no problem names ${key}`);
  }
});

Deno.test("validateScalingConfig: overrides mode requires nothing", () => {
  assert.deepStrictEqual(validateScalingConfig({}, "overrides"), []);
  assert.deepStrictEqual(validateScalingConfig({ enableLFCMetrics: true }, "overrides"), []);
  assert.deepStrictEqual(validateScalingConfig(deployed(), "overrides"), []);
});

const RANGES: [keyof ScalingConfig, number][] = [
  ["loadAverageFractionTarget", 2],
  ["memoryUsageFractionTarget", 1],
  ["memoryTotalFractionTarget", 1],
];

Deno.test("validateScalingConfig: fraction ranges include 0 and values just below the limit", () => {
  for (const [key, upper] of RANGES) {
    for (const value of [0, upper / 2, upper - 1e-9]) {
      for (const mode of ["defaults", "overrides"] as const) {
        const cfg = mode === "defaults" ? { ...deployed(), [key]: value } : { [key]: value };
        assert.deepStrictEqual(validateScalingConfig(cfg, mode), [], `${key}=${value} ${mode}`);
      }
    }
  }
});

Deno.test("validateScalingConfig: fraction ranges exclude the upper limit and negatives", () => {
  for (const [key, upper] of RANGES) {
    for (const value of [upper, upper + 0.5, -1e-9, -1]) {
      for (const mode of ["defaults", "overrides"] as const) {
        const cfg = mode === "defaults" ? { ...deployed(), [key]: value } : { [key]: value };
        const problems = validateScalingConfig(cfg, mode);
        assert.equal(problems.length, 1, `${key}=${value} ${mode}: ${JSON.stringify(problems)}`);
        assert.ok(problems[0].includes(key), `${key}=${value} ${mode}: ${problems[0]}`);
      }
    }
  }
});

Deno.test("validateScalingConfig: loadAverageFractionTarget may exceed 1 (range [0, 2))", () => {
  assert.deepStrictEqual(
    validateScalingConfig({ loadAverageFractionTarget: 1.5 }, "overrides"),
    [],
  );
  assert.equal(validateScalingConfig({ memoryUsageFractionTarget: 1.5 }, "overrides").length, 1);
  assert.equal(validateScalingConfig({ memoryTotalFractionTarget: 1.5 }, "overrides").length, 1);
});

Deno.test("validateScalingConfig: several problems are all listed", () => {
  const cfg = without(
    { ...deployed(), loadAverageFractionTarget: 2, memoryTotalFractionTarget: 1 },
    "lfcWindowSizeMinutes",
  );
  const problems = validateScalingConfig(cfg, "defaults");
  assert.equal(problems.length, 3, JSON.stringify(problems));
  for (
    const key of ["loadAverageFractionTarget", "memoryTotalFractionTarget", "lfcWindowSizeMinutes"]
  ) {
    assert.ok(problems.some((p) => p.includes(key)), `no problem names ${key}`);
  }

  const overrideProblems = validateScalingConfig(
    { memoryUsageFractionTarget: 1, memoryTotalFractionTarget: -0.1 },
    "overrides",
  );
  assert.equal(overrideProblems.length, 2, JSON.stringify(overrideProblems));
});
