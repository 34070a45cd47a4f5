import assert from "node:assert/strict";
import {
  decodeBytes,
  decodeMilliCPU,
  encodeBytes,
  encodeMilliCPU,
  formatK8sTime,
  formatQuantityBytes,
  formatQuantityMilliCPU,
  parseQuantity,
  quantityToInt,
  quantityToMilli,
} from "../../sim/quantity.ts";

const milli = (s: string) => quantityToMilli(parseQuantity(s));
const int = (s: string) => quantityToInt(parseQuantity(s));

Deno.test("quantity: grammar and exact milli values", () => {
  assert.equal(milli("0.3"), 300);
  assert.equal(milli("250m"), 250);
  assert.equal(milli(".5"), 500);
  assert.equal(milli("1."), 1000);
  assert.equal(milli("+2"), 2000);
  assert.equal(milli("0.0001"), 1);
  assert.equal(milli("1e-3"), 1);
  assert.equal(milli("1E3"), 1_000_000);
  assert.equal(milli("100n"), 1);
  assert.equal(milli("1500u"), 2);
  assert.equal(milli("-0.5"), -500);
  assert.equal(milli("-0.0001"), 0);
});

Deno.test("quantity: integer values with binary and decimal suffixes", () => {
  assert.equal(int("1Gi"), 1073741824);
  assert.equal(int("1.5Gi"), 1610612736);
  assert.equal(int("1k"), 1000);
  assert.equal(int("1M"), 1_000_000);
  assert.equal(int("0.5"), 1);
  assert.equal(int("8Pi"), 2 ** 53);
  assert.throws(() => int("2E"), /beyond 2\^53/);
  assert.throws(() => int("9Pi"), /beyond 2\^53/);
});

Deno.test("quantity: parse errors", () => {
  for (const bad of ["", ".", "+", "1e", "1Ki5", "1.5.3", "abc", " 1", "1K", "1 Gi", "toString"]) {
    assert.throws(() => parseQuantity(bad), /invalid quantity/, bad);
  }
  assert.throws(() => parseQuantity("1e99999"), /exponent out of range/);
});

Deno.test("quantity: JSON decode of MilliCPU and Bytes", () => {
  for (const v of [0.25, "0.25", "250m"]) assert.equal(decodeMilliCPU(v), 250);
  for (const v of [1, "1", "1000m"]) assert.equal(decodeMilliCPU(v), 1000);
  assert.equal(decodeMilliCPU(null), 0);
  assert.equal(decodeBytes(null), 0);
  assert.equal(decodeBytes(512), 512);
  assert.equal(decodeBytes("1536Mi"), 1610612736);
  assert.equal(decodeBytes(1e21 / 1e12), 1e9);
  assert.throws(() => decodeMilliCPU(undefined), /MilliCPU: expected a quantity/);
  assert.throws(() => decodeMilliCPU({}), /got an object/);
  assert.throws(() => decodeMilliCPU("-1"), /negative/);
  assert.throws(() => decodeBytes("abc"), /Bytes: invalid quantity/);
});

Deno.test("quantity: encodings", () => {
  assert.equal(encodeMilliCPU(2000), 2);
  assert.equal(encodeMilliCPU(250), "250m");
  assert.equal(encodeMilliCPU(1500), "1500m");
  assert.equal(formatQuantityMilliCPU(1000), "1");
  assert.equal(formatQuantityMilliCPU(750), "750m");
  assert.equal(encodeBytes(512), 512);
  assert.equal(encodeBytes(1024), "1Ki");
  assert.equal(encodeBytes(1073741824), "1Gi");
  assert.equal(encodeBytes(1610612736), "1536Mi");
  assert.equal(encodeBytes(3221225472), "3Gi");
  assert.equal(encodeBytes(1000000), "1000000");
  assert.equal(formatQuantityBytes(0), "0");
  assert.equal(formatQuantityBytes(512), "512");
  assert.throws(() => encodeBytes(-1), /non-negative/);
  assert.throws(() => encodeMilliCPU(0.5), /non-negative safe integer/);
});

Deno.test("quantity: Kubernetes time drops the fraction", () => {
  assert.equal(formatK8sTime(Date.UTC(2025, 8, 23, 12, 5, 10, 999)), "2025-09-23T12:05:10Z");
  assert.equal(formatK8sTime(Date.UTC(2025, 8, 23, 12, 5, 10)), "2025-09-23T12:05:10Z");
  assert.throws(() => formatK8sTime(NaN), /invalid time/);
});
