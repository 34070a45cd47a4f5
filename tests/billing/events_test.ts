import assert from "node:assert/strict";
import {
  encodeGoFloat,
  encodeGoString,
  encodeIncrementalEvent,
  encodeScalingEvent,
  formatKeyTimestamp,
  formatTimestamp,
  idempotencyKey,
  roundHalfAwayFromZero,
} from "../../billing/events.ts";

/** Wall-clock nanoseconds of a whole-second UTC time plus a nanosecond fraction. */
function ns(wholeSecond: string, fractionNs = 0): bigint {
  return BigInt(Date.parse(wholeSecond)) * 1_000_000n + BigInt(fractionNs);
}

Deno.test("events: the reference's incremental event, byte for byte", () => {
  const stop = ns("2024-04-12T12:10:00Z", 845237402);
  const json = encodeIncrementalEvent({
    idempotencyKey: idempotencyKey(stop, "autoscaler-agent-nwcnd", 1, 4),
    metric: "effective_compute_seconds",
    endpointID: "ep-example",
    startTimeNs: ns("2024-04-12T12:09:36Z", 844007537),
    stopTimeNs: stop,
    value: 6,
  });
  assert.equal(
    json,
    '{"idempotency_key":"2024-04-12T12:10:00.845237Z-autoscaler-agent-nwcnd-1/4",' +
      '"metric":"effective_compute_seconds","type":"incremental","endpoint_id":"ep-example",' +
      '"start_time":"2024-04-12T12:09:36.844007537Z","stop_time":"2024-04-12T12:10:00.845237402Z",' +
      '"value":6}',
  );
  assert.deepEqual(Object.keys(JSON.parse(json)), [
    "idempotency_key",
    "metric",
    "type",
    "endpoint_id",
    "start_time",
    "stop_time",
    "value",
  ]);
});

Deno.test("events: the key's time is stop_time truncated to microseconds", () => {
  for (const fraction of [845237402, 845237999, 5, 999999999, 0, 100000, 120000000]) {
    const stop = ns("2024-04-12T12:10:00Z", fraction);
    const event = JSON.parse(encodeIncrementalEvent({
      idempotencyKey: idempotencyKey(stop, "host-with-dashes", 3, 8),
      metric: "m",
      endpointID: "",
      startTimeNs: stop,
      stopTimeNs: stop,
      value: 0,
    }));
    const keyTime = event.idempotency_key.replace(/-host-with-dashes-3\/8$/, "");
    const [whole, digits = ""] = event.stop_time.slice(0, -1).split(".");
    const micros = digits.padEnd(9, "0").slice(0, 6).replace(/0+$/, "");
    assert.equal(keyTime, micros === "" ? `${whole}Z` : `${whole}.${micros}Z`, `${fraction}`);
  }
});

Deno.test("events: timestamps keep nanoseconds and trim trailing zeros", () => {
  const second = "2024-04-12T12:10:00Z";
  const cases: [number, string][] = [
    [845237402, "2024-04-12T12:10:00.845237402Z"],
    [500000000, "2024-04-12T12:10:00.5Z"],
    [120000000, "2024-04-12T12:10:00.12Z"],
    [1, "2024-04-12T12:10:00.000000001Z"],
    [100, "2024-04-12T12:10:00.0000001Z"],
    [0, "2024-04-12T12:10:00Z"],
  ];
  for (const [fraction, text] of cases) assert.equal(formatTimestamp(ns(second, fraction)), text);
  assert.equal(formatTimestamp(ns("0999-02-03T04:05:06Z", 7)), "0999-02-03T04:05:06.000000007Z");
  assert.equal(formatTimestamp(ns("0000-01-01T00:00:00Z")), "0000-01-01T00:00:00Z");
  assert.equal(formatTimestamp(ns("1969-12-31T23:59:59Z", 250000000)), "1969-12-31T23:59:59.25Z");
  assert.throws(() => formatTimestamp(ns("+010000-01-01T00:00:00Z")), RangeError);
});

Deno.test("events: key timestamps truncate to microseconds, then trim", () => {
  const second = "2024-04-12T12:10:00Z";
  const cases: [number, string][] = [
    [845237402, "2024-04-12T12:10:00.845237Z"],
    [845237999, "2024-04-12T12:10:00.845237Z"],
    [845230000, "2024-04-12T12:10:00.84523Z"],
    [100000, "2024-04-12T12:10:00.0001Z"],
    [999, "2024-04-12T12:10:00Z"],
    [0, "2024-04-12T12:10:00Z"],
  ];
  for (const [fraction, text] of cases) {
    assert.equal(formatKeyTimestamp(ns(second, fraction)), text);
  }
  assert.equal(
    idempotencyKey(ns(second, 999999999), "autoscaler-agent-x", 2, 2),
    "2024-04-12T12:10:00.999999Z-autoscaler-agent-x-2/2",
  );
});

