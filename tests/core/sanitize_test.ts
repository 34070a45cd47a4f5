/** Tenant numbers: negative and non-finite metric values become 0, and are named. */

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  type LFCMetrics,
  sanitizeLFCMetrics,
  sanitizeSystemMetrics,
  type SystemMetrics,
} from "../../core/mod.ts";

const good: SystemMetrics = {
  loadAverage1Min: 0.5,
  loadAverage5Min: 0.25,
  memoryUsageBytes: 1e9,
  memoryCachedBytes: 0,
};

Deno.test("sanitizeSystemMetrics: good values pass unchanged, bad ones become 0 and are named", () => {
  assert.deepStrictEqual(sanitizeSystemMetrics(good), { metrics: good, replaced: [] });
  const bad = { ...good, loadAverage1Min: -1, loadAverage5Min: NaN, memoryCachedBytes: Infinity };
  assert.deepStrictEqual(sanitizeSystemMetrics(bad), {
    metrics: { ...good, loadAverage1Min: 0, loadAverage5Min: 0, memoryCachedBytes: 0 },
    replaced: ["loadAverage1Min", "loadAverage5Min", "memoryCachedBytes"],
  });
});

Deno.test("sanitizeLFCMetrics: bad counters and windows become 0", () => {
  const lfc: LFCMetrics = {
    cacheHitsTotal: 1,
    cacheMissesTotal: -2,
    cacheWritesTotal: 3,
    approximateWorkingSetSizeBuckets: [1, NaN, 3, -Infinity],
  };
  assert.deepStrictEqual(sanitizeLFCMetrics(lfc), {
    metrics: { ...lfc, cacheMissesTotal: 0, approximateWorkingSetSizeBuckets: [1, 0, 3, 0] },
    replaced: ["cacheMissesTotal", "approximateWorkingSetSizeBuckets"],
  });
});

Deno.test("sanitizeSystemMetrics: every output value is finite and non-negative", () => {
  const value = fc.oneof(fc.double(), fc.constantFrom(NaN, Infinity, -Infinity, -0));
  fc.assert(fc.property(value, value, value, value, (a, b, c, d) => {
    const { metrics, replaced } = sanitizeSystemMetrics({
      loadAverage1Min: a,
      loadAverage5Min: b,
      memoryUsageBytes: c,
      memoryCachedBytes: d,
    });
    for (const v of Object.values(metrics)) assert.ok(Number.isFinite(v) && v >= 0, String(v));
    assert.equal(replaced.length, [a, b, c, d].filter((v) => !(v >= 0 && v < Infinity)).length);
  }));
});
