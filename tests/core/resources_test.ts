/** Field-wise resource arithmetic. */

import assert from "node:assert/strict";
import {
  convertToAllocation,
  divResources,
  hasFieldGreaterThan,
  hasFieldLessThan,
  increaseFrom,
  type Resources,
  resourcesAdd,
  resourcesEqual,
  resourcesMax,
  resourcesMin,
  resourcesMul,
  saturatingSub,
  validateNonZero,
} from "../../core/mod.ts";

const GiB = 1024 * 1024 * 1024;
const CU: Resources = { vCPU: 250, mem: GiB };

function r(vCPU: number, mem: number): Resources {
  return { vCPU, mem };
}

// ---- comparisons ----

Deno.test("hasFieldGreaterThan: true when CPU alone is greater", () => {
  assert.equal(hasFieldGreaterThan(r(500, GiB), r(250, GiB)), true);
});

Deno.test("hasFieldGreaterThan: true when memory alone is greater", () => {
  assert.equal(hasFieldGreaterThan(r(250, 2 * GiB), r(250, GiB)), true);
});

Deno.test("hasFieldGreaterThan: false for equal values and for smaller values", () => {
  assert.equal(hasFieldGreaterThan(r(250, GiB), r(250, GiB)), false);
  assert.equal(hasFieldGreaterThan(r(249, GiB - 1), r(250, GiB)), false);
  assert.equal(hasFieldGreaterThan(r(0, 0), r(0, 0)), false);
});

Deno.test("hasFieldLessThan: is hasFieldGreaterThan with swapped operands", () => {
  assert.equal(hasFieldLessThan(r(250, GiB), r(500, GiB)), true);
  assert.equal(hasFieldLessThan(r(250, GiB), r(250, 2 * GiB)), true);
  assert.equal(hasFieldLessThan(r(250, GiB), r(250, GiB)), false);
  assert.equal(hasFieldLessThan(r(500, 2 * GiB), r(250, GiB)), false);
});

Deno.test("hasFieldGreaterThan and hasFieldLessThan can both be true at once", () => {
  const cpuUpMemDown = r(500, GiB);
  const other = r(250, 2 * GiB);
  assert.equal(hasFieldGreaterThan(cpuUpMemDown, other), true);
  assert.equal(hasFieldLessThan(cpuUpMemDown, other), true);
  assert.equal(hasFieldGreaterThan(other, cpuUpMemDown), true);
  assert.equal(hasFieldLessThan(other, cpuUpMemDown), true);
});

Deno.test("resourcesEqual: true only when both fields are equal", () => {
  assert.equal(resourcesEqual(r(250, GiB), r(250, GiB)), true);
  assert.equal(resourcesEqual(r(250, GiB), r(251, GiB)), false);
  assert.equal(resourcesEqual(r(250, GiB), r(250, GiB + 1)), false);
  assert.equal(resourcesEqual(r(0, 0), r(0, 0)), true);
});

// ---- min / max / add / sub ----

Deno.test("resourcesMin: field-wise minimum, fields chosen independently", () => {
  assert.deepStrictEqual(resourcesMin(r(500, GiB), r(250, 2 * GiB)), r(250, GiB));
  assert.deepStrictEqual(resourcesMin(r(250, 2 * GiB), r(500, GiB)), r(250, GiB));
  assert.deepStrictEqual(resourcesMin(r(250, GiB), r(250, GiB)), r(250, GiB));
});

Deno.test("resourcesMax: field-wise maximum, fields chosen independently", () => {
  assert.deepStrictEqual(resourcesMax(r(500, GiB), r(250, 2 * GiB)), r(500, 2 * GiB));
  assert.deepStrictEqual(resourcesMax(r(250, 2 * GiB), r(500, GiB)), r(500, 2 * GiB));
  assert.deepStrictEqual(resourcesMax(r(0, 0), r(0, 0)), r(0, 0));
});

Deno.test("resourcesAdd: field-wise sum", () => {
  assert.deepStrictEqual(resourcesAdd(r(250, GiB), r(500, 3 * GiB)), r(750, 4 * GiB));
  assert.deepStrictEqual(resourcesAdd(r(0, 0), r(1, 2)), r(1, 2));
});

Deno.test("saturatingSub: field-wise difference when no field goes negative", () => {
  assert.deepStrictEqual(saturatingSub(r(750, 3 * GiB), r(250, GiB)), r(500, 2 * GiB));
  assert.deepStrictEqual(saturatingSub(r(250, GiB), r(250, GiB)), r(0, 0));
});

Deno.test("saturatingSub: each field clamps at 0 on its own", () => {
  assert.deepStrictEqual(saturatingSub(r(250, 3 * GiB), r(500, GiB)), r(0, 2 * GiB));
  assert.deepStrictEqual(saturatingSub(r(750, GiB), r(250, 3 * GiB)), r(500, 0));
  assert.deepStrictEqual(saturatingSub(r(0, 0), r(250, GiB)), r(0, 0));
});

// ---- mul ----

Deno.test("resourcesMul: multiplies both fields by the factor", () => {
  assert.deepStrictEqual(resourcesMul(CU, 3), r(750, 3 * GiB));
  assert.deepStrictEqual(resourcesMul(CU, 1), r(250, GiB));
  assert.deepStrictEqual(resourcesMul(CU, 0), r(0, 0));
  assert.deepStrictEqual(resourcesMul(CU, 65535), r(250 * 65535, GiB * 65535));
});

Deno.test("resourcesMul: factor 65536 wraps to 0 (a 16-bit factor, as the reference's)", () => {
  assert.deepStrictEqual(resourcesMul(CU, 65536), r(0, 0));
});