Deno.test("events: strings are escaped as Go's encoder does", () => {
  assert.equal(encodeGoString("ep-<a&b>"), '"ep-\\u003ca\\u0026b\\u003e"');
  assert.equal(encodeGoString("a\u2028b\u2029c"), '"a\\u2028b\\u2029c"');
  assert.equal(encodeGoString('q"b\\'), '"q\\"b\\\\"');
  assert.equal(encodeGoString("\n\r\t\b\f\u0001\u001f"), '"\\n\\r\\t\\b\\f\\u0001\\u001f"');
  assert.equal(encodeGoString("é€😀\u007f"), '"é€😀\u007f"');
  assert.equal(encodeGoString("x\ud800y\udc00"), '"x\ufffdy\ufffd"');
  assert.equal(encodeGoString(""), '""');
});

Deno.test("events: floats are written as Go writes float64 (2.5)", () => {
  const cases: [number, string][] = [
    [1.3125, "1.3125"],
    [0.75, "0.75"],
    [2, "2"],
    [0, "0"],
    [-0, "-0"],
    [0.1 + 0.2, "0.30000000000000004"],
    [0.000001, "0.000001"],
    [1e-7, "1e-7"],
    [1.5e-7, "1.5e-7"],
    [1e-100, "1e-100"],
    [1e20, "100000000000000000000"],
    [1e21, "1e+21"],
    [-2.5e-8, "-2.5e-8"],
  ];
  for (const [value, text] of cases) assert.equal(encodeGoFloat(value), text, `${value}`);
  for (const bad of [NaN, Infinity, -Infinity]) assert.throws(() => encodeGoFloat(bad), RangeError);
});

Deno.test("events: rounding is math.Round, half away from zero", () => {
  const cases: [number, number][] = [
    [6.875, 7],
    [23.5, 24],
    [0.5, 1],
    [2.5, 3],
    [3.5, 4],
    [-2.5, -3],
    [2.4999999999999996, 2],
    [0.49999999999999994, 0],
    [4503599627370497, 4503599627370497],
    [0, 0],
  ];
  for (const [value, rounded] of cases) assert.equal(roundHalfAwayFromZero(value), rounded);
});

Deno.test("events: the incremental encoder rejects values Go could not hold as uint", () => {
  const base = {
    idempotencyKey: "k",
    metric: "m",
    endpointID: "e",
    startTimeNs: 0n,
    stopTimeNs: 0n,
  };
  assert.throws(() => encodeIncrementalEvent({ ...base, value: -1 }), RangeError);
  assert.throws(() => encodeIncrementalEvent({ ...base, value: 1.5 }), RangeError);
  assert.equal(
    encodeIncrementalEvent({ ...base, endpointID: "", value: 0 }),
    '{"idempotency_key":"k","metric":"m","type":"incremental","endpoint_id":"",' +
      '"start_time":"1970-01-01T00:00:00Z","stop_time":"1970-01-01T00:00:00Z","value":0}',
  );
});

Deno.test("events: the reference's scaling events, byte for byte", () => {
  assert.equal(
    encodeScalingEvent({
      timestampNs: ns("2024-10-31T23:00:00Z", 123456789),
      region: "eu-central-1",
      endpointID: "ep-x",
      kind: "actual",
      currentMilliCU: 1000,
      targetMilliCU: 2000,
    }),
    '{"timestamp":"2024-10-31T23:00:00.123456789Z","region":"eu-central-1","endpoint_id":"ep-x",' +
      '"kind":"actual","current_cu":1000,"target_cu":2000}',
  );
  assert.equal(
    encodeScalingEvent({
      timestampNs: ns("2024-10-31T23:00:05Z", 500000000),
      region: "eu-central-1",
      endpointID: "ep-x",
      kind: "hypothetical",
      currentMilliCU: 2000,
      targetMilliCU: 1250,
      goalComponents: { cpu: 1.3125, mem: 0.75 },
    }),
    '{"timestamp":"2024-10-31T23:00:05.5Z","region":"eu-central-1","endpoint_id":"ep-x",' +
      '"kind":"hypothetical","current_cu":2000,"target_cu":1250,' +
      '"goalComponents":{"cpu":1.3125,"mem":0.75}}',
  );
});

Deno.test("events: goal components keep Go's field order and are never null", () => {
  const base = {
    timestampNs: ns("2024-10-31T23:00:00Z"),
    region: "r",
    endpointID: "",
    currentMilliCU: 0,
    targetMilliCU: 250,
  };
  assert.equal(
    encodeScalingEvent({
      ...base,
      kind: "hypothetical",
      goalComponents: { lfc: 0.5, mem: 0.25, cpu: 1e-7 },
    }),
    '{"timestamp":"2024-10-31T23:00:00Z","region":"r","endpoint_id":"","kind":"hypothetical",' +
      '"current_cu":0,"target_cu":250,"goalComponents":{"cpu":1e-7,"mem":0.25,"lfc":0.5}}',
  );
  assert.equal(
    encodeScalingEvent({ ...base, kind: "hypothetical", goalComponents: { lfc: 2 } }),
    '{"timestamp":"2024-10-31T23:00:00Z","region":"r","endpoint_id":"","kind":"hypothetical",' +
      '"current_cu":0,"target_cu":250,"goalComponents":{"lfc":2}}',
  );
  // The reference always builds the components struct for hypothetical events.
  assert.match(
    encodeScalingEvent({ ...base, kind: "hypothetical", goalComponents: {} }),
    /,"goalComponents":\{\}\}$/,
  );
});
