import assert from "node:assert/strict";
import {
  decodeBytes,
  decodeMilliCPU,
  encodeBytes,
  encodeMilliCPU,
  formatBytesQuantity,
  formatCpuQuantity,
  formatK8sTime,
  parseK8sTime,
  parseQuantity,
  QuantityError,
  quantityToBytes,
  quantityToMilli,
} from "../../lib/quantity.ts";

Deno.test("quantity: parse to milli and bytes (ceiling, exact decimals)", () => {
  const cases: [string | number, number, number][] = [
    // input, milli, bytes
    ["1", 1000, 1],
    [1, 1000, 1],
    ["0.25", 250, 1],
    [0.25, 250, 1],
    ["250m", 250, 1],
    ["1000m", 1000, 1],
    ["1500m", 1500, 2],
    ["0.3", 300, 1],
    ["0.0001", 1, 1],
    ["1n", 1, 1],
    ["1u", 1, 1],
    [".5", 500, 1],
    ["1.", 1000, 1],
    ["+2", 2000, 2],
    ["1k", 1_000_000, 1000],
    ["1M", 1_000_000_000, 1_000_000],
    ["1Ki", 1_024_000, 1024],
    ["1Mi", 1_048_576_000, 1_048_576],
    ["1Gi", 1_073_741_824_000, 1_073_741_824],
    ["1.5Gi", 1_610_612_736_000, 1_610_612_736],
    ["1536Mi", 1_610_612_736_000, 1_610_612_736],
    ["1e3", 1_000_000, 1000],
    ["1E3", 1_000_000, 1000],
    ["1e-3", 1, 1],
    ["1e+2", 100_000, 100],
    [1e21, 1e24, 1e21],
    ["0", 0, 0],
    ["-0", 0, 0],
    ["-1.5", -1500, -1],
    ["2T", 2e15, 2e12],
    ["1Pi", 1024 ** 5 * 1000, 1024 ** 5],
    ["100n", 1, 1],
    ["1500u", 2, 1],
    ["-0.0001", 0, 0],
    ["8Pi", 2 ** 53 * 1000, 2 ** 53],
  ];
  for (const [input, milli, bytes] of cases) {
    const q = parseQuantity(input);
    if (Math.abs(milli) <= 2 ** 53) {
      assert.equal(quantityToMilli(q), milli, `milli of ${input}`);
    }
    if (Math.abs(bytes) <= 2 ** 53) assert.equal(quantityToBytes(q), bytes, `bytes of ${input}`);
  }
});

Deno.test("quantity: exact arithmetic where floats go wrong", () => {
  assert.equal(Math.ceil(2.007 * 1000), 2008, "the float pitfall this guards against");
  assert.equal(quantityToMilli(parseQuantity("2.007")), 2007);
  assert.equal(quantityToMilli(parseQuantity(2.007)), 2007);
  assert.equal(quantityToMilli(parseQuantity("0.3")), 300);
  assert.equal(quantityToMilli(parseQuantity("0.1")), 100);
  assert.equal(quantityToMilli(parseQuantity("1.0005")), 1001, "rounds up");
  assert.equal(quantityToBytes(parseQuantity("0.1Ki")), 103, "102.4 rounds up");
  assert.deepEqual(parseQuantity("1.5Gi"), { mantissa: 15n * 1024n ** 3n, exponent: -1 });
});

Deno.test("quantity: parse errors", () => {
  for (
    const bad of [
      ...["", "+", "-", ".", "abc", "1.5.5", "1x", "1 ", " 1", "1mi", "1KI", "Ki", "1e"],
      ...["1Ki5", "1K", "1 Gi", "toString", "1e3.5"],
    ]
  ) {
    assert.throws(() => parseQuantity(bad), QuantityError, JSON.stringify(bad));
  }
  assert.throws(() => parseQuantity(NaN), QuantityError);
  assert.throws(() => parseQuantity(Infinity), QuantityError);
  assert.throws(() => parseQuantity("1e1001"), /exponent out of range/);
});

Deno.test("quantity: values beyond 2^53 are rejected, not rounded", () => {
  assert.equal(quantityToBytes(parseQuantity(String(2 ** 53))), 2 ** 53);
  assert.throws(() => quantityToBytes(parseQuantity("9007199254740993")), /beyond 2\^53/);
  assert.throws(() => decodeBytes("16Ei"), /beyond 2\^53/);
  assert.throws(() => decodeMilliCPU("1P"), /beyond 2\^53/);
  assert.throws(() => quantityToBytes(parseQuantity("2E")), /beyond 2\^53/);
  assert.throws(() => quantityToBytes(parseQuantity("9Pi")), /beyond 2\^53/);
});