Deno.test("resourcesMul: factor 65537 wraps to 1x (16-bit factor)", () => {
  assert.deepStrictEqual(resourcesMul(CU, 65537), r(250, GiB));
  assert.deepStrictEqual(resourcesMul(CU, 65536 + 4), r(1000, 4 * GiB));
});

// ---- div ----

Deno.test("divResources: exact equal multiple returns the quotient", () => {
  assert.equal(divResources(r(500, 2 * GiB), CU), 2);
  assert.equal(divResources(r(250, GiB), CU), 1);
  assert.equal(divResources(r(250 * 7, 7 * GiB), CU), 7);
});

Deno.test("divResources: zero resources are exactly 0 units, not null", () => {
  assert.strictEqual(divResources(r(0, 0), CU), 0);
});

Deno.test("divResources: inexact CPU alone gives null", () => {
  assert.strictEqual(divResources(r(600, 2 * GiB), CU), null);
});

Deno.test("divResources: inexact memory alone gives null", () => {
  assert.strictEqual(divResources(r(500, 2 * GiB + 1), CU), null);
});

Deno.test("divResources: exact in both fields but unequal quotients gives null", () => {
  assert.strictEqual(divResources(r(500, 3 * GiB), CU), null);
  assert.strictEqual(divResources(r(0, GiB), CU), null);
});

Deno.test("divResources: each quotient is reduced modulo 65536", () => {
  // 65537 units in both fields: quotient 65537 mod 65536 = 1.
  assert.equal(divResources(resourcesMulNoWrap(CU, 65537), CU), 1);
  // 65536 units: quotient wraps to 0.
  assert.equal(divResources(resourcesMulNoWrap(CU, 65536), CU), 0);
  // Quotients 65537 (CPU) and 1 (memory) are unequal, but equal after reduction.
  assert.equal(divResources(r(250 * 65537, GiB), CU), 1);
});

function resourcesMulNoWrap(x: Resources, n: number): Resources {
  return { vCPU: x.vCPU * n, mem: x.mem * n };
}

// ---- increaseFrom ----

Deno.test("increaseFrom: flags exactly the fields that grew", () => {
  assert.deepStrictEqual(increaseFrom(r(500, GiB), r(250, GiB)), { cpu: true, memory: false });
  assert.deepStrictEqual(increaseFrom(r(250, 2 * GiB), r(250, GiB)), { cpu: false, memory: true });
  assert.deepStrictEqual(increaseFrom(r(500, 2 * GiB), r(250, GiB)), { cpu: true, memory: true });
  assert.deepStrictEqual(increaseFrom(r(250, GiB), r(250, GiB)), { cpu: false, memory: false });
  assert.deepStrictEqual(increaseFrom(r(0, GiB), r(250, 2 * GiB)), { cpu: false, memory: false });
  assert.deepStrictEqual(increaseFrom(r(500, 0), r(250, GiB)), { cpu: true, memory: false });
});

// ---- validateNonZero ----

Deno.test("validateNonZero: non-zero resources are valid", () => {
  assert.strictEqual(validateNonZero(r(250, GiB)), null);
  assert.strictEqual(validateNonZero(r(1, 1)), null);
});

Deno.test("validateNonZero: zero vCPU is an error naming vCPU", () => {
  const err = validateNonZero(r(0, GiB));
  assert.ok(err instanceof Error);
  assert.match(err.message, /vCPU/);
});

Deno.test("validateNonZero: zero memory is an error naming mem, not vCPU", () => {
  const err = validateNonZero(r(250, 0));
  assert.ok(err instanceof Error);
  assert.match(err.message, /mem/);
  assert.doesNotMatch(err.message, /vCPU/);
});

Deno.test("validateNonZero: vCPU is checked first when both are zero", () => {
  const err = validateNonZero(r(0, 0));
  assert.ok(err instanceof Error);
  assert.match(err.message, /vCPU/);
});

// ---- convertToAllocation ----

Deno.test("convertToAllocation: cpu is milli * 0.001, mem is bytes", () => {
  assert.deepStrictEqual(convertToAllocation(r(250, GiB)), { cpu: 0.25, mem: GiB });
  assert.deepStrictEqual(convertToAllocation(r(1500, 3 * GiB)), { cpu: 1.5, mem: 3 * GiB });
  assert.deepStrictEqual(convertToAllocation(r(1000, 512)), { cpu: 1, mem: 512 });
  assert.deepStrictEqual(convertToAllocation(r(0, 0)), { cpu: 0, mem: 0 });
});

Deno.test("convertToAllocation: float bits match milli * 0.001, not milli / 1000", () => {
  // 9 * 0.001 = 0.009000000000000001, whereas 9 / 1000 = 0.009.
  assert.notStrictEqual(9 * 0.001, 9 / 1000);
  assert.strictEqual(convertToAllocation(r(9, GiB)).cpu, 9 * 0.001);
  assert.strictEqual(convertToAllocation(r(9, GiB)).cpu, 0.009000000000000001);
});

// ---- purity ----

Deno.test("resource operations do not mutate their arguments (all pure)", () => {
  const a = r(500, GiB);
  const b = r(250, 2 * GiB);
  resourcesMin(a, b);
  resourcesMax(a, b);
  resourcesAdd(a, b);
  saturatingSub(a, b);
  resourcesMul(a, 3);
  divResources(a, b);
  increaseFrom(a, b);
  convertToAllocation(a);
  assert.deepStrictEqual(a, r(500, GiB));
  assert.deepStrictEqual(b, r(250, 2 * GiB));
});