Deno.test("quantity: JSON decoders take strings, numbers and null", () => {
  for (const json of [0.25, "0.25", "250m"]) assert.equal(decodeMilliCPU(json), 250);
  for (const json of [1, "1", "1000m"]) assert.equal(decodeMilliCPU(json), 1000);
  assert.equal(decodeMilliCPU(null), 0);
  assert.equal(decodeBytes(null), 0);
  assert.equal(decodeBytes(512), 512);
  assert.equal(decodeBytes("1Gi"), 1024 ** 3);
  assert.equal(decodeBytes("1e9"), 1e9);
  assert.throws(
    () => decodeMilliCPU(true),
    /expected a quantity \(string or number\), got boolean/,
  );
  assert.throws(() => decodeMilliCPU({}), /got an object/);
  assert.throws(() => decodeMilliCPU([]), /got an array/);
  assert.throws(() => decodeMilliCPU(undefined), /got nothing/);
  assert.throws(() => decodeMilliCPU("abc"), /invalid quantity "abc"/);
  assert.throws(() => decodeMilliCPU("-1"), /negative/);
  assert.throws(() => decodeBytes(-5), /negative/);
});

Deno.test("quantity: MilliCPU and Bytes JSON encodings", () => {
  assert.equal(encodeMilliCPU(2000), 2);
  assert.equal(encodeMilliCPU(0), 0);
  assert.equal(encodeMilliCPU(250), "250m");
  assert.equal(encodeMilliCPU(1500), "1500m");
  assert.equal(encodeBytes(512), 512);
  assert.equal(encodeBytes(0), 0);
  assert.equal(encodeBytes(1023), 1023);
  assert.equal(encodeBytes(1024), "1Ki");
  assert.equal(encodeBytes(1_073_741_824), "1Gi");
  assert.equal(encodeBytes(1_610_612_736), "1536Mi");
  assert.equal(encodeBytes(3_221_225_472), "3Gi");
  assert.equal(encodeBytes(1_000_000), "1000000");
  assert.equal(encodeBytes(1024 ** 5 * 2), "2Pi");
  assert.throws(() => encodeMilliCPU(-1), QuantityError);
  assert.throws(() => encodeMilliCPU(1.5), QuantityError);
  assert.throws(() => encodeBytes(2 ** 60), QuantityError);
});

Deno.test("quantity: the always-string forms for the patch and messages", () => {
  assert.equal(formatCpuQuantity(1000), "1");
  assert.equal(formatCpuQuantity(2000), "2");
  assert.equal(formatCpuQuantity(750), "750m");
  assert.equal(formatCpuQuantity(1500), "1500m");
  assert.equal(formatCpuQuantity(0), "0");
  assert.equal(formatCpuQuantity(512_000), "512");
  assert.equal(formatCpuQuantity(1_000_000), "1k", "as the reference's canonical decimal-SI form");
  assert.equal(formatBytesQuantity(1024), "1Ki");
  assert.equal(formatBytesQuantity(1000), "1000");
  assert.equal(formatBytesQuantity(0), "0");
});

Deno.test("quantity: Kubernetes times at whole seconds, fraction dropped", () => {
  const ms = Date.UTC(2025, 8, 23, 12, 5, 10, 999);
  assert.equal(formatK8sTime(ms), "2025-09-23T12:05:10Z");
  assert.equal(formatK8sTime(Date.UTC(2025, 8, 23, 12, 5, 10)), "2025-09-23T12:05:10Z");
  assert.equal(parseK8sTime("2025-09-23T12:05:10Z"), Date.UTC(2025, 8, 23, 12, 5, 10));
  assert.equal(parseK8sTime("2025-09-23T12:05:10.5Z"), Date.UTC(2025, 8, 23, 12, 5, 10, 500));
  assert.equal(
    parseK8sTime("2025-09-23T12:05:10.123456789Z"),
    Date.UTC(2025, 8, 23, 12, 5, 10, 123),
  );
  assert.equal(parseK8sTime("2025-09-23T14:05:10+02:00"), Date.UTC(2025, 8, 23, 12, 5, 10));
  assert.throws(() => parseK8sTime("2025-09-23"), RangeError);
  assert.throws(() => parseK8sTime("yesterday"), RangeError);
  assert.throws(() => formatK8sTime(NaN), RangeError);
});
